"""`catalog import-eproduct` on a mock of the real layout: columns, exact titles, image root, refusals, submit."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from eproduct_mock import TRICKY_TITLES, write_mock_eproduct

from eproduct_core.catalog import read_catalog, validate_catalog
from eproduct_core.cli import main
from eproduct_core.eproduct_import import import_eproduct
from eproduct_core.errors import EproductError


@pytest.fixture(scope="module")
def mock_root(tiny_catalog, tmp_path_factory):
    root = tmp_path_factory.mktemp("eproduct") / "eProduct"
    frames = write_mock_eproduct(tiny_catalog, root)
    return root, frames


@pytest.fixture(scope="module")
def imported(mock_root, tmp_path_factory):
    root, _ = mock_root
    out = tmp_path_factory.mktemp("imported") / "catalog"
    import_eproduct(root, out)
    return out


def test_import_maps_columns_and_keeps_titles_exactly(mock_root, imported):
    root, frames = mock_root
    catalog = read_catalog(imported)
    assert catalog.image_root == (root / "Images").absolute()
    assert list(catalog.train["image_id"]) == list(frames["train"]["UUID"])
    assert list(catalog.train["title"]) == list(frames["train"]["AUCT_TITL"])
    assert catalog.train["title"].iloc[: len(TRICKY_TITLES)].str.contains('"|,|\n|☕').sum() >= 3
    assert list(catalog.train["leaf"]) == list(frames["train"]["LEAF_CATEG_ID"])
    assert list(catalog.val["meta"]) == list(frames["val"]["META_CATEG_ID"])
    assert list(catalog.query["image_id"]) == list(frames["query"]["UUID"])
    assert list(catalog.index["path"]) == list(frames["index"]["IMAGE_PATH"])
    assert set(catalog.train["SELLER_NOTE"]) == {"note, with comma"}  # extra column kept
    assert set(catalog.index["source_path"]) == {"not/the/image/path.jpg"}  # renamed, does not shadow `path`
    assert catalog.groundtruth is None and catalog.groundtruth_kind is None
    assert not any(p.suffix.lower() in (".jpg", ".jpeg") for p in imported.rglob("*"))  # nothing copied
    meta = json.loads((imported / "catalog.json").read_text())
    assert meta["format"] == "eproduct-catalog" and meta["version"] == 1 and meta["source"] == "eproduct"
    first = catalog.image_path(catalog.train["path"].iat[0])
    assert first.is_file() and first.parent.parent == root / "Images"


def test_imported_catalog_validates_and_the_cli_prints_counts(mock_root, tmp_path, capsys):
    root, frames = mock_root
    assert main(["catalog", "import-eproduct", str(root), str(tmp_path / "cat")]) == 0
    printed = capsys.readouterr().out
    assert f"train  {len(frames['train']):>10,} rows" in printed
    assert f"query  {len(frames['query']):>10,} rows" in printed
    leaves = frames["train"]["LEAF_CATEG_ID"].nunique()
    assert f"leaf {leaves}" in printed and "extra columns kept: PRODUCT, SELLER_NOTE" in printed
    assert validate_catalog(tmp_path / "cat") == []
    assert main(["catalog", "validate", str(tmp_path / "cat"), "--sample", "20"]) == 0


def test_paths_escaping_the_image_root_are_refused(imported, tmp_path):
    copy = tmp_path / "cat"
    shutil.copytree(imported, copy)
    frame = pd.read_csv(copy / "index.csv", dtype=str, keep_default_na=False)
    frame.loc[0, "path"] = "../metadata/train.csv"
    frame.loc[1, "path"] = "/etc/passwd"
    frame.to_csv(copy / "index.csv", index=False)
    problems = [str(p) for p in validate_catalog(copy, check_files="all")]
    assert any("leave the image root" in p and "lines 2, 3" in p for p in problems), problems
    catalog = read_catalog(copy)
    with pytest.raises(EproductError, match="leaves the catalog's image root"):
        catalog.image_path(catalog.index["path"].iat[0])


def test_a_moved_image_root_is_reported(imported, tmp_path):
    copy = tmp_path / "cat"
    shutil.copytree(imported, copy)
    meta = json.loads((copy / "catalog.json").read_text())
    meta["image_root"] = str(tmp_path / "gone")
    (copy / "catalog.json").write_text(json.dumps(meta))
    with pytest.raises(EproductError, match="image_root .* is not a folder"):
        read_catalog(copy)
    assert "catalog.json" in str(validate_catalog(copy)[0])


def test_other_layouts_are_refused_naming_found_and_expected(mock_root, tmp_path):
    root, _ = mock_root
    with pytest.raises(EproductError, match=r"expected metadata/ and Images/ in it, found metadata/"):
        bad = tmp_path / "no-images"
        shutil.copytree(root / "metadata", bad / "metadata")
        import_eproduct(bad, tmp_path / "out1")
    with pytest.raises(EproductError, match=r"no query_part2.csv: expected .* found index.csv.*--query-split"):
        import_eproduct(root, tmp_path / "out2", query_split="query_part2")
    broken = tmp_path / "broken"
    shutil.copytree(root, broken)
    frame = pd.read_csv(broken / "metadata" / "train.csv", dtype=str, keep_default_na=False)
    frame.drop(columns=["LEAF_CATEG_ID"]).to_csv(broken / "metadata" / "train.csv", index=False)
    with pytest.raises(EproductError, match=r"train.csv has columns .*missing \['LEAF_CATEG_ID'\]"):
        import_eproduct(broken, tmp_path / "out3")
    frame["IMAGE_PATH"] = "Images/" + frame["IMAGE_PATH"]
    frame.to_csv(broken / "metadata" / "train.csv", index=False)
    with pytest.raises(EproductError, match="relative to ROOT: IMAGE_PATH must be relative to Images/"):
        import_eproduct(broken, tmp_path / "out4")
    assert not any((tmp_path / name).exists() for name in ("out1", "out2", "out3", "out4"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(EproductError, match="not empty"):
        import_eproduct(root, tmp_path / "full")


def test_submit_on_the_imported_catalog_writes_the_challenge_format(mock_root, imported, tmp_path):
    import torch

    from eproduct_core.config import preset, with_overrides
    from eproduct_core.train import train

    _, frames = mock_root
    torch.set_num_threads(1)
    config = with_overrides(preset("fast-demo"), {"backbone": "tiny", "weights": "none", "epochs": 1, "image_size": 32})
    run = train(config, imported, tmp_path / "run")
    out = tmp_path / "submission.csv"
    assert main(["submit", "--run", str(run), "--catalog", str(imported), "--out", str(out)]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    index_uuids = set(frames["index"]["UUID"])
    assert [line.split(",")[0] for line in lines] == list(frames["query"]["UUID"])  # no header, real UUIDs
    for line in lines:
        query, ids = line.split(",")
        assert len(query) == 16 and 1 <= len(ids.split(" ")) <= 10 and set(ids.split(" ")) <= index_uuids


def test_proxy_split_of_the_imported_catalog_keeps_its_image_root(mock_root, imported, tmp_path):
    from eproduct_core.proxy_split import proxy_split

    root, frames = mock_root
    report, _ = proxy_split(imported, tmp_path / "proxy")
    proxy = read_catalog(tmp_path / "proxy")
    assert proxy.image_root == (root / "Images").absolute() and proxy.groundtruth_kind == "proxy"
    assert validate_catalog(tmp_path / "proxy") == []
    assert report.groups == len(proxy.query) > 0
    assert set(proxy.query["image_id"]) <= set(frames["val"]["UUID"])
