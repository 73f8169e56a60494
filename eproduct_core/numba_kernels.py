"""Compiled loops of the search (numba): the candidate scan, and the distances of chosen rows.

The scan: prefix Hamming distances of every row, the rows within a radius, an exact selection.
Chosen rows: their Hamming and weighted Hamming distances (gathered from the (rows, words) codes),
and their exact cosine distances (gathered from the float16 vectors, read as uint16 bit patterns,
decoded exactly: by the CPU's float16 conversion where it has one (`HARDWARE_HALF`: x86 F16C, 64-bit ARM),
else by moving their bits into float32 position; accumulated in float64 in eight lanes in a fixed order:
the numpy fallback repeats the same arithmetic, so both return the same bits).
Stage sizes travel as one `search_kernels.Stages` tuple (probe_bits, bits, candidates, shortlist,
rerank) and the index arrays as one `search_kernels.Store` tuple; distances of prefixes longer than
two words are kept in uint16 (up to 4,096 bits), never uint8.
`partition_prefixes` is the scan restricted to the rows of probed k-means partitions (partitions.py).
`nearest_cosine` is stage 4: exact cosines only for the rows that a float32 pass (`cosine_estimates`, within a
proven `estimate_slack`) cannot rule out of the top k, so it returns the exact ranking's head.
`best_rows` and `reranked` chain them into stages 1-3 and 1-4 of a top-k search (search.py).
search_kernels.py drives them; this module only holds the loops, so that importing numba (~0.5 s)
and compiling (~9 s once, then loaded from numba's disk cache) happen on first use (`Index.warm`), not at
import. Every kernel releases the GIL, so Python threads search in parallel.

`columns` is a (words, rows) uint64 array: word j of every row, contiguous (Index.columns), read
as `words` sequential streams; `masks` (words,) keep the prefix bits of each word (lsh.word_masks).
The 128-bit scan runs near memory speed (~0.66 ms for 1.1M rows, 17.6 MB). In a batch, SCAN_QUERIES queries
share one pass over the columns (`shared_prefixes`: each block of rows is scored against all of them while it is
in cache): on an AVX-512 CPU a batch's query then took 0.78x a lone one's time at 1.1M rows
(benchmarks/RESULTS-batch-scan.md); a lone query scans alone.
"""

from __future__ import annotations

import platform

import numpy as np
from llvmlite import ir
from numba import config, njit, types
from numba.extending import intrinsic

_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)  # a mask keeping a whole word
LANES = 8  # partial sums of a cosine's dot products (rows_cosine; search_kernels.numpy_rows_cosine repeats them)
SCAN_BLOCK = 4096  # rows per block of the 128-bit scan: its distances and hit flags stay in L1 (a multiple of 8)
SCAN_QUERIES = 8  # queries of a batch whose flat stage 1 shares one pass over the columns (`shared_prefixes`)
_TINY = np.finfo(np.float64).tiny  # lsh.code_cosine_from_counts's floor under a norm (an all-zero code)


@njit(inline="always")
def _popcount(x):
    """Set bits of a uint64 (SWAR; measured faster here than LLVM's ctpop in these loops)."""
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(inline="always")
def _word_masks(bits):
    """uint64 masks (ceil(bits/64),) keeping the first `bits` bits of the word view (lsh.word_masks)."""
    nwords = (bits + 63) // 64
    masks = np.empty(nwords, dtype=np.uint64)
    masks[:] = _ALL
    spare = nwords * 64 - bits
    if spare:
        masks[nwords - 1] = _ALL << np.uint64(spare)
    return masks


@njit(cache=True, nogil=True)
def sample_histogram(sample, query, masks, max_distance):
    """Counts (max_distance + 1,) of the query's distances to the rows of `sample` (words, m)."""
    counts = np.zeros(max_distance + 1, dtype=np.int64)
    dists = np.empty(SCAN_BLOCK, dtype=np.uint16)
    hits = np.empty(SCAN_BLOCK, dtype=np.uint8)
    for start in range(0, sample.shape[1], SCAN_BLOCK):  # the scan's vectorised block loop (3x a row loop)
        stop = min(sample.shape[1], start + SCAN_BLOCK)
        _block_distances(sample, start, stop, query, masks, max_distance, dists, hits)
        for i in range(stop - start):
            counts[dists[i]] += 1
    return counts


@njit(cache=True, nogil=True)
def within(columns, query, masks, radius, rows_out, dists_out):
    """Every row with distance <= radius, in row order, into rows_out / dists_out (each >= rows long).

    Returns how many. Prefixes of one to four whole words (64, 128, 192, 256 bits) have their own loops;
    any other prefix runs the block loop of `_within_blocks` (a word loop, masks): for 256 bits over 1.1M
    rows the four-word loop took 1.46 ms, the block loop 2.77 ms, a per-row word loop 4.75 ms.
    """
    whole = True
    for mask in masks:
        whole = whole and mask == _ALL
    if whole and columns.shape[0] == 2:
        return _within_two_words(columns[0], columns[1], query[0], query[1], radius, rows_out, dists_out)
    if whole and columns.shape[0] == 1:
        return _within_one_word(columns[0], query[0], radius, rows_out, dists_out)
    if whole and columns.shape[0] == 4:
        return _within_four_words(columns, query, radius, rows_out, dists_out)
    if whole and columns.shape[0] == 3:
        return _within_three_words(columns, query, radius, rows_out, dists_out)
    return _within_blocks(columns, query, masks, radius, rows_out, dists_out)


@njit(inline="always")
def _within_two_words(c0, c1, q0, q1, radius, rows_out, dists_out):
    """The default 128-bit scan, block by block: SIMD distances and hit flags for SCAN_BLOCK rows, then
    only the 8-row groups with a hit are visited (~1% of rows are hits): ~20% faster than one loop."""
    dists = np.empty(SCAN_BLOCK, dtype=np.uint8)  # two words: distances <= 128 fit
    hits = np.zeros(SCAN_BLOCK, dtype=np.uint8)
    groups = hits.view(np.uint64)  # eight hit flags per word; most words are zero
    k = 0
    for start in range(0, len(c0), SCAN_BLOCK):
        size = min(len(c0) - start, SCAN_BLOCK)
        if size < SCAN_BLOCK:
            hits[:] = 0
        _distances_and_hits(
            c0[start : start + size], c1[start : start + size], q0, q1, radius, dists[:size], hits[:size]
        )
        k = _collect_hits(start, hits, groups, dists, rows_out, dists_out, k)
    return k


@njit(nogil=True)
def _distances_and_hits(c0, c1, q0, q1, radius, dists, hits):
    """Distances and (distance <= radius) flags of a block; no data-dependent store, so LLVM vectorises it."""
    for i in range(len(dists)):
        d = _popcount(c0[i] ^ q0) + _popcount(c1[i] ^ q1)
        dists[i] = d
        hits[i] = d <= radius


@njit(inline="always")
def _collect_hits(start, hits, groups, dists, rows_out, dists_out, k):
    """Append the rows of a block whose hit flag is set (visiting only 8-row groups with a hit); returns k."""
    for group in range(len(groups)):
        if groups[group] != 0:
            for i in range(8 * group, 8 * group + 8):
                if hits[i]:
                    rows_out[k] = start + i
                    dists_out[k] = dists[i]
                    k += 1
    return k


@njit(inline="always")
def _within_four_words(columns, query, radius, rows_out, dists_out):
    """The 256-bit scan, block by block as `_within_two_words` (distances up to 256: uint16)."""
    dists = np.empty(SCAN_BLOCK, dtype=np.uint16)
    hits = np.zeros(SCAN_BLOCK, dtype=np.uint8)
    groups = hits.view(np.uint64)
    c0, c1, c2, c3 = columns[0], columns[1], columns[2], columns[3]
    k = 0
    for start in range(0, len(c0), SCAN_BLOCK):
        stop = min(len(c0), start + SCAN_BLOCK)
        if stop - start < SCAN_BLOCK:
            hits[:] = 0
        _four_word_distances(c0[start:stop], c1[start:stop], c2[start:stop], c3[start:stop], query, radius, dists, hits)
        k = _collect_hits(start, hits, groups, dists, rows_out, dists_out, k)
    return k


@njit(nogil=True)
def _four_word_distances(c0, c1, c2, c3, query, radius, dists, hits):
    """Distances and hit flags of a block of four-word prefixes (vectorised, as `_distances_and_hits`)."""
    q0, q1, q2, q3 = query[0], query[1], query[2], query[3]
    for i in range(len(c0)):
        d = _popcount(c0[i] ^ q0) + _popcount(c1[i] ^ q1) + _popcount(c2[i] ^ q2) + _popcount(c3[i] ^ q3)
        dists[i] = d
        hits[i] = d <= radius


@njit(inline="always")
def _within_three_words(columns, query, radius, rows_out, dists_out):
    """The 192-bit scan, block by block as `_within_four_words`: three quarters of its bytes read."""
    dists = np.empty(SCAN_BLOCK, dtype=np.uint16)
    hits = np.zeros(SCAN_BLOCK, dtype=np.uint8)
    groups = hits.view(np.uint64)
    c0, c1, c2 = columns[0], columns[1], columns[2]
    k = 0
    for start in range(0, len(c0), SCAN_BLOCK):
        stop = min(len(c0), start + SCAN_BLOCK)
        if stop - start < SCAN_BLOCK:
            hits[:] = 0
        _three_word_distances(c0[start:stop], c1[start:stop], c2[start:stop], query, radius, dists, hits)
        k = _collect_hits(start, hits, groups, dists, rows_out, dists_out, k)
    return k


@njit(nogil=True)
def _three_word_distances(c0, c1, c2, query, radius, dists, hits):
    """Distances and hit flags of a block of three-word prefixes (vectorised, as `_distances_and_hits`)."""
    q0, q1, q2 = query[0], query[1], query[2]
    for i in range(len(c0)):
        d = _popcount(c0[i] ^ q0) + _popcount(c1[i] ^ q1) + _popcount(c2[i] ^ q2)
        dists[i] = d
        hits[i] = d <= radius


@njit(inline="always")
def _within_blocks(columns, query, masks, radius, rows_out, dists_out):
    """Any prefix, block by block: each word's masked distances added over a block of rows (a vectorised
    loop per word), then the block's hits collected."""
    dists = np.empty(SCAN_BLOCK, dtype=np.uint16)  # prefixes of up to 4,096 bits
    hits = np.zeros(SCAN_BLOCK, dtype=np.uint8)
    groups = hits.view(np.uint64)
    n = columns.shape[1]
    k = 0
    for start in range(0, n, SCAN_BLOCK):
        stop = min(n, start + SCAN_BLOCK)
        if stop - start < SCAN_BLOCK:
            hits[:] = 0
        _block_distances(columns, start, stop, query, masks, radius, dists, hits)
        k = _collect_hits(start, hits, groups, dists, rows_out, dists_out, k)
    return k


@njit(nogil=True)
def _block_distances(columns, start, stop, query, masks, radius, dists, hits):
    """Masked prefix distances and hit flags of rows start..stop, word by word."""
    size = stop - start
    for i in range(size):
        dists[i] = 0
    for j in range(columns.shape[0]):
        column, qj, mask = columns[j, start:stop], query[j], masks[j]
        for i in range(size):
            dists[i] += _popcount((column[i] ^ qj) & mask)
    for i in range(size):
        hits[i] = dists[i] <= radius


@njit(inline="always")
def _within_one_word(c0, q0, radius, rows_out, dists_out):
    k = 0
    for row in range(len(c0)):
        d = _popcount(c0[row] ^ q0)
        if d <= radius:
            rows_out[k] = row
            dists_out[k] = d
            k += 1
    return k


@njit(cache=True, nogil=True)
def select_nearest(dists, count, max_distance):
    """Indices (ascending) of the `count` smallest of `dists` (ints in [0, max_distance]); ties: lowest index."""
    count = min(count, len(dists))
    counts = np.zeros(max_distance + 2, dtype=np.int64)
    for d in dists:
        counts[d] += 1
    threshold, below = 0, 0
    while below + counts[threshold] < count:
        below += counts[threshold]
        threshold += 1
    at_threshold = count - below
    out = np.empty(count, dtype=np.int64)
    k = 0
    for i in range(len(dists)):
        d = dists[i]
        if d < threshold or (d == threshold and at_threshold > 0):
            if d == threshold:
                at_threshold -= 1
            out[k] = i
            k += 1
    return out


@njit(cache=True, nogil=True)
def nearest_prefixes(columns, sample, query, probe_bits, count, margin, scratch):
    """Rows (ascending) of the `count` nearest `probe_bits`-bit prefixes (ties: lowest row); see search_kernels.py.

    The distances to `sample` (a strided subset of the columns) give a radius expected to admit
    `margin` x `count` rows; one pass collects the rows within it (into `scratch` = (int64 rows, uint16
    distances), each >= rows long); a radius that admits too few is widened and the pass repeated; the
    `count` nearest are selected exactly.
    """
    rows_buffer, dists_buffer = scratch
    masks = _word_masks(probe_bits)
    n = columns.shape[1]
    if count >= n:
        return np.arange(n)
    radius = _first_radius(sample, query, masks, probe_bits, count, margin, n)
    while True:
        found = within(columns, query, masks, radius, rows_buffer, dists_buffer)
        if found >= count or radius >= probe_bits:
            break
        radius = min(probe_bits, radius + 1 + (count - found) * 2 // count)
    return rows_buffer[:found][select_nearest(dists_buffer[:found], count, probe_bits)]


@njit(inline="always")
def _first_radius(sample, query, masks, probe_bits, count, margin, n):
    """The radius the sampled distances expect to admit `margin` x `count` of the `n` rows (all bits when
    `count` is over a quarter of them)."""
    radius = probe_bits
    if count * 4 <= n:
        sampled = sample_histogram(sample, query, masks, probe_bits)
        wanted, radius, admitted = count * margin * sample.shape[1] / n, 0, sampled[0]
        while admitted < wanted and radius < probe_bits:
            radius += 1
            admitted += sampled[radius]
    return radius


@njit(cache=True, nogil=True)
def shared_prefixes(columns, sample, queries, probe_bits, count, margin, scratch):
    """`nearest_prefixes` of several queries (rows of `queries`) in one pass over the columns: each block of
    rows is read once and scored against every query while it sits in cache, so a batch reads the columns
    once instead of once per query. Returns (queries, min(count, rows)) int64, each row what `nearest_prefixes`
    returns for that query (a query whose first radius admits too few rows is finished by `nearest_prefixes`).
    `scratch` = (int64 rows, uint16 distances), each (>= queries, >= rows)."""
    rows_buffer, dists_buffer = scratch
    n, nq = columns.shape[1], queries.shape[0]
    out = np.empty((nq, min(count, n)), dtype=np.int64)
    if count >= n:
        for q in range(nq):
            out[q] = np.arange(n)
        return out
    masks = _word_masks(probe_bits)
    whole = True
    for mask in masks:
        whole = whole and mask == _ALL
    radius = np.empty(nq, dtype=np.int64)
    for q in range(nq):
        radius[q] = _first_radius(sample, queries[q], masks, probe_bits, count, margin, n)
    found = np.zeros(nq, dtype=np.int64)
    dists = np.empty(SCAN_BLOCK, dtype=np.uint16)
    hits = np.zeros(SCAN_BLOCK, dtype=np.uint8)
    groups = hits.view(np.uint64)
    for start in range(0, n, SCAN_BLOCK):
        stop = min(n, start + SCAN_BLOCK)
        if stop - start < SCAN_BLOCK:
            hits[:] = 0
        for q in range(nq):
            query = queries[q]
            if whole and columns.shape[0] == 4:
                c0, c1, c2, c3 = (
                    columns[0, start:stop],
                    columns[1, start:stop],
                    columns[2, start:stop],
                    columns[3, start:stop],
                )
                _four_word_distances(c0, c1, c2, c3, query, radius[q], dists, hits)
            elif whole and columns.shape[0] == 3:
                c0, c1, c2 = columns[0, start:stop], columns[1, start:stop], columns[2, start:stop]
                _three_word_distances(c0, c1, c2, query, radius[q], dists, hits)
            elif whole and columns.shape[0] == 2:
                size = stop - start
                _distances_and_hits(
                    columns[0, start:stop],
                    columns[1, start:stop],
                    query[0],
                    query[1],
                    radius[q],
                    dists[:size],
                    hits[:size],
                )
            else:
                _block_distances(columns, start, stop, query, masks, radius[q], dists, hits)
            found[q] = _collect_hits(start, hits, groups, dists, rows_buffer[q], dists_buffer[q], found[q])
    for q in range(nq):
        if found[q] >= count or radius[q] >= probe_bits:
            out[q] = rows_buffer[q, : found[q]][select_nearest(dists_buffer[q, : found[q]], count, probe_bits)]
        else:
            out[q] = nearest_prefixes(
                columns, sample, queries[q], probe_bits, count, margin, (rows_buffer[q], dists_buffer[q])
            )
    return out


@njit(cache=True, nogil=True)
def best_rows(store, stages, margin, query, table, scratch):
    """Stages 1-3 of a top-k search for one query (search.py), sized by `stages` (search_kernels.Stages):
    the `candidates` nearest prefixes, the `shortlist` of those nearest in full Hamming distance, the
    `rerank` of those nearest in weighted Hamming (ties: lowest row). Returns their rows and Hamming
    distances, best (weighted) first."""
    probed = nearest_prefixes(store.columns, store.sample, query, stages.probe_bits, stages.candidates, margin, scratch)
    return from_candidates(store, stages, probed, query, table)


@njit(cache=True, nogil=True)
def from_candidates(store, stages, probed, query, table):
    """Stages 2-3 on the candidate rows `probed` (ascending): the `shortlist` nearest in full Hamming distance,
    then the `rerank` of those nearest in weighted Hamming (ties: lowest row), best first, with their Hamming."""
    masks = _word_masks(stages.bits)
    rows = probed
    if len(probed) > stages.shortlist:  # else stage 2 keeps every row: their Hamming is needed only at the end
        hamming = rows_hamming(store.words, probed, query, masks)
        rows = probed[select_nearest(hamming, stages.shortlist, stages.bits)]  # ascending, so rows ascend too
    order = smallest_first(rows_weighted(store.words, rows, table), stages.rerank)  # rows ascend: ties by row
    return rows[order], rows_hamming(store.words, rows[order], query, masks)


@njit(cache=True, nogil=True)
def partition_prefixes(parts, lists, query, probe_bits, count, marks):
    """Rows (ascending) of the `count` nearest `probe_bits`-bit prefixes among the rows of the probed `lists`
    (partitions.py; ties: lowest row): the flat scan's rows when every list is probed.

    One pass over the probed prefixes (`parts.columns` holds them in list order) computes their distances
    list by list, word by word (vectorised loops) into one buffer, and their histogram gives the threshold
    distance; a pass over the buffer marks the rows below it and those at it in two bitmaps (`marks`, (2,
    ceil(rows / 64)) uint64, all zero on entry and on return), which are read back in row order, taking the
    lowest-numbered rows at the threshold: no sort of the candidates (one distance pass instead of two:
    ~25% faster for 16 of 256 lists of 210k rows).
    """
    columns, rows, offsets = parts
    masks = _word_masks(probe_bits)
    found = 0
    for part in lists:
        found += offsets[part + 1] - offsets[part]
    dists = np.zeros(found, dtype=np.uint16)
    at = 0
    for part in lists:
        start, size = offsets[part], offsets[part + 1] - offsets[part]
        segment = dists[at : at + size]
        for j in range(columns.shape[0]):
            column, qj, mask = columns[j, start : start + size], query[j], masks[j]
            for i in range(size):
                segment[i] += _popcount((column[i] ^ qj) & mask)
        at += size
    counts = np.zeros(probe_bits + 2, dtype=np.int64)
    for d in dists:
        counts[d] += 1
    threshold, below = probe_bits + 1, 0
    if found > count:
        threshold = 0
        while below + counts[threshold] < count:
            below += counts[threshold]
            threshold += 1
    one = np.uint64(1)
    at = 0
    for part in lists:
        start, size = offsets[part], offsets[part + 1] - offsets[part]
        for i in range(size):
            d = dists[at + i]
            if d <= threshold:
                r = rows[start + i]
                marks[0 if d < threshold else 1, r >> 6] |= one << np.uint64(r & 63)
        at += size
    return _marked_rows(marks, count - below, min(found, count))


@njit(inline="always")
def _marked_rows(marks, need, size):
    """The rows marked in bitmap 0 and the `need` lowest of bitmap 1, ascending; clears the bitmaps."""
    one = np.uint64(1)
    out = np.empty(size, dtype=np.int64)
    k = 0
    for w in range(marks.shape[1]):
        lower, tied = marks[0, w], marks[1, w]
        if lower == 0 and tied == 0:
            continue
        marks[0, w], marks[1, w] = 0, 0
        while tied != 0 and need > 0:
            low = tied & (~tied + one)  # the lowest set bit
            lower |= low
            tied ^= low
            need -= 1
        while lower != 0:
            low = lower & (~lower + one)
            out[k] = w * 64 + _popcount(low - one)
            k += 1
            lower ^= low
    return out[:k]


@njit(cache=True, nogil=True)
def smallest_first(values, count):
    """Indices of the `count` smallest `values`, smallest first, ties by lowest index: the first `count` of a
    stable argsort, found by a partition and a sort of those only (~8x less work for 768 of 4,608)."""
    if count >= len(values):
        return np.argsort(values, kind="mergesort")
    threshold = np.partition(values, count - 1)[count - 1]
    picked = np.empty(count, dtype=np.int64)
    k = 0
    for i in range(len(values)):
        if values[i] < threshold:
            picked[k] = i
            k += 1
    for i in range(len(values)):
        if k == count:
            break
        if values[i] == threshold:
            picked[k] = i
            k += 1
    return picked[np.argsort(values[picked], kind="mergesort")]


@njit(cache=True, nogil=True)
def reranked(store, parts, stages, margin, qwords, lists, projections, queries, scratch, marks):
    """Stages 1-4 for a batch of queries, in one GIL-free call: per query, stage 1 from the flat scan
    (`lists` of width 0) or from its probed partitions (`lists[q]`, `partition_prefixes`), stages 2-3
    (`from_candidates`), then the rows ordered by exact cosine distance to the float16 `store.vectors`
    (uint16 bit patterns; ties: lowest row). Returns (rows, Hamming, cosine, code cosine), each (queries,
    min(rerank, shortlist, rows)) (code cosine: eq. (4) at `stages.bits`, lsh.code_cosine_from_counts's
    float64 steps on `rows_code_counts`), and each query's count of filled columns (fewer only when its
    probed partitions hold fewer rows)."""
    m = min(stages.rerank, stages.shortlist, store.words.shape[0])
    out_rows = np.zeros((len(queries), m), dtype=np.int64)
    out_hamming = np.zeros((len(queries), m), dtype=np.int64)
    out_cosine = np.zeros((len(queries), m), dtype=np.float64)
    out_code_cosine = np.zeros((len(queries), m), dtype=np.float64)
    filled = np.empty(len(queries), dtype=np.int64)
    masks = _word_masks(stages.bits)
    shared = np.empty((0, 0), dtype=np.int64)
    for q in range(len(queries)):
        if lists.shape[1] == 0 and len(queries) == 1:
            probed = nearest_prefixes(
                store.columns,
                store.sample,
                qwords[q],
                stages.probe_bits,
                stages.candidates,
                margin,
                (scratch[0][0], scratch[1][0]),
            )
        elif lists.shape[1] == 0:
            if q % SCAN_QUERIES == 0:  # stage 1 of the next SCAN_QUERIES queries, in one pass over the columns
                block = qwords[q : q + SCAN_QUERIES]
                shared = shared_prefixes(
                    store.columns, store.sample, block, stages.probe_bits, stages.candidates, margin, scratch
                )
            probed = shared[q % SCAN_QUERIES]
        else:
            probed = partition_prefixes(parts, lists[q], qwords[q], stages.probe_bits, stages.candidates, marks)
        table = weighted_table(projections[q], stages.bits)
        rows, hamming = from_candidates(store, stages, probed, qwords[q], table)
        by_row = np.argsort(rows)
        rows, hamming = rows[by_row], hamming[by_row]
        picked, cosine = nearest_cosine(store.vectors, rows, queries[q], stages.top)
        c = len(picked)
        out_rows[q, :c] = rows[picked]
        out_hamming[q, :c] = hamming[picked]
        out_cosine[q, :c] = cosine
        both, weights = rows_code_counts(store.words, rows[picked], qwords[q], masks)
        qweight = 0
        for j in range(len(masks)):
            qweight += _popcount(qwords[q, j] & masks[j])
        for i in range(c):
            norm2 = np.float64(weights[i]) * np.float64(qweight)
            out_code_cosine[q, i] = 1.0 - np.float64(both[i]) / np.sqrt(max(norm2, _TINY))
        filled[q] = c
    return out_rows, out_hamming, out_cosine, out_code_cosine, filled


@njit(cache=True, nogil=True)
def nearest_cosine(vectors, rows, query, top):
    """The `top` of `rows` (ascending) nearest `query` by exact cosine distance (`rows_cosine`; ties: lowest
    row), best first, as (indices into rows, their exact distances); every row when top is 0 or >= len(rows).

    The exact distances are computed only for the rows that can be among the `top`: a float32 pass
    (`cosine_estimates`) bounds every row's distance within +-ESTIMATE_SLACK(dim), the rows whose lower
    bound exceeds the top-th smallest upper bound are dropped. The result is the exact ranking's first
    `top`, whatever the float32 pass's rounding (so the numpy kernel, which ranks every row exactly,
    returns the same rows and bits).
    """
    n = len(rows)
    keep = np.arange(n)
    slack = estimate_slack(len(query))
    if 0 < top < n and slack < 0.5:
        estimates = cosine_estimates(vectors, rows, query)
        upper = np.partition(estimates, top - 1)[top - 1] + slack
        keep = np.flatnonzero(estimates - slack <= upper)
    cosine = rows_cosine(vectors, rows[keep], query)
    ranked = np.argsort(cosine, kind="mergesort")  # stable over ascending rows: ties by row
    if 0 < top < len(ranked):
        ranked = ranked[:top]
    return keep[ranked], cosine[ranked]


@njit(cache=True, nogil=True)
def probed_lists(half, queries, probes, max_norm, basis, coords, spill):
    """Per query, the `probes` rows of `half` (float16 bit patterns, (lists, dim): partition centroids) with the
    largest exact dot product with it (ties: lowest list), ascending: (queries, probes) int64. Exact: each
    product exact in float64, summed in `_lane_sum`'s fixed order (search_kernels.numpy_list_scores repeats it).

    A float32 pass (`dot_estimates`) bounds every score within s = estimate_slack(dim) |q| max_norm; with u its
    probes-th largest estimate, the lists estimated above u + 2s are in the top `probes` whatever the rounding,
    those below u - 2s are out; only the few between are scored exactly. So the result is the exact ranking's
    top `probes`, several times faster than scoring every list exactly.

    With a low-rank sketch of the centroids (`basis` (r, dim) float64 orthonormal rows, r > 0; `coords` (lists,
    r) float32, the centroids in it; `spill` (lists,) float64, each centroid's distance from its span,
    centroid_sketch.py), a cheaper pass first drops the lists that cannot be in the top `probes`
    (`_sketch_survivors`) and the pass above scores only the rest: the same lists."""
    lists, dim = half.shape
    out = np.empty((len(queries), probes), dtype=np.int64)
    query64 = np.empty(dim, dtype=np.float64)
    values = np.empty(dim, dtype=np.float64)
    bits = np.empty(dim, dtype=np.uint32)
    every = np.arange(lists)
    for q in range(len(queries)):
        for j in range(dim):
            query64[j] = queries[q, j]
        norm = np.sqrt(_lane_sum(query64, query64))
        rows = every
        if basis.shape[0] > 0:
            rows = _sketch_survivors(basis, coords, spill, query64, probes, norm * max_norm)
        estimates = dot_estimates(half, rows, queries[q])
        slack = estimate_slack(dim) * norm * max_norm
        u = -np.partition(-estimates, probes - 1)[probes - 1]
        k = 0
        band = np.empty(len(rows), dtype=np.int64)
        banded = 0
        for i in range(len(rows)):
            if estimates[i] > u + 2.0 * slack:
                out[q, k] = rows[i]
                k += 1
            elif estimates[i] >= u - 2.0 * slack:
                band[banded] = rows[i]
                banded += 1
        exact = np.empty(banded, dtype=np.float64)
        for b in range(banded):
            _decode_half(half[band[b]], bits, values)
            exact[b] = -_lane_sum(values, query64)
        order = np.argsort(exact, kind="mergesort")  # band ascending (`rows` is): ties to the lowest list
        for b in range(probes - k):
            out[q, k + b] = band[order[b]]
        out[q].sort()
    return out


@njit(cache=True, nogil=True)
def _sketch_survivors(basis, coords, spill, query64, probes, scale):
    """The lists (ascending) whose exact score with the query can reach the `probes`-th largest. With B the
    sketch's orthonormal basis, q.c = (Bq).(Bc) + (q - B'Bq).(c - B'Bc), so |q.c - (Bq).(Bc)| <= |q - B'Bq|
    spill_c, and |q - B'Bq|^2 = |q|^2 - |Bq|^2; the float32 sketch products err by at most estimate_slack(r)
    |q| |c| (`scale` = |q| max_norm bounds that product; its 1e-9 and the 1e-12 |q|^2 below cover the float64
    steps). Every list whose upper bound falls below the probes-th largest lower bound is beaten by `probes`
    lists whatever the rounding: dropped."""
    rank = basis.shape[0]
    lists = coords.shape[0]
    projected = _project(basis, query64)
    square = _lane_sum(query64, query64)
    outside = np.sqrt(max(0.0, square - _lane_sum(projected, projected)) + 1e-12 * square)
    estimates = _sketch_estimates(coords, projected.astype(np.float32))
    slack = estimate_slack(rank) * scale
    lower = np.empty(lists, dtype=np.float64)
    for i in range(lists):
        lower[i] = estimates[i] - outside * spill[i] - slack
    cut = _kth_largest(lower, probes)
    keep = np.empty(lists, dtype=np.int64)
    kept = 0
    for i in range(lists):
        if estimates[i] + outside * spill[i] + slack >= cut:
            keep[kept] = i
            kept += 1
    return keep[:kept]


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _project(basis, query64):
    """basis @ query (rank,) float64, summed in whatever order vectorises (float64: far inside the slack)."""
    rank, dim = basis.shape
    out = np.empty(rank, dtype=np.float64)
    for i in range(rank):
        dot = 0.0
        for j in range(dim):
            dot += basis[i, j] * query64[j]
        out[i] = dot
    return out


@njit(cache=True, nogil=True)
def _kth_largest(values, k):
    """The k-th largest of `values` (1 <= k <= len): a 1,024-bin histogram finds the bin that holds it, then
    only that bin's values are partitioned (np.partition of all 4,096 took 37 us, most of the sketch pass)."""
    n = len(values)
    low, high = values.min(), values.max()
    if not high > low:
        return low
    bins = 1024
    width = (high - low) / bins
    counts = np.zeros(bins, dtype=np.int64)
    slot = np.empty(n, dtype=np.int64)
    for i in range(n):
        slot[i] = min(bins - 1, int((values[i] - low) / width))
        counts[slot[i]] += 1
    above = 0
    b = bins - 1
    while above + counts[b] < k:
        above += counts[b]
        b -= 1
    inside = np.empty(counts[b], dtype=np.float64)
    m = 0
    for i in range(n):
        if slot[i] == b:
            inside[m] = values[i]
            m += 1
    need = k - above  # the need-th largest inside bin b
    return -np.partition(-inside, need - 1)[need - 1]


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _sketch_estimates(coords, query):
    """coords @ query (lists,) in float32, in whatever order vectorises (within estimate_slack(r))."""
    lists, rank = coords.shape
    out = np.empty(lists, dtype=np.float64)
    for i in range(lists):
        dot = np.float32(0.0)
        for j in range(rank):
            dot += coords[i, j] * query[j]
        out[i] = dot
    return out


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _dot_estimates_hardware(half, rows, query):
    """`dot_estimates` by the CPU's float16 conversion, inline (exact, so fastmath cannot change it)."""
    dim = half.shape[1]
    out = np.empty(len(rows), dtype=np.float64)
    for i in range(len(rows)):
        row = half[rows[i]]
        dot = np.float32(0.0)
        for j in range(dim):
            dot += _half_to_float(row[j]) * query[j]  # type: ignore[call-arg]
        out[i] = dot
    return out


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _dot_estimates_integer(half, rows, query):
    """`dot_estimates` with the rows decoded exactly four at a time first (`_decode_four`, no fastmath there)."""
    dim = half.shape[1]
    out = np.empty(len(rows), dtype=np.float64)
    bits = np.empty((4, dim), dtype=np.uint32)
    small = np.empty((4, dim), dtype=np.float32)
    values = bits.view(np.float32)
    for start in range(0, len(rows), 4):
        group = min(4, len(rows) - start)
        _decode_four(half, rows[start : start + group], bits, small)
        for g in range(group):
            dot = np.float32(0.0)
            for j in range(dim):
                dot += values[g, j] * query[j]
            out[start + g] = dot
    return out


@njit(inline="always")
def estimate_slack(dim):
    """A bound on |estimate - exact| of `cosine_estimates`' distances: a float32 sum of `dim` products (or
    squares), in any order, is within gamma = dim u / (1 - dim u) (u = 2^-24) of the exact sum relative to
    the sum of the products' magnitudes (<= |a| |b|); the dot and the row's squared norm each err so, so the
    cosine errs by at most 2 gamma / (1 - gamma); 3 gamma and 1e-9 more cover the float64 steps."""
    unit = dim * 2.0**-24
    gamma = unit / (1.0 - unit) if unit < 0.5 else 1.0
    return 3.0 * gamma + 1e-9


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def cosine_estimates(vectors, rows, query):
    """Cosine distances (len(rows),) float64 of the given rows of `vectors` (float16 bit patterns) to `query`,
    within `estimate_slack` of `rows_cosine`'s and several times faster: the rows decoded exactly to float32
    (`_decode_four`, no fastmath there), then summed in float32 in whatever order vectorises (fastmath here:
    sums reassociated, products fused, which the bound allows)."""
    dim = len(query)
    query_norm = 0.0
    for j in range(dim):
        query_norm += np.float64(query[j]) * np.float64(query[j])
    out = np.ones(len(rows), dtype=np.float64)
    bits = np.empty((4, dim), dtype=np.uint32)
    small = np.empty((4, dim), dtype=np.float32)
    values = bits.view(np.float32)
    for start in range(0, len(rows), 4):
        group = min(4, len(rows) - start)
        _decode_four(vectors, rows[start : start + group], bits, small)
        for g in range(group):
            dot = np.float32(0.0)
            norm = np.float32(0.0)
            for j in range(dim):
                x = values[g, j]
                dot += x * query[j]
                norm += x * x
            if norm > 0 and query_norm > 0:
                out[start + g] = 1.0 - np.float64(dot) / np.sqrt(np.float64(norm) * query_norm)
    return out


def _hardware_half() -> bool:
    """Whether the compiled code converts float16 to float32 in one instruction: x86 with F16C or 64-bit ARM,
    compiling for this machine's CPU (NUMBA_CPU_NAME unset or "host"). Elsewhere LLVM would call a helper
    the JIT may not link, so the integer decodes below are used instead (same values, slower)."""
    if getattr(config, "CPU_NAME", None) not in (None, "host"):
        return False
    if platform.machine().lower() in ("aarch64", "arm64"):
        return True
    import llvmlite.binding as llvm

    return bool(llvm.get_host_cpu_features().get("f16c"))


HARDWARE_HALF = _hardware_half()


@intrinsic
def _half_to_float(typingctx, pattern):
    """A float16 bit pattern (uint16) -> its float32 value (LLVM fpext: exact for every float16; F16C's
    vcvtph2ps, vectorised, on x86)."""
    if pattern != types.uint16:
        return None

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(types.uint16), codegen


_TWO_MINUS_24 = np.float32(2.0**-24)  # a float16 subnormal's unit


@njit(cache=True, nogil=True)
def _decode_four_hardware(vectors, rows, bits, small):
    """`_decode_four` by the CPU's float16 conversion (`small` unused): the same float32 values."""
    values = bits.view(np.float32)
    dim = bits.shape[1]
    for g in range(len(rows)):
        row = vectors[rows[g]]
        for j in range(dim):
            values[g, j] = _half_to_float(row[j])  # type: ignore[call-arg]


@njit(cache=True, nogil=True)
def _decode_four_integer(vectors, rows, bits, small):
    """Up to four rows of float16 bit patterns -> their exact float32 bit patterns in `bits` (rows, dim), with
    no float32 subnormal on the way (slow): a normal's exponent is rebased in integer arithmetic, a
    subnormal (and zero) is its 10-bit mantissa times 2^-24 (`small`); read side by side (four streams of
    cache misses in flight)."""
    dim = bits.shape[1]
    for g in range(len(rows)):
        row = vectors[rows[g]]
        for j in range(dim):
            small[g, j] = np.float32(np.int32(row[j]) & np.int32(0x3FF)) * _TWO_MINUS_24
    small_bits = small.view(np.uint32)
    for g in range(len(rows)):
        row = vectors[rows[g]]
        for j in range(dim):
            h = np.uint32(row[j])
            magnitude = h & np.uint32(0x7FFF)
            normal = np.uint32(0) - ((magnitude + np.uint32(0x7C00)) >> np.uint32(15))  # all ones if normal
            rebased = (magnitude << np.uint32(13)) + np.uint32(112 << 23)
            bits[g, j] = ((h & np.uint32(0x8000)) << np.uint32(16)) | (rebased & normal) | (small_bits[g, j] & ~normal)


_decode_four = _decode_four_hardware if HARDWARE_HALF else _decode_four_integer
# Dot products (len(rows),) float64 of the given rows of float16 bit patterns with a float32 query, summed in float32 in
# whatever order vectorises: within estimate_slack(dim) |row| |query| of the exact sum (`probed_lists`).
dot_estimates = _dot_estimates_hardware if HARDWARE_HALF else _dot_estimates_integer


@njit(cache=True, nogil=True)
def rows_hamming(words, rows, query, masks):
    """Hamming distances (len(rows),) int64 of the given rows' codes (words (n, w)) over the masked words."""
    out = np.empty(len(rows), dtype=np.int64)
    for i in range(len(rows)):
        d = 0
        for j in range(len(masks)):
            d += _popcount((words[rows[i], j] ^ query[j]) & masks[j])
        out[i] = d
    return out


@njit(cache=True, nogil=True)
def rows_code_counts(words, rows, query, masks):
    """Per given row, (bits set in both its code and the query's, bits set in its code) over the masked words:
    the counts of eq. (4) (lsh.code_cosine_from_counts), as two (len(rows),) int64."""
    both = np.empty(len(rows), dtype=np.int64)
    weights = np.empty(len(rows), dtype=np.int64)
    for i in range(len(rows)):
        b, w = 0, 0
        for j in range(len(masks)):
            word = words[rows[i], j] & masks[j]
            b += _popcount(word & query[j])
            w += _popcount(word)
        both[i], weights[i] = b, w
    return both, weights


@njit(cache=True, nogil=True)
def sign_words(projections):
    """lsh.to_words(lsh.pack(projections > 0)), bit for bit: (q, ceil(bits/64)) uint64, bit i of a code is bit
    63 - i % 64 of word i // 64 (big-endian), the spare low bits of the last word zero."""
    bits = projections.shape[1]
    out = np.zeros((projections.shape[0], (bits + 63) // 64), dtype=np.uint64)
    one = np.uint64(1)
    for q in range(projections.shape[0]):
        for i in range(bits):
            if projections[q, i] > 0:
                out[q, i >> 6] |= one << np.uint64(63 - (i & 63))
    return out


@njit(cache=True, nogil=True)
def weighted_table(projection, bits):
    """lsh.weighted_table of one query, bit for bit ((ceil(bits/8), 256) float32): entry v of byte b is the
    byte's all-clear cost plus the costs of v's set bits in bit order (MSB first), built from the entry
    without v's last set bit, which lsh's numpy loop adds last: the same float32 additions (~3 us)."""
    nbytes = (bits + 7) // 8
    table = np.empty((nbytes, 256), dtype=np.float32)
    per_set_bit = np.empty(8, dtype=np.float32)
    for b in range(nbytes):
        clear = np.float32(0.0)
        for i in range(8):
            j = 8 * b + i
            margin = abs(projection[j]) if j < bits else np.float32(0.0)
            if j < bits and projection[j] > 0:
                per_set_bit[i] = -margin
                clear += margin
            else:
                per_set_bit[i] = margin
        table[b, 0] = clear
        for v in range(1, 256):
            last = 7 - _lowest_bit(v)  # v's last bit in MSB-first order
            table[b, v] = table[b, v & (v - 1)] + per_set_bit[last]
    return table


@njit(inline="always")
def _lowest_bit(v):
    """The position (0 = least significant) of v's lowest set bit, v > 0."""
    position = 0
    while (v >> position) & 1 == 0:
        position += 1
    return position


@njit(cache=True, nogil=True)
def rows_weighted(words, rows, table):
    """Weighted Hamming distances (len(rows),) float64 of the given rows: one `table` (bytes, 256) lookup
    per code byte (lsh.weighted_table); byte b of a code is byte b % 8 of word b // 8, big-endian.
    The rows' words are gathered first, in a short loop that keeps many cache misses in flight: looking
    up bytes straight from scattered rows waited on one miss at a time (4,608 of 1.1M rows: 0.60 -> 0.33 ms)."""
    nwords = (table.shape[0] + 7) // 8
    gathered = np.empty((len(rows), nwords), dtype=np.uint64)
    for i in range(len(rows)):
        for j in range(nwords):
            gathered[i, j] = words[rows[i], j]
    out = np.empty(len(rows), dtype=np.float64)
    for i in range(len(rows)):
        d = 0.0
        for b in range(table.shape[0]):
            word = gathered[i, b // 8]
            d += table[b, (word >> np.uint64(56 - 8 * (b % 8))) & np.uint64(0xFF)]
        out[i] = d
    return out


@njit(cache=True, nogil=True)
def rows_cosine(vectors, rows, query):
    """Cosine distances (len(rows),) float64 between `query` (dim,) float32 and the given rows of
    `vectors` (n, dim) uint16 (float16 bit patterns); 1.0 for zero vectors.

    The arithmetic is fixed so that search_kernels.numpy_rows_cosine repeats it bit for bit: each row is
    decoded exactly (`_decode_half`), every product (float16 x float32, or a square) is exact in float64;
    element j is added to lane j % 8 (LANES), lanes in order of j; the lanes are then combined as
    ((0+1)+(2+3))+((4+5)+(6+7)) (`_lane_sum`). No fastmath, so no reassociation; the eight lanes still give
    the loop its instruction-level parallelism.
    """
    dim = len(query)
    query64 = np.empty(dim, dtype=np.float64)
    for j in range(dim):
        query64[j] = query[j]
    query_norm = _lane_sum(query64, query64)
    out = np.empty(len(rows), dtype=np.float64)
    values = np.empty(dim, dtype=np.float64)
    bits = np.empty(dim, dtype=np.uint32)
    for i in range(len(rows)):
        _decode_half(vectors[rows[i]], bits, values)
        _store_cosine(out, i, _lane_sum(values, query64), _lane_sum(values, values), query_norm)
    return out


_TWO_112 = 2.0**112  # float32 exponent bias 127 minus float16's 15


@njit(inline="always")
def _decode_half_hardware(row, bits, values):
    """`_decode_half` by the CPU's float16 conversion (`bits` unused): the same float64 values."""
    for j in range(len(row)):
        values[j] = np.float64(_half_to_float(row[j]))  # type: ignore[call-arg]


@njit(inline="always")
def _decode_half_integer(row, bits, values):
    """float16 bit patterns -> their exact float64 values, in two vectorised loops: sign and the exponent +
    mantissa moved into float32 position, read as float32 and scaled by 2^112 (exact for every finite
    float16, subnormals included; unit rows hold no inf or NaN): the values the 65,536-entry table gives
    (search_kernels._HALF_TO_FLOAT), without its cache misses (~10-17% faster at d = 512-1002)."""
    for j in range(len(row)):
        h = np.uint32(row[j])
        bits[j] = ((h & np.uint32(0x8000)) << np.uint32(16)) | ((h & np.uint32(0x7FFF)) << np.uint32(13))
    as_float = bits.view(np.float32)
    for j in range(len(row)):
        values[j] = np.float64(as_float[j]) * _TWO_112


_decode_half = _decode_half_hardware if HARDWARE_HALF else _decode_half_integer


@njit(inline="always")
def _lane_sum(a, b):
    """sum_j a[j] b[j] with element j added to lane j % 8 in order of j, lanes combined as a fixed tree."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    full = len(a) - len(a) % LANES
    for j in range(0, full, LANES):
        s0 += a[j] * b[j]
        s1 += a[j + 1] * b[j + 1]
        s2 += a[j + 2] * b[j + 2]
        s3 += a[j + 3] * b[j + 3]
        s4 += a[j + 4] * b[j + 4]
        s5 += a[j + 5] * b[j + 5]
        s6 += a[j + 6] * b[j + 6]
        s7 += a[j + 7] * b[j + 7]
    tail = len(a) - full
    if tail > 0:
        s0 += a[full] * b[full]
    if tail > 1:
        s1 += a[full + 1] * b[full + 1]
    if tail > 2:
        s2 += a[full + 2] * b[full + 2]
    if tail > 3:
        s3 += a[full + 3] * b[full + 3]
    if tail > 4:
        s4 += a[full + 4] * b[full + 4]
    if tail > 5:
        s5 += a[full + 5] * b[full + 5]
    if tail > 6:
        s6 += a[full + 6] * b[full + 6]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit(inline="always")
def _store_cosine(out, i, dot, norm, query_norm):
    if i < len(out):
        out[i] = 1.0 - dot / np.sqrt(norm * query_norm) if norm > 0 and query_norm > 0 else 1.0


@njit(inline="always")
def _residual_estimate(words, norms, offsets, position, qwords, p, masks, dot, distance, cosines):
    """residual.py's estimate of one row at list `position` against probed list p's query code: the same
    float32 operations in the same order as residual._estimates."""
    h = 0
    for j in range(masks.shape[0]):
        h += _popcount((words[position, j] ^ qwords[p, j]) & masks[j])
    base = dot + offsets[position]
    scale = distance * norms[position]
    return base + scale * cosines[h]


RESIDUAL_BINS = 4096  # histogram bins of `_above_cut`


@njit(inline="always")
def _above_cut(estimates, count):
    """Indices (ascending) of a superset of the `count` largest estimates: a histogram of the estimates finds
    the bin holding the count-th largest, and the rows at or above it are kept (the bins are monotone in the
    estimate, so no row of a lower bin can belong to the answer)."""
    n = estimates.shape[0]
    if count >= n:
        return np.arange(n)
    lo, hi = np.float64(estimates.min()), np.float64(estimates.max())
    if not hi > lo:
        return np.arange(n)
    scale = (RESIDUAL_BINS - 1) / (hi - lo)
    keys = np.empty(n, np.int16)
    hist = np.zeros(RESIDUAL_BINS, np.int64)
    for i in range(n):
        b = int((np.float64(estimates[i]) - lo) * scale)
        keys[i] = b
        hist[b] += 1
    cut, above = RESIDUAL_BINS - 1, hist[RESIDUAL_BINS - 1]
    while above < count:
        cut -= 1
        above += hist[cut]
    chosen = np.empty(above, np.int64)
    kept = 0
    for i in range(n):
        if keys[i] >= cut:
            chosen[kept] = i
            kept += 1
    return chosen


@njit(inline="always")
def _descending_key(pattern, position):
    """uint64 sort key of a float32 estimate (`pattern`: its bits as uint32): the larger estimate first, then the
    lower list position (residual._keys)."""
    bits = np.uint64(pattern)
    if bits & np.uint64(0x80000000):
        order = bits ^ np.uint64(0xFFFFFFFF)
    else:
        order = bits | np.uint64(0x80000000)
    return ((np.uint64(0xFFFFFFFF) - order) << np.uint64(32)) | np.uint64(position)


@njit(cache=True, nogil=True)
def residual_best_rows(
    columns,
    words,
    norms,
    offsets,
    rows,
    list_offsets,
    lists,
    qwords,
    dots,
    distances,
    cosines1,
    cosines2,
    masks1,
    masks2,
    candidates,
    rerank,
):
    """residual.best_rows (stages 1-2 over the probed `lists`, ascending and distinct): row numbers, best estimate
    first (ties: lowest list position). Stage 1 reads the word-major `columns` (the first words of every code, list order) when its
    prefix fits in them, in one loop per prefix length of one to four words."""
    probes = lists.shape[0]
    starts = np.zeros(probes + 1, np.int64)
    for p in range(probes):
        starts[p + 1] = starts[p] + list_offsets[lists[p] + 1] - list_offsets[lists[p]]
    estimates = np.empty(starts[-1], np.float32)
    nwords = masks1.shape[0]
    for p in range(probes):
        lst = lists[p]
        _residual_list(
            columns,
            words,
            norms,
            offsets,
            list_offsets[lst],
            list_offsets[lst + 1],
            qwords[p],
            masks1,
            nwords,
            dots[lst],
            distances[lst],
            cosines1,
            estimates[starts[p] : starts[p + 1]],
        )
    chosen = _above_cut(estimates, candidates)
    patterns = estimates.view(np.uint32)
    keys = np.empty(chosen.shape[0], np.uint64)
    p = 0
    for i in range(chosen.shape[0]):  # `chosen` ascends, so the probed list only moves forward
        while chosen[i] >= starts[p + 1]:
            p += 1
        keys[i] = _descending_key(patterns[chosen[i]], list_offsets[lists[p]] + chosen[i] - starts[p])
    keys = _smallest_keys(keys, candidates)
    kept = keys.shape[0]
    second = np.empty(kept, np.float32)
    positions = np.empty(kept, np.int64)
    low = np.uint64(0xFFFFFFFF)
    for i in range(kept):
        position = np.int64(keys[i] & low)
        positions[i] = position
        lst = np.searchsorted(list_offsets, position, side="right") - 1  # the list, then its probe slot
        slot = np.searchsorted(lists, lst)
        h = 0
        for j in range(masks2.shape[0]):
            h += _popcount((words[position, j] ^ qwords[slot, j]) & masks2[j])
        base = dots[lst] + offsets[position]
        scale = distances[lst] * norms[position]
        second[i] = base + scale * cosines2[h]
    second_patterns = second.view(np.uint32)
    keys2 = np.empty(kept, np.uint64)
    for i in range(kept):
        keys2[i] = _descending_key(second_patterns[i], positions[i])
    keys2 = np.sort(_smallest_keys(keys2, rerank))
    out = np.empty(keys2.shape[0], np.int64)
    for i in range(keys2.shape[0]):
        out[i] = rows[np.int64(keys2[i] & low)]
    return out


@njit(inline="always")
def _smallest_keys(keys, count):
    """The `count` smallest of distinct uint64 `keys`, in no particular order (all of them when fewer)."""
    if count >= keys.shape[0]:
        return keys
    return np.partition(keys, count - 1)[:count]


@njit(inline="always")
def _residual_list(columns, words, norms, offsets, first, stop, qw, masks, nwords, dot, distance, cosines, out):
    """Stage-1 estimates of list positions first:stop into `out` (residual._estimates' operations)."""
    if nwords <= columns.shape[0] and nwords == 4:
        c0, c1, c2, c3 = columns[0], columns[1], columns[2], columns[3]
        q0, q1, q2, q3 = qw[0] & masks[0], qw[1] & masks[1], qw[2] & masks[2], qw[3] & masks[3]
        m3 = masks[3]
        for position in range(first, stop):
            h = _popcount(c0[position] ^ q0) + _popcount(c1[position] ^ q1) + _popcount(c2[position] ^ q2)
            h += _popcount((c3[position] ^ q3) & m3)
            out[position - first] = (dot + offsets[position]) + (distance * norms[position]) * cosines[h]
    elif nwords <= columns.shape[0]:
        for position in range(first, stop):
            h = 0
            for j in range(nwords):
                h += _popcount((columns[j, position] ^ qw[j]) & masks[j])
            out[position - first] = (dot + offsets[position]) + (distance * norms[position]) * cosines[h]
    else:
        for position in range(first, stop):
            h = 0
            for j in range(nwords):
                h += _popcount((words[position, j] ^ qw[j]) & masks[j])
            out[position - first] = (dot + offsets[position]) + (distance * norms[position]) * cosines[h]
