"""The synthetic generator: determinism, taxonomy shape, long tail, disjoint splits, matches and distractors."""

from __future__ import annotations

import filecmp
import logging
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from eproduct_core.catalog import read_catalog, validate_catalog
from eproduct_core.errors import EproductError
from eproduct_core.images import load_image
from eproduct_core.synthetic import SIZES, SynthSize, make_synthetic_catalog, plan_synthetic
from eproduct_core.taxonomy import Taxonomy

log = logging.getLogger(__name__)


def _all_files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_same_seed_gives_byte_identical_catalog(tiny_catalog, tmp_path):
    again = make_synthetic_catalog(tmp_path / "again", seed=0, size="tiny")
    files = _all_files(tiny_catalog)
    assert files == _all_files(again)
    assert len(files) > 300
    match, mismatch, errors = filecmp.cmpfiles(tiny_catalog, again, [str(f) for f in files], shallow=False)
    assert mismatch == [] and errors == []


def test_other_seed_gives_other_catalog(tiny_catalog):
    plan = plan_synthetic(seed=1, size="tiny")
    train = read_catalog(tiny_catalog).train
    assert list(plan.frames["train"]["title"]) != list(train["title"])


def test_tiny_catalog_is_valid_and_images_decode(tiny_catalog):
    assert validate_catalog(tiny_catalog) == []
    catalog = read_catalog(tiny_catalog)
    image = load_image(catalog.image_path(catalog.query["path"].iat[0]))
    assert image.size == (SIZES["tiny"].image_px, SIZES["tiny"].image_px) and image.mode == "RGB"
    assert all(not Path(p).is_absolute() and p.startswith("images/") for p in catalog.index["path"])


def test_taxonomy_has_three_levels_with_many_leaves():
    plan = plan_synthetic(seed=0, size="small")
    taxonomy = Taxonomy.from_frame(plan.frames["train"])  # raises if a leaf had two parents
    n_meta, n_level2, n_leaf = taxonomy.sizes
    assert 3 <= n_meta <= 6 and n_level2 >= 2 * n_meta - 1 and n_leaf >= 3 * n_level2
    assert n_leaf == SIZES["small"].n_leaves


def test_leaf_sizes_are_long_tailed():
    counts = sorted(plan_synthetic(seed=0, size="small").frames["train"]["leaf"].value_counts(), reverse=True)
    assert counts[0] >= 10 * counts[-1]
    assert counts[0] > 2 * counts[len(counts) // 2]  # a head, not just one outlier


def _products(plan, split: str) -> list[int]:
    return [product.number for relative, product, _ in plan.jobs if relative.startswith(f"images/{split}/")]


def test_train_val_query_products_are_disjoint():
    plan = plan_synthetic(seed=0, size="tiny")
    train, val, query = set(_products(plan, "train")), set(_products(plan, "val")), set(_products(plan, "query"))
    assert train and val and query
    assert not train & query and not val & query and not train & val
    assert not train & set(_products(plan, "index"))
    assert plan.frames["train"]["product_id"].nunique() < len(plan.frames["train"])  # several photos per product


def test_every_query_has_one_to_four_matches_among_distractors(tiny_catalog):
    catalog = read_catalog(tiny_catalog)
    matches = catalog.matches()
    assert set(matches) == set(catalog.query["image_id"])
    sizes = Counter(len(m) for m in matches.values())
    assert set(sizes) <= {1, 2, 3, 4} and len(sizes) >= 2
    matched = set().union(*matches.values())
    distractors = set(catalog.index["image_id"]) - matched
    assert len(distractors) >= len(matched) // 2


def test_index_holds_same_leaf_lookalikes_of_queries():
    plan = plan_synthetic(seed=0, size="tiny")
    queries = {product.number: product for _, product, _ in (j for j in plan.jobs if j[0].startswith("images/query/"))}
    index = [product for relative, product, _ in plan.jobs if relative.startswith("images/index/")]
    for query in queries.values():
        same_leaf = {p.number for p in index if p.leaf == query.leaf and p.number != query.number}
        assert same_leaf, f"query product {query.number} has no same-leaf distractor"
    lookalikes = [
        p
        for p in index
        if p.number not in queries
        and any(
            p.leaf == q.leaf and p.glyph == q.glyph and p.freq == q.freq and p.colours[0] == q.colours[0]
            for q in queries.values()
        )
    ]
    assert len(lookalikes) >= len(queries) // 3


def test_query_and_index_photos_of_one_product_differ(tiny_catalog):
    catalog = read_catalog(tiny_catalog)
    truth = catalog.groundtruth.iloc[0]
    query_path = catalog.query.set_index("image_id").loc[truth["query_id"], "path"]
    index_path = catalog.index.set_index("image_id").loc[truth["index_id"], "path"]
    a = np.asarray(load_image(catalog.image_path(query_path)), float)
    b = np.asarray(load_image(catalog.image_path(index_path)), float)
    assert np.abs(a - b).mean() > 5.0


def test_refuses_non_empty_folder_and_unknown_size(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "file.txt").write_text("keep me")
    with pytest.raises(EproductError, match="not an empty folder"):
        make_synthetic_catalog(tmp_path / "x", size="tiny")
    with pytest.raises(EproductError, match="Unknown synthetic size"):
        make_synthetic_catalog(tmp_path / "y", size="huge")


def test_size_config_is_validated():
    with pytest.raises(ValueError, match="n_leaves"):
        SynthSize(
            n_level2=3,
            n_leaves=2,
            train_products=20,
            val_products=1,
            query_products=1,
            lookalikes=(0, 1),
            random_distractors=1,
        )
    with pytest.raises(ValueError, match="lookalikes"):
        SynthSize(
            n_level2=3,
            n_leaves=6,
            train_products=20,
            val_products=1,
            query_products=1,
            lookalikes=(2, 1),
            random_distractors=1,
        )


def test_cli_synth_writes_a_valid_catalog(tmp_path, capsys):
    from eproduct_core.cli import main

    assert main(["catalog", "synth", str(tmp_path / "c"), "--size", "tiny", "--seed", "5"]) == 0
    assert validate_catalog(tmp_path / "c", check_files="sample", sample=20) == []
    assert main(["catalog", "synth", str(tmp_path / "c"), "--size", "tiny"]) == 2
    assert "not an empty folder" in capsys.readouterr().err


@pytest.mark.slow
def test_small_catalog_builds_and_is_timed(tmp_path):
    start = time.perf_counter()
    out = make_synthetic_catalog(tmp_path / "small", seed=0, size="small")
    seconds = time.perf_counter() - start
    catalog = read_catalog(out)
    images = sum(len(catalog.split(name)) for name in ("train", "val", "query", "index"))
    log.warning("synthetic 'small': %d images in %.1f s (%.1f ms/image)", images, seconds, 1000 * seconds / images)
    assert 3000 <= images <= 8000
    assert validate_catalog(out, check_files="sample", sample=100) == []
