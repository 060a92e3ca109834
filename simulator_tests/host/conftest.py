"""Make this directory importable so the host tests (and host scripts run by ``cs_python`` in
them) can ``import host_fake_device`` under any pytest import mode; a compile cache per
session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture(autouse=True)
def _session_compile_cache(session_compile_cache: Path) -> None:
    """Every test here uses the session's own compile cache (simulator_tests/conftest.py)."""
