"""Lowering: a PE program's run-time code compiled to the bytecode of the C++ engine.

The compiled engine (``bindings/pe_engine.hpp``, glue in :mod:`waferscale.sim.engine`) runs
the same model as the Python interpreter (:mod:`waferscale.sim.pe`), much faster. This module
turns the run-time code of one :class:`~waferscale.lang.layout.PEProgram` (its tasks, the
functions they call and its exported functions) into that engine's bytecode.

Protocol:

* Everything comptime-known is folded here with the comptime evaluator, exactly as the Python
  path evaluates it at run time (params, consts, DSD descriptors, ``@as`` of constants...).
  What remains is typed statically: each run-time value has a CSL type, so each instruction
  knows whether it works on a wrapped integer, an f16/f32 float, a pointer or a DSD.
* Time is charged where the Python path charges it (``TimingModel``): one ``statement`` per
  statement executed, one ``branch`` per call, intrinsic call and loop iteration, and the DSD
  op costs inside the engine. So both paths give the same cycle counts, which
  simulator_tests/sim/test_engine.py checks.
* Anything outside the supported subset raises :class:`Unsupported` with the construct and
  its location. The simulator then runs the whole program on the Python path (``SimOptions.
  engine="auto"``), so the subset limits speed, never what runs.

Supported subset: functions and tasks without comptime parameters; locals of integer, float,
bool, pointer and DSD types; global scalars, arrays (any rank, bounds-checked) and DSD
variables; ``[*]T`` and ``*T`` pointers; ``if``/``while``/``for`` over a ``@range``, labelled
blocks and loops with ``break``/``continue``; the arithmetic, comparison and logic operators;
``@as`` between numeric types, ``@bitcast`` between numeric types of one size; the DSD
operations the engine's table lists, sync or async with
``.activate``/``.unblock``/``.index``, with FIFO operands; the DSD setters;
``@activate``/``@block``/``@unblock``;
``sys_mod.unblock_cmd_stream``, ``<layout>`` coordinates and ``<time>`` timestamps.
``@map`` over DSDs, scalars and pointers (a pointer for a pointer parameter is passed
unchanged) with a CSL function or a ``<math>`` function, at most four operands;
``<math>`` scalar calls; ``<collectives_2d>``'s rendezvous model (sim/collectives.py).
``<simprint>``'s print_string and decimal prints; switch statements with comptime cases;
if-expressions on a run-time condition whose branches have one type, or whose result type
is known (an assignment, a typed declaration, an argument). Not supported (Python path):
run-time structs, arrays as values, blocks that yield a value where its type is not
known from the context, comptime-int variables.

Bytecode: instructions ``(op, a, b, c)`` of :class:`Op`. The instructions, the code tables
(types, operators, DSD kinds...) and the records filled here (``Dsd``, ``DsdCall``) come from
:mod:`.engine_abi`, which setup.py renders into ``bindings/pe_abi.hpp``; the VM's cases in
``bindings/pe_engine.hpp`` say what each operand means.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from ..lang import ast as A
from ..lang import types as T
from ..lang.comptime import Cell, Interp, RuntimeIntrinsic, RuntimeRef, Scope, local_key, val_key
from ..lang.builtins import LOAD_TO_DSR_OPTIONS, register_address_message
from ..lang.errors import CslError
from ..lang.modules import QUEUE_FLUSH_KIND, ROUTER_CONFIG_KINDS, _math_comptime, \
    router_config_args
from ..lang.registry import BUILTINS as REGISTRY
from ..lang.registry import ENG_FOLD, LIBRARY
from ..lang.values import ArrayData, DsdVal, DsrVal, FnVal, PtrVal, Val
from . import engine_abi as ABI
from .builtins_rt import DSD_OPS
from .dsd import base_elem, describe
from .memory import words_of
from .pe import SimError


class Unsupported(Exception):
    """A construct the compiled engine does not handle (the message says which, and where)."""


class _BadDsd(Unsupported):
    """A comptime-known DSD that dsd.describe rejects (``message``: its error). As an operand
    of an op it is an error only if the op runs (the interpreter resolves operands then), so
    the op's code fails at run time with that message instead of the program falling back."""

    def __init__(self, what: str, message: str) -> None:
        super().__init__(what)
        self.message = message


# The bytecode's instructions and the engine's code tables: engine_abi.py, the one source
# that setup.py also renders into bindings/pe_abi.hpp.
Op = ABI.Op
TCODES = ABI.TCODES
BINOPS = ABI.BINOPS
CMPOPS = ABI.CMPOPS
DMODS = ABI.DMODS
DSD_KINDS = ABI.DSD_KINDS
OPERAND = ABI.OPERAND_KINDS
CALL = ABI.CALL                          # DsdCall's field offsets
FIFO_T = T.NAMED_TYPES["fifo_handle"]
CONFIG_KEYS = {"async", "activate", "unblock", "index", "ut_id"}
# <math> functions the engine implements (pe_engine.hpp: math_fn), by base name, and
# <math>'s comptime functions that run-time code may also call on a float (modules.
# _math_comptime, one ``branch`` like any call).
COLLECTIVES = ABI.COLLECTIVES
MATH_FNS = ABI.MATH_FNS
MATH_COMPTIME_FNS = ABI.MATH_COMPTIME_FNS
ADDR_T = T.IntT(32, True)      # address arithmetic (never wraps for 48 KiB)
# Builtins that act at run time: never folded as constants (the registry's DSD operations are
# checked separately, by DSD_OPS).
EFFECTFUL = {r.name for r in REGISTRY.values() if not r.folds and r.family != "dsd_op"}


def tcode(t: T.Type, node: A.Node | None = None) -> int:
    """The engine's code for a run-time scalar type (pointers and IDs are 16-bit words)."""
    if isinstance(t, (T.IntT, T.FloatT)) and str(t) in TCODES:
        return TCODES[str(t)]
    if t == T.BOOL:
        return TCODES["bool"]
    if isinstance(t, T.PointerT) or T.is_hw_id(t):
        return TCODES["u16"]
    raise _unsupported(f"values of type '{t}'", node)


def _unsupported(what: str, node: A.Node | None) -> Unsupported:
    where = f" at {node.span}" if node is not None and node.span.file is not None else ""
    return Unsupported(f"{what}{where}")


DSR_FILE_CODES = ABI.DSR_FILE_CODES


def dsr_key(r: DsrVal) -> int:
    """The engine's key of a DSR (PEState::dsrs): file << 16 | id."""
    return DSR_FILE_CODES[r.file] << 16 | r.id


def dsr_role_error(what: str, args: list[A.Expr], vals: list[Val | None], out: int | None
                   ) -> tuple[str, A.Expr] | None:
    """dsd.check_dsr_role on comptime-known operands: the first DSR used in a role its file
    cannot hold (``out``: the index of the destination, or None), as (message, operand)."""
    for k, (a, v) in enumerate(zip(args, vals)):
        r = v.v if v is not None else None
        if not isinstance(r, DsrVal):
            continue
        if k == out and r.file == "src1":
            return f"{what} destination is {r}; a dsr_src1 holds only sources", a
        if k != out and r.file == "dest":
            return f"{what} source is {r}; a dsr_dest holds only destinations", a
    return None


def _mentions_walk(e: A.Node, names: dict[str, None]) -> bool:
    """_mentions' walk: True if ``e`` acts (a call, a dereference, a statement, an effectful
    builtin or DSD operation); else the identifiers of ``e`` are added to ``names``."""
    if isinstance(e, A.Ident):
        names[e.name] = None
        return False
    if isinstance(e, (A.Call, A.Deref, A.Stmt)):     # statements (switch prongs) act
        return True
    if isinstance(e, A.BuiltinCall) and (e.name in EFFECTFUL or e.name in DSD_OPS):
        return True
    for v in vars(e).values():
        if isinstance(v, list):
            for x in v:
                if isinstance(x, A.Node) and _mentions_walk(x, names):
                    return True
        elif isinstance(v, A.Node) and _mentions_walk(v, names):
            return True
    return False


def _mentions(e: A.Node) -> tuple[bool, tuple[str, ...]]:
    """What ProgramLowering.mentions_runtime needs of ``e``, a property of the AST worked
    out once per node (every program lowers the same files) and kept on it: whether it acts
    at run time whatever its names mean, else the identifiers it reads (each of which may
    name a run-time local where it is lowered)."""
    out = e.__dict__.get("_mentions")
    if out is None:
        names: dict[str, None] = {}
        out = e.__dict__["_mentions"] = \
            (True, ()) if _mentions_walk(e, names) else (False, tuple(names))
    return cast(tuple[bool, tuple[str, ...]], out)


def _f64_bits(x: float) -> int:
    return struct.unpack("<q", struct.pack("<d", float(x)))[0]


@dataclass
class Dyn:
    """A run-time value on the engine's stack (the DSD stack for DSD types)."""
    type: T.Type


@dataclass
class Local:
    slot: int
    type: T.Type
    mutable: bool
    defined_slot: int | None = None    # declared without a value: a slot saying "it is set"
    name: str = ""

    @property
    def dsd(self) -> bool:
        return T.is_dsd(self.type)


@dataclass
class MemLocal:
    """A local whose address is taken: it lives in its memory slot (ProgramRecord.
    local_storage), like a global at a fixed address (PEInterp._s_VarDecl)."""
    addr: int
    type: T.Type
    mutable: bool


@dataclass
class _Loop:
    """A loop or labelled block that ``break``/``continue`` jump out of (patched later)."""
    label: str | None = None
    block: bool = False                # a labelled block: only `break :label` targets it
    value_type: T.Type | None = None   # a block that yields a value of this type
    breaks: list[int] = field(default_factory=list)
    conts: list[int] = field(default_factory=list)


@dataclass
class _Fn:
    fn: FnVal
    index: int
    # Per parameter: a comptime Val (comptime params, and anytype ones given a constant) or
    # the run-time type of the argument; None: the declared type (a run-time parameter).
    bindings: list[Val | T.Type | None] = field(default_factory=list)
    ret: T.Type = T.VOID
    nslots: int = 0
    ndslots: int = 0
    scopes: list[dict[str, Any]] = field(default_factory=list)
    iscope: Scope | None = None
    loops: list[_Loop] = field(default_factory=list)


@dataclass
class LoweredProgram:
    """What ``Engine.add_program`` takes (see pe_engine.hpp)."""
    code: np.ndarray
    consts: np.ndarray
    dconsts: np.ndarray
    calls: np.ndarray
    fns: list[ABI.FnCode]
    tasks: list[ABI.TaskEntry]
    exports: dict[str, int]
    syms: list[ABI.Sym]
    names: list[str]
    nodes: list[A.Node]                     # error locations, by node id
    dsd_globals: dict[int, np.ndarray]      # word address -> initial DSD value
    dsr_preloads: list[tuple[int, np.ndarray, int]]   # (DSR key, DSD, dsr_flags), in order


class ProgramLowering:
    """Lowers the run-time code of one PE program (see the module docstring)."""

    def __init__(self, pe: Any, op_names: list[str], dsd_words: int, call_words: int) -> None:
        self.pe = pe                                # a PE running this program (addresses)
        self._addr_of = False                       # lowering the operand of '&'
        self.sim = pe.sim
        self.record = pe.record
        self.interp = Interp(self.sim.compilation)   # plain comptime evaluator for folding
        self.rt = pe.interp                          # run-time semantics of folded operators
        self.op_index = {n: k for k, n in enumerate(op_names)}
        self.dsd_words, self.call_words = dsd_words, call_words
        self.code: list[list[int]] = []
        self.consts: list[int] = []
        self.const_index: dict[int, int] = {}
        self.dconsts: list[list[int]] = []
        self.calls: list[list[int]] = []
        self.fns: list[ABI.FnCode] = []
        self.fn_index: dict[tuple[int, int, tuple[tuple[str, Any], ...]], int] = {}
        self.pending: list[Any] = []                 # code still to emit: callables
        self.names: list[str] = []
        self.nodes: list[A.Node] = []
        self.barrier = 0                             # no COST merging across a jump target
        self.cur: _Fn | None = None
        self.task_ids = {id(fn.decl): tid for tid, (_, fn) in pe.tasks.items()}

    @property
    def _f(self) -> _Fn:
        """The function being lowered: statements and expressions are only lowered inside
        _lower_fn, which sets ``cur``."""
        assert self.cur is not None
        return self.cur

    @property
    def _scope(self) -> Scope:
        """The innermost comptime scope of the function being lowered (set by _lower_fn,
        kept by push_scope/pop_scope)."""
        f = self._f
        assert f.iscope is not None
        return f.iscope

    # -- entry point ------------------------------------------------------------------------

    def lower(self) -> LoweredProgram:
        tasks = []
        for tid, (kind, fn) in self.pe.tasks.items():
            k = ABI.TASK_KINDS[kind]
            if not 0 <= tid < 128:
                raise _unsupported(f"task ID {tid}", fn.decl)
            # The teardown task (kind 3) is a local task whose ptypes name its color.
            ptypes: list[int] = [self.pe.teardown_color] if kind == "teardown" else []
            if kind == "data":
                scope = Scope(fn.owner.scope, fn.owner)
                pts = [self.interp.eval_type(p.type, scope) for p in fn.decl.params]
                if not 1 <= len(pts) <= 2:
                    raise _unsupported("a data task with neither one nor two parameters",
                                       fn.decl)
                ptypes = [tcode(t, fn.decl) for t in pts]
            elif kind == "control" and fn.decl.params:
                scope = Scope(fn.owner.scope, fn.owner)
                pts = [self.interp.eval_type(p.type, scope) for p in fn.decl.params]
                if len(pts) != 1:
                    raise _unsupported("a control task with more than one parameter", fn.decl)
                ptypes = [tcode(pts[0], fn.decl)]
            tasks.append(ABI.TaskEntry(tid=tid, kind=k, fn=self.function(fn), ptypes=ptypes,
                                       name=self.name(fn.name)))
        exports = {}
        for name, (sym, _span) in self.record.exported_symbols.items():
            if isinstance(sym, FnVal):
                exports[name] = self.function(sym)
        while self.pending:
            self.pending.pop(0)()
        syms = [ABI.Sym(lo=p.address // 2, n=p.size // 2, name=p.var.qualname)
                for p in self.pe.program.memory.placements]
        dsd_globals = {addr: np.array(self.dsd_pod(v, None), dtype=np.int32)
                       for addr, v in self.pe.dsd_vars.items()}
        # DSRs loaded in a top-level comptime block (builtins._preload_dsr), in order:
        # (DSR key, the DSD's pod, dsr_flags).
        dsr_preloads = [(dsr_key(r), np.array(self.dsd_pod(d, node), dtype=np.int32),
                         self.dsr_flags(opts, node))
                        for r, d, opts, node in self.pe.record.dsr_preloads]
        return LoweredProgram(
            code=np.array(self.code, dtype=np.int32).reshape(-1, 4),
            consts=np.array(self.consts, dtype=np.int64),
            dconsts=np.array(self.dconsts, dtype=np.int32).reshape(-1, self.dsd_words),
            calls=np.array(self.calls, dtype=np.int32).reshape(-1, self.call_words),
            fns=self.fns, tasks=tasks, exports=exports, syms=syms, names=self.names,
            nodes=self.nodes, dsd_globals=dsd_globals, dsr_preloads=dsr_preloads)

    # -- tables -------------------------------------------------------------------------------

    def name(self, s: str) -> int:
        if s in self.names:
            return self.names.index(s)
        self.names.append(s)
        return len(self.names) - 1

    def node(self, n: A.Node | None) -> int:
        if n is None:
            return -1
        self.nodes.append(n)
        return len(self.nodes) - 1

    def emit(self, op: Op, a: int = 0, b: int = 0, c: int = 0) -> int:
        if op == Op.COST and self.code and self.code[-1][0] == Op.COST \
                and len(self.code) > self.barrier:
            self.code[-1][1] += a
            return len(self.code) - 1
        self.code.append([int(op), int(a), int(b), int(c)])
        return len(self.code) - 1

    def label(self) -> int:
        self.barrier = len(self.code)
        return self.barrier

    def patch(self, at: list[int], target: int) -> None:
        for i in at:
            self.code[i][1] = target

    def const(self, bits: int) -> int:
        if not -(1 << 63) <= bits < (1 << 63):     # the engine's constants are int64
            raise _unsupported(f"the constant {bits} (wider than 64 bits)", None)
        k = self.const_index.get(bits)
        if k is None:
            k = self.const_index[bits] = len(self.consts)
            self.consts.append(bits)
        return k

    # -- functions ------------------------------------------------------------------------------

    def function(self, fn: FnVal, bindings: list[Val | T.Type | None] | None = None) -> int:
        """The index of ``fn``'s code, specialised for ``bindings`` (see _Fn); a function
        with comptime or anytype parameters gets one version per distinct binding."""
        d = fn.decl
        if fn.intrinsic is not None or d is None or d.body is None:
            raise _unsupported(f"calling '{fn.name}' (not CSL code)", d)
        if bindings is None:
            for p in d.params:
                if p.is_comptime or isinstance(p.type, A.AnyType):
                    raise _unsupported(f"a task or exported function with the comptime or "
                                       f"anytype parameter '{p.name}'", p)
            bindings = [None] * len(d.params)
        key = (id(d), id(fn.owner), tuple(
            ("ct", val_key(b)) if isinstance(b, Val) else ("rt", b) for b in bindings))
        k = self.fn_index.get(key)
        if k is not None:
            return k
        k = len(self.fns)
        self.fn_index[key] = k
        self.fns.append(ABI.FnCode(0, 0, 0, 0, []))
        f = _Fn(fn, k, list(bindings))
        self.pending.append(lambda: self._lower_fn(f))
        return k

    def _lower_fn(self, f: _Fn) -> None:
        fn, d = f.fn, f.fn.decl
        self.cur = f
        scope = Scope(fn.owner.scope, fn.owner)
        f.iscope = scope
        f.scopes = [{}]
        entry = self.label()
        param_dsd = []
        for p, b in zip(d.params, f.bindings):
            if isinstance(b, Val):
                self.const_local(p.name or "_", b)
                continue
            t = b if b is not None else self.interp.eval_type(p.type, f.iscope)
            loc = self.new_local(p.name or "_", t, mutable=False, node=p)
            param_dsd.append(int(loc.dsd))
        f.ret = self.interp.eval_type(d.ret, scope) if d.ret is not None else T.VOID
        self.emit(Op.COST, self.sim.timing.branch)       # the call's tick (Interp.call)
        self.block_body(d.body)
        self.emit(Op.RET)
        self.fns[f.index] = ABI.FnCode(entry=entry, nslots=f.nslots, ndslots=f.ndslots,
                                       nparams=len(param_dsd), param_dsd=param_dsd)
        self.cur = None

    def new_local(self, name: str, t: T.Type, mutable: bool, node: A.Node | None) -> Local:
        f = self._f
        if T.is_dsd(t):
            loc = Local(f.ndslots, t, mutable)
            f.ndslots += 1
        else:
            tcode(t, node)
            loc = Local(f.nslots, t, mutable)
            f.nslots += 1
        f.scopes[-1][name] = loc
        return loc

    def undefined_local(self, name: str, t: T.Type, node: A.Node) -> Local:
        """A ``var`` without a value (or ``= undefined``): reading it before a store is the
        interpreter's "use of undefined value" error, so a hidden slot tracks whether it is set
        (cleared each time the declaration runs, as a fresh scope cell is)."""
        if T.is_dsd(t):
            raise _unsupported("a DSD variable without a value", node)
        flag = self._f.nslots
        self._f.nslots += 1
        self.emit(Op.PUSHK, self.const(0))
        self.emit(Op.STOREL, flag)
        loc = self.new_local(name, t, True, node)
        loc.defined_slot, loc.name = flag, name
        return loc

    def check_defined(self, loc: Local, node: A.Node) -> None:
        if loc.defined_slot is not None:
            self.emit(Op.CHKDEF, loc.defined_slot, self.name(loc.name), self.node(node))

    def find(self, name: str) -> Local | None:
        for sc in reversed(self._f.scopes):
            v = sc.get(name)
            if v is not None:
                return v if isinstance(v, Local) else None
            if name in sc:
                return None
        return None

    def push_scope(self) -> None:
        self._f.scopes.append({})
        self._f.iscope = Scope(self._scope, self._scope.module)

    def pop_scope(self) -> None:
        self._f.scopes.pop()
        self._f.iscope = self._scope.parent

    def const_local(self, name: str, v: Val) -> None:
        self._f.scopes[-1][name] = v
        self._scope.vars[name] = Cell(name, v.type, v, False)

    # -- statements -------------------------------------------------------------------------

    def block_body(self, b: A.Block) -> None:
        """Interp.exec_block: a new scope, each statement through exec_stmt; a labelled
        block ends at ``break :label``."""
        target = _Loop(b.label, block=True) if b.label is not None else None
        if target is not None:
            self._f.loops.append(target)
        self.push_scope()
        for st in b.stmts:
            self.stmt(st)
        self.pop_scope()
        if target is not None:
            self._f.loops.pop()
            self.patch(target.breaks, self.label())

    def jump_target(self, label: str | None, node: A.Node, cont: bool = False) -> _Loop:
        """The loop or block a break/continue leaves (Interp._loop_body / exec_block)."""
        for t in reversed(self._f.loops):
            if (label is None and not t.block) or (label is not None and t.label == label):
                if cont and t.block:
                    break
                return t
        raise _unsupported("a break or continue without a matching loop or block", node)

    def branch(self, st: A.Stmt) -> None:
        """Interp._branch."""
        if isinstance(st, A.Block):
            self.stmt(st)
        else:
            self.push_scope()
            self.stmt(st)
            self.pop_scope()

    def stmt(self, st: A.Stmt) -> None:
        """Interp.exec_stmt: one ``statement`` cost, then the statement."""
        self.emit(Op.COST, self.sim.timing.statement)
        m = getattr(self, "_s_" + type(st).__name__, None)
        if m is None:
            raise _unsupported(f"{type(st).__name__} statements", st)
        m(st)

    def _s_Block(self, st: A.Block) -> None:
        self.block_body(st)

    def _s_ExprStmt(self, st: A.ExprStmt) -> None:
        r = self.expr(st.expr, want_value=False)
        self.discard(r)

    def discard(self, r: Val | Dyn) -> None:
        if isinstance(r, Dyn) and r.type != T.VOID:
            self.emit(Op.DPOP if T.is_dsd(r.type) else Op.POP)

    def scope_entry(self, name: str) -> Any:
        """The innermost run-time scope's entry for ``name`` (a Local, a MemLocal, a
        constant Val), or None."""
        for sc in reversed(self._f.scopes):
            if name in sc:
                return sc[name]
        return None

    def _s_VarDecl(self, d: A.VarDecl) -> None:
        if d.kind == "param" or d.is_comptime:
            raise _unsupported("comptime or param declarations in run-time code", d)
        gv = self.pe.program.record.local_storage.get(local_key(d))
        if gv is not None:
            self._mem_local(d, gv)
            return
        declared = self.interp.eval_type(d.type, self._scope) if d.type is not None else None
        if d.init is None:
            if declared is None or d.kind == "const":
                raise _unsupported("a declaration without initializer", d)
            self.undefined_local(d.name, declared, d)
            return
        if declared is not None and isinstance(d.init, (A.IfExpr, A.BlockExpr)) \
                and self.try_const(d.init) is None:
            self.value(d.init, declared)         # a run-time if-expression, typed here
            loc = self.new_local(d.name, declared, d.kind == "var", d)
            self.emit(Op.DSTOREL if loc.dsd else Op.STOREL, loc.slot)
            return
        v = self.expr(d.init)
        if isinstance(v, Val) and v.type == T.UNDEFINED_T:
            if declared is None:
                raise _unsupported("an undefined value without a type", d)
            self.undefined_local(d.name, declared, d)
            return
        if isinstance(v, Val) and d.kind == "const":
            if declared is not None:
                v = self._coerce_const(v, declared, d.init)
            self.const_local(d.name, v)
            return
        t = declared or v.type
        if isinstance(v, Val):
            if t in (T.COMPTIME_INT, T.COMPTIME_FLOAT):
                raise _unsupported("a run-time variable of a comptime type", d)
            self.push(v, t, d.init)
        else:
            self.coerce_dyn(v.type, t, d.init)
        loc = self.new_local(d.name, t, d.kind == "var", d)
        self.emit(Op.DSTOREL if loc.dsd else Op.STOREL, loc.slot)

    def _mem_local(self, d: A.VarDecl, gv: Any) -> None:
        """PEInterp._s_VarDecl for a local with storage: store the initializer there."""
        addr, t = self.pe.address_of(gv), gv.type
        if d.init is not None:
            if isinstance(t, T.ArrayT):
                v = self.try_const(d.init)
                if v is None or not isinstance(v.v, ArrayData):
                    raise _unsupported("an array local initialized at run time", d.init)
                v = self.interp.coerce(v, t, d.init)
                ew = words_of(t.elem)
                tc = tcode(t.elem, d)
                for i, x in enumerate(v.v.data.ravel()):
                    self.push(x if isinstance(x, Val) else Val(t.elem, x.item()), t.elem, d)
                    self.emit(Op.STOREM, tc, addr + i * ew, self.node(d))
            else:
                v0 = self.try_const(d.init)
                if not (v0 is not None and v0.type == T.UNDEFINED_T):
                    self.value(d.init, t)
                    self.emit(Op.STOREM, tcode(t, d), addr, self.node(d))
        self._f.scopes[-1][d.name] = MemLocal(addr, t, d.kind == "var")

    def _s_Assign(self, st: A.Assign) -> None:
        tgt = st.target
        if isinstance(tgt, A.Ident) and tgt.name == "_" and st.op == "=":
            self.discard(self.expr(st.value))
            return
        if isinstance(tgt, A.Ident):
            loc = self.find(tgt.name)
            if loc is not None:
                if not loc.mutable:
                    raise _unsupported(f"assignment to constant '{tgt.name}'", st)
                if st.op == "=":
                    self.value(st.value, loc.type)
                else:
                    self.check_defined(loc, tgt)
                    self.emit(Op.LOADL, loc.slot)
                    self.arith(st.op[:-1], Dyn(loc.type), st.value, st, result=loc.type)
                self.emit(Op.DSTOREL if loc.dsd else Op.STOREL, loc.slot)
                if loc.defined_slot is not None:
                    self.emit(Op.PUSHK, self.const(1))
                    self.emit(Op.STOREL, loc.defined_slot)
                return
            if any(tgt.name in sc for sc in self._f.scopes) \
                    and not isinstance(self.scope_entry(tgt.name), MemLocal):
                raise _unsupported(f"assignment to constant '{tgt.name}'", st)
        pl = self.place(tgt)
        if pl is None:
            raise _unsupported("this assignment target", tgt)
        addr, t = pl
        if T.is_dsd(t):
            if addr is None or st.op != "=":
                raise _unsupported("this DSD assignment", st)
            self.value(st.value, t)
            self.emit(Op.DSTOREG, addr)
            return
        tc = tcode(t, st)
        if addr is None:                     # the address is on the stack
            if st.op == "=":
                self.value(st.value, t)
            else:
                self.emit(Op.DUP)
                self.emit(Op.LOADA, tc, 0, self.node(st))
                self.arith(st.op[:-1], Dyn(t), st.value, st, result=t)
            self.emit(Op.STOREA, tc, 0, self.node(st))
            return
        if st.op == "=":
            self.value(st.value, t)
        else:
            self.emit(Op.LOADM, tc, addr, self.node(st))
            self.arith(st.op[:-1], Dyn(t), st.value, st, result=t)
        self.emit(Op.STOREM, tc, addr, self.node(st))

    def _s_Return(self, st: A.Return) -> None:
        ret = self._f.ret
        if st.value is not None:
            if ret == T.VOID:
                raise _unsupported("returning a value from a void function", st)
            self.value(st.value, ret)
        elif ret != T.VOID:
            raise _unsupported("a bare return from a non-void function", st)
        self.emit(Op.RET)

    def _s_Break(self, st: A.Break) -> None:
        target = self.jump_target(st.label, st)
        if st.value is not None:
            if target.value_type is None:
                raise _unsupported("a break with a value out of a block of unknown type", st)
            self.value(st.value, target.value_type)
        elif target.value_type is not None:
            raise _unsupported("a break without a value out of a block that yields one", st)
        target.breaks.append(self.emit(Op.JMP))

    def _s_Continue(self, st: A.Continue) -> None:
        self.jump_target(st.label, st, cont=True).conts.append(self.emit(Op.JMP))

    def _s_If(self, st: A.If) -> None:
        c = self.expr(st.cond)
        if isinstance(c, Val):
            if c.type != T.BOOL:
                raise _unsupported("a non-bool condition", st.cond)
            if c.v:
                self.branch(st.then)
            elif st.else_ is not None:
                self.branch(st.else_)
            return
        if c.type != T.BOOL:
            raise _unsupported("a non-bool condition", st.cond)
        jz = self.emit(Op.JZ)
        self.branch(st.then)
        if st.else_ is None:
            self.patch([jz], self.label())
            return
        jend = self.emit(Op.JMP)
        self.patch([jz], self.label())
        self.branch(st.else_)
        self.patch([jend], self.label())

    def _s_While(self, st: A.While) -> None:
        top = self.label()
        self.emit(Op.COST, self.sim.timing.branch)
        c = self.expr(st.cond)
        exits = []
        if isinstance(c, Val):
            if c.type != T.BOOL:
                raise _unsupported("a non-bool condition", st.cond)
            if not c.v:
                exits.append(self.emit(Op.JMP))
        else:
            exits.append(self.emit(Op.JZ))
        loop = _Loop(st.label)
        self._f.loops.append(loop)
        self.branch(st.body)
        self._f.loops.pop()
        self.patch(loop.conts, self.label())
        if st.cont is not None:
            self.stmt(st.cont)
        self.emit(Op.JMP, top)
        end = self.label()
        self.patch(exits + loop.breaks, end)

    def _s_For(self, st: A.For) -> None:
        if len(st.captures) > 1:
            raise _unsupported("index captures", st)
        f = self._f
        counter = f.nslots
        f.nslots += 1
        it = self.try_const(st.iterable)
        stop_slot = None
        if it is not None:
            if not isinstance(it.type, T.RangeT):
                raise _unsupported("for loops over anything but a @range", st.iterable)
            start, stop, step = it.v
            elem = it.type.elem
            self.emit(Op.PUSHK, self.const(start))
            self.emit(Op.STOREL, counter)
        else:
            elem, step, stop_slot = self._runtime_range(st.iterable, counter)
        top = self.label()
        self.emit(Op.LOADL, counter)
        if stop_slot is None:
            self.emit(Op.PUSHK, self.const(stop))
        else:
            self.emit(Op.LOADL, stop_slot)
        self.emit(Op.ICMP, CMPOPS["<" if step > 0 else ">"])
        jend = self.emit(Op.JZ)
        self.emit(Op.COST, self.sim.timing.branch)
        self.push_scope()
        if st.captures:
            cap = self.new_local(st.captures[0], elem, False, st)
            self.emit(Op.LOADL, counter)
            self.emit(Op.STOREL, cap.slot)
        loop = _Loop(st.label)
        f.loops.append(loop)
        self.branch(st.body)
        f.loops.pop()
        self.pop_scope()
        self.patch(loop.conts, self.label())
        self.emit(Op.LOADL, counter)
        self.emit(Op.PUSHK, self.const(step))
        self.emit(Op.IBIN, BINOPS["+"], tcode(ADDR_T))
        self.emit(Op.STOREL, counter)
        self.emit(Op.JMP, top)
        end = self.label()
        self.patch([jend] + loop.breaks, end)

    def _runtime_range(self, e: A.Expr, counter: int) -> tuple[T.Type, int, int]:
        """``@range(T, stop)`` / ``@range(T, start, stop, step)`` with run-time bounds (the
        step must be comptime-known): start goes to ``counter``, stop to a new slot."""
        if not isinstance(e, A.BuiltinCall) or e.name != "range" or len(e.args) not in (2, 4):
            raise _unsupported("for loops over anything but a @range", e)
        t = self.try_const(e.args[0])
        if t is None or t.type != T.TYPE or not isinstance(t.v, T.IntT):
            raise _unsupported("a @range of a run-time or non-integer type", e)
        elem = t.v
        if len(e.args) == 2:
            start_e, stop_e, step = None, e.args[1], 1
        else:
            start_e, stop_e = e.args[1], e.args[2]
            sv = self.try_const(e.args[3])
            if sv is None or not T.is_int(sv.type) or sv.v == 0:
                raise _unsupported("a @range with a run-time or zero step", e.args[3])
            step = sv.v
        if start_e is None:
            self.emit(Op.PUSHK, self.const(0))
        else:
            self.value(start_e, elem)
        self.emit(Op.STOREL, counter)
        stop_slot = self._f.nslots
        self._f.nslots += 1
        self.value(stop_e, elem)
        self.emit(Op.STOREL, stop_slot)
        return elem, step, stop_slot

    # -- expressions ----------------------------------------------------------------------------

    def mentions_runtime(self, e: Any) -> bool:
        """Does ``e`` read a run-time local, call a function or act at run time?"""
        if not isinstance(e, A.Node):
            return False
        acts, names = _mentions(e)
        if acts:
            return True
        scopes = self._f.scopes
        for name in names:
            # The innermost entry of the name (find: a Local; scope_entry: a MemLocal).
            for sc in reversed(scopes):
                if name in sc:
                    if isinstance(sc[name], (Local, MemLocal)):
                        return True
                    break
        return False

    def try_const(self, e: A.Expr) -> Val | None:
        if self.mentions_runtime(e):
            return None
        try:
            v = self.interp.eval(e, self._scope)
        except CslError:
            return None
        if isinstance(v.v, RuntimeRef):
            return None
        return v

    def expr(self, e: A.Expr, want_value: bool = True) -> Val | Dyn:
        """Lower ``e``: a comptime-known Val (no code), or Dyn (its code leaves the value on
        a stack)."""
        v = self.try_const(e)
        if v is not None:
            return v
        m = getattr(self, "_e_" + type(e).__name__, None)
        if m is None:
            raise _unsupported(f"{type(e).__name__} expressions at run time", e)
        r = m(e)
        if want_value and isinstance(r, Dyn) and r.type == T.VOID:
            raise _unsupported("using the value of a void call", e)
        return r

    def value(self, e: A.Expr, t: T.Type) -> None:
        """Lower ``e`` and leave it on the stack coerced to ``t``."""
        if isinstance(e, A.BlockExpr) and e.block.label is not None \
                and self.mentions_runtime(e) and not T.is_dsd(t):
            # `blk: { ... break :blk v; ... }` (Interp._e_BlockExpr), its type known here.
            target = _Loop(e.block.label, block=True, value_type=t)
            self._f.loops.append(target)
            self.push_scope()
            for st in e.block.stmts:
                self.stmt(st)
            self.pop_scope()
            self._f.loops.pop()
            # Falling off the end yields void, which does not coerce to t.
            self.emit(Op.FAIL, self.name(f"expected type '{t}', found 'void'"), 0, self.node(e))
            self.patch(target.breaks, self.label())
            return
        if isinstance(e, A.IfExpr) and e.else_ is not None and self.try_const(e) is None:
            # Interp._e_IfExpr then the coercion to t: each branch coerced to t.
            c = self.expr(e.cond)
            if c.type != T.BOOL:
                raise _unsupported("a non-bool condition", e.cond)
            if isinstance(c, Val):
                self.value(e.then if c.v else e.else_, t)
                return
            jz = self.emit(Op.JZ)
            self.value(e.then, t)
            jend = self.emit(Op.JMP)
            self.patch([jz], self.label())
            self.value(e.else_, t)
            self.patch([jend], self.label())
            return
        r = self.expr(e)
        if isinstance(r, Val):
            self.push(r, t, e)
        else:
            self.coerce_dyn(r.type, t, e)

    def _coerce_const(self, v: Val, t: T.Type, node: A.Node) -> Val:
        try:
            return self.rt.coerce(v, t, node)
        except CslError as ex:
            raise _unsupported(f"a constant that does not coerce ({ex.message})", node) \
                from None

    def push(self, v: Val, t: T.Type | None, node: A.Node) -> None:
        """Materialize a comptime value on the stack (as type ``t`` when given)."""
        if isinstance(v.v, DsdVal):
            self.dconsts.append(self.dsd_pod(v, node))
            self.emit(Op.DPUSHK, len(self.dconsts) - 1)
            return
        if t is not None and v.type != t and not (isinstance(v.v, PtrVal)):
            v = self._coerce_const(v, t, node)
        p = v.v
        if isinstance(p, PtrVal):
            bits = self.rt.materialize(v, node).v
        elif isinstance(p, bool):
            bits = int(p)
        elif isinstance(p, int):
            bits = p
        elif isinstance(p, float):
            bits = _f64_bits(p)
        else:
            raise _unsupported(f"a run-time value of type '{v.type}'", node)
        self.emit(Op.PUSHK, self.const(bits))

    def coerce_dyn(self, src: T.Type, dst: T.Type, node: A.Node) -> None:
        """Interp.coerce for a run-time value of static type ``src``."""
        if src == dst:
            return
        if isinstance(src, T.IntT) and isinstance(dst, T.IntT):
            if not (dst.min <= src.min and src.max <= dst.max):
                self.emit(Op.FITCHK, tcode(dst), 0, self.node(node))
            return
        if src == T.F16 and dst == T.F32:
            return
        if isinstance(src, T.PointerT) and isinstance(dst, T.PointerT):
            try:
                # Only the types are checked (Interp.coerce never reads a pointer's value).
                self.interp.coerce(Val(src, None), dst, node)
            except CslError:
                raise _unsupported(f"coercing '{src}' to '{dst}'", node) from None
            return
        if T.is_dsd(src) and T.is_dsd(dst) and src == dst:
            return
        raise _unsupported(f"coercing a run-time '{src}' to '{dst}'", node)

    def _e_Ident(self, e: A.Ident) -> Dyn:
        loc = self.find(e.name)
        if loc is not None:
            self.check_defined(loc, e)
            self.emit(Op.DLOADL if loc.dsd else Op.LOADL, loc.slot)
            return Dyn(loc.type)
        pl = self.place(e)
        if pl is None:
            raise _unsupported(f"reading '{e.name}' at run time", e)
        return self.load(pl, e)

    def load(self, pl: tuple[int | None, T.Type], e: A.Node) -> Dyn:
        addr, t = pl
        if T.is_dsd(t):
            if addr is None:
                raise _unsupported("DSDs behind pointers", e)
            name = self.name(getattr(e, "name", "dsd"))
            self.emit(Op.DLOADG, addr, name, self.node(e))
            return Dyn(t)
        if isinstance(t, T.ArrayT):
            raise _unsupported("arrays as run-time values", e)
        tc = tcode(t, e)
        if addr is None:
            self.emit(Op.LOADA, tc, 0, self.node(e))
        else:
            self.emit(Op.LOADM, tc, addr, self.node(e))
        return Dyn(t)

    def _e_Index(self, e: A.Index) -> Dyn:
        pl = self.place(e)
        if pl is None:
            raise _unsupported("indexing a run-time value that is not in memory", e)
        return self.load(pl, e)

    def _e_Deref(self, e: A.Deref) -> Dyn:
        pl = self.place(e)
        if pl is None:
            raise _unsupported("this dereference", e)
        return self.load(pl, e)

    def place(self, e: A.Expr) -> tuple[int | None, T.Type] | None:
        """PEInterp.place: (word address, type) with the address comptime-known, or
        (None, type) with its code leaving the address on the stack; None: not in memory."""
        if isinstance(e, A.Ident):
            ent = self.scope_entry(e.name)
            if isinstance(ent, MemLocal):
                return ent.addr, ent.type
            if self.find(e.name) is not None or any(e.name in sc for sc in self._f.scopes):
                return None
            mod = self._scope.module
            if self._scope.find(e.name) is not None or e.name not in mod.globals:
                return None
            v = self.interp.global_value(mod, e.name, e.span)
            # Under '&', a const array with storage (Interp.const_storage) is in memory
            # (read-only); reads of it stay folded, as on the Python path.
            gv = v.v.var if isinstance(v.v, RuntimeRef) else \
                mod.globals[e.name].symbol if self._addr_of else None
            if gv is None:
                return None
            return self.pe.address_of(gv), gv.type
        if isinstance(e, A.Index):
            base = self.place(e.target)
            if base is not None and isinstance(base[1], T.ArrayT):
                return self._index_array(base, e)
            ptr = self.expr(e.target)
            pt = ptr.type
            if not isinstance(pt, T.PointerT):
                return None
            if len(e.indices) != 1 and (pt.many or not isinstance(pt.elem, T.ArrayT)):
                raise _unsupported("a [*]T pointer with several indices", e)
            if pt.many:
                if isinstance(ptr, Val):
                    self.push(ptr, None, e)
                self.index_value(e.indices[0])
                ew = words_of(pt.elem)
                self.emit(Op.PTRIDX, ew, tcode(pt.elem, e), self.node(e))
                return None, pt.elem
            if isinstance(pt.elem, T.ArrayT):
                if isinstance(ptr, Val):
                    addr = self.rt.materialize(ptr, e).v
                    return self._index_array((addr, pt.elem), e, checked=False)
                return self._index_array((None, pt.elem), e, checked=False)
            return None
        if isinstance(e, A.Deref):
            ptr = self.expr(e.target)
            pt = ptr.type
            if not isinstance(pt, T.PointerT) or pt.many:
                raise _unsupported("this dereference", e)
            if isinstance(ptr, Val):
                return self.rt.materialize(ptr, e).v, pt.elem
            return None, pt.elem
        return None

    def _index_array(self, base: tuple[int | None, T.Type], e: A.Index,
                     checked: bool = True) -> tuple[int | None, T.Type]:
        addr, at = base
        assert isinstance(at, T.ArrayT)     # place() only indexes arrays through here
        if len(e.indices) != len(at.dims):
            raise _unsupported(f"indexing '{at}' with {len(e.indices)} indices", e)
        ew = words_of(at.elem)
        strides = [int(np.prod(at.dims[d + 1:], dtype=np.int64)) for d in range(len(at.dims))]
        consts = [self.try_const(i) for i in e.indices]
        if addr is not None and all(c is not None for c in consts):
            flat = 0
            for d, (c, n) in enumerate(zip(consts, at.dims)):
                assert c is not None
                if not T.is_int(c.type) or (checked and not 0 <= c.v < n):
                    raise _unsupported("a constant index out of bounds", e)
                flat += c.v * strides[d]
            return addr + flat * ew, at.elem
        if addr is not None:
            self.emit(Op.PUSHK, self.const(addr))
        for d, (i, n) in enumerate(zip(e.indices, at.dims)):
            self.index_value(i)
            if checked:
                self.emit(Op.BOUNDS, n, d, self.node(e))
            if strides[d] * ew != 1:
                self.emit(Op.PUSHK, self.const(strides[d] * ew))
                self.emit(Op.IBIN, BINOPS["*"], tcode(ADDR_T))
            self.emit(Op.IBIN, BINOPS["+"], tcode(ADDR_T))
        return None, at.elem

    def index_value(self, i: A.Expr) -> None:
        """An index on the stack as a plain integer (Interp.to_int: any integer type)."""
        r = self.expr(i)
        if isinstance(r, Val):
            if not T.is_int(r.type) or not isinstance(r.v, int):
                raise _unsupported("a non-integer index", i)
            self.emit(Op.PUSHK, self.const(r.v))
        elif not isinstance(r.type, T.IntT):
            raise _unsupported("a non-integer index", i)

    def _e_IfExpr(self, e: A.IfExpr) -> Val | Dyn:
        """Interp._e_IfExpr without a type from the context: both branches must have the
        same run-time type (e.g. ``const p = if (c) &a else &b;``)."""
        c = self.expr(e.cond)
        if c.type != T.BOOL or e.else_ is None:
            raise _unsupported("this if-expression", e)
        if isinstance(c, Val):
            return self.expr(e.then if c.v else e.else_)
        jz = self.emit(Op.JZ)
        r = self.expr(e.then)
        t = r.type
        if t in (T.COMPTIME_INT, T.COMPTIME_FLOAT) or t == T.VOID:
            raise _unsupported(f"an if-expression of type '{t}' on a run-time condition", e)
        if isinstance(r, Val):
            self.push(r, t, e.then)
        jend = self.emit(Op.JMP)
        self.patch([jz], self.label())
        r2 = self.expr(e.else_)
        if r2.type != t:
            raise _unsupported(f"an if-expression whose branches have types '{t}' and "
                               f"'{r2.type}'", e)
        if isinstance(r2, Val):
            self.push(r2, t, e.else_)
        self.patch([jend], self.label())
        return Dyn(t)

    def _e_BlockExpr(self, e: A.BlockExpr) -> Dyn:
        """A (labelled) block in statement position, its value unused (Interp._e_BlockExpr:
        no statement cost of its own)."""
        self.block_body(e.block)
        return Dyn(T.VOID)

    def _e_Switch(self, e: A.Switch) -> Dyn:
        """A switch statement (Interp._e_Switch / select_prong): the prongs' cases are
        comptime-known and tested in order; the first match runs, else the else prong, else
        the interpreter's "matches no case" error."""
        subj = self.expr(e.subject)
        t = subj.type
        if not (isinstance(t, T.IntT) or t == T.BOOL or T.is_hw_id(t)):
            raise _unsupported(f"a switch on '{t}'", e.subject)
        prongs = [p for p in e.prongs if not p.is_else]
        else_prong = next((p for p in e.prongs if p.is_else), None)
        if sum(p.is_else for p in e.prongs) > 1 or (else_prong is None and T.is_hw_id(t)):
            raise _unsupported("this run-time switch", e)
        cases: list[list[int]] = []
        seen: set[int] = set()
        for p in prongs:
            vals = []
            for c in p.cases:
                cv = self.try_const(c)
                if cv is None:
                    raise _unsupported("a run-time switch case", c)
                v = self._coerce_const(cv, t, c).v
                if v in seen:
                    raise _unsupported("a duplicate switch case", c)
                seen.add(v)
                vals.append(int(v))
            cases.append(vals)
        if isinstance(subj, Val):
            v = self._coerce_const(subj, t, e.subject).v
            chosen = next((p for p, vs in zip(prongs, cases) if v in vs), else_prong)
            if chosen is None:
                raise _unsupported("a switch that matches no case", e)
            self._prong(chosen)
            return Dyn(T.VOID)
        tmp = self._f.nslots
        self._f.nslots += 1
        self.emit(Op.STOREL, tmp)
        to_body: list[list[int]] = []
        for vals in cases:
            jumps = []
            for v in vals:
                self.emit(Op.LOADL, tmp)
                self.emit(Op.PUSHK, self.const(v))
                self.emit(Op.ICMP, CMPOPS["!="])
                jumps.append(self.emit(Op.JZ))
            to_body.append(jumps)
        if else_prong is None:      # Interp.select_prong's error when nothing matches
            self.emit(Op.LOADL, tmp)
            self.emit(Op.NOMATCH, int(t == T.BOOL), 0, self.node(e))
            to_else = None
        else:
            to_else = self.emit(Op.JMP)
        ends = []
        for p, jumps in zip(prongs, to_body):
            self.patch(jumps, self.label())
            self._prong(p)
            ends.append(self.emit(Op.JMP))
        if to_else is not None:
            assert else_prong is not None     # to_else is only set when there is one
            self.patch([to_else], self.label())
            self._prong(else_prong)
        self.patch(ends, self.label())
        return Dyn(T.VOID)

    def _prong(self, p: A.SwitchProng) -> None:
        if isinstance(p.body, A.Expr):
            self.discard(self.expr(p.body, want_value=False))
        else:                         # a statement prong runs in a scope of its own
            assert isinstance(p.body, A.Stmt)  # Parser.parse_body: a statement switch's prongs
            self.push_scope()
            self.stmt(p.body)
            self.pop_scope()

    def _e_Unary(self, e: A.Unary) -> Dyn:
        if e.op == "&":
            self._addr_of = True
            try:
                pl = self.place(e.operand)
            finally:
                self._addr_of = False
            if pl is None:
                raise _unsupported("this address-of", e)
            addr, t = pl
            if addr is not None:
                self.emit(Op.PUSHK, self.const(addr))
            return Dyn(T.PointerT(t))
        r = self.expr(e.operand)
        if not isinstance(r, Dyn):              # e.g. -dsd: not an operator on values
            raise _unsupported(f"'{e.op}' applied to a constant of type '{r.type}'", e)
        t = r.type
        if e.op == "!" and t == T.BOOL:
            self.emit(Op.NOT)
        elif e.op == "-" and isinstance(t, T.IntT):
            self.emit(Op.INEG, tcode(t))
        elif e.op == "-" and isinstance(t, T.FloatT):
            self.emit(Op.FNEG)
        elif e.op == "~" and isinstance(t, T.IntT):
            self.emit(Op.BNOT, tcode(t))
        else:
            raise _unsupported(f"operator '{e.op}' on '{t}'", e)
        return Dyn(t)

    def _e_Binary(self, e: A.Binary) -> Val | Dyn:
        op = e.op
        if op in ("and", "or"):
            return self._logic(e)
        lhs = self.expr(e.lhs)
        return self.arith(op, lhs, e.rhs, e)

    def _logic(self, e: A.Binary) -> Val | Dyn:
        lhs = self.expr(e.lhs)
        if isinstance(lhs, Val):
            if lhs.type != T.BOOL:
                raise _unsupported("a non-bool operand of and/or", e.lhs)
            if lhs.v == (e.op == "or"):
                return Val(T.BOOL, lhs.v)
            r = self.expr(e.rhs)
            if r.type != T.BOOL:
                raise _unsupported("a non-bool operand of and/or", e.rhs)
            return r
        if lhs.type != T.BOOL:
            raise _unsupported("a non-bool operand of and/or", e.lhs)
        jz = self.emit(Op.JZ)
        if e.op == "and":
            self.value(e.rhs, T.BOOL)
            jend = self.emit(Op.JMP)
            self.patch([jz], self.label())
            self.emit(Op.PUSHK, self.const(0))
        else:
            self.emit(Op.PUSHK, self.const(1))
            jend = self.emit(Op.JMP)
            self.patch([jz], self.label())
            self.value(e.rhs, T.BOOL)
        self.patch([jend], self.label())
        return Dyn(T.BOOL)

    def arith(self, op: str, lhs: Val | Dyn, rhs_e: A.Expr, node: A.Node,
              result: T.Type | None = None) -> Val | Dyn:
        """Interp.binop with ``lhs`` lowered already (on the stack when Dyn) and the right
        operand still an expression. ``result``: coerce the result to this type."""
        rhs = self.expr(rhs_e)
        if isinstance(lhs, Val) and isinstance(rhs, Val):
            try:
                v = self.rt.binop(op, lhs, rhs, node)
            except CslError:
                raise _unsupported(f"constant operation '{op}'", node) from None
            if result is not None:
                self.push(v, result, node)
                return Dyn(result)
            return v
        if op in ("<<", ">>"):
            t = lhs.type
            if not isinstance(t, T.IntT) or not (isinstance(rhs.type, T.IntT)
                                                 and not rhs.type.signed
                                                 or rhs.type == T.COMPTIME_INT):
                raise _unsupported(f"shift of '{t}' by '{rhs.type}'", node)
            if isinstance(lhs, Val):
                raise _unsupported("shifting a constant by a run-time amount", node)
            if isinstance(rhs, Val):
                if rhs.v < 0:
                    raise _unsupported("a negative shift", node)
                self.emit(Op.PUSHK, self.const(rhs.v))
            self.emit(Op.IBIN, BINOPS[op], tcode(t), self.node(node))
            out: T.Type = t
        else:
            t = self._unify(lhs.type, rhs.type, node)
            if isinstance(rhs, Val):
                self.push(rhs, t, rhs_e)
            elif isinstance(lhs, Val):
                self.push(lhs, t, node)
                self.emit(Op.SWAP)
            if op in CMPOPS:
                if not (T.is_numeric(t) or t == T.BOOL or T.is_hw_id(t)) or (
                        op not in ("==", "!=") and not T.is_numeric(t)):
                    raise _unsupported(f"comparing '{t}' with '{op}'", node)
                self.emit(Op.FCMP if isinstance(t, T.FloatT) else Op.ICMP, CMPOPS[op])
                out = T.BOOL
            elif op in BINOPS:
                if isinstance(t, T.IntT):
                    self.emit(Op.IBIN, BINOPS[op], tcode(t), self.node(node))
                elif isinstance(t, T.FloatT) and op in "+-*/%":
                    self.emit(Op.FBIN, BINOPS[op], tcode(t))
                else:
                    raise _unsupported(f"operator '{op}' on '{t}'", node)
                out = t
            else:
                raise _unsupported(f"operator '{op}'", node)
        if result is not None:
            self.coerce_dyn(out, result, node)
            return Dyn(result)
        return Dyn(out)

    def _unify(self, ta: T.Type, tb: T.Type, node: A.Node) -> T.Type:
        if ta == tb:
            return ta
        for x, y in ((ta, tb), (tb, ta)):
            if x == T.COMPTIME_INT and T.is_numeric(y) and y not in (T.COMPTIME_FLOAT,):
                return y
            if x == T.COMPTIME_FLOAT and isinstance(y, T.FloatT):
                return y
        raise _unsupported(f"mixing '{ta}' and '{tb}'", node)

    def _e_Call(self, e: A.Call) -> Dyn:
        callee = self.expr(e.callee)
        if not isinstance(callee, Val) or not isinstance(callee.v, FnVal):
            raise _unsupported("calling a run-time function value", e)
        fn = callee.v
        if isinstance(fn.intrinsic, RuntimeIntrinsic):
            return self._intrinsic(fn, e)
        f = fn.intrinsic
        if isinstance(f, functools.partial) and f.func is _math_comptime \
                and f.keywords.get("fn_name") in MATH_COMPTIME_FNS and len(e.args) == 1:
            r = self.expr(e.args[0])
            if isinstance(r, Val) or r.type not in (T.F16, T.F32):
                raise _unsupported(f"math.{f.keywords['fn_name']} of a run-time '{r.type}'", e)
            self.emit(Op.COST, self.sim.timing.branch)
            self.emit(Op.MATH, MATH_COMPTIME_FNS[f.keywords["fn_name"]], tcode(r.type),
                      tcode(r.type))
            return Dyn(r.type)
        d = fn.decl
        rec = LIBRARY.get(f"{getattr(fn.owner, 'lib', '')}."
                          f"{getattr(f, '__name__', '').rsplit('.', 1)[-1]}")
        if d is None and rec is not None and rec.engine == ENG_FOLD:
            # A library member run at compile time whose record says the engine folds it
            # (registry ENG_FOLD: <debug>'s string helper, <control>'s encoders, <tile_config>'s
            # get_color_config_addr...): folded when its arguments are comptime-known (`{}`:
            # the void value); one ``branch``, as PEInterp.call charges every call (its tick).
            vals = [Val(T.VOID, None) if isinstance(a, A.BlockExpr) and not a.block.stmts
                    else self.expr(a) for a in e.args]
            if all(isinstance(v, Val) for v in vals):
                self.emit(Op.COST, self.sim.timing.branch)
                return f(self.interp, [v for v in vals if isinstance(v, Val)], e)
            raise _unsupported(f"'{rec.qualname}' of a run-time value", e)
        if d is None or len(e.args) != len(d.params):
            raise _unsupported("a call with the wrong number of arguments", e)
        # Interp.call: parameter types are evaluated with the earlier parameters bound.
        scope = Scope(fn.owner.scope, fn.owner)
        bindings: list[Val | T.Type | None] = []
        for p, a in zip(d.params, e.args):
            if isinstance(p.type, A.AnyType):
                r = self.expr(a)
                bindings.append(r if isinstance(r, Val) else r.type)
                v = r if isinstance(r, Val) else None
            elif p.is_comptime:
                r = self.expr(a)
                if not isinstance(r, Val):
                    raise _unsupported(f"a run-time argument for comptime '{p.name}'", a)
                v = self._coerce_const(r, self.interp.eval_type(p.type, scope), a)
                bindings.append(v)
            else:
                self.value(a, self.interp.eval_type(p.type, scope))
                bindings.append(None)
                v = None
            if v is not None and p.name is not None:
                scope.vars[p.name] = Cell(p.name, v.type, v, False)
        k = self.function(fn, bindings)
        self.emit(Op.CALL, k)
        ret = self.interp.eval_type(d.ret, scope) if d.ret is not None else T.VOID
        return Dyn(ret)

    def _intrinsic(self, fn: FnVal, e: A.Call) -> Dyn:
        """builtins_rt.INTRINSICS (one ``branch`` each, as PEInterp.call charges)."""
        name = fn.intrinsic.qualname
        branch = self.sim.timing.branch
        if name == "memcpy/memcpy.unblock_cmd_stream":
            self.emit(Op.COST, branch)
            self.emit(Op.UNBLOCKCMD)
            return Dyn(T.VOID)
        if name in ("layout.get_x_coord", "layout.get_y_coord"):
            self.emit(Op.COST, branch)
            self.emit(Op.PUSHXY, int(name.endswith("y_coord")))
            return Dyn(T.U16)
        if name in ("time.enable_tsc", "time.disable_tsc"):
            self.emit(Op.COST, branch)
            return Dyn(T.VOID)
        if name == "time.get_timestamp" and len(e.args) == 1:
            r = self.expr(e.args[0])
            if isinstance(r, Val):
                self.push(r, None, e)
            self.emit(Op.COST, branch)
            self.emit(Op.TIMESTAMP, 0, 0, self.node(e))
            return Dyn(T.VOID)
        if name == "simprint.print_string" and len(e.args) == 1:
            r = self.expr(e.args[0])
            if not isinstance(r, Val) or not isinstance(r.v, str):
                raise _unsupported("print_string of a run-time value", e)
            self.emit(Op.COST, branch)
            self.emit(Op.PRINT, ABI.PRINT_KINDS["string"], self.name(r.v))
            return Dyn(T.VOID)
        if name in ("simprint.print_u16_decimal", "simprint.print_u32_decimal") \
                and len(e.args) == 1:
            r = self.expr(e.args[0])
            if isinstance(r, Val):
                if not isinstance(r.v, int):
                    raise _unsupported(f"'{name}' of '{r.type}'", e)
                self.emit(Op.PUSHK, self.const(r.v))
            elif not isinstance(r.type, T.IntT):
                raise _unsupported(f"'{name}' of '{r.type}'", e)
            self.emit(Op.COST, branch)
            self.emit(Op.PRINT, ABI.PRINT_KINDS["u16" if "u16" in name else "u32"])
            return Dyn(T.VOID)
        if name in ROUTER_CONFIG_KINDS:
            vals = [self.expr(a) for a in e.args]
            if not all(isinstance(v, Val) for v in vals):
                raise _unsupported(f"'{name}' with a run-time argument", e)
            kind, color, value = router_config_args(
                self.interp, name, [v for v in vals if isinstance(v, Val)], e)
            self.emit(Op.COST, branch)
            self.emit(Op.ROUTER, kind * 32 + color, value, self.node(e))
            return Dyn(T.VOID)
        if name == "collectives_2d/pe.init":
            self.emit(Op.COST, branch)
            return Dyn(T.VOID)
        if name.removeprefix("collectives_2d/pe.") in COLLECTIVES:
            op = COLLECTIVES[name.removeprefix("collectives_2d/pe.")]
            if len(e.args) != (4 if op == COLLECTIVES["broadcast"] else 5):
                raise _unsupported(f"'{name}' with {len(e.args)} arguments", e)
            for a in e.args:          # collectives.call takes the raw values
                r = self.expr(a)
                if isinstance(r, Val):
                    if T.is_hw_id(r.type) or isinstance(r.v, FnVal):
                        self.emit(Op.PUSHK, self.const(self.task_id(r, a)))
                    elif not (T.is_int(r.type) or isinstance(r.type, T.PointerT)):
                        raise _unsupported(f"a '{r.type}' argument of '{name}'", a)
                    else:
                        self.push(r, None, a)
                elif not (isinstance(r.type, (T.IntT, T.PointerT)) or T.is_hw_id(r.type)):
                    raise _unsupported(f"a '{r.type}' argument of '{name}'", a)
            axis = fn.owner.params["dim_params"].v["_c2d_axis"].v
            self.emit(Op.COST, branch)
            self.emit(Op.COLLECTIVE, op, 0 if axis == "x" else 1, self.node(e))
            return Dyn(T.VOID)
        if name.startswith("math.") and len(e.args) == 1:
            base = name[5:].removesuffix("_f16").removesuffix("_f32")
            if base in MATH_FNS:
                r = self.expr(e.args[0])
                t = r.type
                if isinstance(r, Val):
                    if t not in (T.F16, T.F32):
                        t = T.F32 if isinstance(r.v, float) else T.I32
                    self.push(r, t, e)
                return Dyn(self.math(base, t, e))
        raise _unsupported(f"the library function '{name}'", e)

    def math(self, base: str, t: T.Type, node: A.Node) -> T.Type:
        """A <math> call on the value on the stack (builtins_rt._math1); returns its type."""
        if not (t in (T.F16, T.F32) or isinstance(t, T.IntT)):
            raise _unsupported(f"<math> {base} of '{t}'", node)
        out = t if t in (T.F16, T.F32) else T.F32
        self.emit(Op.COST, self.sim.timing.branch)
        self.emit(Op.COST, self.sim.timing.math_cost(base))
        self.emit(Op.MATH, MATH_FNS[base], tcode(out), tcode(t))
        return out

    def _e_BuiltinCall(self, e: A.BuiltinCall) -> Val | Dyn:
        n = e.name
        if n in self.op_index:
            return self._dsd_op(e)
        if n in ("activate", "block", "unblock"):
            (a,) = e.args
            v = self.expr(a)
            if not isinstance(v, Val):
                raise _unsupported(f"@{n} of a run-time task ID", e)
            tid = self.task_id(v, e)
            self.emit({"activate": Op.ACTIVATE, "block": Op.BLOCK,
                       "unblock": Op.UNBLOCK}[n], tid)
            return Dyn(T.VOID)
        if n == "queue_flush" and len(e.args) == 1:   # builtins_rt._rt_queue_flush
            v = self.expr(e.args[0])
            if not isinstance(v, Val) or v.type != T.OUTPUT_QUEUE:
                raise _unsupported("@queue_flush of a run-time queue", e)
            self.emit(Op.ROUTER, QUEUE_FLUSH_KIND * 32, int(v.v), self.node(e))
            return Dyn(T.VOID)
        if n == "map":
            return self._map(e)
        if n == "load_to_dsr":
            return self._load_to_dsr(e)
        if n == "assert" and len(e.args) == 1:       # builtins_rt._rt_assert
            self.value(e.args[0], T.BOOL)
            self.emit(Op.ASSERT, 0, 0, self.node(e))
            return Dyn(T.VOID)
        if n == "ptrcast" and len(e.args) == 2:
            # builtins_rt._rt_ptrcast: a pointer is a word address; only its type changes.
            t = self.try_const(e.args[0])
            if t is None or t.type != T.TYPE or not isinstance(t.v, T.PointerT):
                raise _unsupported("@ptrcast to a run-time or non-pointer type", e)
            r = self.expr(e.args[1])
            if not isinstance(r.type, T.PointerT):
                raise _unsupported("@ptrcast of a non-pointer", e)
            if isinstance(r, Val):
                self.push(r, None, e)
            return Dyn(t.v)
        if n == "is_comptime":
            return Val(T.BOOL, False)
        if n == "as" and len(e.args) == 2:
            t = self.try_const(e.args[0])
            if t is None or t.type != T.TYPE:
                raise _unsupported("@as with a run-time type", e)
            r = self.expr(e.args[1])
            if isinstance(r, Val):
                raise _unsupported("this @as", e)
            src, dst = r.type, t.v
            if src == dst:
                return r
            if not (T.is_numeric(src) or src == T.BOOL) or not (T.is_numeric(dst)
                                                                or dst == T.BOOL):
                raise _unsupported(f"@as from '{src}' to '{dst}'", e)
            # builtins.cast_value reports at the value (e.args[1]), as the Python path does.
            self.emit(Op.CONV, tcode(src, e), tcode(dst, e), self.node(e.args[1]))
            return Dyn(dst)
        if n == "bitcast" and len(e.args) == 2:
            # builtins._bitcast at run time: the same bits read as another type of the same
            # size (a: source tcode, b: target tcode).
            t = self.try_const(e.args[0])
            if t is None or t.type != T.TYPE:
                raise _unsupported("@bitcast to a run-time type", e)
            r = self.expr(e.args[1])
            src, dst = r.type, t.v
            if isinstance(dst, T.PointerT) and T.is_int(src):
                self.emit(Op.FAIL, self.name(register_address_message(dst)), 0, self.node(e))
                return Dyn(dst)
            if isinstance(r, Val) or not isinstance(src, (T.IntT, T.FloatT)) \
                    or not isinstance(dst, (T.IntT, T.FloatT)) or src.bits != dst.bits:
                raise _unsupported(f"@bitcast from '{src}' to '{dst}'", e)
            if src != dst:
                self.emit(Op.BITCAST, tcode(src, e), tcode(dst, e))
            return Dyn(dst)
        if n in DMODS:
            d = self.expr(e.args[0])
            if isinstance(d, Val):
                self.push(d, None, e)
            elif not T.is_dsd(d.type):
                raise _unsupported(f"@{n} of a non-DSD", e)
            elem = -1
            if n == "set_dsd_base_addr":
                r = self.expr(e.args[1])
                if isinstance(r, Val):
                    self.push(r, None, e)
                # dsd.describe: the DSD now walks the pointee's elements.
                if isinstance(r.type, T.PointerT):
                    elem = tcode(base_elem(r.type), e)
            else:
                self.value(e.args[1], ADDR_T)
            self.emit(Op.DMOD, DMODS[n], self.node(e), elem)
            return Dyn(d.type)
        raise _unsupported(f"@{n} at run time", e)

    def _config(self, e: A.BuiltinCall) -> tuple[list[A.Expr], dict[str, A.Expr]]:
        """builtins_rt._split_config on the AST: operands and the trailing options struct."""
        args = list(e.args)
        cfg: dict[str, A.Expr] = {}
        last = args[-1] if args else None
        if isinstance(last, A.InitList) and last.type is None \
                and last.fields and not last.items:
            names = {f.name for f in last.fields}
            if names <= CONFIG_KEYS:
                args.pop()
                cfg = {f.name: f.value for f in last.fields}
            elif names & {"priority", "on_control"}:
                raise _unsupported(f"DSD op options {sorted(names - CONFIG_KEYS)}", e)
        return args, cfg

    def _operand(self, a: A.Expr, dest: bool) -> tuple[int, int, Val | Dyn]:
        """Push one DSD-op or @map operand; returns (kind, tcode, lowered value) with kind
        engine_abi's OperandKind (DSD, scalar, ``*T`` pointer, DSR; DsdCall.kind)."""
        r = self.expr(a)
        t = r.type
        if isinstance(r, Val) and isinstance(r.v, DsrVal):
            # the DSD the DSR holds, looked up when issued
            return OPERAND["dsr"], dsr_key(r.v), r
        if T.is_dsd(t) or t == FIFO_T:
            if isinstance(r, Val):
                self.push(r, None, a)
            elif t == FIFO_T:
                raise _unsupported("a FIFO that is not comptime-known", a)
            return OPERAND["dsd"], 0, r
        if isinstance(t, T.PointerT) and not t.many:
            if isinstance(t.elem, T.ArrayT) or T.is_dsd(t.elem):
                raise _unsupported("a pointer-to-array DSD operand", a)
            if isinstance(r, Val):
                self.push(r, None, a)
            return OPERAND["pointer"], tcode(t.elem, a), r
        if T.is_numeric(t) and not dest:
            if isinstance(r, Val):
                if isinstance(r.v, float):
                    self.emit(Op.PUSHK, self.const(_f64_bits(r.v)))
                    tc = tcode(t, a) if t in (T.F16, T.F32) else TCODES["f32"]
                else:
                    self.emit(Op.PUSHK, self.const(int(r.v)))
                    tc = tcode(t, a) if isinstance(t, T.IntT) else TCODES["i32"]
            else:
                tc = tcode(t, a)
            return OPERAND["scalar"], tc, r
        raise _unsupported(f"a DSD operand of type '{t}'", a)

    def _load_to_dsr(self, e: A.BuiltinCall) -> Dyn:
        """builtins_rt._load_to_dsr: push the DSD, then DSRLOAD (a: DSR key, b: dsr_flags,
        c: node). The DSR and the options are comptime-known."""
        if len(e.args) not in (2, 3):
            raise _unsupported("this form of @load_to_dsr", e)
        r = self.try_const(e.args[0])
        if r is None or not isinstance(r.v, DsrVal):
            raise _unsupported("@load_to_dsr of a DSR that is not comptime-known", e)
        flags = 0
        if len(e.args) == 3:
            o = self.try_const(e.args[2])
            if o is None or not isinstance(o.v, dict) or not set(o.v) <= set(
                    LOAD_TO_DSR_OPTIONS):
                raise _unsupported("these @load_to_dsr options", e)
            flags = self.dsr_flags(o.v, e)
        d = self.expr(e.args[1])
        if isinstance(d, Val) and isinstance(d.v, DsdVal):
            self.push(d, None, e.args[1])
        elif isinstance(d, Val) or not T.is_dsd(d.type):
            raise _unsupported("@load_to_dsr of something that is not a DSD", e)
        self.emit(Op.DSRLOAD, dsr_key(r.v), flags, self.node(e))
        return Dyn(T.VOID)

    def dsr_flags(self, opts: dict[str, Val], node: A.Node) -> int:
        """builtins_rt.load_options packed for the engine (pe_engine.hpp, dsr_slot): bit 0
        .save_address, bit 1 .async, bits 2-7 .ut_id + 1, bits 8-15 .activate + 1, bits
        16-23 .unblock + 1 (0: not given)."""
        def flag(k: str) -> int:
            return int(bool(opts[k].v)) if k in opts else 0
        flags = flag("save_address") | flag("async") << 1
        if "ut_id" in opts:
            ut = int(opts["ut_id"].v)
            if not 0 <= ut < 32:
                raise _unsupported(f"microthread ID {ut}", node)
            flags |= (ut + 1) << 2
        for key, shift in (("activate", 8), ("unblock", 16)):
            if key in opts:
                flags |= (self.task_id(opts[key], node) + 1) << shift
        return flags

    def _role_fail(self, e: A.BuiltinCall, what: str, args: list[A.Expr], out: int | None
                   ) -> bool:
        """builtins_rt's DSR role check: if an operand is a DSR its file cannot hold there,
        evaluate the operands (as the interpreter does) and fail with its error."""
        bad = dsr_role_error(what, args, [self.try_const(a) for a in args], out)
        if bad is None:
            return False
        for a in args:
            self.discard(self.expr(a))
        self.emit(Op.FAIL, self.name(bad[0]), 1, self.node(bad[1]))
        return True

    def _options(self, cfg: dict[str, A.Expr], e: A.Node, row: list[int]) -> None:
        """Fill DsdCall's async/activate/unblock/ut fields from comptime options."""
        asyn = activate = unblock = ut = -1
        if "ut_id" in cfg:
            v = self.expr(cfg["ut_id"])
            if not isinstance(v, Val) or v.type != T.UT_ID:
                raise _unsupported("a run-time .ut_id", e)
            ut = int(v.v)
        if "async" in cfg:
            v = self.expr(cfg["async"])
            if not isinstance(v, Val) or v.type != T.BOOL:
                raise _unsupported("a run-time .async", e)
            asyn = int(v.v)
        for key in ("activate", "unblock"):
            if key in cfg:
                v = self.expr(cfg[key])
                if not isinstance(v, Val):
                    raise _unsupported(f"a run-time .{key}", e)
                tid = self.task_id(v, e)
                if key == "activate":
                    activate = tid
                else:
                    unblock = tid
        row[CALL["async_"]], row[CALL["activate"]], row[CALL["unblock"]], row[CALL["ut"]] = \
            max(asyn, 0), activate, unblock, ut

    def _map(self, e: A.BuiltinCall) -> Dyn:
        """builtins_rt._map: operands resolved at issue, then a synthetic function runs the
        element loop (read the inputs, call the function, write the output)."""
        args, cfg = self._config(e)
        fnv = self.try_const(args[0]) if args else None
        if fnv is None or not isinstance(fnv.v, FnVal) or not isinstance(fnv.type, T.FnT):
            raise _unsupported("@map of something that is not a known function", e)
        # A function returning void has no output: every operand is an input.
        has_out = fnv.type.ret != T.VOID
        if "index" in cfg or len(args) < 2 + has_out or len(args) > 5:
            raise _unsupported("this form of @map", e)
        if self._role_fail(e, "@map", args[1:], len(args) - 2 if has_out else None):
            return Dyn(T.VOID)
        ins = args[1:-1] if has_out else args[1:]
        params = list(fnv.type.params)
        if len(params) != len(ins) or any(t is None for t in params):
            raise _unsupported("@map of a function with untyped parameters", e)
        in_types = [t for t in params if t is not None]     # all of them (checked above)
        ret = fnv.type.ret
        row = [0] * self.call_words
        row[CALL["op"]] = int(has_out)
        row[CALL["nops"]] = len(args) - 1
        passed = []         # per input: a pointer given for a pointer parameter (unchanged)
        for k, a in enumerate(args[1:]):
            kind, tc, _ = self._operand(a, dest=has_out and k == len(args) - 2)
            row[CALL["kind"] + k], row[CALL["tcode"] + k] = kind, tc
            if k < len(in_types):
                ptr_param = isinstance(in_types[k], T.PointerT)
                if ptr_param and kind != OPERAND["pointer"]:
                    raise _unsupported("@map with a pointer parameter given a DSD", a)
                passed.append(ptr_param)
        self._options(cfg, e, row)
        row[CALL["node"]], row[CALL["name"]] = self.node(e), self.name("@map")
        self.calls.append(row)
        k = len(self.fns)
        self.fns.append(ABI.FnCode(0, 0, 0, 0, []))
        fn, node = fnv.v, e
        self.pending.append(lambda: self._map_loop(k, fn, in_types, ret, node, passed))
        self.emit(Op.MAPISSUE, len(self.calls) - 1, k)
        return Dyn(T.VOID)

    def _map_loop(self, k: int, fn: FnVal, in_types: list[T.Type], ret: T.Type,
                  node: A.Node, passed: list[bool]) -> None:
        entry = self.label()
        top = self.label()
        jend = self.emit(Op.MAPTEST)
        for j, t in enumerate(in_types):
            # c = 1: push the pointer operand's address instead of its element.
            self.emit(Op.MAPREAD, j, tcode(t, node), int(passed[j]))
        if isinstance(fn.intrinsic, RuntimeIntrinsic):
            base = fn.intrinsic.qualname.removeprefix("math.").removesuffix("_f16")
            base = base.removesuffix("_f32")
            if not fn.intrinsic.qualname.startswith("math.") or base not in MATH_FNS \
                    or len(in_types) != 1:
                raise _unsupported(f"@map of '{fn.intrinsic.qualname}'", node)
            out = self.math(base, in_types[0], node)
            if out != ret:
                raise _unsupported(f"@map of '{fn.intrinsic.qualname}' returning '{ret}'", node)
        else:
            self.emit(Op.CALL, self.function(fn))
        if ret != T.VOID:
            self.emit(Op.MAPWRITE, tcode(ret, node), 0, self.node(node))
        self.emit(Op.MAPSTEP)
        self.emit(Op.JMP, top)
        self.patch([jend], self.label())
        self.emit(Op.MAPDONE)
        self.emit(Op.RET)
        self.fns[k] = ABI.FnCode(entry=entry, nslots=0, ndslots=0, nparams=0, param_dsd=[])

    def task_id(self, v: Val, node: A.Node) -> int:
        """builtins_rt._task_id."""
        if isinstance(v.v, FnVal):
            tid = self.task_ids.get(id(v.v.decl))
            if tid is None:
                raise _unsupported(f"task '{v.v.name}' is not bound to a task ID", node)
            return tid
        if not isinstance(v.v, int) or not 0 <= v.v < 128:
            raise _unsupported("a task ID that is not an integer in 0..127", node)
        return int(v.v)

    def _dsd_op(self, e: A.BuiltinCall) -> Dyn:
        """builtins_rt.run_dsd_op: push the operands, then one DSDOP instruction."""
        op = DSD_OPS[e.name]
        args, cfg = self._config(e)
        if len(args) != 1 + len(op.srcs):
            raise _unsupported(f"@{e.name} with {len(args)} operands", e)
        if self._role_fail(e, f"@{e.name}", args, 0):
            return Dyn(T.VOID)
        row = [0] * self.call_words
        row[CALL["op"]] = self.op_index[e.name]
        row[CALL["nops"]] = len(args)
        for k, a in enumerate(args):
            try:
                kind, tc, _ = self._operand(a, dest=k == 0)
            except _BadDsd as bad:        # builtins_rt.run_dsd_op: dsd.resolve's error
                for later in args[k + 1:]:
                    self.discard(self.expr(later))
                self.emit(Op.FAIL, self.name(bad.message), 1, self.node(e))
                return Dyn(T.VOID)
            row[CALL["kind"] + k], row[CALL["tcode"] + k] = kind, tc
        self._options(cfg, e, row)
        if "index" in cfg:
            self.value(cfg["index"], ADDR_T)
            row[CALL["has_index"]] = 1
        row[CALL["node"]], row[CALL["name"]] = self.node(e), self.name(f"@{e.name}")
        self.calls.append(row)
        self.emit(Op.DSDOP, len(self.calls) - 1)
        return Dyn(T.VOID)

    # -- DSD descriptors -------------------------------------------------------------------------

    def dsd_pod(self, v: Val, node: A.Node | None) -> list[int]:
        """The engine's Dsd record (ints) of a comptime-known DSD: dsd.describe's fields.
        ``kind`` is the declared kind (error messages name it); ``ndim`` is the shape after
        the modifiers."""
        p = v.v
        if not isinstance(p, DsdVal) or p.kind not in DSD_KINDS:
            raise _unsupported(f"a DSD value of type '{v.type}'", node)
        if p.kind == "fifo":      # dsd.resolve's FifoOperand: base, capacity, element type
            gv = p.fields["buffer"].v.var
            return ABI.pack("Dsd", kind=DSD_KINDS["fifo"], tcode=tcode(gv.type.elem, node),
                            ndim=1, base=self.pe.address_of(gv), ext=[gv.type.count])
        try:
            d = describe(self.pe, p, node)
        except SimError as ex:            # the interpreter reports it when the op runs
            raise _BadDsd(str(_unsupported(f"this DSD ({ex})", node)),
                          ex.message or str(ex)) from None
        tc = wio = 0
        extents, strides = [d.length], [1]
        if p.kind in ("mem1d_dsd", "mem4d_dsd"):
            assert d.elem is not None     # describe sets it for every memory DSD
            tc, wio = tcode(d.elem, node), int(d.index_offset)
            extents, strides = d.extents, d.strides
            if len(extents) > 4 or len(strides) < len(extents):
                raise _unsupported("a DSD of more than four dimensions", node)
        elif p.kind == "fabout_dsd":
            # A fabout's wio field: bit 0 `.control = true`; bit 1 no `.fabric_color` (the
            # color is its output queue's, which encode_output_queue may change).
            wio = int(d.control) | int("fabric_color" not in p.fields) << 1
        pod = ABI.pack("Dsd", kind=DSD_KINDS[p.kind], tcode=tc, ndim=len(extents), wio=wio,
                       base=d.base, offset=d.offset, ext=list(extents), str=list(strides[:4]),
                       queue=d.queue, color=d.color, ut=d.ut)
        assert len(pod) == self.dsd_words
        if not all(-(1 << 31) <= int(x) < (1 << 31) for x in pod):   # the record is int32
            raise _unsupported("a DSD with a field wider than 32 bits", node)
        return pod
