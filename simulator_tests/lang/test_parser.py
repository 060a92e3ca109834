"""Tests for waferscale.lang.parser: one test per construct (exact ASTs), spans, diagnostics,
robustness against arbitrary input, and an opt-in run over an external CSL corpus."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waferscale.lang import ast
from waferscale.lang.ast import (
    AnyType, ArrayType, Assign, Binary, Block, BlockExpr, BoolLit, Break, BuiltinCall, Call,
    CharLit, ColorDecl, ComptimeBlock, ComptimeExpr, ContainerField, Continue, Deref, EnumMember,
    EnumType, ExprStmt, FieldAccess, FieldInit, FloatLit, FnDecl, FnParam, FnType, For, Ident,
    If, IfExpr, Index, InitList, IntLit, LayoutBlock, PointerType, Return, StringLit,
    StructType, Switch, SwitchProng, TensorAccess, Unary, VarDecl, While)
from waferscale.lang.errors import CslError, CslImportError, CslSyntaxError
from waferscale.lang.parser import MAX_DEPTH, parse_expr, parse_file, parse_source

# ----------------------------------------------------------------------------------------------
# Helpers


def I(name: str) -> Ident:  # noqa: E743 - short constructor for readability
    return Ident(name)


def N(value: int) -> IntLit:
    return IntLit(value)


def F(value: float) -> FloatLit:
    return FloatLit(value)


def S(value: str) -> StringLit:
    return StringLit(value)


def B(op: str, lhs: ast.Expr, rhs: ast.Expr) -> Binary:
    return Binary(op, lhs, rhs)


def call(name: str, *args: ast.Expr) -> BuiltinCall:
    return BuiltinCall(name, list(args))


def anon(**fields: ast.Expr) -> InitList:
    return InitList(None, [FieldInit(k, v) for k, v in fields.items()])


def decls(src: str) -> list[ast.Stmt]:
    return parse_source(src, "t.csl").decls


def one_decl(src: str) -> ast.Stmt:
    ds = decls(src)
    assert len(ds) == 1
    return ds[0]


def body(stmts: str) -> list[ast.Stmt]:
    """Statements of ``fn f() void { <stmts> }``."""
    fn = one_decl("fn f() void {\n" + stmts + "\n}")
    assert isinstance(fn, FnDecl) and fn.body is not None
    return fn.body.stmts


def stmt(src: str) -> ast.Stmt:
    stmts = body(src)
    assert len(stmts) == 1
    return stmts[0]


def syntax_error(src: str, path: str = "bad.csl") -> CslSyntaxError:
    with pytest.raises(CslSyntaxError) as info:
        parse_source(src, path)
    return info.value


def text_of(src: str, span) -> str:
    return src[span.start:span.end]


# ----------------------------------------------------------------------------------------------
# Declarations


def test_param_forms() -> None:
    assert decls("param memcpy_params: comptime_struct;\nparam untyped;\n"
                 "param c0 = @get_color(1);\nparam q: [2]u16 = [2]u16{2, 3};") == [
        VarDecl("param", "memcpy_params", I("comptime_struct")),
        VarDecl("param", "untyped"),
        VarDecl("param", "c0", None, call("get_color", N(1))),
        VarDecl("param", "q", ArrayType([N(2)], I("u16")),
                InitList(ArrayType([N(2)], I("u16")), items=[N(2), N(3)])),
    ]


def test_const_and_var_with_and_without_types() -> None:
    assert decls("const M: i16 = 4;\nvar x: [M]f32;\nvar y = @zeros([M]f32);") == [
        VarDecl("const", "M", I("i16"), N(4)),
        VarDecl("var", "x", ArrayType([I("M")], I("f32"))),
        VarDecl("var", "y", None, call("zeros", ArrayType([I("M")], I("f32")))),
    ]


def test_export_extern_and_attributes() -> None:
    src = ('export var flag: bool align(4) linksection(".data") linkname("flg") = false;\n'
           "extern const ext: [*]f32;")
    assert decls(src) == [
        VarDecl("var", "flag", I("bool"), BoolLit(False), is_export=True, align=N(4),
                linksection=S(".data"), linkname=S("flg")),
        VarDecl("const", "ext", PointerType(I("f32"), many=True), is_extern=True),
    ]


def test_comptime_var_in_function() -> None:
    assert stmt("comptime var n: i16 = 0;") == VarDecl("var", "n", I("i16"), N(0),
                                                       is_comptime=True)


def test_legacy_color_declaration() -> None:
    assert decls("color main_color;\nconst color_2: color = @get_color(2);") == [
        ColorDecl("main_color"),
        VarDecl("const", "color_2", I("color"), call("get_color", N(2))),
    ]


def test_fn_task_and_modifiers() -> None:
    src = ("fn add(a: f32, b: f32) f32 { return a + b; }\n"
           "task recv(v: f16, idx: u16) void {}\n"
           "task bare() {}\n"
           "inline fn gen(comptime T: type, x: anytype) T { return x; }\n"
           "noinline fn big() void {}\n"
           "export fn api() linkname(\"api_sym\") void {}\n"
           "extern fn proto(u16, *f32) void;\n")
    assert decls(src) == [
        FnDecl("add", [FnParam("a", I("f32")), FnParam("b", I("f32"))], I("f32"),
               Block([Return(B("+", I("a"), I("b")))])),
        FnDecl("recv", [FnParam("v", I("f16")), FnParam("idx", I("u16"))], I("void"),
               Block([]), is_task=True),
        FnDecl("bare", [], None, Block([]), is_task=True),
        FnDecl("gen", [FnParam("T", I("type"), is_comptime=True), FnParam("x", AnyType())],
               I("T"), Block([Return(I("x"))]), inline="inline"),
        FnDecl("big", [], I("void"), Block([]), inline="noinline"),
        FnDecl("api", [], I("void"), Block([]), is_export=True, linkname=S("api_sym")),
        FnDecl("proto", [FnParam(None, I("u16")), FnParam(None, PointerType(I("f32")))],
               I("void"), None, is_extern=True),
    ]


def test_return_type_never_takes_an_initializer() -> None:
    # 'T {}' after the parameter list is the return type and an empty body.
    assert one_decl("fn make() Pair {}") == FnDecl("make", [], I("Pair"), Block([]))
    assert one_decl("fn arr() [3]i16 { return x; }") == FnDecl(
        "arr", [], ArrayType([N(3)], I("i16")), Block([Return(I("x"))]))


def test_function_pointer_param_and_fn_types() -> None:
    fn = one_decl("fn apply(f: *const fn(i16, f32) f32, g: fn() void) void {}")
    assert isinstance(fn, FnDecl)
    assert fn.params == [
        FnParam("f", PointerType(FnType([I("i16"), I("f32")], I("f32")), const=True)),
        FnParam("g", FnType([], I("void"))),
    ]


def test_task_type_param():
    # The SDK's 25-pt-stencil: `param callback: task () void;`
    d = one_decl("param callback: task () void;")
    assert d.type == FnType([], I("void"), is_task=True)



def test_top_level_comptime_and_layout_blocks() -> None:
    src = ("comptime { @bind_local_task(t, @get_local_task_id(9)); };\n"
           "layout { @set_rectangle(2, 1); }")
    assert decls(src) == [
        ComptimeBlock(Block([ExprStmt(call("bind_local_task", I("t"),
                                           call("get_local_task_id", N(9))))])),
        LayoutBlock(Block([ExprStmt(call("set_rectangle", N(2), N(1)))])),
    ]


# ----------------------------------------------------------------------------------------------
# Types


def test_array_and_pointer_types() -> None:
    assert parse_expr("[4, 5]f16") == ArrayType([N(4), N(5)], I("f16"))
    assert parse_expr("[M*N]f32") == ArrayType([B("*", I("M"), I("N"))], I("f32"))
    assert parse_expr("[2][3]u16") == ArrayType([N(2)], ArrayType([N(3)], I("u16")))
    assert parse_expr("*[N]f32") == PointerType(ArrayType([I("N")], I("f32")))
    assert parse_expr("*const T") == PointerType(I("T"), const=True)
    assert parse_expr("[*]f32") == PointerType(I("f32"), many=True)
    assert parse_expr("[*]const u16") == PointerType(I("u16"), many=True, const=True)
    assert parse_expr("[timestamp.tsc_size_words]u16") == ArrayType(
        [FieldAccess(I("timestamp"), "tsc_size_words")], I("u16"))
    assert parse_expr("[4]mod.T") == ArrayType([N(4)], FieldAccess(I("mod"), "T"))


def test_struct_union_and_layouts() -> None:
    src = ("const S = struct { re: f32, im: f32 = 0.0, const zero = 0;"
           " fn norm(self: S) f32 { return self.re; } };")
    assert one_decl(src) == VarDecl("const", "S", None, StructType(
        [ContainerField("re", I("f32")), ContainerField("im", I("f32"), F(0.0))],
        [VarDecl("const", "zero", None, N(0)),
         FnDecl("norm", [FnParam("self", I("S"))], I("f32"),
                Block([Return(FieldAccess(I("self"), "re"))]))]))
    assert parse_expr("packed struct { a: u16, b: u16 }") == StructType(
        [ContainerField("a", I("u16")), ContainerField("b", I("u16"))], layout="packed")
    assert parse_expr("extern struct { a: u32 }") == StructType(
        [ContainerField("a", I("u32"))], layout="extern")
    assert parse_expr("union { i: i32, f: f32 }") == StructType(
        [ContainerField("i", I("i32")), ContainerField("f", I("f32"))], kind="union")
    assert parse_expr("struct {}") == StructType([])


def test_enums() -> None:
    assert parse_expr("enum(u16) { red, white = 1, blue, }") == EnumType(
        I("u16"), [EnumMember("red"), EnumMember("white", N(1)), EnumMember("blue")])
    assert parse_expr("enum { a }") == EnumType(None, [EnumMember("a")])


def test_packed_is_an_ordinary_identifier_elsewhere() -> None:
    assert parse_expr("packed + 1") == B("+", I("packed"), N(1))


# ----------------------------------------------------------------------------------------------
# Literals


def test_literal_nodes_keep_spelling() -> None:
    lit = parse_expr("0xFF")
    assert lit == N(255) and isinstance(lit, IntLit) and lit.text == "0xFF"
    assert parse_expr("1_000") == N(1000)
    assert parse_expr("0x1p3") == F(8.0)
    assert parse_expr("2.5e-3") == F(0.0025)
    assert parse_expr("'\\n'") == CharLit(10)
    assert parse_expr('"a\\tb"') == S("a\tb")
    assert parse_expr("true") == BoolLit(True) and parse_expr("false") == BoolLit(False)
    assert parse_expr("undefined") == I("undefined")


def test_multiline_string() -> None:
    lit = parse_expr("\\\\first\n  \\\\second")
    assert lit == S("first\nsecond")
    assert isinstance(lit, StringLit) and lit.multiline


def test_negative_literals_are_unary() -> None:
    assert parse_expr("-1") == Unary("-", N(1))


# ----------------------------------------------------------------------------------------------
# Initializers


def test_anonymous_struct_tuple_and_empty() -> None:
    assert parse_expr(".{ .a = 1, .b = x, }") == anon(a=N(1), b=I("x"))
    assert parse_expr(".{1, 2}") == InitList(None, items=[N(1), N(2)])
    assert parse_expr(".{}") == InitList(None)
    assert parse_expr(".{ .routes = .{ .rx = .{WEST}, .tx = .{RAMP, EAST} } }") == anon(
        routes=anon(rx=InitList(None, items=[I("WEST")]),
                    tx=InitList(None, items=[I("RAMP"), I("EAST")])))


def test_typed_array_literal() -> None:
    assert parse_expr("[3]i16 {1, 2, 3}") == InitList(ArrayType([N(3)], I("i16")),
                                                      items=[N(1), N(2), N(3)])
    assert parse_expr("[6]color{c0, c1}") == InitList(ArrayType([N(6)], I("color")),
                                                      items=[I("c0"), I("c1")])


def test_named_struct_literals() -> None:
    assert parse_expr("complex { .re = 1.0, .im = 0.0 }") == InitList(
        I("complex"), [FieldInit("re", F(1.0)), FieldInit("im", F(0.0))])
    assert parse_expr("mod.Pair{}") == InitList(FieldAccess(I("mod"), "Pair"))
    assert parse_expr("Vec(f32){ .x = 1 }") == InitList(
        Call(I("Vec"), [I("f32")]), [FieldInit("x", N(1))])


def test_brace_after_name_is_not_an_init_unless_field_or_empty() -> None:
    # A name followed by '{ x' is not an initializer (only '.name =' or '}' make one).
    with pytest.raises(CslSyntaxError, match="expected end of expression, found '{'"):
        parse_expr("T { x }")


def test_enum_literal_is_dotted_ident() -> None:
    assert parse_expr(".{ .simd_mode = .simd_32 }") == anon(simd_mode=I(".simd_32"))


def test_cannot_mix_fields_and_items() -> None:
    err = syntax_error("const x = .{ 1, .a = 2 };")
    assert "cannot mix field initializers" in err.message


# ----------------------------------------------------------------------------------------------
# Tensor access


def test_tensor_access_forms() -> None:
    assert parse_expr("|i|{N} -> A[2*i+1]") == TensorAccess(
        ["i"], [I("N")], Index(I("A"), [B("+", B("*", N(2), I("i")), N(1))]))
    assert parse_expr("|i,j|{2,2} -> A[i, j]") == TensorAccess(
        ["i", "j"], [N(2), N(2)], Index(I("A"), [I("i"), I("j")]))
    assert parse_expr("|i,j,k,l|{1,2,1,4} -> A[i, j, 1+k, l]") == TensorAccess(
        ["i", "j", "k", "l"], [N(1), N(2), N(1), N(4)],
        Index(I("A"), [I("i"), I("j"), B("+", N(1), I("k")), I("l")]))
    assert parse_expr("|i|{20} -> acc[0]") == TensorAccess(["i"], [N(20)],
                                                          Index(I("acc"), [N(0)]))


def test_tensor_access_inside_get_dsd() -> None:
    d = one_decl("var d = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{M} -> y[i] });")
    assert d == VarDecl("var", "d", None, call(
        "get_dsd", I("mem1d_dsd"),
        anon(tensor_access=TensorAccess(["i"], [I("M")], Index(I("y"), [I("i")])))))


def test_tensor_access_extent_count_must_match() -> None:
    with pytest.raises(CslSyntaxError, match="2 index variable.*1 extent"):
        parse_expr("|i, j|{4} -> A[i, j]")


# ----------------------------------------------------------------------------------------------
# Expressions and precedence


def test_arithmetic_precedence_and_left_associativity() -> None:
    assert parse_expr("a + b * c - d") == B("-", B("+", I("a"), B("*", I("b"), I("c"))), I("d"))
    assert parse_expr("a - b - c") == B("-", B("-", I("a"), I("b")), I("c"))
    assert parse_expr("a << 1 + b") == B("<<", I("a"), B("+", N(1), I("b")))


def test_bitwise_binds_tighter_than_comparison() -> None:
    assert parse_expr("a & b == c") == B("==", B("&", I("a"), I("b")), I("c"))
    assert parse_expr("x | y ^ z & w") == B("&", B("^", B("|", I("x"), I("y")), I("z")), I("w"))
    assert parse_expr("a + b & c") == B("&", B("+", I("a"), I("b")), I("c"))


def test_and_binds_tighter_than_or() -> None:
    assert parse_expr("a or b and c < d") == B(
        "or", I("a"), B("and", I("b"), B("<", I("c"), I("d"))))


def test_parentheses_are_not_nodes() -> None:
    assert parse_expr("(a + b) * c") == B("*", B("+", I("a"), I("b")), I("c"))
    assert parse_expr("(a < b) == c") == B("==", B("<", I("a"), I("b")), I("c"))


@pytest.mark.parametrize("src", ["a < b < c", "a == b != c", "a < b | c < d",
                                 "x >= 1 <= 2"])
def test_comparisons_do_not_chain(src: str) -> None:
    with pytest.raises(CslSyntaxError, match="comparison operators cannot be chained"):
        parse_expr(src)


def test_prefix_operators() -> None:
    assert parse_expr("!-~x") == Unary("!", Unary("-", Unary("~", I("x"))))
    assert parse_expr("-a * b") == B("*", Unary("-", I("a")), I("b"))
    assert parse_expr("&A[0].x") == Unary("&", FieldAccess(Index(I("A"), [N(0)]), "x"))


def test_postfix_chains() -> None:
    assert parse_expr("ptr.*[k]") == Index(Deref(I("ptr")), [I("k")])
    assert parse_expr("(q.*)[i]") == Index(Deref(I("q")), [I("i")])
    assert parse_expr("a[i, j]") == Index(I("a"), [I("i"), I("j")])
    assert parse_expr("m.f(x)(y).z") == FieldAccess(
        Call(Call(FieldAccess(I("m"), "f"), [I("x")]), [I("y")]), "z")
    assert parse_expr("@get_rectangle().width") == FieldAccess(call("get_rectangle"), "width")


def test_builtin_arguments_may_be_types_and_structs() -> None:
    assert parse_expr('@export_name("f", fn(f32)void)') == call(
        "export_name", S("f"), FnType([I("f32")], I("void")))
    assert parse_expr("@zeros([4,5]f16)") == call("zeros", ArrayType([N(4), N(5)], I("f16")))
    assert parse_expr("@as(f32, x,)") == call("as", I("f32"), I("x"))
    assert parse_expr("@is_comptime()") == call("is_comptime")


def test_if_expressions() -> None:
    assert parse_expr("if (c) a else b + 1") == IfExpr(I("c"), I("a"), B("+", I("b"), N(1)))
    assert parse_expr('if (@is_arch("wse2")) X else if (@is_arch("wse3")) Y') == IfExpr(
        call("is_arch", S("wse2")), I("X"), IfExpr(call("is_arch", S("wse3")), I("Y")))
    assert parse_expr("if (c) .{ .a = 1 } else .{}") == IfExpr(I("c"), anon(a=N(1)),
                                                                InitList(None))


def test_switch_expression() -> None:
    assert parse_expr("switch (m) { 0, 1 => 10, E.red => 20, else => blk: { break :blk 3; } }"
                      ) == Switch(I("m"), [
                          SwitchProng([N(0), N(1)], N(10)),
                          SwitchProng([FieldAccess(I("E"), "red")], N(20)),
                          SwitchProng([], BlockExpr(Block([Break("blk", N(3))], "blk")),
                                      is_else=True)])
    # An unlabeled block body in an expression switch is an (unlabeled) BlockExpr.
    assert parse_expr("switch (m) { else => {} }") == Switch(
        I("m"), [SwitchProng([], BlockExpr(Block([])), is_else=True)])


def test_labeled_block_expression() -> None:
    assert parse_expr("blk: { const t = 2; break :blk t * t; }") == BlockExpr(Block(
        [VarDecl("const", "t", None, N(2)), Break("blk", B("*", I("t"), I("t")))], "blk"))


def test_comptime_expression() -> None:
    assert parse_expr("comptime a or b") == ComptimeExpr(B("or", I("a"), I("b")))
    assert stmt("if (comptime n == 0) { x = 1; }") == If(
        ComptimeExpr(B("==", I("n"), N(0))), Block([Assign(I("x"), "=", N(1))]))


def test_parse_expr_requires_whole_input() -> None:
    with pytest.raises(CslSyntaxError, match="expected end of expression, found identifier"):
        parse_expr("a b")


# ----------------------------------------------------------------------------------------------
# Statements


def test_assignments_and_compound_assignments() -> None:
    ops = ["=", "+=", "-=", "*=", "/=", "%=", "<<=", ">>=", "&=", "|=", "^="]
    stmts = body("\n".join(f"x {op} 1;" for op in ops))
    assert stmts == [Assign(I("x"), op, N(1)) for op in ops]
    assert stmt("p.* = v;") == Assign(Deref(I("p")), "=", I("v"))
    assert stmt('@field(s, "f") = 1;') == Assign(call("field", I("s"), S("f")), "=", N(1))


def test_if_else_statements() -> None:
    assert stmt("if (a) { x = 1; } else if (b) { x = 2; } else { x = 3; }") == If(
        I("a"), Block([Assign(I("x"), "=", N(1))]),
        If(I("b"), Block([Assign(I("x"), "=", N(2))]), Block([Assign(I("x"), "=", N(3))])))
    assert stmt('if (@is_arch("wse3")) @initialize_queue(q);') == If(
        call("is_arch", S("wse3")), ExprStmt(call("initialize_queue", I("q"))))
    assert stmt("if (c) x = 1 else y = 2;") == If(I("c"), Assign(I("x"), "=", N(1)),
                                                   Assign(I("y"), "=", N(2)))
    assert stmt("if (c) return;") == If(I("c"), Return())


def test_long_else_if_chain_needs_no_recursion_depth() -> None:
    n = 3 * MAX_DEPTH
    src = "".join(f"if (x == {i}) {{ y = {i}; }} else " for i in range(n)) + "{ y = 0; }"
    result = stmt(src)
    depth = 0
    while isinstance(result, If):
        depth += 1
        result = result.else_
    assert depth == n and result == Block([Assign(I("y"), "=", N(0))])


def test_dangling_else_binds_to_inner_if() -> None:
    assert stmt("if (a) if (b) x = 1 else y = 2;") == If(
        I("a"), If(I("b"), Assign(I("x"), "=", N(1)), Assign(I("y"), "=", N(2))))


def test_while_with_continue_expression() -> None:
    assert stmt("while (i < M) : (i += 1) { b[i] = 2.0; }") == While(
        B("<", I("i"), I("M")), Block([Assign(Index(I("b"), [I("i")]), "=", F(2.0))]),
        Assign(I("i"), "+=", N(1)))
    assert stmt("while (true) : (step()) x += 1;") == While(
        BoolLit(True), Assign(I("x"), "+=", N(1)), ExprStmt(Call(I("step"), [])))


def test_for_loops() -> None:
    assert stmt("for (@range(i16, N)) |j| { x[j] = 1.0; }") == For(
        call("range", I("i16"), I("N")), ["j"],
        Block([Assign(Index(I("x"), [I("j")]), "=", F(1.0))]))
    assert stmt("for (arr) |elem, idx| sum += elem;") == For(
        I("arr"), ["elem", "idx"], Assign(I("sum"), "+=", I("elem")))


def test_labeled_loops_break_and_continue() -> None:
    assert stmt("outer: for (a) |x| { inner: while (c) { break :outer; continue :inner; } }"
                ) == For(I("a"), ["x"], Block([While(
                    I("c"), Block([Break("outer"), Continue("inner")]), label="inner")]),
                    label="outer")
    assert body("break; continue; return 1 + 2;") == [Break(), Continue(),
                                                      Return(B("+", N(1), N(2)))]


def test_labeled_block_statement_is_expr_stmt() -> None:
    assert stmt("blk: { x = 1; }") == ExprStmt(BlockExpr(Block([Assign(I("x"), "=", N(1))],
                                                               "blk")))
    assert stmt("{ x = 1; }") == Block([Assign(I("x"), "=", N(1))])


def test_switch_statement() -> None:
    assert stmt("switch (mode) { 0, 1 => x = 2, E.red => { y = 1; }, 7 => return, "
                "else => {} }") == ExprStmt(Switch(I("mode"), [
                    SwitchProng([N(0), N(1)], Assign(I("x"), "=", N(2))),
                    SwitchProng([FieldAccess(I("E"), "red")],
                                Block([Assign(I("y"), "=", N(1))])),
                    SwitchProng([N(7)], Return()),
                    SwitchProng([], Block([]), is_else=True)]))


def test_switch_prong_comma_optional_after_block() -> None:
    assert stmt("switch (k) { 0 => {} else => {} }") == ExprStmt(Switch(I("k"), [
        SwitchProng([N(0)], Block([])), SwitchProng([], Block([]), is_else=True)]))


def test_comptime_block_in_function_with_semicolon() -> None:
    assert body("comptime { @comptime_assert(true); };\nx = 1;") == [
        ComptimeBlock(Block([ExprStmt(call("comptime_assert", BoolLit(True)))])),
        Assign(I("x"), "=", N(1))]


def test_local_declarations() -> None:
    assert body("const a = 1;\nvar b: i16 = a;") == [
        VarDecl("const", "a", None, N(1)), VarDecl("var", "b", I("i16"), I("a"))]


# ----------------------------------------------------------------------------------------------
# Spans


def test_spans_cover_source_text() -> None:
    src = "const y = (a + b) * c;\nfn f() void { p.*[k] = -x; }\n"
    mod = parse_source(src, "span.csl")
    decl, fn = mod.decls
    assert text_of(src, decl.span) == "const y = (a + b) * c;"
    assert isinstance(decl, VarDecl) and decl.init is not None
    assert text_of(src, decl.init.span) == "(a + b) * c"
    assert isinstance(decl.init, Binary)
    assert text_of(src, decl.init.lhs.span) == "a + b"  # parentheses excluded
    assert isinstance(fn, FnDecl) and fn.body is not None
    assign = fn.body.stmts[0]
    assert isinstance(assign, Assign)
    assert text_of(src, assign.span) == "p.*[k] = -x"
    assert text_of(src, assign.target.span) == "p.*[k]"
    assert text_of(src, assign.value.span) == "-x"
    assert assign.span.line_col == (2, 15)
    assert str(assign.span) == "span.csl:2:15"
    assert text_of(src, mod.span) == src


def test_every_node_has_a_real_span() -> None:
    mod = parse_source(_SAMPLE, "sample.csl")
    for node in mod.walk():
        assert node.span.file is not None, type(node).__name__
        assert 0 <= node.span.start <= node.span.end <= len(_SAMPLE)


def test_spans_of_literals_and_statements() -> None:
    src = "fn f() void {\n  if (x) { return 0x10; }\n  while (c) : (i += 1) {}\n}"
    fn = one_decl(src)
    assert isinstance(fn, FnDecl) and fn.body is not None
    if_stmt, loop = fn.body.stmts
    assert text_of(src, if_stmt.span) == "if (x) { return 0x10; }"
    assert text_of(src, loop.span) == "while (c) : (i += 1) {}"
    assert isinstance(if_stmt, If) and isinstance(if_stmt.then, Block)
    ret = if_stmt.then.stmts[0]
    assert isinstance(ret, Return) and ret.value is not None
    assert text_of(src, ret.value.span) == "0x10"


# ----------------------------------------------------------------------------------------------
# Diagnostics


def test_missing_semicolon_points_after_previous_token() -> None:
    err = syntax_error("const a = 1\nvar b = 2;\n", "kern/pe.csl")
    assert err.message == "expected ';' after declaration, found 'var'"
    assert err.render() == ("kern/pe.csl:1:12: error: expected ';' after declaration, "
                            "found 'var'\n"
                            "  const a = 1\n"
                            "             ^")


def test_unexpected_token_on_same_line_points_at_token() -> None:
    err = syntax_error("fn f() void { x = 1 y = 2; }")
    assert err.message == "expected ';' after assignment, found identifier 'y'"
    assert err.render().splitlines() == [
        "bad.csl:1:21: error: expected ';' after assignment, found identifier 'y'",
        "  fn f() void { x = 1 y = 2; }",
        "                      ^"]


def test_unclosed_block_reports_end_of_file_with_note() -> None:
    err = syntax_error("fn f() void {\n  x = 1;\n")
    assert err.message == "expected '}' to close the block, found end of file"
    assert err.notes and err.notes[0][0] == "block opened here"
    assert err.notes[0][1].line_col == (1, 13)
    assert "bad.csl:1:13: note: block opened here" in err.render()


@pytest.mark.parametrize("src, message, line_col", [
    ("fn f() { }", "expected return type of function 'f', found '{'", (1, 8)),
    ("const = 3;", "expected identifier after 'const', found '='", (1, 7)),
    ("var if = 3;", "expected identifier after 'var', found keyword 'if'", (1, 5)),
    ("x = 1;", "expected a declaration, found identifier 'x'", (1, 1)),
    ("fn f() void { asm volatile (\"nop\"); }", "inline asm is not supported", (1, 15)),
    ("fn f() void { if (a) x = 1; else y = 2; }",
     "'else' cannot follow ';': write 'if (c) a else b;' or use blocks", (1, 27)),
    ("fn f() void { fn g() void {} }",
     "'fn' declarations are only allowed at file scope or in a struct", (1, 15)),
    ("comptime { param p: i16; }", "'param' declarations are only allowed at file scope",
     (1, 12)),
    ("fn f(x) void {}", "parameter of function 'f' needs a name (only prototypes without a "
     "body may list bare types)", (1, 6)),
    ("const x = .{ .a = 1 2 };", "expected ',' or '}' in initializer, found integer "
     "literal '2'", (1, 21)),
    ("const t = |i|{4} A[i];", "expected '->' after tensor access extents, found "
     "identifier 'A'", (1, 18)),
    ("fn f() void { for (a) |x, y, z| {} }",
     "a for loop takes one or two captures (|elem| or |elem, index|)", (1, 30)),
    ("const x = a +;", "expected an expression, found ';'", (1, 14)),
    ("const s = { 1 };", "expected an expression, found '{' (an anonymous initializer is "
     "written '.{ ... }')", (1, 11)),
    ("const x = @foo;", "expected '(' after builtin '@foo', found ';'", (1, 15)),
    ("var x: []f32;", "slice types '[]T' are not supported; use '[N]T' or '[*]T'", (1, 9)),
    ("const y = x.;", "expected field name after '.', found ';'", (1, 13)),
    (";", "unexpected ';' at top level", (1, 1)),
    ("fn f() void { if (c) {} ; }", "unexpected ';' (empty statements are not allowed)",
     (1, 25)),
    ("fn f() void { inline for (a) |x| {} }", "'inline for' loops are not supported", (1, 15)),
    ("pub fn f() void {}", "'pub' is not a CSL keyword; remove it", (1, 1)),
    ("fn f() void { x = 1 }", "expected ';' after assignment, found '}'", (1, 21)),
    ("const u = union(enum) { a: u16 };", "tagged unions 'union(...)' are not supported",
     (1, 16)),
    ("fn f() void { for (a) |*p| {} }", "pointer captures '|*x|' are not supported", (1, 24)),
])
def test_error_messages_and_positions(src: str, message: str,
                                      line_col: tuple[int, int]) -> None:
    err = syntax_error(src)
    assert err.message == message
    assert err.span is not None and err.span.line_col == line_col
    line, col = line_col
    assert err.render().startswith(f"bad.csl:{line}:{col}: error: {message}\n")


def test_caret_under_tab_indented_source() -> None:
    err = syntax_error("fn f() void {\n\tx = = 1;\n}")
    lines = err.render().splitlines()
    assert lines[0] == "bad.csl:2:6: error: expected an expression, found '='"
    assert lines[2] == "  \t    ^"


def test_lexer_errors_surface_through_parse_source() -> None:
    err = syntax_error('const s = "oops;\n')
    assert err.message == "unterminated string literal"
    assert err.render().startswith("bad.csl:1:11: error:")


def test_deep_nesting_is_a_diagnostic_not_a_crash() -> None:
    for src in ("(" * 5000 + "x" + ")" * 5000, "a + (" * 5000 + "1" + ")" * 5000,
                "[" * 5000 + "1]" * 5000 + "f32", ".{" * 5000 + "}" * 5000):
        with pytest.raises(CslSyntaxError, match="nested too deeply"):
            parse_expr(src)
    with pytest.raises(CslSyntaxError, match="nested too deeply"):
        parse_source("fn f() void {" + "{" * 5000 + "}" * 5000 + "}")
    # Long flat prefix chains are iterative and fine.
    assert parse_expr("-" * 5000 + "x") is not None


def test_nesting_well_within_the_limit_parses() -> None:
    depth = MAX_DEPTH // 2 - 2
    assert parse_expr("(" * depth + "1" + ")" * depth) == N(1)


# ----------------------------------------------------------------------------------------------
# Files


def test_parse_file_reads_and_records_path(tmp_path: Path) -> None:
    path = tmp_path / "pe.csl"
    path.write_text("param n: i16;\n")
    mod = parse_file(path)
    assert mod.decls == [VarDecl("param", "n", I("i16"))]
    assert mod.path == str(path)


def test_parse_file_missing_file_is_import_error(tmp_path: Path) -> None:
    with pytest.raises(CslImportError, match="cannot read CSL file"):
        parse_file(tmp_path / "nope.csl")
    with pytest.raises(CslImportError):
        parse_file(tmp_path)  # a directory


def test_parse_file_errors_use_the_given_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.csl"
    path.write_text("const x = ;\n")
    with pytest.raises(CslSyntaxError) as info:
        parse_file(path)
    assert info.value.render().startswith(f"{path}:1:11: error: expected an expression")


# ----------------------------------------------------------------------------------------------
# A realistic program (our own, in the style of the SDK tutorials)

_SAMPLE = r"""
// Streaming GEMV on one PE column (sample written for the tests).
param memcpy_params: comptime_struct;
param M: i16;
param N: i16;
param recv_color: color;

const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
const layout_mod = @import_module("<layout>");

const recv_iq: input_queue = @get_input_queue(2);
const out_oq: output_queue = @get_output_queue(3);
const done_id: local_task_id = @get_local_task_id(9);
const recv_id: data_task_id =
  if (@is_arch("wse2")) @get_data_task_id(recv_color)
  else if (@is_arch("wse3")) @get_data_task_id(recv_iq);

var A: [M * N]f32;
var y = @zeros([M]f32);
var A_ptr: [*]f32 = &A;
var A_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{M} -> A[i] });
const y_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{M} -> y[i] });
var seen: i16 = 0;

fn is_last_row() bool {
  return layout_mod.get_y_coord() == @as(u16, M) - 1;
}

task recv(x: f32) void {
  @fmacs(y_dsd, y_dsd, A_dsd, x);
  A_dsd = @increment_dsd_offset(A_dsd, M, f32);
  seen += 1;
  if (seen == N) @activate(done_id);
}

task done() void {
  const out = @get_dsd(fabout_dsd, .{ .extent = M, .output_queue = out_oq });
  switch (@as(u16, seen) & 0x3) {
    0 => @fmovs(out, y_dsd, .{ .async = true }),
    else => { sys_mod.unblock_cmd_stream(); },
  }
}

comptime {
  @bind_data_task(recv, recv_id);
  @bind_local_task(done, done_id);
  if (@is_arch("wse3")) {
    @initialize_queue(recv_iq, .{ .color = recv_color });
  }
  @export_symbol(A_ptr, "A");
}
"""


def test_sample_program_parses_to_expected_shape() -> None:
    mod = parse_source(_SAMPLE, "sample.csl")
    kinds = [type(d).__name__ for d in mod.decls]
    assert kinds == ["VarDecl"] * 16 + ["FnDecl"] * 3 + ["ComptimeBlock"]
    recv = mod.decls[17]
    assert isinstance(recv, FnDecl) and recv.is_task and recv.name == "recv"
    assert recv.body is not None and recv.body.stmts[-1] == If(
        B("==", I("seen"), I("N")), ExprStmt(call("activate", I("done_id"))))


# ----------------------------------------------------------------------------------------------
# Robustness


_FRAGMENTS = ["fn ", "task ", "const ", "var ", "param ", "if ", "else ", "while ", "for ",
              "switch ", "comptime ", "return ", "break ", ":", ";", ",", ".", ".{", ".*",
              "(", ")", "[", "]", "{", "}", "|i|", "->", "=>", "=", "+=", "<", "==", "and ",
              "x", "y1", "@f", "0x1F", "1.5", "'a'", '"s"', "\\\\ml\n", "// c\n", "\n", " "]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=40))
def test_token_soup_only_raises_csl_errors(parts: list[str]) -> None:
    src = "".join(parts)
    for parse in (parse_source, parse_expr):
        try:
            parse(src)
        except CslError as err:
            assert err.span is not None and err.render()


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=len(_SAMPLE)))
def test_truncated_program_only_raises_csl_errors(cut: int) -> None:
    try:
        parse_source(_SAMPLE[:cut])
    except CslError as err:
        assert err.span is not None and err.render()


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=120))
def test_random_bytes_only_raise_csl_errors(data: bytes) -> None:
    try:
        parse_source(data.decode("utf-8", errors="replace"))
    except CslError:
        pass


# ----------------------------------------------------------------------------------------------
# Opt-in: every *.csl under $WAFERSCALE_EXTERNAL_CSL must parse.


def _external_files() -> list[Path]:
    root = os.environ.get("WAFERSCALE_EXTERNAL_CSL")
    if not root:
        return []
    return sorted(Path(root).rglob("*.csl"))


@pytest.mark.external
@pytest.mark.skipif(not os.environ.get("WAFERSCALE_EXTERNAL_CSL"),
                    reason="set WAFERSCALE_EXTERNAL_CSL to a directory of .csl files")
def test_external_corpus_parses() -> None:
    files = _external_files()
    assert files, "WAFERSCALE_EXTERNAL_CSL contains no .csl files"
    failures = []
    for path in files:
        try:
            parse_file(path)
        except CslError as err:
            failures.append(err.render())
    assert not failures, f"{len(failures)} of {len(files)} files failed:\n\n" + "\n\n".join(
        failures)


def test_bench_parse_check_reports_each_failing_file(tmp_path: Path, capsys) -> None:
    from waferscale.lang import bench_parse
    (tmp_path / "sub").mkdir()
    (tmp_path / "good.csl").write_text("param callback: task () void;\nfn f() void {}\n")
    (tmp_path / "sub" / "bad.csl").write_text("fn f() void {\n")
    (tmp_path / "note.txt").write_text("not csl")
    n, failures, _ = bench_parse.check([str(tmp_path)])
    assert n == 2 and len(failures) == 1 and "bad.csl:2:1: error:" in failures[0]
    assert bench_parse.main(["--check", str(tmp_path)]) == 1
    assert "1 of 2 files parse" in capsys.readouterr().out
    (tmp_path / "sub" / "bad.csl").unlink()
    assert bench_parse.main(["--check", str(tmp_path)]) == 0
