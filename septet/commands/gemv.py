"""``septet gemv``: the bit-exact integer oracle on a packed file."""

import numpy as np

from golden.format import ACT_MAX, ACT_MIN
from golden.io import check_output_path, load_array, load_packed, save_array, save_arrays
from golden.oracle import gemv_int, requant_params, requantize
from golden.quantize import ACT_REAL_MAX, ACT_REAL_MIN, quantize_activations
from septet.cli import SeptetError
from septet.commands.quantize import naming_parameters


def add_arguments(p):
    p.add_argument("--packed", required=True, metavar="F.npz", help="file written by 'septet quantize'")
    p.add_argument("--activations", required=True, metavar="X.npy",
                   help=f"activation vector [K]: integer arrays (any integer dtype) are INT8 codes used as they "
                        f"are and must lie in [{ACT_MIN}, {ACT_MAX}]; floating arrays are quantized to INT8 "
                        f"(symmetric, per tensor) and their largest magnitude must be 0 or lie in "
                        f"[{ACT_REAL_MIN:g}, {ACT_REAL_MAX:g}] (float32's normal range)")
    p.add_argument("--requant-scale", type=float, default=None, metavar="S_OUT",
                   help="also requantize to INT8 outputs of this scale")
    p.add_argument("--out", metavar="Y.npy|Y.npz",
                   help="write the integer result, at exactly this path, atomically: '.npz' writes y, s_a and "
                        "(with --requant-scale) out, M, shift, s_out; any other name writes one .npy array "
                        "(int64 y, or int8 out with --requant-scale)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")


def activation_codes(x, K: int):
    """INT8 activation codes and their scale from a user's array (FORMAT.md section 3, 'Activations').

    Integer arrays of any integer dtype are codes as they are (``s_a = 1``) and
    must lie in ``[-128, 127]``; floating arrays are quantized with
    :func:`golden.quantize.quantize_activations`.  Anything else is refused.
    """
    x = np.asarray(x)
    if x.shape != (K,):
        raise SeptetError(f"--activations must have shape ({K},) to match the packed file's K={K}, got {x.shape}")
    if x.dtype.kind in "iu":
        lo, hi = int(x.min()), int(x.max())
        if lo < ACT_MIN or hi > ACT_MAX:
            raise SeptetError(f"--activations: integer activations are INT8 codes and must lie in "
                              f"[{ACT_MIN}, {ACT_MAX}], got [{lo}, {hi}] (dtype {x.dtype}); pass floats to have "
                              f"them quantized")
        return x.astype(np.int8), 1.0
    if x.dtype.kind != "f":
        raise SeptetError(f"--activations must be integer INT8 codes or real floats, got dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise SeptetError(f"--activations must be finite; element {int(np.argmax(~np.isfinite(x)))} is not")
    with naming_parameters({"x ": "--activations"}):
        return quantize_activations(x)


def run(args):
    if args.out:
        check_output_path(args.out, force=args.force)
    if args.requant_scale is not None and not (np.isfinite(args.requant_scale) and args.requant_scale > 0):
        raise SeptetError(f"--requant-scale must be a finite positive number, got {args.requant_scale}")
    with naming_parameters({"packed file": "--packed"}):
        qm, _ = load_packed(args.packed)
    x = load_array(args.activations, "--activations")
    a, s_a = activation_codes(x, qm.K)
    y = gemv_int(qm, a)
    real = y * s_a * np.exp2(-qm.exp.astype(np.float64))
    print(f"GEMV {qm.fmt.name} K={qm.K} N={qm.N}: activation scale {s_a:.6g}")
    print(f"  integer result y (int64): min {y.min()}, max {y.max()}")
    print(f"  real result y * s_a * 2**-exp: first {np.array2string(real[:4], precision=5)}")
    result = y
    arrays = {"y": y, "s_a": np.float64(s_a)}
    if args.requant_scale is not None:
        with naming_parameters({"requantization": "--requant-scale", "s_out": "--requant-scale"}):
            M, sh = requant_params(qm, s_a, args.requant_scale)
        result = requantize(y, M, sh)
        arrays.update(out=result, M=M, shift=sh, s_out=np.float64(args.requant_scale))
        print(f"  requantized INT8 (M, shift per column; first: {int(M[0])}, {int(sh[0])}): "
              f"first {result[:8].tolist()}")
    if args.out:
        if str(args.out).endswith(".npz"):
            written = save_arrays(args.out, arrays, force=args.force)
        else:
            written = save_array(args.out, result, force=args.force)
        print(f"  wrote {written}")
    return 0
