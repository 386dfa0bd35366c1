"""The memory-model simulator that stays up (tb.simulate.MemServer): many sets in one simulator process,
weights written once and named by offset, every beat still checked; wrong results and a stuck tile are
reported, never hidden.

The mock tile (``mock_tile.sv``) in the memory-model top with cocotb's clock: cheap to build and run.
"""

import dataclasses

import numpy as np
import pytest
from conftest import mock_tile

from golden.quantize import quantize
from rtl.params import TileParams
from tb import toolchain
from tb.gemv_data import GemvSet, make_gemv, random_gemv
from tb.mem_wrapper import FILES, beat_file_bytes, write_inputs
from tb.simulate import MemServer, _children_with_env, simulate

MOCK = TileParams(fmt="4+3", lanes=4, bus_width=61, group_size=8)


def _shared_matrix_gemvs():
    """Two GEMVs of one matrix (different activations) and one of another."""
    rng = np.random.default_rng(5)
    qm = quantize(rng.standard_normal((40, 10)), MOCK.fmt, group_size=MOCK.group_size)
    first = make_gemv(qm, rng.integers(-128, 128, 40).astype(np.int8), MOCK, name="W a1")
    second = make_gemv(qm, rng.integers(-128, 128, 40).astype(np.int8), MOCK, name="W a2")
    return first, second, random_gemv(MOCK, 22, 7, seed=3, name="other")


def _simulator_pids(server):
    return _children_with_env(f"SEPTET_TB_DIR={server.directory}")


def test_one_simulator_runs_many_sets_with_weights_named_by_offset(tmp_path):
    first, second, other = _shared_matrix_gemvs()
    options = {"idle": 0.2, "backpressure": 0.3, "seed": 4}
    with MemServer(mock_tile(MOCK), tmp_path / "server", hdl_clock=False) as server:
        pids = _simulator_pids(server)
        assert len(pids) == 1
        one = server.run(GemvSet(MOCK, [first, other], options))
        assert one.passed and one.outcome["beats_checked"] == first.n_blocks + other.n_blocks
        # The same matrix again: its words are read from the weights file, none are sent with the set.
        light = dataclasses.replace(second, weights=second.weights[:0])
        two = server.run(GemvSet(MOCK, [light], options), weight_offsets=[0])
        assert two.passed and two.outcome["beats_checked"] == second.n_blocks
        assert _simulator_pids(server) == pids and server.count == 2
    # Cycle for cycle what a simulator started for the set alone measures (same stalls, same seed).
    alone = simulate(mock_tile(MOCK), GemvSet(MOCK, [second], options), tmp_path / "alone", mode="mem")
    assert alone.outcome["cycles"] == two.outcome["cycles"]


def test_a_wrong_result_fails_its_set_and_the_simulator_serves_the_next(tmp_path):
    first, _, other = _shared_matrix_gemvs()
    with MemServer(mock_tile(MOCK, bug=True), tmp_path, hdl_clock=False) as server:
        bad = server.run(GemvSet(MOCK, [first, other], {"seed": 1}))
        assert not bad.passed and bad.outcome["mismatches"] > 0
        # The mock corrupts lane 1 of odd results: the first such value golden predicts is named.
        g, b = next((g, b) for g, gemv in enumerate([first, other]) for b in range(gemv.n_blocks)
                    if gemv.expected[b, 1] % 2)
        name = [first, other][g].name
        assert f"GEMV {g} ({name}), block {b}, column {b * MOCK.lanes + 1} (lane 1)" in bad.outcome["report"]
        again = server.run(GemvSet(MOCK, [other], {"seed": 2}), weight_offsets=[len(first.weights)])
        assert again.outcome["request"] == 2 and again.outcome["beats_checked"] == other.n_blocks


def test_a_stuck_set_times_out_and_the_simulator_is_not_reused(tmp_path):
    first, _, other = _shared_matrix_gemvs()
    with MemServer(mock_tile(MOCK), tmp_path, hdl_clock=False) as server:
        stuck = server.run(GemvSet(MOCK, [first, other], {"timeout_cycles": 20}))
        assert not stuck.passed and stuck.outcome["timed_out"]
        with pytest.raises(toolchain.SimulationFailed, match="the simulator"):
            server.run(GemvSet(MOCK, [other], {}))


def test_beat_files_are_most_significant_byte_first_and_offsets_are_checked(tmp_path):
    assert beat_file_bytes(np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8)) == bytes([3, 2, 1, 6, 5, 4])
    gemv = random_gemv(MOCK, 22, 7, seed=3, name="other")
    (tmp_path / FILES["weights"]).write_bytes(beat_file_bytes(gemv.weights))
    write_inputs(tmp_path, GemvSet(MOCK, [gemv], {}), weight_offsets=[0])
    assert (tmp_path / FILES["meta"]).read_text().splitlines()[1].split()[:2] == [str(len(gemv.weights)), "0"]
    with pytest.raises(ValueError, match="other: words \\[1, "):
        write_inputs(tmp_path, GemvSet(MOCK, [gemv], {}), weight_offsets=[1])
