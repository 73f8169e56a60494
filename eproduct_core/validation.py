"""Per-epoch validation: accuracy per level, and per-class accuracy beside per-class training counts.

Predictions per level come from the DHC heads when the model has them; a metric-only model predicts
the leaf by its nearest proxy and derives level2/meta from the taxonomy's parent maps. The per-class
table is the report's Fig. 3 (accuracy vs. training samples) and the app's chart.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from .data import CatalogImages, to_float
from .model import ProductModel, mixed_precision
from .taxonomy import Taxonomy


def predict_levels(outputs: dict, parents: list[np.ndarray], proxy_leaf: np.ndarray | None = None) -> np.ndarray:
    """(B, L) predicted class ids from a model's output dict (`proxy_leaf`: leaf of each metric proxy)."""
    if "logits" in outputs:
        return torch.stack([logits.argmax(dim=1) for logits in outputs["logits"]], dim=1).cpu().numpy()
    nearest = outputs["cosine"].argmax(dim=1).cpu().numpy()
    leaf = proxy_leaf[nearest] if proxy_leaf is not None else nearest
    columns = [leaf]
    for level in range(len(parents) - 1, 0, -1):
        columns.insert(0, parents[level][columns[0]])
    return np.stack(columns, axis=1)


@torch.inference_mode()
def predict_dataset(
    model: ProductModel,
    dataset: CatalogImages,
    device: torch.device,
    batch_size: int,
    parents: list[np.ndarray],
    precision: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """(predicted (N, L), valid (N,)) for every row of `dataset`, in order, under `precision` (TrainConfig's)."""
    was_training = model.training
    model.eval()
    predicted, valid = [], []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    proxy_leaf = model.metric.proxy_leaf.cpu().numpy() if model.metric is not None else None
    for images, _, ok in loader:
        batch = to_float(images).to(device)
        with mixed_precision(device, precision):
            outputs = model(batch)
        predicted.append(predict_levels(outputs, parents, proxy_leaf))
        valid.append(ok.numpy())
    model.train(was_training)
    if not predicted:
        return np.zeros((0, len(parents)), np.int64), np.zeros(0, bool)
    return np.concatenate(predicted), np.concatenate(valid)


def level_accuracy(predicted: np.ndarray, labels: np.ndarray, levels: tuple[str, ...]) -> dict[str, float]:
    if len(labels) == 0:
        return {name: float("nan") for name in levels}
    return {name: float((predicted[:, level] == labels[:, level]).mean()) for level, name in enumerate(levels)}


def class_accuracy_table(
    taxonomy: Taxonomy, predicted: np.ndarray, labels: np.ndarray, train_labels: np.ndarray
) -> pd.DataFrame:
    """One row per class per level: level, class, train_count, val_count, accuracy (NaN without val images)."""
    rows = []
    train_counts = taxonomy.counts(train_labels)
    for level, name in enumerate(taxonomy.levels):
        size = taxonomy.sizes[level]
        val_counts = np.bincount(labels[:, level], minlength=size) if len(labels) else np.zeros(size, np.int64)
        correct = (
            np.bincount(labels[:, level], weights=(predicted[:, level] == labels[:, level]), minlength=size)
            if len(labels)
            else np.zeros(size)
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            accuracy = np.where(val_counts > 0, correct / np.maximum(val_counts, 1), np.nan)
        for c in range(size):
            rows.append(
                (name, taxonomy.classes[level][c], int(train_counts[level][c]), int(val_counts[c]), float(accuracy[c]))
            )
    return pd.DataFrame(rows, columns=["level", "class", "train_count", "val_count", "accuracy"])
