"""`eproduct submit` end to end on the tiny synthetic catalog with a 1-epoch seed-preset run (tiny backbone)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch  # a hard dependency of submit: missing torch fails, never skips

from eproduct_core.cli import main
from eproduct_core.submission import read_submission


@pytest.fixture(scope="module")
def seed_run(tiny_catalog, tmp_path_factory):
    """The seed preset (kind seed, 20 bits, 8,000 per shard, cutoff 0.1) with a tiny backbone for speed."""
    from eproduct_core.config import preset, with_overrides
    from eproduct_core.train import train

    torch.set_num_threads(1)
    config = with_overrides(preset("seed"), {"backbone": "tiny", "epochs": 1, "image_size": 32})
    return train(config, tiny_catalog, tmp_path_factory.mktemp("runs") / "seed")


def test_submit_writes_top10_with_the_seed_settings(seed_run, tiny_catalog, tmp_path, capsys):
    out = tmp_path / "submission.csv"
    assert main(["submit", "--run", str(seed_run), "--catalog", str(tiny_catalog), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "settings: mode=cutoff, bits=20, k=10, cutoff=0.1, rerank=0" in printed
    submission = read_submission(out)
    catalog_queries = (tiny_catalog / "query.csv").read_text().splitlines()[1:]
    assert len(submission) == len(catalog_queries)
    index_ids = {line.split(",")[0] for line in (tiny_catalog / "index.csv").read_text().splitlines()[1:]}
    assert all(len(ids) <= 10 and set(ids) <= index_ids for ids in submission.values())
    cached = sorted(p.name for p in (seed_run / "cache" / "indexes").iterdir())
    assert len(cached) == 1 and cached[0].startswith("seed-") and cached[0].endswith("-64b-8000r-s0")

    # scoring the file agrees with the score printed by submit (same results, scored two ways)
    assert (
        main(["evaluate", "--submission", str(out), "--catalog", str(tiny_catalog), "--out", str(tmp_path / "ev")]) == 0
    )
    scored = json.loads((tmp_path / "ev" / "summary.json").read_text())
    line = next(row for row in printed.splitlines() if row.startswith("MAR@10 (/|G|"))
    assert float(line.split()[-1]) == pytest.approx(scored["mar@10_G"], abs=1e-4)

    # evaluate --run --index with the same settings searches the same cached index: same score again
    index = next((seed_run / "cache" / "indexes").iterdir())
    assert (
        main(
            [
                "evaluate",
                "--run",
                str(seed_run),
                "--index",
                str(index),
                "--catalog",
                str(tiny_catalog),
                "--out",
                str(tmp_path / "ev2"),
            ]
        )
        == 0
    )
    again = json.loads((tmp_path / "ev2" / "summary.json").read_text())
    assert again["mar@10_G"] == pytest.approx(scored["mar@10_G"])
    assert again["settings"]["bits"] == 20 and again["settings"]["mode"] == "cutoff"


def test_evaluate_run_and_submit_agree_when_a_query_image_is_unreadable(seed_run, tiny_catalog, tmp_path, capsys):
    """One run, one MAR@10: a query that fails to embed scores 0 in `evaluate --run` as in `submit`."""
    catalog = tmp_path / "catalog"
    shutil.copytree(tiny_catalog, catalog)
    first = (catalog / "query.csv").read_text().splitlines()[1].split(",")
    (catalog / first[1]).write_bytes(b"not an image")
    out = tmp_path / "submission.csv"
    assert main(["submit", "--run", str(seed_run), "--catalog", str(catalog), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 queries failed to embed" in printed
    assert read_submission(out)[first[0]] == []
    submitted = float(next(row for row in printed.splitlines() if row.startswith("MAR@10 (/|G|")).split()[-1])
    index = next((seed_run / "cache" / "indexes").iterdir())
    command = ["evaluate", "--run", str(seed_run), "--index", str(index), "--catalog", str(catalog)]
    assert main([*command, "--out", str(tmp_path / "ev")]) == 0
    evaluated = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert evaluated["not_embedded"] == 1 and evaluated["queries"] == len(read_submission(out))
    assert evaluated["mar@10_G"] == pytest.approx(submitted, abs=1e-4)
    assert "not_embedded" in capsys.readouterr().out


def test_submit_reuses_the_cache_and_applies_overrides(seed_run, tiny_catalog, tmp_path, monkeypatch, capsys):
    assert (
        main(["submit", "--run", str(seed_run), "--catalog", str(tiny_catalog), "--out", str(tmp_path / "a.csv")]) == 0
    )

    def no_embedding(*args, **kwargs):
        raise AssertionError("embedded again although the cache holds the vectors")

    monkeypatch.setattr("eproduct_core.embed.embed_split", no_embedding)
    capsys.readouterr()
    assert (
        main(
            [
                "submit",
                "--run",
                str(seed_run),
                "--catalog",
                str(tiny_catalog),
                "--out",
                str(tmp_path / "b.csv"),
                "--bits",
                "48",
                "--mode",
                "topk",
                "--rerank",
                "5",
                "--k",
                "3",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "bits=48" in printed and "mode=topk" in printed and "rerank=5" in printed
    assert all(len(ids) <= 3 for ids in read_submission(tmp_path / "b.csv").values())


def test_cache_key_follows_catalog_and_checkpoint(seed_run, tiny_catalog, tmp_path):
    from eproduct_core.run_cache import cache_key

    copy = tmp_path / "catalog"
    shutil.copytree(tiny_catalog, copy, ignore=shutil.ignore_patterns("images"))
    key = cache_key(seed_run, copy, "query", "seed")
    assert key == cache_key(seed_run, copy, "query", "seed")
    assert key != cache_key(seed_run, copy, "query", "penultimate")
    with open(copy / "query.csv", "a") as handle:
        handle.write("qnew,images/query/000001.jpg\n")
    assert cache_key(seed_run, copy, "query", "seed") != key


def test_submit_without_a_run_is_a_user_error(tiny_catalog, tmp_path, capsys):
    assert (
        main(
            [
                "submit",
                "--run",
                str(tmp_path / "nothing"),
                "--catalog",
                str(tiny_catalog),
                "--out",
                str(tmp_path / "s.csv"),
            ]
        )
        == 2
    )
    assert "config.json" in capsys.readouterr().err


def test_submit_refuses_build_flags_with_an_index(tiny_catalog, tmp_path, capsys):
    """--kind / --shard-size describe the index submit builds; with --index they would be silently ignored."""
    command = ["submit", "--run", str(tmp_path), "--catalog", str(tiny_catalog), "--out", str(tmp_path / "s.csv")]
    assert main([*command, "--index", str(tmp_path / "idx"), "--kind", "metric"]) == 2
    assert "--index" in capsys.readouterr().err
