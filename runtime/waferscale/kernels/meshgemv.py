"""Handle of csl/meshgemv: WaferLLM's MeshGEMV, y[1,N] = x[1,M] · W[M,N] in f16 on P × P PEs
(csl/meshgemv/README.md), timed with WaferLLM's protocol.

Data layout (the kernel's): Mt = M / P, Nt = N / P; PE (px, py) holds x[py*Mt:(py+1)*Mt]
(replicated along the PE row) and the row-major tile W[py*Mt:(py+1)*Mt, px*Nt:(px+1)*Nt];
after a launch every PE of column px holds y[px*Nt:(px+1)*Nt]. Only the first ``width``
columns are simulated (default P): columns never exchange data, so a strip gives the same
per-iteration cycles as the full grid, and y is returned for its ``width * Nt`` entries.

Timing: one launch runs ``warmup`` and then ``repeats`` iterations back to back; every PE
timestamps the start of its first timed iteration and the end of its last one, and
:meth:`MeshGemv.run` returns the mean over PEs of (end - start) / repeats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..host import MemcpyDataType, MemcpyOrder
from .base import Run, compiled, mean_iteration_cycles, memcpy_words


def _r16(a: np.ndarray) -> np.ndarray:
    """Round float64 values to f16 (round to nearest even), as every f16 DSD op does."""
    return np.asarray(a, dtype=np.float64).astype(np.float16)


def chain_to_root(parts: list[np.ndarray], root: int) -> np.ndarray:
    """The kernel's chain reduction of ``parts`` into index ``root``: the chain from the top
    (0 .. root-1) adds as it goes down, the chain from the bottom (n-1 .. root+1) as it goes
    up; the root adds the bottom chain's sum first, then the top one's. Every sum is an f16
    rounding."""
    v = parts[root]
    if root + 1 < len(parts):
        s = parts[-1]
        for k in range(len(parts) - 2, root, -1):
            s = _r16(s.astype(np.float64) + parts[k])
        v = _r16(s.astype(np.float64) + v)
    if root > 0:
        s = parts[0]
        for k in range(1, root):
            s = _r16(s.astype(np.float64) + parts[k])
        v = _r16(s.astype(np.float64) + v)
    return v


def meshgemv_reference(x: np.ndarray, W: np.ndarray, P: int, group_num: int) -> np.ndarray:
    """x · W (f16) with every rounding the kernel does, in its order: per PE row a sequence of
    @fmach (product rounded to f16, then the sum), then the two-phase chain reduction (groups
    of P / group_num rows into their roots at offset (P / group_num) / 2, then the roots into
    the root of group group_num / 2)."""
    x64 = np.asarray(x, dtype=np.float16).astype(np.float64)
    W64 = np.asarray(W, dtype=np.float16).astype(np.float64)
    Mt = x64.size // P
    parts = []
    for py in range(P):
        acc = np.zeros(W64.shape[1], dtype=np.float16)
        for i in range(py * Mt, (py + 1) * Mt):
            acc = _r16(acc.astype(np.float64) + _r16(W64[i] * x64[i]).astype(np.float64))
        parts.append(acc)
    S = P // group_num
    roots = [chain_to_root(parts[q * S:(q + 1) * S], S // 2) for q in range(group_num)]
    return chain_to_root(roots, group_num // 2)


@dataclass(frozen=True)
class MeshGemv:
    """y = x · W for x of M = P·Mt and W of M × N, N = P·Nt, on ``width`` columns of a P × P
    grid (``width=None``: all P), f16 throughout, with ``group_num`` groups (dividing P) in
    the first reduction phase."""
    P: int
    Mt: int
    Nt: int
    group_num: int
    width: int | None = None
    arch: str = "wse3"

    def __post_init__(self) -> None:
        if self.P < 1 or self.Mt < 1 or self.Nt < 1:
            raise ValueError(f"need P, Mt, Nt >= 1, got P={self.P}, Mt={self.Mt}, Nt={self.Nt}")
        if not (1 <= self.group_num <= self.P and self.P % self.group_num == 0):
            raise ValueError(f"group_num must divide P, got P={self.P}, "
                             f"group_num={self.group_num}")
        if not 1 <= self.cols <= self.P:
            raise ValueError(f"need 1 <= width <= P, got width={self.width}, P={self.P}")

    @property
    def cols(self) -> int:
        return self.P if self.width is None else self.width

    @property
    def M(self) -> int:
        return self.P * self.Mt

    @property
    def N(self) -> int:
        return self.P * self.Nt

    def reference(self, x: np.ndarray, W: np.ndarray) -> np.ndarray:
        """The kernel's exact f16 result for the simulated columns."""
        return meshgemv_reference(x, W, self.P, self.group_num)[:self.cols * self.Nt]

    def run(self, x: np.ndarray, W: np.ndarray, warmup: int = 2,
            repeats: int = 10) -> tuple[np.ndarray, float]:
        """Return (y of the simulated columns as f16, mean cycles per iteration). ``y`` is read
        from every PE and must agree along each column; a disagreement raises."""
        if repeats < 1 or warmup < 0 or warmup + repeats > 0xFFFF:
            raise ValueError(f"need repeats >= 1, warmup >= 0, warmup + repeats < 65536, got "
                             f"warmup={warmup}, repeats={repeats}")
        x = np.asarray(x, dtype=np.float16)
        W = np.asarray(W, dtype=np.float16)
        if x.shape != (self.M,) or W.shape != (self.M, self.N):
            raise ValueError(f"expected x {(self.M,)} and W {(self.M, self.N)}, got "
                             f"{x.shape} and {W.shape}")
        P, w, Mt, Nt = self.P, self.cols, self.Mt, self.Nt
        out = compiled("meshgemv", self.arch, w, P,
                       {"P": P, "width": w, "Mt": Mt, "Nt": Nt, "group_num": self.group_num})
        run = Run.start(out)
        rt = run.runtime
        f16 = MemcpyDataType.MEMCPY_16BIT
        order = MemcpyOrder.ROW_MAJOR
        # [py][px][k]: the x tile of row py on every PE of the row.
        rt.memcpy_h2d(rt.get_id("x"), memcpy_words(np.repeat(x.reshape(P, 1, Mt), w, axis=1)),
                      0, 0, w, P, Mt, streaming=False, order=order, data_type=f16,
                      nonblock=False)
        # [py][px][i][j]: row-major tiles.
        tiles = W.reshape(P, Mt, P, Nt).transpose(0, 2, 1, 3)[:, :w]
        rt.memcpy_h2d(rt.get_id("W"), memcpy_words(tiles), 0, 0, w, P, Mt * Nt,
                      streaming=False, order=order, data_type=f16, nonblock=False)
        rt.launch("meshgemv_host", np.uint16(warmup), np.uint16(repeats), nonblock=False)
        y_u32 = np.zeros(P * w * Nt, dtype=np.uint32)
        rt.memcpy_d2h(y_u32, rt.get_id("y"), 0, 0, w, P, Nt, streaming=False, order=order,
                      data_type=f16, nonblock=False)
        mean_cycles = mean_iteration_cycles(rt, w, P, repeats)
        rt.stop()
        y_all = (y_u32 & 0xFFFF).astype(np.uint16).view(np.float16).reshape(P, w * Nt)
        if not np.all(y_all.view(np.uint16) == y_all[:1].view(np.uint16)):
            raise AssertionError("meshgemv: the PEs of a column disagree on y")
        return y_all[0].copy(), mean_cycles
