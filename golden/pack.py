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

from golden.checks import check_int
from golden.format import SCALE_BITS, Arithmetic, Format, byte_count
from golden.quantize import QuantizedMatrix

__all__ = ["PackedStream", "StreamLayout", "pack", "unpack"]

#: Column blocks packed per vectorised chunk (bounds temporary memory; a multiple of 8 so
#: that every chunk starts on a byte boundary).
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
        check_int("lanes", self.lanes, 1)

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
        return self.fmt.header_record_bits(self.lanes, self.arithmetic)

    @property
    def beat_bits(self) -> int:
        """Bits of one BEAT record (all lanes)."""
        return self.fmt.beat_record_bits(self.lanes)

    @property
    def block_bits(self) -> int:
        return self.n_groups * self.header_bits + self.pairs * self.beat_bits

    @property
    def nbits(self) -> int:
        """Total bits of the GEMV's stream."""
        return self.n_blocks * self.block_bits

    def bus_words(self, bus_width: int) -> int:
        """Bus words that carry the stream: ``ceil(nbits / bus_width)``."""
        check_int("bus_width", bus_width, 1)
        return -(-self.nbits // bus_width)


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


def _to_bits(values: np.ndarray, width: int) -> np.ndarray:
    """Bits of ``values`` LSB first: shape ``values.shape + (width,)``, uint8."""
    dt = np.uint8 if width <= 8 else np.uint16 if width <= 16 else np.uint32
    v = values.astype(dt)
    bits = (v[..., None] >> np.arange(width, dtype=dt)) & 1
    return bits if dt is np.uint8 else bits.astype(np.uint8)


def _from_bits(bits: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_to_bits` over the last axis, int64."""
    width = bits.shape[-1]
    return (bits.astype(np.int64) << np.arange(width, dtype=np.int64)).sum(axis=-1)


def _pairs_to_bytes(pv: np.ndarray, P: int) -> np.ndarray:
    """Pack P-bit pairs (last axis a multiple of 8 long) LSB-first into bytes: 8 pairs -> P bytes."""
    if P == 16:
        return np.ascontiguousarray(pv.astype("<u2")).view(np.uint8)
    v = pv.astype(np.uint8).reshape(pv.shape[:-1] + (-1, 8))
    out = np.zeros(v.shape[:-1] + (P,), dtype=np.uint8)
    for j in range(P):                          # output byte j holds group bits [8j, 8j + 8)
        for k in range(8):                      # pair k holds group bits [Pk, Pk + P)
            sh = P * k - 8 * j
            if sh >= 8 or sh <= -P:
                continue
            # uint8 arithmetic: a left shift drops the bits that belong to the next byte.
            out[..., j] |= (v[..., k] << np.uint8(sh)) if sh >= 0 else (v[..., k] >> np.uint8(-sh))
    return out.reshape(pv.shape[:-1] + (-1,))


def _bytes_to_pairs(b: np.ndarray, P: int) -> np.ndarray:
    """Inverse of :func:`_pairs_to_bytes` over the last axis."""
    if P == 16:
        return np.ascontiguousarray(b).view("<u2").astype(np.int64)
    grp = b.reshape(b.shape[:-1] + (-1, P)).astype(np.uint16)
    out = np.zeros(grp.shape[:-1] + (8,), dtype=np.uint16)
    for k in range(8):
        for j in range(P):
            sh = 8 * j - P * k
            if sh >= P or sh <= -8:
                continue
            out[..., k] |= (grp[..., j] << np.uint16(sh)) if sh >= 0 else (grp[..., j] >> np.uint16(-sh))
    out &= np.uint16((1 << P) - 1)
    return out.reshape(b.shape[:-1] + (-1,))


def _byte_aligned(layout: StreamLayout) -> bool:
    """Records start on byte boundaries and pairs pack 8 to P bytes: the fast path applies."""
    P = layout.fmt.pair_bits
    return layout.header_bits % 8 == 0 and layout.beat_bits % 8 == 0 and (P <= 8 or P == 16) \
        and layout.lanes % 8 == 0


def _group_runs(layout: StreamLayout):
    """Runs of equal groups in a block: ``[(first_group, n_groups, pairs_per_group)]``."""
    full, rest = divmod(layout.pairs, layout.group_pairs)
    runs = [(0, full, layout.group_pairs)] if full else []
    if rest:
        runs.append((full, 1, rest))
    return runs


def _header_bit_fields(layout: StreamLayout):
    """(slot, field, width) of a lane's header, in stream order."""
    return [(t, f, w) for t, b in enumerate(layout.fmt.group_slots(layout.arithmetic))
            for f, w in ((0, b), (1, SCALE_BITS))]


def pack(qm: QuantizedMatrix, lanes: int = 16) -> PackedStream:
    """Pack ``qm`` into the stream a tile of ``lanes`` lanes reads (FORMAT.md section 4)."""
    if not isinstance(qm, QuantizedMatrix):
        raise TypeError(f"qm must be a QuantizedMatrix, got {type(qm).__name__}")
    layout = StreamLayout(qm.fmt, qm.arithmetic, lanes, qm.K, qm.N, qm.group_size)
    E, L = qm.fmt.even_bits, layout.lanes
    buf = np.zeros(byte_count(layout.nbits), dtype=np.uint8)
    fields = _header_bit_fields(layout)
    hdr = np.stack([qm.zeros, qm.mant], axis=-1)                       # (ng, ns, N, 2)
    fast = _byte_aligned(layout)
    # Chunks of a multiple of 8 blocks start on byte boundaries.
    for b0 in range(0, layout.n_blocks, _BLOCKS_PER_CHUNK):
        b1 = min(b0 + _BLOCKS_PER_CHUNK, layout.n_blocks)
        nb = b1 - b0
        cols = np.arange(b0 * L, b1 * L)
        real = (cols < qm.N).reshape(nb, L)                            # padding columns stay all-zero
        colmap = np.minimum(cols, qm.N - 1).reshape(nb, L)
        if b1 * L <= qm.N:
            c = qm.codes[:, b0 * L:b1 * L].reshape(-1, nb, L)          # a view: no padding columns
        else:
            c = qm.codes[:, colmap] * real                             # (K_pad, nb, L)
        dt = np.uint8 if qm.fmt.pair_bits <= 8 else np.uint16
        pv = c[0::2].astype(dt) | (c[1::2].astype(dt) << E)
        hv = hdr[:, :, colmap, :] * real[None, None, :, :, None]       # (ng, ns, nb, L, 2)
        hdr_bits = np.concatenate([_to_bits(hv[:, t, :, :, f], w) for t, f, w in fields], axis=-1)
        hdr_bits = hdr_bits.transpose(1, 0, 2, 3)                      # (nb, ng, L, H)
        start = b0 * layout.block_bits // 8
        if fast:
            pv = pv.transpose(1, 0, 2)                                  # (nb, pairs, L)
            parts = []
            for g0, ng, gp in _group_runs(layout):
                h = np.packbits(hdr_bits[:, g0:g0 + ng].reshape(nb, ng, -1), axis=-1, bitorder="little")
                p0 = g0 * layout.group_pairs
                bt = _pairs_to_bytes(pv[:, p0:p0 + ng * gp].reshape(nb, ng, -1), qm.fmt.pair_bits)
                parts.append(np.concatenate([h, bt], axis=-1).reshape(nb, -1))
            packed = np.concatenate(parts, axis=-1).ravel()
            buf[start:start + packed.size] = packed
            continue
        beat_bits = _to_bits(pv.transpose(1, 0, 2), qm.fmt.pair_bits)  # (nb, pairs, L, P)
        parts = []
        for g0, ng, gp in _group_runs(layout):
            h = hdr_bits[:, g0:g0 + ng].reshape(nb, ng, -1)
            p0 = g0 * layout.group_pairs
            bt = beat_bits[:, p0:p0 + ng * gp].reshape(nb, ng, -1)
            parts.append(np.concatenate([h, bt], axis=-1).reshape(nb, -1))
        bits = np.concatenate(parts, axis=-1).ravel()
        packed = np.packbits(bits, bitorder="little")
        buf[start:start + packed.size] = packed
    return PackedStream(layout=layout, data=buf, exp=qm.exp.copy(),
                        perm=None if qm.perm is None else qm.perm.copy())


def unpack(ps: PackedStream) -> QuantizedMatrix:
    """Rebuild the :class:`QuantizedMatrix` a :class:`PackedStream` holds."""
    layout = ps.layout
    L, E, O, P = layout.lanes, layout.fmt.even_bits, layout.fmt.odd_bits, layout.fmt.pair_bits
    if ps.data.size * 8 < layout.nbits:
        raise ValueError(f"stream holds {ps.data.size * 8} bits, layout needs {layout.nbits}")
    fields = _header_bit_fields(layout)
    ns = len(layout.fmt.group_slots(layout.arithmetic))
    H = layout.header_lane_bits
    fast = _byte_aligned(layout)
    codes = np.empty((layout.K_pad, layout.N_pad), dtype=np.uint8)
    hdr = np.empty((layout.n_groups, ns, layout.N_pad, 2), dtype=np.int64)
    for b0 in range(0, layout.n_blocks, _BLOCKS_PER_CHUNK):
        b1 = min(b0 + _BLOCKS_PER_CHUNK, layout.n_blocks)
        nb = b1 - b0
        start = b0 * layout.block_bits // 8
        nbits = nb * layout.block_bits
        raw = ps.data[start:start + byte_count(nbits)]
        pos = 0
        beats, heads = [], []
        if fast:
            blk = raw.reshape(nb, layout.block_bits // 8)
            hbytes = layout.header_bits // 8
            for g0, ng, gp in _group_runs(layout):
                run = blk[:, pos:pos + ng * (hbytes + gp * layout.beat_bits // 8)].reshape(nb, ng, -1)
                pos += run.shape[1] * run.shape[2]
                heads.append(np.unpackbits(run[:, :, :hbytes], axis=-1, bitorder="little").reshape(nb, ng, L, H))
                beats.append(_bytes_to_pairs(run[:, :, hbytes:], P).reshape(nb, ng * gp, L))
            pv = np.concatenate(beats, axis=1)
        else:
            bits = np.unpackbits(raw, bitorder="little")[:nbits].reshape(nb, layout.block_bits)
            for g0, ng, gp in _group_runs(layout):
                run = bits[:, pos:pos + ng * (layout.header_bits + gp * layout.beat_bits)].reshape(nb, ng, -1)
                pos += run.shape[1] * run.shape[2]
                heads.append(run[:, :, :layout.header_bits].reshape(nb, ng, L, H))
                beats.append(run[:, :, layout.header_bits:].reshape(nb, ng * gp, L, P))
            pv = _from_bits(np.concatenate(beats, axis=1))             # (nb, pairs, L)
        cols = slice(b0 * L, b1 * L)
        codes[0::2, cols] = (pv & ((1 << E) - 1)).transpose(1, 0, 2).reshape(layout.pairs, -1)
        codes[1::2, cols] = ((pv >> E) & ((1 << O) - 1)).transpose(1, 0, 2).reshape(layout.pairs, -1)
        hb = np.concatenate(heads, axis=1)                             # (nb, ng, L, H)
        off = 0
        for t, f, w in fields:
            hdr[:, t, cols, f] = _from_bits(hb[..., off:off + w]).transpose(1, 0, 2).reshape(layout.n_groups, -1)
            off += w
    N = layout.N
    return QuantizedMatrix(fmt=layout.fmt, arithmetic=layout.arithmetic, K=layout.K, N=N,
                           group_size=layout.group_size, codes=codes[:, :N],
                           zeros=hdr[..., :N, 0], mant=hdr[..., :N, 1], exp=ps.exp.copy(),
                           perm=None if ps.perm is None else ps.perm.copy())
