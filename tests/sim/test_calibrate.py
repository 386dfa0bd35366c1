"""The calibration: it recovers known constants, never sees held-out rows, and names every miss."""

import tomllib

import pytest

from sim.calibrate import GROUPS, MISS_FACTOR, calibrate, calibration
from sim.observed import OBSERVED_DEFAULT, load_observations



@pytest.fixture(scope="module")
def committed():
    return calibrate()


def _toml_value(v):
    return f'"{v}"' if isinstance(v, str) else repr(v)


def _write(path, doc):
    """A minimal TOML writer for the observed schema (tomllib reads; the standard library has no writer)."""
    lines = [f'schema = "{doc["schema"]}"', "", "[q4_k_m_file_gib]"]
    for k, (v, src) in doc.get("q4_k_m_file_gib", {}).items():
        lines.append(f'{k} = [{v}, "{src}"]')
    for s in doc["series"]:
        lines += ["", "[[series]]"]
        for k, v in s.items():
            if k == "columns":
                lines.append("columns = [" + ", ".join(f'"{c}"' for c in v) + "]")
            elif k == "rows":
                lines.append("rows = [")
                lines += ["  [" + ", ".join(_toml_value(x) for x in row) + "]," for row in v]
                lines.append("]")
            else:
                lines.append(f"{k} = {_toml_value(v)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _doc():
    return tomllib.loads(OBSERVED_DEFAULT.read_text())


def test_committed_fit_reproduces_its_training_rows_and_every_miss_is_named(committed):
    lpu_fit = committed.group_rows("groq-lpu", "fit")
    assert len(lpu_fit) == 1 and lpu_fit[0]["ratio"] == pytest.approx(1.0, abs=1e-9)   # one constant, one row
    for g in GROUPS:
        lo, hi = committed.error_range(g)
        for r in committed.group_rows(g, "fit"):
            assert lo <= r["ratio"] <= hi or abs(r["ratio"] - 1) < 1e-6, r   # training rows within the stated error
    hold = [r for r in committed.rows if r["role"] == "holdout"]
    assert len(hold) >= 90
    assert all(r["within"] or r["miss_cause"] for r in hold), [r["id"] for r in hold if not r["within"]]
    assert sum(r["within"] for r in hold) / len(hold) > 0.9
    c = committed.constants("llama.cpp-2023-12")
    assert 0.5 < c["bandwidth_fraction"] <= 1.0 and 10e-6 < c["layer_fixed_s"] < 1e-3


def test_fit_recovers_known_constants_from_synthetic_measurements(tmp_path, committed):
    # Replace every measured figure by the committed model's own prediction with chosen constants; the fit must
    # return exactly those constants and reproduce every row.
    truth = {g: {k: v * 1.3 for k, v in c.items()} for g, c in committed.constants_by_group.items()}
    for c in truth.values():
        if "inv_bandwidth_fraction" in c:
            c["bandwidth_fraction"] = 1 / c["inv_bandwidth_fraction"]
    from sim.calibrate import _decode, observation_format
    from sim.model import load_measurement

    obs, file_gib = load_observations()
    meas = load_measurement()
    predicted = {o.id: o.figure_from_token_time(_decode(o, observation_format(o, file_gib), truth[o.calibration],
                                                        meas).t_token_s) for o in obs}
    doc = _doc()
    for s in doc["series"]:
        col = s["columns"].index("tokens_per_s")
        for i, row in enumerate(s["rows"]):
            row[col] = predicted[f"{s['id']}#{i + 1}"]
    cal = calibrate(_write(tmp_path / "synthetic.toml", doc))
    for g, c in truth.items():
        for k in GROUPS[g].free:
            assert cal.constants(g)[k] == pytest.approx(c[k], rel=1e-6), (g, k)
    assert all(r["ratio"] == pytest.approx(1.0, rel=1e-6) for r in cal.rows)


def test_held_out_rows_never_move_the_fit_and_their_errors_are_computed(tmp_path, committed):
    doc = _doc()
    s = next(s for s in doc["series"] if s["id"] == "xiongjiedai-llama2-2023-12")
    col = s["columns"].index("tokens_per_s")
    i = next(i for i, r in enumerate(s["rows"]) if r[-1] == "holdout")
    s["rows"][i][col] *= 2
    cal = calibrate(_write(tmp_path / "moved.toml", doc))
    assert cal.constants_by_group == committed.constants_by_group
    rid = f"xiongjiedai-llama2-2023-12#{i + 1}"
    before = next(r for r in committed.rows if r["id"] == rid)
    after = next(r for r in cal.rows if r["id"] == rid)
    assert after["ratio"] == pytest.approx(before["ratio"] / 2)
    # while moving a fit row moves the constants
    j = next(i for i, r in enumerate(s["rows"]) if r[-1] == "fit")
    s["rows"][i][col] /= 2
    s["rows"][j][col] *= 1.2
    moved = calibrate(_write(tmp_path / "fit_moved.toml", doc))
    assert moved.constants("llama.cpp-2023-12") != committed.constants("llama.cpp-2023-12")


def test_prediction_ranges_come_from_the_held_out_errors(committed):
    for g in GROUPS:
        lo, hi = committed.error_range(g)
        ratios = [r["ratio"] for r in committed.group_rows(g, "holdout") if not r["miss_cause"]]
        assert (lo, hi) == (min(ratios), max(ratios))
        a, b = committed.predict_range(g, 100.0)
        assert a <= 100.0 <= b and a == pytest.approx(100 / max(hi, 1)) and b == pytest.approx(100 / min(lo, 1))
    assert MISS_FACTOR == 1.5


@pytest.mark.parametrize("edit, match", [
    (lambda s: s.pop("date"), "missing date"),
    (lambda s: s["rows"][0].__setitem__(3, "q3_weird"), "precision must be one of"),
    (lambda s: s["rows"][0].__setitem__(0, "tpu-v9"), "hardware 'tpu-v9' is not a chip config"),
    (lambda s: s["rows"][0].__setitem__(-1, "train"), "role must be 'fit' or 'holdout'"),
    (lambda s: s["rows"][0].__setitem__(4, -3.0), "tokens_per_s must be a number > 0"),
    (lambda s: s.__setitem__("timed", "wall clock"), "timed must be one of"),
    (lambda s: s["rows"][0].pop(), "must have"),
])
def test_schema_errors_name_the_series_row_and_field(tmp_path, edit, match):
    doc = _doc()
    s = next(s for s in doc["series"] if s["id"] == "xiongjiedai-llama2-2023-12")
    edit(s)
    with pytest.raises(ValueError, match=match) as exc:
        load_observations(_write(tmp_path / "bad.toml", doc))
    assert "xiongjiedai-llama2-2023-12" in str(exc.value)


def test_cache_is_keyed_on_content(tmp_path):
    doc = _doc()
    p = _write(tmp_path / "o.toml", doc)
    a = calibration(p)
    assert calibration(p) is a
    s = next(s for s in doc["series"] if s["id"] == "groq-techpowerup-2024-02")
    s["rows"][0][4] = 150.0                              # the LPU fit row: half the speed
    _write(p, doc)
    b = calibration(p)
    assert b is not a
    assert b.constants("groq-lpu")["layer_fixed_s"] > 1.9 * a.constants("groq-lpu")["layer_fixed_s"]
