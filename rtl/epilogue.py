"""The epilogue: a group's sums from the parallel lanes to a block's result beat, time-shared one lane per cycle."""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect

from rtl.correct import GroupScaler
from rtl.drain import LaneDrain, LaneGather
from rtl.layouts import group_common_layout, group_sums_layout, lane_sums_layout, result_layout
from rtl.params import TileParams
from rtl.requant import Requantizer

__all__ = ["Epilogue"]


class Epilogue(wiring.Component):
    """Drain -> group scaler -> [requantizer] -> gather.

    The lanes hand a group's sums over in parallel (``i``, one cycle per group, at least
    ``params.epilogue_interval`` cycles apart); :class:`~rtl.drain.LaneDrain` passes them on one
    lane per cycle through :class:`~rtl.correct.GroupScaler` (and
    :class:`~rtl.requant.Requantizer`), and :class:`~rtl.drain.LaneGather` turns a block's
    lane results back into one result beat on ``o``.  Fixed latency, never stalls.

    Parameters
    ----------
    params : TileParams

    Attributes
    ----------
    i : In(stream.Signature(group_sums_layout(params), always_ready=True))
    o : Out(stream.Signature(result_layout(params), always_ready=True))
    """

    def __init__(self, *, params: TileParams):
        self.params = params
        super().__init__({
            "i": In(stream.Signature(group_sums_layout(params), always_ready=True)),
            "o": Out(stream.Signature(result_layout(params), always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.drain = drain = LaneDrain(lane_layout=lane_sums_layout(p), common_layout=group_common_layout(p),
                                               lanes=p.lanes)
        m.submodules.scaler = scaler = GroupScaler(params=p)
        m.submodules.gather = gather = LaneGather(shape=result_layout(p)["data"].shape.elem_shape, lanes=p.lanes)
        sums, into = self.i.payload, drain.i.payload
        m.d.comb += [drain.i.valid.eq(self.i.valid), into.common.sa.eq(sums.sa),
                     into.common.block_end.eq(sums.block_end), into.common.last.eq(sums.last),
                     into.capture_next.eq(sums.capture_next)]
        for lane in range(p.lanes):
            m.d.comb += [into.lanes[lane].acc.eq(sums.acc[lane]), into.lanes[lane].header.eq(sums.header[lane])]
            if p.requant:
                m.d.comb += into.lanes[lane].requant.eq(sums.requant[lane])
        connect(m, drain.o, scaler.i)
        m.d.comb += [scaler.lane_next.eq(drain.lane_next), scaler.common_next.eq(drain.common_next)]
        if p.requant:
            m.submodules.requant = requant = Requantizer(params=p)
            connect(m, scaler.o, requant.i)
            connect(m, requant.o, gather.i)
            m.d.comb += gather.valid_ahead.eq(requant.o_valid_ahead)
        else:
            connect(m, scaler.o, gather.i)
            m.d.comb += gather.valid_ahead.eq(scaler.o_valid_ahead)
        connect(m, gather.o, wiring.flipped(self.o))
        return m
