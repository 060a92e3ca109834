"""The kernels at the decode sizes `waferscale bench` reports (GEMV 2048x2048 on 32x32 PEs,
attention over 1025 positions on 48 PEs, ...), on both arches, each checked against NumPy the
same way as the small hypothesis cases (the bench cases raise when a result is off). They run
in seconds on the compiled engine (sim/engine.py)."""

from __future__ import annotations

import pytest

from waferscale.kernels.bench import CASES

FULL = [(name, k) for name, (full, _quick) in CASES.items() for k in range(len(full))]


@pytest.mark.parametrize("name, k", FULL, ids=[f"{n}-{k}" for n, k in FULL])
@pytest.mark.parametrize("arch", ["wse2", "wse3"])
def test_full_size(name, k, arch):
    row = CASES[name][0][k](arch)            # raises if the result does not match NumPy
    assert 0 < row["floor"] <= row["cycles"]
