"""waferscale.host.sdk_utils against hand-computed values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from waferscale.host import sdk_utils as su
from waferscale.host.device import DeviceError


@pytest.mark.parametrize("x, word", [
    (np.float16(1.0), 0x3C00),
    (np.float16(-2.0), 0xC000),
    (np.int16(-1), 0xFFFF),
    (np.uint16(7), 7),
    (np.float32(1.0), 0x3F800000),
    (np.int32(-2), 0xFFFFFFFE),
    (np.uint32(0xDEADBEEF), 0xDEADBEEF),
    (5, 5),
    (-1, 0xFFFFFFFF),
    (1.5, 0x3FC00000),
])
def test_cast_uint32(x, word) -> None:
    got = su.cast_uint32(x)
    assert isinstance(got, np.uint32) and int(got) == word


@pytest.mark.parametrize("x", [True, "1", np.float64(1.0).tobytes(), None])
def test_cast_uint32_rejects(x) -> None:
    with pytest.raises(su.SdkUtilsError):
        su.cast_uint32(x)


def test_errors_are_device_and_runtime_errors() -> None:
    with pytest.raises(DeviceError):
        su.cast_uint32(None)
    with pytest.raises(RuntimeError):
        su.cast_uint32(None)


def test_memcpy_view_low_halves_share_memory() -> None:
    words = np.array([0x1234_3C00, 0xABCD_4000], np.uint32)
    v = su.memcpy_view(words, np.dtype(np.float16))
    assert v.dtype == np.float16 and v.tolist() == [1.0, 2.0]
    v[0] = 3.0                                    # 0x4200
    assert int(words[0]) == 0x1234_4200
    assert su.memcpy_view(words, np.dtype(np.uint8)).tolist() == [0x00, 0x00]
    assert su.memcpy_view(words, np.dtype(np.int16)).tolist() == [0x4200, 0x4000]
    f = su.memcpy_view(np.array([0x3F800000], np.uint32), np.dtype(np.float32))
    assert f.tolist() == [1.0]


def test_memcpy_view_keeps_shape_and_strides() -> None:
    words = np.arange(12, dtype=np.uint32).reshape(3, 4) | np.uint32(0xFFFF0000)
    v = su.memcpy_view(words, np.dtype(np.uint16))
    assert v.shape == (3, 4) and v.tolist() == np.arange(12).reshape(3, 4).tolist()
    strided = words[:, ::2]
    vs = su.memcpy_view(strided, np.dtype(np.uint16))
    assert vs.tolist() == [[0, 2], [4, 6], [8, 10]]
    assert su.memcpy_view(words.T, np.dtype(np.uint32)).tolist() == words.T.tolist()


@pytest.mark.parametrize("arr, dt, match", [
    (np.zeros(2, np.float16), np.float16, "itemsize must be 4"),
    (np.zeros(2, np.uint32), np.float64, "1, 2, or 4 byte"),
    ([1, 2], np.float16, "must be a numpy array"),
])
def test_memcpy_view_errors(arr, dt, match) -> None:
    with pytest.raises(su.SdkUtilsError, match=match):
        su.memcpy_view(arr, np.dtype(dt))


def test_input_array_to_u32() -> None:
    a = np.array([1.0, 2.0, -0.0], np.float16)
    assert su.input_array_to_u32(a, None, 1).tolist() == [0x3C00, 0x4000, 0x8000]
    # sentinel set (any value, even 0): index in the innermost dimension in the high half
    assert su.input_array_to_u32(a, 0, 2).tolist() == [0x3C00, 0x0001_4000, 0x8000]
    assert su.input_array_to_u32(a, 1, 3).tolist() == [0x3C00, 0x0001_4000, 0x0002_8000]
    assert su.input_array_to_u32(np.array([-1, 2], np.int16), None, 1).tolist() == [0xFFFF, 2]
    f = np.array([1.0, -1.0], np.float32)
    u = su.input_array_to_u32(f, None, 1)
    assert u.tolist() == [0x3F800000, 0xBF800000]
    u[0] = 0x40000000                              # 32-bit input: a view, not a copy
    assert f[0] == 2.0
    assert su.input_array_to_u32(a, 0, 1 << 16).dtype == np.uint32


@pytest.mark.parametrize("arr, sentinel, fast, match", [
    (np.zeros((2, 2), np.float16), None, 1, "must be flat"),
    (np.zeros(2, np.int8), None, 1, "only 16 and 32 bit"),
    (np.zeros(2, np.float16), 0, 0, "fast_dim_sz must be an integer in 1..65536"),
    (np.zeros(2, np.float16), 0, (1 << 16) + 1, "1..65536"),
    ([1, 2], None, 1, "must be a numpy array"),
])
def test_input_array_to_u32_errors(arr, sentinel, fast, match) -> None:
    with pytest.raises(su.SdkUtilsError, match=match):
        su.input_array_to_u32(arr, sentinel, fast)


def test_round_trip_through_16bit_words() -> None:
    a = np.array([0.5, -3.25, 65504.0, 6e-8], np.float16)
    words = su.input_array_to_u32(a, None, 1)
    np.testing.assert_array_equal(su.memcpy_view(words, np.dtype(np.float16)), a)


def test_timestamp_helpers() -> None:
    assert su.float_to_hex(1.0) == "0x3f800000"
    assert su.float_to_hex(np.float32(-2.0)) == "0xc0000000"
    assert su.make_u48([1, 2, 3]) == 1 + 2 * 65536 + 3 * 2**32
    # numpy uint16 words must not overflow (np.uint16 << 16 is 0 under NumPy 2)
    assert su.make_u48(np.array([0xFFFF, 0xFFFF, 0xFFFF], np.uint16)) == 2**48 - 1
    assert su.sub_ts(np.array([0xFFFF, 0xFFFF, 0, 0, 0, 1], np.uint16)) == 1
    with pytest.raises(su.SdkUtilsError):
        su.make_u48([1, 2])
    with pytest.raises(su.SdkUtilsError):
        su.sub_ts([1, 2, 3])


def pack_timestamps(start: int, end: int) -> np.ndarray:
    """A kernel's packing of two 48-bit stamps into three f32 words (low half first)."""
    s = [(start >> (16 * i)) & 0xFFFF for i in range(3)]
    e = [(end >> (16 * i)) & 0xFFFF for i in range(3)]
    words = np.array([s[0] | s[1] << 16, s[2] | e[0] << 16, e[1] | e[2] << 16], np.uint32)
    return words.view(np.float32)


@pytest.mark.parametrize("start, end", [
    (0x0001_0002_0003, 0x0001_0002_1003),
    (0x0000_7FC1_0000, 0x0000_7FC1_000A),          # word 0 is a NaN bit pattern
    (0x0000_FFFF_FFFF, 0x0001_0000_0004),
    (0, 2**48 - 1),
])
def test_calculate_cycles(start, end) -> None:
    buf = pack_timestamps(start, end)
    got = su.calculate_cycles(buf)
    assert isinstance(got, np.int64) and int(got) == end - start


def test_calculate_cycles_needs_three_words() -> None:
    with pytest.raises(su.SdkUtilsError):
        su.calculate_cycles(np.zeros(2, np.float32))


def write_rpc(path: Path, symbols: list[dict]) -> Path:
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "out_rpc.json").write_text(json.dumps({"rpc_symbols": symbols}))
    return path


RPC = [
    {"id": 0, "kind": "Var", "name": "A", "sym_name": "ptr_A", "immutable": 0, "type": "[*]f32"},
    {"id": 1, "kind": "Func", "name": "foo", "sym_name": "foo", "type": "void",
     "inputs": [{"name": "x", "type": "f32"}, {"name": "alpha", "type": "u16"},
                {"name": "beta", "type": "i32"}]},
    {"id": 2, "kind": "Func", "name": "go", "sym_name": "go", "type": "void"},
]


def test_api_info(tmp_path: Path) -> None:
    d = write_rpc(tmp_path / "out", RPC)
    api = su.get_api_info_dict(d)
    assert api == {"foo": (["x", "alpha", "beta"], ["f32", "u16", "i32"]), "go": ([], [])}
    assert su.get_api_info_dict_from_json(d / "bin" / "out_rpc.json") == api
    bad = [{"id": 0, "kind": "Func", "name": "f", "type": "void",
            "inputs": [{"name": "b", "type": "bool"}]}]
    with pytest.raises(su.SdkUtilsError, match="bool is not a supported type"):
        su.parse_host_callable_api(bad)
    with pytest.raises(su.SdkUtilsError, match="does not exist"):
        su.get_api_info_dict(tmp_path / "nothing")
    assert su.is_valid_primitive_type("u16") and not su.is_valid_primitive_type("u8")


def test_check_rpc_api() -> None:
    api = su.parse_host_callable_api(RPC)
    assert su.check_rpc_api("foo", [np.float32(1), np.uint16(2), np.int32(3)], api)
    assert su.check_rpc_api("foo", [1.5, np.uint16(2), 7], api)     # Python float, int
    assert su.check_rpc_api("go", [], api)
    assert su.check_rpc_api("foo", [1.5, np.uint16(2), np.int64(7)], api)   # np.int_ is i32
    cases = [
        ("foo", [1.5], "different number of arguments"),
        ("foo", [1.5, 2, 3], "should be i32 or u32"),
        ("foo", [1.5, np.uint16(2), 2**31], "does not fit in i32"),
        ("foo", [np.float16(1), np.uint16(2), 3], "should be f32, got f16"),
        ("foo", ["a", np.uint16(2), 3], "is not supported"),
        ("foo", [True, np.uint16(2), 3], "bool"),
        ("nope", [], "no host-callable function 'nope'"),
    ]
    for name, args, match in cases:
        with pytest.raises(su.SdkUtilsError, match=match):
            su.check_rpc_api(name, args, api)


def test_output_name_from_options() -> None:
    f = su.getOutputNameFromCompileOptions
    assert f(["layout.csl", "-o=latest", "--memcpy"]) == "latest"
    assert f(["layout.csl", "-o", "x", "--memcpy"]) == "x"
    assert f(["-o", "a", "-o=b"]) == "b"
    assert f(["layout.csl"]) == "out"
    with pytest.raises(su.SdkUtilsError):
        f(["layout.csl", "-o"])


def test_max_message_length() -> None:
    assert su.MAX_MESSAGE_LENGTH == 2 * 1024**3 - 1024
