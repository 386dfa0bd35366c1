"""The MAC lanes: two multiply-accumulates per lane per cycle, activations broadcast, one shared Σa."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.format import ACT_BITS
from rtl.decode import PairDecode
from rtl.registers import RegisteredCopy, register_slices
from rtl.layouts import beat_layout, group_sums_layout, header_layout, lane_op_layout, pair_layout
from rtl.params import SLOT_ACC_BITS, TileParams

__all__ = ["MacLane", "MacLanes", "LATENCY"]

#: Registered stages of the lanes: the operation, the products' partial sums, the products, the sums.
LATENCY = 4

#: Header register bits per copy of its load enable (each slice a submodule, so synthesis keeps the copies).
HEADER_ENABLE_FANOUT = 16
#: Accumulator bits per copy of a lane's restart flag (each copy a submodule, so synthesis keeps the copies).
RESTART_FANOUT = 8


def _bit_pair_sums(act, code):
    """``act * code`` (``code`` unsigned) as ``[(low, term)]``: ``act * code == sum(term << low)``.

    Each term covers two bits of the code, ``act * code[low] + 2 * act * code[low + 1]``: one
    carry chain whose operands are the activation gated by a code bit (no multiplier), so the
    stage that computes the terms is one adder deep and the next stage adds ``ceil(bits / 2)``
    terms (one adder for a 4-bit code).
    """
    terms = []
    for low in range(0, len(code), 2):
        term = Mux(code[low], act, 0)
        if low + 1 < len(code):
            term = term + (Mux(code[low + 1], act, 0) << 1)
        terms.append((low, term))
    return terms


class MacLane(wiring.Component):
    """One lane: decode its pair, multiply by the activations, accumulate per slot.

    Four registered stages, as the lanes: the lane's pair and the operation's activations (stage
    A, this lane's own copy, so the broadcast is a register-to-register hop); each product as
    partial sums of two code bits each (A2: one carry chain of gated activations, no multiplier),
    with this lane's copy of "stage A held a beat" (from the lanes' stage-A registers, not from the
    handshake); the products, the partial sums added, zero unless stage A2 held a beat (B); the
    slot sums (C).  Every stage is one adder deep.  The sums restart after the closing beat of a group
    without a reset or an enable on the datapath: an idle cycle adds zero products, and a one-bit ``restart``
    flag, a register of "stage B holds the closing beat", adds the products of the cycle after that
    beat (zero, or the next group's first beat) to zero instead of the old sums.  Each lane keeps its
    own flags, the restart flag in copies per ``RESTART_FANOUT`` accumulator bits (one per submodule,
    so synthesis does not merge them): they fan out to a few bits of this lane only.

    Attributes
    ----------
    act : In(ArrayLayout(signed(8), 2))
        The activation pair of the operation entering stage A (even, odd).
    beat_a : In(1)
        Stage A holds a valid BEAT (registered here for stage A2, beside the products).
    pair : In(pair_layout(fmt))
        The lane's pair of the operation entering stage A (registered here, beside the products).
    closing : In(1)
        Stage A2 holds the beat that closes a group (registered here: this lane's copy for stage B).
    acc : Out(ArrayLayout(signed(32), n_slots))
        The slot sums; in the cycle after the closing beat they hold the group's sums.
    capture_next : Out(1)
        The group's sums are on ``acc`` in the next cycle (stage B holds the closing beat): this lane's
        own copy of the lanes' ``o.valid`` one cycle ahead, from which the drain registers its capture
        enables for this lane (a register per lane, in this lane's submodule so that synthesis does not
        merge the copies).
    """

    def __init__(self, *, params: TileParams):
        self.params = params
        super().__init__({
            "act": In(data.ArrayLayout(signed(ACT_BITS), 2)),
            "beat_a": In(1),
            "pair": In(pair_layout(params.fmt)),
            "closing": In(1),
            "acc": Out(data.ArrayLayout(signed(SLOT_ACC_BITS), params.n_slots)),
            "capture_next": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.decode = decode = PairDecode(fmt=p.fmt, arithmetic=p.arithmetic)

        # Stage A: this lane's copy of its pair and of the activations (one hop from the broadcast).
        pair = Signal.like(self.pair, name="pair_a", reset_less=True)
        act = Signal.like(self.act, name="act_a", reset_less=True)
        m.d.sync += [pair.eq(self.pair), act.eq(self.act)]
        m.d.comb += decode.pair.eq(pair)

        # Stage A2: the products in partial sums, each of two code bits (a carry chain whose inputs are the
        # activation gated by a code bit), and whether stage A held a beat (this lane's copy).
        # Own grids: the even row in slot 0, the odd row in slot 1; the shared grid adds both rows into its one slot.
        even = _bit_pair_sums(act[0], decode.even)
        odd = _bit_pair_sums(act[1], decode.odd)
        slots = [even, odd] if p.n_slots == 2 else [even + odd]
        parts = []
        for t, terms in enumerate(slots):
            regs = []
            for k, (low, term) in enumerate(terms):
                reg = Signal(term.shape(), name=f"part_s{t}_{k}", reset_less=True)
                m.d.sync += reg.eq(term)
                regs.append((low, reg))
            parts.append(regs)
        beat_a2 = Signal()
        m.d.sync += beat_a2.eq(self.beat_a)

        # Stage B: the products, the partial sums shifted into place and added; zero unless stage A2 held a beat.
        sums = [sum(((reg << low) if low else reg) for low, reg in regs) for regs in parts]
        prods = [Signal(signed(len(x)), name=f"prod_s{t}", reset_less=True) for t, x in enumerate(sums)]
        m.d.sync += [reg.eq(Mux(beat_a2, x, 0)) for reg, x in zip(prods, sums)]

        # Stage C: the slot sums.  A group's sums are on acc in the cycle after its closing beat (the drain captures
        # them then), and that cycle's products start the next group's sums: restart is a register of close, so a
        # group that follows without a gap loses nothing.  Each RESTART_FANOUT bits of an accumulator have their own
        # copy of restart, beside their multiplexers (one flag driving a lane's ~55 multiplexers was 4.3-4.7 ns of
        # routing into the accumulator's carry chain).  In the first cycles after a reset restart is set once more
        # (fresh): a one-cycle reset leaves stage B's products of the cycle before it, which that restart drops.
        close = Signal()                # stage B holds the beat that closes a group (this lane's copy)
        m.d.sync += close.eq(self.closing)
        fresh = Signal(init=1)          # the first cycle after a reset
        m.d.sync += fresh.eq(0)
        restart_next = Signal()
        m.d.comb += [restart_next.eq(close | fresh), self.capture_next.eq(close)]
        for t in range(p.n_slots):
            acc = Signal(signed(SLOT_ACC_BITS), name=f"acc_s{t}", reset_less=True)
            kept = []
            for n, lo in enumerate(range(0, SLOT_ACC_BITS, RESTART_FANOUT)):
                restart = m.submodules[f"restart_s{t}_{n}"] = RegisteredCopy(init=1)
                m.d.comb += restart.d.eq(restart_next)
                kept.append(Mux(restart.q, 0, acc[lo:lo + RESTART_FANOUT]))
            acc_next = Cat(*kept).as_signed() + prods[t]
            m.d.sync += acc.eq(acc_next)
            m.d.comb += self.acc[t].eq(acc)
        return m


class MacLanes(wiring.Component):
    """``L`` lanes accumulating ``sum a * q`` per slot, and the activation sums shared by all lanes.

    A HEADER operation latches the group's zero points and mantissas.  A BEAT operation
    decodes every lane's pair and adds ``a[2i] * q_even`` and ``a[2i+1] * q_odd`` to the
    lane's slot sums (own grids: one sum per slot; shared grid: one sum); ``Σa`` per slot
    is accumulated once for all lanes.  The beat that closes a group hands the final sums,
    the group's header and the block markers to ``o`` ``LATENCY`` cycles after it entered (the
    sums in their low ``params.slot_sum_bits`` and ``act_sum_bits``, exact because a group's sums fit
    them; with every lane's own copy of ``o.valid`` one cycle ahead in ``capture_next``, for the drain's
    clock enables),
    and the next beat starts the sums afresh, so the next group's header and beats follow
    without a gap.

    ``LATENCY`` registered stages: the operation (A: the lanes' copies of their pairs and of the
    activations), the products' partial sums (A2), the products (B), the sums (C).
    Only the valid bits and the restart flags are reset; the datapath registers have neither
    reset nor enable (an idle cycle enters as zero activations).

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

    #: Cycles from an operation on ``i`` to its group's sums on ``o``.
    LATENCY = LATENCY

    def __init__(self, *, params: TileParams):
        self.params = params
        super().__init__({
            "i": In(stream.Signature(lane_op_layout(params), always_ready=True)),
            "o": Out(stream.Signature(group_sums_layout(params), always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        op_in = self.i.payload

        # Stage A: register the operation (the gearbox's record and the sequencer are behind it); each
        # lane registers its own pair and activations, and nothing here waits on the handshake but `va`.
        va = Signal()
        op = Signal(lane_op_layout(p), reset_less=True)
        m.d.sync += [va.eq(self.i.valid), op.eq(op_in)]
        pairs_in = data.View(beat_layout(p), op_in.record[:p.beat_bits])    # each lane registers its own pair
        beat_a = va & ~op.header          # stage A holds a valid BEAT (from registers: the lanes' A2 flags)

        # Stage A2: the operation once more; the activations for Σa, zero unless stage A held a beat.
        va2 = Signal()
        op2 = Signal(lane_op_layout(p), reset_less=True)
        act_a2 = Signal(data.ArrayLayout(signed(ACT_BITS), 2), reset_less=True)
        m.d.sync += [va2.eq(va), op2.eq(op),
                     act_a2[0].eq(Mux(beat_a, op.act.even, 0)), act_a2[1].eq(Mux(beat_a, op.act.odd, 0))]

        # Stage B: products in the lanes; the activation sums, the header and the markers here.
        vb = Signal()                     # stage B holds a beat
        close_b = Signal()                # ... that closes its group
        beat_a2 = va2 & ~op2.header
        m.d.sync += [vb.eq(beat_a2), close_b.eq(beat_a2 & op2.group_end)]
        # The header register in slices, each loaded on its own registered copy of "stage A2 holds a
        # valid HEADER" (for the clock: one enable would fan out to every header bit).
        header = Signal(header_layout(p))
        header_a = va & op.header
        register_slices(m, "header", "enable", header_a, op2.record[:p.header_bits], header,
                        fanout=HEADER_ENABLE_FANOUT)
        act_sums = [act_a2[0], act_a2[1]] if p.n_slots == 2 else [act_a2[0] + act_a2[1]]
        act_b = [Signal(signed(ACT_BITS + 1), name=f"act_b_s{t}", reset_less=True) for t in range(p.n_slots)]
        m.d.sync += [reg.eq(x) for reg, x in zip(act_b, act_sums)]
        marks_b = Signal(data.StructLayout({"block_end": 1, "last": 1}), reset_less=True)
        m.d.sync += [marks_b.block_end.eq(op2.block_end), marks_b.last.eq(op2.last)]
        if p.requant:
            requant_b = Signal.like(op2.requant, reset_less=True)
            m.d.sync += requant_b.eq(op2.requant)
        for lane in range(p.lanes):
            unit = m.submodules[f"lane{lane}"] = MacLane(params=p)
            m.d.comb += [unit.act[0].eq(op_in.act.even), unit.act[1].eq(op_in.act.odd), unit.beat_a.eq(beat_a),
                         unit.pair.eq(pairs_in[lane]), unit.closing.eq(beat_a2 & op2.group_end),
                         *(self.o.payload.acc[lane][f"s{t}"].eq(unit.acc[t]) for t in range(p.n_slots)),
                         self.o.payload.capture_next[lane].eq(unit.capture_next)]

        # Stage C: the activation sums (restarted like the lanes' sums), the group's header and markers.
        m.d.sync += self.o.valid.eq(close_b)
        sa_restart = Signal(init=1)
        with m.If(vb):
            m.d.sync += sa_restart.eq(close_b)
        for t in range(p.n_slots):
            sa = Signal(signed(SLOT_ACC_BITS), name=f"sa_s{t}", reset_less=True)
            m.d.sync += sa.eq(Mux(sa_restart, 0, sa) + act_b[t])
            m.d.comb += self.o.payload.sa[t].eq(sa)
        header_c = Signal.like(header, reset_less=True)
        marks_c = Signal.like(marks_b, reset_less=True)
        m.d.sync += [header_c.eq(header), marks_c.eq(marks_b)]
        m.d.comb += [
            self.o.payload.header.eq(header_c),
            self.o.payload.block_end.eq(marks_c.block_end),
            self.o.payload.last.eq(marks_c.last),
        ]
        if p.requant:
            requant_c = Signal.like(requant_b, reset_less=True)
            m.d.sync += requant_c.eq(requant_b)
            m.d.comb += self.o.payload.requant.eq(requant_c)
        return m
