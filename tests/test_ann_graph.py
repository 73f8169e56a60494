"""The optional faiss HNSW graph beside an LSH index: exact at a wide beam, recorded and checked in the manifest,
refused clearly when absent, reachable from the CLI and from one SearchSettings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eproduct_core import ann_graph, search
from eproduct_core.cli import build_parser, main
from eproduct_core.cli.search_flags import search_settings
from eproduct_core.errors import EproductError
from eproduct_core.index import build_index, open_index, verify_index
from eproduct_core.index_format import sha256_file
from eproduct_core.settings import SearchSettings
from eproduct_core.submission import read_submission

N, DIM, K = 2000, 32, 10


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = _unit(rng.standard_normal((N, DIM)))
    q = _unit(x[rng.choice(N, 50, replace=False)] + 0.3 * rng.standard_normal((50, DIM)))
    return x, q


def _exact(index, q: np.ndarray) -> np.ndarray:
    """Brute-force top-K rows by cosine on the stored (float16) vectors, ties by row."""
    x = np.asarray(index.vectors, dtype=np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims = _unit(q).astype(np.float64) @ x.T
    return np.array([np.lexsort((np.arange(N), -s))[:K] for s in sims])


@pytest.fixture
def folder(tmp_path):
    x, _ = _data()
    return build_index(x, None, tmp_path / "idx", bits=64, shard_size=700)


@pytest.fixture
def graphed(folder):
    ann_graph.build_graph(open_index(folder))
    return folder


def test_a_wide_beam_returns_the_exact_top_10_with_exact_distances(graphed):
    index = open_index(graphed)  # read back from disk, not the graph the build kept
    _, q = _data()
    found = search.search(index, q, SearchSettings(k=K, backend="hnsw", ef_search=1000))
    truth = _exact(index, q)
    hits = sum(len(np.intersect1d(r.rows, t)) for r, t in zip(found, truth, strict=True))
    assert hits / truth.size >= 0.99
    first = found[0]
    assert len(first.ids) == K and first.ids == [str(r) for r in first.rows]
    assert first.cosine is not None and np.all(np.diff(first.cosine) >= 0)
    lsh = search.search(index, q[:1], SearchSettings(k=N, rerank=N, shortlist=N, candidates=N, probe_bits=64))[0]
    by_row = dict(zip(lsh.rows.tolist(), lsh.cosine.tolist(), strict=True))  # the LSH re-rank's exact cosine
    assert first.cosine.tolist() == [by_row[r] for r in first.rows.tolist()]
    assert first.hamming.tolist() == [lsh.hamming[lsh.rows.tolist().index(r)] for r in first.rows.tolist()]


def test_a_narrow_beam_is_an_approximation_and_the_cutoff_filters(graphed):
    index = open_index(graphed)
    _, q = _data()
    truth = _exact(index, q)
    narrow = search.search(index, q, SearchSettings(k=K, backend="hnsw", ef_search=1))  # beam raised to k
    assert all(len(r.rows) == K and r.candidates == K for r in narrow)
    cut = search.search(index, q, SearchSettings(k=K, backend="hnsw", ef_search=200, cutoff=0.3))
    assert all(r.cosine is not None and np.all(r.cosine < 0.3) for r in cut)
    assert sum(len(r.rows) for r in cut) < truth.size


def test_post_processing_runs_over_the_graphs_top_100(graphed):
    index = open_index(graphed)
    _, q = _data()
    graph = SearchSettings(k=K, backend="hnsw", ef_search=1000, kreciprocal=True)
    lsh = SearchSettings(k=K, rerank=N, shortlist=N, candidates=N, probe_bits=64, kreciprocal=True)
    for a, b in zip(search.search(index, q[:5], graph), search.search(index, q[:5], lsh), strict=True):
        assert len(a.rows) == K and len(np.intersect1d(a.rows, b.rows)) >= K - 1  # same top 100, same re-ranking


def test_manifest_records_the_file_and_verify_catches_corruption(graphed):
    manifest = json.loads((graphed / "manifest.json").read_text())
    entry = manifest["ann"]
    assert entry["type"] == "hnsw" and entry["rows"] == N and entry["dim"] == DIM
    assert entry["params"] == {"m": 32, "ef_construction": 40, "metric": "inner_product"}
    path = graphed / entry["file"]
    assert entry["sha256"] == sha256_file(path)
    assert verify_index(graphed) == []
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    problems = verify_index(graphed)
    assert len(problems) == 1 and "sha256" in problems[0] and "eproduct index ann" in problems[0]
    with pytest.raises(EproductError, match="sha256"):
        search.search(open_index(graphed), _data()[1], SearchSettings(backend="hnsw"))
    path.unlink()
    assert "missing" in verify_index(graphed)[0]


def test_a_rebuild_replaces_the_graph_and_leaves_no_temporary(graphed):
    ann_graph.build_graph(open_index(graphed), m=8, ef_construction=20)
    assert json.loads((graphed / "manifest.json").read_text())["ann"]["params"]["m"] == 8
    assert verify_index(graphed) == []
    assert sorted(p.name for p in graphed.iterdir() if p.name.startswith(".")) == []


def test_missing_graph_bad_settings_and_no_vectors_are_clear_errors(folder, tmp_path):
    index = open_index(folder)
    with pytest.raises(EproductError, match=r"no HNSW graph.*eproduct index ann"):
        search.search(index, _data()[1], SearchSettings(backend="hnsw"))
    with pytest.raises(EproductError, match="backend"):
        SearchSettings(backend="ivf")
    with pytest.raises(EproductError, match="top-k only"):
        SearchSettings(mode="cutoff", k=None, backend="hnsw")
    with pytest.raises(EproductError, match="ef_search"):
        SearchSettings(backend="hnsw", ef_search=0)
    with pytest.raises(EproductError, match="at least 2 links"):
        ann_graph.build_graph(index, m=1)
    bare = build_index(_data()[0], None, tmp_path / "bare", bits=64, vectors_fp16=False)
    with pytest.raises(EproductError, match="without vectors"):
        ann_graph.build_graph(open_index(bare))
    assert "ann" not in json.loads((folder / "manifest.json").read_text())


def test_missing_faiss_names_the_extra(graphed, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now raises ImportError
    assert not ann_graph.faiss_available()
    with pytest.raises(EproductError, match=r'pip install "eproduct\[ann\]"'):
        search.search(open_index(graphed), _data()[1], SearchSettings(backend="hnsw"))
    assert verify_index(graphed) == []  # checking the file needs no faiss


def test_settings_round_trip_and_the_shared_flags():
    settings = SearchSettings(k=5, backend="hnsw", ef_search=128)
    assert SearchSettings.from_dict(settings.to_dict()) == settings
    assert SearchSettings.from_dict({"mode": "topk", "k": 10}).backend == "lsh"  # older dicts: the LSH stages
    parser = build_parser()
    for command in (
        ["search", "--index", "i", "--vectors", "q.npy", "--out", "o"],
        ["evaluate", "--catalog", "c"],
        ["sweep", "--catalog", "c", "--index", "i"],
        ["submit", "--run", "r", "--catalog", "c", "--out", "o"],
    ):
        args = parser.parse_args([*command, "--k", "5", "--backend", "hnsw", "--ef-search", "128"])
        assert search_settings(args) == settings, command


def test_cli_builds_the_graph_and_searches_it(folder, tmp_path, capsys):
    _, q = _data()
    np.save(tmp_path / "q.npy", q)
    assert main(["index", "ann", str(folder), "-q"]) == 0
    assert "HNSW graph M 32" in capsys.readouterr().out
    assert main(["index", "verify", str(folder)]) == 0
    out = tmp_path / "hnsw.csv"
    argv = ["search", "--index", str(folder), "--vectors", str(tmp_path / "q.npy"), "--out", str(out)]
    assert main([*argv, "--backend", "hnsw", "--ef-search", "1000", "--threads", "1"]) == 0
    rows = read_submission(out)
    expected = search.search(open_index(folder), q, SearchSettings(backend="hnsw", ef_search=1000))
    assert [rows[str(i)] for i in range(len(q))] == [r.ids for r in expected]


def test_cli_refuses_bad_input_with_one_line_and_writes_nothing(folder, tmp_path, capsys):
    np.save(tmp_path / "q.npy", _data()[1])
    out = tmp_path / "o.csv"
    argv = ["search", "--index", str(folder), "--vectors", str(tmp_path / "q.npy"), "--out", str(out)]
    for bad in (["index", "ann", str(folder), "--m", "1", "-q"], [*argv, "--backend", "hnsw"]):
        assert main(bad) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0]
    assert not out.exists() and "ann" not in json.loads((folder / "manifest.json").read_text())
    assert not (folder / ann_graph.GRAPH_FILE).exists()


def test_compare_reports_both_backends(graphed):
    index = open_index(graphed)
    frame = ann_graph.compare(index, _data()[1][:20], ef_search=1000)
    assert frame["backend"].tolist() == ["LSH (index defaults)", "HNSW graph"]
    assert frame.loc[1, "recall@10"] >= 0.99 and frame.loc[1, "setting"] == "ef_search 1000"
    assert (frame["ms/query (median)"] > 0).all()
