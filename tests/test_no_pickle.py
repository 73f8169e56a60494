"""No pickle anywhere: every load in the code base is one that cannot execute code.

Scans the project's own Python files for pickle-capable loads: `pickle`/`joblib`/`dill`, `pd.read_pickle`,
`np.load` without `allow_pickle=False`, `torch.load` without `weights_only=True`, and
`st.cache_data` (it pickles every value it caches).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [
    p
    for p in ROOT.rglob("*.py")
    if not any(part.startswith(".") or part in ("build", "tests") for part in p.relative_to(ROOT).parts)
]
FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "joblib", "shelve", "marshal"}


def _call_name(node: ast.Call) -> str:
    func = node.func
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def _keyword(node: ast.Call, name: str):
    for keyword in node.keywords:
        if keyword.arg == name and isinstance(keyword.value, ast.Constant):
            return keyword.value.value
    return None


def find_unsafe_loads(source: str, filename: str = "<string>") -> list[str]:
    """Human-readable findings for one file's source."""
    findings = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                if name.split(".")[0] in FORBIDDEN_MODULES:
                    findings.append(f"{filename}:{node.lineno} imports {name}")
        if isinstance(node, ast.Attribute) and node.attr == "cache_data":  # pickles every value it stores
            findings.append(f"{filename}:{node.lineno} uses st.cache_data (pickles values; use st.cache_resource)")
        if isinstance(node, ast.Call):
            name = _call_name(node)
            if name.endswith("read_pickle") or name.endswith("to_pickle"):
                findings.append(f"{filename}:{node.lineno} calls {name}")
            if name in ("np.load", "numpy.load") and _keyword(node, "allow_pickle") is not False:
                findings.append(f"{filename}:{node.lineno} calls {name} without allow_pickle=False")
            if name == "torch.load" and _keyword(node, "weights_only") is not True:
                findings.append(f"{filename}:{node.lineno} calls {name} without weights_only=True")
    return findings


def test_the_scanner_catches_unsafe_loads():
    bad = "import pickle\nimport numpy as np, torch\nnp.load('x')\ntorch.load('y')\nimport pandas as pd\npd.read_pickle('z')\nimport streamlit as st\n@st.cache_data\ndef f(): pass\n"
    assert len(find_unsafe_loads(bad)) == 5
    good = "import numpy as np, torch\nnp.load('x', allow_pickle=False)\ntorch.load('y', weights_only=True)\n"
    assert find_unsafe_loads(good) == []


def test_no_pickle_capable_load_in_the_project():
    assert SOURCES, "no project sources found"
    findings = [
        f for path in SOURCES for f in find_unsafe_loads(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    ]
    assert findings == []
