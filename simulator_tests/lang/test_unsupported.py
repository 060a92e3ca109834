"""Nothing accepted and ignored: a CSL construct the simulator does not model is a compile-time
error at its ``file:line:col`` that names it ("... is not supported by waferscale yet"),
never a silent no-op that runs to a wrong answer (issue 11, item 2). Each case also checks
that the construct's "off" value (``false``, ``.{}``) stays accepted, as cslc accepts it."""

from __future__ import annotations

from pathlib import Path

import pytest

from waferscale.lang.errors import CslError
from waferscale.lang.layout import CompileOptions, elaborate

PE = """
param c: color;
const iq: input_queue = @get_input_queue(2);
const oq: output_queue = @get_output_queue(3);
const tid: data_task_id = if (@is_arch("wse2")) @get_data_task_id(c) else @get_data_task_id(iq);
var buf = @zeros([4]f32);
const out_dsd = @get_dsd(fabout_dsd, .{ .extent = 4, .fabric_color = c, .output_queue = oq });
const mem = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{4} -> buf[i] });
task recv(v: f32) void { buf[0] = v; }
fn send() void { @fmovs(out_dsd, mem); }
comptime {
  @bind_data_task(recv, tid);
  if (@is_arch("wse3")) @initialize_queue(iq, .{ .color = c });
}
"""

LAYOUT = """
const c: color = @get_color(3);
layout {
  @set_rectangle(2, 1);
  @set_tile_code(0, 0, "pe.csl", .{ .c = c });
  @set_tile_code(1, 0, "pe.csl", .{ .c = c });
  @set_color_config(0, 0, c, .{ .routes = .{ .rx = .{RAMP}, .tx = .{EAST} } });
  @set_color_config(1, 0, c, .{ .routes = .{ .rx = .{WEST}, .tx = .{RAMP} } });
}
"""

ROUTE1 = ".{ .routes = .{ .rx = .{WEST}, .tx = .{RAMP} } }"


def build(tmp: Path, arch: str, layout: str = LAYOUT, pe: str = PE) -> None:
    (tmp / "pe.csl").write_text(pe)
    (tmp / "layout.csl").write_text(layout)
    elaborate(tmp / "layout.csl", CompileOptions(arch=arch))


def edit(old: str, new: str, text: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


def route(cfg: str) -> str:
    return edit(ROUTE1, cfg, LAYOUT)


# (layout, pe, message, (file, line, col) of the error); the column is the field or argument.
CASES = {
    "filter": (route(".{ .routes = .{ .rx = .{WEST}, .tx = .{RAMP} },\n"
                     "    .filter = .{ .kind = .{ .counter = true }, .count_data = true } }"),
               PE, "filters ('.filter' of a color config) are not supported by waferscale yet",
               ("layout.csl", 9, 5)),
    "switches": (route(".{ .routes = .{ .rx = .{WEST}, .tx = .{RAMP} }, .switches = .{ "
                       ".pos1 = .{ .rx = EAST } } }"),
                 PE, "switches ('.switches' of a color config) are not supported",
                 ("layout.csl", 8, 78)),
    "teardown": (route(".{ .routes = .{ .rx = .{WEST}, .tx = .{RAMP} }, .teardown = true }"),
                 PE, "teardown ('.teardown' of a color config) is not supported",
                 ("layout.csl", 8, 78)),
    "color_swap_x": (route(".{ .routes = .{ .rx = .{WEST}, .tx = .{RAMP}, .color_swap_x = true } }"),
                     PE, "color swap ('.color_swap_x') is not supported by waferscale yet",
                     ("layout.csl", 8, 76)),
    "color_swap_y short form": (
        route(".{ .rx = .{WEST}, .tx = .{RAMP}, .color_swap_y = true }"),
        PE, "color swap ('.color_swap_y') is not supported", ("layout.csl", 8, 63)),
    "local color config filter": (
        LAYOUT, edit("comptime {\n", "comptime {\n  @set_local_color_config(c, .{ .routes = "
                     ".{ .rx = .{WEST} }, .filter = .{ .kind = .{ .range = true } } });\n", PE),
        "filters ('.filter' of a color config) are not supported", ("pe.csl", 12, 63)),
    "fabout control": (
        LAYOUT, edit(".output_queue = oq }", ".output_queue = oq, .control = true }", PE),
        "fabout_dsd '.control' (control wavelets) is not supported by waferscale yet",
        ("pe.csl", 7, 104)),
    "fabout advance_switch": (
        LAYOUT, edit(".output_queue = oq }", ".output_queue = oq, .advance_switch = true }", PE),
        "fabout_dsd '.advance_switch' (switches) is not supported", ("pe.csl", 7, 111)),
    "op on_control": (
        LAYOUT, edit("@fmovs(out_dsd, mem);", "@fmovs(out_dsd, mem, .{ .async = true, "
                     ".on_control = recv });", PE),
        "'.on_control' of a DSD operation (a task run on a control wavelet) is not supported",
        ("pe.csl", 10, 57)),
    "set_teardown_handler": (
        LAYOUT, edit("comptime {\n", "comptime {\n  @set_teardown_handler(send, c);\n", PE),
        "@set_teardown_handler is not supported by waferscale yet", ("pe.csl", 12, 3)),
    "fifo options": (
        LAYOUT, edit("fn send() void { @fmovs(out_dsd, mem); }",
                     "const fifo = @allocate_fifo(buf, .{ .activate_push = tid });\n"
                     "fn send() void { @fmovs(out_dsd, fifo, .{ .async = true }); }", PE),
        "options of @allocate_fifo (.activate_push, .activate_pop, ...) are not supported",
        ("pe.csl", 10, 34)),
    "fifo length": (
        LAYOUT, edit("fn send() void { @fmovs(out_dsd, mem); }",
                     "const fifo = @allocate_fifo(buf);\n"
                     "fn send() void { @set_fifo_read_length(fifo, 2); }", PE),
        "@set_fifo_read_length (FIFO lengths) is not supported", ("pe.csl", 11, 18)),
    "queue ctrl_table_id": (
        LAYOUT, edit("comptime {\n", "comptime {\n  @initialize_queue(@get_input_queue(4), "
                     ".{ .color = c, .ctrl_table_id = 1 });\n", PE),
        "'.ctrl_table_id' of @initialize_queue (control task tables) is not supported",
        ("pe.csl", 12, 42)),
    # DSRs are modelled (simulator_tests/sim/test_dsrs.py, DSRs loaded for asynchronous
    # operations too) except FIFO DSRs.
    "fifo dsr": (
        LAYOUT, edit("var buf", "const d = @get_dsr(dsr_fifo_dest, 1);\nvar buf", PE)
        .replace("fn send() void { @fmovs(out_dsd, mem); }",
                 "fn send() void { @fmovs(d, mem); }"),
        "@get_dsr of a dsr_fifo_dest (a FIFO DSR) is not supported by waferscale yet",
        ("pe.csl", 6, 20)),
    "clz in a function": (
        LAYOUT, edit("fn send() void { @fmovs(out_dsd, mem); }",
                     "fn send() void { var x: u16 = @clz(@as(u16, 3)); buf[0] = @as(f32, x); }",
                     PE),
        "@clz is not supported by waferscale yet", ("pe.csl", 10, 31)),
    "set_empty_queue_handler": (
        LAYOUT, edit("comptime {\n", "comptime {\n  @set_empty_queue_handler(send, oq);\n", PE),
        "@set_empty_queue_handler is not supported by waferscale yet", ("pe.csl", 12, 3)),
}


@pytest.mark.parametrize("arch", ["wse2", "wse3"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_unmodeled_construct_is_a_compile_error(tmp_path, arch, name):
    layout, pe, message, (file, line, col) = CASES[name]
    with pytest.raises(CslError) as ei:
        build(tmp_path, arch, layout, pe)
    text = ei.value.render()
    first = text.splitlines()[0]
    assert message in first, text
    assert first.startswith(f"{tmp_path / file}:{line}:{col}: error: "), text
    assert "^" in text.splitlines()[2], text


OFF = {
    "routes off": route(".{ .routes = .{ .rx = .{WEST}, .tx = .{RAMP}, .color_swap_x = false, "
                        ".color_swap_y = false }, .teardown = false, .filter = .{}, "
                        ".switches = .{} }"),
}


@pytest.mark.parametrize("arch", ["wse2", "wse3"])
def test_off_values_stay_accepted(tmp_path, arch):
    build(tmp_path, arch, OFF["routes off"])
    build(tmp_path, arch, LAYOUT, edit(".output_queue = oq }",
                                       ".output_queue = oq, .control = false }", PE))
