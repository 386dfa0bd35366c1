"""A packed file is validated against itself before use; bad arguments are one line, exit 2 (issue 13)."""

import numpy as np
import pytest

from golden.io import load_packed
from golden.oracle import gemv_int
from golden.quantize import quantize
from septet.cli import main

pytestmark = pytest.mark.timeout(60)

K, N = 21, 5          # odd K (a padding row) and N not a multiple of the 4 lanes (padding lanes)


@pytest.fixture
def made(tmp_path):
    rng = np.random.default_rng(3)
    W = (rng.normal(size=(K, N)) * 0.1).astype(np.float32)
    np.save(tmp_path / "w.npy", W)
    perm = rng.permutation(K)
    np.save(tmp_path / "p.npy", perm)
    a = rng.integers(-128, 128, size=K).astype(np.int8)
    np.save(tmp_path / "a.npy", a)
    assert main(["quantize", "--weights", str(tmp_path / "w.npy"), "--perm", str(tmp_path / "p.npy"),
                 "--group-size", "8", "--lanes", "4", "--out", str(tmp_path / "w.npz")]) == 0
    qm = quantize(W, "4+3", group_size=8, perm=perm)
    return tmp_path, qm, a


def _rewrite(src, dst, **changes):
    with np.load(src) as f:
        d = {k: f[k] for k in f.files}
    for k, v in changes.items():
        if v is None:
            d.pop(k)
        else:
            d[k] = v(d[k]) if callable(v) else v
    np.savez(dst, **d)


def _gemv(tmp, packed, acts="a.npy", *extra):
    return main(["gemv", "--packed", str(packed), "--activations", str(tmp / acts), "--out", str(tmp / "y.npy"),
                 *extra])


def _set_bit(stream, bit):
    s = stream.copy()
    s[bit // 8] |= np.uint8(1 << (bit % 8))
    return s


def _lane_bit(qm, lane):
    """A header bit of lane ``lane`` in the first group of the last column block."""
    from golden.pack import StreamLayout
    lay = StreamLayout(qm.fmt, qm.arithmetic, 4, qm.K, qm.N, qm.group_size)
    return (lay.n_blocks - 1) * lay.block_bits + lane * lay.header_lane_bits + 5


BAD_FILES = {
    "group_size 0 (ZeroDivisionError before)": (dict(group_size=np.int64(0)), "group_size must be"),
    "perm key dropped (a wrong y before)": (dict(perm=None), "lacks key(s) ['perm']"),
    "perm emptied, permuted cleared": (dict(perm=np.array([], np.int64), permuted=np.bool_(False)),
                                       "dequantized must be"),
    "perm of the wrong length": (dict(perm=lambda p: p[:-1]), "key 'perm' must be an integer array of shape (21,)"),
    "perm not a permutation": (dict(perm=lambda p: np.zeros_like(p)), "permutation of range(K)"),
    "exp + 300": (dict(exp=lambda e: e + 300), "exponents must lie in [-128, 127]"),
    "exp + 1": (dict(exp=lambda e: e + 1), "scales must be"),
    "zeros disagree with the stream": (dict(zeros=lambda z: z ^ 1), "zeros disagrees"),
    "mant disagree with the stream": (dict(mant=lambda m: m + 1), "mant disagrees"),
    "int64 stream": (dict(stream=lambda s: s.astype(np.int64)), "stream must be a 1-D uint8 array"),
    "stream one byte short": (dict(stream=lambda s: s[:-1]), "stream holds"),
    "stream one byte long": (dict(stream=lambda s: np.append(s, np.uint8(0))), "stream holds"),
    "nbits off": (dict(nbits=lambda b: b + 1), "nbits"),
    "bits after nbits set": (dict(stream=lambda s: _set_bit(s, s.size * 8 - 1)), "nonzero padding bits"),
    "older container version": (dict(version=np.int64(1)), "container version 1"),
    "format alias": (dict(format=np.str_("int4")), "canonically"),
    "format as bytes": (dict(format=np.bytes_(b"4+3")), "key 'format' must be a scalar"),
    "K as float": (dict(K=np.float64(21)), "key 'K' must be a scalar"),
    "lanes 0": (dict(lanes=np.int64(0)), "lanes must be >= 1"),
    "group_size odd": (dict(group_size=np.int64(7)), "group_size must be even"),
    "group_size beyond K_pad": (dict(group_size=np.int64(24)), "group_size must be [2, 22]"),
    "bits_per_weight off": (dict(bits_per_weight=lambda b: b + 0.5), "bits_per_weight disagrees"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_packed_file_that_contradicts_itself_is_refused(name, made, capsys):
    tmp, _, _ = made
    changes, message = BAD_FILES[name]
    _rewrite(tmp / "w.npz", tmp / "bad.npz", **changes)
    capsys.readouterr()
    assert _gemv(tmp, tmp / "bad.npz") == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp / "y.npy").exists()


def test_garbage_in_padding_lanes_and_padding_row_is_refused(made):
    tmp, qm, _ = made
    # N = 5 on 4 lanes: lanes 1..3 of the last block are padding; every one of their bits must be 0.
    for lane in (1, 3):
        _rewrite(tmp / "w.npz", tmp / "bad.npz", stream=lambda s, lane=lane: _set_bit(s, _lane_bit(qm, lane)))
        with pytest.raises(ValueError, match="nonzero padding bits"):
            load_packed(tmp / "bad.npz")
    # The odd-K padding row (row 21, odd slot of column 0, pair 10) must hold the last group's odd zero point.
    from golden.pack import StreamLayout
    lay = StreamLayout(qm.fmt, qm.arithmetic, 4, K, N, qm.group_size)
    # Pair 10 of lane 0 in block 0 (FORMAT.md section 4): after the headers of its group and those before.
    pair_bit = (10 // lay.group_pairs + 1) * lay.header_bits + 10 * lay.beat_bits + qm.fmt.even_bits
    _rewrite(tmp / "w.npz", tmp / "bad.npz", stream=lambda s: s ^ _set_bit(np.zeros_like(s), pair_bit))
    with pytest.raises(ValueError, match="padding row"):
        load_packed(tmp / "bad.npz")


def test_the_good_file_gives_the_oracles_answer(made):
    tmp, qm, a = made
    assert _gemv(tmp, tmp / "w.npz") == 0
    np.testing.assert_array_equal(np.load(tmp / "y.npy"), gemv_int(qm, a))
    with np.load(tmp / "w.npz") as f:
        assert int(f["version"]) == 2 and bool(f["permuted"])


@pytest.mark.parametrize("values, dtype", [([300], np.int16), ([200], np.uint8), ([-129], np.int64)])
def test_integer_activations_outside_int8_are_refused(values, dtype, made, capsys):
    tmp, _, _ = made
    x = np.zeros(K, dtype=dtype)
    x[3] = values[0]
    np.save(tmp / "x.npy", x)
    capsys.readouterr()
    assert _gemv(tmp, tmp / "w.npz", "x.npy") == 2
    err = capsys.readouterr().err
    assert "--activations" in err and "[-128, 127]" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.int64, np.uint8])
def test_integer_activations_in_range_are_codes_whatever_their_dtype(dtype, made):
    """Before: int32 activations were re-quantized as reals and gave another y than the same int8 values."""
    tmp, qm, _ = made
    # max |a| < 127: re-quantizing them as reals (the old behaviour) would rescale them.
    a = np.random.default_rng(5).integers(0 if dtype == np.uint8 else -100, 100, size=K)
    np.save(tmp / "x.npy", a.astype(dtype))
    assert _gemv(tmp, tmp / "w.npz", "x.npy") == 0
    np.testing.assert_array_equal(np.load(tmp / "y.npy"), gemv_int(qm, a.astype(np.int8)))


@pytest.mark.parametrize("x, message", [
    (np.zeros(K, dtype=bool), "integer INT8 codes or real floats"),
    (np.zeros(K + 1, dtype=np.int8), f"shape ({K},)"),
    (np.zeros((K, 1)), f"shape ({K},)"),
    (np.full(K, np.nan), "finite"),
    (np.zeros(K, dtype=np.complex64), "integer INT8 codes or real floats"),
])
def test_bad_activation_arrays_are_one_line(x, message, made, capsys):
    tmp, _, _ = made
    np.save(tmp / "x.npy", x)
    capsys.readouterr()
    assert _gemv(tmp, tmp / "w.npz", "x.npy") == 2
    err = capsys.readouterr().err
    assert message in err and "--activations" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("which", ["--packed", "--activations", "--weights"])
def test_a_text_file_is_not_passed_to_numpys_message(which, made, capsys):
    tmp, _, _ = made
    (tmp / "t.npy").write_text("1 2 3\n")
    capsys.readouterr()
    if which == "--weights":
        rc = main(["quantize", "--weights", str(tmp / "t.npy"), "--out", str(tmp / "o.npz")])
    elif which == "--packed":
        rc = _gemv(tmp, tmp / "t.npy")
    else:
        rc = _gemv(tmp, tmp / "w.npz", "t.npy")
    assert rc == 2
    err = capsys.readouterr().err
    assert "allow_pickle" not in err and "not a" in err and len(err.strip().splitlines()) == 1, err


def test_quantize_refuses_k_past_the_int32_bound_like_gemv_would(tmp_path, capsys):
    """Defect 4: 8+8 shared, K = 70,000 per column was accepted by quantize, refused only by gemv."""
    np.save(tmp_path / "w.npy", np.ones((70_000, 1), dtype=np.float32))
    capsys.readouterr()
    assert main(["quantize", "--weights", str(tmp_path / "w.npy"), "--format", "8+8", "--arithmetic", "shared",
                 "--out", str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err
    assert "at most 65792 rows per group" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.npz").exists()
    assert main(["quantize", "--weights", str(tmp_path / "w.npy"), "--format", "8+8", "--arithmetic", "shared",
                 "--group-size", "128", "--out", str(tmp_path / "o.npz")]) == 0


def test_a_file_past_the_int32_bound_is_refused_by_gemv(made):
    tmp, _, _ = made
    _rewrite(tmp / "w.npz", tmp / "bad.npz", K=np.int64(70_001), group_size=np.int64(70_002),
             format=np.str_("8+8"), arithmetic=np.str_("shared"))
    with pytest.raises(ValueError, match=r"group_size must be \[2, 65792\]"):
        load_packed(tmp / "bad.npz")
