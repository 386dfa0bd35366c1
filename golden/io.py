"""Files: the atomic writer every command uses, and the packed ``.npz`` container.

:func:`atomic_write` is the one way the project writes a result file: a
temporary file in the target directory, flushed and fsynced, then renamed into
place, so a failure (a full disk, a bad argument, an exception halfway) never
leaves a partial file and never destroys the file that was there.  It refuses to
overwrite an existing file unless asked to (``force=True``, the CLI's
``--force``), and returns the path it wrote, which is exactly the path it was
given (no extension is ever appended).

The packed container (``septet quantize`` writes it, ``septet gemv`` reads it)
is specified in ``golden/FORMAT.md`` section 4.1; :func:`load_packed` validates a
file against itself before anything uses it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import tempfile

import numpy as np

from golden.quantize import QuantizedMatrix

__all__ = [
    "atomic_write",
    "save_array",
    "save_arrays",
    "check_output_path",
    "OutputPathError",
    "PackedFileError",
    "InputFileError",
    "open_numpy",
    "load_array",
    "save_packed",
    "load_packed",
    "FILE_VERSION",
    "file_digest",
]

#: Version of the packed .npz container (FORMAT.md section 4.1).
FILE_VERSION = 2


class OutputPathError(ValueError):
    """An output path that cannot be written: one line naming the parameter (CLI exit status 2)."""


class PackedFileError(ValueError):
    """A packed file that is not a valid septet container (CLI exit status 2)."""


class InputFileError(ValueError):
    """An input file that is missing or not the NumPy file asked for: one line naming it (CLI exit status 2)."""


def file_digest(path) -> str:
    """SHA-256 (hex) of a file's content, read in chunks: the key of a cache that depends on the file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def open_numpy(path, what: str, *, archive: bool, kind: "str | None" = None, error: type = InputFileError):
    """The NumPy file at ``path``, loaded without pickles, for the ``with`` block.

    The one reader of a user's NumPy files: every failure is one line, an ``error``
    (a ``ValueError``) that starts with ``what`` and says what is wrong, never NumPy's
    own message.

    Parameters
    ----------
    path : path-like
    what : str
        How the messages name the file, e.g. ``"--weights: file 'w.npy'"``.
    archive : bool
        ``True``: an ``.npz`` archive, yielded open (closed when the block ends);
        ``False``: a single ``.npy`` array, yielded as an ndarray.
    kind : str, optional
        What the file should be, in the messages (default ``"a readable .npz archive"`` or
        ``"a readable .npy array"``).
    error : type
        The exception raised (``PackedFileError`` for the packed container).

    Raises
    ------
    error
        The file does not exist, is not a regular file, is not a NumPy file (corrupt,
        truncated, text), holds pickled objects, or is the other kind (archive vs array).
    """
    kind = kind or ("a readable .npz archive" if archive else "a readable .npy array")
    p = pathlib.Path(path)
    if not p.exists():
        raise error(f"{what} does not exist")
    if not p.is_file():
        raise error(f"{what} is not a regular file")
    with open(p, "rb") as fh:               # ours to close, also when NumPy gives up halfway
        try:
            loaded = np.load(fh, allow_pickle=False)
        except ValueError as exc:
            reason = ("it holds pickled Python objects, which septet never loads" if "pickle" in str(exc)
                      else "not a NumPy file")
            raise error(f"{what} is not {kind} ({reason})") from None
        except Exception:  # noqa: BLE001 - truncated header, bad magic, ...: the user's input
            raise error(f"{what} is not {kind} (corrupt or truncated)") from None
        is_archive = isinstance(loaded, np.lib.npyio.NpzFile)
        if is_archive != archive:
            if is_archive:
                loaded.close()
            raise error(f"{what} is not {kind} ({'it is an .npz archive' if is_archive else 'it holds a single array'})")
        if not is_archive:
            yield loaded
            return
        with loaded:
            yield loaded


def load_array(path, name: str) -> np.ndarray:
    """The array of the ``.npy`` file at ``path``, given as the parameter ``name`` (e.g. ``"--weights"``).

    :func:`open_numpy`'s checks; its messages read ``"--weights: file 'w.npy' does not exist"``.
    """
    with open_numpy(path, f"{name}: file {str(path)!r}", archive=False) as array:
        return array


def check_output_path(path, *, force: bool = False, param: str = "--out") -> pathlib.Path:
    """Check that ``path`` can be written as a new file; return it as a :class:`pathlib.Path`.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    force : bool
        Allow replacing an existing regular file.
    param : str
        Name of the parameter the path came from, used in error messages.

    Raises
    ------
    OutputPathError
        The directory does not exist, the path is a directory, or the file
        exists and ``force`` is false.
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise OutputPathError(f"{param} must name a file, got {path!r}")
    p = pathlib.Path(path)
    parent = p.parent
    if p.is_dir() or str(path).endswith(os.sep):
        raise OutputPathError(f"{param} {str(path)!r} is a directory; it must name a file")
    if not parent.is_dir():
        raise OutputPathError(f"{param} {str(path)!r}: directory {str(parent)!r} does not exist")
    if p.exists() or p.is_symlink():
        if not p.is_file():
            raise OutputPathError(f"{param} {str(path)!r} exists and is not a regular file")
        if not force:
            raise OutputPathError(f"{param} {str(path)!r} already exists; pass --force to replace it")
    return p


def atomic_write(path, write, *, force: bool = False, param: str = "--out") -> pathlib.Path:
    """Write a file atomically: nothing is written, and nothing is destroyed, on failure.

    ``write(f)`` receives a binary file object open on a temporary file in the
    target directory; when it returns, the file is flushed, fsynced and renamed
    to ``path`` (then the directory is fsynced).  If ``write`` raises, or the
    disk is full, the temporary file is removed and ``path`` is untouched.

    Parameters
    ----------
    path : str or os.PathLike
        Where to write; written exactly there (no extension is appended).
    write : callable
        ``write(fileobj) -> None``.
    force : bool
        Replace an existing file; otherwise an existing file is an error, also
        when it appears while ``write`` runs.
    param : str
        Name of the parameter the path came from (``--out``), for error messages.

    Returns
    -------
    pathlib.Path
        The path written (the one given).

    Raises
    ------
    OutputPathError
        The path cannot be written (see :func:`check_output_path`) or the
        operating system refused the write (the message carries its reason).
    """
    p = check_output_path(path, force=force, param=param)
    try:
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputPathError(f"{param} {str(path)!r}: cannot create a file in {str(p.parent)!r} "
                              f"({exc.strerror or exc})") from None
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            if force:
                os.replace(tmp, p)
            else:
                # A hard link never replaces: a file that appeared meanwhile is kept.
                try:
                    os.link(tmp, p)
                except FileExistsError:
                    raise OutputPathError(f"{param} {str(path)!r} already exists; pass --force to replace it") \
                        from None
                except OSError:              # a file system without hard links
                    if p.exists():
                        raise OutputPathError(f"{param} {str(path)!r} already exists; pass --force to "
                                              f"replace it") from None
                    os.replace(tmp, p)
        except OSError as exc:
            raise OutputPathError(f"{param} {str(path)!r}: write failed ({exc.strerror or exc}); "
                                  f"nothing was written") from None
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    try:
        dfd = os.open(p.parent, os.O_RDONLY)
    except OSError:
        return p
    try:
        os.fsync(dfd)
    except OSError:
        pass                                  # some file systems cannot fsync a directory
    finally:
        os.close(dfd)
    return p


def save_array(path, array, *, force: bool = False, param: str = "--out") -> pathlib.Path:
    """Write one array as ``.npy`` at exactly ``path``, atomically (see :func:`atomic_write`)."""
    array = np.asarray(array)
    return atomic_write(path, lambda f: np.save(f, array, allow_pickle=False), force=force, param=param)


def save_arrays(path, arrays: dict, *, force: bool = False, param: str = "--out",
                compressed: bool = True) -> pathlib.Path:
    """Write named arrays as ``.npz`` at exactly ``path``, atomically (see :func:`atomic_write`)."""
    saver = np.savez_compressed if compressed else np.savez
    return atomic_write(path, lambda f: saver(f, **arrays), force=force, param=param)


def save_packed(path, qm: QuantizedMatrix, lanes: int = 16, *, force: bool = False,
                param: str = "--out"):
    """Write ``qm`` packed for a tile of ``lanes`` lanes, with its scales and dequantized weights.

    The container is specified in FORMAT.md section 4.1.  The write is atomic
    and refuses an existing file unless ``force``.

    Returns
    -------
    PackedStream
        The stream written; the file is at exactly ``path``.
    """
    from golden.pack import pack

    ps = pack(qm, lanes)
    save_arrays(path, _packed_arrays(qm, ps), force=force, param=param)
    return ps


def _dequantized32(qm: QuantizedMatrix) -> np.ndarray:
    """The represented weights as float32 (round to nearest; beyond float32's range: +-inf)."""
    with np.errstate(over="ignore"):
        return qm.dequantize(dtype=np.float32)        # float64 per column chunk, cast: no (K, N) float64 copy


def _packed_arrays(qm: QuantizedMatrix, ps) -> dict:
    """The keys of the container, as written (FORMAT.md section 4.1)."""
    return dict(
        version=np.int64(FILE_VERSION), stream=ps.data, nbits=np.int64(ps.nbits), format=np.str_(qm.fmt.name),
        arithmetic=np.str_(qm.arithmetic.value), lanes=np.int64(ps.lanes), K=np.int64(qm.K), N=np.int64(qm.N),
        group_size=np.int64(qm.group_size), exp=qm.exp.astype(np.int64),
        permuted=np.bool_(qm.perm is not None),
        perm=np.array([], dtype=np.int64) if qm.perm is None else qm.perm.astype(np.int64),
        zeros=qm.zeros.astype(np.int64), mant=qm.mant.astype(np.int64),
        scales=qm.mant * np.exp2(-qm.exp.astype(np.float64)),
        dequantized=_dequantized32(qm), bits_per_weight=np.float64(qm.bits_per_weight))


def _entry(f, path, key):
    """One array of the container; any failure to read it is the file's fault, reported in one line."""
    try:
        return f[key]
    except Exception:  # noqa: BLE001 - corrupt member, object array, truncated zip: all invalid input
        raise PackedFileError(f"packed file {str(path)!r}: key {key!r} is unreadable (corrupt, or not a "
                              f"plain numeric/string array)") from None


def _scalar(arr, path, key, kinds):
    if arr.shape != () or arr.dtype.kind not in kinds:
        raise PackedFileError(f"packed file {str(path)!r}: key {key!r} must be a scalar of kind {kinds!r}, got "
                              f"dtype {arr.dtype} shape {arr.shape}")
    return arr[()]


def _int_in(arr, path, key, lo, hi=None):
    v = int(_scalar(arr, path, key, "iu"))
    if v < lo or (hi is not None and v > hi):
        rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise PackedFileError(f"packed file {str(path)!r}: {key} must be {rng}, got {v}")
    return v


def _int_array(arr, path, key, shape):
    if arr.dtype.kind not in "iu" or arr.shape != shape:
        raise PackedFileError(f"packed file {str(path)!r}: key {key!r} must be an integer array of shape "
                              f"{shape}, got dtype {arr.dtype} shape {arr.shape}")
    return arr.astype(np.int64)


#: Every key of a version-2 container (FORMAT.md section 4.1); all are required.
CONTAINER_KEYS = ("version", "stream", "nbits", "format", "arithmetic", "lanes", "K", "N", "group_size", "exp",
                  "permuted", "perm", "zeros", "mant", "scales", "dequantized", "bits_per_weight")


def _read_container(f, name) -> dict:
    """Every key of an open container, version first (a file of another version may lack keys)."""
    if "version" in f.files:
        version = int(_scalar(_entry(f, name, "version"), name, "version", "iu"))
        if version != FILE_VERSION:
            raise PackedFileError(f"packed file {name!r} has container version {version}; this septet reads "
                                  f"version {FILE_VERSION} (re-run 'septet quantize')")
    missing = [k for k in CONTAINER_KEYS if k not in f.files]
    if missing:
        raise PackedFileError(f"packed file {name!r} lacks key(s) {missing}; write it with 'septet quantize'")
    return {k: _entry(f, name, k) for k in CONTAINER_KEYS}


def load_packed(path):
    """Read a file written by :func:`save_packed` and validate it against itself.

    The stream (with ``format``, ``arithmetic``, ``lanes``, ``K``, ``N``,
    ``group_size``), ``exp`` and ``perm`` are authoritative; every other key is
    a copy that must agree with them.  Checked: every key present with its
    dtype and shape, the layout scalars in range (``group_size`` even, at most
    ``K_pad`` and within the format's int32 bound), the stream's length, the
    padding bits zero (padding lanes, bits after ``nbits``), the odd-K padding
    row holding its zero point, shared-grid zero points on the odd grid,
    exponents in range, ``perm`` a permutation exactly when ``permuted``, and
    ``nbits``, ``zeros``, ``mant``, ``scales``, ``dequantized`` and
    ``bits_per_weight`` equal to what the stream gives.

    Returns
    -------
    (QuantizedMatrix, PackedStream)

    Raises
    ------
    PackedFileError
        One line saying what is wrong; nothing in the file is used.
    """
    from golden.format import EXPONENT_MAX, EXPONENT_MIN, byte_count, parse_arithmetic, parse_format
    from golden.pack import PackedStream, StreamLayout, pack, unpack

    name = str(path)
    with open_numpy(path, f"packed file {name!r}", archive=True, kind="a septet .npz file",
                    error=PackedFileError) as f:
        e = _read_container(f, name)
    fmt_name = str(_scalar(e["format"], name, "format", "U"))
    arith_name = str(_scalar(e["arithmetic"], name, "arithmetic", "U"))
    try:
        fmt, arith = parse_format(fmt_name), parse_arithmetic(arith_name)
        fmt.check_arithmetic(arith)
    except ValueError as exc:
        raise PackedFileError(f"packed file {name!r}: {exc}") from None
    if fmt.name != fmt_name or arith.value != arith_name:
        raise PackedFileError(f"packed file {name!r}: format and arithmetic must be written canonically "
                              f"('E+O', 'own'/'shared'), got {fmt_name!r}, {arith_name!r}")
    lanes = _int_in(e["lanes"], name, "lanes", 1)
    K = _int_in(e["K"], name, "K", 1)
    N = _int_in(e["N"], name, "N", 1)
    K_pad = K + K % 2
    kmax = fmt.max_k_int32(arith)
    G = _int_in(e["group_size"], name, "group_size", 2, min(K_pad, kmax))
    if G % 2:
        raise PackedFileError(f"packed file {name!r}: group_size must be even, got {G}")
    layout = StreamLayout(fmt, arith, lanes, K, N, G)
    nbits = _int_in(e["nbits"], name, "nbits", 0)
    if nbits != layout.nbits:
        raise PackedFileError(f"packed file {name!r}: nbits {nbits} does not match its layout ({layout.nbits})")
    stream = e["stream"]
    if stream.dtype != np.uint8 or stream.ndim != 1:
        raise PackedFileError(f"packed file {name!r}: stream must be a 1-D uint8 array, got dtype {stream.dtype} "
                              f"shape {stream.shape}")
    if stream.size != byte_count(nbits):
        raise PackedFileError(f"packed file {name!r}: stream holds {stream.size} bytes, its layout needs "
                              f"{byte_count(nbits)} (nbits {nbits})")
    exp = _int_array(e["exp"], name, "exp", (N,))
    if exp.min() < EXPONENT_MIN or exp.max() > EXPONENT_MAX:
        raise PackedFileError(f"packed file {name!r}: exponents must lie in [{EXPONENT_MIN}, {EXPONENT_MAX}], got "
                              f"[{exp.min()}, {exp.max()}]")
    permuted = bool(_scalar(e["permuted"], name, "permuted", "b"))
    perm = _int_array(e["perm"], name, "perm", (K,) if permuted else (0,))
    if permuted and not np.array_equal(np.sort(perm), np.arange(K)):
        raise PackedFileError(f"packed file {name!r}: perm must be a permutation of range(K) = range({K})")
    ps = PackedStream(layout=layout, data=stream, exp=exp, perm=perm if permuted else None)
    qm = unpack(ps)
    if not np.array_equal(pack(qm, lanes).data, stream):
        raise PackedFileError(f"packed file {name!r}: stream has nonzero padding bits (padding lanes of the last "
                              f"column block, or bits after nbits); FORMAT.md section 4 requires zeros")
    shift = fmt.odd_shift(arith)
    if shift and np.any(qm.zeros % (1 << shift)):
        raise PackedFileError(f"packed file {name!r}: shared-grid zero points must be multiples of {1 << shift}")
    if K % 2 and not np.array_equal(qm.codes[K_pad - 1], qm.zeros[-1, -1] >> shift):
        raise PackedFileError(f"packed file {name!r}: the odd-K padding row must hold the last group's odd zero "
                              f"point (FORMAT.md section 1)")
    shape = qm.zeros.shape
    for key, want in (("zeros", qm.zeros), ("mant", qm.mant)):
        if not np.array_equal(_int_array(e[key], name, key, shape), want):
            raise PackedFileError(f"packed file {name!r}: {key} disagrees with the stream's group headers")
    scales, deq, bpw = e["scales"], e["dequantized"], e["bits_per_weight"]
    if scales.dtype != np.float64 or scales.shape != shape \
            or not np.array_equal(scales, qm.mant * np.exp2(-exp.astype(np.float64))):
        raise PackedFileError(f"packed file {name!r}: scales must be float64 mant * 2**-exp of shape {shape}")
    if deq.dtype != np.float32 or deq.shape != (K, N) or not np.array_equal(deq, _dequantized32(qm)):
        raise PackedFileError(f"packed file {name!r}: dequantized must be float32 of shape ({K}, {N}) and equal "
                              f"the weights the stream holds")
    if float(_scalar(bpw, name, "bits_per_weight", "f")) != qm.bits_per_weight:
        raise PackedFileError(f"packed file {name!r}: bits_per_weight disagrees with the layout "
                              f"({qm.bits_per_weight})")
    return qm, ps
