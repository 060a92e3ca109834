"""SdkRuntime against a FakeDevice: lifecycle, argument checking, memcpy in both modes,
broadcasts, launch/call type checking, tasks, device factories and debug_util."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
from host_fake_device import FakeDevice
from waferscale.host import sdkruntime as sdkrt
from waferscale.host.compile import write_output_dir
from waferscale.host.debug_util import debug_util
from waferscale.host.device import DeadlockError, DeviceError, ExportInfo
from waferscale.host.sdkruntime import (
    ENV_DEVICE_FACTORY,
    MemcpyDataType,
    MemcpyOrder,
    SdkRuntime,
    Task,
    set_device_factory,
)

ROW, COL = MemcpyOrder.ROW_MAJOR, MemcpyOrder.COL_MAJOR
B32, B16 = MemcpyDataType.MEMCPY_32BIT, MemcpyDataType.MEMCPY_16BIT
W, H = 4, 3
H2D_1, H2D_2, D2H_1 = 2, 4, 3

EXPORTS = {e.name: e for e in [
    ExportInfo("A", "data", "[*]f32", True, 32),
    ExportInfo("B", "data", "[*]f16", True, 16),
    ExportInfo("R", "data", "[*]f32", False, 32),
    ExportInfo("bytes", "data", "[*]u8", True, 8),
    ExportInfo("compute", "fn", "fn(f32, i16) void", False, 0, ("f32", "i16")),
    ExportInfo("f_all", "fn", "fn(f32, f16, i32, u32, i16, u16) void", False, 0,
               ("f32", "f16", "i32", "u32", "i16", "u16")),
    ExportInfo("f_none", "fn", "fn() void", False, 0),
    ExportInfo("f_bool", "fn", "fn(bool) void", False, 0, ("bool",)),
]}


def make_out(path: Path, exports: dict[str, ExportInfo] = EXPORTS, width: int = W,
             height: int = H, sources: dict[str, str] | None = None) -> Path:
    return write_output_dir(
        path, layout=path / "layout.csl", options={"arch": "wse3"}, width=width,
        height=height, fabric_dims=(width + 7, height + 2), fabric_offsets=(4, 1),
        exports=exports, params={"M": "4"},
        memcpy_streams={"MEMCPYH2D_1": H2D_1, "MEMCPYH2D_2": H2D_2, "MEMCPYD2H_1": D2H_1},
        sources=sources)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return make_out(tmp_path / "out")


@pytest.fixture
def rt(out: Path) -> SdkRuntime:
    r = SdkRuntime(out, device=FakeDevice.from_output_dir)
    r.load()
    r.run()
    return r


def dev_of(r: SdkRuntime) -> FakeDevice:
    assert isinstance(r.device, FakeDevice)
    return r.device


def h2d(r: SdkRuntime, dest, src, x, y, w, h, l, *, streaming=False, dt=B32, order=ROW,
        nonblock=False) -> Task:
    return r.memcpy_h2d(dest, src, x, y, w, h, l, streaming=streaming, data_type=dt,
                        order=order, nonblock=nonblock)


def d2h(r: SdkRuntime, dest, src, x, y, w, h, l, *, streaming=False, dt=B32, order=ROW,
        nonblock=False) -> Task:
    return r.memcpy_d2h(dest, src, x, y, w, h, l, streaming=streaming, data_type=dt,
                        order=order, nonblock=nonblock)


# -- lifecycle ---------------------------------------------------------------------------------


def test_lifecycle_in_sdk_order(out: Path) -> None:
    r = SdkRuntime(out, device=FakeDevice.from_output_dir)
    assert r.get_id("A") == 0 and r.get_id("compute") == 4   # ids known before load()
    assert r.device is None
    r.load()
    dev = dev_of(r)
    assert dev.options == {"suppress_simfab_trace": False, "simfab_numthreads": 5,
                           "msg_level": "WARNING"}
    r.run()
    r.launch("f_none", nonblock=False)
    r.stop()
    assert dev.stopped and dev.log[-1] == ("stop",)


def test_lifecycle_errors(out: Path) -> None:
    r = SdkRuntime(out, device=FakeDevice.from_output_dir)
    with pytest.raises(DeviceError, match=r"Cannot call run\(\) multiple times, or call run\(\) "
                       r"if load\(\) has not been called"):
        r.run()
    with pytest.raises(DeviceError, match=r"must be running to accept memcpy commands "
                       r"\(call load\(\) and run\(\) first\)"):
        h2d(r, 0, np.zeros(1, np.float32), 0, 0, 1, 1, 1)
    with pytest.raises(DeviceError, match=r"Cannot call stop\(\)"):
        r.stop()
    with pytest.raises(DeviceError, match="read_symbol needs a loaded program"):
        r.read_symbol(0, 0, "A")
    r.load()
    with pytest.raises(DeviceError, match=r"Cannot call load\(\) multiple times"):
        r.load()
    with pytest.raises(DeviceError, match=r"accept launch commands \(call run\(\) first\)"):
        r.launch("f_none")
    r.run()
    with pytest.raises(DeviceError, match=r"Cannot call run\(\) multiple times"):
        r.run()
    r.stop()
    with pytest.raises(DeviceError, match=r"stop\(\) was already called"):
        r.call("f_none", [])
    with pytest.raises(DeviceError, match=r"Cannot call stop\(\) multiple times"):
        r.stop()


def test_get_id_of_unknown_name_is_none_with_a_warning(out: Path, caplog) -> None:
    r = SdkRuntime(out, device=FakeDevice.from_output_dir)
    with caplog.at_level(logging.WARNING, logger="waferscale"):
        assert r.get_id("nope") is None
    assert "exports no such name" in caplog.text and "A, B, R" in caplog.text
    with pytest.raises(DeviceError, match="a str"):
        r.get_id(3)  # type: ignore[arg-type]


def test_constructor_checks(out: Path, tmp_path: Path, caplog) -> None:
    with pytest.raises(DeviceError, match="needs Cerebras' SDK"):
        SdkRuntime(out, cmaddr="10.0.0.1:9000")
    # An empty address is the simulator (the SDK's single-tile-matvec: --cmaddr default "").
    assert SdkRuntime(out, cmaddr="").bin_dir is not None
    with pytest.raises(DeviceError, match="msg_level must be one of"):
        SdkRuntime(out, msg_level="LOUD")
    for n in (0, 65):
        with pytest.raises(DeviceError, match="simfab_numthreads must be 1..64"):
            SdkRuntime(out, simfab_numthreads=n)
    with pytest.raises(DeviceError, match="unexpected keyword argument.*cmadr"):
        SdkRuntime(out, cmadr="x")
    with pytest.raises(DeviceError, match="suppress_simfab_trace must be True or False"):
        SdkRuntime(out, suppress_simfab_trace="yes")
    with caplog.at_level(logging.WARNING, logger="waferscale"):
        r = SdkRuntime(out, memcpy_required=False, msg_level="debug", simfab_numthreads=64,
                       suppress_simfab_trace=True, device=FakeDevice.from_output_dir)
    assert "ignoring SDK-internal keyword(s) memcpy_required" in caplog.text
    r.load()
    assert dev_of(r).options == {"suppress_simfab_trace": True, "simfab_numthreads": 64,
                                 "msg_level": "DEBUG"}
    with pytest.raises(DeviceError, match="does not exist; compile first"):
        SdkRuntime(tmp_path / "missing")
    (tmp_path / "sdk_out").mkdir()
    (tmp_path / "sdk_out" / "out.json").write_text("{}")
    with pytest.raises(DeviceError, match="compiled by Cerebras' cslc"):
        SdkRuntime(tmp_path / "sdk_out")
    (out / "waferscale.json").write_text("{not json")
    with pytest.raises(DeviceError, match="malformed compile record"):
        SdkRuntime(out)
    with pytest.raises(DeviceError, match="compile output directory"):
        SdkRuntime(42)  # type: ignore[arg-type]


def test_load_checks_the_device_against_the_output_dir(out: Path, tmp_path: Path) -> None:
    small = FakeDevice(2, 2, EXPORTS)
    with pytest.raises(DeviceError, match="device is 2x2 PEs but .* compiled for 4x3"):
        SdkRuntime(out, device=small).load()
    extra = dict(EXPORTS, Z=ExportInfo("Z", "data", "[*]f32", True, 32))
    with pytest.raises(DeviceError, match="exports Z, which .*out_rpc.json.* does not list"):
        SdkRuntime(out, device=FakeDevice(W, H, extra)).load()
    with pytest.raises(DeviceError, match="returned int, which does not implement"):
        SdkRuntime(out, device=lambda d, **kw: 3).load()


def test_changed_source_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "pe.csl"
    src.write_text("var x: i16;\n")
    from hashlib import sha256
    out = make_out(tmp_path / "out", sources={str(src): sha256(src.read_bytes()).hexdigest()})
    SdkRuntime(out, device=FakeDevice.from_output_dir).load()
    src.write_text("var x: i32;\n")
    with pytest.raises(DeviceError, match=r"pe.csl changed since .* recompile"):
        SdkRuntime(out, device=FakeDevice.from_output_dir).load()


# -- device factories --------------------------------------------------------------------------


def test_factory_precedence(out: Path, monkeypatch) -> None:
    monkeypatch.setenv(ENV_DEVICE_FACTORY, "host_fake_device:FakeDevice.from_output_dir")
    r = SdkRuntime(out)
    r.load()
    assert isinstance(r.device, FakeDevice)

    made: list[Path] = []

    def hook(bin_dir, **options):
        made.append(Path(bin_dir))
        return FakeDevice(W, H, EXPORTS)

    previous = set_device_factory(hook)
    try:
        SdkRuntime(out).load()                       # the hook beats the environment
        assert made == [out]
        explicit = FakeDevice(W, H, EXPORTS)
        r = SdkRuntime(out, device=explicit)         # device= beats the hook
        r.load()
        assert r.device is explicit and made == [out]
    finally:
        assert set_device_factory(previous) is hook


@pytest.mark.parametrize("spec, match", [
    ("no_colon", "must look like 'package.module:callable'"),
    ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
    ("host_fake_device:Nope.f", "has no attribute 'Nope.f'"),
    ("host_fake_device:ELEM_DTYPES", "is not callable"),
])
def test_bad_factory_environment(out: Path, monkeypatch, spec, match) -> None:
    monkeypatch.setenv(ENV_DEVICE_FACTORY, spec)
    with pytest.raises(DeviceError, match=match):
        SdkRuntime(out).load()


def test_default_factory_reports_a_missing_simulator(out: Path, monkeypatch) -> None:
    monkeypatch.delenv(ENV_DEVICE_FACTORY, raising=False)
    monkeypatch.setitem(sys.modules, "waferscale.sim.device", None)
    with pytest.raises(DeviceError, match="fabric simulator .* is not available"):
        SdkRuntime(out).load()


# -- memcpy, copy mode -------------------------------------------------------------------------


@pytest.mark.parametrize("order", [ROW, COL])
def test_copy_h2d_places_elements_per_pe_and_d2h_reads_back(rt: SdkRuntime, order) -> None:
    dev = dev_of(rt)
    x0, y0, w, h, l = 1, 1, 3, 2, 2
    src = np.arange(w * h * l, dtype=np.float32) + 0.5
    t = h2d(rt, rt.get_id("A"), src, x0, y0, w, h, l, order=order)
    assert rt.is_task_done(t)
    for r in range(h):
        for c in range(w):
            idx = [(r * w + c) * l + k if order == ROW else (k * w + c) * h + r
                   for k in range(l)]
            np.testing.assert_array_equal(dev.words("A", x0 + c, y0 + r),
                                          src[idx].view(np.uint32))
    assert dev.words("A", 0, 0).size == 0            # outside the ROI: untouched
    back = np.zeros(w * h * l, np.float32)
    d2h(rt, back, rt.get_id("A"), x0, y0, w, h, l, order=order)
    np.testing.assert_array_equal(back, src)


def test_sixteen_bit_copy(rt: SdkRuntime) -> None:
    dev = dev_of(rt)
    vals = np.array([1.0, -2.0, 0.5, 65504.0], np.float16)
    words = vals.view(np.uint16).astype(np.uint32) | np.uint32(0x00070000)  # junk high half
    h2d(rt, rt.get_id("B"), words, 0, 0, 2, 1, 2, dt=B16)
    assert dev.log[-1][4] == 16
    assert dev.words("B", 0, 0).tolist() == [0x3C00, 0xC000]
    np.testing.assert_array_equal(dev_of(rt).read_symbol(1, 0, "B"), vals[2:])
    back = np.full(4, 0xFFFFFFFF, np.uint32)
    d2h(rt, back, rt.get_id("B"), 0, 0, 2, 1, 2, dt=B16)
    np.testing.assert_array_equal(back, vals.view(np.uint16).astype(np.uint32))


def test_width_mismatch_only_warns(rt: SdkRuntime, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="waferscale"):
        h2d(rt, rt.get_id("B"), np.zeros(1, np.uint32), 0, 0, 1, 1, 1, dt=B32)
    assert "'B' is [*]f16 but data_type moves 32-bit elements" in caplog.text


def test_d2h_fills_the_callers_array_in_place(rt: SdkRuntime) -> None:
    h2d(rt, rt.get_id("A"), np.array([7, 8], np.int32), 0, 0, 1, 1, 2)
    dest = np.zeros(2, np.int32)
    same = dest
    t = d2h(rt, dest, rt.get_id("A"), 0, 0, 1, 1, 2, nonblock=True)
    assert same is dest and dest.tolist() == [7, 8]
    assert rt.is_task_done(t)
    assert rt.task_wait(t) is None
    # read-only symbols may be read
    d2h(rt, dest, rt.get_id("R"), 0, 0, 1, 1, 2)
    assert dest.tolist() == [0, 0]


@pytest.mark.parametrize("call, match", [
    (lambda r: h2d(r, None, np.zeros(1, np.float32), 0, 0, 1, 1, 1),
     "symbol id is None; get_id.. returns None"),
    (lambda r: h2d(r, 99, np.zeros(1, np.float32), 0, 0, 1, 1, 1),
     "no exported symbol has id 99 .*A=0.*pass streaming=True"),
    (lambda r: h2d(r, 4, np.zeros(1, np.float32), 0, 0, 1, 1, 1),
     "'compute' is a function"),
    (lambda r: h2d(r, 2, np.zeros(1, np.float32), 0, 0, 1, 1, 1),
     "'R' is exported read-only"),
    (lambda r: h2d(r, 3, np.zeros(1, np.uint32), 0, 0, 1, 1, 1),
     r"'bytes' is \[\*\]u8; memcpy moves 16- or 32-bit"),
    (lambda r: h2d(r, 0, np.zeros(4, np.float64), 0, 0, 2, 2, 1), "dtype float64"),
    (lambda r: h2d(r, 0, np.zeros(3, np.float32), 0, 0, 2, 2, 1),
     r"3 elements but the memcpy moves 4 \(w\*h\*l = 2\*2\*1\)"),
    (lambda r: h2d(r, 0, [1.0], 0, 0, 1, 1, 1), "must be a numpy array"),
    (lambda r: h2d(r, 0, np.zeros(2, np.float32), 3, 0, 2, 1, 1),
     "h2d subrectangle must be inside the core rectangle"),
    (lambda r: d2h(r, np.zeros(2, np.float32), 0, 0, 2, 1, 2, 1),
     "d2h subrectangle must be inside the core rectangle"),
    (lambda r: h2d(r, 0, np.zeros(0, np.float32), 0, 0, 1, 1, 0),
     "elements per PE must be at least 1"),
    (lambda r: d2h(r, np.zeros(8, np.float32)[::2], 0, 0, 0, 2, 2, 1), "not C-contiguous"),
    (lambda r: d2h(r, np.zeros(4, np.float16), 0, 0, 0, 2, 2, 1),
     "dtype float16.*read the values with sdk_utils.memcpy_view"),
    (lambda r: h2d(r, 0, np.zeros(1, np.float32), 0, 0, 1, 1, 1, streaming=1),
     "streaming must be True or False"),
    (lambda r: h2d(r, 0, np.zeros(1, np.float32), 0, 0, 1, 1, 1, nonblock=None),
     "nonblock must be True or False"),
    (lambda r: h2d(r, 0, np.zeros(1, np.float32), 0, 0, 1, 1, 1, dt=2),
     "Illegal data type option for memcpy"),
    (lambda r: d2h(r, np.zeros(1, np.float32), 0, 0, 0, 1, 1, 1, order="C"),
     "Illegal order option for memcpy"),
])
def test_memcpy_argument_errors(rt: SdkRuntime, call, match) -> None:
    n_before = len(dev_of(rt).log)
    with pytest.raises(DeviceError, match=match):
        call(rt)
    assert len(dev_of(rt).log) == n_before           # nothing reached the device


def test_memcpy_keywords_are_required(rt: SdkRuntime) -> None:
    with pytest.raises(TypeError, match="order"):
        rt.memcpy_h2d(0, np.zeros(1, np.float32), 0, 0, 1, 1, 1,  # type: ignore[call-arg]
                      streaming=False, data_type=B32, nonblock=False)


# -- streaming ---------------------------------------------------------------------------------


def test_streaming_h2d_sends_whole_words_in_issue_order(rt: SdkRuntime) -> None:
    dev = dev_of(rt)
    x = np.array([0x0000_3C00, 0x0001_4000, 0x0000_4200, 0x0001_4400], np.uint32)
    h2d(rt, H2D_1, x, 0, 0, 2, 1, 2, streaming=True, dt=B16, nonblock=True)
    h2d(rt, H2D_2, np.array([1.5, 2.5, 3.5], np.float32), 0, 0, 1, 3, 1, streaming=True)
    assert [e[0:2] for e in dev.log] == [("stream_h2d", H2D_1), ("stream_h2d", H2D_2)]
    assert dev.h2d_streams[H2D_1][(0, 0)] == [0x3C00, 0x0001_4000]   # index half kept
    assert dev.h2d_streams[H2D_1][(1, 0)] == [0x4200, 0x0001_4400]
    assert dev.h2d_streams[H2D_2][(0, 2)] == [int(np.float32(3.5).view(np.uint32))]


def test_streaming_d2h_and_deadlock(rt: SdkRuntime) -> None:
    dev = dev_of(rt)
    dev.d2h_pending[D2H_1][(3, 0)].extend([10, 11])
    dev.d2h_pending[D2H_1][(3, 1)].extend([20, 21])
    y = np.zeros(4, np.uint32)
    d2h(rt, y, D2H_1, 3, 0, 1, 2, 2, streaming=True, order=COL)
    assert y.tolist() == [10, 20, 11, 21]
    with pytest.raises(DeadlockError, match="waits for 2 wavelets"):
        d2h(rt, y, D2H_1, 3, 0, 1, 2, 2, streaming=True)


@pytest.mark.parametrize("call, match", [
    (lambda r: h2d(r, D2H_1, np.zeros(1, np.uint32), 0, 0, 1, 1, 1, streaming=True),
     (r"color 3 is not a memcpy H2D stream .*MEMCPYH2D_1=2, MEMCPYH2D_2=4.*color 3 is the "
      r"D2H stream MEMCPYD2H_1")),
    (lambda r: d2h(r, np.zeros(1, np.uint32), H2D_1, 0, 0, 1, 1, 1, streaming=True),
     r"color 2 is not a memcpy D2H stream .*MEMCPYD2H_1=3"),
    (lambda r: h2d(r, 30, np.zeros(1, np.uint32), 0, 0, 1, 1, 1, streaming=True),
     "out of range 0..23"),
    (lambda r: h2d(r, None, np.zeros(1, np.uint32), 0, 0, 1, 1, 1, streaming=True),
     "stream color must be an integer"),
])
def test_streaming_errors(rt: SdkRuntime, call, match) -> None:
    with pytest.raises(DeviceError, match=match):
        call(rt)


# -- broadcasts --------------------------------------------------------------------------------


@pytest.mark.parametrize("order", [ROW, COL])
def test_rowbcast_and_colbcast(rt: SdkRuntime, order) -> None:
    dev = dev_of(rt)
    # one column (h=2 rows, l=2) replicated across w=3 columns at (1, 1)
    col = np.array([[1, 2], [3, 4]], np.uint32)                    # B[h][l]
    src = col.ravel() if order == ROW else col.T.ravel()
    rt.memcpy_h2d_rowbcast(0, src, 1, 1, 3, 2, 2, streaming=False, data_type=B32,
                           order=order, nonblock=True)
    for c in range(3):
        assert dev.words("A", 1 + c, 1).tolist() == [1, 2]
        assert dev.words("A", 1 + c, 2).tolist() == [3, 4]
    # one row (w=2 columns, l=1) replicated down h=3 rows at (2, 0)
    row = np.array([[5], [6]], np.uint32)                          # B[w][l]
    src = row.ravel() if order == ROW else row.T.ravel()
    rt.memcpy_h2d_colbcast(0, src, 2, 0, 2, 3, 1, streaming=False, data_type=B32,
                           order=order, nonblock=False)
    for r in range(3):
        assert dev.words("A", 2, r).tolist() == [5]
        assert dev.words("A", 3, r).tolist() == [6]
    with pytest.raises(DeviceError, match=r"rowbcast sends one column: h\*l = 2\*2"):
        rt.memcpy_h2d_rowbcast(0, np.zeros(12, np.uint32), 1, 1, 3, 2, 2, streaming=False,
                               data_type=B32, order=order, nonblock=False)


# -- launch and call ---------------------------------------------------------------------------


def launched(r: SdkRuntime) -> list[tuple[str, np.generic]]:
    entry = dev_of(r).log[-1]
    assert entry[0] == "launch"
    return entry[2]


def test_launch_exact_numpy_scalars(rt: SdkRuntime) -> None:
    args = (np.float32(1.5), np.float16(-2.0), np.int32(-7), np.uint32(7), np.int16(-3),
            np.uint16(65535))
    t = rt.launch("f_all", *args, nonblock=True)
    assert isinstance(t, Task) and rt.is_task_done(t)
    got = launched(rt)
    assert [p for p, _ in got] == ["f32", "f16", "i32", "u32", "i16", "u16"]
    for (_, v), a in zip(got, args):
        assert type(v) is type(a) and v == a


def test_launch_converts_python_numbers_losslessly(rt: SdkRuntime) -> None:
    rt.launch("f_all", 0.1, 3, np.int64(-5), 4_000_000_000, -32768, np.uint8(9))
    got = [v for _, v in launched(rt)]
    assert [type(v) for v in got] == [np.float32, np.float16, np.int32, np.uint32, np.int16,
                                      np.uint16]
    assert got[0] == np.float32(0.1)        # Python floats round to nearest, like the SDK
    assert got[1:] == [3.0, -5, 4_000_000_000, -32768, 9]
    rt.launch("compute", np.float16(0.25), np.int32(12))   # exact widening conversions
    assert [v for _, v in launched(rt)] == [0.25, 12]


@pytest.mark.parametrize("args, match", [
    ((1.0,), r"compute\(f32, i16\) takes 2 argument\(s\), got 1"),
    ((1.0, 2, 3), "takes 2 argument"),
    ((1.0, 1.5), "argument 2 of compute.*got the float 1.5 for the i16 parameter"),
    ((1.0, 40000), r"40000 does not fit in i16 \(-32768..32767\)"),
    ((1e39, 1), "overflows f32"),
    ((np.float64(3.0), True), "got a bool"),
    (("1", 1), "str is not a valid argument"),
    ((np.array([1.0], np.float32), 1), "ndarray is not a valid argument"),
    ((16_777_217, 1), "16777217 is not exactly representable as f32"),
    ((np.float32(1.0), np.float32(2.0)), "got np.float32 2.0 for the i16 parameter"),
])
def test_launch_type_errors(rt: SdkRuntime, args, match) -> None:
    with pytest.raises(DeviceError, match=match):
        rt.launch("compute", *args)


def test_launch_narrowing_float_must_be_exact(rt: SdkRuntime) -> None:
    rt.launch("f_all", np.float32(1.0), np.float32(0.5), 0, 0, 0, 0)
    assert launched(rt)[1] == ("f16", np.float16(0.5))
    with pytest.raises(DeviceError, match="np.float32 0.1 is not exactly representable as f16"):
        rt.launch("f_all", 1.0, np.float32(0.1), 0, 0, 0, 0)


def test_launch_name_errors(rt: SdkRuntime) -> None:
    with pytest.raises(DeviceError, match="Cannot find exported function with name nope; "
                       "exported functions: compute, f_all, f_none, f_bool"):
        rt.launch("nope")
    with pytest.raises(DeviceError, match="'A' is data, not a function"):
        rt.launch("A")
    with pytest.raises(DeviceError, match="parameter has type bool, which the host cannot"):
        rt.launch("f_bool", True)


def test_call_with_prepacked_words(rt: SdkRuntime) -> None:
    rt.call("f_none", [], nonblock=True)
    assert launched(rt) == []
    f32_word = int(np.float32(-1.25).view(np.uint32))
    rt.call("compute", np.array([f32_word, 0xFFFFFFFD], np.uint32))
    got = launched(rt)
    assert got[0] == ("f32", np.float32(-1.25)) and type(got[0][1]) is np.float32
    assert got[1] == ("i16", np.int16(-3)) and type(got[1][1]) is np.int16
    rt.call("f_all", [0, 0x3C00, 0xFFFFFFFF, 0xFFFFFFFF, 5, 0xFFFF])
    assert [v for _, v in launched(rt)] == [0.0, 1.0, -1, 0xFFFFFFFF, 5, 0xFFFF]


@pytest.mark.parametrize("name, args, match", [
    ("compute", [1], r"takes 2 argument word\(s\), got 1"),
    ("compute", [0, 0x10005], "does not hold a 16-bit i16"),
    ("f_all", [0, 0, 0, 0, 0, 0xFFFF8000], "does not hold a 16-bit u16"),
    ("compute", [0, -1], "-1 is not a u32 word"),
    ("compute", [1.0, 2.0], "use launch.. for typed arguments"),
    ("compute", [[1, 2]], "must be a 1-D list"),
])
def test_call_errors(rt: SdkRuntime, name, args, match) -> None:
    with pytest.raises(DeviceError, match=match):
        rt.call(name, args)


# -- tasks, symbols, coordinates ---------------------------------------------------------------


def test_tasks_belong_to_their_runtime(rt: SdkRuntime, out: Path) -> None:
    other = SdkRuntime(out, device=FakeDevice.from_output_dir)
    other.load()
    other.run()
    t = other.launch("f_none")
    with pytest.raises(DeviceError, match="belongs to another SdkRuntime"):
        rt.task_wait(t)
    with pytest.raises(DeviceError, match="takes a Task"):
        rt.is_task_done("task")  # type: ignore[arg-type]
    assert "f_none" in repr(t) and "(done)" in repr(t)


def test_read_symbol_and_coordinates(rt: SdkRuntime) -> None:
    h2d(rt, 0, np.array([1.0, 2.0], np.float32), 2, 1, 1, 1, 2)
    assert rt.read_symbol(2, 1, "A", "float32").tolist() == [1.0, 2.0]
    raw = rt.read_symbol(2, 1, "A")
    assert raw.dtype == np.uint8 and raw.size == 8
    assert rt.read_symbol(2, 1, "A", np.uint16).tolist() == [0, 0x3F80, 0, 0x4000]
    with pytest.raises(DeviceError, match="outside the 4x3 program rectangle"):
        rt.read_symbol(4, 0, "A")
    with pytest.raises(DeviceError, match="not a multiple of float64"):
        h2d(rt, 0, np.array([1.0], np.float32), 0, 0, 1, 1, 1)
        rt.read_symbol(0, 0, "A", "float64")
    with pytest.raises(DeviceError, match="is not a numpy dtype"):
        rt.read_symbol(0, 0, "A", "nonsense")
    rt.stop()
    assert rt.read_symbol(2, 1, "A", "float32").tolist() == [1.0, 2.0]   # still readable
    assert rt.coord_logical_to_physical((2, 1)) == (6, 2)


def test_debug_util_reads_with_fabric_coordinates(out: Path, tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="no program from this directory ran"):
        debug_util(tmp_path / "never_ran")
    r = SdkRuntime(out, device=FakeDevice.from_output_dir)
    r.load()
    r.run()
    h2d(r, 0, np.array([3.0, 4.0], np.float32), 1, 2, 1, 1, 2)
    h2d(r, 0, np.array([1.0], np.float32), 1, 0, 1, 1, 1)
    r.stop()
    d = debug_util(str(out))
    assert d.get_symbol(4 + 1, 1 + 2, "A", np.float32).tolist() == [3.0, 4.0]
    rect = d.get_symbol_rect(((5, 3), (1, 1)), "A", np.float32)
    assert rect.shape == (1, 1, 2) and rect[0, 0].tolist() == [3.0, 4.0]
    with pytest.raises(DeviceError, match="different sizes on the PEs"):
        d.get_symbol_rect(((5, 1), (1, 3)), "A", np.float32)
    with pytest.raises(DeviceError, match=r"fabric PE \(0, 0\) is outside .* columns 4..7"):
        d.get_symbol(0, 0, "A", np.float32)
    with pytest.raises(DeviceError, match="PE \\(4, 1\\) has no <debug> trace with key 'trace'"):
        d.read_trace(4, 1, "trace")
    with pytest.raises(DeviceError, match="cmaddr"):
        debug_util(out, cmaddr="1.2.3.4:9000")


def test_debug_util_does_not_keep_finished_programs_alive(out: Path) -> None:
    import gc
    r = SdkRuntime(out, device=FakeDevice.from_output_dir)
    r.load()
    assert sdkrt.last_runtime(out) is r
    del r
    gc.collect()
    assert sdkrt.last_runtime(out) is None
    with pytest.raises(DeviceError, match="no program from this directory ran"):
        debug_util(out)


def test_sdkruntime_module_has_the_sdk_names() -> None:
    for name in ("SdkRuntime", "MemcpyDataType", "MemcpyOrder", "Task"):
        assert hasattr(sdkrt, name)
