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
