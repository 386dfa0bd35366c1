"""Registers split for the clock: each slice of a wide register, or each copy of a flag, on its own register.

A flag that enables or clears a few hundred flip-flops is one net the placer must spread over the
die; its routing was the tile's worst path more than once (rtl/TILE.md, "Clock").  These helpers
give every ``CONTROL_FANOUT`` bits their own registered copy of the flag, each in a submodule so
that synthesis (which merges identical registers within a module) keeps the copies apart.
Flip-flops cost no LUT4-equivalents, so the copies are free in the area the tile is judged on.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.checks import check_int

__all__ = ["CONTROL_FANOUT", "register_slices", "RegisterSlice", "RegisteredCopy"]

#: Register bits per copy of their clear or enable flag (for the clock; flip-flops cost no LUT4-eq).
CONTROL_FANOUT = 16


def register_slices(m, name, kind, control_next, d, q, *, fanout=CONTROL_FANOUT, control_init=None):
    """``q`` as :class:`RegisterSlice` submodules of ``fanout`` bits, each with its own copy of ``control_next``.

    Returns the slices (their ``control`` outputs are the copies, for the caller's ``Assert``).
    """
    d, q = Value.cast(d), Value.cast(q)
    parts = []
    for n, lo in enumerate(range(0, len(q), fanout)):
        hi = min(lo + fanout, len(q))
        part = m.submodules[f"{name}_{n}"] = RegisterSlice(width=hi - lo, kind=kind, control_init=control_init)
        m.d.comb += [part.control_next.eq(control_next), part.d.eq(d[lo:hi]), q[lo:hi].eq(part.q)]
        parts.append(part)
    return parts


class RegisterSlice(wiring.Component):
    """Bits of a wide register with their own registered copy of its control (a clock enable or a clear).

    For the clock: one control flag driving a few hundred flip-flops lets the placer spread them
    (its routing was the tile's worst path), so each slice registers its own copy of the flag's
    next value, ``control_next``; as a submodule, synthesis keeps the copies apart.

    Parameters
    ----------
    width : int
    kind : str
        ``"enable"``: ``q <= d`` when the control is set; ``"clear"``: ``q <= 0`` when it is set,
        else ``d``, the flip-flops' own synchronous clear.
    control_init : bool, optional
        The control copy's value after reset (the value of the flag it copies); by default 0 for
        ``"enable"`` and 1 for ``"clear"`` (cleared after reset).

    Attributes
    ----------
    control_next : In(1)
    d : In(width)
    q : Out(width)
    control : Out(1)
        This slice's copy of the control (``control_next`` one cycle later).
    """

    def __init__(self, *, width: int, kind: str, control_init: "bool | None" = None):
        if kind not in ("enable", "clear"):
            raise ValueError(f"RegisterSlice kind must be 'enable' or 'clear', not {kind!r}")
        self.kind = kind
        self.control_init = int(kind == "clear" if control_init is None else control_init)
        super().__init__({"control_next": In(1), "d": In(check_int("width", width, 1)), "q": Out(width),
                          "control": Out(1)})

    def elaborate(self, platform):
        m = Module()
        control = Signal(init=self.control_init)
        q = Signal(len(self.q), reset_less=True)
        m.d.sync += control.eq(self.control_next)
        m.d.comb += self.control.eq(control)
        if self.kind == "enable":
            with m.If(control):
                m.d.sync += q.eq(self.d)
        else:
            with m.If(control):
                m.d.sync += q.eq(0)         # after its turn (the drain's gated registers)
            with m.Else():
                m.d.sync += q.eq(self.d)
        m.d.comb += self.q.eq(q)
        return m


class RegisteredCopy(wiring.Component):
    """A register of ``d`` in a submodule of its own: one copy of a control flag that synthesis keeps apart.

    For the clock: a flag that many registers are loaded from (or enabled by) is copied into
    registers that each drive a few of them, so that the placer can put every copy beside its
    loads; identical registers in one module would be merged back into one by synthesis.

    Parameters
    ----------
    init : int
        The copy's value after reset.

    Attributes
    ----------
    d : In(1)
    q : Out(1)
        ``d`` one cycle later.
    """

    def __init__(self, *, init: int = 0):
        self.init = check_int("init", init, 0, 1)
        super().__init__({"d": In(1), "q": Out(1)})

    def elaborate(self, platform):
        m = Module()
        q = Signal(init=self.init)
        m.d.sync += q.eq(self.d)
        m.d.comb += self.q.eq(q)
        return m
