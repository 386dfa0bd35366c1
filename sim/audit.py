"""The seed audit: every quantitative claim of the seed paper against this project's own figure.

The seed (``shared/seeds/``) is a paper summary; its figures are claims. Each
row holds the claim, the project's figure for the same quantity, the command
that produced it, and a verdict (reproduced / not reproduced / inconsistent)
with the reason in one line.
"""

from __future__ import annotations

from dataclasses import dataclass

import gguf
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
    rep_json = rep + " --json"
    fp16, int8 = weight_format("fp16"), weight_format("8+8", group_size=None)
    int4, s35 = weight_format("4+4", group_size=None), weight_format("4+3", group_size=None)
    int4g, s35g = weight_format("4+4"), weight_format("4+3")
    gb = {k: weight_bytes(model, wf) / 1e9 for k, wf in
          (("FP16", fp16), ("INT8", int8), ("INT4", int4), ("3.5-bit", s35), ("INT4 g128", int4g),
           ("3.5-bit g128", s35g))}
    bpw = {k: wf.bits_per_weight(model.hidden) for k, wf in (("INT4 g128", int4g), ("3.5-bit g128", s35g))}
    rows = []
    params = model.published_parameters
    # The seed's own parameter count: its FP16 size at two bytes a weight.
    seed_params = S["size_gb"]["FP16"] * 1e9 / 2
    seed_bpw = {k: S["size_gb"][k] * 8e9 / seed_params for k in S["size_gb"]}
    rows.append(AuditRow(
        "model: 'LLaMA-70B (80 layers, 70B params)'", "70 G parameters; FP16 130.4 GB",
        f"{model.name}: {params / 1e9:.2f} G parameters, {model.layers} layers; the seed's 130.4 GB FP16 is "
        f"{seed_params / 1e9:.1f} G parameters, LLaMA-1-65B's published count", "septet report --model llama1-65b",
        "inconsistent", "the model named (70B) and the model sized (65.2 G parameters) are not the same model"))
    reasons = {
        "FP16": f"130.4 GB is 2 bytes x {seed_params / 1e9:.1f} G parameters (LLaMA-1-65B), not {params / 1e9:.2f} G",
        "INT8": f"65.2 GB is 1 byte x {seed_params / 1e9:.1f} G parameters (LLaMA-1-65B)",
        "INT4": f"{seed_bpw['INT4']:.2f} bit/weight on 65.2 G parameters: 4-bit codes with a 16-bit scale and zero "
                f"per 128 weights (AWQ's layout) on LLaMA-1-65B",
        "3.5-bit": f"32.6 GB of the seed's own 65.2 G parameters is {seed_bpw['3.5-bit']:.2f} bit/weight, "
                   f"not 3.5 (3.5 bits would be {seed_params * 3.5 / 8e9:.1f} GB)",
    }
    for k in ("FP16", "INT8", "INT4", "3.5-bit"):
        extra = f"; {gb[k + ' g128']:.1f} GB with group-128 scales" if k + " g128" in gb else ""
        rows.append(AuditRow(
            f"model size {k}", f"{S['size_gb'][k]} GB", f"{gb[k]:.1f} GB streamed per token{extra}", rep,
            "inconsistent" if k == "3.5-bit" else "not reproduced", reasons[k]))
    rows.append(AuditRow(
        "Table 1 'vs FP16' column (INT8 50%, INT4 26.6%)", "50%, 26.6%",
        f"{S['size_gb']['INT8'] / S['size_gb']['FP16']:.1%}, {S['size_gb']['INT4'] / S['size_gb']['FP16']:.1%} "
        f"from the seed's own sizes", "arithmetic on the seed's Table 1", "reproduced",
        "the ratios follow from the seed's sizes (which are themselves not reproduced above)"))
    ratio = gb["3.5-bit"] / gb["INT4"]
    rows.append(AuditRow("3.5-bit size vs INT4", f"{S['size_vs_int4']:.1%} (32.6/34.6 GB)", f"{ratio:.1%} "
                         f"(7/8 of the code bits; {gb['3.5-bit g128'] / gb['INT4 g128']:.1%} with group-128 scales)",
                         rep, "inconsistent", "7 bits per pair against 8 is 87.5%, not 94.1%; the seed's own "
                         "'12.5% better compression' contradicts its table"))
    rows.append(AuditRow("3.5-bit size vs FP16", "25%", f"{gb['3.5-bit'] / gb['FP16']:.1%}", rep, "inconsistent",
                         "3.5 / 16 = 21.9%; 25% is 4 / 16, the share of 4-bit weights"))
    rows.append(AuditRow("'46% smaller' / '46% memory traffic reduction'", "46%",
                         f"{1 - ratio:.1%} smaller than INT4; {1 - gb['3.5-bit'] / gb['FP16']:.1%} smaller than FP16",
                         rep, "inconsistent", "no baseline gives 46%: vs INT4 it is 12.5%, vs INT8 56%, vs FP16 78%"))
    rows.append(AuditRow("'12.5% better compression than INT4'", "12.5%", f"{1 - ratio:.1%}", rep, "reproduced",
                         "the code bits alone (7/8); group scales cut it to "
                         f"{1 - gb['3.5-bit g128'] / gb['INT4 g128']:.1%}"))
    q3k_block, q3k_bytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q3_K]
    rows.append(AuditRow("'first 3.5-bit / first sub-4-bit method'", "first",
                         f"llama.cpp Q3_K stores {q3k_bytes * 8 / q3k_block:.4f} bit/weight (gguf block table), "
                         "public since 2023", "python -c 'import gguf; print(gguf.GGML_QUANT_SIZES)'",
                         "not reproduced", "sub-4-bit weight formats (GPTQ 3-bit, k-quants, IQ3) predate the seed"))
    rows.append(AuditRow("'Groq LPU (750 TOPS)'", "750 TOPS",
                         f"{chip.macs:,} MACs x 2 x {chip.clock_hz / 1e6:.0f} MHz = "
                         f"{2 * chip.macs * chip.clock_hz / 1e12:.0f} TOPS", "sim/configs/groq-tsp.toml",
                         "reproduced", "ISCA 2020's INT8 peak, within 2%"))

    from sim.calibrate import gpu_constants

    # Calibrated model: the LPU on the fewest chips that hold each format (tp/pp mapping, fitted per-layer cost),
    # and on Groq's deployment of 576 chips; one H100 as llama.cpp (Dec 2023) drives it.
    lpu = {k: decode(model, chip, wf, meas) for k, wf in (("INT4", int4g), ("3.5-bit", s35g))}
    lpu_pp = {k: decode(model, chip, wf, meas, chips=max(576, lpu[k].chips)) for k, wf in
              (("INT4", int4g), ("3.5-bit", s35g))}
    gpu_d = {k: gpu_decode(model, gpu, wf, **gpu_constants("llama.cpp-2023-12")) for k, wf in
             (("INT4", int4g), ("3.5-bit", s35g))}
    for k in ("INT4", "3.5-bit"):
        need = S["size_gb"][k] * S["tok_s"][k] / 1e3
        rows.append(AuditRow(
            f"throughput {k} (tok/s, batch 1)", f"{S['tok_s'][k]}",
            f"LPU calibrated {lpu[k].tokens_per_s:.0f} ({lpu[k].chips} chips) / "
            f"{lpu_pp[k].tokens_per_s:.0f} ({lpu_pp[k].chips} chips); one H100 (llama.cpp calibration) "
            f"{gpu_d[k].tokens_per_s:.0f}", rep,
            "not reproduced",
            f"{S['size_gb'][k]} GB x {S['tok_s'][k]}/s = {need:.0f} TB/s of weights, {need * 1e3 / 80:.0f}x the seed's "
            f"own 80 GB/s; Groq's measured 185-300 tok/s for a 70B model is 10x below it"))
    measured_gain = 1 / meas.cycle_ratio_43_44 - 1 if meas.cycle_ratio_43_44 else None
    gain_txt = f"{measured_gain:+.1%} per GEMV (measured, per column)" if measured_gain is not None else "n/a"
    ceiling = bpw["INT4 g128"] / bpw["3.5-bit g128"] - 1
    for name, v in S["speedups"].items():
        rows.append(AuditRow(
            f"speed-up 3.5-bit over INT4 ({name})", f"+{v:.1%}",
            f"{gain_txt}; with group-128 scales the ceiling is {ceiling:+.1%}; "
            f"LPU calibrated {lpu['3.5-bit'].tokens_per_s / lpu['INT4'].tokens_per_s - 1:+.1%} (fewest chips), "
            f"{lpu_pp['3.5-bit'].tokens_per_s / lpu_pp['INT4'].tokens_per_s - 1:+.1%} (576 chips); "
            f"H100 calibrated {gpu_d['3.5-bit'].tokens_per_s / gpu_d['INT4'].tokens_per_s - 1:+.1%}",
            "septet run; " + rep, "not reproduced",
            "a bandwidth-bound datapath gains at most 8/7 - 1 = +14.3%; the seed gives both +34.1% and +28.9%"))
    rows.append(AuditRow("Table 2 'Improvement' column (-16.7%, -25.0%, -7.3%)", "-16.7%, -25.0%, -7.3%",
                         f"{S['first_token_ms']['3.5-bit'] / S['first_token_ms']['INT4'] - 1:+.1%}, "
                         f"{S['per_token_ms']['3.5-bit'] / S['per_token_ms']['INT4'] - 1:+.1%}, "
                         f"{S['power_w']['3.5-bit'] / S['power_w']['INT4'] - 1:+.1%} from the seed's own rows",
                         "arithmetic on the seed's Table 2", "reproduced",
                         "the percentages follow from the seed's rows (the rows themselves are audited below)"))
    for k in ("INT4", "3.5-bit"):
        tok = S["tok_s"][k]
        rows.append(AuditRow(f"per-token time {k}", f"{S['per_token_ms'][k]} ms",
                             f"{1e3 / tok:.3f} ms is 1/{tok} tok/s; calibrated model: {lpu[k].t_token_s * 1e3:.3f} ms "
                             f"(LPU, {lpu[k].chips} chips), {lpu_pp[k].t_token_s * 1e3:.3f} ms ({lpu_pp[k].chips} chips)", rep,
                             "inconsistent" if k == "3.5-bit" else "not reproduced",
                             "0.24 ms gives 4167 tok/s, not 4188, and -25% time is +33.3% tok/s, not +34.1%"
                             if k == "3.5-bit" else "consistent with its own 3124 tok/s (1/3124 s = 0.320 ms); "
                             "not with any placement we model"))
    rows.append(AuditRow("'200 µs saved per token'", "200 µs",
                         f"{(S['per_token_ms']['INT4'] - S['per_token_ms']['3.5-bit']) * 1e3:.0f} µs from the seed's "
                         f"own table; calibrated model: {(lpu['INT4'].t_token_s - lpu['3.5-bit'].t_token_s) * 1e6:.1f} µs "
                         f"(LPU, fewest chips), {(gpu_d['INT4'].t_token_s - gpu_d['3.5-bit'].t_token_s) * 1e6:.0f} µs "
                         f"(one H100)",
                         rep, "inconsistent", "0.32 - 0.24 ms = 80 µs"))
    for k in ("INT4", "3.5-bit"):
        rows.append(AuditRow(f"first-token time {k}", f"{S['first_token_ms'][k]} ms", "not modelled: prefill is "
                             "compute-bound and barely depends on the weight format", rep, "not reproduced",
                             "a 17% prefill gain from 12.5% fewer weight bits has no mechanism"))
    e_int4, e_35 = lpu["INT4"].energy_j_per_token, lpu["3.5-bit"].energy_j_per_token
    for k in ("INT4", "3.5-bit"):
        rows.append(AuditRow(f"power {k}", f"{S['power_w'][k]} W",
                             f"{lpu[k].chips} chips x ~{chip.chip_power_w:.0f} W (assumed) = "
                             f"{lpu[k].chips * chip.chip_power_w / 1e3:.0f} kW: {lpu[k].energy_j_per_token:.0f} J/token "
                             f"(of which SRAM, MAC and links {lpu[k].dynamic_j_per_step:.2f} J)", rep, "not reproduced",
                             f"41 W is a seventh of one ~{chip.chip_power_w:.0f} W chip, not a 70B deployment"))
    rows.append(AuditRow("power saving", "7.3%", f"{1 - e_35 / e_int4:.1%} less energy per token (fewer chips, "
                         "same token time)", rep,
                         "not reproduced", "energy per token follows the chips powered; the seed's 41->38 W is "
                         "unexplained"))
    bw = S["bandwidth_gb_s"] * 1e9
    rows.append(AuditRow("'Groq LPU ... 80 GB/s'", "80 GB/s", f"{gb['3.5-bit'] * 1e9 / bw:.2f} s per token at "
                         f"80 GB/s = {bw / (gb['3.5-bit'] * 1e9):.1f} tok/s; the TSP's SRAM: "
                         f"{chip.sram_bandwidth_bytes_per_s / 1e12:.0f} TB/s", rep, "inconsistent",
                         "80 GB/s cannot stream 30 GB per token 4188 times a second (needs 126 TB/s)"))
    rows.append(AuditRow("GPU gain ~10% vs 28.9% on ASIC", "~10%",
                         f"H100 calibrated {gpu_d['3.5-bit'].tokens_per_s / gpu_d['INT4'].tokens_per_s - 1:+.1%}; "
                         f"LPU calibrated {lpu['3.5-bit'].tokens_per_s / lpu['INT4'].tokens_per_s - 1:+.1%}",
                         rep, "inconsistent", "the order is reversed: the GPU keeps part of the bit ratio, the LPU "
                         "almost none (its token time is fixed per-layer work and chip-to-chip latency)"))
    labels = {"INT4": "INT4 symmetric", "3.5-bit": "4+3 own grids"}
    for k in ("INT4", "3.5-bit"):
        for layer in ("qkv", "gate_up", "down", "lm_head", "average"):
            ours = rmse[labels[k]][layer]
            asym = rmse["INT4 asymmetric"][layer]
            close = abs(ours - S["rmse"][k][layer]) < 1.0
            rows.append(AuditRow(
                f"RMSE {k} {layer}", f"{S['rmse'][k][layer]}%",
                f"{ours:.2f}% ({labels[k]}); INT4 asymmetric {asym:.2f}%", rep_json + " (gaussian_rmse)",
                "reproduced" if close else "not reproduced",
                "matches symmetric INT4 (Gaussian weights, per column)" if (close and k == "INT4") else
                (f"a 4+3 mix measures {ours:.1f}%; the seed's figure is near asymmetric INT4 ({asym:.2f}%)"
                 if k == "3.5-bit" else "differs by more than 1 point")))
    u3 = rmse["3+3 asymmetric"]["average"]
    rows.append(AuditRow("uniform 3-bit RMSE", f"{S['uniform_3bit_rmse']}%", f"{u3:.2f}%",
                         rep_json + " (gaussian_rmse)",
                         "reproduced" if abs(u3 - S['uniform_3bit_rmse']) < 2 else "not reproduced",
                         "3+3 asymmetric per column on Gaussian weights"))
    s_ratio = S["uniform_3bit_rmse"] / S["rmse"]["3.5-bit"]["average"] - 1
    o_ratio = u3 / rmse["4+3 own grids"]["average"] - 1
    rows.append(AuditRow("'uniform 3-bit increases RMSE by 43%'", f"+{s_ratio:.0%} (21.47 vs 14.94)",
                         f"{o_ratio:+.0%} (3+3 {u3:.1f}% vs 4+3 {rmse['4+3 own grids']['average']:.1f}%)",
                         rep_json + " (gaussian_rmse)", "not reproduced",
                         "the gap between a 4+3 mix and uniform 3-bit is smaller than the seed's"))
    red = 1 - rmse["INT4 asymmetric"]["average"] / rmse["INT4 symmetric"]["average"]
    rows.append(AuditRow("'10.6% error reduction via asymmetric zero-point'", "10.6%", f"{red:.1%} (asymmetric vs "
                         "symmetric INT4)", rep_json + " (gaussian_rmse)",
                         "inconsistent" if abs(red - 0.106) < 0.03 else "not reproduced",
                         "1 - 14.94/16.72 = 10.6%: the gain of asymmetric over symmetric INT4, credited to 3.5-bit"))
    return rows
