"""embeddings.py: shards written atomically, read back in name order, and every inconsistency refused."""

from __future__ import annotations

import numpy as np
import pytest

from eproduct_core.embeddings import read_embeddings, read_ids, write_meta, write_shard
from eproduct_core.errors import EproductError


def _folder(tmp_path, shards):
    folder = tmp_path / "emb"
    write_meta(folder, "external", 3, split="query")
    for name, (vectors, ids) in shards.items():
        write_shard(folder, name, vectors, ids)
    return folder


def test_shards_are_read_in_name_order_as_float16(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((3, 3)).astype(np.float32)
    folder = _folder(tmp_path, {"part0001": (b, ["b0", "b1", "b2"]), "part0000": (a, ["a0", "a1"])})
    emb = read_embeddings(folder)
    assert emb.ids == ["a0", "a1", "b0", "b1", "b2"] and emb.kind == "external" and emb.dim == 3
    assert emb.vectors.dtype == np.float16
    np.testing.assert_array_equal(emb.vectors, np.concatenate([a, b]).astype(np.float16))
    mapped = read_embeddings(folder, mmap=True)
    np.testing.assert_array_equal(mapped.vectors, emb.vectors)
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_ids_with_unicode_line_separators_round_trip(tmp_path):
    """str.splitlines() also splits on \\u2028, \\x85, \\x0c ...: ids are split on '\\n' only."""
    ids = ["a\u2028b", "c\x85d", "e\x0cf", "plain"]
    folder = _folder(tmp_path, {"s": (np.zeros((4, 3), np.float32), ids)})
    assert read_embeddings(folder).ids == ids
    (tmp_path / "ids.txt").write_text("x\r\ny\n", encoding="utf-8")  # a Windows-edited id file
    assert read_ids(tmp_path / "ids.txt") == ["x", "y"]


def test_ids_with_line_breaks_and_count_mismatches_are_refused(tmp_path):
    folder = tmp_path / "emb"
    with pytest.raises(EproductError, match="line breaks"):
        write_shard(folder, "s", np.zeros((1, 3)), ["a\nb"])
    with pytest.raises(ValueError, match="2 ids for 1 vectors"):
        write_shard(folder, "s", np.zeros((1, 3)), ["a", "b"])


def test_inconsistent_folders_are_refused(tmp_path):
    folder = _folder(tmp_path, {"s": (np.zeros((2, 3), np.float32), ["a", "b"])})
    (folder / "ids-s.txt").write_text("a\n", encoding="utf-8")
    with pytest.raises(EproductError, match=r"shape \(2, 3\) with 1 ids"):
        read_embeddings(folder)
    (folder / "ids-s.txt").unlink()
    with pytest.raises(EproductError, match="has no ids-s.txt"):
        read_embeddings(folder)
    (folder / "vectors-s.npy").unlink()
    with pytest.raises(EproductError, match="holds no vectors"):
        read_embeddings(folder)
    with pytest.raises(EproductError, match="not an embeddings folder"):
        read_embeddings(tmp_path / "nowhere")
