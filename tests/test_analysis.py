"""analysis.py (distances, cutoffs), why_missed.py and class_analysis.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from conftest import noisy_product_index

from eproduct_core import lsh
from eproduct_core.analysis import best_global_cutoff, cutoff_stats, distance_table, per_query_cutoffs
from eproduct_core.catalog import Catalog
from eproduct_core.class_analysis import (
    accuracy_trend,
    fit_log_trend,
    per_class_mar,
    query_classes,
    read_class_accuracy,
    train_counts,
)
from eproduct_core.evaluate import evaluate_results
from eproduct_core.search import search
from eproduct_core.settings import SearchSettings
from eproduct_core.why_missed import why_missed

SEEDISH = SearchSettings(bits=20, mode="cutoff", cutoff=0.1, k=10, rerank=0)


@pytest.fixture(scope="module")
def retrieval(tmp_path_factory):
    return noisy_product_index(
        tmp_path_factory.mktemp("ix") / "index", seed=1, products=25, dim=16, noise=0.6, distractors=150, shard_size=50
    )


def _code_cosine(index, query, row, bits):
    """Eq. (4) computed by hand (not through search.py) from the query's signs and the row's stored code."""
    a = lsh.sign_bits(query[None, :], index.planes[:bits])[0].astype(np.int64)
    packed = np.ascontiguousarray(index.words[row : row + 1].astype(">u8")).view(np.uint8)
    b = lsh.unpack(packed, bits)[0].astype(np.int64)
    return 1.0 - (a & b).sum() / np.sqrt(a.sum() * b.sum())


# --- hand-made distance tables -------------------------------------------------------------------
def _hand_table():
    rows = [
        ("q1", "match", 0.1),
        ("q1", "match", 0.2),
        ("q1", "non-match", 0.3),
        ("q1", "non-match", 0.5),
        ("q2", "match", 0.4),
        ("q2", "non-match", 0.2),
        ("q2", "non-match", 0.6),
    ]
    return pd.DataFrame(
        [
            {
                "query_id": q,
                "pair": p,
                "index_id": f"x{i}",
                "rank": np.nan,
                "hamming": 0,
                "code_cosine": d,
                "cosine": np.nan,
                "shard": 0,
            }
            for i, (q, p, d) in enumerate(rows)
        ]
    )


def test_best_global_cutoff_by_hand():
    # candidate cutoffs 0.1 .15 .25 .35 .45 .55 .65; J_q1 = 0 .5 1 .5 .5 0 0; J_q2 = 0 0 -.5 -.5 .5 .5 0
    # mean = 0 .25 .25 0 .5 .25 0 -> the best single cutoff is 0.45 (score 0.5)
    best = best_global_cutoff(_hand_table())
    assert best.cutoff == pytest.approx(0.45)
    assert best.score == pytest.approx(0.5)
    assert best.match_fraction == pytest.approx(1.0)  # 0.1, 0.2, 0.4 all < 0.45
    assert best.nonmatch_fraction == pytest.approx(0.5)  # 0.3 and 0.2 of 0.3, 0.5, 0.2, 0.6
    assert best.mean_nonmatches_kept == pytest.approx(1.0)


def test_seed_cutoff_keeps_nothing_in_hand_case():
    stats = cutoff_stats(_hand_table(), 0.1)  # keep d < 0.1: the 0.1 match is not kept
    assert stats.match_fraction == 0.0 and stats.score == 0.0 and stats.queries_with_a_match == 0.0
    assert cutoff_stats(_hand_table(), 0.25).mean_match_fraction == pytest.approx((1.0 + 0.0) / 2)


def test_per_query_cutoffs_by_hand():
    table = per_query_cutoffs(_hand_table(), 0.45).set_index("query_id")
    # q1 separates perfectly between 0.2 and 0.3 (its own candidates: midpoint 0.25)
    assert table.loc["q1", "best_cutoff"] == pytest.approx(0.25)
    assert table.loc["q1", "gap"] == pytest.approx(-0.2)
    assert table.loc["q1", "lost"] == pytest.approx(0.5)
    # q2's best score (0.5) is reached at the global cutoff itself
    assert table.loc["q2", "gap"] == 0.0 and table.loc["q2", "lost"] == 0.0


def test_cutoff_checks():
    with pytest.raises(ValueError):
        best_global_cutoff(_hand_table(), metric="cosine")  # all NaN
    with pytest.raises(ValueError):
        best_global_cutoff(_hand_table().iloc[0:0])


# --- distance table on a real index --------------------------------------------------------------
def test_distance_table_matches_and_nearest_nonmatches(retrieval):
    index, queries, query_ids, truth = retrieval
    table = distance_table(index, queries[:6], query_ids[:6], truth, bits=20, nonmatches=5)
    ids = index.all_ids()
    for position, query_id in enumerate(query_ids[:6]):
        rows = table[table["query_id"] == query_id]
        matches, others = rows[rows["pair"] == "match"], rows[rows["pair"] == "non-match"]
        assert set(matches["index_id"]) == truth[query_id]
        assert len(others) == 5 and not set(others["index_id"]) & truth[query_id]
        for _, item in rows.iterrows():
            expected = _code_cosine(index, queries[position], ids.index(item["index_id"]), 20)
            assert item["code_cosine"] == pytest.approx(expected)
        # nearest: no other non-match in the whole index is strictly closer than the 5th listed
        all_dist = lsh.code_cosine(index.encode(queries[position : position + 1])[0], index.words, 20)
        outside = [
            d
            for d, i in zip(all_dist, ids, strict=False)
            if i not in truth[query_id] and i not in set(others["index_id"])
        ]
        assert min(outside) >= others["code_cosine"].max()
    assert table["cosine"].notna().all()


# --- why missed ----------------------------------------------------------------------------------
def _missed_outside_cutoff(index, queries, query_ids, truth, settings):
    for position, query_id in enumerate(query_ids):
        frame = why_missed(index, queries[position], truth[query_id], settings)
        outside = frame[frame["code_cosine"] >= settings.cutoff]
        if len(outside):
            return position, outside.iloc[0]
    raise AssertionError("expected a true match outside the cutoff")


def test_why_missed_cutoff_needed_is_exact(retrieval):
    index, queries, query_ids, truth = retrieval
    settings = SEEDISH.replace(k=1000)  # k large: only the cutoff decides
    position, row = _missed_outside_cutoff(index, queries, query_ids, truth, settings)
    query = queries[position : position + 1]
    assert not row["retrieved"] and np.isnan(row["rank"])
    assert row["cutoff_needed"] == pytest.approx(_code_cosine(index, queries[position], int(row["row"]), 20))
    # just below and just above: the float nearest the match's code cosine may lie on either side of it
    at = search(index, query, settings.replace(cutoff=float(np.nextafter(row["cutoff_needed"], 0))))[0]
    above = search(index, query, settings.replace(cutoff=float(np.nextafter(row["cutoff_needed"], 2))))[0]
    assert row["index_id"] not in at.ids and row["index_id"] in above.ids
    assert row["cutoff_retrieves"]
    assert "not below the cutoff" in row["reason"]


def test_why_missed_topk_rerank_and_bits(retrieval):
    index, queries, query_ids, truth = retrieval
    settings = SearchSettings(bits=64, mode="topk", k=3, rerank=3)
    checked = 0
    for position, query_id in enumerate(query_ids):
        frame = why_missed(index, queries[position], truth[query_id], settings)
        query = queries[position : position + 1]
        for _, row in frame.iterrows():
            if row["retrieved"]:
                assert row["rank"] <= 3
                continue
            if not np.isnan(row["rerank_needed"]):
                depth = int(row["rerank_needed"])
                assert row["index_id"] in search(index, query, settings.replace(rerank=depth))[0].ids
                if depth - 1 >= 3:
                    assert row["index_id"] not in search(index, query, settings.replace(rerank=depth - 1))[0].ids
                checked += 1
            if pd.notna(row["bits_needed"]):
                assert row["index_id"] in search(index, query, settings.replace(bits=int(row["bits_needed"])))[0].ids
    assert checked > 0


def test_why_missed_lists_matches_absent_from_index(retrieval):
    index, queries, _, _ = retrieval
    frame = why_missed(index, queries[0], {"p0v0", "nowhere"}, SEEDISH)
    assert frame.set_index("index_id").loc["nowhere", "reason"] == "not in this index"
    assert len(frame) == 2


# --- per class -----------------------------------------------------------------------------------
def test_fit_log_trend_by_hand():
    fit = fit_log_trend(np.array([10, 100, 1000, 0]), np.array([0.2, 0.4, 0.6, 0.9]))  # count 0 is left out
    assert fit["points"] == 3
    assert fit["slope"] == pytest.approx(0.2) and fit["intercept"] == pytest.approx(0.0)
    assert fit["r"] == pytest.approx(1.0)
    assert np.isnan(fit_log_trend(np.array([5]), np.array([0.5]))["slope"])


def test_accuracy_trend_from_run_folder(tmp_path):
    pd.DataFrame(
        {
            "level": ["meta"] * 3 + ["leaf"] * 3,
            "class": list("abcdef"),
            "train_count": [10, 100, 1000, 10, 100, 50],
            "val_count": [1, 1, 1, 1, 1, 0],
            "accuracy": [0.9, 0.6, 0.3, 0.1, 0.3, ""],
        }
    ).to_csv(tmp_path / "class_accuracy.csv", index=False)
    trend = accuracy_trend(read_class_accuracy(tmp_path)).set_index("level")
    assert trend.loc["meta", "slope"] == pytest.approx(-0.3) and trend.loc["meta", "r"] == pytest.approx(-1.0)
    assert trend.loc["leaf", "points"] == 2  # the class with no validation image is left out
    assert trend.loc["leaf", "slope"] == pytest.approx(0.2)


def test_query_classes_and_per_class_mar():
    index = pd.DataFrame({"image_id": ["i1", "i2", "i3", "i4"], "path": ["x"] * 4, "leaf": ["A", "A", "B", "B"]})
    truth = pd.DataFrame({"query_id": ["q1", "q1", "q2", "q3"], "index_id": ["i1", "i3", "i4", "i2"]})
    train = pd.DataFrame({"leaf": ["A", "A", "A", "B"]})
    catalog = Catalog(
        root=None,
        train=train,
        query=pd.DataFrame({"image_id": ["q1", "q2", "q3"], "path": ["x"] * 3}),
        index=index,
        groundtruth=truth,
    )
    classes = query_classes(catalog)
    assert classes == {"q1": "A", "q2": "B", "q3": "A"}  # q1: one A and one B vote, tie broken by name
    per_query = evaluate_results(
        ["q1", "q2", "q3"], [["i1"], [], ["i2"]], {"q1": {"i1", "i3"}, "q2": {"i4"}, "q3": {"i2"}}
    ).per_query
    table = per_class_mar(per_query, classes, train_counts(catalog)).set_index("class")
    assert table.loc["A", "mar@10_G"] == pytest.approx((0.5 + 1.0) / 2) and table.loc["A", "queries"] == 2
    assert table.loc["B", "mar@10_G"] == 0.0 and table.loc["B", "train_count"] == 1
    labelled = dataclasses.replace(catalog, query=catalog.query.assign(leaf=["B", "B", "A"]))
    assert query_classes(labelled) == {"q1": "B", "q2": "B", "q3": "A"}
