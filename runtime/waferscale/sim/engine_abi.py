"""The interface between lower.py (the bytecode) and the compiled engine (``bindings/``): one
source for every code both sides use.

setup.py renders this module into ``bindings/pe_abi.hpp`` (generated at build time, not in
git) before it compiles the extension, so the C++ enums, the record layouts and the shared
message texts cannot drift from the Python side: there is no table kept in step by comment.
The header carries :func:`fingerprint`; the extension exports it as ``_fabric.ENGINE_ABI``
and :func:`waferscale.sim.engine.why_not` refuses (the Python path runs instead) an extension
built from another version of this file, saying to rebuild it.

This module is plain data (standard library only, plus the registry's plain data): setup.py
imports it without numpy or the extension, and the pure-Python simulator does not need the
extension to import lower.py.

Contents:

* the enums (:data:`ENUMS`): each a list of ``(python_key, cpp_name)``; the C++ enumerator
  is ``k<cpp_name>`` with the value of its position; Python reads the ``dict`` views below
  (``OPS``, ``TCODES``, ``BINOPS``...);
* the DSD operations the engine implements (``registry.ENGINE_DSD_OPS``, ``kOpNames`` and
  ``enum DsdOpCode``);
* the record layouts lower.py fills (:data:`RECORDS`: ``Dsd`` and ``DsdCall``), with the
  offset of each field (:func:`offsets`);
* the message texts both paths print (:data:`MESSAGES`): a ``str.format`` template for
  Python, and a C++ function ``msg_<name>(...)`` taking its fields as ``std::string``.
"""

from __future__ import annotations

import enum
import hashlib
import re
import string

from typing import NamedTuple

from ..lang.registry import ENGINE_DSD_OPS

# -- enums --------------------------------------------------------------------------------------

# Bytecode instructions (op, a, b, c); the VM's cases in pe_engine.hpp say what a, b, c mean.
# The C++ enumerator of each is k<name>; the Python member (lower.Op) is that name upper-cased
# (checked below), so that mypy sees the members of a plain class.
_OPS = ("Nop Cost PushK LoadL StoreL LoadM StoreM LoadA StoreA Bounds PtrIdx IBin FBin ICmp "
        "FCmp INeg FNeg Not BNot Conv Jmp Jz Call Ret Pop Activate Block Unblock UnblockCmd "
        "Timestamp DPushK DLoadL DStoreL DLoadG DStoreG DMod DsdOp DPop PushXY FitChk Swap Dup "
        "Math MapIssue MapTest MapRead MapWrite MapStep MapDone Collective Print Assert ChkDef "
        "NoMatch Fail Bitcast DsrLoad").split()


class Op(enum.IntEnum):
    """The bytecode's instructions (values: their position in ``_OPS``)."""

    NOP = 0
    COST = enum.auto()
    PUSHK = enum.auto()
    LOADL = enum.auto()
    STOREL = enum.auto()
    LOADM = enum.auto()
    STOREM = enum.auto()
    LOADA = enum.auto()
    STOREA = enum.auto()
    BOUNDS = enum.auto()
    PTRIDX = enum.auto()
    IBIN = enum.auto()
    FBIN = enum.auto()
    ICMP = enum.auto()
    FCMP = enum.auto()
    INEG = enum.auto()
    FNEG = enum.auto()
    NOT = enum.auto()
    BNOT = enum.auto()
    CONV = enum.auto()
    JMP = enum.auto()
    JZ = enum.auto()
    CALL = enum.auto()
    RET = enum.auto()
    POP = enum.auto()
    ACTIVATE = enum.auto()
    BLOCK = enum.auto()
    UNBLOCK = enum.auto()
    UNBLOCKCMD = enum.auto()
    TIMESTAMP = enum.auto()
    DPUSHK = enum.auto()
    DLOADL = enum.auto()
    DSTOREL = enum.auto()
    DLOADG = enum.auto()
    DSTOREG = enum.auto()
    DMOD = enum.auto()
    DSDOP = enum.auto()
    DPOP = enum.auto()
    PUSHXY = enum.auto()
    FITCHK = enum.auto()
    SWAP = enum.auto()
    DUP = enum.auto()
    MATH = enum.auto()
    MAPISSUE = enum.auto()
    MAPTEST = enum.auto()
    MAPREAD = enum.auto()
    MAPWRITE = enum.auto()
    MAPSTEP = enum.auto()
    MAPDONE = enum.auto()
    COLLECTIVE = enum.auto()
    PRINT = enum.auto()
    ASSERT = enum.auto()
    CHKDEF = enum.auto()
    NOMATCH = enum.auto()
    FAIL = enum.auto()
    BITCAST = enum.auto()
    DSRLOAD = enum.auto()


if [(m.name, int(m)) for m in Op] != [(n.upper(), k) for k, n in enumerate(_OPS)]:
    raise ImportError("engine_abi.Op differs from its C++ names (_OPS)")

ENUMS: dict[str, list[tuple[str, str]]] = {
    "Op": [(n.upper(), n) for n in _OPS],
    # Value types of the VM (lower.tcode).
    "TCode": [("bool", "Bool"), ("i8", "I8"), ("u8", "U8"), ("i16", "I16"), ("u16", "U16"),
              ("i32", "I32"), ("u32", "U32"), ("f16", "F16"), ("f32", "F32"), ("bf16", "BF16")],
    "BinOp": [("+", "Add"), ("-", "Sub"), ("*", "Mul"), ("/", "Div"), ("%", "Mod"),
              ("&", "And"), ("|", "Or"), ("^", "Xor"), ("<<", "Shl"), (">>", "Shr")],
    "CmpOp": [("<", "Lt"), ("<=", "Le"), (">", "Gt"), (">=", "Ge"), ("==", "Eq"), ("!=", "Ne")],
    # DMOD's a: the DSD mutator builtins.
    "DMod": [("increment_dsd_offset", "IncrementOffset"), ("set_dsd_length", "SetLength"),
             ("set_dsd_stride", "SetStride"), ("set_dsd_base_addr", "SetBaseAddr")],
    "DsdKind": [("mem1d_dsd", "Mem1d"), ("mem4d_dsd", "Mem4d"), ("fabin_dsd", "Fabin"),
                ("fabout_dsd", "Fabout"), ("fifo", "Fifo")],
    # DsdCall.kind[k]: where an operand comes from.
    "OperandKind": [("dsd", "OperandDsd"), ("scalar", "OperandScalar"),
                    ("pointer", "OperandPointer"), ("dsr", "OperandDsr")],
    # <collectives_2d/pe>'s rendezvous operations (sim/collectives.py).
    "CollOp": [("broadcast", "Broadcast"), ("scatter", "Scatter"), ("gather", "Gather"),
               ("reduce_fadds", "ReduceFadds")],
    # MATH's a: <math>'s run-time routines (builtins_rt._math1), then the comptime functions
    # run-time code may call on a float (modules._math_comptime).
    "MathFn": [(n, "Math" + n.capitalize()) for n in
               ("exp", "sqrt", "log", "inv", "invsqrt", "tanh", "sin", "cos", "sig", "floor",
                "ceil", "abs")],
    # A DSR's register file (dsd.DsrVal.file); its key in the engine is file << 16 | id.
    "DsrFile": [("dest", "DsrDest"), ("src0", "DsrSrc0"), ("src1", "DsrSrc1")],
    # PRINT's a: <simprint>'s functions.
    "PrintKind": [("string", "PrintString"), ("u16", "PrintU16"), ("u32", "PrintU32")],
    # TaskEntry.kind: the task table's kinds (pe.tasks).
    "TaskKind": [("local", "TaskLocal"), ("data", "TaskData"), ("control", "TaskControl")],
    # Engine::Status, the result of a host command.
    "Status": [("ok", "Ok"), ("deadlock", "Deadlock"), ("max_cycles", "MaxCycles"),
               ("error", "Error"), ("fabric_error", "FabricError")],
    # The DSD operations with an element function (op_apply), registry order.
    "DsdOpCode": [(n, "Op" + n.capitalize()) for n in ENGINE_DSD_OPS],
}


def codes(enum: str) -> dict[str, int]:
    """An enum's Python keys and their values."""
    return {k: i for i, (k, _) in enumerate(ENUMS[enum])}


OPS = codes("Op")
TCODES = codes("TCode")
BINOPS = codes("BinOp")
CMPOPS = codes("CmpOp")
DMODS = codes("DMod")
DSD_KINDS = codes("DsdKind")
OPERAND_KINDS = codes("OperandKind")
COLLECTIVES = codes("CollOp")
DSR_FILE_CODES = codes("DsrFile")
PRINT_KINDS = codes("PrintKind")
TASK_KINDS = codes("TaskKind")
STATUS = codes("Status")
_math = codes("MathFn")
# <math> routines by base name, and the comptime functions run-time code may call on a float.
MATH_FNS = {k: v for k, v in _math.items() if k not in ("floor", "ceil", "abs")}
MATH_COMPTIME_FNS = {k: v for k, v in _math.items() if k in ("floor", "ceil", "abs")}
DSD_OPS = ENGINE_DSD_OPS

# -- records (int32 fields, filled by lower.py, read by pe_program.hpp) ---------------------------

# (field, count, comment); a count > 1 is an array.
RECORDS: dict[str, list[tuple[str, int, str]]] = {
    # A resolved DSD value (dsd.resolve applied eagerly to the descriptor and its modifiers).
    "Dsd": [("kind", 1, "DsdKind"), ("tcode", 1, "element type"), ("ndim", 1, ""),
            ("wio", 1, ".wavelet_index_offset"), ("base", 1, "word address of the base"),
            ("offset", 1, "in elements"), ("ext", 4, "extents"), ("str", 4, "strides"),
            ("queue", 1, ""), ("color", 1, ""),
            ("ut", 1, "fabric DSDs: the microthread ID they select")],
    # One DSD-operation call site (lower.ProgramLowering._dsd_op / _map).
    "DsdCall": [("op", 1, "DsdOpCode; @map: 1 if it has an output"),
                ("nops", 1, "destination + sources"),
                ("kind", 4, "OperandKind per operand (dsr: tcode holds its key, dsr_key)"),
                ("tcode", 4, "scalar: its type; pointer: the element type"),
                ("async_", 1, ""), ("activate", 1, "task ID or -1"),
                ("unblock", 1, "task ID or -1"), ("has_index", 1, ""),
                ("node", 1, "error location"), ("name", 1, "context name (\"@fmovs\")"),
                ("ut", 1, ".ut_id, or -1")],
}


def offsets(record: str) -> dict[str, int]:
    """Each field's offset in a record's int32 row."""
    out, k = {}, 0
    for name, n, _ in RECORDS[record]:
        out[name] = k
        k += n
    return out


def words(record: str) -> int:
    return sum(n for _, n, _ in RECORDS[record])


def pack(record: str, **fields: int | list[int]) -> list[int]:
    """A record's int32 row from its fields by name (absent fields 0, arrays zero-padded)."""
    known = {f for f, _, _ in RECORDS[record]}
    if not set(fields) <= known:
        raise KeyError(f"{record} has no field(s) {sorted(set(fields) - known)}")
    row: list[int] = []
    for f, n, _ in RECORDS[record]:
        v = fields.get(f, 0)
        vals = list(v) if isinstance(v, list) else [v]
        if len(vals) > n:
            raise ValueError(f"{record}.{f} holds {n} value(s), got {len(vals)}")
        row += vals + [0] * (n - len(vals))
    return row


DSD_WORDS = words("Dsd")
CALL_WORDS = words("DsdCall")
CALL = offsets("DsdCall")

# -- tuples lower.py hands to Engine.add_program (read by field index in pe_engine.hpp) ----------


class FnCode(NamedTuple):
    """One function of a program: its entry pc and frame sizes."""

    entry: int
    nslots: int
    ndslots: int
    nparams: int
    param_dsd: list[int]          # per parameter: 1 if it is a DSD (goes to a DSD slot)


class TaskEntry(NamedTuple):
    """One bound task."""

    tid: int
    kind: int                     # TaskKind
    fn: int                       # its FnCode
    ptypes: list[int]             # data task parameters (wavelet halves): TCodes
    name: int                     # its name (Program.names)


class Sym(NamedTuple):
    """One placed symbol (words)."""

    lo: int
    n: int
    name: str


class OpTypes(NamedTuple):
    """One DSD op's entry in the engine's cost table (Engine's ``ops``, in DSD_OPS order):
    its types (TCodes) and SIMD widths (builtins_rt.DSD_OPS, from the registry)."""

    dest: int
    srcs: list[int]
    simd_wse2: int
    simd_wse3: int


TUPLES: tuple[type, ...] = (FnCode, TaskEntry, Sym, OpTypes)


def _camel(name: str) -> str:
    return "".join(p.capitalize() for p in name.split("_"))


# -- message texts both paths print ---------------------------------------------------------------

MESSAGES: dict[str, str] = {
    "deadlock": "deadlock at cycle {cycle} while {what}: nothing can progress",
    "max_cycles": "{what}: not finished after {max_cycles} cycles (SimOptions.max_cycles)",
    "runaway": "ran more than {max_cycles} cycles ahead of the global clock without waiting "
               "for the fabric (an endless loop?; SimOptions.max_cycles)",
    "wait_iq": "a wavelet in input queue {queue}",
    "wait_oq": "space in output queue {queue} (color {color})",
    "wait_main": "the main thread to finish its task",
    "wait_ut": "microthread {ut} to finish its previous operation",
    "wait_fifo_pop": "an element in the FIFO at word {base}",
    "wait_fifo_push": "room in the FIFO at word {base}",
    "task_waits": "task {name} waits for {what}",
    "async_waits": "async op {name} waits for {what}",
    "cmd_blocked": "the host command stream waits for sys_mod.unblock_cmd_stream()",
    "blocked_active": "activated but blocked task ID(s) {ids}",
    # Deadlock-report lines of the host streams (items: ", "-joined, at most 6, then " ...").
    "h2d_waits": "memcpy H2D stream on color {color} still has to deliver {items}",
    "h2d_item": "{n} wavelet(s) to PE{pe}",
    "d2h_waits": "memcpy D2H stream on color {color} still waits for {items}",
    "d2h_item": "{n} wavelet(s) from PE{pe}",
    # ...and of a <collectives_2d> line (missing: ", "-joined positions, at most 8).
    "collective_waits": "collectives_2d {op} on {where} {idx}: {called} of {n} PEs called; "
                        "waiting for position(s) [{missing}]",
    "nothing_waits": "  (no PE is waiting on anything)",
}


def message(key: str, /, **fields: object) -> str:
    """The shared message ``key`` with its fields filled in."""
    return MESSAGES[key].format(**fields)


# -- the C++ header ---------------------------------------------------------------------------


def _cpp_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _render() -> list[str]:
    out = []
    for name, items in ENUMS.items():
        body = ", ".join(f"k{c} = {i}" for i, (_, c) in enumerate(items))
        out.append(f"enum {name} : int32_t {{ {body}, kNum{name} = {len(items)} }};")
    out.append("const char* const kOpNames[] = {"
               + ", ".join(_cpp_string(n) for n in DSD_OPS) + "};")
    out.append("constexpr int kNumDsdOps = kNumDsdOpCode;")
    for rec, fields in RECORDS.items():
        out.append(f"struct {rec} {{")
        for f, n, comment in fields:
            decl = f"  int32_t {f}" + (f"[{n}];" if n > 1 else ";")
            out.append(decl + (f"  // {comment}" if comment else ""))
        out.append("};")
    for cls in TUPLES:
        index = ", ".join(f"k{cls.__name__}{_camel(f)} = {i}"
                          for i, f in enumerate(cls._fields))   # type: ignore[attr-defined]
        out.append(f"enum {cls.__name__}Field : int {{ {index} }};")
    out.append(f"constexpr int kDsdInts = {DSD_WORDS};")
    out.append(f"constexpr int kCallInts = {CALL_WORDS};")
    out.append("static_assert(sizeof(Dsd) == kDsdInts * 4 && sizeof(DsdCall) == kCallInts * 4);")
    for name, text in MESSAGES.items():
        pieces = list(string.Formatter().parse(text))
        names = [fld for _, fld, _, _ in pieces if fld]
        params = ", ".join(f"const std::string& {fld}" for fld in dict.fromkeys(names))
        parts: list[str] = []
        for lit, fld, _, _ in pieces:
            if lit:
                parts.append(f"std::string({_cpp_string(lit)})")
            if fld:
                parts.append(fld)
        out.append(f"inline std::string msg_{name}({params}) {{ return "
                   + (" + ".join(parts) or 'std::string()') + "; }")
    return out


def fingerprint() -> str:
    """A hash of the interface: the extension must have been built from the same one."""
    return hashlib.sha256("\n".join(_render()).encode()).hexdigest()[:16]


def render_header() -> str:
    """``bindings/pe_abi.hpp``: the C++ side of this module."""
    lines = ["// GENERATED by setup.py from runtime/waferscale/sim/engine_abi.py: do not edit.",
             "// The interface between lower.py's bytecode and the compiled engine.",
             "#pragma once", "#include <cstdint>", "#include <string>", ""]
    lines += _render()
    lines.append(f"constexpr const char* kEngineAbi = {_cpp_string(fingerprint())};")
    return "\n".join(lines) + "\n"


assert all(re.fullmatch(r"[A-Za-z0-9]+", c) for items in ENUMS.values() for _, c in items)
