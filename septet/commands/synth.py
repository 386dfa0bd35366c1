"""``septet synth``: synthesise the tile for ECP5 and report its area per block (and Fmax with ``--pnr``).

``--compare`` runs the comparison users need side by side: the given format (4+3) against
4+4 on the same lanes and bus, and against 4+4 on the bus width that gives 4+4 the same
cycles per GEMV; it writes the three records, the ratios and the goals to one JSON.
"""

from __future__ import annotations

import json
import sys

from septet.cli import SeptetError
from septet.commands.verilog import add_tile_arguments


def add_arguments(p):
    add_tile_arguments(p)
    p.add_argument("--pnr", action="store_true",
                   help="also place and route (nextpnr-ecp5, LFE5U-85F) for Fmax and the critical path; "
                        "minutes per 16-lane tile")
    p.add_argument("--freq", type=float, default=125.0, metavar="MHZ", help="clock target for --pnr; default 125")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed for --pnr; default 1")
    p.add_argument("--seeds", metavar="S,S,...",
                   help="with --pnr: place and route with each of these seeds too (e.g. 1,2,3) and report the "
                        "spread of Fmax; the first is the record's seed and the Fmax goal is judged on the worst")
    p.add_argument("--jobs", type=int, default=1,
                   help="with --seeds: place-and-route runs at once (one nextpnr process each); default 1")
    p.add_argument("--no-timing-ripup", dest="timing_ripup", action="store_false",
                   help="with --pnr: route without router2's timing-driven rip-up (the flow before issue 12's "
                        "sixth round), to compare routes of the same netlist and seeds")
    p.add_argument("--lut4-only", dest="wide_luts", action="store_false",
                   help="map LUTs to LUT4s only (abc -lut 4, the flow before issue 12's seventh round) instead of "
                        "LUT4s joined by the slice's wide-function multiplexers (abc -lut 4:7), to compare")
    p.add_argument("--compare", action="store_true",
                   help="also synthesise 4+4 on the same bus and 4+4 on the bus of equal throughput; ratios")
    p.add_argument("--k", type=int, default=4096, help="GEMV K for cycles per GEMV in the comparison; default 4096")
    p.add_argument("--n", type=int, default=64, help="GEMV N for cycles per GEMV in the comparison; default 64")
    p.add_argument("--json", action="store_true", help="print the JSON record to stdout (the summary to stderr)")
    p.add_argument("--out", default="build/synth", metavar="DIR", help="work directory; default build/synth")
    p.add_argument("--save", metavar="FILE", help="also write the JSON record to FILE (e.g. sim/data/synth_default.json)")


def run(args):
    from rtl.synth import SynthError, compare, summary_lines, synthesize, write_json

    params = dict(fmt=args.format, arithmetic=args.arithmetic, lanes=args.lanes, bus_width=args.bus_width,
                  group_size=args.group_size, acc_width=args.acc_width, max_k=args.max_k, requant=args.requant)
    if args.seed < 0:
        raise SeptetError(f"--seed must be an integer >= 0, got {args.seed}")
    seed, extra_seeds = args.seed, ()
    if args.seeds is not None:
        try:
            seeds = [int(s) for s in args.seeds.split(",")]
        except ValueError:
            seeds = []
        if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
            raise SeptetError(f"--seeds must be distinct integers >= 0 separated by commas (e.g. 1,2,3), "
                              f"got {args.seeds!r}")
        if not args.pnr:
            raise SeptetError("--seeds needs --pnr (the seeds are nextpnr's placement seeds)")
        seed, extra_seeds = seeds[0], tuple(seeds[1:])
    if not args.timing_ripup and not args.pnr:
        raise SeptetError("--no-timing-ripup needs --pnr (it is an option of nextpnr's router)")
    if args.jobs < 1:
        raise SeptetError(f"--jobs must be an integer >= 1, got {args.jobs}")
    if args.freq <= 0:
        raise SeptetError(f"--freq must be > 0 MHz, got {args.freq}")
    if args.k < 2 or args.n < 1:
        raise SeptetError(f"--k must be >= 2 and --n >= 1, got --k {args.k} --n {args.n}")
    # Only the opt-outs are passed: the flow's defaults are rtl.synth.PNR_TIMING_RIPUP and
    # rtl.synth.WIDE_LUTS, stated once.
    flow_opt_outs = {} if args.timing_ripup else {"timing_ripup": False}
    if not args.wide_luts:
        flow_opt_outs["wide_luts"] = False
    out = sys.stderr if args.json else sys.stdout
    try:
        if args.compare:
            record = compare(args.out, pnr=args.pnr, freq_mhz=args.freq, seed=seed, extra_seeds=extra_seeds,
                             jobs=args.jobs, K=args.k, N=args.n, **flow_opt_outs,
                             **params)
        else:
            record = synthesize(args.out, pnr=args.pnr, freq_mhz=args.freq, seed=seed, extra_seeds=extra_seeds,
                                jobs=args.jobs, **flow_opt_outs, **params)
    except SynthError as exc:
        raise SeptetError(str(exc)) from None
    record["command"] = "septet synth " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["synth"] else None
    for line in summary_lines(record):
        print(line, file=out)
    if args.save:
        write_json(args.save, record)
        print(f"wrote {args.save}", file=out)
    if args.json:
        print(json.dumps(record, indent=2))
    return 0
