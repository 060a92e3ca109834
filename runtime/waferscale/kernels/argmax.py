"""Handle of csl/argmax: index and value of the largest of V logits distributed over P_c × P_r
PEs (csl/argmax/README.md).

Data layout (the kernel's): the V logits are split into P = P_c·P_r contiguous blocks, PE
(px, py) holding block ``py·P_c + px`` (row-major PE order), the first ``V % P`` blocks one
longer. memcpy moves equal counts per PE in one call, so the copy is issued once per rectangle
of PEs with equal block lengths (at most four, each a contiguous slice): no padding. After the
launch every PE holds ``{max value, its index}``; the handle reads PE (0, 0) and checks that
every PE agrees.

Limits: ``V >= P_c·P_r`` (no empty blocks), ``V <= 2**24`` (indices travel as f32), the
largest block within the layout's 40 KiB data budget, and no NaN in the logits (numpy.argmax
would return the first NaN; the kernel's compare-based scan cannot).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..host import MemcpyDataType, MemcpyOrder
from .base import Run, compiled
from .floors import FMAXS_SIMD, argmax_floor

log = logging.getLogger(__name__)

# Elements per cycle of @fmaxs by arch (csl-language.md §4.1, sim/builtins_rt.py DSD_OPS).
# layout.csl's conservative data budget per PE.
_DATA_BUDGET_BYTES = 40 * 1024


def data_bytes(n: int) -> int:
    """Data bytes of a PE holding n logits (layout.csl's ``data_bytes``, README.md): the
    block, the chunk maxima (n // c + 1 words, c = ceil(sqrt(n))) and 30 bytes of pair
    buffers, stage, result and pointers."""
    c = math.isqrt(n - 1) + 1 if n > 1 else 1
    return 4 * n + 4 * (n // c + 1) + 30


def rectangles(V: int, P_c: int, P_r: int) -> list[tuple[int, int, int, int, int, int]]:
    """``(px0, py0, w, h, block_len, first_item)`` per rectangle of PEs with equal blocks.

    The long blocks fill whole rows, then part of one row; every rectangle is whole rows or
    part of one row, so it is a contiguous slice of the logits in ROW_MAJOR memcpy order.
    """
    base, extra = divmod(V, P_c * P_r)
    full_rows, rest = divmod(extra, P_c)
    rects: list[tuple[int, int, int, int, int, int]] = []
    start = 0
    parts = [(0, 0, P_c, full_rows, base + 1)]
    if full_rows < P_r:
        parts += [(0, full_rows, rest, 1, base + 1), (rest, full_rows, P_c - rest, 1, base),
                  (0, full_rows + 1, P_c, P_r - full_rows - 1, base)]
    for px0, py0, w, h, n in parts:
        if w > 0 and h > 0 and n > 0:
            rects.append((px0, py0, w, h, n, start))
        start += w * h * n
    assert start == V, (V, P_c, P_r, rects)
    return rects


@dataclass(frozen=True)
class Argmax:
    """argmax of V f32 logits on P_c × P_r PEs (ties: the smallest index, as numpy.argmax)."""
    V: int
    P_c: int
    P_r: int = 1
    arch: str = "wse3"

    def __post_init__(self) -> None:
        if self.arch not in FMAXS_SIMD:
            raise ValueError(f"arch must be 'wse2' or 'wse3', got {self.arch!r}")
        if self.P_c < 1 or self.P_r < 1:
            raise ValueError(f"need P_c, P_r >= 1, got P_c={self.P_c}, P_r={self.P_r}")
        if not self.P_c * self.P_r <= self.V <= 2**24:
            raise ValueError(f"need P_c*P_r <= V <= 2**24 (one element per PE at least; "
                             f"indices travel as f32), got V={self.V} on {self.P_c}x{self.P_r}")
        n_max = -(-self.V // (self.P_c * self.P_r))
        if data_bytes(n_max) > _DATA_BUDGET_BYTES:
            raise ValueError(f"blocks of {n_max} f32 logits need {data_bytes(n_max)} bytes, "
                             f"over the {_DATA_BUDGET_BYTES}-byte data budget per PE; use "
                             f"more PEs")

    def floor(self) -> int:
        return argmax_floor(self.V, self.P_c, self.P_r, self.arch)

    def run(self, logits: np.ndarray) -> tuple[int, float, int]:
        """``logits`` of shape (V,) → (index, value, simulated cycles of the launch)."""
        logits = np.asarray(logits, dtype=np.float32)
        if logits.shape != (self.V,):
            raise ValueError(f"expected logits of shape {(self.V,)}, got {logits.shape}")
        if np.isnan(logits).any():
            raise ValueError("logits contain NaN; the kernel's max-then-scan needs NaN-free "
                             "input")
        out = compiled("argmax", self.arch, self.P_c, self.P_r,
                       {"P_c": self.P_c, "P_r": self.P_r, "V": self.V})
        run = Run.start(out)
        rt = run.runtime
        args: dict[str, Any] = dict(streaming=False, order=MemcpyOrder.ROW_MAJOR,
                    data_type=MemcpyDataType.MEMCPY_32BIT, nonblock=False)
        logits_id, result_id = rt.get_id("logits"), rt.get_id("result")
        for px0, py0, w, h, n, first in rectangles(self.V, self.P_c, self.P_r):
            rt.memcpy_h2d(logits_id, logits[first:first + w * h * n], px0, py0, w, h, n, **args)
        cycles = run.timed_launch("argmax")
        result = np.zeros(self.P_r * self.P_c * 2, dtype=np.float32)
        rt.memcpy_d2h(result, result_id, 0, 0, self.P_c, self.P_r, 2, **args)
        rt.stop()
        pairs = result.reshape(-1, 2)
        if not np.array_equal(pairs.view(np.uint32), np.broadcast_to(pairs[:1], pairs.shape)
                              .view(np.uint32)):
            raise RuntimeError("argmax: the PEs disagree on the result (broadcast failed)")
        index, value = int(pairs[0, 1]), float(pairs[0, 0])
        log.debug("argmax V=%d on %dx%d: index %d value %r in %d cycles", self.V, self.P_c,
                  self.P_r, index, value, cycles)
        return index, value, cycles
