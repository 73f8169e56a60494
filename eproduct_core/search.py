"""Search an opened index: Hamming ranking with weighted and exact re-ranks, and the seed's cutoff mode.

numpy and the compiled loops of search_kernels.py (numba; numpy fallback); never torch.

Modes, at hash length `bits` (any prefix of the stored codes; default the stored length):
- "topk" (default), in up to four stages, each cheaper per row than the next and run on fewer rows:
  1. candidates: a scan of the first `probe_bits` bits of every code (search_kernels.py; default the
     first 128 bits) keeps the `candidates` rows nearest in Hamming distance (`probe_bits=bits`:
     an exact Hamming ranking of every row);
  2. shortlist: their full `bits`-bit Hamming distances keep the best `shortlist`;
  3. weighted Hamming (lsh.py: each differing bit costs the query's margin on that hyperplane)
     keeps the best `rerank` of those;
  4. exact cosine distance on their float16 vectors returns the top `k`.
  With rerank=0 (or an index without vectors) stages 3-4 are skipped: the top `k` by Hamming;
  with shortlist <= rerank, stage 3 is skipped: the exact re-rank takes the `rerank` best by Hamming.
  Stages 1-4 run as one compiled, GIL-free call per batch of queries (search_kernels.reranked).
  An optional `cutoff` keeps results with exact cosine distance < cutoff (code cosine when rerank=0).
- "cutoff" (the seed pipeline's): every item whose code cosine distance (eq. 4, see lsh.py) is
  < `cutoff`, ranked by that distance; `k` truncates (k=None keeps all). With rerank=R > 0 the
  first R admitted items are re-ranked by exact cosine.
Ties are broken by row number everywhere, so results are deterministic and shard-independent.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import lsh, search_kernels
from .errors import EproductError

DEFAULT_RERANK = 256  # rows re-ranked by exact cosine in the default top-k search
DEFAULT_SHORTLIST = 1536  # rows ranked by weighted Hamming (at least 6x the re-rank depth)
DEFAULT_PROBE_BITS = 128  # code prefix scanned over every row to pick candidates
DEFAULT_CANDIDATES = 8192  # rows kept by the prefix scan (at least 4x the shortlist)
SEED_CUTOFF = 0.1  # the seed pipeline's code cosine cutoff
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


def _order(primary: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.lexsort((rows, primary))


def _hamming_rows(index, qwords: np.ndarray, rows: np.ndarray | None, bits: int) -> np.ndarray:
    if rows is None:
        return lsh.hamming(qwords, index.words, bits)
    return search_kernels.rows_hamming(index.words, rows, qwords, bits, index.kernel)


def _topk_candidates(index, qwords, bits, depth, probed) -> tuple[np.ndarray, np.ndarray]:
    """The `depth` best rows by `bits`-bit Hamming among `probed` rows (None: all rows), best first."""
    if probed is None:  # exact: the `depth` nearest rows at `bits` by the scan kernel
        probed = index.scan(qwords, bits, depth)
    rows, dist = probed, _hamming_rows(index, qwords, probed, bits)
    best = search_kernels.nearest(dist, depth, bits, index.kernel)
    rows, dist = rows[best], dist[best]
    order = _order(dist, rows)
    return rows[order], dist[order]


def _code_cosine_rows(index, qwords, rows, bits) -> np.ndarray:
    return lsh.code_cosine(qwords, np.take(index.words, rows, axis=0), bits)


@dataclass(frozen=True)
class _Plan:
    """The resolved settings of one `search` call (see `_resolve`)."""

    mode: str
    bits: int
    k: int | None
    cutoff: float | None
    rerank: int
    shortlist: int
    probe_bits: int
    candidates: int

    @property
    def depth(self) -> int:
        """Rows ranked by full-length Hamming in top-k mode: the shortlist, or just k without a re-rank."""
        return max(self.shortlist, self.rerank, self.k) if self.rerank else self.k

    @property
    def scan_count(self) -> int:
        """Rows kept by the prefix scan (stage 1): never fewer than the shortlist."""
        return max(self.candidates, self.depth)

    def probes(self, index) -> bool:
        """Whether top-k mode scans a prefix first (stage 1) rather than ranking every row exactly."""
        return self.probe_bits < self.bits and self.scan_count < index.size


def _finish(index, query, qwords, rows, hamming, plan: _Plan, considered, rank_by_cos) -> SearchResult:
    """Re-rank the first `plan.rerank` rows by exact cosine (if any), then `_result`."""
    cosine = None
    if plan.rerank > 0:
        head = slice(0, plan.rerank)
        cosine = index.cosine_distances(query, rows[head])
        order = _order(cosine, rows[head])
        rows, hamming, cosine = rows[head][order], hamming[head][order], cosine[order]
    return _result(index, qwords, rows, hamming, cosine, plan, considered, rank_by_cos)


def _result(index, qwords, rows, hamming, cosine, plan: _Plan, considered, rank_by_cos) -> SearchResult:
    """Ranked rows -> SearchResult: the cutoff (on cosine, or code cosine without it) and k applied."""
    bits, k, cutoff = plan.bits, plan.k, plan.cutoff if rank_by_cos else None
    if cosine is not None:
        if cutoff is not None:
            keep = cosine < cutoff
            rows, hamming, cosine = rows[keep], hamming[keep], cosine[keep]
        if k is not None:
            rows, hamming, cosine = rows[:k], hamming[:k], cosine[:k]
        code_cos = _code_cosine_rows(index, qwords, rows, bits)  # only for the rows returned
    else:
        code_cos = _code_cosine_rows(index, qwords, rows, bits)
        if cutoff is not None:
            keep = code_cos < cutoff
            rows, hamming, code_cos = rows[keep], hamming[keep], code_cos[keep]
        if k is not None:
            rows, hamming, code_cos = rows[:k], hamming[:k], code_cos[:k]
    return SearchResult(
        index.ids(rows), rows.astype(np.int64), hamming.astype(np.int64), code_cos, cosine, int(considered)
    )


def _search_topk(index, query, qwords, plan: _Plan) -> SearchResult:
    """Top-k by Hamming (rerank=0), or Hamming best `rerank` re-ranked by exact cosine (no weighted stage)."""
    probed = index.scan(qwords, plan.probe_bits, plan.scan_count) if plan.probes(index) else None
    rows, hamming = _topk_candidates(index, qwords, plan.bits, plan.depth, probed)
    return _finish(index, query, qwords, rows, hamming, plan, len(rows), True)


def _search_reranked(index, queries, qwords, projections, plan: _Plan) -> list[SearchResult]:
    """Stages 1-4 (module doc) for a batch, in one compiled call where numba is available."""
    probe_bits, scan_count = (plan.probe_bits, plan.scan_count) if plan.probes(index) else (plan.bits, plan.depth)
    rows, hamming, cosine = index.reranked(
        qwords, projections, queries, probe_bits, plan.bits, scan_count, plan.depth, plan.rerank
    )
    considered = min(plan.depth, index.size)
    return [
        _result(index, qwords[i], rows[i], hamming[i], cosine[i], plan, considered, True) for i in range(len(queries))
    ]


def _search_cutoff(index, query, qwords, plan: _Plan) -> SearchResult:
    bits, cutoff = plan.bits, plan.cutoff
    if bits <= 64:
        mask = lsh.word_masks(bits)[0]
        q = qwords[0] & mask
        both = np.bitwise_count(index.word0 & q)
        weights = index.prefix_weights(bits)
        qweight = int(np.bitwise_count(q))
        # eq. (4) depends only on (weight, overlap) <= bits: decide each pair once, exactly as below, then look up
        pairs = np.arange(bits + 1)
        admit = lsh.code_cosine_from_counts(pairs[None, :], pairs[:, None], qweight) < cutoff  # [weight, overlap]
        admitted = np.flatnonzero(admit.ravel()[weights.astype(np.uint16) * (bits + 1) + both])
        admitted_dist = lsh.code_cosine_from_counts(both[admitted], weights[admitted], qweight)
        hamming = weights[admitted].astype(np.int64) + qweight - 2 * both[admitted].astype(np.int64)
    else:
        dist = lsh.code_cosine(qwords, index.words, bits)
        admitted = np.flatnonzero(dist < cutoff)
        admitted_dist = dist[admitted]
        hamming = _hamming_rows(index, qwords, admitted, bits)
    order = _order(admitted_dist, admitted)
    rows, hamming = admitted[order], hamming[order]
    return _finish(index, query, qwords, rows, hamming, plan, len(rows), False)


def _resolve(index, bits, mode, k, cutoff, rerank, shortlist, probe_bits, candidates) -> _Plan:
    bits = index.bits if bits is None else int(bits)
    if not 1 <= bits <= index.bits:
        raise EproductError(f"bits must be between 1 and the index's stored {index.bits}; got {bits}.")
    if mode not in ("topk", "cutoff"):
        raise EproductError(f"mode must be 'topk' or 'cutoff'; got {mode!r}.")
    if k is not None and k < 1:
        raise EproductError(f"k must be at least 1; got {k}.")
    if mode == "topk" and k is None:
        raise EproductError("mode 'topk' needs k (how many results to return).")
    if mode == "cutoff":
        cutoff = SEED_CUTOFF if cutoff is None else float(cutoff)
    if rerank is None:
        rerank = DEFAULT_RERANK if (mode == "topk" and index.has_vectors) else 0
    if rerank < 0 or (rerank > 0 and not index.has_vectors):
        raise EproductError(f"rerank {rerank} needs an index built with vectors and rerank >= 0.")
    probe_bits = min(DEFAULT_PROBE_BITS, bits) if probe_bits is None else min(int(probe_bits), bits)
    if probe_bits < 1:
        raise EproductError(f"probe_bits must be at least 1 (>= bits for an exact scan); got {probe_bits}.")
    if shortlist is None:
        shortlist = max(DEFAULT_SHORTLIST, 6 * rerank)
    if candidates is None:
        candidates = max(DEFAULT_CANDIDATES, 4 * shortlist, 8 * (k or 0))
    if shortlist < 1 or candidates < 1:
        raise EproductError(f"shortlist and candidates must be at least 1; got {shortlist} and {candidates}.")
    return _Plan(mode, bits, k, cutoff, int(rerank), int(shortlist), probe_bits, int(candidates))


def search(
    index,
    queries: np.ndarray,
    *,
    bits: int | None = None,
    mode: str = "topk",
    k: int | None = 10,
    cutoff: float | None = None,
    rerank: int | None = None,
    shortlist: int | None = None,
    probe_bits: int | None = None,
    candidates: int | None = None,
    threads: int = 1,
) -> list[SearchResult]:
    """Search `queries` (q, dim) against `index`; one `SearchResult` per query (see the module doc).

    rerank=None means DEFAULT_RERANK in topk mode (0 without stored vectors) and 0 in cutoff mode;
    cutoff=None in cutoff mode means the seed's 0.1; shortlist=None means max(DEFAULT_SHORTLIST, 6 rerank)
    (shortlist <= rerank skips the weighted stage); candidates=None means max(DEFAULT_CANDIDATES,
    4 shortlist, 8 k). `threads` > 1 splits the queries over that many threads.
    """
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
    plan = _resolve(index, bits, mode, k, cutoff, rerank, shortlist, probe_bits, candidates)
    projections = index.project(queries)
    qwords = lsh.to_words(lsh.pack(projections > 0))
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


def _search_many(index, queries, qwords, projections, plan: _Plan) -> list[SearchResult]:
    if plan.mode == "cutoff":
        return [_search_cutoff(index, queries[i], qwords[i], plan) for i in range(len(queries))]
    if 0 < plan.rerank < plan.depth:
        return _search_reranked(index, queries, qwords, projections, plan)
    return [_search_topk(index, queries[i], qwords[i], plan) for i in range(len(queries))]


def explain(
    index,
    query: np.ndarray,
    rows: Sequence[int],
    *,
    bits: int | None = None,
    cutoff: float = SEED_CUTOFF,
    probe_bits: int = DEFAULT_PROBE_BITS,
) -> list[RowExplanation]:
    """Per row: distances at `bits`, its Hamming, weighted and prefix-scan ranks, and what would have retrieved it."""
    query = np.asarray(query).ravel()
    index.check_compatible(None, query.shape[0])
    bits = index.bits if bits is None else int(bits)
    rows = np.asarray(rows, dtype=np.int64).ravel()
    if len(rows) and (rows.min() < 0 or rows.max() >= index.size):
        raise EproductError(f"Rows must be between 0 and {index.size - 1}.")
    projections = index.project(query[None, :])[0]
    qwords = lsh.to_words(lsh.pack(projections[None, :] > 0))[0]
    all_dist = _hamming_rows(index, qwords, None, bits)
    weighted = search_kernels.rows_weighted(index.words, np.arange(index.size), projections, bits, index.kernel)
    prefix_dist = _hamming_rows(index, qwords, None, min(probe_bits, bits))
    qbits = lsh.unpack(lsh.encode(query[None, :], index.planes), index.bits)[0, :bits].astype(np.int64)
    rbits = lsh.unpack(lsh.prefix(_row_codes(index, rows), index.bits), index.bits)[:, :bits].astype(np.int64)
    per_length = lsh.code_cosine_from_counts(
        np.cumsum(rbits & qbits, axis=1), np.cumsum(rbits, axis=1), np.cumsum(qbits)[None, :]
    )
    cosine = lsh.cosine_distance(query, index.vectors[rows]) if index.has_vectors else [None] * len(rows)
    shards = index.shard_of(rows)
    out = []
    for i, row in enumerate(rows):
        d, p, w = all_dist[row], prefix_dist[row], weighted[row]
        admits = np.flatnonzero(per_length[i] < cutoff)
        out.append(
            RowExplanation(
                row=int(row),
                id=index.ids([row])[0],
                shard=int(shards[i]),
                hamming=int(d),
                code_cosine=float(per_length[i, -1]),
                cosine=None if cosine[i] is None else float(cosine[i]),
                hamming_rank=int(np.count_nonzero(all_dist < d) + np.count_nonzero(all_dist[:row] == d)),
                weighted_rank=int(np.count_nonzero(weighted < w) + np.count_nonzero(weighted[:row] == w)),
                probe_rank=int(np.count_nonzero(prefix_dist < p) + np.count_nonzero(prefix_dist[:row] == p)),
                cutoff_needed=float(per_length[i, -1]),
                shortest_bits=int(admits[0]) + 1 if len(admits) else None,
            )
        )
    return out


def _row_codes(index, rows: np.ndarray) -> np.ndarray:
    """Packed uint8 codes of rows, rebuilt from the word view."""
    words = index.words[rows]
    return np.ascontiguousarray(words.astype(">u8")).view(np.uint8).reshape(len(rows), -1)
