"""The placement planner: which grid a Llama model gets on a fabric, what every PE holds, which
layers stay resident and which stream, and a cycle model of one decode step.

Protocol::

    plan = plan_model(config, fabric="wse3")            # or "wse2", "64,64", a Fabric
    plan.grid                  # the LayerGrid (W, H, H_head, slots) of geometry.py
    plan.layers[l].region      # layer l's region (x0, y0, w, h) in program coordinates
    plan.head                  # the head region (always resident)
    plan.streamed_layers       # () when every layer is resident
    plan.memory_map(x, y)      # the buffers of PE (x, y), bytes each
    plan.cycles                # CycleModel at the planned context, DEFAULT_TIMING's clock
    model_cycles(plan, position=p, timing=TimingModel(clock_mhz=1100))

:func:`plan_model` raises :class:`PlanError` (a ``ValueError``) with one line naming the limit
and the numbers when the request cannot be met.

**Fabric.** A fabric is the ``--fabric-dims`` cslc gets (WSE-3 762x1172, WSE-2 757x996 on real
hardware; sdk-runtime-hardware.md §3.1). memcpy takes 7 columns and 2 rows of it (offsets
4,1, as every ``commands_wse3.sh`` of ``csl/``), so the program rectangle is at most
``(fabric_W - 7) x (fabric_H - 2)``; the plan uses ``W`` columns and as many rows as its regions
need, from program row 0.

**Layout** (docs/decode-runtime.md, geometry.py): every region is ``W`` columns wide, stacked
from row 0: the resident layer regions (``H`` rows each, layer order), then the streaming
regions, then the head region (``H_head`` rows). A **streaming region** is ``2 H`` rows: two
layer-sized buffers (buffer 0 on its first ``H`` rows, buffer 1 below), each with the tile
shapes of a resident region, so the host fills one by memcpy while the other computes. The
streamed layers are the last ones; with ``n`` streaming regions, streamed layer ``j`` (from 0)
always runs in buffer slot ``s = j mod 2n``: region ``s div 2``, buffer ``s mod 2``. A buffer
therefore holds the KV cache and the norm gains of every layer that runs in it (block
``kv_index`` of its arrays, ``kv_index = j div 2n``) and streams only the four weight tiles.
The head region (final norm, LM head over the tied embedding, argmax) is always resident.

**Memory map** of a PE (:meth:`Plan.memory_map`): every buffer is sized at the longest block
over the region for the PEs of the same role, so one memcpy per kind fills a region; f16
weights, everything else f32 unless said; each buffer rounded up to 4 bytes; plus the PE's
reserve for code, stack and memcpy's state (``PlanOptions.pe_reserve``: by default the front
end's code estimate for the PE's own role, :func:`program_code_bytes`). See
:func:`layer_buffers` and :func:`head_buffers`.

**Choice.** Among the grids that meet every limit (each PE <= ``pe_bytes``, the program
rectangle inside the fabric, ``slots * W`` >= the context, at most ``max_pes`` PEs), the
planner takes the one with the fewest modelled cycles per token at the last position of the
context, then the fewest PEs. Every layer is resident if any grid allows it; only otherwise
are layers streamed (as few as possible). The search is one vectorised pass over all
``(W, H)`` pairs and head heights (NumPy), well under a second for the presets.

**The cycle model** (:func:`model_cycles`) is a model, not a measurement: a sum along the
step's critical path of the costs of ``TimingModel`` (sim/timing.py) and the SIMD widths of
the simulator's DSD ops (sim/builtins_rt.DSD_OPS), with the kernels' helpers of
kernels/floors.py, shaped after how csl/gemv, csl/argmax and the design's phases move data.
The simulator's measured cycles come from the engine; this function is what they are
compared against. Its terms are commented where they are defined (``_*_cycles``).

Limits: Llama-family configs (geometry.py's); one vertical column of regions; every grid of a
plan is the same ``W`` for all regions and the same ``H`` for all layer regions. Nothing here
checks the decode program's own limits (its ``pos`` and sizes are u16).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Union

import numpy as np

from waferscale.kernels.floors import (
    F32_MUL,
    F32_SIMD,
    FMAXS_SIMD,
    MAC_SIMD,
    exp_cycles,
    leg,
    rope_floor,
    swiglu_floor,
)
from waferscale.model.config import ModelConfig
from waferscale.plan.geometry import LayerGrid, block_len
from waferscale.sim.builtins_rt import DSD_OPS
from waferscale.sim.timing import DEFAULT_TIMING, TimingModel

log = logging.getLogger(__name__)

#: SRAM of one PE (48 KiB; sdk-runtime-hardware.md §3.1, the same on WSE-2 and WSE-3).
PE_MEMORY_BYTES = 48 * 1024

#: Bytes every PE of the decode program holds besides its buffers: its scalars, the exported
#: pointers and the one-element stand-ins of the buffers its role does not use (a CSL array
#: is never empty). Measured on compiled programs; simulator_tests/plan/test_planner.py
#: compares the whole memory map with the compiler's for several grids.
FIXED_DATA_BYTES = 144


@functools.lru_cache(maxsize=1)
def _pe_source() -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``csl/llama_decode/pe.csl``'s functions and global consts (parsed once)."""
    from waferscale.lang import ast as A
    from waferscale.lang.cli import find_csl_root
    from waferscale.lang.parser import parse_file

    module = parse_file(find_csl_root() / "llama_decode" / "pe.csl")
    fns = tuple(d for d in module.decls if isinstance(d, A.FnDecl))
    consts = {d.name: d for d in module.decls if isinstance(d, A.VarDecl) and d.kind == "const"}
    return fns, consts


def program_code_bytes(roles: Mapping[str, int | bool] | None = None, arch: str = "wse3"
                       ) -> int:
    """The code size the front end estimates for a PE of ``csl/llama_decode/pe.csl`` whose
    layout params are ``roles`` (``LayerGrid.pe_roles``): its ``CODE_MODEL`` (a base for
    start-up code, task table and stack, memcpy's runtime, and bytes per AST node of the
    functions), counting of each comptime-decided ``if`` only the branch the PE takes, as
    the front end does (lang/memory.live_node_count). ``roles=None``: every function whole
    (an upper bound for any PE). The compiler checks ``data + code <= 48 KiB`` per PE with
    the same estimate, so a plan the planner accepts compiles."""
    from waferscale.lang.memory import comptime_value, estimate_code_bytes, live_node_count

    fns, consts = _pe_source()
    if roles is None:
        return estimate_code_bytes(list(fns), True)
    known: dict[str, Any] = {}

    def lookup(name: str) -> Any:
        if name.startswith("@is_arch("):
            return name == f"@is_arch({arch})"
        if name.startswith("p."):
            return roles.get(name[2:])
        if name not in known:
            known[name] = None               # a const defined through itself stays unknown
            d = consts.get(name)
            known[name] = comptime_value(d.init, lookup) if d is not None and d.init else None
        return known[name]

    return estimate_code_bytes(list(fns), True, [live_node_count(f, lookup) for f in fns])


@functools.lru_cache(maxsize=64)
def role_reserve_bytes(kind: str, arch: str) -> int:
    """The reserve (code estimate + :data:`FIXED_DATA_BYTES`) of the fullest PE of a region
    kind, whatever the grid: ``"layer"`` (a resident layer's attention home PE), ``"slot"``
    (a streaming slot's) or ``"head"`` (the head region's home PE). The largest over the
    roles such a PE can have (first region or not, a lone row or column or not, ...)."""
    variants = []
    for first, last, multi, to_head in itertools.product((False, True), repeat=4):
        if (kind == "head" and (first or to_head)) or (kind == "layer" and to_head):
            continue
        variants.append({
            "W": 2 if multi else 1, "H_kv": 2, "n_inst": 2 if kind == "slot" else 1,
            "head": kind == "head", "first": first, "streamed": kind == "slot",
            "to_head": to_head, "attn": kind != "head", "top": True,
            "attn_last": last and kind != "head", "last": last, "home_col": True,
            "row_lo": multi, "row_hi": multi})
    return max(program_code_bytes(v, arch) for v in variants) + FIXED_DATA_BYTES


#: Columns and rows memcpy takes from the fabric (3 + 1 halo west, 2 + 1 halo east; 1 halo
#: row north and south: sdk-runtime-hardware.md §1.9), and the program's offsets in it.
MEMCPY_MARGIN = (7, 2)
PROGRAM_OFFSETS = (4, 1)

#: A CS system's total I/O, 1.2 Tb/s (12 x 100 GbE; sdk-runtime-hardware.md §3.1): the ceiling
#: on any number of memcpy channels.
SYSTEM_IO_GBPS = 1200.0

#: memcpy channels the model assumes (``--channels``, at most 16 per SdkRuntime: §1.9).
DEFAULT_CHANNELS = 16

#: Clocks the reports convert at (sdk-runtime-hardware.md §3.2).
CLOCKS_MHZ = (850.0, 1100.0)

_DTYPE_BYTES = {"f16": 2, "u16": 2, "f32": 4, "u32": 4}

# ---------------------------------------------------------------------------------------------
# Errors, fabric, options
# ---------------------------------------------------------------------------------------------


class PlanError(ValueError):
    """The request cannot be planned; the message is one line naming the limit and numbers."""


@dataclass(frozen=True)
class Fabric:
    """The ``--fabric-dims`` of a compile: ``width x height`` PEs, of ``arch`` if known."""

    name: str
    width: int
    height: int
    arch: str | None = None

    @property
    def program_width(self) -> int:
        """Widest program rectangle memcpy leaves (fabric width - 7)."""
        return self.width - MEMCPY_MARGIN[0]

    @property
    def program_height(self) -> int:
        """Tallest program rectangle memcpy leaves (fabric height - 2)."""
        return self.height - MEMCPY_MARGIN[1]

    @property
    def program_pes(self) -> int:
        return self.program_width * self.program_height

    @classmethod
    def parse(cls, text: str | Fabric) -> Fabric:
        """``"wse3"``, ``"wse2"`` or ``"W,H"`` (fabric dims, memcpy's margin included)."""
        if isinstance(text, Fabric):
            fab = text
        elif text.strip().lower() in FABRICS:
            return FABRICS[text.strip().lower()]
        else:
            parts = text.replace("x", ",").split(",")
            try:
                w, h = (int(p) for p in parts)
            except ValueError:
                raise PlanError(f"fabric {text!r}: expected wse3, wse2 or W,H") from None
            fab = cls(f"{w},{h}", w, h)
        if fab.program_width < 1 or fab.program_height < 1:
            raise PlanError(f"fabric {fab.width}x{fab.height} leaves no program rectangle: "
                            f"memcpy takes {MEMCPY_MARGIN[0]} columns and {MEMCPY_MARGIN[1]} rows,"
                            f" so it needs at least {MEMCPY_MARGIN[0] + 1}x{MEMCPY_MARGIN[1] + 1}")
        return fab


#: The presets: the fabric dims cslc gets on real hardware (sdk-runtime-hardware.md §3.1).
FABRICS: dict[str, Fabric] = {
    "wse3": Fabric("wse3", 762, 1172, "wse3"),
    "wse2": Fabric("wse2", 757, 996, "wse2"),
}


@dataclass(frozen=True)
class PlanOptions:
    """Knobs of the planner.

    Attributes:
        pe_bytes: SRAM per PE.
        reserve_bytes: per PE, for code, stack, memcpy and the program's scalars; None (the
            default): each PE's own, its role's code estimate (:func:`program_code_bytes`)
            plus :data:`FIXED_DATA_BYTES`.
        max_pes: at most this many PEs in the program rectangle (None: no cap). Our simulator's
            speed scales with the PE count.
        channels: memcpy channels (``--channels``) the streaming and host I/O model assumes.
        packed_f16: streamed f16 weights travel two to a 32-bit wavelet (the program must export
            its tile buffers as u32 views); False: one per wavelet, memcpy's 16-bit mode.
        allow_streaming: False makes a fabric that cannot hold every layer an error.
        timing: the cost table; its clock converts memcpy's microseconds and Gb/s to cycles.
    """

    pe_bytes: int = PE_MEMORY_BYTES
    reserve_bytes: int | None = None
    max_pes: int | None = None
    channels: int = DEFAULT_CHANNELS
    packed_f16: bool = False
    allow_streaming: bool = True
    timing: TimingModel = DEFAULT_TIMING

    def reserve(self, kind: str, arch: str) -> int:
        """The reserve of the fullest PE of a region kind (:func:`role_reserve_bytes`)."""
        return self.reserve_bytes if self.reserve_bytes is not None else role_reserve_bytes(
            kind, arch)

    def pe_reserve(self, grid: LayerGrid, arch: str, x: int, y: int) -> int:
        """The reserve of PE ``(x, y)`` of ``grid``'s program."""
        if self.reserve_bytes is not None:
            return self.reserve_bytes
        return _pe_reserve(grid, arch, x, y)

    def data_bytes(self, kind: str, arch: str) -> int:
        """Bytes for the buffers of the fullest PE of a region kind."""
        return self.pe_bytes - self.reserve(kind, arch)


#: pe_roles fields that no condition of pe.csl's functions reads (the block sizes only bound
#: loops and offsets), left out of the reserve's cache key.
_SIZE_FIELDS = frozenset({"dblk", "fblk", "vblk", "vstart"})


def _pe_reserve(grid: LayerGrid, arch: str, x: int, y: int) -> int:
    roles = tuple(sorted((k, v) for k, v in grid.pe_roles(x, y).items()
                         if k not in _SIZE_FIELDS))
    return _reserve_of_roles(roles, arch)


@functools.lru_cache(maxsize=4096)
def _reserve_of_roles(roles: tuple[tuple[str, int | bool], ...], arch: str) -> int:
    return program_code_bytes(dict(roles), arch) + FIXED_DATA_BYTES


# ---------------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rect:
    """``w x h`` PEs at ``(x0, y0)`` in program coordinates (x = column, y = row)."""

    x0: int
    y0: int
    w: int
    h: int

    def contains(self, x: int, y: int) -> bool:
        return self.x0 <= x < self.x0 + self.w and self.y0 <= y < self.y0 + self.h

    def overlaps(self, other: Rect) -> bool:
        return (self.x0 < other.x0 + other.w and other.x0 < self.x0 + self.w
                and self.y0 < other.y0 + other.h and other.y0 < self.y0 + self.h)

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Buffer:
    """One array of a PE's memory map."""

    name: str
    dtype: str
    elements: int

    @property
    def bytes(self) -> int:
        """Its size, rounded up to 4 bytes (32-bit aligned operands run at full SIMD width)."""
        return -(-self.elements * _DTYPE_BYTES[self.dtype] // 4) * 4


@dataclass(frozen=True)
class MemoryMap:
    """The buffers of one PE role and the reserve."""

    role: str
    buffers: tuple[Buffer, ...]
    reserve: int

    @property
    def data_bytes(self) -> int:
        return sum(b.bytes for b in self.buffers)

    @property
    def total_bytes(self) -> int:
        return self.data_bytes + self.reserve

    def as_dict(self) -> dict[str, Any]:
        return {"role": self.role, "total": self.total_bytes, "reserve": self.reserve,
                "buffers": [{"name": b.name, "dtype": b.dtype, "elements": b.elements,
                             "bytes": b.bytes} for b in self.buffers]}


@dataclass(frozen=True)
class LayerPlacement:
    """Where layer ``layer`` runs.

    Attributes:
        region: its W x H region (a resident region, or a buffer of a streaming region).
        resident: its weights stay on the wafer; else they are copied in every step.
        stream_region, buffer: for a streamed layer, which streaming region and which of its
            two buffers (0: first H rows, 1: the next H rows); None when resident.
        kv_index: the block of the region's KV cache and norm gains that is this layer's
            (0 in a resident region; its rank among the buffer's layers when streamed).
    """

    layer: int
    region: Rect
    resident: bool
    stream_region: int | None = None
    buffer: int | None = None
    kv_index: int = 0


@dataclass(frozen=True)
class StreamRegion:
    """Two layer-sized buffers; ``layers[b]`` run in buffer ``b`` (rows ``rect.y0 + b*H``)."""

    index: int
    rect: Rect
    buffers: tuple[Rect, Rect]
    layers: tuple[tuple[int, ...], tuple[int, ...]]


@dataclass(frozen=True)
class CycleModel:
    """Modelled cycles of one decode step (a model: see :func:`model_cycles`).

    Attributes:
        position: the token position modelled (attention reads ``position + 1`` keys).
        clock_mhz: the clock of the memcpy terms (streaming, host I/O).
        components: cycles per term of the step, summed over layers (finer than phases).
        phases: the components grouped by phase (PHASE_OF); ``streaming`` is the host's
            copy time for the streamed layers, ``host_io`` the step's three commands.
        compute: cycles from the launch to the token id, on the wafer, without streaming.
        stream: cycles of the streamed layers' memcpy commands per step.
        overlap: cycles in which both run (double buffering); ``compute + stream - overlap``
            is the launch-to-token time.
        total: ``compute + stream - overlap + host_io``.
    """

    position: int
    clock_mhz: float
    components: dict[str, int]
    phases: dict[str, int]
    compute: int
    stream: int
    overlap: int
    host_io: int
    total: int

    @property
    def tokens_per_second(self) -> float:
        return self.clock_mhz * 1e6 / self.total

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["tokens_per_second"] = self.tokens_per_second
        return d


@dataclass(frozen=True)
class Plan:
    """A placement of one model on one fabric (see the module docstring).

    Attributes:
        grid: the regions' shape and the KV slots per attention PE (geometry.py).
        arch: "wse3" or "wse2".
        fabric: the fabric planned for.
        context: the positions the plan was chosen for (<= ``kv_capacity``).
        options: the options it was planned with.
        rect: the program rectangle it uses (from program (0, 0), ``W`` wide).
        layers: one placement per layer, in layer order.
        head: the head region (final norm, LM head, argmax), resident.
        stream_regions: the streaming regions, () when every layer is resident.
        cycles: the cycle model at position ``context - 1`` at ``options.timing``'s clock.
    """

    grid: LayerGrid
    arch: str
    fabric: Fabric
    context: int
    options: PlanOptions
    rect: Rect
    layers: tuple[LayerPlacement, ...]
    head: Rect
    stream_regions: tuple[StreamRegion, ...]
    cycles: CycleModel = field(compare=False)

    # ---- summary ----
    @property
    def config(self) -> ModelConfig:
        return self.grid.config

    @property
    def resident_layers(self) -> tuple[int, ...]:
        return tuple(p.layer for p in self.layers if p.resident)

    @property
    def streamed_layers(self) -> tuple[int, ...]:
        return tuple(p.layer for p in self.layers if not p.resident)

    @property
    def kv_capacity(self) -> int:
        return self.grid.kv_capacity

    @property
    def pes_used(self) -> int:
        return self.rect.w * self.rect.h

    @property
    def pes_available(self) -> int:
        return self.fabric.program_pes

    @property
    def tiles(self) -> dict[str, tuple[int, int]]:
        """The largest tile (m outputs x n inputs) of each weight matrix, which sizes its
        buffer: PE (0, 0)'s, as block 0 is the longest (geometry.LayerGrid)."""
        g = self.grid
        return {"qkv": g.qkv_tile(0, 0), "o": g.o_tile(0, 0), "gate_up": g.gate_up_tile(0, 0),
                "down": g.down_tile(0, 0), "head": g.head_tile(0, 0)}

    def tile_shapes(self, x: int, y: int) -> dict[str, tuple[int, int]]:
        """The weight tiles (m outputs x n inputs, geometry.LayerGrid) PE ``(x, y)`` of the
        program rectangle holds; a streaming buffer's PEs hold these shapes for each layer
        copied in. Empty for a PE of no region."""
        g = self.grid
        for kind, r, _k in self.regions():
            if r.contains(x, y):
                c, row = x - r.x0, y - r.y0
                if kind == "head":
                    return {"head": g.head_tile(c, row)}
                out = {"gate_up": g.gate_up_tile(c, row), "down": g.down_tile(c, row)}
                if row < self.config.n_kv_heads:
                    out |= {"qkv": g.qkv_tile(c, row), "o": g.o_tile(c, row)}
                return out
        return {}

    # ---- memory ----
    def regions(self) -> list[tuple[str, Rect, int]]:
        """Every region as (kind, rect, KV layers held): "layer" regions (resident ones and
        each streaming buffer, whose KV layers are the layers that run in it) and "head"."""
        out: list[tuple[str, Rect, int]] = []
        for p in self.layers:
            if p.resident:
                out.append(("layer", p.region, 1))
        for s in self.stream_regions:
            for b in (0, 1):
                out.append(("layer", s.buffers[b], len(s.layers[b])))
        out.append(("head", self.head, 0))
        return out

    def memory_map(self, x: int, y: int) -> MemoryMap:
        """The memory map of PE ``(x, y)`` (program coordinates) of the plan's rectangle."""
        for kind, r, k in self.regions():
            if r.contains(x, y):
                cx, cy = x - r.x0, y - r.y0
                reserve = self.options.pe_reserve(self.grid, self.arch, x, y)
                if kind == "head":
                    return head_buffers(self.grid, reserve,
                                        home_row=cy == 0, home_col=cx == self.grid.root_x)
                return layer_buffers(self.grid, reserve, kv_layers=k,
                                     attention=cy < self.config.n_kv_heads, home_row=cy == 0,
                                     home_col=cx == self.grid.root_x,
                                     streamed=self.grid.streamed(self.grid.region_layers(
                                         y // self.grid.H)[0]))
        raise ValueError(f"PE ({x}, {y}) is outside the plan's {self.rect.w}x{self.rect.h} "
                         "rectangle")

    def uniform_blocks(self) -> list[tuple[Rect, tuple[int, int]]]:
        """The program rectangle as blocks of PEs with equal memory maps, each with its first
        PE: per region, the classes of rows (home row, attention rows, the last attention
        row, FFN rows, the last row) and columns (the first, those before root_x, root_x,
        those after, the last) that layout.csl gives the same roles; buffers are padded to
        the region's longest block, and block sizes do not change a PE's code."""
        rx, n_kv, W = self.grid.root_x, self.config.n_kv_heads, self.grid.W
        cols = sorted({c for c in (0, 1, rx, rx + 1, W - 1, W) if 0 <= c <= W})
        out = []
        for kind, r, _k in self.regions():
            cuts = (0, 1, n_kv - 1, n_kv, r.h - 1, r.h) if kind == "layer" else (0, 1, r.h - 1,
                                                                              r.h)
            rows = sorted({c for c in cuts if 0 <= c <= r.h})
            for y0, y1 in zip(rows, rows[1:]):
                for x0, x1 in zip(cols, cols[1:]):
                    out.append((Rect(r.x0 + x0, r.y0 + y0, x1 - x0, y1 - y0),
                                (r.x0 + x0, r.y0 + y0)))
        return out

    def memory_roles(self) -> list[tuple[MemoryMap, int, tuple[int, int]]]:
        """Every distinct PE memory map as (map, number of PEs, its first PE): the home PE,
        home row, home column and the rest, of the attention rows, the FFN rows and the head,
        per kind of region (resident, or streaming buffer with its number of KV layers),
        apart where their code differs."""
        found: dict[tuple[str, int], list[Any]] = {}
        for rect, (x, y) in self.uniform_blocks():
            m = self.memory_map(x, y)
            key = (m.role, m.total_bytes)
            if key in found:
                found[key][1] += rect.w * rect.h
            else:
                found[key] = [m, rect.w * rect.h, (x, y)]
        return [(m, n, pe) for m, n, pe in found.values()]

    def memory_grid(self) -> np.ndarray:
        """Bytes of every PE of the rectangle, as an array ``[row, column]``."""
        grid = np.zeros((self.rect.h, self.rect.w), dtype=np.int64)
        for rect, (x, y) in self.uniform_blocks():
            grid[rect.y0:rect.y0 + rect.h, rect.x0:rect.x0 + rect.w] = \
                self.memory_map(x, y).total_bytes
        return grid

    def memory_stats(self) -> dict[str, Any]:
        """min / median / max bytes over the used PEs, and the fullest PE's map."""
        roles = self.memory_roles()
        sizes = sorted((m.total_bytes, n) for m, n, _ in roles)
        total = sum(n for _, n in sizes)

        def nth(i: int) -> int:
            for b, n in sizes:
                if i < n:
                    return b
                i -= n
            raise AssertionError("unreachable")

        median = (nth((total - 1) // 2) + nth(total // 2)) / 2
        full, _, pe = max(roles, key=lambda t: (t[0].total_bytes, -t[2][1], -t[2][0]))
        return {"min": sizes[0][0], "median": median, "max": sizes[-1][0],
                "fullest_pe": pe, "fullest": full}

    # ---- export ----
    def as_dict(self) -> dict[str, Any]:
        """Everything ``waferscale plan --json`` prints."""
        c = self.config
        stats = self.memory_stats()
        return {
            "model": dataclasses.asdict(c),
            "arch": self.arch,
            "fabric": {"name": self.fabric.name, "dims": [self.fabric.width, self.fabric.height],
                       "program_max": [self.fabric.program_width, self.fabric.program_height],
                       "offsets": list(PROGRAM_OFFSETS)},
            "grid": {"W": self.grid.W, "H": self.grid.H, "H_head": self.grid.H_head,
                     "slots": self.grid.slots, "root_x": self.grid.root_x},
            "rect": self.rect.as_dict(),
            "pes_used": self.pes_used,
            "pes_available": self.pes_available,
            "layers": [{"layer": p.layer, "region": p.region.as_dict(), "resident": p.resident,
                        "stream_region": p.stream_region, "buffer": p.buffer,
                        "kv_index": p.kv_index} for p in self.layers],
            "head": self.head.as_dict(),
            "stream_regions": [{"index": s.index, "rect": s.rect.as_dict(),
                                "buffers": [b.as_dict() for b in s.buffers],
                                "layers": [list(ls) for ls in s.layers]}
                               for s in self.stream_regions],
            "tiles": {k: list(v) for k, v in self.tiles.items()},
            "memory": {"pe_bytes": self.options.pe_bytes,
                       "reserve": stats["fullest"].reserve,
                       "min": stats["min"], "median": stats["median"], "max": stats["max"],
                       "fullest_pe": list(stats["fullest_pe"]),
                       "fullest": stats["fullest"].as_dict(),
                       "roles": [{"role": m.role, "pes": n, "bytes": m.total_bytes,
                                  "example_pe": list(pe)}
                                 for m, n, pe in self.memory_roles()]},
            "kv_capacity": self.kv_capacity,
            "context": self.context,
            "options": {"pe_bytes": self.options.pe_bytes,
                        "reserve_bytes": self.options.reserve_bytes,
                        "max_pes": self.options.max_pes, "channels": self.options.channels,
                        "packed_f16": self.options.packed_f16},
            "resident_layers": list(self.resident_layers),
            "streamed_layers": list(self.streamed_layers),
            "cycles": self.cycles.as_dict(),
            "tokens_per_second": {
                f"{mhz:g}": model_cycles(self, timing=dataclasses.replace(
                    self.options.timing, clock_mhz=mhz)).tokens_per_second
                for mhz in CLOCKS_MHZ},
        }


# ---------------------------------------------------------------------------------------------
# Memory maps
# ---------------------------------------------------------------------------------------------

# The functions below take ints or NumPy arrays (the search evaluates every candidate at once).
Num = Union[int, np.ndarray]


def _cdiv(a: Num, b: Num) -> Num:
    return -(-a // b)


def _layer_buffer_sizes(cfg: ModelConfig, dmax: Num, fmax: Num, slots: Num, kv_layers: Num,
                        attention: bool, home_row: bool, home_col: bool, streamed: bool = False
                        ) -> list[tuple[str, str, Num]]:
    """(name, dtype, elements) of a layer-region PE; see :func:`layer_buffers`."""
    G, d = cfg.group_size, cfg.head_dim
    qkv_m = (G + 2) * d
    out: list[tuple[str, str, Num]] = [
        ("w_gate_up", "f16", 2 * fmax * dmax),
        ("w_down", "f16", dmax * fmax),
        ("xin", "f16", dmax),
    ]
    if attention:
        out += [
            ("y", "f32", np.maximum(np.maximum(qkv_m, 2 * fmax), dmax)),
            ("xt", "f16", np.maximum(G * d, fmax)),
            ("w_qkv", "f16", qkv_m * dmax),
            ("w_o", "f16", dmax * G * d),
            ("qkv", "f32", qkv_m),
            ("k_cache", "f32", kv_layers * d * slots),
            ("v_cache", "f32", kv_layers * slots * d),
            ("scores", "f32", G * slots),
            ("acc", "f32", G * (d + 1)),
            ("mx", "f32", G),
        ]
        if home_col:
            out += [("cos", "f32", d // 2), ("sin", "f32", d // 2), ("inv_freq", "f32", d // 2),
                    ("rope_scratch", "f32", d // 2)]
    else:
        out += [("y", "f32", np.maximum(2 * fmax, dmax)), ("xt", "f16", fmax)]
    if home_row:
        out += [("x", "f32", dmax), ("gains", "f32", 2 * kv_layers * dmax)]
        if home_col:
            out += [("timestamps", "u16", TIMESTAMP_WORDS * kv_layers)]
    if streamed:
        out += [("weights_at", "u16", 2 * kv_layers)]
    return out


#: The stage-entry timestamps the home PE of a region keeps per layer it runs for the
#: per-phase report (two 16-bit words for each of pe.csl's stages ST_X .. ST_END).
TIMESTAMP_WORDS = 2 * 31

#: Bytes a layer region's fullest PE (the attention home PE) needs per layer whose KV it
#: holds, besides the KV itself and its gains: its timestamps and, in a streaming slot, the
#: time it had the layer's weights.
PER_LAYER_EXTRA = {False: 2 * TIMESTAMP_WORDS, True: 2 * TIMESTAMP_WORDS + 4}

#: The decode program's KV limits: a key is appended with an i8 stride of S, and a layer's
#: KV block is offset by ``k d S`` words in i16 DSD offsets (pe.csl's asserts).
MAX_SLOTS = 127
MAX_KV_WORDS = 32767


def _head_buffer_sizes(dmax: Num, vmax: Num, home_row: bool, home_col: bool
                       ) -> list[tuple[str, str, Num]]:
    out: list[tuple[str, str, Num]] = [
        ("w_head", "f16", vmax * dmax), ("xin", "f16", dmax), ("y", "f32", np.maximum(vmax, dmax))]
    if home_row:
        out += [("x", "f32", dmax), ("gain", "f32", dmax)]
        if home_col:
            out += [("timestamps", "u16", TIMESTAMP_WORDS)]
    return out


def _bytes(sizes: Iterable[tuple[str, str, Num]]) -> Num:
    total: Num = 0
    for _name, dtype, n in sizes:
        total = total + _cdiv(n * _DTYPE_BYTES[dtype], 4) * 4
    return total


def _role(kind: str, attention: bool, home_row: bool, home_col: bool, kv_layers: int) -> str:
    parts = [kind]
    if kind == "layer" and kv_layers != 1:
        parts.append(f"streaming buffer, KV of {kv_layers} layers")
    if home_row and home_col:
        parts.append("home PE (root_x, 0)")
    elif home_row:
        parts.append("home row")
    elif home_col:
        parts.append("home column")
    if kind == "layer":
        parts.append("attention row" if attention else "FFN row")
    return ", ".join(parts)


def layer_buffers(grid: LayerGrid, reserve: int, *, kv_layers: int = 1, attention: bool,
                  home_row: bool, home_col: bool, streamed: bool = False) -> MemoryMap:
    """The memory map of a layer-region PE of ``grid`` (with ``dmax``, ``fmax`` the longest
    hidden and FFN blocks, ``G``, ``d`` the group size and head width, ``S`` the slots and
    ``k`` = ``kv_layers`` the layers whose KV and gains the region holds: 1 when resident).

    Every PE: ``w_gate_up`` f16 [2 fmax dmax], ``w_down`` f16 [dmax fmax], ``xin`` f16 [dmax]
    (the GEMV input tile), ``y`` f32 [max m of the GEMVs its row runs: max((G+2)d, 2 fmax,
    dmax) on attention rows, max(2 fmax, dmax) on the others], ``xt`` f16 [max(G d, fmax) on
    attention rows, fmax on the others] (the transposed GEMVs' input). Attention rows (``r <
    n_kv``) also: ``w_qkv`` f16 [(G+2)d dmax], ``w_o`` f16 [dmax G d], ``qkv`` f32 [(G+2)d],
    ``k_cache`` f32 [k d S], ``v_cache`` f32 [k S d], ``scores`` f32 [G S], ``acc`` f32
    [G(d+1)], ``mx`` f32 [G]; on the home column also ``cos``, ``sin``, ``inv_freq`` f32
    [d/2] each. The home row: ``x`` f32 [dmax] and the two norm gains of each of the k layers,
    ``gains`` f32 [2 k dmax]; its home PE the stage timestamps, u16 [62 k]. A streaming
    slot's PE (``streamed``): ``weights_at`` u16 [2 k]."""
    c = grid.config
    dmax = block_len(c.hidden_size, grid.W, 0)
    fmax = block_len(c.ffn_size, grid.H, 0)
    sizes = _layer_buffer_sizes(c, dmax, fmax, grid.slots, kv_layers, attention, home_row,
                                home_col, streamed)
    return MemoryMap(_role("layer", attention, home_row, home_col, kv_layers),
                     tuple(Buffer(n, t, int(e)) for n, t, e in sizes), reserve)


def head_buffers(grid: LayerGrid, reserve: int, *, home_row: bool, home_col: bool
                 ) -> MemoryMap:
    """The memory map of a head-region PE: ``w_head`` f16 [vmax dmax] (the tied embedding's
    rows of its vocabulary block against its hidden block), ``xin`` f16 [dmax], ``y`` f32
    [vmax]; the home row also ``x`` f32 [dmax] and the final norm's ``gain`` f32 [dmax]; the
    home column also ``argmax`` f32 [2] (value, index)."""
    c = grid.config
    dmax = block_len(c.hidden_size, grid.W, 0)
    vmax = block_len(c.vocab_size, grid.H_head, 0)
    sizes = _head_buffer_sizes(dmax, vmax, home_row, home_col)
    return MemoryMap(_role("head", False, home_row, home_col, 0),
                     tuple(Buffer(n, t, int(e)) for n, t, e in sizes), reserve)


# ---------------------------------------------------------------------------------------------
# The cycle model
# ---------------------------------------------------------------------------------------------

#: Which phase each component of the step is reported under.
PHASE_OF: dict[str, str] = {
    "norm": "collectives", "qkv_in": "collectives", "qkv_reduce": "collectives",
    "o_in": "collectives", "o_reduce": "collectives", "ffn_in": "collectives",
    "gate_up_reduce": "collectives", "down_in": "collectives", "down_reduce": "collectives",
    "link": "collectives",
    "qkv_sweep": "gemv", "o_sweep": "gemv", "gate_up_sweep": "gemv", "down_sweep": "gemv",
    "rope": "attention", "attention": "attention",
    "residual": "elementwise", "swiglu": "elementwise",
    "head_norm": "lm_head", "head_in": "lm_head", "head_sweep": "lm_head",
    "head_reduce": "lm_head", "argmax": "lm_head",
    "streaming": "streaming", "host_io": "host_io",
}
#: Phases in report order.
PHASES = ("attention", "gemv", "collectives", "elementwise", "streaming", "lm_head", "host_io")

_T = DEFAULT_TIMING
_ARCH_INDEX = {"wse2": 0, "wse3": 1}

# Per column of a GEMV's column sweep, beyond the MAC's elements: the loop's branch, the DSD
# op's issue and the loop body's scalar statements (the x element, the DSD offset increment,
# the dtype test): csl/gemv/gemv.csl's sweep costs 9 cycles a column at m = 8 (2 of them
# @fmachs elements) in this simulator, so 7 = branch + dsd_op_setup + 5 statements.
_SWEEP_COLUMN = _T.branch + _T.dsd_op_setup + 5 * _T.statement
# A DSD op with a fabric operand: its issue plus loading its fabric DSDs (TimingModel).
_FAB = _T.dsd_op_setup + _T.fabric_op_start
# One hop of a chain whose every PE adds its partial to the stream and forwards it
# (csl/gemv's @fadds(fabout, y, fabin)): ramp into the CE, ramp out, one router: leg(1).
# csl/gemv in this simulator: 12 cycles a hop (P_c 16 -> 32 at m = 8).
_CHAIN_HOP = leg(1)
# One hop of the argmax pair chain (csl/argmax): the pair's receive op, its 2 wavelets, the
# merge task (start + compare value, compare index, select, store) and the send op. The
# argmax kernel's column sweep in this simulator shows ~55 cycles per merging hop.
_PAIR_HOP = 2 * _FAB + _CHAIN_HOP + 1 + _T.task_start + 4 * _T.statement


def _simd(op: str, arch: str) -> int:
    """Elements per cycle of DSD op ``op`` in the simulator (sim/builtins_rt.DSD_OPS)."""
    return DSD_OPS[op].simd[_ARCH_INDEX[arch]]


_LEG_TABLE = np.array([leg(h) for h in range(4096)], dtype=np.int64)


def _leg(hops: Num) -> Num:
    """floors.leg (TimingModel.transfer_cycles) of an int or of every element of an array."""
    if isinstance(hops, np.ndarray):
        return _LEG_TABLE[hops]
    return leg(int(hops))


def _mcast(hops: Num, words: Num) -> Num:
    """A multicast (or one-to-one send) whose farthest receiver is ``hops`` routers away:
    the fabric op's start, one leg, then the words one a cycle behind the first (link
    bandwidth 1 wavelet/cycle). csl/gemv's x broadcast: P_r 2 -> 8 adds 2 cycles a row."""
    return (hops > 0) * (_FAB + _leg(hops) + words)


def _chain1(hops: Num, m: Num, arch: str) -> Num:
    """A chain reduction of ``m`` f32 words over ``hops`` hops towards an end (the O and down
    GEMVs up the columns): the op start at the far end, one CE-to-CE leg a hop, the words one
    a cycle, and the root's own @fadds of them at its SIMD width (csl/gemv in this simulator:
    1.25 m cycles per side at m = 64 .. 256 on WSE-3)."""
    return (hops > 0) * (_FAB + hops * _CHAIN_HOP + m + _cdiv(m, _simd("fadds", arch)))


def _chain2(W: Num, m: Num, arch: str) -> Num:
    """A chain reduction along a row of ``W`` PEs to ``root_x = (W - 1) // 2`` from both
    sides (docs/decode-runtime.md): the longer (hi) side as :func:`_chain1`; the root adds
    the lo side's stream first and the other afterwards (one fabin per op on WSE-3), so the
    second side costs its task, its op start and its words again (csl/gemv)."""
    lo = (W - 1) // 2
    hi = W - 1 - lo
    second = (lo > 0) * (_T.task_start + _FAB + m + _cdiv(m, _simd("fadds", arch)))
    return _chain1(hi, m, arch) + second


def _sweep(m: Num, n: Num, arch: str) -> Num:
    """A column sweep y = W x over an m x n column-major f16 tile (csl/gemv): the task start,
    zeroing y (@fmovs), then per column one @fmachs of m elements at MAC_SIMD["f16"] plus
    the loop's overhead (_SWEEP_COLUMN)."""
    return (_T.task_start + _T.dsd_op_setup + _cdiv(m, _simd("fmovs", arch))
            + n * (_SWEEP_COLUMN + _cdiv(m, MAC_SIMD[("f16", arch)])))


def _norm_cycles(W: Num, dmax: Num, arch: str) -> Num:
    """RMSNorm of the row-form x (phase 1 of the design): the sum of squares of the PE's block
    (f32 MACs, MAC_SIMD["f32"]), the one-word chain reduction to root_x, the scale there (one
    <math> invsqrt call and two statements), its multicast back along the row, then
    ``xn = f16((x * r) * g)``: two f32 products an element (F32_MUL) and @fs2h."""
    return (_T.dsd_op_setup + _cdiv(dmax, MAC_SIMD[("f32", arch)]) + _chain2(W, 1, arch)
            + _T.branch + _T.math_cost("invsqrt") + 2 * _T.statement
            + _mcast(W - 1 - (W - 1) // 2, 1)
            + 2 * (_T.dsd_op_setup + _cdiv(dmax, F32_MUL))
            + _T.dsd_op_setup + _cdiv(dmax, _simd("fs2h", arch)))


def _layer_components(cfg: ModelConfig, arch: str, W: Num, H: Num, n_s: Num
                      ) -> dict[str, Num]:
    """Cycles of one layer's phases along the critical path (docs/decode-runtime.md's table),
    for ``n_s`` KV slots in use on the busiest PE. Everything but the link to the next region.
    """
    D, F, G, d, n_kv = cfg.hidden_size, cfg.ffn_size, cfg.group_size, cfg.head_dim, cfg.n_kv_heads
    dmax = _cdiv(D, W)
    fmax = _cdiv(F, H)
    far = W - 1 - (W - 1) // 2                 # root_x to the farther end of a row
    qkv_m = (G + 2) * d
    mac32 = MAC_SIMD[("f32", arch)]
    fadds = F32_SIMD[arch]

    c: dict[str, Num] = {}
    c["norm"] = 2 * _norm_cycles(W, dmax, arch)
    # 2. QKV: xn's block down each column to the attention rows, the sweep, the row reduction.
    c["qkv_in"] = _mcast(n_kv - 1, dmax)
    c["qkv_sweep"] = _sweep(qkv_m, dmax, arch)
    c["qkv_reduce"] = _chain2(W, qkv_m, arch)
    # 3. RoPE on (root_x, g): cos and sin of d/2 angles (two <math> calls and the angle's
    # product each) while step 2 runs, so only what step 2 does not hide counts; then the
    # rotation of the G query heads and the key head (floors.rope_floor on one PE).
    trig = (d // 2) * (2 * _T.branch + _T.math_cost("sin") + _T.math_cost("cos") + _T.statement)
    hidden = c["qkv_in"] + c["qkv_sweep"] + c["qkv_reduce"]
    c["rope"] = np.maximum(trig - hidden, 0) + rope_floor(G + 1, d, 1, arch)
    # 4. Attention on row g: q, k, v multicast from root_x; k, v appended (@fmovs); scores:
    # per query head and element j an @fmacs over the PE's used slots of K^T (f32, MAC_SIMD)
    # and the 1/sqrt(d) scale; local max (@fmaxs), its reduction and multicast back; one exp
    # per score (floors.exp_cycles, and the subtraction); l (@fadds) and o: per head and slot
    # an @fmacs of a V row; the (G, G d) partials reduced to root_x; there 1/l (<math> inv)
    # per head, the products and the f16 conversion.
    att = (_mcast(far, qkv_m)
           + 2 * (_T.dsd_op_setup + _cdiv(d, _simd("fmovs", arch)))
           + G * d * (_T.branch + _T.dsd_op_setup + _cdiv(n_s, mac32))
           + G * (_T.dsd_op_setup + _cdiv(n_s, F32_MUL))
           + G * (_T.dsd_op_setup + _cdiv(n_s, FMAXS_SIMD[arch]))
           + _chain2(W, G, arch) + _mcast(far, G)
           + G * n_s * (exp_cycles() + _T.statement)
           + G * (_T.dsd_op_setup + _cdiv(n_s, fadds))
           + G * n_s * (_T.branch + _T.dsd_op_setup + _cdiv(d, mac32))
           + _chain2(W, G * (d + 1), arch)
           + G * (_T.branch + _T.math_cost("inv")) + G * (_T.dsd_op_setup + _cdiv(d, F32_MUL))
           + _T.dsd_op_setup + _cdiv(G * d, _simd("fs2h", arch)))
    c["attention"] = att
    # 5. O: the attention output multicast along row g, the sweep (m = dmax, n = G d), the
    # partial sums up each column to row 0, the residual add (@fadds).
    c["o_in"] = _mcast(far, G * d)
    c["o_sweep"] = _sweep(dmax, G * d, arch)
    c["o_reduce"] = _chain1(n_kv - 1, dmax, arch)
    residual = _T.dsd_op_setup + _cdiv(dmax, fadds)
    # 6 - 9. FFN: xn down every column, gate/up sweep and row reduction; SwiGLU on (root_x, r)
    # (floors.swiglu_floor: one exp an element; plus negate, add, divide, multiply and @fs2h);
    # h multicast along row r, the down sweep and its column reduction; the residual add.
    c["ffn_in"] = _mcast(H - 1, dmax)
    c["gate_up_sweep"] = _sweep(2 * fmax, dmax, arch)
    c["gate_up_reduce"] = _chain2(W, 2 * fmax, arch)
    # (swiglu_floor's arithmetic is elementwise, so it takes an array of H as well.)
    c["swiglu"] = (swiglu_floor(F, H) + fmax * 4 * _T.statement  # type: ignore[arg-type]
                   + _T.dsd_op_setup + _cdiv(fmax, _simd("fs2h", arch)))
    c["down_in"] = _mcast(far, fmax)
    c["down_sweep"] = _sweep(dmax, fmax, arch)
    c["down_reduce"] = _chain1(H - 1, dmax, arch)
    c["residual"] = 2 * residual
    return c


def _head_components(cfg: ModelConfig, arch: str, W: Num, h: Num) -> dict[str, Num]:
    """The head region: the final norm, xn down every column, the LM head sweep (vocabulary
    block x hidden block) and its row reduction, the local argmax on (root_x, r) as
    csl/argmax does it (one @fmaxs pass over chunks of ~sqrt(n), then a scalar scan of the
    chunk maxima and of one chunk), and the (value, index) chain up the home column."""
    dmax = _cdiv(cfg.hidden_size, W)
    vmax = _cdiv(cfg.vocab_size, h)
    chunk = np.ceil(np.sqrt(vmax)).astype(np.int64) if isinstance(vmax, np.ndarray) \
        else math.isqrt(int(vmax) - 1) + 1
    return {
        "head_norm": _norm_cycles(W, dmax, arch),
        "head_in": _mcast(h - 1, dmax),
        "head_sweep": _sweep(vmax, dmax, arch),
        "head_reduce": _chain2(W, vmax, arch),
        "argmax": (2 * _T.dsd_op_setup + _cdiv(vmax, FMAXS_SIMD[arch])
                   + _cdiv(chunk, _simd("fmovs", arch))
                   + 2 * chunk * (_T.branch + 2 * _T.statement)
                   + (h - 1) * _PAIR_HOP),
    }


def _link(dmax: Num, hops: Num) -> Num:
    """10. x's block from a home row to the next region's, ``hops`` rows away (a send)."""
    return _mcast(hops, dmax)


def _sum(parts: Mapping[str, Num]) -> Num:
    total: Num = 0
    for v in parts.values():
        total = total + v
    return total


# ---- memcpy: streaming and the step's host I/O ----

def _io_rate(timing: TimingModel, channels: int) -> Fraction:
    """Wavelets per cycle the host moves: ``channels`` memcpy channels at their rate
    (TimingModel.memcpy_rate, ~7 Gb/s each), capped by the system's 1.2 Tb/s."""
    ceiling = Fraction(round(SYSTEM_IO_GBPS * 1000)) / (32 * Fraction(round(timing.clock_mhz)))
    return min(timing.memcpy_rate(channels), ceiling)


def _copy_cycles(words: Num, timing: TimingModel, channels: int) -> Num:
    """One memcpy command moving ``words`` wavelets: its fixed cost
    (TimingModel.memcpy_command_cycles, ~200 us) plus the words at :func:`_io_rate`."""
    rate = _io_rate(timing, channels)
    return timing.memcpy_command_cycles() + _cdiv(words * rate.denominator, rate.numerator)


def _host_io_cycles(dmax: Num, W: Num, timing: TimingModel, channels: int) -> Num:
    """The step's three host commands, each a memcpy command (the simulator itself charges
    the launch nothing): the embedding row into layer 0's home row (W PEs x dmax f32), the
    launch, the token id out (one word)."""
    return (_copy_cycles(W * dmax, timing, channels) + timing.memcpy_command_cycles()
            + _copy_cycles(1, timing, channels))


def _stream_layer_cycles(cfg: ModelConfig, W: Num, H: Num, timing: TimingModel, channels: int,
                         packed: bool) -> Num:
    """Streaming one layer's weights into its slot, as the engine does: one memcpy over the
    rows below the attention rows (their padded gate/up and down buffers, when H > n_kv),
    then one over the W x n_kv attention rows (padded QKV, O, gate/up and down buffers): f16
    one per 32-bit wavelet (memcpy's 16-bit mode), or two with ``packed``."""
    G, d, n_kv = cfg.group_size, cfg.head_dim, cfg.n_kv_heads
    dmax = _cdiv(cfg.hidden_size, W)
    fmax = _cdiv(cfg.ffn_size, H)
    ffn = 2 * fmax * dmax + dmax * fmax
    attn = (G + 2) * d * dmax + dmax * G * d + ffn

    def words(elems: Num) -> Num:
        return _cdiv(elems, 2) if packed else elems

    rest = np.where(np.asarray(H) > n_kv,
                    _copy_cycles(W * np.maximum(np.asarray(H) - n_kv, 0) * words(ffn), timing,
                                 channels), 0)
    return rest + _copy_cycles(W * n_kv * words(attn), timing, channels)


def _schedule(L: int, n_res: Num, n_slots: Num, comp: np.ndarray, load: Num, head: Num
              ) -> np.ndarray:
    """Launch-to-token cycles with streaming, for arrays of candidates: layers run in order
    (``comp[l]`` each, its link included); the host copies streamed layer ``j`` (layer
    ``n_res + j``) into buffer slot ``j mod n_slots`` once its previous copy ended
    (commands are serialised) and the slot's previous layer finished computing; a streamed
    layer starts when its copy and the previous layer are done. Copies start at the launch
    (the step's first copies replace the previous step's last layers, long finished)."""
    comp = np.atleast_2d(comp)
    n = comp.shape[1]
    idx = np.arange(n)
    n_res = np.broadcast_to(n_res, (n,))
    n_slots = np.broadcast_to(n_slots, (n,))
    load = np.broadcast_to(load, (n,))
    t = np.zeros(n, dtype=np.int64)
    load_end = np.zeros(n, dtype=np.int64)
    hist = np.zeros((L, n), dtype=np.int64)
    for l in range(L):
        streamed = l >= n_res
        prev = l - n_slots
        free = np.where(streamed & (prev >= n_res), hist[np.clip(prev, 0, L - 1), idx], 0)
        load_end = np.where(streamed, np.maximum(load_end, free) + load, load_end)
        t = np.where(streamed, np.maximum(t, load_end), t) + comp[l]
        hist[l] = t
    return t + head


def _link_hops(L: int, n_res: Num, n_slots: Num, H: Num) -> np.ndarray:
    """Rows from each layer's home row to the next layer's (or the head's) for the layout of
    the module docstring: H to the region below; from the last buffer slot of the streaming
    regions back up to slot 0, (n_slots - 1) H; from the last layer to the head, the rows
    between them."""
    H = np.asarray(H)
    out = []
    for l in range(L):
        s = l - n_res                          # stream index (negative: resident)
        slot = np.where(s >= 0, s % np.maximum(n_slots, 1), -1)
        if l == L - 1:
            hops = np.where(s >= 0, (n_slots - slot) * H, H)
        else:
            hops = np.where((s >= 0) & (slot == n_slots - 1), (n_slots - 1) * H, H)
        out.append(hops)
    return np.array(out, dtype=np.int64)


def model_cycles(plan: Plan, position: int | None = None,
                 timing: TimingModel | None = None) -> CycleModel:
    """Modelled cycles of one decode step of ``plan`` at ``position`` (default: the last of
    the planned context), with ``timing``'s clock for the memcpy terms (default: the plan's).

    A model, not a measurement: each component is a sum of TimingModel costs and DSD SIMD
    widths along the step's critical path (the ``_*_cycles`` helpers say which). The engine's
    simulated cycles are what it is to be compared against. Components (``PHASE_OF`` groups
    them): per layer ``norm`` (both), ``qkv_in/_sweep/_reduce``, ``rope``, ``attention``,
    ``o_*``, ``ffn_in``, ``gate_up_*``, ``swiglu``, ``down_*``, ``residual``, ``link``; the
    head's ``head_*`` and ``argmax``; ``streaming``; ``host_io``.
    """
    timing = timing or plan.options.timing
    cfg, g = plan.config, plan.grid
    pos = plan.context - 1 if position is None else position
    if pos < 0:
        raise ValueError(f"position {pos} < 0")
    n_s = g.kv_used(0, pos + 1)
    L = cfg.n_layers
    comps = {k: int(v) * L for k, v in _layer_components(cfg, plan.arch, g.W, g.H, n_s).items()}
    dmax = block_len(cfg.hidden_size, g.W, 0)
    home_rows = [p.region.y0 for p in plan.layers] + [plan.head.y0]
    links = [int(_link(dmax, abs(home_rows[i + 1] - home_rows[i]))) for i in range(L)]
    comps["link"] = sum(links)
    head = {k: int(v) for k, v in _head_components(cfg, plan.arch, g.W, g.H_head).items()}
    comps.update(head)
    compute = sum(comps.values())
    n_res = len(plan.resident_layers)
    n_slots = 2 * len(plan.stream_regions)
    per_layer = compute - comps["link"] - sum(head.values())
    layer_time = np.array([[per_layer // L + links[l]] for l in range(L)], dtype=np.int64)
    load = int(_stream_layer_cycles(cfg, g.W, g.H, timing, plan.options.channels,
                                    plan.options.packed_f16)) if n_slots else 0
    finish = int(_schedule(L, n_res, max(n_slots, 1), layer_time, load,
                           sum(head.values()))[0])
    stream = load * (L - n_res)
    host = int(_host_io_cycles(dmax, g.W, timing, plan.options.channels))
    comps["streaming"] = stream
    comps["host_io"] = host
    phases = dict.fromkeys(PHASES, 0)
    for k, v in comps.items():
        phases[PHASE_OF[k]] += v
    return CycleModel(position=pos, clock_mhz=timing.clock_mhz, components=comps,
                      phases=phases, compute=compute, stream=stream,
                      overlap=compute + stream - finish, host_io=host, total=finish + host)


# ---------------------------------------------------------------------------------------------
# The search
# ---------------------------------------------------------------------------------------------

_INF = np.iinfo(np.int64).max // 4


@dataclass
class _Best:
    """The outcome of one search over one kind of plan (all resident, or streaming).

    ``found`` is the winner; the rest explains a failure: ``fits`` — some grid fits memory
    and rows (ignoring the context); ``capacity`` — the largest KV capacity of such a grid
    (with its ``cap_W`` and ``cap_slots``); ``min_pes`` — the fewest PEs of a grid that also
    holds the context; ``fewest_pes`` — the fewest PEs of a grid that fits (any context)."""

    found: dict[str, int] | None = None
    fits: bool = False
    capacity: int = 0
    cap_W: int = 0
    cap_slots: int = 0
    min_pes: int | None = None
    fewest_pes: int = 0

    def note_fit(self, ok: np.ndarray, pes: np.ndarray) -> None:
        """Record the grids ``ok`` that fit memory and rows, with their PEs."""
        if ok.any():
            least = int(pes[ok].min())
            self.fewest_pes = least if not self.fits else min(self.fewest_pes, least)
            self.fits = True

    def note_capacity(self, ok: np.ndarray, W: np.ndarray, slots: np.ndarray) -> None:
        if not ok.any():
            return
        cap = np.where(ok, W * slots, -1)
        i = int(np.argmax(cap))
        if int(cap[i]) > self.capacity:
            self.capacity, self.cap_W, self.cap_slots = int(cap[i]), int(W[i]), int(slots[i])


class _Search:
    """Every candidate grid of one (model, fabric, arch, options), evaluated as NumPy arrays.

    Candidates: ``1 <= W <= min(program width, hidden)``, ``n_kv <= H <= ffn`` and
    ``1 <= H_head <= vocab`` within the program's rows (and ``max_pes``). A resident plan
    needs ``L H + H_head`` rows; a streaming plan ``(n_res + 2 n_str) H + H_head``."""

    def __init__(self, cfg: ModelConfig, fabric: Fabric, arch: str, options: PlanOptions
                 ) -> None:
        self.cfg, self.fabric, self.arch, self.opt = cfg, fabric, arch, options
        # Bytes for the buffers of the fullest PE of each region kind.
        self.budget = {k: options.data_bytes(k, arch) for k in ("layer", "slot", "head")}
        self.PW = min(fabric.program_width, cfg.hidden_size)
        self.PH = fabric.program_height
        self.Ws = np.arange(1, self.PW + 1, dtype=np.int64)
        self._head_tables()

    def row_cap(self, W: np.ndarray) -> np.ndarray:
        """Rows a plan of width W may use: the program's, or fewer under max_pes."""
        if self.opt.max_pes is None:
            return np.full_like(W, self.PH)
        return np.minimum(self.PH, self.opt.max_pes // W)

    # ---- the head: the best head of every width within any number of rows ----
    def _head_tables(self) -> None:
        cfg = self.cfg
        hmax = min(cfg.vocab_size, self.PH)
        W = self.Ws[:, None]
        h = np.arange(1, hmax + 1, dtype=np.int64)[None, :]
        dmax, vmax = _cdiv(cfg.hidden_size, W), _cdiv(cfg.vocab_size, h)
        fits = np.asarray(_bytes(_head_buffer_sizes(dmax, vmax, True, True))
                          <= self.budget["head"])
        cost = np.broadcast_to(_sum(_head_components(cfg, self.arch, W, h)), fits.shape)
        # Key = cycles, then rows (fewer PEs on ties); its running minimum over h answers
        # "the best head within r rows" for every r at once.
        key = np.where(fits, cost * (hmax + 1) + h, _INF)
        self.hmax = hmax
        self.head_best_key = np.minimum.accumulate(key, axis=1)
        self.head_min = np.where(fits.any(axis=1), np.argmax(fits, axis=1) + 1, _INF // 2)

    def head_for(self, W: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cycles, H_head) of the best head of width W within ``rows`` rows (_INF, 0: none)."""
        r = np.clip(rows, 0, self.hmax)
        key = np.where(r >= 1, self.head_best_key[W - 1, np.maximum(r, 1) - 1], _INF)
        ok = key < _INF
        return (np.where(ok, key // (self.hmax + 1), _INF),
                np.where(ok, key % (self.hmax + 1), 0))

    # ---- layer regions ----
    def pairs(self, Hcap: int) -> tuple[np.ndarray, np.ndarray]:
        """Every (W, H) with H up to Hcap, flattened."""
        cfg = self.cfg
        Hs = np.arange(cfg.n_kv_heads, min(cfg.ffn_size, Hcap) + 1, dtype=np.int64)
        W, H = np.meshgrid(self.Ws, Hs, indexing="ij")
        return W.ravel(), H.ravel()

    def slots_max(self, W: Num, H: Num, k: Num, streamed: bool = False) -> np.ndarray:
        """Most KV slots the fullest PE of a layer region (the attention home PE, holding the
        KV and gains of k layers) has room for; negative when not even its weights fit."""
        fixed, dmax = self.layer_fixed(W, H)
        return self.slots_given(fixed, dmax, k, streamed)

    def layer_fixed(self, W: Num, H: Num) -> tuple[np.ndarray, Num]:
        """(bytes of the attention home PE without KV, gains and timestamps, dmax): its map is
        linear in the k layers' gains (8 k dmax bytes) and timestamps (PER_LAYER_EXTRA) and in
        the slots ((2 k d + G) 4 bytes each)."""
        cfg = self.cfg
        dmax, fmax = _cdiv(cfg.hidden_size, W), _cdiv(cfg.ffn_size, H)
        sizes = _layer_buffer_sizes(cfg, dmax, fmax, 0, 0, True, True, True)
        return np.asarray(_bytes(sizes)), dmax

    def slots_given(self, fixed: np.ndarray, dmax: Num, k: Num, streamed: bool = False
                    ) -> np.ndarray:
        """Slots that fit beside ``fixed`` bytes with k layers' KV, capped at the program's
        limits (MAX_SLOTS, MAX_KV_WORDS)."""
        cfg = self.cfg
        per_slot = (2 * k * cfg.head_dim + cfg.group_size) * 4
        room = (self.budget["slot" if streamed else "layer"] - fixed
                - k * (8 * dmax + PER_LAYER_EXTRA[streamed]))
        cap = np.minimum(MAX_SLOTS, MAX_KV_WORDS // (np.asarray(k) * cfg.head_dim))
        return np.asarray(np.minimum(room // per_slot, cap))

    def layer_cost(self, W: np.ndarray, H: np.ndarray, context: int) -> np.ndarray:
        return np.asarray(_sum(_layer_components(self.cfg, self.arch, W, H,
                                                 _cdiv(context, W))))

    @staticmethod
    def pick(best: _Best, total: np.ndarray, pes: np.ndarray, ok: np.ndarray,
             cols: dict[str, np.ndarray]) -> None:
        """The fewest cycles among ``ok``, then the fewest PEs, then the narrowest, lowest."""
        if not ok.any():
            return
        cand = np.flatnonzero(ok)
        order = np.lexsort((cols["H"][cand], cols["W"][cand], pes[cand], total[cand]))
        i = cand[order[0]]
        best.found = {k: int(v[i]) for k, v in cols.items()} | {"cycles": int(total[i])}

    # ---- every layer resident ----
    def resident(self, context: int) -> _Best:
        cfg, L = self.cfg, self.cfg.n_layers
        best = _Best()
        W, H = self.pairs((self.PH - 1) // L)
        if not len(W):
            return best
        smax = self.slots_max(W, H, 1)
        head, h = self.head_for(W, self.row_cap(W) - L * H)
        fits = (smax >= 1) & (head < _INF)
        best.note_fit(fits, W * (L * H + self.head_min[W - 1]))
        best.note_capacity(fits, W, smax)
        ok = fits & (smax >= _cdiv(context, W))
        if not ok.any():
            return best
        best.min_pes = int((W * (L * H + self.head_min[W - 1]))[ok].min())
        dmax = _cdiv(cfg.hidden_size, W)
        total = (L * (self.layer_cost(W, H, context) + _link(dmax, H)) + head
                 + _host_io_cycles(dmax, W, self.opt.timing, self.opt.channels))
        self.pick(best, total, W * (L * H + h), ok, {
            "W": W, "H": H, "H_head": h, "slots": smax, "n_res": np.full_like(W, L),
            "n_str": np.zeros_like(W)})
        return best

    # ---- some layers streamed ----
    def streaming(self, context: int) -> _Best:
        """Per (W, H): the fewest streaming regions whose buffers hold the context's KV of
        their layers, with as many resident layers as the rows then allow (every streamed
        layer costs a copy per step, so fewer is faster); then the best head in the rows
        left. Cycles come from :func:`_schedule`, run in order of a lower bound until the
        bound passes the best found."""
        cfg, L = self.cfg, self.cfg.n_layers
        best = _Best()
        if L < 3:          # two layers in one streaming region would simply be resident
            return best
        W, H = self.pairs((self.PH - 1) // 2)
        fixed, dmax = self.layer_fixed(W, H)
        keep = self.slots_given(fixed, dmax, 1, True) >= 1   # more KV layers only fit less
        W, H, fixed, dmax = W[keep], H[keep], fixed[keep], np.asarray(dmax)[keep]
        if not len(W):
            return best
        rows = self.row_cap(W) - self.head_min[W - 1]      # for the layer regions
        smax1 = self.slots_given(fixed, dmax, 1)
        need = _cdiv(context, W)
        n_res, n_str, slots = (np.full_like(W, -1), np.zeros_like(W), np.zeros_like(W))
        for ns in range(1, (L - 1) // 2 + 1):
            nr = np.minimum(L - 2 * ns - 1, (rows - 2 * ns * H) // H)
            live = nr >= 0
            if not live.any():
                break
            sk = self.slots_given(fixed, dmax, _cdiv(L - nr, 2 * ns), True)
            s = np.where(nr > 0, np.minimum(sk, smax1), sk)
            fit = live & (s >= 1)
            best.note_fit(fit, W * ((nr + 2 * ns) * H + self.head_min[W - 1]))
            best.note_capacity(fit, W, s)
            take = fit & (s >= need) & (n_res < 0)
            n_res = np.where(take, nr, n_res)
            n_str = np.where(take, ns, n_str)
            slots = np.where(take, s, slots)
        ok = n_res >= 0
        if not ok.any():
            return best
        W, H, n_res, n_str, slots = W[ok], H[ok], n_res[ok], n_str[ok], slots[ok]
        used = (n_res + 2 * n_str) * H
        best.min_pes = int((W * (used + self.head_min[W - 1])).min())
        head, h = self.head_for(W, self.row_cap(W) - used)
        timing, ch = self.opt.timing, self.opt.channels
        dmax = _cdiv(cfg.hidden_size, W)
        layer = self.layer_cost(W, H, context)
        load = np.asarray(_stream_layer_cycles(cfg, W, H, timing, ch, self.opt.packed_f16))
        host = np.asarray(_host_io_cycles(dmax, W, timing, ch))
        links = np.asarray(_link(dmax, _link_hops(L, n_res, 2 * n_str, H)))   # [L, n]
        comp_total = L * layer + links.sum(axis=0) + head
        # The step takes at least all its compute, and at least every copy followed by the
        # last layer and the head.
        lower = host + np.maximum(comp_total, (L - n_res) * load + layer + head)
        total = np.full(len(W), _INF, dtype=np.int64)
        order = np.argsort(np.where(head < _INF, lower, _INF), kind="stable")
        done, best_total = 0, _INF
        while done < len(order) and head[order[done]] < _INF and lower[order[done]] <= best_total:
            chunk = order[done:done + 1024]
            chunk = chunk[head[chunk] < _INF]
            done += 1024
            comp = layer[chunk][None, :] + links[:, chunk]
            total[chunk] = _schedule(L, n_res[chunk], 2 * n_str[chunk], comp, load[chunk],
                                     head[chunk]) + host[chunk]
            best_total = int(total.min())
        self.pick(best, total, W * (used + h), total < _INF, {
            "W": W, "H": H, "H_head": h, "slots": slots, "n_res": n_res, "n_str": n_str})
        return best

    # ---- why nothing fits ----
    def no_fit_reason(self) -> str:
        """One line: the first of a layer's memory, the head's memory, the rows that fails.
        (Called when no grid fits memory and rows, whatever the context.)"""
        cfg, L = self.cfg, self.cfg.n_layers
        kib = f"{self.opt.pe_bytes / 1024:g} KiB"
        rect = f"the fabric's program rectangle holds {self.fabric.program_width}x{self.PH}"
        # The fewest rows of a layer region (one KV slot) and of the head region that fit
        # memory, at every width up to the hidden size (_INF: none).
        Ws = np.arange(1, cfg.hidden_size + 1, dtype=np.int64)
        Hmin = self._min_rows(lambda H: self.slots_max(Ws, H, 1) >= 1, cfg.n_kv_heads,
                              cfg.ffn_size, len(Ws))
        hmin = self._min_rows(
            lambda h: np.asarray(_bytes(_head_buffer_sizes(
                _cdiv(cfg.hidden_size, Ws), _cdiv(cfg.vocab_size, h), True, True))
                <= self.budget["head"]), 1, cfg.vocab_size, len(Ws))
        for what, rows in (("a layer", Hmin),
                           (f"the head region (LM head over {cfg.vocab_size} x "
                            f"{cfg.hidden_size})", hmin)):
            if (rows[:self.PW] <= self.PH - 1).any():
                continue
            if (rows >= _INF).all():
                return (f"{what} does not fit: even {cfg.hidden_size} columns wide, a PE of it "
                        f"needs more than {kib}")
            pes = np.where(rows < _INF, Ws * rows, _INF)
            i = int(np.argmin(pes))
            wide = (f": no region at most {self.PW} columns wide fits"
                    if Ws[i] > self.PW else "")
            return (f"{what} needs at least {int(pes[i])} PEs of {kib} "
                    f"({int(Ws[i])}x{int(rows[i])}{wide}); {rect}")
        W = self.Ws
        hm = hmin[:self.PW]
        if self.opt.allow_streaming and L >= 3:
            # No resident layer: n streaming regions of 2 H rows, each buffer holding the KV
            # of ceil(L / 2n) layers; the fewest rows over n.
            best_rows, best_txt = _INF, ""
            for ns in range(1, (L - 1) // 2 + 1):
                k = -(-L // (2 * ns))

                def fits_k(H: np.ndarray, k: int = k) -> np.ndarray:
                    return self.slots_max(W, H, k, True) >= 1

                Hk = self._min_rows(fits_k, cfg.n_kv_heads, cfg.ffn_size, len(W))
                need = np.where((Hk < _INF) & (hm < _INF), hm + 2 * ns * Hk, _INF)
                i = int(np.argmin(need))
                if need[i] < best_rows:
                    best_rows = int(need[i])
                    best_txt = (f"H_head={int(hm[i])} + {2 * ns} x H={int(Hk[i])} at "
                                f"W={int(W[i])}")
            if best_rows >= _INF:
                return (f"no streaming buffer of at most {self.PW} columns holds its weights "
                        f"and one KV slot of each of its layers in {kib}; {rect}")
            return (f"the head region plus the streaming regions need at least {best_rows} "
                    f"rows ({best_txt}); {rect}")
        Hm = Hmin[:self.PW]
        need = np.where((Hm < _INF) & (hm < _INF), hm + L * Hm, _INF)
        i = int(np.argmin(need))
        why = "streaming is off" if not self.opt.allow_streaming else "too few layers to stream"
        if need[i] >= _INF:
            return (f"no width up to {self.PW} fits both a layer region and the head region "
                    f"in {kib} a PE; {rect}")
        return (f"every layer resident needs at least {int(need[i])} rows ({L} x H="
                f"{int(Hm[i])} + H_head={int(hm[i])} at W={int(W[i])}); {rect} ({why})")

    @staticmethod
    def _min_rows(fits: Callable[[np.ndarray], np.ndarray], lo: int, hi: int, n: int
                  ) -> np.ndarray:
        """Per candidate, the fewest rows in [lo, hi] for which ``fits`` (monotone in rows)
        holds, by bisection; _INF where none does."""
        a = np.full(n, lo, dtype=np.int64)
        b = np.full(n, hi + 1, dtype=np.int64)
        while (a < b).any():
            mid = (a + b) // 2
            f = fits(np.minimum(mid, hi)) & (mid <= hi)
            b = np.where((a < b) & f, mid, b)
            a = np.where((a < b) & ~f, mid + 1, a)
        return np.where(a <= hi, a, _INF)


# ---------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------


def _resolve_arch(fabric: Fabric, arch: str | None) -> str:
    if arch is None:
        return fabric.arch or "wse3"
    if arch not in _ARCH_INDEX:
        raise PlanError(f"arch {arch!r}: expected wse3 or wse2")
    if fabric.arch is not None and fabric.arch != arch:
        raise PlanError(f"fabric {fabric.name} is a {fabric.arch.upper()}, not a {arch.upper()};"
                        f" give its size as W,H to plan another arch on it")
    return arch


def plan_model(config: ModelConfig, fabric: str | Fabric = "wse3", arch: str | None = None,
               context: int | None = None, options: PlanOptions | None = None) -> Plan:
    """Plan ``config`` on ``fabric`` (see the module docstring).

    Args:
        config: the model.
        fabric: "wse3", "wse2", "W,H" (fabric dims, memcpy's margin included) or a Fabric.
        arch: "wse3" or "wse2"; default the preset's, else wse3.
        context: positions the KV cache must hold; default the largest the plan can hold,
            at most the model's trained context (every layer resident if any grid allows it).
        options: see PlanOptions.

    Raises:
        PlanError: one line naming the limit and the numbers.
    """
    opt = options or PlanOptions()
    fab = Fabric.parse(fabric)
    arch = _resolve_arch(fab, arch)
    if context is not None and context < 1:
        raise PlanError(f"context {context}: need at least 1 position")
    if opt.reserve_bytes is not None and (opt.reserve_bytes < 0
                                          or opt.reserve_bytes >= opt.pe_bytes):
        raise PlanError(f"reserve {opt.reserve_bytes} bytes leaves nothing of the "
                        f"{opt.pe_bytes} bytes of a PE")
    if not 1 <= opt.channels:
        raise PlanError(f"channels {opt.channels}: need at least 1")
    search = _Search(config, fab, arch, opt)
    trained = config.context_length
    kinds = [search.resident] + ([search.streaming] if opt.allow_streaming else [])
    for kind in kinds:
        want = trained if context is None else context
        got = kind(want)
        if got.found is None and context is None and got.capacity >= 1:
            want = got.capacity
            got = kind(want)
        if got.found is not None:
            plan = _build(config, fab, arch, opt, got.found, want)
            log.info("plan: W=%d H=%d H_head=%d slots=%d, %d resident, %d streamed, "
                     "%d cycles/token (model)", plan.grid.W, plan.grid.H, plan.grid.H_head,
                     plan.grid.slots, len(plan.resident_layers), len(plan.streamed_layers),
                     plan.cycles.total)
            return plan
    raise PlanError(_failure(config, fab, arch, opt, context))


def _failure(config: ModelConfig, fab: Fabric, arch: str, opt: PlanOptions,
             context: int | None) -> str:
    """The one-line reason no plan exists (the searches are rerun without max_pes to tell
    a PE cap from a fabric limit)."""
    free = dataclasses.replace(opt, max_pes=None)
    search = _Search(config, fab, arch, free)
    want = config.context_length if context is None else context
    results = [search.resident(want)] + ([search.streaming(want)] if opt.allow_streaming
                                         else [])
    if not any(r.fits for r in results):
        return search.no_fit_reason()
    if opt.max_pes is not None:
        if context is None:
            least = min(r.fewest_pes for r in results if r.fits)
            return f"no plan fits in max_pes={opt.max_pes} PEs: the smallest needs {least}"
        if any(r.found for r in results):
            least = min(r.min_pes for r in results if r.min_pes is not None)
            return (f"no plan fits in max_pes={opt.max_pes} PEs: the smallest that holds "
                    f"context {want} needs {least}")
    top = max(results, key=lambda r: r.capacity)
    return (f"context {want} > KV capacity {top.capacity} tokens of this plan "
            f"(W={top.cap_W}, {top.cap_slots} slot{'s' if top.cap_slots != 1 else ''} per PE)")


def _build(cfg: ModelConfig, fab: Fabric, arch: str, opt: PlanOptions, f: Mapping[str, int],
           context: int) -> Plan:
    """The Plan of the search's winner ``f``: regions laid out as the module docstring says."""
    W, H, h, n_res, n_str = f["W"], f["H"], f["H_head"], f["n_res"], f["n_str"]
    L = cfg.n_layers
    # Slots: all that fit, but no more than the trained context (or the request) needs.
    slots = min(f["slots"], -(-max(context, cfg.context_length) // W))
    grid = LayerGrid(cfg, W, H, h, slots, n_resident=n_res if n_str else None,
                     stream_slots=2 * n_str)
    layers = [LayerPlacement(l, Rect(0, l * H, W, H), True) for l in range(n_res)]
    n_slots = 2 * n_str
    slot_layers: list[list[int]] = [[] for _ in range(n_slots)]
    for j, l in enumerate(range(n_res, L)):
        s = j % n_slots
        slot_layers[s].append(l)
        layers.append(LayerPlacement(l, Rect(0, (n_res + s) * H, W, H), False,
                                     stream_region=s // 2, buffer=s % 2,
                                     kv_index=j // n_slots))
    regions = tuple(
        StreamRegion(i, Rect(0, (n_res + 2 * i) * H, W, 2 * H),
                     (Rect(0, (n_res + 2 * i) * H, W, H), Rect(0, (n_res + 2 * i + 1) * H, W, H)),
                     (tuple(slot_layers[2 * i]), tuple(slot_layers[2 * i + 1])))
        for i in range(n_str))
    head = Rect(0, (n_res + n_slots) * H, W, h)
    rect = Rect(0, 0, W, head.y0 + h)
    stub = CycleModel(0, opt.timing.clock_mhz, {}, {}, 0, 0, 0, 0, 0)
    plan = Plan(grid=grid, arch=arch, fabric=fab, context=context, options=opt, rect=rect,
                layers=tuple(layers), head=head, stream_regions=regions, cycles=stub)
    return dataclasses.replace(plan, cycles=model_cycles(plan))
