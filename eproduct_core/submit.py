"""Make a challenge submission with a training run: embed the queries, search, write the top 10 per query.

Owns `make_submission`. Settings come from the run's preset (config.json: `embed_kind` and `search`,
e.g. the seed preset's kind `seed`, 20 bits, 8,000 rows per shard, cutoff 0.1) unless overridden.
Without an index it embeds the catalog's index split and builds the index into the run folder's
cache (run_cache.py), reused by the next call. When the catalog has groundtruth the submission is
also scored (MAR@10, both normalisations). Torch is used only to embed (lazily, through embed.py).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .catalog import read_catalog
from .config import SearchSettings
from .evaluate import EvaluationResult, evaluate_results, run_search
from .run_cache import run_config, run_index, split_embeddings
from .submission import write_submission

log = logging.getLogger(__name__)
SUBMISSION_TOP = 10  # ids per query in the challenge's format
Progress = Callable[[str, int, int], None]  # progress(stage, done, total)


@dataclass(frozen=True)
class SubmissionReport:
    """What `make_submission` wrote and, with groundtruth, how it scores."""

    path: Path  # the submission file
    settings: SearchSettings  # the search settings used
    index_path: Path  # the index searched
    evaluation: EvaluationResult | None  # scores when the catalog has groundtruth, else None


def run_settings(run_dir: str | Path, **overrides) -> SearchSettings:
    """The run preset's search settings (kind = the preset's embed_kind) with non-None `overrides` applied."""
    config = run_config(run_dir)
    base = dataclasses.replace(config.search, kind=config.embed_kind)
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


def make_submission(
    run_dir: str | Path,
    catalog_dir: str | Path,
    out: str | Path,
    *,
    index=None,
    settings: SearchSettings | None = None,
    device: str = "auto",
    progress: Progress | None = None,
) -> SubmissionReport:
    """Write `out` (one line per catalog query: `query_id,id1 ... id10`) and score it when possible.

    `index`: an opened Index, an index folder, or None (build/reuse one in RUN/cache/).
    """
    settings = settings or run_settings(run_dir)

    def stage(name: str):
        return None if progress is None else (lambda done, total: progress(name, done, total))

    if index is None:
        index = run_index(
            run_dir,
            catalog_dir,
            settings.kind,
            bits=settings.bits,
            shard_size=settings.shard_size,
            device=device,
            progress=stage("embedding the index split"),
        )
    elif isinstance(index, (str, Path)):
        from .index import open_index

        index = open_index(index)
    queries = split_embeddings(
        run_dir, catalog_dir, "query", settings.kind, device=device, progress=stage("embedding the queries")
    )
    vectors = np.asarray(queries.vectors, dtype=np.float32)
    index.check_compatible(settings.kind, vectors.shape[1])
    found, latencies = run_search(index, vectors, settings, progress=stage("searching"))
    by_query = {q: list(r.ids) for q, r in zip(queries.ids, found, strict=False)}
    catalog = read_catalog(catalog_dir)
    all_queries = [str(q) for q in catalog.query["image_id"]]
    missing = [q for q in all_queries if q not in by_query]
    if missing:
        log.warning("%d queries could not be embedded (unreadable images); they get an empty line", len(missing))
    path = write_submission(out, [(q, by_query.get(q, [])[:SUBMISSION_TOP]) for q in all_queries])
    evaluation = None
    truth = catalog.matches()
    if truth:
        candidates = {q: int(r.candidates) for q, r in zip(queries.ids, found, strict=False)}
        latency = dict(zip(queries.ids, latencies, strict=False))
        evaluation = evaluate_results(
            all_queries,
            [by_query.get(q, []) for q in all_queries],
            truth,
            candidates=[candidates.get(q, 0) for q in all_queries],
            latencies_ms=[latency.get(q, float("nan")) for q in all_queries],
            settings=settings,
        )
    return SubmissionReport(path=Path(path), settings=settings, index_path=Path(index.path), evaluation=evaluation)
