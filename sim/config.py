"""Chip and LLM configurations: one TOML file each under ``sim/configs/``, every constant with its source.

A value is written ``key = [value, "source"]``; :func:`load_model` /
:func:`load_chip` check that every constant the model needs is present, of the
right type and in range (ranges reject unit mistakes: GB vs bytes, MHz vs Hz),
reject unknown constants, and keep the sources so the report can cite them.
``septet report --chip FILE.toml --gpu FILE.toml --model FILE.toml`` takes user
files in the same schema:

Model file::

    name = "My-LLM"          # shown in the report
    key = "my-llm"
    [shape]                  # all required except the mixture-of-experts pair
    hidden, ffn, layers, heads, kv_heads, head_dim, vocab   (integers; hidden = heads x head_dim)
    tied_embeddings          (true/false)
    published_parameters     (number)
    experts, experts_active  (optional integers, default 1: a dense model)

LPU-like chip (``kind = "sram"``), tables ``[chip]``, ``[deployment]``, ``[energy]``::

    clock_hz, superlanes, lanes_per_superlane, sram_bytes, sram_bandwidth_bytes_per_s,
    int8_ops_per_s, fp16_flops_per_s, macs, mxm_width, c2c_links, c2c_link_bytes_per_s,
    c2c_hop_latency_s, weight_sram_fraction, chip_power_w, context_tokens,
    kv_bytes_per_value, sram_pj_per_bit, mac_int8_pj, c2c_pj_per_bit

GPU-like chip (``kind = "hbm"``), table ``[chip]``::

    hbm_bytes, hbm_bandwidth_bytes_per_s                  (required)
    int8_ops_per_s, fp16_flops_per_s, tdp_w               (optional: compute and J/token)

The allowed range of each constant is in ``_MODEL_KEYS`` / ``_CHIP_KEYS`` below.
The constants no datasheet gives (per-layer cost, achieved bandwidth fraction,
synchronisation) are not configured: :mod:`sim.calibrate` fits them on public
measurements and reports their error.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CONFIG_DIR", "ModelConfig", "ChipConfig", "load_model", "load_chip", "available"]

CONFIG_DIR = Path(__file__).with_name("configs")

#: Required constants: name -> (type, low, high). Ranges reject unit mistakes (GB vs bytes, MHz vs Hz).
_MODEL_KEYS = {
    "hidden": (int, 64, 1 << 17), "ffn": (int, 64, 1 << 19), "layers": (int, 1, 1024), "heads": (int, 1, 1024),
    "kv_heads": (int, 1, 1024), "head_dim": (int, 8, 1024), "vocab": (int, 2, 1 << 22),
    "tied_embeddings": (bool, None, None), "published_parameters": (float, 1e6, 1e13),
}
#: Optional model constants (mixture of experts), with their defaults (a dense model).
_MODEL_OPTIONAL = {"experts": ((int, 1, 1024), 1), "experts_active": ((int, 1, 1024), 1)}
_CHIP_KEYS = {
    "sram": {
        "clock_hz": (float, 1e7, 1e11), "superlanes": (int, 1, 4096), "lanes_per_superlane": (int, 1, 4096),
        "sram_bytes": (int, 1 << 20, 1 << 40), "sram_bandwidth_bytes_per_s": (float, 1e9, 1e16),
        "int8_ops_per_s": (float, 1e9, 1e17), "fp16_flops_per_s": (float, 1e9, 1e17), "macs": (int, 1, 1 << 30),
        "mxm_width": (int, 1, 1 << 16), "c2c_links": (int, 1, 1024),
        "c2c_link_bytes_per_s": (float, 1e6, 1e13), "c2c_hop_latency_s": (float, 1e-10, 1e-3),
        "weight_sram_fraction": (float, 0.05, 1.0), "chip_power_w": (float, 1, 5000),
        "sram_pj_per_bit": (float, 0.01, 100), "mac_int8_pj": (float, 0.001, 100), "c2c_pj_per_bit": (float, 0.01, 1000),
        "context_tokens": (int, 0, 1 << 21), "kv_bytes_per_value": (float, 0.25, 4),
    },
    "hbm": {
        "hbm_bytes": (float, 1e9, 1e13), "hbm_bandwidth_bytes_per_s": (float, 1e9, 1e15),
    },
}
#: Optional chip constants: name -> (type, low, high); absent means the term is left out (and the report says so).
_CHIP_OPTIONAL = {
    "hbm": {"int8_ops_per_s": (float, 1e9, 1e17), "fp16_flops_per_s": (float, 1e9, 1e17), "tdp_w": (float, 1, 5000)},
    "sram": {},
}


@dataclass(frozen=True)
class _Config:
    key: str
    name: str
    values: dict
    sources: dict = field(repr=False)

    def __getattr__(self, item):
        try:
            return self.__dict__["values"][item]
        except KeyError:
            raise AttributeError(item) from None

    def source(self, item) -> str:
        """The citation (or stated assumption) behind constant ``item``."""
        return self.sources[item]

    def replace(self, **changes) -> "_Config":
        """A copy with some constants changed (for sensitivity studies); sources say so."""
        unknown = sorted(set(changes) - set(self.values))
        if unknown:
            raise ValueError(f"{self.key}: no constant named {', '.join(unknown)}")
        values = {**self.values, **changes}
        sources = {**self.sources, **{k: f"varied from {self.values[k]!r}" for k in changes}}
        return type(self)(self.key, self.name, values, sources)


class ModelConfig(_Config):
    """An LLM's shapes (see :mod:`sim.model` for the linear layers derived from them)."""


class ChipConfig(_Config):
    """A chip's constants; ``kind`` is ``"sram"`` (LPU-like) or ``"hbm"`` (GPU-like)."""


def _check(path, k, v, typ, low, high):
    if typ is bool:
        if not isinstance(v, bool):
            raise ValueError(f"{path}: {k} must be true or false, got {v!r}")
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (typ is int and int(v) != v):
        raise ValueError(f"{path}: {k} must be a{'n integer' if typ is int else ' number'}, got {v!r}")
    if not low <= v <= high:
        raise ValueError(f"{path}: {k} = {v!r} is outside [{low:g}, {high:g}] (check its unit)")
    return typ(v)


def _read(path: Path, required: dict, table_names, optional=None) -> "tuple[dict, dict, dict]":
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    values, sources = {}, {}
    for table in table_names:
        for k, entry in doc.get(table, {}).items():
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], str) and entry[1].strip()):
                raise ValueError(f"{path}: [{table}] {k} must be [value, \"source\"], got {entry!r}")
            values[k], sources[k] = entry
    for k, (typ, low, high) in required.items():
        if k not in values:
            raise ValueError(f"{path}: missing {k} (with its source)")
        values[k] = _check(path, k, values[k], typ, low, high)
    optional = optional or {}
    for k, (typ, low, high) in optional.items():
        if k in values:
            values[k] = _check(path, k, values[k], typ, low, high)
    unknown = sorted(set(values) - set(required) - set(optional))
    if unknown:
        raise ValueError(f"{path}: unknown constant {', '.join(unknown)}; allowed: "
                         f"{', '.join(sorted(set(required) | set(optional)))}")
    return doc, values, sources


def available(kind: str) -> "list[str]":
    """Keys of the shipped configs: ``kind`` is ``"model"`` or ``"chip"``."""
    out = []
    for p in sorted(CONFIG_DIR.glob("*.toml")):
        is_chip = "kind" in tomllib.loads(p.read_text())
        if (kind == "chip") == is_chip:
            out.append(p.stem)
    return out


def _path(key_or_path, kind: str) -> Path:
    p = Path(key_or_path)
    if p.suffix == ".toml":
        if not p.exists():
            raise ValueError(f"{kind} config {str(p)!r} does not exist")
        return p
    p = CONFIG_DIR / f"{key_or_path}.toml"
    if not p.exists() or (("kind" in tomllib.loads(p.read_text())) != (kind == "chip")):
        raise ValueError(f"unknown {kind} {key_or_path!r}; choose one of {', '.join(available(kind))} "
                         f"or give a .toml path")
    return p


def load_model(key_or_path) -> ModelConfig:
    """Load an LLM config by key (``"llama2-70b"``) or path."""
    path = _path(key_or_path, "model")
    doc, values, sources = _read(path, _MODEL_KEYS, ["shape"], {k: spec for k, (spec, _) in _MODEL_OPTIONAL.items()})
    for k, (_, default) in _MODEL_OPTIONAL.items():
        if k not in values:
            values[k], sources[k] = default, "default (a dense model)"
    if values["experts_active"] > values["experts"]:
        raise ValueError(f"{path}: experts_active ({values['experts_active']}) must be <= experts ({values['experts']})")
    if values["hidden"] != values["heads"] * values["head_dim"]:
        raise ValueError(f"{path}: hidden ({values['hidden']}) must equal heads x head_dim")
    if values["heads"] % values["kv_heads"]:
        raise ValueError(f"{path}: heads must be a multiple of kv_heads")
    return ModelConfig(doc.get("key", path.stem), doc.get("name", path.stem), values, sources)


def load_chip(key_or_path) -> ChipConfig:
    """Load a chip config by key (``"groq-tsp"``) or path."""
    path = _path(key_or_path, "chip")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    kind = doc.get("kind")
    if kind not in _CHIP_KEYS:
        raise ValueError(f"{path}: kind must be one of {sorted(_CHIP_KEYS)}, got {kind!r}")
    _, values, sources = _read(path, _CHIP_KEYS[kind], ["chip", "deployment", "energy"], _CHIP_OPTIONAL[kind])
    values["kind"] = kind
    sources["kind"] = "config"
    return ChipConfig(doc.get("key", path.stem), doc.get("name", path.stem), values, sources)
