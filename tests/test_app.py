"""The Streamlit app under AppTest, against the session's tiny workspace (tests/conftest.py: tiny_workspace).

Every page draws without an exception or error; uploads find matches; the cutoff slider changes the
result count exactly as the core search does; a bad upload shows a clear error and the page recovers;
the workspace chooser refuses paths outside the roots; the first run builds the demo with progress;
8 concurrent sessions search at once sharing one opened index.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from eproduct_core import workspace as ws

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT = 120  # seconds per AppTest run; the first one imports torch
PAGES = (
    "app_pages/search.py",
    "app_pages/catalog.py",
    "app_pages/model.py",
    "app_pages/evaluation.py",
    "app_pages/map.py",
    "app_pages/compare.py",
    "app_pages/index.py",
)
METRIC_INDEX = "metric-256bit"
SCOPE = f"demo::{METRIC_INDEX}"


@pytest.fixture(scope="module")
def app_home(tiny_workspace, tmp_path_factory) -> Path:
    """A copy of the tiny workspace root: the pages write their caches and maps into the workspace."""
    copy = tmp_path_factory.mktemp("app_home")
    shutil.copytree(tiny_workspace / "demo", copy / "demo")
    return copy


@pytest.fixture
def home(app_home, monkeypatch) -> Path:
    monkeypatch.setenv(ws.ENV_HOME, str(app_home))
    monkeypatch.delenv(ws.ENV_ROOTS, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return app_home


def _app(page: str | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    return at


def _elements(at, kind: str) -> list:
    found = []

    def walk(node):
        for child in getattr(node, "children", {}).values():
            if getattr(child, "type", None) == kind:
                found.append(child)
            walk(child)

    walk(at._tree)
    return found


def _metric(at, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert values, f"no metric {label!r}; metrics: {[m.label for m in at.metric]}"
    return values[0]


def _clean(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _demo(home: Path) -> ws.Workspace:
    return ws.open_workspace(home / "demo", allowed=[home])


def _query_image(home: Path, number: int = 0) -> tuple[str, bytes]:
    catalog = _demo(home).catalog_dir
    import pandas as pd

    query = pd.read_csv(catalog / "query.csv", dtype=str)
    return query["image_id"].iat[number], (catalog / query["path"].iat[number]).read_bytes()


@pytest.mark.parametrize("page", PAGES)
def test_every_page_draws(home, page):
    at = _app(page)
    _clean(at)
    demo = _demo(home)
    if page != "app_pages/search.py":
        assert _elements(at, "vega_lite_chart"), f"{page} drew no chart"
    if page == "app_pages/catalog.py":
        train_rows = sum(1 for _ in open(demo.catalog_dir / "train.csv", encoding="utf-8")) - 1
        assert _metric(at, "Training images") == f"{train_rows:,}"
    if page == "app_pages/index.py":
        from eproduct_core.index import open_index

        assert _metric(at, "Rows") == f"{open_index(demo.index_dir(METRIC_INDEX)).size:,}"
    if page == "app_pages/evaluation.py":
        assert 0.0 <= float(_metric(at, "MAR@10")) <= 1.0


def test_sample_query_and_cutoff_slider_match_the_core_search(home):
    from eproduct_core.embeddings import read_embeddings
    from eproduct_core.index import open_index
    from eproduct_core.search import search
    from eproduct_core.settings import SearchSettings

    at = _app()
    _clean(at)
    assert int(_metric(at, "Matches")) == 10  # top-k mode, k=10, the better index by default
    demo = _demo(home)
    query_id = at.selectbox(key="sample_query").value
    stored = read_embeddings(demo.embeddings_dir(demo.query_embeddings_for(METRIC_INDEX)))
    vector = np.asarray(stored.vectors[stored.ids.index(query_id)], dtype=np.float32)
    index = open_index(demo.index_dir(METRIC_INDEX))
    at.radio(key=f"mode::{SCOPE}").set_value("cutoff").run()
    from eproduct_core import lsh

    spread = lsh.code_cosine(index.encode(vector[None, :])[0], index.words, 256)
    low, high = (float(np.ceil(np.quantile(spread, q) * 100) / 100) for q in (0.2, 0.8))  # slider steps
    assert low < high
    counts = {}
    for cutoff in (high, low):
        at.slider(key=f"cutoff::{SCOPE}").set_value(cutoff).run()
        _clean(at)
        counts[cutoff] = int(_metric(at, "Matches"))
        expected = search(index, vector, SearchSettings(mode="cutoff", bits=256, cutoff=cutoff, k=None, rerank=0))[0]
        assert counts[cutoff] == len(expected.ids)
    assert counts[low] < counts[high]
    at.slider(key=f"cutoff::{SCOPE}").set_value(0.3).run()
    at.select_slider(key=f"bits::{SCOPE}").set_value(16).run()
    expected = search(index, vector, SearchSettings(mode="cutoff", bits=16, cutoff=0.3, k=None, rerank=0))[0]
    assert int(_metric(at, "Matches")) == len(expected.ids)
    assert _metric(at, "Hamming radius") == "4"  # d / 16 < 0.3  <=>  d <= 4


def test_upload_finds_matches_and_its_groundtruth(home):
    at = _app()
    query_id, data = _query_image(home, 1)
    at.file_uploader(key="upload").set_value(("my photo.jpg", data, "image/jpeg")).run()
    _clean(at)
    assert int(_metric(at, "Matches")) == 10
    truth = _demo(home)
    from eproduct_core.catalog import read_catalog

    n_true = len(read_catalog(truth.catalog_dir).matches()[query_id])
    found = int(_metric(at, "True matches in top 10").split(" / ")[0])
    assert _metric(at, "True matches in top 10").endswith(f"/ {n_true}")
    missed = [d.value for d in at.dataframe if "why missed" in d.value.columns]
    if found < n_true:  # every missed true match is listed with a reason
        assert len(missed) == 1 and len(missed[0]) == n_true - found
        assert all(isinstance(r, str) and r for r in missed[0]["why missed"])
    else:
        assert missed == []
    assert len(_elements(at, "image")) >= 11  # the query and its matches


def test_bad_upload_shows_an_error_and_the_page_keeps_working(home):
    at = _app()
    at.file_uploader(key="upload").set_value(("notes.jpg", b"this is plain text, not a photo", "image/jpeg")).run()
    assert not at.exception
    assert at.error and "not an image" in at.error[0].value
    at.file_uploader(key="upload").set_value(None).run()
    _clean(at)
    assert int(_metric(at, "Matches")) == 10


def test_workspace_chooser_refuses_paths_outside_the_roots(home, tmp_path):
    at = _app()
    outside = tmp_path / "elsewhere"
    shutil.copytree(home / "demo", outside)
    at.text_input(key="workspace_path").set_value(str(outside)).run()
    assert not at.exception
    assert any("outside the workspace root" in e.value for e in at.error)
    assert int(_metric(at, "Matches")) == 10  # still searching the demo


def test_first_run_builds_the_demo_with_progress(tiny_workspace, tmp_path, monkeypatch):
    empty = tmp_path / "fresh-home"
    monkeypatch.setenv(ws.ENV_HOME, str(empty))
    calls = []

    def fake_build(root, preset="fast-demo", progress=None, **kwargs):  # the real build is tested in test_workspace
        calls.append(preset)
        progress(0.5, "Training")
        shutil.copytree(tiny_workspace / "demo", Path(root) / "demo")
        return ws.open_workspace(Path(root) / "demo")

    monkeypatch.setattr(ws, "build_demo", fake_build)
    at = _app()
    _clean(at)
    assert calls == ["fast-demo"] and at.status and "ready" in at.status[0].label
    assert int(_metric(at, "Matches")) == 10
    at.run()
    assert calls == ["fast-demo"]  # later runs open at once


@pytest.fixture
def own_home(tiny_workspace, tmp_path, monkeypatch) -> Path:
    """A private copy of the tiny workspace root as EPRODUCT_HOME, for tests that change the workspace."""
    home = tmp_path / "home"
    shutil.copytree(tiny_workspace, home, ignore=shutil.ignore_patterns(".*.lock"))
    monkeypatch.setenv(ws.ENV_HOME, str(home))
    return home


def test_index_page_builds_a_new_index(own_home):
    from eproduct_core.index import open_index

    home = own_home
    at = _app("app_pages/index.py")
    _clean(at)
    at.selectbox(key="new_index_source").set_value("metric-index")
    at.select_slider(key="new_index_bits").set_value(64)
    at.text_input(key="new_index_name").set_value("metric-64")
    at.button(key="build_index_button").click().run()
    _clean(at)
    assert any("Built index metric-64" in s.value for s in at.success)
    demo = ws.open_workspace(home / "demo", allowed=[home])
    assert "metric-64" in demo.indexes and demo.index_info("metric-64")["bits"] == 64
    assert open_index(demo.index_dir("metric-64")).bits == 64
    from eproduct_core.settings import IndexSpec, SearchSettings

    assert demo.index_spec("metric-64") == IndexSpec(kind="metric", bits=64, shard_size=8000)
    assert demo.search_settings("metric-64") == SearchSettings()  # the index's own defaults
    at.button(key="verify").click().run()
    assert any("match their sha256" in s.value for s in at.success)


def test_index_page_builds_an_hnsw_graph_and_compares_it_with_lsh(own_home, monkeypatch):
    import sys

    from eproduct_core.index import open_index, verify_index

    home = own_home
    at = _app("app_pages/index.py")
    _clean(at)
    assert not [d for d in at.dataframe if "backend" in d.value.columns]  # no graph yet: no comparison
    at.button(key="build_graph").click().run()
    _clean(at)
    path = _demo(home).index_dir(METRIC_INDEX)
    assert open_index(path).manifest["ann"]["type"] == "hnsw" and verify_index(path) == []
    tables = [d.value for d in at.dataframe if "backend" in d.value.columns]
    assert len(tables) == 1 and tables[0]["backend"].tolist() == ["LSH (index defaults)", "HNSW graph"]
    assert 0.0 <= tables[0]["recall@10"].min() and tables[0]["recall@10"].max() <= 1.0
    assert tables[0]["recall@10"].iloc[1] >= 0.9  # a beam of 64 on a small index is all but exact
    assert (tables[0]["ms/query (median)"] > 0).all()
    monkeypatch.setitem(sys.modules, "faiss", None)  # as on a machine without the `ann` extra
    at = _app("app_pages/index.py")
    _clean(at)
    assert any("eproduct[ann]" in c.value for c in at.caption)
    assert not [b for b in at.button if b.key == "build_graph"]


def test_bucket_sizes_count_every_code_prefix(tiny_workspace):
    from eproduct_core import lsh
    from eproduct_core.index import open_index
    from eproduct_ui.views.index import bucket_sizes

    index = open_index(_demo(tiny_workspace).index_dir(METRIC_INDEX))
    for bits in (4, 8, 20):
        sizes = bucket_sizes(index, bits)
        codes = np.concatenate([np.load(index.path / s["files"]["codes"]["file"]) for s in index.manifest["shards"]])
        prefixes = lsh.unpack(codes, bits)
        _, counts = np.unique(prefixes, axis=0, return_counts=True)
        assert int((sizes["items"] * sizes["buckets"]).sum()) == index.size
        assert sorted(np.repeat(sizes["items"], sizes["buckets"]).tolist()) == sorted(counts.tolist())


def test_catalog_images_outside_the_roots_are_not_read(home, tmp_path):
    from PIL import Image

    from eproduct_ui import loaders

    outside = tmp_path / "outside.png"
    Image.new("RGB", (8, 8), "red").save(outside)
    inside = next((home / "demo" / "catalog").rglob("*.jpg"))
    assert loaders.thumbnail(str(inside)) is not None
    assert loaders.thumbnail(str(outside)) is None
    assert loaders.thumbnail(str(home / "demo" / "catalog" / ".." / ".." / ".." / outside.name)) is None


def test_more_like_this_searches_with_the_stored_vector(home):
    from eproduct_core.index import open_index
    from eproduct_core.search import search

    at = _app()
    _clean(at)
    shown = [b.key.split("::", 1)[1] for b in at.button if (b.key or "").startswith("more::")]
    assert len(shown) == 10 and all(
        b.label == "More like this" for b in at.button if (b.key or "").startswith("more::")
    )
    item = shown[3]
    at.button(key=f"more::{item}").click().run()
    _clean(at)
    assert at.session_state["like"] == item
    index = open_index(_demo(home).index_dir(METRIC_INDEX))
    stored = np.asarray(index.vectors[index.row_numbers()[item]], dtype=np.float32)
    expected = search(index, stored[None, :], _demo(home).search_settings(METRIC_INDEX))[0]
    now = [b.key.split("::", 1)[1] for b in at.button if (b.key or "").startswith("more::")]
    assert now == list(expected.ids) and now[0] == item  # its own stored vector: itself first
    at.selectbox(key="sample_query").set_value(at.selectbox(key="sample_query").options[2]).run()
    assert "like" not in at.session_state  # picking a sample query ends "more like this"


def test_deep_link_sets_the_query_index_and_settings(home):
    from streamlit.testing.v1 import AppTest

    query_id = _query_image(home, 5)[0]
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update(
        {"workspace": "demo", "index": "seed-20bit", "query": query_id, "mode": "cutoff", "bits": "16", "cutoff": "0.3"}
    )
    at.run()
    _clean(at)
    assert at.selectbox(key="sample_query").value == query_id
    assert at.select_slider(key="bits::demo::seed-20bit").value == 16
    assert at.slider(key="cutoff::demo::seed-20bit").value == pytest.approx(0.3)
    assert _metric(at, "Hamming radius") == "4"
    at.query_params.update({"bits": "1000"})  # not offered by a 24-bit index: a warning, nothing breaks
    at.run()
    assert not at.exception and any("hash length 1000" in w.value for w in at.warning)


def test_fashion_mnist_missing_says_how_to_install(home, tmp_path, monkeypatch):
    from eproduct_ui import sidebar_build

    monkeypatch.setenv(sidebar_build.ENV_SOURCE, str(tmp_path))  # an empty folder: not installed
    at = _app()
    _clean(at)
    assert any("apt-get install dataset-fashion-mnist" in i.value for i in at.info)
    assert not [b for b in at.button if b.key == "fashion_build"]


def test_search_settings_carry_over_to_another_page(home):
    """Fails on the old `remembered` (seeded a widget only when its key was missing): the Evaluation page's
    hash length fell back to the first option (4 bits) after the Search page had drawn it."""
    key = f"bits::{SCOPE}"
    at = _app()
    _clean(at)
    at.select_slider(key=key).set_value(64).run()
    at.switch_page("app_pages/evaluation.py")
    at.run()
    _clean(at)
    assert at.select_slider(key=key).value == 64
    at.switch_page("app_pages/search.py")
    at.run()
    assert at.select_slider(key=key).value == 64


def test_post_processing_controls_reach_the_core_search(home):
    """Whitening + query expansion + DBA from the sidebar give exactly the core search's rows for those settings."""
    from eproduct_core.embeddings import read_embeddings
    from eproduct_core.index import open_index
    from eproduct_core.search import search

    at = _app()
    _clean(at)
    demo = _demo(home)
    query_id = at.selectbox(key="sample_query").value
    stored = read_embeddings(demo.embeddings_dir(demo.query_embeddings_for(METRIC_INDEX)))
    vector = np.asarray(stored.vectors[stored.ids.index(query_id)], dtype=np.float32)
    index = open_index(demo.index_dir(METRIC_INDEX))
    plain = [b.key.split("::", 1)[1] for b in at.button if (b.key or "").startswith("more::")]
    at.checkbox(key=f"whiten::{SCOPE}").check().run()
    at.number_input(key=f"qe::{SCOPE}").set_value(2).run()
    at.number_input(key=f"dba::{SCOPE}").set_value(2).run()
    _clean(at)
    shown = [b.key.split("::", 1)[1] for b in at.button if (b.key or "").startswith("more::")]
    settings = at.session_state["remembered_controls"]
    expected = search(
        index,
        vector[None, :],
        demo.search_settings(METRIC_INDEX).replace(
            bits=settings[f"bits::{SCOPE}"], rerank=settings[f"rerank::{SCOPE}"], whiten=True, query_expansion=2, dba=2
        ),
    )[0]
    assert shown == list(expected.ids)
    assert shown != plain  # the steps change the ranking of this query


def test_sidebar_shows_the_index_tuning_estimate(home):
    """The recall estimate `eproduct index tune` stores (or that there is none) is shown beside the controls."""
    from eproduct_core import tuning
    from eproduct_core.index import open_index

    at = _app()
    _clean(at)
    index = open_index(_demo(home).index_dir(METRIC_INDEX))
    expected = f"Stage sizes: {tuning.describe(tuning.read_estimate(index.manifest))}."
    assert expected in [c.value for c in at.sidebar.caption]


def test_sidebar_says_when_candidates_come_from_partitions(own_home):
    """An index tuned with stage 1 from its partitions says so beside the controls, with the counts."""
    import dataclasses

    from eproduct_core import partitions, tuning
    from eproduct_core.index import open_index
    from eproduct_core.settings import SearchSettings

    path = _demo(own_home).index_dir(METRIC_INDEX)
    made, _ = partitions.build_partitions(open_index(path), 4)
    tuned = tuning.tune(open_index(path), target=0.5, sample=50)
    tuning.store_tuned(path, dataclasses.replace(tuned, settings=SearchSettings(k=10, partition_probes=2)))
    at = _app()
    _clean(at)
    assert f"Candidates from 2 of {made.lists} k-means partitions (`index partitions`)." in [
        c.value for c in at.sidebar.caption
    ]
