"""``cerebras.sdk.debug.debug_util`` for waferscale: read PE memory after a run.

SDK scripts create ``debug_util(bin_dir, cmaddr=...)`` after ``runner.stop()`` and call
``get_symbol(x, y, name, dtype)`` with **absolute fabric coordinates** (program PE
``(px, py)`` is ``(px + off_x, py + off_y)``, usually ``(4 + px, 1 + py)``). The SDK reads a
core dump; here the symbols are read from the device of the last :class:`SdkRuntime` that
loaded ``bin_dir`` in this process, so the script must have run the program first. The
symbol need not be exported. ``read_trace(x, y, key)`` decodes the trace buffer of the
``<debug>`` library instance imported with that key (lang/stdlib_debug.csl) into the same
heterogeneous list as the SDK's reader.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path
from typing import Any

import numpy as np

from .device import DeviceError
from .memcpy_layout import int_arg
from .sdkruntime import SdkRuntime, last_runtime, reinterpret

log = logging.getLogger(__name__)

__all__ = ["debug_util", "decode_trace"]


def decode_trace(words: np.ndarray, index: int) -> list[Any]:
    """The records in the first ``index`` 16-bit words of a ``<debug>`` trace buffer.

    Format (the one the SDK's host reader decodes; lang/stdlib_debug.csl writes it): a tag
    word whose low byte is a ``struct`` code and whose high byte is a bool's value or a
    string's byte count; then the value little-endian: 'h'/'H'/'e' one word, 'i'/'I'/'f' two,
    't' (a 48-bit timestamp, returned as an int) three, 's' the NUL-padded UTF-8 bytes
    (returned up to the first NUL). An unknown tag or a record cut short is a DeviceError.
    """
    raw = np.asarray(words, dtype=np.uint16)[:index].astype("<u2").tobytes()
    out: list[Any] = []
    i = 0
    while i < len(raw):
        tag, high = chr(raw[i]), raw[i + 1]
        i += 2
        if tag == "?":
            out.append(bool(high))
            continue
        if tag == "t":
            size, fmt = 6, ""
        elif tag == "s":
            size, fmt = high, f"{high}s"
        elif tag in "hHeiIf":
            size, fmt = struct.calcsize("<" + tag), tag
        else:
            raise DeviceError(f"debug_util.read_trace: unknown record tag {raw[i - 2]:#x} at "
                              f"word {i // 2 - 1} of the trace buffer")
        if i + size > len(raw):
            raise DeviceError(f"debug_util.read_trace: the record at word {i // 2 - 1} ends "
                              "past the buffer index")
        chunk = raw[i:i + size]
        i += size
        if tag == "t":
            out.append(int.from_bytes(chunk, "little"))
        elif tag == "s":
            out.append(chunk.split(b"\0")[0].decode("utf-8"))
        else:
            v = struct.unpack("<" + fmt, chunk)[0]
            out.append(float(v) if tag in "ef" else v)
    return out


class debug_util:  # the SDK's class name (lower case)
    """Symbol reader for the last run of a compiled program (see the module docstring)."""

    def __init__(self, bin_dir: str | Path, cmaddr: str | None = None) -> None:
        if cmaddr:      # None or "": the simulator (as SdkRuntime)
            raise DeviceError(f"debug_util: cmaddr={cmaddr!r}: waferscale only reads its own "
                              "simulator's memory; a CS system needs Cerebras' SDK")
        self.bin_dir = Path(bin_dir)
        runtime = last_runtime(self.bin_dir)
        if runtime is None or runtime.device is None:
            raise DeviceError(f"debug_util('{bin_dir}'): no program from this directory ran in "
                              "this process; create an SdkRuntime, load() and run() it first")
        self._runtime: SdkRuntime = runtime

    def _program_xy(self, x: Any, y: Any) -> tuple[int, int]:
        x, y = int_arg(x, "x"), int_arg(y, "y")
        ox, oy = self._runtime.compile_record.fabric_offsets
        dev = self._runtime.device
        assert dev is not None
        px, py = x - ox, y - oy
        if not (0 <= px < dev.width and 0 <= py < dev.height):
            raise DeviceError(
                f"debug_util: fabric PE ({x}, {y}) is outside the program rectangle, which "
                f"spans fabric columns {ox}..{ox + dev.width - 1} and rows "
                f"{oy}..{oy + dev.height - 1}"
                " (debug_util takes absolute fabric coordinates: program PE (px, py) is "
                f"({ox} + px, {oy} + py))")
        return px, py

    def get_symbol(self, x: int, y: int, symbol: str, dtype: Any) -> np.ndarray:
        """The memory of global ``symbol`` on fabric PE ``(x, y)`` viewed as ``dtype``."""
        px, py = self._program_xy(x, y)
        dev = self._runtime.device
        assert dev is not None
        return reinterpret(dev.read_symbol(px, py, symbol), dtype,
                           f"debug_util.get_symbol({symbol!r})")

    def get_symbol_rect(self, rect: tuple[tuple[int, int], tuple[int, int]], symbol: str,
                        dtype: Any) -> np.ndarray:
        """``get_symbol`` over ``((x, y), (w, h))`` (fabric coordinates), as an array of shape
        ``(w, h, elements)``."""
        (x, y), (w, h) = rect
        w, h = int_arg(w, "w"), int_arg(h, "h")
        if w <= 0 or h <= 0:
            raise DeviceError(f"debug_util.get_symbol_rect: size {w}x{h} must be positive")
        rows = [[self.get_symbol(x + c, y + r, symbol, dtype) for r in range(h)]
                for c in range(w)]
        sizes = {a.size for row in rows for a in row}
        if len(sizes) != 1:
            raise DeviceError(f"debug_util.get_symbol_rect: '{symbol}' has different sizes on "
                              f"the PEs of the rectangle ({sorted(sizes)} elements); read them "
                              "one by one with get_symbol")
        return np.array(rows)

    def read_trace(self, x: int, y: int, key: str) -> list[Any]:
        """The records of the ``<debug>`` instance imported with ``.key = key`` on fabric PE
        ``(x, y)``, in the order they were traced (see :func:`decode_trace`)."""
        px, py = self._program_xy(x, y)
        dev = self._runtime.device
        assert dev is not None
        names = (f"$$csl_debug.{key}.buffer", f"$$csl_debug.{key}.buffer_index")
        try:
            buf, index = (dev.read_symbol(px, py, n) for n in names)
        except DeviceError as e:
            raise DeviceError(f"debug_util.read_trace: PE ({x}, {y}) has no <debug> trace with "
                              f"key '{key}' ({e})") from None
        return decode_trace(buf, int(index[0]))
