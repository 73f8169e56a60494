"""Quick ablations of a preset's levers, one at a time, scored on held-out photo models.

Each variant is the `best` preset (or --preset) with a few `key=value` overrides, trained briefly (default: 1 epoch on
1,000 training images) on one Fashion-MNIST train split and scored by MAR@10 (exact cosine top-10) on the
query/index photos of the catalogs given (e.g. the studio and the field photo model, which share that
train split). Frozen EfficientNet-Lite0 at the same resolution is measured in the same run. Prints one
markdown table, then each later variant's difference from the first on the same queries with its 90% paired
bootstrap interval; runs and embeddings go under --work (a finished run is reused).

    python benchmarks/ablation.py --train /tmp/fm-studio --eval studio=/tmp/fm-studio,field=/tmp/fm-field \\
        --variant base: --variant res96:image_size=96 --variant supcon:instance_loss=supcon
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import frozen_vectors, top10_mar, top10_recalls  # noqa: E402

from eproduct_core.config import preset, with_overrides  # noqa: E402
from eproduct_core.embed import embed_kinds, load_run  # noqa: E402
from eproduct_core.tuning import bootstrap_interval  # noqa: E402

log = logging.getLogger("ablation")


def run_variant(
    name: str,
    overrides: dict,
    train_catalog: Path,
    evals: dict[str, Path],
    work: Path,
    tta: str,
    base: str = "best",
    device: str = "cpu",
) -> tuple[dict[str, float | str], dict[str, np.ndarray]]:
    """(the table row's figures, each catalog/kind's per-query recall@10) of one variant, trained unless finished."""
    from eproduct_core.train import train

    config = with_overrides(preset(base), overrides)
    run_dir = work / "runs" / name
    metrics = run_dir / "metrics.jsonl"
    if not (metrics.is_file() and len(metrics.read_text().splitlines()) >= config.epochs):
        train(config, train_catalog, run_dir, resume=(run_dir / "checkpoint.pt").is_file())
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    row: dict[str, float | str] = {
        "train_s": sum(r["seconds"] for r in records),
        "images_per_s": float(np.median([r["images_per_s"] for r in records])),
    }
    bundle = load_run(run_dir, device)
    recalls = {}
    for cname, cdir in evals.items():
        query, qids = embed_kinds(bundle, cdir, "query", ["penultimate", "metric"], tta=tta)
        index, iids = embed_kinds(bundle, cdir, "index", ["penultimate", "metric"], tta=tta)
        for kind in ("penultimate", "metric"):
            recalls[f"{cname}/{kind}"] = top10_recalls(cdir, query[kind], qids, index[kind], iids)
            row[f"{cname}/{kind}"] = float(recalls[f"{cname}/{kind}"].mean())
        log.info("%s %s: %s", name, cname, row)
    return row, recalls


def paired_lines(recalls: dict[str, dict[str, np.ndarray]]) -> list[str]:
    """Each later variant against the first, per catalog/kind: the MAR@10 difference on the same queries and its
    90% paired bootstrap interval (an interval that holds 0 is a difference the queries cannot tell from noise)."""
    names = list(recalls)
    lines = []
    for name in names[1:]:
        cells = []
        for key, base in recalls[names[0]].items():
            difference = recalls[name][key] - base
            low, high = bootstrap_interval(difference)
            cells.append(f"{key} {difference.mean():+.3f} ({low:+.3f} to {high:+.3f})")
        lines.append(f"| {name} - {names[0]} | {' / '.join(cells)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True, help="catalog folder to train on")
    parser.add_argument("--eval", required=True, help="comma list NAME=CATALOG to score on")
    parser.add_argument("--work", default="/tmp/eproduct-ablation")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME:key=value,key=value (repeatable; '+' separates a list value's items)",
    )
    parser.add_argument("--set", action="append", default=["max_train_images=1000", "epochs=1"], help="for all")
    parser.add_argument("--frozen", default="64", help="comma list of frozen Lite0 resolutions to measure")
    parser.add_argument("--tta", default="none", choices=["none", "flip", "multicrop"])
    parser.add_argument("--preset", default="best", help="the preset the variants start from (best, fast-demo)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="trains and embeds there")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    evals = {k: Path(v) for k, v in (item.split("=", 1) for item in args.eval.split(","))}
    common = dict(item.split("=", 1) for item in args.set)
    lines = []
    recalls: dict[str, dict[str, np.ndarray]] = {}
    for size in filter(None, args.frozen.split(",")):
        cells = []
        for cname, cdir in evals.items():
            q, qids = frozen_vectors(cdir, "query", int(size), work / "frozen" / cname)
            x, iids = frozen_vectors(cdir, "index", int(size), work / "frozen" / cname)
            cells.append(f"{cname} {top10_mar(cdir, q, qids, x, iids):.3f}")
        lines.append(f"| frozen Lite0 {size} px | - | {' / '.join(cells)} | - | - | - |")
        print(lines[-1], flush=True)
    for spec in args.variant:
        name, _, body = spec.partition(":")
        # a value's own list separator is "+" (augment_families=affine+rotate), as "," separates the overrides
        changes = {k: v.replace("+", ",") for k, v in (kv.split("=", 1) for kv in body.split(",") if kv)}
        overrides = {"device": args.device, **common, **changes}
        start = time.perf_counter()
        row, recalls[name] = run_variant(
            name, overrides, Path(args.train), evals, work, args.tta, args.preset, args.device
        )
        cells = " / ".join(f"{k} {v:.3f}" for k, v in row.items() if "/" in k)
        wall = time.perf_counter() - start
        lines.append(
            f"| {name} | {body or '(preset)'} | {cells} | {row['train_s']:.0f} | {row['images_per_s']:.1f} | {wall:.0f} |"
        )
        print(lines[-1], flush=True)
    print("\n| variant | overrides | MAR@10 | train s | images/s | wall s (train + embed) |\n|---|---|---|---|---|---|")
    print("\n".join(lines))
    if len(recalls) > 1:
        print("\n| paired on the same queries | MAR@10 difference (90% bootstrap interval) |\n|---|---|")
        print("\n".join(paired_lines(recalls)))
    print(
        f"\nload average {os.getloadavg()[0]:.1f}; preset {args.preset}; common: {common}, tta {args.tta}; "
        f"device {args.device} ({torch.cuda.get_device_name() if args.device == 'cuda' else platform.processor() or platform.machine()})"
    )
    print("Rerun: `python benchmarks/ablation.py " + shlex.join(argv if argv is not None else sys.argv[1:]) + "`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
