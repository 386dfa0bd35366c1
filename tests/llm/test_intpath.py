"""The integer path: golden's integer GEMV exactly, per-token INT8 activations, and the model around it."""

import numpy as np
import pytest

from golden.oracle import gemv_int
from golden.quality.intpath import (HEAD, Decoder, TileLinear, apply_smoothing, quantize_linear, quantize_rows,
                                    smoothing)
from golden.quantize import quantize, quantize_activations, salience_permutation

from .conftest import time_limit

SPECS = [
    dict(fmt="4+3", arithmetic="own", group_size=128, clip="act", perm=True),
    dict(fmt="4+3", arithmetic="shared", group_size=64, clip="none", perm=True),
    dict(fmt="4+4", arithmetic="shared", group_size=128, clip="none", perm=False),
    dict(fmt="3+3", arithmetic="own", group_size=None, clip="mse", perm=False),
    dict(fmt="8+8", arithmetic="own", group_size=None, clip="none", perm=False),
    dict(fmt="4+4", arithmetic="own", group_size=128, symmetric=True),
]


def test_quantize_rows_is_golden_activation_quantizer_per_token():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((6, 37)) * np.array([1e-3, 1, 30, 1e4, 0, 2])[:, None]
    X[4] = 0.0
    A, s_a = quantize_rows(X)
    for t in range(len(X)):
        a, s = quantize_activations(X[t])
        assert np.array_equal(A[t], a) and s_a[t] == s
    with pytest.raises(ValueError, match="finite"):
        quantize_rows(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match=r"max\|X\| = 0 or in \[1\.17549e-38, 3\.40282e\+38\].*\(row 1\)"):
        quantize_rows(np.array([[1.0, 2.0], [3.4e302, 0.0]]))


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s['fmt']}-{s.get('arithmetic')}-{s['group_size']}")
@pytest.mark.parametrize("K", [576, 333])
def test_tile_linear_equals_the_oracle_bit_for_bit(spec, K):
    rng = np.random.default_rng(K)
    N = 40
    W = rng.standard_normal((K, N)) * rng.gamma(1.0, 1.0, size=(K, 1))
    qm = quantize_linear(W, spec, rng.random(K) + 0.1)
    lin = TileLinear(qm, "w")
    A = rng.integers(-128, 128, size=(5, K)).astype(np.int8)
    A[0] = 127
    A[1] = -128
    y = lin.integer(A)
    for t in range(len(A)):
        assert np.array_equal(y[t], gemv_int(qm, A[t]))
    # The real-valued output: y * s_a * 2**-e with golden's activation quantizer.
    X = rng.standard_normal((3, K))
    out = X @ lin
    for t in range(3):
        a, s = quantize_activations(X[t])
        want = (gemv_int(qm, a) * s * np.exp2(-qm.exp.astype(np.float64))).astype(np.float32)
        assert np.array_equal(out[t], want)


def test_quantize_linear_is_the_quality_study_treatment():
    from golden.quality.study import format_specs

    rng = np.random.default_rng(3)
    W = rng.standard_normal((256, 48)).astype(np.float32)
    imp = rng.random(256)
    for spec in format_specs():
        if spec.family != "septet":
            continue
        W_hat, _, _ = spec.apply(W, imp)
        assert np.array_equal(quantize_linear(W, spec.septet, imp).dequantize(np.float32), W_hat), spec.label


def test_tile_linear_rejects_bad_inputs():
    qm = quantize(np.ones((8, 4)), "4+3", group_size=4, perm=salience_permutation(np.arange(8.0)))
    lin = TileLinear(qm, "tiny")
    with pytest.raises(ValueError, match="tiny: input has 7 channels"):
        np.ones((2, 7)) @ lin
    with pytest.raises(ValueError, match="integers of shape"):
        lin.integer(np.ones((2, 8)))


def test_decoder_matches_the_full_sequence_forward(smollm2):
    from golden.quality.smollm2 import forward

    with time_limit(120, "decoder vs forward"):
        tokens = np.array([504, 3575, 282, 4649, 314])
        dec = Decoder(smollm2, {HEAD: smollm2.embedding.T}, n_layers=2)
        for t in tokens:
            logits = dec.step(int(t))
        want = forward(smollm2, tokens[None], n_layers=2)[0, -1]
        assert np.allclose(logits, want, rtol=1e-4, atol=1e-3 * np.abs(want).max())


def test_smoothing_keeps_the_float_function(smollm2):
    from golden.quality.smollm2 import forward

    with time_limit(120, "smoothing"):
        tokens = np.array([[504, 3575, 282, 4649, 314, 13]])
        captured = {}
        forward(smollm2, tokens, capture=captured, n_layers=3)
        factors = smoothing(smollm2, captured, alpha=0.5)
        assert sorted(factors) == sorted(f"blk.{i}.{x}" for i in range(3) for x in ("attn_in", "ffn_in", "down_in"))
        assert all(np.all(f > 0) and np.ptp(f) > 0 for f in factors.values())
        # Per-channel maxima (what a calibration over several windows keeps) give the same factors.
        maxima = smoothing(smollm2, {k: np.abs(v).max(axis=0) for k, v in captured.items()}, alpha=0.5)
        assert all(np.array_equal(maxima[k], factors[k]) for k in factors)
        smoothed = apply_smoothing(smollm2, factors)
        want = forward(smollm2, tokens, n_layers=3)
        got = forward(smoothed, tokens, n_layers=3)
        assert np.allclose(got, want, rtol=1e-3, atol=2e-3 * np.abs(want).max())
        with pytest.raises(ValueError, match="alpha"):
            smoothing(smollm2, captured, alpha=1.5)


def test_the_cached_model_is_the_file_s_and_is_keyed_on_its_content(tmp_path, smollm2, monkeypatch):
    from golden.quality import models
    from golden.quality.intpath import load_smollm2_cached

    with time_limit(120, "load_smollm2_cached"):
        load_smollm2_cached(tmp_path)                       # writes the cache from the (session-cached) model

        def not_cached():
            raise AssertionError("load_smollm2 called: the cache was not used")

        monkeypatch.setattr(models, "load_smollm2", not_cached)
        cached = load_smollm2_cached(tmp_path)
    assert cached.linears == {} and cached.config == smollm2.config and cached.file_types == smollm2.file_types
    assert cached.tokens == smollm2.tokens and cached.merges == smollm2.merges
    assert np.array_equal(cached.embedding, smollm2.embedding) and cached.embedding.dtype == np.float32
    assert cached.norms.keys() == smollm2.norms.keys()
    assert all(np.array_equal(cached.norms[k], smollm2.norms[k]) for k in smollm2.norms)
    # Another model file is another entry: the loader runs again.
    other = tmp_path / "other.gguf"
    other.write_bytes(b"not the same model")
    monkeypatch.setattr(models, "smollm2_gguf_path", lambda: other)
    with pytest.raises(AssertionError, match="the cache was not used"):
        load_smollm2_cached(tmp_path)
