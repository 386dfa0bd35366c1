"""Gearbox: W-bit bus words in, records of two (or more) widths out, no bit idle or lost."""

from __future__ import annotations

from amaranth.hdl import Assert, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Gearbox"]


class Gearbox(wiring.Component):
    """Cut a continuous LSB-first bit stream, arriving as ``in_width``-bit words, into records.

    The consumer chooses the width of the next record with ``select`` (an index into
    ``record_widths``; change it only after a transfer on ``o``).  The gearbox keeps a
    buffer of valid bits: a word is appended above the bits it holds, a record is the
    lowest ``record_widths[select]`` bits and is consumed from the bottom, so the
    remainder of a word carries over into the next record whatever the widths are.

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

    def elaborate(self, platform):
        m = Module()
        W, C = self.in_width, self.capacity

        buf = Signal(C)                 # valid bits are buf[:count], zero above
        count = Signal(range(C + 1))
        got_last = Signal()             # the stream's last word is in buf

        size = Signal(range(max(self.record_widths) + 1))
        after_take = Signal(C)          # buf after consuming this cycle's record (if any)
        remain = Signal(range(C + 1))
        take = Signal()

        with m.Switch(self.select):
            for index, width in enumerate(self.record_widths):
                with m.Case(index):
                    m.d.comb += [size.eq(width), self.o.payload.eq(buf[:width])]

        m.d.comb += [
            self.o.valid.eq(count >= size),
            take.eq(self.o.valid & self.o.ready),
            self.ending.eq(got_last & (count < size + W)),
            # Only registered state decides: no path from the consumer's ready to the bus.
            self.i.ready.eq(~got_last & (count <= C - W)),
        ]

        with m.If(take):
            with m.Switch(self.select):
                for index, width in enumerate(self.record_widths):
                    with m.Case(index):
                        m.d.comb += [after_take.eq(buf >> width), remain.eq(count - width)]
        with m.Else():
            m.d.comb += [after_take.eq(buf), remain.eq(count)]

        # Invariants: the buffer never holds more than its capacity, and a word is taken only when it fits.
        m.d.sync += [
            Assert(count <= C, "gearbox: more bits held than its capacity"),
            Assert(~(self.i.valid & self.i.ready) | (remain + W <= C), "gearbox: a word taken that does not fit"),
        ]

        with m.If(take & self.flush):
            m.d.sync += [buf.eq(0), count.eq(0), got_last.eq(0)]
        with m.Elif(self.i.valid & self.i.ready):
            m.d.sync += [
                buf.eq(after_take | (self.i.payload.data << remain)),
                count.eq(remain + W),
                got_last.eq(self.i.payload.last),
            ]
        with m.Else():
            m.d.sync += [buf.eq(after_take), count.eq(remain)]
        return m
