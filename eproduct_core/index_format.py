"""The index folder on disk: manifest, file names, checksums, and the crash-safe folder swap (numpy only).

Layout of an index folder `IDX/`:
  manifest.json            {"format": "eproduct-index", "version": 1, "kind", "dim", "seed", "bits",
                            "code_bytes", "rows", "shard_size", "vectors", "created",
                            "hyperplanes": {"file", "sha256"},
                            "shards": [{"name", "rows", "files": {"codes"|"ids"|"vectors": {"file", "sha256"}}}],
                            optional "search": a SearchSettings dict, the index's tuned default settings
                            (search.resolve fills a search's None fields from it), "search_estimate" (tuning.py),
                            "tables" (lsh_tables.py), "ann" (ann_graph.py: the optional faiss HNSW graph,
                            {"type", "file", "sha256", "rows", "dim", "params", "build_s"}),
                            "centre" ({"file", "sha256"}: a centred index, index.py `centre=True`)}
  hyperplanes.npy          float32 (bits, dim)
  centre.npy               optional: float32 (dim,), the mean unit row; codes hash unit rows minus it
  codes-00000.npy          uint8 (rows, code_bytes) packed codes, big-endian bit order (see lsh.py)
  ids-00000.txt            one id per line (UTF-8)
  vectors-00000.npy        float16 (rows, dim), the rows scaled to unit length, for exact re-rank
                           (absent when built with vectors=False; older indexes hold raw rows: same cosine)
  ann-hnsw.faiss           optional: the faiss HNSW graph over the vectors (faiss's binary format), `eproduct index ann`

A build writes everything into a hidden temporary sibling and swaps it into place, so a crash leaves
either the old index or the new one (see `swap_into_place`, `recover`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from .documents import read_versioned_json

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

FORMAT = "eproduct-index"
VERSION = 1
MANIFEST = "manifest.json"
HYPERPLANES = "hyperplanes.npy"
CENTRE = "centre.npy"  # optional: the mean unit row a centred index subtracts before hashing (index.py)
REBUILD = "Rebuild it with `eproduct index build`."


def shard_files(name: str) -> dict[str, str]:
    """File names of one shard, by role."""
    return {"codes": f"codes-{name}.npy", "ids": f"ids-{name}.txt", "vectors": f"vectors-{name}.npy"}


class HashingWriter:
    """A write-only file wrapper that keeps the sha256 of what was written (no re-read) and fsyncs on close.

    `sync=False` leaves the fsync to the caller (`fsync_files` after all shards): the kernel writes
    back in the background meanwhile, so a build does not wait on the disk once per file.
    """

    def __init__(self, path: Path, sync: bool = True):
        self.handle = open(path, "wb")
        self.digest = hashlib.sha256()
        self.sync = sync

    def write(self, data) -> int:
        self.digest.update(data)
        return self.handle.write(data)

    def close(self) -> str:
        self.handle.flush()
        if self.sync:
            os.fsync(self.handle.fileno())
        self.handle.close()
        return self.digest.hexdigest()


def fsync_files(paths) -> None:
    """fsync each file (written earlier with sync=False) before the folder is swapped into place."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, manifest: dict) -> None:
    writer = HashingWriter(folder / MANIFEST)
    writer.write(json.dumps(manifest, indent=2).encode())
    writer.close()


def replace_manifest(folder: Path, manifest: dict) -> None:
    """Rewrite the manifest of a finished index folder in place, atomically (tuned settings, tables)."""
    from .atomic import write_text_atomic

    write_text_atomic(folder / MANIFEST, json.dumps(manifest, indent=2))
    fsync_dir(folder)


def store_extra(index, key: str, arrays: dict[str, tuple[str, np.ndarray]], fields: dict) -> None:
    """Write an optional structure beside an opened index's shards (tables, partitions): each role's .npy
    (`arrays`: role -> (file name, array)) atomically, then the manifest entry `key` = `fields` + "files" (role ->
    file and sha256), replacing any there."""
    from .atomic import save_npy_atomic

    folder = Path(index.path)
    files: dict[str, dict[str, str]] = {}
    for role, (name, array) in arrays.items():
        save_npy_atomic(folder / name, array)
        files[role] = {"file": name, "sha256": sha256_file(folder / name)}
    manifest = read_manifest(folder)
    manifest[key] = {**fields, "files": files}
    replace_manifest(folder, manifest)
    index.manifest = manifest


def verify_extra(index, key: str, what: str) -> list[str]:
    """Checksum problems of the files of manifest entry `key` (`store_extra`; [] when sound or absent)."""
    problems = []
    for role, f in (index.manifest.get(key) or {}).get("files", {}).items():
        path = Path(index.path) / f["file"]
        if not path.is_file() or sha256_file(path) != f["sha256"]:
            problems.append(f"{path}: the {role} file of the {what} is missing or its checksum differs.")
    return problems


def load_extra(index, attribute: str, opener, missing: str):
    """An optional structure of an opened index (`opener(index)`, None when absent), loaded once and kept on the
    index as `attribute`; an EproductError with `missing` when the index has none."""
    from .errors import EproductError

    cached = getattr(index, attribute, None)
    if cached is None:
        cached = opener(index)
        if cached is None:
            raise EproductError(missing)
        setattr(index, attribute, cached)
    return cached


def read_manifest(folder: str | Path) -> dict:
    """The manifest of an index folder, or EproductError saying what is wrong and what to do."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        recover(folder)
    return read_versioned_json(
        path,
        fmt=FORMAT,
        version=VERSION,
        what="an eproduct index manifest",
        fix=REBUILD,
        missing=f"{folder} is not an index folder (no {MANIFEST}). Build one with `eproduct index build`.",
    )


def temp_sibling(out: Path, tag: str) -> Path:
    return out.with_name(f".{out.name}.{tag}-{os.getpid()}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(out: Path) -> None:
    """Delete temporary siblings left by builds that died (their process is gone)."""
    for tmp in out.parent.glob(f".{out.name}.*-*"):
        tag, _, pid = tmp.name.rpartition("-")
        if tag.endswith((".tmp", ".old")) and pid.isdigit() and not _pid_alive(int(pid)):
            if tag.endswith(".old") and not out.exists():
                continue  # the only copy of the previous index: `recover` puts it back
            shutil.rmtree(tmp, ignore_errors=True)


def recover(out: Path) -> None:
    """If a build died between moving the old index away and moving the new one in, move the old one back."""
    if out.exists():
        return
    for old in sorted(out.parent.glob(f".{out.name}.old-*")):
        if (old / MANIFEST).is_file():
            log.warning("recovering %s from %s (an interrupted build)", out, old.name)
            os.rename(old, out)
            return


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux renameat2(RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def swap_into_place(tmp: Path, out: Path) -> None:
    """Make `tmp` the index at `out`; the old index (if any) is intact until the new one is in place."""
    if not out.exists():
        os.rename(tmp, out)
        return
    if _exchange(tmp, out):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old index
        return
    old = temp_sibling(out, "old")
    os.rename(out, old)  # a crash here is undone by `recover` on the next open
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
