"""Computed results kept on disk in a workspace, so a page that shows them opens at once, in any process.

Sweeps, distance tables and evaluations are keyed by what they were computed from: the index's checksum
(the sha256 of its manifest, which lists every shard's sha256), the queries (a sha256 of their ids and
vectors), the settings or grid, and `CACHE_VERSION`. An entry is `WS/cache/<name>-<key>.csv` (a table)
or `.json` (a document) with a `.key.json` beside it holding the key in full; a missing, unreadable or
mismatched entry is computed again. Files are written to a temporary name and renamed, never half
written. JSON and CSV only (no pickle). No torch, no streamlit.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .atomic import write_text_atomic

log = logging.getLogger(__name__)
CACHE_VERSION = 1  # bump when what a cached table holds changes
FOLDER = "cache"  # under the workspace
ID_COLUMNS = ("query_id", "index_id", "id", "top_ids", "pair", "mode")  # read back as text, never as numbers


def index_checksum(index_dir: str | Path) -> str:
    """sha256 of the index's manifest.json: it lists each shard's checksum, so any rebuild changes it."""
    return hashlib.sha256((Path(index_dir) / "manifest.json").read_bytes()).hexdigest()


def queries_digest(ids: Sequence[str], vectors: np.ndarray | None = None) -> str:
    """A sha256 naming a query set: its ids in order and (when given) its vectors' bytes."""
    digest = hashlib.sha256("\n".join(map(str, ids)).encode("utf-8"))
    if vectors is not None:
        digest.update(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
    return digest.hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and value != value:
        return None  # NaN: JSON has none
    return value


def entry_key(key: Mapping[str, Any]) -> tuple[dict, str]:
    """(the full key as JSON-able data, its short hex name)."""
    full = _jsonable({"cache_version": CACHE_VERSION, **key})
    text = json.dumps(full, sort_keys=True)
    return full, hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text, fsync=False)  # a cache: a lost entry is recomputed


def _paths(folder: Path, name: str, short: str, suffix: str) -> tuple[Path, Path]:
    base = Path(folder) / FOLDER / f"{name}-{short}"
    return base.with_suffix(suffix), base.with_name(base.name + ".key.json")


def _fresh(key_path: Path, full: dict) -> bool:
    try:
        return json.loads(key_path.read_text(encoding="utf-8")) == full
    except (OSError, ValueError):
        return False


def cached_frame(
    folder: str | Path, name: str, key: Mapping[str, Any], compute: Callable[[], pd.DataFrame]
) -> pd.DataFrame:
    """The table `compute()` gives for `key`, read from `folder/cache/` when it is there, else computed and kept."""
    full, short = entry_key({"name": name, **key})
    path, key_path = _paths(Path(folder), name, short, ".csv")
    if path.is_file() and _fresh(key_path, full):
        try:
            return pd.read_csv(path, dtype={c: str for c in ID_COLUMNS}, keep_default_na=True)
        except (OSError, ValueError) as err:
            log.warning("cache entry %s unreadable (%s); computing it again", path, err)
    frame = compute()
    _atomic_write(path, frame.to_csv(index=False))
    _atomic_write(key_path, json.dumps(full, sort_keys=True) + "\n")
    return frame


def cached_json(folder: str | Path, name: str, key: Mapping[str, Any], compute: Callable[[], Any]) -> Any:
    """Like `cached_frame` for a JSON document (dicts, lists, numbers, strings)."""
    full, short = entry_key({"name": name, **key})
    path, key_path = _paths(Path(folder), name, short, ".json")
    if path.is_file() and _fresh(key_path, full):
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            log.warning("cache entry %s unreadable (%s); computing it again", path, err)
    value = _jsonable(compute())
    _atomic_write(path, json.dumps(value) + "\n")
    _atomic_write(key_path, json.dumps(full, sort_keys=True) + "\n")
    return value


def cached_evaluation(folder: str | Path, name: str, key: Mapping[str, Any], compute: Callable[[], Any]):
    """An `evaluate.EvaluationResult` kept as its per-query table plus a JSON of its summary and ranked ids."""
    from .evaluate import EvaluationResult

    made: dict[str, Any] = {}

    def table() -> pd.DataFrame:
        made["result"] = compute()
        return made["result"].per_query

    per_query = cached_frame(folder, f"{name}-per-query", key, table)

    def document() -> dict:
        result = made.get("result") or compute()
        made["result"] = result
        return {"summary": result.summary, "results": [list(map(str, r)) for r in result.results]}

    stored = cached_json(folder, f"{name}-summary", key, document)
    if "result" in made:
        return made["result"]
    if "query_id" in per_query:
        per_query["query_id"] = per_query["query_id"].astype(str)
    return EvaluationResult(per_query=per_query, summary=dict(stored["summary"]), results=stored["results"])
