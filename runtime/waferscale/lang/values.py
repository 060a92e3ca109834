"""Compile-time values.

A :class:`Val` pairs a CSL :class:`~waferscale.lang.types.Type` with a Python payload:

============================  =================================================================
type                          payload
============================  =================================================================
integers, comptime_int        ``int`` (exact; fixed-width values are always in range)
floats, comptime_float        ``float`` (already rounded to the type's precision)
bool                          ``bool``
void                          ``None``
type                          a :class:`Type`
comptime_string               ``str``
anonymous / named struct      ``dict[str, Val]`` (field order kept)
tuple                         ``list[Val]``
array                         :class:`ArrayData`
pointer                       :class:`PtrVal`
function / task               :class:`FnVal`
imported_module               the module instance (``comptime.ModuleInstance``)
hardware IDs                  ``int`` (the ID); ``direction`` uses the name ``"EAST"``...
DSDs                          :class:`DsdVal`
range                         ``tuple(start, stop, step)``
tensor_access                 :class:`TensorAccessVal`
============================  =================================================================
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import types as T


@dataclass(slots=True)
class Val:
    type: T.Type
    v: Any

    def __repr__(self) -> str:
        return f"Val({self.type}, {self.v!r})"


@dataclass(slots=True)
class ArrayData:
    """Array contents: a numpy array for numeric/bool elements, else an object array of Val."""
    data: np.ndarray


@dataclass(slots=True, eq=False)
class GlobalVar:
    """A runtime global variable of a PE program (the target of ``&x`` at comptime)."""
    name: str
    type: T.Type
    init: Val | None
    mutable: bool
    owner: Any                        # the ModuleInstance that declared it
    decl: Any = None                  # the ast.VarDecl
    exported_as: list[str] = field(default_factory=list)

    @property
    def qualname(self) -> str:
        prefix = self.owner.symbol_prefix if self.owner is not None else ""
        return f"{prefix}{self.name}"


@dataclass(slots=True)
class PtrVal:
    """A comptime-known pointer: ``&global`` plus an element offset."""
    target: GlobalVar
    offset: int = 0


@dataclass(slots=True, eq=False)
class FnVal:
    """A function or task bound to the module instance that defines it."""
    decl: Any                         # ast.FnDecl
    owner: Any                        # ModuleInstance
    intrinsic: Any = None             # for library functions implemented in Python

    @property
    def name(self) -> str:
        return self.decl.name if self.decl is not None else getattr(self.intrinsic, "__name__", "?")


@dataclass(slots=True)
class DsdVal:
    """A DSD built by ``@get_dsd``: ``fields`` holds its descriptor fields as written, and
    ``mods`` the ``@increment_dsd_offset``/``@set_dsd_*`` changes applied since, in order, as
    ``(what, args)`` with what in ``increment_offset | base_addr | length | stride``. (The
    mutators return new values; the sequence is resolved when the DSD is used.)"""
    kind: str
    fields: dict[str, Any]
    mods: tuple[tuple[str, tuple[Any, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class DsrVal:
    """A DSR handle from ``@get_dsr(dsr_dest|dsr_src0|dsr_src1, id)``: which register file
    (``dest``, ``src0``, ``src1``) and which register of it. The register's contents (the
    DSD loaded by ``@load_to_dsr``) live on the PE at run time (sim/dsd.py: DSR state)."""
    file: str
    id: int

    def __str__(self) -> str:
        return f"dsr_{self.file} {self.id}"


@dataclass(slots=True)
class TensorAccessVal:
    """A resolved tensor access ``|i|{N} -> A[2*i+1]``: base, element offset, strides, extents.

    ``strides``/``extents`` are innermost-first, as in mem4d_dsd's tuples.
    """
    base: GlobalVar
    offset: int
    strides: tuple[int, ...]
    extents: tuple[int, ...]


VOID_VAL = Val(T.VOID, None)


def numpy_dtype(t: T.Type) -> np.dtype | None:
    """The numpy dtype storing elements of CSL type ``t`` (None if not a plain scalar)."""
    if isinstance(t, T.FloatT):
        dtypes: dict[str, np.dtype] = {"f16": np.dtype(np.float16),
                                       "f32": np.dtype(np.float32),
                                       "f64": np.dtype(np.float64)}
        return dtypes.get(t.name, np.dtype(np.uint16))
    if isinstance(t, T.IntT) and t.bits <= 64:
        for b in (8, 16, 32, 64):
            if t.bits <= b:
                return np.dtype(f"{'i' if t.signed else 'u'}{b // 8}")
    if t == T.BOOL:
        return np.dtype(np.bool_)
    return None


_PACK = {"f16": struct.Struct("<e"), "f32": struct.Struct("<f")}


def round_float(t: T.Type, x: float) -> float:
    """Round a Python float to the precision of float type ``t``."""
    if isinstance(t, T.FloatT):
        if t.name in ("f32", "f16"):
            # A finite value in range rounds as NumPy's cast does (IEEE round to nearest
            # even, subnormals included) through struct, without NumPy's per-call set-up;
            # the rest (overflow to ±inf, NaN) takes NumPy's path below.
            if type(x) is float and math.isfinite(x):
                pk = _PACK[t.name]
                try:
                    return pk.unpack(pk.pack(x))[0]
                except OverflowError:
                    pass
            with np.errstate(over="ignore"):   # overflow to ±inf is the IEEE result we want
                return float(np.float32(x) if t.name == "f32" else np.float16(x))
        if t.name == "bf16":
            # Round-to-nearest-even on the upper 16 bits of the f32 pattern.
            b = int(np.array(x, dtype=np.float32).view(np.uint32))
            if (b & 0x7F800000) != 0x7F800000:
                b += 0x7FFF + ((b >> 16) & 1)
            return float(np.array((b >> 16) << 16, dtype=np.uint32).view(np.float32))
    return float(x)


def describe(v: Val) -> str:
    """A short human rendering of a value for ``waferscale check`` and @comptime_print."""
    t, p = v.type, v.v
    if t == T.TYPE:
        return str(p)
    if T.is_int(t) or T.is_float(t):
        return repr(p) if isinstance(p, float) else str(p)
    if t == T.BOOL:
        return "true" if p else "false"
    if t == T.COMPTIME_STRING:
        return '"' + p + '"'
    if isinstance(t, (T.AnonStructT, T.StructT)) or t == T.COMPTIME_STRUCT:
        if isinstance(p, dict):
            return ".{ " + ", ".join(f".{k} = {describe(x)}" for k, x in p.items()) + " }"
    if isinstance(t, T.TupleT):
        return ".{ " + ", ".join(describe(x) for x in p) + " }"
    if T.is_hw_id(t):
        return f"{t}({p})" if t != T.DIRECTION else str(p)
    if isinstance(t, T.ArrayT):
        return f"{t}{{...}}"
    if isinstance(p, FnVal):
        return f"fn {p.name}"
    if t == T.IMPORTED_MODULE:
        return f"module {getattr(p, 'name', '?')}"
    if isinstance(p, PtrVal):
        return f"&{p.target.qualname}" + (f"+{p.offset}" if p.offset else "")
    return f"<{t}>"
