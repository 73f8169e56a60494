"""Cached loaders: each artifact is read once per process (indexes, models) or per content (data).

`st.cache_resource` holds the shared, read-only objects (an opened `Index`, a model bundle, a catalog)
so every session uses the same one; keys include a file's modification time so a rebuilt artifact is
picked up. Query embeddings of uploads are cached by the sha256 of the uploaded bytes, so moving a
slider re-filters without re-embedding. Everything uses `st.cache_resource`, never `st.cache_data`
(which pickles values): cached arrays are made read-only, cached frames are never modified in place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from eproduct_core.errors import EproductError

log = logging.getLogger(__name__)
THUMB_PX = 160  # thumbnails are scaled to fit this square


def stamp(path: str | Path) -> float:
    """Modification time of a file (0 when missing): part of cache keys so rebuilds are seen."""
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


@st.cache_resource(show_spinner="Opening the index...", max_entries=16)
def _index(path: str, key: float):
    from eproduct_core.index import open_index

    opened = open_index(path).warm()
    log.info("opened index %s (%d rows, %d bits) for this process", path, opened.size, opened.bits)
    return opened


def index(path: str | Path):
    """The opened, warmed `Index` at `path`, shared by every session of this process."""
    manifest = Path(path) / "manifest.json"
    return _index(str(path), stamp(manifest))


@st.cache_resource(show_spinner="Reading the catalog...", max_entries=8)
def _catalog(path: str, key: float):
    from eproduct_core.catalog import read_catalog

    return read_catalog(path)


def catalog(path: str | Path):
    key = stamp(Path(path) / "index.csv") + stamp(Path(path) / "train.csv") + stamp(Path(path) / "catalog.json")
    return _catalog(str(path), key)


@st.cache_resource(show_spinner="Loading the model (first time only)...", max_entries=4)
def _bundle(run_dir: str, key: float):
    from eproduct_ui import preload

    return preload.bundle(run_dir, key)  # already loaded when the background warm-up got to it


def bundle(run_dir: str | Path):
    """The run's model bundle (`embed.load_run`), loaded once per process."""
    checkpoint = Path(run_dir) / "checkpoint.pt"
    if not checkpoint.is_file():
        raise EproductError(f"Run {run_dir} has no checkpoint.pt. Train it with `eproduct train`.")
    return _bundle(str(run_dir), stamp(checkpoint))


_EMBED_LOCK = threading.Lock()


@st.cache_resource(show_spinner="Embedding the query...", max_entries=256)
def _embed_upload(run_dir: str, kind: str, digest: str, _data: bytes, _name: str) -> np.ndarray:
    from eproduct_core.embed import embed_images
    from eproduct_core.images import load_image

    image = load_image(_data, name=_name)
    model = bundle(run_dir)
    with _EMBED_LOCK:  # one forward pass at a time: 2 cores, and torch modules are not re-entrant per thread
        vectors = embed_images(model, [image], kind)
    return _read_only(np.asarray(vectors, dtype=np.float32)[0])


def embed_upload(run_dir: str | Path, kind: str, data: bytes, name: str) -> np.ndarray:
    """The `kind` embedding (d,) of uploaded bytes, decoded in memory, cached by their sha256."""
    return _embed_upload(str(run_dir), kind, digest(data), data, name)


def _read_only(array: np.ndarray) -> np.ndarray:
    """Cached arrays are shared by every session: make accidental writes fail loudly."""
    array.setflags(write=False)
    return array


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@st.cache_resource(show_spinner=False, max_entries=32)
def _embeddings(path: str, key: float) -> tuple[np.ndarray, list[str]]:
    from eproduct_core.embeddings import read_embeddings

    stored = read_embeddings(path)
    return _read_only(np.asarray(stored.vectors, dtype=np.float32)), list(stored.ids)


def embeddings(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """(vectors float32, ids) of an embeddings folder."""
    return _embeddings(str(path), stamp(Path(path) / "meta.json"))


@st.cache_resource(show_spinner=False, max_entries=8)
def _file_digests(root: str, paths: tuple[str, ...], key: float) -> dict[str, int]:
    found = {}
    for position, relative in enumerate(paths):
        try:
            found[digest((Path(root) / relative).read_bytes())] = position
        except OSError:
            continue
    return found


def query_for_bytes(catalog_obj, data: bytes) -> str | None:
    """The catalog query id whose image file has exactly these bytes (so an upload gets groundtruth)."""
    paths = tuple(catalog_obj.query["path"])
    found = _file_digests(str(catalog_obj.images), paths, stamp(Path(catalog_obj.root) / "query.csv"))
    position = found.get(digest(data))
    return None if position is None else str(catalog_obj.query["image_id"].iat[position])


@st.cache_resource(show_spinner=False, max_entries=4096)
def thumbnail(path: str) -> Image.Image | None:
    """A small RGB copy of a catalog image (None when it cannot be read or lies outside the roots)."""
    from eproduct_core.images import load_image
    from eproduct_core.workspace import inside_roots

    try:
        image = load_image(inside_roots(path))
    except EproductError:
        return None
    image.thumbnail((THUMB_PX, THUMB_PX))
    return image


@st.cache_resource(show_spinner=False, max_entries=16)
def run_metrics(run_dir: str, key: float) -> pd.DataFrame:
    """metrics.jsonl as a flat DataFrame: epoch, train_loss, val_acc_<level>, ..."""
    path = Path(run_dir) / "metrics.jsonl"
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        if line.strip():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            flat = {k: v for k, v in record.items() if not isinstance(v, dict)}
            for key_, value in record.items():
                if isinstance(value, dict):
                    flat.update({f"{key_}_{k}": v for k, v in value.items()})
            rows.append(flat)
    return pd.DataFrame(rows)
