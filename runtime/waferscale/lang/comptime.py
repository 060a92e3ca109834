"""Compile-time evaluation of CSL.

The evaluator is a tree-walking interpreter over :mod:`waferscale.lang.ast` that computes
everything cslc computes before code generation:

- globals are evaluated lazily on first use (CSL lets a global be used before its declaration);
  a reference cycle is an error;
- ``param``s come from the importer (``@import_module`` / ``@set_tile_code`` bindings or
  ``--params``); an unbound param without a default is an error;
- arithmetic follows CSL's typing rules: both operands of a binary operator have the same type
  unless one is ``comptime_int``/``comptime_float``, which coerces (with a range check) to the
  other side; there is no C-style promotion. ``comptime_int`` arithmetic is exact;
  fixed-width arithmetic that overflows at comptime is an error (as in Zig);
- ``if``/``switch`` with a comptime condition evaluate only the taken branch (the other is
  never analysed); ``and``/``or`` short-circuit;
- functions run at comptime when called from comptime code; ``comptime`` parameters and
  ``anytype`` parameters are bound per call (monomorphization is implicit);
- runtime state (global ``var``s, runtime builtins) cannot be read at comptime: that is a
  diagnostic, not a crash.

Every user error is a :class:`CslError` with the span of the offending node. Evaluation is
bounded: loops and calls share a branch quota (``EvalOptions.branch_quota``), recursion has a
depth limit, so no input can hang the front end.
"""

from __future__ import annotations

import logging
import math
import operator
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, cast

import numpy as np

from . import ast as A
from . import types as T
from .errors import CslError, CslImportError, CslSemanticError
from .names import check_module_names
from .source import Span
from .values import (VOID_VAL, ArrayData, FnVal, GlobalVar, PtrVal, TensorAccessVal,
                     Val, describe, numpy_dtype, round_float)

log = logging.getLogger(__name__)

DIRECTIONS = ("NORTH", "SOUTH", "EAST", "WEST", "RAMP")

# The evaluator recurses over the AST and over comptime calls; EvalOptions.max_depth bounds
# the calls and this limit leaves room for deep expressions between them (Python 3.11 runs
# Python-to-Python calls without growing the C stack).
if sys.getrecursionlimit() < 20000:
    sys.setrecursionlimit(20000)


@dataclass(frozen=True)
class EvalOptions:
    """Knobs of the comptime evaluator.

    Attributes:
        arch: ``"wse2"`` or ``"wse3"``; answers ``@is_arch``.
        branch_quota: total loop iterations + calls allowed per compilation (infinite-loop guard).
        max_depth: maximum nesting of comptime calls.
        import_paths: extra directories searched by ``@import_module("file.csl")``.
    """
    arch: str = "wse3"
    branch_quota: int = 2_000_000
    max_depth: int = 150
    import_paths: tuple[str, ...] = ()


class _Break(Exception):
    def __init__(self, label: str | None, value: Val | None) -> None:
        self.label, self.value = label, value


class _Continue(Exception):
    def __init__(self, label: str | None) -> None:
        self.label = label


class _Return(Exception):
    def __init__(self, value: Val) -> None:
        self.value = value


@dataclass(slots=True)
class RuntimeRef:
    """Payload of a Val that names runtime storage (a global var) rather than a known value."""
    var: GlobalVar


@dataclass(slots=True)
class RuntimeIntrinsic:
    """A library function that only exists at run time (implemented by the simulator)."""
    qualname: str
    params: tuple[T.Type | None, ...]
    ret: T.Type

    @property
    def __name__(self) -> str:  # noqa: D401 - mimic functions for FnVal.name
        return self.qualname


class Cell:
    """A local variable slot."""
    __slots__ = ("type", "val", "mutable", "name")

    def __init__(self, name: str, type_: T.Type, val: Val | None, mutable: bool) -> None:
        self.name, self.type, self.val, self.mutable = name, type_, val, mutable


class Scope:
    """Lexical scope: local cells, chained to a parent, ending at a module instance."""
    __slots__ = ("vars", "parent", "module")

    def __init__(self, parent: "Scope | None", module: "ModuleInstance") -> None:
        self.vars: dict[str, Cell] = {}
        self.parent = parent
        self.module = module

    def find(self, name: str) -> Cell | None:
        s: Scope | None = self
        while s is not None:
            c = s.vars.get(name)
            if c is not None:
                return c
            s = s.parent
        return None


@dataclass
class GlobalEntry:
    decl: A.Node
    state: str = "new"            # new | busy | done
    value: Val | None = None
    symbol: GlobalVar | None = None   # storage of an exported runtime-typed const


class ModuleInstance:
    """One instance of a CSL file: its globals and the param values it was bound with.

    ``program`` is the :class:`ProgramRecord` of the PE program the instance belongs to (None
    while evaluating the layout file). Native libraries subclass this and provide members in
    Python.
    """

    is_stdlib = False

    def __init__(self, ctx: "Compilation", path: str, module: A.Module | None,
                 params: dict[str, Val], *, name: str, program: "ProgramRecord | None",
                 bind_span: Span | None = None) -> None:
        self.ctx = ctx
        self.path = path
        self.ast = module
        self.params = dict(params)
        self.name = name
        self.symbol_prefix = ""
        self.program = program
        self.bind_span = bind_span
        self.globals: dict[str, GlobalEntry] = {}
        if program is not None and not self.is_stdlib and module is not None:
            program.modules.append(self)
        self.comptime_blocks: list[A.ComptimeBlock] = []
        self.layout_blocks: list[A.LayoutBlock] = []
        self.scope = Scope(None, self)
        # For struct namespaces: the scope the struct was defined in (names resolve outward).
        self.outer: Scope | None = None
        if module is not None:
            self._collect(module)
            # A file's function and task bodies are name-checked once per compilation, before
            # anything runs (struct namespaces, path None, resolve through their outer scope).
            if module.path is not None and not self.is_stdlib and \
                    id(module) not in ctx.names_checked:
                ctx.names_checked.add(id(module))
                check_module_names(module, self.globals)

    def _collect(self, module: A.Module) -> None:
        for d in module.decls:
            if isinstance(d, A.ComptimeBlock):
                self.comptime_blocks.append(d)
            elif isinstance(d, A.LayoutBlock):
                self.layout_blocks.append(d)
            else:
                name = getattr(d, "name", None)
                if name is None:
                    continue
                prev = self.globals.get(name)
                if prev is not None:
                    raise CslSemanticError(f"redefinition of '{name}'", d.span).with_note(
                        "previous definition is here", prev.decl.span)
                self.globals[name] = GlobalEntry(d)
        # Params bound by the importer must exist (unknown names only warn, as in cslc).
        for pname in self.params:
            e = self.globals.get(pname)
            if e is None or not (isinstance(e.decl, A.ColorDecl) or
                                 (isinstance(e.decl, A.VarDecl) and e.decl.kind == "param")):
                msg = f"{self.path}: binding for unknown param '{pname}' ignored"
                log.warning(msg)
                self.ctx.warnings.append(msg)

    def member(self, interp: "Interp", name: str, span: Span) -> Val:
        """``module.name`` from another module."""
        if name not in self.globals:
            raise CslSemanticError(f"module '{self.name}' has no member '{name}'", span)
        return interp.global_value(self, name, span)

    def __repr__(self) -> str:
        return f"<module {self.name} ({self.path})>"


@dataclass
class ProgramRecord:
    """What a PE program's top-level comptime blocks declared (consumed by the simulator)."""
    path: str
    task_bindings: dict[tuple[str, int], FnVal] = field(default_factory=dict)
    initially_active: set[int] = field(default_factory=set)
    initially_blocked: set[tuple[str, int]] = field(default_factory=set)
    queues: dict[tuple[str, int], dict[str, Val]] = field(default_factory=dict)
    local_color_configs: dict[int, Val] = field(default_factory=dict)
    # @set_teardown_handler: color -> the fn run by the teardown task (ID 29) when a
    # teardown command reaches this PE's router on that color.
    teardown_handlers: dict[int, FnVal] = field(default_factory=dict)
    # The program uses <tile_config>'s input_queue_config (rebinds input queues at run time):
    # a wavelet for its CE on a color no queue takes waits instead of being an error.
    rebinds_input_queues: bool = False
    exported_symbols: dict[str, tuple[Any, Span]] = field(default_factory=dict)
    rpc_task: int | None = None
    globals: list[GlobalVar] = field(default_factory=list)
    # Hardware IDs created by user code (not by libraries): (kind, id) -> first span.
    user_ids: dict[tuple[str, int], Span] = field(default_factory=dict)
    imports_memcpy: bool = False
    memcpy_import_span: Span | None = None
    # Every user module instance of this program (the PE file first, then its imports).
    modules: list["ModuleInstance"] = field(default_factory=list)
    # Storage of the function locals whose address is taken (`&data`), by local_key of
    # their declaration: layout._place_local_storage.
    local_storage: dict[tuple[str, int], GlobalVar] = field(default_factory=dict)
    # @load_to_dsr in a top-level comptime block, in order: (DSR, DSD, options, the call);
    # the DSRs hold these DSDs from the program's start (builtins._preload_dsr, sim/dsd.py).
    dsr_preloads: list[tuple[Any, Val, dict[str, Val], A.BuiltinCall]] = field(
        default_factory=list)


def local_key(d: A.Node) -> tuple[str, int]:
    """The key of a local declaration in ProgramRecord.local_storage (its file and offset:
    stable across the compile cache's pickling, unlike the node's identity)."""
    return (str(d.span.file.path) if d.span.file is not None else "", d.span.start)


Builtin = Callable[["Interp", A.BuiltinCall, Scope], Val]


class Compilation:
    """State shared by all module instances of one compilation (one ``cslc`` run)."""

    def __init__(self, options: EvalOptions) -> None:
        self.options = options
        self.branches = 0
        self.depth = 0
        self._ast_cache: dict[str, A.Module] = {}
        self._resolved: dict[Path, str] = {}       # path -> str(path.resolve())
        # Set while the layout block runs (a layout.LayoutBuilder).
        self.layout_builder: Any = None
        # The finished layout block's builder, so PE programs can call @get_rectangle.
        self.layout_done: Any = None
        # (location, text) of every @comptime_print, and non-fatal diagnostics.
        self.prints: list[tuple[str, str]] = []
        self.warnings: list[str] = []
        self._warned: set[str] = set()
        # ids of the (cached) file ASTs whose function bodies names.py has checked.
        self.names_checked: set[int] = set()
        # Facts derived from the ASTs, computed once per compilation however many programs
        # instantiate a file: (what, id(node)) -> (node, fact); the node is kept so that its
        # id is never reused.
        self.memo: dict[tuple[Any, ...], tuple[Any, Any]] = {}
        # Files an @import_module looked for and did not find (resolved paths).
        self.probed: set[str] = set()
        # Memoised calls (Interp.call): key -> (owner, decl, result, branches, depth).
        self.calls: dict[Any, tuple[Any, Any, Val, int, int]] = {}
        self.peak = 0                  # deepest call depth reached (for the memo)
        # Values of literals evaluated once and shared (Interp._e_InitList), by id.
        self.static_vals: dict[int, Val] = {}

    def warn_once(self, msg: str) -> None:
        """A non-fatal diagnostic, recorded (and logged) once however often it recurs."""
        if msg not in self._warned:
            self._warned.add(msg)
            log.warning(msg)
            self.warnings.append(msg)

    def __getstate__(self) -> dict[str, Any]:
        # (A compilation is pickled with its elaborated layout by the compile cache. What is
        # keyed by object ids must not outlive the objects' identities.)
        d = dict(self.__dict__)
        d["memo"], d["names_checked"], d["_resolved"], d["calls"] = {}, set(), {}, {}
        d["static_vals"] = {}
        return d

    def load_ast(self, path: Path, span: Span | None) -> A.Module:
        from .parser import parse_file
        key = self._resolved.get(path)
        if key is None:
            key = self._resolved[path] = str(path.resolve())
        m = self._ast_cache.get(key)
        if m is None:
            if not path.is_file():
                raise CslImportError(f"cannot find file '{path}'", span)
            m = parse_file(path)
            self._ast_cache[key] = m
        return m


# ----------------------------------------------------------------------------------------------
# The interpreter


def _t(v: Val) -> T.Type:
    return v.type


class Interp:
    """Evaluates expressions and statements at compile time for one compilation."""

    def __init__(self, ctx: Compilation) -> None:
        self.ctx = ctx
        from .builtins import BUILTINS
        self.builtins: dict[str, Builtin] = BUILTINS

    def __getstate__(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d.pop("builtins", None)              # the module's table (closures): not pickled
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)
        from .builtins import BUILTINS
        self.builtins = BUILTINS

    # -- errors ---------------------------------------------------------------------------------

    @staticmethod
    def err(msg: str, node: A.Node | Span | None) -> CslSemanticError:
        span = node.span if isinstance(node, A.Node) else node
        return CslSemanticError(msg, span)

    def tick(self, node: A.Node) -> None:
        self.ctx.branches += 1
        if self.ctx.branches > self.ctx.options.branch_quota:
            raise self.err(f"comptime evaluation exceeded {self.ctx.options.branch_quota} "
                           "branches (an infinite loop?)", node)

    # -- globals --------------------------------------------------------------------------------

    def global_value(self, mod: ModuleInstance, name: str, span: Span | None) -> Val:
        entry = mod.globals[name]
        if entry.state == "done":
            assert entry.value is not None
            return entry.value
        if entry.state == "busy":
            raise CslSemanticError(f"dependency loop: '{name}' depends on its own value", span
                                   ).with_note(f"'{name}' is declared here", entry.decl.span)
        entry.state = "busy"
        try:
            entry.value = self._eval_global(mod, name, entry.decl)
        except BaseException:
            entry.state = "new"
            raise
        entry.state = "done"
        return entry.value

    def _eval_global(self, mod: ModuleInstance, name: str, d: A.Node) -> Val:
        if isinstance(d, A.FnDecl):
            return Val(self.fn_type(d, mod.scope), FnVal(d, mod))
        if isinstance(d, A.ColorDecl):
            if name in mod.params:
                return self.coerce(mod.params[name], T.COLOR, d)
            raise CslSemanticError(f"color '{name}' of {Path(mod.path).name} is not bound",
                                   d.span)
        assert isinstance(d, A.VarDecl)
        scope = mod.scope
        declared = self.eval_type(d.type, scope) if d.type is not None else None
        if d.kind == "param":
            if name in mod.params:
                v = mod.params[name]
                return self.coerce(v, declared, d) if declared is not None else v
            if d.init is not None:
                v = self.eval(d.init, scope)
                return self.coerce(v, declared, d.init) if declared is not None else v
            e = CslSemanticError(f"param '{name}' of {Path(mod.path).name} is not bound", d.span)
            if mod.bind_span is not None:
                e.with_note("instantiated here", mod.bind_span)
            raise e
        if d.kind == "const":
            if d.init is None:
                raise self.err(f"const '{name}' has no initializer", d)
            v = self.eval(d.init, scope)
            if declared is not None:
                v = self.coerce(v, declared, d.init)
            if isinstance(v.v, ModuleInstance) and not v.v.symbol_prefix:
                v.v.name = name
                v.v.symbol_prefix = f"{mod.symbol_prefix}{name}."
            return v
        # A global `var`: runtime storage with a comptime initializer.
        init = None
        if d.init is not None:
            init = self.eval(d.init, scope)
            if isinstance(init.v, RuntimeRef):
                raise self.err("global initializer must be comptime-known", d.init)
            if declared is not None:
                init = self.coerce(init, declared, d.init)
            if init.type == T.UNDEFINED_T:
                init = None
        vtype = declared if declared is not None else init.type if init is not None else None
        if vtype is None:
            raise self.err(f"variable '{name}' needs a type or an initializer", d)
        if vtype.comptime_only:
            raise self.err(f"variable '{name}' of comptime-only type '{vtype}' must be const",
                           d)
        gv = GlobalVar(name, vtype, init, True, mod, d)
        if mod.program is not None:
            mod.program.globals.append(gv)
        return Val(vtype, RuntimeRef(gv))

    def const_storage(self, target: A.Expr, s: Scope, v: Val) -> Val:
        """``v``, or, when ``target`` names a global ``const`` array of the module, a reference
        to that array's read-only storage (const_symbol): a tensor access over a const array
        (``const ten = [1]f32 {10.0};`` then ``|i|{N} -> ten[0]``) and ``&ten`` need it in
        PE memory, as cslc places it. Elaboration creates the storage of every const that
        run-time code uses this way (layout._const_arrays_used), so the run-time interpreter
        and the compiled engine find it."""
        if isinstance(v.v, RuntimeRef) or not isinstance(target, A.Ident) \
                or not isinstance(v.type, T.ArrayT) or v.type.comptime_only \
                or s.find(target.name) is not None:
            return v
        mod = s.module
        entry = mod.globals.get(target.name)
        if entry is None or not isinstance(entry.decl, A.VarDecl) or entry.decl.kind != "const":
            return v
        return Val(v.type, RuntimeRef(self.const_symbol(mod, target.name, target.span)))

    def const_symbol(self, mod: ModuleInstance, name: str, span: Span | None) -> GlobalVar:
        """The read-only storage of a global ``const`` of runtime type (e.g. an exported
        ``const y_ptr: [*]f32 = &y;``)."""
        entry = mod.globals[name]
        if entry.symbol is None:
            v = self.global_value(mod, name, span)
            if v.type.comptime_only:
                raise CslSemanticError(f"'{name}' has comptime-only type '{v.type}' and has no "
                                       "storage", span)
            entry.symbol = GlobalVar(name, v.type, v, False, mod, entry.decl)
            if mod.program is not None:
                mod.program.globals.append(entry.symbol)
        return entry.symbol

    def run_comptime_blocks(self, mod: ModuleInstance) -> None:
        """Instantiate the module's imports (a library's comptime blocks bind tasks and
        queues even when only run-time code uses it), then run its top-level comptime
        blocks in source order."""
        for name, entry in list(mod.globals.items()):
            d = entry.decl
            if isinstance(d, A.VarDecl) and isinstance(d.init, A.BuiltinCall) and \
                    d.init.name == "import_module":
                self.global_value(mod, name, d.span)
        for blk in mod.comptime_blocks:
            self.exec_top_block(blk.block, Scope(mod.scope, mod), "a top-level comptime block")

    def exec_top_block(self, block: A.Block, scope: Scope, what: str) -> None:
        """Run a comptime or layout block: a `return` there is an error at the statement."""
        try:
            self.exec_block(block, scope)
        except _Return:
            ret = next((n for n in block.walk() if isinstance(n, A.Return)), block)
            raise self.err(f"'return' outside a function (in {what})", ret) from None

    # -- types ----------------------------------------------------------------------------------

    def eval_type(self, e: A.Expr, scope: Scope) -> T.Type:
        v = self.eval(e, scope)
        if v.type != T.TYPE:
            raise self.err(f"expected a type, found a value of type '{v.type}'", e)
        return v.v

    def fn_type(self, d: A.FnDecl, scope: Scope) -> T.Type:
        params: list[T.Type | None] = []
        for p in d.params:
            if p.is_comptime or isinstance(p.type, A.AnyType):
                params.append(None)
                continue
            try:
                params.append(self.eval_type(p.type, scope))
            except CslError:
                # Types depending on comptime params of the same fn: resolved per call.
                params.append(None)
        ret: T.Type = T.VOID
        if d.ret is not None:
            try:
                ret = self.eval_type(d.ret, scope)
            except CslError:
                ret = T.VOID
        return T.FnT(tuple(params), ret, is_task=d.is_task)

    # -- coercion ---------------------------------------------------------------------------------

    def coerce(self, v: Val, target: T.Type, node: A.Node | Span | None) -> Val:
        """Implicit coercion of ``v`` to ``target`` (assignment, params, typed decls)."""
        src = v.type
        if src == target:
            return v
        p = v.v
        if isinstance(p, RuntimeRef):
            raise self.err(f"expected type '{target}', found runtime variable of type '{src}'",
                           node)
        if target == T.COMPTIME_STRUCT and (
                isinstance(src, (T.AnonStructT, T.StructT, T.TupleT))
                or src == T.COMPTIME_STRUCT):
            return Val(src, p)
        if src == T.UNDEFINED_T:
            return Val(target, None)
        if isinstance(target, T.IntT):
            # A comptime-known integer coerces to any integer type that can represent its
            # value (Zig's rule; e.g. an i16 layout param bound to a u16 PE param).
            if src == T.COMPTIME_INT or isinstance(src, T.IntT):
                if not target.fits(p):
                    raise self.err(f"type '{target}' cannot represent integer value {p}", node)
                return Val(target, p)
            if src == T.COMPTIME_FLOAT and float(p).is_integer():
                return self.coerce(Val(T.COMPTIME_INT, int(p)), target, node)
        if isinstance(target, T.FloatT):
            if src in (T.COMPTIME_INT, T.COMPTIME_FLOAT) or (
                    isinstance(src, T.FloatT) and src.bits < target.bits and src.name == "f16"):
                return Val(target, round_float(target, float(p)))
        if target == T.COMPTIME_FLOAT and src == T.COMPTIME_INT:
            return Val(target, float(p))
        if isinstance(target, T.PointerT) and isinstance(src, T.PointerT):
            # *[N]T (and *[N, M]T: the official gemv-checkerboard example exports a 2-D
            # array through a [*]f16) coerces to [*]T.
            ok_elem = src.elem == target.elem or (
                isinstance(src.elem, T.ArrayT) and target.many
                and src.elem.elem == target.elem)
            if ok_elem and (target.const or not src.const) and (target.many or not src.many):
                return Val(target, p)
        if isinstance(target, (T.StructT,)) and isinstance(src, T.AnonStructT):
            return self._coerce_struct(v, target, node)
        if isinstance(target, T.ArrayT) and isinstance(src, T.TupleT):
            if len(target.dims) == 1 and target.dims[0] == len(p):
                items = [self.coerce(x, target.elem, node) for x in p]
                return Val(target, self._array_from_items(target, items))
        if isinstance(target, T.TupleT) and isinstance(src, T.TupleT) and len(
                target.items) == len(src.items):
            return Val(target, [self.coerce(x, t, node) for x, t in zip(p, target.items)])
        if target == T.TYPE and src == T.TYPE:
            return v
        if isinstance(target, T.FnT) and isinstance(src, T.FnT):
            if target.is_task and not src.is_task:
                raise self.err(f"expected a task of type '{target}', found the function type "
                               f"'{src}'", node)
            return Val(target, p)
        raise self.err(f"expected type '{target}', found '{src}'", node)

    def _coerce_struct(self, v: Val, target: T.StructT, node: Any) -> Val:
        out: dict[str, Val] = {}
        for name in v.v:
            if target.field(name) is None:
                raise self.err(f"struct '{target}' has no field '{name}'", node)
        for f in target.fields:
            if f.name in v.v:
                out[f.name] = self.coerce(v.v[f.name], f.type, node)
            elif f.default is not None:
                out[f.name] = f.default
            else:
                raise self.err(f"missing field '{f.name}' in initializer of '{target}'", node)
        return Val(target, out)

    def _array_from_items(self, t: T.ArrayT, items: list[Val]) -> ArrayData:
        dt = numpy_dtype(t.elem)
        if dt is not None:
            arr = np.array([x.v for x in items], dtype=dt)
        else:
            arr = np.empty(len(items), dtype=object)
            for i, x in enumerate(items):
                arr[i] = x
        return ArrayData(arr.reshape(t.dims))

    def to_bool(self, v: Val, node: A.Node) -> bool:
        if v.type != T.BOOL:
            if isinstance(v.v, RuntimeRef):
                raise self.err("condition is not comptime-known (it reads a runtime variable)",
                               node)
            raise self.err(f"expected type 'bool', found '{v.type}'", node)
        return bool(v.v)

    def to_int(self, v: Val, node: A.Node | Span | None, what: str = "integer") -> int:
        if T.is_int(v.type) and isinstance(v.v, int):
            return v.v
        if isinstance(v.v, RuntimeRef):
            raise self.err(f"{what} must be comptime-known", node)
        raise self.err(f"expected {what}, found '{v.type}'", node)

    def check_comptime(self, v: Val, node: A.Node) -> Val:
        if isinstance(v.v, RuntimeRef):
            raise self.err(f"unable to evaluate at compile time: '{v.v.var.name}' is a runtime "
                           "variable", node)
        return v

    # -- expressions ----------------------------------------------------------------------------

    def eval(self, e: A.Expr, scope: Scope) -> Val:
        # The handler of a node class, looked up once per interpreter class (subclasses
        # override handlers): the hottest call of compile-time evaluation.
        m = type(self)._dispatch.get(type(e))
        if m is None:
            m = self._handler("_e_", type(e))
            if m is None:
                raise self.err(f"{type(e).__name__} cannot be evaluated at compile time", e)
        return m(self, e, scope)

    _dispatch: dict[type, Callable[..., Any]] = {}      # expression class -> _e_ method
    _sdispatch: dict[type, Callable[..., Any]] = {}     # statement class -> _s_ method

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls._dispatch, cls._sdispatch = {}, {}

    def _handler(self, prefix: str, node_type: type) -> Callable[..., Any] | None:
        """The ``_e_``/``_s_`` method of ``node_type`` (None if there is none), cached in
        the interpreter class's table."""
        m = getattr(type(self), prefix + node_type.__name__, None)
        if m is not None:
            table = type(self)._dispatch if prefix == "_e_" else type(self)._sdispatch
            table[node_type] = m
        return m

    def _e_IntLit(self, e: A.IntLit, s: Scope) -> Val:
        return Val(T.COMPTIME_INT, e.value)

    def _e_FloatLit(self, e: A.FloatLit, s: Scope) -> Val:
        return Val(T.COMPTIME_FLOAT, e.value)

    def _e_CharLit(self, e: A.CharLit, s: Scope) -> Val:
        return Val(T.COMPTIME_INT, e.value)

    def _e_StringLit(self, e: A.StringLit, s: Scope) -> Val:
        return Val(T.COMPTIME_STRING, e.value)

    def _e_BoolLit(self, e: A.BoolLit, s: Scope) -> Val:
        return Val(T.BOOL, e.value)

    def _e_AnyType(self, e: A.AnyType, s: Scope) -> Val:
        raise self.err("'anytype' is only allowed as a parameter type", e)

    def lookup(self, name: str, scope: Scope, node: A.Node) -> Val:
        # (The hottest path of compile-time evaluation: Scope.find inlined, and a global
        # already evaluated returned without a call.)
        s: Scope | None = scope
        while s is not None:
            cell = s.vars.get(name)
            if cell is not None:
                if cell.val is None:
                    raise self.err(f"use of undefined value of '{name}'", node)
                return cell.val
            s = s.parent
        mod = scope.module
        while True:
            entry = mod.globals.get(name)
            if entry is not None:
                if entry.state == "done" and entry.value is not None:
                    return entry.value
                return self.global_value(mod, name, node.span)
            if mod.outer is None:
                break
            cell = mod.outer.find(name)
            if cell is not None and cell.val is not None:
                return cell.val
            mod = mod.outer.module
        t = T.lookup_type_name(name)
        if t is not None:
            return Val(T.TYPE, t)
        if name in DIRECTIONS:
            return Val(T.DIRECTION, name)
        if name == "undefined":
            return Val(T.UNDEFINED_T, None)
        raise self.err(f"use of undeclared identifier '{name}'", node)

    def _e_Ident(self, e: A.Ident, s: Scope) -> Val:
        return self.lookup(e.name, s, e)

    def _e_ComptimeExpr(self, e: A.ComptimeExpr, s: Scope) -> Val:
        return self.check_comptime(self.eval(e.expr, s), e)

    def _e_Unary(self, e: A.Unary, s: Scope) -> Val:
        if e.op == "&":
            return self.address_of(e.operand, s)
        v = self.check_comptime(self.eval(e.operand, s), e.operand)
        t = v.type
        if e.op == "!":
            return Val(T.BOOL, not self.to_bool(v, e.operand))
        if e.op == "-":
            if not T.is_numeric(t):
                raise self.err(f"cannot negate a value of type '{t}'", e)
            if isinstance(t, T.IntT):
                return self._int_result(t, -v.v, e)
            if isinstance(t, T.FloatT):
                return Val(t, -v.v)
            return Val(t, -v.v)
        if e.op == "~":
            if not isinstance(t, T.IntT):
                raise self.err(f"'~' needs a fixed-width integer, found '{t}'", e)
            return Val(t, t.wrap(~v.v))
        raise self.err(f"unknown operator '{e.op}'", e)

    def address_of(self, target: A.Expr, s: Scope) -> Val:
        base = target
        while isinstance(base, (A.Index, A.FieldAccess)):
            base = base.target
        v = self.const_storage(base, s, self.eval(base, s))
        if not isinstance(v.v, RuntimeRef):
            if isinstance(base, A.Ident) and s.find(base.name) is None and v.type == T.TYPE:
                raise self.err("cannot take the address of a type", target)
            raise self.err("can only take the address of a global variable at compile time",
                           target)
        gv = v.v.var
        offset = 0
        if target is not base:
            if isinstance(target, A.Index) and target.target is base:
                idx = [self.to_int(self.check_comptime(self.eval(i, s), i), i, "index")
                       for i in target.indices]
                if not isinstance(gv.type, T.ArrayT) or len(idx) != len(gv.type.dims):
                    raise self.err(f"cannot index '{gv.name}' of type '{gv.type}' that way",
                                   target)
                for d, (i, n) in enumerate(zip(idx, gv.type.dims)):
                    if not 0 <= i < n:
                        raise self.err(f"index {i} out of bounds for dimension {d} of size {n}",
                                       target.indices[d])
                offset = int(np.ravel_multi_index(tuple(idx), gv.type.dims))
                return Val(T.PointerT(gv.type.elem), PtrVal(gv, offset))
            raise self.err("unsupported address-of expression at compile time", target)
        return Val(T.PointerT(gv.type, const=not gv.mutable), PtrVal(gv, 0))

    def _int_result(self, t: T.Type, x: int, node: A.Node) -> Val:
        if isinstance(t, T.IntT) and not t.fits(x):
            raise self.err(f"integer overflow: {x} does not fit in '{t}'", node)
        return Val(t, x)

    def unify(self, a: Val, b: Val, node: A.Node) -> T.Type:
        ta, tb = a.type, b.type
        if ta == tb:
            return ta
        if ta == T.COMPTIME_INT and T.is_numeric(tb):
            return tb
        if tb == T.COMPTIME_INT and T.is_numeric(ta):
            return ta
        if ta == T.COMPTIME_FLOAT and T.is_float(tb):
            return tb
        if tb == T.COMPTIME_FLOAT and T.is_float(ta):
            return ta
        raise self.err(f"incompatible operand types '{ta}' and '{tb}' (CSL has no implicit "
                       "promotion; use @as)", node)

    def _e_Binary(self, e: A.Binary, s: Scope) -> Val:
        op = e.op
        if op in ("and", "or"):
            lhs = self.to_bool(self.check_comptime(self.eval(e.lhs, s), e.lhs), e.lhs)
            if (op == "and" and not lhs) or (op == "or" and lhs):
                return Val(T.BOOL, lhs)
            return Val(T.BOOL, self.to_bool(self.check_comptime(self.eval(e.rhs, s), e.rhs),
                                            e.rhs))
        a = self.check_comptime(self.eval(e.lhs, s), e.lhs)
        b = self.check_comptime(self.eval(e.rhs, s), e.rhs)
        return self.binop(op, a, b, e)

    def binop(self, op: str, a: Val, b: Val, e: A.Node) -> Val:
        ta, tb = a.type, b.type
        x, y = a.v, b.v
        if type(x) is int and type(y) is int and (type(ta) is T.IntT or ta is T.COMPTIME_INT) \
                and (type(tb) is T.IntT or tb is T.COMPTIME_INT):
            # Integer operands (a layout's `py < P`, `py == 0`, `P - 1`): what the general
            # path below computes for them, without its unify and coerce, when both have one
            # type or one is a comptime_int that the other's type represents (else the
            # general path, and its error).
            fast = _INT_FAST.get(op)
            ft: T.Type | None = ta if tb is ta or tb is T.COMPTIME_INT else \
                tb if ta is T.COMPTIME_INT else None
            if fast is not None and ft is not None and (
                    ft is T.COMPTIME_INT or (ta is ft or cast(T.IntT, ft).fits(x))
                    and (tb is ft or cast(T.IntT, ft).fits(y))):
                if op in _CMP_OPS:
                    return Val(T.BOOL, fast(x, y))
                return self._int_result(ft, fast(x, y), e)
        if op in ("==", "!="):
            eq = self._equal(a, b, e)
            return Val(T.BOOL, eq if op == "==" else not eq)
        if op in ("<<", ">>"):
            if not T.is_int(a.type) or not T.is_int(b.type):
                raise self.err(f"shift needs integers, found '{a.type}' and '{b.type}'", e)
            if isinstance(b.type, T.IntT) and b.type.signed:
                raise self.err("shift amount must be unsigned", e)
            if b.v < 0:
                raise self.err(f"negative shift amount {b.v}", e)
            t = a.type
            if op == ">>":
                return Val(t, a.v >> b.v)
            if isinstance(t, T.IntT):
                if b.v >= t.bits:
                    raise self.err(f"shift amount {b.v} is too large for '{t}'", e)
                return self._int_result(t, a.v << b.v, e)
            if b.v > 65536:
                raise self.err(f"shift amount {b.v} is too large", e)
            return Val(t, a.v << b.v)
        t = self.unify(a, b, e)
        x, y = self.coerce(a, t, e).v, self.coerce(b, t, e).v
        if op in ("<", ">", "<=", ">="):
            if not T.is_numeric(t):
                raise self.err(f"cannot compare values of type '{t}' with '{op}'", e)
            r = {"<": x < y, ">": x > y, "<=": x <= y, ">=": x >= y}[op]
            return Val(T.BOOL, r)
        if op in ("&", "|", "^"):
            if t == T.BOOL:
                raise self.err(f"'{op}' is not defined for bool; use 'and'/'or'", e)
            if not T.is_int(t):
                raise self.err(f"bitwise '{op}' needs integers, found '{t}'", e)
            r = {"&": x & y, "|": x | y, "^": x ^ y}[op]
            return Val(t, t.wrap(r) if isinstance(t, T.IntT) else r)
        if op in ("+", "-", "*", "/", "%"):
            if not T.is_numeric(t):
                raise self.err(f"arithmetic '{op}' is not defined for type '{t}'", e)
            if T.is_int(t):
                if op in ("/", "%") and y == 0:
                    raise self.err("division by zero", e)
                if op == "/":
                    r = abs(x) // abs(y) * (1 if (x >= 0) == (y >= 0) else -1)
                elif op == "%":
                    r = x - y * (abs(x) // abs(y) * (1 if (x >= 0) == (y >= 0) else -1))
                else:
                    r = {"+": x + y, "-": x - y, "*": x * y}[op]
                return self._int_result(t, r, e)
            try:
                if op == "/" and y == 0.0:
                    r = math.copysign(math.inf, x) * math.copysign(1.0, y) if x != 0 else math.nan
                elif op == "%":
                    r = math.fmod(x, y) if y != 0 else math.nan
                else:
                    r = {"+": x + y, "-": x - y, "*": x * y, "/": x / y if y else 0.0}[op]
            except OverflowError:
                r = math.inf
            return Val(t, round_float(t, r))
        raise self.err(f"unknown operator '{op}'", e)

    def _equal(self, a: Val, b: Val, e: A.Node) -> bool:
        if T.is_numeric(a.type) and T.is_numeric(b.type):
            t = self.unify(a, b, e)
            return self.coerce(a, t, e).v == self.coerce(b, t, e).v
        if a.type != b.type:
            raise self.err(f"cannot compare '{a.type}' with '{b.type}'", e)
        t = a.type
        if t in (T.BOOL, T.TYPE) or T.is_hw_id(t) or isinstance(t, T.EnumT):
            return a.v == b.v
        raise self.err(f"values of type '{t}' cannot be compared with '=='", e)

    def _e_Call(self, e: A.Call, s: Scope) -> Val:
        f = self.eval(e.callee, s)
        if not isinstance(f.v, FnVal):
            raise self.err(f"value of type '{f.type}' is not callable", e.callee)
        args = [self.eval(a, s) for a in e.args]
        return self.call(f.v, args, e)

    # Compile-time calls of pure functions with plain arguments are memoised (Zig memoises
    # comptime calls too): a layout calls its helpers (block sizes, colors) for every PE with
    # a handful of distinct arguments. Run-time interpreters (sim/pe.py) turn this off.
    memoize_calls = True

    def call(self, fn: FnVal, args: list[Val], node: A.Node, *, as_task: bool = False) -> Val:
        """Call ``fn`` with ``args``. CSL code may not call a task; the simulator runs one
        (its body, as a call) with ``as_task=True``."""
        self.tick(node)
        if fn.intrinsic is not None:
            if isinstance(fn.intrinsic, RuntimeIntrinsic):
                raise self.err(f"'{fn.intrinsic.qualname}' can only be called at run time", node)
            return fn.intrinsic(self, args, node)
        d: A.FnDecl = fn.decl
        if d.is_task and not as_task:
            raise self.err(f"task '{d.name}' cannot be called; activate it instead", node)
        if d.body is None:
            raise self.err(f"extern function '{d.name}' cannot be called at compile time", node)
        if len(args) != len(d.params):
            raise self.err(f"'{d.name}' expects {len(d.params)} argument(s), got {len(args)}",
                           node)
        if self.ctx.depth >= self.ctx.options.max_depth:
            raise self.err(f"comptime call depth exceeds {self.ctx.options.max_depth}", node)
        ctx = self.ctx
        key = _call_key(fn.owner, d, args) if self.memoize_calls and not as_task and \
            pure_function(ctx, fn.owner, d) else None
        if key is not None:
            hit = ctx.calls.get(key)
            # The same result, and the same branch count and depth as evaluating it (so the
            # quota and the depth limit stop a program exactly where they would).
            if hit is not None and hit[0] is fn.owner and hit[1] is d and \
                    ctx.branches + hit[3] <= ctx.options.branch_quota and \
                    ctx.depth + hit[4] <= ctx.options.max_depth:
                ctx.branches += hit[3]
                return hit[2]
            branches, depth, peak = ctx.branches, ctx.depth, ctx.peak
            ctx.peak = depth
            try:
                result = self._call_body(fn, d, args, node)
            finally:
                inner, ctx.peak = ctx.peak - depth, max(peak, ctx.peak)
            ctx.calls[key] = (fn.owner, d, result, ctx.branches - branches, inner)
            return result
        return self._call_body(fn, d, args, node)

    def _call_body(self, fn: FnVal, d: A.FnDecl, args: list[Val], node: A.Node) -> Val:
        scope = Scope(fn.owner.scope, fn.owner)
        for p, a, anode in zip(d.params, args, getattr(node, "args", [None] * len(args))):
            if isinstance(p.type, A.AnyType):
                v = a
            else:
                v = self.coerce(a, self.eval_type(p.type, scope), anode or node)
            if p.name is not None:
                scope.vars[p.name] = Cell(p.name, v.type, v, False)
        ret_t = self.eval_type(d.ret, scope) if d.ret is not None else T.VOID
        assert d.body is not None          # (call checked it)
        self.ctx.depth += 1
        if self.ctx.depth > self.ctx.peak:
            self.ctx.peak = self.ctx.depth
        try:
            self.exec_block(d.body, scope)
            result = VOID_VAL
        except _Return as r:
            result = r.value
        except (_Break, _Continue):
            raise self.err("break/continue outside of a loop", node) from None
        finally:
            self.ctx.depth -= 1
        return self.coerce(result, ret_t, node) if ret_t != T.VOID or result.type != T.VOID \
            else result

    def _e_BuiltinCall(self, e: A.BuiltinCall, s: Scope) -> Val:
        fn = self.builtins.get(e.name)
        if fn is None:
            raise self.err(f"unknown builtin '@{e.name}'", e)
        return fn(self, e, s)

    def _e_FieldAccess(self, e: A.FieldAccess, s: Scope) -> Val:
        v = self.eval(e.target, s)
        return self.field_of(v, e.name, e)

    def field_of(self, v: Val, name: str, e: A.Node) -> Val:
        p = v.v
        if isinstance(p, ModuleInstance):
            return p.member(self, name, e.span)
        if isinstance(p, dict):
            if name not in p:
                raise self.err(f"no field named '{name}' in '{v.type}'", e)
            return p[name]
        if v.type == T.TYPE:
            t = p
            if isinstance(t, T.EnumT):
                if name in t.members:
                    return Val(t, name)
            ns = getattr(t, "namespace", None)
            if ns is not None and name in ns.globals:
                return self.global_value(ns, name, e.span)
            raise self.err(f"type '{t}' has no member '{name}'", e)
        if isinstance(p, RuntimeRef):
            raise self.err(f"cannot read field '{name}' of runtime variable '{p.var.name}' at "
                           "compile time", e)
        raise self.err(f"value of type '{v.type}' has no field '{name}'", e)

    def _e_Index(self, e: A.Index, s: Scope) -> Val:
        v = self.check_comptime(self.eval(e.target, s), e.target)
        idx = [self.to_int(self.check_comptime(self.eval(i, s), i), i, "index")
               for i in e.indices]
        return self.index_of(v, idx, e)

    def index_of(self, v: Val, idx: list[int], e: A.Node) -> Val:
        if isinstance(v.type, T.TupleT):
            if len(idx) != 1 or not 0 <= idx[0] < len(v.v):
                raise self.err(f"tuple index {idx} out of range (length {len(v.v)})", e)
            return v.v[idx[0]]
        if isinstance(v.type, T.ArrayT):
            dims = v.type.dims
            if len(idx) > len(dims):
                raise self.err(f"too many indices for '{v.type}'", e)
            for d, (i, n) in enumerate(zip(idx, dims)):
                if not 0 <= i < n:
                    raise self.err(f"index {i} out of bounds for dimension {d} of size {n}", e)
            x = v.v.data[tuple(idx)]
            if len(idx) < len(dims):
                return Val(T.ArrayT(dims[len(idx):], v.type.elem), ArrayData(np.array(x)))
            if isinstance(x, Val):
                return x
            return Val(v.type.elem, x.item() if hasattr(x, "item") else x)
        if v.type == T.COMPTIME_STRING:
            if len(idx) != 1 or not 0 <= idx[0] < len(v.v.encode()):
                raise self.err("string index out of range", e)
            return Val(T.IntT(8, False), v.v.encode()[idx[0]])
        raise self.err(f"value of type '{v.type}' cannot be indexed", e)

    def _e_Deref(self, e: A.Deref, s: Scope) -> Val:
        v = self.eval(e.target, s)
        raise self.err(f"cannot dereference '{v.type}' at compile time", e)

    def _e_InitList(self, e: A.InitList, s: Scope) -> Val:
        if e.type is None:
            # A literal made only of literals and directions (a color config's
            # `.{ .rx = .{WEST}, .tx = .{RAMP} }` in a layout loop over 20,000 PEs) has one
            # value wherever it runs: evaluate it once. Values are never mutated in place
            # (assignments copy on write), so the one value can be shared.
            hit = self.ctx.memo.get(("static_init", id(e)))
            if hit is None:
                val = self._eval_init_list(e, s)
                static = _static_literal(e) and not _declares_direction(self.ctx, s.module)
                self.ctx.memo[("static_init", id(e))] = (e, val if static else None)
                if static:
                    self.ctx.static_vals[id(val)] = val
                return val
            if hit[1] is not None:
                return hit[1]
            return self._eval_init_list(e, s)
        return self._eval_typed_init_list(e, s)

    def _eval_init_list(self, e: A.InitList, s: Scope) -> Val:
        """An anonymous literal ``.{ .a = x }`` / ``.{ x, y }`` / ``.{}``."""
        if e.fields:
            vals: dict[str, Val] = {}
            for f in e.fields:
                if f.name in vals:
                    raise self.err(f"duplicate field '{f.name}'", f)
                vals[f.name] = self.eval(f.value, s)
            return Val(T.AnonStructT(tuple((k, v.type) for k, v in vals.items())), vals)
        if e.items:
            items = [self.eval(x, s) for x in e.items]
            return Val(T.TupleT(tuple(x.type for x in items)), items)
        return Val(T.AnonStructT(()), {})

    def _eval_typed_init_list(self, e: A.InitList, s: Scope) -> Val:
        assert e.type is not None
        t = self.eval_type(e.type, s)
        if isinstance(t, T.ArrayT):
            if e.fields:
                raise self.err("array literal takes values, not fields", e)
            items = [self.check_comptime(self.eval(x, s), x) for x in e.items]
            if len(t.dims) == 1 and len(items) != t.dims[0]:
                raise self.err(f"array literal of type '{t}' needs {t.dims[0]} elements, got "
                               f"{len(items)}", e)
            if len(t.dims) > 1 and len(items) != t.count:
                raise self.err(f"array literal of type '{t}' needs {t.count} elements, got "
                               f"{len(items)}", e)
            items = [self.coerce(x, t.elem, n) for x, n in zip(items, e.items)]
            return Val(t, self._array_from_items(T.ArrayT((t.count,), t.elem), items)
                       if len(t.dims) == 1 else
                       ArrayData(self._array_from_items(T.ArrayT((t.count,), t.elem),
                                                        items).data.reshape(t.dims)))
        if isinstance(t, T.StructT):
            if e.items:
                raise self.err(f"struct literal of '{t}' takes fields", e)
            vals = {f.name: self.eval(f.value, s) for f in e.fields}
            return self._coerce_struct(Val(T.AnonStructT(()), vals), t, e)
        raise self.err(f"type '{t}' cannot be initialized with braces", e)

    def _e_ArrayType(self, e: A.ArrayType, s: Scope) -> Val:
        dims = []
        for d in e.dims:
            n = self.to_int(self.check_comptime(self.eval(d, s), d), d, "array length")
            if n < 0:
                raise self.err(f"array length {n} is negative", d)
            dims.append(n)
        elem = self.eval_type(e.elem, s)
        if isinstance(elem, T.ArrayT):
            raise self.err("array element type cannot be an array; use [N, M]T", e.elem)
        return Val(T.TYPE, T.ArrayT(tuple(dims), elem))

    def _e_PointerType(self, e: A.PointerType, s: Scope) -> Val:
        return Val(T.TYPE, T.PointerT(self.eval_type(e.elem, s), e.many, e.const))

    def _e_FnType(self, e: A.FnType, s: Scope) -> Val:
        return Val(T.TYPE, T.FnT(tuple(self.eval_type(p, s) for p in e.params),
                                 self.eval_type(e.ret, s), is_task=e.is_task))

    def _e_StructType(self, e: A.StructType, s: Scope) -> Val:
        fields = []
        seen: set[str] = set()
        for f in e.fields:
            if f.name in seen:
                raise self.err(f"duplicate field '{f.name}'", f)
            seen.add(f.name)
            ft = self.eval_type(f.type, s)
            default = self.coerce(self.eval(f.default, s), ft, f.default) if f.default else None
            fields.append(T.StructField(f.name, ft, default))
        ns = None
        if e.decls:
            ns = ModuleInstance(self.ctx, s.module.path, A.Module(list(e.decls)), {},
                                name="struct", program=s.module.program)
            ns.outer = s
        st = T.StructT(f"{e.kind}@{e.span.line_col[0]}" if e.span.file else e.kind,
                       tuple(fields), e.kind, ns)
        return Val(T.TYPE, st)

    def _e_EnumType(self, e: A.EnumType, s: Scope) -> Val:
        tag = self.eval_type(e.tag, s) if e.tag is not None else T.IntT(16, False)
        if not isinstance(tag, T.IntT):
            raise self.err(f"enum tag type must be an integer type, found '{tag}'", e.tag)
        members: dict[str, int] = {}
        nxt = 0
        for m in e.members:
            if m.name in members:
                raise self.err(f"duplicate enum member '{m.name}'", m)
            if m.value is not None:
                nxt = self.to_int(self.coerce(self.eval(m.value, s), tag, m.value), m.value)
            if not tag.fits(nxt):
                raise self.err(f"enum value {nxt} does not fit in '{tag}'", m)
            members[m.name] = nxt
            nxt += 1
        et = T.EnumT(f"enum@{e.span.line_col[0]}" if e.span.file else "enum", tag, members)
        return Val(T.TYPE, et)

    def _e_IfExpr(self, e: A.IfExpr, s: Scope) -> Val:
        c = self.check_comptime(self.eval(e.cond, s), e.cond)
        if self.to_bool(c, e.cond):
            return self.eval(e.then, s)
        if e.else_ is not None:
            return self.eval(e.else_, s)
        return VOID_VAL

    def _e_Switch(self, e: A.Switch, s: Scope) -> Val:
        prong = self.select_prong(e, s)
        if prong is None:
            return VOID_VAL
        body = prong.body
        if isinstance(body, A.Expr):
            return self.eval(body, s)
        self.exec_stmt(cast(A.Stmt, body), Scope(s, s.module))  # a statement prong in
        # expression position
        return VOID_VAL

    def select_prong(self, e: A.Switch, s: Scope) -> A.SwitchProng | None:
        subj = self.check_comptime(self.eval(e.subject, s), e.subject)
        if not (T.is_int(subj.type) or isinstance(subj.type, T.EnumT) or subj.type == T.BOOL
                or T.is_hw_id(subj.type)):
            raise self.err(f"cannot switch on a value of type '{subj.type}'", e.subject)
        else_prong = None
        seen: list[tuple[Val, A.Node]] = []
        chosen = None
        for p in e.prongs:
            if p.is_else:
                if else_prong is not None:
                    raise self.err("multiple else prongs in switch", p)
                else_prong = p
                continue
            for c in p.cases:
                cv = self.check_comptime(self.eval(c, s), c)
                for prev, pnode in seen:
                    if self._equal(prev, cv, c):
                        raise self.err(f"duplicate switch case {describe(cv)}", c).with_note(
                            "previous case is here", pnode.span)
                seen.append((cv, c))
                if chosen is None and self._equal(subj, cv, c):
                    chosen = p
        if chosen is None and else_prong is None:
            if isinstance(subj.type, T.EnumT) and len(seen) == len(subj.type.members):
                pass
            else:
                raise self.err(f"switch on {describe(subj)} matches no case and has no else",
                               e)
        return chosen or else_prong

    def _e_BlockExpr(self, e: A.BlockExpr, s: Scope) -> Val:
        v = self.exec_block(e.block, s)
        return v if v is not None else VOID_VAL

    def _e_TensorAccess(self, e: A.TensorAccess, s: Scope) -> Val:
        """Resolve an affine tensor access to base/offset/strides by probing the index map."""
        if len(e.vars) != len(e.extents):
            raise self.err("tensor access needs one extent per induction variable", e)
        extents = []
        for x in e.extents:
            n = self.to_int(self.check_comptime(self.eval(x, s), x), x, "extent")
            if n < 0:
                raise self.err(f"extent {n} is negative", x)
            extents.append(n)
        if not isinstance(e.access, A.Index):
            raise self.err("tensor access must index an array: |i|{N} -> A[i]", e.access)
        base = self.const_storage(e.access.target, s, self.eval(e.access.target, s))
        indices = e.access.indices
        ptr_offset = 0
        if isinstance(base.v, PtrVal) and isinstance(base.type, T.PointerT):
            # A comptime pointer (a param bound to `&A`, `&A[k]`): the access walks the
            # pointee, as declared by the pointer's type, from the pointed-to element.
            gv = base.v.target
            ptr_offset = base.v.offset
            gelem = gv.type.elem if isinstance(gv.type, T.ArrayT) else gv.type
            pt = base.type
            if pt.many:
                left = (gv.type.count if isinstance(gv.type, T.ArrayT) else 1) - ptr_offset
                at = T.ArrayT((max(left, 0),), pt.elem)
            elif isinstance(pt.elem, T.ArrayT):
                at = pt.elem
            else:
                at = T.ArrayT((1,), pt.elem)
            if at.elem != gelem:
                raise self.err(f"tensor access through a pointer of type '{pt}' into "
                               f"'{gv.name}' of type '{gv.type}' (element types differ)",
                               e.access.target)
        elif isinstance(base.v, RuntimeRef) and isinstance(base.type, T.ArrayT):
            gv = base.v.var
            at = gv.type  # type: ignore[assignment]
        else:
            raise self.err("the base of a tensor access must be a global array variable "
                           "(or a comptime pointer to one)", e.access.target)
        if len(e.access.indices) != len(at.dims):
            raise self.err(f"'{gv.name}' has {len(at.dims)} dimension(s); the access gives "
                           f"{len(e.access.indices)} index expression(s)", e.access)

        def flat(point: list[int]) -> int:
            inner = Scope(s, s.module)
            for name, val in zip(e.vars, point):
                inner.vars[name] = Cell(name, T.COMPTIME_INT, Val(T.COMPTIME_INT, val), False)
            idx = [self.to_int(self.check_comptime(self.eval(i, inner), i), i, "index")
                   for i in indices]
            f = 0
            for i, n in zip(idx, at.dims):
                f = f * n + i
            return f

        k = len(e.vars)
        origin = flat([0] * k)
        slopes = []
        for j in range(k):
            unit = [0] * k
            unit[j] = 1
            slopes.append(flat(unit) - origin)
        probe = [2 + j for j in range(k)]
        if flat(probe) != origin + sum(a * b for a, b in zip(slopes, probe)):
            raise self.err("tensor access index must be an affine function of the induction "
                           "variables", e.access)
        # mem4d stride semantics: innermost-first; each stride is the delta applied when that
        # loop advances after the inner loops reset.
        rev_ext = list(reversed(extents))
        rev_slopes = list(reversed(slopes))
        strides = []
        for j, sl in enumerate(rev_slopes):
            reset = sum(rev_slopes[i] * (rev_ext[i] - 1) for i in range(j))
            strides.append(sl - reset)
        origin += ptr_offset
        last = origin + sum(a * (n - 1) for a, n in zip(slopes, extents)) if all(extents) \
            else origin
        at = gv.type if isinstance(gv.type, T.ArrayT) else T.ArrayT((1,), gv.type)
        # cslc accepts a tensor access longer than its array (the SDK's examples build a
        # "dummy" DSD over a [1] array and re-point it with @set_dsd_base_addr and
        # @set_dsd_length), so this is a warning; an operation that uses the DSD as it is
        # fails at run time at the first element out of bounds (both PE paths).
        for pos in (origin, last):
            if all(extents) and not 0 <= pos < at.count:
                self.ctx.warn_once(f"{e.span}: warning: tensor access reaches element {pos} "
                                   f"outside '{gv.name}' ({at.count} elements); an operation "
                                   "using this DSD unchanged fails at run time")
                break
        return Val(T.TENSOR_ACCESS,
                   TensorAccessVal(gv, origin, tuple(strides), tuple(rev_ext)))

    # -- statements -----------------------------------------------------------------------------

    def exec_block(self, b: A.Block, scope: Scope) -> Val | None:
        """Run a block; a ``break :label v`` targeting it ends it and yields ``v``.

        The block's names live in a scope of their own; a block that declares none directly
        (only a ``VarDecl`` statement of the block adds a name to the block's scope: nested
        blocks, branches, loops and calls have their own) runs in ``scope`` itself, since
        an empty scope changes no lookup (and each level costs every lookup through it)."""
        inner = Scope(scope, scope.module) if _declares(b) else scope
        try:
            for st in b.stmts:
                self.exec_stmt(st, inner)
        except _Break as br:
            if b.label is not None and br.label == b.label:
                return br.value if br.value is not None else VOID_VAL
            raise
        return None

    def exec_stmt(self, st: A.Stmt, s: Scope) -> None:
        m = type(self)._sdispatch.get(type(st))
        if m is None:
            m = self._handler("_s_", type(st))
            if m is None:
                raise self.err(f"{type(st).__name__} is not allowed here", st)
        m(self, st, s)

    def _s_Block(self, st: A.Block, s: Scope) -> None:
        self.exec_block(st, s)

    def _s_ComptimeBlock(self, st: A.ComptimeBlock, s: Scope) -> None:
        self.exec_block(st.block, s)

    def _s_ExprStmt(self, st: A.ExprStmt, s: Scope) -> None:
        self.eval(st.expr, s)

    def _s_VarDecl(self, d: A.VarDecl, s: Scope) -> None:
        if d.kind == "param":
            raise self.err("'param' is only allowed at file scope", d)
        if d.name in s.vars:
            raise self.err(f"redefinition of '{d.name}'", d)
        declared = self.eval_type(d.type, s) if d.type is not None else None
        val = None
        if d.init is not None:
            val = self.eval(d.init, s)
            if val.type == T.UNDEFINED_T:      # `= undefined`: no value until a store
                val = None
            elif declared is not None:
                val = self.coerce(val, declared, d.init)
        elif d.kind == "const":
            raise self.err(f"const '{d.name}' has no initializer", d)
        t = declared if declared is not None else val.type if val is not None else None
        if t is None:
            raise self.err(f"variable '{d.name}' needs a type or an initializer", d)
        if val is None and declared is not None:
            val = None
        s.vars[d.name] = Cell(d.name, t, val, d.kind == "var")

    def _s_Assign(self, st: A.Assign, s: Scope) -> None:
        value = self.check_comptime(self.eval(st.value, s), st.value)
        target = st.target
        if isinstance(target, A.Ident) and target.name == "_" and st.op == "=":
            return
        cell, path = self._lvalue(target, s)
        if st.op != "=":
            cur = self._read_path(cell, path, target)
            value = self.binop(st.op[:-1], cur, value, st)
        self._write_path(cell, path, value, st)

    def _lvalue(self, target: A.Expr, s: Scope) -> tuple[Cell, list[Any]]:
        path: list[Any] = []
        node = target
        while True:
            if isinstance(node, A.Ident):
                cell = s.find(node.name)
                if cell is None:
                    if node.name in s.module.globals:
                        raise self.err(f"cannot assign to global '{node.name}' at compile time",
                                       node)
                    raise self.err(f"use of undeclared identifier '{node.name}'", node)
                if not cell.mutable:
                    raise self.err(f"cannot assign to constant '{node.name}'", node)
                path.reverse()
                return cell, path
            if isinstance(node, A.Index):
                path.append(("index", node.indices, s))
                node = node.target
            elif isinstance(node, A.FieldAccess):
                path.append(("field", node.name))
                node = node.target
            elif isinstance(node, A.BuiltinCall) and node.name == "field" and len(node.args) == 2:
                fname = self.eval(node.args[1], s)
                if fname.type != T.COMPTIME_STRING:
                    raise self.err("@field name must be a string", node.args[1])
                path.append(("field", fname.v))
                node = node.args[0]
            else:
                raise self.err("invalid assignment target", node)

    def _read_path(self, cell: Cell, path: list[Any], node: A.Node) -> Val:
        if cell.val is None:
            raise self.err(f"use of undefined value of '{cell.name}'", node)
        v = cell.val
        for step in path:
            if step[0] == "field":
                v = self.field_of(v, step[1], node)
            else:
                idx = [self.to_int(self.eval(i, step[2]), i, "index") for i in step[1]]
                v = self.index_of(v, idx, node)
        return v

    def _write_path(self, cell: Cell, path: list[Any], value: Val, node: A.Node) -> None:
        if not path:
            cell.val = self.coerce(value, cell.type, node)
            return
        if cell.val is None:
            raise self.err(f"use of undefined value of '{cell.name}'", node)
        # Copy-on-write so values shared with other cells are never mutated in place.
        cell.val = self._updated(cell.val, path, value, node)

    def _updated(self, v: Val, path: list[Any], value: Val, node: A.Node) -> Val:
        step, rest = path[0], path[1:]
        if step[0] == "field":
            if not isinstance(v.v, dict) or step[1] not in v.v:
                raise self.err(f"no field named '{step[1]}' in '{v.type}'", node)
            new = dict(v.v)
            old = new[step[1]]
            new[step[1]] = self._updated(old, rest, value, node) if rest else \
                self.coerce(value, old.type, node)
            return Val(v.type, new)
        idx = [self.to_int(self.eval(i, step[2]), i, "index") for i in step[1]]
        if isinstance(v.type, T.ArrayT):
            dims = v.type.dims
            if len(idx) != len(dims) or rest:
                raise self.err("array element assignment needs one index per dimension", node)
            for d, (i, n) in enumerate(zip(idx, dims)):
                if not 0 <= i < n:
                    raise self.err(f"index {i} out of bounds for dimension {d} of size {n}",
                                   node)
            data = v.v.data.copy()
            ev = self.coerce(value, v.type.elem, node)
            data[tuple(idx)] = ev if data.dtype == object else ev.v
            return Val(v.type, ArrayData(data))
        if isinstance(v.type, T.TupleT):
            items = list(v.v)
            i = idx[0]
            if not 0 <= i < len(items):
                raise self.err(f"tuple index {i} out of range", node)
            items[i] = self._updated(items[i], rest, value, node) if rest else \
                self.coerce(value, items[i].type, node)
            return Val(v.type, items)
        raise self.err(f"value of type '{v.type}' cannot be indexed", node)

    def _s_Return(self, st: A.Return, s: Scope) -> None:
        raise _Return(self.eval(st.value, s) if st.value is not None else VOID_VAL)

    def _s_Break(self, st: A.Break, s: Scope) -> None:
        raise _Break(st.label, self.eval(st.value, s) if st.value is not None else None)

    def _s_Continue(self, st: A.Continue, s: Scope) -> None:
        raise _Continue(st.label)

    def _s_If(self, st: A.If, s: Scope) -> None:
        c = self.check_comptime(self.eval(st.cond, s), st.cond)
        if self.to_bool(c, st.cond):
            self._branch(st.then, s)
        elif st.else_ is not None:
            self._branch(st.else_, s)

    def _branch(self, st: A.Stmt, s: Scope) -> None:
        # A branch that is a single statement has a scope of its own only if it declares a
        # name (a block makes its own: exec_block).
        self.exec_stmt(st, Scope(s, s.module) if isinstance(st, A.VarDecl) else s)

    def _loop_body(self, body: A.Stmt, s: Scope, label: str | None) -> bool:
        """Run one iteration; return False when the loop must stop (break)."""
        try:
            self._branch(body, s)
        except _Break as b:
            if b.label is None or b.label == label:
                return False
            raise
        except _Continue as c:
            if c.label is not None and c.label != label:
                raise
        return True

    def _s_While(self, st: A.While, s: Scope) -> None:
        while True:
            self.tick(st)
            c = self.check_comptime(self.eval(st.cond, s), st.cond)
            if not self.to_bool(c, st.cond):
                return
            if not self._loop_body(st.body, s, st.label):
                return
            if st.cont is not None:
                self.exec_stmt(st.cont, s)

    def _s_For(self, st: A.For, s: Scope) -> None:
        it = self.check_comptime(self.eval(st.iterable, s), st.iterable)
        items: Any
        if isinstance(it.type, T.RangeT):
            start, stop, step = it.v
            items = (Val(it.type.elem, i) for i in range(start, stop, step))
        elif isinstance(it.type, T.ArrayT):
            if len(it.type.dims) != 1:
                raise self.err("for over a multi-dimensional array", st.iterable)
            items = (self.index_of(it, [i], st) for i in range(it.type.dims[0]))
        elif isinstance(it.type, T.TupleT):
            items = iter(it.v)
        else:
            raise self.err(f"cannot iterate over a value of type '{it.type}'", st.iterable)
        if len(st.captures) > 2:
            raise self.err("for takes at most two captures: |elem, index|", st)
        for i, item in enumerate(items):
            self.tick(st)
            inner = Scope(s, s.module)
            if st.captures:
                inner.vars[st.captures[0]] = Cell(st.captures[0], item.type, item, False)
            if len(st.captures) == 2:
                iv = Val(T.COMPTIME_INT, i)
                inner.vars[st.captures[1]] = Cell(st.captures[1], iv.type, iv, False)
            if not self._loop_body(st.body, inner, st.label):
                return

    def _s_FnDecl(self, st: A.FnDecl, s: Scope) -> None:
        raise self.err("functions can only be declared at file or struct scope", st)


# binop's fast path: the operators whose result on two ints of one fixed-width type is the
# Python operator's (a comparison, or an int checked by _int_result).
_INT_FAST: dict[str, Callable[[int, int], Any]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, ">": operator.gt,
    "<=": operator.le, ">=": operator.ge, "+": operator.add, "-": operator.sub,
    "*": operator.mul}
_CMP_OPS = frozenset(("==", "!=", "<", ">", "<=", ">="))


def _declares(b: A.Block) -> bool:
    """Whether a statement of ``b`` itself (not of a nested block) declares a name in the
    block's scope: a ``VarDecl`` (a property of the AST, kept on the node)."""
    d = b.__dict__.get("_declares")
    if d is None:
        d = b.__dict__["_declares"] = any(isinstance(st, A.VarDecl) for st in b.stmts)
    return bool(d)


# Builtins that only compute a value (or check one): a function that calls nothing else (and
# declares no struct or enum type, which would be a new type per call) is pure. (The ID
# getters record which IDs user code takes, the first time: the same on every call.)
PURE_BUILTINS = frozenset({
    "as", "bitcast", "comptime_assert", "concat_structs", "constants", "dimensions",
    "element_count", "element_type", "field", "fp16", "get_color", "get_control_task_id",
    "get_data_task_id", "get_dsd", "get_filter_id", "get_input_queue", "get_int",
    "get_local_task_id", "get_output_queue", "get_rectangle", "get_ut_id", "has_field",
    "increment_dsd_offset", "is_arch", "is_same_type", "range", "rank", "set_dsd_base_addr",
    "set_dsd_length", "set_dsd_stride", "strcat", "strlen", "type_of", "zeros"})


def pure_function(ctx: Compilation, owner: Any, d: A.FnDecl) -> bool:
    """Whether calls of ``d`` (declared in ``owner``) compute a value and nothing else: its
    body uses only :data:`PURE_BUILTINS` and calls only pure functions of its own module by
    name (memoised per compilation)."""
    key = ("pure", id(d))
    hit = ctx.memo.get(key)
    if hit is not None:
        return hit[1][0] is owner.ast and hit[1][1]
    ctx.memo[key] = (d, (owner.ast, False))          # (recursion: not pure)
    local = {p.name for p in d.params if p.name}
    ok = d.body is not None
    for n in (d.body.walk() if d.body is not None else ()):
        if isinstance(n, A.VarDecl):
            local.add(n.name)
        elif isinstance(n, A.For):
            local.update(n.captures)
    for n in (d.body.walk() if d.body is not None else ()):
        if not ok:
            break
        if isinstance(n, A.BuiltinCall):
            ok = n.name in PURE_BUILTINS
        elif isinstance(n, (A.StructType, A.EnumType)):
            ok = False
        elif isinstance(n, A.Call):
            callee = n.callee
            entry = owner.globals.get(callee.name) if isinstance(callee, A.Ident) and \
                callee.name not in local else None
            ok = entry is not None and isinstance(entry.decl, A.FnDecl) and \
                pure_function(ctx, owner, entry.decl)
    ctx.memo[key] = (d, (owner.ast, ok))
    return ok


def _call_key(owner: Any, d: A.FnDecl, args: list[Val]) -> Any:
    """A memo key for a call of ``d`` with ``args``: None unless every argument is a plain
    value (number, bool, string, hardware ID, void; or a type other than a struct or enum
    type). The key holds the objects it names, so their identities stay unique."""
    parts: list[Any] = [id(owner), id(d)]   # (the entry keeps both: the ids stay theirs)
    for a in args:
        p, t = a.v, a.type
        if isinstance(t, (T.StructT, T.EnumT)):
            return None
        if isinstance(p, float):
            parts.append((t, "f", p.hex()))
        elif isinstance(p, (int, str, bool)) or p is None:
            parts.append((t, type(p).__name__, p))
        elif isinstance(p, T.Type) and not isinstance(p, (T.StructT, T.EnumT)):
            parts.append((t, "type", p))
        else:
            return None
    return tuple(parts)


_LITERALS = (A.IntLit, A.FloatLit, A.CharLit, A.StringLit, A.BoolLit)


def _static_literal(e: A.Expr) -> bool:
    """Whether an anonymous literal's value depends on nothing but its text: its leaves are
    literals and direction names (which a file could shadow: see _declares_direction)."""
    if isinstance(e, _LITERALS):
        return True
    if isinstance(e, A.Ident):
        return e.name in DIRECTIONS
    if isinstance(e, A.InitList):
        return e.type is None and all(_static_literal(f.value) for f in e.fields) and \
            all(_static_literal(x) for x in e.items)
    return False


def _declares_direction(ctx: "Compilation", mod: ModuleInstance) -> bool:
    """Whether a direction name could resolve to something else than the direction in code of
    ``mod``: the file declares (or binds, in any position but a use) a name NORTH, SOUTH,
    EAST, WEST or RAMP, or ``mod`` is a struct namespace (resolved through outer scopes)."""
    if mod.outer is not None or mod.ast is None:
        return True
    key = ("declares_direction", id(mod.ast))
    hit = ctx.memo.get(key)
    if hit is None:
        found = any(getattr(n, "name", None) in DIRECTIONS and not isinstance(n, A.Ident)
                    for n in mod.ast.walk())
        hit = ctx.memo[key] = (mod.ast, found)
    return bool(hit[1])


def val_key(v: Val) -> Any:
    """A hashable key identifying a comptime value (used to group identical PE programs)."""
    p = v.v
    if isinstance(p, dict):
        return ("struct", tuple((k, val_key(x)) for k, x in p.items()))
    if isinstance(p, list):
        return ("tuple", tuple(val_key(x) for x in p))
    if isinstance(p, ArrayData):
        if p.data.dtype == object:
            return ("array", str(v.type), tuple(val_key(x) for x in p.data.ravel()))
        return ("array", str(v.type), p.data.tobytes())
    if isinstance(p, (int, float, str, bool)) or p is None:
        return (str(v.type), p)
    if isinstance(p, T.Type):
        return ("type", id(p) if isinstance(p, (T.StructT, T.EnumT)) else p)
    return ("obj", id(p))


def instantiate_source(text: str, path: str = "<string>", params: dict[str, Val] | None = None,
                       options: EvalOptions = EvalOptions(),
                       program: ProgramRecord | None = None) -> tuple[Interp, ModuleInstance]:
    """Parse ``text`` and make a module instance of it (top-level comptime blocks run).

    A convenience for tools and tests: ``ip.global_value(mod, "x", None)`` then evaluates
    a global lazily.
    """
    from .parser import parse_source
    ctx = Compilation(options)
    ip = Interp(ctx)
    mod = ModuleInstance(ctx, path, parse_source(text, path), params or {}, name=path,
                         program=program)
    ip.run_comptime_blocks(mod)
    return ip, mod
