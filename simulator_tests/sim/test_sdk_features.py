"""CSL features that the SDK's own examples (Cerebras/sdk-examples) rely on, each in a program
of ours, run on both arches and both PE paths (the Python interpreter and the compiled
engine), which must agree bit for bit (memory, cycles, counters, errors), and checked against
the values the CSL docs give:

* a DSD over a global ``const`` array (cslc places it in memory, read-only), built at the top
  level or in a function body, and ``&`` of such an array;
* a DSD whose base is a comptime pointer bound to a param (``*[N]T`` and ``[*]T``);
* a "dummy" DSD over a short array, longer than it (cslc accepts it), re-pointed with
  ``@set_dsd_base_addr`` (it then walks the new pointee's elements) and ``@set_dsd_length``;
  used unchanged it is an out-of-bounds error at run time on both paths.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from waferscale.host.device import DeviceError
from waferscale.lang.errors import CslError
from waferscale.sim.fabric import cpp_available

from twopaths import ARCHS, compare_both, compile_one_pe, run_both  # (this directory is on sys.path)

pytestmark = pytest.mark.skipif(not cpp_available(), reason="waferscale._fabric is not built")


CONST_DECLS = """
const ten = [4]f32 { 10.0, 20.0, 30.0, 40.0 };
const ten_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{4} -> ten[i] });
const out_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{4} -> out[i] });
fn first_plus_last(p: *const [4]f32) f32 { return (p.*)[0] + (p.*)[3]; }
"""

CONST_BODY = """
  // A DSD over a const array built at run time: ten[0] broadcast (stride 0), as topic-09.
  const first = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{4} -> ten[0] });
  @fadds(out_dsd, ten_dsd, first);
  out[4] = first_plus_last(&ten);
  out[5] = ten[2];
"""


@pytest.mark.parametrize("arch", ARCHS)
def test_dsd_over_a_const_array(tmp_path, arch):
    out, err, _ = run_both(tmp_path, arch, CONST_DECLS, CONST_BODY)
    assert err is None
    assert out[:6].tolist() == [20.0, 30.0, 40.0, 50.0, 50.0, 30.0]


HELPER = """
param p: *[8]f32;
param q: [*]f32;
const d = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{3} -> p[i + 2] });
const e = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{2} -> q[2 * i] });
fn fill() void {
  @fmovs(d, 7.0);
  @fmovs(e, 5.0);
}
"""


@pytest.mark.parametrize("arch", ARCHS)
def test_dsd_over_a_comptime_pointer_param(tmp_path, arch):
    decls = 'const helper = @import_module("helper.csl", .{ .p = &buf, .q = &out[1] });'
    body = "  helper.fill();\n  out[6] = buf[2] + buf[4];\n  out[7] = buf[5] + buf[1];"
    out, err, _ = run_both(tmp_path, arch, decls, body, {"helper.csl": HELPER})
    assert err is None
    # q = &out[1]: elements 1 and 3 of out; p[2..4] of buf.
    assert out.tolist() == [0.0, 5.0, 0.0, 5.0, 0.0, 0.0, 14.0, 0.0]


DUMMY_DECLS = """
// The dummy's type and length do not matter: the DSD is re-pointed before use.
const dummy = @zeros([1]i16);
const dummy_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{42} -> dummy[i] });
fn scale(n: i16, alpha: f32, y: *[8]f32, x: *[8]f32) void {
  var dy = @set_dsd_base_addr(dummy_dsd, y);
  dy = @set_dsd_length(dy, @bitcast(u16, n));
  var dx = @set_dsd_base_addr(dy, x);
  dx = @increment_dsd_offset(dx, 1, f32);
  @fmuls(dy, dx, alpha);
}
"""

DUMMY_BODY = """
  for (@range(u16, 8)) |i| { buf[i] = @as(f32, i); }
  scale(3, 2.0, &out, &buf);
"""


@pytest.mark.parametrize("arch", ARCHS)
def test_dummy_dsd_repointed_at_run_time(tmp_path, arch):
    out, err, warnings = run_both(tmp_path, arch, DUMMY_DECLS, DUMMY_BODY)
    assert err is None
    # out[i] = 2 * buf[i + 1] for the first 3 elements (f32 elements, not the dummy's i16).
    assert out.tolist() == [2.0, 4.0, 6.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert any("tensor access reaches element 41 outside 'dummy'" in w for w in warnings)


@pytest.mark.parametrize("arch", ARCHS)
def test_dummy_dsd_used_unchanged_is_out_of_bounds(tmp_path, arch):
    _, err, _ = run_both(tmp_path, arch, DUMMY_DECLS, "  @mov16(dummy_dsd, 3);")
    assert err is not None and "PE(0,0)" in err and "cycle" in err
    assert "mem1d_dsd reaches element 1 of 'dummy', which has 1 element(s)" in err


MAP_DECLS = """
const B = [5]i32 { 10, 20, 30, 40, 50 };
const dsdB = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{5} -> B[i] });
var acc = @zeros([1]i32);
fn reduction(value: i32, sum: *i32) i32 { return sum.* + value; }
"""


@pytest.mark.parametrize("arch", ARCHS)
def test_map_with_a_pointer_accumulator(tmp_path, arch):
    # The docs' accumulator idiom (topic-10): the pointer goes to the `*i32` parameter
    # unchanged, and each call's result is written through it.
    body = "  acc[0] = 1;\n  @map(reduction, dsdB, &acc[0], &acc[0]);\n  out[0] = @as(f32, acc[0]);"
    out, err, _ = run_both(tmp_path, arch, MAP_DECLS, body)
    assert err is None
    assert out[0] == 151.0


LONG_SOURCE_BODY = """
  for (@range(u16, 8)) |i| { buf[i] = @as(f32, i); }
  var src = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{8} -> buf[i] });
  src = @increment_dsd_offset(src, 5, f32);         // elements 5..12: past buf's end
  const two = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{2} -> out[i] });
  @fmovs(two, src);                                  // the op's length is 2: 5 and 6 only
"""


@pytest.mark.parametrize("arch", ARCHS)
def test_source_longer_than_the_op_is_not_out_of_bounds(tmp_path, arch):
    out, err, _ = run_both(tmp_path, arch, "", LONG_SOURCE_BODY)
    assert err is None
    assert out[:3].tolist() == [5.0, 6.0, 0.0]
    # An element the op does touch past the end is still an error, on both paths.
    _, err, _ = run_both(tmp_path, arch, "", LONG_SOURCE_BODY.replace("{2} -> out", "{4} -> out"))
    assert err is not None and "reaches element 8 of 'buf', which has 8 element(s)" in err


STREAM_LAYOUT = """
const c: color = @get_color(4);
const memcpy = @import_module("<memcpy/get_params>", .{ .width = 2, .height = 1 });
layout {
  @set_rectangle(2, 1);
  for (@range(i16, 2)) |x| {
    @set_tile_code(x, 0, "pe.csl", .{ .memcpy_params = memcpy.get_params(x), .c = c,
                                      .sender = x == 0 });
  }
  @set_color_config(0, 0, c, .{ .routes = .{ .rx = .{RAMP}, .tx = .{EAST} } });
  @set_color_config(1, 0, c, .{ .routes = .{ .rx = .{WEST}, .tx = .{RAMP} } });
  @export_name("out", [*]f32, true);
  @export_name("run", fn()void);
}
"""

STREAM_PE = """
param memcpy_params;
param c: color;
param sender: bool;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
const iq: input_queue = @get_input_queue(2);
const oq: output_queue = @get_output_queue(3);
var out = @zeros([8]f32);
var out_ptr: [*]f32 = &out;
const src = [4]f32 { 1.5, 2.5, 3.5, 4.5 };
const src_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{4} -> src[i] });
const out_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{4} -> out[i] });
// One wavelet by its extent; the op sends the whole source (the SDK's topic-13).
const tx = @get_dsd(fabout_dsd, .{ .extent = 1, .fabric_color = c, .output_queue = oq });
const rx = @get_dsd(fabin_dsd, .{ .extent = 4, .fabric_color = c, .input_queue = iq });
fn run() void {
  if (sender) { @fmovs(tx, src_dsd); } else { @fmovs(out_dsd, rx); }
  sys_mod.unblock_cmd_stream();
}
comptime {
  @export_symbol(out_ptr, "out");
  @export_symbol(run);
  if (@is_arch("wse3")) {
    @initialize_queue(iq, .{ .color = c });
    @initialize_queue(oq, .{ .color = c });
  }
}
"""


def stream_both(tmp: Path, arch: str, pe: str = STREAM_PE) -> list[float]:
    """Run the two-PE stream program on both paths (which must agree: twopaths.assert_same);
    the receiver's ``out``."""
    eng = compare_both(tmp, arch, {"layout.csl": STREAM_LAYOUT, "pe.csl": pe}, (9, 3))
    assert eng.error is None
    return eng.device.read_symbol(1, 0, "out").tolist()


@pytest.mark.parametrize("arch", ARCHS)
def test_fabout_destination_takes_the_sources_length(tmp_path, arch):
    assert stream_both(tmp_path, arch)[:5] == [1.5, 2.5, 3.5, 4.5, 0.0]


@pytest.mark.parametrize("arch", ARCHS)
def test_a_fabin_source_gives_the_op_its_extent(tmp_path, arch):
    # A fabin source's extent is the op's length even into a longer memory destination (the
    # hardware's rule: a source's length before the destination's; the SDK's topic-16
    # receives `@mov32(dest of 15, fabin of extent 2)`): 2 of the 4 values sent arrive.
    out = stream_both(tmp_path, arch, STREAM_PE.replace("fabin_dsd, .{ .extent = 4,",
                                                        "fabin_dsd, .{ .extent = 2,"))
    assert out[:5] == [1.5, 2.5, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("target,decls", [("*u16", ""), ("Reg", "const Reg = *u16;")],
                         ids=["written-out", "named"])
def test_a_register_read_through_an_integer_address_is_a_compile_error(tmp_path, arch,
                                                                      target, decls):
    # The SDK's spmv-hypersparse reads a router register as `@bitcast(*u16, addr).*`: no
    # such registers are modelled, so the construct is an error at compile time, at the
    # call, whatever the address (here one computed at run time), also when the pointer type
    # has a name.
    body = ("  var a: u16 = 0x7f40 + @as(u16, out[0]);\n"
            f"  var r: u16 = @bitcast({target}, a).*;\n  out[0] = @as(f32, r);")
    with pytest.raises(CslError) as ei:
        compile_one_pe(tmp_path, decls, body, arch)
    first = ei.value.render().splitlines()[0]
    # (the template's {decls} line holds the declaration: the call is on line 10 either way)
    assert first.startswith(f"{tmp_path / 'pe.csl'}:10:16: "), first   # at the @bitcast
    assert first.endswith("error: @bitcast of an integer address to '*u16' (a memory-mapped "
                          "register) is not supported by waferscale yet"), first


LOCAL_DECLS = """
fn increment_and_sum(data_ptr: *[3]i16, result_ptr: *i16) void {
  (data_ptr.*)[0] += 1;
  (data_ptr.*)[2] += 1;
  result_ptr.* = (data_ptr.*)[0] + (data_ptr.*)[1] + (data_ptr.*)[2];
}
fn bump(a: *u16, b: *u16) void { a.* += b.*; b.* = 7; }
var result = @zeros([1]i16);
"""

LOCAL_BODY = """
  var data = [3]i16 { 1, 2, 3 };          // a local array whose address is taken
  increment_and_sum(&data, &result[0]);
  out[0] = @as(f32, result[0]);
  out[1] = @as(f32, data[0] * 10 + data[2]);
  var a: u16 = 5;                          // local scalars passed by address (fft-1d-2d)
  var b: u16 = 2;
  bump(&a, &b);
  a += 1;
  out[2] = @as(f32, a);
  out[3] = @as(f32, b);
"""


@pytest.mark.parametrize("arch", ARCHS)
def test_address_of_a_local(tmp_path, arch):
    out, err, _ = run_both(tmp_path, arch, LOCAL_DECLS, LOCAL_BODY)
    assert err is None
    assert out[:4].tolist() == [8.0, 24.0, 8.0, 7.0]


def test_front_end_and_simulator_agree_on_the_runtime_builtins():
    # A run-time builtin the front end lets through must run (sim/builtins_rt); every other
    # run-time-only name is a compile-time "not supported" error (lang/builtins.py).
    from waferscale.lang.builtins import RUNTIME_ONLY, SIMULATED_RUNTIME
    from waferscale.sim.builtins_rt import RUNTIME_BUILTINS
    assert SIMULATED_RUNTIME == set(RUNTIME_ONLY) & set(RUNTIME_BUILTINS)


FIFO_DECLS = """
const src = [6]f32 { 1.0, 2.0, 3.0, 4.0, 5.0, 6.0 };
const src_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{6} -> src[i] });
const dst_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{6} -> out[i] });
var fifo_buffer = @zeros([4]f32);             // smaller than the stream: the pusher waits
const fifo = @allocate_fifo(fifo_buffer);
const done_id: local_task_id = @get_local_task_id(9);
task done() void { sys_mod.unblock_cmd_stream(); }     // the pop ends after the last push
comptime { @bind_local_task(done, done_id); }
"""

FIFO_BODY = """
  @fadds(fifo, src_dsd, 10.0, .{ .async = true });
  @fnegs(dst_dsd, fifo, .{ .async = true, .activate = done_id });
  return;
"""


@pytest.mark.parametrize("arch", ARCHS)
def test_fifo_between_two_async_operations(tmp_path, arch):
    out, err, _ = run_both(tmp_path, arch, FIFO_DECLS, FIFO_BODY)
    assert err is None
    assert out[:6].tolist() == [-11.0, -12.0, -13.0, -14.0, -15.0, -16.0]


@pytest.mark.parametrize("arch", ARCHS)
def test_fifo_errors_are_the_same_on_both_paths(tmp_path, arch):
    # A synchronous op on a FIFO tests instead of waiting: not modeled, an error.
    _, err, _ = run_both(tmp_path, arch, FIFO_DECLS, "  @fnegs(dst_dsd, fifo);")
    assert err is not None and "synchronous DSD operation on a FIFO" in err and "PE(0,0)" in err
    # Popping more than was pushed waits forever: the deadlock report names the FIFO.
    _, err, _ = run_both(tmp_path, arch, FIFO_DECLS, FIFO_BODY.replace(
        "@fadds(fifo, src_dsd, 10.0,", "@fadds(fifo, @set_dsd_length(src_dsd, 3), 10.0,"))
    assert err is not None and "an element in the FIFO at word" in err


BAD_DSD_DECLS = """
// Output queue 5 is never initialized: on WSE-3 this DSD has no color, an error only if an
// op using it runs (the SDK's residual has such a DSD on PEs that never send).
const oq5: output_queue = @get_output_queue(5);
const nowhere = @get_dsd(fabout_dsd, if (@is_arch("wse3")) .{ .extent = 1, .output_queue = oq5 }
                         else .{ .extent = 1, .output_queue = oq5,
                                 .fabric_color = @get_color(6) });
var flag: u16 = 0;
"""


def test_a_bad_dsd_in_code_that_does_not_run_stays_on_the_engine(tmp_path):
    body = "  if (flag == 1) { @fmovs(nowhere, 2.0); }\n  out[0] = 1.0;"
    out, err, _ = run_both(tmp_path, "wse3", BAD_DSD_DECLS, body)
    assert err is None and out[0] == 1.0
    # Run, it is the interpreter's error, on both paths.
    _, err, _ = run_both(tmp_path, "wse3", BAD_DSD_DECLS,
                         "  flag = 1;\n  if (flag == 1) { @fmovs(nowhere, 2.0); }")
    assert err is not None and "output queue 5 has no color" in err and "PE(0,0)" in err


# Lazy analysis (layout._live_code): a global that no compiled code uses takes no memory and
# its initializer is not checked; an `if` on a comptime-known condition compiles one branch.
# The big buffer alone would not fit (48,000 B + the rest > 48 KiB); the DSD over the void
# `off` would be an error if analysed (SDK pipeline-03-multiple's edge PEs).
LAZY_DECLS = """
const off = {};
var big = @zeros([12000]f32);
var fifo_buf = @zeros([3000]u32);
const fifo = @allocate_fifo(fifo_buf);
const oq = @get_output_queue(2);
var never = @get_dsd(fabout_dsd, .{ .extent = 1, .fabric_color = off, .output_queue = oq });
var kept: u16 = 7;
fn maybe() void {
  if (@type_of(off) != void) {
    @mov32(never, fifo, .{ .async = true });
    big[0] = 1.0;
  } else {
    kept += 1;
  }
}
"""


@pytest.mark.parametrize("arch", ARCHS)
def test_unused_globals_take_no_memory_and_are_not_analysed(tmp_path, arch):
    devs: list = []
    out, err, _ = run_both(tmp_path, arch, LAZY_DECLS, "  maybe();\n  out[0] = @as(f32, kept);",
                           keep=devs)
    assert err is None and out[0] == 8.0
    for dev in devs:
        for name in ("big", "fifo_buf", "never", "buf"):    # buf: the template's, unused
            with pytest.raises(DeviceError, match=f"no global named '{name}'"):
                dev.read_symbol(0, 0, name)
        assert dev.read_symbol(0, 0, "kept").tolist() == [8]


@pytest.mark.parametrize("arch", ARCHS)
def test_a_used_global_is_analysed(tmp_path, arch):
    """The same globals used by code the PE compiles (a run-time condition keeps both
    branches): the DSD's void color is an error at it, the buffers overflow the PE."""
    from waferscale.lang.errors import CslError
    used = LAZY_DECLS.replace("if (@type_of(off) != void)", "if (kept > 0)")
    small = used.replace("var big = @zeros([12000]f32);", "var big = @zeros([12]f32);")
    with pytest.raises(CslError, match="pe.csl:13:66: error: fabout_dsd .fabric_color must "
                                       "be a color, found a value of type 'void'"):
        run_both(tmp_path, arch, small, "  maybe();")
    colored = used.replace("fabric_color = off", "fabric_color = @get_color(3)")
    with pytest.raises(CslError, match=r"needs \d+ bytes but a PE has 49152.*big \(48000 B\), "
                                       r"fifo_buf \(12000 B\)"):
        run_both(tmp_path, arch, colored, "  maybe();")


# A task-typed param (`param callback: task () void;`, the SDK's 25-pt-stencil oned_exch.csl)
# bound to a task and used as an async op's `.activate`.
CALLBACK_HELPER = """
param callback: task () void;
param dst: *[8]f32;
const d = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{4} -> dst[i] });
fn start() void {
  @fmovs(d, 2.5, .{ .async = true, .activate = callback });
}
"""
CALLBACK_PE = """
param memcpy_params;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
var out = @zeros([8]f32);
var out_ptr: [*]f32 = &out;
const done_id: local_task_id = @get_local_task_id(9);
task done() void {
  out[7] = out[0] + 1.0;
  sys_mod.unblock_cmd_stream();
}
const helper = @import_module("helper.csl", .{ .callback = done, .dst = &out });
fn run() void { helper.start(); }
comptime {
  @bind_local_task(done, done_id);
  @export_symbol(out_ptr, "out");
  @export_symbol(run);
}
"""


@pytest.mark.parametrize("arch", ARCHS)
def test_task_typed_param(tmp_path, arch):
    out, err, _ = run_both(tmp_path, arch, "", "", {"helper.csl": CALLBACK_HELPER},
                           pe_text=CALLBACK_PE)
    assert err is None
    assert out.tolist() == [2.5] * 4 + [0.0] * 3 + [3.5]


def test_task_typed_param_rejects_a_function(tmp_path):
    from waferscale.lang.errors import CslError
    pe = CALLBACK_PE.replace(".callback = done", ".callback = plain") + "fn plain() void {}\n"
    with pytest.raises(CslError, match=r"helper.csl:2:1: error: expected a task of type "
                                       r"'task\(\) void', found the function type"):
        run_both(tmp_path, "wse3", "", "", {"helper.csl": CALLBACK_HELPER}, pe_text=pe)
