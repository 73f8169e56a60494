"""`eproduct submit`: embed a catalog's queries with a run and write the challenge's submission file."""

from __future__ import annotations

import argparse

from .evaluate import add_search_flags


def _submit(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..evaluate import format_summary
    from ..submit import make_submission, run_settings

    settings = run_settings(
        args.run,
        kind=args.kind,
        bits=args.bits,
        cutoff=args.cutoff,
        k=args.k,
        rerank=args.rerank,
        mode=args.mode,
        shard_size=args.shard_size,
    )
    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "searching":  # per query: too fast to be worth a bar
            return
        bar = bars.setdefault(stage, tqdm(desc=stage, total=total, leave=False))
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    report = make_submission(
        args.run, args.catalog, args.out, index=args.index, settings=settings, device=args.device, progress=progress
    )
    print(f"settings: {', '.join(f'{k}={v}' for k, v in vars(report.settings).items())}")
    print(f"index: {report.index_path}")
    if report.evaluation is not None:
        print(format_summary({k: v for k, v in report.evaluation.summary.items() if k != "settings"}))
    print(f"submission written to {report.path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("submit", help="write a challenge submission (top 10 ids per query) with a run")
    parser.add_argument("--run", required=True, help="training run folder (its preset gives kind and search settings)")
    parser.add_argument("--catalog", required=True, help="catalog folder (its query split is searched)")
    parser.add_argument("--index", help="index folder; default: embed the index split and build one in RUN/cache/")
    parser.add_argument("--out", required=True, help="submission file to write")
    parser.add_argument("--shard-size", type=int, help="rows per shard of a built index (the seed: 8000)")
    parser.add_argument("--device", default="auto", help="embedding device: auto, cpu or cuda")
    add_search_flags(parser)
    parser.set_defaults(func=_submit)
