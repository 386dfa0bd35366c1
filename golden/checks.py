"""Validation of scalar parameters: one rule and one message for the whole project.

A value of the wrong kind (a string, ``None``, a bool, a float where an integer is
asked for) raises ``TypeError``; a value of the right kind outside the allowed range
(NaN included) raises ``ValueError``.  Either message names the parameter, the
allowed range and the value given, e.g. ``lanes must be an integer >= 1, got 0``.
"""

from __future__ import annotations

import numbers

__all__ = ["check_int", "check_number"]


def check_int(name: str, value, low: int, high: "int | None" = None) -> int:
    """``value`` as an ``int`` if it is an integer (Python or NumPy, not bool) in ``[low, high]``.

    Parameters
    ----------
    name : str
        The parameter's name, as the caller knows it (``"--lanes"``, ``"group_size"``).
    value
        What was given.
    low : int
        Smallest allowed value.
    high : int, optional
        Largest allowed value (no upper bound when ``None``).

    Raises
    ------
    TypeError
        When ``value`` is not an integer.
    ValueError
        When it lies outside ``[low, high]``.
    """
    bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer {bound}, got {value!r}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return int(value)


def check_number(name: str, value, low: float, high: "float | None" = None, *, open_low: bool = False,
                 open_high: bool = False) -> float:
    """``value`` as a ``float`` if it is a real number (not bool) within the given bounds.

    Parameters
    ----------
    name : str
        The parameter's name.
    value
        What was given.
    low, high : float
        The bounds (no upper bound when ``high`` is ``None``).
    open_low, open_high : bool
        Exclude the bound itself: ``check_number("p", p, 0, 1, open_high=True)`` asks for ``[0, 1)``.

    Raises
    ------
    TypeError
        When ``value`` is not a real number.
    ValueError
        When it lies outside the bounds, or is NaN.
    """
    if high is None:
        bound = f"{'>' if open_low else '>='} {low:g}"
    else:
        bound = f"in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number {bound}, got {value!r}")
    number = float(value)
    above = number > low if open_low else number >= low
    below = high is None or (number < high if open_high else number <= high)
    if not (above and below):                     # NaN fails both comparisons
        raise ValueError(f"{name} must be a number {bound}, got {value!r}")
    return number
