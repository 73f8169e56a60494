"""Catalog page: class imbalance per level, the hierarchy as a browsable tree, sample images per class."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from eproduct_core.taxonomy import LEVELS
from eproduct_ui import charts, loaders
from eproduct_ui.state import current_workspace

SAMPLES = 8  # images shown per class


def class_counts(train: pd.DataFrame, level: str) -> pd.DataFrame:
    """class, images, share at one level, most common first."""
    counts = train[level].value_counts().rename_axis("class").reset_index(name="images")
    counts["share"] = counts["images"] / max(int(counts["images"].sum()), 1)
    return counts


def _summary(catalog) -> None:
    cols = st.columns(5)
    cols[0].metric("Training images", f"{len(catalog.train):,}")
    cols[1].metric("Query images", f"{len(catalog.query):,}")
    cols[2].metric("Index images", f"{len(catalog.index):,}")
    cols[3].metric("Leaf classes", f"{catalog.train['leaf'].nunique():,}")
    pairs = 0 if catalog.groundtruth is None else len(catalog.groundtruth)
    cols[4].metric("True query-index pairs", f"{pairs:,}")


def _imbalance(train: pd.DataFrame, log_scale: bool) -> None:
    st.subheader("Class imbalance")
    tabs = st.tabs([f"{level}" for level in LEVELS])
    for tab, level in zip(tabs, LEVELS, strict=False):
        with tab:
            counts = class_counts(train, level)
            ratio = counts["images"].iloc[0] / max(counts["images"].iloc[-1], 1)
            st.caption(f"{len(counts)} classes; the largest has {ratio:.0f}x the images of the smallest.")
            st.altair_chart(charts.class_counts(counts, level, log_scale), width="stretch")


def _tree(catalog) -> tuple[str, str]:
    """Browse meta -> level2 -> leaf; returns (level, class) picked for the sample images."""
    train = catalog.train
    st.subheader("Hierarchy")
    cols = st.columns(3)
    metas = sorted(train["meta"].unique())
    meta = cols[0].selectbox("meta", metas, key="tree_meta")
    under_meta = train[train["meta"] == meta]
    level2s = sorted(under_meta["level2"].unique())
    level2 = cols[1].selectbox("level2", ["(all)"] + level2s, key="tree_level2")
    scope = under_meta if level2 == "(all)" else under_meta[under_meta["level2"] == level2]
    leaves = sorted(scope["leaf"].unique())
    leaf = cols[2].selectbox("leaf", ["(all)"] + leaves, key="tree_leaf")
    child = "level2" if level2 == "(all)" else "leaf"
    children = scope[child].value_counts().rename_axis("child").reset_index(name="images")
    parent = meta if level2 == "(all)" else level2
    st.altair_chart(charts.children_bars(children, parent), width="stretch")
    if leaf != "(all)":
        return "leaf", leaf
    if level2 != "(all)":
        return "level2", level2
    return "meta", meta


def class_images(catalog, level: str, name: str) -> None:
    """A row of training images of one class, with their titles (Catalog and Model pages)."""
    members = catalog.train[level] == name
    rows = catalog.train[members].head(SAMPLES)
    st.markdown(f"**Training images of {level} `{name}`** ({int(members.sum())} in all)")
    columns = st.columns(SAMPLES)
    for column, (_, row) in zip(columns, rows.iterrows(), strict=False):
        image = loaders.thumbnail(str(catalog.image_path(row["path"])))
        if image is not None:
            column.image(image, caption=str(row.get("title", ""))[:40], width="stretch")


def render() -> None:
    workspace = current_workspace()
    catalog = loaders.catalog(workspace.catalog_dir)
    with st.sidebar:
        log_scale = st.checkbox("Log scale for class counts", value=True, key="catalog_log")
    st.title("Catalog")
    st.caption(f"{workspace.catalog_dir}")
    _summary(catalog)
    _imbalance(catalog.train, log_scale)
    level, name = _tree(catalog)
    class_images(catalog, level, name)
