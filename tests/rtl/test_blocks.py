"""Block tests: decode (exhaustive), the MAC lanes against golden, correction, scaling and requantization at their extremes."""

import itertools
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.format import (
    ACT_MIN,
    FORMATS,
    REQUANT_MULT_BITS,
    REQUANT_SHIFT_MAX,
    REQUANT_SHIFT_MIN,
    SCALE_BITS,
    Arithmetic,
    parse_format,
)
from golden.oracle import gemv_parts, requantize
from golden.pack import pack
from golden.quantize import quantize
from rtl import requant as requant_block
from rtl.decode import PairDecode
from rtl.drain import LaneDrain, LaneGather
from rtl.epilogue import Epilogue
from rtl.lanes import MacLanes
from rtl.lanes import LATENCY as LANES_LATENCY
from rtl.params import TileParams
from rtl.requant import Requantizer
from rtl.simutil import act_beats, run_simulation


def _comb_run(dut, bench):
    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()


_FORMAT_ARITH = [(f, a) for f in ["4+3", "4+4", "3+3", "8+8", "2+2", "5+2"] for a in Arithmetic
                 if parse_format(f).odd_bits <= parse_format(f).even_bits or a is Arithmetic.OWN]


@pytest.mark.parametrize("fmt,arith", _FORMAT_ARITH, ids=lambda x: str(getattr(x, "value", x)))
def test_decode_every_pair(fmt, arith):
    """Every pair value: even code in the low E bits, odd code above (shared: on the even grid)."""
    fmt = parse_format(fmt)
    dut = PairDecode(fmt=fmt, arithmetic=arith)
    seen = []

    async def bench(ctx):
        for even, odd in itertools.product(range(1 << fmt.even_bits), range(1 << fmt.odd_bits)):
            # FORMAT.md section 4: pair = q_even | q_odd << E; section 2: shared odd q = c << (E - O).
            ctx.set(dut.pair.as_value(), even | odd << fmt.even_bits)
            seen.append((ctx.get(dut.even), ctx.get(dut.odd)) == (even, odd << fmt.odd_shift(arith)))

    _comb_run(dut, bench)
    assert len(seen) == 1 << fmt.pair_bits and all(seen)


def _slots(acc):
    """Per lane, the slot sums ``[s0, s1]`` as the lanes' ``slot_sums_layout`` struct."""
    return [{f"s{t}": value for t, value in enumerate(row)} for row in acc]


def _run_scaler(p, groups):
    """Feed group sums to the epilogue (drain, group scaler, gather), one every ``epilogue_interval`` cycles.

    Returns the block results (lists of y).
    """
    dut = Epilogue(params=p)
    out = []

    async def feed(ctx):
        for g in groups:
            ctx.set(dut.i.payload.capture_next, (1 << p.lanes) - 1)     # the capture enables, one cycle ahead
            await ctx.tick()
            ctx.set(dut.i.payload, {**g, "capture_next": 0})
            ctx.set(dut.i.valid, 1)
            await ctx.tick()
            ctx.set(dut.i.valid, 0)
            for _ in range(p.epilogue_interval - 2):
                await ctx.tick()
        await ctx.tick().repeat(p.result_latency)        # more than the epilogue's own latency

    async def collect(ctx):
        async for _clk, _rst, valid, payload in ctx.tick().sample(dut.o.valid, dut.o.payload):
            if valid:
                out.append([int(payload.data[lane]) for lane in range(p.lanes)])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(feed)
    sim.add_testbench(collect, background=True)
    run_simulation(sim, cycles=len(groups) + 100, what="GroupScaler run")
    return out


@pytest.mark.parametrize("fmt", ["4+3", "8+8"])
def test_correction_and_scaling_at_the_longest_k(fmt):
    """Slot sums and Σa at the int32 bound of the longest K, largest zero points and mantissas.

    Lane 0: a = -128 on every row, codes 0, zero points at their maximum (corr = +128 * rows * zmax);
    lane 1: a = -128, codes at their maximum, zero points 0 (corr = -128 * rows * qmax).  With the
    narrowest accumulator the parameters allow, y is exact (no wrap) in both directions.
    """
    fmt = FORMATS[fmt]
    max_k = fmt.max_k_int32(Arithmetic.OWN)
    p = TileParams(fmt=fmt, lanes=2, bus_width=8, max_k=max_k, acc_width=64)
    p = TileParams(fmt=fmt, lanes=2, bus_width=8, max_k=max_k, acc_width=p.min_acc_width)
    rows = max_k // 2                                 # rows per slot in one whole-column group
    mant = (1 << SCALE_BITS) - 1
    tops = [(1 << b) - 1 for b in p.slot_bits]
    sa = [ACT_MIN * rows] * p.n_slots
    acc = [[0] * p.n_slots, [ACT_MIN * rows * top for top in tops]]
    header = [{f"s{t}": {"zero": top, "mant": mant} for t, top in enumerate(tops)},
              {f"s{t}": {"zero": 0, "mant": mant} for t in range(p.n_slots)}]
    y = [sum(mant * (acc[lane][t] - header[lane][f"s{t}"]["zero"] * sa[t]) for t in range(p.n_slots))
         for lane in range(2)]
    assert max(abs(a) for row in acc for a in row) <= (1 << 31) - 1      # int32 partial sums at the bound
    assert y[0] > 1 << (p.acc_width - 3) and y[1] < -(1 << (p.acc_width - 3))
    groups = [{"acc": _slots(acc), "sa": sa, "header": header, "block_end": 1, "last": last} for last in (0, 1)]
    assert _run_scaler(p, groups) == [y, y]


def test_scaling_accumulates_groups_and_restarts_per_block():
    """Group sums from random rows (so every sum lies within the bounds the epilogue is sized for,
    ``TileParams.slot_sum_bits``), a third of the groups at an extreme (a = -128, codes 0 or at their top)."""
    p = TileParams(fmt="4+3", lanes=3, bus_width=8, group_size=4)
    rng = random.Random(11)
    rows = p.slot_rows
    groups, expected = [], []
    for blocks in range(3):
        y = [0] * p.lanes
        n = rng.randint(1, 4)
        for g in range(n):
            extreme = rng.random() < 1 / 3
            a = [[ACT_MIN if extreme else rng.randint(-128, 127) for _ in range(rows)] for _ in range(p.n_slots)]
            sa = [sum(row) for row in a]
            codes = [[[rng.choice([0, (1 << b) - 1]) if extreme else rng.randrange(1 << b) for _ in range(rows)]
                      for b in p.slot_bits] for _ in range(p.lanes)]
            acc = [[sum(x * q for x, q in zip(a[t], codes[lane][t])) for t in range(p.n_slots)]
                   for lane in range(p.lanes)]
            header = [{f"s{t}": {"zero": rng.choice([0, (1 << b) - 1]) if extreme else rng.randrange(1 << b),
                                 "mant": (1 << SCALE_BITS) - 1 if extreme else rng.randrange(1 << SCALE_BITS)}
                       for t, b in enumerate(p.slot_bits)} for _ in range(p.lanes)]
            for lane in range(p.lanes):
                y[lane] += sum(header[lane][f"s{t}"]["mant"] * (acc[lane][t] - header[lane][f"s{t}"]["zero"] * sa[t])
                               for t in range(p.n_slots))
            groups.append({"acc": _slots(acc), "sa": sa, "header": header, "block_end": int(g == n - 1), "last": 0})
        expected.append(y)
    assert _run_scaler(p, groups) == expected


@pytest.mark.parametrize("fmt", ["8+8", "4+3"])
def test_requantization_extremes_match_golden(fmt):
    """Largest |y| the tile can produce (``min_acc_width`` bits: 48 for 8+8, 44 of the 48-bit accumulator for
    4+3), largest multiplier, every shift: equal to golden.requantize."""
    p = TileParams(fmt=fmt, lanes=4, bus_width=8, requant=True)
    top = (1 << (p.min_acc_width - 1)) - 1
    ys = [top, -top - 1, 0, -1, 1, 127, -128, 5, -5, 1 << 20, -(1 << 20)]
    mults = [0, 1, (1 << REQUANT_MULT_BITS) - 1, 12345]
    shifts = [REQUANT_SHIFT_MIN, 2, 7, 16, 31, 47, 62, REQUANT_SHIFT_MAX]
    cases = list(itertools.product(ys, mults, shifts))
    # Random cases, half of them at a rounding tie or a clamp edge: y * M = (edge + 1/2) * 2**s.
    rng = random.Random(7)
    for _ in range(300):
        shift = rng.randint(REQUANT_SHIFT_MIN, 40)
        mult = rng.randint(1, (1 << REQUANT_MULT_BITS) - 1)
        if rng.random() < 0.5:
            y = rng.randint(-top - 1, top) >> rng.randint(0, p.min_acc_width)
        else:
            edge = rng.choice([127, 128, -128, -129, 0, -1, 5])
            y = max(-top - 1, min(top, ((2 * edge + 1) << (shift - 1)) // mult + rng.randint(-1, 1)))
        cases.append((y, mult, shift))
    dut = Requantizer(params=p)
    got = []
    depth = requant_block.LATENCY

    async def bench(ctx):
        # One lane per cycle, the block markers on every fourth: each result exactly LATENCY cycles later.
        sent = []
        for n in range(len(cases) + depth):
            if n < len(cases):
                y, mult, shift = cases[n]
                marks = (int(n % p.lanes == p.lanes - 1), int(n % 7 == 3))
                ctx.set(dut.i.payload, {"data": y, "last": marks[0], "end": marks[1],
                                        "requant": {"mult": mult, "shift": shift}})
                sent.append(marks)
            ctx.set(dut.i.valid, n < len(cases))
            _clk, _rst, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            assert valid == (depth <= n < len(cases) + depth)
            if valid:
                got.append(int(payload.data))
                assert (payload.last, payload.end) == sent[n - depth]

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    run_simulation(sim, cycles=len(cases) + depth + 100, what="Requantizer run")
    y, M, s = (np.array([c[i] for c in cases], dtype=np.int64) for i in range(3))
    assert got == requantize(y, M, s).tolist()


@pytest.mark.parametrize("fmt,arith,group_size", [("4+3", "own", 4), ("4+3", "shared", 6), ("8+8", "own", None)])
def test_lanes_group_sums_match_golden(fmt, arith, group_size):
    """MacLanes fed with golden's packed records: per group, every lane's slot sums and Σa equal gemv_parts."""
    p = TileParams(fmt=fmt, arithmetic=arith, lanes=3, bus_width=8, group_size=group_size)
    rng = np.random.default_rng(21)
    K = 15
    qm = quantize(rng.standard_normal((K, p.lanes)), fmt, arithmetic=arith, group_size=group_size)
    a = rng.integers(-128, 128, size=K).astype(np.int8)
    acc, sa, _ = gemv_parts(qm, a)
    ps = pack(qm, lanes=p.lanes)
    bits = int.from_bytes(ps.data.tobytes(), "little")
    pairs = act_beats(qm, a)
    group_pairs = qm.group_size // 2
    ops, pos = [], 0
    for i, pair in enumerate(pairs):
        if i % group_pairs == 0:
            ops.append({"header": 1, "record": (bits >> pos) & ((1 << p.header_bits) - 1)})
            pos += p.header_bits
        group_end = pair["last"] or i % group_pairs == group_pairs - 1
        ops.append({"header": 0, "record": (bits >> pos) & ((1 << p.beat_bits) - 1), "act": pair,
                    "group_end": int(group_end), "block_end": pair["last"], "last": pair["last"]})
        pos += p.beat_bits
    assert pos == ps.nbits
    dut = MacLanes(params=p)
    got = []

    async def feed(ctx):
        for op in ops:
            ctx.set(dut.i.payload, op)
            ctx.set(dut.i.valid, 1)
            await ctx.tick()
            ctx.set(dut.i.valid, 0)
            if rng.random() < 0.3:
                await ctx.tick()
        await ctx.tick().repeat(LANES_LATENCY + 1)

    async def collect(ctx):
        async for _clk, _rst, valid, payload in ctx.tick().sample(dut.o.valid, dut.o.payload):
            if valid:
                got.append(([[int(payload.acc[lane][f"s{t}"]) for lane in range(p.lanes)] for t in range(p.n_slots)],
                            [int(payload.sa[t]) for t in range(p.n_slots)]))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(feed)
    sim.add_testbench(collect, background=True)
    run_simulation(sim, cycles=4 * (qm.K_pad // 2 + qm.n_groups) + 100, what="MacLanes run")
    assert got == [(acc[g].tolist(), sa[g].tolist()) for g in range(qm.n_groups)]


@pytest.mark.parametrize("lanes", [1, 2, 5])
def test_drain_then_gather_every_lane_once_at_the_shortest_interval(lanes):
    """LaneDrain: records every ``L`` cycles (its shortest interval), each lane out once, in order, with
    its record's shared part, ``first``/``last`` on lanes 0 and ``L - 1``, lane 0 ``DRAIN_LATENCY``
    cycles after the record; LaneGather turns the lanes back into the record the cycle the last arrives."""
    from amaranth.hdl import Elaboratable, Module, signed
    from amaranth.lib import data
    from rtl.drain import DRAIN_LATENCY, GATHER_LATENCY

    lane_layout = data.StructLayout({"a": signed(9), "b": 4})
    common_layout = data.StructLayout({"c": 6})
    rng = random.Random(lanes)
    records = [{"lanes": [{"a": rng.randint(-256, 255), "b": rng.randrange(16)} for _ in range(lanes)],
                "common": {"c": rng.randrange(64)}} for _ in range(6)]

    class Pair(Elaboratable):
        def __init__(self):
            self.drain = LaneDrain(lane_layout=lane_layout, common_layout=common_layout, lanes=lanes)
            self.gather = LaneGather(shape=signed(9), lanes=lanes)

        def elaborate(self, platform):
            m = Module()
            m.submodules.drain, m.submodules.gather = self.drain, self.gather
            m.d.comb += [self.gather.i.valid.eq(self.drain.o.valid), self.gather.valid_ahead.eq(self.drain.valid_ahead),
                         self.gather.i.payload.data.eq(self.drain.o.payload.lane.a),
                         self.gather.i.payload.last.eq(self.drain.o.payload.last),
                         self.gather.i.payload.end.eq(self.drain.o.payload.common.c[0])]
            return m

    dut = Pair()
    seen, beats = [], []

    async def bench(ctx):
        ctx.set(dut.drain.i.payload.capture_next, (1 << lanes) - 1)     # the capture enables, one cycle ahead
        await ctx.tick()
        for cycle in range(len(records) * lanes + DRAIN_LATENCY + lanes + 4):
            index, phase = divmod(cycle, lanes)
            feeding = phase == 0 and index < len(records)
            if feeding:
                ctx.set(dut.drain.i.payload, records[index])
            ctx.set(dut.drain.i.valid, feeding)
            feeding_next = (cycle + 1) % lanes == 0 and (cycle + 1) // lanes < len(records)
            ctx.set(dut.drain.i.payload.capture_next, (1 << lanes) - 1 if feeding_next else 0)
            _clk, _rst, valid, payload, beat_valid, beat = await ctx.tick().sample(
                dut.drain.o.valid, dut.drain.o.payload, dut.gather.o.valid, dut.gather.o.payload)
            if valid:
                seen.append((cycle, {"a": payload.lane.a, "b": payload.lane.b}, payload.common.c,
                             payload.first, payload.last))
            if beat_valid:
                beats.append((cycle, [int(beat.data[lane]) for lane in range(lanes)], beat.last))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    run_simulation(sim, cycles=len(records) * lanes + 100, what="LaneDrain run")
    expected = [(index * lanes + DRAIN_LATENCY + lane, record["lanes"][lane], record["common"]["c"],
                 int(lane == 0), int(lane == lanes - 1))
                for index, record in enumerate(records) for lane in range(lanes)]
    assert seen == expected
    assert beats == [(index * lanes + DRAIN_LATENCY + lanes - 1 + GATHER_LATENCY, [x["a"] for x in record["lanes"]],
                      record["common"]["c"] & 1) for index, record in enumerate(records)]
