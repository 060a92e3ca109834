"""Shared fixtures for the fabric tests: every test that takes ``backend`` (or ``new_fabric``)
runs on the Python reference and, when it is built, on the C++ core. Helpers are handed out as
fixtures so that no test module has to import this file."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from waferscale.sim.fabric import Direction, Fabric, FabricOptions, cpp_available

BACKENDS = ["python", "cpp"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "cpp" and not cpp_available():
        pytest.skip("waferscale._fabric is not built (pip install -e . needs a C++17 compiler)")
    return request.param


_STEP = {Direction.NORTH: (0, -1), Direction.EAST: (1, 0), Direction.SOUTH: (0, 1),
         Direction.WEST: (-1, 0)}
_OPPOSITE = {Direction.NORTH: Direction.SOUTH, Direction.SOUTH: Direction.NORTH,
             Direction.EAST: Direction.WEST, Direction.WEST: Direction.EAST}


def _route_path(fabric: Fabric, color: int, start: tuple[int, int],
               moves: Sequence[Direction], deliver_queue: int | None = 2) -> tuple[int, int]:
    """Route ``color`` from the CE of ``start`` along ``moves`` (one direction per hop) to the
    CE at the end of the path, binding ``deliver_queue`` there. Returns the end PE."""
    x, y = start
    rx = {Direction.RAMP}
    for move in moves:
        fabric.set_route(x, y, color, rx, {move})
        dx, dy = _STEP[move]
        x, y = x + dx, y + dy
        rx = {_OPPOSITE[move]}
    fabric.set_route(x, y, color, rx, {Direction.RAMP})
    if deliver_queue is not None:
        fabric.bind_input_queue(x, y, deliver_queue, color)
    return x, y


@pytest.fixture
def route_path() -> Callable[..., tuple[int, int]]:
    """``route_path(fabric, color, start, moves, deliver_queue=2) -> end PE``."""
    return _route_path


@pytest.fixture
def new_fabric(backend: str) -> Callable[..., Fabric]:
    """``new_fabric(width, height, **options)``: a fabric on the test's backend that records
    deliveries unless told otherwise."""

    def make(width: int, height: int, **options: object) -> Fabric:
        options.setdefault("record_deliveries", True)
        return Fabric(width, height, FabricOptions(**options),  # type: ignore[arg-type]
                      backend=backend)  # type: ignore[arg-type]

    return make


@pytest.fixture(autouse=True)
def _session_compile_cache(session_compile_cache: Path) -> None:
    """Every test here uses the session's own compile cache (simulator_tests/conftest.py)."""
