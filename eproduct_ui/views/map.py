"""Map page: the embedding space in 2-D (eproduct_core.projection), coloured by class or split, the current
query and its true matches highlighted; a brush selection shows the selected images.

The map is computed once per index and projection method and kept in `WS/maps/<index>-<method>/` (keyed by
the index checksum), so later visits and other server processes read it. Training embeddings come from
the run (embedded once, cached in the run folder by eproduct_core.run_cache).
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from eproduct_core.errors import EproductError
from eproduct_ui import controls, loaders
from eproduct_ui.state import current_workspace

COLOURS = {"meta": "meta", "level 2": "level2", "leaf": "leaf", "split": "split"}
SHOWN = 24  # selected images drawn
MAX_LEGEND = 20  # more classes than this: colours without a legend


def _method_options() -> list[str]:
    try:
        import umap  # noqa: F401 - optional extra
    except ImportError:
        return ["pca"]
    return ["pca", "umap"]


def _parts(workspace, index_name: str, index, catalog):
    """{"index", "query", "train": projection.Part} of this index's embedding kind."""
    from eproduct_core.projection import Part
    from eproduct_core.run_cache import split_embeddings

    info = workspace.index_info(index_name)
    parts = {}
    if index.has_vectors:
        parts["index"] = Part(index.vectors, index.all_ids())
    elif info.get("embeddings"):
        vectors, ids = loaders.embeddings(workspace.embeddings_dir(info["embeddings"]))
        parts["index"] = Part(vectors, ids)
    query_name = workspace.query_embeddings_for(index_name)
    if query_name:
        vectors, ids = loaders.embeddings(workspace.embeddings_dir(query_name))
        parts["query"] = Part(vectors, ids)
    if info.get("run") and len(catalog.train):
        train = split_embeddings(
            workspace.run_dir(info["run"]), workspace.catalog_dir, "train", index.kind, device="cpu"
        )
        parts["train"] = Part(train.vectors, list(train.ids))
    return parts


def load_map(workspace, index_name: str, index, catalog, method: str = "pca"):
    """The index's map from the workspace, computed (with a status) when missing or stale."""
    from eproduct_core.projection import build_projection, read_projection
    from eproduct_core.results_cache import index_checksum

    folder = workspace.path / "maps" / f"{index_name}-{method}"
    key = {"index": index_checksum(workspace.index_dir(index_name)), "method": method}
    try:
        found = read_projection(folder)
        if found.meta.get("key") == key:
            return found
    except EproductError:
        pass
    with st.status(f"Computing the {method.upper()} map of {index_name} (once; kept in the workspace)...") as status:
        st.write("Embedding the training images (once per run)...")
        parts = _parts(workspace, index_name, index, catalog)
        st.write(f"Projecting {sum(len(p.ids) for p in parts.values()):,} embeddings (at most 50,000 drawn)...")
        build_projection(folder, parts, catalog.train, method=method, key=key)
        status.update(label="Map ready", state="complete", expanded=False)
    return read_projection(folder)


def _chart(points: pd.DataFrame, colour: str, highlight: pd.DataFrame) -> alt.LayerChart:
    brush = alt.selection_interval(name="brush", encodings=["x", "y"])
    many = points[colour].nunique() > MAX_LEGEND
    base = (
        alt.Chart(points)
        .mark_circle(size=14, opacity=0.55)
        .encode(
            x=alt.X("x:Q", title="component 1"),
            y=alt.Y("y:Q", title="component 2"),
            color=alt.Color(f"{colour}:N", legend=None if many else alt.Legend(title=colour)),
            tooltip=["id", "split", "meta", "level2", "leaf", "label_source"],
        )
        .add_params(brush)
    )
    marks = (
        alt.Chart(highlight)
        .mark_point(filled=True, stroke="black", strokeWidth=1.5)
        .encode(
            x="x:Q",
            y="y:Q",
            shape=alt.Shape("role:N", scale=alt.Scale(domain=["query", "true match"], range=["diamond", "circle"])),
            size=alt.Size("role:N", scale=alt.Scale(domain=["query", "true match"], range=[260, 110]), legend=None),
            color=alt.value("#d62728"),
            tooltip=["id", "role"],
        )
    )
    return (base + marks).properties(height=560)


def _highlight(projection, catalog, query_id: str | None) -> pd.DataFrame:
    points = projection.points
    rows = []
    if query_id:
        mine = points[(points["id"] == query_id) & (points["split"] == "query")]
        if len(mine):
            rows.append({"id": query_id, "role": "query", "x": mine["x"].iat[0], "y": mine["y"].iat[0]})
        truth = catalog.matches().get(query_id, set())
        found = points[(points["split"] == "index") & points["id"].isin(truth)]
        rows += [
            {"id": i, "role": "true match", "x": x, "y": y}
            for i, x, y in zip(found["id"], found["x"], found["y"], strict=False)
        ]
    liked = st.session_state.get("like")
    if liked:
        mine = points[(points["id"] == liked) & (points["split"] == "index")]
        if len(mine):
            rows.append({"id": liked, "role": "query", "x": mine["x"].iat[0], "y": mine["y"].iat[0]})
    return pd.DataFrame(rows, columns=["id", "role", "x", "y"])


def _selected(points: pd.DataFrame, event) -> pd.DataFrame:
    box = (getattr(event, "selection", None) or {}).get("brush") or {}
    if not box.get("x") or not box.get("y"):
        return points.iloc[0:0]
    (x0, x1), (y0, y1) = sorted(box["x"]), sorted(box["y"])
    return points[points["x"].between(x0, x1) & points["y"].between(y0, y1)]


def _images(catalog, chosen: pd.DataFrame) -> None:
    paths = {}
    for split in ("train", "query", "index"):
        frame = catalog.split(split)
        paths[split] = dict(zip(frame["image_id"], frame["path"], strict=False))
    images, captions = [], []
    for item, split, leaf in zip(chosen["id"], chosen["split"], chosen["leaf"], strict=False):
        path = paths.get(split, {}).get(item)
        thumb = loaders.thumbnail(str(catalog.image_path(path))) if path else None
        if thumb is not None:
            images.append(thumb)
            captions.append(f"{split} {item} · {leaf}")
        if len(images) >= SHOWN:
            break
    if images:
        st.image(images, caption=captions, width=96)  # one element for the whole selection


def render() -> None:
    workspace = current_workspace()
    catalog = loaders.catalog(workspace.catalog_dir)
    index_name = controls.index_choice(workspace)
    index = loaders.index(workspace.index_dir(index_name))
    st.title("Map")
    methods = _method_options()
    left, middle, right = st.columns([2, 2, 3])
    method = left.selectbox("Projection", methods, help="PCA (numpy). UMAP when the optional umap-learn is installed.")
    colour = COLOURS[middle.radio("Colour by", list(COLOURS), horizontal=True, key="map_colour")]
    ids = list(catalog.query["image_id"])
    default = st.session_state.get(controls.MEMORY, {}).get("sample_query")  # the Search page's query
    query_id = (
        right.selectbox("Highlight query", ids, index=ids.index(default) if default in ids else 0, key="map_query")
        if ids
        else None
    )
    projection = load_map(workspace, index_name, index, catalog, method)
    points = projection.points
    meta = projection.meta
    shares = ", ".join(f"{k} {v:,} of {meta['total'][k]:,}" for k, v in meta["per_split"].items())
    st.caption(
        f"{len(points):,} points ({shares}), "
        f"{meta['method'].upper()} of the unit-length `{index.kind}` embeddings. Index and query points carry the "
        "classes of their nearest training embedding. Drag a box to see its images."
    )
    event = st.altair_chart(
        _chart(points, colour, _highlight(projection, catalog, query_id)),
        on_select="rerun",
        key="map_chart",
        width="stretch",
    )
    chosen = _selected(points, event)
    if len(chosen):
        st.markdown(f"**{len(chosen):,} selected** (the first {min(SHOWN, len(chosen))} shown)")
        _images(catalog, chosen)
        counts = (
            chosen.groupby(["split", colour] if colour != "split" else ["split"]).size().rename("points").reset_index()
        )
        st.dataframe(counts.sort_values("points", ascending=False).head(20), hide_index=True)
    else:
        st.caption("No selection yet.")
