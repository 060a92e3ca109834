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

import numpy as np

from ..host import MemcpyDataType, MemcpyOrder, SdkRuntime
from ..host import compile as cslc
from ..lang.cli import find_csl_root

log = logging.getLogger(__name__)

_CACHE = Path(tempfile.gettempdir()) / "waferscale-kernels"

# A handle's axis name -> the `axis` param of the line kernels' layout.csl (allreduce,
# broadcast): along a row or along a column.
AXES = {"row": 0, "col": 1}


def kernel_dir(name: str) -> Path:
    """``csl/<name>`` of this checkout (kernels ship with the repository, not the wheel)."""
    d = find_csl_root() / name
    if not (d / "layout.csl").is_file():
        raise FileNotFoundError(f"kernel '{name}' not found at {d}")
    return d


def compiled(name: str, arch: str, width: int, height: int, params: dict[str, Any], *,
             channels: int = 1) -> Path:
    """Compile ``csl/<name>/layout.csl`` for a width×height rectangle (minimum memcpy fabric,
    ``channels`` memcpy channels) and return the output directory; identical requests reuse
    one compile."""
    src = kernel_dir(name)
    digest = hashlib.sha256()
    # Every .csl of the kernel tree: kernels import each other (rmsnorm uses allreduce), along
    # the import path root (cslc --import-path, as in their commands_*.sh).
    root = src.parent
    # The output records the layout's path (to re-elaborate it), so the cache is per checkout:
    # another clone's entry, or a deleted one's, must not be reused.
    digest.update(str(root.resolve()).encode())
    for f in sorted(root.rglob("*.csl")):
        digest.update(str(f.relative_to(root)).encode())
        digest.update(f.read_bytes())
    digest.update(json.dumps([arch, width, height, sorted(params.items()), channels]).encode())
    out = _CACHE / f"{name}-{digest.hexdigest()[:16]}"
    if not (out / "out.json").is_file():
        log.info("compiling %s %s", name, params)
        cslc(src / "layout.csl", arch=arch, params=params, memcpy=True, channels=channels,
             fabric_dims=(width + 7, height + 2), fabric_offsets=(4, 1), import_paths=[root],
             output=out)
    return out


def blocks(total: int, parts: int) -> list[tuple[int, int, int, int]]:
    """How the kernels split ``total`` items over ``parts`` PEs: contiguous blocks, the first
    ``total % parts`` one longer. Returns ``(first_pe, num_pes, block_len, first_item)`` per
    group of equal-length blocks (at most two groups), since one memcpy moves equal counts."""
    base, extra = divmod(total, parts)
    groups = []
    if extra:
        groups.append((0, extra, base + 1, 0))
    if parts - extra:
        groups.append((extra, parts - extra, base, extra * (base + 1)))
    return groups


def memcpy_words(a: np.ndarray) -> np.ndarray:
    """1-D array as memcpy takes it: f32 as is, f16 zero-extended into the low half of u32."""
    a = np.ascontiguousarray(a).ravel()
    return a.view(np.uint16).astype(np.uint32) if a.dtype == np.float16 else a.astype(
        np.float32)


def u48(words: np.ndarray) -> np.ndarray:
    """48-bit ``<time>`` timestamps from three 16-bit words (last axis, least significant
    first), each in the low half of a memcpy u32."""
    w = (np.asarray(words, dtype=np.uint32) & 0xFFFF).astype(np.int64)
    return w[..., 0] | (w[..., 1] << 16) | (w[..., 2] << 32)


def mean_iteration_cycles(rt: Any, width: int, height: int, repeats: int) -> float:
    """WaferLLM's measurement protocol: every PE of the ``width`` x ``height`` rectangle
    exports ``tsc_start`` and ``tsc_end`` (``<time>`` stamps around its timed iterations);
    returns the mean over PEs of (end - start) / repeats. ``rt``: an SdkRuntime, ours or
    Cerebras'."""
    from ..host import MemcpyDataType, MemcpyOrder
    stamps = []
    for name in ("tsc_start", "tsc_end"):
        words = np.zeros(width * height * 3, dtype=np.uint32)
        rt.memcpy_d2h(words, rt.get_id(name), 0, 0, width, height, 3, streaming=False,
                      order=MemcpyOrder.ROW_MAJOR, data_type=MemcpyDataType.MEMCPY_16BIT,
                      nonblock=False)
        stamps.append(u48(words.reshape(height, width, 3)))
    return float(np.mean(stamps[1] - stamps[0])) / repeats


def _line(axis: str, p0: int, k: int, at: int) -> tuple[int, int, int, int]:
    """The memcpy rectangle (x, y, w, h) of ``k`` PEs from ``p0`` along ``axis`` ("x": a row,
    at row ``at``; "y": a column, at column ``at``)."""
    return (p0, at, k, 1) if axis == "x" else (at, p0, 1, k)


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

    def put_blocks(self, name: str, v: np.ndarray, parts: int, *, axis: str = "x",
                   at: int = 0, item: int = 1) -> None:
        """Copy the 1-D ``v`` to the exported ``name`` split as :func:`blocks` over ``parts``
        PEs along a row (``axis="x"``, row ``at``) or a column (``"y"``, column ``at``);
        an item is ``item`` consecutive elements (RoPE's pairs). f16 data moves as 16-bit."""
        rt = self.runtime
        sym = rt.get_id(name)
        dt = MemcpyDataType.MEMCPY_16BIT if v.dtype == np.float16 else \
            MemcpyDataType.MEMCPY_32BIT
        for p0, k, n, i0 in blocks(v.size // item, parts):
            rt.memcpy_h2d(sym, memcpy_words(v[i0 * item:(i0 + k * n) * item]),
                          *_line(axis, p0, k, at), n * item, streaming=False,
                          order=MemcpyOrder.ROW_MAJOR, data_type=dt, nonblock=False)

    def get_blocks(self, name: str, total: int, parts: int, *, axis: str = "x", at: int = 0,
                   item: int = 1) -> np.ndarray:
        """The f32 vector of ``total`` elements that :meth:`put_blocks`' layout holds in the
        exported ``name``."""
        rt = self.runtime
        sym = rt.get_id(name)
        out = np.zeros(total, dtype=np.float32)
        for p0, k, n, i0 in blocks(total // item, parts):
            part = np.zeros(k * n * item, dtype=np.float32)
            rt.memcpy_d2h(part, sym, *_line(axis, p0, k, at), n * item, streaming=False,
                          order=MemcpyOrder.ROW_MAJOR, data_type=MemcpyDataType.MEMCPY_32BIT,
                          nonblock=False)
            out[i0 * item:(i0 + k * n) * item] = part
        return out
