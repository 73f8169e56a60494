"""`eproduct submit`: embed a catalog's queries with a run and write the challenge's submission file."""

from __future__ import annotations

import argparse

from .search_flags import add_search_flags, search_settings


def _submit(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..evaluate import format_summary
    from ..submit import make_submission, run_defaults

    spec, preset_settings = run_defaults(args.run)
    settings = search_settings(args, preset_settings)
    index_changes = {"kind": args.kind, "shard_size": args.shard_size}
    spec = spec.replace(**{key: value for key, value in index_changes.items() if value is not None})
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
        args.run,
        args.catalog,
        args.out,
        index=args.index,
        settings=settings,
        spec=spec,
        device=args.device,
        progress=progress,
    )
    print(f"settings: {', '.join(f'{k}={v}' for k, v in report.settings.to_dict().items())}")
    print(f"index: {report.index_path}")
    if report.not_embedded:
        print(f"{report.not_embedded} queries failed to embed: an empty line each, scored 0")
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
    parser.add_argument("--kind", help="embedding kind of a built index and the queries (default: the run's)")
    parser.add_argument("--shard-size", type=int, help="rows per shard of a built index (default: the run's, 8000)")
    parser.add_argument("--device", default="auto", help="embedding device: auto, cpu or cuda")
    add_search_flags(parser, "the run preset's")
    parser.set_defaults(func=_submit)
