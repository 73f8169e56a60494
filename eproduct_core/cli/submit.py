"""`eproduct submit`: embed a catalog's queries with a run and write the challenge's submission file."""

from __future__ import annotations

import argparse

from .search_flags import add_search_flags, search_settings


def _submit(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..evaluate import format_summary
    from ..submit import make_submission, run_defaults

    if args.index and (args.kind or args.shard_size):
        from ..errors import EproductError

        raise EproductError(
            "--kind and --shard-size describe the index submit builds; with --index the index's own are used. "
            "Leave them out, or leave out --index."
        )
    spec, preset_settings = run_defaults(args.run)
    settings = search_settings(args, preset_settings)
    index_changes = {"kind": args.kind, "shard_size": args.shard_size}
    spec = spec.replace(**{key: value for key, value in index_changes.items() if value is not None})
    bars: list = []  # opened on the first report, so an error before it prints on a line of its own

    def progress(fraction: float, message: str) -> None:
        if message.startswith("searching"):  # per query: too fast to be worth a bar
            return
        if not bars:
            bars.append(tqdm(total=1000, unit="‰", leave=False, bar_format="{l_bar}{bar}| {postfix}"))
        value = int(round(1000 * min(max(fraction, 0.0), 1.0)))
        if value != bars[0].n:
            bars[0].n = value
            bars[0].set_postfix_str(message, refresh=False)
            bars[0].refresh()

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
    if bars:
        bars[0].close()
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
    parser.add_argument("--shard-size", type=int, help="rows per shard of a built index (default: the run's)")
    parser.add_argument("--device", default="auto", help="embedding device: auto, cpu or cuda")
    add_search_flags(parser, "the run preset's")
    parser.set_defaults(func=_submit)
