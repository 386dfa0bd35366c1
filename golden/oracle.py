"""The bit-exact integer GEMV oracle: what the tile computes, in NumPy.

Specified in ``golden/FORMAT.md`` section 3.  Every intermediate is checked
against the width the hardware gives it (int32 slot accumulators, the wide
accumulator), so an overflow is an error here rather than a silent wrap.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from golden.checks import check_number
from golden.format import (
    ACT_MAX,
    ACT_MIN,
    OUT_MAX,
    OUT_MIN,
    REQUANT_MULT_BITS,
    REQUANT_SHIFT_MAX,
    REQUANT_SHIFT_MIN,
)
from golden.quantize import QuantizedMatrix

__all__ = ["gemv_int", "gemv_parts", "requant_params", "requantize", "check_activations", "row_activations"]

_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1


def check_activations(a, K: int) -> np.ndarray:
    """Validate INT8 activations of length K; return them as int64."""
    a = np.asarray(a)
    if a.shape != (K,):
        raise ValueError(f"activations must have shape ({K},) to match K={K}, got {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"activations must be integers (int8 codes), got dtype {a.dtype}")
    a = a.astype(np.int64)
    if a.size and (a.min() < ACT_MIN or a.max() > ACT_MAX):
        raise ValueError(f"activations must lie in [{ACT_MIN}, {ACT_MAX}], got [{a.min()}, {a.max()}]")
    return a


def row_activations(qm: QuantizedMatrix, a) -> np.ndarray:
    """Activations in the row order of ``qm`` (perm applied), zero-padded to K_pad (int64).

    The order the tile reads them in: pair ``i`` of a block is rows ``2i`` and ``2i + 1``.
    """
    a = check_activations(a, qm.K)
    out = np.zeros(qm.K_pad, dtype=np.int64)
    out[: qm.K] = a[qm.perm] if qm.perm is not None else a
    return out


def gemv_parts(qm: QuantizedMatrix, a):
    """The oracle's intermediates: ``(acc, sa, corr)``.

    Returns
    -------
    acc : int64 (n_groups, n_slots, N)
        Raw slot sums ``sum a * q`` (q on the accumulation grid).
    sa : int64 (n_groups, n_slots)
        Activation sums of the same rows, shared by all columns.
    corr : int64 (n_groups, n_slots, N)
        ``acc - z * sa``.
    """
    ar = row_activations(qm, a)
    q = qm.grid_codes()
    G, ng = qm.group_size, qm.n_groups
    rows = ng * G
    # Whole groups (zero rows past K_pad contribute nothing), then one slot per row parity.
    ag = np.zeros(rows, dtype=np.int64)
    ag[: qm.K_pad] = ar
    qg = np.zeros((rows, qm.N), dtype=np.int64)
    qg[: qm.K_pad] = q
    ag = ag.reshape(ng, G)
    qg = qg.reshape(ng, G, qm.N)
    slots = [slice(0, None, 2), slice(1, None, 2)] if qm.n_slots == 2 else [slice(None)]
    acc = np.stack([np.einsum("gk,gkn->gn", ag[:, sl], qg[:, sl]) for sl in slots], axis=1)
    sa = np.stack([ag[:, sl].sum(axis=1) for sl in slots], axis=1)
    corr = acc - qm.zeros * sa[:, :, None]
    for name, x in (("slot accumulator", acc), ("activation sum", sa), ("corrected sum", corr)):
        if x.size and (x.min() < _INT32_MIN or x.max() > _INT32_MAX):
            raise OverflowError(f"{name} exceeds int32 (K={qm.K} beyond the format's bound "
                                f"{qm.fmt.max_k_int32(qm.arithmetic)})")
    return acc, sa, corr


def gemv_int(qm: QuantizedMatrix, a) -> np.ndarray:
    """Exact integer GEMV ``y[n] = sum_g sum_t m[g,t,n] * corr[g,t,n]`` (int64, shape (N,)).

    ``a`` are INT8 activations in the original channel order; the real-valued
    result is ``y * s_a * 2.0**-qm.exp``.
    """
    _, _, corr = gemv_parts(qm, a)
    # |m * corr| < 2**16 * 2**31 and at most n_groups*n_slots terms: check before int64 can wrap.
    bound = int(np.abs(corr).max(initial=0)) * int(qm.mant.max(initial=0)) * qm.n_groups * qm.n_slots
    if bound >= 1 << 63:
        raise OverflowError("wide accumulator would exceed int64")
    return (qm.mant * corr).sum(axis=(0, 1))


def requant_params(qm: QuantizedMatrix, s_a: float, s_out: float):
    """Per-column fixed-point multiplier and shift that map ``y`` to INT8 outputs of scale ``s_out``.

    Chooses, per column, the largest shift in [1, 63] whose multiplier
    ``M = rint(s_a * 2**-exp / s_out * 2**shift)`` fits REQUANT_MULT_BITS bits
    (FORMAT.md section 3, 'Choosing M and s').  Any finite positive scales are
    accepted: the ratio is formed from their mantissas and exponents, so no step
    overflows or underflows, and it equals the float64 steps wherever those stay
    normal; a ratio below ``2**-65`` gives ``shift = 63``, ``M = 0``.

    Returns
    -------
    M : int64 (N,)
    shift : int64 (N,)

    Raises
    ------
    TypeError, ValueError
        When ``s_a`` or ``s_out`` is not a number in ``(0, 1.8e308]``; ValueError when a
        column's ratio is too large for the multiplier.
    """
    s_a = check_number("s_a", s_a, 0, sys.float_info.max, open_low=True)
    s_out = check_number("s_out", s_out, 0, sys.float_info.max, open_low=True)
    mmax = (1 << REQUANT_MULT_BITS) - 1
    too_large = ValueError(f"requantization ratio s_a*2**-exp/s_out too large for a {REQUANT_MULT_BITS}-bit "
                           f"multiplier with shift >= {REQUANT_SHIFT_MIN}; choose a larger s_out")
    m_a, e_a = math.frexp(s_a)
    m_out, e_out = math.frexp(s_out)
    k = e_a - e_out - qm.exp.astype(np.int64)          # ratio = (m_a / m_out) * 2**k, m_a / m_out in (1/2, 2)
    if np.any(k > REQUANT_MULT_BITS + 1):               # ratio > 2**17: M > mmax even at the smallest shift
        raise too_large
    tiny = k < -65                                      # ratio < 2**-65: rint(ratio * 2**63) = 0
    ratio = np.ldexp(m_a / m_out, np.where(tiny, 0, k))    # real multiplier per column
    shift = np.floor(np.log2(mmax / ratio)).astype(np.int64)
    shift = np.where(tiny, REQUANT_SHIFT_MAX, np.clip(shift, REQUANT_SHIFT_MIN, REQUANT_SHIFT_MAX))
    ratio = np.where(tiny, 0.0, ratio)
    M = np.rint(ratio * np.exp2(shift.astype(np.float64)))
    over = M > mmax
    shift = np.where(over, shift - 1, shift)
    M = np.rint(ratio * np.exp2(shift.astype(np.float64)))
    if np.any(M > mmax) or np.any(shift < REQUANT_SHIFT_MIN):
        raise too_large
    return M.astype(np.int64), shift


def requantize(y, M, shift) -> np.ndarray:
    """``clamp((y * M + 2**(shift-1)) >> shift, -128, 127)`` exactly, as int8.

    Computed with Python integers so that no intermediate can wrap.
    """
    y = np.asarray(y, dtype=np.int64)
    M = np.broadcast_to(np.asarray(M, dtype=np.int64), y.shape)
    shift = np.broadcast_to(np.asarray(shift, dtype=np.int64), y.shape)
    if M.size and (M.min() < 0 or M.max() >= 1 << REQUANT_MULT_BITS):
        raise ValueError(f"M must lie in [0, {(1 << REQUANT_MULT_BITS) - 1}]")
    if shift.size and (shift.min() < REQUANT_SHIFT_MIN or shift.max() > REQUANT_SHIFT_MAX):
        raise ValueError(f"shift must lie in [{REQUANT_SHIFT_MIN}, {REQUANT_SHIFT_MAX}]")
    out = [min(max((int(v) * int(m) + (1 << (int(s) - 1))) >> int(s), OUT_MIN), OUT_MAX)
           for v, m, s in zip(y.ravel(), M.ravel(), shift.ravel())]
    return np.array(out, dtype=np.int8).reshape(y.shape)
