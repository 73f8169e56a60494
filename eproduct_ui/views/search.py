"""Search page: a query image (upload or catalog sample) against the workspace's index, with live controls.

The query embedding is computed once per query (catalog samples use the workspace's precomputed query
embeddings; uploads are decoded in memory and cached by the sha256 of their bytes), so moving a
slider only re-runs the numpy search. True matches are marked; missed ones are explained.

The view lives in the URL (eproduct_ui.deeplink): opening a link restores it, and every run writes it
back. The settings and results are one `st.fragment`, so moving a slider reruns only them. "More like
this" under a match makes it the query, searched with its stored float16 vector (no re-embedding).
"""

from __future__ import annotations

import time

import numpy as np
import streamlit as st
from PIL import Image

from eproduct_core.errors import EproductError
from eproduct_core.lsh import hamming_radius
from eproduct_core.search import code_cosines, search
from eproduct_core.settings import SearchSettings
from eproduct_ui import charts, controls, deeplink, loaders
from eproduct_ui.state import current_workspace

GRID_COLUMNS = 5
MAX_SHOWN = 40  # matches drawn in the grid (the count above it is the full number)
UPLOAD_TYPES = ["jpg", "jpeg", "png", "gif", "bmp", "webp", "tif", "tiff"]


LIKE = "like"  # session key: the index item "More like this" made the query


def _forget_like() -> None:
    st.session_state.pop(LIKE, None)


def _like_source(catalog, index):
    """(vector, label, image, None) of the "More like this" item: its stored vector, no re-embedding."""
    item = st.session_state.get(LIKE)
    if not item:
        return None
    row = index.row_numbers().get(item)
    if row is None or not index.has_vectors:
        st.warning(f"Index item {item!r} is not in this index (or it stores no vectors); back to the sample query.")
        _forget_like()
        return None
    paths = dict(zip(catalog.index["image_id"], catalog.index["path"], strict=False))
    image = loaders.thumbnail(str(catalog.image_path(paths[item]))) if item in paths else None
    vector = np.asarray(index.vectors[row], dtype=np.float32)
    return vector, f"{item} (index item)", image, None


def _query_source(workspace, catalog, index_name: str):
    """(vector, label, image, query_id) of the chosen query, or None before one is chosen."""
    info = workspace.index_info(index_name)
    upload = st.file_uploader(
        "Drop a product photo here, or browse",
        type=UPLOAD_TYPES,
        key="upload",
        on_change=_forget_like,
        help="Decoded in memory and never saved. JPEG, PNG, GIF, BMP, WebP or TIFF.",
    )
    ids = list(catalog.query["image_id"])
    query_id = (
        st.selectbox("...or pick a sample query from the catalog", ids, key="sample_query", on_change=_forget_like)
        if ids
        else None
    )
    liked = _like_source(catalog, loaders.index(workspace.index_dir(index_name)))
    if liked is not None:
        return liked
    if upload is not None:
        data = upload.getvalue()
        from eproduct_core.images import load_image

        image: Image.Image | None = load_image(data, name=upload.name)  # refuses a bad upload with a clear message
        run = info.get("run") or (workspace.runs[0] if workspace.runs else None)
        if run is None:
            raise EproductError(
                "This workspace has no training run, so an uploaded photo cannot be embedded. "
                "Pick a sample query, or train a run with `eproduct train`."
            )
        kind = loaders.index(workspace.index_dir(index_name)).kind
        started = time.perf_counter()
        vector = loaders.embed_upload(workspace.run_dir(run), kind, data, upload.name)
        st.session_state["embed_ms"] = (time.perf_counter() - started) * 1000
        return vector, upload.name, image, loaders.query_for_bytes(catalog, data)
    if query_id is None:
        return None
    position = ids.index(query_id)
    image = loaders.thumbnail(str(catalog.image_path(catalog.query["path"].iat[position])))
    emb_name = workspace.query_embeddings_for(index_name)
    if emb_name is not None:
        vectors, emb_ids = loaders.embeddings(workspace.embeddings_dir(emb_name))
        if query_id in emb_ids:
            return vectors[emb_ids.index(query_id)], query_id, image, query_id
    run = info.get("run") or (workspace.runs[0] if workspace.runs else None)
    if run is None:
        raise EproductError("No query embeddings and no training run in this workspace; cannot embed the sample.")
    data = catalog.image_path(catalog.query["path"].iat[position]).read_bytes()
    kind = loaders.index(workspace.index_dir(index_name)).kind
    return loaders.embed_upload(workspace.run_dir(run), kind, data, query_id), query_id, image, query_id


def _grid(catalog, result, truth: set[str], distance: np.ndarray, label: str) -> None:
    """Rows of matches: one image (caption included) and one "More like this" button per match."""
    paths = dict(zip(catalog.index["image_id"], catalog.index["path"], strict=False))
    shown = list(zip(result.ids, distance, result.hamming, strict=False))[:MAX_SHOWN]
    for start in range(0, len(shown), GRID_COLUMNS):
        columns = st.columns(GRID_COLUMNS)
        for column, (item, dist, ham) in zip(columns, shown[start : start + GRID_COLUMNS], strict=False):
            with column:
                image = loaders.thumbnail(str(catalog.image_path(paths[item]))) if item in paths else None
                mark = "✓ match · " if item in truth else ""  # plain glyph: no emoji font needed
                caption = f"{mark}{item} · {label} {dist:.3f} · ham {int(ham)}"
                if image is not None:
                    st.image(image, caption=caption, width="stretch")
                else:
                    st.caption(caption)
                if st.button("More like this", key=f"more::{item}", help=f"Search with {item}'s stored vector"):
                    st.session_state[LIKE] = item
                    st.rerun()  # the whole page: the query column shows the new query


def _missed(index, vector, truth: set[str], settings: SearchSettings) -> None:
    """List the true matches missing from the top 10, with eproduct_core.why_missed's explanation."""
    from eproduct_core.why_missed import why_missed

    table = why_missed(index, np.asarray(vector, dtype=np.float32), truth, settings)
    missed = table[~table["retrieved"].fillna(False).astype(bool)]
    if missed.empty:
        return
    st.markdown(f"**Missed true matches ({len(missed)} of {len(truth)})**")
    shown = missed[["index_id", "hamming", "code_cosine", "cosine", "shard", "reason"]].rename(
        columns={"index_id": "index id", "code_cosine": "code cosine", "reason": "why missed"}
    )
    st.dataframe(shown.round(4), hide_index=True, width="stretch")


def _restore_link(workspace, catalog) -> None:
    def options_for(name: str):
        opened = loaders.index(workspace.index_dir(name))
        return controls.bit_options(opened.bits), controls.rerank_limit(opened), controls.scope_of(workspace, name)

    deeplink.restore(workspace, workspace.indexes, list(catalog.query["image_id"]), options_for)


def render() -> None:
    workspace = current_workspace()
    catalog = loaders.catalog(workspace.catalog_dir)
    _restore_link(workspace, catalog)
    index_name = controls.index_choice(workspace)
    index = loaders.index(workspace.index_dir(index_name))
    st.title("Search")
    left, right = st.columns([1, 3])
    with left:
        chosen = _query_source(workspace, catalog, index_name)
        if chosen is None:
            st.info("This catalog has no query images; upload a photo.")
            return
        vector, label, image, query_id = chosen
        if image is not None:
            st.image(image, caption=f"query: {label}", width="stretch")
        if st.session_state.get(LIKE):
            st.button("Back to the sample query", on_click=_forget_like)
    index.check_compatible(None, int(np.asarray(vector).shape[0]))
    with right:
        _results(workspace, catalog, index_name, index, vector, query_id)


@st.fragment
def _results(workspace, catalog, index_name: str, index, vector: np.ndarray, query_id: str | None) -> None:
    """The settings (sidebar) and everything they change; a slider move reruns only this."""
    settings = controls.search_settings(workspace, index_name, index)
    upload = st.session_state.get("upload") is not None and not st.session_state.get(LIKE)
    deeplink.publish(
        deeplink.View(
            workspace=workspace.path.name,
            index=index_name,
            query=None if upload or st.session_state.get(LIKE) else query_id,
            like=st.session_state.get(LIKE),
            settings=settings,
        )
    )
    started = time.perf_counter()
    result = search(index, vector[None, :].astype(np.float32), settings)[0]
    search_ms = (time.perf_counter() - started) * 1000
    truth = catalog.matches().get(query_id, set()) if query_id else set()
    distance, label_d = (result.cosine, "cos") if result.cosine is not None else (result.code_cosine, "code-cos")
    cols = st.columns(4)
    cols[0].metric("Matches", len(result.ids))
    cols[1].metric("True matches in top 10", f"{len(truth & set(result.ids[:10]))} / {len(truth)}" if truth else "n/a")
    cols[2].metric(
        "Hamming radius",
        hamming_radius(controls.shown_cutoff(settings), settings.bits or index.bits),
        help="The cutoff's equivalent Hamming radius at this hash length, for codes with half their bits set.",
    )
    cols[3].metric("Search time", f"{search_ms:.1f} ms", help=f"{result.candidates} candidates considered")
    if not result.ids:
        st.warning("No index item passes the cutoff at this hash length. Raise the cutoff or shorten the hash.")
    _grid(catalog, result, truth, distance, label_d)
    if len(result.ids) > MAX_SHOWN:
        st.caption(f"Showing the first {MAX_SHOWN} of {len(result.ids)} matches (sorted by distance).")
    if truth:
        _missed(index, vector, truth, settings)
    every = charts.binned(code_cosines(index, vector, settings.bits or index.bits))
    st.altair_chart(
        charts.binned_histogram(
            every,
            controls.shown_cutoff(settings),
            "code-cosine distance",
            f"Distance to every index item at {settings.bits} bits; cutoff in red",
        ),
        width="stretch",
    )
