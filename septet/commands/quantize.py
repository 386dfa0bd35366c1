"""``septet quantize``: bring your own weights."""

import contextlib

import numpy as np

from golden.format import FORMATS
from golden.io import check_output_path, load_array, save_packed
from golden.quantize import CLIP_MODES, quantize, quantize_symmetric
from septet.cli import SeptetError


def add_arguments(p):
    p.add_argument("--weights", required=True, metavar="W.npy",
                   help="float weight matrix [K, N] (K = reduction/input dimension)")
    p.add_argument("--format", default="4+3", metavar="E+O",
                   help=f"slot widths, e.g. {', '.join(FORMATS)} (default 4+3, the 3.5-bit septet)")
    p.add_argument("--arithmetic", default="own", choices=("own", "shared"),
                   help="own grid per slot, or one shared grid (default own)")
    p.add_argument("--group-size", type=int, default=None, metavar="G",
                   help="rows per group along K, even (default: per column)")
    p.add_argument("--clip", default="none", choices=CLIP_MODES,
                   help="range clipping: mse (weight error) or output (calibration-weighted error, needs "
                        "--importance); default none")
    p.add_argument("--importance", metavar="I.npy",
                   help="per-input-channel second moment of calibration activations, E[x_k**2] (for --clip output)")
    p.add_argument("--symmetric", action="store_true", help="symmetric baseline (zero point 2**(b-1))")
    p.add_argument("--perm", metavar="P.npy", help="input-channel order (a permutation of range(K))")
    p.add_argument("--transpose", action="store_true",
                   help="the file holds W as [N, K] (PyTorch/safetensors nn.Linear layout)")
    p.add_argument("--lanes", type=int, default=16, help="lanes of the tile the stream is packed for (default 16)")
    p.add_argument("--out", required=True, metavar="F.npz",
                   help="output file, written at exactly this path (no extension added), atomically; "
                        "an existing file is refused unless --force")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")


#: Leading words of golden's validation messages -> the option they come from.
QUANTIZE_PARAMETERS = {"W ": "--weights", "K=": "--weights", "weight scales": "--weights", "group_size": "--group-size",
                       "perm ": "--perm", "importance": "--importance", "format": "--format", "even_bits": "--format",
                       "odd_bits": "--format", "arithmetic": "--arithmetic", "clip": "--clip"}


@contextlib.contextmanager
def naming_parameters(names: dict):
    """Re-raise golden's ValueError/TypeError as one line that starts with the option it concerns."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        msg = " ".join(str(exc).split())
        flag = next((f for prefix, f in names.items() if msg.startswith(prefix)), None)
        raise SeptetError(f"{flag}: {msg}" if flag else msg) from None


def run(args):
    check_output_path(args.out, force=args.force)      # fail before the work, not after it
    W = load_array(args.weights, "--weights")
    if args.transpose:
        if W.ndim != 2:
            raise SeptetError(f"--weights must be 2-D, got shape {W.shape}")
        W = W.T
    perm = load_array(args.perm, "--perm") if args.perm else None
    if args.symmetric and (args.arithmetic != "own" or args.clip != "none"):
        raise SeptetError("--symmetric takes neither --arithmetic shared nor --clip")
    if not isinstance(args.lanes, int) or args.lanes < 1:
        raise SeptetError(f"--lanes must be an integer >= 1, got {args.lanes}")
    importance = load_array(args.importance, "--importance") if args.importance else None
    with naming_parameters(QUANTIZE_PARAMETERS):
        if args.symmetric:
            qm = quantize_symmetric(W, args.format, group_size=args.group_size, perm=perm)
        else:
            qm = quantize(W, args.format, arithmetic=args.arithmetic, group_size=args.group_size,
                          clip=args.clip, perm=perm, importance=importance)
    ps = save_packed(args.out, qm, lanes=args.lanes, force=args.force)
    w = W.astype(np.float64)
    nrmse = float(np.sqrt(np.mean((qm.dequantize() - w) ** 2) / max(np.mean(w ** 2), 1e-300)))
    print(f"{args.weights}: W[{qm.K}, {qm.N}] -> {qm.fmt.name} {qm.arithmetic.value} grid, "
          f"group {'per column' if qm.n_groups == 1 else qm.group_size}")
    print(f"  stream {ps.nbits} bits for {ps.layout.n_blocks} block(s) of {args.lanes} lanes; "
          f"{qm.bits_per_weight:.4f} bits/weight (scales, zero points, exponents included)")
    print(f"  normalized weight RMSE {nrmse:.4%}")
    print(f"  wrote {args.out}")             # atomic_write writes exactly this path
    return 0
