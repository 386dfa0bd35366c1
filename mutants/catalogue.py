"""The mutant catalogue: realistic one-line bugs of ``rtl/``, each a (file, anchor, replacement) rule.

A rule names its file, a regular expression (``anchor``) that must match exactly once in that
file, and the replacement of the match (``re`` syntax, so ``\\g<1>`` reuses a group).  Anchors are
written against lines of behaviour (a comparison, an operand, a reset value), not line numbers;
after a rewrite of a block an anchor that no longer matches makes the mutant STALE (reported
loudly, never counted as killed) so the catalogue can be refreshed.

``tests`` is the targeted subset a mutant runs against (fast first, stopping at the first
failure); ``equivalent`` gives the reason when a mutant cannot change any observable behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Mutant", "CATALOGUE", "TEST_SETS"]

#: Targeted test subsets (pytest node ids / paths): the Amaranth-simulator tests of the block and the
#: tile (a few tens of seconds each); the Verilator and formal tests are left out for speed.
TEST_SETS = {
    "gearbox": ("tests/rtl/test_gearbox.py", "tests/rtl/test_corner_cases.py",
                "tests/rtl/test_tile.py", "tests/rtl/test_invariants.py"),
    "decode": ("tests/rtl/test_blocks.py", "tests/rtl/test_tile.py"),
    "lanes": ("tests/rtl/test_blocks.py", "tests/rtl/test_corner_cases.py", "tests/rtl/test_tile.py"),
    "correct": ("tests/rtl/test_blocks.py", "tests/rtl/test_corner_cases.py", "tests/rtl/test_tile.py"),
    "requant": ("tests/rtl/test_blocks.py", "tests/rtl/test_corner_cases.py", "tests/rtl/test_tile.py"),
    # The ECP5 DSP primitives exist only in the Verilog the synthesis elaborates: its Verilator test.
    "dsp": ("tests/tb/test_dsp_primitives.py",),
    "drain": ("tests/rtl/test_blocks.py", "tests/rtl/test_corner_cases.py", "tests/rtl/test_tile.py"),
    "tile": ("tests/rtl/test_corner_cases.py", "tests/rtl/test_tile.py", "tests/rtl/test_invariants.py"),
}


@dataclass(frozen=True)
class Mutant:
    """One one-line bug: ``anchor`` (a regex matching once in ``file``) replaced by ``replacement``."""

    name: str
    file: str
    anchor: str
    replacement: str
    description: str
    tests: str
    equivalent: "str | None" = None


def _m(name, file, anchor, replacement, description, tests, equivalent=None):
    return Mutant(name, file, anchor, replacement, description, tests, equivalent)


G, D, L, C, R, T = "rtl/gearbox.py", "rtl/decode.py", "rtl/lanes.py", "rtl/correct.py", "rtl/requant.py", "rtl/tile.py"
DR, E, P, RG = "rtl/drain.py", "rtl/epilogue.py", "rtl/params.py", "rtl/registers.py"

CATALOGUE = [
    # -- gearbox ----------------------------------------------------------------------------------
    _m("gearbox-ready-threshold", G, r"free >= Wu - delta\)", "free >= Wu - delta - 1)",
       "input ready one unit too early: a word can overflow the buffer (issue 11 survivor)", "gearbox"),
    _m("gearbox-ending-le", G, r"free > Cu - size - Wu - delta for", "free >= Cu - size - Wu - delta for",
       "end of GEMV seen when exactly W bits remain (issue 11 survivor)", "gearbox"),
    _m("gearbox-valid-strict", G, r"free <= Cu - size - delta for", "free < Cu - size - delta for",
       "a record is offered only once one unit more than it is held", "gearbox"),
    _m("gearbox-append-at-count", G, r"taken_word\.eq\(state_at\(free, s - Wu\)\)",
       "taken_word.eq(state_at(free, -Wu))",
       "a word taken with a record is counted, the record is not", "gearbox"),
    _m("gearbox-count-short", G, r"kept_word\.eq\(state_at\(free, -Wu\)\)", "kept_word.eq(state_at(free, 1 - Wu))",
       "one unit of a word taken alone is forgotten", "gearbox"),
    _m("gearbox-flush-keeps-last", G, r"flushed=state_init_value\)",
       'flushed=state_layout.const({**state_init, "got_last": 1, "ready": 0}).as_value().value)',
       "the flush does not clear the end-of-stream mark: the next GEMV is refused", "gearbox"),
    _m("gearbox-ready-after-last", G, r"~got_last_next & view\.room", "view.room",
       "words of the next stream are taken before the flush", "gearbox"),
    _m("gearbox-remain-no-take", G, r"taken\.eq\(state_at\(free, s\)\)", "taken.eq(state_at(free, 0))",
       "a taken record's bits are still counted", "gearbox"),
    _m("gearbox-never-last", G, r"got_last_after = \(got_last, self\.i\.payload\.last\)",
       "got_last_after = (got_last, Const(0, 1))",
       "the last word is never noticed: no GEMV ever ends (a hang, caught by the cycle budget)", "gearbox"),
    _m("gearbox-flush-without-take", G,
       r"self\.if_kept\.eq\(Mux\(word, self\.kept_word, self\.kept\)\),",
       "self.if_kept.eq(Mux(self.restart & self.ending, self.flushed, Mux(word, self.kept_word, self.kept))),",
       "the flush discards the buffer even when no record is taken", "gearbox"),
    _m("gearbox-restart-select-ignored", G, r"return Mux\(self\.restart, if_restart, otherwise\)", "return otherwise",
       "a record taken with restart (the stream not ending) is followed by next_select's width, not the first's",
       "gearbox"),
    _m("gearbox-shift-one-step", G, r"step = g << k\n", "step = (g << k) if k else 0\n",
       "the shifter ignores the lowest bit of the offset: records read one unit off", "gearbox"),
    _m("gearbox-record-reloaded-while-offered", G, r"with m\.If\(~self\.valid \| self\.ready\):",
       "with m.If(1):", "a record offered and not taken is replaced by the one after it", "gearbox"),
    _m("gearbox-load-not-past-offered", G, r"free \+ \(delta \+ size\), free \+ delta\)",
       "free + delta, free + delta)", "the record register reloads the record just taken", "gearbox"),
    _m("gearbox-select-not-followed", G, r"named = self\.next_select\b",
       "named = select", "a record taken keeps the old width for the next one instead of next_select's",
       "gearbox"),
    _m("gearbox-empty-full", G, r'"valid": 0, "tail": 1,', '"valid": 1, "tail": 1,',
       "after a reset or a flush a record is offered before its bits arrived", "gearbox"),
    # -- decode -----------------------------------------------------------------------------------
    _m("decode-odd-unshifted", D, r"self\.odd\.eq\(self\.pair\.odd << self\.odd_shift\)",
       "self.odd.eq(self.pair.odd)", "shared grid: the odd code is not put on the even grid", "decode"),
    _m("decode-even-from-odd", D, r"self\.even\.eq\(self\.pair\.even\)", "self.even.eq(self.pair.odd)",
       "the even code is read from the odd field", "decode"),
    # -- lanes ------------------------------------------------------------------------------------
    _m("lanes-odd-act", L, r"odd = _bit_pair_sums\(act\[1\], decode\.odd\)", "odd = _bit_pair_sums(act[0], decode.odd)",
       "the odd row is multiplied by the even activation", "lanes"),
    _m("lanes-sa-no-restart", L, r"sa\.eq\(Mux\(sa_restart, 0, sa\) \+ act_b\[t\]\)", "sa.eq(sa + act_b[t])",
       "the activation sums run on across groups", "lanes"),
    _m("lanes-acc-restart-one", L, r"kept\.append\(Mux\(restart\.q, 0, acc\[lo:lo \+ RESTART_FANOUT\]\)\)",
       "kept.append(Mux(restart.q, int(lo == 0), acc[lo:lo + RESTART_FANOUT]))", "a group's sum starts at 1", "lanes"),
    _m("lanes-valid-on-block", L, r"close_b\.eq\(beat_a2 & op2\.group_end\)", "close_b.eq(beat_a2 & op2.block_end)",
       "only a block's last group reaches the scaler", "lanes"),
    _m("lanes-shared-sa-minus", L, r"\[act_a2\[0\] \+ act_a2\[1\]\]", "[act_a2[0] - act_a2[1]]",
       "shared grid: the odd activations are subtracted from the activation sum", "lanes"),
    _m("lanes-block-end-from-group", L, r"marks_b\.block_end\.eq\(op2\.block_end\)",
       "marks_b.block_end.eq(op2.group_end)", "every group is taken for the end of a block", "lanes"),
    _m("lanes-header-latch-unqualified", L, r"header_a = va & op\.header", "header_a = op.header",
       "the header register follows the operation register while not valid", "lanes",
       equivalent="an invalid operation marked HEADER is either the block tests' repeated last header (the "
                  "same value again) or the tile's sequencer waiting for a header's last chunk, at least two "
                  "cycles after the previous group's closing beat, whose header was copied to the output "
                  "register at that beat's stage C; the valid last chunk latches over the garbage before "
                  "the group's own closing beat"),
    _m("lanes-idle-act-not-zeroed", L, r"beat_a = va & ~op\.header", "beat_a = ~op.header",
       "an idle cycle's activations enter the products: the sums take a stale beat again", "lanes"),
    _m("lanes-idle-products", L, r"reg\.eq\(Mux\(beat_a2, x, 0\)\)", "reg.eq(x)",
       "a lane's products are not zeroed outside beats: an idle cycle adds the last beat again", "lanes"),
    _m("lanes-capture-every-beat", L, r"self\.capture_next\.eq\(close\)", "self.capture_next.eq(beat_a2)",
       "a lane's capture enable follows every beat: the drain takes sums in the middle of a group", "lanes"),
    _m("lanes-restart-early", L, r"restart_next\.eq\(close \| fresh\)", "restart_next.eq(self.closing | fresh)",
       "a lane's restart flag comes a cycle early: a group's closing beat starts the next group's sums", "lanes"),
    _m("lanes-restart-not-after-reset", L, r"restart_next\.eq\(close \| fresh\)", "restart_next.eq(close)",
       "no restart in the second cycle after a reset: stage B's products of the cycle before a one-cycle reset "
       "enter the next GEMV's first group", "lanes"),
    # -- correction and group scaling -------------------------------------------------------------
    _m("correct-sign", C, r"acc2\[t\] - zs2\[t\]", "acc2[t] + zs2[t]",
       "zero-point correction with the wrong sign (issue 11's stale-Verilog example)", "correct"),
    _m("correct-mant-from-zero", C, r"mant1\[t\]\.eq\(slot\.mant\)", "mant1[t].eq(slot.zero)",
       "the zero point is used as the group scale", "correct"),
    _m("correct-no-restart", C, r"ring\[L - 1\]\.eq\(0\)", "ring[L - 1].eq(y)",
       "the wide accumulator is not restarted at a block start", "correct"),
    _m("correct-acc-narrow", C, r"Signal\(signed\(p\.min_acc_width\), name=f\"wide_l",
       "Signal(signed(p.min_acc_width - 1), name=f\"wide_l",
       "the wide accumulator one bit narrower (issue 11 survivor)", "correct"),
    _m("correct-valid-every-group", C, r"valid_ahead\.eq\(valid\[LATENCY - 3\] & mark\[LATENCY - 3\]\.block_end\)",
       "valid_ahead.eq(valid[LATENCY - 3])",
       "a result leaves after every group", "correct"),
    _m("correct-last-from-block-end", C, r"mark\[0\]\.end\.eq\(common\.last\)", "mark[0].end.eq(common.block_end)",
       "every block result is marked last", "correct"),
    _m("correct-corr-narrow", C, r"Signal\(signed\(w\), name=f\"corr_s",
       "Signal(signed(w - 1), name=f\"corr_s", "the corrected sum one bit narrower than its bound",
       "correct"),
    _m("correct-zero-operand-late", C, r'zero_next = self\.lane_next\.header\[f"s\{t\}"\]\.zero',
       'zero_next = slot.zero', "the z * Σa DSPs load the drain's output register instead of its next value: "
       "each lane's zero point a cycle late", "correct"),
    _m("correct-zero-offset-half", C, r"\(common\.sa\[t\] << e\)", "(common.sa[t] << (e - 1))",
       "the zero point's DSP offset is taken off at half its weight", "correct"),
    _m("correct-zero-sum-narrow", C, r"zs2 = \[Signal\(signed\(w\)",
       "zs2 = [Signal(signed(w - 1)", "z * Σa kept modulo 2**(w-1) instead of 2**w", "correct"),
    _m("correct-ring-skipped-with-groups", C, r"if p\.group_size is None:\n(\s+)m\.d\.comb \+= y\.eq\(sum6\)",
       "if True:\n\\g<1>m.d.comb += y.eq(sum6)", "the per-column shortcut (no ring) also with groups: groups not summed",
       "correct"),
    _m("correct-partial-products-unshifted", C, r"by_offset\.setdefault\(low, \[\]\)",
       "by_offset.setdefault(0, [])", "m * corr's partial products summed without their offsets", "correct"),
    _m("params-slot-sum-narrow", P, r"widths = tuple\(_signed_bits\(-ACT_MIN",
       "widths = tuple(-1 + _signed_bits(-ACT_MIN", "the slot sums handed over one bit narrower than their bound",
       "correct"),
    _m("params-act-sum-narrow", P, r"return max\(_signed_bits\(-ACT_MIN \* self\.slot_rows - 1\)",
       "return -1 + max(_signed_bits(-ACT_MIN * self.slot_rows - 1)", "Σa handed over one bit narrower than its bound",
       "correct"),
    _m("params-slot-rows-half-group", P, r"rows = min\(rows, self\.group_size\)",
       "rows = min(rows, self.group_size // 2)", "the sums sized for half a group", "correct"),
    # -- the ECP5 DSP primitives of the synthesis flow (rtl/correct.py registered_product) ----------
    _m("dsp-inputs-unregistered", C, r'clock_source = "CLK0" if register_inputs else "NONE"',
       'clock_source = "NONE"', "the MULT18X18D's input registers bypassed: the product a cycle early", "dsp"),
    _m("dsp-output-unregistered", C, r'p_REG_OUTPUT_CLK="CLK0"', 'p_REG_OUTPUT_CLK="NONE"',
       "the MULT18X18D's output register bypassed: the product a cycle early", "dsp"),
    _m("dsp-operand-unsigned", C, r"i_SIGNEDA=Const\(1\)", "i_SIGNEDA=Const(0)",
       "the top chunk enters the MULT18X18D as unsigned: negative partial products wrong", "dsp"),
    _m("dsp-product-misaligned", C, r"natural = p36\[:len\(a\) \+ len\(b_unsigned\)\]",
       "natural = p36[1:len(a) + len(b_unsigned) + 1]", "the MULT18X18D's product read one bit off", "dsp"),
    # -- requantization ---------------------------------------------------------------------------
    _m("requant-no-rounding", R, r"rounded\.eq\(\(q \+ 1\)\[1:_KEEP \+ 1\]\)", "rounded.eq(q[1:_KEEP + 1])",
       "the rounding half is not added (rounds towards minus infinity)", "requant"),
    _m("requant-q255-not-saturated", R, r"in_range = fits4 & ~\(q4\.all\(\) & ~sign4\)", "in_range = fits4",
       "q = 255 rounds to 128, which wraps to -128 instead of saturating", "requant"),
    _m("requant-clamp-min-to-max", R, r"Mux\(sign4, OUT_MIN,", "Mux(sign4, OUT_MAX,",
       "negative saturation gives +127", "requant"),
    _m("requant-max-126", R, r"Mux\(sign4, OUT_MIN, OUT_MAX\)", "Mux(sign4, OUT_MIN, OUT_MAX - 1)",
       "positive saturation of a large result at 126", "requant"),
    _m("requant-no-last", R, r"self\.o\.payload\.last\.eq\(marks\[last\]\[0\]\)", "self.o.payload.last.eq(0)",
       "requantized lanes never carry last: no result beat (a hang, caught by the cycle budget)", "requant"),
    _m("requant-shift-one-less", R, r"shift1\.eq\(shift0\)", "shift1.eq(shift0 - 1)",
       "the arithmetic shift one bit short", "requant"),
    _m("requant-not-doubled", R, r"doubled = Cat\(Const\(0, 1\), prod2\)", "doubled = prod2",
       "the product is not doubled before the shift by s: the rounding bit is lost", "requant"),
    _m("requant-fits-ignored", R, r"in_range = fits4 &", "in_range = 1 &",
       "a result too large for the kept bits is not saturated", "requant"),
    _m("requant-keep-short", R, r"_KEEP = OUT_BITS\n", "_KEEP = OUT_BITS - 1\n",
       "the shift keeps too few bits to tell a saturating value", "requant"),
    # -- lane drain, gather, epilogue wiring, interval --------------------------------------------
    _m("drain-gate-not-cleared", RG, r"m\.d\.sync \+= q\.eq\(0\)         # after its turn",
       "m.d.sync += q.eq(q)         # after its turn",
       "a lane's gated register keeps its value after its turn: lanes are ORed together", "drain"),
    _m("drain-last-early", DR, r"self\.o\.payload\.last\.eq\(turn\[L - 1\]\)", "self.o.payload.last.eq(turn[0])",
       "lane 0 is marked as the group's last lane", "drain"),
    _m("drain-common-live", DR, r"self\.common_next\.eq\(common\)", "self.common_next.eq(self.i.payload.common)",
       "the shared fields are read from the live input instead of the captured group", "drain"),
    _m("gather-no-end", DR, r"self\.o\.payload\.last\.eq\(self\.i\.payload\.end\)", "self.o.payload.last.eq(0)",
       "no result beat carries last (a hang, caught by the cycle budget)", "drain"),
    _m("gather-order", DR, r"source = beat\[lane \+ 1\] if lane \+ 1 < L - 1 else self\.i\.payload\.data",
       "source = beat[lane - 1] if lane > 0 else self.i.payload.data",
       "the gather writes new lanes at the wrong end", "drain"),
    _m("epilogue-block-end-from-last", E, r"into\.common\.block_end\.eq\(sums\.block_end\)",
       "into.common.block_end.eq(sums.last)", "only the GEMV's final block is closed", "drain"),
    _m("params-interval-short", P, r"        return self\.lanes\n", "        return max(1, self.lanes - 1)\n",
       "group ends one cycle closer than the drain needs", "tile"),
    # -- sequencer, credits, reset ----------------------------------------------------------------
    _m("tile-params-not-awaited", T, r"closing_ok = go_last & \(self\.params_in\.valid if p\.requant else 1\)",
       "closing_ok = go_last", "a block closes without waiting for its params beat (issue 11 survivor)", "tile"),
    _m("tile-pair-counter-reset-less", T, r"pair_in_group = Signal\(range\(p\.group_pairs\)\)",
       "pair_in_group = Signal(range(p.group_pairs), reset_less=True)",
       "the pair-in-group counter survives a reset (issue 11 survivor)", "tile"),
    _m("tile-group-early", T, r"pair_in_group == p\.group_pairs - 2\)", "pair_in_group == p.group_pairs - 3)",
       "a group closes one pair early", "tile"),
    _m("tile-credit-le", T, r"has_credit_next\.eq\(in_flight_next < p\.output_queue_depth\)",
       "has_credit_next.eq(in_flight_next <= p.output_queue_depth)", "one block more than the queue holds may be issued",
       "tile"),
    _m("tile-credit-never-returned", T, r"in_flight_next\.eq\(in_flight \+ block_issued - result_taken\)",
       "in_flight_next.eq(in_flight + block_issued)", "credits are never returned (a hang after a few blocks)", "tile"),
    _m("tile-credits-reset-less", T, r"in_flight = Signal\(range\(p\.output_queue_depth \+ 2\)\)",
       "in_flight = Signal(range(p.output_queue_depth + 2), reset_less=True)",
       "credits of results dropped by a reset are never returned", "tile"),
    _m("tile-last-every-block", T, r"op\.last\.eq\(ending\)", "op.last.eq(block_end)",
       "every block result carries tlast", "tile"),
    _m("tile-no-flush", T, r"gear\.restart\.eq\(block_end\)", "gear.restart.eq(block_end & ~gear.ending)",
       "the final word's zero fill is not discarded", "tile"),
    _m("tile-header-without-fire", T, r"with m\.If\(fire & group_end\):(\n\s+m\.d\.comb \+= in_header_next\.eq\(1\))",
       "with m.If(group_end):\\g<1>",
       "the sequencer goes to HEADER when a group's last beat is offered, not taken", "tile"),
    _m("tile-params-ready-without-credit", T, r"self\.params_in\.ready\.eq\(fire & block_end\)",
       "self.params_in.ready.eq(gear.o.valid & self.act.valid & block_end)",
       "the params beat is taken while its block waits for a credit", "tile"),
    _m("tile-act-ready-without-beat", T, r"self\.act\.ready\.eq\(gear\.o\.valid & may_go\)",
       "self.act.ready.eq(may_go)", "an activation pair is taken without its beat", "tile"),
    _m("tile-first-record-beat", T, r"in_header = Signal\(init=1\)", "in_header = Signal(init=0)",
       "after reset the first record is read as a beat", "tile"),
]
