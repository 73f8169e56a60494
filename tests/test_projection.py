"""projection: a stratified sample of embeddings projected by PCA, written to a folder and read back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eproduct_core.errors import EproductError
from eproduct_core.projection import Part, build_projection, project, read_projection, stratified_sample


def _parts(rng, n_train=300, n_index=200, dim=12):
    centres = rng.standard_normal((3, dim)) * 4
    leaves = rng.integers(0, 3, n_train)
    train = centres[leaves] + rng.standard_normal((n_train, dim))
    index_leaves = rng.integers(0, 3, n_index)
    index = centres[index_leaves] + rng.standard_normal((n_index, dim))
    labels = pd.DataFrame(
        {
            "image_id": [f"t{i}" for i in range(n_train)],
            "meta": [f"m{leaf % 2}" for leaf in leaves],
            "level2": [f"l{leaf}" for leaf in leaves],
            "leaf": [f"leaf{leaf}" for leaf in leaves],
        }
    )
    parts = {
        "index": Part(index.astype(np.float16), [f"ix{i}" for i in range(n_index)]),
        "train": Part(train.astype(np.float32), list(labels["image_id"])),
    }
    return parts, labels, index_leaves


def test_map_is_written_read_back_and_labels_index_rows_by_nearest_train(tmp_path):
    rng = np.random.default_rng(0)
    parts, labels, index_leaves = _parts(rng)
    out = build_projection(tmp_path / "map", parts, labels, max_points=10_000, key={"index": "x"})
    got = read_projection(out)
    assert len(got.points) == 500 and got.meta["per_split"] == {"index": 200, "train": 300}
    assert got.points["x"].std() > 0 and got.points["y"].std() > 0
    train = got.points[got.points["split"] == "train"]
    assert (train["label_source"] == "catalog").all()
    assert train["leaf"].tolist() == labels["leaf"].tolist()
    index = got.points[got.points["split"] == "index"]
    assert (index["label_source"] == "nearest train").all()
    agree = np.mean(index["leaf"].to_numpy() == np.array([f"leaf{leaf}" for leaf in index_leaves]))
    assert agree > 0.9  # well separated clusters: the nearest training row has the same class
    # A new vector lands where its own row did
    first = parts["index"].vectors[:1]
    assert np.allclose(project(got.meta, first)[0], index[["x", "y"]].to_numpy()[0], atol=1e-3)
    # The three clusters are apart on the map (PCA keeps the big directions)
    centres = [train[train["leaf"] == f"leaf{c}"][["x", "y"]].mean().to_numpy() for c in range(3)]
    spread = train[train["leaf"] == "leaf0"][["x", "y"]].std().mean()
    assert min(np.linalg.norm(a - b) for i, a in enumerate(centres) for b in centres[i + 1 :]) > spread


def test_sample_is_capped_and_even_over_leaves(tmp_path):
    rng = np.random.default_rng(1)
    parts, labels, _ = _parts(rng, n_train=3000, n_index=1000)
    kept = stratified_sample(parts, labels.set_index("image_id")["leaf"].to_dict(), max_points=400)
    assert sum(len(v) for v in kept.values()) <= 400
    assert len(kept["index"]) == 100 and len(kept["train"]) == 300
    leaves = labels["leaf"].to_numpy()[kept["train"]]
    counts = pd.Series(leaves).value_counts()
    assert counts.max() - counts.min() <= 1  # round-robin over leaves
    got = read_projection(build_projection(tmp_path / "m", parts, labels, max_points=400))
    assert len(got.points) == len(set(got.points["id"])) == sum(len(v) for v in kept.values())


def test_refusals(tmp_path):
    rng = np.random.default_rng(2)
    parts, labels, _ = _parts(rng)
    with pytest.raises(EproductError, match="No embedding map"):
        read_projection(tmp_path / "none")
    with pytest.raises(EproductError, match="method"):
        build_projection(tmp_path / "m", parts, labels, method="tsne")
    bad = {**parts, "query": Part(np.ones((2, 5), np.float32), ["a", "b"])}
    with pytest.raises(EproductError, match="dimensions"):
        build_projection(tmp_path / "m", bad, labels)
    out = build_projection(tmp_path / "m", parts, labels)
    with pytest.raises(EproductError, match="cannot be placed"):
        project(read_projection(out).meta, np.ones((1, 5)))
