"""data.py: the seeded train/val split and the epoch sampler that DDP ranks step through in lockstep."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eproduct_core.catalog import read_catalog
from eproduct_core.data import EpochSampler, augment, split_train_val


def test_split_is_seeded_disjoint_and_capped(tiny_catalog):
    catalog = read_catalog(tiny_catalog)
    catalog_no_val = type(catalog)(**{**catalog.__dict__, "val": None})
    train, val = split_train_val(catalog_no_val, 0.2, 0, seed=1)
    again, _ = split_train_val(catalog_no_val, 0.2, 0, seed=1)
    assert train.equals(again) and not set(train["path"]) & set(val["path"])
    assert len(train) + len(val) == len(catalog.train) and len(val) == round(0.2 * len(catalog.train))
    capped, _ = split_train_val(catalog_no_val, 0.2, 25, seed=1)
    assert len(capped) == 25 and set(capped["path"]) <= set(train["path"])


@pytest.mark.parametrize(("n", "world"), [(10, 1), (10, 3), (7, 4), (1, 4), (2, 8)])
@pytest.mark.parametrize("balanced", [False, True])
def test_every_rank_gets_the_same_number_of_rows_and_together_they_cover_all(n, world, balanced):
    labels = np.arange(n) % 3
    samplers = [EpochSampler(labels, balanced, seed=5, rank=r, world=world) for r in range(world)]
    drawn = [list(s) for s in samplers]
    assert all(len(d) == len(samplers[0]) == -(-n // world) for d in drawn)
    if not balanced:
        assert set().union(*map(set, drawn)) == set(range(n))
        if n % world == 0:
            assert sorted(sum(drawn, [])) == list(range(n))  # a partition: no row twice


def test_epochs_reshuffle_and_a_resumed_epoch_repeats():
    sampler = EpochSampler(np.arange(50) % 5, False, seed=2)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    sampler.set_epoch(0)
    assert first != second and list(sampler) == first


def test_balanced_sampling_lifts_the_rare_class():
    labels = np.array([0] * 95 + [1] * 5)
    sampler = EpochSampler(labels, True, seed=0)
    rare = []
    for epoch in range(20):
        sampler.set_epoch(epoch)
        rare.append(np.mean(labels[list(sampler)] == 1))
    assert 0.35 < np.mean(rare) < 0.65  # ~0.5 balanced, 0.05 without


def test_augment_is_seeded_and_none_is_identity():
    images = torch.rand(4, 3, 16, 16)
    assert augment(images, "none") is images
    a = augment(images, "light", torch.Generator().manual_seed(3))
    b = augment(images, "light", torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, images) and a.min() >= 0 and a.max() <= 1
