"""Random-hyperplane LSH maths (numpy only): hyperplanes, codes, bit packing, Hamming, weighted Hamming
and code cosine.

A code is the sign pattern of a vector against `bits` seeded hyperplanes: bit j = [w_j . a > 0].
Codes are packed big-endian (`np.packbits(bitorder="big")`), so the first k bits of a stored code are
the code of the first k hyperplanes: any k-bit prefix is a valid k-bit LSH and a shorter hash length
needs no rebuild. `hyperplanes(seed, k, dim)` equals `hyperplanes(seed, bits, dim)[:k]` exactly.

For scanning, packed codes are also viewed as native uint64 "words" (`to_words`): word 0 holds bits
0..63 with bit 0 as its most significant bit, so a k-bit prefix (k <= 64) is `word0 >> (64 - k)`.

Code cosine distance, the report's eq. (4): `1 - h1.h2 / (|h1| |h2|)` over the 0/1 bit vectors, with
h1.h2 = popcount(h1 & h2) and |h| = sqrt(popcount(h)). It is computed in float64 exactly as
`1.0 - c / np.sqrt(a * b)` (c = popcount(h1 & h2), a, b = popcount of each code). A code with no bit
set has no direction; its distance to anything (itself included) is defined as 1.0, the largest value
eq. (4) takes for non-empty codes, so no cutoff below 1 ever admits it.

Weighted Hamming distance (asymmetric: the query stays real-valued, the stored side is its code):
the sum, over the bits where a code differs from the query's code, of the query's margin
|w_j . q| on that hyperplane. A bit the query nearly straddles costs little; one it sits far from
costs much. It orders codes by cosine far better than the Hamming distance at no storage cost
(Gordo et al., "Asymmetric distances for binary embeddings", 2014), so the search uses it to pick
the few rows worth an exact re-rank.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np

_BYTE_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.float32)  # (256, 8), MSB first
SMALL_CHECK = 1 << 16  # up to this many values, first_nonfinite_row checks each (no sum, no temporary to speak of)
_SALT = 0x4C5348  # "LSH": keeps hyperplane streams apart from np.random.default_rng(seed) elsewhere


def hyperplanes(seed: int, bits: int, dim: int) -> np.ndarray:
    """Seeded hyperplanes W (bits, dim) float32; each block of `dim` rows is orthonormalised.

    Rows are drawn in blocks of `dim` Gaussian rows (whole blocks even when fewer bits are asked for)
    and each block is orthonormalised by QR, so bits within a block are as uncorrelated as possible
    and a shorter W is exactly a prefix of a longer one with the same seed.
    """
    if bits < 1 or dim < 1:
        raise ValueError(f"bits ({bits}) and dim ({dim}) must be positive")
    rng = np.random.default_rng([_SALT, int(seed)])  # salted: never the stream of a data generator's seed
    blocks = []
    for _ in range(-(-bits // dim)):
        gauss = rng.standard_normal((dim, dim))
        q, r = np.linalg.qr(gauss.T)  # columns of q: orthonormal, Gram-Schmidt order
        q *= np.sign(np.diag(r))[None, :]  # unique QR: same first columns whatever follows
        blocks.append(q.T)
    return np.ascontiguousarray(np.concatenate(blocks)[:bits], dtype=np.float32)


def project(vectors: np.ndarray, planes: np.ndarray) -> np.ndarray:
    """Projections (n, bits) float32 of `vectors` on the hyperplanes: w_j . a; the code is their sign."""
    return np.asarray(vectors, dtype=np.float32) @ planes.T


def centred(vectors: np.ndarray, centre: np.ndarray | None) -> np.ndarray:
    """What an index with a stored centre hashes: each row scaled to unit length, minus the centre (the mean
    of the index's unit rows); `vectors` as they are when `centre` is None. Zero rows stay zero before the
    shift, so they hash as -centre."""
    if centre is None:
        return vectors
    rows = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        unit = np.where(norms > 0, rows / norms, 0.0)
    return (unit - centre).astype(np.float32)


def unit_mean(vectors: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """The mean (dim,) float32 of the rows scaled to unit length (zero rows count as zero), in float64
    chunk by chunk (small chunks: their temporaries stay in cache): the centre a centred index subtracts
    before hashing. Each chunk's sum is one product: the rows weighted by their inverse norms."""
    total = np.zeros(vectors.shape[1], dtype=np.float64)
    for start in range(0, len(vectors), chunk):
        rows = np.asarray(vectors[start : start + chunk], dtype=np.float64)
        norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
        with np.errstate(divide="ignore"):
            weights = np.where(norms > 0, 1.0 / norms, 0.0)
        total += weights @ rows
    return (total / max(1, len(vectors))).astype(np.float32)


def first_nonfinite_row(vectors: np.ndarray) -> int | None:
    """The first row holding NaN or an infinity, or None. Up to SMALL_CHECK values are checked one by one;
    more are summed first (fast, no full-size temporary), and a sum that overflows only costs the exact check."""
    if np.size(vectors) <= SMALL_CHECK:  # a query or a few
        if np.isfinite(vectors).all():
            return None
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(np.sum(vectors, dtype=np.float32)):
                return None
    bad = np.flatnonzero(~np.isfinite(np.asarray(vectors, dtype=np.float64)).all(axis=-1))
    return int(bad[0]) if len(bad) else None


def sign_bits(vectors: np.ndarray, planes: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Unpacked bits (n, bits) bool: [w_j . a > 0] for each vector a (computed in float32)."""
    vectors = np.asarray(vectors)
    out = np.empty((len(vectors), len(planes)), dtype=bool)
    for start in range(0, len(vectors), chunk):
        np.greater(project(vectors[start : start + chunk], planes), 0, out=out[start : start + chunk])
    return out


def pack(bits: np.ndarray) -> np.ndarray:
    """Pack (n, bits) 0/1 into (n, ceil(bits/8)) uint8, big-endian: bit 0 is the top bit of byte 0."""
    return np.packbits(np.asarray(bits, dtype=bool), axis=-1, bitorder="big")


def unpack(codes: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of `pack`: (n, bytes) uint8 -> (n, bits) uint8 0/1 (the first `bits` bits)."""
    return np.unpackbits(np.asarray(codes, dtype=np.uint8), axis=-1, count=bits, bitorder="big")


def encode(vectors: np.ndarray, planes: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Packed codes (n, ceil(bits/8)) uint8 of `vectors` (n, dim) against `planes` (bits, dim)."""
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[1] != planes.shape[1]:
        raise ValueError(f"vectors of shape {vectors.shape} do not match hyperplanes of dim {planes.shape[1]}")
    out = np.empty((len(vectors), -(-len(planes) // 8)), dtype=np.uint8)
    for start in range(0, len(vectors), chunk):
        out[start : start + chunk] = pack(sign_bits(vectors[start : start + chunk], planes))
    return out


def prefix(codes: np.ndarray, bits: int) -> np.ndarray:
    """The k-bit prefix of packed codes, packed the same way (bits past k in the last byte zeroed)."""
    codes = np.asarray(codes, dtype=np.uint8)
    nbytes = -(-bits // 8)
    if nbytes > codes.shape[-1]:
        raise ValueError(f"asked for {bits} bits of codes that hold {codes.shape[-1] * 8}")
    out = codes[..., :nbytes].copy()
    spare = nbytes * 8 - bits
    if spare:
        out[..., -1] &= np.uint8((0xFF << spare) & 0xFF)
    return out


def to_words(codes: np.ndarray) -> np.ndarray:
    """Packed codes (n, bytes) -> (n, ceil(bytes/8)) native uint64, big-endian bit order kept."""
    codes = np.asarray(codes, dtype=np.uint8)
    nbytes = codes.shape[-1]
    nwords = -(-nbytes // 8)
    if nbytes != nwords * 8:
        padded = np.zeros(codes.shape[:-1] + (nwords * 8,), dtype=np.uint8)
        padded[..., :nbytes] = codes
        codes = padded
    return np.ascontiguousarray(codes).view(">u8").astype(np.uint64)


@functools.lru_cache(maxsize=64)
def word_masks(bits: int) -> np.ndarray:
    """uint64 masks (ceil(bits/64),) selecting the first `bits` bits of the word view; one read-only array
    per length, made once (every query asks for them)."""
    nwords = -(-bits // 64)
    masks = np.full(nwords, np.iinfo(np.uint64).max, dtype=np.uint64)
    spare = nwords * 64 - bits
    if spare:
        masks[-1] = np.uint64((1 << 64) - (1 << spare))
    masks.flags.writeable = False
    return masks


def popcount(words: np.ndarray) -> np.ndarray:
    """Set bits per row of a (n, w) integer array (np.bitwise_count, summed over the last axis)."""
    counts = np.bitwise_count(words)
    if counts.ndim != 2:
        return counts.sum(axis=-1, dtype=np.int64) if counts.ndim > 1 else counts.astype(np.int64)
    total = counts[:, 0].astype(np.int64)
    for j in range(1, counts.shape[1]):  # column adds: ~3x faster than a sum over a short last axis
        total += counts[:, j]
    return total


def hamming(query_words: np.ndarray, words: np.ndarray, bits: int) -> np.ndarray:
    """Hamming distance (n,) int64 over the first `bits` bits between one query and n codes (words)."""
    masks = word_masks(bits)
    nwords = len(masks)
    return popcount((words[:, :nwords] ^ query_words[:nwords]) & masks)


def weighted_table(projections: np.ndarray, bits: int) -> np.ndarray:
    """The weighted Hamming cost of each value of each code byte: (ceil(bits/8), 256) float32 for one
    query's projections (>= bits,), or (q, ceil(bits/8), 256) for a batch (q, >= bits).

    `projections` are `project` values; bits past `bits` cost nothing.
    """
    projections = np.asarray(projections, dtype=np.float32)
    nbytes = -(-bits // 8)
    margins = np.zeros(projections.shape[:-1] + (nbytes * 8,), dtype=np.float32)
    margins[..., :bits] = np.abs(projections[..., :bits])
    query_bits = np.zeros_like(margins)
    query_bits[..., :bits] = projections[..., :bits] > 0
    shape = margins.shape[:-1] + (nbytes, 8)
    per_set_bit = (margins * (1 - 2 * query_bits)).reshape(shape)  # what a set bit adds to its byte's cost
    clear_bits = (margins * query_bits).reshape(shape)
    table = np.zeros(shape[:-1] + (256,), dtype=np.float32)
    for i in range(8):  # in bit order, one float32 addition at a time: numba_kernels.weighted_table repeats it
        table += clear_bits[..., i, None]  # the cost of the byte with no bit set
    for i in range(8):
        table += per_set_bit[..., i, None] * _BYTE_BITS[:, i]
    return table


def weighted_hamming(projections: np.ndarray, words: np.ndarray, bits: int) -> np.ndarray:
    """Weighted Hamming distance (n,) float64 over the first `bits` bits (see module doc).

    `projections` (>= bits,) are one query's `project` values; `words` (n, w) are codes (`to_words`).
    One table lookup per code byte (`weighted_table`), in blocks of 65,536 rows.
    """
    table = weighted_table(projections, bits)
    nbytes = len(table)
    nwords = -(-nbytes // 8)
    offsets = np.arange(0, 256 * nbytes, 256, dtype=np.intp)
    out = np.empty(len(words), dtype=np.float64)
    for start in range(0, len(words), 65536):  # blocks: the lookup indices take 8 bytes per code byte
        block = np.ascontiguousarray(words[start : start + 65536, :nwords]).astype(">u8")
        code_bytes = block.view(np.uint8).reshape(len(block), -1)[:, :nbytes]
        costs = np.take(table.ravel(), code_bytes + offsets)
        total = np.zeros(len(block), dtype=np.float64)
        for b in range(nbytes):  # byte by byte, in float64: the compiled kernel's order, so the same bits
            total += costs[:, b]
        out[start : start + len(block)] = total
    return out


def code_cosine_from_counts(both: np.ndarray, a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """Eq. (4) from popcounts: 1 - both / sqrt(a * b) in float64; 1.0 where a code is all zeros (there
    `both` is 0 too, so dividing by a tiny positive number instead of 0 gives it)."""
    norm2 = np.asarray(a, dtype=np.float64) * np.asarray(b, dtype=np.float64)
    return 1.0 - np.asarray(both, dtype=np.float64) / np.sqrt(np.maximum(norm2, np.finfo(np.float64).tiny))


def decimal_cutoff(cutoff: float) -> Fraction:
    """The cutoff as the decimal it was written as (0.1 -> 1/10, not the binary float near it)."""
    return Fraction(repr(float(cutoff)))


def below_cutoff(both, a, b, cutoff: float) -> np.ndarray:
    """Whether eq. (4) from popcounts, 1 - both / sqrt(a b), is strictly below `cutoff`, decided exactly.

    With t = 1 - cutoff as a fraction p/q (`decimal_cutoff`): for t > 0 the test is both^2 q^2 > p^2 a b
    in integers (both >= 0), so no float rounding decides a pair at a boundary (in float64, 1 - 9/10 <
    0.1 holds; exactly it does not). A code with no bit set has distance 1.0 (see the module doc).
    """
    both, a, b = np.broadcast_arrays(np.asarray(both, np.int64), np.asarray(a, np.int64), np.asarray(b, np.int64))
    norm = a * b
    c = decimal_cutoff(cutoff)
    t = 1 - c
    if t < 0:
        admitted = np.ones(both.shape, dtype=bool)
    elif t == 0:
        admitted = both > 0
    else:
        p2, q2 = t.numerator**2, t.denominator**2
        big = int(both.max(initial=0)) ** 2 * q2 >= 1 << 62 or int(norm.max(initial=0)) * p2 >= 1 << 62
        if big:  # Python integers: exact for any decimal
            admitted = np.asarray(both.astype(object) ** 2 * q2 > norm.astype(object) * p2, dtype=bool)
        else:
            admitted = both * both * q2 > norm * p2
    return np.where(norm > 0, admitted, c > 1)


@functools.lru_cache(maxsize=4096)
def least_overlaps(cutoff: float, qweight: int, max_weight: int) -> np.ndarray:
    """(max_weight + 1,) int64: for a code of weight a, the least overlap with a query code of weight
    `qweight` that puts eq. (4) strictly below `cutoff` (exactly, as `below_cutoff`); max_weight + 1
    where none does. A scan then admits a row when its overlap >= this[its weight]. Cached, read-only."""
    c = decimal_cutoff(cutoff)
    t = 1 - c
    none = max_weight + 1
    out = np.empty(max_weight + 1, dtype=np.int64)
    for a in range(max_weight + 1):
        if a == 0 or qweight == 0:
            out[a] = 0 if c > 1 else none
        elif t < 0:
            out[a] = 0
        elif t == 0:
            out[a] = 1
        else:  # least integer x with x^2 q^2 > p^2 a b
            out[a] = math.isqrt(t.numerator**2 * a * qweight // t.denominator**2) + 1
    out.flags.writeable = False  # cached: shared by every caller
    return out


def hamming_radius(cutoff: float, bits: int) -> int:
    """The code-cosine cutoff's equivalent Hamming radius: the largest Hamming distance d that the cutoff
    admits between two `bits`-bit codes with half their bits set each (-1: none).

    Then eq. (4) is exactly d / bits, so the test d / bits < cutoff is decided exactly (integers, as
    `below_cutoff`): at 20 bits the seed's 0.1 admits d = 1 (2 / 20 = 0.1 is not below 0.1).
    """
    c = decimal_cutoff(cutoff)
    admitted = [d for d in range(bits + 1) if Fraction(d, bits) < c]
    return admitted[-1] if admitted else -1


def bucket_sizes(word0: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Bucket occupancy of `bits`-bit (1..64) code prefixes, from each code's first word (`to_words`[:, 0]):
    (items, buckets), ascending in items: `buckets[i]` distinct prefixes are shared by exactly `items[i]` codes."""
    if not 1 <= bits <= 64:
        raise ValueError(f"bucket prefixes are 1 to 64 bits; got {bits}")
    keys = np.asarray(word0, dtype=np.uint64) >> np.uint64(64 - bits)
    _, counts = np.unique(keys, return_counts=True)
    items, buckets = np.unique(counts, return_counts=True)
    return items.astype(np.int64), buckets.astype(np.int64)


def code_cosine(query_words: np.ndarray, words: np.ndarray, bits: int) -> np.ndarray:
    """Code cosine distance (n,) float64, eq. (4), over the first `bits` bits (see module doc)."""
    masks = word_masks(bits)
    nwords = len(masks)
    q = query_words[:nwords] & masks
    block = words[:, :nwords] & masks
    return code_cosine_from_counts(popcount(block & q), popcount(block), int(popcount(q[None, :])[0]))


def cosine_distance(query: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Exact cosine distance (n,) float64 between one query (d,) and rows (n, d); 1.0 for zero vectors."""
    q = np.asarray(query, dtype=np.float32)
    rows = np.asarray(vectors, dtype=np.float32)
    dots = rows @ q
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows)) * float(np.sqrt(q @ q))
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = 1.0 - dots.astype(np.float64) / norms
    return np.where(norms > 0, dist, 1.0)
