"""Catalog photo models vs. training augmentations: no shared code; the field camera is seeded and distinct."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import numpy as np

from eproduct_core import data, photo_models
from eproduct_core.titles import attribute_matrix, mine_attributes

CORE = Path(photo_models.__file__).resolve().parent


def _imports(module_path: Path) -> set[str]:
    """Every module name a file imports (relative imports as '.name')."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(module_path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def test_photo_models_and_training_augmentations_share_no_code():
    photo_imports = _imports(CORE / "photo_models.py")
    data_imports = _imports(CORE / "data.py")
    # the photo models import no project module at all (so no shared helper), only numpy/PIL/stdlib
    assert not {name for name in photo_imports if name.startswith(".") or name.startswith("eproduct")}
    assert not {name for name in data_imports if "photo_models" in name or "fashion_mnist" in name}
    # no function object of one module is reachable from the other
    photo_functions = {id(f) for _, f in inspect.getmembers(photo_models, inspect.isfunction)}
    data_functions = {id(f) for _, f in inspect.getmembers(data, inspect.isfunction)}
    assert not photo_functions & data_functions
    # and no function of one is defined in the other's file
    for _, function in inspect.getmembers(photo_models, inspect.isfunction):
        assert Path(inspect.getfile(function)).name != "data.py"


def test_field_views_are_seeded_coloured_and_differ_from_studio():
    item = np.zeros((28, 28), np.uint8)
    item[6:22, 8:20] = 200
    a = np.asarray(photo_models.photo_view("field", item, seed=0, product=3, view=1))
    again = np.asarray(photo_models.photo_view("field", item, seed=0, product=3, view=1))
    other = np.asarray(photo_models.photo_view("field", item, seed=0, product=3, view=2))
    studio = np.asarray(photo_models.photo_view("studio", item, seed=0, product=3, view=1).convert("RGB"))
    assert a.shape == (photo_models.IMAGE_PX, photo_models.IMAGE_PX, 3)
    np.testing.assert_array_equal(a, again)
    assert np.abs(a.astype(int) - other).mean() > 5
    assert np.abs(a.astype(int) - studio).mean() > 20
    assert np.abs(a[..., 0].astype(int) - a[..., 1]).mean() > 3  # coloured, not grey


def _field(without=(), view=1):
    item = np.zeros((28, 28), np.uint8)
    item[6:22, 8:20] = 200
    item[6:10, 20:26] = 120  # not mirror-symmetric
    return np.asarray(photo_models.photo_view("field", item, 0, 3, view, without), np.float64)


def test_field_steps_left_out_change_only_that_step():
    np.testing.assert_array_equal(_field(), _field(()))  # nothing left out: the full camera
    for step in photo_models.FIELD_STEPS:  # mirror and occluder are drawn in some views only
        assert max(np.abs(_field((step,), view) - _field((), view)).mean() for view in range(6)) > 0.5, step
    # every other draw stays the full camera's: leaving out the light only rescales the (lossless) photo
    lossless = ("lowres", "jpeg")
    lit, unlit = _field(lossless), _field((*lossless, "light"))
    assert np.corrcoef(lit.ravel(), unlit.ravel())[0, 1] > 0.99
    # without the backdrop, the frame's corners are black (the item sits on Fashion-MNIST's own background)
    bare = _field((*lossless, "backdrop", "occluder", "perspective"))
    assert bare[:3, :3].max() < 8 and _field(lossless)[:3, :3].mean() > 8
    # without the colour (and the backdrop) the photo is grey
    grey, coloured = _field((*lossless, "colour", "backdrop", "occluder")), _field((*lossless, "backdrop", "occluder"))
    assert np.abs(grey[..., 0] - grey[..., 1]).max() < 2 < np.abs(coloured[..., 0] - coloured[..., 1]).max()


def test_catalog_refuses_unknown_field_steps():
    import pytest

    from eproduct_core.errors import EproductError
    from eproduct_core.fashion_mnist import FashionOptions

    with pytest.raises(EproductError, match="Unknown field camera steps"):
        FashionOptions(photo_model="field", field_without=("bogus",))
    with pytest.raises(EproductError, match="needs photo_model 'field'"):
        FashionOptions(field_without=("jpeg",))


def test_title_attributes_keep_frequent_informative_tokens():
    titles = ["red dotted tops, size 7"] * 3 + ["blue striped tops, size 5"] * 3 + ["red plain bags"]
    # "tops" and "size" are in 6 of 7 titles (over 0.8): they tell nothing; "plain"/"bags" are too rare
    vocabulary = mine_attributes(titles, min_count=3, max_share=0.8)
    assert vocabulary == ["5", "7", "blue", "dotted", "red", "striped"]
    matrix = attribute_matrix(titles, vocabulary)
    assert matrix.shape == (7, 6)
    assert matrix[0].tolist() == [0, 1, 0, 1, 1, 0] and matrix[-1].tolist() == [0, 0, 0, 0, 1, 0]
