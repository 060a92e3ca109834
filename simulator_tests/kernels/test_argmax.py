"""csl/argmax through its handle (waferscale.kernels.argmax) against numpy.argmax on the
simulator: hypothesis over V (multiples of the grid and not), grids up to 4×4, both
architectures and seeds, with planted ties and all-negative logits, plus fixed cases.

The answer is exact: the index must equal numpy.argmax's (the smallest index holding the
max) and the value must be bit-identical to logits[index].
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from waferscale.kernels.argmax import Argmax, argmax_floor, rectangles
from waferscale.kernels.floors import leg


def check(k: Argmax, logits: np.ndarray) -> int:
    index, value, cycles = k.run(logits)
    expected = int(np.argmax(logits))
    assert index == expected
    assert np.float32(value).tobytes() == logits[expected].tobytes()
    return cycles


def make_logits(rng: np.random.Generator, V: int, ties: int, negative: bool,
                low_cardinality: bool) -> np.ndarray:
    """Random logits; ``ties`` extra copies of the max at random places; all below zero if
    ``negative``; drawn from 3 values if ``low_cardinality`` (ties everywhere)."""
    if low_cardinality:
        x = rng.choice(np.array([-2.0, -1.0, 0.5], dtype=np.float32), size=V)
    else:
        x = rng.uniform(-8.0, 8.0, size=V).astype(np.float32)
    if negative:
        x = -np.abs(x) - np.float32(0.25)
    for i in rng.integers(0, V, size=ties):
        x[i] = x.max()
    return x


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(P_c=st.integers(1, 4), P_r=st.integers(1, 4), extra=st.integers(0, 150),
       arch=st.sampled_from(["wse2", "wse3"]), seed=st.integers(0, 2**16),
       ties=st.integers(0, 3), negative=st.booleans(), low_cardinality=st.booleans())
def test_argmax_matches_numpy(P_c, P_r, extra, arch, seed, ties, negative, low_cardinality):
    V = P_c * P_r + extra            # one element per PE up to uneven blocks of ~150 (several chunks)
    logits = make_logits(np.random.default_rng(seed), V, ties, negative, low_cardinality)
    k = Argmax(V, P_c, P_r, arch)
    assert check(k, logits) >= (P_c - 1) + (P_r - 1)    # the result crossed the grid


@pytest.mark.parametrize("arch", ["wse2", "wse3"])
def test_ties_across_every_pe(arch):
    # The max sits at the end of every block (uneven blocks): the smallest index, in PE
    # (0, 0)'s block but not at its start, must win over the copies on every other PE.
    V, P_c, P_r = 47, 4, 3
    logits = np.full(V, -3.0, dtype=np.float32)
    for px0, py0, w, h, n, first in rectangles(V, P_c, P_r):
        for b in range(w * h):
            logits[first + b * n + n - 1] = 7.0
    assert int(np.argmax(logits)) == 3
    check(Argmax(V, P_c, P_r, arch), logits)


def test_special_values():
    # -inf everywhere but one -0.0 and one +0.0: the zeros compare equal, the first wins.
    logits = np.full(20, -np.inf, dtype=np.float32)
    logits[13], logits[6] = np.float32(0.0), np.float32(-0.0)
    check(Argmax(20, 3, 2), logits)
    # +inf beats everything; all -inf picks index 0.
    logits[17] = np.inf
    check(Argmax(20, 2, 3), logits)
    check(Argmax(20, 4, 4), np.full(20, -np.inf, dtype=np.float32))


def test_smollm2_vocabulary_and_floor():
    # SmolLM2's vocabulary (49152) on 16 PEs: blocks of 3072, the max in the last block.
    rng = np.random.default_rng(3)
    logits = rng.standard_normal(49152).astype(np.float32)
    logits[49000] = 20.0
    k = Argmax(49152, 4, 4, "wse3")
    cycles = check(k, logits)
    assert cycles >= k.floor()
    assert k.floor() == argmax_floor(49152, 4, 4, "wse3") == 768 + leg(3 + 3) + 1


def test_rectangles_cover_the_vector():
    for V, P_c, P_r in [(10, 3, 2), (12, 3, 4), (13, 3, 4), (23, 4, 3), (7, 1, 7), (9, 4, 1)]:
        covered = np.zeros(V, dtype=int)
        pe_blocks = {}
        for px0, py0, w, h, n, first in rectangles(V, P_c, P_r):
            covered[first:first + w * h * n] += 1
            for j in range(h):
                for i in range(w):
                    k = (py0 + j) * P_c + px0 + i
                    pe_blocks[k] = (first + (j * w + i) * n, n)
        assert np.all(covered == 1)
        # PE k holds block k of the row-major split, the first V % P blocks one longer.
        base, extra = divmod(V, P_c * P_r)
        for k, (start, n) in pe_blocks.items():
            assert n == base + (k < extra)
            assert start == k * base + min(k, extra)
        assert sorted(pe_blocks) == list(range(P_c * P_r))


@pytest.mark.parametrize("kwargs, match", [
    (dict(V=5, P_c=3, P_r=2), "V <= 2"),
    (dict(V=2**24 + 1, P_c=1), "V <= 2"),
    (dict(V=20000, P_c=1), "data budget"),
    (dict(V=10132, P_c=1), "data budget"),   # 40962 bytes; layout.csl rejects it too
    (dict(V=8, P_c=2, arch="wse4"), "arch"),
])
def test_bad_shapes_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Argmax(**kwargs)


def test_largest_block_is_accepted():
    assert Argmax(10131, 1).V == 10131       # 40958 bytes, within layout.csl's budget


def test_bad_input_raises():
    k = Argmax(8, 2, 2)
    with pytest.raises(ValueError, match="shape"):
        k.run(np.zeros(9, dtype=np.float32))
    x = np.zeros(8, dtype=np.float32)
    x[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        k.run(x)
