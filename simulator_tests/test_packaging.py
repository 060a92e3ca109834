"""Packaging: every Python package under runtime/ is listed in pyproject.toml, and the kernels
of csl/ are package data, found by ``waferscale check --all`` outside the repository."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from waferscale.lang import cli as lang_cli

ROOT = Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_is_listed() -> None:
    found = {".".join(p.parent.relative_to(ROOT / "runtime").parts)
             for p in (ROOT / "runtime" / "waferscale").rglob("__init__.py")}
    listed = set(pyproject()["tool"]["setuptools"]["packages"])
    assert found | {"waferscale.csl"} == listed


def test_kernels_are_package_data() -> None:
    setuptools = pyproject()["tool"]["setuptools"]
    assert setuptools["package-dir"]["waferscale.csl"] == "csl"
    patterns = setuptools["package-data"]["waferscale.csl"]
    kernel_files = [p for p in (ROOT / "csl").glob("*/*") if p.is_file()]
    assert kernel_files
    for f in kernel_files:
        assert any(f.relative_to(ROOT / "csl").match(pat) for pat in patterns), f


def test_benchmark_programs_are_package_data() -> None:
    patterns = pyproject()["tool"]["setuptools"]["package-data"]["waferscale.sim"]
    sim = ROOT / "runtime" / "waferscale" / "sim"
    files = [p for p in (sim / "programs").glob("*/*") if p.is_file()]
    assert {p.parent.name for p in files} >= {"gemv_stack", "tile_axpy"}
    for f in files:
        assert any(f.relative_to(sim).match(pat) for pat in patterns), f


def test_check_all_finds_the_kernels_from_another_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    root = lang_cli.find_csl_root()
    assert any(root.glob("*/layout.csl"))
    assert (root / "gemv" / "layout.csl").is_file()
