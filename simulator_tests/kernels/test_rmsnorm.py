"""csl/rmsnorm through its handle (waferscale.kernels.rmsnorm.RmsNorm) on the simulator, against
the model's own NumPy reference (waferscale.model.reference.rmsnorm) and a float64 exact value.

Tolerances (f32, u = 2^-24, gamma_n = n u / (1 - n u), relative to the exact
y* = h g / sqrt(mean(h^2) + eps) computed in float64 from the f32 inputs):

* kernel: gamma_{D+5}. The sum of squares sees at most D roundings per term (its square and at
  most D - 1 adds, local then along the row) and all terms are positive; the division by D and
  the addition of eps > 0 add two; invsqrt at most keeps its argument's relative error (it
  halves it) and rounds once (the simulator's invsqrt_f32 is computed in double, rounded
  once); the two multiplies add two.
* reference: gamma_{D+6}. NumPy's f32 mean (pairwise sum, then a division), + eps, sqrt,
  1/sqrt, and two multiplies.

So |y - y_ref| <= (gamma_{D+5} + gamma_{D+6}) |y*|. Results below the normal range may be
subnormal or flushed, hence an absolute 2^-126 per side. The residual sum h = x + r is one f32
rounding, so it must match NumPy bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from waferscale.kernels.rmsnorm import RmsNorm, f32_bits
from waferscale.model.reference import rmsnorm as reference_rmsnorm

U32 = 2.0**-24
TINY = 2.0**-126


def gamma(n: int) -> float:
    return n * U32 / (1 - n * U32)


def check(k: RmsNorm, x: np.ndarray, g: np.ndarray, r: np.ndarray | None) -> int:
    """Run the kernel, assert every bound of the module docstring, return its cycles."""
    h, y, cycles = k.run_all(x, g, r)
    h_expected = (x + r) if r is not None else x
    np.testing.assert_array_equal(h, h_expected)

    h64 = h_expected.astype(np.float64)
    eps32 = float(np.float32(k.eps))
    exact = h64 * g.astype(np.float64) / np.sqrt(np.mean(h64 * h64) + eps32)
    assert np.all(np.abs(y - exact) <= gamma(k.D + 5) * np.abs(exact) + TINY)

    ref = reference_rmsnorm(h_expected, g, k.eps)
    assert ref.dtype == np.float32
    both = (gamma(k.D + 5) + gamma(k.D + 6)) * np.abs(exact) + 2 * TINY
    assert np.all(np.abs(y.astype(np.float64) - ref) <= both)
    return cycles


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), D=st.integers(1, 64), residual=st.booleans(),
       eps=st.sampled_from([1e-5, 1e-6]), arch=st.sampled_from(["wse2", "wse3"]),
       seed=st.integers(0, 2**16))
def test_rmsnorm_matches_reference(data, D, residual, eps, arch, seed):
    P = data.draw(st.integers(1, min(8, D)), label="P")
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, D).astype(np.float32)
    g = rng.uniform(-1.5, 1.5, D).astype(np.float32)
    r = rng.uniform(-2, 2, D).astype(np.float32) if residual else None
    k = RmsNorm(D, P, eps, residual, arch)
    assert check(k, x, g, r) >= k.floor()


@pytest.mark.parametrize("arch", ["wse2", "wse3"])
def test_rmsnorm_smollm2_width(arch):
    """SmolLM2-135M's hidden size (576) over 8 PEs, with the residual add of a Llama layer."""
    rng = np.random.default_rng(3)
    x, r = (rng.standard_normal(576).astype(np.float32) for _ in range(2))
    g = rng.uniform(0.5, 1.5, 576).astype(np.float32)
    k = RmsNorm(576, 8, 1e-5, True, arch)
    assert check(k, x, g, r) >= k.floor()


def test_rmsnorm_zero_vector_gives_zero():
    """mean(0) + eps > 0: the scale is finite and every output is exactly 0 (no NaN)."""
    y, _ = RmsNorm(13, 4, 1e-6).run(np.zeros(13, np.float32), np.ones(13, np.float32))
    assert np.array_equal(y, np.zeros(13, np.float32))


def test_rmsnorm_rejects_bad_arguments():
    with pytest.raises(ValueError, match="P <= D"):
        RmsNorm(3, 4)
    with pytest.raises(ValueError, match="eps"):
        RmsNorm(8, 2, eps=-1.0)
    with pytest.raises(ValueError, match="arch"):
        RmsNorm(8, 2, arch="wse1")
    with pytest.raises(ValueError, match="40 KiB"):
        RmsNorm(8000, 1)
    k = RmsNorm(8, 2, residual=True)
    with pytest.raises(ValueError, match="residual"):
        k.run(np.zeros(8), np.zeros(8))
    with pytest.raises(ValueError, match="shape"):
        RmsNorm(8, 2).run(np.zeros(7), np.zeros(8))


def test_f32_bits_matches_layout_default():
    assert f32_bits(1e-5) == 925353388   # layout.csl's default eps_bits
    assert f32_bits(1e-6) == 897988541
