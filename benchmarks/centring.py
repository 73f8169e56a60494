"""Would centring the vectors before hashing help random-hyperplane LSH? A candidate-recall probe, no index.

For one vector set (benchmarks/vectors.py), hash the rows with this project's hyperplanes (`lsh.hyperplanes`) as they
are and after subtracting the index rows' mean (queries too), take each query's `depth` nearest rows by Hamming
distance, keep the 10 best of those by exact cosine on the raw vectors, and print recall@10 against exact cosine.
It measures only the candidate stage's ceiling; the index does not centre (yet).

    python benchmarks/centring.py --dist seed --dim 1002 --n 200000
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "2")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import vectors  # noqa: E402

from eproduct_core import lsh  # noqa: E402


def candidate_recall(x: np.ndarray, q: np.ndarray, shift: np.ndarray, planes: np.ndarray, truth, depth: int) -> float:
    """recall@10 of the cosine-best 10 among each query's `depth` Hamming-nearest rows, codes of (v - shift)."""
    codes_x = np.sign((x - shift) @ planes.T).astype(np.float32)
    codes_q = np.sign((q - shift) @ planes.T).astype(np.float32)
    agreement = codes_q @ codes_x.T  # bits - 2 * Hamming distance
    top = np.argpartition(-agreement, depth, axis=1)[:, :depth]
    found = [rows[np.argsort(-(x[rows] @ query))[:10]] for rows, query in zip(top, q, strict=True)]
    return float(np.mean([len(np.intersect1d(f, t)) / 10 for f, t in zip(found, truth, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", choices=vectors.DISTRIBUTIONS, default="seed")
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=1002)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--bits", type=int, default=256)
    parser.add_argument("--depths", default="1024,4096,16384")
    args = parser.parse_args()
    x, q = vectors.make(args.dist, args.n, args.dim, args.queries)
    truth = vectors.exact_neighbours(x, q)
    planes = lsh.hyperplanes(0, args.bits, args.dim)
    mean = x.mean(axis=0)
    print(f"{args.dist}: n = {args.n:,}, dim = {args.dim}, {args.queries} queries, {args.bits}-bit codes")
    print(
        "\n| Hamming candidates | recall@10, codes as they are | recall@10, codes of centred vectors |\n|---|---|---|"
    )
    for depth in (int(d) for d in args.depths.split(",")):
        plain = candidate_recall(x, q, np.zeros_like(mean), planes, truth, depth)
        centred = candidate_recall(x, q, mean, planes, truth, depth)
        print(f"| {depth:,} | {plain:.3f} | {centred:.3f} |")
    print(f"\nRerun: `python benchmarks/centring.py {' '.join(sys.argv[1:])}`")


if __name__ == "__main__":
    main()
