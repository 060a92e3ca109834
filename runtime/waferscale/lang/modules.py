"""Module import: relative CSL files and angle-bracket standard libraries.

``@import_module("file.csl", .{...})`` creates a *new* instance every time it is evaluated
(importing a file twice gives two independent copies, as in cslc). The path is resolved
relative to the importing file, then along ``EvalOptions.import_paths``.

``@import_module("<name>", .{...})`` resolves ``name`` in :data:`STDLIB`, a table of
waferscale's own implementations written from the libraries' documented behaviour. At compile
time a library exposes its params, constants and functions; functions that only exist at run
time are :class:`~waferscale.lang.comptime.RuntimeIntrinsic` values that the simulator
implements. An unknown library is an error, never a guess.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
from typing import Any, Callable

from . import ast as A
from . import registry as R
from . import types as T
from .comptime import Interp, ModuleInstance, RuntimeIntrinsic, val_key
from .errors import CslImportError
from .values import VOID_VAL, ArrayData, DsdVal, FnVal, Val


class NativeModule(ModuleInstance):
    """A standard library implemented in Python: members come from ``self.members``."""

    is_stdlib = True

    def __init__(self, ip: Interp, importer: ModuleInstance, name: str, params: dict[str, Val],
                 node: A.Node) -> None:
        super().__init__(ip.ctx, f"<{name}>", None, params, name=name,
                         program=importer.program, bind_span=node.span)
        self.members: dict[str, Val] = {}
        self.lib = name       # the library (``name`` becomes the const it is bound to)

    def member(self, interp: Interp, name: str, span: Any) -> Val:
        v = self.members.get(name)
        if v is None:
            raise interp.err(f"library <{self.name}> has no member '{name}'", span)
        return v

    def _record(self, name: str, kind: str) -> None:
        """Every member has a registry record of its kind (registry.LIBRARY)."""
        rec = R.LIBRARY.get(f"{self.lib}.{name}")
        if rec is None or rec.kind != kind:
            raise AssertionError(f"<{self.name}>.{name} has no {kind} record in "
                                 "lang/registry.py")

    def runtime_fn(self, name: str, params: tuple[T.Type | None, ...], ret: T.Type) -> None:
        self._record(name, "runtime")
        self.members[name] = Val(T.FnT(params, ret),
                                 FnVal(None, self, RuntimeIntrinsic(f"{self.name}.{name}",
                                                                    params, ret)))

    def comptime_fn(self, name: str, fn: Callable[..., Val], **bound: Any) -> None:
        """A member function run at compile time: ``fn(ip, args, node, **bound)``. ``fn``
        is a module-level function and ``bound`` plain data, so that an elaborated program
        can be pickled (the compile cache, host/cache.py)."""
        self._record(name, "comptime")
        f = functools.partial(fn, **bound)
        f.__name__ = f"{self.name}.{name}"        # type: ignore[attr-defined]
        self.members[name] = Val(T.FnT((), T.VOID), FnVal(None, self, f))

    def param(self, ip: Interp, name: str, node: A.Node, default: Val | None = None) -> Val:
        v = self.params.get(name, default)
        if v is None:
            raise ip.err(f"<{self.name}> needs the param '.{name}'", node)
        return v


# -- <memcpy/get_params> and <memcpy/memcpy> ------------------------------------------------------

MEMCPY_STREAMS = tuple(f"MEMCPYH2D_{k}" for k in range(1, 5)) + tuple(
    f"MEMCPYD2H_{k}" for k in range(1, 5))


def _stream_id(ip: Interp, v: Val, node: A.Node) -> int:
    if v.type == T.COLOR or T.is_int(v.type):
        n = v.v
        if isinstance(n, int) and 0 <= n <= 23:
            return n
    raise ip.err(f"memcpy stream must be a color 0..23 (or its integer ID), found "
                 f"{v.type} {v.v!r}", node)


def _memcpy_get_params(ip: Interp, importer: ModuleInstance, params: dict[str, Val],
                       node: A.Node) -> NativeModule:
    m = NativeModule(ip, importer, "memcpy/get_params", params, node)
    width = ip.to_int(m.param(ip, "width", node), node, "width")
    height = ip.to_int(m.param(ip, "height", node), node, "height")
    streams = {k: params[k] for k in MEMCPY_STREAMS if k in params}
    for k, v in streams.items():
        _stream_id(ip, v, node)
    for k in params:
        if k not in ("width", "height", "LAUNCH") + MEMCPY_STREAMS:
            raise ip.err(f"<memcpy/get_params> has no param '.{k}'", node)
    # `.LAUNCH`: the SDK 1.x memcpy's launch color. Its programs bind the RPC entry with
    # `@rpc(@get_data_task_id(sys_mod.LAUNCH))` (WaferLLM's WSE-2 programs). The simulator's
    # launch command calls the exported function directly, with or without it: the RPC
    # wavelets on that color are not modelled (docs/simulator.md).
    launch = {"LAUNCH": Val(T.COLOR, _stream_id(ip, params["LAUNCH"], node))} \
        if "LAUNCH" in params else {}
    b = ip.ctx.layout_builder
    if b is not None:
        b.memcpy_import_span = node.span
        for k, v in streams.items():
            b.memcpy_streams[k] = _stream_id(ip, v, node)
    m.comptime_fn("get_params", _memcpy_params_of, width=width, height=height,
                  streams=streams, launch=launch)
    return m


def _memcpy_params_of(ip_: Interp, args: list[Val], call: A.Node, *, width: int, height: int,
                      streams: dict[str, Val], launch: dict[str, Val] | None = None) -> Val:
    """<memcpy/get_params>'s get_params(x). (The struct's ``x`` makes each column's PE
    program its own, as cslc makes them; nothing in waferscale reads it, which
    sim.engine.lowering_twins relies on to lower the columns' programs once.)"""
    if len(args) != 1:
        raise ip_.err("get_params takes the PE's x coordinate", call)
    x = ip_.to_int(args[0], call, "x coordinate")
    if not 0 <= x < width:
        raise ip_.err(f"get_params({x}) is outside the memcpy width {width}", call)
    # A stream not given to <memcpy/get_params> is the void value `{}` (the SDK's
    # pipeline-03 tests `@type_of(memcpy_params.MEMCPYH2D_2) != void`).
    unset = {k: VOID_VAL for k in MEMCPY_STREAMS if k not in streams}
    fields = {"_memcpy_params": Val(T.BOOL, True), "width": Val(T.COMPTIME_INT, width),
              "height": Val(T.COMPTIME_INT, height), "x": Val(T.COMPTIME_INT, x), **streams,
              **unset, **(launch or {})}
    return Val(T.AnonStructT(tuple((k, v.type) for k, v in fields.items())), fields)


def _memcpy_pe(ip: Interp, importer: ModuleInstance, params: dict[str, Val],
               node: A.Node) -> NativeModule:
    m = NativeModule(ip, importer, "memcpy/memcpy", params, node)
    if "_memcpy_params" not in params:
        raise ip.err("<memcpy/memcpy> must be imported with the struct returned by "
                     "<memcpy/get_params>'s get_params(x) (e.g. a `memcpy_params` param)", node)
    prog = importer.program
    if prog is not None:
        prog.imports_memcpy = True
        prog.memcpy_import_span = node.span
    for k in MEMCPY_STREAMS + ("LAUNCH",):
        if k in params:
            m.members[k] = params[k]
    m.runtime_fn("unblock_cmd_stream", (), T.VOID)
    m.comptime_fn("get_streaming_fabout_dsd", _get_streaming_fabout_dsd)
    return m


def _get_streaming_fabout_dsd(ip_: Interp, args: list[Val], call: A.Node) -> Val:
    """A fabout DSD of ``extent`` wavelets to a D2H stream color through ``queue``."""
    if len(args) != 3:
        raise ip_.err("get_streaming_fabout_dsd takes (color, extent, output_queue)", call)
    color, extent, oq = args
    if color.type != T.COLOR and not T.is_int(color.type):
        raise ip_.err(f"expected a color, found '{color.type}'", call)
    if oq.type != T.OUTPUT_QUEUE:
        raise ip_.err(f"expected an output_queue, found '{oq.type}'", call)
    fields = {"extent": extent, "fabric_color": Val(T.COLOR, color.v), "output_queue": oq}
    return Val(T.NAMED_TYPES["fabout_dsd"], DsdVal("fabout_dsd", fields))


# -- small libraries -------------------------------------------------------------------------------


def _layout_lib(ip, importer, params, node) -> NativeModule:
    m = NativeModule(ip, importer, "layout", params, node)
    m.runtime_fn("get_x_coord", (), T.U16)
    m.runtime_fn("get_y_coord", (), T.U16)
    return m


def _empty_lib(ip, importer, params, node) -> NativeModule:
    return NativeModule(ip, importer, "empty", params, node)


def _time_lib(ip, importer, params, node) -> NativeModule:
    m = NativeModule(ip, importer, "time", params, node)
    m.members["tsc_size_words"] = Val(T.COMPTIME_INT, 3)
    m.runtime_fn("enable_tsc", (), T.VOID)
    m.runtime_fn("disable_tsc", (), T.VOID)
    m.runtime_fn("get_timestamp", (T.PointerT(T.ArrayT((3,), T.U16)),), T.VOID)
    return m


# Run-time routines (registry.py; pow and fscale are "not supported yet" records).
_MATH_RUNTIME = R.MATH_RUNTIME + R.MATH_UNSUPPORTED


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


_MATH_COMPTIME: dict[str, Callable[..., float]] = {
    "abs": abs, "ceil": math.ceil, "floor": math.floor, "sign": _sign,
    "isNaN": math.isnan, "isInf": math.isinf,
}


def _math_lib(ip, importer, params, node) -> NativeModule:
    m = NativeModule(ip, importer, "math", params, node)
    for name, value in (("PI", math.pi), ("E", math.e), ("POSITIVE_INF", math.inf),
                        ("NEGATIVE_INF", -math.inf), ("NaN", math.nan)):
        m.members[name] = Val(T.COMPTIME_FLOAT, value)
    for base in _MATH_RUNTIME:
        for suffix, t in (("", None), ("_f16", T.F16), ("_f32", T.F32)):
            m.runtime_fn(base + suffix, (t,), t or T.F32)
    for base in _MATH_COMPTIME:
        for suffix in ("", "_f16", "_f32"):
            m.comptime_fn(base + suffix, _math_comptime, fn_name=base)
    for base in ("max", "min"):
        for suffix in ("", "_f16", "_f32"):
            m.comptime_fn(base + suffix, _math_minmax, fn_name=base)
    return m


def _math_comptime(ip: Interp, args: list[Val], node: A.Node, *, fn_name: str) -> Val:
    name = fn_name
    if len(args) != 1 or not T.is_numeric(args[0].type):
        raise ip.err(f"math.{name} takes one number", node)
    x = args[0].v
    if name in ("ceil", "floor") and isinstance(x, float) and not math.isfinite(x):
        return args[0]           # floor/ceil of a NaN or an infinity is itself
    r = _MATH_COMPTIME[name](x)
    if isinstance(r, bool):
        return Val(T.BOOL, r)
    if name in ("ceil", "floor") and T.is_float(args[0].type):
        r = float(r)
    return Val(args[0].type, type(args[0].v)(r))


def _math_minmax(ip: Interp, args: list[Val], node: A.Node, *, fn_name: str) -> Val:
    name = fn_name
    if len(args) != 2:
        raise ip.err(f"math.{name} takes two numbers", node)
    t = ip.unify(args[0], args[1], node)
    a, b = (ip.coerce(x, t, node).v for x in args)
    return Val(t, max(a, b) if name == "max" else min(a, b))


def _simprint_lib(ip, importer, params, node) -> NativeModule:
    m = NativeModule(ip, importer, "simprint", params, node)
    m.runtime_fn("print_string", (T.COMPTIME_STRING,), T.VOID)
    m.runtime_fn("print_u16_decimal", (T.U16,), T.VOID)
    m.runtime_fn("print_u32_decimal", (T.U32,), T.VOID)
    m.runtime_fn("fmt", (T.COMPTIME_STRING, None), T.VOID)
    return m


def _c2d_params(ip, importer, params, node) -> NativeModule:
    m = NativeModule(ip, importer, "collectives_2d/params", params, node)
    m.comptime_fn("get_params", _c2d_get_params)
    return m


def _c2d_get_params(ip_: Interp, args: list[Val], call: A.Node) -> Val:
    """<collectives_2d/params>'s get_params(Px, Py, config)."""
    if len(args) != 3 or not isinstance(args[2].v, dict):
        raise ip_.err("get_params takes (Px, Py, .{ .x_colors, .x_entrypoints, .y_colors, "
                      ".y_entrypoints })", call)
    px = ip_.to_int(args[0], call, "Px")
    py = ip_.to_int(args[1], call, "Py")
    cfg = args[2].v
    out = {}
    for axis, pos in (("x", px), ("y", py)):
        colors, entries = cfg.get(f"{axis}_colors"), cfg.get(f"{axis}_entrypoints")
        if colors is None or entries is None:
            raise ip_.err(f"get_params needs .{axis}_colors and .{axis}_entrypoints", call)
        cs = colors.v if isinstance(colors.v, list) else []
        es = entries.v if isinstance(entries.v, list) else []
        if len(cs) != 2 or len(es) != 2 or any(c.type != T.COLOR for c in cs) or any(
                t.type != T.LOCAL_TASK_ID for t in es):
            raise ip_.err(f".{axis}_colors needs 2 colors and .{axis}_entrypoints 2 local "
                          "task IDs", call)
        if cs[0].v == cs[1].v or es[0].v == es[1].v:
            raise ip_.err(f"the two {axis} colors and entrypoints must be distinct", call)
        d = {"_c2d_axis": Val(T.COMPTIME_STRING, axis), "pe": Val(T.COMPTIME_INT, pos),
             "colors": colors, "entrypoints": entries}
        out[axis] = Val(T.AnonStructT(tuple((k, v.type) for k, v in d.items())), d)
    return Val(T.AnonStructT(tuple((k, v.type) for k, v in out.items())), out)


def _c2d_pe(ip, importer, params, node) -> NativeModule:
    m = NativeModule(ip, importer, "collectives_2d/pe", params, node)
    dp = m.param(ip, "dim_params", node)
    if not isinstance(dp.v, dict) or "_c2d_axis" not in dp.v:
        raise ip.err("<collectives_2d/pe> needs .dim_params from <collectives_2d/params>'s "
                     "get_params(...).x or .y", node)
    m.members["pe_id"] = Val(T.U16, dp.v["pe"].v)
    u32p = T.PointerT(T.U32, many=True)
    f32p = T.PointerT(T.F32, many=True)
    m.runtime_fn("init", (), T.VOID)
    m.runtime_fn("broadcast", (T.U16, u32p, T.U16, T.LOCAL_TASK_ID), T.VOID)
    m.runtime_fn("scatter", (T.U16, u32p, u32p, T.U16, T.LOCAL_TASK_ID), T.VOID)
    m.runtime_fn("gather", (T.U16, u32p, u32p, T.U16, T.LOCAL_TASK_ID), T.VOID)
    m.runtime_fn("reduce_fadds", (T.U16, f32p, f32p, T.U16, T.LOCAL_TASK_ID), T.VOID)
    return m


# -- <tile_config> and <memcpy/memcpy_switches>: run-time routers, switches, teardown ------------
# The fabric side of these is docs/fabric-model.md §9; what each function does to the router:
# sim.fabric.PyFabricCore.router_config (ROUTER_CONFIG_KINDS below names its kinds).

ROUTER_CONFIG_KINDS = {
    "tile_config/color_config.reset_routes": 0,
    "tile_config/switch_config.clear_current_position": 1,
    "tile_config/switch_config.set_invalid_for_all_switch_positions": 2,
    "tile_config/switch_config.set_rx_switch_pos1": 3,
    "tile_config/switch_config.set_rx_switch_pos2": 4,
    "tile_config/switch_config.set_rx_switch_pos3": 5,
    "tile_config/switch_config.set_tx_switch_pos1": 6,
    "tile_config/switch_config.set_tx_switch_pos2": 7,
    "tile_config/switch_config.set_tx_switch_pos3": 8,
    "tile_config/teardown.exit": 9,
    # Queue (re)binding and flushing (topic-16): 10 on the fabric core; 11 and 13 on the PE.
    "tile_config/input_queue_config.encode_input_queue": 10,
    "tile_config/output_queue_config.encode_output_queue": 11,
    "tile_config/queue_flush.exit": 13,
}
QUEUE_FLUSH_KIND = 12          # @queue_flush(oq), the builtin (ROUTER op)
COLOR_CONFIG_ADDR_BASE = 0
"""get_color_config_addr(c) is c + this (doc-gap: the docs do not give the register address;
waferscale's value only means something to reset_routes)."""


class SubmoduleLib(NativeModule):
    """A member module of a standard library (``tile_config.color_config``): a member it does
    not have is an error that says so rather than guessing."""

    def member(self, interp: Interp, name: str, span: Any) -> Val:
        if name == "input_queue_config" and self.lib == "tile_config" \
                and self.program is not None:
            self.program.rebinds_input_queues = True
        v = self.members.get(name)
        if v is None:
            raise interp.err(f"'{self.lib.replace('/', '.')}.{name}' is not supported by "
                             "waferscale yet", span)
        return v


def _tile_config_lib(ip, importer, params, node) -> NativeModule:
    """``<tile_config>``: color_config (get_color_config_addr, reset_routes), switch_config
    (clear_current_position, set_invalid_for_all_switch_positions, set_rx/tx_switch_pos1..3)
    and teardown (exit). Its other submodules are not supported by waferscale yet."""
    m = SubmoduleLib(ip, importer, "tile_config", params, node)
    subs: dict[str, NativeModule] = {}
    for qual in ROUTER_CONFIG_KINDS:
        sub_name, fn_name = qual.split(".")
        sub = subs.get(sub_name)
        if sub is None:
            sub = subs[sub_name] = SubmoduleLib(ip, importer, sub_name, params, node)
        second = (None, None, None) if fn_name == "encode_input_queue" else \
            (None, None) if fn_name == "encode_output_queue" else \
            (T.OUTPUT_QUEUE,) if qual == "tile_config/queue_flush.exit" else \
            (T.U16, None) if fn_name == "reset_routes" else \
            (T.COLOR, T.DIRECTION) if fn_name.startswith("set_") and "switch_pos" in fn_name \
            else (T.COLOR,)
        sub.runtime_fn(fn_name, second, T.VOID)
    subs["tile_config/color_config"].comptime_fn("get_color_config_addr", _color_config_addr)
    subs["tile_config/switch_config"].comptime_fn("get_color_config_addr", _color_config_addr)
    subs["tile_config/teardown"].comptime_fn("get_task_id", _teardown_task_id)
    for qual, sub in subs.items():
        m.members[qual.split("/")[1]] = Val(T.IMPORTED_MODULE, sub)
    return m


def _color_config_addr(ip: Interp, args: list[Val], node: A.Node) -> Val:
    if len(args) != 1 or args[0].type != T.COLOR or not isinstance(args[0].v, int):
        raise ip.err("get_color_config_addr takes a color", node)
    return Val(T.U16, COLOR_CONFIG_ADDR_BASE + args[0].v)


def _teardown_task_id(ip: Interp, args: list[Val], node: A.Node) -> Val:
    if args:
        raise ip.err("teardown.get_task_id takes no arguments", node)
    from .builtins import TEARDOWN_TASK_ID
    return Val(T.LOCAL_TASK_ID, TEARDOWN_TASK_ID)


def router_config_args(ip: Interp, qual: str, args: list[Val], node: A.Node) -> tuple[int, int,
                                                                                     int]:
    """``(kind, color, value)`` of a <tile_config> router call (PyFabricCore.router_config)."""
    from .layout import DIRECTION_BITS
    kind = ROUTER_CONFIG_KINDS[qual]
    if kind in (10, 11):
        # encode_input_queue(queue ID, color ID, filter_enable) / encode_output_queue(queue
        # ID, color ID): the IDs as integers (the tutorial passes @get_int(color)).
        n = 3 if kind == 10 else 2
        if len(args) != n or not all(T.is_int(a.type) and isinstance(a.v, int)
                                     for a in args[:2]) or (n == 3 and args[2].type != T.BOOL):
            raise ip.err(f"'{qual.replace('/', '.')}' takes (queue ID, color ID"
                         f"{', filter_enable: bool' if n == 3 else ''})", node)
        qid, cid = int(args[0].v), int(args[1].v)
        if not 0 <= qid <= 7 or not 0 <= cid <= 23:
            raise ip.err(f"queue {qid} or color {cid} out of range (0..7, 0..23)", node)
        return kind, cid, qid | (int(bool(args[2].v)) << 8 if n == 3 else 0)
    if kind == 13:
        if len(args) != 1 or args[0].type != T.OUTPUT_QUEUE or not isinstance(args[0].v, int):
            raise ip.err("queue_flush.exit takes an output_queue", node)
        return kind, 0, int(args[0].v)
    want = 2 if kind == 0 or 3 <= kind <= 8 else 1
    if len(args) != want:
        raise ip.err(f"'{qual.replace('/', '.')}' takes {want} argument(s)", node)

    def dirs(v: Val, what: str) -> int:
        items = v.v.data.ravel().tolist() if isinstance(v.v, ArrayData) else (
            v.v if isinstance(v.type, T.TupleT) else [v])
        mask = 0
        for it in items:
            if not isinstance(it, Val) or it.type != T.DIRECTION:
                raise ip.err(f"{what} must be a direction or an array or tuple of directions",
                             node)
            mask |= DIRECTION_BITS[it.v]
        return mask
    if kind == 0:
        a, cfg = args
        if a.type == T.COLOR and isinstance(a.v, int):
            # The color itself: WaferLLM's Decode (comm_pe.csl, built with SDK 1.x's cslc for
            # hardware runs) passes it so; the SDK's allreduce passes the address.
            color = a.v
        elif T.is_int(a.type) and isinstance(a.v, int):
            color = a.v - COLOR_CONFIG_ADDR_BASE
            if not 0 <= color <= 23:
                raise ip.err(f"reset_routes: {a.v} is not a color config address", node)
        else:
            raise ip.err("reset_routes takes a color, or its address from "
                         "get_color_config_addr", node)
        if not isinstance(cfg.v, dict) or not set(cfg.v) <= {"rx", "tx"}:
            raise ip.err("reset_routes takes .{ .rx = ..., .tx = ... }", node)
        rx = dirs(cfg.v["rx"], ".rx") if "rx" in cfg.v else 0
        tx = dirs(cfg.v["tx"], ".tx") if "tx" in cfg.v else 0
        return kind, color, rx | tx << 5
    c = args[0]
    # switch_config takes a color or the address of its color configuration (the docs'
    # `c: anytype`); teardown.exit a color.
    if T.is_int(c.type) and isinstance(c.v, int) and not isinstance(c.v, bool) \
            and qual.startswith("tile_config/switch_config.") \
            and 0 <= c.v - COLOR_CONFIG_ADDR_BASE <= 23:
        color = c.v - COLOR_CONFIG_ADDR_BASE
    elif c.type == T.COLOR and isinstance(c.v, int):
        color = c.v
    else:
        raise ip.err(f"'{qual.replace('/', '.')}' takes a color, found '{c.type}'", node)
    value = dirs(args[1], "the direction") if want == 2 else 0
    return kind, color, value


# Bit positions of the eight command slots of a control wavelet (the same table as
# sim.fabric._CMD_SLOT_BITS, which documents it; the front end does not import the simulator).
_CMD_SLOT_BITS = ((22, 23, 24), (25, 26, 27), (28, 29, 0), (1, 2, 3), (4, 5, 6), (7, 8, 9),
                  (10, 11, 12), (13, 14, 15))


def _memcpy_switches_lib(ip, importer, params, node) -> NativeModule:
    """``<memcpy/memcpy_switches>`` as benchmark-libs/allreduce uses it: ``ctrl(cmds)`` encodes
    eight router commands into a control wavelet's payload (NOCE set on each, no task: the
    encoding of sdk-examples' 25-pt-stencil ``ctrl``; the allreduce's comment gives
    ctrl(teardown_cmd_1()) = 0x9df9249), ``switch_cmd_11()`` advances the first two routers
    and ``teardown_cmd_1()`` tears down every router on the path (not popped on advance).
    Its other members are not supported by waferscale yet (doc-gap: no reference page)."""
    m = SubmoduleLib(ip, importer, "memcpy/memcpy_switches", params, node)
    m.comptime_fn("ctrl", _switches_ctrl)
    m.comptime_fn("switch_cmd_11", _switch_cmds, cmds=(1, 1))
    m.comptime_fn("teardown_cmd_1", _switch_cmds, cmds=(3,))
    return m


def encode_commands(cmds: list[int], noce: bool | list[bool] = True, task: int = 31) -> int:
    """A control wavelet's payload from up to eight 2-bit router commands (slot k = the k-th
    router on the path; NOP after them), each with the NOCE bit ``noce`` (one for all, or
    one per slot), and the task field (bits 16-21)."""
    out = (task & 0x3F) << 16
    for k in range(8):
        nk = noce[k] if isinstance(noce, list) else noce
        v = (cmds[k] & 3 if k < len(cmds) else 0) | (int(nk) << 2)
        for b, bit in enumerate(_CMD_SLOT_BITS[k]):
            out |= ((v >> b) & 1) << bit
    return out


def _switches_ctrl(ip: Interp, args: list[Val], node: A.Node) -> Val:
    if len(args) != 1 or not isinstance(args[0].v, ArrayData) or args[0].v.data.size != 8:
        raise ip.err("ctrl takes the eight commands ([8]u16) of a control wavelet", node)
    cmds = [int(x.v) if isinstance(x, Val) else int(x) for x in args[0].v.data.ravel()]
    return Val(T.U32, encode_commands(cmds))


def _switch_cmds(ip: Interp, args: list[Val], node: A.Node, *, cmds: tuple[int, ...]) -> Val:
    if args:
        raise ip.err("this function takes no arguments", node)
    data = np.zeros(8, dtype=np.uint16)
    data[:len(cmds)] = cmds
    return Val(T.ArrayT((8,), T.U16), ArrayData(data))


CONTROL_OPCODES = {"NOP": 0, "SWITCH_ADV": 1, "SWITCH_RST": 2, "TEARDOWN": 3}
NO_ENTRYPOINT = 31
"""The task field of a control wavelet that activates no control task (the SDK's own encoders:
25-pt-stencil's ``ctrl`` "color 31 ... null", the allreduce's 0x9df9249)."""


def _control_lib(ip, importer, params, node) -> NativeModule:
    """``<control>`` (the CSL libraries page): MAX_CMDS, the ``opcode`` enum and the payload
    encoders, run at compile time (a run-time argument makes the compiled engine fall back
    to the interpreter). Payload layout: sim.fabric's _CMD_SLOT_BITS, task field bits 16-21,
    `data` bits 0-15 (which overlap slots 2-7: "data is not meaningful if there is more than
    one switching command")."""
    m = SubmoduleLib(ip, importer, "control", params, node)
    m.members["MAX_CMDS"] = Val(T.COMPTIME_INT, 8)
    m.members["opcode"] = Val(T.TYPE, T.EnumT("opcode", T.U32, dict(CONTROL_OPCODES)))
    m.comptime_fn("encode_control_task_payload", _ctrl_task_payload)
    m.comptime_fn("encode_single_payload", _ctrl_single_payload)
    m.comptime_fn("encode_payload", _ctrl_payload)
    return m


def _ctrl_entry(ip: Interp, v: Val, node: A.Node) -> int:
    if v.type == T.VOID or v.v is None:
        return NO_ENTRYPOINT
    if v.type != T.CONTROL_TASK_ID or not isinstance(v.v, int):
        raise ip.err(f"a control wavelet's entrypoint must be a control_task_id or {{}}, found "
                     f"'{v.type}'", node)
    return v.v


def _ctrl_opcode(ip: Interp, v: Val, node: A.Node) -> int:
    if isinstance(v.type, T.EnumT) and v.type.name == "opcode" and v.v in CONTROL_OPCODES:
        return CONTROL_OPCODES[v.v]
    raise ip.err(f"expected a <control> opcode, found '{v.type}'", node)


def _ctrl_task_payload(ip: Interp, args: list[Val], node: A.Node) -> Val:
    if len(args) != 1:
        raise ip.err("encode_control_task_payload takes a control_task_id", node)
    return Val(T.U32, encode_commands([], noce=False, task=_ctrl_entry(ip, args[0], node)))


def _ctrl_single_payload(ip: Interp, args: list[Val], node: A.Node) -> Val:
    if len(args) != 4 or args[1].type != T.BOOL or not T.is_int(args[3].type):
        raise ip.err("encode_single_payload takes (cmd: opcode, ce_ignore: bool, entrypoint: "
                     "control_task_id or {}, data: u16)", node)
    out = (_ctrl_opcode(ip, args[0], node) << 22) | (int(bool(args[1].v)) << 24) \
        | (_ctrl_entry(ip, args[2], node) << 16) | (int(args[3].v) & 0xFFFF)
    return Val(T.U32, out)


def _ctrl_payload(ip: Interp, args: list[Val], node: A.Node) -> Val:
    if len(args) != 5 or not T.is_int(args[0].type) or args[3].type != T.BOOL:
        raise ip.err("encode_payload takes (N, cmds: [N]opcode, ce_ignore: [N]bool, "
                     "ce_ignore_remaining: bool, entrypoint)", node)
    n = int(args[0].v)
    if not 0 <= n <= 8:
        raise ip.err(f"a control wavelet carries at most 8 commands, not {n}", node)

    def items(v: Val) -> list[Val]:
        data = v.v.data.ravel().tolist() if isinstance(v.v, ArrayData) else None
        if data is None or len(data) != n:
            raise ip.err(f"expected an array of {n} elements", node)
        return [x if isinstance(x, Val) else Val(T.BOOL, bool(x)) for x in data]
    cmds = [_ctrl_opcode(ip, c, node) for c in items(args[1])]
    # The slots after the n commands: NOP, with ce_ignore_remaining as their NOCE bit.
    noce = [bool(c.v) for c in items(args[2])] + [bool(args[3].v)] * (8 - n)
    return Val(T.U32, encode_commands(cmds, noce, task=_ctrl_entry(ip, args[4], node)))


# -- libraries written in CSL: <random>, <debug> ---------------------------------------------------
#
# These are waferscale's own CSL files beside this module (stdlib_<name>.csl), instantiated like
# a file import, so that their run-time code is ordinary CSL for both PE paths (the
# interpreter and the compiled engine) and their state is ordinary PE memory. Their
# docstrings (the files' header comments) state the documented behaviour and the doc-gaps.

_LIB_DIR = Path(__file__).resolve().parent


def _source_lib(ip: Interp, importer: ModuleInstance, name: str, params: dict[str, Val],
                node: A.Node, prefix: str = "") -> ModuleInstance:
    path = _LIB_DIR / f"stdlib_{name}.csl"
    tree = ip.ctx.load_ast(path, node.span)
    inst = ModuleInstance(ip.ctx, str(path), tree, params, name=name,
                          program=importer.program, bind_span=node.span)
    inst.imported_by = importer  # type: ignore[attr-defined]
    if prefix:
        inst.symbol_prefix = prefix
    ip.run_comptime_blocks(inst)
    return inst


def _random_lib(ip: Interp, importer: ModuleInstance, params: dict[str, Val],
                node: A.Node) -> ModuleInstance:
    """<random> (stdlib_random.csl): random_f32(lower, upper); its generator is a doc-gap."""
    for k in params:
        raise ip.err(f"<random> has no param '.{k}'", node)
    return _source_lib(ip, importer, "random", {}, node)


#: The longest string a <debug> record holds: its byte count is the tag word's high byte,
#: padded to even (the SDK's host reader: "the maximum even buffer length (254)").
DEBUG_MAX_STRING_BYTES = 254


def _debug_lib(ip: Interp, importer: ModuleInstance, params: dict[str, Val],
               node: A.Node) -> ModuleInstance:
    """<debug> (stdlib_debug.csl) with ``.key`` (a comptime string naming the trace buffer
    for the host's read_trace) and ``.buffer_size`` (its length in 16-bit words)."""
    for k in params:
        if k not in ("key", "buffer_size"):
            raise ip.err(f"<debug> has no param '.{k}' (it takes .key and .buffer_size)", node)
    key = params.get("key")
    if key is None or not isinstance(key.v, str) or not key.v:
        raise ip.err("<debug> needs the param '.key', a non-empty comptime string naming its "
                     "trace buffer", node)
    size = params.get("buffer_size")
    if size is None:
        raise ip.err("<debug> needs the param '.buffer_size' (the trace buffer's length in "
                     "16-bit words)", node)
    n = ip.to_int(size, node, ".buffer_size")
    if not 1 <= n <= 0xFFFF:
        raise ip.err(f"<debug>'s .buffer_size {n} must be 1..65535 (16-bit words)", node)
    prefix = f"$$csl_debug.{key.v}."
    prog = importer.program
    if prog is not None and any(m.symbol_prefix == prefix for m in prog.modules):
        # The host reads a trace by its key (read_trace(x, y, key)): two buffers with one key
        # on a PE would be ambiguous. (What cslc does then is a doc-gap.)
        raise ip.err(f"<debug> key '{key.v}' is already used by another <debug> import in "
                     "this PE program; give each trace buffer its own .key", node)
    # The library's comptime string helper (registry: "debug.string_*"), given to the CSL
    # file as its `_native` param; users see only the file's members.
    helper = NativeModule(ip, importer, "debug", {}, node)
    for what in ("nwords", "tag", "word"):
        helper.comptime_fn(f"string_{what}", _debug_string_info, what=what)
    inner = {"buffer_size": Val(T.U16, n), "_native": Val(T.IMPORTED_MODULE, helper)}
    inst = _source_lib(ip, importer, "debug", inner, node, prefix=prefix)
    inst.call_checks = {"trace_string": _check_trace_string}  # type: ignore[attr-defined]
    return inst


def _check_trace_string(ip: Interp, scope: Any, call: A.Call, local: frozenset[str]) -> None:
    """At compile time, at the user's call: trace_string's string fits a record."""
    if len(call.args) != 1:
        raise ip.err(f"trace_string takes one comptime string, found {len(call.args)} "
                     "arguments", call)
    arg = call.args[0]
    if any(isinstance(n, A.Ident) and n.name in local for n in arg.walk()):
        return            # a comptime param of the caller: checked where it is folded
    _debug_string_bytes(ip, ip.eval(arg, scope), arg)


def _debug_string_bytes(ip: Interp, s: Val, node: A.Node) -> bytes:
    if not isinstance(s.v, str):
        raise ip.err(f"trace_string takes a comptime string, found '{s.type}'", node)
    b = s.v.encode("utf-8")
    if len(b) % 2:
        b += b"\0"
    if len(b) > DEBUG_MAX_STRING_BYTES:
        raise ip.err(f"trace_string: a string of {len(s.v.encode())} bytes does not fit a "
                     f"<debug> record (at most {DEBUG_MAX_STRING_BYTES})", node)
    return b


def _debug_string_info(ip: Interp, args: list[Val], node: A.Node, *, what: str) -> Val:
    """stdlib_debug.csl's string helper: ``string_nwords(s)``, ``string_tag(s)`` ('s' |
    bytes << 8) and ``string_word(s, k)`` (bytes 2k, 2k+1 little-endian) of a comptime
    string's record."""
    b = _debug_string_bytes(ip, args[0], node)
    if what == "nwords":
        return Val(T.U16, len(b) // 2)
    if what == "tag":
        return Val(T.U16, ord("s") | len(b) << 8)
    k = ip.to_int(args[1], node, "word index")
    return Val(T.U16, b[2 * k] | b[2 * k + 1] << 8)


Factory = Callable[[Interp, ModuleInstance, dict[str, Val], A.Node], ModuleInstance]

STDLIB: dict[str, Factory] = {
    "memcpy/get_params": _memcpy_get_params,
    "memcpy/memcpy": _memcpy_pe,
    "layout": _layout_lib,
    "empty": _empty_lib,
    "time": _time_lib,
    "math": _math_lib,
    "simprint": _simprint_lib,
    "collectives_2d/params": _c2d_params,
    "collectives_2d/pe": _c2d_pe,
    "tile_config": _tile_config_lib,
    "memcpy/memcpy_switches": _memcpy_switches_lib,
    "control": _control_lib,
    "random": _random_lib,
    "debug": _debug_lib,
}

# Libraries cslc ships that waferscale does not implement yet (a clear error, not "unknown").
KNOWN_UNIMPLEMENTED = R.UNSUPPORTED_LIBRARIES
# Every library here has its members' records in the registry (and the reverse); a library
# written in CSL (registry.SOURCE_LIBRARIES) has no member records of its own, and
# <tile_config>'s submodules (registry.SUBMODULE_LIBRARIES) are members of <tile_config>.
if set(STDLIB) != {f.lib for f in R.LIBRARY.values()} - set(R.SUBMODULE_LIBRARIES) \
        | set(R.EMPTY_LIBRARIES) | set(R.SOURCE_LIBRARIES):
    raise ImportError("STDLIB differs from the registry's libraries: "
                      f"{sorted(set(STDLIB) ^ {f.lib for f in R.LIBRARY.values()})}")

# Why, where the reason is a doc-gap rather than work not done yet.
UNIMPLEMENTED_REASONS = {
    "directions": "the documentation waferscale follows gives neither its route bitvector "
                  "encoding (dirToTxBits, dirToRxBits, RX_RAMP, TX_RAMP, ...) nor the "
                  "numeric .routes and switch positions such bitvectors feed (doc-gap)",
    "kernels": "it is a kernel library shipped with the SDK whose source and behaviour are "
               "not documented (doc-gap)",
}


def find_module(ip: Interp, base: Path, spec: str, node: A.Node) -> tuple[Path, str]:
    """The file ``@import_module(spec)`` names from a file in ``base``: relative to it, then
    along the import paths (the first that exists), with its resolved path. The file system
    is asked once per compilation for each (base, spec); the candidates found missing are
    recorded in ``Compilation.probed`` (a cached compile is stale once one appears)."""
    memo_key = ("import " + spec, hash(str(base)))
    ctx = ip.ctx
    hit = ctx.memo.get(memo_key)
    if hit is not None and hit[0] == (str(base), spec):
        return hit[1]
    candidates = [base / spec] + [Path(p) / spec for p in ctx.options.import_paths]
    for c in candidates:
        if c.is_file():
            break
        ctx.probed.add(str(c.resolve()))
    else:
        raise CslImportError(f"cannot find module '{spec}' (looked for "
                             + ", ".join(str(c) for c in candidates) + "); pass the directory "
                             "that holds it with --import-path", node.span)
    found = (c, str(c.resolve()))
    ctx.memo[memo_key] = ((str(base), spec), found)
    return found


def import_module(ip: Interp, importer: ModuleInstance, spec: str, params: dict[str, Val],
                  node: A.Node) -> ModuleInstance:
    """Instantiate the module named by ``spec`` for ``importer`` (see the module docstring)."""
    if spec.startswith("<") and spec.endswith(">"):
        name = spec[1:-1]
        factory = STDLIB.get(name)
        if factory is None:
            if name.split("/")[0] in KNOWN_UNIMPLEMENTED or name.startswith("kernels/"):
                why = UNIMPLEMENTED_REASONS.get(name.split("/")[0])
                raise CslImportError(f"library '{spec}' is not implemented by waferscale yet"
                                     + (f": {why}" if why else ""), node.span)
            raise CslImportError(f"unknown library '{spec}' (known: "
                                 + ", ".join(f"<{n}>" for n in sorted(STDLIB)) + ")", node.span)
        return factory(ip, importer, params, node)
    base = Path(importer.path).parent if not importer.is_stdlib else Path(".")
    c, resolved = find_module(ip, base, spec, node)
    # Every import makes a new instance, so a file that (directly or through others) imports
    # itself with the same params would instantiate forever: report the cycle at the import.
    key = (resolved, tuple(sorted((k, val_key(v)) for k, v in params.items())))
    chain: list[ModuleInstance] = []
    m: ModuleInstance | None = importer
    while m is not None:
        chain.append(m)
        if getattr(m, "import_key", None) == key or (
                not params and getattr(m, "imported_by", None) is None
                and not m.is_stdlib and str(Path(m.path).resolve()) == key[0]):
            names = " -> ".join(Path(x.path).name for x in reversed(chain))
            raise CslImportError(f"import cycle: {names} -> {Path(c).name} (every "
                                 "@import_module makes a new instance, so the cycle never "
                                 "ends)", node.span)
        m = getattr(m, "imported_by", None)
    tree = ip.ctx.load_ast(c, node.span)
    inst = ModuleInstance(ip.ctx, str(c), tree, params, name=Path(spec).stem,
                          program=importer.program, bind_span=node.span)
    inst.imported_by = importer  # type: ignore[attr-defined]
    inst.import_key = key  # type: ignore[attr-defined]
    ip.run_comptime_blocks(inst)
    return inst
