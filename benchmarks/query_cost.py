"""Where one query's search time goes: each step of `search.search` timed on its own, in the order the search runs
them, one query at a time on one thread.

Builds an index of a benchmark vector set (benchmarks/vectors.py) with k-means partitions, tunes it as
`eproduct index build --partitions` does, then for each query runs the steps of a top-k search with the tuned
settings one after another (the caches are as cold as in a real loop of queries) and prints the median of each
step over the queries, beside the whole `search.search` call timed in the same loop. The steps are the public
pieces search.py chains: validation, the resolved plan, the hyperplane projection, the query's code words, the
probed partitions (centroid products), the compiled stages 1-4, and the results (ids).
`--partition-probes P` replaces the tuned stage 1 (the tuner keeps the flat scan when its timing finds it faster);
Where the partitions have a centroid sketch (centroid_sketch.py) the whole call is timed twice more per query, with
the sketch and with every centroid scored, in alternating order (the A/B of the sketch). `--lists N` builds N k-means lists; `--split-stages` also times the compiled stages' pieces, each called on its own
in the same loop (stage 1, the weighted table, stages 2-3, stage 4), printed below the sum.

    python benchmarks/query_cost.py --dist fashion --n 210000 --queries 300
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # one BLAS thread per query; set before numpy loads

import argparse  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import numpy as np  # noqa: E402
import vectors  # noqa: E402

from eproduct_core import centroid_sketch, lsh, partitions, search, search_kernels, tuning  # noqa: E402
from eproduct_core import index as index_module  # noqa: E402
from eproduct_core.settings import SearchSettings  # noqa: E402


def steps(index, query: np.ndarray, settings: SearchSettings) -> list[tuple[str, float]]:
    """(step, seconds) of one top-k search with stage 1 from partitions or the flat scan (search.py's order)."""
    out = []
    clock = time.perf_counter()

    def mark(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        out.append((name, now - clock))
        clock = now

    queries = np.asarray(query)[None, :]
    index.check_compatible(None, queries.shape[1])
    lsh.first_nonfinite_row(queries)
    mark("validation (dimension, finite values)")
    plan = search._plan(index, settings)
    mark("resolved plan (memoised)")
    projections = index.project(queries)
    mark("hyperplane projection (bits x dim)")
    qwords = search_kernels.sign_words(projections, index.kernel)
    mark("query code words")
    lists = None
    if plan.partition_probes:
        lists = partitions.partitions_of(index).lists_for(queries, plan.partition_probes)
        mark("probed partitions (centroid products)")
    stages = plan.stages(index)
    bound = search._bound(index, stages, lists is not None)
    found = search_kernels.reranked(bound, qwords, projections, queries, index.kernel, lists)
    mark("stages 1-4 (weighted-Hamming table, compiled call)")
    for r in found:
        search._ranked_result(index, r, plan, plan.shortlist)
    mark("results (cutoff, k, ids)")
    return out


def compiled_pieces(index, query: np.ndarray, settings: SearchSettings) -> list[tuple[str, float]]:
    """(piece, seconds) of numba_kernels.reranked's work for one query, each piece a compiled call of its own,
    in the order reranked runs them: stage 1 (the probed lists' prefixes, or the flat scan), the weighted-Hamming
    table, stages 2-3 with the rows put in order, stage 4 (exact cosine of the re-ranked rows)."""
    from eproduct_core import numba_kernels as nk

    queries = np.asarray(query, dtype=np.float32)[None, :]
    plan = search._plan(index, settings)
    projection = index.project(queries)[0]
    qwords = search_kernels.sign_words(projection[None, :])[0]
    lists = (
        partitions.partitions_of(index).lists_for(queries, plan.partition_probes)[0] if plan.partition_probes else None
    )
    bound = search._bound(index, plan.stages(index), lists is not None)
    store, stages, rows = bound.compiled_store, bound.stages, index.size
    start = time.perf_counter()
    if lists is None:
        scratch = search_kernels._found_buffers(rows)
        margin = search_kernels.RADIUS_MARGIN
        probed = nk.nearest_prefixes(
            store.columns, store.sample, qwords, stages.probe_bits, stages.candidates, margin, scratch
        )
    else:
        marks = search_kernels._marks(rows)
        probed = nk.partition_prefixes(bound.compiled_parts, lists, qwords, stages.probe_bits, stages.candidates, marks)
    t1 = time.perf_counter()
    table = nk.weighted_table(projection, stages.bits)
    t2 = time.perf_counter()
    picked = np.sort(nk.from_candidates(store, stages, probed, qwords, table)[0])
    t3 = time.perf_counter()
    nk.nearest_cosine(store.vectors, picked, queries[0], stages.top)
    t4 = time.perf_counter()
    return [
        ("  inside: stage 1, prefix distances and selection", t1 - start),
        ("  inside: weighted-Hamming table", t2 - t1),
        ("  inside: stages 2-3 (full, weighted Hamming), rows sorted", t3 - t2),
        ("  inside: stage 4 (exact cosine)", t4 - t3),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dist", default="fashion", choices=vectors.DISTRIBUTIONS)
    parser.add_argument("--n", type=int, default=210_000)
    parser.add_argument("--dim", type=int, default=512, help="ignored by fashion (1280)")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--bits", type=int, default=256)
    parser.add_argument("--partition-probes", type=int, default=None, help="override the tuned stage 1 (0: flat scan)")
    parser.add_argument("--lists", type=int, default=None, help="k-means lists to build (default: partitions.py's)")
    parser.add_argument(
        "--split-stages", action="store_true", help="also time the compiled stages' pieces, each called alone"
    )
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    x, q = vectors.make(args.dist, args.n, args.dim, args.queries, 0)
    work = Path(tempfile.mkdtemp(prefix="eproduct-query-cost-", dir=args.workdir))
    try:
        path = index_module.build_index(x, None, work / "index", bits=args.bits)
        del x
        index = index_module.open_index(path).warm()
        partitions.build_partitions(index, args.lists)
        index = index_module.open_index(path).warm()
        tuned = tuning.tune(index, target=0.95, k=10)
        settings = tuned.settings.replace(k=10)
        if args.partition_probes is not None:
            settings = settings.replace(partition_probes=args.partition_probes)
        search_kernels.prepare()
        for query in q[:5]:
            steps(index, query, settings)
        per_step: dict[str, list[float]] = {}
        pieces: dict[str, list[float]] = {}
        whole: list[float] = []
        ab: dict[bool, list[float]] = {True: [], False: []}  # sketch on / off, the same query, order alternating
        made = partitions.partitions_of(index)
        sketch, no_sketch = made.sketch, centroid_sketch.no_sketch(made.lists, index.dim)
        for i, query in enumerate(q):
            for name, seconds in steps(index, query, settings):
                per_step.setdefault(name, []).append(seconds)
            for name, seconds in compiled_pieces(index, query, settings) if args.split_stages else []:
                pieces.setdefault(name, []).append(seconds)
            start = time.perf_counter()
            search.search(index, query[None, :], settings)
            whole.append(time.perf_counter() - start)
            for on in ((True, False) if i % 2 else (False, True)) if settings.partition_probes and made.rank else ():
                made.sketch = sketch if on else no_sketch
                start = time.perf_counter()
                search.search(index, query[None, :], settings)
                ab[on].append(time.perf_counter() - start)
            made.sketch = sketch
        r = search.resolve(index, settings)
        print(
            f"{args.dist}: n = {index.size:,}, dim = {index.dim}, {len(q)} queries, "
            f"top-10 with the tuned settings (partition_probes {r.partition_probes}, probe {r.probe_bits} b, "
            f"candidates {r.candidates}, shortlist {r.shortlist}, re-rank {r.rerank}; "
            f"{tuning.describe(tuned.estimate())}); "
            f"one query at a time, one thread; load average {load_start:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} at the end.\n"
        )
        print("| step | median ms | share of the steps |")
        print("|---|---|---|")
        medians = {name: float(np.median(v)) * 1e3 for name, v in per_step.items()}
        total = sum(medians.values())
        for name, ms in medians.items():
            print(f"| {name} | {ms:.3f} | {ms / total:.0%} |")
        print(f"| sum of the step medians | {total:.3f} | |")
        print(f"| whole `search.search` call, same loop | {float(np.median(whole)) * 1e3:.3f} | |")
        if ab[True]:
            print(f"| A/B, the same call again: with the centroid sketch | {float(np.median(ab[True])) * 1e3:.3f} | |")
            print(f"| A/B, the same call again: every centroid scored | {float(np.median(ab[False])) * 1e3:.3f} | |")
        for name, v in pieces.items():  # each piece called alone, in the same loop (not in the sum above)
            print(f"| {name} | {float(np.median(v)) * 1e3:.3f} | |")
        print(
            f"\nPartitions: {made.lists} lists, centroid sketch rank {made.rank} (0: none). Rerun: `python benchmarks/query_cost.py {shlex.join(sys.argv[1:])}`"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
