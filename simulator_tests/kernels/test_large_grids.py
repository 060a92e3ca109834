"""Larger grids, opt-in (`python -m pytest -m slow simulator_tests/kernels`): the kernels at
sizes closer to a real decode step, each checked against NumPy the same way as the fast
tests (the same error bounds, via `waferscale bench`'s checked cases)."""

from __future__ import annotations

import pytest

from waferscale.kernels import bench

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("case", [
    lambda a: bench._gemv(512, 512, 16, True, a),
    lambda a: bench._gemv_chain(576, 576, 1536, 16, True, a),
    lambda a: bench._allreduce(64, 32, a),
    lambda a: bench._allreduce_col(64, 32, a),
    lambda a: bench._broadcast(64, 32, a),
    lambda a: bench._argmax(49152, 16, 16, a),
    lambda a: bench._rmsnorm(2048, 32, True, a),
    lambda a: bench._swiglu(2048, 32, a),
    lambda a: bench._rope(9, 64, 8, 128, a),
    lambda a: bench._attention(9, 3, 64, 255, 16, a),
    lambda a: bench._gemm(64, 64, 64, 8, a),
], ids=["gemv-16x16", "gemv_chain-16x16", "allreduce-32", "allreduce_col-32",
        "broadcast-32", "argmax-16x16", "rmsnorm-32", "swiglu-32", "rope-8", "attention-16",
        "gemm-8x8"])
@pytest.mark.parametrize("arch", ["wse2", "wse3"])
def test_large(case, arch):
    row = case(arch)            # raises if the result does not match NumPy
    assert 0 < row["floor"] <= row["cycles"]
