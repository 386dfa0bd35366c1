"""A NumPy forward pass of SmolLM2-135M, its tokenizer, and perplexity on offline text.

The forward takes the linear weights as a mapping ``name -> W[K, N]``, so the
same code runs the reference and every quantized format (swap the mapping).
Q and K rows are in llama.cpp's converter order, which permutes them so that
RoPE rotates *adjacent* pairs ``(x[2i], x[2i+1])`` of each head (ggml's
"normal" RoPE), not the two halves as the Hugging Face code does.

The text is Python's own documentation (``pydoc_data.topics``), which every
Python installation carries: the topics in sorted key order, joined by blank
lines and tokenized; the first ``cal_tokens`` tokens are the calibration set and
the next ``n_seq * seq_len`` the evaluation set, so the split is fixed.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

from golden.checks import check_int
from golden.quality.models import SmolLM2Weights

__all__ = ["Tokenizer", "forward", "perplexity", "calibration_inputs", "block_forward", "TextSplit", "text_split", "LINEAR_INPUTS"]


@functools.lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict:
    """GPT-2's reversible byte -> printable-character map used by byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


# llama.cpp's pre-tokenizer for 'smollm' (LLAMA_VOCAB_PRE_TYPE_SMOLLM): digits split one by one,
# then the GPT-2 pattern.  \p{L} is spelled [^\W\d_] and [^\s\p{L}\p{N}] (?:[^\s\w]|_) for Python's re.
_DIGIT = re.compile(r"(\d)")
_GPT2 = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+")


class Tokenizer:
    """Byte-level BPE tokenizer from the GGUF vocabulary and merges (no special tokens parsed)."""

    def __init__(self, tokens, merges):
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.tokens = list(tokens)
        self.ranks = {tuple(m.split(" ", 1)): r for r, m in enumerate(merges)}
        self.byte_map = _bytes_to_unicode()
        self.unicode_map = {c: b for b, c in self.byte_map.items()}
        self._cache: dict = {}

    def _bpe(self, word: str) -> list:
        if word in self._cache:
            return self._cache[word]
        parts = list(word)
        while len(parts) > 1:
            pairs = [(self.ranks.get((a, b), None), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            ranked = [(r, i) for r, i in pairs if r is not None]
            if not ranked:
                break
            r, _ = min(ranked)
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and self.ranks.get((parts[i], parts[i + 1])) == r:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids = [self.vocab[p] for p in parts]
        self._cache[word] = ids
        return ids

    def encode(self, text: str) -> list:
        """Token ids of ``text``."""
        ids = []
        for chunk in _DIGIT.split(text):
            for piece in _GPT2.findall(chunk):
                ids.extend(self._bpe("".join(self.byte_map[b] for b in piece.encode("utf-8"))))
        return ids

    def decode(self, ids) -> str:
        """Text of token ids."""
        data = bytes(self.unicode_map[c] for i in ids for c in self.tokens[int(i)])
        return data.decode("utf-8", errors="replace")


#: The input each linear reads, per block: q, k, v share one and gate, up another.
LINEAR_INPUTS = {"q": "attn_in", "k": "attn_in", "v": "attn_in", "o": "o_in",
                 "gate": "ffn_in", "up": "ffn_in", "down": "down_in"}


def _rms_norm(x, w, eps):
    return x * (1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)) * w


def _rope_tables(T: int, head_dim: int, base: float):
    inv = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    ang = np.arange(T)[:, None] * inv[None, :]
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


def _rope(x, cos, sin):
    """Rotate adjacent pairs of the last axis; x (B, T, H, D), cos/sin (T, D/2)."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def block_forward(model: SmolLM2Weights, x, i: int, W, *, capture=None) -> np.ndarray:
    """One transformer block: the residual stream ``x`` (B, T, d) after block ``i``.

    Parameters
    ----------
    model : SmolLM2Weights
    x : ndarray float32, shape (B, T, d_model)
        Residual stream entering block ``i``.
    i : int
        Block index.
    W : mapping name -> W[K, N]
        Linear weights (must hold ``"blk.{i}.q"`` ... ``"blk.{i}.down"``).
    capture : dict or callable, optional
        Receives the input of every linear as ``"blk.i.<input>" -> ndarray (B*T, K)``
        (values of :data:`LINEAR_INPUTS`): stored into a dict, or passed to a
        callable ``capture(key, X)`` (e.g. to accumulate ``X.T @ X`` without keeping ``X``).
    """
    cfg = model.config
    B, T = x.shape[:2]
    H, KV, D = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    cos, sin = _rope_tables(T, D, cfg.rope_base)
    mask = np.triu(np.full((T, T), -np.inf, dtype=np.float32), 1)
    if capture is None:
        def put(key, value):
            pass
    elif callable(capture):
        put = capture
    else:
        def put(key, value):
            capture[key] = value
    p = f"blk.{i}."
    h = _rms_norm(x, model.norms[p + "attn_norm"], cfg.norm_eps)
    h2 = h.reshape(B * T, -1)
    put(p + "attn_in", h2)
    q = _rope((h2 @ W[p + "q"]).reshape(B, T, H, D), cos, sin)
    k = _rope((h2 @ W[p + "k"]).reshape(B, T, KV, D), cos, sin)
    v = (h2 @ W[p + "v"]).reshape(B, T, KV, D)
    att = np.empty((B, T, H, D), dtype=np.float32)
    G = H // KV
    # GQA: query heads j*G ... j*G+G-1 read key/value head j.  One 2-D GEMM per (sequence, kv head):
    # NumPy's stacked matmul on strided views is far slower than BLAS on contiguous 2-D operands.
    for b in range(B):
        for j in range(KV):
            qj = np.ascontiguousarray(q[b, :, j * G:(j + 1) * G].transpose(1, 0, 2)).reshape(G * T, D)
            s = (qj @ np.ascontiguousarray(k[b, :, j].T)).reshape(G, T, T)
            s *= np.float32(1.0 / np.sqrt(D))
            s += mask
            s -= s.max(axis=-1, keepdims=True)
            np.exp(s, out=s)
            s /= s.sum(axis=-1, keepdims=True)
            o = s.reshape(G * T, T) @ np.ascontiguousarray(v[b, :, j])
            att[b, :, j * G:(j + 1) * G] = o.reshape(G, T, D).transpose(1, 0, 2)
    att2 = att.reshape(B * T, -1)
    put(p + "o_in", att2)
    x = x + (att2 @ W[p + "o"]).reshape(B, T, -1)
    h2 = _rms_norm(x, model.norms[p + "ffn_norm"], cfg.norm_eps).reshape(B * T, -1)
    put(p + "ffn_in", h2)
    g = h2 @ W[p + "gate"]
    u = h2 @ W[p + "up"]
    a = g / (1.0 + np.exp(-g)) * u
    put(p + "down_in", a)
    return x + (a @ W[p + "down"]).reshape(B, T, -1)


def forward(model: SmolLM2Weights, tokens, linears=None, *, n_layers=None, capture=None,
            logits_positions=None) -> np.ndarray:
    """Logits of a batch of token sequences (causal, full sequence, float32).

    Parameters
    ----------
    model : SmolLM2Weights
    tokens : array of int, shape (B, T) or (T,)
    linears : mapping name -> W[K, N], optional
        Linear weights to use (default: the model's own); any missing name falls back to the model's.
    n_layers : int, optional
        Run only the first blocks (for quick tests); the output head still applies.
    capture : dict or callable, optional
        If given, receives ``"blk.i.<input>" -> ndarray (B*T, K)``, the input of
        every linear (keys of :data:`LINEAR_INPUTS` values); see :func:`block_forward`.
    logits_positions : slice, optional
        Positions whose logits are returned (default all).

    Returns
    -------
    ndarray float32, shape (B, T', vocab) (or (T', vocab) for 1-D tokens)
    """
    cfg = model.config
    tokens = np.asarray(tokens)
    squeeze = tokens.ndim == 1
    if squeeze:
        tokens = tokens[None]
    if tokens.ndim != 2 or tokens.shape[1] < 1:
        raise ValueError(f"tokens must have shape (B, T) or (T,) with T >= 1, got {tokens.shape}")
    if tokens.min() < 0 or tokens.max() >= cfg.vocab_size:
        raise ValueError(f"token ids must be in [0, {cfg.vocab_size - 1}]")
    n_layers = cfg.n_layers if n_layers is None else n_layers
    if not 0 <= n_layers <= cfg.n_layers:
        raise ValueError(f"n_layers must be in [0, {cfg.n_layers}], got {n_layers}")
    W = dict(model.linears)
    if linears is not None:
        W.update(linears)
    x = model.embedding[tokens]                                   # (B, T, d)
    for i in range(n_layers):
        x = block_forward(model, x, i, W, capture=capture)
    if logits_positions is not None:
        x = x[:, logits_positions]
    h = _rms_norm(x, model.norms["output_norm"], cfg.norm_eps)
    logits = h @ model.embedding.T
    return logits[0] if squeeze else logits


def _log_softmax_nll(logits, targets):
    """Negative log-likelihood of targets under logits (float64 sum)."""
    m = logits.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(logits - m).sum(axis=-1, dtype=np.float64)) + m[..., 0]
    return float((lse - np.take_along_axis(logits, targets[..., None], -1)[..., 0]).sum())


def perplexity(model: SmolLM2Weights, sequences, linears=None, *, batch: int = 2) -> float:
    """Perplexity of every next-token prediction in ``sequences`` (n_seq, T)."""
    sequences = np.asarray(sequences)
    nll, count = 0.0, 0
    for b0 in range(0, len(sequences), batch):
        seq = sequences[b0:b0 + batch]
        logits = forward(model, seq[:, :-1], linears)
        nll += _log_softmax_nll(logits, seq[:, 1:])
        count += seq[:, 1:].size
    return float(np.exp(nll / count))


def calibration_inputs(model: SmolLM2Weights, tokens, linears=None) -> dict:
    """Inputs of every linear on calibration tokens: ``"blk.i.q"`` ... -> ndarray (T, K)."""
    acts = {}
    forward(model, np.asarray(tokens)[None], linears, capture=acts, logits_positions=slice(0, 1))
    return {f"blk.{i}.{name}": acts[f"blk.{i}.{inp}"]
            for i in range(model.config.n_layers) for name, inp in LINEAR_INPUTS.items()}


@dataclass(frozen=True)
class TextSplit:
    """The fixed calibration/evaluation split of the pydoc_data text."""

    calibration: np.ndarray    # (cal_tokens,)
    evaluation: np.ndarray     # (n_seq, seq_len)
    source: str


def text_split(model: SmolLM2Weights, *, cal_tokens: int = 512, n_seq: int = 4, seq_len: int = 512) -> TextSplit:
    """Tokenize Python's ``pydoc_data.topics`` and cut the fixed calibration and evaluation sets."""
    import sys

    from pydoc_data import topics

    for name, v in (("cal_tokens", cal_tokens), ("n_seq", n_seq), ("seq_len", seq_len)):
        check_int(name, v, 2)
    text = "\n\n".join(topics.topics[k] for k in sorted(topics.topics))
    need = cal_tokens + n_seq * seq_len
    tok = Tokenizer(model.tokens, model.merges)
    ids: list = []
    # Tokenize only as much text as needed (about 3 characters per token), in paragraph chunks.
    paragraphs = text.split("\n\n")
    for i, para in enumerate(paragraphs):
        ids.extend(tok.encode(para if i == 0 else "\n\n" + para))
        if len(ids) >= need:
            break
    if len(ids) < need:
        raise ValueError(f"pydoc_data text has {len(ids)} tokens, fewer than the {need} requested")
    ids = np.array(ids[:need], dtype=np.int64)
    return TextSplit(calibration=ids[:cal_tokens], evaluation=ids[cal_tokens:].reshape(n_seq, seq_len),
                     source=f"pydoc_data.topics of Python {sys.version_info.major}.{sys.version_info.minor}, "
                            f"sorted topics; tokens [0, {cal_tokens}) calibration, "
                            f"[{cal_tokens}, {need}) evaluation as {n_seq} x {seq_len}")
