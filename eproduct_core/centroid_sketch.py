"""A low-rank sketch of the partition centroids: which lists a query can still probe, for a fraction of the cost.

Owns `Sketch` (an orthonormal basis B of r directions, the centroids' coordinates in it and each centroid's
distance from its span), `make_sketch`, `no_sketch`, `survivors` (the numpy statement of the bound the
compiled kernel uses, numba_kernels._sketch_survivors) and `choose_rank` (the rank a set of centroids pays
with, picked at build time from sample rows). numpy only.

Why: scoring every centroid reads lists x dim float16 per query (4,096 lists at d = 512: 4 MB, ~0.15 ms), which
kept the lists few and large. For any unit basis B, q.c = (Bq).(Bc) + (q - B'Bq).(c - B'Bc), so
|q.c - (Bq).(Bc)| <= |q - B'Bq| |c - B'Bc|: r-dimensional products plus that bound decide most lists, and only
those that can still reach the top `probes` are scored in full. The lists probed stay exactly those of the
full scoring (tested); a sketch that prunes little costs r / dim more, so `choose_rank` keeps it only where its
estimated cost is well below the full scoring's (rank 0: no sketch).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

RANKS = (8, 16, 32, 64, 128, 256)  # the ranks `choose_rank` tries (at most dim / 4)
WORTH = 0.5  # a sketch is kept when its estimated cost is below this fraction of scoring every centroid
PER_LIST = 16  # the sketch pass's work per list beyond its rank products (bounds, the k-th largest), in products
REFERENCE_SHARE = 8  # the cost is estimated for probing lists / REFERENCE_SHARE lists (tuned probes: 3-25%)


class Sketch(NamedTuple):
    """B (rank, dim) float64 orthonormal rows, coords (lists, rank) float32 = the centroids' B-coordinates and
    spill (lists,) float64 >= each centroid's distance from B's span; rank 0: no sketch (every list scored)."""

    basis: np.ndarray
    coords: np.ndarray
    spill: np.ndarray

    @property
    def rank(self) -> int:
        return int(self.basis.shape[0])


def no_sketch(lists: int, dim: int) -> Sketch:
    """The empty sketch: every centroid is scored in full."""
    return Sketch(np.zeros((0, dim)), np.zeros((lists, 0), dtype=np.float32), np.zeros(lists))


def principal_basis(centroids: np.ndarray) -> np.ndarray:
    """(dim, dim) float64: the centroids' principal directions as rows, by decreasing energy (uncentred)."""
    c = np.asarray(centroids, dtype=np.float64)
    _, vectors = np.linalg.eigh(c.T @ c)
    return np.ascontiguousarray(vectors[:, ::-1].T)


def make_sketch(centroids: np.ndarray, rank: int, basis: np.ndarray | None = None) -> Sketch:
    """The rank-`rank` sketch of `centroids` (lists, dim), the float values the search scores (decoded float16)."""
    c = np.asarray(centroids, dtype=np.float64)
    lists, dim = c.shape
    if rank <= 0 or rank >= dim:
        return no_sketch(lists, dim)
    b = np.ascontiguousarray((principal_basis(c) if basis is None else basis)[:rank])
    coords = c @ b.T
    spill = np.linalg.norm(c - coords @ b, axis=1) * (1.0 + 1e-9)
    return Sketch(b, coords.astype(np.float32), spill)


def bounds(sketch: Sketch, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(estimates, slack) (lists,) float64: the sketch's scores of one query and how far each exact score can lie
    from them (rounding aside: the compiled kernel adds its float32 bound)."""
    q = np.asarray(query, dtype=np.float64).ravel()
    projected = sketch.basis @ q
    outside = float(np.linalg.norm(q - projected @ sketch.basis))
    return sketch.coords.astype(np.float64) @ projected, outside * sketch.spill


def survivors(sketch: Sketch, query: np.ndarray, probes: int) -> np.ndarray:
    """The lists (ascending) whose exact score can still reach the query's `probes`-th largest (numpy twin of
    numba_kernels._sketch_survivors without its rounding margins: for estimating costs and for tests)."""
    estimates, slack = bounds(sketch, query)
    lower = estimates - slack
    cut = -np.partition(-lower, probes - 1)[probes - 1]
    return np.flatnonzero(estimates + slack >= cut)


def choose_rank(centroids: np.ndarray, sample: np.ndarray) -> int:
    """The rank whose estimated cost per query is least, if below WORTH of scoring every centroid (lists x dim);
    else 0. The cost, in multiply-adds, over the `sample` rows as queries at lists / REFERENCE_SHARE probes:
    rank x dim to project the query, lists x (rank + PER_LIST) for the sketch pass and its bounds, survivors x dim
    for the lists scored in full. (Estimated at lists / 32 probes, latent 1.1M x 512's 512 lists took rank 64, which
    measured no faster at the 128 probes tuned there: benchmarks/RESULTS-centroid-sketch.md.)"""
    c = np.asarray(centroids, dtype=np.float64)
    lists, dim = c.shape
    probes = max(1, lists // REFERENCE_SHARE)
    basis = principal_basis(c)
    best, best_cost = 0, WORTH * lists * dim
    for rank in (r for r in RANKS if r <= dim // 4):
        sketch = make_sketch(c, rank, basis)
        kept = np.mean([len(survivors(sketch, q, probes)) for q in np.asarray(sample, dtype=np.float64)])
        cost = rank * dim + lists * (rank + PER_LIST) + kept * dim
        if cost < best_cost:
            best, best_cost = rank, cost
    return best
