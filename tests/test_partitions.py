"""k-means partitions: probing every list equals the flat scan (both kernels, every top-k path); fewer lists
read fewer rows; tuned settings with partitions reach the target on held-out queries; files are checked; the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eproduct_core import centroid_sketch, partitions, search, search_kernels, tuning
from eproduct_core.cli import main
from eproduct_core.errors import EproductError
from eproduct_core.index import build_index, open_index
from eproduct_core.settings import SearchSettings
from tests.test_tuning import clusters, exact, latent

LISTS = 16


def _data(n: int = 4000, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return clusters(n, dim, 30, seed)


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    x, _ = _data()
    folder = build_index(x, None, tmp_path_factory.mktemp("parts") / "idx", bits=128, shard_size=1500)
    partitions.build_partitions(open_index(folder), LISTS)
    return open_index(folder)


FLAT = [
    SearchSettings(k=10, probe_bits=64, candidates=600, shortlist=200, rerank=40),  # stages 1-4, compiled batch
    SearchSettings(k=10, probe_bits=128, candidates=600, shortlist=200, rerank=40),  # stage 1 ranks all bits
    SearchSettings(k=10, probe_bits=64, candidates=600, shortlist=40, rerank=40),  # no weighted stage
    SearchSettings(k=10, probe_bits=8, candidates=500, rerank=0),  # Hamming only; 8-bit prefixes: many ties
]


@pytest.mark.parametrize("kernel", ["numba", "numpy"])
@pytest.mark.parametrize("flat", FLAT)
def test_probing_every_list_returns_the_flat_scan_rows(index, kernel, flat):
    _, q = _data()
    index.kernel = kernel
    try:
        every = search.search(index, q, flat.replace(partition_probes=LISTS))
        for a, b in zip(search.search(index, q, flat), every, strict=True):
            assert a.rows.tolist() == b.rows.tolist()
            assert a.hamming.tolist() == b.hamming.tolist()
            assert (a.cosine is None) == (b.cosine is None)
            if a.cosine is not None:
                assert a.cosine.tolist() == b.cosine.tolist()
    finally:
        index.kernel = "auto"


def test_both_kernels_scan_the_same_rows_with_ties_to_the_lowest_row(index):
    _, q = _data()
    made = partitions.partitions_of(index)
    parts = search_kernels.Parts(made.columns, made.rows, made.offsets)
    qwords = index.encode(q)
    for probes in (1, 3, LISTS):
        lists = made.lists_for(q, probes)
        for i in range(len(q)):
            for bits, count in ((8, 50), (64, 300), (128, 10**6)):
                compiled = search_kernels.partition_scan(parts, lists[i], qwords[i], bits, count, "numba")
                plain = search_kernels.partition_scan(parts, lists[i], qwords[i], bits, count, "numpy")
                assert compiled.tolist() == plain.tolist()
                assert np.all(np.diff(compiled) > 0)
    # all lists: exactly the flat scan's rows (ties included) at an 8-bit prefix, where ties are everywhere
    columns, sample = index.scan_arrays(8)
    every = made.lists_for(q, LISTS)
    for i in range(len(q)):
        flat = search_kernels.scan(columns, qwords[i], 8, 333, "numba", sample)
        assert search_kernels.partition_scan(parts, every[i], qwords[i], 8, 333).tolist() == flat.tolist()


def test_the_lists_cover_every_row_once_and_fewer_probes_read_fewer_rows(index):
    made = partitions.partitions_of(index)
    assert made.lists == LISTS and sorted(made.rows.tolist()) == list(range(index.size))
    for start, stop in zip(made.offsets[:-1], made.offsets[1:], strict=True):
        assert np.all(np.diff(made.rows[start:stop]) > 0)  # each list ascending by row
    x, q = _data()
    lists = made.lists_for(q, 4)
    scores = q @ made.centroids.T
    assert all(best in chosen for best, chosen in zip(np.argmax(scores, axis=1), lists, strict=True))
    assert np.all(np.diff(lists, axis=1) > 0)  # ascending list numbers
    one = search.search(index, q, FLAT[0].replace(partition_probes=1))
    four = search.search(index, q, FLAT[0].replace(partition_probes=4))
    truth = exact(x, q)
    recall_one = tuning.per_query_recall([r.rows for r in one], truth).mean()
    recall_four = tuning.per_query_recall([r.rows for r in four], truth).mean()
    assert 0 < recall_one <= recall_four


@pytest.mark.parametrize(("make", "target"), [(clusters, 0.95), (latent, 0.9)])
def test_tuned_settings_with_partitions_reach_the_target_on_held_out_queries(tmp_path, make, target):
    x, q = make(6000, 48, 300, seed=3)
    index = open_index(build_index(x, None, tmp_path / "idx", bits=128, shard_size=2000))
    partitions.build_partitions(index)
    result = tuning.tune(index, target=target, sample=300, seed=1)
    assert result.reached and result.low >= target
    found = [r.rows for r in search.search(index, q, result.settings)]
    assert tuning.per_query_recall(found, exact(x, q)).mean() >= target
    # the partition family on its own also reaches the target on the held-out queries
    best = tuning._partition_winners(index, 11, lambda s: _reaches(index, s, target))
    assert best and all(0 < s.partition_probes <= index._partitions.lists for s in best)
    found = [r.rows for r in search.search(index, q, best[0].replace(k=10))]
    assert tuning.per_query_recall(found, exact(x, q)).mean() >= target - 0.02


def _reaches(index, settings: SearchSettings, target: float) -> bool:
    rows = tuning.held_out_rows(index, 200, seed=4)
    truth = tuning.exact_neighbours(index, index.vectors[rows], 10, exclude=rows)
    found = [r.rows for r in search.search(index, np.asarray(index.vectors[rows], np.float32), settings)]
    return tuning.per_query_recall(found, truth, rows).mean() >= target


def test_partitions_are_checked_and_refused_when_absent_or_wrong(index, tmp_path):
    assert partitions.verify_partitions(index) == []
    manifest = json.loads((index.path / "manifest.json").read_text())
    assert manifest["partitions"]["lists"] == LISTS
    x, q = _data(500)
    bare = open_index(build_index(x, None, tmp_path / "bare", bits=64))
    with pytest.raises(EproductError, match="index partitions"):
        search.search(bare, q, SearchSettings(partition_probes=4))
    with pytest.raises(EproductError, match="partition_probes"):
        SearchSettings(partition_probes=-1)
    with pytest.raises(EproductError, match="lists"):
        partitions.make_partitions(np.asarray(bare.vectors), bare.words, len(x) + 1)
    copy = build_index(x, None, tmp_path / "copy", bits=64)
    opened = open_index(copy)
    partitions.build_partitions(opened, 4)
    path = copy / partitions.FILES["rows"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    assert partitions.verify_partitions(opened)
    assert main(["index", "verify", str(copy)]) == 1
    np.save(path, np.arange(3), allow_pickle=False)
    with pytest.raises(EproductError, match="rebuild them"):
        partitions.open_partitions(open_index(copy))


def test_settings_round_trip_and_one_stage_one_source(index):
    s = SearchSettings(k=10, partition_probes=5)
    assert SearchSettings.from_dict(s.to_dict()) == s
    with pytest.raises(EproductError, match="stage 1 comes from one"):
        search.search(index, np.ones((1, 32), np.float32), s.replace(table_probes=2))


def test_cli_builds_tunes_and_searches_with_partitions(tmp_path, capsys):
    x, q = clusters(3000, 32, 20, seed=5)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "q.npy", q)
    idx = tmp_path / "idx"
    code = main(["index", "build", "--vectors", str(tmp_path / "x.npy"), "--out", str(idx), "--partitions", "8", "-q"])
    assert code == 0
    out = capsys.readouterr().out
    assert "8 partitions" in out and "default search settings" in out
    assert main(["index", "verify", str(idx)]) == 0
    assert main(["index", "partitions", str(idx), "--lists", "4"]) == 0
    assert "centroid sketch" in capsys.readouterr().out
    assert json.loads((idx / "manifest.json").read_text())["partitions"]["lists"] == 4
    capsys.readouterr()
    assert main(["index", "info", str(idx)]) == 0 and "k-means partitions: 4 lists" in capsys.readouterr().out
    args = ["search", "--index", str(idx), "--vectors", str(tmp_path / "q.npy"), "--partition-probes", "4"]
    assert main([*args, "--out", str(tmp_path / "r.csv")]) == 0
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 20


def test_explain_and_why_missed_name_an_unprobed_partition(index):
    from eproduct_core.why_missed import why_missed

    x, q = _data()
    made = partitions.partitions_of(index)
    settings = FLAT[0].replace(partition_probes=1)
    truth = exact(x, q)
    for i in range(len(q)):
        first = made.lists_for(q[i : i + 1], 1)[0, 0]
        members = set(made.rows[made.offsets[first] : made.offsets[first + 1]].tolist())
        outside = [int(r) for r in truth[i] if int(r) not in members]
        if not outside:
            continue
        explained = search.explain(index, q[i], outside, settings)
        assert all(e.partition_rank is not None and e.partition_rank >= 1 for e in explained)
        frame = why_missed(index, q[i], [index.ids([r])[0] for r in outside], settings)
        assert frame["reason"].str.contains("beyond the 1 probed").all(), frame["reason"].tolist()
        return
    pytest.fail("every query's true neighbours sat in its first partition: the test data is too easy")


def test_an_opened_index_searches_its_rebuilt_partitions_not_the_ones_it_searched_before(tmp_path):
    """search.py keeps each opened index's kernel arguments between queries; rebuilding the partitions of
    that same opened index must not leave a search reading the old lists."""
    x, q = _data(1500, 16, seed=3)
    folder = build_index(x, None, tmp_path / "idx", bits=128)
    opened = open_index(folder)
    settings = SearchSettings(k=10, probe_bits=64, candidates=300, shortlist=100, rerank=20, partition_probes=2)
    partitions.build_partitions(opened, 4)
    search.search(opened, q, settings)
    partitions.build_partitions(opened, 32)
    again = search.search(opened, q, settings)
    fresh = search.search(open_index(folder), q, settings)
    assert [r.rows.tolist() for r in again] == [r.rows.tolist() for r in fresh]
    assert max(r.candidates for r in again) > 0


def test_both_kernels_probe_the_same_lists_at_exact_ties_and_near_ties():
    rng = np.random.default_rng(5)
    dim = 37  # not a multiple of the eight lanes
    centroids = rng.standard_normal((40, dim)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    centroids[10] = centroids[3]  # an exact tie: the lower list wins
    nudged = centroids[3].astype(np.float16)
    nudged[0] = np.nextafter(nudged[0], np.float16(2))  # one float16 step away: inside the float32 pass's slack
    centroids[20] = nudged.astype(np.float32)
    made = partitions.Partitions(centroids, np.arange(40), np.arange(41), np.zeros((1, 40), np.uint64))
    queries = np.vstack([centroids[3] + 1e-3 * rng.standard_normal((20, dim)), rng.standard_normal((20, dim))])
    queries = queries.astype(np.float32)
    for probes in (1, 2, 3, 7, 40):
        compiled = made.lists_for(queries, probes, "numba")
        plain = made.lists_for(queries, probes, "numpy")
        assert compiled.tolist() == plain.tolist()
        for query, chosen in zip(queries, compiled, strict=True):
            assert sorted(made.ranking(query)[:probes].tolist()) == chosen.tolist()
    near = made.lists_for(queries[:20], 1, "numba")[:, 0]
    assert set(near.tolist()) <= {3, 20} and 10 not in near  # the duplicate of list 3 never beats it


def test_list_sums_are_np_add_at_sums_with_empty_lists_zero():
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((500, 7)).astype(np.float32)
    labels = rng.integers(0, 9, 500)
    labels[labels == 4] = 5  # list 4 empty
    expected = np.zeros((10, 7), dtype=np.float32)
    np.add.at(expected, labels, rows)
    sums = partitions._list_sums(rows, labels, 10)
    assert sums.dtype == np.float32 and sums.shape == (10, 7)
    np.testing.assert_allclose(sums, expected, rtol=1e-6, atol=1e-6)
    assert not sums[4].any() and not sums[9].any()


@pytest.mark.parametrize("rank", [1, 4, 8, 16, 47])
def test_a_centroid_sketch_probes_exactly_the_lists_of_full_scoring(rank):
    """Centroids near an 8-d subspace (where a sketch rules most lists out), with an exact tie and a one-step
    float16 neighbour: with any sketch rank, the compiled kernel probes the numpy full scoring's lists."""
    rng = np.random.default_rng(rank)
    dim, lists = 48, 300
    basis = np.linalg.qr(rng.standard_normal((dim, 8)))[0].T
    centroids = rng.standard_normal((lists, 8)) @ basis + 0.01 * rng.standard_normal((lists, dim))
    centroids = (centroids / np.linalg.norm(centroids, axis=1, keepdims=True)).astype(np.float32)
    centroids[10] = centroids[3]
    nudged = centroids[3].astype(np.float16)
    nudged[0] = np.nextafter(nudged[0], np.float16(2))
    centroids[20] = nudged.astype(np.float32)
    made = partitions.Partitions(
        centroids, np.arange(lists), np.arange(lists + 1), np.zeros((1, lists), np.uint64), rank
    )
    assert made.sketch.rank == rank
    queries = np.vstack([centroids[3] + 1e-3 * rng.standard_normal((20, dim)), rng.standard_normal((20, dim))])
    queries = np.vstack([queries, centroids[:20]]).astype(np.float32)
    for probes in (1, 2, 5, 30, lists):
        compiled = made.lists_for(queries, probes, "numba")
        assert compiled.tolist() == made.lists_for(queries, probes, "numpy").tolist()


def test_the_sketch_rank_is_chosen_where_it_pays_and_kept_in_the_manifest(tmp_path):
    rng = np.random.default_rng(0)
    low = rng.standard_normal((4000, 8)) @ rng.standard_normal((8, 128)) + 0.05 * rng.standard_normal((4000, 128))
    low = (low / np.linalg.norm(low, axis=1, keepdims=True)).astype(np.float32)
    full = rng.standard_normal((4000, 128)).astype(np.float32)
    full /= np.linalg.norm(full, axis=1, keepdims=True)
    words = np.zeros((4000, partitions.PREFIX_WORDS), np.uint64)
    assert partitions.make_partitions(low, words, 128).rank > 0
    index = open_index(build_index(low, None, tmp_path / "idx", bits=64))
    made, _ = partitions.build_partitions(index, 128)
    assert json.loads((tmp_path / "idx" / "manifest.json").read_text())["partitions"]["sketch_rank"] == made.rank > 0
    assert partitions.partitions_of(open_index(tmp_path / "idx")).sketch.rank == made.rank
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    manifest["partitions"]["sketch_rank"] = "many"  # a hand-edited manifest: a clear message, not a traceback
    (tmp_path / "idx" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EproductError, match="partitions cannot be read"):
        partitions.open_partitions(open_index(tmp_path / "idx"))
    assert partitions.make_partitions(full, words, 128).rank == 0
    sketch = centroid_sketch.make_sketch(partitions.fit_centroids(low, 128).astype(np.float16), 8)
    exact = partitions.fit_centroids(low, 128).astype(np.float16).astype(np.float64) @ low[:50].T.astype(np.float64)
    for i in range(50):
        top = np.argsort(-exact[:, i], kind="stable")[:4]
        assert set(top.tolist()) <= set(centroid_sketch.survivors(sketch, low[i], 4).tolist())


def test_shares_split_the_lists_proportionally_and_never_past_a_groups_rows():
    shares = partitions._shares(np.array([100, 1, 0, 50, 49]), 40)
    assert shares.sum() == 40 and shares[1] <= 1 and shares[2] == 0
    assert shares[0] >= shares[3] >= shares[4] and abs(shares[0] - 20) <= 1
    assert partitions._shares(np.array([3, 2]), 5).tolist() == [3, 2]


def test_many_lists_are_fitted_as_a_tree_whose_rows_probe_back_to_the_flat_scan(tmp_path, monkeypatch):
    """Past TREE_FROM lists the k-means is two-level: each row lands in the nearest list of its TREE_PROBES
    nearest coarse groups, and probing every list still gives the flat scan's rows."""
    monkeypatch.setattr(partitions, "TREE_FROM", 16)
    x, q = _data(3000, 32, 4)
    centroids, groups = partitions._fit(x, 64, 0)
    assert groups is not None and centroids.shape == (64, 32) and groups.offsets[-1] == 64
    labels = partitions._tree_assign(x, centroids, groups)
    near = np.argsort(-(x @ groups.supers.T), axis=1, kind="stable")[:, : partitions.TREE_PROBES]
    for row in range(0, 3000, 97):
        allowed = np.concatenate([np.arange(groups.offsets[g], groups.offsets[g + 1]) for g in near[row]])
        scores = centroids[allowed] @ x[row]
        assert labels[row] in allowed and np.isclose(scores.max(), centroids[labels[row]] @ x[row], rtol=0, atol=1e-5)
    index = open_index(build_index(x, None, tmp_path / "idx", bits=128))
    made, _ = partitions.build_partitions(index, 64)
    assert made.lists == 64 and len(made.rows) == 3000
    flat = SearchSettings(k=10, probe_bits=64, candidates=400, shortlist=120, rerank=40)
    for a, b in zip(
        search.search(index, q, flat), search.search(index, q, flat.replace(partition_probes=64)), strict=True
    ):
        assert a.rows.tolist() == b.rows.tolist()
