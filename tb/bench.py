"""Speed of verification: simulated tile cycles per second, and one full LLaMA-70B q_proj GEMV verified.

Run ``python -m tb.bench`` (a benchmark, not a test: figures depend on the
machine and its load).  It measures, on the default tile (4+3, own grids,
16 lanes, W = 64):

* axis mode (cocotbext-axi drives every beat from Python): cycles per second;
* mem mode (the SystemVerilog memory model, Python waits for ``done``), with
  cocotb's clock and with the wrapper's own: cycles per second, and the wall
  time to verify one 8192 x 8192 GEMV bit for bit (wrapper's clock), split into
  golden (quantize, pack, oracle), simulation and the rest (input files,
  simulator start, result check).

Writes ``build/bench/tb_bench.json`` beside the printed table.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from tb import toolchain
from rtl.params import TileParams
from tb.gemv_data import GemvSet, random_gemv
from tb.simulate import rtl_tile, simulate

DEFAULT_TILE = TileParams(fmt="4+3", lanes=16, bus_width=64)


def _run(tile, gemv, directory, mode, hdl_clock=False):
    start = time.perf_counter()
    result = simulate(tile, GemvSet(tile.config, [gemv], {"seed": 0}), directory, mode=mode, hdl_clock=hdl_clock)
    wall = time.perf_counter() - start
    cycles = result.outcome["cycles"][0]
    sim = result.outcome["sim_seconds"]
    return {"mode": mode, "hdl_clock": hdl_clock, "k": gemv.K, "n": gemv.N, "cycles": cycles, "sim_seconds": sim,
            "cycles_per_second": round(cycles / sim), "simulate_wall_seconds": round(wall, 3),
            "build_seconds": round(result.build.seconds, 3), "mismatches": result.outcome["mismatches"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tb.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=8192, help="K of the full GEMV (default 8192)")
    parser.add_argument("--n", type=int, default=8192, help="N of the full GEMV (default 8192)")
    parser.add_argument("--axis-k", type=int, default=4096, help="K of the axis-mode GEMV (default 4096)")
    parser.add_argument("--axis-n", type=int, default=64, help="N of the axis-mode GEMV (default 64)")
    parser.add_argument("--cocotb-clock", action="store_true",
                        help="run the full GEMV with cocotb's clock instead of the wrapper's own")
    parser.add_argument("--out", default=str(toolchain.PROJECT_ROOT / "build" / "bench"), help="output directory")
    args = parser.parse_args(argv)
    out = Path(args.out)
    tile = rtl_tile(DEFAULT_TILE)
    # Build both tops first so that no timing below includes a compile.
    small = random_gemv(DEFAULT_TILE, 64, DEFAULT_TILE.lanes, seed=1)
    for mode, hdl_clock in (("axis", False), ("mem", False), ("mem", True)):
        simulate(tile, GemvSet(DEFAULT_TILE, [small]), out / f"warmup_{mode}_{hdl_clock}", mode=mode,
                 hdl_clock=hdl_clock)

    axis_gemv = random_gemv(DEFAULT_TILE, args.axis_k, args.axis_n, seed=2)
    axis = _run(tile, axis_gemv, out / "axis", "axis")
    mem_small = _run(tile, axis_gemv, out / "mem_small", "mem")
    mem_small_hdl = _run(tile, axis_gemv, out / "mem_small_hdl_clock", "mem", hdl_clock=True)

    start = time.perf_counter()
    full_gemv = random_gemv(DEFAULT_TILE, args.k, args.n, seed=3, name=f"q_proj {args.k}x{args.n}")
    golden_seconds = time.perf_counter() - start
    full = _run(tile, full_gemv, out / "mem_full", "mem", hdl_clock=not args.cocotb_clock)
    total = golden_seconds + full["simulate_wall_seconds"]
    full.update({"golden_seconds": round(golden_seconds, 3), "verify_total_seconds": round(total, 3),
                 "other_seconds": round(full["simulate_wall_seconds"] - full["sim_seconds"], 3)})
    record = {"tile": DEFAULT_TILE.as_dict(), "simulator": toolchain.simulator_name(), "cpus": os.cpu_count(),
              "load_average": os.getloadavg(), "axis": axis, "mem_small": mem_small, "mem_small_hdl_clock": mem_small_hdl, "mem_full": full}
    out.mkdir(parents=True, exist_ok=True)
    (out / "tb_bench.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"tile {DEFAULT_TILE.fmt} L={DEFAULT_TILE.lanes} W={DEFAULT_TILE.bus_width}, {toolchain.simulator_name()}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for name, r in (("axis (Python drives every beat)", axis), ("mem  (HDL memory model, cocotb clock)", mem_small),
                    ("mem  (HDL memory model, HDL clock)", mem_small_hdl)):
        print(f"  {name}: K={r['k']} N={r['n']}: {r['cycles']} cycles in {r['sim_seconds']:.2f} s "
              f"= {r['cycles_per_second'] / 1e3:.0f} k cycles/s")
    print(f"  full GEMV {args.k} x {args.n} (mem, {'HDL' if full['hdl_clock'] else 'cocotb'} clock): {full['cycles']} cycles, {full['mismatches']} mismatches; "
          f"verified in {total:.1f} s = golden {golden_seconds:.1f} s + simulation {full['sim_seconds']:.1f} s "
          f"({full['cycles_per_second'] / 1e3:.0f} k cycles/s) + files/start/check {full['other_seconds']:.1f} s")
    print(f"wrote {out / 'tb_bench.json'}")
    return 0 if full["mismatches"] == 0 and axis["mismatches"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
