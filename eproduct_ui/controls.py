"""Sidebar controls shared by pages: which index, and the search settings (cutoff, hash length, k, re-rank, mode).

`search_settings` draws them and returns one `SearchSettings`, passed whole to the core. Defaults come from
what workspace.json records for the index (`Workspace.search_settings`: the seed index defaults to the
seed's cutoff mode at 20 bits and 0.1; the better index to top-k with the index's own exact re-rank), with
`None` fields shown as the search resolves them for this index (`search.resolve`).
"""

from __future__ import annotations

import streamlit as st

from eproduct_core import tuning
from eproduct_core.errors import EproductError
from eproduct_core.search import resolve
from eproduct_core.settings import DEFAULT_SHORTLIST, MAX_BITS, MODES, SEED_CUTOFF, SearchSettings

MEMORY = "remembered_controls"  # survives page switches (Streamlit drops the state of widgets not drawn)


def remembered(key: str, default):
    """Seed widget `key` from the session's memory (or `default`) before the widget is drawn."""
    memory = st.session_state.setdefault(MEMORY, {})
    # Re-assigned every run: a widget value carried over from another page (or drawn there inside the Search
    # page's fragment) is kept as the value, not reset to the widget's first option.
    st.session_state[key] = st.session_state[key] if key in st.session_state else memory.get(key, default)
    return key


def remember(key: str, value) -> None:
    st.session_state.setdefault(MEMORY, {})[key] = value


BIT_CHOICES = (4, 8, 12, 16, 20, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024, 2048, MAX_BITS)


def index_choice(workspace) -> str:
    """The index to use (a sidebar selectbox when the workspace has several)."""
    names = workspace.indexes
    if not names:
        raise EproductError(
            f"Workspace {workspace.path} has no index yet. Build one on the Index page or with `eproduct index build`."
        )
    default = workspace.default_index
    labels = {
        n: f"{n} ({workspace.index_info(n).get('label', workspace.index_info(n).get('kind', 'index'))})" for n in names
    }
    if len(names) == 1:
        return names[0]
    key = f"index::{workspace.path}"
    current = st.session_state.setdefault(MEMORY, {}).get(key, default)
    current = current if current in names else default
    # No widget key: its identity follows `index`, so the choice survives page switches unchanged.
    chosen = st.sidebar.selectbox(
        "Index (embedding kind)", names, index=names.index(current), format_func=labels.__getitem__
    )
    chosen = chosen if chosen is not None else current  # never None: the options are not empty
    remember(key, chosen)
    return chosen


def bit_options(stored: int) -> list[int]:
    """Hash lengths offered for an index storing `stored` bits."""
    return sorted({b for b in BIT_CHOICES if b <= stored} | {stored})


def scope_of(workspace, index_name: str) -> str:
    """The widget-key scope of an index's search controls (each index remembers its own)."""
    return f"{workspace.path.name}::{index_name}"


def rerank_limit(index) -> int:
    """Largest re-rank depth the control offers (0 for an index without stored vectors)."""
    return 5000 if index.has_vectors else 0


def search_settings(workspace, index_name: str, index) -> SearchSettings:
    """Draw the search controls in the sidebar; returns the one SearchSettings they make.

    Cutoff mode: every row under the cutoff (k None, no re-rank, as the seed); top-k: k and the re-rank
    depth (no cutoff: in top-k a cutoff would filter by exact cosine, which these controls do not offer).
    """
    saved = workspace.search_settings(index_name)
    shown = resolve(index, saved)
    scope = scope_of(workspace, index_name)
    options = bit_options(index.bits)
    default_bits = shown.bits if shown.bits in options else options[-1]
    rerank_max = rerank_limit(index)
    with st.sidebar:
        st.markdown("**Search settings**")
        st.caption(f"Stage sizes: {tuning.describe(tuning.read_estimate(index.manifest))}.")
        if shown.mode == "topk" and shown.partition_probes:
            lists = index.manifest["partitions"]["lists"]
            ranked = ", ranked by residual codes" if index.manifest.get("residual") else ""
            st.caption(
                f"Candidates from {shown.partition_probes} of {lists} k-means partitions{ranked} (`index partitions`)."
            )
        mode = st.radio(
            "Search mode",
            sorted(MODES),
            horizontal=True,
            key=remembered(f"mode::{scope}", saved.mode),
            help="cutoff: every item under the distance cutoff (the seed). "
            "topk: the k nearest by Hamming, or with a re-rank the k nearest by exact cosine.",
        )
        cutoff = st.slider(
            "Distance cutoff (code cosine)",
            0.0,
            1.0,
            step=0.01,
            disabled=mode != "cutoff",
            key=remembered(f"cutoff::{scope}", float(saved.cutoff if saved.cutoff is not None else SEED_CUTOFF)),
            help="Keep index items whose code-cosine distance is below this (the seed used 0.1).",
        )
        bits = st.select_slider("Hash length (bits)", options=options, key=remembered(f"bits::{scope}", default_bits))
        k = st.number_input(
            "k (results)", 1, 1000, key=remembered(f"k::{scope}", int(saved.k or 10)), disabled=mode != "topk"
        )
        rerank = st.number_input(
            "Re-rank depth (exact cosine)",
            0,
            rerank_max,
            disabled=rerank_max == 0 or mode != "topk",
            key=remembered(f"rerank::{scope}", min(int(shown.rerank or 0) if saved.mode == "topk" else 0, rerank_max)),
            help="Top-k mode: how many rows exact cosine re-ranks, the best by weighted Hamming "
            f"of the {DEFAULT_SHORTLIST:,} (or 6x the depth) nearest by Hamming; 0 = off. "
            "Cutoff mode keeps the seed's ranking by code cosine (no re-rank).",
        )
    for name, value in (("mode", mode), ("cutoff", cutoff), ("bits", bits), ("k", k), ("rerank", rerank)):
        remember(f"{name}::{scope}", value)
    if mode == "cutoff":
        return SearchSettings(mode="cutoff", bits=int(bits), k=None, cutoff=float(cutoff), rerank=0)
    post = post_processing(saved, scope, enabled=index.has_vectors)
    return SearchSettings(mode="topk", bits=int(bits), k=int(k), rerank=int(rerank), **post)


def post_processing(saved: SearchSettings, scope: str, enabled: bool) -> dict:
    """The search-side post-processing controls (top-k over stored vectors); their SearchSettings fields.

    Each step's cost shows in the Search page's "Search time"; benchmarks/quality.py measures what each pays.
    """
    with st.sidebar.expander("Post-processing", expanded=False):
        if not enabled:
            st.caption("Needs an index with stored vectors (exact cosine).")
        whiten = st.checkbox(
            "PCA-whitening",
            key=remembered(f"whiten::{scope}", bool(saved.whiten)),
            disabled=not enabled,
            help="Whiten queries and index rows with a PCA fitted on the index's stored vectors.",
        )
        expansion = st.number_input(
            "Query expansion (alpha-QE over the top n; 0 = off)",
            0,
            20,
            key=remembered(f"qe::{scope}", int(saved.query_expansion)),
            disabled=not enabled,
        )
        dba = st.number_input(
            "Database-side augmentation (each row averaged with its top n; 0 = off)",
            0,
            20,
            key=remembered(f"dba::{scope}", int(saved.dba)),
            disabled=not enabled,
        )
        kreciprocal = st.checkbox(
            "k-reciprocal re-ranking of the top 100",
            key=remembered(f"krr::{scope}", bool(saved.kreciprocal)),
            disabled=not enabled,
        )
    values = {"whiten": whiten, "qe": expansion, "dba": dba, "krr": kreciprocal}
    for name, value in values.items():
        remember(f"{name}::{scope}", value)
    if not enabled:
        return {}
    return {
        "whiten": bool(whiten),
        "query_expansion": int(expansion),
        "dba": int(dba),
        "kreciprocal": bool(kreciprocal),
    }


def shown_cutoff(settings: SearchSettings) -> float:
    """The cutoff drawn on distance charts: the settings' own, else the seed's (top-k has none)."""
    return SEED_CUTOFF if settings.cutoff is None else float(settings.cutoff)
