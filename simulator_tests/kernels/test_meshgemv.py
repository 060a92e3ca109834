"""csl/meshgemv (WaferLLM's MeshGEMV, y = x · W in f16 on P × P PEs) through its handle on the
simulator: hypothesis over P, group_num (a divisor of P), Mt, Nt, strip width, arch and seeds;
fixed cases of the measured shapes; the strip-vs-full-grid cycle equality the README claims;
the handle's argument checks.

Tolerance: **none for f16 (bit-exact)**. Every f16 operation of the kernel (@fmach: product
rounded to f16, then the sum; @faddh: one rounding) is round-to-nearest-even on the simulator,
and the kernel's order of operations is fixed by the layout (row-major sweep over x, the
chains' order, the roots adding the southern chain first), so `meshgemv_reference`, which
repeats every rounding in that order, must equal the result bit for bit. To catch a reference
that is consistently wrong with the kernel, the reference itself must lie within the rigorous
f16 bound gamma_d(2^-11) * (|x| |W|) of the exact product, where d = 1 + Mt + S + G bounds the
roundings on any term's path through the summation tree (its product, the local sums, the
phase-1 chain of S = P / G rows, the phase-2 chain of the G roots).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from waferscale.kernels.meshgemv import MeshGemv, chain_to_root, meshgemv_reference

U16 = 2.0**-11


def inputs(k: MeshGemv, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Both signs for cancellation; |values| < 1 keeps every partial sum far from f16 overflow.
    return (rng.uniform(-1, 1, k.M).astype(np.float16),
            rng.uniform(-1, 1, (k.M, k.N)).astype(np.float16))


def check(k: MeshGemv, seed: int, warmup: int = 1, repeats: int = 2) -> float:
    x, W = inputs(k, seed)
    y, cycles = k.run(x, W, warmup, repeats)
    ref = k.reference(x, W)
    assert y.dtype == np.float16 and y.shape == (k.cols * k.Nt,)
    assert np.array_equal(y.view(np.uint16), ref.view(np.uint16)), \
        f"max |y - ref| = {np.max(np.abs(y.astype(np.float64) - ref)):.3e}"
    x64, W64 = x.astype(np.float64), W.astype(np.float64)
    n = 1 + k.Mt + k.P // k.group_num + k.group_num
    bound = n * U16 / (1 - n * U16) * (np.abs(x64) @ np.abs(W64))[:k.cols * k.Nt]
    assert np.all(np.abs(ref.astype(np.float64) - (x64 @ W64)[:k.cols * k.Nt]) <= bound)
    # The local sweep alone issues Mt DSD ops per iteration; a PE can never be faster.
    assert cycles >= k.Mt
    return cycles


@st.composite
def shapes(draw):
    P = draw(st.integers(1, 12))
    group_num = draw(st.sampled_from([g for g in range(1, P + 1) if P % g == 0]))
    return P, group_num


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=shapes(), Mt=st.integers(1, 4), Nt=st.integers(1, 9), width=st.integers(1, 3),
       arch=st.sampled_from(["wse2", "wse3"]), seed=st.integers(0, 2**16))
def test_meshgemv_matches_reference(shape, Mt, Nt, width, arch, seed):
    P, group_num = shape
    check(MeshGemv(P, Mt, Nt, group_num, min(width, P), arch), seed)


@pytest.mark.parametrize("arch", ["wse2", "wse3"])
@pytest.mark.parametrize("P,group_num", [(16, 2), (16, 4), (16, 8)])
def test_meshgemv_measured_shapes(arch, P, group_num):
    # WaferLLM's measured group counts at P = 16 with M = N = 8P, on a 2-column strip.
    check(MeshGemv(P, 8, 8, group_num, 2, arch), seed=11)


@pytest.mark.parametrize("arch", ["wse2", "wse3"])
def test_meshgemv_strip_has_full_grid_cycles(arch):
    # Columns never exchange data, so a 1-column strip of the 8 x 8 grid must give exactly the
    # full grid's mean cycles per iteration (README: why `width` exists).
    full = check(MeshGemv(8, 2, 3, 2, None, arch), seed=3, warmup=2, repeats=3)
    strip = check(MeshGemv(8, 2, 3, 2, 1, arch), seed=3, warmup=2, repeats=3)
    assert strip == full


def test_meshgemv_reference_order():
    # The chain order is visible in f16: near 2048 the spacing is 2, so 2048 + 1 rounds back to
    # 2048 (ties to even) while 1 + 1 + 2048 summed from the small end gives 2050.
    one, big = np.array([1.0], np.float16), np.array([2048.0], np.float16)
    assert chain_to_root([one, big, one], 1)[0] == 2048.0   # (1 + 2048) + 1, both lost
    assert chain_to_root([one, one, big], 2)[0] == 2050.0   # (1 + 1) + 2048
    assert chain_to_root([big, one, one], 0)[0] == 2050.0   # bottom chain (1 + 1), then root
    x = np.ones(4, np.float16)
    W = np.full((4, 4), 0.5, np.float16)
    assert np.all(meshgemv_reference(x, W, 2, 1) == 2.0)


def test_meshgemv_argument_checks():
    with pytest.raises(ValueError):
        MeshGemv(6, 1, 1, 4)              # 4 does not divide 6
    with pytest.raises(ValueError):
        MeshGemv(4, 1, 1, 2, width=5)     # wider than the grid
    k = MeshGemv(3, 1, 1, 3)
    x, W = inputs(k, 0)
    with pytest.raises(ValueError):
        k.run(x[:2], W)
    with pytest.raises(ValueError):
        k.run(x, W, repeats=0)


@pytest.mark.parametrize("arch", ["wse2", "wse3"])
def test_meshgemv_run_py_unmodified(documented_build, capsys, arch):
    # The documented cslc line and the unmodified run.py under `waferscale cs_python`, on both
    # PE engines: SUCCESS, the same cycles on both, and the handle's figure for the same shape
    # (run.py and the handle decode the timestamps independently).
    import re

    from waferscale.cli import main
    documented_build("meshgemv", arch)
    figures = []
    for engine in ("compiled", "python"):
        assert main(["cs_python", "--engine", engine, "run.py", "--name", "out"]) == 0
        out = capsys.readouterr().out
        assert "SUCCESS!" in out
        figures.append(float(re.search(r"mean cycles per iteration: ([\d.]+)", out)[1]))
    assert figures[0] == figures[1]
    # commands_*.sh: P:8, Mt:3, Nt:4, group_num:2; run.py's defaults: warmup 2, repeats 10.
    k = MeshGemv(8, 3, 4, 2, None, arch)
    x, W = inputs(k, 1)
    assert k.run(x, W, warmup=2, repeats=10)[1] == figures[0]
