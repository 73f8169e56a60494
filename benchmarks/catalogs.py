"""Catalog generators: how long the synthetic sizes and the default Fashion-MNIST catalog take to build,
and how hard the synthetic task is for simple embeddings (numpy only, no training).

For each catalog: images, seconds, ms/image, MB on disk. For synthetic catalogs also MAR@10 (exact cosine
top-10) of: a perfect class-probability embedding (the true leaf one-hot, ties broken at random: the best
any class-probability embedding can do), raw 16x16 pixels, and raw pixels restricted to the true leaf.

    python benchmarks/catalogs.py                          # tiny, small, fashion-mnist
    python benchmarks/catalogs.py --sizes tiny small medium --no-fashion
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from eproduct_core.catalog import read_catalog
from eproduct_core.metrics import mar_at_k
from eproduct_core.synthetic import make_synthetic_catalog, plan_synthetic


def _pixels(root: Path, paths) -> np.ndarray:
    rows = [
        np.asarray(Image.open(root / p).convert("RGB").resize((16, 16), Image.BILINEAR), np.float32).ravel()
        for p in paths
    ]
    matrix = np.stack(rows)
    matrix -= matrix.mean(axis=1, keepdims=True)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def _mar(scores: np.ndarray, catalog) -> float:
    ids = np.asarray(catalog.index["image_id"])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    truth = catalog.matches()
    return mar_at_k([list(ids[row]) for row in top], [truth[q] for q in catalog.query["image_id"]], k=10)


def synthetic_difficulty(root: Path, seed: int, size: str) -> dict[str, float]:
    catalog = read_catalog(root)
    leaf_of = {relative: product.leaf for relative, product, _ in plan_synthetic(seed, size).jobs}
    query_leaf = np.array([leaf_of[p] for p in catalog.query["path"]])
    index_leaf = np.array([leaf_of[p] for p in catalog.index["path"]])
    same_leaf = (query_leaf[:, None] == index_leaf[None, :]).astype(np.float32)
    ties = np.random.default_rng(0).random(same_leaf.shape, dtype=np.float32) * 1e-3
    pixels = _pixels(root, catalog.query["path"]) @ _pixels(root, catalog.index["path"]).T
    return {
        "leaf one-hot": _mar(same_leaf + ties, catalog),
        "pixels": _mar(pixels, catalog),
        "leaf + pixels": _mar(pixels + 2 * same_leaf, catalog),
    }


def _measure(name: str, build) -> tuple[Path, list[str]]:
    start = time.perf_counter()
    root = build()
    seconds = time.perf_counter() - start
    images = [p for p in root.rglob("*") if p.suffix in (".jpg", ".png")]
    megabytes = sum(p.stat().st_size for p in images) / 2**20
    return root, [name, str(len(images)), f"{seconds:.1f}", f"{1000 * seconds / len(images):.2f}", f"{megabytes:.1f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", default=["tiny", "small"], help="synthetic sizes to build")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-fashion", action="store_true", help="skip the Fashion-MNIST catalog")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="eproduct-bench-"))
    rows, quality = [], []
    try:
        for size in args.sizes:
            root, row = _measure(
                f"synthetic {size}", lambda: make_synthetic_catalog(work / size, seed=args.seed, size=size)
            )
            rows.append(row)
            scores = synthetic_difficulty(root, args.seed, size)
            quality.append([f"synthetic {size}"] + [f"{100 * v:.1f}%" for v in scores.values()])
        if not args.no_fashion:
            from eproduct_core.fashion_mnist import make_fashion_mnist_catalog

            rows.append(
                _measure("fashion-mnist (defaults)", lambda: make_fashion_mnist_catalog(work / "fm", seed=args.seed))[1]
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print("| catalog | images | seconds | ms/image | MB |\n|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(
        "\nMAR@10 of simple embeddings (exact cosine top-10):\n| catalog | leaf one-hot (best class-prob.) | raw pixels | leaf + pixels |\n|---|---|---|---|"
    )
    for row in quality:
        print("| " + " | ".join(row) + " |")
    print(
        "\nrerun: python benchmarks/catalogs.py "
        + " ".join(["--sizes", *args.sizes] + (["--no-fashion"] if args.no_fashion else []))
    )


if __name__ == "__main__":
    main()
