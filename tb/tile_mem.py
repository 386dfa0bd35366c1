"""cocotb testbench of the septet tile in memory mode (the fast mode, see :mod:`tb.mem_wrapper`).

The top ``septet_mem_tb`` (``tb/septet_mem_tb.sv``) streams the GEMVs from files into the
tile and writes every result beat to a file.  Python starts the clock (or,
with the ``hdl_clock`` option, the wrapper makes its own), asks the top to run
the set (``request``), sleeps until ``done`` (waking about every 64 k cycles to
report progress), then checks every beat in order with :class:`tb.scoreboard.Scoreboard`.

Two tests:

* ``gemvs_match_golden``: the set in the directory, once;
* ``serve_requests``: the simulator stays up (:class:`tb.simulate.MemServer`) and runs
  one set per line read from the request pipe, answering on the reply pipe once the
  set's outcome is written; it ends on ``stop``, when the host closes the pipe, or
  after a timed-out set (the tile's state is then unknown).
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
#: Pipes of ``serve_requests`` in the simulator's directory (made by the host).
REQUEST_PIPE, REPLY_PIPE = "requests.fifo", "replies.fifo"


def _directory() -> Path:
    return Path(os.environ.get("SEPTET_TB_DIR", "."))


def _start_clock(dut, gemv_set: GemvSet) -> None:
    if not gemv_set.options.get("hdl_clock"):
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())


async def run_set(dut, directory: Path, gemv_set: GemvSet, request: int) -> dict:
    """Have the top run the set whose files are in ``directory`` as request number ``request``; check every
    result beat; write and return the outcome."""
    config, opts = gemv_set.config, gemv_set.options
    ideal = sum(g.ideal_cycles(config.bus_width) for g in gemv_set.gemvs)
    idle, backpressure = float(opts.get("idle", 0.0)), float(opts.get("backpressure", 0.0))
    progress = ProgressWriter(directory, int(ideal / max(1e-3, (1 - idle) * (1 - backpressure))))
    start = time.perf_counter()
    dut.request.value = request
    elapsed = 0
    while not (dut.done.value and int(dut.served.value) == request):
        await First(RisingEdge(dut.done), Timer(CLOCK_NS * PROGRESS_CYCLES, unit="ns"))
        elapsed += PROGRESS_CYCLES
        progress.update(elapsed)
    sim_seconds = time.perf_counter() - start
    beats, lasts, starts, ends, timed_out = read_results(directory, config)
    scoreboard = Scoreboard(gemv_set.gemvs, config.lanes, config.out_bits)
    scoreboard.check_beats(beats, lasts)
    cycles = [e - s + 1 for s, e in zip(starts, ends)]
    return write_outcome(directory, mode="mem", cycles=cycles, starts=starts, ends=ends, scoreboard=scoreboard,
                         sim_seconds=sim_seconds, total_cycles=ends[-1] if ends else 0,
                         extra={"timed_out": bool(timed_out), "request": request})


@cocotb.test()
async def gemvs_match_golden(dut):
    """Every result beat the memory-model top recorded equals golden, in order."""
    directory = _directory()
    gemv_set = GemvSet.read(directory)
    _start_clock(dut, gemv_set)
    outcome = await run_set(dut, directory, gemv_set, 1)
    if outcome["timed_out"]:
        raise AssertionError(f"the memory-model top timed out\n{outcome['report']}")
    assert outcome["passed"], outcome["report"]


@cocotb.test()
async def serve_requests(dut):
    """Run the sets the host asks for, one after another, in the same simulator."""
    directory = _directory()
    clock_started = False
    with open(directory / REQUEST_PIPE) as requests, open(directory / REPLY_PIPE, "w") as replies:
        while True:
            line = requests.readline()     # blocks the simulator: nothing runs between sets
            if not line or line.strip() == "stop":
                return
            request = int(line)
            gemv_set = GemvSet.read(directory)
            if not clock_started:
                _start_clock(dut, gemv_set)
                clock_started = True
            try:
                outcome = await run_set(dut, directory, gemv_set, request)
            finally:
                replies.write(f"{request}\n")
                replies.flush()
            if outcome["timed_out"]:
                raise AssertionError(f"the memory-model top timed out in request {request}\n{outcome['report']}")
