"""The measurements JSON: the one definition of its schema.

``septet sim`` (and ``septet run``) write one file per invocation; the
throughput model (``sim/``) reads it.  Schema ``septet.measurement/1``::

    {"schema": "septet.measurement/1",
     "runs": [{"format": "4+3", "arithmetic": "own", "lanes": 16, "bus_width": 64,
               "group_size": null, "k": 4096, "n": 64, "requant": false,
               "stream_bits": ..., "ideal_cycles": ..., "cycles": ..., "latency_cycles": ...,
               "bus_efficiency": ..., "mismatches": 0, "backpressure": 0.0, "seed": 0,
               "simulator": "verilator 5.48", "mode": "mem", "command": "septet sim ..."}],
     "comparisons": [...]}        # optional: cycle ratios between runs on the same bus

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
from pathlib import Path

__all__ = ["SCHEMA", "RUN_KEYS", "run_record", "measurements", "write_measurements", "read_measurements"]

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
    config : tb.gemv_data.TileConfig
    gemv : tb.gemv_data.Gemv
    cycles : int
        Measured cycles (see the module docstring).
    """
    ideal = gemv.ideal_cycles(config.bus_width)
    record = {
        "format": config.fmt, "arithmetic": config.arithmetic, "lanes": config.lanes,
        "bus_width": config.bus_width, "group_size": config.group_size, "k": gemv.K, "n": gemv.N,
        "requant": config.requant, "stream_bits": int(gemv.stream_bits), "ideal_cycles": int(ideal),
        "cycles": int(cycles), "latency_cycles": int(cycles) - int(ideal),
        "bus_efficiency": round(ideal / cycles, 6) if cycles else 0.0, "mismatches": int(mismatches),
        "backpressure": float(backpressure), "seed": int(seed), "simulator": simulator, "mode": mode,
        "command": command,
    }
    assert tuple(record) == RUN_KEYS
    return record


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
    """Write the measurements JSON to ``path`` (parents created); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(measurements(runs, comparisons), indent=1) + "\n")
    return path


def read_measurements(path) -> dict:
    """Read and check a measurements JSON."""
    doc = json.loads(Path(path).read_text())
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema must be {SCHEMA!r}, got {doc.get('schema')!r}")
    measurements(doc["runs"])
    return doc
