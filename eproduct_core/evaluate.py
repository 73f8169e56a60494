"""Evaluation of a search: per-query results and scores, a summary, and sweeps over search settings.

Owns `EvaluationResult`, `evaluate_results` (score ranked id lists), `evaluate_search` (search an
opened index with already-computed query vectors, timing each query, then score), `evaluate_submission`
(score a challenge-format submission on the same scale) and `sweep` (one evaluation per cell of a grid
of `SearchSettings` fields, e.g. hash length x cutoff: each cell is `base.replace(**cell)`; cheap
because shorter codes are prefixes of the stored ones and the query vectors are computed once).
Every search goes through `search.search(index, queries, settings)` with the one `SearchSettings`; the
summary records the settings as the search resolved them for the index (`search.resolve`).

Queries whose image failed to embed: `evaluate_search(..., all_query_ids=catalog queries)` scores every
catalog query, a query without a vector as an empty result list (recall 0), and counts them in
`summary["not_embedded"]`; `eproduct evaluate --run` and `eproduct submit` both score this way, so one
run has one MAR@10. numpy/pandas only: never imports torch.

Summary keys (all scores are means over queries that have at least one true match):
  mar@10_G      MAR@10 normalised by |G| (the report's eq. 5-6, the challenge's score)
  mar@10_min    MAR@10 normalised by min(10, |G|)
  recall@K      mean recall@K with the |G| normalisation, for K in `ks`; computed on the returned list,
                so recall@100 needs at least 100 results per query (mode "cutoff", or k >= 100)
  mrr           mean reciprocal rank of the first true match
  mean_candidates, median_candidates   index items that passed the cutoff / were scanned as candidates
  no_result, no_result_fraction        queries whose result list is empty
  latency_median_ms, latency_p95_ms    per-query search time (NaN when not timed)
  not_embedded                         catalog queries scored 0 because their image failed to embed
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .atomic import atomic_path, write_text_atomic
from .errors import EproductError
from .metrics import first_hit_rank, hits_at_k, recall_at_k
from .progress import CountProgress
from .search import SearchResult, resolve, search
from .settings import SearchSettings

log = logging.getLogger(__name__)
DEFAULT_KS = (1, 5, 10, 100)  # recall@K reported in every summary
TOP_SHOWN = 10  # ids kept per query in the per-query table (the submission's top 10)


@dataclass(frozen=True)
class EvaluationResult:
    """Per-query rows (one per query) and the summary dict (see the module docstring for its keys)."""

    per_query: pd.DataFrame  # query_id, n_true, n_results, candidates, latency_ms, hits@10, recall@K, ..., top_ids
    summary: dict  # the scalar scores and the settings they were measured with
    results: list[list[str]] = field(default_factory=list, repr=False)  # full ranked ids per query, row order

    def submission_rows(self, k: int = 10) -> list[tuple[str, list[str]]]:
        """(query_id, top-k ids) pairs for `submission.write_submission`."""
        return [(str(q), list(ids[:k])) for q, ids in zip(self.per_query["query_id"], self.results, strict=False)]

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write `per_query.csv` and `summary.json` into `out_dir`; returns both paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        csv_path, json_path = out / "per_query.csv", out / "summary.json"
        with atomic_path(csv_path) as tmp:
            self.per_query.to_csv(tmp, index=False)
        write_text_atomic(json_path, json.dumps(_jsonable(self.summary), indent=2) + "\n")
        return csv_path, json_path


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if np.isnan(value) else float(value)
    return value


def _nanmean(values: Iterable[float]) -> float:
    array = np.asarray(list(values), dtype=np.float64)
    array = array[~np.isnan(array)]
    return float(array.mean()) if array.size else float("nan")


def evaluate_results(
    query_ids: Sequence[str],
    results: Sequence[Sequence[str]],
    groundtruth: Mapping[str, set[str]],
    *,
    candidates: Sequence[int] | None = None,
    latencies_ms: Sequence[float] | None = None,
    settings: SearchSettings | dict | None = None,
    ks: Sequence[int] = DEFAULT_KS,
) -> EvaluationResult:
    """Score ranked id lists (`results[i]` for `query_ids[i]`) against groundtruth (query_id -> true ids).

    A query without groundtruth gets NaN recalls and is left out of every mean; `candidates` defaults
    to the number of results, `latencies_ms` to NaN.
    """
    if len(results) != len(query_ids):
        raise ValueError(f"{len(results)} result lists for {len(query_ids)} queries")
    n = len(query_ids)
    candidates = [len(r) for r in results] if candidates is None else list(candidates)
    latencies = [float("nan")] * n if latencies_ms is None else [float(x) for x in latencies_ms]
    rows = []
    for i, (query_id, ranked) in enumerate(zip(query_ids, results, strict=False)):
        truth = set(groundtruth.get(str(query_id), set()))
        ranked = list(ranked)
        row: dict[str, Any] = {
            "query_id": str(query_id),
            "n_true": len(truth),
            "n_results": len(ranked),
            "candidates": int(candidates[i]),
            "latency_ms": latencies[i],
            "hits@10": hits_at_k(ranked, truth, 10) if truth else 0,
        }
        for k in ks:
            row[f"recall@{k}"] = recall_at_k(ranked, truth, k, "G")
        row["recall@10_min"] = recall_at_k(ranked, truth, 10, "min")
        rank = first_hit_rank(ranked, truth) if truth else None
        row["first_hit_rank"] = float("nan") if rank is None else rank
        row["top_ids"] = " ".join(ranked[:TOP_SHOWN])
        rows.append(row)
    columns = [
        "query_id",
        "n_true",
        "n_results",
        "candidates",
        "latency_ms",
        "hits@10",
        *[f"recall@{k}" for k in ks],
        "recall@10_min",
        "first_hit_rank",
        "top_ids",
    ]
    per_query = pd.DataFrame(rows, columns=columns)
    summary = summarize(per_query, ks)
    if settings is not None:
        summary["settings"] = dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else dict(settings)
    return EvaluationResult(per_query=per_query, summary=summary, results=[list(r) for r in results])


def summarize(per_query: pd.DataFrame, ks: Sequence[int] = DEFAULT_KS) -> dict:
    """The summary dict of a per-query table (keys in the module docstring)."""
    scored = per_query[per_query["n_true"] > 0]
    ranks = scored["first_hit_rank"].to_numpy(dtype=np.float64)
    latency = per_query["latency_ms"].to_numpy(dtype=np.float64)
    timed = latency[~np.isnan(latency)]
    no_result = int((per_query["n_results"] == 0).sum())
    summary: dict[str, Any] = {
        "queries": int(len(per_query)),
        "scored_queries": int(len(scored)),
        "mar@10_G": _nanmean(scored["recall@10"]) if "recall@10" in scored else float("nan"),
        "mar@10_min": _nanmean(scored["recall@10_min"]),
    }
    for k in ks:
        summary[f"recall@{k}"] = _nanmean(scored[f"recall@{k}"])
    reciprocal = np.zeros_like(ranks)
    np.divide(1.0, ranks, out=reciprocal, where=~np.isnan(ranks))
    summary["mrr"] = float(reciprocal.mean()) if len(ranks) else float("nan")
    summary["mean_candidates"] = float(per_query["candidates"].mean()) if len(per_query) else float("nan")
    summary["median_candidates"] = float(per_query["candidates"].median()) if len(per_query) else float("nan")
    summary["no_result"] = no_result
    summary["no_result_fraction"] = no_result / len(per_query) if len(per_query) else float("nan")
    summary["latency_median_ms"] = float(np.median(timed)) if timed.size else float("nan")
    summary["latency_p95_ms"] = float(np.percentile(timed, 95)) if timed.size else float("nan")
    return summary


def run_search(
    index,
    query_vectors: np.ndarray,
    settings: SearchSettings,
    *,
    batch_size: int = 1,
    progress: CountProgress | None = None,
) -> tuple[list[SearchResult], list[float]]:
    """Search all queries in batches of `batch_size`; returns (SearchResults, per-query ms).

    With batch_size 1 each latency is one query's own search time; with larger batches it is the
    batch's time divided by its size (a throughput figure, not a latency).
    """
    vectors = np.asarray(query_vectors, dtype=np.float32)
    results: list[SearchResult] = []
    latencies: list[float] = []
    for start in range(0, len(vectors), max(1, batch_size)):
        block = vectors[start : start + max(1, batch_size)]
        began = time.perf_counter()
        found = search(index, block, settings)
        elapsed = (time.perf_counter() - began) * 1000.0
        results.extend(found)
        latencies.extend([elapsed / len(block)] * len(block))
        if progress is not None:
            progress(min(start + len(block), len(vectors)), len(vectors))
    return results, latencies


def evaluate_search(
    index,
    query_vectors: np.ndarray,
    query_ids: Sequence[str],
    groundtruth: Mapping[str, set[str]],
    settings: SearchSettings,
    *,
    all_query_ids: Sequence[str] | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 1,
    progress: CountProgress | None = None,
) -> EvaluationResult:
    """Search an opened index (`index.open_index`) with query vectors (q, d) and score the results.

    `all_query_ids` (e.g. every catalog query): score these, in this order; one absent from `query_ids`
    (its image failed to embed) gets an empty result list, scores 0 and is counted in `not_embedded`.
    The summary's "settings" are `settings` as resolved for this index (`search.resolve`).
    """
    if len(query_vectors) != len(query_ids):
        raise ValueError(f"{len(query_vectors)} query vectors for {len(query_ids)} query ids")
    found, latencies = run_search(index, query_vectors, settings, batch_size=batch_size, progress=progress)
    by_query = {str(q): (r, ms) for q, r, ms in zip(query_ids, found, latencies, strict=True)}
    scored = [str(q) for q in query_ids] if all_query_ids is None else [str(q) for q in all_query_ids]
    missing = [q for q in scored if q not in by_query]
    if missing:
        log.warning(
            "%d of %d queries have no vector (their image failed to embed): each scores 0", len(missing), len(scored)
        )
    result = evaluate_results(
        scored,
        [list(by_query[q][0].ids) if q in by_query else [] for q in scored],
        groundtruth,
        candidates=[int(by_query[q][0].candidates) if q in by_query else 0 for q in scored],
        latencies_ms=[by_query[q][1] if q in by_query else float("nan") for q in scored],
        settings=resolve(index, settings),
        ks=ks,
    )
    result.summary["not_embedded"] = len(missing)
    result.summary["timing"] = "per query" if batch_size == 1 else f"batches of {batch_size} (throughput)"
    return result


def evaluate_submission(
    submission: Mapping[str, Sequence[str]],
    groundtruth: Mapping[str, set[str]],
    query_ids: Sequence[str] | None = None,
    *,
    ks: Sequence[int] = DEFAULT_KS,
) -> EvaluationResult:
    """Score a submission (query_id -> ranked ids, `submission.read_submission`).

    `query_ids` defaults to the groundtruth's queries; a query absent from the submission gets an
    empty list (recall 0).
    """
    ids = list(groundtruth) if query_ids is None else [str(q) for q in query_ids]
    return evaluate_results(ids, [list(submission.get(q, [])) for q in ids], groundtruth, ks=ks)


SWEEP_COLUMNS = (
    "mar@10_G",
    "mar@10_min",
    "recall@1",
    "recall@100",
    "mean_candidates",
    "no_result",
    "latency_median_ms",
    "latency_p95_ms",
)


SWEEP_SETTINGS = ("mode", "bits", "cutoff", "k", "rerank", "shortlist", "probe_bits", "candidates")


def sweep(
    index,
    query_vectors: np.ndarray,
    query_ids: Sequence[str],
    groundtruth: Mapping[str, set[str]],
    base: SearchSettings,
    grid: Mapping[str, Sequence[Any]],
    *,
    all_query_ids: Sequence[str] | None = None,
    batch_size: int = 1,
    progress: CountProgress | None = None,
) -> pd.DataFrame:
    """One evaluation per cell of `grid` (SearchSettings field -> values), e.g. {"bits": [...], "cutoff": [...]}.

    Each cell searches with `base.replace(**cell)` (`all_query_ids` as for `evaluate_search`). Returns a DataFrame with one row per cell: the
    settings as resolved for the index (SWEEP_SETTINGS) and SWEEP_COLUMNS. A cell the index cannot run
    (e.g. more bits than it stores) is skipped with a log message; when no cell can run, an EproductError
    says why (an empty table is never a result).
    """
    names = list(grid)
    unknown = [n for n in names if n not in {f.name for f in dataclasses.fields(SearchSettings)}]
    if unknown:
        raise EproductError(f"Unknown search settings in the sweep grid: {unknown}. Known: {list(SWEEP_SETTINGS)}.")
    cells = [dict(zip(names, values, strict=True)) for values in itertools.product(*(list(grid[n]) for n in names))]
    rows, skipped = [], []
    for number, cell in enumerate(cells, start=1):
        settings = base.replace(**cell)
        try:
            resolved = resolve(index, settings)
        except EproductError as err:
            log.info("sweep: skipping %s (%s)", cell, err)
            skipped.append(f"{cell}: {err}")
            continue
        result = evaluate_search(
            index, query_vectors, query_ids, groundtruth, settings, all_query_ids=all_query_ids, batch_size=batch_size
        )
        row: dict[str, Any] = {name: getattr(resolved, name) for name in SWEEP_SETTINGS}
        row["cutoff"] = np.nan if resolved.cutoff is None else resolved.cutoff
        row.update({c: result.summary.get(c, np.nan) for c in SWEEP_COLUMNS})
        rows.append(row)
        if progress is not None:
            progress(number, len(cells))
    if not rows:
        raise EproductError(
            f"No cell of the sweep can run on index {getattr(index, 'path', index)} "
            f"(stores {getattr(index, 'bits', '?')} bits): {skipped[0] if skipped else 'the grid is empty'}. "
            "Choose values the index supports."
        )
    if skipped:
        log.warning("sweep: %d of %d cells skipped (first: %s)", len(skipped), len(cells), skipped[0])
    return pd.DataFrame(rows, columns=[*SWEEP_SETTINGS, *SWEEP_COLUMNS])


def format_summary(summary: Mapping[str, Any]) -> str:
    """A two-column text table of the summary's scalar entries (what the CLI prints)."""
    labels = {"mar@10_G": "MAR@10 (/|G|, report eq. 5-6)", "mar@10_min": "MAR@10 (/min(10,|G|))"}
    lines = []
    for key, value in summary.items():
        if isinstance(value, (dict, list)):
            continue
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"{labels.get(key, key):<32} {text}")
    if isinstance(summary.get("settings"), dict):
        lines.append("settings: " + ", ".join(f"{k}={v}" for k, v in summary["settings"].items()))
    return "\n".join(lines)
