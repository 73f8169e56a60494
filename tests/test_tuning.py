"""Recall-targeted tuning: tuned stage sizes reach the target on held-out queries of two distributions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eproduct_core import search, tuning
from eproduct_core.errors import EproductError
from eproduct_core.index import build_index, open_index, verify_index
from eproduct_core.settings import SearchSettings


def _unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def clusters(n: int, dim: int, nq: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Products of four images around centres in a 16-d latent space; queries: near copies of index items."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((16, dim)) / 4
    centres = rng.standard_normal((n // 4, 16))
    z = centres[np.arange(n) % len(centres)] + 0.2 * rng.standard_normal((n, 16))
    x = _unit(z @ basis + rng.standard_normal((n, dim)) / np.sqrt(dim))
    q = x[rng.choice(n, nq, replace=False)] + 0.25 * rng.standard_normal((nq, dim)) / np.sqrt(dim)
    return x, _unit(q)


def latent(n: int, dim: int, nq: int, seed: int, rank: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """normalize(U z + noise), U orthonormal; a query is an item's latent + 0.3 N(0, I) with fresh noise."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((dim, rank)))[0]
    sigma = 0.5 / np.sqrt(dim / rank)
    z = rng.standard_normal((n, rank))
    x = _unit(z @ basis.T + sigma * rng.standard_normal((n, dim)))
    zq = z[rng.choice(n, nq, replace=False)] + 0.3 * rng.standard_normal((nq, rank))
    return x, _unit(zq @ basis.T + sigma * rng.standard_normal((nq, dim)))


def exact(x: np.ndarray, q: np.ndarray, k: int = 10) -> np.ndarray:
    return np.argsort(-(q @ x.astype(np.float16).astype(np.float32).T), axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize(("make", "target"), [(clusters, 0.95), (latent, 0.9)])
def test_tuned_settings_reach_the_target_on_held_out_queries(tmp_path, make, target):
    x, q = make(6000, 48, 300, seed=3)
    index = open_index(build_index(x, None, tmp_path / "idx", bits=128, shard_size=2000))
    result = tuning.tune(index, target=target, sample=300, seed=1)
    assert result.reached and result.low >= target and result.source == "held-out index rows"
    assert result.settings.candidates < index.size  # a real choice, not "scan everything"
    found = [r.rows for r in search.search(index, q, result.settings)]
    held_out = tuning.per_query_recall(found, exact(x, q)).mean()
    assert held_out >= target, (held_out, result)
    cheaper = tuning.stage_settings(result.settings.rerank // 2, result.settings.probe_bits, 10)
    found = [r.rows for r in search.search(index, q, cheaper)]
    assert tuning.per_query_recall(found, exact(x, q)).mean() < 1.0  # the target was not met for free


def test_store_tuned_keeps_the_index_sound(tmp_path):
    x, _ = latent(3000, 32, 10, seed=0)
    folder = build_index(x, None, tmp_path / "idx", bits=64, shard_size=1000)
    result = tuning.tune(open_index(folder), target=0.9, sample=100)
    tuning.store_tuned(folder, result)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert SearchSettings.from_dict(manifest["search"]) == result.settings
    assert manifest["search_estimate"]["recall"] == pytest.approx(result.recall)
    assert verify_index(folder) == []
    assert "estimated" in tuning.describe(tuning.read_estimate(open_index(folder).manifest))
    assert not list(folder.glob(".*tmp*"))


def test_leave_one_out_truth_excludes_the_query_row(tmp_path):
    x, _ = latent(2000, 32, 10, seed=2)
    index = open_index(build_index(x, None, tmp_path / "idx", bits=64))
    rows = np.array([5, 1500])
    truth = tuning.exact_neighbours(index, index.vectors[rows], 10, exclude=rows)
    assert not np.isin(rows, truth).any(axis=None) and truth.shape == (2, 10)
    full = tuning.exact_neighbours(index, index.vectors[rows], 11)
    assert (full[:, 0] == rows).all() and (full[:, 1:] == truth).all()


def test_bad_tuning_requests_are_clear(tmp_path):
    x, _ = latent(500, 16, 1, seed=0)
    bare = open_index(build_index(x, None, tmp_path / "bare", bits=64, vectors_fp16=False))
    with pytest.raises(EproductError, match="stored vectors"):
        tuning.tune(bare)
    index = open_index(build_index(x, None, tmp_path / "idx", bits=64))
    with pytest.raises(EproductError, match="target recall"):
        tuning.tune(index, target=1.5)
    with pytest.raises(EproductError, match="dim"):
        tuning.tune(index, queries=np.ones((4, 3), np.float32))


def test_cli_build_tunes_and_tune_retunes(tmp_path, capsys):
    from eproduct_core.cli import main

    x, _ = latent(3000, 32, 10, seed=4)
    np.save(tmp_path / "x.npy", x)
    folder = tmp_path / "idx"
    assert main(["index", "build", "--vectors", str(tmp_path / "x.npy"), "--out", str(folder), "-q", "--tables"]) == 0
    first = json.loads((folder / "manifest.json").read_text())
    assert first["search_estimate"]["target"] == 0.95 and "tables" in first
    assert main(["index", "tune", str(folder), "--target-recall", "0.8", "-q"]) == 0
    second = json.loads((folder / "manifest.json").read_text())
    assert second["search_estimate"]["target"] == 0.8 and second["tables"] == first["tables"]
    assert second["search"]["rerank"] <= first["search"]["rerank"]
    assert main(["index", "verify", str(folder)]) == 0
    assert main(["index", "tune", str(folder), "--target-recall", "2"]) == 2
    assert "target recall" in capsys.readouterr().err


def test_the_tuner_tries_every_probe_with_all_stored_bits_and_with_a_short_prefix_of_long_codes():
    from eproduct_core.tuning import SHORT_BITS, _lengths

    assert _lengths(64) == [(None, 64)]
    assert _lengths(128) == [(None, 64), (None, 128)]
    assert _lengths(256) == [(None, 64), (None, 128), (None, 192), (None, 256)]
    assert _lengths(512) == [
        (None, 64),
        (None, 128),
        (None, 192),
        (None, 256),
        (SHORT_BITS, 64),
        (SHORT_BITS, 128),
        (SHORT_BITS, 192),
        (SHORT_BITS, 256),
    ]


def test_the_shortlist_is_narrowed_only_while_the_target_is_reached():
    rung = tuning.stage_settings(64, 128, 11)
    assert rung.shortlist == tuning.SHORTLIST_PER_RERANK * 64
    tried = []

    def reaches_from_three(settings):
        tried.append(settings.shortlist)
        return settings.shortlist >= 3 * settings.rerank

    narrowed = tuning._narrowed(rung, reaches_from_three)
    assert narrowed == rung.replace(shortlist=3 * 64)
    assert tried == [4 * 64, 3 * 64, 2 * 64]  # stops at the first ratio that misses
    assert tuning._narrowed(rung, lambda s: s.shortlist == rung.shortlist) == rung  # nothing narrower reaches


def test_the_estimate_comes_from_a_second_sample_the_choice_never_saw(tmp_path):
    x, q = latent(4000, 32, 30, seed=5)
    index = open_index(build_index(x, None, tmp_path / "idx", bits=64))
    result = tuning.tune(index, target=0.9, sample=100, seed=2)
    rows = tuning.held_out_rows(index, 200, 2)
    chosen_on, checked_on = rows[0::2], rows[1::2]
    assert result.queries == 100 and not np.isin(chosen_on, checked_on).any()
    vectors = np.asarray(index.vectors[checked_on], dtype=np.float32)
    truth = tuning.exact_neighbours(index, vectors, 10, exclude=checked_on)
    found = [r.rows for r in search.search(index, vectors, result.settings.replace(k=11))]
    assert result.recall == pytest.approx(tuning.per_query_recall(found, truth, checked_on).mean())
    with_queries = tuning.tune(index, target=0.9, queries=q, sample=100)
    assert with_queries.source == "catalog queries" and with_queries.queries == 15  # the other half of 30
    with pytest.raises(EproductError, match="at least 2"):
        tuning.tune(index, queries=q[:1])


def test_the_check_steps_up_the_family_while_the_second_sample_misses():
    chosen = tuning.stage_settings(16, 128, 11, None, 0, 3)
    recalls = {16: 0.90, 24: 0.93, 32: 0.99}
    seen = []

    def recall_of(settings):
        seen.append(settings)
        return np.full(50, recalls.get(int(settings.rerank), 1.0))

    settings, values = tuning._checked(chosen, recall_of, 0.95, seed=0)
    assert settings == tuning.stage_settings(32, 128, 11, None, 0, 3) and values.mean() == pytest.approx(0.99)
    assert list(dict.fromkeys(s.rerank for s in seen)) == [16, 24, 32]  # rung by rung, stopping at the first
    never, _ = tuning._checked(chosen, lambda s: np.full(50, 0.5 + s.rerank / 1000), 0.95, seed=0)
    assert never.rerank == tuning.LADDER[tuning.LADDER.index(16) + tuning.CHECK_STEPS]  # the most accurate tried
