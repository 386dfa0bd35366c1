"""The throughput model against hand-computed cases, monotonicity, units and bad configs."""

import json
import math

import pytest

from golden.format import Format
from sim.audit import SEED, audit, gaussian_rmse
from sim.config import CONFIG_DIR, load_chip, load_model
from sim.model import (
    WEIGHT_FORMATS, allreduce_s, decode, gpu_decode, linear_shapes, load_measurement, lpu_mapping,
    stored_parameters, streamed_parameters, tile_scaling, weight_bytes, weight_format,
)

#: A per-layer cost for tests that must not depend on the calibration (30 µs, near the fitted value).
C_LAYER = 30e-6
#: GPU constants for tests that must not depend on the calibration.
GPU_UNIT = {"bandwidth_fraction": 1.0, "layer_fixed_s": 0.0, "sync_s": 0.0}
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
    d = decode(llama2, tsp, wf, meas, batch=2, context=1000, layer_fixed_s=C_LAYER)
    per_chip = 220 * 2**20 * 0.53
    kv = 2 * 80 * 8 * 128 * 2 * 1000 * 2              # K and V, 80 layers, 8 KV heads of 128, FP16, 1000 tokens, 2 seqs
    assert d.kv_bytes == kv
    assert d.chips == math.ceil((weight_bytes(llama2, wf, streamed_only=False) + kv) / per_chip)
    with pytest.raises(ValueError, match="chips must be an integer >="):
        decode(llama2, tsp, wf, meas, batch=2, context=1000, chips=d.chips - 1, layer_fixed_s=C_LAYER)


def test_tiles_per_chip_by_hand(tsp, meas):
    from sim.model import tile_scaling
    t = tile_scaling(tsp, meas, 3.5)
    assert t["tiles_per_chip"] == math.ceil(80e12 * 8 / 900e6 / 64)
    assert t["bus_bound"]                                 # 64 bits / 3.5 = 18.3 weights < 32 MACs a cycle
    assert t["chip_bytes_per_s"] == pytest.approx(t["tiles_per_chip"] * 64 * meas.bus_efficiency * 900e6 / 8)


def test_fewer_bits_never_need_more_chips_or_more_streaming(llama2, tsp, meas):
    rows = sorted((decode(llama2, tsp, wf, meas, chips=1200, layer_fixed_s=C_LAYER) for wf in WEIGHT_FORMATS),
                  key=lambda d: d.bits_per_weight)
    for a, b in zip(rows, rows[1:]):
        assert a.t_stream_s <= b.t_stream_s
        assert a.tokens_per_s >= b.tokens_per_s
    fewest = sorted((decode(llama2, tsp, wf, meas, layer_fixed_s=C_LAYER) for wf in WEIGHT_FORMATS),
                    key=lambda d: d.bits_per_weight)
    for a, b in zip(fewest, fewest[1:]):
        assert a.chips <= b.chips


def test_bandwidth_bound_ceiling_is_the_bit_ratio(llama2, meas):
    gpu = load_chip("h100-pcie")
    i4, s35 = (gpu_decode(llama2, gpu, weight_format(f, group_size=None), **GPU_UNIT) for f in ("4+4", "4+3"))
    ratio = s35.tokens_per_s / i4.tokens_per_s
    assert ratio == pytest.approx(weight_bytes(llama2, weight_format("4+4", group_size=None))
                                  / weight_bytes(llama2, weight_format("4+3", group_size=None)), rel=1e-3)
    assert ratio < 8 / 7 + 1e-9                       # the seed's +34% cannot come from bits
    # a fixed per-layer cost takes part of the ratio back: the gain shrinks, never grows
    fixed = {**GPU_UNIT, "layer_fixed_s": 150e-6}
    j4, j35 = (gpu_decode(llama2, gpu, weight_format(f, group_size=None), **fixed) for f in ("4+4", "4+3"))
    assert 1 < j35.tokens_per_s / j4.tokens_per_s < ratio
    assert j4.t_token_s == pytest.approx(i4.t_token_s + 80 * 150e-6)


def test_gpu_splits_by_hand(llama2):
    gpu = load_chip("rtx-4090")
    wf = weight_format("q4_0")
    w = weight_bytes(llama2, wf)
    bw = 1008e9 * 0.8
    kw = {"bandwidth_fraction": 0.8, "layer_fixed_s": 1e-4, "sync_s": 3e-4, "count": 4}
    rows = gpu_decode(llama2, gpu, wf, split="rows", **kw)
    assert rows.t_stream_s == pytest.approx(w / 4 / bw)
    assert rows.t_comm_s == pytest.approx(80 * 3e-4 * 2)          # per layer, ceil(log2 4) = 2 steps
    layers = gpu_decode(llama2, gpu, wf, split="layers", **kw)
    assert layers.t_stream_s == pytest.approx(w / bw)             # the GPUs run in turn
    assert layers.t_comm_s == pytest.approx(3 * 3e-4)             # one hop per boundary
    with pytest.raises(ValueError, match="needs .* GB, more than 1 x"):
        gpu_decode(llama2, gpu, wf, **GPU_UNIT)                   # 39 GB does not fit one 24 GiB card
    with pytest.raises(ValueError, match="split must be one of rows, layers"):
        gpu_decode(llama2, gpu, wf, **GPU_UNIT, split="diagonal", count=2)


def test_mapping_respects_heads_kv_heads_and_the_mxm(llama2, tsp, meas):
    assert lpu_mapping(llama2, 576, 320) == (64, 9)               # 64 heads; 28672 / 64 = 448 >= 320 columns
    assert lpu_mapping(llama2, 8, 320) == (8, 1)
    assert lpu_mapping(llama2, 576, 512) == (32, 18)              # 28672 / 64 < 512: the MXM width limits tp
    assert lpu_mapping(load_model("mixtral-8x7b"), 384, 320) == (32, 12)
    # key/value projections split only 8 ways (8 KV heads): every chip of a 64-way group streams 1/8 of them
    wf = weight_format("8+8", group_size=None)
    d = decode(llama2, tsp, wf, meas, chips=576, context=0, layer_fixed_s=C_LAYER)
    kv_proj = sum(wf.bits_per_column(K) * N * c for n, K, N, c in linear_shapes(llama2)
                  if n in ("k_proj", "v_proj")) / 8
    latency = sum(c for n, _, _, c in linear_shapes(llama2) if n != "embed") * meas.latency_cycles / 900e6
    per_chip = (d.streamed_bytes - kv_proj) / 64 + kv_proj / 8
    feed = tile_scaling(tsp, meas, wf.bits_per_weight(8192))["chip_bytes_per_s"]
    assert d.t_stream_s - latency == pytest.approx(per_chip / feed)


def test_allreduce_grows_with_chips_and_pipeline_adds_hops(llama2, tsp, meas):
    assert allreduce_s(1, 1.0) == 0 and allreduce_s(2, 1.0) == 1 and allreduce_s(64, 1.0) == 6
    assert allreduce_s(65, 1.0) == 7
    a = decode(llama2, tsp, weight_format("8+8", group_size=None), meas, chips=576, layer_fixed_s=C_LAYER)
    b = decode(llama2, tsp, weight_format("8+8", group_size=None), meas, chips=1152, layer_fixed_s=C_LAYER)
    assert (a.tp, a.pp, b.tp, b.pp) == (64, 9, 64, 18)
    assert b.t_comm_s - a.t_comm_s == pytest.approx(9 * (600e-9 + 2 * 8192 / 14e9))
    assert a.t_layer_fixed_s == pytest.approx(80 * C_LAYER)
    # J/token: every chip's power over the step
    assert a.energy_j_per_token == pytest.approx(576 * 300.0 * a.t_token_s)


def test_mixture_of_experts_streams_the_active_experts():
    m = load_model("mixtral-8x7b")
    assert stored_parameters(m) == pytest.approx(46.7e9, rel=0.01)
    assert streamed_parameters(m) == pytest.approx(12.9e9, rel=0.03)   # Mixtral paper: 13B active


def test_batch_shares_the_weight_stream(llama2, tsp, meas):
    kw = {"chips": 400, "layer_fixed_s": C_LAYER}
    d1 = decode(llama2, tsp, weight_format("4+3"), meas, batch=1, context=0, **kw)
    d8 = decode(llama2, tsp, weight_format("4+3"), meas, batch=8, context=0, **kw)
    assert d8.t_stream_s == d1.t_stream_s
    assert d8.tokens_per_s > d1.tokens_per_s
    assert d8.energy_j_per_token < d1.energy_j_per_token
    # the KV cache does not share: its read time grows with the batch
    k1 = decode(llama2, tsp, weight_format("4+3"), meas, batch=1, context=512, **kw)
    k8 = decode(llama2, tsp, weight_format("4+3"), meas, batch=8, context=512, **kw)
    assert k8.t_stream_s - d8.t_stream_s == pytest.approx(8 * (k1.t_stream_s - d1.t_stream_s))


def test_measured_efficiency_scales_streaming(llama2, tsp, meas):
    import dataclasses
    slow = dataclasses.replace(meas, bus_efficiency=meas.bus_efficiency / 2)
    a = decode(llama2, tsp, weight_format("4+3"), meas, layer_fixed_s=C_LAYER)
    b = decode(llama2, tsp, weight_format("4+3"), slow, layer_fixed_s=C_LAYER)
    latency = sum(c for n, _, _, c in linear_shapes(llama2) if n != "embed") * meas.latency_cycles / 900e6
    assert b.t_stream_s - latency == pytest.approx(2 * (a.t_stream_s - latency), rel=1e-6)


def test_default_measurement_is_a_real_simulation(meas):
    assert not meas.provisional
    assert all(r["mismatches"] == 0 and r["simulator"].startswith("verilator") for r in meas.runs)
    assert all(r["group_size"] == 128 for r in meas.runs)          # the configuration the verdict reasons about
    assert meas.bus_efficiency >= 0.99
    # 4+3 own g128 against INT4 (4+4 shared) g128: the cycles follow the stored bits, headers included
    by = {(r["format"], r["arithmetic"]): r for r in meas.runs}
    bits = by["4+3", "own"]["stream_bits"] / by["4+4", "shared"]["stream_bits"]
    assert meas.cycle_ratio_43_44 == pytest.approx(bits, rel=0.001)
    assert meas.cycle_ratio_43_44 > 7 / 8 + 0.03                    # headers take part of the 7/8 back


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
    for png in ("throughput_chips.png", "time_breakdown.png", "tile_roofline.png", "calibration.png"):
        assert (tmp_path / png).stat().st_size > 1000 and png in text
    assert json.loads((tmp_path / "report.json").read_text())["model"] == "LLaMA-2-70B"
    assert "## Calibration" in text and "held-out" in text and "hop latency" in text
    assert " us " not in text and "µs" in text
    # every observation of the calibration is in the report's table
    assert all(r["id"] in text for r in data["calibration"]["rows"])
    v = verdict()
    assert "chips" in v and "survives" in v and "held-out" in v


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
    ('name = "x"\n[shape\n', "not valid TOML"),
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
    p.write_text(text.replace("[deployment]", 'warp_factor = [9, "a typo or a constant the model does not use"]\n'
                                              '\n[deployment]'))
    with pytest.raises(ValueError, match="unknown constant warp_factor"):
        load_chip(str(p))
    p.write_text(text + "\n[bogus\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_chip(str(p))
    gpu = (CONFIG_DIR / "rtx-4090.toml").read_text()
    p.write_text(gpu.replace("hbm_bandwidth_bytes_per_s", "hbm_bandwith"))
    with pytest.raises(ValueError, match="missing hbm_bandwidth_bytes_per_s"):
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
    with pytest.raises(ValueError, match="feed_scale"):
        decode(load_model("llama3-8b"), load_chip("groq-tsp"), weight_format("4+3"), load_measurement(),
               layer_fixed_s=C_LAYER, feed_scale=0)
    assert weight_format("int4").fmt == Format(4, 4)
    with pytest.raises(ValueError, match="no constant named warp_drive"):
        load_chip("groq-tsp").replace(warp_drive=1)
    with pytest.raises(ValueError, match="context"):
        decode(load_model("llama3-8b"), load_chip("groq-tsp"), weight_format("4+3"), load_measurement(), context=-1,
               layer_fixed_s=C_LAYER)


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


def test_run_group_size_option():
    import argparse

    from septet.commands.run import _group_size
    assert _group_size("128") == 128 and _group_size("none") is None
    for bad in ("7", "0", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match="--group-size must be an even integer >= 2 or 'none'"):
            _group_size(bad)


def test_report_cli_takes_user_configs_and_names_bad_fields(tmp_path):
    from septet.cli import main
    chip = tmp_path / "my-gpu.toml"
    chip.write_text((CONFIG_DIR / "rtx-4090.toml").read_text().replace("1008e9", "2016e9").replace(
        'key = "rtx-4090"', 'key = "my-gpu"'))
    model = tmp_path / "my-llm.toml"
    model.write_text((CONFIG_DIR / "llama3-8b.toml").read_text().replace('key = "llama3-8b"', 'key = "my-llm"'))
    from sim.report import build
    data = build(str(model), gpu_key=str(chip))                    # what --gpu/--model hand to the report
    fast = next(r for r in data["gpu_rows"] if r["fmt"] == "Q4_0")
    f = data["calibration"]["constants"]["llama.cpp-2023-12"]["bandwidth_fraction"]
    assert fast["t_stream_s"] == pytest.approx(weight_bytes(load_model("llama3-8b"), weight_format("q4_0"))
                                               / (f * 2016e9))    # the user's bandwidth, the fitted fraction
    chip.write_text(chip.read_text().replace("hbm_bytes = [", "hbm_bytes = [-"))
    assert main(["report", "--gpu", str(chip), "--out", str(tmp_path / "r2")]) == 2
    assert not (tmp_path / "r2" / "report.md").exists()
