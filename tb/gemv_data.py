"""The data of the GEMVs a simulation runs: bus beats in, expected results out.

Everything is derived from golden (:mod:`golden.vectors`: quantizer, packer,
oracle, requantization parameters); this module only converts it to bus bytes.  A
:class:`Gemv` holds the exact AXI-Stream payloads of one GEMV on a tile
(FORMAT.md section 4 and the tile contract in ``rtl/TILE.md``) and the
oracle's result per column.  A :class:`GemvSet` is what one simulation runs,
back to back; it travels to the cocotb process as files in the test
directory (``gemvs.npz`` and ``gemvs.json``), never through the environment.

Stream payloads, all little-endian:

* ``s_axis_weights``: the packed stream cut into ``W``-bit words; tlast on the last.
* ``s_axis_act``: per column block, one 16-bit beat per activation pair
  ``a[2i] & 0xff | (a[2i+1] & 0xff) << 8`` in row order; tlast on the block's last pair.
* ``s_axis_params`` (requant only): per block, lane ``l`` at bits ``[22 l, 22 l + 22)``:
  ``M | shift << 16``.
* ``m_axis_result``: per block, lane ``l`` at bits ``[w l, w l + w)`` two's complement.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from golden.format import ACT_BITS, REQUANT_MULT_BITS, REQUANT_SHIFT_BITS, byte_count
from golden.quantize import QuantizedMatrix
from golden.vectors import DEFAULT_SATURATE, GemvVectors, gemv_vectors, random_vectors
from rtl.params import TileParams

__all__ = [
    "port_widths",
    "Gemv",
    "GemvSet",
    "make_gemv",
    "gemv_from_vectors",
    "random_gemv",
    "bytes_to_lanes",
]

#: Bits of one lane's requantization parameters on ``s_axis_params``.
PARAM_LANE_BITS = REQUANT_MULT_BITS + REQUANT_SHIFT_BITS
#: Bits of one activation beat (a pair of INT8 activations).
ACT_BEAT_BITS = 2 * ACT_BITS


def port_widths(config: TileParams) -> dict:
    """The tdata width of each stream port by the tile contract (rtl/TILE.md), in bits before byte padding.

    The testbench checks these against the RTL's generated JSON and the built model's ports.
    """
    widths = {"s_axis_weights__tdata": config.bus_width, "s_axis_act__tdata": ACT_BEAT_BITS,
              "m_axis_result__tdata": config.lanes * config.out_bits}
    if config.requant:
        widths["s_axis_params__tdata"] = config.lanes * PARAM_LANE_BITS
    return widths


def _words_to_bytes(words, bits: int) -> np.ndarray:
    """Python-int words of ``bits`` bits -> uint8 array (n, byte_count(bits)), little-endian."""
    nbytes = byte_count(bits)
    return np.frombuffer(b"".join(int(w).to_bytes(nbytes, "little") for w in words),
                         dtype=np.uint8).reshape(len(words), nbytes)


def _stream_words(ps, bus_width: int) -> np.ndarray:
    """The stream's bus words as uint8 (words, byte_count(W)): byte slicing when W is whole bytes."""
    if bus_width % 8:
        return _words_to_bytes(ps.words(bus_width), bus_width)
    step = bus_width // 8
    n = ps.layout.bus_words(bus_width)
    data = np.zeros(n * step, dtype=np.uint8)
    data[:min(ps.data.size, n * step)] = ps.data[:n * step]
    return data.reshape(n, step)


def _lanes_to_bytes(values: np.ndarray, lane_bits: int) -> np.ndarray:
    """(beats, lanes) unsigned lane fields -> uint8 (beats, byte_count(lanes * lane_bits))."""
    beats, lanes = values.shape
    total = lanes * lane_bits
    bits = ((values[..., None].astype(np.uint64) >> np.arange(lane_bits, dtype=np.uint64)) & 1).astype(np.uint8)
    bits = bits.reshape(beats, total)
    pad = byte_count(total) * 8 - total
    if pad:
        bits = np.concatenate([bits, np.zeros((beats, pad), np.uint8)], axis=1)
    return np.packbits(bits, axis=1, bitorder="little")


def bytes_to_lanes(beats: np.ndarray, lanes: int, lane_bits: int, signed: bool) -> np.ndarray:
    """Inverse of the result packing: uint8 (beats, nbytes) -> int64 (beats, lanes)."""
    bits = np.unpackbits(np.asarray(beats, dtype=np.uint8), axis=1, bitorder="little")[:, :lanes * lane_bits]
    fields = bits.reshape(len(beats), lanes, lane_bits).astype(np.int64)
    if lane_bits <= 62:
        values = (fields << np.arange(lane_bits, dtype=np.int64)).sum(axis=-1)
        if signed:
            values = np.where(values >= 1 << (lane_bits - 1), values - (1 << lane_bits), values)
        return values
    out = np.zeros(fields.shape[:2], dtype=object)
    for index in np.ndindex(fields.shape[:2]):
        v = int("".join(map(str, fields[index][::-1])), 2)
        out[index] = v - (1 << lane_bits) if signed and v >> (lane_bits - 1) else v
    return out


@dataclass(eq=False)
class Gemv:
    """One GEMV's bus payloads and expected results on a given tile.

    Attributes
    ----------
    name : str
        What this GEMV is (shown in a mismatch report).
    K, N : int
        Shape of the weight matrix.
    n_blocks : int
        Column blocks (``ceil(N / lanes)``); one result beat each.
    stream_bits : int
        ``PackedStream.nbits``.
    weights : uint8 (words, bytes)
        Weight bus words.
    act : uint8 (K_pad / 2, 2)
        One block's activation beats (re-sent for every block).
    params : uint8 (n_blocks, bytes) or None
        Requantization beats.
    expected : int64 (n_blocks, lanes)
        Result of each lane of each block (padding columns 0).
    """

    name: str
    K: int
    N: int
    n_blocks: int
    stream_bits: int
    weights: np.ndarray
    act: np.ndarray
    params: "np.ndarray | None"
    expected: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def pairs(self) -> int:
        return len(self.act)

    def ideal_cycles(self, bus_width: int) -> int:
        """``ceil(stream_bits / W)``: one bus word per cycle."""
        return -(-self.stream_bits // bus_width)


def make_gemv(qm: QuantizedMatrix, a, config: TileParams, *, name: str = "gemv", requant=None,
              packed=None, y=None) -> Gemv:
    """Bus payloads and oracle results of ``qm @ a`` on a tile built with ``config``.

    Parameters
    ----------
    qm : QuantizedMatrix
        Must match ``config`` (format, arithmetic, group size when the tile has one).
    a : array of int8, shape (K,)
        Activations in the original channel order.
    config : TileParams
    name : str
    requant : (M, shift) arrays of shape (N,), optional
        Requantization parameters (required when ``config.requant``).
    packed : PackedStream, optional
        ``golden.pack.pack(qm, lanes=config.lanes)`` when the caller already has it (one matrix, many GEMVs).
    y : int64 array (N,), optional
        ``golden.oracle.gemv_int(qm, a)`` when the caller already computed it exactly (skips the oracle).
    """
    if qm.fmt != config.fmt or qm.arithmetic != config.arithmetic:
        raise ValueError(f"matrix is {qm.fmt.name}/{qm.arithmetic.value}, "
                         f"tile is {config.fmt.name}/{config.arithmetic.value}")
    tile_group = config.group_size or qm.K_pad
    if qm.group_size != tile_group and not (qm.group_size >= qm.K_pad and tile_group >= qm.K_pad):
        raise ValueError(f"matrix group_size {qm.group_size} does not match the tile's {config.group_size}")
    if qm.K > config.max_k:
        raise ValueError(f"K must be <= the tile's max_k {config.max_k}, got {qm.K}")
    if config.requant and requant is None:
        raise ValueError("requant=(M, shift) is required on a requantizing tile")
    vectors = gemv_vectors(qm, a, lanes=config.lanes, requant=requant if config.requant else False,
                           packed=packed, y=y)
    return gemv_from_vectors(vectors, config, name=name)


def gemv_from_vectors(v: GemvVectors, config: TileParams, *, name: str = "gemv") -> Gemv:
    """The bus payloads of golden's vectors ``v`` on a tile built with ``config``."""
    qm, ps, L = v.qm, v.packed, config.lanes
    n_blocks = ps.layout.n_blocks
    act = v.rows.astype(np.int8).view(np.uint8).reshape(-1, 2)
    params = None
    if config.requant:
        M, shift = v.requant
        lane_values = np.zeros(n_blocks * L, dtype=np.int64)
        lane_values[:qm.N] = M | (shift << REQUANT_MULT_BITS)
        params = _lanes_to_bytes(lane_values.reshape(n_blocks, L), PARAM_LANE_BITS)
    expected = np.zeros(n_blocks * L, dtype=np.int64)
    expected[:qm.N] = v.expected
    wide = int(np.abs(expected).max(initial=0))
    if not config.requant and wide >= 1 << (config.acc_width - 1):
        raise ValueError(f"result magnitude {wide} does not fit acc_width {config.acc_width}")
    return Gemv(name=name, K=qm.K, N=qm.N, n_blocks=n_blocks, stream_bits=ps.nbits,
                weights=_stream_words(ps, config.bus_width), act=act,
                params=params, expected=expected.reshape(n_blocks, L))


def random_gemv(config: TileParams, K: int, N: int, *, seed: int = 0, name: "str | None" = None,
                weights=None, activations=None, clip: str = "none", saturate: float = DEFAULT_SATURATE) -> Gemv:
    """A GEMV of Gaussian (or given) weights and uniform INT8 activations, quantized for ``config``.

    The vectors are :func:`golden.vectors.random_vectors`' (its rules, including the output
    scale of a requantizing tile), drawn from ``numpy.random.default_rng(seed)``.

    Parameters
    ----------
    config : TileParams
    K, N : int
        Shape (ignored where ``weights`` is given).
    seed : int
    weights : float array (K, N), optional
    activations : int8 array (K,), optional
        Default: uniform over the full INT8 range ``[ACT_MIN, ACT_MAX]``.
    clip : str
        Passed to the quantizer.
    saturate : float
        Requantizing tiles: about this fraction of results saturate (:func:`golden.vectors.output_scale`).
    """
    v = random_vectors(np.random.default_rng(seed), config.fmt, K, N, lanes=config.lanes,
                       arithmetic=config.arithmetic, group_size=config.group_size, weights=weights,
                       activations=activations, clip=clip, requant=config.requant, saturate=saturate)
    K, N = v.qm.K, v.qm.N
    return gemv_from_vectors(v, config, name=name or f"random K={K} N={N} seed={seed}")


class GemvSet:
    """The GEMVs one simulation runs back to back, and how it runs them.

    Parameters
    ----------
    config : TileParams
    gemvs : list of Gemv
    options : dict
        Run options for the cocotb module (``idle``, ``backpressure``, ``seed``, ``reset_at`` ...).
    """

    DATA = "gemvs.npz"
    META = "gemvs.json"

    def __init__(self, config: TileParams, gemvs, options: "dict | None" = None):
        self.config = config
        self.gemvs = list(gemvs)
        self.options = dict(options or {})
        if not self.gemvs:
            raise ValueError("a GemvSet needs at least one GEMV")

    def write(self, directory) -> Path:
        """Write ``gemvs.npz`` and ``gemvs.json`` into ``directory``; return the directory."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {}
        meta = []
        for i, g in enumerate(self.gemvs):
            arrays[f"weights_{i}"] = g.weights
            arrays[f"act_{i}"] = g.act
            arrays[f"expected_{i}"] = g.expected.astype(np.int64)
            if g.params is not None:
                arrays[f"params_{i}"] = g.params
            meta.append({"name": g.name, "K": g.K, "N": g.N, "n_blocks": g.n_blocks,
                         "stream_bits": g.stream_bits, "info": g.info})
        np.savez(directory / self.DATA, **arrays)
        (directory / self.META).write_text(json.dumps({"config": self.config.build_record(), "gemvs": meta,
                                                        "options": self.options}, indent=1))
        return directory

    @classmethod
    def read(cls, directory) -> "GemvSet":
        directory = Path(directory)
        meta = json.loads((directory / cls.META).read_text())
        config = TileParams.from_record(meta["config"])
        gemvs = []
        with np.load(directory / cls.DATA) as arrays:
            for i, m in enumerate(meta["gemvs"]):
                gemvs.append(Gemv(name=m["name"], K=m["K"], N=m["N"], n_blocks=m["n_blocks"],
                                  stream_bits=m["stream_bits"], weights=arrays[f"weights_{i}"],
                                  act=arrays[f"act_{i}"],
                                  params=arrays[f"params_{i}"] if f"params_{i}" in arrays else None,
                                  expected=arrays[f"expected_{i}"], info=m.get("info", {})))
        return cls(config, gemvs, meta["options"])
