"""Evaluation page: MAR@10 over hash length x cutoff, match vs non-match distances, per-query recall,
worst queries with images, and the seed's settings beside the better ones.

Everything is computed from the workspace's precomputed query embeddings (no model needed) and kept in
the workspace (eproduct_core.results_cache, keyed by the index checksum, the queries and the settings or
grid), so a second visit reads files instead of searching, in this server process or a new one. Downloads:
the submission at the sidebar's settings (what `eproduct evaluate --submission` scores), the per-query
table and the sweep grid. Each worst query links to the Search page showing it (a deep link).
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from eproduct_core import results_cache
from eproduct_core.errors import EproductError
from eproduct_core.settings import SEED_SETTINGS, SearchSettings
from eproduct_ui import charts, controls, deeplink, loaders
from eproduct_ui.state import current_workspace

SWEEP_BITS = (8, 12, 16, 20, 24, 32, 48, 64)
SWEEP_CUTOFFS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
WORST = 5  # worst queries shown with images
MAX_QUERIES = 1000  # queries scored on this page (the first ones with groundtruth); `eproduct evaluate` scores all


def _queries(workspace, index_name: str, catalog):
    """(vectors, ids, groundtruth) of the queries with true matches, from the workspace's embeddings."""
    name = workspace.query_embeddings_for(index_name)
    if name is None:
        raise EproductError(
            f"Workspace {workspace.path} has no query embeddings for index {index_name}. "
            "Embed the query split with `eproduct embed` (same run and kind as the index)."
        )
    vectors, ids = loaders.embeddings(workspace.embeddings_dir(name))
    truth = catalog.matches()
    if not truth:
        raise EproductError(f"Catalog {catalog.root} has no groundtruth.csv, so nothing can be scored.")
    keep = [i for i, q in enumerate(ids) if q in truth][:MAX_QUERIES]
    return vectors[keep], [ids[i] for i in keep], truth


@st.cache_resource(show_spinner=False, max_entries=64)
def _key(path: str, stamp: float, _vectors, ids: tuple) -> dict:
    """What every cached result of this index and query set is keyed by (hashed once per process)."""
    return {"index": results_cache.index_checksum(path), "queries": results_cache.queries_digest(ids, _vectors)}


def _cache_key(path: str, stamp: float, vectors, ids: tuple, **extra) -> dict:
    return {**_key(path, stamp, vectors, ids), **extra}


def _sweep(workspace, path: str, stamp: float, index, vectors, ids: tuple, truth, bits: tuple, cutoffs: tuple):
    from eproduct_core.evaluate import sweep

    base = SearchSettings(mode="cutoff", rerank=0, k=10)
    grid = {"bits": list(bits), "cutoff": list(cutoffs)}

    def compute() -> pd.DataFrame:
        with st.spinner("Sweeping hash length x cutoff (once; kept in the workspace)..."):
            return sweep(index, vectors, list(ids), truth, base, grid)

    key = _cache_key(path, stamp, vectors, ids, base=dataclasses.asdict(base), grid=grid)
    return results_cache.cached_frame(workspace.path, "sweep", key, compute)


def _evaluate(workspace, path: str, stamp: float, index, vectors, ids: tuple, truth, settings: SearchSettings):
    from eproduct_core.evaluate import evaluate_search

    def compute():
        with st.spinner("Evaluating (once per settings; kept in the workspace)..."):
            return evaluate_search(index, vectors, list(ids), truth, settings)

    key = _cache_key(path, stamp, vectors, ids, settings=dataclasses.asdict(settings))
    return _memo(workspace.path, key, compute)


@st.cache_resource(show_spinner=False, max_entries=64)
def _memo_store() -> dict:
    return {}


def _memo(folder: Path, key: dict, compute):
    """An evaluation from this process's memory, else the workspace cache, else computed."""
    import json

    store = _memo_store()
    name = json.dumps(key, sort_keys=True, default=str)
    if name not in store:
        store[name] = results_cache.cached_evaluation(folder, "evaluation", key, compute)
    return store[name]


def _distances(workspace, path: str, stamp: float, index, vectors, ids: tuple, truth, bits: int) -> pd.DataFrame:
    from eproduct_core.analysis import distance_table

    def compute() -> pd.DataFrame:
        with st.spinner("Measuring distances (once; kept in the workspace)..."):
            return distance_table(index, vectors, list(ids), truth, bits=bits)

    key = _cache_key(path, stamp, vectors, ids, bits=bits, analysis="distance_table")
    return results_cache.cached_frame(workspace.path, "distances", key, compute)


def _settings_of(workspace, name: str, index) -> SearchSettings:
    """The index's recorded settings (workspace.json); without any, the seed's for a seed index, else its own."""
    if workspace.index_info(name).get("search"):
        return workspace.search_settings(name)
    return SEED_SETTINGS if index.kind == "seed" else SearchSettings()


def _side_by_side(workspace, catalog) -> None:
    st.subheader("Seed settings vs better settings")
    cards = []
    for name in workspace.indexes:
        index = loaders.index(workspace.index_dir(name))
        try:
            vectors, ids, truth = _queries(workspace, name, catalog)
        except EproductError:
            continue
        settings = _settings_of(workspace, name, index)
        key = loaders.stamp(workspace.index_dir(name) / "manifest.json")
        result = _evaluate(workspace, str(workspace.index_dir(name)), key, index, vectors, tuple(ids), truth, settings)
        cards.append((name, index.kind, SearchSettings.from_dict(result.summary["settings"]), result.summary))
    if not cards:
        st.info("No index here has query embeddings to score.")
        return
    columns = st.columns(len(cards))
    for column, (name, kind, settings, summary) in zip(columns, cards, strict=False):
        with column:
            st.markdown(f"**{name}** · {workspace.index_info(name).get('label', '')}")
            st.metric("MAR@10", f"{summary.get('mar@10_G', float('nan')):.3f}")
            st.caption(
                f"{kind} embedding, {settings.bits} bits, mode {settings.mode}"
                + (
                    f", cutoff {settings.cutoff}"
                    if settings.mode == "cutoff"
                    else f", k {settings.k}, re-rank {settings.rerank}"
                )
            )
            st.caption(
                f"recall@1 {summary.get('recall@1', float('nan')):.3f} · mean candidates "
                f"{summary.get('mean_candidates', float('nan')):.1f} · queries without a result "
                f"{summary.get('no_result', 0)}"
            )


def _worst(catalog, result, view: deeplink.View) -> None:
    st.subheader(f"Worst {WORST} queries")
    per_query = result.per_query.sort_values(["recall@10", "query_id"]).head(WORST)
    query_paths = dict(zip(catalog.query["image_id"], catalog.query["path"], strict=False))
    index_paths = dict(zip(catalog.index["image_id"], catalog.index["path"], strict=False))
    truth = catalog.matches()
    order = list(result.per_query["query_id"])
    for _, row in per_query.iterrows():
        found = result.results[order.index(row["query_id"])][:5]
        columns = st.columns(7)
        image = loaders.thumbnail(str(catalog.image_path(query_paths[row["query_id"]])))
        if image is not None:
            columns[0].image(image, caption=f"query {row['query_id']}", width="stretch")
        columns[1].markdown(
            f"recall@10 **{row['recall@10']:.2f}**  \n{int(row['n_true'])} true matches, "
            f"{int(row['n_results'])} results"
        )
        columns[1].page_link(
            "app_pages/search.py",
            label="Open in Search",
            icon=":material/image_search:",
            query_params=deeplink.view_to_params(dataclasses.replace(view, query=str(row["query_id"]))),
        )
        for column, item in zip(columns[2:], found, strict=False):
            thumb = loaders.thumbnail(str(catalog.image_path(index_paths[item]))) if item in index_paths else None
            if thumb is not None:
                column.image(
                    thumb, caption=("✓ " if item in truth.get(row["query_id"], set()) else "✗ ") + item, width="stretch"
                )


def _submission_bytes(index, workspace, index_name: str, settings: SearchSettings) -> bytes:
    """The challenge-format submission of every query with an embedding, at `settings` (top 10 each)."""
    from eproduct_core.evaluate import run_search
    from eproduct_core.submission import write_submission

    name = workspace.query_embeddings_for(index_name)
    vectors, ids = loaders.embeddings(workspace.embeddings_dir(name))
    found, _ = run_search(index, vectors, settings, batch_size=64)
    with tempfile.TemporaryDirectory() as folder:
        path = write_submission(
            Path(folder) / "submission.csv", [(q, list(r.ids)[:10]) for q, r in zip(ids, found, strict=False)]
        )
        return path.read_bytes()


def _downloads(index, workspace, index_name: str, settings: SearchSettings, result, table: pd.DataFrame) -> None:
    st.subheader("Downloads")
    columns = st.columns(3)
    columns[0].download_button(
        "Submission CSV (these settings)",
        data=lambda: _submission_bytes(index, workspace, index_name, settings),
        file_name=f"submission-{index_name}.csv",
        mime="text/csv",
        on_click="ignore",
        key="download_submission",
        help="query_id,id1 ... id10 per query: what `eproduct evaluate --submission` scores.",
    )
    columns[1].download_button(
        "Per-query results (CSV)",
        data=result.per_query.to_csv(index=False).encode("utf-8"),
        file_name=f"per-query-{index_name}.csv",
        mime="text/csv",
        on_click="ignore",
        key="download_per_query",
    )
    columns[2].download_button(
        "Sweep grid (CSV)",
        data=table.to_csv(index=False).encode("utf-8"),
        file_name=f"sweep-{index_name}.csv",
        mime="text/csv",
        on_click="ignore",
        key="download_sweep",
    )


def render() -> None:
    workspace = current_workspace()
    catalog = loaders.catalog(workspace.catalog_dir)
    index_name = controls.index_choice(workspace)
    index = loaders.index(workspace.index_dir(index_name))
    chosen = controls.search_settings(workspace, index_name, index)
    assert chosen.bits is not None  # the controls always choose a hash length
    st.title("Evaluation")
    if catalog.groundtruth_kind == "proxy":  # `catalog proxy-split`: an estimate, not the challenge's answers
        st.warning("Proxy groundtruth (near-duplicate val photos, see README): every number here is a proxy score.")
    vectors, ids, truth = _queries(workspace, index_name, catalog)
    key = loaders.stamp(workspace.index_dir(index_name) / "manifest.json")
    path = str(workspace.index_dir(index_name))
    st.caption(
        f"{len(ids)} queries with groundtruth (at most {MAX_QUERIES}) against `{index_name}` ({index.size:,} items, {index.kind})."
    )
    _side_by_side(workspace, catalog)

    st.subheader("MAR@10 by hash length and cutoff (cutoff mode, as the seed)")
    bits = tuple(b for b in SWEEP_BITS if b <= index.bits)
    table = _sweep(workspace, path, key, index, vectors, tuple(ids), truth, bits, SWEEP_CUTOFFS)
    st.altair_chart(charts.mar_heatmap(table), width="stretch")
    best = table.sort_values("mar@10_G", ascending=False).iloc[0]
    st.caption(f"Best cell: {int(best['bits'])} bits, cutoff {best['cutoff']:.2f} → MAR@10 {best['mar@10_G']:.3f}.")

    st.subheader("Distances of true matches vs nearest non-matches")
    distances = _distances(workspace, path, key, index, vectors, tuple(ids), truth, chosen.bits)
    if distances.empty:
        st.info("No distances to show.")
    else:
        st.altair_chart(
            charts.distance_histogram(
                distances,
                controls.shown_cutoff(chosen),
                "code_cosine",
                f"Code cosine at {chosen.bits} bits; the cutoff in red",
            ),
            width="stretch",
        )

    result = _evaluate(workspace, path, key, index, vectors, tuple(ids), truth, chosen)
    st.subheader("Per-query recall with the sidebar's settings")
    st.metric("MAR@10", f"{result.summary.get('mar@10_G', float('nan')):.3f}")
    st.altair_chart(charts.recall_histogram(result.per_query), width="stretch")
    view = deeplink.View(workspace=workspace.path.name, index=index_name, settings=chosen)
    _worst(catalog, result, view)
    _downloads(index, workspace, index_name, chosen, result, table)
