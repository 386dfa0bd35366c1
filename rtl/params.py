"""Build-time parameters of the septet tile: validation and every derived width.

One definition: the tile, its blocks, the Verilog generator, the JSON port map
and the tests all read widths and latencies from :class:`TileParams`; format
facts come from :mod:`golden.format`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from golden.checks import check_int
from golden.format import (
    ACT_MAX,
    ACT_MIN,
    OUT_BITS,
    SCALE_BITS,
    Arithmetic,
    Format,
    parse_arithmetic,
    parse_format,
)

__all__ = ["TileParams", "SLOT_ACC_BITS", "DEFAULT_ACC_WIDTH", "DEFAULT_MAX_K"]

#: Width of a lane's per-slot partial sum and of the shared activation sums (FORMAT.md section 3: int32).
SLOT_ACC_BITS = 32
#: Default wide-accumulator width: holds every format up to ``DEFAULT_MAX_K`` (FORMAT.md section 3).
DEFAULT_ACC_WIDTH = 48
#: Default largest K: covers LLaMA-70B's largest reduction (28,672) with room to spare.
DEFAULT_MAX_K = 65536

# Every block defines its own ``LATENCY`` next to its code (rtl/gearbox.py, rtl/lanes.py,
# rtl/drain.py, rtl/correct.py, rtl/requant.py, rtl/tile.py's output queue);
# ``TileParams.result_latency`` sums them.


def _signed_bits(magnitude: int) -> int:
    """Two's-complement width holding every value in ``[-magnitude, magnitude]``."""
    return magnitude.bit_length() + 1


@dataclass(frozen=True)
class TileParams:
    """The tile's build-time parameters (keyword-only, validated) and derived widths.

    Parameters
    ----------
    fmt : Format or str
        Slot widths, e.g. ``"4+3"``.
    arithmetic : {"own", "shared"}
        Own grids (a scale and zero per slot) or the shared grid.
    lanes : int
        Lanes ``L`` (columns per block), ``>= 1``.
    bus_width : int
        SRAM bus width ``W`` in bits, ``>= 1`` (any value, not only multiples of the pair width).
    group_size : int or None
        Rows per group along K (even, ``>= 2``); ``None``: per column (one group per block).
    acc_width : int
        Width of the wide per-lane accumulator; must hold ``y`` for every ``K <= max_k``.
    max_k : int
        Largest K the tile is built for; at most ``Format.max_k_int32`` so that the int32 slot
        sums cannot overflow.
    requant : bool
        Requantize results to INT8 (per-column multiplier and shift on ``s_axis_params``).
    """

    fmt: Format
    arithmetic: Arithmetic
    lanes: int
    bus_width: int
    group_size: "int | None"
    acc_width: int
    max_k: int
    requant: bool

    def __init__(self, *, fmt="4+3", arithmetic="own", lanes=16, bus_width=64, group_size=None,
                 acc_width=DEFAULT_ACC_WIDTH, max_k=DEFAULT_MAX_K, requant=False):
        fmt = parse_format(fmt)
        arithmetic = parse_arithmetic(arithmetic)
        fmt.check_arithmetic(arithmetic)
        lanes = check_int("lanes", lanes, 1)
        bus_width = check_int("bus_width", bus_width, 1)
        if group_size is not None:
            group_size = check_int("group_size", group_size, 2)
            if group_size % 2:
                raise ValueError(f"group_size must be an even integer >= 2 (or None for per column), "
                                 f"got {group_size!r}")
        k_limit = fmt.max_k_int32(arithmetic)
        max_k = check_int("max_k", max_k, 2, k_limit)
        if not isinstance(requant, bool):
            raise TypeError(f"requant must be True or False, got {requant!r}")
        object.__setattr__(self, "fmt", fmt)
        object.__setattr__(self, "arithmetic", arithmetic)
        object.__setattr__(self, "lanes", lanes)
        object.__setattr__(self, "bus_width", bus_width)
        object.__setattr__(self, "group_size", group_size)
        object.__setattr__(self, "max_k", max_k)
        object.__setattr__(self, "requant", requant)
        need = self.min_acc_width
        if not isinstance(acc_width, int) or isinstance(acc_width, bool) or not need <= acc_width <= 64:
            error = TypeError if not isinstance(acc_width, int) or isinstance(acc_width, bool) else ValueError
            raise error(f"acc_width must be an integer in [{need}, 64] ({need} bits hold every result "
                        f"of format {fmt.name} up to max_k={max_k}), got {acc_width!r}")
        object.__setattr__(self, "acc_width", acc_width)

    # -- format-derived widths -------------------------------------------------------------------

    @property
    def slot_bits(self) -> tuple:
        """Zero-point width per slot scale: ``(E, O)`` own, ``(E,)`` shared."""
        return self.fmt.group_slots(self.arithmetic)

    @property
    def n_slots(self) -> int:
        return len(self.slot_bits)

    @property
    def odd_shift(self) -> int:
        """Left shift that puts an odd code on the accumulation grid (0 for own grids)."""
        return self.fmt.odd_shift(self.arithmetic)

    @property
    def pair_bits(self) -> int:
        """P: bits of one packed pair."""
        return self.fmt.pair_bits

    @property
    def header_lane_bits(self) -> int:
        """H: header bits per lane (zero point and mantissa per slot)."""
        return self.fmt.group_header_bits_per_column(self.arithmetic)

    @property
    def header_bits(self) -> int:
        """Bits of a HEADER record: ``L * H``."""
        return self.fmt.header_record_bits(self.lanes, self.arithmetic)

    @property
    def beat_bits(self) -> int:
        """Bits of a BEAT record: ``L * P``."""
        return self.fmt.beat_record_bits(self.lanes)

    @property
    def record_bits(self) -> int:
        """Width of the gearbox output (the wider record)."""
        return max(self.header_bits, self.beat_bits)

    @property
    def header_chunks(self) -> tuple:
        """Widths of the beat-sized chunks a HEADER record is taken in, first to last.

        ``ceil(L*H / (L*P))`` chunks, as equal as the unit ``gcd(W, L*P, L*H)`` allows (larger
        first), so the gearbox never hands out more than a beat and reads at few offsets.
        """
        unit = math.gcd(self.bus_width, self.beat_bits, self.header_bits)
        n = -(-self.header_bits // self.beat_bits)
        units = self.header_bits // unit
        base, extra = divmod(units, n)
        return tuple((base + (k < extra)) * unit for k in range(n))

    @property
    def gearbox_record_widths(self) -> tuple:
        """Record widths of the gearbox: the BEAT first, then the distinct header-chunk widths."""
        return (self.beat_bits, *sorted(set(self.header_chunks), reverse=True))

    @property
    def gearbox_capacity(self) -> int:
        """Bits the gearbox can hold: a beat plus two bus words (plus what a short chunk leaves).

        Its input is ready while at most ``capacity - W`` bits are held (a decision on
        registered state only); with a record plus ``W - 1`` bits at most held whenever the
        bus is the bottleneck, two words of room keep the bus busy every cycle; a header chunk
        narrower than ``W`` leaves ``W - chunk`` more bits for a cycle, hence the extra room.
        """
        return self.beat_bits + 2 * self.bus_width + max(0, self.bus_width - min(self.header_chunks))

    @property
    def group_pairs(self) -> "int | None":
        """Pairs per group (``None``: the whole block)."""
        return None if self.group_size is None else self.group_size // 2

    # -- accumulator widths ------------------------------------------------------------------------

    @property
    def min_acc_width(self) -> int:
        """Smallest wide accumulator for ``max_k``: ``|y| <= (2**16-1) * 128 * (2**b-1) * K``."""
        bound = ((1 << SCALE_BITS) - 1) * (-ACT_MIN) * self.fmt.max_abs_centered_code(self.arithmetic) * self.max_k
        return _signed_bits(bound)

    @property
    def out_bits(self) -> int:
        """Width of one lane's result: ``OUT_BITS`` with requantization, else ``acc_width``."""
        return OUT_BITS if self.requant else self.acc_width

    # -- epilogue widths: every sum at its bound for the format, max_k and group size ---------------

    @property
    def slot_rows(self) -> int:
        """Most rows one slot sum covers: a group's rows of the slot (own: half of them), the block's per column.

        A group (the whole block per column) has at most ``group_size`` rows and at most ``K_pad <= max_k + 1``
        (``max_k`` rounded up to even); with own grids each slot sees half of them.
        """
        rows = self.max_k + self.max_k % 2
        if self.group_size is not None:
            rows = min(rows, self.group_size)
        return rows // 2 if self.n_slots == 2 else rows

    @property
    def slot_sum_bits(self) -> tuple:
        """Width per slot of a lane's group sum ``acc`` and of its correction ``corr = acc - z * Σa``.

        ``acc = Σ a * q`` with ``ACT_MIN <= a <= ACT_MAX`` and ``0 <= q <= c`` (``c = 2**b - 1`` on the slot's
        grid, the even grid when shared) and ``corr = Σ a * (q - z)`` with ``|q - z| <= c``: both lie in
        ``[-128 * c * rows, 128 * c * rows]`` for ``rows = slot_rows``.  The lanes keep int32 sums
        (``SLOT_ACC_BITS``) and hand over these low bits, exact because the value fits them; the epilogue
        computes ``corr`` modulo ``2**bits`` (exact for the same reason).
        """
        grid = self.slot_bits if self.n_slots == 2 else (self.fmt.even_bits,)
        widths = tuple(_signed_bits(-ACT_MIN * ((1 << b) - 1) * self.slot_rows) for b in grid)
        assert max(widths) <= SLOT_ACC_BITS, "max_k was validated against the int32 slot sums"
        return widths

    @property
    def act_sum_bits(self) -> int:
        """Width of the activation sum ``Σa`` of one slot in one group: ``ACT_MIN * rows <= Σa <= ACT_MAX * rows``."""
        return max(_signed_bits(-ACT_MIN * self.slot_rows - 1), _signed_bits(ACT_MAX * self.slot_rows))

    # -- timing --------------------------------------------------------------------------------

    @property
    def epilogue_interval(self) -> int:
        """Fewest cycles between two group ends: the lane drain in front of the epilogue holds one group.

        The drain (rtl/drain.py) hands a group's ``L`` lanes to the time-shared scaler one per
        cycle; behind it the scaler and the requantizer take a lane every cycle.  A group of ``g``
        pairs takes at least ``g + 1`` cycles (its header and beats), so only groups shorter than
        ``L - 1`` pairs (and at the bus rate, shorter in time) wait; the sequencer holds their
        closing beat until the interval has passed.
        """
        return self.lanes

    @property
    def result_latency(self) -> int:
        """Cycles from the last bus word's acceptance to the final result being valid at the output.

        The word is written into the gearbox (``Gearbox.LATENCY``: the last beat enters the lanes
        in the next cycle), the lanes register the operation, the products and the sums
        (``lanes.LATENCY``), the drain hands out lane 0 after ``DRAIN_LATENCY`` and lane ``L - 1``
        ``L - 1`` cycles later, the scaler (and the requantizer, if built) each add their
        ``LATENCY`` per lane, the gather completes the beat (``GATHER_LATENCY``), the tile registers
        the result (``RESULT_REGISTER_LATENCY``), and the output queue (``OUTPUT_QUEUE_LATENCY``).
        """
        from rtl import correct, drain, gearbox, lanes, requant, tile   # the blocks import this module

        latency = (gearbox.Gearbox.LATENCY + lanes.LATENCY + drain.DRAIN_LATENCY + self.lanes - 1
                   + correct.LATENCY + drain.GATHER_LATENCY + tile.RESULT_REGISTER_LATENCY
                   + tile.OUTPUT_QUEUE_LATENCY)
        if self.requant:
            latency += requant.LATENCY
        return latency

    @property
    def fixed_latency(self) -> int:
        """Constant of the expected-cycle formula ``ceil(nbits / W) + fixed_latency``.

        Cycles counted from the first cycle a weight word is accepted to the cycle the
        tlast result beat is transferred (inclusive), with an always-ready output.
        """
        return self.result_latency

    @property
    def output_queue_depth(self) -> int:
        """Block results the output queue holds: enough that an always-ready sink never stalls the lanes.

        Block results are at least ``epilogue_interval`` cycles apart and at least a header (its
        ``len(header_chunks)`` records) and a beat apart, so at most ``ceil(pipeline latency /
        spacing)`` are in flight behind the lanes, plus one leaving.
        """
        pipeline = self.result_latency - 1
        spacing = max(self.epilogue_interval, len(self.header_chunks) + 1)
        return -(-pipeline // spacing) + 2

    def stream_bits(self, K: int, N: int) -> int:
        """Bits of one GEMV's packed stream, ``n_blocks * (n_groups*L*H + K_pad/2*L*P)``: golden's layout."""
        from golden.pack import StreamLayout

        k_pad = K + K % 2
        group = k_pad if self.group_size is None else min(self.group_size, k_pad)
        return StreamLayout(self.fmt, self.arithmetic, self.lanes, K, N, group).nbits

    def expected_cycles(self, K: int, N: int) -> int:
        """Cycles per GEMV from the formulas of rtl/TILE.md: the larger of bus-bound and lanes-bound."""
        k_pad = K + K % 2
        n_groups = 1 if self.group_size is None else -(-k_pad // self.group_size)
        n_blocks = -(-N // self.lanes)
        bus = -(-self.stream_bits(K, N) // self.bus_width) + self.fixed_latency
        lanes = (n_blocks * (n_groups * len(self.header_chunks) + k_pad // 2)
                 + -(-self.header_chunks[0] // self.bus_width) - 1 + self.fixed_latency)
        return max(bus, lanes)

    # -- records for JSON ------------------------------------------------------------------------

    def as_dict(self) -> dict:
        """The build parameters and derived widths, JSON-serialisable."""
        return {
            "format": self.fmt.name,
            "even_bits": self.fmt.even_bits,
            "odd_bits": self.fmt.odd_bits,
            "arithmetic": self.arithmetic.value,
            "lanes": self.lanes,
            "bus_width": self.bus_width,
            "group_size": self.group_size,
            "acc_width": self.acc_width,
            "max_k": self.max_k,
            "requant": self.requant,
            "pair_bits": self.pair_bits,
            "header_lane_bits": self.header_lane_bits,
            "header_bits": self.header_bits,
            "beat_bits": self.beat_bits,
            "slot_acc_bits": SLOT_ACC_BITS,
            "out_bits": self.out_bits,
        }

    # -- the build parameters alone: to rebuild, to record, to read back ---------------------------

    def build_kwargs(self) -> dict:
        """The keyword arguments that rebuild these parameters (``TileParams(**p.build_kwargs()) == p``).

        What :func:`rtl.top.generate_verilog` takes besides its output directory.
        """
        from dataclasses import fields

        return {f.name: getattr(self, f.name) for f in fields(self)}

    def build_record(self) -> dict:
        """The build parameters alone, JSON-serialisable (format and arithmetic by name).

        The tile of a measurement record and of the files a cocotb process reads; the first
        build keys of :meth:`as_dict`, without its derived widths.  :meth:`from_record` reads it back.
        """
        record = {"format": self.fmt.name, "arithmetic": self.arithmetic.value}
        record.update((name, value) for name, value in self.build_kwargs().items() if name not in ("fmt", "arithmetic"))
        return record

    @classmethod
    def from_record(cls, record: dict) -> "TileParams":
        """The parameters of a :meth:`build_record` (or :meth:`as_dict`) record, validated anew.

        Raises
        ------
        ValueError
            When a build parameter is missing from ``record``.
        """
        from dataclasses import fields

        names = ["format" if f.name == "fmt" else f.name for f in fields(cls)]
        missing = [name for name in names if name not in record]
        if missing:
            raise ValueError(f"a tile record needs the keys {names}; missing {missing}")
        return cls(**{"fmt" if name == "format" else name: record[name] for name in names})
