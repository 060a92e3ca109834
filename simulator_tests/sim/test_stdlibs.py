"""waferscale's own <random> and <debug> libraries (lang/stdlib_random.csl,
lang/stdlib_debug.csl, instantiated by lang/modules.py), each in a program of ours, run on
both arches and both PE paths (the Python interpreter and the compiled engine must agree bit
for bit: memory, cycles, counters, errors; twopaths.assert_same):

* <random>'s random_f32(lower, upper): values in [lower, upper), the same sequence on every
  run; the generator itself is a doc-gap (stdlib_random.csl says which one this is);
* <debug>'s trace_* records, read back on the host with debug_util.read_trace in the SDK's
  record format (tags, little-endian values, NUL-padded strings, 48-bit timestamps), two
  instances with their own keys; a record past the buffer is a run-time error; bad params
  are compile-time errors at the import.
  trace_string's words come from the library's comptime string helper (the registry's
  debug.string_nwords, debug.string_tag and debug.string_word), folded by the lowering.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from waferscale.host.debug_util import decode_trace
from waferscale.lang.errors import CslError
from waferscale.sim.fabric import cpp_available

from twopaths import ARCHS, compile_one_pe, run_both

pytestmark = pytest.mark.skipif(not cpp_available(), reason="waferscale._fabric is not built")


def _xorshift_f32(n: int, lo: float, hi: float) -> list[float]:
    """stdlib_random.csl's generator, in numpy f32 arithmetic."""
    s, out = 0xDEADBEEF, []
    for _ in range(n):
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        unit = np.float32(s >> 8) * np.float32(2.0 ** -24)
        out.append(float(np.float32(lo) + (np.float32(hi) - np.float32(lo)) * unit))
    return out


RANDOM_DECLS = 'const random = @import_module("<random>");'
RANDOM_BODY = """
  var i: u16 = 0;
  while (i < 8) : (i += 1) {
    out[i] = random.random_f32(-1.0, 3.0);
  }
"""


@pytest.mark.parametrize("arch", ARCHS)
def test_random_f32(tmp_path, arch):
    out, err, _ = run_both(tmp_path, arch, RANDOM_DECLS, RANDOM_BODY)
    assert err is None
    assert ((out >= -1.0) & (out < 3.0)).all()
    assert len(set(out.tolist())) == 8
    assert out.tolist() == _xorshift_f32(8, -1.0, 3.0)


DEBUG_DECLS = """
const trace = @import_module("<debug>", .{ .key = "trace", .buffer_size = 64 });
const times = @import_module("<debug>", .{ .key = "times", .buffer_size = 8 });
"""
DEBUG_BODY = """
  times.trace_timestamp();
  trace.trace_string("hello");
  trace.trace_u32(0x12345678);
  trace.trace_i32(-5);
  trace.trace_u16(65535);
  trace.trace_i16(-2);
  trace.trace_f32(1.5);
  trace.trace_f16(-0.25);
  trace.trace_bool(true);
  trace.trace_bool(false);
  trace.trace_string("a string of more than sixteen bytes, to take several words");
  times.trace_timestamp();
"""


def _read(dev, key: str) -> list:
    return decode_trace(dev.read_symbol(0, 0, f"$$csl_debug.{key}.buffer"),
                        int(dev.read_symbol(0, 0, f"$$csl_debug.{key}.buffer_index")[0]))


@pytest.mark.parametrize("arch", ARCHS)
def test_debug_trace_records(tmp_path, arch):
    devs: list = []
    out, err, _ = run_both(tmp_path, arch, DEBUG_DECLS, DEBUG_BODY, keep=devs)
    assert err is None
    for dev in devs:
        got = _read(dev, "trace")
        assert got == ["hello", 0x12345678, -5, 65535, -2, 1.5, -0.25, True, False,
                       "a string of more than sixteen bytes, to take several words"]
        t0, t1 = _read(dev, "times")
        assert isinstance(t0, int) and 0 < t0 < t1
    # the raw words of the first record: tag 's' with 6 bytes ("hello" + NUL), then the text
    words = devs[0].read_symbol(0, 0, "$$csl_debug.trace.buffer")
    assert words[:4].tolist() == [ord("s") | 6 << 8,
                                  *struct.unpack("<3H", b"hello\0")]


@pytest.mark.parametrize("arch", ARCHS)
def test_debug_buffer_overflow_is_a_run_time_error(tmp_path, arch):
    decls = 'const t = @import_module("<debug>", .{ .key = "t", .buffer_size = 4 });'
    body = "  t.trace_u32(1);\n  t.trace_u32(2);"
    _, err, _ = run_both(tmp_path, arch, decls, body)
    assert err is not None and "$$csl_debug.t.buffer" in err and "PE(0,0)" in err


@pytest.mark.parametrize("decls, message", [
    ('const t = @import_module("<debug>", .{ .buffer_size = 4 });', "needs the param '.key'"),
    ('const t = @import_module("<debug>", .{ .key = "t" });', "needs the param '.buffer_size'"),
    ('const t = @import_module("<debug>", .{ .key = "t", .buffer_size = 4, .x = 1 });',
     "has no param '.x'"),
    ('const r = @import_module("<random>", .{ .seed = 1 });', "<random> has no param '.seed'"),
    ('const a = @import_module("<debug>", .{ .key = "k", .buffer_size = 4 });\n'
     'const b = @import_module("<debug>", .{ .key = "k", .buffer_size = 4 });',
     "<debug> key 'k' is already used"),
])
def test_library_param_errors(tmp_path, decls, message):
    with pytest.raises(CslError, match="pe.csl:") as e:
        compile_one_pe(tmp_path, decls)
    assert message in str(e.value)


@pytest.mark.parametrize("arch", ARCHS)
def test_trace_string_too_long(tmp_path, arch):
    """A string record holds at most 254 bytes (the tag's high byte, even): a compile-time
    error at the call; 254 bytes fit."""
    decls = 'const t = @import_module("<debug>", .{ .key = "t", .buffer_size = 200 });'
    with pytest.raises(CslError, match=r"pe\.csl:\d+:18: error: trace_string: a string of "
                                       r"255 bytes does not fit a <debug> record \(at most 254"):
        run_both(tmp_path, arch, decls, '  t.trace_string("' + "x" * 255 + '");')
    devs: list = []
    _, err, _ = run_both(tmp_path, arch, decls, '  t.trace_string("' + "y" * 254 + '");',
                         keep=devs)
    assert err is None and _read(devs[1], "t") == ["y" * 254]


HOST_LAYOUT = """
const memcpy = @import_module("<memcpy/get_params>", .{ .width = 2, .height = 1 });
layout {
  @set_rectangle(2, 1);
  for (@range(u16, 2)) |x| {
    @set_tile_code(x, 0, "pe.csl", .{ .memcpy_params = memcpy.get_params(x), .me = x });
  }
  @export_name("run", fn()void);
}
"""
HOST_PE = """
param memcpy_params;
param me: u16;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
const log = @import_module("<debug>", .{ .key = "log", .buffer_size = 32 });
fn run() void {
  log.trace_string("pe");
  log.trace_u16(me * 10);
  log.trace_timestamp();
  sys_mod.unblock_cmd_stream();
}
comptime { @export_symbol(run); }
"""


@pytest.mark.parametrize("engine", ["python", "compiled"])
@pytest.mark.parametrize("arch", ARCHS)
def test_read_trace_from_the_host(tmp_path, arch, engine):
    """The SDK's host calls: SdkRuntime, then debug_util(bin_dir).read_trace with fabric
    coordinates (program PE (x, 0) is fabric (4 + x, 1)) after stop()."""
    from waferscale.host import compile as ws_compile
    from waferscale.host.debug_util import debug_util
    from waferscale.host.sdkruntime import SdkRuntime
    from waferscale.sim.device import SimulatorDevice
    (tmp_path / "layout.csl").write_text(HOST_LAYOUT)
    (tmp_path / "pe.csl").write_text(HOST_PE)
    out = ws_compile(tmp_path / "layout.csl", arch=arch, memcpy=True, channels=1,
                     fabric_dims=(9, 3), fabric_offsets=(4, 1), output=tmp_path / "out")
    r = SdkRuntime(out, device=lambda d, **kw: SimulatorDevice.from_output_dir(
        d, engine=engine, simprint_log=None))
    r.load()
    r.run()
    r.launch("run", nonblock=False)
    r.stop()
    d = debug_util(str(out))
    for x in range(2):
        s, v, t = d.read_trace(4 + x, 1, "log")
        assert (s, v) == ("pe", 10 * x) and isinstance(t, int) and t > 0
    with pytest.raises(Exception, match="no <debug> trace with key 'other'"):
        d.read_trace(4, 1, "other")
