"""`SearchSettings` as URL query parameters and back: the app's deep links and `eproduct serve` share it.

`settings_to_params(settings)` gives text values for the fields that are set (`None` fields, "the index's
default", are left out); `settings_from_params(params)` reads them back, refusing a bad value with an
`EproductError` naming the parameter. `settings_from_params(settings_to_params(s)) == s` for every
settings object whose unset fields are `None` (tests/test_url_params.py). Only `PARAMS` travel in a URL;
other keys are ignored (they belong to the caller: workspace, index, query, ...).
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import EproductError
from .settings import MODES, SearchSettings

PARAMS = ("mode", "cutoff", "bits", "k", "rerank")  # SearchSettings fields a deep link carries, in URL order
_INTS = ("bits", "k", "rerank")


def settings_to_params(settings: SearchSettings) -> dict[str, str]:
    """URL query parameters (text) of the fields of `settings` in PARAMS that are not None."""
    params = {}
    for name in PARAMS:
        value = getattr(settings, name)
        if value is None:
            continue
        params[name] = repr(float(value)) if name == "cutoff" else str(value)
    return params


def _value(name: str, text: str):
    text = str(text).strip()
    if name == "mode":
        if text not in MODES:
            raise EproductError(f"URL parameter mode={text!r}: must be one of {', '.join(MODES)}.")
        return text
    if name == "cutoff":
        try:
            value = float(text)
        except ValueError:
            raise EproductError(f"URL parameter cutoff={text!r}: must be a number such as 0.1.") from None
        if value != value:
            raise EproductError("URL parameter cutoff=nan: must be a number such as 0.1.")
        return value
    try:
        return int(text)
    except ValueError:
        raise EproductError(f"URL parameter {name}={text!r}: must be a whole number.") from None


def settings_from_params(params: Mapping[str, str], base: SearchSettings | None = None) -> SearchSettings:
    """`base` (default: all-None settings in the given mode) with the PARAMS found in `params` applied.

    A value that is not valid raises an EproductError naming the parameter and what it must be.
    """
    changes = {name: _value(name, params[name]) for name in PARAMS if name in params and str(params[name]) != ""}
    if base is not None:
        start = base
    else:  # cutoff mode keeps every admitted row unless k is given; topk needs a k (default 10)
        start = SearchSettings(mode="cutoff", k=None) if changes.get("mode") == "cutoff" else SearchSettings()
    try:
        return start.replace(**changes)
    except EproductError as err:
        raise EproductError(f"URL parameters {changes}: {err}") from err
