"""A fake :class:`waferscale.host.device.Device` for the host-side tests.

It keeps, per (symbol, PE), the 32-bit words last written by ``memcpy_h2d`` (16-bit elements
are stored zero-extended, as the protocol describes), records every command in ``log``,
collects H2D stream wavelets per (color, PE) and serves D2H streams from ``d2h_pending``,
which tests (or fake functions) fill. ``functions`` maps exported function names to Python
callables ``f(device, args)`` run by ``launch``. A stream read with too few wavelets raises
:class:`DeadlockError`, as a real device would.

``FakeDevice.from_output_dir`` is a device factory (usable through ``SdkRuntime(device=...)``
or ``WAFERSCALE_DEVICE_FACTORY=host_fake_device:FakeDevice.from_output_dir``); every instance is
appended to ``FakeDevice.instances`` and gets ``FakeDevice.default_functions``.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
from waferscale.host.compile import read_output_dir
from waferscale.host.device import DeadlockError, DeviceError, ExportInfo

Coord = tuple[int, int]
FakeFn = Callable[["FakeDevice", Sequence[tuple[str, np.generic]]], None]

ELEM_DTYPES = {"f32": np.float32, "i32": np.int32, "u32": np.uint32, "f16": np.float16,
               "i16": np.int16, "u16": np.uint16}


class FakeDevice:
    instances: ClassVar[list[FakeDevice]] = []
    default_functions: ClassVar[dict[str, FakeFn]] = {}

    def __init__(self, width: int, height: int, exports: dict[str, ExportInfo],
                 functions: dict[str, FakeFn] | None = None) -> None:
        self.width = width
        self.height = height
        self._exports = dict(exports)
        self.functions = dict(self.default_functions)
        self.functions.update(functions or {})
        self.memory: dict[tuple[str, Coord], np.ndarray] = {}
        self.log: list[tuple[Any, ...]] = []
        self.h2d_streams: dict[int, dict[Coord, list[int]]] = defaultdict(
            lambda: defaultdict(list))
        self.d2h_pending: dict[int, dict[Coord, deque[int]]] = defaultdict(
            lambda: defaultdict(deque))
        self.options: dict[str, Any] = {}
        self.stopped = False
        FakeDevice.instances.append(self)

    @classmethod
    def from_output_dir(cls, bin_dir: Any, **options: Any) -> FakeDevice:
        rec = read_output_dir(bin_dir)
        dev = cls(rec.width, rec.height, rec.exports)
        dev.options = options
        return dev

    # -- helpers for tests ---------------------------------------------------------------

    def _check_pes(self, pes: Sequence[Coord]) -> None:
        for x, y in pes:
            if not (0 <= x < self.width and 0 <= y < self.height):
                raise DeviceError(f"PE ({x}, {y}) is outside the {self.width}x{self.height} "
                                  "rectangle")

    def _data(self, name: str) -> ExportInfo:
        info = self._exports.get(name)
        if info is None or info.kind != "data":
            raise DeviceError(f"no exported data symbol '{name}'")
        return info

    def words(self, name: str, x: int, y: int) -> np.ndarray:
        return self.memory.get((name, (x, y)), np.zeros(0, np.uint32))

    # -- the Device protocol -------------------------------------------------------------

    def exports(self) -> dict[str, ExportInfo]:
        return dict(self._exports)

    def memcpy_h2d(self, name: str, pes: Sequence[Coord], data: np.ndarray,
                   elem_bits: int) -> None:
        self._data(name)
        self._check_pes(pes)
        assert data.dtype == np.uint32 and data.shape[0] == len(pes)
        if elem_bits == 16:
            assert not np.any(data >> 16), "16-bit copy data must arrive zero-extended"
        self.log.append(("memcpy_h2d", name, list(pes), data.copy(), elem_bits))
        for i, pe in enumerate(pes):
            self.memory[(name, pe)] = data[i].copy()

    def memcpy_d2h(self, name: str, pes: Sequence[Coord], count: int,
                   elem_bits: int) -> np.ndarray:
        self._data(name)
        self._check_pes(pes)
        self.log.append(("memcpy_d2h", name, list(pes), count, elem_bits))
        out = np.zeros((len(pes), count), np.uint32)
        for i, pe in enumerate(pes):
            w = self.memory.get((name, pe), np.zeros(0, np.uint32))[:count]
            out[i, :w.size] = w
        if elem_bits == 16:
            out &= np.uint32(0xFFFF)
        return out

    def stream_h2d(self, color: int, pes: Sequence[Coord], data: np.ndarray) -> None:
        self._check_pes(pes)
        self.log.append(("stream_h2d", color, list(pes), data.copy()))
        for i, pe in enumerate(pes):
            self.h2d_streams[color][pe].extend(int(v) for v in data[i])

    def stream_d2h(self, color: int, pes: Sequence[Coord], count: int) -> np.ndarray:
        self._check_pes(pes)
        self.log.append(("stream_d2h", color, list(pes), count))
        out = np.zeros((len(pes), count), np.uint32)
        for i, pe in enumerate(pes):
            q = self.d2h_pending[color][pe]
            if len(q) < count:
                raise DeadlockError(f"PE {pe}: the host waits for {count} wavelets on color "
                                    f"{color} but only {len(q)} will ever come")
            out[i] = [q.popleft() for _ in range(count)]
        return out

    def launch(self, name: str, args: Sequence[tuple[str, np.generic]]) -> None:
        info = self._exports.get(name)
        if info is None or info.kind != "fn":
            raise DeviceError(f"no exported function '{name}'")
        self.log.append(("launch", name, list(args)))
        fn = self.functions.get(name)
        if fn is not None:
            fn(self, args)

    def read_symbol(self, x: int, y: int, name: str) -> np.ndarray:
        info = self._data(name)
        elem = info.type.lstrip("[*]").replace("const ", "").strip()
        dt = np.dtype(ELEM_DTYPES.get(elem, np.uint32))
        words = self.words(name, x, y)
        if dt.itemsize == 2:
            return words.astype(np.uint16).view(dt)
        return words.view(dt)

    def stop(self) -> None:
        self.log.append(("stop",))
        self.stopped = True
