"""A language model's GEMVs in the Verilated tile, checked bit for bit as they run.

:class:`golden.quality.intpath.Decoder` records every GEMV of a decode step
(the layer, its INT8 input, golden's integer result).  :class:`TileRunner` runs
the GEMVs of a step in the tile through the memory-model testbench in
``workers`` simulators that stay up for the whole run
(:class:`tb.simulate.MemServer`, the wrapper's own clock), independent GEMVs
of a step in parallel, and returns the tile's own results, read back from the
result file:

* the tile is built once (the build cache is keyed on the Verilog's content);
* each matrix is packed once (:func:`golden.pack.pack`) and its bus words go
  once into a weights file all simulators read (binary, ``$fread``); a step
  writes only its activations, its expected results and a line per GEMV;
* the simulators start once per run, not once per step: a step costs its
  simulation and a few milliseconds of files;
* the scoreboard checks every result beat against golden's result in the
  simulator; the runner additionally returns the tile's values, so the caller can
  compute the text from them (:class:`ReplayLinear`).

Why a step's GEMVs can run together: within a step each GEMV's input depends
on earlier results, so the inputs come from golden's integer path, run first.
The text is then recomputed by a second decoder whose every linear returns the
tile's result (:class:`ReplayLinear`) and which asserts that each layer input it
forms equals the one the tile was given: the tile's results alone produce the
text, and it equals golden's because every result matched.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golden.checks import check_int
from rtl.params import TileParams
from tb.gemv_data import GemvSet, bytes_to_lanes, make_gemv

__all__ = ["TileRunner", "StepResult", "ReplayLinear", "split_balanced", "bench"]

#: Files copied from a simulator's directory per step and worker with ``keep``.
_KEPT = ("mem_meta.txt", "mem_act.bin", "mem_results.hex", "mem_cycles.txt", "outcome.json", "gemvs.json",
         "gemvs.npz")


def split_balanced(sizes, parts: int) -> "list[list[int]]":
    """Indices of ``sizes`` in ``parts`` groups of nearly equal total (greedy, largest first); order kept."""
    parts = check_int("parts", parts, 1)
    loads = [0] * parts
    groups: list = [[] for _ in range(parts)]
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        j = loads.index(min(loads))
        groups[j].append(i)
        loads[j] += sizes[i]
    return [sorted(g) for g in groups if g]


def _tile_results(test_dir, config, gemvs) -> list:
    """The tile's result of each GEMV (int64 (N,), ``None`` when missing), read back from the result file."""
    from tb.mem_wrapper import read_results

    beats, _, _, _, _ = read_results(test_dir, config)
    values = bytes_to_lanes(beats, config.lanes, config.out_bits, signed=True) if len(beats) else None
    ys, b0 = [], 0
    for g in gemvs:
        if values is None or b0 + g.n_blocks > len(values):
            ys.append(None)
        else:
            ys.append(np.asarray(values[b0:b0 + g.n_blocks], dtype=np.int64).reshape(-1)[: g.N])
        b0 += g.n_blocks
    return ys


@dataclass
class StepResult:
    """One decode step's GEMVs in the tile.

    Attributes
    ----------
    names : list of str
        The GEMVs in the order the decoder ran them.
    ys : list of int64 arrays
        The tile's result of each (read back from the simulation).
    cycles : list of int
        Tile cycles of each GEMV (first weight word to last result beat).
    passed : bool
        Every result beat matched golden (the scoreboard) and the run ended normally.
    report : str
    sim_seconds : float
        Sum over workers of the simulator's time.
    """

    names: list
    ys: list
    cycles: list
    passed: bool
    report: str
    sim_seconds: float


class TileRunner:
    """Runs decode steps' GEMVs in the Verilated tile.

    Parameters
    ----------
    config : TileParams
        The tile (format, arithmetic and group size must match the matrices).
    linears : dict name -> golden.quality.intpath.TileLinear
    out_dir : path-like
        The simulators' directories (``sim0``, ``sim1`` ...) and, with ``keep``, one per step and worker.
    workers : int
        Simulators running a step's GEMVs in parallel.
    keep : bool
        Keep every step's input and result files (``stepNNN/wW``) and the weights file.
    """

    def __init__(self, config: TileParams, linears: dict, out_dir, *, workers: int = 2, keep: bool = False):
        from tb.simulate import MemServer, build_tile, rtl_tile

        check_int("workers", workers, 1)
        self.config = config
        self.linears = linears
        self.out_dir = Path(out_dir)
        self.workers = workers
        self.keep = keep
        self.tile = rtl_tile(config)
        start = time.perf_counter()
        self.build = build_tile(self.tile, "mem", hdl_clock=True)
        self.build_seconds = time.perf_counter() - start
        self._packed: dict = {}
        self._offsets: dict = {}
        self._lock = threading.Lock()
        self._queues: list = []
        self.servers: list = []
        start = time.perf_counter()
        try:
            for w in range(workers):
                bank = self.servers[0].weights_path if self.servers else None
                self.servers.append(MemServer(self.tile, self.out_dir / f"sim{w}", hdl_clock=True, weights=bank))
        except BaseException:
            self.close(kill=True)
            raise
        self.start_seconds = time.perf_counter() - start
        # One thread per simulator: its sets run in the order submitted.
        self._queues = [concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"sim{w}")
                        for w in range(workers)]

    def close(self, *, kill: bool = False) -> None:
        """Stop the simulators; ``kill`` stops running simulations first."""
        for queue in self._queues:
            queue.shutdown(wait=False, cancel_futures=True)
        for server in self.servers:
            server.close(kill=kill)
        for queue in self._queues:
            queue.shutdown(wait=True)
        if not self.keep and self.servers:
            self.servers[0].weights_path.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(kill=exc_type is not None)

    def packed(self, name: str):
        """The packed stream of matrix ``name`` for this tile (packed once)."""
        from golden.pack import pack

        if name not in self._packed:
            self._packed[name] = pack(self.linears[name].qm, lanes=self.config.lanes)
        return self._packed[name]

    def gemvs(self, step: int, records) -> list:
        """The bus payloads of a step's GEMVs; expected results are golden's (``record.y``)."""
        return [make_gemv(self.linears[r.name].qm, r.a, self.config, name=f"step {step} {r.name}",
                          packed=self.packed(r.name), y=r.y) for r in records]

    def _offset(self, name: str, gemv) -> int:
        """Where matrix ``name``'s words start in the simulators' weights file (written on first use)."""
        with self._lock:
            if name not in self._offsets:
                self._offsets[name] = self.servers[0].add_weights(gemv.weights)
            return self._offsets[name]

    def _run_on(self, w: int, step: int, gemvs: list, offsets: list) -> dict:
        """Thread of simulator ``w``: run one step's share; the outcome and the tile's results per GEMV."""
        server = self.servers[w]
        result = server.run(GemvSet(self.config, gemvs, {}), weight_offsets=offsets)
        ys = _tile_results(server.directory, self.config, gemvs)
        if self.keep:
            kept = self.out_dir / f"step{step:03d}" / f"w{w}"
            kept.mkdir(parents=True, exist_ok=True)
            for name in _KEPT:
                if (server.directory / name).is_file():
                    shutil.copy2(server.directory / name, kept / name)
        return {"passed": result.passed, "mismatches": result.outcome.get("mismatches"),
                "cycles": list(result.outcome.get("cycles") or []), "report": result.outcome.get("report", ""),
                "sim_seconds": result.outcome.get("sim_seconds"), "wall_seconds": result.wall_seconds, "ys": ys}

    def submit(self, step: int, records) -> "tuple[list, list, list]":
        """Queue a step's GEMVs; returns ``(futures, index groups, simulator dirs)`` for :meth:`collect`."""
        gemvs = self.gemvs(step, records)
        offsets = [self._offset(r.name, g) for r, g in zip(records, gemvs)]
        # The words are in the weights file: a queued step holds only its activations and expected results.
        gemvs = [dataclasses.replace(g, weights=g.weights[:0]) for g in gemvs]
        groups = split_balanced([g.stream_bits for g in gemvs], self.workers)
        futures, dirs = [], []
        for w, idx in enumerate(groups):
            dirs.append(self.servers[w].directory)
            futures.append(self._queues[w].submit(self._run_on, w, step, [gemvs[i] for i in idx],
                                                  [offsets[i] for i in idx]))
        return futures, groups, dirs

    @staticmethod
    def collect(records, futures, groups) -> StepResult:
        """Wait for a submitted step; the tile's results in the decoder's order."""
        n = len(records)
        ys, cycles = [None] * n, [0] * n
        passed, reports, sim = True, [], 0.0
        for fut, idx in zip(futures, groups):
            part = fut.result()
            passed &= bool(part["passed"]) and len(part["cycles"]) == len(idx)
            if part["report"] and not part["passed"]:
                reports.append(part["report"])
            sim += float(part["sim_seconds"] or 0.0)
            for j, i in enumerate(idx):
                ys[i] = part["ys"][j]
                cycles[i] = part["cycles"][j] if j < len(part["cycles"]) else 0
        return StepResult([r.name for r in records], ys, cycles, passed, "\n".join(reports), sim)




class ReplayLinear:
    """A linear layer whose output is the tile's result for the input the tile was given.

    ``x @ replay`` quantizes ``x`` per token as the tile's driver does, asserts the
    INT8 codes equal those of the next queued GEMV of this layer, and returns that
    GEMV's tile result scaled back to real values (``y * s_a * 2**-e``).
    """

    __array_ufunc__ = None

    def __init__(self, tile_linear, name: str):
        self.name = name
        self.qm = tile_linear.qm
        self._unit = np.exp2(-self.qm.exp.astype(np.float64))
        self.queue: list = []

    def __rmatmul__(self, X):
        from golden.quality.intpath import quantize_rows

        X = np.asarray(X)
        X2 = X.reshape(-1, X.shape[-1])
        if X2.shape[0] != 1:
            raise ValueError(f"{self.name}: the replay runs one token at a time")
        A, s_a = quantize_rows(X2)
        if not self.queue:
            raise AssertionError(f"{self.name}: no tile result queued for this GEMV")
        a_sent, y_tile = self.queue.pop(0)
        if not np.array_equal(A[0], a_sent):
            raise AssertionError(f"{self.name}: the layer input formed from the tile's results differs from the "
                                 f"one the tile ran")
        out = (np.asarray(y_tile, dtype=np.float64)[None] * s_a[:, None] * self._unit[None]).astype(np.float32)
        return out.reshape(*X.shape[:-1], self.qm.N)


def bench(shapes=((16, 64), (32, 128), (64, 256)), *, K: int = 576, N: int = 1536, n_gemv: int = 8,
          out_dir="build/llm-bench", log=print) -> list:
    """Simulation time of the same weights on tiles of several (lanes, bus width), side by side.

    ``n_gemv`` random GEMVs of ``K x N`` (SmolLM2's gate/up shape), 4+3 own grids, groups of
    128, memory-model mode with the wrapper's clock; builds are cached by content.
    """
    from tb.gemv_data import random_gemv
    from tb.simulate import build_tile, rtl_tile, simulate

    rows = []
    for lanes, bus in shapes:
        config = TileParams(fmt="4+3", lanes=lanes, bus_width=bus, group_size=128)
        tile = rtl_tile(config)
        build_tile(tile, "mem", hdl_clock=True)
        gemvs = [random_gemv(config, K, N, seed=i) for i in range(n_gemv)]
        result = simulate(tile, GemvSet(config, gemvs, {}), Path(out_dir) / f"L{lanes}_W{bus}", mode="mem",
                          hdl_clock=True)
        cycles = sum(result.outcome["cycles"])
        row = {"lanes": lanes, "bus_width": bus, "cycles": cycles, "sim_seconds": result.outcome["sim_seconds"],
               "process_seconds": round(result.wall_seconds, 2)}
        rows.append(row)
        log(f"{lanes:4d} lanes, {bus:4d}-bit bus: {cycles:9,} cycles, {row['sim_seconds']:.2f} s simulated "
            f"({cycles / row['sim_seconds'] / 1e3:.0f} k cycles/s), {row['process_seconds']:.2f} s with start-up")
    return rows


if __name__ == "__main__":
    bench()
