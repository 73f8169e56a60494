"""Taxonomy: classes and parents from train rows, encoding, counts, JSON round trip, conflict detection."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from eproduct_core.errors import EproductError
from eproduct_core.taxonomy import LEVELS, Taxonomy, hierarchy_conflicts

ROWS = [  # meta, level2, leaf
    ("home", "plates", "plain plates"),
    ("fashion", "tops", "striped tops"),
    ("fashion", "tops", "plain tops"),
    ("fashion", "bags", "plain bags"),
    ("home", "plates", "plain plates"),
    ("fashion", "tops", "striped tops"),
    ("fashion", "tops", "striped tops"),
]


def _frame(rows=ROWS) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(LEVELS))


def test_classes_are_sorted_and_parents_point_up():
    taxonomy = Taxonomy.from_frame(_frame())
    assert taxonomy.levels == LEVELS
    assert taxonomy.classes == (
        ("fashion", "home"),
        ("bags", "plates", "tops"),
        ("plain bags", "plain plates", "plain tops", "striped tops"),
    )
    assert taxonomy.sizes == (2, 3, 4)
    assert taxonomy.parents[0] == ()
    assert taxonomy.parents[1] == (0, 1, 0)  # bags->fashion, plates->home, tops->fashion
    assert taxonomy.parents[2] == (0, 1, 2, 2)  # plain bags->bags, plain plates->plates, tops' leaves->tops
    assert taxonomy.parent_array(2).dtype == np.int64
    assert list(taxonomy.parent_array(2)) == [0, 1, 2, 2]


def test_encode_gives_one_row_of_ids_per_image_and_refuses_unknown_classes():
    taxonomy = Taxonomy.from_frame(_frame())
    labels = taxonomy.encode(_frame())
    assert labels.shape == (len(ROWS), 3) and labels.dtype == np.int64
    assert labels[0].tolist() == [1, 1, 1]  # home, plates, plain plates
    assert labels[1].tolist() == [0, 2, 3]  # fashion, tops, striped tops
    for row in labels:  # every leaf's parent chain agrees with the encoded row
        assert taxonomy.parents[2][row[2]] == row[1] and taxonomy.parents[1][row[1]] == row[0]
    unseen = _frame([("home", "plates", "golden plates")])
    with pytest.raises(EproductError, match="golden plates"):
        taxonomy.encode(unseen)
    assert taxonomy.encode(_frame([])).shape == (0, 3)


def test_counts_per_level():
    taxonomy = Taxonomy.from_frame(_frame())
    meta, level2, leaf = taxonomy.counts(taxonomy.encode(_frame()))
    assert meta.tolist() == [5, 2]
    assert level2.tolist() == [1, 2, 4]
    assert leaf.tolist() == [1, 2, 1, 3]
    only_tops = taxonomy.encode(_frame(ROWS[1:3]))
    assert taxonomy.counts(only_tops)[2].tolist() == [0, 0, 1, 1]  # absent classes count 0


def test_dict_round_trip_through_json():
    taxonomy = Taxonomy.from_frame(_frame())
    restored = Taxonomy.from_dict(json.loads(json.dumps(taxonomy.to_dict())))
    assert restored == taxonomy
    assert restored.encode(_frame()).tolist() == taxonomy.encode(_frame()).tolist()


def test_conflicts_are_detected_at_both_levels():
    assert hierarchy_conflicts(_frame()) == []
    leaf_twice = _frame([*ROWS, ("fashion", "bags", "striped tops")])
    assert hierarchy_conflicts(leaf_twice) == [("leaf", "striped tops", ["bags", "tops"])]
    level2_twice = _frame([*ROWS, ("home", "tops", "plain tops")])
    found = hierarchy_conflicts(level2_twice)
    assert ("level2", "tops", ["fashion", "home"]) in found
    with pytest.raises(EproductError, match="striped tops.*several parents"):
        Taxonomy.from_frame(leaf_twice)


def test_synthetic_catalog_taxonomy_is_consistent(tiny_catalog):
    train = pd.read_csv(tiny_catalog / "train.csv", dtype=str)
    taxonomy = Taxonomy.from_frame(train)
    labels = taxonomy.encode(train)
    assert (taxonomy.parent_array(2)[labels[:, 2]] == labels[:, 1]).all()
    assert (taxonomy.parent_array(1)[labels[:, 1]] == labels[:, 0]).all()
    assert all(count.sum() == len(train) for count in taxonomy.counts(labels))
