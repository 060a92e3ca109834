"""The typed abstract syntax tree of CSL.

Protocol shared by the parser, the pretty-printer and the evaluator:

- Every node is a dataclass deriving from :class:`Node`. Its ``span`` is keyword-only and
  excluded from ``==``, so two trees compare equal when they mean the same program regardless
  of where they came from (the round-trip property: ``parse(print(t)) == t``).
- Lists are Python lists; optional children are ``None``.
- Parentheses are not nodes: the printer re-inserts them from operator precedence.
- Literal nodes keep their source spelling in ``text`` (not compared) so the printer can
  reproduce ``0xFF`` or ``1_000`` faithfully; a synthetic literal has ``text=None``.
- Statement-position ``switch``/labeled blocks are :class:`ExprStmt` wrapping the expression;
  ``Block.label`` is only set on the block of a :class:`BlockExpr`.
- Zig-style enum literals ``.name`` are stored as ``Ident(".name")``.

Operator spellings are stored as the CSL token text (``"+"``, ``"<<="``, ``"and"``...).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Iterator, Union

from .source import NO_SPAN, Span


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    """The dataclass fields of a node class but ``span`` (dataclasses.fields is slow)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls) if f.name != "span")
    return names


@dataclass
class Node:
    span: Span = field(default=NO_SPAN, compare=False, repr=False, kw_only=True)

    def children(self) -> Iterator["Node"]:
        """Direct child nodes in field order (lists flattened)."""
        for name in _field_names(type(self)):
            v = getattr(self, name)
            if isinstance(v, Node):
                yield v
            elif isinstance(v, list):
                for item in v:
                    if isinstance(item, Node):
                        yield item

    def walk(self) -> Iterator["Node"]:
        """Pre-order traversal of the subtree (iterative: chains of thousands of nodes are
        fine)."""
        stack: list[Node] = [self]
        while stack:
            n = stack.pop()
            yield n
            stack.extend(reversed(list(n.children())))


# ----------------------------------------------------------------------------------------------
# Expressions


@dataclass
class Expr(Node):
    pass


@dataclass
class Ident(Expr):
    """A name: variable, function, type name (``f32``, ``color``), ``NORTH``, ``undefined``."""
    name: str


@dataclass
class IntLit(Expr):
    value: int
    text: str | None = field(default=None, compare=False)


@dataclass
class FloatLit(Expr):
    value: float
    text: str | None = field(default=None, compare=False)


@dataclass
class CharLit(Expr):
    """A character literal; ``value`` is its Unicode code point (type comptime_int)."""
    value: int
    text: str | None = field(default=None, compare=False)


@dataclass
class StringLit(Expr):
    """A string literal (escapes decoded). ``multiline`` marks the ``\\\\`` form."""
    value: str
    multiline: bool = field(default=False, compare=False)


@dataclass
class BoolLit(Expr):
    value: bool


@dataclass
class Unary(Expr):
    """Prefix operator: ``-``, ``!``, ``~`` or ``&`` (address-of)."""
    op: str
    operand: Expr


@dataclass
class Binary(Expr):
    """Binary operator: arithmetic, shifts, bitwise, comparisons, ``and``, ``or``."""
    op: str
    lhs: Expr
    rhs: Expr


@dataclass
class Call(Expr):
    callee: Expr
    args: list[Expr]


@dataclass
class BuiltinCall(Expr):
    """``@name(args)``; ``name`` excludes the ``@``."""
    name: str
    args: list[Expr]


@dataclass
class Index(Expr):
    """``a[i]`` or multi-dimensional ``a[i, j]``."""
    target: Expr
    indices: list[Expr]


@dataclass
class FieldAccess(Expr):
    """``a.name``."""
    target: Expr
    name: str


@dataclass
class Deref(Expr):
    """``p.*``."""
    target: Expr


@dataclass
class FieldInit(Node):
    """``.name = value`` inside an initializer list."""
    name: str
    value: Expr


@dataclass
class InitList(Expr):
    """Braced initializer.

    ``type is None`` for anonymous literals ``.{ .a = 1 }`` / ``.{ 1, 2 }`` / ``.{}``; otherwise a
    typed literal ``[3]i16 { 1, 2, 3 }`` or ``complex { .re = 1.0 }``. At most one of ``fields``
    and ``items`` is non-empty; both empty is ``.{}`` / ``T{}``.
    """
    type: Expr | None
    fields: list[FieldInit] = field(default_factory=list)
    items: list[Expr] = field(default_factory=list)


@dataclass
class ArrayType(Expr):
    """``[N]T`` or ``[N, M]T``."""
    dims: list[Expr]
    elem: Expr


@dataclass
class PointerType(Expr):
    """``*T``, ``*const T``, ``[*]T``, ``[*]const T``. ``many`` selects ``[*]``."""
    elem: Expr
    many: bool = False
    const: bool = False


@dataclass
class FnType(Expr):
    """``fn(T, U) R``, or ``task(T) R`` (a task's type: the SDK's 25-pt-stencil declares
    ``param callback: task () void;`` and binds a task to it)."""
    params: list[Expr]
    ret: Expr
    is_task: bool = False


@dataclass
class ContainerField(Node):
    """``name: T = default`` inside a struct/union."""
    name: str
    type: Expr
    default: Expr | None = None


@dataclass
class StructType(Expr):
    """``struct { ... }``, ``packed struct``, ``extern struct``, ``union { ... }``.

    ``decls`` holds nested declarations (consts, fns) for Zig-style namespaced structs.
    """
    fields: list[ContainerField]
    decls: list["Stmt"] = field(default_factory=list)
    kind: str = "struct"            # "struct" | "union"
    layout: str | None = None       # None | "packed" | "extern"


@dataclass
class EnumMember(Node):
    name: str
    value: Expr | None = None


@dataclass
class EnumType(Expr):
    """``enum(u16) { red, white = 1, blue }``; ``tag`` is None for ``enum { ... }``."""
    tag: Expr | None
    members: list[EnumMember]
    decls: list["Stmt"] = field(default_factory=list)


@dataclass
class IfExpr(Expr):
    """``if (c) a else b`` as an expression; ``else_`` may be None (comptime-pruned form)."""
    cond: Expr
    then: Expr
    else_: Expr | None = None


@dataclass
class SwitchProng(Node):
    """``a, b => body`` or ``else => body``.

    In an expression switch ``body`` is an Expr; in a statement switch it may be any Stmt
    (a Block, an Assign, a Return...).
    """
    cases: list[Expr]
    body: Node
    is_else: bool = False


@dataclass
class Switch(Expr):
    subject: Expr
    prongs: list[SwitchProng]


@dataclass
class BlockExpr(Expr):
    """A labeled block used as an expression: ``blk: { ...; break :blk v; }``."""
    block: "Block"


@dataclass
class TensorAccess(Expr):
    """``|i, j|{N, M} -> A[i, 2*j + 1]``; ``access`` is the indexed expression."""
    vars: list[str]
    extents: list[Expr]
    access: Expr


@dataclass
class ComptimeExpr(Expr):
    """``comptime expr``: force compile-time evaluation."""
    expr: Expr


@dataclass
class AnyType(Expr):
    """The ``anytype`` parameter type."""


# ----------------------------------------------------------------------------------------------
# Statements


@dataclass
class Stmt(Node):
    pass


@dataclass
class Block(Stmt):
    stmts: list[Stmt]
    label: str | None = None


@dataclass
class ExprStmt(Stmt):
    expr: Expr


@dataclass
class Assign(Stmt):
    """``target op value`` with op in ``= += -= *= /= %= <<= >>= &= |= ^=``."""
    target: Expr
    op: str
    value: Expr


@dataclass
class Return(Stmt):
    value: Expr | None = None


@dataclass
class Break(Stmt):
    label: str | None = None
    value: Expr | None = None


@dataclass
class Continue(Stmt):
    label: str | None = None


@dataclass
class If(Stmt):
    """Statement if: branches are statements (a Block or a single statement)."""
    cond: Expr
    then: Stmt
    else_: Stmt | None = None


@dataclass
class While(Stmt):
    """``label: while (cond) : (cont) body``; ``cont`` is an Assign or ExprStmt."""
    cond: Expr
    body: Stmt
    cont: Stmt | None = None
    label: str | None = None


@dataclass
class For(Stmt):
    """``label: for (iterable) |elem, idx| body``."""
    iterable: Expr
    captures: list[str]
    body: Stmt
    label: str | None = None


@dataclass
class ComptimeBlock(Stmt):
    """``comptime { ... }`` at top level, in a struct, or inside a function body."""
    block: Block


# ----------------------------------------------------------------------------------------------
# Declarations (also statements: local var/const)


@dataclass
class Decl(Stmt):
    pass


@dataclass
class VarDecl(Decl):
    """``[export|extern] [comptime] (const|var|param) name [: T] [align(..)] [linksection(..)]
    [linkname(..)] [= init];``"""
    kind: str                        # "const" | "var" | "param"
    name: str
    type: Expr | None = None
    init: Expr | None = None
    is_comptime: bool = False
    is_export: bool = False
    is_extern: bool = False
    align: Expr | None = None
    linksection: Expr | None = None
    linkname: Expr | None = None


@dataclass
class FnParam(Node):
    """A parameter; ``name`` is None for the bare-type form of extern fns."""
    name: str | None
    type: Expr                       # AnyType() for anytype
    is_comptime: bool = False


@dataclass
class FnDecl(Decl):
    """``fn`` or ``task`` definition (``body`` is None for an extern prototype)."""
    name: str
    params: list[FnParam]
    ret: Expr | None                 # None only for tasks written without a return type
    body: Block | None
    is_task: bool = False
    is_export: bool = False
    is_extern: bool = False
    inline: str | None = None        # None | "inline" | "noinline"
    linkname: Expr | None = None


@dataclass
class LayoutBlock(Decl):
    """The top-level ``layout { ... }`` block."""
    block: Block


@dataclass
class ColorDecl(Decl):
    """Legacy top-level ``color name;`` declaration (a param of type color)."""
    name: str


@dataclass
class Module(Node):
    """A parsed CSL file: VarDecl, FnDecl, ComptimeBlock, LayoutBlock, ColorDecl in order."""
    decls: list[Stmt]
    path: str | None = field(default=None, compare=False)



def fn_local_names(fn: FnDecl) -> frozenset[str]:
    """The names ``fn`` binds itself: its parameters, the variables its body declares and the
    captures of its ``for`` loops (anywhere in the body: a name here is a run-time local
    wherever it appears, the conservative reading the compile-time checks want)."""
    names = {p.name for p in fn.params if p.name is not None}
    if fn.body is not None:
        for n in fn.body.walk():
            if isinstance(n, VarDecl):
                names.add(n.name)
            elif isinstance(n, For):
                names.update(n.captures)
    return frozenset(names)


AnyNode = Union[Expr, Stmt, Node]
