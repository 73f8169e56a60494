"""Recall-targeted tuning: the cheapest stage sizes of a top-k search that reach a recall@k target.

Owns `tune` (pick probe_bits, candidates, shortlist and rerank from sample queries with exact
neighbours), `store_tuned` (write them into the index manifest as its default search settings, key
"search", with the estimate under "search_estimate"), `read_estimate`, and the sample queries. numpy only.

Sample queries. The catalog's own queries when the caller has them (`queries=`), with exact neighbours
by cosine over the index's float16 vectors. Otherwise *held-out index rows* (leave-one-out): a random
index row is the query and is excluded from both its exact neighbours and its results (the search asks
for k+1 and drops it). No noise is added: a perturbation needs a scale, and any scale we pick would
decide how easy the sample is; an index row's own neighbours come from the distribution the real
queries are drawn to match (another photo of a product among the index's photos). On the latent benchmark
distribution this is at least as hard as its queries (these sit nearer to one index item than index items sit
to each other), so the estimate errs on the safe side there; on the fashion embeddings and the seed-like ones the
one-sample tuner was 0.006-0.017 optimistic, mostly the winner's curse of choosing on the sample that estimates
(benchmarks/RESULTS-tuner-check.md), which the check below removes. The catalog's queries (`--tune-queries`) are
still the better sample when there are any.
Tests check the held-out recall.

Choice. Stage sizes come in one family scaled by the re-rank depth R (shortlist 6R, candidates 32R,
the ratios of the defaults in settings.py), for each prefix length in PROBE_CHOICES, searching all stored bits
and, on an index storing more than SHORT_BITS, also only the first SHORT_BITS (a cheaper weighted stage). For each prefix
length a bisection over LADDER finds the smallest R whose recall reaches the target with margin: the
lower end of the 90% bootstrap interval over the sample queries must be >= target. That R's shortlist is then
narrowed (SHORTLIST_RATIOS: 4R, 3R, 2R, while the target is still reached): the weighted stage re-scores fewer rows
(README, retrieval: the fashion runs with the narrowed shortlist).
The winners of the prefix lengths are then timed on 100 sample queries (median of 3 passes interleaved across them,
one query at a time) and the fastest is kept.
On an index with partitions (partitions.py) the same family is also searched with stage 1 from 1, 2, 3, 4, 6, 8,
12, ... probed lists (PARTITION_LADDER; 256-bit prefixes; rungs capped where stage 1 keeps every probed row) until
PARTITION_WINNERS counts reach the target; those winners are timed beside the flat scan's, so the flat scan stays
when it is faster. On an index with residual codes (residual.py) the partition family runs on them (its shortlist is
unused there, so narrowing it changes nothing and the first ratio tried is kept).
If no setting reaches the target, the most accurate one tried is kept and `reached` is False.

Check. Choosing the cheapest of many settings whose interval clears the target on one sample favours the settings
that sample happens to flatter (the winner's curse), so the choice is checked on a second sample of the same kind,
disjoint from the first (`sample` each: other held-out rows, or the other half of the catalog queries when there are
fewer than 2 x `sample`). If the lower end of its interval there misses the target, the next re-rank rung of the same
family is checked, up to CHECK_STEPS rungs. The stored estimate (recall, interval, `reached`, timing) is the second
sample's: the selection never saw it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from . import partitions as _partitions
from . import search as _search
from .errors import EproductError
from .settings import SearchSettings

DEFAULT_TARGET = 0.95  # recall@k a tuned index aims at
SAMPLE_QUERIES = 400  # sample size: the 90% interval is then about +-0.01 wide on hard data
LADDER = (4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)
SHORTLIST_PER_RERANK = 6  # as DEFAULT_SHORTLIST / DEFAULT_RERANK
CANDIDATES_PER_RERANK = 32  # as DEFAULT_CANDIDATES / DEFAULT_RERANK
SHORTLIST_RATIOS = (4, 3, 2)  # narrower shortlists (x R) tried, in order, once a rung reaches the target
PARTITION_LADDER = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
PROBE_CHOICES = (64, 128, 192, 256)  # prefix lengths tried for the candidate scan (capped at the stored bits)
SHORT_BITS = 256  # indexes storing more bits are also tuned searching only this prefix (`_lengths`)
BOOTSTRAP = 1000  # resamples for the interval
PARTITION_WINNERS = 4  # probed-list counts reaching the target that the tuner times (partitions only)
CHECK_STEPS = 3  # re-rank rungs the check on the second sample may step up (`_checked`)


@dataclass(frozen=True)
class TuneResult:
    """The tuned settings and how well they are expected to do."""

    settings: SearchSettings  # k, rerank, shortlist, probe_bits, candidates (other fields None)
    k: int  # results per query the recall is measured on
    target: float  # the recall@k asked for
    recall: float  # mean recall@k over the sample queries
    low: float  # 90% bootstrap interval of that mean
    high: float
    reached: bool  # low >= target
    queries: int  # sample size
    source: str  # "catalog queries" or "held-out index rows"
    ms_per_query: float  # measured during tuning, one thread (this machine, its load at the time)
    tried: int  # settings evaluated

    def estimate(self) -> dict:
        """The JSON-able record stored beside the settings in the manifest."""
        out = asdict(self)
        out.pop("settings")
        return out


def stage_settings(
    rerank: int,
    probe_bits: int,
    k: int,
    bits: int | None = None,
    partition_probes: int = 0,
    shortlist_ratio: int = SHORTLIST_PER_RERANK,
) -> SearchSettings:
    """The family of stage sizes the tuner searches (see the module doc); `bits` None: all stored bits;
    `partition_probes` > 0: stage 1 from that many of the index's partitions; shortlist `shortlist_ratio` x R."""
    return SearchSettings(
        k=k,
        bits=bits,
        rerank=rerank,
        shortlist=shortlist_ratio * rerank,
        probe_bits=probe_bits,
        candidates=CANDIDATES_PER_RERANK * rerank,
        partition_probes=partition_probes,
    )


def exact_neighbours(
    index, queries: np.ndarray, k: int, exclude: np.ndarray | None = None, block: int = 65536
) -> np.ndarray:
    """(q, k) rows of the k largest cosines to each query among the index's float16 vectors, best first;
    `exclude[i]` (a row number) is left out of query i's neighbours."""
    _need_vectors(index)
    q = np.asarray(queries, dtype=np.float32)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    want = k + (exclude is not None)
    best_sim = np.full((len(q), want), -np.inf, dtype=np.float32)
    best_row = np.zeros((len(q), want), dtype=np.int64)
    vectors = index.vectors
    for start in range(0, index.size, block):
        x = np.asarray(vectors[start : start + block], dtype=np.float32)
        sims = q @ (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).T
        if exclude is not None:
            inside = (exclude >= start) & (exclude < start + len(x))
            sims[np.flatnonzero(inside), exclude[inside] - start] = -np.inf
        take = min(want, sims.shape[1])
        top = np.argpartition(-sims, take - 1, axis=1)[:, :take]
        sim = np.concatenate([best_sim, np.take_along_axis(sims, top, axis=1)], axis=1)
        row = np.concatenate([best_row, top + start], axis=1)
        order = np.lexsort((row, -sim), axis=1)[:, :want]
        best_sim, best_row = np.take_along_axis(sim, order, axis=1), np.take_along_axis(row, order, axis=1)
    return best_row[:, :k]


def _need_vectors(index) -> None:
    if not index.has_vectors:
        raise EproductError(
            f"Tuning needs the index's stored vectors to find exact neighbours; {index.path} has none. "
            "Rebuild it without --no-vectors."
        )


def held_out_rows(index, count: int, seed: int = 0) -> np.ndarray:
    """`count` distinct random row numbers (sorted) to use as leave-one-out queries."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(index.size, min(count, index.size), replace=False))


def per_query_recall(found: list[np.ndarray], truth: np.ndarray, drop: np.ndarray | None = None) -> np.ndarray:
    """recall@k of each query: |found[:k] ∩ truth| / k, with row drop[i] removed from found[i] first."""
    k = truth.shape[1]
    out = np.empty(len(truth))
    for i, (rows, want) in enumerate(zip(found, truth, strict=True)):
        rows = np.asarray(rows)
        if drop is not None:
            rows = rows[rows != drop[i]]
        out[i] = len(np.intersect1d(rows[:k], want)) / k
    return out


def bootstrap_interval(values: np.ndarray, seed: int = 0, level: float = 0.90) -> tuple[float, float]:
    """The `level` bootstrap interval of the mean of `values`."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (BOOTSTRAP, len(values)))].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def _rows_found(index, queries, settings: SearchSettings, threads: int) -> list[np.ndarray]:
    return [r.rows for r in _search.search(index, queries, settings, threads=threads)]


def tune(
    index,
    *,
    target: float = DEFAULT_TARGET,
    k: int = 10,
    queries: np.ndarray | None = None,
    sample: int = SAMPLE_QUERIES,
    seed: int = 0,
    threads: int = os.cpu_count() or 1,
    progress: Callable[[str], None] | None = None,
    check: bool = True,
) -> TuneResult:
    """The cheapest stage sizes reaching recall@k >= `target` on sample queries (see the module doc); `check`
    False: one sample, which both chooses and estimates (no check; the tuner before 2026-12-07, for A/B runs)."""
    if not 0.0 < target <= 1.0:
        raise EproductError(f"target recall {target!r}: give a number in (0, 1], e.g. 0.95.")
    _need_vectors(index)
    if index.size <= k:
        raise EproductError(f"The index has {index.size} rows; tuning top-{k} needs more than {k}.")
    samples, source = _samples(index, queries, sample, seed, k, 2 if check else 1)
    chosen_on, checked_on = samples[0], samples[-1]
    ask = k + (chosen_on.drop is not None)  # held-out rows: ask for one more, their own row is dropped
    recall_of = _RecallMemo(index, chosen_on, threads, k, progress)

    def reaches(settings: SearchSettings) -> bool:
        return bootstrap_interval(recall_of(settings), seed)[0] >= target

    winners = []
    for bits, probe in _lengths(index.bits):
        rung = _first_reaching([stage_settings(r, probe, ask, bits) for r in LADDER], reaches)
        if rung is not None:
            winners.append(_narrowed(rung, reaches))
    winners += _partition_winners(index, ask, reaches)
    if winners:
        best = min(zip(_times(index, chosen_on.queries, winners), winners, strict=True), key=lambda pair: pair[0])[1]
    else:
        best = max(recall_of.cache, key=lambda s: recall_of.cache[s].mean())
    if check:
        best, values = _checked(best, _RecallMemo(index, checked_on, threads, k, None), target, seed)
    else:
        values = recall_of(best)
    (ms,) = _times(index, checked_on.queries, [best])
    low, high = bootstrap_interval(values, seed)
    return TuneResult(
        best.replace(k=k),
        k,
        float(target),
        float(values.mean()),
        low,
        high,
        low >= target,
        len(checked_on.queries),
        source,
        ms,
        len(recall_of.cache),
    )


@dataclass(frozen=True)
class _Sample:
    """Sample queries with their exact neighbours; `drop[i]`: query i's own index row (held-out rows), else None."""

    queries: np.ndarray
    truth: np.ndarray
    drop: np.ndarray | None


def _samples(
    index, queries: np.ndarray | None, sample: int, seed: int, k: int, parts: int
) -> tuple[list[_Sample], str]:
    """`parts` disjoint samples of up to `sample` queries each (the first chooses, the last checks: module doc)."""
    if queries is not None:
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != index.dim:
            raise EproductError(f"Sample queries of shape {queries.shape} do not match the index's dim {index.dim}.")
        if len(queries) < parts:
            raise EproductError(
                f"Tuning needs at least {parts} sample queries (one to choose on, one to check); got {len(queries)}."
            )
        rows = held_out_rows_of(len(queries), parts * sample, seed)
        drawn: list[tuple[np.ndarray, np.ndarray | None]] = [(queries[rows[p::parts]], None) for p in range(parts)]
        source = "catalog queries"
    else:
        rows = held_out_rows(index, parts * sample, seed)
        drawn = [(np.asarray(index.vectors[rows[p::parts]], dtype=np.float32), rows[p::parts]) for p in range(parts)]
        source = "held-out index rows"
    return [_Sample(q, exact_neighbours(index, q, k, exclude=drop), drop) for q, drop in drawn], source


class _RecallMemo:
    """Per-query recall@k of a setting on one sample, each setting searched once."""

    def __init__(self, index, sample: _Sample, threads: int, k: int, progress: Callable[[str], None] | None):
        self.index, self.sample, self.threads, self.k, self.progress = index, sample, threads, k, progress
        self.cache: dict[SearchSettings, np.ndarray] = {}

    def __call__(self, settings: SearchSettings) -> np.ndarray:
        if settings not in self.cache:
            found = _rows_found(self.index, self.sample.queries, settings, self.threads)
            self.cache[settings] = per_query_recall(found, self.sample.truth, self.sample.drop)
            if self.progress is not None:
                lists = f"partition_probes {settings.partition_probes}, " if settings.partition_probes else ""
                self.progress(
                    f"{lists}probe_bits {settings.probe_bits}, candidates {settings.candidates}, shortlist "
                    f"{settings.shortlist}, rerank {settings.rerank}: recall@{self.k} {self.cache[settings].mean():.3f}"
                )
        return self.cache[settings]


def _checked(
    chosen: SearchSettings, recall_of: Callable[[SearchSettings], np.ndarray], target: float, seed: int
) -> tuple[SearchSettings, np.ndarray]:
    """`chosen` checked on the second sample; while the lower end of its interval there misses the target, the next
    re-rank rung of the same family (same prefix, lists and shortlist ratio), up to CHECK_STEPS rungs; the most
    accurate setting seen when none reaches it."""
    ratio = max(1, int(chosen.shortlist or 0) // max(1, int(chosen.rerank or 1)))
    higher = [r for r in LADDER if r > int(chosen.rerank or 0)][:CHECK_STEPS]
    tried = [chosen] + [
        chosen.replace(rerank=r, shortlist=ratio * r, candidates=CANDIDATES_PER_RERANK * r) for r in higher
    ]
    for settings in tried:
        if bootstrap_interval(recall_of(settings), seed)[0] >= target:
            return settings, recall_of(settings)
    best = max(tried, key=lambda s: recall_of(s).mean())
    return best, recall_of(best)


def _partition_winners(index, k: int, reaches: Callable[[SearchSettings], bool]) -> list[SearchSettings]:
    """For an index with partitions: per count of probed lists (PARTITION_LADDER, ascending, then every list),
    the smallest re-rank rung reaching the target with its narrowest shortlist, rungs capped where stage 1 keeps
    every probed row; stops after PARTITION_WINNERS counts reach it (probing more lists then only costs more)."""
    made = _partitions.open_partitions(index) if index.manifest.get("partitions") else None
    if made is None:
        return []
    probe = min(max(PROBE_CHOICES), index.bits, 64 * _partitions.PREFIX_WORDS)
    coded = bool(index.manifest.get("residual"))  # residual codes: the shortlist is unused, nothing to narrow
    winners: list[SearchSettings] = []
    for lists in [p for p in PARTITION_LADDER if p < made.lists] + [made.lists]:
        probed_rows = lists * index.size / made.lists
        rungs = [r for r in LADDER if CANDIDATES_PER_RERANK * r < 2 * probed_rows] or [LADDER[0]]
        rung = _first_reaching([stage_settings(r, probe, k, None, lists) for r in rungs], reaches)
        if rung is not None:
            winners.append(rung if coded else _narrowed(rung, reaches))
            if len(winners) == PARTITION_WINNERS:
                break
    return winners


def _narrowed(rung: SearchSettings, reaches: Callable[[SearchSettings], bool]) -> SearchSettings:
    """`rung` with the narrowest shortlist of SHORTLIST_RATIOS x its re-rank that still reaches the target (the
    ratios tried in order, stopping at the first that misses); `rung` itself when none does."""
    best, rerank, widest = rung, int(rung.rerank or 0), int(rung.shortlist or 0)
    for ratio in SHORTLIST_RATIOS:
        narrower = rung.replace(shortlist=ratio * rerank)
        if ratio * rerank >= widest or not reaches(narrower):
            break
        best, widest = narrower, ratio * rerank
    return best


def _lengths(stored: int) -> list[tuple[int | None, int]]:
    """(searched bits, probe bits) pairs the tuner tries: every probe length with all stored bits (None), and
    with their first SHORT_BITS when more are stored (shorter codes: a cheaper weighted stage, less exact)."""
    pairs: list[tuple[int | None, int]] = [(None, p) for p in sorted({min(p, stored) for p in PROBE_CHOICES})]
    if stored > SHORT_BITS:
        pairs += [(SHORT_BITS, p) for p in sorted({min(p, SHORT_BITS) for p in PROBE_CHOICES})]
    return pairs


def _first_reaching(family: list[SearchSettings], reaches: Callable[[SearchSettings], bool]):
    """The first rung of `family` that reaches the target (recall grows with the rung), or None: rungs are
    tried two at a time from the cheapest (dear rungs cost most to evaluate), then the one skipped."""
    for i in range(1, len(family) + 1, 2):
        top = min(i, len(family) - 1)
        if reaches(family[top]):
            return family[top - 1] if top > 0 and reaches(family[top - 1]) else family[top]
    return None


def held_out_rows_of(count: int, sample: int, seed: int) -> np.ndarray:
    """Up to `sample` of `count` query rows, seeded and sorted."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(count, min(sample, count), replace=False))


def _times(
    index, queries: np.ndarray, candidates: list[SearchSettings], passes: int = 3, count: int = 100
) -> list[float]:
    """Per candidate, the median ms per query over `passes` of searching `count` sample queries one at a time on
    one thread; the passes interleaved (candidate 1, 2, ..., then again), so a slow moment of a shared machine
    falls on every candidate rather than on whichever was being timed."""
    times: list[list[float]] = [[] for _ in candidates]
    queries = queries[:count]
    for _ in range(passes):
        for i, settings in enumerate(candidates):
            start = time.perf_counter()
            for query in queries:
                _search.search(index, query[None, :], settings)
            times[i].append((time.perf_counter() - start) / len(queries) * 1e3)
    return [float(np.median(t)) for t in times]


def store_tuned(index_dir, result: TuneResult) -> None:
    """Write `result` into the index manifest (keys "search" and "search_estimate"), atomically."""
    from pathlib import Path

    from .index_format import read_manifest, replace_manifest

    folder = Path(index_dir)
    manifest = read_manifest(folder)
    manifest["search"] = {key: value for key, value in result.settings.to_dict().items() if value is not None}
    manifest["search_estimate"] = result.estimate()
    replace_manifest(folder, manifest)


def read_estimate(manifest: dict) -> dict | None:
    """The stored tuning estimate of an index manifest (None when it was never tuned)."""
    estimate = manifest.get("search_estimate")
    return dict(estimate) if isinstance(estimate, dict) else None


def describe(estimate: dict | None) -> str:
    """One line for the CLI and the app: the tuned recall estimate, or that there is none."""
    if not estimate:
        return "not tuned: stage sizes are the built-in defaults (run `eproduct index tune`)"
    reached = "" if estimate.get("reached", True) else " (target not reached)"
    return (
        f"tuned for recall@{estimate['k']} >= {estimate['target']:.2f}: estimated {estimate['recall']:.3f} "
        f"(90% interval {estimate['low']:.3f}-{estimate['high']:.3f}, {estimate['queries']} "
        f"{estimate['source']}){reached}"
    )
