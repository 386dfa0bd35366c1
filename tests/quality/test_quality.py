"""Quality study: the SmolLM2 forward pass, bits per weight of every quantizer, error against bits."""

import json

import numpy as np
import pytest

from golden.format import EXPONENT_BITS, SCALE_BITS, FORMATS
from golden.quality import ggml
from golden.quality.study import FormatSpec, _septet, format_specs, pareto_front
from septet.cli import main


@pytest.fixture(scope="module")
def smollm2():
    from golden.quality.models import load_smollm2
    return load_smollm2()


@pytest.fixture(scope="module")
def tokenizer(smollm2):
    from golden.quality.smollm2 import Tokenizer
    return Tokenizer(smollm2.tokens, smollm2.merges)


def _greedy_next(model, tokenizer, prompt):
    from golden.quality.smollm2 import forward
    logits = forward(model, np.array(tokenizer.encode(prompt)), logits_positions=slice(-1, None))
    return tokenizer.decode([int(np.argmax(logits[-1]))])


@pytest.mark.parametrize("prompt, expected", [
    ("The capital of France is", " Paris"),
    ("One, two, three, four,", " five"),
    ("Monday, Tuesday, Wednesday, Thursday,", " Friday"),
    ("import numpy as", " np"),
])
def test_forward_predicts_known_next_token(smollm2, tokenizer, prompt, expected):
    # Facts any working language model continues; a wrong RoPE pair order or GQA mapping breaks them.
    assert _greedy_next(smollm2, tokenizer, prompt) == expected


def test_forward_batch_matches_single_sequences(smollm2):
    from golden.quality.smollm2 import forward
    tokens = np.array([[504, 3575, 282, 4649, 314], [2705, 28, 827, 28, 1296]])
    batched = forward(smollm2, tokens, n_layers=2)
    for b in range(2):
        np.testing.assert_allclose(batched[b], forward(smollm2, tokens[b], n_layers=2), rtol=1e-4, atol=1e-4)


def test_forward_is_causal(smollm2):
    from golden.quality.smollm2 import forward
    a = forward(smollm2, np.array([504, 3575, 282, 4649, 314]), n_layers=2)
    b = forward(smollm2, np.array([504, 3575, 282, 4649, 7]), n_layers=2)
    np.testing.assert_allclose(a[:4], b[:4], rtol=1e-5, atol=1e-5)
    assert not np.allclose(a[4], b[4])


def test_tokenizer_round_trip(tokenizer):
    text = "def f(x_1, y):\n    return x_1 ** 2  # 12345 caf\u00e9"
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    # digits are split one by one by the smollm pre-tokenizer
    assert [tokenizer.decode([i]) for i in tokenizer.encode("2026")] == ["2", "0", "2", "6"]


def test_swapped_linears_change_the_output(smollm2):
    from golden.quality.smollm2 import forward
    tokens = np.array([504, 3575, 282, 4649, 314])
    zeroed = {"blk.0.down": np.zeros_like(smollm2.linears["blk.0.down"])}
    assert not np.allclose(forward(smollm2, tokens, n_layers=1), forward(smollm2, tokens, zeroed, n_layers=1))


@pytest.mark.parametrize("name, bpw", [
    # ggml block layouts: Q4_0 = fp16 scale + 32 nibbles (18 B / 32); Q4_1 adds an fp16 min (20 B / 32);
    # Q5_0 = fp16 + 4 B high bits + 16 B (22 B / 32); Q8_0 = fp16 + 32 B (34 B / 32);
    # MXFP4 = one E8M0 byte + 16 B (17 B / 32); Q3_K 110 B / 256; Q4_K 144 B / 256; IQ4_XS 136 B / 256.
    ("Q4_0", 4.5), ("Q4_1", 5.0), ("Q5_0", 5.5), ("Q8_0", 8.5), ("MXFP4", 4.25),
    ("Q3_K", 3.4375), ("IQ3_S", 3.4375), ("Q4_K", 4.5), ("IQ4_XS", 4.25), ("IQ4_NL", 4.5),
])
def test_ggml_bits_per_weight(name, bpw):
    W = np.random.default_rng(1).standard_normal((256, 8)).astype(np.float32)
    r = ggml.ggml_quantize(W, name)
    assert r.used == name
    assert r.bits_per_weight == bpw
    assert r.W_hat.shape == W.shape


def test_ggml_falls_back_like_llama_cpp_when_rows_do_not_fit_super_blocks():
    W = np.random.default_rng(2).standard_normal((576, 4)).astype(np.float32)
    assert (ggml.ggml_quantize(W, "Q3_K").used, ggml.ggml_quantize(W, "Q3_K").bits_per_weight) == ("IQ4_NL", 4.5)
    assert ggml.ggml_quantize(W, "Q4_K").used == "Q5_0"
    with pytest.raises(ValueError, match="ggml type must be one of"):
        ggml.ggml_quantize(W, "Q9_9")


def test_septet_bits_per_weight_include_headers():
    K, N = 256, 4
    W = np.random.default_rng(3).standard_normal((K, N)).astype(np.float32)
    fmt = FORMATS["4+3"]
    # own grids, groups of 128: 128 pairs of 7 bits, per group a scale mantissa and zero per slot, one exponent
    spec = _septet("4+3", "own", 128)
    _, bits, _ = spec.apply(W, None)
    per_col = (K // 2) * fmt.pair_bits + 2 * ((fmt.even_bits + SCALE_BITS) + (fmt.odd_bits + SCALE_BITS)) \
        + EXPONENT_BITS
    assert bits == N * per_col
    # shared grid: one scale and one zero per group
    _, bits, _ = _septet("4+3", "shared", 128).apply(W, None)
    assert bits == N * ((K // 2) * fmt.pair_bits + 2 * (fmt.even_bits + SCALE_BITS) + EXPONENT_BITS)


@pytest.mark.parametrize("labels", [
    ("3+3 shared g128", "4+3 own g128", "4+4 shared g128"),
    ("Q3_K", "Q4_K", "Q5_0", "Q8_0"),
])
def test_error_falls_as_bits_rise(labels):
    W = np.random.default_rng(4).standard_normal((512, 64)).astype(np.float32)
    specs = {s.label: s for s in format_specs()}
    bits, errors = [], []
    for label in labels:
        W_hat, b, _ = specs[label].apply(W, None)
        bits.append(b)
        errors.append(np.sqrt(np.mean((W_hat - W) ** 2)))
    assert bits == sorted(bits) and len(set(bits)) == len(bits)
    assert errors == sorted(errors, reverse=True) and len(set(errors)) == len(errors)


def test_pareto_front():
    points = [(4.0, 1.0), (3.5, 2.0), (4.5, 0.5), (4.0, 1.5), (5.0, 0.6), (3.0, 3.0)]
    assert pareto_front(points) == [5, 1, 0, 2]


def test_reference_spec_is_identity():
    W = np.arange(12, dtype=np.float32).reshape(4, 3)
    W_hat, bits, _ = FormatSpec("reference", "reference").apply(W, None)
    assert W_hat is W and bits is None


def test_cli_on_user_weights(tmp_path, capsys):
    W = np.random.default_rng(5).standard_normal((256, 16)).astype(np.float32)
    np.save(tmp_path / "w.npy", W)
    assert main(["quality", "--weights", str(tmp_path / "w.npy"), "--json", "--out", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    labels = [f["label"] for f in result["formats"]]
    assert labels == [s.label for s in format_specs()]
    assert (tmp_path / "user.png").stat().st_size > 0
    by_label = {f["label"]: f for f in result["formats"]}
    assert by_label["reference"]["nrmse_mean"] == 0.0
    assert by_label["4+3 own g32"]["nrmse_mean"] < by_label["4+3 own col"]["nrmse_mean"]


@pytest.mark.parametrize("argv, message", [
    (["quality", "--eval-windows", "1"], "--eval-windows must be >= 2"),
    (["quality", "--cal-tokens", "1"], "--cal-tokens must be >= 2"),
    (["quality", "--methods", "INT4 g7"], "--methods: unknown row(s) 'INT4 g7'"),
    (["quality", "--weights", "/nonexistent/w.npy"], "does not exist"),
])
def test_cli_bad_input_is_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
