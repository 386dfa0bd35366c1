# amaranth: UnusedElaboratable=no
"""A deadlock fails, naming the test: the cycle budget of Amaranth testbenches and pytest's time limit."""

import gc
import subprocess
import sys
import textwrap

import pytest
from amaranth.sim import Simulator

from rtl.gearbox import Gearbox
from rtl.simutil import SimulationDeadlock, receive, run_simulation


# The abandoned testbench, collected later, cannot be closed inside Amaranth 0.5's ``until()`` and reports an
# "exception ignored" of its own: expected after any deadlock, and not this test's subject.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_cycle_budget_turns_a_hang_into_a_failure_naming_the_test():
    dut = Gearbox(in_width=8, record_widths=(8,))

    async def consumer(ctx):          # nothing is ever sent: the record never becomes valid
        await receive(ctx, dut.o, 1)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(consumer)
    with pytest.raises(SimulationDeadlock, match=r"gearbox probe did not finish within 50 cycles .*"
                                                 r"test_cycle_budget_turns_a_hang_into_a_failure_naming_the_test"):
        run_simulation(sim, cycles=50, what="gearbox probe")
    del sim, consumer
    gc.collect()        # the abandoned testbench goes now, under this test's warning filter


def test_cycle_budget_rejects_a_bad_value():
    with pytest.raises(ValueError, match="cycles must be an integer >= 1"):
        run_simulation(Simulator(Gearbox(in_width=8, record_widths=(8,))), cycles=0)


def test_pytest_time_limit_is_configured_and_fails_a_hanging_test(tmp_path):
    (tmp_path / "test_hang.py").write_text(textwrap.dedent("""
        import time

        def test_sleeps_for_ever():
            time.sleep(3600)
    """))
    # The project's configuration gives every test a limit; here it is lowered to one second.
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout=1",
                          str(tmp_path / "test_hang.py")], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert run.returncode != 0
    assert "Timeout" in run.stdout and "test_sleeps_for_ever" in run.stdout


def test_project_default_time_limit(pytestconfig):
    assert float(pytestconfig.getini("timeout")) > 0
