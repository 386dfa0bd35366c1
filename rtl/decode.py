"""Decode: one packed pair into its two codes on the accumulation grid (wiring only)."""

from __future__ import annotations

from amaranth.hdl import Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.format import Arithmetic, Format, parse_arithmetic, parse_format
from rtl.layouts import pair_layout

__all__ = ["PairDecode"]


class PairDecode(wiring.Component):
    """Split a pair ``q_even | q_odd << E`` into its codes.

    With the shared grid the odd code is placed on the even grid
    (``q_odd << (E - O)``); with own grids it stays as it is.  Both are wiring.

    Parameters
    ----------
    fmt : Format or str
    arithmetic : {"own", "shared"}

    Attributes
    ----------
    pair : In(pair_layout(fmt))
    even : Out(E)
    odd : Out(O + odd_shift)
    """

    #: Wiring only: no register between the pair and its codes.
    LATENCY = 0

    def __init__(self, *, fmt: "Format | str", arithmetic: "Arithmetic | str" = "own"):
        self.fmt = parse_format(fmt)
        self.arithmetic = parse_arithmetic(arithmetic)
        self.odd_shift = self.fmt.odd_shift(self.arithmetic)
        super().__init__({
            "pair": In(pair_layout(self.fmt)),
            "even": Out(unsigned(self.fmt.even_bits)),
            "odd": Out(unsigned(self.fmt.odd_bits + self.odd_shift)),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [
            self.even.eq(self.pair.even),
            self.odd.eq(self.pair.odd << self.odd_shift),
        ]
        return m
