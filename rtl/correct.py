"""Zero-point correction and group scaling into the wide accumulator."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from golden.format import SCALE_BITS
from rtl.layouts import block_result_layout, group_sums_layout
from rtl.params import SLOT_ACC_BITS, TileParams

__all__ = ["GroupScaler"]


class GroupScaler(wiring.Component):
    """Per group: ``corr = acc - z * Σa`` per slot, then ``y += m * corr`` into the wide accumulator.

    Two registered stages: the correction (one ``b x 32`` product per lane and slot), then
    the mantissa products summed into each lane's ``acc_width``-bit accumulator.  At the
    end of a block the accumulated ``y`` leaves on ``o`` and the accumulator restarts.
    ``|corr|`` fits int32 for every ``K <= max_k`` (FORMAT.md section 3), so it is kept in
    32 bits; ``acc_width`` was validated to hold ``y``.

    Parameters
    ----------
    params : TileParams

    Attributes
    ----------
    i : In(stream.Signature(group_sums_layout(params), always_ready=True))
    o : Out(stream.Signature(block_result_layout(params), always_ready=True))
    """

    def __init__(self, *, params: TileParams):
        self.params = params
        super().__init__({
            "i": In(stream.Signature(group_sums_layout(params), always_ready=True)),
            "o": Out(stream.Signature(block_result_layout(params), always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        g = self.i.payload

        # Stage 1: zero-point correction.
        corr = [[Signal(signed(SLOT_ACC_BITS), name=f"corr_l{lane}_s{t}") for t in range(p.n_slots)]
                for lane in range(p.lanes)]
        mant = [[Signal(unsigned(SCALE_BITS), name=f"mant_l{lane}_s{t}") for t in range(p.n_slots)]
                for lane in range(p.lanes)]
        corr_valid = Signal()
        corr_block_end = Signal()
        corr_last = Signal()
        m.d.sync += corr_valid.eq(self.i.valid)
        with m.If(self.i.valid):
            for lane in range(p.lanes):
                for t in range(p.n_slots):
                    slot = g.header[lane][f"s{t}"]
                    m.d.sync += [corr[lane][t].eq(g.acc[lane][t] - slot.zero * g.sa[t]),
                                 mant[lane][t].eq(slot.mant)]
            m.d.sync += [corr_block_end.eq(g.block_end), corr_last.eq(g.last)]
        if p.requant:
            corr_requant = Signal.like(g.requant)
            with m.If(self.i.valid):
                m.d.sync += corr_requant.eq(g.requant)

        # Stage 2: scale by the group's mantissas into the wide accumulator.
        wide = [Signal(signed(p.acc_width), name=f"wide_l{lane}") for lane in range(p.lanes)]
        m.d.sync += self.o.valid.eq(corr_valid & corr_block_end)
        with m.If(corr_valid):
            for lane in range(p.lanes):
                total = wide[lane]
                for t in range(p.n_slots):
                    total = total + mant[lane][t] * corr[lane][t]
                with m.If(corr_block_end):
                    m.d.sync += [wide[lane].eq(0), self.o.payload.y[lane].eq(total)]
                with m.Else():
                    m.d.sync += wide[lane].eq(total)
            with m.If(corr_block_end):
                m.d.sync += self.o.payload.last.eq(corr_last)
                if p.requant:
                    m.d.sync += self.o.payload.requant.eq(corr_requant)
        return m
