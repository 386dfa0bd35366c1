# amaranth: UnusedElaboratable=no
"""Formal harnesses, written against block PORTS and behaviour (never internal signal names).

Every free input is a top-level port of the harness.  Amaranth 0.5 has no ``Past`` or
``AnyConst``: past values are registered here, and "any" values are inputs.

* :class:`GearboxHarness` — every input bit leaves exactly once, in order, at the offset the
  record widths say, under any valid/ready/next_select pattern; the buffer never holds more than its
  capacity; a record is valid exactly when enough bits are held; the input is ready exactly when
  a word fits (so the bus is never idled by the gearbox).
* :class:`TileHarness` — the whole tile with every input free (reset included): the stream rules
  at its ports and the RTL's own invariants (credits, output queue, gearbox capacity), plus: no
  result without a block, and never more blocks pending than the queue holds.
* :class:`AccumulationHarness` — the MAC lanes and the epilogue (drain, group scaler, gather) fed
  any well-formed sequence of headers and beats (any data, any grouping, at most ``max_k`` rows per block): every block
  result equals the exact (unbounded) sum, so no slot sum or accumulator overflows.

``broken=True`` builds a deliberately broken variant that the proof must reject.
"""

from __future__ import annotations


from amaranth.hdl import Assert, Assume, Cat, Cover, Elaboratable, Module, Mux, Signal, Value, signed
from amaranth.lib import data, fifo

from rtl.gearbox import Gearbox
from rtl.layouts import block_result_layout, group_sums_layout, header_layout, lane_op_layout
from rtl.params import TileParams

__all__ = ["GearboxHarness", "TileHarness", "AccumulationHarness"]


def _flat_ports(interface) -> list:
    """Every port Value of a wiring component (for ``rtlil.convert``'s ``ports``)."""
    ports = []
    for _path, _member, value in interface.signature.flatten(interface):
        ports.append(Value.cast(value))
    return ports


class GearboxHarness(Elaboratable):
    """Bit order, capacity and readiness of :class:`~rtl.gearbox.Gearbox`, from its ports.

    A port-level model counts the bits held (``held``: bits in minus bits out).  When ``arm``
    is high during an input transfer, the bit at offset ``pick`` of that word is followed: its
    distance from the bottom of the buffer shrinks by each record taken, and the record that
    contains it must carry its value at that offset.  Since ``arm`` and ``pick`` are free, this
    holds for every bit of every word.  ``restart`` is free except while ``ending`` (one
    stream: the flush is covered by the simulation tests); with it the next record is the first.

    ``broken``: a wrapper that says ready one cycle too often (when the consumer stalls) and
    drops that word.
    """

    def __init__(self, *, in_width: int, record_widths, broken: bool = False):
        self.gear = Gearbox(in_width=in_width, record_widths=record_widths)
        self.W, self.widths, self.C = in_width, tuple(record_widths), self.gear.capacity
        self.broken = broken
        self.i_valid, self.i_data, self.i_last = Signal(), Signal(in_width), Signal()
        self.i_ready = Signal()
        self.o_ready, self.next_select, self.restart = Signal(), Signal(range(len(self.widths))), Signal()
        self.o_valid, self.o_payload = Signal(), Signal(max(self.widths))
        self.arm, self.pick = Signal(), Signal(range(in_width))

    @property
    def ports(self):
        return [self.i_valid, self.i_data, self.i_last, self.i_ready, self.o_ready, self.next_select, self.restart,
                self.o_valid, self.o_payload, self.arm, self.pick]

    def elaborate(self, platform):
        m = Module()
        m.submodules.gear = gear = self.gear
        W, C = self.W, self.C
        lie = Signal()
        if self.broken:
            m.d.comb += lie.eq(gear.o.valid & ~self.o_ready & ~gear.i.ready)
        m.d.comb += [
            gear.i.valid.eq(self.i_valid & ~lie), gear.i.payload.data.eq(self.i_data),
            gear.i.payload.last.eq(self.i_last), self.i_ready.eq(gear.i.ready | lie),
            gear.o.ready.eq(self.o_ready), gear.next_select.eq(self.next_select),
            gear.restart.eq(self.restart & ~gear.ending),
            self.o_valid.eq(gear.o.valid), self.o_payload.eq(gear.o.payload),
        ]
        m.d.comb += Assume(self.pick < W)

        # The record width the gearbox offers: the first after reset, then the one named at each transfer.
        select = Signal(range(len(self.widths)), init=self.gear.first_select)
        width = Signal(range(max(self.widths) + 1))
        with m.Switch(select):
            for index, w in enumerate(self.widths):
                with m.Case(index):
                    m.d.comb += width.eq(w)
        with m.If(self.next_select >= len(self.widths)):
            m.d.comb += Assume(0)

        took_in = self.i_valid & self.i_ready
        took_out = self.o_valid & self.o_ready
        with m.If(took_out):
            m.d.sync += select.eq(Mux(gear.restart, self.gear.first_select, self.next_select))
        held = Signal(range(C + W + 1))
        last_in = Signal()
        after_out = Signal(range(C + W + 1))
        m.d.comb += after_out.eq(Mux(took_out, held - width, held))
        m.d.sync += held.eq(after_out + Mux(took_in, W, 0))
        with m.If(took_in & self.i_last):
            m.d.sync += last_in.eq(1)

        # Capacity, validity and readiness, exactly as documented.
        m.d.comb += [
            Assert(held <= C, "gearbox holds more bits than its capacity"),
            Assert(self.o_valid == (held >= width), "a record is valid exactly when its bits are held"),
            Assert(self.i_ready == (~last_in & (held <= C - W)), "ready exactly when a word fits"),
        ]

        # Follow one bit.
        tracking = Signal()
        dist = Signal(range(C + W + 1))
        value = Signal()
        with m.If(tracking & took_out):
            with m.If(dist < width):
                m.d.comb += Assert(self.o_payload.bit_select(dist, 1) == value,
                                   "a followed bit left at the wrong place or with the wrong value")
                m.d.comb += Cover(dist >= width - 1)        # the bit was the top bit of its record
                m.d.sync += tracking.eq(0)
            with m.Else():
                m.d.sync += dist.eq(dist - width)
        with m.If(~tracking & self.arm & took_in):
            m.d.sync += [tracking.eq(1), dist.eq(after_out + self.pick), value.eq(self.i_data.bit_select(self.pick, 1))]
        m.d.comb += [
            Cover(held == C),                                       # buffer completely full
            Cover(tracking & took_out & (dist < width) & (self.pick == W - 1) & (select == 0)),
            Cover(self.i_valid & ~self.i_ready & ~last_in),          # the bus held back by a full buffer
        ]
        return m


def _shallow_queue(queue_class):
    """``OutputQueue`` stand-in for the broken tile: the output queue a single entry, whatever its credits assume.

    (One entry shallower than the credits also breaks the tile, but with the pipelined epilogue the
    queue first overflows only at step 38, too deep for ``make test``'s quick check.)
    """
    return lambda *, width, depth: queue_class(width=width, depth=1)


class TileHarness(Elaboratable):
    """The tile with every input free: its stream rules and invariants, plus port-level counts.

    ``broken``: the output queue built with a single entry although the credits assume more (the
    tile module's ``OutputQueue`` replaced while it elaborates).
    """

    def __init__(self, *, params: TileParams, broken: bool = False):
        from rtl.tile import SeptetTile

        self.params, self.broken = params, broken
        self.tile = SeptetTile(params=params)

    @property
    def ports(self):
        return _flat_ports(self.tile)

    def elaborate(self, platform):
        import rtl.tile as tile_module

        m = Module()
        p, tile = self.params, self.tile
        if self.broken:
            saved = tile_module.OutputQueue
            tile_module.OutputQueue = _shallow_queue(saved)
            try:
                m.submodules.tile = tile.elaborate(platform)
            finally:
                tile_module.OutputQueue = saved
        else:
            m.submodules.tile = tile
        block_in = tile.act.valid & tile.act.ready & tile.act.payload.last
        result_out = tile.result.valid & tile.result.ready
        pending = Signal(range(p.output_queue_depth + 2))
        m.d.sync += pending.eq(pending + block_in - result_out)
        m.d.comb += [
            Assert(~result_out | (pending > 0) | block_in, "a result without a block"),
            Assert(pending <= p.output_queue_depth, "more blocks pending than the output queue holds"),
            Cover(result_out & tile.result.payload.last),                     # a whole GEMV
            Cover((pending == p.output_queue_depth) & tile.act.valid & ~tile.act.ready),   # credits exhausted
            Cover(tile.weights.valid & ~tile.weights.ready),                  # the bus held back
        ]
        if p.requant:
            m.d.comb += Cover(tile.act.valid & tile.act.payload.last & ~tile.params_in.valid
                              & ~tile.act.ready)                              # a block waits for its params
        return m


class AccumulationHarness(Elaboratable):
    """MAC lanes then the epilogue, for every block of at most ``max_k`` rows: no sum leaves its width.

    The operations are free inputs constrained to the sequencer's grammar: a header, then one or
    more beats, the last of a group marked ``group_end``, the last of a block ``block_end`` (which
    ends its group).  A block has at most ``max_k / 2`` beats, a group at most ``group_size / 2``.  Any data: activations, codes,
    zero points, mantissas.  A reference keeps every running sum exactly (80 bits, which cannot
    wrap at these depths) and checks:

    * ``bounds``: each exact value fits the width the RTL gives it on its ports (a lane's slot
      sums and the activation sums: ``group_sums_layout``'s, at ``TileParams.slot_sum_bits`` and
      ``act_sum_bits``; the corrected sum, the slot sum's width, which the scaler computes it in;
      the block result: ``block_result_layout``'s ``acc_width``), so nothing the RTL holds can
      overflow for any input.  The group scale is taken at its maximum ``2**16 - 1`` (a multiplier
      bound is hard for the solver; ``|Σ m_g corr_g| <= (2**16-1) Σ |corr_g|`` and the free data
      reach the right-hand side, so the bound covers every mantissa);
    * ``exact``: the RTL's block results equal the exact ones.  Multiplier equivalence is hard for
      an SMT solver, so here the mantissas are the constant ``2**16 - 1`` (the largest, which
      makes the largest sums); other mantissas are covered by the simulation tests.

    ``broken``: the accumulator one bit narrower than ``params.acc_width``.
    """

    def __init__(self, *, params: TileParams, check: str = "bounds", broken: bool = False):
        from rtl.epilogue import Epilogue
        from rtl.lanes import MacLanes

        if check not in ("bounds", "exact"):
            raise ValueError(f"check must be 'bounds' or 'exact', got {check!r}")
        if broken:
            narrow = TileParams(fmt=params.fmt, arithmetic=params.arithmetic, lanes=params.lanes,
                                bus_width=params.bus_width, group_size=params.group_size, max_k=params.max_k,
                                acc_width=params.acc_width, requant=params.requant)
            object.__setattr__(narrow, "acc_width", params.acc_width - 1)
            params = narrow
        self.params, self.check = params, check
        self.lanes = self.scaler = None
        if check == "exact":
            self.lanes, self.scaler = MacLanes(params=params), Epilogue(params=params)
        self.op = Signal(lane_op_layout(params))
        self.op_valid = Signal()

    @property
    def ports(self):
        ports = [self.op_valid, Value.cast(self.op)]
        if self.check == "exact":
            ports += [Value.cast(self.scaler.o.valid), Value.cast(self.scaler.o.payload)]
        return ports

    def elaborate(self, platform):
        m = Module()
        p = self.params
        lanes, scaler = self.lanes, self.scaler
        op = self.op
        # Wide enough for any block the grammar allows, by a crude bound (no cancellation): per beat
        # |a * q| < 2**16, |z * Σa| < 2**16 per row; a block has at most max_k rows, max_k/2 groups, mantissas < 2**16.
        wide = (p.max_k * p.max_k * (1 << 36)).bit_length() + 2
        # The widths the RTL's ports give the sums: a lane's slot sums and the activation sums (at their
        # bounds, TileParams.slot_sum_bits and act_sum_bits) and the block result.
        sums = group_sums_layout(p)
        slot_bits = [field.shape.width for _, field in sums["acc"].shape.elem_shape]
        sa_bits = sums["sa"].shape.elem_shape.width
        y_bits = block_result_layout(p)["y"].shape.elem_shape.width

        record = Signal(p.record_bits)
        m.d.comb += record.eq(op.record)
        if self.check == "exact":
            m.submodules.lanes, m.submodules.scaler = lanes, scaler
            m.d.comb += [scaler.i.valid.eq(lanes.o.valid), scaler.i.payload.eq(lanes.o.payload),
                         lanes.i.valid.eq(self.op_valid), lanes.i.payload.eq(op)]
            with m.If(op.header):
                view = data.View(header_layout(p), record[:p.header_bits])
                for lane in range(p.lanes):
                    for t in range(p.n_slots):
                        m.d.comb += view[lane][f"s{t}"].mant.eq((1 << 16) - 1)
            m.d.comb += lanes.i.payload.record.eq(record)

        # The sequencer's grammar.
        need_header = Signal(init=1)
        beats = Signal(range(p.max_k + 1))
        group_beats = Signal(range(p.max_k + 1))     # a group has at most group_size / 2 beats
        with m.If(self.op_valid):
            m.d.comb += Assume(op.header == need_header)
            with m.If(op.header):
                m.d.sync += need_header.eq(0)
            with m.Else():
                m.d.comb += [Assume(~op.block_end | op.group_end), Assume(~op.last | op.block_end),
                             Assume(beats < p.max_k // 2)]
                if p.group_pairs is not None:
                    m.d.comb += Assume(group_beats < p.group_pairs)
                m.d.sync += [beats.eq(Mux(op.block_end, 0, beats + 1)),
                             group_beats.eq(Mux(op.group_end, 0, group_beats + 1))]
                with m.If(op.group_end):
                    m.d.sync += need_header.eq(1)
        if p.arithmetic.value == "shared":      # zero points on the shared grid are even (exactly representable)
            hdr_in = data.View(header_layout(p), record[:p.header_bits])
            with m.If(self.op_valid & op.header):
                for lane in range(p.lanes):
                    m.d.comb += Assume(hdr_in[lane].s0.zero[:p.odd_shift] == 0)

        def fits(value, bits):
            return (value >= -(1 << (bits - 1))) & (value < (1 << (bits - 1)))

        # The exact reference.
        header = Signal(header_layout(p))
        acc = [[Signal(signed(wide), name=f"ref_acc{lane}_{t}") for t in range(p.n_slots)] for lane in range(p.lanes)]
        sa = [Signal(signed(wide), name=f"ref_sa{t}") for t in range(p.n_slots)]
        y = [Signal(signed(wide), name=f"ref_y{lane}") for lane in range(p.lanes)]
        with m.If(self.op_valid & op.header):
            m.d.sync += header.eq(record[:p.header_bits])
        act = [op.act.even, op.act.odd]
        act_terms = act if p.n_slots == 2 else [act[0] + act[1]]
        expect = [Signal(signed(wide), name=f"expect{lane}") for lane in range(p.lanes)]
        beat = self.op_valid & ~op.header
        with m.If(beat):
            for t in range(p.n_slots):
                group_sa = sa[t] + act_terms[t]
                m.d.sync += sa[t].eq(Mux(op.group_end, 0, group_sa))
                m.d.comb += Assert(fits(group_sa, sa_bits), "an activation sum leaves its width")
            for lane in range(p.lanes):
                pair = record.word_select(lane, p.pair_bits)
                codes = [pair[:p.fmt.even_bits], pair[p.fmt.even_bits:p.pair_bits] << p.odd_shift]
                terms = ([act[0] * codes[0], act[1] * codes[1]] if p.n_slots == 2
                         else [act[0] * codes[0] + act[1] * codes[1]])
                total_y = y[lane]
                for t in range(p.n_slots):
                    group_acc = acc[lane][t] + terms[t]
                    slot = header[lane][f"s{t}"]
                    corr = Signal(signed(wide), name=f"ref_corr{lane}_{t}")
                    m.d.comb += corr.eq(group_acc - slot.zero * (sa[t] + act_terms[t]))
                    if self.check == "exact":
                        total_y = total_y + slot.mant * corr
                    else:
                        # The largest mantissa: |y| = |Σ m_g corr_g| <= Σ (2**16-1) |corr_g|, which the free data
                        # reaches with every corr_g of one sign, so the bound proved here holds for every mantissa.
                        total_y = total_y + ((corr << 16) - corr)
                    m.d.sync += acc[lane][t].eq(Mux(op.group_end, 0, group_acc))
                    m.d.comb += Assert(fits(group_acc, slot_bits[t]), "a lane's slot sum leaves its width")
                    with m.If(op.group_end):
                        m.d.comb += Assert(fits(corr, slot_bits[t]), "a corrected group sum leaves its width")
                m.d.sync += y[lane].eq(Mux(op.block_end, 0, Mux(op.group_end, total_y, y[lane])))
                m.d.comb += expect[lane].eq(total_y)
                with m.If(op.group_end):
                    m.d.comb += Assert(fits(total_y, y_bits), "a block's running result leaves the accumulator")
        extreme = 1 << (y_bits - 2)
        m.d.comb += [
            Cover(beat & op.block_end & (expect[0] >= extreme)),     # a result that needs the accumulator's top bits
            Cover(beat & op.block_end & (expect[0] < -extreme)),
        ]
        if self.check == "exact":
            # Expected block results wait in a queue until the scaler reports them (any latency).
            m.submodules.expected = expected = fifo.SyncFIFO(width=wide * p.lanes, depth=4)
            m.d.comb += [
                expected.w_en.eq(beat & op.block_end),
                expected.w_data.eq(Cat(*expect)),
                expected.r_en.eq(scaler.o.valid),
                Assert(expected.w_rdy | ~expected.w_en, "harness: expectation queue too shallow"),
            ]
            with m.If(scaler.o.valid):
                m.d.comb += Assert(expected.r_rdy, "a block result without a block")
                for lane in range(p.lanes):
                    m.d.comb += Assert(scaler.o.payload.data[lane] == expected.r_data.word_select(lane, wide).as_signed(),
                                       "a block result differs from the exact sum")
        return m
