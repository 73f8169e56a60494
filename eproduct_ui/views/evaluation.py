"""Evaluation page: MAR@10 over hash length x cutoff, match vs non-match distances, per-query recall,
worst queries with images, and the seed's settings beside the better ones.

Everything is computed from the workspace's precomputed query embeddings (no model needed) and cached
per index file, so the page is quick after its first draw.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from eproduct_core.errors import EproductError
from eproduct_core.settings import SEED_SETTINGS, SearchSettings
from eproduct_ui import charts, controls, loaders
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


@st.cache_resource(show_spinner="Sweeping hash length x cutoff...", max_entries=16)
def _sweep(path: str, key: float, _index, _vectors, ids: tuple, _truth, bits: tuple, cutoffs: tuple) -> pd.DataFrame:
    from eproduct_core.evaluate import sweep

    base = SearchSettings(mode="cutoff", rerank=0, k=10)
    return sweep(_index, _vectors, list(ids), _truth, base, {"bits": list(bits), "cutoff": list(cutoffs)})


@st.cache_resource(show_spinner="Evaluating...", max_entries=32)
def _evaluate(path: str, key: float, _index, _vectors, ids: tuple, _truth, settings: SearchSettings):
    from eproduct_core.evaluate import evaluate_search

    return evaluate_search(_index, _vectors, list(ids), _truth, settings)


@st.cache_resource(show_spinner="Measuring distances...", max_entries=16)
def _distances(path: str, key: float, _index, _vectors, ids: tuple, _truth, bits: int) -> pd.DataFrame:
    from eproduct_core.analysis import distance_table

    return distance_table(_index, _vectors, list(ids), _truth, bits=bits)


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
        result = _evaluate(str(workspace.index_dir(name)), key, index, vectors, tuple(ids), truth, settings)
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


def _worst(catalog, result) -> None:
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
        for column, item in zip(columns[2:], found, strict=False):
            thumb = loaders.thumbnail(str(catalog.image_path(index_paths[item]))) if item in index_paths else None
            if thumb is not None:
                column.image(
                    thumb, caption=("✓ " if item in truth.get(row["query_id"], set()) else "✗ ") + item, width="stretch"
                )


def render() -> None:
    workspace = current_workspace()
    catalog = loaders.catalog(workspace.catalog_dir)
    index_name = controls.index_choice(workspace)
    index = loaders.index(workspace.index_dir(index_name))
    chosen = controls.search_settings(workspace, index_name, index)
    st.title("Evaluation")
    vectors, ids, truth = _queries(workspace, index_name, catalog)
    key = loaders.stamp(workspace.index_dir(index_name) / "manifest.json")
    path = str(workspace.index_dir(index_name))
    st.caption(
        f"{len(ids)} queries with groundtruth (at most {MAX_QUERIES}) against `{index_name}` ({index.size:,} items, {index.kind})."
    )
    _side_by_side(workspace, catalog)

    st.subheader("MAR@10 by hash length and cutoff (cutoff mode, as the seed)")
    bits = tuple(b for b in SWEEP_BITS if b <= index.bits)
    table = _sweep(path, key, index, vectors, tuple(ids), truth, bits, SWEEP_CUTOFFS)
    st.altair_chart(charts.mar_heatmap(table), width="stretch")
    best = table.sort_values("mar@10_G", ascending=False).iloc[0]
    st.caption(f"Best cell: {int(best['bits'])} bits, cutoff {best['cutoff']:.2f} → MAR@10 {best['mar@10_G']:.3f}.")

    st.subheader("Distances of true matches vs nearest non-matches")
    distances = _distances(path, key, index, vectors, tuple(ids), truth, chosen.bits)
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

    result = _evaluate(path, key, index, vectors, tuple(ids), truth, chosen)
    st.subheader("Per-query recall with the sidebar's settings")
    st.metric("MAR@10", f"{result.summary.get('mar@10_G', float('nan')):.3f}")
    st.altair_chart(charts.recall_histogram(result.per_query), width="stretch")
    _worst(catalog, result)
