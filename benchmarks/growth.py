"""How search cost grows with the index: 100k -> 1.1M -> 10M rows, ours against the peers whose build fits.

For each size, one vector set (benchmarks/vectors.py; default the hard `latent` set at d = 256, so 10M rows
fit this machine's memory as float16), its exact neighbours, and every method built and swept exactly as
`benchmarks/retrieval.py` does (the cheapest setting reaching recall@10 >= --target, one thread per query,
medians of --rounds interleaved rounds). A peer is left out of a size when its build, extrapolated
linearly from the previous size, would take longer than --max-build-s; the table says so. Prints one
markdown table (size x method: build s, memory B/item, p50/p95 ms, recall@10) and writes an SVG plot of
p50 against rows (log-log), drawn here without a plotting library.

    python benchmarks/growth.py --sizes 100000,1100000,10000000 --dim 256 --peers hnsw,ivfpq,scann \
        --out benchmarks/RESULTS-growth.md --plot benchmarks/growth.svg
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # one BLAS thread per query; set before numpy loads

import argparse  # noqa: E402
import gc  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import numpy as np  # noqa: E402
import retrieval  # noqa: E402
import vectors  # noqa: E402

FLOAT16_ABOVE = 4 << 30  # index rows above this many float32 bytes are drawn and kept as float16
FLOAT16_PEERS = {"ivfpq", "rabitq"}  # refined on float16 copies, added in float32 blocks: run at any size

SHORT = {
    "ours": "eproduct LSH (tuned)",
    "ours-partitions": "eproduct LSH + partitions (swept)",
    "hnsw": "faiss HNSW",
    "ivfpq": "faiss IVF-PQ fast-scan",
    "rabitq": "faiss IVF-RaBitQ",
    "scann": "ScaNN",
    "hnswlib": "hnswlib",
    "usearch": "USearch",
}
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


def measure_size(n: int, args: argparse.Namespace, skip_peers: set[str], log) -> list[dict]:
    """Rows of one size: ours (tuned) and every peer not skipped, swept and measured in interleaved rounds."""
    t0 = time.perf_counter()
    dtype = np.float16 if n * args.dim * 4 > FLOAT16_ABOVE else np.float32  # 10M x 256 float32 would not fit
    x, q = vectors.make(args.dist, n, args.dim, args.queries, args.seed, dtype=dtype)
    truth = vectors.exact_neighbours(x, q)
    log(f"{n:,}: data + exact truth {time.perf_counter() - t0:.0f} s")
    work = Path(tempfile.mkdtemp(prefix="eproduct-growth-", dir=args.workdir))
    rows = []
    try:
        methods = [retrieval.Ours(x, work, "tuned", bits=args.bits)]
        log(f"{n:,}: ours built in {methods[0].build_s:.1f} s (+ tuning {methods[0].tune_s:.1f} s)")
        if not args.no_partitions:
            swept = retrieval.Ours(x, work, "partitions-swept", methods[0], lists=args.lists)
            swept.peer = "ours-partitions"
            methods.append(swept)
            log(f"{n:,}: {swept.lists} partitions built in {swept.build_s - methods[0].build_s:.1f} s")
        for peer in args.peers:
            if peer in skip_peers:
                continue
            method = retrieval.make_peer(peer, x)
            log(f"{n:,}: {method.name} built in {method.build_s:.1f} s")
            method.peer = peer
            methods.append(method)
        chosen = []
        for method in methods:
            knob, r = retrieval.sweep(method, q, truth, args.target)
            chosen.append(knob)
            log(f"{n:,}: {method.name}: {method.label(knob)} -> recall@10 {r:.3f}")
        runs: list[list] = [[] for _ in methods]
        for _ in range(args.rounds):
            for method, knob, kept in zip(methods, chosen, runs, strict=True):
                kept.append(retrieval.measure(method, knob, q, 1))
        for method, knob, kept in zip(methods, chosen, runs, strict=True):
            rows.append(
                {
                    "n": n,
                    "peer": getattr(method, "peer", "ours"),
                    "method": method.name,
                    "setting": method.label(knob),
                    "build_s": method.build_s,
                    "bytes": method.memory / n,
                    "p50": statistics.median(run[0] for run in kept),
                    "p95": statistics.median(run[1] for run in kept),
                    "recall": retrieval.recall(kept[0][3], truth),
                }
            )
    finally:
        del x, q
        shutil.rmtree(work, ignore_errors=True)
        gc.collect()
    return rows


def svg_plot(rows: list[dict], title: str, target: float) -> str:
    """A small log-log line plot of p50 ms against rows, one line per method, as an SVG document."""
    width, height, left, bottom, top, right = 640, 400, 70, 50, 30, 230
    xs = sorted({r["n"] for r in rows})
    lows, highs = min(r["p50"] for r in rows), max(r["p50"] for r in rows)
    x_lo, x_hi = math.log10(xs[0]) - 0.1, math.log10(xs[-1]) + 0.1
    y_lo, y_hi = math.floor(math.log10(lows)), math.ceil(math.log10(highs))
    y_hi = max(y_hi, y_lo + 1)

    def px(n: float) -> float:
        return left + (math.log10(n) - x_lo) / (x_hi - x_lo) * (width - left - right)

    def py(ms: float) -> float:
        return height - bottom - (math.log10(ms) - y_lo) / (y_hi - y_lo) * (height - bottom - top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="18" font-size="13">{title}</text>',
    ]
    for decade in range(y_lo, y_hi + 1):
        y = py(10**decade)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{10.0**decade:g} ms</text>')
    for n in xs:
        x = px(n)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{height - bottom}" stroke="#eee"/>')
        parts.append(f'<text x="{x:.1f}" y="{height - bottom + 18}" text-anchor="middle">{n:,}</text>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 10}" text-anchor="middle">index rows</text>')
    peers = list(dict.fromkeys(r["peer"] for r in rows))
    for i, peer in enumerate(peers):
        colour = COLOURS[i % len(COLOURS)]
        points = sorted((r["n"], r["p50"], r["recall"] >= target) for r in rows if r["peer"] == peer)
        path = " ".join(f"{px(n):.1f},{py(ms):.1f}" for n, ms, _ in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for n, ms, reached in points:  # hollow: this setting missed the recall target
            fill = colour if reached else "white"
            parts.append(f'<circle cx="{px(n):.1f}" cy="{py(ms):.1f}" r="4" fill="{fill}" stroke="{colour}"/>')
        y = top + 16 * i
        parts.append(f'<rect x="{width - right + 12}" y="{y}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{width - right + 28}" y="{y + 9}">{SHORT.get(peer, peer)}</text>')
    y = top + 16 * len(peers) + 8
    parts.append(f'<text x="{width - right + 12}" y="{y + 9}" fill="#555">hollow: recall below {target}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def earlier_rows(path: Path, header: str) -> list[dict]:
    """The rows of a table this script wrote before (same distribution, dim, queries and target: its first line
    must equal `header`), so a run stopped at a later size resumes without re-measuring the earlier ones."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0] != header:
        raise SystemExit(f"{path} is not a growth table of this setup (its first line must be {header!r})")
    peer_of = {name: peer for peer, name in SHORT.items()}
    prefixes = {"eproduct LSH": "ours", "faiss IndexHNSWFlat": "hnsw", "ScaNN": "scann", "hnswlib": "hnswlib"}
    prefixes |= {"USearch": "usearch"} | {name: peer for name, peer in peer_of.items()}
    rows = []
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 8 or not cells[0].replace(",", "").isdigit():
            continue
        method = cells[1]
        peer = next((p for prefix, p in prefixes.items() if method.startswith(prefix)), None)
        if peer is None:
            peer = "rabitq" if "RaBitQ" in method else "ivfpq"
        rows.append(
            {
                "n": int(cells[0].replace(",", "")),
                "peer": peer,
                "method": method,
                "setting": cells[2],
                "build_s": float(cells[3]),
                "bytes": float(cells[4].replace(",", "")),
                "p50": float(cells[5]),
                "p95": float(cells[6]),
                "recall": float(cells[7]),
                "earlier": True,
            }
        )
    return rows


def table(rows: list[dict], notes: list[str], args: argparse.Namespace, load: tuple[float, float]) -> str:
    lines = [
        heading(args),
        "",
        f"p50/p95 one query at a time on one thread, medians of {args.rounds} interleaved rounds per size; builds on "
        f"{retrieval.BUILD_THREADS} threads; load average {load[0]:.1f} at the start, {load[1]:.1f} at the end, "
        f"{os.cpu_count()} cores.",
        "",
        "| rows | method | setting (cheapest at the target) | build s | memory B/item | p50 ms | p95 ms | recall@10 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['method']} | {r['setting']} | {r['build_s']:.1f} | {r['bytes']:,.0f} | "
            f"{r['p50']:.2f} | {r['p95']:.2f} | {r['recall']:.3f} |"
        )
    lines += [
        "",
        *[f"- {note}" for note in notes],
        "",
        f"Rerun: `python benchmarks/growth.py {' '.join(sys.argv[1:])}`",
    ]
    return "\n".join(lines) + "\n"


def heading(args: argparse.Namespace) -> str:
    return (
        f"# Growth: {args.dist}, d = {args.dim}, {args.queries} queries, target recall@10 >= {args.target}; "
        f"our index stores {args.bits}-bit codes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", choices=vectors.DISTRIBUTIONS, default="latent")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--sizes", default="100000,1100000,10000000", help="comma list of index sizes")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--peers", default="hnsw,ivfpq,scann", help=f"comma list of {retrieval.PEERS} or 'none'")
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-build-s", type=float, default=900.0, help="leave out a peer whose build would exceed")
    parser.add_argument(
        "--peer-max-rows",
        type=int,
        default=2_000_000,
        help="peers keeping a float32 or graph copy only up to this many rows (the IVF peers: any size)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--earlier", default=None, help="a table this script wrote before: keep its rows, measure only the other sizes"
    )
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--no-partitions", action="store_true", help="leave out our k-means partitions row")
    parser.add_argument("--bits", type=int, default=retrieval.DEFAULT_BITS, help="code bits our index stores")
    parser.add_argument(
        "--lists",
        type=int,
        default=None,
        help="k-means lists of our partitions at every size (default: partitions.py's)",
    )
    parser.add_argument("--out", default=None, help="also write the table here (after every size)")
    parser.add_argument("--plot", default=None, help="write the SVG plot here (after every size)")
    args = parser.parse_args()
    args.peers = [] if args.peers == "none" else [p for p in args.peers.split(",") if p]
    unknown = sorted(set(args.peers) - set(retrieval.PEERS))
    if unknown:
        raise SystemExit(f"unknown peers {unknown}; choose from {retrieval.PEERS}")
    start_load = os.getloadavg()[0]

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    rows: list[dict] = earlier_rows(Path(args.earlier), heading(args)) if args.earlier else []
    notes: list[str] = []
    if rows:
        done = sorted({r["n"] for r in rows})
        notes.append(
            f"Rows at {', '.join(f'{n:,}' for n in done)} come from an earlier invocation ({args.earlier}), "
            "measured the same way; this invocation measured the other sizes."
        )
    skip: set[str] = set()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    for i, n in enumerate(sizes):
        if any(r["n"] == n for r in rows):
            continue
        if i:  # extrapolate each peer's build from the previous size
            for r in rows:
                if (
                    r["n"] == sizes[i - 1]
                    and r["peer"] != "ours"
                    and r["build_s"] * n / sizes[i - 1] > args.max_build_s
                ):
                    skip.add(r["peer"])
                    notes.append(
                        f"{r['method']} left out from {n:,} rows: its build would take about "
                        f"{r['build_s'] * n / sizes[i - 1]:,.0f} s (> --max-build-s {args.max_build_s:.0f})."
                    )
        heavy = [p for p in args.peers if p not in FLOAT16_PEERS]
        if n > args.peer_max_rows and heavy:
            notes.append(
                f"Peers ({', '.join(heavy)}) not run at {n:,} rows: each keeps its own float32 or graph copy "
                f"beside ours, which would not fit this machine's memory (--peer-max-rows {args.peer_max_rows:,})."
            )
            skip |= set(heavy)
        rows += measure_size(n, args, skip, log)
        text = table(rows, notes, args, (start_load, os.getloadavg()[0]))
        if args.out:
            Path(args.out).write_text(text, encoding="utf-8")
        if args.plot:
            Path(args.plot).write_text(
                svg_plot(rows, f"p50 at recall@10 >= {args.target} ({args.dist}, d = {args.dim})", args.target),
                encoding="utf-8",
            )
    print(text)


if __name__ == "__main__":
    main()
