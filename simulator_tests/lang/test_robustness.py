"""Issue 14 front-end findings: each one is a located CslError, raised before any work that
grows with a number the user wrote (rectangle sizes, import cycles, compile() arguments).

Hang guards are signal-based (:func:`waferscale.fuzz.time_limit`): without the fixes these
inputs ran for minutes or until a MemoryError; with them they fail fast or the guard fails
the test. No test measures wall time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from waferscale.fuzz import time_limit
from waferscale.host.compile import compile as ws_compile
from waferscale.lang.errors import CslError
from waferscale.lang.layout import CompileOptions, LayoutBuilder, elaborate

ROOT = Path(__file__).resolve().parents[2]
GUARD_S = 20.0


def located(err: CslError, path: Path, line: int) -> str:
    """The first line of ``err``'s rendering, checked to point at ``path:line``."""
    head = err.render().split("\n")[0]
    assert head.startswith(f"{path}:{line}:"), head
    return head


def elaborate_guarded(path: Path, options: CompileOptions | None = None) -> CslError:
    with time_limit(GUARD_S), pytest.raises(CslError) as info:
        elaborate(path, options or CompileOptions())
    return info.value


@pytest.mark.parametrize("w,h", [(100000, 100000), (1, 4294967295), (763, 1)])
def test_rectangle_larger_than_the_chip_fails_at_set_rectangle(tmp_path: Path, w: int,
                                                               h: int) -> None:
    p = tmp_path / "layout.csl"
    p.write_text(f"layout {{\n  @set_rectangle({w}, {h});\n}}\n")
    head = located(elaborate_guarded(p), p, 2)
    assert f"a {w}x{h} rectangle" in head and "exceeds the wse3 fabric (762x1172)" in head


def test_rectangle_is_checked_against_fabric_dims_before_the_per_pe_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """csl/allreduce with P_c = 0x7fff: the error comes from @set_rectangle, and no
    @set_tile_code ever runs (it used to run 0x7fff * 3 times first)."""
    calls: list[tuple[int, int]] = []
    real = LayoutBuilder.set_tile_code

    def counting(self: LayoutBuilder, x: int, y: int, *a: object, **k: object) -> None:
        calls.append((x, y))
        real(self, x, y, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(LayoutBuilder, "set_tile_code", counting)
    layout = ROOT / "csl" / "allreduce" / "layout.csl"
    opts = CompileOptions(arch="wse3", params=(("P_c", "32767"), ("P_r", "3"), ("N", "24"),
                                                ("op", "0")),
                          fabric_dims=(13, 5), fabric_offsets=(4, 1), memcpy=True, channels=1)
    err = elaborate_guarded(layout, opts)
    head = err.render().split("\n")[0]
    assert "needs --fabric-dims of at least 32774,5" in head
    assert "@set_rectangle" in err.render()
    assert calls == []


def test_fabric_dims_larger_than_the_chip_fail_before_the_per_pe_loop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LayoutBuilder, "set_tile_code",
                        lambda *a, **k: pytest.fail("a PE got code before the fabric check"))
    layout = ROOT / "csl" / "gemv" / "layout.csl"
    opts = CompileOptions(arch="wse3", params=(("P_c", "1000"), ("P_r", "1000"), ("M", "29"),
                                                ("N", "34"), ("fp16", "0")),
                          fabric_dims=(100000, 100000), fabric_offsets=(4, 1), memcpy=True,
                          channels=1)
    head = elaborate_guarded(layout, opts).render().split("\n")[0]
    assert "fabric 100000x100000 exceeds the wse3 fabric (762x1172)" in head


def test_missing_tiles_are_counted_not_listed(tmp_path: Path) -> None:
    (tmp_path / "pe.csl").write_text("var x: i16 = 0;\n")
    p = tmp_path / "layout.csl"
    p.write_text("layout {\n  @set_rectangle(762, 1172);\n"
                 "  @set_tile_code(0, 0, \"pe.csl\", .{});\n}\n")
    head = elaborate_guarded(p).render().split("\n")[0]
    assert "PE(1,0) of the 762x1172 rectangle has no code (and 893062 more)" in head


def test_self_import_is_a_located_cycle_error(tmp_path: Path) -> None:
    p = tmp_path / "layout.csl"
    p.write_text('const me = @import_module("layout.csl");\n'
                 "layout {\n  @set_rectangle(1, 1);\n}\n")
    head = located(elaborate_guarded(p), p, 1)
    assert "import cycle: layout.csl -> layout.csl" in head


def test_mutual_import_is_a_located_cycle_error(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csl", tmp_path / "b.csl"
    a.write_text('const b = @import_module("b.csl");\nlayout { @set_rectangle(1, 1); }\n')
    b.write_text('\nconst a = @import_module("a.csl");\n')
    head = located(elaborate_guarded(a), b, 2)
    assert "import cycle: a.csl -> b.csl -> a.csl" in head


def test_importing_one_file_twice_is_not_a_cycle(tmp_path: Path) -> None:
    (tmp_path / "m.csl").write_text("param k: i16;\nconst v: i16 = k;\n")
    p = tmp_path / "layout.csl"
    p.write_text('const m1 = @import_module("m.csl", .{ .k = 1 });\n'
                 'const m2 = @import_module("m.csl", .{ .k = 2 });\n'
                 "const s: i16 = m1.v + m2.v;\n"
                 'layout {\n  @set_rectangle(1, 1);\n  @comptime_assert(s == 3);\n'
                 '  @set_tile_code(0, 0, "m.csl", .{ .k = s });\n}\n')
    lay = elaborate(p)
    assert (lay.width, lay.height) == (1, 1)


def test_huge_param_on_the_command_line_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "layout.csl"
    p.write_text("param n: i16;\nlayout {\n  @set_rectangle(1, 1);\n}\n")
    with pytest.raises(CslError, match="--params n: value is 5001 characters long"):
        elaborate(p, CompileOptions(params=(("n", "1" + "0" * 5000),)))


@pytest.mark.parametrize("kwargs, message", [
    ({"channels": "x"}, "channels must be an integer, got 'x'"),
    ({"channels": None}, "channels must be an integer, got None"),
    ({"width_west_buf": None}, "width_west_buf must be an integer, got None"),
    ({"width_east_buf": -1}, "width_east_buf must be between 0 and 2^32-1, got -1"),
    ({"import_paths": 5}, "import_paths must be a path or a sequence of paths, got 5"),
    ({"import_paths": [None]}, "import_paths entry must be a path"),
    ({"params": {"n": 10**5000}}, "params n: value has 16610 bits"),
    ({"params": {"n": True}}, "params n: value must be a number, got True"),
    ({"arch": None}, "arch must be 'wse2' or 'wse3', got None"),
    ({"memcpy": "yes"}, "memcpy must be True or False, got 'yes'"),
    ({"fabric_dims": (1.5, 2)}, "fabric_dims must be two integers X,Y"),
    ({"fabric_dims": (-1, 2)}, "fabric_dims must be non-negative, got -1,2"),
    ({"output": None}, "output must be a path"),
])
def test_compile_api_validates_its_arguments_with_csl_errors(
        tmp_path: Path, kwargs: dict, message: str) -> None:
    p = tmp_path / "layout.csl"
    p.write_text("param n: i16;\nlayout {\n  @set_rectangle(1, 1);\n}\n")
    kwargs.setdefault("output", tmp_path / "out")
    with pytest.raises(CslError) as info:
        ws_compile(p, **kwargs)
    assert message in str(info.value)
    assert not (tmp_path / "out").exists()


def test_compile_api_accepts_numpy_integers(tmp_path: Path) -> None:
    import numpy as np
    (tmp_path / "pe.csl").write_text("var x: i16 = 0;\n")
    p = tmp_path / "layout.csl"
    p.write_text('layout {\n  @set_rectangle(1, 1);\n  @set_tile_code(0, 0, "pe.csl", .{});\n}\n')
    out = ws_compile(p, channels=np.int64(0), output=tmp_path / "out")
    assert (out / "waferscale.json").is_file()


@pytest.mark.parametrize("where, text, line", [
    ("a top-level comptime block", "var x: i16 = 0;\ncomptime {\n  return;\n}\n"
     "layout {\n  @set_rectangle(1, 1);\n}\n", 3),
    ("the layout block", "layout {\n  @set_rectangle(1, 1);\n  return;\n}\n", 3),
])
def test_return_outside_a_function_is_located(tmp_path: Path, where: str, text: str,
                                              line: int) -> None:
    """Fuzz finding (sim campaign, seed 15): `return` in a comptime block escaped as the
    interpreter's internal _Return exception."""
    p = tmp_path / "layout.csl"
    p.write_text(text)
    head = located(elaborate_guarded(p), p, line)
    assert f"'return' outside a function (in {where})" in head
