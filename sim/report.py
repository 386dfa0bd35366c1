"""The report: tables, plots and the verdict, from a measurements file and the configs."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sim.audit import audit, gaussian_rmse  # noqa: E402
from sim.config import load_chip, load_model  # noqa: E402
from sim.model import (  # noqa: E402
    WEIGHT_FORMATS, decode, gpu_decode, load_measurement, tile_scaling, weight_format,
)

__all__ = ["build", "write_report", "verdict", "load_quality", "QUALITY_DEFAULT"]

QUALITY_DEFAULT = Path(__file__).with_name("data") / "quality_smollm2.json"
SCALING_MODELS = ("llama2-70b", "llama3-70b", "llama3-8b")


HOP_LATENCIES_S = (0.1e-6, 0.3e-6, 0.6e-6, 1.2e-6, 2.4e-6)


def load_quality(path=None) -> "tuple[dict | None, Path]":
    """The quality study's JSON (``septet quality --json``), or ``None`` where it does not exist."""
    path = Path(path) if path is not None else QUALITY_DEFAULT
    if not path.exists():
        return None, path
    try:
        return json.loads(path.read_text()), path
    except json.JSONDecodeError as exc:
        raise ValueError(f"quality file {str(path)!r} is not JSON: {exc}") from None


def _quality_pair(q) -> "tuple[dict, dict] | None":
    """(best 4+3, INT4 with groups of 128) entries of a quality study, if both were measured."""
    if not q or not q.get("formats"):
        return None
    by = {f["label"]: f for f in q["formats"]}
    best = (q.get("verdict") or {}).get("best_4p3", {}).get("label")
    int4 = by.get((q.get("verdict") or {}).get("int4_anchor") or "4+4 shared g128")
    if best in by and int4:
        return by[best], int4
    return None


def build(model_key="llama2-70b", measurements=None, chip_key="groq-tsp", gpu_key="h100-pcie", batch=8,
          quality=None) -> dict:
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
    tiles = {wf.label: tile_scaling(chip, meas, wf.bits_per_weight(model.hidden)) for wf in WEIGHT_FORMATS}
    # The LPU check: the published deployment's chip count against the model's bound.
    published = []
    for label in ("8+8", "4+4", "4+3"):
        wf = weight_format(label)
        for placement in ("tp", "pp"):
            try:
                d = decode(model, chip, wf, meas, placement=placement, chips=chip.published_chips).as_dict()
            except ValueError as exc:
                d = {"fmt": wf.label, "placement": placement, "does_not_fit": str(exc)}
            published.append(d)
    sensitivity = []
    for hop in HOP_LATENCIES_S:
        c = chip.replace(c2c_hop_latency_s=hop)
        for placement in ("tp", "pp"):
            i4, s35 = (decode(model, c, weight_format(f), meas, placement=placement) for f in ("4+4", "4+3"))
            sensitivity.append({"hop_latency_s": hop, "placement": placement, "int4_tokens_per_s": i4.tokens_per_s,
                                "s35_tokens_per_s": s35.tokens_per_s,
                                "gain": s35.tokens_per_s / i4.tokens_per_s - 1})
    rmse = gaussian_rmse()
    quality, quality_path = load_quality(quality)
    return {
        "model": model.name, "chip": chip.name, "gpu": gpu.name,
        "measurements": {"source": meas.source, "provisional": meas.provisional,
                         "bus_efficiency": meas.bus_efficiency, "latency_cycles": meas.latency_cycles,
                         "bus_width": meas.bus_width, "lanes": meas.lanes,
                         "cycle_ratio_4p3_4p4": meas.cycle_ratio_43_44, "runs": list(meas.runs)},
        "context_tokens": chip.context_tokens, "batch": batch,
        "decode": rows, "gpu": gpu_rows, "scaling": scaling, "gaussian_rmse": rmse, "tile_scaling": tiles,
        "published_check": published, "published_tokens_per_s": chip.published_tokens_per_s,
        "published_chips": chip.published_chips, "hop_sensitivity": sensitivity,
        "gpu_published_q4_0_tokens_per_s": gpu.llama2_70b_q4_0_tokens_per_s,
        "quality_source": str(quality_path) if quality else None,
        "audit": [r.__dict__ for r in audit(model, chip, gpu, meas, rmse)],
        "quality": quality,
        "sources": {**{f"chip.{k}": chip.source(k) for k in chip.values if k != "kind"},
                    **{f"model.{k}": model.source(k) for k in model.values},
                    **{f"gpu.{k}": gpu.source(k) for k in gpu.values if k != "kind"}},
    }


def verdict(measurements=None, model_key="llama2-70b", quality=None) -> str:
    """What 3.5-bit buys over INT4 on ``model_key``, in chips, tokens/s and error (``make run`` prints it).

    ``measurements``: a ``septet.measurement/1`` file (default: the committed one);
    ``quality``: a ``septet quality --json`` result (default ``sim/data/quality_smollm2.json``).
    """
    model, chip, gpu = load_model(model_key), load_chip("groq-tsp"), load_chip("h100-pcie")
    meas = load_measurement(measurements)
    i4, s35 = weight_format("4+4"), weight_format("4+3")
    tp = [decode(model, chip, wf, meas, placement="tp") for wf in (i4, s35)]
    pp = [decode(model, chip, wf, meas, placement="pp") for wf in (i4, s35)]
    g = [gpu_decode(model, gpu, wf) for wf in (i4, s35)]
    rmse = gaussian_rmse(columns=16)
    lines = []
    if meas.provisional:
        lines += ["!" * 78, "!! PROVISIONAL: the measurement file is not from a simulation; rerun 'septet run' !!",
                  "!" * 78]
    lines += [f"Verdict for {model.name}: 3.5-bit (4+3, own grids, groups of 128) against INT4 "
              f"(4+4, one scale and zero per group of 128)",
              f"  tile measured in {meas.source}: bus efficiency {meas.bus_efficiency:.5f}"
              + (f", 4+3/4+4 cycles {meas.cycle_ratio_43_44:.5f} (7/8 = 0.87500)" if meas.cycle_ratio_43_44 else "")
              + (" [PROVISIONAL]" if meas.provisional else ""),
              f"  bits per weight (headers included): {s35.bits_per_weight(model.hidden):.3f} vs "
              f"{i4.bits_per_weight(model.hidden):.3f} ({s35.bits_per_weight(model.hidden) / i4.bits_per_weight(model.hidden) - 1:+.1%})",
              f"  LPU chips to hold it: {tp[1].chips} vs {tp[0].chips} ({tp[1].chips / tp[0].chips - 1:+.1%})",
              f"  LPU tokens/s, tensor parallel: {tp[1].tokens_per_s:.0f} vs {tp[0].tokens_per_s:.0f} "
              f"({tp[1].tokens_per_s / tp[0].tokens_per_s - 1:+.1%}: chip-to-chip latency dominates)",
              f"  LPU tokens/s, pipeline: {pp[1].tokens_per_s:.0f} vs {pp[0].tokens_per_s:.0f} "
              f"({pp[1].tokens_per_s / pp[0].tokens_per_s - 1:+.1%})",
              f"  one H100 (HBM bound): {g[1].tokens_per_s:.1f} vs {g[0].tokens_per_s:.1f} tok/s "
              f"({g[1].tokens_per_s / g[0].tokens_per_s - 1:+.1%})",
              f"  weight error (Gaussian, per column): 4+3 {rmse['4+3 own grids']['average']:.1f}% vs INT4 "
              f"{rmse['INT4 asymmetric']['average']:.1f}% nRMSE"]
    q, qpath = load_quality(quality)
    pair = _quality_pair(q)
    if pair:
        best, int4 = pair
        lines.append(f"  perplexity on {q.get('model')} (reference {q.get('reference_perplexity', float('nan')):.2f}, "
                     f"{qpath.name}): {best['label']} {best['perplexity']:.2f} at {best['bits_per_weight']:.3f} bpw vs "
                     f"INT4 g128 {int4['perplexity']:.2f} at {int4['bits_per_weight']:.3f} bpw")
    else:
        lines.append(f"  perplexity: no quality study at {qpath} (run 'septet quality --model smollm2')")
    lines.append("  The seed's +34% is out of reach: streaming 7/8 of the code bits gives at most +14.3%, "
                 "and with group scales less.")
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
    # per-token time breakdown: streaming and compute overlap, so only compute beyond streaming adds
    rs = list(b1)
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(rs) + 1.5))
    parts = (("weight + KV streaming", [r["t_stream_s"] for r in rs]),
             ("compute beyond streaming", [max(0.0, r["t_compute_s"] - r["t_stream_s"]) for r in rs]),
             ("chip-to-chip", [r["t_comm_s"] for r in rs]))
    left = [0.0] * len(rs)
    for name, vals in parts:
        us = [v * 1e6 for v in vals]
        ax.barh(range(len(rs)), us, left=left, label=name)
        left = [a + b for a, b in zip(left, us)]
    ax.set_yticks(range(len(rs)), [f"{r['fmt']} ({r['placement']})" for r in rs], fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="us per token (batch 1); the bar is the whole step", title=f"per-token time: {data['model']}")
    ax.legend(fontsize=7)
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
        fig, ax = plt.subplots(figsize=(8, 4.5))
        has_ppl = any(f.get("perplexity") is not None for f in q["formats"])
        metric = "perplexity" if has_ppl else "nrmse_mean"
        pair = _quality_pair(q)
        named = {f["label"] for f in pair} if pair else set()
        colours = {"septet": "tab:blue", "ggml": "tab:orange"}
        for f in q["formats"]:
            if f.get(metric) is None or f["family"] == "reference" or f.get("degenerate"):
                continue
            ax.plot(f["bits_per_weight"], f[metric], "o", color=colours.get(f["family"], "tab:gray"),
                    alpha=1.0 if f["label"] in named or f["family"] == "ggml" else 0.45)
            if f["label"] in named or f["family"] == "ggml" or f.get("pareto_ppl_delta"):
                ax.annotate(f["label"], (f["bits_per_weight"], f[metric]), fontsize=6,
                            xytext=(3, 3), textcoords="offset points")
        if has_ppl and q.get("reference_perplexity"):
            ax.axhline(q["reference_perplexity"], color="k", lw=0.8, ls="--", label="unquantized reference")
        ax.plot([], [], "o", color="tab:blue", label="septet formats")
        ax.plot([], [], "o", color="tab:orange", label="ggml (llama.cpp) formats")
        ax.set(xlabel="bits per weight (headers included)", ylabel=metric, yscale="log",
               title=f"quality vs bits: {q.get('model')}")
        ax.legend(fontsize=7)
        fig.tight_layout()
        out["quality"] = fig_dir / "quality.png"
        fig.savefig(out["quality"], dpi=110)
        plt.close(fig)
    return out


def _table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def write_report(out_dir, model_key="llama2-70b", measurements=None, quality=None) -> "tuple[Path, dict]":
    """Write ``report.md``, ``report.json`` and the plots into ``out_dir``."""
    out_dir = Path(out_dir)
    data = build(model_key, measurements, quality=quality)
    plots = _plots(out_dir, data)
    m = data["measurements"]
    md = [f"# septet report: {data['model']} on an LPU-like chip", ""]
    if m["provisional"]:
        md += ["> **PROVISIONAL: the measurement file is not from a simulation; every tile figure below is a "
               "formula, not a measurement. Rerun `septet run` and pass `--measurements`.**", ""]
    which = "the committed default" if measurements is None else "given with --measurements"
    commands = sorted({r.get("command", "?") for r in m["runs"]})
    sims = sorted({r.get("simulator", "?") for r in m["runs"]})
    md += [f"Measurements ({which}): `{m['source']}`, written by `{'`, `'.join(commands)}` "
           f"on {', '.join(sims)} (tile of {m['lanes']} lanes on a {m['bus_width']}-bit bus; "
           f"bus efficiency {m['bus_efficiency']:.6f}, fixed latency {m['latency_cycles']} cycles"
           + (f"; 4+3/4+4 cycle ratio {m['cycle_ratio_4p3_4p4']:.5f} against 7/8 = 0.875" if m["cycle_ratio_4p3_4p4"]
              else "") + ").", "",
           "Regenerate: `septet report --model llama2-70b --out DIR [--measurements F]`; fresh measurements: "
           "`septet run` or `septet sim --json`.", "",
           "## Verdict", "", "```", verdict(measurements, model_key), "```", "",
           "## Decode on the LPU-like chip", "",
           "Assumptions: weights in SRAM on the fewest chips that hold them; tensor parallel (tp) splits every "
           "layer over all chips with two all-reduces per layer; pipeline (pp) runs whole layers per chip one "
           "after another (one batch in flight). Streaming rate = SRAM bandwidth x the tile's measured bus "
           "efficiency, plus the tile's fixed latency once per GEMV (the measured runs are per column: group headers "
           "are assumed to stream at the same efficiency, as they are part of the same packed stream). The KV cache (FP16, "
           f"{data['context_tokens']} tokens of context per sequence) is stored beside the weights and read every "
           "step. Streaming and compute overlap, communication does not. Not modelled: prefill, norms and softmax, "
           "host I/O, scheduling slack, so every figure is an upper bound. tok/s counts all sequences of the batch.",
           ""]
    md.append(_table(["format", "bpw", "weights GB/step", "KV GB/step", "chips", "placement", "batch", "stream us",
                      "compute us", "comm us", "tok/s", "J/token"],
                     [[r["fmt"], f"{r['bits_per_weight']:.3f}", f"{r['streamed_bytes'] / 1e9:.1f}",
                       f"{r['kv_bytes'] / 1e9:.2f}", r["chips"],
                       r["placement"], r["batch"], f"{r['t_stream_s'] * 1e6:.1f}", f"{r['t_compute_s'] * 1e6:.1f}",
                       f"{r['t_comm_s'] * 1e6:.1f}", f"{r['tokens_per_s']:.0f}", f"{r['energy_j_per_token']:.3f}"]
                      for r in data["decode"]]))
    md += ["", f"![tokens/s and chips]({plots['throughput'].name})", "",
           f"![time breakdown]({plots['breakdown'].name})", "", f"![tile roofline]({plots['roofline'].name})", "",
           "## From tile to chip", "",
           f"The chip's SRAM delivers {next(iter(data['tile_scaling'].values()))['chip_sram_bits_per_cycle']:,.0f} "
           f"bits a cycle; fed to tiles of the measured {m['bus_width']}-bit bus that is "
           f"{next(iter(data['tile_scaling'].values()))['tiles_per_chip']:,} tiles "
           f"({next(iter(data['tile_scaling'].values()))['tiles_per_superlane']:.1f} per superlane). A tile is "
           "bus-bound while the weights its bus brings per cycle are fewer than its 2 x lanes MACs.", ""]
    md.append(_table(["format", "weights/tile/cycle", "tile MACs/cycle", "bus-bound", "chip weights/cycle",
                      "chip MXM MACs/cycle"],
                     [[k, f"{t['weights_per_tile_cycle']:.2f}", t["tile_macs_per_cycle"], t["bus_bound"],
                       f"{t['chip_weights_per_cycle']:,.0f}", f"{t['chip_mxm_macs_per_cycle']:,}"]
                      for k, t in data["tile_scaling"].items()]))
    md += ["", "## LPU check against the published deployment", "",
           f"Groq served {data['model']} at about {data['published_tokens_per_s']:.0f} tok/s per user on "
           f"{data['published_chips']} chips. The model's bound on that many chips:", ""]
    md.append(_table(["format", "placement", "model tok/s (bound)", "published / bound"],
                     [[r["fmt"], r["placement"], f"{r['tokens_per_s']:.0f}",
                       f"{data['published_tokens_per_s'] / r['tokens_per_s']:.2f}"] if "does_not_fit" not in r
                      else [r["fmt"], r["placement"], r["does_not_fit"], ""] for r in data["published_check"]]))
    md += ["", "The published figure sits below every bound: the tensor-parallel bound assumes an all-reduce of "
           "a few hops per layer, which the real system does not reach; the pipeline bound is the closer one.", "",
           "## Sensitivity to the chip-to-chip hop latency (an assumption)", ""]
    md.append(_table(["hop latency us", "placement", "INT4 g128 tok/s", "4+3 g128 tok/s", "4+3 gain"],
                     [[f"{r['hop_latency_s'] * 1e6:.1f}", r["placement"], f"{r['int4_tokens_per_s']:.0f}",
                       f"{r['s35_tokens_per_s']:.0f}", f"{r['gain']:+.1%}"] for r in data["hop_sensitivity"]]))
    q40 = next((r for r in data["gpu"] if r["fmt"] == "Q4_0" and "tokens_per_s" in r), None)
    md += ["", "## GPU-like check (HBM bound)", "",
           f"LLaMA-2-70B Q4_0 in llama.cpp measured about {data['gpu_published_q4_0_tokens_per_s']} tok/s on one "
           "H100 PCIe; the bound below is what 2.0 TB/s allows"
           + (f" ({q40['tokens_per_s']:.1f} tok/s for Q4_0: llama.cpp reaches "
              f"{data['gpu_published_q4_0_tokens_per_s'] / q40['tokens_per_s']:.0%} of it)" if q40 else "") + ".", ""]
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
        md += [f"From `{data['quality_source']}` (`{q.get('command', 'septet quality')}`).", ""]
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
