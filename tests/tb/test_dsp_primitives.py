"""The tile as the synthesis flow elaborates it (ECP5 ``MULT18X18D`` instances), under Verilator, against golden.

``rtl/synth.py`` elaborates the tile with :class:`rtl.correct.Ecp5DspPlatform`, which turns the
epilogue's registered multiplies into ``MULT18X18D`` primitives with their own input and output
registers; every other test simulates the behavioural Verilog (flip-flops around ``*``).  Here
the primitive version runs with the project's model of the primitive (``tb/ecp5_mult18x18d.v``,
yosys ships only a blackbox) and must match golden bit for bit, with idle cycles and
backpressure: the two versions agree on every result and cycle count tested, so the routed
netlist computes what the simulated RTL computes (as far as the model is the primitive).
"""

import hashlib
from pathlib import Path

import numpy as np
from amaranth.back import verilog

from golden.format import ACT_MAX, ACT_MIN
from rtl.correct import DSP_CHUNK, Ecp5DspPlatform
from rtl.lint import lint
from rtl.params import TileParams
from rtl.top import TOP_NAME, SeptetTop, build_info
from tb import toolchain
from tb.gemv_data import GemvSet, random_gemv
from tb.simulate import Tile, simulate

#: The project's simulation model of the primitive.
MODEL = Path(__file__).resolve().parents[2] / "tb" / "ecp5_mult18x18d.v"
#: Per column at the default max_k: the slot sums (27 and 26 bits), Σa (23 bits) and y (44 bits) each take
#: two or three 17-bit chunks, so every kind of partial product (unsigned low chunks, signed top chunk) is built.
SEPTET_PER_COLUMN = TileParams(fmt="4+3", lanes=4, bus_width=61)
SEPTET_PER_COLUMN_REQUANT = TileParams(fmt="4+3", lanes=4, bus_width=61, requant=True)


def _primitive_tile(config: TileParams) -> Tile:
    """The tile's Verilog elaborated for synthesis (MULT18X18D instances) plus the primitive's model."""
    text = verilog.convert(SeptetTop(params=config), name=TOP_NAME, platform=Ecp5DspPlatform(), emit_src=False)
    info = build_info(config)
    directory = toolchain.BUILD_ROOT / "verilog_dsp" / hashlib.sha256(text.encode()).hexdigest()[:16]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{TOP_NAME}.v"
    if not path.is_file():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    ports = {port["name"]: {"width": port["width"], "padded_width": port["padded_width"]} for port in info["ports"]}
    return Tile(config=config, sources=(path, MODEL), port_map=ports, description="rtl with MULT18X18D primitives",
                fixed_latency=info["cycles"]["fixed_latency"])


def _dsp_instances(config: TileParams) -> int:
    return Path(_primitive_tile(config).sources[0]).read_text().count("MULT18X18D #(")


def _gemvs(config: TileParams) -> list:
    """Random GEMVs, and long ones with constant extreme activations and one-signed weight columns.

    Those make Σa and the corrected sums ``acc - z * Σa`` span more than one 17-bit DSP chunk, with
    either sign, so every partial product and its offset is checked.
    """
    K = 4096
    gemvs = [random_gemv(config, K_, N, seed=40 + i) for i, (K_, N) in enumerate([(3, 5), (37, 10), (300, 4)])]
    weights = np.random.default_rng(41).uniform(0.0, 1.0, (K, 4)) * np.array([1.0, -1.0, 0.5, -2.0])
    for value in (ACT_MAX, ACT_MIN):
        gemvs.append(random_gemv(config, K, 4, seed=value & 0xff, weights=weights,
                                 activations=np.full(K, value, dtype=np.int8), name=f"a = {value} everywhere"))
    assert abs(ACT_MIN) * K // 2 >= 1 << DSP_CHUNK, "the activation sums should span two DSP chunks"
    return gemvs


def test_primitive_version_builds_the_dsps_the_synthesis_counts():
    # Scaler: z * Σa and m * corr, two 17-bit chunks each per slot (8); the requantizer's y * M: three more, and
    # its fine shift (a multiply by a power of two): one.
    assert _dsp_instances(SEPTET_PER_COLUMN) == 8
    assert _dsp_instances(SEPTET_PER_COLUMN_REQUANT) == 12
    plain = verilog.convert(SeptetTop(params=SEPTET_PER_COLUMN), name=TOP_NAME, emit_src=False)
    assert "MULT18X18D" not in plain        # the Verilog everything else simulates stays behavioural


def test_the_model_lints_clean():
    assert lint(MODEL, waivers=None) == []


def _run_against_golden(config: TileParams, traffic: dict, tmp_path) -> tuple:
    """The primitive version on :func:`_gemvs` under ``traffic`` (idle, backpressure, seed): no mismatch."""
    gemvs = _gemvs(config)
    result = simulate(_primitive_tile(config), GemvSet(config, gemvs, traffic), tmp_path, mode="axis")
    assert result.outcome["mismatches"] == 0
    return gemvs, result


def test_primitive_version_matches_golden_exactly(tmp_path):
    gemvs, result = _run_against_golden(SEPTET_PER_COLUMN, {"idle": 0.2, "backpressure": 0.3, "seed": 11}, tmp_path)
    assert result.outcome["beats_checked"] == sum(g.n_blocks for g in gemvs)
    # y = sum over slots of m * corr with m < 2**16: |y| >= 2**34 needs a |corr| >= 2**17, beyond one DSP chunk.
    assert max(int(np.abs(g.expected).max()) for g in gemvs) >= 1 << (2 * DSP_CHUNK)
    assert min(int(g.expected.min()) for g in gemvs) <= -(1 << (2 * DSP_CHUNK))


def test_primitive_version_with_requantization_matches_golden(tmp_path):
    gemvs, _result = _run_against_golden(SEPTET_PER_COLUMN_REQUANT, {"idle": 0.3, "backpressure": 0.4, "seed": 12},
                                         tmp_path)
    saturated = sum(int(np.sum(np.abs(g.expected) >= 127)) for g in gemvs)
    inside = sum(int(np.sum(np.abs(g.expected) < 127)) for g in gemvs)
    assert saturated > 0 and inside > 0


def test_primitive_cycles_equal_the_behavioural_formula(tmp_path):
    # The DSP registers replace fabric flip-flops one for one: the fixed latency, and so the cycles, are unchanged
    # (this tile is lanes-bound, W = 61 > 4 lanes x 7 bits: TileParams.expected_cycles is exact for it).
    config = SEPTET_PER_COLUMN
    gemv = random_gemv(config, 512, 8, seed=13)
    result = simulate(_primitive_tile(config), GemvSet(config, [gemv], {"seed": 13}), tmp_path, mode="axis")
    assert result.outcome["cycles"] == [config.expected_cycles(512, 8)]
