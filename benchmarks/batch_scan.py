"""A batch's flat stage 1 sharing one pass over the prefix columns, against one pass per query.

Builds one flat index (no partitions) on `vectors.py` rows, then searches the same queries two ways, interleaved
round by round on one thread: one `search.search` call per query (each query scans the columns alone) and one call
for the whole batch (numba_kernels.shared_prefixes: SCAN_QUERIES queries score each block of rows while it is in
cache). Prints ms per query for each (median over rounds), their ratio, whether the rows agree, and the load.

    python benchmarks/batch_scan.py --dist latent --n 1100000 --dim 512 --queries 64 --rounds 5
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one BLAS thread: per-query code (see README)

import argparse  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import vectors  # noqa: E402
from machine import cpu_line  # noqa: E402

from eproduct_core import numba_kernels, search, search_kernels  # noqa: E402
from eproduct_core.index import build_index, open_index  # noqa: E402
from eproduct_core.settings import SearchSettings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", default="latent", choices=vectors.DISTRIBUTIONS)
    parser.add_argument("--n", type=int, default=1_100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--probe-bits", type=int, default=256)
    parser.add_argument("--candidates", type=int, default=65536)
    parser.add_argument("--shortlist", type=int, default=8192)
    parser.add_argument("--rerank", type=int, default=2048)
    args = parser.parse_args()
    x, q = vectors.make(args.dist, args.n, args.dim, args.queries, 0)
    settings = SearchSettings(
        k=10, probe_bits=args.probe_bits, candidates=args.candidates, shortlist=args.shortlist, rerank=args.rerank
    )
    with tempfile.TemporaryDirectory() as work:
        build_index(x, None, Path(work) / "idx")
        index = open_index(Path(work) / "idx").warm()
        search_kernels.prepare()
        search.search(index, q[:2], settings)  # compile both paths before timing
        search.search(index, q[:1], settings)
        alone_ms, batch_ms = [], []
        for _ in range(args.rounds):
            start = time.perf_counter()
            alone = [search.search(index, row[None], settings)[0] for row in q]
            alone_ms.append((time.perf_counter() - start) * 1e3 / len(q))
            start = time.perf_counter()
            batch = search.search(index, q, settings)
            batch_ms.append((time.perf_counter() - start) * 1e3 / len(q))
        same = all(np.array_equal(a.rows, b.rows) for a, b in zip(alone, batch, strict=True))
    one, shared = float(np.median(alone_ms)), float(np.median(batch_ms))
    print(
        f"{args.dist}: n = {args.n:,}, dim = {x.shape[1]}, {len(q)} queries, {args.rounds} interleaved rounds, one "
        f"thread; stage sizes probe {args.probe_bits} b, candidates {args.candidates}, shortlist {args.shortlist}, "
        f"re-rank {args.rerank}; {numba_kernels.SCAN_QUERIES} queries share a pass; load average "
        f"{os.getloadavg()[0]:.1f}; {cpu_line()}\n"
    )
    print("| search | ms per query (median of rounds) |\n|---|---|")
    print(f"| one call per query (one pass over the columns each) | {one:.2f} |")
    print(f"| one call for the batch (a shared pass per {numba_kernels.SCAN_QUERIES} queries) | {shared:.2f} |")
    print(f"\nbatch / one-at-a-time: {shared / one:.2f}x the time; the same rows for every query: {same}")
    print("Rerun: `python benchmarks/batch_scan.py " + shlex.join(sys.argv[1:]) + "`")


if __name__ == "__main__":
    main()
