"""Embedding a trained run: kinds and their dims, one-image path == split path, parts, bad files, CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from eproduct_core.config import TrainConfig
from eproduct_core.embed import KINDS, embed_images, embed_split, load_run, parse_part
from eproduct_core.embeddings import read_embeddings
from eproduct_core.errors import EproductError
from eproduct_core.images import load_image
from eproduct_core.train import train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def runs(tiny_catalog, tmp_path_factory):
    root = tmp_path_factory.mktemp("embed-runs")
    both = train(
        TrainConfig(
            backbone="tiny",
            image_size=32,
            epochs=1,
            batch_size=32,
            device="cpu",
            metric=True,
            metric_dim=24,
            max_train_images=64,
        ),
        tiny_catalog,
        root / "both",
    )
    dhc_only = train(
        TrainConfig(backbone="tiny", image_size=32, epochs=1, batch_size=32, device="cpu", max_train_images=64),
        tiny_catalog,
        root / "dhc",
    )
    return {"both": both, "dhc": dhc_only}


def test_kinds_have_the_right_dims(runs, tiny_catalog, tmp_path):
    bundle = load_run(runs["both"], "cpu")
    n_leaf = bundle.taxonomy.sizes[-1]
    expected = {"seed": 2 + n_leaf, "seed-3d": 3, "penultimate": bundle.model.feature_dim, "metric": 24}
    n_query = len(pd.read_csv(tiny_catalog / "query.csv"))
    for kind in KINDS:
        emb = read_embeddings(embed_split(runs["both"], tiny_catalog, "query", kind, tmp_path / kind, device="cpu"))
        assert emb.vectors.shape == (n_query, expected[kind]) and emb.kind == kind
        assert emb.meta["dim"] == expected[kind] and emb.meta["split"] == "query" and emb.meta["bad_files"] == []
        assert emb.meta["preset"] == "custom" and emb.meta["run"].endswith("both")
    seed = read_embeddings(tmp_path / "seed").vectors.astype(np.float32)
    ids3 = read_embeddings(tmp_path / "seed-3d").vectors.astype(np.float32)
    sizes = bundle.taxonomy.sizes
    assert np.allclose(seed[:, :2], ids3[:, :2])  # the seed vector starts with the predicted meta and level2 ids
    assert (ids3 >= 0).all() and (ids3 < np.array(sizes)).all() and np.allclose(ids3, np.round(ids3))
    assert np.allclose(seed[:, 2:].sum(axis=1), 1.0, atol=1e-2)  # then the leaf probability vector
    parents = bundle.taxonomy.parent_array(2)
    assert np.allclose(
        np.linalg.norm(read_embeddings(tmp_path / "metric").vectors.astype(np.float32), axis=1), 1.0, atol=1e-2
    )
    assert parents.shape == (n_leaf,)


def test_one_uploaded_image_matches_the_split_embedding(runs, tiny_catalog, tmp_path):
    bundle = load_run(runs["both"], "cpu")
    query = pd.read_csv(tiny_catalog / "query.csv")
    images = [load_image(tiny_catalog / p) for p in query["path"][:3]]
    single = embed_images(bundle, images, "metric")
    assert single.dtype == np.float32 and single.shape == (3, 24)
    emb = read_embeddings(embed_split(runs["both"], tiny_catalog, "query", "metric", tmp_path / "m", device="cpu"))
    np.testing.assert_allclose(single, emb.vectors[:3].astype(np.float32), atol=2e-3)
    assert embed_images(bundle, [], "seed").shape == (0, 2 + bundle.taxonomy.sizes[-1])


def test_metric_kind_needs_a_metric_head(runs, tiny_catalog, tmp_path):
    bundle = load_run(runs["dhc"], "cpu")
    with pytest.raises(EproductError, match="metric head"):
        embed_images(bundle, [load_image(next((tiny_catalog / "images").rglob("*.jpg")))], "metric")
    with pytest.raises(EproductError, match="metric head"):
        embed_split(runs["dhc"], tiny_catalog, "query", "metric", tmp_path / "x", device="cpu")
    with pytest.raises(EproductError, match="kind"):
        embed_images(bundle, [], "pixels")


def test_parts_cover_the_split_once(runs, tiny_catalog, tmp_path):
    whole = read_embeddings(embed_split(runs["both"], tiny_catalog, "index", "seed", tmp_path / "whole", device="cpu"))
    for i in range(3):
        embed_split(runs["both"], tiny_catalog, "index", "seed", tmp_path / "parts", device="cpu", part=(i, 3))
    parts = read_embeddings(tmp_path / "parts")
    assert parts.ids == whole.ids
    np.testing.assert_allclose(parts.vectors.astype(np.float32), whole.vectors.astype(np.float32), atol=1e-3)
    assert parse_part("2/4") == (2, 4)
    with pytest.raises(EproductError, match="part"):
        parse_part("4/4")


def test_bad_image_files_are_reported_and_skipped_or_strict(runs, tiny_catalog, tmp_path):
    catalog = tmp_path / "catalog"
    shutil.copytree(tiny_catalog, catalog)
    query = pd.read_csv(catalog / "query.csv")
    (catalog / query["path"][1]).write_bytes(b"not an image")
    emb = read_embeddings(embed_split(runs["both"], catalog, "query", "seed-3d", tmp_path / "e", device="cpu"))
    assert len(emb.ids) == len(query) - 1 and query["image_id"][1] not in emb.ids
    assert emb.meta["bad_files"] == [query["path"][1]]
    with pytest.raises(EproductError, match="not an image"):
        embed_split(runs["both"], catalog, "query", "seed-3d", tmp_path / "strict", device="cpu", strict=True)


def test_cli_embed(runs, tiny_catalog, tmp_path):
    from eproduct_core.cli import main

    out = tmp_path / "cli"
    assert (
        main(
            [
                "embed",
                "--run",
                str(runs["both"]),
                "--catalog",
                str(tiny_catalog),
                "--split",
                "query",
                "--kind",
                "penultimate",
                "--out",
                str(out),
                "--device",
                "cpu",
                "--part",
                "0/2",
            ]
        )
        == 0
    )
    meta = json.loads((out / "meta.json").read_text())
    assert meta["kind"] == "penultimate" and meta["parts"] == 2
    assert (
        main(
            [
                "embed",
                "--run",
                str(tmp_path / "nope"),
                "--catalog",
                str(tiny_catalog),
                "--split",
                "query",
                "--kind",
                "seed",
                "--out",
                str(out),
            ]
        )
        == 2
    )


def test_embed_kinds_in_one_pass_matches_embed_split(runs, tiny_catalog, tmp_path):
    from eproduct_core.embed import embed_kinds

    bundle = load_run(runs["both"], "cpu")
    vectors, ids = embed_kinds(bundle, tiny_catalog, "query", ["seed", "metric"])
    for kind in ("seed", "metric"):
        emb = read_embeddings(embed_split(runs["both"], tiny_catalog, "query", kind, tmp_path / kind, device="cpu"))
        assert emb.ids == ids
        np.testing.assert_allclose(vectors[kind], emb.vectors.astype(np.float32), atol=2e-3)
