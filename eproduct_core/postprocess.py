"""Search-side post-processing of embeddings and rankings: pure numpy functions, no index, no torch.

- PCA-whitening (`fit_whitening` on index or train embeddings, `apply_whitening` to both sides): centre,
  rotate onto the principal axes, divide each by the square root of its variance, L2-normalise.
- alpha query expansion (Radenovic et al. 2018): a query becomes the weighted sum of itself and its top-k
  index neighbours, weights = cosine^alpha.
- Database-side augmentation (DBA): every index vector becomes the same weighted sum over *its* top-k index
  neighbours (itself included), so an index photo speaks for its near-duplicates; done once per index.
- k-reciprocal re-ranking (Zhong et al. 2017), local: for each query only its top `top` candidates and the
  query itself form the neighbourhood graph; the final distance is (1 - lam) * Jaccard distance of the
  k-reciprocal neighbour sets + lam * the original distance. What the FGVC9 eProduct winners used.

All vectors are float32 rows; cosine is the dot product of L2-normalised rows.
"""

from __future__ import annotations

import numpy as np

QE_ALPHA = 3.0  # the alpha of alpha-QE and DBA (Radenovic et al. use 3)


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero)."""
    vectors = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def fit_whitening(vectors: np.ndarray, dim: int | None = None, eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """(mean (d,), projection (d, dim)) of PCA-whitening fitted on `vectors` (rows, d).

    Axes come in decreasing variance; each axis's sign makes its largest-magnitude entry positive, so the
    result is deterministic. `dim` keeps the leading axes (None: all). Covariance uses 1/n.
    """
    x = np.asarray(vectors, np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    covariance = centred.T @ centred / max(1, len(x))
    values, axes = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1][: dim or len(values)]
    values, axes = values[order], axes[:, order]
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(axes.shape[1])])
    axes = axes * np.where(signs == 0, 1.0, signs)
    return mean.astype(np.float32), (axes / np.sqrt(values + eps)).astype(np.float32)


def apply_whitening(vectors: np.ndarray, mean: np.ndarray, projection: np.ndarray, norm: bool = True) -> np.ndarray:
    """(vectors - mean) @ projection, L2-normalised unless `norm` is False."""
    out = (np.asarray(vectors, np.float32) - mean) @ projection
    return normalize(out) if norm else out.astype(np.float32)


def _top(similarity: np.ndarray, k: int) -> np.ndarray:
    """Column ids of the k largest entries of each row, best first."""
    k = min(k, similarity.shape[1])
    part = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(similarity, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def _expand(vectors: np.ndarray, index: np.ndarray, k: int, alpha: float, include_self: bool, block: int) -> np.ndarray:
    out = np.empty_like(vectors)
    for start in range(0, len(vectors), block):
        part = vectors[start : start + block]
        similarity = part @ index.T
        top = _top(similarity, k)
        weights = np.clip(np.take_along_axis(similarity, top, axis=1), 0, None) ** alpha
        summed = np.einsum("qk,qkd->qd", weights, index[top])
        out[start : start + block] = summed + part if include_self else summed
    return normalize(out)


def query_expansion(queries: np.ndarray, index: np.ndarray, k: int, alpha: float = QE_ALPHA) -> np.ndarray:
    """alpha-QE: normalize(q + sum_{i<k} max(cos(q, x_i), 0)^alpha x_i) over q's top-k index rows x_i."""
    q, x = normalize(queries), normalize(index)
    if k <= 0 or not len(x):
        return q
    return _expand(q, x, k, alpha, include_self=True, block=1024)


def database_augmentation(index: np.ndarray, k: int, alpha: float = QE_ALPHA) -> np.ndarray:
    """DBA: each index row becomes normalize(sum_{i<k} max(cos, 0)^alpha x_i) over its top-k rows (itself first).

    Costs one pass of index x index similarities (blocks of 1,024 rows): once per index, not per query.
    """
    x = normalize(index)
    if k <= 1 or not len(x):
        return x
    return _expand(x, x, k, alpha, include_self=False, block=1024)


def k_reciprocal_rerank(
    queries: np.ndarray, index: np.ndarray, top: int = 100, k1: int = 20, k2: int = 6, lam: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """(candidate ids (q, top), distances (q, top)) re-ranked by local k-reciprocal encoding, best first.

    For each query, the query and its `top` nearest index rows (exact cosine) form a local set; k-reciprocal
    sets (k1, expanded with k1/2 sets that overlap by more than 2/3), Gaussian weights exp(-d), local query
    expansion over k2 neighbours, then Jaccard distance to the query mixed with the original distance by lam.
    """
    q, x = normalize(queries), normalize(index)
    top = min(top, len(x))
    ids = np.zeros((len(q), top), np.int64)
    dists = np.zeros((len(q), top), np.float32)
    for start in range(0, len(q), 256):
        similarity = q[start : start + 256] @ x.T
        candidates = _top(similarity, top)
        for row, cand in enumerate(candidates):
            local = np.vstack([q[start + row : start + row + 1], x[cand]])
            distance = _local_rerank(local, k1, k2, lam)
            order = np.argsort(distance, kind="stable")
            ids[start + row], dists[start + row] = cand[order], distance[order]
    return ids, dists


def _neighbours(rank: np.ndarray, k: int) -> np.ndarray:
    """Boolean (m, m): j is among the k nearest of i (i itself included)."""
    return rank < k


def kreciprocal_distance(
    query: np.ndarray, candidates: np.ndarray, k1: int = 20, k2: int = 6, lam: float = 0.3
) -> np.ndarray:
    """k-reciprocal distance of one query (d,) to each of its candidate rows (m, d) (see `k_reciprocal_rerank`)."""
    return _local_rerank(np.vstack([normalize(query[None]), normalize(candidates)]), k1, k2, lam)


def _local_rerank(local: np.ndarray, k1: int, k2: int, lam: float) -> np.ndarray:
    """Final distance of the query (row 0 of `local`) to each other row, k-reciprocal style."""
    m = len(local)
    distance = np.clip(2.0 - 2.0 * (local @ local.T), 0, None)
    rank = np.empty((m, m), np.int64)
    rank[np.arange(m)[:, None], np.argsort(distance, axis=1, kind="stable")] = np.arange(m)
    forward = _neighbours(rank, min(k1, m))
    reciprocal = forward & forward.T
    half_forward = _neighbours(rank, max(1, min(int(round(k1 / 2)), m)))
    half = half_forward & half_forward.T
    overlap = reciprocal.astype(np.float32) @ half.T.astype(np.float32)  # |R(i) & R_half(j)|
    grow = reciprocal & (overlap > (2.0 / 3.0) * half.sum(axis=1)[None, :])
    expanded = reciprocal | ((grow.astype(np.float32) @ half.astype(np.float32)) > 0)
    weights = np.where(expanded, np.exp(-distance), 0.0)
    weights /= weights.sum(axis=1, keepdims=True)
    if k2 > 1:
        weights = (_neighbours(rank, min(k2, m)).astype(np.float64) @ weights) / min(k2, m)
    minimum = np.minimum(weights[0:1], weights[1:]).sum(axis=1)
    maximum = np.maximum(weights[0:1], weights[1:]).sum(axis=1)
    jaccard = 1.0 - minimum / np.maximum(maximum, 1e-12)
    return ((1 - lam) * jaccard + lam * distance[0, 1:]).astype(np.float32)
