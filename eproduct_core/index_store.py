"""`Index`: an opened index folder, its shards memory-mapped, joined into contiguous arrays on first use.

Shards are the on-disk unit (one file set per `shard_size` rows). For search, the codes of all shards
are joined once into one contiguous (rows, words) uint64 array plus a contiguous (words, rows)
copy of the first words that scans read, so one query is one pass over memory instead of one small
scan per shard; the float16 vectors are joined likewise on the first exact re-rank. Opening stays cheap
(manifest, file headers, id line counts); ids are read on first use. Thread-safe: lazy loads happen
under a lock. `Index` holds storage only (arrays, ids, hyperplanes, the kernel choice); searching it is
`eproduct_core.search.search(index, queries, settings)`.
"""

from __future__ import annotations

import mmap
import threading
from pathlib import Path

import numpy as np

from . import lsh, search_kernels
from .errors import EproductError
from .settings import DEFAULT_PROBE_BITS


def _huge_empty(shape: tuple[int, int], dtype) -> np.ndarray:
    """An uninitialised array in anonymous memory advised to use transparent huge pages (where the OS offers
    them): random row gathers (candidate codes, re-ranked vectors) then miss the TLB far less often."""
    nbytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
    buffer = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        buffer.madvise(mmap.MADV_HUGEPAGE)
    return np.frombuffer(buffer, dtype=dtype, count=int(np.prod(shape))).reshape(shape)


class Index:
    """An opened index (see index.py: `open_index`). Rows are numbered across shards in manifest order."""

    def __init__(self, folder: Path, manifest: dict):
        self.path = Path(folder)
        self.manifest = manifest
        counts = [int(shard["rows"]) for shard in manifest["shards"]]
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)  # first row of each shard
        self._lock = threading.Lock()
        self._planes: np.ndarray | None = None
        self._centre: np.ndarray | None = None
        self._words: np.ndarray | None = None
        self._columns: np.ndarray | None = None  # (words, rows): the first words of every code, word-major
        self._sample: np.ndarray | None = None  # search_kernels.radius_sample of the columns
        self._vectors: np.ndarray | None = None
        self._ids: list[str] | None = None
        self._row_numbers: dict[str, int] | None = None
        self._weights: dict[int, np.ndarray] = {}
        self.kernel = "auto"  # search kernels (search_kernels.KERNELS): "auto" (numba when installed), "numba", "numpy"

    # -- what it is ------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def bits(self) -> int:
        """The stored (maximum) code length; search any length up to it."""
        return int(self.manifest["bits"])

    @property
    def size(self) -> int:
        return int(self.manifest["rows"])

    @property
    def has_vectors(self) -> bool:
        return bool(self.manifest.get("vectors", True))

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"Index({str(self.path)!r}, kind={self.kind!r}, dim={self.dim}, bits={self.bits}, rows={self.size})"

    def check_compatible(self, kind: str | None, dim: int) -> None:
        """Refuse queries of another embedding kind or dimension, naming both sides."""
        if int(dim) != self.dim:
            raise EproductError(
                f"Queries have dimension {dim} but index {self.path} holds {self.kind!r} embeddings of dimension "
                f"{self.dim}. Embed the queries with the same model and kind as the index, or rebuild the index."
            )
        if kind is not None and str(kind) != self.kind:
            raise EproductError(
                f"Queries are {kind!r} embeddings but index {self.path} holds {self.kind!r} embeddings. "
                f"Embed the queries with --kind {self.kind} or build an index from {kind!r} embeddings."
            )

    # -- lazy arrays -----------------------------------------------------------------------------
    def _file(self, shard: dict, role: str) -> Path:
        return self.path / shard["files"][role]["file"]

    def _mmap(self, shard: dict, role: str) -> np.ndarray:
        return np.load(self._file(shard, role), mmap_mode="r", allow_pickle=False)

    @property
    def planes(self) -> np.ndarray:
        if self._planes is None:
            self._planes = np.load(self.path / self.manifest["hyperplanes"]["file"], allow_pickle=False)
        return self._planes

    @property
    def centre(self) -> np.ndarray | None:
        """The mean unit row subtracted before hashing (index.py, `centre=True`), or None."""
        if self._centre is None and "centre" in self.manifest:
            self._centre = np.load(self.path / self.manifest["centre"]["file"], allow_pickle=False)
        return self._centre

    @property
    def words(self) -> np.ndarray:
        """All codes as one contiguous (rows, ceil(bits/64)) native uint64 array (see lsh.to_words)."""
        if self._words is None:
            with self._lock:
                if self._words is None:
                    blocks = [self._mmap(shard, "codes") for shard in self.manifest["shards"]]
                    words = _huge_empty((self.size, -(-blocks[0].shape[1] // 8)), np.uint64)
                    for start, block in zip(self.offsets, blocks, strict=False):
                        words[start : start + len(block)] = lsh.to_words(block)
                    self._words = words
        return self._words

    def columns(self, bits: int) -> np.ndarray:
        """The code words holding the first `bits` bits, word-major: (words, rows) uint64, each row of it
        contiguous (what scans read). Built on first use; widened when a longer prefix is asked for."""
        nwords = -(-bits // 64)
        columns = self._columns
        if columns is None or len(columns) < nwords:
            words = self.words
            with self._lock:
                if self._columns is None or len(self._columns) < nwords:
                    self._columns = np.ascontiguousarray(words[:, :nwords].T)
                    self._sample = search_kernels.radius_sample(self._columns)
                columns = self._columns
        return columns[:nwords]

    def scan_arrays(self, bits: int) -> tuple[np.ndarray, np.ndarray]:
        """(columns, their radius sample) for the first `bits` bits: what the candidate scan reads."""
        columns = self.columns(bits)
        with self._lock:
            assert self._sample is not None  # built with the columns
            return columns, self._sample[: len(columns)]

    @property
    def word0(self) -> np.ndarray:
        """The first 64 code bits of every row, contiguous (rows,)."""
        return self.columns(64)[0]

    def prefix_weights(self, bits: int) -> np.ndarray:
        """popcount of each row's first `bits` (<= 64) bits, uint8, cached per length (cutoff mode)."""
        if bits not in self._weights:
            mask = lsh.word_masks(bits)[0]
            self._weights[bits] = np.bitwise_count(self.word0 & mask)
        return self._weights[bits]

    @property
    def vectors(self) -> np.ndarray:
        """All float16 vectors, one contiguous in-memory (rows, dim) array (read on first re-rank)."""
        if not self.has_vectors:
            raise EproductError(f"Index {self.path} was built without vectors; use rerank=0 or rebuild it.")
        if self._vectors is None:
            with self._lock:
                if self._vectors is None:
                    blocks = [self._mmap(shard, "vectors") for shard in self.manifest["shards"]]
                    self._vectors = np.concatenate(blocks, out=_huge_empty((self.size, self.dim), np.float16))
        return self._vectors

    def warm(self, vectors: bool = True) -> Index:
        """Load codes, scan columns, ids (and vectors) and compile the search kernels now rather than on the
        first search; returns self."""
        _ = self.columns(min(DEFAULT_PROBE_BITS, self.bits)), self.all_ids(), search_kernels.prepare()
        if vectors and self.has_vectors:
            _ = self.vectors
        return self

    def memory_bytes(self) -> int:
        """Bytes held in memory by the loaded arrays (codes, their scan columns, vectors, prefix weights)."""
        arrays = [self._words, self._vectors, self._columns, self._sample, *self._weights.values()]
        return int(sum(a.nbytes for a in arrays if a is not None))

    # -- ids and rows ----------------------------------------------------------------------------
    def all_ids(self) -> list[str]:
        if self._ids is None:
            with self._lock:
                if self._ids is None:
                    ids: list[str] = []
                    for shard in self.manifest["shards"]:
                        ids.extend(self._file(shard, "ids").read_text(encoding="utf-8").split("\n")[:-1])
                    if len(ids) != self.size:
                        raise EproductError(
                            f"Index {self.path} ids files hold {len(ids)} rows, not {self.size}. "
                            "Rebuild it with `eproduct index build`."
                        )
                    self._ids = ids
        return self._ids

    def row_numbers(self) -> dict[str, int]:
        """id -> row over the whole index, built on first use (~0.4 s and ~100 B a row at 1.1M) and kept."""
        if self._row_numbers is None:
            all_ids = self.all_ids()
            with self._lock:
                if self._row_numbers is None:
                    self._row_numbers = {item: row for row, item in enumerate(all_ids)}
        return self._row_numbers

    def ids(self, rows) -> list[str]:
        """Ids of the given rows."""
        all_ids = self.all_ids()
        return [all_ids[r] for r in np.asarray(rows, dtype=np.int64).ravel().tolist()]

    def shard_of(self, rows) -> np.ndarray:
        """Shard number of each row."""
        return np.searchsorted(self.offsets, np.asarray(rows, dtype=np.int64), side="right") - 1

    def encode(self, queries: np.ndarray) -> np.ndarray:
        """Query words (q, ceil(bits/64)) uint64 at the stored code length."""
        return lsh.to_words(lsh.encode(lsh.centred(queries, self.centre), self.planes))

    def project(self, queries: np.ndarray) -> np.ndarray:
        """Query projections (q, bits) float32 on the hyperplanes; their signs are the codes `encode` gives."""
        return lsh.project(lsh.centred(queries, self.centre), self.planes)
