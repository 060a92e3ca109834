"""Handle of csl/rmsnorm: y = x / sqrt(mean(x²) + eps) * g over a row of P PEs, optionally
after the fused residual add x = x + r (csl/rmsnorm/README.md).

Data layout (the kernel's): the D elements are split into P contiguous blocks, the first
``D % P`` one longer (the split csl/gemv uses for x and y); PE px holds block px of x, g, r
and y. memcpy moves equal counts per PE in one call, so each transfer is issued per group of
equal-length blocks (at most 2 groups): no padding.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from .base import Run, compiled
from .floors import F32_SIMD, rmsnorm_floor

log = logging.getLogger(__name__)


# cslc params are u16 here; the layout also keeps data under 40 KiB per PE.
_MAX_D = 0xFFFF
_DATA_BUDGET_BYTES = 40 * 1024


def f32_bits(value: float) -> int:
    """The IEEE-754 bit pattern of ``value`` rounded to f32 (how layout.csl takes eps)."""
    return int(np.array(value, dtype=np.float32).view(np.uint32))


@dataclass(frozen=True)
class RmsNorm:
    """RMSNorm of a D-vector on a row of P PEs, f32 throughout.

    ``eps`` is rounded to f32 (the kernel adds it in f32). With ``residual`` the kernel first
    computes h = x + r (kept on the device, in x) and normalizes h.
    """
    D: int
    P: int
    eps: float = 1e-5
    residual: bool = False
    arch: str = "wse3"

    def __post_init__(self) -> None:
        if not 1 <= self.P <= self.D <= _MAX_D:
            raise ValueError(f"need 1 <= P <= D <= {_MAX_D}, got D={self.D}, P={self.P}")
        if not (math.isfinite(self.eps) and self.eps >= 0.0):
            raise ValueError(f"eps must be finite and >= 0, got {self.eps}")
        if self.arch not in F32_SIMD:
            raise ValueError(f"arch must be 'wse2' or 'wse3', got {self.arch!r}")
        arrays = 4 if self.residual else 3
        if 4 * arrays * -(-self.D // self.P) > _DATA_BUDGET_BYTES:
            raise ValueError(f"D={self.D} over P={self.P} PEs does not fit the 40 KiB data "
                             "budget per PE; use more PEs")

    def floor(self) -> int:
        return rmsnorm_floor(self.D, self.P, self.residual, self.arch)

    def run(self, x: np.ndarray, g: np.ndarray,
            r: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        """Return (y as f32, simulated cycles of the launch). ``r`` is required exactly when
        the handle was built with ``residual``."""
        _, y, cycles = self.run_all(x, g, r)
        return y, cycles

    def run_all(self, x: np.ndarray, g: np.ndarray,
                r: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        """Return (h, y, cycles): h = x + r as the device computed it (x itself without the
        residual add), y the normalized vector."""
        if self.residual != (r is not None):
            raise ValueError("pass r exactly when the handle has residual=True")
        arrays = {"x": x, "g": g} | ({"r": r} if r is not None else {})
        host = {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}
        for k, v in host.items():
            if v.shape != (self.D,):
                raise ValueError(f"expected {k} of shape {(self.D,)}, got {v.shape}")
        out = compiled("rmsnorm", self.arch, self.P, 1,
                             {"P_c": self.P, "D": self.D, "eps_bits": f32_bits(self.eps),
                              "residual": int(self.residual)})
        run = Run.start(out)
        for name, v in host.items():
            run.put_blocks(name, v, self.P)
        cycles = run.timed_launch("rmsnorm")
        result = {name: run.get_blocks(name, self.D, self.P) for name in ("x", "y")}
        run.runtime.stop()
        return result["x"], result["y"], cycles
