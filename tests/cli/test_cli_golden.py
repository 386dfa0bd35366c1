"""The user's path in: ``septet quantize`` round-trips a .npy, ``septet gemv`` runs the oracle on it."""

import numpy as np
import pytest

from golden.io import load_packed
from golden.oracle import gemv_int
from golden.quantize import quantize
from septet.cli import main


@pytest.fixture
def weights(tmp_path):
    rng = np.random.default_rng(0)
    W = (rng.normal(size=(301, 37)) * 0.05).astype(np.float32)
    path = tmp_path / "w.npy"
    np.save(path, W)
    return W, path


def test_quantize_round_trips_a_users_npy(weights, tmp_path, capsys):
    W, path = weights
    out = tmp_path / "w.npz"
    assert main(["quantize", "--weights", str(path), "--format", "4+3", "--group-size", "64",
                 "--lanes", "8", "--out", str(out)]) == 0
    assert "bits/weight" in capsys.readouterr().out
    qm, ps = load_packed(out)
    ref = quantize(W, "4+3", group_size=64)
    np.testing.assert_array_equal(qm.codes, ref.codes)
    np.testing.assert_array_equal(qm.mant, ref.mant)
    with np.load(out) as f:
        np.testing.assert_array_equal(f["dequantized"], ref.dequantize().astype(np.float32))
        assert f["bits_per_weight"] == pytest.approx(ref.bits_per_weight)
    assert ps.layout.lanes == 8


def test_gemv_on_packed_file_equals_oracle(weights, tmp_path):
    W, path = weights
    packed = tmp_path / "w.npz"
    main(["quantize", "--weights", str(path), "--format", "4+4", "--out", str(packed)])
    a = np.random.default_rng(1).integers(-128, 128, size=301).astype(np.int8)
    np.save(tmp_path / "a.npy", a)
    assert main(["gemv", "--packed", str(packed), "--activations", str(tmp_path / "a.npy"),
                 "--out", str(tmp_path / "y.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), gemv_int(quantize(W, "4+4"), a))


@pytest.mark.parametrize("argv, message", [
    (["quantize", "--weights", "missing.npy", "--out", "x.npz"], "does not exist"),
    (["quantize", "--weights", "{bad}", "--out", "x.npz"], "must be finite"),
    (["quantize", "--weights", "{w}", "--format", "9+9", "--out", "x.npz"], "in [2, 8]"),
    (["quantize", "--weights", "{w}", "--group-size", "7", "--out", "x.npz"], "group_size must be an even"),
    (["gemv", "--packed", "{w}", "--activations", "{w}"], "not a septet .npz"),
])
def test_bad_input_is_one_clear_line(argv, message, weights, tmp_path, capsys):
    _, path = weights
    bad = tmp_path / "bad.npy"
    np.save(bad, np.array([[np.nan, 1.0], [1.0, 1.0]]))
    argv = [a.format(w=path, bad=bad) for a in argv]
    argv = [str(tmp_path / a) if a.endswith(".npz") and "/" not in a else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
