"""The throughput model: measured tile cycles scaled to a chip and to LLM decode, calibrated on measured systems.

Bits per weight come from golden (:meth:`golden.format.Format.stored_bits_per_column`),
the tile's bus efficiency and fixed latency from a measurements JSON written by
``septet sim`` / ``septet run`` (:mod:`tb.measurement`), every chip and model
constant from ``sim/configs`` with its source, and the constants no datasheet
gives (a fixed cost per layer, the fraction of memory bandwidth software reaches,
the cost of synchronising chips) from public measurements
(``sim/data/observed.toml``) through :mod:`sim.calibrate`, which reports the
error on measurements the fit never saw.

The time of one batch-1 decode step is a sum of terms (:class:`Decode` keeps each):

LPU-like chip (:func:`decode`), weights in SRAM:

* mapping (:func:`lpu_mapping`): tensor parallel over ``tp`` chips, the largest
  power of two that divides the attention heads and leaves every chip at least
  one MXM width (320) of FFN columns; key/value projections and the KV cache
  split only ``min(tp, kv_heads)`` ways (a KV head is replicated, not split);
  pipeline over ``pp = ceil(chips / tp)`` groups, which at batch 1 run one
  after another;
* weight and KV streaming: the bytes one tensor-parallel chip holds, at the
  chip's feed rate (SRAM bandwidth x the tile's measured bus efficiency, plus the
  tile's fixed latency once per GEMV); overlaps with compute at the precision
  used (INT8 ops for integer formats, FP16 for FP16);
* fixed cost per layer (fitted): norms, RoPE, softmax, SiLU, residual adds,
  synchronisation: the vector units' work, independent of the weight bits;
* communication: two all-reduces per layer over the ``tp`` chips, each
  ``ceil(log2 tp)`` hops, plus one hop per pipeline boundary.

GPU-like chip (:func:`gpu_decode`), weights in HBM, ``n`` GPUs:

* streaming at a fitted fraction of the HBM bandwidth; with ``split="rows"``
  every matrix is split over the GPUs, which stream at once; with
  ``split="layers"`` each GPU holds whole layers and they run in turn;
* fixed cost per layer (fitted: kernel launches and the small kernels);
* synchronisation (fitted): per layer and per ``ceil(log2 n)`` with row split,
  per GPU boundary with layer split.

Power: J/token = chips x power per chip x token time / batch (the whole chips'
power, static and dynamic), beside the bottom-up data-movement and MAC energy.
Not modelled: prefill (first-token time), the host link, MoE routing beyond
streaming the active experts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import gguf

from golden.checks import check_int, check_number
from golden.format import Arithmetic, Format, parse_arithmetic, parse_format
from sim.config import ChipConfig, ModelConfig

__all__ = [
    "WeightFormat", "WEIGHT_FORMATS", "weight_format", "linear_shapes", "Measurement", "load_measurement",
    "DEFAULT_MEASUREMENTS", "decode", "gpu_decode", "Decode", "weight_bytes", "streamed_parameters",
    "stored_parameters", "kv_bytes_per_position", "tile_scaling", "lpu_mapping", "lpu_chips_needed", "allreduce_s",
    "STORED_ONLY", "GPU_SPLITS",
]

#: The tile measurement the report scales by default: the verdict's pair with groups of 128 (``septet run``).
DEFAULT_MEASUREMENTS = Path(__file__).with_name("data") / "measurements_g128.json"


@dataclass(frozen=True)
class WeightFormat:
    """A weight format as the model sees it: stored bits per column of K weights.

    ``fmt`` is a golden septet format (``None`` for FP16 or a gguf type);
    ``gguf_type`` names a llama.cpp block type whose bits come from ``gguf.GGML_QUANT_SIZES``.
    """

    label: str
    fmt: "Format | None" = None
    arithmetic: Arithmetic = Arithmetic.OWN
    group_size: "int | None" = None
    gguf_type: "str | None" = None
    fixed_bits_per_weight: "float | None" = None      # a mixed format known by its file size (llama.cpp Q4_K_M)

    @property
    def is_integer(self) -> bool:
        """Whether the MACs run on integers (INT8 activations) rather than FP16."""
        return self.label != "FP16"

    def bits_per_column(self, K: int) -> float:
        if self.fixed_bits_per_weight is not None:
            return self.fixed_bits_per_weight * K
        if self.fmt is not None:
            return self.fmt.stored_bits_per_column(K, self.group_size, self.arithmetic)
        if self.gguf_type is not None:
            block, nbytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[self.gguf_type]]
            return math.ceil(K / block) * nbytes * 8
        return 16 * K                                          # FP16

    def bits_per_weight(self, K: int = 8192) -> float:
        return self.bits_per_column(K) / K


def weight_format(label: str, group_size: "int | None" = 128, arithmetic=None) -> WeightFormat:
    """A :class:`WeightFormat` from a label: ``fp16``, a gguf type (``q4_0``), or a septet format.

    Septet formats (``4+3``, ``int4`` = ``4+4``, ``int8`` = ``8+8``) take ``group_size``
    (``None`` = per column) and ``arithmetic``; the default arithmetic is ``shared``
    for uniform formats (one scale and zero per group: the usual INT4/INT8
    baseline) and ``own`` for mixed ones (the septet's measured winner).
    Labels name the arithmetic only where it is not the default.
    """
    low = label.lower()
    if low == "fp16":
        return WeightFormat("FP16")
    if low.upper() in gguf.GGMLQuantizationType.__members__ and not low.startswith("f"):
        return WeightFormat(low.upper(), gguf_type=low.upper())
    fmt = parse_format(label)
    uniform = fmt.even_bits == fmt.odd_bits
    default = Arithmetic.SHARED if uniform else Arithmetic.OWN
    arithmetic = default if arithmetic is None else parse_arithmetic(arithmetic)
    fmt.check_arithmetic(arithmetic)
    if group_size is not None and (isinstance(group_size, bool) or not isinstance(group_size, int)
                                   or group_size < 2 or group_size % 2):
        raise ValueError(f"group_size must be None (per column) or an even integer >= 2, got {group_size!r}")
    g = "per column" if group_size is None else f"g{group_size}"
    grid = "" if arithmetic is default else f" {arithmetic.value}"
    return WeightFormat(f"{fmt.name}{grid} {g}", fmt=fmt, arithmetic=arithmetic, group_size=group_size)


#: The formats every table compares (septet formats with groups of 128, the realistic default).
WEIGHT_FORMATS = (
    weight_format("fp16"),
    weight_format("8+8"),
    weight_format("q4_0"),
    weight_format("4+4"),
    weight_format("4+3"),
    weight_format("4+3", arithmetic="shared"),
    weight_format("3+3"),
    weight_format("4+4", group_size=None),
    weight_format("4+3", group_size=None),
)


#: Matrices that are stored but not streamed per token: the embedding (a token reads one row) and
#: the experts a mixture-of-experts token does not use.
STORED_ONLY = ("embed", "gate_proj_idle", "up_proj_idle", "down_proj_idle")


def linear_shapes(model: ModelConfig) -> "list[tuple[str, int, int, int]]":
    """``(name, K, N, count)`` of every weight matrix, streamed per token or stored only (:data:`STORED_ONLY`).

    With tied embeddings the LM head is the embedding. A mixture of experts
    streams ``experts_active`` FFN experts per layer and stores the others as
    ``*_idle`` (the router, ``hidden x experts`` per layer, is left out: under 0.01%).
    """
    h, f, hd = model.hidden, model.ffn, model.head_dim
    L = model.layers
    E, A = model.experts, model.experts_active
    shapes = [
        ("q_proj", h, model.heads * hd, L), ("k_proj", h, model.kv_heads * hd, L),
        ("v_proj", h, model.kv_heads * hd, L), ("o_proj", model.heads * hd, h, L),
        ("gate_proj", h, f, L * A), ("up_proj", h, f, L * A), ("down_proj", f, h, L * A),
        ("lm_head", h, model.vocab, 1),
    ]
    if E > A:
        shapes += [("gate_proj_idle", h, f, L * (E - A)), ("up_proj_idle", h, f, L * (E - A)),
                   ("down_proj_idle", f, h, L * (E - A))]
    if not model.tied_embeddings:
        shapes.append(("embed", h, model.vocab, 1))
    return shapes


def streamed_parameters(model: ModelConfig) -> int:
    return sum(K * N * c for name, K, N, c in linear_shapes(model) if name not in STORED_ONLY)


def stored_parameters(model: ModelConfig) -> int:
    return sum(K * N * c for _, K, N, c in linear_shapes(model))


def weight_bytes(model: ModelConfig, wf: WeightFormat, streamed_only: bool = True) -> float:
    """Bytes of the weights in format ``wf``: streamed per token, or stored (embedding and idle experts included)."""
    return sum(wf.bits_per_column(K) * N * c for name, K, N, c in linear_shapes(model)
               if not (streamed_only and name in STORED_ONLY)) / 8


def _kv_projection_bytes(model: ModelConfig, wf: WeightFormat) -> float:
    return sum(wf.bits_per_column(K) * N * c for name, K, N, c in linear_shapes(model)
               if name in ("k_proj", "v_proj")) / 8


@dataclass(frozen=True)
class Measurement:
    """The tile figures the model scales: bus efficiency and fixed latency, and where they came from."""

    bus_efficiency: float
    latency_cycles: int
    bus_width: int
    lanes: int
    source: str
    provisional: bool
    runs: tuple

    @property
    def cycle_ratio_43_44(self) -> "float | None":
        """Cycles of 4+3 over 4+4 on the same bus and group size: INT4 with one scale and zero (shared) preferred."""
        for r43 in self.runs:
            if r43["format"] != "4+3":
                continue
            peers = [r for r in self.runs if r["format"] == "4+4" and r["bus_width"] == r43["bus_width"]
                     and r.get("group_size") == r43.get("group_size") and r["k"] == r43["k"] and r["n"] == r43["n"]]
            peers.sort(key=lambda r: r.get("arithmetic") != "shared")
            if peers:
                return r43["cycles"] / peers[0]["cycles"]
        return None


def load_measurement(path=None) -> Measurement:
    """Read a ``septet.measurement/1`` file (default: the committed one)."""
    path = Path(path) if path is not None else DEFAULT_MEASUREMENTS
    if not path.exists():
        raise ValueError(f"measurements file {str(path)!r} does not exist; run 'septet sim --json' or "
                         f"'septet run' to write one")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"measurements file {str(path)!r} is not JSON: {exc}") from None
    if doc.get("schema") != "septet.measurement/1" or not doc.get("runs"):
        raise ValueError(f"measurements file {str(path)!r} is not schema septet.measurement/1 with runs")
    runs = tuple(doc["runs"])
    bad = [r for r in runs if r.get("mismatches", 1) != 0]
    if bad:
        raise ValueError(f"measurements file {str(path)!r} has runs with mismatches: the RTL disagreed with "
                         f"golden, so its cycles are not evidence")
    # The bus-bound figure: the largest run without backpressure carries the least latency weight.
    free = [r for r in runs if not r.get("backpressure")] or list(runs)
    best = max(free, key=lambda r: r["ideal_cycles"])
    return Measurement(bus_efficiency=float(best["bus_efficiency"]), latency_cycles=int(best["latency_cycles"]),
                       bus_width=int(best["bus_width"]), lanes=int(best["lanes"]), source=str(path),
                       provisional=bool(doc.get("provisional", False)), runs=runs)


def kv_bytes_per_position(model: ModelConfig, bytes_per_value: float = 2) -> float:
    """KV-cache bytes one context position holds over all layers (keys and values)."""
    return 2 * model.layers * model.kv_heads * model.head_dim * bytes_per_value


def tile_scaling(chip: ChipConfig, meas: Measurement, bits_per_weight: float) -> dict:
    """How the measured tile scales to a superlane and a chip at ``bits_per_weight``.

    The chip's SRAM bandwidth, in bits per clock, is fed to tiles of the measured
    bus width ``W``; each delivers ``W * efficiency / bits_per_weight`` weights a
    cycle and can multiply ``2 * lanes`` (two MACs per lane), so the tile is
    bus-bound while the first is the smaller.
    """
    if chip.kind != "sram":
        raise ValueError(f"tile_scaling() models SRAM chips; {chip.key} is kind {chip.kind!r}")
    if not bits_per_weight > 0:
        raise ValueError(f"bits_per_weight must be > 0, got {bits_per_weight!r}")
    chip_bits_per_cycle = chip.sram_bandwidth_bytes_per_s * 8 / chip.clock_hz
    tiles = math.ceil(chip_bits_per_cycle / meas.bus_width)
    weights_per_tile_cycle = meas.bus_width * meas.bus_efficiency / bits_per_weight
    macs_per_tile_cycle = 2 * meas.lanes
    return {
        "chip_sram_bits_per_cycle": chip_bits_per_cycle,
        "tiles_per_chip": tiles,
        "tiles_per_superlane": tiles / chip.superlanes,
        "lanes_per_chip": tiles * meas.lanes,
        "weights_per_tile_cycle": weights_per_tile_cycle,
        "tile_macs_per_cycle": macs_per_tile_cycle,
        "bus_bound": weights_per_tile_cycle < macs_per_tile_cycle,
        "chip_weights_per_cycle": tiles * min(weights_per_tile_cycle, macs_per_tile_cycle),
        "chip_mxm_macs_per_cycle": chip.macs,
        "chip_bytes_per_s": tiles * meas.bus_width * meas.bus_efficiency * chip.clock_hz / 8,
    }


@dataclass(frozen=True)
class Decode:
    """Decode figures for one model, chip(s), format, mapping and batch; every time term kept apart."""

    model: str
    chip: str
    fmt: str
    bits_per_weight: float
    stored_bytes: float          # weights (embedding, idle experts included) + KV cache of the whole batch
    streamed_bytes: float        # weights read per decode step (all chips)
    kv_bytes: float              # KV cache read per decode step (the whole batch, all chips)
    chips: int
    tp: int                      # chips one layer is split over
    pp: int                      # groups of layers run one after another
    batch: int
    context: int
    t_stream_s: float            # weights + KV cache (+ the tile's fixed latencies on the LPU)
    t_compute_s: float
    t_layer_fixed_s: float       # fitted fixed cost per layer x layers
    t_comm_s: float              # all-reduces and pipeline hops (LPU) or GPU synchronisation
    power_w: "float | None"      # all chips, while decoding (None where the config has no power figure)
    dynamic_j_per_step: "float | None"      # bottom-up SRAM, MAC and link energy (LPU only)
    tiles_per_chip: int = 0

    @property
    def t_token_s(self) -> float:
        """Time of one decode step: streaming and compute overlap; fixed costs and communication do not."""
        return max(self.t_stream_s, self.t_compute_s) + self.t_layer_fixed_s + self.t_comm_s

    @property
    def tokens_per_s(self) -> float:
        """Tokens per second over the whole batch (``batch`` tokens per step)."""
        return self.batch / self.t_token_s

    @property
    def energy_j_per_token(self) -> "float | None":
        """All chips' power over the step time, per token (static and dynamic); ``None`` without a power figure."""
        return None if self.power_w is None else self.power_w * self.t_token_s / self.batch

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d.update(t_token_s=self.t_token_s, tokens_per_s=self.tokens_per_s, energy_j_per_token=self.energy_j_per_token)
        return d


def lpu_mapping(model: ModelConfig, chips: int, mxm_width: int) -> "tuple[int, int]":
    """``(tp, pp)``: the tensor-parallel width a layer allows on ``chips`` chips, and the pipeline depth.

    ``tp`` is the largest power of two <= ``chips`` that divides the heads and
    leaves each chip at least ``mxm_width`` FFN columns; ``pp = ceil(chips / tp)``
    (at most one group per layer).
    """
    check_int("chips", chips, 1)
    tp = 1
    while tp * 2 <= chips and model.heads % (tp * 2) == 0 and model.ffn // (tp * 2) >= mxm_width:
        tp *= 2
    return tp, min(math.ceil(chips / tp), model.layers)


def allreduce_s(n: int, hop_s: float) -> float:
    """Latency of one all-reduce over ``n`` chips: ``ceil(log2 n)`` hops (recursive doubling, an assumption)."""
    return math.ceil(math.log2(n)) * hop_s if n > 1 else 0.0


def lpu_chips_needed(model: ModelConfig, chip: ChipConfig, wf: WeightFormat, *, batch: int = 1,
                     context: int = 0) -> int:
    """The fewest chips whose ``weight_sram_fraction`` holds the weights and the batch's KV cache."""
    stored = weight_bytes(model, wf, streamed_only=False) + kv_bytes_per_position(
        model, chip.kv_bytes_per_value) * context * batch
    return math.ceil(stored / (chip.sram_bytes * chip.weight_sram_fraction))


def decode(model: ModelConfig, chip: ChipConfig, wf: WeightFormat, meas: Measurement, *,
           layer_fixed_s: "float | None" = None, batch: int = 1, chips: "int | None" = None,
           context: "int | None" = None, feed_scale: float = 1.0) -> Decode:
    """Batch-``batch`` decode of ``model`` on SRAM chips holding it in format ``wf``.

    ``layer_fixed_s``: the fixed cost per layer (default: the value fitted by
    :mod:`sim.calibrate` on the ``groq-lpu`` measurements). ``context``: the KV-cache
    length per sequence (default: the chip config's ``context_tokens``; 0 leaves
    the KV cache out). ``chips``: the chip count (default: the fewest that hold
    weights and cache; it may not be fewer). ``feed_scale`` scales the weight feed
    rate (a sensitivity study of the unsourced MXM feed rate).
    """
    if chip.kind != "sram":
        raise ValueError(f"decode() models SRAM chips; {chip.key} is kind {chip.kind!r} (use gpu_decode)")
    check_int("batch", batch, 1)
    context = chip.context_tokens if context is None else context
    check_int("context", context, 0)
    check_number("feed_scale", feed_scale, 0.0, open_low=True)
    if layer_fixed_s is None:
        from sim.calibrate import calibration
        layer_fixed_s = calibration().constants("groq-lpu")["layer_fixed_s"]
    kv = kv_bytes_per_position(model, chip.kv_bytes_per_value) * context * batch
    stored = weight_bytes(model, wf, streamed_only=False) + kv
    streamed = weight_bytes(model, wf)
    need = lpu_chips_needed(model, chip, wf, batch=batch, context=context)
    if chips is not None and (isinstance(chips, bool) or not isinstance(chips, int) or chips < need):
        raise ValueError(f"chips must be an integer >= {need} to hold {model.name} in {wf.label} "
                         f"(batch {batch}, context {context}), got {chips!r}")
    n = need if chips is None else chips
    tp, pp = lpu_mapping(model, n, chip.mxm_width)
    kv_split = min(tp, model.kv_heads)
    scale = tile_scaling(chip, meas, wf.bits_per_weight(model.hidden))
    rate = scale["chip_bytes_per_s"] * feed_scale
    kv_proj = _kv_projection_bytes(model, wf)
    per_chip_bytes = (streamed - kv_proj) / tp + kv_proj / kv_split + kv / kv_split
    matrices = sum(c for name, _, _, c in linear_shapes(model) if name not in STORED_ONLY)
    latency = matrices * meas.latency_cycles / chip.clock_hz                     # tile GEMV latencies, in series
    t_stream = per_chip_bytes / rate + latency
    ops = chip.int8_ops_per_s if wf.is_integer else chip.fp16_flops_per_s
    macs = streamed_parameters(model) * batch
    t_compute = 2 * macs / tp / ops
    act_bytes = 2 * model.hidden * batch                                         # FP16 activations
    t_comm = (2 * model.layers * (allreduce_s(tp, chip.c2c_hop_latency_s)
                                  + (act_bytes / (chip.c2c_links * chip.c2c_link_bytes_per_s) if tp > 1 else 0))
              + (pp - 1) * (chip.c2c_hop_latency_s + act_bytes / chip.c2c_link_bytes_per_s))
    comm_bits = (2 * model.layers * act_bytes * 8 * (tp - 1) + (pp - 1) * act_bytes * 8)
    dynamic = ((streamed + kv) * 8 * chip.sram_pj_per_bit + macs * chip.mac_int8_pj
               + comm_bits * chip.c2c_pj_per_bit) * 1e-12
    return Decode(model.name, chip.name, wf.label, wf.bits_per_weight(model.hidden), stored, streamed, kv, n, tp, pp,
                  batch, context, t_stream, t_compute, model.layers * layer_fixed_s, t_comm,
                  n * chip.chip_power_w, dynamic, scale["tiles_per_chip"])


#: How multi-GPU llama.cpp spreads a model: ``rows`` splits every matrix (tensor parallel, before Jan 2024),
#: ``layers`` gives each GPU whole layers (run in turn).
GPU_SPLITS = ("rows", "layers")


def gpu_decode(model: ModelConfig, chip: ChipConfig, wf: WeightFormat, *, bandwidth_fraction: float,
               layer_fixed_s: float, sync_s: float, split: str = "rows", count: int = 1, batch: int = 1,
               context: int = 0, kv_bytes_per_value: float = 2) -> Decode:
    """Batch-``batch`` decode of ``model`` on ``count`` GPU-like chips.

    ``bandwidth_fraction``, ``layer_fixed_s`` and ``sync_s`` are the fitted
    constants of a software stack (:mod:`sim.calibrate`); ``split`` is how it
    spreads the model over ``count`` GPUs (:data:`GPU_SPLITS`).
    """
    if chip.kind != "hbm":
        raise ValueError(f"gpu_decode() models HBM chips; {chip.key} is kind {chip.kind!r}")
    if split not in GPU_SPLITS:
        raise ValueError(f"split must be one of {', '.join(GPU_SPLITS)}, got {split!r}")
    check_int("count", count, 1)
    check_int("batch", batch, 1)
    check_int("context", context, 0)
    if not 0 < bandwidth_fraction:
        raise ValueError(f"bandwidth_fraction must be > 0, got {bandwidth_fraction!r}")
    kv = kv_bytes_per_position(model, kv_bytes_per_value) * context * batch
    stored = weight_bytes(model, wf, streamed_only=False) + kv
    streamed = weight_bytes(model, wf)
    if stored > count * chip.hbm_bytes:
        raise ValueError(f"{model.name} in {wf.label} needs {stored / 1e9:.1f} GB, more than {count} x "
                         f"{chip.name}'s {chip.hbm_bytes / 1e9:.0f} GB")
    rate = bandwidth_fraction * chip.hbm_bandwidth_bytes_per_s
    steps = math.ceil(math.log2(count)) if count > 1 else 0
    if split == "rows":
        t_stream = (streamed + kv) / count / rate
        t_comm = model.layers * sync_s * steps
        share = count
    else:
        t_stream = (streamed + kv) / rate
        t_comm = (count - 1) * sync_s
        share = 1
    ops = chip.values.get("int8_ops_per_s" if wf.is_integer else "fp16_flops_per_s")
    t_compute = 2 * streamed_parameters(model) * batch / share / ops if ops else 0.0
    power = count * chip.tdp_w if "tdp_w" in chip.values else None
    return Decode(model.name, chip.name, wf.label, wf.bits_per_weight(model.hidden), stored, streamed, kv, count,
                  share, 1 if split == "rows" else count, batch, context, t_stream, t_compute,
                  model.layers * layer_fixed_s, t_comm, power, None)
