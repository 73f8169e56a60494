"""Seed preset vs best preset on the synthetic catalog, and the hash length x cutoff (x re-rank) sweep.

Steps: make the synthetic catalog -> train the `seed` and `best` presets -> `make_submission` with
each preset's own settings (seed: kind seed, 20 bits, 8,000 per shard, cutoff 0.1; best: kind metric,
256 bits, top-10 with exact re-rank of 100) -> sweeps over the cached query embeddings:
  A. the seed run's `seed` embedding, mode cutoff: bits x cutoff (the seed cell: 20 bits / 0.1);
  B. mode topk (Hamming ranking, optional exact re-rank): bits x rerank, for the seed run's `seed`
     and `penultimate` embeddings and the best run's `metric` embedding.
Prints the tables and writes them (with the command) to benchmarks/RESULTS-sweep.md.

    python benchmarks/sweep.py                                  # full presets (slow on 2 busy cores)
    python benchmarks/sweep.py --seed-epochs 3 --best-epochs 4  # shorter training, said in the output
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

import pandas as pd  # noqa: E402

from eproduct_core.catalog import read_catalog  # noqa: E402
from eproduct_core.config import preset, with_overrides  # noqa: E402
from eproduct_core.evaluate import sweep  # noqa: E402
from eproduct_core.run_cache import run_index, split_embeddings  # noqa: E402
from eproduct_core.settings import IndexSpec, SearchSettings  # noqa: E402
from eproduct_core.submit import make_submission, run_defaults  # noqa: E402

CUTOFF_BITS = [8, 12, 16, 20, 24, 32, 48, 64]
CUTOFFS = [0.05, 0.1, 0.2, 0.3, 0.4]
TOPK_BITS = [20, 64, 256]
RERANKS = [0, 100]


def train_preset(name: str, epochs: int | None, catalog: Path, out: Path, threads: int) -> tuple[Path, float]:
    import torch

    from eproduct_core.train import train

    torch.set_num_threads(threads)
    config = preset(name)
    if epochs is not None:
        config = with_overrides(config, {"epochs": epochs})
    run = out / f"run-{name}"
    if (run / "checkpoint.pt").is_file() and json.loads((run / "config.json").read_text())["epochs"] == config.epochs:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        if len(lines) >= config.epochs:
            print(f"[{name}] reusing trained run {run}", flush=True)
            return run, float("nan")
    began = time.perf_counter()
    train(config, catalog, run, resume=(run / "checkpoint.pt").is_file())
    return run, time.perf_counter() - began


def md_table(frame: pd.DataFrame) -> str:
    def cell(v):
        if isinstance(v, float):
            return "" if pd.isna(v) else f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
        return str(v)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="bench-sweep", help="work folder (catalog, runs, caches)")
    parser.add_argument("--size", default="small", choices=["tiny", "small", "medium"])
    parser.add_argument("--seed-epochs", type=int, help="override the seed preset's 12 epochs")
    parser.add_argument("--best-epochs", type=int, help="override the best preset's epochs (3)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", default=str(Path(__file__).with_name("RESULTS-sweep.md")))
    args = parser.parse_args(argv)
    command = "python benchmarks/sweep.py " + " ".join(argv if argv is not None else sys.argv[1:])
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    from eproduct_core.synthetic import make_synthetic_catalog

    catalog = work / f"catalog-{args.size}"
    if not (catalog / "groundtruth.csv").is_file():
        make_synthetic_catalog(catalog, seed=0, size=args.size)
    cat = read_catalog(catalog)
    truth = cat.matches()
    notes = [
        f"catalog: synthetic `{args.size}` (seed 0): {len(cat.train)} train, {len(cat.query)} query, "
        f"{len(cat.index)} index images, {len(cat.groundtruth)} true matches"
    ]

    headline, runs = [], {}
    for name, epochs in (("seed", args.seed_epochs), ("best", args.best_epochs)):
        run, seconds = train_preset(name, epochs, catalog, work, args.threads)
        runs[name] = run
        config = json.loads((run / "config.json").read_text())
        full = preset(name).epochs
        note = "full preset" if config["epochs"] == full else f"epochs overridden {full} -> {config['epochs']}"
        report = make_submission(run, catalog, work / f"submission-{name}.csv")
        s = report.evaluation.summary
        last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
        headline.append(
            {
                "preset": name,
                "training": note,
                "train_s": seconds,
                "val_leaf_acc": last["val_acc"]["leaf"],
                "kind": run_defaults(run)[0].kind,
                "bits": report.settings.bits,
                "mode": report.settings.mode,
                "cutoff": report.settings.cutoff if report.settings.mode == "cutoff" else float("nan"),
                "rerank": report.settings.rerank,
                "MAR@10 (/|G|)": s["mar@10_G"],
                "MAR@10 (/min)": s["mar@10_min"],
                "mean_candidates": s["mean_candidates"],
                "no_result": s["no_result"],
            }
        )
        print(f"[{name}] {note}: MAR@10 = {s['mar@10_G']:.4f} (/|G|), {s['mar@10_min']:.4f} (/min(10,|G|))", flush=True)
    headline = pd.DataFrame(headline)

    seed_spec, seed_settings = run_defaults(runs["seed"])
    emb = split_embeddings(runs["seed"], catalog, "query", "seed")
    index = run_index(runs["seed"], catalog, seed_spec.replace(bits=64))
    table_a = sweep(
        index, emb.vectors.astype("float32"), emb.ids, truth, seed_settings, {"bits": CUTOFF_BITS, "cutoff": CUTOFFS}
    )
    table_a.insert(
        0,
        "cell",
        [
            "<- seed preset" if (b == 20 and abs(c - 0.1) < 1e-9) else ""
            for b, c in zip(table_a["bits"], table_a["cutoff"], strict=False)
        ],
    )
    pivot = table_a.pivot(index="bits", columns="cutoff", values="mar@10_G")
    pivot.columns = [f"cutoff {c:g}" for c in pivot.columns]
    pivot = pivot.reset_index()

    rows_b = []
    for run_name, kind in (("seed", "seed"), ("seed", "penultimate"), ("best", "metric")):
        q = split_embeddings(runs[run_name], catalog, "query", kind)
        ix = run_index(runs[run_name], catalog, IndexSpec(kind=kind, bits=256))
        base = SearchSettings(bits=256, mode="topk", k=10, rerank=0)
        table = sweep(ix, q.vectors.astype("float32"), q.ids, truth, base, {"bits": TOPK_BITS, "rerank": RERANKS})
        table.insert(0, "embedding", f"{run_name} run / {kind}")
        rows_b.append(table)
    table_b = pd.concat(rows_b, ignore_index=True)

    cols_a = [
        "cell",
        "bits",
        "cutoff",
        "mar@10_G",
        "mar@10_min",
        "mean_candidates",
        "no_result",
        "latency_median_ms",
        "latency_p95_ms",
    ]
    cols_b = [
        "embedding",
        "bits",
        "rerank",
        "mar@10_G",
        "mar@10_min",
        "recall@1",
        "latency_median_ms",
        "latency_p95_ms",
    ]
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.4f}".format):
        print("\n".join(notes))
        print("\nSeed vs best, each with its own preset settings:\n" + headline.to_string(index=False))
        print(
            "\nA. seed embedding, cutoff mode, MAR@10 (/|G|) by hash length x cutoff:\n" + pivot.to_string(index=False)
        )
        print("\nA (full). " + table_a[cols_a].to_string(index=False))
        print("\nB. top-10 by Hamming, optional exact re-rank:\n" + table_b[cols_b].to_string(index=False))
        print(f"\nrerun: {command}")
    text = [
        "# Sweep: seed preset vs best preset on the synthetic catalog",
        "",
        f"Command: `{command}` (CPU, {args.threads} threads; latencies are per query, single-threaded search).",
        "",
        *[f"- {n}" for n in notes],
        "- MAR@10 (/|G|) is the report's eq. 5-6; MAR@10 (/min) divides by min(10, |G|).",
        "",
        "## Seed vs best, each with its own preset settings",
        "",
        md_table(headline),
        "",
        "## A. Seed embedding, cutoff mode: MAR@10 (/|G|) by hash length x cutoff",
        "",
        md_table(pivot),
        "",
        "Every cell (the seed preset's is 20 bits / cutoff 0.1):",
        "",
        md_table(table_a[cols_a]),
        "",
        "## B. Top-10 by Hamming distance, with and without exact re-rank of 100",
        "",
        md_table(table_b[cols_b]),
        "",
    ]
    Path(args.results).write_text("\n".join(text), encoding="utf-8")
    table_a.to_csv(work / "sweep-cutoff.csv", index=False)
    table_b.to_csv(work / "sweep-topk.csv", index=False)
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
