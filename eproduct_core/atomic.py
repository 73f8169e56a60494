"""Crash-safe file writes: write to a temporary sibling, then rename it over the target.

Owns the one temp-and-rename pattern of the project for files. A reader sees the old file or the new one,
never half of one; a writer that fails (or is killed) leaves the target untouched and, when it fails
with an exception, no temporary file behind. Temporary names are `.<name>.tmp-<pid>` beside the
target (same filesystem, so the rename is atomic), dot-prefixed so globs over real files skip them.
(`.<name>.tmp-<pid>-<thread>`: concurrent writers of one file never share a temporary.)

    with atomic_path(path) as tmp:      # any writer that takes a path: torch.save, DataFrame.to_csv
        frame.to_csv(tmp, index=False)
    write_text_atomic(path, text)
    write_bytes_atomic(path, data)
    save_npy_atomic(path, array)        # .npy without pickle

Folders (an index, an embeddings cache, a workspace) are swapped with the same idea by their own
modules (`index_format.swap_into_place`), because replacing a non-empty folder needs more care.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import EproductError


def temp_name(path: str | Path) -> Path:
    """The temporary sibling a write of `path` goes through (unique per process and thread: the app's
    sessions are threads of one server that may write the same cache file at once)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")


@contextlib.contextmanager
def atomic_path(path: str | Path, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is synced and renamed to `path`, on error removed."""
    path = Path(path)
    if path.is_dir():
        raise EproductError(f"{path} is a folder; give the path of a file to write.")
    tmp = temp_name(path)
    try:
        yield tmp
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | Path, data: bytes, *, fsync: bool = True) -> Path:
    """Write `data` to `path` atomically; returns `path`."""
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str, *, fsync: bool = True) -> Path:
    """Write `text` as UTF-8 with '\\n' line endings to `path` atomically; returns `path`."""
    with atomic_path(path, fsync=fsync) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
    return Path(path)


def save_npy_atomic(path: str | Path, array: np.ndarray, *, fsync: bool = True) -> Path:
    """Save `array` as .npy (never pickled) to `path` atomically; returns `path`."""
    with atomic_path(path, fsync=fsync) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, np.asarray(array), allow_pickle=False)
    return Path(path)
