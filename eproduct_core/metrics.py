"""Pure retrieval metrics (numpy only): recall@k for one query, MAR@k over queries, and helpers.

Definitions (the report's eq. 5-6). For one query with ranked results R = (r_1, r_2, ...) and its
set of true matches G (|G| >= 1):

    hits@k(R, G)        = |{r_1, ..., r_k} ∩ G|        (a repeated id counts once)
    recall@k, "G"       = hits@k / |G|                  (the challenge's / report's normalisation)
    recall@k, "min"     = hits@k / min(k, |G|)          (1.0 is reachable even when |G| > k)

    MAR@k = mean over queries of recall@k.

With "G", a query with |G| > k can never reach 1 (at most k/|G|); "min" removes that ceiling. Both are
offered and always named. A query that is in the groundtruth but absent from a submission counts with
an empty result list (recall 0). A query with no true matches (G empty) has no defined recall: it
scores NaN in per-query arrays and is left out of the mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

NORMALIZATIONS = ("G", "min")  # "G": divide by |G| (report eq. 5-6); "min": divide by min(k, |G|)


def _check(k: int, normalize: str) -> None:
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, not {k}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, not {normalize!r}")


def hits_at_k(retrieved: Sequence[str], relevant: set[str], k: int) -> int:
    """Number of distinct true matches among the first k retrieved ids (duplicates count once)."""
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, not {k}")
    return len(set(list(retrieved)[:k]) & set(relevant))


def recall_at_k(retrieved: Sequence[str], relevant: set[str], k: int, normalize: str = "G") -> float:
    """recall@k of one query: hits@k / |G| (normalize="G") or hits@k / min(k, |G|) ("min").

    Returns NaN when `relevant` is empty (recall is undefined without true matches).
    """
    _check(k, normalize)
    relevant = set(relevant)
    if not relevant:
        return float("nan")
    denominator = len(relevant) if normalize == "G" else min(int(k), len(relevant))
    return hits_at_k(retrieved, relevant, k) / denominator


def recalls_at_k(
    retrieved: Sequence[Sequence[str]], relevant: Sequence[set[str]], k: int = 10, normalize: str = "G"
) -> np.ndarray:
    """Per-query recall@k as a float64 array (NaN for queries without true matches)."""
    if len(retrieved) != len(relevant):
        raise ValueError(f"{len(retrieved)} result lists for {len(relevant)} groundtruth sets")
    _check(k, normalize)
    return np.array(
        [recall_at_k(r, g, k, normalize) for r, g in zip(retrieved, relevant, strict=False)], dtype=np.float64
    )


def mar_at_k(
    retrieved: Sequence[Sequence[str]], relevant: Sequence[set[str]], k: int = 10, normalize: str = "G"
) -> float:
    """MAR@k: the mean of recall@k over queries that have true matches (see the module docstring).

    `retrieved[i]` is query i's ranked id list (empty for a query with no result), `relevant[i]` its
    true-match set. Raises ValueError when no query has a true match.
    """
    values = recalls_at_k(retrieved, relevant, k, normalize)
    defined = values[~np.isnan(values)]
    if defined.size == 0:
        raise ValueError("no query has a true match; MAR@k is undefined")
    return float(defined.mean())


def mar_of_submission(
    submission: Mapping[str, Sequence[str]], groundtruth: Mapping[str, set[str]], k: int = 10, normalize: str = "G"
) -> float:
    """MAR@k of a submission (query_id -> ranked ids) against groundtruth (query_id -> true-match set).

    Averages over the groundtruth's queries; a query missing from the submission scores 0, and
    submitted queries without groundtruth are ignored.
    """
    query_ids = [q for q, matches in groundtruth.items() if matches]
    return mar_at_k([submission.get(q, []) for q in query_ids], [groundtruth[q] for q in query_ids], k, normalize)


def first_hit_rank(retrieved: Sequence[str], relevant: set[str]) -> int | None:
    """1-based rank of the first true match in `retrieved`, or None when none is retrieved."""
    for rank, item in enumerate(retrieved, start=1):
        if item in relevant:
            return rank
    return None
