"""Versioned JSON documents: index manifests, workspace.json, embeddings meta.json.

Each names its `format` and `version`; one reader checks both and says what is wrong and how to fix it.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import EproductError


def read_versioned_json(path: Path, *, fmt: str, version: int, what: str, missing: str, fix: str) -> dict:
    """Parse `path` as a JSON object of format `fmt` and `version`, or raise `EproductError`.

    `what` names the document ("an eproduct index manifest"), `missing` is the whole message when the
    file does not exist, and `fix` ends every other message with what to do.
    """
    if not path.is_file():
        raise EproductError(missing)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise EproductError(f"{path} is not valid JSON ({err}). {fix}") from err
    if not isinstance(document, dict) or document.get("format") != fmt:
        raise EproductError(f"{path} is not {what} (format {fmt!r} expected). {fix}")
    if document.get("version") != version:
        raise EproductError(
            f"{path} has version {document.get('version')!r}; this eproduct reads version {version}. {fix}"
        )
    return document
