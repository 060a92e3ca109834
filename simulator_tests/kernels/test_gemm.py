"""csl/gemm (SUMMA C = A·B on P × P PEs) through its handle against NumPy on the simulator:
hypothesis over the grid side P (1..4), tile sizes, precision, arch and seeds, a fixed case,
a relaunch on the same device, and the handle's argument checks.

Tolerance: every C[i, j] is a sum of K products accumulated in f32 in an order fixed by the
SUMMA steps and the column sweep, so whatever the order (and whether @fmacs / @fmachs fuse the
multiply), |C - C_exact| <= gamma_K(u_f32) * (|A| |B|)[i, j] with u_f32 = 2^-24 (Higham).
f16 inputs are exact in f32 products (11 + 11 significant bits <= 24), so the same bound holds
for fp16. The reference is computed in f64 from exact products; its own error, at most
gamma_K(u_f64) * (|A| |B|), is added to the bound.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from waferscale.host import MemcpyDataType, MemcpyOrder
from waferscale.kernels.base import Run, compiled
from waferscale.kernels.gemm import Gemm, from_tiles, to_tiles
from waferscale.sim.timing import DEFAULT_TIMING

U32 = 2.0**-24
U64 = 2.0**-53


def gamma(n: int, u: float) -> float:
    return n * u / (1 - n * u)


def inputs(k: Gemm, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ab = np.float16 if k.fp16 else np.float32
    return (rng.uniform(-1, 1, (k.M, k.K)).astype(ab), rng.uniform(-1, 1, (k.K, k.N)).astype(ab))


def assert_close(C: np.ndarray, A: np.ndarray, B: np.ndarray) -> None:
    A64, B64 = A.astype(np.float64), B.astype(np.float64)
    K = A.shape[1]
    err = np.abs(C.astype(np.float64) - A64 @ B64)
    bound = (gamma(K, U32) + gamma(K, U64)) * (np.abs(A64) @ np.abs(B64))
    assert C.dtype == np.float32 and C.shape == (A.shape[0], B.shape[1])
    assert np.all(err <= bound), f"max excess {np.max(err - bound):.3e}"


def check_gemm(k: Gemm, seed: int) -> int:
    A, B = inputs(k, seed)
    C, cycles = k.run(A, B)
    assert_close(C, A, B)
    return cycles


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(P=st.integers(1, 4), Mt=st.integers(1, 5), Kt=st.integers(1, 5), Nt=st.integers(1, 5),
       fp16=st.booleans(), arch=st.sampled_from(["wse2", "wse3"]), seed=st.integers(0, 2**16))
def test_gemm_matches_numpy(P, Mt, Kt, Nt, fp16, arch, seed):
    if fp16 and ((Mt * Kt) % 2 or (Kt * Nt) % 2):
        fp16 = False                      # f16 tiles travel as 32-bit words: even sizes only
    k = Gemm(P * Mt, P * Kt, P * Nt, P, arch, fp16)
    cycles = check_gemm(k, seed)
    assert cycles >= k.floor()            # the floor is a lower bound of the modelled machine


@pytest.mark.parametrize("arch", ["wse2", "wse3"])
def test_gemm_fixed(arch):
    # A prefill-shaped case: 32 tokens against a 48 x 40 weight block on 4 x 4 PEs.
    k = Gemm(32, 48, 40, 4, arch)
    cycles = check_gemm(k, seed=7)
    Mt, Kt, Nt = k.tile
    # Never faster than the MACs of one PE at one element a cycle, and the P serial steps
    # (the broadcasts, as the collectives' model charges them, then the sweep) cost at most
    # a few cycles of overhead per @fmacs issued.
    bcast = DEFAULT_TIMING.collective_cycles(k.P, max(Mt * Kt, Kt * Nt))
    assert k.floor() <= cycles <= k.P * (Kt * Nt * (Mt + 8) + bcast + 16)


def test_gemm_relaunch_starts_from_zero():
    # Two launches on one device: C is re-zeroed and the step counter reset by start().
    k = Gemm(6, 9, 3, 3, "wse3")
    out = compiled("gemm", k.arch, k.P, k.P, {"P": 3, "M": 6, "K": 9, "N": 3, "fp16": 0})
    run = Run.start(out)
    rt = run.runtime
    Mt, Kt, Nt = k.tile
    for seed in (1, 2):
        A, B = inputs(k, seed)
        for sym, X, count in (("A", A, Mt * Kt), ("B", B, Kt * Nt)):
            rt.memcpy_h2d(rt.get_id(sym), to_tiles(X, 3), 0, 0, 3, 3, count, streaming=False,
                          order=MemcpyOrder.ROW_MAJOR, data_type=MemcpyDataType.MEMCPY_32BIT,
                          nonblock=False)
        assert run.timed_launch("compute") > 0
        flat = np.zeros(k.M * k.N, dtype=np.float32)
        rt.memcpy_d2h(flat, rt.get_id("C"), 0, 0, 3, 3, Mt * Nt, streaming=False,
                      order=MemcpyOrder.ROW_MAJOR, data_type=MemcpyDataType.MEMCPY_32BIT,
                      nonblock=False)
        assert_close(from_tiles(flat, 3, k.M, k.N), A, B)
    rt.stop()


@pytest.mark.parametrize("args, match", [
    ((10, 8, 8, 4), "multiples of P"),
    ((8, 8, 8, 0), "must be positive"),
    ((1, 3, 1, 1, "wse3", True), "even"),
    ((8, 8, 8, 1, "wse1"), "arch"),
    ((64, 128, 64, 1), "budget"),
])
def test_gemm_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        Gemm(*args)


def test_gemm_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="expected A"):
        Gemm(4, 4, 4, 2).run(np.zeros((4, 3)), np.zeros((4, 4)))
