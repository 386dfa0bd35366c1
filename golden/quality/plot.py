"""The study's plot: error against bits per weight, every format a point, the Pareto front drawn."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_study", "plot_fair_study"]

_MAX_BPW = 6.0
_COLORS = {"septet": "tab:red", "ggml": "tab:blue", "reference": "black"}


def _panel(ax, formats, key, ylabel, log_y, highlight):
    pts = [f for f in formats if f.get(key) is not None and np.isfinite(f[key]) and f["bits_per_weight"] <= _MAX_BPW]
    for f in pts:
        is_43 = f["family"] == "septet" and f["septet"]["fmt"] == "4+3"
        ax.scatter(f["bits_per_weight"], f[key], color=_COLORS[f["family"]],
                   marker="*" if is_43 else "o", s=80 if is_43 else 30, zorder=3)
        # Label the front, the peers and the best 4+3; the rest are in the table.
        if f.get("pareto_" + key) or f["family"] == "ggml" or f["label"] == highlight:
            fell_back = f["family"] == "ggml" and f["types_used"] != [f["label"]]
            label = f["label"] + (" (" + "+".join(f["types_used"]) + ")" if fell_back else "")
            ax.annotate(label, (f["bits_per_weight"], f[key]), fontsize=7, xytext=(4, 3),
                        textcoords="offset points", fontweight="bold" if f["label"] == highlight else "normal")
    front = sorted((f for f in pts if f.get("pareto_" + key)), key=lambda f: f["bits_per_weight"])
    if front:
        ax.step([f["bits_per_weight"] for f in front], [f[key] for f in front], where="post",
                color="gray", lw=1, ls="--", label="Pareto front", zorder=2)
    ax.scatter([], [], color=_COLORS["septet"], marker="*", label="septet 4+3")
    ax.scatter([], [], color=_COLORS["septet"], marker="o", label="septet 4+4 / 3+3 baselines")
    ax.scatter([], [], color=_COLORS["ggml"], marker="o", label="ggml / llama.cpp")
    ax.legend(fontsize=7)
    beyond = [f["label"] for f in formats if f["bits_per_weight"] > _MAX_BPW]
    if beyond:
        ax.text(0.99, 0.01, f"beyond {_MAX_BPW} bpw: {', '.join(beyond)}", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=7, color="gray")
    ax.set_xlabel("bits per weight (scales and zero points included)")
    ax.set_ylabel(ylabel)
    if log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")


def plot_study(result: dict, path) -> None:
    """Write a PNG: perplexity delta (SmolLM2) and weight nRMSE against bits per weight."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    formats = [f for f in result["formats"] if f["family"] != "reference" and not f.get("degenerate")]
    best = (result.get("verdict") or {}).get("best_4p3") or {}
    highlight = best.get("label")
    has_ppl = any(f.get("ppl_delta") is not None for f in formats)
    fig, axes = plt.subplots(1, 2 if has_ppl else 1, figsize=(14 if has_ppl else 7, 5.5), squeeze=False)
    i = 0
    if has_ppl:
        _panel(axes[0, 0], formats, "ppl_delta",
               "perplexity delta from the reference (Q4_1 file weights)", log_y=True, highlight=highlight)
        axes[0, 0].set_title(f"SmolLM2-135M perplexity (reference {result['reference_perplexity']:.2f})")
        i = 1
    _panel(axes[0, i], formats, "nrmse_mean", "normalized weight RMSE (mean over matrices)", log_y=True,
           highlight=highlight)
    axes[0, i].set_title(f"weight error, {result['model']}")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def plot_fair_study(result: dict, path) -> None:
    """Write a PNG of the fair study: perplexity ratio to the reference (95% CI) and held-out output error
    against bits per weight, every point labelled.

    The reference is SmolLM2's Q4_1-dequantized file weights, so a ratio of 1 is
    that 4-bit model's perplexity, not a float model's.
    """
    import os
    import pathlib

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [f for f in result["formats"] if f["family"] != "reference" and f["bits_per_weight"] <= _MAX_BPW]
    ref_ppl = result["reference_perplexity"]
    fig, axes = plt.subplots(1, 2, figsize=(15, 6.5))
    colours = {"septet": "tab:red", "ggml": "tab:blue"}
    for ax, key in zip(axes, ("ratio", "out_err")):
        for f in rows:
            is_43 = f["family"] == "septet" and f["method"]["fmt"] == "4+3"
            colour = colours.get(f["family"], "gray") if is_43 or f["family"] == "ggml" else "tab:green"
            x = f["bits_per_weight"]
            if key == "ratio":
                ci = f["vs_reference"]["pooled"]
                y = ci["ratio"]
                ax.errorbar(x, y, yerr=[[y - ci["low"]], [ci["high"] - y]], fmt="*" if is_43 else "o",
                            color=colour, ms=9 if is_43 else 5, capsize=2, zorder=3)
            else:
                y = 100 * f["out_err_mean"]
                ax.plot(x, y, "*" if is_43 else "o", color=colour, ms=9 if is_43 else 5, zorder=3)
            label = f["label"]
            if f["family"] == "ggml":
                used = sorted({t for ts in f["types_used"].values() for t in ts})
                label += f" ({'+'.join(used)})"
            ax.annotate(label, (x, y), fontsize=6.5, xytext=(4, 2), textcoords="offset points")
        ax.plot([], [], "*", color="tab:red", label="septet 4+3")
        ax.plot([], [], "o", color="tab:green", label="INT4 / INT3 (golden, same code)")
        ax.plot([], [], "o", color="tab:blue", label="ggml / llama.cpp, with importance matrix")
        ax.set_xlabel("bits per weight (group headers included)")
        ax.grid(alpha=0.3)
    axes[0].axhline(1.0, color="black", lw=0.8, ls="--",
                    label=f"reference: Q4_1-dequantized SmolLM2 (ppl {ref_ppl:.2f})")
    axes[0].set_ylabel("perplexity / reference (pooled windows, paired bootstrap 95% CI)")
    axes[0].set_title("SmolLM2-135M on held-out text (" + ", ".join(
        f"{n} x {result['seq_len']} {k}" for k, n in result["windows_per_kind"].items()) + ")")
    axes[1].set_ylabel("output error on held-out activations, % (mean over linears)")
    axes[1].set_title(f"calibration: {result['cal_tokens']} tokens of other pydoc topics")
    for ax in axes:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = pathlib.Path(path)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=130)
    plt.close(fig)
    os.replace(tmp, path)
