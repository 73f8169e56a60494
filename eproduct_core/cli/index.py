"""`eproduct index build|verify|info|tune|tables|partitions|ann` and `eproduct search`: the sharded LSH index from
the command line.

`index build`'s --kind --bits --shard-size --seed --centre make one `IndexSpec`; `search`'s settings are the shared
flag set (search_flags.py) over the index's own defaults; `index tune` and `build --target-recall` store
tuned defaults (tuning.py); `index partitions` (or `build --partitions`) stores the coarse partitions
(partitions.py) that `search --partition-probes` and the tuner use; `index ann` stores the optional faiss HNSW graph (ann_graph.py) that
`search --backend hnsw` uses.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..settings import DEFAULT_BITS, DEFAULT_EF_CONSTRUCTION, DEFAULT_GRAPH_M, DEFAULT_SHARD_SIZE, GRAPH_TYPES
from .search_flags import add_search_flags, search_settings


def _one_blas_thread() -> None:
    """Per-query numpy work is fastest with one BLAS/OpenMP thread; only effective before numpy loads."""
    if "numpy" not in sys.modules:
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, "1")


def _load_vectors(path: str):
    import numpy as np

    from ..errors import EproductError

    try:
        vectors = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        reason = str(err) or "empty or truncated file"
        raise EproductError(f"Cannot read {path} as a .npy matrix ({reason}). Save it with numpy.save.") from err
    if vectors.ndim != 2 or vectors.dtype.kind != "f":
        raise EproductError(
            f"{path} holds a {vectors.dtype} array of shape {vectors.shape}; give a float16/float32 (rows, dim) matrix."
        )
    return vectors


RESIDUAL_HELP = (
    "also code each row's offset from its partition's centroid (eproduct_core/residual.py): searches that probe "
    "partitions rank rows by these codes; pays on embeddings that all lean one way (class probabilities)"
)


def _build(args: argparse.Namespace) -> int:
    _one_blas_thread()
    from tqdm import tqdm

    from ..embeddings import read_embeddings, read_ids
    from ..errors import EproductError
    from ..index import build_index
    from ..settings import IndexSpec

    if args.partitions is not None and args.no_vectors:
        raise EproductError("--partitions fits k-means on the stored vectors; drop --no-vectors or --partitions.")
    if args.residual and args.partitions is None:
        raise EproductError("--residual codes rows against their partition's centroid; add --partitions.")
    ids: list[str] | None
    if args.embeddings:
        emb = read_embeddings(args.embeddings, mmap=True)
        vectors, ids, kind = emb.vectors, emb.ids, args.kind or emb.kind
    else:
        vectors = _load_vectors(args.vectors)
        ids = read_ids(args.ids) if args.ids else None
        if ids is not None and len(ids) != len(vectors):
            raise EproductError(
                f"{args.ids} has {len(ids)} ids for {len(vectors)} rows in {args.vectors}; "
                "give one id per line, one per row."
            )
        kind = args.kind or "external"
    spec = IndexSpec(kind=kind, bits=args.bits, shard_size=args.shard_size, seed=args.seed, centre=args.centre)
    with tqdm(total=len(vectors), unit="row", desc="index build", disable=args.quiet) as bar:
        out = build_index(
            vectors,
            ids,
            args.out,
            bits=spec.bits,
            shard_size=spec.shard_size,
            seed=spec.seed,
            centre=spec.centre,
            kind=spec.kind,
            vectors_fp16=not args.no_vectors,
            progress=lambda done, total: bar.update(done - bar.n),
        )
    print(f"{out}: {len(vectors)} rows, {spec.bits} bits")
    if args.tables:
        _tables_into(out)
    if args.partitions is not None:
        _partitions_into(out, args.partitions or None, args.residual)
    if args.target_recall and not args.no_vectors:
        _tune_into(out, args.target_recall, _tune_queries(args.tune_queries, args.embeddings), args.quiet)
    return 0


# -- recall-targeted tuning (eproduct_core/tuning.py): `index build --target-recall`, `index tune` ----------


def _tune_queries(path: str | None, embeddings: str | None):
    """Sample queries for tuning: --tune-queries (.npy or embeddings folder), else the catalog's query
    embeddings beside an index-split --embeddings folder (EMB/...-index -> ...-query), else None."""
    from pathlib import Path

    from ..embeddings import read_embeddings, read_meta

    if path:
        return _load_vectors(path) if path.endswith(".npy") else read_embeddings(path, mmap=True).vectors
    if embeddings and Path(embeddings).name.endswith("index"):
        sibling = Path(embeddings).with_name(Path(embeddings).name[: -len("index")] + "query")
        if (sibling / "meta.json").is_file() and read_meta(sibling).get("split", "query") == "query":
            return read_embeddings(sibling, mmap=True).vectors
    return None


def _tune_into(folder, target: float, queries, quiet: bool) -> None:
    from ..index import open_index
    from ..tuning import describe, store_tuned, tune

    index = open_index(folder)
    result = tune(index, target=target, queries=queries, progress=None if quiet else lambda line: print(f"  {line}"))
    store_tuned(folder, result)
    s = result.settings
    lists = f"partition_probes {s.partition_probes}, " if s.partition_probes else ""
    print(
        f"{folder}: default search settings {lists}probe_bits {s.probe_bits}, candidates {s.candidates}, "
        f"shortlist {s.shortlist}, rerank {s.rerank}; {describe(result.estimate())}"
    )


def _verify_tables(folder) -> list[str]:
    from ..index import open_index
    from ..lsh_tables import verify_tables
    from ..partitions import verify_partitions
    from ..residual import verify_residual

    index = open_index(folder)
    return verify_tables(index) + verify_partitions(index) + verify_residual(index)


def _partitions_into(folder, lists: int | None, with_residual: bool = False) -> None:
    import numpy as np

    from ..index import open_index
    from ..partitions import build_partitions
    from ..residual import build_residual

    index = open_index(folder)
    made, seconds = build_partitions(index, lists)
    sizes = made.offsets[1:] - made.offsets[:-1]
    print(
        f"{folder}: {made.lists} partitions (rows per list: median {int(np.median(sizes))}, "
        f"largest {int(sizes.max())}), {made.memory_bytes() / 2**20:.1f} MiB, built in {seconds:.1f} s; "
        + (f"centroid sketch of rank {made.rank}" if made.rank else "no centroid sketch (it would not pay here)")
        + " (search with --partition-probes N)"
    )
    if with_residual:
        codes, seconds = build_residual(index)
        print(
            f"{folder}: residual codes ({index.bits} bits per row against its partition's centroid), "
            f"{codes.memory_bytes() / 2**20:.1f} MiB, built in {seconds:.1f} s (--partition-probes N searches them)"
        )


def _partitions(args: argparse.Namespace) -> int:
    _partitions_into(args.dir, args.lists, args.residual)
    return 0


def _tables_into(folder) -> None:
    import time

    from ..index import open_index
    from ..lsh_tables import build_tables

    start = time.perf_counter()
    made = build_tables(open_index(folder))
    print(
        f"{folder}: candidate tables {made.tables} x {made.key_bits}-bit keys, {made.memory_bytes() / 2**20:.1f} MiB, "
        f"built in {time.perf_counter() - start:.1f} s (search with --table-probes N)"
    )


def _tables(args: argparse.Namespace) -> int:
    _tables_into(args.dir)
    return 0


def _ann(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..ann_graph import build_graph
    from ..index import open_index

    index = open_index(args.dir)
    with tqdm(total=index.size, unit="row", desc="index ann", disable=args.quiet) as bar:
        entry = build_graph(
            index,
            graph_type=args.type,
            m=args.m,
            ef_construction=args.ef_construction,
            progress=lambda done, total: bar.update(done - bar.n),
        )
    size = (index.path / entry["file"]).stat().st_size
    print(
        f"{args.dir}: HNSW graph M {args.m}, efConstruction {args.ef_construction} over {index.size} rows, "
        f"{size / 2**20:.1f} MiB, built in {entry['build_s']:.1f} s (search with --backend hnsw --ef-search N)"
    )
    return 0


def _tune(args: argparse.Namespace) -> int:
    _one_blas_thread()
    _tune_into(args.dir, args.target_recall, _tune_queries(args.queries, None), args.quiet)
    return 0


def _add_tuning(commands: argparse._SubParsersAction, build: argparse.ArgumentParser) -> None:
    from ..tuning import DEFAULT_TARGET

    build.add_argument(
        "--target-recall",
        type=float,
        default=DEFAULT_TARGET,
        metavar="R",
        help=f"tune the default stage sizes for recall@10 >= R after the build (default {DEFAULT_TARGET}; 0: skip)",
    )
    build.add_argument(
        "--tune-queries",
        metavar="Q",
        help="sample queries for tuning (.npy or embeddings folder; default: the catalog's query embeddings "
        "beside --embeddings, else held-out index rows)",
    )
    build.add_argument(
        "--tables", action="store_true", help="also build prefix-bucket candidate tables (sublinear stage 1)"
    )
    build.add_argument(
        "--partitions",
        nargs="?",
        type=int,
        const=0,
        metavar="LISTS",
        help="also cut the rows into k-means partitions (sublinear stage 1; LISTS default about sqrt(rows) / 2), "
        "before tuning, so the tuner can pick how many to probe",
    )
    build.add_argument("--residual", action="store_true", help=RESIDUAL_HELP)
    parts = commands.add_parser(
        "partitions", help="cut an index's rows into k-means partitions (sublinear stage 1), stored in its folder"
    )
    parts.add_argument("dir", help="index folder (built with vectors)")
    parts.add_argument("--lists", type=int, help="partitions (default: the power of two nearest sqrt(rows) / 2)")
    parts.add_argument("--residual", action="store_true", help=RESIDUAL_HELP)
    parts.set_defaults(func=_partitions)
    tables = commands.add_parser("tables", help="build prefix-bucket candidate tables into an index folder")
    tables.add_argument("dir", help="index folder")
    tables.set_defaults(func=_tables)
    ann = commands.add_parser(
        "ann", help="build a faiss HNSW graph into an index folder (search it with --backend hnsw; needs faiss)"
    )
    ann.add_argument("dir", help="index folder (built with vectors)")
    ann.add_argument("--type", choices=GRAPH_TYPES, default=GRAPH_TYPES[0], help="graph type (default hnsw)")
    ann.add_argument("--m", type=int, default=DEFAULT_GRAPH_M, help=f"links per node (default {DEFAULT_GRAPH_M})")
    ann.add_argument(
        "--ef-construction",
        type=int,
        default=DEFAULT_EF_CONSTRUCTION,
        help=f"build beam width (default {DEFAULT_EF_CONSTRUCTION})",
    )
    ann.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    ann.set_defaults(func=_ann)
    tune = commands.add_parser(
        "tune", help="pick the stage sizes reaching a recall@10 target and store them as the index's defaults"
    )
    tune.add_argument("dir", help="index folder (built with vectors)")
    tune.add_argument("--target-recall", type=float, default=DEFAULT_TARGET, metavar="R", help="recall@10 to reach")
    tune.add_argument(
        "--queries", metavar="Q", help="sample queries (.npy or embeddings folder; default: held-out index rows)"
    )
    tune.add_argument("-q", "--quiet", action="store_true", help="no per-setting lines")
    tune.set_defaults(func=_tune)


def _verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import EproductError
    from ..index import verify_index

    if not Path(args.dir).is_dir():
        raise EproductError(f"{args.dir} is not a folder. Give an index folder from `eproduct index build`.")
    problems = verify_index(args.dir)
    if not problems:
        problems = _verify_tables(args.dir)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"{args.dir}: index is sound (files, row counts and checksums)")
    return 0


def _info(args: argparse.Namespace) -> int:
    from ..index import open_index

    index = open_index(args.dir)
    m = index.manifest
    disk = sum((index.path / f["file"]).stat().st_size for s in m["shards"] for f in s["files"].values())
    centred = ", centred" if "centre" in m else ""
    print(
        f"{index.path}: {index.size} rows, kind {index.kind!r}, dim {index.dim}, {index.bits} bits "
        f"(seed {m['seed']}{centred}), {len(m['shards'])} shards of up to {m['shard_size']} rows, "
        f"vectors {'stored' if index.has_vectors else 'not stored'}, {disk / 2**20:.1f} MiB, created {m['created']}"
    )
    if m.get("partitions"):
        rank = m["partitions"].get("sketch_rank", 0)
        sketch = f", centroid sketch of rank {rank}" if rank else ""
        print(f"  k-means partitions: {m['partitions']['lists']} lists{sketch} (search with --partition-probes N)")
    if m.get("residual"):
        print("  residual codes: searches with --partition-probes N rank the probed rows by them")
    if m.get("ann"):
        params = m["ann"].get("params", {})
        print(f"  HNSW graph {m['ann']['file']}: M {params.get('m')}, efConstruction {params.get('ef_construction')}")
    return 0


def _search(args: argparse.Namespace) -> int:
    _one_blas_thread()
    from ..index import open_index
    from ..search import search
    from ..submission import write_submission

    index = open_index(args.index)
    queries = _load_vectors(args.vectors)
    index.check_compatible(args.kind, queries.shape[1])
    results = search(index, queries, search_settings(args), threads=args.threads)
    write_submission(args.out, ((str(i), r.ids) for i, r in enumerate(results)))
    print(f"{args.out}: {len(results)} queries")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    index = subparsers.add_parser("index", help="build, verify or describe a sharded LSH index folder")
    commands = index.add_subparsers(dest="index_command", required=True)

    build = commands.add_parser("build", help="hash vectors into an index folder (replaces one atomically)")
    source = build.add_mutually_exclusive_group(required=True)
    source.add_argument("--embeddings", metavar="EMB", help="embeddings folder (eproduct embed)")
    source.add_argument("--vectors", metavar="FILE.npy", help="float16/float32 (rows, dim) matrix")
    build.add_argument("--ids", metavar="FILE.txt", help="one id per line for --vectors (default: row numbers)")
    build.add_argument("--kind", help="embedding kind to record (default: the folder's, or 'external')")
    build.add_argument(
        "--bits", type=int, default=DEFAULT_BITS, help="stored code length; shorter prefixes need no rebuild"
    )
    build.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help="rows per shard file set")
    build.add_argument("--seed", type=int, default=0, help="hyperplane seed")
    build.add_argument(
        "--centre",
        action="store_true",
        help="hash unit rows minus their mean (stored in the index; queries shifted alike): for embeddings that "
        "all lean one way, such as class probabilities or ReLU features",
    )
    build.add_argument("--no-vectors", action="store_true", help="do not store float16 vectors (no exact re-rank)")
    build.add_argument("--out", required=True, metavar="IDX", help="index folder to write")
    build.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    build.set_defaults(func=_build)
    _add_tuning(commands, build)

    verify = commands.add_parser("verify", help="check files, row counts and sha256 checksums; exit 1 on problems")
    verify.add_argument("dir", help="index folder")
    verify.set_defaults(func=_verify)

    info = commands.add_parser("info", help="describe an index folder")
    info.add_argument("dir", help="index folder")
    info.set_defaults(func=_info)

    search = subparsers.add_parser("search", help="search an index with query vectors; write a submission CSV")
    search.add_argument("--index", required=True, metavar="IDX", help="index folder")
    search.add_argument(
        "--vectors", required=True, metavar="Q.npy", help="query matrix (rows, dim); ids are row numbers"
    )
    search.add_argument("--kind", help="embedding kind of the queries (refused if it differs from the index's)")
    add_search_flags(search, "the index's own: top-k, k 10, all stored bits")
    search.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="queries searched in parallel (default: all cores)"
    )
    search.add_argument("--out", required=True, help="results CSV: query_id,id1 id2 ...")
    search.set_defaults(func=_search)
