"""The compile step: ``waferscale cslc`` and :func:`compile`.

:func:`compile` elaborates a layout file with cslc's options
(:func:`waferscale.lang.layout.elaborate`, which raises :class:`~waferscale.lang.errors.CslError`
on any user error) and writes an output directory shaped like cslc's, so unmodified SDK host
scripts find what they read:

``OUT/out.json``
    ``{"params": {name: value-as-string, ...}, "colors": {name: "id", ...}}``. ``params`` holds
    the ``--params`` values exactly as host scripts expect them (``int(params["M"])``):
    integers are written in decimal (``0x10`` becomes ``"16"``), anything else as given.
    ``colors`` holds ``--colors`` bindings (not read by official scripts; kept apart so that
    ``params`` only has what cslc's ``--params`` put there).
``OUT/bin/out_rpc.json``
    ``{"rpc_symbols": [...]}`` with one entry per ``@export_name``, in declaration order,
    ids counting from 0: data ``{"id", "kind": "Var", "name", "sym_name", "immutable": 0|1,
    "type": "[*]f32"}``, functions ``{"id", "kind": "Func", "name", "sym_name", "type":
    <return type>, "inputs": [{"name", "type"}, ...]}`` (``inputs`` omitted when the function
    takes no parameter, as cslc does). ``SdkRuntime.get_id`` returns these ids.
``OUT/waferscale.json``
    What our simulator needs to rebuild the program *from source* (there are no ELFs): the
    absolute layout path, every compile option (``options``, the fields of
    :class:`~waferscale.lang.layout.CompileOptions`, import paths made absolute), the
    rectangle, fabric dims/offsets, memcpy stream colors, the exports as
    :class:`~waferscale.host.device.ExportInfo` fields, and the SHA-256 of every CSL file the
    compilation read (``sources``) so a stale output directory is detected.

:func:`read_output_dir` reads the three files back into a :class:`CompileRecord`;
:meth:`CompileRecord.compile_options` rebuilds the ``CompileOptions`` for re-elaboration.
Only the files above are written; other files in ``OUT`` are left alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import operator
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from waferscale.lang.errors import CslLayoutError

from .device import DeviceError, ExportInfo

if TYPE_CHECKING:
    from waferscale.lang.layout import CompileOptions, Layout

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
RECORD_FILE = "waferscale.json"
OUT_JSON = "out.json"
RPC_JSON = os.path.join("bin", "out_rpc.json")

ParamSpec = Mapping[str, Any] | Iterable[tuple[str, Any]] | None


# -- exports ---------------------------------------------------------------------------------


def _type_bits(t: Any) -> int:
    bits = getattr(t, "bits", None)
    return int(bits) if isinstance(bits, int) else 0


@dataclass(frozen=True)
class RpcSymbol:
    """One entry of ``bin/out_rpc.json`` (see the module docstring)."""
    id: int
    kind: str                              # "Var" | "Func"
    name: str
    sym_name: str
    type: str                              # data type, or return type of a function
    immutable: bool = False
    inputs: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "kind": self.kind, "name": self.name,
                             "sym_name": self.sym_name, "type": self.type}
        if self.kind == "Var":
            d["immutable"] = int(self.immutable)
        elif self.inputs:
            d["inputs"] = [{"name": n, "type": t} for n, t in self.inputs]
        return d


def exports_of(layout: Layout) -> tuple[dict[str, ExportInfo], list[RpcSymbol]]:
    """The host-visible names of an elaborated program, as the device protocol's
    :class:`ExportInfo` and as ``out_rpc.json`` entries (ids in ``@export_name`` order)."""
    from waferscale.lang import types as T
    from waferscale.lang.values import FnVal, GlobalVar

    # Symbol and parameter names come from the PE programs that export each name.
    sym_names: dict[str, str] = {}
    fn_params: dict[str, list[str | None]] = {}
    for prog in layout.programs:
        for name, (sym, _span) in prog.record.exported_symbols.items():
            if name in sym_names:
                continue
            if isinstance(sym, GlobalVar):
                sym_names[name] = sym.name
            elif isinstance(sym, FnVal):
                sym_names[name] = sym.name
                decl = sym.decl
                fn_params[name] = [p.name for p in getattr(decl, "params", []) or []]
    infos: dict[str, ExportInfo] = {}
    rpc: list[RpcSymbol] = []
    for i, (name, en) in enumerate(layout.exports.items()):
        t = en.type
        if isinstance(t, T.FnT):
            ptypes = tuple("anytype" if p is None else str(p) for p in t.params)
            infos[name] = ExportInfo(name, "fn", str(t), False, 0, ptypes)
            pnames = fn_params.get(name, [])
            inputs = tuple((pnames[k] or f"arg{k}" if k < len(pnames) else f"arg{k}", pt)
                           for k, pt in enumerate(ptypes))
            rpc.append(RpcSymbol(i, "Func", name, sym_names.get(name, name), str(t.ret),
                                 inputs=inputs))
        else:
            elem = t.elem if isinstance(t, T.PointerT) else t
            infos[name] = ExportInfo(name, "data", str(t), bool(en.mutable), _type_bits(elem))
            rpc.append(RpcSymbol(i, "Var", name, sym_names.get(name, name), str(t),
                                 immutable=not en.mutable))
    return infos, rpc


def source_files(layout: Layout) -> list[Path]:
    """Every user CSL file the compilation read: the layout file, the PE programs and the
    modules they import (library modules implemented in Python are not files)."""
    files: dict[str, Path] = {}

    def add(p: Any) -> None:
        if p:
            path = Path(p)
            if path.is_file():
                files.setdefault(str(path.resolve()), path.resolve())

    add(layout.source)
    for prog in layout.programs:
        add(prog.path)
        for mod in getattr(prog.record, "modules", []) or []:
            if not getattr(mod, "is_stdlib", False):
                add(getattr(mod, "path", None))
    return [files[k] for k in sorted(files)]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the compile record ------------------------------------------------------------------------


@dataclass
class CompileRecord:
    """Everything an output directory says about the compiled program."""
    output_dir: Path
    layout: Path
    options: dict[str, Any]
    width: int
    height: int
    fabric_dims: tuple[int, int]
    fabric_offsets: tuple[int, int]
    memcpy_streams: dict[str, int]
    exports: dict[str, ExportInfo]
    symbol_ids: dict[str, int]
    params: dict[str, str]
    colors: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    waferscale_version: str = ""
    cache_key: str = ""                 # the compile-cache entry of the compile (cache.py)

    @property
    def h2d_streams(self) -> dict[int, str]:
        """Color id -> stream name (``MEMCPYH2D_k``) of the host-to-device streams."""
        return {c: k for k, c in self.memcpy_streams.items() if k.startswith("MEMCPYH2D")}

    @property
    def d2h_streams(self) -> dict[int, str]:
        """Color id -> stream name (``MEMCPYD2H_k``) of the device-to-host streams."""
        return {c: k for k, c in self.memcpy_streams.items() if k.startswith("MEMCPYD2H")}

    def compile_options(self) -> CompileOptions:
        """The :class:`CompileOptions` to re-elaborate ``layout`` exactly as compiled."""
        from waferscale.lang.layout import CompileOptions
        known = {f.name for f in dataclasses.fields(CompileOptions)}
        kw: dict[str, Any] = {}
        for k, v in self.options.items():
            if k not in known:
                log.warning("%s: ignoring unknown compile option '%s' (compiled by another "
                            "waferscale version?)", self.output_dir / RECORD_FILE, k)
                continue
            if isinstance(v, list):
                v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
            kw[k] = v
        return CompileOptions(**kw)

    def changed_sources(self) -> list[str]:
        """Source files that changed or vanished since the compile."""
        out = []
        for path, digest in self.sources.items():
            p = Path(path)
            if not p.is_file() or _sha256(p) != digest:
                out.append(path)
        return out


def _export_to_json(e: ExportInfo) -> dict[str, Any]:
    return {"name": e.name, "kind": e.kind, "type": e.type, "mutable": e.mutable,
            "elem_bits": e.elem_bits, "params": list(e.params)}


def _export_from_json(d: dict[str, Any]) -> ExportInfo:
    return ExportInfo(str(d["name"]), str(d["kind"]), str(d["type"]), bool(d["mutable"]),
                      int(d["elem_bits"]), tuple(str(p) for p in d.get("params", ())))


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_output_dir(output: str | Path, *, layout: str | Path, options: dict[str, Any],
                     width: int, height: int, fabric_dims: tuple[int, int],
                     fabric_offsets: tuple[int, int], exports: dict[str, ExportInfo],
                     rpc_symbols: list[RpcSymbol] | None = None,
                     params: dict[str, str] | None = None, colors: dict[str, str] | None = None,
                     memcpy_streams: dict[str, int] | None = None,
                     sources: dict[str, str] | None = None, cache_key: str = "") -> Path:
    """Write ``out.json``, ``bin/out_rpc.json`` and ``waferscale.json`` into ``output``.

    :func:`compile` calls this with what elaboration found; tests and alternative front ends
    may call it directly. Without ``rpc_symbols`` the entries are derived from ``exports``
    (ids in order, parameter names ``arg0``...).
    """
    from waferscale import __version__
    out = Path(output)
    if rpc_symbols is None:
        rpc_symbols = []
        for i, e in enumerate(exports.values()):
            if e.kind == "fn":
                ret = e.type.rsplit(")", 1)[-1].strip() or "void"
                rpc_symbols.append(RpcSymbol(i, "Func", e.name, e.name, ret, inputs=tuple(
                    (f"arg{k}", t) for k, t in enumerate(e.params))))
            else:
                rpc_symbols.append(RpcSymbol(i, "Var", e.name, e.name, e.type,
                                             immutable=not e.mutable))
    record = {
        "format": FORMAT_VERSION,
        "waferscale_version": __version__,
        "layout": str(Path(layout).resolve()),
        "options": options,
        "rectangle": {"width": width, "height": height},
        "fabric_dims": list(fabric_dims),
        "fabric_offsets": list(fabric_offsets),
        "memcpy_streams": dict(memcpy_streams or {}),
        "exports": [_export_to_json(e) for e in exports.values()],
        "sources": dict(sources or {}),
    }
    if cache_key:
        record["cache_key"] = cache_key
    _write_json(out / OUT_JSON, {"params": dict(params or {}), "colors": dict(colors or {})})
    _write_json(out / RPC_JSON, {"rpc_symbols": [s.to_json() for s in rpc_symbols]})
    _write_json(out / RECORD_FILE, record)
    log.info("wrote %s (%dx%d PEs, %d export(s))", out, width, height, len(exports))
    return out


def read_output_dir(output: str | Path) -> CompileRecord:
    """Read an output directory written by :func:`compile`; :class:`DeviceError` if it is
    missing, was not written by waferscale, or is malformed."""
    out = Path(output)
    if not out.is_dir():
        raise DeviceError(f"compile output directory '{out}' does not exist; compile first, "
                          f"e.g. `waferscale cslc layout.csl ... -o {out}`")
    rec_path = out / RECORD_FILE
    if not rec_path.is_file():
        what = ("it has no waferscale.json (was it compiled by Cerebras' cslc?)"
                if (out / OUT_JSON).is_file() else "it has no waferscale.json")
        raise DeviceError(f"'{out}' is not a waferscale compile output directory: {what}; "
                          f"recompile with `waferscale cslc ... -o {out}`")
    try:
        rec = json.loads(rec_path.read_text(encoding="utf-8"))
        outj = json.loads((out / OUT_JSON).read_text(encoding="utf-8"))
        rpc = json.loads((out / RPC_JSON).read_text(encoding="utf-8"))
        if rec.get("format") != FORMAT_VERSION:
            raise DeviceError(f"{rec_path}: unsupported format {rec.get('format')!r} "
                              f"(expected {FORMAT_VERSION}); recompile with `waferscale cslc`")
        exports = {e["name"]: _export_from_json(e) for e in rec["exports"]}
        ids = {str(s["name"]): int(s["id"]) for s in rpc["rpc_symbols"]}
        return CompileRecord(
            output_dir=out, layout=Path(rec["layout"]), options=dict(rec["options"]),
            width=int(rec["rectangle"]["width"]), height=int(rec["rectangle"]["height"]),
            fabric_dims=(int(rec["fabric_dims"][0]), int(rec["fabric_dims"][1])),
            fabric_offsets=(int(rec["fabric_offsets"][0]), int(rec["fabric_offsets"][1])),
            memcpy_streams={str(k): int(v) for k, v in rec.get("memcpy_streams", {}).items()},
            exports=exports, symbol_ids=ids,
            params={str(k): str(v) for k, v in outj.get("params", {}).items()},
            colors={str(k): str(v) for k, v in outj.get("colors", {}).items()},
            sources={str(k): str(v) for k, v in rec.get("sources", {}).items()},
            waferscale_version=str(rec.get("waferscale_version", "")),
            cache_key=str(rec.get("cache_key", "")))
    except DeviceError:
        raise
    except FileNotFoundError as e:
        raise DeviceError(f"'{out}' is an incomplete compile output directory (missing "
                          f"{e.filename}); recompile with `waferscale cslc`") from None
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise DeviceError(f"'{out}' holds a malformed compile record ({type(e).__name__}: "
                          f"{e}); recompile with `waferscale cslc`") from None


# -- compile ---------------------------------------------------------------------------------


def _pairs(value: ParamSpec, what: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        raise CslLayoutError(f"{what} must be a mapping or a sequence of (name, value) pairs, "
                             f"not a string (use {{'M': 4}} rather than 'M:4')")
    items = value.items() if isinstance(value, Mapping) else value
    out = []
    for item in items:
        try:
            name, v = item
        except (TypeError, ValueError):
            raise CslLayoutError(f"{what}: expected (name, value) pairs, got {item!r}") from None
        if not isinstance(name, str) or not name:
            raise CslLayoutError(f"{what}: name must be a non-empty string, got {name!r}")
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise CslLayoutError(f"{what} {name}: value must be a number, got {v!r}")
        if isinstance(v, int) and v.bit_length() > 64:
            raise CslLayoutError(f"{what} {name}: value has {v.bit_length()} bits; params are "
                                 "at most 64-bit integers")
        if isinstance(v, str) and len(v) > 1000:
            raise CslLayoutError(f"{what} {name}: value is {len(v)} characters long")
        out.append((name, str(v).strip()))
    return tuple(out)


def _xy(value: Any, what: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, str):
        parts = value.split(",")
    else:
        parts = list(value)
    try:
        if len(parts) != 2 or any(isinstance(p, (bool, float)) for p in parts):
            raise ValueError
        a, b = (int(p) for p in parts)
    except (TypeError, ValueError):
        raise CslLayoutError(f"{what} must be two integers X,Y, got {value!r}") from None
    if a < 0 or b < 0:
        raise CslLayoutError(f"{what} must be non-negative, got {a},{b}")
    return a, b


def _int_arg(value: Any, what: str) -> int:
    """A non-negative integer argument of :func:`compile` (a CslError otherwise)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)       # int, numpy integers
    except TypeError:
        raise CslLayoutError(f"{what} must be an integer, got {value!r}") from None
    if value < 0 or value.bit_length() > 32:
        raise CslLayoutError(f"{what} must be between 0 and 2^32-1, got {value}")
    return value


def _path_arg(value: Any, what: str) -> str:
    if not isinstance(value, (str, Path)) or not str(value):
        raise CslLayoutError(f"{what} must be a path (str or pathlib.Path), got {value!r}")
    return str(value)


def _param_text(text: str) -> str:
    try:
        return str(int(text, 0))
    except ValueError:
        return text


def record_options(options: CompileOptions) -> dict[str, Any]:
    """The JSON form of compile options, import paths made absolute (relative to the cwd,
    which is how the front end resolves them)."""
    d = dataclasses.asdict(options)
    d["import_paths"] = [str(Path(p).resolve()) for p in options.import_paths]
    return d


def compile_layout(layout_path: str | Path, options: CompileOptions,
                   output: str | Path = "out") -> tuple[Path, Layout]:
    """Elaborate (through the compile cache, host/cache.py) and write the output directory;
    returns it with the elaborated layout. The record names the cache entry, so that the
    simulator's load takes this elaboration instead of redoing it."""
    from .cache import cache_key, elaborate_cached
    key = cache_key(layout_path, options)
    lay = elaborate_cached(layout_path, options, key)
    infos, rpc = exports_of(lay)
    params = {name: _param_text(text) for name, text in options.params}
    colors = {name: _param_text(text) for name, text in options.colors}
    sources = {str(p): _sha256(p) for p in source_files(lay)}
    out = write_output_dir(
        output, layout=layout_path, options=record_options(options), width=lay.width,
        height=lay.height, fabric_dims=lay.fabric_dims, fabric_offsets=lay.fabric_offsets,
        exports=infos, rpc_symbols=rpc, params=params, colors=colors,
        memcpy_streams=dict(lay.memcpy_streams), sources=sources,
        cache_key=key if lay.cache is not None else "")
    return out, lay


def compile(layout_path: str | Path, *, arch: str = "wse3", params: ParamSpec = None,
            colors: ParamSpec = None, fabric_dims: Any = None, fabric_offsets: Any = None,
            memcpy: bool = False, channels: int = 0, width_west_buf: int = 0,
            width_east_buf: int = 0, import_paths: Iterable[str | Path] = (),
            output: str | Path = "out") -> Path:
    """Compile ``layout_path`` like ``cslc`` and write the output directory; return its path.

    ``params``/``colors`` are mappings (or ``(name, value)`` pairs) like cslc's
    ``--params M:4,N:6``; ``fabric_dims``/``fabric_offsets`` are ``(x, y)`` pairs or ``"X,Y"``.
    Raises :class:`~waferscale.lang.errors.CslError` for any error in the program or options.
    """
    from waferscale.lang.layout import ARCH_FABRIC_DIMS, CompileOptions
    # Every argument is checked here so that a wrong one is a CslError, never a Python
    # TypeError/ValueError from deeper down (issue 14).
    if not isinstance(arch, str) or arch not in ARCH_FABRIC_DIMS:
        raise CslLayoutError(f"arch must be 'wse2' or 'wse3', got {arch!r}")
    if not isinstance(memcpy, bool):
        raise CslLayoutError(f"memcpy must be True or False, got {memcpy!r}")
    if isinstance(import_paths, (str, Path)):
        import_paths = [import_paths]
    try:
        paths = tuple(_path_arg(p, "import_paths entry") for p in import_paths)
    except TypeError:
        raise CslLayoutError("import_paths must be a path or a sequence of paths, got "
                             f"{import_paths!r}") from None
    opts = CompileOptions(
        arch=arch, params=_pairs(params, "params"), colors=_pairs(colors, "colors"),
        fabric_dims=_xy(fabric_dims, "fabric_dims"),
        fabric_offsets=_xy(fabric_offsets, "fabric_offsets"), memcpy=memcpy,
        channels=_int_arg(channels, "channels"),
        width_west_buf=_int_arg(width_west_buf, "width_west_buf"),
        width_east_buf=_int_arg(width_east_buf, "width_east_buf"), import_paths=paths)
    out, _ = compile_layout(_path_arg(layout_path, "layout_path"), opts,
                            _path_arg(output, "output"))
    return out
