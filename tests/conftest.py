"""Shared pytest fixtures: small catalogs built once per test session.

`tiny_catalog` is the synthetic generator's "tiny" size (a few hundred 64 px JPEGs, ~3 s). Tests must
treat it as read-only (copy it with `shutil.copytree` before changing anything).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist (.ci/run installs it)
CHROMIUM = Path("/usr/bin/chromium")  # Debian's chromium (.ci/run installs it)


def require_system_file(path: Path, package: str) -> None:
    """Fail (never skip) when a system file the tests need is missing: a skipped test hides a failure."""
    if not path.exists():
        pytest.fail(f"{path} is missing: `apt-get install {package}` (.ci/run installs it).", pytrace=False)


@pytest.fixture(scope="session")
def tiny_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path to a synthetic "tiny" catalog (seed 0): train/val/query/index/groundtruth CSVs and images."""
    from eproduct_core.synthetic import make_synthetic_catalog

    return make_synthetic_catalog(tmp_path_factory.mktemp("catalogs") / "tiny", seed=0, size="tiny")


# A tiny training run for app/workspace tests: 1 epoch of the "tiny" backbone, no pretrained weights.
TINY_TRAIN = {
    "backbone": "tiny",
    "weights": "none",
    "epochs": 1,
    "image_size": 32,
    "augment": "none",
    "instance_weight": 0.0,
    "batch_size": 32,
    # the app tests' better index stays the metric head's (fast-demo itself indexes penultimate features)
    "embed_kind": "metric",
    "index.kind": "metric",
}


@pytest.fixture(scope="session")
def tiny_workspace(tmp_path_factory: pytest.TempPathFactory, tiny_catalog: Path) -> Path:
    """A workspace ROOT (use as EPRODUCT_HOME) holding `demo`: `workspace.build_demo` on a copy of the tiny
    catalog with a 1-epoch tiny run (fast-demo otherwise): seed + metric embeddings, 20-bit and 256-bit indexes.
    Added by the app engineer; read-only for tests."""
    from eproduct_core.workspace import build_demo

    root = tmp_path_factory.mktemp("eproduct_home")
    build_demo(root, preset="fast-demo", catalog=tiny_catalog, train_overrides=TINY_TRAIN)
    return root


def noisy_product_index(folder, *, seed: int, products: int, dim: int, noise: float, distractors: int, shard_size: int):
    """An index of `products` x 3 noisy photos among random distractors, and one noisy query per product.

    Returns (opened index, query vectors, query ids, groundtruth {query_id: {index ids}}).
    """
    import numpy as np

    from eproduct_core.index import build_index, open_index

    rng = np.random.default_rng(seed)
    base = rng.standard_normal((products, dim)).astype(np.float32)
    vectors, ids, truth = [], [], {}
    for p in range(products):
        for v in range(3):
            vectors.append(base[p] + noise * rng.standard_normal(dim))
            ids.append(f"p{p}v{v}")
        truth[f"q{p}"] = {f"p{p}v{v}" for v in range(3)}
    vectors += list(rng.standard_normal((distractors, dim)))
    ids += [f"d{j}" for j in range(distractors)]
    queries = (base + noise * rng.standard_normal(base.shape)).astype(np.float32)
    build_index(np.asarray(vectors, np.float32), ids, folder, bits=64, shard_size=shard_size, kind="external")
    return open_index(folder), queries, [f"q{p}" for p in range(products)], truth
