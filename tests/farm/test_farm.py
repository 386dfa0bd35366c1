"""The verification farm (tb/farm.py, septet verify): plan, data, and a reduced run on a 2-worker LocalCluster
during which a worker process is killed."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from golden.oracle import gemv_int
from golden.quantize import quantize
from rtl.params import TileParams
from septet.cli import main
from sim.config import load_model
from sim.model import linear_shapes
from tb import farm
from tb.gemv_data import make_gemv

#: Every test here has a time limit (the cluster test sets its own, longer one).
pytestmark = pytest.mark.timeout(120)

HERE = Path(__file__).resolve().parent
TINY = HERE / "tiny-llama.toml"
#: The 8-lane, 32-bit-bus tile of tests/tb/test_tile.py (SEPTET_W32), also in memory mode with the HDL clock:
#: the session builds it once for both.
SMALL_TILE = TileParams(fmt="4+3", lanes=8, bus_width=32)
LAYER = ["q", "k", "v", "o", "gate", "up", "down"]


def test_llama2_70b_plan_comes_from_sim_configs():
    model = load_model("llama2-70b")
    layer = farm.plan_step(model, layers=[0], projections=LAYER)
    assert [(s.projection, s.K, s.N) for s in layer] == [
        ("q", 8192, 8192), ("k", 8192, 1024), ("v", 8192, 1024), ("o", 8192, 8192),
        ("gate", 8192, 28672), ("up", 8192, 28672), ("down", 28672, 8192)]
    assert sum(s.weights for s in layer) == 855_638_016      # the "856 M weights" per layer
    step = farm.plan_step(model)
    assert len(step) == 80 * 7 + 1 and step[-1].name == "lm_head"
    embed = next(K * N for name, K, N, _ in linear_shapes(model) if name == "embed")
    # The step streams every parameter but the embedding: 68.98 G published.
    assert abs((sum(s.weights for s in step) + embed) / model.published_parameters - 1) < 1e-3


def test_tasks_cover_every_column_once_and_balance_the_layer():
    config = TileParams(fmt="4+3", lanes=16, bus_width=64, group_size=128)
    specs = farm.plan_step(load_model("llama2-70b"), layers=[3], projections=LAYER)
    tasks = farm.split_tasks(specs, config)
    for spec in specs:
        mine = sorted((t for t in tasks if t.gemv == spec), key=lambda t: t.columns)
        panels = [p for t in mine for p in t.panels]
        assert panels[0][0] == 0 and panels[-1][1] == spec.N
        assert all(a[1] == b[0] for a, b in zip(panels, panels[1:]))          # contiguous, no overlap
        assert all((stop - start) % config.lanes == 0 for start, stop in panels[:-1])
        assert sum(t.stream_bits for t in mine) == config.stream_bits(spec.K, spec.N)
    per_gemv = {s.projection: sum(1 for t in tasks if t.gemv == s) for s in specs}
    assert per_gemv["k"] == per_gemv["v"] == 1 and per_gemv["gate"] >= 3
    sizes = [t.estimated_cycles for t in tasks]
    # Big GEMVs are cut so that the largest task is a small part of the layer: two workers can balance it.
    assert max(sizes) < 0.15 * sum(sizes)
    assert sizes == sorted(sizes, reverse=True)


def test_column_panels_compose_to_the_whole_gemv(monkeypatch):
    """Quantization is per column, so the panels' oracle results are exactly the whole GEMV's."""
    monkeypatch.setattr(farm, "PANEL_WEIGHTS", 64 * 24)
    config = SMALL_TILE
    spec = farm.GemvSpec(1, "up", 64, 80)
    panels = farm._panels(spec, config.lanes)
    assert len(panels) == 4 and panels[0] == (0, 24)
    W = np.concatenate([farm.panel_weights(7, spec, a, b) for a, b in panels], axis=1)
    assert W.shape == (64, 80) and np.array_equal(W[:, :24], farm.panel_weights(7, spec, 0, 24))
    assert not np.array_equal(W[:, :24], farm.panel_weights(8, spec, 0, 24))
    a = farm.gemv_activations(7, spec)
    assert a.dtype == np.int8 and np.array_equal(a, farm.gemv_activations(7, spec))
    whole = gemv_int(quantize(W, config.fmt), a)
    parts = np.concatenate([make_gemv(quantize(W[:, p0:p1], config.fmt), a, config).expected.reshape(-1)[:p1 - p0]
                            for p0, p1 in panels])
    assert np.array_equal(parts, whole)


def test_bad_input_gets_a_clear_error(capsys):
    for argv, message in ((["--layers", "0:81"], "--layers: 80 is outside [0, 80)"),
                          (["--projections", "q,ffn"], "--projections must be a comma list"),
                          (["--workers", "0"], "--workers must be an integer >= 1"),
                          (["--model", "llama2-70b", "--weights", "smollm2"], "exclude each other"),
                          (["--weights", "missing.gguf"], "does not exist"),
                          (["--model", "llama2-70b", "--max-k", "8192"], "--max-k must be >= it")):
        assert main(["verify", *argv]) == 2
        assert message in capsys.readouterr().err


def _tiny_gguf(path, layers=2, d=64, ffn=96, kv=16, vocab=80, tied=True):
    """A LLaMA-architecture GGUF of random float32 tensors stored [out, in] as llama.cpp does."""
    from gguf import GGUFWriter

    rng = np.random.default_rng(0)
    tensors = {}
    for i in range(layers):
        for name, (out_dim, in_dim) in (("attn_q", (d, d)), ("attn_k", (kv, d)), ("attn_v", (kv, d)),
                                        ("attn_output", (d, d)), ("ffn_gate", (ffn, d)), ("ffn_up", (ffn, d)),
                                        ("ffn_down", (d, ffn))):
            tensors[f"blk.{i}.{name}.weight"] = rng.standard_normal((out_dim, in_dim)).astype(np.float32)
    tensors["token_embd.weight"] = rng.standard_normal((vocab, d)).astype(np.float32)
    if not tied:
        tensors["output.weight"] = rng.standard_normal((vocab, d)).astype(np.float32)
    writer = GGUFWriter(str(path), "llama")
    for name, value in tensors.items():
        writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return tensors


def test_gguf_weights_plan_and_columns(tmp_path):
    path = tmp_path / "tiny.gguf"
    tensors = _tiny_gguf(path)
    specs, layers = farm.plan_gguf(path, layers=[1], projections=["q", "k", "down", "lm_head"])
    assert layers == 2
    assert [(s.projection, s.K, s.N) for s in specs] == [("q", 64, 64), ("k", 64, 16), ("down", 96, 64),
                                                         ("lm_head", 64, 80)]   # tied: the embedding
    settings = farm.FarmSettings(config=SMALL_TILE, weights=str(path))
    down, head = specs[2], specs[3]
    assert np.array_equal(farm._task_weights(settings, down, 8, 24), tensors["blk.1.ffn_down.weight"].T[:, 8:24])
    assert np.array_equal(farm._task_weights(settings, head, 0, 80), tensors["token_embd.weight"].T)
    with pytest.raises(ValueError, match="layer 2 is outside"):
        farm.plan_gguf(path, layers=[2])
    (tmp_path / "bad.gguf").write_bytes(b"not a gguf file")
    with pytest.raises(ValueError, match="not a readable GGUF"):
        farm.plan_gguf(tmp_path / "bad.gguf")


def _kill_a_running_worker(attempts: Path, results: Path, killed: dict, stop: threading.Event):
    """Kill (SIGKILL) the worker process of the first task seen started and not yet reported."""
    while not stop.is_set():
        for marker in sorted(attempts.glob("*")) if attempts.is_dir() else []:
            task_id, pid, _ = marker.name.rsplit(".", 2)
            if not (results / f"{task_id}.json").exists():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:     # that worker is gone already
                    continue
                killed.update(task=task_id, pid=int(pid))
                return
        time.sleep(0.02)


@pytest.mark.timeout(420)
def test_reduced_verify_survives_a_killed_worker_and_resumes(tmp_path):
    model = load_model(TINY)
    specs = farm.plan_step(model, layers=[1], projections=["q", "k", "v"])
    tasks = farm.split_tasks(specs, SMALL_TILE, task_cycles=20_000)
    out = tmp_path / "out"
    settings = farm.FarmSettings(config=SMALL_TILE, seed=5, attempts=str(out / "attempts"),
                                 scratch=str(tmp_path / "scratch"), task_cycles=20_000)
    client, cluster = farm.open_client(workers=2)
    killed, stop = {}, threading.Event()
    reported = []
    try:
        workers = client.run(farm._process_cpu)
        threads = sorted(w["nthreads"] for w in farm._scheduler_workers(client).values())
        # verify() has every worker build (or load) the tile before any task starts: the kill hits a task.
        killer = threading.Thread(target=_kill_a_running_worker,
                                  args=(out / "attempts", out / "results", killed, stop))
        killer.start()
        try:
            summary = farm.verify(client, tasks, settings, out, timeout=300, on_result=reported.append)
        finally:
            stop.set()
            killer.join()
    finally:
        client.close()
        cluster.close()
    assert killed, "no worker was killed: the test did not test anything"
    # The workers are separate processes with one task thread each (not threads sharing one interpreter).
    assert len(workers) == 2 and len({w["name"] for w in workers.values()}) == 2
    assert all(w["name"] != farm._worker_name() for w in workers.values())
    assert threads == [1, 1]
    ids = [t.task_id for t in tasks]
    # Every GEMV reports, once: one record per task, in the output directory and through the callback.
    assert sorted(r["task"] for r in reported) == sorted(ids)
    assert sorted(p.stem for p in (out / "results").glob("*.json")) == sorted(ids)
    assert summary["passed"] and summary["total"]["mismatches"] == 0
    assert summary["total"]["gemvs"] == len(specs) and summary["total"]["incomplete_gemvs"] == 0
    assert summary["total"]["retried_tasks"] >= 1          # the killed worker's task ran again elsewhere
    for record in reported:
        assert record["beats_checked"] == record["beats_expected"] > 0
        assert record["cycles"] > record["ideal_cycles"] > 0
        assert record["cpu_seconds"] > 0
        # The profile's phases account for the task's time (they are laps of one clock).
        assert list(record["profile"]) == list(farm.TASK_PHASES)
        assert sum(p["wall"] for p in record["profile"].values()) == pytest.approx(record["task_seconds"], abs=0.05)
        assert record["profile"]["simulation"]["wall"] == pytest.approx(record["sim_seconds"], abs=1e-3)
        assert record["started_at"] < record["finished_at"]
    # Each worker's simulator stays up (it started before the tasks: a worker started after the kill starts its
    # own in its first task), and its CPU is counted while it runs.
    assert sum(r["profile"]["simulator_start"]["wall"] < 0.5 for r in reported) >= len(reported) - 2
    assert sum(r["profile"]["simulation"]["simulator_cpu"] for r in reported) > 0   # counted in 10 ms ticks
    profile = summary["total"]["profile"]
    assert sum(w["tasks"] for w in profile["workers"]) == len(reported)
    assert 0 < profile["worker_utilization"] <= 1
    # Resume through the CLI: a task whose record says it failed runs again, the others are skipped.
    victim = out / "results" / f"{ids[-1]}.json"
    record = json.loads(victim.read_text())
    victim.write_text(json.dumps({**record, "passed": False}))
    def argv(seed):
        return ["verify", "--model", str(TINY), "--layers", "1", "--projections", "q,k,v", "--lanes", "8",
                "--bus-width", "32", "--group-size", "none", "--seed", str(seed), "--task-cycles", "20000",
                "--workers", "1", "--out", str(out), "--scratch", str(tmp_path / "scratch"), "--timeout", "300",
                "--simulator-per-task"]     # the other way to run a task, same results

    assert main(argv(5)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["total"]["tasks_run"] == 1 and summary["total"]["tasks_resumed"] == len(tasks) - 1
    assert json.loads(victim.read_text())["passed"]
    # Other settings in the same directory are refused, not mixed.
    assert main(argv(6)) == 2


def test_task_time_model_and_step_projection():
    """The projection's per-task model recovers known constants; the wall time is bounded by the longest task."""
    def record(K, cols, cycles):
        sim, golden = 2e-6 * cycles, 5e-8 * K * cols
        return {"passed": True, "K": K, "columns": [0, cols], "cycles": cycles, "sim_seconds": sim,
                "golden_seconds": golden, "task_seconds": 1.5 + sim + golden}

    records = [record(8192, 1024, 500_000), record(8192, 4096, 2_000_000), record(28672, 288, 490_000)]
    model = farm.task_time_model(records)
    assert model["overhead_seconds_per_task"] == pytest.approx(1.5)
    assert model["golden_seconds_per_weight"] == pytest.approx(5e-8)
    assert model["sim_seconds_per_cycle"] == pytest.approx(2e-6)
    assert model["max_relative_error"] == pytest.approx(0, abs=1e-9)
    config = TileParams(fmt="4+3", lanes=16, bus_width=64, group_size=128)
    settings = farm.FarmSettings(config=config)
    step = farm.plan_step(load_model("llama2-70b"))
    summary = {"total": {"cycles": 101, "ideal_cycles": 100, "task_time_model": model}}
    projection = farm.project_step(step, "LLaMA-2-70B", settings, summary, cores=(1, 64, 1_000_000))
    walls = projection["wall_seconds"]
    assert walls["1"] == pytest.approx(projection["core_hours"] * 3600, rel=1e-3)
    assert walls["1"] / walls["64"] == pytest.approx(64, rel=1e-3)
    assert walls["1000000"] == projection["longest_task_seconds"]     # more cores than tasks: the longest task
    assert 4.0e9 < projection["cycles"] < 4.2e9 and projection["gemvs"] == 561
    # The scaling report's free-core estimate schedules tasks in submission order, each to the first free core.
    assert farm._greedy_makespan([5, 4, 3, 3, 1], 2) == 8 and farm._greedy_makespan([5, 4, 3, 3, 1], 1) == 16


def test_cpu_time_model_fits_a_line():
    records = [{"passed": True, "cycles": c, "cpu_seconds": 2.0 + 5e-6 * c} for c in (500_000, 1_000_000, 4_000_000)]
    model = farm.cpu_time_model(records)
    assert model["cpu_seconds_per_task"] == pytest.approx(2.0)
    assert model["cpu_seconds_per_cycle"] == pytest.approx(5e-6)
    assert model["max_relative_error"] == pytest.approx(0, abs=1e-9)
    assert farm.cpu_time_model(records[:1]) is None      # one size cannot separate the two terms


def test_run_profile_locates_idle_time_and_dask_cpu():
    """Per worker: busy time, the wait for the first task, gaps between tasks, the tail, and CPU outside tasks."""
    def record(worker, start, finish, cpu):
        return {"worker": worker, "started_at": start, "finished_at": finish,
                "profile": {"simulation": {"wall": finish - start, "worker_cpu": cpu, "simulator_cpu": 2.0}}}

    records = [record("a", 100.5, 104.0, 1.0), record("a", 104.5, 110.0, 1.0), record("b", 101.0, 108.0, 1.5)]
    before = {"tcp://a": {"name": "a", "cpu": 10.0, "threads": 4}, "tcp://b": {"name": "b", "cpu": 20.0, "threads": 4}}
    after = {"tcp://a": {"name": "a", "cpu": 12.25, "threads": 4}, "tcp://b": {"name": "b", "cpu": 21.5, "threads": 4}}
    profile = farm.run_profile(records, 100.0, 110.0, before, after, client_cpu=0.3)
    a, b = profile["workers"]
    assert (a["tasks"], a["busy_seconds"], a["start_delay_seconds"], a["idle_between_tasks_seconds"],
            a["tail_seconds"], a["cpu_outside_tasks_seconds"]) == (2, 9.0, 0.5, 0.5, 0.0, 0.25)
    assert (b["busy_seconds"], b["tail_seconds"], b["cpu_outside_tasks_seconds"]) == (7.0, 2.0, 0.0)
    assert profile["worker_utilization"] == pytest.approx(16 / 20)
    assert profile["tasks"]["simulation"]["simulator_cpu"] == 6.0 and profile["client_cpu_seconds"] == 0.3


def test_machine_parallelism_calibration():
    one = farm.machine_parallelism(1, seconds=0.05)
    assert one["parallelism"] == 1.0 and one["alone_seconds"] > 0
    two = farm.machine_parallelism(2, seconds=0.05)
    # Two processes of this session get between a shared core and two free ones (with some timing noise).
    assert 0.3 < two["parallelism"] < 2.5 and two["together_seconds"] > 0


def test_results_of_other_sources_are_refused_or_set_aside(tmp_path):
    """A run's identity includes the sources (RTL, golden, testbench): stale results are never resumed."""
    settings = farm.FarmSettings(config=SMALL_TILE, seed=5)
    assert settings.identity()["sources"] == farm.sources_digest()
    out = tmp_path / "out"
    (out / "results").mkdir(parents=True)
    stale = {**settings.identity(), "sources": "0" * 16}
    farm.write_json_atomic(out / "run.json", {"fingerprint": "f" * 16, "identity": stale, "tasks": []})
    (out / "results" / "t.json").write_text("{}")
    with pytest.raises(ValueError, match=r"differing: sources\)"):
        farm.check_out_dir(out, settings)
    aside = farm.check_out_dir(out, settings, set_aside=True)
    assert aside.parent == out and aside.name.startswith("other-" + "f" * 16)
    assert (aside / "results" / "t.json").is_file() and (aside / "run.json").is_file()
    assert not (out / "run.json").exists() and farm.check_out_dir(out, settings) is None


def test_task_cycles_and_workers_refuse_a_wrong_type_and_a_wrong_value_distinctly():
    specs = farm.plan_step(load_model("llama2-70b"), layers=[0], projections=["k"])
    with pytest.raises(ValueError, match="task_cycles must be an integer >= 1, got 0"):
        farm.split_tasks(specs, SMALL_TILE, task_cycles=0)
    with pytest.raises(TypeError, match="task_cycles must be an integer >= 1, got 2.5"):
        farm.split_tasks(specs, SMALL_TILE, task_cycles=2.5)
    with pytest.raises(ValueError, match="--workers must be an integer >= 1, got 0"):
        farm.open_client(workers=0)
    with pytest.raises(TypeError, match="--workers must be an integer >= 1, got 1.0"):
        farm.open_client(workers=1.0)
