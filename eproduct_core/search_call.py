"""Temporary bridge: run a `settings.SearchSettings` search before `search.search(index, queries, settings)` lands.

engineer search-core replaces `search.search(index, queries, **options)` with `search(index, queries,
settings)`. Until that merge this calls whichever exists; delete this module at the merge and call
`eproduct_core.search.search` directly.
"""

from __future__ import annotations

import inspect

import numpy as np

from . import search as search_module
from .settings import SearchSettings


def search(index, queries: np.ndarray, settings: SearchSettings, *, threads: int = 1) -> list:
    """`search.search(index, queries, settings)` on either API."""
    if "settings" in inspect.signature(search_module.search).parameters:
        return search_module.search(index, queries, settings, threads=threads)  # type: ignore[call-arg, arg-type]
    options = {
        f: getattr(settings, f)
        for f in ("bits", "mode", "k", "cutoff", "rerank", "shortlist", "probe_bits", "candidates")
    }
    return search_module.search(index, queries, threads=threads, **options)
