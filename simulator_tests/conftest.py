"""Suite-wide set-up.

Importing the comptime evaluator raises Python's recursion limit once, at collection time
(the evaluator recurses over ASTs); doing it here keeps hypothesis from warning that the limit
changed inside a test. ``session_compile_cache`` is the fixture that the conftests of sim/ and
host/ use for every test of theirs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import waferscale.lang.comptime  # noqa: F401


@pytest.fixture(scope="session")
def session_compile_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The compile cache (waferscale.host.cache) of this test session: a fresh directory, so
    that no entry of an earlier run (or the user's own) is used and none is left behind."""
    path = tmp_path_factory.mktemp("compile-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("WAFERSCALE_CACHE_DIR", str(path))
    yield path
    mp.undo()
