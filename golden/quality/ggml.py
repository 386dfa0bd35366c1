"""Peer formats: llama.cpp/ggml block quantizers, applied to ``W[K, N]``.

Q4_0, Q4_1, Q5_0, Q8_0 and MXFP4 are quantized by the ``gguf`` package's NumPy
code.  The types that matter most near 3.5 bits per weight (Q3_K, IQ3_S, Q4_K,
IQ4_XS, IQ4_NL), which ``gguf`` can only dequantize, are quantized by ggml's own
C code (``ggml_quantize_chunk`` in the prebuilt ``libggml-base.so`` that the
PyPI wheel ``libggml-python`` ships), called through ctypes.  Both are
dequantized by ``gguf``.

ggml blocks run along a row of its ``[out, in]`` weight, i.e. along our
reduction dimension K, so ``W[K, N]`` is quantized as ``W.T``.  Super-block
types need K to be a multiple of 256; like llama.cpp (``llama-quant.cpp``), a
matrix whose K is not falls back to another type, and its bits per weight are
those of the type actually used.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import functools
import os
import pathlib
from dataclasses import dataclass

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize as gguf_dequantize
from gguf.quants import quantize as gguf_quantize

__all__ = ["GGML_TYPES", "NUMPY_TYPES", "C_TYPES", "GgmlResult", "ggml_quantize", "fallback_type", "type_bpw"]

#: Peer types quantized by the gguf package's NumPy code.
NUMPY_TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q8_0", "MXFP4")
#: Peer types quantized by ggml's C code (gguf cannot quantize them).
C_TYPES = ("Q3_K", "IQ3_S", "Q4_K", "IQ4_XS", "IQ4_NL")
GGML_TYPES = NUMPY_TYPES + C_TYPES

#: llama.cpp's fallback when a row is not a whole number of 256-weight super-blocks.
_FALLBACK = {
    "Q2_K": "IQ4_NL", "Q3_K": "IQ4_NL", "IQ3_S": "IQ4_NL", "IQ3_XXS": "IQ4_NL", "IQ4_XS": "IQ4_NL",
    "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
}

#: Types that some requested type falls back to (worth caching per matrix).
FALLBACK_TARGETS = frozenset(_FALLBACK[t] for t in GGML_TYPES if t in _FALLBACK)


def _qtype(name: str) -> GGMLQuantizationType:
    if name not in GGML_TYPES:
        raise ValueError(f"ggml type must be one of {', '.join(GGML_TYPES)}, got {name!r}")
    return GGMLQuantizationType[name]


def type_bpw(name: str) -> float:
    """Bits per weight of a ggml type (block scales included)."""
    block, nbytes = GGML_QUANT_SIZES[GGMLQuantizationType[name]]
    return 8 * nbytes / block


def fallback_type(name: str, K: int) -> str:
    """The type llama.cpp actually uses for rows of K weights."""
    block, _ = GGML_QUANT_SIZES[_qtype(name)]
    if K % block == 0:
        return name
    fb = _FALLBACK.get(name)
    if fb is None or K % GGML_QUANT_SIZES[GGMLQuantizationType[fb]][0]:
        raise ValueError(f"K must be a multiple of {block} for ggml type {name}, got K={K}")
    return fb


@functools.lru_cache(maxsize=1)
def _libggml() -> ctypes.CDLL:
    import libggml
    candidates = [p / "libggml-base.so" for p in (pathlib.Path(libggml.__file__).parent / d
                                                  for d in ("lib64", "lib"))]
    path = next((p for p in candidates if p.exists()), None)
    if path is None:
        raise RuntimeError(f"libggml-base.so not found in the libggml-python wheel (looked in {candidates})")
    lib = ctypes.CDLL(str(path))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    lib.ggml_quantize_init.restype = None
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
    lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    return lib


def _c_quantize_rows(rows: np.ndarray, qtype: GGMLQuantizationType, imatrix=None) -> np.ndarray:
    """Quantize float32 rows [n, k] with ggml's C code; returns the raw blocks uint8 [n, row_bytes].

    ``imatrix`` (k float32, one per input channel) is ggml's importance matrix,
    ``ggml_quantize_chunk``'s last argument (what ``llama-quantize --imatrix`` passes).
    """
    lib = _libggml()
    if imatrix is None and lib.ggml_quantize_requires_imatrix(int(qtype)):
        raise ValueError(f"ggml type {qtype.name} requires an importance matrix (importance=...)")
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    n, k = rows.shape
    imat_ptr = None
    if imatrix is not None:
        imatrix = np.ascontiguousarray(imatrix, dtype=np.float32)
        if imatrix.shape != (k,) or not np.all(np.isfinite(imatrix)) or np.any(imatrix < 0):
            raise ValueError(f"importance must be {k} finite non-negative values (one per input channel)")
        imat_ptr = imatrix.ctypes.data
    row_bytes = lib.ggml_row_size(int(qtype), k)
    out = np.empty((n, row_bytes), dtype=np.uint8)
    lib.ggml_quantize_init(int(qtype))   # IQ types build their grids here

    def run(r0, r1):
        src, dst = rows[r0:r1], out[r0:r1]
        written = lib.ggml_quantize_chunk(int(qtype), src.ctypes.data, dst.ctypes.data, 0, r1 - r0, k, imat_ptr)
        if written != dst.nbytes:
            raise RuntimeError(f"ggml_quantize_chunk wrote {written} bytes for {qtype.name}, expected {dst.nbytes}")

    # ctypes releases the GIL during the call, so row chunks run on all cores.
    n_threads = max(1, min(os.cpu_count() or 1, n // 64))
    bounds = np.linspace(0, n, n_threads + 1).astype(int)
    with concurrent.futures.ThreadPoolExecutor(n_threads) as pool:
        for f in [pool.submit(run, a, b) for a, b in zip(bounds[:-1], bounds[1:])]:
            f.result()
    return out


@dataclass(frozen=True)
class GgmlResult:
    """A matrix quantized to a ggml type.

    Attributes
    ----------
    requested, used : str
        The type asked for and the type used (llama.cpp's fallback if K does not fit).
    W_hat : ndarray of float32, shape (K, N)
        Dequantized weights.
    bits_per_weight : float
        Stored bits per weight of the type used (block scales included).
    """

    requested: str
    used: str
    W_hat: np.ndarray
    bits_per_weight: float


def ggml_quantize(W: np.ndarray, name: str, importance=None) -> GgmlResult:
    """Quantize ``W[K, N]`` (blocks along K) to ggml type ``name`` and dequantize it.

    ``importance`` (K values, the mean squared calibration activation per
    input channel) is passed to ggml's C quantizer as its importance matrix,
    for every type (the NumPy quantizers of ``gguf`` take none).
    """
    _qtype(name)
    W = np.asarray(W)
    if W.ndim != 2:
        raise ValueError(f"W must be 2-D (K, N), got shape {W.shape}")
    used = fallback_type(name, W.shape[0])
    qtype = GGMLQuantizationType[used]
    rows = np.ascontiguousarray(W.T, dtype=np.float32)
    if used in NUMPY_TYPES and importance is None:
        blocks = gguf_quantize(rows, qtype)
    else:
        blocks = _c_quantize_rows(rows, qtype, importance)
    W_hat = np.ascontiguousarray(gguf_dequantize(blocks, qtype).T, dtype=np.float32)
    return GgmlResult(requested=name, used=used, W_hat=W_hat, bits_per_weight=8 * blocks.nbytes / W.size)
