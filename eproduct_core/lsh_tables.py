"""Prefix-bucket tables over the stored codes: a candidate stage whose cost grows slower than the index.

Owns `build_tables` (write them into an index folder, with checksums in its manifest), `open_tables`,
`verify_tables`, and `Tables.candidates` (query-directed multi-probe). numpy only.

The stored random-hyperplane codes are cut into `tables` substrings of `key_bits` bits each (substring t
is bits t*key_bits ... (t+1)*key_bits - 1 of the code, so the tables together cover the code's first
tables * key_bits bits). Table t sorts the rows by their substring (CSR: `order`, one int32 row per row,
and `offsets`, one int32 per bucket + 1). A query probes, in each table, its own bucket and the buckets
reached by flipping its least confident bits: the query's projections on those hyperplanes are nearest
zero, so a near neighbour differs from it there first (multi-probe LSH, Lv et al. 2007). The flip sets are
ranked by the sum of the flipped bits' |projection| among the FLIP_BITS least confident bits of the
substring, with the expected margin of each confidence rank (a fixed template, so a query sorts only its
bits, not the flip sets); the `probes` best are probed per table. The union of the probed buckets is the candidate set
that stages 2-4 of search.py rank (full Hamming, weighted Hamming, exact cosine).

Cost: about tables * probes * rows-per-bucket candidate rows; key_bits grows with log2(rows) so a bucket
holds ~ROWS_PER_BUCKET rows whatever the index size. Probing every bucket (probes >= 2**key_bits with
FLIP_BITS >= key_bits) gives every row: the flat scan's result (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import lsh
from .errors import EproductError

ROWS_PER_BUCKET = 16  # key_bits = round(log2(rows / ROWS_PER_BUCKET)), within KEY_BITS_RANGE
KEY_BITS_RANGE = (4, 20)
MAX_TABLES = 16  # 16 x 4 bytes = 64 B per row of `order`
FLIP_BITS = 10  # flip sets are drawn from this many least confident bits of a substring (1,024 sets)
ORDER_FILE, OFFSETS_FILE = "tables-order.npy", "tables-offsets.npy"


def default_shape(rows: int, bits: int) -> tuple[int, int]:
    """(tables, key_bits) for an index of `rows` rows and `bits` stored bits."""
    lo, hi = KEY_BITS_RANGE
    key_bits = int(min(hi, max(lo, round(math.log2(max(rows, 2) / ROWS_PER_BUCKET)))))
    key_bits = min(key_bits, bits)
    return max(1, min(MAX_TABLES, bits // key_bits)), key_bits


def _keys(words: np.ndarray, tables: int, key_bits: int, block: int = 65536) -> np.ndarray:
    """(tables, rows) int64 substring keys of the packed uint64 codes `words` (bit i of a key = code bit
    t * key_bits + i)."""
    keys = np.empty((tables, len(words)), dtype=np.int64)
    weights = (1 << np.arange(key_bits, dtype=np.int64))[None, :]
    for start in range(0, len(words), block):
        part = np.ascontiguousarray(words[start : start + block].astype(">u8")).view(np.uint8)
        bits = lsh.unpack(part.reshape(-1, words.shape[1] * 8), tables * key_bits).astype(np.int64)
        for t in range(tables):
            keys[t, start : start + len(bits)] = bits[:, t * key_bits : (t + 1) * key_bits] @ weights[0]
    return keys


def _query_keys(projections: np.ndarray, tables: int, key_bits: int) -> np.ndarray:
    bits = (projections[: tables * key_bits] > 0).astype(np.int64).reshape(tables, key_bits)
    return bits @ (1 << np.arange(key_bits, dtype=np.int64))


@dataclass
class Tables:
    """Loaded prefix-bucket tables of one index (see the module doc)."""

    order: np.ndarray  # (tables, rows) int32: rows sorted by their substring key, per table
    offsets: np.ndarray  # (tables, 2**key_bits + 1) int32: bucket b of table t is order[t, off[b]:off[b+1]]
    key_bits: int

    @property
    def tables(self) -> int:
        return int(self.order.shape[0])

    @property
    def rows(self) -> int:
        return int(self.order.shape[1])

    def memory_bytes(self) -> int:
        return int(self.order.nbytes + self.offsets.nbytes)

    def candidates(self, projections: np.ndarray, probes: int) -> np.ndarray:
        """Ascending rows of the buckets probed for one query's projections (bits,) (module doc)."""
        t_count, kb = self.tables, self.key_bits
        flip = min(FLIP_BITS, kb)
        probes = max(1, min(probes, 1 << flip))
        margins = np.abs(projections[: t_count * kb]).reshape(t_count, kb)
        weak = np.argsort(margins, axis=1, kind="stable")[:, :flip]  # (T, flip) least confident bit positions
        masks = _templates(flip)[:probes]  # (probes, flip) flip sets over the confidence ranks, best first
        flips = masks @ (1 << weak.astype(np.int64)).T  # (probes, T) xor masks
        keys = _query_keys(projections, t_count, kb)[None, :] ^ flips
        table = np.arange(t_count)[None, :]
        starts, stops = self.offsets[table, keys], self.offsets[table, keys + 1]
        lengths = (stops - starts).ravel().astype(np.int64)
        total = int(lengths.sum())
        if total == 0:
            return np.zeros(0, dtype=np.int64)
        flat_starts = (starts + table * self.rows).ravel().astype(np.int64)
        ends = np.cumsum(lengths)
        positions = np.arange(total, dtype=np.int64) + np.repeat(flat_starts - (ends - lengths), lengths)
        rows = np.sort(self.order.ravel()[positions])
        keep = np.empty(len(rows), dtype=bool)
        keep[0] = True
        np.not_equal(rows[1:], rows[:-1], out=keep[1:])
        return rows[keep].astype(np.int64)


_TEMPLATES: dict[int, np.ndarray] = {}


def _templates(flip: int) -> np.ndarray:
    """All 2**flip flip sets (int64 0/1 rows over the `flip` least confident bits, rank 0 the least), ordered by
    the expected |projection| they cost: the r-th smallest of the bits' margins grows about linearly in r, so
    a set costs sum(r + 1) over its ranks (ties: fewer flips, then lower ranks). The query's own bucket first."""
    if flip not in _TEMPLATES:
        sets = (np.arange(1 << flip)[:, None] >> np.arange(flip)[None, :]) & 1
        cost = sets @ (np.arange(flip) + 1)
        _TEMPLATES[flip] = sets[np.lexsort((np.arange(1 << flip), sets.sum(axis=1), cost))].astype(np.int64)
    return _TEMPLATES[flip]


def make_tables(words: np.ndarray, tables: int, key_bits: int) -> Tables:
    """Tables over packed uint64 codes `words` (rows, words per code)."""
    if tables * key_bits > words.shape[1] * 64:
        raise EproductError(f"{tables} tables of {key_bits} bits need more bits than the {words.shape[1] * 64} stored.")
    keys = _keys(words, tables, key_bits)
    order = np.empty(keys.shape, dtype=np.int32)
    offsets = np.empty((tables, (1 << key_bits) + 1), dtype=np.int32)
    for t in range(tables):
        order[t] = np.argsort(keys[t], kind="stable")
        offsets[t, 0] = 0
        np.cumsum(np.bincount(keys[t], minlength=1 << key_bits), out=offsets[t, 1:])
    return Tables(order, offsets, key_bits)


def build_tables(index, tables: int | None = None, key_bits: int | None = None) -> Tables:
    """Build tables for an opened index and store them in its folder (checksums in its manifest, key
    "tables"), replacing any there; returns them."""
    from .index_format import store_extra

    _, default_b = default_shape(index.size, index.bits)
    key_bits = key_bits or default_b
    tables = tables or max(1, min(MAX_TABLES, index.bits // key_bits))
    made = make_tables(index.words, tables, key_bits)
    arrays = {"order": (ORDER_FILE, made.order), "offsets": (OFFSETS_FILE, made.offsets)}
    store_extra(index, "tables", arrays, {"tables": tables, "key_bits": key_bits})
    return made


def open_tables(index) -> Tables | None:
    """The index's stored tables (None when it has none); refuses files that disagree with the manifest."""
    entry = index.manifest.get("tables")
    if not entry:
        return None
    folder = Path(index.path)
    try:
        order = np.load(folder / entry["files"]["order"]["file"], allow_pickle=False)
        offsets = np.load(folder / entry["files"]["offsets"]["file"], allow_pickle=False)
    except (OSError, ValueError, KeyError) as err:
        raise EproductError(
            f"Index {folder}: its candidate tables cannot be read ({err}). Rebuild them: `eproduct index tables`."
        ) from err
    key_bits = int(entry["key_bits"])
    if order.shape != (int(entry["tables"]), index.size) or offsets.shape != (order.shape[0], (1 << key_bits) + 1):
        raise EproductError(f"Index {folder}: its candidate tables do not match its {index.size} rows; rebuild them.")
    return Tables(order, offsets, key_bits)


def tables_of(index) -> Tables:
    """The index's tables, loaded once per opened index; an EproductError when it has none."""
    from .index_format import load_extra

    return load_extra(
        index,
        "_lsh_tables",
        open_tables,
        f"Index {index.path} has no candidate tables; build them with `eproduct index tables {index.path}` "
        "or search with table_probes 0 (the flat prefix scan).",
    )


def verify_tables(index) -> list[str]:
    """Checksum problems of the stored tables ([] when sound or absent)."""
    from .index_format import verify_extra

    return verify_extra(index, "tables", "candidate tables")
