"""`catalog proxy-split`: proxy groundtruth from held-out val photos, scored against the synthetic product ids."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from eproduct_core.catalog import read_catalog, validate_catalog
from eproduct_core.cli import main
from eproduct_core.errors import EproductError
from eproduct_core.proxy_split import ProxySettings, proxy_groups, proxy_split, score_groups, thumbnails


def test_proxy_split_writes_a_valid_catalog_marked_as_proxy(tiny_catalog, tmp_path, capsys):
    out = tmp_path / "proxy"
    assert main(["catalog", "proxy-split", str(tiny_catalog), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "pair precision" in printed and "proxy scores" in printed
    assert validate_catalog(out) == []
    proxy = read_catalog(out)
    assert proxy.groundtruth_kind == "proxy"
    meta = json.loads((out / "catalog.json").read_text())
    assert meta["proxy"]["title_threshold"] == ProxySettings().title_threshold
    source = read_catalog(tiny_catalog)
    val = source.val.set_index("image_id")
    truth = proxy.matches()
    assert set(truth) == set(proxy.query["image_id"]) and truth
    assert not set(proxy.query["image_id"]) & set(proxy.index["image_id"])  # a query is not its own match
    assert set(proxy.index["image_id"]) == set(val.index) - set(proxy.query["image_id"])
    assert set(proxy.train["image_id"]).isdisjoint(set(proxy.index["image_id"]) | set(proxy.query["image_id"]))
    for query, matches in truth.items():
        assert {val.loc[m, "leaf"] for m in matches} == {val.loc[query, "leaf"]}  # within one leaf
    assert proxy.image_path(proxy.index["path"].iat[0]).is_file()


def test_proxy_groups_find_products_better_than_leaves(tiny_catalog):
    """Against the synthetic product ids: the default proxy is far more precise than 'same leaf' and finds
    most same-product pairs (margins wide; benchmarks/proxy_quality.py prints the measured figures)."""
    catalog = read_catalog(tiny_catalog)
    val = catalog.val.reset_index(drop=True)
    signatures, ok = thumbnails([catalog.image_path(p) for p in val["path"]])
    products = val["product_id"].to_numpy()
    score = score_groups(proxy_groups(val, signatures, ok, ProxySettings()), products)
    leaf_groups = pd.factorize(val["leaf"])[0]
    leaf = score_groups(leaf_groups, products)
    assert score["precision"] > 0.6 and score["recall"] > 0.4
    assert score["precision"] > 2 * leaf["precision"]
    everything = score_groups(proxy_groups(val, signatures, ok, ProxySettings(0.0, 0.0)), products)
    assert everything["recall"] == 1.0 and everything["precision"] == pytest.approx(leaf["precision"])


def test_score_groups_counts_pairs():
    score = score_groups(np.array([0, 0, 0, 1, 1, -1]), np.array(["a", "a", "b", "c", "c", "c"]))
    assert (score["proxy_pairs"], score["true_pairs"], score["correct_pairs"]) == (4, 2, 2)
    assert score["precision"] == 0.5 and score["recall"] == 1.0


def test_proxy_split_refusals(tiny_catalog, tmp_path):
    with pytest.raises(EproductError, match="not empty"):
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "x").write_text("x")
        proxy_split(tiny_catalog, tmp_path / "full")
    with pytest.raises(EproductError, match="No two val photos passed"):
        proxy_split(tiny_catalog, tmp_path / "none", ProxySettings(title_threshold=1.0, image_threshold=1.0))
    with pytest.raises(EproductError, match="must be in"):
        ProxySettings(title_threshold=1.5)
