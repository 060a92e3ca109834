"""Undeclared identifiers in run-time function and task bodies are compile-time errors
(``waferscale check`` / ``cslc``), reported with ``file:line:col``, even in code that never
runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from waferscale.cli import main
from waferscale.lang.errors import CslSemanticError
from waferscale.lang.layout import CompileOptions, elaborate

LAYOUT = """\
const memcpy = @import_module("<memcpy/get_params>", .{ .width = 1, .height = 1 });
layout {
  @set_rectangle(1, 1);
  @set_tile_code(0, 0, "pe.csl", .{ .memcpy_params = memcpy.get_params(0) });
  @export_name("go", fn()void);
}
"""
HEAD = """\
param memcpy_params: comptime_struct;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
"""
TAIL = """\
fn go() void {
  sys_mod.unblock_cmd_stream();
}
comptime {
  @export_symbol(go);
}
"""
OPTS = CompileOptions(memcpy=True, channels=1)


def write(tmp: Path, body: str) -> Path:
    (tmp / "layout.csl").write_text(LAYOUT)
    (tmp / "pe.csl").write_text(HEAD + body + TAIL)
    return tmp / "layout.csl"


def error_at(tmp: Path, body: str) -> tuple[str, int, int]:
    with pytest.raises(CslSemanticError) as info:
        elaborate(write(tmp, body), OPTS)
    head = info.value.render().splitlines()[0]
    path, line, col, rest = head.split(":", 3)
    assert path.endswith("pe.csl") and rest.startswith(" error: ")
    return rest[len(" error: "):], int(line) - HEAD.count("\n"), int(col)


def test_undeclared_identifier_in_a_function_never_called(tmp_path: Path) -> None:
    body = "var x: i16 = 0;\nfn unused() void {\n  x = nope + 1;\n}\n"
    assert error_at(tmp_path, body) == ("use of undeclared identifier 'nope'", 3, 7)


def test_call_of_undeclared_function_in_a_task(tmp_path: Path) -> None:
    body = "task t() void {\n  helper(3);\n}\n"
    assert error_at(tmp_path, body) == ("call of undeclared function 'helper'", 2, 3)


def test_local_used_before_its_declaration(tmp_path: Path) -> None:
    body = "fn f() void {\n  var a: i16 = b;\n  var b: i16 = 1;\n}\n"
    assert error_at(tmp_path, body) == ("use of undeclared identifier 'b'", 2, 16)


def test_local_out_of_scope_after_its_block(tmp_path: Path) -> None:
    body = "fn f() void {\n  {\n    var a: i16 = 1;\n  }\n  a += 1;\n}\n"
    assert error_at(tmp_path, body) == ("use of undeclared identifier 'a'", 5, 3)


def test_loop_capture_is_scoped_to_the_loop(tmp_path: Path) -> None:
    body = ("var s: i16 = 0;\nfn f() void {\n  for (@range(i16, 3)) |i| {\n    s += i;\n  }\n"
            "  s += i;\n}\n")
    assert error_at(tmp_path, body) == ("use of undeclared identifier 'i'", 6, 8)


def test_every_kind_of_declared_name_resolves(tmp_path: Path) -> None:
    body = """\
var buf: [8]f32;
const dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{8} -> buf[i] });
fn scale(p: *[8]f32, k: f32) f32 {
  var acc: f32 = 0.0;
  for (@range(u16, 8)) |j| {
    acc += p.*[j] * k + later;
  }
  blk: {
    const t: f32 = acc;
    if (t > 1.0) break :blk;
  }
  const d = @get_dsd(mem1d_dsd, .{ .tensor_access = |n|{4} -> buf[2 * n] });
  _ = d;
  _ = EAST;
  return acc;
}
task t() void {
  _ = scale(&buf, 2.0);
  @fadds(dsd, dsd, dsd);
}
const later: f32 = 1.0;
"""
    lay = elaborate(write(tmp_path, body), OPTS)
    assert lay.programs


def test_cslc_reports_the_location_and_exits_1(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    lay = write(tmp_path, "fn f() void {\n  typo_fn();\n}\n")
    assert main(["cslc", str(lay), "--memcpy", "--channels=1", "-o",
                 str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    line = HEAD.count("\n") + 2
    assert err.startswith(f"{tmp_path / 'pe.csl'}:{line}:3: error: call of undeclared "
                          "function 'typo_fn'")
    assert not (tmp_path / "out" / "out.json").exists()
