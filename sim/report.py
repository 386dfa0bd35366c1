"""The report: tables, plots and the verdict, from a measurements file and the configs."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sim.audit import audit, gaussian_rmse  # noqa: E402
from sim.config import load_chip, load_model  # noqa: E402
from sim.model import WEIGHT_FORMATS, decode, gpu_decode, load_measurement, weight_format  # noqa: E402

__all__ = ["build", "write_report", "verdict", "QUALITY_DEFAULT"]

QUALITY_DEFAULT = Path(__file__).with_name("data") / "quality_smollm2.json"
SCALING_MODELS = ("llama2-70b", "llama3-70b", "llama3-8b")


def build(model_key="llama2-70b", measurements=None, chip_key="groq-tsp", gpu_key="h100-pcie", batch=8) -> dict:
    """Every figure of the report, as a JSON-serialisable dict."""
    model, chip, gpu = load_model(model_key), load_chip(chip_key), load_chip(gpu_key)
    meas = load_measurement(measurements)
    rows = []
    for wf in WEIGHT_FORMATS:
        for placement in ("tp", "pp"):
            for b in (1, batch):
                rows.append(decode(model, chip, wf, meas, placement=placement, batch=b).as_dict())
    gpu_rows = []
    for label in ("fp16", "8+8", "q4_0", "4+4", "4+3"):
        wf = weight_format(label)
        try:
            gpu_rows.append(gpu_decode(model, gpu, wf).as_dict())
        except ValueError as exc:                     # does not fit one GPU: say so, do not drop silently
            gpu_rows.append({"fmt": wf.label, "does_not_fit": str(exc)})
    scaling = []
    for key in SCALING_MODELS:
        m = load_model(key)
        for label in ("4+4", "4+3"):
            scaling.append(decode(m, chip, weight_format(label), meas, placement="pp").as_dict())
    rmse = gaussian_rmse()
    quality = json.loads(QUALITY_DEFAULT.read_text()) if QUALITY_DEFAULT.exists() else None
    return {
        "model": model.name, "chip": chip.name, "gpu": gpu.name,
        "measurements": {"source": meas.source, "provisional": meas.provisional,
                         "bus_efficiency": meas.bus_efficiency, "latency_cycles": meas.latency_cycles,
                         "bus_width": meas.bus_width, "lanes": meas.lanes,
                         "cycle_ratio_4p3_4p4": meas.cycle_ratio_43_44, "runs": list(meas.runs)},
        "decode": rows, "gpu": gpu_rows, "scaling": scaling, "gaussian_rmse": rmse,
        "audit": [r.__dict__ for r in audit(model, chip, gpu, meas, rmse)],
        "quality": quality,
        "sources": {**{f"chip.{k}": chip.source(k) for k in chip.values if k != "kind"},
                    **{f"model.{k}": model.source(k) for k in model.values},
                    **{f"gpu.{k}": gpu.source(k) for k in gpu.values if k != "kind"}},
    }


def verdict(measurements=None, model_key="llama2-70b") -> str:
    """What 3.5-bit buys over INT4 on ``model_key``, in chips, tokens/s and error (``make run`` prints it)."""
    model, chip, gpu = load_model(model_key), load_chip("groq-tsp"), load_chip("h100-pcie")
    meas = load_measurement(measurements)
    i4, s35 = weight_format("4+4"), weight_format("4+3")
    tp = [decode(model, chip, wf, meas, placement="tp") for wf in (i4, s35)]
    pp = [decode(model, chip, wf, meas, placement="pp") for wf in (i4, s35)]
    g = [gpu_decode(model, gpu, wf) for wf in (i4, s35)]
    rmse = gaussian_rmse(columns=16)
    lines = [f"Verdict for {model.name}: 3.5-bit (4+3, groups of 128) against INT4 (4+4, groups of 128)",
             f"  tile (measured, {meas.source}): bus efficiency {meas.bus_efficiency:.5f}"
             + (f", 4+3/4+4 cycles {meas.cycle_ratio_43_44:.5f} (7/8 = 0.87500)" if meas.cycle_ratio_43_44 else "")
             + (" [PROVISIONAL]" if meas.provisional else ""),
             f"  bits per weight: {s35.bits_per_weight(model.hidden):.3f} vs {i4.bits_per_weight(model.hidden):.3f}",
             f"  LPU chips to hold it: {tp[1].chips} vs {tp[0].chips} ({tp[1].chips / tp[0].chips - 1:+.1%})",
             f"  LPU tokens/s, tensor parallel: {tp[1].tokens_per_s:.0f} vs {tp[0].tokens_per_s:.0f} "
             f"({tp[1].tokens_per_s / tp[0].tokens_per_s - 1:+.1%}: chip-to-chip latency dominates)",
             f"  LPU tokens/s, pipeline: {pp[1].tokens_per_s:.0f} vs {pp[0].tokens_per_s:.0f} "
             f"({pp[1].tokens_per_s / pp[0].tokens_per_s - 1:+.1%})",
             f"  one H100 (HBM bound): {g[1].tokens_per_s:.1f} vs {g[0].tokens_per_s:.1f} tok/s "
             f"({g[1].tokens_per_s / g[0].tokens_per_s - 1:+.1%})",
             f"  weight error (Gaussian, per column): 4+3 {rmse['4+3 own grids']['average']:.1f}% vs INT4 "
             f"{rmse['INT4 asymmetric']['average']:.1f}% nRMSE",
             "  The seed's +34% is out of reach: streaming 7/8 of the bits gives at most +14.3%."]
    if QUALITY_DEFAULT.exists():
        lines.append(f"  quality on a real LLM: see {QUALITY_DEFAULT} (SmolLM2 perplexity per format)")
    return "\n".join(lines)


def _plots(fig_dir: Path, data: dict) -> dict:
    fig_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    b1 = [r for r in data["decode"] if r["batch"] == 1]
    # tokens/s and chips vs bits per weight
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for placement, marker in (("tp", "o"), ("pp", "s")):
        rs = sorted([r for r in b1 if r["placement"] == placement], key=lambda r: r["bits_per_weight"])
        ax[0].plot([r["bits_per_weight"] for r in rs], [r["tokens_per_s"] for r in rs], marker, label=placement)
        for r in rs:
            ax[0].annotate(r["fmt"], (r["bits_per_weight"], r["tokens_per_s"]), fontsize=6)
    rs = sorted([r for r in b1 if r["placement"] == "tp"], key=lambda r: r["bits_per_weight"])
    ax[1].plot([r["bits_per_weight"] for r in rs], [r["chips"] for r in rs], "o-")
    for r in rs:
        ax[1].annotate(r["fmt"], (r["bits_per_weight"], r["chips"]), fontsize=6)
    ax[0].set(xlabel="bits per weight (headers included)", ylabel="tokens/s (batch 1)", yscale="log",
              title=f"{data['model']} on {data['chip']}")
    ax[0].legend(title="placement")
    ax[1].set(xlabel="bits per weight", ylabel="chips to hold the model", title="chips")
    fig.tight_layout()
    out["throughput"] = fig_dir / "throughput_chips.png"
    fig.savefig(out["throughput"], dpi=110)
    plt.close(fig)
    # per-token time breakdown
    fig, ax = plt.subplots(figsize=(10, 4))
    rs = [r for r in b1]
    labels = [f"{r['fmt']}\n{r['placement']}" for r in rs]
    bottom = [0.0] * len(rs)
    for key, name in (("t_stream_s", "weight streaming"), ("t_compute_s", "compute (overlaps streaming)"),
                      ("t_comm_s", "chip-to-chip")):
        vals = [r[key] * 1e6 for r in rs]
        ax.bar(range(len(rs)), vals, bottom=bottom, label=name)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(rs)), labels, fontsize=6)
    ax.set(ylabel="us per token (batch 1)", title="per-token time breakdown")
    ax.legend()
    fig.tight_layout()
    out["breakdown"] = fig_dir / "time_breakdown.png"
    fig.savefig(out["breakdown"], dpi=110)
    plt.close(fig)
    # roofline of the tile: MACs/cycle against weight bits per cycle
    m = data["measurements"]
    fig, ax = plt.subplots(figsize=(6, 4))
    L, W = m["lanes"], m["bus_width"]
    import numpy as np
    bpw = np.linspace(2, 16, 200)
    peak = 2 * L
    ax.plot(bpw, np.minimum(peak, W / bpw), label=f"roofline: min(2L = {peak}, W / bpw), W = {W}")
    for run in m["runs"]:
        pb = run["stream_bits"] / (run["k"] * run["n"])
        macs = run["k"] * run["n"] / run["cycles"]
        ax.plot([pb], [macs], "o", label=f"measured {run['format']} K={run['k']} N={run['n']}")
    ax.set(xlabel="stream bits per weight", ylabel="MACs per cycle", title="tile roofline (bus-bound below 2L)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out["roofline"] = fig_dir / "tile_roofline.png"
    fig.savefig(out["roofline"], dpi=110)
    plt.close(fig)
    q = data.get("quality")
    if q and q.get("formats"):
        fig, ax = plt.subplots(figsize=(7, 4))
        metric = "ppl_delta" if any(f.get("ppl_delta") is not None for f in q["formats"]) else "nrmse_mean"
        for f in q["formats"]:
            if f.get(metric) is None or f.get("bits_per_weight", 99) > 9:
                continue
            ax.plot(f["bits_per_weight"], f[metric], "o")
            ax.annotate(f["label"], (f["bits_per_weight"], f[metric]), fontsize=6)
        ax.set(xlabel="bits per weight", ylabel=metric, title=f"quality vs bits: {q.get('model')}", yscale="log")
        fig.tight_layout()
        out["quality"] = fig_dir / "quality.png"
        fig.savefig(out["quality"], dpi=110)
        plt.close(fig)
    return out


def _table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def write_report(out_dir, model_key="llama2-70b", measurements=None) -> "tuple[Path, dict]":
    """Write ``report.md``, ``report.json`` and the plots into ``out_dir``."""
    out_dir = Path(out_dir)
    data = build(model_key, measurements)
    plots = _plots(out_dir, data)
    m = data["measurements"]
    md = [f"# septet report: {data['model']} on an LPU-like chip", ""]
    if m["provisional"]:
        md += ["**PROVISIONAL: the measurement file is not from a simulation.**", ""]
    md += [f"Measurements: `{m['source']}` (tile of {m['lanes']} lanes on a {m['bus_width']}-bit bus; "
           f"bus efficiency {m['bus_efficiency']:.6f}, fixed latency {m['latency_cycles']} cycles"
           + (f"; 4+3/4+4 cycle ratio {m['cycle_ratio_4p3_4p4']:.5f} against 7/8 = 0.875" if m["cycle_ratio_4p3_4p4"]
              else "") + ").", "",
           "Regenerate: `septet report --model llama2-70b --out DIR [--measurements F]`; fresh measurements: "
           "`septet run` or `septet sim --json`.", "",
           "## Verdict", "", "```", verdict(measurements, model_key), "```", "",
           "## Decode on the LPU-like chip", "",
           "Assumptions: weights in SRAM on the fewest chips that hold them; tensor parallel (tp) splits every "
           "layer over all chips with two all-reduces per layer; pipeline (pp) runs whole layers per chip one "
           "after another at batch 1. Streaming rate = SRAM bandwidth x the tile's measured bus efficiency.", ""]
    md.append(_table(["format", "bpw", "streamed GB/token", "chips", "placement", "batch", "stream us", "compute us",
                      "comm us", "tok/s", "J/token"],
                     [[r["fmt"], f"{r['bits_per_weight']:.3f}", f"{r['streamed_bytes'] / 1e9:.1f}", r["chips"],
                       r["placement"], r["batch"], f"{r['t_stream_s'] * 1e6:.1f}", f"{r['t_compute_s'] * 1e6:.1f}",
                       f"{r['t_comm_s'] * 1e6:.1f}", f"{r['tokens_per_s']:.0f}", f"{r['energy_j_per_token']:.3f}"]
                      for r in data["decode"]]))
    md += ["", f"![tokens/s and chips]({plots['throughput'].name})", "",
           f"![time breakdown]({plots['breakdown'].name})", "", f"![tile roofline]({plots['roofline'].name})", "",
           "## GPU-like check (HBM bound)", "",
           "LLaMA-2-70B Q4_0 in llama.cpp measured about 25.9 tok/s on one H100 PCIe; the bound below is what "
           "2.0 TB/s allows.", ""]
    md.append(_table(["format", "bpw", "GB/token", "bound tok/s"],
                     [[r["fmt"], f"{r['bits_per_weight']:.3f}", f"{r['streamed_bytes'] / 1e9:.1f}",
                       f"{r['tokens_per_s']:.1f}"] if "does_not_fit" not in r else [r["fmt"], "", "", r["does_not_fit"]]
                      for r in data["gpu"]]))
    md += ["", "## Scaling across models (pipeline placement, batch 1)", ""]
    md.append(_table(["model", "format", "chips", "tok/s"],
                     [[r["model"], r["fmt"], r["chips"], f"{r['tokens_per_s']:.0f}"] for r in data["scaling"]]))
    md += ["", "## Seed audit", ""]
    md.append(_table(["claim", "seed", "ours", "command", "verdict", "why"],
                     [[a["claim"], a["seed"], a["ours"], f"`{a['command']}`", a["verdict"], a["reason"]]
                      for a in data["audit"]]))
    md += ["", "## Weight error per layer type (Gaussian weights, LLaMA-70B K, per column)", ""]
    layers = ["qkv", "gate_up", "down", "lm_head", "average"]
    md.append(_table(["format"] + layers, [[name] + [f"{v[k]:.2f}%" for k in layers]
                                           for name, v in data["gaussian_rmse"].items()]))
    q = data["quality"]
    md += ["", "## Quality on a real LLM", ""]
    if q:
        md += [f"From `{QUALITY_DEFAULT.name}` (`{q.get('command', 'septet quality')}`).", ""]
        if "quality" in plots:
            md += [f"![quality]({plots['quality'].name})", ""]
        md.append(_table(["format", "bpw", "nRMSE", "perplexity", "delta"],
                         [[f["label"], f"{f.get('bits_per_weight', float('nan')):.3f}",
                           f"{100 * f['nrmse_mean']:.2f}%" if f.get("nrmse_mean") is not None else "",
                           f"{f['perplexity']:.2f}" if f.get("perplexity") is not None else "",
                           f"{f['ppl_delta']:+.2f}" if f.get("ppl_delta") is not None else ""]
                          for f in q.get("formats", [])]))
    else:
        md.append(f"No quality study result at `{QUALITY_DEFAULT}`: run `septet quality --model smollm2 --json`.")
    md += ["", "## Sources of every constant", ""]
    md.append(_table(["constant", "value source"], [[k, v] for k, v in data["sources"].items()]))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.md"
    path.write_text("\n".join(md) + "\n")
    (out_dir / "report.json").write_text(json.dumps(data, indent=1, default=str))
    return path, data
