"""Compile-time evaluation: CSL typing rules, exact comptime arithmetic, control flow,
functions with comptime/anytype params, structs/tuples/enums, and the errors that guard them."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings, strategies as st

from waferscale.lang import types as T
from waferscale.lang.comptime import EvalOptions, instantiate_source
from waferscale.lang.errors import CslError
from waferscale.lang.values import describe


def value(src: str, name: str = "r", arch: str = "wse3"):
    ip, mod = instantiate_source(src, path="t.csl", options=EvalOptions(arch=arch))
    return ip.global_value(mod, name, None)


def error(src: str, name: str = "r") -> str:
    with pytest.raises(CslError) as ei:
        value(src, name)
    return ei.value.render()


@pytest.mark.parametrize("src, typ, expect", [
    ("const r = 1 << 70;", "comptime_int", 1 << 70),                      # exact, unbounded
    ("const r = (7 / 2) + (-7 / 2);", "comptime_int", 0),                 # truncating division
    ("const r = -7 % 3;", "comptime_int", -1),                            # remainder sign = dividend
    ("const x: u16 = 3; const r = x + 4;", "u16", 7),                     # comptime_int coerces
    ("const x: i16 = -3; const r = x * 2;", "i16", -6),
    ("const r = 0x10 + 0o10 + 0b10 + 1_000;", "comptime_int", 1026),
    ("const r = 'a';", "comptime_int", 97),
    ("const r = 1.5 * 2;", "comptime_float", 3.0),
    ("const r = @as(i16, 3.9);", "i16", 3),                               # float->int truncates
    ("const r = @as(i16, -3.9);", "i16", -3),
    ("const r = @as(f16, 65519.0);", "f16", 65504.0),                     # rounds to f16
    ("const r = @bitcast(u32, @as(f32, 1.0));", "u32", 0x3F800000),
    ("const r = @bitcast(f16, @as(u16, 0x3C00));", "f16", 1.0),
    ("const r = ~@as(u16, 0);", "u16", 0xFFFF),
    ("const r = (1 | 2) == 3;", "bool", True),                            # bitwise binds tighter
    ("const r = 1 < 2 and 3 > 4;", "bool", False),
    ("const r = false and @fadds(1, 2, 3);", "bool", False),              # short-circuit: rhs unanalysed
    ("const r = @strlen(@strcat(\"ab\", \"cde\"));", "comptime_int", 5),
    ("const r = if (@is_arch(\"wse2\")) 1 else 2;", "comptime_int", 2),
    ("const r = switch (3) { 1, 2 => 10, 3 => 30, else => 0 };", "comptime_int", 30),
    ("const r = blk: { var s: i32 = 0; for (@range(i32, 10)) |i| { s += i; } break :blk s; };",
     "i32", 45),
    ("const r = blk: { var s: i32 = 0; var i: i32 = 0; while (i < 10) : (i += 1) { "
     "if (i == 3) continue; if (i == 6) break; s += i; } break :blk s; };", "i32", 12),
    ("const r = blk: { var s: i16 = 0; for (@range(i16, 10, 0, -3)) |i| { s += i; } "
     "break :blk s; };", "i16", 22),                                       # 10+7+4+1
    ("fn f(comptime T: type, v: T) T { return v * 2; } const r = f(f32, 1.5);", "f32", 3.0),
    ("fn f(v: anytype) @type_of(v) { return v + v; } const r = f(@as(u16, 4));", "u16", 8),
    ("fn fact(n: u32) u32 { if (n == 0) return 1; return n * fact(n - 1); } "
     "const r = fact(10);", "u32", 3628800),
    ("const S = struct { fn twice(v: i16) i16 { return v * 2; } }; const r = S.twice(4);",
     "i16", 8),
    ("const E = enum(u8) { red, green = 5, blue }; const r = @as(u8, E.blue);", "u8", 6),
    ("const t = .{ 1, .{ 2, 3 } }; const r = t[1][0];", "comptime_int", 2),
    ("const s = .{ .a = 1, .b = .{ .c = 4 } }; const r = s.b.c;", "comptime_int", 4),
    ("const r = @field(@concat_structs(.{ .a = 1 }, .{ .b = 2 }), \"b\");", "comptime_int", 2),
    ("const r = @has_field(.{ .a = 1 }, \"a\");", "bool", True),
    ("const a = [3]i16 { 1, 2, 3 }; const r = a[2];", "i16", 3),
    ("const r = @element_count([4, 5]f16);", "u32", 20),
    ("const r = @is_same_type(@element_type([4]f16), f16);", "bool", True),
    ("const r = @get_int(@get_color(7));", "u16", 7),
    ("const r = later + 1; const later = 41;", "comptime_int", 42),        # order independent
    ("const P = struct { a: i16, b: f32 = 2.0 }; const p: P = .{ .a = 1 }; const r = p.b;",
     "f32", 2.0),
])
def test_values(src, typ, expect):
    v = value(src)
    assert str(v.type) == typ
    assert v.v == expect


@pytest.mark.parametrize("src, message", [
    ("const x: u16 = 3; const y: i16 = 4; const r = x + y;", "incompatible operand types 'u16' and 'i16'"),
    ("const r: u16 = 70000;", "cannot represent integer value 70000"),
    ("const r = @as(u16, 65535) + 1;", "integer overflow"),
    ("const r = -@as(u16, 1);", "integer overflow"),
    ("const r = 1 / 0;", "division by zero"),
    ("const r = r + 1;", "dependency loop"),
    ("const r = nope;", "use of undeclared identifier 'nope'"),
    ("fn loop() void { while (true) {} } const r = loop();", "exceeded"),
    ("fn f(n: i32) i32 { return f(n); } const r = f(1);", "call depth"),
    ("var g: i16 = 3; const r = g + 1;", "'g' is a runtime variable"),
    ("const r = @fadds(1, 2, 3);", "can only be used in run-time code"),
    ("const r = @get_color(24);", "color 24 is out of range 0..23"),
    ("const r = @get_local_task_id(3);", "out of range 8..30 on wse3"),
    ("const r = @range(i16, 0, 10, 0);", "step must not be zero"),
    ("const r = @import_module(\"<nosuch>\");", "unknown library '<nosuch>'"),
    ("const r = @import_module(\"<malloc>\");", "not implemented by waferscale yet"),
    ("const r = @import_module(\"<directions>\");", "route bitvector encoding"),
    ("const r = @import_module(\"<kernels/fft/fft3d_layout>\");",
     "not implemented by waferscale yet: it is a kernel library shipped with the SDK"),
    ("const r = @import_module(\"missing.csl\");", "cannot find module 'missing.csl'"),
    ("const r = switch (4) { 1 => 1, 1 => 2, else => 3 };", "duplicate switch case"),
    ("const r = switch (4) { 1 => 1 };", "matches no case"),
    ("const r = if (3) 1 else 2;", "expected type 'bool'"),
    ("const r = .{ .a = 1 }.b;", "no field named 'b'"),
    ("const r = [3]i16 { 1, 2 };", "needs 3 elements"),
    ("const a = .{1, 2}; const r = a[5];", "out of range"),
    ("const r = @comptime_assert(1 == 2, \"sizes must match\");", "sizes must match"),
    ("const r = @bitcast(u32, @as(u16, 1));", "size mismatch"),
])
def test_errors(src, message):
    text = error(src)
    assert message in text
    assert text.startswith("t.csl:1:")               # located, compiler style
    assert "^" in text.splitlines()[2]               # with a caret line


def test_pruned_branch_is_never_analysed():
    # The untaken branch names an undefined identifier and a runtime-only builtin.
    assert value("const r = if (@is_arch(\"wse3\")) 1 else undefined_thing + @fadds(1);").v == 1
    assert value("const r = if (@is_arch(\"wse2\")) @get_data_task_id(@get_color(1)) "
                 "else if (@is_arch(\"wse3\")) @get_data_task_id(@get_input_queue(2));").v == 2
    v = value("const r = if (@is_arch(\"wse2\")) @get_data_task_id(@get_color(1)) "
              "else if (@is_arch(\"wse3\")) @get_data_task_id(@get_input_queue(2));", arch="wse2")
    assert (str(v.type), v.v) == ("data_task_id", 1)


def test_float_precision_follows_type():
    # f32 arithmetic rounds to f32 (not f64): 1/3 in f32 is 0x1.555556p-2.
    assert value("const x: f32 = 1.0; const r = x / 3.0;").v == float.fromhex("0x1.555556p-2")
    assert value("const r = 1.0 / 3.0;").v == 1.0 / 3.0                  # comptime_float = f64
    assert math.isinf(value("const x: f16 = 60000.0; const r = x * 2.0;").v)


def test_tensor_access_strides_innermost_first():
    ip, mod = instantiate_source("var A: [4, 5]f32; const r = |i, j|{4, 5} -> A[i, j];"
                                 "const c = |i, j|{5, 4} -> A[j, i];"
                                 "const d = |i|{5} -> A[2, i];", path="t.csl")
    r = ip.global_value(mod, "r", None).v
    assert (r.offset, r.extents, r.strides) == (0, (5, 4), (1, 1))
    c = ip.global_value(mod, "c", None).v
    # inner loop (i over rows) steps 5; outer step after inner reset: 1 - 5*3 = -14
    assert (c.offset, c.extents, c.strides) == (0, (4, 5), (5, -14))
    d = ip.global_value(mod, "d", None).v
    assert (d.offset, d.strides, d.extents) == (10, (1,), (5,))


def test_tensor_access_rejects_non_affine_and_warns_out_of_bounds():
    assert "affine" in error("var A: [16]f32; const r = |i|{4} -> A[i * i];")
    # cslc accepts an access longer than its array (the SDK's "dummy" DSDs, re-pointed with
    # @set_dsd_base_addr before use): a warning, and the run-time check at use.
    ip, mod = instantiate_source("var A: [4]f32; const r = |i|{5} -> A[i];", path="t.csl",
                                 options=EvalOptions(arch="wse3"))
    r = ip.global_value(mod, "r", None)
    assert r.v.extents == (5,)
    assert any("t.csl:1:26: warning: tensor access reaches element 4 outside 'A'" in w
               for w in ip.ctx.warnings), ip.ctx.warnings


@settings(max_examples=200, deadline=None)
@given(st.integers(-2**40, 2**40), st.integers(-2**40, 2**40),
       st.sampled_from(["+", "-", "*", "/", "%", "&", "|", "^"]))
def test_comptime_int_arithmetic_is_exact(a, b, op):
    assume(not (op in "/%" and b == 0))
    r = value(f"const a = {a}; const b = {b}; const r = (a) {op} (b);".replace("(-", "(0 - "))
    if op == "/":
        expect = abs(a) // abs(b) * (1 if (a >= 0) == (b >= 0) else -1)
    elif op == "%":
        expect = a - b * (abs(a) // abs(b) * (1 if (a >= 0) == (b >= 0) else -1))
    else:
        expect = eval(f"a {op} b")
    assert r.v == expect and r.type == T.COMPTIME_INT


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.sampled_from(["+", "-", "*"]))
def test_u16_arithmetic_overflow_is_an_error(a, b, op):
    src = f"const a: u16 = {a}; const b: u16 = {b}; const r = a {op} b;"
    exact = eval(f"a {op} b")
    if 0 <= exact <= 0xFFFF:
        assert value(src).v == exact
    else:
        assert "integer overflow" in error(src)


def test_describe_is_readable():
    assert describe(value("const r = .{ .a = 1, .b = true };")) == ".{ .a = 1, .b = true }"


def test_each_import_is_its_own_instance(tmp_path):
    (tmp_path / "scale.csl").write_text("param k: i16;\nconst v = k * 2;\n"
                                        "fn get() i16 { return v; }\n")
    main = tmp_path / "main.csl"
    src = ("const a = @import_module(\"scale.csl\", .{ .k = 3 });\n"
           "const b = @import_module(\"scale.csl\", .{ .k = 5 });\n"
           "const r = a.v * 100 + b.get();\n")
    main.write_text(src)
    ip, mod = instantiate_source(src, path=str(main))
    assert ip.global_value(mod, "r", None).v == 610


def test_unbound_module_param_points_at_import(tmp_path):
    (tmp_path / "needs.csl").write_text("param k: i16;\nconst v = k;\n")
    src = "const m = @import_module(\"needs.csl\");\nconst r = m.v;\n"
    ip, mod = instantiate_source(src, path=str(tmp_path / "main.csl"))
    with pytest.raises(CslError) as ei:
        ip.global_value(mod, "r", None)
    text = ei.value.render()
    assert "param 'k' of needs.csl is not bound" in text
    assert "note: instantiated here" in text and "main.csl:1:" in text


def test_pointer_to_2d_array_coerces_to_many_pointer():
    # As the official gemv-checkerboard example exports a [M, N]f16 array through [*]f16.
    ip, mod = instantiate_source("var A: [2, 3]f16;\nvar p: [*]f16 = &A;\n", path="t.csl")
    v = ip.global_value(mod, "p", None)
    assert str(v.type) == "[*]f16"
    assert "expected type '[*]f32'" in error("var A: [2, 3]f16;\nvar r: [*]f32 = &A;\n")


def test_a_literal_of_directions_is_evaluated_once_unless_a_name_is_shadowed():
    # A literal of literals and directions has one value wherever it runs, so it is
    # evaluated once and shared (a layout loop configures thousands of PEs with it)...
    src = """
    fn cfg() comptime_struct { return .{ .rx = .{WEST}, .tx = .{RAMP, EAST}, .n = 3 }; }
    const a = cfg();
    const r = .{ a, .{ .rx = .{WEST}, .tx = .{RAMP, EAST}, .n = 3 } };
    """
    r = value(src)
    first, second = r.v
    assert first.v["tx"].v[1].v == "EAST" and first.v["n"].v == 3
    assert describe(first) == describe(second)
    # ... but where the file binds a direction's name (here a parameter), the literal's value
    # depends on the call, and each call evaluates it.
    shadowed = """
    fn pick(EAST: u16) comptime_struct { return .{ .tx = .{EAST} }; }
    const r = .{ pick(1), pick(2) };
    """
    one, two = value(shadowed).v
    assert one.v["tx"].v[0].v == 1 and two.v["tx"].v[0].v == 2
