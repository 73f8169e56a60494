"""The Fashion-MNIST catalog: IDX parsing, taxonomy, train/test separation, augmented views, fallbacks, CLI."""

from __future__ import annotations

import filecmp
import gzip
import shutil
import sys
import types
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import require_system_file

from eproduct_core import fashion_mnist
from eproduct_core.catalog import read_catalog, validate_catalog
from eproduct_core.errors import EproductError
from eproduct_core.fashion_mnist import make_fashion_mnist_catalog, read_idx
from eproduct_core.images import load_image
from eproduct_core.taxonomy import Taxonomy

SOURCE = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _fashion_mnist_installed() -> None:
    require_system_file(SOURCE / "t10k-labels-idx1-ubyte.gz", "dataset-fashion-mnist")


SMALL = dict(train_per_class=30, queries=20, distractors=40, seed=3)


@pytest.fixture(scope="module")
def fm_catalog(tmp_path_factory) -> Path:
    return make_fashion_mnist_catalog(tmp_path_factory.mktemp("fm") / "cat", **SMALL)


def _gray(catalog, relative: str) -> np.ndarray:
    return np.asarray(load_image(catalog.image_path(relative)).convert("L"), float)


def test_read_idx_parses_debian_files():
    labels = read_idx(SOURCE / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert sorted(Counter(labels.tolist()).values()) == [1000] * 10


def test_read_idx_refuses_broken_files(tmp_path):
    (tmp_path / "bad.gz").write_bytes(b"not gzip at all")
    with pytest.raises(EproductError, match="cannot be read"):
        read_idx(tmp_path / "bad.gz")
    (tmp_path / "magic").write_bytes(b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(EproductError, match="unsigned-byte IDX"):
        read_idx(tmp_path / "magic")
    (tmp_path / "short.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"abc"))
    with pytest.raises(EproductError, match="truncated"):
        read_idx(tmp_path / "short.gz")


def test_catalog_is_valid_with_a_three_level_taxonomy(fm_catalog):
    assert validate_catalog(fm_catalog) == []
    catalog = read_catalog(fm_catalog)
    taxonomy = Taxonomy.from_frame(catalog.train)
    assert taxonomy.sizes == (3, 7, 10)
    leaf, level2, meta = (taxonomy.classes[i] for i in (2, 1, 0))
    sneaker = leaf.index("sneaker")
    assert level2[taxonomy.parents[2][sneaker]] == "shoes"
    assert meta[taxonomy.parents[1][level2.index("shoes")]] == "footwear"
    assert Counter(catalog.train["leaf"]) == {name: 30 for name in leaf}
    assert load_image(catalog.image_path(catalog.train["path"].iat[0])).size == (56, 56)


def test_train_and_val_come_from_the_train_split_only(fm_catalog):
    catalog = read_catalog(fm_catalog)
    assert catalog.train["product_id"].str.startswith("fm-train-").all()
    assert not set(catalog.train["product_id"]) & set(catalog.val["product_id"])
    assert "product_id" not in catalog.query.columns and "product_id" not in catalog.index.columns


def test_query_and_index_images_come_from_the_test_split_only(monkeypatch, tmp_path):
    """With black train-split items and bright test-split items, train/val are black and query/index bright."""
    labels = np.repeat(np.arange(10, dtype=np.uint8), 40)
    fake = {
        "train": (np.zeros((400, 28, 28), np.uint8), labels),
        "test": (np.full((200, 28, 28), 200, np.uint8), labels[::2]),
    }
    monkeypatch.setattr(fashion_mnist, "load_fashion_mnist", lambda source=None: fake)
    catalog = read_catalog(
        make_fashion_mnist_catalog(tmp_path / "c", train_per_class=20, val_per_class=5, queries=10, distractors=20)
    )
    assert len(catalog.train) == 200 and len(catalog.val) == 50
    for split, bright in (("train", False), ("val", False), ("query", True), ("index", True)):
        means = [_gray(catalog, p).mean() for p in catalog.split(split)["path"]]
        assert (min(means) > 100) if bright else (max(means) < 1), split


def test_each_query_has_one_to_four_distinct_views_in_the_index(fm_catalog):
    catalog = read_catalog(fm_catalog)
    matches = catalog.matches()
    assert set(matches) == set(catalog.query["image_id"])
    assert set(Counter(len(m) for m in matches.values())) <= {1, 2, 3, 4}
    assert len(catalog.index) - sum(len(m) for m in matches.values()) >= 40  # distractor views
    truth = catalog.groundtruth.iloc[0]
    query = _gray(catalog, catalog.query.set_index("image_id").loc[truth["query_id"], "path"])
    view = _gray(catalog, catalog.index.set_index("image_id").loc[truth["index_id"], "path"])
    assert np.abs(query - view).mean() > 2.0  # a different photo...
    assert np.corrcoef(query.ravel(), view.ravel())[0, 1] > 0.6  # ...of the same item


def test_same_seed_same_files_and_long_tail(fm_catalog, tmp_path):
    again = make_fashion_mnist_catalog(tmp_path / "again", **SMALL)
    for name in ("train.csv", "val.csv", "query.csv", "index.csv", "groundtruth.csv"):
        assert filecmp.cmp(fm_catalog / name, again / name, shallow=False)
    query = read_catalog(again).query["path"].iat[0]
    assert (fm_catalog / query).read_bytes() == (again / query).read_bytes()
    tail = make_fashion_mnist_catalog(tmp_path / "tail", train_per_class=60, queries=5, distractors=5, long_tail=True)
    counts = sorted(Counter(read_catalog(tail).train["leaf"]).values())
    assert counts[-1] == 60 and counts[0] <= 10 and len(counts) == 10


def test_options_are_validated(tmp_path):
    with pytest.raises(EproductError, match="views"):
        make_fashion_mnist_catalog(tmp_path / "a", views=0)
    with pytest.raises(EproductError, match="queries"):
        make_fashion_mnist_catalog(tmp_path / "b", queries=9000, distractors=2000)
    with pytest.raises(EproductError, match="lacks the Fashion-MNIST files"):
        make_fashion_mnist_catalog(tmp_path / "c", source=tmp_path)


def test_torchvision_fallback_reads_its_raw_files(monkeypatch, tmp_path):
    """Without Debian's files, the torchvision download is used (faked here: no download, no torch import)."""

    class FakeFashionMNIST:
        def __init__(self, root, train, download):
            raw = Path(root) / "FashionMNIST" / "raw"
            raw.mkdir(parents=True, exist_ok=True)
            for path in SOURCE.glob("*-ubyte.gz"):
                shutil.copy(path, raw / path.name)

    monkeypatch.setattr(fashion_mnist, "DEBIAN_SOURCE", tmp_path / "missing")
    monkeypatch.setitem(sys.modules, "torchvision.datasets", types.SimpleNamespace(FashionMNIST=FakeFashionMNIST))
    data = fashion_mnist.load_fashion_mnist(cache=tmp_path / "cache")
    assert data["train"][0].shape == (60000, 28, 28)


def test_missing_files_and_no_download_give_a_clear_error(monkeypatch, tmp_path):
    class OfflineFashionMNIST:
        def __init__(self, root, train, download):
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(fashion_mnist, "DEBIAN_SOURCE", tmp_path / "missing")
    monkeypatch.setitem(sys.modules, "torchvision.datasets", types.SimpleNamespace(FashionMNIST=OfflineFashionMNIST))
    with pytest.raises(EproductError, match="dataset-fashion-mnist"):
        fashion_mnist.load_fashion_mnist(cache=tmp_path / "cache")


def test_cli_fashion_mnist(tmp_path, capsys):
    from eproduct_core.cli import main

    out = tmp_path / "cli"
    argv = [
        "catalog",
        "fashion-mnist",
        str(out),
        "--train-per-class",
        "10",
        "--queries",
        "8",
        "--views",
        "2",
        "--distractors",
        "10",
        "--seed",
        "1",
        "--long-tail",
        "--source",
        str(SOURCE),
    ]
    assert main(argv) == 0
    catalog = read_catalog(out)
    assert len(catalog.query) == 8 and max(len(m) for m in catalog.matches().values()) <= 2
    assert main(["catalog", "validate", str(out)]) == 0
    assert main(["catalog", "fashion-mnist", str(tmp_path / "x"), "--views", "5"]) == 2
    assert "views must be 1..4" in capsys.readouterr().err
