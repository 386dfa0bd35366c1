# amaranth: UnusedElaboratable=no
"""Gearbox block tests: every bit comes out once, in order, whatever W and the record widths."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from golden.format import FORMATS, Arithmetic
from rtl.gearbox import Gearbox
from rtl.params import TileParams
from rtl.simutil import receive, run_simulation, send


def _words(bits: int, nbits: int, width: int):
    """Cut an nbits-long integer bit stream into width-bit words, the last one zero-filled."""
    n = -(-nbits // width)
    return [{"data": (bits >> (w * width)) & ((1 << width) - 1), "last": int(w == n - 1)} for w in range(n)]


def _records(rng, header: int, beat: int, blocks: int):
    """Record widths of a stream of blocks: per block a few groups of a header then some beats."""
    kinds = []
    for _ in range(blocks):
        for _ in range(rng.randint(1, 3)):
            kinds.append(0)
            kinds.extend([1] * rng.randint(1, 4))
    return kinds


def _run_streams(W, widths, streams, *, rng, idle, stall):
    """Drive several back-to-back streams through a gearbox; return what the consumer saw."""
    seen = []

    async def producer(ctx):
        for bits, nbits, _ in streams:
            await send(ctx, dut.i, _words(bits, nbits, W), rng=rng, idle=idle)

    order = [kind for _bits, _nbits, kinds in streams for kind in kinds] + [0]
    dut = Gearbox(in_width=W, record_widths=widths, first_select=order[0])

    async def consumer(ctx):
        count = 0
        for _bits, _nbits, kinds in streams:
            for n, kind in enumerate(kinds):
                final = n == len(kinds) - 1
                count += 1
                # The record after this one: named by next_select, or by restart (the end of a stream, or
                # now and then before a header, then with a wrong next_select that restart must override;
                # only where `ending` cannot be seen before a header: a header and a beat fill a word).
                restart = final or (order[count] == order[0] and sum(widths) >= W and rng.random() < 0.5)
                ctx.set(dut.next_select, (1 - order[count]) if restart and not final else order[count])
                ctx.set(dut.restart, restart)
                (payload, ending), = await receive(ctx, dut.o, 1, rng=rng, stall=stall, extra=(dut.ending,))
                seen.append((kind, payload, ending, final))
            ctx.set(dut.restart, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    # Every word and record, stretched by the gaps and stalls, with a wide margin.
    transfers = sum(-(-nbits // W) + len(kinds) for _bits, nbits, kinds in streams)
    run_simulation(sim, cycles=int(8 * transfers / (1 - max(idle, stall))) + 100, what="gearbox run")
    return seen


_CASES = [
    # (W, header bits, beat bits): tile-like widths of several formats and lane counts, W not a
    # multiple of the pair width, W below and above the record widths, W = 1.
    (1, 78, 14),
    (7, 78, 14),
    (13, 40, 16),
    (61, 78, 14),
    (64, 2 * FORMATS["4+3"].group_header_bits_per_column(Arithmetic.SHARED), 14),
    (37, 3 * FORMATS["3+3"].group_header_bits_per_column(Arithmetic.OWN), 18),
    (100, 2 * FORMATS["8+8"].group_header_bits_per_column(Arithmetic.OWN), 32),
    (5, 39, 7),
    (40, 264, 176),         # records wider than one shifter slice (rtl.gearbox.WINDOW_SLICE_BITS)
]


@pytest.mark.parametrize("W,header,beat", _CASES)
def test_every_bit_once_in_order(W, header, beat):
    rng = random.Random(W * 1000 + header + beat)
    streams = []
    for _ in range(2):      # two GEMVs back to back: the flush must drop the zero fill only
        kinds = _records(rng, header, beat, blocks=2)
        widths = [(header, beat)[k] for k in kinds]
        nbits = sum(widths)
        streams.append((rng.getrandbits(nbits), nbits, kinds))
    seen = _run_streams(W, (header, beat), streams, rng=rng, idle=0.3, stall=0.3)
    expected = []
    for bits, _nbits, kinds in streams:
        pos = 0
        for kind in kinds:
            width = (header, beat)[kind]
            expected.append((kind, (bits >> pos) & ((1 << width) - 1)))
            pos += width
    # Only the record's own bits are specified (the bits above it are not).
    assert [(k, int(p) & ((1 << (header, beat)[k]) - 1)) for k, p, _e, _f in seen] == expected
    # The end of each stream is recognised at its final record.
    assert all(ending for _k, _p, ending, final in seen if final)


@pytest.mark.parametrize("W,header,beat,group", [(7, 78, 14, 2), (32, 78, 14, 2), (35, 78, 14, 2),
                                                (64, 624, 112, 16), (128, 624, 112, 16)])
def test_bus_never_idle_when_bus_bound(W, header, beat, group):
    """With an always-ready consumer and fewer bus bits than record bits per cycle, every cycle takes a word."""
    assert W * (group + 1) <= header + group * beat          # the bus is the bottleneck
    kinds = ([0] + [1] * group) * 3
    nbits = sum((header, beat)[k] for k in kinds)
    rng = random.Random(W)
    bits = rng.getrandbits(nbits)
    words = _words(bits, nbits, W)
    dut = Gearbox(in_width=W, record_widths=(header, beat), first_select=kinds[0])
    idle_cycles = []

    async def producer(ctx):
        ctx.set(dut.i.valid, 1)
        for word in words:
            ctx.set(dut.i.payload, word)
            _clk, _rst, ready = await ctx.tick().sample(dut.i.ready)
            while not ready:
                idle_cycles.append(1)
                _clk, _rst, ready = await ctx.tick().sample(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        ctx.set(dut.o.ready, 1)
        for n, kind in enumerate(kinds):
            ctx.set(dut.next_select, kinds[(n + 1) % len(kinds)])
            ctx.set(dut.restart, n == len(kinds) - 1)
            await ctx.tick().until(dut.o.valid)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    run_simulation(sim, cycles=4 * (len(words) + len(kinds)) + 100, what="gearbox run")
    assert idle_cycles == []


def test_tile_capacity_matches_gearbox_minimum():
    """The default tile takes headers in beat-sized chunks: a 240-bit buffer read in 16-bit steps."""
    p = TileParams(fmt="4+3", lanes=16, bus_width=64)
    assert p.header_chunks == (112, 112, 112, 96, 96, 96) and sum(p.header_chunks) == p.header_bits
    gear = Gearbox(in_width=p.bus_width, record_widths=p.gearbox_record_widths, capacity=p.gearbox_capacity)
    assert gear.capacity == p.beat_bits + 2 * p.bus_width == 240
    assert gear.unit == 16


@pytest.mark.parametrize("fmt,lanes,width", [("3+3", 2, 11), ("4+3", 3, 61), ("8+8", 2, 29), ("4+4", 5, 200)])
def test_header_chunks_cover_the_header(fmt, lanes, width):
    p = TileParams(fmt=fmt, lanes=lanes, bus_width=width)
    assert sum(p.header_chunks) == p.header_bits
    assert max(p.header_chunks) <= p.beat_bits and len(p.header_chunks) == -(-p.header_bits // p.beat_bits)


@pytest.mark.parametrize("kwargs,match", [
    ({"in_width": 0, "record_widths": (8,)}, "in_width"),
    ({"in_width": 8, "record_widths": ()}, "record_widths"),
    ({"in_width": 8, "record_widths": (8, 0)}, "record_widths"),
    ({"in_width": 8, "record_widths": (8,), "capacity": 23}, "capacity"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Gearbox(**kwargs)


@pytest.mark.parametrize("kwargs,match", [
    ({"in_width": 8.0, "record_widths": (8,)}, "in_width must be an integer >= 1, got 8.0"),
    ({"in_width": 8, "record_widths": (8, "16")}, r"record_widths\[\] must be an integer >= 1, got '16'"),
    ({"in_width": 8, "record_widths": (8,), "capacity": True}, "capacity"),
])
def test_wrong_parameter_types(kwargs, match):
    """A value of the wrong kind is a TypeError naming the parameter (golden.checks' rule), not a ValueError."""
    with pytest.raises(TypeError, match=match):
        Gearbox(**kwargs)


class _BothForms(wiring.Component):
    """The gearbox's candidates for every delta it uses, as tables and as arithmetic, side by side."""

    def __init__(self, counts):
        self.counts = counts
        members = {"count": In(counts.free_bits)}
        for n, _ in enumerate(counts.deltas):
            members[f"table_{n}"] = Out(counts.layout.size)
            members[f"arith_{n}"] = Out(counts.layout.size)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for n, delta in enumerate(self.counts.deltas):
            m.d.comb += [getattr(self, f"table_{n}").eq(self.counts.table(self.count, delta)),
                         getattr(self, f"arith_{n}").eq(self.counts.arithmetic(self.count, delta))]
        return m


@pytest.mark.parametrize("W,widths,capacity", [
    (3, (5, 2), None),                        # the formal proof's gearbox
    (64, (64, 112), 624),                     # 4+3, 16 lanes: unit 16
    (64, (64, 128), None),                    # 4+4, 16 lanes
    (74, (74, 128), None),                    # 4+4 on W = 74: unit 2, a wide count
    (7, (78, 14), None),
    (35, (78, 14, 3), 200),                   # three record sizes
])
def test_count_tables_equal_arithmetic(W, widths, capacity):
    """Synthesis elaborates the candidates as tables, everything else as adders and compares: equal for every
    count value (all of its bits, reachable or not) and every delta the gearbox uses."""
    gear = Gearbox(in_width=W, record_widths=widths, capacity=capacity)
    counts = gear.counts()
    dut = _BothForms(counts)
    sim = Simulator(dut)
    checked = []

    async def bench(ctx):
        for value in range(1 << counts.free_bits):
            ctx.set(dut.count, value)
            for n, delta in enumerate(counts.deltas):
                table, arith = ctx.get(getattr(dut, f"table_{n}")), ctx.get(getattr(dut, f"arith_{n}"))
                assert table == arith, f"count {value}, delta {delta}: table {table:#x} != arithmetic {arith:#x}"
                assert table == counts.candidate_at(value, delta)
                checked.append(table)

    sim.add_testbench(bench)
    sim.run()
    assert len(checked) == (1 << counts.free_bits) * len(counts.deltas)
    assert len(set(checked)) > 1          # not a constant comparison


def test_synthesis_platform_elaborates_tables():
    """Only the synthesis platform turns the tables on (the flag has one definition)."""
    from rtl.correct import Ecp5DspPlatform
    from rtl.gearbox import CountTablesPlatform, uses_count_tables
    from rtl.synth import SynthesisPlatform

    assert uses_count_tables(SynthesisPlatform()) and uses_count_tables(CountTablesPlatform())
    assert not uses_count_tables(None) and not uses_count_tables(Ecp5DspPlatform())
