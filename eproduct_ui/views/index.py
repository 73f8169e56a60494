"""Index page: shards, rows, bits, sizes on disk, checksum status (on request), bucket occupancy, the LSH search
beside the index's optional faiss HNSW graph on the workspace's own queries (building the graph when faiss is
installed), and building a new index (other hash length / shard size) from the workspace's embeddings with progress.
"""

from __future__ import annotations

import re

import pandas as pd
import streamlit as st

from eproduct_core import lsh, results_cache
from eproduct_core import workspace as ws
from eproduct_core.errors import EproductError
from eproduct_core.lsh import hamming_radius
from eproduct_core.settings import (
    DEFAULT_EF_CONSTRUCTION,
    DEFAULT_EF_SEARCH,
    DEFAULT_GRAPH_M,
    DEFAULT_SHARD_SIZE,
    IndexSpec,
    SearchSettings,
)
from eproduct_ui import charts, controls, loaders
from eproduct_ui.state import current_workspace

MAX_BUCKET_BITS = 32  # bucket occupancy is counted on a code prefix of at most this many bits
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
COMPARE_QUERIES = 200  # workspace queries the LSH / HNSW comparison searches (one at a time, each backend)
EF_CHOICES = (16, 32, 64, 128, 256, 512)


def shard_table(index) -> pd.DataFrame:
    """One row per shard: name, rows, bytes on disk per role."""
    rows = []
    for shard in index.manifest["shards"]:
        row = {"shard": shard["name"], "rows": int(shard["rows"])}
        for role, entry in shard["files"].items():
            path = index.path / entry["file"]
            row[f"{role} bytes"] = path.stat().st_size if path.is_file() else 0
        rows.append(row)
    return pd.DataFrame(rows)


def bucket_sizes(index, bits: int) -> pd.DataFrame:
    """items, buckets: how many buckets (distinct `bits`-bit codes) hold each number of items."""
    items, buckets = lsh.bucket_sizes(index.word0, min(bits, MAX_BUCKET_BITS, index.bits))
    return pd.DataFrame({"items": items, "buckets": buckets})


def _overview(index) -> None:
    manifest = index.manifest
    cols = st.columns(5)
    cols[0].metric("Rows", f"{index.size:,}")
    cols[1].metric("Shards", len(manifest["shards"]))
    cols[2].metric("Stored bits", index.bits)
    cols[3].metric("Embedding", f"{index.kind} · {index.dim}-d")
    table = shard_table(index)
    total = int(table.drop(columns=["shard", "rows"]).to_numpy().sum()) if len(table) else 0
    cols[4].metric("On disk", f"{total / 2**20:.1f} MiB")
    st.caption(
        f"Hyperplane seed {manifest.get('seed')}, shard size {manifest.get('shard_size')}, "
        f"built {manifest.get('created', '?')}, re-rank vectors {'stored' if index.has_vectors else 'absent'}."
    )
    st.dataframe(table, hide_index=True, width="stretch")


def _verify(path) -> None:
    from eproduct_core.index import verify_index

    if st.button("Verify checksums", key="verify"):
        with st.spinner("Checking every file's sha256..."):
            problems = verify_index(path)
        if problems:
            st.error("Index problems:\n\n" + "\n".join(f"- {p}" for p in problems))
        else:
            st.success("All files match their sha256 checksums.")
    else:
        st.caption("Checksums not verified yet in this session.")


def _graph(workspace, index_name: str, path, index) -> None:
    """LSH at the index's defaults vs its HNSW graph on the workspace's queries (ann_graph.compare), and the
    button that builds the graph (ann_graph.build_graph) when faiss imports."""
    from eproduct_core import ann_graph
    from eproduct_core.index import open_index

    st.subheader("LSH vs an HNSW graph")
    if not ann_graph.faiss_available():
        st.caption(
            'faiss is not installed here: `pip install "eproduct[ann]"` to build an HNSW graph of this index and '
            "compare it with the LSH search."
        )
        return
    if not index.has_vectors:
        st.caption("This index stores no vectors, and an HNSW graph is built from them.")
        return
    entry = index.manifest.get("ann")
    label = "Rebuild the HNSW graph" if entry else "Build an HNSW graph"
    if st.button(f"{label} (M {DEFAULT_GRAPH_M}, efConstruction {DEFAULT_EF_CONSTRUCTION})", key="build_graph"):
        bar = st.progress(0.0, text="Adding rows to the graph")

        def added(done: int, total: int) -> None:
            bar.progress(done / max(total, 1), text=f"Added {done:,}/{total:,} rows to the graph")

        ann_graph.build_graph(open_index(path), progress=added)  # a fresh handle: the cached Index is shared
        st.rerun()  # the manifest changed: the loader opens the index again, graph included
    if not entry:
        st.caption("No graph yet: build one to compare recall@10 and speed with the LSH search on your queries.")
        return
    query_name = workspace.query_embeddings_for(index_name)
    if query_name is None:
        st.caption("This workspace has no query embeddings of this index's kind to compare on.")
        return
    vectors, ids = loaders.embeddings(workspace.embeddings_dir(query_name))
    vectors, ids = vectors[:COMPARE_QUERIES], ids[:COMPARE_QUERIES]
    ef = st.select_slider("HNSW search beam (ef_search)", options=EF_CHOICES, value=DEFAULT_EF_SEARCH, key="ef_search")
    key = {
        "index": results_cache.index_checksum(path),
        "queries": results_cache.queries_digest(ids, vectors),
        "ef_search": int(ef),
    }

    def compute() -> pd.DataFrame:
        with st.spinner(f"Searching {len(ids):,} queries with both backends (once; kept in the workspace)..."):
            return ann_graph.compare(index, vectors, ef_search=int(ef))

    st.dataframe(results_cache.cached_frame(workspace.path, "ann-compare", key, compute), hide_index=True)
    params = entry.get("params", {})
    st.caption(
        f"{len(ids):,} queries of `{query_name}`, one at a time; recall@10 against exact cosine on the stored vectors. "
        f"Graph: M {params.get('m')}, efConstruction {params.get('ef_construction')}, built in "
        f"{entry.get('build_s', 0):.1f} s. Search it from the command line with `--backend hnsw --ef-search {ef}`."
    )


def _build_form(workspace) -> None:
    from eproduct_core.index import build_index

    st.subheader("Build or rebuild an index")
    sources = [name for name, info in workspace.meta.get("embeddings", {}).items() if info.get("split") == "index"]
    if not sources:
        st.info("This workspace has no index-split embeddings to build from (`eproduct embed --split index`).")
        return
    with st.form("build_index"):
        source = st.selectbox("Embeddings", sources, key="new_index_source")
        bits = st.select_slider(
            "Stored hash length (bits)",
            key="new_index_bits",
            options=[b for b in controls.BIT_CHOICES if b % 8 == 0 and b <= 1024],
            value=64,
            help="Stored in whole bytes; any shorter length can be searched without a rebuild.",
        )
        shard_size = st.number_input("Rows per shard", 100, 1_000_000, DEFAULT_SHARD_SIZE, step=100)
        name = st.text_input("Index name", value=f"{source.removesuffix('-index')}-custom", key="new_index_name")
        submitted = st.form_submit_button("Build index", key="build_index_button")
    if not submitted:
        return
    if not NAME.match(name):
        raise EproductError(f"Index name {name!r}: use letters, digits, '.', '_' or '-' (up to 64), no slashes.")
    vectors, ids = loaders.embeddings(workspace.embeddings_dir(source))
    spec = IndexSpec(
        kind=workspace.embeddings_info(source).get("kind", "external"), bits=int(bits), shard_size=int(shard_size)
    )
    bar = st.progress(0.0, text="Hashing")

    def hashed(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"Hashed {done:,}/{total:,} rows")

    build_index(
        vectors,
        ids,
        workspace.index_dir(name),
        bits=spec.bits,
        shard_size=spec.shard_size,
        seed=spec.seed,
        kind=spec.kind,
        progress=hashed,
    )
    run = workspace.embeddings_info(source).get("run")
    entry = ws.index_entry(spec, SearchSettings(), embeddings=source, run=run, label="built in the app")
    ws.record_index(workspace, name, entry)  # searched with the index's own defaults
    st.success(f"Built index {name}: {len(ids):,} rows, {bits} bits. Pick it in the sidebar.")


def render() -> None:
    workspace = current_workspace()
    index_name = controls.index_choice(workspace)
    path = workspace.index_dir(index_name)
    index = loaders.index(path)
    st.title("Index")
    st.caption(f"{path}")
    _overview(index)
    _verify(path)
    st.subheader("Bucket occupancy")
    bits = st.select_slider(
        "Bucket code length (bits)",
        options=[b for b in controls.bit_options(index.bits) if b <= MAX_BUCKET_BITS],
        value=min(20, index.bits)
        if min(20, index.bits) in controls.bit_options(index.bits)
        else controls.bit_options(index.bits)[0],
        key="bucket_bits",
    )
    sizes = bucket_sizes(index, int(bits))
    occupied = int(sizes["buckets"].sum())
    st.caption(
        f"{occupied:,} occupied buckets of {2 ** int(bits):,} possible; the fullest holds {int(sizes['items'].max()):,} "
        f"items. The seed's cutoff 0.1 at 20 bits admits Hamming distance ≤ {hamming_radius(0.1, 20)} "
        "(for codes with half their bits set): an almost exact bucket match."
    )
    st.altair_chart(charts.bucket_occupancy(sizes), width="stretch")
    _graph(workspace, index_name, path, index)
    _build_form(workspace)
