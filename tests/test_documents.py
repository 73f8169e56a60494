"""documents.py: the one reader of versioned JSON documents refuses each kind of bad file with a fix."""

from __future__ import annotations

import json

import pytest

from eproduct_core.documents import read_versioned_json
from eproduct_core.errors import EproductError

ARGS = dict(fmt="eproduct-thing", version=2, what="an eproduct thing", missing="no thing here", fix="Rebuild it.")


def test_a_good_document_reads_back(tmp_path):
    path = tmp_path / "thing.json"
    path.write_text(json.dumps({"format": "eproduct-thing", "version": 2, "x": [1]}), encoding="utf-8")
    assert read_versioned_json(path, **ARGS)["x"] == [1]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "^no thing here$"),
        (b"{not json", "is not valid JSON .* Rebuild it.$"),
        (b"\xff\xfe garbage", "is not valid JSON"),
        (b"[1, 2]", "is not an eproduct thing .* Rebuild it.$"),
        (b'{"format": "other", "version": 2}', "is not an eproduct thing"),
        (b'{"format": "eproduct-thing", "version": 3}', "has version 3; this eproduct reads version 2. Rebuild it.$"),
        (b'{"format": "eproduct-thing"}', "has version None"),
    ],
)
def test_bad_documents_are_refused_saying_what_to_do(tmp_path, content, message):
    path = tmp_path / "thing.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(EproductError, match=message):
        read_versioned_json(path, **ARGS)


def test_a_folder_in_place_of_the_file_is_missing(tmp_path):
    (tmp_path / "thing.json").mkdir()
    with pytest.raises(EproductError, match="^no thing here$"):
        read_versioned_json(tmp_path / "thing.json", **ARGS)
