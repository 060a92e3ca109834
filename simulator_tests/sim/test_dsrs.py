"""DSD registers (DSRs; the docs' "Data Structure Registers" page), in programs of ours run
on both arches and both PE paths, which must agree bit for bit (memory, cycles, counters,
errors; twopaths.assert_same):

* ``@get_dsr(dsr_dest|dsr_src0|dsr_src1, id)`` names a register of a DSR file; an op given
  the DSR uses the DSD that ``@load_to_dsr`` last loaded into it;
* ``.save_address = true``: the next op through the DSR continues where the previous one
  stopped (WaferLLM's MeshGEMV walks its weight tile row by row this way, one ``@fmach`` on
  DSRs per element of a ``@map`` over a void function); without it every op starts again at
  the loaded DSD's first element;
* the files' roles: a dsr_src1 is never a destination, a dsr_dest never a source; a DSR used
  before any load is a run-time error naming it;

* DSRs loaded with settings for asynchronous operations (``.async``, ``.activate``,
  ``.unblock``, ``.ut_id``), at run time or in a top-level comptime block (the PE starts
  with them loaded): an async op over them completes with their actions and runs on their
  microthread (WaferLLM's MeshGEMM preloads its fabric DSRs this way); a synchronous op over
  such a DSR, or two different tasks for one action, are errors naming what is not modelled;

and what else WaferLLM's MeshGEMV needed: ``math.floor_f16`` on a run-time value (on the
compiled engine too), and a call-depth bound per execution context.
"""

from __future__ import annotations

import math

import pytest

from waferscale.lang.errors import CslError

from waferscale.lang.layout import elaborate
from waferscale.sim.fabric import cpp_available

from twopaths import ARCHS, compare_both, options_for, run_both  # (this directory is on sys.path)

pytestmark = pytest.mark.skipif(not cpp_available(), reason="waferscale._fabric is not built")

GEMV_DECLS = """
var X = [3]f32 { 1.0, 2.0, 3.0 };
var W = [12]f32 { 1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0, 100.0, 200.0, 300.0, 400.0 };
const x_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{3} -> X[i] });
const w_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{4} -> W[i] });
const y_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{4} -> out[i] });
const y_dest = @get_dsr(dsr_dest, 1);
const y_src0 = @get_dsr(dsr_src0, 1);
const w_src1 = @get_dsr(dsr_src1, 1);
fn step(x: f32) void {
  @fmacs(y_dest, y_src0, w_src1, x);
}
"""

GEMV_BODY = """
  @load_to_dsr(y_dest, y_dsd, .{ .save_address = false });
  @load_to_dsr(y_src0, y_dsd);
  @load_to_dsr(w_src1, w_dsd, .{ .save_address = true });
  @map(step, x_dsd);
"""


@pytest.mark.parametrize("arch", ARCHS)
def test_gemv_over_dsrs_with_a_saved_address(tmp_path, arch):
    out, err, _ = run_both(tmp_path, arch, GEMV_DECLS, GEMV_BODY)
    assert err is None
    # y = 1 * W[0:4] + 2 * W[4:8] + 3 * W[8:12]: the src1 DSR moved one row per @fmacs.
    assert out[:4].tolist() == [321.0, 642.0, 963.0, 1284.0]
    assert out[4:].tolist() == [0.0] * 4


@pytest.mark.parametrize("arch", ARCHS)
def test_reloading_a_dsr_starts_over(tmp_path, arch):
    # The same program, the rows walked twice: the second load resets the saved address.
    body = GEMV_BODY + "  @load_to_dsr(w_src1, w_dsd, .{ .save_address = true });\n" \
        "  @map(step, x_dsd);\n"
    out, err, _ = run_both(tmp_path, arch, GEMV_DECLS, body)
    assert err is None
    assert out[:4].tolist() == [642.0, 1284.0, 1926.0, 2568.0]


REUSE_DECLS = """
const v_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{4} -> buf[i] });
const o_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{4} -> out[i] });
const v_src1 = @get_dsr(dsr_src1, 2);
const o_src0 = @get_dsr(dsr_src0, 3);
"""

REUSE_BODY = """
  for (@range(u16, 8)) |i| { buf[i] = @as(f32, i) + 1.0; }
  @load_to_dsr(v_src1, v_dsd);
  @load_to_dsr(o_src0, o_dsd);
  // Without .save_address both ops read buf[0..4]; a dsr_src0 serves as a destination too.
  @fadds(o_src0, o_dsd, v_src1);
  @fadds(o_dsd, o_src0, v_src1);
  // A DSD and a DSR over the same memory, and a DSR with a stride-2 DSD.
  const odd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{2} -> buf[2 * i + 1] });
  @load_to_dsr(v_src1, odd, .{ .save_address = true });
  const tail = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{2} -> out[i + 4] });
  @fmovs(tail, v_src1);
  const tail2 = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{2} -> out[i + 6] });
  @fmovs(tail2, v_src1);
"""


@pytest.mark.parametrize("arch", ARCHS)
def test_a_dsr_without_saved_address_restarts_and_strides_are_kept(tmp_path, arch):
    out, err, _ = run_both(tmp_path, arch, REUSE_DECLS, REUSE_BODY)
    assert err is None
    # out = 2 * buf[0..4]; then buf[1], buf[3], and (saved address) buf[5], buf[7].
    assert out.tolist() == [2.0, 4.0, 6.0, 8.0, 2.0, 4.0, 6.0, 8.0]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("body, message", [
    ("  @fmovs(o_dsd, v_src1);",
     "dsr_src1 2 is used before @load_to_dsr loaded a DSD into it"),
    ("  @load_to_dsr(v_src1, v_dsd);\n  @fmovs(v_src1, o_dsd);",
     "@fmovs destination is dsr_src1 2; a dsr_src1 holds only sources"),
    ("  const d = @get_dsr(dsr_dest, 4);\n  @load_to_dsr(d, o_dsd);\n  @fmovs(o_dsd, d);",
     "@fmovs source is dsr_dest 4; a dsr_dest holds only destinations"),
    ("  const m = @get_dsd(mem4d_dsd, .{ .tensor_access = |i, j|{2, 2} -> buf[i + 2 * j] });\n"
     "  @load_to_dsr(v_src1, m, .{ .save_address = true });",
     ".save_address = true with a mem4d_dsd is not supported by waferscale yet"),
])
def test_dsr_errors_are_the_same_on_both_paths(tmp_path, arch, body, message):
    _, err, _ = run_both(tmp_path, arch, REUSE_DECLS, body)
    assert err is not None and message in err, err
    assert "cycle" in err and "PE(0,0)" in err and "pe.csl:" in err


# -- DSRs loaded for asynchronous operations ------------------------------------------------

ASYNC_LAYOUT = """
const east: color = @get_color(3);
const west: color = @get_color(4);
const memcpy = @import_module("<memcpy/get_params>", .{ .width = 2, .height = 1 });
layout {
  @set_rectangle(2, 1);
  @set_tile_code(0, 0, "pe.csl", .{ .memcpy_params = memcpy.get_params(0), .tx = east, .rx = west });
  @set_tile_code(1, 0, "pe.csl", .{ .memcpy_params = memcpy.get_params(1), .tx = west, .rx = east });
  @set_color_config(0, 0, east, .{ .routes = .{ .rx = .{RAMP}, .tx = .{EAST} } });
  @set_color_config(1, 0, east, .{ .routes = .{ .rx = .{WEST}, .tx = .{RAMP} } });
  @set_color_config(1, 0, west, .{ .routes = .{ .rx = .{RAMP}, .tx = .{WEST} } });
  @set_color_config(0, 0, west, .{ .routes = .{ .rx = .{EAST}, .tx = .{RAMP} } });
  @export_name("out", [*]f32, true);
  @export_name("run", fn()void);
}
"""

# Each PE sends 4 values to the other and receives 4, twice. Phase 1 uses the fabric DSRs as
# loaded at compile time (the ops say only .async, or repeat the DSR's own task as MeshGEMM
# does); task `first` runs once the receive activated it and the send unblocked it. Phase 2
# reloads them at run time with another task and sends back what arrived.
ASYNC_PE = """
param memcpy_params;
param tx: color;
param rx: color;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
const layout_mod = @import_module("<layout>");
const oq = @get_output_queue(3);
const iq = @get_input_queue(2);
var out = @zeros([8]f32);
var data = @zeros([4]f32);
var out_ptr: [*]f32 = &out;
const send = @get_dsd(fabout_dsd, .{ .extent = 4, .fabric_color = tx, .output_queue = oq });
const recv = @get_dsd(fabin_dsd, .{ .extent = 4, .fabric_color = rx, .input_queue = iq });
const data_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{4} -> data[i] });
const lo_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{4} -> out[i] });
const hi_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{4} -> out[i + 4] });
const send_dsr = @get_dsr(dsr_dest, 2);
const recv_dsr = @get_dsr(dsr_src1, 2);
const mem_dest = @get_dsr(dsr_dest, 3);
const mem_src = @get_dsr(dsr_src1, 3);
const first_id = @get_local_task_id(20);
const second_id = @get_local_task_id(21);
const wse3 = @is_arch("wse3");
const send_opts = if (wse3) .{ .async = true, .unblock = first_id, .ut_id = @get_ut_id(1) }
                  else .{ .async = true, .unblock = first_id };
const recv_opts = if (wse3) .{ .async = true, .activate = first_id, .ut_id = @get_ut_id(5) }
                  else .{ .async = true, .activate = first_id };
fn run() void {
  const x = @as(f32, layout_mod.get_x_coord());
  for (@range(u16, 4)) |i| { data[i] = 10.0 * x + @as(f32, i) + 1.0; }
  @load_to_dsr(mem_dest, lo_dsd);
  @mov32(mem_dest, recv_dsr, .{ .async = true });
  @load_to_dsr(mem_src, data_dsd);
  @mov32(send_dsr, mem_src, .{ .async = true, .unblock = first_id });
}
task first() void {
  @block(first_id);
  @load_to_dsr(recv_dsr, recv, .{ .async = true, .activate = second_id });
  @load_to_dsr(send_dsr, send, .{ .async = true, .unblock = second_id });
  @load_to_dsr(mem_dest, hi_dsd);
  @load_to_dsr(mem_src, lo_dsd);
  @mov32(mem_dest, recv_dsr, .{ .async = true });
  @mov32(send_dsr, mem_src, .{ .async = true });
}
task second() void {
  sys_mod.unblock_cmd_stream();
}
comptime {
  @load_to_dsr(send_dsr, send, send_opts);
  @load_to_dsr(recv_dsr, recv, recv_opts);
  @bind_local_task(first, first_id);
  @bind_local_task(second, second_id);
  @block(first_id);
  @block(second_id);
  if (wse3) {
    @initialize_queue(oq, .{ .color = tx });
    @initialize_queue(iq, .{ .color = rx });
  }
  @export_symbol(out_ptr, "out");
  @export_symbol(run);
}
"""


def run_pair(tmp_path, arch: str, pe: str) -> tuple[list[list[float]], str | None]:
    """ASYNC_LAYOUT with ``pe`` on both paths (which must agree: twopaths.assert_same);
    returns each PE's ``out`` and the error (None: ran to the end)."""
    eng = compare_both(tmp_path, arch, {"layout.csl": ASYNC_LAYOUT, "pe.csl": pe}, (9, 3))
    return [eng.device.read_symbol(x, 0, "out").tolist() for x in (0, 1)], eng.error


@pytest.mark.parametrize("arch", ARCHS)
def test_dsrs_loaded_for_async_ops_at_compile_and_run_time(tmp_path, arch):
    out, err = run_pair(tmp_path, arch, ASYNC_PE)
    assert err is None
    # Phase 1: each PE got the other's data; phase 2: its own data back.
    assert out[0] == [11.0, 12.0, 13.0, 14.0, 1.0, 2.0, 3.0, 4.0]
    assert out[1] == [1.0, 2.0, 3.0, 4.0, 11.0, 12.0, 13.0, 14.0]


def test_ut_id_of_an_op_over_async_dsrs(tmp_path):
    # WSE-3: phase 2's send names its own microthread (.ut_id of the op, on the compiled
    # engine too); the same op naming another microthread than its DSR's is an error.
    old = "  @mov32(send_dsr, mem_src, .{ .async = true });\n}"
    assert old in ASYNC_PE
    pe = ASYNC_PE.replace(old, "  @mov32(send_dsr, mem_src, .{ .async = true, "
                                ".ut_id = @get_ut_id(6) });\n}")
    out, err = run_pair(tmp_path, "wse3", pe)
    assert err is None and out[0] == [11.0, 12.0, 13.0, 14.0, 1.0, 2.0, 3.0, 4.0]
    old = "@mov32(send_dsr, mem_src, .{ .async = true, .unblock = first_id });"
    assert old in ASYNC_PE
    pe = ASYNC_PE.replace(old, "@mov32(send_dsr, mem_src, .{ .async = true, "
                               ".ut_id = @get_ut_id(6) });")
    _, err = run_pair(tmp_path, "wse3", pe)
    assert err is not None and "two different microthread IDs (6 and 1) among an " \
        "operation's options and its DSRs' are not supported by waferscale yet" in err, err
    assert "PE(0,0)" in err and "pe.csl:" in err


ASYNC_DECLS = """
const t1 = @get_local_task_id(20);
const t2 = @get_local_task_id(21);
task one() void {}
task two() void {}
comptime {
  @bind_local_task(one, t1);
  @bind_local_task(two, t2);
}
""" + REUSE_DECLS


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("body, message", [
    ("  @load_to_dsr(v_src1, v_dsd, .{ .async = true, .activate = t1 });\n"
     "  @fmovs(o_dsd, v_src1);",
     "a synchronous DSD operation on a DSR loaded with settings for asynchronous operations "
     "(.async, .activate, .unblock, .ut_id) is not supported by waferscale yet"),
    ("  @load_to_dsr(v_src1, v_dsd, .{ .async = true, .activate = t1 });\n"
     "  @fmovs(o_dsd, v_src1, .{ .async = true, .activate = t2 });",
     "two different tasks to activate (21 and 20) among an operation's options and its "
     "DSRs' are not supported by waferscale yet"),
    ("  @load_to_dsr(v_src1, v_dsd, .{ .unblock = t1 });\n"
     "  @load_to_dsr(o_src0, o_dsd, .{ .unblock = t2 });\n"
     "  @fadds(o_src0, o_src0, v_src1, .{ .async = true });",
     "two different tasks to unblock (21 and 20)"),
])
def test_async_dsr_errors_are_the_same_on_both_paths(tmp_path, arch, body, message):
    _, err, _ = run_both(tmp_path, arch, ASYNC_DECLS, body)
    assert err is not None and message in err, err
    assert "cycle" in err and "PE(0,0)" in err and "pe.csl:" in err


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("old, new, message", [
    ("@load_to_dsr(send_dsr, send, send_opts);", "@load_to_dsr(send_dsr, recv);",
     "dsr_dest 2 holds a destination operand; a fabin_dsd cannot be one"),
    ("@load_to_dsr(send_dsr, send, send_opts);",
     "@load_to_dsr(send_dsr, send, .{ .async = true, .later = true });",
     "unknown option '.later' of @load_to_dsr (expected .save_address, .async, .activate, "
     ".unblock, .ut_id)"),
    ("@load_to_dsr(send_dsr, send, send_opts);",
     "@load_to_dsr(send_dsr, send, .{ .activate = oq });",
     "'.activate' of @load_to_dsr must be a task ID, found 'output_queue'"),
])
def test_compile_time_dsr_load_errors(tmp_path, arch, old, new, message):
    (tmp_path / "layout.csl").write_text(ASYNC_LAYOUT)
    (tmp_path / "pe.csl").write_text(ASYNC_PE.replace(old, new))
    with pytest.raises(CslError) as ei:
        elaborate(tmp_path / "layout.csl", options_for(arch, (9, 3)))
    text = ei.value.render()
    assert message in text and "pe.csl:" in text, text


# -- what WaferLLM's MeshGEMV needed besides DSRs --------------------------------------------

FLOOR_BODY = """
  var k: f32 = 0.0;
  for (@range(u16, 4)) |i| {
    const x = @as(f32, i) * 1.5 - 2.25;
    out[i] = math.floor_f32(x) + 10.0 * math.ceil_f32(x);
    k = k + math.abs_f32(x);
  }
  const h: f16 = -@as(f16, out[1]) / 4.0;
  out[4] = @as(f32, math.floor_f16(h));
  out[5] = k;
"""


@pytest.mark.parametrize("arch", ARCHS)
def test_math_floor_ceil_abs_at_run_time(tmp_path, arch):
    # MeshGEMV's comm_lib computes its group position with math.floor_f16 on a run-time value.
    decls = 'const math = @import_module("<math>");'
    out, err, _ = run_both(tmp_path, arch, decls, FLOOR_BODY)
    assert err is None
    xs = [i * 1.5 - 2.25 for i in range(4)]
    assert out[:4].tolist() == [math.floor(x) + 10.0 * math.ceil(x) for x in xs]
    assert out[4] == math.floor(-out[1] / 4.0) and out[5] == sum(abs(x) for x in xs)


# On ASYNC_LAYOUT's two PEs.
DEEP_PE = """
param memcpy_params;
param tx: color;
param rx: color;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
const oq = @get_output_queue(2);
const iq = @get_input_queue(2);
var out = @zeros([1]f32);
var out_ptr: [*]f32 = &out;
const send = @get_dsd(fabout_dsd, .{ .extent = 1, .fabric_color = tx, .output_queue = oq });
const recv = @get_dsd(fabin_dsd, .{ .extent = 1, .fabric_color = rx, .input_queue = iq });
const one = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{1} -> out[i] });
fn deep(n: i16) void {
  if (n == 0) {
    // Both PEs are 100 calls deep here, each waiting for the other's wavelet.
    @fmovs(send, 1.0);
    @fmovs(one, recv);
  } else {
    deep(n - 1);
  }
}
fn run() void {
  deep(100);
  sys_mod.unblock_cmd_stream();
}
comptime {
  if (@is_arch("wse3")) {
    @initialize_queue(oq, .{ .color = tx });
    @initialize_queue(iq, .{ .color = rx });
  }
  @export_symbol(out_ptr, "out");
  @export_symbol(run);
}
"""


@pytest.mark.parametrize("arch", ARCHS)
def test_call_depth_counts_one_context(tmp_path, arch):
    # Two PEs suspended 100 calls deep at once: the bound of 150 nested calls applies to each
    # context, not to their sum (WaferLLM's MeshGEMV recurses once per repetition).
    eng = compare_both(tmp_path, arch, {"layout.csl": ASYNC_LAYOUT, "pe.csl": DEEP_PE}, (9, 3))
    assert eng.error is None
    assert [eng.device.read_symbol(x, 0, "out")[0] for x in (0, 1)] == [1.0, 1.0]


LAUNCH_LAYOUT = """
const LAUNCH: color = @get_color(0);
const memcpy = @import_module("<memcpy/get_params>", .{ .width = 1, .height = 1,
                                                        .LAUNCH = LAUNCH });
layout {
  @set_rectangle(1, 1);
  @set_tile_code(0, 0, "pe.csl", .{ .memcpy_params = memcpy.get_params(0) });
  @export_name("out", [*]f32, true);
  @export_name("run", fn()void);
}
"""

LAUNCH_PE = """
param memcpy_params;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
var out = @zeros([1]f32);
var out_ptr: [*]f32 = &out;
fn run() void {
  out[0] = 7.0;
  sys_mod.unblock_cmd_stream();
}
comptime {
  @export_symbol(out_ptr, "out");
  @export_symbol(run);
  @rpc(@get_data_task_id(sys_mod.LAUNCH));
}
"""


def test_sdk1_launch_color_with_rpc(tmp_path):
    # The SDK 1.x memcpy's `.LAUNCH` color and `@rpc` on it (WaferLLM's WSE-2 programs): a
    # launch runs the exported function, on both paths.
    eng = compare_both(tmp_path, "wse2", {"layout.csl": LAUNCH_LAYOUT, "pe.csl": LAUNCH_PE},
                       (8, 3))
    assert eng.error is None and eng.device.read_symbol(0, 0, "out")[0] == 7.0
