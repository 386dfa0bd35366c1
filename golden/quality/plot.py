"""The study's plot: error against bits per weight, every format a point, the Pareto front drawn."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_study"]

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
