"""Run-time builtins and library intrinsics: tables of small functions.

``RUNTIME_BUILTINS`` overrides the compile-time table for builtins whose run-time meaning
differs (``@activate``/``@block``/``@unblock`` act on the task table; DSD operations move data).
``DSD_OPS`` describes each DSD operation: element types, the element function, and its SIMD
width per arch (the timing model: ``ceil(n / simd)`` cycles; docs/timing-model.md); the types
and widths are the registry's (lang/registry.py, ``Builtin.dsd``), the element functions are
here. ``INTRINSICS`` implements the run-time functions of the standard libraries. All three
are checked against the registry's records at import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..lang import ast as A
from ..lang import registry as R
from ..lang import types as T
from ..lang.values import DsrVal, FnVal, Val
from . import dsd as D
from .memory import words_of
from .timing import TimingModel, stride_simd

F32, F16 = T.F32, T.F16


def _r32(x: float) -> float:
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.float32(x))


def _r16(x: float) -> float:
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.float16(x))


@dataclass(frozen=True)
class DsdOp:
    dest: T.Type
    srcs: tuple[T.Type, ...]
    fn: Callable[..., Any]
    simd: tuple[int, int]          # elements per cycle on (wse2, wse3); csl-language.md §4.1
    scalar_last: bool = False      # the last argument is a scalar multiplier (fmac*)
    # The same function on whole NumPy vectors (same rounding: IEEE ops in the element type),
    # used when no operand overlaps another (dsd.vectorizable); None: always element-wise.
    vector: Callable[..., Any] | None = None


def _add(r):
    return lambda a, b: r(a + b)


def _wrap16(v: int) -> int:
    return T.I16.wrap(v)


# The element functions of the DSD operations (their types and SIMD widths are the registry's
# DsdSig, lang/registry.py): (scalar function, NumPy vector function or None).
_ELEMENT_FNS: dict[str, tuple[Callable[..., Any], Callable[..., Any] | None]] = {
    "fadds": (_add(_r32), lambda a, b: a + b),
    "faddh": (_add(_r16), lambda a, b: a + b),
    "fsubs": (lambda a, b: _r32(a - b), lambda a, b: a - b),
    "fsubh": (lambda a, b: _r16(a - b), lambda a, b: a - b),
    "fmuls": (lambda a, b: _r32(a * b), lambda a, b: a * b),
    "fmulh": (lambda a, b: _r16(a * b), lambda a, b: a * b),
    "fmaxs": (lambda a, b: a if a >= b or b != b else b, None),
    "fmaxh": (lambda a, b: a if a >= b or b != b else b, None),
    # d = s1 + s2 * v, multiply and add each rounded (unfused; an assumption).
    "fmacs": (lambda a, b, v: _r32(a + _r32(b * v)), lambda a, b, v: a + b * v),
    "fmach": (lambda a, b, v: _r16(a + _r16(b * v)), lambda a, b, v: a + b * v),
    "fmachs": (lambda a, b, v: _r32(a + _r32(b * v)),
               lambda a, b, v: a + b.astype(np.float32) * np.float32(v)),
    "fmovs": (lambda a: a, lambda a: a),
    "fmovh": (lambda a: a, lambda a: a),
    "fnegs": (lambda a: -a, lambda a: -a),
    "fnegh": (lambda a: -a, lambda a: -a),
    "fabss": (abs, np.abs),
    "fabsh": (abs, np.abs),
    "fh2s": (lambda a: a, lambda a: a.astype(np.float32)),
    "fs2h": (_r16, lambda a: a.astype(np.float16)),
    "mov16": (lambda a: a, lambda a: a),
    "mov32": (lambda a: a, lambda a: a),
    "add16": (lambda a, b: _wrap16(a + b), None),
    "sub16": (lambda a, b: _wrap16(a - b), None),
}


def _dsd_op(sig: R.DsdSig, fns: tuple[Callable[..., Any], Callable[..., Any] | None]) -> DsdOp:
    ty = T.lookup_type_name
    dest, srcs = ty(sig.dest), tuple(ty(t) for t in sig.srcs)
    assert dest is not None and all(t is not None for t in srcs)
    return DsdOp(dest, srcs, fns[0], sig.simd, sig.scalar_last, vector=fns[1])   # type: ignore


# One entry per registry record run by run_dsd_op (a record without its element function, or
# the reverse, is an error at import).
DSD_OPS: dict[str, DsdOp] = {
    r.name: _dsd_op(r.dsd, _ELEMENT_FNS[r.name])
    for r in R.BUILTINS.values() if r.runtime == R.RT_DSD_OP and r.dsd is not None}
if set(DSD_OPS) != set(_ELEMENT_FNS):
    raise ImportError(f"DSD ops without a registry record or element function: "
                      f"{sorted(set(DSD_OPS) ^ set(_ELEMENT_FNS))}")

FIFO_SYNC = ("a synchronous DSD operation on a FIFO (it tests instead of waiting) is not "
             "supported by waferscale yet; give it .async = true")

CONFIG_KEYS = {"async", "activate", "unblock", "index", "ut_id", "priority", "on_control"}


def _split_config(ip, e: A.BuiltinCall, s) -> tuple[list[Val], dict[str, Val]]:
    vals = [ip.eval(a, s) for a in e.args]
    cfg: dict[str, Val] = {}
    if vals and isinstance(vals[-1].v, dict) and set(vals[-1].v) <= CONFIG_KEYS:
        cfg = vals.pop().v
    return vals, cfg


def _task_id(pe, v: Val, node) -> int:
    if isinstance(v.v, FnVal):
        for tid, (_, fn) in pe.tasks.items():
            if fn.decl is v.v.decl:
                return tid
        raise pe.error(f"task '{v.v.name}' is not bound to a task ID", node)
    return int(v.v)


def run_dsd_op(ip, e: A.BuiltinCall, s) -> Val:
    pe = ip.pe
    op = DSD_OPS[e.name]
    vals, cfg = _split_config(ip, e, s)
    if len(vals) != 1 + len(op.srcs):
        raise pe.error(f"@{e.name} takes {1 + len(op.srcs)} operands, got {len(vals)}", e)
    for k, v in enumerate(vals):
        D.check_dsr_role(pe, v, k == 0, f"@{e.name}", e.args[k])
    dest = D.resolve(pe, vals[0], e, check=False)
    if isinstance(dest, D.Scalar):
        raise pe.error(f"@{e.name} destination is a value of type '{vals[0].type}'; expected "
                       "a DSD or a pointer", e.args[0])
    srcs = [D.resolve(pe, v, e, check=False) for v in vals[1:]]
    asyn, activate, unblock, ut = op_settings(pe, cfg, vals, e)
    # The op's length (dsd.op_length); a `*T` destination is a one-element accumulator
    # rewritten at every step. Memory operands are bounds-checked over the op's length.
    n = D.op_length([dest, *srcs])
    if n is None:
        raise pe.error(f"@{e.name} needs at least one DSD operand", e)
    for k, o in enumerate([dest, *srcs]):
        if isinstance(o, D.MemOperand) and not o.pointer and o.length < n:
            raise pe.error(f"@{e.name}: operand {k} has {o.length} element(s), fewer than the "
                           f"op's {n}", e)
    for o in (dest, *srcs):
        D.check_first(pe, o, n, e)
    if not asyn and any(isinstance(o, D.FifoOperand) for o in (dest, *srcs)):
        raise pe.error(FIFO_SYNC, e)
    if "index" in cfg:
        for o in (dest, *srcs):
            D.apply_index(pe, o, int(cfg["index"].v), e)
    D.advance_dsrs(pe, vals, n, e)
    simd = op.simd[0 if pe.sim.arch == "wse2" else 1]
    for o in [dest, *srcs]:
        if isinstance(o, D.MemOperand):
            limit = stride_simd(D.element_stride(o, words_of(o.elem)))
            if limit is not None:
                simd = min(simd, limit)
    timing = pe.sim.timing
    setup = timing.dsd_op_setup
    if any(isinstance(o, (D.FabIn, D.FabOut)) for o in [dest, *srcs]):
        setup += timing.fabric_op_start

    def body(setup: int) -> None:
        start = pe.time
        pe.cost(setup + -(-n // simd))
        if not (op.vector is not None and D.vectorizable(dest, srcs, n)
                and D.run_vectorized(pe, op, dest, srcs, n)):
            for i in range(n):
                args = [D.read_elem(pe, o, i, t) for o, t in zip(srcs, op.srcs)]
                D.write_elem(pe, dest, i, op.dest, op.fn(*args))
        if pe.sim.trace is not None:
            pe.sim.trace.span(pe, f"@{e.name}", "dsd", start, pe.time, n=n)
        _complete(pe, asyn, activate, unblock)

    if asyn:
        # The issuer loads the operands' DSRs; the microthread streams the elements.
        pe.cost(setup)
        pe.start_async(f"@{e.name}", lambda: body(0), _microthread(ut, [dest, *srcs]))
    else:
        body(setup)
    return Val(T.BOOL, True)


def _is_async(cfg: dict[str, Val]) -> bool:
    return cfg.get("async") is not None and bool(cfg["async"].v)


SYNC_ON_ASYNC_DSR = ("a synchronous DSD operation on a DSR loaded with settings for "
                     "asynchronous operations (.async, .activate, .unblock, .ut_id) is not "
                     "supported by waferscale yet; give the operation .async = true")


def _same(pe, mine: int | None, other: int | None, what: str, node) -> int | None:
    if mine is not None and other is not None and mine != other:
        raise pe.error(f"two different {what} ({mine} and {other}) among an operation's "
                       "options and its DSRs' are not supported by waferscale yet", node)
    return other if mine is None else mine


def op_settings(pe, cfg: dict[str, Val], vals: list[Val], node
                ) -> tuple[bool, int | None, int | None, int | None]:
    """(async, activate, unblock, ut) of an op or @map: its own options merged with those its
    DSR operands were loaded with (sim/dsd.py, "DSRs"). ``vals``: the operands in priority
    order (the destination first). A DSR loaded with such settings needs an async op."""
    asyn = _is_async(cfg)
    act, unb, ut = _actions(pe, cfg, node)
    table = D.dsr_table(pe)
    for v in vals:
        r = v.v
        st = table.get((r.file, r.id)) if isinstance(r, DsrVal) else None
        if st is None or not st.has_settings:
            continue
        if not asyn:
            raise pe.error(SYNC_ON_ASYNC_DSR, node)
        act = _same(pe, act, st.activate, "tasks to activate", node)
        unb = _same(pe, unb, st.unblock, "tasks to unblock", node)
        ut = _same(pe, ut, st.ut, "microthread IDs", node)
    return asyn, act, unb, ut


def _microthread(ut: int | None, operands: list) -> int | None:
    """The microthread an async op runs on: ``.ut_id`` if given (op_settings), else the
    queue ID of its highest-priority fabric operand, destination first (SDK docs,
    "Microthread IDs"; on WSE-2 the queue of the fabric DSD). ``operands``: destination
    first."""
    if ut is not None:
        return ut
    for o in operands:
        if isinstance(o, (D.FabIn, D.FabOut)):
            return o.ut
    return None


def _complete(pe, asyn: bool, activate: int | None, unblock: int | None) -> None:
    """An op's .activate / .unblock (op_settings), at the time it finished (pe.signal)."""
    if activate is not None:
        pe.signal(activate, unblock=False, timed=asyn)
    if unblock is not None:
        pe.signal(unblock, unblock=True, timed=asyn)


def _map(ip, e: A.BuiltinCall, s) -> Val:
    """``@map(fn, inputs..., output)``: call fn per element; stops at the shortest DSD."""
    pe = ip.pe
    vals, cfg = _split_config(ip, e, s)
    fn = vals[0]
    if not isinstance(fn.v, FnVal):
        raise pe.error("@map's first argument must be a function", e)
    fntype = fn.type
    ret = fntype.ret if isinstance(fntype, T.FnT) else F32
    # A function returning void has no output: every operand is an input (WaferLLM's
    # MeshGEMV maps a void function that issues one DSD op per element).
    has_out = ret != T.VOID
    for k, v in enumerate(vals[1:]):
        D.check_dsr_role(pe, v, has_out and k == len(vals) - 2, "@map", e.args[k + 1])
    ops = [D.resolve(pe, v, e, check=False) for v in vals[1:]]
    if any(isinstance(o, D.FifoOperand) for o in ops):
        raise pe.error("a FIFO may not be an operand of @map", e)
    # op_settings in priority order: the output first
    asyn, activate, unblock, ut = op_settings(
        pe, cfg, [vals[-1], *vals[1:-1]] if has_out else vals[1:], e)
    dsd_lens = [o.length for o in ops if isinstance(o, (D.FabIn, D.FabOut)) or
                (isinstance(o, D.MemOperand) and not o.pointer)]
    n = min(dsd_lens) if dsd_lens else 1
    for o in ops:                 # the elements @map touches: the first n of each
        D.check_first(pe, o, n, e)
    D.advance_dsrs(pe, vals[1:], n, e)
    ins, out = (ops[:-1], ops[-1]) if has_out else (ops, None)
    in_types = list(fntype.params) if isinstance(fntype, T.FnT) else [None] * len(ins)

    def body() -> None:
        for i in range(n):
            args = []
            for o, t, v in zip(ins, in_types, vals[1:1 + len(ins)]):
                if isinstance(t, T.PointerT) and isinstance(o, D.MemOperand) and o.pointer:
                    # A pointer given for a pointer parameter is passed unchanged (the
                    # accumulator idiom @map(f, dsd, &sum[0], &sum[0]) with f(x, acc: *T)).
                    args.append(Val(t, o.addrs[0]))
                    continue
                et = t or (o.elem if isinstance(o, D.MemOperand) else v.type)
                args.append(Val(et, D.read_elem(pe, o, i, et)))
            r = ip.call(fn.v, args, e)
            if out is not None:
                D.write_elem(pe, out, i, ret, r.v)
        _complete(pe, asyn, activate, unblock)

    if asyn:
        pe.start_async("@map", body, _microthread(ut, [*([out] if out is not None else []), *ins]))
    else:
        body()
    return Val(T.BOOL, True)


def _load_to_dsr(ip, e, s) -> Val:
    """``@load_to_dsr(dsr, dsd[, .{ .save_address = b }])`` at run time: the DSR holds the
    DSD from now on (dsd.load_dsr). Its cost is the statement's cycle: one instruction; the
    loads that every op does implicitly are part of the op's setup (dsd_op_setup,
    fabric_op_start), which an op pays whether its operands are DSDs or DSRs."""
    pe = ip.pe
    vals = [ip.eval(a, s) for a in e.args]
    if len(vals) not in (2, 3) or not isinstance(vals[0].v, DsrVal):
        raise pe.error("@load_to_dsr takes a DSR (@get_dsr), a DSD and optional options", e)
    opts = vals[2].v if len(vals) == 3 and isinstance(vals[2].v, dict) else {}
    save, settings = load_options(pe, opts, e)
    D.load_dsr(pe, vals[0].v, vals[1], save, e, settings)
    return Val(T.VOID, None)


def _rt_queue_flush(ip, e, s) -> Val:
    """``@queue_flush(oq)`` (WSE-3): once output queue ``oq`` is empty (checked after each
    cycle, from the PE's time on) the teardown task runs its empty-queue handler."""
    (v,) = [ip.eval(a, s) for a in e.args]
    if v.type != T.OUTPUT_QUEUE or not isinstance(v.v, int):
        raise ip.pe.error(f"@queue_flush takes an output_queue, found '{v.type}'", e)
    pe = ip.pe
    pe.sync_time()
    pe.flush_armed.add(int(v.v))
    pe.sim.flushing.add(pe)
    return Val(T.VOID, None)


def _actions(pe, opts: dict[str, Val], node) -> tuple[int | None, int | None, int | None]:
    """(.activate, .unblock, .ut_id) of an op's or a @load_to_dsr's options (None: not
    given)."""
    act = _task_id(pe, opts["activate"], node) if "activate" in opts else None
    unb = _task_id(pe, opts["unblock"], node) if "unblock" in opts else None
    ut = int(opts["ut_id"].v) if "ut_id" in opts else None
    return act, unb, ut


def load_options(pe, opts: dict[str, Val], node
                 ) -> tuple[bool, tuple[bool, int | None, int | None, int | None]]:
    """@load_to_dsr's options (builtins.LOAD_TO_DSR_OPTIONS): .save_address, and
    (.async, .activate, .unblock, .ut_id) for dsd.load_dsr."""
    save = bool(opts["save_address"].v) if "save_address" in opts else False
    return save, (_is_async(opts), *_actions(pe, opts, node))


def _rt_activate(ip, e, s) -> Val:
    (v,) = [ip.eval(a, s) for a in e.args]
    ip.pe.active.add(_task_id(ip.pe, v, e))
    return Val(T.VOID, None)


def _rt_block(blocked: bool):
    def fn(ip, e, s) -> Val:
        (v,) = [ip.eval(a, s) for a in e.args]
        tid = _task_id(ip.pe, v, e)
        (ip.pe.blocked.add if blocked else ip.pe.blocked.discard)(tid)
        return Val(T.VOID, None)
    return fn


def _rt_assert(ip, e, s) -> Val:
    v = ip.eval(e.args[0], s)
    if not v.v:
        raise ip.pe.error("@assert failed", e)
    return Val(T.VOID, None)


def _rt_ptrcast(ip, e, s) -> Val:
    """At run time a pointer is a word address: @ptrcast only retypes it."""
    t, v = (ip.eval(a, s) for a in e.args)
    if t.type != T.TYPE or not isinstance(t.v, T.PointerT) or not isinstance(v.type,
                                                                            T.PointerT):
        raise ip.pe.error("@ptrcast needs a pointer type and a pointer value", e)
    return Val(t.v, v.v)


def _rt_comptime_only(name: str):
    def fn(ip, e, s) -> Val:
        raise ip.pe.error(f"@{name} is only allowed in a top-level comptime block", e)
    return fn


RUNTIME_BUILTINS: dict[str, Callable] = {name: run_dsd_op for name in DSD_OPS}
RUNTIME_BUILTINS.update({
    "map": _map,
    "load_to_dsr": _load_to_dsr,
    "activate": _rt_activate,
    "queue_flush": _rt_queue_flush,
    "block": _rt_block(True),
    "unblock": _rt_block(False),
    "assert": _rt_assert,
    "ptrcast": _rt_ptrcast,
    "is_comptime": lambda ip, e, s: Val(T.BOOL, False),
})
for _n in ("bind_local_task", "bind_data_task", "bind_control_task", "initialize_queue",
           "export_symbol", "rpc", "set_local_color_config", "set_teardown_handler",
           "set_empty_queue_handler"):
    RUNTIME_BUILTINS[_n] = _rt_comptime_only(_n)


_want = {r.name for r in R.BUILTINS.values() if r.runtime in (R.RT_OVERRIDE, R.RT_DSD_OP,
                                                                R.RT_ERROR)}
if set(RUNTIME_BUILTINS) != _want:
    raise ImportError("RUNTIME_BUILTINS differs from the registry's run-time records: "
                      f"{sorted(set(RUNTIME_BUILTINS) ^ _want)}")


# -- library intrinsics ------------------------------------------------------------------------

def _unblock_cmd_stream(pe, args, node, owner=None) -> Val:
    pe.cmd_blocked = False
    pe.unblock_time = pe.time
    return Val(T.VOID, None)


def _timestamp(pe, args, node, owner=None) -> Val:
    ptr = args[0]
    t = pe.time
    for k in range(3):
        pe.mem.store(ptr.v + k, T.U16, (t >> (16 * k)) & 0xFFFF)
    return Val(T.VOID, None)


def _math1(base: str, f: Callable[[float], float]):
    cycles = TimingModel.math_cost(base)

    def impl(pe, args, node, owner=None) -> Val:
        pe.cost(cycles)
        x = args[0]
        try:
            r = f(x.v)
        except (OverflowError, ValueError):
            r = math.inf if x.v > 0 else math.nan
        t = x.type if isinstance(x.type, T.FloatT) else F32
        return Val(t, _r16(r) if t == F16 else _r32(r))
    return impl


def _safe_exp(x: float) -> float:
    return math.exp(x) if x < 709 else math.inf


def _print(fmt: Callable[[Val], str]):
    """<simprint>: text accumulates per PE and is written to the log at each newline."""
    def impl(pe, args, node, owner=None) -> Val:
        pe.sim.simprint(pe, fmt(args[0]))
        return Val(T.VOID, None)
    return impl


def _router_config(qual: str) -> Callable:
    """<tile_config>'s router calls (modules.ROUTER_CONFIG_KINDS): at the PE's time, on its
    router (PyFabricCore.router_config); the call's cost is the intrinsic call's."""
    def impl(pe, args, node, owner=None) -> Val:
        from ..lang.modules import router_config_args
        from .fabric import FabricError
        kind, color, value = router_config_args(pe.interp, qual, args, node)
        pe.sync_time()
        if kind == 11:              # the output queue's color (fabout DSDs without a color)
            pe.oq_colors[value] = color
        elif kind != 13:            # (queue_flush.exit: the flush state ends at its handler)
            try:
                pe.sim.fabric.core.router_config(pe.x, pe.y, kind, color, value)
            except FabricError as e:
                raise pe.error(str(e), node) from None
        return Val(T.VOID, None)
    return impl


INTRINSICS: dict[str, Callable] = {
    "memcpy/memcpy.unblock_cmd_stream": _unblock_cmd_stream,
    "layout.get_x_coord": lambda pe, a, n, o=None: Val(T.U16, pe.x),
    "layout.get_y_coord": lambda pe, a, n, o=None: Val(T.U16, pe.y),
    "time.enable_tsc": lambda pe, a, n, o=None: Val(T.VOID, None),
    "time.disable_tsc": lambda pe, a, n, o=None: Val(T.VOID, None),
    "time.get_timestamp": _timestamp,
    "simprint.print_string": _print(lambda v: v.v),
    "simprint.print_u16_decimal": _print(lambda v: str(v.v & 0xFFFF)),
    "simprint.print_u32_decimal": _print(lambda v: str(v.v & 0xFFFFFFFF)),
    "collectives_2d/pe.init": lambda pe, a, n, o=None: Val(T.VOID, None),
}
from .collectives import INTRINSICS as _C2D  # noqa: E402  (collectives imports Val only)
INTRINSICS.update(_C2D)
from ..lang.modules import ROUTER_CONFIG_KINDS  # noqa: E402
for _qual in ROUTER_CONFIG_KINDS:
    INTRINSICS[_qual] = _router_config(_qual)
for _base, _f in (("exp", _safe_exp), ("sqrt", lambda x: math.sqrt(x) if x >= 0 else math.nan),
                  ("log", lambda x: math.log(x) if x > 0 else (-math.inf if x == 0 else math.nan)),
                  ("inv", lambda x: 1.0 / x if x else math.copysign(math.inf, x)),
                  ("invsqrt", lambda x: 1.0 / math.sqrt(x) if x > 0 else math.inf),
                  ("tanh", math.tanh), ("sin", math.sin), ("cos", math.cos),
                  ("sig", lambda x: 1.0 / (1.0 + _safe_exp(-x)))):
    for _suffix in ("", "_f16", "_f32"):
        INTRINSICS[f"math.{_base}{_suffix}"] = _math1(_base, _f)

# Every supported run-time library function of the registry has its implementation here.
_want = {f.qualname for f in R.LIBRARY.values() if f.kind == "runtime" and f.unsupported is None}
if set(INTRINSICS) != _want:
    raise ImportError("INTRINSICS differs from the registry's run-time library functions: "
                      f"{sorted(set(INTRINSICS) ^ _want)}")
