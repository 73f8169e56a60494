"""Altair chart builders: pure functions from DataFrames to charts (no streamlit calls here)."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

HEIGHT = 260


def class_counts(counts: pd.DataFrame, level: str, log_scale: bool) -> alt.Chart:
    """Sorted bars of images per class (`counts`: class, images) at one level."""
    scale = alt.Scale(type="symlog") if log_scale else alt.Scale(type="linear")  # symlog: bars need a 0 base
    many = len(counts) > 40
    x = alt.X("class:N", sort="-y", title=f"{level} class", axis=alt.Axis(labels=not many, labelAngle=-45))
    return (
        alt.Chart(counts)
        .mark_bar()
        .encode(
            x=x,
            y=alt.Y("images:Q", scale=scale, title="training images"),
            tooltip=["class", "images", alt.Tooltip("share:Q", format=".2%")],
        )
        .properties(height=HEIGHT, title=f"Class imbalance at {level} ({len(counts)} classes)")
    )


def children_bars(frame: pd.DataFrame, parent: str) -> alt.Chart:
    """Horizontal bars of the children of one class (`frame`: child, images)."""
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            y=alt.Y("child:N", sort="-x", title=None),
            x=alt.X("images:Q", title="training images"),
            tooltip=["child", "images"],
        )
        .properties(height=alt.Step(22), title=f"Inside {parent}")
    )


def accuracy_scatter(frame: pd.DataFrame, level: str) -> alt.LayerChart:
    """Per-class accuracy vs per-class training count (log x), with a log trend line and tooltips."""
    frame = frame[frame["train_count"] > 0]
    select = alt.selection_point(fields=["class"], name="picked")
    points = (
        alt.Chart(frame)
        .mark_circle(size=70, opacity=0.75)
        .encode(
            x=alt.X("train_count:Q", scale=alt.Scale(type="log"), title="training images of the class (log)"),
            y=alt.Y("accuracy:Q", title="validation accuracy", scale=alt.Scale(domain=[0, 1])),
            color=alt.condition(select, alt.value("#3b6ea8"), alt.value("#bbbbbb")),
            tooltip=["class", "train_count", "val_count", alt.Tooltip("accuracy:Q", format=".2f")],
        )
        .add_params(select)
    )
    trend = (
        alt.Chart(frame)
        .transform_regression("train_count", "accuracy", method="log")
        .mark_line(color="#d62728")
        .encode(x="train_count:Q", y="accuracy:Q")
    )
    return alt.LayerChart(layer=[points, trend], height=HEIGHT + 60, title=f"Accuracy vs class size ({level})")


def training_curves(metrics: pd.DataFrame) -> alt.Chart:
    """Loss and validation accuracy per epoch (`metrics`: epoch, train_loss, val_acc_<level>...)."""
    columns = [c for c in metrics.columns if c == "train_loss" or c.startswith("val_acc_")]
    long = metrics.melt(id_vars=["epoch"], value_vars=columns, var_name="series", value_name="value")
    long["panel"] = np.where(long["series"] == "train_loss", "training loss", "validation accuracy")
    return (
        alt.Chart(long)
        .mark_line(point=True)
        .encode(
            x=alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1)),
            y=alt.Y("value:Q", title=None),
            color="series:N",
            tooltip=["epoch", "series", alt.Tooltip("value:Q", format=".4f")],
        )
        .properties(height=HEIGHT - 60, width=300)
        .facet(column=alt.Column("panel:N", title=None))
        .resolve_scale(y="independent")
    )


def distance_histogram(distances: pd.DataFrame, cutoff: float | None, column: str, title: str) -> alt.LayerChart:
    """Histogram of distances (`distances[column]`, optional `pair` for colour) with the cutoff as a rule."""
    color = alt.Color("pair:N", title=None) if "pair" in distances.columns else alt.value("#3b6ea8")
    bars = (
        alt.Chart(distances)
        .mark_bar(opacity=0.7)
        .encode(
            x=alt.X(f"{column}:Q", bin=alt.Bin(maxbins=40), title=column.replace("_", " ")),
            y=alt.Y("count():Q", title="index items", stack=None),
            color=color,
        )
    )
    layers = [bars]
    if cutoff is not None:
        rule = pd.DataFrame({"cutoff": [cutoff]})
        layers.append(
            alt.Chart(rule)
            .mark_rule(color="#d62728", strokeWidth=2, strokeDash=[4, 3])
            .encode(x="cutoff:Q", tooltip=[alt.Tooltip("cutoff:Q", format=".3f")])
        )
    return alt.LayerChart(layer=layers, height=HEIGHT - 40, title=title)


def mar_heatmap(table: pd.DataFrame, value: str = "mar@10_G") -> alt.LayerChart:
    """MAR@10 over hash length x cutoff (`table`: bits, cutoff, value)."""
    base = alt.Chart(table).encode(
        x=alt.X("cutoff:O", title="code-cosine cutoff"),
        y=alt.Y("bits:O", title="hash length (bits)", sort="descending"),
    )
    cells = base.mark_rect().encode(
        color=alt.Color(f"{value}:Q", title="MAR@10", scale=alt.Scale(scheme="viridis")),
        tooltip=[
            "bits",
            "cutoff",
            alt.Tooltip(f"{value}:Q", format=".3f"),
            alt.Tooltip("mean_candidates:Q", format=".1f"),
        ],
    )
    text = base.mark_text(fontSize=10).encode(text=alt.Text(f"{value}:Q", format=".2f"), color=alt.value("white"))
    return alt.LayerChart(layer=[cells, text], height=HEIGHT, title="MAR@10 by hash length and cutoff")


def recall_histogram(per_query: pd.DataFrame, column: str = "recall@10") -> alt.Chart:
    return (
        alt.Chart(per_query)
        .mark_bar()
        .encode(
            x=alt.X(f"{column}:Q", bin=alt.Bin(step=0.1), title=f"per-query {column}"),
            y=alt.Y("count():Q", title="queries"),
        )
        .properties(height=HEIGHT - 60, title="Per-query recall")
    )


def bucket_occupancy(sizes: pd.DataFrame) -> alt.Chart:
    """How many buckets hold how many items (`sizes`: items, buckets), log axes."""
    return (
        alt.Chart(sizes)
        .mark_bar()
        .encode(
            x=alt.X("items:Q", scale=alt.Scale(type="log"), title="items in the bucket (log)"),
            y=alt.Y("buckets:Q", scale=alt.Scale(type="symlog"), title="buckets (symlog)"),
            tooltip=["items", "buckets"],
        )
        .properties(height=HEIGHT - 40, title="Bucket occupancy")
    )


def binned(values: np.ndarray, bins: int = 40, low: float = 0.0, high: float = 1.0) -> pd.DataFrame:
    """Counts of `values` in equal bins over [low, high] (pre-binned so a million items stay light)."""
    counts, edges = np.histogram(np.clip(values, low, high), bins=bins, range=(low, high))
    return pd.DataFrame({"start": edges[:-1], "end": edges[1:], "items": counts})


def binned_histogram(frame: pd.DataFrame, cutoff: float | None, axis_title: str, title: str) -> alt.LayerChart:
    """Bars of a `binned` frame with the cutoff drawn as a dashed rule."""
    bars = (
        alt.Chart(frame)
        .mark_bar(color="#3b6ea8")
        .encode(
            x=alt.X("start:Q", title=axis_title),
            x2="end:Q",
            y=alt.Y("items:Q", title="index items"),
            tooltip=[alt.Tooltip("start:Q", format=".3f"), alt.Tooltip("end:Q", format=".3f"), "items"],
        )
    )
    layers = [bars]
    if cutoff is not None:
        layers.append(
            alt.Chart(pd.DataFrame({"cutoff": [cutoff]}))
            .mark_rule(color="#d62728", strokeWidth=2, strokeDash=[4, 3])
            .encode(x="cutoff:Q", tooltip=[alt.Tooltip("cutoff:Q", format=".3f")])
        )
    return alt.LayerChart(layer=layers, height=HEIGHT - 60, title=title)
