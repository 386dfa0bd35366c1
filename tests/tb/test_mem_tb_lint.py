"""The memory-model top (tb/septet_mem_tb.sv) is linted like the tile: -Wall, every waiver justified."""

import pytest

from rtl.lint import lint
from rtl.params import TileParams
from tb.mem_wrapper import MEM_TB, MEM_TB_WAIVERS, wrapper_build_args
from tb.simulate import rtl_tile

# Configurations the other tb tests build too (their Verilog is cached), with and without requantization.
CONFIGS = [TileParams(fmt="4+3", lanes=4, bus_width=61, group_size=8),
           TileParams(fmt="3+3", arithmetic="shared", lanes=3, bus_width=32, group_size=6, requant=True)]


@pytest.mark.parametrize("hdl_clock", [False, True], ids=["cocotb-clock", "hdl-clock"])
@pytest.mark.parametrize("config", CONFIGS, ids=["4p3", "3p3-requant"])
def test_memory_model_top_is_lint_clean(config, hdl_clock):
    tile = rtl_tile(config)
    args = [*wrapper_build_args(tile, hdl_clock=hdl_clock), "--top-module", "septet_mem_tb"]
    assert lint(tile.sources[0], MEM_TB_WAIVERS, MEM_TB, args=args) == []


def test_a_width_mismatch_in_the_top_is_caught():
    tile = rtl_tile(CONFIGS[0])
    args = [arg if not arg.startswith("-GWB=") else "-GWB=128" for arg in wrapper_build_args(tile)]
    assert any("WIDTH" in line for line in lint(tile.sources[0], MEM_TB_WAIVERS, MEM_TB,
                                                 args=[*args, "--top-module", "septet_mem_tb"]))
