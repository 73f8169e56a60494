"""Residual codes: each row's sign code of its offset from its partition centroid, with the offset's length.

Owns `build_residual` (written into the index folder with checksums in its manifest, key "residual"; needs the
index's partitions), `open_residual`, `residual_of`, `verify_residual` and `best_rows` (stages 1-3 of a top-k
search over the probed partitions, compiled with a numpy twin that returns the same rows). numpy and numba.

Why. On embeddings that all lean one way (class probabilities: the seed's embedding), the rows of one
neighbourhood differ by little next to what they share, and the random-hyperplane codes of the rows (even
centred, index.py) spend most of their bits on the shared part: the exact re-rank then needs 768-1,024 rows for
recall@10 0.95 (README, retrieval, seed-like). Coding the offset r = x - c of a unit row x from its list's
centroid c spends every bit on what tells the rows of one list apart (the IVF idea, with sign codes instead of
product quantisation).

Estimate. For a unit query q and a row x = c + r of list l,
    q.x = q.c + c.r + (q - c).r  ~  q.c + c.r + |q - c| |r| cos(pi h / B),
where h is the Hamming distance between the row's code sign(W r) and the query's code for that list,
sign(W (q - c)) = sign(W q - W c) (B bits of the index's hyperplanes W; W c is stored per list, so a list costs the
query B subtractions). Stored per row, in list order: the code words, |r| and c.r (float32); per list: W c
(float32; W (c - centre) on a centred index, whose query projections are those of q - centre: the difference is the
same). q.c is exact (float32 products of the float32 centroids) and |q - c| = sqrt(1 - 2 q.c + |c|^2).

Stages (SearchSettings of a top-k search with partition_probes P > 0 on an index with residual codes):
  1. over the rows of the P probed lists, the estimate from the first `probe_bits` bits keeps `candidates` rows;
  2. the estimate from all `bits` bits keeps `rerank` of those (the shortlist stage of the flat path has no
     counterpart: `shortlist` is unused);
  3. the caller ranks them by exact cosine on the float16 vectors (search.py).
Ties (equal float32 estimates) go to the lowest list position (rows are ascending within a list); the compiled kernel and the numpy twin compute the estimate
with the same float32 operations in the same order and return the same rows (tested).
"""

from __future__ import annotations

import functools
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import lsh, search_kernels
from .errors import EproductError
from .search_kernels import Stages

FILES = {
    "words": "residual-words.npy",
    "norms": "residual-norms.npy",
    "offsets": "residual-offsets.npy",
    "centroid_projections": "residual-centroid-projections.npy",
}
BLOCK = 1 << 14  # rows coded per matrix product at build
COLUMN_WORDS = 4  # code words copied word-major for stage 1 (prefixes up to 256 bits read contiguous memory)


class Residual(NamedTuple):
    """Loaded residual codes of one index (see the module doc); rows in the partitions' list order."""

    words: np.ndarray  # (rows, ceil(bits / 64)) uint64: bit b of word w is the sign of projection 64 w + b
    norms: np.ndarray  # (rows,) float32: |x - c|
    offsets: np.ndarray  # (rows,) float32: c . (x - c)
    centroid_projections: np.ndarray  # (lists, bits) float32: W c (W (c - centre) when centred)
    columns: np.ndarray  # (min(words, COLUMN_WORDS), rows) uint64: `words`' first words, word-major (stage 1)

    def memory_bytes(self) -> int:
        return int(sum(a.nbytes for a in self))


def _with_columns(words, norms, offsets, centroid_projections) -> Residual:
    columns = np.ascontiguousarray(words[:, :COLUMN_WORDS].T)
    return Residual(words, norms, offsets, centroid_projections, columns)


def pack_signs(projections: np.ndarray) -> np.ndarray:
    """(n, ceil(bits / 64)) uint64: bit b of word w set where projections[:, 64 w + b] > 0."""
    projections = np.atleast_2d(projections)
    bits = projections.shape[1]
    padded = np.zeros((len(projections), -(-bits // 64) * 64), dtype=bool)
    padded[:, :bits] = projections > 0
    return np.packbits(padded, axis=1, bitorder="little").view(np.uint64)


def word_masks(bits: int) -> np.ndarray:
    """uint64 masks (ceil(bits / 64),) keeping the first `bits` bits of `pack_signs`' words (the low bits of a
    partial last word: bit b of word w is projection 64 w + b)."""
    masks = np.full(-(-bits // 64), np.iinfo(np.uint64).max, dtype=np.uint64)
    if bits % 64:
        masks[-1] = np.uint64((1 << (bits % 64)) - 1)
    return masks


def make_residual(vectors: np.ndarray, planes: np.ndarray, centre, made) -> Residual:
    """Residual codes of unit `vectors` (rows, dim; any float dtype) against hyperplanes `planes` (bits, dim),
    for partitions `made` (partitions.Partitions); `centre` the index's stored centre or None. Rows are read and
    coded in row order (sequential reads of the stored vectors), then the codes are put in list order."""
    centroids = made.centroids.astype(np.float32)
    labels = np.empty(len(made.rows), dtype=np.int64)
    labels[made.rows] = np.repeat(np.arange(made.lists), np.diff(made.offsets))  # each row's list
    n = len(made.rows)
    words = np.empty((n, -(-len(planes) // 64)), dtype=np.uint64)
    norms, offsets = np.empty(n, np.float32), np.empty(n, np.float32)

    def block(start: int) -> None:
        x = np.asarray(vectors[start : start + BLOCK], dtype=np.float32)
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        own = centroids[labels[start : start + BLOCK]]
        r = x - own
        words[start : start + len(r)] = pack_signs(lsh.project(r, planes))
        norms[start : start + len(r)] = np.linalg.norm(r, axis=1)
        offsets[start : start + len(r)] = np.einsum("ij,ij->i", own, r)

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # the products release the GIL: one block per core
        list(pool.map(block, range(0, n, BLOCK)))
    shifted = centroids if centre is None else centroids - np.asarray(centre, dtype=np.float32)
    order = made.rows
    return _with_columns(
        words[order], norms[order], offsets[order], np.ascontiguousarray(lsh.project(shifted, planes), np.float32)
    )


def build_residual(index) -> tuple[Residual, float]:
    """Residual codes for an opened index with vectors and partitions, stored in its folder (checksums in its
    manifest, key "residual"), replacing any there; returns them and the seconds they took."""
    from . import partitions
    from .index_format import store_extra

    if not index.has_vectors:
        raise EproductError(f"Index {index.path} was built without vectors; residual codes are made from them.")
    if not index.manifest.get("partitions"):
        raise EproductError(
            f"Index {index.path} has no partitions; residual codes are offsets from their centroids. "
            f"Build them first: `eproduct index partitions {index.path}`."
        )
    made = partitions.partitions_of(index)
    start = time.perf_counter()
    codes = make_residual(index.vectors, index.planes, index.centre, made)
    seconds = time.perf_counter() - start
    arrays = {role: (name, getattr(codes, role)) for role, name in FILES.items()}
    store_extra(index, "residual", arrays, {"lists": made.lists, "bits": int(index.bits)})
    index._residual = (made, codes)
    return codes, seconds


def open_residual(index) -> Residual | None:
    """The index's stored residual codes (None when it has none); refuses files that disagree with the manifest
    or with its partitions."""
    entry = index.manifest.get("residual")
    if not entry:
        return None
    folder = Path(index.path)
    try:
        codes = _with_columns(
            **{role: np.load(folder / entry["files"][role]["file"], allow_pickle=False) for role in FILES}
        )
    except (OSError, ValueError, KeyError) as err:
        raise EproductError(
            f"Index {folder}: its residual codes cannot be read ({err}). Rebuild them: "
            f"`eproduct index partitions {folder} --residual`."
        ) from err
    lists = int((index.manifest.get("partitions") or {}).get("lists", -1))
    if (
        int(entry["lists"]) != lists
        or codes.words.shape != (index.size, -(-index.bits // 64))
        or codes.norms.shape != (index.size,)
        or codes.offsets.shape != (index.size,)
        or codes.centroid_projections.shape != (lists, index.bits)
    ):
        raise EproductError(
            f"Index {folder}: its residual codes do not match its rows or partitions; rebuild them "
            f"(`eproduct index partitions {folder} --residual`)."
        )
    return codes


def residual_of(index) -> Residual:
    """The index's residual codes, loaded once per opened index (and again after its partitions were rebuilt)."""
    from . import partitions

    made = partitions.partitions_of(index)
    loaded = getattr(index, "_residual", None)
    if loaded is not None and loaded[0] is made:
        return loaded[1]
    codes = open_residual(index)
    if codes is None:
        raise EproductError(f"Index {index.path} has no residual codes (`eproduct index partitions --residual`).")
    index._residual = (made, codes)
    return codes


def has_residual(index) -> bool:
    return bool(index.manifest.get("residual"))


def verify_residual(index) -> list[str]:
    """Checksum problems of the stored residual codes ([] when sound or absent)."""
    from .index_format import verify_extra

    return verify_extra(index, "residual", "residual codes")


class Query(NamedTuple):
    """What one query brings to `best_rows`: its per-list terms, computed once (`query_terms`)."""

    projections: np.ndarray  # (bits,) float32: W q (W (q - centre) on a centred index)
    dots: np.ndarray  # (lists,) float32: q . c
    distances: np.ndarray  # (lists,) float32: |q - c|


def query_terms(made, query: np.ndarray, projections: np.ndarray, centred: bool) -> Query:
    """The per-list terms of the estimate for one query against partitions `made` (partitions.Partitions: its
    centroids and their squared norms); `projections`: the index's projections of the query, as search.py
    computes them (of the raw query, or of its unit row minus the centre on a centred index)."""
    query = np.asarray(query, dtype=np.float32).ravel()
    length = max(float(np.linalg.norm(query)), 1e-12)
    unit = query / length
    p = np.asarray(projections, dtype=np.float32)
    if not centred:
        p = p / np.float32(length)
    dots = (made.centroids @ unit).astype(np.float32)
    distances = np.sqrt(np.maximum(np.float32(1) - np.float32(2) * dots + made.squares, np.float32(0)))
    return Query(np.ascontiguousarray(p, dtype=np.float32), dots, distances.astype(np.float32))


@functools.cache
def _cosines(bits: int) -> np.ndarray:
    """cos(pi h / bits) for h = 0..bits, float32 (read-only: one table per length, made once)."""
    table = np.cos(np.pi * np.arange(bits + 1) / bits).astype(np.float32)
    table.flags.writeable = False
    return table


def _list_words(centroid_projections: np.ndarray, lists: np.ndarray, query: Query) -> np.ndarray:
    """(len(lists), words) uint64: the query's code for each probed list, sign(W q - W c)."""
    return pack_signs(query.projections[None, :] - centroid_projections[lists])


def _estimates(codes: Residual, positions, probed, qwords, query: Query, lists, bits: int) -> np.ndarray:
    """float32 estimates of q.x (module doc) from the first `bits` bits, for rows at list `positions` whose lists
    are lists[probed]; the same operations, in the same order, as the compiled kernel."""
    hamming = np.zeros(len(positions), np.int64)
    for j, mask in enumerate(word_masks(bits)):
        hamming += np.bitwise_count((codes.words[positions, j] ^ qwords[probed, j]) & mask).astype(np.int64)
    labels = lists[probed]
    base = query.dots[labels] + codes.offsets[positions]
    scale = query.distances[labels] * codes.norms[positions]
    return (base + scale * _cosines(bits)[hamming]).astype(np.float32)


def _keys(estimates: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """uint64 sort keys, ascending = best first: the larger float32 estimate, then the lower list position (the
    compiled kernel's numba_kernels._descending_key)."""
    bits = np.asarray(estimates, dtype=np.float32).view(np.uint32).astype(np.uint64)
    order = np.where(bits & np.uint64(0x80000000), bits ^ np.uint64(0xFFFFFFFF), bits | np.uint64(0x80000000))
    return ((np.uint64(0xFFFFFFFF) - order) << np.uint64(32)) | positions.astype(np.uint64)


def _best(estimates: np.ndarray, positions: np.ndarray, count: int) -> np.ndarray:
    """Indices of the `count` largest estimates, best first (ties: lowest list position)."""
    return np.argsort(_keys(estimates, positions), kind="stable")[:count]


def numpy_best_rows(
    codes: Residual, rows: np.ndarray, offsets: np.ndarray, lists: np.ndarray, query: Query, stages: Stages
) -> np.ndarray:
    """Stages 1-2 (module doc) in numpy: the row numbers kept, best first; the compiled kernel's twin."""
    lists = np.asarray(lists, dtype=np.int64)
    sizes = offsets[lists + 1] - offsets[lists]
    positions = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in lists] or [np.zeros(0, np.int64)])
    positions = positions.astype(np.int64)
    probed = np.repeat(np.arange(len(lists)), sizes)
    qwords = _list_words(codes.centroid_projections, lists, query)
    estimates = _estimates(codes, positions, probed, qwords, query, lists, stages.probe_bits)
    first = _best(estimates, positions, stages.candidates)
    positions, probed = positions[first], probed[first]
    second = _best(_estimates(codes, positions, probed, qwords, query, lists, stages.bits), positions, stages.rerank)
    return rows[positions[second]]


def best_rows(
    codes: Residual,
    rows: np.ndarray,
    offsets: np.ndarray,
    lists: np.ndarray,
    query: Query,
    stages: Stages,
    kernel: str = "auto",
) -> np.ndarray:
    """Stages 1-2 (module doc) of one query over partitions `lists` (rows/offsets: the partitions' list order) at
    `stages` (probe_bits, bits, candidates and rerank read; shortlist unused): the row numbers whose exact cosines
    the caller ranks, best estimate first (ties: lowest list position)."""
    args = (codes, rows, offsets, np.unique(np.asarray(lists, dtype=np.int64)), query)  # ascending, distinct
    if search_kernels._compiled(kernel):
        from . import numba_kernels

        qwords = _list_words(codes.centroid_projections, args[3], query)
        return numba_kernels.residual_best_rows(
            codes.columns,
            codes.words,
            codes.norms,
            codes.offsets,
            rows,
            offsets,
            args[3],
            qwords,
            query.dots,
            query.distances,
            _cosines(stages.probe_bits),
            _cosines(stages.bits),
            word_masks(stages.probe_bits),
            word_masks(stages.bits),
            int(stages.candidates),
            int(stages.rerank),
        )
    return numpy_best_rows(*args, stages)
