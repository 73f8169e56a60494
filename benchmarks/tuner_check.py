"""Does the tuned setting reach its target on real queries? One markdown table: the tuner with and without its check.

`eproduct index tune` chooses stage sizes on sample queries (held-out index rows unless given real ones) and stores
an estimate of the recall they reach. This script builds one index of a benchmark distribution (benchmarks/vectors.py),
tunes it with several sampling seeds, once choosing and estimating on one sample (`check=False`, the tuner before
2026-12-07) and once checked on a second, disjoint sample (the default), and measures each choice on the
distribution's own queries, which the tuner never sees (recall@10 against exact cosine over the stored float16
vectors, with a 90% bootstrap interval). Recall only: the timings printed are the tuner's own, one thread, and move
with the machine's load.

    python benchmarks/tuner_check.py --dist fashion --n 210000 --dim 1280 --bits 256 --lists 2048
    python benchmarks/tuner_check.py --dist seed --n 200000 --dim 1002 --bits 1024 --centre
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vectors  # noqa: E402
from machine import cpu_line  # noqa: E402

from eproduct_core import partitions, residual, search, tuning  # noqa: E402
from eproduct_core.index import build_index, open_index  # noqa: E402
from eproduct_core.settings import SearchSettings  # noqa: E402


def describe(s: SearchSettings) -> str:
    lists = f"{s.partition_probes} lists, " if s.partition_probes else ""
    bits = f"{s.bits} bits, " if s.bits else ""
    return (
        f"{lists}{bits}probe {s.probe_bits} b, candidates {s.candidates}, shortlist {s.shortlist}, re-rank {s.rerank}"
    )


def on_queries(index, queries: np.ndarray, truth: np.ndarray, settings: SearchSettings) -> np.ndarray:
    found = [r.rows for r in search.search(index, queries, settings, threads=2)]
    return tuning.per_query_recall(found, truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", choices=vectors.DISTRIBUTIONS, default="fashion")
    parser.add_argument("--n", type=int, default=210_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--bits", type=int, default=256)
    parser.add_argument("--centre", action="store_true", help="build the index centred (the seed shape's runs)")
    parser.add_argument("--lists", type=int, default=0, help="also build this many partitions (0: none)")
    parser.add_argument("--residual", action="store_true", help="and residual codes on them")
    parser.add_argument("--queries", type=int, default=400, help="benchmark queries the choices are measured on")
    parser.add_argument("--seeds", default="0,1,2", help="the tuner's sampling seeds")
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", default=None, help="also write the table here")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    start, load = time.perf_counter(), os.getloadavg()[0]

    x, q = vectors.make(args.dist, args.n, args.dim, max(args.queries, 2000 if args.dist == "fashion" else 0))
    q = q[: args.queries]
    work = Path(tempfile.mkdtemp(prefix="eproduct-tuner-check-", dir=args.workdir))
    build_index(x, None, work / "idx", bits=args.bits, workers=2, centre=args.centre)
    index = open_index(work / "idx").warm()
    if args.lists:
        partitions.build_partitions(index, args.lists)
        if args.residual:
            residual.build_residual(open_index(work / "idx"))
        index = open_index(work / "idx").warm()
    del x
    truth = tuning.exact_neighbours(index, q, 10)

    rows, misses = [], {False: 0, True: 0}
    for check in (False, True):
        for seed in seeds:
            result = tuning.tune(index, target=args.target, seed=seed, check=check)
            measured = on_queries(index, q, truth, result.settings)
            low, high = tuning.bootstrap_interval(measured)
            misses[check] += measured.mean() < args.target
            rows.append(
                f"| {'checked on a second sample' if check else 'one sample (no check)'} | {seed} | "
                f"{describe(result.settings)} | {result.recall:.3f} ({result.low:.3f}-{result.high:.3f}) | "
                f"**{measured.mean():.3f}** ({low:.3f}-{high:.3f}) | {result.recall - measured.mean():+.3f} | "
                f"{result.ms_per_query:.2f} |"
            )
            print(rows[-1], flush=True)

    layout = f"{args.bits} bits{', centred' if args.centre else ''}"
    if args.lists:
        layout += f", {args.lists} partitions" + (" + residual codes" if args.residual else "")
    text = "\n".join(
        [
            f"{args.dist}: n = {index.size:,}, dim = {index.dim}, {layout}; target recall@10 >= {args.target}; "
            f"the tuner's samples: {tuning.SAMPLE_QUERIES} held-out index rows each; measured on {len(q)} of the "
            f"distribution's queries; load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; "
            f"{time.perf_counter() - start:.0f} s. {cpu_line()}.",
            "",
            "| tuner | seed | setting chosen | its estimate (90% interval) | recall@10 on the queries (90% interval) "
            "| estimate - measured | tuner's ms/query |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Below the target on the queries: {misses[False]} of {len(seeds)} choices without the check, "
            f"{misses[True]} of {len(seeds)} with it.",
            "",
            "Rerun: `python benchmarks/tuner_check.py " + shlex.join(sys.argv[1:]) + "`",
        ]
    )
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
