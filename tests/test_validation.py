"""validation.py: predicted levels (DHC heads or nearest proxy), accuracy per level and per class."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from eproduct_core.taxonomy import Taxonomy
from eproduct_core.validation import class_accuracy_table, level_accuracy, predict_levels

FRAME = pd.DataFrame(
    {
        "meta": ["fashion", "fashion", "home", "home"],
        "level2": ["bags", "tops", "plates", "plates"],
        "leaf": ["tote", "tee", "plain plate", "rim plate"],
    }
)


def test_dhc_heads_predict_each_level_by_argmax():
    logits = [torch.tensor([[0.1, 2.0], [3.0, 0.0]]), torch.tensor([[0.0, 1.0, 0.5]] * 2), torch.eye(2)]
    assert predict_levels({"logits": logits}, []).tolist() == [[1, 1, 0], [0, 1, 1]]


def test_a_metric_only_model_predicts_the_leaf_of_the_nearest_proxy_and_its_parents():
    taxonomy = Taxonomy.from_frame(FRAME)
    parents = [np.zeros(0, np.int64)] + [taxonomy.parent_array(level) for level in (1, 2)]
    leaf = {name: i for i, name in enumerate(taxonomy.classes[2])}
    proxy_leaf = np.array([leaf["rim plate"], leaf["tee"], leaf["tote"]])  # three product proxies
    cosine = torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.2, 0.8]])
    predicted = predict_levels({"cosine": cosine}, parents, proxy_leaf)
    names = [[taxonomy.classes[level][c] for level, c in enumerate(row)] for row in predicted]
    assert names == [["home", "plates", "rim plate"], ["fashion", "bags", "tote"]]


def test_level_and_class_accuracy_hand_computed():
    taxonomy = Taxonomy.from_frame(FRAME)
    labels = taxonomy.encode(FRAME)
    predicted = labels.copy()
    predicted[0, 2] = labels[1, 2]  # the tote is taken for a tee: leaf wrong, levels above right
    predicted[1, 1:] = labels[0, 1:]  # the tee is taken for a tote: level2 and leaf wrong
    assert level_accuracy(predicted, labels, taxonomy.levels) == {"meta": 1.0, "level2": 0.75, "leaf": 0.5}
    table = class_accuracy_table(taxonomy, predicted, labels, np.concatenate([labels, labels[:1]]))
    leaf = table[table["level"] == "leaf"].set_index("class")
    assert leaf.loc["tote", "accuracy"] == 0.0 and leaf.loc["plain plate", "accuracy"] == 1.0
    assert leaf.loc["tote", "train_count"] == 2 and leaf.loc["tee", "val_count"] == 1
    assert table[table["level"] == "level2"].set_index("class").loc["bags", "accuracy"] == 1.0


def test_no_validation_images_gives_nan_not_an_error():
    taxonomy = Taxonomy.from_frame(FRAME)
    empty = np.zeros((0, 3), np.int64)
    assert all(np.isnan(v) for v in level_accuracy(empty, empty, taxonomy.levels).values())
    table = class_accuracy_table(taxonomy, empty, empty, taxonomy.encode(FRAME))
    assert table["accuracy"].isna().all() and (table["val_count"] == 0).all()
