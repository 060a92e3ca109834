"""Handle of csl/meshgemm: WaferLLM's MeshGEMM, C[M,N] = A[M,K] · B[K,N] in f16 on P × P PEs
by Cannon's algorithm on interleaved rings (csl/meshgemm/README.md), timed with WaferLLM's
protocol.

Data layout (the kernel's): Mt = M / P, Kt = K / P, Nt = N / P. PE (px, py) holds the A tile
(py, px) column-major, the B tile (kb, px) row-major where the host picks kb so that it meets
the A tile the PE holds after the device's alignment shifts (:func:`b_block_rows`), and returns
the C tile (py, px) column-major.

Timing: one launch runs ``warmup`` and then ``repeats`` iterations (alignment + P steps) back
to back; every PE timestamps the start of its first timed iteration and the end of its last,
and :meth:`MeshGemm.run` returns the mean over PEs of (end - start) / repeats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..host import MemcpyDataType, MemcpyOrder
from .base import Run, compiled, mean_iteration_cycles, memcpy_words


def ring_succ(c: int, P: int) -> int:
    """Successor of position c on the interleaved ring 0 -> 2 -> 4 ... -> 3 -> 1 -> 0 (as
    layout.csl's ring_succ)."""
    if c % 2 == 0:
        if c + 2 < P:
            return c + 2
        return c + 1 if c + 1 < P else c - 1
    return 0 if c == 1 else c - 2


def link_index(s: int, P: int) -> int:
    """Color index (0..2) of the ring link s -> ring_succ(s), as layout.csl's link_index."""
    r = ring_succ(s, P)
    if abs(s - r) == 2:
        return ((s + r) // 2) % 3
    return 0 if (s, r) == (1, 0) else (P - 1) % 3


def _shift(k: np.ndarray, P: int, axis: int, forward: bool) -> np.ndarray:
    """Move every tile one ring position along ``axis`` (1: x, 0: y), forwards (to the
    successor) or backwards (to the predecessor)."""
    out = np.empty_like(k)
    for c in range(P):
        s = ring_succ(c, P)
        src, dst = (c, s) if forward else (s, c)
        if axis == 1:
            out[:, dst] = k[:, src]
        else:
            out[dst, :] = k[src, :]
    return out


def schedule(P: int) -> np.ndarray:
    """The K-block index each PE multiplies at each step: ``order[s, py, px]``. A's blocks start
    at their home columns and are aligned as the device does (row py: py/2 ring positions
    backwards if py is even, (py+1)/2 forwards if odd), B's block rows are chosen to match; then
    A moves forwards along x and B along y every step. Raises if the tiles ever disagree."""
    ka = np.tile(np.arange(P), (P, 1))
    for py in range(P):
        row = ka[py:py + 1]
        for _ in range(py // 2 if py % 2 == 0 else (py + 1) // 2):
            row = _shift(row, P, 1, forward=py % 2 == 1)
        ka[py] = row[0]
    kb = ka.copy()                               # the host's alignment of B
    order = np.empty((P, P, P), dtype=np.int64)
    for s in range(P):
        if not np.array_equal(ka, kb):
            raise AssertionError(f"meshgemm: A and B blocks disagree at step {s}")
        order[s] = ka
        ka = _shift(ka, P, 1, forward=True)
        kb = _shift(kb, P, 0, forward=True)
    if not all(sorted(order[:, py, px]) == list(range(P)) for py in range(P)
               for px in range(P)):
        raise AssertionError("meshgemm: a PE misses a K block")
    return order


def b_block_rows(P: int) -> np.ndarray:
    """Block row of B the host puts on PE (py, px): ``kb[py, px]``."""
    return schedule(P)[0]


def meshgemm_reference(A: np.ndarray, B: np.ndarray, P: int) -> np.ndarray:
    """A · B (f16) with every rounding the kernel does, in its order: per PE, for each step's
    K block, for each k of the block, for each column n, C[:, n] += A[:, k] · B[k, n] as one
    f16 multiply-add (product rounded, then the sum)."""
    A64 = np.asarray(A, dtype=np.float16).astype(np.float64)
    B64 = np.asarray(B, dtype=np.float16).astype(np.float64)
    M, K = A64.shape
    N = B64.shape[1]
    Mt, Kt, Nt = M // P, K // P, N // P
    order = schedule(P)
    # A4[py, px?, m, kk] per step via fancy indexing: tiles[py][kb] = A[py*Mt.., kb*Kt..].
    At = A64.reshape(P, Mt, P, Kt).transpose(0, 2, 1, 3)   # [py, kb, m, k]
    Bt = B64.reshape(P, Kt, P, Nt).transpose(0, 2, 1, 3)   # [kb, px, k, n]
    C = np.zeros((P, P, Mt, Nt), dtype=np.float16)         # [py, px, m, n]
    rows = np.arange(P)[:, None]
    cols = np.arange(P)[None, :]
    for s in range(P):
        kb = order[s]
        a = At[rows, kb]                                   # [py, px, m, k]
        b = Bt[kb, cols]                                   # [py, px, k, n]
        for k in range(Kt):
            for n in range(Nt):
                prod = (a[:, :, :, k] * b[:, :, k, n][:, :, None]).astype(np.float16)
                C[:, :, :, n] = (C[:, :, :, n].astype(np.float64) +
                                 prod.astype(np.float64)).astype(np.float16)
    return C.transpose(0, 2, 1, 3).reshape(M, N)


@dataclass(frozen=True)
class MeshGemm:
    """C = A · B for A of (P·Mt) × (P·Kt) and B of (P·Kt) × (P·Nt) on P × P PEs, f16."""
    P: int
    Mt: int
    Kt: int
    Nt: int
    arch: str = "wse3"

    def __post_init__(self) -> None:
        if self.P < 2 or min(self.Mt, self.Kt, self.Nt) < 1:
            raise ValueError(f"need P >= 2 and Mt, Kt, Nt >= 1, got P={self.P}, "
                             f"Mt={self.Mt}, Kt={self.Kt}, Nt={self.Nt}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.P * self.Mt, self.P * self.Kt, self.P * self.Nt

    def reference(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        return meshgemm_reference(A, B, self.P)

    def run(self, A: np.ndarray, B: np.ndarray, warmup: int = 1,
            repeats: int = 2) -> tuple[np.ndarray, float]:
        """Return (C as f16, mean cycles per iteration)."""
        if repeats < 1 or warmup < 0 or warmup + repeats > 0xFFFF:
            raise ValueError(f"need repeats >= 1, warmup >= 0, warmup + repeats < 65536, got "
                             f"warmup={warmup}, repeats={repeats}")
        M, K, N = self.shape
        A = np.asarray(A, dtype=np.float16)
        B = np.asarray(B, dtype=np.float16)
        if A.shape != (M, K) or B.shape != (K, N):
            raise ValueError(f"expected A {(M, K)} and B {(K, N)}, got {A.shape} and {B.shape}")
        P, Mt, Kt, Nt = self.P, self.Mt, self.Kt, self.Nt
        out = compiled("meshgemm", self.arch, P, P, {"P": P, "Mt": Mt, "Kt": Kt, "Nt": Nt})
        run = Run.start(out)
        rt = run.runtime
        f16 = MemcpyDataType.MEMCPY_16BIT
        order = MemcpyOrder.ROW_MAJOR
        # [py][px][k][m]: column-major A tiles.
        A_tiles = A.reshape(P, Mt, P, Kt).transpose(0, 2, 3, 1)
        rt.memcpy_h2d(rt.get_id("A"), memcpy_words(A_tiles), 0, 0, P, P, Mt * Kt,
                      streaming=False, order=order, data_type=f16, nonblock=False)
        # [py][px][k][n]: row-major B tiles, block row kb[py, px].
        Bt = B.reshape(P, Kt, P, Nt).transpose(0, 2, 1, 3)   # [kb, px, k, n]
        B_tiles = Bt[b_block_rows(P), np.arange(P)[None, :]]
        rt.memcpy_h2d(rt.get_id("B"), memcpy_words(B_tiles), 0, 0, P, P, Kt * Nt,
                      streaming=False, order=order, data_type=f16, nonblock=False)
        rt.launch("meshgemm_host", np.uint16(warmup), np.uint16(repeats), nonblock=False)
        c_u32 = np.zeros(M * N, dtype=np.uint32)
        rt.memcpy_d2h(c_u32, rt.get_id("C"), 0, 0, P, P, Mt * Nt, streaming=False,
                      order=order, data_type=f16, nonblock=False)
        cycles = mean_iteration_cycles(rt, P, P, repeats)
        rt.stop()
        # [py][px][n][m] -> C[M, N]
        tiles = (c_u32 & 0xFFFF).astype(np.uint16).view(np.float16).reshape(P, P, Nt, Mt)
        C = tiles.transpose(0, 3, 1, 2).reshape(M, N)
        return C, cycles
