"""The testbench itself: the scoreboard catches wrong results (in both modes), payload packing, the
measurement schema, and ``septet sim``'s exit status and JSON.

Wrong results come from ``mock_tile.sv`` with ``BUG=1`` (lane 1 of every odd result flipped in bit 1).
"""

import json

import numpy as np
import pytest
from conftest import mock_tile

from rtl.params import TileParams
from septet.cli import main as septet_main
from tb import simulate as simulate_module
from tb import toolchain
from tb.gemv_data import GemvSet, _lanes_to_bytes, bytes_to_lanes, random_gemv
from tb.measurement import RUN_KEYS, SCHEMA, comparisons, read_measurements
from tb.scoreboard import Scoreboard
from tb.simulate import simulate

MOCK = TileParams(fmt="4+3", lanes=4, bus_width=61, group_size=8)


def _two_gemvs(config):
    return [random_gemv(config, 37, 10, seed=1, name="first"), random_gemv(config, 20, 5, seed=2, name="second")]


@pytest.mark.parametrize("mode", ["axis", "mem"])
def test_corrupted_results_fail_with_gemv_and_column(mode, tmp_path):
    gemvs = _two_gemvs(MOCK)
    with pytest.raises(toolchain.SimulationFailed) as failure:
        simulate(mock_tile(MOCK, bug=True), GemvSet(MOCK, gemvs, {"idle": 0.2, "backpressure": 0.3, "seed": 1}),
                 tmp_path, mode=mode)
    message = str(failure.value)
    # The first corrupted value golden predicts: lane 1 of the first block whose lane-1 result is odd.
    g, b = next((g, b) for g, gemv in enumerate(gemvs) for b in range(gemv.n_blocks) if gemv.expected[b, 1] % 2)
    expected = int(gemvs[g].expected[b, 1])
    assert f"GEMV {g} ({gemvs[g].name}), block {b}, column {b * MOCK.lanes + 1} (lane 1): " \
           f"expected {expected}, got {expected ^ 2}" in message


def _beats(config, gemv):
    """The result beats a correct tile sends for ``gemv``, as bytes."""
    return _lanes_to_bytes(np.asarray(gemv.expected) & ((1 << config.out_bits) - 1), config.out_bits)


def test_axis_testbench_fails_with_a_timeout_rather_than_hanging(tmp_path):
    # 20 cycles cannot carry two GEMVs: the awaited result frame times out and the run fails, naming the limit.
    gemvs = _two_gemvs(MOCK)
    with pytest.raises(toolchain.SimulationFailed, match="timeout after 20 cycles"):
        simulate(mock_tile(MOCK), GemvSet(MOCK, gemvs, {"timeout_cycles": 20}), tmp_path, mode="axis")


def test_scoreboard_accepts_exact_beats_and_reports_each_kind_of_error():
    config = MOCK
    gemvs = _two_gemvs(config)
    good = Scoreboard(gemvs, config.lanes, config.out_bits)
    for gemv in gemvs:
        good.check_frame(_beats(config, gemv).tobytes())
    assert good.passed() and good.beats_checked == sum(g.n_blocks for g in gemvs)

    bad = Scoreboard(gemvs, config.lanes, config.out_bits)
    beats = _beats(config, gemvs[0])
    beats[1, 0] ^= 0x01                                  # block 1, lane 0: off by one
    lasts = [0] * gemvs[0].n_blocks                      # tlast missing on the last block
    bad.check_beats(beats, lasts)
    report = bad.report()
    assert not bad.passed()
    assert f"column {config.lanes} (lane 0): expected {gemvs[0].expected[1, 0]}" in report
    assert "tlast: expected 1, got 0" in report
    assert "missing beats: stopped at GEMV 1 block 0" in report


def test_result_lane_packing_round_trips_signed_values():
    rng = np.random.default_rng(0)
    for bits in (8, 13, 48, 64):
        values = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(5, 3), dtype=np.int64)
        values[0, 0], values[0, 1] = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        packed = _lanes_to_bytes(values & ((1 << bits) - 1) if bits < 64 else values.view(np.uint64), bits)
        assert packed.shape == (5, -(-3 * bits // 8))
        assert np.array_equal(np.asarray(bytes_to_lanes(packed, 3, bits, signed=True), dtype=np.int64), values)


def test_tile_parameters_travel_as_a_record_and_port_widths_are_checked_against_the_json(tmp_path):
    import dataclasses
    import pickle

    from tb.gemv_data import port_widths
    from tb.simulate import _checked_port_widths

    config = TileParams(fmt="4+3", lanes=4, bus_width=61, group_size=8, requant=True)
    # The record of measurements and of the cocotb process's files: build parameters only, by name.
    record = config.build_record()
    assert record == {"format": "4+3", "arithmetic": "own", "lanes": 4, "bus_width": 61, "group_size": 8,
                      "acc_width": config.acc_width, "max_k": config.max_k, "requant": True}
    assert TileParams.from_record(json.loads(json.dumps(record))) == config == TileParams.from_record(config.as_dict())
    assert TileParams(**config.build_kwargs()) == config
    assert pickle.loads(pickle.dumps(config)) == config                     # Dask ships it to workers
    assert GemvSet.read(GemvSet(config, [random_gemv(config, 6, 3)]).write(tmp_path)).config == config
    with pytest.raises(ValueError, match=r"missing \['requant'\]"):
        TileParams.from_record({k: v for k, v in record.items() if k != "requant"})
    assert dataclasses.replace(config, lanes=2) == TileParams(fmt="4+3", lanes=2, bus_width=61, group_size=8,
                                                              requant=True)
    with pytest.raises(ValueError, match=r"max_k must be an integer in \[2, "):
        dataclasses.replace(config, fmt="8+8", max_k=1 << 20)     # replace validates like the constructor
    assert config.out_bits == 8
    meta = {"ports": [{"name": name, "width": bits} for name, bits in port_widths(config).items()]}
    assert _checked_port_widths(config, meta)["m_axis_result__tdata"]["width"] == 4 * 8
    meta["ports"][2]["width"] += 1
    with pytest.raises(ValueError, match="port m_axis_result__tdata is 33 bits in the RTL's port map, "
                                         "the testbench expects 32"):
        _checked_port_widths(config, meta)


def test_comparisons_pair_formats_on_the_same_bus_and_shape_only():
    def run(fmt, arithmetic="own", bus_width=64, cycles=100, ideal=90, bits=5760):
        return {"format": fmt, "arithmetic": arithmetic, "lanes": 16, "bus_width": bus_width, "group_size": 128,
                "k": 256, "n": 16, "mode": "mem", "cycles": cycles, "ideal_cycles": ideal, "stream_bits": bits}

    runs = [run("4+3", cycles=105, ideal=100, bits=6400), run("4+4", "shared", cycles=120, ideal=116, bits=7424),
            run("4+4", bus_width=32), run("4+3", bus_width=32)]
    only, on_32_bits = comparisons(runs)   # never across buses
    assert on_32_bits["formats"] == ["4+4 own g128", "4+3 own g128"]
    assert only["formats"] == ["4+3 own g128", "4+4 shared g128"]
    assert only["cycle_ratio"] == round(105 / 120, 6) and only["ideal_cycle_ratio"] == round(100 / 116, 6)
    assert only["stream_bits_ratio"] == round(6400 / 7424, 6) and only["pair_bits_ratio"] == "7/8"
    assert only["deviation_from_pair_bits_ratio"] == round((105 / 120) / (7 / 8) - 1, 6)


def test_sim_rejects_bad_input_in_one_line(capsys):
    assert septet_main(["sim", "--backpressure", "1.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["septet sim: error: backpressure must be a number in [0, 1), got 1.5"]
    assert septet_main(["sim", "--format", "9+3"]) == 2
    assert "even_bits must be an integer in [2, 8]" in capsys.readouterr().err


def test_sim_exits_nonzero_and_counts_mismatches_when_the_tile_is_wrong(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(simulate_module, "rtl_tile", lambda config: mock_tile(config, bug=True))
    status = septet_main(["sim", "--format", "4+3", "--lanes", "4", "--bus-width", "61", "--group-size", "8",
                          "--k", "37", "--n", "10", "--seed", "1", "--out", str(tmp_path)])
    assert status == 1
    run = read_measurements(tmp_path / "measurements.json")["runs"][0]
    assert run["mismatches"] > 0
    assert "FAIL 4+3" in capsys.readouterr().out


def test_sim_json_has_the_schema_and_a_passing_run(tmp_path, capsys):
    # The same configuration as the axis tests in test_tile.py: the build is shared.
    status = septet_main(["sim", "--format", "4+3", "--lanes", "4", "--bus-width", "61", "--group-size", "8",
                          "--k", "33", "--n", "6", "--mode", "axis", "--backpressure", "0.25", "--seed", "5",
                          "--out", str(tmp_path), "--json"])
    captured = capsys.readouterr()
    assert status == 0
    doc = json.loads(captured.out)                      # stdout is the JSON document alone
    assert "PASS 4+3" in captured.err
    assert doc["schema"] == SCHEMA and len(doc["runs"]) == 1
    run = doc["runs"][0]
    assert tuple(run) == RUN_KEYS
    assert (run["format"], run["k"], run["n"], run["mismatches"], run["backpressure"]) == ("4+3", 33, 6, 0, 0.25)
    assert run["latency_cycles"] == run["cycles"] - run["ideal_cycles"] > 0
    assert run["command"].startswith("septet sim")
    assert read_measurements(tmp_path / "measurements.json") == doc


def test_run_simulates_septet_and_int4_on_one_bus(tmp_path, capsys):
    # The bus-bound 8-lane, 32-bit tiles of test_tile.py: the builds are shared.
    status = septet_main(["run", "--lanes", "8", "--bus-width", "32", "--k", "300", "--n", "20", "--seed", "3",
                          "--group-size", "none", "--int4-arithmetic", "own", "--out", str(tmp_path)])
    assert status == 0
    doc = read_measurements(tmp_path / "measurements.json")
    assert [r["format"] for r in doc["runs"]] == ["4+3", "4+4"]
    assert all(r["mismatches"] == 0 and (r["k"], r["n"]) == (300, 20) for r in doc["runs"])
    ratio = doc["comparisons"][0]["cycle_ratio"]
    assert ratio == round(doc["runs"][0]["cycles"] / doc["runs"][1]["cycles"], 6)
    assert f"{ratio:.5f}" in capsys.readouterr().out
