"""Deep links: the Search page's view in the URL (`?workspace=demo&index=...&query=...&mode=...&bits=...`).

`View` is what a link names: the workspace (folder name), the index, the catalog query (or `like`, an index
item used as the query by "More like this") and the search settings. `view_to_params` / `view_from_params`
map it to URL query parameters and back (the settings through eproduct_core.url_params, the one mapping
that `eproduct serve` shares); tests/test_deeplink.py checks the round trip. `restore()` applies a URL the
session has not applied yet (a link opened, back/forward) to the widgets' state before they are drawn;
`publish()` writes the view shown into the URL after a run, so changing a control updates the URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eproduct_core.errors import EproductError
from eproduct_core.settings import SearchSettings
from eproduct_core.url_params import PARAMS, settings_from_params, settings_to_params

PLACE = ("workspace", "index", "query", "like")  # the view's place, before the settings parameters
APPLIED = "deeplink_applied"  # session key: the URL parameters last applied or published


@dataclass(frozen=True)
class View:
    """What a Search deep link names."""

    workspace: str | None = None  # workspace folder name under a root
    index: str | None = None  # index name in the workspace
    query: str | None = None  # catalog query id
    like: str | None = None  # index item id searched with its stored vector ("More like this")
    settings: SearchSettings = field(default_factory=SearchSettings)


def view_to_params(view: View) -> dict[str, str]:
    """URL query parameters of `view` (unset parts left out)."""
    params = {name: str(getattr(view, name)) for name in PLACE if getattr(view, name)}
    params.update(settings_to_params(view.settings))
    return params


def view_from_params(params: Mapping[str, str], base: SearchSettings | None = None) -> View:
    """The view a URL names; a bad settings value raises an EproductError naming the parameter."""
    place = {name: str(params[name]) for name in PLACE if params.get(name)}
    return View(**place, settings=settings_from_params(params, base=base))


def _current_params() -> dict[str, str]:
    import streamlit as st

    return {key: st.query_params[key] for key in st.query_params}


def pending() -> dict[str, str] | None:
    """URL parameters this session has not applied yet (None when there are none)."""
    import streamlit as st

    params = _current_params()
    if not params or params == st.session_state.get(APPLIED):
        return None
    return params


def restore_workspace() -> None:
    """Before the workspace chooser: point the session at the link's workspace (by folder name)."""
    import streamlit as st

    from eproduct_core import workspace as ws

    params = pending()
    if not params or not params.get("workspace"):
        return
    found = {w.path.name: w for w in ws.list_workspaces()}
    chosen = found.get(params["workspace"])
    if chosen is None:
        st.warning(
            f"The link names workspace {params['workspace']!r}, which is not here; showing {', '.join(found) or 'none'}."
        )
        return
    st.session_state["workspace"] = str(chosen.path)
    st.session_state.pop("workspace_select", None)  # the chooser is drawn anew, on the link's workspace


def restore(workspace, index_names: list[str], query_ids: list[str], options_for) -> str | None:
    """Apply a pending link to the widget state of `workspace`; returns the index it names (or None).

    `options_for(index_name)` gives (bit options, re-rank limit, widget scope) of that index so a hash length it cannot search
    is refused with a message instead of breaking the slider.
    """
    import streamlit as st

    from eproduct_ui import controls

    params = pending()
    if params is None:
        return None
    st.session_state[APPLIED] = params
    try:
        view = view_from_params(params)
    except EproductError as err:
        st.warning(f"This link's search settings were not applied: {err}")
        view = View(**{name: params[name] for name in PLACE if params.get(name)})  # type: ignore[arg-type]
        params = {name: params[name] for name in PLACE if name in params}
    name = view.index if view.index in index_names else None
    if view.index and name is None:
        st.warning(f"The link names index {view.index!r}; this workspace has {', '.join(index_names)}.")
    if name:
        controls.remember(f"index::{workspace.path}", name)
    bits_options, rerank_max, scope = options_for(name or workspace.default_index)
    settings = view.settings
    values: dict[str, Any] = {"mode": settings.mode, "cutoff": settings.cutoff, "bits": settings.bits, "k": settings.k}
    values["rerank"] = settings.rerank
    if values["bits"] is not None and values["bits"] not in bits_options:
        st.warning(
            f"The link's hash length {values['bits']} is not offered for this index ({bits_options}); kept the current one."
        )
        values["bits"] = None
    if values["rerank"] is not None and values["rerank"] > rerank_max:
        st.warning(
            f"The link's re-rank depth {values['rerank']} is over this index's limit {rerank_max}; kept the current one."
        )
        values["rerank"] = None
    if values["cutoff"] is not None and not 0.0 <= values["cutoff"] <= 1.0:
        st.warning(f"The link's cutoff {values['cutoff']} is outside the slider's 0-1; kept the current one.")
        values["cutoff"] = None
    for key, value in values.items():
        if key in params and value is not None:
            st.session_state[f"{key}::{scope}"] = value
            controls.remember(f"{key}::{scope}", value)
    st.session_state.pop("like", None)
    if view.like:
        st.session_state["like"] = view.like
    if view.query:
        if view.query in query_ids:
            st.session_state["sample_query"] = view.query
            controls.remember("sample_query", view.query)
        else:
            st.warning(f"The link's query {view.query!r} is not a query of this catalog; showing the first one.")
    return name


def publish(view: View) -> None:
    """Write `view` into the URL (when it changed), remembering it as applied."""
    import streamlit as st

    params = view_to_params(view)
    st.session_state[APPLIED] = params
    if params != _current_params():
        st.query_params.from_dict(params)


def link(view: View) -> str:
    """The relative URL of the Search page showing `view`."""
    from urllib.parse import urlencode

    return "./?" + urlencode(view_to_params(view))


__all__ = [
    "PARAMS",
    "PLACE",
    "View",
    "link",
    "pending",
    "publish",
    "restore",
    "restore_workspace",
    "view_from_params",
    "view_to_params",
]
