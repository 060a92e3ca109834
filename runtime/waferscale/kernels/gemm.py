"""Handle of csl/gemm: C = A·B by SUMMA on a P × P square of PEs (csl/gemm/README.md).

Data layout (the kernel's): A is M×K, B is K×N, C is M×N, with M, K and N multiples of P and
tiles Mt = M/P, Kt = K/P, Nt = N/P. PE (px, py) holds the tiles at block row py, block column
px of A, B and C, each column-major; ``X.reshape(P, m, P, n).transpose(0, 2, 3, 1)`` puts a
matrix in memcpy's ROW_MAJOR PE order with column-major tiles, so one memcpy call moves it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..host import MemcpyDataType, MemcpyOrder
from .base import Run, compiled, memcpy_words
from .floors import gemm_floor

log = logging.getLogger(__name__)

# layout.csl's data budget per PE (bytes) for A, B, their receive buffers and C.
DATA_BUDGET_BYTES = 40 * 1024


def to_tiles(X: np.ndarray, P: int) -> np.ndarray:
    """Matrix (P·m × P·n) -> flat memcpy ROW_MAJOR PE order, each m × n tile column-major."""
    rows, cols = X.shape
    return X.reshape(P, rows // P, P, cols // P).transpose(0, 2, 3, 1).ravel()


def from_tiles(flat: np.ndarray, P: int, rows: int, cols: int) -> np.ndarray:
    """Inverse of :func:`to_tiles`: the rows × cols matrix from PE-ordered column-major tiles."""
    return flat.reshape(P, P, cols // P, rows // P).transpose(0, 3, 1, 2).reshape(rows, cols)


@dataclass(frozen=True)
class Gemm:
    """C = A·B for A of M×K and B of K×N on P × P PEs (SUMMA, P steps of row/column
    broadcasts). ``fp16`` stores A and B in f16 and accumulates C in f32 (@fmachs; Mt·Kt and
    Kt·Nt must then be even), else everything is f32 (@fmacs).

    Limits: M, K and N must be multiples of P (no uneven tiles), and the tiles must fit the
    layout's 40 KiB data budget per PE: 2·(Mt·Kt + Kt·Nt)·s + 4·Mt·Nt bytes, s = 4 (f32) or
    2 (f16)."""
    M: int
    K: int
    N: int
    P: int
    arch: str = "wse3"
    fp16: bool = False

    def __post_init__(self) -> None:
        for name in ("M", "K", "N", "P"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.arch not in ("wse2", "wse3"):
            raise ValueError(f"arch must be 'wse2' or 'wse3', got {self.arch!r}")
        if self.M % self.P or self.K % self.P or self.N % self.P:
            raise ValueError(f"M, K and N must be multiples of P (uneven tiles are not "
                             f"supported): M={self.M}, K={self.K}, N={self.N}, P={self.P}")
        Mt, Kt, Nt = self.tile
        if self.fp16 and ((Mt * Kt) % 2 or (Kt * Nt) % 2):
            raise ValueError(f"fp16 needs Mt*Kt and Kt*Nt even (tiles travel as 32-bit words), "
                             f"got tiles {Mt}x{Kt} and {Kt}x{Nt}")
        s = 2 if self.fp16 else 4
        need = 2 * (Mt * Kt + Kt * Nt) * s + 4 * Mt * Nt
        if need > DATA_BUDGET_BYTES:
            raise ValueError(f"tiles need {need} bytes per PE, over the {DATA_BUDGET_BYTES}-byte "
                             "budget; use more PEs")

    @property
    def tile(self) -> tuple[int, int, int]:
        """(Mt, Kt, Nt): the tile sizes per PE."""
        return self.M // self.P, self.K // self.P, self.N // self.P

    @property
    def dtype(self) -> str:
        return "f16" if self.fp16 else "f32"

    def floor(self) -> int:
        return gemm_floor(self.M, self.K, self.N, self.P, self.dtype, self.arch)

    def run(self, A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, int]:
        """Return (C as f32 M×N, simulated cycles of the launch)."""
        ab = np.float16 if self.fp16 else np.float32
        A = np.asarray(A, dtype=ab)
        B = np.asarray(B, dtype=ab)
        if A.shape != (self.M, self.K) or B.shape != (self.K, self.N):
            raise ValueError(f"expected A {(self.M, self.K)} and B {(self.K, self.N)}, got "
                             f"{A.shape} and {B.shape}")
        P = self.P
        Mt, Kt, Nt = self.tile
        out = compiled("gemm", self.arch, P, P,
                       {"P": P, "M": self.M, "K": self.K, "N": self.N, "fp16": int(self.fp16)})
        run = Run.start(out)
        rt = run.runtime
        dt = MemcpyDataType.MEMCPY_16BIT if self.fp16 else MemcpyDataType.MEMCPY_32BIT
        for sym, X, count in (("A", A, Mt * Kt), ("B", B, Kt * Nt)):
            rt.memcpy_h2d(rt.get_id(sym), memcpy_words(to_tiles(X, P)), 0, 0, P, P, count,
                          streaming=False, order=MemcpyOrder.ROW_MAJOR, data_type=dt,
                          nonblock=False)
        cycles = run.timed_launch("compute")
        flat = np.zeros(self.M * self.N, dtype=np.float32)
        rt.memcpy_d2h(flat, rt.get_id("C"), 0, 0, P, P, Mt * Nt, streaming=False,
                      order=MemcpyOrder.ROW_MAJOR, data_type=MemcpyDataType.MEMCPY_32BIT,
                      nonblock=False)
        rt.stop()
        C = from_tiles(flat, P, self.M, self.N)
        log.debug("gemm %dx%dx%d on %dx%d PEs: %d cycles", self.M, self.K, self.N, P, P, cycles)
        return C, cycles
