"""search.py: sharded search equals brute force over the same codes; seed cutoff mode equals eq. (4)."""

from fractions import Fraction

import numpy as np
import pytest

from eproduct_core import lsh
from eproduct_core.errors import EproductError
from eproduct_core.index import build_index, open_index, unit_float16
from eproduct_core.search import explain, resolve, search
from eproduct_core.settings import SearchSettings as S


def clustered(n=1200, d=32, seed=0, spread=0.15):
    """Groups of 4 near-duplicates around random centres: real neighbour structure at small scale."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n // 4, d))
    x = centres[np.arange(n) % (n // 4)] + spread * rng.standard_normal((n, d))
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def data():
    x = clustered()
    q = x[:12] + 0.1 * np.random.default_rng(1).standard_normal((12, x.shape[1])).astype(np.float32)
    return x, q


@pytest.fixture(scope="module")
def built(tmp_path_factory, data):
    x, _ = data
    root = tmp_path_factory.mktemp("idx")
    ids = [f"item{i}" for i in range(len(x))]
    one = open_index(build_index(x, ids, root / "one", bits=128, shard_size=len(x), seed=7))
    many = open_index(build_index(x, ids, root / "many", bits=128, shard_size=24, seed=7))
    return one, many


def brute_force_hamming(index, x, q, bits, k):
    """Direct numpy: unpacked bits, Hamming to every item, ranked by (distance, row)."""
    h = lsh.unpack(lsh.encode(x, index.planes), index.bits)[:, :bits].astype(np.int64)
    hq = lsh.unpack(lsh.encode(q[None, :], index.planes), index.bits)[0, :bits].astype(np.int64)
    dist = np.abs(h - hq).sum(axis=1)
    order = np.lexsort((np.arange(len(x)), dist))[:k]
    return order, dist[order]


@pytest.mark.parametrize("bits", [20, 64, 100, 128])
def test_sharded_exact_hamming_ranking_equals_brute_force(built, data, bits):
    x, q = data
    one, many = built
    assert len(many.manifest["shards"]) == 50
    for index in (one, many):
        results = search(index, q, S(bits=bits, k=30, rerank=0, probe_bits=bits))
        for i, result in enumerate(results):
            rows, dist = brute_force_hamming(index, x, q[i], bits, 30)
            np.testing.assert_array_equal(result.rows, rows)
            np.testing.assert_array_equal(result.hamming, dist)
            assert result.ids == [f"item{r}" for r in rows]


def test_one_shard_and_fifty_shards_agree_in_every_mode(built, data):
    _, q = data
    one, many = built
    for options in (
        {},
        {"rerank": 0},
        {"mode": "cutoff", "bits": 20, "cutoff": 0.1, "k": None},
        {"bits": 48, "rerank": 40, "shortlist": 150, "candidates": 300},
        {"bits": 48, "rerank": 40, "shortlist": 40, "candidates": 100},
    ):
        for a, b in zip(search(one, q, S(**options)), search(many, q, S(**options)), strict=False):
            assert a.ids == b.ids
            np.testing.assert_array_equal(a.hamming, b.hamming)
            np.testing.assert_array_equal(a.code_cosine, b.code_cosine)
            assert a.candidates == b.candidates


def test_seed_cutoff_mode_returns_exactly_what_eq4_admits(built, data):
    x, q = data
    _, index = built
    h = lsh.unpack(lsh.encode(x, index.planes), 128)[:, :20].astype(np.int64)
    total = 0
    for i, result in enumerate(search(index, q, S(mode="cutoff", bits=20, cutoff=0.1, k=None))):
        hq = lsh.unpack(lsh.encode(q[i : i + 1], index.planes), 128)[0, :20].astype(np.int64)
        c, a, b = h @ hq, h.sum(axis=1), hq.sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            dist = np.where(a * b > 0, 1.0 - c / np.sqrt(a * b), 1.0)
        admitted = np.flatnonzero(dist < 0.1)
        expected = admitted[np.lexsort((admitted, dist[admitted]))]
        np.testing.assert_array_equal(result.rows, expected)
        np.testing.assert_array_equal(result.code_cosine, dist[expected])
        assert result.candidates == len(expected) and result.cosine is None
        total += len(expected)
    assert total > 12  # the near-duplicates are admitted; the test is not vacuous
    truncated = search(index, q, S(mode="cutoff", bits=20, cutoff=0.1, k=2))
    assert all(len(r.rows) <= 2 for r in truncated)


def test_topk_rerank_returns_exact_cosine_order_of_the_candidates(built, data):
    x, q = data
    one, _ = built
    vectors16 = unit_float16(x).astype(np.float32)  # what the index stores
    for i, result in enumerate(search(one, q, S(k=10, rerank=len(x), probe_bits=128))):
        exact = lsh.cosine_distance(q[i], vectors16)
        expected = np.lexsort((np.arange(len(x)), exact))[:10]
        np.testing.assert_array_equal(result.rows, expected)
        np.testing.assert_allclose(result.cosine, exact[expected], atol=1e-6)  # float16 data: 1e-6 is noise


def test_exact_rerank_takes_the_weighted_hamming_best_of_the_shortlist(built, data):
    x, q = data
    one, _ = built
    vectors16 = unit_float16(x).astype(np.float32)  # what the index stores
    words = lsh.to_words(lsh.encode(x, one.planes))
    for i, result in enumerate(search(one, q, S(bits=96, k=10, rerank=40, shortlist=len(x), probe_bits=96))):
        weighted = lsh.weighted_hamming(one.project(q[i : i + 1])[0], words, 96)
        reranked = np.lexsort((np.arange(len(x)), weighted))[:40]
        exact = lsh.cosine_distance(q[i], vectors16[reranked])
        np.testing.assert_array_equal(result.rows, reranked[np.lexsort((reranked, exact))][:10])
        assert result.candidates == len(x)


def test_a_shortlist_no_longer_than_the_rerank_skips_the_weighted_stage(built, data):
    x, q = data
    one, _ = built
    vectors16 = unit_float16(x).astype(np.float32)  # what the index stores
    for i, result in enumerate(search(one, q, S(bits=96, k=10, rerank=40, shortlist=40, probe_bits=96))):
        rows, _ = brute_force_hamming(one, x, q[i], 96, 40)
        exact = lsh.cosine_distance(q[i], vectors16[rows])
        np.testing.assert_array_equal(result.rows, rows[np.lexsort((rows, exact))][:10])


def test_default_search_finds_the_near_duplicates(built, data):
    x, q = data
    one, _ = built
    results = search(one, q, S(k=4))
    for i, result in enumerate(results):
        assert result.cosine is not None and np.all(np.diff(result.cosine) >= 0)
        group = {f"item{r}" for r in range(i % 300, len(x), 300)}
        assert set(result.ids) == group


def test_topk_cutoff_filters_on_exact_cosine_or_code_cosine(built, data):
    _, q = data
    one, _ = built
    for result in search(one, q, S(k=10, rerank=50, cutoff=0.05)):
        assert len(result.rows) < 10 and np.all(result.cosine < 0.05)
    for result in search(one, q, S(k=10, rerank=0, cutoff=0.2)):
        assert np.all(result.code_cosine < 0.2)


def test_hash_length_change_needs_no_rebuild(tmp_path, data):
    x, q = data
    long_index = open_index(build_index(x, None, tmp_path / "long", bits=256, seed=3))
    short_index = open_index(build_index(x, None, tmp_path / "short", bits=24, seed=3))
    for a, b in zip(
        search(long_index, q, S(bits=24, rerank=0, k=20, probe_bits=24)),
        search(short_index, q, S(k=20, rerank=0)),
        strict=False,
    ):
        assert a.ids == b.ids
        np.testing.assert_array_equal(a.hamming, b.hamming)


def test_explain_ranks_and_thresholds_agree_with_search(built, data):
    _, q = data
    one, _ = built
    result = search(one, q[:1], S(bits=64, k=40, rerank=0, probe_bits=64))[0]
    rows = result.rows[[0, 5, 39]]
    for position, info in zip([0, 5, 39], explain(one, q[0], rows, S(bits=64, cutoff=0.1)), strict=False):
        assert info.hamming_rank == position
        assert info.hamming == result.hamming[position]
        assert info.code_cosine == pytest.approx(result.code_cosine[position])
        assert info.shard == 0 and info.id == result.ids[position]
        if info.shortest_bits is not None:
            admitted = search(one, q[:1], S(mode="cutoff", bits=info.shortest_bits, cutoff=0.1, k=None))[0]
            assert info.row in admitted.rows
            if info.shortest_bits > 1:
                earlier = search(one, q[:1], S(mode="cutoff", bits=info.shortest_bits - 1, cutoff=0.1, k=None))[0]
                assert info.row not in earlier.rows


def test_queries_of_another_dim_or_kind_are_refused(built, data):
    _, q = data
    one, _ = built
    with pytest.raises(EproductError, match=r"dimension 31 .*dimension 32"):
        search(one, q[:, :31], S())
    with pytest.raises(EproductError, match=r"'metric' embeddings .*'external' embeddings"):
        one.check_compatible("metric", 32)
    one.check_compatible("external", 32)
    with pytest.raises(EproductError, match="bits = 129: must be between 1 and the index.s stored 128"):
        search(one, q, S(bits=129))


def test_parallel_queries_equal_serial(built, data):
    _, q = data
    one, _ = built
    many = np.concatenate([q] * 12)  # 144 queries: three parts over two threads (search.PART_QUERIES)
    for a, b in zip(search(one, many, S(), threads=2), search(one, many, S(), threads=1), strict=False):
        assert a.ids == b.ids


def test_smallest_breaks_ties_by_row_like_a_stable_sort():
    from eproduct_core.search_kernels import smallest

    values = np.random.default_rng(3).integers(0, 12, size=200_000).astype(np.uint8)
    for count in (1, 17, 5000, 100_000):
        expected = np.sort(np.lexsort((np.arange(len(values)), values))[:count])
        np.testing.assert_array_equal(smallest(values, count, 11), expected)


KERNELS = ["numpy", "numba"]


@pytest.mark.parametrize("probe", [24, 64, 100, 128, 192])
@pytest.mark.parametrize("kernel", KERNELS)
def test_candidate_scan_kernels_pick_exactly_the_nearest_prefixes(tmp_path, data, probe, kernel):
    from eproduct_core import search_kernels

    x, q = data
    index = open_index(build_index(x, None, tmp_path / "idx", bits=256, seed=7))
    qwords = index.encode(q)
    for count in (1, 100, 700, len(x)):
        for qw in qwords:
            dist = lsh.hamming(qw, index.words, probe)
            expected = np.sort(np.lexsort((np.arange(len(dist)), dist))[:count])  # ties: lowest rows
            np.testing.assert_array_equal(search_kernels.scan(index.columns(probe), qw, probe, count, kernel), expected)


@pytest.mark.parametrize("kernel", KERNELS)
def test_candidate_scan_breaks_massive_ties_by_lowest_row(kernel):
    from eproduct_core import search_kernels

    rng = np.random.default_rng(5)
    columns = rng.choice(np.array([0, 1, 3, 2**63], dtype=np.uint64), size=(2, 100_000))  # 16 distinct codes
    query = np.array([1, 0], dtype=np.uint64)
    dist = lsh.popcount(columns.T ^ query)
    for count in (1, 999, 6_000, 30_000):
        expected = np.sort(np.lexsort((np.arange(len(dist)), dist))[:count])
        np.testing.assert_array_equal(search_kernels.scan(columns, query, 128, count, kernel), expected)


def test_numba_scan_widens_a_short_radius_and_stays_exact(built, data, monkeypatch):
    from eproduct_core import search_kernels

    assert search_kernels.numba_available(), "numba is a hard dependency: install it (pip install numba)"
    _, q = data
    one, _ = built
    monkeypatch.setattr(search_kernels, "RADIUS_MARGIN", 0.05)  # the sample radius now admits far too few rows
    for qw in one.encode(q):
        dist = lsh.hamming(qw, one.words, 64)
        rows = search_kernels.scan(one.columns(64), qw, 64, 300, "numba")
        np.testing.assert_array_equal(rows, np.sort(np.lexsort((np.arange(len(dist)), dist))[:300]))


def test_compiled_and_numpy_kernels_return_the_same_results(built, data):
    _, q = data
    one, _ = built
    results = {}
    for kernel in KERNELS:
        one.kernel = kernel
        try:
            results[kernel] = [
                search(one, q, S(**options))
                for options in (
                    {},
                    {"bits": 100, "rerank": 30, "shortlist": 200, "candidates": 400, "probe_bits": 64},
                    {"bits": 96, "rerank": 0, "k": 25},
                    {"rerank": 20, "shortlist": 20},
                )
            ]
        finally:
            one.kernel = "auto"
    for numpy_results, numba_results in zip(results["numpy"], results["numba"], strict=False):
        for a, b in zip(numpy_results, numba_results, strict=False):
            assert a.ids == b.ids and a.candidates == b.candidates
            np.testing.assert_array_equal(a.hamming, b.hamming)
            if a.cosine is not None:
                np.testing.assert_allclose(a.cosine, b.cosine, atol=1e-6)


def test_search_without_numba_falls_back_to_numpy_with_the_same_results(built, data, monkeypatch):
    from eproduct_core import search_kernels

    _, q = data
    one, _ = built
    compiled = search(one, q, S(k=10))
    monkeypatch.setattr(search_kernels, "_kernels", None)  # as if `import numba` had failed
    monkeypatch.setattr(search_kernels, "_kernels_checked", True)
    monkeypatch.setattr(search_kernels, "_prepared", False)
    assert not search_kernels.prepare()
    for a, b in zip(search(one, q, S(k=10), threads=2), compiled, strict=False):
        assert a.ids == b.ids
        np.testing.assert_allclose(a.cosine, b.cosine, atol=1e-6)


@pytest.mark.parametrize("kernel", KERNELS)
def test_probed_search_is_consistent_and_close_to_exact(built, data, kernel):
    x, q = data
    one, _ = built
    one.kernel = kernel
    try:
        probed = search(one, q, S(k=20, rerank=0, probe_bits=64, candidates=200))
    finally:
        one.kernel = "auto"
    exact = search(one, q, S(k=20, rerank=0, probe_bits=128))
    overlap = []
    for i, (a, b) in enumerate(zip(probed, exact, strict=False)):
        rows, dist = brute_force_hamming(one, x, q[i], 128, len(x))
        full = np.empty(len(x), np.int64)
        full[rows] = dist
        np.testing.assert_array_equal(a.hamming, full[a.rows])
        assert np.all(np.diff(a.hamming) >= 0)
        overlap.append(len(set(a.rows) & set(b.rows)) / 20)
    assert np.mean(overlap) >= 0.8


# -- issue 12: wide codes, k beyond the re-rank, same bits from both kernels, exact cutoffs, stored defaults --


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """4,000 x 64-d rows (an index under 8,192 rows: no prefix stage) stored at 1,024 bits."""
    rng = np.random.default_rng(11)
    x = clustered(n=4000, d=64, seed=5)
    q = x[::400] + 0.2 * rng.standard_normal((10, 64)).astype(np.float32)
    index = open_index(build_index(x, None, tmp_path_factory.mktemp("wide") / "idx", bits=1024, seed=3))
    return index, x, q


@pytest.mark.parametrize("bits", [512, 1024])
@pytest.mark.parametrize("kernel", KERNELS)
def test_wide_codes_rank_exactly_like_brute_force_hamming(wide, bits, kernel):
    index, x, q = wide
    index.kernel = kernel
    try:
        exact = search(index, q, S(bits=bits, k=10, rerank=0, probe_bits=bits))
        default = search(index, q, S(bits=bits, k=10, probe_bits=bits))  # with the weighted and exact re-ranks
    finally:
        index.kernel = "auto"
    recall = []
    for i, result in enumerate(exact):
        rows, dist = brute_force_hamming(index, x, q[i], bits, 10)
        np.testing.assert_array_equal(result.rows, rows)
        np.testing.assert_array_equal(result.hamming, dist)
        assert dist.max() > 0 and len(result.rows) == 10
        truth = np.argsort(lsh.cosine_distance(q[i], x), kind="stable")[:10]
        recall.append(len(set(default[i].rows) & set(truth)) / 10)
    assert np.mean(recall) > 0.9  # 0.10 when distances wrapped at 255


@pytest.mark.parametrize("kernel", KERNELS)
def test_k_beyond_the_rerank_depth_is_never_capped(built, data, kernel):
    one, _ = built
    x, q = data
    one.kernel = kernel
    try:
        for options in ({"k": 300}, {"k": 300, "rerank": 100}, {"k": 300, "rerank": 100, "shortlist": 100}):
            assert resolve(one, S(**options)).rerank == 300
            for result in search(one, q[:3], S(**options)):
                assert len(result.ids) == 300 and len(set(result.rows)) == 300
                assert np.all(np.diff(result.cosine) >= 0)
        cutoff = search(one, q[:2], S(mode="cutoff", bits=128, cutoff=1.5, k=300, rerank=100))
        assert all(len(r.ids) == 300 and np.all(np.diff(r.cosine) >= 0) for r in cutoff)
    finally:
        one.kernel = "auto"


NEAR_TIED_MODES = [
    {"k": 10},  # stages 1-4, weighted stage
    {"k": 10, "rerank": 40, "shortlist": 40},  # exact re-rank of the Hamming best, no weighted stage
    {"k": 10, "rerank": 0},
    {"k": 10, "rerank": 60, "probe_bits": 32, "candidates": 300, "shortlist": 200},  # a probed prefix stage
    {"mode": "cutoff", "bits": 64, "cutoff": 0.6, "k": 10, "rerank": 50},
    {"mode": "cutoff", "bits": 20, "cutoff": 0.3, "k": None, "rerank": 0},
]


@pytest.mark.parametrize("options", NEAR_TIED_MODES)
def test_both_kernels_return_the_same_results_on_near_tied_data(tmp_path, options):
    rng = np.random.default_rng(2)
    u = rng.standard_normal(48)
    x = (u + 1e-3 * rng.standard_normal((1500, 48))).astype(np.float32)  # cosines within ~1e-6 of each other
    q = (u + 1e-3 * rng.standard_normal((20, 48))).astype(np.float32)
    index = open_index(build_index(x, None, tmp_path / "idx", bits=128, seed=1))
    results = {}
    for kernel in KERNELS:
        index.kernel = kernel
        results[kernel] = search(index, q, S(**options))
    for a, b in zip(results["numba"], results["numpy"], strict=True):
        np.testing.assert_array_equal(a.rows, b.rows)
        np.testing.assert_array_equal(a.hamming, b.hamming)
        if a.cosine is not None:
            np.testing.assert_array_equal(a.cosine, b.cosine)  # the same bits, not merely close
            assert a.cosine.max() - a.cosine.min() < 1e-4  # near ties indeed


def exactly_below(both, a, b, cutoff):
    """Eq. (4) < cutoff in exact rational arithmetic: (1 - c) sqrt(ab) < both."""
    t = 1 - Fraction(str(cutoff))
    if a * b == 0:
        return 1 < Fraction(str(cutoff))
    return t < 0 or (t == 0 and both > 0) or (t > 0 and Fraction(both) ** 2 > t * t * a * b)


@pytest.mark.parametrize("cutoff", [0.05, 0.1, 0.2, 0.3, 0.4])
def test_cutoff_mode_decides_exact_boundaries_by_strict_less_than(built, data, cutoff):
    one, _ = built
    x, q = data
    boundary = 0
    for bits in (20, 40, 100):
        codes = lsh.unpack(lsh.encode(x, one.planes), one.bits)[:, :bits].astype(np.int64)
        for i, result in enumerate(search(one, q, S(mode="cutoff", bits=bits, cutoff=cutoff, k=None, rerank=0))):
            qbits = lsh.unpack(lsh.encode(q[i : i + 1], one.planes), one.bits)[0, :bits].astype(np.int64)
            both, weights, qweight = codes @ qbits, codes.sum(axis=1), int(qbits.sum())
            admitted = [r for r in range(len(x)) if exactly_below(both[r], weights[r], qweight, cutoff)]
            assert sorted(result.rows.tolist()) == admitted
            t = 1 - Fraction(str(cutoff))  # code cosine exactly == cutoff: both^2 q^2 == p^2 a b
            at = (both * both * t.denominator**2 == t.numerator**2 * weights * qweight) & (both > 0)
            boundary += int(np.count_nonzero(at))
    assert boundary > 0  # pairs exactly at the cutoff occurred (where float rounding used to decide)


def test_topk_code_cosine_cutoff_is_exact_too(built, data):
    one, _ = built
    x, q = data
    for bits in (20, 40, 100):
        codes = lsh.unpack(lsh.encode(x, one.planes), one.bits)[:, :bits].astype(np.int64)
        for i, result in enumerate(search(one, q, S(bits=bits, k=len(x), rerank=0, cutoff=0.1))):
            qbits = lsh.unpack(lsh.encode(q[i : i + 1], one.planes), one.bits)[0, :bits].astype(np.int64)
            both, weights, qweight = codes @ qbits, codes.sum(axis=1), int(qbits.sum())
            admitted = [r for r in range(len(x)) if exactly_below(both[r], weights[r], qweight, 0.1)]
            assert sorted(result.rows.tolist()) == admitted  # e.g. 1 - 9/10 is not below 0.1


def test_values_beyond_float16_range_are_still_found(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((300, 16)).astype(np.float32)
    x[7] *= 1e6  # finite, but beyond float16's 65,504: inf when stored raw, and the row vanished
    x[8] *= 1e-9  # below float16's smallest: zero when stored raw
    index = open_index(build_index(x, None, tmp_path / "idx", bits=64))
    assert np.isfinite(index.vectors.astype(np.float32)).all()
    for row in (7, 8):
        result = search(index, x[row], S(k=3, rerank=50))[0]
        assert result.rows[0] == row and result.cosine[0] < 1e-3


def test_stored_default_settings_fill_the_none_fields(tmp_path, data):
    import json

    x, q = data
    path = build_index(x, None, tmp_path / "idx", bits=128)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["search"] = S(bits=64, rerank=30, shortlist=90, candidates=500, probe_bits=32).to_dict()
    (path / "manifest.json").write_text(json.dumps(manifest))
    index = open_index(path)
    tuned = resolve(index, S(k=10))
    assert (tuned.bits, tuned.rerank, tuned.shortlist, tuned.candidates, tuned.probe_bits) == (64, 30, 90, 500, 32)
    assert resolve(index, S(k=10, bits=128, rerank=0)).bits == 128  # given fields win
    assert resolve(index, S(mode="cutoff", k=None)).bits == 128  # tuned for top-k: cutoff mode keeps the constants
    explicit = S(k=10, bits=64, rerank=30, shortlist=90, candidates=500, probe_bits=32)
    for a, b in zip(search(index, q, S(k=10)), search(index, q, explicit), strict=True):
        np.testing.assert_array_equal(a.rows, b.rows)
    manifest["search"] = {"rerank": -1}
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EproductError, match="stored search settings"):
        search(open_index(path), q, S())


def test_an_opened_index_whose_stored_settings_change_searches_with_the_new_ones(tmp_path, data):
    """The per-index memo of resolved settings is keyed on the stored defaults: a tune written into the
    opened index's manifest takes effect on its next search."""
    from eproduct_core import search as search_module

    x, q = data
    index = open_index(build_index(x, None, tmp_path / "idx", bits=128))
    before = search_module._plan(index, S(k=10))
    index.manifest["search"] = S(bits=64, rerank=30, shortlist=90, candidates=500, probe_bits=32).to_dict()
    after = search_module._plan(index, S(k=10))
    assert (before.bits, after.bits, after.rerank, after.shortlist) == (128, 64, 30, 90)
    explicit = S(k=10, bits=64, rerank=30, shortlist=90, candidates=500, probe_bits=32)
    for a, b in zip(search(index, q, S(k=10)), search(index, q, explicit), strict=True):
        np.testing.assert_array_equal(a.rows, b.rows)
        np.testing.assert_array_equal(a.cosine, b.cosine)


def test_untuned_defaults_come_from_settings_py(built):
    from eproduct_core import settings

    one, _ = built
    plan = resolve(one, S())
    assert (plan.bits, plan.rerank, plan.probe_bits) == (128, settings.DEFAULT_RERANK, 128)
    assert plan.shortlist == max(settings.DEFAULT_SHORTLIST, 6 * settings.DEFAULT_RERANK)
    assert plan.candidates == max(settings.DEFAULT_CANDIDATES, 4 * plan.shortlist)
    assert resolve(one, S(mode="cutoff", k=None)).cutoff == settings.SEED_CUTOFF
    assert not hasattr(one, "search")  # search lives in search.py, not on the storage object


def test_code_cosines_to_every_row_match_eq4(built, data):
    from eproduct_core.search import code_cosines

    one, _ = built
    x, q = data
    codes = lsh.unpack(lsh.encode(x, one.planes), one.bits)[:, :20].astype(np.int64)
    qbits = lsh.unpack(lsh.encode(q[:1], one.planes), one.bits)[0, :20].astype(np.int64)
    expected = lsh.code_cosine_from_counts(codes @ qbits, codes.sum(axis=1), int(qbits.sum()))
    np.testing.assert_array_equal(code_cosines(one, q[0], 20), expected)
    with pytest.raises(EproductError, match="bits = 200"):
        code_cosines(one, q[0], 200)
