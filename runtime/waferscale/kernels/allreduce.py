"""Handle of csl/allreduce: sum or max of an N-vector along every row (``axis="row"``) or
every column (``axis="col"``) of P_c × P_r PEs (csl/allreduce/README.md). PE (px, py)
contributes v[py, px, :] and ends with the result of its row (reduction over px) or of its
column (reduction over py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..host import MemcpyDataType, MemcpyOrder
from .base import AXES, Run, compiled
from .floors import allreduce_floor

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Allreduce:
    N: int
    P_c: int
    P_r: int = 1
    op: str = "sum"            # "sum" | "max"
    arch: str = "wse3"
    axis: str = "row"          # "row": along each row (length P_c) | "col": each column (P_r)

    def __post_init__(self) -> None:
        if self.op not in ("sum", "max"):
            raise ValueError(f"op must be 'sum' or 'max', got {self.op!r}")
        if self.axis not in AXES:
            raise ValueError(f"axis must be 'row' or 'col', got {self.axis!r}")
        for name in ("N", "P_c", "P_r"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def line(self) -> int:
        """Length P of one allreduce: P_c along rows, P_r along columns."""
        return self.P_c if self.axis == "row" else self.P_r

    def floor(self) -> int:
        return allreduce_floor(self.line, self.N)

    def run(self, v: np.ndarray) -> tuple[np.ndarray, int]:
        """``v`` of shape (P_r, P_c, N) f32 → (every PE's result, same shape; cycles)."""
        v = np.asarray(v, dtype=np.float32)
        if v.shape != (self.P_r, self.P_c, self.N):
            raise ValueError(f"expected v of shape {(self.P_r, self.P_c, self.N)}, got "
                             f"{v.shape}")
        params = {"P_c": self.P_c, "P_r": self.P_r, "N": self.N,
                  "op": 0 if self.op == "sum" else 1}
        if self.axis != "row":           # rows are layout.csl's default
            params["axis"] = AXES[self.axis]
        out = compiled("allreduce", self.arch, self.P_c, self.P_r, params)
        run = Run.start(out)
        rt = run.runtime
        v_id = rt.get_id("v")
        rt.memcpy_h2d(v_id, v.ravel(), 0, 0, self.P_c, self.P_r, self.N,
                      streaming=False, order=MemcpyOrder.ROW_MAJOR,
                      data_type=MemcpyDataType.MEMCPY_32BIT, nonblock=False)
        cycles = run.timed_launch("allreduce")
        result = np.zeros(v.size, dtype=np.float32)
        rt.memcpy_d2h(result, v_id, 0, 0, self.P_c, self.P_r, self.N,
                      streaming=False, order=MemcpyOrder.ROW_MAJOR,
                      data_type=MemcpyDataType.MEMCPY_32BIT, nonblock=False)
        rt.stop()
        log.debug("allreduce %s along %ss of %dx%d, N=%d: %d cycles", self.op, self.axis,
                  self.P_c, self.P_r, self.N, cycles)
        return result.reshape(v.shape), cycles
