"""Retrieval quality, side by side: MAR@10 of the seed preset, the best preset and two baselines.

On a Fashion-MNIST catalog and on the synthetic "small" catalog, this script
  1. builds the catalogs (once, under --work),
  2. measures two baselines: raw pixels, and frozen ImageNet-pretrained EfficientNet-Lite0 features,
  3. trains the `seed` preset (ResNet50, 64 px, DHC faithful; --seed-epochs to shorten it) and the
     `best` preset, embeds query and index with `eproduct_core.embed` (all kinds in one pass),
  4. scores MAR@10 by exact cosine top-10 (numpy brute force) with `eproduct_core.metrics.mar_at_k`,
and prints one markdown table (also written to benchmarks/RESULTS-quality.md) with training throughput.

    python benchmarks/quality.py                      # everything (CPU: about an hour on 2 cores)
    python benchmarks/quality.py --seed-epochs 3      # a shorter seed run, said so in the table
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from eproduct_core.catalog import read_catalog
from eproduct_core.config import preset, with_overrides
from eproduct_core.data import CatalogImages, to_float
from eproduct_core.embed import embed_kinds, load_run
from eproduct_core.metrics import mar_at_k

RESULTS = Path(__file__).resolve().parent / "RESULTS-quality.md"
log = logging.getLogger("quality")


def make_catalogs(work: Path, names: list[str]) -> dict[str, Path]:
    catalogs = {}
    if "fashion-mnist" in names:
        path = work / "fashion-mnist"
        if not (path / "groundtruth.csv").is_file():
            from eproduct_core.fashion_mnist import make_fashion_mnist_catalog

            make_fashion_mnist_catalog(path, seed=0, overwrite=True)
        catalogs["fashion-mnist"] = path
    if "synthetic" in names:
        path = work / "synthetic-small"
        if not (path / "groundtruth.csv").is_file():
            from eproduct_core.synthetic import make_synthetic_catalog

            make_synthetic_catalog(path, seed=0, size="small")
        catalogs["synthetic"] = path
    return catalogs


def top10_mar(
    catalog_dir: Path, query: np.ndarray, query_ids: list[str], index: np.ndarray, index_ids: list[str]
) -> float:
    """MAR@10 of exact cosine top-10 (brute force) for every query with true matches."""
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
    return mar_at_k(retrieved, relevant, k=10)


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


def run_preset(name: str, catalog_dir: Path, work: Path, overrides: dict, kinds: list[str]) -> dict:
    """Train a preset (or reuse a finished run) and score each embedding kind."""
    from eproduct_core.train import train

    config = with_overrides(preset(name), overrides)
    run_dir = (
        work
        / "runs"
        / f"{catalog_dir.name}-{name}-{'-'.join(f'{k}{v}' for k, v in sorted(overrides.items())) or 'default'}"
    )
    done = (run_dir / "metrics.jsonl").is_file() and len(
        (run_dir / "metrics.jsonl").read_text().splitlines()
    ) >= config.epochs
    start = time.perf_counter()
    if not done:
        train(config, catalog_dir, run_dir, resume=(run_dir / "checkpoint.pt").is_file())
    seconds = time.perf_counter() - start
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    result = {
        "run": str(run_dir),
        "epochs": config.epochs,
        "backbone": config.backbone,
        "image_size": config.image_size,
        "train_seconds": sum(r["seconds"] for r in records),
        "wall_seconds": seconds,
        "images_per_s": float(np.median([r["images_per_s"] for r in records])),
        "val_acc": records[-1]["val_acc"],
        "mar": {},
    }
    bundle = load_run(run_dir, "cpu")
    query, query_ids = embed_kinds(bundle, catalog_dir, "query", kinds)
    index, index_ids = embed_kinds(bundle, catalog_dir, "index", kinds)
    for kind in kinds:
        result["mar"][kind] = top10_mar(catalog_dir, query[kind], query_ids, index[kind], index_ids)
        log.info("%s %s %s: MAR@10 %.4f", catalog_dir.name, name, kind, result["mar"][kind])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/eproduct-quality", help="folder for catalogs, runs and embeddings")
    parser.add_argument("--catalogs", default="fashion-mnist,synthetic", help="comma list: fashion-mnist, synthetic")
    parser.add_argument(
        "--seed-epochs", type=int, default=None, help="train the seed preset for this many epochs (default: its 12)"
    )
    parser.add_argument("--best-epochs", type=int, default=None, help="override the best preset's epochs")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra config override for both trained presets (e.g. max_train_images=1000)",
    )
    parser.add_argument("--results", default=str(RESULTS), help="markdown file to write the table to")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--skip", default="", help="comma list of rows to skip: raw, pretrained, seed, best")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    skip = set(filter(None, args.skip.split(",")))
    catalogs = make_catalogs(work, args.catalogs.split(","))
    rows = []
    for cname, cdir in catalogs.items():
        for how in ("raw", "pretrained"):
            if how in skip:
                continue
            start = time.perf_counter()
            query, qids = baseline_vectors(
                cdir, "query", how if how == "raw" else "lite0-64", work / "baselines" / cname
            )
            index, iids = baseline_vectors(
                cdir, "index", how if how == "raw" else "lite0-64", work / "baselines" / cname
            )
            label = "raw pixels (32 px)" if how == "raw" else "frozen EfficientNet-Lite0 ImageNet (64 px)"
            rows.append(
                (
                    cname,
                    label,
                    "-",
                    f"{top10_mar(cdir, query, qids, index, iids):.3f}",
                    "-",
                    "-",
                    f"{time.perf_counter() - start:.0f}",
                )
            )
            log.info("%s", rows[-1])
            write_table(rows, args, argv)
        for name, epochs, kinds in (
            ("best", args.best_epochs, ["metric", "seed", "penultimate"]),
            ("seed", args.seed_epochs, ["seed", "seed-3d"]),
        ):
            if name in skip:
                continue
            overrides = {
                "device": "cpu",
                **({"epochs": epochs} if epochs else {}),
                **dict(item.split("=", 1) for item in args.set),
            }
            result = run_preset(name, cdir, work, overrides, kinds)
            for kind, value in result["mar"].items():
                extra = "".join(f", {k}={v}" for k, v in overrides.items() if k not in ("device", "epochs"))
                rows.append(
                    (
                        cname,
                        f"{name} preset ({result['backbone']}, {result['image_size']} px, {result['epochs']} ep{extra})",
                        kind,
                        f"{value:.3f}",
                        f"{result['val_acc']['leaf']:.3f}",
                        f"{result['images_per_s']:.0f}",
                        f"{result['train_seconds']:.0f}",
                    )
                )
                log.info("%s", rows[-1])
                write_table(rows, args, argv)
            write_table(rows, args, argv)
    print(write_table(rows, args, argv))
    return 0


def write_table(rows: list[tuple], args: argparse.Namespace, argv: list[str] | None) -> str:
    """The markdown table of `rows` (written to RESULTS-quality.md after every row, so partial runs count)."""
    header = ("catalog", "model", "embedding", "MAR@10", "val leaf acc", "train images/s", "train s")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]
    command = "python benchmarks/quality.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = "\n".join(
        [
            "# Retrieval quality (MAR@10, exact cosine top-10)",
            "",
            f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, {args.threads} threads, no GPU"
            if not torch.cuda.is_available()
            else f"Machine: {torch.cuda.get_device_name()}",
            "",
            *lines,
            "",
            *(
                [
                    f"Shortened from the presets for this run: {', '.join(notes)} (full: seed 12 epochs, best 3 epochs, all training images)."
                ]
                if (
                    notes := [
                        n
                        for n in (
                            f"seed {args.seed_epochs} epoch(s)" if args.seed_epochs else "",
                            f"best {args.best_epochs} epoch(s)" if args.best_epochs else "",
                            *args.set,
                        )
                        if n
                    ]
                )
                else []
            ),
            "",
            f"Load average when the table was written: {os.getloadavg()[0]:.1f} (the machine is shared; throughput is what we got).",
            "",
            "Training throughput counts training images per second (two augmented views each for the best preset).",
            "",
            f"Rerun: `{command.strip()}`",
            "",
        ]
    )
    Path(getattr(args, "results", RESULTS)).write_text(text, encoding="utf-8")
    return text


if __name__ == "__main__":
    sys.exit(main())
