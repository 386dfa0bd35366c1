"""Zero-point correction and group scaling into the wide accumulator, one lane per cycle."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.format import SCALE_BITS
from rtl.layouts import block_result_layout, group_sums_layout
from rtl.params import SCALER_DEPTH, SLOT_ACC_BITS, TileParams

__all__ = ["GroupScaler", "split_product"]

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
    """Per group: ``corr = acc - z * Σa`` per slot, then ``y += m * corr`` into the wide accumulator.

    Time-shared: the group's sums and header are captured when they arrive, then one lane per
    cycle passes a registered pipeline (``z * Σa``; ``acc - z * Σa``; ``m * corr`` as registered
    17-bit DSP partial products; their shift-add; the sum over the slots; the wide accumulation),
    so the block needs one correction and one scaling datapath per slot instead of one per lane
    and slot.  The wide accumulators form a ring of ``L`` registers that turns by one lane per
    step (no multiplexer); the first group of a block starts them afresh.  At the end of a block
    the results leave on ``o``, all lanes at once, ``SCALER_DEPTH + L`` cycles after the group's
    sums arrived.

    The input never stalls: the tile spaces group ends at least ``params.epilogue_interval``
    cycles apart (one group in the scaler at a time).  ``|corr|`` fits int32 for every
    ``K <= max_k`` (FORMAT.md section 3); ``acc_width`` was validated to hold ``y``.

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
        L, S = p.lanes, p.n_slots

        # Capture, then shift one lane per step towards lane 0 (the head).
        lane_layout = data.StructLayout({
            "acc": data.ArrayLayout(signed(SLOT_ACC_BITS), S),
            "header": g.header.shape().elem_shape,
        })
        snap = [Signal(lane_layout, name=f"snap_l{lane}") for lane in range(L)]
        sa = [Signal(signed(SLOT_ACC_BITS), name=f"sa_s{t}") for t in range(S)]
        block_end = Signal()
        last = Signal()
        first = Signal()                  # this group starts a block: the accumulators restart
        block_start = Signal(init=1)      # the next group starts a block
        remaining = Signal(range(L + 1))  # lanes still to enter the pipeline
        step = Signal()
        m.d.comb += step.eq(remaining.any())
        with m.If(step):
            m.d.sync += remaining.eq(remaining - 1)
            for lane in range(L - 1):
                m.d.sync += snap[lane].eq(snap[lane + 1])
        with m.If(self.i.valid):
            m.d.sync += [remaining.eq(L), block_end.eq(g.block_end), last.eq(g.last),
                         first.eq(block_start), block_start.eq(g.block_end)]
            for lane in range(L):
                m.d.sync += [snap[lane].acc.eq(g.acc[lane]), snap[lane].header.eq(g.header[lane])]
            for t in range(S):
                m.d.sync += sa[t].eq(g.sa[t])
            if p.requant:
                with m.If(g.block_end):
                    m.d.sync += self.o.payload.requant.eq(g.requant)
        head = snap[0]

        # Stage 1: z * Σa (and the sums and mantissas alongside).
        v1 = Signal()
        zs1 = [Signal(signed(SLOT_ACC_BITS + 9), name=f"zs1_s{t}") for t in range(S)]
        acc1 = [Signal(signed(SLOT_ACC_BITS), name=f"acc1_s{t}") for t in range(S)]
        mant1 = [Signal(unsigned(SCALE_BITS), name=f"mant1_s{t}") for t in range(S)]
        m.d.sync += v1.eq(step)
        for t in range(S):
            slot = head.header[f"s{t}"]
            m.d.sync += [zs1[t].eq(slot.zero * sa[t]), acc1[t].eq(head.acc[t]), mant1[t].eq(slot.mant)]

        # Stage 2: the correction.
        v2 = Signal()
        corr2 = [Signal(signed(SLOT_ACC_BITS), name=f"corr2_s{t}") for t in range(S)]
        mant2 = [Signal(unsigned(SCALE_BITS), name=f"mant2_s{t}") for t in range(S)]
        m.d.sync += v2.eq(v1)
        for t in range(S):
            m.d.sync += [corr2[t].eq(acc1[t] - zs1[t]), mant2[t].eq(mant1[t])]

        # Stage 3: m * corr as registered DSP partial products; stage 4: their sum.
        v3, v4 = Signal(), Signal()
        m.d.sync += [v3.eq(v2), v4.eq(v3)]
        prod4 = [Signal(signed(SLOT_ACC_BITS + SCALE_BITS), name=f"prod4_s{t}") for t in range(S)]
        for t in range(S):
            total = split_product(m, "sync", corr2[t], mant2[t], f"mc_s{t}")
            m.d.sync += prod4[t].eq(total())

        # Stage 5: the sum over the slots.
        v5 = Signal()
        sum5 = Signal(signed(SLOT_ACC_BITS + SCALE_BITS + 1))
        m.d.sync += [v5.eq(v4), sum5.eq(sum(prod4[1:], prod4[0]))]

        # Stage 6: the wide accumulation, a ring of L registers turned one lane per step.
        ring = [Signal(signed(p.acc_width), name=f"wide_l{lane}") for lane in range(L)]
        lane6 = Signal(L, init=1)         # one-hot: the lane leaving stage 5 in this cycle
        y = Signal(signed(p.acc_width))
        m.d.comb += y.eq(sum5 + (0 if L == 0 else ring[0]))
        with m.If(first):
            m.d.comb += y.eq(sum5)
        m.d.sync += self.o.valid.eq(0)
        with m.If(v5):
            m.d.sync += [ring[lane].eq(ring[lane + 1]) for lane in range(L - 1)]
            m.d.sync += [ring[L - 1].eq(y), lane6.eq(lane6.rotate_left(1))]
            with m.If(block_end):
                for lane in range(L):
                    with m.If(lane6[lane]):
                        m.d.sync += self.o.payload.y[lane].eq(y)
                with m.If(lane6[L - 1]):
                    m.d.sync += [self.o.valid.eq(1), self.o.payload.last.eq(last)]
        assert SCALER_DEPTH == 6
        return m
