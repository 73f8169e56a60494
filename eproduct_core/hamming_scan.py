"""The candidate scan: the rows whose first `probe_bits` code bits are nearest a query in Hamming distance.

This is the one pass over every row that a top-k search makes, so it is the part that must run at
memory speed. Two kernels give the same rows: faiss's `IndexBinaryFlat` (used when faiss is installed
and probe_bits is a multiple of 8) and numpy (`np.bitwise_count` over contiguous uint64 columns, a
threshold from a sample histogram, one `flatnonzero`). The faiss kernel is a *range* scan: the
query's distances to a fixed strided sample of rows (a small second IndexBinaryFlat) give a radius
that admits ~1.3x `count` rows, one `range_search` pass collects every row inside it (a popcount and
a compare per row; no per-row selection bookkeeping, ~2.5x faster than faiss's counting k-NN at
k = 8,192), and the `count` nearest are picked from those by (distance, row); a radius that admits
too few is widened and rescanned (rare). So both kernels return exactly the `count` nearest rows
with ties broken by lowest row, ascending. faiss is pinned to one OpenMP thread per call
(`faiss.omp_set_num_threads(1)`): callers parallelise over queries with Python threads (faiss and
numpy release the GIL), which degrade gracefully on a busy machine where OpenMP spins.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from . import lsh

log = logging.getLogger(__name__)

_faiss = None  # the faiss module once imported (lazily: importing it costs ~0.3 s and logs its CPU probing)
_faiss_checked = False

SAMPLE = 1 << 16  # rows whose distance histogram estimates the selection threshold
FAISS_SAMPLE = 1 << 14  # about this many strided rows estimate the range-scan radius per query
RADIUS_MARGIN = 1.3  # the radius aims at this many times `count` rows (sample noise, histogram steps)
_FULL = np.uint64(np.iinfo(np.uint64).max)
_scratch = threading.local()  # per-thread scan buffers: no fresh 10 MB allocation (page faults) per query


def faiss_available() -> bool:
    """Whether faiss (optional: `pip install faiss-cpu`, extras "bench"/"test") can be imported."""
    global _faiss, _faiss_checked
    if not _faiss_checked:
        _faiss_checked = True
        logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its INFO lines are noise in the CLI
        try:
            import faiss
        except ImportError:  # pragma: no cover - exercised only where faiss is absent
            faiss = None
        _faiss = faiss
    return _faiss is not None


def faiss_index(words: np.ndarray, probe_bits: int):
    """A faiss IndexBinaryFlat over the first `probe_bits` (multiple of 8) bits of every row.

    It carries `.sample` (an IndexBinaryFlat over every `stride`-th row) and `.stride` for the
    radius estimate of `faiss_scan`.
    """
    faiss_available()
    nbytes = probe_bits // 8
    packed = np.ascontiguousarray(words[:, : -(-nbytes // 8)].astype(">u8")).view(np.uint8)
    packed = np.ascontiguousarray(packed.reshape(len(words), -1)[:, :nbytes])
    index = _faiss.IndexBinaryFlat(probe_bits)
    index.add(packed)
    index.use_heap = False  # counting selection (the fallback): much faster than a heap for thousands of rows
    index.stride = max(1, len(packed) // FAISS_SAMPLE)
    index.sample = _faiss.IndexBinaryFlat(probe_bits)
    index.sample.add(np.ascontiguousarray(packed[:: index.stride]))
    index.sample.use_heap = False  # its k is ~1.3 count / stride: hundreds to thousands of rows
    return index


def smallest(values: np.ndarray, count: int, max_value: int) -> np.ndarray:
    """Indices (ascending) of the `count` smallest integer values; ties broken by lowest index."""
    if count >= len(values):
        return np.arange(len(values))
    if len(values) <= SAMPLE:  # exact histogram: the boundary value, then the lowest-index ties at it
        cumulative = np.cumsum(np.bincount(values, minlength=max_value + 1))
        t = int(np.searchsorted(cumulative, count))
        keep = values < t
        keep[np.flatnonzero(values == t)[: count - (int(cumulative[t - 1]) if t else 0)]] = True
        return np.flatnonzero(keep)
    sample = values[: min(len(values), SAMPLE)]
    cumulative = np.cumsum(np.bincount(sample, minlength=max_value + 1)) * (len(values) / len(sample))
    t = int(min(np.searchsorted(cumulative, count), max_value))
    while t < max_value and np.count_nonzero(values <= t) < count:
        t += 1
    while t > 0 and np.count_nonzero(values <= t - 1) >= count:
        t -= 1
    picked = np.flatnonzero(values <= t)
    if len(picked) > count:
        at_edge = values[picked] == t
        keep = ~at_edge | (np.cumsum(at_edge) <= count - np.count_nonzero(~at_edge))
        picked = picked[keep]
    return picked


def _buffers(rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    buffers = getattr(_scratch, "buffers", None)
    if buffers is None or len(buffers[0]) != rows:
        buffers = (np.empty(rows, np.uint64), np.empty(rows, np.uint8), np.empty(rows, np.uint8))
        _scratch.buffers = buffers
    return buffers


def numpy_scan(columns: list[np.ndarray], qwords: np.ndarray, probe_bits: int, count: int) -> np.ndarray:
    """Rows (ascending) of the `count` nearest `probe_bits`-bit prefixes (ties: lowest row), by numpy.

    `columns[j]` is the contiguous (rows,) uint64 column of code word j (`Index.column(j)`).
    """
    masks = lsh.word_masks(probe_bits)
    xor, dist, part = _buffers(len(columns[0]))
    for j, mask in enumerate(masks):
        np.bitwise_xor(columns[j], qwords[j], out=xor)
        if mask != _FULL:
            np.bitwise_and(xor, mask, out=xor)
        np.bitwise_count(xor, out=part if j else dist)
        if j:
            np.add(dist, part, out=dist)
    return smallest(dist, count, probe_bits)


def faiss_scan(index, qwords: np.ndarray, probe_bits: int, count: int) -> list[np.ndarray]:
    """Rows (ascending, per query) of the `count` nearest prefixes for a batch of query words (q, w)."""
    nbytes = probe_bits // 8
    queries = np.ascontiguousarray(qwords.astype(">u8")).view(np.uint8).reshape(len(qwords), -1)[:, :nbytes]
    queries = np.ascontiguousarray(queries)
    _faiss.omp_set_num_threads(1)  # callers parallelise over queries with threads; OpenMP on a busy box stalls
    count = min(count, index.ntotal)
    sample = getattr(index, "sample", None)
    expected = -(-count * RADIUS_MARGIN // getattr(index, "stride", 1))  # sample rows inside the wanted radius
    if sample is None or count * 4 > index.ntotal or expected >= sample.ntotal:
        _, labels = index.search(queries, count)  # counting k-NN: ties at the boundary go to the lowest rows
        return [np.sort(row[row >= 0]) for row in labels]
    dists = sample.search(queries, int(expected))[0]
    return [_range_rows(index, queries[i : i + 1], int(dists[i, -1]) + 1, probe_bits, count)
            for i in range(len(queries))]


def _range_rows(index, query: np.ndarray, radius: int, probe_bits: int, count: int) -> np.ndarray:
    """The `count` nearest rows (ascending; ties: lowest row) from a range scan, widening a short radius."""
    while True:
        _, dist, rows = index.range_search(query, radius)  # every row with distance < radius
        if len(rows) >= count or radius > probe_bits:
            break
        log.debug("range scan radius %d admitted %d < %d rows; widening", radius, len(rows), count)
        radius += 1 + (count - len(rows)) * 2 // count
    if len(rows) and np.any(rows[1:] <= rows[:-1]):  # faiss scans rows in order; never rely on it blindly
        order = np.argsort(rows, kind="stable")
        rows, dist = rows[order], dist[order]
    return rows[smallest(dist.astype(np.int64), count, probe_bits)]
