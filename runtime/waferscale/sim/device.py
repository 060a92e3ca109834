"""The simulator behind the host API's :class:`~waferscale.host.device.Device` protocol."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..host.device import DeviceError, ExportInfo
from ..lang import types as T
from ..lang.layout import Layout
from ..lang.values import GlobalVar, Val
from .memory import WORDS, words_of
from .pe import PE
from .simulator import SimOptions, Simulator


def _export_info(name: str, t: T.Type, mutable: bool | None) -> ExportInfo:
    if isinstance(t, T.FnT):
        return ExportInfo(name, "fn", str(t), False, 0, tuple(str(p) for p in t.params))
    elem = t.elem if isinstance(t, T.PointerT) else t
    bits = 32 if isinstance(elem, (T.IntT, T.FloatT)) and elem.bits > 16 else 16
    return ExportInfo(name, "data", str(t), bool(mutable), bits)


# Set by `session()` (the cs_python command): default options and the devices created.
_SESSION: dict | None = None


@contextlib.contextmanager
def session(options: dict, trace_path: str | None = None,
            stats_path: str | None = None) -> Iterator[list]:
    """Within the block, devices built by ``from_output_dir`` use ``options``; at the end
    each device's Chrome trace is written to ``trace_path`` and its per-PE counters (JSON:
    ``cycles`` and, per PE, ``busy``/``stall``/``idle``/``tasks_run``) to ``stats_path``
    (``name.N.json`` when a script creates several runtimes)."""
    global _SESSION
    prev, _SESSION = _SESSION, {"options": dict(options), "devices": []}
    devices = _SESSION["devices"]

    def numbered(path: str, i: int) -> Path:
        p = Path(path)
        return p.with_name(f"{p.stem}.{i}{p.suffix}") if len(devices) > 1 else p
    try:
        yield devices
    finally:
        _SESSION = prev
        for i, dev in enumerate(devices):
            if trace_path and dev.sim.trace is not None:
                dev.sim.trace.write(numbered(trace_path, i))
            if stats_path:
                numbered(stats_path, i).write_text(json.dumps(
                    {"cycles": dev.sim.cycle, "pes": dev.sim.pe_counters()}, indent=1))


class SimulatorDevice:
    """Runs a compiled program on :class:`~waferscale.sim.simulator.Simulator`."""

    def __init__(self, layout: Layout, options: SimOptions | None = None) -> None:
        self.layout = layout
        self.sim = Simulator(layout, options)
        self.width, self.height = layout.width, layout.height
        # Host copies (_copy_groups): each memory row's program, each program's symbols.
        self._program_of = np.array([pe.program.index for pe in self.sim.pes], dtype=np.int64)
        self._symbols: dict[tuple[int, str], tuple[int, bool, int] | None] = {}
        if _SESSION is not None:
            _SESSION["devices"].append(self)

    @classmethod
    def from_output_dir(cls, out_dir: str | Path, **options) -> "SimulatorDevice":
        """Re-elaborate the program recorded in ``out_dir/waferscale.json`` (written by
        ``waferscale cslc``) and build a simulator for it."""
        from ..host.cache import cache_key, elaborate_cached, entry_for, quiet_gc
        from ..host.compile import read_output_dir
        rec = read_output_dir(out_dir)
        opts = {**(_SESSION["options"] if _SESSION is not None else {}), **options}
        compile_options = rec.compile_options()
        # The compile's own elaboration when the compile cache still has it (host/cache.py),
        # else the recorded layout (an absolute path) through the cache. (No collection
        # between loading the program and building its simulator: see Simulator.)
        with quiet_gc():
            for key in (rec.cache_key, cache_key(rec.layout, compile_options)):
                entry = entry_for(key)
                layout = entry.load_layout() if entry is not None else None
                if layout is not None:
                    return cls(layout, SimOptions(**opts))
        layout = elaborate_cached(rec.layout, compile_options)
        with quiet_gc():
            return cls(layout, SimOptions(**opts))

    # -- protocol -------------------------------------------------------------------------------

    def exports(self) -> dict[str, ExportInfo]:
        return {n: _export_info(n, e.type, e.mutable) for n, e in self.layout.exports.items()}

    def _pe(self, xy: tuple[int, int]) -> PE:
        pe = self.sim.grid.get((xy[0], xy[1]))
        if pe is None:
            raise DeviceError(f"PE{tuple(xy)} is outside the {self.width}x{self.height} "
                              "program rectangle")
        return pe

    def _pointer(self, pe: PE, name: str) -> tuple[int, T.Type]:
        entry = pe.record.exported_symbols.get(name)
        if entry is None:
            raise DeviceError(f"PE({pe.x},{pe.y}) does not export a symbol '{name}'")
        sym = entry[0]
        if not isinstance(sym, GlobalVar):
            raise DeviceError(f"'{name}' is a function, not data")
        t = sym.type
        addr = pe.address_of(sym)
        if isinstance(t, T.PointerT):
            return pe.mem.load(addr, T.U16), t.elem
        return addr, t

    def _copy_groups(self, name: str, pes: Sequence[tuple[int, int]], count: int
                     ) -> list[tuple[np.ndarray, np.ndarray, int, int]] | None:
        """A host copy of ``count`` elements per PE as groups of PEs that share the target
        address and element size: ``(positions in pes, memory rows, word address, words per
        element)``, so that each group moves as one array operation on the simulator's
        memory block. None when a PE needs the per-PE path's error (outside the rectangle,
        no such data symbol, elements outside memory)."""
        sim = self.sim
        if not len(pes):
            return []
        xy = np.asarray(pes, dtype=np.int64).reshape(-1, 2)
        w, h = self.width, self.height
        if ((xy[:, 0] < 0) | (xy[:, 0] >= w) | (xy[:, 1] < 0) | (xy[:, 1] >= h)).any():
            return None
        rows = xy[:, 1] * w + xy[:, 0]
        progs = self._program_of[rows]
        addr = np.empty(len(rows), dtype=np.int64)
        nwords = np.empty(len(rows), dtype=np.int64)
        for index in np.unique(progs).tolist():
            target = self._symbol(index, name)
            if target is None:
                return None
            at, is_pointer, nw = target
            sel = progs == index
            # A pointer's value is run-time state: read it on each PE.
            addr[sel] = sim.memory[rows[sel], at] if is_pointer else at
            nwords[sel] = nw
        if ((addr < 0) | (addr + nwords * count > WORDS)).any():
            return None
        key = addr * 4 + nwords
        groups = []
        for k in np.unique(key).tolist():
            pos = np.flatnonzero(key == k)
            groups.append((pos, rows[pos], k // 4, k % 4))
        return groups

    def _symbol(self, index: int, name: str) -> tuple[int, bool, int] | None:
        """Where program ``index`` keeps the data symbol ``name``: (word address of the
        variable, whether it is a pointer to the data, words per element); None if none."""
        key = (index, name)
        if key not in self._symbols:
            prog = self.layout.programs[index]
            entry = prog.record.exported_symbols.get(name)
            target = None
            if entry is not None and isinstance(entry[0], GlobalVar):
                sym = entry[0]
                pe = self.sim.grid[prog.tiles[0]]
                t = sym.type
                if isinstance(t, T.PointerT):
                    target = (pe.address_of(sym), True, words_of(t.elem))
                else:
                    target = (pe.address_of(sym), False, words_of(t))
            self._symbols[key] = target
        return self._symbols[key]

    def memcpy_h2d(self, name: str, pes: Sequence[tuple[int, int]], data: np.ndarray,
                   elem_bits: int) -> None:
        # The device runs on while the words cross the memcpy channels; they land at the end.
        data = np.asarray(data)
        self.sim.host_copy(int(data.size))
        count = data.shape[1] if data.ndim == 2 else 0
        groups = self._copy_groups(name, pes, count) if data.ndim == 2 else None
        if groups is None:
            for i, xy in enumerate(pes):
                pe = self._pe(xy)
                addr, elem = self._pointer(pe, name)
                pe.mem.store_block(addr, words_of(elem), np.asarray(data[i], dtype=np.uint32))
            return
        mem = self.sim.memory
        for pos, rows, addr, nw in groups:
            block = data[pos].astype(np.uint32, copy=False)
            if nw == 1:
                mem[rows, addr:addr + count] = block & 0xFFFF
            else:
                mem[rows, addr:addr + 2 * count:2] = block & 0xFFFF
                mem[rows, addr + 1:addr + 2 * count:2] = block >> 16

    def memcpy_d2h(self, name: str, pes: Sequence[tuple[int, int]], count: int,
                   elem_bits: int) -> np.ndarray:
        self.sim.host_copy(len(pes) * count)
        out = np.zeros((len(pes), count), dtype=np.uint32)
        groups = self._copy_groups(name, pes, count)
        if groups is None:
            for i, xy in enumerate(pes):
                pe = self._pe(xy)
                addr, elem = self._pointer(pe, name)
                out[i] = pe.mem.load_block(addr, words_of(elem), count)
            return out
        mem = self.sim.memory
        for pos, rows, addr, nw in groups:
            if nw == 1:
                out[pos] = mem[rows, addr:addr + count]
            else:
                out[pos] = mem[rows, addr:addr + 2 * count:2].astype(np.uint32) | (
                    mem[rows, addr + 1:addr + 2 * count:2].astype(np.uint32) << 16)
        return out

    def stream_h2d(self, color: int, pes, data) -> None:
        self.sim.stream_h2d(color, [tuple(p) for p in pes], np.asarray(data, dtype=np.uint32))

    def stream_d2h(self, color: int, pes, count: int) -> np.ndarray:
        return self.sim.stream_d2h(color, [tuple(p) for p in pes], count)

    def launch(self, name: str, args) -> None:
        e = self.layout.exports.get(name)
        if e is None or not isinstance(e.type, T.FnT):
            raise DeviceError(f"'{name}' is not an exported function")
        vals = []
        for (tname, v), pt in zip(args, e.type.params):
            x = v.item() if hasattr(v, "item") else v
            assert pt is not None          # an exported function's parameters are typed
            vals.append(Val(pt, float(x) if isinstance(pt, T.FloatT) else int(x)))
        self.sim.launch(name, vals)

    def read_symbol(self, x: int, y: int, name: str) -> np.ndarray:
        pe = self._pe((x, y))
        for p in pe.program.memory.placements:
            if p.var.name == name or p.var.qualname == name:
                v = pe.load_global(p.var, None)
                arr = v.v.data if hasattr(v.v, "data") else np.array([v.v])
                return np.asarray(arr)
        raise DeviceError(f"PE({x},{y}) has no global named '{name}'")

    def stop(self) -> None:
        pass
