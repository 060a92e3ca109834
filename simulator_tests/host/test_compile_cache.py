"""The compile cache (waferscale.host.cache): cslc stores the elaborated program, the load
takes it instead of elaborating again, the engine adds its bytecode, and any change that
could change the program (a source, a file appearing on the import path, waferscale's code)
makes it elaborate from source again."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from waferscale.host import cache
from waferscale.host.compile import compile as ws_compile
from waferscale.host.compile import read_output_dir
from waferscale.lang import layout as L
from waferscale.sim import lower
from waferscale.sim.device import SimulatorDevice

LAYOUT = """\
param N: i16;
const memcpy = @import_module("<memcpy/get_params>", .{ .width = 2, .height = 1 });
layout {
  @set_rectangle(2, 1);
  for (@range(i16, 2)) |px| {
    @set_tile_code(px, 0, "pe.csl", .{ .memcpy_params = memcpy.get_params(px), .N = N });
  }
  @export_name("x", [*]f32, true);
  @export_name("scale", fn()void);
}
"""

PE = """\
param memcpy_params;
param N: i16;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
const util = @import_module("util.csl", .{});
var x: [N]f32;
var x_ptr: [*]f32 = &x;
fn scale() void {
  for (@range(i16, N)) |i| {
    x[i] = x[i] * util.factor;
  }
  sys_mod.unblock_cmd_stream();
}
comptime {
  @export_symbol(x_ptr, "x");
  @export_symbol(scale);
}
"""


@pytest.fixture
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(cache.ENV_DIR, str(root))
    monkeypatch.delenv(cache.ENV_SWITCH, raising=False)
    return root


def program(tmp_path: Path, factor: str = "2.0") -> tuple[Path, Path]:
    """The program (its util.csl on an import path) and that import path."""
    src = tmp_path / "prog"
    lib = tmp_path / "lib"
    src.mkdir(exist_ok=True)
    lib.mkdir(exist_ok=True)
    (src / "layout.csl").write_text(LAYOUT)
    (src / "pe.csl").write_text(PE)
    (lib / "util.csl").write_text(f"const factor: f32 = {factor};\n")
    return src / "layout.csl", lib


def build(tmp_path: Path, out: str = "out") -> Path:
    layout, lib = program(tmp_path)
    return ws_compile(layout, params={"N": 3}, memcpy=True, channels=1,
                      import_paths=[lib], output=tmp_path / out)


def run(out: Path, engine: str = "compiled") -> tuple[np.ndarray, dict]:
    """x after the host copies [1, 2, 3] to every PE and launches scale, and the counters."""
    dev = SimulatorDevice.from_output_dir(out, engine=engine, simprint_log=None)
    pes = [(0, 0), (1, 0)]
    data = np.tile(np.array([1.0, 2.0, 3.0], dtype=np.float32).view(np.uint32), (2, 1))
    dev.memcpy_h2d("x", pes, data, 32)
    dev.launch("scale", [])
    got = dev.memcpy_d2h("x", pes, 3, 32).view(np.float32)
    return got, {"cycles": dev.sim.cycle, "pes": dev.sim.pe_counters()}


def forbid_elaboration(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_a, **_k):
        raise AssertionError("elaborated although the cache holds the program")
    monkeypatch.setattr(L, "elaborate", fail)


def manifests(root: Path) -> list[Path]:
    return sorted(root.glob(f"*/*/{cache.MANIFEST}"))


def test_cslc_stores_the_program_and_the_load_takes_it(
        tmp_path: Path, cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = build(tmp_path)
    rec = read_output_dir(out)
    assert rec.cache_key and [m.parent.name for m in manifests(cache_root)] == [rec.cache_key]
    fresh_x, fresh_stats = run(out)            # the first load adds the engine's bytecode
    assert list((cache_root / rec.cache_key[:2] / rec.cache_key).glob("lowered-*.pkl"))
    forbid_elaboration(monkeypatch)
    monkeypatch.setattr(lower.ProgramLowering, "lower",
                        lambda self: pytest.fail("lowered although the cache holds it"))
    x, stats = run(out)
    assert np.array_equal(x, fresh_x) and np.allclose(x, [[2, 4, 6], [2, 4, 6]])
    assert stats == fresh_stats
    py_x, py_stats = run(out, engine="python")       # the reference path on a cached layout
    assert np.array_equal(py_x, x) and py_stats == stats


def test_a_recompile_of_unchanged_sources_elaborates_nothing(
        tmp_path: Path, cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build(tmp_path)
    forbid_elaboration(monkeypatch)
    out = build(tmp_path, "out2")
    assert json.loads((out / "out.json").read_text())["params"] == {"N": "3"}


def test_results_equal_without_the_cache(tmp_path: Path, cache_root: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    cached = run(build(tmp_path))
    monkeypatch.setenv(cache.ENV_SWITCH, "0")
    out = build(tmp_path, "plain")
    assert read_output_dir(out).cache_key == ""
    plain = run(out)
    assert np.array_equal(cached[0], plain[0]) and cached[1] == plain[1]


def test_cache_off_writes_nothing(tmp_path: Path, cache_root: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cache.ENV_SWITCH, "off")
    run(build(tmp_path))
    assert not cache_root.exists()


def test_a_changed_source_is_elaborated_again(tmp_path: Path, cache_root: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    out = build(tmp_path)
    x, _ = run(out)
    assert np.allclose(x, 2 * np.array([1, 2, 3]))
    (tmp_path / "lib" / "util.csl").write_text("const factor: f32 = 5.0;\n")
    x, _ = run(out)
    assert np.allclose(x, 5 * np.array([1, 2, 3]))
    # That elaboration (of the recorded absolute path) is an entry of its own.
    forbid_elaboration(monkeypatch)
    x, _ = run(out)
    assert np.allclose(x, 5 * np.array([1, 2, 3]))


def test_a_file_appearing_earlier_on_the_import_path_is_seen(tmp_path: Path,
                                                             cache_root: Path) -> None:
    out = build(tmp_path)
    # util.csl is looked for next to pe.csl first: it was not there at the compile.
    (tmp_path / "prog" / "util.csl").write_text("const factor: f32 = 7.0;\n")
    x, _ = run(out)
    assert np.allclose(x, 7 * np.array([1, 2, 3]))


def test_a_change_of_waferscale_is_a_miss(tmp_path: Path, cache_root: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    out = build(tmp_path)
    key = read_output_dir(out).cache_key
    entry = cache.entry_for(key)
    assert entry is not None and entry.load_layout() is not None
    monkeypatch.setattr(cache, "_CODE", "another waferscale")
    assert entry.load_layout() is None
    assert cache.cache_key(tmp_path / "prog" / "layout.csl", L.CompileOptions()) != \
        cache.cache_key(tmp_path / "prog" / "layout.csl", L.CompileOptions(arch="wse2"))


def test_a_damaged_entry_is_a_miss(tmp_path: Path, cache_root: Path,
                                   caplog: pytest.LogCaptureFixture) -> None:
    out = build(tmp_path)
    for pkl in cache_root.rglob("layout-*.pkl"):
        pkl.write_bytes(b"not a pickle")
    with caplog.at_level(logging.WARNING, logger="waferscale.host.cache"):
        x, _ = run(out)
    assert np.allclose(x, 2 * np.array([1, 2, 3]))
    assert "unreadable entry" in caplog.text


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_a_directory_others_can_write_is_not_trusted(tmp_path: Path, cache_root: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    cache_root.mkdir(mode=0o700)
    cache_root.chmod(0o777)
    with caplog.at_level(logging.WARNING, logger="waferscale.host.cache"):
        out = build(tmp_path)
    assert read_output_dir(out).cache_key == "" and not manifests(cache_root)
    assert "writable by no one else" in caplog.text
    cache_root.chmod(0o700)
    assert stat.S_IMODE(cache_root.stat().st_mode) == 0o700


def test_unsupported_programs_are_remembered_too(tmp_path: Path, cache_root: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    out = build(tmp_path)

    def unsupported(self):
        raise lower.Unsupported("a construct for this test")
    monkeypatch.setattr(lower.ProgramLowering, "lower", unsupported)
    x, _ = run(out, engine="auto")                    # falls back to the Python path
    monkeypatch.setattr(lower.ProgramLowering, "lower",
                        lambda self: pytest.fail("lowered although the cache knows"))
    with pytest.raises(Exception, match="a construct for this test"):
        run(out, engine="compiled")
    assert np.allclose(x, 2 * np.array([1, 2, 3]))


def test_prune_keeps_the_most_recently_used(tmp_path: Path, cache_root: Path) -> None:
    for k in range(3):
        d = cache_root / "ab" / f"ab{k}"
        d.mkdir(parents=True)
        (d / cache.MANIFEST).write_text("{}")
        (d / "layout-x.pkl").write_bytes(b"x" * 1000)
        os.utime(d / cache.MANIFEST, (k, k))
    cache.prune(cache_root, max_bytes=2500)
    assert [m.parent.name for m in manifests(cache_root)] == ["ab1", "ab2"]
