# amaranth: UnusedElaboratable=no
"""The properties inside the RTL are checked by the Amaranth simulator: a broken rule fails the run by name."""

import gc

import pytest
from amaranth.sim import Simulator

from rtl.params import TileParams
from rtl.simutil import run_simulation
from rtl.tile import SeptetTile


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("rule", ["valid fell before the transfer", "payload changed while valid and not ready"])
def test_input_stream_rules_are_checked(rule):
    """A source that withdraws a word, or changes it, before the tile took it breaks the stream rules."""
    dut = SeptetTile(params=TileParams(fmt="4+3", lanes=2, bus_width=16, group_size=4))

    async def source(ctx):
        ctx.set(dut.weights.payload, {"data": 0x1234, "last": 0})
        ctx.set(dut.weights.valid, 1)
        while True:                       # wait for a cycle in which the tile does not take the word
            _clk, _rst, ready = await ctx.tick().sample(dut.weights.ready)
            if not ready:
                break
            ctx.set(dut.weights.payload, {"data": 0x1234, "last": 0})
        if rule.startswith("valid"):
            ctx.set(dut.weights.valid, 0)
        else:
            ctx.set(dut.weights.payload, {"data": 0x4321, "last": 0})
        await ctx.tick().repeat(2)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(source)
    with pytest.raises(AssertionError, match=f"weights: {rule}"):
        run_simulation(sim, cycles=200, what="rule probe")
    del sim, source
    gc.collect()
