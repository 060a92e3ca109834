"""The WSE fabric: a grid of routers joined by links, carrying colored wavelets.

This module is the living definition of the network layer of the simulator. It holds

* :class:`PyFabricCore`, the Python reference implementation (written to be read), and
* :class:`Fabric`, the public class, which runs on the C++ core ``waferscale._fabric`` when it
  is importable and on :class:`PyFabricCore` otherwise. Both backends follow the same
  cycle rule event for event; ``simulator_tests/sim/test_fabric.py`` checks that.

Every rule and number is explained, with its source or marked as an assumption, in
``docs/fabric-model.md``. In short:

Grid and routes
    ``width`` x ``height`` routers; PE ``(x, y)`` is column ``x``, row ``y``, ``(0, 0)`` is the
    north-west corner, NORTH is ``y - 1``, SOUTH ``y + 1``, EAST ``x + 1``. Each router has,
    per color (0..23), an ``rx`` set and a ``tx`` set of :class:`Direction`. A wavelet on color
    ``c`` may only enter a router from a direction in ``rx``; it leaves on every direction in
    ``tx`` at once (multicast); ``RAMP`` in ``tx`` delivers it to the router's own compute
    engine (CE), into the input queue bound to ``c``.

One cycle (the whole rule; every decision reads the state at the start of the cycle)
    1. Every router scans its non-empty input buffers (one FIFO per (input direction, color),
       ``router_buffer_depth`` deep) in a fixed order rotated by a round-robin pointer. The
       head wavelet is forwarded when *all* its ``tx`` destinations can take it: the output
       link is unused so far this cycle and the buffer or input queue behind it held fewer
       wavelets than its depth at the start of the cycle (edge sinks always accept).
       Otherwise it waits (a stall). The pointer moves just past the first slot forwarded.
    2. Every CE moves at most one wavelet from its output queues (round-robin among the
       queues whose head can go) into the router's ``RAMP`` input buffer of its color, and
       every wavelet the host injected since the last cycle crosses its host link.
    3. All moves land at the end of the cycle. A wavelet forwarded in cycle ``t`` can be
       forwarded again in cycle ``t + hop_latency`` (a wavelet from the CE: ``t +
       ce_to_router_latency``), and one written into an input queue in cycle ``t`` can be
       read by the CE from cycle ``t + router_to_ce_latency`` on. With the default
       latencies of 1 (:class:`FabricOptions`): one cycle per hop.

    Cycles are numbered from 0; :attr:`Fabric.cycle` is the number of the next cycle to run.
    A wavelet that a CE sends while ``cycle == t`` enters its router in cycle ``t``, is
    forwarded ``k`` times in cycles ``t + 1 .. t + k`` and is written into the destination
    input queue in cycle ``t + k + 1``; the destination CE can read it once
    ``cycle == t + k + 2`` (when nothing contends for links or buffers).

Switches, control wavelets, teardown, filters, color swap
    Per (PE, color) the route in effect is position 0's (``set_route``) or a switch position's
    (``set_switches``); a control wavelet's slot-0 command acts on each router that forwards
    it (advance, reset, teardown; NOCE keeps it from the CE); a color in teardown mode holds
    its wavelets until ``router_config`` (kind 9, ``teardown.exit``); filters keep wavelets
    from the CE; color swap changes the color on x or y outputs. The rules and their sources:
    docs/fabric-model.md §9.

CE protocol (what the PE model does between two calls of :meth:`Fabric.step`)
    ``ce_send`` pushes into an output queue (``False`` when full: the CE must retry);
    ``ce_recv`` pops an input queue. Both act at once, before the next cycle runs.
    ``step(n)`` runs up to ``n`` cycles and stops early once no wavelet is left in a router
    buffer, an output queue or on a host link (``idle``; input queues do not count). When
    idle, nothing can happen until the CE or host acts, so the caller may skip time with
    :meth:`Fabric.advance_clock`.

Errors
    Mistakes in configuration raise :class:`FabricConfigError`; wavelets that break the
    routes at run time (wrong ``rx``, no input queue bound to a delivered color) raise
    :class:`FabricRoutingError` naming the cycle, PE, color, direction and the configured
    ``rx``. Both are checked before the cycle changes any state, so after a
    :class:`FabricRoutingError` the fabric is still at the start of that cycle.
"""

from __future__ import annotations

import bisect
import enum
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal, NamedTuple

import numpy as np

log = logging.getLogger(__name__)

NUM_COLORS = 24
"""Routable colors, ``0 .. 23`` (csl-language.md §6, sdk-runtime-hardware.md §3.4)."""
NUM_DIRECTIONS = 5
NUM_SLOTS = NUM_DIRECTIONS * NUM_COLORS

# Control wavelets (docs/fabric-model.md §9). A control wavelet carries eight router commands,
# one per router along its path (slot 0 is for the router it is at), each two bits of opcode
# and one "NOCE" bit (do not deliver this wavelet to the CE): slot 0 at bits 22-24, slot 1 at
# 25-27, slot 2 at 28-29 with its NOCE bit at bit 0, slots 3..7 at bits 1-3, 4-6, ..., 13-15.
# Source: the SDK's own encoder (sdk-examples benchmarks/25-pt-stencil switches.csl, `ctrl`)
# and the test vector of benchmark-libs/allreduce ("teardown wavelet = 0x9df 9249").
CMD_NOP, CMD_SWITCH_ADV, CMD_SWITCH_RST, CMD_TEARDOWN = 0, 1, 2, 3
POP_NONE, POP_ALWAYS, POP_ON_ADVANCE = 0, 1, 2
_CMD_SLOT_BITS = ((22, 23, 24), (25, 26, 27), (28, 29, 0), (1, 2, 3), (4, 5, 6), (7, 8, 9),
                  (10, 11, 12), (13, 14, 15))
_CMD_FILL = 0b100     # what enters slot 7 when a router pops slot 0: NOP with NOCE (doc-gap)


def control_command(payload: int) -> tuple[int, bool]:
    """``(opcode, noce)`` of slot 0 of a control wavelet's payload."""
    return (payload >> 22) & 3, bool(payload >> 24 & 1)


def control_pop(payload: int) -> int:
    """The payload after a router pops slot 0: every later slot moves one place towards slot
    0 and slot 7 becomes NOP with NOCE (the allreduce's 0x9df9249 -> 0x91f9249)."""
    slots = [sum(((payload >> b) & 1) << k for k, b in enumerate(bits))
             for bits in _CMD_SLOT_BITS]
    slots = slots[1:] + [_CMD_FILL]
    out = payload
    for v, bits in zip(slots, _CMD_SLOT_BITS):
        for k, b in enumerate(bits):
            out = (out & ~(1 << b)) | (((v >> k) & 1) << b)
    return out & MAX_PAYLOAD

"""Input buffers per router: one per (input direction, color); slot = direction * 24 + color."""
MAX_PAYLOAD = 0xFFFF_FFFF


class Direction(enum.IntEnum):
    """A router port. ``RAMP`` is the link between a router and its own CE."""

    RAMP = 0
    NORTH = 1
    EAST = 2
    SOUTH = 3
    WEST = 4


_DX = (0, 0, 1, 0, -1)
_DY = (0, -1, 0, 1, 0)
_OPPOSITE = (0, 3, 4, 1, 2)
_NAMES = tuple(d.name for d in Direction)
# The directions of every 5-bit mask, in ascending order (the order in which tx is examined).
_MASK_DIRS = tuple(tuple(d for d in range(NUM_DIRECTIONS) if m >> d & 1) for m in range(32))
_RAMP_BIT = 1 << Direction.RAMP

ARCH_QUEUE_DEPTHS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    # (input queue depths, output queue depths); sdk-runtime-hardware.md §3.5 (third-party,
    # unverified there), csl-language.md §6.
    "wse3": ((8, 8, 4, 4, 4, 4, 4, 4), (8, 8, 8, 8, 8, 8, 8, 8)),
    "wse2": ((6, 6, 4, 4, 2, 2, 2, 2), (2, 2, 6, 6, 2, 2)),
}
MAX_QUEUES = 32
MAX_DEPTH = 65535
MAX_LATENCY = 64


# --------------------------------------------------------------------------------------------
# Errors


class FabricError(Exception):
    """Base class of fabric errors (also raised when the fabric is used in a wrong state)."""


class FabricConfigError(FabricError, ValueError):
    """A bad argument or configuration: off-grid coordinates, an off-grid ``tx``, a queue
    index out of range, conflicting queue bindings, ..."""


class FabricRoutingError(FabricError):
    """A wavelet broke the configured routes while the fabric ran (wrong ``rx``, or delivered
    to a CE on a color that has no bound input queue)."""


# --------------------------------------------------------------------------------------------
# Options and records


@dataclass(frozen=True, kw_only=True)
class FabricOptions:
    """Sizes and switches of a :class:`Fabric`.

    Attributes:
        arch: ``"wse3"`` or ``"wse2"``; selects the default queue depths.
        input_queue_depths: depth of each CE input queue (their number is the length);
            ``None`` takes the arch default (WSE-3: 8,8,4,4,4,4,4,4; WSE-2: 6,6,4,4,2,2,2,2).
        output_queue_depths: depth of each CE output queue; ``None`` takes the arch default
            (WSE-3: eight of 8; WSE-2: 2,2,6,6,2,2).
        router_buffer_depth: wavelets per router input buffer, i.e. per (input direction,
            color). An assumption (no public number); 2 is the smallest depth that sustains one
            wavelet per cycle under the start-of-cycle credit rule.
        record_deliveries: keep a log of every wavelet written into a CE input queue, read
            with :meth:`Fabric.take_deliveries` (for tests and traces; costs memory).
        hop_latency: cycles from a wavelet's landing in a router's link input buffer until
            that router can forward it (1: the next cycle). The default is the raw
            one-cycle hop; the simulator's timing model (sim/timing.py) sets its own.
        ce_to_router_latency: the same for a wavelet that entered the router from its CE
            (RAMP), i.e. the ramp's latency out of the CE.
        router_to_ce_latency: cycles from a wavelet's landing in a CE input queue until the
            CE can read it (1: the next cycle), the ramp's latency into the CE.
        A buffer (or input queue) with latency ``L`` holds ``L - 1`` wavelets more than its
        depth, the pipeline registers that keep a stream at one wavelet per cycle.
    """

    arch: Literal["wse2", "wse3"] = "wse3"
    input_queue_depths: tuple[int, ...] | None = None
    output_queue_depths: tuple[int, ...] | None = None
    router_buffer_depth: int = 2
    record_deliveries: bool = False
    hop_latency: int = 1
    ce_to_router_latency: int = 1
    router_to_ce_latency: int = 1

    def __post_init__(self) -> None:
        if self.arch not in ARCH_QUEUE_DEPTHS:
            raise FabricConfigError(f"unknown arch {self.arch!r}; expected 'wse2' or 'wse3'")
        for name in ("input_queue_depths", "output_queue_depths"):
            value = getattr(self, name)
            if value is None:
                continue
            depths = tuple(value)
            if not 1 <= len(depths) <= MAX_QUEUES:
                raise FabricConfigError(f"{name} must list 1..{MAX_QUEUES} queues")
            if any(not isinstance(d, int) or not 1 <= d <= MAX_DEPTH for d in depths):
                raise FabricConfigError(f"{name} must be integers in 1..{MAX_DEPTH}: {depths}")
            object.__setattr__(self, name, depths)
        if not isinstance(self.router_buffer_depth, int) or not (
                1 <= self.router_buffer_depth <= MAX_DEPTH):
            raise FabricConfigError(
                f"router_buffer_depth must be an integer in 1..{MAX_DEPTH}, "
                f"got {self.router_buffer_depth!r}")
        for name in ("hop_latency", "ce_to_router_latency", "router_to_ce_latency"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= MAX_LATENCY:
                raise FabricConfigError(f"{name} must be an integer in 1..{MAX_LATENCY}, "
                                        f"got {value!r}")

    @property
    def iq_depths(self) -> tuple[int, ...]:
        """The input queue depths in force (explicit or the arch default)."""
        return self.input_queue_depths or ARCH_QUEUE_DEPTHS[self.arch][0]

    @property
    def oq_depths(self) -> tuple[int, ...]:
        """The output queue depths in force (explicit or the arch default)."""
        return self.output_queue_depths or ARCH_QUEUE_DEPTHS[self.arch][1]


class Delivery(NamedTuple):
    """A wavelet written into a CE input queue during ``cycle``."""

    cycle: int
    x: int
    y: int
    queue: int
    color: int
    payload: int
    ctrl: bool


class EdgeWavelet(NamedTuple):
    """A wavelet that left the grid through an edge sink during ``cycle``."""

    cycle: int
    color: int
    payload: int
    ctrl: bool


class BlockedWavelet(NamedTuple):
    """A wavelet at the head of a buffer that cannot move, and why.

    ``in_direction`` is the input buffer's direction name (``"RAMP"``, ``"NORTH"``, ...) or
    ``"OQ<q>"`` for the head of CE output queue ``q``. ``waits_on`` lists every reason,
    joined with ``"; "`` (e.g. ``"input queue 2 of PE(3,1) full"``).
    """

    x: int
    y: int
    in_direction: str
    color: int
    waits_on: str


@dataclass(frozen=True)
class FabricCounters:
    """A snapshot of the fabric's counters (arrays are indexed ``[y, x, ...]``).

    Attributes:
        cycle: cycles run so far.
        link_out: ``(H, W, 5)`` wavelets sent by each router per output direction; RAMP is
            the router-to-CE link, an off-grid direction is an edge sink.
        link_in: ``(H, W, 5)`` wavelets received per input direction; RAMP is the CE-to-router
            link, an off-grid direction counts host injections.
        stall_cycles: ``(H, W)`` cycles in which at least one wavelet at the PE (a router
            buffer head or an output queue head) was ready but could not move.
        stalled_wavelet_cycles: ``(H, W)`` the same, counted per waiting wavelet.
        iq_high_water, oq_high_water: ``(H, W, n_queues)`` maximum queue occupancy seen.
        buffer_high_water: ``(H, W, 5, 24)`` maximum router buffer occupancy per (input
            direction, color).
    """

    cycle: int
    link_out: np.ndarray
    link_in: np.ndarray
    stall_cycles: np.ndarray
    stalled_wavelet_cycles: np.ndarray
    iq_high_water: np.ndarray
    oq_high_water: np.ndarray
    buffer_high_water: np.ndarray

    @property
    def wavelet_hops(self) -> int:
        """Wavelets carried by router output links (neighbour hops, CE deliveries, sinks)."""
        return int(self.link_out.sum())


def format_mask(mask: int) -> str:
    """``{NORTH, WEST}`` for a direction bitmask (``{}`` when empty)."""
    return "{" + ", ".join(_NAMES[d] for d in _MASK_DIRS[mask]) + "}"


def _pe(x: int, y: int) -> str:
    return f"PE({x},{y})"


# --------------------------------------------------------------------------------------------
# The Python reference implementation


class _PE:
    """State of one PE's router and CE-side queues."""

    __slots__ = (
        "accept",
        "base_rx",
        "base_tx",
        "buf",
        "color_iq",
        "index",
        "iq",
        "iq_color",
        "load",
        "neighbour",
        "nonempty",
        "oq",
        "oq_count",
        "oq_rr",
        "rr",
        "rx",
        "sinks",
        "cfilt",
        "filt",
        "queue_wait",
        "swap",
        "sw",
        "teardown",
        "tx",
        "x",
        "y",
    )

    def __init__(self, x: int, y: int, index: int, n_iq: int, n_oq: int,
                 neighbour: tuple[int, ...]) -> None:
        self.x, self.y, self.index = x, y, index
        # Per color: the route in effect (the switch position's), as bitmasks of Direction;
        # ``base_*`` is position 0 (set_route); ``accept`` is every direction some position
        # takes wavelets from (a wavelet from another one is a routing error).
        self.rx = [0] * NUM_COLORS
        self.tx = [0] * NUM_COLORS
        self.base_rx = [0] * NUM_COLORS
        self.base_tx = [0] * NUM_COLORS
        self.accept = [0] * NUM_COLORS
        # Per color with switches: [pos1 rx, pos1 tx, pos2 rx, ..., pos3 tx, current,
        # ring_mode, pop_mode]; a position's -1 keeps position 0's rx or tx, a position with
        # both -1 is invalid (no such position).
        self.sw: dict[int, list[int]] = {}
        self.teardown = 0                           # bitmask of colors in teardown mode
        # Per color with a range filter: (min, max) of the upper 16 bits of the data
        # wavelets the CE receives (the others are not delivered down RAMP).
        self.filt: dict[int, tuple[int, int]] = {}
        # Per color with a counter filter: [counter, max_counter, limit, count_data,
        # count_control]: a counted wavelet reaches the CE while counter <= max_counter; each
        # one counts, the counter going back to 0 after limit (PyFabricCore.set_counter_filter).
        self.cfilt: dict[int, list[int]] = {}
        # Per color with color swap (WSE-2): bit 0 EAST/WEST outputs, bit 1 NORTH/SOUTH
        # outputs leave as color ^ 1 (docs/fabric-model.md §9).
        self.swap: dict[int, int] = {}
        # A wavelet for the CE on a color no input queue takes waits (set_queue_wait) instead
        # of being a routing error (a program that rebinds its input queues at run time).
        self.queue_wait = False
        # slot -> FIFO of (payload, ctrl, first cycle it may leave)
        self.buf: dict[int, deque[tuple[int, bool, int]]] = {}
        self.nonempty: set[int] = set()             # slots whose buffer holds wavelets
        self.rr = 0                                 # round-robin pointer over slots
        self.oq: list[deque[tuple[int, int, bool]]] = [deque() for _ in range(n_oq)]
        self.oq_rr = 0
        self.oq_count = 0
        # (payload, ctrl, first cycle the CE may read it)
        self.iq: list[deque[tuple[int, bool, int]]] = [deque() for _ in range(n_iq)]
        self.color_iq = [-1] * NUM_COLORS           # bound input queue per color
        self.iq_color = [-1] * n_iq
        self.load = 0                               # wavelets in buffers, oqs, host links
        self.neighbour = neighbour                  # PE index per direction, -1 off the grid
        self.sinks = 0                              # bitmask of directions with an edge sink


class PyFabricCore:
    """The reference fabric. Same methods, arguments and results as ``waferscale._fabric.Core``.

    Arguments are plain ints (directions as ``Direction`` values, routes as bitmasks); the
    :class:`Fabric` wrapper offers the friendlier forms. Not thread-safe.
    """

    def __init__(self, width: int, height: int, iq_depths: Sequence[int],
                 oq_depths: Sequence[int], buffer_depth: int, record_deliveries: bool,
                 hop_latency: int = 1, ce_to_router_latency: int = 1,
                 router_to_ce_latency: int = 1) -> None:
        if width < 1 or height < 1:
            raise FabricConfigError(f"grid must be at least 1x1, got {width}x{height}")
        if width > 32767 or height > 32767:
            raise FabricConfigError("grid sides must be <= 32767")
        self.width, self.height = width, height
        self._oq_depths = tuple(oq_depths)
        self._hop = hop_latency
        self._ramp_out = ce_to_router_latency
        self._ramp_in = router_to_ce_latency
        # Capacities include the pipeline registers of each latency (FabricOptions).
        self._iq_depths = tuple(d + router_to_ce_latency - 1 for d in iq_depths)
        self._depth = buffer_depth + hop_latency - 1             # link input buffers
        self._ramp_depth = buffer_depth + ce_to_router_latency - 1   # the RAMP input buffer
        # Wavelets still on the ramp into an input queue: (readable cycle, PE index), in
        # order (the latency is one constant); they count as in flight until readable.
        self._ramp_in_flight: deque[tuple[int, int]] = deque()
        self._record = record_deliveries
        self._pes: list[_PE] = []
        for y in range(height):
            for x in range(width):
                nbr = tuple(
                    -1 if d == 0 or not (0 <= x + _DX[d] < width and 0 <= y + _DY[d] < height)
                    else (y + _DY[d]) * width + x + _DX[d]
                    for d in range(NUM_DIRECTIONS))
                self._pes.append(_PE(x, y, len(self._pes), len(self._iq_depths),
                                     len(self._oq_depths), nbr))
        self._active: set[int] = set()              # PEs with load > 0
        self._cycle = 0
        self._in_flight = 0
        self._host_links_used: set[int] = set()     # index * 5 + direction, this cycle
        self._injections: list[tuple[_PE, int, int, bool]] = []  # landing this cycle
        self._sink_log: dict[int, list[tuple[int, int, int, bool]]] = {}
        self._deliveries: list[tuple[int, int, int, int, int, int, bool]] = []
        self._teardowns: list[tuple[int, int, int, int]] = []
        n = width * height
        self._link_out = [0] * (n * NUM_DIRECTIONS)
        self._link_in = [0] * (n * NUM_DIRECTIONS)
        self._stall_cycles = [0] * n
        self._stalled = [0] * n
        self._iq_hw = [0] * (n * len(self._iq_depths))
        self._oq_hw = [0] * (n * len(self._oq_depths))
        self._buf_hw = [0] * (n * NUM_SLOTS)

    # ---- argument checks (messages shared with the C++ core) ----

    def _at(self, x: int, y: int) -> _PE:
        if not (0 <= x < self.width and 0 <= y < self.height):
            raise FabricConfigError(
                f"{_pe(x, y)} is outside the {self.width}x{self.height} grid")
        return self._pes[y * self.width + x]

    @staticmethod
    def _check_color(color: int) -> None:
        if not 0 <= color < NUM_COLORS:
            raise FabricConfigError(f"color {color} out of range 0..{NUM_COLORS - 1}")

    @staticmethod
    def _check_direction(direction: int) -> None:
        if not 0 <= direction < NUM_DIRECTIONS:
            raise FabricConfigError(f"direction {direction} out of range 0..4")

    def _check_queue(self, kind: str, q: int) -> None:
        n = len(self._iq_depths if kind == "input" else self._oq_depths)
        if not 0 <= q < n:
            raise FabricConfigError(f"{kind} queue {q} out of range 0..{n - 1}")

    def _edge_port(self, pe: _PE, direction: int, what: str) -> None:
        self._check_direction(direction)
        if direction == Direction.RAMP:
            raise FabricConfigError(f"{what}: RAMP is not an edge port")
        nb = pe.neighbour[direction]
        if nb >= 0:
            other = self._pes[nb]
            raise FabricConfigError(
                f"{what}: {_pe(pe.x, pe.y)} {_NAMES[direction]} is not an edge port "
                f"(it leads to {_pe(other.x, other.y)})")

    # ---- configuration ----

    def set_route(self, x: int, y: int, color: int, rx: int, tx: int) -> None:
        """Set the rx and tx direction bitmasks of ``color`` at PE ``(x, y)``."""
        pe = self._at(x, y)
        self._check_color(color)
        for mask in (rx, tx):
            if not 0 <= mask < 32:
                raise FabricConfigError(f"route mask {mask} out of range 0..31")
        for d in _MASK_DIRS[tx]:
            if d != Direction.RAMP and pe.neighbour[d] < 0 and not pe.sinks >> d & 1:
                raise FabricConfigError(
                    f"route of color {color} at {_pe(x, y)} sends {_NAMES[d]} off the grid "
                    f"(no edge sink enabled for {_pe(x, y)} {_NAMES[d]})")
        pe.base_rx[color] = rx
        pe.base_tx[color] = tx
        self._refresh(pe, color)

    def _refresh(self, pe: _PE, color: int) -> None:
        """Recompute the route in effect and the accepted directions of ``color`` from
        position 0, the switch state and teardown mode; make the buffers they need."""
        rx, tx = pe.base_rx[color], pe.base_tx[color]
        accept = rx
        sw = pe.sw.get(color)
        if sw is not None:
            # Position k changes the rx or tx it names of position k - 1 (cumulative: the
            # cholesky benchmark's pos1 = .{ .tx = EAST }, pos2 = .{ .rx = RAMP } sends its own
            # data east only; doc-gap, the docs do not spell it out).
            crx, ctx = rx, tx
            for k in range(3):
                prx, ptx = sw[2 * k], sw[2 * k + 1]
                if prx < 0 and ptx < 0:
                    continue
                crx, ctx = (crx if prx < 0 else prx), (ctx if ptx < 0 else ptx)
                accept |= crx
                if k + 1 == sw[6]:
                    rx, tx = crx, ctx
        pe.rx[color], pe.tx[color], pe.accept[color] = rx, tx, accept
        # In teardown mode a router holds wavelets from any side until the CE re-routes the
        # color and leaves teardown (docs/fabric-model.md §9).
        for d in _MASK_DIRS[31 if pe.teardown >> color & 1 else accept]:
            pe.buf.setdefault(d * NUM_COLORS + color, deque())

    def set_switches(self, x: int, y: int, color: int, positions: Sequence[int],
                     current: int, ring_mode: bool, pop_mode: int) -> None:
        """Switch positions 1..3 of ``color`` at PE ``(x, y)``: ``positions`` is
        ``[rx1, tx1, rx2, tx2, rx3, tx3]`` (bitmasks; -1 keeps position 0's; both -1: the
        position does not exist), the current position (0..3), ring mode and pop mode
        (POP_NONE, POP_ALWAYS, POP_ON_ADVANCE)."""
        pe = self._at(x, y)
        self._check_color(color)
        if len(positions) != 6 or any(not -1 <= m < 32 for m in positions):
            raise FabricConfigError("switch positions must be 6 masks in -1..31")
        if not 0 <= current <= 3:
            raise FabricConfigError(f"switch position {current} out of range 0..3")
        if pop_mode not in (POP_NONE, POP_ALWAYS, POP_ON_ADVANCE):
            raise FabricConfigError(f"pop mode {pop_mode} out of range 0..2")
        if current and positions[2 * current - 2] < 0 and positions[2 * current - 1] < 0:
            raise FabricConfigError(f"switch position {current} of color {color} at "
                                    f"{_pe(x, y)} is not defined")
        for k in range(3):
            ptx = positions[2 * k + 1]
            for d in _MASK_DIRS[max(ptx, 0)]:
                if d != Direction.RAMP and pe.neighbour[d] < 0 and not pe.sinks >> d & 1:
                    raise FabricConfigError(
                        f"switch position {k + 1} of color {color} at {_pe(x, y)} sends "
                        f"{_NAMES[d]} off the grid (no edge sink enabled)")
        pe.sw[color] = [int(m) for m in positions] + [current, int(bool(ring_mode)), pop_mode]
        self._refresh(pe, color)

    def router_config(self, x: int, y: int, kind: int, color: int, value: int) -> None:
        """What ``<tile_config>`` does to a router at run time (ROUTER_CONFIG_KINDS):
        0 reset position 0's route (``value`` = rx | tx << 5), 1 back to position 0,
        2 invalidate positions 1..3 (ring and pop mode stay), 3..5 set position 1..3's rx
        to the mask ``value``, 6..8 its tx, 9 leave teardown mode."""
        pe = self._at(x, y)
        self._check_color(color)
        if kind == 0:
            self.set_route(x, y, color, value & 31, value >> 5)
            return
        if kind == 10:
            self._rebind_input_queue(pe, value & 0xFF, color, bool(value >> 8 & 1))
            return
        if kind == 9:
            self.set_teardown(x, y, color, False)
            return
        if not 1 <= kind <= 8:
            raise FabricConfigError(f"router configuration kind {kind} out of range 0..9")
        st = list(pe.sw.get(color, [-1] * 6 + [0, 0, POP_NONE]))
        if kind == 1:
            st[6] = 0
        elif kind == 2:
            if st[6]:
                raise FabricConfigError(
                    f"switch position {st[6]} of color {color} at {_pe(x, y)} is the current "
                    f"one and cannot be invalidated (clear the current position first)")
            st[:6] = [-1] * 6
        else:
            st[(kind - 3) * 2 if kind <= 5 else (kind - 6) * 2 + 1] = value
        self.set_switches(x, y, color, st[:6], st[6], bool(st[7]), st[8])

    def _rebind_input_queue(self, pe: _PE, q: int, color: int, filter_enable: bool) -> None:
        """``input_queue_config.encode_input_queue(q, color, filter_enable)``: input queue
        ``q`` now receives ``color``. A color the model had given an implicit queue (WSE-2's
        queues from 8 on) moves to ``q`` with the wavelets already there; one bound to another
        user queue is an error. A filter on the color needs ``filter_enable``."""
        self._check_queue("input", q)
        if not filter_enable and (color in pe.filt or color in pe.cfilt):
            raise FabricConfigError(
                f"input queue {q} of {_pe(pe.x, pe.y)} takes color {color} with its filter "
                f"disabled, which is not supported by waferscale yet")
        old = pe.color_iq[color]
        if old == q:
            return
        if old >= 0 and old < 8:
            raise FabricConfigError(
                f"color {color} is already bound to input queue {old} of {_pe(pe.x, pe.y)}")
        if pe.iq_color[q] >= 0:
            pe.color_iq[pe.iq_color[q]] = -1
            pe.iq_color[q] = -1
        if old >= 0:
            moved = pe.iq[old]
            if len(pe.iq[q]) + len(moved) > self._iq_depths[q]:
                raise FabricConfigError(
                    f"input queue {q} of {_pe(pe.x, pe.y)} cannot take the {len(moved)} "
                    f"wavelet(s) of color {color} waiting for it")
            pe.iq[q].extend(moved)
            moved.clear()
            pe.iq_color[old] = -1
            hw = pe.index * len(self._iq_depths) + q
            self._iq_hw[hw] = max(self._iq_hw[hw], len(pe.iq[q]))
        pe.iq_color[q] = color
        pe.color_iq[color] = q

    def switch_state(self, x: int, y: int, color: int) -> tuple[int, ...]:
        """``(rx1, tx1, rx2, tx2, rx3, tx3, current, ring_mode, pop_mode)`` of ``color``
        at PE ``(x, y)`` (all -1 and position 0 when it has no switches)."""
        pe = self._at(x, y)
        self._check_color(color)
        sw = pe.sw.get(color)
        return tuple(sw) if sw is not None else (-1,) * 6 + (0, 0, 0)

    def set_teardown(self, x: int, y: int, color: int, on: bool) -> None:
        """Put ``color`` at PE ``(x, y)`` in teardown mode (its wavelets wait in their
        buffers) or take it out (``tile_config.teardown.exit``)."""
        pe = self._at(x, y)
        self._check_color(color)
        if on:
            pe.teardown |= 1 << color
        else:
            pe.teardown &= ~(1 << color)
        self._refresh(pe, color)

    def set_filter(self, x: int, y: int, color: int, lo: int, hi: int) -> None:
        """A range filter on ``color`` at PE ``(x, y)``: only data wavelets whose upper 16 bits
        are in ``lo..hi`` go down RAMP (``lo = -1``: no filter)."""
        pe = self._at(x, y)
        self._check_color(color)
        if lo < 0:
            pe.filt.pop(color, None)
        elif not 0 <= lo <= 0xFFFF or not 0 <= hi <= 0xFFFF:
            raise FabricConfigError(f"filter range {lo}..{hi} out of range 0..65535")
        else:
            pe.filt[color] = (lo, hi)

    def set_counter_filter(self, x: int, y: int, color: int, init: int, max_counter: int,
                           limit: int, count_data: bool, count_control: bool) -> None:
        """A counter filter on ``color`` at PE ``(x, y)`` (``limit < 0``: none). The counter
        starts at ``init``; each forwarded wavelet of a counted kind counts (after ``limit``
        it goes back to 0) and reaches the CE only while the counter is <= ``max_counter``
        (doc-gap: the rule that gives topic-16's "the first two wavelets of each 15")."""
        pe = self._at(x, y)
        self._check_color(color)
        if limit < 0:
            pe.cfilt.pop(color, None)
            return
        for v in (init, max_counter, limit):
            if not 0 <= v <= 0xFFFF:
                raise FabricConfigError(f"counter filter value {v} out of range 0..65535")
        pe.cfilt[color] = [init, max_counter, limit, int(bool(count_data)),
                           int(bool(count_control))]

    def set_queue_wait(self, x: int, y: int, on: bool) -> None:
        """See _PE.queue_wait."""
        self._at(x, y).queue_wait = bool(on)

    def set_color_swap(self, x: int, y: int, color: int, mask: int) -> None:
        """Color swap of ``color`` at PE ``(x, y)`` (WSE-2's ``.color_swap_x/_y``): bit 0, its
        wavelets leave EAST or WEST as ``color ^ 1``; bit 1, NORTH or SOUTH."""
        pe = self._at(x, y)
        self._check_color(color)
        if not 0 <= mask <= 3:
            raise FabricConfigError(f"color swap mask {mask} out of range 0..3")
        if mask:
            pe.swap[color] = mask
        else:
            pe.swap.pop(color, None)

    def in_teardown(self, x: int, y: int, color: int) -> bool:
        pe = self._at(x, y)
        self._check_color(color)
        return bool(pe.teardown >> color & 1)

    def take_teardowns(self) -> list[tuple[int, int, int, int]]:
        """Remove and return ``(cycle, x, y, color)`` of every teardown command a router
        has executed (its color entered teardown mode in that cycle)."""
        taken = self._teardowns
        self._teardowns = []
        return taken

    def get_route(self, x: int, y: int, color: int) -> tuple[int, int]:
        """The ``(rx, tx)`` bitmasks of ``color`` at PE ``(x, y)``."""
        pe = self._at(x, y)
        self._check_color(color)
        return pe.base_rx[color], pe.base_tx[color]

    def enable_edge_sink(self, x: int, y: int, direction: int) -> None:
        """Let routes at PE ``(x, y)`` send ``direction`` off the grid, into a sink."""
        pe = self._at(x, y)
        self._edge_port(pe, direction, "enable_edge_sink")
        pe.sinks |= 1 << direction
        self._sink_log.setdefault(pe.index * NUM_DIRECTIONS + direction, [])

    def edge_sink_take(self, x: int, y: int, direction: int) -> list[tuple[int, int, int, bool]]:
        """Remove and return the ``(cycle, color, payload, ctrl)`` records of a sink."""
        pe = self._at(x, y)
        self._check_direction(direction)
        key = pe.index * NUM_DIRECTIONS + direction
        if key not in self._sink_log:
            raise FabricConfigError(
                f"no edge sink enabled for {_pe(x, y)} {_NAMES[direction]}")
        taken = self._sink_log[key]
        self._sink_log[key] = []
        return taken

    def bind_input_queue(self, x: int, y: int, q: int, color: int) -> None:
        """Deliver wavelets of ``color`` reaching RAMP at PE ``(x, y)`` into input queue ``q``."""
        pe = self._at(x, y)
        self._check_queue("input", q)
        self._check_color(color)
        if pe.iq_color[q] == color:
            return
        if pe.iq_color[q] >= 0:
            raise FabricConfigError(
                f"input queue {q} of {_pe(x, y)} is already bound to color {pe.iq_color[q]}; "
                f"unbind it first")
        if pe.color_iq[color] >= 0:
            raise FabricConfigError(
                f"color {color} is already bound to input queue {pe.color_iq[color]} "
                f"of {_pe(x, y)}")
        pe.iq_color[q] = color
        pe.color_iq[color] = q

    def unbind_input_queue(self, x: int, y: int, q: int) -> None:
        """Remove the color binding of input queue ``q`` (queued wavelets stay readable)."""
        pe = self._at(x, y)
        self._check_queue("input", q)
        if pe.iq_color[q] >= 0:
            pe.color_iq[pe.iq_color[q]] = -1
            pe.iq_color[q] = -1

    def input_queue_color(self, x: int, y: int, q: int) -> int:
        """The color bound to input queue ``q`` of PE ``(x, y)``, or -1."""
        pe = self._at(x, y)
        self._check_queue("input", q)
        return pe.iq_color[q]

    # ---- CE side and host side ----

    def ce_send(self, x: int, y: int, oq: int, color: int, payload: int,
                ctrl: bool = False) -> bool:
        """Push a wavelet into output queue ``oq``; ``False`` (nothing pushed) when full."""
        pe = self._at(x, y)
        self._check_queue("output", oq)
        self._check_color(color)
        if not 0 <= payload <= MAX_PAYLOAD:
            raise FabricConfigError(f"payload {payload} does not fit in 32 bits")
        queue = pe.oq[oq]
        if len(queue) >= self._oq_depths[oq]:
            return False
        queue.append((color, payload, bool(ctrl)))
        pe.oq_count += 1
        self._add_load(pe)
        hw = pe.index * len(self._oq_depths) + oq
        self._oq_hw[hw] = max(self._oq_hw[hw], len(queue))
        return True

    def ce_recv(self, x: int, y: int, iq: int) -> tuple[int, bool] | None:
        """Pop ``(payload, ctrl)`` from input queue ``iq``, or ``None`` when it is empty."""
        pe = self._at(x, y)
        self._check_queue("input", iq)
        queue = pe.iq[iq]
        if not queue or queue[0][2] > self._cycle:
            return None
        payload, ctrl, _ = queue.popleft()
        return payload, ctrl

    def ce_peek(self, x: int, y: int, iq: int) -> tuple[int, bool] | None:
        """The head ``(payload, ctrl)`` of input queue ``iq`` without popping it, or ``None``."""
        pe = self._at(x, y)
        self._check_queue("input", iq)
        queue = pe.iq[iq]
        return queue[0][:2] if queue and queue[0][2] <= self._cycle else None

    def iq_count(self, x: int, y: int, iq: int) -> int:
        """Wavelets the CE can read from input queue ``iq`` now (not those still on the ramp)."""
        pe = self._at(x, y)
        self._check_queue("input", iq)
        n = 0
        for entry in pe.iq[iq]:
            if entry[2] > self._cycle:
                break
            n += 1
        return n

    def oq_count(self, x: int, y: int, oq: int) -> int:
        """Wavelets waiting in output queue ``oq``."""
        pe = self._at(x, y)
        self._check_queue("output", oq)
        return len(pe.oq[oq])

    def oq_free(self, x: int, y: int, oq: int) -> int:
        """Free places in output queue ``oq``."""
        pe = self._at(x, y)
        self._check_queue("output", oq)
        return self._oq_depths[oq] - len(pe.oq[oq])

    def inject(self, x: int, y: int, direction: int, color: int, payload: int,
               ctrl: bool = False) -> bool:
        """Host I/O: send a wavelet into PE ``(x, y)`` through the edge port ``direction``.
        It crosses the host link during the next cycle (landing in the port's input buffer at
        its end). ``False`` when that buffer is full or this host link already carries a
        wavelet in the coming cycle (one wavelet per link per cycle)."""
        pe = self._at(x, y)
        self._edge_port(pe, direction, "inject")
        self._check_color(color)
        if not 0 <= payload <= MAX_PAYLOAD:
            raise FabricConfigError(f"payload {payload} does not fit in 32 bits")
        if not (pe.accept[color] >> direction & 1 or pe.teardown >> color & 1):
            raise FabricRoutingError(
                f"cycle {self._cycle}: wavelet injected into {_pe(x, y)} from "
                f"{_NAMES[direction]} on color {color}, but color {color} there accepts "
                f"rx={format_mask(pe.rx[color])}")
        link = pe.index * NUM_DIRECTIONS + direction
        slot = direction * NUM_COLORS + color
        if link in self._host_links_used or len(pe.buf[slot]) >= self._depth:
            return False
        # The wavelet crosses the host link during the next cycle, like a CE's wavelet
        # crossing RAMP, and lands in the buffer at the end of it.
        self._host_links_used.add(link)
        self._injections.append((pe, slot, payload, bool(ctrl)))
        self._add_load(pe)
        self._link_in[link] += 1
        return True

    # ---- time ----

    @property
    def cycle(self) -> int:
        """Cycles run so far (the index of the next cycle)."""
        return self._cycle

    @property
    def in_flight(self) -> int:
        """Wavelets in router buffers, output queues, on host links and on the ramp into an
        input queue (readable input-queue wavelets and sinks excluded)."""
        return self._in_flight

    @property
    def idle(self) -> bool:
        """True when no wavelet is in any router buffer or output queue."""
        return self._in_flight == 0

    def step(self, n: int = 1) -> int:
        """Run up to ``n`` cycles; stop early when idle. Returns the cycles run."""
        if n < 0:
            raise FabricConfigError(f"step count must be >= 0, got {n}")
        done = 0
        while done < n and self._in_flight:
            self._run_cycle()
            done += 1
        return done

    def advance_clock(self, n: int) -> None:
        """Skip ``n`` idle cycles (nothing can happen in them). Needs an idle fabric."""
        if n < 0:
            raise FabricConfigError(f"advance_clock count must be >= 0, got {n}")
        if self._in_flight:
            raise FabricError(
                f"advance_clock needs an idle fabric; {self._in_flight} wavelets are in flight")
        self._cycle += n

    def tick(self) -> None:
        """Advance exactly one cycle: run it, or let it pass when the fabric is idle."""
        if self._in_flight:
            self._run_cycle()
        else:
            self._cycle += 1

    def stuck(self) -> bool:
        """True when wavelets are in flight but the next cycle would neither move one nor
        raise a routing error: every router buffer head and output-queue head waits on a full
        queue or buffer or has an empty ``tx``, and no host link is busy. Nothing changes
        (except stall counters) until a CE or the host acts."""
        if not self._in_flight or self._injections or self._ramp_in_flight:
            return False
        for index in self._active:
            pe = self._pes[index]
            for slot in pe.nonempty:
                if pe.buf[slot][0][2] > self._cycle:
                    return False          # still in the router's pipeline: time moves it
                color = slot % NUM_COLORS
                try:
                    tx, held = self._head_route(pe, slot)
                except FabricRoutingError:
                    return False
                if held:
                    continue
                if not tx:
                    if self._dropped(pe, slot):
                        return False
                    continue
                if self._can_take(pe, color, tx, 0):
                    return False
            for queue in pe.oq:
                if queue:
                    color = queue[0][0]
                    if not (pe.accept[color] & _RAMP_BIT or pe.teardown >> color & 1) or \
                            len(pe.buf[Direction.RAMP * NUM_COLORS + color]) < self._ramp_depth:
                        return False
        return True

    # ---- the cycle ----

    def _add_load(self, pe: _PE) -> None:
        pe.load += 1
        self._in_flight += 1
        self._active.add(pe.index)

    def _push_buffer(self, pe: _PE, slot: int, payload: int, ctrl: bool, ready: int) -> None:
        buf = pe.buf[slot]
        buf.append((payload, ctrl, ready))
        pe.nonempty.add(slot)
        self._add_load(pe)
        hw = pe.index * NUM_SLOTS + slot
        self._buf_hw[hw] = max(self._buf_hw[hw], len(buf))

    def _check_destinations(self, pe: _PE, color: int, tx: int) -> None:
        """Raise if forwarding on ``tx`` would break a route (checked every cycle a wavelet
        heads a buffer, before any capacity check, so the error does not depend on timing)."""
        for o in _MASK_DIRS[tx]:
            if o == Direction.RAMP:
                if pe.color_iq[color] < 0 and not pe.queue_wait:
                    raise FabricRoutingError(
                        f"cycle {self._cycle}: wavelet on color {color} routed to RAMP at "
                        f"{_pe(pe.x, pe.y)}, but no input queue of {_pe(pe.x, pe.y)} is bound "
                        f"to color {color}")
                continue
            nb = pe.neighbour[o]
            if nb < 0:
                continue  # edge sink (set_route guarantees one)
            other = self._pes[nb]
            back = _OPPOSITE[o]
            oc = self._out_color(pe, color, o)
            if not (other.accept[oc] >> back & 1 or other.teardown >> oc & 1):
                raise FabricRoutingError(
                    f"cycle {self._cycle}: {_pe(pe.x, pe.y)} forwards a wavelet on color "
                    f"{color} {_NAMES[o]} to {_pe(other.x, other.y)}, which does not accept "
                    f"color {oc} from {_NAMES[back]} (rx={format_mask(other.rx[oc])})")

    @staticmethod
    def _out_color(pe: _PE, color: int, o: int) -> int:
        """The color a wavelet of ``color`` leaves ``pe`` with through output ``o``."""
        sw = pe.swap.get(color, 0)
        if sw and ((sw & 1 and o in (Direction.EAST, Direction.WEST)) or
                   (sw & 2 and o in (Direction.NORTH, Direction.SOUTH))):
            return color ^ 1
        return color

    def _can_take(self, pe: _PE, color: int, tx: int, used: int) -> bool:
        """All-or-nothing test of a multicast: every output link free, every target not full
        at the start of the cycle."""
        if tx & used:
            return False
        for o in _MASK_DIRS[tx]:
            if o == Direction.RAMP:
                q = pe.color_iq[color]
                if q < 0 or len(pe.iq[q]) >= self._iq_depths[q]:
                    return False
            else:
                nb = pe.neighbour[o]
                if nb >= 0 and len(self._pes[nb].buf[_OPPOSITE[o] * NUM_COLORS
                                                     + self._out_color(pe, color, o)]) \
                        >= self._depth:
                    return False
        return True

    def _head_route(self, pe: _PE, slot: int) -> tuple[int, bool]:
        """``(tx, held)`` of the wavelet heading buffer ``slot``: the outputs it goes to
        (without RAMP for a control wavelet whose slot-0 command has NOCE set), and whether
        it must wait for the router (its color in teardown mode, or its input direction not
        in the current switch position's ``rx``). Raises what a wavelet that can never leave
        breaks (an input direction no position accepts; a wrong route ahead)."""
        direction, color = divmod(slot, NUM_COLORS)
        if pe.teardown >> color & 1:
            return 0, True
        if not pe.rx[color] >> direction & 1:
            if not pe.accept[color] >> direction & 1:
                raise FabricRoutingError(
                    f"cycle {self._cycle}: {_pe(pe.x, pe.y)} holds a wavelet on color {color} "
                    f"from {_NAMES[direction]}, which no route or switch position of color "
                    f"{color} there accepts (rx={format_mask(pe.rx[color])})")
            return 0, True
        tx = self._head_tx(pe, slot)
        self._check_destinations(pe, color, tx)
        return tx, False

    def _head_tx(self, pe: _PE, slot: int) -> int:
        """The outputs of the wavelet heading ``slot`` under the route in effect: its color's
        tx, without RAMP when the CE is kept from it (_ce_filtered)."""
        tx = pe.tx[slot % NUM_COLORS]
        return tx & ~_RAMP_BIT if self._ce_filtered(pe, slot) else tx

    def _ce_filtered(self, pe: _PE, slot: int) -> bool:
        """Whether the wavelet heading ``slot`` is kept from the CE: a control wavelet whose
        slot-0 command has NOCE set, or a data wavelet outside its color's range filter."""
        payload, ctrl, _ = pe.buf[slot][0]
        cf = pe.cfilt.get(slot % NUM_COLORS)
        if cf is not None and cf[4 if ctrl else 3] and cf[0] > cf[1]:
            return True
        if ctrl:
            return control_command(payload)[1]
        f = pe.filt.get(slot % NUM_COLORS)
        return f is not None and not f[0] <= payload >> 16 <= f[1]

    def _dropped(self, pe: _PE, slot: int) -> bool:
        """A wavelet whose only output was the CE, which NOCE or a filter keeps from it: the
        router consumes it (executing a control wavelet's command) and sends it nowhere."""
        return pe.tx[slot % NUM_COLORS] == _RAMP_BIT and self._ce_filtered(pe, slot)

    def _execute(self, pe: _PE, color: int, payload: int, t: int) -> int:
        """A router forwards a control wavelet: run its slot-0 command on ``color`` (the
        route changes from the next wavelet on) and return the payload it forwards (slot 0
        popped when the pop mode says so)."""
        cmd, _noce = control_command(payload)
        sw = pe.sw.get(color)
        advanced = False
        if cmd == CMD_TEARDOWN:
            pe.teardown |= 1 << color
            self._teardowns.append((t, pe.x, pe.y, color))
            self._refresh(pe, color)
        elif sw is not None and cmd == CMD_SWITCH_RST:
            sw[6] = 0
            self._refresh(pe, color)
        elif sw is not None and cmd == CMD_SWITCH_ADV:
            cur = sw[6]
            nxt = next((k for k in range(cur + 1, 4)
                        if sw[2 * k - 2] >= 0 or sw[2 * k - 1] >= 0), -1)
            if nxt < 0:
                nxt = 0 if sw[7] else cur     # past the last position: wrap in ring mode
            advanced = nxt != cur
            sw[6] = nxt
            self._refresh(pe, color)
        # Pop on advance pops a command that moved the switch: a router on its last position
        # (no ring mode) leaves the advance to the next router (doc-gap; the cholesky
        # benchmark's retired PEs advance the next PE's switch this way).
        if sw is not None and (sw[8] == POP_ALWAYS or (sw[8] == POP_ON_ADVANCE and advanced)):
            payload = control_pop(payload)
        return payload

    def _run_cycle(self) -> None:
        t = self._cycle
        moves: list[tuple[_PE, int, int]] = []         # (pe, slot, tx)
        ce_moves: list[tuple[_PE, int]] = []           # (pe, output queue)
        stalls: list[tuple[_PE, int]] = []             # (pe, wavelets that waited)
        pointers: list[tuple[_PE, int, int]] = []      # (pe, new rr, new oq_rr)

        # Decide: reads the start-of-cycle state only, so the order of PEs cannot matter.
        for index in sorted(self._active):
            pe = self._pes[index]
            stalled = 0
            first = -1
            if pe.nonempty:
                used = 0
                slots = sorted(pe.nonempty)
                k = bisect.bisect_left(slots, pe.rr)
                for slot in slots[k:] + slots[:k]:
                    color = slot % NUM_COLORS
                    tx, held = self._head_route(pe, slot)
                    if pe.buf[slot][0][2] > t:
                        continue              # still in the router's pipeline (not a stall)
                    if held or (tx == 0 and not self._dropped(pe, slot)) or \
                            not self._can_take(pe, color, tx, used):
                        stalled += 1
                        continue
                    used |= tx
                    if first < 0:
                        first = slot
                    moves.append((pe, slot, tx))
            chosen = -1
            if pe.oq_count:
                n_oq = len(pe.oq)
                for q in range(n_oq):
                    if pe.oq[q]:
                        color = pe.oq[q][0][0]
                        if not (pe.accept[color] & _RAMP_BIT or pe.teardown >> color & 1):
                            raise FabricRoutingError(
                                f"cycle {t}: {_pe(pe.x, pe.y)} output queue {q} sends a "
                                f"wavelet on color {color} into its router from RAMP, but "
                                f"color {color} there accepts rx={format_mask(pe.rx[color])}")
                for k in range(n_oq):
                    q = (pe.oq_rr + k) % n_oq
                    if pe.oq[q] and len(pe.buf[Direction.RAMP * NUM_COLORS + pe.oq[q][0][0]]) \
                            < self._ramp_depth:
                        chosen = q
                        break
                waiting = sum(1 for queue in pe.oq if queue)
                stalled += waiting - (chosen >= 0)
                if chosen >= 0:
                    ce_moves.append((pe, chosen))
            if stalled:
                stalls.append((pe, stalled))
            if first >= 0 or chosen >= 0:
                pointers.append((pe, (first + 1) % NUM_SLOTS if first >= 0 else pe.rr,
                                 (chosen + 1) % len(pe.oq) if chosen >= 0 else pe.oq_rr))

        # Commit: every move lands at the end of the cycle.
        for pe, slot, tx in moves:
            buf = pe.buf[slot]
            payload, ctrl, _ = buf.popleft()
            if not buf:
                pe.nonempty.discard(slot)
            pe.load -= 1
            self._in_flight -= 1
            color = slot % NUM_COLORS
            cf = pe.cfilt.get(color)
            if cf is not None and cf[4 if ctrl else 3]:
                cf[0] = 0 if cf[0] >= cf[2] else cf[0] + 1
            if ctrl:
                payload = self._execute(pe, color, payload, t)
            for o in _MASK_DIRS[tx]:
                self._link_out[pe.index * NUM_DIRECTIONS + o] += 1
                if o == Direction.RAMP:
                    q = pe.color_iq[color]
                    pe.iq[q].append((payload, ctrl, t + self._ramp_in))
                    if self._ramp_in > 1:
                        self._ramp_in_flight.append((t + self._ramp_in, pe.index))
                        self._add_load(pe)
                    hw = pe.index * len(self._iq_depths) + q
                    self._iq_hw[hw] = max(self._iq_hw[hw], len(pe.iq[q]))
                    if self._record:
                        self._deliveries.append((t, pe.x, pe.y, q, color, payload, ctrl))
                    continue
                nb = pe.neighbour[o]
                oc = self._out_color(pe, color, o)
                if nb < 0:
                    self._sink_log[pe.index * NUM_DIRECTIONS + o].append(
                        (t, oc, payload, ctrl))
                    continue
                other = self._pes[nb]
                back = _OPPOSITE[o]
                self._link_in[nb * NUM_DIRECTIONS + back] += 1
                self._push_buffer(other, back * NUM_COLORS + oc, payload, ctrl,
                                  t + self._hop)
        for pe, q in ce_moves:
            color, payload, ctrl = pe.oq[q].popleft()
            pe.oq_count -= 1
            pe.load -= 1
            self._in_flight -= 1
            self._link_in[pe.index * NUM_DIRECTIONS + Direction.RAMP] += 1
            self._push_buffer(pe, Direction.RAMP * NUM_COLORS + color, payload, ctrl,
                              t + self._ramp_out)
        for pe, slot, payload, ctrl in self._injections:
            pe.load -= 1  # counted since inject(); _push_buffer counts it again
            self._in_flight -= 1
            self._push_buffer(pe, slot, payload, ctrl, t + self._hop)
        self._injections.clear()
        # Wavelets readable since this cycle leave the ramp: counted in flight up to then, so
        # the cycle in which one becomes readable still runs (the CE reads it then).
        while self._ramp_in_flight and self._ramp_in_flight[0][0] <= t:
            _, index = self._ramp_in_flight.popleft()
            self._pes[index].load -= 1
            self._in_flight -= 1
        for pe, stalled in stalls:
            self._stall_cycles[pe.index] += 1
            self._stalled[pe.index] += stalled
        for pe, rr, oq_rr in pointers:
            pe.rr, pe.oq_rr = rr, oq_rr
        self._active = {i for i in self._active if self._pes[i].load}
        self._host_links_used.clear()
        self._cycle = t + 1

    # ---- introspection ----

    def take_deliveries(self) -> list[tuple[int, int, int, int, int, int, bool]]:
        """Remove and return the delivery log ``(cycle, x, y, queue, color, payload, ctrl)``
        (empty unless created with ``record_deliveries``)."""
        taken = self._deliveries
        self._deliveries = []
        return taken

    def _wait_reasons(self, pe: _PE, color: int, tx: int) -> list[str]:
        if tx == 0:
            return [f"no route: color {color} has an empty tx at {_pe(pe.x, pe.y)}"]
        reasons = []
        for o in _MASK_DIRS[tx]:
            if o == Direction.RAMP:
                q = pe.color_iq[color]
                if q < 0:
                    reasons.append(
                        f"no input queue of {_pe(pe.x, pe.y)} is bound to color {color}")
                elif len(pe.iq[q]) >= self._iq_depths[q]:
                    reasons.append(f"input queue {q} of {_pe(pe.x, pe.y)} full")
                continue
            nb = pe.neighbour[o]
            if nb < 0:
                continue
            other = self._pes[nb]
            back = _OPPOSITE[o]
            oc = self._out_color(pe, color, o)
            if not (other.accept[oc] >> back & 1 or other.teardown >> oc & 1):
                reasons.append(
                    f"{_pe(other.x, other.y)} does not accept color {oc} from "
                    f"{_NAMES[back]} (rx={format_mask(other.rx[oc])})")
            elif len(other.buf[back * NUM_COLORS + oc]) >= self._depth:
                reasons.append(
                    f"buffer {_NAMES[back]}/color {oc} of {_pe(other.x, other.y)} full")
        return reasons

    def blocked_wavelets(self) -> list[tuple[int, int, str, int, str]]:
        """Every buffer or output-queue head that cannot move in the current state, as
        ``(x, y, in_direction, color, waits_on)``, ordered by PE (row-major), then router
        slot (direction-major), then output queue. Link contention is not a blocking reason."""
        out = []
        for index in sorted(self._active):
            pe = self._pes[index]
            for slot in sorted(pe.nonempty):
                if pe.buf[slot][0][2] > self._cycle:
                    continue
                direction, color = divmod(slot, NUM_COLORS)
                if pe.teardown >> color & 1:
                    reasons = [f"color {color} of {_pe(pe.x, pe.y)} is in teardown mode"]
                elif not pe.rx[color] >> direction & 1:
                    reasons = [f"the switch position of color {color} at {_pe(pe.x, pe.y)} "
                               f"does not take wavelets from {_NAMES[direction]} "
                               f"(rx={format_mask(pe.rx[color])})"]
                elif self._dropped(pe, slot):
                    continue
                else:
                    reasons = self._wait_reasons(pe, color, self._head_tx(pe, slot))
                if reasons:
                    out.append((pe.x, pe.y, _NAMES[direction], color, "; ".join(reasons)))
            for q, queue in enumerate(pe.oq):
                if not queue:
                    continue
                color = queue[0][0]
                if not (pe.accept[color] & _RAMP_BIT or pe.teardown >> color & 1):
                    reason = (f"{_pe(pe.x, pe.y)} does not accept color {color} from RAMP "
                              f"(rx={format_mask(pe.rx[color])})")
                elif len(pe.buf[Direction.RAMP * NUM_COLORS + color]) >= self._ramp_depth:
                    reason = f"buffer RAMP/color {color} of {_pe(pe.x, pe.y)} full"
                else:
                    continue
                out.append((pe.x, pe.y, f"OQ{q}", color, reason))
        return out

    def counters(self) -> dict[str, Any]:
        """The counters as a dict (see :class:`FabricCounters` for the meaning)."""
        h, w = self.height, self.width
        return {
            "cycle": self._cycle,
            "link_out": np.array(self._link_out, dtype=np.int64).reshape(h, w, NUM_DIRECTIONS),
            "link_in": np.array(self._link_in, dtype=np.int64).reshape(h, w, NUM_DIRECTIONS),
            "stall_cycles": np.array(self._stall_cycles, dtype=np.int64).reshape(h, w),
            "stalled_wavelet_cycles": np.array(self._stalled, dtype=np.int64).reshape(h, w),
            "iq_high_water": np.array(self._iq_hw, dtype=np.int64).reshape(h, w, -1),
            "oq_high_water": np.array(self._oq_hw, dtype=np.int64).reshape(h, w, -1),
            "buffer_high_water": np.array(self._buf_hw, dtype=np.int64).reshape(
                h, w, NUM_DIRECTIONS, NUM_COLORS),
        }


# --------------------------------------------------------------------------------------------
# Backend selection and the public class


def _load_cpp() -> ModuleType | None:
    try:
        from waferscale import _fabric  # type: ignore[attr-defined]
    except ImportError as exc:
        log.debug("C++ fabric core not available (%s); using the Python reference", exc)
        return None
    _fabric.set_error_types(FabricError, FabricConfigError, FabricRoutingError)
    return _fabric


_CPP: ModuleType | None = _load_cpp()
Backend = Literal["auto", "cpp", "python"]
DirectionLike = Direction | int | str


def cpp_available() -> bool:
    """True when the C++ core ``waferscale._fabric`` is importable."""
    return _CPP is not None


def as_direction(value: DirectionLike) -> Direction:
    """``Direction`` from a Direction, its int value or its name (case-insensitive)."""
    if isinstance(value, str):
        try:
            return Direction[value.upper()]
        except KeyError:
            raise FabricConfigError(
                f"unknown direction {value!r}; expected one of {', '.join(_NAMES)}") from None
    try:
        return Direction(value)
    except ValueError:
        raise FabricConfigError(f"unknown direction {value!r}") from None


def direction_mask(directions: Iterable[DirectionLike] | DirectionLike) -> int:
    """Bitmask of a set of directions (a single direction is accepted too)."""
    if isinstance(directions, (str, int)):
        directions = [directions]
    mask = 0
    for d in directions:
        mask |= 1 << as_direction(d)
    return mask


def mask_directions(mask: int) -> frozenset[Direction]:
    """The set of directions of a bitmask."""
    return frozenset(Direction(d) for d in _MASK_DIRS[mask])


class Fabric:
    """A W x H grid of routers with CE-side queues, on the C++ core or the Python reference.

    ``backend="auto"`` uses C++ when importable; ``"cpp"`` requires it; ``"python"`` forces
    the reference. The two give identical results. Typical use by the PE model, each cycle::

        fabric.ce_send(x, y, oq, color, payload)   # False: queue full, retry later
        fabric.ce_recv(x, y, iq)                   # (payload, ctrl) or None
        fabric.tick()                              # one cycle, even when idle

    ``step(n)`` is for running ahead: it stops at the first idle cycle (so ``step(1)`` on an
    idle fabric does not advance the clock); :meth:`advance_clock` skips idle time.

    :attr:`core` is the backend object itself, with the same hot-path methods
    (``ce_send``, ``ce_recv``, ``ce_peek``, ``iq_count``, ``oq_count``, ``oq_free``,
    ``inject``, ``step``, ``tick``, ``stuck``) taking plain ints; callers in a tight loop may
    use it to save a Python call per operation.
    """

    def __init__(self, width: int, height: int, options: FabricOptions | None = None, *,
                 backend: Backend = "auto") -> None:
        self.options = options or FabricOptions()
        if backend not in ("auto", "cpp", "python"):
            raise FabricConfigError(f"backend must be 'auto', 'cpp' or 'python', got {backend!r}")
        if backend == "cpp" and _CPP is None:
            raise FabricError("backend='cpp' requested but waferscale._fabric is not built "
                              "(run `pip install -e .` with a C++17 compiler)")
        opts = self.options
        args = (width, height, list(opts.iq_depths), list(opts.oq_depths),
                opts.router_buffer_depth, opts.record_deliveries, opts.hop_latency,
                opts.ce_to_router_latency, opts.router_to_ce_latency)
        self.backend: Literal["cpp", "python"]
        self.core: Any
        if _CPP is not None and backend != "python":
            self.backend, self.core = "cpp", _CPP.Core(*args)
        else:
            self.backend, self.core = "python", PyFabricCore(*args)
        self.width, self.height = width, height
        log.debug("fabric %dx%d on the %s backend, %s", width, height, self.backend, opts)

    # ---- configuration ----

    def set_route(self, x: int, y: int, color: int,
                  rx: Iterable[DirectionLike] | DirectionLike,
                  tx: Iterable[DirectionLike] | DirectionLike) -> None:
        """Set the route of ``color`` at PE ``(x, y)``: accepted input directions ``rx`` and
        output directions ``tx``. May be called between steps to re-route at run time; a
        ``tx`` leaving the grid needs :meth:`enable_edge_sink` first."""
        self.core.set_route(x, y, color, direction_mask(rx), direction_mask(tx))

    def route(self, x: int, y: int, color: int) -> tuple[frozenset[Direction],
                                                         frozenset[Direction]]:
        """The ``(rx, tx)`` sets of ``color`` at PE ``(x, y)``."""
        rx, tx = self.core.get_route(x, y, color)
        return mask_directions(rx), mask_directions(tx)

    def set_switches(self, x: int, y: int, color: int, positions: Sequence[int], current: int,
                     ring_mode: bool, pop_mode: int) -> None:
        """Switch positions 1..3 of ``color`` at PE ``(x, y)`` (PyFabricCore.set_switches)."""
        self.core.set_switches(x, y, color, list(positions), current, ring_mode, pop_mode)

    def switch_state(self, x: int, y: int, color: int) -> tuple[int, ...]:
        """``(rx1, tx1, rx2, tx2, rx3, tx3, current, ring_mode, pop_mode)``."""
        return tuple(self.core.switch_state(x, y, color))

    def set_teardown(self, x: int, y: int, color: int, on: bool) -> None:
        """Enter or leave teardown mode of ``color`` at PE ``(x, y)``."""
        self.core.set_teardown(x, y, color, on)

    def in_teardown(self, x: int, y: int, color: int) -> bool:
        return bool(self.core.in_teardown(x, y, color))

    def take_teardowns(self) -> list[tuple[int, int, int, int]]:
        """``(cycle, x, y, color)`` of each teardown command executed since the last call."""
        return [tuple(t) for t in self.core.take_teardowns()]  # type: ignore[misc]

    def enable_edge_sink(self, x: int, y: int, direction: DirectionLike) -> None:
        """Allow routes at edge PE ``(x, y)`` to send ``direction`` off the grid. Wavelets
        leaving there are kept (always accepted, unbounded) until :meth:`edge_sink_take`."""
        self.core.enable_edge_sink(x, y, int(as_direction(direction)))

    def edge_sink_take(self, x: int, y: int, direction: DirectionLike) -> list[EdgeWavelet]:
        """Remove and return, oldest first, the wavelets that left through a sink."""
        records = self.core.edge_sink_take(x, y, int(as_direction(direction)))
        return [EdgeWavelet(*r) for r in records]

    def bind_input_queue(self, x: int, y: int, q: int, color: int) -> None:
        """Deliver ``color``'s wavelets routed to RAMP at ``(x, y)`` into input queue ``q``.
        One color per queue and one queue per color; rebinding needs
        :meth:`unbind_input_queue`."""
        self.core.bind_input_queue(x, y, q, color)

    def unbind_input_queue(self, x: int, y: int, q: int) -> None:
        """Remove input queue ``q``'s binding; wavelets already queued stay readable."""
        self.core.unbind_input_queue(x, y, q)

    def input_queue_color(self, x: int, y: int, q: int) -> int | None:
        """The color bound to input queue ``q``, or None."""
        color = self.core.input_queue_color(x, y, q)
        return None if color < 0 else color

    # ---- CE and host I/O ----

    def ce_send(self, x: int, y: int, oq: int, color: int, payload: int,
                ctrl: bool = False) -> bool:
        """Push a wavelet (32-bit ``payload``) into CE output queue ``oq``. Returns False,
        pushing nothing, when the queue is full (backpressure on the CE)."""
        return self.core.ce_send(x, y, oq, color, payload, ctrl)

    def ce_recv(self, x: int, y: int, iq: int) -> tuple[int, bool] | None:
        """Pop the oldest ``(payload, ctrl)`` of CE input queue ``iq``; None when empty."""
        return self.core.ce_recv(x, y, iq)

    def ce_peek(self, x: int, y: int, iq: int) -> tuple[int, bool] | None:
        """Like :meth:`ce_recv` without popping."""
        return self.core.ce_peek(x, y, iq)

    def iq_count(self, x: int, y: int, iq: int) -> int:
        """Wavelets waiting in input queue ``iq``."""
        return self.core.iq_count(x, y, iq)

    def oq_count(self, x: int, y: int, oq: int) -> int:
        """Wavelets waiting in output queue ``oq``."""
        return self.core.oq_count(x, y, oq)

    def oq_free(self, x: int, y: int, oq: int) -> int:
        """Free places in output queue ``oq``."""
        return self.core.oq_free(x, y, oq)

    def inject(self, x: int, y: int, direction: DirectionLike, color: int, payload: int,
               ctrl: bool = False) -> bool:
        """Host I/O: a wavelet enters edge PE ``(x, y)`` from outside through ``direction``
        (which must lead off the grid and be in the color's rx). Returns False when the input
        buffer is full or that host link was already used in the current cycle."""
        return self.core.inject(x, y, int(as_direction(direction)), color, payload, ctrl)

    # ---- time ----

    @property
    def cycle(self) -> int:
        """Cycles run so far; the next :meth:`step` runs cycle number ``cycle``."""
        return self.core.cycle

    @property
    def idle(self) -> bool:
        """True when no wavelet is in a router buffer or an output queue."""
        return self.core.idle

    @property
    def in_flight(self) -> int:
        """Wavelets in router buffers and output queues."""
        return self.core.in_flight

    def step(self, n: int = 1) -> int:
        """Run up to ``n`` cycles; returns how many ran (fewer when the fabric went idle)."""
        return self.core.step(n)

    def advance_clock(self, n: int) -> None:
        """Add ``n`` idle cycles to the clock. Raises :class:`FabricError` unless idle."""
        self.core.advance_clock(n)

    def tick(self) -> None:
        """Advance exactly one cycle (run it, or let it pass when idle): what a PE model
        calls once per simulated cycle."""
        self.core.tick()

    def stuck(self) -> bool:
        """True when wavelets are in flight but none can move (nor raise) in the next cycle,
        whatever the order: a fabric deadlock unless a CE or the host acts. Link contention
        never makes a fabric stuck. :meth:`blocked_wavelets` says why."""
        return self.core.stuck()

    # ---- introspection ----

    def counters(self) -> FabricCounters:
        """A snapshot of all counters."""
        return FabricCounters(**self.core.counters())

    def blocked_wavelets(self) -> list[BlockedWavelet]:
        """Wavelets that cannot move in the current state and what each waits on (for
        deadlock reports)."""
        return [BlockedWavelet(*b) for b in self.core.blocked_wavelets()]

    def take_deliveries(self) -> list[Delivery]:
        """Remove and return the delivery log (needs ``record_deliveries=True``)."""
        if not self.options.record_deliveries:
            raise FabricError("take_deliveries needs FabricOptions(record_deliveries=True)")
        return [Delivery(*d) for d in self.core.take_deliveries()]

    def __repr__(self) -> str:
        return (f"Fabric({self.width}x{self.height}, backend={self.backend!r}, "
                f"cycle={self.cycle}, in_flight={self.in_flight})")
