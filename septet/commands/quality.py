"""``septet quality``: the fair quality study (SmolLM2) or the weight-error study (MiniLM, Gaussian, your matrix)."""

import json
import os
import pathlib
import shlex
import sys

from septet.cli import SeptetError

_TYPE_COLUMNS = ("qkv", "o", "gate_up", "down")


def add_arguments(p):
    p.add_argument("--model", default="smollm2", choices=("smollm2", "minilm", "gaussian"),
                   help="weights to study (default smollm2: the fair study, every figure relative to its "
                        "Q4_1-dequantized file weights)")
    p.add_argument("--weights", metavar="W.npy", help="study your own float matrix [K, N] instead (weight error only)")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.add_argument("--cal-tokens", type=int, default=2048, metavar="T",
                   help="SmolLM2 calibration tokens (pydoc topics no evaluation window uses; default 2048)")
    p.add_argument("--eval-windows", type=int, default=16, metavar="S",
                   help="SmolLM2 evaluation windows per kind of text (topics, docstrings; default 16)")
    p.add_argument("--seq-len", type=int, default=256, metavar="T", help="tokens per window (default 256)")
    p.add_argument("--out-err-windows", type=int, default=4, metavar="S",
                   help="evaluation windows per kind whose activations measure output error (default 4)")
    p.add_argument("--methods", metavar="LABELS",
                   help="comma-separated subset of the fair study's rows (default all; see the table)")
    p.add_argument("--out", default="build/quality", metavar="DIR",
                   help="directory for <model>.json and <model>.png (default build/quality)")


def _pct(x):
    return "   -  " if x is None else f"{100 * x:6.2f}"


def format_table(result: dict) -> str:
    """The weight-error study's results as a text table: one row per format."""
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


def _ci(d) -> str:
    if d is None:
        return "-"
    mark = {"lower": " <", "higher": " >"}.get(d["verdict"], "")
    return f"{d['ratio']:.3f} [{d['low']:.3f}, {d['high']:.3f}]{mark}"


def _fallback(f) -> str:
    if f["family"] != "ggml":
        return ""
    return "; ".join(f"{lt}: {'+'.join(ts)}" for lt, ts in f["types_used"].items())


def fair_rows(result: dict) -> "list[list[str]]":
    """Rows of the fair study's table (header first)."""
    kinds = list(result["windows_per_kind"])
    rows = [["format", "bpw", "types used (ggml fallback)", "held-out out. err."]
            + [f"ppl {k}" for k in kinds] + ["ppl / reference, 95% CI", f"ppl / {result['verdict']['int4_anchor']}"]]
    for f in result["formats"]:
        rows.append([f["label"], f"{f['bits_per_weight']:.3f}", _fallback(f), f"{100 * f['out_err_mean']:.2f}%"]
                    + [f"{f['perplexity_by_kind'][k]:.3f}" for k in kinds]
                    + [_ci(f["vs_reference"]["pooled"]), _ci(f["vs_int4_anchor"]["pooled"] if f["vs_int4_anchor"]
                                                          else None)])
    return rows


def format_fair_table(result: dict, markdown: bool = False) -> str:
    """The fair study as a text (or Markdown) table, then the best 4+3 against every peer."""
    rows = fair_rows(result)
    if markdown:
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    else:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [result["source"]] + [f"{k}: {v}" for k, v in result["text"].items()]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows[:1]]
        lines += ["-" * (sum(widths) + 2 * len(widths))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows[1:]]
    best = result["verdict"]["best_4p3"]
    if best:
        lines.append("")
        lines.append(f"best 4+3 at <= 3.85 bpw: {best['label']} ({best['bits_per_weight']:.3f} bpw); perplexity "
                     f"ratio to each peer, paired bootstrap 95% CI per kind and pooled ('<' / '>': the interval "
                     f"excludes 1):")
        for peer, v in best["vs"].items():
            lines.append(f"  vs {peer}: " + "; ".join(f"{k} {_ci(c)}" for k, c in v.items()))
    return "\n".join(lines)


def _write_atomic(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run(args):
    from golden.quality.plot import plot_fair_study, plot_study

    for name, low in (("cal_tokens", 2), ("eval_windows", 2), ("seq_len", 8), ("out_err_windows", 1)):
        if getattr(args, name) < low:
            raise SeptetError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(args, name)}")
    if args.weights is not None and not pathlib.Path(args.weights).is_file():
        raise SeptetError(f"--weights: file {args.weights!r} does not exist")
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.json else (lambda m: print(m, flush=True))
    fair = args.model == "smollm2" and args.weights is None
    if fair:
        from golden.quality.study import fair_methods, run_fair_study
        methods = fair_methods()
        if args.methods:
            want = [s.strip() for s in args.methods.split(",") if s.strip()]
            known = {m.label: m for m in methods}
            bad = [w for w in want if w not in known]
            if bad:
                raise SeptetError(f"--methods: unknown row(s) {', '.join(map(repr, bad))}; "
                                  f"rows are: {', '.join(known)}")
            methods = [methods[0]] + [known[w] for w in want if w != "reference"]
        try:
            result = run_fair_study(cal_tokens=args.cal_tokens, n_windows=args.eval_windows, seq_len=args.seq_len,
                                    out_err_windows=args.out_err_windows, methods=methods, log=log)
        except ValueError as exc:
            raise SeptetError(str(exc)) from None
    else:
        from golden.quality.study import run_study
        result = run_study(args.model, weights_path=args.weights, log=log)
    result["command"] = "septet quality " + " ".join(shlex.quote(a) for a in sys.argv[2:]) \
        if sys.argv[1:2] == ["quality"] else "septet quality"
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = result["model"]
    _write_atomic(out / f"{stem}.json", json.dumps(result, separators=(",", ":")))
    (plot_fair_study if fair else plot_study)(result, out / f"{stem}.png")
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(format_fair_table(result) if fair else format_table(result))
        print(f"wrote {out / (stem + '.json')} and {out / (stem + '.png')} ({result['seconds']} s)")
    return 0
