"""The host side: the SDK's host API on waferscale devices, and the compile step.

- :class:`SdkRuntime`, :class:`MemcpyDataType`, :class:`MemcpyOrder`, :class:`Task`: the SDK's
  ``cerebras.sdk.runtime.sdkruntimepybind`` (:mod:`.sdkruntime`), on the
  :class:`~.device.Device` protocol (:mod:`.device`).
- :mod:`.memcpy_layout`: host arrays <-> per-PE blocks (ROW_MAJOR / COL_MAJOR, 16-bit data,
  row/column broadcasts).
- :mod:`.sdk_utils`, :mod:`.debug_util`: the SDK's ``cerebras.sdk.sdk_utils`` and
  ``cerebras.sdk.debug.debug_util``.
- :func:`compile` (:mod:`.compile`): ``waferscale cslc`` as a function.
- :mod:`.cli`: the ``waferscale cslc`` and ``waferscale cs_python`` commands.

Note: the function :func:`compile` shadows the submodule of the same name as an attribute of
this package; import the module's other names with ``from waferscale.host.compile import ...``.
"""

from __future__ import annotations

from .compile import compile, read_output_dir, write_output_dir
from .device import DeadlockError, Device, DeviceError, ExportInfo
from .memcpy_layout import MemcpyDataType, MemcpyOrder
from .sdkruntime import SdkRuntime, Task, set_device_factory

__all__ = [
    "DeadlockError",
    "Device",
    "DeviceError",
    "ExportInfo",
    "MemcpyDataType",
    "MemcpyOrder",
    "SdkRuntime",
    "Task",
    "compile",
    "read_output_dir",
    "set_device_factory",
    "write_output_dir",
]
