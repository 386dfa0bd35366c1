"""FORMAT.md's worked example is a test vector: the document and the code must agree."""

import json
import math
import pathlib
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import golden
from golden.format import parse_arithmetic, parse_format
from golden.oracle import gemv_int, requant_params
from golden.pack import pack, unpack
from golden.quantize import QuantizedMatrix
from septet.cli import main

DOC = pathlib.Path(golden.__file__).with_name("FORMAT.md")


def _vector():
    m = re.search(r"```json test-vector\n(.*?)```", DOC.read_text(), re.S)
    assert m, "FORMAT.md lost its test-vector block"
    return json.loads(m.group(1))


def test_worked_example_packs_to_the_documented_bytes_and_result():
    v = _vector()
    qm = QuantizedMatrix(parse_format(v["format"]), parse_arithmetic(v["arithmetic"]), K=v["K"], N=v["N"],
                         group_size=v["group_size"], codes=np.array(v["codes"], dtype=np.uint8),
                         zeros=np.array(v["zeros"]), mant=np.array(v["mant"]), exp=np.array(v["exp"]))
    ps = pack(qm, v["lanes"])
    assert ps.nbits == v["nbits"]
    assert ps.data.tobytes().hex() == v["stream_hex"]
    assert [f"{w:x}" for w in ps.words(v["bus_width"])] == v["words_hex"]
    np.testing.assert_array_equal(gemv_int(qm, np.array(v["activations"], dtype=np.int8)), v["y"])
    np.testing.assert_array_equal(unpack(ps).codes, qm.codes)


def test_worked_example_hand_derived_bytes():
    """The two bytes FORMAT.md derives by hand, from the field values alone."""
    data = bytes.fromhex(_vector()["stream_hex"])
    z_e, m_e = 8, 1000
    assert data[0] == z_e | ((m_e & 0xF) << 4)
    assert data[1] == (m_e >> 4) & 0xFF


# --- A second implementation, written from FORMAT.md alone -------------------------------------
# Nothing below imports golden's packer, unpacker or oracle: only the text's rules.

SCALE_BITS = 16          # FORMAT.md section 2


def spec_decode(stream: bytes, E: int, O: int, arithmetic: str, K: int, N: int, L: int, G: int):
    """FORMAT.md sections 1, 2 and 4: (codes (K_pad, N), zeros and mant (n_groups, n_slots, N))."""
    bits = int.from_bytes(stream, "little")          # stream bit i = bit i of this integer (byte k, bit j)
    pos = 0

    def take(width):
        nonlocal pos
        v = (bits >> pos) & ((1 << width) - 1)
        pos += width
        return v

    K_pad = K + K % 2
    n_groups = -(-K_pad // G)
    slots = [E, O] if arithmetic == "own" else [E]
    n_blocks = -(-N // L)
    codes = [[0] * (n_blocks * L) for _ in range(K_pad)]
    zeros = [[[0] * (n_blocks * L) for _ in slots] for _ in range(n_groups)]
    mant = [[[0] * (n_blocks * L) for _ in slots] for _ in range(n_groups)]
    for b in range(n_blocks):
        for g in range(n_groups):
            for lane in range(L):                                  # HEADER(b, g)
                for t, w in enumerate(slots):
                    zeros[g][t][b * L + lane] = take(w)
                    mant[g][t][b * L + lane] = take(SCALE_BITS)
            for i in range(g * G // 2, min((g + 1) * G, K_pad) // 2):
                for lane in range(L):                              # BEAT(b, i)
                    pair = take(E + O)
                    codes[2 * i][b * L + lane] = pair & ((1 << E) - 1)
                    codes[2 * i + 1][b * L + lane] = pair >> E
    assert pos == n_blocks * (n_groups * L * sum(w + SCALE_BITS for w in slots) + K_pad // 2 * L * (E + O))
    assert bits >> pos == 0, "bits after the stream must be zero"
    for col in range(N, n_blocks * L):                             # padding columns: all zero
        assert all(codes[r][col] == 0 for r in range(K_pad))
        assert all(zeros[g][t][col] == mant[g][t][col] == 0 for g in range(n_groups) for t in range(len(slots)))
    return ([row[:N] for row in codes], [[z[:N] for z in zg] for zg in zeros], [[m[:N] for m in mg] for mg in mant])


def spec_gemv(codes, zeros, mant, a, E, O, arithmetic, K, G, perm=None):
    """FORMAT.md section 3, in Python integers: y[n]."""
    K_pad = K + K % 2
    a_rows = [a[perm[r]] if perm is not None else a[r] for r in range(K)] + [0] * (K_pad - K)
    N = len(codes[0])
    y = []
    for n in range(N):
        total = 0
        for g in range(-(-K_pad // G)):
            rows = range(g * G, min((g + 1) * G, K_pad))
            if arithmetic == "own":
                for t in (0, 1):
                    acc = sum(a_rows[k] * codes[k][n] for k in rows if k % 2 == t)
                    sa = sum(a_rows[k] for k in rows if k % 2 == t)
                    total += mant[g][t][n] * (acc - zeros[g][t][n] * sa)
            else:
                q = [codes[k][n] << (E - O if k % 2 else 0) for k in rows]
                acc = sum(a_rows[k] * qk for k, qk in zip(rows, q))
                total += mant[g][0][n] * (acc - zeros[g][0][n] * sum(a_rows[k] for k in rows))
        y.append(total)
    return y


def test_a_decoder_written_from_the_spec_reads_the_test_vector():
    v = _vector()
    E, O = map(int, v["format"].split("+"))
    codes, zeros, mant = spec_decode(bytes.fromhex(v["stream_hex"]), E, O, v["arithmetic"], v["K"], v["N"],
                                     v["lanes"], v["group_size"])
    assert codes == v["codes"] and zeros == v["zeros"] and mant == v["mant"]
    assert spec_gemv(codes, zeros, mant, v["activations"], E, O, v["arithmetic"], v["K"], v["group_size"]) == v["y"]
    # Section 4's bus words, from the stream bits alone.
    bits, W = int.from_bytes(bytes.fromhex(v["stream_hex"]), "little"), v["bus_width"]
    words = [(bits >> (w * W)) & ((1 << W) - 1) for w in range(-(-v["nbits"] // W))]
    assert [f"{w:x}" for w in words] == v["words_hex"]


@pytest.mark.timeout(120)
@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["4+3", "4+4", "3+3", "8+8", "5+3"]), st.sampled_from(["own", "shared"]), st.integers(1, 19),
       st.integers(1, 6), st.sampled_from([None, 2, 4, 6]), st.sampled_from([1, 3, 4, 8]), st.booleans(),
       st.integers(0, 2**32 - 1))
def test_the_spec_decoder_reads_septet_quantize_files_and_gives_gemvs_answer(tmp_path_factory, fmt, arith, K, N, G,
                                                                           lanes, permute, seed):
    """The packed container of section 4.1, read by the spec decoder, against the CLI's gemv."""
    tmp = tmp_path_factory.mktemp("spec")
    rng = np.random.default_rng(seed)
    np.save(tmp / "w.npy", rng.normal(size=(K, N)).astype(np.float32))
    a = rng.integers(-128, 128, size=K).astype(np.int8)
    np.save(tmp / "a.npy", a)
    argv = ["quantize", "--weights", str(tmp / "w.npy"), "--format", fmt, "--arithmetic", arith, "--lanes",
            str(lanes), "--out", str(tmp / "w.npz")]
    if G:
        argv += ["--group-size", str(G)]
    if permute:
        np.save(tmp / "p.npy", rng.permutation(K))
        argv += ["--perm", str(tmp / "p.npy")]
    assert main(argv) == 0
    assert main(["gemv", "--packed", str(tmp / "w.npz"), "--activations", str(tmp / "a.npy"),
                 "--out", str(tmp / "y.npy")]) == 0
    E, O = map(int, fmt.split("+"))
    with np.load(tmp / "w.npz", allow_pickle=False) as f:
        assert int(f["version"]) == 2 and str(f["format"]) == fmt and str(f["arithmetic"]) == arith
        Kf, Nf, L, Gf = (int(f[k]) for k in ("K", "N", "lanes", "group_size"))
        stream = f["stream"]
        assert stream.dtype == np.uint8 and stream.size == -(-int(f["nbits"]) // 8)
        perm = f["perm"].tolist() if bool(f["permuted"]) else None
        codes, zeros, mant = spec_decode(stream.tobytes(), E, O, arith, Kf, Nf, L, Gf)
        assert zeros == f["zeros"].tolist() and mant == f["mant"].tolist()
    y = spec_gemv(codes, zeros, mant, a.tolist(), E, O, arith, Kf, Gf, perm)
    assert y == np.load(tmp / "y.npy").tolist()


def test_model_level_bits_per_weight_in_the_doc_is_the_weighted_figure():
    """Section 4: model bits per weight = total stored bits / total weights (LLaMA-2-70B projections)."""
    text = DOC.read_text()
    shapes = [(8192, 8192)] * 2 + [(8192, 1024)] * 2 + [(8192, 28672)] * 2 + [(28672, 8192)]

    def model_bpw(fmt, arith):
        f = parse_format(fmt)
        return sum(N * f.stored_bits_per_column(K, 128, arith) for K, N in shapes) / sum(K * N for K, N in shapes)

    assert f"**{model_bpw('4+3', 'own'):.4f}**" in text
    assert f"g128 gives {model_bpw('4+4', 'shared'):.4f}" in text
    f = parse_format("4+3")
    assert f"{f.stored_bits_per_column(8192, 128, 'own') / 8192:.4f} at `K = 8192`" in text


def spec_requant_params(s_a, e, s_out):
    """Section 3, 'Choosing M and s', step by step in float64."""
    ratio = s_a * 2.0 ** -e / s_out
    s = min(max(math.floor(math.log2(65535 / ratio)), 1), 63)
    M = round(ratio * 2.0**s)                     # Python's round is half to even, like rint
    if M > 65535:
        s -= 1
        M = round(ratio * 2.0**s)
    if M > 65535 or s < 1:
        return None
    return M, s


@settings(max_examples=200, deadline=None)
@given(st.floats(1e-6, 1e3), st.integers(-128, 127), st.floats(1e-6, 1e3))
def test_requantization_parameters_follow_the_documented_rule(s_a, e, s_out):
    from golden.quantize import quantize
    qm = quantize(np.ones((2, 1)), "4+3")
    qm = QuantizedMatrix(qm.fmt, qm.arithmetic, qm.K, qm.N, qm.group_size, qm.codes, qm.zeros, qm.mant,
                         exp=np.array([e]))
    want = spec_requant_params(s_a, e, s_out)
    if want is None:
        with pytest.raises(ValueError, match="too large"):
            requant_params(qm, s_a, s_out)
    else:
        M, s = requant_params(qm, s_a, s_out)
        assert (int(M[0]), int(s[0])) == want
