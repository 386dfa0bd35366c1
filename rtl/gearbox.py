"""Gearbox: W-bit bus words in, records of two (or more) widths out, no bit idle or lost."""

from __future__ import annotations

import math

from amaranth.hdl import Assert, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.checks import check_int

__all__ = ["Gearbox", "WINDOW_SLICE_BITS"]

#: Record bits per shifter slice (each slice keeps its own copy of the count, for the clock).  One
#: slice covers a 16-lane beat: at the default tile 16-bit slices cost 1,138 LUT4 instead of 741
#: (the slices cannot share the shifter's intermediate levels).  The record shifter limits the
#: routed clock today (rtl/TILE.md, "Clock: what 125 MHz would take").
WINDOW_SLICE_BITS = 128


class Gearbox(wiring.Component):
    """Cut a continuous LSB-first bit stream, arriving as ``in_width``-bit words, into records.

    The consumer chooses the width of the next record with ``select`` (an index into
    ``record_widths``; change it only after a transfer on ``o``).  The gearbox keeps a
    buffer of valid bits: a word enters at the top and shifts the buffer down by a word
    (wiring only), a record is read at the oldest valid bit through a shifter whose steps
    are multiples of ``unit = gcd(in_width, record widths, capacity)`` bits (16 at the
    default tile: a handful of offsets instead of every bit position), and is consumed by
    lowering the count.  The remainder of a word carries over into the next record whatever
    the widths are.  ``Assert``: the bits held never exceed the capacity.

    The input is ready while at most ``capacity - in_width`` bits are held and the word
    marked ``last`` has not been taken; with ``capacity >= max(record_widths) + 2 * in_width``
    a consumer that takes every record as soon as it is complete never leaves the bus idle
    when the bus is the bottleneck.

    For the clock: the count is kept as ``free``, the units below the oldest valid bit, so the
    shifter's select lines come straight from a register, and ``o.valid``, ``ending`` and
    ``i.ready`` are compares of that register with constants (one per record width) chosen by
    ``select``; the buffer's enable is the input transfer alone.  ``LATENCY``: a word's bits can
    be taken in the cycle after it was accepted.

    Parameters
    ----------
    in_width : int
        Bus word width W (``>= 1``).
    record_widths : tuple of int
        Widths of the records the consumer may take (each ``>= 1``).
    capacity : int, optional
        Buffer size in bits (default and minimum: ``max(record_widths) + 2 * in_width``).

    Attributes
    ----------
    i : In(stream.Signature(StructLayout({"data": in_width, "last": 1})))
        Bus words; ``last`` marks the final word of the stream (zero-filled above its end).
    o : Out(stream.Signature(max(record_widths)))
        The next record, zero above its width.
    select : In(range(len(record_widths)))
        Which record width the consumer takes next.
    ending : Out(1)
        The ``last`` word has been taken and fewer than ``in_width`` bits remain after the
        selected record: what remains is the final word's zero fill.
    flush : In(1)
        With a transfer on ``o``: discard every bit that remains after the record and
        accept the next stream's words.
    """

    #: Cycles from a word's acceptance to its bits being readable as a record.
    LATENCY = 1

    def __init__(self, *, in_width: int, record_widths, capacity: "int | None" = None):
        in_width = check_int("in_width", in_width, 1)
        record_widths = tuple(check_int("record_widths[]", w, 1) for w in record_widths)
        if not record_widths:
            raise ValueError("record_widths must be a non-empty tuple of integers >= 1, got ()")
        minimum = max(record_widths) + 2 * in_width
        if capacity is None:
            capacity = minimum
        capacity = check_int("capacity (at least max(record_widths) + 2 * in_width)", capacity, minimum)
        self.in_width = in_width
        self.record_widths = record_widths
        self.capacity = capacity
        self.word_layout = data.StructLayout({"data": unsigned(in_width), "last": unsigned(1)})
        super().__init__({
            "i": In(stream.Signature(self.word_layout)),
            "o": Out(stream.Signature(unsigned(max(record_widths)))),
            "select": In(range(len(record_widths))),
            "ending": Out(1),
            "flush": In(1),
        })

    @property
    def unit(self) -> int:
        """Granularity of every position in the buffer: ``gcd(in_width, *record_widths, capacity)``."""
        return math.gcd(self.in_width, self.capacity, *self.record_widths)

    def elaborate(self, platform):
        m = Module()
        W, C, g = self.in_width, self.capacity, self.unit
        Wu, Cu = W // g, C // g
        sizes = sorted({width // g for width in self.record_widths})     # distinct record sizes, in units

        # Words enter at the top and the whole buffer moves down by W (wiring, no logic); the
        # valid bits are the top units, the oldest at unit `free` (the units below it hold no
        # valid bit).  A record is read there (a shifter in steps of g bits, its select lines
        # straight from the `free` register) and taken by raising `free`: stored bits never
        # move except by whole words.
        buf = Signal(C, reset_less=True)
        got_last = Signal()                          # the stream's last word is in buf
        # The count and every decision made from it are registers: per record size, whether it is
        # all held (`full`) and whether only the final word's fill would remain after it (`tail`);
        # whether a word fits (`room`).  Their next values are computed for each outcome of the
        # cycle (a record taken or not, a word taken or not) from the registered count and
        # constants, and the outcome only picks one: no adder or compare after the handshakes.
        state_layout = data.StructLayout({
            "free": range(Cu + 1),                   # units below the oldest valid bit
            "full": len(sizes),
            "tail": len(sizes),
            "room": 1,
        })

        def state_at(free, delta):
            """The state whose count is ``free + delta`` (``delta`` a constant), from compares of ``free``."""
            return Cat((free + delta)[:len(free)],
                       Cat(*(free <= Cu - size - delta for size in sizes)),
                       Cat(*(free > Cu - size - Wu - delta for size in sizes)),
                       free >= Wu - delta)

        empty = state_layout.const({"free": Cu, "full": 0, "tail": (1 << len(sizes)) - 1, "room": 1})
        state = Signal(state_layout, init=empty)
        free = state.free

        # The shifter in slices of the record, each a submodule with its own copy of the count
        # (registered from the same next value): the count's fanout stays within a slice instead
        # of spanning the whole buffer (synthesis keeps the hierarchy, so the copies are not merged).
        state_next = Signal(state_layout)
        width_max = max(self.record_widths)
        window = Signal(width_max)
        for lo in range(0, width_max, WINDOW_SLICE_BITS):
            hi = min(lo + WINDOW_SLICE_BITS, width_max)
            part = m.submodules[f"window{lo // WINDOW_SLICE_BITS}"] = _WindowSlice(
                capacity=C, unit=g, lo=lo, hi=hi, count_bits=len(free), count_init=Cu)
            m.d.comb += [part.buf.eq(buf), part.count_next.eq(state_next.free), window[lo:hi].eq(part.window)]
        size = Signal(range(max(sizes) + 1))
        # The next state for each outcome (record taken, word taken), all from registers.
        kept = Signal(state_layout)
        kept_word = Signal(state_layout)
        taken = Signal(state_layout)
        taken_word = Signal(state_layout)
        m.d.comb += [kept.eq(state), kept_word.eq(state_at(free, -Wu))]
        with m.Switch(self.select):
            for index, width in enumerate(self.record_widths):
                with (m.Case(index) if index < len(self.record_widths) - 1 else m.Default()):
                    s = width // g
                    j = sizes.index(s)
                    m.d.comb += [
                        size.eq(s),
                        self.o.payload.eq(window[:width]),
                        self.o.valid.eq(state.full[j]),
                        self.ending.eq(got_last & state.tail[j]),
                        taken.eq(state_at(free, s)),
                        taken_word.eq(state_at(free, s - Wu)),
                    ]

        take = Signal()
        word_in = Signal()
        m.d.comb += [
            # Only registered state decides: no path from the consumer's ready to the bus.
            self.i.ready.eq(~got_last & state.room),
            take.eq(self.o.valid & self.o.ready),
            word_in.eq(self.i.valid & self.i.ready),
        ]


        # Invariants: a record is taken only when held, and a word only when it fits.
        m.d.sync += [
            Assert(~take | (free + size <= Cu), "gearbox: a record taken that is not all held"),
            Assert(~word_in | (Mux(take, free + size, free) >= Wu), "gearbox: a word taken that does not fit"),
        ]

        # The buffer moves only with a word (a flush needs got_last, so no word comes with it).
        with m.If(word_in):
            m.d.sync += buf.eq(Cat(buf[W:], self.i.payload.data))
        m.d.sync += state.eq(state_next)
        with m.If(take & self.flush):
            m.d.comb += state_next.eq(empty)
            m.d.sync += got_last.eq(0)
        with m.Else():
            m.d.comb += state_next.eq(Mux(take, Mux(word_in, taken_word, taken), Mux(word_in, kept_word, kept)))
            with m.If(word_in):
                m.d.sync += got_last.eq(self.i.payload.last)
        return m


class _WindowSlice(wiring.Component):
    """Bits ``[lo, hi)`` of the gearbox's record window, with a private copy of the count of free units.

    ``window = buf >> (unit * count)``, the count registered here from ``count_next`` (reset to
    ``count_init``, as the gearbox's own count).
    """

    def __init__(self, *, capacity: int, unit: int, lo: int, hi: int, count_bits: int, count_init: int):
        self.unit, self.lo, self.hi = unit, lo, hi
        self.count_bits, self.count_init = count_bits, count_init
        super().__init__({
            "buf": In(capacity),
            "count_next": In(count_bits),
            "window": Out(hi - lo),
        })

    def elaborate(self, platform):
        m = Module()
        count = Signal(self.count_bits, init=self.count_init)
        m.d.sync += count.eq(self.count_next)
        window = self.buf
        for k in range(self.count_bits):
            window = Mux(count[k], window >> (self.unit << k), window)
        m.d.comb += self.window.eq(window[self.lo:self.hi])
        return m
