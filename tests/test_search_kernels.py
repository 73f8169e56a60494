"""search_kernels.py / numba_kernels.py: wide codes never wrap, both kernels give the same bits, a kernel
asked for by name runs or refuses."""

import numpy as np
import pytest

from eproduct_core import lsh, numba_kernels, search_kernels
from eproduct_core.errors import EproductError
from eproduct_core.index import unit_float16

KERNELS = ["numba", "numpy"]


@pytest.mark.parametrize("bits", [512, 1024, 4096])
@pytest.mark.parametrize("kernel", KERNELS)
def test_scan_of_long_prefixes_never_wraps(bits, kernel):
    """Prefix distances above 255 bits (uint8 once) keep their order: the scan equals a direct ranking."""
    rng = np.random.default_rng(bits)
    codes = lsh.pack(rng.random((3000, bits)) < 0.5)
    words = lsh.to_words(codes)
    columns = np.ascontiguousarray(words.T)
    query = words[17] ^ lsh.to_words(lsh.pack(rng.random((1, bits)) < 0.3))[0]  # row 17 is its nearest
    dist = lsh.hamming(query, words, bits)
    assert dist.max() > 255  # distances that wrapped in uint8
    for count in (10, 700, 2000):  # 2000 > rows / 4: every row is collected, the full range of distances
        expected = np.sort(np.lexsort((np.arange(len(dist)), dist))[:count])
        got = search_kernels.scan(columns, query, bits, count, kernel, search_kernels.radius_sample(columns))
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("bits", [64, 100, 128, 192, 200, 256, 320])
def test_every_scan_loop_equals_a_direct_ranking(bits):
    """Each loop of the compiled scan (one, two, three, four whole words, the masked block loop), over several
    blocks of rows and a partial last one, keeps exactly the nearest rows (ties: lowest row)."""
    rng = np.random.default_rng(bits)
    words = lsh.to_words(lsh.pack(rng.random((9100, 320)) < 0.5))  # 9,100 rows: two whole blocks and a part
    columns = np.ascontiguousarray(words.T[: -(-bits // 64)])
    query = words[8999] ^ lsh.to_words(lsh.pack(rng.random((1, 320)) < 0.2))[0]  # a row in the last block
    dist = lsh.hamming(query, words, bits)
    for count in (1, 50, 3000):
        expected = np.sort(np.lexsort((np.arange(len(dist)), dist))[:count])
        for kernel in KERNELS:
            got = search_kernels.scan(columns, query, bits, count, kernel, search_kernels.radius_sample(columns))
            np.testing.assert_array_equal(got, expected)
    assert 8999 in search_kernels.scan(columns, query, bits, 1, "numba")


@pytest.mark.parametrize("bits", [64, 100, 128, 192, 200, 256])
def test_a_batch_sharing_one_pass_keeps_each_querys_nearest_prefixes(bits):
    """numba_kernels.shared_prefixes (stage 1 of a batch's queries in one pass over the columns) returns, per
    query, exactly the single-query scan's rows: over several blocks and a partial one, for each prefix loop,
    and where the first radius admits too few rows (margin 0.3) and the query is finished alone."""
    rng = np.random.default_rng(bits)
    words = lsh.to_words(lsh.pack(rng.random((9100, 256)) < 0.5))
    columns = np.ascontiguousarray(words.T[: -(-bits // 64)])
    sample = search_kernels.radius_sample(columns)
    flips = lsh.to_words(lsh.pack(rng.random((11, 256)) < 0.25))
    queries = words[rng.choice(9100, 11, replace=False)] ^ flips  # 11 queries: more than SCAN_QUERIES
    for count, margin in ((50, 1.3), (600, 1.3), (600, 0.3), (3000, 1.3)):
        shape = (len(queries), columns.shape[1])
        scratch = (np.empty(shape, np.int64), np.empty(shape, np.uint16))
        shared = numba_kernels.shared_prefixes(columns, sample, queries, bits, count, margin, scratch)
        for q, query in enumerate(queries):
            alone = numba_kernels.nearest_prefixes(
                columns, sample, query, bits, count, margin, (scratch[0][0], scratch[1][0])
            )
            np.testing.assert_array_equal(shared[q], alone)
            dist = lsh.hamming(query, words, bits)
            np.testing.assert_array_equal(shared[q], np.sort(np.lexsort((np.arange(len(dist)), dist))[:count]))


def _flat_store(rng, rows: int, queries: int):
    """A flat index's arrays over random float16 rows (256-bit codes, 128-bit prefix columns) and query inputs:
    (store, words, qwords, projections, queries)."""
    vectors = unit_float16(rng.standard_normal((rows, 24)).astype(np.float32))
    planes = rng.standard_normal((256, 24)).astype(np.float32)
    found = rng.standard_normal((queries, 24)).astype(np.float32)
    words = lsh.to_words(lsh.encode(vectors.astype(np.float32), planes))
    projections = lsh.project(found, planes)
    columns = np.ascontiguousarray(words[:, :2].T)
    store = search_kernels.Store(columns, search_kernels.radius_sample(columns), words, vectors)
    return store, words, lsh.to_words(lsh.pack(projections > 0)), projections, found


def test_reranked_in_one_batch_equals_one_query_at_a_time():
    """The compiled stages 1-4 over a batch (stage 1 shared by SCAN_QUERIES queries at a time) return, query by
    query, what one-query calls return, and what the numpy kernel returns."""
    store, _, qwords, projections, queries = _flat_store(np.random.default_rng(3), 6000, 13)
    bound = search_kernels.bind(store, search_kernels.Stages(128, 256, 400, 100, 30, 10))
    batch = search_kernels.reranked(bound, qwords, projections, queries, "numba")
    numpy = search_kernels.reranked(bound, qwords, projections, queries, "numpy")
    for i in range(len(queries)):
        (alone,) = search_kernels.reranked(
            bound, qwords[i : i + 1], projections[i : i + 1], queries[i : i + 1], "numba"
        )
        for field in search_kernels.Ranked._fields:
            np.testing.assert_array_equal(getattr(batch[i], field), getattr(alone, field))
            np.testing.assert_array_equal(getattr(batch[i], field), getattr(numpy[i], field))


def near_tied(n=600, dim=48, seed=0):
    """Rows and queries all within ~1e-3 of one direction: exact cosines differ in the 7th digit or less."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(dim)
    x = u + 1e-3 * rng.standard_normal((n, dim))
    q = u + 1e-3 * rng.standard_normal((8, dim))
    return x.astype(np.float32), q.astype(np.float32)


def test_both_cosine_kernels_give_the_same_bits_on_near_ties():
    x, q = near_tied()
    vectors, rows = unit_float16(x), np.arange(len(x))[::-1].copy()
    for query in q:
        compiled = search_kernels.rows_cosine(vectors, rows, query, "numba")
        fallback = search_kernels.rows_cosine(vectors, rows, query, "numpy")
        np.testing.assert_array_equal(compiled, fallback)  # bit for bit, not approximately
        assert len(np.unique(compiled)) < len(compiled) or np.diff(np.sort(compiled)).min() < 1e-6  # near ties


def test_both_weighted_kernels_give_the_same_bits():
    rng = np.random.default_rng(3)
    words = lsh.to_words(lsh.pack(rng.random((500, 256)) < 0.5))
    projections = rng.standard_normal(256).astype(np.float32)
    rows = np.arange(500)
    for bits in (64, 100, 256):
        np.testing.assert_array_equal(
            search_kernels.rows_weighted(words, rows, projections, bits, "numba"),
            search_kernels.rows_weighted(words, rows, projections, bits, "numpy"),
        )


def test_both_weighted_tables_give_the_same_bits():
    """The compiled table (built entry from entry) repeats lsh's float32 additions exactly, for any code
    length, on projections with zeros, ties and magnitudes far apart; the batch form equals the single."""
    rng = np.random.default_rng(4)
    projections = (rng.standard_normal((6, 260)) * 10.0 ** rng.integers(-6, 6, (6, 260))).astype(np.float32)
    projections[:, ::7] = 0.0
    projections[:, 1::9] = projections[:, 2::9][:, : projections[:, 1::9].shape[1]]
    for bits in (1, 7, 64, 100, 256, 260):
        batch = lsh.weighted_table(projections, bits)
        for p, expected in zip(projections, batch, strict=True):
            compiled = numba_kernels.weighted_table(p, bits)
            assert compiled.dtype == np.float32 and compiled.shape == (-(-bits // 8), 256)
            np.testing.assert_array_equal(compiled, expected)
            np.testing.assert_array_equal(lsh.weighted_table(p, bits), expected)


def _without_numba(monkeypatch):
    monkeypatch.setattr(search_kernels, "_kernels", None)  # as if `import numba` had failed
    monkeypatch.setattr(search_kernels, "_kernels_checked", True)
    monkeypatch.setattr(search_kernels, "_prepared", False)


def test_asking_for_numba_without_numba_raises_and_auto_falls_back(monkeypatch):
    words = np.arange(40, dtype=np.uint64).reshape(20, 2)
    columns = np.ascontiguousarray(words.T)
    expected = search_kernels.scan(columns, words[3], 128, 5, "numpy")
    _without_numba(monkeypatch)
    with pytest.raises(EproductError, match="kernel 'numba' was asked for but numba does not import"):
        search_kernels.scan(columns, words[3], 128, 5, "numba")
    np.testing.assert_array_equal(search_kernels.scan(columns, words[3], 128, 5, "auto"), expected)
    with pytest.raises(EproductError, match="kernel must be one of"):
        search_kernels.scan(columns, words[3], 128, 5, "cuda")


def test_numba_is_installed_here():
    """numba is a hard dependency of the fast path: its absence is a failure, never a skip."""
    assert search_kernels.numba_available()


@pytest.mark.parametrize("dim", [1, 7, 8, 9, 15, 512, 1002])
def test_cosine_kernels_agree_for_any_dim_and_row_count(dim):
    """The eight-lane sum with its tail, over one row or many: the same bits from both kernels."""
    rng = np.random.default_rng(dim)
    vectors = unit_float16(rng.standard_normal((40, dim)))
    query = rng.standard_normal(dim).astype(np.float32)
    for rows in (np.arange(40), np.array([5]), np.array([], dtype=np.int64)):
        compiled = search_kernels.rows_cosine(vectors, rows, query, "numba")
        np.testing.assert_array_equal(compiled, search_kernels.rows_cosine(vectors, rows, query, "numpy"))
        expected = lsh.cosine_distance(query, vectors[rows].astype(np.float32)) if len(rows) else compiled
        np.testing.assert_allclose(compiled, expected, atol=1e-5)
    zero = np.zeros((2, dim), np.float16)
    assert search_kernels.rows_cosine(zero, np.arange(2), query, "numba").tolist() == [1.0, 1.0]
    assert search_kernels.rows_cosine(zero, np.arange(2), query, "numpy").tolist() == [1.0, 1.0]


def test_the_compiled_float16_decode_is_exact_for_every_half_including_subnormals_and_signed_zeros():
    """The numba kernel decodes float16 bits (by the CPU's conversion or arithmetically, whichever this machine
    uses); numpy reads a table: the same cosines, bit for bit,
    over every finite float16 pattern (laid out as rows of 1,002, so the eight lanes' tail is covered too)."""
    halves = np.arange(1 << 16, dtype=np.uint16)
    finite = halves[np.isfinite(halves.view(np.float16))]
    patterns = np.resize(finite, 64 * 1002).reshape(64, 1002)
    vectors = patterns.view(np.float16)
    query = np.random.default_rng(0).standard_normal(1002).astype(np.float32)
    rows = np.arange(len(vectors))
    np.testing.assert_array_equal(
        search_kernels.rows_cosine(vectors, rows, query, "numba"),
        search_kernels.rows_cosine(vectors, rows, query, "numpy"),
    )


def test_both_compiled_float16_decodes_give_numpys_values_for_every_finite_half():
    """The CPU's conversion (used where `HARDWARE_HALF`) and the integer decode (used elsewhere) are both
    checked here (the first where this CPU has it): every finite pattern, float32 and float64 decodes."""
    halves = np.arange(1 << 16, dtype=np.uint16)
    finite = halves[np.isfinite(halves.view(np.float16))]
    patterns = np.resize(finite, 64 * 1024).reshape(64, 1024)
    expected = patterns.view(np.float16).astype(np.float32)
    hardware = numba_kernels.HARDWARE_HALF  # elsewhere the CPU's conversion is never compiled, nor used
    fours = [numba_kernels._decode_four_integer] + [numba_kernels._decode_four_hardware] * hardware
    half_decodes = [numba_kernels._decode_half_integer] + [numba_kernels._decode_half_hardware] * hardware
    for decode in fours:
        for start in range(0, 64, 4):
            bits, small = np.empty((4, 1024), np.uint32), np.empty((4, 1024), np.float32)
            decode(patterns, np.arange(start, start + 4), bits, small)
            np.testing.assert_array_equal(bits, expected[start : start + 4].view(np.uint32))
    for decode in half_decodes:
        for row in range(64):
            values = np.empty(1024, np.float64)
            decode(patterns[row], np.empty(1024, np.uint32), values)
            np.testing.assert_array_equal(values, expected[row].astype(np.float64))


def test_nearest_cosine_is_the_exact_ranking_head_from_both_kernels():
    """The compiled stage 4 computes exact distances only for rows its float32 pass cannot rule out: its
    `top` rows and bits equal the head of the exact (distance, row) ranking, over near ties, duplicated rows,
    zero rows, float16 subnormals and unsorted input rows, for every top."""
    x, q = near_tied(n=400, dim=64)
    x[10:20] = x[0]  # ten duplicates of row 0: exact ties, broken by row
    x[30] = 0.0
    vectors = unit_float16(x)
    vectors[40, :5] = np.float16(3e-6)  # subnormal halves
    rows = np.random.default_rng(1).permutation(len(x))[:300]
    for query in list(q[:4]) + [x[0]]:
        exact = search_kernels.rows_cosine(vectors, rows, query, "numpy")
        expected = np.lexsort((rows, exact))
        for top in (0, 1, 5, 10, 17, 299, 300, 500):
            head = expected[: top or None]
            for kernel in KERNELS:
                picked, cosine = search_kernels.nearest_cosine(vectors, rows, query, top, kernel)
                np.testing.assert_array_equal(picked, head)
                np.testing.assert_array_equal(cosine, exact[head])  # the same bits, not merely close


@pytest.mark.parametrize("dim", [3, 64, 1280])
def test_cosine_estimates_stay_within_their_stated_bound(dim):
    """The float32 pass that rules rows out errs by less than `estimate_slack` on every kind of row: random,
    zero, holding subnormal or extreme halves, against a query of large and tiny magnitudes."""

    rng = np.random.default_rng(dim)
    vectors = unit_float16(rng.standard_normal((64, dim)))
    vectors[1] = 0.0
    vectors[2, : max(1, dim // 2)] = np.float16(6e-8)  # the smallest subnormal
    vectors[3] = np.float16(65504.0) * np.sign(rng.standard_normal(dim)).astype(np.float16)
    query = (rng.standard_normal(dim) * 10.0 ** rng.uniform(-3, 3, dim)).astype(np.float32)
    rows = np.arange(64)
    bits = vectors.view(np.uint16)
    exact = numba_kernels.rows_cosine(bits, rows, query)
    estimates = numba_kernels.cosine_estimates(bits, rows, query)
    slack = numba_kernels.estimate_slack(dim)
    assert np.all(np.abs(estimates - exact) <= slack), np.abs(estimates - exact).max()
    assert estimates[1] == exact[1] == 1.0


@pytest.mark.parametrize("dim", [3, 64, 1280])
def test_centroid_dot_estimates_stay_within_their_stated_bound(dim):
    """The float32 pass that decides most probed lists (numba_kernels.probed_lists) errs by less than
    estimate_slack(dim) |row| |query| against the exact score (search_kernels.numpy_list_scores), by both
    float16 decodes (the CPU's where this one has it), on random, zero, subnormal and extreme rows."""
    rng = np.random.default_rng(dim)
    rows = unit_float16(rng.standard_normal((64, dim)))
    rows[1] = 0.0
    rows[2, : max(1, dim // 2)] = np.float16(6e-8)
    rows[3] = np.float16(65504.0) * np.sign(rng.standard_normal(dim)).astype(np.float16)
    query = (rng.standard_normal(dim) * 10.0 ** rng.uniform(-3, 3, dim)).astype(np.float32)
    half = rows.view(np.uint16)
    exact = search_kernels.numpy_list_scores(half, query)
    norms = np.linalg.norm(rows.astype(np.float64), axis=1)
    bound = numba_kernels.estimate_slack(dim) * norms * np.linalg.norm(query.astype(np.float64))
    kernels = [numba_kernels._dot_estimates_integer] + [numba_kernels._dot_estimates_hardware] * (
        numba_kernels.HARDWARE_HALF
    )
    for estimate in kernels:
        error = np.abs(estimate(half, np.arange(len(half)), query) - exact)
        assert np.all(error <= bound), (error / np.maximum(bound, 1e-300)).max()


@pytest.mark.parametrize("bits", [20, 64, 100, 256])
def test_code_counts_agree_across_kernels_and_with_popcounts(bits):
    rng = np.random.default_rng(bits)
    words = lsh.to_words(lsh.pack(rng.random((500, 256)) < 0.5))
    rows = rng.choice(500, 60, replace=False)
    query = words[7] ^ lsh.to_words(lsh.pack(rng.random((1, 256)) < 0.2))[0]
    masks = lsh.word_masks(bits)
    block = words[rows][:, : len(masks)] & masks
    q = query[: len(masks)] & masks
    for kernel in KERNELS:
        both, weights, qweight = search_kernels.code_counts(words, rows, query, bits, kernel)
        np.testing.assert_array_equal(both, lsh.popcount(block & q))
        np.testing.assert_array_equal(weights, lsh.popcount(block))
        assert qweight == int(lsh.popcount(q[None])[0])


@pytest.mark.parametrize("bits", [100, 256])
def test_reranked_gives_the_same_rows_and_code_cosines_from_both_kernels(bits):
    """Stages 1-4 in one call: both kernels return the same rows and distances, and the code cosines are
    eq. (4) from `code_counts` of the returned rows, bit for bit (the search's results take them as they are)."""
    store, words, qwords, projections, queries = _flat_store(np.random.default_rng(bits), 400, 5)
    stages = search_kernels.Stages(128, bits, 120, 60, 20, 7)
    bound = search_kernels.bind(store, stages)
    found = {k: search_kernels.reranked(bound, qwords, projections, queries, k) for k in KERNELS}
    for mine, theirs, q in zip(found["numba"], found["numpy"], qwords, strict=True):
        assert len(mine.rows) == 7
        for field in search_kernels.Ranked._fields:
            np.testing.assert_array_equal(getattr(mine, field), getattr(theirs, field))
        both, weights, qweight = search_kernels.code_counts(words, mine.rows, q, bits, "numpy")
        np.testing.assert_array_equal(mine.code_cosine, lsh.code_cosine_from_counts(both, weights, qweight))
        assert mine.code_cosine.dtype == np.float64


@pytest.mark.parametrize("bits", [1, 20, 64, 100, 256])
def test_sign_words_are_the_packed_signs_from_both_kernels(bits):
    rng = np.random.default_rng(bits)
    projections = rng.standard_normal((6, bits)).astype(np.float32)
    projections[0, : min(bits, 5)] = 0.0  # zero is not positive: bit clear
    expected = lsh.to_words(lsh.pack(projections > 0))
    for kernel in KERNELS:
        words = search_kernels.sign_words(projections, kernel)
        assert words.dtype == np.uint64
        np.testing.assert_array_equal(words, expected)


def test_kth_largest_by_histogram_matches_a_sort_with_ties_and_a_constant_array():
    rng = np.random.default_rng(0)
    for values in (rng.standard_normal(5000), np.round(rng.standard_normal(3000), 1), np.full(50, 0.25)):
        ranked = np.sort(values)[::-1]
        for k in (1, 2, 17, len(values) // 2, len(values)):
            assert numba_kernels._kth_largest(values, k) == ranked[k - 1]
