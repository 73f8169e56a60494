"""Make a challenge submission with a training run: embed the queries, search, write the top 10 per query.

Owns `make_submission`. Settings come from the run's config.json: its `search` (a SearchSettings, e.g.
the seed preset's cutoff mode at 20 bits, cutoff 0.1) and its `index` (an IndexSpec: the run's embed_kind,
8,000 rows per shard), unless the caller passes others. Without an index it embeds the catalog's index
split and builds the index into the run folder's cache (run_cache.py), reused by the next call. Every
catalog query gets a line; one whose image failed to embed gets an empty one and scores 0, exactly as
`eproduct evaluate --run` scores it (both go through `evaluate.evaluate_search(..., all_query_ids=)`).
When the catalog has groundtruth the submission is also scored (MAR@10, both normalisations). Torch is
used only to embed (lazily, through embed.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .catalog import read_catalog
from .evaluate import EvaluationResult, evaluate_search
from .progress import CountProgress, Progress, as_fraction
from .run_cache import run_config, run_index, split_embeddings
from .settings import IndexSpec, SearchSettings
from .submission import write_submission

log = logging.getLogger(__name__)
SUBMISSION_TOP = 10  # ids per query in the challenge's format


@dataclass(frozen=True)
class SubmissionReport:
    """What `make_submission` wrote and, with groundtruth, how it scores."""

    path: Path  # the submission file
    settings: SearchSettings  # the search settings used, as resolved for the index
    index_path: Path  # the index searched
    not_embedded: int  # catalog queries whose image failed to embed (an empty line each)
    evaluation: EvaluationResult | None  # scores when the catalog has groundtruth, else None


def run_defaults(run_dir: str | Path) -> tuple[IndexSpec, SearchSettings]:
    """The run preset's index build spec and search settings (config.json `index` and `search`)."""
    config = run_config(run_dir)
    return config.index, config.search


def make_submission(
    run_dir: str | Path,
    catalog_dir: str | Path,
    out: str | Path,
    *,
    index=None,
    settings: SearchSettings | None = None,
    spec: IndexSpec | None = None,
    device: str = "auto",
    progress: Progress | None = None,
) -> SubmissionReport:
    """Write `out` (one line per catalog query: `query_id,id1 ... id10`) and score it when possible.

    `index`: an opened Index, an index folder, or None (build/reuse one of `spec` in RUN/cache/, storing at
    least the bits searched). `settings` / `spec` default to the run's (`run_defaults`).
    """
    run_spec, run_settings = run_defaults(run_dir)
    settings = settings or run_settings
    spec = spec or run_spec

    def stage(name: str) -> CountProgress | None:
        return as_fraction(progress, name)  # each stage reports its own fraction, captioned "<stage> done/total"

    if index is None:
        spec = spec.replace(bits=max(spec.bits, settings.bits or 0))
        index = run_index(run_dir, catalog_dir, spec, device=device, progress=stage("embedding the index split"))
    elif isinstance(index, (str, Path)):
        from .index import open_index

        index = open_index(index)
    queries = split_embeddings(
        run_dir, catalog_dir, "query", index.kind, device=device, progress=stage("embedding the queries")
    )
    catalog = read_catalog(catalog_dir)
    all_queries = [str(q) for q in catalog.query["image_id"]]
    truth = catalog.matches()
    result = evaluate_search(
        index,
        np.asarray(queries.vectors, dtype=np.float32),
        queries.ids,
        truth,
        settings,
        all_query_ids=all_queries,
        progress=stage("searching"),
    )
    not_embedded = int(result.summary["not_embedded"])
    if not_embedded:
        log.warning("%d queries could not be embedded (unreadable images); they get an empty line", not_embedded)
    path = write_submission(
        out, [(q, ids[:SUBMISSION_TOP]) for q, ids in zip(all_queries, result.results, strict=True)]
    )
    resolved = SearchSettings.from_dict(result.summary["settings"])
    return SubmissionReport(
        path=Path(path),
        settings=resolved,
        index_path=Path(index.path),
        not_embedded=not_embedded,
        evaluation=result if truth else None,
    )
