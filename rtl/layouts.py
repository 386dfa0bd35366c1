"""Every ``amaranth.lib.data`` layout of the tile, in one place.

Bit positions follow ``golden/FORMAT.md`` section 4: a struct's first field sits at
its least significant bits, so viewing a gearbox record through these layouts is the
decode of the format (wiring, no logic).
"""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from golden.format import ACT_BITS, OUT_BITS, REQUANT_MULT_BITS, REQUANT_SHIFT_BITS, SCALE_BITS, Format

from rtl.params import TileParams

__all__ = [
    "word_layout", "act_layout", "pair_layout", "beat_layout", "slot_header_layout",
    "lane_header_layout", "header_layout", "lane_op_layout", "requant_layout", "requant_lanes_layout",
    "group_sums_layout", "block_result_layout", "result_layout", "ACT_PAIR_BITS",
    "lane_sums_layout", "group_common_layout", "lane_result_layout", "slot_sums_layout", "act_sums_layout",
]

#: Bits of one activation pair on ``s_axis_act``: ``a[2i] | a[2i+1] << 8``.
ACT_PAIR_BITS = 2 * ACT_BITS


def word_layout(p: TileParams) -> data.StructLayout:
    """A bus word and its tlast marker."""
    return data.StructLayout({"data": unsigned(p.bus_width), "last": unsigned(1)})


def act_layout() -> data.StructLayout:
    """One activation pair (even row low) and the end-of-block marker."""
    return data.StructLayout({"even": signed(ACT_BITS), "odd": signed(ACT_BITS), "last": unsigned(1)})


def pair_layout(fmt: Format) -> data.StructLayout:
    """A packed pair: ``q_even | q_odd << E``."""
    return data.StructLayout({"even": unsigned(fmt.even_bits), "odd": unsigned(fmt.odd_bits)})


def beat_layout(p: TileParams) -> data.ArrayLayout:
    """A BEAT record: lane ``l``'s pair at bits ``[l*P, (l+1)*P)``."""
    return data.ArrayLayout(pair_layout(p.fmt), p.lanes)


def slot_header_layout(zero_bits: int) -> data.StructLayout:
    """One slot scale of a group header: the zero point then the 16-bit mantissa."""
    return data.StructLayout({"zero": unsigned(zero_bits), "mant": unsigned(SCALE_BITS)})


def lane_header_layout(p: TileParams) -> data.StructLayout:
    """A lane's part of a HEADER record: its slot scales in order (own: even then odd).

    Slot widths differ (own 4+3: a 4-bit then a 3-bit zero point), so this is a struct
    of slots named ``s0``, ``s1``.
    """
    return data.StructLayout({f"s{t}": slot_header_layout(b) for t, b in enumerate(p.slot_bits)})


def header_layout(p: TileParams) -> data.ArrayLayout:
    """A HEADER record: lane ``l`` at bits ``[l*H, (l+1)*H)``."""
    return data.ArrayLayout(lane_header_layout(p), p.lanes)


def requant_layout() -> data.StructLayout:
    """One column's requantization parameters: ``M | shift << 16``."""
    return data.StructLayout({"mult": unsigned(REQUANT_MULT_BITS), "shift": unsigned(REQUANT_SHIFT_BITS)})


def requant_lanes_layout(p: TileParams) -> data.ArrayLayout:
    """A beat of ``s_axis_params``: lane ``l`` at bits ``[l*22, (l+1)*22)``."""
    return data.ArrayLayout(requant_layout(), p.lanes)


def lane_op_layout(p: TileParams) -> data.StructLayout:
    """One operation handed from the sequencer to the lanes: a HEADER to latch or a BEAT to accumulate.

    ``group_end``/``block_end``/``last`` mark the beat that closes a group, a column block and
    the GEMV; a block's requantization parameters travel with its last beat.
    """
    fields = {
        "header": unsigned(1),
        "record": unsigned(p.record_bits),
        "act": act_layout(),
        "group_end": unsigned(1),
        "block_end": unsigned(1),
        "last": unsigned(1),
    }
    if p.requant:
        fields["requant"] = requant_lanes_layout(p)
    return data.StructLayout(fields)


def slot_sums_layout(p: TileParams) -> data.StructLayout:
    """A lane's group sums, one per slot (``s0``, ``s1``), each at its bound ``TileParams.slot_sum_bits``."""
    return data.StructLayout({f"s{t}": signed(bits) for t, bits in enumerate(p.slot_sum_bits)})


def act_sums_layout(p: TileParams) -> data.ArrayLayout:
    """The group's activation sums ``Σa``, one per slot, at their bound ``TileParams.act_sum_bits``."""
    return data.ArrayLayout(signed(p.act_sum_bits), p.n_slots)


def group_sums_layout(p: TileParams) -> data.StructLayout:
    """What the lanes hand to the correction at the end of a group (the sums at their bounds)."""
    fields = {
        "acc": data.ArrayLayout(slot_sums_layout(p), p.lanes),
        "sa": act_sums_layout(p),
        "header": header_layout(p),
        "block_end": unsigned(1),
        "last": unsigned(1),
        "capture_next": unsigned(p.lanes),  # per lane a copy of valid one cycle ahead: the drain's capture enables
    }
    if p.requant:
        fields["requant"] = requant_lanes_layout(p)
    return data.StructLayout(fields)


def lane_sums_layout(p: TileParams) -> data.StructLayout:
    """One lane's part of the group sums, as the epilogue takes them one lane per cycle."""
    fields = {"acc": slot_sums_layout(p), "header": lane_header_layout(p)}
    if p.requant:
        fields["requant"] = requant_layout()
    return data.StructLayout(fields)


def group_common_layout(p: TileParams) -> data.StructLayout:
    """The part of the group sums every lane shares: Σa per slot and the block markers."""
    return data.StructLayout({"sa": act_sums_layout(p),
                              "block_end": unsigned(1), "last": unsigned(1)})


def lane_result_layout(p: TileParams) -> data.StructLayout:
    """One lane's wide result of a block, one lane per cycle: ``last`` on lane ``L - 1``, ``end`` on
    the GEMV's final block, and the lane's requantization parameters (if built)."""
    fields = {"data": signed(p.acc_width), "last": unsigned(1), "end": unsigned(1)}
    if p.requant:
        fields["requant"] = requant_layout()
    return data.StructLayout(fields)


def block_result_layout(p: TileParams) -> data.StructLayout:
    """A block's wide results (before optional requantization)."""
    fields = {"y": data.ArrayLayout(signed(p.acc_width), p.lanes), "last": unsigned(1)}
    if p.requant:
        fields["requant"] = requant_lanes_layout(p)
    return data.StructLayout(fields)


def result_layout(p: TileParams) -> data.StructLayout:
    """One beat of ``m_axis_result``: lane ``l`` at bits ``[l*w, (l+1)*w)``."""
    width = OUT_BITS if p.requant else p.acc_width
    return data.StructLayout({"data": data.ArrayLayout(signed(width), p.lanes), "last": unsigned(1)})
