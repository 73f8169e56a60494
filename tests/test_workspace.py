"""Workspaces: roots and the path guard, listing/opening, and the demo builder's lock + temp-folder rename.

The end-to-end demo build (catalog -> train -> embed -> index) is the session fixture `tiny_workspace`
(tests/conftest.py); here we check what it produced, and the build's safety with a stubbed pipeline.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from eproduct_core import workspace as ws
from eproduct_core.errors import EproductError


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "home"
    root.mkdir()
    monkeypatch.setenv(ws.ENV_HOME, str(root))
    monkeypatch.delenv(ws.ENV_ROOTS, raising=False)
    return root


def _fake_workspace(root: Path, name: str, **meta) -> Path:
    folder = root / name
    (folder / "catalog").mkdir(parents=True)
    ws.write_meta(folder, {"name": name, "complete": True, **meta})
    return folder


def test_home_defaults_and_env(monkeypatch, tmp_path):
    monkeypatch.delenv(ws.ENV_HOME, raising=False)
    assert ws.home() == Path.home() / ".eproduct"
    monkeypatch.setenv(ws.ENV_HOME, str(tmp_path))
    assert ws.home() == tmp_path
    monkeypatch.setenv(ws.ENV_ROOTS, f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    assert ws.roots() == [tmp_path.resolve(), (tmp_path / "a").resolve(), (tmp_path / "b").resolve()]


def test_paths_outside_the_roots_are_refused(home, tmp_path):
    inside = _fake_workspace(home, "mine")
    outside = _fake_workspace(tmp_path, "elsewhere")
    assert ws.open_workspace(inside).path == inside.resolve()
    for bad in (outside, home / ".." / "elsewhere", "/etc", home / "mine" / ".." / ".." / "elsewhere"):
        with pytest.raises(EproductError, match="outside the workspace root"):
            ws.open_workspace(bad)
    link = home / "sneaky"
    link.symlink_to(outside)  # a symlink inside the root that points outside it
    with pytest.raises(EproductError, match="outside the workspace root"):
        ws.open_workspace(link)


def test_extra_roots_are_allowed(home, tmp_path, monkeypatch):
    other = tmp_path / "other"
    other.mkdir()
    folder = _fake_workspace(other, "fmnist")
    monkeypatch.setenv(ws.ENV_ROOTS, str(other))
    assert ws.open_workspace(folder).name == "fmnist"
    assert [w.name for w in ws.list_workspaces()] == ["fmnist"]


def test_list_skips_hidden_unfinished_and_foreign_folders(home):
    _fake_workspace(home, "b")
    _fake_workspace(home, "a")
    (home / ".demo.building-123").mkdir()
    ws.write_meta(home / ".demo.building-123", {"name": "demo"})
    (home / "junk").mkdir()
    (home / "junk" / "workspace.json").write_text("{not json", encoding="utf-8")
    (home / "plain").mkdir()
    assert [w.name for w in ws.list_workspaces()] == ["a", "b"]
    with pytest.raises(EproductError, match="not valid JSON"):
        ws.open_workspace(home / "junk")
    with pytest.raises(EproductError, match="not a workspace"):
        ws.open_workspace(home / "plain")


def _stub_populate(calls: list, delay: float = 0.0, fail: bool = False):
    def populate(folder, **kwargs):
        calls.append(folder)
        (Path(folder) / "catalog").mkdir(parents=True)
        (Path(folder) / "catalog" / "marker.txt").write_text("x")
        time.sleep(delay)
        if fail:
            raise EproductError("pipeline broke")
        return {"title": "stub", "indexes": {}, "runs": []}

    return populate


def test_build_is_atomic_and_a_failed_build_leaves_nothing(home, monkeypatch):
    import eproduct_core.workspace_build as build

    calls: list = []
    monkeypatch.setattr(build, "populate", _stub_populate(calls, fail=True))
    with pytest.raises(EproductError, match="pipeline broke"):
        ws.build_demo(home)
    assert not (home / "demo").exists()
    assert [p.name for p in home.iterdir() if p.name != ".demo.lock"] == []
    monkeypatch.setattr(build, "populate", _stub_populate(calls))
    built = ws.build_demo(home)
    assert built.path == (home / "demo").resolve() and ws.is_finished(home / "demo")
    assert (home / "demo" / "catalog" / "marker.txt").is_file()
    assert ws.build_demo(home).path == built.path and len(calls) == 2  # a finished workspace is reused


def test_two_builders_at_once_build_once(home, monkeypatch):
    import eproduct_core.workspace_build as build

    calls: list = []
    monkeypatch.setattr(build, "populate", _stub_populate(calls, delay=0.5))
    messages: list[str] = []
    results, errors = [], []

    def one():
        try:
            results.append(ws.build_demo(home, progress=lambda f, m: messages.append(m)).path)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(calls) == 1 and len(set(results)) == 1
    assert any("Another session" in m for m in messages)


def test_unfinished_target_is_not_taken_as_done(home, monkeypatch):
    import eproduct_core.workspace_build as build

    monkeypatch.setattr(build, "populate", _stub_populate([]))
    (home / "demo").mkdir()
    ws.write_meta(home / "demo", {"name": "demo"})  # no "complete": a half-made folder
    assert not ws.is_finished(home / "demo")
    with pytest.raises(EproductError, match="not a finished workspace"):
        ws.build_demo(home)


def test_record_index_updates_workspace_json(home):
    folder = _fake_workspace(home, "w", indexes={})
    (folder / "indexes" / "extra").mkdir(parents=True)
    (folder / "indexes" / "extra" / "manifest.json").write_text("{}")
    opened = ws.record_index(ws.open_workspace(folder), "extra", {"kind": "metric", "bits": 64}, default=True)
    assert opened.indexes == ["extra"] and opened.default_index == "extra"
    assert json.loads((folder / "workspace.json").read_text())["indexes"]["extra"]["bits"] == 64


def test_old_workspace_index_entries_still_read(home):
    """workspace.json written before the settings split: "search" mixed build fields in, no "seed"."""
    from eproduct_core.settings import IndexSpec, SearchSettings

    old_seed = {"kind": "seed", "bits": 20, "shard_size": 8000, "cutoff": 0.1, "mode": "cutoff", "k": 10, "rerank": 0}
    old_better = {**old_seed, "kind": "metric", "bits": 256, "mode": "topk", "rerank": 100}
    entries = {
        "seed-20bit": {"embeddings": "seed-index", "kind": "seed", "bits": 24, "shard_size": 8000, "search": old_seed},
        "metric-256bit": {"kind": "metric", "bits": 256, "shard_size": 8000, "search": old_better},
    }
    folder = _fake_workspace(home, "old", indexes=entries)
    opened = ws.open_workspace(folder)
    assert opened.search_settings("seed-20bit") == SearchSettings(mode="cutoff", bits=20, k=10, cutoff=0.1, rerank=0)
    # the old top-k search ignored its cutoff: it must not become an exact-cosine cutoff now
    assert opened.search_settings("metric-256bit") == SearchSettings(mode="topk", bits=256, k=10, rerank=100)
    assert opened.index_spec("seed-20bit") == IndexSpec(kind="seed", bits=24, shard_size=8000, seed=0)
    assert opened.search_settings("unknown") == SearchSettings() and opened.index_spec("unknown") is None


def test_tiny_demo_workspace_is_complete(tiny_workspace):
    """The real pipeline (tiny catalog, 1-epoch tiny run): every artifact the app needs is there."""
    from eproduct_core.embeddings import read_embeddings
    from eproduct_core.index import open_index, verify_index

    opened = ws.open_workspace(tiny_workspace / "demo", allowed=[tiny_workspace])
    assert opened.meta["complete"] and opened.runs == ["fast-demo"]
    assert set(opened.indexes) == {"seed-20bit", "metric-256bit"} and opened.default_index == "metric-256bit"
    catalog_rows = sum(1 for _ in open(opened.catalog_dir / "index.csv")) - 1
    for name in opened.indexes:
        index = open_index(opened.index_dir(name))
        assert index.size == catalog_rows and index.kind == opened.index_info(name)["kind"]
        assert verify_index(opened.index_dir(name)) == []
        query = read_embeddings(opened.embeddings_dir(opened.query_embeddings_for(name)))
        assert query.dim == index.dim
    assert opened.index_info("seed-20bit")["search"]["mode"] == "cutoff"
    assert opened.index_info("seed-20bit")["search"]["bits"] == 20  # searched at 20 bits, stored in 3 bytes
    assert open_index(opened.index_dir("seed-20bit")).bits == 24
    from eproduct_core.settings import SEED_SETTINGS, IndexSpec, SearchSettings

    assert opened.search_settings("seed-20bit") == SEED_SETTINGS
    assert opened.index_spec("seed-20bit") == IndexSpec(kind="seed", bits=24, shard_size=8000, seed=0)
    # the better index: top-k with the index's own defaults (not a second copy of them)
    assert opened.search_settings("metric-256bit") == SearchSettings(mode="topk", k=10)
    assert not list(tiny_workspace.glob(".demo.building-*"))


def test_demo_embeds_every_head_and_the_presets_own_kind():
    """fast-demo indexes its penultimate features as the better default, beside the seed's (and the metric head's)
    embeddings; a kind is offered once."""
    from eproduct_core.config import preset, with_overrides
    from eproduct_core.workspace_build import offered_kinds

    assert offered_kinds(preset("fast-demo")) == ["seed", "metric", "penultimate"]
    assert preset("fast-demo").index.kind == "penultimate"
    metric_only = with_overrides(preset("fast-demo"), {"dhc": False})
    assert offered_kinds(metric_only) == ["metric", "penultimate"]
    assert offered_kinds(with_overrides(preset("fast-demo"), {"embed_kind": "metric"})) == ["seed", "metric"]
