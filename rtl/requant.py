"""Optional INT8 requantization of a block's results, bit-exact with ``golden.oracle.requantize``."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.format import OUT_BITS, REQUANT_MULT_BITS, REQUANT_SHIFT_BITS, REQUANT_SHIFT_MAX
from rtl.correct import split_product
from rtl.layouts import block_result_layout, requant_layout, result_layout
from rtl.params import REQUANT_DEPTH, TileParams

__all__ = ["Requantizer"]

_OUT_MIN, _OUT_MAX = -(1 << (OUT_BITS - 1)), (1 << (OUT_BITS - 1)) - 1


class Requantizer(wiring.Component):
    """Every lane's ``y`` to INT8 with its column's multiplier and shift, one lane per cycle.

    Time-shared: the block's results and parameters are captured when they arrive, then one
    lane per cycle passes a registered pipeline (``y * M`` as registered 17-bit DSP partial
    products; their sum; plus the rounding term; the arithmetic shift; the clamp), so one
    multiplier, shifter and clamp serve all lanes.  The results leave on ``o``, all lanes at
    once, ``REQUANT_DEPTH + L`` cycles after the block's results arrived; the tile spaces
    blocks at least ``params.epilogue_interval`` cycles apart (one block here at a time).

    Parameters
    ----------
    params : TileParams
        Must have ``requant=True``.

    Attributes
    ----------
    i : In(stream.Signature(block_result_layout(params), always_ready=True))
    o : Out(stream.Signature(result_layout(params), always_ready=True))
    """

    def __init__(self, *, params: TileParams):
        if not params.requant:
            raise ValueError("Requantizer needs params with requant=True")
        self.params = params
        super().__init__({
            "i": In(stream.Signature(block_result_layout(params), always_ready=True)),
            "o": Out(stream.Signature(result_layout(params), always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        L = p.lanes
        lane_layout = data.StructLayout({"y": signed(p.acc_width), "prm": requant_layout()})
        snap = [Signal(lane_layout, name=f"snap_l{lane}") for lane in range(L)]
        last = Signal()
        remaining = Signal(range(L + 1))
        step = Signal()
        m.d.comb += step.eq(remaining.any())
        with m.If(step):
            m.d.sync += remaining.eq(remaining - 1)
            for lane in range(L - 1):
                m.d.sync += snap[lane].eq(snap[lane + 1])
        with m.If(self.i.valid):
            m.d.sync += [remaining.eq(L), last.eq(self.i.payload.last)]
            for lane in range(L):
                m.d.sync += [snap[lane].y.eq(self.i.payload.y[lane]), snap[lane].prm.eq(self.i.payload.requant[lane])]
        head = snap[0]

        # Stage 1: y * M as registered DSP partial products; the shift and its rounding term.
        v1 = Signal()
        shift1 = Signal(unsigned(REQUANT_SHIFT_BITS))
        round1 = Signal(REQUANT_SHIFT_MAX + 1)
        m.d.sync += [v1.eq(step), shift1.eq(head.prm.shift),
                     round1.eq((Const(1, REQUANT_SHIFT_MAX + 1) << head.prm.shift) >> 1)]
        total = split_product(m, "sync", head.y, head.prm.mult, "ym")

        # Stage 2: the exact product; stage 3: plus the rounding term.
        v2 = Signal()
        prod2 = Signal(signed(p.acc_width + REQUANT_MULT_BITS + 1))
        shift2 = Signal.like(shift1)
        round2 = Signal.like(round1)
        m.d.sync += [v2.eq(v1), prod2.eq(total()), shift2.eq(shift1), round2.eq(round1)]
        v3 = Signal()
        t3 = Signal(signed(p.acc_width + REQUANT_MULT_BITS + 2))
        shift3 = Signal.like(shift1)
        m.d.sync += [v3.eq(v2), t3.eq(prod2 + round2), shift3.eq(shift2)]

        # Stage 4: the arithmetic shift; stage 5: the clamp into the lane's result.
        v4 = Signal()
        s4 = Signal.like(t3)
        m.d.sync += [v4.eq(v3), s4.eq(t3 >> shift3)]
        out = Signal(signed(OUT_BITS))
        m.d.comb += out.eq(Mux(s4 > _OUT_MAX, _OUT_MAX, Mux(s4 < _OUT_MIN, _OUT_MIN, s4)))
        lane4 = Signal(L, init=1)         # one-hot: the lane leaving stage 4 in this cycle
        m.d.sync += self.o.valid.eq(0)
        with m.If(v4):
            m.d.sync += lane4.eq(lane4.rotate_left(1))
            for lane in range(L):
                with m.If(lane4[lane]):
                    m.d.sync += self.o.payload.data[lane].eq(out)
            with m.If(lane4[L - 1]):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.last.eq(last)]
        assert REQUANT_DEPTH == 5
        return m
