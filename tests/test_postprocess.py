"""Search-side post-processing: whitening and alpha-QE against hand-computed cases, DBA, k-reciprocal re-ranking,
and the settings that switch them on round-trip through SearchSettings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eproduct_core import postprocess
from eproduct_core.errors import EproductError
from eproduct_core.settings import SearchSettings


def test_whitening_matches_a_hand_computed_case():
    # mean (1, 1); centred rows (+-1, 0) and (0, +-2): variances 0.5 (x) and 2 (y) with 1/n
    x = np.array([[2, 1], [0, 1], [1, 3], [1, -1]], np.float32)
    mean, projection = postprocess.fit_whitening(x, eps=0.0)
    np.testing.assert_allclose(mean, [1, 1], atol=1e-6)
    # axes in decreasing variance, positive largest entry: y (var 2) first, then x (var 0.5)
    np.testing.assert_allclose(projection, [[0, 1 / math.sqrt(0.5)], [1 / math.sqrt(2), 0]], atol=1e-6)
    white = postprocess.apply_whitening(x, mean, projection, norm=False)
    np.testing.assert_allclose(
        white, [[0, math.sqrt(2)], [0, -math.sqrt(2)], [math.sqrt(2), 0], [-math.sqrt(2), 0]], atol=1e-5
    )
    np.testing.assert_allclose(white.T @ white / len(white), np.eye(2), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(postprocess.apply_whitening(x, mean, projection), axis=1), 1, atol=1e-6)


def test_whitening_can_keep_the_leading_axes():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 6)).astype(np.float32) * np.array([5, 4, 3, 2, 1, 0.5], np.float32)
    mean, projection = postprocess.fit_whitening(x, dim=3)
    assert projection.shape == (6, 3)
    white = postprocess.apply_whitening(x, mean, projection, norm=False)
    np.testing.assert_allclose(np.cov(white.T, bias=True), np.eye(3), atol=1e-3)


def test_alpha_query_expansion_matches_a_hand_computed_case():
    index = np.array([[1, 0], [0, 1], [1, 1]], np.float32)  # the last one is normalised to (0.707, 0.707)
    query = np.array([[1, 0]], np.float32)
    # k = 1: the nearest is e1 itself (cos 1): q + 1 * e1 -> e1
    np.testing.assert_allclose(postprocess.query_expansion(query, index, k=1), [[1, 0]], atol=1e-6)
    # k = 2, alpha = 3: q + 1 * e1 + cos(45)^3 * (0.707, 0.707) = (2 + 0.25, 0.25)
    w = math.cos(math.pi / 4) ** 3 * math.sqrt(0.5)
    expected = np.array([2 + w, w]) / math.hypot(2 + w, w)
    np.testing.assert_allclose(postprocess.query_expansion(query, index, k=2, alpha=3.0), [expected], atol=1e-6)
    # k = 0 is off: the query comes back normalised and unchanged
    np.testing.assert_allclose(postprocess.query_expansion(query * 3, index, k=0), [[1, 0]], atol=1e-6)


def test_database_augmentation_averages_each_row_with_its_neighbours():
    index = np.array([[1, 0], [1, 1], [0, 1]], np.float32)
    out = postprocess.database_augmentation(index, k=2, alpha=1.0)
    c = math.sqrt(0.5)
    # row 0: itself (cos 1) + row 1 (cos 0.707): (1 + 0.5, 0.5)
    np.testing.assert_allclose(out[0], np.array([1.5, 0.5]) / math.hypot(1.5, 0.5), atol=1e-6)
    # row 1: itself + either neighbour at cos 0.707 (tie broken by position: row 0)
    np.testing.assert_allclose(out[1], np.array([c + c, c]) / math.hypot(2 * c, c), atol=1e-6)
    np.testing.assert_allclose(postprocess.database_augmentation(index, k=1), postprocess.normalize(index))


def test_k_reciprocal_rerank_returns_the_top_candidates_and_lifts_a_consistent_cluster():
    rng = np.random.default_rng(1)
    centre = rng.standard_normal(16)
    cluster = centre + 0.3 * rng.standard_normal((5, 16))  # five views of one product
    clutter = rng.standard_normal((60, 16))
    index = np.vstack([cluster, clutter]).astype(np.float32)
    query = (centre + 0.3 * rng.standard_normal(16)).astype(np.float32)[None]
    ids, dists = postprocess.k_reciprocal_rerank(query, index, top=30, k1=6, k2=3)
    exact = np.argsort(-(postprocess.normalize(query) @ postprocess.normalize(index).T)[0])[:30]
    assert ids.shape == (1, 30) and sorted(ids[0]) == sorted(exact)
    assert np.all(np.diff(dists[0]) >= 0)
    assert set(ids[0, :5]) == set(range(5))


def test_postprocess_settings_round_trip_and_validate():
    settings = SearchSettings(whiten=True, query_expansion=2, dba=3, kreciprocal=True)
    again = SearchSettings.from_dict(settings.to_dict())
    assert again == settings and again.whiten and again.query_expansion == 2 and again.dba == 3 and again.kreciprocal
    assert SearchSettings().query_expansion == 0 and not SearchSettings().whiten
    with pytest.raises(EproductError, match="query_expansion"):
        SearchSettings(query_expansion=-1)
    with pytest.raises(EproductError, match="dba"):
        SearchSettings(dba=True)


def test_search_post_processing_stage_matches_the_pure_functions(tmp_path):
    """search.search with post-processing settings = the pure functions on the top POST_DEPTH rows."""
    from conftest import noisy_product_index

    from eproduct_core.search import POST_DEPTH, search

    index, queries, query_ids, truth = noisy_product_index(
        tmp_path / "ix", seed=3, products=20, dim=32, noise=0.6, distractors=300, shard_size=128
    )
    plain = SearchSettings(k=10, rerank=POST_DEPTH)
    base = search(index, queries, plain.replace(k=POST_DEPTH))
    vectors = np.asarray(index.vectors, np.float32)
    mean, projection = postprocess.fit_whitening(vectors)
    for changes in ({"query_expansion": 2}, {"whiten": True}, {"dba": 3}, {"kreciprocal": True}):
        found = search(index, queries, plain.replace(**changes))
        for query, result, first in zip(queries, found, base, strict=True):
            q = postprocess.normalize(query[None])
            x = postprocess.normalize(vectors[first.rows])
            if changes.get("whiten"):
                q, x = (
                    postprocess.apply_whitening(q, mean, projection),
                    postprocess.apply_whitening(x, mean, projection),
                )
            x = postprocess.database_augmentation(x, changes.get("dba", 0))
            q = postprocess.query_expansion(q, x, changes.get("query_expansion", 0))
            if changes.get("kreciprocal"):
                distance = postprocess.kreciprocal_distance(q[0], x)
            else:
                distance = 1 - x @ q[0]
            expected = first.rows[np.lexsort((first.rows, distance))][:10]
            assert result.rows.tolist() == expected.tolist(), changes
            assert len(result.ids) == 10 and np.all(np.diff(result.cosine) >= 0)
    with pytest.raises(EproductError, match="topk"):
        search(index, queries, SearchSettings(mode="cutoff", k=10, query_expansion=2))
