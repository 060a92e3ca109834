"""Hypothesis strategies for CSL syntax trees, plus a seed corpus of realistic CSL sources.

The strategies build random, syntactically valid trees of every node kind in
:mod:`waferscale.lang.ast` -- but only trees *the parser can produce*, so that
``parse(print(tree)) == tree`` is a fair property. The canonical-form rules relied on (they
mirror ``waferscale.lang.parser``):

Expressions
- ``IntLit``/``FloatLit`` values are non-negative (``-1`` is ``Unary('-', IntLit(1))``); floats
  are finite. ``text`` is ``None`` or a spelling the lexer reads back to ``value`` (hex, octal,
  binary, ``_`` separators, exponent forms, hex floats, char escapes).
- Identifiers match ``[A-Za-z_][A-Za-z0-9_]*`` and are not lexer keywords; an enum literal
  ``.name`` is ``Ident(".name")``.
- A typed ``InitList`` has a type the parser accepts before ``{`` (a name, field access, call,
  builtin call, array type or struct type); positional ``items`` only after an array type.
- Parentheses are not nodes, so any operand shape is allowed; the printer adds them.
- ``AnyType`` appears only as a parameter type; ``FnType`` parameters are types.
- An expression-position ``Switch`` has expression prong bodies (a braced body is an unlabeled
  ``BlockExpr``); a labeled ``BlockExpr`` has a label.
- ``TensorAccess`` has as many extents as index variables (at least one).

Statements
- A statement-position ``switch`` is ``ExprStmt(Switch)`` whose prong bodies are statements
  (never a declaration); an ``ExprStmt`` never wraps an expression-form ``Switch`` or an
  unlabeled ``BlockExpr``; a labeled block statement is ``ExprStmt(BlockExpr(...))``, so a
  plain ``Block`` statement has no label.
- Bodies of ``if``/``else``/``while``/``for`` are statements but not declarations.
- No dangling else: an ``If`` with ``else`` never has a then-branch that would take that
  ``else`` -- an else-less ``if``, a ``while``/``for`` (``while .. else`` is Zig's loop-else,
  which the parser rejects), or an ``else if`` chain ending in one; such a branch is wrapped
  in a ``Block``, as the source would have to be.
- A ``while`` continue-expression is an ``Assign`` or an ``ExprStmt``.
- ``for`` has one or two captures.
- Local declarations are ``const``/``var`` (optionally ``comptime``), never ``export``/
  ``extern``/``param``; ``param`` is file-scope only; ``export`` and ``extern`` exclude each
  other.
- Functions: a nameless (bare-type) parameter only in a prototype without a body; a missing
  return type only for a task.
- Struct members are fields then declarations (const/var/fn/comptime block); enums hold
  members then const/var/fn declarations.

Depth is bounded (``MAX_DEPTH``) so that printed text stays far below the parser's nesting
limit and examples are quick to generate.

``SEED_SOURCES`` maps a name to the text of a realistic CSL file (layout and PE programs in the
style of the official GEMV tutorials and collectives examples, and kernels of our own), and
``mutated_sources()`` draws one of them after random edits (``FUZZ_TOKENS``/``FUZZ_CHARS`` are
the material inserted). They are the fuzzing corpus of the parser tests and are meant to be
reused when fuzzing the elaborator.
"""

from __future__ import annotations

import functools
import textwrap

from hypothesis import strategies as st
from waferscale.lang import ast
from waferscale.lang.lexer import KEYWORDS
from waferscale.lang.printer import takes_else

MAX_DEPTH = 3
"""Nesting budget shared by expressions and statements."""

# ----------------------------------------------------------------------------------------------
# Names

NAME_POOL = (
    "x", "y", "i", "j", "k", "n", "A", "B", "acc", "sum", "_", "T", "Elem",
    "f32", "f16", "i16", "u16", "u32", "bool", "void", "type", "color", "comptime_int",
    "mem1d_dsd", "data_task_id", "RAMP", "EAST", "WEST", "NORTH", "SOUTH", "undefined",
    "unreachable", "memcpy", "sys_mod", "math", "packed",
    # Keyword prefixes/suffixes: the lexer must not split them.
    "iff", "orr", "and_", "format", "constant", "variable", "fn_", "if0", "truex", "switches",
    "forx", "enumerate", "structure", "unionize", "task2", "returned", "breaker", "elsewhere",
)


def _valid_name(s: str) -> bool:
    return s not in KEYWORDS


names: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(NAME_POOL),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,7}", fullmatch=True).filter(_valid_name),
)
"""Identifiers (never keywords)."""

labels = st.sampled_from(("blk", "outer", "inner", "loop", "done", "b2"))
builtin_names = st.sampled_from((
    "as", "get_dsd", "fmacs", "fadds", "zeros", "range", "get_color", "import_module",
    "set_tile_code", "comptime_assert", "ptrcast", "bitcast", "fp16", "activate", "map",
    "increment_dsd_offset", "export_symbol", "is_arch", "if", "struct"))

# ----------------------------------------------------------------------------------------------
# Literals


@st.composite
def int_lits(draw: st.DrawFn) -> ast.IntLit:
    value = draw(st.one_of(st.integers(0, 20), st.integers(0, 2**64), st.integers(0, 10**40)))
    style = draw(st.sampled_from(("none", "dec", "hex", "HEX", "oct", "bin", "under")))
    text: str | None
    if style == "none":
        text = None
    elif style == "dec":
        text = str(value)
    elif style == "hex":
        text = f"0x{value:x}"
    elif style == "HEX":
        text = f"0x{value:X}"
    elif style == "oct":
        text = f"0o{value:o}"
    elif style == "bin":
        text = f"0b{value:b}"
    else:
        text = f"{value:_}"
    return ast.IntLit(value, text)


@st.composite
def float_lits(draw: st.DrawFn) -> ast.FloatLit:
    value = draw(st.one_of(
        st.sampled_from((0.0, 0.5, 1.0, 1e-6, 2.5e3, 1e300, 5e-324, 0.1, 3.0)),
        st.floats(min_value=0.0, allow_nan=False, allow_infinity=False)))
    value = abs(value)                       # never -0.0
    style = draw(st.sampled_from(("none", "repr", "hex", "exp")))
    text: str | None
    if style == "none":
        text = None
    elif style == "repr":
        text = repr(value)
    elif style == "hex":
        text = value.hex()                   # 0x1.8000000000000p+1
    else:
        text = f"{value:.17E}"               # 1.00000000000000000E+00, re-reads exactly
    return ast.FloatLit(value, text)


_CHAR_CODES = st.one_of(
    st.integers(0x20, 0x7E), st.sampled_from((0, 9, 10, 13, 0x7F, 0xE9, 0x2028, 0x1F600)),
    st.integers(0, 0x10FFFF).filter(lambda c: not 0xD800 <= c <= 0xDFFF))


@st.composite
def char_lits(draw: st.DrawFn) -> ast.CharLit:
    code = draw(_CHAR_CODES)
    options: list[str | None] = [None, f"'\\u{{{code:x}}}'"]
    if code <= 0xFF:
        options.append(f"'\\x{code:02x}'")
    if code <= 0xFFFF:
        options.append(f"'\\u{code:04x}'")
    if 0x20 <= code < 0x7F and chr(code) not in "'\\":
        options.append(f"'{chr(code)}'")
    return ast.CharLit(code, draw(st.sampled_from(options)))


string_lits = st.builds(
    ast.StringLit,
    st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
    | st.sampled_from(("", "<memcpy/memcpy>", "pe_program.csl", "a\nb", "tab\there", "\\")),
    multiline=st.booleans())

literals = st.one_of(
    int_lits(), float_lits(), char_lits(), string_lits, st.builds(ast.BoolLit, st.booleans()))

idents = st.one_of(
    st.builds(ast.Ident, names),
    st.builds(ast.Ident, names.map(lambda n: "." + n)))      # enum literal


def leaves() -> st.SearchStrategy[ast.Expr]:
    return st.one_of(idents, idents, literals)

# ----------------------------------------------------------------------------------------------
# Expressions

BINARY_OPS = ("or", "and", "==", "!=", "<", ">", "<=", ">=", "&", "^", "|", "<<", ">>",
              "+", "-", "*", "/", "%")
UNARY_OPS = ("-", "!", "~", "&")
ASSIGN_OPS = ("=", "+=", "-=", "*=", "/=", "%=", "<<=", ">>=", "&=", "|=", "^=")


def _small_list(s: st.SearchStrategy, lo: int = 0, hi: int = 3) -> st.SearchStrategy[list]:
    return st.lists(s, min_size=lo, max_size=hi)


@functools.cache
def exprs(depth: int = MAX_DEPTH) -> st.SearchStrategy[ast.Expr]:
    """Any expression the parser can produce, nested at most ``depth`` levels."""
    if depth <= 0:
        return leaves()
    sub = exprs(depth - 1)
    compound = st.one_of(
        st.builds(ast.Unary, st.sampled_from(UNARY_OPS), sub),
        st.builds(ast.Binary, st.sampled_from(BINARY_OPS), sub, sub),
        st.builds(ast.Binary, st.sampled_from(BINARY_OPS), sub, sub),
        st.builds(ast.Call, sub, _small_list(sub)),
        st.builds(ast.BuiltinCall, builtin_names, _small_list(sub)),
        st.builds(ast.Index, sub, _small_list(sub, 1, 2)),
        st.builds(ast.FieldAccess, sub, names),
        st.builds(ast.Deref, sub),
        init_lists(depth),
        type_exprs(depth),
        st.builds(ast.IfExpr, sub, sub, st.none() | sub),
        expr_switches(depth),
        st.builds(ast.BlockExpr, labeled_blocks(depth - 1)),
        tensor_accesses(depth),
        st.builds(ast.ComptimeExpr, sub),
    )
    return st.one_of(leaves(), compound)


@functools.cache
def type_exprs(depth: int = MAX_DEPTH) -> st.SearchStrategy[ast.Expr]:
    """Expressions that name types (plus, rarely, any expression: the printer parenthesizes)."""
    base = st.one_of(
        st.builds(ast.Ident, st.sampled_from(("f32", "f16", "i16", "u16", "u32", "bool", "void",
                                              "color", "type", "comptime_struct", "T"))),
        st.builds(ast.BuiltinCall, st.just("fp16"), st.just([])))
    if depth <= 0:
        return base
    sub_t = type_exprs(depth - 1)
    sub_e = exprs(depth - 1)
    return st.one_of(
        base, base,
        st.builds(ast.FieldAccess, st.builds(ast.Ident, names), names),
        st.builds(ast.ArrayType, _small_list(sub_e, 1, 2), sub_t),
        st.builds(ast.PointerType, sub_t, many=st.booleans(), const=st.booleans()),
        st.builds(ast.FnType, _small_list(sub_t), sub_t),
        struct_types(depth),
        enum_types(depth),
        st.builds(ast.Call, st.builds(ast.Ident, names), _small_list(sub_e, 0, 2)),
        sub_e,
    )


@functools.cache
def _init_types(depth: int) -> st.SearchStrategy[ast.Expr]:
    """Expressions the parser accepts as the type of ``T{ ... }``."""
    sub_e = exprs(depth - 1)
    return st.one_of(
        st.builds(ast.Ident, names),
        st.builds(ast.FieldAccess, st.builds(ast.Ident, names), names),
        st.builds(ast.Call, st.builds(ast.Ident, names), _small_list(sub_e, 0, 2)),
        st.builds(ast.BuiltinCall, builtin_names, _small_list(sub_e, 0, 2)),
        st.builds(ast.ArrayType, _small_list(sub_e, 1, 2), type_exprs(depth - 1)),
        struct_types(depth - 1) if depth > 1 else st.builds(
            ast.StructType, st.just([]), st.just([])),
    )


@functools.cache
def init_lists(depth: int) -> st.SearchStrategy[ast.InitList]:
    sub = exprs(depth - 1)
    fields = _small_list(st.builds(ast.FieldInit, names, sub), 1, 3)
    items = _small_list(sub, 1, 3)

    @st.composite
    def build(draw: st.DrawFn) -> ast.InitList:
        typ = draw(st.none() | _init_types(depth))
        shape = draw(st.sampled_from(("empty", "fields", "items")))
        if shape == "items" and typ is not None and not isinstance(typ, ast.ArrayType):
            shape = "fields"                 # T{ 1, 2 } is not an initializer for a name T
        if shape == "fields":
            return ast.InitList(typ, fields=draw(fields))
        if shape == "items":
            return ast.InitList(typ, items=draw(items))
        return ast.InitList(typ)

    return build()


@functools.cache
def tensor_accesses(depth: int) -> st.SearchStrategy[ast.TensorAccess]:
    sub = exprs(depth - 1)

    @st.composite
    def build(draw: st.DrawFn) -> ast.TensorAccess:
        n = draw(st.integers(1, 3))
        variables = draw(st.lists(names, min_size=n, max_size=n))
        extents = draw(st.lists(sub, min_size=n, max_size=n))
        access = draw(st.one_of(
            st.builds(ast.Index, st.builds(ast.Ident, names), _small_list(sub, 1, 3)), sub))
        return ast.TensorAccess(variables, extents, access)

    return build()


@functools.cache
def expr_switches(depth: int) -> st.SearchStrategy[ast.Switch]:
    sub = exprs(depth - 1)
    body = st.one_of(sub, sub, st.builds(ast.BlockExpr, blocks(depth - 1)))
    prong = st.one_of(
        st.builds(ast.SwitchProng, _small_list(sub, 1, 2), body),
        st.builds(ast.SwitchProng, st.just([]), body, is_else=st.just(True)))
    return st.builds(ast.Switch, sub, _small_list(prong, 0, 3))


@functools.cache
def struct_types(depth: int) -> st.SearchStrategy[ast.StructType]:
    sub_e = exprs(depth - 1)
    field = st.builds(ast.ContainerField, names, type_exprs(depth - 1), st.none() | sub_e)
    decl = st.one_of(member_var_decls(depth - 1), fn_decls(depth - 1),
                     st.builds(ast.ComptimeBlock, blocks(depth - 1)))
    return st.builds(
        ast.StructType, _small_list(field), _small_list(decl, 0, 2),
        kind=st.sampled_from(("struct", "union")),
        layout=st.sampled_from((None, "packed", "extern")))


@functools.cache
def enum_types(depth: int) -> st.SearchStrategy[ast.EnumType]:
    member = st.builds(ast.EnumMember, names, st.none() | exprs(depth - 1))
    decl = st.one_of(member_var_decls(depth - 1), fn_decls(depth - 1))
    return st.builds(ast.EnumType, st.none() | type_exprs(depth - 1), _small_list(member),
                     _small_list(decl, 0, 1))

# ----------------------------------------------------------------------------------------------
# Statements


@functools.cache
def blocks(depth: int) -> st.SearchStrategy[ast.Block]:
    """An unlabeled ``{ ... }`` of statements (local declarations allowed)."""
    return st.builds(ast.Block, _small_list(stmts(depth), 0, 3))


@functools.cache
def labeled_blocks(depth: int) -> st.SearchStrategy[ast.Block]:
    return st.builds(ast.Block, _small_list(stmts(depth), 0, 3), label=labels)


def _plain_expr_stmt(e: ast.Expr) -> bool:
    return not isinstance(e, ast.Switch) and not (
        isinstance(e, ast.BlockExpr) and e.block.label is None)


@functools.cache
def simple_stmts(depth: int) -> st.SearchStrategy[ast.Stmt]:
    """Assignments, expression statements, return/break/continue."""
    sub = exprs(max(depth - 1, 0))
    return st.one_of(
        st.builds(ast.ExprStmt, sub.filter(_plain_expr_stmt)),
        st.builds(ast.Assign, sub, st.sampled_from(ASSIGN_OPS), sub),
        st.builds(ast.Return, st.none() | sub),
        st.builds(ast.Break, st.none() | labels, st.none() | sub),
        st.builds(ast.Continue, st.none() | labels),
    )


def _no_dangling_else(s: ast.If) -> ast.If:
    if s.else_ is not None and takes_else(s.then):
        s.then = ast.Block([s.then])
    return s


@functools.cache
def body_stmts(depth: int) -> st.SearchStrategy[ast.Stmt]:
    """Statements allowed as the body of if/else/while/for or a statement-switch prong."""
    if depth <= 0:
        return st.one_of(simple_stmts(0), st.builds(ast.Block, st.just([])))
    sub_e = exprs(depth - 1)
    sub_b = body_stmts(depth - 1)
    cont = st.one_of(
        st.builds(ast.Assign, sub_e, st.sampled_from(ASSIGN_OPS), sub_e),
        st.builds(ast.ExprStmt, sub_e))
    return st.one_of(
        simple_stmts(depth), simple_stmts(depth),
        blocks(depth - 1),
        st.builds(ast.If, sub_e, sub_b, st.none() | sub_b).map(_no_dangling_else),
        st.builds(ast.While, sub_e, sub_b, st.none() | cont, st.none() | labels),
        st.builds(ast.For, sub_e, _small_list(names, 1, 2), sub_b, st.none() | labels),
        st.builds(ast.ComptimeBlock, blocks(depth - 1)),
        st.builds(ast.ExprStmt, stmt_switches(depth)),
        st.builds(ast.ExprStmt, st.builds(ast.BlockExpr, labeled_blocks(depth - 1))),
    )


@functools.cache
def stmt_switches(depth: int) -> st.SearchStrategy[ast.Switch]:
    sub_e = exprs(depth - 1)
    body = body_stmts(depth - 1)
    prong = st.one_of(
        st.builds(ast.SwitchProng, _small_list(sub_e, 1, 2), body),
        st.builds(ast.SwitchProng, st.just([]), body, is_else=st.just(True)))
    return st.builds(ast.Switch, sub_e, _small_list(prong, 0, 3))


@functools.cache
def local_var_decls(depth: int) -> st.SearchStrategy[ast.VarDecl]:
    sub_e = exprs(max(depth - 1, 0))

    @st.composite
    def build(draw: st.DrawFn) -> ast.VarDecl:
        kind = draw(st.sampled_from(("const", "var")))
        return ast.VarDecl(
            kind, draw(names), draw(st.none() | type_exprs(max(depth - 1, 0))),
            draw(st.none() | sub_e), is_comptime=draw(st.booleans()))

    return build()


@functools.cache
def stmts(depth: int) -> st.SearchStrategy[ast.Stmt]:
    """Any statement of a block: body statements plus local declarations."""
    return st.one_of(body_stmts(depth), local_var_decls(depth))

# ----------------------------------------------------------------------------------------------
# Declarations


def _attrs(depth: int) -> st.SearchStrategy[ast.Expr | None]:
    return st.none() | st.none() | exprs(max(depth - 1, 0))


@functools.cache
def member_var_decls(depth: int) -> st.SearchStrategy[ast.VarDecl]:
    """const/var declarations as found in a struct or enum (or at file scope)."""
    return _var_decls(depth, kinds=("const", "var"))


@functools.cache
def top_var_decls(depth: int) -> st.SearchStrategy[ast.VarDecl]:
    return _var_decls(depth, kinds=("const", "var", "param"))


def _var_decls(depth: int, kinds: tuple[str, ...]) -> st.SearchStrategy[ast.VarDecl]:
    sub_e = exprs(max(depth - 1, 0))
    sub_t = type_exprs(max(depth - 1, 0))

    @st.composite
    def build(draw: st.DrawFn) -> ast.VarDecl:
        kind = draw(st.sampled_from(kinds))
        linkage = draw(st.sampled_from((None, None, "export", "extern")))
        return ast.VarDecl(
            kind, draw(names), draw(st.none() | sub_t), draw(st.none() | sub_e),
            is_comptime=kind != "param" and draw(st.booleans()),
            is_export=linkage == "export", is_extern=linkage == "extern",
            align=draw(_attrs(depth)), linksection=draw(_attrs(depth)),
            linkname=draw(_attrs(depth)))

    return build()


@functools.cache
def fn_decls(depth: int) -> st.SearchStrategy[ast.FnDecl]:
    sub_t = type_exprs(max(depth - 1, 0))
    param_type = st.one_of(sub_t, st.builds(ast.AnyType))

    @st.composite
    def build(draw: st.DrawFn) -> ast.FnDecl:
        has_body = draw(st.booleans())
        params = draw(_small_list(st.builds(
            ast.FnParam, names if has_body else st.none() | names, param_type,
            is_comptime=st.booleans())))
        is_task = draw(st.booleans())
        ret = draw(st.none() | sub_t) if is_task else draw(sub_t)
        body = draw(blocks(max(depth - 1, 0))) if has_body else None
        linkage = draw(st.sampled_from((None, None, "export", "extern")))
        return ast.FnDecl(
            draw(names), params, ret, body, is_task=is_task,
            is_export=linkage == "export", is_extern=linkage == "extern",
            inline=draw(st.sampled_from((None, None, "inline", "noinline"))),
            linkname=draw(_attrs(depth)))

    return build()


@functools.cache
def top_decls(depth: int = MAX_DEPTH) -> st.SearchStrategy[ast.Stmt]:
    return st.one_of(
        top_var_decls(depth), top_var_decls(depth),
        fn_decls(depth),
        st.builds(ast.ComptimeBlock, blocks(depth - 1)),
        st.builds(ast.LayoutBlock, blocks(depth - 1)),
        st.builds(ast.ColorDecl, names),
    )


def modules(depth: int = MAX_DEPTH, max_decls: int = 4) -> st.SearchStrategy[ast.Module]:
    """Whole files: a few top-level declarations."""
    return st.builds(ast.Module, st.lists(top_decls(depth), max_size=max_decls))


# ----------------------------------------------------------------------------------------------
# Seed corpus

SEED_SOURCES: dict[str, str] = {}
"""Realistic CSL files, name -> text. Every one parses; the fuzz tests mutate them."""

SEED_SOURCES["gemv_layout"] = textwrap.dedent("""\
    // Layout of a row-split GEMV: y = A x + b on a kernel_x_dim x kernel_y_dim rectangle.
    // Each PE owns an M_per_pe x N_per_pe tile of A; x is broadcast down the columns and the
    // partial sums of y are reduced eastward along each row.

    param kernel_x_dim: i16;
    param kernel_y_dim: i16;
    param M: i16;
    param N: i16;

    param MEMCPYH2D_DATA_1_ID: i16;
    param MEMCPYD2H_DATA_1_ID: i16;

    const M_per_pe: i16 = M / kernel_y_dim;
    const N_per_pe: i16 = N / kernel_x_dim;

    const x_color: color = @get_color(0);
    const ax_color_even: color = @get_color(2);
    const ax_color_odd: color = @get_color(3);

    const MEMCPYH2D_DATA_1: color = @get_color(MEMCPYH2D_DATA_1_ID);
    const MEMCPYD2H_DATA_1: color = @get_color(MEMCPYD2H_DATA_1_ID);

    const memcpy = @import_module("<memcpy/get_params>", .{
      .width = kernel_x_dim,
      .height = kernel_y_dim,
      .MEMCPYH2D_1 = MEMCPYH2D_DATA_1,
      .MEMCPYD2H_1 = MEMCPYD2H_DATA_1,
    });

    layout {
      @set_rectangle(kernel_x_dim, kernel_y_dim);

      var px: i16 = 0;
      while (px < kernel_x_dim) : (px += 1) {
        const memcpy_params = memcpy.get_params(px);
        const send_color = if (px % 2 == 0) ax_color_even else ax_color_odd;
        const recv_color = if (px % 2 == 0) ax_color_odd else ax_color_even;

        for (@range(i16, kernel_y_dim)) |py| {
          @set_tile_code(px, py, "pe_program.csl", .{
            .memcpy_params = memcpy_params,
            .M_per_pe = M_per_pe,
            .N_per_pe = N_per_pe,
            .kernel_x_dim = kernel_x_dim,
            .send_color = send_color,
            .recv_color = recv_color,
            .x_color = x_color,
            .is_first_col = px == 0,
            .is_last_col = px == kernel_x_dim - 1,
          });

          // x enters at the top row and is multicast down each column.
          const x_route = if (py == 0) .{ .rx = .{RAMP}, .tx = .{ RAMP, SOUTH } }
            else if (py == kernel_y_dim - 1) .{ .rx = .{NORTH}, .tx = .{RAMP} }
            else .{ .rx = .{NORTH}, .tx = .{ RAMP, SOUTH } };
          @set_color_config(px, py, x_color, .{ .routes = x_route });

          if (px == 0) {
            @set_color_config(px, py, send_color, .{ .routes = .{ .rx = .{RAMP}, .tx = .{EAST} } });
          } else if (px == kernel_x_dim - 1) {
            @set_color_config(px, py, recv_color, .{ .routes = .{ .rx = .{WEST}, .tx = .{RAMP} } });
          } else {
            @set_color_config(px, py, send_color, .{ .routes = .{ .rx = .{RAMP}, .tx = .{EAST} } });
            @set_color_config(px, py, recv_color, .{ .routes = .{ .rx = .{WEST}, .tx = .{RAMP} } });
          }
        }
      }

      // Host-visible symbols and the entry point.
      @export_name("A", [*]f32, true);
      @export_name("x", [*]f32, true);
      @export_name("y", [*]f32, false);
      @export_name("compute", fn() void);
    }
    """)

SEED_SOURCES["gemv_pe"] = textwrap.dedent("""\
    // One PE of the row-split GEMV. A is stored column-major so that each x element scales
    // one contiguous column: y += A[:, j] * x[j].

    param memcpy_params: comptime_struct;

    param M_per_pe: i16;
    param N_per_pe: i16;
    param kernel_x_dim: i16;
    param is_first_col: bool;
    param is_last_col: bool;

    param send_color: color;
    param recv_color: color;
    param x_color: color;

    const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
    const layout_mod = @import_module("<layout>");

    // Queue and task IDs (WSE-3: memcpy owns queues 0 and 1, local tasks 27, 28, 30).
    const x_in_q = @get_input_queue(2);
    const recv_in_q = @get_input_queue(3);
    const send_out_q = @get_output_queue(4);

    const x_task_id: data_task_id =
      if (@is_arch("wse2")) @get_data_task_id(x_color)
      else if (@is_arch("wse3")) @get_data_task_id(x_in_q);
    const reduce_task_id: local_task_id = @get_local_task_id(10);
    const exit_task_id: local_task_id = @get_local_task_id(11);

    var A: [M_per_pe * N_per_pe]f32 = @zeros([M_per_pe * N_per_pe]f32);
    var x: [N_per_pe]f32 = @zeros([N_per_pe]f32);
    var y: [M_per_pe]f32 = @zeros([M_per_pe]f32);

    var A_ptr: [*]f32 = &A;
    var x_ptr: [*]f32 = &x;
    var y_ptr: [*]f32 = &y;

    var x_received: i16 = 0;

    var A_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{M_per_pe} -> A[i] });
    const y_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{M_per_pe} -> y[i] });

    const in_dsd = @get_dsd(fabin_dsd, .{
      .extent = M_per_pe,
      .fabric_color = recv_color,
      .input_queue = recv_in_q,
    });
    const out_dsd = @get_dsd(fabout_dsd, .{
      .extent = M_per_pe,
      .fabric_color = send_color,
      .output_queue = send_out_q,
    });

    // One wavelet of x arrived: fold column x_received of A into y.
    task x_task(x_val: f32) void {
      @fmacs(y_dsd, y_dsd, A_dsd, x_val);
      A_dsd = @increment_dsd_offset(A_dsd, M_per_pe, f32);
      x_received += 1;
      if (x_received == N_per_pe) {
        @activate(reduce_task_id);
      }
    }

    task reduce_task() void {
      if (is_first_col) {
        @fmovs(out_dsd, y_dsd, .{ .async = true, .activate = exit_task_id });
      } else if (is_last_col) {
        @fadds(y_dsd, y_dsd, in_dsd, .{ .async = true, .activate = exit_task_id });
      } else {
        @fadds(out_dsd, y_dsd, in_dsd, .{ .async = true, .activate = exit_task_id });
      }
    }

    task exit_task() void {
      sys_mod.unblock_cmd_stream();
    }

    fn compute() void {
      x_received = 0;
      A_dsd = @set_dsd_base_addr(A_dsd, A);
      for (@range(i16, N_per_pe)) |j| {
        @fmacs(y_dsd, y_dsd, A_dsd, x[j]);
        A_dsd = @increment_dsd_offset(A_dsd, M_per_pe, f32);
      }
      @activate(reduce_task_id);
    }

    comptime {
      @bind_data_task(x_task, x_task_id);
      @bind_local_task(reduce_task, reduce_task_id);
      @bind_local_task(exit_task, exit_task_id);

      if (@is_arch("wse3")) {
        @initialize_queue(x_in_q, .{ .color = x_color });
        @initialize_queue(recv_in_q, .{ .color = recv_color });
        @initialize_queue(send_out_q, .{ .color = send_color });
      }

      @export_symbol(A_ptr, "A");
      @export_symbol(x_ptr, "x");
      @export_symbol(y_ptr, "y");
      @export_symbol(compute);
      @rpc(@get_data_task_id(sys_mod.LAUNCH));
    }
    """)

SEED_SOURCES["checkerboard_pe"] = textwrap.dedent("""\
    // Checkerboard chain reduction with f16 data and index-carrying wavelets.
    param memcpy_params: comptime_struct;
    param width: u16;
    param height: u16;
    param Mt: u16;
    param Nt: u16;
    param c_recv: color;
    param c_send: color;
    param x_stream: color;

    const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
    const math = @import_module("<math>");

    const iq_x = @get_input_queue(2);
    const iq_recv = @get_input_queue(3);
    const oq_send = @get_output_queue(3);

    const recv_x_id: data_task_id = @get_data_task_id(if (@is_arch("wse3")) iq_x else x_stream);
    const chain_id: local_task_id = @get_local_task_id(12);

    var A: [Mt, Nt]f16 = @zeros([Mt, Nt]f16);
    var y: [Mt]f32 = @zeros([Mt]f32);
    var col_count: u16 = 0;

    const col_of_A = @get_dsd(mem4d_dsd, .{ .tensor_access = |i, j|{Mt, 1} -> A[i, j] });

    fn my_col() u16 {
      return layout_x() % 2;
    }

    inline fn layout_x() u16 {
      return @import_module("<layout>").get_x_coord();
    }

    task recv_x(v: f16, idx: u16) void {
      const scaled = @as(f32, v) * 0.5e0;
      var col = @increment_dsd_offset(col_of_A, @as(i16, idx), f16);
      @fmachs(y_dsd(), y_dsd(), col, v);
      col_count += 1;
      if (col_count >= Nt) @activate(chain_id);
      _ = scaled;
    }

    fn y_dsd() mem1d_dsd {
      return @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{Mt} -> y[i] });
    }

    task chain() void {
      const first = my_col() == 0 and width > 1;
      const mask: u16 = ~@as(u16, 0) >> 4 & 0x0FFF | 1 << 3;
      if (!first or mask == 0) {
        @fadds(@get_dsd(fabout_dsd, .{ .extent = Mt, .output_queue = oq_send }), y_dsd(),
               @get_dsd(fabin_dsd, .{ .extent = Mt, .input_queue = iq_recv }),
               .{ .async = true });
      }
    }

    comptime {
      @bind_data_task(recv_x, recv_x_id);
      @bind_local_task(chain, chain_id);
      @set_local_color_config(c_send, .{ .routes = .{ .rx = .{RAMP}, .tx = .{EAST} } });
      if (@is_arch("wse3")) @initialize_queue(iq_x, .{ .color = x_stream });
    }
    """)

SEED_SOURCES["collectives_layout"] = textwrap.dedent("""\
    // SUMMA-style GEMM layout on a P x P grid using the collectives_2d library.
    param P: u16;
    param Mt: u16;
    param Kt: u16;
    param Nt: u16;

    const c2d = @import_module("<collectives_2d/params>");

    const memcpy = @import_module("<memcpy/get_params>", .{
      .width = P,
      .height = P,
    });

    layout {
      @set_rectangle(P, P);

      var Px: u16 = 0;
      while (Px < P) : (Px += 1) {
        var Py: u16 = 0;
        while (Py < P) : (Py += 1) {
          const c2d_params = c2d.get_params(Px, Py, .{
            .x_colors = .{ @get_color(4), @get_color(5) },
            .x_entrypoints = .{ @get_local_task_id(12), @get_local_task_id(13) },
            .y_colors = .{ @get_color(6), @get_color(7) },
            .y_entrypoints = .{ @get_local_task_id(14), @get_local_task_id(15) },
          });
          @set_tile_code(Px, Py, "pe.csl", .{
            .memcpy_params = memcpy.get_params(Px),
            .c2d_params = c2d_params,
            .Mt = Mt,
            .Kt = Kt,
            .Nt = Nt,
          });
        }
      }

      @export_name("A", [*]f32, true);
      @export_name("B", [*]f32, true);
      @export_name("C", [*]f32, true);
      @export_name("main", fn() void);
    }
    """)

SEED_SOURCES["collectives_pe"] = textwrap.dedent("""\
    param memcpy_params: comptime_struct;
    param c2d_params: comptime_struct;

    param Mt: u16;
    param Kt: u16;
    param Nt: u16;

    const P = @get_rectangle().width;

    const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
    const mpi_x = @import_module("<collectives_2d/pe>", .{
      .dim_params = c2d_params.x,
      .queues = [2]u16{ 2, 4 },
      .dest_dsr_ids = [1]u16{1},
      .src0_dsr_ids = [1]u16{1},
      .src1_dsr_ids = [1]u16{1},
    });
    const mpi_y = @import_module("<collectives_2d/pe>", .{
      .dim_params = c2d_params.y,
      .queues = [2]u16{ 3, 5 },
      .dest_dsr_ids = [1]u16{2},
      .src0_dsr_ids = [1]u16{2},
      .src1_dsr_ids = [1]u16{2},
    });

    const x_done: local_task_id = @get_local_task_id(9);
    const y_done: local_task_id = @get_local_task_id(10);
    const compute_id: local_task_id = @get_local_task_id(11);

    var px: u16 = 0;
    var py: u16 = 0;
    var step: u16 = 0;

    var A_tile = @zeros([Mt * Kt]f32);
    var B_tile = @zeros([Kt * Nt]f32);
    var C_tile = @zeros([Mt * Nt]f32);
    var A_buffer = @zeros([Mt * Kt]f32);
    var B_buffer = @zeros([Kt * Nt]f32);

    var ptr_A: [*]f32 = &A_tile;
    var ptr_B: [*]f32 = &B_tile;
    var ptr_C: [*]f32 = &C_tile;

    var A_col = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{Mt} -> A_buffer[i] });
    var C_col = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{Mt} -> C_tile[i] });

    fn main() void {
      mpi_x.init();
      mpi_y.init();
      px = mpi_x.pe_id;
      py = mpi_y.pe_id;
      step = 0;
      @activate(compute_id);
    }

    fn broadcast_step() void {
      const send_a = if (px == step) &A_tile else &A_buffer;
      const send_b = if (py == step) &B_tile else &B_buffer;
      mpi_x.broadcast(step, @ptrcast([*]u32, send_a), Mt * Kt, x_done);
      mpi_y.broadcast(step, @ptrcast([*]u32, send_b), Kt * Nt, y_done);
    }

    task x_done_task() void {
      @activate(compute_id);
    }

    task y_done_task() void {
      @unblock(compute_id);
    }

    task compute() void {
      if (step == P) {
        sys_mod.unblock_cmd_stream();
        return;
      }
      @block(compute_id);
      for (@range(u16, Nt)) |j| {
        A_col = @set_dsd_base_addr(A_col, A_buffer);
        for (@range(u16, Kt)) |k| {
          const b = B_buffer[j * Kt + k];
          @fmacs(C_col, C_col, A_col, b);
          A_col = @increment_dsd_offset(A_col, Mt, f32);
        }
        C_col = @increment_dsd_offset(C_col, Mt, f32);
      }
      step += 1;
      broadcast_step();
    }

    comptime {
      @bind_local_task(x_done_task, x_done);
      @bind_local_task(y_done_task, y_done);
      @bind_local_task(compute, compute_id);
      @block(compute_id);

      @export_symbol(ptr_A, "A");
      @export_symbol(ptr_B, "B");
      @export_symbol(ptr_C, "C");
      @export_symbol(main);
    }
    """)

SEED_SOURCES["attention_pe"] = textwrap.dedent("""\
    // Decode attention for one head on one PE: scores = K q, softmax, out = V^T p.
    // Our own kernel; exercises @map, math, switch, labeled blocks and loops.
    param memcpy_params: comptime_struct;
    param head_dim: u16 = 64;
    param max_seq: u16 = 256;
    param precision: comptime_int = 1;

    const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
    const math = @import_module("<math>");

    const Elem = switch (precision) {
      0 => f16,
      1 => f32,
      else => @comptime_assert(false, "unsupported precision"),
    };

    const Stats = struct {
      max: f32 = -math.POSITIVE_INF,
      sum: f32 = 0.0,
      count: u16 = 0,
    };

    const Phase = enum(u8) { idle, scores, softmax, output };

    var phase: Phase = Phase.idle;
    var stats = Stats{};

    var K: [max_seq * head_dim]Elem;
    var V: [max_seq * head_dim]Elem;
    var q: [head_dim]f32 = @zeros([head_dim]f32);
    var scores: [max_seq]f32 = @zeros([max_seq]f32);
    var out: [head_dim]f32 = @zeros([head_dim]f32);
    var seq_len: u16 = 0;
    var scale: f32 = 0.125;
    var acc: [1]f32 = .{0.0};

    const scores_all = @get_dsd(mem1d_dsd, .{ .tensor_access = |t|{max_seq} -> scores[t] });
    const acc_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |t|{max_seq} -> acc[0] });

    fn exp_shifted(s: f32) f32 {
      return math.exp_f32(s - stats.max);
    }

    fn dot(row: [*]const Elem, n: u16) f32 {
      var sum: f32 = 0.0;
      var i: u16 = 0;
      while (i < n) : (i += 1) {
        sum += @as(f32, row[i]) * q[i];
      }
      return sum;
    }

    fn attend() void {
      phase = .scores;
      var t: u16 = 0;
      outer: while (t < seq_len) : (t += 1) {
        const base = t * head_dim;
        scores[t] = dot(@ptrcast([*]const Elem, &K[base]), head_dim) * scale;
        if (scores[t] != scores[t]) {
          break :outer;
        }
      }

      phase = .softmax;
      const n = @set_dsd_length(scores_all, seq_len);
      stats.max = find_max: {
        var m: f32 = scores[0];
        for (@range(u16, 1, seq_len, 1)) |i| {
          m = math.max(m, scores[i]);
        }
        break :find_max m;
      };
      @map(exp_shifted, n, n);
      acc[0] = 0.0;
      @fadds(@set_dsd_length(acc_dsd, seq_len), @set_dsd_length(acc_dsd, seq_len), n);
      stats.sum = acc[0];
      const inv = 1.0 / stats.sum;
      @fmuls(n, n, inv);

      phase = .output;
      for (@range(u16, head_dim)) |d, k| {
        var o: f32 = 0.0;
        var s: u16 = 0;
        while (s < seq_len) : (s += 1) {
          o += scores[s] * @as(f32, V[s * head_dim + d]);
        }
        out[k] = o;
      }

      switch (phase) {
        .idle, .scores => {},
        .softmax => stats.count += 1,
        else => {
          stats.count = 0;
        },
      }
      phase = Phase.idle;
      sys_mod.unblock_cmd_stream();
    }

    comptime {
      @comptime_assert(head_dim % 2 == 0);
      @comptime_assert(max_seq <= 1024, "KV cache too large");
      @export_symbol(attend);
    }
    """)

SEED_SOURCES["syntax_tour"] = textwrap.dedent("""\
    //! A file that touches every corner of the CSL grammar the front end accepts.
    /// Documented constant.
    const hex = 0xFF_FF;
    const oct = 0o755;
    const bin = 0b1010_0101;
    const big = 1_000_000;
    const f_a = 1.5e-3;
    const f_b = 0x1.8p3;
    const f_c = 2.5E+3;
    const ch_a = 'a';
    const ch_nl = '\\n';
    const ch_hex = '\\x41';
    const ch_u = '\\u{1F600}';
    const str_esc = "tab\\there \\"quoted\\" back\\\\slash \\x7f";
    const long_text =
      \\\\first line
      \\\\  second line with "quotes"
    ;

    color legacy_color;

    extern var ext_counter: i32;
    export var exported: u32 align(16) linksection(".data") = 7;
    extern fn ext_fn(i16, f32) void;
    export fn visible(a: i16) linkname("visible_impl") i16 {
      return a;
    }
    noinline fn no_inl() void {}
    extern fn proto(x: u16) u16;

    const Point = extern struct { x: i16, y: i16 };
    const Bits = packed struct { lo: u8, hi: u8 };
    const Any = union { i: i32, f: f32 };
    const Color3 = enum { red, green = 4, blue };
    const Ns = struct {
      pub_val: u16 = 3,

      const inner = 42;
      fn get() u16 {
        return inner;
      }
    };

    const FnPtr = *const fn(i16, f32) f32;
    const Many = [*]const u16;
    const Grid = [4, 8]f16;
    const Nested = [2][3]i16;

    fn generic(comptime T: type, x: anytype) T {
      return @as(T, x);
    }

    fn ops(a: i32, b: i32, p: *i32) i32 {
      var r: i32 = (a + b) * (a - b) / 3 % 7;
      r <<= 2;
      r >>= 1;
      r &= 0xFF;
      r |= 1;
      r ^= a;
      r -= -b;
      r *= ~a;
      p.* = r;
      const t = p.*;
      const cmp = a < b or a >= b and !(a == b) or a != b;
      const chained = (a & b) ^ (a | b);
      const shifted = a << 2 >> 1;
      const nested_if = if (cmp) if (t > 0) a else b else -a;
      const cex = comptime (3 + 4);
      const arr = [3]i32{ a, b, t };
      const elem = arr[1];
      const tup = .{ 1, 2.0, "three" };
      const empty = .{};
      _ = tup[0] + @as(i32, elem) + chained + shifted + nested_if + cex;
      _ = empty;
      if (a > b) r = a else if (a < b) return b else r = 0;
      return r;
    }

    fn control(n: u16) u16 {
      var total: u16 = 0;
      var i: u16 = 0;
      outer: while (i < n) : (i += 1) {
        var j: u16 = 0;
        while (j < n) : (j += 1) {
          if (j == i) continue :outer;
          if (j > 10) break :outer;
          if (i == 0) {
            continue;
          } else if (i == 1) {
            total += 1;
          } else {
            total += 2;
          }
        }
      }
      for (@range(u16, n)) |k| {
        comptime {
          @comptime_print("unrolled");
        }
        total += switch (k % 3) {
          0 => 1,
          1, 2 => blk: {
            const z = k * 2;
            break :blk z;
          },
          else => unreachable,
        };
      }
      return total;
    }

    const T = |i, j, k|{2, 2, 4} -> big_arr[i, j, 1 + k];
    var big_arr: [2, 2, 5]f32;

    comptime {
      @comptime_assert(@sizeof(Point) == 4);
    }
    """)

# ----------------------------------------------------------------------------------------------
# Source-level mutations of the seed corpus (for fuzzing the parser and, later, the elaborator)

FUZZ_TOKENS = (
    "const", "var", "param", "fn", "task", "comptime", "layout", "export", "extern", "inline",
    "if", "else", "switch", "while", "for", "break", "continue", "return", "and", "or",
    "struct", "enum", "union", "packed", "anytype", "asm", "volatile", "color", "true",
    "undefined", "x", "_", "f32", "[*]", "*const", "[3]", "[M, N]", "fn() void",
    "(", ")", "{", "}", "[", "]", ".{", ".{}", ".*", ".", ",", ";", ":", "=>", "->", "|",
    "|i|{4} -> A[i]", "=", "+=", "<<=", "==", "<", "+", "-", "*", "/", "%", "<<", "&", "!",
    "~", "^", "@", "@get_dsd", "@range(i16, 3)", "@import_module(\"<memcpy/memcpy>\")",
    "0", "0x", "0x1p", "1e", "1.", "1_", "0b2", "1__0", "1e400", "'a'", "''", "'\\u{110000}'",
    "\"", "\"\\q\"", "\"abc\"", "\\\\", "\\\\ml\n", "//", "/*", "\n", "\t", " ",
    "blk: {", "break :blk", "outer: while (c)", "else =>", "comptime {", "}}}", "(((",
)

# Characters for raw mutations, weighted towards the lexically interesting ones (including
# NUL, a BOM, U+FFFD and lone surrogates).
FUZZ_CHARS = st.one_of(
    st.sampled_from(list("(){}[];:,.=<>!&|^~+-*/%@'\"\\\n\t 0xXeEp_")),
    st.sampled_from(["\x00", "\r", "\x0b", "\x7f", "\u00a0", "\u2028", "\ufeff", "\ufffd",
                     "\ud800", "\udfff", "\U0001F600"]),
    st.characters(),
)


@st.composite
def mutated_sources(draw: st.DrawFn) -> str:
    """A seed source after one to four random edits: truncation, a splice of a slice of
    another seed, inserted/deleted/replaced characters or tokens, a duplicated slice."""
    text = SEED_SOURCES[draw(st.sampled_from(sorted(SEED_SOURCES)))]
    for _ in range(draw(st.integers(1, 4))):
        n = len(text)
        i = draw(st.integers(0, n))
        j = min(n, i + draw(st.integers(0, 40)))
        op = draw(st.sampled_from(("truncate", "splice", "insert", "delete", "replace",
                                   "token", "token_replace", "duplicate")))
        if op == "truncate":
            text = text[:i]
        elif op == "splice":
            other = SEED_SOURCES[draw(st.sampled_from(sorted(SEED_SOURCES)))]
            k = draw(st.integers(0, len(other)))
            piece = other[k:k + draw(st.integers(0, 400))]
            text = text[:i] + piece + text[j:]
        elif op == "insert":
            text = text[:i] + draw(st.text(FUZZ_CHARS, min_size=1, max_size=6)) + text[i:]
        elif op == "delete":
            text = text[:i] + text[j:]
        elif op == "replace":
            text = text[:i] + draw(st.text(FUZZ_CHARS, max_size=6)) + text[j:]
        elif op == "token":
            sep = draw(st.sampled_from(("", " ")))
            text = text[:i] + sep + draw(st.sampled_from(FUZZ_TOKENS)) + sep + text[i:]
        elif op == "token_replace":
            text = text[:i] + draw(st.sampled_from(FUZZ_TOKENS)) + text[j:]
        else:
            text = text[:j] + text[i:j] + text[j:]
    return text
