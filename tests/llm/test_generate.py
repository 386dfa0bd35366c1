"""``septet generate``: a reduced SmolLM2 through golden and through the Verilated tile."""

import numpy as np
import pytest

from septet.cli import main

from .conftest import time_limit

#: Token ids below 512 only, so the reduced vocabulary holds the prompt.
PROMPT = "1, 2, 3, 4,"
#: A reduced model (one block, the first 512 ids of the head) on the tile the testbench tests build too
#: (4+3 own grids per column, 8 lanes, 32-bit bus): one token is about 0.4 M cycles.
TINY = ["--prompt", PROMPT, "--layers", "1", "--vocab", "512", "--cal-tokens", "16", "--group-size", "0",
        "--clip", "none", "--lanes", "8", "--bus-width", "32"]


def test_generate_through_the_rtl_is_bit_exact_and_equals_golden(tmp_path, capsys):
    with time_limit(420, "septet generate --through rtl (tiny)"):
        assert main(["generate", *TINY, "--tokens", "1", "--through", "golden", "--oracle",
                     "--out", str(tmp_path)]) == 0
        golden = capsys.readouterr().out
        assert main(["generate", *TINY, "--tokens", "1", "--through", "rtl", "--workers", "2",
                     "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert captured.out == golden and captured.out.startswith(PROMPT) and len(captured.out) > len(PROMPT)
    assert "every GEMV bit-exact: 8 GEMVs (8 per token) over 1 tokens" in captured.err
    assert "tile cycles per token:" in captured.err and "tok/s" in captured.err
    assert "tile: 4+3 own, 8 lanes, 32-bit bus" in captured.err and "2 simulators started" in captured.err
    assert "time: model load" in captured.err
    # The quantized matrices were cached by content and reused by the second run.
    assert len(list((tmp_path / "cache").glob("smollm2-*.npz"))) == 1


def test_generate_rejects_bad_arguments(tmp_path, capsys):
    assert main(["generate", "--tokens", "0", "--out", str(tmp_path)]) == 2
    assert "--tokens must be in [1, 256]" in capsys.readouterr().err
    assert main(["generate", "--group-size", "3", "--out", str(tmp_path)]) == 2
    assert "--group-size must be an even integer" in capsys.readouterr().err


def test_replay_refuses_an_input_the_tile_did_not_run():
    from golden.quantize import quantize
    from golden.quality.intpath import TileLinear
    from tb.llm import ReplayLinear

    rng = np.random.default_rng(0)
    lin = TileLinear(quantize(rng.standard_normal((16, 8)), "4+3", group_size=8), "w")
    x = rng.standard_normal(16)
    replay = ReplayLinear(lin, "w")
    from golden.quality.intpath import quantize_rows

    a, _ = quantize_rows(x[None])
    y = lin.integer(a)[0]
    replay.queue.append((a[0], y))
    assert np.array_equal(x[None] @ replay, x[None] @ lin)       # the tile's result, scaled as golden scales it
    replay.queue.append((a[0], y))
    with pytest.raises(AssertionError, match="differs from the one the tile ran"):
        (x[None] + 1.0) @ replay
    with pytest.raises(AssertionError, match="no tile result queued"):
        x[None] @ replay


def test_split_balanced():
    from tb.llm import split_balanced

    groups = split_balanced([5, 1, 4, 2, 8], 2)
    assert sorted(i for g in groups for i in g) == [0, 1, 2, 3, 4]
    loads = [sum([5, 1, 4, 2, 8][i] for i in g) for g in groups]
    assert max(loads) - min(loads) <= 2
    assert split_balanced([3], 4) == [[0]]


def test_split_balanced_refuses_a_wrong_type_and_a_wrong_value_distinctly():
    from tb.llm import split_balanced

    with pytest.raises(ValueError, match="parts must be an integer >= 1, got 0"):
        split_balanced([1, 2], 0)
    with pytest.raises(TypeError, match="parts must be an integer >= 1, got '2'"):
        split_balanced([1, 2], "2")
