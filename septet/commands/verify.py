"""``septet verify``: every GEMV of one decode step, at its real shape, through the Verilated tile on Dask.

The farm itself is :mod:`tb.farm`; this module parses the command line, opens the
cluster (a ``LocalCluster`` by default, ``--scheduler`` for an existing one), prints
progress and the summary, and writes ``OUT/summary.json``.  Exits 1 when any result
mismatched or a task failed, 2 on bad input.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from septet.cli import SeptetError
from septet.commands.verilog import add_tile_arguments

DEFAULT_MODEL = "llama2-70b"


def add_arguments(p):
    p.add_argument("--model", default=None, metavar="KEY|PATH.toml",
                   help=f"model whose shapes to verify (sim/configs; default {DEFAULT_MODEL})")
    p.add_argument("--weights", default=None, metavar="FILE.gguf|smollm2",
                   help="take shapes and weights from a LLaMA-architecture GGUF file ('smollm2': the packaged "
                        "SmolLM2-135M) instead of Gaussian weights drawn per GEMV")
    p.add_argument("--layers", default=None, metavar="A:B|I,J,...",
                   help="layers to verify: a range A:B (B excluded) or a comma list; default all")
    p.add_argument("--projections", default=None, metavar="P,...",
                   help="q,k,v,o,gate,up,down,lm_head (default all; lm_head once per step)")
    add_tile_arguments(p)
    p.set_defaults(group_size=128)
    p.add_argument("--seed", type=int, default=0, help="seed of weights, activations and stalls; default 0")
    p.add_argument("--idle", type=float, default=0.0, metavar="P",
                   help="probability per cycle that each input holds back its next beat; default 0")
    p.add_argument("--backpressure", type=float, default=0.0, metavar="P",
                   help="probability per cycle that the result sink is not ready; default 0")
    cluster = p.add_mutually_exclusive_group()
    cluster.add_argument("--workers", type=int, default=None, metavar="N",
                         help="worker processes of the local Dask cluster (default: one per CPU)")
    cluster.add_argument("--scheduler", default=None, metavar="ADDRESS",
                         help="an existing Dask scheduler, e.g. tcp://host:8786 (LSF/SLURM via dask-jobqueue)")
    p.add_argument("--task-cycles", type=int, default=None, metavar="C",
                   help="target tile cycles per task: big GEMVs are cut into column tasks of about C cycles "
                        "(default 2000000)")
    p.add_argument("--cores", default="1,64,1024", metavar="C,...",
                   help="core counts for the projected wall time of the whole decode step; default 1,64,1024")
    p.add_argument("--scaling", nargs="?", const="1,2", default=None, metavar="N,M,...",
                   help="instead of one run, verify the selection on fresh local clusters of N, M, ... workers "
                        "(default 1,2) and report wall-time speedup and efficiency")
    p.add_argument("--no-hdl-clock", dest="hdl_clock", action="store_false",
                   help="cocotb drives the clock (slower per cycle, quicker build)")
    p.add_argument("--simulator-per-task", dest="persistent_simulator", action="store_false",
                   help="start a new simulator process for every task instead of one per worker that stays up "
                        "(slower: for comparison)")
    p.add_argument("--dask-defaults", dest="quiet_cluster", action="store_false",
                   help="run the local cluster with Dask's default profiler and monitor settings instead of "
                        "quieter ones (for comparison)")
    p.add_argument("--keep", action="store_true", help="keep the simulation directories of passing tasks")
    p.add_argument("--scratch", default=None, metavar="DIR",
                   help="where workers put simulation directories (default: their temporary directory)")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="give up after S seconds")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output directory: results/<task>.json, summary.json (default build/verify/<model>-<format>)")
    p.add_argument("--set-aside", action="store_true",
                   help="when --out holds a run with other settings or sources (stale results), move it into "
                        "OUT/other-<fingerprint>/ and start over instead of refusing")
    p.add_argument("--json", action="store_true", help="print the summary JSON to stdout (progress goes to stderr)")


def parse_int_list(text: str, name: str, *, low: int = 0, high: "int | None" = None) -> "list[int]":
    """``"A:B"`` (B excluded) or ``"I,J,..."`` -> list of ints in ``[low, high)``; a clear error otherwise."""
    bound = f"[{low}, {high})" if high is not None else f">= {low}"
    try:
        if ":" in text:
            a, b = text.split(":")
            a = int(a) if a.strip() else low
            b = int(b) if b.strip() else high
            if b is None:
                raise ValueError
            values = list(range(a, b))
        else:
            values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SeptetError(f"{name} must be A:B or a comma list of integers, got {text!r}") from None
    if not values:
        raise SeptetError(f"{name} selects nothing: {text!r}")
    bad = [v for v in values if v < low or (high is not None and v >= high)]
    if bad:
        raise SeptetError(f"{name}: {bad[0]} is outside {bound}")
    return values


def _projections(text):
    from tb.farm import PROJECTIONS

    if text is None:
        return list(PROJECTIONS)
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [n for n in names if n not in PROJECTIONS]
    if bad or not names:
        raise SeptetError(f"--projections must be a comma list of {', '.join(PROJECTIONS)}, got {text!r}")
    return names


def _print_summary(summary, projection, out, stream):
    t = summary["total"]
    print(f"{'projection':<10} {'GEMVs':>5} {'weights':>14} {'cycles':>14} {'ideal':>14} {'effic.':>8} "
          f"{'mism.':>5} {'sim s':>8} {'M cyc/s':>8}", file=stream)
    for p in summary["per_projection"]:
        rate = p["cycles"] / p["sim_seconds"] / 1e6 if p["sim_seconds"] else 0.0
        print(f"{p['projection']:<10} {p['gemvs']:>5} {p['weights']:>14,} {p['cycles']:>14,} {p['ideal_cycles']:>14,} "
              f"{p['efficiency']:>8.5f} {p['mismatches']:>5} {p['sim_seconds']:>8.1f} {rate:>8.3f}", file=stream)
    print(f"{'all':<10} {t['gemvs']:>5} {t['weights']:>14,} {t['cycles']:>14,} {t['ideal_cycles']:>14,} "
          f"{t['efficiency']:>8.5f} {t['mismatches']:>5} {t['sim_seconds']:>8.1f} "
          f"{t['simulated_cycles_per_second'] / 1e6:>8.3f}", file=stream)
    verdict = "PASS" if summary["passed"] else "FAIL"
    print(f"{verdict}: {t['gemvs']} GEMVs in {t['tasks']} tasks ({t['tasks_resumed']} resumed), "
          f"{t['mismatches']} mismatches, {t['failed_tasks']} failed tasks, {t['retried_tasks']} rerun after a lost "
          f"worker; wall {t['wall_seconds']:.1f} s on {t['workers']} worker(s), load average "
          f"{t['load_average'][0]:.1f} on {os.cpu_count()} CPUs", file=stream)
    print(f"throughput: {t['simulated_cycles_per_second'] / 1e6:.3f} M cycles/s per simulator, "
          f"{t['verified_cycles_per_core_second'] / 1e6:.3f} M cycles/s per core with golden and overheads"
          + (f", {t['run_cycles_per_second'] / 1e6:.3f} M cycles/s for the whole run"
             if t.get("run_cycles_per_second") else ""), file=stream)
    if projection and projection.get("wall_seconds"):
        walls = ", ".join(f"{c} core(s) {_human(s)}" for c, s in projection["wall_seconds"].items())
        m = projection["task_time_model"]
        print(f"task time model (measured, {m['tasks']} tasks): {m['overhead_seconds_per_task']:.1f} s + "
              f"{m['golden_seconds_per_weight'] * 1e9:.1f} s per G weights (golden) + "
              f"{m['sim_seconds_per_cycle'] * 1e6:.2f} s per M cycles (simulator); worst error on these tasks "
              f"{100 * m['max_relative_error']:.0f}%", file=stream)
        print(f"projected, whole {projection['model']} decode step ({projection['gemvs']} GEMVs in "
              f"{projection['tasks']} tasks, {projection['weights'] / 1e9:.2f} G weights, "
              f"{projection['cycles'] / 1e9:.2f} G cycles, {projection['core_hours']:.2f} core-hours): {walls}, "
              f"the longest task {_human(projection['longest_task_seconds'])} (assumes {projection['assumptions']})",
              file=stream)
    if projection and projection.get("free_cores_wall_seconds"):
        m = projection["cpu_time_model"]
        walls = ", ".join(f"{c} core(s) {_human(s)}" for c, s in projection["free_cores_wall_seconds"].items())
        print(f"on free cores, from CPU time ({m['cpu_seconds_per_task']:.1f} s per task + "
              f"{m['cpu_seconds_per_cycle'] * 1e6:.2f} s per M cycles, fitted on {m['tasks']} tasks, worst error "
              f"{100 * m['max_relative_error']:.0f}%): {projection['free_cores_core_hours']:.2f} core-hours, {walls}",
              file=stream)
    _print_profile(t.get("profile"), stream)
    command = t.get("command")
    if command:
        built = command.get("tile_build_seconds")
        tile = "" if built is None else (f"tile {'compiled' if command.get('tile_compiled') else 'found in the cache'} "
                                         f"{built:.1f} s, ")
        print(f"this command: {command['command_seconds']:.1f} s in all ({tile}cluster start "
              f"{command['cluster_start_seconds']:.1f} s, verify {command['verify_seconds']:.1f} s, teardown "
              f"{command['teardown_seconds']:.1f} s, the rest imports, planning and the projection)", file=stream)
    print(f"results: {out}", file=stream)


def _print_profile(profile, stream, indent=""):
    """Where a run's time went: per task phase (wall and CPU, summed over tasks) and per worker."""
    if not profile or "tasks" not in profile:
        return
    phases = profile["tasks"]
    wall = sum(p["wall"] for p in phases.values())
    print(f"{indent}task phases (wall s / CPU s, summed over tasks): " + ", ".join(
        f"{name} {p['wall']:.1f}/{p['worker_cpu'] + p['simulator_cpu']:.1f}" for name, p in phases.items())
        + f"; total {wall:.1f}", file=stream)
    for w in profile["workers"]:
        outside = w["cpu_outside_tasks_seconds"]
        print(f"{indent}worker {w['worker']}: {w['tasks']} tasks, busy {w['busy_seconds']:.1f} s, waited "
              f"{w['start_delay_seconds']:.2f} s for its first task and {w['idle_between_tasks_seconds']:.2f} s between "
              f"tasks, idle {w['tail_seconds']:.1f} s at the end (the tail); Dask outside tasks "
              + (f"{outside:.2f} CPU s" if outside is not None else "?") + f", {w['threads']} Python threads in its process", file=stream)
    print(f"{indent}client, scheduler and nannies: {profile['client_cpu_seconds']:.2f} CPU s over "
          f"{profile['run_seconds']:.1f} s; workers busy {100 * (profile['worker_utilization'] or 0):.1f}% of the run",
          file=stream)


def _human(seconds):
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"


def _process_start() -> float:
    """Epoch seconds when this process started (so imports count), from /proc; now where there is no /proc."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.time()


def run(args):
    from rtl.params import TileParams
    from tb.farm import (DEFAULT_TASK_CYCLES, FarmSettings, open_client, plan_gguf, plan_step, project_step,
                         scaling, split_tasks, verify)
    from tb.stalls import validate_probability

    validate_probability("idle", args.idle)
    validate_probability("backpressure", args.backpressure)
    if args.workers is not None and args.workers < 1:
        raise SeptetError(f"--workers must be an integer >= 1, got {args.workers}")
    task_cycles = DEFAULT_TASK_CYCLES if args.task_cycles is None else args.task_cycles
    if task_cycles < 1:
        raise SeptetError(f"--task-cycles must be an integer >= 1, got {task_cycles}")
    cores = parse_int_list(args.cores, "--cores", low=1)
    if args.timeout is not None and not args.timeout > 0:
        raise SeptetError(f"--timeout must be > 0 seconds, got {args.timeout}")
    projections = _projections(args.projections)
    config = TileParams(fmt=args.format, arithmetic=args.arithmetic, lanes=args.lanes, bus_width=args.bus_width,
                        group_size=args.group_size, acc_width=args.acc_width, max_k=args.max_k, requant=args.requant)
    if config.requant:
        raise SeptetError("--requant is not supported by septet verify (it checks the int32/acc_width results)")
    weights = args.weights
    if weights is not None:
        if args.model is not None:
            raise SeptetError("--model and --weights exclude each other: with --weights the shapes come from the file")
        if weights == "smollm2":
            from golden.quality.models import smollm2_gguf_path

            weights = str(smollm2_gguf_path())
        step_specs, n_layers = plan_gguf(weights)
        layers = parse_int_list(args.layers, "--layers", high=n_layers) if args.layers else None
        specs, _ = plan_gguf(weights, layers=layers, projections=projections)
        name = Path(weights).stem
    else:
        from sim.config import load_model

        model = load_model(args.model or DEFAULT_MODEL)
        layers = parse_int_list(args.layers, "--layers", high=model.layers) if args.layers else None
        specs = plan_step(model, layers=layers, projections=projections)
        step_specs = plan_step(model)
        name = model.name
    too_long = [s for s in specs if s.K > config.max_k]
    if too_long:
        raise SeptetError(f"{too_long[0].name} has K = {too_long[0].K}; --max-k must be >= it")
    tasks = split_tasks(specs, config, task_cycles)
    label = Path(weights).stem if weights else Path(args.model or DEFAULT_MODEL).stem
    out = Path(args.out or Path("build") / "verify" / f"{label}-{config.fmt.name.replace('+', 'p')}"
               f"-g{config.group_size or 'col'}-L{config.lanes}-W{config.bus_width}")
    summary_stream = sys.stderr if args.json else sys.stdout

    def progress(line):
        print(f"  ... {line}", file=sys.stderr, flush=True)

    settings = FarmSettings(config=config, seed=args.seed, hdl_clock=args.hdl_clock, idle=args.idle,
                            backpressure=args.backpressure, weights=weights, scratch=args.scratch,
                            attempts=None, keep=args.keep, task_cycles=task_cycles,
                            persistent_simulator=args.persistent_simulator)
    print(f"septet verify: {name}, {len(specs)} GEMVs ({sum(s.weights for s in specs):,} weights) in {len(tasks)} "
          f"tasks, tile {config.fmt} {config.arithmetic.value} g{config.group_size or 'col'} L={config.lanes} "
          f"W={config.bus_width}", file=sys.stderr)
    if args.scaling is not None:
        if args.scheduler is not None:
            raise SeptetError("--scaling starts its own local clusters; it excludes --scheduler")
        counts = parse_int_list(args.scaling, "--scaling", low=1)
        result = scaling(tasks, settings, out / "scaling", counts, progress=progress, quiet=args.quiet_cluster)
        for r in result["runs"]:
            c = r["components"]
            print(f"{r['workers']} worker(s): wall {r['wall_seconds']:.1f} s (cluster start {c['cluster_start_seconds']:.1f}, "
                  f"tile load {c['prepare_seconds']:.1f}, tasks {c['run_seconds']:.1f}, summary {c['summary_seconds']:.1f}, "
                  f"teardown {c['teardown_seconds']:.1f}), speedup {r['speedup']:.3f}, efficiency {r['efficiency']:.3f} "
                  f"(tasks alone {r['run_efficiency']:.3f}); {r['mismatches']} mismatches; load average "
                  f"{r['load_average_before'][0]:.1f} -> {r['load_average_after'][0]:.1f} on {result['cpus']} CPUs, "
                  f"calibration: this session got {r['machine']['parallelism']:.2f} core(s) for {r['workers']} "
                  f"process(es), efficiency against that {r['efficiency_against_machine']:.3f}; CPU {r['cpu_seconds']:.1f} s "
                  f"({r['cpu_ratio']:.3f} of the first run's), efficiency of these task CPU times on free cores "
                  f"{r['estimated_efficiency_on_free_cores']:.3f}", file=summary_stream)
            _print_profile(r["profile"], summary_stream, indent="    ")
        print(f"definition: {result['definition']}", file=summary_stream)
        busiest = max(max(r["load_average_before"][0], r["load_average_after"][0]) for r in result["runs"])
        if busiest > result["cpus"]:
            print(f"note: load average up to {busiest:.1f} on {result['cpus']} CPUs: the workers competed with other "
                  f"jobs" + (" and, with Linux autogroup on, all of them shared this session's one CPU share"
                             if result["sched_autogroup"] else "")
                  + "; rerun on a quiet machine for the scaling of the farm itself", file=summary_stream)
        from tb.farm import write_json_atomic

        write_json_atomic(out / "scaling" / "scaling.json", result)
        if args.json:
            print(json.dumps(result, indent=1))
        return 0 if all(r["passed"] for r in result["runs"]) else 1
    # A local run records each task's start in OUT/attempts (the workers share this file system).
    if args.scheduler is None:
        from dataclasses import replace

        settings = replace(settings, attempts=str((out / "attempts").resolve()))
    from tb.farm import check_out_dir

    try:
        aside = check_out_dir(out, settings, set_aside=args.set_aside)
    except ValueError as exc:
        raise SeptetError(str(exc)) from None
    if aside is not None:
        print(f"septet verify: {out} held a run with other settings or sources; moved to {aside}", file=sys.stderr)
    build = None
    if args.scheduler is None:
        from tb.farm import prepare_worker

        build = prepare_worker(settings)    # build (or find) the tile here, once, before the workers start and need it
    asked = time.perf_counter()
    try:
        client, cluster = open_client(workers=args.workers, scheduler=args.scheduler, quiet=args.quiet_cluster)
    except ValueError as exc:
        raise SeptetError(str(exc)) from None
    started = time.perf_counter()
    try:
        summary = verify(client, tasks, settings, out, progress=progress, timeout=args.timeout)
    finally:
        finished = time.perf_counter()
        client.close()
        if cluster is not None:
            cluster.close()
    closed = time.perf_counter()
    summary["total"]["command"] = {"cluster_start_seconds": round(started - asked, 3),
                                   "verify_seconds": round(finished - started, 3),
                                   "teardown_seconds": round(closed - finished, 3),
                                   "command_seconds": round(time.time() - _process_start(), 3),
                                   "tile_build_seconds": build["build_seconds"] if build else None,
                                   "tile_compiled": build["compiled"] if build else None}
    summary["projection"] = project_step(step_specs, name, settings, summary, cores)
    from tb.farm import SUMMARY_FILE, write_json_atomic

    write_json_atomic(out / SUMMARY_FILE, summary)
    _print_summary(summary, summary["projection"], out, summary_stream)
    if args.json:
        print(json.dumps(summary, indent=1))
    return 0 if summary["passed"] else 1
