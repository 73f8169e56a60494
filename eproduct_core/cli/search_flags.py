"""The one flag set of search settings shared by `search`, `evaluate`, `sweep` and `submit`.

`add_search_flags` declares --mode --bits --k --cutoff --rerank --shortlist --probe-bits --candidates
--table-probes, the candidate stage --backend --ef-search and the post-processing flags --whiten
--query-expansion --dba --kreciprocal
(every one defaulting to "not given"); `search_settings` builds the one `SearchSettings` from a base
(the run preset's, or `SearchSettings()` whose `None` fields let the index decide) and the flags given.
Validation is SearchSettings' own (and search.py's for what needs the index), never repeated here.
"""

from __future__ import annotations

import argparse

from ..settings import (
    BACKENDS,
    DEFAULT_CANDIDATES,
    DEFAULT_EF_SEARCH,
    DEFAULT_PROBE_BITS,
    DEFAULT_RERANK,
    DEFAULT_SHORTLIST,
    MODES,
    SEED_CUTOFF,
    SearchSettings,
)

FLAGS = (
    "mode",
    "bits",
    "k",
    "cutoff",
    "rerank",
    "shortlist",
    "probe_bits",
    "candidates",
    "table_probes",
    "partition_probes",
    "backend",
    "ef_search",
    "whiten",
    "query_expansion",
    "dba",
    "kreciprocal",
)  # SearchSettings fields


def add_search_flags(parser: argparse.ArgumentParser, default: str) -> None:
    """Add the search-settings flags; `default` says where unset ones come from (shown in --help)."""
    group = parser.add_argument_group(
        f"search settings (default: {default}; a flag left out keeps it, an unset field is the index's own)"
    )
    group.add_argument(
        "--mode",
        choices=MODES,
        help="topk: the k nearest; cutoff: every row under the code-cosine cutoff (the seed's). "
        "Switching the default's mode starts from the index's defaults for the new mode (keeping bits and k)",
    )
    group.add_argument("--bits", type=int, help="hash length searched: a prefix of the stored codes (default: all)")
    group.add_argument("--k", type=int, help="results per query (MAR@10 scores the first 10)")
    group.add_argument(
        "--cutoff",
        type=float,
        help=f"cutoff mode: code-cosine cutoff (default {SEED_CUTOFF}, the seed's); "
        "topk: keep exact cosine distance < cutoff",
    )
    group.add_argument(
        "--rerank",
        type=int,
        help=f"rows re-ranked by exact cosine (0 = off; default: the index's, else {DEFAULT_RERANK} in topk)",
    )
    group.add_argument(
        "--shortlist",
        type=int,
        help=f"rows ranked by weighted Hamming to pick the re-ranked ones (default: the index's, else {DEFAULT_SHORTLIST})",
    )
    group.add_argument(
        "--probe-bits",
        type=int,
        help=f"code prefix scanned over every row (default: the index's, else {DEFAULT_PROBE_BITS}; >= bits: exact Hamming)",
    )
    group.add_argument(
        "--candidates", type=int, help=f"rows kept by the prefix scan (default: the index's, else {DEFAULT_CANDIDATES})"
    )
    group.add_argument(
        "--table-probes",
        type=int,
        help="stage 1 from the index's candidate tables (`eproduct index tables`): buckets probed per table "
        "(0 = the flat prefix scan; default: the index's, else 0)",
    )
    group.add_argument(
        "--partition-probes",
        type=int,
        help="stage 1 from the index's partitions (`eproduct index partitions`): lists probed per query, their "
        "rows prefix-scanned (0 = the flat prefix scan over every row; default: the index's, else 0)",
    )
    group.add_argument(
        "--backend",
        choices=BACKENDS,
        help="candidate stage: lsh (the stages above; default) or hnsw, the index's faiss graph "
        '(`eproduct index ann`; needs faiss: pip install "eproduct[ann]"), exact cosine on the stored vectors',
    )
    group.add_argument(
        "--ef-search", type=int, help=f"hnsw: the search beam (default {DEFAULT_EF_SEARCH}; at least k is used)"
    )

    post = parser.add_argument_group("post-processing of a top-k search's top 100 (postprocess.py; default: off)")
    post.add_argument(
        "--whiten", action="store_const", const=True, help="PCA-whiten queries and rows (fitted on the index)"
    )
    post.add_argument("--query-expansion", type=int, metavar="N", help="alpha-QE over the top N results (0 = off)")
    post.add_argument("--dba", type=int, metavar="N", help="database-side augmentation over N neighbours (0 = off)")
    post.add_argument("--kreciprocal", action="store_const", const=True, help="k-reciprocal re-ranking of the top 100")


def search_settings(args: argparse.Namespace, base: SearchSettings | None = None) -> SearchSettings:
    """`base` (default `SearchSettings()`) with the flags given applied: the one SearchSettings of a command.

    A --mode other than the base's starts from `SearchSettings(mode=..., bits=base.bits, k=base.k)`: the
    base's cutoff and stage sizes belong to its own mode (a cutoff-mode 0.1 is no top-k cosine cutoff).
    """
    base = base or SearchSettings()
    given = {name: getattr(args, name) for name in FLAGS if getattr(args, name, None) is not None}
    if given.get("mode", base.mode) != base.mode:
        base = SearchSettings(mode=given["mode"], bits=base.bits, k=base.k if base.k is not None else 10)
    return base.replace(**given)
