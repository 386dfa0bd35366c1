"""Benchmark: quantize + pack and unpack + dequantize of one LLaMA-70B FFN projection.

Runs septet's golden path and the ``gguf`` package's NumPy Q4_0 quantizer on the
same float32 matrix, side by side in one run, and reports per-weight times,
their ratio and peak memory (tracemalloc, NumPy allocations) against the input
size.  Not a test: machines are shared and noisy; read the ratios.

    python -m golden.bench [--k 8192] [--n 28672] [--format 4+3] [--group-size 128]
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import tracemalloc

import numpy as np


def _measure(fn):
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    result = fn()
    dt = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, dt, peak


def main(argv=None) -> int:
    import gguf

    from golden.pack import pack, unpack
    from golden.quantize import quantize

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, default=8192, help="rows (reduction dim), default 8192")
    p.add_argument("--n", type=int, default=28672, help="columns, default 28672 (LLaMA-70B FFN)")
    p.add_argument("--format", default="4+3")
    p.add_argument("--group-size", type=int, default=128)
    p.add_argument("--lanes", type=int, default=16)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.k < 32 or args.k % 32 or args.n < 1:
        p.error(f"--k must be a positive multiple of 32 (Q4_0 blocks), got {args.k}; --n >= 1")

    rng = np.random.default_rng(0)
    W = rng.standard_normal((args.k, args.n), dtype=np.float32) * 0.02
    nweights = W.size
    in_bytes = W.nbytes

    # gguf quantizes rows of 32 consecutive values: give it the K dimension as rows' contiguous axis.
    Wt = np.ascontiguousarray(W.T)
    q4, t_q4, m_q4 = _measure(lambda: gguf.quants.quantize(Wt, gguf.GGMLQuantizationType.Q4_0))
    _, t_dq4, m_dq4 = _measure(lambda: gguf.quants.dequantize(q4, gguf.GGMLQuantizationType.Q4_0))
    del q4, Wt

    ps, t_qp, m_qp = _measure(lambda: pack(quantize(W, args.format, group_size=args.group_size), args.lanes))
    _, t_ud, m_ud = _measure(lambda: unpack(ps).dequantize(np.float32))

    rows = [
        ("septet quantize+pack", t_qp, m_qp), ("gguf Q4_0 quantize", t_q4, m_q4),
        ("septet unpack+dequantize", t_ud, m_ud), ("gguf Q4_0 dequantize", t_dq4, m_dq4),
    ]
    result = {
        "matrix": [args.k, args.n], "format": args.format, "group_size": args.group_size, "lanes": args.lanes,
        "input_bytes": in_bytes,
        "runs": {name: {"seconds": t, "ns_per_weight": t / nweights * 1e9, "peak_bytes": m,
                        "peak_over_input": m / in_bytes} for name, t, m in rows},
        "ratio_quantize_septet_over_gguf": t_qp / t_q4,
        "ratio_dequantize_septet_over_gguf": t_ud / t_dq4,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"W[{args.k}, {args.n}] float32 ({in_bytes / 2**20:.0f} MiB), septet {args.format} group "
          f"{args.group_size}, {args.lanes} lanes; gguf {gguf.__name__} Q4_0; peak = tracemalloc of NumPy allocations")
    for name, t, m in rows:
        print(f"  {name:26s} {t:7.2f} s  {t / nweights * 1e9:6.1f} ns/weight  peak {m / in_bytes:4.2f}x input")
    print(f"  ratio quantize   septet/gguf = {result['ratio_quantize_septet_over_gguf']:.2f} (< 1: septet faster)")
    print(f"  ratio dequantize septet/gguf = {result['ratio_dequantize_septet_over_gguf']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
