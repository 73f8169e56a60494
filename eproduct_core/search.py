"""Search an opened index: Hamming ranking with weighted and exact re-ranks, and the seed's cutoff mode.

One entry point, `search(index, queries, settings: SearchSettings, *, threads=1)`; `resolve` fills the
settings' `None` fields (the index's stored tuned defaults, else settings.py) and makes the stages
consistent. numpy and the compiled loops of search_kernels.py (numba; numpy fallback); never torch.

Modes, at hash length `bits` (any prefix of the stored codes; default the stored length):
- "topk" (default), in up to four stages, each cheaper per row than the next and run on fewer rows:
  1. candidates: a scan of the first `probe_bits` bits of every code (search_kernels.py; default the
     first 128 bits) keeps the `candidates` rows nearest in Hamming distance (`probe_bits=bits`, or an
     index of no more than `candidates` rows: an exact Hamming ranking of every row); with
     `partition_probes` P > 0 (partitions.py) only the rows of the query's P nearest partitions are
     scanned (prefixes of at most 256 bits, read from their copy in partition order), the same way;
     on an index with residual codes (residual.py) stages 1-3 over those rows are instead its estimate of
     the inner product from codes of each row's offset from its centroid (`candidates` from `probe_bits` bits,
     then `rerank` from all `bits`), and stage 4 as below;
  2. shortlist: their full `bits`-bit Hamming distances keep the best `shortlist`;
  3. weighted Hamming (lsh.py: each differing bit costs the query's margin on that hyperplane)
     keeps the best `rerank` of those;
  4. exact cosine distance on their float16 vectors returns the top `k` (search_kernels.nearest_cosine: the
     compiled kernel first rules out rows with a float32 pass of bounded error, then ranks the rest exactly).
  The re-rank covers at least k rows (rerank = max(rerank, k)): k is never silently capped.
  With rerank=0 (or an index without vectors) stages 3-4 are skipped: the top `k` by Hamming;
  with shortlist <= rerank, stage 3 is skipped: the exact re-rank takes the `rerank` best by Hamming.
  Stages 1-4 run as one compiled, GIL-free call per batch of queries (search_kernels.reranked), sized
  by one `search_kernels.Stages` tuple.
  An optional `cutoff` keeps results with exact cosine distance < cutoff (code cosine when rerank=0).
- post-processing (settings whiten / query_expansion / dba / kreciprocal, postprocess.py), a final stage
  on a top-k search: the top POST_DEPTH rows of the search above are re-scored on their stored vectors,
  PCA-whitened (a whitening fitted once per opened index on its stored vectors), averaged with their
  top-`dba` neighbours among those rows (DBA, local to the candidates), against an alpha-expanded
  query (QE over its top `query_expansion`), and ranked by k-reciprocal or plain cosine distance.
- backend "hnsw" (settings.backend; top-k): the candidate stage is the index's faiss HNSW graph (ann_graph.py:
  its top k within a beam of max(ef_search, k), scored by exact cosine on the stored vectors); the results
  carry the same fields (Hamming and code cosine at `bits` of the rows it returns), the cutoff and
  post-processing apply as above, and the LSH stage sizes are unused (None in `resolve`).
- "cutoff" (the seed pipeline's): every item whose code cosine distance (eq. 4, see lsh.py) is
  strictly below `cutoff`, decided exactly in integers (lsh.below_cutoff: a row exactly at the cutoff,
  e.g. 1 - 9/10 at 0.1, is not admitted), ranked by that distance; `k` truncates (k=None keeps all).
  With rerank=R > 0 the first max(R, k) admitted items (all of them when k=None) are re-ranked by
  exact cosine.
Ties are broken by row number everywhere, so results are deterministic and shard-independent; the numba
and numpy kernels return the same rows and the same float64 distances.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import ann_graph, lsh, lsh_tables, partitions, postprocess, residual, search_kernels
from .errors import EproductError
from .index_store import Index
from .settings import (
    DEFAULT_CANDIDATES,
    DEFAULT_EF_SEARCH,
    DEFAULT_PROBE_BITS,
    DEFAULT_RERANK,
    DEFAULT_SHORTLIST,
    SEED_CUTOFF,
    SearchSettings,
)

POST_DEPTH = 100  # rows the post-processing stage re-scores (k-reciprocal re-ranks the top 100)
WHITEN_SAMPLE = 100_000  # stored rows (seeded sample) a whitening is fitted on
_WHITENINGS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # opened index -> (mean, projection)
_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # opened index -> {settings key: _Plan}
_BOUND: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # opened index -> {key: (partitions, Bound)}
PART_QUERIES = 64  # queries per part when a batch is split over threads (16-300 measured alike, 64 a little best)


@dataclass(frozen=True)
class SearchResult:
    """One query's results, best first."""

    ids: list[str]  # index ids
    rows: np.ndarray  # int64 row numbers in the index
    hamming: np.ndarray  # int64 Hamming distance at the searched hash length
    code_cosine: np.ndarray  # float64 code cosine distance, eq. (4), at the searched hash length
    cosine: np.ndarray | None  # float64 exact cosine distance, None when not re-ranked
    candidates: int  # items considered: admitted by the cutoff (cutoff mode) or Hamming-ranked (topk)


@dataclass(frozen=True)
class RowExplanation:
    """Why one index row was or was not retrieved for one query."""

    row: int
    id: str
    shard: int
    hamming: int  # at the searched hash length
    code_cosine: float  # eq. (4) at the searched hash length
    cosine: float | None  # exact cosine distance (None without stored vectors)
    hamming_rank: int  # items ranked before it by (Hamming, row): shortlist needed is hamming_rank + 1
    weighted_rank: int  # items before it by (weighted Hamming, row): re-rank depth that reaches it is this + 1
    probe_rank: int  # items before it in the prefix scan: candidates needed (topk with probe_bits)
    cutoff_needed: float  # cutoff mode admits it for any cutoff above this (its code cosine)
    shortest_bits: int | None  # shortest hash length at which code cosine < cutoff (None: none)
    partition_rank: int | None = None  # its partition's rank among the query's (partition_probes needed - 1);
    # None: the index has no partitions


def _order(primary: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.lexsort((rows, primary))


def _hamming_rows(index, qwords: np.ndarray, rows: np.ndarray | None, bits: int) -> np.ndarray:
    if rows is None:
        return lsh.hamming(qwords, index.words, bits)
    return search_kernels.rows_hamming(index.words, rows, qwords, bits, index.kernel)


def _topk_candidates(index: Index, qwords, bits: int, shortlist: int, probed) -> tuple[np.ndarray, np.ndarray]:
    """The `shortlist` best rows by `bits`-bit Hamming among `probed` rows (None: all rows), best first."""
    if probed is None:  # exact: the `shortlist` nearest rows at `bits` by the scan kernel
        probed = _scan(index, qwords, bits, shortlist)
    rows, dist = probed, _hamming_rows(index, qwords, probed, bits)
    best = search_kernels.nearest(dist, shortlist, bits, index.kernel)
    rows, dist = rows[best], dist[best]
    order = _order(dist, rows)
    return rows[order], dist[order]


def _scan(index: Index, qwords: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Rows (ascending) of the `count` codes nearest the query on their first `bits` bits (ties: lowest row)."""
    columns, sample = index.scan_arrays(bits)
    return search_kernels.scan(columns, qwords, bits, count, index.kernel, sample)


def _code_counts(index: Index, qwords, rows: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(overlaps, row weights, query weight) of eq. (4) at `bits` for the given rows."""
    return search_kernels.code_counts(index.words, rows, qwords, bits, index.kernel)


@dataclass(frozen=True)
class _Plan:
    """The resolved settings of one `search` call (`resolve`): every field filled, the stages consistent
    (rerank >= k when re-ranking, candidates >= shortlist >= rerank in top-k mode)."""

    mode: str
    bits: int
    k: int | None
    cutoff: float | None
    rerank: int
    shortlist: int
    probe_bits: int
    candidates: int
    table_probes: int = 0  # > 0: stage 1 from the prefix-bucket tables (lsh_tables.py)
    partition_probes: int = 0  # > 0: stage 1 from this many of the index's partitions (partitions.py)

    def probes(self, index: Index) -> bool:
        """Whether top-k mode scans a prefix first (stage 1) rather than ranking every row exactly."""
        return self.probe_bits < self.bits and self.candidates < index.size

    def stages(self, index: Index) -> search_kernels.Stages:
        """The stage sizes the kernels run: stage 1 is an exact `bits` ranking keeping the shortlist when it
        does not probe a shorter prefix (also over the rows of probed partitions)."""
        top = self.k or 0
        if self.probes(index) or (self.partition_probes and self.probe_bits < self.bits):
            return search_kernels.Stages(self.probe_bits, self.bits, self.candidates, self.shortlist, self.rerank, top)
        return search_kernels.Stages(self.bits, self.bits, self.shortlist, self.shortlist, self.rerank, top)


def _finish(index: Index, query, qwords, rows, hamming, plan: _Plan, considered: int, topk: bool) -> SearchResult:
    """Re-rank the first `plan.rerank` rows (every row when k is None) by exact cosine, if any; then `_result`."""
    cosine = None
    if plan.rerank > 0:
        head = slice(0, None if plan.k is None else plan.rerank)
        order, cosine = search_kernels.nearest_cosine(index.vectors, rows[head], query, plan.k or 0, index.kernel)
        rows, hamming = rows[head][order], hamming[head][order]
    return _result(index, qwords, rows, hamming, cosine, plan, considered, topk)


def _ranked_result(index: Index, found: search_kernels.Ranked, plan: _Plan, considered: int) -> SearchResult:
    """A top-k query's rows from search_kernels.reranked (code cosines included) -> SearchResult: the cutoff
    on exact cosine (strict `<`), then k, as `_result` does."""
    keep = slice(None) if plan.cutoff is None else found.cosine < plan.cutoff
    rows = found.rows[keep][: plan.k]
    return SearchResult(
        index.ids(rows),
        rows,
        found.hamming[keep][: plan.k],
        found.code_cosine[keep][: plan.k],
        found.cosine[keep][: plan.k],
        int(considered),
    )


def _result(index: Index, qwords, rows, hamming, cosine, plan: _Plan, considered: int, topk: bool) -> SearchResult:
    """Ranked rows -> SearchResult: in top-k mode the cutoff (strict `<`: on exact cosine, or exactly on code
    cosine without a re-rank, see lsh.below_cutoff), then k."""
    bits, k, cutoff = plan.bits, plan.k, plan.cutoff if topk else None
    if cosine is not None and cutoff is not None:
        keep = cosine < cutoff
        rows, hamming, cosine = rows[keep], hamming[keep], cosine[keep]
    if cosine is not None and k is not None:
        rows, hamming, cosine = rows[:k], hamming[:k], cosine[:k]
    both, weights, qweight = _code_counts(index, qwords, rows, bits)
    if cosine is None and cutoff is not None:
        keep = lsh.below_cutoff(both, weights, qweight, cutoff)
        rows, hamming, both, weights = rows[keep], hamming[keep], both[keep], weights[keep]
    if cosine is None and k is not None:
        rows, hamming, both, weights = rows[:k], hamming[:k], both[:k], weights[:k]
    code_cos = lsh.code_cosine_from_counts(both, weights, qweight)
    return SearchResult(
        index.ids(rows), rows.astype(np.int64), hamming.astype(np.int64), code_cos, cosine, int(considered)
    )


def _search_topk(index: Index, query, qwords, plan: _Plan, lists=None) -> SearchResult:
    """Top-k by Hamming (rerank=0), or the Hamming best `rerank` re-ranked by exact cosine (no weighted stage);
    stage 1 from the partitions `lists` when given."""
    probed: np.ndarray | None = None
    if lists is not None:
        probed = search_kernels.partition_scan(
            _parts(index), lists, qwords, plan.probe_bits, plan.candidates, index.kernel
        )
    elif plan.probes(index):
        probed = _scan(index, qwords, plan.probe_bits, plan.candidates)
    rows, hamming = _topk_candidates(index, qwords, plan.bits, plan.shortlist, probed)
    return _finish(index, query, qwords, rows, hamming, plan, len(rows), True)


def _parts(index: Index) -> search_kernels.Parts:
    made = partitions.partitions_of(index)
    return search_kernels.Parts(made.columns, made.rows, made.offsets)


def _bound(index: Index, stages: search_kernels.Stages, with_parts: bool) -> search_kernels.Bound:
    """search_kernels.bind of the arrays the compiled stages read: the scan's columns for the flat scan
    (NO_PARTS), or the partitions' arrays when stage 1 probes lists; made once per opened index and stage
    sizes, then reused by every query (made again when the index's partitions were rebuilt since)."""
    made = partitions.partitions_of(index) if with_parts else None
    key = (stages, with_parts)
    bound = _BOUND.setdefault(index, {}).get(key)
    if bound is None or bound[0] is not made:
        if made is None:
            columns, sample = index.scan_arrays(stages.probe_bits)
            store, parts = search_kernels.Store(columns, sample, index.words, index.vectors), search_kernels.NO_PARTS
        else:
            empty = search_kernels.NO_PARTS.columns
            store, parts = search_kernels.Store(empty, empty, index.words, index.vectors), _parts(index)
        bound = _BOUND[index][key] = (made, search_kernels.bind(store, stages, parts))
    return bound[1]


def _search_reranked(index: Index, queries, qwords, projections, plan: _Plan, lists=None) -> list[SearchResult]:
    """Stages 1-4 (module doc) for a batch, in one compiled call where numba is available; stage 1 from the
    partitions `lists` (queries, probes) when given."""
    bound = _bound(index, plan.stages(index), lists is not None)
    found = search_kernels.reranked(bound, qwords, projections, queries, index.kernel, lists)
    considered = min(plan.shortlist, index.size)
    return [_ranked_result(index, r, plan, considered) for r in found]


def _search_residual(index: Index, query, qwords, projection, plan: _Plan, lists) -> SearchResult:
    """Stages 1-2 from the residual codes of the probed partitions `lists` (residual.py), then the exact re-rank."""
    made = partitions.partitions_of(index)
    terms = residual.query_terms(made, query, projection, index.centre is not None)
    stages = search_kernels.Stages(
        plan.probe_bits, plan.bits, plan.candidates, plan.shortlist, max(plan.rerank, plan.k or 0), plan.k or 0
    )
    rows = residual.best_rows(residual.residual_of(index), made.rows, made.offsets, lists, terms, stages, index.kernel)
    return _finish(index, query, qwords, rows, _hamming_rows(index, qwords, rows, plan.bits), plan, len(rows), True)


def _search_tables(index: Index, query, qwords, projection, plan: _Plan) -> SearchResult:
    """Stage 1 from the prefix-bucket tables (lsh_tables.py: multi-probe), then stages 2-4 on its candidates."""
    probed = lsh_tables.tables_of(index).candidates(projection, plan.table_probes)
    rows, hamming = _topk_candidates(index, qwords, plan.bits, min(plan.shortlist, len(probed)), probed)
    if 0 < plan.rerank < len(rows):
        weighted = search_kernels.rows_weighted(index.words, rows, projection, plan.bits, index.kernel)
        best = np.lexsort((rows, weighted))[: plan.rerank]
        rows, hamming = rows[best], hamming[best]
    return _finish(index, query, qwords, rows, hamming, plan, len(probed), True)


def _search_cutoff(index: Index, query, qwords, plan: _Plan) -> SearchResult:
    """Every row with code cosine < cutoff (decided exactly, lsh.below_cutoff), ranked by it (ties: row)."""
    bits, cutoff = plan.bits, plan.cutoff
    assert cutoff is not None  # resolve gives cutoff mode one
    if bits <= 64:
        mask = lsh.word_masks(bits)[0]
        q = qwords[0] & mask
        both = np.bitwise_count(index.word0 & q)
        weights = index.prefix_weights(bits)
        qweight = int(np.bitwise_count(q))
    else:
        both, weights, qweight = _code_counts(index, qwords, np.arange(index.size), bits)
    # eq. (4) < cutoff holds exactly when a row's overlap reaches the least one its weight needs
    admitted = np.flatnonzero(both >= lsh.least_overlaps(cutoff, qweight, bits)[weights])
    both, weights = both[admitted].astype(np.int64), weights[admitted].astype(np.int64)
    order = _order(lsh.code_cosine_from_counts(both, weights, qweight), admitted)
    rows, hamming = admitted[order], (weights + qweight - 2 * both)[order]
    return _finish(index, query, qwords, rows, hamming, plan, len(rows), False)


def _stored_defaults(index: Index, mode: str) -> SearchSettings | None:
    """The index's tuned default settings for `mode` (manifest key "search"), or None."""
    stored = index.manifest.get("search")
    if not stored:
        return None
    try:
        tuned = SearchSettings.from_dict(dict(stored))
    except (EproductError, TypeError) as err:
        raise EproductError(
            f"Index {index.path}: its stored search settings {stored!r} are invalid ({err}). "
            'Fix or remove the "search" entry of its manifest.json.'
        ) from err
    return tuned if tuned.mode == mode else None


def resolve(index: Index, settings: SearchSettings) -> SearchSettings:
    """`settings` with every `None` field filled for `index`, as the search runs them.

    `mode` and `k` always come from `settings`. Another `None` field takes the index's stored tuned default
    (manifest key "search", a SearchSettings dict written by tuning, used when its mode is the same),
    else the constants of settings.py: bits = the stored length; cutoff = SEED_CUTOFF in cutoff mode (none in
    top-k); rerank = DEFAULT_RERANK in top-k with stored vectors, else 0; shortlist = max(DEFAULT_SHORTLIST,
    6 rerank); probe_bits = DEFAULT_PROBE_BITS; candidates = max(DEFAULT_CANDIDATES, 4 shortlist, 8 k).
    Then the stages are made consistent, never silently capping k: a re-rank covers at least k rows
    (rerank = max(rerank, k)); the shortlist holds at least the re-ranked rows (exactly k without a
    re-rank: the top k by Hamming); the candidates at least the shortlist; probe_bits at most bits.
    Refuses bits above the stored length and a re-rank on an index without vectors.
    Backend "hnsw": mode, bits, k, cutoff and ef_search = max(ef_search or DEFAULT_EF_SEARCH, k) are filled,
    the LSH stage sizes left None; refuses an index without a graph (or faiss), naming the fix.
    """
    if settings.backend == "hnsw":
        return _resolve_graph(index, settings)
    tuned = _stored_defaults(index, settings.mode)

    def pick(name: str):
        value = getattr(settings, name)
        return getattr(tuned, name) if value is None and tuned is not None else value

    mode, k = settings.mode, settings.k
    bits = pick("bits")
    bits = index.bits if bits is None else int(bits)
    if bits > index.bits:
        raise EproductError(f"bits = {bits}: must be between 1 and the index's stored {index.bits}.")
    cutoff = pick("cutoff")
    if cutoff is None and mode == "cutoff":
        cutoff = SEED_CUTOFF
    rerank = pick("rerank")
    if rerank is None:
        rerank = DEFAULT_RERANK if (mode == "topk" and index.has_vectors) else 0
    if rerank > 0 and not index.has_vectors:
        raise EproductError(
            f"rerank = {rerank} needs the stored vectors, but index {index.path} was built without them: "
            "use rerank 0 or rebuild the index with vectors."
        )
    if rerank > 0 and k is not None:
        rerank = max(rerank, k)  # a re-rank of fewer than k rows would return fewer than k results
    shortlist = pick("shortlist")
    shortlist = max(DEFAULT_SHORTLIST, 6 * rerank) if shortlist is None else shortlist
    if mode == "topk":
        shortlist = max(shortlist, rerank) if rerank else int(k or 0)
    probe_bits = pick("probe_bits")
    probe_bits = min(DEFAULT_PROBE_BITS if probe_bits is None else probe_bits, bits)
    candidates = pick("candidates")
    candidates = max(DEFAULT_CANDIDATES, 4 * shortlist, 8 * (k or 0)) if candidates is None else candidates
    candidates = max(candidates, shortlist)
    table_probes, partition_probes = pick("table_probes") or 0, pick("partition_probes") or 0
    if settings.table_probes and settings.partition_probes is None:
        partition_probes = 0  # a stage 1 asked for replaces the index's tuned one
    if settings.partition_probes and settings.table_probes is None:
        table_probes = 0
    if table_probes and partition_probes and mode == "topk":
        raise EproductError(
            f"table_probes = {table_probes} and partition_probes = {partition_probes}: stage 1 comes from one "
            "of them; set the other to 0."
        )
    if table_probes and mode == "topk":
        lsh_tables.tables_of(index)  # refuses an index without tables, naming the fix
    if partition_probes and mode == "topk":
        partitions.partitions_of(index)  # refuses an index without partitions, naming the fix
        probe_bits = min(probe_bits, 64 * partitions.PREFIX_WORDS)  # the prefix words stored in list order
    return SearchSettings(
        mode=mode,
        bits=bits,
        k=k,
        cutoff=cutoff,
        rerank=int(rerank),
        shortlist=int(shortlist),
        probe_bits=int(probe_bits),
        candidates=int(candidates),
        table_probes=int(table_probes),
        partition_probes=int(partition_probes),
    )


def _resolve_graph(index: Index, settings: SearchSettings) -> SearchSettings:
    """`resolve` for backend "hnsw" (its doc)."""
    bits = index.bits if settings.bits is None else int(settings.bits)
    if bits > index.bits:
        raise EproductError(f"bits = {bits}: must be between 1 and the index's stored {index.bits}.")
    ann_graph.require(index)
    k = int(settings.k or 10)
    ef = max(DEFAULT_EF_SEARCH if settings.ef_search is None else settings.ef_search, k)
    return SearchSettings(mode="topk", bits=bits, k=k, cutoff=settings.cutoff, backend="hnsw", ef_search=ef)


def _search_graph(index: Index, queries: np.ndarray, settings: SearchSettings) -> list[SearchResult]:
    """Backend "hnsw": the graph's rows and exact cosines (ann_graph.search_graph), then `_result` (cutoff, k,
    the rows' Hamming and code cosine at `bits`); candidates = the beam width."""
    r = resolve(index, settings)
    assert r.bits is not None and r.k is not None and r.ef_search is not None  # filled by _resolve_graph
    plan = _Plan("topk", r.bits, r.k, r.cutoff, rerank=r.k, shortlist=r.k, probe_bits=r.bits, candidates=r.ef_search)
    qwords = lsh.to_words(lsh.pack(index.project(queries) > 0))
    found = ann_graph.search_graph(index, queries, r.k, r.ef_search)
    return [
        _result(index, qwords[i], rows, _hamming_rows(index, qwords[i], rows, r.bits), cosine, plan, r.ef_search, True)
        for i, (rows, cosine) in enumerate(found)
    ]


def _plan(index: Index, settings: SearchSettings) -> _Plan:
    """The resolved plan of `settings` on `index`, remembered per opened index (a query's search then spends
    no time re-resolving; the key holds what `resolve` reads from the manifest)."""
    key = (settings, repr(index.manifest.get("search")), bool(index.manifest.get("partitions")))
    plans = _PLANS.setdefault(index, {})
    if key not in plans:
        plans[key] = _resolved_plan(index, settings)
    return plans[key]


def _resolved_plan(index: Index, settings: SearchSettings) -> _Plan:
    r = resolve(index, settings)
    assert r.bits is not None and r.rerank is not None and r.shortlist is not None  # filled by resolve
    assert r.probe_bits is not None and r.candidates is not None
    assert r.table_probes is not None and r.partition_probes is not None
    return _Plan(
        r.mode,
        r.bits,
        r.k,
        r.cutoff,
        r.rerank,
        r.shortlist,
        r.probe_bits,
        r.candidates,
        r.table_probes,
        r.partition_probes,
    )


def search(index: Index, queries: np.ndarray, settings: SearchSettings, *, threads: int = 1) -> list[SearchResult]:
    """Search `queries` (q, dim), or one query (dim,), against `index` with `settings` (`resolve` fills its
    `None` fields); one `SearchResult` per query (see the module doc). `threads` > 1 splits the queries over
    that many threads (same results)."""
    if not isinstance(settings, SearchSettings):
        raise TypeError(f"settings must be a SearchSettings, not {type(settings).__name__}")
    queries = np.asarray(queries)
    if queries.ndim == 1:
        queries = queries[None, :]
    if queries.ndim != 2:
        raise EproductError(f"Queries must be a (rows, dim) matrix; got shape {queries.shape}.")
    index.check_compatible(None, queries.shape[1])
    bad = lsh.first_nonfinite_row(queries)
    if bad is not None:
        raise EproductError(
            f"Query row {bad} holds NaN or infinite values: no distance to it means anything. "
            "Embed that query again (a corrupt image or a diverged model gives these)."
        )
    if _post_on(settings):
        return _postprocessed(index, queries, settings, threads)
    if settings.backend == "hnsw":
        return _search_graph(index, queries, settings)
    plan = _plan(index, settings)
    projections = index.project(queries)
    qwords = search_kernels.sign_words(projections, index.kernel)
    if threads > 1 and len(queries) > 1:
        index.warm(vectors=plan.rerank > 0)
        # small parts pulled by `threads` workers: a thread the machine delays leaves no other idle at the end
        parts = np.array_split(np.arange(len(queries)), -(-len(queries) // PART_QUERIES))
        with ThreadPoolExecutor(min(threads, len(parts))) as pool:
            chunks = pool.map(
                lambda part: _search_many(index, queries[part], qwords[part], projections[part], plan), parts
            )
            return [result for chunk in chunks for result in chunk]
    return _search_many(index, queries, qwords, projections, plan)


def _post_on(settings: SearchSettings) -> bool:
    return bool(settings.whiten or settings.query_expansion or settings.dba or settings.kreciprocal)


def _whitening(index: Index) -> tuple[np.ndarray, np.ndarray]:
    """PCA-whitening fitted on the index's stored vectors (a seeded sample of WHITEN_SAMPLE rows), once."""
    if index not in _WHITENINGS:
        rows = np.arange(index.size)
        if len(rows) > WHITEN_SAMPLE:
            rows = np.sort(np.random.default_rng(0).choice(len(rows), WHITEN_SAMPLE, replace=False))
        _WHITENINGS[index] = postprocess.fit_whitening(np.asarray(index.vectors[rows], np.float32))
    return _WHITENINGS[index]


def _postprocessed(index: Index, queries: np.ndarray, settings: SearchSettings, threads: int) -> list[SearchResult]:
    """The post-processing stage (module doc) over the top POST_DEPTH rows of the same search without it."""
    if settings.mode != "topk" or settings.k is None:
        raise EproductError("Post-processing (whiten, query_expansion, dba, kreciprocal) needs mode 'topk' with k.")
    if not index.has_vectors:
        raise EproductError(
            f"Post-processing re-scores stored vectors, but index {index.path} was built without them: "
            "rebuild it with vectors or turn whiten/query_expansion/dba/kreciprocal off."
        )
    k = settings.k
    base = settings.replace(
        k=max(POST_DEPTH, k), cutoff=None, whiten=False, query_expansion=0, dba=0, kreciprocal=False
    )
    whitening = _whitening(index) if settings.whiten else None
    out = []
    for query, found in zip(queries, search(index, queries, base, threads=threads), strict=True):
        rows = found.rows
        q, x = postprocess.normalize(query[None]), postprocess.normalize(np.asarray(index.vectors[rows], np.float32))
        if whitening is not None:
            q, x = postprocess.apply_whitening(q, *whitening), postprocess.apply_whitening(x, *whitening)
        if settings.dba:
            x = postprocess.database_augmentation(x, settings.dba)
        if settings.query_expansion:
            q = postprocess.query_expansion(q, x, settings.query_expansion)
        if settings.kreciprocal:
            distance = postprocess.kreciprocal_distance(q[0], x).astype(np.float64)
        else:
            distance = 1.0 - (x @ q[0]).astype(np.float64)
        order = _order(distance, rows)
        if settings.cutoff is not None:
            order = order[distance[order] < settings.cutoff]
        order = order[:k]
        out.append(
            SearchResult(
                index.ids(rows[order]),
                rows[order].astype(np.int64),
                found.hamming[order],
                found.code_cosine[order],
                distance[order],
                found.candidates,
            )
        )
    return out


def _search_many(index: Index, queries, qwords, projections, plan: _Plan) -> list[SearchResult]:
    if plan.mode == "cutoff":
        return [_search_cutoff(index, queries[i], qwords[i], plan) for i in range(len(queries))]
    if plan.table_probes:
        return [_search_tables(index, queries[i], qwords[i], projections[i], plan) for i in range(len(queries))]
    lists = None
    if plan.partition_probes:
        lists = partitions.partitions_of(index).lists_for(queries, plan.partition_probes, index.kernel)
        if plan.rerank > 0 and residual.has_residual(index):
            return [
                _search_residual(index, queries[i], qwords[i], projections[i], plan, lists[i])
                for i in range(len(queries))
            ]
    if 0 < plan.rerank < plan.shortlist:
        return _search_reranked(index, queries, qwords, projections, plan, lists)
    return [
        _search_topk(index, queries[i], qwords[i], plan, None if lists is None else lists[i])
        for i in range(len(queries))
    ]


def explain(index: Index, query: np.ndarray, rows: Sequence[int], settings: SearchSettings) -> list[RowExplanation]:
    """Per row: distances at the settings' hash length, its Hamming, weighted and prefix-scan ranks, and what
    would have retrieved it. `settings` resolve as in `search`; a top-k search without a cutoff is explained
    against the seed's cutoff (SEED_CUTOFF) for `cutoff_needed`'s neighbour `shortest_bits`. The ranks are the
    LSH stages' (backend "hnsw" is explained as backend "lsh")."""
    plan = _plan(index, settings.replace(backend="lsh", ef_search=None))
    bits, probe_bits = plan.bits, plan.probe_bits
    cutoff = SEED_CUTOFF if plan.cutoff is None else plan.cutoff
    query = np.asarray(query).ravel()
    index.check_compatible(None, query.shape[0])
    wanted = np.asarray(rows, dtype=np.int64).ravel()
    if len(wanted) and (wanted.min() < 0 or wanted.max() >= index.size):
        raise EproductError(f"Rows must be between 0 and {index.size - 1}.")
    projections = index.project(query[None, :])[0]
    qwords = lsh.to_words(lsh.pack(projections[None, :] > 0))[0]
    all_dist = _hamming_rows(index, qwords, None, bits)
    weighted = search_kernels.rows_weighted(index.words, np.arange(index.size), projections, bits, index.kernel)
    prefix_dist = _hamming_rows(index, qwords, None, probe_bits)
    qbits = lsh.unpack(lsh.pack(projections[None, :] > 0), index.bits)[0, :bits].astype(np.int64)
    rbits = lsh.unpack(lsh.prefix(_row_codes(index, wanted), index.bits), index.bits)[:, :bits].astype(np.int64)
    both, weights, qweights = np.cumsum(rbits & qbits, axis=1), np.cumsum(rbits, axis=1), np.cumsum(qbits)[None, :]
    per_length = lsh.code_cosine_from_counts(both, weights, qweights)
    admitted = lsh.below_cutoff(both, weights, qweights, cutoff)  # (rows, lengths), decided exactly
    if index.has_vectors:
        cosine: list[float | None] = list(search_kernels.rows_cosine(index.vectors, wanted, query, index.kernel))
    else:
        cosine = [None] * len(wanted)
    shards = index.shard_of(wanted)
    partition_rank = _partition_ranks(index, query, wanted)
    out = []
    for i, row in enumerate(wanted):
        d, p, w = all_dist[row], prefix_dist[row], weighted[row]
        admits, exact = np.flatnonzero(admitted[i]), cosine[i]
        out.append(
            RowExplanation(
                row=int(row),
                id=index.ids([row])[0],
                shard=int(shards[i]),
                hamming=int(d),
                code_cosine=float(per_length[i, -1]),
                cosine=None if exact is None else float(exact),
                hamming_rank=int(np.count_nonzero(all_dist < d) + np.count_nonzero(all_dist[:row] == d)),
                weighted_rank=int(np.count_nonzero(weighted < w) + np.count_nonzero(weighted[:row] == w)),
                probe_rank=int(np.count_nonzero(prefix_dist < p) + np.count_nonzero(prefix_dist[:row] == p)),
                cutoff_needed=float(per_length[i, -1]),
                shortest_bits=int(admits[0]) + 1 if len(admits) else None,
                partition_rank=None if partition_rank is None else int(partition_rank[i]),
            )
        )
    return out


def _partition_ranks(index: Index, query: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
    """Per row, its partition's rank among the query's partitions (Partitions.ranking), or None without partitions."""
    if not index.manifest.get("partitions"):
        return None
    made = partitions.partitions_of(index)
    order = made.ranking(query)
    rank_of_list = np.empty(made.lists, dtype=np.int64)
    rank_of_list[order] = np.arange(made.lists)
    list_of_row = np.empty(index.size, dtype=np.int64)
    list_of_row[made.rows] = np.repeat(np.arange(made.lists), np.diff(made.offsets))
    return rank_of_list[list_of_row[rows]]


def code_cosines(index: Index, query: np.ndarray, bits: int) -> np.ndarray:
    """Code cosine distance, eq. (4), from one query (dim,) to every row at hash length `bits` (rows,) float64:
    the data of the app's "distance to every item" histogram."""
    query = np.asarray(query, dtype=np.float32).ravel()
    index.check_compatible(None, query.shape[0])
    if not 1 <= bits <= index.bits:
        raise EproductError(f"bits = {bits}: must be between 1 and the index's stored {index.bits}.")
    return lsh.code_cosine(index.encode(query[None, :])[0], index.words, bits)


def _row_codes(index: Index, rows: np.ndarray) -> np.ndarray:
    """Packed uint8 codes of rows, rebuilt from the word view."""
    words = index.words[rows]
    return np.ascontiguousarray(words.astype(">u8")).view(np.uint8).reshape(len(rows), -1)
