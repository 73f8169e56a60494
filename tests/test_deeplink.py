"""eproduct_ui.deeplink: a Search view <-> URL query parameters, both ways (the browser tests open real links)."""

from __future__ import annotations

import pytest

from eproduct_core.errors import EproductError
from eproduct_core.settings import SEED_SETTINGS, SearchSettings
from eproduct_ui.deeplink import View, view_from_params, view_to_params


@pytest.mark.parametrize(
    "view",
    [
        View(),
        View(workspace="demo", index="seed-20bit", query="q000004", settings=SEED_SETTINGS),
        View(
            workspace="fashion-mnist",
            index="metric-256bit",
            like="ix000017",
            settings=SearchSettings(k=25, bits=64, rerank=300),
        ),
        View(workspace="demo", settings=SearchSettings(mode="cutoff", k=None, cutoff=0.3, bits=16)),
    ],
)
def test_round_trip(view):
    params = view_to_params(view)
    assert view_from_params(params) == view


def test_parameter_names_and_order():
    view = View(workspace="demo", index="seed-20bit", query="q1", settings=SEED_SETTINGS)
    assert list(view_to_params(view)) == ["workspace", "index", "query", "mode", "cutoff", "bits", "k", "rerank"]


def test_a_bad_value_is_named():
    with pytest.raises(EproductError, match="bits"):
        view_from_params({"workspace": "demo", "bits": "many"})
