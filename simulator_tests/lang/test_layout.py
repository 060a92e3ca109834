"""Layout elaboration: the Layout value, and every error the foundation issue lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from waferscale.lang.errors import CslError
from waferscale.lang.layout import CompileOptions, elaborate

PE = """
param memcpy_params: comptime_struct;
param n: i16;
param c: color;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
const iq: input_queue = @get_input_queue(2);
const tid: data_task_id = if (@is_arch("wse2")) @get_data_task_id(c) else @get_data_task_id(iq);
var buf = @zeros([n]f32);
var buf_ptr: [*]f32 = &buf;
task recv(v: f32) void { buf[0] = v; }
fn go() void { sys_mod.unblock_cmd_stream(); }
comptime {
  @bind_data_task(recv, tid);
  if (@is_arch("wse3")) @initialize_queue(iq, .{ .color = c });
  @export_symbol(buf_ptr, "buf");
  @export_symbol(go);
}
"""

LAYOUT = """
param w: i16;
param h: i16;
const c: color = @get_color(3);
const memcpy = @import_module("<memcpy/get_params>", .{ .width = w, .height = h });
layout {
  @set_rectangle(w, h);
  for (@range(i16, w)) |x| {
    for (@range(i16, h)) |y| {
      @set_tile_code(x, y, "pe.csl", .{ .memcpy_params = memcpy.get_params(x), .n = 4 + x % 2, .c = c });
      if (x == 0) {
        @set_color_config(x, y, c, .{ .routes = .{ .rx = .{RAMP}, .tx = .{EAST} } });
      } else {
        @set_color_config(x, y, c, .{ .routes = .{ .rx = .{WEST}, .tx = RAMP } });
      }
    }
  }
  @export_name("buf", [*]f32, true);
  @export_name("go", fn()void);
}
"""

MEMCPY = dict(memcpy=True, channels=1)


def write(tmp: Path, layout: str, pe: str = PE) -> Path:
    (tmp / "pe.csl").write_text(pe)
    p = tmp / "layout.csl"
    p.write_text(layout)
    return p


def opts(**kw) -> CompileOptions:
    base = dict(params=(("w", "3"), ("h", "2")), **MEMCPY)
    base.update(kw)
    return CompileOptions(**base)


@pytest.mark.parametrize("arch", ["wse2", "wse3"])
def test_layout_value(tmp_path, arch):
    lay = elaborate(write(tmp_path, LAYOUT), opts(arch=arch))
    assert (lay.width, lay.height) == (3, 2)
    assert lay.fabric_dims == (10, 4) and lay.fabric_offsets == (4, 1)   # minimum memcpy fabric
    assert len(lay.tiles) == 6
    # n alternates with x and memcpy params differ per column: one program per column.
    assert len(lay.programs) == 3
    assert sorted(lay.programs[1].tiles) == [(1, 0), (1, 1)]
    assert lay.program_at(2, 1).params["n"].v == 4
    r = lay.routes[(1, 0, 3)]
    assert (r.rx, r.tx) == (("WEST",), ("RAMP",))
    assert lay.routes[(0, 1, 3)].tx == ("EAST",)
    rec = lay.programs[0].record
    assert [(k, n, f.name) for (k, n), f in rec.task_bindings.items()] == \
        [("data", 3 if arch == "wse2" else 2, "recv")]
    assert set(rec.exported_symbols) == {"buf", "go"}
    assert (rec.queues != {}) == (arch == "wse3")
    assert set(lay.exports) == {"buf", "go"}
    assert lay.color_names[3] == "c"


def err(tmp_path, layout, pe=PE, **kw) -> str:
    with pytest.raises(CslError) as ei:
        elaborate(write(tmp_path, layout, pe), opts(**kw))
    return ei.value.render()


def edit(old: str, new: str, text: str = LAYOUT) -> str:
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize("layout, pe, kw, message", [
    (edit("  @set_rectangle(w, h);\n", ""), PE, {}, "@set_tile_code before @set_rectangle"),
    ("layout {\n}\n", PE, dict(params=()), "never calls @set_rectangle"),
    ("const x = 1;\n", PE, dict(params=()), "has no layout block"),
    (edit("  @set_rectangle(w, h);\n", "  @set_rectangle(w, h);\n  @set_rectangle(w, h);\n"), PE,
     {}, "@set_rectangle called twice"),
    (edit("@set_tile_code(x, y,", "@set_tile_code(x + 1, y,"), PE, {}, "PE(3,0) is outside"),
    (edit("for (@range(i16, h))", "for (@range(i16, h - 1))"), PE, {}, "PE(0,1) of the 3x2 rectangle has no code"),
    (edit("      if (x == 0) {", "      @set_tile_code(x, y, \"pe.csl\", .{ .memcpy_params = memcpy.get_params(x), .n = 4, .c = c });\n      if (x == 0) {"),
     PE, {}, "given code twice"),
    (edit("@get_color(3)", "@get_color(24)"), PE, {}, "color 24 is out of range 0..23"),
    (edit(".tx = RAMP", ".tx = UP"), PE, {}, "use of undeclared identifier 'UP'"),
    (edit(".tx = RAMP", ".tx = 3"), PE, {}, "must be a direction"),
    (edit("  @export_name(\"buf\"", "  @set_color_config(1, 1, c, .{ .routes = .{} });\n  @export_name(\"buf\""),
     PE, {}, "PE(1,1) color 3 is configured twice"),
    (LAYOUT, edit("param n: i16;", "param n: i16;\nparam m: i16;\nvar other = @zeros([m]f32);\n"
                         "fn use() void { other[0] = 1.0; }", PE), {},
     "param 'm' of pe.csl is not bound"),
    (LAYOUT, PE, dict(params=(("w", "3"),)), "param 'h' of layout.csl is not bound"),
    (edit("@get_color(3)", "@get_color(22)"), PE, {}, "color 22 is reserved by memcpy"),
    (LAYOUT, edit("@get_input_queue(2)", "@get_input_queue(1)", PE), {}, "input queue 1 is reserved by memcpy"),
    (LAYOUT, edit("fn go()", "task t9() void {}\ncomptime { @bind_local_task(t9, @get_local_task_id(28)); }\nfn go()", PE), {},
     "local task id 28 is reserved by memcpy"),
    (LAYOUT, PE, dict(memcpy=False, channels=0), "compile with --memcpy"),
    (LAYOUT, PE, dict(fabric_dims=(9, 4)), "needs --fabric-dims of at least 10,4"),
    (LAYOUT, PE, dict(fabric_offsets=(3, 1)), "offsets must be at least (4,1)"),
    (edit("@export_name(\"buf\", [*]f32, true);", ""), PE, {}, "no matching @export_name"),
    (edit("@export_name(\"buf\", [*]f32, true);", "@export_name(\"buf\", [*]i32, true);"), PE, {},
     "declares '[*]i32'"),
    (edit("layout {", "layout {\n  const nothing = 1"), PE, {}, "expected"),   # syntax error
], ids=lambda v: v if isinstance(v, str) and len(v) < 60 and "\n" not in v else None)
def test_layout_errors(tmp_path, layout, pe, kw, message):
    text = err(tmp_path, layout, pe, **kw)
    assert message in text, text
    first = text.splitlines()[0]
    assert ": error: " in first


def test_error_locates_pe_file(tmp_path):
    text = err(tmp_path, LAYOUT, edit("buf[0] = v;", "buf[0] = v;\n}\nfn broken() void {\n  return @@;", PE))
    assert text.startswith(str(tmp_path / "pe.csl") + ":")


def test_memcpy_stream_color_may_not_be_routed(tmp_path):
    lay = edit(".{ .width = w, .height = h }", ".{ .width = w, .height = h, .MEMCPYH2D_1 = c }")
    assert "do not configure routes for memcpy stream color 3" in err(tmp_path, lay)


def test_unknown_cli_param_warns(tmp_path):
    lay = elaborate(write(tmp_path, LAYOUT), opts(params=(("w", "3"), ("h", "2"), ("zz", "1"))))
    assert any("'zz'" in w for w in lay.warnings)


def test_get_rectangle(tmp_path):
    layout = edit("  @export_name(\"buf\"", "  @comptime_assert(@get_rectangle().fabric.width == 10);\n"
                  "  @comptime_assert(@get_rectangle().offsets.height == 1);\n  @export_name(\"buf\"")
    assert elaborate(write(tmp_path, layout), opts()).width == 3


def test_get_rectangle_in_pe_code(tmp_path):
    # Official examples size PE programs with @get_rectangle() (gemv-collectives_2d).
    pe = edit("var buf = @zeros([n]f32);", "const P = @get_rectangle().width;\n"
              "var buf = @zeros([n + P * 0]f32);\nvar wide: [P]f32;\n"
              "fn use() void { wide[0] = 1.0; }", PE)
    lay = elaborate(write(tmp_path, LAYOUT, pe), opts())
    sizes = {p.var.name: p.size for p in lay.programs[0].memory.placements}
    assert sizes["wide"] == 3 * 4


def test_memory_overflow_names_pe_symbols_and_bytes(tmp_path):
    pe = edit("var buf = @zeros([n]f32);", "var buf = @zeros([n]f32);\nvar big: [12000]f32;\n"
              "var other: [100]i16;\nfn use() void { big[0] = 1.0; other[0] = 1; }", PE)
    text = err(tmp_path, LAYOUT, pe)
    assert "pe.csl on PE(0,0) and 1 other PE(s) needs" in text
    assert "but a PE has 49152" in text
    assert "big (48000 B)" in text and "other (200 B)" in text


def test_memory_map_alignment(tmp_path):
    pe = edit("var buf = @zeros([n]f32);", "var h: i16 = 1;\nvar buf = @zeros([n]f32);\n"
              "fn use() void { h += 1; }", PE)
    lay = elaborate(write(tmp_path, LAYOUT, pe), opts())
    mm = lay.programs[0].memory
    addr = {p.var.name: p.address for p in mm.placements}
    assert addr["h"] == 0 and addr["buf"] == 4          # f32 array aligned to 4 bytes
    assert mm.code_bytes > 0 and mm.total_bytes == mm.data_bytes + mm.code_bytes
