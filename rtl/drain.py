"""Between parallel lanes and the time-shared epilogue: one lane per cycle out, and back to one beat.

``LaneDrain`` turns a record of ``L`` lanes (all valid in one cycle) into ``L`` records, one
lane per cycle; ``LaneGather`` turns ``L`` serial lane results back into one beat.  Area is
what the epilogue is judged on, so both are built from flip-flops (free in LUT4-equivalents)
and as few LUTs as the fabric allows:

* the drain captures the lanes with a clock enable only (each lane's ``CONTROL_FANOUT`` flip-flops on
  their own copy of the record's valid, so no single net enables many), then each lane in its turn passes a
  register that holds zero outside its turn (a synchronous clear, which the fabric's flip-flops
  have built in), and an OR of those registers is the serial output: about ``(L - 1) / 3`` LUT4
  per bit of a lane instead of ``L - 1`` for a load-or-shift chain or a multiplexer;
* the gather is a shift register with a clock enable: no LUTs.
"""

from __future__ import annotations

from functools import reduce

from amaranth.hdl import Assert, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.checks import check_int
from rtl.registers import RegisteredCopy, register_slices

__all__ = ["LaneDrain", "LaneGather", "drain_input_layout", "drain_output_layout", "gather_input_layout",
           "DRAIN_LATENCY", "GATHER_LATENCY"]

#: Cycles from a record on the drain's input to its lane 0 on the output (lane ``l`` follows ``l`` cycles later).
DRAIN_LATENCY = 2
#: Cycles from the last lane on the gather's input to the whole beat on its output (it completes the beat).
GATHER_LATENCY = 0


def _check_lanes(lanes) -> int:
    return check_int("lanes", lanes, 1)


def drain_input_layout(lane_layout, common_layout, lanes: int) -> data.StructLayout:
    """A record of ``lanes`` lanes, the fields they share, and ``capture_next``: per lane ``valid`` one cycle ahead.

    Each lane's flag (a register of its own at the source) is that lane's capture enable of the next
    cycle; the drain registers a copy of it per ``CONTROL_FANOUT`` flip-flops, so no one net enables a
    whole lane's flip-flops (a lane's single enable, ~114 flip-flops, had 9.0 ns of routing).
    """
    return data.StructLayout({"lanes": data.ArrayLayout(lane_layout, lanes), "common": common_layout,
                              "capture_next": unsigned(lanes)})


def drain_output_layout(lane_layout, common_layout) -> data.StructLayout:
    """One lane of a record, the record's shared fields, and ``first``/``last`` on its lanes 0 and ``L - 1``."""
    return data.StructLayout({"lane": lane_layout, "common": common_layout, "first": 1, "last": 1})


def gather_input_layout(shape) -> data.StructLayout:
    """One lane's result; ``last`` on lane ``L - 1``, ``end`` on every lane of the GEMV's final block."""
    return data.StructLayout({"data": shape, "last": 1, "end": 1})


class LaneDrain(wiring.Component):
    """A record of ``L`` lanes in, its lanes out one per cycle, lane 0 first, ``DRAIN_LATENCY`` cycles later.

    The input never stalls and must be valid at most once every ``L`` cycles (the tile spaces
    group ends ``params.epilogue_interval`` apart).  ``o.payload.common`` is the record's shared
    part alongside each of its lanes.

    Parameters
    ----------
    lane_layout : data.Layout
        One lane's part of the record.
    common_layout : data.Layout
        The part every lane shares.
    lanes : int
        ``L``.

    Attributes
    ----------
    i : In(stream.Signature(drain_input_layout(lane_layout, common_layout, lanes), always_ready=True))
    o : Out(stream.Signature(drain_output_layout(lane_layout, common_layout), always_ready=True))
    valid_ahead : Out(1)
        ``o.valid`` two cycles ahead (combinational from ``i.valid``: the next value of the register
        ``o.valid`` is loaded from), for a :class:`LaneGather` behind it.
    lane_next, common_next : Out(lane_layout), Out(common_layout)
        ``o.payload.lane`` and ``o.payload.common`` one cycle ahead (what their registers load next), so
        that a consumer far from the drain can load registers of its own beside it (the scaler's DSP
        input registers) and hold the same values as ``o.payload`` in the same cycles.
    """

    def __init__(self, *, lane_layout, common_layout, lanes: int):
        self.lanes = _check_lanes(lanes)
        self.lane_layout, self.common_layout = lane_layout, common_layout
        super().__init__({
            "i": In(stream.Signature(drain_input_layout(lane_layout, common_layout, lanes), always_ready=True)),
            "o": Out(stream.Signature(drain_output_layout(lane_layout, common_layout), always_ready=True)),
            "valid_ahead": Out(1),
            "lane_next": Out(lane_layout),
            "common_next": Out(common_layout),
        })

    def elaborate(self, platform):
        m = Module()
        L = self.lanes
        width = data.Layout.cast(self.lane_layout).size
        lanes_in = self.i.payload.lanes

        # turn[l]: lane l is in its gated register this cycle (a one-hot walk started by the input), and its
        # complement idle[l] walked alongside (the gated registers' synchronous clears are active high: a
        # register of the complement, not an inverter per lane); active: some lane is in its turn.
        turn = Signal(L)
        idle = Signal(L, init=(1 << L) - 1)
        not_valid = ~self.i.valid
        m.d.sync += [turn.eq(Cat(self.i.valid, turn[:-1])), idle.eq(Cat(not_valid, idle[:-1]))]
        active = Signal()      # == turn.any(): records are at least L cycles apart, so turn is one-hot
        m.d.comb += self.valid_ahead.eq(self.i.valid | (active & ~turn[L - 1]))
        m.d.sync += active.eq(self.valid_ahead)
        m.d.sync += Assert(active == turn.any(), "two records in the drain at once (closer than L cycles)")
        # Lane l is captured on its own copies of valid, registered here from payload.capture_next[l], one
        # per CONTROL_FANOUT bits (a RegisterSlice each).
        capture_next = self.i.payload.capture_next
        capture = Signal(L)
        m.d.sync += capture.eq(capture_next)
        m.d.sync += Assert(capture == Mux(self.i.valid, (1 << L) - 1, 0),
                           "a lane's capture enable differs from the record's valid")
        held = [Signal(width, name=f"held_l{lane}", reset_less=True) for lane in range(1, L)]
        common = Signal(self.common_layout, reset_less=True)
        for lane, reg in enumerate(held, start=1):
            register_slices(m, f"held_l{lane}", "enable", capture_next[lane], lanes_in[lane], reg)
        with m.If(self.i.valid):
            m.d.sync += common.eq(self.i.payload.common)
        # Gated registers: a lane's value in its turn, zero otherwise (a synchronous clear, no LUT).
        # Lane l > 0 clears on idle[l - 1]; each CONTROL_FANOUT bits of it on their own register of that
        # flag: one flag fanned out to a whole lane's clears was the tile's worst routed path.  Lane 0
        # enters its gated register with the record: it clears unless captured, on registers of one
        # inverter of capture_next[0] (an inverter per slice before).
        gated = [Signal(width, name=f"gated_l{lane}", reset_less=True) for lane in range(L)]
        register_slices(m, "gated_l0", "clear", ~capture_next[0], lanes_in[0], gated[0])
        idle_next = Cat(not_valid, idle[:-1])
        for lane in range(1, L):
            register_slices(m, f"gated_l{lane}", "clear", idle_next[lane - 1], held[lane - 1], gated[lane])
        # At most one gated register is non-zero: their OR is the lane in its turn.
        lane_out = Signal(width, reset_less=True)
        common_out = Signal(self.common_layout, reset_less=True)
        m.d.comb += [self.lane_next.eq(reduce(lambda a, b: a | b, gated)), self.common_next.eq(common)]
        m.d.sync += [lane_out.eq(self.lane_next), common_out.eq(self.common_next)]
        m.d.sync += [self.o.valid.eq(active), self.o.payload.first.eq(turn[0]), self.o.payload.last.eq(turn[L - 1])]
        m.d.comb += [self.o.payload.lane.eq(lane_out), self.o.payload.common.eq(common_out)]
        return m


class LaneGather(wiring.Component):
    """``L`` serial lane results in (lane 0 first), one beat of ``L`` lanes out with the last of them.

    A shift register with a clock enable holds lanes ``0 .. L-2``; the beat is valid in the cycle
    lane ``L - 1`` arrives (``last``), marked ``last`` when the lanes carry ``end`` (the GEMV's
    final block).

    Parameters
    ----------
    shape : ShapeCastable
        One lane's result.
    lanes : int
        ``L``.

    Attributes
    ----------
    i : In(stream.Signature(gather_input_layout(shape), always_ready=True))
    valid_ahead : In(1)
        ``i.valid`` two cycles ahead, a register at the source (for the shift's clock enables: it is copied
        once per lane, and each lane's copy is copied once per ``CONTROL_FANOUT`` bits, so that no net
        that crosses the die is driven by a LUT or drives more than ``L - 1`` registers).
    o : Out(stream.Signature(StructLayout({"data": ArrayLayout(shape, L), "last": 1}), always_ready=True))
        The tile's result beat layout (``rtl.layouts.result_layout``).
    """

    def __init__(self, *, shape, lanes: int):
        self.lanes = _check_lanes(lanes)
        self.shape = shape
        out = data.StructLayout({"data": data.ArrayLayout(shape, lanes), "last": 1})
        super().__init__({
            "i": In(stream.Signature(gather_input_layout(shape), always_ready=True)),
            "valid_ahead": In(1),
            "o": Out(stream.Signature(out, always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        L = self.lanes
        # Lanes 0 .. L-2 wait in a shift register; lane L - 1 completes the beat as it arrives.  The shift's
        # clock enables are registered copies of valid one cycle ahead, one per CONTROL_FANOUT bits, each loaded
        # from its lane's register of valid_ahead (one register had driven all (L - 1) lanes' enables: 12.8 ns of
        # routing on a 4+3 placement; then a LUT of the scaler's registers driving the 45 copies: 7.3 ns).
        valid_next, valid = Signal(), Signal()
        m.d.sync += [valid_next.eq(self.valid_ahead), valid.eq(valid_next)]
        m.d.sync += Assert(valid == self.i.valid, "the gather's valid_ahead was not its input's valid two cycles ahead")
        beat = [Signal(self.shape, name=f"beat_l{lane}", reset_less=True) for lane in range(L - 1)]
        for lane in range(L - 1):
            copy = m.submodules[f"valid_next_l{lane}"] = RegisteredCopy()
            m.d.comb += copy.d.eq(self.valid_ahead)
            source = beat[lane + 1] if lane + 1 < L - 1 else self.i.payload.data
            register_slices(m, f"beat_l{lane}", "enable", copy.q, source, beat[lane])
        m.d.comb += [
            self.o.valid.eq(self.i.valid & self.i.payload.last),
            self.o.payload.last.eq(self.i.payload.end),
            self.o.payload.data[L - 1].eq(self.i.payload.data),
        ]
        m.d.comb += [self.o.payload.data[lane].eq(beat[lane]) for lane in range(L - 1)]
        return m
