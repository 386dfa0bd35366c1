"""Pause generators for cocotbext-axi sources (idle cycles) and sinks (backpressure).

A cocotbext-axi pause generator is an iterator of booleans, one per clock
cycle: ``True`` holds the stream that cycle (a source drives no beat, a sink
deasserts ``tready``).
"""

from __future__ import annotations

import random

from golden.checks import check_int, check_number

__all__ = ["pause_generator", "validate_probability"]


def validate_probability(name: str, probability) -> float:
    """Return ``probability`` as a float in [0, 1) (a stream paused every cycle would never move).

    Raises
    ------
    TypeError
        When it is not a real number (a string, ``None``, a bool).
    ValueError
        When it lies outside [0, 1) or is NaN; the message names ``name``.
    """
    return check_number(name, probability, 0.0, 1.0, open_high=True)


def pause_generator(probability: float, seed: int, *, burst: int = 1):
    """Yield ``True`` (pause) with ``probability`` per cycle, in runs of up to ``burst`` cycles.

    Parameters
    ----------
    probability : float
        Long-run fraction of paused cycles, in [0, 1).
    seed : int
        Seed of the generator's own random stream (reproducible runs).
    burst : int
        Longest run of consecutive pauses drawn at once (1: independent cycles).

    Yields
    ------
    bool
    """
    probability = validate_probability("probability", probability)
    check_int("burst", burst, 1)
    rng = random.Random(seed)
    if probability == 0.0:
        while True:
            yield False
    # A run of r pauses (r uniform in 1..burst, mean m) starts after a free cycle with probability p0
    # chosen so that the long-run paused fraction is `probability`: p0*m / (p0*m + 1) = probability.
    mean_run = (burst + 1) / 2
    start = probability / (mean_run * (1.0 - probability))
    while True:
        if rng.random() < start:
            for _ in range(rng.randint(1, burst)):
                yield True
        yield False
