"""What every kernel handle shares: finding ``csl/<kernel>``, compiling once per parameter
set, and running on the simulator through the SDK-compatible host API."""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..host import SdkRuntime
from ..host import compile as cslc
from ..lang.cli import find_csl_root

log = logging.getLogger(__name__)

_CACHE = Path(tempfile.gettempdir()) / "waferscale-kernels"


def kernel_dir(name: str) -> Path:
    """``csl/<name>`` of this checkout (kernels ship with the repository, not the wheel)."""
    d = find_csl_root() / name
    if not (d / "layout.csl").is_file():
        raise FileNotFoundError(f"kernel '{name}' not found at {d}")
    return d


def compiled(name: str, arch: str, width: int, height: int, params: dict[str, Any]) -> Path:
    """Compile ``csl/<name>/layout.csl`` for a width×height rectangle (minimum memcpy fabric)
    and return the output directory; identical requests reuse one compile."""
    src = kernel_dir(name)
    digest = hashlib.sha256()
    # Every .csl of the kernel tree: kernels import each other (rmsnorm uses allreduce).
    root = src.parent
    for f in sorted(root.rglob("*.csl")):
        digest.update(str(f.relative_to(root)).encode())
        digest.update(f.read_bytes())
    digest.update(json.dumps([arch, width, height, sorted(params.items())]).encode())
    out = _CACHE / f"{name}-{digest.hexdigest()[:16]}"
    if not (out / "out.json").is_file():
        log.info("compiling %s %s", name, params)
        cslc(src / "layout.csl", arch=arch, params=params, memcpy=True, channels=1,
             fabric_dims=(width + 7, height + 2), fabric_offsets=(4, 1), output=out)
    return out


@dataclass
class Run:
    """A runtime on the simulator plus the simulated cycle counter around a launch."""
    runtime: SdkRuntime
    device: Any

    @classmethod
    def start(cls, out_dir: Path) -> "Run":
        from ..sim.device import SimulatorDevice
        dev = SimulatorDevice.from_output_dir(out_dir)
        rt = SdkRuntime(str(out_dir), device=dev)
        rt.load()
        rt.run()
        return cls(rt, dev)

    def timed_launch(self, name: str, *args: Any) -> int:
        """Launch ``name`` and return the simulated cycles until every PE unblocked the
        command stream (the kernel's completion)."""
        start = self.device.sim.cycle
        self.runtime.launch(name, *args, nonblock=False)
        return self.device.sim.cycle - start
