"""The integer path of SmolLM2-135M: every linear layer is golden's integer GEMV, as the tile computes it.

A linear layer ``y = x @ W`` on the tile (``golden/FORMAT.md`` section 3):

1. the layer's input ``x`` is quantized to INT8 per token, exactly as
   :func:`golden.quantize.quantize_activations` does (symmetric, one scale
   ``s_a = max|x| / 127`` per token vector, the tile's driver does this);
2. the tile reads the packed codes in the permuted row order, accumulates the
   int32 slot sums, subtracts ``z * sum(a)`` per group and slot, and
   scales by the 16-bit mantissas into the wide accumulator: ``y[n]`` (an
   integer, :func:`golden.oracle.gemv_int`);
3. the host turns ``y`` back into a real value ``y * s_a * 2**-e[n]`` for the
   float parts of the model (RMSNorm, RoPE, softmax, SiLU, the residual
   stream), as a host or vector unit would.  No layer's output feeds another
   linear directly (each goes through a norm, attention or SiLU first), so the
   tile's optional requantization is not used on this model.

:class:`TileLinear` does steps 1 to 3 for a batch of tokens with BLAS, exactly:
``sum_g sum_t m (acc - z sa)`` is rearranged as ``a @ (m q) - sa @ (m z)``, whose
terms and partial sums are integers below ``2**53`` (checked), so float64 BLAS gives
the exact integer whatever its summation order.
``tests/quality/test_intpath.py`` checks it against :func:`golden.oracle.gemv_int`
bit for bit.  A ``TileLinear`` stands where a weight matrix stood
(``x @ linear``), so :func:`golden.quality.smollm2.forward` runs the integer path
unchanged.

:func:`smoothing` is the mitigation for activation outliers that the tile runs
unchanged: per input channel factors divide the activations and multiply the
weight rows, folded into the RMSNorm weights (q/k/v, gate/up) and into the
``up`` columns (down), before quantization.

:class:`Decoder` is the incremental (KV-cached) forward used for generation; it
records every GEMV of every step (layer input as INT8 codes and the integer
result) so that :mod:`tb.llm` can replay them in the Verilated tile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from golden.checks import check_int
from golden.io import file_digest
from golden.format import ACT_MAX, ACT_MIN
from golden.oracle import gemv_int
from golden.quantize import QuantizedMatrix, activation_scales

__all__ = ["quantize_rows", "TileLinear", "quantize_linear", "LINEAR_ORDER", "HEAD", "tile_linears", "prepare_smollm2",
           "load_smollm2_cached", "smoothing", "apply_smoothing", "Decoder", "GemvRecord", "check_record"]

#: Order of the linear layers inside one block (the order the decoder runs them).
LINEAR_ORDER = ("q", "k", "v", "o", "gate", "up", "down")
#: Name of the output head (the tied embedding, transposed) among the tile's linears.
HEAD = "output"
#: float64 holds every integer below this exactly.
_F64_EXACT = 1 << 53


def quantize_rows(X) -> "tuple[np.ndarray, np.ndarray]":
    """Per-token symmetric INT8 quantization of the rows of ``X`` (T, K).

    Row ``t`` is exactly :func:`golden.quantize.quantize_activations` of ``X[t]``:
    ``s_a = max|x| / 127`` (1.0 for an all-zero row), ``a = clip(rint(x / s_a), -127, 127)``.

    Returns
    -------
    A : int8 (T, K)
    s_a : float64 (T,)
    """
    X = np.asarray(X)
    if X.ndim != 2 or X.size == 0:
        raise ValueError(f"X must be a non-empty 2-D array (tokens, K), got shape {X.shape}")
    X = X.astype(np.float64)
    if not np.all(np.isfinite(X)):
        bad = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(f"activations must be finite; X[{bad[0]}, {bad[1]}] is not")
    s_a = activation_scales(np.abs(X).max(axis=1), "X")
    A = np.clip(np.rint(X / s_a[:, None]), -ACT_MAX, ACT_MAX).astype(np.int8)
    return A, s_a


class TileLinear:
    """A linear layer computed as the tile computes it (see the module docstring).

    Parameters
    ----------
    qm : QuantizedMatrix
        The layer's quantized weights ``W[K, N]``.
    name : str
        For messages.

    Notes
    -----
    Used as ``x @ tile_linear`` with ``x`` float (T, K) or (K,): returns float32.
    ``record`` (a list), when set, receives ``(name, A, y)`` for every call.
    """

    # NumPy defers ``ndarray @ TileLinear`` to ``TileLinear.__rmatmul__``.
    __array_ufunc__ = None

    def __init__(self, qm: QuantizedMatrix, name: str = "linear"):
        self.qm = qm
        self.name = name
        self.record = None
        if qm.K > qm.fmt.max_k_int32(qm.arithmetic):
            raise ValueError(f"{name}: K={qm.K} exceeds the format's int32 bound "
                             f"{qm.fmt.max_k_int32(qm.arithmetic)} (the tile's slot sums would overflow)")
        # sum_g sum_t m (acc - z sa) = a @ (m q) - sa @ (m z): every term an integer, every partial sum
        # below 2**53 (checked), so float64 BLAS gives the exact integer whatever its summation order.
        # m * qm.grid_codes(), built in float64 in place (a 16-bit mantissa times a code is exact): no int64
        # temporaries of the matrix's size, whose fresh pages cost most of the time.
        scaled = qm.mant.astype(np.float64)[qm.group_of_row(), qm.slot_of_row()]    # (K_pad, N)
        scaled *= qm.codes
        shift = qm.fmt.odd_shift(qm.arithmetic)
        if shift:
            scaled[1::2] *= 1 << shift
        self._scaled_codes = scaled
        self._mant_zero = (qm.mant * qm.zeros).reshape(-1, qm.N).astype(np.float64)   # (groups*slots, N)
        peak = max(float(scaled.max(initial=0)), -float(scaled.min(initial=0)),
                   float(np.abs(self._mant_zero).max(initial=0)))
        bound = (-ACT_MIN) * qm.K_pad * int(peak)
        if bound >= _F64_EXACT:
            raise ValueError(f"{name}: integer sums up to {bound} are beyond float64's exact range")
        self._unit = np.exp2(-qm.exp.astype(np.float64))
        self.macs = qm.K * qm.N

    @property
    def K(self) -> int:
        return self.qm.K

    @property
    def N(self) -> int:
        return self.qm.N

    def integer(self, A) -> np.ndarray:
        """Exact integer results ``y`` (T, N) int64 of INT8 activations ``A`` (T, K), original channel order."""
        qm = self.qm
        A = np.asarray(A)
        if A.ndim != 2 or A.shape[1] != qm.K or not np.issubdtype(A.dtype, np.integer):
            raise ValueError(f"{self.name}: activations must be integers of shape (T, {qm.K}), got "
                             f"{A.dtype} {A.shape}")
        T = A.shape[0]
        ar = np.zeros((T, qm.n_groups * qm.group_size), dtype=np.float64)
        ar[:, : qm.K] = A[:, qm.perm] if qm.perm is not None else A
        sa = ar.reshape(T, qm.n_groups, -1, qm.n_slots).sum(axis=2).reshape(T, -1)   # (T, groups*slots)
        y = ar[:, : qm.K_pad] @ self._scaled_codes - sa @ self._mant_zero
        return y.astype(np.int64)

    def __rmatmul__(self, X):
        X = np.asarray(X)
        squeeze = X.ndim == 1
        X2 = X[None] if squeeze else X.reshape(-1, X.shape[-1])
        if X2.shape[1] != self.qm.K:
            raise ValueError(f"{self.name}: input has {X2.shape[1]} channels, the layer K={self.qm.K}")
        A, s_a = quantize_rows(X2)
        y = self.integer(A)
        if self.record is not None:
            self.record.append((self.name, A, y))
        out = (y * s_a[:, None] * self._unit[None, :]).astype(np.float32)
        return out[0] if squeeze else out.reshape(*X.shape[:-1], self.qm.N)


def quantize_linear(W, septet: dict, importance=None) -> QuantizedMatrix:
    """Quantize one matrix as the quality study's septet format ``septet`` does (``FormatSpec.septet``).

    Keys: ``fmt``, ``arithmetic``, ``group_size``, ``clip`` (``"none"``, ``"mse"`` or
    ``"act"``: golden's output-error clipping), ``perm`` (salience permutation),
    ``symmetric``.  ``importance`` is the mean squared calibration input per channel
    (``None``: the squared row norms of ``W`` order the permutation and clipping
    weighs channels equally, as the study does).
    ``tests/quality/test_intpath.py`` checks that this dequantizes to the study's matrix.
    """
    from golden.quality.study import quantize_septet   # the study's one definition of the choice
    return quantize_septet(W, septet, importance)


def tile_linears(model, septet: dict, importance: dict, *, head: bool = False, log=None) -> dict:
    """Every linear of ``model`` (and the output head when ``head``) as a :class:`TileLinear`.

    ``importance``: name -> mean squared calibration input (missing names use the study's fallback).
    """
    out = {}
    names = list(model.linears) + ([HEAD] if head else [])
    for i, name in enumerate(names):
        W = model.embedding.T if name == HEAD else model.linears[name]
        out[name] = TileLinear(quantize_linear(np.ascontiguousarray(W, dtype=np.float32), septet,
                                               importance.get(name)), name)
        if log is not None and (i + 1) % 30 == 0:
            log(f"    quantized {i + 1}/{len(names)} matrices")
    return out


# ---------------------------------------------------------------------------------------------------------------
# Smoothing: per-channel factors that move activation outliers into the weights (the tile runs it unchanged).

def smoothing(model, calibration: dict, *, alpha: float = 0.5) -> dict:
    """SmoothQuant factors ``s[k]`` per block input (``attn_in``, ``ffn_in``, ``down_in``).

    ``s_k = max|x_k|^alpha / max|w_k|^(1 - alpha)`` over the calibration inputs and the
    rows of every matrix reading that input, so that ``x / s`` has flatter channels and
    ``diag(s) W`` absorbs them.  ``calibration``: ``"blk.i.<input>"`` -> (T, K) or max |x| (K,)
    (from ``forward(capture=...)``); blocks without calibration get no factors.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}")
    groups = {"attn_in": ("q", "k", "v"), "ffn_in": ("gate", "up"), "down_in": ("down",)}
    out = {}
    layers = [i for i in range(model.config.n_layers) if all(f"blk.{i}.{inp}" in calibration for inp in groups)]
    for i in layers:
        for inp, readers in groups.items():
            x = np.abs(np.asarray(calibration[f"blk.{i}.{inp}"], dtype=np.float64))
            xmax = x.max(axis=0) if x.ndim == 2 else x
            wmax = np.max([np.abs(model.linears[f"blk.{i}.{r}"]).max(axis=1) for r in readers], axis=0)
            s = np.power(np.maximum(xmax, 1e-5), alpha) / np.power(np.maximum(wmax, 1e-5), 1.0 - alpha)
            out[f"blk.{i}.{inp}"] = s
    return out


def apply_smoothing(model, factors: dict):
    """A copy of ``model`` with ``factors`` folded in (blocks without factors unchanged): the float function is
    unchanged.

    ``attn_in`` / ``ffn_in``: the RMSNorm weight is divided by ``s`` and the rows of
    q/k/v (gate/up) multiplied by ``s``.  ``down_in = silu(gate) * up``: the ``up``
    columns are divided by ``s`` and the ``down`` rows multiplied by it.
    """
    import dataclasses

    lin, norms = dict(model.linears), dict(model.norms)
    for i in range(model.config.n_layers):
        p = f"blk.{i}."
        if p + "attn_in" not in factors:
            continue
        s = factors[p + "attn_in"].astype(np.float32)
        norms[p + "attn_norm"] = norms[p + "attn_norm"] / s
        for r in ("q", "k", "v"):
            lin[p + r] = lin[p + r] * s[:, None]
        s = factors[p + "ffn_in"].astype(np.float32)
        norms[p + "ffn_norm"] = norms[p + "ffn_norm"] / s
        for r in ("gate", "up"):
            lin[p + r] = lin[p + r] * s[:, None]
        s = factors[p + "down_in"].astype(np.float32)
        lin[p + "up"] = lin[p + "up"] / s[None, :]
        lin[p + "down"] = lin[p + "down"] * s[:, None]
    return dataclasses.replace(model, linears=lin, norms=norms)


# ---------------------------------------------------------------------------------------------------------------
# Incremental decoding (generation): one token at a time with a KV cache.

@dataclass
class GemvRecord:
    """One GEMV the tile runs: the layer, its INT8 input (original channel order) and golden's integer result."""

    name: str
    a: np.ndarray          # int8 (K,)
    y: np.ndarray          # int64 (N,)


@dataclass
class Decoder:
    """KV-cached forward of SmolLM2 with every linear (and the head) as a :class:`TileLinear`.

    Parameters
    ----------
    model : SmolLM2Weights
    linears : dict name -> TileLinear or float matrix
        Block linears and :data:`HEAD`; a name not given uses the model's own float weights.
    n_layers : int, optional
        Run only the first blocks (tests); the head still applies.
    """

    model: object
    linears: dict
    n_layers: "int | None" = None
    max_len: int = 2048
    cache_k: list = field(default_factory=list, init=False)
    cache_v: list = field(default_factory=list, init=False)
    pos: int = field(default=0, init=False)

    def __post_init__(self):
        cfg = self.model.config
        self.n_layers = cfg.n_layers if self.n_layers is None else self.n_layers
        if not 0 <= self.n_layers <= cfg.n_layers:
            raise ValueError(f"n_layers must be in [0, {cfg.n_layers}], got {self.n_layers}")
        # Any linear not given runs in float with the model's own weights (as in smollm2.forward).
        self.linears = {**self.model.linears, HEAD: self.model.embedding.T, **self.linears}
        from golden.quality.smollm2 import _rope_tables

        self._cos, self._sin = _rope_tables(self.max_len, cfg.head_dim, cfg.rope_base)
        self.cache_k = [np.zeros((0, cfg.n_kv_heads, cfg.head_dim), np.float32) for _ in range(self.n_layers)]
        self.cache_v = [np.zeros((0, cfg.n_kv_heads, cfg.head_dim), np.float32) for _ in range(self.n_layers)]

    def gemv_names(self) -> list:
        """The GEMVs of one token, in the order they run."""
        return [f"blk.{i}.{n}" for i in range(self.n_layers) for n in LINEAR_ORDER] + [HEAD]

    def step(self, token: int, record: "list | None" = None) -> np.ndarray:
        """Feed one token; return the logits (float32, vocab) of the next.  ``record`` receives GemvRecords."""
        from golden.quality.smollm2 import _rms_norm, _rope

        cfg, m = self.model.config, self.model
        if self.pos >= self.max_len:
            raise ValueError(f"the context is full ({self.max_len} tokens)")
        if not 0 <= int(token) < cfg.vocab_size:
            raise ValueError(f"token ids must be in [0, {cfg.vocab_size - 1}], got {token}")
        H, KV, D = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        G = H // KV
        cos, sin = self._cos[self.pos:self.pos + 1], self._sin[self.pos:self.pos + 1]
        calls = []

        def lin(name, x):
            W = self.linears[name]
            if isinstance(W, TileLinear):
                W.record = calls
                try:
                    return x[None] @ W
                finally:
                    W.record = None
            return x[None] @ W

        x = m.embedding[int(token)].astype(np.float32)
        for i in range(self.n_layers):
            p = f"blk.{i}."
            h = _rms_norm(x, m.norms[p + "attn_norm"], cfg.norm_eps)
            q = _rope(lin(p + "q", h).reshape(1, 1, H, D), cos, sin)[0, 0]
            k = _rope(lin(p + "k", h).reshape(1, 1, KV, D), cos, sin)[0, 0]
            v = lin(p + "v", h).reshape(KV, D)
            self.cache_k[i] = np.concatenate([self.cache_k[i], k[None]])
            self.cache_v[i] = np.concatenate([self.cache_v[i], v[None]])
            att = np.empty((H, D), np.float32)
            for j in range(KV):
                s = q[j * G:(j + 1) * G] @ self.cache_k[i][:, j].T * np.float32(1.0 / math.sqrt(D))   # (G, t)
                s = s - s.max(axis=-1, keepdims=True)
                e = np.exp(s)
                att[j * G:(j + 1) * G] = (e / e.sum(axis=-1, keepdims=True)) @ self.cache_v[i][:, j]
            x = x + lin(p + "o", att.reshape(-1))[0]
            h = _rms_norm(x, m.norms[p + "ffn_norm"], cfg.norm_eps)
            g = lin(p + "gate", h)[0]
            u = lin(p + "up", h)[0]
            a = g / (1.0 + np.exp(-g)) * u
            x = x + lin(p + "down", a)[0]
        h = _rms_norm(x, m.norms["output_norm"], cfg.norm_eps)
        logits = lin(HEAD, h)[0]
        self.pos += 1
        if record is not None:
            record.extend(GemvRecord(n, A[0], y[0]) for n, A, y in calls)
        return logits


def check_record(linears: dict, rec: GemvRecord) -> None:
    """Assert that a recorded result equals :func:`golden.oracle.gemv_int` (the oracle) bit for bit."""
    y = gemv_int(linears[rec.name].qm, rec.a)
    if not np.array_equal(y, rec.y):
        raise AssertionError(f"{rec.name}: the integer path disagrees with golden.oracle.gemv_int")


# ---------------------------------------------------------------------------------------------------------------
# The model the generator runs: every linear and the head quantized once, cached on disk by content.

def _save_matrices(path, qms: dict) -> None:
    import json
    import os

    arrays, meta = {}, {}
    for i, (name, qm) in enumerate(qms.items()):
        meta[name] = {"i": i, "fmt": qm.fmt.name, "arithmetic": qm.arithmetic.value, "K": qm.K, "N": qm.N,
                      "group_size": qm.group_size, "perm": qm.perm is not None}
        arrays[f"codes_{i}"], arrays[f"zeros_{i}"] = qm.codes, qm.zeros
        arrays[f"mant_{i}"], arrays[f"exp_{i}"] = qm.mant, qm.exp
        if qm.perm is not None:
            arrays[f"perm_{i}"] = qm.perm
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _load_matrices(path) -> dict:
    import json

    from golden.format import parse_arithmetic, parse_format

    out = {}
    with np.load(path) as f:
        meta = json.loads(f["meta"].tobytes().decode())
        for name, m in meta.items():
            i = m["i"]
            out[name] = QuantizedMatrix(fmt=parse_format(m["fmt"]), arithmetic=parse_arithmetic(m["arithmetic"]),
                                        K=m["K"], N=m["N"], group_size=m["group_size"], codes=f[f"codes_{i}"],
                                        zeros=f[f"zeros_{i}"], mant=f[f"mant_{i}"], exp=f[f"exp_{i}"],
                                        perm=f[f"perm_{i}"] if m["perm"] else None)
    return out


def load_smollm2_cached(cache_dir):
    """SmolLM2 for decoding with quantized linears: :func:`golden.quality.models.load_smollm2` without the linear
    layers (``linears`` is empty), cached in ``cache_dir`` and memory-mapped on the next load.

    Parsing the GGUF's metadata (the tokenizer) and dequantizing take about 13 CPU seconds;
    the cache (the embedding, the norms, the configuration and the tokenizer) well under one.
    Keyed by the SHA-256 of the GGUF file, of the loader's source (``models.py``) and the
    ``gguf`` package's version (its dequantizer).  Written to a temporary directory and renamed.
    """
    import dataclasses
    import hashlib
    import json
    import os
    import shutil
    from importlib import metadata
    from pathlib import Path

    import golden.quality.models as models

    key = hashlib.sha256("\0".join([file_digest(models.smollm2_gguf_path()), file_digest(models.__file__),
                                     metadata.version("gguf")]).encode()).hexdigest()[:16]
    directory = Path(cache_dir) / f"smollm2-model-{key}"
    if not (directory / "model.json").is_file():
        model = models.load_smollm2()
        pending = Path(cache_dir) / f".{directory.name}.{os.getpid()}.tmp"
        shutil.rmtree(pending, ignore_errors=True)
        pending.mkdir(parents=True)
        arrays = {"embedding": model.embedding, **{f"norm.{n}": w for n, w in model.norms.items()}}
        for i, array in enumerate(arrays.values()):
            np.save(pending / f"{i}.npy", np.ascontiguousarray(array))
        meta = {"config": dataclasses.asdict(model.config), "arrays": list(arrays), "tokens": model.tokens,
                "merges": model.merges, "file_types": model.file_types}
        (pending / "model.json").write_text(json.dumps(meta))
        try:
            os.rename(pending, directory)
        except OSError:                 # another process cached it first
            shutil.rmtree(pending, ignore_errors=True)
    meta = json.loads((directory / "model.json").read_text())
    arrays = {name: np.asarray(np.load(directory / f"{i}.npy", mmap_mode="r"))
              for i, name in enumerate(meta["arrays"])}
    return models.SmolLM2Weights(
        config=models.SmolLM2Config(**meta["config"]), embedding=arrays["embedding"], linears={},
        norms={n[len("norm."):]: a for n, a in arrays.items() if n.startswith("norm.")},
        tokens=meta["tokens"], merges=meta["merges"], file_types=meta["file_types"])


def _matrices_key(septet: dict, names, vocab, calibration) -> str:
    """What the quantized matrices depend on: the GGUF file, the spec, the names, the calibration, the quantizer."""
    import hashlib
    import inspect
    import json
    from pathlib import Path

    import golden.format
    import golden.quantize
    from golden.quality.models import smollm2_gguf_path

    digest = hashlib.sha256(file_digest(smollm2_gguf_path()).encode())
    digest.update(json.dumps({"spec": septet, "names": list(names), "vocab": vocab}, sort_keys=True).encode())
    digest.update(np.asarray(calibration, dtype=np.int64).tobytes())
    for module in (golden.format, golden.quantize):
        digest.update(Path(module.__file__).read_bytes())
    from golden.quality.study import quantize_septet
    digest.update(inspect.getsource(quantize_septet).encode())   # the choice of quantizer lives there
    return digest.hexdigest()[:16]


def prepare_smollm2(septet: dict, *, n_layers: "int | None" = None, cal_tokens: int = 256,
                    vocab: "int | None" = None, cache_dir=None, log=None):
    """SmolLM2-135M, its tokenizer and every linear of the first ``n_layers`` blocks and the head as TileLinears.

    Quantized as :func:`quantize_linear` with the mean squared calibration input of
    each linear as importance (the first ``cal_tokens`` tokens of the pydoc_data
    text; the head, whose input is not captured, uses the study's fallback).  With
    ``cache_dir`` the matrices are cached in a file keyed by the SHA-256 of the GGUF
    file, the spec, the calibration tokens and the source of the quantizer.
    ``vocab`` truncates the vocabulary (and the head) to the first ids: a reduced model for tests.
    With ``cache_dir`` the model itself is loaded through :func:`load_smollm2_cached` (its ``linears`` are empty:
    every linear the decoder runs is among the returned TileLinears).

    Returns
    -------
    model, tokenizer, linears (dict name -> TileLinear, :data:`HEAD` included)
    """
    import dataclasses
    from pathlib import Path

    from golden.quality.models import load_smollm2
    from golden.quality.smollm2 import Tokenizer, calibration_inputs, text_split

    full = load_smollm2() if cache_dir is None else load_smollm2_cached(cache_dir)
    model = full
    cfg = model.config
    n_layers = cfg.n_layers if n_layers is None else n_layers
    check_int("n_layers", n_layers, 1, cfg.n_layers)
    if vocab is not None:
        check_int("vocab", vocab, 2, cfg.vocab_size)
        model = dataclasses.replace(model, embedding=model.embedding[:vocab],
                                    config=dataclasses.replace(cfg, vocab_size=vocab))
    tokenizer = Tokenizer(model.tokens, model.merges)
    split = text_split(full, cal_tokens=cal_tokens, n_seq=2, seq_len=2)
    names = [f"blk.{i}.{n}" for i in range(n_layers) for n in LINEAR_ORDER] + [HEAD]
    key = _matrices_key(septet, names, vocab, split.calibration)
    path = None if cache_dir is None else Path(cache_dir) / f"smollm2-{key}.npz"
    if path is not None and path.is_file():
        qms = _load_matrices(path)
    else:
        if log:
            log(f"calibrating on {cal_tokens} tokens and quantizing {len(names)} matrices "
                f"(cached afterwards) ...")
        source = load_smollm2()
        acts = calibration_inputs(source, split.calibration)
        qms = {}
        for name in names:
            W = model.embedding.T if name == HEAD else source.linears[name]
            imp = None if name == HEAD else np.mean(np.square(acts[name], dtype=np.float64), axis=0)
            qms[name] = quantize_linear(np.ascontiguousarray(W, dtype=np.float32), septet, imp)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            _save_matrices(path, qms)
    return model, tokenizer, {name: TileLinear(qm, name) for name, qm in qms.items()}
