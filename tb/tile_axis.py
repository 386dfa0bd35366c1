"""cocotb testbench of the septet tile driven beat by beat through cocotbext-axi ("axis" mode).

Reads the GEMVs from ``gemvs.npz``/``gemvs.json`` in the test directory
(:class:`tb.gemv_data.GemvSet`), drives ``s_axis_weights``, ``s_axis_act``
and (when the tile has it) ``s_axis_params`` from cocotbext-axi sources with
pause generators (idle cycles), takes ``m_axis_result`` with a sink whose
pause generator applies backpressure, and checks every result beat in order
against golden with :class:`tb.scoreboard.Scoreboard`.  Cycles per GEMV are
counted from the first weight word accepted to the tlast result beat
accepted, both inclusive.

Options (``gemvs.json`` ``options``): ``idle`` (pause probability of every
input), ``backpressure`` (of the output), ``seed``, ``reset_at`` (assert
reset that many cycles into GEMV 0, which is then abandoned and not checked),
``timeout_cycles``.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, SimTimeoutError, with_timeout
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from golden.format import padded_width
from tb.gemv_data import GemvSet, port_widths
from tb.outcome import ProgressWriter, write_outcome
from tb.scoreboard import Scoreboard
from tb.stalls import pause_generator

CLOCK_NS = 10
RESET_CYCLES = 4


def _bus(dut, name):
    return AxiStreamBus.from_prefix(dut, name, bus_separator="__")


def _frame(beats: np.ndarray, beat_bytes: int) -> AxiStreamFrame:
    """One frame of ``beats`` (uint8 rows), each zero-padded to the port's ``beat_bytes``."""
    rows = np.zeros((len(beats), beat_bytes), dtype=np.uint8)
    rows[:, :beats.shape[1]] = beats
    return AxiStreamFrame(rows.tobytes())


def check_port_widths(dut, config) -> None:
    """Fail with the port's name if a tdata width differs from the contract (whole bytes of the real width)."""
    for name, bits in port_widths(config).items():
        got = len(getattr(dut, name))
        assert got == padded_width(bits), f"{name} is {got} bits, the contract says {padded_width(bits)}"


class CycleCounter:
    """Counts clock cycles and records, per GEMV, the first weight acceptance and the tlast result."""

    def __init__(self, dut, progress: ProgressWriter):
        self.dut = dut
        self.cycle = 0
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.expect_first = True
        self.progress = progress

    def restart(self):
        self.starts.clear()
        self.ends.clear()
        self.expect_first = True

    async def run(self):
        dut = self.dut
        wv, wr, wl = dut.s_axis_weights__tvalid, dut.s_axis_weights__tready, dut.s_axis_weights__tlast
        rv, rr, rl = dut.m_axis_result__tvalid, dut.m_axis_result__tready, dut.m_axis_result__tlast
        edge = RisingEdge(dut.clk)
        while True:
            await edge
            self.cycle += 1
            if wv.value and wr.value:
                if self.expect_first:
                    self.starts.append(self.cycle)
                    self.expect_first = False
                if wl.value:
                    self.expect_first = True
            if rv.value and rr.value and rl.value:
                self.ends.append(self.cycle)
            if not self.cycle & 0xFFF:
                self.progress.update(self.cycle, f"GEMVs done {len(self.ends)}")


class TB:
    """The tile under cocotbext-axi, in the style of cocotbext-axi's own testbenches.

    One place sets up the clock, the sources and the sink, the idle and backpressure
    generators, and the reset; the test only sends GEMVs and awaits their results.

    Parameters
    ----------
    dut
        The ``septet_tile`` top.
    config : rtl.params.TileParams
    """

    def __init__(self, dut, config):
        self.dut = dut
        self.config = config
        check_port_widths(dut, config)
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        self.weights = AxiStreamSource(_bus(dut, "s_axis_weights"), dut.clk, dut.rst)
        self.act = AxiStreamSource(_bus(dut, "s_axis_act"), dut.clk, dut.rst)
        self.params = AxiStreamSource(_bus(dut, "s_axis_params"), dut.clk, dut.rst) if config.requant else None
        self.result = AxiStreamSink(_bus(dut, "m_axis_result"), dut.clk, dut.rst)
        self.sources = [s for s in (self.weights, self.act, self.params) if s is not None]
        for port in (*self.sources, self.result):
            port.log.setLevel("WARNING")

    def set_idle_generator(self, idle: float, rng: random.Random) -> None:
        """Each input holds back its next beat with probability ``idle`` per cycle (own seed per input)."""
        if idle:
            for source in self.sources:
                source.set_pause_generator(pause_generator(idle, rng.randrange(1 << 30)))

    def set_backpressure_generator(self, backpressure: float, rng: random.Random) -> None:
        """The result sink is not ready with probability ``backpressure`` per cycle."""
        if backpressure:
            self.result.set_pause_generator(pause_generator(backpressure, rng.randrange(1 << 30)))

    async def reset(self) -> None:
        """Synchronous reset for :data:`RESET_CYCLES`: the tile, and every queued beat, back to idle."""
        self.dut.rst.value = 1
        for source in self.sources:
            source.clear()
        await ClockCycles(self.dut.clk, RESET_CYCLES)
        self.result.clear()
        self.dut.rst.value = 0

    def send(self, gemv) -> None:
        """Queue one GEMV's weight words, its activations (once per column block) and its parameters."""
        self.weights.send_nowait(_frame(gemv.weights, self.weights.byte_lanes))
        block_act = _frame(gemv.act, self.act.byte_lanes)
        for b in range(gemv.n_blocks):
            self.act.send_nowait(block_act)
            if self.params is not None:
                self.params.send_nowait(_frame(gemv.params[b:b + 1], self.params.byte_lanes))

    async def recv(self, timeout_cycles: int) -> "AxiStreamFrame | None":
        """The next GEMV's result frame, or ``None`` when none completes within ``timeout_cycles`` cycles."""
        if timeout_cycles <= 0:
            return None
        try:
            return await with_timeout(self.result.recv(), timeout_cycles * CLOCK_NS, "ns")
        except SimTimeoutError:
            return None


@cocotb.test()
async def gemvs_match_golden(dut):
    """Every result beat of every GEMV equals golden, in order, under idle cycles and backpressure."""
    directory = Path(os.environ.get("SEPTET_TB_DIR", "."))
    gemv_set = GemvSet.read(directory)
    config, opts = gemv_set.config, gemv_set.options
    rng = random.Random(int(opts.get("seed", 0)))
    idle = float(opts.get("idle", 0.0))
    backpressure = float(opts.get("backpressure", 0.0))
    reset_at = opts.get("reset_at")

    tb = TB(dut, config)
    tb.set_idle_generator(idle, rng)
    tb.set_backpressure_generator(backpressure, rng)
    ideal = sum(g.ideal_cycles(config.bus_width) for g in gemv_set.gemvs)
    progress = ProgressWriter(directory, int(ideal / max(1e-3, (1 - idle) * (1 - backpressure))))
    counter = CycleCounter(dut, progress)
    await tb.reset()
    cocotb.start_soon(counter.run())

    gemvs = list(gemv_set.gemvs)
    if reset_at is not None:
        # GEMV 0 is interrupted by a reset: its partial results are discarded, the rest must be exact.
        tb.send(gemvs[0])
        await ClockCycles(dut.clk, int(reset_at))
        await tb.reset()
        await RisingEdge(dut.clk)
        counter.restart()
        gemvs = gemvs[1:]

    scoreboard = Scoreboard(gemvs, config.lanes, config.out_bits)
    start = time.perf_counter()
    for gemv in gemvs:
        tb.send(gemv)
    timeout = int(opts.get("timeout_cycles", 0)) or 50 * ideal + 10_000
    limit = counter.cycle + timeout
    for gemv in gemvs:
        frame = await tb.recv(limit - counter.cycle)
        if frame is None:
            break
        scoreboard.check_frame(bytes(frame.tdata))
    await ClockCycles(dut.clk, 2)
    cycles = [e - s + 1 for s, e in zip(counter.starts, counter.ends)]
    write_outcome(directory, mode="axis", cycles=cycles, starts=counter.starts, ends=counter.ends,
                  scoreboard=scoreboard, sim_seconds=time.perf_counter() - start, total_cycles=counter.cycle,
                  extra={"timed_out": not scoreboard.done})
    if not scoreboard.done:
        raise AssertionError(f"timeout after {timeout} cycles\n{scoreboard.report()}")
    scoreboard.assert_passed()
