"""FORMAT.md section 5 ('Precision') is enough to reproduce golden's encoder bit for bit.

The encoder below is written from the text of FORMAT.md alone (it imports nothing
from golden but the format constants' values, which the text also gives); it must
give the same codes, zero points, mantissas and exponents as ``golden.quantize``
for float32 and float64 weights, both arithmetics, groups and odd K.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden.quantize import quantize

pytestmark = pytest.mark.timeout(120)


def spec_encode(W, E, O, arithmetic, G):
    """Per FORMAT.md section 5, clip none: returns (codes, zeros, mant, exp)."""
    D = np.float32 if W.dtype == np.float32 else np.float64
    W = W.astype(D)
    K, N = W.shape
    K_pad = K + K % 2
    G = K_pad if G is None else min(G, K_pad)
    ng = -(-K_pad // G)
    d = 1 << (E - O) if arithmetic == "shared" else 1
    if arithmetic == "own":
        slots = [(0, 2, (1 << E) - 1), (1, 2, (1 << O) - 1)]      # (first row, row step, T)
    else:
        slots = [(0, 1, ((1 << O) - 1) * d)]
    codes = np.zeros((K_pad, N), dtype=np.int64)
    zeros = np.zeros((ng, len(slots), N), dtype=np.int64)
    mant = np.zeros_like(zeros)
    exp = np.zeros(N, dtype=np.int64)
    for n in range(N):
        col = np.zeros(ng * G, dtype=D)
        col[:K] = W[:, n]
        ranges = {}
        for g in range(ng):
            rows = col[g * G:(g + 1) * G]
            for t, (r0, rs, T) in enumerate(slots):
                x = rows[r0::rs]
                ranges[g, t] = (min(x.min(), D(0)), max(x.max(), D(0)), T)
        # Exponent: float64 quotient of the span (computed in D) by T.
        rmax = max(float(D(hi - lo)) / T for lo, hi, T in ranges.values())
        if rmax == 0:
            e = 127
        else:
            e = math.floor(np.log2(65535 / rmax))
            if np.rint(rmax * 2.0**e) > 65535:
                e -= 1
        exp[n] = e
        for (g, t), (lo, hi, T) in ranges.items():
            step = D(D(hi - lo) / D(T))                        # the mantissa's quotient is in D
            m = min(math.ceil(float(step) * 2.0**e), 65535)
            if hi - lo > 0 and m == 0:
                m = 1
            s = m / 2.0**e
            z = 0 if s == 0 else int(min(max(np.rint(float(-lo) / s / d) * d, 0), T))
            mant[g, t, n], zeros[g, t, n] = m, z
            inv = D(1 / s) if s > 0 else D(0)
            for r in range(g * G, min((g + 1) * G, K)):
                if arithmetic == "own":
                    if r % 2 != t:
                        continue
                    p, top = 1, (1 << (E if t == 0 else O)) - 1
                else:
                    p, top = (1, (1 << E) - 1) if r % 2 == 0 else (d, (1 << O) - 1)
                c = D(col[r] * inv)
                c = D(c + D(z))
                if p != 1:
                    c = D(c / D(p))
                codes[r, n] = int(min(max(np.rint(c), 0), top))
        if K_pad != K:
            codes[K_pad - 1, n] = zeros[ng - 1, len(slots) - 1, n] >> (E - O if arithmetic == "shared" else 0)
    return codes, zeros, mant, exp


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([(4, 3), (4, 4), (3, 3), (8, 8), (5, 3), (8, 2)]), st.sampled_from(["own", "shared"]),
       st.integers(1, 24), st.integers(1, 4), st.sampled_from([None, 2, 4, 8]), st.integers(0, 2**32 - 1),
       st.sampled_from([np.float32, np.float64, np.float16, np.int16]), st.integers(-30, 30))
def test_an_encoder_written_from_the_spec_matches_golden(fmt, arith, K, N, G, seed, dtype, scale_exp):
    rng = np.random.default_rng(seed)
    if dtype in (np.float16, np.int16):
        scale_exp = min(max(scale_exp, -8), 8)                 # stay finite and nonzero in the narrow types
    W = (rng.standard_t(4, size=(K, N)) * 2.0**scale_exp).astype(dtype)
    W[rng.random(W.shape) < 0.1] = 0.0
    W[:, 0] = 0.0 if N > 1 else W[:, 0]                        # an all-zero column: exponent 127
    qm = quantize(W, f"{fmt[0]}+{fmt[1]}", arithmetic=arith, group_size=G)
    codes, zeros, mant, exp = spec_encode(W, fmt[0], fmt[1], arith, G)
    np.testing.assert_array_equal(qm.exp, exp)
    np.testing.assert_array_equal(qm.mant, mant)
    np.testing.assert_array_equal(qm.zeros, zeros)
    np.testing.assert_array_equal(qm.codes, codes)


def test_out_of_range_exponents_are_rejected_not_clamped():
    with pytest.raises(ValueError, match=r"exponents must lie in \[-128, 127\]"):
        quantize(np.full((4, 1), 1e-40), "4+3")
    with pytest.raises(ValueError, match=r"exponents must lie in \[-128, 127\]"):
        quantize(np.full((4, 1), 1e300), "4+3")


def test_float32_and_float64_encoders_differ_where_the_spec_says():
    """The spec's precision rule is not a no-op: float32 weights quantized in float64 give other mantissas."""
    rng = np.random.default_rng(0)
    differ = 0
    for _ in range(40):
        W = (rng.standard_t(4, size=(64, 16)) * 0.05).astype(np.float32)
        a, b = quantize(W, "4+3", group_size=8), quantize(W.astype(np.float64), "4+3", group_size=8)
        differ += int(not np.array_equal(a.mant, b.mant))
        c = spec_encode(W, 4, 3, "own", 8)
        np.testing.assert_array_equal(a.mant, c[2])
    assert differ > 0
