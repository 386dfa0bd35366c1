"""The packed file (``.npz``) that ``septet quantize`` writes and ``septet gemv`` reads."""

from __future__ import annotations

import os

import numpy as np

from golden.format import parse_arithmetic, parse_format
from golden.pack import PackedStream, StreamLayout, pack, unpack
from golden.quantize import QuantizedMatrix

__all__ = ["save_packed", "load_packed", "FILE_VERSION"]

#: Version of the .npz layout below.
FILE_VERSION = 1


def save_packed(path, qm: QuantizedMatrix, lanes: int = 16) -> PackedStream:
    """Write ``qm`` packed for a tile of ``lanes`` lanes, with its scales and dequantized weights.

    Keys: ``stream`` (uint8, FORMAT.md bit order), ``nbits``, ``format``,
    ``arithmetic``, ``lanes``, ``K``, ``N``, ``group_size``, ``exp``, ``perm``
    (empty when identity), ``zeros`` and ``mant`` (n_groups, n_slots, N),
    ``scales`` (float64, ``mant * 2**-exp``), ``dequantized`` (float32, K x N,
    original channel order), ``bits_per_weight`` and ``version``.
    """
    ps = pack(qm, lanes)
    np.savez_compressed(
        path, version=FILE_VERSION, stream=ps.data, nbits=ps.nbits, format=qm.fmt.name,
        arithmetic=qm.arithmetic.value, lanes=lanes, K=qm.K, N=qm.N, group_size=qm.group_size,
        exp=qm.exp, perm=np.array([], dtype=np.int64) if qm.perm is None else qm.perm,
        zeros=qm.zeros, mant=qm.mant, scales=qm.mant * np.exp2(-qm.exp.astype(np.float64)),
        dequantized=qm.dequantize().astype(np.float32), bits_per_weight=qm.bits_per_weight)
    return ps


def load_packed(path) -> "tuple[QuantizedMatrix, PackedStream]":
    """Read a file written by :func:`save_packed`; the codes come from the stream itself."""
    if not os.path.exists(path):
        raise ValueError(f"packed file {path!r} does not exist")
    try:
        f = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input error
        raise ValueError(f"packed file {path!r} is not a septet .npz file: {exc}") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ValueError(f"packed file {path!r} is not a septet .npz file (it holds a single array)")
    with f:
        missing = {"version", "stream", "format", "arithmetic", "lanes", "K", "N", "group_size", "exp"} - set(f.files)
        if missing:
            raise ValueError(f"packed file {path!r} lacks {sorted(missing)}; write it with 'septet quantize'")
        if int(f["version"]) != FILE_VERSION:
            raise ValueError(f"packed file {path!r} has version {int(f['version'])}, expected {FILE_VERSION}")
        layout = StreamLayout(parse_format(str(f["format"])), parse_arithmetic(str(f["arithmetic"])),
                              int(f["lanes"]), int(f["K"]), int(f["N"]), int(f["group_size"]))
        perm = f["perm"] if "perm" in f.files and f["perm"].size else None
        ps = PackedStream(layout=layout, data=f["stream"], exp=f["exp"].astype(np.int64), perm=perm)
        qm = unpack(ps)
        if "nbits" in f.files and int(f["nbits"]) != ps.nbits:
            raise ValueError(f"packed file {path!r}: nbits {int(f['nbits'])} does not match its layout ({ps.nbits})")
    return qm, ps
