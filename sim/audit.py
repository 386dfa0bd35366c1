"""The seed audit: every quantitative claim of the seed paper against this project's own figure.

The seed (``shared/seeds/``) is a paper summary; its figures are claims. Each
row holds the claim, the project's figure for the same quantity, the command
that produced it, and a verdict (reproduced / not reproduced / inconsistent)
with the reason in one line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from golden.quantize import quantize, quantize_symmetric
from sim.config import ChipConfig, ModelConfig
from sim.model import Measurement, decode, gpu_decode, weight_bytes, weight_format

__all__ = ["AuditRow", "audit", "gaussian_rmse", "SEED"]

#: The seed's figures, as printed in its tables and text (shared/seeds/000_*.txt).
SEED = {
    "size_gb": {"FP16": 130.4, "INT8": 65.2, "INT4": 34.6, "3.5-bit": 32.6},
    "size_vs_fp16": {"3.5-bit": 0.25, "INT4": 0.266},
    "size_vs_int4": 0.941,
    "tok_s": {"INT4": 3124, "3.5-bit": 4188},
    "speedups": {"table": 0.341, "contributions": 0.289, "abstract": 0.289},
    "first_token_ms": {"INT4": 18, "3.5-bit": 15},
    "per_token_ms": {"INT4": 0.32, "3.5-bit": 0.24},
    "power_w": {"INT4": 41, "3.5-bit": 38},
    "rmse": {"INT4": {"qkv": 16.42, "gate_up": 16.44, "down": 17.61, "lm_head": 16.41, "average": 16.72},
             "3.5-bit": {"qkv": 14.65, "gate_up": 14.67, "down": 15.81, "lm_head": 14.65, "average": 14.94}},
    "uniform_3bit_rmse": 21.47,
    "asym_error_reduction": 0.106,
    "bandwidth_gb_s": 80,
    "saved_us_per_token": 200,
    "smaller_than": 0.46,
    "compression_vs_int4": 0.125,
    "gpu_gain": 0.10,
}

#: Layer types of the seed's Table 3: (name, K) for LLaMA-70B; N is sampled.
_RMSE_LAYERS = (("qkv", 8192), ("gate_up", 8192), ("down", 28672), ("lm_head", 8192))


@dataclass(frozen=True)
class AuditRow:
    claim: str
    seed: str
    ours: str
    command: str
    verdict: str
    reason: str


def gaussian_rmse(columns: int = 32, seed: int = 0) -> dict:
    """Normalized weight RMSE (%) per layer type on Gaussian weights of LLaMA-70B's K, per column.

    Formats: symmetric INT4 (the seed's "INT4"), asymmetric INT4, septet 4+3 (own
    grids), uniform 3-bit. ``columns`` columns per layer type keep it quick.
    """
    rng = np.random.default_rng(seed)
    quantizers = {
        "INT4 symmetric": lambda W: quantize_symmetric(W, "4+4"),
        "INT4 asymmetric": lambda W: quantize(W, "4+4"),
        "4+3 own grids": lambda W: quantize(W, "4+3"),
        "3+3 asymmetric": lambda W: quantize(W, "3+3"),
    }
    out = {name: {} for name in quantizers}
    for layer, K in _RMSE_LAYERS:
        W = rng.standard_normal((K, columns)).astype(np.float32)
        for name, q in quantizers.items():
            err = q(W).dequantize() - W
            out[name][layer] = 100 * float(np.sqrt(np.mean(err ** 2) / np.mean(W.astype(np.float64) ** 2)))
    for name in out:
        out[name]["average"] = float(np.mean([out[name][layer] for layer, _ in _RMSE_LAYERS]))
    return out


def audit(model: ModelConfig, chip: ChipConfig, gpu: ChipConfig, meas: Measurement, rmse: dict) -> "list[AuditRow]":
    """Every seed figure against the project's figure for ``model`` (the seed says LLaMA-70B)."""
    S = SEED
    rep = "septet report --model " + model.key
    fp16, int8 = weight_format("fp16"), weight_format("8+8", group_size=None)
    int4, s35 = weight_format("4+4", group_size=None), weight_format("4+3", group_size=None)
    int4g, s35g = weight_format("4+4"), weight_format("4+3")
    gb = {k: weight_bytes(model, wf) / 1e9 for k, wf in
          (("FP16", fp16), ("INT8", int8), ("INT4", int4), ("3.5-bit", s35), ("INT4 g128", int4g),
           ("3.5-bit g128", s35g))}
    rows = []
    params = model.published_parameters
    for k in ("FP16", "INT8", "INT4", "3.5-bit"):
        extra = f"; {gb[k + ' g128']:.1f} GB with group-128 scales" if k + " g128" in gb else ""
        ok = abs(gb[k] - S["size_gb"][k]) / gb[k] < 0.02
        implied = S["size_gb"]["FP16"] * 1e9 / 2 / 1e9
        rows.append(AuditRow(
            f"model size {k}", f"{S['size_gb'][k]} GB", f"{gb[k]:.1f} GB streamed per token{extra}", rep,
            "reproduced" if ok else "not reproduced",
            "matches to 2%" if ok else (f"the seed's FP16 130.4 GB implies {implied:.1f} G parameters; "
                                        f"{model.name} has {params / 1e9:.2f} G" if k in ("FP16", "INT8")
                                        else f"{k} of {params / 1e9:.1f} G weights is {gb[k]:.1f} GB before scales")))
    ratio = gb["3.5-bit"] / gb["INT4"]
    rows.append(AuditRow("3.5-bit size vs INT4", f"{S['size_vs_int4']:.1%} (32.6/34.6 GB)", f"{ratio:.1%} "
                         f"(7/8 of the code bits; {gb['3.5-bit g128'] / gb['INT4 g128']:.1%} with group-128 scales)",
                         rep, "inconsistent", "7 bits per pair against 8 is 87.5%, not 94.1%; the seed's own "
                         "'12.5% better compression' contradicts its table"))
    rows.append(AuditRow("3.5-bit size vs FP16", "25%", f"{gb['3.5-bit'] / gb['FP16']:.1%}", rep, "not reproduced",
                         "3.5 / 16 = 21.9%; 25% is 4-bit's share"))
    rows.append(AuditRow("'46% smaller' / '46% memory traffic reduction'", "46%",
                         f"{1 - ratio:.1%} smaller than INT4; {1 - gb['3.5-bit'] / gb['FP16']:.1%} smaller than FP16",
                         rep, "inconsistent", "no baseline gives 46%: vs INT4 it is 12.5%, vs FP16 78%"))
    rows.append(AuditRow("'12.5% better compression than INT4'", "12.5%", f"{1 - ratio:.1%}", rep, "reproduced",
                         "the code bits alone (7/8); group scales cut it to "
                         f"{1 - gb['3.5-bit g128'] / gb['INT4 g128']:.1%}"))

    lpu = {k: decode(model, chip, wf, meas, placement=p) for k, wf in (("INT4", int4g), ("3.5-bit", s35g))
           for p in ("tp",)}
    lpu_pp = {k: decode(model, chip, wf, meas, placement="pp") for k, wf in (("INT4", int4g), ("3.5-bit", s35g))}
    gpu_d = {k: gpu_decode(model, gpu, wf) for k, wf in (("INT4", int4g), ("3.5-bit", s35g))}
    for k in ("INT4", "3.5-bit"):
        rows.append(AuditRow(
            f"throughput {k} (tok/s, batch 1)", f"{S['tok_s'][k]}",
            f"LPU {lpu[k].tokens_per_s:.0f} (tensor parallel, {lpu[k].chips} chips) / {lpu_pp[k].tokens_per_s:.0f} "
            f"(pipeline); one H100 bound {gpu_d[k].tokens_per_s:.0f}", rep, "not reproduced",
            "a different model of a different system; see the ratio rows for what the format changes"))
    measured_gain = 1 / meas.cycle_ratio_43_44 - 1 if meas.cycle_ratio_43_44 else None
    gain_txt = f"{measured_gain:+.1%} per GEMV (measured, per column)" if measured_gain is not None else "n/a"
    for name, v in S["speedups"].items():
        rows.append(AuditRow(
            f"speed-up 3.5-bit over INT4 ({name})", f"+{v:.1%}",
            f"{gain_txt}; LPU tp {lpu['3.5-bit'].tokens_per_s / lpu['INT4'].tokens_per_s - 1:+.1%}, "
            f"pp {lpu_pp['3.5-bit'].tokens_per_s / lpu_pp['INT4'].tokens_per_s - 1:+.1%}; "
            f"GPU bound {gpu_d['3.5-bit'].tokens_per_s / gpu_d['INT4'].tokens_per_s - 1:+.1%} (group 128)",
            "septet run; " + rep, "not reproduced",
            "a bandwidth-bound datapath gains at most 8/7 - 1 = +14.3%; the seed gives both +34.1% and +28.9%"))
    for k in ("INT4", "3.5-bit"):
        tok = S["tok_s"][k]
        rows.append(AuditRow(f"per-token time {k}", f"{S['per_token_ms'][k]} ms",
                             f"{1e3 / tok:.3f} ms is 1/{tok} tok/s; model: {lpu[k].t_token_s * 1e3:.3f} ms (LPU tp)",
                             rep, "inconsistent" if k == "3.5-bit" else "reproduced",
                             "0.24 ms gives 4167 tok/s, not 4188" if k == "3.5-bit" else "1/3124 s = 0.320 ms"))
    rows.append(AuditRow("'200 us saved per token'", "200 us",
                         f"{(S['per_token_ms']['INT4'] - S['per_token_ms']['3.5-bit']) * 1e3:.0f} us from the seed's "
                         f"own table; model: {(lpu_pp['INT4'].t_token_s - lpu_pp['3.5-bit'].t_token_s) * 1e6:.0f} us "
                         f"(LPU pipeline)", rep, "inconsistent", "0.32 - 0.24 ms = 80 us"))
    for k in ("INT4", "3.5-bit"):
        rows.append(AuditRow(f"first-token time {k}", f"{S['first_token_ms'][k]} ms", "not modelled: prefill is "
                             "compute-bound and barely depends on the weight format", rep, "not reproduced",
                             "a 17% prefill gain from 12.5% fewer weight bits has no mechanism"))
    e_int4, e_35 = lpu["INT4"].energy_j_per_token, lpu["3.5-bit"].energy_j_per_token
    for k in ("INT4", "3.5-bit"):
        rows.append(AuditRow(f"power {k}", f"{S['power_w'][k]} W",
                             f"{lpu[k].chips} chips x ~{chip.tdp_w:.0f} W = {lpu[k].chips * chip.tdp_w / 1e3:.0f} kW; "
                             f"{lpu[k].energy_j_per_token:.2f} J/token (SRAM, MAC, links)", rep, "not reproduced",
                             "41 W is a fraction of one accelerator card, not a 70B deployment"))
    rows.append(AuditRow("power saving", "7.3%", f"{1 - e_35 / e_int4:.1%} less energy per token", rep,
                         "not reproduced", "energy per token follows the bits streamed; the seed's 41->38 W is unexplained"))
    bw = S["bandwidth_gb_s"] * 1e9
    rows.append(AuditRow("'Groq LPU ... 80 GB/s'", "80 GB/s", f"{gb['3.5-bit'] * 1e9 / bw:.2f} s per token at "
                         f"80 GB/s = {bw / (gb['3.5-bit'] * 1e9):.1f} tok/s", rep, "inconsistent",
                         "80 GB/s cannot stream 30 GB per token 4188 times a second (needs 126 TB/s)"))
    rows.append(AuditRow("GPU gain ~10% vs 28.9% on ASIC", "~10%",
                         f"GPU bound {gpu_d['3.5-bit'].tokens_per_s / gpu_d['INT4'].tokens_per_s - 1:+.1%}",
                         rep, "inconsistent", "both are bandwidth-bound: the same bits give the same ceiling"))
    labels = {"INT4": "INT4 symmetric", "3.5-bit": "4+3 own grids"}
    for k in ("INT4", "3.5-bit"):
        for layer in ("qkv", "gate_up", "down", "lm_head", "average"):
            ours = rmse[labels[k]][layer]
            asym = rmse["INT4 asymmetric"][layer]
            close = abs(ours - S["rmse"][k][layer]) < 1.0
            rows.append(AuditRow(
                f"RMSE {k} {layer}", f"{S['rmse'][k][layer]}%",
                f"{ours:.2f}% ({labels[k]}); INT4 asymmetric {asym:.2f}%", rep + " (Gaussian weights, per column)",
                "reproduced" if close else "not reproduced",
                "matches symmetric INT4" if (close and k == "INT4") else
                (f"the seed's 3.5-bit figure matches asymmetric INT4 ({asym:.2f}%), not a 4+3 mix"
                 if k == "3.5-bit" else "differs by more than 1 point")))
    rows.append(AuditRow("uniform 3-bit RMSE", f"{S['uniform_3bit_rmse']}%", f"{rmse['3+3 asymmetric']['average']:.2f}%",
                         rep + " (Gaussian, per column)",
                         "reproduced" if abs(rmse['3+3 asymmetric']['average'] - S['uniform_3bit_rmse']) < 2
                         else "not reproduced", "3+3 asymmetric per column on Gaussian weights"))
    red = 1 - rmse["INT4 asymmetric"]["average"] / rmse["INT4 symmetric"]["average"]
    rows.append(AuditRow("'10.6% error reduction via asymmetric zero-point'", "10.6%", f"{red:.1%} (asymmetric vs "
                         "symmetric INT4)", rep, "inconsistent" if abs(red - 0.106) < 0.03 else "not reproduced",
                         "the gain of asymmetric INT4 over symmetric INT4, credited to the 3.5-bit format"))
    return rows
