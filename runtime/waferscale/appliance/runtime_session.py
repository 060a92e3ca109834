"""One job's runtime: the appliance client's ``SdkRuntime`` commands on waferscale's
:class:`~waferscale.host.sdkruntime.SdkRuntime`.

The client numbers its commands (``op_index``) and, for a non-blocking command, returns a task
without looking at the reply; it asks for the outcome later with ``task_wait`` /
``is_task_done`` (and a non-blocking ``memcpy_d2h`` receives its data only then). Our runtime
runs every command when it is issued, so:

- a non-blocking command's error is kept and returned at ``task_wait``/``is_task_done`` of its
  ``op_index``; one never waited for is returned by ``stop`` (errors are never dropped);
- a non-blocking ``memcpy_d2h`` keeps its data until its task is waited for;
- every other task is done when asked.

Host arrays travel as raw bytes of 32-bit words; they are handed to the runtime as ``uint32``
words (the runtime moves bit patterns, 16-bit data in the low half), so ``float32``, ``int32``
and ``uint32`` arrays all arrive bit for bit.

Not thread-safe: the caller holds the job's lock and :data:`~waferscale.appliance.jobs.SIM_LOCK`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from waferscale.host.device import DeviceError
from waferscale.host.sdkruntime import MemcpyDataType, MemcpyOrder, SdkRuntime
from waferscale.lang.errors import CslError

log = logging.getLogger(__name__)


class CommandFailed(Exception):
    """A command failed because of the program or the host script (the client's mistake);
    the message is the runtime's."""


@dataclass
class Outcome:
    """What a non-blocking command left for its task: an error or D2H data (or nothing)."""
    error: str | None = None
    data: bytes | None = None


def _data_type(value: int) -> MemcpyDataType:
    return MemcpyDataType.MEMCPY_16BIT if value == 1 else MemcpyDataType.MEMCPY_32BIT


def _order(value: int) -> MemcpyOrder:
    return MemcpyOrder.COL_MAJOR if value == 1 else MemcpyOrder.ROW_MAJOR


class RuntimeSession:
    """The runtime of one execute job, for the compile output directory ``out_dir``."""

    def __init__(self, out_dir: Path) -> None:
        try:
            self.runtime = SdkRuntime(out_dir)
        except DeviceError as e:
            raise CommandFailed(str(e)) from None
        self.out_dir = out_dir
        self._outcomes: dict[int, Outcome] = {}
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        with _as_failure():
            self.runtime.load()
            self.runtime.run()
        self._started = True

    def stop(self) -> None:
        """Stop the device; raise :class:`CommandFailed` for it, or for a non-blocking
        command's error that no task wait has reported."""
        unreported = [(op, o.error) for op, o in sorted(self._outcomes.items()) if o.error]
        self._outcomes.clear()
        with _as_failure():
            self.runtime.stop()
        if unreported:
            raise CommandFailed("; ".join(f"non-blocking command {op} failed: {err}"
                                          for op, err in unreported))

    def close(self) -> None:
        """Free the device (a client vanished or the job ended without ``stop``)."""
        self._outcomes.clear()
        try:
            if self._started:
                self.runtime.stop()
        except DeviceError:
            pass            # already stopped
        except Exception:   # noqa: BLE001 - freeing must not fail; the device may be mid-command
            log.debug("stopping %s while freeing it", self.out_dir, exc_info=True)

    # -- commands ----------------------------------------------------------------------------

    def get_id(self, symbol: str) -> int:
        with _as_failure():
            sid = self.runtime.get_id(symbol)
        if sid is None:
            exported = ", ".join(self.runtime.compile_record.symbol_ids) or "none"
            raise CommandFailed(f"the program exports no symbol '{symbol}' (exported: "
                                f"{exported})")
        return sid

    def _issue(self, op: int, defer: bool, fn: Any, *args: Any, **kw: Any) -> Any:
        """Run a command; with ``defer`` (a non-blocking command) its error is kept for its
        task instead of raised."""
        try:
            with _as_failure():
                return fn(*args, **kw)
        except CommandFailed as e:
            if not defer:
                raise
            self._outcomes[op] = Outcome(error=str(e))
            log.info("op %d failed (reported at its task wait): %s", op, e)
            return None

    def memcpy_h2d(self, op: int, dest: int, data: bytes, x: int, y: int, w: int, h: int,
                   l: int, *, streaming: bool, data_type: int, order: int,
                   nonblock: bool) -> None:
        """Errors of an H2D are returned at once (the client reads the reply of every H2D)."""
        if len(data) % 4:
            raise CommandFailed(f"memcpy_h2d: {len(data)} bytes is not a whole number of "
                                "32-bit words")
        src = np.frombuffer(data, dtype=np.uint32)
        with _as_failure():
            self.runtime.memcpy_h2d(dest, src, x, y, w, h, l, streaming=streaming,
                                    data_type=_data_type(data_type), order=_order(order),
                                    nonblock=nonblock)

    def memcpy_d2h(self, op: int, src: int, x: int, y: int, w: int, h: int, l: int, *,
                   streaming: bool, data_type: int, order: int, nonblock: bool) -> bytes | None:
        """The data of a blocking D2H; a non-blocking one keeps it for its task (None)."""
        if min(w, h, l) <= 0:
            raise CommandFailed(f"memcpy_d2h: w={w}, h={h}, elt_per_pe={l} must be positive")
        dest = np.zeros(w * h * l, dtype=np.uint32)
        with _as_failure():
            self.runtime.memcpy_d2h(dest, src, x, y, w, h, l, streaming=streaming,
                                    data_type=_data_type(data_type), order=_order(order),
                                    nonblock=nonblock)
        if nonblock:
            self._outcomes[op] = Outcome(data=dest.tobytes())
            return None
        return dest.tobytes()

    def call(self, op: int, name: str, words: Sequence[int], nonblock: bool) -> None:
        self._issue(op, nonblock, self.runtime.call, name, list(words), nonblock=nonblock)

    def take_outcome(self, op: int) -> Outcome:
        """What task ``op`` left (removed: a task is waited for once); done if nothing."""
        return self._outcomes.pop(op, Outcome())

    def symbol_rect(self, x: int, y: int, w: int, h: int, symbol: str,
                    bytes_per_elem: int) -> bytes:
        """``debug_util.get_symbol_rect``: the symbol's memory on the PEs of the rectangle at
        fabric coordinates ``(x, y)``, PE by PE with ``y`` fastest (the client's ``(w, h, n)``
        array)."""
        name = {1: "uint8", 2: "uint16", 4: "uint32", 8: "uint64"}.get(bytes_per_elem)
        if name is None:
            raise CommandFailed(f"get_symbol_rect: elements of {bytes_per_elem} bytes are not "
                                "supported (1, 2, 4 or 8)")
        if w <= 0 or h <= 0:
            raise CommandFailed(f"get_symbol_rect: the rectangle {w}x{h} is empty")
        ox, oy = self.runtime.compile_record.fabric_offsets
        parts = []
        with _as_failure():
            for px in range(x, x + w):
                for py in range(y, y + h):
                    parts.append(self.runtime.read_symbol(px - ox, py - oy, symbol,
                                                          np.dtype(name)))
        return b"".join(p.tobytes() for p in parts)


@contextlib.contextmanager
def _as_failure() -> Iterator[None]:
    """A :class:`DeviceError` (the host API's user errors, including deadlocks) or a
    :class:`CslError` (a program that no longer elaborates) becomes :class:`CommandFailed`
    with the same message."""
    try:
        yield
    except DeviceError as e:
        raise CommandFailed(str(e)) from None
    except CslError as e:
        raise CommandFailed(e.render()) from None
