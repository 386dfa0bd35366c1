"""An edit of the RTL (or of golden's format) always regenerates the Verilog and rebuilds the model.

Issue 11 found the Verilog cache keyed on the build parameters alone: after an edit of ``rtl/``
the Verilator tests checked the old design.  Here a copy of the project's ``rtl/``, ``golden/`` and
``tb/`` is edited and ``rtl_tile`` is run from the copy (in a subprocess, so the copy's modules are
the ones imported) into one shared cache: the edit must give a new cache entry whose Verilog shows
the edit, and a different Verilator build key.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from rtl.params import TileParams
from tb import toolchain
from tb.simulate import _config_hash, verilog_inputs_digest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = TileParams(fmt="4+3", lanes=2, bus_width=16, group_size=4)

_PROBE = """
import json, sys
from pathlib import Path
import rtl
from rtl.params import TileParams
from tb import toolchain
from tb.simulate import rtl_tile
tile = rtl_tile(TileParams.from_record(json.loads(sys.argv[1])), out_root=Path(sys.argv[2]))
print(json.dumps({"rtl": rtl.__file__, "verilog": str(tile.sources[0]),
                  "key": toolchain.build_key(tile.sources, "septet_tile")}))
"""


_EDIT = """

from amaranth.hdl import Signal as _Signal

_unedited_elaborate = SeptetTile.elaborate


def _edited_elaborate(self, platform):
    m = _unedited_elaborate(self, platform)
    marker = _Signal(8, name="edited_by_test")
    m.d.sync += marker.eq(marker + 1)
    return m


SeptetTile.elaborate = _edited_elaborate
"""


def _copy_project(into: Path) -> Path:
    for package in ("rtl", "golden", "tb"):
        shutil.copytree(ROOT / package, into / package, ignore=shutil.ignore_patterns("__pycache__", "quality"))
    return into


def _rtl_tile_in(copy: Path, cache: Path) -> dict:
    run = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(CONFIG.build_record()), str(cache)], cwd=copy,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(found["rtl"]).resolve().is_relative_to(copy.resolve()), "the probe imported the wrong rtl/"
    return found


def test_rtl_or_format_edit_regenerates_verilog_and_changes_the_build_key(tmp_path):
    copy = _copy_project(tmp_path / "project")
    cache = tmp_path / "cache"
    before = _rtl_tile_in(copy, cache)
    again = _rtl_tile_in(copy, cache)
    assert again == before, "an unchanged project must reuse its cached Verilog"

    # An edit of the tile's source that any design change stands for (written against the class, not its
    # internals, so it survives rewrites of the blocks): an extra register in the tile.
    tile_py = copy / "rtl" / "tile.py"
    tile_py.write_text(tile_py.read_text() + _EDIT)
    after = _rtl_tile_in(copy, cache)
    old_text, new_text = (Path(found["verilog"]).read_text() for found in (before, after))
    assert Path(after["verilog"]).parent != Path(before["verilog"]).parent
    assert "edited_by_test" in new_text and "edited_by_test" not in old_text
    assert after["key"] != before["key"], "the Verilator build must not be reused for the edited design"

    # Golden's format facts are inputs too: even a comment there gives a new entry (the key is the source text).
    fmt = copy / "golden" / "format.py"
    fmt.write_text(fmt.read_text() + "\n# edited by test_build_keys\n")
    assert Path(_rtl_tile_in(copy, cache)["verilog"]).parent not in {Path(f["verilog"]).parent for f in (before, after)}


def test_key_of_this_checkout_depends_on_config_and_sources():
    digest = verilog_inputs_digest()
    assert len(digest) == 64 and digest == verilog_inputs_digest()
    assert _config_hash(CONFIG) != _config_hash(TileParams(fmt="4+4", lanes=2, bus_width=16, group_size=4))
    assert toolchain.build_key([ROOT / "rtl" / "TILE.md"], "x") != toolchain.build_key([ROOT / "README.md"], "x")
