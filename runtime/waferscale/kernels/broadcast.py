"""Handle of csl/broadcast: the root PE of a line of P PEs (a row, ``axis="row"``, or a
column, ``axis="col"``) sends its N-vector to every PE of the line as one multicast wavelet
stream (csl/broadcast/README.md). Only the root's vector is copied to the device; afterwards
PE i of the line holds it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..host import MemcpyDataType, MemcpyOrder
from .base import AXES, Run, compiled
from .floors import broadcast_floor

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Broadcast:
    N: int
    P: int
    root: int = 0              # position of the root along the line, 0 <= root < P
    axis: str = "row"          # "row": a 1 × P row of PEs | "col": a P × 1 column
    arch: str = "wse3"

    def __post_init__(self) -> None:
        if self.axis not in AXES:
            raise ValueError(f"axis must be 'row' or 'col', got {self.axis!r}")
        if self.N < 1 or self.P < 1:
            raise ValueError(f"N and P must be positive, got N={self.N}, P={self.P}")
        if not 0 <= self.root < self.P:
            raise ValueError(f"root must be in [0, {self.P}), got {self.root}")

    @property
    def grid(self) -> tuple[int, int]:
        """(P_c, P_r) of the program rectangle: P × 1 along a row, 1 × P along a column."""
        return (self.P, 1) if self.axis == "row" else (1, self.P)

    def floor(self) -> int:
        return broadcast_floor(self.P, self.root, self.N)

    def run(self, v: np.ndarray) -> tuple[np.ndarray, int]:
        """``v`` of shape (N,) f32, the root's vector → (shape (P, N): row i is what PE i of
        the line holds afterwards; cycles of the launch)."""
        v = np.asarray(v, dtype=np.float32)
        if v.shape != (self.N,):
            raise ValueError(f"expected v of shape {(self.N,)}, got {v.shape}")
        P_c, P_r = self.grid
        out = compiled("broadcast", self.arch, P_c, P_r,
                       {"P_c": P_c, "P_r": P_r, "N": self.N, "root": self.root,
                        "axis": AXES[self.axis]})
        run = Run.start(out)
        rt = run.runtime
        v_id = rt.get_id("v")
        x0, y0 = (self.root, 0) if self.axis == "row" else (0, self.root)
        # The root's vector only; the other PEs' v are outputs.
        rt.memcpy_h2d(v_id, v, x0, y0, 1, 1, self.N,
                      streaming=False, order=MemcpyOrder.ROW_MAJOR,
                      data_type=MemcpyDataType.MEMCPY_32BIT, nonblock=False)
        cycles = run.timed_launch("broadcast")
        result = np.zeros(self.P * self.N, dtype=np.float32)
        rt.memcpy_d2h(result, v_id, 0, 0, P_c, P_r, self.N,
                      streaming=False, order=MemcpyOrder.ROW_MAJOR,
                      data_type=MemcpyDataType.MEMCPY_32BIT, nonblock=False)
        rt.stop()
        log.debug("broadcast of %d from %d along a %s of %d: %d cycles", self.N, self.root,
                  self.axis, self.P, cycles)
        # ROW_MAJOR over a P × 1 or 1 × P rectangle is line order either way.
        return result.reshape(self.P, self.N), cycles
