"""golden.vectors: one stimulus generator, one output-scale rule, the oracle's row order."""

import numpy as np
import pytest

from golden.format import ACT_MAX, ACT_MIN
from golden.oracle import gemv_int, requantize, row_activations
from golden.quantize import quantize
from golden.vectors import gemv_vectors, output_scale, random_vectors


def test_a_seed_reproduces_the_vectors_and_the_expectation_is_the_oracles():
    first, again = (random_vectors(np.random.default_rng(4), "4+3", 30, 7, lanes=4, group_size=8,
                                   column_scales=(0.1, 2.0)) for _ in range(2))
    assert np.array_equal(first.a, again.a) and np.array_equal(first.packed.data, again.packed.data)
    assert first.a.dtype == np.int8 and ACT_MIN <= first.a.min() and first.a.max() <= ACT_MAX
    assert np.array_equal(first.expected, gemv_int(first.qm, first.a)) and first.requant is None
    assert first.packed.lanes == 4


@pytest.mark.parametrize("saturate", [0.0, 0.1, 0.5])
def test_the_output_scale_saturates_about_the_asked_fraction(saturate):
    v = random_vectors(np.random.default_rng(1), "4+4", 64, 200, lanes=8, requant=True, saturate=saturate)
    assert np.array_equal(v.expected, requantize(v.y, *v.requant))
    clamped = np.mean((v.expected == ACT_MAX) | (v.expected == ACT_MIN))
    assert abs(clamped - saturate) <= 0.03
    with pytest.raises(ValueError, match=r"saturate must be a number in \[0, 1\)"):
        output_scale(v.qm, v.y, saturate=1.0)


def test_row_activations_follow_the_permutation_and_pad_to_pairs():
    rng = np.random.default_rng(2)
    K = 7
    perm = rng.permutation(K)
    qm = quantize(rng.standard_normal((K, 3)), "4+3", perm=perm)
    a = rng.integers(ACT_MIN, ACT_MAX + 1, size=K).astype(np.int8)
    rows = row_activations(qm, a)
    assert rows.shape == (qm.K_pad,) == (8,) and rows[-1] == 0
    assert np.array_equal(rows[:K], a[perm])
    assert np.array_equal(gemv_vectors(qm, a, lanes=2).rows, rows)


def test_given_requantization_parameters_are_used_and_a_packed_stream_must_match_the_lanes():
    v = random_vectors(np.random.default_rng(3), "4+3", 20, 5, lanes=2, requant=True)
    again = gemv_vectors(v.qm, v.a, lanes=2, requant=v.requant, packed=v.packed)
    assert np.array_equal(again.expected, v.expected)
    with pytest.raises(ValueError, match="packed stream is for 2 lanes, the tile has 4"):
        gemv_vectors(v.qm, v.a, lanes=4, packed=v.packed)
