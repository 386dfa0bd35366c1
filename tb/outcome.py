"""The record a simulation leaves in its test directory, read back by the host.

The cocotb process writes ``outcome.json`` (cycles per GEMV, the
scoreboard's verdict and report) before it asserts, so the host gets the
figures and a readable diff whether or not the run passed.  Long runs also
update ``progress.txt`` (one line) so the host can show progress.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

__all__ = ["OUTCOME", "PROGRESS", "write_outcome", "read_outcome", "ProgressWriter", "read_progress"]

OUTCOME = "outcome.json"
PROGRESS = "progress.txt"


def write_outcome(directory, *, mode: str, cycles, starts, ends, scoreboard, sim_seconds: float,
                  total_cycles: int, extra: "dict | None" = None) -> dict:
    """Write ``outcome.json``; return its content.

    ``cycles[i]`` is GEMV ``i``'s measured cycles: from the cycle its first
    weight word is accepted to the cycle its tlast result beat is accepted,
    both inclusive (``ends[i] - starts[i] + 1``).
    """
    record = {
        "mode": mode,
        "cycles": [int(c) for c in cycles],
        "starts": [int(c) for c in starts],
        "ends": [int(c) for c in ends],
        "total_cycles": int(total_cycles),
        "mismatches": int(scoreboard.mismatch_count),
        "beats_checked": int(scoreboard.beats_checked),
        "beats_expected": int(scoreboard.expected_beats),
        "passed": bool(scoreboard.passed()),
        "report": scoreboard.report(),
        "sim_seconds": round(sim_seconds, 3),
    }
    record.update(extra or {})
    Path(directory, OUTCOME).write_text(json.dumps(record, indent=1))
    return record


def read_outcome(directory) -> "dict | None":
    """The ``outcome.json`` of a run, or ``None`` when the run died before writing it."""
    path = Path(directory, OUTCOME)
    return json.loads(path.read_text()) if path.is_file() else None


class ProgressWriter:
    """Rewrites ``progress.txt`` at most every ``interval`` seconds of wall time."""

    def __init__(self, directory, total_cycles_hint: int, interval: float = 1.0):
        self.path = Path(directory, PROGRESS)
        self.total = max(1, int(total_cycles_hint))
        self.interval = interval
        self.start = time.perf_counter()
        self.last = 0.0

    def update(self, cycle: int, text: str = "") -> None:
        now = time.perf_counter()
        if now - self.last < self.interval:
            return
        self.last = now
        rate = cycle / max(now - self.start, 1e-9)
        self.path.write_text(f"cycle {cycle} of ~{self.total} ({100.0 * cycle / self.total:.0f}%), "
                             f"{rate / 1e3:.0f} k cycles/s {text}".rstrip() + "\n")


def read_progress(directory) -> str:
    path = Path(directory, PROGRESS)
    try:
        return path.read_text().strip()
    except OSError:
        return ""
