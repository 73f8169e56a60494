"""A run's cached embeddings of a catalog split, and its cached index of the index split.

Owns `split_embeddings` (embed a catalog split with a training run, or read it back from the run
folder's cache) and `run_index` (build, or reuse, an index of the catalog's index split inside the
run folder). Cache entries live in RUN/cache/embeddings/<split>-<kind>-<key>/ and
RUN/cache/indexes/<kind>-<key>-<bits>b-<shard_size>r-s<seed>/ (an `IndexSpec`); the key hashes the embedding kind,
the split, the catalog (its absolute path and the split CSV's bytes) and the checkpoint (size and
mtime), so a new catalog, an edited CSV or a retrained run never reads stale vectors. Entries are an embeddings folder
(embeddings.py) and an index folder (index.py): JSON/.npy/text, no pickle.

Torch is imported only when something has to be embedded (through embed.py, lazily).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

from . import run_folder
from .config import TrainConfig
from .embeddings import Embeddings, read_embeddings
from .errors import EproductError
from .progress import CountProgress, as_count
from .settings import IndexSpec

log = logging.getLogger(__name__)
INDEX_MIN_BITS = 64  # cached indexes store at least this many bits, so shorter lengths can be swept


def cache_key(run_dir: str | Path, catalog_dir: str | Path, split: str, kind: str) -> str:
    """A short hash naming one (run checkpoint, catalog split, kind) combination."""
    run_dir, catalog_dir = Path(run_dir), Path(catalog_dir)
    checkpoint = run_folder.require_checkpoint(run_dir)
    csv = catalog_dir / f"{split}.csv"
    if not catalog_dir.is_dir():
        raise EproductError(f"Catalog folder {catalog_dir} does not exist. Give the folder holding {split}.csv.")
    if not csv.is_file():
        raise EproductError(f"Catalog {catalog_dir} has no {split}.csv.")
    digest = hashlib.sha256()
    stat = checkpoint.stat()
    for part in (str(catalog_dir.resolve()), split, kind, str(stat.st_size), str(stat.st_mtime_ns)):
        digest.update(part.encode("utf-8") + b"\0")
    digest.update(csv.read_bytes())
    return digest.hexdigest()[:16]


def split_embeddings(
    run_dir: str | Path,
    catalog_dir: str | Path,
    split: str = "query",
    kind: str | None = None,
    *,
    device: str = "auto",
    progress: CountProgress | None = None,
    refresh: bool = False,
) -> Embeddings:
    """Vectors of every image of a catalog split, embedded with the run (cached in RUN/cache/).

    `kind` defaults to the run's preset kind (config.json `embed_kind`).
    """
    run_dir = Path(run_dir)
    kind = kind or run_embed_kind(run_dir)
    folder = run_dir / "cache" / "embeddings" / f"{split}-{kind}-{cache_key(run_dir, catalog_dir, split, kind)}"
    if (folder / "meta.json").is_file() and not refresh:
        log.info("reading cached %s embeddings (%s) from %s", split, kind, folder)
        return read_embeddings(folder)
    from .embed import embed_split  # torch, lazily

    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    embed_split(run_dir, catalog_dir, split, kind, tmp, device=device, progress=as_count(progress))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return read_embeddings(folder)


def run_embed_kind(run_dir: str | Path) -> str:
    """The embedding kind the run's preset is searched with (config.json `embed_kind`)."""
    return run_config(run_dir).embed_kind


def run_config(run_dir: str | Path) -> TrainConfig:
    """The run's resolved TrainConfig (config.json)."""
    return run_folder.read_config(run_dir)


def stored_bits(bits: int, minimum: int = INDEX_MIN_BITS) -> int:
    """The code length an index built for `bits` stores: whole bytes (what the index format holds), at least
    `minimum`."""
    return max(minimum, -(-int(bits) // 8) * 8)


def run_index(
    run_dir: str | Path,
    catalog_dir: str | Path,
    spec: IndexSpec,
    *,
    device: str = "auto",
    progress: CountProgress | None = None,
):
    """An opened index of the catalog's index split embedded with the run, built once into RUN/cache/.

    Built as `spec` says (kind, shard size, hyperplane seed), storing `stored_bits(spec.bits)` bits, so
    any shorter hash length can be searched.
    """
    from .index import build_index, open_index

    stored = stored_bits(spec.bits)
    run_dir = Path(run_dir)
    key = cache_key(run_dir, catalog_dir, "index", spec.kind)
    centred = "-c" if spec.centre else ""
    folder = run_dir / "cache" / "indexes" / f"{spec.kind}-{key}-{stored}b-{spec.shard_size}r-s{spec.seed}{centred}"
    if not (folder / "manifest.json").is_file():
        emb = split_embeddings(run_dir, catalog_dir, "index", spec.kind, device=device, progress=progress)
        build_index(
            emb.vectors,
            emb.ids,
            folder,
            bits=stored,
            shard_size=spec.shard_size,
            seed=spec.seed,
            kind=spec.kind,
            centre=spec.centre,
        )
    return open_index(folder)
