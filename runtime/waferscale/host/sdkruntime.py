"""``SdkRuntime``: the SDK's host API (``cerebras.sdk.runtime.sdkruntimepybind``) on waferscale.

An SDK host script runs unmodified under ``waferscale cs_python`` (which makes
``cerebras.sdk.runtime.sdkruntimepybind`` resolve to this module). The class checks every
argument as the SDK does, maps host arrays to per-PE blocks (:mod:`.memcpy_layout`) and hands
per-PE data to a :class:`~waferscale.host.device.Device` — our fabric simulator by default.

Lifecycle (the SDK's order; each step out of order raises :class:`DeviceError` with the SDK's
precondition message)::

    r = SdkRuntime("out")          # reads out/ (compile record); no device yet
    a = r.get_id("A")              # symbol ids are known before load()
    r.load()                       # creates the device (re-elaborates the program from source)
    r.run()
    r.memcpy_h2d(a, src, 0, 0, w, h, l, streaming=False, data_type=..., order=..., nonblock=False)
    r.launch("compute", np.float32(2.0), nonblock=False)
    r.memcpy_d2h(dst, a, 0, 0, w, h, l, streaming=False, data_type=..., order=..., nonblock=False)
    r.stop()

Command order and ``nonblock``
    Commands (memcpy, launch, call) are executed one at a time in issue order, as the SDK
    serializes them. A command is executed *eagerly, when it is issued*, whether or not
    ``nonblock`` is set: a nonblocking command returns a :class:`Task` that is already done,
    so :meth:`is_task_done` is always True and :meth:`task_wait` returns at once. The device
    results are those of the SDK's serialized order; what differs is only host-side timing:
    a nonblocking H2D reads ``src`` (and a nonblocking D2H fills ``dest``) before the call
    returns, and an error (including a device deadlock) is raised by the command that caused
    it rather than by a later ``task_wait``/``stop``.

The device
    ``load()`` creates the device through a factory called as
    ``factory(bin_dir, suppress_simfab_trace=..., simfab_numthreads=..., msg_level=...)``.
    The factory is, in this order of precedence: the ``device=`` keyword (a :class:`Device`
    instance, used as is, or a factory); the hook set with :func:`set_device_factory`; the
    environment variable ``WAFERSCALE_DEVICE_FACTORY="module:callable"`` (imported at
    ``load()``; used by tests to run host scripts on a fake device); otherwise
    :func:`default_device_factory`, i.e. ``waferscale.sim.device.SimulatorDevice.from_output_dir``
    (which gets no SDK option: they mean nothing to our simulator).

Differences from the SDK: ``cmaddr`` (a CS system) is refused — real hardware needs Cerebras'
SDK; no ``sim.log``/``simfab_traces``; ``memcpy_h2d_stride``, ``send``/``receive`` (SdkLayout
ports), ``dump_core`` are not provided. See ``docs/host-api.md``.
"""

from __future__ import annotations

import enum
import importlib
import itertools
import logging
import math
import os
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from .compile import CompileRecord, read_output_dir
from .device import DeadlockError, Device, DeviceError, ExportInfo
from .memcpy_layout import (
    MemcpyDataType,
    MemcpyOrder,
    as_data_type,
    as_order,
    check_roi,
    colbcast_blocks,
    d2h_check_dest,
    d2h_fill,
    elem_bits,
    h2d_blocks,
    int_arg,
    roi_pes,
    rowbcast_blocks,
)

log = logging.getLogger(__name__)

__all__ = [
    "ENV_DEVICE_FACTORY",
    "DeadlockError",
    "DeviceError",
    "MemcpyDataType",
    "MemcpyOrder",
    "SdkRuntime",
    "Task",
    "set_device_factory",
]

DeviceFactory = Callable[..., Device]

ENV_DEVICE_FACTORY = "WAFERSCALE_DEVICE_FACTORY"
DEFAULT_FACTORY = "waferscale.sim.device:SimulatorDevice.from_output_dir"

MSG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
MAX_SIMFAB_THREADS = 64

# Constructor keywords seen in SDK host scripts that have no meaning here; accepted and ignored.
IGNORED_KWARGS = frozenset({"memcpy_required", "setup_phase_only", "run_phase_only",
                            "wio_flows", "worker"})

# Types a host can pass to an exported function (the SDK's is_valid_primitive_type).
RPC_TYPES: dict[str, type[np.generic]] = {
    "f32": np.float32, "f16": np.float16, "i32": np.int32, "u32": np.uint32,
    "i16": np.int16, "u16": np.uint16,
}

_factory_override: DeviceFactory | None = None


def set_device_factory(factory: DeviceFactory | None) -> DeviceFactory | None:
    """Make every later ``SdkRuntime.load()`` (without ``device=``) create its device with
    ``factory(bin_dir, **options)``; ``None`` restores the default. Returns the previous
    hook."""
    global _factory_override
    previous, _factory_override = _factory_override, factory
    return previous


def _import_callable(spec: str, what: str) -> DeviceFactory:
    mod_name, sep, attr = spec.partition(":")
    if not sep or not mod_name or not attr:
        raise DeviceError(f"{what} must look like 'package.module:callable', got '{spec}'")
    try:
        obj: Any = importlib.import_module(mod_name)
    except ImportError as e:
        raise DeviceError(f"{what}: cannot import '{mod_name}' ({e})") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise DeviceError(f"{what}: '{mod_name}' has no attribute '{attr}'") from None
    if not callable(obj):
        raise DeviceError(f"{what}: '{spec}' is not callable")
    return obj


def default_device_factory(bin_dir: str | Path, **options: Any) -> Device:
    """Create our fabric simulator for a compile output directory.

    The SDK's simfabric options (``suppress_simfab_trace``, ``simfab_numthreads``,
    ``msg_level``) have no meaning for our simulator, whose ``from_output_dir`` keywords are
    its own ``SimOptions``; they are not passed on.
    """
    try:
        mod = importlib.import_module("waferscale.sim.device")
    except ModuleNotFoundError as e:
        if e.name in ("waferscale.sim.device", "waferscale.sim"):
            raise DeviceError("the waferscale fabric simulator (waferscale.sim.device) is not "
                              "available in this installation") from None
        raise
    log.debug("simulator for %s (SDK options %s not used by the simulator)", bin_dir, options)
    return cast(Device, mod.SimulatorDevice.from_output_dir(bin_dir))


def resolve_device_factory() -> DeviceFactory:
    """The factory ``load()`` uses when no ``device=`` was given (see the module docstring)."""
    if _factory_override is not None:
        return _factory_override
    spec = os.environ.get(ENV_DEVICE_FACTORY, "").strip()
    if spec:
        return _import_callable(spec, ENV_DEVICE_FACTORY)
    return default_device_factory


def _is_device(obj: Any) -> bool:
    return all(hasattr(obj, a) for a in ("exports", "memcpy_h2d", "launch", "stop"))


class Task:
    """Handle of one host command, returned by every memcpy/launch/call (the SDK's ``Task``).

    Commands run when issued (see the module docstring), so a task is always done.
    ``command`` describes the command for messages and logs.
    """

    __slots__ = ("_owner", "command", "index")

    def __init__(self, owner: SdkRuntime, index: int, command: str) -> None:
        self._owner = owner
        self.index = index
        self.command = command

    def __repr__(self) -> str:
        return f"<Task {self.index}: {self.command} (done)>"


class _State(enum.Enum):
    CREATED = "created"
    LOADED = "loaded"
    RUNNING = "running"
    STOPPED = "stopped"


# The last runtime of each output directory, for debug_util (which the SDK uses after stop()).
# Weak references: a finished program's device is not kept alive for debug_util's sake.
_LAST_RUNTIME: dict[str, weakref.ref[SdkRuntime]] = {}


def last_runtime(bin_dir: str | Path) -> SdkRuntime | None:
    """The most recently loaded :class:`SdkRuntime` of ``bin_dir`` in this process, if the
    script still holds it."""
    ref = _LAST_RUNTIME.get(str(Path(bin_dir).resolve()))
    return ref() if ref is not None else None


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise DeviceError(f"{name} must be True or False, got {value!r}")


def _show(value: Any) -> str:
    """A value for messages: ``1.5`` for numpy scalars too (their repr is ``np.float32(1.5)``)."""
    return str(value) if isinstance(value, np.generic) else repr(value)


def _describe_type(value: Any) -> str:
    if isinstance(value, np.generic):
        return f"np.{type(value).__name__}"
    return type(value).__name__


def convert_arg(value: Any, ptype: str, where: str) -> np.generic:
    """Convert one ``launch`` argument to the numpy scalar of CSL type ``ptype``.

    Rules: a numpy scalar of exactly the parameter's type passes as is. Integers (Python or
    numpy) convert to an integer type when in range and to a float type when exactly
    representable. Python floats (and ``np.float64``) convert to f32/f16 by rounding to
    nearest, as the SDK does for Python floats; an overflow to infinity is an error.
    Other numpy floats convert only when the value is exact in the target type. Floats never
    convert to integer parameters; bools, strings, arrays and anything else are refused.
    """
    target = RPC_TYPES.get(ptype)
    if target is None:
        raise DeviceError(f"{where}: the parameter has type {ptype}, which the host cannot "
                          f"pass (host-callable parameters are {', '.join(RPC_TYPES)})")
    tdt = np.dtype(target)
    if isinstance(value, (bool, np.bool_)):
        raise DeviceError(f"{where}: got a bool; pass a value such as "
                          f"np.{tdt.name}({int(value)})")
    if isinstance(value, np.generic) and value.dtype == tdt:
        return value
    if isinstance(value, (int, np.integer)):
        v = int(value)
        if tdt.kind in "iu":
            info = np.iinfo(tdt)
            if not info.min <= v <= info.max:
                raise DeviceError(f"{where}: {v} does not fit in {ptype} "
                                  f"({info.min}..{info.max})")
            return target(v)
        conv = target(v)
        if not math.isfinite(float(conv)) or int(conv) != v:
            raise DeviceError(f"{where}: the integer {v} is not exactly representable as "
                              f"{ptype}; pass np.{tdt.name}(...) to round explicitly")
        return conv
    if isinstance(value, float):                      # Python float and np.float64
        if tdt.kind != "f":
            raise DeviceError(f"{where}: got the float {_show(value)} for the {ptype} parameter; "
                              f"pass an integer such as np.{tdt.name}(...)")
        with np.errstate(over="ignore"):
            conv = target(value)
        if math.isinf(float(conv)) and not math.isinf(value):
            raise DeviceError(f"{where}: {_show(value)} overflows {ptype}")
        return conv
    if isinstance(value, np.floating):                # np.float16 / np.float32 / longdouble
        if tdt.kind != "f":
            raise DeviceError(f"{where}: got {_describe_type(value)} {_show(value)} for the "
                              f"{ptype} parameter; pass an integer such as np.{tdt.name}(...)")
        with np.errstate(over="ignore"):
            conv = target(value)
        same = (float(conv) == float(value)) or (math.isnan(float(conv)) and
                                                  math.isnan(float(value)))
        if not same:
            raise DeviceError(f"{where}: {_describe_type(value)} {_show(value)} is not exactly "
                              f"representable as {ptype}; pass np.{tdt.name}(...)")
        return conv
    raise DeviceError(f"{where}: {_describe_type(value)} is not a valid argument; pass a numpy "
                      f"scalar such as np.{tdt.name}(...) or a Python int/float")


def word_to_arg(word: int, ptype: str, where: str) -> np.generic:
    """Interpret one pre-packed 32-bit ``call`` word as a value of CSL type ``ptype``.

    32-bit types take the word's bit pattern. 16-bit types take its low half; the high half
    must be zero (or all ones for a negative i16, i.e. a sign-extended word).
    """
    target = RPC_TYPES.get(ptype)
    if target is None:
        raise DeviceError(f"{where}: the parameter has type {ptype}, which the host cannot "
                          f"pass (host-callable parameters are {', '.join(RPC_TYPES)})")
    w = np.array([word], dtype=np.uint32)
    if np.dtype(target).itemsize == 4:
        return w.view(target)[0]
    low, high = word & 0xFFFF, word >> 16
    if high != 0 and not (ptype == "i16" and high == 0xFFFF and low & 0x8000):
        raise DeviceError(f"{where}: word {word:#010x} does not hold a 16-bit {ptype} (the "
                          "high 16 bits must be zero)")
    return np.array([low], dtype=np.uint16).view(target)[0]


class SdkRuntime:
    """The SDK's ``SdkRuntime`` (local, ``cmaddr=None`` flavour) on a waferscale device.

    ``bin_dir`` is the output directory of ``waferscale cslc`` (``-o``). The documented SDK
    keywords are accepted: ``suppress_simfab_trace`` (bool), ``simfab_numthreads`` (1..64)
    and ``msg_level`` (DEBUG/INFO/WARNING/ERROR) are passed to the device factory;
    ``cmaddr`` must be None or empty. ``device`` (not in the SDK) injects a
    :class:`Device` instance or factory. SDK-internal keywords (``memcpy_required``,
    ``setup_phase_only``, ...) are ignored with a warning; any other keyword is an error.
    """

    def __init__(self, bin_dir: str | os.PathLike[str], cmaddr: str | None = None,
                 suppress_simfab_trace: bool = False, simfab_numthreads: int = 5,
                 msg_level: str = "WARNING", *, device: Device | DeviceFactory | None = None,
                 **kwargs: Any) -> None:
        # An empty cmaddr is the simulator, as None is (the SDK's single-tile-matvec passes its
        # --cmaddr default "" for its simulator runs).
        if cmaddr:
            raise DeviceError(
                f"cmaddr={cmaddr!r}: waferscale runs programs on its own fabric simulator only; "
                "running on a CS system needs Cerebras' SDK (its cs_python). Omit --cmaddr to "
                "simulate")
        if not isinstance(bin_dir, (str, os.PathLike)):
            raise DeviceError(f"SdkRuntime needs the compile output directory (a path), got "
                              f"{type(bin_dir).__name__}")
        if isinstance(msg_level, str) and msg_level.upper() in MSG_LEVELS:
            msg_level = msg_level.upper()
        else:
            raise DeviceError(f"msg_level must be one of {', '.join(MSG_LEVELS)}, got "
                              f"{msg_level!r}")
        threads = int_arg(simfab_numthreads, "simfab_numthreads")
        if not 1 <= threads <= MAX_SIMFAB_THREADS:
            raise DeviceError(f"simfab_numthreads must be 1..{MAX_SIMFAB_THREADS}, got {threads}")
        unknown = sorted(set(kwargs) - IGNORED_KWARGS)
        if unknown:
            raise DeviceError("SdkRuntime got unexpected keyword argument(s): "
                              + ", ".join(unknown))
        if kwargs:
            log.warning("SdkRuntime: ignoring SDK-internal keyword(s) %s",
                        ", ".join(sorted(kwargs)))
        self.bin_dir = Path(bin_dir)
        # Resolved now: a script may chdir between SdkRuntime() and load() (sdk-examples'
        # conjugate-gradient chdirs into the output directory).
        self._bin_path = self.bin_dir.resolve()
        self._record: CompileRecord = read_output_dir(self.bin_dir)
        self._options: dict[str, Any] = {"suppress_simfab_trace": _flag(
            suppress_simfab_trace, "suppress_simfab_trace"), "simfab_numthreads": threads,
            "msg_level": msg_level}
        self._device_arg = device
        self._device: Device | None = None
        self._exports: dict[str, ExportInfo] = dict(self._record.exports)
        self._ids = dict(self._record.symbol_ids)
        self._names_by_id = {i: n for n, i in self._ids.items()}
        self._state = _State.CREATED
        self._counter = itertools.count()
        log.debug("SdkRuntime(%s): %dx%d PEs, exports %s", self.bin_dir, self._record.width,
                  self._record.height, ", ".join(self._ids))

    def __repr__(self) -> str:
        return f"<SdkRuntime {str(self.bin_dir)!r} ({self._state.value})>"

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def device(self) -> Device | None:
        """The device, once :meth:`load` created it."""
        return self._device

    @property
    def compile_record(self) -> CompileRecord:
        """What the output directory says about the program (see :mod:`.compile`)."""
        return self._record

    def get_id(self, name: str) -> int | None:
        """The id of an exported symbol or function (for memcpy ``dest``/``src``), or None if
        the program exports no such name (as in the SDK). Usable before :meth:`load`."""
        if not isinstance(name, str):
            raise DeviceError(f"get_id takes the exported name (a str), got "
                              f"{type(name).__name__}")
        sid = self._ids.get(name)
        if sid is None:
            log.warning("get_id(%r): the program exports no such name (exported: %s)", name,
                        ", ".join(self._ids) or "none")
        return sid

    def load(self) -> None:
        """Create the device for the compiled program."""
        if self._state is not _State.CREATED:
            raise DeviceError("Cannot call load() multiple times, or after stop()")
        changed = self._record.changed_sources()
        if changed:
            raise DeviceError(
                f"{', '.join(changed)} changed since '{self.bin_dir}' was compiled; the "
                "simulator runs the program from source, so recompile with `waferscale cslc`")
        dev_arg = self._device_arg
        device: Device
        if dev_arg is not None and _is_device(dev_arg):
            device = cast(Device, dev_arg)
        else:
            factory = cast(DeviceFactory, dev_arg) if dev_arg is not None else \
                resolve_device_factory()
            device = factory(self._bin_path, **self._options)
            if not _is_device(device):
                raise DeviceError(f"the device factory returned {type(device).__name__}, which "
                                  "does not implement waferscale.host.device.Device")
        if (device.width, device.height) != (self._record.width, self._record.height):
            raise DeviceError(f"the device is {device.width}x{device.height} PEs but "
                              f"'{self.bin_dir}' was compiled for {self._record.width}x"
                              f"{self._record.height}; recompile with `waferscale cslc`")
        exports = dict(device.exports())
        missing = sorted(set(exports) - set(self._ids))
        if missing:
            raise DeviceError(f"the device exports {', '.join(missing)}, which "
                              f"'{self.bin_dir}/bin/out_rpc.json' does not list; recompile "
                              "with `waferscale cslc`")
        self._exports = exports
        self._device = device
        self._state = _State.LOADED
        _LAST_RUNTIME[str(self._bin_path)] = weakref.ref(self)
        log.info("loaded %s on %s", self.bin_dir, type(device).__name__)

    def run(self) -> None:
        """Start the program (after :meth:`load`)."""
        if self._state is not _State.LOADED:
            raise DeviceError("Cannot call run() multiple times, or call run() if load() has "
                              "not been called")
        self._state = _State.RUNNING

    def stop(self) -> None:
        """Finish pending work and stop the device; required at the end of every script."""
        if self._state is not _State.RUNNING:
            raise DeviceError("Cannot call stop() multiple times, or call stop() if run() has "
                              "not been called")
        self._state = _State.STOPPED
        assert self._device is not None
        self._device.stop()

    def _running(self, what: str) -> Device:
        if self._state is not _State.RUNNING or self._device is None:
            hint = {_State.CREATED: "call load() and run() first",
                    _State.LOADED: "call run() first",
                    _State.STOPPED: "stop() was already called"}.get(self._state, "")
            raise DeviceError(f"SdkRuntime must be running to accept {what} commands"
                              + (f" ({hint})" if hint else "") + ".")
        return self._device

    def _task(self, command: str) -> Task:
        t = Task(self, next(self._counter), command)
        log.debug("done: %s", command)
        return t

    # -- symbols and streams ---------------------------------------------------------------

    def _data_symbol(self, sid: Any, *, write: bool, bits: int, what: str) -> str:
        if sid is None:
            raise DeviceError(f"{what}: the symbol id is None; get_id() returns None for a name "
                              f"the program does not export (exported: "
                              f"{', '.join(self._ids) or 'none'})")
        sid = int_arg(sid, f"{what}: symbol id")
        name = self._names_by_id.get(sid)
        if name is None:
            known = ", ".join(f"{n}={i}" for n, i in self._ids.items()) or "none"
            raise DeviceError(f"{what}: no exported symbol has id {sid} (ids: {known}); for a "
                              "memcpy stream color pass streaming=True")
        info = self._exports.get(name)
        if info is None:
            raise DeviceError(f"{what}: the device does not export '{name}'")
        if info.kind != "data":
            raise DeviceError(f"{what}: '{name}' is a function ({info.type}); memcpy needs an "
                              "exported data symbol such as a [*]f32 pointer")
        if write and not info.mutable:
            raise DeviceError(f"{what}: '{name}' is exported read-only (@export_name(\"{name}\","
                              f" {info.type}, false)); the host cannot write it")
        if info.elem_bits not in (16, 32):
            raise DeviceError(f"{what}: '{name}' is {info.type}; memcpy moves 16- or 32-bit "
                              "elements")
        if info.elem_bits != bits:
            log.warning("%s: '%s' is %s but data_type moves %d-bit elements", what, name,
                        info.type, bits)
        return name

    def _stream_color(self, color: Any, *, h2d: bool, what: str) -> int:
        c = int_arg(color, f"{what}: stream color")
        if not 0 <= c <= 23:
            raise DeviceError(f"{what}: stream color {c} is out of range 0..23")
        mine = self._record.h2d_streams if h2d else self._record.d2h_streams
        other = self._record.d2h_streams if h2d else self._record.h2d_streams
        if c in mine:
            return c
        kind = "H2D" if h2d else "D2H"
        listed = ", ".join(f"{n}={k}" for k, n in sorted(mine.items())) or "none"
        extra = (f"; color {c} is the {'D2H' if h2d else 'H2D'} stream {other[c]}"
                 if c in other else "")
        raise DeviceError(f"{what}: color {c} is not a memcpy {kind} stream of this program "
                          f"({kind} streams: {listed}){extra}. Streams are the colors given as "
                          f".MEMCPY{kind}_k to <memcpy/get_params>")

    # -- memcpy ----------------------------------------------------------------------------

    def _h2d(self, what: str, blocks_fn: Callable[..., np.ndarray], dest: Any, src: Any,
             x: Any, y: Any, w: Any, h: Any, l: Any, streaming: Any, data_type: Any,
             order: Any, nonblock: Any) -> Task:
        dev = self._running("memcpy")
        streaming, nonblock = _flag(streaming, "streaming"), _flag(nonblock, "nonblock")
        dt, od = as_data_type(data_type), as_order(order)
        x, y, w, h, l = check_roi(x, y, w, h, l, dev.width, dev.height, "h2d")
        bits = elem_bits(dt)
        target: str | int
        if streaming:
            target = self._stream_color(dest, h2d=True, what=what)
        else:
            target = self._data_symbol(dest, write=True, bits=bits, what=what)
        blocks = blocks_fn(src, w, h, l, order=od, data_type=dt, streaming=streaming)
        pes = roi_pes(x, y, w, h)
        desc = (f"{what}({'stream color ' + str(target) if streaming else repr(target)}, "
                f"x={x}, y={y}, w={w}, h={h}, l={l}, {dt.name}, {od.name}"
                f"{', nonblock' if nonblock else ''})")
        log.debug("issue: %s", desc)
        if streaming:
            dev.stream_h2d(int(target), pes, blocks)
        else:
            dev.memcpy_h2d(str(target), pes, blocks, bits)
        return self._task(desc)

    def memcpy_h2d(self, dest: Any, src: np.ndarray, x: int, y: int, w: int, h: int,
                   elem_per_pe: int, *, streaming: bool, data_type: MemcpyDataType,
                   order: MemcpyOrder, nonblock: bool) -> Task:
        """Copy ``src`` (``w*h*elem_per_pe`` 32-bit words) to the ROI ``(x, y, w, h)``.

        Copy mode: ``dest`` is a symbol id from :meth:`get_id` and each PE's elements are
        written where the exported pointer points. Streaming mode: ``dest`` is an H2D memcpy
        stream color and each PE receives its elements as wavelets.
        """
        return self._h2d("memcpy_h2d", h2d_blocks, dest, src, x, y, w, h, elem_per_pe,
                         streaming, data_type, order, nonblock)

    def memcpy_h2d_rowbcast(self, dest: Any, src: np.ndarray, x: int, y: int, w: int, h: int,
                            elem_per_pe: int, *, streaming: bool, data_type: MemcpyDataType,
                            order: MemcpyOrder, nonblock: bool) -> Task:
        """Like :meth:`memcpy_h2d` with ``src`` one column ``B[h][l]`` (``h*elem_per_pe``
        words) replicated across the ROI width: every PE of ROI row ``r`` gets ``B[r]``."""
        return self._h2d("memcpy_h2d_rowbcast", rowbcast_blocks, dest, src, x, y, w, h,
                         elem_per_pe, streaming, data_type, order, nonblock)

    def memcpy_h2d_colbcast(self, dest: Any, src: np.ndarray, x: int, y: int, w: int, h: int,
                            elem_per_pe: int, *, streaming: bool, data_type: MemcpyDataType,
                            order: MemcpyOrder, nonblock: bool) -> Task:
        """Like :meth:`memcpy_h2d` with ``src`` one row ``B[w][l]`` (``w*elem_per_pe`` words)
        replicated down the ROI height: every PE of ROI column ``c`` gets ``B[c]``."""
        return self._h2d("memcpy_h2d_colbcast", colbcast_blocks, dest, src, x, y, w, h,
                         elem_per_pe, streaming, data_type, order, nonblock)

    def memcpy_d2h(self, dest: np.ndarray, src: Any, x: int, y: int, w: int, h: int,
                   elem_per_pe: int, *, streaming: bool, data_type: MemcpyDataType,
                   order: MemcpyOrder, nonblock: bool) -> Task:
        """Copy ``elem_per_pe`` elements of every PE of the ROI into ``dest`` (in place).

        ``dest`` is a writable, C-contiguous array of ``w*h*elem_per_pe`` 32-bit words; its
        bit patterns are overwritten (16-bit data comes back with zero high halves). ``src``
        is a symbol id (copy mode) or a D2H memcpy stream color (streaming mode).
        """
        what = "memcpy_d2h"
        dev = self._running("memcpy")
        streaming, nonblock = _flag(streaming, "streaming"), _flag(nonblock, "nonblock")
        dt, od = as_data_type(data_type), as_order(order)
        x, y, w, h, l = check_roi(x, y, w, h, elem_per_pe, dev.width, dev.height, "d2h")
        bits = elem_bits(dt)
        d2h_check_dest(dest, w, h, l)
        pes = roi_pes(x, y, w, h)
        if streaming:
            color = self._stream_color(src, h2d=False, what=what)
            desc = f"{what}(stream color {color}"
            log.debug("issue: %s", desc)
            blocks = dev.stream_d2h(color, pes, l)
        else:
            name = self._data_symbol(src, write=False, bits=bits, what=what)
            desc = f"{what}({name!r}"
            log.debug("issue: %s", desc)
            blocks = dev.memcpy_d2h(name, pes, l, bits)
        d2h_fill(dest, blocks, w, h, l, order=od, data_type=dt, streaming=streaming)
        return self._task(f"{desc}, x={x}, y={y}, w={w}, h={h}, l={l}, {dt.name}, {od.name}"
                          f"{', nonblock' if nonblock else ''})")

    # -- functions -------------------------------------------------------------------------

    def _function(self, name: Any, what: str) -> ExportInfo:
        if not isinstance(name, str):
            raise DeviceError(f"{what} takes the exported function's name (a str), got "
                              f"{type(name).__name__}")
        info = self._exports.get(name)
        if info is None or info.kind != "fn":
            fns = [n for n, e in self._exports.items() if e.kind == "fn"]
            why = (f" ('{name}' is data, not a function)" if info is not None else "")
            raise DeviceError(f"Cannot find exported function with name {name}{why}; exported "
                              f"functions: {', '.join(fns) or 'none'}")
        return info

    @staticmethod
    def _signature(info: ExportInfo) -> str:
        return f"{info.name}({', '.join(info.params)})"

    def launch(self, name: str, *args: Any, nonblock: bool = False) -> Task:
        """Call the exported function ``name`` on every PE with typed arguments, then wait
        until every PE has called ``sys_mod.unblock_cmd_stream()``.

        Arguments must match the function's parameters in number and type (conversion rules:
        :func:`convert_arg`).
        """
        dev = self._running("launch")
        nonblock = _flag(nonblock, "nonblock")
        info = self._function(name, "launch")
        sig = self._signature(info)
        if len(args) != len(info.params):
            raise DeviceError(f"launch: {sig} takes {len(info.params)} argument(s), got "
                              f"{len(args)}")
        typed = [(p, convert_arg(a, p, f"launch: argument {i + 1} of {sig}"))
                 for i, (a, p) in enumerate(zip(args, info.params))]
        desc = f"launch {name}({', '.join(_show(v) for _, v in typed)})"
        log.debug("issue: %s", desc)
        dev.launch(name, typed)
        return self._task(desc + (" nonblock" if nonblock else ""))

    def call(self, name: str, args: Sequence[int] | np.ndarray, nonblock: bool = False) -> Task:
        """Like :meth:`launch` with the arguments pre-packed as 32-bit words, one word per
        parameter (:func:`word_to_arg`); official scripts pass ``[]``."""
        dev = self._running("call")
        nonblock = _flag(nonblock, "nonblock")
        info = self._function(name, "call")
        sig = self._signature(info)
        try:
            arr = np.asarray(args)
        except (TypeError, ValueError):
            raise DeviceError(f"call: arguments of {sig} must be a list or array of u32 words"
                              ) from None
        if arr.size == 0:
            words: list[int] = []
        elif arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise DeviceError(f"call: arguments of {sig} must be a 1-D list or array of u32 "
                              f"words (got dtype {arr.dtype}, shape {arr.shape}); use launch() "
                              "for typed arguments")
        else:
            words = [int(v) for v in arr]
        if len(words) != len(info.params):
            raise DeviceError(f"call: {sig} takes {len(info.params)} argument word(s), got "
                              f"{len(words)}")
        typed = []
        for i, (word, p) in enumerate(zip(words, info.params)):
            where = f"call: word {i + 1} of {sig}"
            if not 0 <= word <= 0xFFFFFFFF:
                raise DeviceError(f"{where}: {word} is not a u32 word")
            typed.append((p, word_to_arg(word, p, where)))
        desc = f"call {name}({', '.join(hex(w) for w in words)})"
        log.debug("issue: %s", desc)
        dev.launch(name, typed)
        return self._task(desc + (" nonblock" if nonblock else ""))

    # -- tasks -----------------------------------------------------------------------------

    def _check_task(self, task: Any, what: str) -> Task:
        if not isinstance(task, Task):
            raise DeviceError(f"{what} takes a Task returned by a memcpy/launch/call, got "
                              f"{type(task).__name__}")
        if task._owner is not self:
            raise DeviceError(f"{what}: the task belongs to another SdkRuntime")
        return task

    def is_task_done(self, task: Task) -> bool:
        """Whether a command has finished; always True (commands run when issued)."""
        self._check_task(task, "is_task_done")
        return True

    def task_wait(self, task: Task) -> None:
        """Wait for a command; returns at once (commands run when issued)."""
        self._check_task(task, "task_wait")

    # -- debugging -------------------------------------------------------------------------

    def read_symbol(self, x: int, y: int, name: str, dtype: str | np.dtype = "uint8"
                    ) -> np.ndarray:
        """The memory of global ``name`` on PE ``(x, y)`` (program coordinates) viewed as
        ``dtype`` (default: raw bytes). Needs :meth:`load`; also works after :meth:`stop`."""
        if self._device is None:
            raise DeviceError("read_symbol needs a loaded program (call load() first)")
        dev = self._device
        x, y = int_arg(x, "x"), int_arg(y, "y")
        if not (0 <= x < dev.width and 0 <= y < dev.height):
            raise DeviceError(f"read_symbol: PE ({x}, {y}) is outside the {dev.width}x"
                              f"{dev.height} program rectangle")
        if not isinstance(name, str):
            raise DeviceError(f"read_symbol takes the symbol's name (a str), got "
                              f"{type(name).__name__}")
        return reinterpret(dev.read_symbol(x, y, name), dtype, f"read_symbol({name!r})")

    def coord_logical_to_physical(self, xy: tuple[int, int]) -> tuple[int, int]:
        """Program coordinates to absolute fabric coordinates (adds ``--fabric-offsets``)."""
        x, y = xy
        ox, oy = self._record.fabric_offsets
        return int_arg(x, "x") + ox, int_arg(y, "y") + oy


def reinterpret(arr: np.ndarray, dtype: Any, what: str) -> np.ndarray:
    """A copy of ``arr``'s bytes viewed as ``dtype``."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise DeviceError(f"{what}: {dtype!r} is not a numpy dtype") from None
    raw = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
    if dt.itemsize == 0 or raw.size % dt.itemsize:
        raise DeviceError(f"{what}: the symbol has {raw.size} bytes, not a multiple of "
                          f"{dt} ({dt.itemsize} bytes)")
    return raw.view(dt).copy()
