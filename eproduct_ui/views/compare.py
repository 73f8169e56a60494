"""Compare page: two indexes of a workspace (each with its run, embedding kind and saved settings) side by
side: MAR@10, MAR@10 per class, per-query recall differences, and the queries one finds and the other misses.

Evaluations come from the Evaluation page's cache (eproduct_core.results_cache in the workspace), so
a pair already scored there opens at once. Query classes come from the catalog when it has them, else
from the embedding map (the class of each query's nearest training embedding) when the Map page made one.
"""

from __future__ import annotations

from urllib.parse import urlencode

import altair as alt
import pandas as pd
import streamlit as st

from eproduct_core.errors import EproductError
from eproduct_core.settings import SearchSettings
from eproduct_ui import loaders
from eproduct_ui.state import current_workspace
from eproduct_ui.views import evaluation

LEVELS = ("meta", "level2", "leaf")


def _label(workspace, name: str) -> str:
    info = workspace.index_info(name)
    return f"{name} (run {info.get('run', '?')}, {info.get('kind', '?')}, {info.get('label', '')})"


def _evaluated(workspace, catalog, name: str):
    """(settings, EvaluationResult) of index `name` at its saved settings."""
    index = loaders.index(workspace.index_dir(name))
    vectors, ids, truth = evaluation._queries(workspace, name, catalog)
    settings = evaluation._settings_of(workspace, name, index)
    stamp = loaders.stamp(workspace.index_dir(name) / "manifest.json")
    path = str(workspace.index_dir(name))
    result = evaluation._evaluate(workspace, path, stamp, index, vectors, tuple(ids), truth, settings)
    return SearchSettings.from_dict(result.summary["settings"]), result  # as resolved for this index


def _classes(workspace, catalog, names: list[str], level: str) -> tuple[dict[str, str], str]:
    """query_id -> class at `level`, and where the classes came from."""
    from eproduct_core.class_analysis import query_classes

    found = query_classes(catalog, level)
    if found:
        return found, "the catalog"
    from eproduct_core.projection import read_projection

    for name in names:
        for folder in sorted((workspace.path / "maps").glob(f"{name}-*")):
            try:
                points = read_projection(folder).points
            except EproductError:
                continue
            queries = points[points["split"] == "query"]
            return dict(
                zip(queries["id"], queries[level], strict=False)
            ), f"the nearest training image on the map of {name}"
    return {}, ""


def _link(workspace, name: str, query_id: str) -> str:
    return "./?" + urlencode({"workspace": workspace.path.name, "index": name, "query": query_id})


def render() -> None:
    workspace = current_workspace()
    catalog = loaders.catalog(workspace.catalog_dir)
    names = workspace.indexes
    st.title("Compare")
    if len(names) < 2:
        st.info("This workspace has one index; build another on the Index page to compare two.")
        return
    left, right = st.columns(2)
    a = left.selectbox("A", names, index=0, format_func=lambda n: _label(workspace, n), key="compare_a")
    b = right.selectbox("B", names, index=1, format_func=lambda n: _label(workspace, n), key="compare_b")
    (settings_a, result_a), (settings_b, result_b) = (
        _evaluated(workspace, catalog, a),
        _evaluated(workspace, catalog, b),
    )
    for column, name, settings, result in ((left, a, settings_a, result_a), (right, b, settings_b, result_b)):
        other = result_b if result is result_a else result_a
        mar, mar_other = result.summary.get("mar@10_G", float("nan")), other.summary.get("mar@10_G", float("nan"))
        column.metric(f"MAR@10 of {name}", f"{mar:.3f}", delta=f"{mar - mar_other:+.3f} vs the other")
        column.caption(
            f"{workspace.index_info(name).get('kind', '?')}, {settings.bits} bits, {settings.mode}"
            + (
                f", cutoff {settings.cutoff}"
                if settings.mode == "cutoff"
                else f", k {settings.k}, re-rank {settings.rerank}"
            )
            + f" · recall@1 {result.summary.get('recall@1', float('nan')):.3f}"
        )

    columns = ["query_id", "n_true", "recall@10", "hits@10", "first_hit_rank"]
    both = result_a.per_query[columns].merge(
        result_b.per_query[columns], on=["query_id", "n_true"], suffixes=(" A", " B")
    )
    both["difference"] = both["recall@10 A"] - both["recall@10 B"]

    st.subheader("Per class")
    level = st.radio("Class level", LEVELS, index=2, horizontal=True, key="compare_level")
    classes, source = _classes(workspace, catalog, [a, b], level)
    if classes:
        from eproduct_core.class_analysis import per_class_mar

        per_class = pd.concat(
            [
                per_class_mar(r.per_query, classes).assign(index=f"{side}: {n}")
                for side, n, r in (("A", a, result_a), ("B", b, result_b))
            ]
        )
        st.caption(f"Query classes from {source}.")
        chart = (
            alt.Chart(per_class)
            .mark_bar()
            .encode(
                x=alt.X("class:N", title=f"{level} class"),
                xOffset="index:N",
                y=alt.Y("mar@10_G:Q", title="MAR@10"),
                color=alt.Color("index:N", title=None),
                tooltip=["class", "index", "queries", alt.Tooltip("mar@10_G:Q", format=".3f")],
            )
            .properties(height=260)
        )
        st.altair_chart(chart, width="stretch")
    else:
        st.info("The catalog gives its queries no classes. Open the Map page once: its map labels each query.")

    st.subheader("Per query")
    only_a = both[(both["hits@10 A"] > 0) & (both["hits@10 B"] == 0)]
    only_b = both[(both["hits@10 B"] > 0) & (both["hits@10 A"] == 0)]
    cols = st.columns(3)
    cols[0].metric(f"Found by {a} only", len(only_a))
    cols[1].metric(f"Found by {b} only", len(only_b))
    cols[2].metric("Queries with a different recall@10", int((both["difference"].abs() > 1e-9).sum()))
    link = st.column_config.LinkColumn("open", display_text="Search")
    for title, frame, name in (
        (f"Found by {a}, missed by {b}", only_a, a),
        (f"Found by {b}, missed by {a}", only_b, b),
    ):
        st.markdown(f"**{title}** ({len(frame)})")
        if frame.empty:
            st.caption("None.")
            continue
        shown = frame.assign(open=[_link(workspace, name, q) for q in frame["query_id"]])
        st.dataframe(shown, hide_index=True, column_config={"open": link}, width="stretch")
    scatter = (
        alt.Chart(both)
        .mark_circle(size=60, opacity=0.6)
        .encode(
            x=alt.X("recall@10 A:Q", title=f"recall@10 of {a}", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("recall@10 B:Q", title=f"recall@10 of {b}", scale=alt.Scale(domain=[0, 1])),
            tooltip=["query_id", "n_true", "recall@10 A", "recall@10 B"],
        )
        .properties(height=300, title="Recall@10 per query (above the diagonal: B does better)")
    )
    st.altair_chart(scatter, width="stretch")
    st.markdown("**Every query** (sorted by the difference A − B)")
    st.dataframe(both.sort_values(["difference", "query_id"]), hide_index=True, width="stretch")
