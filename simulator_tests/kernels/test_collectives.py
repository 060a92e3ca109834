"""The collectives along rows and columns on the simulator: csl/allreduce (sum and max, axis
"row" and "col") and csl/broadcast (any root, both axes), against NumPy, with hypothesis over
vector lengths, line lengths (up to 8), the number of parallel lines, roots, axes, arches and
seeds.

Tolerances: a sum of P f32 terms in any association order has at most P - 1 roundings, so
|r - exact| <= gamma_P(u_f32) * sum |v| (Higham) with u_f32 = 2^-24. Max and broadcast do no
arithmetic and must be bit-exact.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from waferscale.kernels.allreduce import Allreduce
from waferscale.kernels.broadcast import Broadcast, broadcast_floor
from waferscale.kernels.floors import leg
from waferscale.sim.timing import DEFAULT_TIMING

U32 = 2.0**-24

ARCH = st.sampled_from(["wse2", "wse3"])
SEED = st.integers(0, 2**16)
SETTINGS = settings(max_examples=20, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def gamma(n: int) -> float:
    return n * U32 / (1 - n * U32)


def vectors(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Random f32 of both signs, none zero (so a PE that never gets its result cannot pass
    by accident on zero-initialised memory)."""
    v = np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)
    v[v == 0] = np.float32(0.5)
    return v


def check_allreduce(k: Allreduce, v: np.ndarray) -> tuple[np.ndarray, int]:
    """Run k on v and check every PE against NumPy; return (result, cycles)."""
    r, cycles = k.run(v)
    red = 1 if k.axis == "row" else 0          # host axis of [P_r][P_c][N] reduced over
    if k.op == "max":
        assert np.array_equal(r, np.broadcast_to(v.max(axis=red, keepdims=True), v.shape))
    else:
        v64 = v.astype(np.float64)
        exact = v64.sum(axis=red, keepdims=True)
        bound = gamma(k.line) * np.abs(v64).sum(axis=red, keepdims=True)
        assert np.all(np.abs(r - exact) <= bound)
        first = r[:, :1, :] if k.axis == "row" else r[:1, :, :]
        assert np.all(r == first)                # one broadcast: every PE of a line agrees
    assert cycles >= k.line - 1                  # at least one hop per PE of the line
    return r, cycles


@SETTINGS
@given(N=st.integers(1, 20), line=st.integers(1, 8), lines=st.integers(1, 3),
       op=st.sampled_from(["sum", "max"]), axis=st.sampled_from(["row", "col"]), arch=ARCH,
       seed=SEED)
def test_allreduce_both_axes_match_numpy(N, line, lines, op, axis, arch, seed):
    P_c, P_r = (line, lines) if axis == "row" else (lines, line)
    k = Allreduce(N, P_c, P_r, op, arch, axis)
    assert k.line == line and k.floor() == (leg(line - 1) + N - 1 if line > 1 else N)
    check_allreduce(k, vectors((P_r, P_c, N), seed))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(N=st.integers(1, 12), line=st.integers(2, 8), op=st.sampled_from(["sum", "max"]),
       arch=ARCH, seed=SEED)
def test_column_allreduce_is_the_transposed_row_allreduce(N, line, op, arch, seed):
    """Same roles and reduction order along a column as along a row: bit-identical results.
    (Cycle counts may differ by a cycle or so: memcpy reaches the PEs of a row and of a column
    at different times.)"""
    v = vectors((line, 2, N), seed)                               # two columns of `line` PEs
    col, _ = check_allreduce(Allreduce(N, 2, line, op, arch, "col"), v)
    vt = np.ascontiguousarray(v.transpose(1, 0, 2))               # two rows of `line` PEs
    row, _ = check_allreduce(Allreduce(N, line, 2, op, arch, "row"), vt)
    assert np.array_equal(col, row.transpose(1, 0, 2))


@SETTINGS
@given(N=st.integers(1, 24), P=st.integers(1, 8), root_frac=st.floats(0, 1),
       axis=st.sampled_from(["row", "col"]), arch=ARCH, seed=SEED)
def test_broadcast_is_exact(N, P, root_frac, axis, arch, seed):
    root = min(int(root_frac * P), P - 1)
    v = vectors((N,), seed)
    k = Broadcast(N, P, root, axis, arch)
    r, cycles = k.run(v)
    assert r.shape == (P, N)
    assert np.array_equal(r.view(np.uint32), np.broadcast_to(v, (P, N)).view(np.uint32))
    if P > 1:
        assert cycles >= k.floor() == leg(max(root, P - 1 - root)) + N - 1   # a floor


@pytest.mark.parametrize("arch", ["wse2", "wse3"])
def test_broadcast_from_the_middle_beats_the_end(arch):
    """The root's distance to the far end is the only P-dependent term: a middle root saves
    about half the line."""
    v = vectors((4,), 1)
    _, end = Broadcast(4, 8, 0, "row", arch).run(v)
    _, mid = Broadcast(4, 8, 3, "row", arch).run(v)
    # 3 router hops fewer to the far end, each hop_latency cycles.
    assert end - mid == ((8 - 1) - 4) * DEFAULT_TIMING.hop_latency


def test_broadcast_floor():
    assert broadcast_floor(32, 0, 256) == leg(31) + 255
    assert broadcast_floor(32, 15, 1) == leg(16)
    assert broadcast_floor(1, 0, 9) == 1


@pytest.mark.parametrize("make, message", [
    (lambda: Allreduce(4, 3, 1, "sum", "wse3", "diag"), "axis must be 'row' or 'col'"),
    (lambda: Allreduce(4, 0, 1), "P_c must be positive"),
    (lambda: Broadcast(4, 3, 3), r"root must be in \[0, 3\)"),
    (lambda: Broadcast(4, 3, 0, "z"), "axis must be 'row' or 'col'"),
    (lambda: Broadcast(0, 3), "N and P must be positive"),
])
def test_bad_parameters_raise_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_wrong_vector_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match=r"expected v of shape \(3,\)"):
        Broadcast(3, 2).run(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"expected v of shape \(4, 1, 2\)"):
        Allreduce(2, 1, 4, axis="col").run(np.zeros((1, 4, 2), np.float32))
