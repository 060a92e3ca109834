"""The KV cache of the decode program, seen from the host.

Placement (``csl/llama_decode``, docs/decode-runtime.md): layer ``l``'s KV head ``g`` lives on
row ``g`` of the layer's region (``LayerGrid.region``), spread round robin over the ``W``
columns: position ``p`` is slot ``p // W`` of column ``p % W``. On a PE, the keys are stored
transposed (``kc[j * S + slot]``) and the values as rows (``vc[slot * d + j]``), f32, ``S``
slots; a streaming slot's PE holds one such block for each layer it runs
(``LayerGrid.kv_index``), one after another. The program appends in place every step; the
host only tracks the length.

Protocol: :meth:`WaferKV.save` copies the cache of the current sequence to host arrays
(:class:`KVSnapshot`, positions in order, ``(n_layers, n_kv, length, d)`` f32) with one
``memcpy_d2h`` per region and tensor; :meth:`WaferKV.restore` writes a snapshot back (one
``memcpy_h2d`` each) and sets the length. Both are exact: f32 words move unchanged. Slots
beyond the length keep stale values, which the program never reads (it masks positions after
the current one). :meth:`WaferKV.reserve` raises :class:`KVCacheFull` when a step would go
past the capacity (the default policy; there is no silent eviction).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from waferscale.host import MemcpyDataType, MemcpyOrder
from waferscale.plan.geometry import LayerGrid

log = logging.getLogger(__name__)


class KVCacheFull(RuntimeError):
    """A step would write past the KV capacity of the plan."""


@dataclass(frozen=True)
class KVSnapshot:
    """One sequence's KV cache on the host.

    Attributes:
        k, v: ``(n_layers, n_kv_heads, length, head_dim)`` float32, positions in order.
        length: positions cached.
    """

    k: np.ndarray
    v: np.ndarray
    length: int

    def __post_init__(self) -> None:
        if self.k.shape != self.v.shape or self.k.ndim != 4 or self.k.shape[2] != self.length:
            raise ValueError(f"KV snapshot shapes {self.k.shape} / {self.v.shape} do not "
                             f"hold {self.length} positions")

    def equals(self, other: KVSnapshot) -> bool:
        """Bit-for-bit equality of two snapshots."""
        return (self.length == other.length
                and np.array_equal(self.k.view(np.uint32), other.k.view(np.uint32))
                and np.array_equal(self.v.view(np.uint32), other.v.view(np.uint32)))


class WaferKV:
    """The KV cache of one running decode program.

    Args:
        runtime: the program's :class:`~waferscale.host.SdkRuntime` (loaded and running).
        grid: the program's grid.
    """

    def __init__(self, runtime: Any, grid: LayerGrid) -> None:
        self.runtime = runtime
        self.grid = grid
        self.length = 0

    @property
    def capacity(self) -> int:
        """Positions one sequence can hold."""
        return self.grid.kv_capacity

    def reserve(self, n: int = 1) -> int:
        """Claim the next ``n`` positions; returns the first. Raises :class:`KVCacheFull`."""
        if self.length + n > self.capacity:
            raise KVCacheFull(f"KV cache full: {self.length} + {n} positions > capacity "
                              f"{self.capacity} (W={self.grid.W} columns x "
                              f"{self.grid.slots} slots per PE)")
        first = self.length
        self.length += n
        return first

    def reset(self) -> None:
        """Forget the current sequence (the wafer's slots are overwritten as it grows)."""
        self.length = 0

    # ---- transfers ----
    def _rect(self, region: int) -> tuple[int, int, int, int]:
        return 0, region * self.grid.H, self.grid.W, self.grid.config.n_kv_heads

    def _words(self, region: int) -> int:
        """Words of ``kc`` (and of ``vc``) per attention PE of ``region``."""
        g = self.grid
        return len(g.region_layers(region)) * g.config.head_dim * g.slots

    def save(self) -> KVSnapshot:
        """Copy the current sequence's cache to the host (exact)."""
        c, g = self.grid.config, self.grid
        n = self.length
        k = np.zeros((c.n_layers, c.n_kv_heads, n, c.head_dim), np.float32)
        v = np.zeros_like(k)
        if n == 0:
            return KVSnapshot(k, v, 0)
        cols, slots = self._placement(n)
        for region in range(g.regions):
            layers = g.region_layers(region)
            kc, vc = (self._read(name, region) for name in ("kc", "vc"))
            # kc: (n_kv, W, layers, d, S), vc: (n_kv, W, layers, S, d). Indexing with the two
            # position arrays around a slice puts the position axis first (NumPy's rule), so
            # kc's result is (n, n_kv, d) and vc's (n_kv, n, d).
            kc5 = kc.reshape(c.n_kv_heads, g.W, len(layers), c.head_dim, g.slots)
            vc5 = vc.reshape(c.n_kv_heads, g.W, len(layers), g.slots, c.head_dim)
            for i, layer in enumerate(layers):
                k[layer] = np.moveaxis(kc5[:, cols, i, :, slots], 0, 1)
                v[layer] = vc5[:, cols, i, slots, :]
        return KVSnapshot(k, v, n)

    def restore(self, snap: KVSnapshot) -> None:
        """Put ``snap`` on the wafer as the current sequence (exact)."""
        c, g = self.grid.config, self.grid
        want = (c.n_layers, c.n_kv_heads, snap.length, c.head_dim)
        if snap.k.shape != want:
            raise ValueError(f"KV snapshot of shape {snap.k.shape} does not fit this model "
                             f"and grid (expected {want})")
        if snap.length > self.capacity:
            raise KVCacheFull(f"KV snapshot of {snap.length} positions > capacity "
                              f"{self.capacity}")
        cols, slots = self._placement(snap.length)
        for region in range(g.regions):
            layers = g.region_layers(region)
            kc = np.zeros((c.n_kv_heads, g.W, len(layers), c.head_dim, g.slots), np.float32)
            vc = np.zeros((c.n_kv_heads, g.W, len(layers), g.slots, c.head_dim), np.float32)
            for i, layer in enumerate(layers):
                kc[:, cols, i, :, slots] = np.moveaxis(snap.k[layer], 1, 0)
                vc[:, cols, i, slots, :] = snap.v[layer]
            self._write("kc", region, kc)
            self._write("vc", region, vc)
        self.length = snap.length

    def _placement(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        p = np.arange(n)
        return p % self.grid.W, p // self.grid.W

    def _read(self, name: str, region: int) -> np.ndarray:
        x, y, w, h = self._rect(region)
        words = self._words(region)
        out = np.zeros(w * h * words, np.float32)
        self.runtime.memcpy_d2h(out, self.runtime.get_id(name), x, y, w, h, words,
                                streaming=False, order=MemcpyOrder.ROW_MAJOR,
                                data_type=MemcpyDataType.MEMCPY_32BIT, nonblock=False)
        return out

    def _write(self, name: str, region: int, data: np.ndarray) -> None:
        x, y, w, h = self._rect(region)
        self.runtime.memcpy_h2d(self.runtime.get_id(name), np.ascontiguousarray(data).ravel(),
                                x, y, w, h, self._words(region), streaming=False,
                                order=MemcpyOrder.ROW_MAJOR,
                                data_type=MemcpyDataType.MEMCPY_32BIT, nonblock=False)
