"""CSL types as hashable Python objects.

Built-in types compare structurally (``IntT(16, True) == IntT(16, True)``); named structs and
enums are nominal (identity equality: two ``struct {}`` definitions are different types).
``str(t)`` is the CSL spelling, used in diagnostics and in ``waferscale check`` output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


class Type:
    """Base class of all CSL types."""

    comptime_only = False

    def __repr__(self) -> str:
        return f"<type {self}>"


@dataclass(frozen=True, repr=False)
class IntT(Type):
    bits: int
    signed: bool

    def __str__(self) -> str:
        return f"{'i' if self.signed else 'u'}{self.bits}"

    @property
    def min(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    def fits(self, v: int) -> bool:
        return self.min <= v <= self.max

    def wrap(self, v: int) -> int:
        v &= (1 << self.bits) - 1
        if self.signed and v >> (self.bits - 1):
            v -= 1 << self.bits
        return v


@dataclass(frozen=True, repr=False)
class FloatT(Type):
    name: str                     # f16 | bf16 | cb16 | f32 | f64

    @property
    def bits(self) -> int:
        return 32 if self.name == "f32" else 64 if self.name == "f64" else 16

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, repr=False)
class SimpleT(Type):
    """A type identified by name alone: bool, void, comptime types, hardware IDs, DSD kinds."""
    name: str

    def __str__(self) -> str:
        return self.name

    @property
    def comptime_only(self) -> bool:  # type: ignore[override]
        return self.name in COMPTIME_ONLY_NAMES


@dataclass(frozen=True, repr=False)
class ArrayT(Type):
    dims: tuple[int, ...]
    elem: Type

    def __str__(self) -> str:
        return f"[{', '.join(map(str, self.dims))}]{self.elem}"

    @property
    def count(self) -> int:
        n = 1
        for d in self.dims:
            n *= d
        return n


@dataclass(frozen=True, repr=False)
class PointerT(Type):
    elem: Type
    many: bool = False
    const: bool = False

    def __str__(self) -> str:
        return f"{'[*]' if self.many else '*'}{'const ' if self.const else ''}{self.elem}"


@dataclass(frozen=True, repr=False)
class FnT(Type):
    """A function type. ``params`` entries are None for ``anytype``/comptime-generic params."""
    params: tuple[Type | None, ...]
    ret: Type
    is_task: bool = False

    comptime_only = True

    def __str__(self) -> str:
        ps = ", ".join("anytype" if p is None else str(p) for p in self.params)
        return f"{'task' if self.is_task else 'fn'}({ps}) {self.ret}"


@dataclass(frozen=True, repr=False)
class StructField:
    name: str
    type: Type
    default: Any = None           # a Val or None


@dataclass(eq=False, repr=False)
class StructT(Type):
    """A named (nominal) struct or union type. ``namespace`` holds its nested declarations."""
    name: str
    fields: tuple[StructField, ...]
    kind: str = "struct"
    namespace: Any = field(default=None)

    def __str__(self) -> str:
        return self.name

    def field(self, name: str) -> StructField | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    __hash__ = object.__hash__


@dataclass(frozen=True, repr=False)
class AnonStructT(Type):
    """The type of an anonymous struct literal ``.{ .a = 1 }``: structural by names and types."""
    fields: tuple[tuple[str, Type], ...]

    def __str__(self) -> str:
        return "struct{" + ", ".join(f"{n}: {t}" for n, t in self.fields) + "}"

    @property
    def comptime_only(self) -> bool:  # type: ignore[override]
        return any(t.comptime_only for _, t in self.fields)


@dataclass(frozen=True, repr=False)
class TupleT(Type):
    items: tuple[Type, ...]

    def __str__(self) -> str:
        return "tuple{" + ", ".join(map(str, self.items)) + "}"

    @property
    def comptime_only(self) -> bool:  # type: ignore[override]
        return any(t.comptime_only for t in self.items)


@dataclass(eq=False, repr=False)
class EnumT(Type):
    name: str
    tag: IntT
    members: dict[str, int]
    namespace: Any = None

    def __str__(self) -> str:
        return self.name

    __hash__ = object.__hash__


@dataclass(frozen=True, repr=False)
class RangeT(Type):
    """The type of ``@range(T, ...)`` values (iterable by ``for``)."""
    elem: Type

    comptime_only = True

    def __str__(self) -> str:
        return f"range({self.elem})"


# ----------------------------------------------------------------------------------------------

BOOL = SimpleT("bool")
VOID = SimpleT("void")
NORETURN = SimpleT("noreturn")
TYPE = SimpleT("type")
COMPTIME_INT = SimpleT("comptime_int")
COMPTIME_FLOAT = SimpleT("comptime_float")
COMPTIME_STRING = SimpleT("comptime_string")
COMPTIME_STRUCT = SimpleT("comptime_struct")
IMPORTED_MODULE = SimpleT("imported_module")
TENSOR_ACCESS = SimpleT("tensor_access")
UNDEFINED_T = SimpleT("@TypeOf(undefined)")
F16, BF16, CB16, F32 = FloatT("f16"), FloatT("bf16"), FloatT("cb16"), FloatT("f32")
I16, U16, I32, U32 = IntT(16, True), IntT(16, False), IntT(32, True), IntT(32, False)

COMPTIME_ONLY_NAMES = {"type", "comptime_int", "comptime_float", "comptime_string",
                       "comptime_struct", "imported_module", "tensor_access",
                       "@TypeOf(undefined)"}

HW_ID_NAMES = ("color", "direction", "data_task_id", "local_task_id", "control_task_id",
               "input_queue", "output_queue", "ut_id")
DSD_NAMES = ("mem1d_dsd", "mem4d_dsd", "fabin_dsd", "fabout_dsd", "circbuf_dsd")
DSR_NAMES = ("dsr_dest", "dsr_src0", "dsr_src1", "dsr_fifo_dest", "dsr_fifo_src1", "xdsr", "sr")

COLOR = SimpleT("color")
DIRECTION = SimpleT("direction")
DATA_TASK_ID = SimpleT("data_task_id")
LOCAL_TASK_ID = SimpleT("local_task_id")
CONTROL_TASK_ID = SimpleT("control_task_id")
INPUT_QUEUE = SimpleT("input_queue")
OUTPUT_QUEUE = SimpleT("output_queue")
UT_ID = SimpleT("ut_id")

NAMED_TYPES: dict[str, Type] = {
    "bool": BOOL, "void": VOID, "noreturn": NORETURN, "type": TYPE,
    "comptime_int": COMPTIME_INT, "comptime_float": COMPTIME_FLOAT,
    "comptime_string": COMPTIME_STRING, "comptime_struct": COMPTIME_STRUCT,
    "imported_module": IMPORTED_MODULE,
    "f16": F16, "bf16": BF16, "cb16": CB16, "f32": F32, "f64": FloatT("f64"),
    "fifo_handle": SimpleT("fifo_handle"),
}
for _n in HW_ID_NAMES + DSD_NAMES + DSR_NAMES:
    NAMED_TYPES[_n] = SimpleT(_n)

_INT_RE = re.compile(r"([iu])([1-9][0-9]*)\Z")
MAX_INT_BITS = 16777215


def lookup_type_name(name: str) -> Type | None:
    """The built-in type spelled ``name`` (``f32``, ``u16``, ``i7``, ``color``...), or None."""
    t = NAMED_TYPES.get(name) or _INT_NAMES.get(name)
    if t is not None:
        return t
    m = _INT_RE.match(name)
    if m and int(m.group(2)) <= MAX_INT_BITS:
        t = IntT(int(m.group(2)), m.group(1) == "i")
        if t.bits <= 128:           # the usual widths, remembered (a value type)
            _INT_NAMES[name] = t
        return t
    return None


_INT_NAMES: dict[str, Type] = {}


def is_int(t: Type) -> bool:
    return isinstance(t, IntT) or t == COMPTIME_INT


def is_float(t: Type) -> bool:
    return isinstance(t, FloatT) or t == COMPTIME_FLOAT


def is_numeric(t: Type) -> bool:
    return is_int(t) or is_float(t)


def is_hw_id(t: Type) -> bool:
    return isinstance(t, SimpleT) and t.name in HW_ID_NAMES


def is_dsd(t: Type) -> bool:
    return isinstance(t, SimpleT) and t.name in DSD_NAMES


def size_in_bytes(t: Type) -> int | None:
    """Storage size of a runtime type in bytes (None for comptime-only or unsized types).

    Memory is 16-bit-word addressed, so 8-bit and bool values take a whole word (assumption;
    see docs/frontend.md). DSD values are stored as 4 words (a descriptor, assumption).
    """
    if isinstance(t, IntT):
        return max(2, ((t.bits + 15) // 16) * 2)
    if isinstance(t, FloatT):
        return t.bits // 8
    if t == BOOL:
        return 2
    if isinstance(t, PointerT):
        return 2
    if isinstance(t, ArrayT):
        e = size_in_bytes(t.elem)
        return None if e is None else e * t.count
    if isinstance(t, StructT):
        total = 0
        for f in t.fields:
            s = size_in_bytes(f.type)
            if s is None:
                return None
            total += s
        return total
    if isinstance(t, EnumT):
        return size_in_bytes(t.tag)
    if is_hw_id(t):
        return 2
    if is_dsd(t):
        return 8
    return None
