"""``cerebras.sdk.sdk_utils`` for waferscale: helpers SDK host scripts import.

Written from the SDK's documented behaviour (function names and arguments are the SDK's, so
``waferscale cs_python`` can serve this module as ``cerebras.sdk.sdk_utils``):

- :func:`memcpy_view`, :func:`input_array_to_u32`, :func:`cast_uint32`: 16-bit data travels
  as 32-bit words with the value in the low half (see :mod:`.memcpy_layout`).
- :func:`calculate_cycles`, :func:`float_to_hex`, :func:`make_u48`, :func:`sub_ts`: the
  ``<time>`` module's 48-bit timestamps, sent to the host as three 16-bit words per time
  stamp packed two per f32 word (start[0..2], end[0..2] in three f32).
- :func:`get_api_info_dict`, :func:`get_api_info_dict_from_json`,
  :func:`parse_host_callable_api`, :func:`check_rpc_api`, :func:`is_valid_primitive_type`:
  the host-callable functions listed in ``<out>/bin/out_rpc.json``.
- :func:`getOutputNameFromCompileOptions`: the ``-o`` of a cslc option list.

Deliberate differences from the SDK's implementation (bugs there, documented intent here):
timestamps are decoded from the float words' bit patterns with numpy views (a NaN-looking
pattern keeps its bits; the SDK round-trips through ``struct`` and a Python float), 48-bit
arithmetic is done on Python integers (with NumPy 2, ``np.uint16 << 16`` is 0), and
:func:`check_rpc_api` accepts a Python ``int`` for an i32/u32 parameter (the SDK's version
raises an internal assertion there). Errors raise :class:`SdkUtilsError`, which is both a
:class:`~waferscale.host.device.DeviceError` and the ``RuntimeError`` the SDK raises.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .device import DeviceError

log = logging.getLogger(__name__)

__all__ = [
    "MAX_MESSAGE_LENGTH",
    "SdkUtilsError",
    "calculate_cycles",
    "cast_uint32",
    "check_rpc_api",
    "float_to_hex",
    "getOutputNameFromCompileOptions",
    "get_api_info_dict",
    "get_api_info_dict_from_json",
    "input_array_to_u32",
    "is_valid_primitive_type",
    "make_u48",
    "memcpy_view",
    "parse_host_callable_api",
    "sub_ts",
]

# The appliance client chunks payloads at 2 GiB - 1 KiB; kept for scripts that import it.
MAX_MESSAGE_LENGTH = (1 << 31) - 1024

PRIMITIVE_TYPES = ("f32", "f16", "i32", "u32", "i16", "u16")


class SdkUtilsError(DeviceError, RuntimeError):
    """A misuse of an sdk_utils function."""


def cast_uint32(x: Any) -> np.uint32:
    """The 32-bit word memcpy carries for scalar ``x``.

    ``np.float16``/``np.int16``/``np.uint16``: the 16-bit pattern, zero-extended.
    ``np.float32``/``np.int32``/``np.uint32``: the 32-bit pattern. Python ``int``: the value
    modulo 2**32 (so -1 becomes 0xFFFFFFFF). Python ``float``: the pattern of its f32
    rounding.
    """
    if isinstance(x, (np.float16, np.int16, np.uint16)):
        return np.uint32(np.array(x).view(np.uint16))
    if isinstance(x, (np.float32, np.int32, np.uint32)):
        return np.uint32(np.array(x).view(np.uint32)[()])
    if isinstance(x, (bool, np.bool_)):
        raise SdkUtilsError("cast_uint32: bool is not a memcpy type")
    if isinstance(x, int):
        return np.uint32(x & 0xFFFFFFFF)
    if isinstance(x, float):
        with np.errstate(over="ignore"):
            return np.uint32(np.array(np.float32(x)).view(np.uint32)[()])
    raise SdkUtilsError(f"cast_uint32: type {type(x).__name__} is not supported (use a numpy "
                        "f16/i16/u16/f32/i32/u32 scalar or a Python int/float)")


class _View:
    """Carrier of an ``__array_interface__`` for :func:`memcpy_view` (keeps ``base`` alive)."""

    def __init__(self, interface: dict[str, Any], base: np.ndarray) -> None:
        self.__array_interface__ = interface
        self.base = base


def memcpy_view(arr: np.ndarray, dtype: Any) -> np.ndarray:
    """A view of the low 1, 2 or 4 bytes of every 32-bit word of ``arr`` as ``dtype``.

    ``arr`` must have 4-byte elements (the array a 16-bit D2H filled); the result has
    ``arr``'s shape and strides and shares its memory (writes go through). For ``float16``
    it is the f16 value in the low half of each word.
    """
    if not isinstance(arr, np.ndarray):
        raise SdkUtilsError(f"memcpy_view: arr must be a numpy array, got {type(arr).__name__}")
    if arr.itemsize != 4:
        raise SdkUtilsError(f"memcpy_view: arr.itemsize must be 4, got {arr.itemsize} "
                            f"({arr.dtype})")
    dt = np.dtype(dtype)
    if dt.itemsize not in (1, 2, 4):
        raise SdkUtilsError("memcpy_view should be used to convert to 1, 2, or 4 byte data "
                            f"types, got {dt}")
    if dt.itemsize == 4:
        return arr.view(dt) if arr.flags.c_contiguous or arr.ndim <= 1 else _strided(arr, dt)
    return _strided(arr, dt)


def _strided(arr: np.ndarray, dt: np.dtype) -> np.ndarray:
    iface = dict(arr.__array_interface__)
    ptr, readonly = iface["data"]
    # The low-order bytes of a 32-bit word come first on a little-endian host.
    offset = 0 if np.little_endian else 4 - dt.itemsize
    iface.update(data=(ptr + offset, readonly), typestr=dt.str, descr=[("", dt.str)],
                 shape=arr.shape, strides=arr.strides if arr.ndim else None)
    iface.pop("mask", None)
    return np.asarray(_View(iface, arr))


def input_array_to_u32(np_arr: np.ndarray, sentinel: int | None, fast_dim_sz: int
                       ) -> np.ndarray:
    """The 32-bit words an H2D of the flat array ``np_arr`` needs.

    4-byte elements: their bit patterns as ``uint32`` (a view). 2-byte elements (f16, i16,
    u16): a new ``uint32`` array with each value's 16-bit pattern in the low half and, in
    the high half, zero when ``sentinel is None``, else the element's index in the innermost
    dimension, ``i % fast_dim_sz`` (for kernels that read an index from the wavelet's upper
    half). Only whether ``sentinel`` is None matters, as documented by the SDK (the comments of
    the official gemv-checkerboard example read ``sentinel=0`` as "zero upper half"; the SDK's
    code puts the index there too).
    """
    if not isinstance(np_arr, np.ndarray):
        raise SdkUtilsError(f"input_array_to_u32: np_arr must be a numpy array, got "
                            f"{type(np_arr).__name__}")
    if np_arr.ndim != 1:
        raise SdkUtilsError(f"input_array_to_u32: array must be flat, but has shape "
                            f"{np_arr.shape} (use .ravel())")
    if np_arr.itemsize == 4:
        return np_arr.view(np.uint32)
    if np_arr.itemsize != 2:
        raise SdkUtilsError(f"input_array_to_u32: only 16 and 32 bit input tensors supported, "
                            f"got {np_arr.dtype}")
    words = np.ascontiguousarray(np_arr).view(np.uint16).astype(np.uint32)
    if sentinel is not None:
        if isinstance(fast_dim_sz, (bool, np.bool_)) or not isinstance(
                fast_dim_sz, (int, np.integer)) or not 1 <= int(fast_dim_sz) <= 1 << 16:
            raise SdkUtilsError(f"input_array_to_u32: fast_dim_sz must be an integer in "
                                f"1..65536 when sentinel is set, got {fast_dim_sz!r}")
        index = np.arange(words.size, dtype=np.uint32) % np.uint32(fast_dim_sz)
        words |= index << np.uint32(16)
    return words


def is_valid_primitive_type(para_type: str) -> bool:
    """Whether a host-callable function may take a parameter of CSL type ``para_type``."""
    return para_type in PRIMITIVE_TYPES


def parse_host_callable_api(rpc_symbols: Sequence[dict[str, Any]]
                            ) -> dict[str, tuple[list[str], list[str]]]:
    """``{function name: ([param names], [param types])}`` from ``rpc_symbols`` entries
    (data entries are skipped). Raises if a parameter type cannot be passed from the host."""
    api: dict[str, tuple[list[str], list[str]]] = {}
    for sym in rpc_symbols:
        if sym.get("kind") != "Func":
            continue
        names, types = [], []
        for p in sym.get("inputs", []):
            if not is_valid_primitive_type(p["type"]):
                raise SdkUtilsError(f"{p['type']} is not a supported type (parameter "
                                    f"'{p['name']}' of '{sym['name']}')")
            names.append(p["name"])
            types.append(p["type"])
        api[sym["name"]] = (names, types)
    return api


def get_api_info_dict_from_json(json_path: str | Path) -> dict[str, tuple[list[str], list[str]]]:
    """:func:`parse_host_callable_api` of an ``out_rpc.json`` file."""
    try:
        data = json.loads(Path(json_path).read_text(encoding="utf-8"))
        symbols = data["rpc_symbols"]
    except FileNotFoundError:
        raise SdkUtilsError(f"{json_path} does not exist; compile first") from None
    except (ValueError, KeyError, TypeError) as e:
        raise SdkUtilsError(f"{json_path} is not an out_rpc.json file ({e})") from None
    return parse_host_callable_api(symbols)


def get_api_info_dict(app_path: str | Path) -> dict[str, tuple[list[str], list[str]]]:
    """:func:`parse_host_callable_api` of ``<app_path>/bin/out_rpc.json``."""
    return get_api_info_dict_from_json(Path(app_path) / "bin" / "out_rpc.json")


# As in the SDK, np.int64 / np.uint64 (np.int_ / np.uint) count as i32 / u32.
_NUMPY_RPC: dict[type, str] = {np.float32: "f32", np.float16: "f16", np.int32: "i32",
                               np.int64: "i32", np.uint32: "u32", np.uint64: "u32",
                               np.int16: "i16", np.uint16: "u16"}


def check_rpc_api(name: str, arg_list: Sequence[Any],
                  api_info_dict: dict[str, tuple[list[str], list[str]]]) -> bool:
    """Check the arguments of a call to host-callable function ``name``; True or raise.

    A numpy scalar must have exactly the parameter's type (``np.int64``/``np.uint64`` count as
    i32/u32, as in the SDK); a Python ``float`` passes for f32; a Python ``int`` passes for
    i32/u32 when in range.
    """
    if name not in api_info_dict:
        raise SdkUtilsError(f"check_rpc_api: no host-callable function '{name}' (known: "
                            f"{', '.join(api_info_dict) or 'none'})")
    var_list, type_list = api_info_dict[name]
    if len(var_list) != len(arg_list):
        raise SdkUtilsError(f"API call requires a different number of arguments "
                            f"({len(var_list)}) from what has been provided ({len(arg_list)})")
    for arg, want in zip(arg_list, type_list):
        if isinstance(arg, (bool, np.bool_)):
            raise SdkUtilsError(f"Error: type of {arg} (bool) is not supported")
        if type(arg) is int:
            if want not in ("i32", "u32"):
                raise SdkUtilsError(f"Error: type of {arg} should be i32 or u32")
            lo, hi = (-(1 << 31), (1 << 31) - 1) if want == "i32" else (0, (1 << 32) - 1)
            if not lo <= arg <= hi:
                raise SdkUtilsError(f"Error: {arg} does not fit in {want}")
            continue
        got = "f32" if type(arg) is float else _NUMPY_RPC.get(type(arg))
        if got is None:
            raise SdkUtilsError(f"Error [check_rpc_api]: type of {arg} ({type(arg).__name__}) "
                                "is not supported.")
        if got != want:
            raise SdkUtilsError(f"Error: type of {arg} should be {want}, got {got}")
    return True


def float_to_hex(f: Any) -> str:
    """The bit pattern of ``f`` as an f32, as a hex string (``float_to_hex(1.0) ==
    '0x3f800000'``)."""
    with np.errstate(over="ignore"):
        return hex(int(np.array(np.float32(f)).view(np.uint32)))


def make_u48(words: Sequence[Any]) -> np.int64:
    """Three 16-bit words (least significant first) as one 48-bit value (int64)."""
    if len(words) < 3:
        raise SdkUtilsError(f"make_u48 needs three 16-bit words, got {len(words)}")
    w0, w1, w2 = (int(v) & 0xFFFF for v in words[:3])
    return np.int64(w0 | (w1 << 16) | (w2 << 32))


def sub_ts(words: Sequence[Any]) -> np.int64:
    """Elapsed cycles from six 16-bit words: ``make_u48(words[3:6]) - make_u48(words[0:3])``."""
    if len(words) < 6:
        raise SdkUtilsError(f"sub_ts needs six 16-bit words (start, end), got {len(words)}")
    return np.int64(int(make_u48(words[3:6])) - int(make_u48(words[0:3])))


def calculate_cycles(timestamp_buf: Any) -> np.int64:
    """Elapsed cycles from the three f32 words a kernel packed its start and end timestamps
    into (six u16: start[0], start[1] | start[2], end[0] | end[1], end[2], low half first)."""
    buf = np.asarray(timestamp_buf)
    if buf.size < 3:
        raise SdkUtilsError(f"calculate_cycles needs 3 f32 words, got {buf.size}")
    flat = buf.reshape(-1)[:3]
    if flat.dtype.itemsize == 4 and flat.dtype.kind in "fiu":
        words32 = np.ascontiguousarray(flat).view(np.uint32)
    else:
        with np.errstate(over="ignore"):
            words32 = flat.astype(np.float32).view(np.uint32)
    halves = [int(w) >> s & 0xFFFF for w in words32 for s in (0, 16)]
    return sub_ts(halves)


def getOutputNameFromCompileOptions(option_list: Sequence[str]) -> str:
    """The output directory of a cslc option list: ``-o=NAME`` or ``-o NAME`` (the last one
    wins), else ``"out"``."""
    name: str | None = None
    opts = list(option_list)
    for i, opt in enumerate(opts):
        if opt.startswith("-o="):
            name = opt[3:]
        elif opt == "-o":
            if i + 1 >= len(opts):
                raise SdkUtilsError("-o needs a directory name")
            name = opts[i + 1]
    return name if name is not None else "out"
