"""The compile step (waferscale.host.compile, `waferscale cslc`) and `waferscale cs_python`
running unmodified SDK-style host scripts on a FakeDevice."""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from host_fake_device import FakeDevice
from waferscale.cli_util import CommandError
from waferscale.host import compile as ws_compile
from waferscale.host import sdkruntime
from waferscale.host.cli import register, sdk_modules
from waferscale.host.compile import read_output_dir
from waferscale.lang.errors import CslError

LAYOUT = """\
param M: i16;
param MEMCPYH2D_DATA_1_ID: i16;
param MEMCPYD2H_DATA_1_ID: i16;
const MEMCPYH2D_DATA_1: color = @get_color(MEMCPYH2D_DATA_1_ID);
const MEMCPYD2H_DATA_1: color = @get_color(MEMCPYD2H_DATA_1_ID);
const memcpy = @import_module("<memcpy/get_params>", .{ .width = 2, .height = 1,
  .MEMCPYH2D_1 = MEMCPYH2D_DATA_1, .MEMCPYD2H_1 = MEMCPYD2H_DATA_1 });
layout {
  @set_rectangle(2, 1);
  for (@range(i16, 2)) |px| {
    @set_tile_code(px, 0, "pe.csl", .{ .memcpy_params = memcpy.get_params(px), .M = M });
  }
  @export_name("y", [*]f32, true);
  @export_name("h", [*]f16, false);
  @export_name("compute", fn(f32, i16)void);
  @export_name("done", fn()void);
}
"""

PE = """\
param memcpy_params;
param M: i16;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
var y: [M]f32;
var h: [M]f16;
var y_ptr: [*]f32 = &y;
const h_ptr: [*]f16 = &h;
fn compute(alpha: f32, n: i16) void {
  y[0] = alpha * @as(f32, n);
  sys_mod.unblock_cmd_stream();
}
fn done() void {
  sys_mod.unblock_cmd_stream();
}
comptime {
  @export_symbol(y_ptr, "y");
  @export_symbol(h_ptr, "h");
  @export_symbol(compute);
  @export_symbol(done);
}
"""

PARAMS = ["--params=M:4,MEMCPYH2D_DATA_1_ID:0x2", "--params", "MEMCPYD2H_DATA_1_ID:3"]


@pytest.fixture
def app(tmp_path: Path) -> Path:
    d = tmp_path / "app"
    d.mkdir()
    (d / "layout.csl").write_text(LAYOUT)
    (d / "pe.csl").write_text(PE)
    return d


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="waferscale")
    register(p.add_subparsers(dest="command"))
    return p


def run(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args) or 0)


# -- compile -----------------------------------------------------------------------------------


def test_cslc_writes_the_sdk_output_shape(app: Path, monkeypatch) -> None:
    monkeypatch.chdir(app)
    assert run(["cslc", "--arch=wse3", "./layout.csl", "--fabric-dims=9,3",
                "--fabric-offsets=4,1", *PARAMS, "-o", "out", "--memcpy", "--channels", "1"]) == 0
    out = app / "out"
    params = json.loads((out / "out.json").read_text())["params"]
    assert params == {"M": "4", "MEMCPYH2D_DATA_1_ID": "2", "MEMCPYD2H_DATA_1_ID": "3"}
    rpc = json.loads((out / "bin" / "out_rpc.json").read_text())["rpc_symbols"]
    assert rpc == [
        {"id": 0, "kind": "Var", "name": "y", "sym_name": "y_ptr", "type": "[*]f32",
         "immutable": 0},
        {"id": 1, "kind": "Var", "name": "h", "sym_name": "h_ptr", "type": "[*]f16",
         "immutable": 1},
        {"id": 2, "kind": "Func", "name": "compute", "sym_name": "compute", "type": "void",
         "inputs": [{"name": "alpha", "type": "f32"}, {"name": "n", "type": "i16"}]},
        {"id": 3, "kind": "Func", "name": "done", "sym_name": "done", "type": "void"},
    ]
    rec = read_output_dir(out)
    assert (rec.width, rec.height, rec.fabric_dims, rec.fabric_offsets) == (2, 1, (9, 3), (4, 1))
    assert rec.layout == (app / "layout.csl").resolve()
    assert rec.memcpy_streams == {"MEMCPYH2D_1": 2, "MEMCPYD2H_1": 3}
    assert rec.exports["compute"].params == ("f32", "i16")
    assert rec.exports["h"].elem_bits == 16 and not rec.exports["h"].mutable
    assert set(rec.sources) == {str((app / "layout.csl").resolve()),
                                str((app / "pe.csl").resolve())}
    assert rec.changed_sources() == []
    opts = rec.compile_options()
    assert opts.memcpy and opts.channels == 1 and opts.fabric_dims == (9, 3)
    assert opts.params == (("M", "4"), ("MEMCPYH2D_DATA_1_ID", "0x2"),
                           ("MEMCPYD2H_DATA_1_ID", "3"))


def test_cslc_equals_form_default_output_and_verbose(app: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(app)
    assert run(["cslc", "layout.csl", *PARAMS, "-o=built", "--memcpy", "--channels=1",
                "--verbose"]) == 0
    assert (app / "built" / "out.json").is_file()
    assert "rectangle: 2x1 PEs" in capsys.readouterr().out
    assert run(["cslc", "layout.csl", *PARAMS, "--memcpy", "--channels=1"]) == 0
    assert (app / "out" / "waferscale.json").is_file()


def test_cslc_errors_are_csl_errors_and_leave_no_output(app: Path, monkeypatch) -> None:
    monkeypatch.chdir(app)
    with pytest.raises(CslError, match="--fabric-dims of at least 9,3"):
        run(["cslc", "layout.csl", *PARAMS, "--fabric-dims=8,3", "--memcpy", "--channels=1"])
    with pytest.raises(CslError, match="compile with --memcpy"):
        run(["cslc", "layout.csl", *PARAMS])
    assert not (app / "out").exists()


def test_compile_function(app: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    lib = tmp_path / "lib"
    lib.mkdir()
    out = ws_compile(app / "layout.csl", params={"M": 4, "MEMCPYH2D_DATA_1_ID": 2,
                                                  "MEMCPYD2H_DATA_1_ID": 3},
                     memcpy=True, channels=1, fabric_dims="10,4", import_paths=["lib"],
                     output=tmp_path / "o")
    assert out == tmp_path / "o"
    rec = read_output_dir(out)
    assert rec.fabric_dims == (10, 4) and rec.params["M"] == "4"
    assert rec.compile_options().import_paths == (str(lib.resolve()),)
    # pairs work as well as mappings
    ws_compile(app / "layout.csl", params=[("M", 2), ("MEMCPYH2D_DATA_1_ID", 2),
                                           ("MEMCPYD2H_DATA_1_ID", 3)],
               memcpy=True, channels=1, output=tmp_path / "o2")
    assert read_output_dir(tmp_path / "o2").params["M"] == "2"


@pytest.mark.parametrize("kw, match", [
    ({"params": "M:4"}, "not a string"),
    ({"params": {"M": True}}, "value must be a number"),
    ({"params": [("M",)]}, r"expected \(name, value\) pairs"),
    ({"params": {3: 4}}, "name must be a non-empty string"),
    ({"fabric_dims": (1, 2, 3)}, "fabric_dims must be two integers"),
])
def test_compile_argument_errors(app: Path, tmp_path: Path, kw, match) -> None:
    with pytest.raises(CslError, match=match):
        ws_compile(app / "layout.csl", output=tmp_path / "o", **kw)


def test_stale_output_dir_is_detected(app: Path, tmp_path: Path) -> None:
    out = ws_compile(app / "layout.csl", params={"M": 4, "MEMCPYH2D_DATA_1_ID": 2,
                                                  "MEMCPYD2H_DATA_1_ID": 3},
                     memcpy=True, channels=1, output=tmp_path / "o")
    (app / "pe.csl").write_text(PE.replace("var y: [M]f32;", "var y: [M + 1]f32;"))
    assert read_output_dir(out).changed_sources() == [str((app / "pe.csl").resolve())]


# -- cs_python ---------------------------------------------------------------------------------

HOST_SCRIPT = """\
#!/usr/bin/env cs_python
import argparse
import json
import numpy as np

from cerebras.sdk.runtime.sdkruntimepybind import (  # pylint: disable=no-name-in-module
    SdkRuntime, MemcpyDataType, MemcpyOrder)
from cerebras.sdk.sdk_utils import memcpy_view, input_array_to_u32
from cerebras.sdk.debug.debug_util import debug_util

parser = argparse.ArgumentParser()
parser.add_argument("--name", help="the test compile output dir")
parser.add_argument("--cmaddr", help="IP:port for CS system")
args = parser.parse_args()

with open(f"{args.name}/out.json", encoding="utf-8") as f:
    params = json.load(f)["params"]
M = int(params["M"])
H2D = int(params["MEMCPYH2D_DATA_1_ID"])

runner = SdkRuntime(args.name, cmaddr=args.cmaddr)
y_symbol = runner.get_id("y")
runner.load()
runner.run()

y = np.arange(2 * M, dtype=np.float32)
runner.memcpy_h2d(y_symbol, y, 0, 0, 2, 1, M, streaming=False,
                  order=MemcpyOrder.ROW_MAJOR, data_type=MemcpyDataType.MEMCPY_32BIT,
                  nonblock=True)
x = input_array_to_u32(np.array([1.0, 2.0], np.float16), 1, 1)
runner.memcpy_h2d(H2D, x, 0, 0, 2, 1, 1, streaming=True, order=MemcpyOrder.ROW_MAJOR,
                  data_type=MemcpyDataType.MEMCPY_16BIT, nonblock=False)
runner.launch("compute", np.float32(2.0), np.int16(3), nonblock=False)
out = np.zeros(2 * M, np.float32)
runner.memcpy_d2h(out, y_symbol, 0, 0, 2, 1, M, streaming=False,
                  order=MemcpyOrder.COL_MAJOR, data_type=MemcpyDataType.MEMCPY_32BIT,
                  nonblock=False)
runner.stop()

expected = np.arange(2 * M, dtype=np.float32).reshape(1, 2, M)
expected[0, :, 0] = 6.0
np.testing.assert_array_equal(out, expected.ravel(order="F"))
h = memcpy_view(np.array([0x3C00], np.uint32), np.dtype(np.float16))
assert h[0] == 1.0
assert debug_util(args.name).get_symbol(5, 1, "y", np.float32)[0] == 6.0
print("SUCCESS!")
"""


def fake_compute(dev: FakeDevice, args) -> None:
    """y[0] = alpha * n on every PE, as pe.csl's compute does."""
    (_, alpha), (_, n) = args
    for x in range(dev.width):
        for y in range(dev.height):
            w = dev.words("y", x, y).copy()
            w[:1] = np.array([np.float32(alpha) * np.float32(n)], np.float32).view(np.uint32)
            dev.memory[("y", (x, y))] = w


@pytest.fixture
def compiled(app: Path, monkeypatch) -> Path:
    monkeypatch.chdir(app)
    run(["cslc", "layout.csl", *PARAMS, "--memcpy", "--channels=1", "-o", "out"])
    monkeypatch.setenv(sdkruntime.ENV_DEVICE_FACTORY, "host_fake_device:FakeDevice.from_output_dir")
    monkeypatch.setattr(FakeDevice, "default_functions", {"compute": fake_compute})
    return app


def test_cs_python_runs_an_sdk_host_script_unmodified(compiled: Path, capsys) -> None:
    (compiled / "run.py").write_text(HOST_SCRIPT)
    had_cerebras = "cerebras" in sys.modules
    argv_before, path_before = list(sys.argv), list(sys.path)
    assert run(["cs_python", "run.py", "--name", "out"]) == 0
    assert "SUCCESS!" in capsys.readouterr().out
    dev = FakeDevice.instances[-1]
    assert [e[0] for e in dev.log] == ["memcpy_h2d", "stream_h2d", "launch", "memcpy_d2h",
                                       "stop"]
    assert dev.h2d_streams[2][(1, 0)] == [0x4000]          # f16 2.0, index 0 (fast_dim 1)
    # nothing leaks out of the command
    assert ("cerebras" in sys.modules) == had_cerebras
    assert "cerebras.sdk.runtime.sdkruntimepybind" not in sys.modules
    assert sys.argv == argv_before and sys.path == path_before


def test_cs_python_script_errors(compiled: Path, capsys) -> None:
    bad = HOST_SCRIPT.replace('np.float32(2.0), np.int16(3)', 'np.float32(2.0), 1.5')
    (compiled / "bad.py").write_text(bad)
    assert run(["cs_python", "bad.py", "--name", "out"]) == 1
    err = capsys.readouterr().err
    assert "bad.py" in err and 'runner.launch("compute"' in err
    assert "DeviceError: launch: argument 2 of compute(f32, i16)" in err
    assert "sdkruntime.py" not in err and "runpy" not in err
    (compiled / "exit3.py").write_text("import sys\nsys.exit(3)\n")
    assert run(["cs_python", "exit3.py"]) == 3
    (compiled / "argv.py").write_text(textwrap.dedent("""\
        import sys
        assert __name__ == "__main__"
        print(sys.argv[1:])
        """))
    assert run(["cs_python", "argv.py", "-h", "--x", "1"]) == 0
    assert "['-h', '--x', '1']" in capsys.readouterr().out
    (compiled / "boom.py").write_text("raise ValueError('boom')\n")
    assert run(["cs_python", "boom.py"]) == 1
    assert "ValueError: boom" in capsys.readouterr().err
    with pytest.raises(CommandError, match="cannot open script 'missing.py'"):
        run(["cs_python", "missing.py"])


def test_cs_python_refuses_cmaddr(compiled: Path, capsys) -> None:
    (compiled / "run.py").write_text(HOST_SCRIPT)
    assert run(["cs_python", "run.py", "--name", "out", "--cmaddr", "1.2.3.4:9000"]) == 1
    assert "needs Cerebras' SDK" in capsys.readouterr().err


def test_sdk_modules_are_installed_only_inside(monkeypatch) -> None:
    sentinel = object()
    monkeypatch.setitem(sys.modules, "cerebras", sentinel)   # e.g. a real SDK package
    with sdk_modules():
        from cerebras.sdk.runtime.sdkruntimepybind import SdkRuntime  # type: ignore
        from cerebras.sdk.sdk_utils import calculate_cycles  # type: ignore
        assert SdkRuntime is sdkruntime.SdkRuntime
        assert calculate_cycles.__module__ == "waferscale.host.sdk_utils"
    assert sys.modules["cerebras"] is sentinel
    assert "cerebras.sdk" not in sys.modules


def test_subprocess_cs_python_end_to_end(compiled: Path) -> None:
    """A fresh interpreter: the command as a user runs it, with the fake device chosen by the
    environment variable (the lead registers host.cli in waferscale.cli; this drives it
    directly)."""
    import subprocess
    (compiled / "run.py").write_text(HOST_SCRIPT)
    driver = ("import argparse, sys; from waferscale.host.cli import register; "
              "p = argparse.ArgumentParser(); register(p.add_subparsers()); "
              "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))")
    here = str(Path(__file__).resolve().parent)
    env = dict(os.environ, PYTHONPATH=here + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # default_functions is per process: give compute its behaviour through a tiny module
    (compiled / "fake_factory.py").write_text(textwrap.dedent("""\
        from host_fake_device import FakeDevice
        from test_host_cli import fake_compute

        def make(bin_dir, **options):
            dev = FakeDevice.from_output_dir(bin_dir, **options)
            dev.functions["compute"] = fake_compute
            return dev
        """))
    env["PYTHONPATH"] = str(compiled) + os.pathsep + env["PYTHONPATH"]
    env[sdkruntime.ENV_DEVICE_FACTORY] = "fake_factory:make"
    proc = subprocess.run([sys.executable, "-c", driver, "cs_python", "run.py", "--name", "out"],
                          cwd=compiled, env=env, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "SUCCESS!" in proc.stdout
