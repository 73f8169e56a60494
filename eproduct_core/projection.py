"""The embedding map's data: a 2-D projection of a stratified sample of embeddings, kept in a folder.

`build_projection(out, parts, train_labels)` takes named parts (e.g. "index", "query", "train": vectors and
ids), draws a stratified sample of at most `max_points` rows (each part keeps its share; training rows are
drawn evenly over their leaf classes), projects it to 2-D by PCA (numpy SVD; UMAP when the optional
`umap-learn` is installed and asked for) and writes:

  OUT/points.npy      float32 (n, 2) coordinates
  OUT/points.csv      id, split, meta, level2, leaf, label_source (one row per point, same order)
  OUT/projection.json {"format": "eproduct-projection", "version", "method", "mean", "components", "key", ...}

Training rows carry their catalog classes; index and query rows carry the classes of their nearest
training embedding (cosine), marked `label_source = "nearest train"`, since the catalog gives them none.
`project(meta, vectors)` places new vectors (the current query) with the same PCA. Written into a
temporary folder and renamed, so a crash leaves no half map. numpy and pandas only: no torch, no streamlit.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .documents import read_versioned_json
from .errors import EproductError

log = logging.getLogger(__name__)
FORMAT = "eproduct-projection"
VERSION = 1
MAX_POINTS = 50_000  # points drawn on the map (a browser stays interactive up to about this many)
METHODS = ("pca", "umap")
LEVELS = ("meta", "level2", "leaf")
_BLOCK = 4096  # rows per block of the nearest-training-row search


@dataclass(frozen=True)
class Part:
    """One named set of embeddings to place on the map."""

    vectors: np.ndarray  # (n, d), any float dtype (float16 as stored is fine)
    ids: list[str]


@dataclass(frozen=True)
class Projection:
    """A map read back from its folder."""

    points: pd.DataFrame  # id, split, meta, level2, leaf, label_source, x, y
    meta: dict  # projection.json


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def stratified_sample(
    parts: Mapping[str, Part], train_leaf: Mapping[str, str], max_points: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """Row numbers kept per part: shares proportional to the part sizes, training rows even over leaves."""
    total = sum(len(p.ids) for p in parts.values())
    rng = np.random.default_rng(seed)
    kept = {}
    for name, part in parts.items():
        n = len(part.ids)
        quota = n if total <= max_points else max(1, int(max_points * n / total))
        if quota >= n:
            kept[name] = np.arange(n)
            continue
        if name == "train" and train_leaf:
            leaves = np.array([train_leaf.get(i, "") for i in part.ids])
            order = rng.permutation(n)
            # Round-robin over leaves: the i-th row of each leaf comes before the (i+1)-th of any leaf.
            rank = np.empty(n, dtype=np.int64)
            seen: dict[str, int] = {}
            for position in order:
                leaf = leaves[position]
                rank[position] = seen.get(leaf, 0)
                seen[leaf] = rank[position] + 1
            chosen = order[np.argsort(rank[order], kind="stable")][:quota]
        else:
            chosen = rng.choice(n, size=quota, replace=False)
        kept[name] = np.sort(chosen)
    return kept


def _pca(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(coordinates (n, 2), mean (d,), components (2, d)) of `data`; sign fixed so the result is reproducible."""
    mean = data.mean(axis=0)
    centred = data - mean
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    components = np.zeros((2, data.shape[1]), dtype=np.float32)
    components[: min(2, len(vt))] = vt[:2]
    for row in components:  # the largest coefficient positive: the same map on another machine
        if row[np.argmax(np.abs(row))] < 0:
            row *= -1
    return (centred @ components.T).astype(np.float32), mean.astype(np.float32), components


def _umap(data: np.ndarray, seed: int) -> np.ndarray:
    try:
        import umap  # optional extra: pip install 'eproduct[umap]'
    except ImportError as err:
        raise EproductError(
            "UMAP needs the optional package umap-learn (`pip install 'eproduct[umap]'`); use method 'pca'."
        ) from err
    return np.asarray(umap.UMAP(n_components=2, random_state=seed).fit_transform(data), dtype=np.float32)


def _nearest_train(data: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Row number in `train` of each row's nearest neighbour by cosine (both already unit length)."""
    best = np.empty(len(data), dtype=np.int64)
    for start in range(0, len(data), _BLOCK):
        best[start : start + _BLOCK] = np.argmax(data[start : start + _BLOCK] @ train.T, axis=1)
    return best


def build_projection(
    out: str | Path,
    parts: Mapping[str, Part],
    train_labels: pd.DataFrame,
    *,
    max_points: int = MAX_POINTS,
    method: str = "pca",
    seed: int = 0,
    key: Mapping | None = None,
) -> Path:
    """Project a stratified sample of `parts` and write the map into `out` (replaced); returns `out`.

    `train_labels`: the catalog's train rows (image_id, meta, level2, leaf) labelling the "train" part.
    `key`: what the map was made from (stored, so a reader can tell a stale map).
    """
    if method not in METHODS:
        raise EproductError(f"Projection method {method!r} is not one of {METHODS}.")
    if not parts or not any(len(p.ids) for p in parts.values()):
        raise EproductError("Nothing to project: every embeddings part is empty.")
    dims = {np.asarray(p.vectors).shape[1] for p in parts.values() if len(p.ids)}
    if len(dims) != 1:
        raise EproductError(f"The embeddings to project have different dimensions {sorted(dims)}; use one kind.")
    labels = train_labels.set_index("image_id")[list(LEVELS)].astype(str)
    kept = stratified_sample(parts, labels["leaf"].to_dict(), max_points, seed)
    rows, blocks = [], []
    for name, part in parts.items():
        take = kept[name]
        blocks.append(_normalise(np.asarray(part.vectors)[take]))
        rows += [(part.ids[i], name) for i in take]
    data = np.concatenate(blocks)
    frame = pd.DataFrame(rows, columns=["id", "split"])
    frame = _label(frame, data, labels)
    if method == "pca":
        coords, mean, components = _pca(data)
    else:
        coords = _umap(data, seed)
        _, mean, components = _pca(data)  # new points (a query) are placed with the PCA only
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "method": method,
        "points": len(frame),
        "per_split": {name: int(len(kept[name])) for name in parts},
        "total": {name: len(part.ids) for name, part in parts.items()},
        "max_points": max_points,
        "seed": seed,
        "mean": mean.tolist(),
        "components": components.tolist(),
        "key": dict(key or {}),
    }
    _write(Path(out), coords, frame, meta)
    log.info("projection (%s) of %d points written to %s", method, len(frame), out)
    return Path(out)


def _label(frame: pd.DataFrame, data: np.ndarray, labels: pd.DataFrame) -> pd.DataFrame:
    """Classes per point: the catalog's for training rows, the nearest training row's for the others."""
    is_train = (frame["split"] == "train").to_numpy() & frame["id"].isin(labels.index).to_numpy()
    out = frame.copy()
    for level in LEVELS:
        out[level] = "(unlabelled)"
    out["label_source"] = "none"
    if is_train.any():
        train_ids = frame.loc[is_train, "id"]
        out.loc[is_train, list(LEVELS)] = labels.loc[train_ids].to_numpy()
        out.loc[is_train, "label_source"] = "catalog"
        others = ~is_train
        if others.any():
            nearest = _nearest_train(data[others], data[is_train])
            out.loc[others, list(LEVELS)] = labels.loc[train_ids.to_numpy()[nearest]].to_numpy()
            out.loc[others, "label_source"] = "nearest train"
    return out


def _write(out: Path, coords: np.ndarray, frame: pd.DataFrame, meta: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    np.save(tmp / "points.npy", coords.astype(np.float32), allow_pickle=False)
    frame.to_csv(tmp / "points.csv", index=False)
    (tmp / "projection.json").write_text(json.dumps(meta) + "\n", encoding="utf-8")
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def read_projection(folder: str | Path) -> Projection:
    """The map in `folder`, or an EproductError saying how to make it."""
    folder = Path(folder)
    meta = read_versioned_json(
        folder / "projection.json",
        fmt=FORMAT,
        version=VERSION,
        what="embedding map",
        missing=f"No embedding map in {folder}.",
        fix="Open the Map page to compute it again.",
    )
    try:
        coords = np.load(folder / "points.npy", allow_pickle=False)
        points = pd.read_csv(folder / "points.csv", dtype=str, keep_default_na=False)
    except (OSError, ValueError) as err:
        raise EproductError(
            f"The embedding map in {folder} is unreadable ({err}). Delete the folder and reopen the Map page."
        ) from err
    if coords.shape != (len(points), 2):
        raise EproductError(
            f"The embedding map in {folder} is inconsistent. Delete the folder and reopen the Map page."
        )
    points["x"], points["y"] = coords[:, 0], coords[:, 1]
    return Projection(points=points, meta=meta)


def project(meta: Mapping, vectors: np.ndarray) -> np.ndarray:
    """(n, 2) map coordinates of new vectors (e.g. the current query), by the map's stored PCA."""
    data = _normalise(np.atleast_2d(np.asarray(vectors)))
    mean, components = np.asarray(meta["mean"], np.float32), np.asarray(meta["components"], np.float32)
    if data.shape[1] != mean.shape[0]:
        raise EproductError(f"A {data.shape[1]}-d vector cannot be placed on a map of {mean.shape[0]}-d embeddings.")
    return ((data - mean) @ components.T).astype(np.float32)
