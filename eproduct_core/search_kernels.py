"""The compute kernels of a top-k search, compiled (numba) with numpy fallbacks that give the same rows.

search.py composes them; each takes plain arrays (the index's columns, words and vectors).
- `scan`, the candidate scan: the `count` rows whose first `probe_bits` code bits are nearest a
  query, exactly (ties: lowest row), ascending. It is the one pass over every row a search makes.
  The numba kernel (numba_kernels.py) estimates a radius admitting ~1.3x `count` rows from a
  contiguous strided sample (`radius_sample`: 8,192 rows or one in 64, whichever is more), collects
  every row within it in one compiled pass (xor, popcount, compare; widened and repeated if it admits
  too few, rare), then selects exactly:
  ~0.8 ms for 1.1M 128-bit prefixes, near the memory-bandwidth floor. The numpy kernel computes full
  distance arrays (np.bitwise_count over the word columns) and selects by histogram: ~3x slower.
- `partition_scan`, the candidate scan over the rows of some k-means partitions only (partitions.py): the
  same selection (exact, ties: lowest row) over their prefixes, kept in partition order (`Parts`); the
  numba kernel counts the distances, then marks the kept rows in two row bitmaps and reads them back in row
  order (two passes, no per-row buffer, no sort).
- `probed_lists`, which partitions a query probes: the centroids (float16) of largest exact dot product (a
  low-rank sketch of them, centroid_sketch.py, rules most out first).
- `rows_hamming`, `rows_weighted`, `rows_cosine`, `nearest`: distances of chosen rows (thousands).
- `best_rows` (stages 1-3 for one query) and `reranked` (stages 1-4 for a batch, on the index arrays and stage
  sizes `bind` prepares once): one GIL-free compiled call each, so Python threads searching parts of a batch
  run in parallel.
`kernel` arguments: "auto" (numba when it imports), "numba" or "numpy".
"""

from __future__ import annotations

import logging
import threading
from typing import Any, NamedTuple

import numpy as np

from . import centroid_sketch, lsh
from .errors import EproductError

log = logging.getLogger(__name__)

SAMPLE = 1 << 16  # rows whose distance histogram estimates the numpy kernel's selection threshold
# The numba kernel's radius is estimated per query on a strided sample of at least RADIUS_SAMPLE rows and at least one
# row in RADIUS_EVERY: a sample expecting too few rows inside the radius misjudges it and the pass over every row is
# repeated (8,192 rows at 10M: 8 of 100 queries repeated at 12,288 candidates; benchmarks/RESULTS-radius-sample.md).
RADIUS_SAMPLE = 1 << 13
RADIUS_EVERY = 64
RADIUS_MARGIN = 1.3  # the radius aims at this many times `count` rows (sample noise, histogram steps)
_FULL = np.uint64(np.iinfo(np.uint64).max)
_HALF_TO_FLOAT = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)  # every float16 exactly
_scratch = threading.local()  # per-thread scan buffers: no fresh 10 MB allocation (page faults) per query
_kernels: Any = None  # numba_kernels once imported (lazily: importing numba alone takes ~0.5 s)
_kernels_checked = False
_prepared = False  # whether `prepare` has compiled the kernels in this process
KERNELS = ("auto", "numba", "numpy")  # "auto": numba when it imports, else numpy; the others: that one or an error


class Stages(NamedTuple):
    """The stage sizes of one top-k search, by the names SearchSettings gives them (resolved: every stage
    keeps at least the rows of the next). A tuple of ints, so the compiled kernels take it as it is."""

    probe_bits: int  # code prefix scanned over every row (stage 1); = bits for an exact Hamming scan
    bits: int  # hash length of the full Hamming ranking (stage 2) and weighted Hamming (stage 3)
    candidates: int  # rows kept by the prefix scan (stage 1)
    shortlist: int  # of those, rows kept by full Hamming distance (stage 2)
    rerank: int  # of those, rows kept by weighted Hamming (stage 3) and re-ranked by exact cosine (stage 4)
    top: int = 0  # of those, rows returned (the search's k), best first; 0: every re-ranked row


class Store(NamedTuple):
    """The index arrays a top-k search reads (index_store.Index holds them)."""

    columns: np.ndarray  # (words, rows) uint64: the first words of every code, word-major (Index.scan_arrays)
    sample: np.ndarray  # radius_sample(columns)
    words: np.ndarray  # (rows, words) uint64: every code (lsh.to_words)
    vectors: np.ndarray  # (rows, dim) float16 (unit rows, see index.py)


class Parts(NamedTuple):
    """The partitions a stage 1 can probe instead of the flat scan (partitions.Partitions holds them)."""

    columns: np.ndarray  # (words, rows) uint64: the first code words of every row, in list order
    rows: np.ndarray  # (rows,) int64: the row at each list position
    offsets: np.ndarray  # (lists + 1,) int64: list l is positions offsets[l]:offsets[l + 1]


class Ranked(NamedTuple):
    """One query's rows from `reranked`, best first, with what its search result reports of them."""

    rows: np.ndarray  # int64 row numbers
    hamming: np.ndarray  # int64 Hamming distances at stages.bits
    cosine: np.ndarray  # float64 exact cosine distances
    code_cosine: np.ndarray  # float64 code cosine distances, eq. (4), at stages.bits


NO_PARTS = Parts(np.zeros((1, 0), np.uint64), np.zeros(0, np.int64), np.zeros(1, np.int64))  # the flat scan's


class Bound(NamedTuple):
    """`reranked`'s per-index arguments for one set of stage sizes, in the forms both kernels read (`bind`):
    made once per opened index and settings (search.py keeps them), not once per query."""

    store: Store  # as given: what the numpy kernel reads
    parts: Parts  # NO_PARTS for the flat scan
    stages: Stages  # plain ints
    compiled_store: Store  # the scan arrays cut to the probed words, vectors as uint16 bit patterns
    compiled_parts: Parts  # the partitions' columns cut to the probed words


def bind(store: Store, stages: Stages, parts: Parts = NO_PARTS) -> Bound:
    """`reranked`'s fixed arguments for `store` (and `parts`, when stage 1 probes partitions) at `stages`."""
    stages = Stages(*(int(v) for v in stages))
    nwords = -(-stages.probe_bits // 64)
    compiled_parts = Parts(parts.columns[:nwords], parts.rows, parts.offsets)
    return Bound(store, parts, stages, _compiled_store(store, stages.probe_bits), compiled_parts)


def numba_available() -> bool:
    """Whether the compiled kernel (numba) can be used; if not, scans fall back to numpy."""
    global _kernels, _kernels_checked
    if not _kernels_checked:
        _kernels_checked = True
        try:
            from . import numba_kernels

            _kernels = numba_kernels
        except ImportError as err:  # pragma: no cover - exercised only where numba is absent
            log.warning("numba is not available (%s): search uses the numpy kernels (~2x slower)", err)
            _kernels = None
    return _kernels is not None


def prepare() -> bool:
    """Import and compile the kernels now (~9 s the very first time on a machine, ~0.7 s from numba's disk
    cache after that) rather than inside the first search; returns whether they are available."""
    global _prepared
    if _prepared or not numba_available():
        return _prepared
    words = np.zeros((8, 4), dtype=np.uint64)
    columns = np.ascontiguousarray(words[:, :2].T)
    vectors, queries = np.zeros((8, 4), np.float16), np.ones((1, 4), np.float32)
    store = Store(columns, radius_sample(columns), words, vectors)
    reranked(bind(store, Stages(128, 256, 4, 2, 1)), words[:1], np.ones((1, 256), np.float32), queries)
    parts = Parts(columns, np.arange(8), np.array([0, 8]))
    lists = np.zeros((1, 1), np.int64)
    bound = bind(store, Stages(128, 256, 4, 2, 1), parts)
    reranked(bound, words[:1], np.ones((1, 256), np.float32), queries, "auto", lists)
    probed_lists(vectors.view(np.uint16), queries, 2, 1.0)
    best_rows(store, Stages(128, 256, 4, 2, 1), words[0], np.ones(256, np.float32))
    scan(columns, words[0], 100, 2)
    nearest(np.arange(8), 2, 8)
    rows_hamming(words, np.arange(2), words[0], 100)
    sign_words(np.ones((1, 256), np.float32))
    code_counts(words, np.arange(2), words[0], 100)
    rows_cosine(vectors, np.arange(2), queries[0])
    nearest_cosine(vectors, np.arange(2), queries[0], 1)
    _prepared = True
    return True


def _compiled(kernel: str) -> bool:
    """Whether `kernel` means the compiled loops: "auto" when numba imports, "numba" always (an EproductError
    when numba is missing: asking for it never quietly runs numpy), "numpy" never."""
    if kernel not in KERNELS:
        raise EproductError(f"kernel must be one of {KERNELS}; got {kernel!r}.")
    if kernel == "numba" and not numba_available():
        raise EproductError(
            "kernel 'numba' was asked for but numba does not import here; install it "
            "(pip install numba) or ask for kernel 'auto' or 'numpy'."
        )
    return kernel != "numpy" and numba_available()


def scan(
    columns: np.ndarray,
    qwords: np.ndarray,
    probe_bits: int,
    count: int,
    kernel: str = "auto",
    sample: np.ndarray | None = None,
) -> np.ndarray:
    """Rows (ascending) of the `count` nearest `probe_bits`-bit prefixes (ties: lowest row).

    `sample`: `radius_sample(columns)` if the caller keeps one (else it is taken on each call).
    """
    if _compiled(kernel):
        return numba_scan(columns, qwords, probe_bits, count, sample)
    return numpy_scan(columns, qwords, probe_bits, count)


def radius_sample(columns: np.ndarray) -> np.ndarray:
    """Every k-th row of `columns` (about max(RADIUS_SAMPLE, rows / RADIUS_EVERY) rows), contiguous: the numba
    kernel's radius estimate reads it instead of striding through all rows."""
    rows = columns.shape[1]
    return np.ascontiguousarray(columns[:, :: max(1, rows // max(RADIUS_SAMPLE, rows // RADIUS_EVERY))])


def sign_words(projections: np.ndarray, kernel: str = "auto") -> np.ndarray:
    """The query codes of hyperplane projections (q, bits): lsh.to_words(lsh.pack(projections > 0)), in one
    compiled call where numba is available (a query's four numpy steps cost more than its bits)."""
    if _compiled(kernel):
        return _kernels.sign_words(np.ascontiguousarray(projections, dtype=np.float32))
    return lsh.to_words(lsh.pack(projections > 0))


def rows_hamming(
    words: np.ndarray, rows: np.ndarray, qwords: np.ndarray, bits: int, kernel: str = "auto"
) -> np.ndarray:
    """Hamming distances (len(rows),) int64 over the first `bits` bits of the given rows' codes."""
    if _compiled(kernel):
        masks = lsh.word_masks(bits)
        return _kernels.rows_hamming(words, np.asarray(rows, dtype=np.int64), qwords[: len(masks)], masks)
    return lsh.hamming(qwords, np.take(words, rows, axis=0), bits)


def code_counts(
    words: np.ndarray, rows: np.ndarray, qwords: np.ndarray, bits: int, kernel: str = "auto"
) -> tuple[np.ndarray, np.ndarray, int]:
    """The counts of eq. (4) at `bits` for the given rows: (overlaps with the query's code, the rows' code
    weights), each (len(rows),) int64, and the query code's weight."""
    masks = lsh.word_masks(bits)
    q = qwords[: len(masks)] & masks
    qweight = int(np.bitwise_count(q).sum())
    if _compiled(kernel):
        both, weights = _kernels.rows_code_counts(words, np.asarray(rows, dtype=np.int64), q, masks)
        return both, weights, qweight
    block = np.take(words, rows, axis=0)[:, : len(masks)] & masks
    return lsh.popcount(block & q), lsh.popcount(block), qweight


def rows_weighted(
    words: np.ndarray, rows: np.ndarray, projections: np.ndarray, bits: int, kernel: str = "auto"
) -> np.ndarray:
    """Weighted Hamming distances (len(rows),) float64 (lsh.py) over the first `bits` bits of the given rows."""
    if _compiled(kernel):
        return _kernels.rows_weighted(words, np.asarray(rows, dtype=np.int64), _compiled_table(projections, bits))
    return lsh.weighted_hamming(projections, np.take(words, rows, axis=0), bits)


def rows_cosine(vectors: np.ndarray, rows: np.ndarray, query: np.ndarray, kernel: str = "auto") -> np.ndarray:
    """Exact cosine distances (len(rows),) float64 between `query` and the given rows of float16 `vectors`;
    both kernels do the same float64 arithmetic in the same order (numba_kernels.rows_cosine): same bits."""
    rows = np.asarray(rows, dtype=np.int64)
    query = np.ascontiguousarray(query, dtype=np.float32)
    if _compiled(kernel):
        return _kernels.rows_cosine(vectors.view(np.uint16), rows, query)
    return numpy_rows_cosine(vectors, rows, query)


def nearest_cosine(
    vectors: np.ndarray, rows: np.ndarray, query: np.ndarray, top: int, kernel: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """The `top` of `rows` nearest `query` by exact cosine distance (`rows_cosine`; ties: lowest row), best
    first, as (indices into `rows`, their distances); every row when top is 0 or >= len(rows). The compiled
    kernel computes exact distances only for the rows a float32 pass cannot rule out (numba_kernels.
    nearest_cosine); both kernels return the same indices and bits."""
    rows = np.asarray(rows, dtype=np.int64)
    by_row = np.argsort(rows, kind="stable")
    if _compiled(kernel):
        picked, cosine = _kernels.nearest_cosine(vectors.view(np.uint16), rows[by_row], query, int(top))
        return by_row[picked], cosine
    cosine = rows_cosine(vectors, rows[by_row], query, kernel)
    order = np.argsort(cosine, kind="stable")[: top or None]
    return by_row[order], cosine[order]


LANES = 8  # = numba_kernels.LANES: the cosine's partial sums (kept here so numpy needs no numba import)


def numpy_rows_cosine(vectors: np.ndarray, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The numpy kernel of `rows_cosine`, the compiled loop's arithmetic exactly: exact float64 products,
    element j added to lane j % 8 in order of j (zero padding adds nothing), lanes combined as
    ((0+1)+(2+3))+((4+5)+(6+7)). Never a pairwise or BLAS sum, whose order differs."""
    bits16 = np.take(vectors, rows, axis=0).view(np.uint16)
    picked = np.take(_HALF_TO_FLOAT, bits16).astype(np.float64)  # (rows, dim), exact (a table: numpy's cast is slow)
    q = np.asarray(query, dtype=np.float32).astype(np.float64)
    dot, norm = _lane_sums(picked * q), _lane_sums(picked * picked)
    query_norm = float(_lane_sums((q * q)[None, :])[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = 1.0 - dot / np.sqrt(norm * query_norm)
    return np.where((norm > 0) & (query_norm > 0), dist, 1.0)


def _lane_sums(products: np.ndarray) -> np.ndarray:
    """Row sums of (rows, dim) exact products in numba_kernels.rows_cosine's order."""
    rows, dim = products.shape
    if rows == 0 or dim == 0:
        return np.zeros(rows)
    if dim % LANES:
        padded = np.zeros((rows, -(-dim // LANES) * LANES))
        padded[:, :dim] = products
        products = padded
    blocks = products.reshape(rows, -1, LANES)  # (rows, blocks, lanes)
    lanes = blocks[:, 0].copy()  # 0.0 + x is x
    for b in range(1, blocks.shape[1]):  # block by block: each lane in order of j
        lanes += blocks[:, b]
    return ((lanes[:, 0] + lanes[:, 1]) + (lanes[:, 2] + lanes[:, 3])) + (
        (lanes[:, 4] + lanes[:, 5]) + (lanes[:, 6] + lanes[:, 7])
    )


def nearest(values: np.ndarray, count: int, max_value: int, kernel: str = "auto") -> np.ndarray:
    """Indices (ascending) of the `count` smallest integer values in [0, max_value]; ties: lowest index."""
    if _compiled(kernel) and count < len(values):
        return _kernels.select_nearest(np.asarray(values, dtype=np.int64), count, max_value)
    return smallest(values, count, max_value)


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
    estimated = np.cumsum(np.bincount(sample, minlength=max_value + 1)) * (len(values) / len(sample))
    t = min(int(np.searchsorted(estimated, count)), max_value)
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


def _buffers(rows: int, dtype: type) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """This thread's (distances, distances, uint64 words) scratch arrays for the numpy scan; distances are
    uint8 for prefixes of up to 255 bits (faster), uint16 for longer ones (up to 4,096 bits: never wrap)."""
    buffers = getattr(_scratch, "buffers", None)
    if buffers is None or len(buffers[0]) != rows or buffers[0].dtype != dtype:
        buffers = _scratch.buffers = (np.empty(rows, dtype), np.empty(rows, dtype), np.empty(rows, np.uint64))
    return buffers


def numba_scan(
    columns: np.ndarray, qwords: np.ndarray, probe_bits: int, count: int, sample: np.ndarray | None = None
) -> np.ndarray:
    """The numba kernel of `scan` (see the module doc)."""
    numba_available()
    nwords = -(-probe_bits // 64)
    sample = radius_sample(columns) if sample is None else sample
    return _kernels.nearest_prefixes(
        columns[:nwords],
        sample[:nwords],
        np.ascontiguousarray(qwords[:nwords]),
        probe_bits,
        count,
        RADIUS_MARGIN,
        _found_buffers(columns.shape[1]),
    )


def _found_buffers(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """This thread's (int64 rows, uint16 distances) buffers for the rows a compiled scan collects (uint16:
    prefix distances up to 4,096 bits; uint8 wrapped above 255)."""
    buffers = getattr(_scratch, "found", None)
    if buffers is None or len(buffers[0]) != rows:
        buffers = _scratch.found = (np.empty(rows, np.int64), np.empty(rows, np.uint16))
    return buffers


def _shared_buffers(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """This thread's (int64 rows, uint16 distances) buffers, (SCAN_QUERIES, rows) each, for the queries of a batch
    whose stage 1 shares one pass (numba_kernels.shared_prefixes); pages a query's rows never reach stay
    untouched."""
    buffers = getattr(_scratch, "shared", None)
    if buffers is None or buffers[0].shape[1] != rows:
        shape = (_kernels.SCAN_QUERIES, rows)
        buffers = _scratch.shared = (np.empty(shape, np.int64), np.empty(shape, np.uint16))
    return buffers


def _marks(rows: int) -> np.ndarray:
    """This thread's two zeroed row bitmaps for `numba_kernels.partition_prefixes` (it leaves them zeroed)."""
    marks = getattr(_scratch, "marks", None)
    if marks is None or marks.shape[1] != -(-rows // 64):
        marks = _scratch.marks = np.zeros((2, -(-rows // 64)), np.uint64)
    return marks


def _compiled_table(projections: np.ndarray, bits: int) -> np.ndarray:
    """One query's weighted Hamming table (lsh.weighted_table, bit for bit) from the compiled kernel."""
    return _kernels.weighted_table(np.ascontiguousarray(projections, dtype=np.float32), bits)


def _compiled_store(store: Store, probe_bits: int) -> Store:
    """`store` as the compiled kernels read it: the scan arrays cut to the probed words, vectors as uint16."""
    nwords = -(-probe_bits // 64)
    return Store(store.columns[:nwords], store.sample[:nwords], store.words, store.vectors.view(np.uint16))


def best_rows(
    store: Store,
    stages: Stages,
    qwords: np.ndarray,
    projections: np.ndarray,
    kernel: str = "auto",
    probed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Stages 1-3 of a top-k search (search.py) for one query: the `stages.candidates` rows nearest on the
    first `stages.probe_bits` bits, the `stages.shortlist` of those nearest in `stages.bits`-bit Hamming
    distance, and the `stages.rerank` of those nearest in weighted Hamming distance.
    Returns (rows, Hamming distances), best first; ties go to the lowest row. `probed`: stage 1's rows
    (ascending) when the caller has them (`partition_scan`)."""
    if probed is not None and _compiled(kernel):
        return _kernels.from_candidates(
            _compiled_store(store, stages.probe_bits),
            Stages(*(int(v) for v in stages)),
            np.ascontiguousarray(probed, dtype=np.int64),
            np.ascontiguousarray(qwords),
            _compiled_table(projections, stages.bits),
        )
    if _compiled(kernel):
        return _kernels.best_rows(
            _compiled_store(store, stages.probe_bits),
            Stages(*(int(v) for v in stages)),
            RADIUS_MARGIN,
            np.ascontiguousarray(qwords),
            _compiled_table(projections, stages.bits),
            _found_buffers(store.columns.shape[1]),
        )
    columns, words = store.columns, store.words
    if probed is None and stages.candidates < columns.shape[1]:
        probed = numpy_scan(columns, qwords, stages.probe_bits, stages.candidates)
    elif probed is None:
        probed = np.arange(columns.shape[1])
    hamming = rows_hamming(words, probed, qwords, stages.bits, kernel)
    shortlist = smallest(hamming, stages.shortlist, stages.bits)
    rows, hamming = probed[shortlist], hamming[shortlist]
    order = np.argsort(rows_weighted(words, rows, projections, stages.bits, kernel), kind="stable")
    order = order[: stages.rerank]
    return rows[order], hamming[order]


def reranked(
    bound: Bound,
    qwords: np.ndarray,
    projections: np.ndarray,
    queries: np.ndarray,
    kernel: str = "auto",
    lists: np.ndarray | None = None,
) -> list[Ranked]:
    """Stages 1-4 for a batch (q, ...) on `bound` (`bind`: the index's arrays and the stage sizes): per query
    the rows `best_rows` picks (stage 1 from the flat scan, or with `lists` (q, probes) from those partitions
    of `bound.parts`, `partition_scan`), ordered by exact cosine distance to their float16 vectors (ties:
    lowest row), the first `stages.top` of them (all when 0). Returns one `Ranked` per query, with the rows'
    code cosines at `stages.bits` (lsh.code_cosine_from_counts on `code_counts`, bit for bit), so the search's
    results need no second pass over the codes. The compiled kernel runs the whole batch in one GIL-free call."""
    store, parts, stages = bound.store, bound.parts, bound.stages
    lists = np.zeros((len(queries), 0), np.int64) if lists is None else np.ascontiguousarray(lists, dtype=np.int64)
    if _compiled(kernel):
        rows, hamming, cosine, code_cosine, filled = _kernels.reranked(
            bound.compiled_store,
            bound.compiled_parts,
            stages,
            RADIUS_MARGIN,
            np.ascontiguousarray(qwords),
            lists,
            np.ascontiguousarray(projections, dtype=np.float32),
            np.ascontiguousarray(queries, dtype=np.float32),
            _shared_buffers(store.words.shape[0]),
            _marks(store.words.shape[0]),
        )
        return [Ranked(rows[i, :c], hamming[i, :c], cosine[i, :c], code_cosine[i, :c]) for i, c in enumerate(filled)]
    out = []
    for i in range(len(queries)):
        probed = (
            partition_scan(parts, lists[i], qwords[i], stages.probe_bits, stages.candidates, kernel)
            if lists.shape[1]
            else None
        )
        picked, distances = best_rows(store, stages, qwords[i], projections[i], kernel, probed)
        exact = rows_cosine(store.vectors, picked, queries[i], kernel)
        order = np.lexsort((picked, exact))[: stages.top or None]
        both, weights, qweight = code_counts(store.words, picked[order], qwords[i], stages.bits, kernel)
        code_cosine = lsh.code_cosine_from_counts(both, weights, qweight)
        out.append(Ranked(picked[order], distances[order], exact[order], code_cosine))
    return out


def probed_lists(
    half: np.ndarray,
    queries: np.ndarray,
    probes: int,
    max_norm: float,
    kernel: str = "auto",
    sketch: centroid_sketch.Sketch | None = None,
) -> np.ndarray:
    """(queries, probes) int64, ascending: per query the `probes` partitions whose centroids (`half`, (lists, dim)
    float16 bit patterns; `max_norm` >= every centroid's norm) have the largest exact dot product with it
    (`numpy_list_scores`; ties: lowest list). The compiled kernel drops the lists a low-rank `sketch` of the
    centroids proves out (centroid_sketch.py), scores the rest in float32 with a proven error bound and only
    the few near the cut exactly (numba_kernels.probed_lists): both return the same lists."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    probes = max(1, min(int(probes), half.shape[0]))
    if _compiled(kernel):
        made = centroid_sketch.no_sketch(*half.shape) if sketch is None else sketch
        return _kernels.probed_lists(half, queries, probes, float(max_norm), *made)
    out = np.empty((len(queries), probes), dtype=np.int64)
    order = np.arange(half.shape[0])
    for i, query in enumerate(queries):
        out[i] = np.sort(np.lexsort((order, -numpy_list_scores(half, query)))[:probes])
    return out


def numpy_list_scores(half: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Exact dot products (lists,) float64 of float16 centroids (bit patterns) with one float32 query: exact
    float64 products summed in numba_kernels._lane_sum's order (`_lane_sums`)."""
    decoded = np.take(_HALF_TO_FLOAT, half).astype(np.float64)
    return _lane_sums(decoded * np.asarray(query, dtype=np.float32).astype(np.float64))


def partition_scan(
    parts: Parts, lists: np.ndarray, qwords: np.ndarray, probe_bits: int, count: int, kernel: str = "auto"
) -> np.ndarray:
    """Rows (ascending) of the `count` nearest `probe_bits`-bit prefixes among the rows of partitions `lists`
    (ties: lowest row); probing every list gives `scan`'s rows."""
    lists = np.ascontiguousarray(lists, dtype=np.int64)
    if _compiled(kernel):
        nwords = -(-probe_bits // 64)
        rows = len(parts.rows)
        return _kernels.partition_prefixes(
            Parts(parts.columns[:nwords], parts.rows, parts.offsets),
            lists,
            np.ascontiguousarray(qwords[:nwords]),
            probe_bits,
            count,
            _marks(rows),
        )
    starts, stops = parts.offsets[lists], parts.offsets[lists + 1]
    positions = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops, strict=True)] or [np.zeros(0, int)])
    masks = lsh.word_masks(probe_bits)
    dist = np.zeros(len(positions), np.int64)
    for j, mask in enumerate(masks):
        dist += np.bitwise_count((parts.columns[j, positions] ^ qwords[j]) & mask)
    rows = parts.rows[positions]
    return np.sort(rows[np.lexsort((rows, dist))[:count]])


def numpy_scan(columns: np.ndarray, qwords: np.ndarray, probe_bits: int, count: int) -> np.ndarray:
    """The numpy kernel of `scan`: `columns[j]` is the contiguous (rows,) uint64 column of code word j."""
    masks = lsh.word_masks(probe_bits)
    dist, part, xor = _buffers(columns.shape[1], np.uint8 if probe_bits <= 255 else np.uint16)
    for j, mask in enumerate(masks):
        np.bitwise_xor(columns[j], qwords[j], out=xor)
        if mask != _FULL:
            np.bitwise_and(xor, mask, out=xor)
        np.bitwise_count(xor, out=part if j else dist)
        if j:
            np.add(dist, part, out=dist)
    return smallest(dist, count, probe_bits)
