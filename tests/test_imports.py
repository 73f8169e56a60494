"""Import boundaries, checked per module by importing it in a fresh interpreter with the other side blocked.

- Search and evaluation never import torch: every eproduct_core module outside TORCH_MODULES imports
  with `sys.modules["torch"] = None` (any `import torch` then raises), and running a search or scoring a
  submission from the command line does not pull torch in either.
- The core never imports streamlit: every eproduct_core module imports with streamlit blocked.
When modules move into subpackages (retrieval/, training/, ...), these lists become folder names.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CORE = sorted(p.stem for p in (ROOT / "eproduct_core").glob("*.py") if p.stem not in ("__init__", "__main__"))
# The modules allowed to import torch at import time: training, the model and embedding.
TORCH_MODULES = {"backbones", "data", "distributed", "embed", "losses", "model", "train", "validation"}
# Search and evaluation: named so that a rename cannot quietly drop them from the check below.
SEARCH_AND_EVALUATION = {
    "lsh",
    "index",
    "index_format",
    "index_store",
    "search_kernels",
    "numba_kernels",
    "search",
    "ann_graph",
    "settings",
    "metrics",
    "evaluate",
    "analysis",
    "class_analysis",
    "why_missed",
    "submission",
    "embeddings",
    "catalog",
}


def _import_each(modules: list[str], blocked: str) -> dict[str, str]:
    """{module: error} for the modules that fail to import with `blocked` set to None (one interpreter)."""
    code = (
        "import importlib, json, sys\n"
        f"sys.modules[{blocked!r}] = None\n"
        "failures = {}\n"
        "for name in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        importlib.import_module(f'eproduct_core.{name}')\n"
        "    except Exception as err:\n"
        "        failures[name] = f'{type(err).__name__}: {err}'\n"
        "print(json.dumps(failures))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, json.dumps(modules)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_lists_name_real_modules():
    assert SEARCH_AND_EVALUATION <= set(CORE) and TORCH_MODULES <= set(CORE)
    assert not SEARCH_AND_EVALUATION & TORCH_MODULES


def test_search_and_evaluation_never_import_torch():
    torch_free = [m for m in CORE if m not in TORCH_MODULES]
    assert _import_each(torch_free, "torch") == {}


def test_the_core_never_imports_streamlit():
    assert _import_each([*CORE, "cli"], "streamlit") == {}


def test_cli_search_and_evaluate_run_without_torch(tmp_path, tiny_catalog):
    """`eproduct index build`, `search` and `evaluate --submission` with torch blocked."""
    vectors = tmp_path / "x.npy"
    np.save(vectors, np.random.default_rng(0).standard_normal((30, 8)).astype(np.float32))
    submission = tmp_path / "sub.csv"
    submission.write_text("q0,a b\n", encoding="utf-8")
    steps = [
        ["index", "build", "--vectors", str(vectors), "--out", str(tmp_path / "idx"), "--bits", "64", "-q"],
        ["search", "--index", str(tmp_path / "idx"), "--vectors", str(vectors), "--out", str(tmp_path / "o.csv")],
        ["evaluate", "--catalog", str(tiny_catalog), "--submission", str(submission), "--out", str(tmp_path / "ev")],
    ]
    code = (
        "import json, sys\n"
        "sys.modules['torch'] = None\n"
        "from eproduct_core.cli import main\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    assert main(argv) == 0, argv\n"
        "assert 'torchvision' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code, json.dumps(steps)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
