"""Output files: one-line errors naming --out, atomic writes, no silent overwrite, the path printed is written."""

import os
import subprocess
import sys

import numpy as np
import pytest

from golden.io import load_packed
from septet.cli import main

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    w = tmp_path / "w.npy"
    np.save(w, (rng.normal(size=(21, 5)) * 0.1).astype(np.float32))
    a = tmp_path / "a.npy"
    np.save(a, rng.integers(-128, 128, size=21).astype(np.int8))
    packed = tmp_path / "w.npz"
    assert main(["quantize", "--weights", str(w), "--lanes", "4", "--out", str(packed)]) == 0
    return w, a, packed


def _quantize(files, out, *extra):
    return main(["quantize", "--weights", str(files[0]), "--lanes", "4", "--out", str(out), *extra])


def _gemv(files, out, *extra):
    return main(["gemv", "--packed", str(files[2]), "--activations", str(files[1]), "--out", str(out), *extra])


def _one_line(capsys, *needles):
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return err


def _listing(d):
    return sorted(p.name for p in d.rglob("*"))


@pytest.mark.parametrize("run", [_quantize, _gemv])
def test_out_in_a_missing_directory_is_one_line_naming_out(run, files, tmp_path, capsys):
    capsys.readouterr()
    before = _listing(tmp_path)
    assert run(files, tmp_path / "nodir" / "o.npy") == 2
    _one_line(capsys, "--out", "does not exist")
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("run, name", [(_quantize, "."), (_quantize, "d"), (_gemv, "dir.npz")])
def test_out_naming_a_directory_is_refused(run, name, files, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "dir.npz").mkdir()
    capsys.readouterr()
    before = _listing(tmp_path)
    assert run(files, name) == 2
    _one_line(capsys, "--out", "is a directory")
    assert _listing(tmp_path) == before             # no './..npz', no 'dir.npz.npy'


@pytest.mark.parametrize("run, name", [(_quantize, "o_noext"), (_gemv, "y_noext"), (_gemv, "y.bin")])
def test_the_path_printed_is_the_path_written(run, name, files, tmp_path, capsys):
    capsys.readouterr()
    out = tmp_path / name
    assert run(files, out) == 0
    assert f"wrote {out}\n" in capsys.readouterr().out
    assert out.is_file()
    assert not any(p.name.startswith(name + ".") for p in tmp_path.iterdir())


@pytest.mark.parametrize("run", [_quantize, _gemv])
def test_an_existing_output_is_kept_unless_force(run, files, tmp_path, capsys):
    out = tmp_path / "o.npy"
    out.write_bytes(b"precious")
    capsys.readouterr()
    assert run(files, out) == 2
    _one_line(capsys, "--out", "already exists", "--force")
    assert out.read_bytes() == b"precious"
    assert run(files, out, "--force") == 0
    assert out.read_bytes() != b"precious"


def test_quantize_output_loads_and_gemv_npz_stores_the_requant_parameters(files, tmp_path):
    out = tmp_path / "y.npz"
    a = np.load(files[1])
    assert _gemv(files, out, "--requant-scale", "3.0") == 0
    qm, _ = load_packed(files[2])
    from golden.oracle import gemv_int, requant_params, requantize
    with np.load(out) as f:
        assert sorted(f.files) == ["M", "out", "s_a", "s_out", "shift", "y"]
        np.testing.assert_array_equal(f["y"], gemv_int(qm, a))
        M, sh = requant_params(qm, 1.0, 3.0)
        np.testing.assert_array_equal(f["M"], M)
        np.testing.assert_array_equal(f["shift"], sh)
        np.testing.assert_array_equal(f["out"], requantize(f["y"], M, sh))


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path):
    from golden.io import atomic_write
    target = tmp_path / "t.npy"
    target.write_bytes(b"good")

    def half_then_fail(f):
        f.write(b"partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write(target, half_then_fail, force=True)
    assert target.read_bytes() == b"good"
    assert _listing(tmp_path) == ["t.npy"]          # no temporary left behind
    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "new.npy", half_then_fail)
    assert _listing(tmp_path) == ["t.npy"]


def test_atomic_write_returns_the_path_and_refuses_to_overwrite(tmp_path):
    from golden.io import OutputPathError, save_array
    p = save_array(tmp_path / "x", np.arange(3))
    assert p == tmp_path / "x" and np.array_equal(np.load(p), np.arange(3))
    with pytest.raises(OutputPathError, match="already exists"):
        save_array(p, np.arange(4))
    with pytest.raises(OutputPathError, match=r"--weights-out .*does not exist"):
        save_array(tmp_path / "no" / "x.npy", np.arange(3), param="--weights-out")


_FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
from septet.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_full_disk_never_destroys_the_good_file(tmp_path):
    """The issue's reproduction: file size limited, quantize --force over a good file."""
    rng = np.random.default_rng(1)
    w = tmp_path / "big.npy"
    np.save(w, rng.normal(size=(512, 64)).astype(np.float32))       # its packed file is far over 4 KiB
    good = tmp_path / "o.npz"
    good.write_bytes(b"good file")
    env = dict(os.environ, PYTHONWARNINGS="error")
    r = subprocess.run([sys.executable, "-c", _FULL_DISK, "quantize", "--weights", str(w), "--out", str(good),
                        "--force"], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2, r.stderr
    assert "--out" in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert good.read_bytes() == b"good file"
    assert _listing(tmp_path) == ["big.npy", "o.npz"]


def test_one_numpy_file_reader_names_the_file_and_what_is_wrong(tmp_path):
    """golden.io.open_numpy: the checks load_packed and the CLI's .npy inputs share, one line each."""
    from golden.io import InputFileError, PackedFileError, load_array, load_packed

    np.save(tmp_path / "a.npy", np.arange(3))
    np.savez(tmp_path / "z.npz", a=np.arange(3))
    np.save(tmp_path / "objects.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "text.npy").write_text("1 2 3\n")
    (tmp_path / "dir.npy").mkdir()
    assert load_array(tmp_path / "a.npy", "--weights").tolist() == [0, 1, 2]
    cases = [("missing.npy", "does not exist"), ("dir.npy", "is not a regular file"),
             ("z.npz", "is not a readable .npy array (it is an .npz archive)"),
             ("objects.npy", "is not a readable .npy array (it holds pickled Python objects"),
             ("text.npy", "is not a readable .npy array (")]
    for name, message in cases:
        with pytest.raises(InputFileError) as raised:
            load_array(tmp_path / name, "--weights")
        assert str(raised.value).startswith(f"--weights: file {str(tmp_path / name)!r} {message}")
    with pytest.raises(PackedFileError, match=r"packed file '.*a\.npy' is not a septet \.npz file \(it holds a single"):
        load_packed(tmp_path / "a.npy")
    with pytest.raises(PackedFileError, match="does not exist"):
        load_packed(tmp_path / "missing.npz")
