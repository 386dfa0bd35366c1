"""Amaranth-simulator support for the block tests: stream drivers and whole-GEMV runs of the tile.

The GEMV helpers take their stimulus and expectations from golden (:mod:`golden.vectors`)
and only turn them into stream payloads, so a tile test compares the RTL with the golden
model, never with itself.
"""

from __future__ import annotations

import os
import random

import numpy as np
from amaranth.sim import Simulator

from golden.checks import check_int
from golden.oracle import row_activations
from golden.vectors import DEFAULT_SATURATE, random_vectors

__all__ = ["send", "receive", "act_beats", "make_job", "run_jobs", "result_lanes", "run_with_reset", "check",
           "cycles_one_gemv", "SimulationDeadlock", "run_simulation", "jobs_cycle_budget"]


class SimulationDeadlock(AssertionError):
    """A simulation's testbenches did not finish within their cycle budget (a hang turned into a failure)."""


def run_simulation(sim: Simulator, *, cycles: int, what: str = "simulation") -> None:
    """``sim.run()`` with a cycle budget: past ``cycles`` clock cycles it fails, naming the test.

    A deadlocked design (a stream that never becomes valid or ready) otherwise keeps an
    Amaranth simulation running for ever.  The budget is a watchdog testbench in the
    background on the ``sync`` clock (the simulation must have one).
    """
    check_int("cycles", cycles, 1)
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" (")[0]

    async def watchdog(ctx):
        for _ in range(cycles):     # (not tick().repeat(): left pending at the end it warns when collected)
            await ctx.tick()
        raise SimulationDeadlock(f"{what} did not finish within {cycles} cycles (a deadlock?)"
                                 + (f" in {test}" if test else ""))

    sim.add_testbench(watchdog, background=True)
    sim.run()


def jobs_cycle_budget(jobs, *, idle: float = 0.0, stall: float = 0.0, slack: int = 8) -> int:
    """A generous cycle budget for running ``jobs`` (``make_job`` dicts) with random gaps and stalls.

    Every transfer of every stream, stretched by the expected gaps, times ``slack``, plus a
    fixed allowance for the pipeline: a working tile needs a small fraction of it.
    """
    transfers = sum(len(job["words"]) + len(job["acts"]) + len(job.get("params", ())) + job["blocks"]
                    for job in jobs)
    stretch = 1.0 / (1.0 - max(idle, stall, 0.0))
    return int(slack * stretch * transfers) + 200


async def send(ctx, port, payloads, *, rng: "random.Random | None" = None, idle: float = 0.0):
    """Transfer ``payloads`` in order on stream ``port`` (we are the source).

    With ``rng`` and ``idle > 0``, wait a random number of cycles before each payload
    (valid low), so the sink sees gaps.  Valid never depends on ready.
    """
    for payload in payloads:
        while rng is not None and rng.random() < idle:
            await ctx.tick()
        ctx.set(port.payload, payload)
        ctx.set(port.valid, 1)
        await ctx.tick().until(port.ready)
        ctx.set(port.valid, 0)


async def receive(ctx, port, count: int, *, rng: "random.Random | None" = None, stall: float = 0.0,
                  extra=()):
    """Take ``count`` transfers from stream ``port`` (we are the sink); return the payloads.

    With ``rng`` and ``stall > 0``, ready is dropped at random (backpressure).  ``extra``
    are more values sampled at each transfer; then each item is ``(payload, *extras)``.
    """
    out = []
    for _ in range(count):
        while rng is not None and rng.random() < stall:
            ctx.set(port.ready, 0)
            await ctx.tick()
        ctx.set(port.ready, 1)
        payload, *extras = await ctx.tick().sample(port.payload, *extra).until(port.valid)
        out.append((payload, *extras) if extra else payload)
    ctx.set(port.ready, 0)
    return out


def act_beats(qm, a):
    """Activation pairs of one column block in the tile's row order, ``last`` on the final pair."""
    rows = row_activations(qm, a)
    n = qm.K_pad // 2
    return [{"even": int(rows[2 * i]), "odd": int(rows[2 * i + 1]), "last": int(i == n - 1)} for i in range(n)]


def make_job(p, rng: np.random.Generator, *, K: int, N: int, saturate: float = DEFAULT_SATURATE):
    """A random GEMV for the tile ``p`` and its golden expectation, as stream payloads.

    The vectors are :func:`golden.vectors.random_vectors`' (Gaussian weights with a random
    scale per column, INT8 activations over the full range; with requantization the output
    scale saturates about a fraction ``saturate`` of the results).

    Returns a dict: ``words`` (bus-word payloads), ``acts`` (activation-pair payloads for every
    block), ``params`` (requantization beats), ``expected`` (int64, ``(blocks, lanes)``),
    ``blocks`` and ``nbits``.
    """
    v = random_vectors(rng, p.fmt, K, N, lanes=p.lanes, arithmetic=p.arithmetic.value, group_size=p.group_size,
                       column_scales=(0.1, 2.0), requant=p.requant, saturate=saturate)
    ps = v.packed
    bus_words = ps.words(p.bus_width)
    words = [{"data": w, "last": int(n == len(bus_words) - 1)} for n, w in enumerate(bus_words)]
    blocks = ps.layout.n_blocks
    acts = act_beats(v.qm, v.a) * blocks
    prm = []
    if p.requant:
        Mp = np.zeros(ps.layout.N_pad, dtype=np.int64)
        Sp = np.ones(ps.layout.N_pad, dtype=np.int64)
        Mp[:N], Sp[:N] = v.requant
        for b in range(blocks):
            lanes = slice(b * p.lanes, (b + 1) * p.lanes)
            prm.append([{"mult": int(mm), "shift": int(ss)} for mm, ss in zip(Mp[lanes], Sp[lanes])])
    exp_pad = np.zeros(ps.layout.N_pad, dtype=np.int64)
    exp_pad[:N] = v.expected
    return {"words": words, "acts": acts, "params": prm, "expected": exp_pad.reshape(blocks, p.lanes),
            "blocks": blocks, "nbits": ps.nbits}


def result_lanes(p, payloads):
    """Result beats as ``(lane values, last)`` pairs, the form :func:`check` compares."""
    return [([int(b.data[lane]) for lane in range(p.lanes)], int(b.last)) for b in payloads]


def run_jobs(p, jobs, *, seed=0, idle=0.0, stall=0.0):
    """Run GEMVs back to back on a fresh tile with random gaps and backpressure.

    Returns, per job, the list of result beats ``(lane values, last)``.
    """
    from rtl.tile import SeptetTile
    dut = SeptetTile(params=p)
    rng = random.Random(seed)
    got = []

    async def weights(ctx):
        for job in jobs:
            await send(ctx, dut.weights, job["words"], rng=rng, idle=idle)

    async def acts(ctx):
        for job in jobs:
            await send(ctx, dut.act, job["acts"], rng=rng, idle=idle)

    async def params(ctx):
        for job in jobs:
            await send(ctx, dut.params_in, job["params"], rng=rng, idle=idle)

    async def results(ctx):
        for job in jobs:
            got.append(result_lanes(p, await receive(ctx, dut.result, job["blocks"], rng=rng, stall=stall)))

    _simulate(dut, p, weights, acts, params, results, cycles=jobs_cycle_budget(jobs, idle=idle, stall=stall))
    return got


def run_with_reset(p, first, second, reset_after: int, *, sink_idle: bool = False):
    """Feed ``first``, reset ``reset_after`` cycles after its first result, then run ``second``.

    The inputs of ``first`` still unsent at the reset are dropped; returns ``second``'s result
    beats as :func:`result_lanes` (a one-element list, for :func:`check`).

    With ``sink_idle`` no result of ``first`` is taken: the reset comes ``reset_after`` cycles
    after the start, with the output queue as full as the tile made it.
    """
    from amaranth.hdl import ResetInserter, Signal
    from rtl.tile import SeptetTile
    rst = Signal()
    dut = SeptetTile(params=p)
    got = []

    async def feed(ctx, port, abandoned, items):
        reset_seen = False
        for item in abandoned:
            ctx.set(port.payload, item)
            ctx.set(port.valid, 1)
            while True:
                _clk, _rst, ready, reset_seen = await ctx.tick().sample(port.ready, rst)
                if ready or reset_seen:
                    break
            if reset_seen:
                break
        ctx.set(port.valid, 0)
        if not reset_seen:
            await ctx.tick().until(rst)
        await send(ctx, port, items)

    async def bench(ctx):
        if not sink_idle:
            await receive(ctx, dut.result, 1)
        await ctx.tick().repeat(reset_after)
        ctx.set(rst, 1)
        await ctx.tick()
        ctx.set(rst, 0)
        got.append(result_lanes(p, await receive(ctx, dut.result, second["blocks"])))

    async def weights(ctx):
        await feed(ctx, dut.weights, first["words"], second["words"])

    async def acts(ctx):
        await feed(ctx, dut.act, first["acts"], second["acts"])

    sim = Simulator(ResetInserter(rst)(dut))
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.add_testbench(weights, background=True)
    sim.add_testbench(acts, background=True)
    run_simulation(sim, cycles=jobs_cycle_budget([first, second]), what="reset run")
    return got


def _simulate(dut, p, weights, acts, params, results, *, cycles: int):
    """Run the tile with the input feeders in the background until ``results`` returns (within ``cycles``)."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(weights, background=True)
    sim.add_testbench(acts, background=True)
    if p.requant:
        sim.add_testbench(params, background=True)
    sim.add_testbench(results)
    run_simulation(sim, cycles=cycles, what="tile GEMV run")


def check(jobs, got):
    """Assert every block's lanes and the tlast markers against the golden expectations."""
    assert len(got) == len(jobs)
    for job, beats in zip(jobs, got):
        assert [lanes for lanes, _ in beats] == job["expected"].tolist()
        assert [last for _, last in beats] == [0] * (job["blocks"] - 1) + [1]


def cycles_one_gemv(p, job):
    """Run one GEMV with every stream always valid/ready; return ``(cycles, result beats)``.

    ``cycles`` counts from the edge at which the first weight word is accepted to the edge at
    which the tlast result beat is accepted, both included (the testbench's definition).
    """
    from rtl.tile import SeptetTile
    dut = SeptetTile(params=p)
    marks = {}

    async def weights(ctx):
        ctx.set(dut.weights.valid, 1)
        cycle = 0
        for word in job["words"]:
            ctx.set(dut.weights.payload, word)
            while True:
                _clk, _rst, ready = await ctx.tick().sample(dut.weights.ready)
                cycle += 1
                if ready:
                    break
            marks.setdefault("first", cycle)
        ctx.set(dut.weights.valid, 0)

    async def acts(ctx):
        await send(ctx, dut.act, job["acts"])

    async def params(ctx):
        await send(ctx, dut.params_in, job["params"])

    beats = []

    async def results(ctx):
        ctx.set(dut.result.ready, 1)
        cycle = 0
        while len(beats) < job["blocks"]:
            _clk, _rst, valid, payload = await ctx.tick().sample(dut.result.valid, dut.result.payload)
            cycle += 1
            if valid:
                beats.append(([int(payload.data[lane]) for lane in range(p.lanes)], int(payload.last)))
        marks["last"] = cycle

    _simulate(dut, p, weights, acts, params, results, cycles=jobs_cycle_budget([job]))
    return marks["last"] - marks["first"] + 1, beats
