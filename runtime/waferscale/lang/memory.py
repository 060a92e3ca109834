"""PE memory: where a PE program's globals live, and whether they fit in 48 KiB.

Model (see docs/frontend.md, "Memory"):

* A PE has 48 KiB of SRAM addressed in 16-bit words (24,576 words); code and data share it.
* Only the globals that compiled code uses are placed (lazy analysis: layout._live_code and
  docs/frontend.md); an unused, unexported global takes no memory.
* Globals are placed in declaration order (per module instance, imports first as they were
  elaborated) at their alignment: 32-bit types and arrays of them on 4-byte boundaries,
  16-bit types on 2-byte boundaries, or the declaration's ``align(N)`` (bytes) when larger.
* Code size is an **estimate** (cslc's real figure needs ``cs_readelf``): a fixed runtime
  base, the memcpy library when imported, and a per-AST-node cost for every fn/task body.
  The constants are in :data:`CODE_MODEL`; change them there only with a measurement. A
  PE's code is compiled for its own comptime values, so an ``if`` whose condition is
  comptime-known on the PE counts only the branch it takes (:func:`live_node_count`): a
  role's code is not charged to the PEs of other roles.

Overflow is a compile-time :class:`~waferscale.lang.errors.CslLayoutError` naming the PE
program, the PEs that run it, the largest symbols and the byte counts.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import ast as A
from . import types as T
from .errors import CslLayoutError
from .values import GlobalVar

PE_MEMORY_BYTES = 48 * 1024

CODE_MODEL = {
    "base_bytes": 1024,          # start-up code, task table, stack reserve (assumption)
    "memcpy_bytes": 3072,        # memcpy's command handling on every PE (assumption)
    "bytes_per_node": 6,         # ~3 instructions of 16 bits per AST node of fn/task bodies
}


@dataclass(frozen=True)
class Placement:
    var: GlobalVar
    address: int                 # byte address (always even: memory is 16-bit addressed)
    size: int                    # bytes


@dataclass
class MemoryMap:
    placements: list[Placement] = field(default_factory=list)
    data_bytes: int = 0
    code_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return self.data_bytes + self.code_bytes

    def address_of(self, var: GlobalVar) -> int:
        for p in self.placements:
            if p.var is var:
                return p.address
        raise KeyError(var.name)


def _align_of(t: T.Type) -> int:
    if isinstance(t, T.ArrayT):
        return _align_of(t.elem)
    s = T.size_in_bytes(t) or 2
    return 4 if s >= 4 else 2


def _explicit_align(var: GlobalVar) -> int:
    d = var.decl
    if isinstance(d, A.VarDecl) and isinstance(d.align, A.IntLit):
        return max(2, d.align.value)
    return 2


def estimate_code_bytes(fn_decls: list[A.FnDecl], imports_memcpy: bool,
                        node_counts: list[int] | None = None) -> int:
    """The code size model; ``node_counts`` (one per declaration, e.g. :func:`live_node_count`
    on a PE) replaces the whole bodies' counts."""
    nodes = sum(node_counts) if node_counts is not None else sum(
        sum(1 for _ in d.body.walk()) for d in fn_decls if d.body is not None)
    return (CODE_MODEL["base_bytes"] + (CODE_MODEL["memcpy_bytes"] if imports_memcpy else 0)
            + CODE_MODEL["bytes_per_node"] * nodes)


# ---- comptime-pruned node counts ----

#: A name's comptime value on one PE (bool or int), or None when unknown there. Names are
#: identifiers, ``"p.field"`` for a field of a struct identifier, and ``"@is_arch(wse3)"``.
Lookup = Callable[[str], Any]

_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "%": operator.mod,
    "/": operator.floordiv, "==": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


def _name_of(e: A.Expr) -> str | None:
    if isinstance(e, A.Ident):
        return e.name
    if isinstance(e, A.FieldAccess) and isinstance(e.target, A.Ident):
        return f"{e.target.name}.{e.name}"
    if isinstance(e, A.BuiltinCall) and e.name == "is_arch" and len(e.args) == 1 \
            and isinstance(e.args[0], A.StringLit):
        return f"@is_arch({e.args[0].value})"
    return None


def comptime_value(e: A.Expr, lookup: Lookup) -> Any:
    """``e``'s value from literals, known names and integer/boolean operators, or None when
    it depends on anything else (a run-time value, a call, an unknown name)."""
    if isinstance(e, (A.BoolLit, A.IntLit)):
        return e.value
    name = _name_of(e)
    if name is not None:
        v = lookup(name)
        return v if isinstance(v, (bool, int)) else None
    if isinstance(e, A.Unary) and e.op in ("!", "-"):
        v = comptime_value(e.operand, lookup)
        if v is None:
            return None
        return (not v) if e.op == "!" else -v
    if isinstance(e, A.Binary):
        a = comptime_value(e.lhs, lookup)
        if e.op in ("and", "or"):
            # Decided by either side alone: false for "and", true for "or".
            decisive = e.op == "or"
            b = comptime_value(e.rhs, lookup)
            if (a is not None and bool(a) == decisive) or (b is not None and bool(b) == decisive):
                return decisive
            return None if a is None or b is None else not decisive
        b = comptime_value(e.rhs, lookup)
        f = _BINARY.get(e.op)
        if a is None or b is None or f is None or (e.op in ("/", "%") and b == 0):
            return None
        return f(a, b)
    if isinstance(e, A.IfExpr):
        c = comptime_value(e.cond, lookup)
        if c is None:
            return None
        branch = e.then if c else e.else_
        return None if branch is None else comptime_value(branch, lookup)
    if isinstance(e, A.BuiltinCall) and e.name == "as" and len(e.args) == 2:
        return comptime_value(e.args[1], lookup)
    return None


def _local_names(fn: A.FnDecl) -> frozenset[str]:
    names = {p.name for p in fn.params if p.name is not None}
    if fn.body is not None:
        names |= {n.name for n in fn.body.walk() if isinstance(n, A.VarDecl)}
    return frozenset(names)


def condition_names(fn: A.FnDecl) -> tuple[str, ...]:
    """The names (see :data:`Lookup`) the ``if`` conditions of ``fn``'s body use, sorted; its
    own parameters and locals excluded. A pruned count depends on their values only."""
    if fn.body is None:
        return ()
    local = _local_names(fn)
    out: set[str] = set()
    for n in fn.body.walk():
        if isinstance(n, (A.If, A.IfExpr)):
            for m in n.cond.walk():
                name = _name_of(m) if isinstance(m, A.Expr) else None
                if name is not None and name.split(".")[0] not in local:
                    out.add(name)
    return tuple(sorted(out))


def live_node_count(fn: A.FnDecl, lookup: Lookup) -> int:
    """AST nodes of ``fn``'s body that a PE compiles: an ``if`` (statement or expression)
    whose condition is comptime-known there counts itself and the branch it takes only."""
    if fn.body is None:
        return 0
    local = _local_names(fn)

    def known(name: str) -> Any:
        return None if name.split(".")[0] in local else lookup(name)

    n = 0
    stack: list[A.Node] = [fn.body]
    while stack:
        node = stack.pop()
        n += 1
        if isinstance(node, (A.If, A.IfExpr)):
            c = comptime_value(node.cond, known)
            if c is not None:
                taken = node.then if c else node.else_
                if taken is not None:
                    stack.append(taken)
                continue
        stack.extend(node.children())
    return n


def place_globals(variables: list[GlobalVar], code_bytes: int) -> MemoryMap:
    """Assign byte addresses to ``variables`` (data starts at 0; code is accounted, not
    placed)."""
    mm = MemoryMap(code_bytes=code_bytes)
    addr = 0
    seen: set[int] = set()
    for v in variables:
        if id(v) in seen:
            continue
        seen.add(id(v))
        size = T.size_in_bytes(v.type)
        if size is None:
            continue
        align = max(_align_of(v.type), _explicit_align(v))
        addr = (addr + align - 1) // align * align
        mm.placements.append(Placement(v, addr, size))
        addr += size
    mm.data_bytes = addr
    return mm


def check_fits(mm: MemoryMap, program_name: str, pes: list[tuple[int, int]],
               span=None, limit: int = PE_MEMORY_BYTES) -> None:
    if mm.total_bytes <= limit:
        return
    biggest = sorted(mm.placements, key=lambda p: -p.size)[:5]
    listing = ", ".join(f"{p.var.qualname} ({p.size} B)" for p in biggest)
    where = f"PE({pes[0][0]},{pes[0][1]})" + (f" and {len(pes) - 1} other PE(s)"
                                                if len(pes) > 1 else "")
    raise CslLayoutError(
        f"{program_name} on {where} needs {mm.total_bytes} bytes but a PE has {limit}: "
        f"data {mm.data_bytes} B + estimated code {mm.code_bytes} B; largest symbols: "
        f"{listing}", span)
