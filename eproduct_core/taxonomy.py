"""The 3-level class hierarchy (meta -> level2 -> leaf) derived from a catalog's train split.

Owns: level names, class names per level, child->parent maps, the (N, 3) int label array and
per-class sample counts. Serialises to plain JSON so a checkpoint can carry it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import EproductError

LEVELS = ("meta", "level2", "leaf")


@dataclass(frozen=True)
class Taxonomy:
    """Classes per level, sorted by name; `parents[l][c]` is the level-(l-1) parent of class c."""

    levels: tuple[str, ...]
    classes: tuple[tuple[str, ...], ...]
    parents: tuple[tuple[int, ...], ...]  # parents[0] is empty: level 0 has no parent

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(c) for c in self.classes)

    def parent_array(self, level: int) -> np.ndarray:
        """Parent index (at level-1) of each class at `level` >= 1, as an int64 array."""
        return np.asarray(self.parents[level], dtype=np.int64)

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """The (N, 3) int label array of `frame`'s meta/level2/leaf columns; unknown names raise."""
        columns = []
        for level, name in enumerate(self.levels):
            values = frame[name].astype(str)
            codes = pd.Index(self.classes[level]).get_indexer(values)  # -1: not a known class
            if (codes < 0).any():
                unknown = sorted(set(values[codes < 0]))[:5]
                raise EproductError(
                    f"Column {name!r} has classes the model never saw in training: {unknown}. "
                    "Use a catalog with the same taxonomy as the training run."
                )
            columns.append(np.asarray(codes, dtype=np.int64))
        return np.stack(columns, axis=1) if columns else np.zeros((0, len(self.levels)), np.int64)

    def counts(self, labels: np.ndarray) -> list[np.ndarray]:
        """Per-class sample counts at each level, for an (N, 3) label array."""
        return [np.bincount(labels[:, level], minlength=size) for level, size in enumerate(self.sizes)]

    def to_dict(self) -> dict:
        return {
            "levels": list(self.levels),
            "classes": [list(c) for c in self.classes],
            "parents": [list(p) for p in self.parents],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Taxonomy:
        return cls(
            levels=tuple(data["levels"]),
            classes=tuple(tuple(c) for c in data["classes"]),
            parents=tuple(tuple(int(i) for i in p) for p in data["parents"]),
        )

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, levels: tuple[str, ...] = LEVELS) -> Taxonomy:
        """Derive the hierarchy from train rows; raise if a child sits under two parents."""
        conflicts = hierarchy_conflicts(frame, levels)
        if conflicts:
            child_level, child, several = conflicts[0]
            raise EproductError(
                f"{child_level} class {child!r} appears under several parents {several}. "
                "Every class must have exactly one parent; fix train.csv (run `eproduct catalog validate`)."
            )
        classes = tuple(tuple(sorted(frame[name].astype(str).unique())) for name in levels)
        parents: list[tuple[int, ...]] = [()]
        for level in range(1, len(levels)):
            pairs = frame[[levels[level - 1], levels[level]]].astype(str).drop_duplicates()
            child_to_parent = dict(zip(pairs[levels[level]], pairs[levels[level - 1]], strict=False))
            parent_index = {c: i for i, c in enumerate(classes[level - 1])}
            parents.append(tuple(parent_index[child_to_parent[c]] for c in classes[level]))
        return cls(levels=tuple(levels), classes=classes, parents=tuple(parents))


def hierarchy_conflicts(frame: pd.DataFrame, levels: tuple[str, ...] = LEVELS) -> list[tuple[str, str, list[str]]]:
    """Children that appear under more than one parent: (child level, child, sorted parents)."""
    found = []
    for level in range(1, len(levels)):
        pairs = frame[[levels[level - 1], levels[level]]].astype(str).drop_duplicates()
        several = pairs[pairs.duplicated(levels[level], keep=False)]  # children with more than one parent
        for child, parents in several.groupby(levels[level])[levels[level - 1]]:
            found.append((levels[level], str(child), sorted(parents)))
    return found


def class_counts(frame: pd.DataFrame, level: str) -> pd.DataFrame:
    """Images per class at one level, largest first: class, images, share (the Catalog page's chart data)."""
    counts = frame[level].value_counts().rename_axis("class").reset_index(name="images")
    counts["share"] = counts["images"] / max(int(counts["images"].sum()), 1)
    return counts
