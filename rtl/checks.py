"""Properties inside the RTL: the stream rules at a port, as ``Assert`` / ``Assume`` statements.

Amaranth 0.5 checks them in simulation (a violation raises ``AssertionError`` naming the port)
and emits them as formal cells (``$check``) that SymbiYosys proves (``formal/``).  They cost
registers only while the cells exist: a synthesis flow drops them with Yosys'
``chformal -remove`` (after which the history registers have no load and are removed), and
Verilator ignores them unless built with ``--assert``.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Module, ResetSignal, Signal, Value

__all__ = ["stream_rules"]


def stream_rules(m: Module, port, name: str, *, driven_here: bool) -> None:
    """The transfer rules of ``amaranth.lib.stream`` at ``port``, checked at every clock edge.

    Once ``valid`` is high without ``ready``, ``valid`` stays high and the payload does not
    change until the transfer.  (Valid not waiting for ready is structural: no path from a
    port's ``ready`` to its ``valid``.)

    Parameters
    ----------
    m : Module
        Where the history registers and the properties go (the ``sync`` domain: its reset
        clears the history and is not checked, so a reset may abandon a transfer).
    port : stream interface
        A ``stream.Signature`` interface with ``valid``, ``ready`` and ``payload``.
    name : str
        Port name used in the messages and the history registers' names.
    driven_here : bool
        ``True`` when this module drives ``valid`` and the payload (the rules are asserted);
        ``False`` for an input, whose rules are the environment's (assumed: in simulation
        they still fail loudly, which catches a testbench that breaks them).
    """
    check = Assert if driven_here else Assume
    payload = Value.cast(port.payload)
    waiting = Signal(name=f"{name}_rule_waiting")
    held = Signal(len(payload), name=f"{name}_rule_held")
    m.d.sync += [waiting.eq(port.valid & ~port.ready), held.eq(payload)]
    # A reset abandons a transfer: the source may drop valid in the cycle its reset is asserted.
    with m.If(waiting & ~ResetSignal()):
        m.d.sync += [
            check(port.valid, f"{name}: valid fell before the transfer"),
            check(payload == held, f"{name}: payload changed while valid and not ready"),
        ]
