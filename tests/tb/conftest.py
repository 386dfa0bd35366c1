"""Shared pieces of the testbench tests: tiles from rtl/ built once per session, and the mock tile."""

import hashlib
import os
import re
import sys
from pathlib import Path

import pytest

from golden.format import Arithmetic
from rtl.params import TileParams
from tb import toolchain
from tb.simulate import Tile, rtl_tile

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the passthrough and mock designs live beside the tests
    sys.path.insert(0, str(HERE))


def mock_tile(config: TileParams, *, bug: bool = False) -> Tile:
    """The behavioural stand-in ``mock_tile.sv`` configured like ``config``; ``bug`` corrupts lane 1.

    The parameters are written into a copy's defaults (not ``-G``), so the mock also works below the
    memory-mode wrapper, where it is not the top module.
    """
    values = {"L": config.lanes, "W": config.bus_width, "E": config.fmt.even_bits, "O": config.fmt.odd_bits,
              "SHARED": int(config.arithmetic is Arithmetic.SHARED),
              "GP": 0 if config.group_size is None else config.group_size // 2, "ACC": config.acc_width,
              "REQUANT": int(config.requant), "BUG": int(bug)}
    text = (HERE / "mock_tile.sv").read_text()
    for name, value in values.items():
        text, count = re.subn(rf"(parameter int {name} = )\d+", rf"\g<1>{value}", text)
        assert count == 1, name
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    path = toolchain.BUILD_ROOT / "mock" / f"mock_tile_{digest}.sv"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return Tile(config=config, sources=(path,), description="mock tile")


@pytest.fixture(scope="session")
def tile_of():
    """``tile_of(config)``: the RTL tile for ``config`` (Verilog generated once per session)."""
    cache = {}

    def get(config: TileParams) -> Tile:
        if config not in cache:
            cache[config] = rtl_tile(config)
        return cache[config]

    return get


#: Time limit of a Verilator test: it may compile one or more models first (a few minutes each on a loaded
#: 2-core machine, measured up to 230 s for two builds); the default (pyproject.toml) is for everything else.
VERILATOR_TEST_TIMEOUT = 900


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("timeout") is None and Path(str(item.fspath)).parent == HERE:
            item.add_marker(pytest.mark.timeout(VERILATOR_TEST_TIMEOUT))
