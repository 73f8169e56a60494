"""Retrieval quality, side by side, on photos this project did not make: one markdown table, every method.

Columns: a Fashion-MNIST catalog through the `studio` photo model, the same products through the `field`
photo model (photo_models.py: shares no code or parameters with the training augmentations), and the
synthetic "small" catalog. The two Fashion-MNIST catalogs share one train split, so one training run
serves both. Rows:
  raw pixels; frozen ImageNet EfficientNet-Lite0 at each --frozen-sizes resolution;
  the seed preset from finished faithful runs (--seed-run-fmnist / --seed-run-synth): its `seed`
  embedding by exact cosine and through the real index/search path with the seed's settings (20 bits,
  one table per 8,000 rows, cutoff 0.1); the `best` preset (trained here, or --best-run-* reused) by exact
  cosine; then `best` + each search-side post-processing step (postprocess.py) with its cost in ms/query.
MAR@10 is exact cosine top-10 (numpy brute force) scored by `eproduct_core.metrics.mar_at_k`.

    python benchmarks/quality.py --work /tmp/eq      # makes the catalogs and trains what it needs
    python benchmarks/quality.py --seed-run-fmnist /work/seed/runs/seed-fmnist --seed-run-synth ... \
        --studio /work/seed/fmnist --synth /work/seed/synth
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import logging
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from eproduct_core import postprocess as pp
from eproduct_core.catalog import read_catalog
from eproduct_core.config import preset, with_overrides
from eproduct_core.data import CatalogImages, to_float
from eproduct_core.embed import embed_kinds, load_run
from eproduct_core.metrics import mar_at_k, recalls_at_k
from eproduct_core.tuning import bootstrap_interval

RESULTS = Path(__file__).resolve().parent / "RESULTS-quality.md"
log = logging.getLogger("quality")
COLUMNS = ("studio", "field", "synth")
TRAINING = {"studio": "fmnist", "field": "fmnist", "synth": "synth"}  # the train split each column uses
EXTRA = ("train s (fmnist / synth)", "train images/s (fmnist / synth)", "cost ms/query (studio / field / synth)")


def top10_mar(
    catalog_dir: Path, query: np.ndarray, query_ids: list[str], index: np.ndarray, index_ids: list[str]
) -> float:
    """MAR@10 of exact cosine top-10 (brute force) for every query with true matches."""
    return float(top10_recalls(catalog_dir, query, query_ids, index, index_ids).mean())


def top10_recalls(
    catalog_dir: Path, query: np.ndarray, query_ids: list[str], index: np.ndarray, index_ids: list[str]
) -> np.ndarray:
    """Recall@10 of exact cosine top-10 (brute force) of each query with true matches, in query order."""
    matches = read_catalog(catalog_dir).matches()
    q = query.astype(np.float32)
    x = index.astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True) + 1e-12
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
    retrieved, relevant = [], []
    for start in range(0, len(q), 512):
        sims = q[start : start + 512] @ x.T
        top = np.argsort(-sims, axis=1, kind="stable")[:, :10]
        for row, qid in zip(top, query_ids[start : start + 512], strict=False):
            retrieved.append([index_ids[j] for j in row])
            relevant.append(matches.get(qid, set()))
    values = recalls_at_k(retrieved, relevant, k=10)
    if np.isnan(values).all():
        raise ValueError(f"no query of {catalog_dir} has a true match; MAR@10 is undefined")
    return values[~np.isnan(values)]


def baseline_vectors(
    catalog_dir: Path, split: str, how: str, cache: Path | None = None
) -> tuple[np.ndarray, list[str]]:
    """Raw pixels (32 px, centred), or frozen pretrained EfficientNet-Lite0 features ("lite0-<px>"); cached as .npy."""
    if cache is not None and (cache / f"{how}-{split}.npy").is_file():
        ids = (cache / f"{how}-{split}.txt").read_text(encoding="utf-8").splitlines()
        return np.load(cache / f"{how}-{split}.npy", allow_pickle=False), ids
    vectors, ids = _baseline_vectors(catalog_dir, split, how)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.save(cache / f"{how}-{split}.npy", vectors, allow_pickle=False)
        (cache / f"{how}-{split}.txt").write_text("\n".join(ids) + "\n", encoding="utf-8")
    return vectors, ids


def frozen_vectors(catalog_dir: Path, split: str, size: int, cache: Path | None = None) -> tuple[np.ndarray, list[str]]:
    """Frozen ImageNet EfficientNet-Lite0 pooled features at `size` px (cached)."""
    return baseline_vectors(catalog_dir, split, f"lite0-{size}", cache)


def _baseline_vectors(catalog_dir: Path, split: str, how: str) -> tuple[np.ndarray, list[str]]:
    catalog = read_catalog(catalog_dir)
    frame = catalog.split(split)
    size = 32 if how == "raw" else int(how.split("-")[1])
    dataset = CatalogImages(catalog, frame, size)
    loader = torch.utils.data.DataLoader(dataset, batch_size=128)
    model = None
    if how != "raw":
        from eproduct_core.backbones import build_backbone

        backbone = build_backbone("efficientnet-lite0", "imagenet", size)
        model = backbone.module.eval()
        mean, std = torch.tensor(backbone.mean).view(1, 3, 1, 1), torch.tensor(backbone.std).view(1, 3, 1, 1)
    blocks = []
    with torch.inference_mode():
        for images, _, _ in loader:
            batch = to_float(images)
            if model is None:
                flat = batch.flatten(1)
                blocks.append((flat - flat.mean(dim=1, keepdim=True)).numpy())
            else:
                blocks.append(model((batch - mean) / std).numpy())
    return np.concatenate(blocks), frame["image_id"].tolist()


def make_catalogs(work: Path, given: dict[str, str | None]) -> dict[str, Path]:
    """The three catalog folders: given ones as they are, the others made once under `work`."""
    from eproduct_core.fashion_mnist import make_fashion_mnist_catalog
    from eproduct_core.synthetic import make_synthetic_catalog

    catalogs = {}
    for name in COLUMNS:
        path = Path(given[name]) if given.get(name) else work / f"catalog-{name}"
        if not (path / "groundtruth.csv").is_file():
            if name == "synth":
                make_synthetic_catalog(path, seed=0, size="small", overwrite=True)
            else:
                make_fashion_mnist_catalog(path, seed=0, overwrite=True, photo_model=name)
        catalogs[name] = path
    if (catalogs["studio"] / "train.csv").read_bytes() != (catalogs["field"] / "train.csv").read_bytes():
        raise SystemExit("The studio and field catalogs must share one train split (same seed and options).")
    return catalogs


def run_stats(run_dir: Path) -> dict:
    """Training seconds, median images/s, epochs and config of a finished run folder."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return {
        "train_s": sum(r["seconds"] for r in records),
        "images_per_s": float(np.median([r["images_per_s"] for r in records])),
        "epochs": len(records),
        "config": json.loads((run_dir / "config.json").read_text()),
    }


def trained_run(name: str, split: str, catalog: Path, work: Path, given: str | None, overrides: dict) -> Path:
    """A finished run folder of preset `name` on `catalog`: `given`, or trained (or resumed) under `work`."""
    if given:
        return Path(given)
    from eproduct_core.train import train

    config = with_overrides(preset(name), {"device": "cpu", **overrides})
    run_dir = work / "runs" / f"{split}-{name}"
    metrics = run_dir / "metrics.jsonl"
    if not (metrics.is_file() and len(metrics.read_text().splitlines()) >= config.epochs):
        train(config, catalog, run_dir, resume=(run_dir / "checkpoint.pt").is_file())
    return run_dir


def search_mar(catalog_dir: Path, query, qids, index, iids, folder: Path) -> float:
    """MAR@10 through the real index/search path with the seed's settings (20 bits, 8,000/shard, cutoff 0.1)."""
    from eproduct_core.index import build_index, open_index
    from eproduct_core.search import search
    from eproduct_core.settings import SEED_INDEX, SEED_SETTINGS

    stored = -(-SEED_INDEX.bits // 8) * 8  # the index stores whole bytes; the search reads the 20-bit prefix
    built = build_index(
        index.astype(np.float32), iids, folder, bits=stored, shard_size=SEED_INDEX.shard_size, kind="seed"
    )
    opened = open_index(built)
    queries = query.astype(np.float32)
    if "settings" in inspect.signature(search).parameters:  # the settings-object API
        found = search(opened, queries, SEED_SETTINGS)
    else:
        found = search(opened, queries, bits=20, mode="cutoff", k=10, cutoff=0.1, rerank=0)
    matches = read_catalog(catalog_dir).matches()
    return mar_at_k([list(r.ids)[:10] for r in found], [matches.get(q, set()) for q in qids], k=10)


POST_STEPS = {
    "whiten": "+ PCA-whitening (fitted on the index)",
    "qe": "+ alpha-QE (k 2, alpha 3)",
    "dba": "+ DBA (k 2, alpha 3; index side, once per index)",
    "dba+qe": "+ DBA + alpha-QE",
    "krr": "+ k-reciprocal re-ranking of the top 100 (k1 20, k2 6, lambda 0.3)",
}


def post_mar(step: str, catalog_dir: Path, query, qids, index, iids) -> tuple[float, float]:
    """(MAR@10, ms per query) of exact cosine search after one post-processing step."""
    start = time.perf_counter()
    q, x = pp.normalize(query), pp.normalize(index)
    if step == "krr":
        rows, _ = pp.k_reciprocal_rerank(q, x, top=100)
        ms = (time.perf_counter() - start) * 1000 / max(1, len(q))
        matches = read_catalog(catalog_dir).matches()
        retrieved = [[iids[j] for j in row[:10]] for row in rows]
        return mar_at_k(retrieved, [matches.get(qid, set()) for qid in qids], k=10), ms
    if step == "whiten":
        mean, projection = pp.fit_whitening(x)
        q, x = pp.apply_whitening(q, mean, projection), pp.apply_whitening(x, mean, projection)
    if "dba" in step:
        x = pp.database_augmentation(x, k=2)
    if "qe" in step:
        q = pp.query_expansion(q, x, k=2)
    ms = (time.perf_counter() - start) * 1000 / max(1, len(q))
    return top10_mar(catalog_dir, q, qids, x, iids), ms


SEARCH_POST = {
    "": {},
    " + whiten": {"whiten": True},
    " + query_expansion 2": {"query_expansion": 2},
    " + dba 2 (local to the top 100)": {"dba": 2},
    " + kreciprocal": {"kreciprocal": True},
}


def search_post_mar(
    catalog_dir: Path, query, qids, index, iids, folder: Path, changes: dict
) -> tuple[float, float, np.ndarray]:
    """(MAR@10, ms/query, each query's recall@10 in query order, queries without a match left out) through a real
    256-bit index and search.search with post-processing `changes`."""
    from eproduct_core.index import build_index, open_index
    from eproduct_core.search import search
    from eproduct_core.settings import SearchSettings

    folder = folder / hashlib.sha256(np.ascontiguousarray(index).tobytes()).hexdigest()[:12]  # these vectors' own
    if not (folder / "manifest.json").is_file():  # (a --work reused with another run must not read its index)
        build_index(index.astype(np.float32), iids, folder, bits=256, kind="external")
    opened = open_index(folder)
    settings = SearchSettings(k=10, rerank=100, **changes)
    search(opened, query[:2].astype(np.float32), settings)  # warm: kernels, vectors, a whitening
    start = time.perf_counter()
    found = search(opened, query.astype(np.float32), settings)
    ms = (time.perf_counter() - start) * 1000 / max(1, len(query))
    matches = read_catalog(catalog_dir).matches()
    retrieved, relevant = [list(r.ids) for r in found], [matches.get(q, set()) for q in qids]
    recalls = recalls_at_k(retrieved, relevant, k=10)
    return mar_at_k(retrieved, relevant, k=10), ms, recalls[~np.isnan(recalls)]


class Table:
    """MAR@10 per row and column, plus notes; written to --results after every cell (partial runs count)."""

    def __init__(self, args: argparse.Namespace, argv: list[str] | None) -> None:
        self.args, self.argv = args, argv
        self.rows: dict[str, dict[str, str]] = {}
        self.notes: list[str] = []
        self.paired: dict[str, dict[str, str]] = defaultdict(dict)  # search post step -> column -> difference

    def set(self, row: str, column: str, value: str) -> None:
        self.rows.setdefault(row, {})[column] = value
        self.write()

    def part(self, row: str, column: str, slot: int, slots: int, value: str) -> None:
        """Fill one slot of an 'a / b' cell."""
        cell = self.rows.setdefault(row, {}).get(column, " / ".join("-" * slots)).split(" / ")
        cell[slot] = value
        self.set(row, column, " / ".join(cell))

    def text(self) -> str:
        header = ["method", *COLUMNS, *EXTRA]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row, cells in self.rows.items():
            lines.append(f"| {row} | " + " | ".join(cells.get(c, "not run") for c in header[1:]) + " |")
        command = "python benchmarks/quality.py " + " ".join(self.argv if self.argv is not None else sys.argv[1:])
        machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
        return "\n".join(
            [
                "# Retrieval quality (MAR@10; exact cosine top-10 unless the row says otherwise)",
                "",
                f"Machine: {machine}, {self.args.threads} threads, no GPU. Load average when written: "
                f"{os.getloadavg()[0]:.1f} (a shared machine: throughput is what we got).",
                "",
                "Columns: studio = Fashion-MNIST test products through the catalog's mild photo model; field = the "
                "same products through the independent field photo model (product colour, textured backdrops, "
                "mirror, rotation, perspective, occluders, low resolution, strong JPEG); synth = the synthetic "
                "small catalog. `not run` = not measured in this run (see the notes).",
                "",
                *lines,
                "",
                *self.paired_lines(),
                *[f"- {note}" for note in self.notes],
                "",
                f"Rerun: `{command.strip()}`",
                "",
            ]
        )

    def paired_lines(self) -> list[str]:
        """Each post-processing step through the index against the same search without it, on the same queries:
        the MAR@10 difference and its 90% paired bootstrap interval (one that holds 0: not told from noise)."""
        if not self.paired:
            return []
        lines = ["| via index + search.search, paired on the same queries | " + " | ".join(COLUMNS) + " |"]
        lines.append("|" + "---|" * (len(COLUMNS) + 1))
        for step, cells in self.paired.items():
            lines.append(f"| {step} - none | " + " | ".join(cells.get(c, "not run") for c in COLUMNS) + " |")
        return [*lines, ""]

    def write(self) -> None:
        Path(self.args.results).write_text(self.text(), encoding="utf-8")


def embed_columns(
    run_dir: Path, catalogs: dict[str, Path], columns: list[str], kinds: list[str], tta: str | None = None
) -> dict:
    """{column: (query vectors by kind, query ids, index vectors by kind, index ids)} with a run's model
    (test-time augmentation `tta`, None: the run's own `embed_tta`)."""
    bundle = load_run(run_dir, "cpu")
    out = {}
    for column in columns:
        query, qids = embed_kinds(bundle, catalogs[column], "query", kinds, tta=tta)
        index, iids = embed_kinds(bundle, catalogs[column], "index", kinds, tta=tta)
        out[column] = (query, qids, index, iids)
        log.info("embedded %s with %s", column, run_dir)
    return out


def baselines(table: Table, catalogs: dict[str, Path], columns: list[str], work: Path, sizes: list[int], skip):
    for column in columns:
        cdir = catalogs[column]
        cache = work / "baselines" / column
        hows = ([] if "raw" in skip else ["raw"]) + ([] if "frozen" in skip else [f"lite0-{s}" for s in sizes])
        for how in hows:
            q, qids = baseline_vectors(cdir, "query", how, cache)
            x, iids = baseline_vectors(cdir, "index", how, cache)
            label = "raw pixels (32 px)" if how == "raw" else f"frozen EfficientNet-Lite0 ImageNet, {how[6:]} px"
            table.set(label, column, f"{top10_mar(cdir, q, qids, x, iids):.3f}")


def seed_rows(table: Table, catalogs, columns, work: Path, given: dict[str, str | None]) -> None:
    for split, run in given.items():
        cols = [c for c in columns if TRAINING[c] == split]
        if not cols:
            continue
        if not run or not (Path(run) / "checkpoint.pt").is_file():
            table.notes.append(f"seed preset on {split}: no finished faithful run given (--seed-run-{split}): not run.")
            continue
        stats = run_stats(Path(run))
        config = stats["config"]
        done = (
            f"{stats['epochs']} epochs"
            if stats["epochs"] >= config["epochs"]
            else (f"UNFINISHED: {stats['epochs']} of {config['epochs']} epochs")
        )
        faithful = "faithful" if config["preset"] == "seed" else f"NOT the seed preset: {config['preset']}"
        label = f"seed preset, {faithful} ({config['backbone']}, {config['image_size']} px, {done})"
        slot = 0 if split == "fmnist" else 1
        for column, (query, qids, index, iids) in embed_columns(Path(run), catalogs, cols, ["seed"]).items():
            cdir = catalogs[column]
            table.set(f"{label}, `seed`", column, f"{top10_mar(cdir, query['seed'], qids, index['seed'], iids):.3f}")
            mar = search_mar(cdir, query["seed"], qids, index["seed"], iids, work / "seed-index" / column)
            table.set(f"{label}, `seed`, seed search (20 bits, cutoff 0.1, index + search)", column, f"{mar:.3f}")
        table.part(f"{label}, `seed`", EXTRA[0], slot, 2, f"{stats['train_s']:.0f}")
        table.part(f"{label}, `seed`", EXTRA[1], slot, 2, f"{stats['images_per_s']:.1f}")
        table.notes.append(
            f"seed preset on {split}: the run {run} ({config['preset']} preset, {stats['epochs']} of {config['epochs']} epochs, "
            f"trained on the {split} train split, {'shared by the studio and field columns' if split == 'fmnist' else 'synth'})."
        )


def best_rows(
    table: Table, catalogs, columns, work: Path, given: dict[str, str | None], overrides: dict, skip, ttas: list[str]
):
    """A best row per test-time augmentation in `ttas` (the run's own when empty); post-processing on the last."""
    for split, run in given.items():
        cols = [c for c in columns if TRAINING[c] == split]
        if not cols:
            continue
        run_dir = trained_run("best", split, catalogs[cols[0]], work, run, overrides)
        stats = run_stats(run_dir)
        config = stats["config"]
        kind = config["embed_kind"]
        images = config.get("max_train_images") or "all"
        slot = 0 if split == "fmnist" else 1
        for tta in ttas or [config.get("embed_tta", "none")]:
            title = ", title head" if config.get("title_weight") else ""
            label = (
                f"best preset ({config['backbone']}, {config['image_size']} px, {stats['epochs']} ep on {images} "
                f"train images, {config.get('augment')} augment{title}, test-time {tta}), `{kind}`"
            )
            table.part(label, EXTRA[0], slot, 2, f"{stats['train_s']:.0f}")
            table.part(label, EXTRA[1], slot, 2, f"{stats['images_per_s']:.1f}")
            embedded = embed_columns(run_dir, catalogs, cols, [kind], tta)
            for column, (query, qids, index, iids) in embedded.items():
                table.set(label, column, f"{top10_mar(catalogs[column], query[kind], qids, index[kind], iids):.3f}")
        for column, (query, qids, index, iids) in embedded.items():
            cdir = catalogs[column]
            if "post" in skip:
                continue
            for step, step_label in POST_STEPS.items():
                mar, ms = post_mar(step, cdir, query[kind], qids, index[kind], iids)
                table.set(f"best {step_label}", column, f"{mar:.3f}")
                table.part(f"best {step_label}", EXTRA[2], COLUMNS.index(column), 3, f"{ms:.2f}")
            folder = work / "best-index" / column
            plain = None
            for name, changes in SEARCH_POST.items():
                mar, ms, recalls = search_post_mar(cdir, query[kind], qids, index[kind], iids, folder, changes)
                row = f"best via index + search.search (256 bits, re-rank 100){name}"
                table.set(row, column, f"{mar:.3f}")
                table.part(row, EXTRA[2], COLUMNS.index(column), 3, f"{ms:.2f}")
                if plain is None:
                    plain = recalls
                    continue
                low, high = bootstrap_interval(recalls - plain)
                table.paired[name.strip(" +")][column] = f"{(recalls - plain).mean():+.3f} ({low:+.3f} to {high:+.3f})"
        table.notes.append(f"best on {split}: run {run_dir} (config overrides: {overrides or 'none'}).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/eproduct-quality", help="folder for catalogs, runs and embeddings")
    for name in COLUMNS:
        parser.add_argument(f"--{name}", metavar="DIR", help=f"an existing {name} catalog (else made under --work)")
    for split in ("fmnist", "synth"):
        parser.add_argument(
            f"--seed-run-{split}", metavar="DIR", help=f"finished faithful seed run ({split} train split)"
        )
        parser.add_argument(
            f"--best-run-{split}", metavar="DIR", help=f"reuse a finished best run ({split} train split)"
        )
    parser.add_argument("--best-splits", default="fmnist,synth", help="train splits to give a best row (fmnist, synth)")
    parser.add_argument(
        "--frozen-sizes", default="64,96,128,224", help="frozen Lite0 input sizes (default 64,96,128,224)"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for the best preset")
    parser.add_argument(
        "--best-tta",
        default="",
        help="comma list of test-time augmentations (none, flip, multicrop) for best rows (default: the run's)",
    )
    parser.add_argument("--columns", default=",".join(COLUMNS), help="comma list of columns to measure")
    parser.add_argument("--skip", default="", help="comma list of rows to skip: raw, frozen, seed, best, post")
    parser.add_argument("--results", default=str(RESULTS), help="markdown file to write the table to")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    skip = set(filter(None, args.skip.split(",")))
    columns = [c for c in args.columns.split(",") if c]
    catalogs = make_catalogs(work, {"studio": args.studio, "field": args.field, "synth": args.synth})
    table = Table(args, argv)
    sizes = [int(s) for s in args.frozen_sizes.split(",") if s]
    baselines(table, catalogs, columns, work, sizes, skip)
    if "seed" not in skip:
        seed_rows(table, catalogs, columns, work, {"fmnist": args.seed_run_fmnist, "synth": args.seed_run_synth})
    if "best" not in skip:
        overrides = dict(item.split("=", 1) for item in args.set)
        given = {"fmnist": args.best_run_fmnist, "synth": args.best_run_synth}
        wanted = set(args.best_splits.split(","))
        for split in sorted(set(given) - wanted):
            table.notes.append(f"best on {split}: not run (left out with --best-splits).")
        given = {split: run for split, run in given.items() if split in wanted}
        ttas = [t for t in args.best_tta.split(",") if t]
        best_rows(table, catalogs, columns, work, given, overrides, skip, ttas)
    table.write()
    print(table.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
