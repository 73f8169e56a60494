"""How often the flat scan's first radius admits too few rows, so that the pass over every code is repeated.

The compiled scan (search_kernels.scan, numba_kernels.nearest_prefixes) picks a Hamming radius from a strided
sample of the prefix columns, expecting RADIUS_MARGIN x `count` rows within it, then collects every row within it in
one pass; when the sample misjudged and fewer than `count` rows are within, the radius is widened and the whole
pass repeated (at 10M rows and 256 bits, a second pass of ~13 ms). The fewer rows the sample expects to see inside
the radius (count x margin x sample / rows), the more often that happens. This counts it, without timing anything:
for each query and stage-1 size, the radius `numba_kernels._first_radius` picks from the sample (the kernel's own
function) against the exact distances of every row, for the sample the index keeps today
(`search_kernels.radius_sample`: RADIUS_SAMPLE rows or one in RADIUS_EVERY, whichever is more) and for the
fixed RADIUS_SAMPLE rows it kept before. Rows: `vectors.py` rows coded by a real index (build_index).

    python benchmarks/radius_sample.py --n 10000000 --dim 256 --queries 100 --counts 1536,3072,12288,65536
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import vectors  # noqa: E402
from machine import cpu_line  # noqa: E402

from eproduct_core import lsh, numba_kernels, search_kernels  # noqa: E402
from eproduct_core.index import build_index, open_index  # noqa: E402


def cumulative_histograms(words: np.ndarray, qwords: np.ndarray, probe_bits: int) -> np.ndarray:
    """(queries, probe_bits + 1): how many rows lie within each radius of each query, exactly."""
    return np.stack(
        [np.bincount(lsh.hamming(query, words, probe_bits), minlength=probe_bits + 1).cumsum() for query in qwords]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", default="latent", choices=vectors.DISTRIBUTIONS)
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--probe-bits", type=int, default=256)
    parser.add_argument("--counts", default="1536,3072,12288,65536", help="stage-1 sizes (rows kept by the scan)")
    parser.add_argument("--index", default=None, help="an existing index of these rows (else one is built)")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()

    dtype = np.float16 if args.n * args.dim * 4 > 4 << 30 else np.float32
    x, q = vectors.make(args.dist, args.n, args.dim, args.queries, 0, dtype=dtype)
    with tempfile.TemporaryDirectory(dir=args.workdir) as work:
        folder = Path(args.index) if args.index else Path(work) / "index"
        if not args.index:
            build_index(x, None, folder, workers=2)
        del x
        index = open_index(folder)
        columns = np.ascontiguousarray(index.columns(args.probe_bits))
        qwords = search_kernels.sign_words(index.project(q))[:, : len(columns)]
        within = cumulative_histograms(index.words, qwords, args.probe_bits)
    rows = columns.shape[1]
    samples = {
        f"{search_kernels.RADIUS_SAMPLE:,} rows (before)": np.ascontiguousarray(
            columns[:, :: max(1, rows // search_kernels.RADIUS_SAMPLE)]
        ),
        "today's (radius_sample)": search_kernels.radius_sample(columns),
    }
    masks = lsh.word_masks(args.probe_bits)
    print(f"# First-radius misses of the flat scan: {args.dist}, {rows:,} rows, {args.probe_bits}-bit prefixes\n")
    print(f"{len(q)} queries; {cpu_line()}\n")
    print("| stage-1 rows | sample | sampled rows | first pass short (repeated) | admitted / count, median | p95 |")
    print("|---|---|---|---|---|---|")
    for count in (int(c) for c in args.counts.split(",")):
        for name, sample in samples.items():
            radii = [
                numba_kernels._first_radius(
                    sample, query, masks, args.probe_bits, count, search_kernels.RADIUS_MARGIN, rows
                )
                for query in qwords
            ]
            admitted = np.array([within[i, r] for i, r in enumerate(radii)]) / count
            short = int(np.sum(admitted < 1))
            print(
                f"| {count:,} | {name} | {sample.shape[1]:,} | {short} of {len(q)} | {np.median(admitted):.2f} "
                f"| {np.percentile(admitted, 95):.2f} |"
            )
    print(f"\nRerun: `python benchmarks/radius_sample.py {shlex.join(sys.argv[1:])}`")


if __name__ == "__main__":
    main()
