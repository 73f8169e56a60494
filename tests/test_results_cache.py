"""results_cache: a computed table or evaluation is kept in the workspace and read back, keyed by what made it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from eproduct_core import results_cache as rc
from eproduct_core.evaluate import evaluate_search
from tests.conftest import noisy_product_index


def test_frame_is_computed_once_and_keyed(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return pd.DataFrame({"query_id": ["001", "q2"], "bits": [8, 16], "mar": [0.5, float("nan")]})

    key = {"index": "abc", "grid": {"bits": [8, 16]}}
    first = rc.cached_frame(tmp_path, "sweep", key, compute)
    again = rc.cached_frame(tmp_path, "sweep", key, compute)
    assert len(calls) == 1
    pd.testing.assert_frame_equal(first, again)
    assert again["query_id"].tolist() == ["001", "q2"]  # ids stay text
    rc.cached_frame(tmp_path, "sweep", {**key, "grid": {"bits": [8]}}, compute)
    assert len(calls) == 2  # another grid is another entry
    files = sorted(p.name for p in (tmp_path / rc.FOLDER).iterdir())
    assert len(files) == 4 and not [f for f in files if ".tmp" in f]


def test_corrupt_entry_is_computed_again(tmp_path):
    frame = pd.DataFrame({"a": [1]})
    rc.cached_frame(tmp_path, "t", {"k": 1}, lambda: frame)
    (csv,) = (tmp_path / rc.FOLDER).glob("t-*.csv")
    csv.write_bytes(b"")
    assert rc.cached_frame(tmp_path, "t", {"k": 1}, lambda: frame)["a"].tolist() == [1]


def test_index_checksum_changes_with_a_rebuild(tmp_path):
    index, *_ = noisy_product_index(
        tmp_path / "a", seed=0, products=5, dim=16, noise=0.1, distractors=20, shard_size=10
    )
    other, *_ = noisy_product_index(
        tmp_path / "b", seed=1, products=5, dim=16, noise=0.1, distractors=20, shard_size=10
    )
    assert rc.index_checksum(tmp_path / "a") != rc.index_checksum(tmp_path / "b")
    assert rc.queries_digest(["q1"], np.ones((1, 2))) != rc.queries_digest(["q1"], np.zeros((1, 2)))


def test_evaluation_read_back_equals_computed(tmp_path):
    import dataclasses

    from eproduct_core.settings import SearchSettings

    index, queries, ids, truth = noisy_product_index(
        tmp_path / "ix", seed=2, products=12, dim=24, noise=0.2, distractors=60, shard_size=25
    )
    settings = SearchSettings(bits=64, mode="topk", k=10, rerank=0)
    key = {"settings": dataclasses.asdict(settings), "queries": rc.queries_digest(ids, queries)}

    def compute():
        return evaluate_search(index, queries, ids, truth, settings)

    made = rc.cached_evaluation(tmp_path, "eval", key, compute)
    read = rc.cached_evaluation(tmp_path, "eval", key, lambda: (_ for _ in ()).throw(AssertionError("recomputed")))
    assert read.results == made.results
    assert read.summary["mar@10_G"] == made.summary["mar@10_G"]
    assert read.per_query["query_id"].tolist() == ids
