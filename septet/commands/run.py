"""``septet run``: the main job on its built-in default.

Verilog for the two tiles the verdict compares, on the same bus and with
groups of 128 (the configuration the verdict reasons about): 3.5-bit (4+3,
own grids) and INT4 (4+4, one scale and zero per group). One GEMV of a
LLaMA-70B-shaped matrix (``k_proj``: K = 8192, N = 1024) on each under
Verilator, every result checked bit for bit against golden, the cycles
recorded in a measurements JSON (:mod:`tb.measurement`) and compared with the
ratio of their stored bits (group headers included); then the verdict through
the calibrated throughput model, from these measurements. Exits 1 when a
result mismatches.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: LLaMA-70B's k_proj (and v_proj): W[hidden 8192, kv heads 8 x head 128].
DEFAULT_K, DEFAULT_N = 8192, 1024
#: (format, arithmetic) of the verdict's pair: 3.5-bit own grids, INT4 with one scale and zero per group.
FORMATS = (("4+3", "own"), ("4+4", "shared"))
DEFAULT_GROUP_SIZE = 128


def _group_size(text):
    if text.lower() in ("none", "column", "per-column"):
        return None
    try:
        g = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--group-size must be an even integer >= 2 or 'none', got {text!r}") from None
    if g < 2 or g % 2:
        raise argparse.ArgumentTypeError(f"--group-size must be an even integer >= 2 or 'none', got {text!r}")
    return g


def add_arguments(p):
    p.add_argument("--lanes", type=int, default=16, help="lanes L; default 16")
    p.add_argument("--bus-width", type=int, default=64, help="bus width W in bits; default 64")
    p.add_argument("--int4-arithmetic", default="shared", choices=("own", "shared"),
                   help="arithmetic of the INT4 baseline; default shared (one scale and zero per group, the usual "
                        "INT4); 4+3 always uses its own grids")
    p.add_argument("--group-size", type=_group_size, default=DEFAULT_GROUP_SIZE,
                   help=f"group size along K (even), or 'none' for per column; default {DEFAULT_GROUP_SIZE}")
    p.add_argument("--k", type=int, default=DEFAULT_K, help=f"K of the GEMV; default {DEFAULT_K} (LLaMA-70B hidden)")
    p.add_argument("--n", type=int, default=DEFAULT_N,
                   help=f"N of the GEMV; default {DEFAULT_N} (LLaMA-70B k_proj / v_proj)")
    p.add_argument("--seed", type=int, default=0, help="seed of the Gaussian weights and the activations")
    p.add_argument("--out", default="build/run", metavar="DIR",
                   help="directory of the runs and measurements.json; default build/run")


def run(args):
    from rtl.params import TileParams
    from septet.commands.sim import simulate_formats
    from tb.measurement import comparisons, write_measurements

    out = Path(args.out)
    command = "septet run" + ("" if len(sys.argv) < 3 else " " + " ".join(sys.argv[2:]))
    configs = [TileParams(fmt=fmt, arithmetic=args.int4_arithmetic if fmt == "4+4" else arithmetic,
                          lanes=args.lanes, bus_width=args.bus_width, group_size=args.group_size)
               for fmt, arithmetic in FORMATS]
    records, failed = simulate_formats(configs, args.k, args.n, out / "sim", name=f"LLaMA-70B-shaped {args.k}x{args.n}",
                                       mode="mem", hdl_clock=True, seed=args.seed, command=command)
    (comparison,) = comparisons(records)
    path = write_measurements(out / "measurements.json", records, [comparison])
    print(f"3.5-bit / INT4 cycles on the same {args.bus_width}-bit bus: {comparison['cycle_ratio']:.5f} "
          f"(stored bits, headers included: {comparison['stream_bits_ratio']:.5f}; code bits alone 7/8 = 0.87500); "
          f"3.5-bit is {1 / comparison['cycle_ratio'] - 1:+.1%} faster per GEMV, the bandwidth-bound ceiling")
    print(f"measurements: {path}")
    if failed:
        return 1
    from sim.report import verdict

    print()
    print(verdict(path))
    return 0
