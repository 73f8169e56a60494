"""Two versions of the search code on one index, interleaved: which one is faster, and do they agree?

Each round starts one process per checkout (`--old DIR`, `--new DIR`: folders holding an `eproduct_core` package, for
example a `git worktree add /tmp/old COMMIT`), alternating old, new, old, new, ...; each process opens the same index,
warms it, times `search.search` one query at a time on one thread (every query of the set, `--repeats` times) and
prints its median and p95 and a digest of the top-10 rows of every query. Interleaving shares the machine's slow and
fast moments between both sides; the table gives every process's median, so the spread is visible. The index is built
once (with k-means partitions) under --workdir from a benchmark vector set (benchmarks/vectors.py) and reused.

    git worktree add /tmp/old HEAD~1
    python benchmarks/search_ab.py --old /tmp/old --new . --dist fashion --n 210000 --partition-probes 16
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleave import interleaved  # noqa: E402

HERE = Path(__file__).resolve().parent


def child(args: argparse.Namespace) -> None:
    """One timed process: prints one JSON line (median/p95 ms, digest)."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    import time

    sys.path.insert(0, str(HERE))
    import vectors

    from eproduct_core import index as index_module
    from eproduct_core import search, search_kernels
    from eproduct_core.settings import SearchSettings

    _, queries = vectors.make(args.dist, args.n, args.dim, args.queries, 0)
    index = index_module.open_index(Path(args.index)).warm()
    search_kernels.prepare()
    settings = SearchSettings(mode="topk", k=10, **json.loads(args.settings))
    for query in queries[:10]:
        search.search(index, query[None, :], settings)
    seconds = []
    for _ in range(args.repeats):
        for query in queries:
            start = time.perf_counter()
            search.search(index, query[None, :], settings)
            seconds.append(time.perf_counter() - start)
    rows = np.concatenate([r.rows[:10] for r in search.search(index, queries, settings)])
    print(
        json.dumps(
            {
                "median_ms": float(np.median(seconds)) * 1e3,
                "p95_ms": float(np.percentile(seconds, 95)) * 1e3,
                "digest": hashlib.sha256(rows.astype(np.int64).tobytes()).hexdigest()[:12],
                "package": str(Path(index_module.__file__).resolve().parents[1]),
            }
        )
    )


def build(args: argparse.Namespace, path: Path) -> None:
    """The shared index (built once, by the --new code): codes, float16 vectors, k-means partitions."""
    sys.path[:0] = [str(HERE), str(Path(args.new).resolve())]
    import vectors

    from eproduct_core import index as index_module
    from eproduct_core import partitions

    x, _ = vectors.make(args.dist, args.n, args.dim, args.queries, 0)
    index_module.build_index(x, None, path, bits=args.bits)
    partitions.build_partitions(index_module.open_index(path).warm())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", help="folder holding the old eproduct_core package")
    parser.add_argument("--new", help="folder holding the new eproduct_core package")
    parser.add_argument("--dist", default="fashion")
    parser.add_argument("--n", type=int, default=210_000)
    parser.add_argument("--dim", type=int, default=512, help="ignored by fashion (1280)")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--bits", type=int, default=256)
    parser.add_argument("--partition-probes", type=int, default=16)
    parser.add_argument("--probe-bits", type=int, default=256)
    parser.add_argument("--candidates", type=int, default=4096)
    parser.add_argument("--shortlist", type=int, default=768)
    parser.add_argument("--rerank", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=4, help="old/new process pairs")
    parser.add_argument("--repeats", type=int, default=2, help="passes over the queries per process")
    parser.add_argument("--workdir", default="/tmp/eproduct-search-ab")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--index", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if not args.old or not args.new:
        parser.error("--old and --new are required")
    path = Path(args.workdir) / f"{args.dist}-{args.n}-{args.dim}-{args.bits}b"
    if not (path / "manifest.json").exists():
        build(args, path)
    settings = {
        "partition_probes": args.partition_probes,
        "probe_bits": args.probe_bits,
        "candidates": args.candidates,
        "shortlist": args.shortlist,
        "rerank": args.rerank,
    }
    load_start = os.getloadavg()[0]
    command = [sys.executable, __file__, "--child", "--index", str(path), "--settings", json.dumps(settings)]
    command += ["--dist", args.dist, "--n", str(args.n), "--dim", str(args.dim)]
    command += ["--queries", str(args.queries), "--repeats", str(args.repeats)]
    results = interleaved(args.old, args.new, args.rounds, command)
    print(
        f"{args.dist}: n = {args.n:,}, {args.queries} queries x {args.repeats}, top-10 with {settings}; one query at a "
        f"time, one thread; {args.rounds} interleaved old/new process pairs; load average {load_start:.1f} at the "
        f"start, {os.getloadavg()[0]:.1f} at the end.\n"
    )
    print("| side | package | median ms per process | median of the medians | p95 ms (median) | rows digest |")
    print("|---|---|---|---|---|---|")
    for side, runs in results.items():
        medians = " / ".join(f"{r['median_ms']:.3f}" for r in runs)
        digests = sorted({r["digest"] for r in runs})
        print(
            f"| {side} | {runs[0]['package']} | {medians} | {np.median([r['median_ms'] for r in runs]):.3f} | "
            f"{np.median([r['p95_ms'] for r in runs]):.3f} | {', '.join(digests)} |"
        )
    same = {r["digest"] for r in results["old"]} == {r["digest"] for r in results["new"]}
    ratio = np.median([r["median_ms"] for r in results["old"]]) / np.median([r["median_ms"] for r in results["new"]])
    print(f"\nold / new: {ratio:.2f}x; the same top-10 rows for every query: {'yes' if same else 'NO'}")
    print("Rerun: `python benchmarks/search_ab.py " + shlex.join(sys.argv[1:]) + "`")


if __name__ == "__main__":
    main()
