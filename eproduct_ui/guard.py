"""The page boundary: user errors become a clear `st.error`, never a traceback.

`EproductError` (bad upload, missing artifacts, mismatched index) shows its own message. Anything else
is a bug: it is logged with its traceback and the page shows a short error instead of crashing.
Streamlit's rerun/stop signals derive from BaseException and pass through untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import streamlit as st

from eproduct_core.errors import EproductError

log = logging.getLogger(__name__)


def page_boundary(render: Callable[[], None]) -> None:
    """Draw the workspace sidebar, then the page's `render()`; show errors with `st.error`, stay alive.

    The sidebar is drawn here (not in app.py) so a page also works when run on its own (AppTest).
    """
    from eproduct_ui import deeplink, sidebar_build, state

    try:
        state.ensure_demo()
        deeplink.restore_workspace()
        state.workspace_chooser()
        sidebar_build.fashion_mnist_builder()
        render()
    except EproductError as err:
        st.error(str(err))
    except Exception as err:  # a bug, not the user's doing: log it, show one line
        log.exception("page failed")
        st.error(f"Something went wrong on this page ({type(err).__name__}: {err}). The details are in the server log.")
