"""``<collectives_2d/pe>`` at run time: broadcast, scatter, gather, reduce_fadds.

Model (csl-language.md §11.1 recommends it for a first simulator): each collective is a
*rendezvous* of every PE on the axis (a row for the x axis, a column for the y axis). When the
last PE of the line has called, the data moves memory-to-memory, exactly as the library
specifies, and every PE's completion task ``cb`` is activated at

    t_done = (latest call time) + collective_cycles(PEs on the line, count)

cycles (TimingModel.collective_cycles, sim/timing.py): the library's fabric op start, one
transfer across the line at the fabric's latencies, then one word a cycle behind the first: a
pipelined line transfer.
The wavelets on the library's colors are not simulated one by one, so the collective's colors
and queues see no traffic in the fabric counters. Calls that disagree (different operation,
root or count on one line) are an error; a line on which some PEs never call shows up in the
deadlock report.

Counts are in 32-bit words (f16 data is passed as ``[*]u32`` by ``@ptrcast``, as the library
requires). reduce_fadds adds in PE order along the line, rounding each step to f32.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..lang import types as T
from ..lang.values import Val
from .engine_abi import message

if TYPE_CHECKING:
    from .pe import PE


@dataclass
class _Call:
    pe: PE
    op: str
    root: int
    send: int
    recv: int
    count: int
    cb: int
    time: int


@dataclass
class _Line:
    calls: dict[int, _Call] = field(default_factory=dict)   # position -> call


def _axis_of(owner) -> str:
    dp = owner.params["dim_params"].v
    return dp["_c2d_axis"].v


def _line_key(pe, axis: str) -> tuple[str, int]:
    return (axis, pe.y if axis == "x" else pe.x)


def _position(pe, axis: str) -> int:
    return pe.x if axis == "x" else pe.y


def _size(sim, axis: str) -> int:
    return sim.layout.width if axis == "x" else sim.layout.height


def call(op: str):
    def impl(pe, args: list[Val], node, owner) -> Val:
        sim = pe.sim
        axis = _axis_of(owner)
        vals = [a.v for a in args]
        if op == "broadcast":
            root, buf, count, cb = vals
            c = _Call(pe, op, root, buf, buf, count, cb, pe.time)
        else:
            root, send, recv, count, cb = vals
            c = _Call(pe, op, root, send, recv, count, cb, pe.time)
        lines = sim.__dict__.setdefault("c2d_lines", {})
        line = lines.setdefault(_line_key(pe, axis), _Line())
        pos = _position(pe, axis)
        if pos in line.calls:
            raise pe.error(f"collectives_2d: {op} called again on the {axis} axis before the "
                           "previous collective of this line completed", node)
        line.calls[pos] = c
        first = next(iter(line.calls.values()))
        if (first.op, first.root, first.count) != (op, root, count):
            raise pe.error(f"collectives_2d: PEs of one line disagree: {first.op}(root="
                           f"{first.root}, count={first.count}) vs {op}(root={root}, "
                           f"count={count})", node)
        n = _size(sim, axis)
        if isinstance(root, bool) or not isinstance(root, int):
            raise pe.error(f"collectives_2d: {op} root must be an integer, found a value of "
                           f"type '{args[0].type}'", node)
        if not 0 <= root < n:
            raise pe.error(f"collectives_2d: root {root} is outside the line of {n} PEs", node)
        if len(line.calls) == n:
            _execute(sim, axis, line, n)
            del lines[_line_key(pe, axis)]
        return Val(T.VOID, None)
    return impl


def _words(pe, addr: int, count: int) -> np.ndarray:
    return np.array([pe.mem.load_bits(addr + 2 * k, 2) for k in range(count)], dtype=np.uint32)


def _store(pe, addr: int, words: np.ndarray) -> None:
    for k, w in enumerate(words):
        pe.mem.store_bits(addr + 2 * k, 2, int(w))


def _execute(sim, axis: str, line: _Line, n: int) -> None:
    calls = [line.calls[p] for p in range(n)]
    c0 = calls[0]
    count, root = c0.count, c0.root
    rootc = calls[root]
    if c0.op == "broadcast":
        data = _words(rootc.pe, rootc.send, count)
        for c in calls:
            _store(c.pe, c.recv, data)
    elif c0.op == "scatter":
        data = _words(rootc.pe, rootc.send, count * n)
        for k, c in enumerate(calls):
            _store(c.pe, c.recv, data[k * count:(k + 1) * count])
    elif c0.op == "gather":
        parts = [_words(c.pe, c.send, count) for c in calls]
        _store(rootc.pe, rootc.recv, np.concatenate(parts))
    elif c0.op == "reduce_fadds":
        acc = np.zeros(count, dtype=np.float32)
        for c in calls:
            acc = (acc + _words(c.pe, c.send, count).view(np.float32)).astype(np.float32)
        _store(rootc.pe, rootc.recv, acc.view(np.uint32))
    done = max(c.time for c in calls) + sim.timing.collective_cycles(n, count)
    for c in calls:
        c.pe.activate_at(done, c.cb)


def waiting(sim) -> list[str]:
    """Deadlock-report lines for lines on which not every PE has called yet."""
    out = []
    for (axis, idx), line in getattr(sim, "c2d_lines", {}).items():
        n = _size(sim, axis)
        c = next(iter(line.calls.values()))
        missing = [p for p in range(n) if p not in line.calls]
        where = "row" if axis == "x" else "column"
        out.append(message("collective_waits", op=c.op, where=where, idx=idx,
                           called=len(line.calls), n=n,
                           missing=", ".join(map(str, missing[:8]))))
    return out


INTRINSICS = {f"collectives_2d/pe.{op}": call(op)
              for op in ("broadcast", "scatter", "gather", "reduce_fadds")}
