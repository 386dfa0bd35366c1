"""Properties of the golden model: packing, quantization error, the integer oracle, bad input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden.format import ACT_MAX, ACT_MIN, FORMATS, Arithmetic, Format, parse_arithmetic, parse_format
from golden.oracle import gemv_int, gemv_parts, requant_params, requantize
from golden.pack import StreamLayout, pack, unpack
from golden.quantize import (ACT_REAL_MAX, ACT_REAL_MIN, QuantizedMatrix, quantize, quantize_activations,
                             quantize_symmetric, salience_permutation)

ARITHMETICS = ("own", "shared")


configs = st.tuples(
    st.sampled_from(sorted(FORMATS)),
    st.sampled_from(ARITHMETICS),
    st.integers(1, 40),                                 # K
    st.integers(1, 9),                                  # N
    st.one_of(st.none(), st.integers(1, 12).map(lambda g: 2 * g)),   # group size
    st.sampled_from([1, 2, 3, 5, 6, 8, 16]),            # lanes (8, 16: byte-aligned fast path)
    st.integers(0, 2**32 - 1),                          # seed
    st.booleans(),                                      # permute
)


def _matrix(K, N, seed, scale_spread=True):
    rng = np.random.default_rng(seed)
    W = rng.standard_t(4, size=(K, N))
    if scale_spread:
        W *= np.exp2(rng.integers(-6, 6, size=N))[None, :]
    return W


def _quantized(cfg, use_perm=True):
    """(W, qm, rng) for a hypothesis configuration (every listed format supports both arithmetics)."""
    fmt, arith, K, N, G, _, seed, permute = cfg
    rng = np.random.default_rng(seed)
    W = _matrix(K, N, seed)
    perm = rng.permutation(K) if permute and use_perm else None
    return W, quantize(W, fmt, arithmetic=arith, group_size=G, perm=perm), rng


@settings(max_examples=150, deadline=None)
@given(configs)
def test_pack_unpack_round_trip(cfg):
    lanes = cfg[5]
    _, qm, _ = _quantized(cfg)
    ps = pack(qm, lanes)
    assert ps.data.size == -(-ps.nbits // 8)
    # No padding anywhere: the stream is exactly the sum of its records.
    lay = ps.layout
    assert ps.nbits == lay.n_blocks * (lay.n_groups * lanes * lay.header_lane_bits
                                       + lay.pairs * lanes * qm.fmt.pair_bits)
    back = unpack(ps)
    for name in ("codes", "zeros", "mant", "exp"):
        np.testing.assert_array_equal(getattr(back, name), getattr(qm, name), err_msg=name)
    np.testing.assert_array_equal(back.dequantize(), qm.dequantize())
    # Bits past the end of the stream are zero.
    tail = ps.nbits % 8
    if tail:
        assert ps.data[-1] >> tail == 0


@settings(max_examples=100, deadline=None)
@given(configs, st.sampled_from([1, 3, 7, 8, 13, 64, 61]))
def test_bus_words_carry_the_stream_in_order(cfg, bus_width):
    _, qm, _ = _quantized(cfg, use_perm=False)
    ps = pack(qm, cfg[5])
    words = ps.words(bus_width)
    assert len(words) == -(-ps.nbits // bus_width)
    stream = sum(w << (i * bus_width) for i, w in enumerate(words))
    assert stream == int.from_bytes(ps.data.tobytes(), "little")
    assert all(0 <= w < 1 << bus_width for w in words)


@settings(max_examples=150, deadline=None)
@given(configs)
def test_dequantized_error_within_half_a_step(cfg):
    W, qm, _ = _quantized(cfg, use_perm=False)
    err = np.abs(qm.dequantize() - W)
    step = qm.row_scales()[: qm.K]
    if qm.arithmetic is Arithmetic.OWN:
        bound = step / 2          # nearest level, range covered by the rounded-up scale
    else:
        bound = step * 2.0 ** (qm.fmt.odd_shift(qm.arithmetic) - 1)   # FORMAT.md section 5
    assert np.all(err <= bound * (1 + 1e-12) + 1e-300)


@pytest.mark.parametrize("fmt", ["4+4", "4+3", "5+3", "8+4", "8+2", "3+2"])
def test_shared_grid_error_bound_is_two_to_the_e_minus_o_minus_one_steps(fmt):
    """Issue 13: the shared-grid bound is 2**(E-O-1) * s (not s): reached, never exceeded."""
    f = parse_format(fmt)
    d = f.odd_shift("shared")
    W = np.random.default_rng(2).normal(size=(4096, 8))
    qm = quantize(W, f, arithmetic="shared", group_size=64)
    ratio = np.abs(qm.dequantize() - W) / qm.row_scales()[: qm.K]
    bound = max(2.0 ** (d - 1), 0.5)
    assert ratio.max() <= bound * (1 + 1e-9)
    assert ratio.max() >= 0.9 * bound               # tight: the old "<= s" fails from E - O = 2 on


@settings(max_examples=150, deadline=None)
@given(configs)
def test_oracle_equals_float64_reference_to_the_last_bit(cfg):
    _, qm, rng = _quantized(cfg)
    a = rng.integers(ACT_MIN, ACT_MAX + 1, size=qm.K).astype(np.int8)
    y = gemv_int(qm, a)
    # Every dequantized weight is m * 2**-e * (q - z) with a 25-bit significand and every
    # partial sum a multiple of 2**-e below 2**53 * 2**-e, so float64 is exact here.
    ref = a.astype(np.float64) @ qm.dequantize()
    np.testing.assert_array_equal(np.ldexp(y.astype(np.float64), -qm.exp.astype(np.int32)), ref)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("arith", ARITHMETICS)
def test_zero_is_exactly_representable_in_every_slot(fmt, arith):
    rng = np.random.default_rng(1)
    W = rng.normal(size=(64, 32)) + rng.normal(size=32)[None, :]   # zero points land anywhere
    W[rng.random(W.shape) < 0.2] = 0.0
    qm = quantize(W, fmt, arithmetic=arith, group_size=16)
    np.testing.assert_array_equal(qm.dequantize()[W == 0], 0.0)
    if arith == "shared":
        assert np.all(qm.zeros % (1 << qm.fmt.odd_shift(arith)) == 0)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_oracle_at_the_extremes_of_int32(fmt):
    """-128 activations against the largest codes with zero point 0, at the format's K bound."""
    f = parse_format(fmt)
    K = min(f.max_k_int32("own"), 1 << 17)
    W = np.zeros((K, 1))
    W[:, 0] = 1.0                          # zero point 0, every code the largest
    qm = quantize(W, f, arithmetic="own")
    assert np.all(qm.zeros == 0)
    assert qm.codes[0::2].min() == (1 << f.even_bits) - 1 and qm.codes[1::2].min() == (1 << f.odd_bits) - 1
    a = np.full(K, ACT_MIN, dtype=np.int8)
    acc, sa, corr = gemv_parts(qm, a)
    assert acc[0, 0, 0] == ACT_MIN * (K // 2) * ((1 << f.even_bits) - 1)
    assert np.all(acc >= -(1 << 31))


def test_accumulator_bound_is_tight():
    f = parse_format("8+8")
    kmax = f.max_k_int32("own")
    assert (kmax // 2) * 128 * 255 <= 2**31 - 1 < (kmax // 2 + 1) * 128 * 255
    W = np.ones((kmax + 2, 1))
    with pytest.raises(ValueError, match=f"at most {kmax} rows per group"):
        quantize(W, f)                       # refused at quantize time, as the oracle would refuse it
    qm = quantize(W, f, group_size=kmax)    # groups within the bound are fine
    gemv_int(qm, np.full(kmax + 2, -128, dtype=np.int8))
    # The oracle's own check, on a matrix built by hand past the bound.
    over = QuantizedMatrix(f, Arithmetic.OWN, K=kmax + 2, N=1, group_size=kmax + 2,
                           codes=np.full((kmax + 2, 1), 255, dtype=np.uint8), zeros=np.zeros((1, 2, 1), np.int64),
                           mant=np.ones((1, 2, 1), np.int64), exp=np.zeros(1, np.int64))
    with pytest.raises(OverflowError, match="int32"):
        gemv_int(over, np.full(kmax + 2, -128, dtype=np.int8))


@pytest.mark.parametrize("fmt, arith", [("8+8", "shared"), ("8+8", "own"), ("4+3", "shared")])
def test_quantize_refuses_what_the_oracle_would_refuse(fmt, arith):
    """Issue 13, defect 4: K past the int32 bound per column is refused at quantize time."""
    kmax = parse_format(fmt).max_k_int32(arith)
    with pytest.raises(ValueError, match=f"at most {kmax} rows per group"):
        quantize(np.zeros((kmax + 1, 1)), fmt, arithmetic=arith)
    with pytest.raises(ValueError, match=f"group_size={kmax + 2} exceeds"):
        quantize(np.zeros((kmax + 3, 1)), fmt, arithmetic=arith, group_size=kmax + 2)


def test_requantize_rounds_half_up_and_saturates():
    y = np.array([5, -5, 6, -6, 10**9, -10**9, 0, 3, -3])
    out = requantize(y, M=1, shift=1)     # y / 2, ties toward +inf
    np.testing.assert_array_equal(out, [3, -2, 3, -3, 127, -128, 0, 2, -1])


def test_requant_params_match_float_scaling():
    rng = np.random.default_rng(3)
    W = rng.normal(size=(256, 40)) * 0.02
    qm = quantize(W, "4+3", group_size=64)
    a, s_a = quantize_activations(rng.normal(size=256))
    y = gemv_int(qm, a)
    yf = y * s_a * np.exp2(-qm.exp.astype(float))
    s_out = np.abs(yf).max() / 127
    M, s = requant_params(qm, s_a, s_out)
    out = requantize(y, M, s)
    assert np.abs(out - np.clip(np.rint(yf / s_out), -128, 127)).max() <= 1


def _with_exponents(exp):
    qm = quantize(np.ones((2, len(exp))), "4+3")
    return QuantizedMatrix(qm.fmt, qm.arithmetic, qm.K, qm.N, qm.group_size, qm.codes, qm.zeros, qm.mant,
                           exp=np.array(exp))


def test_requant_params_of_a_huge_output_scale_are_exactly_zero():
    # Found by Hypothesis (tests/cli/test_fuzz.py): 65535 / (2**-19 / 5.3e297) overflowed float64.
    M, s = requant_params(_with_exponents([17, 18, 19]), 1.0, 5.3e297)
    assert M.tolist() == [0, 0, 0] and s.tolist() == [63, 63, 63]
    M, s = requant_params(_with_exponents([-128, 0, 127]), 1e-300, 1.7e308)
    assert M.tolist() == [0, 0, 0] and s.tolist() == [63, 63, 63]


@pytest.mark.parametrize("j", [-900, -600, 0, 600, 900])
def test_requant_params_depend_only_on_the_ratio_of_the_scales(j):
    # Scaling both scales by 2**j leaves the real ratio unchanged, so M and s must not change, even where
    # s_a * 2**-e alone would overflow or underflow float64.
    kinds = set()
    for e in [-128, -20, 0, 19, 127]:
        qm = _with_exponents([e])
        for s_a, s_out in [(1.0, 3.0), (0.013, 1e-6), (7.5, 2.0**-120), (1e3, 1e35), (2.0**100, 1.0)]:
            try:
                want = requant_params(qm, s_a, s_out)
            except ValueError as exc:
                assert "too large" in str(exc)
                with pytest.raises(ValueError, match="too large"):
                    requant_params(qm, np.ldexp(s_a, j), np.ldexp(s_out, j))
                kinds.add("too large")
                continue
            got = requant_params(qm, np.ldexp(s_a, j), np.ldexp(s_out, j))
            assert [g.tolist() for g in got] == [w.tolist() for w in want]
            kinds.add("M = 0" if want[0][0] == 0 else "M > 0")
    assert kinds == {"too large", "M = 0", "M > 0"}


@pytest.mark.parametrize("s_out", [0.0, -1.0, np.inf, np.nan])
def test_requant_params_name_the_scale_and_its_range(s_out):
    with pytest.raises(ValueError, match=r"s_out must be a number in \(0, 1\.79769e\+308\], got"):
        requant_params(_with_exponents([17]), 1.0, s_out)
    with pytest.raises(ValueError, match=r"s_a must be a number in \(0, 1\.79769e\+308\], got"):
        requant_params(_with_exponents([17]), s_out, 1.0)
    with pytest.raises(TypeError, match="s_out must be a number"):
        requant_params(_with_exponents([17]), 1.0, "3")


@pytest.mark.parametrize("amax", [3.4e302, np.finfo(np.float64).max, 1e-310, 5e-324, ACT_REAL_MAX * 1.0000001,
                                  ACT_REAL_MIN * 0.999])
def test_activations_beyond_float32s_normal_range_are_refused(amax):
    # Found by Hypothesis: 3.4e302 overflowed the real result y * s_a * 2**-exp; 5e-324 / 127 is 0.
    x = np.array([amax / 2, -amax, 0.0])
    with pytest.raises(ValueError, match=r"x must have max\|x\| = 0 or in \[1\.17549e-38, 3\.40282e\+38\]"):
        quantize_activations(x)


@pytest.mark.parametrize("amax", [ACT_REAL_MAX, ACT_REAL_MIN, 0.0])
def test_activations_at_the_ends_of_the_range_quantize(amax):
    a, s_a = quantize_activations(np.array([amax, -amax / 2, 0.0]))
    assert a.tolist() == ([127, -64, 0] if amax else [0, 0, 0])
    assert s_a == (amax / 127 if amax else 1.0) and s_a > 0


def test_constant_and_zero_columns():
    W = np.zeros((10, 4))
    W[:, 1] = 3.0
    W[:, 2] = -0.5
    qm = quantize(W, "4+3", group_size=4)
    deq = qm.dequantize()
    np.testing.assert_array_equal(deq[:, 0], 0.0)            # all-zero column: scale 0, exact
    # a constant sits on the end of the grid; the error is the 16-bit mantissa rounding
    np.testing.assert_allclose(deq[:, 1], 3.0, rtol=1e-4)
    np.testing.assert_allclose(deq[:, 2], -0.5, rtol=1e-4)
    assert np.all(qm.mant[:, :, 0] == 0)


def test_symmetric_baseline_is_zero_centred():
    rng = np.random.default_rng(4)
    W = rng.normal(size=(64, 8))
    qm = quantize_symmetric(W, "4+4")
    assert np.all(qm.zeros == 8)
    assert qm.codes.min() >= 1                      # the -8 level is never used by a symmetric quantizer
    asym = quantize(W, "4+4")
    assert np.mean((asym.dequantize() - W) ** 2) < np.mean((qm.dequantize() - W) ** 2)


def test_error_falls_as_bits_rise():
    rng = np.random.default_rng(5)
    W = rng.normal(size=(512, 64))
    err = {f: np.mean((quantize(W, f, group_size=64).dequantize() - W) ** 2) for f in ("3+3", "4+3", "4+4", "8+8")}
    assert err["3+3"] > err["4+3"] > err["4+4"] > err["8+8"]


def test_mse_clipping_never_increases_weight_error():
    rng = np.random.default_rng(6)
    W = rng.standard_t(3, size=(256, 32))
    plain = quantize(W, "4+3", group_size=64)
    clipped = quantize(W, "4+3", group_size=64, clip="mse")
    e = lambda q: np.sum((q.dequantize() - W) ** 2)  # noqa: E731
    assert e(clipped) <= e(plain)


def test_permutation_is_consistent_for_weights_and_activations():
    rng = np.random.default_rng(7)
    W = rng.normal(size=(33, 6))
    imp = rng.random(33)
    perm = salience_permutation(imp)
    assert sorted(perm) == list(range(33))
    top = set(np.argsort(-imp)[:17])
    assert set(perm[0::2]) == top                    # the important half sits in the 4-bit slots
    qm = quantize(W, "4+3", perm=perm)
    a = rng.integers(-128, 128, size=33).astype(np.int8)
    ref = a.astype(np.float64) @ qm.dequantize()
    np.testing.assert_array_equal(np.ldexp(gemv_int(qm, a).astype(float), -qm.exp.astype(np.int32)), ref)


def test_bits_per_weight_counts_headers_and_exponent():
    W = np.ones((256, 3))
    assert quantize(W, "4+3").bits_per_weight == (128 * 7 + 39 + 8) / 256
    assert quantize(W, "4+3", group_size=128).bits_per_weight == (128 * 7 + 2 * 39 + 8) / 256
    assert quantize(W, "4+3", arithmetic="shared", group_size=128).bits_per_weight == (128 * 7 + 2 * 20 + 8) / 256
    assert quantize(W[:255], "4+4", group_size=64).bits_per_weight == (128 * 8 + 4 * 40 + 8) / 255


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("G", [None, 8, 6])
def test_byte_aligned_fast_path_matches_the_generic_bit_path(fmt, G, monkeypatch):
    import golden.pack as gp

    rng = np.random.default_rng(8)
    qm = quantize(rng.normal(size=(37, 70)), fmt, group_size=G)
    assert gp._byte_aligned(gp.StreamLayout(qm.fmt, qm.arithmetic, 16, qm.K, qm.N, qm.group_size))
    fast = pack(qm, 16)
    monkeypatch.setattr(gp, "_byte_aligned", lambda layout: False)
    slow = pack(qm, 16)
    np.testing.assert_array_equal(fast.data, slow.data)
    np.testing.assert_array_equal(gp.unpack(slow).codes, qm.codes)


def test_stream_layout_counts():
    lay = StreamLayout(Format(4, 3), Arithmetic.OWN, lanes=16, K=4096, N=64, group_size=128)
    assert lay.beat_bits == 112 and lay.header_bits == 16 * 39
    assert lay.nbits == 4 * (32 * 16 * 39 + 2048 * 112)
    assert lay.bus_words(64) == -(-lay.nbits // 64)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("W, exc, match", [
    (np.array([[np.nan, 1.0], [0.0, 1.0]]), ValueError, "finite"),
    (np.array([[np.inf, 1.0], [0.0, 1.0]]), ValueError, "finite"),
    (np.zeros((0, 4)), ValueError, "K >= 1"),
    (np.zeros((4, 0)), ValueError, "N >= 1"),
    (np.zeros(8), ValueError, "2-D"),
    (np.zeros((2, 2, 2)), ValueError, "2-D"),
    (np.array([["a", "b"]]), TypeError, "dtype"),
    (np.zeros((2, 2), dtype=complex), TypeError, "dtype"),
    ([[1.0, 2.0]], TypeError, "NumPy array"),
])
def test_bad_weights_are_rejected_clearly(W, exc, match):
    with pytest.raises(exc, match=match):
        quantize(W, "4+3")


@pytest.mark.parametrize("kwargs, match", [
    (dict(fmt="4+9"), "odd_bits must be an integer in \\[2, 8\\]"),
    (dict(fmt="5"), "format must be 'E\\+O'"),
    (dict(fmt="3+4", arithmetic="shared"), "odd_bits <= even_bits"),
    (dict(arithmetic="both"), "arithmetic must be one of"),
    (dict(group_size=3), "group_size must be an even integer"),
    (dict(group_size=0), "group_size must be an even integer"),
    (dict(clip="max"), "clip must be one of"),
    (dict(perm=[0, 0, 1, 2]), "perm must be a permutation"),
])
def test_bad_parameters_are_rejected_clearly(kwargs, match):
    kwargs = {"fmt": "4+3", **kwargs}
    fmt = kwargs.pop("fmt")
    with pytest.raises(ValueError, match=match):
        quantize(np.ones((4, 4)), fmt, **kwargs)


def test_a_perm_of_another_kind_is_a_type_error():
    with pytest.raises(TypeError, match=r"perm must be a permutation of range\(K\) = range\(4\) as an integer array, "
                                        "got dtype float64"):
        quantize(np.ones((4, 4)), "4+3", perm=[0.0, 1.0, 2.0, 3.0])


def test_bad_activations_are_rejected_clearly():
    qm = quantize(np.ones((4, 2)), "4+3")
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        gemv_int(qm, np.zeros(5, dtype=np.int8))
    with pytest.raises(TypeError, match="integers"):
        gemv_int(qm, np.zeros(4))
    with pytest.raises(ValueError, match=r"\[-128, 127\]"):
        gemv_int(qm, np.array([0, 0, 300, 0]))
    with pytest.raises(ValueError, match="finite"):
        quantize_activations(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="1-D"):
        quantize_activations(np.zeros((2, 2)))


def test_parsers():
    assert parse_format("int4") == Format(4, 4)
    assert parse_format((4, 3)).name == "4+3"
    assert parse_arithmetic("SHARED") is Arithmetic.SHARED
    with pytest.raises(ValueError, match="lanes must be"):
        pack(quantize(np.ones((4, 2)), "4+3"), lanes=0)


def test_output_aware_clipping_lowers_the_weighted_error_and_stays_representable():
    rng = np.random.default_rng(9)
    K, N = 256, 24
    W = rng.standard_t(3, size=(K, N))
    importance = rng.exponential(size=K) ** 3            # a few hot channels
    a = rng.integers(-128, 128, size=K).astype(np.int8)
    plain = quantize(W, "4+3", group_size=64)
    out = quantize(W, "4+3", group_size=64, clip="output", importance=importance)
    weighted = lambda q: np.sum(importance[:, None] * (q.dequantize() - W) ** 2)  # noqa: E731
    assert weighted(out) <= weighted(plain)
    assert weighted(out) <= weighted(quantize(W, "4+3", group_size=64, clip="mse"))
    # one container, one exponent per column: the oracle still equals the float reference exactly
    ref = a.astype(np.float64) @ out.dequantize()
    np.testing.assert_array_equal(np.ldexp(gemv_int(out, a).astype(float), -out.exp.astype(np.int32)), ref)
    with pytest.raises(ValueError, match="importance"):
        quantize(W, "4+3", clip="output")
    with pytest.raises(ValueError, match="importance"):
        quantize(W, "4+3", importance=importance)
    with pytest.raises(ValueError, match="256 finite non-negative"):
        quantize(W, "4+3", clip="output", importance=-importance)
