"""Handle of csl/gemv: y = W·x over a P_c × P_r rectangle (csl/gemv/README.md).

Data layout (the kernel's): the M rows of W are split into P_r blocks and the N columns into
P_c blocks, the first ``M % P_r`` (``N % P_c``) blocks one longer; PE (px, py) holds its W
tile column-major, the top row holds x's blocks, and column ``(P_c - 1) // 2`` returns y.
memcpy moves equal counts per PE in one call, so each transfer is issued per group of
equal-sized blocks (at most 2 × 2 groups): no padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..host import MemcpyDataType, MemcpyOrder
from .base import Run, compiled
from .floors import gemv_floor


def blocks(total: int, parts: int) -> list[tuple[int, int, int, int]]:
    """``(first_pe, num_pes, block_len, first_item)`` per group of equal blocks."""
    base, extra = divmod(total, parts)
    groups = []
    if extra:
        groups.append((0, extra, base + 1, 0))
    if parts - extra:
        groups.append((extra, parts - extra, base, extra * (base + 1)))
    return groups


def _words(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a).ravel()
    return a.view(np.uint16).astype(np.uint32) if a.dtype == np.float16 else a.astype(
        np.float32)


@dataclass(frozen=True)
class Gemv:
    """y = W·x for W of M×N on P_c × P_r PEs; ``fp16`` stores W and x in f16 and accumulates
    in f32 (@fmachs), else everything is f32 (@fmacs)."""
    M: int
    N: int
    P_c: int
    P_r: int
    fp16: bool = False
    arch: str = "wse3"

    def __post_init__(self) -> None:
        if not (1 <= self.P_r <= self.M and 1 <= self.P_c <= self.N):
            raise ValueError(f"need 1 <= P_r <= M and 1 <= P_c <= N, got M={self.M}, "
                             f"N={self.N}, P_c={self.P_c}, P_r={self.P_r}")

    @property
    def dtype(self) -> str:
        return "f16" if self.fp16 else "f32"

    def floor(self) -> int:
        return gemv_floor(self.M, self.N, self.P_c, self.P_r, self.dtype, self.arch)

    def run(self, W: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, int]:
        """Return (y as f32, simulated cycles of the launch)."""
        wt = np.float16 if self.fp16 else np.float32
        W = np.asarray(W, dtype=wt)
        x = np.asarray(x, dtype=wt)
        if W.shape != (self.M, self.N) or x.shape != (self.N,):
            raise ValueError(f"expected W {(self.M, self.N)} and x {(self.N,)}, got "
                             f"{W.shape} and {x.shape}")
        out = compiled("gemv", self.arch, self.P_c, self.P_r,
                       {"P_c": self.P_c, "P_r": self.P_r, "M": self.M, "N": self.N,
                        "fp16": int(self.fp16)})
        run = Run.start(out)
        rt = run.runtime
        dt = MemcpyDataType.MEMCPY_16BIT if self.fp16 else MemcpyDataType.MEMCPY_32BIT
        W_id, x_id, y_id = rt.get_id("W"), rt.get_id("x"), rt.get_id("y")
        for py0, h, m, r0 in blocks(self.M, self.P_r):
            for px0, w, n, c0 in blocks(self.N, self.P_c):
                tiles = W[r0:r0 + h * m, c0:c0 + w * n].reshape(h, m, w, n).transpose(0, 2, 3, 1)
                rt.memcpy_h2d(W_id, _words(tiles), px0, py0, w, h, m * n, streaming=False,
                              order=MemcpyOrder.ROW_MAJOR, data_type=dt, nonblock=False)
        for px0, w, n, c0 in blocks(self.N, self.P_c):
            rt.memcpy_h2d(x_id, _words(x[c0:c0 + w * n]), px0, 0, w, 1, n, streaming=False,
                          order=MemcpyOrder.ROW_MAJOR, data_type=dt, nonblock=False)
        cycles = run.timed_launch("compute")
        y = np.zeros(self.M, dtype=np.float32)
        root_x = (self.P_c - 1) // 2
        for py0, h, m, r0 in blocks(self.M, self.P_r):
            part = np.zeros(h * m, dtype=np.float32)
            rt.memcpy_d2h(part, y_id, root_x, py0, 1, h, m, streaming=False,
                          order=MemcpyOrder.ROW_MAJOR, data_type=MemcpyDataType.MEMCPY_32BIT,
                          nonblock=False)
            y[r0:r0 + h * m] = part
        rt.stop()
        return y, cycles
