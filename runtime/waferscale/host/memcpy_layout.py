"""Host-array layouts of memcpy: from a host 1-D array to per-PE blocks of elements and back.

These are pure functions (no device, no state); :class:`~waferscale.host.sdkruntime.SdkRuntime`
uses them for every ``memcpy_*`` call, and tests check them against an independent NumPy
formulation.

The logical tensor
    A memcpy moves ``l`` elements to (or from) each PE of a region of interest (ROI) of
    ``w`` columns by ``h`` rows whose north-west PE is ``(x, y)`` in *program* coordinates
    (``(0, 0)`` is the north-west PE of the program rectangle; ``x`` is the column). The host
    array is one-dimensional, of length ``w*h*l``, and is read as a tensor ``A[h][w][l]``:
    ``A[r][c][k]`` is element ``k`` of PE ``(x + c, y + r)``.

ROW_MAJOR
    C order of ``A[h][w][l]``: ``flat = (r*w + c)*l + k`` (``l`` fastest). The elements of one
    PE are contiguous on the host.

COL_MAJOR
    Fortran order of ``A[h][w][l]``: ``flat = (k*w + c)*h + r`` (``h`` fastest, then ``w``,
    then ``l``). **The SDK documentation's prose says "w is the fastest varying dimension";
    every official host script says otherwise** (csl-examples ``bandwidth-test/run.py``
    builds COL_MAJOR arrays with ``for l: for w: for h:`` loops, ``row-col-broadcast/run.py``
    uses ``B.T.ravel()`` and reads results with ``reshape((h, w, l), order="F")``). We follow
    the code.

16-bit data (``MemcpyDataType.MEMCPY_16BIT``)
    The host array still holds one 32-bit word per element (any 4-byte dtype, normally
    ``uint32``) with the value in the low half. On H2D in copy mode only the low 16 bits of
    each word are used; D2H returns words whose high half is zero. Use
    :func:`waferscale.host.sdk_utils.input_array_to_u32` and
    :func:`~waferscale.host.sdk_utils.memcpy_view` to convert. Streaming mode moves whole
    32-bit wavelets either way (the data type is a copy-mode option), so the high half reaches
    the kernel unchanged (the official gemv-checkerboard example puts an index there).

Broadcasts (H2D only)
    ``rowbcast``: the source holds one column of the ROI, a tensor ``B[h][l]`` (length
    ``h*l``), and every PE of ROI row ``r`` receives ``B[r]`` — the column is replicated
    across the ROI width. ``colbcast``: the source holds one row, ``B[w][l]`` (length
    ``w*l``), and every PE of ROI column ``c`` receives ``B[c]`` — the row is replicated down
    the ROI height. Both orders apply to ``B`` as to ``A`` (ROW_MAJOR = C order, COL_MAJOR =
    Fortran order), as in the official ``row-col-broadcast`` example, whose source is
    ``A[py:py+ph, 0:1, :]`` (shape ``h×1×l``) for a row broadcast and ``A[0:1, px:px+pw, :]``
    (shape ``1×w×l``) for a column broadcast, flattened with ``ravel()`` or ``.T.ravel()``.

Per-PE blocks
    Every function here exchanges per-PE data as a ``uint32`` array of shape ``(h*w, l)``
    whose row ``i`` belongs to PE ``roi_pes(x, y, w, h)[i]``: PEs in row-major order (all of
    ROI row 0 west to east, then row 1, ...). This is the ``data`` argument of
    :meth:`waferscale.host.device.Device.memcpy_h2d`. H2D blocks are always a new array,
    never a view of the caller's source, so a device may keep them and the caller may reuse
    its array as soon as the call returns.

Errors are :class:`~waferscale.host.device.DeviceError` with a message naming the argument.
"""

from __future__ import annotations

import enum
import logging
import operator
from typing import Any

import numpy as np

from .device import Coord, DeviceError

log = logging.getLogger(__name__)

__all__ = [
    "MemcpyDataType",
    "MemcpyOrder",
    "as_data_type",
    "as_order",
    "check_roi",
    "colbcast_blocks",
    "d2h_check_dest",
    "d2h_fill",
    "d2h_words",
    "elem_bits",
    "h2d_blocks",
    "host_words",
    "int_arg",
    "roi_pes",
    "rowbcast_blocks",
]


class MemcpyDataType(enum.IntEnum):
    """Element width of a memcpy (``sdkruntimepybind.MemcpyDataType``; same values)."""
    MEMCPY_32BIT = 0
    MEMCPY_16BIT = 1


class MemcpyOrder(enum.IntEnum):
    """Host-array order of a memcpy (``sdkruntimepybind.MemcpyOrder``; same values)."""
    ROW_MAJOR = 0
    COL_MAJOR = 1


def as_data_type(data_type: Any) -> MemcpyDataType:
    if isinstance(data_type, (bool, np.bool_)):
        raise DeviceError("Illegal data type option for memcpy: expected "
                          "MemcpyDataType.MEMCPY_32BIT or MEMCPY_16BIT, got a bool")
    try:
        return MemcpyDataType(operator.index(data_type))
    except (TypeError, ValueError):
        raise DeviceError("Illegal data type option for memcpy: expected "
                          "MemcpyDataType.MEMCPY_32BIT or MemcpyDataType.MEMCPY_16BIT, got "
                          f"{data_type!r}") from None


def as_order(order: Any) -> MemcpyOrder:
    if isinstance(order, (bool, np.bool_)):
        raise DeviceError("Illegal order option for memcpy: expected MemcpyOrder.ROW_MAJOR or "
                          "COL_MAJOR, got a bool")
    try:
        return MemcpyOrder(operator.index(order))
    except (TypeError, ValueError):
        raise DeviceError("Illegal order option for memcpy: expected MemcpyOrder.ROW_MAJOR or "
                          f"MemcpyOrder.COL_MAJOR, got {order!r}") from None


def elem_bits(data_type: Any) -> int:
    """16 or 32: the element width a memcpy data type moves."""
    return 16 if as_data_type(data_type) == MemcpyDataType.MEMCPY_16BIT else 32


def int_arg(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise DeviceError(f"{name} must be an integer, got a bool")
    try:
        return operator.index(value)
    except TypeError:
        raise DeviceError(f"{name} must be an integer, got {type(value).__name__} "
                          f"{value!r}") from None


def check_roi(x: Any, y: Any, w: Any, h: Any, l: Any, width: int, height: int,
              what: str = "h2d") -> tuple[int, int, int, int, int]:
    """Validate a memcpy region of interest against a ``width`` x ``height`` rectangle.

    Returns the five values as Python ints. ``what`` ("h2d"/"d2h") prefixes the message as
    in the SDK ("h2d subrectangle must be inside the core rectangle").
    """
    x, y, w, h, l = (int_arg(v, n) for v, n in
                     ((x, "x"), (y, "y"), (w, "w (width of the region)"),
                      (h, "h (height of the region)"), (l, "elements per PE")))
    if x < 0 or y < 0:
        raise DeviceError(f"{what} subrectangle must be inside the core rectangle: origin "
                          f"({x}, {y}) is negative")
    if w <= 0 or h <= 0:
        raise DeviceError(f"{what} subrectangle must have a positive size, got w={w}, h={h}")
    if l <= 0:
        raise DeviceError(f"{what}: elements per PE must be at least 1, got {l}")
    if x + w > width or y + h > height:
        raise DeviceError(
            f"{what} subrectangle must be inside the core rectangle: columns {x}..{x + w - 1}, "
            f"rows {y}..{y + h - 1} do not fit in the {width}x{height} program rectangle "
            f"(columns 0..{width - 1}, rows 0..{height - 1})")
    return x, y, w, h, l


def roi_pes(x: int, y: int, w: int, h: int) -> list[Coord]:
    """The PEs of a region in block order: row-major, ``(x + c, y + r)`` for r, then c."""
    return [(x + c, y + r) for r in range(h) for c in range(w)]


def _check_array(arr: Any, what: str, *, writable: bool = False) -> np.ndarray:
    if not isinstance(arr, np.ndarray):
        raise DeviceError(f"{what} must be a numpy array of 32-bit words, got "
                          f"{type(arr).__name__}")
    if arr.dtype.kind not in "uif" or arr.dtype.itemsize != 4:
        how = ("pass a uint32 array with data_type=MemcpyDataType.MEMCPY_16BIT and read the "
               "values with sdk_utils.memcpy_view(dest, np.dtype(np.float16))" if writable else
               "pass uint32 words with the value in the low half "
               "(sdk_utils.input_array_to_u32(a, None, 1)) and "
               "data_type=MemcpyDataType.MEMCPY_16BIT")
        raise DeviceError(
            f"{what} has dtype {arr.dtype}; memcpy arrays hold one 32-bit word per element "
            f"(float32, int32 or uint32). For 16-bit data {how}")
    if writable:
        if not arr.flags.writeable:
            raise DeviceError(f"{what} is read-only; memcpy_d2h fills the array in place")
        if not arr.flags.c_contiguous:
            raise DeviceError(f"{what} is not C-contiguous; memcpy_d2h fills the array in "
                              "place, so pass a contiguous array (e.g. np.zeros(n, np.float32))")
    return arr


def host_words(arr: Any, n: int, what: str = "src", detail: str = "") -> np.ndarray:
    """The host array as a 1-D ``uint32`` word array of length ``n`` (bit patterns kept).

    Any shape is accepted and read in C order (``arr.ravel()``); the size must be ``n``.
    ``detail`` explains ``n`` in the error message.
    """
    a = _check_array(arr, what)
    if a.size != n:
        raise DeviceError(f"{what} has {a.size} elements but the memcpy moves {n}"
                          + (f" ({detail})" if detail else ""))
    return np.ascontiguousarray(a).reshape(-1).view(np.uint32)


def _mask(words: np.ndarray, data_type: MemcpyDataType) -> np.ndarray:
    if data_type == MemcpyDataType.MEMCPY_16BIT:
        return words & np.uint32(0xFFFF)
    return words


def h2d_blocks(src: Any, w: int, h: int, l: int, *, order: Any, data_type: Any,
               streaming: bool = False) -> np.ndarray:
    """Per-PE blocks ``(h*w, l)`` uint32 of an H2D source of ``w*h*l`` words.

    For ``MEMCPY_16BIT`` in copy mode the high half of every word is dropped; in streaming
    mode whole words are kept (see the module docstring).
    """
    order, data_type = as_order(order), as_data_type(data_type)
    words = host_words(src, w * h * l, "src", f"w*h*l = {w}*{h}*{l}")
    if order == MemcpyOrder.ROW_MAJOR:
        tensor = words.reshape(h, w, l)
    else:
        tensor = words.reshape(h, w, l, order="F")
    blocks = np.array(tensor, dtype=np.uint32, order="C", copy=True).reshape(h * w, l)
    return blocks if streaming else _mask(blocks, data_type)


def rowbcast_blocks(src: Any, w: int, h: int, l: int, *, order: Any, data_type: Any,
                    streaming: bool = False) -> np.ndarray:
    """Per-PE blocks of a row broadcast: ``src`` is one column ``B[h][l]`` (``h*l`` words);
    every PE of ROI row ``r`` gets ``B[r]``."""
    order, data_type = as_order(order), as_data_type(data_type)
    words = host_words(src, h * l, "src", f"rowbcast sends one column: h*l = {h}*{l}")
    col = words.reshape(h, l) if order == MemcpyOrder.ROW_MAJOR else words.reshape(
        h, l, order="F")
    blocks = np.ascontiguousarray(np.broadcast_to(col[:, None, :], (h, w, l))).reshape(h * w, l)
    return blocks if streaming else _mask(blocks, data_type)


def colbcast_blocks(src: Any, w: int, h: int, l: int, *, order: Any, data_type: Any,
                    streaming: bool = False) -> np.ndarray:
    """Per-PE blocks of a column broadcast: ``src`` is one row ``B[w][l]`` (``w*l`` words);
    every PE of ROI column ``c`` gets ``B[c]``."""
    order, data_type = as_order(order), as_data_type(data_type)
    words = host_words(src, w * l, "src", f"colbcast sends one row: w*l = {w}*{l}")
    row = words.reshape(w, l) if order == MemcpyOrder.ROW_MAJOR else words.reshape(
        w, l, order="F")
    blocks = np.ascontiguousarray(np.broadcast_to(row[None, :, :], (h, w, l))).reshape(h * w, l)
    return blocks if streaming else _mask(blocks, data_type)


def d2h_words(blocks: Any, w: int, h: int, l: int, *, order: Any, data_type: Any,
              streaming: bool = False) -> np.ndarray:
    """The host 1-D ``uint32`` array (length ``w*h*l``) of per-PE blocks ``(h*w, l)``.

    For ``MEMCPY_16BIT`` in copy mode the high half of every word is zero.
    """
    order, data_type = as_order(order), as_data_type(data_type)
    b = np.asarray(blocks)
    if b.shape != (h * w, l):
        raise DeviceError(f"the device returned data of shape {b.shape}, expected "
                          f"({h * w}, {l}) for a {w}x{h} region with {l} elements per PE")
    if b.dtype != np.uint32:
        raise DeviceError(f"the device returned {b.dtype} data; the Device protocol returns "
                          "uint32 words")
    tensor = b.reshape(h, w, l)
    flat = tensor.reshape(-1) if order == MemcpyOrder.ROW_MAJOR else tensor.reshape(
        -1, order="F")
    flat = np.ascontiguousarray(flat)
    return flat if streaming else _mask(flat, data_type)


def d2h_check_dest(dest: Any, w: int, h: int, l: int) -> np.ndarray:
    """Validate a D2H destination before the device runs (dtype, size, writable, contiguous)."""
    a = _check_array(dest, "dest", writable=True)
    n = w * h * l
    if a.size != n:
        raise DeviceError(f"dest has {a.size} elements but the memcpy moves {n} "
                          f"(w*h*l = {w}*{h}*{l})")
    return a


def d2h_fill(dest: Any, blocks: Any, w: int, h: int, l: int, *, order: Any, data_type: Any,
             streaming: bool = False) -> None:
    """Write per-PE blocks into the caller's array ``dest`` in place (bit patterns kept)."""
    a = d2h_check_dest(dest, w, h, l)
    words = d2h_words(blocks, w, h, l, order=order, data_type=data_type, streaming=streaming)
    a.reshape(-1).view(np.uint32)[...] = words
