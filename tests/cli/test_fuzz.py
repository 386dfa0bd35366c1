"""Fuzz (hypothesis): malformed packed files and arguments give a clean error or the correct answer.

Never a traceback, never a partial file, never a destroyed one.  Bounded: a few
hundred small cases, deadline=None, a pytest timeout.
"""

import io
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from golden.io import load_packed, save_packed
from golden.oracle import gemv_int
from golden.quantize import quantize
from septet.cli import main

pytestmark = pytest.mark.timeout(180)

def _settings(n):
    return settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


configs = st.fixed_dictionaries({
    "fmt": st.sampled_from(["4+3", "4+4", "3+3", "8+8"]),
    "arith": st.sampled_from(["own", "shared"]),
    "K": st.integers(1, 12),
    "N": st.integers(1, 5),
    "G": st.sampled_from([None, 2, 4]),
    "lanes": st.sampled_from([1, 3, 4, 8]),
    "perm": st.booleans(),
    "seed": st.integers(0, 2**16),
})

KEYS = ["version", "stream", "nbits", "format", "arithmetic", "lanes", "K", "N", "group_size", "exp", "permuted",
        "perm", "zeros", "mant", "scales", "dequantized", "bits_per_weight"]

odd_arrays = hnp.arrays(
    dtype=st.sampled_from([np.int8, np.int64, np.uint8, np.uint64, np.float32, np.float64, np.bool_, np.complex64,
                           np.dtype("<U3")]),
    shape=hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=4))

mutations = st.one_of(
    st.tuples(st.just("drop"), st.sampled_from(KEYS)),
    st.tuples(st.just("replace"), st.sampled_from(KEYS), odd_arrays),
    st.tuples(st.just("scalar"), st.sampled_from(["version", "nbits", "lanes", "K", "N", "group_size"]),
              st.integers(-(2**40), 2**40)),
    st.tuples(st.just("flip"), st.sampled_from(["stream", "exp", "perm", "zeros", "mant"]), st.integers(0, 10**6),
              st.integers(0, 63)),
    st.tuples(st.just("objects"), st.sampled_from(KEYS)),
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("corrupt"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("extra"), st.text(min_size=1, max_size=5).filter(str.isidentifier)),
)


def _make(cfg, tmp):
    rng = np.random.default_rng(cfg["seed"])
    W = rng.normal(size=(cfg["K"], cfg["N"])).astype(np.float32)
    perm = rng.permutation(cfg["K"]) if cfg["perm"] else None
    qm = quantize(W, cfg["fmt"], arithmetic=cfg["arith"], group_size=cfg["G"], perm=perm)
    good = tmp / "good.npz"
    if not good.exists():
        save_packed(good, qm, cfg["lanes"])
    return qm, rng


def _mutate(src, dst, mutation):
    raw = src.read_bytes()
    kind = mutation[0]
    if kind == "truncate":
        dst.write_bytes(raw[: int(len(raw) * mutation[1])])
        return
    if kind == "corrupt":
        b = bytearray(raw)
        b[mutation[1] % len(b)] ^= mutation[2]
        dst.write_bytes(bytes(b))
        return
    with np.load(src) as f:
        d = {k: f[k] for k in f.files}
    if kind == "drop":
        d.pop(mutation[1])
    elif kind == "replace":
        d[mutation[1]] = mutation[2]
    elif kind == "scalar":
        d[mutation[1]] = np.int64(mutation[2])
    elif kind == "flip":
        a = d[mutation[1]].copy()
        if a.size:
            flat = a.reshape(-1).view(np.uint8)
            flat[mutation[2] % flat.size] ^= np.uint8(1 << (mutation[3] % 8))
        d[mutation[1]] = a
    elif kind == "objects":
        d[mutation[1]] = np.array([{"x": 1}, None], dtype=object)
    elif kind == "extra":
        d[mutation[1]] = np.arange(3)
    buf = io.BytesIO()
    np.savez(buf, **d)
    dst.write_bytes(buf.getvalue())


def _clean_error(err, command):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"septet {command}: error: "), err
    assert "Traceback" not in err


@_settings(100)
@given(cfg=configs, mutation=mutations, float_acts=st.booleans())
def test_gemv_on_a_malformed_file_errs_cleanly_or_answers_correctly(tmp_path_factory, capsys, cfg, mutation,
                                                                    float_acts):
    tmp = tmp_path_factory.mktemp("fz")
    qm, rng = _make(cfg, tmp)
    _mutate(tmp / "good.npz", tmp / "bad.npz", mutation)
    x = rng.normal(size=cfg["K"]) if float_acts else rng.integers(-128, 128, size=cfg["K"]).astype(np.int8)
    np.save(tmp / "x.npy", x)
    before = sorted(p.name for p in tmp.iterdir())
    capsys.readouterr()
    rc = main(["gemv", "--packed", str(tmp / "bad.npz"), "--activations", str(tmp / "x.npy"),
               "--out", str(tmp / "y.npy")])
    out, err = capsys.readouterr()
    event(f"{mutation[0]}: exit {rc}")
    if rc == 0:
        if float_acts:
            from golden.quantize import quantize_activations
            a, _ = quantize_activations(x)
        else:
            a = x
        np.testing.assert_array_equal(np.load(tmp / "y.npy"), gemv_int(qm, a))
    else:
        assert rc == 2
        _clean_error(err, "gemv")
        assert sorted(p.name for p in tmp.iterdir()) == before          # nothing written, no temporary left


weights = st.one_of(
    hnp.arrays(dtype=st.sampled_from([np.float32, np.float64]), shape=st.tuples(st.integers(1, 12), st.integers(1, 5)),
               elements=st.floats(-4, 4, width=32)),
    hnp.arrays(dtype=st.sampled_from([np.float32, np.float64, np.float16, np.int8, np.int64, np.bool_, np.complex64,
                                      np.dtype("<U2")]),
               shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6), elements=None))


@_settings(80)
@given(W=weights,
       fmt=st.one_of(st.sampled_from(["4+3", "4+4", "8+8", "3+3", "int4"]),
                     st.sampled_from(["3+4", "9+9", "1+1", "x", "4+3+2", ""])),
       arith=st.sampled_from(["own", "shared"]),
       group=st.one_of(st.none(), st.sampled_from([2, 4, 8]), st.integers(-4, 40)),
       lanes=st.one_of(st.integers(1, 8), st.integers(-2, 20)),
       clip=st.sampled_from(["none", "mse"]),
       perm=st.one_of(st.none(), st.none(), hnp.arrays(np.int64, st.integers(0, 7), elements=st.integers(-2, 8))),
       out=st.one_of(st.sampled_from(["new", "existing-force"]),
                     st.sampled_from(["existing", "missing-dir", "a-dir", "dot"])),
       transpose=st.booleans())
def test_quantize_on_odd_arguments_errs_cleanly_or_writes_a_correct_file(tmp_path_factory, capsys, W, fmt, arith,
                                                                        group, lanes, clip, perm, out, transpose):
    tmp = tmp_path_factory.mktemp("fq")
    np.save(tmp / "w.npy", W)
    argv = ["quantize", "--weights", str(tmp / "w.npy"), "--format", fmt, "--arithmetic", arith,
            "--lanes", str(lanes), "--clip", clip]
    if group is not None:
        argv += ["--group-size", str(group)]
    if perm is not None:
        np.save(tmp / "p.npy", perm)
        argv += ["--perm", str(tmp / "p.npy")]
    if transpose:
        argv += ["--transpose"]
    target = {"new": tmp / "o.npz", "existing": tmp / "o.npz", "existing-force": tmp / "o.npz",
              "missing-dir": tmp / "nodir" / "o.npz", "a-dir": tmp / "d", "dot": tmp / "."}[out]
    (tmp / "d").mkdir()
    if out.startswith("existing"):
        target.write_bytes(b"precious")
    argv += ["--out", str(target)] + (["--force"] if out == "existing-force" else [])
    before = sorted(p.name for p in tmp.rglob("*"))
    capsys.readouterr()
    rc = main(argv)
    _, err = capsys.readouterr()
    event(f"quantize exit {rc}")
    if rc == 0:
        qm, _ = load_packed(target)
        Wq = W.T if transpose else W
        ref = quantize(Wq, fmt, arithmetic=arith, group_size=group, clip=clip, perm=perm)
        np.testing.assert_array_equal(qm.codes, ref.codes)
        np.testing.assert_array_equal(qm.mant, ref.mant)
        np.testing.assert_array_equal(qm.exp, ref.exp)
    else:
        assert rc == 2
        _clean_error(err, "quantize")
        assert sorted(p.name for p in tmp.rglob("*")) == before
        if out.startswith("existing"):
            assert target.read_bytes() == b"precious"
        assert zipfile.is_zipfile(target) is False if target.is_file() else True


@_settings(80)
@given(x=hnp.arrays(dtype=st.sampled_from([np.int8, np.int16, np.uint8, np.int64, np.float32, np.float64, np.bool_,
                                           np.complex64, np.dtype("<U2")]),
                    shape=st.one_of(st.just((7,)), hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=8)),
                    elements=None),
       requant=st.one_of(st.none(), st.floats(1e-3, 1e3), st.floats(allow_nan=True, allow_infinity=True)),
       out=st.sampled_from(["y.npy", "y.npz", "y.npz", "nodir/y.npy", "."]))
# Found by Hypothesis: a huge output scale (the ratio 2**-19 / s_out underflowed 65535 / ratio) and huge
# float activations (the real result y * s_a * 2**-exp overflowed float64).
@example(x=np.zeros(7, dtype=np.int8), requant=5.3e297, out="y.npz")
@example(x=np.zeros(7, dtype=np.float64), requant=5.2e297, out="y.npy")
@example(x=np.full(7, 3.4e302), requant=None, out="y.npy")
@example(x=np.full(7, 3.4e302), requant=1.0, out="y.npz")
@example(x=np.array([5e-324, 0, 0, 0, 0, 0, 0]), requant=None, out="y.npy")
def test_gemv_on_odd_activations_and_scales_errs_cleanly_or_answers_correctly(tmp_path_factory, capsys, x, requant,
                                                                             out):
    tmp = tmp_path_factory.mktemp("fa")
    cfg = {"fmt": "4+3", "arith": "own", "K": 7, "N": 3, "G": None, "lanes": 2, "perm": False, "seed": 1}
    qm, _ = _make(cfg, tmp)
    np.save(tmp / "x.npy", x)
    argv = ["gemv", "--packed", str(tmp / "good.npz"), "--activations", str(tmp / "x.npy"), "--out", str(tmp / out)]
    if requant is not None:
        argv += [f"--requant-scale={requant!r}"]
    before = sorted(p.name for p in tmp.rglob("*"))
    capsys.readouterr()
    rc = main(argv)
    _, err = capsys.readouterr()
    event(f"gemv args exit {rc}")
    if rc == 0:
        from golden.quantize import quantize_activations
        a = x.astype(np.int8) if x.dtype.kind in "iu" else quantize_activations(x)[0]
        y = gemv_int(qm, a)
        if out.endswith(".npz"):
            with np.load(tmp / out) as f:
                np.testing.assert_array_equal(f["y"], y)
        elif requant is None:
            np.testing.assert_array_equal(np.load(tmp / out), y)
    else:
        assert rc == 2
        _clean_error(err, "gemv")
        assert sorted(p.name for p in tmp.rglob("*")) == before
