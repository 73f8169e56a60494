"""The embeddings folder: float16 vectors in shards with their ids, and what they are (numpy only).

Layout of a folder `EMB/`:
  meta.json                 {"format": "eproduct-embeddings", "version": 1, "kind", "dim", "split", ...}
  vectors-<name>.npy        float16 (rows, dim), one per shard
  ids-<name>.txt            one id per line (UTF-8), same row order

Parallel writers (`--part i/n`, torchrun ranks) each write their own shards under distinct names;
readers take the shards in sorted name order. Each file is written to a temporary name and renamed,
so a killed job never leaves a half-written shard.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import save_npy_atomic, write_text_atomic
from .documents import read_versioned_json
from .errors import EproductError

FORMAT = "eproduct-embeddings"
VERSION = 1


@dataclass(frozen=True)
class Embeddings:
    """All rows of an embeddings folder, in shard order."""

    vectors: np.ndarray  # (N, dim) float16 as stored
    ids: list[str]
    kind: str  # seed | seed-3d | penultimate | metric | raw | external
    meta: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def write_meta(folder: str | Path, kind: str, dim: int, **extra) -> None:
    """Write (or overwrite identically) the folder's meta.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "version": VERSION, "kind": kind, "dim": int(dim), **extra}
    write_text_atomic(folder / "meta.json", json.dumps(meta, indent=2))


def write_shard(folder: str | Path, name: str, vectors: np.ndarray, ids: list[str]) -> None:
    """Write one shard: `vectors` (rows, dim) as float16 and `ids` one per line."""
    folder = Path(folder)
    if len(ids) != len(vectors):
        raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
    bad = [i for i in ids if "\n" in str(i) or "\r" in str(i)]
    if bad:
        raise EproductError(f"Ids may not contain line breaks; first bad id: {bad[0]!r}.")
    array = np.ascontiguousarray(vectors, dtype=np.float16)
    write_text_atomic(folder / f"ids-{name}.txt", "".join(f"{i}\n" for i in ids))
    save_npy_atomic(folder / f"vectors-{name}.npy", array)


def read_meta(folder: str | Path) -> dict:
    return read_versioned_json(
        Path(folder) / "meta.json",
        fmt=FORMAT,
        version=VERSION,
        what="an eproduct embeddings folder's meta.json",
        fix="Re-run `eproduct embed`.",
        missing=f"{folder} is not an embeddings folder (no meta.json). Create one with `eproduct embed`.",
    )


def read_ids(path: str | Path) -> list[str]:
    """One id per line of a UTF-8 text file, or an `EproductError` saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise EproductError(
            f"Id file {path} does not exist{' (it is a folder)' if path.is_dir() else ''}. "
            "Give a text file with one id per line."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise EproductError(
            f"Id file {path} is not UTF-8 text ({err.reason} at byte {err.start}). Re-save it as UTF-8."
        ) from err
    except OSError as err:
        raise EproductError(f"Cannot read id file {path} ({err.strerror}).") from err
    # split on "\n" only: str.splitlines() also breaks at \u2028, \x85, \x0c ..., which ids may hold
    lines = text.removeprefix("\ufeff").split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def read_embeddings(folder: str | Path, mmap: bool = False) -> Embeddings:
    """Read every shard of an embeddings folder (vectors concatenated in sorted shard order)."""
    folder = Path(folder)
    meta = read_meta(folder)
    vector_files = sorted(folder.glob("vectors-*.npy"))
    if int(meta.get("parts", 1)) > 1:  # `embed --part i/n` output, not merged
        from .embed_parts import check_parts  # (embed_parts imports this module)

        check_parts([folder])  # every part there and finished, or a message naming the first one missing
    if not vector_files:
        raise EproductError(f"{folder} holds no vectors-*.npy shards. Re-run `eproduct embed`.")
    blocks, ids = [], []
    for vector_file in vector_files:
        name = vector_file.name[len("vectors-") : -len(".npy")]
        id_file = folder / f"ids-{name}.txt"
        if not id_file.is_file():
            raise EproductError(f"Shard {vector_file.name} in {folder} has no {id_file.name}. Re-run `eproduct embed`.")
        block = np.load(vector_file, allow_pickle=False, mmap_mode="r" if mmap else None)
        shard_ids = read_ids(id_file)
        if block.ndim != 2 or block.shape[0] != len(shard_ids) or block.shape[1] != meta["dim"]:
            raise EproductError(
                f"Shard {vector_file.name} in {folder} has shape {block.shape} with {len(shard_ids)} ids; "
                f"meta.json says dim {meta['dim']}. Re-run `eproduct embed`."
            )
        blocks.append(block)
        ids.extend(shard_ids)
    vectors = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    return Embeddings(vectors=vectors, ids=ids, kind=str(meta["kind"]), meta=meta)
