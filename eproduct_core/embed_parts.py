"""Parts of an embedding job (`embed --part i/n`, torchrun ranks) and their merge into one embeddings folder.

Owns the part marker and `merge_parts(folders, out) -> MergeReport` (numpy only, no torch). A part writes
its shards `vectors-part<i>-of<n>-<k>.npy` / `ids-...txt`, then, last, its marker
`part<i>-of<n>.json`: {"part", "parts", "rows" (catalog rows assigned to it), "split_rows" (rows of the
whole split), "embedded", "bad_files", "shards" ([names]), "kind", "dim", "run", "catalog", "split"}.
A part without a marker did not finish. `merge_parts` checks, before anything is written, that every
part 0..n-1 is there exactly once and complete (its shards exist with the recorded rows), that all agree
(kind, dim, run, catalog, split, part count), that the rows assigned add up to the split, and that no id
is missing or repeated; then it writes one folder (shards hard-linked or copied, one meta.json) that
`index build` reads like any other.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import write_text_atomic
from .embeddings import read_ids, read_meta, write_meta
from .errors import EproductError

AGREE = ("kind", "dim", "run", "catalog", "split", "parts", "split_rows")  # fields every part must share


def marker_name(part: int, parts: int) -> str:
    return f"part{part:04d}-of{parts:04d}.json"


def shard_prefix(part: int, parts: int) -> str:
    return f"part{part:04d}-of{parts:04d}-"


def write_marker(folder: Path, **fields) -> Path:
    """Write a finished part's marker atomically (after its shards)."""
    path = folder / marker_name(int(fields["part"]), int(fields["parts"]))
    return write_text_atomic(path, json.dumps(fields, indent=2))


@dataclass(frozen=True)
class MergeReport:
    out: Path
    parts: int
    rows: int  # embedded rows merged
    bad_files: int  # unreadable images the parts skipped


def _markers(folders: list[Path]) -> list[tuple[Path, dict]]:
    found = []
    for folder in folders:
        if not folder.is_dir():
            raise EproductError(f"{folder} is not a folder. Give the embeddings folders the parts wrote.")
        read_meta(folder)  # a clear error when it is not an embeddings folder
        for path in sorted(folder.glob("part*-of*.json")):
            try:
                found.append((folder, json.loads(path.read_text(encoding="utf-8"))))
            except ValueError as err:
                raise EproductError(f"{path} is not valid JSON ({err}). Re-run that part.") from err
    if not found:
        raise EproductError(
            f"No finished parts in {', '.join(map(str, folders))} (no part*-of*.json markers). "
            "Run `eproduct embed ... --part i/n` for every part first."
        )
    return found


def _check_agreement(markers: list[tuple[Path, dict]]) -> int:
    first_folder, first = markers[0]
    for folder, marker in markers[1:]:
        for key in AGREE:
            if marker.get(key) != first.get(key):
                raise EproductError(
                    f"Parts disagree on {key}: {first.get(key)!r} (part {first['part']} in {first_folder}) vs "
                    f"{marker.get(key)!r} (part {marker['part']} in {folder}). Re-run the parts with the same "
                    "run, catalog, split, kind and --part count."
                )
    parts = int(first["parts"])
    numbers = sorted(int(m["part"]) for _, m in markers)
    repeated = sorted({n for n in numbers if numbers.count(n) > 1})
    if repeated:
        raise EproductError(f"Parts {repeated} appear more than once among the folders; give each part once.")
    missing = sorted(set(range(parts)) - set(numbers))
    if missing:
        raise EproductError(
            f"Parts {missing} of {parts} are missing or unfinished (no marker). Run `eproduct embed ... "
            f"--part {missing[0]}/{parts}` (and the others) to completion, then merge again."
        )
    assigned = sum(int(m["rows"]) for _, m in markers)
    if assigned != int(first["split_rows"]):
        raise EproductError(f"The parts cover {assigned} rows, the split has {first['split_rows']}. Re-run them.")
    return parts


def _part_files(folder: Path, marker: dict) -> list[tuple[Path, Path, list[str]]]:
    files, rows = [], 0
    for name in marker["shards"]:
        vectors, ids = folder / f"vectors-{name}.npy", folder / f"ids-{name}.txt"
        if not vectors.is_file() or not ids.is_file():
            raise EproductError(f"Part {marker['part']} in {folder} lists shard {name}, which is missing. Re-run it.")
        shard_ids = read_ids(ids)
        shape = np.load(vectors, mmap_mode="r", allow_pickle=False).shape
        if shape != (len(shard_ids), int(marker["dim"])):
            raise EproductError(f"Shard {name} in {folder} has shape {shape} for {len(shard_ids)} ids. Re-run it.")
        files.append((vectors, ids, shard_ids))
        rows += len(shard_ids)
    if rows != int(marker["embedded"]):
        raise EproductError(
            f"Part {marker['part']} in {folder} holds {rows} rows, its marker says {marker['embedded']}. Re-run it."
        )
    return files


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def check_parts(folders: list[str | Path]) -> tuple[list[tuple[Path, dict]], list[tuple[Path, dict, list]], int]:
    """Every check of a merge, nothing written: (markers, per part its shard files, embedded ids); `EproductError`
    naming the first problem (a missing, unfinished, repeated or inconsistent part; a missing or repeated id)."""
    markers = sorted(_markers([Path(f) for f in folders]), key=lambda item: int(item[1]["part"]))
    _check_agreement(markers)
    files = [(folder, marker, _part_files(folder, marker)) for folder, marker in markers]
    seen: set[str] = set()
    for folder, marker, shards in files:
        for _, _, ids in shards:
            repeated = seen.intersection(ids)
            if repeated or len(set(ids)) != len(ids):
                example = next(iter(repeated)) if repeated else ids[0]
                raise EproductError(f"Id {example!r} is embedded twice (part {marker['part']} in {folder}).")
            seen.update(ids)
    bad = [path for _, marker, _ in files for path in marker["bad_files"]]
    first = markers[0][1]
    if len(seen) + len(bad) != int(first["split_rows"]):
        raise EproductError(
            f"{len(seen)} embedded ids + {len(bad)} unreadable images != {first['split_rows']} rows of the split."
        )
    return markers, files, len(seen)


def merge_parts(folders: list[str | Path], out: str | Path) -> MergeReport:
    """Check every part (`check_parts`), then write the merged embeddings folder `out` (new or empty)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise EproductError(f"{out} exists and is not empty. Choose a new --out folder.")
    markers, files, rows = check_parts(folders)
    first = markers[0][1]
    parts = int(first["parts"])
    bad = [path for _, marker, _ in files for path in marker["bad_files"]]
    tmp = out.parent / f".{out.name}.merge-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for _, _, shards in files:
            for vector_file, id_file, _ in shards:
                _link_or_copy(vector_file, tmp / vector_file.name)
                _link_or_copy(id_file, tmp / id_file.name)
        meta = {k: v for k, v in read_meta(markers[0][0]).items() if k not in ("format", "version", "kind", "dim")}
        meta.update(parts=1, merged_parts=parts, bad_files=bad)
        write_meta(tmp, str(first["kind"]), int(first["dim"]), **meta)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return MergeReport(out=out, parts=parts, rows=rows, bad_files=len(bad))
