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


def test_merge_checks_every_part_then_indexes_like_one_job(runs, tiny_catalog, tmp_path, monkeypatch):
    from eproduct_core.cli import main
    from eproduct_core.embed_parts import merge_parts
    from eproduct_core.index import build_index_from_embeddings, open_index

    whole = read_embeddings(
        embed_split(runs["both"], tiny_catalog, "index", "metric", tmp_path / "whole", device="cpu")
    )
    # parts 0 and 2 by --part into one folder, part 1 as torchrun rank 1 of 3 (RANK/WORLD_SIZE) into another
    for i in (0, 2):
        embed_split(runs["both"], tiny_catalog, "index", "metric", tmp_path / "a", device="cpu", part=(i, 3))
    with pytest.raises(EproductError, match=r"Parts \[1\] of 3 are missing or unfinished"):
        merge_parts([tmp_path / "a"], tmp_path / "merged")
    with pytest.raises(EproductError, match=r"Parts \[1\] of 3 are missing or unfinished"):  # no index of 2/3
        build_index_from_embeddings(tmp_path / "a", tmp_path / "partial-index", bits=64)
    assert not (tmp_path / "partial-index").exists()
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    embed_split(runs["both"], tiny_catalog, "index", "metric", tmp_path / "b", device="cpu", part=parse_part(None))
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert main(["embed", "merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "merged")]) == 0
    merged = read_embeddings(tmp_path / "merged")
    assert merged.ids == whole.ids and merged.meta["merged_parts"] == 3 and merged.meta["parts"] == 1
    np.testing.assert_allclose(merged.vectors.astype(np.float32), whole.vectors.astype(np.float32), atol=1e-3)
    index = open_index(build_index_from_embeddings(tmp_path / "merged", tmp_path / "idx", bits=64))
    assert index.size == len(whole.ids) and index.kind == "metric"

    # a repeated part, a part of another kind, an unfinished part (shard gone) are all refused, nothing written
    with pytest.raises(EproductError, match="appear more than once"):
        merge_parts([tmp_path / "a", tmp_path / "b", tmp_path / "a"], tmp_path / "m1")
    embed_split(runs["both"], tiny_catalog, "index", "penultimate", tmp_path / "c", device="cpu", part=(1, 3))
    with pytest.raises(EproductError, match="Parts disagree on kind: 'metric'.*'penultimate'"):
        merge_parts([tmp_path / "a", tmp_path / "c"], tmp_path / "m2")
    next((tmp_path / "b").glob("vectors-*.npy")).unlink()
    with pytest.raises(EproductError, match="lists shard .* which is missing"):
        merge_parts([tmp_path / "a", tmp_path / "b"], tmp_path / "m3")
    assert main(["embed", "merge", str(tmp_path / "a"), "--out", str(tmp_path / "m4")]) == 2
    assert not any((tmp_path / name).exists() for name in ("m1", "m2", "m3", "m4"))


def test_a_rerun_part_replaces_its_shards_and_workers_give_the_same_vectors(runs, tiny_catalog, tmp_path):
    first = embed_split(runs["both"], tiny_catalog, "query", "metric", tmp_path / "q", device="cpu", part=(0, 2))
    before = sorted(p.name for p in first.iterdir())
    again = embed_split(
        runs["both"], tiny_catalog, "query", "metric", tmp_path / "q", device="cpu", part=(0, 2), workers=2
    )
    assert sorted(p.name for p in again.iterdir()) == before
    plain = read_embeddings(embed_split(runs["both"], tiny_catalog, "query", "metric", tmp_path / "p", device="cpu"))
    loaded = embed_split(runs["both"], tiny_catalog, "query", "metric", tmp_path / "w", device="cpu", workers=2)
    assert read_embeddings(loaded).ids == plain.ids
    np.testing.assert_array_equal(read_embeddings(loaded).vectors, plain.vectors)


def test_test_time_views_are_averaged_as_documented(runs, tiny_catalog):
    from eproduct_core.data import to_uint8_tensor
    from eproduct_core.embed import TTA_VIEWS, batch_vectors, tta_view, vectors_from_outputs

    bundle = load_run(runs["both"], "cpu")
    query = pd.read_csv(tiny_catalog / "query.csv")
    size = bundle.config.image_size
    images = torch.stack([to_uint8_tensor(load_image(tiny_catalog / p), size) for p in query["path"][:4]]).float() / 255
    assert torch.equal(tta_view(images, "mirror"), images.flip(-1))
    for view in TTA_VIEWS["multicrop"]:
        assert tta_view(images, view).shape == images.shape
    assert not torch.allclose(tta_view(images, "centre"), images)
    with torch.inference_mode():
        outputs = {view: bundle.model(tta_view(images, view)) for view in TTA_VIEWS["multicrop"]}
    for tta in ("none", "flip", "multicrop"):
        got = batch_vectors(bundle, images, ["penultimate", "metric", "seed"], tta)
        views = TTA_VIEWS[tta]
        pen = torch.stack([vectors_from_outputs(outputs[v], "penultimate").float() for v in views]).mean(0)
        met = [vectors_from_outputs(outputs[v], "metric").float() for v in views]
        met = torch.stack([torch.nn.functional.normalize(m, dim=1) for m in met] if len(met) > 1 else met).mean(0)
        torch.testing.assert_close(got["penultimate"], pen, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(got["metric"], met, atol=1e-5, rtol=1e-4)
        seed = vectors_from_outputs(outputs["image"], "seed").float()  # class predictions are never averaged
        torch.testing.assert_close(got["seed"], seed, atol=1e-5, rtol=1e-4)
    with pytest.raises(EproductError, match="multicrop"):
        batch_vectors(bundle, images, ["metric"], "crops")
