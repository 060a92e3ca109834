"""The kernel handles (waferscale.kernels) against NumPy on the simulator, with hypothesis over
shapes, grids (dims not multiples of the grid included) and seeds, plus fixed cases.

Tolerances: the kernels accumulate in f32 in a fixed order, so |y - y_exact| is bounded by
gamma_N(u_f32) * (|W| |x|) with u_f32 = 2^-24 (Higham); f16 inputs are exact in f32 products
(11 + 11 bits <= 24), so the same bound holds for fp16. Max is exact.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from waferscale.cli import main
from waferscale.kernels import Allreduce, Gemv

U32 = 2.0**-24


def gamma(n: int) -> float:
    return n * U32 / (1 - n * U32)


def check_gemv(k: Gemv, seed: int) -> int:
    rng = np.random.default_rng(seed)
    wt = np.float16 if k.fp16 else np.float32
    W = rng.uniform(-1, 1, (k.M, k.N)).astype(wt)
    x = rng.uniform(-1, 1, k.N).astype(wt)
    y, cycles = k.run(W, x)
    W64, x64 = W.astype(np.float64), x.astype(np.float64)
    assert np.all(np.abs(y - W64 @ x64) <= gamma(k.N) * (np.abs(W64) @ np.abs(x64)))
    return cycles


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(M=st.integers(1, 24), N=st.integers(1, 24), P_c=st.integers(1, 4),
       P_r=st.integers(1, 4), fp16=st.booleans(), arch=st.sampled_from(["wse2", "wse3"]),
       seed=st.integers(0, 2**16))
def test_gemv_matches_numpy(M, N, P_c, P_r, fp16, arch, seed):
    assume(P_r <= M and P_c <= N)           # no more PE rows/columns than matrix rows/columns
    cycles = check_gemv(Gemv(M, N, P_c, P_r, fp16, arch), seed)
    assert cycles > 0


@pytest.mark.parametrize("M, N, P", [(576, 64, 8), (37, 53, 5)])   # SmolLM2-like, uneven
def test_gemv_fixed(M, N, P):
    k = Gemv(M, N, P, P, fp16=True)
    assert check_gemv(k, seed=7) >= k.floor() - P   # never faster than the MAC floor


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(N=st.integers(1, 20), P_c=st.integers(1, 8), P_r=st.integers(1, 3),
       op=st.sampled_from(["sum", "max"]), arch=st.sampled_from(["wse2", "wse3"]),
       seed=st.integers(0, 2**16))
def test_allreduce_matches_numpy(N, P_c, P_r, op, arch, seed):
    v = np.random.default_rng(seed).uniform(-1, 1, (P_r, P_c, N)).astype(np.float32)
    r, cycles = Allreduce(N, P_c, P_r, op, arch).run(v)
    if op == "max":
        assert np.array_equal(r, np.broadcast_to(v.max(axis=1, keepdims=True), v.shape))
    else:
        exact = v.astype(np.float64).sum(axis=1, keepdims=True)
        bound = gamma(P_c) * np.abs(v).astype(np.float64).sum(axis=1, keepdims=True)
        assert np.all(np.abs(r - exact) <= bound)
        assert np.all(r == r[:, :1, :])          # every PE of a row holds the same result
    assert cycles >= P_c - 1


def test_bench_quick_json(capsys):
    assert main(["bench", "--quick", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    from waferscale.kernels.bench import CASES
    assert {r["kernel"] for r in rows} == set(CASES)
    for r in rows:
        assert set(r) >= {"kernel", "arch", "shape", "grid", "cycles", "floor", "efficiency"}
        assert r["efficiency"] == round(r["floor"] / r["cycles"], 4)
        assert 0 < r["efficiency"] <= 1


def test_bench_phases_break_down_the_last_pe(capsys):
    assert main(["bench", "gemv", "--quick", "--json", "--phases"]) == 0
    rows = json.loads(capsys.readouterr().out)
    for r in rows:
        phases = r["phases"]
        assert any(k.startswith("task:") for k in phases)
        assert any(k.startswith("dsd:@fmac") for k in phases)     # the MACs show up
        assert max(phases.values()) <= r["cycles"] + 16           # spans lie within the run


def test_compile_cache_is_per_checkout(tmp_path, monkeypatch):
    """The compile cache's outputs name their layout file, so an entry made from another
    checkout of the same sources (since deleted) must not be reused."""
    import shutil

    from waferscale.kernels import base
    from waferscale.sim.device import SimulatorDevice

    src = base.find_csl_root()
    outs = []
    for k in range(2):
        copy = tmp_path / f"checkout{k}" / "csl"
        shutil.copytree(src, copy, ignore=shutil.ignore_patterns("out", "__pycache__"))
        monkeypatch.setattr(base, "find_csl_root", lambda copy=copy: copy)
        outs.append(base.compiled("gemv", "wse3", 2, 2,
                                  {"P_c": 2, "P_r": 2, "M": 4, "N": 4, "fp16": 0}))
        shutil.rmtree(copy)                  # the checkout goes away after its run
    assert outs[0] != outs[1]
    # The second entry still elaborates although the first checkout is gone.
    copy = tmp_path / "checkout1" / "csl"
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns("out", "__pycache__"))
    SimulatorDevice.from_output_dir(outs[1])
