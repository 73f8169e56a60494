"""`eproduct evaluate` (score a run + index, or a submission, on a catalog's groundtruth) and `eproduct sweep`.

Query vectors come from `--run` (embedded with the run in the index's kind, cached in the run folder) or
`--queries` (an embeddings folder made elsewhere). The search settings are one `SearchSettings`
(search_flags.py): the run preset's with `--run`, else the index's own defaults, with the flags applied.
Every catalog query is scored; one without a vector (its image failed to embed) scores 0 and is counted.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .search_flags import add_search_flags, search_settings

log = logging.getLogger(__name__)
DEFAULT_SOURCE = "the run preset's with --run, else the index's own"


def base_settings(args: argparse.Namespace):
    """The run preset's SearchSettings (config.json `search`) with --run, else `SearchSettings()`."""
    from ..settings import SearchSettings

    if getattr(args, "run", None):
        from ..run_cache import run_config

        return run_config(args.run).search
    return SearchSettings()


def _tqdm_progress(description: str):
    from tqdm import tqdm

    bar = tqdm(desc=description, unit="img", leave=False)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def load_groundtruth(catalog) -> dict[str, set[str]]:
    from ..errors import EproductError

    truth = catalog.matches()
    if not truth:
        raise EproductError(
            f"Catalog {catalog.root} has no groundtruth.csv (query_id, index_id), so there is "
            "nothing to score against. Use a catalog with groundtruth, e.g. `eproduct catalog synth`."
        )
    return truth


def load_queries(args: argparse.Namespace, catalog_dir: str, kind: str):
    """(vectors, ids) of the catalog's queries in embedding `kind`: embedded with --run (cached) or --queries."""
    from ..embeddings import read_embeddings
    from ..errors import EproductError

    if getattr(args, "queries", None):
        emb = read_embeddings(args.queries)
        if emb.kind != kind:
            log.warning("query embeddings are %r but the index holds %r", emb.kind, kind)
        return emb.vectors.astype("float32"), emb.ids
    if not getattr(args, "run", None):
        raise EproductError(
            "Give --run RUN (embed the queries with a training run) or --queries EMB (an embeddings folder)."
        )
    from ..run_cache import split_embeddings

    emb = split_embeddings(
        args.run, catalog_dir, "query", kind, device=args.device, progress=_tqdm_progress("embedding queries")
    )
    return emb.vectors.astype("float32"), emb.ids


def _evaluate(args: argparse.Namespace) -> int:
    from ..catalog import read_catalog
    from ..errors import EproductError
    from ..evaluate import evaluate_search, evaluate_submission, format_summary

    catalog = read_catalog(args.catalog)
    truth = load_groundtruth(catalog)
    query_ids = [str(q) for q in catalog.query["image_id"]]
    if args.submission:
        import sys

        from ..submission import check_submission, read_submission_file

        submission = read_submission_file(args.submission)
        for warning in check_submission(submission, query_ids, catalog.index["image_id"].astype(str)):
            print(f"warning: {warning}", file=sys.stderr)
        result = evaluate_submission(submission.rows, truth, query_ids)
        out = Path(args.out) if args.out else Path(f"{args.submission}.eval")
    else:
        if not args.index:
            raise EproductError("Give --index IDX (an index folder from `eproduct index build`) or --submission FILE.")
        from ..index import open_index

        index = open_index(args.index)
        settings = search_settings(args, base_settings(args))
        kind = args.kind or index.kind
        vectors, ids = load_queries(args, args.catalog, kind)
        index.check_compatible(kind, vectors.shape[1])
        result = evaluate_search(index, vectors, ids, truth, settings, all_query_ids=query_ids)
        default_out = Path(args.run) / f"eval-{Path(args.index).name}" if args.run else Path("evaluation")
        out = Path(args.out) if args.out else default_out
    csv_path, json_path = result.write(out)
    print(format_summary(result.summary))
    print(f"per-query results: {csv_path}\nsummary: {json_path}")
    return 0


def _parse_list(text: str | None, cast) -> list | None:
    from ..errors import EproductError

    if text is None:
        return None
    try:
        return [cast(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise EproductError(f"Cannot read the list {text!r}; write comma-separated values like 8,16,20.") from err


def _sweep(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..catalog import read_catalog
    from ..errors import EproductError
    from ..evaluate import sweep
    from ..index import open_index

    catalog = read_catalog(args.catalog)
    truth = load_groundtruth(catalog)
    index = open_index(args.index)
    settings = search_settings(args, base_settings(args))
    kind = args.kind or index.kind
    vectors, ids = load_queries(args, args.catalog, kind)
    index.check_compatible(kind, vectors.shape[1])
    grid = {"bits": _parse_list(args.bits_list, int) or [settings.bits]}
    cutoffs = _parse_list(args.cutoffs, float)
    if cutoffs:
        if settings.mode != "cutoff":
            raise EproductError(
                f"--cutoffs sweeps the code-cosine cutoff of mode cutoff, but the settings are mode {settings.mode!r} "
                f"({'the run preset' if args.run else 'the default'}). Add --mode cutoff, or leave out --cutoffs."
            )
        grid["cutoff"] = cutoffs
    for name, text in (("rerank", args.reranks), ("k", args.ks)):
        values = _parse_list(text, int)
        if values:
            grid[name] = values
    query_ids = [str(q) for q in catalog.query["image_id"]]
    table = sweep(index, vectors, ids, truth, settings, grid, all_query_ids=query_ids, batch_size=args.batch)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
        print(f"sweep table: {args.out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    evaluate = subparsers.add_parser(
        "evaluate", help="MAR@10, recall@k, candidates and latency on a catalog's groundtruth"
    )
    evaluate.add_argument("--catalog", required=True, help="catalog folder with query.csv and groundtruth.csv")
    source = evaluate.add_mutually_exclusive_group()
    source.add_argument("--run", help="training run folder: embeds the queries (cached in RUN/cache/)")
    source.add_argument("--queries", help="an embeddings folder of the catalog's queries, instead of --run")
    source.add_argument("--submission", help="score a challenge-format submission file instead of searching")
    evaluate.add_argument("--index", help="index folder to search (with --run or --queries)")
    evaluate.add_argument("--out", help="folder for per_query.csv and summary.json (default: RUN/eval-INDEX)")
    evaluate.add_argument("--device", default="auto", help="embedding device: auto, cpu or cuda")
    evaluate.add_argument("--kind", help="embedding kind of the queries (default: the index's)")
    add_search_flags(evaluate, DEFAULT_SOURCE)
    evaluate.set_defaults(func=_evaluate)

    sweeper = subparsers.add_parser(
        "sweep", help="MAR@10, candidates and latency over hash length x cutoff (x re-rank, k)"
    )
    sweeper.add_argument("--catalog", required=True, help="catalog folder with groundtruth.csv")
    sweeper.add_argument("--index", required=True, help="index folder (stores the longest hash length swept)")
    source = sweeper.add_mutually_exclusive_group()
    source.add_argument("--run", help="training run folder: embeds the queries (cached)")
    source.add_argument("--queries", help="an embeddings folder of the catalog's queries")
    sweeper.add_argument("--bits-list", help="hash lengths, e.g. 8,16,20,32,64,128,256")
    sweeper.add_argument(
        "--cutoffs", help="code-cosine cutoffs, e.g. 0.05,0.1,0.2,0.3 (mode cutoff only: refused in topk)"
    )
    sweeper.add_argument("--reranks", help="re-rank depths, e.g. 0,100,1000")
    sweeper.add_argument("--ks", help="results per query, e.g. 10,100")
    sweeper.add_argument("--batch", type=int, default=1, help="queries per search call (1 = true per-query latency)")
    sweeper.add_argument("--out", help="write the table as CSV here")
    sweeper.add_argument("--device", default="auto", help="embedding device: auto, cpu or cuda")
    sweeper.add_argument("--kind", help="embedding kind of the queries (default: the index's)")
    add_search_flags(sweeper, DEFAULT_SOURCE)
    sweeper.set_defaults(func=_sweep)
