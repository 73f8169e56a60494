""" "Why was this match missed?": for each true match of one query, where it stands and what would find it.

Owns `why_missed`. Built on `search.explain` (distances, Hamming and weighted Hamming ranks, the cutoff
that would admit it, the shortest hash length within the cutoff) and adds what explain cannot know alone: its rank in the
actual results, and settings under which a real search returns it in the top k, each confirmed by
running that search (so tie-breaking and the prefix scan are accounted for):

- cutoff_needed: the search admits an item when its code cosine < cutoff, so any cutoff above the
  match's code cosine admits it; `cutoff_retrieves` says whether the search at the smallest such
  cutoff (the next float above it) also ranks it in the top k (items with smaller code cosine rank
  before it whatever the cutoff, so no larger cutoff does better).
- rerank_needed (mode "topk"): the exact re-rank takes the rows nearest by weighted Hamming (search.py,
  stage 3), so with stored vectors it is the match's 1-based weighted Hamming rank (its Hamming rank
  without them); the search at that depth must return it, else NaN (k items beat it on exact cosine,
  or it falls outside the Hamming shortlist).
- bits_needed: the shortest of `bit_lengths` at which the search (other settings unchanged) returns it.
numpy/pandas only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .search import explain, resolve, search
from .settings import SearchSettings

TOP = 10  # the top k a match must reach when the settings give no k (cutoff mode): MAR@10's
BIT_LENGTHS = (8, 12, 16, 20, 24, 32, 48, 64, 96, 128, 192, 256, 512, 1024)  # hash lengths tried for bits_needed
COLUMNS = [
    "index_id",
    "row",
    "shard",
    "rank",
    "retrieved",
    "hamming",
    "code_cosine",
    "cosine",
    "hamming_rank",
    "weighted_rank",
    "cutoff_needed",
    "cutoff_retrieves",
    "rerank_needed",
    "shortest_bits_within_cutoff",
    "bits_needed",
    "partition_rank",
    "reason",
]


def _ids_found(index, query: np.ndarray, settings: SearchSettings) -> list[str]:
    return list(search(index, query[None, :], settings)[0].ids)


def why_missed(
    index,
    query_vector: np.ndarray,
    truth: set[str],
    settings: SearchSettings,
    *,
    bit_lengths: Sequence[int] = BIT_LENGTHS,
) -> pd.DataFrame:
    """One row per true match of the query (matches not in the index are listed with row -1).

    Columns: index_id, row, shard, rank (1-based in the actual results, NaN when absent), retrieved,
    hamming, code_cosine, cosine (at settings.bits), hamming_rank, weighted_rank (1-based), cutoff_needed,
    cutoff_retrieves, rerank_needed, shortest_bits_within_cutoff, bits_needed, partition_rank (1-based rank
    of its partition among the query's, NaN without partitions), reason. Variants are
    `settings.replace(...)` (their other `None` fields still the index's); the reasons quote `settings` as
    resolved for the index (`search.resolve`). Without a k, the top TOP counts.
    """
    query = np.asarray(query_vector, dtype=np.float32).ravel()
    settings = settings if settings.k is not None else settings.replace(k=TOP)
    found = _ids_found(index, query, settings)
    rank_of: dict[str, int] = {}
    for position, item in enumerate(found, start=1):
        rank_of.setdefault(item, position)
    row_of = index.row_numbers()
    present = sorted(i for i in truth if i in row_of)
    resolved = resolve(index, settings)
    explained = explain(index, query, [row_of[i] for i in present], settings)
    lengths = [b for b in bit_lengths if b <= index.bits]
    by_bits = {b: set(_ids_found(index, query, settings.replace(bits=b))) for b in lengths}
    rows = [_row(index, query, info, rank_of.get(info.id), settings, resolved, by_bits) for info in explained]
    rows += [{"index_id": i, "row": -1, "reason": "not in this index"} for i in sorted(set(truth) - set(present))]
    return pd.DataFrame(rows, columns=COLUMNS)


def _row(index, query, info, rank, settings: SearchSettings, resolved: SearchSettings, by_bits) -> dict:
    cutoff_needed = float(info.cutoff_needed)
    k = int(resolved.k or TOP)
    cutoff_retrieves = False
    if settings.mode == "cutoff":
        loose = settings.replace(cutoff=min(2.0, float(np.nextafter(cutoff_needed, np.inf))))
        cutoff_retrieves = info.id in _ids_found(index, query, loose)
    rerank_needed = float("nan")
    if settings.mode == "topk" and (index.has_vectors or info.hamming_rank < k):
        depth = (info.weighted_rank if index.has_vectors else info.hamming_rank) + 1
        rerank = depth if index.has_vectors else 0
        if info.id in _ids_found(index, query, settings.replace(rerank=rerank)):
            rerank_needed = float(depth)
    bits_needed = next((b for b in sorted(by_bits) if info.id in by_bits[b]), None)
    row = {
        "index_id": info.id,
        "row": info.row,
        "shard": info.shard,
        "rank": float("nan") if rank is None else float(rank),
        "retrieved": rank is not None and rank <= k,
        "hamming": info.hamming,
        "code_cosine": info.code_cosine,
        "cosine": float("nan") if info.cosine is None else info.cosine,
        "hamming_rank": info.hamming_rank + 1,
        "weighted_rank": info.weighted_rank + 1,
        "cutoff_needed": cutoff_needed,
        "cutoff_retrieves": bool(cutoff_retrieves),
        "rerank_needed": rerank_needed,
        "shortest_bits_within_cutoff": info.shortest_bits,
        "bits_needed": bits_needed,
        "partition_rank": float("nan") if info.partition_rank is None else float(info.partition_rank + 1),
    }
    row["reason"] = _reason(row, resolved)
    return row


def _reason(row: dict, settings: SearchSettings) -> str:
    if row["retrieved"]:
        return f"retrieved at rank {int(row['rank'])}"
    if settings.mode == "cutoff":
        if row["code_cosine"] >= settings.cutoff:
            text = (
                f"code cosine {row['code_cosine']:.3f} at {settings.bits} bits is not below the cutoff "
                f"{settings.cutoff:g}; any cutoff above {row['cutoff_needed']:.3f} admits it"
            )
            if not row["cutoff_retrieves"]:
                text += f", but {settings.k} or more items with a smaller code cosine would still rank before it"
        else:
            text = f"within the cutoff, but {settings.k} or more admitted items rank before it"
    else:
        text = f"Hamming rank {row['hamming_rank']} at {settings.bits} bits"
        if settings.partition_probes and row["partition_rank"] > settings.partition_probes:
            text = (
                f"in the query's partition {int(row['partition_rank'])} by centroid, beyond the "
                f"{settings.partition_probes} probed; " + text
            )
        if settings.rerank:
            text += f", weighted Hamming rank {row['weighted_rank']}"
            if row["weighted_rank"] > settings.rerank:
                text += f", beyond the re-rank depth {settings.rerank}"
        if np.isnan(row["rerank_needed"]):
            text += f"; no re-rank depth brings it into the top {settings.k}"
        else:
            text += f"; re-ranking {int(row['rerank_needed'])} candidates would return it"
    if row["bits_needed"] is not None:
        text += f"; a {row['bits_needed']}-bit hash would return it"
    return text
