"""Handle of csl/swiglu: out = silu(gate) * up, silu(a) = a / (1 + exp(-a)), over a row of P
PEs (csl/swiglu/README.md).

Data layout (the kernel's): the D elements are split into P contiguous blocks, the first
``D % P`` one longer; PE px holds block px of gate, up and out. The operation is elementwise,
so the PEs never communicate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .base import Run, compiled
from .floors import swiglu_floor

log = logging.getLogger(__name__)


_MAX_D = 0xFFFF
_DATA_BUDGET_BYTES = 40 * 1024


@dataclass(frozen=True)
class SwiGLU:
    """SwiGLU of two D-vectors on a row of P PEs, f32 throughout (<math> exp_f32 in @map)."""
    D: int
    P: int
    arch: str = "wse3"

    def __post_init__(self) -> None:
        if not 1 <= self.P <= self.D <= _MAX_D:
            raise ValueError(f"need 1 <= P <= D <= {_MAX_D}, got D={self.D}, P={self.P}")
        if self.arch not in ("wse2", "wse3"):
            raise ValueError(f"arch must be 'wse2' or 'wse3', got {self.arch!r}")
        if 12 * -(-self.D // self.P) > _DATA_BUDGET_BYTES:
            raise ValueError(f"D={self.D} over P={self.P} PEs does not fit the 40 KiB data "
                             "budget per PE; use more PEs")

    def floor(self) -> int:
        return swiglu_floor(self.D, self.P)

    def run(self, gate: np.ndarray, up: np.ndarray) -> tuple[np.ndarray, int]:
        """Return (out as f32, simulated cycles of the launch)."""
        host = {"gate": np.asarray(gate, dtype=np.float32),
                "up": np.asarray(up, dtype=np.float32)}
        for k, v in host.items():
            if v.shape != (self.D,):
                raise ValueError(f"expected {k} of shape {(self.D,)}, got {v.shape}")
        out_dir = compiled("swiglu", self.arch, self.P, 1, {"P_c": self.P, "D": self.D})
        run = Run.start(out_dir)
        for name, v in host.items():
            run.put_blocks(name, v, self.P)
        cycles = run.timed_launch("swiglu")
        out = run.get_blocks("out", self.D, self.P)
        run.runtime.stop()
        return out, cycles
