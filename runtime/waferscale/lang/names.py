"""Name resolution of function and task bodies, ahead of evaluation.

The comptime evaluator only looks at a function body when the function runs, so an undeclared
identifier in a run-time function or task (a typo, a call of a function that does not exist)
would otherwise surface only at simulation time, or never for code the run does not reach.
:func:`check_module_names` walks every top-level function and task body of a CSL file once and
raises :class:`~waferscale.lang.errors.CslSemanticError` (``file:line:col``) at the first
identifier that is neither a local (parameter, ``var``/``const``, ``for`` capture, tensor
access variable) in scope at that point, nor a global of the file, nor a built-in name (a type
such as ``f32``/``u16``/``mem1d_dsd``, a direction such as ``EAST``, ``undefined``).

Struct and enum bodies inside a function are not checked here (their names resolve in their
own namespace); the evaluator reports those when it reaches them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Iterator

from . import ast as A
from . import types as T
from .errors import CslSemanticError

log = logging.getLogger(__name__)

#: Names that resolve without a declaration (besides type names: see types.lookup_type_name).
BUILTIN_NAMES = frozenset({"NORTH", "SOUTH", "EAST", "WEST", "RAMP", "undefined"})


def _is_builtin(name: str) -> bool:
    return name in BUILTIN_NAMES or T.lookup_type_name(name) is not None


def _children(node: A.Node) -> Iterator[A.Node]:
    for f in dataclasses.fields(node):
        if f.name == "span":
            continue
        value = getattr(node, f.name)
        if isinstance(value, A.Node):
            yield value
        elif isinstance(value, list):
            yield from (v for v in value if isinstance(v, A.Node))


class _Resolver:
    def __init__(self, globals_: Collection[str]) -> None:
        self.globals = globals_
        self.scopes: list[set[str]] = []

    def declared(self, name: str) -> bool:
        return (name in self.globals or any(name in s for s in self.scopes)
                or _is_builtin(name))

    def visit(self, node: A.Node) -> None:
        if isinstance(node, A.Ident):
            if not self.declared(node.name):
                raise CslSemanticError(f"use of undeclared identifier '{node.name}'", node.span)
        elif isinstance(node, A.Call) and isinstance(node.callee, A.Ident):
            if not self.declared(node.callee.name):
                raise CslSemanticError(f"call of undeclared function '{node.callee.name}'",
                                       node.callee.span)
            for a in node.args:
                self.visit(a)
        elif isinstance(node, A.Assign) and isinstance(node.target, A.Ident) and \
                node.target.name == "_" and node.op == "=":
            self.visit(node.value)          # `_ = expr;` discards a value
        elif isinstance(node, A.Block):
            self.scopes.append(set())
            for st in node.stmts:
                self.visit(st)
                if isinstance(st, A.VarDecl):
                    self.scopes[-1].add(st.name)
            self.scopes.pop()
        elif isinstance(node, A.For):
            self.visit(node.iterable)
            self.scopes.append(set(node.captures))
            self.visit(node.body)
            self.scopes.pop()
        elif isinstance(node, A.TensorAccess):
            for x in node.extents:
                self.visit(x)
            self.scopes.append(set(node.vars))
            self.visit(node.access)
            self.scopes.pop()
        elif isinstance(node, (A.StructType, A.EnumType, A.FnDecl)):
            return
        else:
            for child in _children(node):
                self.visit(child)

    def function(self, fn: A.FnDecl) -> None:
        if fn.body is None:
            return
        self.scopes = [{p.name for p in fn.params if p.name is not None}]
        for p in fn.params:
            self.visit(p.type)
        if fn.ret is not None:
            self.visit(fn.ret)
        self.visit(fn.body)


def check_module_names(module: A.Module, globals_: Collection[str]) -> None:
    """Check every top-level function and task body of ``module`` (see the module docstring);
    ``globals_`` are the file's global names."""
    resolver = _Resolver(globals_)
    for d in module.decls:
        if isinstance(d, A.FnDecl):
            resolver.function(d)
    log.debug("names checked in %s", module.path)
