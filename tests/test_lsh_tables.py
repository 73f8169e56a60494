"""Prefix-bucket tables: probing everything equals the flat scan; fewer probes see fewer rows; files checked."""

from __future__ import annotations

import numpy as np
import pytest

from eproduct_core import lsh_tables, search
from eproduct_core.errors import EproductError
from eproduct_core.index import build_index, open_index
from eproduct_core.settings import SearchSettings


def _data(n: int = 3000, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    q = x[rng.choice(n, 20, replace=False)] + 0.3 * rng.standard_normal((20, dim)).astype(np.float32)
    return x, q


@pytest.fixture
def index(tmp_path):
    x, _ = _data()
    folder = build_index(x, None, tmp_path / "idx", bits=128, shard_size=1000)
    opened = open_index(folder)
    lsh_tables.build_tables(opened, tables=4, key_bits=8)  # 256 buckets per table: 256 probes reach them all
    return open_index(folder)


@pytest.mark.parametrize("rerank", [0, 32])
def test_probing_every_bucket_returns_the_flat_scan_rows(index, rerank):
    _, q = _data()
    flat = SearchSettings(k=10, rerank=rerank, shortlist=200, probe_bits=128, candidates=index.size)
    tables = flat.replace(table_probes=256)
    for a, b in zip(search.search(index, q, flat), search.search(index, q, tables), strict=True):
        assert a.rows.tolist() == b.rows.tolist()
        assert b.candidates == index.size


def test_fewer_probes_see_fewer_rows_and_the_query_bucket_first(index):
    _, q = _data()
    tables = lsh_tables.tables_of(index)
    projections = index.project(q[:1])[0]
    one, some = tables.candidates(projections, 1), tables.candidates(projections, 16)
    assert 0 < len(one) < len(some) < index.size
    assert set(one.tolist()) <= set(some.tolist())
    keys = lsh_tables._keys(index.words, 4, 8)
    qkeys = lsh_tables._query_keys(projections, 4, 8)
    same_bucket = np.flatnonzero((keys == qkeys[:, None]).any(axis=0))
    assert one.tolist() == same_bucket.tolist()  # one probe: exactly the rows sharing a substring with the query


def test_tables_are_checked(index):
    assert lsh_tables.verify_tables(index) == []
    path = index.path / lsh_tables.ORDER_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    assert lsh_tables.verify_tables(index)


def test_table_probes_without_tables_is_a_clear_error(tmp_path):
    x, q = _data(500)
    bare = open_index(build_index(x, None, tmp_path / "bare", bits=64))
    with pytest.raises(EproductError, match="index tables"):
        search.search(bare, q, SearchSettings(table_probes=4))
    with pytest.raises(EproductError, match="table_probes"):
        SearchSettings(table_probes=-1)
