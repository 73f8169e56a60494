"""Per-class analysis (the report's Fig. 3): accuracy vs training-sample count, and per-class MAR@10.

Owns `accuracy_trend` (per level: a least-squares
line accuracy = slope * log10(train_count) + intercept, with Pearson r), `query_classes` (which class
each query belongs to) and `per_class_mar` (MAR@10 per class); a run's class_accuracy.csv is read by
`run_folder.read_class_accuracy` (re-exported here). numpy/pandas only.

The class of a query (documented choice, in this order):
1. the query's own label, when query.csv carries the level's column (a labelled catalog);
2. otherwise the most common label among its true matches, when index.csv carries the column;
3. otherwise unknown: the query is left out (eProduct's and the synthetic catalogs' query/index
   splits carry no labels, so there per-class MAR needs `classes` given by the caller, e.g. the
   run's predicted leaf for each query).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import numpy as np
import pandas as pd

from .run_folder import read_class_accuracy as read_class_accuracy  # the app reads it from here


def fit_log_trend(counts: np.ndarray, accuracy: np.ndarray) -> dict:
    """Least squares accuracy = slope * log10(count) + intercept; r is Pearson's on (log10 count, accuracy).

    Uses only points with count > 0 and a finite accuracy; slope/intercept/r are NaN with < 2 points
    (r also when either side is constant).
    """
    counts = np.asarray(counts, dtype=np.float64)
    accuracy = np.asarray(accuracy, dtype=np.float64)
    keep = (counts > 0) & np.isfinite(accuracy) & np.isfinite(counts)
    x, y = np.log10(counts[keep]), accuracy[keep]
    result = {"points": int(keep.sum()), "slope": float("nan"), "intercept": float("nan"), "r": float("nan")}
    if x.size < 2 or np.ptp(x) == 0:
        return result
    slope, intercept = np.polyfit(x, y, 1)
    result["slope"], result["intercept"] = float(slope), float(intercept)
    if np.ptp(y) > 0:
        result["r"] = float(np.corrcoef(x, y)[0, 1])
    return result


def accuracy_trend(class_accuracy: pd.DataFrame) -> pd.DataFrame:
    """One row per level: points, slope, intercept, r of accuracy vs log10(train_count).

    Classes with no validation images (accuracy NaN) or no training images are left out of the fit.
    """
    rows = []
    for level, frame in class_accuracy.groupby("level", sort=False):
        rows.append({"level": level, **fit_log_trend(frame["train_count"].to_numpy(), frame["accuracy"].to_numpy())})
    return pd.DataFrame(rows, columns=["level", "points", "slope", "intercept", "r"])


def query_classes(catalog, level: str = "leaf") -> dict[str, str]:
    """query_id -> class at `level`, by the rule in the module docstring ({} when the catalog cannot tell)."""
    if level in catalog.query.columns:
        labels = catalog.query[["image_id", level]]
        return {str(q): str(c) for q, c in zip(labels["image_id"], labels[level], strict=False) if str(c)}
    if level not in catalog.index.columns or catalog.groundtruth is None:
        return {}
    index_class = dict(zip(catalog.index["image_id"].astype(str), catalog.index[level].astype(str), strict=False))
    votes: dict[str, Counter] = {}
    for query_id, index_id in zip(catalog.groundtruth["query_id"], catalog.groundtruth["index_id"], strict=False):
        label = index_class.get(str(index_id), "")
        if label:
            votes.setdefault(str(query_id), Counter())[label] += 1
    # most common label; ties broken by name so the answer is deterministic
    return {q: sorted(c.items(), key=lambda item: (-item[1], item[0]))[0][0] for q, c in votes.items()}


def per_class_mar(
    per_query: pd.DataFrame, classes: Mapping[str, str], train_counts: Mapping[str, int] | None = None
) -> pd.DataFrame:
    """MAR@10 per class from an evaluation's per-query table and query_id -> class.

    Columns: class, queries, mar@10_G, mar@10_min, train_count (NaN without `train_counts`). Only
    queries with true matches and a known class count. Sorted by train_count then class.
    """
    frame = per_query[per_query["n_true"] > 0].copy()
    frame["class"] = frame["query_id"].astype(str).map(dict(classes))
    frame = frame.dropna(subset=["class"])
    grouped = (
        frame.groupby("class")
        .agg(
            queries=("query_id", "size"), **{"mar@10_G": ("recall@10", "mean"), "mar@10_min": ("recall@10_min", "mean")}
        )
        .reset_index()
    )
    counts = dict(train_counts or {})
    grouped["train_count"] = grouped["class"].map(lambda c: counts.get(c, np.nan)).astype(float)
    return grouped.sort_values(["train_count", "class"], na_position="last").reset_index(drop=True)[
        ["class", "queries", "mar@10_G", "mar@10_min", "train_count"]
    ]


def train_counts(catalog, level: str = "leaf") -> dict[str, int]:
    """Training images per class at `level` in a catalog's train split."""
    return {str(k): int(v) for k, v in catalog.train[level].astype(str).value_counts().items()}
