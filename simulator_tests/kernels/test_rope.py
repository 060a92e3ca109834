"""csl/rope through its handle (waferscale.kernels.rope.Rope) on the simulator, against the
model's own NumPy reference (waferscale.model.reference.apply_rope with rope_tables, adjacent
pairs: GGUF llama order) and a float64 exact rotation.

Tolerances (f32, u = 2^-24, gamma_n = n u / (1 - n u)); for an even output a*c - b*s (odd:
a*s + b*c, alike with c and s swapped), with a, b the f32 inputs:

* against apply_rope: 2 gamma_2 (|a c| + |b s|). Both use the same f32 tables (the host rounds
  the float64 cos/sin once to f32; the handle takes them from rope_tables), and each computes two
  rounded products and one rounded add or subtract, so each is within gamma_2 (|a c| + |b s|)
  of the exact value with those tables. (In this simulator both are the same IEEE operations in
  the same order, so they agree bit for bit; the bound does not rely on it, so a fused
  multiply-add on hardware would still pass.)
* against the float64 rotation: gamma_3 (|a c| + |b s|): the table rounding adds one more
  relative error to each product.
* position 0: cos = 1 and sin = 0 exactly, so y == x bit for bit.

Absolute 2^-126 everywhere: results below the normal range may be subnormal or flushed.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from waferscale.host import MemcpyDataType, MemcpyOrder
from waferscale.kernels.rope import Rope, rope_floor
from waferscale.model.reference import apply_rope, rope_frequencies, rope_tables

U32 = 2.0**-24
TINY = 2.0**-126


def gamma(n: int) -> float:
    return n * U32 / (1 - n * U32)


def check(k: Rope, x: np.ndarray, pos: int) -> tuple[np.ndarray, int]:
    """Apply the kernel, assert every bound of the module docstring, return (y, cycles)."""
    y, cycles = k.apply(x, pos)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.all(np.isfinite(y))
    a, b = x[:, 0::2].astype(np.float64), x[:, 1::2].astype(np.float64)

    # Against the reference with the same f32 tables.
    cos, sin = rope_tables([pos], k.d, k.base)
    ref = apply_rope(x[None], cos, sin)[0]
    c, s = cos[0].astype(np.float64), sin[0].astype(np.float64)
    size_even = np.abs(a * c) + np.abs(b * s)
    size_odd = np.abs(a * s) + np.abs(b * c)
    err = np.abs(y.astype(np.float64) - ref)
    assert np.all(err[:, 0::2] <= 2 * gamma(2) * size_even + TINY)
    assert np.all(err[:, 1::2] <= 2 * gamma(2) * size_odd + TINY)

    # Against the float64 rotation.
    angles = pos * rope_frequencies(k.d, k.base)
    c64, s64 = np.cos(angles), np.sin(angles)
    exact_even, exact_odd = a * c64 - b * s64, a * s64 + b * c64
    assert np.all(np.abs(y[:, 0::2] - exact_even)
                  <= gamma(3) * (np.abs(a * c64) + np.abs(b * s64)) + TINY)
    assert np.all(np.abs(y[:, 1::2] - exact_odd)
                  <= gamma(3) * (np.abs(a * s64) + np.abs(b * c64)) + TINY)

    if pos == 0:
        np.testing.assert_array_equal(y, x)
    return y, cycles


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), H=st.integers(1, 6), half_d=st.integers(1, 20),
       arch=st.sampled_from(["wse2", "wse3"]), seed=st.integers(0, 2**16),
       base=st.sampled_from([10000.0, 500000.0]))
def test_rope_matches_reference(data, H, half_d, arch, seed, base):
    d = 2 * half_d
    P = data.draw(st.integers(1, min(8, H * half_d)), label="P")
    max_pos = data.draw(st.integers(1, 40), label="max_pos")
    positions = data.draw(st.lists(st.integers(0, max_pos - 1), min_size=1, max_size=3),
                          label="positions")
    rng = np.random.default_rng(seed)
    with Rope(H, d, P, max_pos, base, arch) as k:
        for pos in positions:   # one device, tables copied once, several launches
            x = rng.uniform(-4, 4, (H, d)).astype(np.float32)
            _, cycles = check(k, x, pos)
            assert cycles >= k.floor()


def test_rope_blocks_span_heads_and_positions_reuse_tables():
    """3 heads of 8 on 5 PEs: blocks of 3, 3, 2, 2, 2 pairs, so blocks cross head boundaries;
    positions in any order on one device, including the first and last table rows."""
    rng = np.random.default_rng(3)
    with Rope(3, 8, 5, 16) as k:
        for pos in (15, 0, 7, 15, 1):
            x = rng.uniform(-2, 2, (3, 8)).astype(np.float32)
            check(k, x, pos)


def test_rope_out_of_range_position_gives_nan_on_device():
    """The kernel's own guard (the handle never launches such a pos): y is all NaN."""
    k = Rope(2, 4, 2, 4)
    try:
        k.apply(np.ones((2, 4), np.float32), 3)
        rt = k._start().runtime
        for pos in (-1, 4):
            rt.launch("rope", np.int16(pos), nonblock=False)
            for px, n in ((0, 4), (1, 4)):
                part = np.zeros(n, np.float32)
                rt.memcpy_d2h(part, rt.get_id("y"), px, 0, 1, 1, n, streaming=False,
                              order=MemcpyOrder.ROW_MAJOR,
                              data_type=MemcpyDataType.MEMCPY_32BIT, nonblock=False)
                assert np.all(np.isnan(part))
    finally:
        k.close()


def test_rope_floor():
    # H=9, d=64 on 8 PEs: 288 pairs, 36 per PE, 6*36 SIMD element ops.
    # m = 36 pairs on the busiest PE: 4m products at one a cycle, 2m adds at 4 (WSE-3) / 2.
    assert rope_floor(9, 64, 8, "wse3") == 144 + 18
    assert rope_floor(9, 64, 8, "wse2") == 144 + 36


def test_rope_rejects_bad_arguments():
    with pytest.raises(ValueError, match="even"):
        Rope(2, 7, 1, 4)
    with pytest.raises(ValueError, match="no empty blocks"):
        Rope(1, 4, 3, 4)
    with pytest.raises(ValueError, match="max_pos"):
        Rope(1, 4, 1, 0)
    with pytest.raises(ValueError, match="base"):
        Rope(1, 4, 1, 4, base=0.0)
    with pytest.raises(ValueError, match="arch"):
        Rope(1, 4, 1, 4, arch="cpu")
    with pytest.raises(ValueError, match="40 KiB"):
        Rope(32, 128, 1, 64)
    k = Rope(2, 4, 2, 4)
    with pytest.raises(ValueError, match="shape"):
        k.apply(np.zeros(8, np.float32), 0)
    with pytest.raises(ValueError, match="outside"):
        k.apply(np.zeros((2, 4), np.float32), 4)
    with pytest.raises(ValueError, match="outside"):
        k.apply(np.zeros((2, 4), np.float32), -1)
    with pytest.raises(TypeError, match="integer"):
        k.apply(np.zeros((2, 4), np.float32), 1.5)
    k.close()   # never started: a no-op
