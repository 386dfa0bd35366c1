"""Shared pieces of the testbench tests: tiles from rtl/ built once per session, and the mock tile."""

import sys
from pathlib import Path

import pytest

from golden.format import parse_format
from tb.gemv_data import TileConfig
from tb.simulate import Tile, rtl_tile

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the passthrough and mock designs live beside the tests
    sys.path.insert(0, str(HERE))


def mock_tile(config: TileConfig, *, bug: bool = False) -> Tile:
    """The behavioural stand-in ``mock_tile.sv`` configured like ``config``; ``bug`` corrupts lane 1."""
    fmt = parse_format(config.fmt)
    group_pairs = 0 if config.group_size is None else config.group_size // 2
    args = (f"-GL={config.lanes}", f"-GW={config.bus_width}", f"-GE={fmt.even_bits}", f"-GO={fmt.odd_bits}",
            f"-GSHARED={int(config.arithmetic == 'shared')}", f"-GGP={group_pairs}", f"-GACC={config.acc_width}",
            f"-GREQUANT={int(config.requant)}", f"-GBUG={int(bug)}")
    return Tile(config=config, sources=(HERE / "mock_tile.sv",), build_args=args, description="mock tile")


@pytest.fixture(scope="session")
def tile_of():
    """``tile_of(config)``: the RTL tile for ``config`` (Verilog generated once per session)."""
    cache = {}

    def get(config: TileConfig) -> Tile:
        if config not in cache:
            cache[config] = rtl_tile(config)
        return cache[config]

    return get
