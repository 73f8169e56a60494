"""An optional faiss HNSW graph stored beside an LSH index: the ANN peer `search --backend hnsw` and the Index page use.

Owns `build_graph(index, m, ef_construction, progress)` (write it into an index folder, with its checksum in
the manifest), `require(index)` (the manifest entry, or an EproductError naming the fix), `graph_of(index)`
(loaded and checked once per opened index), `search_graph(index, queries, k, ef_search)`, `verify_graph`
(checksum problems; needs no faiss) and `compare(index, queries)` (LSH at the index's defaults vs the
graph: recall@k against exact cosine and ms/query).

The graph is a faiss `IndexHNSWFlat` (inner product) over the index's stored float16 unit vectors as float32,
L2-normalised: its order is cosine similarity. It lives in the index folder in faiss's own binary format
(never pickle), written through a temporary sibling and renamed (atomic.py), and is recorded in the manifest:
  "ann": {"type": "hnsw", "file": "ann-hnsw.faiss", "sha256", "rows", "dim",
          "params": {"m", "ef_construction", "metric": "inner_product"}, "build_s"}
A search takes the graph's top k within a beam of max(ef_search, k) and scores those rows again by exact cosine
distance on the stored vectors (search_kernels.rows_cosine, the LSH re-rank's own distance), best first, ties
by row. faiss is an optional extra (`pip install "eproduct[ann]"`), imported inside the functions; rebuilding
the LSH index (a new folder) leaves no graph behind, so `eproduct index ann` must be run again.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import search_kernels
from .errors import EproductError
from .progress import CountProgress
from .settings import DEFAULT_EF_CONSTRUCTION, DEFAULT_GRAPH_M, GRAPH_TYPES

GRAPH_FILE = "ann-hnsw.faiss"
BLOCK = 16384  # rows added to the graph per call (progress steps; bounded float32 copies)
INSTALL = 'pip install "eproduct[ann]"'
_LOCK = threading.Lock()  # one load per opened index when the app's sessions search at once


def faiss_available() -> bool:
    """Whether faiss imports here (the app offers the graph only then)."""
    try:
        _faiss()
    except EproductError:
        return False
    return True


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as err:
        raise EproductError(
            f"The HNSW graph needs faiss, which is not installed: {INSTALL} (faiss-cpu), or search with backend lsh."
        ) from err
    return faiss


def _unit(block: np.ndarray) -> np.ndarray:
    """float32 rows scaled to unit length (an all-zero row stays zero)."""
    x = np.array(block, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def build_graph(
    index,
    *,
    graph_type: str = "hnsw",
    m: int = DEFAULT_GRAPH_M,
    ef_construction: int = DEFAULT_EF_CONSTRUCTION,
    progress: CountProgress | None = None,
) -> dict:
    """Build the HNSW graph of an opened index and store it in its folder (module doc), replacing any there;
    returns its manifest entry. progress(rows added, rows)."""
    from .atomic import atomic_path
    from .index_format import read_manifest, replace_manifest, sha256_file

    if graph_type not in GRAPH_TYPES:
        raise EproductError(f"Graph type {graph_type!r}: must be one of {GRAPH_TYPES}.")
    if isinstance(m, bool) or not isinstance(m, int) or m < 2:
        raise EproductError(f"m = {m!r}: an HNSW graph needs at least 2 links per node (32 is usual).")
    if isinstance(ef_construction, bool) or not isinstance(ef_construction, int) or ef_construction < 1:
        raise EproductError(f"ef_construction = {ef_construction!r}: must be a positive beam width (40 is usual).")
    if not index.has_vectors:
        raise EproductError(
            f"Index {index.path} was built without vectors, and the HNSW graph is built from them. "
            "Rebuild the index without --no-vectors."
        )
    faiss = _faiss()
    began = time.perf_counter()
    graph = faiss.IndexHNSWFlat(index.dim, m, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = ef_construction
    vectors = index.vectors
    for start in range(0, index.size, BLOCK):
        graph.add(_unit(vectors[start : start + BLOCK]))
        if progress is not None:
            progress(min(start + BLOCK, index.size), index.size)
    folder = Path(index.path)
    manifest = read_manifest(folder)
    if manifest.pop("ann", None) is not None:  # no entry points at the file while it is replaced
        replace_manifest(folder, manifest)
    path = folder / GRAPH_FILE
    try:
        with atomic_path(path) as tmp:
            faiss.write_index(graph, str(tmp))
    except RuntimeError as err:
        raise EproductError(f"Cannot write the HNSW graph {path}: {err}") from err
    entry = {
        "type": "hnsw",
        "file": GRAPH_FILE,
        "sha256": sha256_file(path),
        "rows": index.size,
        "dim": index.dim,
        "params": {"m": m, "ef_construction": ef_construction, "metric": "inner_product"},
        "build_s": round(time.perf_counter() - began, 3),
    }
    manifest["ann"] = entry
    replace_manifest(folder, manifest)
    index.manifest = manifest
    index._ann_graph = graph
    return entry


def require(index) -> dict:
    """The index's graph entry (manifest "ann"), faiss importable; else an EproductError saying what to run."""
    entry = index.manifest.get("ann")
    if not isinstance(entry, dict) or entry.get("type") not in GRAPH_TYPES:
        raise EproductError(
            f"Index {index.path} has no HNSW graph; build one with `eproduct index ann {index.path}` "
            "or search with backend lsh."
        )
    _faiss()
    return entry


def graph_of(index) -> Any:
    """The index's faiss graph, read and checked (sha256, rows, dim) once per opened index."""
    cached = getattr(index, "_ann_graph", None)
    if cached is not None:
        return cached
    with _LOCK:
        if getattr(index, "_ann_graph", None) is None:
            index._ann_graph = _load(index)
    return index._ann_graph


def _load(index) -> Any:
    entry = require(index)
    folder = Path(index.path)
    rebuild = f"Rebuild it: `eproduct index ann {folder}`."
    problems = verify_graph(folder, index.manifest)
    if problems:
        raise EproductError(problems[0])
    try:
        graph = _faiss().read_index(str(folder / entry["file"]))
    except RuntimeError as err:
        raise EproductError(f"Index {folder}: its HNSW graph cannot be read ({err}). {rebuild}") from err
    if graph.ntotal != index.size or graph.d != index.dim:
        raise EproductError(
            f"Index {folder}: its HNSW graph holds {graph.ntotal} rows of dim {graph.d}; the index has "
            f"{index.size} of dim {index.dim}. {rebuild}"
        )
    return graph


def search_graph(index, queries: np.ndarray, k: int, ef_search: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query (rows, exact cosine distances), best first (ties by row): the graph's top k within a beam of
    max(ef_search, k), scored on the stored vectors. faiss's own threads share a batch."""
    graph = graph_of(index)
    faiss = _faiss()
    queries = np.asarray(queries, dtype=np.float32)
    params = faiss.SearchParametersHNSW(efSearch=max(int(ef_search), int(k)))
    _, labels = graph.search(_unit(queries), int(k), params=params)
    out = []
    for query, found in zip(queries, labels, strict=True):
        rows = found[found >= 0].astype(np.int64)
        cosine = search_kernels.rows_cosine(index.vectors, rows, query, index.kernel)
        order = np.lexsort((rows, cosine))
        out.append((rows[order], cosine[order]))
    return out


def verify_graph(folder: str | Path, manifest: dict) -> list[str]:
    """Problems of the stored graph file (missing, checksum differs); [] when sound or absent. No faiss needed."""
    from .index_format import sha256_file

    entry = manifest.get("ann")
    if not entry:
        return []
    folder = Path(folder)
    path = folder / str(entry.get("file", GRAPH_FILE))
    rebuild = f"Rebuild it: `eproduct index ann {folder}`."
    if not path.is_file():
        return [f"{folder}: the HNSW graph file {path.name} is missing. {rebuild}"]
    if sha256_file(path) != entry.get("sha256"):
        return [
            f"{folder}: the HNSW graph file {path.name} fails its sha256 checksum (corrupted or changed). {rebuild}"
        ]
    return []


def compare(index, queries: np.ndarray, *, k: int = 10, ef_search: int | None = None):
    """One row per backend (LSH at the index's defaults, the HNSW graph): recall@k against exact cosine
    (tuning.exact_neighbours), median and p95 ms per query (one query at a time), mean candidates."""
    import pandas as pd

    from .evaluate import run_search
    from .search import resolve
    from .settings import SearchSettings
    from .tuning import exact_neighbours, per_query_recall

    truth = exact_neighbours(index, queries, k)
    rows = []
    for label, settings in (
        ("LSH (index defaults)", SearchSettings(k=k)),
        ("HNSW graph", SearchSettings(k=k, backend="hnsw", ef_search=ef_search)),
    ):
        found, ms = run_search(index, queries, settings)
        resolved = resolve(index, settings)
        setting = f"ef_search {resolved.ef_search}" if resolved.backend == "hnsw" else _lsh_setting(resolved)
        rows.append(
            {
                "backend": label,
                "setting": setting,
                f"recall@{k}": float(per_query_recall([r.rows for r in found], truth).mean()),
                "ms/query (median)": float(np.median(ms)),
                "ms/query (p95)": float(np.percentile(ms, 95)),
                "mean candidates": float(np.mean([r.candidates for r in found])),
            }
        )
    return pd.DataFrame(rows)


def _lsh_setting(s) -> str:
    return f"probe {s.probe_bits} b, candidates {s.candidates}, shortlist {s.shortlist}, re-rank {s.rerank}"
