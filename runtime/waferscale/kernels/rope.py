"""Handle of csl/rope: rotary position embedding of one q or k vector of H heads × head_dim d
over a row of P PEs (csl/rope/README.md), in llama.cpp's convention for GGUF llama weights:
each head's pairs are adjacent elements (x[2i], x[2i+1]), pair i turns by pos·base^(-2i/d).

Data layout (the kernel's): the H·d elements (head after head) form K = H·d/2 pairs, split into
P contiguous blocks of whole pairs, the first ``K % P`` one pair longer; PE px holds pairs
q0 .. q0+m-1 of x and y. Its cos/sin tables hold one row of m values per position
0 .. max_pos-1 (pair j has frequency index (q0 + j) mod d/2); they come from the model's
:func:`waferscale.model.reference.rope_tables` (float64 angles, rounded once to f32), so the
kernel rotates by exactly the reference decoder's tables.

Protocol: :class:`Rope` compiles the kernel and, on the first :meth:`Rope.apply`, starts one
simulated device and copies the tables once; every ``apply(x, pos)`` then copies x, launches
``rope(pos)`` and reads y. Call :meth:`Rope.close` (or use the handle as a context manager)
to stop the device.
"""

from __future__ import annotations

import logging
import math
from types import TracebackType
from typing import Self

import numpy as np

from ..host import MemcpyDataType, MemcpyOrder
from ..model.reference import rope_tables
from .base import Run, blocks, compiled
from .floors import F32_SIMD, rope_floor

log = logging.getLogger(__name__)

MEMCPY_F32 = MemcpyDataType.MEMCPY_32BIT

# cslc params are u16; the layout keeps data under 40 KiB per PE; row offsets are i16.
_MAX_U16 = 0xFFFF
_MAX_I16 = 0x7FFF
_DATA_BUDGET_BYTES = 40 * 1024


def data_bytes(m: int, max_pos: int) -> int:
    """Data bytes of a PE with m pairs: x and y (2m words each), the scratch (m) and the two
    tables (max_pos·m each), 4 bytes a word."""
    return 4 * m * (5 + 2 * max_pos)


class Rope:
    """RoPE of an H×d f32 vector on a row of P PEs, tables for positions 0 .. max_pos-1.

    One instance keeps one simulated device alive from its first :meth:`apply` to
    :meth:`close`, so the tables are copied once however many positions are applied.
    """

    def __init__(self, H: int, d: int, P: int, max_pos: int, base: float = 10000.0,
                 arch: str = "wse3") -> None:
        if H < 1 or d < 2 or d % 2:
            raise ValueError(f"need H >= 1 and an even d >= 2, got H={H}, d={d}")
        if H > _MAX_U16 or d > _MAX_U16 or H * d // 2 > _MAX_U16:
            raise ValueError(f"H={H}, d={d}: H, d and H*d/2 must be at most {_MAX_U16}")
        if not 1 <= P <= H * d // 2:
            raise ValueError(f"need 1 <= P <= H*d/2 = {H * d // 2} (no empty blocks), "
                             f"got P={P}")
        if not 1 <= max_pos <= _MAX_I16:
            raise ValueError(f"need 1 <= max_pos <= {_MAX_I16}, got {max_pos}")
        if not (math.isfinite(base) and base > 0.0):
            raise ValueError(f"base must be finite and > 0, got {base}")
        if arch not in F32_SIMD:
            raise ValueError(f"arch must be 'wse2' or 'wse3', got {arch!r}")
        self.H, self.d, self.P, self.max_pos, self.base, self.arch = H, d, P, max_pos, \
            float(base), arch
        self.K = H * d // 2
        m_max = -(-self.K // P)
        if data_bytes(m_max, max_pos) > _DATA_BUDGET_BYTES:
            raise ValueError(f"H={H}, d={d} over P={P} PEs with max_pos={max_pos} needs "
                             f"{data_bytes(m_max, max_pos)} bytes on a PE, over the 40 KiB "
                             "data budget per PE; use more PEs or a smaller max_pos")
        if m_max * max_pos > _MAX_I16:
            raise ValueError(f"m*max_pos = {m_max * max_pos} exceeds the i16 DSD offset "
                             f"({_MAX_I16}); use more PEs or a smaller max_pos")
        self._groups = blocks(self.K, P)
        self._run: Run | None = None

    def floor(self) -> int:
        return rope_floor(self.H, self.d, self.P, self.arch)

    def tables(self) -> tuple[np.ndarray, np.ndarray]:
        """``cos``, ``sin`` of shape (max_pos, d/2), f32: what the device's tables hold."""
        return rope_tables(np.arange(self.max_pos), self.d, self.base)

    def _start(self) -> Run:
        """Compile (cached), start the device and copy the tables: once per instance."""
        if self._run is not None:
            return self._run
        out_dir = compiled("rope", self.arch, self.P, 1,
                           {"P_c": self.P, "H": self.H, "d": self.d, "max_pos": self.max_pos})
        run = Run.start(out_dir)
        rt = run.runtime
        pair_freq = np.arange(self.K) % (self.d // 2)
        for name, table in zip(("cos_tab", "sin_tab"), self.tables()):
            sym = rt.get_id(name)
            for px0, w, m, q0 in self._groups:
                # PE k of the group: its (max_pos, m) rows, row-major, after PE k-1's.
                host = np.concatenate([table[:, pair_freq[q0 + k * m:q0 + (k + 1) * m]].ravel()
                                       for k in range(w)]).astype(np.float32)
                rt.memcpy_h2d(sym, host, px0, 0, w, 1, self.max_pos * m, streaming=False,
                              order=MemcpyOrder.ROW_MAJOR, data_type=MEMCPY_F32,
                              nonblock=False)
        log.debug("rope: device started, tables for %d positions copied", self.max_pos)
        self._run = run
        return run

    def apply(self, x: np.ndarray, pos: int) -> tuple[np.ndarray, int]:
        """Rotate ``x`` of shape (H, d) by position ``pos``; return (y as f32 (H, d), simulated
        cycles of the launch)."""
        if isinstance(pos, bool) or not isinstance(pos, (int, np.integer)):
            raise TypeError(f"pos must be an integer, got {type(pos).__name__}")
        if not 0 <= pos < self.max_pos:
            raise ValueError(f"pos={pos} outside the tables' positions 0..{self.max_pos - 1}")
        xv = np.asarray(x, dtype=np.float32)
        if xv.shape != (self.H, self.d):
            raise ValueError(f"expected x of shape {(self.H, self.d)}, got {xv.shape}")
        run = self._start()
        run.put_blocks("x", np.ascontiguousarray(xv).ravel(), self.P, item=2)   # whole pairs
        cycles = run.timed_launch("rope", np.int16(pos))
        y = run.get_blocks("y", self.H * self.d, self.P, item=2)
        return y.reshape(self.H, self.d), cycles

    def close(self) -> None:
        """Stop the device (if started). The handle may start a new one on the next apply."""
        if self._run is not None:
            self._run.runtime.stop()
            self._run = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Rope(H={self.H}, d={self.d}, P={self.P}, max_pos={self.max_pos}, "
                f"base={self.base}, arch={self.arch!r})")
