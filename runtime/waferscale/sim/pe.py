"""One processing element: memory, task table, and the run-time interpreter of its program.

The run-time interpreter (:class:`PEInterp`) is the comptime evaluator with run-time
semantics switched on: names of global variables load from and store to the PE's
:class:`~waferscale.sim.memory.PEMemory`, pointers are word addresses, integer arithmetic
wraps, and the run-time builtins (DSD operations, ``@activate``/``@block``/``@unblock``...) act
on the PE. Comptime-known parts of run-time code (params, consts, DSD descriptors) evaluate
exactly as at compile time, so both stages share one definition of CSL's semantics.

Execution contexts (the main thread running a task, and each async DSD operation running as a
microthread) are greenlets. When one must wait for the fabric (an empty input queue, a full
output queue) or for simulated time to catch up, it switches back to the simulator's loop with
a wait condition; the loop resumes it once the condition holds.

Task table (csl-language.md §6): every task ID has an *active* and a *blocked* flag; a task
runs when it is bound, active and not blocked. A data task is active while its input queue
holds a wavelet; running it pops the wavelet as its argument. A local task is activated by
``@activate`` or an async op's ``.activate`` and deactivated when it starts running.
Picking rule (documented assumption, the hardware's is undocumented): the lowest runnable task
ID first, or a seeded random runnable ID when ``SimOptions.random_task_order`` is set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import greenlet
import numpy as np

from ..lang import ast as A
from ..lang import types as T
from .engine_abi import message
from ..lang.comptime import Cell, Interp, RuntimeIntrinsic, RuntimeRef, Scope, local_key
from ..lang.builtins import TEARDOWN_TASK_ID
from ..lang.values import ArrayData, DsdVal, FnVal, GlobalVar, PtrVal, Val, numpy_dtype
from ..host.device import DeviceError
from .memory import MemoryError_, PEMemory, words_of

log = logging.getLogger(__name__)


class SimError(DeviceError):
    """A run-time error of the simulated program, with cycle, PE and task context
    (``message``: the error alone, without them, when PE.error made it)."""

    message: str = ""


@dataclass
class Place:
    """A memory location of a scalar: word address + type."""
    addr: int
    type: T.Type


@dataclass
class Context:
    """An execution context: the main thread or one microthread."""
    name: str
    glet: greenlet.greenlet
    wait: Callable[[], bool] | None = None     # resume when this returns True
    wait_desc: str = ""
    ready_at: int = 0                          # simulated cycle from which it may run
    done: bool = False
    # Runs only after this context is done, and no earlier than its end time: an async op
    # queued behind the previous op of its microthread, or an RPC behind the main thread.
    after: "Context | None" = None
    async_op: bool = False                     # an async DSD op or @map (a microthread)
    # Its nesting of calls while suspended: the interpreter's call-depth bound counts one
    # context's calls, not those of every context suspended on every PE (simulator._resume
    # swaps it in and out of the shared evaluation context).
    depth: int = 0


class PEInterp(Interp):
    """Run-time interpreter bound to one PE (see module docstring)."""

    _all_builtins: dict | None = None          # comptime + run-time builtins, built once
    memoize_calls = False                       # run-time calls act on the PE

    def __init__(self, ctx, pe: "PE") -> None:
        super().__init__(ctx)
        self.pe = pe
        self._raw_ident: A.Expr | None = None
        self._addr_of = False                  # evaluating the operand of '&'
        if PEInterp._all_builtins is None:
            from .builtins_rt import RUNTIME_BUILTINS
            PEInterp._all_builtins = {**self.builtins, **RUNTIME_BUILTINS}
        self.builtins = PEInterp._all_builtins

    def __setstate__(self, d: dict[str, Any]) -> None:
        super().__setstate__(d)
        from .builtins_rt import RUNTIME_BUILTINS
        self.builtins = {**self.builtins, **RUNTIME_BUILTINS}

    # Run-time code has no branch quota: an endless task is a real hang, caught by the
    # simulator's cycle limit instead.
    def tick(self, node: A.Node) -> None:
        self.pe.cost(self.pe.sim.timing.branch)

    def _int_result(self, t: T.Type, x: int, node: A.Node) -> Val:
        if isinstance(t, T.IntT):
            return Val(t, t.wrap(x))          # run-time integer arithmetic wraps (assumption)
        return Val(t, x)

    # -- names ------------------------------------------------------------------------------

    def lookup(self, name: str, scope: Scope, node: A.Node) -> Val:
        v = super().lookup(name, scope, node)
        return self.materialize(v, node)

    def materialize(self, v: Val, node: A.Node | None) -> Val:
        p = v.v
        if isinstance(p, RuntimeRef):
            return self.pe.load_global(p.var, node)
        if isinstance(p, PtrVal):
            return Val(v.type, self.pe.address_of(p.target) + p.offset * words_of(
                v.type.elem if isinstance(v.type, T.PointerT) and not isinstance(
                    v.type.elem, T.ArrayT) else _elem_of(p.target.type)))
        return v

    def _e_TensorAccess(self, e: A.TensorAccess, s: Scope) -> Val:
        # The base names a global array variable, not its contents: look it up without
        # loading it (as at compile time), e.g. for a DSD built inside a task.
        self._raw_ident = e.access.target if isinstance(e.access, A.Index) else None
        try:
            return super()._e_TensorAccess(e, s)
        finally:
            self._raw_ident = None

    def _e_Ident(self, e: A.Ident, s: Scope) -> Val:
        if e is self._raw_ident:
            return Interp.lookup(self, e.name, s, e)
        return super()._e_Ident(e, s)

    def global_ref(self, e: A.Expr, scope: Scope) -> GlobalVar | None:
        """The variable in memory an identifier names: a global, or a local given storage
        because its address is taken (_s_VarDecl); None for other locals and non-variables."""
        if not isinstance(e, A.Ident):
            return None
        cell = scope.find(e.name)
        if cell is not None:
            v = cell.val
            return v.v.var if v is not None and isinstance(v.v, RuntimeRef) else None
        mod = scope.module
        if e.name not in mod.globals:
            return None
        v = self.global_value(mod, e.name, e.span)
        # Under '&', a const array with storage (Interp.const_storage) is in memory too
        # (read-only); reads of it take the comptime value, as the compiled engine folds them.
        if isinstance(v.v, RuntimeRef):
            return v.v.var
        return mod.globals[e.name].symbol if self._addr_of else None

    def place(self, e: A.Expr, scope: Scope) -> Place | None:
        """The memory place of an lvalue expression, or None if it is not in memory."""
        if isinstance(e, A.Ident):
            gv = self.global_ref(e, scope)
            if gv is None:
                return None
            return Place(self.pe.address_of(gv), gv.type)
        if isinstance(e, A.Index):
            base = self.place(e.target, scope)
            idx = [self.to_int(self.eval(i, scope), i, "index") for i in e.indices]
            if base is not None and isinstance(base.type, T.ArrayT):
                at = base.type
                if len(idx) != len(at.dims):
                    raise self.err(f"indexing '{at}' needs {len(at.dims)} indices", e)
                for d, (i, n) in enumerate(zip(idx, at.dims)):
                    if not 0 <= i < n:
                        sym = self.pe.symbol_at(base.addr)
                        what = f" of '{sym.var.qualname}'" if sym is not None else ""
                        raise self.err(f"index {i} out of bounds for dimension {d}{what} of "
                                       f"size {n}", e)
                flat = int(np.ravel_multi_index(tuple(idx), at.dims))
                return Place(base.addr + flat * words_of(at.elem), at.elem)
            ptr = self.eval(e.target, scope)
            if isinstance(ptr.type, T.PointerT) and ptr.type.many:
                if len(idx) != 1:
                    raise self.err("a [*]T pointer takes one index", e)
                addr = ptr.v + idx[0] * words_of(ptr.type.elem)
                # A pointer may only reach inside the variable it points into.
                self.pe.check_access([addr], ptr.type.elem, e, "pointer access", ptr.v)
                return Place(addr, ptr.type.elem)
            if isinstance(ptr.type, T.PointerT) and isinstance(ptr.type.elem, T.ArrayT):
                at = ptr.type.elem
                flat = int(np.ravel_multi_index(tuple(idx), at.dims))
                return Place(ptr.v + flat * words_of(at.elem), at.elem)
            return None
        if isinstance(e, A.Deref):
            ptr = self.eval(e.target, scope)
            if not isinstance(ptr.type, T.PointerT) or ptr.type.many:
                raise self.err(f"cannot dereference a value of type '{ptr.type}'", e)
            return Place(ptr.v, ptr.type.elem)
        return None

    # -- expressions --------------------------------------------------------------------------

    def _e_Index(self, e: A.Index, s: Scope) -> Val:
        pl = self.place(e, s)
        if pl is not None:
            return self.pe.load(pl, e)
        return super()._e_Index(e, s)

    def _e_Deref(self, e: A.Deref, s: Scope) -> Val:
        pl = self.place(e, s)
        assert pl is not None
        return self.pe.load(pl, e)

    def address_of(self, target: A.Expr, s: Scope) -> Val:
        self._addr_of = True
        try:
            pl = self.place(target, s)
        finally:
            self._addr_of = False
        if pl is None:
            raise self.err("can only take the address of global variables (and their "
                           "elements) in run-time code", target)
        return Val(T.PointerT(pl.type), pl.addr)

    def check_comptime(self, v: Val, node: A.Node) -> Val:
        return v                               # everything is known at run time

    def call(self, fn: FnVal, args: list[Val], node: A.Node, *, as_task: bool = False) -> Val:
        if isinstance(fn.intrinsic, RuntimeIntrinsic):
            self.pe.cost(self.pe.sim.timing.branch)
            return self.pe.intrinsic(fn.intrinsic.qualname, args, node, fn.owner)
        return super().call(fn, args, node, as_task=as_task)

    def field_of(self, v: Val, name: str, e: A.Node) -> Val:
        return self.materialize(super().field_of(v, name, e), e)

    # -- statements ---------------------------------------------------------------------------

    def exec_stmt(self, st: A.Stmt, s: Scope) -> None:
        self.pe.cost(self.pe.sim.timing.statement)
        super().exec_stmt(st, s)

    def _s_VarDecl(self, d: A.VarDecl, s: Scope) -> None:
        """A local whose address is taken lives in its memory slot (ProgramRecord.
        local_storage): the initializer is stored there and the name refers to it."""
        gv = self.pe.program.record.local_storage.get(local_key(d)) \
            if d.kind != "param" else None
        if gv is None:
            return super()._s_VarDecl(d, s)
        if d.name in s.vars:
            raise self.err(f"redefinition of '{d.name}'", d)
        if d.init is not None:
            val = self.eval(d.init, s)
            if val.type != T.UNDEFINED_T:
                val = self.coerce(val, gv.type, d.init)
                addr = self.pe.address_of(gv)
                if isinstance(gv.type, T.ArrayT):
                    PE._write_init(self.pe, addr, gv.type, val)
                else:
                    self.pe.store(Place(addr, gv.type), val, d.init)
        s.vars[d.name] = Cell(d.name, gv.type, Val(gv.type, RuntimeRef(gv)), d.kind == "var")

    def _s_Assign(self, st: A.Assign, s: Scope) -> None:
        pl = self.place(st.target, s)
        if pl is None:
            return super()._s_Assign(st, s)
        value = self.eval(st.value, s)
        if st.op != "=":
            value = self.binop(st.op[:-1], self.pe.load(pl, st), value, st)
        if T.is_dsd(pl.type):
            self.pe.store_dsd(pl.addr, self.coerce(value, pl.type, st))
            return
        self.pe.store(pl, self.coerce(value, pl.type, st.value), st)


def _elem_of(t: T.Type) -> T.Type:
    return t.elem if isinstance(t, T.ArrayT) else t


def runaway_message(max_cycles: int) -> str:
    return message("runaway", max_cycles=max_cycles)


class TaskRng:
    """The random task order's generator: splitmix64, so the compiled engine draws the same
    numbers (pe_engine.hpp: TaskRng)."""

    __slots__ = ("state",)

    MASK = (1 << 64) - 1

    def __init__(self, seed: int) -> None:
        self.state = seed & self.MASK

    def below(self, n: int) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & self.MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & self.MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & self.MASK
        return (z ^ (z >> 31)) % n


@dataclass(slots=True)
class PEStats:
    """Per-PE counters (docs/timing-model.md). ``idle`` is derived: simulated cycles at whose
    start the PE had no task or async op in flight (``cycles - live``)."""
    busy: int = 0          # cycles charged by the cost table (statements, DSD elements...)
    stall: int = 0         # cycles a context could not continue because the fabric was not ready
    tasks_run: int = 0
    live: int = 0          # cycles at whose start a task or async op was in flight

    def idle(self, cycles: int) -> int:
        """Idle cycles out of ``cycles``. A run stopped by an error inside a cycle has counted
        that cycle live for the PEs visited in it before the error (on both PE paths), one
        more than the cycle counter, which has not passed it: 0 then, not -1."""
        return max(0, cycles - self.live)


class ProgramImage:
    """What every PE of one program starts with, computed once per program: the word
    addresses of its globals, its initial memory contents (as ranges of words over the
    memory's fill) and DSD variables, its task table."""

    def __init__(self, program: Any, sim: Any) -> None:
        arch, fill_nan = sim.arch, sim.options.uninitialized_nan
        self.addresses: dict[int, int] = {id(p.var): p.address // 2
                                          for p in program.memory.placements}
        # _write_init's view of a PE: the program's first (errors name it, as they did when
        # every PE wrote its own initial contents).
        scratch = PE.__new__(PE)
        scratch.sim = sim
        scratch.x, scratch.y = program.tiles[0] if program.tiles else (0, 0)
        scratch.current_task = "-"
        scratch.mem = PEMemory(fill_nan=fill_nan)
        scratch.addresses = self.addresses
        scratch.dsd_vars = {}
        self.writes: list[tuple[int, np.ndarray]] = []   # (word address, words)
        for p in program.memory.placements:
            gv = p.var
            if gv.init is None:
                continue
            a = p.address // 2
            PE._write_init(scratch, a, gv.type, gv.init)
            n = max(1, p.size // 2)
            self.writes.append((a, scratch.mem.words[a:a + n].copy()))
        self.dsd_vars: dict[int, Val] = scratch.dsd_vars
        rec = program.record
        self.tasks: dict[int, tuple[str, FnVal]] = {}
        for (kind, n), fn in rec.task_bindings.items():
            self.tasks[n if kind != "control" else 64 + n] = (kind, fn)
        # The teardown task runs the handler (one per program, lang/builtins.py).
        self.teardown_color = -1
        for color, fn in rec.teardown_handlers.items():
            self.tasks[TEARDOWN_TASK_ID] = ("teardown", fn)
            self.teardown_color = color
        # WSE-2's data queues depend on the PE's queue bindings (Simulator sets them).
        self.data_queue: dict[int, int] = {
            tid: tid for tid, (kind, _) in self.tasks.items() if kind == "data"
        } if arch == "wse3" else {}
        self.active = set(rec.initially_active)
        self.blocked = {PE._block_key(kind, n) for kind, n in rec.initially_blocked}
        self.has_control = any(k == "control" for k, _ in self.tasks.values())


class PE:
    """State of one PE while the simulator runs.

    ``words`` (a row of the simulator's memory block) and ``image`` (the program's
    :class:`ProgramImage`, whose initial contents the simulator has already written into
    ``words``) let the simulator build many PEs cheaply; without them the PE makes its own.
    The run-time interpreter (``interp``) is made on first use (the compiled engine never
    needs one per PE).

    Slots, not a ``__dict__``: a whole WSE-3 has about 900,000 PEs, and an instance dict of
    this many attributes would not share its keys (CPython shares at most 30), costing
    about 1.4 KB more per PE."""

    __slots__ = ("sim", "x", "y", "program", "record", "mem", "addresses", "dsd_vars",
                 "_interp", "active", "blocked", "tasks", "teardown_color", "has_control",
                 "oq_colors", "flush_armed", "data_queue", "main", "main_free_at",
                 "microthreads", "time", "current_task", "cmd_blocked", "timed_activations",
                 "ut_last", "print_buffer", "unblock_time", "stats", "rng", "fifos", "dsrs")

    def __init__(self, sim: Any, x: int, y: int, program: Any, *,
                 words: np.ndarray | None = None, image: ProgramImage | None = None) -> None:
        self.sim = sim
        self.x, self.y = x, y
        self.program = program                    # layout.PEProgram
        self.record = program.record
        fill_nan = sim.options.uninitialized_nan
        if image is None:
            image = ProgramImage(program, sim)
            words = None                          # (the image is written below)
        self.mem = PEMemory(fill_nan=fill_nan, words=words)
        if words is None:
            for a, w in image.writes:
                self.mem.words[a:a + len(w)] = w
        self.addresses = image.addresses
        self.dsd_vars: dict[int, Val] = dict(image.dsd_vars)   # DSD-typed globals, by address
        self._interp: PEInterp | None = None
        self.active: set[int] = set(image.active)
        self.blocked: set[int] = set(image.blocked)
        self.tasks: dict[int, tuple[str, FnVal]] = image.tasks
        self.teardown_color = image.teardown_color   # the color of the teardown handler
        self.has_control = image.has_control
        self.oq_colors: dict[int, int] = {}       # output_queue_config.encode_output_queue
        self.flush_armed: set[int] = set()        # @queue_flush'd output queues
        self.data_queue: dict[int, int] = dict(image.data_queue)   # task id -> input queue
        self.main: Context | None = None
        self.main_free_at = 0                     # cycle the last task's clock reached
        self.microthreads: list[Context] = []
        self.time = 0                             # local clock while a context runs
        self.current_task: str = "-"
        self.cmd_blocked = False                  # waiting for unblock_cmd_stream
        # (cycle, task id, unblock?): task-table updates due at a later cycle (an async op
        # that finished ahead of the global clock, a collective's callback).
        self.timed_activations: list[tuple[int, int, bool]] = []
        self.ut_last: dict[int, Context] = {}    # microthread ID -> its latest async op
        self.print_buffer = ""                    # <simprint> text before its newline
        self.unblock_time = 0                     # local cycle of the last unblock
        self.stats = PEStats()
        self.rng = TaskRng(sim.options.seed * 1_000_003 + y * 10007 + x)
        # dsd.fifo_state's FIFO heads and counts and dsd.dsr_table's DSRs, made on first use.
        self.fifos: dict[int, list[int]] | None = None
        self.dsrs: dict | None = None
        # DSRs loaded in a top-level comptime block hold their DSDs from the start.
        if self.record.dsr_preloads:
            from .builtins_rt import load_options
            from .dsd import load_dsr
            for r, dsd, opts, node in self.record.dsr_preloads:
                save, settings = load_options(self, opts, node)
                load_dsr(self, r, dsd, save, node, settings)

    @property
    def interp(self) -> "PEInterp":
        """The run-time interpreter bound to this PE (made on first use)."""
        if self._interp is None:
            self._interp = PEInterp(self.sim.compilation, self)
        return self._interp

    # -- set-up -----------------------------------------------------------------------------

    def _write_init(self, addr: int, t: T.Type, v: Val) -> None:
        if isinstance(t, T.ArrayT):
            data = v.v.data if isinstance(v.v, ArrayData) else None
            if data is None:
                return
            flat = data.ravel()
            ew = words_of(t.elem)
            for i, x in enumerate(flat):
                self.mem.store(addr + i * ew, t.elem, x.v if isinstance(x, Val) else x.item())
            return
        if T.is_dsd(t) or isinstance(v.v, DsdVal):
            self.dsd_vars[addr] = v
            return
        if isinstance(t, T.PointerT):
            if isinstance(v.v, PtrVal):
                self.mem.store(addr, T.U16, self.address_of(v.v.target)
                               + v.v.offset * words_of(_elem_of(v.v.target.type)))
            return
        if isinstance(t, (T.IntT, T.FloatT)) or t == T.BOOL:
            self.mem.store(addr, t, v.v)
        elif T.is_hw_id(t) and isinstance(v.v, int):
            self.mem.store(addr, T.U16, v.v)
        elif isinstance(t, T.EnumT) and isinstance(v.v, str):
            self.mem.store(addr, t.tag, t.members[v.v])

    @staticmethod
    def _block_key(kind: str, n: int) -> int:
        # Blocking a queue/color blocks the data task bound to it (same number on each arch).
        return 64 + n if kind == "control_task_id" else n

    # -- memory access ------------------------------------------------------------------------

    def address_of(self, gv: GlobalVar) -> int:
        a = self.addresses.get(id(gv))
        if a is None:
            raise self.error(f"'{gv.qualname}' has no storage on this PE")
        return a

    def load_global(self, gv: GlobalVar, node: A.Node | None) -> Val:
        addr = self.address_of(gv)
        t = gv.type
        if T.is_dsd(t) or addr in self.dsd_vars:
            v = self.dsd_vars.get(addr)
            if v is None:
                raise self.error(f"DSD variable '{gv.name}' is read before it is set", node)
            return v
        if isinstance(t, T.ArrayT):
            ew = words_of(t.elem)
            vals = [self.mem.load(addr + i * ew, t.elem) for i in range(t.count)]
            return Val(t, ArrayData(np.array(vals, dtype=numpy_dtype(t.elem)).reshape(t.dims)))
        return self.load(Place(addr, t), node)

    def load(self, pl: Place, node: A.Node | None) -> Val:
        t = pl.type
        if T.is_dsd(t):
            return self.dsd_vars[pl.addr]
        try:
            if isinstance(t, T.PointerT) or T.is_hw_id(t):
                return Val(t, self.mem.load(pl.addr, T.U16))
            if isinstance(t, T.EnumT):       # stored as its tag (an integer of t.tag)
                tag = self.mem.load(pl.addr, t.tag)
                for name, n in t.members.items():
                    if n == tag:
                        return Val(t, name)
                raise self.error(f"{tag} is not a value of enum '{t}'", node)
            return Val(t, self.mem.load(pl.addr, t))
        except MemoryError_ as e:
            raise self.error(str(e), node) from None

    def store(self, pl: Place, v: Val, node: A.Node | None) -> None:
        t = pl.type
        try:
            if isinstance(t, T.PointerT) or T.is_hw_id(t):
                self.mem.store(pl.addr, T.U16, v.v)
            elif isinstance(t, T.EnumT):
                self.mem.store(pl.addr, t.tag, t.members[v.v])
            else:
                self.mem.store(pl.addr, t, v.v)
        except MemoryError_ as e:
            raise self.error(str(e), node) from None

    def symbol_at(self, addr: int):
        """The placement (symbol) that holds word ``addr``, or None."""
        for pl in self.program.memory.placements:
            a = pl.address // 2
            if a <= addr < a + max(1, pl.size // 2):
                return pl
        return None

    def check_access(self, addrs: list[int], elem: T.Type, node: A.Node | None,
                     what: str, base: int) -> None:
        """Raise unless every element address lies inside the variable holding ``base``
        (the DSD's base address)."""
        if not addrs:
            return
        lo, hi = min(addrs), max(addrs)
        pl = self.symbol_at(base)
        if pl is None:
            raise self.error(f"{what} has base address {base}, outside every variable", node)
        a, n = pl.address // 2, max(1, pl.size // 2)
        if lo < a or hi + words_of(elem) > a + n:
            ew = words_of(elem)
            bad = next(x for x in addrs if x < a or x + ew > a + n)   # first offender
            raise self.error(f"{what} reaches element {(bad - a) // ew} of '{pl.var.qualname}'"
                             f", which has {n // ew} element(s): out of bounds", node)

    def store_dsd(self, addr: int, v: Val) -> None:
        self.dsd_vars[addr] = v

    # -- time and errors ----------------------------------------------------------------------

    def cost(self, cycles: int) -> None:
        ctx = self.sim.running
        if ctx is not None and ctx.async_op:
            self.steal(self.time, cycles)
        self.time += cycles
        self.stats.busy += cycles
        if self.time - self.sim.cycle > self.sim.options.max_cycles:
            # A context that never waits for the fabric never yields to the cycle loop, so
            # the loop's own limit cannot stop it: an endless loop in a task ends here.
            raise self.error(runaway_message(self.sim.options.max_cycles))

    def steal(self, start: int, cycles: int) -> None:
        """The main thread and the microthreads share one datapath (docs/timing-model.md):
        an async op computing ``cycles`` from ``start`` on takes them from the main thread
        when the main thread's clock has passed ``start`` (it computed through that time
        while running ahead), delaying the main thread by as much. Microthreads are not
        delayed: they go first."""
        m = self.main
        if m is not None:
            if (m.done or m.wait is None) and m.ready_at > start:
                m.ready_at += cycles
        elif self.main_free_at > start:
            self.main_free_at += cycles

    def error(self, msg: str, node: A.Node | None = None) -> SimError:
        where = f" at {node.span}" if node is not None and node.span.file is not None else ""
        err = SimError(f"cycle {self.sim.cycle}, PE({self.x},{self.y}), task "
                       f"{self.current_task}: {msg}{where}")
        err.message = msg                 # without the cycle, PE and location (lower.py)
        return err

    # -- tasks --------------------------------------------------------------------------------

    def runnable_tasks(self) -> list[int]:
        out = []
        fab = self.sim.fabric
        for tid, (kind, fn) in self.tasks.items():
            if tid in self.blocked:
                continue
            if kind == "data":
                q = self.data_queue[tid]
                if fab.iq_count(self.x, self.y, q) > 0 and not fab.ce_peek(self.x, self.y, q)[1]:
                    out.append(tid)
            elif kind == "control":
                if self.control_queue(tid) is not None:
                    out.append(tid)
            elif tid in self.active:
                out.append(tid)
        return out

    def control_queue(self, tid: int) -> int | None:
        """The input queue whose head is a control wavelet for control task ``tid`` (64 + its
        control task ID; docs/fabric-model.md §9): bits 16-21 of the payload name the task. A
        queue's wavelets reach the CE while its channel is not blocked (the queue's ID on
        WSE-3, its color on WSE-2). A control wavelet naming no bound task is an error."""
        fab = self.sim.fabric
        for q in self.sim.ctrl_queues:
            head = fab.ce_peek(self.x, self.y, q)
            if head is None or not head[1]:
                continue
            color = fab.input_queue_color(self.x, self.y, q)
            if (q if self.sim.arch == "wse3" else color) in self.blocked:
                continue
            n = (head[0] >> 16) & 0x3F
            if 64 + n not in self.tasks or self.tasks[64 + n][0] != "control":
                raise self.error(f"a control wavelet for control task ID {n} heads input queue "
                                 f"{q}, but no task is bound to control task ID {n} (what the "
                                 "CE does then is not documented)")
            if 64 + n == tid:
                return q
        return None

    def pick_task(self) -> int | None:
        r = self.runnable_tasks()
        if not r:
            return None
        if self.sim.options.random_task_order:
            r = sorted(r)
            return r[self.rng.below(len(r))]
        return min(r)

    def start_task(self, tid: int) -> None:
        kind, fn = self.tasks[tid]
        args: list[Val] = []
        if kind == "data":
            payload, _ctrl = self.sim.fabric.ce_recv(self.x, self.y, self.data_queue[tid])
            args = self.wavelet_args(fn, payload)
        elif kind == "control":
            q = self.control_queue(tid)
            assert q is not None
            payload, _ctrl = self.sim.fabric.ce_recv(self.x, self.y, q)
            # A control task may take the wavelet's low 16 bits (<control>: `data`).
            args = self.wavelet_args(fn, payload & 0xFFFF) if fn.decl.params else []
        else:
            self.active.discard(tid)
        self.stats.tasks_run += 1
        ctx = self.start_context(fn.name, lambda: self.interp.call(fn, args, fn.decl,
                                                                   as_task=True), main=True)
        ctx.ready_at = self.sim.cycle + self.sim.timing.task_start
        self.stats.busy += self.sim.timing.task_start

    def wavelet_args(self, fn: FnVal, payload: int) -> list[Val]:
        """Split a 32-bit wavelet into the data task's parameters (first = low half)."""
        scope = Scope(fn.owner.scope, fn.owner)
        types = [self.interp.eval_type(p.type, scope) for p in fn.decl.params]
        from .memory import decode
        if len(types) == 1:
            return [Val(types[0], decode(payload, types[0]))]
        if len(types) == 2:
            return [Val(types[0], decode(payload & 0xFFFF, types[0])),
                    Val(types[1], decode(payload >> 16, types[1]))]
        raise self.error(f"data task '{fn.name}' must take one or two parameters")

    def start_context(self, name: str, body: Callable[[], Any], main: bool,
                      ready_at: int | None = None) -> Context:
        ctx_holder: list[Context] = []

        def run() -> None:
            # (The simulator sets current_task to the context's name at every resume.)
            start = self.time
            try:
                body()
            finally:
                ctx_holder[0].done = True
                if self.sim.trace is not None:
                    self.sim.trace.span(self, name, "task" if main else "async", start,
                                        self.time)
        ctx = Context(name, greenlet.greenlet(run, parent=self.sim.loop_greenlet),
                      ready_at=self.sim.cycle if ready_at is None else ready_at)
        ctx_holder.append(ctx)
        if main:
            self.main = ctx
        else:
            self.microthreads.append(ctx)
        return ctx

    def start_async(self, name: str, body: Callable[[], Any], ut: int | None) -> Context:
        """Start an async DSD operation as a microthread. It starts at the issuing context's
        own time, never earlier (causality), and behind any unfinished operation of the same
        microthread ``ut`` ("two operations cannot concurrently use the same microthread",
        SDK docs, tutorial topic 12); ``None``: no fabric operand names one."""
        ctx = self.start_context(name, body, main=False, ready_at=self.time)
        ctx.async_op = True
        if ut is not None:
            prev = self.ut_last.get(ut)
            if prev is not None and not prev.done:
                self.queue_after(ctx, prev, message("wait_ut", ut=ut))
            self.ut_last[ut] = ctx
        return ctx

    @staticmethod
    def queue_after(ctx: Context, prev: Context, desc: str) -> None:
        """Let ``ctx`` run only once ``prev`` is done, from ``prev``'s end time on."""
        ctx.after = prev
        ctx.wait, ctx.wait_desc = (lambda: prev.done), desc

    def signal(self, tid: int, unblock: bool, timed: bool) -> None:
        """Activate (or unblock) task ``tid``. ``timed`` (an async op's completion): at this
        context's time, i.e. at once when the global clock has reached it, else once it does
        (an async op that ran ahead must not start a task before it finished). Otherwise at
        once: a synchronous op's task only runs after the task that issued it anyway."""
        if timed and self.time > self.sim.cycle:
            self.timed_activations.append((self.time, tid, unblock))
        elif unblock:
            self.blocked.discard(tid)
        else:
            self.active.add(tid)

    def wait(self, cond: Callable[[], bool], desc: str) -> None:
        """Suspend the running context until ``cond()`` holds (checked once per cycle)."""
        ctx = self.sim.running
        ctx.wait, ctx.wait_desc = cond, desc
        while not cond():
            self.sim.loop_greenlet.switch()     # the loop resumes us once cond() holds
        ctx.wait, ctx.wait_desc = None, ""

    def sync_time(self) -> None:
        """Before touching the fabric, let the global clock catch up with this context."""
        if self.time > self.sim.cycle:
            ctx = self.sim.running
            ctx.ready_at = self.time
            self.sim.loop_greenlet.switch()

    # -- runtime intrinsics of the standard libraries -----------------------------------------

    def intrinsic(self, name: str, args: list[Val], node: A.Node, owner: Any = None) -> Val:
        from .builtins_rt import INTRINSICS
        f = INTRINSICS.get(name)
        if f is None:
            raise self.error(f"'{name}' is not implemented by the simulator yet", node)
        return f(self, args, node, owner)

    def activate_at(self, cycle: int, tid: int) -> None:
        """Activate local task ``tid`` once the global clock reaches ``cycle``."""
        self.timed_activations.append((cycle, tid, False))

    def describe_wait(self) -> str:
        parts = []
        if self.main is not None and not self.main.done:
            parts.append(message("task_waits", name=self.main.name,
                                 what=self.main.wait_desc or "time"))
        for m in self.microthreads:
            if not m.done:
                parts.append(message("async_waits", name=m.name, what=m.wait_desc or "time"))
        if self.cmd_blocked:
            parts.append(message("cmd_blocked"))
        blocked_active = sorted(t for t in self.active if t in self.blocked)
        if blocked_active:
            parts.append(message("blocked_active", ids=", ".join(map(str, blocked_active))))
        return "; ".join(parts)
