"""Pretty-printer: CSL AST -> CSL source text.

Protocol
--------
``print_module(m)`` renders a whole file; ``print_node(n)`` renders any single node (an
expression without surrounding parentheses, a statement or declaration at indent 0, or one of
the helper nodes such as :class:`~waferscale.lang.ast.FieldInit`).

For every AST the parser can produce, the output re-parses to an equal tree
(``parse_source(print_module(m)) == m``; literal spellings are kept too) and printing is
idempotent on text (``print_module(parse_source(print_module(m))) == print_module(m)``).

Style follows the Cerebras examples / ``zig fmt``: 2-space indent, one statement per line,
``.{ .a = 1 }`` / ``.{ 1, 2 }`` / ``T{ .a = 1 }`` initializers, multi-line ``switch`` with a
trailing comma after every prong, one element per line (with a trailing comma) for long
initializer lists, long ``if``-expression chains broken before each ``else``, and blank lines
around multi-line top-level declarations and between groups of different declarations.
Comments and the original line breaks are not part of the tree and are not reproduced.

Parentheses are not AST nodes, so the printer inserts them from Zig precedence (tightest
first): postfix ``x() x[] x.y x.*`` > typed init ``T{..}`` > prefix ``! - ~ &`` and the type
prefixes ``[N]T *T [*]T fn(..) R`` > ``* / %`` > ``+ -`` > ``<< >>`` > ``& ^ |`` (one level) >
comparisons (non-associative) > ``and`` > ``or``. ``if``-expressions, ``comptime e`` and tensor
accesses extend as far right as possible and are parenthesized whenever they are an operand.
On top of the required parentheses a few *clarifying* ones are added (they never change the
tree, and never nest along an operator chain): a bitwise/shift operand of a comparison
(``(a & b) == c``), a shift operand of a bitwise operator, ``and`` under ``or``, and an
``if``-expression used as the then-branch of another ``if``-expression.

Chains the parser builds without recursion (``!!!!x``, ``a.b.c()[i]``, ``a + b + ... + z``,
``[*][*]T``, ``else if`` chains) can be arbitrarily long; the printer walks them with loops,
so it handles every tree the parser accepts without hitting Python's recursion limit.

Places where naive printing would re-parse differently, and what is done:

- ``- -x`` / ``& &x``: a prefix operator followed by the same character gets a space
  (``--``/``&&`` would read as a typo; parentheses would nest and, for the long prefix chains
  the parser accepts, exceed its nesting limit).
- Negative ``IntLit``/``FloatLit`` values (never produced by the parser, which builds
  ``Unary('-', lit)``) print as ``-lit`` with prefix precedence, i.e. like the parsed form.
- ``1.*`` / ``1.x`` / ``1.5.x``: a numeric literal followed by ``.`` is parenthesized.
- ``T{..}.x``, ``[3]T{..}[0]``: a typed initializer is parenthesized as a postfix target;
  ``[3](T{..})`` likewise as the element of a type prefix, so ``{`` binds to the whole type.
- ``if (a) (if (b) x) else y``: an else-less ``if``-expression (or an ``else if`` chain ending
  without ``else``) as the then-branch of an ``if`` with ``else`` is parenthesized.
- Expression statements whose text would start like another statement (``if``, ``switch``,
  ``extern struct``, ``fn(..) T``, a ``label:`` ...) are parenthesized, except the canonical
  statement forms ``ExprStmt(Switch)`` and ``ExprStmt(BlockExpr)``, printed bare without
  ``;``. The same applies to the left-hand side of an assignment.
- Bare-type positions (declared, field, parameter and return types, array/pointer elements,
  enum tags, ``fn``-type parameters) are parsed as a primary with suffixes, so anything else
  there is parenthesized (``var x: (a + b)``, ``[3](T{})``, ``fn((blk: {})) T``).
- In a statement ``switch`` a simple prong body ends at ``,`` without ``;``; an ``if``/loop
  body keeps the ``;`` of its last simple statement (``3 => if (c) return;,``), as the
  parser requires.
- A ``\\\\`` multiline string is printed in that form when its value allows it (no CR or
  other control characters): its lines start on fresh lines and the code continues on the
  next line. Otherwise it becomes an ordinary escaped string (``multiline`` is not compared).
- The enum literal ``.name`` is ``Ident(".name")`` (the parser's representation).
- Dangling else: a statement ``if`` with ``else`` whose then-branch would take that ``else``
  (an else-less ``if``, a ``while``/``for`` -- read as an unsupported loop-else -- or an
  ``else if`` chain ending in one, see :func:`takes_else`) cannot be written without braces.
  The parser never produces such a tree; the printer wraps that branch in a block, which
  keeps the program's meaning but re-parses to a tree with an extra :class:`Block` (logged at
  debug level).
- Before ``else``, a simple then-branch drops its ``;`` (Zig style, as the parser expects:
  ``if (c) x = 1 else y = 2;``), and its trailing expression is parenthesized if it ends in an
  else-less ``if``-expression.

Literals print their source ``text`` when it is present and consistent with ``value``;
otherwise a canonical spelling: decimal integers (hex beyond ~3000 digits), ``repr`` floats
(which re-read to the identical double; ``1e16`` rather than ``1e+16``), and re-escaped strings
and characters (see :func:`escape_char`). NaN, infinities and integers beyond the lexer's
literal length have no literal form and raise :class:`ValueError`, as do identifiers that are
not valid CSL names and other malformed trees; these are programming errors in whoever built
the tree, not user errors.
"""

from __future__ import annotations

import logging
import math
import re

from . import ast
from .errors import CslError
from .lexer import KEYWORDS, MAX_INT_DIGITS, Token, tokenize
from .source import SourceFile

logger = logging.getLogger(__name__)

INDENT = "  "
INIT_WIDTH = 64
"""Initializer lists whose one-line contents exceed this many characters get one element per
line."""
IF_WIDTH = 80
"""An ``if``-expression with ``else`` longer than this breaks before each ``else``."""

# Binding strength of the form a node prints as (higher binds tighter).
PREC_OPEN = 0        # if-expr, comptime expr, tensor access: extend to the right
PREC_OR = 1
PREC_AND = 2
PREC_CMP = 3
PREC_BIT = 4
PREC_SHIFT = 5
PREC_ADD = 6
PREC_MUL = 7
PREC_PREFIX = 8      # ! - ~ &, and the type prefixes [N]T *T [*]T fn(..) R
PREC_INIT = 9        # T{ ... }
PREC_POSTFIX = 10    # x() x[] x.y x.*
PREC_PRIMARY = 11

BINARY_PREC: dict[str, int] = {
    "or": PREC_OR,
    "and": PREC_AND,
    "==": PREC_CMP, "!=": PREC_CMP, "<": PREC_CMP, ">": PREC_CMP, "<=": PREC_CMP, ">=": PREC_CMP,
    "&": PREC_BIT, "^": PREC_BIT, "|": PREC_BIT,
    "<<": PREC_SHIFT, ">>": PREC_SHIFT,
    "+": PREC_ADD, "-": PREC_ADD,
    "*": PREC_MUL, "/": PREC_MUL, "%": PREC_MUL,
}
UNARY_OPS = frozenset({"-", "!", "~", "&"})
ASSIGN_OPS = frozenset({"=", "+=", "-=", "*=", "/=", "%=", "<<=", ">>=", "&=", "|=", "^="})


# Leading words that make the statement parser take a non-expression path.
# (``comptime e`` is safe: the parser only takes ``comptime {`` / ``comptime var`` as other
# statements, and a printed expression never starts with ``{`` or ``var``.)
_STMT_START_WORDS = frozenset({
    "if", "switch", "while", "for", "const", "var", "param", "fn", "task", "export",
    "extern", "inline", "noinline", "return", "break", "continue", "layout",
})
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_LEADING_WORD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL_START_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\s*:(?![:=])")


def print_module(m: ast.Module) -> str:
    """Render a whole CSL file (ends with a newline unless the module is empty)."""
    return _tidy(_Printer().module(m))


def print_node(n: ast.Node) -> str:
    """Render any node: expressions without outer parentheses, statements at indent 0."""
    return _tidy(_Printer().node(n))


def _tidy(text: str) -> str:
    """Drop trailing blanks, except on multiline-string lines where they are content."""
    if " \n" not in text and not text.endswith(" "):
        return text
    return "\n".join(ln if ln.lstrip(" ").startswith("\\\\") else ln.rstrip(" ")
                     for ln in text.split("\n"))


def ident(name: str) -> str:
    """Check that ``name`` can be printed as a CSL identifier and return it."""
    if not isinstance(name, str) or not _IDENT_RE.match(name) or name in KEYWORDS:
        raise ValueError(f"not a valid CSL identifier: {name!r}")
    return name


# ----------------------------------------------------------------------------------------------
# Literal spelling


def _lexes_as(text: str, kind: str, value: object) -> bool:
    """Whether ``text`` is exactly one ``kind`` token whose decoded value is ``value``."""
    try:
        toks = tokenize(SourceFile("<literal>", text))
    except CslError:
        return False
    if len(toks) != 2 or toks[0].kind != kind or toks[0].text != text:
        return False
    got = toks[0].value
    return type(got) is type(value) and got == value


def int_repr(value: int) -> str:
    """Canonical spelling of a non-negative integer: decimal, or hex beyond ~3000 digits
    (Python refuses to convert much longer decimals, and the lexer caps literal length)."""
    if value.bit_length() <= 10_000:
        return str(value)
    text = f"0x{value:x}"
    if len(text) > MAX_INT_DIGITS:
        raise ValueError(f"integer literal with {value.bit_length()} bits has no CSL spelling")
    return text


def _int_text(lit: ast.IntLit) -> str:
    if lit.text is not None and _lexes_as(lit.text, Token.INT, lit.value):
        return lit.text
    return int_repr(lit.value)


def float_repr(value: float) -> str:
    """Canonical spelling of a non-negative finite float that re-reads to the same double."""
    if not math.isfinite(value):
        raise ValueError(f"float literal has no CSL spelling: {value!r}")
    text = repr(float(value))
    if "e" in text:
        mant, exp = text.split("e")
        text = f"{mant}e{exp.lstrip('+')}"
    return text


def _float_text(lit: ast.FloatLit) -> str:
    if lit.text is not None and _lexes_as(lit.text, Token.FLOAT, float(lit.value)):
        return lit.text
    return float_repr(lit.value)


_SIMPLE_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def escape_char(ch: str, quote: str) -> str:
    """Spelling of one character inside a literal delimited by ``quote`` (``"`` or ``'``).

    Printable ASCII and printable non-ASCII characters are written as themselves, the usual
    C escapes and ``\\xNN`` cover ASCII controls, ``\\u{N}`` other non-printable code
    points. Lone surrogates have no escape in CSL and are written raw (such text can be
    parsed from a Python string but not saved as UTF-8).
    """
    if ch == quote:
        return "\\" + quote
    if ch in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[ch]
    code = ord(ch)
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if code < 0x7F or ch.isprintable() or 0xD800 <= code <= 0xDFFF:
        return ch
    return f"\\u{{{code:x}}}"


def string_literal(value: str) -> str:
    """A double-quoted CSL string literal for ``value``."""
    return '"' + "".join(escape_char(c, '"') for c in value) + '"'


def char_literal(code: int) -> str:
    """A single-quoted CSL character literal for code point ``code``."""
    if not 0 <= code <= 0x10FFFF:
        raise ValueError(f"character literal out of range: {code!r}")
    return "'" + escape_char(chr(code), "'") + "'"


def _char_text(lit: ast.CharLit) -> str:
    if lit.text is not None and _lexes_as(lit.text, Token.CHAR, lit.value):
        return lit.text
    return char_literal(lit.value)


def _multiline_ok(value: str) -> bool:
    """Whether the ``\\\\`` form can carry ``value`` (no CR or other control characters)."""
    return all(c == "\n" or c == "\t" or (ord(c) >= 0x20 and ord(c) != 0x7F
                                          and not 0xD800 <= ord(c) <= 0xDFFF) for c in value)


# ----------------------------------------------------------------------------------------------
# Structural predicates


def _dangling_if_expr(e: ast.Expr) -> bool:
    """True when ``e`` printed bare ends in an ``if`` without ``else``."""
    while isinstance(e, ast.IfExpr):
        if e.else_ is None:
            return True
        e = e.else_
    return False


def takes_else(s: ast.Stmt) -> bool:
    """Whether a following ``else`` would attach to (the end of) statement ``s``.

    True for an ``if`` without ``else`` (the dangling else), for a ``while``/``for`` (the
    parser reads ``while (..) body else`` as Zig's unsupported loop-else), and for an
    ``if ... else`` whose final else-branch is one of those.
    """
    while isinstance(s, ast.If):
        if s.else_ is None:
            return True
        s = s.else_
    return isinstance(s, (ast.While, ast.For))


def _decl_group(d: ast.Stmt) -> str:
    if isinstance(d, ast.VarDecl):
        return "param" if d.kind == "param" else "var"
    return type(d).__name__


def _is_simple_stmt(s: ast.Stmt) -> bool:
    """Statements that end with ``;`` and may drop it before ``else``/``,``."""
    if isinstance(s, ast.ExprStmt):
        return not isinstance(s.expr, (ast.Switch, ast.BlockExpr))
    return isinstance(s, (ast.Assign, ast.Return, ast.Break, ast.Continue))


_POSTFIX_NODES = (ast.Call, ast.Index, ast.FieldAccess, ast.Deref)


def _is_numeric_literal(e: ast.Expr) -> bool:
    return isinstance(e, (ast.IntLit, ast.FloatLit))


def _if_ends_open(e: ast.Expr) -> bool:
    """Whether ``e`` prints as an if-expression chain whose last link has no ``else`` (a
    following ``else`` would bind to it). ``if (a) x else y`` as a then-branch needs no
    parentheses, so nested if-types do not add a nesting level per if (issue 14)."""
    while isinstance(e, ast.IfExpr):
        if e.else_ is None:
            return True
        e = e.else_
    return False


def _is_type_prefix(e: ast.Expr) -> bool:
    return isinstance(e, (ast.ArrayType, ast.PointerType, ast.FnType))


def _expr_stmt_needs_parens(text: str) -> bool:
    """Whether an expression whose text is ``text`` would be misread at statement start."""
    if text.startswith(("{", "|")):
        return True
    m = _LEADING_WORD_RE.match(text)
    if m and m.group(0) in _STMT_START_WORDS:
        return True
    return bool(_LABEL_START_RE.match(text))


# ----------------------------------------------------------------------------------------------


class _Printer:
    """Renders nodes; ``self.level`` is the indent level of the line being produced."""

    def __init__(self) -> None:
        self.level = 0

    def pad(self, extra: int = 0) -> str:
        return INDENT * (self.level + extra)

    # -- entry points --------------------------------------------------------------------------

    def module(self, m: ast.Module) -> str:
        chunks = [self.stmt(d) for d in m.decls]
        out: list[str] = []
        for i, chunk in enumerate(chunks):
            # A blank line around multi-line declarations and between groups of
            # declarations of different kinds (params, consts/vars, prototypes, colors).
            if i and ("\n" in chunk or "\n" in chunks[i - 1]
                      or _decl_group(m.decls[i]) != _decl_group(m.decls[i - 1])):
                out.append("")
            out.append(chunk)
        return "\n".join(out) + "\n" if out else ""

    def node(self, n: ast.Node) -> str:
        if isinstance(n, ast.Module):
            return self.module(n)
        if isinstance(n, ast.Expr):
            return self.expr(n, PREC_OPEN)
        if isinstance(n, ast.Stmt):
            return self.stmt(n)
        if isinstance(n, ast.FieldInit):
            return self.field_init(n)
        if isinstance(n, ast.ContainerField):
            return self.container_field(n)
        if isinstance(n, ast.EnumMember):
            return self.enum_member(n)
        if isinstance(n, ast.SwitchProng):
            return self.prong(n)
        if isinstance(n, ast.FnParam):
            return self.fn_param(n)
        raise TypeError(f"cannot print node of type {type(n).__name__}")

    # -- expressions ---------------------------------------------------------------------------

    def expr(self, e: ast.Expr, min_prec: int) -> str:
        """Text of ``e``, parenthesized if its form binds looser than ``min_prec``."""
        text, prec = self._expr(e)
        return f"({text})" if prec < min_prec else text

    def full(self, e: ast.Expr) -> str:
        return self.expr(e, PREC_OPEN)

    def _postfix_target(self, e: ast.Expr, dot: bool) -> str:
        text, prec = self._expr(e)
        needs = prec < PREC_POSTFIX or (dot and _is_numeric_literal(e)) or (
            isinstance(e, (ast.Switch, ast.BlockExpr, ast.StructType, ast.EnumType)))
        return f"({text})" if needs else text

    def _type_operand(self, e: ast.Expr) -> str:
        """An expression in a bare-type position: the element of ``[N]T``/``*T``, a declared
        type, a parameter/field/return type, an enum tag. The parser reads these as a primary
        with suffixes (no prefix operators, no binary operators, no ``T{..}`` initializer)."""
        text, prec = self._expr(e)
        # A bare ``blk: {..}`` would read as ``name: type`` in a parameter list.
        if (_is_type_prefix(e) or prec >= PREC_POSTFIX) and not isinstance(e, ast.BlockExpr):
            return text
        return f"({text})"

    def _expr(self, e: ast.Expr) -> tuple[str, int]:
        method = getattr(self, "e_" + type(e).__name__, None)
        if method is None:
            raise TypeError(f"cannot print expression of type {type(e).__name__}")
        return method(e)

    def e_Ident(self, e: ast.Ident) -> tuple[str, int]:
        # The parser represents an enum literal ``.name`` as ``Ident(".name")``.
        if e.name.startswith("."):
            return "." + ident(e.name[1:]), PREC_PRIMARY
        return ident(e.name), PREC_PRIMARY

    def e_IntLit(self, e: ast.IntLit) -> tuple[str, int]:
        if e.value < 0:
            return "-" + int_repr(-e.value), PREC_PREFIX
        return _int_text(e), PREC_PRIMARY

    def e_FloatLit(self, e: ast.FloatLit) -> tuple[str, int]:
        if math.copysign(1.0, e.value) < 0 and not math.isnan(e.value):
            return "-" + float_repr(-e.value), PREC_PREFIX
        return _float_text(e), PREC_PRIMARY

    def e_CharLit(self, e: ast.CharLit) -> tuple[str, int]:
        return _char_text(e), PREC_PRIMARY

    def e_StringLit(self, e: ast.StringLit) -> tuple[str, int]:
        if e.multiline and _multiline_ok(e.value):
            # Each line opens with ``\\`` on its own line; the literal ends at the newline
            # after the last line, so whatever follows goes on a fresh line.
            lines = [f"\n{self.pad(1)}\\\\{ln}" for ln in e.value.split("\n")]
            return "".join(lines) + "\n" + self.pad(), PREC_PRIMARY
        return string_literal(e.value), PREC_PRIMARY

    def e_BoolLit(self, e: ast.BoolLit) -> tuple[str, int]:
        return ("true" if e.value else "false"), PREC_PRIMARY

    def e_AnyType(self, e: ast.AnyType) -> tuple[str, int]:
        return "anytype", PREC_PRIMARY

    # The parser builds prefix-operator chains, postfix chains, left-associative operator
    # chains, pointer/array type prefixes and else-if chains iteratively, so they can be
    # arbitrarily long; the printer walks them with loops rather than recursion.

    def e_Unary(self, e: ast.Unary) -> tuple[str, int]:
        ops: list[str] = []
        node: ast.Expr = e
        while isinstance(node, ast.Unary):
            if node.op not in UNARY_OPS:
                raise ValueError(f"unknown prefix operator {node.op!r}")
            ops.append(node.op)
            node = node.operand
        text = self.expr(node, PREC_PREFIX)
        parts: list[str] = []
        for i, op in enumerate(ops):
            parts.append(op)
            nxt = ops[i + 1] if i + 1 < len(ops) else text[:1]
            # '- -x' / '& &x': a space rather than parentheses, which would nest.
            if op in "-&" and nxt == op:
                parts.append(" ")
        parts.append(text)
        return "".join(parts), PREC_PREFIX

    def e_Binary(self, e: ast.Binary) -> tuple[str, int]:
        # Left-associative operators: walk down the left spine while the left operand needs
        # no parentheses. Comparisons do not chain, so both of their sides bind tighter.
        spine: list[ast.Binary] = []
        node: ast.Expr = e
        while isinstance(node, ast.Binary):
            prec = self._binary_prec(node.op)
            spine.append(node)
            lhs = node.lhs
            lhs_min = prec + 1 if prec == PREC_CMP else prec
            if (isinstance(lhs, ast.Binary) and self._binary_prec(lhs.op) >= lhs_min
                    and not self._clarify(node.op, lhs)):
                node = lhs
                continue
            break
        innermost = spine[-1]
        prec = self._binary_prec(innermost.op)
        lhs_min = prec + 1 if prec == PREC_CMP else prec
        text, lhs_prec = self._expr(innermost.lhs)
        if lhs_prec < lhs_min or self._clarify(innermost.op, innermost.lhs):
            text = f"({text})"
        parts = [text]
        for n in reversed(spine):
            rhs, rhs_prec = self._expr(n.rhs)
            if rhs_prec < self._binary_prec(n.op) + 1 or self._clarify(n.op, n.rhs):
                rhs = f"({rhs})"
            parts.append(f" {n.op} {rhs}")
        return "".join(parts), self._binary_prec(e.op)

    @staticmethod
    def _binary_prec(op: str) -> int:
        prec = BINARY_PREC.get(op)
        if prec is None:
            raise ValueError(f"unknown binary operator {op!r}")
        return prec

    @staticmethod
    def _clarify(parent_op: str, child: ast.Expr) -> bool:
        """Extra, meaning-preserving parentheses where C habits would misread Zig precedence:
        a bitwise or shift operand of a comparison (``(a & m) == 0``), a shift operand of a
        bitwise operator (``(x << 1) | y``) and ``and`` under ``or``. None of them can nest
        along an operator chain, so the parser's nesting limit is never approached."""
        if not isinstance(child, ast.Binary):
            return False
        p, c = BINARY_PREC.get(parent_op, -1), BINARY_PREC.get(child.op, -1)
        if p == PREC_CMP:
            return c in (PREC_BIT, PREC_SHIFT)
        if p == PREC_BIT:
            return c == PREC_SHIFT
        return parent_op == "or" and child.op == "and"

    def e_Call(self, e: ast.Call) -> tuple[str, int]:
        return self._postfix(e)

    def e_Index(self, e: ast.Index) -> tuple[str, int]:
        return self._postfix(e)

    def e_FieldAccess(self, e: ast.FieldAccess) -> tuple[str, int]:
        return self._postfix(e)

    def e_Deref(self, e: ast.Deref) -> tuple[str, int]:
        return self._postfix(e)

    def _postfix(self, e: ast.Expr) -> tuple[str, int]:
        chain: list[ast.Expr] = []
        node = e
        while isinstance(node, _POSTFIX_NODES):
            chain.append(node)
            node = node.callee if isinstance(node, ast.Call) else node.target
        parts = [self._postfix_target(node, dot=isinstance(chain[-1], (ast.FieldAccess,
                                                                        ast.Deref)))]
        for n in reversed(chain):
            if isinstance(n, ast.Call):
                parts.append("(" + ", ".join(self.full(a) for a in n.args) + ")")
            elif isinstance(n, ast.Index):
                if not n.indices:
                    raise ValueError("index expression without indices")
                parts.append("[" + ", ".join(self.full(i) for i in n.indices) + "]")
            elif isinstance(n, ast.FieldAccess):
                parts.append("." + ident(n.name))
            else:
                parts.append(".*")
        return "".join(parts), PREC_POSTFIX

    def e_BuiltinCall(self, e: ast.BuiltinCall) -> tuple[str, int]:
        if not _IDENT_RE.match(e.name):
            raise ValueError(f"not a valid builtin name: @{e.name!r}")
        args = ", ".join(self.full(a) for a in e.args)
        return f"@{e.name}({args})", PREC_PRIMARY

    def field_init(self, f: ast.FieldInit) -> str:
        return f".{ident(f.name)} = {self.full(f.value)}"

    def e_InitList(self, e: ast.InitList) -> tuple[str, int]:
        if e.fields and e.items:
            raise ValueError("initializer list with both named fields and positional items")
        self.level += 1
        try:
            parts = ([self.field_init(f) for f in e.fields] if e.fields
                     else [self.full(i) for i in e.items])
        finally:
            self.level -= 1
        if not parts:
            body = "{}"
        elif any("\n" in p for p in parts) or sum(len(p) + 2 for p in parts) > INIT_WIDTH:
            # One element per line with a trailing comma, as in the Cerebras layout files.
            body = "{\n" + "".join(f"{self.pad(1)}{p},\n" for p in parts) + self.pad() + "}"
        else:
            body = "{ " + ", ".join(parts) + " }"
        if e.type is None:
            return "." + body, PREC_PRIMARY
        # The parser takes '{' as an initializer after a name, field access, call, builtin
        # call, array type or struct type; parentheses keep a typed initializer or a prefix
        # operator from merging with the brace.
        text, prec = self._expr(e.type)
        if not (_is_type_prefix(e.type) or prec >= PREC_POSTFIX):
            text = f"({text})"
        return text + body, PREC_INIT

    def e_ArrayType(self, e: ast.ArrayType) -> tuple[str, int]:
        return self._prefix_type(e)

    def e_PointerType(self, e: ast.PointerType) -> tuple[str, int]:
        return self._prefix_type(e)

    def _prefix_type(self, e: ast.Expr) -> tuple[str, int]:
        """``[N]``, ``*``, ``*const ``, ``[*]``... prefixes, then the element type."""
        parts: list[str] = []
        node = e
        while isinstance(node, (ast.ArrayType, ast.PointerType)):
            if isinstance(node, ast.ArrayType):
                if not node.dims:
                    raise ValueError("array type without dimensions")
                parts.append("[" + ", ".join(self.full(d) for d in node.dims) + "]")
            else:
                parts.append(("[*]" if node.many else "*") + ("const " if node.const else ""))
            node = node.elem
        parts.append(self._type_operand(node))
        return "".join(parts), PREC_PREFIX

    def e_FnType(self, e: ast.FnType) -> tuple[str, int]:
        params = ", ".join(self._type_operand(p) for p in e.params)
        kw = "task" if e.is_task else "fn"
        return f"{kw}({params}) {self._type_operand(e.ret)}", PREC_PREFIX

    def container_field(self, f: ast.ContainerField) -> str:
        text = f"{ident(f.name)}: {self._type_operand(f.type)}"
        if f.default is not None:
            text += f" = {self.full(f.default)}"
        return text

    def enum_member(self, m: ast.EnumMember) -> str:
        if m.value is None:
            return ident(m.name)
        return f"{ident(m.name)} = {self.full(m.value)}"

    def _container(self, head: str, items: list[str], decls: list[ast.Stmt]) -> str:
        """``head { items, decls }``: one line when short and decl-free, else multi-line.

        ``items`` must already be rendered at ``self.level + 1``.
        """
        if not items and not decls:
            return head + " {}"
        if not decls and all("\n" not in i for i in items):
            one = head + " { " + ", ".join(items) + " }"
            if len(one) <= 80:
                return one
        lines = [head + " {"]
        lines += [self.pad(1) + i + "," for i in items]
        self.level += 1
        try:
            if items and decls:
                lines.append("")
            lines += [self.pad() + self.stmt(d) for d in decls]
        finally:
            self.level -= 1
        lines.append(self.pad() + "}")
        return "\n".join(lines)

    def e_StructType(self, e: ast.StructType) -> tuple[str, int]:
        if e.kind not in ("struct", "union"):
            raise ValueError(f"unknown container kind {e.kind!r}")
        head = e.kind if e.layout is None else f"{e.layout} {e.kind}"
        self.level += 1
        try:
            items = [self.container_field(f) for f in e.fields]
        finally:
            self.level -= 1
        return self._container(head, items, e.decls), PREC_PRIMARY

    def e_EnumType(self, e: ast.EnumType) -> tuple[str, int]:
        head = "enum" if e.tag is None else f"enum({self._type_operand(e.tag)})"
        self.level += 1
        try:
            items = [self.enum_member(m) for m in e.members]
        finally:
            self.level -= 1
        return self._container(head, items, e.decls), PREC_PRIMARY

    def e_IfExpr(self, e: ast.IfExpr) -> tuple[str, int]:
        # Walk the else-if chain iteratively so that long chains stay flat.
        links: list[str] = []
        final: str | None = None
        node: ast.Expr | None = e
        while isinstance(node, ast.IfExpr):
            then = self.full(node.then)
            if node.else_ is not None and _if_ends_open(node.then):
                then = f"({then})"          # else the `else` would bind to the inner if
            links.append(f"if ({self.full(node.cond)}) {then}")
            node = node.else_
        if node is not None:
            final = self.full(node)
        pieces = links + ([final] if final is not None else [])
        text = " else ".join(pieces)
        if len(pieces) > 1 and "\n" not in text and len(text) > IF_WIDTH:
            text = f"\n{self.pad(1)}else ".join(pieces)
        return text, PREC_OPEN

    def prong(self, p: ast.SwitchProng) -> str:
        if p.is_else:
            if p.cases:
                raise ValueError("else prong with case values")
            head = "else"
        else:
            if not p.cases:
                raise ValueError("switch prong without case values")
            head = ", ".join(self.full(c) for c in p.cases)
        body = p.body
        if isinstance(body, ast.Expr):
            return f"{head} => {self.full(body)}"
        if isinstance(body, ast.Stmt):
            # A simple statement ends at ',' rather than ';'.
            text = self.simple(body) if _is_simple_stmt(body) else self.stmt(body)
            return f"{head} => {text}"
        raise TypeError(f"cannot print switch prong body of type {type(body).__name__}")

    def e_Switch(self, e: ast.Switch) -> tuple[str, int]:
        self.level += 1
        try:
            prongs = [self.pad() + self.prong(p) + "," for p in e.prongs]
        finally:
            self.level -= 1
        head = f"switch ({self.full(e.subject)}) {{"
        if not prongs:
            return head + "}", PREC_PRIMARY
        return "\n".join([head, *prongs, self.pad() + "}"]), PREC_PRIMARY

    def e_BlockExpr(self, e: ast.BlockExpr) -> tuple[str, int]:
        # Unlabeled only as the body of an expression-switch prong (``0 => { ... },``).
        return self.block(e.block), PREC_PRIMARY

    def e_TensorAccess(self, e: ast.TensorAccess) -> tuple[str, int]:
        if not e.vars or len(e.vars) != len(e.extents):
            raise ValueError("tensor access needs one extent per induction variable")
        names = ", ".join(ident(v) for v in e.vars)
        extents = ", ".join(self.full(x) for x in e.extents)
        return f"|{names}|{{{extents}}} -> {self.expr(e.access, PREC_POSTFIX)}", PREC_OPEN

    def e_ComptimeExpr(self, e: ast.ComptimeExpr) -> tuple[str, int]:
        return f"comptime {self.expr(e.expr, PREC_PREFIX)}", PREC_OPEN

    # -- statements ----------------------------------------------------------------------------

    def stmt(self, s: ast.Stmt) -> str:
        """Text of ``s`` starting at the current column (nested lines carry their indent)."""
        method = getattr(self, "s_" + type(s).__name__, None)
        if method is None:
            raise TypeError(f"cannot print statement of type {type(s).__name__}")
        return method(s)

    def block(self, b: ast.Block) -> str:
        head = f"{ident(b.label)}: {{" if b.label is not None else "{"
        if not b.stmts:
            return head + "}"
        self.level += 1
        try:
            body = [self.pad() + self.stmt(s) for s in b.stmts]
        finally:
            self.level -= 1
        return "\n".join([head, *body, self.pad() + "}"])

    def s_Block(self, s: ast.Block) -> str:
        return self.block(s)

    def _stmt_expr(self, e: ast.Expr) -> str:
        text = self.full(e)
        return f"({text})" if _expr_stmt_needs_parens(text) else text

    def _tail(self, e: ast.Expr, before_else: bool) -> str:
        """A statement's trailing expression; before ``else`` it must not end in an
        else-less ``if``-expression (which would take that ``else``)."""
        text = self.full(e)
        return f"({text})" if before_else and _dangling_if_expr(e) else text

    def simple(self, s: ast.Stmt, before_else: bool = False) -> str:
        """A simple statement (see :func:`_is_simple_stmt`) without its final ``;``."""
        if isinstance(s, ast.ExprStmt):
            return self._stmt_expr(s.expr)
        if isinstance(s, ast.Assign):
            if s.op not in ASSIGN_OPS:
                raise ValueError(f"unknown assignment operator {s.op!r}")
            return f"{self._stmt_expr(s.target)} {s.op} {self._tail(s.value, before_else)}"
        if isinstance(s, ast.Return):
            return "return" if s.value is None else f"return {self._tail(s.value, before_else)}"
        if isinstance(s, ast.Break):
            text = "break"
            if s.label is not None:
                text += f" :{ident(s.label)}"
            if s.value is not None:
                text += f" {self._tail(s.value, before_else)}"
            return text
        if isinstance(s, ast.Continue):
            return "continue" if s.label is None else f"continue :{ident(s.label)}"
        raise TypeError(f"not a simple statement: {type(s).__name__}")

    def s_ExprStmt(self, s: ast.ExprStmt) -> str:
        if isinstance(s.expr, (ast.Switch, ast.BlockExpr)):
            return self.full(s.expr)
        return self.simple(s) + ";"

    def s_Assign(self, s: ast.Assign) -> str:
        return self.simple(s) + ";"

    def s_Return(self, s: ast.Return) -> str:
        return self.simple(s) + ";"

    def s_Break(self, s: ast.Break) -> str:
        return self.simple(s) + ";"

    def s_Continue(self, s: ast.Continue) -> str:
        return self.simple(s) + ";"

    def _body(self, s: ast.Stmt) -> str:
        """A branch/loop body after ``if (..)``, ``else`` or a loop header (leading space)."""
        return " " + self.stmt(s)

    def _then_before_else(self, s: ast.Stmt) -> str:
        """The then-branch of an ``if`` statement that has an ``else``.

        Zig style, which the parser follows: a simple statement (assignment, return,
        expression...) as a branch has no ``;`` before ``else``; the one ``;`` closes the
        whole ``if``. An expression at the end of that statement must not end in an
        else-less ``if``-expression, or it would take the ``else``.
        """
        if takes_else(s):
            logger.debug("wrapping then-branch in a block to avoid a dangling else")
            return " " + self.block(ast.Block([s]))
        if not _is_simple_stmt(s):
            return self._body(s)
        return " " + self.simple(s, before_else=True)

    def s_If(self, s: ast.If) -> str:
        parts: list[str] = []
        node = s
        while True:
            parts.append(f"if ({self.full(node.cond)})")
            if node.else_ is None:
                parts.append(self._body(node.then))
                break
            parts.append(self._then_before_else(node.then) + " else")
            if not isinstance(node.else_, ast.If):
                parts.append(self._body(node.else_))
                break
            parts.append(" ")
            node = node.else_
        return "".join(parts)

    def _loop_label(self, label: str | None) -> str:
        return "" if label is None else f"{ident(label)}: "

    def s_While(self, s: ast.While) -> str:
        text = f"{self._loop_label(s.label)}while ({self.full(s.cond)})"
        if s.cont is not None:
            if isinstance(s.cont, ast.Assign):
                cont = self.simple(s.cont)
            elif isinstance(s.cont, ast.ExprStmt):
                cont = self.full(s.cont.expr)
            else:
                raise TypeError(f"while continue-expression cannot be {type(s.cont).__name__}")
            text += f" : ({cont})"
        return text + self._body(s.body)

    def s_For(self, s: ast.For) -> str:
        if not s.captures:
            raise ValueError("for loop without captures")
        caps = ", ".join(ident(c) for c in s.captures)
        head = f"{self._loop_label(s.label)}for ({self.full(s.iterable)}) |{caps}|"
        return head + self._body(s.body)

    def s_ComptimeBlock(self, s: ast.ComptimeBlock) -> str:
        return "comptime " + self.block(s.block)

    def s_LayoutBlock(self, s: ast.LayoutBlock) -> str:
        return "layout " + self.block(s.block)

    def s_ColorDecl(self, s: ast.ColorDecl) -> str:
        return f"color {ident(s.name)};"

    def s_VarDecl(self, s: ast.VarDecl) -> str:
        if s.kind not in ("const", "var", "param"):
            raise ValueError(f"unknown declaration kind {s.kind!r}")
        parts = []
        if s.is_export:
            parts.append("export ")
        if s.is_extern:
            parts.append("extern ")
        if s.is_comptime:
            parts.append("comptime ")
        parts.append(f"{s.kind} {ident(s.name)}")
        if s.type is not None:
            if isinstance(s.type, ast.IfExpr) and s.align is None and s.linksection is None \
                    and s.linkname is None:
                # Followed by `=` or `;`: a bare if-type reads back the same and does not
                # add a nesting level (99 nested if-types must print within the parser's
                # limit of 100).
                parts.append(f": {self._expr(s.type)[0]}")
            else:
                parts.append(f": {self._type_operand(s.type)}")
        for word, val in (("align", s.align), ("linksection", s.linksection),
                          ("linkname", s.linkname)):
            if val is not None:
                parts.append(f" {word}({self.full(val)})")
        if s.init is not None:
            parts.append(f" = {self.full(s.init)}")
        return "".join(parts) + ";"

    def fn_param(self, p: ast.FnParam) -> str:
        text = "comptime " if p.is_comptime else ""
        typ = "anytype" if isinstance(p.type, ast.AnyType) else self._type_operand(p.type)
        if p.name is None:
            return text + typ
        return text + f"{ident(p.name)}: {typ}"

    def s_FnDecl(self, s: ast.FnDecl) -> str:
        parts = []
        if s.is_export:
            parts.append("export ")
        if s.is_extern:
            parts.append("extern ")
        if s.inline is not None:
            if s.inline not in ("inline", "noinline"):
                raise ValueError(f"unknown inline specifier {s.inline!r}")
            parts.append(s.inline + " ")
        parts.append("task " if s.is_task else "fn ")
        params = ", ".join(self.fn_param(p) for p in s.params)
        parts.append(f"{ident(s.name)}({params})")
        if s.linkname is not None:
            parts.append(f" linkname({self.full(s.linkname)})")
        if s.ret is not None:
            parts.append(" " + self._type_operand(s.ret))
        elif not s.is_task:
            raise ValueError(f"fn {s.name} has no return type")
        parts.append(";" if s.body is None else " " + self.block(s.body))
        return "".join(parts)
