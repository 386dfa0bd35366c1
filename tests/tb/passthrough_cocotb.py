"""cocotb test of the passthrough: random frames through cocotbext-axi with idle cycles and backpressure."""

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from tb.stalls import pause_generator


@cocotb.test()
async def frames_survive_pauses(dut):
    rng = random.Random(int(os.environ.get("PASSTHROUGH_SEED", "1")))
    probability = float(os.environ.get("PASSTHROUGH_PAUSE", "0.3"))
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis", bus_separator="__"), dut.clk, dut.rst)
    sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis", bus_separator="__"), dut.clk, dut.rst)
    source.set_pause_generator(pause_generator(probability, rng.randrange(1 << 30)))
    sink.set_pause_generator(pause_generator(probability, rng.randrange(1 << 30)))
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    beat = source.byte_lanes
    sent = [bytes(rng.randrange(256) for _ in range(beat * rng.randrange(1, 9))) for _ in range(20)]
    for data in sent:
        await source.send(AxiStreamFrame(data))
    for index, data in enumerate(sent):
        got = await sink.recv()
        assert bytes(got.tdata) == data, f"frame {index}: sent {data.hex()} got {bytes(got.tdata).hex()}"
    dut._log.info("%d frames passed", len(sent))
