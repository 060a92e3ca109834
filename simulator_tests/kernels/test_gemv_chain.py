"""waferscale.kernels.gemv_chain.GemvChain (csl/gemv_chain) against NumPy on the simulator:
hypothesis over dims (non-multiples of the grid included), grids, precision, arch and seed,
plus a fixed uneven case and argument errors.

Tolerance (rigorous, elementwise, in float64): both GEMVs accumulate in f32 in a fixed order,
and products of f16 values are exact in f32 (11 + 11 bits <= 24), so with u = 2^-24 and
gamma_k = k·u / (1 - k·u) (Higham):
  y1:  |ŷ1 - W1·x| <= e1 = gamma_N · |W1||x|
  fp16 only: y1 is rounded to f16 before GEMV2: + 2^-11·(|W1·x| + e1) + 2^-25 (subnormals)
  with delta the resulting error of GEMV2's input,
  y2:  |ŷ2 - W2·W1·x| <= |W2|·delta + gamma_M1 · |W2|·(|W1·x| + delta)
plus gamma_{N+M1}(2^-53)·|W2||W1||x| for the float64 reference itself.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from waferscale.kernels.gemv_chain import GemvChain

U32 = 2.0**-24
U16 = 2.0**-11
U64 = 2.0**-53
ETA16 = 2.0**-25


def gamma(n: int, u: float = U32) -> float:
    return n * u / (1 - n * u)


def chain_bound(W1: np.ndarray, x: np.ndarray, W2: np.ndarray, fp16: bool) -> np.ndarray:
    """The module docstring's bound, per element of y2 (inputs in float64)."""
    M1, N = W1.shape
    abs1 = np.abs(W1) @ np.abs(x)
    y1 = np.abs(W1 @ x)
    delta = gamma(N) * abs1
    if fp16:
        delta = delta + U16 * (y1 + delta) + ETA16
    aW2 = np.abs(W2)
    return aW2 @ delta + gamma(M1) * (aW2 @ (y1 + delta)) + gamma(N + M1, U64) * (aW2 @ abs1)


def check_chain(k: GemvChain, seed: int) -> int:
    rng = np.random.default_rng(seed)
    wt = np.float16 if k.fp16 else np.float32
    W1 = rng.uniform(-1, 1, (k.M1, k.N)).astype(wt)
    x = rng.uniform(-1, 1, k.N).astype(wt)
    W2 = rng.uniform(-1, 1, (k.M2, k.M1)).astype(wt)
    y2, cycles = k.run(W1, W2, x)
    assert y2.dtype == np.float32 and y2.shape == (k.M2,)
    W1_64, x64, W2_64 = (a.astype(np.float64) for a in (W1, x, W2))
    err = np.abs(y2 - W2_64 @ (W1_64 @ x64))
    assert np.all(err <= chain_bound(W1_64, x64, W2_64, k.fp16))
    return cycles


@st.composite
def chains(draw: st.DrawFn) -> GemvChain:
    """A valid GemvChain: grid first, then dims at least the grid's axes (M1 >= P_r,
    N >= P_c, M2 >= P_c) so that uneven splits and single-PE axes all occur."""
    P_c, P_r = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    return GemvChain(M1=draw(st.integers(P_r, 20)), N=draw(st.integers(P_c, 20)),
                     M2=draw(st.integers(P_c, 20)), P_c=P_c, P_r=P_r, fp16=draw(st.booleans()),
                     arch=draw(st.sampled_from(["wse2", "wse3"])))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(k=chains(), seed=st.integers(0, 2**16))
def test_gemv_chain_matches_numpy(k, seed):
    assert check_chain(k, seed) > 0


@pytest.mark.parametrize("arch", ["wse2", "wse3"])
@pytest.mark.parametrize("fp16", [False, True])
def test_gemv_chain_fixed_uneven(arch, fp16):
    # 5 x 3 PEs: no dimension is a multiple of its grid axis; root_x = 2, root_y = 1.
    k = GemvChain(37, 53, 29, 5, 3, fp16, arch)
    assert check_chain(k, seed=7) >= k.floor()


def test_gemv_chain_rejects_bad_arguments():
    with pytest.raises(ValueError, match="P_c <= M2"):
        GemvChain(8, 8, 2, 4, 2)
    with pytest.raises(ValueError, match="arch"):
        GemvChain(8, 8, 8, 2, 2, arch="wse1")
    with pytest.raises(ValueError, match="budget"):
        GemvChain(4000, 4000, 4000, 1, 1)
    with pytest.raises(ValueError, match="expected W1"):
        GemvChain(8, 8, 8, 2, 2).run(np.zeros((8, 8)), np.zeros((8, 7)), np.zeros(8))
