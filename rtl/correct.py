"""Zero-point correction and group scaling into the wide accumulator, one lane per cycle."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.format import SCALE_BITS
from rtl.drain import drain_output_layout
from rtl.layouts import group_common_layout, lane_result_layout, lane_sums_layout, requant_layout
from rtl.params import SLOT_ACC_BITS, TileParams

__all__ = ["GroupScaler", "split_product", "LATENCY"]

#: Cycles from a lane entering the scaler to its result on ``o``: ``z * Σa``, the correction, the DSP
#: partial products, their sum, the sum over the slots (registered), the wide add (combinational into ``o``).
LATENCY = 5

#: Width of the low, unsigned part of an operand split for an 18x18 DSP (17 bits + a zero sign bit).
DSP_CHUNK = 17


def split_product(m, domain, a, b_unsigned, name):
    """Register the partial products of ``a * b`` (``b`` unsigned, at most 17 bits) one 18x18 DSP each.

    ``a`` (signed) is cut into 17-bit unsigned chunks and a signed top chunk; each chunk times
    ``b`` fits one MULT18X18D and is registered at its output.  Returns a function giving the
    exact product from the registered parts (a shift-add, for the next stage).
    """
    width = len(a)
    parts = []
    for index, low in enumerate(range(0, width, DSP_CHUNK)):
        high = min(low + DSP_CHUNK, width)
        top = high == width
        chunk = a[low:high].as_signed() if top else a[low:high]
        reg = Signal(signed(len(chunk) + len(b_unsigned) + 1), name=f"{name}_pp{index}")
        domain_stmts = getattr(m.d, domain)
        domain_stmts += reg.eq(chunk * b_unsigned)
        parts.append((low, reg))

    def total():
        value = 0
        for low, reg in parts:
            value = value + (reg << low) if low else reg
        return value
    return total


class GroupScaler(wiring.Component):
    """Per lane and group: ``corr = acc - z * Σa`` per slot, then ``y += m * corr`` into the wide accumulator.

    Time-shared: the group's lanes arrive one per cycle (from :class:`~rtl.drain.LaneDrain`) and
    pass a registered pipeline (``z * Σa``; ``acc - z * Σa``; ``m * corr`` as registered 17-bit
    DSP partial products; their shift-add; the sum over the slots; the wide accumulation), so the
    block needs one correction and one scaling datapath per slot instead of one per lane and slot.
    The wide accumulators form a ring of ``L`` registers that turns by one lane per step (no
    multiplexer); the last group of a block writes zeros behind it (a synchronous clear), so the
    next block starts afresh.  At the end of a block each lane's result leaves on ``o``, one per
    cycle, ``LATENCY`` cycles after the lane entered, with its requantization parameters.

    The input never stalls and every group brings all ``L`` lanes, lane 0 first.  ``|corr|`` fits
    int32 for every ``K <= max_k`` (FORMAT.md section 3); ``acc_width`` was validated to hold ``y``.

    Parameters
    ----------
    params : TileParams

    Attributes
    ----------
    i : In(stream.Signature(drain_output_layout(lane_sums_layout(params), group_common_layout(params)),
        always_ready=True))
    o : Out(stream.Signature(lane_result_layout(params), always_ready=True))
        Valid for the lanes of a block's last group; the payload is combinational from the last stage.
    """

    def __init__(self, *, params: TileParams):
        self.params = params
        super().__init__({
            "i": In(stream.Signature(drain_output_layout(lane_sums_layout(params), group_common_layout(params)),
                                     always_ready=True)),
            "o": Out(stream.Signature(lane_result_layout(params), always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        L, S = p.lanes, p.n_slots
        head = self.i.payload.lane
        common = self.i.payload.common

        # Markers (and the requantization parameters) travel alongside the lane, one register per stage.
        fields = {"block_end": 1, "end": 1, "last": 1}
        if p.requant:
            fields["requant"] = requant_layout()
        valid = [self.i.valid] + [Signal(name=f"v{n}") for n in range(1, LATENCY + 1)]
        mark = [Signal(data.StructLayout(fields), name=f"mark{n}", reset_less=True) for n in range(LATENCY + 1)]
        m.d.comb += [mark[0].block_end.eq(common.block_end), mark[0].end.eq(common.last),
                     mark[0].last.eq(self.i.payload.last)]
        if p.requant:
            m.d.comb += mark[0].requant.eq(head.requant)
        for n in range(1, LATENCY + 1):
            m.d.sync += [valid[n].eq(valid[n - 1]), mark[n].eq(mark[n - 1])]

        # Stage 1: z * Σa (and the sums and mantissas alongside).
        zs1 = [Signal(signed(SLOT_ACC_BITS + 9), name=f"zs1_s{t}", reset_less=True) for t in range(S)]
        acc1 = [Signal(signed(SLOT_ACC_BITS), name=f"acc1_s{t}", reset_less=True) for t in range(S)]
        mant1 = [Signal(unsigned(SCALE_BITS), name=f"mant1_s{t}", reset_less=True) for t in range(S)]
        for t in range(S):
            slot = head.header[f"s{t}"]
            m.d.sync += [zs1[t].eq(slot.zero * common.sa[t]), acc1[t].eq(head.acc[t]), mant1[t].eq(slot.mant)]

        # Stage 2: the correction.
        corr2 = [Signal(signed(SLOT_ACC_BITS), name=f"corr2_s{t}", reset_less=True) for t in range(S)]
        mant2 = [Signal(unsigned(SCALE_BITS), name=f"mant2_s{t}", reset_less=True) for t in range(S)]
        for t in range(S):
            m.d.sync += [corr2[t].eq(acc1[t] - zs1[t]), mant2[t].eq(mant1[t])]

        # Stage 3: m * corr as registered DSP partial products; stage 4: their sum.
        prod4 = [Signal(signed(SLOT_ACC_BITS + SCALE_BITS), name=f"prod4_s{t}", reset_less=True) for t in range(S)]
        for t in range(S):
            total = split_product(m, "sync", corr2[t], mant2[t], f"mc_s{t}")
            m.d.sync += prod4[t].eq(total())

        # Stage 5: the sum over the slots.
        sum5 = Signal(signed(SLOT_ACC_BITS + SCALE_BITS + 1), reset_less=True)
        m.d.sync += sum5.eq(sum(prod4[1:], prod4[0]))

        # Stage 6 (combinational into o): the wide accumulation, a ring of L registers turned one lane
        # per step; a block's last group leaves zeros behind, and the reset clears the ring too.
        ring = [Signal(signed(p.acc_width), name=f"wide_l{lane}") for lane in range(L)]
        y = Signal(signed(p.acc_width))
        last5, v5 = mark[LATENCY], valid[LATENCY]
        m.d.comb += y.eq(sum5 + ring[0])
        with m.If(v5):
            m.d.sync += [ring[lane].eq(ring[lane + 1]) for lane in range(L - 1)]
            with m.If(last5.block_end):
                m.d.sync += ring[L - 1].eq(0)
            with m.Else():
                m.d.sync += ring[L - 1].eq(y)
        m.d.comb += [self.o.valid.eq(v5 & last5.block_end), self.o.payload.data.eq(y),
                     self.o.payload.last.eq(last5.last), self.o.payload.end.eq(last5.end)]
        if p.requant:
            m.d.comb += self.o.payload.requant.eq(last5.requant)
        return m
