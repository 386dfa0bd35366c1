"""The fast ("mem") testbench: a SystemVerilog top (``septet_mem_tb.sv``) that feeds the tile from files.

Per-cycle Python driving through cocotb tops out near 45 k cycles/s; a full
8192 x 8192 GEMV is 3.7 M cycles.  So in this mode the bulk data never
crosses into Python during the run: the wrapper ``septet_mem_tb``

* reads the GEMVs' weight words, activation pairs and requantization beats
  from text files in the test directory (``$fscanf``, one beat per line, hex),
  keeping one GEMV's activations in a memory it replays for every column block;
* presents them on the tile's AXI-Stream inputs with LFSR-driven idle cycles
  (AXI rules: valid never waits on ready, a beat stays put until taken);
* takes ``m_axis_result`` with LFSR-driven backpressure and ``$fwrite``s every
  result beat and, per GEMV, the cycle of its first accepted weight word and
  of its tlast result beat;
* raises ``done`` when every GEMV's results are out (or ``timed_out`` too
  when a cycle limit passes).

Python (:mod:`tb.tile_mem`) drives the clock through cocotb's C++ clock
(or the wrapper makes its own, ``always #5`` built with ``--timing``, so no
clock edge passes through cocotb: faster per cycle, slower to build), sleeps
until ``done``, then checks the result file against golden with the same
scoreboard as the axis mode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from golden.format import byte_count
from rtl.params import TileParams
from tb.gemv_data import GemvSet, port_widths

__all__ = ["HALF_PERIOD_NS", "MEM_BUILD_ARGS", "MEM_TB", "MEM_TB_WAIVERS", "wrapper_build_args", "write_inputs",
           "stall_threshold", "read_results", "FILES", "LFSR_BITS"]

#: File names in the test directory.
FILES = {"meta": "mem_meta.txt", "weights": "mem_weights.hex", "act": "mem_act.hex",
         "params": "mem_params.hex", "results": "mem_results.hex", "cycles": "mem_cycles.txt"}
#: A stall happens when the low LFSR_BITS bits of a source's LFSR fall below its threshold.
LFSR_BITS = 16

#: The memory-model top (static SystemVerilog, set up by :func:`wrapper_build_args`) and its lint waivers.
MEM_TB = Path(__file__).with_name("septet_mem_tb.sv")
MEM_TB_WAIVERS = Path(__file__).with_name("mem_tb_waivers.vlt")


def _padded(bits: int) -> int:
    return 8 * byte_count(bits)


#: Half a clock period in the wrapper's own clock (timescale 1ns/1ps: a 10 ns clock).
HALF_PERIOD_NS = 5
#: Verilator arguments of a wrapper that makes its own clock: timing support (C++20 coroutines).
MEM_BUILD_ARGS = ("--timing", "-CFLAGS", "-std=c++20")


def wrapper_build_args(tile, *, hdl_clock: bool = False) -> tuple:
    """Verilator arguments that set :data:`MEM_TB` up for ``tile`` (a :class:`tb.simulate.Tile`).

    The tdata widths (checked against the RTL's port map), the activation memory's depth,
    the stall LFSR width and the file names as ``-G`` parameters; requantization and the
    HDL clock as defines (they change port lists).  With ``hdl_clock`` the top makes its own
    clock (``always #HALF_PERIOD_NS``; Verilator's ``--timing``) and exposes it as an output,
    so no clock edge passes through cocotb; otherwise cocotb drives the ``clk`` input.
    """
    config: TileParams = tile.config
    widths = {name: _padded(bits) for name, bits in port_widths(config).items()}
    for name, bits in widths.items():
        published = tile.port_map.get(name)
        if published is not None and published["padded_width"] != bits:
            raise ValueError(f"port {name} is {published['padded_width']} bits in the RTL's port map, "
                             f"the testbench expects {bits}")
    params = {"WB": widths["s_axis_weights__tdata"], "PB": widths.get("s_axis_params__tdata", 8),
              "RB": widths["m_axis_result__tdata"], "ACT_DEPTH": max(1, (config.max_k + 1) // 2),
              "LFSR_BITS": LFSR_BITS, "HALF_PERIOD_NS": HALF_PERIOD_NS}
    names = {"META_FILE": "meta", "WEIGHTS_FILE": "weights", "ACT_FILE": "act", "PARAMS_FILE": "params",
             "RESULTS_FILE": "results", "CYCLES_FILE": "cycles"}
    args = [f"-G{name}={value}" for name, value in params.items()]
    args += [f'-G{name}="{FILES[key]}"' for name, key in names.items()]
    if config.requant:
        args.append("+define+SEPTET_REQUANT")
    if hdl_clock:
        args += ["+define+SEPTET_HDL_CLOCK", *MEM_BUILD_ARGS]
    return tuple(args)


def stall_threshold(probability: float) -> int:
    """LFSR threshold giving a stall with ``probability`` per cycle."""
    return int(round(probability * (1 << LFSR_BITS)))


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _hex_lines(beats: np.ndarray) -> bytes:
    """uint8 (n, nbytes) little-endian beats -> one hex line per beat (most significant digit first)."""
    beats = np.asarray(beats, dtype=np.uint8)[:, ::-1]
    n, nbytes = beats.shape
    out = np.empty((n, 2 * nbytes + 1), dtype=np.uint8)
    out[:, 0:-1:2] = _HEX[beats >> 4]
    out[:, 1:-1:2] = _HEX[beats & 15]
    out[:, -1] = ord("\n")
    return out.tobytes()


def write_inputs(directory, gemv_set: GemvSet, *, max_cycles: "int | None" = None) -> None:
    """Write the wrapper's input files for ``gemv_set`` into ``directory``.

    Options used from ``gemv_set.options``: ``idle``, ``backpressure`` (stall
    probabilities), ``seed``, ``timeout_cycles``.
    """
    config = gemv_set.config
    if "reset_at" in gemv_set.options:
        raise ValueError("reset_at is supported in axis mode only")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    opts = gemv_set.options
    for g in gemv_set.gemvs:
        if g.pairs > (config.max_k + 1) // 2:
            raise ValueError(f"K must be <= max_k {config.max_k} for the memory model, got {g.K}")
    ideal = sum(g.ideal_cycles(config.bus_width) for g in gemv_set.gemvs)
    if max_cycles is None:
        max_cycles = int(opts.get("timeout_cycles", 0)) or 50 * ideal + 10_000
    head = (f"{len(gemv_set.gemvs)} {stall_threshold(float(opts.get('idle', 0.0)))} "
            f"{stall_threshold(float(opts.get('backpressure', 0.0)))} {int(opts.get('seed', 0)) & 0x7FFFFFFF} "
            f"{min(max_cycles, 2**31 - 1)}\n")
    meta = head + "".join(f"{len(g.weights)} {g.pairs} {g.n_blocks}\n" for g in gemv_set.gemvs)
    (directory / FILES["meta"]).write_text(meta)
    pad = byte_count(config.bus_width)
    with open(directory / FILES["weights"], "wb") as handle:
        for g in gemv_set.gemvs:
            handle.write(_hex_lines(g.weights[:, :pad]))
    with open(directory / FILES["act"], "wb") as handle:
        for g in gemv_set.gemvs:
            handle.write(_hex_lines(g.act))
    if config.requant:
        with open(directory / FILES["params"], "wb") as handle:
            for g in gemv_set.gemvs:
                handle.write(_hex_lines(g.params))
    for name in ("results", "cycles"):
        (directory / FILES[name]).unlink(missing_ok=True)


def read_results(directory, config: TileParams):
    """The result beats and cycle marks the wrapper wrote.

    Returns
    -------
    beats : uint8 (n, beat bytes)
    lasts : list of int
    starts, ends : list of int
        Per GEMV: cycle of the first accepted weight word, of the tlast result beat.
    timed_out : bool
    """
    directory = Path(directory)
    nbytes = byte_count(config.lanes * config.out_bits)
    beats, lasts = [], []
    path = directory / FILES["results"]
    if path.is_file():
        for line in path.read_text().split("\n"):
            if line.strip():
                data, last = line.split()
                beats.append(np.frombuffer(int(data, 16).to_bytes(nbytes, "little"), dtype=np.uint8))
                lasts.append(int(last))
    starts, ends, timed_out = {}, {}, False
    path = directory / FILES["cycles"]
    if path.is_file():
        for line in path.read_text().split("\n"):
            if not line.strip():
                continue
            kind, gemv, cycle = line.split()
            if kind == "start":
                starts[int(gemv)] = int(cycle)
            elif kind == "end":
                ends[int(gemv)] = int(cycle)
            else:
                timed_out = True
    beats = np.stack(beats) if beats else np.zeros((0, nbytes), dtype=np.uint8)
    n = min(len(starts), len(ends))
    return beats, lasts, [starts[i] for i in range(n)], [ends[i] for i in range(n)], timed_out
