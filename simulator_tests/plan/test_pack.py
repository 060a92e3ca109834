"""Host-side packing (waferscale.plan.pack): the dtype plan, the tiles, the disk cache.

The tiles are checked by inverting them with geometry alone (``LayerGrid``'s tile shapes,
``qkv_rows``, ``o_cols`` and blocks), never with the packer's own helpers: unpacking every
PE's tile must give back each f16 matrix exactly, with every element placed exactly once and
zero padding after ``m * n``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waferscale.model.config import ModelConfig
from waferscale.model.errors import ModelError
from waferscale.model.gguf_loader import LayerWeights, ModelWeights, random_weights
from waferscale.plan import pack as P
from waferscale.plan.geometry import LayerGrid

# ---------------------------------------------------------------------------------------------
# Random models and grids
# ---------------------------------------------------------------------------------------------


def make_config(n_layers: int, n_kv: int, group: int, head_dim: int, ffn: int,
                vocab: int) -> ModelConfig:
    n_heads = n_kv * group
    return ModelConfig(architecture="llama", n_layers=n_layers, hidden_size=n_heads * head_dim,
                       n_heads=n_heads, n_kv_heads=n_kv, head_dim=head_dim, ffn_size=ffn,
                       rope_base=10000.0, rms_eps=1e-5, vocab_size=vocab, context_length=256,
                       tied_embeddings=True)


@st.composite
def configs_and_grids(draw: st.DrawFn) -> LayerGrid:
    n_kv = draw(st.integers(1, 3))
    cfg = make_config(n_layers=draw(st.integers(1, 2)), n_kv=n_kv, group=draw(st.integers(1, 3)),
                      head_dim=draw(st.sampled_from([2, 4, 6])), ffn=draw(st.integers(n_kv, 20)),
                      vocab=draw(st.integers(1, 40)))
    return LayerGrid(cfg, W=draw(st.integers(1, cfg.hidden_size)),
                     H=draw(st.integers(n_kv, cfg.ffn_size)),
                     H_head=draw(st.integers(1, cfg.vocab_size)), slots=1)


# ---------------------------------------------------------------------------------------------
# Unpacking with geometry only
# ---------------------------------------------------------------------------------------------


class Unpacked:
    """Matrices (out x in, f16 bits) rebuilt from the tiles, with a count per element."""

    def __init__(self, shapes: dict[str, tuple[int, int]]) -> None:
        self.mats = {k: np.zeros(s, dtype=np.uint16) for k, s in shapes.items()}
        self.count = {k: np.zeros(s, dtype=np.int64) for k, s in shapes.items()}

    def put(self, name: str, rows: slice, cols: slice, block: np.ndarray) -> None:
        self.mats[name][rows, cols] = block
        self.count[name][rows, cols] += 1


def tile_block(words: np.ndarray, m: int, n: int) -> np.ndarray:
    """A tile's ``(m, n)`` block from its column-major words (``tile[j * m + i]``)."""
    return words[:m * n].reshape(n, m).T


def unpack_layer(packed: P.PackedModel, li: int) -> Unpacked:
    g_ = packed.grid
    cfg = g_.config
    d, f, q, kv = cfg.hidden_size, cfg.ffn_size, cfg.q_dim, cfg.kv_dim
    u = Unpacked({"wq": (q, d), "wk": (kv, d), "wv": (kv, d), "wo": (d, q), "w_gate": (f, d),
                  "w_up": (f, d), "w_down": (d, f)})
    for c in range(g_.W):
        cb = g_.col_block(c)
        for g in range(cfg.n_kv_heads):
            m, n = g_.qkv_tile(c, g)
            words = packed.qkv[li, g, c]
            assert not words[m * n:].any(), "qkv padding must be zero"
            block = tile_block(words, m, n)
            i = 0
            for name, rows in g_.qkv_rows(g):
                k = rows.stop - rows.start
                u.put("w" + name, rows, cb, block[i:i + k])
                i += k
            assert i == m
            m, n = g_.o_tile(c, g)
            words = packed.o[li, g, c]
            assert not words[m * n:].any(), "o padding must be zero"
            u.put("wo", cb, g_.o_cols(g), tile_block(words, m, n))
        for r in range(g_.H):
            fb = g_.ffn_block(r)
            m, n = g_.gate_up_tile(c, r)
            words = packed.gate_up[li, r, c]
            assert not words[m * n:].any(), "gate_up padding must be zero"
            block = tile_block(words, m, n)
            u.put("w_gate", fb, cb, block[:m // 2])
            u.put("w_up", fb, cb, block[m // 2:])
            m, n = g_.down_tile(c, r)
            words = packed.down[li, r, c]
            assert not words[m * n:].any(), "down padding must be zero"
            u.put("w_down", cb, fb, tile_block(words, m, n))
    return u


def unpack_head(packed: P.PackedModel) -> Unpacked:
    g_ = packed.grid
    cfg = g_.config
    u = Unpacked({"output": (cfg.vocab_size, cfg.hidden_size)})
    for c in range(g_.W):
        for r in range(g_.H_head):
            m, n = g_.head_tile(c, r)
            words = packed.head[r, c]
            assert not words[m * n:].any(), "head padding must be zero"
            u.put("output", g_.vocab_block(r), g_.col_block(c), tile_block(words, m, n))
    return u


def f16_bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.astype(np.float16)).view(np.uint16)


def check_row_form(rows: np.ndarray, vec: np.ndarray, grid: LayerGrid) -> None:
    assert rows.dtype == np.float32
    for c in range(grid.W):
        blk = vec[grid.col_block(c)]
        assert np.array_equal(rows[c, :blk.size], blk)
        assert not rows[c, blk.size:].any()


def check_packed(packed: P.PackedModel, weights: ModelWeights, layers: list[int]) -> None:
    """Every checked matrix equals f16(the loader's f32, transposed to out x in) and every
    element is placed once."""
    grid = packed.grid
    for li in layers:
        u = unpack_layer(packed, li)
        lw = weights.layers[li]
        for name in u.mats:
            assert (u.count[name] == 1).all(), f"layer {li} {name}: not placed exactly once"
            assert np.array_equal(u.mats[name], f16_bits(getattr(lw, name).T)), (li, name)
        check_row_form(packed.attn_norm[li], lw.attn_norm, grid)
        check_row_form(packed.ffn_norm[li], lw.ffn_norm, grid)
    u = unpack_head(packed)
    assert (u.count["output"] == 1).all()
    assert np.array_equal(u.mats["output"], f16_bits(weights.output))
    assert np.array_equal(packed.embedding, f16_bits(weights.token_embd))
    check_row_form(packed.output_norm, weights.output_norm, grid)
    for kind in P.TILE_KINDS:
        arr = packed.head if kind == "head" else getattr(packed, kind)
        assert arr.dtype == np.uint16 and arr.shape[-1] == P.max_elems(grid, kind)
        assert arr.shape[-3:-1] == (P.kind_rows(grid, kind), grid.W)


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(grid=configs_and_grids(), seed=st.integers(0, 2**16))
def test_unpacking_every_tile_gives_back_the_f16_matrices(grid: LayerGrid, seed: int) -> None:
    weights = random_weights(grid.config, seed)
    packed = P.pack(weights, grid)
    check_packed(packed, weights, list(range(grid.config.n_layers)))


def test_wafer_weights_orientation_and_rounding() -> None:
    cfg = make_config(1, 2, 2, 4, 12, 10)
    w = random_weights(cfg, 1)
    ww = P.wafer_weights(w)
    lw = ww.layers[0]
    assert lw.wq.shape == (cfg.q_dim, cfg.hidden_size) and lw.wq.dtype == np.float16
    assert lw.w_down.shape == (cfg.hidden_size, cfg.ffn_size)
    # y = W x with the f16 matrix equals x @ W of the loader's layout (same products).
    x = np.random.default_rng(2).standard_normal(cfg.hidden_size).astype(np.float32)
    np.testing.assert_allclose(lw.wq.astype(np.float64) @ x,
                               x.astype(np.float64) @ w.layers[0].wq.astype(np.float16),
                               rtol=1e-12, atol=1e-12)
    assert ww.output is ww.token_embd, "the tied embedding is rounded once"
    assert lw.attn_norm.dtype == np.float32
    # Round to nearest even: 1 + 2**-11 is halfway between 1 and 1 + 2**-10 -> 1.
    w.layers[0].wq[0, 0] = 1 + 2.0 ** -11
    w.layers[0].wq[0, 1] = 1 + 3 * 2.0 ** -11
    lw = P.wafer_weights(w).layers[0]
    assert lw.wq[0, 0] == 1.0 and lw.wq[1, 0] == 1 + 2 * 2.0 ** -10


def test_weights_beyond_f16_are_rejected() -> None:
    cfg = make_config(1, 1, 1, 4, 4, 6)
    w = random_weights(cfg, 3)
    w.layers[0].w_up[1, 2] = 70000.0
    with pytest.raises(ModelError, match="blk.0.ffn_up"):
        P.wafer_weights(w)


def test_shape_mismatch_with_the_grid_is_an_error() -> None:
    cfg = make_config(1, 1, 2, 4, 8, 6)
    grid = LayerGrid(replace(cfg, ffn_size=10), W=2, H=2, H_head=2, slots=1)
    with pytest.raises(ValueError, match="w_gate"):
        P.pack(random_weights(cfg, 0), grid)


# ---- the cache ----


def _model_helpers() -> ModuleType:
    """``simulator_tests/model/model_helpers.py`` (tiny synthetic GGUF files)."""
    path = Path(__file__).resolve().parents[1] / "model" / "model_helpers.py"
    spec = importlib.util.spec_from_file_location("model_helpers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, LayerGrid]:
    """A tiny Q8_0 GGUF and a grid for it, with the cache in ``tmp_path/cache``."""
    import gguf

    from waferscale.model.gguf_loader import load_config

    monkeypatch.setenv(P.CACHE_ENV, str(tmp_path / "cache"))
    path = tmp_path / "tiny.gguf"
    _model_helpers().write_tiny_gguf(path, qtype=gguf.GGMLQuantizationType.Q8_0)
    cfg = load_config(path)
    return path, LayerGrid(cfg, W=5, H=3, H_head=7, slots=2)


def _equal(a: P.PackedModel, b: P.PackedModel) -> bool:
    return all(np.array_equal(a.arrays()[k], b.arrays()[k]) and
               a.arrays()[k].dtype == b.arrays()[k].dtype for k in P.PackedModel.ARRAYS)


def test_cache_round_trip_is_bit_exact(tiny_model: tuple[Path, LayerGrid]) -> None:
    from waferscale.model.gguf_loader import load_model

    path, grid = tiny_model
    first = P.load_packed(path, grid)
    assert first.source == "built"
    second = P.load_packed(path, grid)
    assert second.source == "cache"
    assert isinstance(second.qkv, np.memmap)
    assert _equal(first, second)
    memory = P.pack(load_model(path, progress=False).weights, grid)
    assert _equal(memory, second)
    assert P.load_packed(path, grid, cache=False).source == "memory"
    check_packed(second, load_model(path, progress=False).weights, [0, 1])


def test_the_model_hash_is_remembered(tiny_model: tuple[Path, LayerGrid]) -> None:
    path, grid = tiny_model
    P.load_packed(path, grid)
    table_path = P.cache_root() / "model-hashes.json"
    table = json.loads(table_path.read_text())
    (entry,) = table.values()
    # Poison the remembered hash: if the file were rehashed, the real one would be used.
    entry["sha256"] = "f" * 64
    table_path.write_text(json.dumps(table))
    P.load_packed(path, grid)
    assert (P.cache_root() / P.entry_name("f" * 64, grid)).is_dir()
    # A changed modification time makes it rehash (the real hash again).
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert P.model_hash(path) != "f" * 64


def _corrupt_flip(f: Path) -> None:
    data = bytearray(f.read_bytes())
    data[-3] ^= 0x40
    f.write_bytes(bytes(data))


def _corrupt_truncate(f: Path) -> None:
    data = f.read_bytes()
    f.write_bytes(data[: len(data) - 6])


def _corrupt_delete(f: Path) -> None:
    f.unlink()


@pytest.mark.parametrize("damage", [_corrupt_flip, _corrupt_truncate, _corrupt_delete],
                         ids=["flipped-bit", "truncated", "deleted"])
@pytest.mark.parametrize("victim", ["qkv.npy", "attn_norm.npy", "manifest.json"])
def test_a_damaged_cache_entry_is_rebuilt(tiny_model: tuple[Path, LayerGrid], damage,
                                          victim: str, caplog: pytest.LogCaptureFixture) -> None:
    path, grid = tiny_model
    good = P.load_packed(path, grid)
    (entry,) = [p for p in P.cache_root().iterdir() if p.is_dir()]
    damage(entry / victim)
    with caplog.at_level(logging.WARNING, logger="waferscale.plan.pack"):
        again = P.load_packed(path, grid)
    assert again.source == "built"
    assert "damaged" in caplog.text
    assert _equal(good, again)
    assert P.load_packed(path, grid).source == "cache"


def test_a_half_written_entry_is_never_visible(tiny_model: tuple[Path, LayerGrid],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path, grid = tiny_model
    calls = []

    def failing_save(arr_path, arr, allow_pickle=False):  # the third file fails to write
        calls.append(arr_path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_save(arr_path, arr, allow_pickle=allow_pickle)

    real_save = np.save
    monkeypatch.setattr(P.np, "save", failing_save)
    packed = P.load_packed(path, grid)      # the write fails: a warning, the packing is used
    assert packed.source == "memory"
    assert [p.name for p in P.cache_root().iterdir() if p.is_dir()] == []
    monkeypatch.setattr(P.np, "save", real_save)
    assert P.load_packed(path, grid).source == "built"


def test_stale_temporaries_are_removed(tiny_model: tuple[Path, LayerGrid]) -> None:
    path, grid = tiny_model
    sha = P.model_hash(path)
    root = P.cache_root()
    name = P.entry_name(sha, grid)
    old_tmp, new_tmp = root / f"{name}.tmp-dead", root / f"{name}.tmp-writing"
    for d in (old_tmp, new_tmp):
        d.mkdir(parents=True)
        (d / "qkv.npy").write_bytes(b"partial")
    hours_ago = os.stat(old_tmp).st_mtime - 2 * P.STALE_TEMPORARY_SECONDS
    os.utime(old_tmp, (hours_ago, hours_ago))
    assert P.load_packed(path, grid).source == "built"
    assert not old_tmp.exists() and new_tmp.exists()   # a live writer's directory is kept


def test_a_config_mismatch_is_an_error(tiny_model: tuple[Path, LayerGrid]) -> None:
    path, grid = tiny_model
    other = LayerGrid(replace(grid.config, rms_eps=1e-6), W=grid.W, H=grid.H, H_head=grid.H_head,
                      slots=1)
    with pytest.raises(ModelError, match="configuration differs"):
        P.load_packed(path, other, cache=False)


# ---- SmolLM2: one layer and the head, real shapes and data ----


def test_smollm2_one_layer_and_the_head() -> None:
    """The embedded SmolLM2's layer 17 and tied head (real shapes and data) on the realistic
    grid W=48, H=12, H_head=64, whose splits are all even, and on W=47, H=11, H_head=61, whose
    splits are all uneven."""
    from waferscale.model.config import config_from_metadata
    from waferscale.model.gguf_loader import (DEFAULT_MODEL_INSTALL, dequantize_tensor,
                                              open_gguf, read_metadata)

    try:
        from waferscale.model.gguf_loader import default_model_path
        path = default_model_path()
    except ModelError as err:
        pytest.skip(f"default model missing: run `{DEFAULT_MODEL_INSTALL}` ({err})")
    reader = open_gguf(path)  # parsing SmolLM2's metadata is most of this test's time
    tensors = {t.name: t for t in reader.tensors}
    full = config_from_metadata(read_metadata(reader), tensor_names=set(tensors))
    li = 17

    def get(name: str) -> np.ndarray:
        return dequantize_tensor(tensors[name], path)

    def mat(stem: str) -> np.ndarray:  # GGUF (out, in) -> the loader's (in, out)
        return np.ascontiguousarray(get(f"blk.{li}.{stem}.weight").T)

    layer = LayerWeights(attn_norm=get(f"blk.{li}.attn_norm.weight"), wq=mat("attn_q"),
                         wk=mat("attn_k"), wv=mat("attn_v"), wo=mat("attn_output"),
                         ffn_norm=get(f"blk.{li}.ffn_norm.weight"), w_gate=mat("ffn_gate"),
                         w_up=mat("ffn_up"), w_down=mat("ffn_down"))
    embd = get("token_embd.weight")
    weights = ModelWeights(token_embd=embd, output_norm=get("output_norm.weight"), output=embd,
                           layers=[layer])
    cfg = replace(full, n_layers=1)
    for W, H, H_head in ((48, 12, 64), (47, 11, 61)):
        packed = P.pack(weights, LayerGrid(cfg, W=W, H=H, H_head=H_head, slots=1))
        check_packed(packed, weights, [0])
        assert packed.qkv.shape == (1, 3, W, 5 * 64 * -(-576 // W))
