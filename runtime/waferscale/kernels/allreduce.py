"""Handle of csl/allreduce: sum or max of an N-vector along every row of P_c × P_r PEs
(csl/allreduce/README.md). PE (px, py) contributes v[py, px, :] and ends with the row's
result."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..host import MemcpyDataType, MemcpyOrder
from .base import Run, compiled
from .floors import allreduce_floor


@dataclass(frozen=True)
class Allreduce:
    N: int
    P_c: int
    P_r: int = 1
    op: str = "sum"            # "sum" | "max"
    arch: str = "wse3"

    def __post_init__(self) -> None:
        if self.op not in ("sum", "max"):
            raise ValueError(f"op must be 'sum' or 'max', got {self.op!r}")

    def floor(self) -> int:
        return allreduce_floor(self.P_c, self.N)

    def run(self, v: np.ndarray) -> tuple[np.ndarray, int]:
        """``v`` of shape (P_r, P_c, N) f32 → (every PE's result, same shape; cycles)."""
        v = np.asarray(v, dtype=np.float32)
        if v.shape != (self.P_r, self.P_c, self.N):
            raise ValueError(f"expected v of shape {(self.P_r, self.P_c, self.N)}, got "
                             f"{v.shape}")
        out = compiled("allreduce", self.arch, self.P_c, self.P_r,
                       {"P_c": self.P_c, "P_r": self.P_r, "N": self.N,
                        "op": 0 if self.op == "sum" else 1})
        run = Run.start(out)
        rt = run.runtime
        v_id = rt.get_id("v")
        args = dict(streaming=False, order=MemcpyOrder.ROW_MAJOR,
                    data_type=MemcpyDataType.MEMCPY_32BIT, nonblock=False)
        rt.memcpy_h2d(v_id, v.ravel(), 0, 0, self.P_c, self.P_r, self.N, **args)
        cycles = run.timed_launch("allreduce")
        result = np.zeros(v.size, dtype=np.float32)
        rt.memcpy_d2h(result, v_id, 0, 0, self.P_c, self.P_r, self.N, **args)
        rt.stop()
        return result.reshape(v.shape), cycles
