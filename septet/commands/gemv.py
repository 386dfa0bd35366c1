"""``septet gemv``: the bit-exact integer oracle on a packed file."""

import numpy as np

from golden.io import load_packed
from golden.oracle import gemv_int, requant_params, requantize
from golden.quantize import quantize_activations
from septet.cli import SeptetError
from septet.commands.quantize import _load_npy


def add_arguments(p):
    p.add_argument("--packed", required=True, metavar="F.npz", help="file written by 'septet quantize'")
    p.add_argument("--activations", required=True, metavar="X.npy",
                   help="activation vector [K]: int8 codes are used as they are, floats are "
                        "quantized to INT8 (symmetric, per tensor)")
    p.add_argument("--requant-scale", type=float, default=None, metavar="S_OUT",
                   help="also requantize to INT8 outputs of this scale")
    p.add_argument("--out", metavar="Y.npy", help="write the integer result (int64, or int8 with --requant-scale)")


def run(args):
    qm, _ = load_packed(args.packed)
    x = _load_npy(args.activations, "activations")
    if x.dtype == np.int8:
        a, s_a = x, 1.0
    else:
        a, s_a = quantize_activations(x)
    y = gemv_int(qm, a)
    real = y * s_a * np.exp2(-qm.exp.astype(np.float64))
    print(f"GEMV {qm.fmt.name} K={qm.K} N={qm.N}: activation scale {s_a:.6g}")
    print(f"  integer result y (int64): min {y.min()}, max {y.max()}")
    print(f"  real result y * s_a * 2**-exp: first {np.array2string(real[:4], precision=5)}")
    result = y
    if args.requant_scale is not None:
        if not (np.isfinite(args.requant_scale) and args.requant_scale > 0):
            raise SeptetError(f"--requant-scale must be a finite positive number, got {args.requant_scale}")
        M, sh = requant_params(qm, s_a, args.requant_scale)
        result = requantize(y, M, sh)
        print(f"  requantized INT8: first {result[:8].tolist()}")
    if args.out:
        np.save(args.out, result)
        print(f"  wrote {args.out}")
    return 0
