"""Gearbox: W-bit bus words in, records of two (or more) widths out, no bit idle or lost."""

from __future__ import annotations

import math

from amaranth.hdl import Assert, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Gearbox"]


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

    def __init__(self, *, in_width: int, record_widths, capacity: "int | None" = None):
        if not isinstance(in_width, int) or isinstance(in_width, bool) or in_width < 1:
            raise ValueError(f"in_width must be an integer >= 1, got {in_width!r}")
        record_widths = tuple(record_widths)
        if not record_widths or any(not isinstance(w, int) or isinstance(w, bool) or w < 1 for w in record_widths):
            raise ValueError(f"record_widths must be a non-empty tuple of integers >= 1, got {record_widths!r}")
        minimum = max(record_widths) + 2 * in_width
        if capacity is None:
            capacity = minimum
        if not isinstance(capacity, int) or capacity < minimum:
            raise ValueError(f"capacity must be an integer >= max(record_widths) + 2 * in_width = {minimum}, "
                             f"got {capacity!r}")
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

        # Words enter at the top and the whole buffer moves down by W (wiring, no logic); the
        # valid bits are the top `held` units, the oldest at unit `Cu - held`.  A record is read
        # there (a shifter in steps of g bits over the few offsets the widths allow) and taken by
        # lowering `held`: stored bits never move except by whole words.
        buf = Signal(C)
        held = Signal(range(Cu + 2))    # units of g bits held (one value spare: the Assert can fail)
        got_last = Signal()             # the stream's last word is in buf
        offset = Signal(range(Cu + 1))
        m.d.comb += offset.eq(Cu - held)

        size = Signal(range(max(self.record_widths) // g + 1))
        take = Signal()
        window = buf
        for k in range(len(offset)):
            window = Mux(offset[k], window >> (g << k), window)
        with m.Switch(self.select):
            for index, width in enumerate(self.record_widths):
                with (m.Case(index) if index < len(self.record_widths) - 1 else m.Default()):
                    m.d.comb += [size.eq(width // g), self.o.payload.eq(window[:width])]

        m.d.comb += [
            self.o.valid.eq(held >= size),
            take.eq(self.o.valid & self.o.ready),
            self.ending.eq(got_last & (held < size + Wu)),
            # Only registered state decides: no path from the consumer's ready to the bus.
            self.i.ready.eq(~got_last & (held <= Cu - Wu)),
        ]
        remain = Mux(take, held - size, held)

        # Invariants: the buffer never holds more than its capacity, and a word is taken only when it fits.
        m.d.sync += [
            Assert(held <= Cu, "gearbox: more bits held than its capacity"),
            Assert(~(self.i.valid & self.i.ready) | (remain + Wu <= Cu), "gearbox: a word taken that does not fit"),
        ]

        with m.If(take & self.flush):
            m.d.sync += [held.eq(0), got_last.eq(0)]
        with m.Elif(self.i.valid & self.i.ready):
            m.d.sync += [
                buf.eq(Cat(buf[W:], self.i.payload.data)),
                held.eq(remain + Wu),
                got_last.eq(self.i.payload.last),
            ]
        with m.Else():
            m.d.sync += held.eq(remain)
        return m
