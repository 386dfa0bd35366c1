"""Pause generators for cocotbext-axi sources (idle cycles) and sinks (backpressure).

A cocotbext-axi pause generator is an iterator of booleans, one per clock
cycle: ``True`` holds the stream that cycle (a source drives no beat, a sink
deasserts ``tready``).
"""

from __future__ import annotations

import random

__all__ = ["pause_generator", "validate_probability"]


def validate_probability(name: str, probability) -> float:
    """Return ``probability`` as a float in [0, 1); raise ``ValueError`` naming ``name`` otherwise."""
    try:
        value = float(probability)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1), got {probability!r}") from None
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {probability!r}")
    return value


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
    if not isinstance(burst, int) or burst < 1:
        raise ValueError(f"burst must be an integer >= 1, got {burst!r}")
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
