"""Optional INT8 requantization of a block's results, bit-exact with ``golden.oracle.requantize``."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from golden.format import OUT_BITS, OUT_MAX, OUT_MIN, REQUANT_MULT_BITS, REQUANT_SHIFT_BITS
from rtl.correct import registered_product, split_product
from rtl.drain import gather_input_layout
from rtl.layouts import lane_result_layout
from rtl.params import TileParams

__all__ = ["Requantizer", "LATENCY"]

#: Low bits of ``q = (y * M) >> (s - 1)`` kept for the rounding and the clamp: with the bits above them all
#: equal to the sign, ``q`` fits ``_KEEP + 1`` bits, ``[-256, 255]``, which holds every ``q`` whose rounded
#: ``(q + 1) >> 1`` lies in ``[OUT_MIN, OUT_MAX]`` (``q`` in ``[-257, 254]``) but ``-257``, which saturates to
#: ``OUT_MIN`` like every ``q`` outside (and ``255``, rounded to ``128``, saturates to ``OUT_MAX``).
_KEEP = OUT_BITS

#: Cycles from a lane entering the requantizer to its INT8 result on ``o``: the input register, the DSP
#: partial products, their sum, the shift in two steps (registered), the rounding and clamp (combinational).
LATENCY = 5


def _all_sign(bits, sign):
    """Every bit of ``bits`` equals ``sign`` (true for no bits)."""
    if len(bits) == 0:
        return Const(1)
    return ~(bits ^ sign.replicate(len(bits))).any()


def _shift_keeping(value, sign, fits, steps, *, keep):
    """``value >> sum(k for bit, k in steps if bit)`` (arithmetic, ``sign`` above ``value``), low ``keep`` bits.

    ``steps`` runs from the largest shift down; each keeps only the bits later steps and ``keep``
    still need.  Returns the low bits and ``fits``: every higher bit of the shifted value equals
    ``sign`` (and ``fits`` was already true), so the result is ``Cat(low, sign)`` exactly.
    """
    for index, (bit, k) in enumerate(steps):
        need = keep + sum(later for _, later in steps[index + 1:])
        width = len(value)
        extended = Cat(value, sign.replicate(max(0, need + k - width)))
        shifted = Mux(bit, extended[k:need + k], extended[:need])
        above_if_shifted = value[min(need + k, width):]
        above_if_not = value[min(need, width):min(need + k, width)]      # and above_if_shifted
        fits = fits & _all_sign(above_if_shifted, sign) & (bit | _all_sign(above_if_not, sign))
        value = shifted
    return value, fits


class Requantizer(wiring.Component):
    """Each lane's ``y`` to INT8 with its column's multiplier and shift, one lane per cycle.

    Time-shared: the lanes arrive one per cycle with their parameters (from the group scaler) and
    pass a registered pipeline (the input; ``y * M`` as registered 17-bit DSP partial products;
    their sum; the arithmetic shift by ``s - 1`` in two steps that keep only the bits the clamp can
    see; plus one, halved, clamped, combinational into ``o``), so one multiplier, shifter and clamp
    serve all lanes.  Each lane's result leaves on ``o`` ``LATENCY`` cycles after it entered, with
    its ``last``/``end`` markers.

    Parameters
    ----------
    params : TileParams
        Must have ``requant=True``.

    Attributes
    ----------
    i : In(stream.Signature(lane_result_layout(params), always_ready=True))
    o : Out(stream.Signature(gather_input_layout(signed(OUT_BITS)), always_ready=True))
    o_valid_ahead : Out(1)
        ``o.valid`` two cycles ahead, a register (for the gather's registered clock enables).
    """

    def __init__(self, *, params: TileParams):
        if not params.requant:
            raise ValueError("Requantizer needs params with requant=True")
        self.params = params
        super().__init__({
            "i": In(stream.Signature(lane_result_layout(params), always_ready=True)),
            "o": Out(stream.Signature(gather_input_layout(signed(OUT_BITS)), always_ready=True)),
            "o_valid_ahead": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        marks = [Signal(2, name=f"marks{n}", reset_less=True) for n in range(LATENCY)]   # last, end
        valid = [Signal(name=f"v{n}") for n in range(LATENCY)]
        m.d.sync += [valid[0].eq(self.i.valid), marks[0].eq(Cat(self.i.payload.last, self.i.payload.end))]
        for n in range(1, LATENCY):
            m.d.sync += [valid[n].eq(valid[n - 1]), marks[n].eq(marks[n - 1])]

        # Stage 0: the input (the scaler's last adder is in front of it): the shift here, y and M in the
        # multiplier's input registers (below).
        shift0 = Signal(unsigned(REQUANT_SHIFT_BITS), reset_less=True)
        m.d.sync += shift0.eq(self.i.payload.requant.shift)

        # Stage 1: y * M as registered DSP partial products.
        # clamp((p + 2**(s-1)) >> s) == clamp((q + 1) >> 1) with q = p >> (s - 1) == (2 * p) >> s: the rounding
        # is an add on the shifted value, and the shift keeps only the bits the clamp can see (below).
        shift1 = Signal(unsigned(REQUANT_SHIFT_BITS), reset_less=True)
        m.d.sync += shift1.eq(shift0)
        # y fits p.min_acc_width bits (acc_width may be wider): only those enter the multiplier, whose
        # input registers are stage 0's copy of y and M (the DSPs' own registers when built for ECP5).
        y = self.i.payload.data[:p.min_acc_width].as_signed()
        total = split_product(m, "sync", y, self.i.payload.requant.mult, "ym", platform=platform, register_inputs=True)

        # Stage 2: the exact product, doubled (a wire: q is the doubled product shifted by s).
        prod2 = Signal(signed(p.min_acc_width + REQUANT_MULT_BITS + 1), reset_less=True)
        shift2 = Signal.like(shift1)
        m.d.sync += [prod2.eq(total()), shift2.eq(shift1)]
        sign = prod2[-1]
        doubled = Cat(Const(0, 1), prod2)

        # Stage 3: q = (2 * prod) >> s by the shift's high three bits (multiples of 8), keeping the low KEEP + 7
        # bits of that and whether every bit above them equals the sign.
        coarse = [(shift2[b], 1 << b) for b in range(3, REQUANT_SHIFT_BITS)][::-1]
        fine_bits = 3
        low3, ok3 = _shift_keeping(doubled, sign, Const(1), coarse, keep=_KEEP + (1 << fine_bits) - 1)
        fits3, sign3 = Signal(reset_less=True), Signal(reset_less=True)
        m.d.sync += [fits3.eq(ok3), sign3.eq(sign)]
        # Stage 4: the shift's low three bits f as a multiply, in a DSP between its own registers (the stage-3
        # and stage-4 registers of the value): Cat(low3, sign) * 2**(7 - f) holds q's low KEEP bits at bit 7
        # (one DSP instead of a LUT multiplexer per bit and step).
        factor = Signal(unsigned(1 << fine_bits))
        m.d.comb += factor.eq(Const(1 << ((1 << fine_bits) - 1), 1 << fine_bits) >> shift2[:fine_bits])
        scaled = registered_product(m, "sync", Cat(low3, sign).as_signed(), factor, "fine", platform=platform,
                                    register_inputs=True)
        fits_coarse4, sign4 = Signal(reset_less=True), Signal(reset_less=True)
        m.d.sync += [fits_coarse4.eq(fits3), sign4.eq(sign3)]
        top = (1 << fine_bits) - 1
        q4 = scaled[top:top + _KEEP]
        fits4 = fits_coarse4 & _all_sign(scaled[top + _KEEP:], sign4)

        # The rounding and the clamp, combinational into o: q in [-256, 254] rounds into [OUT_MIN, OUT_MAX]
        # ((q + 1) >> 1, the low bits of a KEEP + 1 bit increment); every other q saturates by its sign.
        q = Cat(q4, sign4)
        in_range = fits4 & ~(q4.all() & ~sign4)
        rounded = Signal(signed(OUT_BITS))
        m.d.comb += rounded.eq((q + 1)[1:_KEEP + 1])
        last = LATENCY - 1
        m.d.comb += [
            self.o.valid.eq(valid[last]),
            self.o_valid_ahead.eq(valid[last - 2]),
            self.o.payload.data.eq(Mux(in_range, rounded, Mux(sign4, OUT_MIN, OUT_MAX))),
            self.o.payload.last.eq(marks[last][0]),
            self.o.payload.end.eq(marks[last][1]),
        ]
        return m
