"""Stream drivers for Amaranth's simulator (async testbenches), used by the block tests."""

from __future__ import annotations

import random

__all__ = ["send", "receive"]


async def send(ctx, port, payloads, *, rng: "random.Random | None" = None, idle: float = 0.0):
    """Transfer ``payloads`` in order on stream ``port`` (we are the source).

    With ``rng`` and ``idle > 0``, wait a random number of cycles before each payload
    (valid low), so the sink sees gaps.  Valid never depends on ready.
    """
    for payload in payloads:
        while rng is not None and rng.random() < idle:
            await ctx.tick()
        ctx.set(port.payload, payload)
        ctx.set(port.valid, 1)
        await ctx.tick().until(port.ready)
        ctx.set(port.valid, 0)


async def receive(ctx, port, count: int, *, rng: "random.Random | None" = None, stall: float = 0.0,
                  extra=()):
    """Take ``count`` transfers from stream ``port`` (we are the sink); return the payloads.

    With ``rng`` and ``stall > 0``, ready is dropped at random (backpressure).  ``extra``
    are more values sampled at each transfer; then each item is ``(payload, *extras)``.
    """
    out = []
    for _ in range(count):
        while rng is not None and rng.random() < stall:
            ctx.set(port.ready, 0)
            await ctx.tick()
        ctx.set(port.ready, 1)
        payload, *extras = await ctx.tick().sample(port.payload, *extra).until(port.valid)
        out.append((payload, *extras) if extra else payload)
    ctx.set(port.ready, 0)
    return out
