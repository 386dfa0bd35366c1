"""The whole tile in Amaranth simulation against the golden oracle, with random gaps and backpressure."""

import numpy as np
import pytest

from golden.format import ACT_MIN, Arithmetic, parse_format
from golden.oracle import gemv_int
from golden.pack import pack
from golden.quantize import QuantizedMatrix
from rtl.params import TileParams
from rtl.simutil import act_beats, check, cycles_one_gemv, make_job, run_jobs, run_with_reset

_CONFIGS = [
    dict(fmt="4+3", lanes=2, bus_width=13, group_size=4),
    dict(fmt="4+3", lanes=3, bus_width=61, group_size=None),
    dict(fmt="4+4", lanes=2, bus_width=64, group_size=8),
    dict(fmt="3+3", lanes=2, bus_width=5, group_size=6),
    dict(fmt="8+8", lanes=2, bus_width=29, group_size=4),
    dict(fmt="4+3", arithmetic="shared", lanes=2, bus_width=16, group_size=8),
    dict(fmt="4+3", lanes=2, bus_width=32, group_size=4, requant=True),
    dict(fmt="4+3", lanes=2, bus_width=20, group_size=64),      # groups longer than K: one per block
]


@pytest.mark.parametrize("config", _CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_gemvs_match_golden(config):
    p = TileParams(**config)
    rng = np.random.default_rng(sum(map(ord, str(config))))
    # Two GEMVs back to back: odd and even K, N not a multiple of the lanes, a short last group.
    jobs = [make_job(p, rng, K=int(rng.integers(14, 24)) | 1, N=2 * p.lanes - 1),
            make_job(p, rng, K=int(rng.integers(10, 20)) * 2, N=p.lanes + 1)]
    got = run_jobs(p, jobs, seed=7, idle=0.3, stall=0.4)
    check(jobs, got)


def test_requantization_saturates_like_golden():
    p = TileParams(fmt="4+4", lanes=3, bus_width=24, group_size=6, requant=True)
    job = make_job(p, np.random.default_rng(9), K=18, N=6, saturate=0.5)
    values = job["expected"].ravel()
    assert values.max() == 127 and values.min() == -128          # both rails are exercised
    check([job], run_jobs(p, [job], seed=3, idle=0.2, stall=0.5))


@pytest.mark.parametrize("config", [dict(fmt="4+3", lanes=4, bus_width=16, group_size=8),
                                    dict(fmt="3+3", lanes=2, bus_width=11, group_size=None, requant=True)])
def test_cycles_bus_bound(config):
    """With the bus the bottleneck, a GEMV takes ceil(bits / W) + fixed_latency cycles."""
    p = TileParams(**config)
    assert p.bus_width < p.beat_bits       # fewer bus bits per cycle than a beat: bus-bound
    job = make_job(p, np.random.default_rng(3), K=24, N=2 * p.lanes)
    cycles, beats = cycles_one_gemv(p, job)
    check([job], [beats])
    assert cycles == -(-job["nbits"] // p.bus_width) + p.fixed_latency


def test_cycles_lanes_bound():
    """With a bus wider than the lanes' rate, one record per cycle after the first header has filled."""
    p = TileParams(fmt="4+3", lanes=2, bus_width=64, group_size=16)
    assert p.bus_width > p.beat_bits       # more bus bits per cycle than a beat: lanes-bound
    assert p.group_size // 2 + 1 >= p.epilogue_interval     # groups long enough for the epilogue
    K, N = 32, 4
    job = make_job(p, np.random.default_rng(4), K=K, N=N)
    # Each header is taken in len(header_chunks) beat-sized records.
    records = -(-N // p.lanes) * (-(-K // p.group_size) * len(p.header_chunks) + K // 2)
    cycles, beats = cycles_one_gemv(p, job)
    check([job], [beats])
    assert cycles == records + -(-p.header_chunks[0] // p.bus_width) - 1 + p.fixed_latency
    assert cycles == p.expected_cycles(K, N)


@pytest.mark.parametrize("config", [dict(fmt="4+3", lanes=8, bus_width=128, group_size=2, requant=True),
                                    dict(fmt="4+4", lanes=16, bus_width=256, group_size=None)])
def test_short_groups_wait_for_the_epilogue(config):
    """Groups (or per-column blocks) far shorter than the time-shared epilogue: exact, and held.

    One pair per group (or K = 2..6 per column) closes a group every few records, while the
    lane drain needs ``epilogue_interval`` cycles per group: the closing beats wait, every result
    is exact, and the GEMV takes at least one interval per group.
    """
    p = TileParams(**config)
    rng = np.random.default_rng(17)
    jobs = [make_job(p, rng, K=K, N=2 * p.lanes + 1) for K in (2, 5, 6)]
    check(jobs, run_jobs(p, jobs, seed=5, idle=0.2, stall=0.3))
    job = jobs[2]
    cycles, beats = cycles_one_gemv(p, job)
    check([job], [beats])
    n_groups = -(-6 // (p.group_size or 6)) * job["expected"].shape[0]
    assert cycles >= n_groups * p.epilogue_interval > p.expected_cycles(6, 2 * p.lanes + 1) - p.fixed_latency


def test_reset_mid_gemv_returns_to_idle():
    """Reset while a GEMV is half done (words buffered, sums accumulated); the next GEMV is exact."""
    p = TileParams(fmt="4+3", lanes=2, bus_width=13, group_size=4)
    rng = np.random.default_rng(5)
    first, second = make_job(p, rng, K=20, N=6), make_job(p, rng, K=14, N=4)
    got = run_with_reset(p, first, second, 12)   # the first block completes; reset midway through the second
    assert first["blocks"] == 3          # the reset really fell inside the first GEMV
    check([second], got)


@pytest.mark.parametrize("fmt,arithmetic", [("4+3", "own"), ("8+8", "own"), ("4+4", "shared")])
def test_extreme_codes_and_activations(fmt, arithmetic):
    """Most negative activations, largest codes and zero points, largest mantissas: exact, no wrap."""
    fmt = parse_format(fmt)
    arith = Arithmetic(arithmetic)
    p = TileParams(fmt=fmt, arithmetic=arith, lanes=2, bus_width=32, group_size=None)
    K, N = 32, 2
    slots = fmt.group_slots(arith)
    codes = np.zeros((K, N), dtype=np.uint8)
    codes[0::2] = (1 << fmt.even_bits) - 1
    codes[1::2, 0] = (1 << fmt.odd_bits) - 1                 # column 0: every code at its maximum
    zeros = np.zeros((1, len(slots), N), dtype=np.int64)
    zeros[0, :, 1] = [(1 << b) - 1 for b in slots]            # column 1: largest zero points
    if arith is Arithmetic.SHARED:
        zeros[0, 0, 1] -= zeros[0, 0, 1] % (1 << fmt.odd_shift(arith))
    mant = np.full((1, len(slots), N), (1 << 16) - 1, dtype=np.int64)
    qm = QuantizedMatrix(fmt, arith, K, N, K, codes, zeros, mant, np.zeros(N, dtype=np.int64))
    a = np.full(K, ACT_MIN, dtype=np.int8)
    y = gemv_int(qm, a)
    ps = pack(qm, lanes=p.lanes)
    words = ps.words(p.bus_width)
    job = {"words": [{"data": w, "last": int(i == len(words) - 1)} for i, w in enumerate(words)],
           "acts": act_beats(qm, a), "params": [], "expected": y.reshape(1, p.lanes), "blocks": 1}
    check([job], run_jobs(p, [job]))


def test_cycles_command_prints_checked_figures(capsys):
    from rtl.cycles import main
    assert main(["--lanes", "2", "--bus-width", "13", "--group-size", "4", "--k", "10", "--n", "3"]) == 0
    out = capsys.readouterr().out
    assert "checked against golden" in out and "cycle ratio 4+3 / 4+4" in out
