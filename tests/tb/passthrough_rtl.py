"""A one-deep AXI-Stream register slice in Amaranth: the toolchain's smoke-test design."""

from amaranth import Module
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class AxisSignature(wiring.Signature):
    """AXI-Stream manager signature with AXI port names (``tdata``, ``tvalid``, ``tready``, ``tlast``)."""

    def __init__(self, width: int):
        super().__init__({"tdata": Out(width), "tvalid": Out(1), "tready": In(1), "tlast": Out(1)})


class Passthrough(wiring.Component):
    """Register slice from ``s_axis`` to ``m_axis``: full throughput, honours backpressure."""

    def __init__(self, *, width: int):
        if not isinstance(width, int) or width < 8 or width % 8:
            raise ValueError(f"width must be a positive multiple of 8, got {width!r}")
        super().__init__({"s_axis": In(AxisSignature(width)), "m_axis": Out(AxisSignature(width))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.s_axis.tready.eq(~self.m_axis.tvalid | self.m_axis.tready)
        with m.If(self.s_axis.tready):
            m.d.sync += [
                self.m_axis.tvalid.eq(self.s_axis.tvalid),
                self.m_axis.tdata.eq(self.s_axis.tdata),
                self.m_axis.tlast.eq(self.s_axis.tlast),
            ]
        return m


def write_verilog(path, *, width: int, name: str = "passthrough"):
    """Write the passthrough's Verilog to ``path``; return the path."""
    top = Passthrough(width=width)
    path.write_text(verilog.convert(top, name=name))
    return path
