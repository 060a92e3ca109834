"""The compiled engine against the Python interpreter (the reference path).

Every case runs twice, with ``SimOptions(engine="python")`` and ``engine="compiled"``, and
must give the same result, bit for bit: every PE's memory, the cycle counter, per-PE and
fabric counters, router state, <simprint> lines, the trace and the error (twopaths.py's
``state`` and ``assert_same``). The compiled run must really use the engine (a program that
stops lowering makes these tests fail rather than silently compare Python with Python).

Cases: every kernel's benchmark cases on both arches, traces, the random task order,
<simprint> output, hypothesis-generated random programs (scalar code, DSD operations, and
streams between PEs with backpressure and async ops), and error parity. (The tutorial-style programs of
simulator_tests/sim/programs run on the engine in the other tests: ``engine="auto"``.)
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from waferscale.kernels.bench import CASES
from waferscale.lang.layout import elaborate
from waferscale.sim.device import SimulatorDevice, session
from waferscale.sim.fabric import cpp_available
from waferscale.sim.pe import SimError
from waferscale.sim.simulator import SimOptions

from twopaths import (ONE_PE_DIMS, ONE_PE_LAYOUT, assert_same_state, compare_both, options_for,
                      state)  # (this directory is on sys.path)

pytestmark = pytest.mark.skipif(not cpp_available(), reason="waferscale._fabric is not built "
                                "(pip install -e . needs a C++17 compiler)")


def _run_both(fn, **options):
    """``fn`` (which makes devices through :func:`session`) on both paths: its result and
    each device's :func:`twopaths.state`."""
    out = {}
    for mode in ("python", "compiled"):
        with session({"engine": mode, **options}) as devices:
            result = fn()
        assert devices and all((d.sim.engine is not None) == (mode == "compiled")
                               for d in devices)
        out[mode] = (result, [state(d) for d in devices])
    return out


def _assert_same(out) -> None:
    (rp, sp), (rc, sc) = out["python"], out["compiled"]
    assert rp == rc
    assert len(sp) == len(sc) > 0
    for a, b in zip(sp, sc):
        assert_same_state(a, b)


KERNEL_CASES = [(name, k, arch) for name, (_full, quick) in CASES.items()
                for k in range(len(quick)) for arch in ("wse2", "wse3")]


@pytest.mark.parametrize("name, k, arch", KERNEL_CASES)
def test_kernels_equal_on_both_paths(name, k, arch):
    _assert_same(_run_both(lambda: CASES[name][1][k](arch)))


def test_simulators_are_freed():
    # The engine must not hold Python objects that reference back to its simulator (a cycle
    # through C++ that the collector cannot see would keep every simulator alive).
    import gc
    import weakref
    with session({"engine": "compiled"}) as devices:
        CASES["gemv"][1][0]("wse3")
    ref = weakref.ref(devices[0].sim)
    assert ref().engine is not None
    del devices
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("name", ["gemv", "attention", "gemm"])
def test_traces_equal_on_both_paths(name):
    out = _run_both(lambda: CASES[name][1][0]("wse3"), trace=True)
    _assert_same(out)
    events = out["compiled"][1][0]["trace"]
    assert {e.get("cat") for e in events} >= {"task", "dsd"}


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("name", ["gemv", "attention", "rmsnorm"])
def test_random_task_order_equal_on_both_paths(name, seed):
    _assert_same(_run_both(lambda: CASES[name][1][0]("wse2"), random_task_order=True,
                           seed=seed))


SIMPRINT = """
  var k: u16 = 40000;
  print.print_string("k=");
  print.print_u16_decimal(k + 7);
  print.print_string(" done\\n");
  print.print_u32_decimal(@as(u32, k) * 3);
  print.print_string("\\n");
"""


def test_simprint_lines_equal_on_both_paths(tmp_path):
    _write_program(tmp_path, SIMPRINT, 1)
    eng = compare_both(tmp_path, "wse3", {}, ONE_PE_DIMS)      # the lines are compared too
    assert eng.error is None and eng.device.sim.sim_log[0].endswith(" k=40007 done")


SWITCH = """
  var i: u16 = 3;
  var acc: f32 = 0.0;
  while (i > 0) {
    switch (i) {
      1 => { acc += 1.0; },
      2, 3 => acc = acc * 10.0 + 2.0,
      else => { acc = -1.0; },
    }
    i -= 1;
  }
  var b: u16 = 5;
  out[0] = if (acc > 20.0) acc else -acc;
  var c: f32 = if (b == 5) @as(f32, b) else 0.5;
  out[0] += c;
"""


TASK_DSD = """
  // A DSD built in run-time code from a tensor access, a run-time pointer choice, @assert.
  const d = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{4} -> buf[2 * i] });
  @fmovs(d, 2.5);
  var k: u16 = 1;
  const p = if (k > 0) &buf else &buf;
  var e = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{3} -> buf[i] });
  e = @set_dsd_base_addr(e, p);
  @fadds(e, e, 1.0);
  @assert(buf[0] == 3.5);
  out[0] = buf[0] + buf[2];
  @assert(k == 2);
"""


def test_task_dsds_and_assert_equal_on_both_paths(tmp_path):
    err = _compare_program(tmp_path, TASK_DSD)
    assert err is not None and "@assert failed" in err


LABELLED = """
  var i: u16 = 3;
  blk: {
    if (i > 2) {
      out[0] = 1.0;
      break :blk;
    }
    out[0] = 2.0;
  }
  var n: u16 = 0;
  outer: while (n < 5) : (n += 1) {
    for (@range(u16, 4)) |j| {
      if (j == n) { continue :outer; }
      if (j + n > 5) { break :outer; }
      buf[j] += 1.0;
    }
  }
  out[0] += @as(f32, n);
"""


BLOCK_VALUE = """
  var i: u16 = 3;
  const v: f32 = blk: {
    if (i > 2) { break :blk @as(f32, i) * 2.0; }
    break :blk 2.0;
  };
  out[0] = v;
"""


@pytest.mark.parametrize("body", [SWITCH, LABELLED, BLOCK_VALUE],
                         ids=["switch", "labelled", "block-value"])
def test_control_flow_equal_on_both_paths(tmp_path, body):
    assert _compare_program(tmp_path, body) is None


STRUCT = """
  var i: u16 = 3;
  var p = .{ .a = i, .b = 2.0 };
  out[0] = p.b;
"""


def test_auto_falls_back_with_a_reason_and_compiled_refuses(tmp_path, caplog):
    import logging
    with caplog.at_level(logging.WARNING, logger="waferscale.sim.engine"):
        dev = _device(tmp_path, STRUCT, 1, "auto")
    assert dev.sim.engine is None and "does not support" in caplog.text
    dev.launch("run", [])
    assert dev.read_symbol(0, 0, "out")[0] == 2.0
    with pytest.raises(SimError, match="compiled engine cannot run this program"):
        _device(tmp_path, STRUCT, 1, "compiled")


# -- random scalar programs ------------------------------------------------------------------------

INT_TYPES = ["i16", "u16", "i32", "u32"]
FLOAT_TYPES = ["f16", "f32"]


@st.composite
def _expr(draw, t: str, locals_: dict[str, str], depth: int = 0) -> str:
    names = [n for n, lt in locals_.items() if lt == t]
    leaf = st.one_of(
        st.sampled_from(names) if names else st.nothing(),
        (st.integers(0, 300).map(str) if t in INT_TYPES
         else st.floats(-4, 4, allow_nan=False).map(lambda v: f"{v:.3f}")),
    )
    if depth >= 3 or draw(st.booleans()):
        return draw(leaf)
    a = draw(_expr(t, locals_, depth + 1))
    b = draw(_expr(t, locals_, depth + 1))
    if t in INT_TYPES:
        op = draw(st.sampled_from(["+", "-", "*", "&", "|", "^", "/", "%"]))
        if op in "/%":
            return f"({a} {op} (({b}) | 1))"          # never divides by zero
        return f"({a} {op} {b})"
    op = draw(st.sampled_from(["+", "-", "*", "/"]))
    return f"({a} {op} {b})"


@st.composite
def _program(draw) -> tuple[str, int]:
    """A task of typed locals, arithmetic, ifs, a loop and array writes; the results land in
    `out` (32-bit words) for the host to compare."""
    locals_: dict[str, str] = {}
    lines = []
    n_out = 0
    for k in range(draw(st.integers(1, 6))):
        t = draw(st.sampled_from(INT_TYPES + FLOAT_TYPES))
        name = f"v{k}"
        lines.append(f"  var {name}: {t} = {draw(_expr(t, locals_))};")
        locals_[name] = t
    for _ in range(draw(st.integers(1, 6))):
        name = draw(st.sampled_from(sorted(locals_)))
        t = locals_[name]
        kind = draw(st.sampled_from(["assign", "if", "loop"]))
        e = draw(_expr(t, locals_))
        if kind == "assign":
            lines.append(f"  {name} = {e};")
        elif kind == "if":
            other = draw(_expr(t, locals_))
            cmp = draw(st.sampled_from(["<", ">", "==", "!=", "<=", ">="]))
            lines.append(f"  if ({e} {cmp} {other}) {{ {name} = {other}; }} else {{ {name} = {e}; }}")
        else:
            n = draw(st.integers(0, 5))
            lines.append(f"  for (@range(u16, {n})) |i| {{ buf[i] = buf[i] + @as(f32, i); "
                         f"{name} = {e}; }}")
    for name, t in locals_.items():
        conv = f"@as(f32, {name})" if t in FLOAT_TYPES else f"@as(f32, @as(i32, {name}) & 255)"
        lines.append(f"  out[{n_out}] = {conv};")
        n_out += 1
    body = "\n".join(lines)
    return body, n_out


PROGRAM = """
param memcpy_params;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
const print = @import_module("<simprint>");
var out: [{n}]f32;
var buf: [8]f32;
var out_ptr: [*]f32 = &out;
fn run() void {{
{body}
  sys_mod.unblock_cmd_stream();
}}
comptime {{
  @export_symbol(out_ptr, "out");
  @export_symbol(run);
}}
"""

OPTIONS = options_for("wse3", ONE_PE_DIMS)


def _write_program(tmp_path, body: str, n: int, program: str = PROGRAM) -> None:
    (tmp_path / "pe.csl").write_text(program.format(n=n, body=body))
    (tmp_path / "layout.csl").write_text(ONE_PE_LAYOUT)


def _device(tmp_path, body: str, n: int, mode: str, **options) -> SimulatorDevice:
    _write_program(tmp_path, body, n)
    lay = elaborate(tmp_path / "layout.csl", OPTIONS)
    return SimulatorDevice(lay, SimOptions(engine=mode, simprint_log=None, **options))


def _compare_program(tmp_path, body: str, n: int = 1, program: str = PROGRAM,
                     **sim_options) -> str | None:
    """Launch ``run`` of a test program (``body`` inside it) on both paths, which must agree
    (twopaths.assert_same); the error (None: it ran to the end)."""
    _write_program(tmp_path, body, n, program)
    return compare_both(tmp_path, "wse3", {}, ONE_PE_DIMS, **sim_options).error


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(prog=_program())
def test_random_programs_equal_on_both_paths(tmp_path, prog):
    body, n = prog
    try:
        _compare_program(tmp_path, body, n)
    except SimError as e:
        # The lowering leaves a constant that cannot be coerced (`x = 0 - 1;` for a u16) to
        # the Python path, which reports it if that code runs; nothing else may fall back.
        assert "a constant that does not coerce" in str(e)


# -- random DSD programs ---------------------------------------------------------------------------

# op -> (destination array kind, source array kinds, last source may be a scalar)
DSD_TEST_OPS = {
    "fadds": ("s", "ss", True), "fsubs": ("s", "ss", True), "fmuls": ("s", "ss", True),
    "fmaxs": ("s", "ss", True), "fmacs": ("s", "sss", True), "fmovs": ("s", "s", True),
    "fnegs": ("s", "s", False), "fabss": ("s", "s", False), "faddh": ("h", "hh", True),
    "fsubh": ("h", "hh", True), "fmulh": ("h", "hh", True), "fmaxh": ("h", "hh", True),
    "fmach": ("h", "hhh", True), "fmachs": ("s", "shh", True), "fmovh": ("h", "h", True),
    "fnegh": ("h", "h", False), "fabsh": ("h", "h", False), "fh2s": ("s", "h", False),
    "fs2h": ("h", "s", False),
}
FMAC3 = {"fmacs", "fmach", "fmachs"}        # d = s1 + s2 * scalar: the last is a scalar


@st.composite
def _dsd_operand(draw, kind: str, n: int) -> str:
    """A mem1d DSD over one of the arrays of `kind` (s: a, b f32; h: g, k f16) with n
    elements, a random stride (0 makes an accumulator) and an offset that stays in bounds."""
    arr = draw(st.sampled_from(["a", "b"] if kind == "s" else ["g", "k"]))
    stride = draw(st.sampled_from([1, 1, 2, 0, -1]))
    span = (n - 1) * abs(stride)
    lo = span if stride < 0 else 0
    off = draw(st.integers(lo, 31 - (0 if stride < 0 else span)))
    return (f"@get_dsd(mem1d_dsd, .{{ .base_address = &{arr}, .offset = {off}, "
            f".stride = {stride}, .extent = {n} }})")


@st.composite
def _dsd_program(draw) -> str:
    lines = ["  for (@range(u16, 32)) |i| {",
             "    a[i] = @as(f32, i) * 0.37 - 3.0; b[i] = 1.5 - @as(f32, i) * 0.11;",
             "    g[i] = @as(f16, @as(f32, i) * 0.5 - 7.0); k[i] = @as(f16, @as(f32, i) * 0.25);",
             "  }"]
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(sorted(DSD_TEST_OPS)))
        dkind, skinds, scalar_ok = DSD_TEST_OPS[op]
        n = draw(st.integers(1, 12))
        args = [draw(_dsd_operand(dkind, n))]
        srcs = list(skinds)
        for j, kind in enumerate(srcs):
            last = j == len(srcs) - 1
            if last and (op in FMAC3 or (scalar_ok and draw(st.booleans()))):
                elem = "a[3]" if kind == "s" else "g[5]"
                args.append(draw(st.sampled_from([elem, "0.75", "-2.5"])))
            else:
                args.append(draw(_dsd_operand(kind, n)))
        lines.append(f"  @{op}({', '.join(args)});")
    return "\n".join(lines)


DSD_PROGRAM = PROGRAM.replace("var buf: [8]f32;",
                              "var buf: [8]f32;\nvar a: [32]f32;\nvar b: [32]f32;\n"
                              "var g: [32]f16;\nvar k: [32]f16;")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(body=_dsd_program())
def test_random_dsd_programs_equal_on_both_paths(tmp_path, body):
    """Random DSD operations over overlapping, strided, reversed and zero-stride operands."""
    assert _compare_program(tmp_path, body, program=DSD_PROGRAM) is None


# -- random traffic --------------------------------------------------------------------------------

LINE_PE = """
param memcpy_params: comptime_struct;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
const send_color: color = @get_color({sc});
const recv_color: color = @get_color({rc});
const oq: output_queue = @get_output_queue(2);
const iq: input_queue = @get_input_queue(2);
const send_done_id: local_task_id = @get_local_task_id(10);
const recv_done_id: local_task_id = @get_local_task_id(11);
var src: [{ns}]f32;
var dst: [{nr}]f32;
var busy: [4]f32;
var out: [1]f32;
var out_ptr: [*]f32 = &out;
var pending: u16 = 0;
const src_dsd = @get_dsd(mem1d_dsd, .{{ .base_address = &src, .extent = {ns} }});
const dst_dsd = @get_dsd(mem1d_dsd, .{{ .base_address = &dst, .extent = {nr} }});
const send_dsd = @get_dsd(fabout_dsd, if (@is_arch("wse3")) .{{ .extent = {ns}, .output_queue = oq }}
                                    else .{{ .extent = {ns}, .fabric_color = send_color, .output_queue = oq }});
const recv_dsd = @get_dsd(fabin_dsd, .{{ .extent = {nr}, .input_queue = iq }});
fn finish() void {{
  pending -= 1;
  if (pending == 0) {{ sys_mod.unblock_cmd_stream(); }}
}}
task send_done() void {{ finish(); }}
task recv_done() void {{ finish(); }}
fn run() void {{
  pending = 1 + {n_ops};
  for (@range(u16, {ns})) |i| {{ src[i] = @as(f32, i) * 0.5 + {k}.0; }}
{body}
  finish();
}}
comptime {{
  @bind_local_task(send_done, send_done_id);
  @bind_local_task(recv_done, recv_done_id);
  if ({send}) {{ @initialize_queue(oq, if (@is_arch("wse3")) .{{ .color = send_color }} else .{{}}); }}
  if ({recv}) {{ @initialize_queue(iq, .{{ .color = recv_color }}); }}
  @export_symbol(out_ptr, "out");
  @export_symbol(run);
}}
"""


@st.composite
def _line_program(draw) -> tuple[int, list[str], str]:
    """A row of PEs; PE i streams a random number of wavelets to PE i+1 (alternating colors),
    sync or async, plain or summed with memory, while PE i+1 receives sync or async (after a
    random stretch of local work) into memory with a copy, an add or a multiply-add."""
    w = draw(st.integers(2, 5))
    lens = [draw(st.integers(1, 24)) for _ in range(w - 1)]
    files = []
    for i in range(w):
        send, recv = i < w - 1, i > 0
        ns, nr = (lens[i] if send else 1), (lens[i - 1] if recv else 1)
        ops = []
        if send:
            op = draw(st.sampled_from(["@fmovs(send_dsd, src_dsd", "@fadds(send_dsd, src_dsd, src_dsd"]))
            ops.append(("send", op))
        if recv:
            op = draw(st.sampled_from(["@fmovs(dst_dsd, recv_dsd", "@fadds(dst_dsd, dst_dsd, recv_dsd",
                                       "@fmacs(dst_dsd, dst_dsd, recv_dsd, 1.5"]))
            ops.append(("recv", op))
        ops = draw(st.permutations(ops))
        lines = []
        n_async = 0
        for what, op in ops:
            if what == "recv":
                lines.append(f"  for (@range(u16, {draw(st.integers(0, 30))})) |j| "
                             "{ busy[j % 4] += 1.0; }")
            if draw(st.booleans()):
                lines.append(f"  {op}, .{{ .async = true, .activate = {what}_done_id }});")
                n_async += 1
            else:
                lines.append(f"  {op});")
        files.append(LINE_PE.format(sc=i % 2, rc=(i + 1) % 2, ns=ns, nr=nr, k=i, n_ops=n_async,
                                    body="\n".join(lines), send="true" if send else "false",
                                    recv="true" if recv else "false"))
    arch = draw(st.sampled_from(["wse2", "wse3"]))
    return w, files, arch


LINE_LAYOUT = """
const memcpy = @import_module("<memcpy/get_params>", .{{ .width = {w}, .height = 1 }});
layout {{
  @set_rectangle({w}, 1);
{tiles}
  @export_name("out", [*]f32, true);
  @export_name("run", fn()void);
}}
"""


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(prog=_line_program())
def test_random_traffic_equal_on_both_paths(tmp_path, prog):
    """Streams between PEs with backpressure, overlapping async ops and local work."""
    w, files, arch = prog
    tiles = []
    for i, text in enumerate(files):
        (tmp_path / f"pe{i}.csl").write_text(text)
        tiles.append(f'  @set_tile_code({i}, 0, "pe{i}.csl", '
                     f".{{ .memcpy_params = memcpy.get_params({i}) }});")
        if i < w - 1:
            tiles.append(f"  @set_color_config({i}, 0, @get_color({i % 2}), "
                         ".{ .routes = .{ .rx = .{RAMP}, .tx = .{EAST} } });")
        if i > 0:
            tiles.append(f"  @set_color_config({i}, 0, @get_color({(i - 1) % 2}), "
                         ".{ .routes = .{ .rx = .{WEST}, .tx = .{RAMP} } });")
    (tmp_path / "layout.csl").write_text(LINE_LAYOUT.format(w=w, tiles="\n".join(tiles)))
    eng = compare_both(tmp_path, arch, {}, (w + 7, 3))
    assert eng.error is None
    assert eng.device.sim.fabric.counters().wavelet_hops > 0  # the streams did cross the fabric


# -- errors ----------------------------------------------------------------------------------------

def test_endless_task_loop_stops_with_the_same_error(tmp_path):
    body = "  var k: u32 = 0;\n  while (true) { k += 1; }"
    err = _compare_program(tmp_path, body, max_cycles=5000)
    assert err is not None and "ran more than 5000 cycles ahead" in err


@pytest.mark.parametrize("body, what", [
    (("  var d = @get_dsd(mem4d_dsd, .{ .tensor_access = |i, j|{2, 2} -> buf[i * 2 + j] });\n"
      "  d = @set_dsd_length(d, 9);\n  @fmovs(d, 1.0);"), "mem4d_dsd reaches element 8 of 'buf'"),
    ("  var k: u16 = 1;\n  const v: f32 = blk: {\n    if (k > 2) { break :blk 1.0; }\n  };\n"
     "  out[0] = v;", "expected type 'f32', found 'void'"),
    ("  var k: u16 = 7;\n  switch (k) {\n    1, 2 => { out[0] = 1.0; },\n    3 => out[0] = 3.0,\n  }",
     "switch on 7 matches no case and has no else"),
    (("  var u: f32;\n  var j: u16 = 0;\n  while (j < 2) {\n    var w: f32 = undefined;\n"
      "    if (j == 0) { w = 1.0; }\n    u = w;\n    j += 1;\n  }"),
     "use of undefined value of 'w'"),
    ("  var i: u16 = 7;\n  buf[i + 1] = 1.0;", "index 8 out of bounds for dimension 0 of 'buf'"),
    (("  var d = @get_dsd(mem1d_dsd, .{ .base_address = &buf, .extent = 8 });\n"
      "  d = @increment_dsd_offset(d, 3, f32);\n  @fmovs(d, 1.0);"),
     "mem1d_dsd reaches element 8 of 'buf', which has 8 element(s): out of bounds"),
])
def test_errors_are_the_same_on_both_paths(tmp_path, body, what):
    err = _compare_program(tmp_path, body)
    assert err is not None and what in err
