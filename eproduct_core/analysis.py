"""Distance analysis (the report's Fig. 4): true-match vs nearest-non-match distances, and cutoffs.

Owns `distance_table` (per query: the distances of its true matches and of its nearest non-matches,
as one tidy DataFrame the app can histogram), `cutoff_stats` (what one global cutoff keeps),
`best_global_cutoff` and `per_query_cutoffs` (how far each query's own best cutoff is from it).
numpy/pandas only.

The cutoff criterion. A cutoff t keeps an item when its distance d < t (as the seed's search does).
For query q with true-match distances M_q and nearest-non-match distances N_q, its score at t is

    J_q(t) = |{m in M_q : m < t}| / |M_q|  -  |{n in N_q : n < t}| / |N_q|

(the share of its true matches kept minus the share of its nearest non-matches kept; Youden's J;
the second term is 0 when N_q is empty). The best global cutoff maximises the mean of J_q over
queries; a query's own best cutoff maximises its J_q. Candidate cutoffs are the midpoints between
consecutive distinct distances, plus one below all (keeps nothing) and one above all (keeps all);
ties go to the smallest cutoff (or, per query, to the optimum closest to the global cutoff).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .search import explain, search
from .settings import SearchSettings

log = logging.getLogger(__name__)
METRICS = ("hamming", "code_cosine", "cosine")  # distance columns of a distance table
TABLE_COLUMNS = ["query_id", "pair", "index_id", "rank", "hamming", "code_cosine", "cosine", "shard"]


def distance_table(
    index,
    query_vectors: np.ndarray,
    query_ids: Sequence[str],
    groundtruth: Mapping[str, set[str]],
    *,
    bits: int | None = None,
    nonmatches: int = 10,
    nearest_by: str = "code_cosine",
) -> pd.DataFrame:
    """Tidy distances: one row per (query, true match) and per (query, nearest non-match).

    Columns: query_id, pair ("match" | "non-match"), index_id, rank (1-based rank of a non-match among
    the non-matches; NaN for matches), hamming, code_cosine (at `bits`), cosine (exact, NaN when the
    index stores no vectors), shard. Nearest non-matches are the first `nonmatches` items that are not
    true matches, ranked by `nearest_by`: "code_cosine" (the seed's cutoff distance, ties by row) or
    "hamming" (the top-k search's ranking). Queries without groundtruth are skipped.
    """
    if nearest_by not in ("code_cosine", "hamming"):
        raise ValueError(f"nearest_by must be 'code_cosine' or 'hamming', not {nearest_by!r}")
    # code cosine lies in [0, 1], so cutoff 1.5 admits every item, ranked by code cosine
    ranking = SearchSettings(mode="cutoff", cutoff=1.5) if nearest_by == "code_cosine" else SearchSettings()
    ranking = ranking.replace(bits=bits, rerank=0)
    row_of = index.row_numbers()
    rows = []
    vectors = np.asarray(query_vectors, dtype=np.float32)
    for vector, query_id in zip(vectors, query_ids, strict=False):
        truth = set(groundtruth.get(str(query_id), set()))
        if not truth:
            continue
        match_rows = [row_of[i] for i in sorted(truth) if i in row_of]
        found = search(index, vector[None, :], ranking.replace(k=len(truth) + nonmatches))[0]
        near = [(int(r), i) for r, i in zip(found.rows, found.ids, strict=False) if i not in truth][:nonmatches]
        rows += _explained(index, vector, query_id, "match", match_rows, [np.nan] * len(match_rows), ranking)
        rows += _explained(
            index,
            vector,
            query_id,
            "non-match",
            [r for r, _ in near],
            [rank for rank, _ in enumerate(near, start=1)],
            ranking,
        )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _explained(index, vector, query_id, pair, rows, ranks, settings: SearchSettings) -> list[dict]:
    if not rows:
        return []
    out = []
    for rank, info in zip(ranks, explain(index, vector, [int(r) for r in rows], settings), strict=False):
        out.append(
            {
                "query_id": str(query_id),
                "pair": pair,
                "index_id": info.id,
                "rank": rank,
                "hamming": info.hamming,
                "code_cosine": info.code_cosine,
                "cosine": np.nan if info.cosine is None else info.cosine,
                "shard": info.shard,
            }
        )
    return out


@dataclass(frozen=True)
class CutoffStats:
    """What one cutoff keeps over a distance table (keep when distance < cutoff)."""

    metric: str  # the distance column the cutoff applies to
    cutoff: float  # the cutoff
    score: float  # mean over queries of J_q (module docstring)
    match_fraction: float  # share of all true matches kept (pooled over queries)
    mean_match_fraction: float  # mean over queries of the share of their true matches kept
    queries_with_a_match: float  # share of queries with at least one true match kept
    mean_nonmatches_kept: float  # mean per query of nearest non-matches kept
    nonmatch_fraction: float  # share of all nearest non-matches kept (pooled)


def _check_metric(table: pd.DataFrame, metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")
    if table.empty:
        raise ValueError("the distance table is empty (no query with groundtruth)")
    if table[metric].isna().all():
        raise ValueError(f"the distance table has no {metric} values (an index without vectors has no exact cosine)")


def _groups(table: pd.DataFrame, metric: str) -> list[tuple[np.ndarray, np.ndarray]]:
    groups = []
    for _, frame in table.groupby("query_id", sort=True):
        matches = frame.loc[frame["pair"] == "match", metric].to_numpy(dtype=np.float64)
        others = frame.loc[frame["pair"] == "non-match", metric].to_numpy(dtype=np.float64)
        groups.append((matches[~np.isnan(matches)], others[~np.isnan(others)]))
    return groups


def _scores(matches: np.ndarray, others: np.ndarray, cutoffs: np.ndarray) -> np.ndarray:
    """J_q(t) for every candidate cutoff t."""
    kept = (matches[None, :] < cutoffs[:, None]).mean(axis=1) if matches.size else np.zeros(len(cutoffs))
    if others.size:
        kept = kept - (others[None, :] < cutoffs[:, None]).mean(axis=1)
    return kept


def candidate_cutoffs(values: np.ndarray) -> np.ndarray:
    """Midpoints between consecutive distinct values, plus one below the smallest and one above the largest."""
    distinct = np.unique(np.asarray(values, dtype=np.float64)[~np.isnan(values)])
    if distinct.size == 0:
        return np.array([0.0])
    step = max(1e-6, float(np.diff(distinct).min()) / 2 if distinct.size > 1 else 0.5)
    return np.concatenate([[distinct[0]], (distinct[1:] + distinct[:-1]) / 2, [distinct[-1] + step]])


def cutoff_stats(table: pd.DataFrame, cutoff: float, metric: str = "code_cosine") -> CutoffStats:
    """What `cutoff` keeps of the table's true matches and nearest non-matches."""
    _check_metric(table, metric)
    groups = _groups(table, metric)
    scores = [float(_scores(m, o, np.array([cutoff]))[0]) for m, o in groups]
    with_matches = [(m, o) for m, o in groups if m.size]
    all_matches = np.concatenate([m for m, _ in groups]) if groups else np.array([])
    all_others = np.concatenate([o for _, o in groups]) if groups else np.array([])
    return CutoffStats(
        metric=metric,
        cutoff=float(cutoff),
        score=float(np.mean(scores)),
        match_fraction=float((all_matches < cutoff).mean()) if all_matches.size else float("nan"),
        mean_match_fraction=float(np.mean([(m < cutoff).mean() for m, _ in with_matches]))
        if with_matches
        else float("nan"),
        queries_with_a_match=float(np.mean([(m < cutoff).any() for m, _ in with_matches]))
        if with_matches
        else float("nan"),
        mean_nonmatches_kept=float(np.mean([(o < cutoff).sum() for _, o in groups])),
        nonmatch_fraction=float((all_others < cutoff).mean()) if all_others.size else float("nan"),
    )


def best_global_cutoff(table: pd.DataFrame, metric: str = "code_cosine") -> CutoffStats:
    """The single cutoff that maximises the mean J_q over queries, with what it keeps."""
    _check_metric(table, metric)
    groups = _groups(table, metric)
    cutoffs = candidate_cutoffs(table[metric].to_numpy(dtype=np.float64))
    mean = np.mean([_scores(m, o, cutoffs) for m, o in groups], axis=0)
    best = float(cutoffs[int(np.argmax(mean))])  # argmax takes the first (smallest) of ties
    return cutoff_stats(table, best, metric)


def per_query_cutoffs(table: pd.DataFrame, global_cutoff: float, metric: str = "code_cosine") -> pd.DataFrame:
    """Each query's own best cutoff and its distance from `global_cutoff`.

    Columns: query_id, best_cutoff (the global cutoff when it is optimal for the query, else the
    optimal candidate closest to it), best_score (J_q there),
    global_score (J_q at the global cutoff), gap (best_cutoff - global_cutoff; > 0: the query wants a
    looser cutoff), lost (best_score - global_score).
    """
    _check_metric(table, metric)
    rows = []
    for query_id, frame in table.groupby("query_id", sort=True):
        ((matches, others),) = _groups(frame, metric)
        cutoffs = candidate_cutoffs(frame[metric].to_numpy(dtype=np.float64))
        scores = _scores(matches, others, cutoffs)
        optimal = cutoffs[np.isclose(scores, scores.max())]
        at_global = float(_scores(matches, others, np.array([global_cutoff]))[0])
        if np.isclose(at_global, scores.max()):
            best = float(global_cutoff)  # the global cutoff is already optimal for this query
        else:
            best = float(optimal[np.argmin(np.abs(optimal - global_cutoff))])
        rows.append(
            {
                "query_id": query_id,
                "best_cutoff": best,
                "best_score": float(scores.max()),
                "global_score": at_global,
                "gap": best - float(global_cutoff),
                "lost": float(scores.max()) - at_global,
            }
        )
    return pd.DataFrame(rows, columns=["query_id", "best_cutoff", "best_score", "global_score", "gap", "lost"])
