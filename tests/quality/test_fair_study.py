"""The fair study's quantizer options (GPTQ codes, narrow scale mantissas, ggml imatrix) and a reduced run."""

import numpy as np
import pytest

from golden.format import SCALE_BITS
from golden.pack import pack, unpack
from golden.quality import ggml
from golden.quantize import gptq_codes, quantize, salience_permutation


def _correlated(K=128, N=24, T=512, seed=0):
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((K, K)) * 0.3 + np.eye(K) * rng.uniform(0.2, 3.0, K)
    X = rng.standard_normal((T, K)) @ mix
    W = rng.standard_normal((K, N)).astype(np.float32)
    return X, W, (X.T @ X / T)


def test_gptq_keeps_the_headers_lowers_the_output_error_and_packs():
    X, W, H = _correlated()
    imp = np.diag(H)
    qm = quantize(W, "4+3", group_size=32, clip="output", importance=imp, perm=salience_permutation(imp))
    g = gptq_codes(qm, W, H)
    for field in ("zeros", "mant", "exp", "perm"):
        np.testing.assert_array_equal(getattr(g, field), getattr(qm, field))
    assert g.codes[0::2].max() <= 15 and g.codes[1::2].max() <= 7
    err = lambda q: np.linalg.norm(X @ (q.dequantize() - W))   # noqa: E731
    assert err(g) < 0.9 * err(qm)
    # the lazy block size is an implementation detail: same codes
    np.testing.assert_array_equal(gptq_codes(qm, W, H, block=7).codes, g.codes)
    # exactly representable: the packed stream round-trips the new codes
    np.testing.assert_array_equal(unpack(pack(g)).codes, g.codes)
    with pytest.raises(ValueError, match="hessian must be a finite"):
        gptq_codes(qm, W, H[:-1])


def test_narrow_scale_mantissas_save_exactly_their_bits():
    W = np.random.default_rng(1).standard_normal((256, 8)).astype(np.float32)
    full = quantize(W, "4+3", group_size=64)
    narrow = quantize(W, "4+3", group_size=64, scale_bits=6)
    assert full.bits_per_weight == full.fmt.stored_bits_per_column(256, 64, full.arithmetic) / 256
    # 4 groups x 2 slot scales, 10 bits fewer each
    assert (full.bits_per_weight - narrow.bits_per_weight) * 256 == 4 * 2 * (SCALE_BITS - 6)
    assert narrow.mant.max() < 2 ** 6 and full.mant.max() >= 2 ** 15
    assert np.sqrt(np.mean((narrow.dequantize() - W) ** 2)) < 0.2   # still a sane quantization
    with pytest.raises(ValueError, match=r"scale_bits must be an integer in \[2, 16\]"):
        quantize(W, "4+3", scale_bits=17)


def test_ggml_importance_matrix_reaches_the_c_quantizer():
    rng = np.random.default_rng(2)
    W = rng.standard_normal((256, 32)).astype(np.float32)
    imp = np.where(np.arange(256) % 8 == 0, 100.0, 0.01)
    for t in ("Q3_K", "Q4_0"):
        plain = ggml.ggml_quantize(W, t).W_hat
        weighted = ggml.ggml_quantize(W, t, importance=imp).W_hat
        werr = lambda Wh: float((imp[:, None] * (Wh - W) ** 2).sum())   # noqa: E731
        assert werr(weighted) < werr(plain)
    with pytest.raises(ValueError, match="importance must be 256 finite"):
        ggml.ggml_quantize(W, "Q3_K", importance=np.ones(3))


@pytest.mark.slow
def test_reduced_fair_study_pairs_every_row_with_the_reference_and_the_anchor(tmp_path):
    from golden.quality.study import INT4_ANCHOR, fair_methods, run_fair_study
    keep = ("reference", INT4_ANCHOR, "Q3_K imatrix", "4+3 own g64 s6 clip perm GPTQ")
    methods = [m for m in fair_methods() if m.label in keep]
    r = run_fair_study(cal_tokens=64, n_windows=2, seq_len=32, out_err_windows=1, methods=methods, n_layers=1,
                       cache_dir=tmp_path, log=lambda m: None)
    by = {f["label"]: f for f in r["formats"]}
    assert sorted(by) == sorted(keep) and r["formats"][0]["label"] == "reference"
    assert by["reference"]["vs_reference"]["pooled"]["ratio"] == 1.0
    assert by[INT4_ANCHOR]["vs_int4_anchor"]["pooled"] == by[INT4_ANCHOR]["vs_int4_anchor"]["pooled"] | {
        "ratio": 1.0, "low": 1.0, "high": 1.0, "verdict": "not significant"}
    for f in r["formats"]:
        ci = f["vs_reference"]["pooled"]
        assert ci["low"] <= ci["ratio"] <= ci["high"]
        assert ci["verdict"] == ("higher" if ci["low"] > 1 else "lower" if ci["high"] < 1 else "not significant")
    # K = 576 is not a whole number of 256-weight super-blocks: only down (K = 1536) stays Q3_K
    assert by["Q3_K imatrix"]["types_used"] == {"qkv": ["IQ4_NL"], "o": ["IQ4_NL"], "gate_up": ["IQ4_NL"],
                                                 "down": ["Q3_K"]}
    assert 3.79 < by["4+3 own g64 s6 clip perm GPTQ"]["bits_per_weight"] < 3.82
    assert by["reference"]["out_err_mean"] == 0.0 and by[INT4_ANCHOR]["out_err_mean"] > 0
    assert r["verdict"]["best_4p3"]["label"] == "4+3 own g64 s6 clip perm GPTQ"
    assert len(list(tmp_path.glob("nll-*.json"))) == 4
    # rows split over two runs merge into the same intervals
    from golden.quality.study import merge_fair_results
    half = dict(r, formats=r["formats"][:2])
    rest = dict(r, formats=[r["formats"][0]] + r["formats"][2:])
    merged = merge_fair_results([half, rest])
    assert [f["label"] for f in merged["formats"]] == [f["label"] for f in r["formats"]]
    assert [f["vs_int4_anchor"] for f in merged["formats"]] == [f["vs_int4_anchor"] for f in r["formats"]]
    from golden.quality.plot import plot_fair_study
    from septet.commands.quality import format_fair_table
    plot_fair_study(merged, tmp_path / "fair.png")
    assert (tmp_path / "fair.png").stat().st_size > 10_000 and not list(tmp_path.glob("*.tmp*"))
    table = format_fair_table(merged, markdown=True)
    assert "| Q3_K imatrix | 4.234 | qkv: IQ4_NL; o: IQ4_NL; gate_up: IQ4_NL; down: Q3_K |" in table


def test_table_grid_holds_zero_counts_its_bits_and_takes_gptq():
    from golden.quantize import NL_TABLES, gptq_table_codes, quantize_table
    X, W, H = _correlated(K=96, N=16)
    W[5] = 0.0                                       # a zero channel stays exactly zero
    imp = np.diag(H)
    tq = quantize_table(W, NL_TABLES["4+3"], group_size=48, scale_bits=6, importance=imp,
                        perm=salience_permutation(imp))
    W_hat = tq.dequantize()
    assert np.all(W_hat[5] == 0.0)
    assert tq.codes[0::2].max() <= 15 and tq.codes[1::2].max() <= 7
    # 48 pairs of 7 bits, 2 groups x 2 slot scales of 6 bits, one 8-bit exponent
    assert tq.bits_per_weight * 96 == 48 * 7 + 2 * 2 * 6 + 8
    g = gptq_table_codes(tq, W, H)
    np.testing.assert_array_equal(g.mant, tq.mant)
    err = lambda Wh: np.linalg.norm(X @ (Wh - W))   # noqa: E731
    assert err(g.dequantize()) < 0.9 * err(W_hat)
    with pytest.raises(ValueError, match=r"tables\[odd\] must be 8 ascending integers holding 0"):
        quantize_table(W, (NL_TABLES["4+3"][0], (1, 2, 3, 4, 5, 6, 7, 8)))
