"""progress.py: the two callback shapes and the adapters between them."""

from __future__ import annotations

import pytest

from eproduct_core.progress import as_count, as_fraction


def test_count_reports_become_fractions_with_a_caption():
    seen: list[tuple[float, str]] = []
    count = as_fraction(lambda fraction, message: seen.append((fraction, message)), "embedding")
    assert count is not None
    count(0, 4)
    count(3, 4)
    count(0, 0)  # an empty job is finished
    assert seen == [(0.0, "embedding 0/4"), (0.75, "embedding 3/4"), (1.0, "embedding 0/0")]


def test_fractions_become_counts_of_a_fixed_scale_clamped():
    seen: list[tuple[int, int]] = []
    fraction = as_count(lambda done, total: seen.append((done, total)), scale=100)
    assert fraction is not None
    for value in (-0.5, 0.333, 1.0, 7.0):
        fraction(value, "ignored")
    assert seen == [(0, 100), (33, 100), (100, 100), (100, 100)]


@pytest.mark.parametrize("adapter", [as_fraction, as_count])
def test_no_callback_stays_none(adapter):
    assert adapter(None, "x") is None if adapter is as_fraction else adapter(None) is None
