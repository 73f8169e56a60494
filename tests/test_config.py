"""TrainConfig (with its IndexSpec and SearchSettings): presets as the report says, JSON round trip, validation naming the field, overrides."""

from __future__ import annotations

import json

import pytest

from eproduct_core.config import PRESETS, TrainConfig, preset, with_overrides
from eproduct_core.errors import EproductError
from eproduct_core.settings import SEED_INDEX, SEED_SETTINGS, IndexSpec, SearchSettings


def test_seed_preset_is_the_report_pipeline():
    seed = preset("seed")
    assert (seed.backbone, seed.image_size, seed.optimizer, seed.lr, seed.epochs) == ("resnet50", 64, "adam", 2e-4, 12)
    assert seed.dhc and seed.dependence == "faithful" and not seed.metric and seed.embed_kind == "seed"
    s, i = seed.search, seed.index
    assert (i.kind, i.bits, i.shard_size) == ("seed", 20, 8000)
    assert (s.bits, s.cutoff, s.mode, s.rerank) == (20, 0.1, "cutoff", 0)
    assert (s, i) == (SEED_SETTINGS, SEED_INDEX)


def test_fast_demo_and_best_carry_both_heads_and_better_search():
    for name in ("fast-demo", "best"):
        config = preset(name)
        assert config.dhc and config.metric and config.embed_kind in ("metric", "penultimate")
        assert config.index.kind == config.embed_kind and config.index.bits > 20
        # top-k with the index's own defaults (its exact re-rank depth), not a second copy of them
        assert config.search.mode == "topk" and config.search.rerank is None and config.search.bits is None
    # the demo searches the fine-tuned pooled features; the heads stay so the app shows seed beside them
    assert preset("fast-demo").embed_kind == "penultimate" and preset("fast-demo").image_size == 96


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
    assert config.search.bits == 64 and config.search.mode == "topk" and config.index.shard_size == 8000
    assert config.index.kind == "metric"  # follows embed_kind
    assert preset("seed").epochs == 12  # presets are not mutated


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"colour": "red"}, "colour"),
        ({"epochs": "two"}, "epochs"),
        ({"search.colour": "1"}, "colour"),
        ({"search.kind": "seed"}, "kind"),  # a build field, not a search one
        ({"index.colour": "1"}, "colour"),
        ({"search.bits": "0"}, "bits"),
        ({"index.bits": "5000"}, "bits"),
        ({"index.kind": "metric"}, "index.kind"),  # differs from embed_kind
        ({"metric": "perhaps"}, "metric"),
    ],
)
def test_bad_overrides_are_user_errors(overrides, match):
    with pytest.raises(EproductError, match=match):
        with_overrides(preset("seed"), overrides)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(EproductError, match="fast-demo"):
        preset("fastest")


def test_index_and_search_overrides_and_none():
    config = with_overrides(
        preset("fast-demo"), {"index.bits": "512", "index.shard_size": "100", "search.rerank": "50"}
    )
    assert config.index == IndexSpec(kind="penultimate", bits=512, shard_size=100)
    assert config.search.rerank == 50
    back = with_overrides(config, {"search.rerank": "none", "search.bits": "128"})
    assert back.search.rerank is None and back.search.bits == 128


def test_old_run_config_with_a_mixed_search_dict_still_loads(tmp_path):
    """config.json written before the settings split: `search` held kind/bits/shard_size/cutoff/mode/k/rerank."""
    from eproduct_core.config import load_config

    old = preset("fast-demo").to_dict()
    old.pop("index")
    old["embed_kind"] = "metric"  # what fast-demo searched then
    old["search"] = {
        "kind": "metric",
        "bits": 128,
        "shard_size": 500,
        "cutoff": 0.1,
        "mode": "topk",
        "k": 10,
        "rerank": 100,
    }
    (tmp_path / "config.json").write_text(json.dumps(old))
    config = load_config(tmp_path / "config.json")
    assert config.index == IndexSpec(kind="metric", bits=128, shard_size=500)
    # the old top-k search ignored the cutoff: it must not become a cosine cutoff now
    assert config.search == SearchSettings(mode="topk", bits=128, k=10, cutoff=None, rerank=100)

    seed = preset("seed").to_dict()
    seed.pop("index")
    seed["search"] = {
        "kind": "seed",
        "bits": 20,
        "shard_size": 8000,
        "cutoff": 0.1,
        "mode": "cutoff",
        "k": 10,
        "rerank": 0,
    }
    assert TrainConfig.from_dict(seed) == preset("seed")
