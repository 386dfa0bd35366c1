"""FORMAT.md's worked example is a test vector: the document and the code must agree."""

import json
import pathlib
import re

import numpy as np

import golden
from golden.format import parse_arithmetic, parse_format
from golden.oracle import gemv_int
from golden.pack import pack, unpack
from golden.quantize import QuantizedMatrix

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
