"""The study's plot: error against bits per weight, every format a point, the Pareto front drawn."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_study"]

_COLORS = {"septet": "tab:red", "ggml": "tab:blue", "reference": "black"}


def _panel(ax, formats, key, ylabel, log_y):
    pts = [f for f in formats if f.get(key) is not None and np.isfinite(f[key])]
    for f in pts:
        is_43 = f["family"] == "septet" and f["septet"]["fmt"] == "4+3"
        ax.scatter(f["bits_per_weight"], f[key], color=_COLORS[f["family"]],
                   marker="*" if is_43 else "o", s=70 if is_43 else 30, zorder=3)
        ax.annotate(f["label"], (f["bits_per_weight"], f[key]), fontsize=6, xytext=(3, 2),
                    textcoords="offset points")
    front = sorted((f for f in pts if f.get("pareto_" + key)), key=lambda f: f["bits_per_weight"])
    if front:
        ax.step([f["bits_per_weight"] for f in front], [f[key] for f in front], where="post",
                color="gray", lw=1, ls="--", label="Pareto front", zorder=2)
        ax.legend(fontsize=7)
    ax.set_xlabel("bits per weight (scales and zero points included)")
    ax.set_ylabel(ylabel)
    if log_y:
        ax.set_yscale("symlog", linthresh=0.1) if key == "ppl_delta" else ax.set_yscale("log")
    ax.grid(alpha=0.3)


def plot_study(result: dict, path) -> None:
    """Write a PNG: perplexity delta (SmolLM2) and weight nRMSE against bits per weight."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    formats = [f for f in result["formats"] if f["family"] != "reference"]
    has_ppl = any(f.get("ppl_delta") is not None for f in formats)
    fig, axes = plt.subplots(1, 2 if has_ppl else 1, figsize=(14 if has_ppl else 7, 5.5), squeeze=False)
    i = 0
    if has_ppl:
        _panel(axes[0, 0], formats, "ppl_delta",
               "perplexity delta from the reference (Q4_1 file weights)", log_y=True)
        axes[0, 0].set_title(f"SmolLM2-135M perplexity (reference {result['reference_perplexity']:.2f})")
        i = 1
    _panel(axes[0, i], formats, "nrmse_mean", "normalized weight RMSE (mean over matrices)", log_y=True)
    axes[0, i].set_title(f"weight error, {result['model']} (red stars: 4+3 septet)")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
