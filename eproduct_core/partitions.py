"""Coarse partitions of an index's rows (inverted lists): a candidate stage whose cost grows slower than the index.

(An index can also store residual codes of its rows against these centroids, residual.py: rebuilding the
partitions rebuilds them.)

Owns `build_partitions` (spherical k-means over the stored vectors, written into the index folder with
checksums in its manifest, key "partitions"), `open_partitions`, `partitions_of`, `verify_partitions` and
`Partitions.lists_for` (which lists a query probes). numpy only; the choice of lists and the scan of the probed
lists are search_kernels.probed_lists and partition_scan (compiled, with numpy twins that give the same lists
and rows).

The rows are grouped by their nearest of `lists` centroids (cosine, k-means on a seeded sample of the
stored unit vectors). Stored beside the codes: the centroids (float32), the row number at each list position
(`rows`, lists one after another, each ascending), `offsets` (list l is positions offsets[l]:offsets[l+1])
and a copy of the first PREFIX_WORDS code words in list order (`columns`, word-major), so the scan of a
probed list reads contiguous memory. A query probes the `probes` lists whose centroids, rounded to float16 when
loaded (half the bytes to read per query), have the largest exact inner product with it (ties: lowest list);
stage 1 of a top-k search then keeps the `candidates` rows of those lists nearest in prefix Hamming distance (ties: lowest row), and stages 2-4 rank them exactly as after the flat scan
(search.py). The random-hyperplane codes stay the index's; the partitions only choose which rows' codes
are read. Probing every list gives every row: the flat scan's result (tested).

Cost: probes x rows/lists code prefixes plus lists x dim for the centroid scores (much less where the
centroids' low-rank sketch, centroid_sketch.py, rules most lists out: its rank is chosen here at build time and
kept in the manifest); lists defaults to about sqrt(rows) / 2 (a power of two), so both terms grow as sqrt(rows).
Past TREE_FROM lists the k-means is two-level (`_tree`): fitting 4,096 lists on 1.1M x 512 took ~70 s flat,
the tree ~8 s, at a few percent more rows scanned for the same coverage of the true neighbours.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.sparse

from . import centroid_sketch, search_kernels
from .errors import EproductError

PREFIX_WORDS = 4  # code words copied in list order: the scan reads up to 256-bit prefixes from them
LISTS_RANGE = (1, 65536)
KMEANS_ITERATIONS = 10
SAMPLE_PER_LIST = 40  # k-means is fitted on about this many sampled rows per list (at least MIN_SAMPLE)
MIN_SAMPLE = 20_000
BLOCK = 1 << 13  # rows assigned per matrix product
TREE_FROM = 1024  # more lists than this are fitted and assigned as a two-level tree (`_tree`)
TREE_PROBES = 2  # a row's list is the nearest among the lists of this many nearest coarse groups
TREE_BLOCK = 1 << 16  # rows per block of the tree's assignment (fewer, larger products per group)
SKETCH_SAMPLE = 200  # index rows, as queries, on which the centroids' sketch rank is chosen
FILES = {
    "centroids": "partitions-centroids.npy",
    "rows": "partitions-rows.npy",
    "offsets": "partitions-offsets.npy",
    "columns": "partitions-columns.npy",
}


def default_lists(rows: int) -> int:
    """The power of two nearest sqrt(rows) / 2, at least 1 (8 at 256 rows, 256 at 210k, 512 at 1.1M): scoring the
    centroids reads lists x dim floats per query (at d = 1280, 512 lists took 0.12 ms a query, 256 lists 0.05 ms),
    so fewer, larger lists than sqrt(rows): the rows they add to the scan cost less."""
    return int(max(1, 2 ** round(math.log2(max(1.0, math.sqrt(rows) / 2)))))


@dataclass
class Partitions:
    """Loaded partitions of one index (see the module doc)."""

    centroids: np.ndarray  # (lists, dim) float32 unit rows
    rows: np.ndarray  # (rows,) int64: the row at each list position
    offsets: np.ndarray  # (lists + 1,) int64
    columns: np.ndarray  # (words, rows) uint64: the first code words, in list order
    rank: int = 0  # the rank of the centroids' sketch (centroid_sketch.py; 0: none), chosen at build time
    half: np.ndarray = field(init=False, repr=False)  # the centroids in float16 (bit patterns): what queries score
    max_norm: float = field(init=False)  # the largest norm among `half`'s rows
    squares: np.ndarray = field(init=False, repr=False)  # (lists,) float32 |c|^2 (residual.py's estimate)
    sketch: centroid_sketch.Sketch = field(init=False, repr=False)  # of `half`'s values: rules lists out

    def __post_init__(self) -> None:
        self.squares = np.einsum("ij,ij->i", self.centroids, self.centroids).astype(np.float32)
        self.half = self.centroids.astype(np.float16).view(np.uint16)
        decoded = self.half.view(np.float16).astype(np.float64)
        self.max_norm = float(np.linalg.norm(decoded, axis=1).max(initial=0.0))
        self.sketch = centroid_sketch.make_sketch(decoded, self.rank)

    @property
    def lists(self) -> int:
        return int(self.centroids.shape[0])

    def memory_bytes(self) -> int:
        return int(
            self.centroids.nbytes + self.half.nbytes + self.rows.nbytes + self.offsets.nbytes + self.columns.nbytes
        )

    def lists_for(self, queries: np.ndarray, probes: int, kernel: str = "auto") -> np.ndarray:
        """(queries, min(probes, lists)) int64, ascending: each query's `probes` lists of largest inner product
        with their float16 centroids (exact; ties: lowest list). Scoring half-precision centroids reads half the
        bytes (benchmarks/query_cost.py's "probed partitions" step); the order of the probed lists does not
        matter to the scan."""
        return search_kernels.probed_lists(self.half, queries, probes, self.max_norm, kernel, self.sketch)

    def ranking(self, query: np.ndarray) -> np.ndarray:
        """(lists,) every list by decreasing exact score against one query (ties: lowest list): the order whose
        first `probes` are `lists_for`'s."""
        scores = search_kernels.numpy_list_scores(self.half, np.asarray(query, dtype=np.float32).ravel())
        return np.lexsort((np.arange(self.lists), -scores))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _assign(vectors: np.ndarray, centroids: np.ndarray, threads: int | None = None) -> np.ndarray:
    """The nearest centroid (largest inner product; ties: lowest) of every row, block by block, the blocks
    shared by one thread per core (the products release the GIL; per-query code keeps one BLAS thread)."""
    out = np.empty(len(vectors), dtype=np.int64)

    def one(start: int) -> None:
        block = np.asarray(vectors[start : start + BLOCK], dtype=np.float32)
        out[start : start + len(block)] = np.argmax(block @ centroids.T, axis=1)

    starts = range(0, len(vectors), BLOCK)
    if threads == 1:
        for start in starts:
            one(start)
        return out
    with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
        list(pool.map(one, starts))
    return out


def _list_sums(rows: np.ndarray, labels: np.ndarray, lists: int) -> np.ndarray:
    """The sum (lists, dim) of the rows of each label (zero for an empty list): one sparse product, each
    list's rows added in row order, the same sums as np.add.at at a tenth of its time."""
    one_hot = scipy.sparse.csr_matrix(
        (np.ones(len(labels), dtype=rows.dtype), (labels, np.arange(len(labels)))), shape=(lists, len(labels))
    )
    return np.asarray(one_hot @ rows)


def fit_centroids(vectors: np.ndarray, lists: int, seed: int = 0) -> np.ndarray:
    """Spherical k-means centroids (lists, dim) float32 of a seeded sample of `vectors` (module doc)."""
    return _fit(vectors, lists, seed)[0]


def _fit(vectors: np.ndarray, lists: int, seed: int) -> tuple[np.ndarray, Groups | None]:
    """The centroids and, past TREE_FROM lists, the coarse groups they were fitted in (`_tree`); flat below."""
    rng = np.random.default_rng(seed)
    n = len(vectors)
    size = min(n, max(MIN_SAMPLE, SAMPLE_PER_LIST * lists))
    sample = _unit(np.asarray(vectors[np.sort(rng.choice(n, size, replace=False))], dtype=np.float32))
    if lists <= TREE_FROM:
        return _kmeans(sample, lists, rng), None
    return _tree(sample, lists, rng)


def _kmeans(sample: np.ndarray, lists: int, rng: np.random.Generator, threads: int | None = None) -> np.ndarray:
    """KMEANS_ITERATIONS rounds of spherical k-means on `sample` (rows >= lists), started at random rows."""
    size = len(sample)
    centroids = sample[rng.choice(size, lists, replace=False)].copy()
    for _ in range(KMEANS_ITERATIONS):
        labels = _assign(sample, centroids, threads)
        sums = _list_sums(sample, labels, lists)
        empty = np.flatnonzero(np.bincount(labels, minlength=lists) == 0)
        sums[empty] = sample[rng.choice(size, len(empty), replace=False)]  # an empty list restarts at a row
        centroids = _unit(sums).astype(np.float32)
    return centroids


class Groups(NamedTuple):
    """A two-level fit: coarse centroids (groups, dim) and where each group's lists lie (offsets, groups + 1)."""

    supers: np.ndarray
    offsets: np.ndarray


def _tree(sample: np.ndarray, lists: int, rng: np.random.Generator) -> tuple[np.ndarray, Groups]:
    """About sqrt(lists) coarse centroids, then each coarse group's sample rows cut into a share of the lists
    proportional to its size (`_shares`), the groups' lists one after another: fitting and assigning a row cost
    ~ sqrt(lists) x (1 + TREE_PROBES) products instead of lists (4,096 lists at 1.1M x 512: ~70 s flat)."""
    groups = int(2 ** round(math.log2(math.sqrt(lists))))
    coarse = sample[
        np.sort(rng.choice(len(sample), min(len(sample), max(MIN_SAMPLE, SAMPLE_PER_LIST * groups)), replace=False))
    ]
    supers = _kmeans(coarse, groups, rng)
    owner = _assign(sample, supers)
    shares = _shares(np.bincount(owner, minlength=len(supers)), lists)
    seeds = rng.integers(0, 2**63, len(shares))

    def group(g: int) -> np.ndarray:
        return _kmeans(sample[owner == g], int(shares[g]), np.random.default_rng(seeds[g]), threads=1)

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        fine = list(pool.map(group, [g for g in range(len(shares)) if shares[g]]))
    offsets = np.zeros(len(supers) + 1, dtype=np.int64)
    np.cumsum(shares, out=offsets[1:])
    return np.concatenate(fine), Groups(supers, offsets)


def _shares(counts: np.ndarray, lists: int) -> np.ndarray:
    """`lists` split over groups of `counts` rows, proportionally (largest remainders), none above its count."""
    exact = lists * counts / counts.sum()
    shares = np.minimum(np.floor(exact).astype(np.int64), counts)
    order = np.argsort(-(exact - shares), kind="stable")
    while shares.sum() < lists:  # the remainder, a list at a time, to groups with rows to spare
        for g in order:
            if shares.sum() < lists and shares[g] < counts[g]:
                shares[g] += 1
    return shares


def _tree_assign(vectors: np.ndarray, centroids: np.ndarray, groups: Groups) -> np.ndarray:
    """Each row's nearest list among those of its TREE_PROBES nearest coarse groups (ties: lowest list), in
    blocks of TREE_BLOCK rows on one thread per core: per block, the (row, group) pairs sorted by group, so each
    group's lists score its rows in one product."""
    out = np.empty(len(vectors), dtype=np.int64)
    near_count = min(TREE_PROBES, len(groups.supers))

    def one(start: int) -> None:
        block = np.asarray(vectors[start : start + TREE_BLOCK], dtype=np.float32)
        near = np.argpartition(-(block @ groups.supers.T), near_count - 1, axis=1)[:, :near_count].ravel()
        order = np.argsort(near, kind="stable")
        pair_rows = order // near_count
        bounds = np.searchsorted(near[order], np.arange(len(groups.supers) + 1))
        best = np.full(len(block), -np.inf, dtype=np.float32)
        label = np.zeros(len(block), dtype=np.int64)
        for g in range(len(groups.supers)):  # groups in list order: on a tie the lower list stays
            rows = pair_rows[bounds[g] : bounds[g + 1]]
            first, last = groups.offsets[g], groups.offsets[g + 1]
            if len(rows) == 0 or last == first:
                continue
            scores = block[rows] @ centroids[first:last].T
            arg = scores.argmax(axis=1)
            value = scores[np.arange(len(rows)), arg]
            better = value > best[rows]
            best[rows[better]] = value[better]
            label[rows[better]] = first + arg[better]
        out[start : start + len(block)] = label

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(one, range(0, len(vectors), TREE_BLOCK)))
    return out


def make_partitions(vectors: np.ndarray, words: np.ndarray, lists: int, seed: int = 0) -> Partitions:
    """Partitions of an index's unit `vectors` (rows, dim) and packed codes `words` (rows, words) into `lists`."""
    n = len(vectors)
    if not LISTS_RANGE[0] <= lists <= min(LISTS_RANGE[1], n):
        raise EproductError(
            f"lists = {lists}: an index of {n} rows can be cut into 1 to {min(LISTS_RANGE[1], n)} lists "
            f"(default about sqrt(rows) / 2: {default_lists(n)})."
        )
    centroids, groups = _fit(vectors, lists, seed)
    labels = _assign(vectors, centroids) if groups is None else _tree_assign(vectors, centroids, groups)
    rows = np.argsort(labels, kind="stable").astype(np.int64)  # each list ascending by row
    offsets = np.zeros(lists + 1, dtype=np.int64)
    np.cumsum(np.bincount(labels, minlength=lists), out=offsets[1:])
    columns = np.ascontiguousarray(words[rows, :PREFIX_WORDS].T)
    sample = np.sort(np.random.default_rng(seed).choice(n, min(n, SKETCH_SAMPLE), replace=False))
    rank = centroid_sketch.choose_rank(centroids.astype(np.float16), np.asarray(vectors[sample], dtype=np.float32))
    return Partitions(centroids, rows, offsets, columns, rank)


def build_partitions(index, lists: int | None = None, seed: int = 0) -> tuple[Partitions, float]:
    """Build partitions for an opened index (with vectors) and store them in its folder (checksums in its
    manifest, key "partitions"), replacing any there; returns them and the seconds the k-means took."""
    from .index_format import store_extra

    if not index.has_vectors:
        raise EproductError(
            f"Index {index.path} was built without vectors; partitions are fitted on them. Rebuild it with vectors."
        )
    start = time.perf_counter()
    made = make_partitions(index.vectors, index.words, default_lists(index.size) if lists is None else lists, seed)
    seconds = time.perf_counter() - start
    arrays = {role: (name, getattr(made, role)) for role, name in FILES.items()}
    store_extra(index, "partitions", arrays, {"lists": made.lists, "seed": seed, "sketch_rank": made.rank})
    index._partitions = made
    if index.manifest.get("residual"):  # codes of offsets from the old centroids: made again from the new ones
        from .residual import build_residual

        build_residual(index)
    return made, seconds


def open_partitions(index) -> Partitions | None:
    """The index's stored partitions (None when it has none); refuses files that disagree with the manifest."""
    entry = index.manifest.get("partitions")
    if not entry:
        return None
    folder = Path(index.path)
    try:
        arrays = {role: np.load(folder / entry["files"][role]["file"], allow_pickle=False) for role in FILES}
        lists, rank = int(entry["lists"]), int(entry.get("sketch_rank", 0))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise EproductError(
            f"Index {folder}: its partitions cannot be read ({err}). Rebuild them: `eproduct index partitions`."
        ) from err
    made = Partitions(**arrays, rank=rank)
    if (
        made.centroids.shape != (lists, index.dim)
        or made.rows.shape != (index.size,)
        or made.offsets.shape != (lists + 1,)
        or made.columns.shape[1] != index.size
    ):
        raise EproductError(f"Index {folder}: its partitions do not match its {index.size} rows; rebuild them.")
    return made


def partitions_of(index) -> Partitions:
    """The index's partitions, loaded once per opened index; an EproductError when it has none."""
    from .index_format import load_extra

    loaded = getattr(index, "_partitions", None)
    if loaded is not None:  # the per-query path: no message formatted
        return loaded
    return load_extra(
        index,
        "_partitions",
        open_partitions,
        f"Index {index.path} has no partitions; build them with `eproduct index partitions {index.path}` "
        "or search with partition_probes 0 (the flat prefix scan).",
    )


def verify_partitions(index) -> list[str]:
    """Checksum problems of the stored partitions ([] when sound or absent)."""
    from .index_format import verify_extra

    return verify_extra(index, "partitions", "partitions")
