"""Measure the tile's cycles per GEMV in Amaranth simulation and compare with the formula.

``python -m rtl.cycles --format 4+3 --format 4+4 --lanes 16 --bus-width 64 --k 4096 --n 64``
prints, per format, the stream bits, ``ceil(bits / W)``, the measured cycles (every stream
always valid/ready, results checked against golden), the latency and the bus efficiency.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from rtl.params import TileParams
from rtl.simutil import check, cycles_one_gemv, make_job

__all__ = ["measure", "main"]


def measure(*, K: int, N: int, seed: int = 0, **params) -> dict:
    """One GEMV of random data through the tile; its bits, cycles and efficiency."""
    p = TileParams(**params)
    job = make_job(p, np.random.default_rng(seed), K=K, N=N)
    cycles, beats = cycles_one_gemv(p, job)
    check([job], [beats])
    ideal = -(-job["nbits"] // p.bus_width)
    return {"format": p.fmt.name, "stream_bits": job["nbits"], "ideal_cycles": ideal, "cycles": cycles,
            "latency": cycles - ideal, "fixed_latency": p.fixed_latency, "bus_efficiency": ideal / cycles}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtl.cycles", description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", action="append", dest="formats", help="repeatable; default 4+3 and 4+4")
    parser.add_argument("--arithmetic", default="own", choices=("own", "shared"))
    parser.add_argument("--lanes", type=int, default=16)
    parser.add_argument("--bus-width", type=int, default=64)
    parser.add_argument("--group-size", type=lambda t: None if t == "none" else int(t), default=None)
    parser.add_argument("--k", type=int, default=512)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = [measure(K=args.k, N=args.n, seed=args.seed, fmt=fmt, arithmetic=args.arithmetic, lanes=args.lanes,
                    bus_width=args.bus_width, group_size=args.group_size)
            for fmt in (args.formats or ["4+3", "4+4"])]
    print(f"K={args.k} N={args.n} lanes={args.lanes} W={args.bus_width} group_size={args.group_size} "
          f"({args.arithmetic}); results checked against golden")
    print(f"{'format':>6} {'bits':>10} {'ceil(bits/W)':>13} {'cycles':>8} {'latency':>8} {'efficiency':>10}")
    for r in rows:
        print(f"{r['format']:>6} {r['stream_bits']:>10} {r['ideal_cycles']:>13} {r['cycles']:>8} "
              f"{r['latency']:>8} {r['bus_efficiency']:>10.6f}")
    if len(rows) > 1:
        print(f"cycle ratio {rows[0]['format']} / {rows[1]['format']}: {rows[0]['cycles'] / rows[1]['cycles']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
