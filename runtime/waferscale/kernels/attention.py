"""Handle of csl/attention: decode attention of one token per launch against a KV cache that
stays resident on a row of P PEs between tokens (csl/attention/README.md).

Data layout (the kernel's): position t of the sequence lives on PE ``t // n``, slot ``t % n``,
with ``n = ceil(capacity / P)`` slots on every PE (the last PEs may own fewer positions, or
none). Per KV head g the PE stores its K block transposed, ``kc[g, j, slot]`` ([H_kv][d][n]),
and its V block as is, ``vc[g, slot, j]`` ([H_kv][n][d]). :meth:`DecodeAttention.position_of`
and :meth:`DecodeAttention.slot_of` expose the mapping to the runtime.

Protocol: :meth:`DecodeAttention.open` compiles (once per shape) and loads ONE simulated
device, which then lives until :meth:`DecodeAttention.close` (or the end of a ``with`` block).
Each :meth:`DecodeAttention.step` copies the token's q, k and v to every PE (memcpy copy mode)
and launches ``step(L)``; the PE owning position L appends k and v, and every PE computes the
attention of q over positions 0..L. The handle tracks L. :meth:`DecodeAttention.load_cache`
writes a whole prefix (e.g. a prefill) into the cache at once.

Limits: H_kv divides H; at most 127 slots per PE (the append writes K with stride n, and
mem1d strides are i8); the block within the layout's 40 KiB data budget per PE; capacity and
H·(d+1) within u16; finite inputs.
"""

from __future__ import annotations

import logging
import math
from types import TracebackType
from typing import Any, Self

import numpy as np

from ..host import MemcpyDataType, MemcpyOrder
from .base import Run, compiled
from .floors import attention_floor

log = logging.getLogger(__name__)

ARCHES = ("wse2", "wse3")
# layout.csl's data budget per PE and the slot limit of attention.csl.
_DATA_BUDGET_BYTES = 40 * 1024
_MAX_SLOTS = 127
_U16_MAX = 0xFFFF
# Elements per cycle of f32 @fmacs (not in the SIMD table: 1 on both, docs/timing-model.md).

_COPY: dict[str, Any] = {"streaming": False, "order": MemcpyOrder.ROW_MAJOR,
                         "data_type": MemcpyDataType.MEMCPY_32BIT, "nonblock": False}


def scale_bits(d: int) -> int:
    """Bit pattern of 1/sqrt(d) rounded to f32 (how layout.csl takes the score scale)."""
    return int(np.array(1.0 / math.sqrt(d), dtype=np.float32).view(np.uint32))


def data_bytes(H: int, H_kv: int, d: int, n: int) -> int:
    """Data bytes per PE (layout.csl's check, README.md): K and V blocks, scores, q, k_new,
    v_new, maxima, output plus denominators, and 14 bytes of slot count and pointers."""
    words = 2 * H_kv * d * n + H * n + H * d + 2 * H_kv * d + H + H * (d + 1)
    return 4 * words + 14


def exact_with_bound(q: np.ndarray, K: np.ndarray, V: np.ndarray,
                     P: int) -> tuple[np.ndarray, np.ndarray]:
    """Float64 attention of one query q (H, d) over K, V (H_kv, T, d) (all T keys visible),
    and the bound on the kernel's error per output element, both (H, d).

    With u = 2^-24 and gamma_k = k u / (1 - k u): a score is off by at most
    delta_t = gamma_{d+2} scale sum_j |q_j k_tj| (d products and sums, the f32 scale and its
    multiply); exp(s_t - max) then has a relative error within exp(+-R),
    R = max_t (delta_t + u (|s*_t - max s*| + 2 max delta)) + 2u (score errors, the
    subtraction, one ulp for exp_f32); each probability is within exp(+-2R) of the exact one;
    the sums of T terms plus P - 1 allreduce additions, the reciprocal and the multiply add
    gamma_{2(T+P+4)}. Bound: (exp(2R) (1 + gamma_{2(T+P+4)}) - 1) sum_t p*_t |v_t| + 2^-126
    (relative to sum p |v|, since the weighted sum may cancel). Any f32 implementation that
    sums in another order (NumPy's) obeys the same bound.
    """
    u = 2.0**-24

    def gamma(k: int) -> float:
        return k * u / (1 - k * u)

    H, d = q.shape
    H_kv, T, _ = K.shape
    group = H // H_kv
    scale = float(np.float32(1.0 / math.sqrt(d)))
    q64, K64, V64 = (np.asarray(a, dtype=np.float64) for a in (q, K, V))
    out = np.zeros((H, d))
    bound = np.zeros((H, d))
    for h in range(H):
        g = h // group
        s = K64[g] @ q64[h] / math.sqrt(d)
        delta = gamma(d + 2) * scale * (np.abs(K64[g]) @ np.abs(q64[h]))
        p = np.exp(s - s.max())
        p /= p.sum()
        out[h] = p @ V64[g]
        R = float(np.max(delta + u * (np.abs(s - s.max()) + 2 * delta.max()))) + 2 * u
        rel = math.exp(2 * R) * (1 + gamma(2 * (T + P + 4))) - 1
        bound[h] = rel * (p @ np.abs(V64[g])) + 2.0**-126
    return out, bound


class DecodeAttention:
    """Decode attention over a KV cache resident on a row of P PEs; f32 throughout.

    ``step(q, k_new, v_new)`` appends k_new, v_new at position ``length`` and returns the
    attention output of q over positions 0..length (causal: the new token sees itself), as
    ``(H, d)`` f32 plus the simulated cycles of the launch. Query head h reads KV head
    ``h // (H // H_kv)``; scores are scaled by 1/sqrt(d) (rounded to f32).
    """

    def __init__(self, H: int, H_kv: int, d: int, capacity: int, P: int,
                 arch: str = "wse3") -> None:
        if arch not in ARCHES:
            raise ValueError(f"arch must be 'wse2' or 'wse3', got {arch!r}")
        if min(H, H_kv, d, capacity, P) < 1:
            raise ValueError(f"need H, H_kv, d, capacity, P >= 1, got H={H}, H_kv={H_kv}, "
                             f"d={d}, capacity={capacity}, P={P}")
        if H % H_kv:
            raise ValueError(f"H_kv={H_kv} must divide H={H} (grouped-query attention)")
        if capacity > _U16_MAX or H * (d + 1) > _U16_MAX:
            raise ValueError(f"capacity and H*(d+1) must fit in u16, got capacity={capacity}, "
                             f"H*(d+1)={H * (d + 1)}")
        self.H, self.H_kv, self.d, self.capacity, self.P, self.arch = H, H_kv, d, capacity, P, arch
        self.n = -(-capacity // P)
        if self.n > _MAX_SLOTS:
            raise ValueError(f"{self.n} slots per PE (capacity {capacity} over {P} PEs); the "
                             f"kernel takes at most {_MAX_SLOTS}: use more PEs")
        need = data_bytes(H, H_kv, d, self.n)
        if need > _DATA_BUDGET_BYTES:
            raise ValueError(f"{self.n} slots per PE need {need} data bytes, over the "
                             f"{_DATA_BUDGET_BYTES}-byte budget per PE; use more PEs")
        self.length = 0
        self._run: Run | None = None

    # ---- layout ----------------------------------------------------------------------------

    def position_of(self, t: int) -> int:
        """Column (pe_x) of the PE holding sequence position t."""
        return self.slot_of(t)[0]

    def slot_of(self, t: int) -> tuple[int, int]:
        """``(pe_x, slot)`` of sequence position t."""
        if not 0 <= t < self.capacity:
            raise ValueError(f"position {t} outside the cache (capacity {self.capacity})")
        return divmod(t, self.n)

    def floor(self, L: int | None = None) -> int:
        """:func:`attention_floor` of a step at position L (default: the next step's)."""
        return attention_floor(self.H, self.d, self.length if L is None else L, self.P,
                               self.arch)

    # ---- device lifetime -------------------------------------------------------------------

    def open(self) -> Self:
        """Compile (cached per shape) and load the program; the cache starts empty."""
        if self._run is not None:
            raise RuntimeError("DecodeAttention: already open")
        out = compiled("attention", self.arch, self.P, 1,
                       {"P_c": self.P, "C": self.capacity, "H": self.H, "H_kv": self.H_kv,
                        "d": self.d, "scale_bits": scale_bits(self.d)})
        self._run = Run.start(out)
        self.length = 0
        return self

    def close(self) -> None:
        """Stop the device (the cache is lost)."""
        if self._run is not None:
            self._run.runtime.stop()
            self._run = None

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _runtime(self, what: str) -> Run:
        if self._run is None:
            raise RuntimeError(f"DecodeAttention.{what}: call open() first (or use 'with')")
        return self._run

    def _f32(self, name: str, a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        a = np.asarray(a, dtype=np.float32)
        if a.shape != shape:
            raise ValueError(f"expected {name} of shape {shape}, got {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or infinity")
        return a

    # ---- per token -------------------------------------------------------------------------

    def step(self, q: np.ndarray, k_new: np.ndarray,
             v_new: np.ndarray) -> tuple[np.ndarray, int]:
        """Append (k_new, v_new) at position ``length``, attend q over positions
        0..length, advance ``length``. q: (H, d); k_new, v_new: (H_kv, d). Returns
        (out as (H, d) f32, simulated cycles of the launch)."""
        run = self._runtime("step")
        if self.length >= self.capacity:
            raise ValueError(f"the cache is full ({self.capacity} positions)")
        host = {"q": self._f32("q", q, (self.H, self.d)),
                "k_new": self._f32("k_new", k_new, (self.H_kv, self.d)),
                "v_new": self._f32("v_new", v_new, (self.H_kv, self.d))}
        rt = run.runtime
        for name, a in host.items():
            rt.memcpy_h2d(rt.get_id(name), np.tile(a.ravel(), self.P), 0, 0, self.P, 1,
                          a.size, **_COPY)
        cycles = run.timed_launch("step", np.uint16(self.length))
        n_out = self.H * (self.d + 1)
        flat = np.zeros(self.P * n_out, dtype=np.float32)
        rt.memcpy_d2h(flat, rt.get_id("out"), 0, 0, self.P, 1, n_out, **_COPY)
        res = flat.reshape(self.P, n_out)
        if not np.array_equal(res.view(np.uint32),
                              np.broadcast_to(res[:1], res.shape).view(np.uint32)):
            raise RuntimeError("attention: the PEs disagree on the output (broadcast failed)")
        log.debug("attention step at L=%d on %d PEs: %d cycles", self.length, self.P, cycles)
        self.length += 1
        return res[0, :self.H * self.d].reshape(self.H, self.d).copy(), cycles

    # ---- whole cache -----------------------------------------------------------------------

    def load_cache(self, k: np.ndarray, v: np.ndarray) -> None:
        """Write positions 0..T-1 of the cache from k, v of shape (H_kv, T, d) (e.g. after a
        prefill) and set ``length = T``; slots past T are zeroed."""
        run = self._runtime("load_cache")
        if k.ndim != 3 or k.shape[0] != self.H_kv or k.shape[2] != self.d:
            raise ValueError(f"expected k of shape ({self.H_kv}, T, {self.d}), got {k.shape}")
        T = k.shape[1]
        if T > self.capacity:
            raise ValueError(f"{T} positions do not fit the cache (capacity {self.capacity})")
        k = self._f32("k", k, (self.H_kv, T, self.d))
        v = self._f32("v", v, (self.H_kv, T, self.d))
        slots = self.P * self.n
        pad = ((0, 0), (0, slots - T), (0, 0))
        # (H_kv, P*n, d) -> per PE: kc [H_kv][d][n], vc [H_kv][n][d].
        kp = np.pad(k, pad).reshape(self.H_kv, self.P, self.n, self.d)
        vp = np.pad(v, pad).reshape(self.H_kv, self.P, self.n, self.d)
        kc = np.ascontiguousarray(kp.transpose(1, 0, 3, 2))
        vc = np.ascontiguousarray(vp.transpose(1, 0, 2, 3))
        rt = run.runtime
        words = self.H_kv * self.d * self.n
        rt.memcpy_h2d(rt.get_id("kc"), kc.ravel(), 0, 0, self.P, 1, words, **_COPY)
        rt.memcpy_h2d(rt.get_id("vc"), vc.ravel(), 0, 0, self.P, 1, words, **_COPY)
        self.length = T

    def read_cache(self) -> tuple[np.ndarray, np.ndarray]:
        """The device's cache as (k, v), each (H_kv, length, d), gathered through
        :meth:`slot_of`'s mapping."""
        run = self._runtime("read_cache")
        rt = run.runtime
        words = self.H_kv * self.d * self.n
        kc_flat = np.zeros(self.P * words, dtype=np.float32)
        vc_flat = np.zeros(self.P * words, dtype=np.float32)
        rt.memcpy_d2h(kc_flat, rt.get_id("kc"), 0, 0, self.P, 1, words, **_COPY)
        rt.memcpy_d2h(vc_flat, rt.get_id("vc"), 0, 0, self.P, 1, words, **_COPY)
        kc = kc_flat.reshape(self.P, self.H_kv, self.d, self.n)
        vc = vc_flat.reshape(self.P, self.H_kv, self.n, self.d)
        k = np.zeros((self.H_kv, self.length, self.d), dtype=np.float32)
        v = np.zeros_like(k)
        for t in range(self.length):
            px, i = self.slot_of(t)
            k[:, t, :] = kc[px, :, :, i]
            v[:, t, :] = vc[px, :, i, :]
        return k, v
