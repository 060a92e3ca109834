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
from .base import Run, blocks, compiled, memcpy_words
from .floors import gemv_floor


def put_tiles(run: Run, name: str, W: np.ndarray, P_c: int, P_r: int) -> None:
    """Copy W (M×N) to the exported ``name``: its rows split as :func:`.base.blocks` over
    the P_r PE rows, its columns over the P_c PE columns, each tile column-major. For a group
    of h×w PEs with m×n tiles, ``reshape(h, m, w, n).transpose(0, 2, 3, 1)`` orders the data
    PE by PE (ROW_MAJOR h-w-l) and column-major within a tile."""
    rt = run.runtime
    sym = rt.get_id(name)
    dt = MemcpyDataType.MEMCPY_16BIT if W.dtype == np.float16 else MemcpyDataType.MEMCPY_32BIT
    M, N = W.shape
    for py0, h, m, r0 in blocks(M, P_r):
        for px0, w, n, c0 in blocks(N, P_c):
            tiles = W[r0:r0 + h * m, c0:c0 + w * n].reshape(h, m, w, n).transpose(0, 2, 3, 1)
            rt.memcpy_h2d(sym, memcpy_words(tiles), px0, py0, w, h, m * n, streaming=False,
                          order=MemcpyOrder.ROW_MAJOR, data_type=dt, nonblock=False)


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
        put_tiles(run, "W", W, self.P_c, self.P_r)
        run.put_blocks("x", x, self.P_c)                      # the top row
        cycles = run.timed_launch("compute")
        y = run.get_blocks("y", self.M, self.P_r, axis="y", at=(self.P_c - 1) // 2)
        run.runtime.stop()
        return y, cycles
