"""Host-side packing: a model's weights rounded to the wafer's dtypes and cut into per-PE tiles.

Protocol (docs/decode-runtime.md, "Host-side packing"):

* :func:`wafer_weights` is the dtype plan, the one place where the wafer's weights are made:
  every matrix rounded once from the loader's float32 to f16 (round to nearest even) in
  ``out x in`` orientation (``y = W x``), the norm gains kept f32, the tied embedding once
  (it serves the host's embedding lookup and the LM head). The wafer-numerics reference
  (:mod:`waferscale.decode.numerics`) and :func:`pack` both start from it.
* :func:`pack` cuts those matrices into the tiles of :mod:`waferscale.plan.geometry`: per kind
  an array ``(rows, W, max_elems)`` of f16 bit patterns (``np.uint16``, the memcpy words),
  where ``[r, c]`` is PE ``(c, r)``'s tile stored column-major with that PE's own ``m``
  (``tile[j * m + i] = Wmat[row_i, col_j]``) and zero padded after ``m * n``. Layers are
  stacked on a leading axis. Norm gains are f32 in row form, ``(W, max_dblk)`` zero padded.
* :func:`load_packed` adds a disk cache keyed by the model file's content hash (itself cached
  by path, size and mtime), the grid's ``(W, H, H_head)`` and :data:`PACK_FORMAT_VERSION`.
  Entries are directories of ``.npy`` files plus a ``manifest.json`` holding every file's
  shape, dtype and CRC-32; they are written to a temporary directory and renamed into place
  (atomic), loaded with ``mmap_mode="r"`` and verified against the manifest (a truncated,
  altered or half-written entry is logged, deleted and rebuilt, never used). Files are not
  fsynced: after a crash of the machine the CRC-32 is what catches a torn entry. Temporary
  directories of killed processes are removed after an hour.

Memory layout trick: the f16 matrices of :class:`WaferLayer` are ``(out, in)`` arrays stored
in Fortran order (they are transposes of C-contiguous ``(in, out)`` arrays), so a tile's
columns are contiguous runs and packing is a handful of large strided copies, no transpose.

Limits: the grid's KV ``slots`` do not change any packed array and are not part of the cache
key. Weights whose magnitude rounds to f16 infinity (>= 65520) are rejected.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from waferscale.model.config import ModelConfig
from waferscale.model.errors import ModelError
from waferscale.model.gguf_loader import ModelWeights
from waferscale.plan.geometry import LayerGrid, block_len

log = logging.getLogger(__name__)

#: Bumped whenever the packed arrays' meaning or the cache layout changes.
PACK_FORMAT_VERSION = 1
#: Environment variable naming the cache directory (default ``~/.cache/waferscale/packed``).
CACHE_ENV = "WAFERSCALE_PACK_CACHE"

#: The weight kinds of a layer region, in the order of :class:`PackedModel`'s fields.
LAYER_KINDS = ("qkv", "o", "gate_up", "down")
#: Every f16 tile kind (the head region's ``head`` too).
TILE_KINDS = (*LAYER_KINDS, "head")

_F16_MAX_EXP = 0x7C00  # exponent bits of an f16 inf / NaN


# --------------------------------------------------------------------------------------------
# The dtype plan
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WaferLayer:
    """One block's weights as the wafer holds them.

    Matrices are f16, ``(out, in)`` (``y = W x``), Fortran-ordered (a matrix's ``.T`` is
    C-contiguous ``(in, out)``); with ``d``, ``q``, ``kv``, ``f`` as in
    :class:`~waferscale.model.gguf_loader.LayerWeights`: ``wq`` ``(q, d)``, ``wk``/``wv``
    ``(kv, d)``, ``wo`` ``(d, q)``, ``w_gate``/``w_up`` ``(f, d)``, ``w_down`` ``(d, f)``.
    ``attn_norm`` and ``ffn_norm`` are f32 ``(d,)``.
    """

    attn_norm: np.ndarray
    wq: np.ndarray
    wk: np.ndarray
    wv: np.ndarray
    wo: np.ndarray
    ffn_norm: np.ndarray
    w_gate: np.ndarray
    w_up: np.ndarray
    w_down: np.ndarray


@dataclass(frozen=True)
class WaferWeights:
    """All weights as the wafer holds them (see :func:`wafer_weights`).

    ``token_embd`` is f16 ``(vocab, d)``, C-contiguous (row ``i`` embeds token ``i``; the host
    sends ``float32(token_embd[i])`` as layer 0's input). ``output`` is the LM head ``(vocab,
    d)`` f16: the same array object as ``token_embd`` when the embeddings are tied.
    ``output_norm`` is f32 ``(d,)``.
    """

    token_embd: np.ndarray
    output_norm: np.ndarray
    output: np.ndarray
    layers: tuple[WaferLayer, ...]

    def nbytes(self) -> int:
        """Bytes held (a tied head counted once)."""
        total = self.token_embd.nbytes + self.output_norm.nbytes
        if self.output is not self.token_embd:
            total += self.output.nbytes
        for layer in self.layers:
            total += sum(getattr(layer, f.name).nbytes for f in fields(layer))
        return total


def to_f16(a: np.ndarray, name: str = "tensor") -> np.ndarray:
    """``a`` rounded once to f16 (IEEE round to nearest even), same shape and memory order.

    Raises:
        ModelError: an element is not finite or rounds to f16 infinity (``|x| >= 65520``).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        h = a.astype(np.float16, order="K")
    bits = h.view(np.uint16)
    if bool(np.any((bits & _F16_MAX_EXP) == _F16_MAX_EXP)):
        bad = float(np.max(np.abs(a)))
        raise ModelError(f"{name} does not fit f16 (largest magnitude {bad:g}, or not finite)")
    return h


def wafer_weights(weights: ModelWeights) -> WaferWeights:
    """The dtype plan: every matrix rounded once to f16 in ``out x in`` orientation, gains f32.

    ``weights`` is the loader's float32 :class:`~waferscale.model.gguf_loader.ModelWeights`
    (``x @ W`` layout, ``(in, out)`` C-contiguous): each such matrix ``A`` becomes
    ``f16(A).T``, an ``(out, in)`` Fortran-ordered view, with no transpose copy. The embedding
    ``(vocab, d)`` is already ``out x in`` and stays C-contiguous; a tied head is rounded once.

    Raises:
        ModelError: a weight does not fit f16 (see :func:`to_f16`).
    """
    def mat(a: np.ndarray, name: str) -> np.ndarray:
        return to_f16(np.ascontiguousarray(a), name).T

    def gain(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=np.float32)

    layers = []
    for i, lw in enumerate(weights.layers):
        layers.append(WaferLayer(
            attn_norm=gain(lw.attn_norm), wq=mat(lw.wq, f"blk.{i}.attn_q"),
            wk=mat(lw.wk, f"blk.{i}.attn_k"), wv=mat(lw.wv, f"blk.{i}.attn_v"),
            wo=mat(lw.wo, f"blk.{i}.attn_output"), ffn_norm=gain(lw.ffn_norm),
            w_gate=mat(lw.w_gate, f"blk.{i}.ffn_gate"), w_up=mat(lw.w_up, f"blk.{i}.ffn_up"),
            w_down=mat(lw.w_down, f"blk.{i}.ffn_down")))
    embd = to_f16(np.ascontiguousarray(weights.token_embd), "token_embd")
    tied = weights.output is weights.token_embd
    output = embd if tied else to_f16(np.ascontiguousarray(weights.output), "output")
    return WaferWeights(token_embd=embd, output_norm=gain(weights.output_norm), output=output,
                        layers=tuple(layers))


# --------------------------------------------------------------------------------------------
# Tiles
# --------------------------------------------------------------------------------------------

def _block_groups(total: int, parts: int) -> Iterator[tuple[int, int, int, int]]:
    """``(first_block, count, block_len, first_item)`` per run of equal blocks (at most 2)."""
    base, extra = divmod(total, parts)
    if extra:
        yield 0, extra, base + 1, 0
    if parts - extra and base:
        yield extra, parts - extra, base, extra * (base + 1)


def _tile_shape(grid: LayerGrid, kind: str, c: int, r: int) -> tuple[int, int]:
    return {"qkv": grid.qkv_tile, "o": grid.o_tile, "gate_up": grid.gate_up_tile,
            "down": grid.down_tile, "head": grid.head_tile}[kind](c, r)


def kind_rows(grid: LayerGrid, kind: str) -> int:
    """Region rows that hold a tile of ``kind`` (``n_kv`` for qkv/o, ``H``, or ``H_head``)."""
    if kind in ("qkv", "o"):
        return grid.config.n_kv_heads
    return grid.H_head if kind == "head" else grid.H


def max_elems(grid: LayerGrid, kind: str) -> int:
    """The padded tile length of ``kind``: the largest ``m * n`` over its PEs."""
    return max(m * n for r in range(kind_rows(grid, kind)) for c in range(grid.W)
               for m, n in [_tile_shape(grid, kind, c, r)])


def _runs(a: np.ndarray, length: int) -> np.ndarray:
    """``a`` with its (contiguous) last axis regrouped into opaque runs of ``length``
    elements: NumPy then moves each run as one element, several times faster than an inner
    loop over a few f16 values."""
    return a.view(np.dtype((np.void, length * a.itemsize)))


def _by_input(dst: np.ndarray, pieces: list[np.ndarray], W: int) -> None:
    """Tiles that split the *input* columns over the ``W`` columns (qkv, gate_up, head).

    ``dst``: ``(W, E)``. ``pieces``: ``(in, m_k)`` arrays (rows = input index, last axis
    contiguous) whose columns, concatenated, are the tile's ``m`` output rows in order. Tile
    ``c`` is ``concat(pieces)[block c]`` row-major, i.e. ``Wmat[:, block c]`` column-major.
    """
    n_in = pieces[0].shape[0]
    m = sum(p.shape[1] for p in pieces)
    for c0, k, n, s in _block_groups(n_in, W):
        view = dst[c0:c0 + k, :n * m].reshape(k, n, m)
        off = 0
        for p in pieces:
            w = p.shape[1]
            _runs(view[:, :, off:off + w], w)[..., 0] = _runs(p[s:s + k * n], w)[:, 0].reshape(k, n)
            off += w


def _by_output(dst: np.ndarray, mt: np.ndarray, W: int) -> None:
    """Tiles that split the *output* rows over the ``W`` columns (o, down).

    ``dst``: ``(W, E)``. ``mt``: ``(n, out)``, the tile's ``n`` input columns as rows (last
    axis contiguous). Tile ``c`` (``m_c`` = block ``c`` of ``out``) is ``mt[:, block c]``
    row-major.
    """
    n, n_out = mt.shape
    for c0, k, mb, s in _block_groups(n_out, W):
        _runs(dst[c0:c0 + k, :n * mb], mb)[...] = _runs(mt[:, s:s + k * mb], mb).T


def row_form(vec: np.ndarray, W: int) -> np.ndarray:
    """``vec`` (f32) in row form: ``(W, max_blk)``, block ``c`` on row ``c``, zero padded."""
    total = vec.shape[0]
    out = np.zeros((W, block_len(total, W, 0)), dtype=np.float32)
    for c0, k, n, s in _block_groups(total, W):
        out[c0:c0 + k, :n] = vec[s:s + k * n].reshape(k, n)
    return out


@dataclass
class PackedModel:
    """A model's tiles for one grid (see the module docstring for the tile format).

    Attributes (``L`` layers, ``E_kind`` = :func:`max_elems`, ``Dm`` = the longest hidden block):
        grid: the geometry the tiles are cut for.
        qkv, o: ``(L, n_kv, W, E)`` ``uint16`` (f16 bits).
        gate_up, down: ``(L, H, W, E)`` ``uint16``.
        head: ``(H_head, W, E)`` ``uint16``, the LM head (the tied embedding).
        attn_norm, ffn_norm: ``(L, W, Dm)`` f32 row form; output_norm: ``(W, Dm)``.
        embedding: ``(vocab, d)`` ``uint16``: f16 rows the host sends (as f32) per step.
        model_sha256: content hash of the model file ("" when packed from memory).
        source: ``"memory"``, ``"built"`` (packed now and cached) or ``"cache"`` (mmap'd).
    """

    grid: LayerGrid
    qkv: np.ndarray
    o: np.ndarray
    gate_up: np.ndarray
    down: np.ndarray
    head: np.ndarray
    attn_norm: np.ndarray
    ffn_norm: np.ndarray
    output_norm: np.ndarray
    embedding: np.ndarray
    model_sha256: str = ""
    source: str = "memory"

    ARRAYS = ("qkv", "o", "gate_up", "down", "head", "attn_norm", "ffn_norm", "output_norm",
              "embedding")

    def arrays(self) -> dict[str, np.ndarray]:
        """Every packed array by name (the cache's files)."""
        return {name: getattr(self, name) for name in self.ARRAYS}

    def nbytes(self) -> int:
        """Bytes of packed output (all arrays)."""
        return sum(a.nbytes for a in self.arrays().values())

    def tile(self, kind: str, layer: int, c: int, r: int) -> np.ndarray:
        """PE ``(c, r)``'s tile of ``kind`` (``layer`` ignored for ``head``): its ``m * n``
        words, f16 bits, column-major (``tile[j * m + i]``), no padding."""
        m, n = _tile_shape(self.grid, kind, c, r)
        arr = self.head if kind == "head" else getattr(self, kind)[layer]
        return arr[r, c, :m * n]


def pack(weights: ModelWeights | WaferWeights, grid: LayerGrid, *,
         threads: int | None = None) -> PackedModel:
    """Cut a model into the tiles of ``grid`` (one pass; see the module docstring).

    ``weights``: the loader's float32 weights (rounded here with :func:`wafer_weights`) or
    already-rounded :class:`WaferWeights`. ``threads``: worker threads for the copies (NumPy
    releases the GIL while copying; default: up to 2, one per core). The result's
    ``embedding`` shares memory with ``weights.token_embd`` when that is already f16.

    Raises:
        ValueError: the weights' shapes do not match ``grid.config``.
    """
    ww = weights if isinstance(weights, WaferWeights) else wafer_weights(weights)
    cfg = grid.config
    _check_shapes(ww, cfg)
    W, H, L = grid.W, grid.H, cfg.n_layers
    n_kv = cfg.n_kv_heads
    e = {k: max_elems(grid, k) for k in TILE_KINDS}
    f16 = np.float16
    qkv = np.zeros((L, n_kv, W, e["qkv"]), dtype=f16)
    o = np.zeros((L, n_kv, W, e["o"]), dtype=f16)
    gate_up = np.zeros((L, H, W, e["gate_up"]), dtype=f16)
    down = np.zeros((L, H, W, e["down"]), dtype=f16)
    head = np.zeros((grid.H_head, W, e["head"]), dtype=f16)

    def layer(li: int) -> None:
        lw = ww.layers[li]
        wqT, wkT, wvT = lw.wq.T, lw.wk.T, lw.wv.T          # (d, q), (d, kv): C-contiguous
        woT, gT, uT, dT = lw.wo.T, lw.w_gate.T, lw.w_up.T, lw.w_down.T
        for g in range(n_kv):
            (_, qs), (_, ks), (_, vs) = grid.qkv_rows(g)
            _by_input(qkv[li, g], [wqT[:, qs], wkT[:, ks], wvT[:, vs]], W)
            _by_output(o[li, g], woT[grid.o_cols(g)], W)
        for r in range(H):
            fb = grid.ffn_block(r)
            _by_input(gate_up[li, r], [gT[:, fb], uT[:, fb]], W)
            _by_output(down[li, r], dT[fb], W)

    def head_rows(rows: range) -> None:
        # The head splits its input columns: tile rows are vocab rows, so it needs the
        # (d, vocab) transpose of the C-ordered embedding, done per row block.
        vs = slice(grid.vocab_block(rows.start).start, grid.vocab_block(rows.stop - 1).stop)
        outT = _transpose(ww.output[vs])
        for r in rows:
            vb = grid.vocab_block(r)
            _by_input(head[r], [outT[:, vb.start - vs.start:vb.stop - vs.start]], W)

    n_threads = min(2, os.cpu_count() or 1) if threads is None else max(1, threads)
    hh = grid.H_head
    jobs: list[tuple[Any, Any]] = [(layer, li) for li in range(L)]
    jobs += [(head_rows, range(r, min(r + 8, hh))) for r in range(0, hh, 8)]
    if n_threads == 1:
        for fn, arg in jobs:
            fn(arg)
    else:
        with ThreadPoolExecutor(n_threads) as pool:
            for _ in pool.map(lambda job: job[0](job[1]), jobs):
                pass
    return PackedModel(
        grid=grid, qkv=qkv.view(np.uint16), o=o.view(np.uint16),
        gate_up=gate_up.view(np.uint16), down=down.view(np.uint16), head=head.view(np.uint16),
        attn_norm=np.stack([row_form(lw.attn_norm, W) for lw in ww.layers]),
        ffn_norm=np.stack([row_form(lw.ffn_norm, W) for lw in ww.layers]),
        output_norm=row_form(ww.output_norm, W),
        embedding=np.ascontiguousarray(ww.token_embd).view(np.uint16))


def _transpose(a: np.ndarray, block: int = 256) -> np.ndarray:
    """``a.T`` as a C-contiguous copy, blocked (NumPy's own transpose copy is 2x slower)."""
    out = np.empty(a.shape[::-1], dtype=a.dtype)
    for i in range(0, a.shape[0], block):
        out[:, i:i + block] = a[i:i + block].T
    return out


def _check_shapes(ww: WaferWeights, cfg: ModelConfig) -> None:
    d, f, q, kv = cfg.hidden_size, cfg.ffn_size, cfg.q_dim, cfg.kv_dim
    want = {"wq": (q, d), "wk": (kv, d), "wv": (kv, d), "wo": (d, q), "w_gate": (f, d),
            "w_up": (f, d), "w_down": (d, f), "attn_norm": (d,), "ffn_norm": (d,)}
    if len(ww.layers) != cfg.n_layers:
        raise ValueError(f"{len(ww.layers)} layers of weights for a {cfg.n_layers}-layer config")
    for i, layer in enumerate(ww.layers):
        for name, shape in want.items():
            got = getattr(layer, name).shape
            if got != shape:
                raise ValueError(f"layer {i} {name}: shape {got}, config wants {shape}")
    for name, shape in (("token_embd", (cfg.vocab_size, d)), ("output", (cfg.vocab_size, d)),
                        ("output_norm", (d,))):
        if getattr(ww, name).shape != shape:
            raise ValueError(f"{name}: shape {getattr(ww, name).shape}, config wants {shape}")


# --------------------------------------------------------------------------------------------
# The disk cache
# --------------------------------------------------------------------------------------------

def cache_root() -> Path:
    """``$WAFERSCALE_PACK_CACHE`` or ``~/.cache/waferscale/packed``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "waferscale" / "packed"


_HASHES = "model-hashes.json"


def model_hash(path: Path, root: Path | None = None) -> str:
    """SHA-256 of a model file's content, remembered in ``<cache>/model-hashes.json`` by
    resolved path, size and ``mtime_ns`` so that an unchanged file is hashed once."""
    root = cache_root() if root is None else root
    p = path.resolve()
    st = p.stat()
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    table_path = root / _HASHES
    table: dict[str, Any] = {}
    try:
        table = json.loads(table_path.read_text())
        hit = table.get(str(p))
        if isinstance(hit, dict) and all(hit.get(k) == v for k, v in stamp.items()) \
                and isinstance(hit.get("sha256"), str):
            return str(hit["sha256"])
    except (OSError, ValueError, AttributeError):
        table = {}
    t0 = time.perf_counter()
    digest = hashlib.sha256()
    with p.open("rb") as fh:
        while chunk := fh.read(1 << 24):
            digest.update(chunk)
    sha = digest.hexdigest()
    log.info("hashed %s (%d bytes) in %.2f s", p, st.st_size, time.perf_counter() - t0)
    if not isinstance(table, dict):
        table = {}
    table[str(p)] = {**stamp, "sha256": sha}
    try:
        root.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(table_path, json.dumps(table, indent=1, sort_keys=True))
    except OSError as err:  # a cache, not a requirement
        log.warning("cannot record the model hash in %s: %s", table_path, err)
    return sha


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def entry_name(sha256: str, grid: LayerGrid) -> str:
    """The cache directory name of a (model, grid, format) triple."""
    return f"{sha256[:24]}-W{grid.W}-H{grid.H}-Hh{grid.H_head}-v{PACK_FORMAT_VERSION}"


def _crc(a: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(a).reshape(-1).view(np.uint8).data)


def save_packed(packed: PackedModel, directory: Path) -> None:
    """Write ``packed``'s arrays and manifest into ``directory`` atomically (temp + rename).

    If ``directory`` already exists (another process won the race) it is left as is.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(directory)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=directory.name + ".tmp-"))
    try:
        files: dict[str, Any] = {}
        for name, arr in packed.arrays().items():
            np.save(tmp / f"{name}.npy", arr, allow_pickle=False)
            files[name] = {"shape": list(arr.shape), "dtype": arr.dtype.str, "crc32": _crc(arr)}
        g = packed.grid
        manifest = {"version": PACK_FORMAT_VERSION, "model_sha256": packed.model_sha256,
                    "W": g.W, "H": g.H, "H_head": g.H_head, "files": files}
        # The manifest is written last: an entry without one is incomplete by construction.
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        try:
            os.rename(tmp, directory)
        except OSError:
            if not (directory / "manifest.json").is_file():
                raise
            log.info("cache entry %s appeared meanwhile; keeping it", directory.name)
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


#: A temporary entry directory older than this (seconds) belongs to a process that died.
STALE_TEMPORARY_SECONDS = 3600.0


def _remove_stale_temporaries(directory: Path) -> None:
    """Delete ``<entry>.tmp-*`` / ``<entry>.bad-*`` directories left by killed processes."""
    now = time.time()
    for prefix in (".tmp-", ".bad-"):
        for leftover in directory.parent.glob(directory.name + prefix + "*"):
            try:
                if now - leftover.stat().st_mtime > STALE_TEMPORARY_SECONDS:
                    shutil.rmtree(leftover, ignore_errors=True)
            except OSError:
                pass


class CacheEntryError(Exception):
    """A cache entry is incomplete or damaged (the message says how)."""


def read_packed(directory: Path, grid: LayerGrid, *, verify: bool = True) -> PackedModel:
    """Open a cache entry (mmap). With ``verify`` (the default) every file's CRC-32 is checked
    against the manifest, which reads every byte once (warm page cache: ~2 GB/s).

    Raises:
        CacheEntryError: missing manifest or file, or a shape, dtype, grid or CRC mismatch.
    """
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
    except (OSError, ValueError) as err:
        raise CacheEntryError(f"no readable manifest: {err}") from err
    try:
        if manifest["version"] != PACK_FORMAT_VERSION or \
                (manifest["W"], manifest["H"], manifest["H_head"]) != (grid.W, grid.H,
                                                                        grid.H_head):
            raise CacheEntryError("manifest does not match the grid or the format version")
        arrays: dict[str, np.ndarray] = {}
        for name in PackedModel.ARRAYS:
            meta = manifest["files"][name]
            try:
                arr = np.load(directory / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as err:
                raise CacheEntryError(f"{name}.npy unreadable: {err}") from err
            if list(arr.shape) != meta["shape"] or arr.dtype.str != meta["dtype"]:
                raise CacheEntryError(f"{name}.npy is {arr.shape} {arr.dtype.str}, manifest "
                                      f"says {meta['shape']} {meta['dtype']}")
            if verify and _crc(arr) != meta["crc32"]:
                raise CacheEntryError(f"{name}.npy fails its CRC-32")
            arrays[name] = arr
    except (KeyError, TypeError) as err:
        raise CacheEntryError(f"malformed manifest: {err!r}") from err
    packed = PackedModel(grid=grid, model_sha256=str(manifest["model_sha256"]), source="cache",
                         **arrays)
    _check_packed_shapes(packed)
    return packed


def _check_packed_shapes(p: PackedModel) -> None:
    g, cfg = p.grid, p.grid.config
    L, W = cfg.n_layers, g.W
    dm = block_len(cfg.hidden_size, W, 0)
    want = {"qkv": (L, cfg.n_kv_heads, W, max_elems(g, "qkv")),
            "o": (L, cfg.n_kv_heads, W, max_elems(g, "o")),
            "gate_up": (L, g.H, W, max_elems(g, "gate_up")),
            "down": (L, g.H, W, max_elems(g, "down")),
            "head": (g.H_head, W, max_elems(g, "head")),
            "attn_norm": (L, W, dm), "ffn_norm": (L, W, dm), "output_norm": (W, dm),
            "embedding": (cfg.vocab_size, cfg.hidden_size)}
    for name, shape in want.items():
        if getattr(p, name).shape != shape:
            raise CacheEntryError(f"{name} has shape {getattr(p, name).shape}, the grid "
                                  f"wants {shape}")


@dataclass
class LoadTimes:
    """Where :func:`load_packed`'s time went (seconds; zero for steps not taken)."""

    hash: float = 0.0
    read_cache: float = 0.0
    dequantize: float = 0.0
    round: float = 0.0
    pack: float = 0.0
    write: float = 0.0
    notes: list[str] = field(default_factory=list)


def load_packed(model_path: str | Path | None, grid: LayerGrid, *, cache: bool = True,
                verify: bool = True, times: LoadTimes | None = None) -> PackedModel:
    """The packed model for ``grid``, from the disk cache when possible.

    Args:
        model_path: a GGUF file (``None``: the default SmolLM2 model).
        grid: the geometry; ``grid.config`` must be the file's configuration.
        cache: use and fill the cache under :func:`cache_root` (``False``: always pack in
            memory, touch no file).
        verify: check cached files' CRC-32 (see :func:`read_packed`).
        times: filled with the time of each step taken.

    A damaged or incomplete cache entry is logged, removed and rebuilt.

    Raises:
        ModelError: the model file is unusable, or its configuration differs from
            ``grid.config``.
    """
    from waferscale.model.config import config_from_metadata
    from waferscale.model.gguf_loader import (load_weights, open_gguf, read_metadata,
                                              resolve_model_path)

    t = times if times is not None else LoadTimes()
    path = resolve_model_path(model_path)
    root = cache_root()
    sha = ""
    entry: Path | None = None
    if cache:
        t0 = time.perf_counter()
        sha = model_hash(path, root)
        t.hash = time.perf_counter() - t0
        entry = root / entry_name(sha, grid)
        if entry.exists():
            t0 = time.perf_counter()
            try:
                packed = read_packed(entry, grid, verify=verify)
                t.read_cache = time.perf_counter() - t0
                if packed.model_sha256 != sha:
                    raise CacheEntryError("manifest names another model")
                t.notes.append("cache hit")
                return packed
            except CacheEntryError as err:
                log.warning("packed-model cache entry %s is damaged (%s); rebuilding it",
                            entry, err)
                t.notes.append(f"rebuilt damaged entry: {err}")
                _remove_entry(entry)
    t0 = time.perf_counter()
    reader = open_gguf(path)
    config = config_from_metadata(read_metadata(reader),
                                  tensor_names={x.name for x in reader.tensors})
    if config != grid.config:
        raise ModelError(f"{path}: its configuration differs from the grid's ({config} vs "
                         f"{grid.config})")
    weights = load_weights(reader, config, progress=False, path=path)
    t.dequantize = time.perf_counter() - t0
    t0 = time.perf_counter()
    ww = wafer_weights(weights)
    del weights
    t.round = time.perf_counter() - t0
    t0 = time.perf_counter()
    packed = pack(ww, grid)
    t.pack = time.perf_counter() - t0
    packed.model_sha256 = sha
    if entry is not None:
        t0 = time.perf_counter()
        try:
            save_packed(packed, entry)
            packed.source = "built"
        except OSError as err:
            log.warning("cannot write the packed-model cache %s: %s", entry, err)
        t.write = time.perf_counter() - t0
    return packed


def _remove_entry(entry: Path) -> None:
    """Move a damaged entry aside (atomic) and delete it."""
    trash = entry.with_name(f"{entry.name}.bad-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.rename(entry, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)
