"""metrics.py on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eproduct_core.metrics import (
    first_hit_rank,
    hits_at_k,
    mar_at_k,
    mar_of_submission,
    recall_at_k,
    recalls_at_k,
)


def test_recall_simple_both_normalisations():
    # G = {a, b, c}; top 10 holds a and c -> 2 hits. |G| = 3, min(10, 3) = 3.
    retrieved = ["x", "a", "y", "c"]
    assert recall_at_k(retrieved, {"a", "b", "c"}, 10, "G") == pytest.approx(2 / 3)
    assert recall_at_k(retrieved, {"a", "b", "c"}, 10, "min") == pytest.approx(2 / 3)
    # k = 2: only x, a are considered -> 1 hit; "G": 1/3, "min": 1/min(2,3) = 1/2
    assert recall_at_k(retrieved, {"a", "b", "c"}, 2, "G") == pytest.approx(1 / 3)
    assert recall_at_k(retrieved, {"a", "b", "c"}, 2, "min") == pytest.approx(1 / 2)


def test_more_true_matches_than_k():
    # |G| = 12 > k = 10, and all 10 retrieved are true matches.
    relevant = {f"m{i}" for i in range(12)}
    retrieved = [f"m{i}" for i in range(10)]
    assert recall_at_k(retrieved, relevant, 10, "G") == pytest.approx(10 / 12)
    assert recall_at_k(retrieved, relevant, 10, "min") == pytest.approx(1.0)
    # 7 of the top 10 are matches
    retrieved = [f"m{i}" for i in range(7)] + ["n1", "n2", "n3", "m8"]
    assert hits_at_k(retrieved, relevant, 10) == 7
    assert recall_at_k(retrieved, relevant, 10, "G") == pytest.approx(7 / 12)
    assert recall_at_k(retrieved, relevant, 10, "min") == pytest.approx(7 / 10)


def test_empty_results_score_zero():
    assert recall_at_k([], {"a"}, 10) == 0.0
    assert recall_at_k([], {"a"}, 10, "min") == 0.0


def test_duplicates_count_once():
    # a appears three times in the top 10: still one hit of |G| = 2
    assert hits_at_k(["a", "a", "a", "z"], {"a", "b"}, 10) == 1
    assert recall_at_k(["a", "a", "a", "z"], {"a", "b"}, 10) == pytest.approx(0.5)
    # duplicates occupy slots: b at position 4 is outside k = 3
    assert recall_at_k(["a", "a", "a", "b"], {"a", "b"}, 3) == pytest.approx(0.5)


def test_empty_groundtruth_is_nan_and_skipped():
    assert math.isnan(recall_at_k(["a"], set(), 10))
    values = recalls_at_k([["a"], ["b"]], [set(), {"b"}], 10)
    assert math.isnan(values[0]) and values[1] == 1.0
    assert mar_at_k([["a"], ["b"]], [set(), {"b"}], 10) == 1.0
    with pytest.raises(ValueError):
        mar_at_k([["a"]], [set()], 10)


def test_mar_is_mean_over_queries():
    retrieved = [["a", "x"], ["y", "z"], ["c", "d", "e"]]
    relevant = [{"a"}, {"b"}, {"c", "d", "e", "f"}]
    # per query "G": 1, 0, 3/4 -> mean 7/12
    assert mar_at_k(retrieved, relevant, 10, "G") == pytest.approx((1 + 0 + 0.75) / 3)
    # k = 2: 1, 0, 2/4 ("G") and 1, 0, 2/2 ("min")
    assert mar_at_k(retrieved, relevant, 2, "G") == pytest.approx((1 + 0 + 0.5) / 3)
    assert mar_at_k(retrieved, relevant, 2, "min") == pytest.approx((1 + 0 + 1.0) / 3)


def test_query_absent_from_submission_scores_zero():
    groundtruth = {"q1": {"a"}, "q2": {"b", "c"}, "q3": set()}
    submission = {"q1": ["a"], "q9": ["b"]}  # q2 missing; q9 has no groundtruth and is ignored
    # q1 = 1, q2 = 0 (absent), q3 skipped (no true match)
    assert mar_of_submission(submission, groundtruth, 10) == pytest.approx(0.5)
    assert mar_of_submission({"q1": ["a"], "q2": ["c"]}, groundtruth, 10) == pytest.approx((1 + 0.5) / 2)


def test_bad_arguments():
    with pytest.raises(ValueError):
        recall_at_k(["a"], {"a"}, 0)
    with pytest.raises(ValueError):
        recall_at_k(["a"], {"a"}, 10, "mean")
    with pytest.raises(ValueError):
        mar_at_k([["a"]], [{"a"}, {"b"}])


def test_rank_helpers():
    assert first_hit_rank(["x", "y", "a"], {"a"}) == 3
    assert first_hit_rank(["x"], {"a"}) is None


def test_recalls_returns_float_array():
    values = recalls_at_k([["a"], []], [{"a"}, {"b"}], 10)
    assert values.dtype == np.float64
    assert values.tolist() == [1.0, 0.0]
