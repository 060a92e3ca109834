"""Layout elaboration: from ``layout.csl`` + params to a :class:`Layout` value.

:func:`elaborate` runs the layout file's ``layout { ... }`` block at compile time, collecting the
rectangle, each PE's code file and bound params, each (PE, color) route and the exported
names, then elaborates every distinct PE program (same file + same params = one program) by
running its top-level ``comptime`` blocks. It enforces what cslc enforces:

- exactly one ``@set_rectangle``, before any ``@set_tile_code``; every PE of the rectangle gets
  code exactly once; coordinates inside the rectangle;
- colors 0..23, directions among NORTH/SOUTH/EAST/WEST/RAMP, one config per (PE, color);
- every ``@export_symbol`` matches an ``@export_name`` of the same type and mutability;
- with ``--memcpy``: the fabric-dims rule (1 halo + 3 memcpy columns west, 2 memcpy columns +
  1 halo east, 1 halo row north and south) and memcpy's reserved colors, queues, task IDs and
  microthread, which user code may not create; no routes on memcpy's stream colors.
"""

from __future__ import annotations

import functools
import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from . import ast as A
from . import types as T
from .comptime import Compilation, EvalOptions, Interp, ModuleInstance, ProgramRecord, Scope, \
    local_key, val_key
from .builtins import check_dsd_op_operands
from .errors import CslError, CslLayoutError
from .memory import (
    PE_MEMORY_BYTES,
    MemoryMap,
    check_fits,
    condition_names,
    estimate_code_bytes,
    live_node_count,
    place_globals,
)
from .source import Span
from .values import FnVal, GlobalVar, Val, describe

log = logging.getLogger(__name__)

ARCH_FABRIC_DIMS = {"wse2": (757, 996), "wse3": (762, 1172)}
"""The whole chip's --fabric-dims (sdk-runtime-hardware.md §1 item 6 and §3.1: the fabric dims
WaferLLM and the ALCF docs pass to cslc for WSE-2 and WSE-3)."""
DIRECTION_NAMES = ("NORTH", "SOUTH", "EAST", "WEST", "RAMP")


def memcpy_reserved(arch: str) -> dict[str, set[int]]:
    """Resources memcpy owns (sdk-runtime-hardware.md §0.7; csl-language.md §8)."""
    q = {0, 1} if arch == "wse3" else {0}
    return {"color": {21, 22, 23}, "local_task_id": {27, 28, 30},
            "control_task_id": set(range(33, 38)), "input_queue": q, "output_queue": q,
            "ut_id": {0}}


@dataclass(frozen=True)
class CompileOptions:
    """The cslc flags that shape a compilation (see ``waferscale check --help``)."""
    arch: str = "wse3"
    params: tuple[tuple[str, str], ...] = ()
    colors: tuple[tuple[str, str], ...] = ()
    fabric_dims: tuple[int, int] | None = None
    fabric_offsets: tuple[int, int] | None = None
    memcpy: bool = False
    channels: int = 0
    width_west_buf: int = 0
    width_east_buf: int = 0
    import_paths: tuple[str, ...] = ()


class Route(NamedTuple):
    """One (PE, color) route of the layout (a tuple: a large layout has one per PE and
    color, and a tuple is the lightest object to keep, pickle and scan)."""
    rx: tuple[str, ...]
    tx: tuple[str, ...]
    config: Val
    span: Span


@dataclass
class TileCode:
    x: int
    y: int
    path: Path
    params: dict[str, Val]
    span: Span
    program: int = -1
    resolved: str = ""          # str(path.resolve()), the program key's file


@dataclass
class ExportName:
    name: str
    type: T.Type
    mutable: bool | None
    span: Span


@dataclass
class PEProgram:
    """One distinct PE program: a code file with one set of param values."""
    index: int
    path: Path
    params: dict[str, Val]
    instance: ModuleInstance
    record: ProgramRecord
    memory: MemoryMap | None = None
    tiles: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class Layout:
    """The elaborated program: everything the simulator and ``waferscale check`` need."""
    source: Path
    options: CompileOptions
    width: int
    height: int
    fabric_dims: tuple[int, int]
    fabric_offsets: tuple[int, int]
    params: dict[str, Val]
    tiles: dict[tuple[int, int], TileCode]
    programs: list[PEProgram]
    routes: dict[tuple[int, int, int], Route]
    exports: dict[str, ExportName]
    color_names: dict[int, str]
    memcpy_streams: dict[str, int]
    prints: list[tuple[str, str]]
    warnings: list[str]
    # The compile-cache entry this layout was stored in or loaded from (host/cache.py), where
    # the simulator keeps its bytecode; never pickled.
    cache: Any = field(default=None, compare=False, repr=False)

    def program_at(self, x: int, y: int) -> PEProgram:
        return self.programs[self.tiles[(x, y)].program]

    def __getstate__(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["cache"] = None
        return d


def _dirs(ip: Interp, v: Val, node: A.Node | None, what: str) -> tuple[str, ...]:
    items = v.v if isinstance(v.type, T.TupleT) else [] if (
        isinstance(v.v, dict) and not v.v) else [v]
    out: list[str] = []
    for it in items:
        if it.type != T.DIRECTION:
            raise ip.err(f"{what} must be a direction or a tuple of directions (NORTH, SOUTH, "
                         f"EAST, WEST, RAMP), found '{it.type}'", node)
        if it.v in out:
            raise ip.err(f"direction {it.v} appears twice in {what}", node)
        out.append(it.v)
    return tuple(out)


ROUTE_FIELDS = {"rx", "tx", "color_swap_x", "color_swap_y"}
CONFIG_FIELDS = {"routes", "switches", "filter", "teardown"}


def parse_color_config(ip: Interp, cfg: Val, node: A.Node | None) -> tuple[tuple[str, ...],
                                                                             tuple[str, ...]]:
    """Validate a ``@set_color_config`` struct and return its (rx, tx) direction sets."""
    if not isinstance(cfg.v, dict):
        raise ip.err(f"color config must be an anonymous struct, found '{cfg.type}'", node)
    fields = cfg.v
    if "routes" in fields:
        for k in fields:
            if k not in CONFIG_FIELDS:
                raise ip.err(f"unknown color config field '.{k}' (expected "
                             + ", ".join(sorted(CONFIG_FIELDS)) + ")", node)
        routes = fields["routes"]
        if not isinstance(routes.v, dict):
            raise ip.err(".routes must be a struct like .{ .rx = .{WEST}, .tx = .{RAMP} }", node)
        rfields = routes.v
    elif set(fields) <= ROUTE_FIELDS and fields:
        rfields = fields          # the docs' short form without the `.routes =` wrapper
    else:
        raise ip.err("color config needs .routes (use `.routes = .{}` for none)", node)
    for k in rfields:
        if k not in ROUTE_FIELDS:
            raise ip.err(f"unknown routes field '.{k}' (expected rx, tx, color_swap_x, "
                         "color_swap_y)", node)
    rx = _dirs(ip, rfields["rx"], node, ".rx") if "rx" in rfields else ()
    tx = _dirs(ip, rfields["tx"], node, ".tx") if "tx" in rfields else ()
    # Color swap is WSE-2's (sdk-examples topic-14: "CSL currently does not support color swap
    # on WSE-3"); what the fabric model does not implement is an error, never a no-op.
    for k in ("color_swap_x", "color_swap_y"):
        if k in rfields and _is_set(rfields[k]):
            if rfields[k].type != T.BOOL:
                raise ip.err(f".{k} must be a bool, found '{rfields[k].type}'",
                             _field_node(node, k))
            if ip.ctx.options.arch != "wse2":
                raise ip.err(f"color swap ('.{k}') is not supported on WSE-3 (CSL supports it "
                             "on WSE-2 only)", _field_node(node, k))
            if "routes" not in fields:
                raise ip.err(f"color swap ('.{k}') is not supported by waferscale yet in a "
                             "color config without .routes (write .routes = .{ ... })",
                             _field_node(node, k))
    if "routes" in fields:
        router_extras(ip, cfg, node)          # checks .switches and .teardown
    return rx, tx


# Direction bitmasks as the fabric numbers them (sim.fabric.Direction: RAMP=0, NORTH=1,
# EAST=2, SOUTH=3, WEST=4).
DIRECTION_BITS = {"RAMP": 1, "NORTH": 2, "EAST": 4, "SOUTH": 8, "WEST": 16}
SWITCH_FIELDS = {"pos1", "pos2", "pos3", "current_switch_pos", "ring_mode", "pop_mode"}
POP_MODES = {"no_pop": 0, "always_pop": 1, "pop_on_advance": 2}
# On WSE-3 only these colors have switches (csl-language.md §6, from the CSL builtins page).
WSE3_SWITCH_COLORS = frozenset((0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 16, 17, 20, 21))


def dir_mask(dirs: tuple[str, ...]) -> int:
    m = 0
    for d in dirs:
        m |= DIRECTION_BITS[d]
    return m


class RouterExtras(NamedTuple):
    """What a color config asks of a router besides position 0's route: its switch
    positions (``sim.fabric.PyFabricCore.set_switches``'s arguments) and whether the color
    starts in teardown mode."""
    switches: tuple[tuple[int, ...], int, bool, int] | None
    teardown: bool
    # ("range", min_idx, max_idx) or ("counter", init, max, limit1, count_data, count_control)
    filter: tuple[Any, ...] | None = None
    swap: int = 0                             # color swap: bit 0 x, bit 1 y (WSE-2)


def router_extras(ip: Interp, cfg: Val, node: A.Node | None) -> RouterExtras:
    """Check and read ``.switches`` and ``.teardown`` of a color config (with ``.routes``).

    ``.switches``: ``.pos1``..``.pos3`` each ``.{ .rx = d }`` and/or ``.{ .tx = d }`` (a
    direction or a tuple of them; the side a position leaves out is position 0's),
    ``.current_switch_pos`` (0..3, default 0), ``.ring_mode`` (bool) and ``.pop_mode``
    (``.{ .no_pop | .always_pop | .pop_on_advance = true }``; ``.pop_on_header`` is not
    supported by waferscale yet). ``.teardown = true``: the color starts in teardown mode."""
    fields = cfg.v if isinstance(cfg.v, dict) else {}
    td = fields.get("teardown")
    teardown = False
    if td is not None:
        if td.type != T.BOOL:
            raise ip.err(f".teardown must be a bool, found '{td.type}'",
                         _field_node(node, "teardown"))
        teardown = bool(td.v)
    filt = _range_filter(ip, fields.get("filter"), _field_node(node, "filter"))
    routes = fields.get("routes")
    rf = routes.v if routes is not None and isinstance(routes.v, dict) else {}
    swap = sum(bit for k, bit in (("color_swap_x", 1), ("color_swap_y", 2))
               if k in rf and rf[k].type == T.BOOL and rf[k].v)
    sw = fields.get("switches")
    if sw is None or not _is_set(sw):
        return RouterExtras(None, teardown, filt, swap)
    at = _field_node(node, "switches")
    if not isinstance(sw.v, dict):
        raise ip.err(".switches must be a struct like .{ .pos1 = .{ .tx = WEST }, "
                     ".ring_mode = true }", at)
    for k in sw.v:
        if k not in SWITCH_FIELDS:
            raise ip.err(f"unknown switches field '.{k}' (expected "
                         + ", ".join(sorted(SWITCH_FIELDS)) + ")", at)
    positions: list[int] = []
    for k in ("pos1", "pos2", "pos3"):
        pv = sw.v.get(k)
        if pv is None or not _is_set(pv):
            positions += [-1, -1]
            continue
        if isinstance(pv.v, dict) and set(pv.v) == {"invalid"} \
                and pv.v["invalid"].type == T.BOOL and pv.v["invalid"].v is True:
            positions += [-1, -1]             # `.{ .invalid = true }`: no such position
            continue
        if not isinstance(pv.v, dict) or not set(pv.v) <= {"rx", "tx"}:
            raise ip.err(f".{k} must be a struct like .{{ .rx = RAMP }}, .{{ .tx = WEST }} or "
                         ".{ .invalid = true } (an integer encoding of a position is not "
                         "supported by waferscale yet)", at)
        positions += [dir_mask(_dirs(ip, pv.v["rx"], at, f".{k}.rx")) if "rx" in pv.v else -1,
                      dir_mask(_dirs(ip, pv.v["tx"], at, f".{k}.tx")) if "tx" in pv.v else -1]
    cur = 0
    if "current_switch_pos" in sw.v:
        cv = sw.v["current_switch_pos"]
        if not T.is_int(cv.type) or isinstance(cv.v, bool) or not 0 <= cv.v <= 3:
            raise ip.err(".current_switch_pos must be an integer 0..3", at)
        cur = int(cv.v)
        if cur and positions[2 * cur - 2] < 0 and positions[2 * cur - 1] < 0:
            raise ip.err(f".current_switch_pos is {cur}, but .pos{cur} is not defined", at)
    ring = False
    if "ring_mode" in sw.v:
        rv = sw.v["ring_mode"]
        if rv.type != T.BOOL:
            raise ip.err(f".ring_mode must be a bool, found '{rv.type}'", at)
        ring = bool(rv.v)
    pop = 0
    if "pop_mode" in sw.v:
        pm = sw.v["pop_mode"]
        chosen = [k for k, v in (pm.v.items() if isinstance(pm.v, dict) else ())
                  if v.type == T.BOOL and v.v]
        if not isinstance(pm.v, dict) or len(chosen) > 1 or any(
                k not in POP_MODES and k != "pop_on_header" for k in pm.v):
            raise ip.err(".pop_mode must be one of .{ .no_pop = true }, .{ .always_pop = "
                         "true }, .{ .pop_on_advance = true }", at)
        if chosen == ["pop_on_header"]:
            raise ip.err("pop mode '.pop_on_header' is not supported by waferscale yet", at)
        pop = POP_MODES[chosen[0]] if chosen else 0
    return RouterExtras((tuple(positions), cur, ring, pop), teardown, filt, swap)


def _range_filter(ip: Interp, f: Val | None, at: A.Node | None) -> tuple[Any, ...] | None:
    """``.filter = .{ .kind = .{ .range = true }, .min_idx = a, .max_idx = b }``: the CE gets
    only the data wavelets whose upper 16 bits are in a..b (topic-08; they are still
    forwarded on the other outputs). Counter and sparse-counter filters are not supported
    by waferscale yet."""
    if f is None or not _is_set(f):
        return None
    kind = f.v.get("kind") if isinstance(f.v, dict) else None
    kinds = [k for k, v in kind.v.items() if v.type == T.BOOL and v.v] \
        if kind is not None and isinstance(kind.v, dict) else []
    if kinds == ["counter"]:
        return _counter_filter(ip, f, at)
    if kinds != ["range"]:
        raise ip.err(f"{' and '.join(kinds) or 'this'} filter ('.filter' of a color config) is "
                     "not supported by waferscale yet (only .range and .counter)", at)
    bounds = _filter_ints(ip, f, "range", {"kind", "min_idx", "max_idx"},
                          ("min_idx", "max_idx"), at)
    return "range", bounds[0], bounds[1]


def _filter_ints(ip: Interp, f: Val, what: str, fields: set[str], keys: tuple[str, ...],
                 at: A.Node | None) -> list[int]:
    """The values of a ``what`` filter's integer fields ``keys`` (each required, 0..65535);
    a field outside ``fields`` is not supported by waferscale yet."""
    extra = set(f.v) - fields
    if extra:
        raise ip.err(f"{what} filter field(s) {', '.join(sorted(extra))} are not supported by "
                     "waferscale yet", at)
    vals = []
    for k in keys:
        v = f.v.get(k)
        if v is None or not T.is_int(v.type) or isinstance(v.v, bool) \
                or not 0 <= v.v <= 0xFFFF:
            raise ip.err(f"a {what} filter needs .{k}, an integer 0..65535", at)
        vals.append(int(v.v))
    return vals


COUNTER_FILTER_FIELDS = {"kind", "count_data", "count_control", "init_counter", "max_counter",
                         "limit1"}


def _counter_filter(ip: Interp, f: Val, at: A.Node | None) -> tuple[Any, ...]:
    """``.kind = .{ .counter = true }`` with ``.count_data``, ``.count_control``,
    ``.init_counter``, ``.max_counter``, ``.limit1``: the counted wavelets reach the CE while
    the counter is <= max_counter, the counter going back to 0 after limit1 (doc-gap: the
    rule that gives topic-16's "accepts only the first two wavelets of each 15-wavelet
    sequence"; sim.fabric.PyFabricCore.set_counter_filter)."""
    vals = _filter_ints(ip, f, "counter", COUNTER_FILTER_FIELDS,
                        ("init_counter", "max_counter", "limit1"), at)
    flags = []
    for k in ("count_data", "count_control"):
        v = f.v.get(k, Val(T.BOOL, False))
        if v.type != T.BOOL:
            raise ip.err(f".{k} must be a bool, found '{v.type}'", at)
        flags.append(bool(v.v))
    return ("counter", *vals, *flags)


def check_switch_color(ip: Interp, color: int, cfg: Val, node: A.Node | None) -> None:
    """WSE-3 has switches on some colors only (WSE3_SWITCH_COLORS)."""
    if ip.ctx.options.arch != "wse3" or not isinstance(cfg.v, dict):
        return
    sw = cfg.v.get("switches")
    if sw is not None and _is_set(sw) and color not in WSE3_SWITCH_COLORS:
        raise ip.err(f"color {color} has no switches on WSE-3 (only colors "
                     + ", ".join(map(str, sorted(WSE3_SWITCH_COLORS))) + ")",
                     _field_node(node, "switches"))


def _is_set(v: Val) -> bool:
    """Whether a color-config field asks for something: ``false`` and ``.{}`` ask nothing."""
    if v.type == T.BOOL:
        return bool(v.v)
    return not (isinstance(v.v, dict) and not v.v)


def _field_node(node: A.Node | None, name: str) -> A.Node | None:
    """The ``.name = value`` of an initializer written in place (itself or one level down,
    for ``.routes = .{...}``), else ``node``: the error points at the field when it can."""
    if isinstance(node, A.InitList):
        for f in node.fields:
            if f.name == name:
                return f
        for f in node.fields:
            if isinstance(f.value, A.InitList):
                for g in f.value.fields:
                    if g.name == name:
                        return g
    return node


class LayoutBuilder:
    """Collects what the layout block's builtins declare (see module docstring)."""

    def __init__(self, ip: Interp, options: CompileOptions, layout_dir: Path) -> None:
        self.ip = ip
        self.options = options
        self.layout_dir = layout_dir
        self.rect: tuple[int, int] | None = None
        self.rect_span: Span | None = None
        self.tiles: dict[tuple[int, int], TileCode] = {}
        self.routes: dict[tuple[int, int, int], Route] = {}
        self.exports: dict[str, ExportName] = {}
        self.user_ids: dict[tuple[str, int], Span] = {}
        self.memcpy_streams: dict[str, int] = {}
        self.memcpy_import_span: Span | None = None
        # (importing file, path argument) -> (code file, its resolved path): the file
        # system is asked once per distinct @set_tile_code path, not once per PE.
        self._tile_paths: dict[tuple[str, str | None], tuple[Path, str]] = {}
        self._configs: dict[Any, Val] = {}
        # id of a shared literal config -> its (rx, tx, config): see set_color_config.
        self._parsed: dict[int, tuple[tuple[str, ...], tuple[str, ...], Val]] = {}
        # (rx, tx, id(config), id(span)) -> the one Route of that config at that statement.
        self._routes_made: dict[tuple[Any, ...], Route] = {}

    def _check_xy(self, x: int, y: int, node: A.BuiltinCall) -> None:
        if self.rect is None:
            raise self.ip.err(f"@{node.name} before @set_rectangle", node)
        w, h = self.rect
        if not (0 <= x < w and 0 <= y < h):
            raise self.ip.err(f"PE({x},{y}) is outside the {w}x{h} rectangle", node)

    def set_rectangle(self, w: int, h: int, node: A.BuiltinCall) -> None:
        if self.rect is not None:
            raise self.ip.err("@set_rectangle called twice", node).with_note(
                "first call is here", self.rect_span)
        if w <= 0 or h <= 0:
            raise self.ip.err(f"rectangle {w}x{h} must have a positive size", node)
        # Check the rectangle against --fabric-dims and the chip now, before the layout block
        # runs anything per PE (a 10^5 x 10^5 rectangle must not reach a per-PE loop).
        fabric_geometry(self.options, w, h, node.span)
        self.rect, self.rect_span = (w, h), node.span

    def get_rectangle(self, node: A.BuiltinCall) -> Val:
        if self.rect is None:
            raise self.ip.err("@get_rectangle before @set_rectangle", node)
        dims, offs = fabric_geometry(self.options, *self.rect, node.span)

        def st(**kw: Val) -> Val:
            return Val(T.AnonStructT(tuple((k, v.type) for k, v in kw.items())), kw)
        ci = T.COMPTIME_INT
        return st(width=Val(ci, self.rect[0]), height=Val(ci, self.rect[1]),
                  fabric=st(width=Val(ci, dims[0]), height=Val(ci, dims[1])),
                  offsets=st(width=Val(ci, offs[0]), height=Val(ci, offs[1])))

    def set_tile_code(self, x: int, y: int, path: str | None, params: dict[str, Val],
                      mod: ModuleInstance, node: A.BuiltinCall) -> None:
        self._check_xy(x, y, node)
        prev = self.tiles.get((x, y))
        if prev is not None:
            raise self.ip.err(f"PE({x},{y}) is given code twice", node).with_note(
                "first @set_tile_code is here", prev.span)
        known = self._tile_paths.get((mod.path, path))
        if known is None:
            p = Path(mod.path) if path is None else Path(mod.path).parent / path
            if not p.is_file():
                raise self.ip.err(f"tile code file '{path}' not found (looked for {p})",
                                  node.args[2])
            known = self._tile_paths[(mod.path, path)] = (p, str(p.resolve()))
        self.tiles[(x, y)] = TileCode(x, y, known[0], dict(params), node.span,
                                      resolved=known[1])

    def set_color_config(self, x: int, y: int, color: Val, cfg: Val,
                         node: A.BuiltinCall) -> None:
        self._check_xy(x, y, node)
        if color.type != T.COLOR:
            raise self.ip.err(f"expected a color, found '{color.type}'", node.args[2])
        c = color.v
        if not isinstance(c, int) or not 0 <= c <= 23:
            raise self.ip.err(f"color {c} is out of range 0..23", node.args[2])
        # A literal config (the usual case) is one shared value (Interp._e_InitList):
        # validated and keyed once, however many PEs it configures.
        parsed = self._parsed.get(id(cfg))
        if parsed is None:
            rx, tx = parse_color_config(self.ip, cfg, node.args[3])
            check_switch_color(self.ip, c, cfg, node.args[3])
            # Equal configs share one value (a layout of 20,000 PEs has a handful of
            # distinct ones, and each would be several objects to keep, pickle and scan).
            parsed = (rx, tx, self._configs.setdefault(val_key(cfg), cfg))
            if id(cfg) in self.ip.ctx.static_vals:
                self._parsed[id(cfg)] = parsed
        prev = self.routes.get((x, y, c))
        if prev is not None:
            raise self.ip.err(f"PE({x},{y}) color {c} is configured twice", node).with_note(
                "first configuration is here", prev.span)
        # One Route object per config and statement, shared by the PEs it configures (a
        # tuple: equal either way; shared, the compile cache pickles it once, not per PE).
        rk = (parsed[0], parsed[1], id(parsed[2]), id(node.span))
        route = self._routes_made.get(rk)
        if route is None:          # (the Route holds what the ids name: they stay theirs)
            route = self._routes_made[rk] = Route(parsed[0], parsed[1], parsed[2], node.span)
        self.routes[(x, y, c)] = route

    def export_name(self, name: str, t: T.Type, mutable: bool | None,
                    node: A.BuiltinCall) -> None:
        if name in self.exports:
            raise self.ip.err(f"name '{name}' is exported twice", node).with_note(
                "first @export_name is here", self.exports[name].span)
        if isinstance(t, T.FnT):
            if len(t.params) > 15:
                raise self.ip.err("host-callable functions take at most 15 parameters", node)
        elif isinstance(t, (T.ArrayT, T.StructT, T.AnonStructT, T.TupleT, T.EnumT)) \
                or t.comptime_only:
            raise self.ip.err(f"type '{t}' cannot be exported (use a pointer such as "
                              "[*]f32, a scalar, or a fn type)", node.args[1])
        elif mutable is None:
            raise self.ip.err(f"@export_name of a data symbol needs its mutability "
                              f"(@export_name(\"{name}\", {t}, true))", node)
        self.exports[name] = ExportName(name, t, mutable, node.span)


def fabric_geometry(opts: CompileOptions, w: int, h: int,
                    span: Span | None) -> tuple[tuple[int, int], tuple[int, int]]:
    """Resolve and validate --fabric-dims/--fabric-offsets for a w×h program rectangle."""
    if opts.memcpy:
        min_x = 4 + opts.width_west_buf
        offs = opts.fabric_offsets or (min_x, 1)
        need = (offs[0] + w + 3 + opts.width_east_buf, offs[1] + h + 1)
        dims = opts.fabric_dims or need
        if offs[0] < min_x or offs[1] < 1:
            raise CslLayoutError(
                f"with --memcpy the fabric offsets must be at least ({min_x},1) (1 halo + 3 "
                f"memcpy columns west{' + west buffer' if opts.width_west_buf else ''}, 1 halo "
                f"row north); got {offs[0]},{offs[1]}", span)
        if dims[0] < need[0] or dims[1] < need[1]:
            raise CslLayoutError(
                f"with --memcpy a {w}x{h} rectangle at offsets {offs[0]},{offs[1]} needs "
                f"--fabric-dims of at least {need[0]},{need[1]} (2 memcpy columns + 1 halo "
                f"east, 1 halo row south); got {dims[0]},{dims[1]}", span)
    else:
        offs = opts.fabric_offsets or (0, 0)
        dims = opts.fabric_dims or (offs[0] + w, offs[1] + h)
        if offs[0] + w > dims[0] or offs[1] + h > dims[1]:
            raise CslLayoutError(
                f"a {w}x{h} rectangle at offsets {offs[0]},{offs[1]} does not fit in a "
                f"{dims[0]}x{dims[1]} fabric", span)
    mx, my = ARCH_FABRIC_DIMS[opts.arch]
    if dims[0] > mx or dims[1] > my:
        what = (f"fabric {dims[0]}x{dims[1]}" if opts.fabric_dims else
                f"a {w}x{h} rectangle at offsets {offs[0]},{offs[1]} (fabric {dims[0]}x{dims[1]})")
        raise CslLayoutError(f"{what} exceeds the {opts.arch} fabric ({mx}x{my})", span)
    return dims, offs


def _cli_params(opts: CompileOptions) -> dict[str, Val]:
    out: dict[str, Val] = {}
    for name, text in opts.params:
        if len(text) > 1000:    # int() of more digits is slow (or refused) and float() inf
            raise CslLayoutError(f"--params {name}: value is {len(text)} characters long")
        try:
            n = int(text, 0)
            out[name] = Val(T.COMPTIME_INT, n)
        except ValueError:
            try:
                out[name] = Val(T.COMPTIME_FLOAT, float(text))
            except ValueError:
                raise CslLayoutError(f"--params {name}:{text}: value is not a number") from None
    for name, text in opts.colors:
        try:
            c = int(text, 0)
        except ValueError:
            raise CslLayoutError(f"--colors {name}:{text}: value is not an integer") from None
        if not 0 <= c <= 23:
            raise CslLayoutError(f"--colors {name}:{c}: color must be in 0..23")
        out[name] = Val(T.COLOR, c)
    return out


def elaborate(layout_path: str | Path, options: CompileOptions = CompileOptions()) -> Layout:
    """Parse and elaborate a layout file; raise :class:`CslError` on any user error."""
    # Elaborating a large layout makes millions of long-lived objects: the collector's
    # default young-generation threshold would rescan them over and over (about a fifth of
    # the time), so it runs less often meanwhile.
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], 50_000), *threshold[1:])
    try:
        return _elaborate(layout_path, options)
    except RecursionError:
        raise CslLayoutError(f"{layout_path}: program nests too deeply to evaluate") from None
    finally:
        gc.set_threshold(*threshold)


def _elaborate(layout_path: str | Path, options: CompileOptions) -> Layout:
    if options.arch not in ARCH_FABRIC_DIMS:
        raise CslLayoutError(f"unknown --arch '{options.arch}' (expected wse2 or wse3)")
    if options.memcpy and not 1 <= options.channels <= 16:
        raise CslLayoutError(f"--channels must be 1..16 with --memcpy, got {options.channels}")
    path = Path(layout_path)
    ctx = Compilation(EvalOptions(arch=options.arch, import_paths=options.import_paths))
    ip = Interp(ctx)
    tree = ctx.load_ast(path, None)
    params = _cli_params(options)
    # An unknown name is warned about once, here, and then dropped (not bound, not reported).
    declared = {d.name for d in tree.decls if isinstance(d, A.ColorDecl) or
                (isinstance(d, A.VarDecl) and d.kind == "param")}
    warnings = [f"--params/--colors name '{n}' is not a param of {path}; ignored"
                for n in params if n not in declared]
    params = {n: v for n, v in params.items() if n in declared}
    root = ModuleInstance(ctx, str(path), tree, params, name=path.stem, program=None)
    if not root.layout_blocks:
        raise CslLayoutError(f"{path} has no layout block", Span(tree.span.file, 0, 0))
    if len(root.layout_blocks) > 1:
        raise CslLayoutError("more than one layout block", root.layout_blocks[1].span)

    builder = LayoutBuilder(ip, options, path.parent)
    ctx.layout_builder = builder
    try:
        ip.run_comptime_blocks(root)
        lb = root.layout_blocks[0]
        ip.exec_top_block(lb.block, Scope(root.scope, root), "the layout block")
    finally:
        ctx.layout_builder = None
        builder._parsed = {}         # keyed by object ids: not to be kept or pickled
        builder._routes_made = {}
    ctx.layout_done = builder
    lb_span = root.layout_blocks[0].span
    if builder.rect is None:
        raise CslLayoutError("the layout block never calls @set_rectangle", lb_span)
    w, h = builder.rect
    n_missing = w * h - len(builder.tiles)  # every tile lies inside the rectangle
    if n_missing:
        x, y = next((x, y) for y in range(h) for x in range(w) if (x, y) not in builder.tiles)
        more = f" (and {n_missing - 1} more)" if n_missing > 1 else ""
        raise CslLayoutError(f"PE({x},{y}) of the {w}x{h} rectangle has no code{more}; call "
                             "@set_tile_code for every PE", lb_span)
    dims, offs = fabric_geometry(options, w, h, builder.rect_span)

    # Elaborate each distinct (file, params) program once.
    programs: list[PEProgram] = []
    index: dict[Any, int] = {}
    param_key = _ParamKeys()
    # Programs that differ only by their memcpy params' x elaborate alike (memcpy_twin_key):
    # the key without x -> the program elaborated for it.
    twins: dict[Any, int] = {}
    observed: dict[int, bool] = {}
    for (x, y), tc in sorted(builder.tiles.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        key = (tc.resolved or str(tc.path.resolve()),
               tuple(sorted((k, param_key(v)) for k, v in tc.params.items())))
        i = index.get(key)
        if i is None:
            i = index[key] = len(programs)
            tkey = memcpy_twin_key(key[0], tc.params)
            j = twins.get(tkey)
            if j is not None:
                twin = programs[j]
                programs.append(PEProgram(i, tc.path, tc.params, twin.instance, twin.record,
                                          memory=twin.memory))
            else:
                notes = (len(ctx.warnings), len(ctx.prints))
                programs.append(_elaborate_program(ip, i, tc))
                # (A program that printed or warned is elaborated again for its twins, so
                # that each says so, as before.)
                if notes == (len(ctx.warnings), len(ctx.prints)) and \
                        not memcpy_x_observed(programs[i].record.modules, observed):
                    twins[tkey] = i
        programs[i].tiles.append((x, y))
        tc.program = i
        # The tile shares its program's param values (equal by the key): one copy per
        # program, not per PE.
        tc.params = programs[i].params

    for p in programs:
        assert p.memory is not None     # _elaborate_program places every program's globals
        check_fits(p.memory, p.path.name, p.tiles, builder.tiles[p.tiles[0]].span)

    memcpy_used = builder.memcpy_import_span is not None or any(
        p.record.imports_memcpy for p in programs)
    _check_exports(programs, builder)
    _check_memcpy(options, builder, programs, memcpy_used)

    color_names = _color_names(ip, root)
    return Layout(path, options, w, h, dims, offs, params, builder.tiles, programs,
                  builder.routes, builder.exports, color_names, builder.memcpy_streams,
                  ctx.prints, warnings + ctx.warnings)


class _ParamKeys:
    """Keys of param values for grouping tiles into programs: two values get the same key
    exactly when their val_keys are equal, but a key is a small int, and a value
    object (a struct of colors shared by a column of PEs, each field of a per-PE struct) is
    keyed once however many tiles bind it. (val_key of a 20,000-PE layout's params, and
    hashing the nested tuples it makes, was a tenth of its elaboration.)"""

    def __init__(self) -> None:
        self._by_obj: dict[int, tuple[Val, int]] = {}   # id(value) -> (value, key)
        self._ints: dict[Any, int] = {}

    def __call__(self, v: Val) -> int:
        hit = self._by_obj.get(id(v))
        if hit is not None:
            return hit[1]
        p = v.v
        raw: Any
        if isinstance(p, dict):          # as val_key, with the fields' keys made here
            raw = ("struct", tuple((k, self(x)) for k, x in p.items()))
        elif isinstance(p, list):
            raw = ("tuple", tuple(self(x) for x in p))
        else:
            raw = val_key(v)
        k = self._ints.setdefault(raw, len(self._ints))
        self._by_obj[id(v)] = (v, k)     # (the value is kept: its id stays its own)
        return k


def memcpy_twin_key(resolved: str, params: dict[str, Val]) -> Any:
    """A program's key (its file and params, as in _elaborate) without the ``x`` of a
    memcpy params struct (``<memcpy/get_params>``'s ``get_params(x)``).

    The struct makes each column of PEs a program of its own, as cslc makes them, but
    nothing in waferscale reads its ``x`` (modules._memcpy_params_of). So programs with one
    twin key elaborate to the same state and lower to the same bytecode unless their own code
    observes ``x`` (memcpy_x_observed): then each is elaborated (and lowered) by itself. A
    program elaborated for a twin key is shared by the programs with that key (their
    PEProgram has its own index, params and tiles, and the first one's instance, record and
    memory map: WaferLLM's MeshGEMV at P = 144 has 576 programs and elaborates 4), and
    sim.engine.lowering_twins lowers it once."""
    def key_without_x(v: Val) -> Any:
        p = v.v
        if isinstance(p, dict):        # as val_key, without a memcpy params struct's x
            return ("struct", tuple((k, key_without_x(x)) for k, x in p.items()
                                    if not (k == "x" and "_memcpy_params" in p)))
        if isinstance(p, list):
            return ("tuple", tuple(key_without_x(x) for x in p))
        return val_key(v)
    return (resolved, tuple(sorted((k, key_without_x(v)) for k, v in params.items())))


def memcpy_x_observed(modules: list[ModuleInstance], memo: dict[int, bool]) -> bool:
    """Whether code of these modules (a program's user files) could observe the ``x`` of
    its memcpy params: a ``.x`` field access, ``@field`` or ``@comptime_print`` anywhere in
    a file (``memo``: per file AST)."""
    for mod in modules:
        tree = mod.ast
        if tree is None:
            continue
        hit = memo.get(id(tree))
        if hit is None:
            hit = memo[id(tree)] = any(
                (isinstance(n, A.FieldAccess) and n.name == "x")
                or (isinstance(n, A.BuiltinCall) and n.name in ("field", "comptime_print"))
                for n in tree.walk())
        if hit:
            return True
    return False


def _elaborate_program(ip: Interp, index: int, tc: TileCode) -> PEProgram:
    tree = ip.ctx.load_ast(tc.path, tc.span)
    record = ProgramRecord(str(tc.path))
    inst = ModuleInstance(ip.ctx, str(tc.path), tree, tc.params, name=tc.path.name,
                          program=record, bind_span=tc.span)
    ip.run_comptime_blocks(inst)
    # Lazy analysis, as cslc's (Zig's): a global is analysed and given PE memory only when
    # something the PE compiles uses it: the run-time code of its functions and tasks,
    # where an `if` whose condition is comptime-known counts only the branch it takes
    # (_live_code), a comptime block (evaluated when the module is instantiated), or the
    # initializer of a global so used. An unused, unexported global is dropped: the SDK's
    # debug_util says "the compiler removes the tensor due to some optimization technique
    # ... export such symbol in the kernel to keep the symbol in the ELF" (cerebras-sdk
    # 2.10.0, debug_util docstring), and pipeline-03-multiple's edge PEs only fit 48 KiB
    # without their unused FIFO buffers. An unused global's initializer is not checked
    # (pipeline-03's h2d.csl has `.fabric_color = USER_IN_2` with USER_IN_2 void on WSE-2).
    # doc-gap: which unused globals cslc drops is not documented beyond that; every function
    # counts as used (no call-graph pruning), so this drops less than cslc may.
    live: dict[tuple[int, int], set[int]] = {}
    i = 0
    while i < len(record.modules):
        mod = record.modules[i]
        used, dead, cross = _live_code(ip, mod)
        for fn_id, dead_ids in dead.items():
            live[(id(mod), fn_id)] = dead_ids
        for name, entry in list(mod.globals.items()):
            d = entry.decl
            # A param that is neither bound nor given a default nor used by anything is
            # never evaluated, as cslc accepts it (the SDK's pipeline-02 declares
            # `param main: u16;` and never binds it); used, it is "not bound".
            if isinstance(d, A.VarDecl) and (name in used or (
                    d.kind == "param" and (name in mod.params or d.init is not None))):
                ip.global_value(mod, name, d.span)
        for other, name in cross:          # `lib.x` in this module's run-time code
            e = other.globals.get(name)
            if e is not None and isinstance(e.decl, A.VarDecl):
                ip.global_value(other, name, e.decl.span)
        _place_local_storage(ip, mod, record)
        for name in _const_arrays_used(ip.ctx, mod):
            if name in used:
                ip.const_storage(A.Ident(name, span=mod.globals[name].decl.span), mod.scope,
                                 ip.global_value(mod, name, None))
        i += 1
    owned = [(m, e.decl) for m in record.modules for e in m.globals.values()
             if isinstance(e.decl, A.FnDecl)]
    fns = [d for _m, d in owned]
    for m in record.modules:
        for e in list(m.globals.values()):
            if isinstance(e.decl, A.FnDecl):
                check_dsd_op_operands(ip, m, e.decl, live.get((id(m), id(e.decl)), set()))
    order = {id(m): i for i, m in enumerate(record.modules)}
    variables = sorted(record.globals, key=lambda v: (order.get(id(v.owner), len(order)),
                                                      v.decl.span.start if v.decl else 0))
    mm = place_globals(variables, estimate_code_bytes(fns, record.imports_memcpy,
                                                      _node_counts(ip, owned)))
    return PEProgram(index, tc.path, tc.params, inst, record, memory=mm)


@dataclass(frozen=True)
class _Segment:
    """What a stretch of a function body uses outside the ``if``s whose condition may be
    comptime-known (it names no local): identifiers, ``x.name`` accesses and ``x.f(...)``
    calls whose ``x`` is not a local; then those ``if``s, each as (condition, then-segment,
    else-segment, the ids of the then-nodes, of the else-nodes). A property of the AST,
    built once per function and compilation (_segment_of)."""
    names: frozenset[str]
    fields: tuple[A.FieldAccess, ...]
    calls: tuple[A.Call, ...]
    ifs: tuple[tuple[A.Expr, "_Segment | None", "_Segment | None", frozenset[int],
                     frozenset[int]], ...]


def _build_segment(root: A.Node | None, local: frozenset[str]) -> "_Segment | None":
    if root is None:
        return None
    names: set[str] = set()
    fields: list[A.FieldAccess] = []
    calls: list[A.Call] = []
    ifs = []
    stack: list[A.Node] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, A.Ident):
            names.add(node.name)
        elif isinstance(node, A.FieldAccess) and isinstance(node.target, A.Ident) \
                and node.target.name not in local:
            fields.append(node)
        elif isinstance(node, A.Call) and isinstance(node.callee, A.FieldAccess) \
                and isinstance(node.callee.target, A.Ident) \
                and node.callee.target.name not in local:
            calls.append(node)
        if isinstance(node, (A.If, A.IfExpr)) and not any(
                isinstance(n, A.Ident) and n.name in local for n in node.cond.walk()):
            stack.append(node.cond)
            ifs.append((node.cond, _build_segment(node.then, local),
                        _build_segment(node.else_, local),
                        frozenset(id(n) for n in node.then.walk()),
                        frozenset(id(n) for n in node.else_.walk())
                        if node.else_ is not None else frozenset()))
            continue
        stack.extend(node.children())
    return _Segment(frozenset(names), tuple(fields), tuple(calls), tuple(ifs))


def _segment_of(ctx: Compilation, fn: A.FnDecl) -> tuple[_Segment | None, frozenset[str]]:
    """``fn``'s body as a _Segment, and its local names (memoised per function AST)."""
    hit = ctx.memo.get(("live segment", id(fn)))
    if hit is not None and hit[0] is fn:
        return hit[1]
    local = A.fn_local_names(fn)
    out = (_build_segment(fn.body, local), local)
    ctx.memo[("live segment", id(fn))] = (fn, out)
    return out


def _live_code(ip: Interp, mod: ModuleInstance
               ) -> tuple[set[str], dict[int, set[int]], list[tuple[ModuleInstance, str]]]:
    """What the run-time code of ``mod``'s functions and tasks uses on this PE: the
    identifiers it names, the ids of the nodes in branches it never takes (per function id),
    and the ``(module, name)`` of each ``lib.name`` whose ``lib`` is a module this one
    imported. An ``if`` (statement or expression) whose condition is comptime-known here
    (it names no local, and evaluates to a bool in the module's scope) takes one branch; any
    other condition keeps both. Calls ``lib.f(...)`` of a library with ``call_checks`` (e.g.
    <debug>'s trace_string) are checked here, at the user's call."""
    used: set[str] = set()
    dead: dict[int, set[int]] = {}
    cross: list[tuple[ModuleInstance, str]] = []

    def module_named(name: str) -> Any:
        g = mod.globals.get(name)
        v = getattr(g, "value", None) if g is not None else None
        return v.v if v is not None and isinstance(v.v, ModuleInstance) else None

    for entry in list(mod.globals.values()):
        fn = entry.decl
        if not isinstance(fn, A.FnDecl) or fn.body is None:
            continue
        seg0, local = _segment_of(ip.ctx, fn)
        dead_ids: set[int] = set()
        todo = [seg0]
        while todo:
            seg = todo.pop()
            if seg is None:
                continue
            used |= seg.names
            for fa in seg.fields:
                assert isinstance(fa.target, A.Ident)
                other = module_named(fa.target.name)
                if other is not None and not other.is_stdlib:
                    cross.append((other, fa.name))
            for call in seg.calls:
                callee = call.callee
                assert isinstance(callee, A.FieldAccess) and isinstance(callee.target, A.Ident)
                other = module_named(callee.target.name)
                check = getattr(other, "call_checks", {}).get(callee.name)
                if check is not None:
                    check(ip, mod.scope, call, local)
            for cond, then_seg, else_seg, then_ids, else_ids in seg.ifs:
                c = _comptime_condition(ip, mod, cond)
                if c is None:
                    todo += [then_seg, else_seg]
                elif c:
                    todo.append(then_seg)
                    dead_ids |= else_ids
                else:
                    todo.append(else_seg)
                    dead_ids |= then_ids
        dead[id(fn)] = dead_ids
    return used, dead, cross


def _comptime_condition(ip: Interp, mod: ModuleInstance, cond: A.Expr) -> bool | None:
    """``cond``'s value when it is comptime-known in ``mod``'s scope, else None (it names
    no local: _build_segment only keeps such conditions)."""
    try:
        v = ip.eval(cond, mod.scope)
    except CslError:
        return None
    return v.v if v.type == T.BOOL and isinstance(v.v, bool) else None


def _comptime_lookup(ip: Interp, mod: ModuleInstance) -> Callable[[str], Any]:
    """memory.Lookup for ``mod`` on the PE being elaborated: its globals' values where they
    are already known (a const or param that was evaluated: bool or int), struct fields of
    them, and ``@is_arch``."""
    def value(name: str) -> Any:
        entry = mod.globals.get(name)
        if entry is None or entry.state != "done" or entry.value is None:
            return None
        return entry.value.v

    def lookup(name: str) -> Any:
        if name.startswith("@is_arch("):
            return name == f"@is_arch({ip.ctx.options.arch})"
        base, _, field_name = name.partition(".")
        v = value(base)
        if field_name:
            if not isinstance(v, dict) or field_name not in v:
                return None
            v = v[field_name].v
        return v if isinstance(v, (bool, int)) else None
    return lookup


def _place_local_storage(ip: Interp, mod: ModuleInstance, record: ProgramRecord) -> None:
    """Give PE memory to every local of ``mod``'s functions whose address is taken
    (``var data = [3]i16 {1, 2, 3}; f(&data);``), as cslc places such a local in memory:
    one static slot per declaration (CSL functions are not re-entered while they run; a
    recursive function taking a local's address would share the slot, a limit of this
    model). The type comes from the declaration, else from an initializer that is
    comptime-known in the module's scope; a local whose type depends on run-time values
    gets no slot, and taking its address stays a run-time error."""
    for d, fn_name in _address_taken_locals(ip.ctx, mod):
        key = local_key(d)
        if key in record.local_storage:
            continue
        try:
            if d.type is not None:
                t = ip.eval_type(d.type, mod.scope)
            elif d.init is not None:
                t = ip.eval(d.init, mod.scope).type
            else:
                continue
        except CslError:
            continue
        if t.comptime_only or t in (T.COMPTIME_INT, T.COMPTIME_FLOAT) or T.is_dsd(t):
            continue
        gv = GlobalVar(f"{fn_name}.{d.name}", t, None, True, mod, d)
        record.globals.append(gv)
        record.local_storage[key] = gv


def _address_taken_locals(ctx: Compilation, mod: ModuleInstance) -> list[tuple[A.VarDecl, str]]:
    """(declaration, function name) of each local ``var``/``const`` of ``mod``'s fn/task
    bodies whose name is the operand of ``&`` (or its base) in the same body (memoised per
    file AST)."""
    tree = mod.ast
    hit = ctx.memo.get(("address-taken locals", id(tree)))
    if hit is not None:
        return hit[1]
    out: list[tuple[A.VarDecl, str]] = []
    for e in mod.globals.values():
        fn = e.decl
        if not isinstance(fn, A.FnDecl) or fn.body is None:
            continue
        taken = set()
        for n in fn.body.walk():
            if isinstance(n, A.Unary) and n.op == "&":
                t = n.operand
                while isinstance(t, (A.Index, A.FieldAccess)):
                    t = t.target
                if isinstance(t, A.Ident):
                    taken.add(t.name)
        if taken:
            out.extend((n, fn.name) for n in fn.body.walk()
                       if isinstance(n, A.VarDecl) and n.name in taken
                       and n.kind in ("var", "const") and not n.is_comptime)
    ctx.memo[("address-taken locals", id(tree))] = (tree, out)
    return out


def _const_arrays_used(ctx: Compilation, mod: ModuleInstance) -> tuple[str, ...]:
    """The global ``const``s of ``mod``'s file that its fn/task bodies use as the base of a
    tensor access or take the address of: they need storage in PE memory (Interp.
    const_storage), known before the memory layout is made (memoised per file AST)."""
    tree = mod.ast
    hit = ctx.memo.get(("const arrays", id(tree)))
    if hit is not None:
        return hit[1]
    names: list[str] = []
    for e in mod.globals.values():
        if not isinstance(e.decl, A.FnDecl) or e.decl.body is None:
            continue
        for n in e.decl.body.walk():
            target = None
            if isinstance(n, A.TensorAccess) and isinstance(n.access, A.Index):
                target = n.access.target
            elif isinstance(n, A.Unary) and n.op == "&":
                target = n.operand
                while isinstance(target, (A.Index, A.FieldAccess)):
                    target = target.target
            if isinstance(target, A.Ident) and target.name not in names:
                g = mod.globals.get(target.name)
                if g is not None and isinstance(g.decl, A.VarDecl) and g.decl.kind == "const":
                    names.append(target.name)
    out = tuple(names)
    ctx.memo[("const arrays", id(tree))] = (tree, out)
    return out


def _node_counts(ip: Interp, owned: list[tuple[ModuleInstance, A.FnDecl]]) -> list[int]:
    """Each function's AST nodes that this PE compiles (memory.live_node_count), memoised
    per compilation by the values of the names its conditions use."""
    ctx = ip.ctx
    out = []
    lookups: dict[int, Callable[[str], Any]] = {}   # per module, each name looked up once
    for mod, d in owned:
        names = ctx.memo.get(("cond names", id(d)))
        if names is None:
            names = ctx.memo[("cond names", id(d))] = (d, condition_names(d))
        lookup = lookups.get(id(mod))
        if lookup is None:
            lookup = lookups[id(mod)] = functools.cache(_comptime_lookup(ip, mod))
        key = ("live nodes", id(d), tuple(lookup(n) for n in names[1]))
        hit = ctx.memo.get(key)
        if hit is None:
            hit = ctx.memo[key] = (d, live_node_count(d, lookup))
        out.append(hit[1])
    return out


def _check_exports(programs: list[PEProgram], builder: LayoutBuilder) -> None:
    for prog in programs:
        for name, (sym, span) in prog.record.exported_symbols.items():
            en = builder.exports.get(name)
            if en is None:
                raise CslLayoutError(f"@export_symbol '{name}' has no matching @export_name in "
                                     "the layout", span)
            if isinstance(sym, GlobalVar):
                if sym.type != en.type:
                    raise CslLayoutError(
                        f"exported symbol '{name}' has type '{sym.type}' but @export_name "
                        f"declares '{en.type}'", span).with_note("@export_name is here",
                                                                 en.span)
                if en.mutable and isinstance(sym.type, T.PointerT) and sym.type.const:
                    raise CslLayoutError(f"'{name}' is exported mutable but points to const "
                                         "data", span).with_note("@export_name is here", en.span)
            elif isinstance(sym, FnVal):
                if not isinstance(en.type, T.FnT):
                    raise CslLayoutError(f"function '{name}' is exported but @export_name "
                                         f"declares data of type '{en.type}'", span)


def _check_memcpy(opts: CompileOptions, builder: LayoutBuilder, programs: list[PEProgram],
                  used: bool) -> None:
    if used and not opts.memcpy:
        span = builder.memcpy_import_span or next(
            (getattr(p.record, "memcpy_import_span", None) for p in programs
             if p.record.imports_memcpy), None)
        raise CslLayoutError("this program uses the memcpy library; compile with --memcpy "
                             "--channels N (1..16)", span)
    if not opts.memcpy:
        return
    reserved = memcpy_reserved(opts.arch)
    what = {"color": "colors 21-23 carry memcpy's commands and data",
            "local_task_id": "local task IDs 27, 28 and 30 run memcpy",
            "control_task_id": "control task IDs 33-37 belong to memcpy",
            "input_queue": "memcpy owns input queue 0" + (" and 1 on wse3" if opts.arch ==
                                                        "wse3" else ""),
            "output_queue": "memcpy owns output queue 0" + (" and 1 on wse3" if opts.arch ==
                                                          "wse3" else ""),
            "ut_id": "memcpy owns microthread 0"}
    sources = [("layout", builder.user_ids)] + [(p.path.name, p.record.user_ids)
                                               for p in programs]
    for _, ids in sources:
        for (kind, n), span in ids.items():
            if n in reserved.get(kind, ()):
                raise CslLayoutError(f"{kind.replace('_', ' ')} {n} is reserved by memcpy "
                                     f"({what[kind]})", span)
    stream_colors = {c: k for k, c in builder.memcpy_streams.items()}
    for (x, y, c), r in builder.routes.items():
        if c in reserved["color"]:
            raise CslLayoutError(f"color {c} is reserved by memcpy ({what['color']})", r.span)
        if c in stream_colors:
            raise CslLayoutError(f"do not configure routes for memcpy stream color {c} "
                                 f"({stream_colors[c]}); memcpy routes it", r.span)


def _color_names(ip: Interp, root: ModuleInstance) -> dict[int, str]:
    """Names of color-valued top-level consts/params of the layout file (for reports)."""
    names: dict[int, str] = {}
    for name, e in root.globals.items():
        if e.state == "done" and e.value is not None and e.value.type == T.COLOR \
                and isinstance(e.value.v, int):
            names.setdefault(e.value.v, name)
    return names


def format_layout(lay: Layout) -> str:
    """The human report printed by ``waferscale check``."""
    o = lay.options
    lines = [f"{lay.source}: ok ({o.arch})",
             f"rectangle: {lay.width}x{lay.height} PEs at offsets {lay.fabric_offsets[0]},"
             f"{lay.fabric_offsets[1]} in a {lay.fabric_dims[0]}x{lay.fabric_dims[1]} fabric"
             + (f"; memcpy with {o.channels} channel(s)" if o.memcpy else "")]
    if lay.params:
        lines.append("params: " + ", ".join(f"{k}={describe(v)}" for k, v in lay.params.items()))
    lines.append(f"PE programs: {len(lay.programs)}")
    for p in lay.programs:
        xs = sorted({x for x, _ in p.tiles})
        ys = sorted({y for _, y in p.tiles})
        shown = {k: v for k, v in p.params.items() if not (isinstance(v.v, dict) and (
            "_memcpy_params" in v.v))}
        ps = ", ".join(f"{k}={describe(v)}" for k, v in shown.items())
        lines.append(f"  [{p.index}] {p.path.name} on {len(p.tiles)} PE(s) "
                     f"(x {xs[0]}..{xs[-1]}, y {ys[0]}..{ys[-1]})" + (f": {ps}" if ps else ""))
        if p.memory is not None:
            lines.append(f"      memory: {p.memory.total_bytes} of {PE_MEMORY_BYTES} bytes (data "
                         f"{p.memory.data_bytes} + estimated code {p.memory.code_bytes})")
        rec = p.record
        tasks = ", ".join(f"{k} {n}->{f.name}" for (k, n), f in sorted(rec.task_bindings.items()))
        if tasks:
            lines.append(f"      tasks: {tasks}")
        if rec.queues:
            qs = ", ".join(f"{k.replace('_queue', '')} q{n}"
                           + (f"->color {c['color'].v}" if "color" in c else "")
                           for (k, n), c in sorted(rec.queues.items()))
            lines.append(f"      queues: {qs}")
        if rec.exported_symbols:
            lines.append("      exports: " + ", ".join(sorted(rec.exported_symbols)))
    by_color: dict[int, list[tuple[int, int, Route]]] = {}
    for (x, y, c), r in lay.routes.items():
        by_color.setdefault(c, []).append((x, y, r))
    lines.append(f"colors: {len(by_color)} routed"
                 + (", memcpy streams " + ", ".join(f"{k}={c}" for k, c in
                                                     sorted(lay.memcpy_streams.items()))
                    if lay.memcpy_streams else ""))
    for c in sorted(by_color):
        pats: dict[tuple, list[tuple[int, int]]] = {}
        for x, y, r in by_color[c]:
            pats.setdefault((r.rx, r.tx), []).append((x, y))
        name = lay.color_names.get(c)
        lines.append(f"  color {c}" + (f" ({name})" if name else "")
                     + f": {len(by_color[c])} PE route(s)")
        for (rx, tx), pes in sorted(pats.items(), key=lambda kv: kv[1][0]):
            where = ", ".join(f"({x},{y})" for x, y in pes[:4]) + (
                f" +{len(pes) - 4} more" if len(pes) > 4 else "")
            lines.append(f"      rx={{{','.join(rx)}}} tx={{{','.join(tx)}}} at {where}")
    if lay.exports:
        lines.append("exports: " + ", ".join(
            f"{e.name}: {e.type}" + ("" if e.mutable is None else
                                     " (mutable)" if e.mutable else " (read-only)")
            for e in lay.exports.values()))
    return "\n".join(lines)
