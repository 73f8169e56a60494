"""The one error type a user can cause: bad images, bad CSVs, wrong folders, mismatched indexes.

Every message says what was wrong and what to do. The CLI prints it without a traceback and exits
with status 2; the app shows it with `st.error` and keeps working.
"""

from __future__ import annotations


class EproductError(Exception):
    """A problem the user can fix; `str(err)` is the whole message to show them."""
