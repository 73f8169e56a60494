"""evaluate.py: scoring, search evaluation, submission round trip (API and CLI), sweeps."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import noisy_product_index

from eproduct_core.cli import main
from eproduct_core.errors import EproductError
from eproduct_core.evaluate import evaluate_results, evaluate_search, evaluate_submission, sweep
from eproduct_core.metrics import mar_at_k
from eproduct_core.search import search
from eproduct_core.settings import SearchSettings
from eproduct_core.submission import read_submission, write_submission

SEEDISH = SearchSettings(bits=20, mode="cutoff", cutoff=0.2, k=10, rerank=0)
TOPK = SearchSettings(bits=64, mode="topk", k=10, rerank=30)


@pytest.fixture(scope="module")
def retrieval(tmp_path_factory):
    """40 products, 3 noisy index photos each, 200 random distractors; one noisy query per product."""
    return noisy_product_index(
        tmp_path_factory.mktemp("ix") / "index", seed=0, products=40, dim=24, noise=0.5, distractors=200, shard_size=64
    )


def test_evaluate_results_hand_computed():
    truth = {"a": {"x", "y"}, "b": {"z"}, "c": set()}
    result = evaluate_results(
        ["a", "b", "c"], [["x", "n", "y"], [], ["x"]], truth, candidates=[7, 0, 3], latencies_ms=[1.0, 2.0, 3.0]
    )
    s = result.summary
    assert s["queries"] == 3 and s["scored_queries"] == 2
    assert s["mar@10_G"] == pytest.approx((1.0 + 0.0) / 2)
    assert s["recall@1"] == pytest.approx((0.5 + 0.0) / 2)
    assert s["mrr"] == pytest.approx(0.5)
    assert s["no_result"] == 1 and s["mean_candidates"] == pytest.approx(10 / 3)
    assert s["latency_median_ms"] == pytest.approx(2.0)
    assert result.per_query["top_ids"].tolist() == ["x n y", "", "x"]
    assert np.isnan(result.per_query.loc[2, "recall@10"])


@pytest.mark.parametrize("settings", [SEEDISH, TOPK])
def test_evaluate_search_scores_what_search_returns(retrieval, settings):
    index, queries, query_ids, truth = retrieval
    result = evaluate_search(index, queries, query_ids, truth, settings)
    found = search(index, queries, settings)
    ids = [r.ids for r in found]
    assert result.summary["mar@10_G"] == pytest.approx(mar_at_k(ids, [truth[q] for q in query_ids], 10, "G"))
    assert result.summary["mean_candidates"] == pytest.approx(np.mean([r.candidates for r in found]))
    assert result.summary["no_result"] == sum(len(i) == 0 for i in ids)
    assert result.summary["settings"]["bits"] == settings.bits
    assert (result.per_query["latency_ms"] > 0).all()
    if settings.mode == "topk":
        assert result.summary["mar@10_G"] > 0.5  # noisy copies are findable with 64 bits + re-rank


def test_submission_scores_equal_in_process(retrieval, tmp_path):
    index, queries, query_ids, truth = retrieval
    result = evaluate_search(index, queries, query_ids, truth, TOPK)
    path = write_submission(tmp_path / "sub.csv", result.submission_rows())
    scored = evaluate_submission(read_submission(path), truth, query_ids)
    for key in ("mar@10_G", "mar@10_min", "recall@1", "recall@5", "recall@10", "mrr"):
        assert scored.summary[key] == pytest.approx(result.summary[key]), key


def _csv_catalog(root, query_ids, truth):
    """A catalog of CSVs only (scoring a submission opens no image)."""
    root.mkdir()
    pd.DataFrame(
        {"image_id": ["t1"], "meta": ["m"], "level2": ["l"], "leaf": ["f"], "title": ["t"], "path": ["t1.jpg"]}
    ).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"image_id": query_ids, "path": [f"{q}.jpg" for q in query_ids]}).to_csv(
        root / "query.csv", index=False
    )
    index_ids = sorted({i for ids in truth.values() for i in ids})
    pd.DataFrame({"image_id": index_ids, "path": [f"{i}.jpg" for i in index_ids]}).to_csv(
        root / "index.csv", index=False
    )
    pairs = [(q, i) for q in query_ids for i in sorted(truth[q])]
    pd.DataFrame(pairs, columns=["query_id", "index_id"]).to_csv(root / "groundtruth.csv", index=False)
    return root


def test_cli_evaluate_submission_agrees(retrieval, tmp_path, capsys):
    index, queries, query_ids, truth = retrieval
    result = evaluate_search(index, queries, query_ids, truth, SEEDISH)
    sub = write_submission(tmp_path / "sub.csv", result.submission_rows()[:-5])  # 5 queries left out
    catalog = _csv_catalog(tmp_path / "cat", query_ids, truth)
    assert main(["evaluate", "--submission", str(sub), "--catalog", str(catalog), "--out", str(tmp_path / "ev")]) == 0
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    per_query = result.per_query["recall@10"].to_numpy()
    expected = np.concatenate([per_query[:-5], np.zeros(5)]).mean()  # an absent query scores 0
    assert summary["mar@10_G"] == pytest.approx(expected)
    assert "MAR@10" in capsys.readouterr().out
    assert len(pd.read_csv(tmp_path / "ev" / "per_query.csv")) == len(query_ids)


def test_cli_evaluate_without_groundtruth_is_a_user_error(retrieval, tmp_path, capsys):
    _, _, query_ids, truth = retrieval
    catalog = _csv_catalog(tmp_path / "cat", query_ids, truth)
    (catalog / "groundtruth.csv").unlink()
    sub = write_submission(tmp_path / "sub.csv", [(q, []) for q in query_ids])
    assert main(["evaluate", "--submission", str(sub), "--catalog", str(catalog)]) == 2
    assert "groundtruth" in capsys.readouterr().err


def test_sweep_cells_agree_with_single_evaluations(retrieval):
    index, queries, query_ids, truth = retrieval
    base = SearchSettings(mode="cutoff", rerank=0)
    table = sweep(
        index,
        queries,
        query_ids,
        truth,
        base,
        {"bits": [16, 20, 32, 128], "cutoff": [0.1, 0.3]},
        batch_size=len(queries),
    )
    assert len(table) == 6  # 128 bits is skipped: the index stores 64
    assert table["mar@10_G"].max() > table["mar@10_G"].min()
    for _, cell in table.iterrows():
        settings = base.replace(bits=int(cell["bits"]), cutoff=cell["cutoff"])
        single = evaluate_search(index, queries, query_ids, truth, settings).summary
        for key in ("mar@10_G", "mar@10_min", "mean_candidates", "no_result"):
            assert cell[key] == pytest.approx(single[key]), (key, settings)


def test_sweep_over_rerank_depth(retrieval):
    index, queries, query_ids, truth = retrieval
    table = sweep(index, queries, query_ids, truth, TOPK, {"rerank": [0, 10, 60]}, batch_size=8)
    assert table["rerank"].tolist() == [0, 10, 60]
    single = evaluate_search(index, queries, query_ids, truth, TOPK.replace(rerank=60))
    assert table["mar@10_G"].iloc[-1] == pytest.approx(single.summary["mar@10_G"])
    with pytest.raises(EproductError, match="nonsense"):
        sweep(index, queries, query_ids, truth, TOPK, {"nonsense": [1]})


def test_cli_sweep_and_evaluate_with_query_embeddings(retrieval, tmp_path, capsys):
    from eproduct_core.embeddings import write_meta, write_shard

    index, queries, query_ids, truth = retrieval
    emb = tmp_path / "queries"
    write_meta(emb, kind="external", dim=queries.shape[1], split="query")
    write_shard(emb, "00000", queries, query_ids)
    catalog = _csv_catalog(tmp_path / "cat", query_ids, truth)
    common = ["--queries", str(emb), "--index", str(index.path), "--catalog", str(catalog)]
    assert (
        main(
            [
                "sweep",
                *common,
                "--bits-list",
                "16,32",
                "--cutoffs",
                "0.1,0.3",
                "--mode",
                "cutoff",
                "--rerank",
                "0",
                "--out",
                str(tmp_path / "sweep.csv"),
            ]
        )
        == 0
    )
    table = pd.read_csv(tmp_path / "sweep.csv")
    assert list(zip(table["bits"], table["cutoff"], strict=False)) == [(16, 0.1), (16, 0.3), (32, 0.1), (32, 0.3)]
    # float16 storage of the query vectors can flip a sign bit, so compare with the same stored vectors
    from eproduct_core.embeddings import read_embeddings

    stored = read_embeddings(emb).vectors.astype(np.float32)
    expected = sweep(
        index,
        stored,
        query_ids,
        truth,
        SearchSettings(mode="cutoff", rerank=0),
        {"bits": [16, 32], "cutoff": [0.1, 0.3]},
    )
    assert table["mar@10_G"].to_numpy() == pytest.approx(expected["mar@10_G"].to_numpy())
    assert (
        main(["evaluate", *common, "--bits", "64", "--mode", "topk", "--rerank", "30", "--out", str(tmp_path / "ev")])
        == 0
    )
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["settings"]["rerank"] == 30 and summary["mar@10_G"] > 0.5
    assert "MAR@10 (/min(10,|G|))" in capsys.readouterr().out


def _query_embeddings(folder, queries, query_ids):
    from eproduct_core.embeddings import write_meta, write_shard

    write_meta(folder, kind="external", dim=queries.shape[1], split="query")
    write_shard(folder, "00000", queries, query_ids)
    return folder


def test_cli_sweep_and_evaluate_without_a_run_use_the_index_bits(retrieval, tmp_path, capsys):
    """Defect 4: without --run, sweep/evaluate assumed 256 bits; on this 64-bit index sweep printed an empty table."""
    index, queries, query_ids, truth = retrieval
    assert index.bits == 64
    emb = _query_embeddings(tmp_path / "queries", queries, query_ids)
    catalog = _csv_catalog(tmp_path / "cat", query_ids, truth)
    common = ["--queries", str(emb), "--index", str(index.path), "--catalog", str(catalog)]
    assert main(["sweep", *common, "--out", str(tmp_path / "sweep.csv")]) == 0
    table = pd.read_csv(tmp_path / "sweep.csv")
    assert table["bits"].tolist() == [64] and table["mode"].tolist() == ["topk"]
    assert table["rerank"].tolist() == [256] and table["mar@10_G"].iloc[0] > 0.5  # the index's own defaults
    assert main(["evaluate", *common, "--out", str(tmp_path / "ev")]) == 0
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["settings"]["bits"] == 64 and summary["mar@10_G"] == pytest.approx(table["mar@10_G"].iloc[0])
    capsys.readouterr()
    # an empty sweep is an error, not an empty table
    assert main(["sweep", *common, "--bits-list", "128,256"]) == 2
    assert "stores 64 bits" in capsys.readouterr().err


def test_cli_sweep_refuses_cutoffs_in_topk_mode(retrieval, tmp_path, capsys):
    """Defect 5: --cutoffs was silently ignored in top-k mode."""
    index, queries, query_ids, truth = retrieval
    emb = _query_embeddings(tmp_path / "queries", queries, query_ids)
    catalog = _csv_catalog(tmp_path / "cat", query_ids, truth)
    common = ["--queries", str(emb), "--index", str(index.path), "--catalog", str(catalog)]
    assert main(["sweep", *common, "--bits-list", "16,32", "--cutoffs", "0.1,0.3"]) == 2
    assert "--mode cutoff" in capsys.readouterr().err
    assert main(["sweep", *common, "--bits-list", "16", "--cutoffs", "0.1,0.3", "--mode", "cutoff"]) == 0
    assert "0.3000" in capsys.readouterr().out


def test_queries_without_a_vector_score_zero_and_are_counted(retrieval):
    index, queries, query_ids, truth = retrieval
    full = evaluate_search(index, queries, query_ids, truth, TOPK)
    part = evaluate_search(index, queries[1:], query_ids[1:], truth, TOPK, all_query_ids=query_ids)
    assert part.summary["not_embedded"] == 1 and full.summary["not_embedded"] == 0
    assert part.summary["scored_queries"] == full.summary["scored_queries"] == len(query_ids)
    assert part.per_query["query_id"].tolist() == list(query_ids) and part.results[0] == []
    recall = full.per_query["recall@10"].to_numpy()
    assert part.summary["mar@10_G"] == pytest.approx(recall[1:].sum() / len(recall))


def test_shared_flags_build_one_settings_object():
    from eproduct_core.cli import build_parser
    from eproduct_core.cli.search_flags import search_settings
    from eproduct_core.settings import SEED_SETTINGS

    parser = build_parser()
    flags = ["--mode", "cutoff", "--bits", "48", "--k", "5", "--cutoff", "0.2", "--rerank", "0"]
    flags += ["--shortlist", "100", "--probe-bits", "32", "--candidates", "400"]
    expected = SearchSettings(
        mode="cutoff", bits=48, k=5, cutoff=0.2, rerank=0, shortlist=100, probe_bits=32, candidates=400
    )
    for command in (
        ["search", "--index", "i", "--vectors", "q.npy", "--out", "o"],
        ["evaluate", "--catalog", "c"],
        ["sweep", "--catalog", "c", "--index", "i"],
        ["submit", "--run", "r", "--catalog", "c", "--out", "o"],
    ):
        args = parser.parse_args([*command, *flags])
        assert search_settings(args) == expected, command
        assert search_settings(parser.parse_args(command)) == SearchSettings(), command
    # leaving the preset's mode drops its mode-bound cutoff (a code-cosine 0.1 is no top-k cosine cutoff)
    args = parser.parse_args(["evaluate", "--catalog", "c", "--mode", "topk"])
    assert search_settings(args, SEED_SETTINGS) == SearchSettings(mode="topk", bits=20, k=10)
    with pytest.raises(EproductError, match="bits"):
        search_settings(parser.parse_args(["evaluate", "--catalog", "c", "--bits", "0"]))
    # the post-processing settings travel the same way, and stay off unless asked for
    post = ["--whiten", "--query-expansion", "2", "--dba", "3", "--kreciprocal"]
    args = parser.parse_args(["search", "--index", "i", "--vectors", "q.npy", "--out", "o", *post])
    assert search_settings(args) == SearchSettings(whiten=True, query_expansion=2, dba=3, kreciprocal=True)


def test_evaluation_modules_do_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys\nimport eproduct_core.metrics, eproduct_core.evaluate, eproduct_core.analysis, "
        "eproduct_core.class_analysis, eproduct_core.why_missed, eproduct_core.run_cache, eproduct_core.submit\n"
        "from eproduct_core.cli import build_parser\nbuild_parser()\nprint('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_readme_cli_examples_parse_and_its_sweep_is_not_refused():
    """Defect 5: README's own sweep example gave --cutoffs in top-k mode (the best preset's), where they were ignored."""
    import shlex
    from pathlib import Path

    from eproduct_core.cli import build_parser

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    fenced = readme.split("```")[1::2]  # the code blocks
    lines = [line.split("  #")[0] for block in fenced for line in block.splitlines() if line.startswith("eproduct ")]
    parser = build_parser()
    sweeps = []
    for line in lines:
        args = parser.parse_args(shlex.split(line)[1:])
        if args.command == "sweep" and args.cutoffs:
            sweeps.append(args)
    assert sweeps, "README shows no sweep over cutoffs"
    for args in sweeps:  # the best preset searches top-k, so the example must ask for cutoff mode itself
        assert args.mode == "cutoff", "README's sweep --cutoffs example would be refused in top-k mode"
