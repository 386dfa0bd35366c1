"""``septet sim``: simulate the tile under Verilator against the golden oracle and record its cycles.

Builds the tile's Verilog (cached), runs one GEMV per format, checks every
result bit for bit, prints a summary and writes a measurements JSON
(schema in :mod:`tb.measurement`).  Exits 1 when any result mismatched or
a simulation failed.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from septet.cli import SeptetError
from septet.commands.verilog import add_tile_arguments


def add_arguments(p):
    add_tile_arguments(p, format_metavar="E+O[,E+O...]",
                       format_help="slot widths, or a comma list to compare formats on the same bus "
                                   "(e.g. 4+3,4+4); default 4+3")
    p.add_argument("--k", type=int, default=4096, help="reduction dimension K of the GEMV; default 4096")
    p.add_argument("--n", type=int, default=64, help="output columns N of the GEMV; default 64")
    p.add_argument("--weights", metavar="W.npy", help="weight matrix [K, N] (float) instead of Gaussian weights")
    p.add_argument("--backpressure", type=float, default=0.0, metavar="P",
                   help="probability per cycle that the result sink is not ready; default 0")
    p.add_argument("--idle", type=float, default=0.0, metavar="P",
                   help="probability per cycle that each input holds back its next beat; default 0")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and of the stall generators")
    p.add_argument("--mode", choices=("mem", "axis"), default="mem",
                   help="mem: SystemVerilog memory model feeds the tile (fast, default); "
                        "axis: cocotbext-axi drives every beat from Python")
    p.add_argument("--hdl-clock", action="store_true",
                   help="mem mode: the memory-model top makes its own clock (about 1.4x faster per cycle, "
                        "slower to build); for multi-million-cycle GEMVs")
    p.add_argument("--waves", nargs="?", const="auto", choices=("auto", "vcd", "fst"), default=None,
                   help="write a waveform (VCD; FST when liblz4's headers are installed) into the run directory")
    p.add_argument("--json", action="store_true",
                   help="print the measurements JSON to stdout (the summary then goes to stderr)")
    p.add_argument("--out", metavar="DIR", help="run directory (default build/sim/runs/<configuration>)")


def _command(argv) -> str:
    return "septet sim" + ("" if not argv else " " + shlex.join(argv))


def _load_weights(path):
    from golden.io import load_array

    W = load_array(path, "--weights")
    if W.ndim != 2:
        raise SeptetError(f"--weights must be a 2-D array [K, N], got shape {W.shape}")
    return W


def simulate_formats(configs, K, N, out, *, weights=None, name=None, mode="mem", idle=0.0, backpressure=0.0,
                     seed=0, waves=None, hdl_clock=False, command="", summary=None):
    """Simulate one GEMV on each tile of ``configs`` and check it against golden: the loop of ``septet sim`` and ``run``.

    Each tile's Verilog is generated and built (both cached), the GEMV's data
    drawn from ``seed`` (Gaussian weights unless ``weights`` is given), every
    result compared bit for bit, and one line per tile printed to ``summary``
    (progress goes to stderr).  The run directory of each tile is
    ``out/<format>`` (``4p3`` for ``4+3``).

    Parameters
    ----------
    configs : sequence of rtl.params.TileParams
    K, N : int
        Shape of the GEMV (``weights``' shape when it is given).
    out : Path
    weights : float array (K, N), optional
    name : str, optional
        What the GEMV is, for mismatch reports.
    mode, idle, backpressure, seed, waves, hdl_clock, command
        As :func:`tb.simulate.measure`.
    summary : file, optional
        Where the per-tile lines go; default stdout.

    Returns
    -------
    records : list of dict
        One measurement record per tile (:func:`tb.measurement.run_record`).
    failed : list of str
        The labels of the tiles whose results did not all match.
    """
    from tb.gemv_data import random_gemv
    from tb.measurement import run_label
    from tb.simulate import measure, rtl_tile

    summary = sys.stdout if summary is None else summary
    records, failed = [], []

    def progress(line):
        print(f"  ... {line}", file=sys.stderr, flush=True)

    for config in configs:
        if K > config.max_k:
            raise SeptetError(f"--k must be <= --max-k {config.max_k}, got {K}")
        label = run_label(config.build_record())
        print(f"{label}: generating Verilog and building (cached after the first time) ...", file=sys.stderr)
        tile = rtl_tile(config)
        gemv = random_gemv(config, K, N, seed=seed, weights=weights, name=name)
        print(f"{label}: Verilog {tile.sources[0]} (ports and cycle constants: {tile.info}); simulating K={K} N={N}: "
              f"{gemv.stream_bits} stream bits, {gemv.ideal_cycles(config.bus_width)} bus words ...",
              file=sys.stderr, flush=True)
        run_dir = out / config.fmt.name.replace("+", "p")
        record, result = measure(tile, gemv, run_dir, mode=mode, idle=idle, backpressure=backpressure, seed=seed,
                                 waves=waves, hdl_clock=hdl_clock, progress=progress, command=command)
        records.append(record)
        status = "PASS" if result.passed else "FAIL"
        print(f"{status} {label} L={config.lanes} W={config.bus_width} K={K} N={N} ({mode}): "
              f"{record['cycles']} cycles, ideal {record['ideal_cycles']} (stream {record['stream_bits']} bits), "
              f"latency {record['latency_cycles']}, bus efficiency {record['bus_efficiency']:.5f}, "
              f"{record['mismatches']} mismatches; simulated in {result.wall_seconds:.1f} s"
              + (f", build {result.build.seconds:.1f} s" if not result.build.cached else ""), file=summary)
        if result.waves:
            print(f"  waves: {result.waves}", file=summary)
        if not result.passed:
            failed.append(label)
            print(result.outcome.get("report", ""), file=sys.stderr)
            print(f"  logs: {run_dir}", file=sys.stderr)
    return records, failed


def run(args):
    from golden.format import parse_format
    from rtl.params import TileParams
    from tb import toolchain
    from tb.measurement import comparisons as measurement_comparisons
    from tb.measurement import write_measurements
    from tb.stalls import validate_probability

    formats = [parse_format(f).name for f in args.format.split(",") if f.strip()]
    if not formats:
        raise SeptetError("--format must name at least one format")
    validate_probability("backpressure", args.backpressure)
    validate_probability("idle", args.idle)
    if args.hdl_clock and args.mode != "mem":
        raise SeptetError("--hdl-clock needs --mode mem")
    weights = _load_weights(args.weights) if args.weights else None
    if weights is not None:
        K, N = weights.shape
    else:
        for name, value in (("k", args.k), ("n", args.n)):
            if value < 1:
                raise SeptetError(f"--{name} must be an integer >= 1, got {value}")
        K, N = args.k, args.n
    waves = None
    if args.waves:
        waves = ("fst" if toolchain.fst_available() else "vcd") if args.waves == "auto" else args.waves
        if waves == "fst" and not toolchain.fst_available():
            raise SeptetError("--waves fst needs liblz4's headers (lz4.h); use --waves vcd")
    label = f"{'_'.join(formats)}-{args.arithmetic}-L{args.lanes}-W{args.bus_width}-K{K}-N{N}-{args.mode}"
    out = Path(args.out) if args.out else toolchain.BUILD_ROOT / "runs" / label.replace("+", "p")
    command = _command(sys.argv[2:] if len(sys.argv) > 1 and sys.argv[1] == "sim" else [])
    # With --json, stdout carries only the JSON document; the summary goes to stderr.
    summary = sys.stderr if args.json else sys.stdout
    configs = [TileParams(fmt=fmt, arithmetic=args.arithmetic, lanes=args.lanes, bus_width=args.bus_width,
                          group_size=args.group_size, acc_width=args.acc_width, max_k=args.max_k,
                          requant=args.requant) for fmt in formats]
    records, failed = simulate_formats(configs, K, N, out, weights=weights, mode=args.mode, idle=args.idle,
                                       backpressure=args.backpressure, seed=args.seed, waves=waves,
                                       hdl_clock=args.hdl_clock, command=command, summary=summary)
    comparisons = measurement_comparisons(records)
    for c in comparisons:
        print(f"cycle ratio {c['formats'][0]}/{c['formats'][1]} = {c['cycle_ratio']:.6f} "
              f"(pair bits {c['pair_bits_ratio']}, ideal {c['ideal_cycle_ratio']:.6f}; "
              f"{100 * c['deviation_from_pair_bits_ratio']:+.3f}% from the pair-bits ratio)", file=summary)
    path = write_measurements(out / "measurements.json", records, comparisons)
    print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(json.loads(path.read_text()), indent=1))
    return 1 if failed else 0
