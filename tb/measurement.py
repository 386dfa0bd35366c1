"""The measurements JSON: the one definition of its schema.

``septet sim`` (and ``septet run``) write one file per invocation; the
throughput model (``sim/``) reads it.  Schema ``septet.measurement/1``::

    {"schema": "septet.measurement/1",
     "runs": [{"format": "4+3", "arithmetic": "own", "lanes": 16, "bus_width": 64,
               "group_size": null, "k": 4096, "n": 64, "requant": false,
               "stream_bits": ..., "ideal_cycles": ..., "cycles": ..., "latency_cycles": ...,
               "bus_efficiency": ..., "mismatches": 0, "backpressure": 0.0, "seed": 0,
               "simulator": "verilator 5.48", "mode": "mem", "command": "septet sim ..."}],
     "comparisons": [...]}        # optional: cycle ratios between runs on the same bus (comparisons())

Definitions (the same in both testbench modes):

* ``stream_bits``: ``golden.pack.PackedStream.nbits`` of the GEMV (codes and group headers).
* ``ideal_cycles``: ``ceil(stream_bits / bus_width)``, one bus word per cycle.
* ``cycles``: from the clock edge at which the GEMV's first weight word is
  accepted to the edge at which its tlast result beat is accepted, both
  counted (``end - start + 1``).
* ``latency_cycles``: ``cycles - ideal_cycles``.
* ``bus_efficiency``: ``ideal_cycles / cycles``.
* ``backpressure``: probability that the result sink is not ready in a cycle.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

__all__ = ["SCHEMA", "RUN_KEYS", "run_record", "run_label", "comparisons", "measurements", "write_measurements",
           "read_measurements"]

SCHEMA = "septet.measurement/1"
#: Keys of one run, in order.
RUN_KEYS = ("format", "arithmetic", "lanes", "bus_width", "group_size", "k", "n", "requant", "stream_bits",
            "ideal_cycles", "cycles", "latency_cycles", "bus_efficiency", "mismatches", "backpressure", "seed",
            "simulator", "mode", "command")


def run_record(config, gemv, *, cycles: int, mismatches: int, backpressure: float, seed: int, simulator: str,
               mode: str, command: str) -> dict:
    """One run's record (exactly :data:`RUN_KEYS`).

    Parameters
    ----------
    config : rtl.params.TileParams
    gemv : tb.gemv_data.Gemv
    cycles : int
        Measured cycles (see the module docstring).
    """
    ideal = gemv.ideal_cycles(config.bus_width)
    record = {
        "format": config.fmt.name, "arithmetic": config.arithmetic.value, "lanes": config.lanes,
        "bus_width": config.bus_width, "group_size": config.group_size, "k": gemv.K, "n": gemv.N,
        "requant": config.requant, "stream_bits": int(gemv.stream_bits), "ideal_cycles": int(ideal),
        "cycles": int(cycles), "latency_cycles": int(cycles) - int(ideal),
        "bus_efficiency": round(ideal / cycles, 6) if cycles else 0.0, "mismatches": int(mismatches),
        "backpressure": float(backpressure), "seed": int(seed), "simulator": simulator, "mode": mode,
        "command": command,
    }
    assert tuple(record) == RUN_KEYS
    return record


def run_label(record: dict) -> str:
    """A run's format, arithmetic and grouping, e.g. ``"4+3 own g128"`` or ``"4+4 shared per column"``."""
    group = "per column" if record["group_size"] is None else f"g{record['group_size']}"
    return f"{record['format']} {record['arithmetic']} {group}"


#: What two runs must share for their cycles to be compared: the same bus, tile and GEMV.
COMPARED_ON = ("lanes", "bus_width", "group_size", "k", "n", "mode")


def comparisons(runs) -> "list[dict]":
    """Cycle ratios of every pair of runs of different formats on the same bus, tile and GEMV shape.

    Runs are compared when they agree on :data:`COMPARED_ON` and differ in
    format; each pair appears once, in the order of ``runs``.

    Returns
    -------
    list of dict
        Per pair: ``formats`` (the two :func:`run_label`), ``cycle_ratio``,
        ``ideal_cycle_ratio``, ``stream_bits_ratio`` (stored bits, group headers
        included), ``pair_bits_ratio`` (the code bits of a pair, exact, e.g.
        ``"7/8"``) and ``deviation_from_pair_bits_ratio`` (``cycle_ratio`` over
        the pair-bits ratio, minus 1); ratios rounded to 6 decimals.
    """
    runs = list(runs)
    out = []
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            if a["format"] == b["format"] or any(a[key] != b[key] for key in COMPARED_ON):
                continue
            pair_bits = [sum(map(int, r["format"].split("+"))) for r in (a, b)]
            ratio = a["cycles"] / b["cycles"]
            out.append({"formats": [run_label(a), run_label(b)], "cycle_ratio": round(ratio, 6),
                        "ideal_cycle_ratio": round(a["ideal_cycles"] / b["ideal_cycles"], 6),
                        "stream_bits_ratio": round(a["stream_bits"] / b["stream_bits"], 6),
                        "pair_bits_ratio": str(Fraction(*pair_bits)),
                        "deviation_from_pair_bits_ratio": round(ratio / (pair_bits[0] / pair_bits[1]) - 1.0, 6)})
    return out


def measurements(runs, comparisons=None) -> dict:
    """The whole document for ``runs`` (records from :func:`run_record`)."""
    runs = list(runs)
    for run in runs:
        if tuple(run) != RUN_KEYS:
            raise ValueError(f"a run must have exactly the keys {RUN_KEYS}, got {tuple(run)}")
    doc = {"schema": SCHEMA, "runs": runs}
    if comparisons:
        doc["comparisons"] = list(comparisons)
    return doc


def write_measurements(path, runs, comparisons=None) -> Path:
    """Write the measurements JSON to ``path`` atomically (parents created); return the path."""
    from golden.io import atomic_write
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(measurements(runs, comparisons), indent=1) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode()), force=True, param="--out")
    return path


def read_measurements(path) -> dict:
    """Read and check a measurements JSON."""
    doc = json.loads(Path(path).read_text())
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema must be {SCHEMA!r}, got {doc.get('schema')!r}")
    measurements(doc["runs"])
    return doc
