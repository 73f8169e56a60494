"""Catalog work at eProduct's row counts: import, validate, taxonomy and the per-class charts' data.

Generates a mock of the real eProduct layout (ROOT/metadata/*.csv + ROOT/Images/<split>/) with the real row
counts (1.3M train, 1.1M index, 10k query, --val rows of val), 16 / 75 / 1,000 classes, long-tailed leaves and
titles with commas, quotes and Unicode; IMAGE_PATH values repeat --files real JPEG files. Then each stage runs
in its own process (so its peak RSS is its own) and a table is printed:

  python benchmarks/catalog_scale.py --work /tmp/catalog-scale

Stages: import (`catalog import-eproduct`), validate (`catalog validate --sample 1000`, every row check on all
rows), taxonomy (read the catalog, derive the hierarchy, encode every train row), class counts (images per class
at each level: the Catalog page's charts). The work folder is reused (delete it to regenerate).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = np.array(
    "vintage new classic red blue black white leather cotton shoe bag dress shirt watch mug lamp phone case "
    'size 10 12 "limited" edition, café ☕ 日本製 pack set of 2 men women kids'.split(" ")
)


def _uuids(rng: np.random.Generator, n: int, offset: int) -> list[str]:
    return [f"{offset + i:06X}{v:010X}" for i, v in enumerate(rng.integers(0, 16**10, n))]


def _titles(rng: np.random.Generator, n: int) -> pd.Series:
    picks = rng.integers(0, len(WORDS), (n, 6))
    title = pd.Series(WORDS[picks[:, 0]])
    for j in range(1, 6):
        title = title.str.cat(pd.Series(WORDS[picks[:, j]]), sep=" ")
    return title


def generate(root: Path, rows: dict[str, int], files: int, seed: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    leaf_parent = np.sort(rng.integers(0, 75, 1000))  # every level-2 class gets leaves
    leaf_parent[:75] = np.arange(75)
    level2_parent = np.arange(75) % 16
    leaf_weight = 1.0 / (rng.permutation(1000) + 1.0)  # Zipf-like long tail
    leaf_weight /= leaf_weight.sum()
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    offset = 0
    for split, n in rows.items():
        images = root / "Images" / split
        images.mkdir(parents=True, exist_ok=True)
        for f in range(files):
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            Image.new("RGB", (64, 64), colour).save(images / f"f{f:05d}.JPEG", "JPEG", quality=80)
        frame = pd.DataFrame({"UUID": _uuids(rng, n, offset)})
        offset += n
        frame["IMAGE_PATH"] = [f"{split}/f{f:05d}.JPEG" for f in rng.integers(0, files, n)]
        if split in ("train", "val"):
            leaf = rng.choice(1000, n, p=leaf_weight)
            frame["AUCT_TITL"] = _titles(rng, n)
            frame["META_CATEG_ID"] = (level2_parent[leaf_parent[leaf]] + 1).astype(str)
            frame["CATEG_LVL2_ID"] = (leaf_parent[leaf] + 100).astype(str)
            frame["LEAF_CATEG_ID"] = (leaf + 10_000).astype(str)
        frame.to_csv(root / "metadata" / f"{split}.csv", index=False)


def _peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _stage(name: str, work: Path) -> dict:
    from eproduct_core.catalog import read_catalog, validate_catalog
    from eproduct_core.eproduct_import import import_eproduct
    from eproduct_core.taxonomy import LEVELS, Taxonomy, class_counts

    start = time.perf_counter()
    info: dict = {}
    if name == "import":
        report = import_eproduct(work / "eProduct", work / "catalog", query_split="query_part1")
        info = {"rows": sum(report.rows.values())}
    elif name == "validate":
        problems = validate_catalog(work / "catalog", check_files="sample", sample=1000)
        info = {"problems": len(problems), "first": str(problems[0]) if problems else ""}
    elif name == "taxonomy":
        catalog = read_catalog(work / "catalog")
        taxonomy = Taxonomy.from_frame(catalog.train)
        labels = taxonomy.encode(catalog.train)
        info = {"sizes": list(taxonomy.sizes), "rows": int(len(labels))}
    elif name == "class counts":
        catalog = read_catalog(work / "catalog")
        read = time.perf_counter() - start
        counts = {level: len(class_counts(catalog.train, level)) for level in LEVELS}
        info = {"classes": counts, "read_s": round(read, 1)}
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)  # this process's CPU time (not the parent's)
    peak_mib = _peak_rss_mib()
    return {
        "stage": name,
        "seconds": seconds,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mib": peak_mib,
        **info,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="folder for the mock dataset and catalog")
    parser.add_argument("--train", type=int, default=1_300_000)
    parser.add_argument("--index", type=int, default=1_100_000)
    parser.add_argument("--query", type=int, default=10_000)
    parser.add_argument("--val", type=int, default=10_000)
    parser.add_argument("--files", type=int, default=2_000, help="real JPEG files per split the rows point at")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(_stage(args.stage, args.work)))
        return
    rows = {"train": args.train, "val": args.val, "index": args.index, "query_part1": args.query}
    if not (args.work / "eProduct" / "metadata" / "train.csv").exists():
        start = time.perf_counter()
        generate(args.work / "eProduct", rows, args.files, args.seed)
        print(f"generated {sum(rows.values()):,} rows in {time.perf_counter() - start:.0f} s", flush=True)
    if (args.work / "catalog").exists():
        import shutil

        shutil.rmtree(args.work / "catalog")
    results = []
    for stage in ("import", "validate", "taxonomy", "class counts"):
        load = os.getloadavg()[0]
        command = [sys.executable, __file__, "--work", str(args.work), "--stage", stage]
        done = subprocess.run(
            command, check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
        )
        results.append({**json.loads(done.stdout.strip().splitlines()[-1]), "load": load})
        print(json.dumps(results[-1]), flush=True)
    print(
        f"\n{sum(rows.values()):,} rows ({', '.join(f'{k} {v:,}' for k, v in rows.items())}), "
        f"paths over {args.files:,} real files per split\n"
    )
    print("| stage | wall s | CPU s | peak RSS (MiB) | load before | result |")
    print("|---|---|---|---|---|---|")
    for r in results:
        extra = {k: v for k, v in r.items() if k not in ("stage", "seconds", "cpu_s", "peak_rss_mib", "load")}
        print(
            f"| {r['stage']} | {r['seconds']:.1f} | {r['cpu_s']:.1f} | {r['peak_rss_mib']:,.0f} | {r['load']:.1f} "
            f"| {json.dumps(extra, ensure_ascii=False)} |"
        )
    print(f"\ncommand: python benchmarks/catalog_scale.py --work {args.work}")


if __name__ == "__main__":
    main()
