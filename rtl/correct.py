"""Zero-point correction and group scaling into the wide accumulator, one lane per cycle."""

from __future__ import annotations

from amaranth.hdl import Assert, Cat, ClockSignal, Const, Instance, Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.format import SCALE_BITS
from rtl.drain import drain_output_layout
from rtl.layouts import group_common_layout, lane_result_layout, lane_sums_layout, requant_layout
from rtl.params import TileParams

__all__ = ["GroupScaler", "Ecp5DspPlatform", "uses_dsp_primitives", "registered_product", "split_parts",
           "split_product", "shift_add", "interleaved_sum", "LATENCY", "ZERO_OPERAND_BITS"]

#: Cycles from a lane entering the scaler to its result on ``o``: ``z * Σa`` as DSP partial products, their
#: sum, the correction, ``m * corr`` as DSP partial products, their sums over the slots, the shift-add of those
#: (registered), the wide add with groups (combinational into ``o``).
LATENCY = 6
#: Width the zero point enters its DSP with (``z + 2**(ZERO_OPERAND_BITS - 1)``): the synthesis flow maps a
#: multiply to a DSP only when both operands have at least ``rtl.synth.DSP_MIN_WIDTH`` bits, and the offset's
#: compensation ``Σa * 2**(ZERO_OPERAND_BITS - 1)`` costs an adder only over the bits above the offset, so the
#: offset sits as high as an unsigned 18x18 operand allows (17 bits).
ZERO_OPERAND_BITS = 17

#: Width of the low, unsigned part of an operand split for an 18x18 DSP (17 bits + a zero sign bit).
DSP_CHUNK = 17


def uses_dsp_primitives(platform) -> bool:
    """Whether ``platform`` asks for ECP5 ``MULT18X18D`` instances (see :class:`Ecp5DspPlatform`)."""
    return bool(getattr(platform, "ecp5_mult18x18d", False))


class Ecp5DspPlatform:
    """The platform object ``rtl/synth.py`` elaborates with: multiplies as ECP5 ``MULT18X18D`` primitives.

    Elaborated with it, :func:`registered_product` instantiates a ``MULT18X18D`` whose own input and
    output registers are the flip-flops the behavioural version puts around ``*`` (yosys maps a
    ``$mul`` to a ``MULT18X18D`` with every register bypassed and has no pass that absorbs
    adjacent flip-flops into it).  Without it (simulation, ``septet verilog``) the same flip-flops
    and a plain ``*``: the generated Verilog simulates anywhere.
    """

    ecp5_mult18x18d = True


def registered_product(m, domain, a, b_unsigned, name, *, platform=None, register_inputs=False):
    """``a * b`` registered at the output (and at the inputs with ``register_inputs``): one 18x18 DSP.

    ``a`` is signed (at most 18 bits) or unsigned (at most 17 bits), ``b`` unsigned (at most 17
    bits); both enter the DSP as signed 18-bit operands.  Behavioural unless
    :func:`uses_dsp_primitives` (``platform``): then a ``MULT18X18D`` with ``REG_OUTPUT_CLK`` (and
    ``REG_INPUTA_CLK``/``REG_INPUTB_CLK``) on ``domain``'s clock, the same cycles.  Returns the
    registered product, ``signed(len(a) + len(b) + 1)``.
    """
    a_signed = a.shape().signed
    if len(a) > (18 if a_signed else DSP_CHUNK) or len(b_unsigned) > DSP_CHUNK or b_unsigned.shape().signed:
        raise ValueError(f"registered_product {name}: operands of {len(a)} and {len(b_unsigned)} bits do not fit "
                         f"an 18x18 signed multiply (a: at most 18 bits signed or 17 unsigned; b: at most 17 unsigned)")
    product = Signal(signed(len(a) + len(b_unsigned) + 1), name=name, reset_less=True)
    stmts = getattr(m.d, domain)
    if not uses_dsp_primitives(platform):
        if register_inputs:
            a_in = Signal.like(a, name=f"{name}_a", reset_less=True)
            b_in = Signal.like(b_unsigned, name=f"{name}_b", reset_less=True)
            stmts += [a_in.eq(a), b_in.eq(b_unsigned)]
            a, b_unsigned = a_in, b_in
        stmts += product.eq(a * b_unsigned)
        return product
    a18 = Signal(signed(18), name=f"{name}_a18")
    b18 = Signal(signed(18), name=f"{name}_b18")
    p36 = Signal(signed(36), name=f"{name}_p36")
    # The product's own width (as the behavioural a * b has it), so that synthesis sees the same constant
    # high bits: an unsigned chunk's product is zero-extended, a signed one's sign-extended.
    natural = p36[:len(a) + len(b_unsigned)]
    m.d.comb += [a18.eq(a), b18.eq(b_unsigned), product.eq(natural.as_signed() if a_signed else natural)]
    clock_source = "CLK0" if register_inputs else "NONE"
    m.submodules[f"{name}_dsp"] = Instance(
        "MULT18X18D",
        p_REG_INPUTA_CLK=clock_source, p_REG_INPUTB_CLK=clock_source, p_REG_INPUTC_CLK="NONE",
        p_REG_PIPELINE_CLK="NONE", p_REG_OUTPUT_CLK="CLK0", p_GSR="DISABLED", p_RESETMODE="SYNC",
        i_CLK0=ClockSignal(domain), i_CE0=Const(1), i_RST0=Const(0),
        i_SIGNEDA=Const(1), i_SIGNEDB=Const(1), i_SOURCEA=Const(0), i_SOURCEB=Const(0),
        **{f"i_A{k}": a18[k] for k in range(18)}, **{f"i_B{k}": b18[k] for k in range(18)},
        **{f"i_C{k}": Const(0) for k in range(18)}, **{f"o_P{k}": p36[k] for k in range(36)},
    )
    return product


def split_parts(m, domain, a, b_unsigned, name, *, platform=None, register_inputs=False):
    """Register the partial products of ``a * b`` (``b`` unsigned, at most 17 bits), one 18x18 DSP each.

    ``a`` (signed) is cut into 17-bit unsigned chunks and a signed top chunk; each chunk times
    ``b`` fits one MULT18X18D and is registered at its output (and each chunk and ``b`` at its
    inputs with ``register_inputs``: :func:`registered_product`).  Returns ``[(low, register)]``:
    ``a * b == sum(register << low)``.
    """
    width = len(a)
    parts = []
    for index, low in enumerate(range(0, width, DSP_CHUNK)):
        high = min(low + DSP_CHUNK, width)
        top = high == width
        chunk = a[low:high].as_signed() if top else a[low:high]
        reg = registered_product(m, domain, chunk, b_unsigned, f"{name}_pp{index}", platform=platform,
                                 register_inputs=register_inputs)
        parts.append((low, reg))
    return parts


def shift_add(parts):
    """``sum(value << low for low, value in parts)``."""
    total = 0
    for low, value in parts:
        total = total + (value << low) if low else total + value
    return total


def interleaved_sum(parts):
    """The exact product from :func:`split_parts`'s registers with one adder: chunks ``k`` and ``k + 2`` side by side.

    Every chunk but the top one is unsigned, so its product with ``b`` (at most 17 bits) is non-negative
    and below ``2**(2 * DSP_CHUNK)``: the parts two chunks apart do not overlap, and the even and the odd
    parts each make one number by concatenation (the top part, signed, highest).  Their sum is one adder
    instead of one per part after the first (a 44-bit ``a``: one 45-bit adder instead of two).
    """
    halves = []
    for first in (0, 1):
        chosen = parts[first::2]
        if not chosen:
            continue
        low0 = chosen[0][0]
        pieces = []
        for (low, value), following in zip(chosen, chosen[1:] + [None]):
            if following is None:
                pieces.append(value)            # the highest part: its own sign
            else:
                if following[0] - low != 2 * DSP_CHUNK:
                    raise ValueError(f"interleaved_sum: parts at {low} and {following[0]} are not two chunks apart")
                pieces.append(value[:2 * DSP_CHUNK])
        halves.append((low0, Cat(*pieces).as_signed()))
    return shift_add(halves)


def split_product(m, domain, a, b_unsigned, name, *, platform=None, register_inputs=False):
    """:func:`split_parts`, returning a function giving the exact product from the registered parts (one adder).

    See :func:`interleaved_sum`.
    """
    parts = split_parts(m, domain, a, b_unsigned, name, platform=platform, register_inputs=register_inputs)
    return lambda: interleaved_sum(parts)


class GroupScaler(wiring.Component):
    """Per lane and group: ``corr = acc - z * Σa`` per slot, then ``y += m * corr`` into the wide accumulator.

    Time-shared: the group's lanes arrive one per cycle (from :class:`~rtl.drain.LaneDrain`) and
    pass a registered pipeline (``z * Σa`` and ``m * corr`` each as registered 17-bit DSP partial
    products and their shift-add; ``acc - z * Σa`` between them; the sum over the slots; the wide
    accumulation), so the block needs one correction and one scaling datapath per slot instead of
    one per lane and slot.
    The wide accumulators form a ring of ``L`` registers that turns by one lane per step (no
    multiplexer); the last group of a block writes zeros behind it (a synchronous clear), so the
    next block starts afresh.  At the end of a block each lane's result leaves on ``o``, one per
    cycle, ``LATENCY`` cycles after the lane entered, with its requantization parameters.

    The input never stalls and every group brings all ``L`` lanes, lane 0 first.  ``acc`` and
    ``corr`` fit ``params.slot_sum_bits`` for every group of at most ``group_size`` rows and
    ``K <= max_k`` (the datapath of a slot is that wide, modulo ``2**w``); ``y`` fits
    ``params.min_acc_width`` bits (``acc_width`` was validated to be at least that), which is the
    ring's width; per column (one group per block) there is no ring: ``y`` is the group's sum.

    Parameters
    ----------
    params : TileParams

    Attributes
    ----------
    i : In(stream.Signature(drain_output_layout(lane_sums_layout(params), group_common_layout(params)),
        always_ready=True))
    o : Out(stream.Signature(lane_result_layout(params), always_ready=True))
        Valid for the lanes of a block's last group; the payload is combinational from the last stage.
    lane_next, common_next : In(lane_sums_layout(params)), In(group_common_layout(params))
        ``i.payload.lane`` and ``i.payload.common`` one cycle ahead (:class:`~rtl.drain.LaneDrain`'s
        ``lane_next``/``common_next``): the ``z * Σa`` DSPs load their input registers from them, so
        the route from the drain ends at a register in the DSP, not in series with the multiply.
    o_valid_ahead : Out(1)
        ``o.valid`` two cycles ahead, a register (for the gather's registered clock enables).
    """

    def __init__(self, *, params: TileParams):
        self.params = params
        super().__init__({
            "i": In(stream.Signature(drain_output_layout(lane_sums_layout(params), group_common_layout(params)),
                                     always_ready=True)),
            "lane_next": In(lane_sums_layout(params)),
            "common_next": In(group_common_layout(params)),
            "o": Out(stream.Signature(lane_result_layout(params), always_ready=True)),
            "o_valid_ahead": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        L, S = p.lanes, p.n_slots
        head = self.i.payload.lane
        common = self.i.payload.common

        # Markers (and the requantization parameters) travel alongside the lane, one register per stage.
        fields = {"block_end": 1, "end": 1, "last": 1}
        if p.requant:
            fields["requant"] = requant_layout()
        valid = [self.i.valid] + [Signal(name=f"v{n}") for n in range(1, LATENCY + 1)]
        mark = [Signal(data.StructLayout(fields), name=f"mark{n}", reset_less=True) for n in range(LATENCY + 1)]
        m.d.comb += [mark[0].block_end.eq(common.block_end), mark[0].end.eq(common.last),
                     mark[0].last.eq(self.i.payload.last)]
        if p.requant:
            m.d.comb += mark[0].requant.eq(head.requant)
        for n in range(1, LATENCY + 1):
            m.d.sync += [valid[n].eq(valid[n - 1]), mark[n].eq(mark[n - 1])]

        # Stage 1: z * Σa as registered DSP partial products.  The behavioural version offsets the zero point
        # to a ZERO_OPERAND_BITS-bit operand: Σa * (z + 2**e) - Σa * 2**e, the second term added to acc here
        # (yosys maps a multiply to a DSP only when both operands are wide, and an operand with low zero bits
        # would be narrowed); built with the DSP primitives (Ecp5DspPlatform) the zero point enters as it is
        # and acc needs no adder.  Every sum of a slot is kept modulo 2**w, w = slot_sum_bits: corr = acc - z * Σa
        # fits w bits (TileParams.slot_sum_bits), so two's complement makes it exact.
        # The DSPs' operands are their own input registers, loaded from the drain's next values: they hold what
        # i.payload holds in the same cycle.  Fed from the drain's output register instead, the route to the DSP
        # column and the multiply were one path (4+3, seed 2: 4.10 ns of routing + 3.49 ns, 123.3 MHz).
        widths = p.slot_sum_bits
        acc1 = [Signal(signed(w), name=f"acc1_s{t}", reset_less=True) for t, w in enumerate(widths)]
        mant1 = [Signal(unsigned(SCALE_BITS), name=f"mant1_s{t}", reset_less=True) for t in range(S)]
        zero_sum = []
        for t in range(S):
            slot = head.header[f"s{t}"]
            zero_next = self.lane_next.header[f"s{t}"].zero
            if uses_dsp_primitives(platform):
                operand, offset_sum = zero_next, 0
            else:
                e = max(len(slot.zero), ZERO_OPERAND_BITS - 1)
                operand, offset_sum = Cat(zero_next, Const(0, e - len(slot.zero)), Const(1, 1)), (common.sa[t] << e)
            zero_sum.append(split_product(m, "sync", self.common_next.sa[t], operand, f"zs_s{t}", platform=platform,
                                          register_inputs=True))
            m.d.sync += [acc1[t].eq(head.acc[f"s{t}"] + offset_sum), mant1[t].eq(slot.mant)]
        # The next values are i.payload's one cycle ahead (checked on the fields the DSPs take).
        def dsp_fields(lane_sums, group_common):
            return Cat(*(lane_sums.header[f"s{t}"].zero for t in range(S)), group_common.sa)
        fields_next = dsp_fields(self.lane_next, self.common_next)
        fields_then = Signal.like(fields_next, name="dsp_fields_then", reset_less=True)
        m.d.sync += fields_then.eq(fields_next)
        m.d.sync += Assert(fields_then == dsp_fields(head, common),
                           "lane_next/common_next were not i.payload one cycle ahead")

        # Stage 2: z * Σa (with the offset, (z + 2**e) * Σa; modulo 2**w); stage 3: the correction.
        zs2 = [Signal(signed(w), name=f"zs2_s{t}", reset_less=True) for t, w in enumerate(widths)]
        acc2 = [Signal.like(acc1[t], name=f"acc2_s{t}", reset_less=True) for t in range(S)]
        mant2 = [Signal(unsigned(SCALE_BITS), name=f"mant2_s{t}", reset_less=True) for t in range(S)]
        for t in range(S):
            m.d.sync += [zs2[t].eq(zero_sum[t]()), acc2[t].eq(acc1[t]), mant2[t].eq(mant1[t])]
        # The correction (modulo 2**w) enters stage 3 as the inputs of the m * corr DSPs (their input
        # registers, with the mantissa); stage 4: m * corr as registered DSP partial products (their output
        # registers); stage 5: the partial products at the same offset summed over the slots; stage 6: those
        # sums shifted into place and added (the sum over slots).
        corr = [Signal(signed(w), name=f"corr_s{t}") for t, w in enumerate(widths)]
        by_offset = {}
        for t in range(S):
            m.d.comb += corr[t].eq(acc2[t] - zs2[t])
            for low, reg in split_parts(m, "sync", corr[t], mant2[t], f"mc_s{t}", platform=platform,
                                        register_inputs=True):
                by_offset.setdefault(low, []).append(reg)
        sums5 = []
        for low, regs in sorted(by_offset.items()):
            reg = Signal(signed(max(len(r) for r in regs) + len(regs) - 1), name=f"mc_sum{low}", reset_less=True)
            m.d.sync += reg.eq(sum(regs[1:], regs[0]))
            sums5.append((low, reg))
        sum6 = Signal(signed(max(w for w in widths) + SCALE_BITS + S - 1), reset_less=True)
        m.d.sync += sum6.eq(shift_add(sums5))

        # Then (combinational into o): y, held in p.min_acc_width bits (every y fits them, and acc_width >= it).
        # Per column a block is one group, so y is the group's sum.  With groups, the wide accumulation is a
        # ring of L registers turned one lane per step; a block's last group leaves zeros behind, and the reset
        # clears the ring too.
        y = Signal(signed(p.min_acc_width))
        last6, v6 = mark[LATENCY], valid[LATENCY]
        if p.group_size is None:
            m.d.comb += y.eq(sum6)
        else:
            ring = [Signal(signed(p.min_acc_width), name=f"wide_l{lane}") for lane in range(L)]
            m.d.comb += y.eq(sum6 + ring[0])
            with m.If(v6):
                m.d.sync += [ring[lane].eq(ring[lane + 1]) for lane in range(L - 1)]
                with m.If(last6.block_end):
                    m.d.sync += ring[L - 1].eq(0)
                with m.Else():
                    m.d.sync += ring[L - 1].eq(y)
        # o.valid is a register of its own, and so is o.valid two cycles ahead: the gather copies the latter
        # per lane (a LUT of the stage registers had driven the gather's 45 enable copies: 7.3 ns of routing).
        valid_ahead, valid_next, result_valid = Signal(), Signal(), Signal()
        m.d.sync += valid_ahead.eq(valid[LATENCY - 3] & mark[LATENCY - 3].block_end)
        m.d.sync += [valid_next.eq(valid_ahead), result_valid.eq(valid_next)]
        m.d.comb += self.o_valid_ahead.eq(valid_ahead)
        m.d.comb += [self.o.valid.eq(result_valid), self.o.payload.data.eq(y),
                     self.o.payload.last.eq(last6.last), self.o.payload.end.eq(last6.end)]
        if p.requant:
            m.d.comb += self.o.payload.requant.eq(last6.requant)
        return m
