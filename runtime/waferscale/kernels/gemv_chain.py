"""Handle of csl/gemv_chain: y2 = W2·(W1·x) in one launch on one P_c × P_r rectangle
(csl/gemv_chain/README.md); y1 = W1·x stays on the fabric.

Data layout (the kernel's), blocks split as in csl/gemv (the first ``total % parts`` blocks one
longer): PE (px, py) holds W1[rows of block py of M1 over P_r, columns of block px of N over
P_c] and W2[rows of block px of M2 over P_c, columns of block py of M1 over P_r], both
column-major; the top row holds x's blocks; row ``(P_r - 1) // 2`` returns y2, PE px holding
block px of M2. memcpy moves equal counts per PE in one call, so each transfer is issued per
group of equal-sized blocks: no padding.

Precision: f32 (``@fmacs``) or, with ``fp16``, W1, W2 and x in f16 with f32 accumulation
(``@fmachs``) and y1 rounded once to f16 before it feeds the second GEMV.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..host import MemcpyDataType, MemcpyOrder
from .base import Run, blocks, compiled, memcpy_words
from .floors import gemv_chain_floor
from .gemv import put_tiles

log = logging.getLogger(__name__)

# layout.csl's conservative per-PE data budget (bytes).
_DATA_BUDGET = 40 * 1024


@dataclass(frozen=True)
class GemvChain:
    """y2 = W2·(W1·x) for W1 of M1×N and W2 of M2×M1 on P_c × P_r PEs, in one launch."""
    M1: int
    N: int
    M2: int
    P_c: int
    P_r: int
    fp16: bool = False
    arch: str = "wse3"

    def __post_init__(self) -> None:
        if self.arch not in ("wse2", "wse3"):
            raise ValueError(f"arch must be 'wse2' or 'wse3', got {self.arch!r}")
        if not (1 <= self.P_r <= self.M1 and 1 <= self.P_c <= self.N and self.P_c <= self.M2):
            raise ValueError(f"need 1 <= P_r <= M1, 1 <= P_c <= N and P_c <= M2, got "
                             f"M1={self.M1}, N={self.N}, M2={self.M2}, P_c={self.P_c}, "
                             f"P_r={self.P_r}")
        if max(self.M1, self.N, self.M2) >= 2**16:
            raise ValueError("dimensions must fit in u16")
        s = 2 if self.fp16 else 4
        m1, n1, m2 = (-(-self.M1 // self.P_r), -(-self.N // self.P_c), -(-self.M2 // self.P_c))
        need = (m1 * n1 + n1) * s + 4 * m1 + (m2 * m1 + m1) * s + 4 * m2
        if need > _DATA_BUDGET:
            raise ValueError(f"tiles need {need} bytes per PE, over the {_DATA_BUDGET}-byte "
                             "budget; use more PEs")

    @property
    def dtype(self) -> str:
        return "f16" if self.fp16 else "f32"

    def floor(self) -> int:
        return gemv_chain_floor(self.M1, self.N, self.M2, self.P_c, self.P_r, self.dtype,
                                self.arch)

    def run(self, W1: np.ndarray, W2: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, int]:
        """Return (y2 as f32, simulated cycles of the launch). Inputs are cast to f16 or f32."""
        wt = np.float16 if self.fp16 else np.float32
        W1 = np.asarray(W1, dtype=wt)
        W2 = np.asarray(W2, dtype=wt)
        x = np.asarray(x, dtype=wt)
        if W1.shape != (self.M1, self.N) or W2.shape != (self.M2, self.M1) or x.shape != (
                self.N,):
            raise ValueError(f"expected W1 {(self.M1, self.N)}, W2 {(self.M2, self.M1)} and x "
                             f"{(self.N,)}, got {W1.shape}, {W2.shape} and {x.shape}")
        out = compiled("gemv_chain", self.arch, self.P_c, self.P_r,
                       {"P_c": self.P_c, "P_r": self.P_r, "M1": self.M1, "N": self.N,
                        "M2": self.M2, "fp16": int(self.fp16)})
        run = Run.start(out)
        rt = run.runtime
        put_tiles(run, "W1", W1, self.P_c, self.P_r)
        # W2: output rows over PE columns, input columns over PE rows; [py][px][j][i].
        dt = MemcpyDataType.MEMCPY_16BIT if self.fp16 else MemcpyDataType.MEMCPY_32BIT
        W2_id = rt.get_id("W2")
        for px0, w, m, r0 in blocks(self.M2, self.P_c):
            for py0, h, n, c0 in blocks(self.M1, self.P_r):
                tiles = W2[r0:r0 + w * m, c0:c0 + h * n].reshape(w, m, h, n).transpose(2, 0, 3, 1)
                rt.memcpy_h2d(W2_id, memcpy_words(tiles), px0, py0, w, h, m * n,
                              streaming=False, order=MemcpyOrder.ROW_MAJOR, data_type=dt,
                              nonblock=False)
        run.put_blocks("x", x, self.P_c)                      # the top row
        cycles = run.timed_launch("compute")
        y2 = run.get_blocks("y", self.M2, self.P_c, at=(self.P_r - 1) // 2)
        rt.stop()
        log.debug("gemv_chain %s: %d cycles", self, cycles)
        return y2, cycles
