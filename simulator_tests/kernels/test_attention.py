"""csl/attention through its handle (waferscale.kernels.attention.DecodeAttention) on the
simulator: one device per sequence, several decode steps each, every step's output compared
with the model's NumPy reference (waferscale.model.reference.attention, causal grouped-query
attention over all keys so far) and with a float64 evaluation.

Tolerance, per output element of head h (f32 inputs, u = 2^-24, gamma_k = k u / (1 - k u),
T = L + 1 keys, P PEs; exact values * computed in float64):

* a score s_t = fl(fl(q . k_t) * fl(1/sqrt(d))) is off by delta_t <= gamma_{d+2} scale
  sum_j |q_j k_tj| (d products and d - 1 sums in any order, the scale's rounding, the
  multiply);
* exp(s_t - max) then has a relative error within exp(+-R),
  R = max_t (delta_t + u (|s*_t - max s*| + 2 max delta)) + 2u: the score errors, the
  subtraction's rounding (the computed max is off by at most max delta), and up to 2u for the
  exponential (one ulp);
* each probability is therefore within a factor exp(+-2R) of the exact one, and the sums of at
  most T terms (local, then P - 1 more in the row allreduce), the reciprocal and the final
  multiply add gamma_{2(T+P+4)}.

So |out - out*| <= (exp(2R) (1 + gamma_{2(T+P+4)}) - 1) sum_t p*_t |v_t| + 2^-126. The
bound is relative to sum_t p*_t |v_t|, not |out*|, because the weighted sum of values may
cancel. The NumPy reference obeys the same bound (any summation order), so the kernel and
the reference differ by at most twice that. The bound is
waferscale.kernels.attention.exact_with_bound (shared with the bench case).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from waferscale.kernels.attention import (
    DecodeAttention,
    attention_floor,
    exact_with_bound,
    scale_bits,
)
from waferscale.kernels.floors import exp_cycles, leg
from waferscale.model.reference import attention as reference_attention


def check_step(k: DecodeAttention, q: np.ndarray, K: np.ndarray, V: np.ndarray,
               out: np.ndarray) -> None:
    """Assert the kernel's output for query q over K, V (all keys so far) against both oracles."""
    exact, bound = exact_with_bound(q, K, V, k.P)
    assert out.dtype == np.float32 and out.shape == (k.H, k.d)
    assert np.all(np.abs(out - exact) <= bound)
    T = K.shape[1]
    ref = reference_attention(q[None], K, V, start=T - 1).reshape(k.H, k.d)
    assert ref.dtype == np.float32
    assert np.all(np.abs(out.astype(np.float64) - ref) <= 2 * bound)


def run_sequence(k: DecodeAttention, steps: int, rng: np.random.Generator,
                 q_scale: float) -> list[int]:
    """Feed ``steps`` random tokens through an open handle, checking every step; returns
    the cycles of each."""
    K = np.zeros((k.H_kv, 0, k.d), np.float32)
    V = np.zeros_like(K)
    cycles = []
    for _ in range(steps):
        L = k.length
        q = (q_scale * rng.standard_normal((k.H, k.d))).astype(np.float32)
        kn = rng.standard_normal((k.H_kv, k.d)).astype(np.float32)
        vn = rng.standard_normal((k.H_kv, k.d)).astype(np.float32)
        K = np.concatenate([K, kn[:, None]], axis=1)
        V = np.concatenate([V, vn[:, None]], axis=1)
        out, c = k.step(q, kn, vn)
        assert k.length == L + 1
        check_step(k, q, K, V, out)
        assert c >= k.floor(L)
        cycles.append(c)
    # The appends built the cache in the documented layout.
    k_dev, v_dev = k.read_cache()
    np.testing.assert_array_equal(k_dev, K)
    np.testing.assert_array_equal(v_dev, V)
    return cycles


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), H_kv=st.integers(1, 3), group=st.integers(1, 3),
       d=st.sampled_from([1, 2, 5, 8, 16]), P=st.integers(1, 4),
       arch=st.sampled_from(["wse2", "wse3"]), q_scale=st.sampled_from([0.5, 4.0]),
       seed=st.integers(0, 2**16))
def test_attention_sequence_matches_reference(data, H_kv, group, d, P, arch, q_scale, seed):
    capacity = data.draw(st.integers(1, 12), label="capacity")
    steps = data.draw(st.integers(1, min(capacity, 7)), label="steps")
    with DecodeAttention(H_kv * group, H_kv, d, capacity, P, arch) as k:
        run_sequence(k, steps, np.random.default_rng(seed), q_scale)


@pytest.mark.parametrize("arch", ["wse2", "wse3"])
def test_attention_forty_appends(arch):
    """40 consecutive tokens into a 40-position cache on 4 PEs (10 slots each), every step
    checked: the appends cross every PE boundary and the last step fills the cache."""
    with DecodeAttention(6, 2, 16, 40, 4, arch) as k:
        cycles = run_sequence(k, 40, np.random.default_rng(11), 3.0)
        with pytest.raises(ValueError, match="full"):
            k.step(np.zeros((6, 16)), np.zeros((2, 16)), np.zeros((2, 16)))
    # The score and output sweeps grow with the valid slots of the busiest PE.
    assert cycles[9] > cycles[0]


def test_attention_load_cache_then_step():
    """A prefix written by load_cache (a prefill) is attended exactly as appended tokens are."""
    rng = np.random.default_rng(5)
    H, H_kv, d, C, P = 4, 2, 8, 30, 3
    K = rng.standard_normal((H_kv, 21, d)).astype(np.float32)
    V = rng.standard_normal((H_kv, 21, d)).astype(np.float32)
    with DecodeAttention(H, H_kv, d, C, P) as k:
        k.load_cache(K[:, :20], V[:, :20])
        assert k.length == 20
        q = rng.standard_normal((H, d)).astype(np.float32)
        out, _ = k.step(q, K[:, 20], V[:, 20])
        check_step(k, q, K, V, out)
        k_dev, v_dev = k.read_cache()
        np.testing.assert_array_equal(k_dev, K)
        np.testing.assert_array_equal(v_dev, V)


def test_attention_layout_mapping():
    k = DecodeAttention(9, 3, 64, 1025, 48)
    assert k.n == 22
    assert k.position_of(0) == 0 and k.position_of(21) == 0 and k.position_of(22) == 1
    assert k.slot_of(1024) == (46, 12)
    with pytest.raises(ValueError, match="outside"):
        k.position_of(1025)


def test_attention_floor_formula():
    # 2*9*64*1025 MACs over 48 PEs at 1 MAC/cycle, + (48 + 9 - 1) + (48 + 576 - 1).
    assert attention_floor(9, 64, 1024, 48, "wse3") == (24600 + 193 * exp_cycles()
                                                        + (leg(47) + 8) + (leg(47) + 575))


def test_scale_bits():
    assert scale_bits(64) == 1040187392   # 0.125
    assert scale_bits(8) == 1052050675    # commands_*.sh default


def test_attention_rejects_bad_arguments():
    with pytest.raises(ValueError, match="divide"):
        DecodeAttention(4, 3, 8, 8, 2)
    with pytest.raises(ValueError, match="arch"):
        DecodeAttention(4, 2, 8, 8, 2, arch="wse1")
    with pytest.raises(ValueError, match=">= 1"):
        DecodeAttention(4, 2, 0, 8, 2)
    with pytest.raises(ValueError, match="budget"):
        DecodeAttention(9, 3, 64, 1025, 16)
    with pytest.raises(ValueError, match="127"):
        DecodeAttention(1, 1, 1, 1000, 2)
    k = DecodeAttention(4, 2, 8, 8, 2)
    with pytest.raises(RuntimeError, match="open"):
        k.step(np.zeros((4, 8)), np.zeros((2, 8)), np.zeros((2, 8)))
    with k:
        with pytest.raises(ValueError, match="shape"):
            k.step(np.zeros((4, 7)), np.zeros((2, 8)), np.zeros((2, 8)))
        with pytest.raises(ValueError, match="NaN"):
            k.step(np.full((4, 8), np.nan), np.zeros((2, 8)), np.zeros((2, 8)))
        with pytest.raises(ValueError, match="capacity"):
            k.load_cache(np.zeros((2, 9, 8)), np.zeros((2, 9, 8)))
