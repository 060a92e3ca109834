"""Programs that differ only by the ``x`` of their memcpy params are elaborated and lowered
once (lang.layout.memcpy_twin_key, sim.engine.lowering_twins): each column of a memcpy program
is a PE program of its own (``get_params(x)`` gives each column its struct, as cslc does); the
columns whose code cannot observe ``x`` share one elaborated instance and one bytecode.
Checked on both arches and both PE paths (the Python interpreter and the compiled engine agree
bit for bit: memory, cycles, counters):

* each column keeps its own program (index, params with its x, tiles); the shared bytecode is
  the one each column's program lowers to by itself;
* a program whose code reads ``memcpy_params.x`` gets no twins, and each column sees its own x;
* for every kernel of csl/ at its documented size, each program elaborated by itself lowers to
  the bytecode its twins share (what would catch waferscale code that starts reading x).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from waferscale import _fabric
from waferscale.lang.layout import CompileOptions, elaborate
from waferscale.sim.device import SimulatorDevice
from waferscale.sim.engine import lowering_twins
from waferscale.sim.fabric import cpp_available
from waferscale.sim.lower import ProgramLowering
from waferscale.sim.simulator import SimOptions

pytestmark = pytest.mark.skipif(not cpp_available(), reason="waferscale._fabric is not built")

ARCHS = ["wse2", "wse3"]
WIDTH = 4

# Four columns, two codes (k = 0, 1 alternating): programs 0..3, of which 2 and 3 are the
# twins of 0 and 1.
LAYOUT = """
const memcpy = @import_module("<memcpy/get_params>", .{ .width = 4, .height = 1 });
layout {
  @set_rectangle(4, 1);
  var px: i16 = 0;
  while (px < 4) : (px += 1) {
    @set_tile_code(px, 0, "pe.csl", .{ .memcpy_params = memcpy.get_params(px),
                                       .k = px % 2 });
  }
  @export_name("out", [*]f32, true);
  @export_name("run", fn()void);
}
"""

PE = """
param memcpy_params;
param k: i16;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
var out = @zeros([4]f32);
var out_ptr: [*]f32 = &out;
fn run() void {
  var i: i16 = 0;
  while (i < 4) : (i += 1) {
    out[i] = @as(f32, i * (k + 2)) + 0.5;
  }
  {extra}
  sys_mod.unblock_cmd_stream();
}
comptime {
  @export_symbol(out_ptr, "out");
  @export_symbol(run);
}
"""


def compile_run(tmp: Path, arch: str, extra: str = "") -> tuple[list, dict[int, int]]:
    """Elaborate, then launch ``run`` on both paths; assert they agree (memory, cycles and
    counters of every PE). Returns the compiled device's (layout, engine, outs) and the
    twins."""
    (tmp / "layout.csl").write_text(LAYOUT)
    (tmp / "pe.csl").write_text(PE.replace("{extra}", extra))
    opts = CompileOptions(arch=arch, fabric_dims=(11, 3), fabric_offsets=(4, 1), memcpy=True,
                          channels=1)
    runs = []
    twins: dict[int, int] = {}
    for mode in ("python", "compiled"):
        lay = elaborate(tmp / "layout.csl", opts)
        twins = lowering_twins(lay)
        dev = SimulatorDevice(lay, SimOptions(engine=mode, simprint_log=None))
        assert (dev.sim.engine is not None) == (mode == "compiled")
        dev.launch("run", [])
        outs = [dev.read_symbol(x, 0, "out").copy() for x in range(WIDTH)]
        runs.append((dev, outs, dev.sim.cycle, [pe.mem.words.copy() for pe in dev.sim.pes],
                     [(pe.stats.busy, pe.stats.stall, pe.stats.tasks_run)
                      for pe in dev.sim.pes]))
    (_, op, cp, mp, sp), (dev, oc, cc, mc, sc) = runs
    assert cp == cc and sp == sc
    for a, b in zip(mp, mc):
        assert np.array_equal(a, b)
    for a, b in zip(op, oc):
        assert np.array_equal(a, b)
    return [dev.sim.layout, dev.sim.engine, oc], twins


@pytest.mark.parametrize("arch", ARCHS)
def test_columns_share_their_bytecode(tmp_path: Path, arch: str) -> None:
    (lay, engine, outs), twins = compile_run(tmp_path, arch)
    assert len(lay.programs) == 4
    assert twins == {2: 0, 3: 1}
    for index, twin in twins.items():
        p, q = lay.programs[index], lay.programs[twin]
        assert p.record is q.record and p.instance is q.instance and p.memory is q.memory
        assert p.params["memcpy_params"].v["x"].v == index != q.params["memcpy_params"].v["x"].v
        assert p.tiles == [(index, 0)]
    assert lay.programs[1].record is not lay.programs[0].record
    assert engine.lowered[2] is engine.lowered[0] and engine.lowered[3] is engine.lowered[1]
    assert engine.lowered[1] is not engine.lowered[0]
    # The shared bytecode is what each twin lowers to by itself.
    sim = engine.sim
    for index, twin in twins.items():
        pe = next(p for p in sim.pes if p.program.index == index)
        own = ProgramLowering(pe, list(_fabric.ENGINE_DSD_OPS), _fabric.ENGINE_DSD_WORDS,
                              _fabric.ENGINE_CALL_WORDS).lower()
        shared = engine.lowered[twin]
        for name in ("code", "consts", "dconsts", "calls"):
            assert np.array_equal(getattr(own, name), getattr(shared, name)), name
        assert own.fns == shared.fns and own.tasks == shared.tasks
        assert own.exports == shared.exports and own.syms == shared.syms
        assert own.names == shared.names and own.nodes == shared.nodes
        assert own.dsd_globals.keys() == shared.dsd_globals.keys()
        assert all(np.array_equal(v, shared.dsd_globals[a]) for a, v in own.dsd_globals.items())
        assert len(own.dsr_preloads) == len(shared.dsr_preloads)
        for (r1, d1, f1), (r2, d2, f2) in zip(own.dsr_preloads, shared.dsr_preloads):
            assert r1 == r2 and f1 == f2 and np.array_equal(d1, d2)
    for x in range(WIDTH):
        k = x % 2
        assert outs[x].tolist() == [i * (k + 2) + 0.5 for i in range(4)]


@pytest.mark.parametrize("arch", ARCHS)
def test_code_reading_x_gets_no_twins(tmp_path: Path, arch: str) -> None:
    (lay, engine, outs), twins = compile_run(
        tmp_path, arch, extra="out[3] = @as(f32, memcpy_params.x);")
    assert twins == {}
    assert len({id(p.record) for p in lay.programs}) == 4
    assert len({id(lp) for lp in engine.lowered.values()}) == 4
    for x in range(WIDTH):
        k = x % 2
        assert outs[x].tolist() == [i * (k + 2) + 0.5 for i in range(3)] + [float(x)]


def _kernel_builds() -> list[tuple[str, Path, CompileOptions]]:
    """Every kernel's documented cslc lines (csl/*/commands_*.sh), as `check --all` reads
    them: (id, layout path, options)."""
    import argparse

    from waferscale.lang.cli import (add_cslc_flags, find_csl_root, kernel_commands,
                                     options_from_args)
    parser = argparse.ArgumentParser(prog="cslc", add_help=False)
    parser.add_argument("layout")
    add_cslc_flags(parser)
    builds = []
    for lay_path in sorted(find_csl_root().glob("*/layout.csl")):
        for n, words in enumerate(kernel_commands(lay_path.parent)):
            a = parser.parse_args(words)
            opts = options_from_args(a, cwd=lay_path.parent)
            builds.append((f"{lay_path.parent.name}-{n}", lay_path.parent / a.layout, opts))
    return builds


def _lowered(lay) -> dict[int, Any]:
    dev = SimulatorDevice(lay, SimOptions(engine="compiled", simprint_log=None))
    assert dev.sim.engine is not None
    return dev.sim.engine.lowered


@pytest.mark.parametrize("build", _kernel_builds(), ids=lambda b: b[0])
def test_twins_lower_as_their_own_elaboration(build, monkeypatch: pytest.MonkeyPatch) -> None:
    # The twins rest on nothing in waferscale reading the memcpy params' x. For every kernel
    # of csl/ at its documented size (all of them use memcpy), elaborating each program by
    # itself (twins off: every key its own) must give the bytecode the twins share.
    _, layout, opts = build
    shared = elaborate(layout, opts)
    if layout.parent.name in ("meshgemv", "broadcast", "rope", "swiglu"):
        # (kernels whose columns are twins: 64 programs elaborate as 8 for meshgemv)
        assert len({id(p.record) for p in shared.programs}) < len(shared.programs)
    with_twins = _lowered(shared)
    from waferscale.lang import layout as L
    monkeypatch.setattr(L, "memcpy_twin_key", lambda resolved, params: object())
    alone = elaborate(layout, opts)
    assert len({id(p.record) for p in alone.programs}) == len(alone.programs)
    by_itself = _lowered(alone)
    assert with_twins.keys() == by_itself.keys()
    for i, own in by_itself.items():
        twin = with_twins[i]
        for name in ("code", "consts", "dconsts", "calls"):
            assert np.array_equal(getattr(own, name), getattr(twin, name)), (i, name)
        assert own.fns == twin.fns and own.tasks == twin.tasks, i
        assert own.exports == twin.exports and own.syms == twin.syms, i
        assert own.dsd_globals.keys() == twin.dsd_globals.keys(), i
        assert all(np.array_equal(v, twin.dsd_globals[a]) for a, v in own.dsd_globals.items())
