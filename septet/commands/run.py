"""``septet run``: the main job on its built-in default.

Verilog for the 3.5-bit (4+3) and INT4 (4+4) tiles on the same bus, one GEMV
of a LLaMA-70B-shaped matrix (``k_proj``: K = 8192, N = 1024) on each under
Verilator, every result checked bit for bit against golden, the cycles
recorded in a measurements JSON (:mod:`tb.measurement`) and compared with
the pair-bit ratio 7/8.  Exits 1 when a result mismatches.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: LLaMA-70B's k_proj (and v_proj): W[hidden 8192, kv heads 8 x head 128].
DEFAULT_K, DEFAULT_N = 8192, 1024
FORMATS = ("4+3", "4+4")


def add_arguments(p):
    p.add_argument("--lanes", type=int, default=16, help="lanes L; default 16")
    p.add_argument("--bus-width", type=int, default=64, help="bus width W in bits; default 64")
    p.add_argument("--arithmetic", default="own", choices=("own", "shared"), help="own grids or shared grid")
    p.add_argument("--k", type=int, default=DEFAULT_K, help=f"K of the GEMV; default {DEFAULT_K} (LLaMA-70B hidden)")
    p.add_argument("--n", type=int, default=DEFAULT_N,
                   help=f"N of the GEMV; default {DEFAULT_N} (LLaMA-70B k_proj / v_proj)")
    p.add_argument("--seed", type=int, default=0, help="seed of the Gaussian weights and the activations")
    p.add_argument("--out", default="build/run", metavar="DIR",
                   help="directory of the runs and measurements.json; default build/run")


def run(args):
    from tb.gemv_data import TileConfig, random_gemv
    from tb.measurement import write_measurements
    from tb.simulate import measure, rtl_tile

    from septet.commands.sim import _comparisons

    out = Path(args.out)
    command = "septet run" + ("" if len(sys.argv) < 3 else " " + " ".join(sys.argv[2:]))
    records, failed = [], False
    for fmt in FORMATS:
        config = TileConfig(fmt=fmt, arithmetic=args.arithmetic, lanes=args.lanes, bus_width=args.bus_width)
        tile = rtl_tile(config)
        print(f"[{fmt}] Verilog: {tile.sources[0]} (ports and cycle constants: {tile.info})")
        gemv = random_gemv(config, args.k, args.n, seed=args.seed, name=f"LLaMA-70B-shaped {args.k}x{args.n}")
        print(f"[{fmt}] simulating K={args.k} N={args.n}: {gemv.stream_bits} stream bits, "
              f"{gemv.ideal_cycles(config.bus_width)} bus words ...", flush=True)
        record, result = measure(tile, gemv, out / "sim" / fmt.replace("+", "p"), mode="mem", hdl_clock=True,
                                 seed=args.seed, command=command,
                                 progress=lambda line: print(f"  ... {line}", file=sys.stderr, flush=True))
        records.append(record)
        verdict = "bit-exact" if result.passed else f"FAILED ({record['mismatches']} mismatches)"
        failed |= not result.passed
        print(f"[{fmt}] {verdict}: {record['cycles']} cycles, ideal {record['ideal_cycles']}, "
              f"bus efficiency {record['bus_efficiency']:.5f} (simulated in {result.wall_seconds:.1f} s)")
    comparisons = _comparisons(records)
    path = write_measurements(out / "measurements.json", records, comparisons)
    for c in comparisons:
        print(f"3.5-bit / INT4 cycles on the same {args.bus_width}-bit bus: {c['cycle_ratio']:.5f} "
              f"(pair bits {c['pair_bits_ratio']} = {7 / 8:.5f}); 3.5-bit is "
              f"{1 / c['cycle_ratio'] - 1:+.1%} faster per GEMV, the bandwidth-bound ceiling")
    print(f"measurements: {path}")
    if failed:
        return 1
    from sim.report import verdict

    print()
    print(verdict(path))
    return 0
