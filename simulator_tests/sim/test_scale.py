"""What makes large programs cheap keeps the model exact.

* The decode-shaped benchmark program (sim/programs/gemv_stack: regions stacked vertically,
  each waiting on the fabric for the one above) gives the same memory, cycles, per-PE counters
  and trace on both PE paths, also in random task order: the compiled engine's sleeping PEs
  (their live and stall cycles added when they wake) count exactly as visiting every PE every
  cycle does.
* The engine's work follows what happens, not the grid: in that program the PE visits are a
  small fraction of cycles x PEs, and adding idle PEs adds almost no visits.
* Host copies move groups of PEs as array operations (SimulatorDevice._copy_groups) with the
  per-PE path's result, also where an exported pointer differs between PEs; and a simulator's
  memory is one block of rows (PE memory views into it).
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from waferscale.host.device import DeviceError
from waferscale.host.cli import sdk_modules
from waferscale.host.compile import compile as ws_compile
from waferscale.lang.cli import find_csl_root
from waferscale.sim import device as D
from waferscale.sim.device import SimulatorDevice, session
from waferscale.sim.fabric import cpp_available

from twopaths import assert_same_state, state  # (this directory is on sys.path)

pytestmark = pytest.mark.skipif(not cpp_available(), reason="waferscale._fabric is not built")

STACK = Path(D.__file__).resolve().parent / "programs" / "gemv_stack"
TILES = Path(D.__file__).resolve().parent / "programs" / "tile_axpy"


def stack(tmp_path: Path, P_c: int = 4, P_r: int = 3, R: int = 3, n: int = 16,
          fp16: int = 1) -> Path:
    return ws_compile(STACK / "layout.csl", params={"P_c": P_c, "P_r": P_r, "R": R, "M1": 12,
                                                    "N": n, "M2": n, "fp16": fp16},
                      fabric_dims=(P_c + 7, P_r * R + 2), fabric_offsets=(4, 1), memcpy=True,
                      channels=1, import_paths=[find_csl_root()], output=tmp_path / "out")


def run_script(out: Path, capsys: pytest.CaptureFixture[str], program: Path = STACK,
               **options) -> tuple[dict, str]:
    """run.py of ``program`` (the stack) on ``out`` under a session with ``options``; the
    device's twopaths.state."""
    argv = sys.argv
    try:
        with sdk_modules(), session({"simprint_log": None, **options}) as devices:
            sys.argv = [str(program / "run.py"), "--name", str(out)]
            runpy.run_path(str(program / "run.py"), run_name="__main__")
    finally:
        sys.argv = argv
    printed = capsys.readouterr().out
    assert "SUCCESS" in printed
    (dev,) = devices
    assert (dev.sim.engine is not None) == (options.get("engine") == "compiled")
    return state(dev), printed


@pytest.mark.parametrize("fp16", [0, 1])
@pytest.mark.parametrize("options", [{}, {"random_task_order": True, "seed": 5},
                                     {"trace": True}], ids=["plain", "random", "trace"])
def test_stack_is_the_same_on_both_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         fp16: int, options: dict) -> None:
    out = stack(tmp_path, fp16=fp16)
    py, py_text = run_script(out, capsys, engine="python", **options)
    cc, cc_text = run_script(out, capsys, engine="compiled", **options)
    assert py_text == cc_text
    assert_same_state(py, cc)


@pytest.mark.parametrize("width,height,n", [(1, 1, 1), (5, 3, 7), (9, 4, 16)])
def test_tile_axpy_is_exact_on_both_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          width: int, height: int, n: int) -> None:
    # The whole-fabric benchmark program (bench_scale --program tiles) at small sizes: its
    # run.py checks every PE's y for equality with NumPy (and fails on a wrong one).
    out = ws_compile(TILES / "layout.csl", params={"width": width, "height": height, "N": n},
                     fabric_dims=(width + 7, height + 2), fabric_offsets=(4, 1), memcpy=True,
                     channels=1, output=tmp_path / "out")
    py, py_text = run_script(out, capsys, TILES, engine="python")
    cc, cc_text = run_script(out, capsys, TILES, engine="compiled")
    assert py_text == cc_text and f"{width * height} PEs" in cc_text
    assert_same_state(py, cc)


def launch_visits(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                  monkeypatch: pytest.MonkeyPatch, R: int) -> tuple[int, int, int]:
    """(PE visits, cycles) of the stack's launch with R regions, and its PEs."""
    from waferscale.sim import simulator as S
    seen: list[tuple[int, int]] = []
    orig = S.Simulator.launch

    def launch(self, name, args):
        v0, c0 = self.engine.core.visits, self.cycle
        orig(self, name, args)
        seen.append((self.engine.core.visits - v0, self.cycle - c0))
    monkeypatch.setattr(S.Simulator, "launch", launch)
    out = stack(tmp_path / f"R{R}", P_c=4, P_r=2, R=R, n=16)
    final, _ = run_script(out, capsys, engine="compiled")
    monkeypatch.undo()
    (v, cycles), = seen
    return v, cycles, len(final["busy"])


def test_idle_pes_cost_no_visits(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    v, cycles, pes = launch_visits(tmp_path, capsys, monkeypatch, R=4)
    v4, cycles4, pes4 = launch_visits(tmp_path, capsys, monkeypatch, R=16)
    # Four times the regions: about four times the cycles (one region after the other)
    # and four times the visits (each region's own work), not sixteen.
    assert pes4 == 4 * pes and 3 * cycles < cycles4 < 5 * cycles
    assert v4 < 5 * v
    # Most PEs wait for their region's turn: far fewer visits than PEs x cycles.
    assert v4 < 0.25 * cycles4 * pes4


POINTERS_LAYOUT = """\
const memcpy = @import_module("<memcpy/get_params>", .{ .width = 3, .height = 2 });
layout {
  @set_rectangle(3, 2);
  for (@range(u16, 3)) |px| {
    for (@range(u16, 2)) |py| {
      @set_tile_code(px, py, "pe.csl", .{ .memcpy_params = memcpy.get_params(px),
                                          .odd = (px + py) % 2 == 1 });
    }
  }
  @export_name("p", [*]f32, true);
  @export_name("h", [*]f16, true);
  @export_name("flip", fn()void);
}
"""

POINTERS_PE = """\
param memcpy_params;
param odd: bool;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
var a: [6]f32;
var b: [6]f32;
var hs: [6]f16;
var p: [*]f32 = &a;
var h: [*]f16 = &hs;
fn flip() void {
  if (odd) { p = &b; }
  sys_mod.unblock_cmd_stream();
}
comptime {
  @export_symbol(p, "p");
  @export_symbol(h, "h");
  @export_symbol(flip);
}
"""


@pytest.mark.parametrize("engine", ["python", "compiled"])
def test_host_copies_in_groups_equal_the_per_pe_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str) -> None:
    (tmp_path / "layout.csl").write_text(POINTERS_LAYOUT)
    (tmp_path / "pe.csl").write_text(POINTERS_PE)
    out = ws_compile(tmp_path / "layout.csl", memcpy=True, channels=1,
                     output=tmp_path / "out")
    rng = np.random.default_rng(1)
    pes = [(x, y) for y in range(2) for x in range(3)]
    f32 = rng.standard_normal((6, 6)).astype(np.float32).view(np.uint32)
    f16 = rng.standard_normal((6, 5)).astype(np.float16).view(np.uint16).astype(np.uint32)

    def run(grouped: bool) -> tuple[np.ndarray, list[np.ndarray]]:
        if not grouped:
            monkeypatch.setattr(SimulatorDevice, "_copy_groups", lambda *a: None)
        dev = SimulatorDevice.from_output_dir(out, engine=engine, simprint_log=None)
        dev.launch("flip", [])
        dev.memcpy_h2d("p", pes, f32, 32)
        dev.memcpy_h2d("h", pes[1:], f16[1:], 16)
        got = [dev.memcpy_d2h("p", pes, 6, 32), dev.memcpy_d2h("h", pes, 5, 16)]
        monkeypatch.undo()
        assert dev.sim.pes[4].mem.words.base is not None     # a view into the block
        return dev.sim.memory.copy(), got

    mem, got = run(True)
    mem_ref, got_ref = run(False)
    assert np.array_equal(mem, mem_ref)
    assert all(np.array_equal(a, b) for a, b in zip(got, got_ref))
    assert np.array_equal(got[0], f32)
    # The odd PEs' pointer moved to b: the data is there, and a is still zero.
    dev = SimulatorDevice.from_output_dir(out, engine=engine, simprint_log=None)
    dev.launch("flip", [])
    dev.memcpy_h2d("p", pes, f32, 32)
    for i, (x, y) in enumerate(pes):
        a = dev.read_symbol(x, y, "a").view(np.uint32)
        if (x + y) % 2:
            b = dev.read_symbol(x, y, "b").view(np.uint32)
            assert np.array_equal(b, f32[i]) and not a.any()
        else:
            # `p = &b` is in a branch the even PEs never compile: b takes no memory there
            assert np.array_equal(a, f32[i])
            with pytest.raises(DeviceError, match="no global named 'b'"):
                dev.read_symbol(x, y, "b")
