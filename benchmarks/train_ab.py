"""Two versions of the training code, interleaved: training images/s of one preset on one catalog.

Each round starts one process per checkout (`--old DIR`, `--new DIR`: folders holding an `eproduct_core` package, for
example a `git worktree add /tmp/old COMMIT`), alternating old, new, ...; each trains the preset for one epoch on the
first --images training images of --catalog with --threads torch threads and reports the run's images/s
(metrics.jsonl) and the wall time of the call. Interleaving shares the machine's slow and fast moments between the
two sides; the table gives every process's figure.

    git worktree add /tmp/old HEAD~1
    python benchmarks/train_ab.py --old /tmp/old --new . --catalog /tmp/fm-studio --preset best --images 640
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleave import interleaved  # noqa: E402


def child(args: argparse.Namespace) -> None:
    """One timed training run: prints one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    from eproduct_core import train as train_module
    from eproduct_core.config import preset, with_overrides

    config = with_overrides(preset(args.preset), {"max_train_images": str(args.images), "epochs": "1"})
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        train_module.train(config, args.catalog, out)
        wall = time.perf_counter() - start
        lines = Path(out, "metrics.jsonl").read_text().splitlines()
        metrics = json.loads(lines[-1])
    package = str(Path(train_module.__file__).resolve().parents[1])
    print(json.dumps({"images_per_s": metrics["images_per_s"], "wall_s": wall, "package": package}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", help="folder holding the old eproduct_core package")
    parser.add_argument("--new", help="folder holding the new eproduct_core package")
    parser.add_argument("--catalog")
    parser.add_argument("--preset", default="best")
    parser.add_argument("--images", type=int, default=640)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="old/new process pairs")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if not args.old or not args.new or not args.catalog:
        parser.error("--old, --new and --catalog are required")
    load_start = os.getloadavg()[0]
    command = [sys.executable, __file__, "--child", "--catalog", args.catalog, "--preset", args.preset]
    command += ["--images", str(args.images), "--threads", str(args.threads)]
    results = interleaved(args.old, args.new, args.rounds, command)
    print(
        f"preset {args.preset}, one epoch on {args.images} images of {args.catalog}, {args.threads} torch threads; "
        f"{args.rounds} interleaved old/new process pairs; load average {load_start:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end.\n"
    )
    print("| side | package | images/s per process | median images/s | median wall s |")
    print("|---|---|---|---|---|")
    for side, runs in results.items():
        rates = " / ".join(f"{r['images_per_s']:.1f}" for r in runs)
        print(
            f"| {side} | {runs[0]['package']} | {rates} | {np.median([r['images_per_s'] for r in runs]):.1f} | "
            f"{np.median([r['wall_s'] for r in runs]):.1f} |"
        )
    ratio = np.median([r["images_per_s"] for r in results["new"]]) / np.median(
        [r["images_per_s"] for r in results["old"]]
    )
    print(f"\nnew / old images/s: {ratio:.2f}x")
    print("Rerun: `python benchmarks/train_ab.py " + shlex.join(sys.argv[1:]) + "`")


if __name__ == "__main__":
    main()
