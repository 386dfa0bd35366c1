"""``septet quality``: every format's bits per weight, weight error, output error and perplexity."""

import json
import pathlib
import shlex
import sys

from septet.cli import SeptetError

_TYPE_COLUMNS = ("qkv", "o", "gate_up", "down")


def add_arguments(p):
    p.add_argument("--model", default="smollm2", choices=("smollm2", "minilm", "gaussian"),
                   help="weights to study (default smollm2; its figures are deltas from its Q4_1 file weights)")
    p.add_argument("--weights", metavar="W.npy", help="study your own float matrix [K, N] instead (weight error only)")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.add_argument("--eval-seqs", type=int, default=4, metavar="S",
                   help="SmolLM2 evaluation sequences of --seq-len tokens (default 4)")
    p.add_argument("--seq-len", type=int, default=256, metavar="T", help="tokens per evaluation sequence (default 256)")
    p.add_argument("--out", default="build/quality", metavar="DIR",
                   help="directory for <model>.json and <model>.png (default build/quality)")


def _pct(x):
    return "   -  " if x is None else f"{100 * x:6.2f}"


def format_table(result: dict) -> str:
    """The results as a text table: one row per format."""
    has_ppl = result["reference_perplexity"] is not None
    has_out = any(f["out_err_mean"] is not None for f in result["formats"])
    head = f"{'format':<26} {'bpw':>6} {'nRMSE%':>7}"
    types = [t for t in _TYPE_COLUMNS if any(t in f["by_type"] for f in result["formats"])]
    head += "".join(f" {t + ' w%':>10}" for t in types)
    if has_out:
        head += f" {'out%':>6}" + "".join(f" {t + ' o%':>10}" for t in types)
    if has_ppl:
        head += f" {'ppl':>8} {'delta':>8}"
    lines = [result["source"]]
    if result["text"]:
        lines.append(f"text: {result['text']}")
    lines += [head, "-" * len(head)]
    for f in result["formats"]:
        bt = f["by_type"]
        row = f"{f['label']:<26} {f['bits_per_weight']:6.3f} {_pct(f['nrmse_mean']):>7}"
        row += "".join(f" {_pct(bt[t]['nrmse'] if t in bt else None):>10}" for t in types)
        if has_out:
            row += f" {_pct(f['out_err_mean']):>6}"
            row += "".join(f" {_pct(bt[t]['out_err'] if t in bt else None):>10}" for t in types)
        if has_ppl:
            row += f" {f['perplexity']:8.3f} {f['ppl_delta']:+8.3f}"
        if f.get("pareto_" + result["pareto_metric"]):
            row += "  *front"
        elif f.get("degenerate"):
            row += "  (= reference)"
        lines.append(row)
    v = result["verdict"]
    if v and v["best_4p3"]:
        b = v["best_4p3"]
        m = v["metric"]
        lines.append(f"own vs shared grid ({m}): own better in {v['own_wins']} of {v['pairs']} matched configurations "
                     f"-> {v['arithmetic']}")
        gap = "n/a" if b["gap"] is None else f"{b['gap']:+.4g}"
        extra = "n/a" if b["extra_bits"] is None else f"{b['extra_bits']:+.3f}"
        lines.append(f"best 4+3: {b['label']} at {b['bits_per_weight']:.3f} bpw, {m} {b[m]:.4g}; "
                     f"{'on' if b['on_front'] else 'off'} the Pareto front; gap to the best peer at <= its bits "
                     f"{gap}; extra bits vs the cheapest peer as good {extra}")
    return "\n".join(lines)


def run(args):
    from golden.quality.plot import plot_study
    from golden.quality.study import run_study

    for name in ("eval_seqs", "seq_len"):
        if getattr(args, name) < 2:
            raise SeptetError(f"--{name.replace('_', '-')} must be >= 2, got {getattr(args, name)}")
    if args.weights is not None and not pathlib.Path(args.weights).is_file():
        raise SeptetError(f"--weights: file {args.weights!r} does not exist")
    log = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    result = run_study(args.model, weights_path=args.weights, n_seq=args.eval_seqs, seq_len=args.seq_len, log=log)
    result["command"] = "septet quality " + " ".join(shlex.quote(a) for a in sys.argv[2:]) \
        if sys.argv[1:2] == ["quality"] else "septet quality"
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = result["model"]
    (out / f"{stem}.json").write_text(json.dumps(result, separators=(",", ":")))
    plot_study(result, out / f"{stem}.png")
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(format_table(result))
        print(f"wrote {out / (stem + '.json')} and {out / (stem + '.png')} ({result['seconds']} s)")
    return 0
