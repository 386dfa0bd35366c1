"""The fast ("mem") testbench: a SystemVerilog top (``septet_mem_tb.sv``) that feeds the tile from files.

Per-cycle Python driving through cocotb tops out near 45 k cycles/s; a full
8192 x 8192 GEMV is 3.7 M cycles.  So in this mode the bulk data never
crosses into Python during the run: the wrapper ``septet_mem_tb``

* reads a set of GEMVs from the simulator's directory: the set's description
  (``mem_meta.txt``: per GEMV its weight words, where they start in the weights
  file, its activation pairs and column blocks) and binary beat files (weight
  words, activation pairs, requantization beats; whole bytes per beat, most
  significant byte first, read with ``$fread``), keeping one GEMV's activations
  in a memory it replays for every column block;
* presents them on the tile's AXI-Stream inputs with LFSR-driven idle cycles
  (AXI rules: valid never waits on ready, a beat stays put until taken);
* takes ``m_axis_result`` with LFSR-driven backpressure and ``$fwrite``s every
  result beat and, per GEMV, the cycle of its first accepted weight word and
  of its tlast result beat;
* raises ``done`` when every GEMV's results are out (or ``timed_out`` too
  when a cycle limit passes).

The top serves sets one after another (``request`` / ``served`` ports): a
simulator can stay up and run many sets (:class:`tb.simulate.MemServer`), and
since each GEMV names where its words start in the weights file, a file of
many matrices' words (a bank, :func:`append_weights`, written once) serves
every set that uses them: a set then writes only its activations.

Python (:mod:`tb.tile_mem`) drives the clock through cocotb's C++ clock
(or the wrapper makes its own, ``always #5`` built with ``--timing``, so no
clock edge passes through cocotb: faster per cycle, slower to build), sleeps
until ``done``, then checks the result file against golden with the same
scoreboard as the axis mode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from golden.format import byte_count, padded_width
from rtl.params import TileParams
from tb.gemv_data import GemvSet, port_widths

__all__ = ["HALF_PERIOD_NS", "MEM_BUILD_ARGS", "MEM_TB", "MEM_TB_WAIVERS", "wrapper_build_args", "write_inputs",
           "append_weights", "beat_file_bytes", "stall_threshold", "read_results", "FILES", "LFSR_BITS",
           "MAX_WEIGHTS_FILE_BYTES"]

#: File names in the test directory.
FILES = {"meta": "mem_meta.txt", "weights": "mem_weights.bin", "act": "mem_act.bin",
         "params": "mem_params.bin", "results": "mem_results.hex", "cycles": "mem_cycles.txt"}
#: The wrapper seeks in the weights file with a 32-bit signed byte offset.
MAX_WEIGHTS_FILE_BYTES = (1 << 31) - 1
#: A stall happens when the low LFSR_BITS bits of a source's LFSR fall below its threshold.
LFSR_BITS = 16

#: The memory-model top (static SystemVerilog, set up by :func:`wrapper_build_args`) and its lint waivers.
MEM_TB = Path(__file__).with_name("septet_mem_tb.sv")
MEM_TB_WAIVERS = Path(__file__).with_name("mem_tb_waivers.vlt")


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
    widths = {name: padded_width(bits) for name, bits in port_widths(config).items()}
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


def beat_file_bytes(beats: np.ndarray) -> bytes:
    """uint8 (n, nbytes) little-endian beats -> the bytes of a beat file (each beat most significant byte first,
    the order ``$fread`` fills a variable in)."""
    beats = np.asarray(beats, dtype=np.uint8)
    if beats.ndim != 2:
        raise ValueError(f"beats must be a 2-D uint8 array (beats, bytes), got shape {beats.shape}")
    return np.ascontiguousarray(beats[:, ::-1]).tobytes()


def append_weights(path, words: np.ndarray) -> int:
    """Append weight words (uint8 (n, byte_count(W))) to the weights file ``path``; return the word index
    where they start (the offset a set's GEMV names, see :func:`write_inputs`).

    The file only grows (a simulator reading earlier words is not disturbed); it must stay below
    :data:`MAX_WEIGHTS_FILE_BYTES`.
    """
    words = np.asarray(words, dtype=np.uint8)
    path = Path(path)
    size = path.stat().st_size if path.exists() else 0
    if size % words.shape[1]:
        raise ValueError(f"{path} holds {size} bytes, not whole words of {words.shape[1]} bytes")
    if size + words.size > MAX_WEIGHTS_FILE_BYTES:
        raise ValueError(f"the weights file {path} would exceed {MAX_WEIGHTS_FILE_BYTES} bytes (the wrapper's "
                         f"32-bit seek)")
    with open(path, "ab") as handle:
        handle.write(beat_file_bytes(words))
    return size // words.shape[1]


def write_inputs(directory, gemv_set: GemvSet, *, max_cycles: "int | None" = None,
                 weight_offsets=None) -> None:
    """Write the wrapper's input files for ``gemv_set`` into ``directory``.

    Options used from ``gemv_set.options``: ``idle``, ``backpressure`` (stall
    probabilities), ``seed``, ``timeout_cycles``.

    ``weight_offsets``: per GEMV, the word where its weights start in the weights file
    already in ``directory`` (written with :func:`append_weights`); the GEMVs' own
    ``weights`` are then not written (they may be empty).  ``None``: the weights file is
    rewritten with the GEMVs' words back to back.
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
    pad = byte_count(config.bus_width)
    n_words = [g.ideal_cycles(config.bus_width) if weight_offsets is not None else len(g.weights)
               for g in gemv_set.gemvs]
    if weight_offsets is None:
        offsets = np.concatenate([[0], np.cumsum(n_words)[:-1]]).astype(int).tolist()
    else:
        offsets = [int(o) for o in weight_offsets]
        if len(offsets) != len(gemv_set.gemvs) or min(offsets) < 0:
            raise ValueError(f"weight_offsets must give one word index >= 0 per GEMV ({len(gemv_set.gemvs)}), "
                             f"got {weight_offsets!r}")
        bank = directory / FILES["weights"]
        words_in_bank = bank.stat().st_size // pad if bank.exists() else 0
        for g, o, n in zip(gemv_set.gemvs, offsets, n_words):
            if len(g.weights) not in (0, n):
                raise ValueError(f"{g.name}: {len(g.weights)} weight words, its stream needs {n}")
            if o + n > words_in_bank:
                raise ValueError(f"{g.name}: words [{o}, {o + n}) are beyond the weights file's {words_in_bank}")
    if (offsets[-1] + n_words[-1]) * pad > MAX_WEIGHTS_FILE_BYTES:
        raise ValueError(f"the weights exceed {MAX_WEIGHTS_FILE_BYTES} bytes (the wrapper's 32-bit seek)")
    head = (f"{len(gemv_set.gemvs)} {stall_threshold(float(opts.get('idle', 0.0)))} "
            f"{stall_threshold(float(opts.get('backpressure', 0.0)))} {int(opts.get('seed', 0)) & 0x7FFFFFFF} "
            f"{min(max_cycles, 2**31 - 1)}\n")
    meta = head + "".join(f"{n} {o} {g.pairs} {g.n_blocks}\n"
                          for g, n, o in zip(gemv_set.gemvs, n_words, offsets))
    for name in ("results", "cycles"):
        (directory / FILES[name]).unlink(missing_ok=True)
    if weight_offsets is None:
        with open(directory / FILES["weights"], "wb") as handle:
            for g in gemv_set.gemvs:
                handle.write(beat_file_bytes(g.weights[:, :pad]))
    with open(directory / FILES["act"], "wb") as handle:
        for g in gemv_set.gemvs:
            handle.write(beat_file_bytes(g.act))
    if config.requant:
        with open(directory / FILES["params"], "wb") as handle:
            for g in gemv_set.gemvs:
                handle.write(beat_file_bytes(g.params))
    (directory / FILES["meta"]).write_text(meta)


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
