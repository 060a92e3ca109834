"""The simulator: PEs running their programs on a fabric, one global cycle at a time.

Loop (one iteration = one cycle ``t``), deterministic by construction:

1. For every PE in row-major order: resume each unfinished microthread, then the main thread,
   whose wait condition holds and whose local clock has reached ``t``; if the main thread is
   idle, the task picker starts the next runnable task (pe.py documents the rule).
   A context runs until it finishes, waits on the fabric, or its local clock (advanced by
   the timing model in docs/timing-model.md) passes ``t``.
2. The fabric advances one cycle (sim/fabric.py).

When nothing can run, no wavelet moves and a host command still waits, the simulator raises
:class:`~waferscale.host.device.DeadlockError` with a per-PE report of what each PE waits on
and where wavelets are stuck, instead of spinning.

This module is the reference loop. When the compiled engine runs the program
(``Simulator.engine``, sim/engine.py), every host command goes to it instead; it runs the same
loop in C++ (bindings/pe_engine.hpp mirrors ``step``, ``pending_time``, ``_run_loop`` and
``advance_to`` function by function).
"""

from __future__ import annotations

import gc
import logging
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Literal, cast

import greenlet
import numpy as np

from ..host.device import DeadlockError
from ..lang.builtins import EMPTY_QUEUE_HANDLER_KEY, TEARDOWN_TASK_ID
from ..lang.layout import Layout
from .engine_abi import message
from .fabric import ARCH_QUEUE_DEPTHS, Backend, Direction, Fabric, FabricError, FabricOptions, \
    direction_mask
from .memory import MemoryError_
from .timing import DEFAULT_TIMING, MEMCPY_BUFFER_PE_WAVELETS, TimingModel
from .trace import TraceRecorder
from .pe import PE, Context, SimError

log = logging.getLogger(__name__)

Arch = Literal["wse2", "wse3"]      # FabricOptions.arch

WSE2_COLOR_QUEUE_BASE = 8      # WSE-2: the implicit queue of color c is 8 + c (model detail)


@dataclass(frozen=True)
class SimOptions:
    """Simulator knobs.

    Attributes:
        seed: seeds the random task order (and nothing else).
        random_task_order: pick among runnable tasks at random instead of lowest ID first,
            to flush out programs that depend on an undocumented order.
        uninitialized_nan: fill memory with NaN patterns instead of zeros, so reads of
            uninitialised data show up.
        max_cycles: a run that needs more cycles than this for one host command stops with an
            error (a guard against endless programs).
        fabric_backend: "auto" | "cpp" | "python" (see sim/fabric.py).
        engine: "auto" | "compiled" | "python": run PE code on the compiled engine or the
            Python interpreter (sim/engine.py says when "auto" picks which).
        timing: the cost table (sim/timing.py).
        trace: record a Chrome trace (``Simulator.trace``; see sim/trace.py).
        simprint_log: file that ``<simprint>`` lines are appended to (None: keep them only in
            ``Simulator.sim_log``); created only when a program prints.
    """
    seed: int = 0
    random_task_order: bool = False
    uninitialized_nan: bool = False
    max_cycles: int = 20_000_000
    fabric_backend: str = "auto"
    engine: str = "auto"
    timing: TimingModel = DEFAULT_TIMING
    trace: bool = False
    simprint_log: str | None = "sim.log"


class Simulator:
    def __init__(self, layout: Layout, options: SimOptions | None = None) -> None:
        from ..host.cache import quiet_gc
        # Building a large simulator makes a few objects per PE and no garbage; the
        # collector's passes over the program's object graph would cost more than the work.
        with quiet_gc():
            self._init(layout, options)
        if len(self.pes) >= 4096:
            # Then one full collection now: the objects made meanwhile (and the program's,
            # loaded from the compile cache) would otherwise be scanned again by each
            # generation's next collection, in turn.
            gc.collect()

    def _init(self, layout: Layout, options: SimOptions | None) -> None:
        self.layout = layout
        opts = options or SimOptions()
        self.options = opts
        self.arch = layout.options.arch
        self.timing = opts.timing
        self.trace = TraceRecorder() if opts.trace else None
        self.sim_log: list[str] = []
        self.compilation = layout.programs[0].instance.ctx
        self.cycle = 0
        self.running: Context | None = None
        self.loop_greenlet = greenlet.getcurrent()
        arch = layout.options.arch
        if arch == "wse2":
            # Queues 0..7 are the hardware's; 8 + c is the implicit queue of color c that
            # WSE-2 data tasks and color-addressed fabin DSDs read from (depth 4, assumed).
            iq = ARCH_QUEUE_DEPTHS["wse2"][0] + (4,) * 24
        else:
            # WSE-3: queues 8..11 stand for memcpy's own receive queues of D2H streams (a
            # model detail, invisible to user code, which may only name queues 0..7).
            iq = ARCH_QUEUE_DEPTHS["wse3"][0] + (8,) * 4
        t = opts.timing
        # FabricOptions and Fabric check arch and backend at run time (with their own errors).
        fo = FabricOptions(arch=cast(Arch, arch), input_queue_depths=iq, hop_latency=t.hop_latency,
                           ce_to_router_latency=t.ce_to_router_latency,
                           router_to_ce_latency=t.router_to_ce_latency)
        self.fabric = Fabric(layout.width, layout.height, fo,
                             backend=cast(Backend, opts.fabric_backend))
        self.flushing: set[Any] = set()        # PEs with @queue_flush'd output queues
        # The input queues a control wavelet can reach the CE in (PE.control_queue).
        self.ctrl_queues = range(8) if arch == "wse3" else range(WSE2_COLOR_QUEUE_BASE + 24)
        self._make_pes()
        self.host_io: list = []          # per-cycle memcpy stream pumps (see stream_h2d/d2h)
        self._configure_fabric()
        self._configure_memcpy_streams()
        if self.arch == "wse2":
            # Data tasks read the queue their color was bound to (known only now).
            for pe in self.pes:
                for tid, (kind, _) in pe.tasks.items():
                    if kind == "data":
                        pe.data_queue[tid] = self.wse2_queue(tid, pe)
        if opts.engine not in ("auto", "compiled", "python"):
            raise SimError(f"SimOptions.engine must be 'auto', 'compiled' or 'python', got "
                           f"{opts.engine!r}")
        from .engine import select
        self.engine = select(self)

    # -- set-up -----------------------------------------------------------------------------

    def _make_pes(self) -> None:
        """The PEs, row-major, and their memory: one block of rows (``self.memory``, PE
        ``(x, y)`` on row ``y * width + x``), each program's initial contents written into
        the rows of its PEs at once (:class:`~waferscale.sim.pe.ProgramImage`)."""
        from .memory import memory_block
        from .pe import ProgramImage
        lay = self.layout
        w, h = lay.width, lay.height
        self.memory = memory_block(w * h, self.options.uninitialized_nan)
        images: dict[int, ProgramImage] = {}
        # Programs sharing one elaboration (lang.layout.memcpy_twin_key) start alike: one
        # image, by their shared record and memory map.
        shared: dict[tuple[int, int], ProgramImage] = {}
        rows: dict[int, list[int]] = {}
        self.pes: list[PE] = []
        self.grid: dict[tuple[int, int], PE] = {}
        for y in range(h):
            for x in range(w):
                prog = lay.program_at(x, y)
                image = images.get(prog.index)
                if image is None:
                    same = (id(prog.record), id(prog.memory))
                    image = shared.get(same)
                    if image is None:
                        image = shared[same] = ProgramImage(prog, self)
                    images[prog.index] = image
                k = y * w + x
                rows.setdefault(prog.index, []).append(k)
                pe = PE(self, x, y, prog, words=self.memory[k], image=image)
                self.pes.append(pe)
                self.grid[(x, y)] = pe
        for index, ks in rows.items():
            idx = np.array(ks)
            for a, words in images[index].writes:
                self.memory[idx, a:a + len(words)] = words

    def _configure_fabric(self) -> None:
        fab = self.fabric
        core = fab.core
        w, h = self.layout.width, self.layout.height
        masks: dict[tuple[str, ...], int] = {}

        def mask(dirs: tuple[str, ...]) -> int:
            m = masks.get(dirs)
            if m is None:
                m = masks[dirs] = direction_mask([Direction[d] for d in dirs])
            return m
        steps = {"EAST": (1, 0), "WEST": (-1, 0), "NORTH": (0, -1), "SOUTH": (0, 1)}
        ramp_routes: dict[tuple[int, int], set[int]] = {}
        from ..lang.layout import DIRECTION_BITS, router_extras
        extras_of: dict[int, Any] = {}

        def extras(cfg: Any) -> Any:
            """The switches and teardown mode of a color config (checked at compile time)."""
            e = extras_of.get(id(cfg))
            if e is None:
                e = extras_of[id(cfg)] = (router_extras(self.pes[0].interp, cfg, None)
                                          if isinstance(cfg.v, dict) and "routes" in cfg.v
                                          else None)
            return e

        def edge_sinks(x: int, y: int, m: int) -> None:
            """Sinks for the directions of tx mask ``m`` that leave the rectangle. A route may
            point out of the program rectangle (into memcpy's columns or the halo), as
            official examples do on their last column; what leaves there is absorbed by an
            edge sink (and counted in the link counters)."""
            if m > 0 and (x == 0 or y == 0 or x == w - 1 or y == h - 1):
                for d, bit in DIRECTION_BITS.items():
                    dx, dy = steps.get(d, (0, 0))
                    if m & bit and (dx or dy) and not (0 <= x + dx < w and 0 <= y + dy < h):
                        fab.enable_edge_sink(x, y, Direction[d])

        def configure_extras(x: int, y: int, c: int, e: Any) -> None:
            if e is None:
                return
            if e.switches is not None:
                positions, cur, ring, pop = e.switches
                for m in positions[1::2]:
                    edge_sinks(x, y, m)
                core.set_switches(x, y, c, list(positions), cur, ring, pop)
            if e.teardown:
                core.set_teardown(x, y, c, True)
            if e.filter is not None and e.filter[0] == "range":
                core.set_filter(x, y, c, *e.filter[1:])
            elif e.filter is not None:
                core.set_counter_filter(x, y, c, *e.filter[1:])
            if e.swap:
                core.set_color_swap(x, y, c, e.swap)
        # What a route asks of a router, worked out once per Route object (elaboration
        # shares one among the PEs a statement configures alike): (rx mask, tx mask,
        # extras, whether it delivers to the ramp). The routes outlive the loop: ids stay.
        by_route: dict[int, tuple[int, int, Any, bool]] = {}
        for (x, y, c), r in self.layout.routes.items():
            info = by_route.get(id(r))
            if info is None:
                info = by_route[id(r)] = (mask(r.rx), mask(r.tx), extras(r.config),
                                          "RAMP" in r.tx)
            edge_sinks(x, y, info[1])
            core.set_route(x, y, c, info[0], info[1])
            configure_extras(x, y, c, info[2])
            if info[3]:
                ramp_routes.setdefault((x, y), set()).add(c)
        arch = self.arch
        # What a program's comptime blocks configure, the same on each of its PEs.
        per_program: dict[int, tuple[list, list]] = {}
        for pe in self.pes:
            rec = pe.record
            conf = per_program.get(pe.program.index)
            if conf is None:
                from ..lang.layout import parse_color_config
                routes = []
                for c, cfg in rec.local_color_configs.items():
                    rx, tx = parse_color_config(pe.interp, cfg, None)
                    routes.append((c, mask(tuple(rx)), mask(tuple(tx)), extras(cfg)))
                queues = [(q, cfg["color"].v) for (kind, q), cfg in rec.queues.items()
                          if kind == "input_queue" and "color" in cfg]
                conf = per_program[pe.program.index] = (routes, queues)
            for c, rxm, txm, ext in conf[0]:
                edge_sinks(pe.x, pe.y, txm)
                core.set_route(pe.x, pe.y, c, rxm, txm)
                configure_extras(pe.x, pe.y, c, ext)
            for q, c in conf[1]:
                core.bind_input_queue(pe.x, pe.y, q, c)
            if rec.rebinds_input_queues:
                core.set_queue_wait(pe.x, pe.y, True)
            if arch == "wse2":
                # WSE-2 delivers a color to the CE without @initialize_queue (data tasks are
                # bound to colors; fabin DSDs name their color): every color routed to RAMP
                # here gets its implicit queue unless the program bound one explicitly.
                bound = {fab.input_queue_color(pe.x, pe.y, q) for q in range(8)}
                ramp_colors = set(ramp_routes.get((pe.x, pe.y), ()))
                # (@set_local_color_config routes to RAMP too: a control wavelet on such a
                # color reaches the CE, as spmv-hypersparse's allreduce2R1E dispatch does.)
                ramp_colors |= {c for c, _rx, txm, _e in conf[0] if txm & 1}
                ramp_colors |= {n for (kind, n) in rec.task_bindings if kind == "data"}
                for c in sorted(ramp_colors - bound):
                    fab.bind_input_queue(pe.x, pe.y, WSE2_COLOR_QUEUE_BASE + c, c)

    def _configure_memcpy_streams(self) -> None:
        """memcpy's streams (csl-language.md §8): the host's H2D wavelets enter a PE through
        memcpy's output queue 0 and loop RAMP→RAMP into the input queue the program bound to
        the stream color; a PE's D2H wavelets loop RAMP→RAMP into a memcpy receive queue."""
        self.d2h_queue: dict[int, int] = {}
        core = self.fabric.core
        ramp = direction_mask([Direction.RAMP])
        for k, (name, c) in enumerate(sorted(self.layout.memcpy_streams.items())):
            for pe in self.pes:
                core.set_route(pe.x, pe.y, c, ramp, ramp)
            if name.startswith("MEMCPYD2H"):
                q = WSE2_COLOR_QUEUE_BASE + c if self.arch == "wse2" else 8 + int(name[-1]) - 1
                self.d2h_queue[c] = q
                for pe in self.pes:
                    core.bind_input_queue(pe.x, pe.y, q, c)
            elif self.arch == "wse2":
                # WSE-2 delivers the stream's color to the CE even when only a fabin DSD reads
                # it (no data task bound to it): its implicit queue, unless bound already.
                for pe in self.pes:
                    q = self.wse2_queue(c, pe)
                    if self.fabric.input_queue_color(pe.x, pe.y, q) != c:
                        self.fabric.bind_input_queue(pe.x, pe.y, q, c)

    def wse2_queue(self, color: int, pe: PE | None = None) -> int:
        """WSE-2: the input queue a color is delivered to on ``pe`` (explicit or implicit)."""
        if pe is not None:
            for q in range(8):
                if self.fabric.input_queue_color(pe.x, pe.y, q) == color:
                    return q
        return WSE2_COLOR_QUEUE_BASE + color

    def output_queue_color(self, pe: PE, oq: int, node: Any = None) -> int:
        if oq in pe.oq_colors:                  # rebound at run time (encode_output_queue)
            return pe.oq_colors[oq]
        cfg = pe.record.queues.get(("output_queue", oq))
        if cfg is None or "color" not in cfg:
            raise pe.error(f"output queue {oq} has no color: @initialize_queue it with "
                           ".{ .color = ... } or give the fabout DSD a .fabric_color", node)
        return cfg["color"].v

    # -- running ------------------------------------------------------------------------------

    def _resume(self, pe: PE, ctx: Context) -> bool:
        if ctx.done:
            return False
        if ctx.after is not None and ctx.after.done:
            # Queued behind another context that has ended: it starts when that one ended
            # (its local clock), a time pending_time now knows.
            ctx.ready_at = max(ctx.ready_at, ctx.after.ready_at)
            ctx.after, ctx.wait, ctx.wait_desc = None, None, ""
        if ctx.ready_at > self.cycle:
            return False
        if ctx.wait is not None and not ctx.wait():
            pe.stats.stall += 1
            return False
        self.running = ctx
        pe.time = max(ctx.ready_at, self.cycle)
        prev_task, pe.current_task = pe.current_task, ctx.name
        comp = self.compilation
        outer_depth, comp.depth = comp.depth, ctx.depth
        try:
            ctx.glet.switch()
        except SimError:
            raise
        except MemoryError_ as e:
            raise pe.error(str(e)) from None
        except Exception as e:
            from ..lang.errors import CslError
            if isinstance(e, CslError):
                raise SimError(f"cycle {self.cycle}, PE({pe.x},{pe.y}), task {ctx.name}: "
                               f"{e.render()}") from None
            raise
        finally:
            self.running = None
            pe.current_task = prev_task
            ctx.depth, comp.depth = comp.depth, outer_depth
        ctx.ready_at = max(ctx.ready_at, pe.time)
        return True

    def step(self) -> bool:
        """One cycle; returns whether anything happened on a PE."""
        progressed = False
        for pump in list(self.host_io):
            progressed |= pump()
        if self.host_io:     # an H2D stream may deliver from the buffer columns after its command
            self.host_io = [p for p in self.host_io if not p.delivered()]
        iq_count = self.fabric.core.iq_count
        for pe in self.pes:
            # Skip PEs with nothing that could run this cycle (most of a large grid, most of
            # the time): no live context, no activation pending, no wavelet for a data task.
            if (pe.main is None and not pe.microthreads and not pe.timed_activations
                    and not pe.active and not any(iq_count(pe.x, pe.y, q)
                                                   for q in pe.data_queue.values())
                    and not (pe.has_control and any(iq_count(pe.x, pe.y, q)
                                                    for q in self.ctrl_queues))):
                continue
            if pe.main is not None or pe.microthreads:
                pe.stats.live += 1
            if pe.timed_activations:
                due = [t for t in pe.timed_activations if t[0] <= self.cycle]
                if due:
                    pe.timed_activations = [t for t in pe.timed_activations if t[0] > self.cycle]
                    for _, task_id, unblock in due:
                        if unblock:
                            pe.blocked.discard(task_id)
                        else:
                            pe.active.add(task_id)
                    progressed = True
            for m in pe.microthreads:
                progressed |= self._resume(pe, m)
            if pe.microthreads and any(m.done for m in pe.microthreads):
                pe.microthreads = [m for m in pe.microthreads if not m.done]
            if pe.main is not None and pe.main.done:
                free_at = pe.main.ready_at
                pe.main = None
                pe.main_free_at = free_at
            if pe.main is None and pe.main_free_at <= self.cycle:
                tid = pe.pick_task()
                if tid is not None:
                    pe.start_task(tid)
                    progressed = True
            if pe.main is not None:
                progressed |= self._resume(pe, pe.main)
        try:
            self.fabric.tick()                # exactly one cycle, idle or not
        except FabricError as e:
            raise SimError(f"{e}\n{self.report()}") from None
        self.cycle = self.fabric.cycle
        # A teardown command that passed a router activates its PE's teardown task when the
        # program has a handler for that color (from the next cycle, like a wavelet).
        for _t, x, y, color in self.fabric.core.take_teardowns():
            pe = self.grid[(x, y)]
            if pe.teardown_color == color:
                pe.active.add(TEARDOWN_TASK_ID)
        # An output queue flushed with @queue_flush that is now empty runs the empty-queue
        # handler (the teardown task), in PE order.
        for pe in sorted(self.flushing, key=lambda p: (p.y, p.x)):
            for q in sorted(pe.flush_armed):
                if self.fabric.core.oq_count(pe.x, pe.y, q) == 0:
                    pe.flush_armed.discard(q)
                    if pe.teardown_color == EMPTY_QUEUE_HANDLER_KEY + q:
                        pe.active.add(TEARDOWN_TASK_ID)
            if not pe.flush_armed:
                self.flushing.discard(pe)
        return progressed

    def pending_time(self) -> int | None:
        """The earliest future cycle at which some context becomes ready, if any."""
        times = []
        for pe in self.pes:
            for c in [pe.main, *pe.microthreads]:
                if c is not None and not c.done and c.wait is None and c.ready_at >= self.cycle:
                    times.append(c.ready_at)
            times.extend(t for t, _, _ in pe.timed_activations)
            f = pe.main_free_at
            if pe.main is None and f >= self.cycle and pe.runnable_tasks():
                times.append(f)
        return min(times) if times else None

    def run_until(self, done: Callable[[], bool], what: str) -> None:
        """Run cycles until ``done()``; raise DeadlockError if nothing can progress."""
        start = self.cycle
        hops = self._hops()
        bar = _Progress(what)
        try:
            self._run_loop(done, what, start, hops, bar)
        finally:
            bar.close()

    def _run_loop(self, done, what: str, start: int, hops: int, bar: "_Progress") -> None:
        while not done():
            bar.update(self.cycle - start)
            if self.cycle - start > self.options.max_cycles:
                raise SimError(message("max_cycles", what=what,
                                       max_cycles=self.options.max_cycles)
                               + f"\n{self.report()}")
            progressed = self.step()
            new_hops = self._hops()
            if progressed or new_hops != hops:
                hops = new_hops
                continue
            if done():
                break
            t = self.pending_time()
            if t is not None:
                if self.fabric.idle and t > self.cycle + 1:
                    self._skip(t - self.cycle - 1)   # nothing happens until t
                continue
            if not self.fabric.idle and not self.fabric.stuck():
                continue
            raise DeadlockError(message("deadlock", cycle=self.cycle, what=what)
                                + f"\n{self.report()}")

    def _skip(self, n: int) -> None:
        """Let ``n`` cycles pass without stepping (nothing can happen in them)."""
        for pe in self.pes:
            if pe.main is not None or pe.microthreads:
                pe.stats.live += n
        self.fabric.advance_clock(n)
        self.cycle = self.fabric.cycle

    def pe_counters(self) -> list[dict]:
        """Per-PE counters at the current cycle (``cs_python --stats``)."""
        return [{"x": pe.x, "y": pe.y, "busy": pe.stats.busy, "stall": pe.stats.stall,
                 "idle": pe.stats.idle(self.cycle), "tasks_run": pe.stats.tasks_run}
                for pe in self.pes]

    def _hops(self) -> int:
        c = self.fabric.counters()
        return int(c.link_out.sum()) + int(c.link_in.sum())

    def report(self) -> str:
        if self.engine is not None:
            return self.engine.report()
        lines = []
        for pe in self.pes:
            d = pe.describe_wait()
            if d:
                lines.append(f"  PE({pe.x},{pe.y}): {d}")
        for desc in self.host_io_waits():
            lines.append(f"  host: {desc}")
        from .collectives import waiting
        lines.extend(f"  {w}" for w in waiting(self))
        for b in self.fabric.blocked_wavelets():
            lines.append(f"  wavelet at PE({b.x},{b.y}) from {b.in_direction} on color "
                         f"{b.color} waits: {b.waits_on}")
        return "\n".join(lines) if lines else message("nothing_waits")

    # -- host services (used by SimulatorDevice) ----------------------------------------------

    def launch(self, name: str, args: list) -> None:
        if self.engine is not None:
            self.engine.launch(name, args)
            return
        for pe in self.pes:
            fn = pe.record.exported_symbols.get(name)
            if fn is None:
                raise SimError(f"PE({pe.x},{pe.y}) does not export '{name}'")
            sym = fn[0]
            pe.cmd_blocked = True

            def body(pe=pe, sym=sym) -> None:
                pe.interp.call(sym, list(args), sym.decl)
            self._start_rpc(pe, f"{name} (launch)", body)
        self.run_until(lambda: not any(pe.cmd_blocked for pe in self.pes),
                       f"running launch('{name}')")
        # A PE may have unblocked the command stream ahead of the global clock (its task ran
        # ahead in local time); the host sees the command finish when the last PE did.
        self.advance_to(max(pe.unblock_time for pe in self.pes))

    def advance_to(self, target: int) -> None:
        """Simulate until the global clock reaches ``target`` (skipping idle stretches)."""
        if self.engine is not None:
            self.engine.advance_to(target)
            return
        while self.cycle < target:
            if self.fabric.idle:
                t = self.pending_time()
                nothing_now = not any(pe.runnable_tasks() for pe in self.pes if pe.main is None)
                if nothing_now and (t is None or t > target):
                    self._skip(target - self.cycle)
                    break
            self.step()

    def _start_rpc(self, pe: PE, name: str, body) -> None:
        """Queue a host-launched function as the PE's next main-thread work."""
        if pe.main is not None and not pe.main.done:
            # The RPC task runs when the main thread is free (memcpy's task is a task too).
            ctx = pe.start_context(name, body, main=False)
            pe.queue_after(ctx, pe.main, message("wait_main"))
        else:
            pe.start_context(name, body, main=True)

    # -- memcpy streams -------------------------------------------------------------------------

    def simprint(self, pe: PE, text: str) -> None:
        """Append ``<simprint>`` output of ``pe``; complete lines go to the simprint log as
        ``@<cycle> <text>`` (the format of simfabric's sim.log)."""
        pe.print_buffer += text
        while "\n" in pe.print_buffer:
            line, pe.print_buffer = pe.print_buffer.split("\n", 1)
            self.log_line(pe.time, line)

    def log_line(self, cycle: int, line: str) -> None:
        """One complete ``<simprint>`` line, printed at ``cycle`` (the PE's local clock)."""
        entry = f"@{cycle} {line}"
        self.sim_log.append(entry)
        if self.options.simprint_log:
            with open(self.options.simprint_log, "a", encoding="utf-8") as f:
                f.write(entry + "\n")

    def host_io_waits(self) -> list[str]:
        return [p.describe() for p in self.host_io]

    # -- host I/O timing (docs/timing-model.md, "memcpy") ----------------------------------

    def memcpy_rate(self) -> Fraction:
        """Wavelets per cycle through the program's memcpy channels (``--channels``)."""
        return self.timing.memcpy_rate(max(1, self.layout.options.channels))

    def memcpy_buffer_wavelets(self) -> int:
        """Stream wavelets the memcpy buffer columns hold per PE row (``--width-west-buf`` +
        ``--width-east-buf`` buffer PEs of MEMCPY_BUFFER_PE_WAVELETS each)."""
        o = self.layout.options
        return (o.width_west_buf + o.width_east_buf) * MEMCPY_BUFFER_PE_WAVELETS

    def memcpy_cycles(self, words: int) -> int:
        """A memcpy command of ``words`` wavelets when nothing holds it up: the command's
        overhead plus the words at the channels' rate."""
        return self.timing.memcpy_command_cycles() + math.ceil(words / self.memcpy_rate())

    def host_copy(self, words: int) -> None:
        """A memcpy copy-mode command of ``words`` wavelets: the device runs on for
        :meth:`memcpy_cycles` (the caller moves the data when this returns)."""
        self.advance_to(self.cycle + self.memcpy_cycles(words))

    def stream_h2d(self, color: int, pes: list, data) -> None:
        self.advance_to(self.cycle + self.timing.memcpy_command_cycles())
        if self.engine is not None:
            rate = self.memcpy_rate()
            self.engine.stream_h2d(color, pes, data, rate.numerator, rate.denominator,
                                   self.memcpy_buffer_wavelets())
            return
        pump = _H2DPump(self, color, pes, data)
        self.host_io.append(pump)
        try:
            # The command ends when the host has sent everything; what waits in the buffer
            # columns is delivered while later commands run.
            self.run_until(pump.sent_all, f"streaming {pump.total} wavelet(s) to the device on "
                           f"color {color}")
        except BaseException:
            if pump in self.host_io:
                self.host_io.remove(pump)
            raise

    def stream_d2h(self, color: int, pes: list, count: int):
        q = self.d2h_queue.get(color)
        if q is None:
            raise SimError(f"color {color} is not a memcpy D2H stream of this program")
        self.advance_to(self.cycle + self.timing.memcpy_command_cycles())
        if self.engine is not None:
            rate = self.memcpy_rate()
            return self.engine.stream_d2h(color, q, pes, count, rate.numerator,
                                          rate.denominator)
        pump = _D2HPump(self, color, q, pes, count)
        self.host_io.append(pump)
        try:
            self.run_until(pump.delivered, f"receiving {count} wavelet(s) per PE on D2H color "
                           f"{color}")
        finally:
            if pump in self.host_io:
                self.host_io.remove(pump)
        return pump.out


class _Progress:
    """A tqdm bar of simulated cycles, shown only on a terminal and only for runs that last
    more than about a second of wall time."""

    def __init__(self, what: str) -> None:
        from waferscale.progress import progress
        self.what, self.last = what, 0
        self.bar = progress(desc=what, unit=" cycles", delay=1.0)

    def update(self, cycles: int) -> None:
        if cycles - self.last >= 1000:
            self.bar.update(cycles - self.last)
            self.last = cycles

    def close(self) -> None:
        self.bar.close()


class _Credit:
    """The memcpy channels' rate as a token bucket in exact integers: ``num`` per cycle, a
    wavelet costs ``den``, at most ``cap`` saved (a wavelet per PE and one cycle's credit, so
    no fraction is lost at the rate). The C++ engine keeps the same bucket (pe_engine.hpp,
    Credit)."""

    def __init__(self, rate: Fraction, n_pes: int) -> None:
        self.num, self.den = rate.numerator, rate.denominator
        self.cap = self.den * max(1, n_pes) + self.num
        self.have = 0

    def accrue(self) -> bool:
        """One cycle's credit; False once full (nothing changes: a stalled stream can then
        be reported as a deadlock)."""
        if self.have >= self.cap:
            return False
        self.have = min(self.have + self.num, self.cap)
        return True

    def take(self) -> bool:
        if self.have < self.den:
            return False
        self.have -= self.den
        return True


class _H2DPump:
    """Feeds host wavelets into memcpy's output queue 0 of each target PE, at most one per
    PE per cycle and at most the memcpy channels' rate in all. With buffer columns
    (``capacity`` wavelets per PE row), the host's wavelets wait there for the PE, so the
    host can run ahead of the kernel by that much: each cycle the buffers first deliver one
    wavelet per PE, then the host sends into them. Without, the host sends straight into the
    PE's queue. The C++ engine's pump is the same (pe_engine.hpp, H2D)."""

    def __init__(self, sim: Simulator, color: int, pes: list, data) -> None:
        self.sim, self.color = sim, color
        self.credit = _Credit(sim.memcpy_rate(), len(pes))
        self.capacity = sim.memcpy_buffer_wavelets()
        self.todo = [[int(w) for w in row] for row in data]
        self.pes = [tuple(p) for p in pes]
        self.pos = [0] * len(self.pes)       # delivered into the PE's queue
        self.sent = [0] * len(self.pes)      # left the host (delivered or buffered)
        self.buffered: dict[int, int] = {}   # per PE row
        self.total = sum(len(r) for r in self.todo)
        self.unsent = self.undelivered = sum(1 for r in self.todo if r)   # PEs not done
        self.first = 0                       # PEs before it have been sent everything

    def __call__(self) -> bool:
        # The loops skip what cannot change the outcome: without buffers nothing is buffered;
        # PEs before `first` have been sent everything; once the credit cannot pay for a
        # wavelet no later PE can take one in this cycle.
        moved = self.credit.accrue()
        fab = self.sim.fabric
        if self.capacity > 0:
            for i, (x, y) in enumerate(self.pes):
                if self.pos[i] < self.sent[i] and fab.oq_free(x, y, 0) > 0:
                    fab.ce_send(x, y, 0, self.color, self.todo[i][self.pos[i]])
                    self._delivered_one(i)
                    self.buffered[y] -= 1
                    moved = True
        while self.first < len(self.pes) and self.sent[self.first] == len(self.todo[self.first]):
            self.first += 1
        for i in range(self.first, len(self.pes)):
            if self.credit.have < self.credit.den:
                break
            if self.sent[i] == len(self.todo[i]):
                continue
            x, y = self.pes[i]
            if self.capacity == 0:
                if fab.oq_free(x, y, 0) > 0 and self.credit.take():
                    fab.ce_send(x, y, 0, self.color, self.todo[i][self.pos[i]])
                    self._delivered_one(i)
                    self._sent_one(i)
                    moved = True
            elif self.buffered.get(y, 0) < self.capacity and self.credit.take():
                self._sent_one(i)
                self.buffered[y] = self.buffered.get(y, 0) + 1
                moved = True
        return moved

    def _sent_one(self, i: int) -> None:
        self.sent[i] += 1
        if self.sent[i] == len(self.todo[i]):
            self.unsent -= 1

    def _delivered_one(self, i: int) -> None:
        self.pos[i] += 1
        if self.pos[i] == len(self.todo[i]):
            self.undelivered -= 1

    def sent_all(self) -> bool:
        return self.unsent == 0

    def delivered(self) -> bool:
        return self.undelivered == 0

    def describe(self) -> str:
        left = [(pe, len(r) - p) for pe, r, p in zip(self.pes, self.todo, self.pos)
                if p < len(r)]
        items = ", ".join(message("h2d_item", n=n, pe=pe) for pe, n in left[:6])
        return message("h2d_waits", color=self.color,
                       items=items + (" ..." if len(left) > 6 else ""))


class _D2HPump:
    """Collects a PE's D2H wavelets from memcpy's receive queue, at most the memcpy
    channels' rate in all."""

    def __init__(self, sim: Simulator, color: int, queue: int, pes: list, count: int) -> None:
        import numpy as np
        self.sim, self.color, self.queue, self.count = sim, color, queue, count
        self.credit = _Credit(sim.memcpy_rate(), len(pes))
        self.pes = [tuple(p) for p in pes]
        self.out = np.zeros((len(self.pes), count), dtype=np.uint32)
        self.got = [0] * len(self.pes)

    def __call__(self) -> bool:
        moved = self.credit.accrue()
        fab = self.sim.fabric
        for i, (x, y) in enumerate(self.pes):
            if self.got[i] < self.count and fab.iq_count(x, y, self.queue) > 0 \
                    and self.credit.take():
                got = fab.ce_recv(x, y, self.queue)
                assert got is not None      # iq_count > 0: a wavelet is ready to read
                payload, _ = got
                self.out[i, self.got[i]] = payload
                self.got[i] += 1
                moved = True
        return moved

    def delivered(self) -> bool:
        return all(g == self.count for g in self.got)

    def describe(self) -> str:
        left = [(pe, self.count - g) for pe, g in zip(self.pes, self.got) if g < self.count]
        items = ", ".join(message("d2h_item", n=n, pe=pe) for pe, n in left[:6])
        return message("d2h_waits", color=self.color,
                       items=items + (" ..." if len(left) > 6 else ""))
