"""Fixtures of the kernel tests."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

CSL = Path(__file__).resolve().parents[2] / "csl"


@pytest.fixture
def documented_build(tmp_path: Path,
                     monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], Path]:
    """``documented_build(kernel, arch)``: a copy of csl/<kernel> in ``tmp_path``, made the
    current directory, compiled by its documented cslc line for ``arch`` (its
    commands_*.sh, through ``waferscale cslc``) into ./out; the copy's path."""

    def build(kernel: str, arch: str) -> Path:
        from waferscale.cli import main
        from waferscale.lang.cli import kernel_commands
        copy = tmp_path / "k"
        shutil.copytree(CSL / kernel, copy)
        monkeypatch.chdir(copy)
        (words,) = [c for c in kernel_commands(copy) if f"--arch={arch}" in c]
        assert main(["cslc", *words]) == 0
        return copy

    return build
