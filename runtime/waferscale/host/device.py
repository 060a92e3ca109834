"""The contract between the host API (``SdkRuntime``) and a device that executes a compiled
program: our fabric simulator today, possibly other backends later.

The host API owns everything the SDK does on the host side: argument checking, host-array
layouts (ROW_MAJOR / COL_MAJOR, 16-bit values in the low half of each u32), rectangles of PEs,
``nonblock`` tasks and command ordering. A :class:`Device` only moves per-PE data and runs
the fabric. Coordinates are *program* coordinates: (0, 0) is the north-west PE of the
program rectangle, ``x`` the column.

Protocol (each call is one serialized host command; the device finishes it or raises):

``exports()``
    The host-visible names of the program (``@export_name``), with their kind
    (``"data"`` for pointers/scalars, ``"fn"`` for host-callable functions), the CSL type
    spelling and mutability.
``memcpy_h2d(name, pes, data, elem_bits)``
    Copy mode: for each PE ``pes[i]``, write ``data[i, :]`` (uint32 words; for 16-bit
    elements the value is in the low half) to consecutive elements starting where the exported
    pointer ``name`` points. Needs no kernel code.
``memcpy_d2h(name, pes, count, elem_bits) -> ndarray (len(pes), count) uint32``
    Copy mode read (16-bit elements come back zero-extended).
``stream_h2d(color, pes, data)``
    Streaming mode: deliver ``data[i, :]`` as wavelets on memcpy stream ``color`` to PE
    ``pes[i]``; returns once every wavelet has entered the PEs (not once it was processed).
``stream_d2h(color, pes, count) -> ndarray (len(pes), count) uint32``
    Streaming mode: collect ``count`` wavelets that each PE sends on D2H stream ``color``.
``launch(name, args)``
    Call the exported function ``name`` on every PE of the rectangle with ``args`` (a list of
    ``(csl_type_spelling, numpy scalar)``), then run until every PE has called
    ``sys_mod.unblock_cmd_stream()``.
``read_symbol(x, y, name) -> ndarray``
    The current contents of any global of PE (x, y) as its element dtype (debugging).
``stop()``
    Finish pending work and release resources.

Errors: a user mistake (unknown name, wrong kind, a PE outside the rectangle) raises
:class:`DeviceError` with a clear message; a device that cannot make progress raises
:class:`~waferscale.host.device.DeadlockError` whose message reports, per PE, what it waits on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np


class DeviceError(Exception):
    """A host-side usage error or a failure reported by the device."""


class DeadlockError(DeviceError):
    """The device cannot make progress while a host command waits for it."""


@dataclass(frozen=True)
class ExportInfo:
    name: str
    kind: str            # "data" | "fn"
    type: str            # CSL spelling, e.g. "[*]f32", "fn(f32, i16) void"
    mutable: bool
    elem_bits: int       # element width of a data export (16 or 32); 0 for functions
    params: tuple[str, ...] = ()   # parameter types of a fn export


Coord = tuple[int, int]


class Device(Protocol):
    width: int
    height: int

    def exports(self) -> dict[str, ExportInfo]: ...

    def memcpy_h2d(self, name: str, pes: Sequence[Coord], data: np.ndarray,
                   elem_bits: int) -> None: ...

    def memcpy_d2h(self, name: str, pes: Sequence[Coord], count: int,
                   elem_bits: int) -> np.ndarray: ...

    def stream_h2d(self, color: int, pes: Sequence[Coord], data: np.ndarray) -> None: ...

    def stream_d2h(self, color: int, pes: Sequence[Coord], count: int) -> np.ndarray: ...

    def launch(self, name: str, args: Sequence[tuple[str, np.generic]]) -> None: ...

    def read_symbol(self, x: int, y: int, name: str) -> np.ndarray: ...

    def stop(self) -> None: ...
