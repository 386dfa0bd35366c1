"""The throughput model: measured tile cycles scaled to a chip and to LLaMA-70B decode.

Bits per weight come from golden (:meth:`golden.format.Format.stored_bits_per_column`),
the tile's bus efficiency and fixed latency from a measurements JSON written by
``septet sim`` / ``septet run`` (:mod:`tb.measurement`), every chip and model
constant from ``sim/configs`` with its source.

Placement assumptions (stated in the report):

* The weights live in SRAM, spread over the fewest chips that hold them
  (``weight_sram_fraction`` of each chip's SRAM); batch-1 decode streams every
  weight once per token.
* Tensor parallel (``tp``): every layer is split over all chips, which stream
  their shares at the same time; two all-reduces per layer (after attention and
  after the FFN) cross ``hops_per_allreduce`` chip-to-chip hops.
* Pipeline parallel (``pp``): each chip holds whole layers; at batch 1 the
  chips run one after another, so streaming time is the whole model over one
  chip's bandwidth, and each stage boundary costs a hop.
* Streaming runs at the SRAM bandwidth times the tile's measured bus
  efficiency; the tiles are sized to the bandwidth (:func:`tile_scaling`), and
  every GEMV adds the tile's measured fixed latency once, in series.
* The KV cache (``context_tokens`` positions per sequence, FP16) is stored
  beside the weights and read once per token per sequence, at the same rate.
* Batch ``B`` shares one weight stream; compute and KV reads scale with ``B``.
  Pipeline placement keeps one batch in flight (no micro-batch pipelining).
* Streaming and compute overlap; chip-to-chip communication does not.
* Not modelled: prefill (first-token time), attention softmax and norms, the
  host link, and any scheduling slack: every figure is an upper bound.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import gguf

from golden.format import Arithmetic, Format, parse_arithmetic, parse_format
from sim.config import ChipConfig, ModelConfig

__all__ = [
    "WeightFormat", "WEIGHT_FORMATS", "weight_format", "linear_shapes", "Measurement", "load_measurement",
    "DEFAULT_MEASUREMENTS", "decode", "gpu_decode", "Decode", "weight_bytes", "streamed_parameters",
    "stored_parameters", "kv_bytes_per_position", "tile_scaling",
]

DEFAULT_MEASUREMENTS = Path(__file__).with_name("data") / "measurements_default.json"


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

    def bits_per_column(self, K: int) -> float:
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


def linear_shapes(model: ModelConfig) -> "list[tuple[str, int, int, int]]":
    """``(name, K, N, count)`` of every weight matrix streamed per token, plus the embedding.

    The embedding (``embed``) is stored but not streamed (a token reads one row);
    with tied embeddings the LM head is the embedding.
    """
    h, f, hd = model.hidden, model.ffn, model.head_dim
    L = model.layers
    shapes = [
        ("q_proj", h, model.heads * hd, L), ("k_proj", h, model.kv_heads * hd, L),
        ("v_proj", h, model.kv_heads * hd, L), ("o_proj", model.heads * hd, h, L),
        ("gate_proj", h, f, L), ("up_proj", h, f, L), ("down_proj", f, h, L),
        ("lm_head", h, model.vocab, 1),
    ]
    if not model.tied_embeddings:
        shapes.append(("embed", h, model.vocab, 1))
    return shapes


def streamed_parameters(model: ModelConfig) -> int:
    return sum(K * N * c for name, K, N, c in linear_shapes(model) if name != "embed")


def stored_parameters(model: ModelConfig) -> int:
    return sum(K * N * c for _, K, N, c in linear_shapes(model))


def weight_bytes(model: ModelConfig, wf: WeightFormat, streamed_only: bool = True) -> float:
    """Bytes of the weights in format ``wf``: streamed per token, or stored (embedding included)."""
    return sum(wf.bits_per_column(K) * N * c for name, K, N, c in linear_shapes(model)
               if not (streamed_only and name == "embed")) / 8


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
        by = {r["format"]: r for r in self.runs}
        if "4+3" in by and "4+4" in by and by["4+3"]["bus_width"] == by["4+4"]["bus_width"]:
            return by["4+3"]["cycles"] / by["4+4"]["cycles"]
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


def kv_bytes_per_position(model: ModelConfig, bytes_per_value: float) -> float:
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
    """Decode figures for one model, chip, format, placement and batch."""

    model: str
    chip: str
    fmt: str
    bits_per_weight: float
    stored_bytes: float          # weights (embedding included) + KV cache of the whole batch
    streamed_bytes: float        # weights read per decode step
    kv_bytes: float              # KV cache read per decode step (the whole batch)
    chips: int
    placement: str
    batch: int
    context: int
    t_stream_s: float            # weights + KV cache + the tile's fixed latencies
    t_compute_s: float
    t_comm_s: float
    energy_j_per_token: "float | None"      # None where the chip config carries no energy costs
    tiles_per_chip: int

    @property
    def t_token_s(self) -> float:
        """Time of one decode step: streaming and compute overlap; communication does not."""
        return max(self.t_stream_s, self.t_compute_s) + self.t_comm_s

    @property
    def tokens_per_s(self) -> float:
        """Tokens per second over the whole batch (``batch`` tokens per step)."""
        return self.batch / self.t_token_s

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d.update(t_token_s=self.t_token_s, tokens_per_s=self.tokens_per_s)
        return d


def decode(model: ModelConfig, chip: ChipConfig, wf: WeightFormat, meas: Measurement, *,
           placement: str = "tp", batch: int = 1, chips: "int | None" = None,
           context: "int | None" = None) -> Decode:
    """Batch-``batch`` decode of ``model`` on SRAM chips holding it in format ``wf``.

    ``context`` is the KV-cache length per sequence (default: the chip config's
    ``context_tokens``; 0 leaves the KV cache out). ``chips`` overrides the
    fewest chips that hold weights and cache (it may not be fewer).
    """
    if chip.kind != "sram":
        raise ValueError(f"decode() models SRAM chips; {chip.key} is kind {chip.kind!r} (use gpu_decode)")
    if placement not in ("tp", "pp"):
        raise ValueError(f"placement must be 'tp' or 'pp', got {placement!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    context = chip.context_tokens if context is None else context
    if isinstance(context, bool) or not isinstance(context, int) or context < 0:
        raise ValueError(f"context must be an integer >= 0 (tokens), got {context!r}")
    kv = kv_bytes_per_position(model, chip.kv_bytes_per_value) * context * batch
    stored = weight_bytes(model, wf, streamed_only=False) + kv
    streamed = weight_bytes(model, wf)
    per_chip = chip.sram_bytes * chip.weight_sram_fraction
    need = math.ceil(stored / per_chip)
    if chips is not None and (isinstance(chips, bool) or not isinstance(chips, int) or chips < need):
        raise ValueError(f"chips must be an integer >= {need} to hold {model.name} in {wf.label} "
                         f"(batch {batch}, context {context}), got {chips!r}")
    n = need if chips is None else chips
    scale = tile_scaling(chip, meas, wf.bits_per_weight(model.hidden))
    rate = scale["chip_bytes_per_s"]
    matrices = sum(c for name, _, _, c in linear_shapes(model) if name != "embed")
    latency = matrices * meas.latency_cycles / chip.clock_hz                     # fixed GEMV latencies, in series
    macs = streamed_parameters(model) * batch
    act_bytes = 2 * model.hidden * batch                                         # FP16 activations
    link = chip.c2c_link_bytes_per_s
    if placement == "tp":
        t_stream = (streamed + kv) / n / rate + latency
        t_compute = 2 * macs / (chip.int8_ops_per_s * n)
        syncs = 2 * model.layers
        t_comm = syncs * (chip.hops_per_allreduce * chip.c2c_hop_latency_s + act_bytes / (chip.c2c_links * link))
        comm_bits = syncs * act_bytes * 8 * n
    else:
        t_stream = (streamed + kv) / rate + latency
        t_compute = 2 * macs / chip.int8_ops_per_s
        t_comm = (n - 1) * (chip.c2c_hop_latency_s + act_bytes / link)
        comm_bits = (n - 1) * act_bytes * 8
    energy = ((streamed + kv) * 8 * chip.sram_pj_per_bit + macs * chip.mac_int8_pj
              + comm_bits * chip.c2c_pj_per_bit) * 1e-12
    return Decode(model.name, chip.name, wf.label, wf.bits_per_weight(model.hidden), stored, streamed, kv, n,
                  placement, batch, context, t_stream, t_compute, t_comm, energy / batch, scale["tiles_per_chip"])


def gpu_decode(model: ModelConfig, chip: ChipConfig, wf: WeightFormat, *, batch: int = 1) -> Decode:
    """The HBM-bandwidth bound of batch-``batch`` decode on one GPU-like chip.

    Weights only: at the short contexts of llama.cpp's ``tg128`` benchmark the
    KV cache adds well under 1% of the bytes read.
    """
    if chip.kind != "hbm":
        raise ValueError(f"gpu_decode() models HBM chips; {chip.key} is kind {chip.kind!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    stored = weight_bytes(model, wf, streamed_only=False)
    streamed = weight_bytes(model, wf)
    if stored > chip.hbm_bytes:
        raise ValueError(f"{model.name} in {wf.label} needs {stored / 1e9:.1f} GB, more than one "
                         f"{chip.name}'s {chip.hbm_bytes / 1e9:.0f} GB")
    t_stream = streamed / chip.hbm_bandwidth_bytes_per_s
    t_compute = 2 * streamed_parameters(model) * batch / chip.int8_ops_per_s
    return Decode(model.name, chip.name, wf.label, wf.bits_per_weight(model.hidden), stored, streamed, 0.0, 1,
                  "single", batch, 0, t_stream, t_compute, 0.0, None, 0)
