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


@pytest.fixture(autouse=True, scope="session")
def _session_compile_cache(tmp_path_factory: pytest.TempPathFactory):
    """The compile cache (waferscale.host.cache) of this test session: a fresh directory, so
    that no entry of an earlier run (or the user's own) is used and none is left behind."""
    mp = pytest.MonkeyPatch()
    mp.setenv("WAFERSCALE_CACHE_DIR", str(tmp_path_factory.mktemp("compile-cache")))
    yield
    mp.undo()
