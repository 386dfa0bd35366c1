"""cocotb testbench of the septet tile in memory mode (the fast mode, see :mod:`tb.mem_wrapper`).

The top ``septet_mem_tb`` (``tb/septet_mem_tb.sv``) streams the GEMVs from files into the
tile and writes every result beat to a file.  Python starts the clock (or,
with the ``hdl_clock`` option, the wrapper makes its own), sleeps until
``done`` (waking about every 64 k cycles to report progress), then checks
every beat in order with :class:`tb.scoreboard.Scoreboard`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import First, RisingEdge, Timer

from tb.gemv_data import GemvSet
from tb.mem_wrapper import HALF_PERIOD_NS, read_results
from tb.outcome import ProgressWriter, write_outcome
from tb.scoreboard import Scoreboard

CLOCK_NS = 2 * HALF_PERIOD_NS
#: Cycles between progress reports (Python sleeps in between).
PROGRESS_CYCLES = 1 << 16


@cocotb.test()
async def gemvs_match_golden(dut):
    """Every result beat the memory-model top recorded equals golden, in order."""
    directory = Path(os.environ.get("SEPTET_TB_DIR", "."))
    gemv_set = GemvSet.read(directory)
    config, opts = gemv_set.config, gemv_set.options
    ideal = sum(g.ideal_cycles(config.bus_width) for g in gemv_set.gemvs)
    idle, backpressure = float(opts.get("idle", 0.0)), float(opts.get("backpressure", 0.0))
    progress = ProgressWriter(directory, int(ideal / max(1e-3, (1 - idle) * (1 - backpressure))))
    if not opts.get("hdl_clock"):
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    start = time.perf_counter()
    elapsed = 0
    while not dut.done.value:
        await First(RisingEdge(dut.done), Timer(CLOCK_NS * PROGRESS_CYCLES, unit="ns"))
        elapsed += PROGRESS_CYCLES
        progress.update(elapsed)
    sim_seconds = time.perf_counter() - start
    beats, lasts, starts, ends, timed_out = read_results(directory, config)
    scoreboard = Scoreboard(gemv_set.gemvs, config.lanes, config.out_bits)
    scoreboard.check_beats(beats, lasts)
    cycles = [e - s + 1 for s, e in zip(starts, ends)]
    write_outcome(directory, mode="mem", cycles=cycles, starts=starts, ends=ends, scoreboard=scoreboard,
                  sim_seconds=sim_seconds, total_cycles=ends[-1] if ends else 0,
                  extra={"timed_out": bool(timed_out)})
    if timed_out:
        raise AssertionError(f"the memory-model top timed out\n{scoreboard.report()}")
    scoreboard.assert_passed()
