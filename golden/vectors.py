"""Test vectors: the stimulus of one GEMV and golden's expectation of it, for every testbench.

The Amaranth-simulator tests (``rtl/simutil.py``) and the cocotb testbenches
(``tb/gemv_data.py``) draw their GEMVs here and only convert them to their
transport (Python payloads, bus bytes); none of them quantizes, packs, runs the
oracle or picks requantization parameters on its own.

The rules, in one place:

* weights: standard Gaussian ``W[K, N]`` (unless given), optionally each column
  times a scale drawn uniformly from ``column_scales`` (columns of different
  magnitudes, hence different exponents); quantized with the tile's format,
  arithmetic and group size;
* activations: uniform INT8 over the whole range ``[ACT_MIN, ACT_MAX]`` (unless given);
* one ``numpy.random.Generator`` draws, in this order, the weights, the column
  scales, the activations: a seed reproduces a GEMV;
* the output scale of a requantizing tile (:func:`output_scale`): the
  ``1 - saturate`` quantile of the results' real magnitude maps to ``ACT_MAX``,
  so about a fraction ``saturate`` of the results saturate (default
  :data:`DEFAULT_SATURATE`, 10%): both the rounding and the clamp are exercised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from golden.checks import check_int, check_number
from golden.format import ACT_MAX, ACT_MIN
from golden.oracle import gemv_int, requant_params, requantize, row_activations
from golden.pack import PackedStream, pack
from golden.quantize import QuantizedMatrix, quantize

__all__ = ["DEFAULT_SATURATE", "GemvVectors", "output_scale", "gemv_vectors", "random_vectors"]

#: Fraction of requantized results that saturate with the default output scale.
DEFAULT_SATURATE = 0.1


@dataclass(frozen=True, eq=False)
class GemvVectors:
    """One GEMV's stimulus and its golden expectation.

    Attributes
    ----------
    qm : QuantizedMatrix
    packed : PackedStream
        ``pack(qm, lanes)``: the weight stream in the tile's order.
    a : int8 array (K,)
        Activations in the original channel order.
    y : int64 array (N,)
        The oracle's exact result (``gemv_int``).
    requant : (M, shift) int64 arrays (N,), or None
        Requantization parameters per column.
    expected : int64 array (N,)
        What the tile outputs per column: ``requantize(y, M, shift)`` when
        requantizing, else ``y``.
    """

    qm: QuantizedMatrix
    packed: PackedStream
    a: np.ndarray
    y: np.ndarray
    requant: "tuple | None"
    expected: np.ndarray

    @property
    def rows(self) -> np.ndarray:
        """Activations in the tile's row order, zero-padded to ``K_pad`` (:func:`golden.oracle.row_activations`)."""
        return row_activations(self.qm, self.a)


def output_scale(qm: QuantizedMatrix, y, *, s_a: float = 1.0, saturate: float = DEFAULT_SATURATE) -> float:
    """The INT8 output scale of the test vectors: the ``1 - saturate`` quantile of ``|y|`` maps to ``ACT_MAX``.

    Parameters
    ----------
    qm : QuantizedMatrix
    y : int64 array (N,)
        The oracle's result; its real value is ``y * s_a * 2**-exp``.
    s_a : float
        Activation scale.
    saturate : float
        Fraction of results (about) beyond ``ACT_MAX`` in magnitude, in ``[0, 1)``.
        ``0`` maps the largest result to ``ACT_MAX``: nothing saturates.
    """
    saturate = check_number("saturate", saturate, 0.0, 1.0, open_high=True)
    real = np.abs(np.asarray(y, dtype=np.float64) * s_a * np.exp2(-qm.exp.astype(np.float64)))
    level = float(np.percentile(real, 100.0 * (1.0 - saturate))) if real.size else 0.0
    if not level > 0.0:
        # Mostly zero results: scale by the largest (any scale is exact when all are zero).
        level = float(real.max(initial=0.0)) or 1.0
    return level / ACT_MAX


def gemv_vectors(qm: QuantizedMatrix, a, *, lanes: int, requant=False, saturate: float = DEFAULT_SATURATE,
                 packed: "PackedStream | None" = None, y=None) -> GemvVectors:
    """The vectors of ``qm @ a`` on a tile of ``lanes`` lanes.

    Parameters
    ----------
    qm : QuantizedMatrix
    a : int8 array (K,)
        Activations in the original channel order.
    lanes : int
    requant : bool or (M, shift)
        ``False``: no requantization; ``True``: parameters from :func:`output_scale`
        (with ``saturate``); a pair of arrays: those parameters.
    saturate : float
        See :func:`output_scale`.
    packed : PackedStream, optional
        ``pack(qm, lanes=lanes)`` when the caller already has it (one matrix, many GEMVs).
    y : int64 array (N,), optional
        ``gemv_int(qm, a)`` when the caller already computed it.
    """
    a = np.asarray(a)
    y = gemv_int(qm, a) if y is None else np.asarray(y, dtype=np.int64)
    packed = pack(qm, lanes=lanes) if packed is None else packed
    if packed.lanes != lanes:
        raise ValueError(f"packed stream is for {packed.lanes} lanes, the tile has {lanes}")
    params = None
    expected = y
    if requant is True:
        params = requant_params(qm, 1.0, output_scale(qm, y, saturate=saturate))
    elif requant is not False and requant is not None:
        params = tuple(np.asarray(v, dtype=np.int64) for v in requant)
    if params is not None:
        expected = requantize(y, *params).astype(np.int64)
    return GemvVectors(qm=qm, packed=packed, a=a, y=y, requant=params, expected=expected)


def random_vectors(rng: np.random.Generator, fmt, K: int, N: int, *, lanes: int, arithmetic="own",
                   group_size: "int | None" = None, weights=None, activations=None,
                   column_scales: "tuple | None" = None, clip: str = "none", requant: bool = False,
                   saturate: float = DEFAULT_SATURATE) -> GemvVectors:
    """A random GEMV under the module's rules, quantized for a tile.

    Parameters
    ----------
    rng : numpy.random.Generator
    fmt, arithmetic, group_size, clip
        Passed to :func:`golden.quantize.quantize`.
    K, N : int
        Shape (ignored where ``weights`` is given).
    lanes : int
    weights : float array (K, N), optional
    activations : int8 array (K,), optional
    column_scales : (low, high), optional
        Multiply each Gaussian column by a scale uniform in ``[low, high)``.
    requant : bool
    saturate : float
        See :func:`output_scale`.
    """
    if weights is None:
        for name, value in (("K", K), ("N", N)):
            check_int(name, value, 1)
        weights = rng.standard_normal((K, N))
        if column_scales is not None:
            weights = weights * rng.uniform(*column_scales, size=N)
    weights = np.asarray(weights, dtype=np.float64)
    K, N = weights.shape
    if activations is None:
        activations = rng.integers(ACT_MIN, ACT_MAX + 1, size=K).astype(np.int8)
    qm = quantize(weights, fmt, arithmetic=arithmetic, group_size=group_size, clip=clip)
    return gemv_vectors(qm, activations, lanes=lanes, requant=requant, saturate=saturate)
