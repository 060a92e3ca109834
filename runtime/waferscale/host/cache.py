"""The compile cache: elaborated programs, and their compiled-engine bytecode, on disk.

Elaborating a large layout (every PE's ``@set_tile_code``, every distinct PE program) is most
of the time ``waferscale cslc`` and a ``cs_python`` load take; the result depends only on the
CSL files read, the compile options and waferscale itself. So :func:`elaborate_cached` keeps
the elaborated :class:`~waferscale.lang.layout.Layout` (pickled) in an entry per

    key = sha256(layout path as given, the working directory when a path is relative, the
                 compile options as given, waferscale's code, Python and NumPy versions)

where "waferscale's code" is a digest of the ``lang``, ``sim`` and ``host`` sources and of
the compiled fabric core. An entry is used only if every CSL file the elaboration read still
has the same contents (SHA-256 of the text, checked at every use) and every file an
``@import_module`` looked for without finding still does not exist. Anything else (no entry,
a stale or unreadable one) elaborates from source, as without the cache.

``cslc`` stores the layout and records the entry's key in ``waferscale.json``; the load of
``cs_python`` takes the layout from that entry, so a program is elaborated once, at its
compile, and later runs of the same compile (or recompiles of unchanged sources) elaborate
nothing. The engine adds its lowered bytecode to the entry on the first load (sim/engine.py),
keyed by the timing model and the engine's tables.

Where and whether: ``WAFERSCALE_CACHE_DIR`` (default ``$XDG_CACHE_HOME/waferscale/programs``,
i.e. ``~/.cache/waferscale/programs``); ``WAFERSCALE_CACHE=0`` turns it off. The directory is
private to its user (mode 0700; a directory that others can write is not trusted, since an
entry is a pickle) and is kept under ``WAFERSCALE_CACHE_MAX_MB`` (default 2048) by removing
the least recently used entries.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import json
import logging
import os
import pickle
import secrets
import shutil
import stat
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from waferscale.lang.layout import CompileOptions, Layout

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
ENV_DIR = "WAFERSCALE_CACHE_DIR"
ENV_SWITCH = "WAFERSCALE_CACHE"
ENV_MAX_MB = "WAFERSCALE_CACHE_MAX_MB"


def cache_dir() -> Path | None:
    """The cache directory, or None when the cache is off (``WAFERSCALE_CACHE=0``)."""
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "off", "no", "false"):
        return None
    d = os.environ.get(ENV_DIR)
    if d:
        return Path(d)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "waferscale" / "programs"


def _usable(d: Path) -> bool:
    """Create ``d`` (mode 0700) if needed; True if it is a directory of this user that no one
    else can write (an entry is a pickle: loading one runs code)."""
    try:
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = d.stat()
    except OSError as e:
        log.debug("compile cache %s unusable: %s", d, e)
        return False
    if not stat.S_ISDIR(st.st_mode):
        return False
    if hasattr(os, "getuid") and (st.st_uid != os.getuid()
                                  or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
        log.warning("not using the compile cache %s: it must belong to this user and be "
                    "writable by no one else", d)
        return False
    return True


_CODE: str | None = None


def code_fingerprint() -> str:
    """A digest of the waferscale code an entry depends on: the Python sources of the front
    end, the simulator and the host side (but their benchmarks), and the compiled fabric core
    (when built)."""
    global _CODE
    if _CODE is None:
        pkg = Path(__file__).resolve().parents[1]
        h = hashlib.sha256()
        files = [pkg / "__init__.py"] + sorted(
            p for sub in ("lang", "sim", "host") for p in (pkg / sub).glob("*.py")
            if not p.name.startswith("bench"))        # (benchmarks change nothing here)
        try:
            from waferscale import _fabric  # type: ignore[attr-defined]
            if getattr(_fabric, "__file__", None):
                files.append(Path(_fabric.__file__))
        except ImportError:
            h.update(b"no fabric core")
        for f in files:
            h.update(str(f.relative_to(pkg) if f.is_relative_to(pkg) else f.name).encode())
            h.update(f.read_bytes())
        _CODE = h.hexdigest()
    return _CODE


def cache_key(layout_path: str | Path, options: CompileOptions) -> str:
    """The key of a compile (see the module docstring). Paths are taken as given, since
    diagnostics name files as given; a relative one adds the working directory."""
    import numpy as np
    opts = dataclasses.asdict(options)
    relative = not Path(layout_path).is_absolute() or any(
        not Path(p).is_absolute() for p in options.import_paths)
    data = {"format": FORMAT, "layout": str(layout_path), "options": opts,
            "cwd": os.getcwd() if relative else None, "code": code_fingerprint(),
            "python": list(sys.version_info[:2]), "numpy": np.__version__}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """No garbage collection inside the block: (un)pickling a large layout creates hundreds of
    thousands of objects and no garbage, and the collector's passes over them would cost
    several times the work itself."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _file_digest(path: str) -> str | None:
    """The digest of a CSL file's text as the front end reads it (None: unreadable)."""
    from waferscale.lang.source import SourceFile
    try:
        return _text_digest(SourceFile.read(path).text)
    except OSError:
        return None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


class Entry:
    """One compile's directory in the cache: ``manifest.json`` (what the entry depends on,
    and the token naming its files), ``layout-<token>.pkl`` and ``lowered-<token>-<tag>.pkl``
    (the engine's bytecode for one timing model). The token keeps a layout and its bytecode
    together when two processes write one entry at once."""

    def __init__(self, root: Path, key: str) -> None:
        self.root, self.key = root, key
        self.dir = root / key[:2] / key
        self.token: str | None = None

    def _manifest(self) -> dict[str, Any] | None:
        try:
            m = json.loads((self.dir / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return m if isinstance(m, dict) and m.get("format") == FORMAT else None

    def load_layout(self) -> Layout | None:
        """The cached layout, if the entry exists and is current (see the module docstring)."""
        m = self._manifest()
        if m is None or m.get("code") != code_fingerprint():
            return None                # (a recorded key may predate a change of waferscale)
        for path, digest in m.get("sources", {}).items():
            if _file_digest(path) != digest:
                log.info("compile cache: %s changed; elaborating", path)
                return None
        for path in m.get("probed", []):
            if os.path.exists(path):
                log.info("compile cache: %s appeared; elaborating", path)
                return None
        token = str(m.get("token", ""))
        try:
            with quiet_gc():
                data = (self.dir / f"layout-{token}.pkl").read_bytes()
                lay = pickle.loads(data)
        except Exception as e:   # noqa: BLE001 - a damaged entry is a miss, never an error
            log.warning("compile cache: unreadable entry %s (%s); elaborating", self.dir, e)
            return None
        self.token = token
        with contextlib.suppress(OSError):
            os.utime(self.dir / MANIFEST)          # recently used (pruning)
        lay.cache = self
        return lay

    def store_layout(self, lay: Layout) -> None:
        """Write ``lay`` (just elaborated, nothing run on it) as this entry's layout."""
        ctx = lay.programs[0].instance.ctx if lay.programs else None
        if ctx is None:
            return
        sources: dict[str, str] = {}
        for resolved, tree in ctx._ast_cache.items():
            f = tree.span.file
            sources[resolved] = _text_digest(f.text) if f is not None else ""
        token = secrets.token_hex(8)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            with quiet_gc():
                data = pickle.dumps(lay, protocol=pickle.HIGHEST_PROTOCOL)
            _write_atomic(self.dir / f"layout-{token}.pkl", data)
            manifest = {"format": FORMAT, "key": self.key, "token": token,
                        "code": code_fingerprint(),
                        "layout": str(lay.source), "sources": sources,
                        "probed": sorted(ctx.probed), "created": time.time(),
                        "bytes": len(data)}
            _write_atomic(self.dir / MANIFEST, json.dumps(manifest, indent=1).encode())
        except (OSError, pickle.PicklingError, TypeError, AttributeError, RecursionError) as e:
            log.warning("compile cache: could not store %s (%s)", self.dir, e)
            return
        self.token = token
        for old in self.dir.glob("*.pkl"):        # files of an earlier token
            if token not in old.name:
                with contextlib.suppress(OSError):
                    old.unlink()
        lay.cache = self
        prune(self.root)

    def load_lowered(self, tag: str) -> Any:
        if self.token is None:
            return None
        try:
            with quiet_gc():
                return pickle.loads((self.dir / f"lowered-{self.token}-{tag}.pkl").read_bytes())
        except FileNotFoundError:
            return None
        except Exception as e:   # noqa: BLE001 - a damaged file is a miss
            log.warning("compile cache: unreadable bytecode in %s (%s)", self.dir, e)
            return None

    def store_lowered(self, tag: str, lowered: Any) -> None:
        if self.token is None:
            return
        try:
            with quiet_gc():
                data = pickle.dumps(lowered, protocol=pickle.HIGHEST_PROTOCOL)
            _write_atomic(self.dir / f"lowered-{self.token}-{tag}.pkl", data)
        except (OSError, pickle.PicklingError, TypeError, AttributeError, RecursionError) as e:
            log.warning("compile cache: could not store bytecode in %s (%s)", self.dir, e)


def entry_for(key: str | None) -> Entry | None:
    """The entry of ``key`` in the cache directory (None: cache off or unusable)."""
    root = cache_dir()
    if root is None or not key or not _usable(root):
        return None
    return Entry(root, key)


def elaborate_cached(layout_path: str | Path, options: CompileOptions,
                     key: str | None = None) -> Layout:
    """:func:`~waferscale.lang.layout.elaborate` through the cache (module docstring):
    ``key`` is the entry to use, by default the key of these arguments. The layout has
    ``cache`` set to its entry when there is one."""
    from waferscale.lang.layout import elaborate
    entry = entry_for(key or cache_key(layout_path, options))
    if entry is not None:
        lay = entry.load_layout()
        if lay is not None:
            log.debug("compile cache hit: %s", entry.dir)
            return lay
    lay = elaborate(layout_path, options)
    if entry is not None:
        entry.store_layout(lay)
    return lay


PRUNE_EVERY_S = 60.0      # the directory is scanned at most this often by a store


def prune(root: Path, max_bytes: int | None = None) -> None:
    """Remove the least recently used entries until the cache holds at most ``max_bytes``
    (``WAFERSCALE_CACHE_MAX_MB``, default 2048 MB). Without ``max_bytes``, at most once a
    minute (the scan of a directory of many small entries is not free)."""
    if max_bytes is None:
        marker = root / ".pruned"
        try:
            if time.time() - marker.stat().st_mtime < PRUNE_EVERY_S:
                return
        except OSError:
            pass
        with contextlib.suppress(OSError):
            marker.touch()
        try:
            max_bytes = int(float(os.environ.get(ENV_MAX_MB, "2048")) * 2**20)
        except ValueError:
            max_bytes = 2048 * 2**20
    entries = []
    total = 0
    for manifest in root.glob(f"*/*/{MANIFEST}"):
        d = manifest.parent
        try:
            size = sum(f.stat().st_size for f in d.iterdir())
            entries.append((manifest.stat().st_mtime, size, d))
        except OSError:
            continue
        total += size
    for _, size, d in sorted(entries):
        if total <= max_bytes:
            break
        shutil.rmtree(d, ignore_errors=True)
        total -= size
