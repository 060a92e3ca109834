"""The reference decoder's BLAS thread policy (waferscale.model.threads)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from threadpoolctl import threadpool_info
from waferscale.model import threads
from waferscale.model.threads import ENV_VAR, blas_limit, blas_threads


def blas_thread_counts() -> list[int]:
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


@pytest.mark.parametrize("raw, expect", [(None, 1), ("", 1), ("3", 3), ("0", None)])
def test_blas_threads_from_the_environment(monkeypatch: pytest.MonkeyPatch, raw: str | None,
                                           expect: int | None) -> None:
    if raw is None:
        monkeypatch.delenv(ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(ENV_VAR, raw)
    assert blas_threads() == expect


def test_malformed_setting_warns_and_uses_the_default(monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    threads._warn_bad_value.cache_clear()
    monkeypatch.setenv(ENV_VAR, "many")
    with caplog.at_level(logging.WARNING, logger="waferscale.model.threads"):
        assert blas_threads() == 1
        assert blas_threads() == 1
    assert [r.getMessage() for r in caplog.records].count(
        f"{ENV_VAR}='many' is not a non-negative integer; using 1 BLAS thread(s)") == 1


def test_blas_limit_caps_only_inside_the_block(monkeypatch: pytest.MonkeyPatch) -> None:
    np.ones((4, 4)) @ np.ones((4, 4))           # make sure NumPy's BLAS is loaded
    before = blas_thread_counts()
    if not before:
        pytest.skip("NumPy is not linked against a BLAS that threadpoolctl knows")
    monkeypatch.delenv(ENV_VAR, raising=False)
    with blas_limit():
        assert blas_thread_counts() == [1] * len(before)
    assert blas_thread_counts() == before
    monkeypatch.setenv(ENV_VAR, "0")
    with blas_limit():
        assert blas_thread_counts() == before
