"""index.py and `eproduct index|search`: folder layout, round trip, refusals, verify, the CLI."""

import json

import numpy as np
import pytest

from eproduct_core import lsh
from eproduct_core.cli import main
from eproduct_core.embeddings import write_meta, write_shard
from eproduct_core.errors import EproductError
from eproduct_core.index import build_index, build_index_from_embeddings, open_index, unit_float16, verify_index
from eproduct_core.search import search
from eproduct_core.settings import SearchSettings as S
from eproduct_core.submission import read_submission


def _vectors(n=500, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n // 5, d))
    return (centres[np.arange(n) % (n // 5)] + 0.1 * rng.standard_normal((n, d))).astype(np.float32)


@pytest.fixture()
def index_dir(tmp_path):
    x = _vectors()
    return build_index(
        x, [f"p{i}" for i in range(len(x))], tmp_path / "idx", bits=64, shard_size=120, seed=5, kind="metric"
    ), x


def test_layout_manifest_and_round_trip(index_dir):
    path, x = index_dir
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format"] == "eproduct-index" and manifest["version"] == 1
    assert (manifest["kind"], manifest["dim"], manifest["seed"], manifest["bits"], manifest["rows"]) == (
        "metric",
        16,
        5,
        64,
        500,
    )
    assert [s["rows"] for s in manifest["shards"]] == [120, 120, 120, 120, 20]
    assert [s["name"] for s in manifest["shards"]] == ["00000", "00001", "00002", "00003", "00004"]
    assert all(len(f["sha256"]) == 64 for s in manifest["shards"] for f in s["files"].values())
    assert "created" in manifest
    codes = np.load(path / "codes-00001.npy", allow_pickle=False)
    assert codes.dtype == np.uint8 and codes.shape == (120, 8)
    np.testing.assert_array_equal(codes, lsh.encode(x[120:240], lsh.hyperplanes(5, 64, 16)))
    vectors = np.load(path / "vectors-00004.npy", allow_pickle=False)
    unit = x[480:] / np.linalg.norm(x[480:], axis=1, keepdims=True)  # stored as unit rows (only cosine matters)
    assert vectors.dtype == np.float16 and np.allclose(vectors, unit, atol=1e-3)
    assert (path / "ids-00002.txt").read_text().splitlines()[0] == "p240"

    index = open_index(path)
    assert (index.kind, index.dim, index.bits, index.size) == ("metric", 16, 64, 500)
    assert index.ids([0, 499]) == ["p0", "p499"]
    top = search(index, x[[7, 321]], S(k=1))
    assert [r.ids for r in top] == [["p7"], ["p321"]]
    assert verify_index(path) == []
    assert not list(path.parent.glob(".idx.*"))  # no temporary siblings left


def test_rebuild_replaces_the_index_and_leaves_no_temporary(index_dir, tmp_path):
    path, x = index_dir
    build_index(x[:50], None, path, bits=32, shard_size=10)
    index = open_index(path)
    assert (index.size, index.bits, index.ids([3])) == (50, 32, ["3"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


def test_refuses_to_replace_a_folder_that_is_not_an_index(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "keep.jpg").write_bytes(b"x")
    with pytest.raises(EproductError, match="not an index folder"):
        build_index(_vectors(20), None, folder, bits=16)
    assert (folder / "keep.jpg").exists()


def test_build_argument_errors(tmp_path):
    with pytest.raises(EproductError, match="multiple of 8"):
        build_index(_vectors(20), None, tmp_path / "a", bits=20)
    with pytest.raises(EproductError, match="3 ids for 20 vectors"):
        build_index(_vectors(20), ["a", "b", "c"], tmp_path / "a", bits=16)


def test_nan_or_infinite_vectors_are_refused_and_the_old_index_survives(index_dir, tmp_path):
    path, x = index_dir
    bad = x.copy()
    bad[250, 3] = np.inf
    with pytest.raises(EproductError, match=r"row 250 \(id 'p250'\) holds NaN or infinite"):
        build_index(bad, [f"p{i}" for i in range(len(bad))], path, bits=64, shard_size=120)
    assert verify_index(path) == [] and open_index(path).size == 500  # the previous index is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]  # and no temporary folder is left
    query = x[:3].copy()
    query[1, 0] = np.nan
    with pytest.raises(EproductError, match="Query row 1 holds NaN or infinite"):
        search(open_index(path), query, S())


def test_other_format_version_is_refused(index_dir):
    path, _ = index_dir
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EproductError, match=r"version 99.*reads version 1.*eproduct index build"):
        open_index(path)
    assert "version 99" in verify_index(path)[0]


def test_missing_shard_file_is_refused(index_dir):
    path, _ = index_dir
    (path / "codes-00003.npy").unlink()
    with pytest.raises(EproductError, match=r"shard 00003 is missing its codes file codes-00003.npy"):
        open_index(path)


def test_row_count_mismatch_is_refused(index_dir):
    path, _ = index_dir
    ids = (path / "ids-00002.txt").read_text().splitlines()
    (path / "ids-00002.txt").write_text("\n".join(ids[:-1]) + "\n")
    with pytest.raises(EproductError, match=r"ids-00002.txt has 119 rows; the manifest says 120"):
        open_index(path)


def test_verify_reports_a_failed_checksum_open_stays_cheap(index_dir):
    path, _ = index_dir
    file = path / "vectors-00001.npy"
    data = bytearray(file.read_bytes())
    data[-1] ^= 0xFF
    file.write_bytes(bytes(data))
    problems = verify_index(path)
    assert len(problems) == 1 and "vectors-00001.npy fails its sha256 checksum" in problems[0]
    open_index(path)  # open does not hash; verify does
    assert main(["index", "verify", str(path)]) == 1


def test_build_from_embeddings_folder_takes_its_kind(tmp_path):
    x = _vectors(60)
    emb = tmp_path / "emb"
    write_meta(emb, kind="penultimate", dim=16, split="index")
    write_shard(emb, "a", x[:30], [f"a{i}" for i in range(30)])
    write_shard(emb, "b", x[30:], [f"b{i}" for i in range(30)])
    index = open_index(build_index_from_embeddings(emb, tmp_path / "idx", bits=32, shard_size=25))
    assert index.kind == "penultimate" and index.size == 60 and index.ids([29, 30]) == ["a29", "b0"]
    assert (
        main(
            [
                "index",
                "build",
                "--embeddings",
                str(emb),
                "--bits",
                "32",
                "--shard-size",
                "7",
                "--seed",
                "4",
                "--out",
                str(tmp_path / "cli"),
                "--quiet",
            ]
        )
        == 0
    )
    cli = open_index(tmp_path / "cli")
    assert (cli.kind, cli.size, cli.manifest["seed"], len(cli.manifest["shards"])) == ("penultimate", 60, 4, 9)


def test_cli_build_from_vectors_with_and_without_ids_info_and_search(tmp_path, capsys):
    x = _vectors(200)
    np.save(tmp_path / "vectors.npy", x.astype(np.float16))
    (tmp_path / "ids.txt").write_text("".join(f"sku{i}\n" for i in range(200)))
    assert (
        main(
            [
                "index",
                "build",
                "--vectors",
                str(tmp_path / "vectors.npy"),
                "--ids",
                str(tmp_path / "ids.txt"),
                "--bits",
                "64",
                "--shard-size",
                "50",
                "--out",
                str(tmp_path / "named"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "index",
                "build",
                "--vectors",
                str(tmp_path / "vectors.npy"),
                "--bits",
                "64",
                "--out",
                str(tmp_path / "plain"),
            ]
        )
        == 0
    )
    assert open_index(tmp_path / "named").ids([5]) == ["sku5"]
    assert open_index(tmp_path / "plain").ids([5]) == ["5"]
    assert open_index(tmp_path / "plain").kind == "external"
    assert main(["index", "verify", str(tmp_path / "named")]) == 0
    capsys.readouterr()
    assert main(["index", "info", str(tmp_path / "named")]) == 0
    assert "200 rows" in capsys.readouterr().out

    queries = x[[3, 77, 150]] + 0.01
    np.save(tmp_path / "q.npy", queries)
    assert (
        main(
            [
                "search",
                "--index",
                str(tmp_path / "named"),
                "--vectors",
                str(tmp_path / "q.npy"),
                "--k",
                "5",
                "--rerank",
                "20",
                "--out",
                str(tmp_path / "results.csv"),
            ]
        )
        == 0
    )
    written = read_submission(tmp_path / "results.csv")
    expected = search(open_index(tmp_path / "named"), queries, S(k=5, rerank=20))
    assert written == {str(i): r.ids for i, r in enumerate(expected)}
    assert written["0"][0] == "sku3" and written["2"][0] == "sku150"

    assert (
        main(
            [
                "search",
                "--index",
                str(tmp_path / "named"),
                "--vectors",
                str(tmp_path / "q.npy"),
                "--mode",
                "cutoff",
                "--bits",
                "20",
                "--cutoff",
                "0.1",
                "--k",
                "10",
                "--out",
                str(tmp_path / "seed.csv"),
            ]
        )
        == 0
    )
    seed = search(open_index(tmp_path / "named"), queries, S(mode="cutoff", bits=20, cutoff=0.1, k=10))
    assert read_submission(tmp_path / "seed.csv") == {str(i): r.ids for i, r in enumerate(seed)}

    np.save(tmp_path / "bad.npy", x[:, :5])
    assert (
        main(
            [
                "search",
                "--index",
                str(tmp_path / "named"),
                "--vectors",
                str(tmp_path / "bad.npy"),
                "--out",
                str(tmp_path / "bad.csv"),
            ]
        )
        == 2
    )
    assert "dimension 5" in capsys.readouterr().err


def test_shard_of_the_wrong_width_is_refused(index_dir):
    path, _ = index_dir
    np.save(path / "vectors-00000.npy", np.zeros((120, 15), dtype=np.float16))
    with pytest.raises(EproductError, match=r"vectors-00000.npy has rows of width 15; the manifest says 16"):
        open_index(path)


def _leaning(n=2000, d=64, seed=3):
    """Rows that all lean one way (softmax-like: every value positive), in clusters of four."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n // 4, d))
    logits = centres[np.arange(n) % (n // 4)] + 0.3 * rng.standard_normal((n, d))
    x = np.exp(logits)
    return (x / x.sum(axis=1, keepdims=True)).astype(np.float32)


def test_a_centred_index_hashes_unit_rows_minus_their_mean_and_its_queries_alike(tmp_path, capsys):
    x = _leaning(600)
    folder = build_index(x, None, tmp_path / "c", bits=128, shard_size=250, centre=True)
    index = open_index(folder)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(index.centre, unit.mean(axis=0), atol=1e-6)
    expected = lsh.to_words(lsh.encode(unit - unit.mean(axis=0), index.planes))
    assert (index.words != expected).mean() < 0.002  # float32 rounding at the sign boundary only
    np.testing.assert_array_equal(index.encode(x[:50]), index.words[:50])  # a row as a query: its own code
    np.testing.assert_array_equal(index.encode(3 * x[:5]), index.encode(x[:5]))  # scale does not matter
    plain = open_index(build_index(x, None, tmp_path / "p", bits=128, shard_size=250))
    assert plain.centre is None and "centre" not in plain.manifest
    assert main(["index", "info", str(folder)]) == 0 and "centred" in capsys.readouterr().out
    assert verify_index(folder) == []
    centre_file = folder / index.manifest["centre"]["file"]
    np.save(centre_file, np.zeros(64, np.float32))
    assert any("centre file" in p and "checksum" in p for p in verify_index(folder))
    centre_file.unlink()
    assert any("centre file" in p and "missing" in p for p in verify_index(folder))


def test_centring_finds_more_true_neighbours_on_rows_that_lean_one_way(tmp_path):
    """On softmax-like rows the codes of raw rows crowd into a few buckets; centred codes spread them,
    so the same stage sizes find more of the exact top 10 (measured: see benchmarks/centring.py)."""
    x = _leaning()
    queries = x[:100] * np.exp(0.05 * np.random.default_rng(9).standard_normal((100, x.shape[1]))).astype(np.float32)
    unit, q = x / np.linalg.norm(x, axis=1, keepdims=True), queries / np.linalg.norm(queries, axis=1, keepdims=True)
    truth = np.argsort(-(q @ unit.T), axis=1, kind="stable")[:, :10]
    settings = S(k=10, probe_bits=64, candidates=64, shortlist=40, rerank=20)

    def recall(centre: bool) -> float:
        index = open_index(build_index(x, None, tmp_path / f"c{centre}", bits=64, centre=centre))
        found = search(index, queries, settings)
        return float(np.mean([len(set(r.rows) & set(t)) / 10 for r, t in zip(found, truth, strict=True)]))

    plain, centred = recall(False), recall(True)
    assert centred > plain + 0.05, (plain, centred)  # measured 0.688 -> 0.807


def test_a_centre_file_of_the_wrong_shape_or_not_npy_is_refused_with_a_message(tmp_path):
    folder = build_index(_leaning(100), None, tmp_path / "c", bits=64, centre=True)
    centre_file = folder / "centre.npy"
    np.save(centre_file, np.zeros(3, np.float32))
    with pytest.raises(EproductError, match="centre file centre.npy has shape"):
        open_index(folder)
    centre_file.write_bytes(b"not an array")
    with pytest.raises(EproductError, match="not a readable .npy"):
        open_index(folder)
    assert any("not a readable" in p for p in verify_index(folder))


def test_unit_float16_rows_are_unit_whatever_the_chunk_and_zero_rows_stay_zero():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((301, 9)) * 1e6
    x[100] = 0.0
    whole = unit_float16(x, chunk=1000)
    assert whole.dtype == np.float16 and not whole[100].any()
    np.testing.assert_array_equal(unit_float16(x, chunk=7), whole)
    np.testing.assert_allclose(np.linalg.norm(np.delete(whole, 100, 0).astype(np.float64), axis=1), 1.0, atol=2e-3)
