"""Which of the field camera's distortions costs retrieval most: one markdown table, one trained run.

The field photo model (eproduct_core/photo_models.py) stacks ten steps: a colour per product, a textured backdrop,
mirror, rotation, scale and placement, perspective, light, an occluder, a low-resolution capture and a strong JPEG.
This script writes the same Fashion-MNIST catalog (same products, same views, same random draws) once with the
full camera and once per step left out (`--mode without`: what solving that step alone would be worth) or with
only that step kept (`--mode only`: what that step alone costs), embeds each with a trained run (its penultimate
features, with its test-time average) and with frozen ImageNet EfficientNet-Lite0, and prints MAR@10 (exact cosine
top-10) with each variant's difference from the full camera on the same queries and its 90% paired bootstrap
interval. Catalogs and frozen embeddings go under --work (a finished one is reused).

    python benchmarks/field_breakdown.py --run RUN --work /work/q/breakdown --mode without
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

from quality import frozen_vectors, top10_recalls  # noqa: E402

from eproduct_core.embed import embed_kinds, load_run  # noqa: E402
from eproduct_core.fashion_mnist import make_fashion_mnist_catalog  # noqa: E402
from eproduct_core.photo_models import FIELD_STEPS  # noqa: E402
from eproduct_core.tuning import bootstrap_interval  # noqa: E402

log = logging.getLogger("field_breakdown")


def variants(mode: str, steps: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """{row name: the steps left out}: the full camera first, then one row per step, then the bare item."""
    rows: dict[str, tuple[str, ...]] = {"full field camera": ()}
    for step in steps:
        if mode in ("without", "both"):
            rows[f"without {step}"] = (step,)
        if mode in ("only", "both"):
            rows[f"only {step}"] = tuple(s for s in FIELD_STEPS if s != step)
    rows["no step (the bare item, grey on black)"] = FIELD_STEPS
    return rows


def catalog_for(work: Path, without: tuple[str, ...], seed: int) -> Path:
    """The field catalog with `without` left out, written once under `work`."""
    name = "field-" + ("-".join(without) if without else "full")
    if len(without) == len(FIELD_STEPS):
        name = "field-none"
    if seed:  # seed 0 keeps the folder names of the runs recorded in RESULTS-field-breakdown.md
        name += f"-seed{seed}"
    out = work / "catalogs" / name
    if not (out / "fashion_mnist.json").is_file():
        make_fashion_mnist_catalog(out, seed=seed, photo_model="field", field_without=without, overwrite=True)
    return out


def measure(rows: dict[str, tuple[str, ...]], args: argparse.Namespace) -> dict[str, dict[str, np.ndarray]]:
    """{row: {method: per-query recall@10}}."""
    bundle = load_run(Path(args.run), "cpu")
    tta = args.tta or bundle.config.embed_tta
    recalls: dict[str, dict[str, np.ndarray]] = {}
    for name, without in rows.items():
        started = time.perf_counter()
        catalog = catalog_for(Path(args.work), without, args.seed)
        query, qids = embed_kinds(bundle, catalog, "query", ["penultimate"], tta=tta)
        index, iids = embed_kinds(bundle, catalog, "index", ["penultimate"], tta=tta)
        recalls[name] = {"trained": top10_recalls(catalog, query["penultimate"], qids, index["penultimate"], iids)}
        if args.frozen_size:
            cache = catalog / "frozen"
            fq, fqids = frozen_vectors(catalog, "query", args.frozen_size, cache)
            fx, fxids = frozen_vectors(catalog, "index", args.frozen_size, cache)
            recalls[name]["frozen"] = top10_recalls(catalog, fq, fqids, fx, fxids)
        log.info(
            "%s: %s (%.0f s)",
            name,
            {k: round(float(v.mean()), 3) for k, v in recalls[name].items()},
            time.perf_counter() - started,
        )
    return recalls


def cell(values: np.ndarray, base: np.ndarray) -> str:
    """'MAR@10 (difference from the full camera, its 90% paired bootstrap interval)'."""
    if values is base:
        return f"{values.mean():.3f}"
    difference = values - base
    low, high = bootstrap_interval(difference)
    return f"{values.mean():.3f} ({difference.mean():+.3f}, {low:+.3f} to {high:+.3f})"


def table(recalls: dict[str, dict[str, np.ndarray]], args: argparse.Namespace, trained_name: str) -> str:
    full = recalls["full field camera"]
    header = f"| field camera | {trained_name}, MAR@10 (difference, 90% interval) |"
    if args.frozen_size:
        header += f" frozen Lite0 {args.frozen_size} px |"
    lines = [header, "|---|---|" + ("---|" if args.frozen_size else "")]
    for name, methods in recalls.items():
        lines.append(f"| {name} | " + " | ".join(cell(methods[m], full[m]) for m in methods) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a finished training run folder (e.g. the best preset's)")
    parser.add_argument("--work", default="/tmp/eproduct-field-breakdown")
    parser.add_argument("--mode", default="without", choices=["without", "only", "both"])
    parser.add_argument("--steps", default=",".join(FIELD_STEPS), help="comma list of the steps to vary")
    parser.add_argument("--seed", type=int, default=0, help="the catalog seed (0: the quality benchmark's)")
    parser.add_argument(
        "--frozen-size", type=int, default=128, help="frozen Lite0 resolution (its best on field); 0: no frozen column"
    )
    parser.add_argument("--tta", default=None, choices=["none", "flip", "multicrop"], help="default: the run's")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", default=None, help="also append the table to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    steps = tuple(s for s in args.steps.split(",") if s)
    unknown = sorted(set(steps) - set(FIELD_STEPS))
    if unknown:
        parser.error(f"unknown steps {unknown}; choose from {', '.join(FIELD_STEPS)}")
    if not (Path(args.run) / "config.json").is_file():
        parser.error(f"{args.run} is not a finished training run (no config.json)")
    started = time.perf_counter()
    recalls = measure(variants(args.mode, steps), args)
    config = json.loads((Path(args.run) / "config.json").read_text(encoding="utf-8"))
    trained = f"trained run `{Path(args.run).name}` ({config.get('preset')} preset, {config.get('embed_kind')})"
    load = os.getloadavg()[0]
    text = "\n".join(
        [
            table(recalls, args, trained),
            "",
            f"Rerun: `python benchmarks/field_breakdown.py {shlex.join(sys.argv[1:] if argv is None else argv)}`",
            f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
            f"{args.threads} threads; {time.perf_counter() - started:.0f} s; load average when written: {load:.1f}.",
        ]
    )
    print(text)
    if args.results:
        with open(args.results, "a", encoding="utf-8") as handle:
            handle.write(text + "\n\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
