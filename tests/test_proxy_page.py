"""The Evaluation page labels scores made on a proxy catalog (catalog.json `"groundtruth": "proxy"`) as proxy scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from eproduct_core import workspace as ws

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _evaluation_warnings(home: Path) -> list[str]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("app_pages/evaluation.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return [w.value for w in at.warning]


def test_evaluation_page_labels_proxy_groundtruth(tiny_workspace, tmp_path, monkeypatch):
    home = tmp_path / "home"
    shutil.copytree(tiny_workspace, home, symlinks=True)
    monkeypatch.setenv(ws.ENV_HOME, str(home))
    monkeypatch.delenv(ws.ENV_ROOTS, raising=False)
    assert not any("Proxy groundtruth" in w for w in _evaluation_warnings(home))
    catalog = ws.open_workspace(home / "demo", allowed=[home]).catalog_dir
    meta = {"format": "eproduct-catalog", "version": 1, "groundtruth": "proxy"}
    (catalog / "catalog.json").write_text(json.dumps(meta), encoding="utf-8")
    assert any("Proxy groundtruth" in w for w in _evaluation_warnings(home))
