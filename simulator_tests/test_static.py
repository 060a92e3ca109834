"""The package's typing surface: ``py.typed`` ships, and the stub of the C++ extension
``waferscale._fabric`` names everything the built module exports (so a binding added in
bindings/fabric.cpp without regenerating the stub fails here)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import waferscale

PKG = Path(waferscale.__file__).parent


def stub_names(path: Path) -> dict[str, set[str]]:
    """``{"": module-level names, "Class": its members}`` declared in a ``.pyi`` file."""
    tree = ast.parse(path.read_text())
    names: dict[str, set[str]] = {"": set()}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names[""].add(node.name)
            names[node.name] = {n.name for n in node.body
                                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names[""].add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[""].add(node.target.id)
    names[""].discard("__all__")
    return names


def test_py_typed_marker_is_in_the_package() -> None:
    assert (PKG / "py.typed").is_file()


def test_fabric_stub_covers_the_compiled_module() -> None:
    fabric = pytest.importorskip("waferscale._fabric", reason="C++ core not built")
    declared = stub_names(PKG / "_fabric.pyi")
    public = {n for n in dir(fabric) if not n.startswith("_")}
    assert public == declared[""]
    for cls in ("Core", "Engine"):
        members = {n for n in dir(getattr(fabric, cls)) if not n.startswith("_")}
        assert members == declared[cls] - {"__init__"}, cls
