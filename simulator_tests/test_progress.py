"""The progress-bar helper (waferscale.progress): silent unless stderr is a terminal."""

from __future__ import annotations

import pytest
from waferscale.progress import progress


def test_disabled_bar_passes_items_through_silently(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(progress(range(5), desc="x", unit="item", enabled=False)) == [0, 1, 2, 3, 4]
    bar = progress(desc="cycles", unit=" cycles", enabled=False)
    bar.update(10)
    bar.close()
    assert capsys.readouterr() == ("", "")


def test_enabled_bar_writes_to_stderr_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(progress(range(3), desc="loading", unit="tensor", enabled=True)) == [0, 1, 2]
    out, err = capsys.readouterr()
    assert out == "" and "loading" in err


def test_default_follows_whether_stderr_is_a_terminal(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    list(progress(range(3), desc="quiet", unit="item"))   # captured stderr is not a terminal
    assert capsys.readouterr().err == ""
