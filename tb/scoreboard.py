"""In-order, bit-exact checker of the tile's result beats against the golden oracle.

The driver sends GEMVs, the golden model (:mod:`tb.gemv_data`, from
``golden.oracle``) says what each result beat must be, and this checker
compares every beat the monitor sees, in order: every lane's value and the
tlast marker.  A failure names the GEMV, the column (block and lane) and shows
expected against got.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from golden.format import byte_count
from tb.gemv_data import Gemv, bytes_to_lanes

__all__ = ["Mismatch", "Scoreboard"]


@dataclass(frozen=True)
class Mismatch:
    """One wrong value (or marker) in a result beat."""

    gemv: int
    gemv_name: str
    block: int
    lane: int
    column: int
    expected: object
    got: object
    what: str = "value"

    def describe(self) -> str:
        where = f"GEMV {self.gemv} ({self.gemv_name}), block {self.block}"
        if self.what == "value":
            diff = self.got - self.expected
            return (f"{where}, column {self.column} (lane {self.lane}): expected {self.expected}, "
                    f"got {self.got} (got - expected = {diff:+d}; xor = {self.expected ^ self.got:#x})")
        return f"{where}: {self.what}: expected {self.expected}, got {self.got}"


class Scoreboard:
    """Checks result beats in order against the expected beats of a list of GEMVs.

    Parameters
    ----------
    gemvs : list of Gemv
        In the order the driver sends them.
    lanes : int
        Lanes per result beat.
    result_bits : int
        Width of one lane's two's-complement result.
    report_limit : int
        Mismatches listed in the failure message (all are counted).
    """

    def __init__(self, gemvs, lanes: int, result_bits: int, *, report_limit: int = 12):
        self.gemvs: list[Gemv] = list(gemvs)
        self.lanes = lanes
        self.result_bits = result_bits
        self.beat_bytes = byte_count(lanes * result_bits)
        self.report_limit = report_limit
        self.mismatches: list[Mismatch] = []
        self.mismatch_count = 0
        self._gemv = 0
        self._block = 0
        self.beats_checked = 0

    @property
    def expected_beats(self) -> int:
        return sum(g.n_blocks for g in self.gemvs)

    @property
    def done(self) -> bool:
        """All expected beats have been seen."""
        return self._gemv >= len(self.gemvs)

    def _record(self, mismatch: Mismatch) -> None:
        self.mismatch_count += 1
        if len(self.mismatches) < self.report_limit:
            self.mismatches.append(mismatch)

    def check_beats(self, beats, lasts) -> None:
        """Check consecutive result beats: ``beats`` uint8 (n, beat bytes), ``lasts`` their tlast bits."""
        beats = np.asarray(beats, dtype=np.uint8).reshape(-1, self.beat_bytes)
        lasts = list(lasts)
        if len(lasts) != len(beats):
            raise ValueError(f"{len(beats)} beats but {len(lasts)} tlast markers")
        got_all = bytes_to_lanes(beats, self.lanes, self.result_bits, signed=True)
        for got, last in zip(got_all, lasts):
            self._check_one(got, bool(last))

    def check_frame(self, data: bytes) -> None:
        """Check the beats of one AXI-Stream frame (tlast on its final beat only)."""
        if len(data) % self.beat_bytes:
            raise ValueError(f"frame of {len(data)} bytes is not whole beats of {self.beat_bytes}")
        n = len(data) // self.beat_bytes
        self.check_beats(np.frombuffer(bytes(data), dtype=np.uint8), [False] * (n - 1) + [True])

    def _check_one(self, got, last: bool) -> None:
        self.beats_checked += 1
        if self.done:
            self._record(Mismatch(len(self.gemvs), "-", 0, 0, 0, "no more beats", "an extra beat", "beat"))
            return
        g = self.gemvs[self._gemv]
        expected = g.expected[self._block]
        for lane in np.flatnonzero(np.asarray(got != expected)):
            self._record(Mismatch(self._gemv, g.name, self._block, int(lane), self._block * self.lanes + int(lane),
                                  int(expected[lane]), int(got[lane])))
        expected_last = self._block == g.n_blocks - 1
        if last != expected_last:
            self._record(Mismatch(self._gemv, g.name, self._block, 0, 0, int(expected_last), int(last), "tlast"))
        self._block += 1
        if self._block == g.n_blocks:
            self._gemv += 1
            self._block = 0

    def report(self) -> str:
        """Human-readable summary: counts and the first mismatches."""
        lines = [f"{self.beats_checked} result beats checked of {self.expected_beats} expected, "
                 f"{self.mismatch_count} mismatches"]
        if not self.done:
            lines.append(f"missing beats: stopped at GEMV {self._gemv} block {self._block}")
        lines += ["  " + m.describe() for m in self.mismatches]
        if self.mismatch_count > len(self.mismatches):
            lines.append(f"  ... and {self.mismatch_count - len(self.mismatches)} more")
        return "\n".join(lines)

    def passed(self) -> bool:
        return self.done and self.mismatch_count == 0

    def assert_passed(self) -> None:
        """Raise ``AssertionError`` with :meth:`report` unless every beat matched."""
        if not self.passed():
            raise AssertionError(self.report())
