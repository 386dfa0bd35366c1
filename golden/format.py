"""The septet format family: the one definition of every format fact.

Everything else (quantizer, packer, oracle, RTL, testbenches, throughput model)
imports these definitions; nothing retypes a width.  The bit layout is
specified in ``golden/FORMAT.md``.

A format is a pair of slot widths ``(even_bits, odd_bits)``: along the
reduction dimension K, rows ``2i`` and ``2i + 1`` of a column form one *pair*;
the even row gets an ``even_bits`` code and the odd row an ``odd_bits`` code.
``(4, 3)`` is the 3.5-bit septet, ``(4, 4)`` INT4, ``(3, 3)`` uniform 3-bit,
``(8, 8)`` INT8.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

__all__ = [
    "padded_width",
    "Arithmetic",
    "Format",
    "FORMATS",
    "SCALE_BITS",
    "EXPONENT_BITS",
    "EXPONENT_MIN",
    "EXPONENT_MAX",
    "ACT_BITS",
    "ACT_MIN",
    "ACT_MAX",
    "REQUANT_MULT_BITS",
    "REQUANT_SHIFT_BITS",
    "REQUANT_SHIFT_MIN",
    "REQUANT_SHIFT_MAX",
    "OUT_BITS",
    "OUT_MIN",
    "OUT_MAX",
    "byte_count",
    "MIN_SLOT_BITS",
    "MAX_SLOT_BITS",
    "parse_format",
    "parse_arithmetic",
]

#: Width of a group scale mantissa ``m`` (unsigned); the scale is ``m * 2**-e``.
SCALE_BITS = 16
#: Width of the per-column scale exponent ``e`` (two's complement).
EXPONENT_BITS = 8
EXPONENT_MIN = -(1 << (EXPONENT_BITS - 1))
EXPONENT_MAX = (1 << (EXPONENT_BITS - 1)) - 1
#: Activations are signed INT8 (symmetric, per tensor).
ACT_BITS = 8
ACT_MIN = -(1 << (ACT_BITS - 1))
ACT_MAX = (1 << (ACT_BITS - 1)) - 1
#: Requantization: ``out = sat8((y * M + 2**(s-1)) >> s)``, M unsigned, 1 <= s <= 63.
REQUANT_MULT_BITS = 16
REQUANT_SHIFT_BITS = 6
REQUANT_SHIFT_MIN = 1
REQUANT_SHIFT_MAX = (1 << REQUANT_SHIFT_BITS) - 1
#: Requantized outputs are signed INT8.
OUT_BITS = 8
OUT_MIN = -(1 << (OUT_BITS - 1))
OUT_MAX = (1 << (OUT_BITS - 1)) - 1
#: Supported slot widths.
MIN_SLOT_BITS = 2
MAX_SLOT_BITS = 8



def byte_count(bits: int) -> int:
    """Whole bytes that hold ``bits`` bits: ``ceil(bits / 8)`` (a stream's bytes, a padded bus beat)."""
    return -(-bits // 8)


def padded_width(bits: int) -> int:
    """An AXI-Stream tdata width: ``bits`` rounded up to whole bytes (cocotbext-axi is byte-based)."""
    return 8 * byte_count(bits)


class Arithmetic(enum.Enum):
    """How the two slots of a pair are dequantized.

    ``OWN``: each slot has its own scale and zero point (two grids, two
    accumulators per lane, two corrections).

    ``SHARED``: one scale and zero point on the even slot's grid; the odd slot's
    code ``c`` sits on every ``2**(even_bits - odd_bits)``-th level
    (``q = c << (even_bits - odd_bits)``), so the expansion is wiring and one
    accumulator per lane suffices.  The zero point is constrained to a multiple
    of that step so that zero is exactly representable in both slots.
    """

    OWN = "own"
    SHARED = "shared"


@dataclass(frozen=True)
class Format:
    """Slot widths of a pair along K.

    Parameters
    ----------
    even_bits : int
        Code width of the even row of a pair (rows 0, 2, 4, ...).
    odd_bits : int
        Code width of the odd row of a pair.
    """

    even_bits: int
    odd_bits: int

    def __post_init__(self):
        for name in ("even_bits", "odd_bits"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not MIN_SLOT_BITS <= v <= MAX_SLOT_BITS:
                raise (TypeError if not isinstance(v, int) or isinstance(v, bool) else ValueError)(
                    f"{name} must be an integer in [{MIN_SLOT_BITS}, {MAX_SLOT_BITS}], got {v!r}")

    @property
    def name(self) -> str:
        """Short name, e.g. ``"4+3"``."""
        return f"{self.even_bits}+{self.odd_bits}"

    @property
    def pair_bits(self) -> int:
        """Bits of one packed pair (7 for the septet)."""
        return self.even_bits + self.odd_bits

    @property
    def bits_per_weight(self) -> float:
        """Code bits per weight, without scales and zero points."""
        return self.pair_bits / 2

    @property
    def slot_bits(self) -> tuple[int, int]:
        """``(even_bits, odd_bits)``."""
        return (self.even_bits, self.odd_bits)

    def odd_shift(self, arithmetic: Arithmetic) -> int:
        """Left shift that places an odd code on the accumulation grid.

        Zero for ``OWN``; ``even_bits - odd_bits`` for ``SHARED``.
        """
        arithmetic = parse_arithmetic(arithmetic)
        if arithmetic is Arithmetic.OWN:
            return 0
        self.check_arithmetic(arithmetic)
        return self.even_bits - self.odd_bits

    def check_arithmetic(self, arithmetic: Arithmetic) -> None:
        """Raise ``ValueError`` if ``arithmetic`` cannot be used with this format."""
        arithmetic = parse_arithmetic(arithmetic)
        if arithmetic is Arithmetic.SHARED and self.odd_bits > self.even_bits:
            raise ValueError(
                f"arithmetic='shared' needs odd_bits <= even_bits, got format {self.name}")

    def group_slots(self, arithmetic: Arithmetic) -> tuple[int, ...]:
        """Code widths of the zero points a group carries, one per scale.

        ``OWN``: ``(even_bits, odd_bits)``; ``SHARED``: ``(even_bits,)``.
        """
        arithmetic = parse_arithmetic(arithmetic)
        self.check_arithmetic(arithmetic)
        if arithmetic is Arithmetic.OWN:
            return (self.even_bits, self.odd_bits)
        return (self.even_bits,)

    def group_header_bits_per_column(self, arithmetic: Arithmetic) -> int:
        """Header bits per column per group: a zero point and a scale mantissa per slot."""
        return sum(b + SCALE_BITS for b in self.group_slots(arithmetic))

    def header_record_bits(self, lanes: int, arithmetic: Arithmetic) -> int:
        """Bits of one HEADER record of a tile of ``lanes`` lanes: ``lanes * H``."""
        return lanes * self.group_header_bits_per_column(arithmetic)

    def beat_record_bits(self, lanes: int) -> int:
        """Bits of one BEAT record of a tile of ``lanes`` lanes: ``lanes * P``."""
        return lanes * self.pair_bits

    def stored_bits_per_column(self, K: int, group_size: "int | None", arithmetic: Arithmetic) -> int:
        """Bits one column of ``K`` weights occupies: codes, group headers and the exponent.

        ``group_size=None`` is per column (one group).  FORMAT.md section 4.
        """
        if not isinstance(K, int) or K < 1:
            raise (TypeError if not isinstance(K, int) else ValueError)(f"K must be an integer >= 1, got {K!r}")
        k_pad = K + (K % 2)
        groups = 1 if group_size is None else -(-k_pad // group_size)
        return k_pad // 2 * self.pair_bits + groups * self.group_header_bits_per_column(arithmetic) + EXPONENT_BITS

    def max_abs_centered_code(self, arithmetic: Arithmetic) -> int:
        """Largest ``|q - z|`` on the accumulation grid (the even grid for SHARED)."""
        return (1 << max(self.group_slots(arithmetic))) - 1

    def max_k_int32(self, arithmetic: Arithmetic) -> int:
        """Largest even K for which a per-lane int32 partial sum cannot overflow.

        A lane accumulates ``sum(a * (q - z))`` over at most K rows (one group
        covering the whole column is the worst case) with ``|a| <= 128`` and
        ``|q - z| <= 2**b - 1``; the raw sum ``sum(a * q)`` with ``0 <= q <= 2**b - 1``
        has the same bound.  With ``OWN`` each slot has its own accumulator over
        K/2 rows; with ``SHARED`` one accumulator covers all K rows.  The bound
        ``rows * 128 * (2**b - 1) <= 2**31 - 1`` gives the largest K.
        """
        arithmetic = parse_arithmetic(arithmetic)
        per_row = (-ACT_MIN) * self.max_abs_centered_code(arithmetic)
        rows = (2**31 - 1) // per_row
        if arithmetic is Arithmetic.OWN:
            k = 2 * rows          # each slot's accumulator sees K/2 rows
        else:
            k = rows
        return k - (k % 2)

    def __str__(self) -> str:
        return self.name


#: The formats every comparison runs on, by name.
FORMATS: dict[str, Format] = {
    "4+3": Format(4, 3),
    "4+4": Format(4, 4),
    "3+3": Format(3, 3),
    "8+8": Format(8, 8),
}

_ALIASES = {"3.5bit": "4+3", "3.5": "4+3", "septet": "4+3", "int4": "4+4", "int3": "3+3", "int8": "8+8"}


def parse_format(value: "str | Format | tuple[int, int]") -> Format:
    """Return the :class:`Format` named by ``value``.

    Accepts a :class:`Format`, a ``(even_bits, odd_bits)`` tuple, ``"E+O"``
    (e.g. ``"4+3"``) or an alias (``"int4"``, ``"3.5bit"``...).
    """
    if isinstance(value, Format):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        return Format(*value)
    if isinstance(value, str):
        key = _ALIASES.get(value.strip().lower(), value.strip())
        m = re.fullmatch(r"(\d+)\s*\+\s*(\d+)", key)
        if m:
            return Format(int(m[1]), int(m[2]))
    raise ValueError(
        f"format must be 'E+O' with slot widths in [{MIN_SLOT_BITS}, {MAX_SLOT_BITS}] "
        f"(e.g. {', '.join(FORMATS)}), got {value!r}")


def parse_arithmetic(value: "str | Arithmetic") -> Arithmetic:
    """Return the :class:`Arithmetic` named by ``value`` (``"own"`` or ``"shared"``)."""
    if isinstance(value, Arithmetic):
        return value
    try:
        return Arithmetic(str(value).strip().lower())
    except ValueError:
        raise ValueError(f"arithmetic must be one of 'own', 'shared', got {value!r}") from None
