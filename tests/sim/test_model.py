"""The throughput model against hand-computed cases, monotonicity, units and bad configs."""

import json
import math

import pytest

from golden.format import Format
from sim.audit import SEED, audit, gaussian_rmse
from sim.config import CONFIG_DIR, load_chip, load_model
from sim.model import (
    WEIGHT_FORMATS, decode, gpu_decode, linear_shapes, load_measurement, streamed_parameters, weight_bytes,
    weight_format,
)
from sim.report import verdict, write_report


@pytest.fixture(scope="module")
def llama2():
    return load_model("llama2-70b")


@pytest.fixture(scope="module")
def tsp():
    return load_chip("groq-tsp")


@pytest.fixture(scope="module")
def meas():
    return load_measurement()


def test_llama2_parameter_count_matches_the_published_figure(llama2):
    # per layer: q, o 8192^2; k, v 8192 x 1024; gate, up, down 8192 x 28672; plus lm_head and embedding
    per_layer = 2 * 8192 * 8192 + 2 * 8192 * 1024 + 3 * 8192 * 28672
    assert streamed_parameters(llama2) == 80 * per_layer + 8192 * 32000
    total = sum(K * N * c for _, K, N, c in linear_shapes(llama2))
    assert total == streamed_parameters(llama2) + 8192 * 32000
    assert abs(total - llama2.published_parameters) / llama2.published_parameters < 0.001   # norms are the rest


def test_weight_bytes_by_hand(llama2):
    p = streamed_parameters(llama2)
    assert weight_bytes(llama2, weight_format("fp16")) == 2 * p
    # 4+3 per column: K/2 pairs of 7 bits + one 39-bit header + an 8-bit exponent per column
    by_hand = sum((K // 2 * 7 + 39 + 8) * N * c for name, K, N, c in linear_shapes(llama2) if name != "embed") / 8
    assert weight_bytes(llama2, weight_format("4+3", group_size=None)) == by_hand
    assert weight_bytes(llama2, weight_format("4+3", group_size=None)) / 1e9 == pytest.approx(30.06, abs=0.05)
    # Q4_0 from gguf's block table: 18 bytes per 32 weights
    assert weight_bytes(llama2, weight_format("q4_0")) == pytest.approx(p * 18 / 32)


def test_int4_baseline_bits_by_hand(llama2):
    # INT4 with groups of 128 along K = 8192: one 4-bit zero and one 16-bit scale mantissa per group, one 8-bit
    # exponent per column
    assert weight_format("int4").bits_per_weight(8192) == (8192 * 4 + 64 * (4 + 16) + 8) / 8192
    # 4+3 own grids: a zero and a scale per slot per group
    assert weight_format("4+3").bits_per_weight(8192) == (4096 * 7 + 64 * (4 + 16 + 3 + 16) + 8) / 8192
    with pytest.raises(ValueError, match="group_size"):
        weight_format("4+3", group_size=7)


def test_chip_count_by_hand(llama2, tsp, meas):
    wf = weight_format("4+4")
    d = decode(llama2, tsp, wf, meas, batch=2, context=1000)
    per_chip = 220 * 2**20 * 0.9
    kv = 2 * 80 * 8 * 128 * 2 * 1000 * 2              # K and V, 80 layers, 8 KV heads of 128, FP16, 1000 tokens, 2 seqs
    assert d.kv_bytes == kv
    assert d.chips == math.ceil((weight_bytes(llama2, wf, streamed_only=False) + kv) / per_chip)
    with pytest.raises(ValueError, match="chips must be an integer >="):
        decode(llama2, tsp, wf, meas, batch=2, context=1000, chips=d.chips - 1)


def test_tiles_per_chip_by_hand(tsp, meas):
    from sim.model import tile_scaling
    t = tile_scaling(tsp, meas, 3.5)
    assert t["tiles_per_chip"] == math.ceil(80e12 * 8 / 900e6 / 64)
    assert t["bus_bound"]                                 # 64 bits / 3.5 = 18.3 weights < 32 MACs a cycle
    assert t["chip_bytes_per_s"] == pytest.approx(t["tiles_per_chip"] * 64 * meas.bus_efficiency * 900e6 / 8)


def test_fewer_bits_never_need_more_chips_or_more_streaming(llama2, tsp, meas):
    rows = sorted((decode(llama2, tsp, wf, meas, placement="pp") for wf in WEIGHT_FORMATS),
                  key=lambda d: d.bits_per_weight)
    for a, b in zip(rows, rows[1:]):
        assert a.chips <= b.chips
        assert a.t_stream_s <= b.t_stream_s
        assert a.tokens_per_s >= b.tokens_per_s


def test_bandwidth_bound_ceiling_is_the_bit_ratio(llama2, meas):
    gpu = load_chip("h100-pcie")
    i4, s35 = (gpu_decode(llama2, gpu, weight_format(f, group_size=None)) for f in ("4+4", "4+3"))
    ratio = s35.tokens_per_s / i4.tokens_per_s
    assert ratio == pytest.approx(weight_bytes(llama2, weight_format("4+4", group_size=None))
                                  / weight_bytes(llama2, weight_format("4+3", group_size=None)))
    assert ratio < 8 / 7 + 1e-9                       # the seed's +34% cannot come from bits
    # GPU check: the bound must sit above llama.cpp's measured 25.9 tok/s for Q4_0, within 3x
    q40 = gpu_decode(llama2, gpu, weight_format("q4_0"))
    assert 25.9 < q40.tokens_per_s < 3 * 25.9


def test_batch_shares_the_weight_stream(llama2, tsp, meas):
    d1 = decode(llama2, tsp, weight_format("4+3"), meas, placement="pp", batch=1, context=0)
    d8 = decode(llama2, tsp, weight_format("4+3"), meas, placement="pp", batch=8, context=0)
    assert d8.t_stream_s == d1.t_stream_s
    assert d8.tokens_per_s > d1.tokens_per_s
    assert d8.energy_j_per_token < d1.energy_j_per_token
    # the KV cache does not share: its read time grows with the batch
    k1 = decode(llama2, tsp, weight_format("4+3"), meas, placement="pp", batch=1, context=512)
    k8 = decode(llama2, tsp, weight_format("4+3"), meas, placement="pp", batch=8, context=512)
    assert k8.t_stream_s - d8.t_stream_s == pytest.approx(8 * (k1.t_stream_s - d1.t_stream_s))


def test_measured_efficiency_scales_streaming(llama2, tsp, meas):
    import dataclasses
    slow = dataclasses.replace(meas, bus_efficiency=meas.bus_efficiency / 2)
    a = decode(llama2, tsp, weight_format("4+3"), meas, placement="pp")
    b = decode(llama2, tsp, weight_format("4+3"), slow, placement="pp")
    assert b.t_stream_s > 1.9 * a.t_stream_s


def test_default_measurement_is_a_real_simulation(meas):
    assert not meas.provisional
    assert all(r["mismatches"] == 0 and r["simulator"].startswith("verilator") for r in meas.runs)
    assert meas.bus_efficiency >= 0.99
    assert meas.cycle_ratio_43_44 == pytest.approx(7 / 8, rel=0.005)


def test_audit_covers_every_seed_table_figure(llama2, tsp, meas):
    rows = audit(llama2, tsp, load_chip("h100-pcie"), meas, gaussian_rmse(columns=4))
    claims = " | ".join(r.claim for r in rows)
    for k in SEED["size_gb"]:
        assert f"model size {k}" in claims
    for k in ("INT4", "3.5-bit"):
        assert f"throughput {k}" in claims and f"power {k}" in claims and f"first-token time {k}" in claims
        for layer in SEED["rmse"][k]:
            assert f"RMSE {k} {layer}" in claims
    assert all(r.verdict in ("reproduced", "not reproduced", "inconsistent") for r in rows)
    size35 = next(r for r in rows if r.claim == "model size 3.5-bit")
    assert "4.00 bit/weight" in size35.reason                 # 32.6 GB * 8 / (130.4 GB / 2) = 4.00
    speed = [r for r in rows if r.claim.startswith("speed-up")]
    assert speed and all(r.verdict != "reproduced" for r in speed)


def test_report_writes_markdown_plots_and_json(tmp_path):
    path, data = write_report(tmp_path, "llama2-70b")
    text = path.read_text()
    assert "## Seed audit" in text and "## Verdict" in text
    for png in ("throughput_chips.png", "time_breakdown.png", "tile_roofline.png"):
        assert (tmp_path / png).stat().st_size > 1000 and png in text
    assert json.loads((tmp_path / "report.json").read_text())["model"] == "LLaMA-2-70B"
    assert "chips" in verdict()
    assert "hop latency" in text and "published / bound" in text


def test_provisional_measurements_are_flagged_loudly(tmp_path):
    from sim.model import DEFAULT_MEASUREMENTS
    doc = json.loads(DEFAULT_MEASUREMENTS.read_text())
    doc["provisional"], doc["source"] = True, "formula, not simulation"
    p = tmp_path / "prov.json"
    p.write_text(json.dumps(doc))
    assert load_measurement(p).provisional
    assert "PROVISIONAL" in verdict(p)


def test_seed_sizes_fit_llama1_65b_not_llama2_70b():
    from sim.model import stored_parameters
    p65 = stored_parameters(load_model("llama1-65b"))
    assert abs(p65 - SEED["size_gb"]["FP16"] * 1e9 / 2) / p65 < 0.002
    assert stored_parameters(load_model("llama2-70b")) > 1.05 * p65


@pytest.mark.parametrize("text, match", [
    ('name = "x"\n[shape]\nhidden = [8192, "s"]\n', "missing ffn"),
    ('[shape]\nhidden = [8192]\n', "must be \\[value"),
    ('[shape]\nhidden = [8.192e12, "in bytes by mistake"]\n', "outside"),
])
def test_bad_model_configs_are_rejected_clearly(tmp_path, text, match):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_model(str(p))


def test_bad_chip_config_units_are_rejected(tmp_path):
    text = (CONFIG_DIR / "groq-tsp.toml").read_text()
    p = tmp_path / "mhz.toml"
    p.write_text(text.replace("clock_hz = [900e6", "clock_hz = [900"))
    with pytest.raises(ValueError, match="clock_hz .* outside"):
        load_chip(str(p))


def test_unknown_names_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'llama-9000'"):
        load_model("llama-9000")
    with pytest.raises(ValueError, match="does not exist"):
        load_measurement(tmp_path / "none.json")
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps({"schema": "septet.measurement/1", "runs": [{"mismatches": 3}]}))
    with pytest.raises(ValueError, match="mismatches"):
        load_measurement(bad)
    with pytest.raises(ValueError, match="placement"):
        decode(load_model("llama3-8b"), load_chip("groq-tsp"), weight_format("4+3"), load_measurement(),
               placement="ring")
    assert weight_format("int4").fmt == Format(4, 4)
    with pytest.raises(ValueError, match="no constant named warp_drive"):
        load_chip("groq-tsp").replace(warp_drive=1)
    with pytest.raises(ValueError, match="context"):
        decode(load_model("llama3-8b"), load_chip("groq-tsp"), weight_format("4+3"), load_measurement(), context=-1)


def test_report_uses_a_quality_study_when_given(tmp_path):
    fmt = {"septet": None, "ggml_type": None, "nrmse_mean": 0.1, "degenerate": False}
    q = {"model": "tiny", "reference_perplexity": 10.0, "command": "septet quality --model tiny --json",
         "formats": [{**fmt, "label": "reference", "family": "reference", "bits_per_weight": 16.0, "perplexity": 10.0},
                     {**fmt, "label": "4+3 own g128 perm", "family": "septet", "bits_per_weight": 3.84,
                      "perplexity": 12.5},
                     {**fmt, "label": "4+4 shared g128", "family": "septet", "bits_per_weight": 4.18,
                      "perplexity": 11.5}],
         "verdict": {"best_4p3": {"label": "4+3 own g128 perm"}}}
    qp = tmp_path / "q.json"
    qp.write_text(json.dumps(q))
    path, data = write_report(tmp_path / "out", "llama2-70b", quality=qp)
    assert (tmp_path / "out" / "quality.png").stat().st_size > 1000
    assert data["quality_source"] == str(qp)
    line = next(x for x in verdict(quality=qp).splitlines() if "perplexity" in x)
    assert "12.50" in line and "11.50" in line
