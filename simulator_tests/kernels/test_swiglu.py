"""csl/swiglu through its handle (waferscale.kernels.swiglu.SwiGLU) on the simulator, against the
model's own NumPy reference (waferscale.model.reference.silu, times up) and a float64 exact
value.

Tolerances (f32, u = 2^-24, gamma_n = n u / (1 - n u), relative to the exact
out* = gate / (1 + exp(-gate)) * up computed in float64 from the f32 inputs):

* kernel: gamma_4. exp_f32 rounds once (the simulator computes it in double and rounds once)
  and so perturbs 1 + exp(-a) by at most u relatively; the add, the divide and the multiply
  round once each.
* reference: gamma_9. NumPy's f32 exp is within 2.52 ulp on its SIMD paths (NumPy 1.18 release
  notes; 1 ulp <= 2u relative), counted as 6 roundings, plus the same add, divide, multiply.

Absolute terms: results below the normal range may be subnormal or flushed (2^-126); where
exp(-a) overflows f32 (a < -88.7) both formulas give -0 while |out*| < 2^-120 |up|.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from waferscale.kernels.swiglu import SwiGLU
from waferscale.model.reference import silu as reference_silu

U32 = 2.0**-24
TINY = 2.0**-126


def gamma(n: int) -> float:
    return n * U32 / (1 - n * U32)


def check(k: SwiGLU, gate: np.ndarray, up: np.ndarray) -> tuple[np.ndarray, int]:
    """Run the kernel, assert every bound of the module docstring, return (out, cycles)."""
    out, cycles = k.run(gate, up)
    assert np.all(np.isfinite(out))
    g64, u64 = gate.astype(np.float64), up.astype(np.float64)
    exact = g64 / (1.0 + np.exp(-g64)) * u64
    absolute = TINY + np.where(g64 < -88.0, 2.0**-120 * np.abs(u64), 0.0)
    assert np.all(np.abs(out - exact) <= gamma(4) * np.abs(exact) + absolute)

    ref = reference_silu(gate) * up
    assert ref.dtype == np.float32
    assert np.all(np.abs(out.astype(np.float64) - ref)
                  <= (gamma(4) + gamma(9)) * np.abs(exact) + 2 * absolute)
    return out, cycles


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), D=st.integers(1, 64), arch=st.sampled_from(["wse2", "wse3"]),
       seed=st.integers(0, 2**16), tails=st.booleans())
def test_swiglu_matches_reference(data, D, arch, seed, tails):
    P = data.draw(st.integers(1, min(8, D)), label="P")
    rng = np.random.default_rng(seed)
    gate = rng.uniform(-20, 20, D).astype(np.float32)
    if tails:   # exp overflow, its edge, and saturation, at random places
        idx = rng.choice(D, size=min(D, 3), replace=False)
        gate[idx] = np.array([-100.0, -88.5, 100.0], np.float32)[:idx.size]
    up = rng.uniform(-2, 2, D).astype(np.float32)
    k = SwiGLU(D, P, arch)
    _, cycles = check(k, gate, up)
    assert cycles >= k.floor()


def test_swiglu_special_values():
    gate = np.array([0.0, -0.0, 100.0, -100.0, 1.0, -1.0, 88.5, -88.5], np.float32)
    up = np.ones(8, np.float32)
    out, _ = check(SwiGLU(8, 3), gate, up)
    assert out[0] == 0 and out[1] == 0
    assert out[2] == np.float32(100.0)            # 1 + exp(-100) rounds to 1
    assert out[3] == 0 and np.signbit(out[3])     # exp(100) = inf in f32: -100 / inf = -0


def test_swiglu_rejects_bad_arguments():
    with pytest.raises(ValueError, match="P <= D"):
        SwiGLU(2, 3)
    with pytest.raises(ValueError, match="arch"):
        SwiGLU(8, 2, arch="cpu")
    with pytest.raises(ValueError, match="40 KiB"):
        SwiGLU(20000, 2)
    with pytest.raises(ValueError, match="shape"):
        SwiGLU(8, 2).run(np.zeros(8), np.zeros(9))
