"""Gearbox: W-bit bus words in, records of two (or more) widths out, no bit idle or lost."""

from __future__ import annotations

import math

from amaranth.hdl import Array, Assert, Cat, Const, Module, Mux, Shape, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.checks import check_int

__all__ = ["Gearbox", "SELECT_FANOUT", "CountTablesPlatform", "uses_count_tables"]

#: Shifter multiplexers per registered copy of a shift bit.  Every level of the record shifter is
#: cut into groups of this many bits, each a submodule with its own flip-flop copy of its select
#: line (flip-flops cost nothing in the area metric, and synthesis keeps the hierarchy, so the
#: copies are not merged): no net of the shifter fans out to more than this many LUTs.  The record
#: register and the buffer are cut into slices of this many bits, each with its own enable LUT.
SELECT_FANOUT = 32


class Gearbox(wiring.Component):
    """Cut a continuous LSB-first bit stream, arriving as ``in_width``-bit words, into records.

    The record widths come in the order the consumer chooses them: the first record after a
    reset has width ``record_widths[first_select]``, and with every transfer on ``o`` the consumer
    names the width of the one after it with ``next_select`` (read only at a transfer).  The
    gearbox keeps a buffer of valid bits: a word enters at the top and shifts the buffer down by a
    word (wiring only); the remainder of a word carries over into the next record whatever the
    widths are.  ``Assert``: the bits held never exceed the capacity.

    The input is ready while at most ``capacity - in_width`` bits are held and the word
    marked ``last`` has not been taken; with ``capacity >= max(record_widths) + 2 * in_width``
    a consumer that takes every record as soon as it is complete never leaves the bus idle
    when the bus is the bottleneck.

    For the clock, every output is a register: the record (``o.payload``), ``o.valid``,
    ``ending``'s flag and ``i.ready``.  The count is kept as ``free``, the units
    (``unit = gcd(in_width, record widths, capacity)`` bits, 16 at the default tile) below the
    oldest valid bit.  The record register is loaded from the buffer and the incoming word,
    ``Cat(buf, word) >> unit * shift``, through a shifter whose select lines are registers
    (copies, see ``SELECT_FANOUT``): ``shift`` is the oldest valid unit after the record now
    offered, if one is offered (assuming it is taken), else the oldest valid unit; a record
    offered and not taken keeps the register (its clock enable).  So the handshake only drives
    the enable, and the next state is chosen among values computed from registers and
    constants.  ``LATENCY``: a word's bits can be taken in the cycle after it was accepted.

    For the clock the next state is computed in three steps, the latest signals last.  (1) From
    registers only (the state, and the word's ``last`` and ``next_select`` as they arrive), every
    complete candidate (the end-of-stream flags resolved): the offered record kept with a word,
    and taken, once per record size and per outcome of the word (``got_last`` then: the word's
    ``last`` with a word, else the register).  Elaborated for synthesis
    (:class:`CountTablesPlatform`) each is a table of the count's bits (one LUT per bit, no carry
    chain; otherwise adders and compares, the same values, for the simulators and solvers).
    (2) ``_WordPick`` (a submodule, so that synthesis keeps it apart from the tables, about two
    LUTs deep) resolves the word's transfer (``i.valid`` and its own copy of the ready flag), the
    next record's size (``next_select``, or ``first_select`` with ``restart``: one LUT of the
    inputs) and the flush.  (3) ``_PickRegister`` in front of the state register, ``o.valid`` and
    the ready flag's two copies (each a copy of the state's field), and ``_MuxGroup`` in front of
    each shifter group's copy of its select bit: one LUT of ``valid``, ``o.ready`` and the two
    picked candidates.  The buffer is cut into slices of ``SELECT_FANOUT`` bits, each with its
    own clock-enable LUT of ``i.valid`` and a copy of the ready flag (so the word's transfer has
    no net that reaches both the buffer's enables and the next state), and the record register
    likewise, each slice's enable a LUT of ``valid`` and ``o.ready`` (or its own copy of it:
    ``record_ready``).

    Parameters
    ----------
    in_width : int
        Bus word width W (``>= 1``).
    record_widths : tuple of int
        Widths of the records the consumer may take (each ``>= 1``).
    capacity : int, optional
        Buffer size in bits (default and minimum: ``max(record_widths) + 2 * in_width``).
    first_select : int, optional
        Index into ``record_widths`` of the first record after a reset (default 0).

    Attributes
    ----------
    i : In(stream.Signature(StructLayout({"data": in_width, "last": 1})))
        Bus words; ``last`` marks the final word of the stream (zero-filled above its end).
    o : Out(stream.Signature(max(record_widths)))
        The next record in its low bits; the bits above its width are not specified.
    next_select : In(range(len(record_widths)))
        With a transfer on ``o``: which record width the consumer takes after this one.
    ending : Out(1)
        The ``last`` word has been taken and fewer than ``in_width`` bits remain after the
        record offered: what remains is the final word's zero fill.
    restart : In(1)
        With a transfer on ``o``: the record after this one is ``record_widths[first_select]``
        (``next_select`` is not read), and if ``ending``, the stream ends with this record: every
        bit that remains is discarded and the next stream's words are accepted (the flush).  The
        state after either outcome is computed before the handshake (``ending`` is a register), so
        ``restart`` only picks among complete candidates (with ``next_select``, one LUT before
        ``_WordPick``) and ``o.ready`` between the record taken and kept.
    record_ready : In(record_slices)
        With ``record_ready_copies``: ``o.ready`` once per slice of the record register
        (``record_slices``, ``SELECT_FANOUT`` bits each), that slice's clock enable; every bit must
        equal ``o.ready`` (``Assert``).  For the clock: a consumer that computes each copy on a LUT
        of its own lets the placer put it beside its slice, so no one net of the handshake reaches
        every slice's enable (the 4+4 tile's worst path: the consumer's ``o.ready`` LUT -> 4.5 ns of
        routing -> a slice's enable).  Without ``record_ready_copies`` the slices load on ``o.ready``.
    """

    #: Cycles from a word's acceptance to its bits being readable as a record.
    LATENCY = 1

    def __init__(self, *, in_width: int, record_widths, capacity: "int | None" = None, first_select: int = 0,
                 record_ready_copies: bool = False):
        in_width = check_int("in_width", in_width, 1)
        record_widths = tuple(check_int("record_widths[]", w, 1) for w in record_widths)
        if not record_widths:
            raise ValueError("record_widths must be a non-empty tuple of integers >= 1, got ()")
        minimum = max(record_widths) + 2 * in_width
        if capacity is None:
            capacity = minimum
        capacity = check_int("capacity (at least max(record_widths) + 2 * in_width)", capacity, minimum)
        first_select = check_int("first_select", first_select, 0)
        if first_select >= len(record_widths):
            raise ValueError(f"first_select must be an index into record_widths, in [0, {len(record_widths) - 1}], "
                             f"got {first_select}")
        self.in_width = in_width
        self.record_widths = record_widths
        self.capacity = capacity
        self.first_select = first_select
        self.record_ready_copies = bool(record_ready_copies)
        self.word_layout = data.StructLayout({"data": unsigned(in_width), "last": unsigned(1)})
        super().__init__({
            "i": In(stream.Signature(self.word_layout)),
            "o": Out(stream.Signature(unsigned(max(record_widths)))),
            "next_select": In(range(len(record_widths))),
            "ending": Out(1),
            "restart": In(1),
            **({"record_ready": In(self.record_slices)} if self.record_ready_copies else {}),
        })

    @property
    def record_slices(self) -> int:
        """Slices of the record register (``SELECT_FANOUT`` bits each), each on its own clock enable."""
        return -(-max(self.record_widths) // SELECT_FANOUT)

    @property
    def unit(self) -> int:
        """Granularity of every position in the buffer: ``gcd(in_width, *record_widths, capacity)``."""
        return math.gcd(self.in_width, self.capacity, *self.record_widths)

    def counts(self) -> "_Counts":
        """The formula of the next state's candidates, in units (see :class:`_Counts`)."""
        g = self.unit
        Cu, Wu = self.capacity // g, self.in_width // g
        sizes = sorted({width // g for width in self.record_widths})
        shift_limit = min(Cu, Cu + Wu - sizes[0])    # the largest shift whose load can be offered
        free_bits = Shape.cast(range(Cu + 1)).width
        shift_bits = max(shift_limit.bit_length(), 1)
        layout = data.StructLayout({
            "free": range(Cu + 1),                   # units below the oldest valid bit
            "full": len(sizes),
            "tail": len(sizes),
            "shift": shift_bits * len(sizes),
            "room": 1,
        })
        return _Counts(units=Cu, word_units=Wu, sizes=sizes, free_bits=free_bits, shift_bits=shift_bits,
                       shift_limit=shift_limit, layout=layout)

    def elaborate(self, platform):
        m = Module()
        W, C, g = self.in_width, self.capacity, self.unit
        Wu, Cu = W // g, C // g
        widths = self.record_widths
        sizes = sorted({width // g for width in widths})     # distinct record sizes, in units
        width_max = max(widths)

        def size_index(index):
            """Index into ``sizes`` of record width ``widths[index]``."""
            return sizes.index(widths[index] // g)

        # Words enter at the top and the whole buffer moves down by W (wiring, no logic); the
        # valid bits are the top units, the oldest at unit `free` (the units below it hold no
        # valid bit).  A record is taken by raising `free`: stored bits never move except by
        # whole words.
        buf = Signal(C)

        # The state after each outcome of the cycle (a record taken or not, a word taken or not),
        # computed from the registered count and constants; the outcome only picks one.  Per record
        # size: whether it would be all held (`full`), whether only the final word's fill would remain
        # after it (`tail`), and the shift of the record register's next load (`shift`: past that
        # record if it is held, else at the oldest valid unit).
        counts = self.counts()
        shift_limit, shift_bits = counts.shift_limit, counts.shift_bits
        candidate_layout = counts.layout
        # state_at(count, delta): the candidate whose count is `count + delta` (`delta` a constant), see _Counts.
        state_at = counts.table if uses_count_tables(platform) else counts.arithmetic

        # The registered state: the count, and what the selected record makes of it.
        core_layout = data.StructLayout({
            "free": range(Cu + 1),
            "room": 1,                               # a word fits
            "select": range(len(widths)),            # the record offered
            "valid": 1,                              # ... is all held
            "tail": 1,                               # ... and only the final word's fill would remain after it
            "shift": shift_bits,                     # the record register's next load (also in the shifter's copies)
        })
        state_layout = data.StructLayout({
            **{name: field.shape for name, field in core_layout},
            "got_last": 1,                           # the stream's last word is in buf
            "ready": 1,                              # a word is accepted: ~got_last & room
            "ending": 1,                             # got_last & tail (the output `ending`)
        })
        shift_init = Cu % (1 << shift_bits)
        state_init = {"free": Cu, "room": 1, "select": self.first_select, "valid": 0, "tail": 1,
                      "shift": shift_init, "got_last": 0, "ready": 1, "ending": 0}
        state_init_value = state_layout.const(state_init).as_value().value
        # The state register sits behind a hierarchy boundary (`_PickRegister`), so the pick between
        # the two complete next states is the last LUT before it, driven by the consumer's handshake.
        m.submodules.state = pick = _PickRegister(width=state_layout.size, init=state_init_value)
        state = data.View(state_layout, pick.q)
        # Copies of state fields (their own picks and flip-flops, submodules so that synthesis keeps them):
        # the output's valid flag drives the consumer's handshake, the state's the picks in here; the
        # input's ready flag has a copy for the word's pick of the next state and one for the buffer's
        # clock enables, so that no net of `i.valid & ready` reaches both (the buffer's enables are
        # hundreds of flip-flops).
        m.submodules.valid_out = valid_out = _PickRegister(width=1)
        m.submodules.ready_word = ready_word = _PickRegister(width=1, init=1)
        m.submodules.ready_buffer = ready_buffer = _PickRegister(width=1, init=1)
        free, select = state.free, state.select

        def registered(candidate, z, index):
            """The state of ``candidate`` offering record ``index`` of size ``sizes[z]`` (its per-size fields)."""
            candidate = data.View(candidate_layout, Value.cast(candidate))
            bits = {"full": 1, "tail": 1, "shift": shift_bits}
            full, tail, shift = (Value.cast(getattr(candidate, name))[z * bits[name]:][:bits[name]]
                                 for name in ("full", "tail", "shift"))
            return Cat(candidate.free, candidate.room, Value.cast(index)[:len(select)], full, tail, shift)

        record_sizes = tuple(size_index(n) for n in range(len(widths)))     # index into `sizes` per record

        def size_of(index):
            """Index into ``sizes`` of the size of record ``index`` (a ``Value``; an index past the last: the last's)."""
            return _size_of(record_sizes, index, range(max(2, len(sizes))))

        size = Signal(range(max(sizes) + 1))
        kept_word = Signal(candidate_layout)
        taken = Signal(candidate_layout)
        taken_word = Signal(candidate_layout)
        m.d.comb += kept_word.eq(state_at(free, -Wu))
        with m.Switch(select):
            for index, width in enumerate(widths):
                with (m.Case(index) if index < len(widths) - 1 else m.Default()):
                    s = width // g
                    m.d.comb += [
                        size.eq(s),
                        taken.eq(state_at(free, s)),
                        taken_word.eq(state_at(free, s - Wu)),
                    ]

        take = Signal()
        word_in = Signal()
        got_last, ready = state.got_last, state.ready
        m.d.comb += [
            # Only registered state decides: no path from the consumer's ready to the bus.
            self.i.ready.eq(ready),
            self.o.valid.eq(valid_out.q),
            self.ending.eq(state.ending),
            take.eq(state.valid & self.o.ready),
            word_in.eq(self.i.valid & ready),
        ]

        # Invariants: a record is taken only when held, and a word only when it fits.
        m.d.sync += [
            Assert(~take | (free + size <= Cu), "gearbox: a record taken that is not all held"),
            Assert(~word_in | (Mux(take, free + size, free) >= Wu), "gearbox: a word taken that does not fit"),
            Assert(state.valid == (free + size <= Cu), "gearbox: the offered record's flag disagrees with the count"),
            Assert(ready == (~got_last & state.room), "gearbox: the input's ready flag disagrees with the count"),
            Assert(state.ending == (got_last & state.tail), "gearbox: the ending flag disagrees with the count"),
            Assert(self.o.valid == state.valid, "gearbox: the output's valid flag differs from the state's"),
            Assert((ready_word.q == ready) & (ready_buffer.q == ready), "gearbox: a copy of the ready flag differs"),
        ]

        # The next state, in three steps so that the latest signals pass the fewest LUTs.  (1) From
        # registers only, every complete candidate (the end-of-stream flags resolved): the record kept
        # with a word, and a record taken for each record size and each outcome of the word (`got_last`
        # then: the word's `last` if a word is taken, else the register).  (2) `_WordPick` resolves the
        # word and the next record (`next_record`: `first_select` with `restart`, else `next_select`;
        # with `restart` and `ending`, a register, the stream ends with this record: the state after a
        # reset, the flush).  (3) The consumer's handshake picks the record taken or kept (`_PickRegister`).
        # The buffer moves only with a word (`ending` needs got_last, so no word comes with a flush).
        got_last_after = (got_last, self.i.payload.last)    # got_last after a cycle without, with a word
        restart_select = Const(self.first_select, len(select))
        next_record = Signal(len(select))
        next_size = Signal(range(max(2, len(sizes))))                # (one size: a constant bit, not zero bits)
        named = self.next_select                            # the next record unless `restart`

        def after_restart(if_restart, otherwise):
            """``if_restart`` with ``restart``, else ``otherwise`` (each from the inputs directly: one LUT)."""
            return Mux(self.restart, if_restart, otherwise)

        if len(sizes) > 1:
            # Its own submodule, so that synthesis computes the size in one LUT of the inputs instead of
            # building it on `next_record`'s LUTs (4+3 seed 5: a LUT and 2.4 ns of routing more).
            m.submodules.next_size = record_size = _RecordSize(
                sizes=record_sizes, first=size_index(self.first_select),
                select_bits=len(select), size_bits=len(next_size))
            m.d.comb += [record_size.restart.eq(self.restart), record_size.next_select.eq(named),
                         next_size.eq(record_size.size)]
        else:
            m.d.comb += next_size.eq(after_restart(size_index(self.first_select), size_of(named)))
        m.d.comb += next_record.eq(after_restart(restart_select, named))

        def complete(core, got_last_next):
            """``core`` (a ``core_layout`` value) with the end-of-stream flags that follow from ``got_last_next``."""
            view = data.View(core_layout, core)
            return Cat(core, got_last_next, ~got_last_next & view.room, got_last_next & view.tail)

        m.submodules.word_pick = word_pick = _WordPick(width=state_layout.size, sizes=len(sizes),
                                                       select=state_layout["select"].offset, select_bits=len(select),
                                                       flushed=state_init_value)
        m.d.comb += [
            word_pick.word_valid.eq(self.i.valid), word_pick.ready.eq(ready_word.q),
            word_pick.size.eq(next_size), word_pick.select.eq(next_record),
            word_pick.restart.eq(self.restart), word_pick.ending.eq(state.ending),
            word_pick.kept.eq(complete(state.as_value()[:core_layout.size], got_last)),
            word_pick.kept_word.eq(complete(_indexed([registered(kept_word, z, select) for z in range(len(sizes))],
                                                     size_of(select)), got_last_after[1])),
        ]
        for z in range(len(sizes)):
            for w, candidate in enumerate((taken, taken_word)):
                m.d.comb += word_pick.taken[z][w].eq(complete(registered(candidate, z, next_record), got_last_after[w]))
        if_taken = data.View(state_layout, word_pick.if_taken)
        if_kept = data.View(state_layout, word_pick.if_kept)
        for picked, field in ((pick, lambda v: v.as_value()), (valid_out, lambda v: v.valid),
                              (ready_word, lambda v: v.ready), (ready_buffer, lambda v: v.ready)):
            m.d.comb += [picked.valid.eq(state.valid), picked.ready.eq(self.o.ready),
                         picked.if_taken.eq(field(if_taken)), picked.if_kept.eq(field(if_kept))]

        # The buffer, in slices of SELECT_FANOUT bits, each with its own clock-enable LUT of `i.valid` and
        # the buffer's copy of the ready flag.
        buf_next = Cat(buf[W:], self.i.payload.data)
        for lo in range(0, C, SELECT_FANOUT):
            hi = min(lo + SELECT_FANOUT, C)
            part = m.submodules[f"buffer_{lo // SELECT_FANOUT}"] = _BufferSlice(width=hi - lo)
            m.d.comb += [part.word_valid.eq(self.i.valid), part.ready.eq(ready_buffer.q), part.d.eq(buf_next[lo:hi]),
                         buf[lo:hi].eq(part.q)]

        # The record register: loaded from the buffer and the incoming word at `shift` (registered
        # copies of shift_next in every group of the shifter), kept while a record is offered and
        # not taken.  Without a word taken the incoming bits land above the valid ones, where no
        # offered record reaches.  Levels largest step first: the narrowest intermediate levels.
        # Multiplexers only where a record can read the shifted bit: with shift bit k set (and the
        # shift at most shift_limit), at most `rest` units of shift remain below it, and bits shifted
        # in from beyond the level would lie beyond the buffer and the word; elsewhere the level's own
        # bit passes (what it holds then is never part of an offered record).
        level = Cat(buf, self.i.payload.data)
        for k in reversed(range(shift_bits)):
            step = g << k
            out_width = min(width_max + g * ((1 << k) - 1), len(level))
            rest = max(shift % (1 << k) for shift in range(1 << k, shift_limit + 1) if shift >> k & 1)
            mux_width = max(0, min(out_width, width_max + g * rest, len(level) - step))
            shifted = Signal(out_width)
            m.d.comb += shifted[mux_width:].eq(level[mux_width:out_width])
            for lo in range(0, mux_width, SELECT_FANOUT):
                hi = min(lo + SELECT_FANOUT, mux_width)
                group = m.submodules[f"shift{k}_{lo // SELECT_FANOUT}"] = _MuxGroup(
                    width=hi - lo, init=(shift_init >> k) & 1)
                m.d.comb += [
                    group.valid.eq(state.valid), group.ready.eq(self.o.ready),
                    group.if_taken.eq(if_taken.shift[k]), group.if_kept.eq(if_kept.shift[k]),
                    group.a.eq(level[lo:hi]),
                    group.b.eq(level[lo + step:hi + step]),
                    shifted[lo:hi].eq(group.o),
                ]
            level = shifted
        # The record register in slices of SELECT_FANOUT bits, each with its own copy of the clock
        # enable (a record offered and not taken is kept), so no LUT enables the whole record; with
        # record_ready_copies each on its own copy of o.ready.
        if self.record_ready_copies:
            slice_ready = self.record_ready
            m.d.sync += Assert(slice_ready == Mux(self.o.ready, (1 << self.record_slices) - 1, 0),
                               "gearbox: a copy of o.ready (record_ready) differs from o.ready")
        else:
            slice_ready = self.o.ready.replicate(self.record_slices)
        for n, lo in enumerate(range(0, width_max, SELECT_FANOUT)):
            hi = min(lo + SELECT_FANOUT, width_max)
            part = m.submodules[f"record_{n}"] = _RecordSlice(width=hi - lo)
            m.d.comb += [part.valid.eq(state.valid), part.ready.eq(slice_ready[n]), part.d.eq(level[lo:hi]),
                         self.o.payload[lo:hi].eq(part.q)]
        return m


def uses_count_tables(platform) -> bool:
    """Whether ``platform`` asks for the gearbox's count tables (see :class:`CountTablesPlatform`)."""
    return bool(getattr(platform, "gearbox_count_tables", False))


class CountTablesPlatform:
    """A platform object (or mix-in) that elaborates every candidate of the gearbox's next state as a table.

    ``rtl/synth.py`` elaborates with it.  Each candidate is then an ``Array`` of constants indexed by
    the count's bits: after LUT mapping one LUT per bit, no adders or carry chains (the clock).  Without
    it (simulation, formal, ``septet verilog``) the same values come from adders and compares of the
    count, which the solvers and simulators handle far better (the gearbox's bounded proof at depth 16
    did not finish in 1,800 s with the tables, and takes minutes with the arithmetic).  Both forms
    come from one formula, :meth:`_Counts.fields`; ``tests/rtl/test_gearbox.py`` checks them equal
    for every count and every delta the gearbox uses.
    """

    gearbox_count_tables = True


def _indexed(values, index) -> Value:
    """``values[index]`` for every value of ``index``'s bits (an index past the last picks the last).

    A count of values that is not a power of two is padded to the index's range, so that the
    generated ``case`` covers every index (lint-clean with three record sizes); a power of two of
    values is ``Array(values)[index]`` itself (the same Verilog as before the padding existed).
    """
    values, index = list(values), Value.cast(index)
    if len(values) & (len(values) - 1):
        values += [values[-1]] * ((1 << len(index)) - len(values))
    return Array(values)[index]


def _size_of(sizes, index, shape) -> Value:
    """``sizes[index]`` (``index`` a ``Value``; an index past the last: the last entry), a ``shape`` constant per entry.

    A chain of multiplexers over the entries that differ from the last one (the gearbox's size of a
    record index, in the gearbox and in :class:`_RecordSize`).
    """
    chosen = Const(sizes[-1], shape)
    for n in reversed(range(len(sizes) - 1)):
        if sizes[n] != sizes[-1]:
            chosen = Mux((index < 1) if n == 0 else (index == n), sizes[n], chosen)   # (no `== 0`: lint)
    return chosen


def _choose(condition, if_true, if_false):
    """``Mux(condition, if_true, if_false)``, or ``if_true if condition else if_false`` on ints."""
    if any(isinstance(v, Value) for v in (condition, if_true, if_false)):
        return Mux(condition, if_true, if_false)
    return if_true if condition else if_false


class _Counts:
    """The candidates of the gearbox's next state: the state a count of ``free + delta`` units makes.

    ``fields`` is the one formula; ``table`` and ``arithmetic`` are its two hardware forms (a
    ``candidate_layout`` value), equal for every value of the count's ``free_bits`` bits.
    """

    def __init__(self, *, units, word_units, sizes, free_bits, shift_bits, shift_limit, layout):
        self.units, self.word_units, self.sizes = units, word_units, tuple(sizes)
        self.free_bits, self.shift_bits, self.shift_limit, self.layout = free_bits, shift_bits, shift_limit, layout

    @property
    def deltas(self):
        """Every ``delta`` the gearbox builds a candidate for: a word alone, and each record size with and without one."""
        return sorted({-self.word_units, *self.sizes, *(size - self.word_units for size in self.sizes)})

    def fields(self, free, delta):
        """Each field of the candidate with count ``free + delta`` (``free`` an int or a ``Value``), unpacked."""
        Cu, Wu, sizes = self.units, self.word_units, self.sizes
        return {
            "free": [free + delta],
            "full": [free <= Cu - size - delta for size in sizes],
            "tail": [free > Cu - size - Wu - delta for size in sizes],
            "shift": [_choose(free <= Cu - size - delta, free + (delta + size), free + delta) for size in sizes],
            "room": [(free >= Wu - delta)],
        }

    def _widths(self):
        return {"free": self.free_bits, "full": 1, "tail": 1, "shift": self.shift_bits, "room": 1}

    def candidate_at(self, free: int, delta: int) -> int:
        """The candidate for the int count ``free`` (an int in ``layout``): each field modulo its width."""
        widths, total = self._widths(), 0
        for name, values in self.fields(free, delta).items():
            packed = sum((int(v) % (1 << widths[name])) << (widths[name] * n) for n, v in enumerate(values))
            total |= packed << self.layout[name].offset
        return total

    def table(self, count, delta: int) -> Value:
        """The candidate as a table of every value of ``count``'s bits: each output bit one LUT of them."""
        return Array(Const(self.candidate_at(n, delta), self.layout.size) for n in range(1 << self.free_bits))[count]

    def arithmetic(self, count, delta: int) -> Value:
        """The candidate from adders and compares of ``count``."""
        widths = self._widths()
        return Cat(*(Value.cast(v)[:widths[name]] for name, values in self.fields(count, delta).items()
                     for v in values))


class _PickRegister(wiring.Component):
    """``q <= if_taken if valid & ready else if_kept`` (reset to ``init``): the gearbox's next-state pick.

    A submodule so that synthesis keeps the pick as one LUT (valid, ready and the two candidates)
    in front of each flip-flop instead of merging it into the logic that computes the candidates:
    the consumer's handshake, the latest signal of the cycle, passes one LUT.
    """

    def __init__(self, *, width: int, init: int = 0):
        self.init = init
        super().__init__({"valid": In(1), "ready": In(1), "if_taken": In(width), "if_kept": In(width),
                          "q": Out(width)})

    def elaborate(self, platform):
        m = Module()
        q = Signal(len(self.q), init=self.init)
        m.d.sync += q.eq(Mux(self.valid & self.ready, self.if_taken, self.if_kept))
        m.d.comb += self.q.eq(q)
        return m


class _WordPick(wiring.Component):
    """The gearbox's next state if the offered record is taken, and if it is kept, the word's transfer resolved.

    ``if_kept = kept_word if word_valid & ready else kept``; ``if_taken`` is ``flushed`` (the state
    after reset) with the flush (``restart & ending``), else ``taken[size][1 if word_valid & ready
    else 0]`` with ``select`` as its record.  A submodule so that synthesis computes these from the
    complete candidates (which depend on registers only) in about two LUTs, the word's valid, the
    next record's size and the flush entering last, instead of merging them into the candidates'
    tables.  The flush is computed here, so that synthesis can fold it into each bit's pick: as one
    LUT of its own in the gearbox it was a net to every bit (4+3 seed 2: ``restart`` -> 2.2 ns ->
    the flush LUT -> 2.2 ns -> a bit's pick).

    Parameters
    ----------
    width : int
        Width of the gearbox's state.
    sizes : int
        Distinct record sizes (candidates of a record taken: two per size).
    select : int
        Offset of the state's ``select`` field (replaced by ``select`` in ``if_taken``).
    select_bits : int
        Width of that field.
    flushed : int
        The state after a flush (the state after reset).
    """

    def __init__(self, *, width: int, sizes: int, select: int, select_bits: int, flushed: int):
        self.select_offset, self.flushed = select, flushed
        super().__init__({
            "word_valid": In(1), "ready": In(1), "size": In(range(max(2, sizes))), "select": In(select_bits),
            "restart": In(1), "ending": In(1), "kept": In(width), "kept_word": In(width),
            "taken": In(data.ArrayLayout(data.ArrayLayout(width, 2), sizes)),
            "if_taken": Out(width), "if_kept": Out(width),
        })

    def elaborate(self, platform):
        m = Module()
        word = self.word_valid & self.ready
        taken = [Mux(word, per_size[1], per_size[0]) for per_size in self.taken]
        taken = _indexed(taken, self.size) if len(taken) > 1 else taken[0]
        offset, bits = self.select_offset, len(self.select)
        taken = Cat(taken[:offset], self.select, taken[offset + bits:])
        m.d.comb += [
            self.if_kept.eq(Mux(word, self.kept_word, self.kept)),
            self.if_taken.eq(Mux(self.restart & self.ending, self.flushed, taken)),
        ]
        return m


class _RecordSize(wiring.Component):
    """``size = first if restart else sizes[next_select]`` (an index past the last: the last's size).

    The size index of the gearbox's next record.  A submodule so that synthesis computes it in one
    LUT of ``restart`` and ``next_select`` rather than from the next record's select bits.
    """

    def __init__(self, *, sizes: tuple, first: int, select_bits: int, size_bits: int):
        self.sizes, self.first = sizes, first
        super().__init__({"restart": In(1), "next_select": In(select_bits), "size": Out(size_bits)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.size.eq(Mux(self.restart, self.first, _size_of(self.sizes, self.next_select, len(self.size))))
        return m


class _BufferSlice(wiring.Component):
    """Bits of the gearbox's buffer with their own clock enable: loaded when a word is taken (``word_valid & ready``)."""

    def __init__(self, *, width: int):
        super().__init__({"word_valid": In(1), "ready": In(1), "d": In(width), "q": Out(width)})

    def elaborate(self, platform):
        m = Module()
        q = Signal(len(self.q), reset_less=True)
        with m.If(self.word_valid & self.ready):
            m.d.sync += q.eq(self.d)
        m.d.comb += self.q.eq(q)
        return m


class _MuxGroup(wiring.Component):
    """``o = b if select else a``, ``select`` a private register picked like the gearbox's state (reset to ``init``).

    One group of a level of the gearbox's shifter: each group keeps its own copy of the select
    line (its own pick of the shift bit's two candidates), so the line fans out to this group's
    multiplexers only.
    """

    def __init__(self, *, width: int, init: int):
        self.init = init
        super().__init__({"valid": In(1), "ready": In(1), "if_taken": In(1), "if_kept": In(1),
                          "a": In(width), "b": In(width), "o": Out(width)})

    def elaborate(self, platform):
        m = Module()
        select = Signal(init=self.init)
        m.d.sync += select.eq(Mux(self.valid & self.ready, self.if_taken, self.if_kept))
        m.d.comb += self.o.eq(Mux(select, self.b, self.a))
        return m


class _RecordSlice(wiring.Component):
    """Bits of the gearbox's record register with their own clock enable: loaded unless a record is offered and not taken."""

    def __init__(self, *, width: int):
        super().__init__({"valid": In(1), "ready": In(1), "d": In(width), "q": Out(width)})

    def elaborate(self, platform):
        m = Module()
        q = Signal(len(self.q), reset_less=True)
        with m.If(~self.valid | self.ready):
            m.d.sync += q.eq(self.d)
        m.d.comb += self.q.eq(q)
        return m
