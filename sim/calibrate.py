"""Calibration as a product feature: fit the model's free constants on part of the observations, judge it on the rest.

Each calibration group is one software stack on one kind of chip (Groq's
compiler on the TSP; llama.cpp's CUDA build as of Dec 2023, which split every
matrix over the GPUs; llama.cpp as of May 2024, which gives each GPU whole
layers). Its free constants enter the token time linearly, so the fit is a
weighted least-squares solve (relative error, closed form, no optimiser):

* ``groq-lpu``: ``layer_fixed_s``, the fixed cost per layer;
* ``llama.cpp-*``: ``bandwidth_fraction`` (of the datasheet memory bandwidth,
  fitted as its inverse), ``layer_fixed_s`` and ``sync_s`` (per layer and
  all-reduce step with row split, per GPU boundary with layer split).

Rows with ``role = "fit"`` set the constants; rows with ``role = "holdout"`` are
predicted and reported, never fitted. A prediction's range is the spread of the
held-out errors of its group (:meth:`Calibration.predict_range`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sim.config import load_chip, load_model
from sim.model import DEFAULT_MEASUREMENTS, WeightFormat, decode, gpu_decode, load_measurement, stored_parameters, \
    weight_format
from sim.observed import OBSERVED_DEFAULT, PRECISIONS, Observation, load_observations

__all__ = ["GROUPS", "Calibration", "calibrate", "calibration", "observation_format", "MISS_FACTOR", "NAMED_MISSES",
           "gpu_constants", "refit_lpu"]

#: The goal: every held-out observation within this factor of the model, or its miss named.
MISS_FACTOR = 1.5


@dataclass(frozen=True)
class Group:
    kind: str                    # "sram" or "hbm"
    free: tuple
    description: str
    split: "str | None" = None   # GPU groups: how several GPUs share a model


GROUPS = {
    "groq-lpu": Group("sram", ("layer_fixed_s",),
                      "Groq compiler on GroqChip TSPs (weights about 8-bit, tensor parallel within a layer's heads, "
                      "pipeline across the rest)"),
    "llama.cpp-2023-12": Group("hbm", ("inv_bandwidth_fraction", "layer_fixed_s", "sync_s"),
                               "llama.cpp CUDA, Dec 2023: several GPUs split every matrix (row split)", "rows"),
    "llama.cpp-2024-05": Group("hbm", ("inv_bandwidth_fraction", "layer_fixed_s", "sync_s"),
                               "llama.cpp CUDA, May 2024: several GPUs hold whole layers (layer split)", "layers"),
}

#: Held-out misses beyond MISS_FACTOR whose cause is known, by observation id, with the cause.
#: They are still reported; they do not widen the prediction ranges.
NAMED_MISSES = {
    "groq-moor-2023-08#1": "Aug 2023 demo on Groq's compiler of the time: Groq's own figure for the same model on "
                           "the same chips tripled by Feb 2024 (100 -> 300 tok/s), a software change the "
                           "per-layer constant fitted on 2024 figures does not describe",
    "groq-techpowerup-2024-02#3": "mixture of experts: the per-layer constant is fitted on dense models; Mixtral "
                                  "adds a router and a top-2 expert dispatch to every layer (two expert FFNs, "
                                  "on chips chosen per token), vector and network work the model leaves out",
    "xiongjiedai-llama2-2023-12#38": "GPU generation: the bandwidth fraction is fitted on H100 and RTX 3090 rows; "
                                     "Ada cards (RTX 4080/4090/5000/6000 Ada) reach more of their datasheet "
                                     "bandwidth (every single-card Ada row is under-predicted, 0.75-0.86), and "
                                     "three cards compound it with the row-split synchronisation",
}


def gpu_constants(group: str, cal: "Calibration | None" = None) -> dict:
    """Keyword arguments of :func:`sim.model.gpu_decode` for a GPU calibration group."""
    c = (cal or calibration()).constants(group)
    return {"bandwidth_fraction": c["bandwidth_fraction"], "layer_fixed_s": c["layer_fixed_s"],
            "sync_s": c["sync_s"], "split": GROUPS[group].split}


def observation_format(obs: Observation, file_gib: dict) -> WeightFormat:
    """The weight format a row's precision stands for (Q4_K_M by its published file size)."""
    if obs.precision == "q4_k_m":
        bpw = file_gib[obs.model] * 2 ** 30 * 8 / stored_parameters(load_model(obs.model))
        return WeightFormat("Q4_K_M", fixed_bits_per_weight=bpw)
    label = PRECISIONS[obs.precision]
    return weight_format(label, group_size=None) if label == "8+8" else weight_format(label)


def _decode(obs: Observation, fmt: WeightFormat, consts: dict, meas, chip=None):
    group = GROUPS[obs.calibration]
    model, chip = load_model(obs.model), chip or load_chip(obs.hardware)
    if chip.kind != group.kind:
        raise ValueError(f"{obs.id}: calibration group {obs.calibration} models {group.kind} chips; "
                         f"{obs.hardware} is {chip.kind}")
    if group.kind == "sram":
        return decode(model, chip, fmt, meas, layer_fixed_s=consts["layer_fixed_s"], batch=obs.batch,
                      context=obs.context, chips=obs.count or None)
    return gpu_decode(model, chip, fmt, bandwidth_fraction=1 / consts["inv_bandwidth_fraction"],
                      layer_fixed_s=consts["layer_fixed_s"], sync_s=consts["sync_s"], split=group.split,
                      count=obs.count, batch=obs.batch, context=obs.context)


def _terms(obs, fmt, meas, chip=None) -> "tuple[float, np.ndarray]":
    """``(known, x)``: the token time is ``known + x . theta`` in the group's free constants ``theta``."""
    group = GROUPS[obs.calibration]
    if group.kind == "sram":
        d = _decode(obs, fmt, {"layer_fixed_s": 0.0}, meas, chip)
        return max(d.t_stream_s, d.t_compute_s) + d.t_comm_s, np.array([load_model(obs.model).layers], float)
    d = _decode(obs, fmt, {"inv_bandwidth_fraction": 1.0, "layer_fixed_s": 0.0, "sync_s": 1.0}, meas)
    # compute is far below streaming at batch 1 on every GPU here; the fit takes the streaming term alone
    return 0.0, np.array([d.t_stream_s, load_model(obs.model).layers, d.t_comm_s], float)


@dataclass
class Calibration:
    """Fitted constants per group, and every observation's prediction and error."""

    constants_by_group: dict
    rows: list = field(repr=False)
    source: str = ""

    def constants(self, group: str) -> dict:
        if group not in self.constants_by_group:
            raise ValueError(f"no calibration for group {group!r}; groups: {', '.join(self.constants_by_group)}")
        return self.constants_by_group[group]

    def group_rows(self, group: str, role: "str | None" = None) -> list:
        return [r for r in self.rows if r["group"] == group and (role is None or r["role"] == role)]

    def error_range(self, group: str) -> "tuple[float, float]":
        """(lowest, highest) predicted/measured ratio over the group's held-out rows (named misses excepted)."""
        ratios = [r["ratio"] for r in self.group_rows(group, "holdout") if r["id"] not in NAMED_MISSES]
        if not ratios:
            ratios = [r["ratio"] for r in self.group_rows(group, "fit")]
        return min(ratios), max(ratios)

    def predict_range(self, group: str, tokens_per_s: float) -> "tuple[float, float]":
        """The range a measurement would fall in, were the model as wrong as on the group's held-out rows."""
        lo, hi = self.error_range(group)
        return tokens_per_s / max(hi, 1.0), tokens_per_s / min(lo, 1.0)

    def summary(self) -> "list[dict]":
        out = []
        for g in self.constants_by_group:
            for role in ("fit", "holdout"):
                rs = self.group_rows(g, role)
                if not rs:
                    continue
                logs = [abs(math.log(r["ratio"])) for r in rs]
                out.append({"group": g, "role": role, "n": len(rs),
                            "median_factor": float(math.exp(np.median(logs))),
                            "max_factor": float(math.exp(max(logs))),
                            "within": sum(r["within"] for r in rs),
                            "misses": [r["id"] for r in rs if not r["within"]]})
        return out


def calibrate(observed=None, measurements=None) -> Calibration:
    """Fit every group on its ``fit`` rows and predict every row (fit and held out)."""
    obs, file_gib = load_observations(observed)
    meas = load_measurement(measurements)
    unknown = sorted({o.calibration for o in obs} - set(GROUPS))
    if unknown:
        raise ValueError(f"observations name calibration groups {unknown}; known: {', '.join(GROUPS)}")
    consts = {}
    for g, group in GROUPS.items():
        fit = [o for o in obs if o.calibration == g and o.role == "fit"]
        if len(fit) < len(group.free):
            raise ValueError(f"group {g} needs at least {len(group.free)} fit rows, has {len(fit)}")
        A, b = [], []
        for o in fit:
            known, x = _terms(o, observation_format(o, file_gib), meas)
            t = o.token_time_s
            A.append(x / t)
            b.append((t - known) / t)
        theta, *_ = np.linalg.lstsq(np.array(A), np.array(b), rcond=None)
        c = dict(zip(group.free, (float(v) for v in theta)))
        bad = [k for k, v in c.items() if not v > 0]
        if bad:
            raise ValueError(f"group {g}: fitted {', '.join(bad)} not positive ({c}); the fit rows do not "
                             f"determine them")
        if "inv_bandwidth_fraction" in c:
            c["bandwidth_fraction"] = 1 / c["inv_bandwidth_fraction"]
        consts[g] = c
    rows = []
    for o in obs:
        fmt = observation_format(o, file_gib)
        d = _decode(o, fmt, consts[o.calibration], meas)
        pred = o.figure_from_token_time(d.t_token_s)
        ratio = pred / o.tokens_per_s
        rows.append({"id": o.id, "group": o.calibration, "role": o.role, "hardware": o.hardware, "count": d.chips,
                     "count_published": o.count > 0, "model": o.model, "precision": o.precision,
                     "context": o.context, "timed": o.timed, "date": o.date, "source": o.source, "url": o.url,
                     "measured": o.tokens_per_s, "predicted": pred, "ratio": ratio,
                     "within": max(ratio, 1 / ratio) <= MISS_FACTOR, "miss_cause": NAMED_MISSES.get(o.id),
                     "tp": d.tp, "pp": d.pp, "t_stream_s": d.t_stream_s, "t_layer_fixed_s": d.t_layer_fixed_s,
                     "t_comm_s": d.t_comm_s})
    return Calibration(consts, rows, str(observed or OBSERVED_DEFAULT))


def refit_lpu(chip, cal: Calibration, observed=None, measurements=None) -> float:
    """The ``groq-lpu`` per-layer cost refitted for a changed chip (a sensitivity study of an assumed constant)."""
    obs, file_gib = load_observations(observed)
    meas = load_measurement(measurements)
    A, b = [], []
    for o in obs:
        if o.calibration == "groq-lpu" and o.role == "fit":
            known, x = _terms(o, observation_format(o, file_gib), meas, chip)
            t = o.token_time_s
            A.append(x / t)
            b.append((t - known) / t)
    theta, *_ = np.linalg.lstsq(np.array(A), np.array(b), rcond=None)
    return float(theta[0])


_CACHE: dict = {}


def calibration(observed=None, measurements=None) -> Calibration:
    """:func:`calibrate`, cached on the content of the observations, measurements and configs it reads."""
    from sim.config import CONFIG_DIR

    h = hashlib.sha256()
    for p in [Path(observed or OBSERVED_DEFAULT), Path(measurements or DEFAULT_MEASUREMENTS),
              *sorted(CONFIG_DIR.glob("*.toml"))]:
        h.update(str(p).encode())
        h.update(p.read_bytes() if p.exists() else b"-")
    key = h.hexdigest()
    if key not in _CACHE:
        _CACHE[key] = calibrate(observed, measurements)
    return _CACHE[key]
