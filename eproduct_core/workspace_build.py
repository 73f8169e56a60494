"""The steps that fill a demo workspace folder: catalog -> training run -> embeddings -> indexes.

`populate(folder, ...)` runs them into `folder` (a temporary folder that `workspace.build_demo` renames
into place once finished) and returns the workspace.json fields describing what it made. Torch is
imported only here, lazily, and only for training and embedding.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np

from .errors import EproductError
from .progress import Progress

log = logging.getLogger(__name__)

# Share of the whole build each step takes on the progress bar (catalog, train, embed, index).
STEPS = {"catalog": (0.0, 0.1), "train": (0.1, 0.75), "embed": (0.75, 0.95), "index": (0.95, 1.0)}
EMBED_BATCH = 128  # images per forward pass when embedding a split
FASHION_MNIST = "fashion-mnist"  # `catalog=` value that writes the Fashion-MNIST catalog instead of copying one


def _span(progress: Progress, step: str) -> Progress:
    """A progress callback for one step, mapped onto its share of the whole bar."""
    low, high = STEPS[step]

    def report(fraction: float, message: str) -> None:
        progress(low + (high - low) * min(max(float(fraction), 0.0), 1.0), message)

    return report


def offered_kinds(config) -> list[str]:
    """The embedding kinds the demo embeds from a run of `config`: seed and/or metric (by its heads), and the
    preset's own `embed_kind` (indexed as the better default)."""
    kinds = []
    if config.dhc:
        kinds.append("seed")
    if config.metric:
        kinds.append("metric")
    if config.embed_kind not in kinds:
        kinds.append(config.embed_kind)
    return kinds


def embed_catalog_split(bundle, catalog_dir: Path, split: str, kinds: list[str], out_root: Path) -> dict[str, dict]:
    """Embed a catalog split once for all `kinds` (one forward pass) into `out_root/<kind>-<split>/`."""
    from .embed import embed_kinds
    from .embeddings import write_meta, write_shard

    vectors, ids = embed_kinds(bundle, catalog_dir, split, kinds, batch_size=EMBED_BATCH)
    made = {}
    for kind in kinds:
        name = f"{kind}-{split}"
        write_meta(out_root / name, kind=kind, dim=int(vectors[kind].shape[1]), split=split)
        write_shard(out_root / name, "00000", vectors[kind], ids)
        made[name] = {"kind": kind, "split": split}
    return made


def populate(
    folder: Path,
    *,
    preset: str = "fast-demo",
    progress: Progress | None = None,
    size: str = "small",
    seed: int = 0,
    train_overrides: dict | None = None,
    catalog: str | Path | None = None,
) -> dict:
    """Build a catalog, a run, embeddings and indexes into `folder`; return workspace.json fields.

    `catalog`: None draws a synthetic catalog of `size`; "fashion-mnist" writes the Fashion-MNIST one;
    a folder is copied (a user's own catalog).
    """
    from .catalog import read_catalog
    from .config import preset as get_preset
    from .config import with_overrides
    from .index import build_index
    from .run_cache import stored_bits
    from .settings import SEED_INDEX, SEED_SETTINGS
    from .synthetic import make_synthetic_catalog
    from .workspace import index_entry

    report = progress or (lambda fraction, message: None)
    started = time.monotonic()
    config = with_overrides(get_preset(preset), dict(train_overrides or {}))
    folder = Path(folder)

    catalog_report = _span(report, "catalog")
    if catalog == FASHION_MNIST:
        from .fashion_mnist import make_fashion_mnist_catalog

        catalog_report(0.0, "Writing the Fashion-MNIST catalog")
        make_fashion_mnist_catalog(
            folder / "catalog",
            seed=seed,
            progress=lambda done, total: catalog_report(done / max(total, 1), f"Writing catalog images {done}/{total}"),
        )
        source = "Fashion-MNIST"
    elif catalog is not None:
        catalog_report(0.0, f"Copying catalog {catalog}")
        read_catalog(catalog)  # refuses a missing or incomplete folder, naming it (not the copy)
        shutil.copytree(catalog, folder / "catalog")
        source = f"catalog copied from {Path(catalog).name}"
    else:
        catalog_report(0.0, f"Drawing a synthetic '{size}' catalog")
        make_synthetic_catalog(
            folder / "catalog",
            seed=seed,
            size=size,
            progress=lambda done, total: catalog_report(done / max(total, 1), f"Drawing catalog images {done}/{total}"),
        )
        source = f"synthetic {size}"
    read_catalog(folder / "catalog")  # refuses a malformed catalog before training on it

    run_name = config.preset
    _train(config, folder / "catalog", folder / "runs" / run_name, _span(report, "train"))

    from .embed import load_run

    bundle = load_run(folder / "runs" / run_name, device="cpu")
    kinds = offered_kinds(config)
    embed_report = _span(report, "embed")
    embeddings: dict[str, dict] = {}
    for number, split in enumerate(("index", "query")):
        embed_report(number / 2, f"Embedding the {split} images ({', '.join(kinds)})")
        made = embed_catalog_split(bundle, folder / "catalog", split, kinds, folder / "embeddings")
        embeddings.update({name: {**info, "run": run_name} for name, info in made.items()})

    from .embeddings import read_embeddings

    index_report = _span(report, "index")
    plans = []  # (IndexSpec, SearchSettings) of each index to build
    if "seed" in kinds:
        plans.append((SEED_INDEX.replace(seed=seed), SEED_SETTINGS))
    better_kind = config.index.kind if config.index.kind in kinds else kinds[-1]
    better = (config.index.replace(kind=better_kind, seed=seed), config.search)
    if better not in plans:
        plans.append(better)
    indexes: dict[str, dict] = {}
    for number, (spec, settings) in enumerate(plans):
        name = f"{spec.kind}-{spec.bits}bit"
        index_report(number / len(plans), f"Building index {name}")
        stored = read_embeddings(folder / "embeddings" / f"{spec.kind}-index")
        spec = spec.replace(bits=stored_bits(spec.bits, minimum=8))  # whole bytes; search uses the prefix
        build_index(
            np.asarray(stored.vectors, dtype=np.float32),
            stored.ids,
            folder / "indexes" / name,
            bits=spec.bits,
            shard_size=spec.shard_size,
            seed=spec.seed,
            centre=spec.centre,
            kind=spec.kind,
        )
        label = "seed settings" if settings == SEED_SETTINGS else "better default"
        indexes[name] = index_entry(spec, settings, embeddings=f"{spec.kind}-index", run=run_name, label=label)
    seconds = time.monotonic() - started
    log.info("demo workspace built in %.1f s", seconds)
    return {
        "title": f"{source} · {config.preset}",
        "preset": config.preset,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(seconds, 1),
        "runs": [run_name],
        "embeddings": embeddings,
        "indexes": indexes,
        "default_index": list(indexes)[-1],
    }


def _train(config, catalog_dir: Path, out: Path, report: Progress) -> None:
    from .train import train

    report(0.0, f"Training {config.backbone} ({config.epochs} epochs)")
    try:
        train(config, catalog_dir, out, resume=False, progress=report)
    except EproductError:
        raise
    except OSError as err:
        raise EproductError(f"Training the demo model failed reading or writing files ({err}).") from err
