"""The septet tile: gearbox -> decode -> MAC lanes -> correction and group scaling -> requantization."""

from __future__ import annotations

from amaranth.hdl import Assert, Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out, connect

from rtl.checks import stream_rules
from rtl.registers import register_slices
from rtl.epilogue import Epilogue
from rtl.gearbox import Gearbox
from rtl.lanes import MacLanes
from rtl.layouts import act_layout, requant_lanes_layout, result_layout, word_layout
from rtl.params import TileParams

__all__ = ["SeptetTile", "OutputQueue", "BEAT", "OUTPUT_QUEUE_LATENCY", "RESULT_REGISTER_LATENCY"]

#: The output queue (:class:`OutputQueue`): a result written is readable in the next cycle.
OUTPUT_QUEUE_LATENCY = 1

#: Bits of a queue entry per slice of the output queue (each slice its own copy of the addresses).
QUEUE_SLICE_BITS = 96

#: The epilogue's result is registered before the output queue (for the clock: the queue's write
#: enable fans out to every LUT-RAM cell of the queue, so it starts from a register).
RESULT_REGISTER_LATENCY = 1

#: Bits of the record multiplexer (collected header chunks or the gearbox's record) per copy of ``in_header``.
HEADER_FANOUT = 32

#: Gearbox record selector of a BEAT (header chunks use the others, see ``TileParams.gearbox_record_widths``).
BEAT = 0


class SeptetTile(wiring.Component):
    """One GEMV tile on Amaranth streams.

    The sequencer alternates the gearbox between HEADER and BEAT records: per group a
    header (taken on its own), then one beat per activation pair, each beat joined with
    its pair (a transfer on both streams in the same cycle).  A group closes every
    ``group_size / 2`` pairs and at the activation ``last`` (the block end); a block's
    result leaves on ``result``, marked ``last`` when the gearbox has reached the zero
    fill of the weight stream's final word, which it then discards.

    Backpressure: a block's last beat enters the lanes only when the output queue has a
    free entry reserved for its result (a credit per entry), so the fixed-latency
    pipeline behind the lanes never needs to stall and no result is lost; a stalled
    ``result`` stalls the beats, which stall the activation and weight streams.

    Parameters
    ----------
    params : TileParams, optional
        All build parameters; if not given, ``TileParams(**kwargs)``.
    **kwargs
        Keyword-only build parameters (see :class:`~rtl.params.TileParams`).

    Attributes
    ----------
    weights : In(stream.Signature(word_layout(params)))
        Bus words of the packed stream; ``last`` on the GEMV's final word.
    act : In(stream.Signature(act_layout()))
        Activation pairs, re-sent for each column block; ``last`` on a block's final pair.
    params_in : In(stream.Signature(requant_lanes_layout(params)))
        Only with ``requant``: one beat of per-lane multiplier and shift per block.
    result : Out(stream.Signature(result_layout(params)))
        One beat per block; ``last`` on the GEMV's final block.
    """

    def __init__(self, *, params: "TileParams | None" = None, **kwargs):
        if params is None:
            params = TileParams(**kwargs)
        elif kwargs:
            raise ValueError(f"give either params or keyword parameters, not both (got {sorted(kwargs)})")
        self.params = params
        members = {
            "weights": In(stream.Signature(word_layout(params))),
            "act": In(stream.Signature(act_layout())),
            "result": Out(stream.Signature(result_layout(params))),
        }
        if params.requant:
            members["params_in"] = In(stream.Signature(requant_lanes_layout(params)))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        p = self.params

        chunks = p.header_chunks
        record_widths = p.gearbox_record_widths
        first_chunk = record_widths.index(chunks[0])       # the gearbox's record selector of a header's first chunk
        m.submodules.gearbox = gear = Gearbox(in_width=p.bus_width, record_widths=record_widths,
                                              capacity=p.gearbox_capacity, first_select=first_chunk,
                                              record_ready_copies=True)
        m.submodules.lanes = lanes = MacLanes(params=p)
        m.submodules.out_queue = queue = OutputQueue(width=result_layout(p).size, depth=p.output_queue_depth)
        connect(m, wiring.flipped(self.weights), gear.i)
        m.submodules.epilogue = epilogue = Epilogue(params=p)
        connect(m, lanes.o, epilogue.i)
        results = epilogue.o
        result_valid = Signal()
        result_data = Signal(result_layout(p).size, reset_less=True)
        m.d.sync += [result_valid.eq(results.valid), result_data.eq(results.payload)]
        m.d.comb += [
            queue.w_en.eq(result_valid),
            queue.w_en_next.eq(results.valid),
            queue.w_data.eq(result_data),
            self.result.valid.eq(queue.r_rdy),
            self.result.payload.eq(queue.r_data),
            queue.r_en.eq(self.result.ready),
        ]

        # Credits: block results in flight or queued never exceed the queue's depth.
        # `has_credit` is a register (in_flight < depth, from the next count), so the beat's handshake starts from flags.
        # One value beyond the depth, so that the Assert below can see an overflow (over range(depth + 1) it was
        # a constant compare whenever depth + 1 is a power of two, e.g. the 3+3 requantizing tile's depth 7).
        in_flight = Signal(range(p.output_queue_depth + 2))
        in_flight_next = Signal.like(in_flight)
        has_credit = Signal(init=1)
        has_credit_next = Signal()
        block_issued = Signal()
        result_taken = Signal()
        m.d.comb += [result_taken.eq(self.result.valid & self.result.ready),
                     in_flight_next.eq(in_flight + block_issued - result_taken),
                     has_credit_next.eq(in_flight_next < p.output_queue_depth)]
        m.d.sync += [in_flight.eq(in_flight_next), has_credit.eq(has_credit_next)]

        # Group ends at least epilogue_interval cycles apart (one group in the drain at a time).
        # `epilogue_free` is a register (epilogue_wait == 0), so the beat's handshake starts from flags;
        # at an interval of 1 (L = 1) nothing waits and it stays 1.
        spaced = p.epilogue_interval > 1
        epilogue_wait = Signal(range(max(p.epilogue_interval, 2)))     # not zero bits wide at L = 1
        epilogue_free = Signal(init=1)
        epilogue_free_next = Signal(init=1)
        if spaced:
            m.d.comb += epilogue_free_next.eq(epilogue_wait <= 1)
        m.d.sync += epilogue_free.eq(epilogue_free_next)
        with m.If(~epilogue_free):
            m.d.sync += epilogue_wait.eq(epilogue_wait - 1)

        go_last = Signal(init=1)                    # has_credit & epilogue_free, a register of their next values
        go_mid = Signal(init=1)                     # ~last_pair | epilogue_free (with groups), likewise
        go_mid_next = Signal(init=1)
        m.d.sync += [go_last.eq(has_credit_next & epilogue_free_next), go_mid.eq(go_mid_next)]
        if p.group_pairs is not None:
            pair_in_group = Signal(range(p.group_pairs))
            last_pair = Signal(init=int(p.group_pairs == 1))     # registered: pair_in_group == group_pairs - 1
            last_pair_next = Signal()
            m.d.comb += [last_pair_next.eq(last_pair), go_mid_next.eq(~last_pair_next | epilogue_free_next)]
            m.d.sync += last_pair.eq(last_pair_next)

        # Sequencer.  A group's header arrives in beat-sized chunks (params.header_chunks); all but
        # the last are collected here, the last completes the HEADER operation of the lanes.
        in_header = Signal(init=1)
        in_header_next = Signal(init=1)             # in_header's next value (its copies are registers of it)
        m.d.comb += in_header_next.eq(in_header)
        m.d.sync += in_header.eq(in_header_next)
        op = lanes.i.payload
        m.d.comb += [
            op.record.eq(gear.o.payload),
            op.act.eq(self.act.payload),
        ]
        if p.requant:
            m.d.comb += op.requant.eq(self.params_in.payload)

        collected = Signal(max(p.header_bits - chunks[-1], 1))
        chunk = Signal(len(chunks), init=1)         # one-hot: the header chunk expected next
        chunk_next = Signal(len(chunks), init=1)    # its next value (the chunk slots' copies are registers of it)
        m.d.comb += chunk_next.eq(chunk)
        m.d.sync += chunk.eq(chunk_next)
        # The lanes read a BEAT from the record's low beat_bits and a HEADER from all of it: only
        # the low beat_bits need a multiplexer; above them the collected chunks and the last
        # chunk are wired through (the lanes ignore them with a BEAT).
        last_start = p.header_bits - chunks[-1]
        # The multiplexer between the collected chunks and the gearbox's record is cut into slices of
        # HEADER_FANOUT bits, each with its own register of in_header (a submodule each, so synthesis
        # keeps the copies): in_header itself then drives only the handshake.
        if len(chunks) > 1:
            if last_start >= p.beat_bits:
                mux_bits = p.beat_bits
                header_side, beat_side = collected[:p.beat_bits], gear.o.payload[:p.beat_bits]
            else:
                mux_bits = len(op.record)
                header_side = Cat(collected[:last_start], gear.o.payload[:chunks[-1]], Const(0, mux_bits))[:mux_bits]
                beat_side = Cat(gear.o.payload, Const(0, mux_bits))[:mux_bits]
            picked = Signal(mux_bits)
            for lo in range(0, mux_bits, HEADER_FANOUT):
                hi = min(lo + HEADER_FANOUT, mux_bits)
                part = m.submodules[f"record_mux_{lo // HEADER_FANOUT}"] = _HeaderMux(width=hi - lo)
                m.d.comb += [part.in_header_next.eq(in_header_next), part.header.eq(header_side[lo:hi]),
                             part.beat.eq(beat_side[lo:hi]), picked[lo:hi].eq(part.o)]
                m.d.sync += Assert(part.in_header == in_header, "a record multiplexer's copy of in_header differs")
            if last_start >= p.beat_bits:
                m.d.comb += op.record.eq(Cat(picked, collected[p.beat_bits:last_start], gear.o.payload[:chunks[-1]]))
            else:
                m.d.comb += op.record.eq(picked)
        # A chunk's slot follows the gearbox's record while the chunk is expected (an enable from a
        # register, not from the gearbox's valid): the sequencer moves on at the transfer, so the
        # slot keeps the chunk that was taken.  For the clock each HEADER_FANOUT bits of a slot have
        # their own register of the chunk's flag (a submodule each, so synthesis keeps the copies):
        # one flag had driven the clock enables of a whole chunk, up to 9.8 ns of routing (4+3 seed 2).
        for index, width in enumerate(chunks[:-1]):
            start = sum(chunks[:index])
            for part in register_slices(m, f"chunk{index}_slot", "enable", chunk_next[index], gear.o.payload[:width],
                                        collected[start:start + width], fanout=HEADER_FANOUT,
                                        control_init=index == 0):
                m.d.sync += Assert(part.control == chunk[index], "a chunk slot's copy of its flag differs")
        # The record after the one taken now, for the gearbox (which computes its next state from it
        # before the handshake): a register, moved on with the sequencer (in beat mode BEAT, or
        # chunk 0 at a group end, which the beat-mode code below picks when they differ).
        def after(index):
            return BEAT if index == len(chunks) - 1 else record_widths.index(chunks[index + 1])

        select_after = Signal(range(len(record_widths)), init=after(0))
        m.d.comb += gear.next_select.eq(select_after)
        # A block's last beat needs a reserved output entry (and its requantization parameters);
        # a group's last beat waits until the time-shared epilogue has room for its sums.
        # For the clock the go flags are registers, from the next values of the flags they join:
        # `go_last` (a block's last beat may go: a credit and room in the epilogue) and, with groups,
        # `go_mid` (any other beat: not a group's last, or room in the epilogue); the beat's
        # handshake is then one LUT of the activation's valid and last and these flags.
        block_end = self.act.payload.last
        closing_ok = go_last & (self.params_in.valid if p.requant else 1)
        may_go = _may_go(block_end, closing_ok, go_mid)
        # The gearbox's o.ready (every record in a header; in beats, with an activation beat that may
        # go), once for the gearbox's state and once per slice of its record register, each a LUT of
        # its own (`_GearboxReady`): one LUT had reached every slice's clock enable (4+4, all three
        # seeds: the o.ready LUT -> 2.0-4.5 ns of routing -> a slice's enable, 108.7 MHz on seed 1).
        for name, ready_out in [("gearbox_ready", gear.o.ready),
                                *((f"record_ready_{n}", gear.record_ready[n]) for n in range(gear.record_slices))]:
            ready = m.submodules[name] = _GearboxReady()
            m.d.comb += [ready.in_header.eq(in_header), ready.act_valid.eq(self.act.valid),
                         ready.block_end.eq(block_end), ready.closing_ok.eq(closing_ok), ready.go_mid.eq(go_mid),
                         ready_out.eq(ready.o)]
        with m.If(in_header):
            for index, width in enumerate(chunks):
                start = sum(chunks[:index])
                with m.If(chunk[index]):
                    expected = (select_after == after(index)) if after(index) else (select_after < 1)   # (no `== 0`: lint)
                    m.d.sync += Assert(expected, "the sequencer's next record is not the next chunk")
                    with m.If(gear.o.valid):
                        m.d.sync += select_after.eq(after(index + 1) if index < len(chunks) - 1 else BEAT)
                    if index == len(chunks) - 1:
                        m.d.comb += [lanes.i.valid.eq(gear.o.valid), op.header.eq(1)]
                        with m.If(gear.o.valid):
                            m.d.comb += in_header_next.eq(0)
            with m.If(gear.o.valid):
                m.d.comb += chunk_next.eq(chunk.rotate_left(1))
        with m.Else():
            if p.group_pairs is None:
                group_end = block_end
            else:
                group_end = block_end | last_pair
            fire = gear.o.valid & self.act.valid & may_go
            if p.group_pairs is not None:
                with m.If(fire):
                    m.d.sync += pair_in_group.eq(Mux(group_end, 0, pair_in_group + 1))
                    m.d.comb += last_pair_next.eq(Mux(group_end, int(p.group_pairs == 1), pair_in_group == p.group_pairs - 2))
            if spaced:
                with m.If(fire & group_end):
                    m.d.sync += epilogue_wait.eq(p.epilogue_interval - 1)
                    m.d.comb += epilogue_free_next.eq(0)
            # A block's last beat restarts the gearbox's records at a header's first chunk, and flushes
            # the zero fill if the stream ends with it (`gear.ending`, a register): the gearbox computes
            # that state before the handshake, so the activation's `last` only picks it (no candidate
            # of the gearbox waits on the activation stream).  Any other beat names the next record
            # from registers: a header's first chunk after a group's last pair, else a beat.
            ending = block_end & gear.ending
            if first_chunk != BEAT:
                m.d.comb += gear.next_select.eq(Mux(last_pair, first_chunk, BEAT) if p.group_pairs is not None
                                                else BEAT)
            m.d.comb += [
                self.act.ready.eq(gear.o.valid & may_go),
                lanes.i.valid.eq(fire),
                op.group_end.eq(group_end),
                op.block_end.eq(block_end),
                op.last.eq(ending),
                gear.restart.eq(block_end),
                block_issued.eq(fire & block_end),
            ]
            if p.requant:
                m.d.comb += self.params_in.ready.eq(fire & block_end)
            with m.If(fire & group_end):
                m.d.comb += in_header_next.eq(1)
                m.d.sync += select_after.eq(after(0))

        # Invariants (checked in simulation, proved in formal/): the credits never let a result meet a full queue.
        m.d.sync += [
            Assert(~queue.w_en | queue.w_rdy, "a block result was written into the full output queue"),
            Assert(in_flight <= p.output_queue_depth, "more blocks in flight than the output queue holds"),
            Assert(queue.level <= in_flight, "a queued result holds no credit"),
            Assert(go_last == (has_credit & epilogue_free), "the block's go flag disagrees with the credit and the epilogue"),
        ]
        if p.group_pairs is not None:
            m.d.sync += Assert(go_mid == (~last_pair | epilogue_free), "the beat's go flag disagrees with the group's count")
        for name, port, driven_here in (("weights", self.weights, False), ("act", self.act, False),
                                        ("result", self.result, True)):
            stream_rules(m, port, name, driven_here=driven_here)
        if p.requant:
            stream_rules(m, self.params_in, "params_in", driven_here=False)
        return m


def _may_go(block_end, closing_ok, go_mid):
    """Whether an activation beat may go: a block's last beat with ``closing_ok``, any other with ``go_mid``."""
    return Mux(block_end, closing_ok, go_mid)


class _GearboxReady(wiring.Component):
    """``o = in_header | act_valid & (closing_ok if block_end else go_mid)``: one copy of the gearbox's ``o.ready``.

    In a header the sequencer takes every record; in beats a record goes with an activation beat
    that may go (a block's last beat with ``closing_ok``, any other with ``go_mid``).  A submodule,
    so that synthesis keeps every copy on a LUT of its own (the placer puts each beside its loads).
    """

    def __init__(self):
        super().__init__({"in_header": In(1), "act_valid": In(1), "block_end": In(1), "closing_ok": In(1),
                          "go_mid": In(1), "o": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.o.eq(self.in_header | (self.act_valid & _may_go(self.block_end, self.closing_ok, self.go_mid)))
        return m


class _HeaderMux(wiring.Component):
    """``o = header if in_header else beat``, ``in_header`` this slice's own register of ``in_header_next``."""

    def __init__(self, *, width: int):
        super().__init__({"in_header_next": In(1), "header": In(width), "beat": In(width), "o": Out(width),
                          "in_header": Out(1)})

    def elaborate(self, platform):
        m = Module()
        copy = Signal(init=1)
        m.d.sync += copy.eq(self.in_header_next)
        m.d.comb += [self.o.eq(Mux(copy, self.header, self.beat)), self.in_header.eq(copy)]
        return m


class OutputQueue(wiring.Component):
    """A first-in first-out queue of ``depth`` entries whose write is never refused (the tile's credits ensure room).

    ``amaranth.lib.fifo.SyncFIFO``'s ports and timing (an entry written is readable in the next
    cycle, read combinationally from LUT-RAM), except that ``w_en`` writes whether or not
    ``w_rdy``: the memory's write enable is a register, where the SyncFIFO gates it with its fill
    level; the writer gives ``w_en``'s next value as well (``w_en_next``: ``w_en`` is a register
    in the writer), and each slice keeps its own registered copy.  Writing while full is a bug of the writer, caught by
    the tile's ``Assert`` on ``w_rdy``.  For the clock the entries are stored in slices of
    ``QUEUE_SLICE_BITS`` bits, each a submodule with its own copies of the write enable and the
    write and read addresses, so none fans out to more than a slice's LUT-RAM cells.

    Parameters
    ----------
    width : int
        Bits per entry.
    depth : int
        Entries (``>= 1``).
    """

    def __init__(self, *, width: int, depth: int):
        self.width, self.depth = width, depth
        super().__init__({
            "w_en": In(1), "w_en_next": In(1), "w_data": In(width), "w_rdy": Out(1),
            "r_en": In(1), "r_data": Out(width), "r_rdy": Out(1),
            "level": Out(range(depth + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        taken = Signal()
        m.d.comb += [
            self.w_rdy.eq(self.level != self.depth), self.r_rdy.eq(self.level != 0),
            taken.eq(self.r_rdy & self.r_en),
        ]
        m.d.sync += self.level.eq(self.level + self.w_en - taken)
        for n, lo in enumerate(range(0, self.width, QUEUE_SLICE_BITS)):
            hi = min(lo + QUEUE_SLICE_BITS, self.width)
            part = m.submodules[f"slice{n}"] = _QueueSlice(width=hi - lo, depth=self.depth)
            m.d.comb += [part.w_en.eq(self.w_en), part.w_en_next.eq(self.w_en_next), part.w_data.eq(self.w_data[lo:hi]),
                         part.taken.eq(taken), self.r_data[lo:hi].eq(part.r_data)]
        return m


class _QueueSlice(wiring.Component):
    """Bits of every entry of :class:`OutputQueue`, with its own write and read addresses and write enable."""

    def __init__(self, *, width: int, depth: int):
        self.width, self.depth = width, depth
        super().__init__({"w_en": In(1), "w_en_next": In(1), "w_data": In(width), "taken": In(1),
                          "r_data": Out(width)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.storage = storage = Memory(shape=self.width, depth=self.depth, init=[])
        write = storage.write_port()
        read = storage.read_port(domain="comb")
        write_at = Signal(range(self.depth))
        read_at = Signal(range(self.depth))
        w_en = Signal()                 # this slice's copy of the queue's write enable
        m.d.sync += w_en.eq(self.w_en_next)
        m.d.comb += [
            write.addr.eq(write_at), write.data.eq(self.w_data), write.en.eq(w_en),
            read.addr.eq(read_at), self.r_data.eq(read.data),
        ]
        m.d.sync += Assert(w_en == self.w_en, "output queue: a slice's write enable differs from the queue's")
        with m.If(w_en):
            m.d.sync += write_at.eq(Mux(write_at == self.depth - 1, 0, write_at + 1))
        with m.If(self.taken):
            m.d.sync += read_at.eq(Mux(read_at == self.depth - 1, 0, read_at + 1))
        return m
