"""Which workspace the session looks at: first-run demo build, the sidebar chooser, the current workspace.

The chosen workspace path lives in `st.session_state["workspace"]`. Only workspaces inside the
configured roots (`eproduct_core.workspace.roots()`) can be chosen; a typed path outside them is refused.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from eproduct_core import workspace as ws
from eproduct_core.errors import EproductError

KEY = "workspace"


def ensure_demo() -> None:
    """On first run (no workspace in any root), build the demo workspace with a progress display."""
    if ws.list_workspaces():
        return
    root = ws.home()
    with st.status(
        "First run: building the demo workspace (a few minutes on a laptop CPU; later starts open at once)...",
        expanded=True,
    ) as status:
        bar = st.progress(0.0, text="Starting")

        def progress(fraction: float, message: str) -> None:
            bar.progress(min(max(fraction, 0.0), 1.0), text=message)

        try:
            built = ws.build_demo(root, preset="fast-demo", progress=progress)
        except EproductError as err:
            status.update(label="Building the demo workspace failed", state="error")
            st.error(str(err))
            st.stop()
        status.update(label=f"Demo workspace ready in {built.path}", state="complete", expanded=False)
    st.session_state[KEY] = str(built.path)


def workspace_chooser() -> ws.Workspace | None:
    """Draw the sidebar chooser and return the current workspace (None when there is none)."""
    found = ws.list_workspaces()
    by_path = {str(w.path): w for w in found}
    current = st.session_state.get(KEY)
    if current not in by_path and found:
        demo = [w for w in found if w.path.name == ws.DEMO_NAME]
        current = str((demo or found)[0].path)
    with st.sidebar:
        st.markdown("**Workspace**")
        if found:
            paths = list(by_path)
            chosen = st.selectbox(
                "Workspace",
                paths,
                index=paths.index(current) if current in paths else 0,
                format_func=lambda p: f"{by_path[p].title}  ({Path(p).name})",
                key="workspace_select",
                label_visibility="collapsed",
            )
            if chosen != st.session_state.get(KEY):
                st.session_state[KEY] = chosen
                current = chosen
            st.caption(f"Showing: {by_path[chosen].title}")
        typed = st.text_input(
            "Open a workspace folder",
            key="workspace_path",
            placeholder=str(ws.home() / "my-workspace"),
            help=f"Folders inside {', '.join(str(r) for r in ws.roots())} only.",
        )
        if typed:
            try:
                opened = ws.open_workspace(typed)
            except EproductError as err:
                st.error(str(err))
            else:
                st.session_state[KEY] = str(opened.path)
                return opened
    if current is None:
        return None
    st.session_state[KEY] = current
    return by_path.get(current)


def current_workspace() -> ws.Workspace:
    """The session's workspace, or an `EproductError` telling the user how to get one."""
    path = st.session_state.get(KEY)
    if not path:
        raise EproductError(
            f"No workspace found under {ws.home()}. Build the demo with `eproduct demo`, or restart the app to build it."
        )
    return ws.open_workspace(path)
