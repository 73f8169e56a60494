"""The challenge's submission format: one line per query, `query_id,id1 id2 ... idk`, no header.

Used by `eproduct search` (query ids are row numbers), `eproduct submit` and
`eproduct evaluate --submission`. Ids may not contain commas, spaces or line breaks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import EproductError


def write_submission(path: str | Path, results: Iterable[tuple[str, Sequence[str]]]) -> Path:
    """Write `(query_id, ranked index ids)` pairs atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
        for query_id, ids in results:
            for value in (query_id, *ids):
                if any(ch in str(value) for ch in ", \n\r"):
                    raise EproductError(
                        f"Id {value!r} contains a comma, space or line break; the submission format cannot hold it."
                    )
            handle.write(f"{query_id},{' '.join(str(i) for i in ids)}\n")
    os.replace(tmp, path)
    return path


def read_submission(path: str | Path) -> dict[str, list[str]]:
    """Read a submission into query_id -> ranked ids (order and duplicates kept as written)."""
    path = Path(path)
    if not path.is_file():
        raise EproductError(f"Submission {path} does not exist.")
    result: dict[str, list[str]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise EproductError(f"Submission {path} is not UTF-8 text. Re-save it as UTF-8.") from err
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if "," not in line:
            raise EproductError(
                f"Submission {path} line {number} has no comma; each line must be `query_id,id1 id2 ... id10`."
            )
        query_id, ids = line.split(",", 1)
        query_id = query_id.strip()
        if query_id in result:
            raise EproductError(
                f"Submission {path} line {number} repeats query {query_id!r}; give each query one line."
            )
        result[query_id] = ids.split()
    return result
