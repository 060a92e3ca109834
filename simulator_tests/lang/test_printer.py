"""The CSL pretty-printer on hand-built trees: exact output for every tricky spot, and a
re-parse of each output to show that the chosen spelling means the same tree."""

from __future__ import annotations

import inspect

import pytest
from waferscale.lang import ast
from waferscale.lang.parser import parse_expr, parse_source
from waferscale.lang.printer import _Printer, print_module, print_node

I = ast.Ident
L = ast.IntLit


def B(op: str, lhs: ast.Expr, rhs: ast.Expr) -> ast.Binary:
    return ast.Binary(op, lhs, rhs)


def U(op: str, operand: ast.Expr) -> ast.Unary:
    return ast.Unary(op, operand)


def in_fn(*stmts: ast.Stmt) -> ast.Module:
    return ast.Module([ast.FnDecl("f", [], I("void"), ast.Block(list(stmts)))])


def body_of(text: str) -> str:
    """The statement lines of the single function printed by ``in_fn``, dedented."""
    lines = text.splitlines()
    assert lines[0] == "fn f() void {" and lines[-1] == "}"
    return "\n".join(line[2:] for line in lines[1:-1])


def check_expr(e: ast.Expr, expected: str) -> None:
    text = print_node(e)
    assert text == expected
    assert parse_expr(text) == e


def check_stmts(stmts: list[ast.Stmt], expected: str) -> None:
    m = in_fn(*stmts)
    text = print_module(m)
    assert body_of(text) == expected
    assert parse_source(text) == m


# ----------------------------------------------------------------------------------------------
# Precedence and associativity


@pytest.mark.parametrize("e, expected", [
    (B("*", B("+", I("a"), I("b")), I("c")), "(a + b) * c"),
    (B("+", I("a"), B("*", I("b"), I("c"))), "a + b * c"),
    (B("-", B("-", I("a"), I("b")), I("c")), "a - b - c"),
    (B("-", I("a"), B("-", I("b"), I("c"))), "a - (b - c)"),
    (B("/", I("a"), B("*", I("b"), I("c"))), "a / (b * c)"),
    (B("<<", B("+", I("a"), L(1)), L(2)), "a + 1 << 2"),
    (B("+", I("a"), B("<<", L(1), L(2))), "a + (1 << 2)"),
    # '& ^ |' are one left-associative level, tighter than comparisons.
    (B("|", B("&", I("a"), I("b")), I("c")), "a & b | c"),
    (B("&", I("a"), B("|", I("b"), I("c"))), "a & (b | c)"),
    (B("&", B("<<", I("x"), L(1)), I("m")), "(x << 1) & m"),
    (B("==", B("&", I("a"), I("m")), L(0)), "(a & m) == 0"),
    # Comparisons do not chain: both sides are parenthesized.
    (B("==", B("<", I("a"), I("b")), I("c")), "(a < b) == c"),
    (B("==", I("c"), B("<", I("a"), I("b"))), "c == (a < b)"),
    (B("or", I("a"), B("and", I("b"), I("c"))), "a or (b and c)"),
    (B("and", B("or", I("a"), I("b")), I("c")), "(a or b) and c"),
    (B("and", B("==", I("a"), L(1)), B("!=", I("b"), L(2))), "a == 1 and b != 2"),
])
def test_binary_precedence(e: ast.Expr, expected: str) -> None:
    check_expr(e, expected)


@pytest.mark.parametrize("e, expected", [
    (U("-", I("x")), "-x"),
    (U("-", U("-", I("x"))), "- -x"),
    (U("&", U("&", I("x"))), "& &x"),
    (U("!", U("!", I("x"))), "!!x"),
    (U("-", U("~", I("x"))), "-~x"),
    (U("-", L(1)), "-1"),
    (U("-", B("+", I("a"), I("b"))), "-(a + b)"),
    (B("-", I("a"), U("-", I("b"))), "a - -b"),
    (B("*", U("-", I("a")), I("b")), "-a * b"),
    (U("&", ast.Index(I("A"), [L(0)])), "&A[0]"),
    (ast.FieldAccess(U("-", I("a")), "b"), "(-a).b"),
])
def test_prefix_operators(e: ast.Expr, expected: str) -> None:
    check_expr(e, expected)


def test_negative_literals_print_like_parsed_unary_minus() -> None:
    # Never produced by the parser, but a synthetic tree must still print meaningfully.
    assert print_node(L(-3)) == "-3"
    assert print_node(U("-", L(-3))) == "- -3"
    assert print_node(B("*", I("a"), ast.FloatLit(-0.5))) == "a * -0.5"
    assert print_node(ast.FieldAccess(L(-1), "x")) == "(-1).x"
    assert parse_expr(print_node(L(-3))) == U("-", L(3))


@pytest.mark.parametrize("e, expected", [
    (ast.Deref(L(1)), "(1).*"),
    (ast.FieldAccess(ast.FloatLit(1.5), "x"), "(1.5).x"),
    (ast.Index(L(1), [L(0)]), "1[0]"),
    (ast.Deref(ast.Deref(I("p"))), "p.*.*"),
    (ast.Index(ast.Deref(I("p")), [I("k")]), "p.*[k]"),
    (ast.Call(ast.FieldAccess(I("mod"), "f"), [L(1), I("x")]), "mod.f(1, x)"),
    (ast.Call(ast.Call(I("f"), []), [I("y")]), "f()(y)"),
    (ast.Index(I("A"), [I("i"), B("+", B("*", L(2), I("j")), L(1))]), "A[i, 2 * j + 1]"),
    (ast.FieldAccess(ast.InitList(I("T"), [ast.FieldInit("a", L(1))]), "a"),
     "(T{ .a = 1 }).a"),
    (ast.Index(ast.InitList(None, items=[L(1), L(2)]), [L(0)]), ".{ 1, 2 }[0]"),
    (ast.FieldAccess(ast.PointerType(I("T")), "x"), "(*T).x"),
    (ast.FieldAccess(I(".red"), "x"), ".red.x"),
    (ast.FieldAccess(ast.BuiltinCall("get_rectangle", []), "width"), "@get_rectangle().width"),
])
def test_postfix_targets(e: ast.Expr, expected: str) -> None:
    check_expr(e, expected)


# ----------------------------------------------------------------------------------------------
# Types and initializers


@pytest.mark.parametrize("e, expected", [
    (ast.ArrayType([L(3)], I("i16")), "[3]i16"),
    (ast.ArrayType([I("M"), I("N")], I("f16")), "[M, N]f16"),
    (ast.ArrayType([L(2)], ast.ArrayType([L(3)], I("i16"))), "[2][3]i16"),
    (ast.ArrayType([B("*", I("M"), I("N"))], I("f32")), "[M * N]f32"),
    (ast.ArrayType([L(3)], B("+", I("a"), I("b"))), "[3](a + b)"),
    (ast.ArrayType([L(3)], ast.InitList(I("T"))), "[3](T{})"),
    (ast.PointerType(I("f32")), "*f32"),
    (ast.PointerType(I("f32"), const=True), "*const f32"),
    (ast.PointerType(I("u16"), many=True), "[*]u16"),
    (ast.PointerType(I("u16"), many=True, const=True), "[*]const u16"),
    (ast.PointerType(ast.FnType([I("i16"), I("f32")], I("f32")), const=True),
     "*const fn(i16, f32) f32"),
    (ast.FnType([], I("void")), "fn() void"),
    (ast.FnType([], I("void"), is_task=True), "task() void"),
    (ast.FnType([ast.PointerType(I("T"))], ast.PointerType(I("T"))), "fn(*T) *T"),
    (ast.InitList(ast.ArrayType([L(3)], I("i16")), items=[L(1), L(2), L(3)]),
     "[3]i16{ 1, 2, 3 }"),
    (ast.InitList(I("complex"), [ast.FieldInit("re", ast.FloatLit(1.0))]),
     "complex{ .re = 1.0 }"),
    (ast.InitList(None), ".{}"),
    (ast.InitList(I("Stats")), "Stats{}"),
    (ast.InitList(None, [ast.FieldInit("rx", ast.InitList(None, items=[I("RAMP")])),
                         ast.FieldInit("tx", ast.InitList(None, items=[I("EAST"), I("WEST")]))]),
     ".{ .rx = .{ RAMP }, .tx = .{ EAST, WEST } }"),
    (U("-", ast.InitList(I("T"))), "-T{}"),
    (ast.StructType([ast.ContainerField("a", I("i16")),
                     ast.ContainerField("b", I("f32"), ast.FloatLit(0.0))]),
     "struct { a: i16, b: f32 = 0.0 }"),
    (ast.StructType([ast.ContainerField("lo", I("u8"))], layout="packed"),
     "packed struct { lo: u8 }"),
    (ast.StructType([], kind="union", layout="extern"), "extern union {}"),
    (ast.EnumType(I("u16"), [ast.EnumMember("red"), ast.EnumMember("white", L(1)),
                            ast.EnumMember("blue")]),
     "enum(u16) { red, white = 1, blue }"),
    (ast.EnumType(None, []), "enum {}"),
])
def test_types_and_initializers(e: ast.Expr, expected: str) -> None:
    check_expr(e, expected)


def test_long_initializer_breaks_one_field_per_line() -> None:
    fields = [ast.FieldInit(name, I(name)) for name in
              ("memcpy_params", "M_per_pe", "N_per_pe", "kernel_x_dim", "is_first_col")]
    call = ast.BuiltinCall("set_tile_code", [I("px"), I("py"), ast.StringLit("pe.csl"),
                                              ast.InitList(None, fields)])
    m = ast.Module([ast.LayoutBlock(ast.Block([ast.ExprStmt(call)]))])
    assert print_module(m) == (
        "layout {\n"
        '  @set_tile_code(px, py, "pe.csl", .{\n'
        "    .memcpy_params = memcpy_params,\n"
        "    .M_per_pe = M_per_pe,\n"
        "    .N_per_pe = N_per_pe,\n"
        "    .kernel_x_dim = kernel_x_dim,\n"
        "    .is_first_col = is_first_col,\n"
        "  });\n"
        "}\n")
    assert parse_source(print_module(m)) == m


def test_struct_with_declarations_is_multiline() -> None:
    s = ast.StructType(
        [ast.ContainerField("v", I("u16"), L(3))],
        [ast.VarDecl("const", "k", init=L(42)),
         ast.FnDecl("get", [], I("u16"), ast.Block([ast.Return(I("k"))]))])
    m = ast.Module([ast.VarDecl("const", "Ns", init=s)])
    assert print_module(m) == (
        "const Ns = struct {\n"
        "  v: u16 = 3,\n"
        "\n"
        "  const k = 42;\n"
        "  fn get() u16 {\n"
        "    return k;\n"
        "  }\n"
        "};\n")
    assert parse_source(print_module(m)) == m


def test_type_positions_parenthesize_non_types() -> None:
    # Declared, parameter, field and return types are read as bare types by the parser.
    m = ast.Module([
        ast.VarDecl("var", "x", B("+", I("a"), I("b")), L(1)),
        ast.VarDecl("var", "y", ast.InitList(I("T")), None),
        ast.FnDecl("f", [ast.FnParam("p", U("-", I("t")))], ast.IfExpr(I("c"), I("A"), I("B")),
                   ast.Block([])),
        ast.VarDecl("const", "F", init=ast.FnType([ast.BlockExpr(ast.Block([], "blk"))],
                                                   I("void"))),
    ])
    assert print_module(m) == (
        "var x: (a + b) = 1;\n"
        "var y: (T{});\n"
        "\n"
        "fn f(p: (-t)) (if (c) A else B) {}\n"
        "\n"
        "const F = fn((blk: {})) void;\n")
    assert parse_source(print_module(m)) == m


# ----------------------------------------------------------------------------------------------
# if / switch / blocks / comptime / tensor access as expressions


@pytest.mark.parametrize("e, expected", [
    (ast.IfExpr(I("c"), I("a"), I("b")), "if (c) a else b"),
    (ast.IfExpr(I("c"), I("a")), "if (c) a"),
    (ast.IfExpr(I("c"), ast.IfExpr(I("d"), I("x")), I("y")), "if (c) (if (d) x) else y"),
    (ast.IfExpr(I("c"), ast.IfExpr(I("d"), I("x"), I("z")), I("y")),
     "if (c) if (d) x else z else y"),    # a closed inner if needs no parentheses
    (ast.IfExpr(I("c"), ast.IfExpr(I("d"), I("x"), ast.IfExpr(I("e"), I("w"))), I("y")),
     "if (c) (if (d) x else if (e) w) else y"),
    (ast.IfExpr(I("c"), I("x"), ast.IfExpr(I("d"), I("y"))), "if (c) x else if (d) y"),
    (ast.IfExpr(I("a"), I("x"), ast.IfExpr(I("b"), I("y"), I("z"))),
     "if (a) x else if (b) y else z"),
    (B("+", ast.IfExpr(I("c"), L(1), L(2)), L(3)), "(if (c) 1 else 2) + 3"),
    (B("+", L(3), ast.IfExpr(I("c"), L(1), L(2))), "3 + (if (c) 1 else 2)"),
    (ast.IfExpr(I("c"), B("+", I("a"), L(1)), B("+", I("b"), L(1))),
     "if (c) a + 1 else b + 1"),
    (ast.ComptimeExpr(B("+", L(3), L(4))), "comptime (3 + 4)"),
    (ast.ComptimeExpr(ast.Call(I("f"), [])), "comptime f()"),
    (B("*", ast.ComptimeExpr(I("n")), L(2)), "(comptime n) * 2"),
    (ast.TensorAccess(["i"], [I("N")], ast.Index(I("A"), [B("+", B("*", L(2), I("i")), L(1))])),
     "|i|{N} -> A[2 * i + 1]"),
    (ast.TensorAccess(["i", "j"], [L(2), L(2)], ast.Index(I("A"), [I("i"), I("j")])),
     "|i, j|{2, 2} -> A[i, j]"),
    (ast.TensorAccess(["i"], [L(4)], B("+", I("a"), I("i"))), "|i|{4} -> (a + i)"),
    (ast.Switch(I("x"), [ast.SwitchProng([L(0), L(1)], I("a")),
                         ast.SwitchProng([], I("b"), is_else=True)]),
     "switch (x) {\n  0, 1 => a,\n  else => b,\n}"),
    (ast.Switch(I("x"), []), "switch (x) {}"),
    (ast.Switch(I("x"), [ast.SwitchProng([L(0)],
                                         ast.BlockExpr(ast.Block([ast.Break("b", L(1))])))]),
     "switch (x) {\n  0 => {\n    break :b 1;\n  },\n}"),
    (ast.BlockExpr(ast.Block([ast.Break("blk", L(1))], "blk")), "blk: {\n  break :blk 1;\n}"),
    (ast.Call(ast.FieldAccess(ast.StructType([]), "f"), []), "(struct {}).f()"),
])
def test_compound_expressions(e: ast.Expr, expected: str) -> None:
    check_expr(e, expected)


def test_long_if_expression_chain_breaks_before_else() -> None:
    e = ast.IfExpr(B("==", I("py"), L(0)), ast.InitList(None, [ast.FieldInit("rx", I("RAMP"))]),
                   ast.IfExpr(B("==", I("py"), B("-", I("height"), L(1))),
                              ast.InitList(None, [ast.FieldInit("rx", I("NORTH"))]),
                              ast.InitList(None, [ast.FieldInit("rx", I("SOUTH"))])))
    m = ast.Module([ast.VarDecl("const", "route", init=e)])
    assert print_module(m) == (
        "const route = if (py == 0) .{ .rx = RAMP }\n"
        "  else if (py == height - 1) .{ .rx = NORTH }\n"
        "  else .{ .rx = SOUTH };\n")
    assert parse_source(print_module(m)) == m


# ----------------------------------------------------------------------------------------------
# Statements


def test_statement_position_expressions() -> None:
    sw = ast.Switch(I("x"), [ast.SwitchProng([L(0)], ast.Assign(I("y"), "=", L(1))),
                             ast.SwitchProng([], ast.Block([]), is_else=True)])
    check_stmts([
        ast.ExprStmt(ast.IfExpr(I("c"), ast.Call(I("f"), []), ast.Call(I("g"), []))),
        ast.ExprStmt(sw),
        ast.ExprStmt(ast.BlockExpr(ast.Block([ast.Break("blk")], "blk"))),
        ast.ExprStmt(ast.ComptimeExpr(ast.Call(I("f"), []))),
        ast.Assign(ast.Deref(I("p")), "=", L(1)),
        ast.Assign(ast.FieldAccess(ast.IfExpr(I("c"), I("a"), I("b")), "x"), "+=", L(1)),
        ast.ExprStmt(ast.InitList(ast.StructType([], layout="extern"))),
    ], "(if (c) f() else g());\n"
       "switch (x) {\n"
       "  0 => y = 1,\n"
       "  else => {},\n"
       "}\n"
       "blk: {\n"
       "  break :blk;\n"
       "}\n"
       "comptime f();\n"
       "p.* = 1;\n"
       "(if (c) a else b).x += 1;\n"
       "(extern struct {}{});")


def test_switch_statement_followed_by_operator_is_parenthesized() -> None:
    sw = ast.Switch(I("x"), [ast.SwitchProng([], L(1), is_else=True)])
    check_stmts([ast.ExprStmt(B("+", sw, L(1)))],
                "(switch (x) {\n  else => 1,\n} + 1);")


def test_if_statement_forms() -> None:
    a1 = ast.Assign(I("x"), "=", L(1))
    a2 = ast.Assign(I("y"), "=", L(2))
    check_stmts([
        ast.If(I("c"), a1),
        ast.If(I("c"), a1, a2),
        ast.If(I("c"), ast.Return(), ast.If(I("d"), ast.Break("l"), ast.Continue())),
        ast.If(I("c"), ast.Block([a1]), ast.Block([a2])),
        ast.If(I("c"), ast.Block([a1]), ast.If(I("d"), ast.Block([]))),
    ], "if (c) x = 1;\n"
       "if (c) x = 1 else y = 2;\n"
       "if (c) return else if (d) break :l else continue;\n"
       "if (c) {\n"
       "  x = 1;\n"
       "} else {\n"
       "  y = 2;\n"
       "}\n"
       "if (c) {\n"
       "  x = 1;\n"
       "} else if (d) {}")


def test_dangling_else_if_expression_tail_is_parenthesized() -> None:
    # 'if (c) x = if (d) y else z;' would give the else to the inner if-expression.
    check_stmts([ast.If(I("c"), ast.Assign(I("x"), "=", ast.IfExpr(I("d"), I("y"))),
                        ast.Assign(I("z"), "=", L(0)))],
                "if (c) x = (if (d) y) else z = 0;")


@pytest.mark.parametrize("then", [
    ast.If(I("d"), ast.Return()),
    ast.While(I("d"), ast.Block([])),
    ast.For(I("xs"), ["v"], ast.Block([])),
    ast.If(I("d"), ast.Return(), ast.If(I("e"), ast.Return())),
])
def test_then_branch_that_would_take_the_else_gets_braces(then: ast.Stmt) -> None:
    s = ast.If(I("c"), then, ast.Return(L(1)))
    text = print_module(in_fn(s))
    reparsed = parse_source(text).decls[0].body.stmts[0]
    # The tree cannot be written without braces; the printed program means the same.
    assert body_of(text).startswith("if (c) {\n")
    assert reparsed == ast.If(I("c"), ast.Block([then]), ast.Return(L(1)))


def test_loops_and_blocks() -> None:
    check_stmts([
        ast.While(B("<", I("i"), I("n")), ast.Block([]), ast.Assign(I("i"), "+=", L(1)), "outer"),
        ast.While(I("c"), ast.Assign(I("i"), "+=", L(1))),
        ast.While(I("c"), ast.Block([]), ast.ExprStmt(ast.Call(I("step"), []))),
        ast.For(ast.BuiltinCall("range", [I("u16"), L(4)]), ["v", "k"],
                ast.Block([ast.Continue("outer")])),
        ast.For(I("xs"), ["v"], ast.ExprStmt(ast.Call(I("f"), [I("v")])), "loop"),
        ast.Block([ast.VarDecl("var", "t", I("u16"), L(0), is_comptime=True)]),
        ast.ComptimeBlock(ast.Block([])),
        ast.Break(None, L(3)),
    ], "outer: while (i < n) : (i += 1) {}\n"
       "while (c) i += 1;\n"
       "while (c) : (step()) {}\n"
       "for (@range(u16, 4)) |v, k| {\n"
       "  continue :outer;\n"
       "}\n"
       "loop: for (xs) |v| f(v);\n"
       "{\n"
       "  comptime var t: u16 = 0;\n"
       "}\n"
       "comptime {}\n"
       "break 3;")


def test_switch_statement_prong_bodies() -> None:
    sw = ast.Switch(I("phase"), [
        ast.SwitchProng([I(".idle"), I(".scores")], ast.Block([])),
        ast.SwitchProng([I(".softmax")], ast.Assign(ast.FieldAccess(I("s"), "n"), "+=", L(1))),
        ast.SwitchProng([L(3)], ast.If(I("c"), ast.Return())),
        ast.SwitchProng([L(4)], ast.Return()),
        ast.SwitchProng([], ast.ExprStmt(ast.Call(I("f"), [])), is_else=True),
    ])
    check_stmts([ast.ExprStmt(sw)],
                "switch (phase) {\n"
                "  .idle, .scores => {},\n"
                "  .softmax => s.n += 1,\n"
                "  3 => if (c) return;,\n"
                "  4 => return,\n"
                "  else => f(),\n"
                "}")


# ----------------------------------------------------------------------------------------------
# Declarations and whole files


def test_declarations() -> None:
    m = ast.Module([
        ast.VarDecl("param", "n", I("u16")),
        ast.VarDecl("param", "c", I("color"), ast.BuiltinCall("get_color", [L(3)])),
        ast.VarDecl("var", "buf", ast.ArrayType([L(4)], I("f32")), is_export=True,
                    align=L(16), linksection=ast.StringLit(".data"), linkname=ast.StringLit("b")),
        ast.VarDecl("var", "ext", I("i32"), is_extern=True),
        ast.VarDecl("const", "K", init=L(255, text="0xFF"), is_comptime=True),
        ast.ColorDecl("main_color"),
        ast.FnDecl("ext_fn", [ast.FnParam(None, I("i16")), ast.FnParam(None, I("f32"))],
                   I("void"), None, is_extern=True),
        ast.FnDecl("g", [ast.FnParam("T", I("type"), is_comptime=True),
                         ast.FnParam("x", ast.AnyType())], I("T"),
                   ast.Block([ast.Return(ast.BuiltinCall("as", [I("T"), I("x")]))]),
                   is_export=True, inline="inline", linkname=ast.StringLit("g_impl")),
        ast.FnDecl("t", [ast.FnParam("v", I("f16")), ast.FnParam("idx", I("u16"))], None,
                   ast.Block([]), is_task=True, inline="noinline"),
        ast.ComptimeBlock(ast.Block([ast.ExprStmt(ast.BuiltinCall("bind_data_task",
                                                                   [I("t"), I("id")]))])),
        ast.LayoutBlock(ast.Block([ast.ExprStmt(ast.BuiltinCall("set_rectangle",
                                                                 [L(1), L(1)]))])),
    ])
    assert print_module(m) == (
        "param n: u16;\n"
        "param c: color = @get_color(3);\n"
        "\n"
        'export var buf: [4]f32 align(16) linksection(".data") linkname("b");\n'
        "extern var ext: i32;\n"
        "comptime const K = 0xFF;\n"
        "\n"
        "color main_color;\n"
        "\n"
        "extern fn ext_fn(i16, f32) void;\n"
        "\n"
        'export inline fn g(comptime T: type, x: anytype) linkname("g_impl") T {\n'
        "  return @as(T, x);\n"
        "}\n"
        "\n"
        "noinline task t(v: f16, idx: u16) {}\n"
        "\n"
        "comptime {\n"
        "  @bind_data_task(t, id);\n"
        "}\n"
        "\n"
        "layout {\n"
        "  @set_rectangle(1, 1);\n"
        "}\n")
    assert parse_source(print_module(m)) == m


def test_empty_module() -> None:
    assert print_module(ast.Module([])) == ""


def test_helper_nodes() -> None:
    assert print_node(ast.FieldInit("a", L(1))) == ".a = 1"
    assert print_node(ast.ContainerField("a", I("i16"), L(0))) == "a: i16 = 0"
    assert print_node(ast.EnumMember("red")) == "red"
    assert print_node(ast.EnumMember("white", L(1))) == "white = 1"
    assert print_node(ast.SwitchProng([L(1), L(2)], I("x"))) == "1, 2 => x"
    assert print_node(ast.SwitchProng([], ast.Return(), is_else=True)) == "else => return"
    assert print_node(ast.FnParam("x", ast.AnyType(), is_comptime=True)) == "comptime x: anytype"
    assert print_node(ast.Return(L(1))) == "return 1;"
    assert print_node(ast.Module([ast.ColorDecl("c")])) == "color c;\n"


# ----------------------------------------------------------------------------------------------
# Literals


@pytest.mark.parametrize("e, expected", [
    (L(255), "255"),
    (L(255, text="0xFF"), "0xFF"),
    (L(1000, text="1_000"), "1_000"),
    (L(15, text="0o17"), "0o17"),
    (L(5, text="0b101"), "0b101"),
    (L(7, text="0x8"), "7"),                    # inconsistent spelling: canonical form
    (L(16, text="0X10"), "16"),                 # not a CSL spelling: canonical form
    (ast.FloatLit(1.0), "1.0"),
    (ast.FloatLit(1e-6), "1e-06"),
    (ast.FloatLit(1e16), "1e16"),
    (ast.FloatLit(0.1), "0.1"),
    (ast.FloatLit(5e-324), "5e-324"),
    (ast.FloatLit(12.0, text="0x1.8p3"), "0x1.8p3"),
    (ast.FloatLit(2500.0, text="2.5E+3"), "2.5E+3"),
    (ast.FloatLit(2.0, text="2"), "2.0"),       # an integer spelling would change the type
    (ast.CharLit(ord("a")), "'a'"),
    (ast.CharLit(ord("'")), "'\\''"),
    (ast.CharLit(ord("\\")), "'\\\\'"),
    (ast.CharLit(10), "'\\n'"),
    (ast.CharLit(0), "'\\x00'"),
    (ast.CharLit(0xE9), "'\u00e9'"),
    (ast.CharLit(0x2028), "'\\u{2028}'"),
    (ast.CharLit(65, text="'\\x41'"), "'\\x41'"),
    (ast.CharLit(66, text="'\\x41'"), "'B'"),
    (ast.StringLit('say "hi"\n\tand \\ go'), '"say \\"hi\\"\\n\\tand \\\\ go"'),
    (ast.StringLit("\x01\x7f'"), "\"\\x01\\x7f'\""),
    (ast.StringLit("caf\u00e9 \U0001F600"), '"caf\u00e9 \U0001F600"'),
    (ast.StringLit("\u0085"), '"\\u{85}"'),
    (ast.StringLit("one\ntwo ", multiline=True), "\n  \\\\one\n  \\\\two \n"),
    (ast.StringLit("bad\rline", multiline=True), '"bad\\rline"'),
    (ast.BoolLit(True), "true"),
    (I("undefined"), "undefined"),
    (I("packed"), "packed"),
    (I(".simd_32"), ".simd_32"),
])
def test_literals(e: ast.Expr, expected: str) -> None:
    check_expr(e, expected)


def test_huge_integer_without_spelling_prints_in_hex() -> None:
    # Python will not convert decimals of more than 4300 digits; hex has no such limit.
    value = 16 ** 3000 - 1
    text = print_node(L(value))
    assert text == "0x" + "f" * 3000
    assert parse_expr(text) == L(value)
    assert print_node(L(10 ** 40)) == "1" + "0" * 40
    with pytest.raises(ValueError):
        print_node(L(16 ** 5000))          # longer than any literal the lexer accepts


def test_multiline_string_in_declaration() -> None:
    m = ast.Module([ast.VarDecl("const", "s", init=ast.StringLit("a\n b", multiline=True))])
    assert print_module(m) == "const s =\n  \\\\a\n  \\\\ b\n;\n"
    assert parse_source(print_module(m)) == m


@pytest.mark.parametrize("bad", [
    I("if"), I("3x"), I("a-b"), ast.FieldAccess(I("a"), "while"),
    ast.FloatLit(float("nan")), ast.FloatLit(float("inf")),
    ast.CharLit(0x110000), B("**", I("a"), I("b")), U("+", I("a")),
    ast.Index(I("a"), []), ast.ArrayType([], I("T")),
    ast.TensorAccess(["i"], [], I("A")),
    ast.InitList(None, [ast.FieldInit("a", L(1))], [L(2)]),
])
def test_unprintable_trees_raise_value_error(bad: ast.Expr) -> None:
    with pytest.raises(ValueError):
        print_node(bad)


def test_every_node_class_has_a_printer() -> None:
    """Adding a node to ast.py without teaching the printer fails here."""
    helpers = {ast.FieldInit, ast.ContainerField, ast.EnumMember, ast.SwitchProng, ast.FnParam,
               ast.Module}
    abstract = {ast.Node, ast.Expr, ast.Stmt, ast.Decl}
    for name, cls in inspect.getmembers(ast, inspect.isclass):
        if not issubclass(cls, ast.Node) or cls in abstract or cls in helpers:
            continue
        prefix = "e_" if issubclass(cls, ast.Expr) else "s_"
        assert hasattr(_Printer, prefix + name), f"printer has no case for ast.{name}"
