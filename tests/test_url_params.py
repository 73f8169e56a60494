"""url_params: SearchSettings <-> URL query parameters round-trip; bad values are refused by name."""

from __future__ import annotations

import pytest

from eproduct_core.errors import EproductError
from eproduct_core.settings import SEED_SETTINGS, SearchSettings
from eproduct_core.url_params import settings_from_params, settings_to_params


@pytest.mark.parametrize(
    "settings",
    [
        SearchSettings(),
        SEED_SETTINGS,
        SearchSettings(mode="cutoff", k=None, cutoff=0.35, bits=16),
        SearchSettings(mode="topk", k=25, bits=256, rerank=0),
        SearchSettings(mode="topk", k=1, bits=4096, rerank=5000, cutoff=0.123456789),
    ],
)
def test_round_trip(settings):
    params = settings_to_params(settings)
    assert all(isinstance(v, str) for v in params.values())
    assert settings_from_params(params) == settings


def test_params_are_the_fields_that_are_set():
    assert settings_to_params(SEED_SETTINGS) == {
        "mode": "cutoff",
        "cutoff": "0.1",
        "bits": "20",
        "k": "10",
        "rerank": "0",
    }
    assert settings_to_params(SearchSettings()) == {"mode": "topk", "k": "10"}


def test_other_keys_are_ignored_and_base_is_kept():
    base = SearchSettings(mode="topk", k=10, bits=64, rerank=100)
    got = settings_from_params({"workspace": "demo", "query": "q1", "k": "5"}, base=base)
    assert got == base.replace(k=5)


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"bits": "abc"}, "bits"),
        ({"k": "0"}, "k"),
        ({"mode": "fast"}, "mode"),
        ({"cutoff": "x"}, "cutoff"),
        ({"bits": "9999"}, "bits"),
        ({"rerank": "-1"}, "rerank"),
        ({"cutoff": "nan"}, "cutoff"),
    ],
)
def test_bad_values_name_the_parameter(params, named):
    with pytest.raises(EproductError, match=named):
        settings_from_params(params)
