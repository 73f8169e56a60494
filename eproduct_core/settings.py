"""The one settings object of a search (`SearchSettings`) and of an index build (`IndexSpec`), and their limits.

A `SearchSettings` is made once (by the CLI's shared flag set, the app's controls, a preset, an index's
tuned defaults) and travels whole to `eproduct_core.search.search(index, queries, settings)`; no layer
re-spells it as keyword arguments or re-validates it. Fields left `None` mean "the index's own default"
(its tuned settings when it has them, else the constants below), resolved against the opened index
by `search.py`. Only what needs no index is checked here; what needs one (bits <= stored bits,
re-rank needs stored vectors) is checked once, in `search.py`.

Every constant and choice list of indexing and search lives here, nowhere else. No torch, no numpy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import EproductError

MIN_BITS, MAX_BITS = 1, 4096  # hash lengths an index can store (and any prefix of them can be searched)
DEFAULT_BITS = 256  # stored code length of a new index
DEFAULT_SHARD_SIZE = 8000  # rows per shard file; the seed wrote one table per 8,000 images
SEED_CUTOFF = 0.1  # the seed pipeline's code-cosine cutoff
MODES = ("topk", "cutoff")  # "topk": the k nearest; "cutoff": every row under the cutoff (the seed's)
EMBED_KINDS = ("seed", "seed-3d", "penultimate", "metric", "raw", "external")

# Stage sizes of a top-k search when neither the settings nor the index's tuned defaults give them.
DEFAULT_RERANK = 256  # rows re-ranked by exact cosine
DEFAULT_SHORTLIST = 1536  # rows ranked by weighted Hamming (at least 6x the re-rank depth)
DEFAULT_PROBE_BITS = 128  # code prefix scanned over every row to pick candidates
DEFAULT_CANDIDATES = 8192  # rows kept by the prefix scan (at least 4x the shortlist)

# The optional faiss HNSW graph stored beside an index (ann_graph.py): the ANN peer a search can use instead.
GRAPH_TYPES = ("hnsw",)  # graphs `eproduct index ann` builds (faiss IndexHNSWFlat, inner product)
BACKENDS = ("lsh", "hnsw")  # candidate stage of a top-k search: our LSH stages, or the index's faiss HNSW graph
DEFAULT_GRAPH_M = 32  # HNSW links per node (faiss's M), as the retrieval benchmark's peer
DEFAULT_EF_CONSTRUCTION = 40  # HNSW build beam (faiss's default efConstruction)
DEFAULT_EF_SEARCH = 64  # HNSW search beam when the settings give none (at least k)


def _fail(cls: str, name: str, value: Any, why: str) -> None:
    raise EproductError(f"{cls}.{name} = {value!r}: {why}")


def _from_dict(cls: Any, data: dict[str, Any], what: str) -> Any:
    """`cls(**data)` for a settings dataclass; an unknown key is an EproductError naming the known ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise EproductError(f"Unknown {what} {unknown}. Known: {sorted(known)}.")
    return cls(**data)


def check_bits(bits: int, what: str = "bits") -> int:
    """`bits` as an int if MIN_BITS <= bits <= MAX_BITS, else an EproductError naming `what`."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise EproductError(f"{what} = {bits!r}: must be a whole number between {MIN_BITS} and {MAX_BITS}.")
    return bits


@dataclass(frozen=True)
class SearchSettings:
    """How one search runs. `None` fields take the index's defaults (see the module doc)."""

    mode: str = "topk"  # "topk" keeps the k nearest; "cutoff" keeps every row under `cutoff` (the seed's)
    bits: int | None = None  # hash length searched: a prefix of the stored codes (None: all stored bits)
    k: int | None = 10  # results per query; MAR@10 scores the first 10 (None: all admitted, cutoff mode only)
    cutoff: float | None = None  # distance cutoff (None: the seed's 0.1 in cutoff mode, none in topk)
    rerank: int | None = None  # rows re-ranked by exact cosine (0: none, as the seed; None: the index's default)
    shortlist: int | None = None  # rows ranked by weighted Hamming before the re-rank
    probe_bits: int | None = None  # code prefix scanned over every row (probe_bits >= bits: exact Hamming ranking)
    candidates: int | None = None  # rows kept by the prefix scan
    # stage 1 from the index's prefix-bucket tables (lsh_tables.py): buckets probed per table (cost grows
    # slower than the index); 0: the flat prefix scan; None: the index's tuned default, else 0
    table_probes: int | None = None
    # stage 1 from the index's coarse partitions (partitions.py, `eproduct index partitions`): lists probed per
    # query, the rows of those lists prefix-scanned (cost grows about as sqrt of the index); 0: the flat prefix
    # scan; None: the index's tuned default, else 0
    partition_probes: int | None = None
    # Post-processing (eproduct_core/postprocess.py), measured in benchmarks/quality.py:
    whiten: bool = False  # PCA-whiten queries and index rows with a whitening fitted on the index embeddings
    query_expansion: int = 0  # alpha-QE over this many top results before the final ranking (0 = off)
    dba: int = 0  # database-side augmentation: index rows averaged over their top-dba neighbours (0 = off)
    kreciprocal: bool = False  # k-reciprocal re-ranking of the top 100 exact-cosine results
    # The candidate stage: "lsh" (the stages above) or "hnsw", the index's faiss graph (`eproduct index ann`,
    # ann_graph.py) with exact cosine on the stored vectors; top-k only. The LSH stage sizes are then unused.
    backend: str = "lsh"
    ef_search: int | None = None  # hnsw: the search beam (None: DEFAULT_EF_SEARCH); at least k is used

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.mode not in MODES:
            _fail(name, "mode", self.mode, f"must be one of {MODES}")
        if self.bits is not None:
            check_bits(self.bits, f"{name}.bits")
        if self.k is None and self.mode == "topk":
            _fail(name, "k", self.k, "mode 'topk' needs k (how many results to return)")
        if self.k is not None and self.k < 1:
            _fail(name, "k", self.k, "must be at least 1")
        if self.cutoff is not None and not 0.0 <= self.cutoff <= 2.0:
            _fail(name, "cutoff", self.cutoff, "a cosine distance lies between 0 and 2")
        if self.rerank is not None and self.rerank < 0:
            _fail(name, "rerank", self.rerank, "must be 0 (off) or a positive number of rows")
        if self.backend not in BACKENDS:
            _fail(name, "backend", self.backend, f"must be one of {BACKENDS}")
        if self.backend != "lsh" and self.mode != "topk":
            _fail(name, "backend", self.backend, "searches top-k only; the cutoff mode scans the LSH codes")
        for key in ("table_probes", "partition_probes"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                _fail(name, key, value, "must be 0 (the flat prefix scan) or a positive count")
        for key in ("query_expansion", "dba"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                _fail(name, key, value, "must be 0 (off) or a positive number of neighbours")
        for key in ("shortlist", "probe_bits", "candidates", "ef_search"):
            value = getattr(self, key)
            if value is not None and value < 1:
                _fail(name, key, value, "must be at least 1")

    def replace(self, **changes: Any) -> SearchSettings:
        """A copy with `changes` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSettings:
        """From `to_dict`'s output; an unknown key is an EproductError naming the known ones."""
        return _from_dict(cls, data, "search settings")


SEED_SETTINGS = SearchSettings(mode="cutoff", bits=20, k=10, cutoff=SEED_CUTOFF, rerank=0)


@dataclass(frozen=True)
class IndexSpec:
    """How an index is built: what it stores, not how it is searched."""

    kind: str = "external"  # embedding kind indexed (EMBED_KINDS)
    bits: int = DEFAULT_BITS  # code length stored; any shorter prefix can be searched without a rebuild
    shard_size: int = DEFAULT_SHARD_SIZE  # rows per shard file
    seed: int = 0  # seeds the random hyperplanes
    centre: bool = False  # hash unit rows minus their mean (index.py); the seed's index does not

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.kind not in EMBED_KINDS:
            _fail(name, "kind", self.kind, f"must be one of {EMBED_KINDS}")
        check_bits(self.bits, f"{name}.bits")
        if self.shard_size < 1:
            _fail(name, "shard_size", self.shard_size, "must be at least 1")

    def replace(self, **changes: Any) -> IndexSpec:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexSpec:
        return _from_dict(cls, data, "index build settings")


SEED_INDEX = IndexSpec(kind="seed", bits=20, shard_size=DEFAULT_SHARD_SIZE)
