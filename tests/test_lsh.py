"""lsh.py: hyperplanes, prefix codes, packing, Hamming, weighted Hamming and eq. (4) code cosine against direct numpy."""

import numpy as np
import pytest

from eproduct_core import lsh


def _vectors(n=300, d=24, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_hyperplanes_are_seeded_prefix_consistent_and_orthonormal_per_block():
    a = lsh.hyperplanes(3, 40, 16)
    assert a.shape == (40, 16) and a.dtype == np.float32
    np.testing.assert_array_equal(lsh.hyperplanes(3, 7, 16), a[:7])
    np.testing.assert_array_equal(lsh.hyperplanes(3, 40, 16), a)
    assert not np.array_equal(lsh.hyperplanes(4, 40, 16), a)
    for block in (a[:16], a[16:32]):
        np.testing.assert_allclose(block @ block.T, np.eye(16), atol=1e-5)
    assert np.abs(a[:16] @ a[16:32].T).max() > 0.05  # different blocks are independent, not orthogonal


@pytest.mark.parametrize("k", [1, 7, 8, 20, 64, 65, 100])
def test_k_bit_prefix_of_long_codes_equals_codes_built_with_k_bits(k):
    x = _vectors()
    long_codes = lsh.encode(x, lsh.hyperplanes(11, 128, x.shape[1]))
    short_codes = lsh.encode(x, lsh.hyperplanes(11, k, x.shape[1]))
    np.testing.assert_array_equal(lsh.prefix(long_codes, k), short_codes)


def test_bits_are_signs_of_projections_packed_big_endian():
    x = _vectors(50)
    planes = lsh.hyperplanes(0, 20, x.shape[1])
    bits = (x @ planes.T) > 0
    codes = lsh.encode(x, planes)
    assert codes.shape == (50, 3)
    np.testing.assert_array_equal(lsh.unpack(codes, 20), bits.astype(np.uint8))
    assert (codes[:, 0] >> 7 == bits[:, 0]).all()  # bit 0 is the top bit of byte 0
    assert (codes[:, 2] & 0x0F == 0).all()  # padding bits are zero


def test_words_hamming_matches_unpacked_bits():
    x = _vectors(200)
    codes = lsh.encode(x, lsh.hyperplanes(1, 136, x.shape[1]))
    words = lsh.to_words(codes)
    assert words.shape == (200, 3) and words.dtype == np.uint64
    bits = lsh.unpack(codes, 136).astype(np.int64)
    for k in (5, 20, 64, 100, 136):
        expected = np.abs(bits[:, :k] - bits[0, :k]).sum(axis=1)
        np.testing.assert_array_equal(lsh.hamming(words[0], words, k), expected)


def test_weighted_hamming_sums_the_query_margins_of_the_differing_bits():
    x = _vectors(200)
    planes = lsh.hyperplanes(2, 136, x.shape[1])
    codes = lsh.encode(x, planes)
    words, bits = lsh.to_words(codes), lsh.unpack(codes, 136).astype(bool)
    query = _vectors(1, seed=5)[0]
    projections = lsh.project(query[None, :], planes)[0]
    assert np.array_equal(projections > 0, lsh.unpack(lsh.encode(query[None, :], planes), 136)[0].astype(bool))
    for k in (1, 5, 20, 64, 100, 136):
        differs = bits[:, :k] != (projections[:k] > 0)
        expected = (np.abs(projections[:k]) * differs).sum(axis=1)
        np.testing.assert_allclose(lsh.weighted_hamming(projections, words, k), expected, rtol=1e-5, atol=1e-5)
    own_code = lsh.to_words(lsh.encode(query[None, :], planes))
    assert lsh.weighted_hamming(projections, own_code, 136)[0] == pytest.approx(0, abs=1e-5)
    many = np.random.default_rng(6).integers(0, 2**63, size=(70_000, 3), dtype=np.uint64)  # past one 65,536 block
    many_bits = np.unpackbits(many.astype(">u8").view(np.uint8), axis=1)[:, :136].astype(bool)
    expected = (np.abs(projections) * (many_bits != (projections > 0))).sum(axis=1)
    np.testing.assert_allclose(lsh.weighted_hamming(projections, many, 136), expected, rtol=1e-5, atol=1e-5)


def test_weighted_hamming_orders_by_cosine_better_than_hamming():
    rng = np.random.default_rng(4)
    x = _vectors(2000, d=32)
    query = x[0] + 0.3 * rng.standard_normal(32).astype(np.float32)
    planes = lsh.hyperplanes(0, 64, 32)
    words = lsh.to_words(lsh.encode(x, planes))
    cosine_rank = np.argsort(np.argsort(lsh.cosine_distance(query, x)))
    agreement = {}
    for name, dist in (
        ("hamming", lsh.hamming(lsh.to_words(lsh.encode(query[None, :], planes))[0], words, 64)),
        ("weighted", lsh.weighted_hamming(lsh.project(query[None, :], planes)[0], words, 64)),
    ):
        agreement[name] = np.corrcoef(np.argsort(np.argsort(dist, kind="stable")), cosine_rank)[0, 1]
    assert agreement["weighted"] > agreement["hamming"] + 0.02


def test_code_cosine_is_eq4_over_bit_vectors():
    x = _vectors(300)
    codes = lsh.encode(x, lsh.hyperplanes(2, 20, x.shape[1]))
    words = lsh.to_words(codes)
    h = lsh.unpack(codes, 20).astype(np.int64)
    for q in range(5):
        c, a, b = h @ h[q], h.sum(axis=1), h[q].sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            expected = np.where(a * b > 0, 1.0 - c / np.sqrt(a * b), 1.0)
        np.testing.assert_array_equal(lsh.code_cosine(words[q], words, 20), expected)
    assert lsh.code_cosine(words[0], words[:1], 20)[0] == pytest.approx(0.0, abs=1e-12)


def test_all_zero_code_has_distance_one_to_everything():
    zero = np.zeros((1, 1), dtype=np.uint64)
    other = lsh.to_words(np.array([[0b10110000]], dtype=np.uint8))
    assert lsh.code_cosine(zero[0], other, 4)[0] == 1.0
    assert lsh.code_cosine(zero[0], zero, 4)[0] == 1.0
    assert lsh.code_cosine(other[0], zero, 4)[0] == 1.0


def test_differing_bit_fraction_estimates_angle_over_pi():
    rng = np.random.default_rng(5)
    a = rng.standard_normal(64)
    b = a + 0.8 * rng.standard_normal(64)
    angle = np.arccos(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    words = lsh.to_words(lsh.encode(np.stack([a, b]), lsh.hyperplanes(0, 4096, 64)))
    fraction = lsh.hamming(words[0], words[1:], 4096)[0] / 4096
    assert fraction == pytest.approx(angle / np.pi, abs=0.03)


def test_cosine_distance_exact_and_zero_vectors():
    x = _vectors(10)
    q = x[3]
    expected = 1 - (x @ q) / np.linalg.norm(x, axis=1) / np.linalg.norm(q)
    np.testing.assert_allclose(lsh.cosine_distance(q, x), expected, atol=1e-6)
    assert lsh.cosine_distance(q, np.zeros((1, x.shape[1])))[0] == 1.0


# -- exact cutoffs (issue 12): strict `<`, decided in integers, never by float rounding --

BOUNDARIES = {  # cutoff: (overlap, weight, query weight) with eq. (4) exactly equal to the cutoff
    0.05: (19, 20, 20),
    0.1: (9, 10, 10),
    0.2: (4, 5, 5),
    0.3: (7, 10, 10),
    0.4: (3, 5, 5),
}


@pytest.mark.parametrize("cutoff", sorted(BOUNDARIES))
def test_below_cutoff_is_strict_at_exact_boundaries(cutoff):
    both, a, b = BOUNDARIES[cutoff]
    assert not lsh.below_cutoff(both, a, b, cutoff)  # equal is not below, whatever float64 rounding says
    assert lsh.below_cutoff(both + 1, a, b, cutoff)
    assert not lsh.below_cutoff(both, a, b, np.nextafter(cutoff, 0))
    assert lsh.below_cutoff(both, a, b, np.nextafter(cutoff, 1))  # any cutoff above it admits it
    for k in (2, 3, 7):  # the same ratio at other scales: (k both) / sqrt(k a * k b)
        assert not lsh.below_cutoff(k * both, k * a, k * b, cutoff)


def test_below_cutoff_and_least_overlaps_agree_with_fractions_everywhere():
    from fractions import Fraction

    for cutoff in (0.0, 0.05, 0.1, 0.123456789, 0.3, 1.0, 1.5):
        t = 1 - Fraction(repr(cutoff))
        for qweight in (0, 1, 7, 16):
            least = lsh.least_overlaps(cutoff, qweight, 16)
            for a in range(17):
                for both in range(min(a, qweight) + 1):
                    if a * qweight == 0:
                        exact = Fraction(repr(cutoff)) > 1
                    else:
                        exact = t < 0 or (t == 0 and both > 0) or (t > 0 and both * both > t * t * a * qweight)
                    assert bool(lsh.below_cutoff(both, a, qweight, cutoff)) == exact, (cutoff, both, a, qweight)
                    assert (both >= least[a]) == exact, (cutoff, both, a, qweight)


def test_hamming_radius_is_the_exact_equivalent_radius():
    assert lsh.hamming_radius(0.1, 20) == 1  # 2/20 = 0.1 is not below 0.1 (float64 said 1 - 9/10 < 0.1)
    assert lsh.hamming_radius(0.0, 20) == -1 and lsh.hamming_radius(1.0, 64) == 63
    assert lsh.hamming_radius(0.2, 20) == 3 and lsh.hamming_radius(0.21, 20) == 4
    for bits in (16, 20, 64):  # balanced codes: eq. (4) = d / bits, i.e. overlap bits - d of weights bits, bits
        for cutoff in (0.05, 0.1, 0.25, 0.3, 0.7):
            admitted = [d for d in range(bits + 1) if lsh.below_cutoff(bits - d, bits, bits, cutoff)]
            assert lsh.hamming_radius(cutoff, bits) == max(admitted, default=-1)


def test_weighted_hamming_sums_in_the_compiled_kernels_order():
    rng = np.random.default_rng(0)
    words = lsh.to_words(lsh.pack(rng.random((200, 256)) < 0.5))
    projections = rng.standard_normal(256).astype(np.float32)
    table = lsh.weighted_table(projections, 256)
    code_bytes = np.ascontiguousarray(words.astype(">u8")).view(np.uint8).reshape(200, -1)
    expected = np.zeros(200)
    for b in range(32):
        expected += table[b, code_bytes[:, b]].astype(np.float64)
    np.testing.assert_array_equal(lsh.weighted_hamming(projections, words, 256), expected)


def test_bucket_sizes_count_every_code_prefix():
    rng = np.random.default_rng(5)
    codes = lsh.pack(rng.random((3000, 64)) < 0.5)
    codes[100:400] = codes[7]  # one crowded bucket
    word0 = lsh.to_words(codes)[:, 0]
    for bits in (4, 8, 20, 64):
        items, buckets = lsh.bucket_sizes(word0, bits)
        _, counts = np.unique(lsh.unpack(codes, bits), axis=0, return_counts=True)
        assert int((items * buckets).sum()) == len(codes)
        assert sorted(np.repeat(items, buckets).tolist()) == sorted(counts.tolist())
    with pytest.raises(ValueError):
        lsh.bucket_sizes(word0, 65)


def test_unit_mean_is_the_mean_of_the_unit_rows_across_chunks_zero_rows_counted_as_zero():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5000, 6)) * rng.uniform(0.01, 100, (5000, 1))
    x[17] = 0.0
    unit = np.where(
        np.linalg.norm(x, axis=1, keepdims=True) > 0,
        x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300),
        0,
    )
    expected = unit.sum(axis=0) / len(x)
    for chunk in (7, 2048, 10_000):
        np.testing.assert_allclose(lsh.unit_mean(x, chunk=chunk), expected, rtol=1e-5, atol=1e-7)
