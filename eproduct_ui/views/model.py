"""Model page: per-class accuracy vs per-class training count (per level, log x, trend), training curves."""

from __future__ import annotations

import math

import streamlit as st

from eproduct_core.errors import EproductError
from eproduct_core.taxonomy import LEVELS
from eproduct_ui import charts, loaders
from eproduct_ui.state import current_workspace
from eproduct_ui.views.catalog import class_images


def _run_choice(workspace) -> str:
    runs = workspace.runs
    if not runs:
        raise EproductError(f"Workspace {workspace.path} has no training run. Train one with `eproduct train`.")
    if len(runs) == 1:
        return runs[0]
    return st.sidebar.selectbox("Training run", runs, key=f"run::{workspace.path}")


def _picked(event, fallback: str) -> str:
    """The class clicked in the scatter (Altair selection), else the selectbox's."""
    try:
        points = event.selection.get("picked") or []
    except AttributeError:
        points = []
    return str(points[0]["class"]) if points and "class" in points[0] else fallback


def render() -> None:
    from eproduct_core.class_analysis import accuracy_trend, read_class_accuracy

    workspace = current_workspace()
    run = _run_choice(workspace)
    run_dir = workspace.run_dir(run)
    st.title("Model")
    st.caption(f"Run `{run}` in {run_dir}")
    accuracy = read_class_accuracy(run_dir)
    trend = accuracy_trend(accuracy)
    levels = [level for level in LEVELS if level in set(accuracy["level"])]
    level = st.sidebar.radio("Level", levels, index=len(levels) - 1, key="model_level", horizontal=True)
    frame = accuracy[accuracy["level"] == level].dropna(subset=["accuracy"])
    fit = trend[trend["level"] == level]
    if not fit.empty and not math.isnan(float(fit["r"].iloc[0])):
        st.caption(
            f"Trend: accuracy ≈ {fit['slope'].iloc[0]:.3f}·log10(count) + {fit['intercept'].iloc[0]:.3f}, "
            f"Pearson r = {fit['r'].iloc[0]:.2f} over {int(fit['points'].iloc[0])} classes."
        )
    event = st.altair_chart(
        charts.accuracy_scatter(frame, level), width="stretch", on_select="rerun", key=f"scatter::{level}"
    )
    classes = frame.sort_values("accuracy")["class"].tolist()
    if classes:
        chosen = st.selectbox(
            "Show the images of a class (or click a point)",
            classes,
            key=f"class::{level}",
            format_func=lambda c: f"{c}  (accuracy {float(frame.loc[frame['class'] == c, 'accuracy'].iloc[0]):.2f})",
        )
        class_images(loaders.catalog(workspace.catalog_dir), level, _picked(event, chosen))
    st.subheader("Training curves")
    metrics = loaders.run_metrics(str(run_dir), loaders.stamp(run_dir / "metrics.jsonl"))
    if metrics.empty or "epoch" not in metrics.columns:
        st.info(f"{run_dir / 'metrics.jsonl'} holds no epochs yet.")
        return
    st.altair_chart(charts.training_curves(metrics), width="stretch")
    st.dataframe(metrics, hide_index=True, width="stretch")
