"""The fair study's machinery: disjoint text, per-window likelihoods, paired intervals, held-out output error.

A small API that every perplexity comparison in the project uses (the float
quality study here, the integer-path perplexity through the RTL elsewhere):

- :func:`fair_text` cuts *calibration* and *evaluation* text from sources that
  never overlap: calibration windows come from pydoc topics at the start of the
  sorted keys, evaluation kind ``"topics"`` from topics at the end, kind
  ``"docstrings"`` from the docstrings of a fixed list of standard-library
  modules, which no calibration touches.  Every window is ``seq_len`` tokens,
  one per topic or module while there are enough.
- :func:`window_nll` runs any ``logits_fn(tokens (B, T)) -> logits (B, T, V)``
  on the windows and returns the summed negative log-likelihood per window, so
  any forward (float NumPy, integer golden, RTL) is scored the same way.
- :func:`paired_ratio` is the paired bootstrap of the perplexity ratio of two
  models scored on the *same* windows (windows resampled with replacement,
  within each kind when several are pooled): a point estimate, a percentile
  interval and a verdict that says "lower" or "higher" only where the interval
  excludes 1.
- :func:`activation_moments` accumulates ``X.T @ X / n`` of every linear's
  input (a content-keyed cache under ``build/``), the statistic calibration
  (importance, GPTQ) and held-out output error both need;
  :func:`output_error` is ``||X (W_hat - W)||_F / ||X W||_F`` from it.

Typical use::

    text = fair_text(model)                              # 2,048 calibration tokens, 2 x 16 x 256 evaluation
    ref = {k: window_nll(smollm2_logits(model), w) for k, w in text.evaluation.items()}
    alt = {k: window_nll(smollm2_logits(model, linears), w) for k, w in text.evaluation.items()}
    ci = paired_ratio(alt, ref, text.tokens_per_window)  # pooled over kinds
    print(ci.ratio, ci.low, ci.high, ci.verdict)
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import pathlib
import tempfile
import warnings
from dataclasses import dataclass, field

import numpy as np

from golden.checks import check_int
from golden.io import file_digest

__all__ = [
    "CAL_TOKENS_DEFAULT", "N_WINDOWS_DEFAULT", "SEQ_LEN_DEFAULT", "EVAL_KINDS", "DOC_MODULES",
    "FairText", "fair_text", "window_nll", "smollm2_logits", "RatioInterval", "paired_ratio",
    "activation_moments", "output_error", "CACHE_DIR",
]

#: Default calibration size: enough for every method of the study (GPTQ needs well over the 576-wide inputs).
CAL_TOKENS_DEFAULT = 2048
#: Default evaluation windows per kind of text.
N_WINDOWS_DEFAULT = 16
#: Default tokens per window (calibration is cut into windows of the same length).
SEQ_LEN_DEFAULT = 256
#: Kinds of evaluation text, none of which calibration touches.
EVAL_KINDS = ("topics", "docstrings")
#: Standard-library modules whose docstrings make the ``"docstrings"`` evaluation text, in this order.
DOC_MODULES = ("argparse", "collections", "textwrap", "fractions", "statistics", "heapq", "bisect",
               "functools", "itertools", "pathlib", "json", "csv", "string", "shutil", "random",
               "datetime", "decimal", "difflib", "inspect", "enum", "dataclasses", "logging",
               "subprocess", "threading", "email.message", "urllib.parse", "zipfile", "tarfile", "calendar")
#: Where content-keyed caches live (relative to the working directory unless absolute).
CACHE_DIR = pathlib.Path(os.environ.get("SEPTET_CACHE", "build/cache"))
#: Bump when the meaning of a cached statistic changes.
_CACHE_VERSION = 1


@dataclass(frozen=True)
class FairText:
    """Calibration and evaluation tokens from disjoint text.

    Attributes
    ----------
    calibration : ndarray of int64, shape (n_cal_windows, seq_len)
        Calibration windows (pydoc topics from the start of the sorted keys).
    evaluation : dict of str -> ndarray of int64, shape (n_windows, seq_len)
        Evaluation windows per kind (:data:`EVAL_KINDS`).
    calibration_topics, evaluation_topics : tuple of str
        pydoc topic keys each side used (disjoint by construction, checked).
    sources : dict of str -> str
        A one-line description of each part's text.
    """

    calibration: np.ndarray
    evaluation: dict
    calibration_topics: tuple
    evaluation_topics: tuple
    sources: dict = field(default_factory=dict)

    @property
    def seq_len(self) -> int:
        return int(self.calibration.shape[1])

    @property
    def tokens_per_window(self) -> int:
        """Predictions scored per window (every token but the first)."""
        return self.seq_len - 1

    @property
    def kinds(self) -> tuple:
        return tuple(self.evaluation)

    def shared_ngrams(self, n: int = 16) -> int:
        """Number of distinct ``n``-token sequences found both in calibration and in some evaluation window."""
        def grams(a):
            a = np.asarray(a).reshape(-1, a.shape[-1])
            return {tuple(row[i:i + n]) for row in a for i in range(len(row) - n + 1)}
        cal = grams(self.calibration)
        return sum(len(cal & grams(w)) for w in self.evaluation.values())


def _docstring_sources() -> list:
    """Per module of :data:`DOC_MODULES`: its docstring, then its own public classes' and functions'
    (sorted by name), joined by blank lines."""
    sources = []
    for mod_name in DOC_MODULES:
        mod = importlib.import_module(mod_name)
        docs = [inspect.getdoc(mod) or ""]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)   # attribute access on deprecated aliases
            for name in sorted(vars(mod)):
                obj = vars(mod)[name]
                if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                    continue
                if inspect.isclass(obj) or inspect.isfunction(obj):
                    docs.append(inspect.getdoc(obj) or "")
        sources.append((mod_name, "\n\n".join(d for d in docs if d.strip())))
    return sources


def _windows_round_robin(tok, sources, n: int, seq_len: int, what: str) -> "tuple[np.ndarray, list]":
    """``n`` windows of ``seq_len`` tokens: the first window of each source in order, then the second, ...

    ``sources`` is a list of ``(name, text)``; returns the windows and the names of the sources used.
    One window per source while there are enough keeps windows as independent as the text allows.
    """
    encoded = []
    for name, text in sources:
        ids = tok.encode(text)
        encoded.append((name, [ids[i:i + seq_len] for i in range(0, len(ids) - seq_len + 1, seq_len)]))
        if sum(1 for _, w in encoded if w) >= n:
            break
    windows, used = [], []
    depth = 0
    while len(windows) < n:
        row = [(name, w[depth]) for name, w in encoded if len(w) > depth]
        if not row:
            total = sum(len(w) for _, w in encoded)
            raise ValueError(f"{what}: the text holds {total} windows of {seq_len} tokens, fewer than the "
                             f"{n} requested")
        for name, w in row[: n - len(windows)]:
            windows.append(w)
            if name not in used:
                used.append(name)
        depth += 1
    return np.array(windows, dtype=np.int64), used


def fair_text(model, *, cal_tokens: int = CAL_TOKENS_DEFAULT, n_windows: int = N_WINDOWS_DEFAULT,
              seq_len: int = SEQ_LEN_DEFAULT, kinds=EVAL_KINDS) -> FairText:
    """Cut calibration and evaluation windows from disjoint text.

    Calibration takes pydoc topics in sorted key order, evaluation kind
    ``"topics"`` takes them in reverse order, each side one window (the
    topic's first ``seq_len`` tokens) per topic before it takes a second; the
    two sides never share a topic (checked).  Kind ``"docstrings"`` takes one
    window per module of :data:`DOC_MODULES` the same way.

    Parameters
    ----------
    model : SmolLM2Weights
        Supplies the tokenizer (``tokens`` and ``merges``).
    cal_tokens : int
        Calibration tokens, a multiple of ``seq_len`` (default 2,048).
    n_windows : int
        Evaluation windows per kind (default 16, at least 2).
    seq_len : int
        Tokens per window (default 256, at least 8).
    kinds : sequence of str
        Evaluation kinds, a subset of :data:`EVAL_KINDS`.

    Returns
    -------
    FairText
    """
    import sys

    from pydoc_data import topics

    from golden.quality.smollm2 import Tokenizer

    seq_len = check_int("seq_len", seq_len, 8)
    cal_tokens = check_int("cal_tokens", cal_tokens, seq_len)
    n_windows = check_int("n_windows", n_windows, 2)
    if cal_tokens % seq_len:
        raise ValueError(f"cal_tokens must be a multiple of seq_len = {seq_len}, got {cal_tokens}")
    kinds = tuple(kinds)
    if not kinds or any(k not in EVAL_KINDS for k in kinds) or len(set(kinds)) != len(kinds):
        raise ValueError(f"kinds must be distinct values among {EVAL_KINDS}, got {kinds!r}")
    tok = Tokenizer(model.tokens, model.merges)
    keys = sorted(topics.topics)
    py = f"Python {sys.version_info.major}.{sys.version_info.minor}"
    n_cal = cal_tokens // seq_len
    eval_keys: tuple = ()
    evaluation, sources = {}, {}
    if "topics" in kinds:
        # Evaluation first, from the back, so that calibration can be told where to stop.
        evaluation["topics"], used = _windows_round_robin(
            tok, [(k, topics.topics[k]) for k in keys[::-1]], n_windows, seq_len, "kind 'topics'")
        eval_keys = tuple(used)
        sources["topics"] = (f"pydoc_data.topics of {py}, {len(used)} topics from the end of the sorted keys "
                             f"({used[-1]!r}..{used[0]!r}): {n_windows} x {seq_len}")
    free = [k for k in keys if k not in eval_keys]
    try:
        calibration, cal_used = _windows_round_robin(tok, [(k, topics.topics[k]) for k in free], n_cal, seq_len,
                                                     "calibration")
    except ValueError:
        raise ValueError(f"cal_tokens={cal_tokens} is too large: the pydoc topics left after evaluation do not "
                         f"hold {n_cal} windows of {seq_len} tokens") from None
    cal_keys = tuple(cal_used)
    if set(cal_keys) & set(eval_keys):
        raise AssertionError("calibration and evaluation share a pydoc topic")
    sources["calibration"] = (f"pydoc_data.topics of {py}, {len(cal_keys)} topics from the start of the sorted "
                              f"keys ({cal_keys[0]!r}..{cal_keys[-1]!r}): {n_cal} x {seq_len}")
    if "docstrings" in kinds:
        evaluation["docstrings"], used = _windows_round_robin(tok, _docstring_sources(), n_windows, seq_len,
                                                              "kind 'docstrings'")
        sources["docstrings"] = (f"docstrings of {len(used)} stdlib modules of {py} "
                                 f"({used[0]}..{used[-1]}, golden.quality.fair.DOC_MODULES): {n_windows} x {seq_len}")
    evaluation = {k: evaluation[k] for k in kinds}
    return FairText(calibration=calibration, evaluation=evaluation, calibration_topics=cal_keys,
                    evaluation_topics=eval_keys, sources=sources)


def smollm2_logits(model, linears=None, *, n_layers=None):
    """``logits_fn`` for :func:`window_nll`: the NumPy float forward with ``linears`` swapped in.

    ``n_layers`` runs only the first blocks (a reduced model for quick tests).
    """
    from golden.quality.smollm2 import forward

    def logits_fn(tokens):
        return forward(model, tokens, linears, n_layers=n_layers)
    return logits_fn


def window_nll(logits_fn, windows, *, batch: int = 4) -> np.ndarray:
    """Summed negative log-likelihood (nats) of each window's next-token predictions.

    Parameters
    ----------
    logits_fn : callable
        ``logits_fn(tokens int64 (B, T-1)) -> logits (B, T-1, vocab)``.
    windows : ndarray of int, shape (n_windows, T)
    batch : int
        Windows per call of ``logits_fn``.

    Returns
    -------
    ndarray of float64, shape (n_windows,)
        Each window scores its ``T - 1`` predictions of tokens ``1 .. T-1``.
    """
    windows = np.asarray(windows)
    if windows.ndim != 2 or windows.shape[1] < 2:
        raise ValueError(f"windows must have shape (n_windows, T) with T >= 2, got {windows.shape}")
    batch = check_int("batch", batch, 1)
    out = np.empty(len(windows), dtype=np.float64)
    for b0 in range(0, len(windows), batch):
        seq = windows[b0:b0 + batch]
        logits = np.asarray(logits_fn(seq[:, :-1]))
        if logits.shape[:2] != (len(seq), seq.shape[1] - 1):
            raise ValueError(f"logits_fn returned shape {logits.shape} for tokens {seq[:, :-1].shape}")
        # log-sum-exp in the logits' precision, sums in float64 (as smollm2.perplexity)
        m = logits.max(axis=-1, keepdims=True)
        lse = np.log(np.exp(logits - m).sum(axis=-1, dtype=np.float64)) + m[..., 0]
        nll = lse - np.take_along_axis(logits, seq[:, 1:, None], -1)[..., 0]
        if not np.all(np.isfinite(nll)):
            raise ValueError("logits_fn produced non-finite log-likelihoods")
        out[b0:b0 + len(seq)] = nll.sum(axis=1)
    return out


@dataclass(frozen=True)
class RatioInterval:
    """Perplexity ratio ``ppl_a / ppl_b`` with its paired bootstrap interval.

    Attributes
    ----------
    ratio : float
        Point estimate on all windows.
    low, high : float
        Percentile bootstrap interval at ``level``.
    level : float
    n_windows : int
        Windows per side (pooled over kinds).
    """

    ratio: float
    low: float
    high: float
    level: float
    n_windows: int

    @property
    def verdict(self) -> str:
        """``"lower"`` / ``"higher"`` where the interval excludes 1, else ``"not significant"``."""
        if self.high < 1.0:
            return "lower"
        if self.low > 1.0:
            return "higher"
        return "not significant"

    def as_dict(self) -> dict:
        return {"ratio": self.ratio, "low": self.low, "high": self.high, "level": self.level,
                "n_windows": self.n_windows, "verdict": self.verdict}

    def __str__(self) -> str:
        return f"{self.ratio:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _as_strata(nll) -> list:
    if isinstance(nll, dict):
        return [np.asarray(nll[k], dtype=np.float64) for k in sorted(nll)]
    return [np.asarray(nll, dtype=np.float64)]


def paired_ratio(nll_a, nll_b, tokens_per_window, *, n_boot: int = 10_000, level: float = 0.95,
                 seed: int = 0) -> RatioInterval:
    """Paired bootstrap of the perplexity ratio of model a to model b on the same windows.

    Parameters
    ----------
    nll_a, nll_b : ndarray (n_windows,) or dict kind -> ndarray
        Summed NLL per window (:func:`window_nll`) of each model, window for
        window on the same tokens.  Dicts pool kinds: resampling stays within
        each kind (a stratified bootstrap), so every replicate keeps the mix.
    tokens_per_window : int
        Predictions per window (equal for every window).
    n_boot : int
        Bootstrap replicates.
    level : float
        Interval coverage, in (0, 1).
    seed : int
        Seed of the resampling (the interval is reproducible).

    Returns
    -------
    RatioInterval
        ``exp(mean NLL_a - mean NLL_b)`` per token, and its percentile interval.
    """
    if isinstance(nll_a, dict) != isinstance(nll_b, dict) or (
            isinstance(nll_a, dict) and sorted(nll_a) != sorted(nll_b)):
        raise ValueError("nll_a and nll_b must both be arrays or both dicts with the same kinds")
    a, b = _as_strata(nll_a), _as_strata(nll_b)
    for x, y in zip(a, b):
        if x.ndim != 1 or x.shape != y.shape or len(x) < 2:
            raise ValueError(f"paired windows must be 1-D arrays of equal length >= 2, got {x.shape} and {y.shape}")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise ValueError("window NLLs must be finite")
    tokens_per_window = check_int("tokens_per_window", tokens_per_window, 1)
    n_boot = check_int("n_boot", n_boot, 100)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    n_total = sum(len(x) for x in a)
    diff_total = np.zeros(n_boot)
    rng = np.random.default_rng(seed)
    for x, y in zip(a, b):
        d = x - y
        idx = rng.integers(0, len(d), size=(n_boot, len(d)))
        diff_total += d[idx].sum(axis=1)
    denom = n_total * tokens_per_window
    point = float(np.exp(sum((x - y).sum() for x, y in zip(a, b)) / denom))
    reps = np.exp(diff_total / denom)
    lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    return RatioInterval(ratio=point, low=float(lo), high=float(hi), level=level, n_windows=n_total)


def _save_npz_atomic(path: pathlib.Path, arrays: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def activation_moments(model, windows, linears=None, *, n_layers=None, batch: int = 4, cache=True,
                       cache_dir=None, model_digest=None) -> dict:
    """Second moments ``X.T @ X / n`` (float32, (K, K)) of every linear's input on ``windows``.

    Keys are the inputs ``"blk.i.attn_in"``, ``"blk.i.o_in"``, ``"blk.i.ffn_in"``,
    ``"blk.i.down_in"`` (see :data:`golden.quality.smollm2.LINEAR_INPUTS`);
    ``np.diag`` of one is the mean squared activation per channel (ggml's
    importance matrix).  Only the reference model (``linears=None``) is cached,
    under ``cache_dir``, keyed on the model file's SHA-256, the tokens and the settings.
    """
    from golden.quality.models import smollm2_gguf_path
    from golden.quality.smollm2 import forward

    windows = np.asarray(windows, dtype=np.int64)
    if windows.ndim != 2:
        raise ValueError(f"windows must have shape (n_windows, T), got {windows.shape}")
    path = None
    if cache and linears is None:
        digest = model_digest or file_digest(smollm2_gguf_path())
        h = hashlib.sha256()
        h.update(f"moments v{_CACHE_VERSION} {digest} layers={n_layers} shape={windows.shape}".encode())
        h.update(windows.tobytes())
        path = pathlib.Path(cache_dir or CACHE_DIR) / f"moments-{h.hexdigest()[:24]}.npz"
        if path.exists():
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
    sums: dict = {}

    def accumulate(key, X):
        X = np.asarray(X, dtype=np.float32)
        m = X.T @ X
        if key in sums:
            sums[key] += m
        else:
            sums[key] = m.astype(np.float64)
    for b0 in range(0, len(windows), batch):
        forward(model, windows[b0:b0 + batch], linears, n_layers=n_layers, capture=accumulate,
                logits_positions=slice(0, 1))
    n = windows.size
    out = {k: (v / n).astype(np.float32) for k, v in sums.items()}
    if path is not None:
        _save_npz_atomic(path, out)
    return out


def output_error(W, W_hat, moment) -> float:
    """Relative output error ``||X (W_hat - W)||_F / ||X W||_F`` from the input moment ``X.T @ X / n``."""
    W = np.asarray(W, dtype=np.float64)
    d = np.asarray(W_hat, dtype=np.float64) - W
    M = np.asarray(moment, dtype=np.float64)
    num = float(np.einsum("kn,kn->", d, M @ d))
    den = float(np.einsum("kn,kn->", W, M @ W))
    if den <= 0:
        raise ValueError("the reference output X @ W is zero: output error undefined")
    return float(np.sqrt(max(num, 0.0) / den))
