"""Compile-time semantics of CSL builtins: a table of small functions.

Each entry takes ``(interp, call, scope)`` and returns a :class:`Val`. Builtins that only
exist at run time (DSD operations, ``@map``, DSR loads...) are listed in
:data:`RUNTIME_ONLY`; using one in comptime code is a diagnostic. Layout-only builtins talk to
the :class:`~waferscale.lang.layout.LayoutBuilder` of the compilation; PE-program builtins
record into the module's :class:`~waferscale.lang.comptime.ProgramRecord`.

Every name here has one record in :mod:`.registry` (checked at import); the tables of names
below (``RUNTIME_ONLY``, ``SIMULATED_RUNTIME``, ``NOT_IMPLEMENTED``, ``DSD_OP_NAMES``) are
views of those records.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from . import ast as A
from . import registry as R
from . import types as T
from .comptime import Interp, ProgramRecord, RuntimeRef, Scope
from .printer import print_node
from .values import VOID_VAL, ArrayData, DsdVal, DsrVal, FnVal, PtrVal, TensorAccessVal, Val, \
    describe, numpy_dtype, round_float

BUILTINS: dict[str, Callable[[Interp, A.BuiltinCall, Scope], Val]] = {}


def builtin(*names: str):
    def deco(fn):
        for n in names:
            BUILTINS[n] = fn
        return fn
    return deco


def _args(ip: Interp, e: A.BuiltinCall, s: Scope, lo: int, hi: int | None = None) -> list[Val]:
    hi = lo if hi is None else hi
    if not lo <= len(e.args) <= hi:
        want = str(lo) if lo == hi else f"{lo} to {hi}"
        raise ip.err(f"@{e.name} takes {want} argument(s), got {len(e.args)}", e)
    return [ip.eval(a, s) for a in e.args]


def _str(ip: Interp, v: Val, node: A.Node) -> str:
    if v.type != T.COMPTIME_STRING:
        raise ip.err(f"expected a string, found '{v.type}'", node)
    return v.v


def _type(ip: Interp, v: Val, node: A.Node) -> T.Type:
    if v.type != T.TYPE:
        raise ip.err(f"expected a type, found a value of type '{v.type}'", node)
    return v.v


def _struct(ip: Interp, v: Val, node: A.Node, what: str = "an anonymous struct") -> dict:
    if not isinstance(v.v, dict):
        if isinstance(v.type, T.TupleT) and not v.v:
            return {}
        raise ip.err(f"expected {what}, found '{v.type}'", node)
    return v.v


def _arch(ip: Interp) -> str:
    return ip.ctx.options.arch


# -- comptime utilities ---------------------------------------------------------------------------


@builtin("comptime_assert")
def _comptime_assert(ip, e, s):
    a = _args(ip, e, s, 1, 2)
    if not ip.to_bool(ip.check_comptime(a[0], e.args[0]), e.args[0]):
        msg = _str(ip, a[1], e.args[1]) if len(a) > 1 else "comptime assertion failed"
        raise ip.err(msg, e)
    return VOID_VAL


@builtin("assert")
def _assert(ip, e, s):
    a = _args(ip, e, s, 1)
    if not ip.to_bool(ip.check_comptime(a[0], e.args[0]), e.args[0]):
        raise ip.err("assertion failed", e)
    return VOID_VAL


@builtin("comptime_print")
def _comptime_print(ip, e, s):
    vals = [ip.eval(a, s) for a in e.args]
    text = " ".join(v.v if v.type == T.COMPTIME_STRING else describe(v) for v in vals)
    ip.ctx.prints.append((str(e.span), text))
    return VOID_VAL


@builtin("is_comptime")
def _is_comptime(ip, e, s):
    _args(ip, e, s, 0)
    return Val(T.BOOL, True)


@builtin("is_arch")
def _is_arch(ip, e, s):
    (a,) = _args(ip, e, s, 1)
    name = _str(ip, a, e.args[0])
    if name not in ("wse2", "wse3"):
        raise ip.err(f"unknown architecture '{name}' (expected \"wse2\" or \"wse3\")", e.args[0])
    return Val(T.BOOL, name == _arch(ip))


@builtin("is_same_type")
def _is_same_type(ip, e, s):
    a, b = _args(ip, e, s, 2)
    return Val(T.BOOL, _type(ip, a, e.args[0]) == _type(ip, b, e.args[1]))


@builtin("type_of")
def _type_of(ip, e, s):
    (a,) = _args(ip, e, s, 1)
    return Val(T.TYPE, a.type)


@builtin("fp16")
def _fp16(ip, e, s):
    _args(ip, e, s, 0)
    return Val(T.TYPE, T.F16)


def cast_value(ip: Interp, t: T.Type, v: Val, node: A.Node) -> Val:
    """``@as(T, v)``: numeric, bool and enum conversions."""
    ip.check_comptime(v, node)
    src = v.type
    if src == t:
        return v
    if T.is_int(t):
        if T.is_float(src):
            if not np.isfinite(v.v):
                raise ip.err(f"cannot convert {v.v} to '{t}'", node)
            x = int(v.v)                       # truncates toward zero
        elif T.is_int(src):
            x = v.v
        elif src == T.BOOL:
            x = int(v.v)
        elif isinstance(src, T.EnumT):
            x = src.members[v.v]
        else:
            raise ip.err(f"cannot convert '{src}' to '{t}'", node)
        if isinstance(t, T.IntT) and not t.fits(x):
            raise ip.err(f"type '{t}' cannot represent integer value {x}", node)
        return Val(t, x)
    if T.is_float(t):
        if T.is_numeric(src):
            return Val(t, round_float(t, float(v.v)))
        raise ip.err(f"cannot convert '{src}' to '{t}'", node)
    if t == T.BOOL:
        if T.is_numeric(src):
            return Val(t, v.v != 0)
        raise ip.err(f"cannot convert '{src}' to 'bool'", node)
    if isinstance(t, T.EnumT):
        if T.is_int(src):
            for name, val in t.members.items():
                if val == v.v:
                    return Val(t, name)
            raise ip.err(f"enum '{t}' has no member with value {v.v}", node)
    return ip.coerce(v, t, node)


@builtin("as")
def _as(ip, e, s):
    t, v = _args(ip, e, s, 2)
    return cast_value(ip, _type(ip, t, e.args[0]), v, e.args[1])


_BITS_DTYPE = {16: np.uint16, 32: np.uint32, 64: np.uint64, 8: np.uint8}


def _to_bits(ip: Interp, v: Val, node: A.Node) -> tuple[int, int]:
    t = v.type
    if isinstance(t, T.IntT):
        return t.bits, v.v & ((1 << t.bits) - 1)
    if isinstance(t, T.FloatT):
        if t.name in ("f16", "f32", "f64"):
            dt = numpy_dtype(t)
            return t.bits, int(np.array(v.v, dtype=dt).view(_BITS_DTYPE[t.bits]))
        if t.name == "bf16":
            return 16, int(np.array(v.v, dtype=np.float32).view(np.uint32)) >> 16
    raise ip.err(f"@bitcast of a comptime value of type '{t}' is not supported", node)


def register_address_message(t: T.Type | str) -> str:
    """The error of ``@bitcast(*T, address)`` (both PE paths say it alike)."""
    return (f"@bitcast of an integer address to '{t}' (a memory-mapped register) is not "
            "supported by waferscale yet")


@builtin("bitcast")
def _bitcast(ip, e, s):
    tv, v = _args(ip, e, s, 2)
    t = _type(ip, tv, e.args[0])
    ip.check_comptime(v, e.args[1])
    if isinstance(t, T.PointerT) and T.is_int(v.type):
        # `@bitcast(*u16, address).*`: a memory-mapped register of the PE (the SDK's
        # spmv-hypersparse reads its switch configuration so). The simulator has no such
        # registers: an address outside the program's memory would read nothing it models.
        raise ip.err(register_address_message(t), e)
    if v.type == T.COMPTIME_INT:
        raise ip.err("@bitcast needs a value of a fixed-size type; use @as first", e.args[1])
    bits, raw = _to_bits(ip, v, e.args[1])
    tb = t.bits if isinstance(t, (T.IntT, T.FloatT)) else None
    if tb != bits:
        raise ip.err(f"@bitcast size mismatch: '{v.type}' has {bits} bits, '{t}' has {tb}", e)
    if isinstance(t, T.IntT):
        return Val(t, t.wrap(raw))
    if t.name == "bf16":
        return Val(t, float(np.array(raw << 16, dtype=np.uint32).view(np.float32)))
    return Val(t, float(np.array(raw, dtype=_BITS_DTYPE[bits]).view(numpy_dtype(t))))


@builtin("ptrcast")
def _ptrcast(ip, e, s):
    tv, v = _args(ip, e, s, 2)
    t = _type(ip, tv, e.args[0])
    if not isinstance(t, T.PointerT) or not isinstance(v.v, PtrVal):
        raise ip.err("@ptrcast needs a pointer type and a pointer value", e)
    return Val(t, v.v)


@builtin("concat_structs")
def _concat_structs(ip, e, s):
    a, b = _args(ip, e, s, 2)
    if isinstance(a.type, T.TupleT) and isinstance(b.type, T.TupleT):
        items = list(a.v) + list(b.v)
        return Val(T.TupleT(tuple(x.type for x in items)), items)
    da, db = _struct(ip, a, e.args[0]), _struct(ip, b, e.args[1])
    if isinstance(a.type, T.StructT) or isinstance(b.type, T.StructT):
        raise ip.err("@concat_structs takes anonymous structs only", e)
    for k in db:
        if k in da:
            raise ip.err(f"@concat_structs: field '{k}' appears in both structs", e)
    out = {**da, **db}
    return Val(T.AnonStructT(tuple((k, v.type) for k, v in out.items())), out)


@builtin("field")
def _field(ip, e, s):
    v, name = _args(ip, e, s, 2)
    return ip.field_of(v, _str(ip, name, e.args[1]), e)


@builtin("has_field")
def _has_field(ip, e, s):
    v, name = _args(ip, e, s, 2)
    n = _str(ip, name, e.args[1])
    if v.type == T.TYPE:
        t = v.v
        if isinstance(t, T.StructT):
            return Val(T.BOOL, t.field(n) is not None)
        if isinstance(t, T.AnonStructT):
            return Val(T.BOOL, any(f == n for f, _ in t.fields))
        raise ip.err(f"@has_field needs a struct, found type '{t}'", e.args[0])
    if isinstance(v.v, dict):
        return Val(T.BOOL, n in v.v)
    raise ip.err(f"@has_field needs a struct, found '{v.type}'", e.args[0])


def _array_type_arg(ip: Interp, e: A.BuiltinCall, s: Scope) -> T.Type:
    (a,) = _args(ip, e, s, 1)
    return _type(ip, a, e.args[0])


@builtin("element_type")
def _element_type(ip, e, s):
    t = _array_type_arg(ip, e, s)
    if isinstance(t, (T.ArrayT, T.PointerT)):
        return Val(T.TYPE, t.elem)
    raise ip.err(f"@element_type needs an array or pointer type, found '{t}'", e)


@builtin("element_count")
def _element_count(ip, e, s):
    t = _array_type_arg(ip, e, s)
    if isinstance(t, T.ArrayT):
        return Val(T.U32, t.count)
    raise ip.err(f"@element_count needs an array type, found '{t}'", e)


@builtin("rank")
def _rank(ip, e, s):
    t = _array_type_arg(ip, e, s)
    return Val(T.U16, len(t.dims) if isinstance(t, T.ArrayT) else 0)


@builtin("dimensions")
def _dimensions(ip, e, s):
    t = _array_type_arg(ip, e, s)
    if not isinstance(t, T.ArrayT):
        raise ip.err(f"@dimensions needs an array type, found '{t}'", e)
    at = T.ArrayT((len(t.dims),), T.U32)
    return Val(at, ArrayData(np.array(t.dims, dtype=np.uint32)))


@builtin("get_int")
def _get_int(ip, e, s):
    (a,) = _args(ip, e, s, 1)
    if T.is_hw_id(a.type) and isinstance(a.v, int):
        return Val(T.U16, a.v)
    raise ip.err(f"@get_int needs a hardware ID (color, task ID, queue...), found '{a.type}'", e)


@builtin("strcat")
def _strcat(ip, e, s):
    vals = [ip.eval(a, s) for a in e.args]
    return Val(T.COMPTIME_STRING, "".join(_str(ip, v, n) for v, n in zip(vals, e.args)))


@builtin("strlen")
def _strlen(ip, e, s):
    (a,) = _args(ip, e, s, 1)
    return Val(T.COMPTIME_INT, len(_str(ip, a, e.args[0]).encode()))


@builtin("range")
def _range(ip, e, s):
    a = _args(ip, e, s, 2, 4)
    if len(a) == 3:
        raise ip.err("@range takes (T, stop) or (T, start, stop, step)", e)
    t = _type(ip, a[0], e.args[0])
    if not T.is_int(t):
        raise ip.err(f"@range element type must be an integer type, found '{t}'", e.args[0])
    nums = [ip.to_int(ip.coerce(ip.check_comptime(v, n), t, n), n)
            for v, n in zip(a[1:], e.args[1:])]
    start, stop, step = (0, nums[0], 1) if len(nums) == 1 else nums
    if step == 0:
        raise ip.err("@range step must not be zero", e.args[3])
    return Val(T.RangeT(t), (start, stop, step))


def _fill(ip: Interp, t: T.Type, value: Val | None, node: A.Node) -> Val:
    if not isinstance(t, T.ArrayT):
        if value is None:
            return ip.coerce(Val(T.COMPTIME_INT, 0), t, node) if T.is_numeric(t) else \
                Val(t, False) if t == T.BOOL else _bad_fill(ip, t, node)
        return ip.coerce(value, t, node)
    dt = numpy_dtype(t.elem)
    if dt is None:
        raise ip.err(f"cannot fill an array of '{t.elem}'", node)
    x = 0 if value is None else ip.coerce(value, t.elem, node).v
    return Val(t, ArrayData(np.full(t.dims, x, dtype=dt)))


def _bad_fill(ip: Interp, t: T.Type, node: A.Node) -> Val:
    raise ip.err(f"@zeros does not support type '{t}'", node)


@builtin("zeros")
def _zeros(ip, e, s):
    (t,) = _args(ip, e, s, 1)
    return _fill(ip, _type(ip, t, e.args[0]), None, e)


@builtin("constants")
def _constants(ip, e, s):
    t, v = _args(ip, e, s, 2)
    return _fill(ip, _type(ip, t, e.args[0]), ip.check_comptime(v, e.args[1]), e.args[1])


# -- modules --------------------------------------------------------------------------------------


@builtin("import_module")
def _import_module(ip, e, s):
    a = _args(ip, e, s, 1, 2)
    spec = _str(ip, a[0], e.args[0])
    params = _struct(ip, a[1], e.args[1]) if len(a) > 1 else {}
    from .modules import import_module
    inst = import_module(ip, s.module, spec, params, e)
    return Val(T.IMPORTED_MODULE, inst)


# -- hardware IDs ---------------------------------------------------------------------------------


def _record_id(ip: Interp, s: Scope, kind: str, n: int, node: A.Node) -> None:
    mod = s.module
    if mod.is_stdlib:
        return
    rec = mod.program if mod.program is not None else ip.ctx.layout_builder
    if rec is not None:
        rec.user_ids.setdefault((kind, n), node.span)


def _make_id(kind: T.SimpleT, lo: int | Callable[[Interp], int], hi: int, what: str
             ) -> Callable[[Interp, A.BuiltinCall, Scope], Val]:
    def fn(ip: Interp, e: A.BuiltinCall, s: Scope) -> Val:
        (a,) = _args(ip, e, s, 1)
        if isinstance(a.v, RuntimeRef):
            return Val(kind, a.v)       # a runtime ID (e.g. @get_color(runtime u16)); not comptime
        n = ip.to_int(ip.check_comptime(a, e.args[0]), e.args[0], what)
        lo_, hi_ = (lo(ip) if callable(lo) else lo), hi
        if not lo_ <= n <= hi_:
            raise ip.err(f"{what} {n} is out of range {lo_}..{hi_}"
                         + (f" on {_arch(ip)}" if callable(lo) else ""), e.args[0])
        _record_id(ip, s, kind.name, n, e)
        return Val(kind, n)
    return fn


BUILTINS["get_color"] = _make_id(T.COLOR, 0, 23, "color")
BUILTINS["get_input_queue"] = _make_id(T.INPUT_QUEUE, 0, 7, "input queue")
BUILTINS["get_output_queue"] = _make_id(T.OUTPUT_QUEUE, 0, 7, "output queue")
BUILTINS["get_local_task_id"] = _make_id(
    T.LOCAL_TASK_ID, lambda ip: 8 if _arch(ip) == "wse3" else 0, 30, "local task ID")
BUILTINS["get_control_task_id"] = _make_id(T.CONTROL_TASK_ID, 0, 63, "control task ID")
BUILTINS["get_ut_id"] = _make_id(T.UT_ID, 0, 7, "microthread ID")


@builtin("get_data_task_id")
def _get_data_task_id(ip, e, s):
    (a,) = _args(ip, e, s, 1)
    want = T.INPUT_QUEUE if _arch(ip) == "wse3" else T.COLOR
    if a.type != want:
        article = "an" if want == T.INPUT_QUEUE else "a"
        raise ip.err(f"on {_arch(ip)} @get_data_task_id takes {article} {want}, "
                     f"found '{a.type}'", e.args[0])
    ip.check_comptime(a, e.args[0])
    _record_id(ip, s, "data_task_id", a.v, e)
    return Val(T.DATA_TASK_ID, a.v)


@builtin("get_filter_id")
def _get_filter_id(ip, e, s):
    (a,) = _args(ip, e, s, 1)
    return Val(T.IntT(16, False), ip.to_int(Val(T.COMPTIME_INT, a.v), e))


# -- DSDs (comptime construction) -----------------------------------------------------------------

DSD_FIELDS = {
    "mem1d_dsd": {"base_address", "extent", "stride", "offset", "tensor_access",
                  "wavelet_index_offset"},
    "mem4d_dsd": {"base_address", "extent", "stride", "offset", "tensor_access",
                  "wavelet_index_offset"},
    "circbuf_dsd": {"base_address", "extent", "wraparound"},
    "fabin_dsd": {"extent", "fabric_color", "input_queue", "priority", "control_transform",
                  "wavelet_index_offset", "simd_mode"},
    "fabout_dsd": {"extent", "fabric_color", "output_queue", "control", "wavelet_index_offset",
                   "simd_mode", "zero", "advance_switch", "control_transform", "priority"},
}


@builtin("get_dsd")
def _get_dsd(ip, e, s):
    kv, cfg = _args(ip, e, s, 2)
    kind = _type(ip, kv, e.args[0])
    if not T.is_dsd(kind):
        raise ip.err(f"@get_dsd needs a DSD type (mem1d_dsd, fabin_dsd...), found '{kind}'",
                     e.args[0])
    fields = _struct(ip, cfg, e.args[1])
    allowed = DSD_FIELDS[kind.name]
    for k in fields:
        if k not in allowed:
            raise ip.err(f"unknown field '.{k}' for {kind.name} (expected one of "
                         f"{', '.join(sorted(allowed))})", e.args[1])
    if "tensor_access" in fields:
        if "base_address" in fields:
            raise ip.err("give either .tensor_access or .base_address, not both", e.args[1])
        ta = fields["tensor_access"]
        if not isinstance(ta.v, TensorAccessVal):
            raise ip.err(".tensor_access must be a tensor access expression |i|{N} -> A[i]",
                         e.args[1])
        if kind.name == "mem1d_dsd" and len(ta.v.extents) != 1:
            raise ip.err("mem1d_dsd takes a tensor access with one induction variable; use "
                         "mem4d_dsd", e.args[1])
    if kind.name in ("mem1d_dsd", "mem4d_dsd") and "tensor_access" not in fields \
            and "base_address" not in fields:
        raise ip.err(f"{kind.name} needs .tensor_access or .base_address", e.args[1])
    for k, v in fields.items():
        _check_dsd_field(ip, kind.name, k, v, _field_node(e.args[1], k))
    if kind.name == "fabin_dsd" and _arch(ip) == "wse3" and "input_queue" not in fields:
        raise ip.err("fabin_dsd on wse3 needs .input_queue", e.args[1])
    if kind.name == "fabout_dsd" and _arch(ip) == "wse3" and "output_queue" not in fields:
        raise ip.err("fabout_dsd on wse3 needs .output_queue", e.args[1])
    return Val(kind, DsdVal(kind.name, dict(fields)))


# -- DSRs (handles; their contents are run-time state of the PE, sim/dsd.py) ----------------------

DSR_FILES = {"dsr_dest": "dest", "dsr_src0": "src0", "dsr_src1": "src1"}


@builtin("get_dsr")
def _get_dsr(ip, e, s):
    """``@get_dsr(dsr_dest|dsr_src0|dsr_src1, id)``: a handle on register ``id`` of that DSR
    file (the docs' "Data Structure Registers" page). Comptime. The docs give no range for
    ``id`` (doc-gap): any comptime integer 0..65535 is accepted. The FIFO DSR types need FIFO
    DSR semantics the simulator does not model and are "not supported by waferscale yet"."""
    kv, nv = _args(ip, e, s, 2)
    kind = _type(ip, kv, e.args[0])
    name = getattr(kind, "name", "")
    if name in ("dsr_fifo_dest", "dsr_fifo_src1"):
        raise ip.err(f"@get_dsr of a {name} (a FIFO DSR) is not supported by waferscale yet",
                     e.args[0])
    if name not in DSR_FILES:
        raise ip.err(f"@get_dsr needs a DSR type (dsr_dest, dsr_src0, dsr_src1), found "
                     f"'{kind}'", e.args[0])
    n = ip.to_int(ip.check_comptime(nv, e.args[1]), e.args[1], "DSR id")
    if not 0 <= n <= 0xFFFF:
        raise ip.err(f"DSR id {n} is out of range 0..65535", e.args[1])
    return Val(kind, DsrVal(DSR_FILES[name], n))


# What a DSD's fields encode in hardware (csl-language.md §4, source [DSD] /csl/language/dsds):
# mem1d `extent: u16`, `stride: i8`, `offset: i16`; mem4d `offset: i16`, `stride` a tuple of
# i16, `extent` a tuple of u16; fabin/fabout `extent` is the wavelet count (u16). A field given
# a comptime value out of range is an error here; run-time values are checked when the
# descriptor is read (sim/dsd.py:check_dsd_ranges, both PE paths).
DSD_FIELD_RANGES = {"extent": (0, 0xFFFF, "u16"), "offset": (-0x8000, 0x7FFF, "i16"),
                    "stride": (-0x8000, 0x7FFF, "i16")}
MEM1D_STRIDE_RANGE = (-0x80, 0x7F, "i8")
DSD_FIELD_KINDS = {"input_queue": T.INPUT_QUEUE, "output_queue": T.OUTPUT_QUEUE,
                   "fabric_color": T.COLOR}


def _field_node(node: A.Node, name: str) -> A.Node:
    """The value expression of ``.name = ...`` in an initializer list (else ``node``)."""
    if isinstance(node, A.InitList):
        for f in node.fields:
            if f.name == name:
                return f.value
    return node


def _what(v: Val) -> str:
    """How an argument of the wrong kind is named in errors."""
    if v.type == T.TYPE:
        return f"the type '{v.v}'"
    if isinstance(v.type, T.FnT) or isinstance(v.v, FnVal):
        return f"a function ('{v.type}')"
    return f"a value of type '{v.type}'"


def _check_dsd_int(ip: Interp, what: str, v: Val, lo: int, hi: int, tname: str,
                   node: A.Node) -> None:
    if not T.is_int(v.type) or isinstance(v.v, bool):
        raise ip.err(f"{what} must be an integer ({tname}), found {_what(v)}", node)
    if isinstance(v.v, int) and not lo <= v.v <= hi:
        raise ip.err(f"{what} {v.v} does not fit the DSD's {tname} field ({lo}..{hi})", node)


# Fields of a fabric DSD that change what goes over the fabric and that the simulator does
# not model: set (true or a non-empty struct) they are errors, never silently ignored.
# ``.priority`` and ``.simd_mode`` only change timing and are accepted (docs/simulator.md).
UNSUPPORTED_DSD_FIELDS = {"advance_switch": "switches",
                          "control_transform": "control wavelets", "zero": "zero wavelets"}


def _check_dsd_field(ip: Interp, kind: str, name: str, v: Val, node: A.Node) -> None:
    """Kinds and hardware ranges of one @get_dsd field (see DSD_FIELD_RANGES)."""
    if name in UNSUPPORTED_DSD_FIELDS and (bool(v.v) if v.type == T.BOOL else
                                           not (isinstance(v.v, dict) and not v.v)):
        raise ip.err(f"{kind} '.{name}' ({UNSUPPORTED_DSD_FIELDS[name]}) is not supported by "
                     "waferscale yet", node)
    want = DSD_FIELD_KINDS.get(name)
    if want is not None:
        if v.type != want:
            raise ip.err(f"{kind} .{name} must be a{'n' if want == T.INPUT_QUEUE else ''} "
                         f"{want}, found {_what(v)}", node)
        return
    if name == "tensor_access" and isinstance(v.v, TensorAccessVal):
        for n in v.v.extents:
            if not 0 <= n <= 0xFFFF:
                raise ip.err(f"{kind} tensor access extent {n} does not fit the DSD's u16 "
                             "extent field (0..65535)", node)
        lo, hi, _ = DSD_FIELD_RANGES["stride"]
        for what, n in [("offset", v.v.offset)] + [("stride", x) for x in v.v.strides]:
            if not lo <= n <= hi:
                raise ip.err(f"{kind} tensor access {what} {n} does not fit the DSD's i16 "
                             f"{what} field ({lo}..{hi})", node)
        return
    if name not in DSD_FIELD_RANGES:
        return
    lo, hi, tname = MEM1D_STRIDE_RANGE if (kind == "mem1d_dsd" and name == "stride") \
        else DSD_FIELD_RANGES[name]
    if kind == "mem4d_dsd" and name in ("extent", "stride"):
        items = v.v if isinstance(v.v, list) else None
        if items is None:
            raise ip.err(f"mem4d_dsd .{name} must be a tuple of {tname}, found {_what(v)}",
                         node)
        if not 1 <= len(items) <= 4:
            raise ip.err(f"mem4d_dsd .{name} has {len(items)} entries (1 to 4 loops)", node)
        for x in items:
            _check_dsd_int(ip, f"mem4d_dsd .{name} entry", x, lo, hi, tname, node)
        return
    _check_dsd_int(ip, f"{kind} .{name}", v, lo, hi, tname, node)


def _dsd_arg(ip: Interp, v: Val, node: A.Node) -> DsdVal:
    if not isinstance(v.v, DsdVal):
        if isinstance(v.v, RuntimeRef):
            raise ip.err("cannot modify a runtime DSD variable at compile time", node)
        raise ip.err(f"expected a DSD, found '{v.type}'", node)
    return v.v


def _dsd_mutator(field_name: str, nargs: int):
    def fn(ip: Interp, e: A.BuiltinCall, s: Scope) -> Val:
        a = _args(ip, e, s, nargs)
        d = _dsd_arg(ip, a[0], e.args[0])
        if field_name == "base_addr" and isinstance(a[1].type, T.ArrayT) \
                and isinstance(e.args[1], (A.Ident, A.FieldAccess)):
            # An array names its storage: the DSD is re-pointed at its first element
            # (benchmark-libs/allreduce: @set_dsd_base_addr(dsd, ctrl_11)).
            a = [a[0], ip.address_of(e.args[1], s)]
        rng = MUTATOR_RANGES.get(field_name)
        # At run time (the PE interpreter has .pe) the extent is checked when an op reads the
        # DSD (sim/dsd.py:check_extents), as the compiled engine does; a run-time offset
        # increment or stride against its field here (pe_engine.hpp, kDMod, the same error).
        pe = getattr(ip, "pe", None)
        if rng is not None and (pe is None or a[1].type == T.COMPTIME_INT):
            _check_dsd_int(ip, f"@{e.name} argument", a[1], *rng, e.args[1])
        elif rng is not None and field_name != "length" and isinstance(a[1].v, int) \
                and pe is not None:
            lo, hi, tname = rng
            if not lo <= a[1].v <= hi:
                raise pe.error(f"@{e.name} argument {a[1].v} does not fit the DSD's {tname} "
                               f"field ({lo}..{hi})", e)
        return Val(a[0].type, DsdVal(d.kind, d.fields, d.mods + ((field_name, tuple(a[1:])),)))
    return fn


MUTATOR_RANGES = {"increment_offset": DSD_FIELD_RANGES["offset"],
                  "length": DSD_FIELD_RANGES["extent"], "stride": MEM1D_STRIDE_RANGE}
BUILTINS["increment_dsd_offset"] = _dsd_mutator("increment_offset", 3)
BUILTINS["set_dsd_base_addr"] = _dsd_mutator("base_addr", 2)
BUILTINS["set_dsd_length"] = _dsd_mutator("length", 2)
BUILTINS["set_dsd_stride"] = _dsd_mutator("stride", 2)


@builtin("allocate_fifo")
def _allocate_fifo(ip, e, s):
    a = _args(ip, e, s, 1, 2)
    if not isinstance(a[0].v, RuntimeRef) or not isinstance(a[0].type, T.ArrayT):
        raise ip.err("@allocate_fifo needs a global array variable as its buffer", e.args[0])
    # The simulator models the plain FIFO (no options): a circular buffer over the array
    # that async DSD operations push to (destination) and pop from (source), suspending
    # while it is full or empty (sim/dsd.py: FifoOperand). The options (activate_push/pop,
    # priority, empty/full actions) are not modeled.
    if len(a) > 1 and not (isinstance(a[1].v, dict) and not a[1].v):
        raise ip.err("options of @allocate_fifo (.activate_push, .activate_pop, ...) are not "
                     "supported by waferscale yet", e.args[1])
    at = a[0].type
    if not isinstance(at, T.ArrayT) or len(at.dims) != 1 or \
            not isinstance(at.elem, (T.IntT, T.FloatT)) or at.elem.bits not in (16, 32):
        raise ip.err("@allocate_fifo needs a one-dimensional array of 16- or 32-bit elements, "
                     f"found '{at}'", e.args[0])
    return Val(T.NAMED_TYPES["fifo_handle"], DsdVal("fifo", {"buffer": a[0]}))


# -- layout builtins ------------------------------------------------------------------------------


def _layout(ip: Interp, e: A.BuiltinCall):
    b = ip.ctx.layout_builder
    if b is None:
        raise ip.err(f"@{e.name} is only allowed in a layout block", e)
    return b


@builtin("set_rectangle")
def _set_rectangle(ip, e, s):
    w, h = _args(ip, e, s, 2)
    _layout(ip, e).set_rectangle(ip.to_int(w, e.args[0], "width"),
                                 ip.to_int(h, e.args[1], "height"), e)
    return VOID_VAL


@builtin("get_rectangle")
def _get_rectangle(ip, e, s):
    """The program rectangle: in the layout block after @set_rectangle, and in PE code
    (official examples size their PE programs with it)."""
    _args(ip, e, s, 0)
    b = ip.ctx.layout_builder or ip.ctx.layout_done
    if b is None:
        raise ip.err("@get_rectangle needs a layout (it is valid in the layout block after "
                     "@set_rectangle, and in the PE programs of that layout)", e)
    return b.get_rectangle(e)


@builtin("set_tile_code")
def _set_tile_code(ip, e, s):
    a = _args(ip, e, s, 2, 4)
    x = ip.to_int(a[0], e.args[0], "x coordinate")
    y = ip.to_int(a[1], e.args[1], "y coordinate")
    path = _str(ip, a[2], e.args[2]) if len(a) > 2 else None
    params = _struct(ip, a[3], e.args[3]) if len(a) > 3 else {}
    _layout(ip, e).set_tile_code(x, y, path, params, s.module, e)
    return VOID_VAL


@builtin("set_color_config")
def _set_color_config(ip, e, s):
    a = _args(ip, e, s, 4)
    x = ip.to_int(a[0], e.args[0], "x coordinate")
    y = ip.to_int(a[1], e.args[1], "y coordinate")
    _layout(ip, e).set_color_config(x, y, a[2], a[3], e)
    return VOID_VAL


@builtin("export_name")
def _export_name(ip, e, s):
    a = _args(ip, e, s, 2, 3)
    name = _str(ip, a[0], e.args[0])
    t = _type(ip, a[1], e.args[1])
    mutable = ip.to_bool(a[2], e.args[2]) if len(a) > 2 else None
    _layout(ip, e).export_name(name, t, mutable, e)
    return VOID_VAL


# -- PE-program builtins (top-level comptime) -----------------------------------------------------


def _program(ip: Interp, e: A.BuiltinCall, s: Scope):
    p = s.module.program
    if p is None:
        raise ip.err(f"@{e.name} is only allowed in a PE program's top-level comptime block", e)
    return p


def _task_fn(ip: Interp, v: Val, node: A.Node) -> FnVal:
    if not isinstance(v.v, FnVal) or v.v.decl is None or not v.v.decl.is_task:
        raise ip.err("expected a task", node)
    return v.v


def _bind(kind: T.Type, key: str):
    def fn(ip: Interp, e: A.BuiltinCall, s: Scope) -> Val:
        t, tid = _args(ip, e, s, 2)
        task = _task_fn(ip, t, e.args[0])
        if tid.type != kind:
            raise ip.err(f"@{e.name} needs a {kind}, found '{tid.type}'", e.args[1])
        n = ip.to_int(Val(T.COMPTIME_INT, tid.v), e.args[1]) if isinstance(tid.v, int) else \
            ip.to_int(tid, e.args[1])
        d = task.decl
        if key == "local" and d.params:
            raise ip.err(f"local task '{d.name}' must take no parameters", e.args[0])
        if key == "data" and not d.params:
            raise ip.err(f"data task '{d.name}' must take the wavelet as a parameter", e.args[0])
        prog = _program(ip, e, s)
        prev = prog.task_bindings.get((key, n))
        if prev is not None and prev is not task:
            raise ip.err(f"{kind} {n} is already bound to task '{prev.name}'", e)
        for (k2, n2), other in prog.task_bindings.items():
            if other is task and (k2, n2) != (key, n):
                raise ip.err(f"task '{d.name}' is already bound to {k2} task ID {n2}", e)
        prog.task_bindings[(key, n)] = task
        return VOID_VAL
    return fn


TEARDOWN_TASK_ID = 29
"""The teardown task (csl-language.md §5: local task ID 29 is the teardown task)."""


@builtin("set_teardown_handler")
def _set_teardown_handler(ip, e, s):
    """``@set_teardown_handler(fn, color)``: ``fn`` (no parameters) runs as the teardown
    task when a teardown command reaches this PE's router on ``color`` (docs/fabric-model.md
    §9). One handler per PE program (more is not supported by waferscale yet)."""
    f, c = _args(ip, e, s, 2)
    if not isinstance(f.v, FnVal) or f.v.decl is None or f.v.decl.is_task:
        raise ip.err("@set_teardown_handler needs a function (not a task)", e.args[0])
    if f.v.decl.params:
        raise ip.err(f"teardown handler '{f.v.decl.name}' must take no parameters", e.args[0])
    if c.type != T.COLOR or not isinstance(c.v, int):
        raise ip.err(f"@set_teardown_handler needs a color, found '{c.type}'", e.args[1])
    prog = _program(ip, e, s)
    if c.v in prog.teardown_handlers:
        raise ip.err(f"color {c.v} already has a teardown handler", e)
    _bind_teardown_task(ip, e, prog, c.v, f.v, "a teardown handler")
    return VOID_VAL


def _bind_teardown_task(ip: Interp, e: A.BuiltinCall, prog: ProgramRecord, key: int, fn: FnVal,
                        what: str) -> None:
    """Make ``fn`` the PE program's teardown-task handler under ``key`` (a color, or
    EMPTY_QUEUE_HANDLER_KEY + an output queue): one handler per program, and the teardown
    task's ID must not be bound to a task of its own."""
    if prog.teardown_handlers:
        raise ip.err("more than one teardown or empty-queue handler in a PE program is not "
                     "supported by waferscale yet", e)
    if ("local", TEARDOWN_TASK_ID) in prog.task_bindings:
        raise ip.err(f"local task ID {TEARDOWN_TASK_ID} (the teardown task) is bound to a "
                     f"task; it cannot also run {what}", e)
    prog.teardown_handlers[key] = fn


EMPTY_QUEUE_HANDLER_KEY = 32
"""teardown_handlers' key of output queue q's empty-queue handler: 32 + q (colors: 0..23)."""


@builtin("set_empty_queue_handler")
def _set_empty_queue_handler(ip, e, s):
    """``@set_empty_queue_handler(fn, oq)`` (WSE-3): after ``@queue_flush(oq)``, ``fn`` runs
    as the teardown task once ``oq`` is empty (topic-16). It shares the teardown task with the
    teardown handlers: one handler per PE program (more: not supported by waferscale yet)."""
    f, q = _args(ip, e, s, 2)
    if ip.ctx.options.arch != "wse3":
        raise ip.err("@set_empty_queue_handler is WSE-3 only", e)
    if not isinstance(f.v, FnVal) or f.v.decl is None or f.v.decl.is_task or f.v.decl.params:
        raise ip.err("@set_empty_queue_handler needs a function without parameters", e.args[0])
    if q.type != T.OUTPUT_QUEUE or not isinstance(q.v, int):
        raise ip.err(f"@set_empty_queue_handler needs an output_queue, found '{q.type}'",
                     e.args[1])
    _bind_teardown_task(ip, e, _program(ip, e, s), EMPTY_QUEUE_HANDLER_KEY + q.v, f.v,
                        "an empty-queue handler")
    return VOID_VAL


BUILTINS["bind_local_task"] = _bind(T.LOCAL_TASK_ID, "local")
BUILTINS["bind_data_task"] = _bind(T.DATA_TASK_ID, "data")
BUILTINS["bind_control_task"] = _bind(T.CONTROL_TASK_ID, "control")


def _id_of(ip: Interp, v: Val, node: A.Node, kinds: tuple[T.Type, ...]) -> tuple[str, int]:
    if v.type not in kinds or not isinstance(v.v, int) or not isinstance(v.type, T.SimpleT):
        raise ip.err(f"expected one of {', '.join(map(str, kinds))}, found '{v.type}'", node)
    return v.type.name, v.v


@builtin("activate")
def _activate(ip, e, s):
    (a,) = _args(ip, e, s, 1)
    if isinstance(a.v, FnVal):
        raise ip.err("@activate takes a local task ID, not the task itself", e.args[0])
    _, n = _id_of(ip, a, e.args[0], (T.LOCAL_TASK_ID,))
    _program(ip, e, s).initially_active.add(n)
    return VOID_VAL


def _blockish(blocked: bool):
    def fn(ip: Interp, e: A.BuiltinCall, s: Scope) -> Val:
        (a,) = _args(ip, e, s, 1)
        kinds = (T.LOCAL_TASK_ID, T.DATA_TASK_ID, T.CONTROL_TASK_ID) + (
            (T.INPUT_QUEUE, T.UT_ID) if _arch(ip) == "wse3" else (T.COLOR,))
        key = _id_of(ip, a, e.args[0], kinds)
        prog = _program(ip, e, s)
        if blocked:
            prog.initially_blocked.add(key)
        else:
            prog.initially_blocked.discard(key)
        return VOID_VAL
    return fn


BUILTINS["block"] = _blockish(True)
BUILTINS["unblock"] = _blockish(False)


@builtin("initialize_queue")
def _initialize_queue(ip, e, s):
    a = _args(ip, e, s, 1, 2)
    kind, q = _id_of(ip, a[0], e.args[0], (T.INPUT_QUEUE, T.OUTPUT_QUEUE))
    cfg = _struct(ip, a[1], e.args[1]) if len(a) > 1 else {}
    for k in cfg:
        if k not in ("color", "priority", "ctrl_table_id"):
            raise ip.err(f"unknown queue option '.{k}'", e.args[1])
    if "ctrl_table_id" in cfg:
        raise ip.err("'.ctrl_table_id' of @initialize_queue (control task tables) is not "
                     "supported by waferscale yet", e.args[1])
    if _arch(ip) == "wse3" and "color" not in cfg:
        raise ip.err(f"on wse3 @initialize_queue needs .color for {kind} {q}", e)
    if "color" in cfg and cfg["color"].type != T.COLOR:
        raise ip.err(f".color must be a color, found '{cfg['color'].type}'", e.args[1])
    prog = _program(ip, e, s)
    if (kind, q) in prog.queues:
        raise ip.err(f"{kind} {q} is initialized twice", e)
    prog.queues[(kind, q)] = dict(cfg)
    return VOID_VAL


@builtin("export_symbol")
def _export_symbol(ip, e, s):
    a = _args(ip, e, s, 1, 2)
    v = a[0]
    arg0 = e.args[0]
    if isinstance(arg0, A.Ident) and s.find(arg0.name) is None and \
            arg0.name in s.module.globals and not isinstance(v.v, (RuntimeRef, FnVal)):
        v = Val(v.type, RuntimeRef(ip.const_symbol(s.module, arg0.name, arg0.span)))
    if isinstance(v.v, RuntimeRef):
        sym: Any = v.v.var
        default = v.v.var.name
    elif isinstance(v.v, FnVal) and v.v.decl is not None:
        sym = v.v
        default = v.v.decl.name
    else:
        raise ip.err("@export_symbol needs a global variable or function", e.args[0])
    name = _str(ip, a[1], e.args[1]) if len(a) > 1 else default
    prog = _program(ip, e, s)
    if name in prog.exported_symbols:
        raise ip.err(f"symbol name '{name}' is exported twice", e)
    prog.exported_symbols[name] = (sym, e.span)
    return VOID_VAL


@builtin("rpc")
def _rpc(ip, e, s):
    (a,) = _args(ip, e, s, 1)
    _, n = _id_of(ip, a, e.args[0], (T.DATA_TASK_ID,))
    prog = _program(ip, e, s)
    if prog.rpc_task is not None:
        raise ip.err("@rpc may be used at most once per PE program", e)
    prog.rpc_task = n
    return VOID_VAL


@builtin("set_local_color_config")
def _set_local_color_config(ip, e, s):
    c, cfg = _args(ip, e, s, 2)
    if c.type != T.COLOR:
        raise ip.err(f"expected a color, found '{c.type}'", e.args[0])
    from .layout import check_switch_color, parse_color_config
    parse_color_config(ip, cfg, e.args[1])
    if c.type == T.COLOR and isinstance(c.v, int):
        check_switch_color(ip, c.v, cfg, e.args[1])
    prog = _program(ip, e, s)
    if c.v in prog.local_color_configs:
        raise ip.err(f"color {c.v} is configured twice in this program", e)
    prog.local_color_configs[c.v] = cfg
    return VOID_VAL




# -- run-time-only builtins -----------------------------------------------------------------------

# Views of the registry (registry.py has one record per builtin).
RUNTIME_ONLY = tuple(r.name for r in R.BUILTINS.values() if r.where == {R.RUNTIME})
# The builtins cslc knows that waferscale does not model: an error where they are used, in a
# run-time body too (check_dsd_op_operands), at compile time.
_UNSUPPORTED = frozenset(r.name for r in R.BUILTINS.values() if not r.supported)

_MUTATOR_FIELDS = {"increment_dsd_offset": "increment_offset", "set_dsd_length": "length",
                   "set_dsd_stride": "stride"}


def _is_int_literal(e: A.Expr) -> bool:
    return isinstance(e, A.IntLit) or (isinstance(e, A.Unary) and e.op == "-"
                                       and isinstance(e.operand, A.IntLit))


# Options of a DSD operation that the simulator does not model (they would be ignored).
UNSUPPORTED_OP_OPTIONS = {"on_control": "a task run on a control wavelet"}

DSD_OP_NAMES = frozenset([r.name for r in R.BUILTINS.values() if r.family == "dsd_op"]
                         + ["map"])
_TYPE_EXPRS = (A.ArrayType, A.PointerType, A.FnType, A.StructType, A.EnumType)


def check_dsd_op_operands(ip: Interp, mod: Any, fn: A.FnDecl,
                          dead: set[int] | frozenset[int] = frozenset()) -> None:
    """At compile time, every operand of a DSD op (and @map's, after its function) in
    ``fn``'s body must be a value: a type, a function or a hardware ID (color, queue, task
    ID) where a DSD, pointer or number is expected is an error at the operand. Only names the
    body does not declare itself are judged (locals are run-time values), and only in the
    code the PE compiles (``dead``: the ids of the nodes of branches it never takes); a
    construct that is not supported is an error in any branch."""
    for item in _dsd_operand_plan(ip, fn):
        if id(item[1]) in dead and item[0] not in ("unsupported", "member", "bitcast"):
            continue        # (a construct waferscale does not model is an error anywhere)
        if item[0] == "unsupported":
            raise ip.err(item[2], item[1])
        if item[0] == "bitcast":        # @bitcast(P, ...) with P a module-level name
            call = item[1]
            name = call.args[0].name
            entry = mod.globals.get(name)
            d = getattr(entry, "decl", None)
            if isinstance(d, A.VarDecl) and d.kind in ("const", "param"):
                t = ip.global_value(mod, name, call.args[0].span)
                if t.type == T.TYPE and isinstance(t.v, T.PointerT):
                    raise ip.err(register_address_message(t.v), call)
            continue
        if item[0] == "member":         # lib.fn of a library member not modelled yet
            node = item[1]
            if node.target.name not in mod.globals:
                continue
            lib = ip.global_value(mod, node.target.name, node.target.span).v
            rec = R.LIBRARY.get(f"{getattr(lib, 'lib', '')}.{node.name}")
            if rec is not None and rec.unsupported is not None:
                raise ip.err(rec.unsupported_message(), node)
            continue
        if item[0] == "mutator":
            _, call = item
            # A literal argument is checked at compile time, as in a comptime context.
            _check_dsd_int(ip, f"@{call.name} argument", ip.eval(call.args[1], mod.scope),
                           *MUTATOR_RANGES[_MUTATOR_FIELDS[call.name]], call.args[1])
            continue
        _, call, k, a, dest, what = item
        if what is None:        # a name of the module: judged by its value here
            entry = mod.globals.get(a.name)
            d = getattr(entry, "decl", None)
            if isinstance(d, A.FnDecl):
                what = f"the function '{a.name}'"
            elif isinstance(d, A.VarDecl) and d.kind in ("const", "var"):
                v = ip.global_value(mod, a.name, a.span)
                if dest and (T.is_numeric(v.type) or v.type == T.BOOL):
                    what = f"'{a.name}' of type '{v.type}'"
                elif v.type == T.TYPE:
                    what = f"the type '{v.v}'"
                elif T.is_hw_id(v.type):
                    what = f"a{'n' if str(v.type)[0] in 'aeiou' else ''} " \
                        f"{v.type} ('{a.name}')"
                elif isinstance(v.type, T.FnT):
                    what = f"a function ('{a.name}')"
        if what is not None:
            role = "destination" if dest else \
                f"operand {k + 1 if call.name == 'map' else k}"
            want = "a DSD or a pointer" if dest else "a DSD, a pointer or a number"
            raise ip.err(f"@{call.name} {role} is {what}; expected {want}", a)


# Names of library members the registry says are not supported yet (lib.name in a body is
# judged by the library the name refers to).
_UNSUPPORTED_MEMBERS = frozenset(f.name for f in R.LIBRARY.values() if f.unsupported)


def _dsd_operand_plan(ip: Interp, fn: A.FnDecl) -> list[tuple]:
    """What check_dsd_op_operands judges in a body, in body order (the AST part of the check,
    once per function and compilation): ``("mutator", call)`` for a DSD mutator with a
    literal argument; ``("member", node)`` for ``lib.fn`` naming a library member that may
    be unsupported; ``("operand", call, k, arg, dest, what)`` for an operand to judge:
    ``what`` the error already known from the AST, or None for a module-level name whose
    value decides."""
    hit = ip.ctx.memo.get(("dsd operands", id(fn)))
    if hit is not None:
        return hit[1]
    plan: list[tuple] = []
    if fn.body is not None:
        local = A.fn_local_names(fn)
        local_types: dict[str, T.Type | None] = {}
        for n in fn.body.walk():
            if isinstance(n, A.VarDecl):
                t = T.lookup_type_name(n.type.name) if isinstance(n.type, A.Ident) else None
                local_types[n.name] = None if n.name in local_types else t
        for call in fn.body.walk():
            if isinstance(call, A.FieldAccess) and call.name in _UNSUPPORTED_MEMBERS \
                    and isinstance(call.target, A.Ident) and call.target.name not in local:
                plan.append(("member", call))
                continue
            if isinstance(call, A.BuiltinCall) and call.name in _MUTATOR_FIELDS \
                    and len(call.args) >= 2 and _is_int_literal(call.args[1]):
                plan.append(("mutator", call))
            if isinstance(call, A.BuiltinCall) and call.name in _UNSUPPORTED:
                plan.append(("unsupported", call, R.BUILTINS[call.name].unsupported_message()))
                continue
            if isinstance(call, A.BuiltinCall) and call.name == "bitcast" and call.args:
                # `@bitcast(*T, address)` in code: a memory-mapped register (the SDK's
                # spmv-hypersparse). No other @bitcast yields a pointer (@ptrcast does), so
                # the target type alone says so, before any value is known: written out, or
                # a module-level name whose value is a pointer type.
                a0 = call.args[0]
                if isinstance(a0, A.PointerType):
                    plan.append(("unsupported", call, register_address_message(print_node(a0))))
                    continue
                if isinstance(a0, A.Ident) and a0.name not in local:
                    plan.append(("bitcast", call))
                    continue
            if isinstance(call, A.BuiltinCall) and call.name == "load_to_dsr" \
                    and len(call.args) == 3 and isinstance(call.args[2], A.InitList):
                for f in call.args[2].fields:
                    if f.name not in LOAD_TO_DSR_OPTIONS:
                        plan.append(("unsupported", f, f"unknown option '.{f.name}' of "
                                     f"@load_to_dsr (expected {_LOAD_TO_DSR_EXPECTED})"))
            if not isinstance(call, A.BuiltinCall) or call.name not in DSD_OP_NAMES:
                continue
            args = list(call.args)
            if args and isinstance(args[-1], A.InitList) and args[-1].type is None \
                    and args[-1].fields:
                opts = args.pop()               # the options struct .{ .async = true, ... }
                assert isinstance(opts, A.InitList)
                for f in opts.fields:
                    if f.name in UNSUPPORTED_OP_OPTIONS:
                        plan.append(("unsupported", f, f"'.{f.name}' of a DSD operation ("
                                     f"{UNSUPPORTED_OP_OPTIONS[f.name]}) is not supported by "
                                     "waferscale yet"))
            if call.name == "map":
                args = args[1:]
            for k, a in enumerate(args):
                what = None
                dest = k == 0 and call.name != "map"
                if isinstance(a, _TYPE_EXPRS):
                    what = "a type"
                elif dest and isinstance(a, (A.IntLit, A.FloatLit, A.BoolLit, A.CharLit)):
                    what = "a number"
                elif dest and isinstance(a, A.Ident) and a.name in local:
                    t = local_types.get(a.name)
                    if t is not None and (T.is_numeric(t) or t == T.BOOL):
                        what = f"the local '{a.name}' of type '{t}'"
                elif isinstance(a, A.Ident) and a.name not in local:
                    if T.lookup_type_name(a.name) is not None:
                        what = f"the type '{a.name}'"
                    else:
                        plan.append(("operand", call, k, a, dest, None))
                        continue
                if what is not None:
                    plan.append(("operand", call, k, a, dest, what))
    ip.ctx.memo[("dsd operands", id(fn))] = (fn, plan)
    return plan


# The run-time-only builtins that the simulator implements (registry records without an
# "unsupported" wording). Every other name of RUNTIME_ONLY is "not supported by waferscale yet"
# at compile time, wherever it appears (check_dsd_op_operands), instead of a misleading error
# later.
SIMULATED_RUNTIME = frozenset(n for n in RUNTIME_ONLY if R.BUILTINS[n].supported)

# Options of @load_to_dsr: .save_address, and the settings of the asynchronous operations
# that use the DSR (their completion actions and microthread: sim/dsd.py, "DSRs").
LOAD_TO_DSR_OPTIONS = ("save_address", "async", "activate", "unblock", "ut_id")
_LOAD_TO_DSR_EXPECTED = ", ".join(f".{k}" for k in LOAD_TO_DSR_OPTIONS)


def _not_simulated(name: str) -> str:
    return R.BUILTINS[name].unsupported_message()


def _runtime_only(ip, e, s):
    if e.name not in SIMULATED_RUNTIME:
        raise ip.err(_not_simulated(e.name), e)
    if e.name == "load_to_dsr":
        return _preload_dsr(ip, e, s)
    raise ip.err(f"@{e.name} can only be used in run-time code (a fn or task body), not at "
                 "compile time", e)


def _preload_dsr(ip: Interp, e: A.BuiltinCall, s: Scope) -> Val:
    """``@load_to_dsr(dsr, dsd[, options])`` in a PE program's top-level comptime block (cslc
    accepts it there; WaferLLM's MeshGEMM (WSE-3, WSE-2) preloads its fabric DSRs with
    ``.{ .async = true, .activate/.unblock = task, .ut_id = ut }`` this way). The DSR holds
    the DSD from the program's start, as if loaded before the first task ran
    (ProgramRecord.dsr_preloads; the simulator applies them in order, sim/dsd.py). The DSD
    must be comptime-known; the options are those of a run-time load, checked here: a task
    ID for .activate/.unblock, a ut_id for .ut_id. Doc-gap: the DSRs page we could read does
    not describe this form; its meaning is the run-time load's, done once at load time."""
    prog = _program(ip, e, s)
    a = _args(ip, e, s, 2, 3)
    if not isinstance(a[0].v, DsrVal):
        raise ip.err(f"@load_to_dsr needs a DSR (@get_dsr), found '{a[0].type}'", e.args[0])
    if not isinstance(a[1].v, DsdVal) or a[1].v.kind == "fifo":
        raise ip.err(f"@load_to_dsr at compile time needs a comptime-known DSD, found "
                     f"'{a[1].type}'", e.args[1])
    r, kind = a[0].v, a[1].v.kind
    problem = dsr_load_problem(r, kind, False)
    if problem is not None:
        raise ip.err(problem, e.args[1])
    opts = _struct(ip, a[2], e.args[2]) if len(a) == 3 else {}
    for k, v in opts.items():
        node = e.args[2]
        if k not in LOAD_TO_DSR_OPTIONS:
            raise ip.err(f"unknown option '.{k}' of @load_to_dsr (expected "
                         f"{_LOAD_TO_DSR_EXPECTED})", node)
        if k in ("save_address", "async") and v.type != T.BOOL:
            raise ip.err(f"'.{k}' of @load_to_dsr must be a bool, found '{v.type}'", node)
        if k in ("activate", "unblock") and not isinstance(v.v, FnVal) \
                and v.type not in (T.LOCAL_TASK_ID, T.DATA_TASK_ID):
            raise ip.err(f"'.{k}' of @load_to_dsr must be a task ID, found '{v.type}'", node)
        if k == "ut_id" and v.type != T.UT_ID:
            raise ip.err(f"'.ut_id' of @load_to_dsr must be a ut_id, found '{v.type}'", node)
    problem = dsr_load_problem(r, kind, "save_address" in opts and bool(opts["save_address"].v))
    if problem is not None:
        raise ip.err(problem, e.args[2])
    prog.dsr_preloads.append((r, a[1], dict(opts), e))
    return VOID_VAL


def dsr_load_problem(r: DsrVal, kind: str, save_address: bool) -> str | None:
    """Why DSR ``r`` cannot take a DSD of ``kind`` (a destination DSR never holds a fabin, a
    src1 DSR never a fabout; .save_address is for mem1d DSDs), or None: the check of a load
    at compile time (_preload_dsr) and at run time (sim.dsd.load_dsr)."""
    if r.file == "dest" and kind == "fabin_dsd":
        return f"{r} holds a destination operand; a fabin_dsd cannot be one"
    if r.file == "src1" and kind == "fabout_dsd":
        return f"{r} holds a source operand; a fabout_dsd cannot be one"
    if save_address and kind == "mem4d_dsd":
        return ".save_address = true with a mem4d_dsd is not supported by waferscale yet"
    return None


for _n in RUNTIME_ONLY:
    BUILTINS[_n] = _runtime_only

# Names known to cslc that waferscale does not implement yet (registry records usable nowhere):
# a clear error, never a guess.
NOT_IMPLEMENTED = tuple(r.name for r in R.BUILTINS.values() if not r.where)


def _not_implemented(ip, e, s):
    raise ip.err(R.BUILTINS[e.name].unsupported_message(), e)


for _n in NOT_IMPLEMENTED:
    BUILTINS[_n] = _not_implemented

ALL_BUILTIN_NAMES = frozenset(BUILTINS)
# Every builtin has a record and every record a comptime entry (registry.py).
if ALL_BUILTIN_NAMES != set(R.BUILTINS):
    raise ImportError("builtins without a registry record: "
                      f"{sorted(ALL_BUILTIN_NAMES - set(R.BUILTINS))}; records without a "
                      f"builtin: {sorted(set(R.BUILTINS) - ALL_BUILTIN_NAMES)}")
