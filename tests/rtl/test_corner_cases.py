# amaranth: UnusedElaboratable=no
"""Corner cases that realistic one-line bugs slipped through (issue 11), written from behaviour.

Each test drives the tile (or the gearbox) through its ports only and compares with golden:

* a requantization parameter beat that arrives late, its payload garbage while it is not valid;
* a final column block of exactly one bus word (``W`` = block bits), so the zero fill is empty;
* a reset that falls inside a group, at every phase of it;
* a consumer stalled for long bursts, so the gearbox fills to its capacity;
* extreme sums over many groups at ``max_k`` with the narrowest accumulator the parameters allow;
* the fixed latency against the stage list of ``rtl/TILE.md``, not against ``rtl/params.py``.
"""

import math
import random
import re
from pathlib import Path

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.format import ACT_MAX, ACT_MIN, REQUANT_MULT_BITS, REQUANT_SHIFT_MAX, Arithmetic, parse_format
from golden.oracle import gemv_int, requantize
from golden.pack import pack
from golden.quantize import QuantizedMatrix
from rtl.gearbox import Gearbox
from rtl.params import TileParams
from rtl.simutil import (act_beats, check, cycles_one_gemv, jobs_cycle_budget, make_job, receive, result_lanes,
                         run_jobs, run_simulation, run_with_reset, send)
from rtl.tile import SeptetTile

TILE_MD = Path(__file__).resolve().parents[2] / "rtl" / "TILE.md"


# -- late requantization parameters ------------------------------------------------------------------


def _run_requant_job(p, job, *, params_delay: int = 0, sink_delay: int = 0, noise_seed: int = 0, what: str):
    """Run ``job`` on a requantizing tile and check it against golden.

    Before each params beat its source waits ``params_delay`` cycles, not valid, showing noise on the
    payload (a source may show anything meanwhile); the sink takes nothing for ``sink_delay`` cycles.
    """
    dut = SeptetTile(params=p)
    noise = random.Random(noise_seed)
    got = []

    async def weights(ctx):
        await send(ctx, dut.weights, job["words"])

    async def acts(ctx):
        await send(ctx, dut.act, job["acts"])

    async def params(ctx):
        for beat in job["params"]:
            for _ in range(params_delay):
                ctx.set(dut.params_in.payload, [{"mult": noise.getrandbits(16), "shift": noise.randint(1, 63)}
                                                for _ in range(p.lanes)])
                await ctx.tick()
            await send(ctx, dut.params_in, [beat])

    async def results(ctx):
        if sink_delay:
            await ctx.tick().repeat(sink_delay)
        got.append(result_lanes(p, await receive(ctx, dut.result, job["blocks"])))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for bench in (weights, acts, params):
        sim.add_testbench(bench, background=True)
    sim.add_testbench(results)
    run_simulation(sim, cycles=40 * job["blocks"] + jobs_cycle_budget([job]), what=what)
    check([job], got)


@pytest.mark.parametrize("K,N", [(2, 4), (10, 5)])
def test_late_params_beat_holds_the_block(K, N):
    """The params beat comes long after the block's last beat is ready; until then its payload is noise.

    A block may close only with its params beat valid: with K = 2 the last beat is ready at once.
    """
    p = TileParams(fmt="4+3", lanes=2, bus_width=16, group_size=4, requant=True)
    job = make_job(p, np.random.default_rng(K * 100 + N), K=K, N=N)
    _run_requant_job(p, job, params_delay=25, noise_seed=K, what="late params run")


def test_params_beat_waits_while_the_output_queue_is_full():
    """The sink takes nothing for a long while, so every credit is used while the params beats wait, ready.

    Each params beat must go with its own block: one taken while its block waits for a credit is lost.
    """
    p = TileParams(fmt="4+3", lanes=2, bus_width=16, group_size=4, requant=True)
    job = make_job(p, np.random.default_rng(31), K=4, N=2 * (p.output_queue_depth + 4))
    # Long enough to use every credit.
    _run_requant_job(p, job, sink_delay=40 * job["blocks"], what="stalled sink run")


# -- a final block of exactly one bus word -----------------------------------------------------------


@pytest.mark.parametrize("N", [2, 4, 7])
def test_block_of_exactly_one_bus_word(N):
    """4+3, 2 lanes, per column, K = 2: a block is 2*39 + 2*7 = 92 bits; with W = 92 each block is one word.

    The next block then sits whole in the gearbox when a block ends: that is not the zero fill of the
    last word (there is none), so the GEMV must not end early.
    """
    fmt = parse_format("4+3")
    block_bits = 2 * fmt.group_header_bits_per_column(Arithmetic.OWN) + 2 * fmt.pair_bits
    assert block_bits == 92
    p = TileParams(fmt="4+3", lanes=2, bus_width=block_bits, group_size=None)
    jobs = [make_job(p, np.random.default_rng(N + s), K=2, N=N) for s in range(2)]
    assert all(job["nbits"] == job["blocks"] * p.bus_width for job in jobs)
    check(jobs, run_jobs(p, jobs, seed=N))
    check(jobs, run_jobs(p, jobs, seed=N, idle=0.3, stall=0.3))


# -- reset inside a group ----------------------------------------------------------------------------


def test_reset_at_every_phase_of_a_group():
    """Groups of 5 pairs; resets 1..11 cycles after the first result land on every pair of a group.

    The GEMV after the reset must start with a header and close its groups at the right pairs.
    """
    p = TileParams(fmt="4+3", lanes=2, bus_width=64, group_size=10)
    rng = np.random.default_rng(11)
    first, second = make_job(p, rng, K=60, N=6), make_job(p, rng, K=28, N=4)
    for reset_after in range(1, 12):
        check([second], run_with_reset(p, first, second, reset_after))


def test_reset_with_the_output_queue_full():
    """The sink takes nothing until the queue is full and the tile stalls; after a reset every credit is back.

    The next GEMV has more blocks than the queue holds, so it needs every credit (a credit kept by
    the reset would stall it for ever: the cycle budget turns that into a failure).
    """
    p = TileParams(fmt="4+3", lanes=2, bus_width=32, group_size=4)
    rng = np.random.default_rng(12)
    blocks = p.output_queue_depth + 3
    first, second = make_job(p, rng, K=6, N=2 * blocks), make_job(p, rng, K=8, N=2 * blocks)
    check([second], run_with_reset(p, first, second, 30 * blocks, sink_idle=True))


# -- a consumer stalled long enough to fill the gearbox --------------------------------------------


@pytest.mark.parametrize("W,header,beat", [(7, 78, 14), (13, 40, 16), (64, 624, 112), (5, 39, 7), (33, 20, 9)])
def test_gearbox_full_under_long_stalls(W, header, beat):
    """The consumer stops for bursts of up to 3 capacities' worth of cycles: the buffer fills, no bit is lost."""
    rng = random.Random(W * 7 + header)
    capacity = Gearbox(in_width=W, record_widths=(header, beat)).capacity
    kinds = []
    while sum((header, beat)[k] for k in kinds) < 6 * capacity:
        kinds.append(0)
        kinds.extend([1] * rng.randint(1, 5))
    dut = Gearbox(in_width=W, record_widths=(header, beat), first_select=kinds[0])
    nbits = sum((header, beat)[k] for k in kinds)
    bits = rng.getrandbits(nbits)
    n_words = -(-nbits // W)
    words = [{"data": (bits >> (w * W)) & ((1 << W) - 1), "last": int(w == n_words - 1)} for w in range(n_words)]
    seen = []
    stall_cycles = 0

    async def producer(ctx):
        await send(ctx, dut.i, words, rng=rng, idle=0.1)

    async def consumer(ctx):
        nonlocal stall_cycles
        for n, kind in enumerate(kinds):
            ctx.set(dut.next_select, kinds[(n + 1) % len(kinds)])       # the record after this one
            ctx.set(dut.restart, n == len(kinds) - 1)
            if rng.random() < 0.3:
                burst = rng.randint(1, 3 * -(-dut.capacity // W))
                stall_cycles += burst
                ctx.set(dut.o.ready, 0)
                await ctx.tick().repeat(burst)
            seen.extend(await receive(ctx, dut.o, 1))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    run_simulation(sim, cycles=4 * (n_words + len(kinds)) + 2 * stall_cycles + 10_000, what="gearbox stall run")
    expected, pos = [], 0
    for kind in kinds:
        width = (header, beat)[kind]
        expected.append((bits >> pos) & ((1 << width) - 1))
        pos += width
    assert [int(x) & ((1 << (header, beat)[k]) - 1) for x, k in zip(seen, kinds)] == expected


# -- extreme sums over many groups -------------------------------------------------------------------


def _extreme_job(p, K, a_value=ACT_MIN):
    """Every product at its extreme and the largest mantissa in every group: ``|y|`` at the format's bound.

    Column 0: every code at its maximum, zero points 0; column 1: codes 0, zero points at their
    maximum; activations all ``a_value``.  With ``ACT_MIN``, column 0's ``y`` is the most negative,
    column 1's the most positive the format can produce, and column 0's slot sums and every slot's
    ``Σa`` sit at their lower bounds (``TileParams.slot_sum_bits``, ``act_sum_bits``).  With
    requantization every column gets a large multiplier and the shift that puts the largest ``|y|`` at
    about ``2**6``: every bit of the product reaches the shifter, and the results stay within INT8.
    """
    fmt, arith = p.fmt, p.arithmetic
    slots = fmt.group_slots(arith)
    group = K + K % 2 if p.group_size is None else p.group_size
    n_groups = -(-K // group)
    codes = np.zeros((K, 2), dtype=np.uint8)
    codes[0::2, 0] = (1 << fmt.even_bits) - 1
    codes[1::2, 0] = (1 << fmt.odd_bits) - 1
    zeros = np.zeros((n_groups, len(slots), 2), dtype=np.int64)
    zeros[:, :, 1] = [(1 << b) - 1 for b in slots]
    if arith is Arithmetic.SHARED:
        zeros[:, 0, 1] -= zeros[:, 0, 1] % (1 << fmt.odd_shift(arith))
    mant = np.full((n_groups, len(slots), 2), (1 << 16) - 1, dtype=np.int64)
    qm = QuantizedMatrix(fmt, arith, K, 2, group, codes, zeros, mant, np.zeros(2, dtype=np.int64))
    a = np.full(K, a_value, dtype=np.int8)
    y = gemv_int(qm, a)
    words = pack(qm, lanes=p.lanes).words(p.bus_width)
    job = {"words": [{"data": w, "last": int(i == len(words) - 1)} for i, w in enumerate(words)],
           "acts": act_beats(qm, a), "params": [], "expected": y.reshape(1, p.lanes), "blocks": 1}
    if p.requant:
        big = (1 << REQUANT_MULT_BITS) - 3
        shift = min(REQUANT_SHIFT_MAX, max(1, (int(np.abs(y).max()) * big).bit_length() - 7))
        mult, shift = np.full(p.lanes, big, dtype=np.int64), np.full(p.lanes, shift, dtype=np.int64)
        job["params"] = [[{"mult": int(mm), "shift": int(ss)} for mm, ss in zip(mult, shift)]]
        job["expected"] = requantize(y, mult, shift).reshape(1, p.lanes)
    return job, y


@pytest.mark.parametrize("fmt,arithmetic,max_k,group_size", [
    ("8+8", "own", 96, 8), ("4+4", "own", 120, 4), ("4+3", "own", 120, 8), ("4+4", "shared", 64, 2)])
def test_extreme_sums_over_many_groups_at_max_k(fmt, arithmetic, max_k, group_size):
    """K = max_k in many groups, with the narrowest accumulator ``TileParams`` accepts for that max_k.

    The running sum of the groups before the last already needs every bit of that accumulator
    (checked here), so a narrower register anywhere on the path wraps.
    """
    width = TileParams(fmt=fmt, arithmetic=arithmetic, lanes=2, max_k=max_k, acc_width=64).min_acc_width
    p = TileParams(fmt=fmt, arithmetic=arithmetic, lanes=2, bus_width=64, group_size=group_size,
                   max_k=max_k, acc_width=width)
    job, y = _extreme_job(p, max_k)
    partial = np.abs(y) * (max_k - group_size) // max_k       # |y| after every group but the last
    assert partial.max() >= 1 << (width - 2), "the case would not show a one-bit-narrower accumulator"
    assert y[0] < 0 < y[1] and np.abs(y).max() < 1 << (width - 1)
    check([job], run_jobs(p, [job]))
    check([job], run_jobs(p, [job], seed=1, idle=0.3, stall=0.3))


@pytest.mark.parametrize("fmt,arithmetic,max_k,group_size,requant", [
    ("4+3", "own", 120, None, False), ("4+4", "shared", 62, None, True), ("8+8", "own", 40, None, True),
    ("4+3", "own", 4096, 16, True), ("3+3", "own", 96, None, False)])
@pytest.mark.parametrize("a_value", [ACT_MIN, ACT_MAX])
def test_slot_sums_at_their_bound(fmt, arithmetic, max_k, group_size, requant, a_value):
    """The longest group the tile is built for (K = max_k per column, or a whole group), every activation at an
    extreme: the slot sums, Σa and the corrected sums reach the bounds the epilogue is sized for
    (``TileParams.slot_sum_bits``, ``act_sum_bits``; checked here to need every bit), and the results are exact."""
    p = TileParams(fmt=fmt, arithmetic=arithmetic, lanes=2, bus_width=64, group_size=group_size, max_k=max_k,
                   requant=requant)
    K = max_k if group_size is None else 2 * group_size
    rows = p.slot_rows
    assert rows == (group_size or max_k) // (2 if p.n_slots == 2 else 1)
    top = (1 << max(p.fmt.group_slots(p.arithmetic))) - 1
    assert abs(a_value) * top * rows >= 1 << (max(p.slot_sum_bits) - 2), "a one-bit-narrower slot sum would not wrap"
    assert abs(a_value) * rows >= 1 << (p.act_sum_bits - 2 - (a_value > 0)), "a narrower Σa would not wrap"
    job, _ = _extreme_job(p, K, a_value)
    check([job], run_jobs(p, [job]))
    check([job], run_jobs(p, [job], seed=2, idle=0.3, stall=0.3))


# -- latency from the documented stage list ----------------------------------------------------------


def _linear_in_lanes(term: str) -> tuple:
    """``"3"``, ``"L"``, ``"L + 5"``, ``"2L + 16"`` as ``(coefficient of L, constant)``."""
    match = re.fullmatch(r"(?:(\d*)L)?(?: \+ )?(\d+)?", term.strip())
    assert match and term.strip(), f"rtl/TILE.md: cannot read the latency term {term!r}"
    coefficient = 0 if "L" not in term else int(match.group(1) or 1)
    return coefficient, int(match.group(2) or 0)


def _documented_latency(lanes: int):
    """``(without, with requantization)`` at ``lanes`` from rtl/TILE.md's latency table, checked against its formula."""
    lines = TILE_MD.read_text().splitlines()
    start = lines.index("| block | constant | cycles |")
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        block, _, cycles = (cell.strip() for cell in line.strip("|").split("|"))
        rows.append((block, _linear_in_lanes(cycles.strip("`"))))
    assert len(rows) >= 5, "rtl/TILE.md: the latency table has too few rows"
    optional = [c for block, c in rows if "only with `requant`" in block]
    assert len(optional) == 1, "rtl/TILE.md: the latency table should mark the requantizer's row as optional"
    full = tuple(sum(c[i] for _, c in rows) for i in (0, 1))
    base = tuple(full[i] - optional[0][i] for i in (0, 1))
    text = " ".join(TILE_MD.read_text().split())
    formula = re.search(r"fixed_latency = ([\dL +]+?) \(([\dL +]+?) with requant\)", text)
    assert (_linear_in_lanes(formula.group(1)), _linear_in_lanes(formula.group(2))) == (base, full), \
        "rtl/TILE.md's latency table and its latency formula disagree"
    return base[0] * lanes + base[1], full[0] * lanes + full[1]


@pytest.mark.parametrize("requant", [False, True])
def test_latency_matches_the_documented_stages(requant):
    """Bus-bound cycles are ``ceil(nbits / W)`` plus the latency counted from TILE.md's stages."""
    p = TileParams(fmt="4+3", lanes=4, bus_width=16, group_size=8, requant=requant)
    base, with_requant = _documented_latency(p.lanes)
    job = make_job(p, np.random.default_rng(3), K=40, N=8)
    cycles, beats = cycles_one_gemv(p, job)
    check([job], [beats])
    assert cycles == math.ceil(job["nbits"] / p.bus_width) + (with_requant if requant else base)
