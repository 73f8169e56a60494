"""run_cache.py: the cache key changes with everything that changes the vectors, and nothing else."""

from __future__ import annotations

import os
import shutil

import pytest

from eproduct_core.errors import EproductError
from eproduct_core.run_cache import cache_key, stored_bits


@pytest.fixture
def setup(tmp_path, tiny_catalog):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"weights v1")
    catalog = tmp_path / "catalog"
    shutil.copytree(tiny_catalog, catalog, ignore=shutil.ignore_patterns("images"))
    return run, catalog


def test_the_key_is_stable_and_names_split_and_kind(setup):
    run, catalog = setup
    key = cache_key(run, catalog, "query", "metric")
    assert key == cache_key(run, catalog, "query", "metric") and len(key) == 16
    assert key != cache_key(run, catalog, "index", "metric")
    assert key != cache_key(run, catalog, "query", "seed")


def test_an_edited_csv_or_a_retrained_checkpoint_changes_the_key(setup):
    run, catalog = setup
    key = cache_key(run, catalog, "query", "metric")
    with open(catalog / "query.csv", "a", encoding="utf-8") as handle:
        handle.write("")  # untouched bytes: same key
    assert cache_key(run, catalog, "query", "metric") == key
    lines = (catalog / "query.csv").read_text(encoding="utf-8").splitlines()
    (catalog / "query.csv").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    edited = cache_key(run, catalog, "query", "metric")
    assert edited != key
    stat = (run / "checkpoint.pt").stat()
    os.utime(run / "checkpoint.pt", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert cache_key(run, catalog, "query", "metric") != edited


def test_missing_pieces_are_user_errors(setup, tmp_path):
    run, catalog = setup
    with pytest.raises(EproductError, match="No checkpoint"):
        cache_key(tmp_path / "norun", catalog, "query", "metric")
    with pytest.raises(EproductError, match="does not exist"):
        cache_key(run, tmp_path / "nocatalog", "query", "metric")
    (catalog / "val.csv").unlink()
    with pytest.raises(EproductError, match="has no val.csv"):
        cache_key(run, catalog, "val", "metric")


@pytest.mark.parametrize(("bits", "stored"), [(1, 64), (20, 64), (64, 64), (65, 72), (256, 256), (1001, 1008)])
def test_cached_indexes_store_whole_bytes_and_at_least_64_bits(bits, stored):
    assert stored_bits(bits) == stored
