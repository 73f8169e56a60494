"""The sharded LSH index: build it on disk, open it (cheap, memory-mapped), verify it (numpy only).

`build_index` hashes vectors with seeded hyperplanes (lsh.py), writes shards of packed codes, ids
and float16 vectors with a manifest holding their row counts and sha256 checksums (index_format.py
describes the folder), all in a temporary sibling folder swapped into place at the end. `open_index`
checks the manifest, the files and their row counts (not the checksums: `verify_index` does that)
and returns an `Index`; searching it is search.py's job (`search.search(index, queries, settings)`,
`search.explain`). Stored float16 vectors are the rows scaled to unit length (`unit_float16`).
"""

from __future__ import annotations

import datetime as _dt
import logging
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import lsh
from .errors import EproductError
from .index_format import (
    CENTRE,
    FORMAT,
    HYPERPLANES,
    MANIFEST,
    REBUILD,
    VERSION,
    HashingWriter,
    clean_stale,
    fsync_dir,
    fsync_files,
    read_manifest,
    sha256_file,
    shard_files,
    swap_into_place,
    temp_sibling,
    write_manifest,
)
from .index_store import Index
from .progress import CountProgress
from .settings import DEFAULT_BITS, DEFAULT_SHARD_SIZE, MAX_BITS

log = logging.getLogger(__name__)


def _check_build_args(vectors: np.ndarray, ids: Sequence[str], bits: int, shard_size: int) -> None:
    if getattr(vectors, "ndim", 0) != 2 or len(vectors) == 0:
        raise EproductError(f"Index vectors must be a non-empty (rows, dim) matrix; got shape {np.shape(vectors)}.")
    if len(ids) != len(vectors):
        raise EproductError(f"{len(ids)} ids for {len(vectors)} vectors; give one id per vector row.")
    if not 8 <= bits <= MAX_BITS or bits % 8:
        raise EproductError(f"bits must be a multiple of 8 between 8 and {MAX_BITS}; got {bits}.")
    if shard_size < 1:
        raise EproductError(f"shard_size must be at least 1; got {shard_size}.")
    joined = "\n".join(ids)  # one C-speed pass instead of a Python loop per id (1.1M ids: ~1.5 s -> ~0.05 s)
    if "\r" in joined or joined.count("\n") != len(ids) - 1 or not all(ids):
        bad = next(i for i in ids if not i or any(ch in i for ch in "\n\r"))
        raise EproductError(f"Ids must be non-empty and hold no line breaks; bad id: {bad!r}.")


def _write_npy(path: Path, array: np.ndarray, sync: bool = True) -> str:
    writer = HashingWriter(path, sync)
    np.save(writer, array, allow_pickle=False)
    return writer.close()


def unit_float16(block: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Rows scaled to unit length (norms in float64), as float16: only their cosine is ever used, and a unit
    row always fits float16, whereas a raw value beyond its range (65,504) would become inf and the row would
    drop out of every search. Zero rows stay zero (cosine distance 1.0 to anything). Computed `chunk` rows
    at a time, so the float64 temporaries stay in cache."""
    out = np.empty(np.shape(block), dtype=np.float16)
    for start in range(0, len(block), chunk):
        rows = np.asarray(block[start : start + chunk], dtype=np.float64)
        norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
        with np.errstate(divide="ignore", invalid="ignore"):
            out[start : start + chunk] = np.where(norms[:, None] > 0, rows / norms[:, None], 0.0)
    return out


def _write_shard(
    folder: Path,
    name: str,
    block: np.ndarray,
    ids: Sequence[str],
    planes: np.ndarray,
    with_vectors: bool,
    centre: np.ndarray | None,
) -> dict:
    files = shard_files(name)  # fsync deferred to `fsync_files` once every shard is written
    codes = lsh.encode(lsh.centred(block, centre), planes, chunk=len(block))  # one float32 matmul per shard
    digests = {"codes": _write_npy(folder / files["codes"], codes, False)}
    writer = HashingWriter(folder / files["ids"], sync=False)
    writer.write(("\n".join(ids) + "\n").encode("utf-8"))
    digests["ids"] = writer.close()
    if with_vectors:
        digests["vectors"] = _write_npy(folder / files["vectors"], unit_float16(block), False)
    return {
        "name": name,
        "rows": len(ids),
        "files": {role: {"file": files[role], "sha256": digest} for role, digest in digests.items()},
    }


def build_index(
    vectors: np.ndarray,
    ids: Sequence[str] | None,
    out: str | Path,
    *,
    bits: int = DEFAULT_BITS,
    shard_size: int = DEFAULT_SHARD_SIZE,
    seed: int = 0,
    kind: str = "external",
    progress: CountProgress | None = None,
    vectors_fp16: bool = True,
    workers: int = 2,
    centre: bool = False,
) -> Path:
    """Hash `vectors` (rows, dim) into an index folder at `out`, replacing any index there atomically.

    `ids` default to row numbers. `vectors_fp16=False` leaves out the float16 copies (no exact re-rank).
    `workers` threads hash and write shards in parallel. `centre=True` hashes each unit row minus the mean
    of the unit rows (stored as centre.npy, checksummed; queries are shifted the same way, index_store.py):
    embeddings that all lean one way (probabilities, ReLU features) then spread over both sides of every
    hyperplane. Returns `out`.
    """
    out = Path(out)
    ids = [str(i) for i in range(len(vectors))] if ids is None else [str(i) for i in ids]
    _check_build_args(vectors, ids, bits, shard_size)
    if out.exists() and not (out / MANIFEST).is_file() and (not out.is_dir() or any(out.iterdir())):
        raise EproductError(f"{out} exists and is not an index folder; choose another --out or remove it.")
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out)
    tmp = temp_sibling(out, "tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        manifest = _build_into(tmp, vectors, ids, bits, shard_size, seed, kind, progress, vectors_fp16, workers, centre)
        write_manifest_and_sync(tmp, manifest)
        swap_into_place(tmp, out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("built index %s: %d rows, %d shards, %d bits", out, len(ids), len(manifest["shards"]), bits)
    return out


def _build_into(
    folder: Path, vectors, ids, bits, shard_size, seed, kind, progress, with_vectors, workers, centre
) -> dict:
    dim = int(vectors.shape[1])
    planes = lsh.hyperplanes(seed, bits, dim)
    hyper_sha = _write_npy(folder / HYPERPLANES, planes)
    mean = None
    if centre:  # every row is checked before the mean is taken from them (the shards check theirs again)
        for start in range(0, len(ids), shard_size):
            _refuse_bad_rows(vectors[start : start + shard_size], start, ids)
        mean = lsh.unit_mean(vectors)
        centre_sha = _write_npy(folder / CENTRE, mean)
    starts = list(range(0, len(ids), shard_size))
    width = max(5, len(str(len(starts) - 1)))
    done = 0

    def one(number: int) -> dict:
        start = starts[number]
        stop = min(start + shard_size, len(ids))
        block = vectors[start:stop]
        _refuse_bad_rows(block, start, ids)
        return _write_shard(folder, f"{number:0{width}d}", block, ids[start:stop], planes, with_vectors, mean)

    shards, synced = [], []
    # hashing/writing on `workers` threads; one more thread fsyncs finished shards (disk wait, not CPU)
    with ThreadPoolExecutor(max(1, workers)) as pool, ThreadPoolExecutor(1) as syncer:
        for shard in pool.map(one, range(len(starts))):
            shards.append(shard)
            synced.append(syncer.submit(fsync_files, [folder / e["file"] for e in shard["files"].values()]))
            done += shard["rows"]
            if progress is not None:
                progress(done, len(ids))
        for future in synced:
            future.result()  # every shard file is on disk before the manifest is written
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "kind": str(kind),
        "dim": dim,
        "seed": int(seed),
        "bits": int(bits),
        "code_bytes": bits // 8,
        "rows": len(ids),
        "shard_size": int(shard_size),
        "vectors": bool(with_vectors),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "hyperplanes": {"file": HYPERPLANES, "sha256": hyper_sha},
        "shards": shards,
    }
    if mean is not None:
        manifest["centre"] = {"file": CENTRE, "sha256": centre_sha}
    return manifest


def _refuse_bad_rows(block: np.ndarray, start: int, ids: Sequence[str]) -> None:
    """An EproductError naming the first row of `block` (rows from `start`) that hashing cannot take."""
    bad = lsh.first_nonfinite_row(block)
    if bad is not None:
        raise EproductError(
            f"Vector row {start + bad} (id {ids[start + bad]!r}) holds NaN or infinite values; "
            "nothing was written. Re-embed that image (a corrupt file or a diverged model "
            "gives these) or drop the row."
        )
    huge = _first_beyond_float32(block)
    if huge is not None:
        raise EproductError(
            f"Vector row {start + huge} (id {ids[start + huge]!r}) holds values beyond float32's range "
            f"(±{FLOAT32_MAX:.3g}), which hashing cannot represent; nothing was written. Scale the vectors "
            "down (only their direction matters) or drop the row."
        )


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _first_beyond_float32(block: np.ndarray) -> int | None:
    """The first row (of a finite float64 block) with a value float32 would turn into inf, or None."""
    if np.asarray(block).dtype.itemsize <= 4 and np.asarray(block).dtype.kind == "f":
        return None
    bad = np.flatnonzero((np.abs(np.asarray(block, dtype=np.float64)) > FLOAT32_MAX).any(axis=1))
    return int(bad[0]) if len(bad) else None


def write_manifest_and_sync(folder: Path, manifest: dict) -> None:
    write_manifest(folder, manifest)
    fsync_dir(folder)


def build_index_from_embeddings(embeddings: str | Path, out: str | Path, **options) -> Path:
    """Build an index from an embeddings folder (memory-mapped); `options` as for `build_index` (not kind)."""
    from .embeddings import read_embeddings

    emb = read_embeddings(embeddings, mmap=True)
    return build_index(emb.vectors, emb.ids, out, kind=emb.kind, **options)


def open_index(path: str | Path) -> Index:
    """Open an index folder for search; refuses a foreign version, a missing file or a wrong row count."""
    folder = Path(path)
    manifest = read_manifest(folder)
    for problem in _structure_problems(folder, manifest):
        raise EproductError(f"{problem} {REBUILD}")
    return Index(folder, manifest)


def _structure_problems(folder: Path, manifest: dict) -> list[str]:
    """Missing files and row counts that disagree with the manifest (cheap: headers and line counts)."""
    problems = []
    hyper = folder / manifest["hyperplanes"]["file"]
    if not hyper.is_file():
        return [f"{folder}: hyperplanes file {hyper.name} is missing."]
    if "centre" in manifest:
        centre = folder / manifest["centre"]["file"]
        if not centre.is_file():
            return [f"{folder}: centre file {centre.name} is missing (the index was built with --centre). {REBUILD}"]
        try:
            shape = np.load(centre, mmap_mode="r", allow_pickle=False).shape
        except (ValueError, OSError):
            return [f"{folder}: centre file {centre.name} is not a readable .npy file. {REBUILD}"]
        if shape != (manifest["dim"],):
            return [f"{folder}: centre file {centre.name} has shape {shape}; the index's dim is {manifest['dim']}."]
    expected_rows = 0
    for shard in manifest["shards"]:
        for role, entry in shard["files"].items():
            path = folder / entry["file"]
            if not path.is_file():
                problems.append(f"{folder}: shard {shard['name']} is missing its {role} file {path.name}.")
                continue
            rows, width = _count_rows(path, role)
            if rows != shard["rows"]:
                problems.append(
                    f"{folder}: shard {shard['name']} {role} file {path.name} has {rows} rows; "
                    f"the manifest says {shard['rows']}."
                )
            expected = {"codes": manifest["code_bytes"], "vectors": manifest["dim"]}.get(role)
            if expected is not None and width != expected:
                problems.append(
                    f"{folder}: shard {shard['name']} {role} file {path.name} has rows of width {width}; "
                    f"the manifest says {expected}."
                )
        expected_rows += shard["rows"]
    if expected_rows != manifest["rows"]:
        problems.append(f"{folder}: shards hold {expected_rows} rows; the manifest says {manifest['rows']}.")
    return problems


def _count_rows(path: Path, role: str) -> tuple[int, int | None]:
    """(rows, row width) of a shard file from its header (ids: line count, width None); -1 if unreadable."""
    if role == "ids":
        with open(path, "rb") as handle:
            return handle.read().count(b"\n"), None
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError):
        return -1, None
    return (int(array.shape[0]), int(array.shape[1])) if array.ndim == 2 else (-1, None)


def verify_index(path: str | Path) -> list[str]:
    """Every problem with an index folder (manifest, files, row counts, sha256 checksums, the optional HNSW
    graph's file and checksum: ann_graph.verify_graph); [] when sound."""
    from .ann_graph import verify_graph

    folder = Path(path)
    try:
        manifest = read_manifest(folder)
    except EproductError as err:
        return [str(err)]
    problems = _structure_problems(folder, manifest)
    entries = [(manifest["hyperplanes"], "hyperplanes")]
    if "centre" in manifest:
        entries.append((manifest["centre"], "centre"))
    entries += [
        (entry, f"shard {shard['name']} {role}")
        for shard in manifest["shards"]
        for role, entry in shard["files"].items()
    ]
    for entry, what in entries:
        file = folder / entry["file"]
        if file.is_file() and sha256_file(file) != entry["sha256"]:
            problems.append(f"{folder}: {what} file {file.name} fails its sha256 checksum (corrupted or changed).")
    return problems + verify_graph(folder, manifest)
