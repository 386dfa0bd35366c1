"""golden.checks: TypeError for the wrong kind of value, ValueError for a value out of range, both naming it."""

import numpy as np
import pytest

from golden.checks import check_int, check_number


def test_check_int_accepts_python_and_numpy_integers_in_range():
    assert check_int("lanes", 1, 1) == 1
    assert check_int("lanes", np.int64(7), 1, 7) == 7 and type(check_int("lanes", np.int64(7), 1)) is int


@pytest.mark.parametrize("value, high, error, message", [
    (0, None, ValueError, "lanes must be an integer >= 1, got 0"),
    (9, 8, ValueError, "lanes must be an integer in [1, 8], got 9"),
    (2.0, None, TypeError, "lanes must be an integer >= 1, got 2.0"),
    ("4", 8, TypeError, "lanes must be an integer in [1, 8], got '4'"),
    (True, None, TypeError, "lanes must be an integer >= 1, got True"),
    (None, None, TypeError, "lanes must be an integer >= 1, got None"),
])
def test_check_int_rejects_with_a_message_naming_parameter_and_range(value, high, error, message):
    with pytest.raises(error) as raised:
        check_int("lanes", value, 1, high)
    assert str(raised.value) == message


def test_check_number_bounds_open_and_closed():
    assert check_number("p", 0, 0.0, 1.0, open_high=True) == 0.0
    assert check_number("p", np.float32(0.5), 0.0, 1.0, open_high=True) == 0.5
    assert check_number("scale", 1e-9, 0.0, open_low=True) == 1e-9
    assert check_number("p", 1, 0.0, 1.0) == 1.0


@pytest.mark.parametrize("value, kwargs, error, message", [
    (1.0, dict(high=1.0, open_high=True), ValueError, "p must be a number in [0, 1), got 1.0"),
    (float("nan"), dict(high=1.0, open_high=True), ValueError, "p must be a number in [0, 1), got nan"),
    (0.0, dict(open_low=True), ValueError, "p must be a number > 0, got 0.0"),
    (-1, dict(), ValueError, "p must be a number >= 0, got -1"),
    ("0.5", dict(high=1.0), TypeError, "p must be a number in [0, 1], got '0.5'"),
    (False, dict(high=1.0), TypeError, "p must be a number in [0, 1], got False"),
])
def test_check_number_rejects_with_a_message_naming_parameter_and_range(value, kwargs, error, message):
    with pytest.raises(error) as raised:
        check_number("p", value, 0.0, **kwargs)
    assert str(raised.value) == message


def test_callers_raise_type_error_for_the_wrong_kind_of_value():
    from golden.pack import StreamLayout
    from golden.quantize import quantize
    from golden.vectors import random_vectors
    from sim.model import lpu_mapping

    W = np.random.default_rng(0).standard_normal((16, 4))
    with pytest.raises(TypeError, match="scale_bits must be an integer in \\[2, 16\\], got 6.0"):
        quantize(W, "4+3", group_size=8, scale_bits=6.0)
    with pytest.raises(TypeError, match="lanes must be an integer >= 1, got '4'"):
        StreamLayout(quantize(W, "4+3").fmt, quantize(W, "4+3").arithmetic, "4", 16, 4, 16)
    with pytest.raises(TypeError, match="K must be an integer >= 1, got 16.0"):
        random_vectors(np.random.default_rng(0), "4+3", 16.0, 4, lanes=4)
    with pytest.raises(ValueError, match="saturate must be a number in \\[0, 1\\), got 1.5"):
        random_vectors(np.random.default_rng(0), "4+3", 16, 4, lanes=4, requant=True, saturate=1.5)
    with pytest.raises(TypeError, match="chips must be an integer >= 1, got None"):
        lpu_mapping(None, None, 320)
