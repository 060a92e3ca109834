"""csl/meshgemm (WaferLLM's MeshGEMM: Cannon's algorithm on interleaved rings, C = A · B in
f16 on P × P PEs) through its handle on the simulator: hypothesis over P, tile sizes, arch and
seeds; fixed cases on both arches; the ring geometry (every P: a single cycle, <= 2 hops, one
route per color per PE, A and B meet at every step); the handle's argument checks.

Tolerance: **none for f16 (bit-exact)**. Every @fmach of the kernel rounds the product to f16
and then the sum (round to nearest even on the simulator), and the order of the K blocks on
each PE is fixed by the ring schedule, so `meshgemm_reference`, which repeats every rounding
in that order, must equal C bit for bit. To catch a reference that is wrong in the same way as
the kernel, the reference itself must lie within the rigorous f16 bound
gamma_{K+1}(2^-11) * (|A| |B|) of the exact product (a sequential dot product of K rounded
products).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from waferscale.kernels.meshgemm import MeshGemm, link_index, ring_succ, schedule

U16 = 2.0**-11


def check(k: MeshGemm, seed: int, warmup: int = 1, repeats: int = 1) -> float:
    M, K, N = k.shape
    rng = np.random.default_rng(seed)
    A = rng.uniform(-1, 1, (M, K)).astype(np.float16)
    B = rng.uniform(-1, 1, (K, N)).astype(np.float16)
    C, cycles = k.run(A, B, warmup, repeats)
    ref = k.reference(A, B)
    assert C.dtype == np.float16 and C.shape == (M, N)
    assert np.array_equal(C.view(np.uint16), ref.view(np.uint16)), \
        f"max |C - ref| = {np.max(np.abs(C.astype(np.float64) - ref)):.3e}"
    A64, B64 = A.astype(np.float64), B.astype(np.float64)
    bound = (K + 1) * U16 / (1 - (K + 1) * U16) * (np.abs(A64) @ np.abs(B64))
    assert np.all(np.abs(ref.astype(np.float64) - A64 @ B64) <= bound)
    # Each of the P steps issues Kt * Nt multiply-adds on every PE: a lower bound per iteration.
    assert cycles >= k.P * k.Kt * k.Nt
    return cycles


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(P=st.integers(2, 6), Mt=st.integers(1, 3), Kt=st.integers(1, 3), Nt=st.integers(1, 3),
       arch=st.sampled_from(["wse2", "wse3"]), seed=st.integers(0, 2**16))
def test_meshgemm_matches_reference(P, Mt, Kt, Nt, arch, seed):
    check(MeshGemm(P, Mt, Kt, Nt, arch), seed)


@pytest.mark.parametrize("arch", ["wse2", "wse3"])
def test_meshgemm_fixed(arch):
    # An 8 x 8 grid (both ring ends, alignment of up to 4 shifts) with rectangular tiles, timed
    # over two repeats after a warmup: every iteration must restart from the home tiles.
    check(MeshGemm(8, 3, 2, 4, arch), seed=5, warmup=1, repeats=2)


@pytest.mark.parametrize("P", [*range(2, 34), 80, 144])
def test_meshgemm_ring_geometry(P):
    # The interleaved ring visits every position once, each link is 1 or 2 hops, and at every
    # PE the links touching it (send, receive, pass through) have distinct colors.
    seen, c = [], 0
    for _ in range(P):
        seen.append(c)
        c = ring_succ(c, P)
    assert c == 0 and sorted(seen) == list(range(P))
    used: dict[tuple[int, int], int] = {}
    for s in range(P):
        r = ring_succ(s, P)
        assert abs(r - s) in (1, 2)
        for pe in {s, r, (s + r) // 2}:
            used[(pe, link_index(s, P))] = used.get((pe, link_index(s, P)), 0) + 1
    assert max(used.values()) == 1
    # Cannon: A and B meet on every PE at every step, and each PE sees every K block once.
    order = schedule(P)
    assert np.all(np.sort(order, axis=0) == np.arange(P)[:, None, None])


def test_meshgemm_argument_checks():
    with pytest.raises(ValueError):
        MeshGemm(1, 1, 1, 1)
    k = MeshGemm(2, 1, 1, 1)
    with pytest.raises(ValueError):
        k.run(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError):
        k.run(np.zeros((2, 2)), np.zeros((2, 2)), repeats=0)


@pytest.mark.parametrize("arch", ["wse2", "wse3"])
def test_meshgemm_run_py_unmodified(documented_build, capsys, arch):
    # The documented cslc line and the unmodified run.py under `waferscale cs_python`: SUCCESS
    # and the handle's cycles for the same shape (independent timestamp decoding).
    import re

    from waferscale.cli import main
    documented_build("meshgemm", arch)
    assert main(["cs_python", "run.py", "--name", "out"]) == 0
    out = capsys.readouterr().out
    assert "SUCCESS!" in out
    figure = float(re.search(r"mean cycles per iteration: ([\d.]+)", out)[1])
    # commands_*.sh: P:4, Mt:2, Kt:3, Nt:2; run.py's defaults: warmup 1, repeats 2.
    assert check(MeshGemm(4, 2, 3, 2, arch), seed=1, warmup=1, repeats=2) == figure
