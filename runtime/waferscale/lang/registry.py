"""The builtin registry: one record per CSL builtin and per standard-library function.

Every name the front end accepts, ``@name(...)`` or ``<lib>.fn``, has exactly one record here
saying where it may be used, how each path runs it, what it costs and whether it is "not
supported by waferscale yet". The older tables are views of these records:

* :data:`waferscale.lang.builtins.RUNTIME_ONLY`, ``SIMULATED_RUNTIME``, ``NOT_IMPLEMENTED``,
  ``DSD_OP_NAMES`` (the front end's diagnostics);
* :data:`waferscale.sim.builtins_rt.DSD_OPS` (types and SIMD widths of the DSD operations,
  here; their element functions stay in builtins_rt) and the keys of ``RUNTIME_BUILTINS`` and
  ``INTRINSICS`` (checked against the records at import);
* :data:`waferscale.sim.lower.EFFECTFUL` and the engine's DSD-op table
  (:mod:`waferscale.sim.engine_abi` generates ``bindings/pe_abi.hpp`` from the records with
  ``engine="dsd_op"``).

Implementations are registered by name in their layer (``lang`` never imports ``sim``): the
comptime function with ``@builtin`` in builtins.py, the run-time override in
``builtins_rt.RUNTIME_BUILTINS``, a library's run-time function in
``builtins_rt.INTRINSICS``, a lowering case in lower.py, the engine's case in
``bindings/``. Import-time checks (builtins.py, modules.py, builtins_rt.py) make a name
without a record, or a record without its implementation, an error at import, and
simulator_tests/lang/test_registry.py checks that every record either runs on both PE paths
or is rejected at compile time with ``file:line:col: error: … is not supported by waferscale
yet``. docs/simulator.md, "Adding a builtin", says which files a new one touches.

This module is plain data (standard library only): setup.py reads it to generate the engine's
interface header, without numpy or the extension.
"""

from __future__ import annotations

from dataclasses import dataclass

# Where a builtin may be used.
COMPTIME = "comptime"      # comptime code: consts, params, comptime blocks, comptime args
RUNTIME = "runtime"        # run-time code: fn and task bodies executed on a PE
LAYOUT = "layout"          # a layout {} block only (talks to the LayoutBuilder)

# How the Python path runs a builtin in run-time code (``Builtin.runtime``).
RT_SAME = "same"           # the comptime function (builtins.BUILTINS), no run-time effect
RT_OVERRIDE = "override"   # builtins_rt.RUNTIME_BUILTINS[name]
RT_DSD_OP = "dsd_op"       # builtins_rt.run_dsd_op with builtins_rt.DSD_OPS[name]
RT_ERROR = "error"         # a run-time error (builtins_rt: only at compile time)
RT_NONE = "none"           # never reaches run time (compile-time error)

# How the compiled engine runs it (``Builtin.engine``).
ENG_FOLD = "fold"          # folded to a constant by lower.py (the comptime evaluator)
ENG_LOWER = "lower"        # a case of lower.ProgramLowering._e_BuiltinCall (bytecode)
ENG_DSD_OP = "dsd_op"      # the engine's DSD-op table (engine_abi.DSD_OPS; op_apply)
ENG_FALLBACK = "fallback"  # lower.py raises Unsupported: the program runs on the interpreter
ENG_NONE = "none"          # never reaches run time


@dataclass(frozen=True)
class DsdSig:
    """A DSD operation's element types and SIMD widths (elements per cycle on wse2, wse3;
    csl-language.md §4.1, docs/timing-model.md). Types are names ("f32", "u16"...)."""

    dest: str
    srcs: tuple[str, ...]
    simd: tuple[int, int]
    scalar_last: bool = False      # the last operand is a scalar multiplier (fmac*)


@dataclass(frozen=True)
class Builtin:
    """One ``@name`` builtin.

    ``where``: the contexts that accept it (empty: none, it is not supported). ``runtime``
    and ``engine``: how each PE path runs it in run-time code (``RT_*``, ``ENG_*``).
    ``cost``: the TimingModel field(s) it charges at run time ("" : only the statement's).
    ``unsupported``: for a name cslc knows that waferscale does not model, the construct's
    wording: the error is ``"<unsupported> is not supported by waferscale yet"``.
    ``folds``: False for builtins that act at run time (lower.py never folds them).
    ``dsd``: the element types and SIMD widths of a DSD operation.
    """

    name: str
    where: frozenset[str]
    runtime: str
    engine: str
    cost: str = ""
    unsupported: str | None = None
    folds: bool = True
    dsd: DsdSig | None = None
    family: str = ""               # "dsd_op": a DSD operation (supported or not)

    @property
    def supported(self) -> bool:
        return self.unsupported is None

    def unsupported_message(self) -> str:
        assert self.unsupported is not None
        return f"{self.unsupported} is not supported by waferscale yet"


@dataclass(frozen=True)
class LibFn:
    """One member of a standard library (``<lib>``'s ``name``).

    ``kind``: "runtime" (a RuntimeIntrinsic the simulator implements:
    builtins_rt.INTRINSICS[qualname]), "comptime" (a Python function run by the comptime
    evaluator; ``engine`` says whether run-time code may call it), "const" (a value).
    ``engine``: ENG_LOWER (lower.ProgramLowering._intrinsic / MATH_* tables), ENG_FOLD,
    ENG_FALLBACK. ``unsupported``: as for :class:`Builtin`.
    """

    lib: str
    name: str
    kind: str
    engine: str
    cost: str = ""
    unsupported: str | None = None

    @property
    def qualname(self) -> str:
        return f"{self.lib}.{self.name}"

    def unsupported_message(self) -> str:
        assert self.unsupported is not None
        return f"{self.unsupported} is not supported by waferscale yet"


_ANY = frozenset((COMPTIME, RUNTIME))
_CT = frozenset((COMPTIME,))
_RT = frozenset((RUNTIME,))
_LAYOUT = frozenset((LAYOUT,))
_NONE: frozenset[str] = frozenset()

_records: list[Builtin] = []


# The wording of some "not supported" errors beyond the name (the default is "@name").
_WHAT = {"get_xdsr": "DSRs", "get_sr": "DSRs", "load_to_dsr_xdsr": "DSRs",
         "load_to_dsr_xdsr_sr": "DSRs", "set_fifo_read_length": "FIFO lengths",
         "set_fifo_write_length": "FIFO lengths"}


def _add(names: str, where: frozenset[str], runtime: str, engine: str, *,
         unsupported: bool = False, **kw) -> None:
    for n in names.split():
        what = f"@{n}" + (f" ({_WHAT[n]})" if n in _WHAT else "") if unsupported else None
        _records.append(Builtin(n, where, runtime, engine, unsupported=what, **kw))


# -- comptime utilities: any context; at run time the comptime function, folded by lower.py --
_add("comptime_assert comptime_print is_arch is_same_type type_of fp16 concat_structs field "
     "has_field element_type element_count rank dimensions get_int strcat strlen zeros "
     "constants import_module", _ANY, RT_SAME, ENG_FOLD)
# @range: folded to a loop by lower.py (the `for` over a @range), its branch per iteration.
_add("range", _ANY, RT_SAME, ENG_LOWER, cost="branch")
_add("as bitcast", _ANY, RT_SAME, ENG_LOWER)
_add("ptrcast", _ANY, RT_OVERRIDE, ENG_LOWER, folds=False)
_add("is_comptime", _ANY, RT_OVERRIDE, ENG_LOWER, folds=False)
_add("assert", _ANY, RT_OVERRIDE, ENG_LOWER, folds=False)
# Hardware IDs and descriptors (comptime values that run-time code uses as constants).
_add("get_data_task_id get_filter_id get_color get_local_task_id get_control_task_id "
     "get_input_queue get_output_queue get_ut_id get_dsd get_dsr allocate_fifo",
     _ANY, RT_SAME, ENG_FOLD)
# DSD mutators: comptime on a DSD value, at run time engine_abi.DMODS.
_add("increment_dsd_offset set_dsd_length set_dsd_stride set_dsd_base_addr", _ANY, RT_SAME,
     ENG_LOWER, folds=False)
# -- layout block ------------------------------------------------------------------------------
_add("set_rectangle get_rectangle set_tile_code set_color_config export_name", _LAYOUT,
     RT_NONE, ENG_NONE)
# -- a PE program's comptime: record into its ProgramRecord; a run-time error elsewhere ------
_add("bind_local_task bind_data_task bind_control_task initialize_queue export_symbol rpc "
     "set_local_color_config", _CT, RT_ERROR, ENG_FALLBACK)
# Task-table actions: at comptime the initial state, at run time the task table.
_add("activate block unblock", _ANY, RT_OVERRIDE, ENG_LOWER, folds=False)

# -- DSD operations (run time only) -------------------------------------------------------------
_F32, _F16, _U16, _U32, _I16 = "f32", "f16", "u16", "u32", "i16"
_DSD_OPS: dict[str, DsdSig] = {
    "fadds": DsdSig(_F32, (_F32, _F32), (2, 4)),
    "faddh": DsdSig(_F16, (_F16, _F16), (4, 8)),
    "fsubs": DsdSig(_F32, (_F32, _F32), (2, 4)),
    "fsubh": DsdSig(_F16, (_F16, _F16), (4, 8)),
    # Not in the appendix's SIMD table, so one per cycle; the detailed transcription of that
    # table (sdk-runtime-hardware.md §3.3) omits it, csl-language.md §4.1's summary groups it
    # with @fadds: the table wins, like @fmacs (docs/timing-model.md).
    "fmuls": DsdSig(_F32, (_F32, _F32), (1, 1)),
    "fmulh": DsdSig(_F16, (_F16, _F16), (4, 8)),
    "fmaxs": DsdSig(_F32, (_F32, _F32), (1, 4)),
    "fmaxh": DsdSig(_F16, (_F16, _F16), (1, 8)),
    # d = s1 + s2 * v, multiply and add each rounded (unfused; an assumption).
    "fmacs": DsdSig(_F32, (_F32, _F32, _F32), (1, 1), True),
    "fmach": DsdSig(_F16, (_F16, _F16, _F16), (4, 8), True),
    "fmachs": DsdSig(_F32, (_F32, _F16, _F16), (2, 4), True),
    "fmovs": DsdSig(_F32, (_F32,), (2, 4)),
    "fmovh": DsdSig(_F16, (_F16,), (4, 8)),
    "fnegs": DsdSig(_F32, (_F32,), (2, 4)),
    "fnegh": DsdSig(_F16, (_F16,), (4, 8)),
    "fabss": DsdSig(_F32, (_F32,), (2, 4)),
    "fabsh": DsdSig(_F16, (_F16,), (4, 8)),
    "fh2s": DsdSig(_F32, (_F16,), (1, 4)),
    "fs2h": DsdSig(_F16, (_F32,), (1, 4)),
    "mov16": DsdSig(_U16, (_U16,), (4, 8)),
    "mov32": DsdSig(_U32, (_U32,), (2, 4)),
    "add16": DsdSig(_I16, (_I16, _I16), (4, 8)),
    "sub16": DsdSig(_I16, (_I16, _I16), (4, 8)),
}
_DSD_COST = "dsd_op_setup (+ fabric_op_start with a fabric operand) + ceil(n / simd)"
for _n, _sig in _DSD_OPS.items():
    _records.append(Builtin(_n, _RT, RT_DSD_OP, ENG_DSD_OP, cost=_DSD_COST, folds=False,
                            dsd=_sig, family="dsd_op"))
# cslc's other DSD operations: not modelled yet.
_add("faddhs fnorms fnormh fscales fscaleh fh2xp16 fs2xp16 xp162fh xp162fs addc16 and16 or16 "
     "xor16 sll16 slr16 sar16 clz ctz popcnt", _RT, RT_NONE, ENG_NONE, unsupported=True,
     folds=False, family="dsd_op")
_add("map", _RT, RT_OVERRIDE, ENG_LOWER, cost="branch per element (the function's own costs)",
     folds=False)
_add("load_to_dsr", _RT, RT_OVERRIDE, ENG_LOWER, folds=False)
# @queue_flush(oq) (WSE-3): the empty-queue handler runs once oq is empty (docs/fabric-model.md).
_add("queue_flush", _RT, RT_OVERRIDE, ENG_LOWER, folds=False)
# Handlers of the teardown task (local task 29): a teardown command, an empty flushed queue.
_add("set_teardown_handler set_empty_queue_handler", _CT, RT_ERROR, ENG_FALLBACK)
# -- run-time builtins not modelled yet ----------------------------------------------------------
_add("dfilt random16 set_active_prng get_config set_config get_config_unchecked "
     "set_config_unchecked get_symbol_id get_symbol_value get_tensor_ptr "
     "has_exported_tensors", _RT, RT_NONE, ENG_NONE, unsupported=True, folds=False)
_add("load_to_dsr_xdsr load_to_dsr_xdsr_sr get_xdsr get_sr", _RT, RT_NONE, ENG_NONE,
     unsupported=True, folds=False)
_add("set_fifo_read_length set_fifo_write_length", _RT, RT_NONE, ENG_NONE, unsupported=True,
     folds=False)
# -- known to cslc, not implemented anywhere ------------------------------------------------------
# The handler builtins were once accepted and ignored; a program relying on them would run to
# a wrong answer, so they are errors until the simulator models them.
_add("import_comptime_value get_array get_string_from_byte range_start range_stop range_step "
     "set_control_task_table bind_rotating_tasks",
     _NONE, RT_NONE, ENG_NONE, unsupported=True)

BUILTINS: dict[str, Builtin] = {}
for _r in _records:
    assert _r.name not in BUILTINS, f"two records for @{_r.name}"
    BUILTINS[_r.name] = _r

# The DSD operations the compiled engine implements, in the engine's op order
# (bindings/pe_abi.hpp: kOpNames, enum DsdOpCode).
ENGINE_DSD_OPS: tuple[str, ...] = tuple(r.name for r in _records if r.engine == ENG_DSD_OP)


# -- standard-library functions ------------------------------------------------------------------

_lib: list[LibFn] = []


def _lib_add(lib: str, names: str, kind: str, engine: str, **kw) -> None:
    for n in names.split():
        _lib.append(LibFn(lib, n, kind, engine, **kw))


_lib_add("memcpy/memcpy", "unblock_cmd_stream", "runtime", ENG_LOWER, cost="branch")
_lib_add("memcpy/memcpy", "get_streaming_fabout_dsd", "comptime", ENG_FOLD)
_lib_add("memcpy/memcpy", " ".join([f"MEMCPYH2D_{k}" for k in range(1, 5)]
                                   + [f"MEMCPYD2H_{k}" for k in range(1, 5)] + ["LAUNCH"]),
         "const", ENG_FOLD)
_lib_add("memcpy/get_params", "get_params", "comptime", ENG_FOLD)
_lib_add("layout", "get_x_coord get_y_coord", "runtime", ENG_LOWER, cost="branch")
_lib_add("time", "enable_tsc disable_tsc get_timestamp", "runtime", ENG_LOWER, cost="branch")
_lib_add("time", "tsc_size_words", "const", ENG_FOLD)
_lib_add("simprint", "print_string print_u16_decimal print_u32_decimal", "runtime", ENG_LOWER,
         cost="branch")
_lib_add("simprint", "fmt", "runtime", ENG_NONE, unsupported="<simprint>'s fmt")
_lib_add("collectives_2d/params", "get_params", "comptime", ENG_FOLD)
_lib_add("collectives_2d/pe", "pe_id", "const", ENG_FOLD)
_lib_add("collectives_2d/pe", "init", "runtime", ENG_LOWER, cost="branch")
_lib_add("collectives_2d/pe", "broadcast scatter gather reduce_fadds", "runtime", ENG_LOWER,
         cost="branch + TimingModel.collective_cycles")
_lib_add("math", "PI E POSITIVE_INF NEGATIVE_INF NaN", "const", ENG_FOLD)
# <math>'s run-time routines: TimingModel.math_cost(base) beyond the call's branch.
MATH_RUNTIME = ("exp", "log", "sqrt", "invsqrt", "inv", "sin", "cos", "tanh", "sig")
MATH_UNSUPPORTED = ("pow", "fscale")
MATH_COMPTIME = ("abs", "ceil", "floor", "sign", "isNaN", "isInf", "max", "min")
# The comptime functions run-time code may call on a float (the engine's MATH_COMPTIME_FNS).
MATH_COMPTIME_RUNTIME = ("floor", "ceil", "abs")
MATH_SUFFIXES = ("", "_f16", "_f32")
for _base in MATH_RUNTIME:
    _lib_add("math", " ".join(_base + s for s in MATH_SUFFIXES), "runtime", ENG_LOWER,
             cost="branch + TimingModel.math_cost")
for _base in MATH_UNSUPPORTED:
    for _s in MATH_SUFFIXES:
        _lib_add("math", _base + _s, "runtime", ENG_NONE,
                 unsupported=f"<math>'s {_base + _s}")
# The others are comptime functions: called from run-time code (even with comptime
# arguments) the program falls back to the interpreter (lower.py: "a call with the wrong
# number of arguments").
# stdlib_debug.csl's string helper: folded by lower.py when its arguments are comptime-known
# (they always are: trace_string's string is a comptime param); a call's `branch`.
_lib_add("debug", "string_nwords string_tag string_word", "comptime", ENG_FOLD, cost="branch")
for _base in MATH_COMPTIME:
    _lib_add("math", " ".join(_base + s for s in MATH_SUFFIXES), "comptime",
             ENG_LOWER if _base in MATH_COMPTIME_RUNTIME else ENG_FALLBACK,
             cost="branch" if _base in MATH_COMPTIME_RUNTIME else "")

# Router features (docs/fabric-model.md §9): <memcpy/memcpy_switches>, <control>, <tile_config>
# and its submodules (libraries of their own here, "tile_config/<sub>"). The encoders fold when
# their arguments are comptime-known; the <tile_config> calls are the engine's ROUTER op.
_lib_add("memcpy/memcpy_switches", "ctrl switch_cmd_11 teardown_cmd_1", "comptime", ENG_FOLD,
         cost="branch")
_lib_add("control", "MAX_CMDS opcode", "const", ENG_FOLD)
_lib_add("control", "encode_control_task_payload encode_single_payload encode_payload",
         "comptime", ENG_FOLD, cost="branch")
TILE_CONFIG_SUBMODULES = ("color_config", "switch_config", "teardown", "input_queue_config",
                          "output_queue_config", "queue_flush")
SUBMODULE_LIBRARIES = tuple(f"tile_config/{s}" for s in TILE_CONFIG_SUBMODULES)
_lib_add("tile_config", " ".join(TILE_CONFIG_SUBMODULES), "const", ENG_FOLD)
_lib_add("tile_config/color_config", "get_color_config_addr", "comptime", ENG_FOLD,
         cost="branch")
_lib_add("tile_config/color_config", "reset_routes", "runtime", ENG_LOWER, cost="branch")
_lib_add("tile_config/switch_config", "get_color_config_addr", "comptime", ENG_FOLD,
         cost="branch")
_lib_add("tile_config/switch_config", "clear_current_position "
         "set_invalid_for_all_switch_positions set_rx_switch_pos1 set_rx_switch_pos2 "
         "set_rx_switch_pos3 set_tx_switch_pos1 set_tx_switch_pos2 set_tx_switch_pos3",
         "runtime", ENG_LOWER, cost="branch")
_lib_add("tile_config/teardown", "get_task_id", "comptime", ENG_FOLD, cost="branch")
_lib_add("tile_config/teardown", "exit", "runtime", ENG_LOWER, cost="branch")
_lib_add("tile_config/input_queue_config", "encode_input_queue", "runtime", ENG_LOWER,
         cost="branch")
_lib_add("tile_config/output_queue_config", "encode_output_queue", "runtime", ENG_LOWER,
         cost="branch")
_lib_add("tile_config/queue_flush", "exit", "runtime", ENG_LOWER, cost="branch")

# Libraries cslc ships that waferscale does not implement yet: importing one is an error
# ("library '<name>' is not implemented by waferscale yet"), as is any <kernels/...>.
UNSUPPORTED_LIBRARIES = ("malloc", "complex", "directions", "dsd_ops", "timer",
                         "message_passing")
# Libraries written in CSL (lang/stdlib_<name>.csl, instantiated by modules._source_lib):
# their members are CSL functions and globals, which run on both PE paths as any CSL code,
# so they have no records. <debug>'s comptime string helper is a native module given to
# stdlib_debug.csl as its `_native` param: its records are "debug.string_*" below.
SOURCE_LIBRARIES = ("random", "debug")
# Implemented libraries without members of their own.
EMPTY_LIBRARIES = ("empty",)

LIBRARY: dict[str, LibFn] = {}
for _f in _lib:
    assert _f.qualname not in LIBRARY, f"two records for {_f.qualname}"
    LIBRARY[_f.qualname] = _f


def library(lib: str) -> list[LibFn]:
    """The records of one library's members."""
    return [f for f in _lib if f.lib == lib]
