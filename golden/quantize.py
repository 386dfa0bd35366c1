"""Quantizers of the septet format family (weights) and of INT8 activations.

All quantizers return a :class:`QuantizedMatrix`, the one container that the
packer, the integer oracle, the quality study and the testbenches read.  The
arithmetic is specified in ``golden/FORMAT.md`` section 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from golden.checks import check_int
from golden.format import (
    ACT_MAX,
    EXPONENT_BITS,
    EXPONENT_MAX,
    EXPONENT_MIN,
    SCALE_BITS,
    Arithmetic,
    Format,
    parse_arithmetic,
    parse_format,
)

__all__ = [
    "QuantizedMatrix",
    "quantize",
    "quantize_symmetric",
    "quantize_activations",
    "activation_scales",
    "ACT_REAL_MIN",
    "ACT_REAL_MAX",
    "salience_permutation",
    "gptq_codes",
    "quantize_table",
    "gptq_table_codes",
    "NL_TABLES",
    "TableQuantizedMatrix",
    "CLIP_MODES",
]

#: Range-clipping modes of :func:`quantize`.
CLIP_MODES = ("none", "mse", "output")
#: Shrink factors of the range searched by ``clip="mse"`` and ``clip="output"`` (1.0 = no clipping).
_CLIP_GRID = np.linspace(1.0, 0.5, 11)
_MANT_MAX = (1 << SCALE_BITS) - 1
#: Elements per column chunk quantized at once (bounds float64 temporaries to a few tens of MB).
_CHUNK_ELEMENTS = 1 << 21


class _PairedGroups:
    """Row shape shared by the quantized matrices: ``K`` rows in pairs, groups of ``group_size`` rows."""

    @property
    def K_pad(self) -> int:
        """K rounded up to whole pairs."""
        return self.K + (self.K % 2)

    @property
    def n_groups(self) -> int:
        """Groups along K (a last, shorter group included)."""
        return -(-self.K_pad // self.group_size)


@dataclass(frozen=True, eq=False)
class QuantizedMatrix(_PairedGroups):
    """A weight matrix quantized to a septet format.

    Attributes
    ----------
    fmt : Format
        Slot widths.
    arithmetic : Arithmetic
        ``OWN`` (a scale and zero per slot) or ``SHARED`` (one grid).
    K, N : int
        Original shape of ``W[K, N]``.
    group_size : int
        Rows per group along K (even); ``K_pad`` for per-column quantization.
    codes : ndarray of uint8, shape (K_pad, N)
        Unsigned codes; row ``r`` holds input channel ``perm[r]``.  Odd rows
        hold the odd slot's own code (not expanded onto the shared grid).
    zeros : ndarray of int64, shape (n_groups, n_slots, N)
        Integer zero points, one per group, slot scale and column.
    mant : ndarray of int64, shape (n_groups, n_slots, N)
        Unsigned ``SCALE_BITS``-bit scale mantissas.
    exp : ndarray of int64, shape (N,)
        Column exponents: a group's scale is ``mant * 2.0**-exp``.
    perm : ndarray of int64, shape (K,), or None
        Input-channel order of the rows (``None``: identity).
    scale_bits : int
        Width of the scale mantissas (``SCALE_BITS``, the packed format's, by
        default).  A narrower width is a golden-only study option: the
        mantissas still fit the packed 16-bit field, and ``bits_per_weight``
        counts the narrower width.
    """

    fmt: Format
    arithmetic: Arithmetic
    K: int
    N: int
    group_size: int
    codes: np.ndarray
    zeros: np.ndarray
    mant: np.ndarray
    exp: np.ndarray
    perm: "np.ndarray | None" = None
    scale_bits: int = SCALE_BITS

    @property
    def n_slots(self) -> int:
        return len(self.fmt.group_slots(self.arithmetic))

    def group_of_row(self) -> np.ndarray:
        """Group index of every row, shape (K_pad,)."""
        return np.arange(self.K_pad) // self.group_size

    def slot_of_row(self) -> np.ndarray:
        """Slot-scale index of every row (0 even / 1 odd for OWN, 0 for SHARED)."""
        parity = np.arange(self.K_pad) % 2
        return parity if self.arithmetic is Arithmetic.OWN else np.zeros_like(parity)

    def grid_codes(self) -> np.ndarray:
        """Codes on the accumulation grid, int64 (K_pad, N): odd codes shifted for SHARED."""
        q = self.codes.astype(np.int64)
        shift = self.fmt.odd_shift(self.arithmetic)
        if shift:
            q[1::2] <<= shift
        return q

    def row_zeros(self) -> np.ndarray:
        """Zero point that applies to every code, int64 (K_pad, N)."""
        return self.zeros[self.group_of_row(), self.slot_of_row()]

    def row_scales(self) -> np.ndarray:
        """Scale that applies to every code, float64 (K_pad, N)."""
        mant = self.mant[self.group_of_row(), self.slot_of_row()].astype(np.float64)
        return mant * np.exp2(-self.exp.astype(np.float64))[None, :]

    def dequantize(self, dtype=np.float64) -> np.ndarray:
        """The represented weights (K, N) in the original channel order.

        Computed in float64 (exact: a 16-bit mantissa times a 9-bit code
        difference) and cast to ``dtype``, column chunk by column chunk.
        """
        out = np.empty((self.K, self.N), dtype=dtype)
        rows_out = self.perm if self.perm is not None else slice(None)
        shift = self.fmt.odd_shift(self.arithmetic)
        ng, G = self.n_groups, self.group_size
        rows = ng * G
        chunk = max(1, _CHUNK_ELEMENTS // rows)
        for c0 in range(0, self.N, chunk):
            cols = slice(c0, min(c0 + chunk, self.N))
            q = np.zeros((rows, cols.stop - c0), dtype=np.int16)
            q[: self.K_pad] = self.codes[:, cols]
            if shift:
                q[1::2] <<= shift
            # Rows as (group, pair, parity): slot scales broadcast over the pairs of their group.
            q = q.reshape(ng, G // 2, 2, -1)
            scale = self.mant[:, :, cols] * np.exp2(-self.exp[cols].astype(np.float64))
            zero = self.zeros[:, :, cols]
            w = (q - zero[:, None]) * scale[:, None]
            out[rows_out, cols] = w.reshape(rows, -1)[: self.K]
        return out

    @property
    def stored_bits_per_column(self) -> int:
        """Bits stored per column: codes, group headers and the exponent."""
        bits = self.fmt.stored_bits_per_column(self.K, self.group_size, self.arithmetic)
        # narrower mantissas (a study option) save SCALE_BITS - scale_bits per slot scale per group
        return bits - self.n_groups * self.n_slots * (SCALE_BITS - self.scale_bits)

    @property
    def bits_per_weight(self) -> float:
        """Stored bits per original weight, scales, zero points and exponent included."""
        return self.stored_bits_per_column / self.K


def _check_weights(W) -> np.ndarray:
    if not isinstance(W, np.ndarray):
        raise TypeError(f"W must be a NumPy array of shape (K, N), got {type(W).__name__}")
    if W.ndim != 2:
        raise ValueError(f"W must be 2-D (K, N), got shape {W.shape}")
    if W.shape[0] < 1 or W.shape[1] < 1:
        raise ValueError(f"W must have K >= 1 rows and N >= 1 columns, got shape {W.shape}")
    if not (np.issubdtype(W.dtype, np.floating) or np.issubdtype(W.dtype, np.integer)):
        raise TypeError(f"W must have a real floating or integer dtype, got {W.dtype}")
    if np.issubdtype(W.dtype, np.floating) and not np.all(np.isfinite(W)):
        bad = np.argwhere(~np.isfinite(W))[0]
        raise ValueError(f"W must be finite; W[{bad[0]}, {bad[1]}] = {W[tuple(bad)]}")
    return W


def _check_group_size(group_size, K_pad: int) -> int:
    if group_size is None:
        return K_pad
    wrong_type = not isinstance(group_size, (int, np.integer)) or isinstance(group_size, bool)
    if wrong_type or group_size < 2 or group_size % 2:
        raise (TypeError if wrong_type else ValueError)(f"group_size must be an even integer >= 2 (or None for per column), got {group_size!r}")
    return int(min(group_size, K_pad))


def _check_int32_bound(fmt: Format, arithmetic: Arithmetic, G: int, K: int) -> None:
    """Refuse a group longer than the int32 slot accumulator holds (FORMAT.md section 3): the oracle would."""
    kmax = fmt.max_k_int32(arithmetic)
    if G > kmax:
        what = f"K={K} (one group per column)" if G >= K else f"group_size={G}"
        raise ValueError(f"{what} exceeds the int32 accumulator bound of format {fmt.name} with "
                         f"arithmetic={arithmetic.value!r}: at most {kmax} rows per group; choose group_size <= {kmax}")


def _check_perm(perm, K: int) -> "np.ndarray | None":
    if perm is None:
        return None
    perm = np.asarray(perm)
    message = f"perm must be a permutation of range(K) = range({K}) as an integer array"
    if not np.issubdtype(perm.dtype, np.integer):
        raise TypeError(f"{message}, got dtype {perm.dtype}")
    if perm.shape != (K,) or not np.array_equal(np.sort(perm), np.arange(K)):
        raise ValueError(message)
    return perm.astype(np.int64)


def _column_exponents(max_scale: np.ndarray, mant_max: int = _MANT_MAX) -> np.ndarray:
    """Largest exponent per column that keeps the column's largest mantissa within ``mant_max``."""
    exp = np.full(max_scale.shape, EXPONENT_MAX, dtype=np.int64)
    pos = max_scale > 0
    exp[pos] = np.floor(np.log2(mant_max / max_scale[pos])).astype(np.int64)
    # floor(log2) of a float ratio can land one too high by rounding: make sure it fits.
    over = pos & (np.rint(max_scale * np.exp2(exp.astype(np.float64))) > mant_max)
    exp[over] -= 1
    if np.any(exp < EXPONENT_MIN) or np.any(exp > EXPONENT_MAX):
        raise ValueError(
            f"weight scales out of the representable range: column exponents must lie in "
            f"[{EXPONENT_MIN}, {EXPONENT_MAX}] (EXPONENT_BITS={EXPONENT_BITS}); |W| is too large or too small")
    return exp


def _covered_levels(levels, zero_step):
    """Steps of the range both slots can represent: 2**E - 1 (own), the odd grid's top level (shared)."""
    return (levels - 1) // zero_step * zero_step


def _grid_params(lo, hi, levels: int, zero_step: int, exp_scale, mant_max: int = _MANT_MAX):
    """Scale mantissas and zero points covering [lo, hi] (lo <= 0 <= hi) with ``levels`` levels.

    ``exp_scale`` is ``2**exp`` broadcast to the shape of lo; the zero point is a
    multiple of ``zero_step``.  Returns (mant, zero, scale) with scale the exact
    represented step ``mant / 2**exp``.
    """
    span = hi - lo
    raw_scale = span / _covered_levels(levels, zero_step)
    # Rounding the mantissa up keeps [lo, hi] inside the grid: no error beyond half a step.
    mant = np.clip(np.ceil(raw_scale * exp_scale), 0, mant_max).astype(np.int64)
    # A nonzero range must not round to a zero scale.
    mant = np.where((span > 0) & (mant == 0), 1, mant)
    scale = mant / exp_scale
    safe = np.where(scale > 0, scale, 1.0)
    zmax = (levels - 1) // zero_step * zero_step
    zero = np.clip(np.rint(-lo / safe / zero_step) * zero_step, 0, zmax).astype(np.int64)
    zero = np.where(scale > 0, zero, 0)
    return mant, zero, scale


def _codes_for(w, inv_scale, zero, step: int, max_code: int) -> np.ndarray:
    """Nearest code on a grid of spacing ``step`` levels (``q = c * step``), clipped, as uint8.

    ``inv_scale`` is ``1 / scale`` (0 where the scale is 0, which maps every
    weight to the zero point, itself 0 there).
    """
    c = w * inv_scale
    c += zero
    if step != 1:
        c /= step
    np.rint(c, out=c)
    np.clip(c, 0, max_code, out=c)
    return c.astype(np.uint8)


def quantize(W, fmt="4+3", *, arithmetic="own", group_size=None, clip="none", perm=None,
             symmetric=False, importance=None, scale_bits=SCALE_BITS) -> QuantizedMatrix:
    """Quantize ``W[K, N]`` to a septet format with integer zero points.

    Parameters
    ----------
    W : ndarray, shape (K, N)
        Finite weights; K is the reduction dimension.
    fmt : str or Format
        Slot widths, e.g. ``"4+3"`` (3.5-bit), ``"4+4"``, ``"3+3"``, ``"8+8"``.
    arithmetic : {"own", "shared"}
        Own grids per slot, or one shared grid (see :class:`golden.format.Arithmetic`).
    group_size : int or None
        Rows per group along K (even, >= 2); ``None`` quantizes per column.
    clip : {"none", "mse", "output"}
        ``"mse"`` shrinks each group's range by the factor in 1.0 ... 0.5 that
        minimises that group's weight squared error (clipping judged by weight
        error; see FORMAT.md for why that can hurt perplexity).  ``"output"``
        minimises ``sum_k importance[k] * (w_hat - w)**2`` instead: the expected
        squared output error for uncorrelated inputs of second moment
        ``importance[k] = E[x_k**2]`` (calibration activations).  Every candidate
        shares the column's exponent, so the result is exactly representable.
    perm : array of int, shape (K,), optional
        Input-channel order: row ``r`` of the quantized matrix holds channel
        ``perm[r]``, so even (wider) slots go to ``perm[0], perm[2], ...``.
    symmetric : bool
        Symmetric baseline: zero point fixed at ``2**(b-1)``, scale ``max|w| / (2**(b-1) - 1)``.
    importance : array, shape (K,), optional
        Non-negative weight per input channel (original order); required by ``clip="output"``.
    scale_bits : int
        Width of the group scale mantissas, 2 ... ``SCALE_BITS`` (default: the
        packed format's).  Narrower mantissas under the per-column exponent are
        a study option (cheaper group headers); the RTL builds ``SCALE_BITS``.

    Returns
    -------
    QuantizedMatrix
    """
    W = _check_weights(W)
    fmt = parse_format(fmt)
    arithmetic = parse_arithmetic(arithmetic)
    fmt.check_arithmetic(arithmetic)
    if clip not in CLIP_MODES:
        raise ValueError(f"clip must be one of {CLIP_MODES}, got {clip!r}")
    if symmetric and clip != "none":
        raise ValueError("clip must be 'none' when symmetric=True")
    if (clip == "output") != (importance is not None):
        raise ValueError("importance (one non-negative value per input channel) is required by, and only "
                         "used with, clip='output'")
    check_int("scale_bits", scale_bits, 2, SCALE_BITS)
    K, N = W.shape
    K_pad = K + (K % 2)
    G = _check_group_size(group_size, K_pad)
    _check_int32_bound(fmt, arithmetic, G, K)
    perm = _check_perm(perm, K)
    if importance is not None:
        importance = np.asarray(importance, dtype=np.float64)
        if importance.shape != (K,) or not np.all(np.isfinite(importance)) or np.any(importance < 0):
            raise ValueError(f"importance must be {K} finite non-negative values (one per input channel)")
        if perm is not None:
            importance = importance[perm]

    n_groups = -(-K_pad // G)
    # Columns are independent: quantize them in chunks so temporaries stay small.
    chunk = max(1, _CHUNK_ELEMENTS // (n_groups * G))
    codes = np.empty((K_pad, N), dtype=np.uint8)
    zeros = np.empty((n_groups, len(fmt.group_slots(arithmetic)), N), dtype=np.int64)
    mant = np.empty_like(zeros)
    exp = np.empty(N, dtype=np.int64)
    for c0 in range(0, N, chunk):
        cols = slice(c0, min(c0 + chunk, N))
        Wc = W[:, cols]
        if perm is not None:
            Wc = Wc[perm]
        codes[:, cols], zeros[:, :, cols], mant[:, :, cols], exp[cols] = _quantize_columns(
            Wc, fmt, arithmetic, G, clip, symmetric, importance, (1 << int(scale_bits)) - 1)
    return QuantizedMatrix(fmt=fmt, arithmetic=arithmetic, K=K, N=N, group_size=G,
                           codes=codes, zeros=zeros, mant=mant, exp=exp, perm=perm, scale_bits=int(scale_bits))


def _quantize_columns(W, fmt: Format, arithmetic: Arithmetic, G: int, clip: str, symmetric: bool,
                      importance=None, mant_max: int = _MANT_MAX):
    """Quantize the (already permuted) columns ``W[K, n]``: returns (codes, zeros, mant, exp)."""
    K, N = W.shape
    K_pad = K + (K % 2)
    n_groups = -(-K_pad // G)
    # Rows of each group, padded with zeros (zero is always inside the range) to whole groups.
    # float32 weights are quantized in float32 (half the memory traffic), anything else in float64.
    rows = n_groups * G
    wg = np.zeros((rows, N), dtype=np.float32 if W.dtype == np.float32 else np.float64)
    wg[:K] = W
    wg = wg.reshape(n_groups, G, N)
    # Row weights of the clipping error: 1 (weight MSE) or the channel importance; 0 on padding rows.
    valid = np.zeros(rows, dtype=np.float64)
    valid[:K] = 1.0 if importance is None else importance
    valid = valid.reshape(n_groups, G)

    shift = fmt.odd_shift(arithmetic)
    if arithmetic is Arithmetic.OWN:
        # slot t: rows t::2 with width fmt.slot_bits[t], step 1
        slot_rows = [(slice(0, None, 2), fmt.even_bits, 1), (slice(1, None, 2), fmt.odd_bits, 1)]
    else:
        slot_rows = [(slice(None), fmt.even_bits, 1 << shift)]

    # Ranges per group and slot, always including zero.
    los, his = [], []
    for sl, _, _ in slot_rows:
        x = wg[:, sl, :]
        los.append(np.minimum(x.min(axis=1), 0.0))
        his.append(np.maximum(x.max(axis=1), 0.0))
    lo = np.stack(los, axis=1)          # (n_groups, n_slots, N)
    hi = np.stack(his, axis=1)
    levels = np.array([1 << b for _, b, _ in slot_rows])[None, :, None]
    zero_step = np.array([st for _, _, st in slot_rows])

    if symmetric:
        half = (levels >> 1)
        amax = np.maximum(-lo, hi)
        raw_scale = amax / (half - 1)
    else:
        raw_scale = (hi - lo) / _covered_levels(levels, zero_step[None, :, None])
    exp = _column_exponents(raw_scale.max(axis=(0, 1)), mant_max)
    exp_scale = np.exp2(exp.astype(np.float64))[None, None, :]

    def params_for(alpha):
        l, h = lo * alpha, hi * alpha
        mants, zeros, scales = [], [], []
        for t, (_, b, st) in enumerate(slot_rows):
            if symmetric:
                half_t = 1 << (b - 1)
                amax_t = np.maximum(-l[:, t], h[:, t])
                mant = np.clip(np.ceil(amax_t / (half_t - 1) * exp_scale[:, 0]), 0, mant_max).astype(np.int64)
                mant = np.where((amax_t > 0) & (mant == 0), 1, mant)
                zero = np.full_like(mant, half_t)
                scale = mant / exp_scale[:, 0]
            else:
                mant, zero, scale = _grid_params(l[:, t], h[:, t], 1 << b, st, exp_scale[:, 0], mant_max)
            mants.append(mant)
            zeros.append(zero)
            scales.append(scale)
        return np.stack(mants, 1), np.stack(zeros, 1), np.stack(scales, 1)

    def codes_and_error(mant, zero, scale, want_error):
        codes = np.empty((n_groups, G, N), dtype=np.uint8)
        err = np.zeros((n_groups, len(slot_rows), N)) if want_error else None
        inv = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale > 0).astype(wg.dtype)
        for t, (sl, b, st) in enumerate(slot_rows):
            if arithmetic is Arithmetic.SHARED:
                # even rows on the full grid, odd rows on every step-th level
                parts = ((slice(0, None, 2), 1, (1 << fmt.even_bits) - 1),
                         (slice(1, None, 2), st, (1 << fmt.odd_bits) - 1))
            else:
                parts = ((sl, 1, (1 << b) - 1),)
            z = zero[:, t][:, None, :]
            for rsl, pst, pmax in parts:
                x = wg[:, rsl, :]
                c = _codes_for(x, inv[:, t][:, None, :], z.astype(wg.dtype), pst, pmax)
                codes[:, rsl, :] = c
                if want_error:
                    rec = (c.astype(np.float64) * pst - z) * scale[:, t][:, None, :]
                    err[:, t] += (((rec - x) ** 2) * valid[:, rsl, None]).sum(axis=1)
        return codes, err

    mant, zero, scale = params_for(1.0)
    codes, err = codes_and_error(mant, zero, scale, want_error=clip != "none")
    if clip != "none":
        for alpha in _CLIP_GRID[1:]:
            m2, z2, s2 = params_for(alpha)
            c2, e2 = codes_and_error(m2, z2, s2, want_error=True)
            better = e2 < err                       # (n_groups, n_slots, N)
            mant = np.where(better, m2, mant)
            zero = np.where(better, z2, zero)
            err = np.where(better, e2, err)
            # codes follow their slot's choice
            for t, (sl, _, _) in enumerate(slot_rows):
                sel = better[:, t][:, None, :]
                codes[:, sl, :] = np.where(sel, c2[:, sl, :], codes[:, sl, :])

    codes = codes.reshape(rows, N)[:K_pad]
    if K_pad != K:
        # The padding row (odd slot) holds the zero point: it dequantizes to exactly 0.
        last_g = (K_pad - 1) // G
        codes[K_pad - 1] = zero[last_g, -1] >> shift
    return codes, zero, mant, exp


def quantize_symmetric(W, fmt="4+4", *, group_size=None, perm=None) -> QuantizedMatrix:
    """Symmetric baseline (the seed's INT4): zero point fixed at ``2**(b-1)``, own grids.

    Codes ``q`` in ``[0, 2**b - 1]`` represent ``(q - 2**(b-1)) * s`` with
    ``s = max|w| / (2**(b-1) - 1)``, so the same tile computes it.
    """
    return quantize(W, fmt, arithmetic="own", group_size=group_size, perm=perm, symmetric=True)


#: Largest ``max|x|`` a real activation vector may have: float32's largest finite value.  It
#: keeps ``y * s_a * 2**-e`` far inside float64 for every int64 ``y`` and exponent ``e``.
ACT_REAL_MAX = float(np.finfo(np.float32).max)
#: Smallest nonzero ``max|x|``: float32's smallest normal value, so that ``s_a = max|x| / 127``
#: is a normal float64 (a subnormal ``max|x|`` would give ``s_a = 0`` or a rounded-off scale).
ACT_REAL_MIN = float(np.finfo(np.float32).tiny)


def activation_scales(amax, name: str = "x") -> np.ndarray:
    """The symmetric INT8 activation scale ``s_a = max|x| / 127`` (1.0 where ``max|x| = 0``).

    Parameters
    ----------
    amax : float or array of float
        ``max|x|`` of one activation vector, or of each row of a batch.
    name : str
        The activations' name, for the message.

    Raises
    ------
    ValueError
        When a nonzero ``amax`` lies outside ``[ACT_REAL_MIN, ACT_REAL_MAX]`` (float32's
        normal range), or is not finite.
    """
    amax = np.asarray(amax, dtype=np.float64)
    bad = (amax != 0) & ~((amax >= ACT_REAL_MIN) & (amax <= ACT_REAL_MAX))
    if np.any(bad):
        where = np.argwhere(bad)[0]
        at = f" (row {int(where[0])})" if amax.ndim else ""
        raise ValueError(f"{name} must have max|{name}| = 0 or in [{ACT_REAL_MIN:g}, {ACT_REAL_MAX:g}] "
                         f"(float32's normal range), got max|{name}| = {float(amax[tuple(where)])!r}{at}")
    return np.where(amax > 0, amax / ACT_MAX, 1.0)


def quantize_activations(x) -> "tuple[np.ndarray, float]":
    """Symmetric per-tensor INT8 quantization of an activation vector.

    Returns ``(a, s_a)`` with ``a = clip(rint(x / s_a), -127, 127)`` as int8 and
    ``s_a = max|x| / 127`` (1.0 for an all-zero vector); ``max|x|`` must be 0 or
    lie in ``[ACT_REAL_MIN, ACT_REAL_MAX]`` (see :func:`activation_scales`).
    """
    x = np.asarray(x)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"x must be a non-empty 1-D activation vector, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise TypeError(f"x must be real numbers, got dtype {x.dtype}")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"x must be finite; x[{int(np.argmax(~np.isfinite(x)))}] is not")
    s_a = float(activation_scales(np.abs(x).max()))
    a = np.clip(np.rint(x / s_a), -ACT_MAX, ACT_MAX).astype(np.int8)
    return a, s_a


def salience_permutation(importance) -> np.ndarray:
    """Input-channel order that gives the wider even slots to the most important channels.

    Parameters
    ----------
    importance : array, shape (K,)
        Non-negative salience per input channel (e.g. the mean squared
        calibration activation, or that times the column norm of W).

    Returns
    -------
    ndarray of int64, shape (K,)
        ``perm`` for :func:`quantize`: ``perm[2i]`` runs over the most important
        ceil(K/2) channels and ``perm[2i+1]`` over the rest, each half in
        ascending channel order (so group ranges stay local).
    """
    imp = np.asarray(importance, dtype=np.float64)
    if imp.ndim != 1 or imp.size == 0 or not np.all(np.isfinite(imp)) or np.any(imp < 0):
        raise ValueError("importance must be a non-empty 1-D array of finite non-negative values")
    K = imp.size
    order = np.argsort(-imp, kind="stable")
    top = np.sort(order[: (K + 1) // 2])
    rest = np.sort(order[(K + 1) // 2:])
    perm = np.empty(K, dtype=np.int64)
    perm[0::2] = top
    perm[1::2] = rest
    return perm


def _gptq_order_and_factor(W, H, damp: float, order=None):
    """Processing order (descending diagonal unless given) and the upper Cholesky factor of the damped H^-1.

    Dead channels (zero diagonal) get a unit diagonal and zero weight (modifies ``W`` and ``H`` in place).
    """
    K = H.shape[0]
    diag = np.diag(H).copy()
    dead = diag <= 0
    H[dead, dead] = 1.0
    W[dead] = 0.0
    H[np.diag_indices(K)] += damp * float(np.mean(np.diag(H)))
    if order is None:
        order = np.argsort(-np.diag(H), kind="stable")
    Hp = H[np.ix_(order, order)]
    # Upper Cholesky factor of H^-1: row i gives the update of the later channels.
    return order, np.linalg.cholesky(np.linalg.inv(Hp)).T


def _gptq_feedback(Wp, U, quant_row, block: int) -> None:
    """GPTQ's loop over the channels ``Wp`` (processing order, modified): ``quant_row(i, w)`` returns
    the represented row; its error, scaled by ``U``, is pushed onto the channels after it (lazy blocks)."""
    K = Wp.shape[0]
    for i1 in range(0, K, block):
        i2 = min(i1 + block, K)
        W1 = Wp[i1:i2].copy()
        E1 = np.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        for j in range(i2 - i1):
            q = quant_row(i1 + j, W1[j])
            e = (W1[j] - q) / U1[j, j]
            W1[j + 1:] -= np.outer(U1[j, j + 1:], e)
            E1[j] = e
        Wp[i2:] -= U[i1:i2, i2:].T @ E1


def _gptq_setup(qm, W, hessian, damp, act_order):
    """Checked inputs of a GPTQ pass over ``qm``'s fixed grid, shared by :func:`gptq_codes` and
    :func:`gptq_table_codes`: ``(W, order, U, rows)`` with ``W`` as float64, the processing
    order of input channels, the Cholesky factor of the damped inverse Hessian, and the stored
    row of each channel in processing order."""
    W = _check_weights(W).astype(np.float64)
    K, N = W.shape
    if (K, N) != (qm.K, qm.N):
        raise ValueError(f"W has shape {W.shape}, the quantized matrix ({qm.K}, {qm.N})")
    H = np.array(hessian, dtype=np.float64)
    if H.shape != (K, K) or not np.all(np.isfinite(H)):
        raise ValueError(f"hessian must be a finite ({K}, {K}) matrix, got shape {H.shape}")
    if not (isinstance(damp, float) or isinstance(damp, int)) or not 0 < damp < 1:
        raise ValueError(f"damp must be in (0, 1), got {damp!r}")
    perm = qm.perm if qm.perm is not None else np.arange(K)
    row_of = np.empty(K, dtype=np.int64)
    row_of[perm] = np.arange(K)                       # stored row of each input channel
    order, U = _gptq_order_and_factor(W, H, damp, perm if not act_order else None)
    return W, order, U, row_of[order]


def gptq_codes(qm: QuantizedMatrix, W, hessian, *, damp: float = 0.01, block: int = 32,
               act_order: bool = True) -> QuantizedMatrix:
    """Re-choose the codes of ``qm`` by GPTQ error feedback on its fixed group grids.

    GPTQ (Frantar et al., ICLR 2023) quantizes one input channel at a time and
    spreads its rounding error over the channels not yet quantized, in the
    proportion that minimises the output error ``||X (W_hat - W)||`` for the
    inputs whose second moment is ``hessian``.  The group headers (scales,
    zero points, exponents) and the channel permutation of ``qm`` are kept
    ("static groups"), so the result is exactly representable in the same
    format and packs, decodes and runs on the tile unchanged; only the codes move.

    Parameters
    ----------
    qm : QuantizedMatrix
        Grids to use (e.g. from :func:`quantize` with ``clip="output"``).
    W : ndarray, shape (K, N)
        The weights ``qm`` was quantized from (original channel order).
    hessian : ndarray, shape (K, K)
        ``X.T @ X / n`` of calibration inputs (original channel order).
    damp : float
        Ridge added to the diagonal, as a fraction of its mean (GPTQ's 1%).
    block : int
        Channels per lazy update block (speed only, same result).
    act_order : bool
        Quantize channels in descending ``hessian`` diagonal (GPTQ's act-order);
        else in storage row order.

    Returns
    -------
    QuantizedMatrix
        ``qm`` with new codes.
    """
    W, order, U, rows = _gptq_setup(qm, W, hessian, damp, act_order)
    scale = qm.row_scales()[rows]                     # (K, N), processing order
    zero = qm.row_zeros()[rows].astype(np.float64)
    shift = qm.fmt.odd_shift(qm.arithmetic)
    odd = rows % 2 == 1
    step = np.where(odd, 1 << shift, 1).astype(np.float64)
    max_code = np.where(odd, (1 << qm.fmt.odd_bits) - 1, (1 << qm.fmt.even_bits) - 1).astype(np.float64)
    inv = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale > 0)
    codes = qm.codes.copy()

    def quant_row(i, w):
        c = np.clip(np.rint((w * inv[i] + zero[i]) / step[i]), 0, max_code[i])
        codes[rows[i]] = c.astype(np.uint8)
        return (c * step[i] - zero[i]) * scale[i]
    _gptq_feedback(W[order], U, quant_row, block)
    return QuantizedMatrix(fmt=qm.fmt, arithmetic=qm.arithmetic, K=qm.K, N=qm.N, group_size=qm.group_size,
                           codes=codes, zeros=qm.zeros, mant=qm.mant, exp=qm.exp, perm=qm.perm,
                           scale_bits=qm.scale_bits)


@dataclass(frozen=True, eq=False)
class TableQuantizedMatrix(_PairedGroups):
    """A matrix on a non-uniform code grid per slot (a study option, not a packed format).

    A code ``c`` of slot ``t`` represents ``tables[t][c] * mant * 2**-exp``: one
    table lookup per slot, a scale per group, slot and column, no zero point
    (every table holds 0 exactly).

    Attributes
    ----------
    fmt : Format
    K, N, group_size : int
    tables : tuple of ndarray of int64
        Levels of the even slot (``2**even_bits``) and of the odd slot (``2**odd_bits``), ascending.
    codes : ndarray of uint8, shape (K_pad, N)
        Row ``r`` holds input channel ``perm[r]``.
    mant : ndarray of int64, shape (n_groups, 2, N)
    exp : ndarray of int64, shape (N,)
    perm : ndarray of int64 or None
    scale_bits : int
    """

    fmt: Format
    K: int
    N: int
    group_size: int
    tables: tuple
    codes: np.ndarray
    mant: np.ndarray
    exp: np.ndarray
    perm: "np.ndarray | None"
    scale_bits: int

    def dequantize(self, dtype=np.float64) -> np.ndarray:
        """The represented weights (K, N) in the original channel order."""
        vals = np.empty(self.codes.shape, dtype=np.float64)
        vals[0::2] = self.tables[0][self.codes[0::2]]
        vals[1::2] = self.tables[1][self.codes[1::2]]
        g = np.arange(self.K_pad) // self.group_size
        scale = self.mant[g, np.arange(self.K_pad) % 2] * np.exp2(-self.exp.astype(np.float64))[None, :]
        out = np.empty((self.K, self.N), dtype=dtype)
        out[self.perm if self.perm is not None else slice(None)] = (vals * scale)[: self.K]
        return out

    @property
    def bits_per_weight(self) -> float:
        """Codes, one scale mantissa per slot per group, the column exponent (the tables are per format, not stored)."""
        bits = self.K_pad // 2 * self.fmt.pair_bits + self.n_groups * 2 * self.scale_bits + EXPONENT_BITS
        return bits / self.K


def quantize_table(W, tables, fmt="4+3", *, group_size=64, scale_bits=SCALE_BITS, perm=None,
                   importance=None) -> TableQuantizedMatrix:
    """Quantize ``W[K, N]`` onto a non-uniform table of levels per slot (IQ4_NL-like), groups along K.

    Each group, slot and column gets the scale (a ``scale_bits`` mantissa under
    the column exponent) that maps its largest ``|w|`` onto the table's largest
    ``|level|``, shrunk by the factor in 1.0 ... 0.5 that minimises
    ``sum_k importance[k] * (w_hat - w)**2`` (1 per channel without
    ``importance``); each weight takes the nearest level.

    Parameters
    ----------
    W : ndarray, shape (K, N)
    tables : pair of integer sequences
        Ascending levels of the even slot (``2**even_bits`` values) and the odd slot, each holding 0.
    fmt, group_size, scale_bits, perm, importance :
        As in :func:`quantize` (``group_size`` even; ``None`` is per column).
    """
    W = _check_weights(W)
    fmt = parse_format(fmt)
    tabs = tuple(np.asarray(t, dtype=np.int64) for t in tables)
    for t, b, name in ((tabs[0], fmt.even_bits, "even"), (tabs[1], fmt.odd_bits, "odd")):
        if t.shape != (1 << b,) or np.any(np.diff(t) <= 0) or 0 not in t:
            raise ValueError(f"tables[{name}] must be {1 << b} ascending integers holding 0, got {t.tolist()}")
    check_int("scale_bits", scale_bits, 2, SCALE_BITS)
    K, N = W.shape
    K_pad = K + (K % 2)
    G = _check_group_size(group_size, K_pad)
    perm = _check_perm(perm, K)
    imp = np.ones(K) if importance is None else np.asarray(importance, dtype=np.float64)
    if imp.shape != (K,) or not np.all(np.isfinite(imp)) or np.any(imp < 0):
        raise ValueError(f"importance must be {K} finite non-negative values (one per input channel)")
    Wp = W[perm] if perm is not None else W
    imp = imp[perm] if perm is not None else imp
    ng = -(-K_pad // G)
    wg = np.zeros((ng * G, N))
    wg[:K] = Wp
    valid = np.zeros(ng * G)
    valid[:K] = imp
    wg, valid = wg.reshape(ng, G, N), valid.reshape(ng, G)
    mant_max = (1 << int(scale_bits)) - 1
    top = np.array([np.abs(t).max() for t in tabs], dtype=np.float64)
    amax = np.stack([np.abs(wg[:, t::2]).max(axis=1) for t in (0, 1)], axis=1)       # (ng, 2, N)
    raw = amax / top[None, :, None]
    exp = _column_exponents(raw.max(axis=(0, 1)), mant_max)
    es = np.exp2(exp.astype(np.float64))[None, :]

    def fit(alpha):
        mant = np.clip(np.ceil(raw * alpha * es[:, None]), 0, mant_max)
        mant = np.where((raw > 0) & (mant == 0), 1, mant).astype(np.int64)
        scale = mant / es[:, None]
        codes = np.empty((ng, G, N), dtype=np.uint8)
        err = np.zeros((ng, 2, N))
        for t in (0, 1):
            x = wg[:, t::2]
            s = scale[:, t][:, None, :]
            v = np.divide(x, s, out=np.zeros_like(x), where=s > 0)
            mids = (tabs[t][1:] + tabs[t][:-1]) / 2.0
            c = np.searchsorted(mids, v).astype(np.uint8)
            codes[:, t::2] = c
            err[:, t] = (((tabs[t][c] * s - x) ** 2) * valid[:, t::2, None]).sum(axis=1)
        return mant, codes, err

    mant, codes, err = fit(1.0)
    for alpha in _CLIP_GRID[1:]:
        m2, c2, e2 = fit(alpha)
        better = e2 < err
        mant = np.where(better, m2, mant)
        err = np.where(better, e2, err)
        for t in (0, 1):
            codes[:, t::2] = np.where(better[:, t][:, None, :], c2[:, t::2], codes[:, t::2])
    codes = codes.reshape(ng * G, N)[:K_pad]
    if K_pad != K:
        codes[K_pad - 1] = int(np.flatnonzero(tabs[1] == 0)[0])
    return TableQuantizedMatrix(fmt=fmt, K=K, N=N, group_size=G, tables=tabs, codes=codes, mant=mant, exp=exp,
                                perm=perm, scale_bits=int(scale_bits))


#: Non-uniform levels per slot for :func:`quantize_table` (a study option): Lloyd-Max levels, 0 pinned,
#: fitted to SmolLM2-135M weights of blocks 1, 8 and 20 (q, up, down; each group of 64 and slot divided by
#: its max |w|; no text involved) and scaled to int8.  The even table plays IQ4_NL's role for 16 levels.
NL_TABLES = {
    "4+3": ((-126, -96, -73, -55, -39, -25, -12, 0, 10, 20, 31, 43, 58, 76, 98, 127),
            (-119, -69, -32, 0, 25, 51, 84, 127)),
}


def gptq_table_codes(tq: TableQuantizedMatrix, W, hessian, *, damp: float = 0.01, block: int = 32,
                     act_order: bool = True) -> TableQuantizedMatrix:
    """:func:`gptq_codes` for a non-uniform table grid: new codes, same scales, exponents and tables."""
    W, order, U, rows = _gptq_setup(tq, W, hessian, damp, act_order)
    g = rows // tq.group_size
    scale = tq.mant[g, rows % 2] * np.exp2(-tq.exp.astype(np.float64))[None, :]
    inv = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale > 0)
    tabs = [np.asarray(t, dtype=np.float64) for t in tq.tables]
    mids = [(t[1:] + t[:-1]) / 2.0 for t in tabs]
    codes = tq.codes.copy()

    def quant_row(i, w):
        t = rows[i] % 2
        c = np.searchsorted(mids[t], w * inv[i])
        codes[rows[i]] = c.astype(np.uint8)
        return tabs[t][c] * scale[i]
    _gptq_feedback(W[order], U, quant_row, block)
    return TableQuantizedMatrix(fmt=tq.fmt, K=tq.K, N=tq.N, group_size=tq.group_size, tables=tq.tables,
                                codes=codes, mant=tq.mant, exp=tq.exp, perm=tq.perm, scale_bits=tq.scale_bits)
