"""The challenge's submission format: one line per query, `query_id,id1 id2 ... idk`, no header.

Used by `eproduct search` (query ids are row numbers), `eproduct submit` and
`eproduct evaluate --submission`. Ids may not contain commas, spaces or line breaks.

Reading is forgiving where the intent is unambiguous and says so, because a malformed file would
otherwise just score low without a word:
- a UTF-8 byte-order mark is stripped;
- a header line (`query_id,...`, `query,results`, ...) is skipped;
- ids separated by commas instead of spaces (`q1,a,b,c`) are read as separate ids.
Each of these is a note on the `Submission` (the challenge's grader would not forgive them), and
`check_submission` adds warnings about the catalog: query ids it does not know (row numbers, as
`eproduct search` writes, get a hint to use `eproduct submit`) and result ids not in its index split.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import atomic_path
from .errors import EproductError

log = logging.getLogger(__name__)

BOM = "\ufeff"
# first fields that mark a header line rather than a query (lower-cased, spaces/dashes as underscores)
HEADER_FIELDS = {"query_id", "queryid", "query", "qid", "query_image", "image_id", "id"}
EXAMPLES = 3  # ids quoted in a warning


@dataclass(frozen=True)
class Submission:
    """A read submission: query_id -> ranked ids, and notes on what reading had to forgive."""

    rows: dict[str, list[str]]
    notes: list[str] = field(default_factory=list)


def write_submission(path: str | Path, results: Iterable[tuple[str, Sequence[str]]]) -> Path:
    """Write `(query_id, ranked index ids)` pairs atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as handle:
        for query_id, ids in results:
            for value in (query_id, *ids):
                if any(ch in str(value) for ch in ", \n\r"):
                    raise EproductError(
                        f"Id {value!r} contains a comma, space or line break; the submission format cannot hold it."
                    )
            handle.write(f"{query_id},{' '.join(str(i) for i in ids)}\n")
    return path


def read_submission(path: str | Path) -> dict[str, list[str]]:
    """Read a submission into query_id -> ranked ids (order and duplicates kept as written).

    Notes on what was forgiven (BOM, header, comma-separated ids) are logged as warnings; use
    `read_submission_file` to get them.
    """
    submission = read_submission_file(path)
    for note in submission.notes:
        log.warning("%s", note)
    return submission.rows


def _is_header(query_id: str) -> bool:
    return query_id.strip().strip('"').lower().replace(" ", "_").replace("-", "_") in HEADER_FIELDS


def read_submission_file(path: str | Path) -> Submission:
    """Read a submission file, or raise `EproductError` naming the line that cannot be read."""
    path = Path(path)
    if not path.is_file():
        where = " (it is a folder)" if path.is_dir() else ""
        raise EproductError(f"Submission {path} does not exist{where}. Give the file `eproduct submit` wrote.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise EproductError(f"Submission {path} is not UTF-8 text. Re-save it as UTF-8.") from err
    notes: list[str] = []
    if text.startswith(BOM):
        text = text[len(BOM) :]
        notes.append(f"{path} starts with a UTF-8 byte-order mark; it was ignored (save the file without one).")
    rows: dict[str, list[str]] = {}
    comma_lines: list[int] = []
    first = True
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if "," not in line:
            raise EproductError(
                f"Submission {path} line {number} has no comma; each line must be `query_id,id1 id2 ... id10`."
            )
        query_id, ids = line.split(",", 1)
        query_id = query_id.strip()
        if first and _is_header(query_id):
            notes.append(
                f"{path} line {number} looks like a header ({line.strip()[:60]!r}); it was skipped. "
                "The submission format has no header line."
            )
            first = False
            continue
        first = False
        if query_id in rows:
            raise EproductError(
                f"Submission {path} line {number} repeats query {query_id!r}; give each query one line."
            )
        if "," in ids:
            comma_lines.append(number)
            ids = ids.replace(",", " ")
        rows[query_id] = ids.split()
    if comma_lines:
        lines = ", ".join(str(n) for n in comma_lines[:EXAMPLES])
        notes.append(
            f"{path}: {len(comma_lines)} line(s) (e.g. line {lines}) separate result ids with commas; they were read "
            "as separate ids, but the format separates them with spaces (`query_id,id1 id2 ...`): fix the file "
            "before submitting it anywhere else."
        )
    return Submission(rows=rows, notes=notes)


def _examples(values: Sequence[str]) -> str:
    shown = ", ".join(repr(v) for v in values[:EXAMPLES])
    return shown + (", ..." if len(values) > EXAMPLES else "")


def check_submission(
    submission: Submission | dict[str, list[str]],
    query_ids: Sequence[str],
    index_ids: Iterable[str] | None = None,
) -> list[str]:
    """Warnings about a submission against a catalog: its notes, unknown query ids, unknown result ids.

    A query id the catalog's query split does not hold scores nothing; when the unknown ones are
    all row numbers (0..n-1, what `eproduct search` writes) the warning says to use `eproduct submit`.
    """
    notes = list(submission.notes) if isinstance(submission, Submission) else []
    rows = submission.rows if isinstance(submission, Submission) else submission
    known = set(map(str, query_ids))
    unknown = [q for q in rows if q not in known]
    if unknown:
        message = (
            f"{len(unknown)} of {len(rows)} submitted query ids are not queries of the catalog "
            f"(e.g. {_examples(unknown)}); they score nothing, and the catalog's queries they should have been "
            "count as misses."
        )
        if all(q.isdigit() for q in unknown) and max(int(q) for q in unknown) < max(len(known), 1):
            message += (
                " They look like row numbers: `eproduct search` writes row numbers as query ids; "
                "use `eproduct submit` (it writes the catalog's query ids), or replace each row number with "
                "the query id of that row of query.csv."
            )
        notes.append(message)
    if index_ids is not None:
        catalog_ids = set(map(str, index_ids))
        results = [i for ids in rows.values() for i in ids]
        foreign = sorted({i for i in results if i not in catalog_ids})
        if foreign:
            notes.append(
                f"{len(foreign)} distinct result ids are not in the catalog's index split (e.g. {_examples(foreign)}); "
                "they can never be true matches. Was the submission made for another catalog?"
            )
    return notes
