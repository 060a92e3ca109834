"""The compiled engine behind :class:`~waferscale.sim.simulator.Simulator`.

The Python interpreter (sim/pe.py, sim/dsd.py) defines the PE model; the compiled engine
(``bindings/pe_engine.hpp``) runs the same model on bytecode produced by :mod:`.lower`, with
the cycle loop in C++ on the C++ fabric core. Both give the same memory contents, cycle counts
and per-PE counters (simulator_tests/sim/test_engine.py runs both and compares).

Choice of path (``SimOptions.engine``):

``"auto"``      the engine when it can run the program, else the Python path (a warning
                gives the reason: a construct :mod:`.lower` does not compile, a library it does
                not implement, or the Python fabric backend)
``"compiled"``  the engine, or a :class:`~waferscale.sim.pe.SimError` saying why not
``"python"``    the Python path

Once chosen, one path runs the whole session (the engine owns the task tables, contexts and
DSD variables; PE memory is shared, so host copies and ``read_symbol`` work on either).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from ..host.device import DeadlockError
from ..lang import types as T
from ..lang.errors import CslSemanticError
from . import engine_abi as ABI
from .builtins_rt import DSD_OPS
from .lower import LoweredProgram, ProgramLowering, Unsupported, tcode
from .pe import SimError

if TYPE_CHECKING:
    from .simulator import Simulator

log = logging.getLogger(__name__)

# Engine.Status (engine_abi.py, the interface the extension is built from)
_OK, _DEADLOCK, _MAX_CYCLES, _ERROR, _FABRIC = (ABI.STATUS[k] for k in (
    "ok", "deadlock", "max_cycles", "error", "fabric_error"))


def _lowering_tag(sim: "Simulator") -> str:
    """What the bytecode depends on besides the program: the cost table, the engine's tables
    and the memory fill (with the layout's entry, host/cache.py)."""
    import dataclasses
    import hashlib
    import json

    from .. import _fabric
    data = [dataclasses.asdict(sim.timing), ABI.fingerprint(), list(_fabric.ENGINE_DSD_OPS),
            _fabric.ENGINE_DSD_WORDS, _fabric.ENGINE_CALL_WORDS, sim.arch,
            sim.options.uninitialized_nan]
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()
                          ).hexdigest()[:16]


def why_not(sim: "Simulator") -> str | None:
    """Why the compiled engine cannot run ``sim``'s program (None: it can)."""
    if sim.fabric.backend != "cpp":
        return "the fabric runs on its Python backend"
    from .. import _fabric
    built = getattr(_fabric, "ENGINE_ABI", None)
    if built != ABI.fingerprint():
        return ("an extension built from another engine interface (engine_abi.py changed "
                "since `python setup.py build_ext --inplace`; rebuild it)")
    return None


def lowering_twins(layout: Any) -> dict[int, int]:
    """Programs that lower to the same bytecode as an earlier one: program index -> the
    earlier program's index. Lowering reads a program's record, memory map and initial
    image, so programs that share one elaboration (lang.layout: memcpy twins, equal but for
    their memcpy params' ``x``, share their instance, record and memory map) lower alike:
    e.g. WaferLLM's MeshGEMV at P = 144 has 576 programs (one per column and code) and 4
    codes. (Simulator._make_pes shares their ProgramImage by the same key.)"""
    first: dict[tuple[int, int], int] = {}
    twins: dict[int, int] = {}
    for prog in layout.programs:
        j = first.setdefault((id(prog.record), id(prog.memory)), prog.index)
        if j != prog.index:
            twins[prog.index] = j
    return twins


class CompiledEngine:
    """Runs a :class:`Simulator`'s host commands on the C++ engine."""

    def __init__(self, sim: "Simulator", lowered: dict[int, LoweredProgram]) -> None:
        from .. import _fabric
        self.sim = sim
        t = sim.timing
        o = sim.options
        # The cost table stays in Python: each op's types and SIMD widths from DSD_OPS.
        ops = [ABI.OpTypes(dest=tcode(DSD_OPS[n].dest), srcs=[tcode(t) for t in DSD_OPS[n].srcs],
                           simd_wse2=DSD_OPS[n].simd[0], simd_wse3=DSD_OPS[n].simd[1])
               for n in _fabric.ENGINE_DSD_OPS]
        self.core = _fabric.Engine(sim.fabric.core, sim.arch == "wse2", t.engine_costs(),
                                   o.max_cycles, o.random_task_order, o.trace, ops)
        self.lowered = lowered
        prog_ids = {}
        by_object: dict[int, int] = {}     # programs sharing one bytecode (lowering_twins)
        for key, lp in lowered.items():
            pid = by_object.get(id(lp))
            if pid is None:
                pid = by_object[id(lp)] = self.core.add_program(
                    lp.code, lp.consts, lp.dconsts, lp.calls, lp.fns, lp.tasks, lp.exports,
                    lp.syms, lp.names)
            prog_ids[key] = pid
        self.index = {}
        for k, pe in enumerate(sim.pes):
            key = pe.program.index
            self.core.add_pe(pe.x, pe.y, prog_ids[key], pe.mem.words,
                             sorted(pe.data_queue.items()), sorted(pe.active),
                             sorted(pe.blocked), pe.rng.state)
            for addr, pod in lowered[key].dsd_globals.items():
                self.core.set_dsd_var(k, addr, pod)
            for dsr, pod, flags in lowered[key].dsr_preloads:
                self.core.set_dsr(k, dsr, pod, flags)
            self.index[(pe.x, pe.y)] = k
        self._bar: Any = None

    def _progress(self, what: str, cycles: int) -> None:
        """The engine's periodic callback: the same progress bar as the Python loop's."""
        from .simulator import _Progress
        if self._bar is None or self._bar.what != what:
            if self._bar is not None:
                self._bar.close()
            self._bar = _Progress(what)
        self._bar.update(cycles)

    @classmethod
    def build(cls, sim: "Simulator") -> "CompiledEngine":
        """Lower every program of ``sim``; raises :class:`Unsupported` when one can't be.
        The bytecode (or the reason it cannot be made) is kept in the layout's compile-cache
        entry, if it has one (host/cache.py), for the next load of the same compile."""
        reason = why_not(sim)
        if reason is not None:
            raise Unsupported(reason)
        from .. import _fabric
        entry = getattr(sim.layout, "cache", None)
        tag = _lowering_tag(sim) if entry is not None else ""
        cached = entry.load_lowered(tag) if entry is not None else None
        if isinstance(cached, dict) and "unsupported" in cached:
            raise Unsupported(cached["unsupported"])
        if isinstance(cached, dict) and set(cached.get("programs", {})) == {
                p.index for p in sim.layout.programs}:
            return cls(sim, cached["programs"])
        lowered: dict[int, LoweredProgram] = {}
        twins = lowering_twins(sim.layout)
        try:
            for pe in sim.pes:
                key = pe.program.index
                if key not in lowered:
                    twin = twins.get(key)
                    if twin is not None and twin in lowered:
                        lowered[key] = lowered[twin]
                        continue
                    lowered[key] = ProgramLowering(pe, list(_fabric.ENGINE_DSD_OPS),
                                                   _fabric.ENGINE_DSD_WORDS,
                                                   _fabric.ENGINE_CALL_WORDS).lower()
        except Unsupported as e:
            if entry is not None:
                entry.store_lowered(tag, {"unsupported": str(e)})
            raise
        if entry is not None:
            entry.store_lowered(tag, {"programs": lowered})
        return cls(sim, lowered)

    # -- host commands --------------------------------------------------------------------------

    def launch(self, name: str, args: list) -> None:
        bits = []
        for v in args:
            if isinstance(v.type, T.FloatT):
                bits.append(int(np.array(float(v.v), dtype=np.float64).view(np.int64)))
            else:
                bits.append(int(v.v))
        self._check(self._run(self.core.launch, name, bits))

    def stream_h2d(self, color: int, pes: list, data, rate_num: int, rate_den: int,
                   buffer_wavelets: int) -> None:
        idx = [self._pe_index(p) for p in pes]
        rows = [np.asarray(row, dtype=np.uint32) for row in data]
        self._check(self._run(self.core.stream_h2d, color, idx, rows, rate_num, rate_den,
                              buffer_wavelets))

    def stream_d2h(self, color: int, queue: int, pes: list, count: int, rate_num: int,
                   rate_den: int) -> np.ndarray:
        idx = [self._pe_index(p) for p in pes]
        status, out = self._run(self.core.stream_d2h, color, queue, idx, count, rate_num,
                                rate_den)
        self._check(status)
        return out

    def advance_to(self, target: int) -> None:
        self._check(self._run(self.core.advance_to, target))

    def _run(self, command, *args):
        """One engine command with the progress callback attached. (Only for the command's
        duration: a callback held by the C++ object would be a reference cycle that Python's
        collector cannot see, and would keep the whole simulator alive.)"""
        self.core.set_progress(self._progress)
        try:
            return command(*args)
        finally:
            self.core.set_progress(None)
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def _pe_index(self, xy) -> int:
        return self.index[tuple(xy)]

    # -- results and errors -----------------------------------------------------------------------

    def sync(self) -> None:
        """Copy the engine's clock and per-PE state the Python side reports on."""
        sim = self.sim
        sim.cycle = sim.fabric.cycle
        spans, prints = self.core.take_events()
        for k, name, cat, start, end, n in spans:     # (recorded only when tracing)
            assert sim.trace is not None
            sim.trace.span(sim.pes[k], name, ("task", "async", "dsd")[cat], start, end,
                           **({"n": n} if cat == 2 else {}))
        for _k, cycle, text in prints:
            sim.log_line(cycle, text.decode("utf-8", "replace"))
        st = self.core.stats()
        dirty = self.core.take_dirty()          # only the PEs that changed since last time
        if not len(dirty):
            return
        active, blocked, cmd = self.core.task_states()
        rows = zip(dirty.tolist(), st["busy"][dirty].tolist(), st["stall"][dirty].tolist(),
                   st["tasks_run"][dirty].tolist(), st["live"][dirty].tolist(),
                   st["unblock_time"][dirty].tolist(), cmd[dirty].tolist(),
                   active[dirty].tolist(), blocked[dirty].tolist())
        for k, busy, stall, tasks, live, unblock, c, act, blk in rows:
            pe = sim.pes[k]
            s = pe.stats
            s.busy, s.stall, s.tasks_run, s.live = busy, stall, tasks, live
            pe.unblock_time, pe.cmd_blocked = unblock, c
            pe.active, pe.blocked = _ids(act), _ids(blk)

    def _check(self, status: int) -> None:
        self.sync()
        if status == _OK:
            return
        msg, pe_k, task, node_id, cycle, semantic = self.core.last_error()
        if status == _DEADLOCK:
            raise DeadlockError(f"{msg}\n{self.report()}")
        if status in (_MAX_CYCLES, _FABRIC):
            raise SimError(f"{msg}\n{self.report()}")
        if pe_k < 0:
            raise SimError(msg)
        pe = self.sim.pes[pe_k]
        node = self.lowered[pe.program.index].nodes[node_id] if node_id >= 0 else None
        prefix = f"cycle {cycle}, PE({pe.x},{pe.y}), task {task}: "
        if semantic:      # as the Python path renders a CslSemanticError from run-time code
            raise SimError(prefix + CslSemanticError(msg, node.span if node else None).render())
        where = f" at {node.span}" if node is not None and node.span.file is not None else ""
        raise SimError(f"{prefix}{msg}{where}")

    def report(self) -> str:
        """Simulator.report, from the engine's state."""
        lines = []
        for k, pe in enumerate(self.sim.pes):
            d = self.core.describe(k)
            if d:
                lines.append(f"  PE({pe.x},{pe.y}): {d}")
        for desc in self.core.host_io_waits():
            lines.append(f"  host: {desc}")
        lines.extend(f"  {w}" for w in self.core.collective_waits())
        for b in self.sim.fabric.blocked_wavelets():
            lines.append(f"  wavelet at PE({b.x},{b.y}) from {b.in_direction} on color "
                         f"{b.color} waits: {b.waits_on}")
        return "\n".join(lines) if lines else ABI.message("nothing_waits")


def _ids(words: list[int]) -> set[int]:
    """The task IDs whose bits are set in two 64-bit words (IDs 0..63, then 64..127)."""
    out = set()
    for w, bits in enumerate(words):
        while bits:
            low = bits & -bits
            out.add(64 * w + low.bit_length() - 1)
            bits ^= low
    return out


def select(sim: "Simulator") -> Any:
    """The engine for ``sim`` according to ``SimOptions.engine`` (None: the Python path)."""
    mode = sim.options.engine
    if mode == "python":
        return None
    try:
        eng = CompiledEngine.build(sim)
    except Unsupported as e:
        if mode == "compiled":
            raise SimError(f"the compiled engine cannot run this program: {e}") from None
        log.warning("simulating on the Python interpreter (about 100x slower than the compiled "
                    "engine), which does not support %s", e)
        return None
    log.debug("simulating on the compiled engine")
    return eng
