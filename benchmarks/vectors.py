"""Vector sets for the retrieval benchmarks: index rows, queries, and their exact cosine neighbours.

Each generator returns (x, q): float32 unit rows (n, dim) and queries (nq, dim). Distributions:
- "clusters": the old benchmark's generator (products of four images in a 32-d latent space, queries are
  near copies of an index item): an easy neighbour structure.
- "latent": normalize(U z + noise), z ~ N(0, I_48), U a random orthonormal dim x 48 basis, noise
  0.5 / sqrt(dim / 48) per dimension; a query is an index item's latent + 0.3 N(0, I_48), with fresh noise.
- "fashion": real embeddings: frozen ImageNet EfficientNet-Lite0 pooled features (1280-d) of all 70,000
  Fashion-MNIST photos and `views` views of each through the studio photo model (eproduct_core.photo_models), 210k
  rows by default (more views when more rows are asked for); a query is a further studio view of a random photo, one the index does not hold. Cached as .npy under `cache`
  (it takes minutes); `n` takes the first n rows of a seeded permutation.
- "seed": d = 1002 seed-like embeddings: meta one-hot-ish score, level-2 score and a 1000-leaf softmax
  around a product's leaf, with lookalike leaves; queries are re-drawn logits of an index item.

    python benchmarks/vectors.py fashion          # build the fashion cache (minutes), print its shape, sparsity
    python benchmarks/vectors.py fashion 630000   # the 8-view cache: 630,000 rows
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
DISTRIBUTIONS = ("clusters", "latent", "fashion", "seed")
CACHE = Path("/tmp/ann")
PHOTOS = 70_000  # Fashion-MNIST photos (train + test): the fashion index holds them and `views` views of each
PX = 32  # network input side: near the photos' native 28 px (64 px costs 6x the time on CPU: 26 vs 4.4 ms/image)


def _unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def clusters(n: int, dim: int, nq: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The previous benchmark's generator (see the module doc)."""
    latent, spread, noise, query_noise = 32, 0.2, 1.0, 0.25
    rng = np.random.default_rng(seed)
    basis = (rng.standard_normal((latent, dim)) / np.sqrt(latent)).astype(np.float32)
    centres = rng.standard_normal((max(1, n // 4), latent)).astype(np.float32)
    x = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 65536):
        stop = min(n, start + 65536)
        z = centres[np.arange(start, stop) % len(centres)]
        z = z + spread * rng.standard_normal((stop - start, latent), dtype=np.float32)
        block = z @ basis + noise * rng.standard_normal((stop - start, dim), dtype=np.float32) / np.sqrt(dim)
        x[start:stop] = _unit(block)
    source = rng.choice(n, nq, replace=False)
    q = x[source] + query_noise * rng.standard_normal((nq, dim), dtype=np.float32) / np.sqrt(dim)
    return x, _unit(q)


def latent(
    n: int, dim: int, nq: int, seed: int, rank: int = 48, dtype: type = np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """The harder latent distribution (see the module doc); index rows stored as `dtype` (float16 halves the
    memory of 10M rows; drawn and normalised in float32 block by block either way)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((dim, rank)))[0].astype(np.float32)  # orthonormal columns
    sigma = 0.5 / np.sqrt(dim / rank)
    x = np.empty((n, dim), dtype=dtype)
    z = rng.standard_normal((n, rank), dtype=np.float32)
    for start in range(0, n, 65536):
        stop = min(n, start + 65536)
        noise = sigma * rng.standard_normal((stop - start, dim), dtype=np.float32)
        x[start:stop] = _unit(z[start:stop] @ basis.T + noise)
    source = rng.choice(n, nq, replace=False)
    zq = z[source] + 0.3 * rng.standard_normal((nq, rank), dtype=np.float32)
    return x, _unit(zq @ basis.T + sigma * rng.standard_normal((nq, dim), dtype=np.float32))


def seed_like(n: int, dim: int, nq: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """d = 1002 seed-like class-probability embeddings (see the module doc); `dim` must be 1002."""
    if dim != 1002:
        raise SystemExit("the seed-like distribution is 1002-d (meta, level 2, 1000 leaves)")
    rng = np.random.default_rng(seed)
    leaves = 1000
    products = max(1, n // 4)
    leaf = rng.integers(0, leaves, products)
    lookalike = (leaf[:, None] + rng.integers(1, 12, (products, 3))) % leaves  # confusable leaves nearby
    sharp = rng.uniform(2.0, 5.0, products).astype(np.float32)  # how sure the model is of that product

    def draw(items: np.ndarray, g: np.random.Generator) -> np.ndarray:
        logits = g.standard_normal((len(items), leaves), dtype=np.float32)
        rows = np.arange(len(items))[:, None]
        logits[rows, leaf[items][:, None]] += sharp[items][:, None] + 1.0
        logits[rows, lookalike[items]] += sharp[items][:, None] * g.uniform(0.3, 0.9, (len(items), 3))
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        top = leaf[items].astype(np.float32)
        return np.concatenate([(top // 100)[:, None] / 10, (top // 10)[:, None] / 100, p], axis=1)

    x = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 65536):
        stop = min(n, start + 65536)
        x[start:stop] = _unit(draw(np.arange(start, stop) % products, rng))
    source = rng.choice(n, nq, replace=False)
    return x, _unit(draw(source % products, rng))


def _lite0_embed(images: list, batch: int = 256) -> np.ndarray:
    """Pooled EfficientNet-Lite0 (ImageNet) features of grayscale PIL images at PX px, unit rows (n, 1280)."""
    import torch
    from PIL import Image

    from eproduct_core.backbones import build_backbone

    torch.set_num_threads(int(os.environ.get("EMBED_THREADS", "1")))
    backbone = build_backbone("efficientnet-lite0", "imagenet", image_size=PX)
    backbone.module.eval()
    out = np.empty((len(images), backbone.dim), dtype=np.float32)
    start_t = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            pixels = np.stack(
                [np.asarray(im.resize((PX, PX), Image.BILINEAR), np.float32) for im in images[start : start + batch]]
            )
            t = torch.from_numpy(pixels / 255.0)[:, None].expand(-1, 3, -1, -1)
            out[start : start + batch] = backbone.module((t - 0.5) / 0.5).numpy()
            if start % (batch * 40) == 0:
                log.info("embedded %d/%d (%.0f s)", start + batch, len(images), time.perf_counter() - start_t)
    return _unit(out)


def fashion_cache(cache: Path = CACHE, views: int = 2, queries: int = 2000, seed: int = 0) -> tuple[Path, Path]:
    """Paths of the cached fashion index and query embeddings; computes them first when missing."""
    from PIL import Image

    from eproduct_core.fashion_mnist import IMAGE_PX, load_fashion_mnist
    from eproduct_core.photo_models import photo_view

    xpath = cache / f"fashion-studio-lite0-{PX}px-v{views}-s{seed}-x.npy"
    qpath = cache / f"fashion-studio-lite0-{PX}px-v{views}-s{seed}-q{queries}.npy"
    if xpath.is_file() and qpath.is_file():
        return xpath, qpath
    cache.mkdir(parents=True, exist_ok=True)
    data = load_fashion_mnist()
    items = np.concatenate([data["train"][0], data["test"][0]])
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(item).resize((IMAGE_PX, IMAGE_PX), Image.BICUBIC) for item in items]
    images += [photo_view("studio", item, seed, i, v) for v in range(1, views + 1) for i, item in enumerate(items)]
    picked = rng.choice(len(items), queries, replace=False)
    qimages = [photo_view("studio", items[i], seed, int(i), views + 1) for i in picked]  # a view the index lacks
    log.info("drew %d index and %d query images", len(images), len(qimages))
    for path, arr in ((qpath, _lite0_embed(qimages)), (xpath, _lite0_embed(images))):
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, arr, allow_pickle=False)
        tmp.rename(path)
    return xpath, qpath


def fashion(n: int, dim: int, nq: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Real embeddings (see the module doc); `dim` is ignored (1280). Up to 210,000 rows come from the two-view
    cache; more rows take as many studio views as they need (70,000 photos each, a cache of their own)."""
    xpath, qpath = fashion_cache(views=max(2, -(-n // PHOTOS) - 1))
    x = np.load(xpath, allow_pickle=False)
    q = np.load(qpath, allow_pickle=False)
    rng = np.random.default_rng(seed)
    if n < len(x):
        x = x[np.sort(rng.permutation(len(x))[:n])]
    return np.ascontiguousarray(x), np.ascontiguousarray(q[:nq])


def make(
    name: str, n: int, dim: int, nq: int, seed: int = 0, dtype: type = np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """(x, q) of the named distribution (DISTRIBUTIONS); `dtype` float16 index rows: latent only."""
    makers = {"clusters": clusters, "latent": latent, "fashion": fashion, "seed": seed_like}
    if name not in makers:
        raise SystemExit(f"unknown distribution {name!r}; choose from {DISTRIBUTIONS}")
    if dtype is not np.float32:
        if name != "latent":
            raise SystemExit(f"float16 index rows are drawn for the latent distribution only, not {name!r}")
        return latent(n, dim, nq, seed, dtype=dtype)
    return makers[name](n, dim, nq, seed)


def exact_neighbours(x: np.ndarray, q: np.ndarray, k: int = 10, block: int = 64, rows: int = 1 << 20) -> np.ndarray:
    """(nq, k) int64 rows of the k largest cosines (unit rows), best first. The rows are scored `rows` at a time
    (float16 ones cast to float32 one chunk at a time, never the whole x), keeping the best k seen so far."""
    found = np.zeros((len(q), 0), dtype=np.int64)
    scores = np.zeros((len(q), 0), dtype=np.float32)
    for start in range(0, len(x), rows):
        part = np.asarray(x[start : start + rows], dtype=np.float32)
        chunk_rows, chunk_scores = [], []
        for i in range(0, len(q), block):
            sims = q[i : i + block] @ part.T
            top = np.argpartition(-sims, min(k, len(part) - 1), axis=1)[:, :k]
            chunk_rows.append(top + start)
            chunk_scores.append(np.take_along_axis(sims, top, axis=1))
        found = np.concatenate([found, np.concatenate(chunk_rows)], axis=1)
        scores = np.concatenate([scores, np.concatenate(chunk_scores)], axis=1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        found, scores = np.take_along_axis(found, order, axis=1), np.take_along_axis(scores, order, axis=1)
    return found


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    which = sys.argv[1] if len(sys.argv) > 1 else "fashion"
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 3 * PHOTOS if which == "fashion" else 200_000
    xs, qs = make(which, rows, 1002 if which == "seed" else 512, 2000)
    print(which, xs.shape, qs.shape, xs.dtype)
    nonzero = np.count_nonzero(xs[:: max(1, len(xs) // 40_000)], axis=1)  # how sparse the rows are
    print(
        f"zero entries {1 - nonzero.mean() / xs.shape[1]:.3f}; nonzero per row: median {np.median(nonzero):.0f}, "
        f"5th-95th percentile {np.percentile(nonzero, 5):.0f}-{np.percentile(nonzero, 95):.0f} of {xs.shape[1]}"
    )
