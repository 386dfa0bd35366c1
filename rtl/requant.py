"""Optional INT8 requantization of a block's results, bit-exact with ``golden.oracle.requantize``."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from golden.format import OUT_BITS, REQUANT_SHIFT_MAX
from rtl.layouts import block_result_layout, result_layout
from rtl.params import TileParams

__all__ = ["Requantizer", "requantize_value"]

_OUT_MIN, _OUT_MAX = -(1 << (OUT_BITS - 1)), (1 << (OUT_BITS - 1)) - 1


def requantize_value(y, mult, shift):
    """The requantization expression: ``clamp((y * M + 2**(s-1)) >> s, -128, 127)``.

    ``>>`` of a signed value is arithmetic (flooring), so ties round towards +infinity;
    the product is exact (its width grows with ``y``).  ``s = 0`` (outside the contract's
    ``[1, 63]``) adds no rounding term.
    """
    rounding = (Const(1, REQUANT_SHIFT_MAX + 1) << shift) >> 1
    shifted = (y * mult + rounding) >> shift
    return Mux(shifted > _OUT_MAX, _OUT_MAX, Mux(shifted < _OUT_MIN, _OUT_MIN, shifted))


class Requantizer(wiring.Component):
    """One registered stage: every lane's ``y`` to INT8 with its column's multiplier and shift.

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
        m.d.sync += self.o.valid.eq(self.i.valid)
        with m.If(self.i.valid):
            for lane in range(p.lanes):
                prm = self.i.payload.requant[lane]
                out = Signal(signed(OUT_BITS), name=f"out_l{lane}")
                m.d.comb += out.eq(requantize_value(self.i.payload.y[lane], prm.mult, prm.shift))
                m.d.sync += self.o.payload.data[lane].eq(out)
            m.d.sync += self.o.payload.last.eq(self.i.payload.last)
        return m
