"""The verification farm: every GEMV of one decode step through the Verilated tile, on Dask.

``septet verify`` plans the GEMVs of one decode step of a model (shapes from
``sim/configs`` through :func:`sim.model.linear_shapes`), cuts the large ones into
column tasks, and runs the tasks on a Dask cluster (a :class:`distributed.LocalCluster`
by default, any existing cluster by its scheduler address).  Each task runs on a
worker, which

* draws the task's weights from the run seed (no weight traffic: a task is a few
  hundred bytes) or reads them from a GGUF file, and the GEMV's INT8 activations;
* makes the stimulus and the expectations with golden (``tb.gemv_data.make_gemv``:
  quantize, pack, integer oracle);
* simulates them in the Verilated tile in memory-model mode (the SystemVerilog wrapper
  streams the beats from binary files) in its one simulator that stays up for all its
  tasks (:class:`tb.simulate.MemServer`; ``persistent_simulator=False``: a process per
  task), and checks every result beat bit for bit with the testbench's scoreboard;
* returns a small record: cycles, ideal cycles, mismatches, and where its time went
  (:class:`_Profile`: wall and CPU seconds per phase).

The client writes each record to ``OUT/results/<task>.json`` as it arrives
(temporary name, then rename), so nothing finished is lost; a rerun with the same
settings and sources (:func:`sources_digest`) skips every task already verified (resume).  A worker that dies mid-task
is Dask's to handle: the scheduler reruns the task on another worker (up to
``distributed.scheduler.allowed-failures`` times), and the client writes a result per
task key exactly once.

Columns, panels and tasks
-------------------------
The columns of a ``K x N`` GEMV are cut into *panels* of :func:`panel_columns` columns
(a multiple of the lanes, about 8 M weights); the weights of a panel are drawn from
``(seed, layer, projection, panel)``, so a GEMV's weights do not depend on how the
panels are grouped into tasks.  A *task* is a run of consecutive panels of one GEMV,
simulated back to back in one simulator process (one GEMV stream per panel).  Since the
tile computes each block of ``lanes`` columns on its own, the panels' results are
exactly the GEMV's.  A GEMV's measured cycles are the sum over its tasks of the span
from the first weight word of the task's first panel to the last result beat of its
last panel: each task pays the tile's fixed latency once, and each panel at most one
partly filled bus word.  Its ideal cycles are ``ceil(stream bits / W)`` of the whole
GEMV, so ``efficiency = ideal / cycles`` shows those costs.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import hashlib
import json
import math
import os
import re
import shutil
import socket
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golden.checks import check_int

__all__ = [
    "PROJECTIONS",
    "GemvSpec",
    "Task",
    "FarmSettings",
    "plan_step",
    "plan_gguf",
    "panel_columns",
    "split_tasks",
    "panel_weights",
    "gemv_activations",
    "run_task",
    "prepare_worker",
    "open_client",
    "verify",
    "summarize",
    "project_step",
    "task_time_model",
    "cpu_time_model",
    "scaling",
    "load_results",
    "check_out_dir",
    "write_json_atomic",
]

#: Projection short names (the CLI's) and the linear layer names of :func:`sim.model.linear_shapes`.
PROJECTIONS = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj", "gate": "gate_proj",
               "up": "up_proj", "down": "down_proj", "lm_head": "lm_head"}
#: Weights per panel (a target; a panel is a whole number of lane blocks).
PANEL_WEIGHTS = 1 << 23
#: Default target cycles per task: big enough that a task's fixed costs (golden's set-up, a round trip to the
#: scheduler: a persistent simulator has no start per task) are small beside it, small enough that one
#: LLaMA-70B layer gives 27 tasks, which 2 workers finish within 0.5% of each other (13 tasks of 4 M: 5%).
DEFAULT_TASK_CYCLES = 2_000_000
#: The format of the files in ``OUT/results`` and of the summary.
SCHEMA = "septet.verify/1"
RESULTS_DIR = "results"
ATTEMPTS_DIR = "attempts"
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"


# ---------------------------------------------------------------------------------------------------------
# The plan: GEMVs, panels, tasks


@dataclass(frozen=True)
class GemvSpec:
    """One GEMV of the decode step.

    Attributes
    ----------
    layer : int or None
        Transformer layer (``None`` for the LM head).
    projection : str
        Short name (a key of :data:`PROJECTIONS`).
    K, N : int
        Weight matrix shape (K the reduction dimension).
    """

    layer: "int | None"
    projection: str
    K: int
    N: int

    @property
    def name(self) -> str:
        return self.projection if self.layer is None else f"layer{self.layer:02d}.{self.projection}"

    @property
    def weights(self) -> int:
        return self.K * self.N

    def seed_words(self) -> "tuple[int, int]":
        """The (layer, projection) words of this GEMV's random streams."""
        return (0 if self.layer is None else self.layer + 1, list(PROJECTIONS).index(self.projection))


@dataclass(frozen=True)
class Task:
    """A run of consecutive panels of one GEMV, simulated in one simulator process.

    Attributes
    ----------
    gemv : GemvSpec
    panels : tuple of (int, int)
        Column ranges ``[start, stop)`` of the task's panels, in order.
    estimated_cycles : int
        ``ceil(stream bits / W)`` of the task's panels (for balancing and the ETA).
    stream_bits : int
        Stream bits of the task's panels.
    """

    gemv: GemvSpec
    panels: tuple
    estimated_cycles: int
    stream_bits: int

    @property
    def columns(self) -> "tuple[int, int]":
        return self.panels[0][0], self.panels[-1][1]

    @property
    def task_id(self) -> str:
        start, stop = self.columns
        return f"{self.gemv.name}.cols{start:06d}-{stop:06d}"


def plan_step(model, *, layers=None, projections=None) -> "list[GemvSpec]":
    """The GEMVs of one decode step of ``model`` (a :class:`sim.config.ModelConfig`).

    Parameters
    ----------
    model : sim.config.ModelConfig
    layers : range or iterable of int, optional
        Layers to include (default: all).
    projections : iterable of str, optional
        Short names from :data:`PROJECTIONS` (default: all; ``lm_head`` once per step).
    """
    from sim.model import linear_shapes

    if getattr(model, "experts_active", 1) != 1:
        raise ValueError(f"{model.name} is a mixture of experts: septet verify plans dense models only")
    layers = range(model.layers) if layers is None else list(layers)
    projections = list(PROJECTIONS) if projections is None else list(projections)
    for layer in layers:
        if not 0 <= layer < model.layers:
            raise ValueError(f"--layers: layer {layer} is outside [0, {model.layers}) of {model.name}")
    for p in projections:
        if p not in PROJECTIONS:
            raise ValueError(f"--projections: {p!r} is not one of {', '.join(PROJECTIONS)}")
    shapes = {name: (K, N) for name, K, N, _ in linear_shapes(model)}
    specs = []
    for layer in layers:
        for p in projections:
            if p != "lm_head":
                specs.append(GemvSpec(layer, p, *shapes[PROJECTIONS[p]]))
    if "lm_head" in projections:
        specs.append(GemvSpec(None, "lm_head", *shapes["lm_head"]))
    return specs


def panel_columns(K: int, lanes: int) -> int:
    """Columns per panel: a multiple of ``lanes`` holding about :data:`PANEL_WEIGHTS` weights."""
    return max(lanes, PANEL_WEIGHTS // max(K, 1) // lanes * lanes)


def _panels(spec: GemvSpec, lanes: int) -> "list[tuple[int, int]]":
    width = panel_columns(spec.K, lanes)
    return [(start, min(start + width, spec.N)) for start in range(0, spec.N, width)]


def split_tasks(specs, config, task_cycles: int = DEFAULT_TASK_CYCLES) -> "list[Task]":
    """Cut every GEMV into tasks of about ``task_cycles`` cycles (whole panels, evenly), largest first."""
    check_int("task_cycles", task_cycles, 1)
    tasks = []
    for spec in specs:
        panels = _panels(spec, config.lanes)
        bits = [config.stream_bits(spec.K, stop - start) for start, stop in panels]
        n_tasks = min(len(panels), max(1, round(sum(bits) / config.bus_width / task_cycles)))
        edges = [round(i * len(panels) / n_tasks) for i in range(n_tasks + 1)]
        for lo, hi in zip(edges, edges[1:]):
            task_bits = sum(bits[lo:hi])
            tasks.append(Task(spec, tuple(panels[lo:hi]), -(-task_bits // config.bus_width), task_bits))
    tasks.sort(key=lambda t: -t.estimated_cycles)   # longest first: the tail of the run stays short
    return tasks


# ---------------------------------------------------------------------------------------------------------
# Data of a task, made on the worker


@functools.lru_cache(maxsize=1)
def _gaussian_table() -> np.ndarray:
    """2^16 standard-normal quantiles: weights are drawn by indexing it with random 16-bit words."""
    inv = statistics.NormalDist().inv_cdf
    return np.array([inv((i + 0.5) / 65536) for i in range(65536)], dtype=np.float32)


def panel_weights(seed: int, spec: GemvSpec, start: int, stop: int) -> np.ndarray:
    """The Gaussian weights ``W[:, start:stop]`` of ``spec``; ``start`` must begin a panel of the GEMV.

    Drawn from ``(seed, layer, projection, panel start)`` (2^16-level quantiles of the
    standard normal, float32), so every worker draws the same matrix.
    """
    rng = np.random.default_rng([int(seed), *spec.seed_words(), int(start)])
    return _gaussian_table()[rng.integers(0, 65536, size=(spec.K, stop - start), dtype=np.uint16)]


def gemv_activations(seed: int, spec: GemvSpec) -> np.ndarray:
    """The GEMV's INT8 activations, uniform over the full INT8 range, from ``(seed, layer, projection)``."""
    from golden.format import ACT_MAX, ACT_MIN

    rng = np.random.default_rng([int(seed), *spec.seed_words(), 1 << 30])
    return rng.integers(ACT_MIN, ACT_MAX + 1, size=spec.K).astype(np.int8)


#: GGUF tensor name of each projection (llama.cpp's names; ``{}`` is the layer).
_GGUF_TENSORS = {"q": "blk.{}.attn_q.weight", "k": "blk.{}.attn_k.weight", "v": "blk.{}.attn_v.weight",
                 "o": "blk.{}.attn_output.weight", "gate": "blk.{}.ffn_gate.weight",
                 "up": "blk.{}.ffn_up.weight", "down": "blk.{}.ffn_down.weight", "lm_head": "output.weight"}


def _gguf_tensor_name(reader_names, spec: GemvSpec) -> str:
    name = _GGUF_TENSORS[spec.projection].format(spec.layer)
    if spec.projection == "lm_head" and name not in reader_names:
        name = "token_embd.weight"     # tied embeddings: the LM head is the embedding
    return name


@functools.lru_cache(maxsize=1)
def _gguf_reader(path: str):
    """The GGUF reader of ``path`` (memory-mapped; parsing the metadata is slow, so once per process)."""
    from gguf import GGUFReader

    try:
        return GGUFReader(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
        raise ValueError(f"--weights: {path!r} is not a readable GGUF file ({exc})") from None


@functools.lru_cache(maxsize=2)
def _gguf_matrix(path: str, tensor: str) -> np.ndarray:
    """``W[K, N]`` (float32) of a GGUF tensor stored ``[out, in]`` (the last two cached per process)."""
    from gguf.quants import dequantize

    for t in _gguf_reader(path).tensors:
        if t.name == tensor:
            w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
            return np.ascontiguousarray(w.reshape(-1, w.shape[-1]).T)
    raise ValueError(f"{path}: no tensor {tensor!r}")


def plan_gguf(path, *, layers=None, projections=None) -> "tuple[list[GemvSpec], int]":
    """The GEMVs of one decode step of the LLaMA-architecture model in GGUF file ``path``, and its layer count."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--weights: file {str(path)!r} does not exist")
    reader = _gguf_reader(str(path))
    shapes = {t.name: tuple(int(x) for x in t.shape) for t in reader.tensors}   # GGUF order: (in, out)
    n_layers = 1 + max((int(n.split(".")[1]) for n in shapes if n.startswith("blk.")), default=-1)
    if n_layers == 0:
        raise ValueError(f"--weights: {path} has no transformer blocks (blk.N.*)")
    layers = range(n_layers) if layers is None else list(layers)
    projections = list(PROJECTIONS) if projections is None else list(projections)
    specs = []
    for layer in layers:
        if not 0 <= layer < n_layers:
            raise ValueError(f"--layers: layer {layer} is outside [0, {n_layers}) of {path.name}")
    for p in projections:
        if p not in PROJECTIONS:
            raise ValueError(f"--projections: {p!r} is not one of {', '.join(PROJECTIONS)}")
    for layer in layers:
        for p in projections:
            if p != "lm_head":
                name = _GGUF_TENSORS[p].format(layer)
                if name not in shapes:
                    raise ValueError(f"--weights: {path.name} has no tensor {name}")
                K, N = shapes[name][:2]
                specs.append(GemvSpec(layer, p, K, N))
    if "lm_head" in projections:
        K, N = shapes[_gguf_tensor_name(shapes, GemvSpec(None, "lm_head", 0, 0))][:2]
        specs.append(GemvSpec(None, "lm_head", K, N))
    return specs, n_layers


# ---------------------------------------------------------------------------------------------------------
# The worker side


@dataclass(frozen=True)
class FarmSettings:
    """Everything a worker needs besides the task (small: it travels with every task).

    Attributes
    ----------
    config : rtl.params.TileParams
    seed : int
        Seed of the weights, the activations and the stall generators.
    hdl_clock : bool
        Memory-model top with its own clock (faster per cycle; see :func:`tb.simulate.build_tile`).
    idle, backpressure : float
        Stall probabilities per cycle of the inputs and of the result sink.
    weights : str or None
        A GGUF file to read the weights from instead of drawing them.
    scratch : str or None
        Where workers put their simulation directories (default: the system's temporary directory).
    attempts : str or None
        A directory every worker can write (a shared or local file system): a marker per task start.
    keep : bool
        Keep the simulation directories of passing tasks too (failing ones are always kept).
    task_cycles : int
        Target cycles per task (part of the task plan, so of the run's identity).
    persistent_simulator : bool
        Each worker runs its tasks in one simulator that stays up (:class:`tb.simulate.MemServer`)
        instead of a new simulator process per task (not part of the identity: both give the
        same results, cycle for cycle).
    """

    config: object
    seed: int = 0
    hdl_clock: bool = True
    idle: float = 0.0
    backpressure: float = 0.0
    weights: "str | None" = None
    scratch: "str | None" = None
    attempts: "str | None" = None
    keep: bool = False
    task_cycles: int = DEFAULT_TASK_CYCLES
    persistent_simulator: bool = True

    def identity(self) -> dict:
        """What determines the results (a rerun with another identity must not reuse them)."""
        weights = None
        if self.weights is not None:
            stat = Path(self.weights).stat()
            weights = {"path": str(Path(self.weights).resolve()), "bytes": stat.st_size}
        return {"schema": SCHEMA, "tile": self.config.build_record(), "seed": self.seed, "hdl_clock": self.hdl_clock,
                "idle": self.idle, "backpressure": self.backpressure, "weights": weights,
                "panel_weights": PANEL_WEIGHTS, "task_cycles": self.task_cycles, "sources": sources_digest()}

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def sources_digest() -> str:
    """Hash of what a verified result depends on besides the settings: the RTL and golden (the Verilog's
    inputs, :func:`tb.simulate.verilog_inputs_digest`), the testbench (every ``.py``, ``.sv`` and ``.vlt``
    of ``tb/``: the wrapper, the scoreboard, this farm) and the simulator's version.  Part of a run's
    identity: results verified by other sources are stale, never resumed.  Errs on the safe side (an
    edit anywhere in ``tb/`` invalidates them)."""
    from tb.simulate import verilog_inputs_digest
    from tb.toolchain import simulator_name

    digest = hashlib.sha256(f"{verilog_inputs_digest()}\0{simulator_name()}\0".encode())
    here = Path(__file__).resolve().parent
    for path in sorted(p for p in here.iterdir() if p.suffix in (".py", ".sv", ".vlt")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


_TILES: dict = {}
_TILES_LOCK = threading.Lock()


def prepare_worker(settings: FarmSettings, *, serve: bool = False) -> dict:
    """Generate and build the tile once in this process (content-keyed cache); reuse it afterwards.

    ``serve``: also start this process's persistent simulator (:func:`_server`) when the settings use one.
    """
    from tb.simulate import build_tile, rtl_tile

    key = (settings.config, settings.hdl_clock)
    with _TILES_LOCK:
        if key not in _TILES:
            start = time.perf_counter()
            tile = rtl_tile(settings.config)
            built = build_tile(tile, "mem", hdl_clock=settings.hdl_clock)
            _TILES[key] = (tile, {"build_seconds": round(time.perf_counter() - start, 3),
                                  "compiled": not built.cached, "build_key": built.key})
        info = {"worker": _worker_name(), **_TILES[key][1]}
    if serve and settings.persistent_simulator:
        start = time.perf_counter()
        _server(settings)
        info["simulator_start_seconds"] = round(time.perf_counter() - start, 3)
    return info


#: This process's persistent simulators (:class:`tb.simulate.MemServer`), by (tile config, HDL clock).
_SERVERS: dict = {}
_SERVERS_AT_EXIT: list = []     # non-empty once _stop_servers is registered to run at exit
#: A persistent simulator is replaced (its weights file removed) once that file passes this size: every
#: task appends its weights (8 bytes per cycle on a 64-bit bus), the file only grows while a simulator reads it.
SERVER_WEIGHTS_BYTES = 256 << 20


def _scratch(settings: FarmSettings) -> Path:
    return Path(settings.scratch or tempfile.gettempdir()) / "septet-verify"


def _server(settings: FarmSettings):
    """This process's persistent simulator for ``settings`` (started, or restarted when it ended or its weights
    file grew past :data:`SERVER_WEIGHTS_BYTES`)."""
    from tb.simulate import MemServer

    key = (settings.config, settings.hdl_clock)
    server = _SERVERS.get(key)
    if server is not None and (not server.alive or server.weights_path.stat().st_size > SERVER_WEIGHTS_BYTES):
        _stop_server(key)
        server = None
    if server is None:
        root = _scratch(settings)
        _remove_stale_servers(root)
        directory = root / f"server.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        if not _SERVERS_AT_EXIT:
            atexit.register(_stop_servers)
            _SERVERS_AT_EXIT.append(True)
        server = _SERVERS[key] = MemServer(_TILES[key][0], directory, hdl_clock=settings.hdl_clock)
    return server


def _stop_server(key, *, kill: bool = False) -> None:
    server = _SERVERS.pop(key)
    try:
        server.close(kill=kill or not server.alive)
    finally:
        shutil.rmtree(server.directory, ignore_errors=True)


def _stop_servers() -> None:
    """At the worker's exit: every result is delivered, so end the simulators at once (a short teardown)."""
    for key in list(_SERVERS):
        _stop_server(key, kill=True)


def _remove_stale_servers(root: Path) -> None:
    """Remove the directories of this host's persistent simulators whose worker process is gone (a killed
    worker leaves its directory, and its weights file, behind)."""
    host = socket.gethostname()
    for directory in root.glob(f"server.{host}.*"):
        try:
            pid = int(directory.name[len(f"server.{host}."):].split(".")[0])
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            shutil.rmtree(directory, ignore_errors=True)
        except PermissionError:     # another user's live process
            continue


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _task_weights(settings: FarmSettings, spec: GemvSpec, start: int, stop: int) -> np.ndarray:
    if settings.weights is None:
        return panel_weights(settings.seed, spec, start, stop)
    names = {t.name for t in _gguf_reader(settings.weights).tensors}
    return _gguf_matrix(settings.weights, _gguf_tensor_name(names, spec))[:, start:stop]


#: Dask event topic of the workers' live progress (cycles simulated so far in a running task).
PROGRESS_TOPIC = "septet-verify-progress"
_CYCLE_RE = re.compile(r"cycle (\d+)")


def _live_progress(task_id: str):
    """A progress callback for :func:`tb.simulate.simulate` that publishes the running task's cycle count."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except ValueError:   # not on a Dask worker
        return None

    def publish(line: str) -> None:
        match = _CYCLE_RE.search(line)
        if match:
            worker.log_event(PROGRESS_TOPIC, {"task": task_id, "cycles": int(match.group(1))})

    return publish


def run_task(task: Task, settings: FarmSettings) -> dict:
    """Verify one task on this worker and return its record (never raises for a mismatch)."""
    from tb.gemv_data import GemvSet, make_gemv
    from tb.simulate import simulate
    from golden.quantize import quantize

    profile = _Profile()      # one clock for the phases and the totals (reading /proc takes time under load)
    started, cpu_start = profile.now()
    if settings.attempts:
        marker = Path(settings.attempts) / f"{task.task_id}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{_worker_name()}\n")
    prepare_worker(settings)
    tile = _TILES[(settings.config, settings.hdl_clock)][0]
    config = settings.config
    spec = task.gemv
    profile.lap("setup")
    server = _server(settings) if settings.persistent_simulator else None
    profile.lap("simulator_start")
    a = gemv_activations(settings.seed, spec)
    gemvs = []
    for start, stop in task.panels:
        W = _task_weights(settings, spec, start, stop)
        profile.lap("weights")
        qm = quantize(W, config.fmt, arithmetic=config.arithmetic, group_size=config.group_size)
        profile.lap("quantize")
        gemvs.append(make_gemv(qm, a, config, name=f"{spec.name} columns {start}:{stop}"))
        profile.lap("stimulus")
    golden_seconds = time.perf_counter() - started
    test_dir = _scratch(settings) / settings.fingerprint() / f"{task.task_id}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    options = {"seed": settings.seed, "idle": settings.idle, "backpressure": settings.backpressure}
    gemv_set = GemvSet(config, gemvs, options)
    if server is None:
        result = simulate(tile, gemv_set, test_dir, mode="mem", hdl_clock=settings.hdl_clock,
                          check=False, progress=_live_progress(task.task_id))
        outcome = result.outcome
        profile.split_simulation(result.wall_seconds, float(outcome.get("sim_seconds") or 0.0))
    else:
        outcome, process_wall = _serve(server, gemv_set, task)
        profile.split_simulation(process_wall, float(outcome.get("sim_seconds") or 0.0), persistent=True)
        test_dir = server.directory
    starts, ends = outcome.get("starts") or [], outcome.get("ends") or []
    complete = len(starts) == len(ends) == len(gemvs)
    beats_expected = sum(g.n_blocks for g in gemvs)
    mismatches = outcome.get("mismatches")
    passed = bool(outcome.get("passed")) and complete and mismatches == 0
    if mismatches is None or (not passed and mismatches == 0):
        mismatches = beats_expected * config.lanes   # the run died or lost beats: nothing verified
    record = {
        "schema": SCHEMA, "task": task.task_id, "gemv": spec.name, "layer": spec.layer,
        "projection": spec.projection, "K": spec.K, "N": spec.N, "columns": list(task.columns),
        "panels": len(task.panels), "stream_bits": int(sum(g.stream_bits for g in gemvs)),
        "ideal_cycles": int(sum(g.ideal_cycles(config.bus_width) for g in gemvs)),
        "cycles": int(ends[-1] - starts[0] + 1) if complete else 0,
        "panel_cycles": [int(c) for c in outcome.get("cycles") or []],
        "mismatches": int(mismatches), "beats_checked": int(outcome.get("beats_checked") or 0),
        "beats_expected": beats_expected, "passed": passed,
        "golden_seconds": round(golden_seconds, 3), "sim_seconds": float(outcome.get("sim_seconds") or 0.0),
        "task_seconds": None, "cpu_seconds": None,     # set at the end, from the profile's clock
        "worker": _worker_name(),
        "fingerprint": settings.fingerprint(),
    }
    if server is not None and (settings.keep or not passed):
        # The server's directory is the next task's: keep a copy of this set's files (not the shared weights).
        kept = _scratch(settings) / settings.fingerprint() / f"{task.task_id}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        shutil.copytree(test_dir, kept, ignore=lambda d, names: [n for n in names if n.endswith(".fifo")
                                                                  or n == Path(server.weights_path).name])
        test_dir = kept
    if passed and not settings.keep:
        if server is None:
            shutil.rmtree(test_dir, ignore_errors=True)
    else:
        record["report"] = str(outcome.get("report") or "")[:4000]
        record["test_dir"] = str(test_dir)
    profile.lap("cleanup")
    finished, cpu_end = profile.now()
    record["task_seconds"] = round(finished - started, 3)
    record["cpu_seconds"] = round(cpu_end - cpu_start, 3)
    record["profile"] = profile.phases
    record["started_at"], record["finished_at"] = round(profile.epoch_start, 3), round(time.time(), 3)
    return record


def _serve(server, gemv_set, task: Task) -> "tuple[dict, float]":
    """Run ``gemv_set`` in the persistent simulator ``server``: (outcome, wall seconds from request to reply).

    A simulator that ended (a crash, or a set that timed out, which ends it) fails this task
    only; the next task starts a new one.
    """
    from tb.toolchain import SimulationFailed

    offsets = [server.add_weights(g.weights) for g in gemv_set.gemvs]
    try:
        result = server.run(gemv_set, weight_offsets=offsets, progress=_live_progress(task.task_id))
    except SimulationFailed as exc:
        return {"passed": False, "mismatches": None, "cycles": [], "report": str(exc)}, 0.0
    return result.outcome, result.wall_seconds


class _Profile:
    """Wall and CPU seconds per phase of a task, phase after phase (:meth:`lap` closes the current one).

    CPU is this process's (``worker``: golden, files, Python around the simulator, Dask's threads)
    and its children's (``simulator``: finished ones from ``getrusage``, a running persistent
    simulator from ``/proc``, in 10 ms ticks).  The simulator's part is split with its own clock
    into the simulation proper and the rest (:meth:`split_simulation`).
    """

    def __init__(self):
        self.epoch_start = time.time()
        self.phases: dict = {}
        self._mark = (time.perf_counter(), *_cpu_split())

    def now(self) -> "tuple[float, float]":
        """(wall clock, CPU seconds of this process and its children) at the end of the last lap."""
        return self._mark[0], self._mark[1] + self._mark[2]

    def lap(self, name: str) -> None:
        now = (time.perf_counter(), *_cpu_split())
        wall, worker, simulator = (b - a for a, b in zip(self._mark, now))
        phase = self.phases.setdefault(name, {"wall": 0.0, "worker_cpu": 0.0, "simulator_cpu": 0.0})
        phase["wall"] = round(phase["wall"] + wall, 4)
        phase["worker_cpu"] = round(phase["worker_cpu"] + worker, 4)
        phase["simulator_cpu"] = round(phase["simulator_cpu"] + simulator, 4)
        self._mark = now

    def split_simulation(self, process_wall: float, simulation_wall: float, *, persistent: bool = False) -> None:
        """Close the simulation phase: input files, the simulator outside the simulation, the simulation.

        ``process_wall`` is the simulator's part: a whole process (``persistent`` False: start-up,
        imports, reading the set, checking the results, exit) or one request to a persistent
        simulator (reading the set, checking the results).
        """
        self.lap("simulate")
        phase = self.phases.pop("simulate")
        self.phases["input_files"] = {"wall": round(max(0.0, phase["wall"] - process_wall), 4),
                                      "worker_cpu": phase["worker_cpu"], "simulator_cpu": 0.0}
        share = simulation_wall / process_wall if process_wall > 0 else 0.0
        self.phases["simulator_outside_simulation"] = {
            "wall": round(max(0.0, process_wall - simulation_wall), 4), "worker_cpu": 0.0,
            "simulator_cpu": round(phase["simulator_cpu"] * (1 - share), 4), "cpu_split": "by wall share",
            "includes": "reading the set, checking every result beat" if persistent else
                        "process start (Verilator model, Python, imports), reading the set, checking, exit"}
        self.phases["simulation"] = {"wall": round(simulation_wall, 4), "worker_cpu": 0.0,
                                     "simulator_cpu": round(phase["simulator_cpu"] * share, 4),
                                     "cpu_split": "by wall share"}


def _cpu_split() -> "tuple[float, float]":
    """(CPU seconds of this process, of its children: finished ones and running ones such as a persistent simulator)."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time(), children.ru_utime + children.ru_stime + _running_descendants_cpu()


def _running_descendants_cpu() -> float:
    """CPU seconds so far of this process's running descendants (Linux ``/proc``; 0.0 elsewhere)."""
    if not _SERVERS:
        return 0.0     # without a persistent simulator every child is waited for: getrusage has them
    parents: dict = {}
    times: dict = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid = int(stat.parent.name)
        parents.setdefault(int(fields[1]), []).append(pid)
        times[pid] = int(fields[11]) + int(fields[12])   # utime, stime (clock ticks)
    total, todo = 0, list(parents.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0)
        todo.extend(parents.get(pid, []))
    return total / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------------------
# The client side


def write_json_atomic(path: Path, document) -> None:
    """Write ``document`` as JSON over ``path`` through golden's one atomic writer (temporary name, fsync, rename)."""
    from golden.io import atomic_write
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=1) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode()), force=True, param="--out")


def open_client(*, workers: "int | None" = None, scheduler: "str | None" = None, quiet: bool = True):
    """A Dask client: on a new :class:`~distributed.LocalCluster` of ``workers`` single-threaded worker
    processes, or on the existing cluster at ``scheduler``.  Returns ``(client, cluster or None)``.

    ``quiet``: the local cluster runs with :data:`QUIET_CLUSTER_CONFIG` (False: Dask's defaults, for comparison).
    """
    import logging

    from distributed import Client, LocalCluster

    if scheduler is not None:
        if workers is not None:
            raise ValueError("--workers and --scheduler exclude each other (the cluster has its own workers)")
        try:
            return Client(scheduler, timeout="20s"), None
        except OSError as exc:
            raise ValueError(f"--scheduler: cannot reach a Dask scheduler at {scheduler!r} ({exc})") from None
    import dask

    workers = (os.cpu_count() or 1) if workers is None else workers
    check_int("--workers", workers, 1)
    # The nannies and the scheduler live in this process, next to the client; the workers inherit this configuration.
    with dask.config.set(QUIET_CLUSTER_CONFIG if quiet else {}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                               silence_logs=logging.ERROR)
        return Client(cluster), cluster


#: Dask settings of a local cluster: its processes share the cores with the simulators, so they wake less.
#: The defaults (a statistical profiler sampling every worker's threads every 10 ms, event-loop health
#: checks every 20 ms, system and memory monitors every 0.1-0.5 s) cost about 7% of a core for a
#: 2-worker cluster whose tasks wait on a simulator process; these settings cost about 1%
#: (measured with tasks that only sleep; README, "Verify a whole decode step").
QUIET_CLUSTER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
}


def load_results(out: Path, fingerprint: str) -> "dict[str, dict]":
    """The task records in ``out/results`` written with ``fingerprint`` (by task id)."""
    results = {}
    for path in sorted((out / RESULTS_DIR).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue    # never written completely (cannot happen with the atomic writes, but be safe)
        if record.get("fingerprint") == fingerprint:
            results[record["task"]] = record
    return results


def _attempts(out_attempts: "str | None", task_id: str) -> "int | None":
    if not out_attempts:
        return None
    return len(list(Path(out_attempts).glob(f"{task_id}.*")))


def _fmt_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


def check_out_dir(out, settings: FarmSettings, *, set_aside: bool = False) -> "Path | None":
    """Raise ``ValueError`` when ``out`` holds a run made with other settings (results are never mixed).

    ``set_aside``: instead, move that run's files into ``out/other-<its fingerprint>/`` (nothing is
    deleted) and return that directory.
    """
    out = Path(out)
    run_path = out / RUN_FILE
    if run_path.is_file():
        previous = json.loads(run_path.read_text())
        if previous.get("fingerprint") != settings.fingerprint():
            theirs, ours = previous.get("identity") or {}, settings.identity()
            differ = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
            if not set_aside:
                raise ValueError(f"--out {out} holds a run with other settings (differing: {', '.join(differ)}); "
                                 f"choose another --out, remove it, or set it aside with --set-aside")
            aside = out / f"other-{previous.get('fingerprint') or 'unknown'}-{uuid.uuid4().hex[:6]}"
            aside.mkdir()
            for name in (RESULTS_DIR, ATTEMPTS_DIR, SUMMARY_FILE, RUN_FILE):
                if (out / name).exists():
                    (out / name).rename(aside / name)
            return aside
    return None


def verify(client, tasks, settings: FarmSettings, out, *, progress=None, timeout: "float | None" = None,
           on_result=None) -> dict:
    """Run ``tasks`` on ``client``'s cluster; write each record to ``out/results`` as it arrives.

    Tasks whose passing record (same :meth:`FarmSettings.fingerprint`) is already in
    ``out/results`` are skipped.  Returns the summary (also written to ``out/summary.json``).

    Parameters
    ----------
    client : distributed.Client
    tasks : list of Task
    settings : FarmSettings
    out : path-like
        The run's output directory.
    progress : callable(str), optional
        Receives a progress line per finished task and every ~10 s.
    timeout : float, optional
        Seconds after which the run stops and raises :class:`TimeoutError` naming the unfinished tasks.
    on_result : callable(dict), optional
        Called with each new record once it is on disk.
    """
    out = Path(out)
    ids = [t.task_id for t in tasks]
    if len(set(ids)) != len(ids):
        raise ValueError("two tasks have the same id (a GEMV appears twice in the plan)")
    check_out_dir(out, settings)
    out.mkdir(parents=True, exist_ok=True)
    fingerprint = settings.fingerprint()
    write_json_atomic(out / RUN_FILE, {"fingerprint": fingerprint, "identity": settings.identity(), "tasks": ids})
    done = {k: v for k, v in load_results(out, fingerprint).items() if k in set(ids) and v.get("passed")}
    pending = [t for t in tasks if t.task_id not in done]
    say = progress or (lambda line: None)
    if done:
        say(f"resume: {len(done)} of {len(tasks)} tasks already verified in {out}, {len(pending)} to run")
    entered = start = time.perf_counter()
    new: dict = {}
    total_estimate = sum(t.estimated_cycles for t in pending)
    timeline: dict = {}
    if pending:
        # Build the tile on every worker before timing anything (each worker once; the cache is content-keyed).
        workers = _worker_addresses(client)
        preparations = [client.submit(prepare_worker, settings, serve=True, workers=[w], allow_other_workers=True,
                                      pure=False, key=f"prepare-{fingerprint}-{i}") for i, w in enumerate(workers)]
        builds = client.gather(preparations)
        del preparations   # release them: a lost worker must not make the scheduler recompute them
        compiled = [b for b in builds if b["compiled"]]
        say(f"tile ready on {len(workers)} worker(s)" + (f" (compiled in {compiled[0]['build_seconds']:.0f} s)"
                                                         if compiled else " (cached build)"))
        live: dict = {}
        client.subscribe_topic(PROGRESS_TOPIC, lambda event: live.__setitem__(event[1]["task"], event[1]["cycles"]))
        workers_cpu_before = _workers_cpu(client)
        client_cpu_before = _cpu_split()[0]
        start = time.perf_counter()
        timeline["prepare_seconds"] = round(start - entered, 3)
        timeline["run_start_epoch"] = time.time()
        by_key = {}
        for task in pending:
            future = client.submit(run_task, task, settings, key=f"verify-{fingerprint}-{task.task_id}", pure=False)
            by_key[future.key] = (future, task)
        remaining = {f for f, _ in by_key.values()}
        cycles_done = estimate_done = 0
        last_line = time.perf_counter()
        deadline = None if timeout is None else start + timeout
        while remaining:
            wait_for = 10.0 if deadline is None else max(0.1, min(10.0, deadline - time.perf_counter()))
            finished, remaining = _wait_some(remaining, wait_for)
            for future in finished:
                _, task = by_key[future.key]
                try:
                    record = future.result()
                except Exception as exc:  # noqa: BLE001 - a task that could not run is a failed task
                    record = _error_record(task, settings, exc)
                if record.get("fingerprint") != fingerprint:
                    # Verified by other sources than this run's identity (another checkout, or files edited during
                    # the run): not what run.json claims, so not a pass.
                    record.update(passed=False, worker_fingerprint=record.get("fingerprint"), fingerprint=fingerprint,
                                  error=f"the worker ran other sources or settings than the client (fingerprint "
                                        f"{record.get('fingerprint')} vs {fingerprint}): same checkout, unchanged "
                                        f"during the run?")
                record["attempts"] = _attempts(settings.attempts, task.task_id)
                if task.task_id in new:
                    raise RuntimeError(f"task {task.task_id} reported twice")   # cannot happen: one key, one result
                write_json_atomic(out / RESULTS_DIR / f"{task.task_id}.json", record)
                new[task.task_id] = record
                if on_result is not None:
                    on_result(record)
                cycles_done += record["cycles"]
                estimate_done += task.estimated_cycles
                live.pop(task.task_id, None)
            now = time.perf_counter()
            if finished or now - last_line >= 10.0:
                last_line = now
                elapsed = now - start
                running = sum(live.get(by_key[f.key][1].task_id, 0) for f in remaining)
                rate = (cycles_done + running) / elapsed if elapsed > 0 else 0.0
                eta = (total_estimate - estimate_done - running) / rate if rate > 0 else float("inf")
                gemvs_total = len({t.gemv.name for t in tasks})
                gemvs_done = _gemvs_complete(tasks, {**done, **new})
                bad = sum(1 for r in new.values() if not r["passed"])
                say(f"GEMVs {gemvs_done}/{gemvs_total}, tasks {len(done) + len(new)}/{len(tasks)}, "
                    f"{(cycles_done + running) / 1e6:.1f} M cycles in {_fmt_seconds(elapsed)} = {rate / 1e6:.2f} M cycles/s "
                    f"verified, ETA {_fmt_seconds(eta)}" + (f", {bad} FAILED" if bad else ""))
            if deadline is not None and now >= deadline and remaining:
                for f in remaining:
                    f.cancel()
                names = sorted(by_key[f.key][1].task_id for f in remaining)
                raise TimeoutError(f"verify: {len(remaining)} task(s) unfinished after {timeout} s: "
                                   f"{', '.join(names[:8])}")
        timeline["run_end_epoch"] = time.time()
        client_cpu = _cpu_split()[0] - client_cpu_before
        client.unsubscribe_topic(PROGRESS_TOPIC)
        timeline.update(run_profile(list(new.values()), timeline["run_start_epoch"], timeline["run_end_epoch"],
                                    workers_cpu_before, _workers_cpu(client), client_cpu))
    wall = time.perf_counter() - start
    records = {**done, **new}
    summary = summarize([records[t.task_id] for t in tasks if t.task_id in records], settings,
                        run={"wall_seconds": round(wall, 3), "tasks_run": len(new), "tasks_resumed": len(done),
                             "workers": len(_worker_addresses(client)),
                             "load_average": [round(x, 2) for x in os.getloadavg()], "profile": timeline})
    write_json_atomic(out / SUMMARY_FILE, summary)
    return summary


def _process_cpu() -> dict:
    """CPU seconds of this process (all its threads) and of its finished children, and its pid and thread count."""
    own, children = _cpu_split()
    return {"name": _worker_name(), "cpu": own, "children_cpu": children, "threads": threading.active_count()}


def _workers_cpu(client) -> dict:
    """:func:`_process_cpu` of every worker process, by worker address (an empty dict if a worker cannot answer)."""
    try:
        return client.run(_process_cpu)
    except Exception:  # noqa: BLE001 - a profile is not worth failing a run over (e.g. a worker just died)
        return {}


#: Phases of a task (:class:`_Profile`), in the order they run.
TASK_PHASES = ("setup", "simulator_start", "weights", "quantize", "stimulus", "input_files",
               "simulator_outside_simulation", "simulation", "cleanup")


def run_profile(records, run_start: float, run_end: float, workers_before: dict, workers_after: dict,
                client_cpu: float) -> dict:
    """Where the wall time and the CPU time of a run went, from its task records and process CPU counters.

    ``tasks``: wall and CPU seconds per task phase, summed over the tasks.  ``workers``: per worker
    process, its busy time (inside tasks), its idle time between the run's start and end (waiting for
    the scheduler's next task, or for the others to finish: the tail), and the CPU it spent outside
    tasks (Dask's own threads: heartbeats, event loop, monitors).  ``client_cpu_seconds``: this
    process over the run (the client and, for a ``LocalCluster``, the scheduler and the nannies).
    Wall-clock figures of workers use their epoch clock (the same clock on a local cluster).
    """
    phases = {name: {"wall": 0.0, "worker_cpu": 0.0, "simulator_cpu": 0.0} for name in TASK_PHASES}
    for r in records:
        for name, p in (r.get("profile") or {}).items():
            phase = phases.setdefault(name, {"wall": 0.0, "worker_cpu": 0.0, "simulator_cpu": 0.0})
            for k in ("wall", "worker_cpu", "simulator_cpu"):
                phase[k] += p.get(k, 0.0)
    phases = {name: {k: round(v, 3) for k, v in p.items()} for name, p in phases.items()}
    span = run_end - run_start
    per_worker: dict = {}
    for r in records:
        if r.get("started_at") is None:
            continue
        w = per_worker.setdefault(r["worker"], {"tasks": 0, "busy_seconds": 0.0, "first_start": r["started_at"],
                                                "last_finish": r["finished_at"], "task_worker_cpu": 0.0})
        w["tasks"] += 1
        w["busy_seconds"] += r["finished_at"] - r["started_at"]
        w["first_start"] = min(w["first_start"], r["started_at"])
        w["last_finish"] = max(w["last_finish"], r["finished_at"])
        w["task_worker_cpu"] += sum(p.get("worker_cpu", 0.0) for p in (r.get("profile") or {}).values())
    by_pid = {v["name"]: (workers_before.get(a), v) for a, v in workers_after.items()}
    workers = []
    for name, w in sorted(per_worker.items()):
        before, after = by_pid.get(name, (None, None))
        outside = None
        if before and after:
            outside = round(after["cpu"] - before["cpu"] - w["task_worker_cpu"], 3)
        workers.append({"worker": name, "tasks": w["tasks"], "busy_seconds": round(w["busy_seconds"], 3),
                        "start_delay_seconds": round(w["first_start"] - run_start, 3),
                        "idle_between_tasks_seconds": round(w["last_finish"] - w["first_start"] - w["busy_seconds"], 3),
                        "tail_seconds": round(run_end - w["last_finish"], 3),
                        "cpu_outside_tasks_seconds": outside,
                        "threads": after["threads"] if after else None})
    busy = sum(w["busy_seconds"] for w in workers)
    return {"run_seconds": round(span, 3), "tasks": phases, "workers": workers,
            "worker_utilization": round(busy / (span * len(workers)), 4) if workers and span > 0 else None,
            "client_cpu_seconds": round(client_cpu, 3)}


def _worker_addresses(client) -> list:
    """Addresses of every worker."""
    return list(_scheduler_workers(client))


def _scheduler_workers(client) -> dict:
    """The scheduler's information on every worker, by address (``scheduler_info`` lists only 5 unless asked for all)."""
    import inspect

    if "n_workers" in inspect.signature(client.scheduler_info).parameters:
        return client.scheduler_info(n_workers=-1)["workers"]
    return client.scheduler_info()["workers"]


def _wait_some(futures, timeout: float):
    """``(finished, remaining)`` after at most ``timeout`` seconds (``distributed.wait`` raises on a timeout)."""
    from distributed import wait

    try:
        wait(futures, timeout=timeout, return_when="FIRST_COMPLETED")
    except TimeoutError:
        pass
    finished = {f for f in futures if f.done()}
    return finished, set(futures) - finished


def _gemvs_complete(tasks, records) -> int:
    need: dict = {}
    for t in tasks:
        need.setdefault(t.gemv.name, []).append(t.task_id)
    return sum(1 for ids in need.values() if all(i in records for i in ids))


def _error_record(task: Task, settings: FarmSettings, exc: BaseException) -> dict:
    spec = task.gemv
    return {"schema": SCHEMA, "task": task.task_id, "gemv": spec.name, "layer": spec.layer,
            "projection": spec.projection, "K": spec.K, "N": spec.N, "columns": list(task.columns),
            "panels": len(task.panels), "stream_bits": task.stream_bits, "ideal_cycles": task.estimated_cycles,
            "cycles": 0, "panel_cycles": [], "mismatches": 0, "beats_checked": 0,
            "beats_expected": 0, "passed": False, "golden_seconds": 0.0, "sim_seconds": 0.0,
            "task_seconds": 0.0, "worker": None, "fingerprint": settings.fingerprint(),
            "error": f"{type(exc).__name__}: {exc}"[:4000]}


# ---------------------------------------------------------------------------------------------------------
# Summary and projection


def _aggregate(records, bus_width: int) -> dict:
    bits = sum(r["stream_bits"] for r in records)
    cycles = sum(r["cycles"] for r in records)
    ideal = -(-bits // bus_width)
    return {"stream_bits": bits, "ideal_cycles": ideal, "cycles": cycles,
            "efficiency": round(ideal / cycles, 6) if cycles else 0.0,
            "mismatches": sum(r["mismatches"] for r in records),
            "failed_tasks": sum(1 for r in records if not r["passed"]),
            "sim_seconds": round(sum(r["sim_seconds"] for r in records), 3),
            "golden_seconds": round(sum(r["golden_seconds"] for r in records), 3),
            "task_seconds": round(sum(r["task_seconds"] for r in records), 3),
            "cpu_seconds": round(sum(r.get("cpu_seconds") or 0.0 for r in records), 3)}


def summarize(records, settings: FarmSettings, *, run: "dict | None" = None) -> dict:
    """Per GEMV, per projection type and whole-run figures from task records.

    ``simulated_cycles_per_second`` is cycles over the simulator's own time;
    ``verified_cycles_per_core_second`` is cycles over the workers' whole task time
    (golden, files, simulator start, simulation, check): the rate a core verifies at.
    """
    W = settings.config.bus_width
    gemvs: dict = {}
    for r in records:
        gemvs.setdefault(r["gemv"], []).append(r)
    per_gemv = []
    for name, rs in gemvs.items():
        first = rs[0]
        per_gemv.append({"gemv": name, "layer": first["layer"], "projection": first["projection"],
                         "K": first["K"], "N": first["N"], "tasks": len(rs),
                         "columns_verified": sum(r["columns"][1] - r["columns"][0] for r in rs),
                         **_aggregate(rs, W)})
    per_projection = []
    for p in PROJECTIONS:
        rs = [r for r in records if r["projection"] == p]
        if rs:
            n = len({r["gemv"] for r in rs})
            per_projection.append({"projection": p, "gemvs": n, "weights": sum(
                g["K"] * g["N"] for g in per_gemv if g["projection"] == p), **_aggregate(rs, W)})
    total = _aggregate(records, W)
    total.update({"gemvs": len(per_gemv), "tasks": len(records),
                  "weights": sum(g["K"] * g["N"] for g in per_gemv),
                  "incomplete_gemvs": sum(1 for g in per_gemv if g["columns_verified"] != g["N"]),
                  "simulated_cycles_per_second": round(total["cycles"] / total["sim_seconds"]) if total["sim_seconds"] else 0,
                  "verified_cycles_per_core_second": round(total["cycles"] / total["task_seconds"]) if total["task_seconds"] else 0,
                  "retried_tasks": sum(1 for r in records if (r.get("attempts") or 1) > 1)})
    total["task_time_model"] = task_time_model(records)
    total["cpu_time_model"] = cpu_time_model(records)
    if run:
        total.update(run)
        # Aggregate rate of this invocation (all workers together); only meaningful when nothing was resumed.
        if run.get("wall_seconds") and run.get("tasks_run") and not run.get("tasks_resumed"):
            total["run_cycles_per_second"] = round(total["cycles"] / run["wall_seconds"])
    return {"schema": SCHEMA, "identity": settings.identity(), "passed": total["failed_tasks"] == 0
            and total["mismatches"] == 0 and total["incomplete_gemvs"] == 0,
            "total": total, "per_projection": per_projection, "per_gemv": per_gemv}


def task_time_model(records) -> "dict | None":
    """Seconds of a task on one core: ``overhead + golden_per_weight * weights + sim_per_cycle * cycles``.

    The three constants are measured on ``records`` (passing tasks): the simulator's time per
    cycle, golden's time per weight, and the mean of the rest of each task (input files,
    simulator start, result check).  ``max_relative_error`` is the model's worst error on
    those same tasks (an in-sample figure: the model is only as good as the tasks it saw).
    """
    rs = [r for r in records if r["passed"] and r["cycles"] > 0]
    if not rs:
        return None
    weights = [r["K"] * (r["columns"][1] - r["columns"][0]) for r in rs]
    sim_per_cycle = sum(r["sim_seconds"] for r in rs) / sum(r["cycles"] for r in rs)
    golden_per_weight = sum(r["golden_seconds"] for r in rs) / sum(weights)
    overhead = statistics.fmean(max(0.0, r["task_seconds"] - r["sim_seconds"] - r["golden_seconds"]) for r in rs)
    errors = [abs(overhead + golden_per_weight * w + sim_per_cycle * r["cycles"] - r["task_seconds"])
              / r["task_seconds"] for r, w in zip(rs, weights) if r["task_seconds"] > 0]
    return {"overhead_seconds_per_task": round(overhead, 3), "golden_seconds_per_weight": golden_per_weight,
            "sim_seconds_per_cycle": sim_per_cycle, "tasks": len(rs),
            "max_relative_error": round(max(errors), 4) if errors else None}


def cpu_time_model(records) -> "dict | None":
    """CPU seconds of a task (worker process and its simulator): ``a + b * cycles``, least squares on ``records``.

    Less sensitive to a loaded machine than wall time (a task's CPU time does not include the
    time it waited for a core); ``max_relative_error`` is the fit's worst error on those tasks.
    """
    rs = [r for r in records if r["passed"] and r["cycles"] > 0 and r.get("cpu_seconds")]
    if len(rs) < 2 or len({r["cycles"] for r in rs}) < 2:
        return None
    cycles = np.array([r["cycles"] for r in rs], dtype=np.float64)
    cpu = np.array([r["cpu_seconds"] for r in rs], dtype=np.float64)
    (a, b), *_ = np.linalg.lstsq(np.stack([np.ones_like(cycles), cycles], axis=1), cpu, rcond=None)
    a = max(float(a), 0.0)
    b = float(b)
    errors = np.abs(a + b * cycles - cpu) / cpu
    return {"cpu_seconds_per_task": round(a, 3), "cpu_seconds_per_cycle": b, "tasks": len(rs),
            "max_relative_error": round(float(errors.max()), 4)}


def project_step(step_specs, name: str, settings: FarmSettings, summary: dict, cores=(1, 64, 1024)) -> dict:
    """Projected wall time to verify a whole decode step (GEMVs ``step_specs`` of model ``name``) on ``cores`` cores.

    Each task of the step (split as this run splits) costs the measured :func:`task_time_model`
    time, its cycles being golden's ideal cycles times the measured cycles/ideal ratio.
    Assumptions (stated in the result): every core runs at the rate measured here, and tasks
    are spread perfectly with no scheduler overhead, so the wall time on ``c`` cores is
    ``max(total core-seconds / c, longest task)``.
    """
    model = summary["total"].get("task_time_model")
    total = summary["total"]
    ratio = total["cycles"] / total["ideal_cycles"] if total["ideal_cycles"] else 1.0
    tasks = split_tasks(step_specs, settings.config, settings.task_cycles)
    out = {"model": name, "gemvs": len(step_specs), "tasks": len(tasks),
           "weights": sum(s.weights for s in step_specs),
           "cycles": int(sum(t.estimated_cycles for t in tasks) * ratio), "task_time_model": model,
           "assumptions": "every core at the per-task rates measured in this run (on this machine, at its load); "
                          "tasks spread perfectly, no scheduler overhead; cycles = golden's stream bits / W "
                          "x the measured cycles/ideal ratio",
           "wall_seconds": {}}
    if model:
        seconds = [model["overhead_seconds_per_task"]
                   + model["golden_seconds_per_weight"] * t.gemv.K * (t.columns[1] - t.columns[0])
                   + model["sim_seconds_per_cycle"] * t.estimated_cycles * ratio for t in tasks]
        core_seconds = sum(seconds)
        out["core_hours"] = round(core_seconds / 3600, 3)
        out["longest_task_seconds"] = round(max(seconds), 1)
        for c in cores:
            out["wall_seconds"][str(c)] = round(max(core_seconds / c, max(seconds)), 1)
    cpu_model = total.get("cpu_time_model")
    out["cpu_time_model"] = cpu_model
    out["free_cores_wall_seconds"] = {}
    if cpu_model:
        seconds = [cpu_model["cpu_seconds_per_task"] + cpu_model["cpu_seconds_per_cycle"] * t.estimated_cycles * ratio
                   for t in tasks]
        out["free_cores_core_hours"] = round(sum(seconds) / 3600, 3)
        out["free_cores_longest_task_seconds"] = round(max(seconds), 1)
        for c in cores:
            out["free_cores_wall_seconds"][str(c)] = round(max(sum(seconds) / c, max(seconds)), 1)
    return out


def scaling(tasks, settings: FarmSettings, out, worker_counts=(1, 2), *, progress=None, quiet: bool = True) -> dict:
    """Verify the same tasks on a fresh LocalCluster of each size in ``worker_counts``; wall-time ratios.

    The tile is built (or found in the cache) in this process before any clock starts.  Then, per
    size, ``wall_seconds`` is what a user waits for: from asking for the cluster to having it
    closed (cluster start, the tile loaded on every worker, the tasks, the summary, teardown),
    for the same work (the same tasks, each size in its own output directory ``out/workers-N``,
    emptied first).  ``efficiency[n] = T(first) * first / (n * T(n))``.  The components are
    reported beside it, and a calibration: the same CPU-bound loop run by 1 and by n concurrent
    processes of this session just before the run, so that a loaded machine shows as such.
    """
    out = Path(out)
    say = progress or (lambda line: None)
    prepare_worker(settings)
    runs = []
    for n in worker_counts:
        directory = out / f"workers-{n}"
        shutil.rmtree(directory, ignore_errors=True)
        machine = machine_parallelism(n)
        say(f"scaling: {n} worker(s), load average {os.getloadavg()[0]:.1f}, this session gets {machine['parallelism']:.2f} "
            f"core(s) for {n} CPU-bound process(es)")
        load_before = os.getloadavg()
        asked = time.perf_counter()
        client, cluster = open_client(workers=n, quiet=quiet)
        try:
            started = time.perf_counter()
            info = client.run(_process_cpu)
            threads = sorted({w["nthreads"] for w in _scheduler_workers(client).values()})
            summary = verify(client, tasks, dataclasses.replace(settings, attempts=None), directory,
                             progress=lambda line, n=n: say(f"[{n} worker(s)] {line}"))
            finished = time.perf_counter()
        finally:
            client.close()
            cluster.close()
        closed = time.perf_counter()
        results = load_results(directory, settings.fingerprint())
        cpu = [(results.get(t.task_id) or {}).get("cpu_seconds") or 0.0 for t in tasks]
        total = summary["total"]
        runs.append({"workers": n, "wall_seconds": round(closed - asked, 3),
                     "components": {"cluster_start_seconds": round(started - asked, 3),
                                    "prepare_seconds": total["profile"].get("prepare_seconds"),
                                    "run_seconds": total["wall_seconds"],
                                    "summary_seconds": round(finished - started - total["wall_seconds"]
                                                             - (total["profile"].get("prepare_seconds") or 0.0), 3),
                                    "teardown_seconds": round(closed - finished, 3)},
                     "worker_processes": sorted({v["name"] for v in info.values()}),
                     "threads_per_worker": threads,
                     "profile": total["profile"], "machine": machine,
                     "cpu_seconds": round(sum(cpu), 3), "free_cores_makespan_seconds": round(_greedy_makespan(cpu, n), 3),
                     "cycles": total["cycles"], "mismatches": total["mismatches"],
                     "passed": summary["passed"], "load_average_before": [round(x, 2) for x in load_before],
                     "load_average_after": [round(x, 2) for x in os.getloadavg()]})
    base = runs[0]
    for r in runs:
        r["speedup"] = round(base["wall_seconds"] / r["wall_seconds"], 4)
        r["efficiency"] = round(base["wall_seconds"] * base["workers"] / (r["workers"] * r["wall_seconds"]), 4)
        # The tasks alone (no cluster start or teardown): where the farm's own overhead shows.
        base_run, run = base["components"]["run_seconds"], r["components"]["run_seconds"]
        r["run_efficiency"] = round(base_run * base["workers"] / (r["workers"] * run), 4) if run else None
        # Against what the machine gave this session at the time (the calibration loop's parallelism).
        gain = r["machine"]["parallelism"] / base["machine"]["parallelism"]
        r["efficiency_against_machine"] = round(r["speedup"] / gain, 4) if gain > 0 else None
        # Load-robust view: CPU per run (does a worker more cost CPU?) and the efficiency the measured per-task
        # CPU times would give on free cores, scheduled longest first as the farm submits them.
        r["cpu_ratio"] = round(r["cpu_seconds"] / base["cpu_seconds"], 4) if base["cpu_seconds"] else None
        base_time = base["free_cores_makespan_seconds"] * base["workers"]
        r["estimated_efficiency_on_free_cores"] = round(
            base_time / (r["workers"] * r["free_cores_makespan_seconds"]), 4) if r["free_cores_makespan_seconds"] else None
    return {"definition": SCALING_DEFINITION, "runs": runs, "cpus": os.cpu_count(), "sched_autogroup": _autogroup(),
            "persistent_simulator": settings.persistent_simulator, "dask_config": QUIET_CLUSTER_CONFIG if quiet else
            "Dask's defaults"}


#: What ``efficiency`` means in the scaling report (written into it).
SCALING_DEFINITION = (
    "efficiency(n) = T(first) * first / (n * T(n)), T = wall seconds a user waits for the same tasks: from asking "
    "for a LocalCluster of n single-threaded worker processes to having it closed (cluster start, tile load per "
    "worker, tasks, summary, teardown; the Verilator build is made before any clock starts). run_efficiency: the "
    "same ratio over the tasks alone. efficiency_against_machine: speedup / the parallelism this session got for "
    "n CPU-bound processes just before the run (a calibration loop, not the farm).")


def machine_parallelism(n: int, seconds: float = 0.5) -> dict:
    """How many cores this session gets for ``n`` concurrent CPU-bound processes, now.

    Runs a fixed pure-Python loop (about ``seconds`` on a free core) alone, then in ``n`` processes
    at once; ``parallelism = n * T(alone) / max T(together)`` (1.0 when ``n`` is 1).  A calibration of
    the machine's load, not of the farm.
    """
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=n, mp_context=context) as pool:
        list(pool.map(_spin, [0] * n))          # start the processes outside the timing
        iterations = max(1, int(seconds / max(1e-6, pool.submit(_spin, 200_000).result()) * 200_000))
        alone = pool.submit(_spin, iterations).result()
        together = max(pool.map(_spin, [iterations] * n)) if n > 1 else alone
    return {"processes": n, "alone_seconds": round(alone, 3), "together_seconds": round(together, 3),
            "parallelism": round(n * alone / together, 3) if together > 0 else 0.0}


def _spin(iterations: int) -> float:
    """Wall seconds of ``iterations`` of a fixed integer loop (the calibration's unit of work)."""
    start = time.perf_counter()
    x = 0
    for i in range(iterations):
        x = (x * 1_103_515_245 + i) & 0xFFFFFFFF
    return time.perf_counter() - start


def _greedy_makespan(seconds, workers: int) -> float:
    """Finish time of ``seconds`` (in submission order) on ``workers`` free cores, each task to the first free one."""
    import heapq

    free = [0.0] * workers
    for t in seconds:
        heapq.heappush(free, heapq.heappop(free) + t)
    return max(free)


def _autogroup() -> "bool | None":
    """Linux autogroup on: under contention all processes of one session share one session's CPU share."""
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return None
