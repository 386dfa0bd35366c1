"""``septet generate``: SmolLM2-135M generating text with every linear layer as the tile computes it.

``--through golden``: golden's integer path (:mod:`golden.quality.intpath`).
``--through rtl``: in addition every GEMV of every new token (all projections of
all layers and the output head) runs in the Verilated tile and is checked bit for
bit against golden as it goes; the text is recomputed from the tile's own
results (:class:`tb.llm.ReplayLinear`) and asserted equal to golden's.  The
prompt's tokens before the last are prefilled by golden's integer path only.

Decoding is greedy (argmax).  Timing figures are wall-clock on the machine it runs
on: the summary says what was measured.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from septet.cli import SeptetError

DEFAULT_PROMPT = "The capital of France is"
#: The tile ``--through rtl`` builds by default: 64 lanes on a 256-bit bus simulates about 2.5x faster per
#: weight than 16 lanes on 64 bits (measured side by side, see the README); cycles scale by the bus width.
DEFAULT_LANES, DEFAULT_BUS = 64, 256
MAX_TOKENS = 256


def add_arguments(p):
    p.add_argument("--model", default="smollm2", choices=("smollm2",), help="the model (SmolLM2-135M)")
    p.add_argument("--prompt", default=DEFAULT_PROMPT, help=f"prompt text; default {DEFAULT_PROMPT!r}")
    p.add_argument("--tokens", type=int, default=16, help=f"new tokens, 1..{MAX_TOKENS}; default 16")
    p.add_argument("--format", default="4+3", help="weight format E+O; default 4+3")
    p.add_argument("--arithmetic", default="own", choices=("own", "shared"), help="default own")
    p.add_argument("--group-size", type=int, default=128, help="group size along K (even; 0 = per column); "
                                                               "default 128")
    p.add_argument("--clip", default="act", choices=("none", "act"),
                   help="act (default): golden's output-error clipping on calibration activations")
    p.add_argument("--no-perm", action="store_true", help="no salience permutation")
    p.add_argument("--through", default="golden", choices=("golden", "rtl"), help="default golden")
    p.add_argument("--lanes", type=int, default=DEFAULT_LANES, help=f"tile lanes (rtl); default {DEFAULT_LANES}")
    p.add_argument("--bus-width", type=int, default=DEFAULT_BUS, help=f"tile bus width (rtl); default {DEFAULT_BUS}")
    p.add_argument("--workers", type=int, default=2,
                   help="simulators (each up for the whole run) sharing each token's GEMVs (rtl); default 2")
    p.add_argument("--layers", type=int, default=None, help="run only the first blocks (a reduced model)")
    p.add_argument("--vocab", type=int, default=None, help="keep only the first ids of the vocabulary and head "
                                                           "(a reduced model for quick checks)")
    p.add_argument("--cal-tokens", type=int, default=256, help="calibration tokens (pydoc_data text); default 256")
    p.add_argument("--clock-mhz", type=float, default=900.0, help="clock for the time figures; default 900 "
                                                                   "(Groq TSP, sim/configs/groq-tsp.toml)")
    p.add_argument("--out", default="build/generate", metavar="DIR", help="runs and caches; default build/generate")
    p.add_argument("--keep", action="store_true", help="keep every simulation's input files")
    p.add_argument("--oracle", action="store_true",
                   help="also recompute every GEMV with golden.oracle.gemv_int (slow: seconds per token); the "
                        "integer path is tested equal to it in tests/llm")


def _validate(args):
    if not 1 <= args.tokens <= MAX_TOKENS:
        raise SeptetError(f"--tokens must be in [1, {MAX_TOKENS}], got {args.tokens}")
    if not args.prompt.strip():
        raise SeptetError("--prompt must not be empty")
    if args.group_size < 0 or args.group_size % 2:
        raise SeptetError(f"--group-size must be an even integer >= 2, or 0 for per column, got {args.group_size}")
    if args.cal_tokens < 2:
        raise SeptetError(f"--cal-tokens must be >= 2, got {args.cal_tokens}")
    if args.workers < 1 or args.workers > 8:
        raise SeptetError(f"--workers must be in [1, 8], got {args.workers}")
    if not args.clock_mhz > 0:
        raise SeptetError(f"--clock-mhz must be > 0, got {args.clock_mhz}")


class _Status:
    """One progress line on stderr, rewritten in place on a terminal."""

    def __init__(self):
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def show(self, text: str, force: bool = False):
        now = time.time()
        if self.tty:
            sys.stderr.write("\r\033[K" + text)
            sys.stderr.flush()
        elif force or now - self.last > 10:
            print(text, file=sys.stderr, flush=True)
            self.last = now

    def clear(self):
        if self.tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def run(args):
    _validate(args)
    from golden.format import parse_arithmetic, parse_format
    from golden.quality.intpath import Decoder, prepare_smollm2

    fmt = parse_format(args.format)
    parse_arithmetic(args.arithmetic)
    spec = dict(fmt=fmt.name, arithmetic=args.arithmetic, group_size=args.group_size or None, clip=args.clip,
                perm=not args.no_perm, symmetric=False)
    t0 = time.time()
    out = Path(args.out)
    model, tokenizer, linears = prepare_smollm2(spec, n_layers=args.layers, vocab=args.vocab,
                                                cal_tokens=args.cal_tokens, cache_dir=out / "cache",
                                                log=lambda s: print(s, file=sys.stderr, flush=True))
    timings = {"model load": time.time() - t0}
    print(f"model: SmolLM2-135M-Instruct, {args.layers or model.config.n_layers} blocks, every linear and the head "
          f"in {fmt.name} {args.arithmetic} g{args.group_size or 'col'} clip={args.clip} perm={not args.no_perm} "
          f"({timings['model load']:.1f} s to load and quantize)", file=sys.stderr, flush=True)
    prompt_ids = tokenizer.encode(args.prompt)
    if not prompt_ids:
        raise SeptetError("--prompt encodes to no tokens")
    if max(prompt_ids) >= model.config.vocab_size:
        raise SeptetError(f"--prompt has token id {max(prompt_ids)}, beyond the reduced vocabulary --vocab "
                          f"{model.config.vocab_size}")
    decoder = Decoder(model, linears, n_layers=args.layers, max_len=len(prompt_ids) + args.tokens + 1)
    t_prefill = time.time()
    for tok in prompt_ids[:-1]:
        decoder.step(tok)
    timings["prompt prefill (golden)"] = time.time() - t_prefill
    prefilled = ([k.copy() for k in decoder.cache_k], [v.copy() for v in decoder.cache_v], decoder.pos)
    if args.through == "golden":
        print(args.prompt, end="", flush=True)
        shown = ""

        def show(s, ids, record):
            nonlocal shown
            text = tokenizer.decode(ids)
            print(text[len(shown):], end="", flush=True)
            shown = text

        ids, steps, golden_seconds = _golden_steps(args, decoder, linears, prompt_ids, show)
        print()
        print(f"golden integer path: {args.tokens} tokens, {len(steps[0])} GEMVs per token, {golden_seconds:.1f} s"
              + (" (every GEMV also equal to golden.oracle.gemv_int)" if args.oracle else ""), file=sys.stderr)
        return 0
    return _run_rtl(args, model, tokenizer, linears, decoder, prompt_ids, prefilled, fmt, spec, t0, timings)


def _golden_steps(args, decoder, linears, prompt_ids, on_step):
    """Golden's integer path: the new tokens and every GEMV of each (``on_step(s, ids, record)`` after each)."""
    import numpy as np

    from golden.quality.intpath import check_record

    start = time.time()
    ids, steps = [], []
    current = prompt_ids[-1]
    for s in range(args.tokens):
        record = []
        logits = decoder.step(current, record)
        if args.oracle:
            for rec in record:
                check_record(linears, rec)
        current = int(np.argmax(logits))
        ids.append(current)
        steps.append(record)
        on_step(s, ids, record)
    return ids, steps, time.time() - start


def _run_rtl(args, model, tokenizer, linears, decoder, prompt_ids, prefilled, fmt, spec, t0, timings):
    from golden.quality.intpath import Decoder
    from rtl.params import TileParams
    from tb.llm import ReplayLinear

    config = TileParams(fmt=fmt.name, arithmetic=spec["arithmetic"], lanes=args.lanes, bus_width=args.bus_width,
                        group_size=spec["group_size"])
    status = _Status()
    status.show(f"building the tile {config.build_record()} (cached by content) ...", force=True)
    out = Path(args.out)
    replay_lin = {name: ReplayLinear(lin, name) for name, lin in linears.items()}
    replay = Decoder(model, replay_lin, n_layers=args.layers, max_len=len(prompt_ids) + args.tokens + 1)
    # The prompt's KV cache: prefilled by golden's integer path (the tile runs only the new tokens' GEMVs).
    replay.cache_k, replay.cache_v, replay.pos = prefilled
    # A terminated run unwinds (SystemExit) so that the runner stops the simulators it started.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        return _simulate(args, config, status, out, tokenizer, linears, decoder, prompt_ids, replay, replay_lin, t0,
                         timings)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _simulate(args, config, status, out, tokenizer, linears, decoder, prompt_ids, replay, replay_lin, t0, timings):
    import numpy as np

    from tb.llm import TileRunner
    from tb.outcome import read_progress

    with TileRunner(config, linears, out / "rtl", workers=args.workers, keep=args.keep) as runner:
        status.clear()
        timings["tile build"] = runner.build_seconds
        timings["simulator start"] = runner.start_seconds
        print(f"tile: {config.fmt} {config.arithmetic.value}, {config.lanes} lanes, {config.bus_width}-bit bus, "
              f"group {config.group_size}; build {runner.build_seconds:.1f} s "
              f"({'cached' if runner.build.cached else 'compiled'}); {args.workers} simulators started in "
              f"{runner.start_seconds:.1f} s", file=sys.stderr, flush=True)
        # Golden's integer path first (each GEMV's input comes from it); every token's GEMVs go to the
        # simulators as soon as golden has them, so the simulation overlaps the rest of golden's tokens.
        t_sim = time.time()
        pending = []

        def submit(s, ids, record):
            pending.append(runner.submit(s, record))
            status.show(f"golden integer path: token {s + 1}/{args.tokens} (its {len(record)} GEMVs queued for "
                        f"the tile)")

        ids, steps, golden_seconds = _golden_steps(args, decoder, linears, prompt_ids, submit)
        timings["golden integer path (the simulators already running)"] = golden_seconds
        golden_text = tokenizer.decode(ids)
        n_gemv = len(steps[0])
        total_gemv = n_gemv * len(steps)
        status.clear()
        print(args.prompt, end="", flush=True)
        rtl_ids, shown, cycles_done, gemvs_done, per_token, sim_seconds = [], "", 0, 0, [], 0.0
        current = prompt_ids[-1]
        for s in range(len(steps)):
            futures, groups, dirs = pending.pop(0)
            while not all(f.done() for f in futures):
                running = 0
                for d, f in zip(dirs, futures):
                    line = "" if f.done() else read_progress(d)
                    if line.startswith("cycle "):
                        running += int(line.split()[1])
                elapsed = time.time() - t_sim
                status.show(f"token {s + 1}/{len(steps)} | GEMVs {gemvs_done}/{total_gemv} | "
                            f"{(cycles_done + running) / 1e6:.2f} M cycles | "
                            f"{(cycles_done + running) / max(elapsed, 1e-9) / 1e3:.0f} k cycles/s | {elapsed:.0f} s")
                time.sleep(0.5)
            result = runner.collect(steps[s], futures, groups)
            if not result.passed or any(y is None for y in result.ys):
                status.clear()
                print()
                raise SeptetError(f"token {s + 1}: the tile disagreed with golden or its run failed:\n"
                                  f"{result.report}\n(runs in {dirs[0].parent})")
            for rec, y in zip(steps[s], result.ys):
                if not np.array_equal(y, rec.y):          # the scoreboard checked it already; the values read back too
                    raise SeptetError(f"token {s + 1}: {rec.name}: the tile's result read back differs from golden")
                replay_lin[rec.name].queue.append((rec.a, y))
            logits = replay.step(current)
            current = int(np.argmax(logits))
            rtl_ids.append(current)
            cycles_done += sum(result.cycles)
            gemvs_done += len(result.cycles)
            sim_seconds += result.sim_seconds
            per_token.append(sum(result.cycles))
            text = tokenizer.decode(rtl_ids)
            status.clear()
            print(text[len(shown):], end="", flush=True)
            shown = text
        wall = time.time() - t_sim
    status.clear()
    print()
    rtl_text = tokenizer.decode(rtl_ids)
    if rtl_ids != ids or rtl_text != golden_text:
        raise SeptetError("the text from the tile's results differs from golden's integer path")
    timings["tile simulation after golden (wall, with the replay decoder)"] = wall - golden_seconds
    _summary(args, config, runner, linears, steps, per_token, cycles_done, gemvs_done, wall, sim_seconds,
             time.time() - t0, timings)
    return 0


def _summary(args, config, runner, linears, steps, per_token, cycles, gemvs, wall, sim_seconds, total, timings):
    import math

    from sim.config import load_chip
    from sim.model import Measurement, tile_scaling

    f = args.clock_mhz * 1e6
    cyc_token = cycles / len(per_token)
    first = steps[0]
    weights = sum(linears[r.name].qm.K * linears[r.name].qm.N for r in first)
    stream_bits = sum(runner.packed(r.name).nbits for r in first)
    ideal = sum(math.ceil(runner.packed(r.name).nbits / config.bus_width) for r in first)
    print(f"every GEMV bit-exact: {gemvs} GEMVs ({len(first)} per token) over {len(per_token)} tokens; "
          f"the text from the tile's results equals golden's integer path", file=sys.stderr)
    print(f"tile cycles per token: {cyc_token:,.0f} ({weights / 1e6:.1f} M weights, {stream_bits / weights:.3f} "
          f"stream bits per weight, bus efficiency {ideal / cyc_token:.4f})", file=sys.stderr)
    print(f"simulated {cycles / 1e6:.1f} M cycles in {wall:.1f} s wall ({cycles / wall / 1e3:.0f} k cycles/s over "
          f"{args.workers} simulators; simulators busy {sim_seconds:.1f} s); whole command {total:.1f} s for "
          f"{len(per_token)} tokens", file=sys.stderr)
    other = total - sum(timings.values())
    print("time: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items())
          + f", the rest {other:.1f} s (wall clock on this machine, shared or not)", file=sys.stderr)
    print(f"one tile at {args.clock_mhz:g} MHz: {cyc_token / f * 1e3:.3f} ms per token = {f / cyc_token:.1f} tok/s "
          f"(weights only: attention, norms and the KV cache are not counted)", file=sys.stderr)
    if (config.lanes, config.bus_width) != (16, 64):
        from dataclasses import replace

        from golden.pack import StreamLayout

        latency = replace(config, lanes=16, bus_width=64).fixed_latency
        default = 0
        for r in first:
            qm = linears[r.name].qm
            default += math.ceil(StreamLayout(qm.fmt, qm.arithmetic, 16, qm.K, qm.N, qm.group_size).nbits / 64)
            default += latency
        print(f"the project's default tile (16 lanes, 64-bit bus), by rtl/TILE.md's bus-bound formula "
              f"ceil(bits/W) + {latency} (asserted exactly in tests/rtl, not simulated here): {default:,} cycles "
              f"per token = {f / default:.1f} tok/s at {args.clock_mhz:g} MHz", file=sys.stderr)
    chip = load_chip("groq-tsp")
    meas = Measurement(bus_efficiency=ideal / cyc_token, latency_cycles=runner.tile.fixed_latency or 0,
                       bus_width=config.bus_width, lanes=config.lanes, source="this run", provisional=False,
                       runs=())
    scale = tile_scaling(chip, meas, stream_bits / weights)
    tiles = scale["tiles_per_chip"]
    # Each GEMV's column blocks spread over the chip's tiles, GEMVs one after another (an assumption: the
    # tiles of one GEMV stream in parallel, nothing overlaps between GEMVs).
    per_gemv = []
    for r in first:
        ps = runner.packed(r.name)
        blocks = ps.layout.n_blocks
        block_cycles = math.ceil(ps.nbits / blocks / config.bus_width)
        per_gemv.append(math.ceil(blocks / tiles) * block_cycles + meas.latency_cycles)
    chip_cycles = sum(per_gemv)
    print(f"chip model ({chip.name}, {tiles} tiles of this width at {chip.clock_hz / 1e6:.0f} MHz from its "
          f"{chip.sram_bandwidth_bytes_per_s / 1e12:.0f} TB/s SRAM): {chip_cycles:,} cycles per token = "
          f"{chip.clock_hz / chip_cycles:,.0f} tok/s (assumption: each GEMV's column blocks spread over the tiles, "
          f"GEMVs in series, fixed latency {meas.latency_cycles} each)", file=sys.stderr)
