"""The fair study's machinery: disjoint text, per-window NLL, paired bootstrap, held-out output error."""

import numpy as np
import pytest

from golden.quality import fair


@pytest.fixture(scope="module")
def smollm2():
    from golden.quality.models import load_smollm2
    return load_smollm2()


@pytest.fixture(scope="module")
def text(smollm2):
    return fair.fair_text(smollm2, cal_tokens=512, n_windows=4, seq_len=64)


def test_calibration_and_evaluation_text_are_disjoint(text):
    assert text.calibration.shape == (8, 64)
    assert {k: v.shape for k, v in text.evaluation.items()} == {"topics": (4, 64), "docstrings": (4, 64)}
    assert text.calibration_topics and text.evaluation_topics
    assert not set(text.calibration_topics) & set(text.evaluation_topics)
    # no 16-token run of calibration text appears in any evaluation window
    assert text.shared_ngrams(16) == 0
    # while the evaluation kinds do differ from each other
    assert not np.array_equal(text.evaluation["topics"], text.evaluation["docstrings"])


def test_default_text_has_the_brief_s_sizes(smollm2):
    t = fair.fair_text(smollm2)
    assert t.calibration.size >= 2048
    assert all(w.shape[0] >= 16 for w in t.evaluation.values()) and len(t.evaluation) >= 2
    assert not set(t.calibration_topics) & set(t.evaluation_topics)


@pytest.mark.parametrize("kwargs, message", [
    (dict(cal_tokens=100, seq_len=64), "cal_tokens must be a multiple of seq_len"),
    (dict(cal_tokens=64 * 10_000, seq_len=64), "cal_tokens=640000 is too large"),
    (dict(n_windows=1), "n_windows must be an integer >= 2"),
    (dict(kinds=("news",)), "kinds must be distinct values among"),
])
def test_fair_text_bad_input(smollm2, kwargs, message):
    with pytest.raises(ValueError, match=message):
        fair.fair_text(smollm2, **kwargs)


def test_paired_bootstrap_on_identical_inputs_is_exactly_one():
    nll = np.random.default_rng(0).uniform(500, 700, 16)
    ci = fair.paired_ratio(nll, nll.copy(), 255)
    assert (ci.ratio, ci.low, ci.high, ci.verdict) == (1.0, 1.0, 1.0, "not significant")


def test_paired_bootstrap_interval_holds_the_point_and_judges_only_outside_one():
    rng = np.random.default_rng(1)
    b = {"x": rng.uniform(500, 700, 16), "y": rng.uniform(400, 600, 16)}
    # a constant per-token shift of 0.02 nats is a ratio of exp(0.02) with a zero-width interval
    a = {k: v + 0.02 * 255 for k, v in b.items()}
    ci = fair.paired_ratio(a, b, 255)
    assert ci.ratio == pytest.approx(np.exp(0.02)) and ci.low == pytest.approx(ci.high)
    assert ci.verdict == "higher" and fair.paired_ratio(b, a, 255).verdict == "lower"
    # noise with no shift: the interval contains the point estimate and 1, so no verdict
    noisy = {k: v + rng.normal(0, 5, 16) for k, v in b.items()}
    ci = fair.paired_ratio(noisy, b, 255, seed=3)
    assert ci.low <= ci.ratio <= ci.high
    assert ci.low < 1 < ci.high and ci.verdict == "not significant"
    with pytest.raises(ValueError, match="both dicts with the same kinds"):
        fair.paired_ratio(noisy, b["x"], 255)


def test_window_nll_matches_the_mean_log_likelihood(smollm2, text):
    from golden.quality.smollm2 import forward
    windows = text.evaluation["docstrings"][:2]
    logits_fn = lambda t: forward(smollm2, t, n_layers=2)   # noqa: E731
    nll = fair.window_nll(logits_fn, windows, batch=1)
    logits = forward(smollm2, windows[:, :-1], n_layers=2).astype(np.float64)
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    expect = -np.take_along_axis(logp, windows[:, 1:, None], -1)[..., 0].sum(axis=1)
    np.testing.assert_allclose(nll, expect, rtol=1e-9)


def test_moments_give_the_output_error_and_are_cached_on_content(smollm2, text, tmp_path):
    from golden.quality.smollm2 import forward
    win = text.calibration[:2]
    m1 = fair.activation_moments(smollm2, win, n_layers=1, cache_dir=tmp_path, model_digest="x")
    assert sorted(m1) == ["blk.0.attn_in", "blk.0.down_in", "blk.0.ffn_in", "blk.0.o_in"]
    assert len(list(tmp_path.glob("moments-*.npz"))) == 1
    m2 = fair.activation_moments(smollm2, win, n_layers=1, cache_dir=tmp_path, model_digest="x")
    np.testing.assert_array_equal(m1["blk.0.down_in"], m2["blk.0.down_in"])
    fair.activation_moments(smollm2, text.calibration[2:4], n_layers=1, cache_dir=tmp_path, model_digest="x")
    assert len(list(tmp_path.glob("moments-*.npz"))) == 2       # other tokens, other key
    acts = {}
    forward(smollm2, win, n_layers=1, capture=acts)
    X = acts["blk.0.ffn_in"].astype(np.float64)
    W = smollm2.linears["blk.0.up"]
    W_hat = W + np.random.default_rng(0).normal(0, 0.01, W.shape).astype(np.float32)
    direct = np.linalg.norm(X @ (W_hat - W)) / np.linalg.norm(X @ W)
    assert fair.output_error(W, W_hat, m1["blk.0.ffn_in"]) == pytest.approx(direct, rel=1e-4)
    assert fair.output_error(W, W, m1["blk.0.ffn_in"]) == 0.0
