"""TrainConfig / SearchSettings: presets as the report says, JSON round trip, validation naming the field, overrides."""

from __future__ import annotations

import json

import pytest

from eproduct_core.config import PRESETS, SearchSettings, TrainConfig, preset, with_overrides
from eproduct_core.errors import EproductError


def test_seed_preset_is_the_report_pipeline():
    seed = preset("seed")
    assert (seed.backbone, seed.image_size, seed.optimizer, seed.lr, seed.epochs) == ("resnet50", 64, "adam", 2e-4, 12)
    assert seed.dhc and seed.dependence == "faithful" and not seed.metric and seed.embed_kind == "seed"
    s = seed.search
    assert (s.kind, s.bits, s.shard_size, s.cutoff, s.mode) == ("seed", 20, 8000, 0.1, "cutoff")


def test_fast_demo_and_best_carry_both_heads_and_better_search():
    for name in ("fast-demo", "best"):
        config = preset(name)
        assert config.dhc and config.metric and config.embed_kind in ("metric", "penultimate")
        assert config.search.kind == config.embed_kind
        assert config.search.mode == "topk" and config.search.rerank > 0 and config.search.bits > 20
    assert preset("fast-demo").embed_kind == "metric"  # the app shows seed vs metric from one run


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_json_round_trip(name):
    config = PRESETS[name]
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    "field, value",
    [
        ("image_size", 8),
        ("epochs", 0),
        ("lr", 0.0),
        ("backbone", "vgg"),
        ("dependence", "maybe"),
        ("alphas", (1.0,)),
        ("freeze_fraction", 1.5),
        ("device", "tpu"),
        ("metric_labels", "colour"),
    ],
)
def test_invalid_values_name_the_field(field, value):
    with pytest.raises(EproductError, match=field):
        TrainConfig(**{field: value})


def test_search_settings_validation_names_the_field():
    with pytest.raises(EproductError, match="mode"):
        SearchSettings(mode="nearest")
    with pytest.raises(EproductError, match="bits"):
        SearchSettings(bits=0)


def test_metric_kind_needs_a_metric_head():
    with pytest.raises(EproductError, match="embed_kind"):
        TrainConfig(metric=False, embed_kind="metric")
    with pytest.raises(EproductError, match="dhc"):
        TrainConfig(dhc=False, metric=False)


def test_overrides_parse_strings_by_field_type():
    config = with_overrides(
        preset("seed"),
        {
            "epochs": "2",
            "metric": "true",
            "embed_kind": "metric",
            "lr": "1e-3",
            "alphas": "1,0.5,0.25",
            "search.bits": "64",
            "search.mode": "topk",
        },
    )
    assert config.epochs == 2 and config.metric is True and config.lr == 1e-3
    assert config.alphas == (1.0, 0.5, 0.25)
    assert config.search.bits == 64 and config.search.mode == "topk" and config.search.shard_size == 8000
    assert preset("seed").epochs == 12  # presets are not mutated


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"colour": "red"}, "colour"),
        ({"epochs": "two"}, "epochs"),
        ({"search.colour": "1"}, "colour"),
        ({"metric": "perhaps"}, "metric"),
    ],
)
def test_bad_overrides_are_user_errors(overrides, match):
    with pytest.raises(EproductError, match=match):
        with_overrides(preset("seed"), overrides)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(EproductError, match="fast-demo"):
        preset("fastest")
