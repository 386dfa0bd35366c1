"""Dense packing of a :class:`~golden.quantize.QuantizedMatrix` into the septet stream.

The stream layout is specified in ``golden/FORMAT.md`` section 4: per column
block of ``lanes`` columns, per group, a HEADER record then the group's BEAT
records, concatenated LSB-first with no padding.  Packing and unpacking are
vectorised per chunk of column blocks, so memory stays bounded for a
LLaMA-70B-sized matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from golden.format import SCALE_BITS, Arithmetic, Format, parse_arithmetic, parse_format
from golden.quantize import QuantizedMatrix

__all__ = ["PackedStream", "StreamLayout", "pack", "unpack"]

#: Column blocks packed per vectorised chunk (bounds temporary memory).
_BLOCKS_PER_CHUNK = 64


@dataclass(frozen=True)
class StreamLayout:
    """Record widths and offsets of one GEMV's stream on a tile of ``lanes`` lanes.

    Parameters
    ----------
    fmt, arithmetic
        The format and arithmetic.
    lanes : int
        Lanes of the tile (columns per block).
    K, N : int
        Shape of the weight matrix.
    group_size : int
        Rows per group (even); ``K_pad`` for per column.
    """

    fmt: Format
    arithmetic: Arithmetic
    lanes: int
    K: int
    N: int
    group_size: int

    def __post_init__(self):
        if not isinstance(self.lanes, (int, np.integer)) or self.lanes < 1:
            raise ValueError(f"lanes must be an integer >= 1, got {self.lanes!r}")

    @property
    def K_pad(self) -> int:
        return self.K + (self.K % 2)

    @property
    def pairs(self) -> int:
        """Pairs per column."""
        return self.K_pad // 2

    @property
    def group_pairs(self) -> int:
        return self.group_size // 2

    @property
    def n_groups(self) -> int:
        return -(-self.K_pad // self.group_size)

    @property
    def n_blocks(self) -> int:
        return -(-self.N // self.lanes)

    @property
    def N_pad(self) -> int:
        return self.n_blocks * self.lanes

    @property
    def header_lane_bits(self) -> int:
        """H: header bits per lane."""
        return self.fmt.group_header_bits_per_column(self.arithmetic)

    @property
    def header_bits(self) -> int:
        """Bits of one HEADER record (all lanes)."""
        return self.lanes * self.header_lane_bits

    @property
    def beat_bits(self) -> int:
        """Bits of one BEAT record (all lanes)."""
        return self.lanes * self.fmt.pair_bits

    @property
    def block_bits(self) -> int:
        return self.n_groups * self.header_bits + self.pairs * self.beat_bits

    @property
    def nbits(self) -> int:
        """Total bits of the GEMV's stream."""
        return self.n_blocks * self.block_bits

    def bus_words(self, bus_width: int) -> int:
        """Bus words that carry the stream: ``ceil(nbits / bus_width)``."""
        if not isinstance(bus_width, (int, np.integer)) or bus_width < 1:
            raise ValueError(f"bus_width must be an integer >= 1, got {bus_width!r}")
        return -(-self.nbits // bus_width)

    def header_fields(self):
        """Offsets within a block and widths of every header field.

        Returns ``(offset, width, group, lane, slot, is_mant)``, each of shape
        ``(n_groups, lanes, n_slots, 2)``.
        """
        slot_bits = np.array(self.fmt.group_slots(self.arithmetic))
        n_slots = slot_bits.size
        g = np.arange(self.n_groups)[:, None, None, None]
        lane = np.arange(self.lanes)[None, :, None, None]
        t = np.arange(n_slots)[None, None, :, None]
        f = np.arange(2)[None, None, None, :]
        slot_start = np.concatenate([[0], np.cumsum(slot_bits + SCALE_BITS)[:-1]])
        offset = (g * (self.header_bits + self.group_pairs * self.beat_bits)
                  + lane * self.header_lane_bits + slot_start[t] + f * slot_bits[t])
        width = np.where(f == 1, SCALE_BITS, slot_bits[t])
        shape = (self.n_groups, self.lanes, n_slots, 2)
        return tuple(np.broadcast_to(x, shape) for x in (offset, width, g, lane, t, f))

    def pair_offsets(self) -> np.ndarray:
        """Offset within a block of pair ``i`` of lane ``l``, shape (pairs, lanes)."""
        i = np.arange(self.pairs)[:, None]
        lane = np.arange(self.lanes)[None, :]
        g = i // self.group_pairs
        return (g + 1) * self.header_bits + i * self.beat_bits + lane * self.fmt.pair_bits


@dataclass(frozen=True, eq=False)
class PackedStream:
    """One GEMV's packed weight stream and the per-column metadata kept beside it.

    Attributes
    ----------
    layout : StreamLayout
    data : ndarray of uint8
        The stream, little-endian bit order (stream bit ``8k + j`` is bit ``j`` of byte ``k``).
    exp : ndarray of int64, shape (N,)
        Column exponents (not on the bus).
    perm : ndarray or None
        Input-channel order of the rows (not on the bus).
    """

    layout: StreamLayout
    data: np.ndarray
    exp: np.ndarray
    perm: "np.ndarray | None" = None

    @property
    def nbits(self) -> int:
        return self.layout.nbits

    @property
    def lanes(self) -> int:
        return self.layout.lanes

    def words(self, bus_width: int) -> list:
        """The stream cut into ``bus_width``-bit bus words (Python ints), the last zero-filled."""
        n = self.layout.bus_words(bus_width)
        data = self.data.tobytes() + b"\0" * (bus_width // 8 + 2)
        if bus_width % 8 == 0:
            step = bus_width // 8
            return [int.from_bytes(data[w * step:(w + 1) * step], "little") for w in range(n)]
        mask = (1 << bus_width) - 1
        out = []
        for w in range(n):
            start = w * bus_width
            lo = start >> 3
            chunk = int.from_bytes(data[lo:lo + bus_width // 8 + 2], "little")
            out.append((chunk >> (start & 7)) & mask)
        return out


def _write_fields(buf: np.ndarray, offsets: np.ndarray, values: np.ndarray) -> None:
    """OR fields of at most 17 bits into ``buf`` at bit ``offsets`` (fields must not overlap)."""
    offsets = offsets.ravel().astype(np.int64)
    values = values.ravel().astype(np.int64) << (offsets & 7)
    byte = offsets >> 3
    if byte.size == 0:
        return
    lo = int(byte.min())
    byte = byte - lo
    n = min(int(byte.max()) + 4, buf.size - lo)
    for k in range(4):                       # a 17-bit field shifted by <= 7 spans <= 3 bytes
        part = (values >> (8 * k)) & 0xFF
        nz = part != 0
        if not nz.any():
            continue
        # Fields do not overlap, so per byte the sum of parts equals their OR.
        acc = np.bincount(byte[nz] + k, weights=part[nz], minlength=n)[:n]
        buf[lo:lo + n] |= acc.astype(np.uint8)


def _read_fields(buf: np.ndarray, offsets: np.ndarray, widths) -> np.ndarray:
    """Read fields of at most 17 bits at bit ``offsets``."""
    offsets = offsets.astype(np.int64)
    byte = offsets >> 3
    padded = np.concatenate([buf, np.zeros(4, dtype=np.uint8)]).astype(np.int64)
    word = padded[byte] | (padded[byte + 1] << 8) | (padded[byte + 2] << 16) | (padded[byte + 3] << 24)
    return (word >> (offsets & 7)) & ((1 << np.asarray(widths, dtype=np.int64)) - 1)


def pack(qm: QuantizedMatrix, lanes: int = 16) -> PackedStream:
    """Pack ``qm`` into the stream a tile of ``lanes`` lanes reads (FORMAT.md section 4)."""
    if not isinstance(qm, QuantizedMatrix):
        raise TypeError(f"qm must be a QuantizedMatrix, got {type(qm).__name__}")
    layout = StreamLayout(qm.fmt, qm.arithmetic, lanes, qm.K, qm.N, qm.group_size)
    E = qm.fmt.even_bits
    L = layout.lanes
    buf = np.zeros(-(-layout.nbits // 8), dtype=np.uint8)
    h_off, _, h_g, h_lane, h_t, h_f = layout.header_fields()
    p_off = layout.pair_offsets()
    pairs = qm.codes[0::2].astype(np.int64) | (qm.codes[1::2].astype(np.int64) << E)   # (pairs, N)
    hdr = np.stack([qm.zeros, qm.mant], axis=-1)                                        # (ng, ns, N, 2)
    for b0 in range(0, layout.n_blocks, _BLOCKS_PER_CHUNK):
        b1 = min(b0 + _BLOCKS_PER_CHUNK, layout.n_blocks)
        base = np.arange(b0, b1)[:, None, None] * layout.block_bits
        cols = np.arange(b0 * L, b1 * L)
        real = cols < qm.N                     # padding columns stay all-zero
        colmap = np.where(real, cols, 0).reshape(b1 - b0, L)
        realmap = real.reshape(b1 - b0, L)
        # pairs: (blocks, pairs, lanes)
        pv = pairs[:, colmap].transpose(1, 0, 2) * realmap[:, None, :]
        _write_fields(buf, base + p_off[None], pv)
        # headers: values indexed (group, slot, column, field) at each (g, lane, t, f)
        hv = hdr[h_g[None], h_t[None], colmap[:, None, :, None, None], h_f[None]]
        hv = hv * realmap[:, None, :, None, None]
        _write_fields(buf, base[:, :, :, None, None] + h_off[None], hv)
    return PackedStream(layout=layout, data=buf, exp=qm.exp.copy(),
                        perm=None if qm.perm is None else qm.perm.copy())


def unpack(ps: PackedStream) -> QuantizedMatrix:
    """Rebuild the :class:`QuantizedMatrix` a :class:`PackedStream` holds."""
    layout = ps.layout
    L, E, O = layout.lanes, layout.fmt.even_bits, layout.fmt.odd_bits
    if ps.data.size * 8 < layout.nbits:
        raise ValueError(f"stream holds {ps.data.size * 8} bits, layout needs {layout.nbits}")
    h_off, h_w, h_g, h_lane, h_t, h_f = layout.header_fields()
    p_off = layout.pair_offsets()
    ns = h_off.shape[2]
    codes = np.zeros((layout.K_pad, layout.N_pad), dtype=np.uint8)
    hdr = np.zeros((layout.n_groups, ns, layout.N_pad, 2), dtype=np.int64)
    for b in range(layout.n_blocks):
        base = b * layout.block_bits
        pv = _read_fields(ps.data, base + p_off, layout.fmt.pair_bits)         # (pairs, lanes)
        cols = slice(b * L, (b + 1) * L)
        codes[0::2, cols] = pv & ((1 << E) - 1)
        codes[1::2, cols] = (pv >> E) & ((1 << O) - 1)
        hv = _read_fields(ps.data, base + h_off, h_w)                          # (ng, lanes, ns, 2)
        hdr[:, :, cols, :] = hv.transpose(0, 2, 1, 3)
    N = layout.N
    return QuantizedMatrix(fmt=layout.fmt, arithmetic=layout.arithmetic, K=layout.K, N=N,
                           group_size=layout.group_size, codes=codes[:, :N],
                           zeros=hdr[..., :N, 0], mant=hdr[..., :N, 1], exp=ps.exp.copy(),
                           perm=None if ps.perm is None else ps.perm.copy())
