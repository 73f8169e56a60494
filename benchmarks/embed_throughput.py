"""CPU embedding throughput of `embed_split` (decode + resize + model), and the estimate for eProduct's 1.1M index.

Writes a catalog of --images JPEGs (--px square, textured noise, so decoding costs what a photo of that size
costs) and, per preset, a run folder holding that preset's model with untrained weights (the same compute as
a trained one: throughput does not depend on the weights). Then embeds the index split with 1 and 2 torch
threads and 0 or 1 DataLoader workers, --rounds times each, interleaved; prints the median images/s and the
hours 1.1M images would take on this machine:

  python benchmarks/embed_throughput.py --work /tmp/embed-throughput
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EPRODUCT_INDEX = 1_100_000


def make_catalog(folder: Path, images: int, px: int, seed: int) -> Path:
    from PIL import Image, ImageFilter

    from eproduct_core.catalog import write_catalog

    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for i in range(images):
        noise = rng.integers(0, 256, (px // 4, px // 4, 3), dtype=np.uint8)
        image = Image.fromarray(noise).resize((px, px), Image.BILINEAR).filter(ImageFilter.SMOOTH)
        image.save(folder / "images" / f"{i:05d}.jpg", "JPEG", quality=90)
    rows = pd.DataFrame(
        {"image_id": [f"x{i:05d}" for i in range(images)], "path": [f"images/{i:05d}.jpg" for i in range(images)]}
    )
    train = rows.head(2).assign(meta="m", level2="l", leaf="f", title="t")
    return write_catalog(folder, train=train, query=rows.head(1), index=rows)


def make_run(folder: Path, preset_name: str) -> Path:
    import torch

    from eproduct_core import run_folder
    from eproduct_core.config import preset, with_overrides
    from eproduct_core.model import ModelSpec, ProductModel
    from eproduct_core.taxonomy import Taxonomy

    config = with_overrides(preset(preset_name), {"weights": "none", "device": "cpu"})
    taxonomy = Taxonomy(
        levels=("meta", "level2", "leaf"),
        classes=(
            tuple(f"m{i}" for i in range(16)),
            tuple(f"l{i}" for i in range(75)),
            tuple(f"f{i}" for i in range(1000)),
        ),
        parents=((), tuple(i % 16 for i in range(75)), tuple(i % 75 for i in range(1000))),
    )
    spec = ModelSpec.from_config(config, taxonomy.sizes, 1000 if config.metric else 0)
    torch.manual_seed(0)
    model = ProductModel(spec, "none")
    folder.mkdir(parents=True, exist_ok=True)
    run_folder.write_config(folder, config)
    run_folder.save_checkpoint(
        folder,
        {
            "model_state": model.state_dict(),
            "epoch": 0,
            "config": config.to_dict(),
            "taxonomy": taxonomy.to_dict(),
            "model_spec": spec.to_dict(),
        },
    )
    return folder


def measure(run: Path, catalog: Path, out: Path, kind: str, threads: int, workers: int) -> float:
    import shutil

    import torch

    from eproduct_core.embed import embed_split

    torch.set_num_threads(threads)
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    embed_split(run, catalog, "index", kind, out, batch_size=64, device="cpu", workers=workers)
    seconds = time.perf_counter() - start
    return len(pd.read_csv(catalog / "index.csv")) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--px", type=int, default=256, help="side of the JPEGs (eProduct photos are a few hundred px)")
    parser.add_argument("--presets", default="seed,best")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    catalog = args.work / "catalog"
    if not (catalog / "index.csv").exists():
        make_catalog(catalog, args.images, args.px, 0)
    cells = []
    for name in args.presets.split(","):
        run = make_run(args.work / f"run-{name}", name)
        from eproduct_core.run_folder import read_config

        kind = read_config(run).embed_kind
        for threads, workers in ((1, 0), (2, 0), (1, 1)):
            cells.append((name, kind, run, threads, workers))
    results: dict[tuple, list[float]] = {}
    loads = []
    for _ in range(args.rounds):
        for name, kind, run, threads, workers in cells:
            loads.append(os.getloadavg()[0])
            ips = measure(run, catalog, args.work / "out", kind, threads, workers)
            results.setdefault((name, kind, threads, workers), []).append(ips)
            print(f"{name} {kind} threads={threads} workers={workers}: {ips:.1f} images/s", flush=True)
    print(
        f"\n{args.images} JPEGs of {args.px}x{args.px} px, batch 64, median of {args.rounds} interleaved rounds, "
        f"load {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs\n"
    )
    print("| preset (model, input) | kind | torch threads | DataLoader workers | images/s | 1.1M images would take |")
    print("|---|---|---|---|---|---|")
    for (name, kind, threads, workers), values in results.items():
        ips = statistics.median(values)
        print(f"| {name} | {kind} | {threads} | {workers} | {ips:.1f} | {EPRODUCT_INDEX / ips / 3600:.1f} h |")
    print(
        f"\ncommand: python benchmarks/embed_throughput.py --work {args.work} --images {args.images} --px {args.px} "
        f"--rounds {args.rounds}"
    )


if __name__ == "__main__":
    main()
