"""PE memory: where a PE program's globals live, and whether they fit in 48 KiB.

Model (see docs/frontend.md, "Memory"):

* A PE has 48 KiB of SRAM addressed in 16-bit words (24,576 words); code and data share it.
* Globals are placed in declaration order (per module instance, imports first as they were
  elaborated) at their alignment: 32-bit types and arrays of them on 4-byte boundaries,
  16-bit types on 2-byte boundaries, or the declaration's ``align(N)`` (bytes) when larger.
* Code size is an **estimate** (cslc's real figure needs ``cs_readelf``): a fixed runtime
  base, the memcpy library when imported, and a per-AST-node cost for every fn/task body.
  The constants are in :data:`CODE_MODEL`; change them there only with a measurement.

Overflow is a compile-time :class:`~waferscale.lang.errors.CslLayoutError` naming the PE
program, the PEs that run it, the largest symbols and the byte counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import ast as A
from . import types as T
from .errors import CslLayoutError
from .values import GlobalVar

PE_MEMORY_BYTES = 48 * 1024

CODE_MODEL = {
    "base_bytes": 1024,          # start-up code, task table, stack reserve (assumption)
    "memcpy_bytes": 3072,        # memcpy's command handling on every PE (assumption)
    "bytes_per_node": 6,         # ~3 instructions of 16 bits per AST node of fn/task bodies
}


@dataclass(frozen=True)
class Placement:
    var: GlobalVar
    address: int                 # byte address (always even: memory is 16-bit addressed)
    size: int                    # bytes


@dataclass
class MemoryMap:
    placements: list[Placement] = field(default_factory=list)
    data_bytes: int = 0
    code_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return self.data_bytes + self.code_bytes

    def address_of(self, var: GlobalVar) -> int:
        for p in self.placements:
            if p.var is var:
                return p.address
        raise KeyError(var.name)


def _align_of(t: T.Type) -> int:
    if isinstance(t, T.ArrayT):
        return _align_of(t.elem)
    s = T.size_in_bytes(t) or 2
    return 4 if s >= 4 else 2


def _explicit_align(var: GlobalVar) -> int:
    d = var.decl
    if isinstance(d, A.VarDecl) and isinstance(d.align, A.IntLit):
        return max(2, d.align.value)
    return 2


def estimate_code_bytes(fn_decls: list[A.FnDecl], imports_memcpy: bool,
                        node_counts: list[int] | None = None) -> int:
    """The code size model; ``node_counts`` (one per declaration) spares the AST walks."""
    nodes = sum(node_counts) if node_counts is not None else sum(
        sum(1 for _ in d.body.walk()) for d in fn_decls if d.body is not None)
    return (CODE_MODEL["base_bytes"] + (CODE_MODEL["memcpy_bytes"] if imports_memcpy else 0)
            + CODE_MODEL["bytes_per_node"] * nodes)


def place_globals(variables: list[GlobalVar], code_bytes: int) -> MemoryMap:
    """Assign byte addresses to ``variables`` (data starts at 0; code is accounted, not
    placed)."""
    mm = MemoryMap(code_bytes=code_bytes)
    addr = 0
    seen: set[int] = set()
    for v in variables:
        if id(v) in seen:
            continue
        seen.add(id(v))
        size = T.size_in_bytes(v.type)
        if size is None:
            continue
        align = max(_align_of(v.type), _explicit_align(v))
        addr = (addr + align - 1) // align * align
        mm.placements.append(Placement(v, addr, size))
        addr += size
    mm.data_bytes = addr
    return mm


def check_fits(mm: MemoryMap, program_name: str, pes: list[tuple[int, int]],
               span=None, limit: int = PE_MEMORY_BYTES) -> None:
    if mm.total_bytes <= limit:
        return
    biggest = sorted(mm.placements, key=lambda p: -p.size)[:5]
    listing = ", ".join(f"{p.var.qualname} ({p.size} B)" for p in biggest)
    where = f"PE({pes[0][0]},{pes[0][1]})" + (f" and {len(pes) - 1} other PE(s)"
                                                if len(pes) > 1 else "")
    raise CslLayoutError(
        f"{program_name} on {where} needs {mm.total_bytes} bytes but a PE has {limit}: "
        f"data {mm.data_bytes} B + estimated code {mm.code_bytes} B; largest symbols: "
        f"{listing}", span)
