"""Shared pytest fixtures: small catalogs built once per test session.

`tiny_catalog` is the synthetic generator's "tiny" size (a few hundred 64 px JPEGs, ~3 s). Tests must
treat it as read-only (copy it with `shutil.copytree` before changing anything).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path to a synthetic "tiny" catalog (seed 0): train/val/query/index/groundtruth CSVs and images."""
    from eproduct_core.synthetic import make_synthetic_catalog

    return make_synthetic_catalog(tmp_path_factory.mktemp("catalogs") / "tiny", seed=0, size="tiny")


# A tiny training run for app/workspace tests: 1 epoch of the "tiny" backbone, no pretrained weights.
TINY_TRAIN = {"backbone": "tiny", "weights": "none", "epochs": 1, "image_size": 32, "augment": "none",
              "instance_weight": 0.0, "batch_size": 32}


@pytest.fixture(scope="session")
def tiny_workspace(tmp_path_factory: pytest.TempPathFactory, tiny_catalog: Path) -> Path:
    """A workspace ROOT (use as EPRODUCT_HOME) holding `demo`: `workspace.build_demo` on a copy of the tiny
    catalog with a 1-epoch tiny run (fast-demo otherwise): seed + metric embeddings, 20-bit and 256-bit indexes.
    Added by the app engineer; read-only for tests."""
    pytest.importorskip("eproduct_core.embed", reason="embed.py (training/embedding) has not landed yet")
    from eproduct_core.workspace import build_demo

    root = tmp_path_factory.mktemp("eproduct_home")
    build_demo(root, preset="fast-demo", catalog=tiny_catalog, train_overrides=TINY_TRAIN)
    return root
