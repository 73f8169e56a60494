"""Sidebar: build a workspace of real product photos (Fashion-MNIST) with progress, or say how to get them.

The source is Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist) or the folder in
`$EPRODUCT_FASHION_MNIST`. When its four files are missing the expander says how to install them. A
build writes a catalog of the chosen size (eproduct_core.fashion_mnist), then trains, embeds and indexes
it like the demo (workspace.build_demo into `<home>/fashion-mnist`, built in a temporary folder and renamed).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import streamlit as st

from eproduct_core import workspace as ws
from eproduct_core.errors import EproductError

ENV_SOURCE = "EPRODUCT_FASHION_MNIST"  # a folder holding the four *-ubyte(.gz) files, instead of Debian's
NAME = "fashion-mnist"
# "Quick try": a small catalog and a tiny model trained for one epoch (seconds, not minutes); its scores are low.
QUICK_TRAIN = {
    "backbone": "tiny",
    "weights": "none",
    "epochs": 1,
    "image_size": 32,
    "augment": "none",
    "instance_weight": 0.0,
    "batch_size": 32,
}
SIZES = {  # label -> (train images per class, queries, distractors, training overrides)
    "Quick try (tiny model, 1 epoch, under a minute)": (20, 30, 60, QUICK_TRAIN),
    "Full (the fast-demo preset: minutes)": (400, 500, 2000, {}),
}


def source() -> Path:
    """Where the Fashion-MNIST files are looked for."""
    from eproduct_core.fashion_mnist import DEBIAN_SOURCE

    return Path(os.environ.get(ENV_SOURCE) or DEBIAN_SOURCE)


def installed(folder: Path) -> bool:
    from eproduct_core.fashion_mnist import FILES

    return all(
        any((folder / f"{stem}{ext}").is_file() for ext in (".gz", "")) for pair in FILES.values() for stem in pair
    )


def build(folder: Path, size: str, progress) -> ws.Workspace:
    """Write the catalog of `size` from `folder`, then train, embed and index it; returns the workspace."""
    from eproduct_core.fashion_mnist import make_fashion_mnist_catalog

    per_class, queries, distractors, overrides = SIZES[size]
    root = ws.home()
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".fashion-catalog-", dir=root))
    try:
        progress(0.0, "Writing the Fashion-MNIST catalog")
        catalog = make_fashion_mnist_catalog(
            scratch / "catalog",
            source=folder,
            train_per_class=per_class,
            queries=queries,
            distractors=distractors,
            progress=lambda done, total: progress(
                0.05 * done / max(total, 1), f"Writing catalog images {done}/{total}"
            ),
        )
        made = ws.build_demo(
            root,
            preset="fast-demo",
            name=NAME,
            catalog=catalog,
            train_overrides=overrides,
            progress=lambda fraction, message: progress(0.05 + 0.95 * fraction, message),
        )
        meta = ws.read_meta(made.path)
        meta["title"] = f"Fashion-MNIST ({size.split(' (')[0].lower()}) · {meta.get('preset', 'fast-demo')}"
        ws.write_meta(made.path, meta)
        return ws.open_workspace(made.path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def fashion_mnist_builder() -> None:
    """The sidebar expander: build (or open) the Fashion-MNIST workspace, or how to install the photos."""
    folder = source()
    built = ws.is_finished(ws.home() / NAME)
    with st.sidebar.expander("Real photos: Fashion-MNIST", expanded=False):
        if built:
            st.caption(f"Built: pick it in the workspace list above ({ws.home() / NAME}).")
            return
        if not installed(folder):
            st.info(
                f"Fashion-MNIST is not installed (no files in {folder}). Install Debian's package: "
                "`sudo apt-get install dataset-fashion-mnist`, or set "
                f"`{ENV_SOURCE}` to a folder with the four `*-ubyte.gz` files, then reload."
            )
            return
        size = st.radio("Size", list(SIZES), key="fashion_size")
        if not st.button("Build the Fashion-MNIST workspace", key="fashion_build"):
            return
    with st.status("Building the Fashion-MNIST workspace...", expanded=True) as status:
        bar = st.progress(0.0, text="Starting")

        def progress(fraction: float, message: str) -> None:
            bar.progress(min(max(fraction, 0.0), 1.0), text=message)

        try:
            made = build(folder, size, progress)
        except EproductError as err:
            status.update(label="Building the Fashion-MNIST workspace failed", state="error")
            st.error(str(err))
            return
        status.update(label=f"Fashion-MNIST workspace ready: {made.title}", state="complete", expanded=False)
    st.session_state["workspace"] = str(made.path)
    st.session_state.pop("workspace_select", None)
    st.rerun()
