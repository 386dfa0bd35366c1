"""The MAC lanes: two multiply-accumulates per lane per cycle, activations broadcast, one shared Σa."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.decode import PairDecode
from rtl.layouts import beat_layout, group_sums_layout, header_layout, lane_op_layout
from rtl.params import SLOT_ACC_BITS, TileParams

__all__ = ["MacLanes"]


class MacLanes(wiring.Component):
    """``L`` lanes accumulating ``sum a * q`` per slot, and the activation sums shared by all lanes.

    A HEADER operation latches the group's zero points and mantissas.  A BEAT operation
    decodes every lane's pair and adds ``a[2i] * q_even`` and ``a[2i+1] * q_odd`` to the
    lane's slot sums (own grids: one sum per slot; shared grid: one sum); ``Σa`` per slot
    is accumulated once for all lanes.  The beat that closes a group hands the final sums,
    the group's header and the block markers to ``o`` one cycle later, and the sums
    restart from zero, so the next group's header and beats follow without a gap.

    Parameters
    ----------
    params : TileParams

    Attributes
    ----------
    i : In(stream.Signature(lane_op_layout(params), always_ready=True))
    o : Out(stream.Signature(group_sums_layout(params), always_ready=True))
        Valid for one cycle per group; the consumer never stalls (the tile reserves room
        for every block result before its last beat enters).
    """

    def __init__(self, *, params: TileParams):
        self.params = params
        super().__init__({
            "i": In(stream.Signature(lane_op_layout(params), always_ready=True)),
            "o": Out(stream.Signature(group_sums_layout(params), always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params

        # Stage A: register the operation (the gearbox's record and the sequencer are behind it).
        va = Signal()
        op = Signal(lane_op_layout(p))
        m.d.sync += va.eq(self.i.valid)
        with m.If(self.i.valid):
            m.d.sync += op.eq(self.i.payload)

        header = Signal(header_layout(p))
        beat = data.View(beat_layout(p), op.record[:p.beat_bits])
        acc = [[Signal(signed(SLOT_ACC_BITS), name=f"acc_l{lane}_s{t}") for t in range(p.n_slots)]
               for lane in range(p.lanes)]
        sa = [Signal(signed(SLOT_ACC_BITS), name=f"sa_s{t}") for t in range(p.n_slots)]

        # Stage B: decode and multiply into registered products.  Each slot's addend: own grids
        # put the even row in slot 0 and the odd row in slot 1, the shared grid adds both rows
        # into its one slot.
        act_sums = [op.act.even, op.act.odd] if p.n_slots == 2 else [op.act.even + op.act.odd]
        vb = Signal()
        act_b = [Signal(signed(len(x) + 1), name=f"act_b_s{t}") for t, x in enumerate(act_sums)]
        prod_b = []
        flags_b = Signal(data.StructLayout({"group_end": 1, "block_end": 1, "last": 1}))
        for lane in range(p.lanes):
            decode = m.submodules[f"decode{lane}"] = PairDecode(fmt=p.fmt, arithmetic=p.arithmetic)
            m.d.comb += decode.pair.eq(beat[lane])
            even = op.act.even * decode.even
            odd = op.act.odd * decode.odd
            sums = [even, odd] if p.n_slots == 2 else [even + odd]
            regs = [Signal(signed(len(x) + 1), name=f"prod_l{lane}_s{t}") for t, x in enumerate(sums)]
            prod_b.append(regs)
        beat_a = va & ~op.header
        m.d.sync += vb.eq(beat_a)
        with m.If(va & op.header):
            m.d.sync += header.eq(op.record[:p.header_bits])
        if p.requant:
            requant_b = Signal.like(op.requant)
        with m.If(beat_a):
            for lane in range(p.lanes):
                decode = m.submodules[f"decode{lane}"]
                even = op.act.even * decode.even
                odd = op.act.odd * decode.odd
                sums = [even, odd] if p.n_slots == 2 else [even + odd]
                m.d.sync += [reg.eq(x) for reg, x in zip(prod_b[lane], sums)]
            m.d.sync += [reg.eq(x) for reg, x in zip(act_b, act_sums)]
            m.d.sync += [flags_b.group_end.eq(op.group_end), flags_b.block_end.eq(op.block_end),
                         flags_b.last.eq(op.last)]
            if p.requant:
                m.d.sync += requant_b.eq(op.requant)

        # Stage C: accumulate; the beat that closes a group hands the sums on and restarts them.
        m.d.sync += self.o.valid.eq(vb & flags_b.group_end)
        with m.If(vb):
            for t in range(p.n_slots):
                total = sa[t] + act_b[t]
                m.d.sync += [sa[t].eq(Mux(flags_b.group_end, 0, total)), self.o.payload.sa[t].eq(total)]
                for lane in range(p.lanes):
                    total = acc[lane][t] + prod_b[lane][t]
                    m.d.sync += [acc[lane][t].eq(Mux(flags_b.group_end, 0, total)),
                                 self.o.payload.acc[lane][t].eq(total)]
            m.d.sync += [
                self.o.payload.header.eq(header),
                self.o.payload.block_end.eq(flags_b.block_end),
                self.o.payload.last.eq(flags_b.last),
            ]
            if p.requant:
                m.d.sync += self.o.payload.requant.eq(requant_b)
        return m
