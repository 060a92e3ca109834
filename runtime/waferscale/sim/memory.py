"""A PE's 48 KiB of SRAM: 24,576 16-bit words, and typed loads/stores on it.

Encoding (assumption, matching the host's view of memcpy data): 32-bit values occupy two
consecutive words, low half first; 16-bit values one word; 8-bit values and ``bool`` the low
byte of one word. Addresses handed around the simulator are **word** addresses.
"""

from __future__ import annotations

import platform
import sys

import numpy as np

from ..lang import types as T

WORDS = 24 * 1024
# Uninitialised memory with --uninitialized-nan: 0x7E00 is an f16 quiet NaN and, as a word pair,
# an f32 NaN (0x7E007E00).
NAN_WORD = 0x7E00
# MAP_NORESERVE of Linux's generic <asm-generic/mman-common.h> (x86, arm, riscv; other
# architectures number it differently). Python's mmap module exports it only from 3.13 on.
_LINUX_MAP_NORESERVE = 0x4000 if platform.machine() in ("x86_64", "aarch64", "riscv64") else 0


class MemoryError_(Exception):
    """An access outside the 48 KiB (the simulator wraps it with cycle/PE/task context)."""


def words_of(t: T.Type) -> int:
    """Words per element of scalar type ``t``."""
    if isinstance(t, (T.IntT, T.FloatT)):
        return 2 if t.bits > 16 else 1
    return 1


_F32 = np.dtype("<f4")
_F16 = np.dtype("<f2")


def memory_block(n: int, fill_nan: bool = False) -> np.ndarray:
    """The memory of ``n`` PEs as the rows of one ``(n, WORDS)`` block. Zero-filled memory
    comes from an anonymous mapping without transparent huge pages, so that the system only
    provides (and zeroes) the 4 KiB pages a program writes: 20,000 PEs' 48 KiB each would
    otherwise cost about a gigabyte, zeroed up front. The mapping is made without a swap
    reservation (Linux ``MAP_NORESERVE``): a whole WSE-3 rectangle is 40 GiB of address
    space, which the kernel's default overcommit heuristic refuses to reserve at once,
    although a program touches a few pages per PE."""
    if fill_nan:
        try:
            return np.full((n, WORDS), NAN_WORD, dtype=np.uint16)
        except MemoryError:
            raise MemoryError_(
                f"uninitialized_nan fills every PE's 48 KiB up front: {n} PEs need "
                f"{n * WORDS * 2 / 2**30:.1f} GiB of host memory, more than this machine "
                f"gives; run without it (memory is then zero-filled on first touch)") from None
    try:
        import mmap
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
        if sys.platform.startswith("linux"):
            flags |= getattr(mmap, "MAP_NORESERVE", _LINUX_MAP_NORESERVE)
        mm = mmap.mmap(-1, max(1, n) * WORDS * 2, flags=flags)
        if hasattr(mmap, "MADV_NOHUGEPAGE"):
            mm.madvise(mmap.MADV_NOHUGEPAGE)
        return np.frombuffer(mm, dtype=np.uint16)[:n * WORDS].reshape(n, WORDS)
    except (OSError, ValueError, AttributeError):       # no anonymous mappings here
        return np.zeros((n, WORDS), dtype=np.uint16)


class PEMemory:
    """The words of one PE, with NaN-able uninitialised contents."""

    __slots__ = ("words",)

    def __init__(self, fill_nan: bool = False, words: np.ndarray | None = None) -> None:
        """Fresh memory (zeros, or NaN patterns with ``fill_nan``), or the given ``words``
        (a row of a simulator's memory block, filled already)."""
        if words is not None:
            self.words = words
            return
        self.words = np.zeros(WORDS, dtype=np.uint16)
        if fill_nan:
            self.words[:] = NAN_WORD

    def _check(self, addr: int, n: int) -> None:
        if addr < 0 or addr + n > WORDS:
            raise MemoryError_(f"address {addr} (+{n} words) is outside the PE's 48 KiB "
                               f"({WORDS} words)")

    def load_bits(self, addr: int, nwords: int) -> int:
        self._check(addr, nwords)
        if nwords == 1:
            return int(self.words[addr])
        return int(self.words[addr]) | (int(self.words[addr + 1]) << 16)

    def store_bits(self, addr: int, nwords: int, bits: int) -> None:
        self._check(addr, nwords)
        self.words[addr] = bits & 0xFFFF
        if nwords == 2:
            self.words[addr + 1] = (bits >> 16) & 0xFFFF

    def _fitting(self, addr: int, nwords: int, count: int) -> int:
        """How many of ``count`` consecutive elements from ``addr`` lie inside memory."""
        if addr < 0:
            return 0
        return max(0, min(count, (WORDS - addr) // nwords))

    def store_block(self, addr: int, nwords: int, bits: np.ndarray) -> None:
        """store_bits for consecutive elements (a host copy); like a loop of store_bits,
        the elements before the first one outside memory are written, then it raises."""
        b = np.asarray(bits, dtype=np.uint32)
        ok = self._fitting(addr, nwords, len(b))
        if ok and nwords == 1:
            self.words[addr:addr + ok] = b[:ok] & 0xFFFF
        elif ok:
            self.words[addr:addr + 2 * ok:2] = b[:ok] & 0xFFFF
            self.words[addr + 1:addr + 2 * ok:2] = b[:ok] >> 16
        if ok < len(b):
            self._check(addr + ok * nwords, nwords)

    def load_block(self, addr: int, nwords: int, count: int) -> np.ndarray:
        """load_bits for ``count`` consecutive elements, as uint32."""
        ok = self._fitting(addr, nwords, count)
        if ok < count:
            self._check(addr + ok * nwords, nwords)
        if not count:
            return np.zeros(0, dtype=np.uint32)
        w = self.words[addr:addr + nwords * count].astype(np.uint32)
        return w if nwords == 1 else w[0::2] | (w[1::2] << 16)

    def load(self, addr: int, t: T.Type):
        """A Python scalar of type ``t`` read at word address ``addr``."""
        nw = words_of(t)
        bits = self.load_bits(addr, nw)
        return decode(bits, t)

    def store(self, addr: int, t: T.Type, value) -> None:
        self.store_bits(addr, words_of(t), encode(value, t))


def decode(bits: int, t: T.Type):
    if isinstance(t, T.FloatT):
        if t.name == "f32":
            return float(np.array(bits, dtype=np.uint32).view(_F32))
        if t.name == "f16":
            return float(np.array(bits & 0xFFFF, dtype=np.uint16).view(_F16))
        if t.name == "bf16":
            return float(np.array((bits & 0xFFFF) << 16, dtype=np.uint32).view(_F32))
        raise MemoryError_(f"cannot load values of type {t}")
    if isinstance(t, T.IntT):
        return t.wrap(bits)
    if t == T.BOOL:
        return bool(bits & 0xFF)
    return bits


def encode(value, t: T.Type) -> int:
    if isinstance(t, T.FloatT):
        with np.errstate(over="ignore"):
            if t.name == "f32":
                return int(np.array(value, dtype=_F32).view(np.uint32))
            if t.name == "f16":
                return int(np.array(value, dtype=_F16).view(np.uint16))
            if t.name == "bf16":
                return int(np.array(value, dtype=_F32).view(np.uint32)) >> 16
        raise MemoryError_(f"cannot store values of type {t}")
    if isinstance(t, T.IntT):
        return int(value) & ((1 << t.bits) - 1)
    if t == T.BOOL:
        return 1 if value else 0
    return int(value) & 0xFFFF
