"""The NumPy reference decoder: building blocks against direct formulas, KV-cache consistency,
RoPE layouts and greedy generation, on random arrays and a tiny synthetic model."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from model_helpers import TINY, write_tiny_gguf

from waferscale.model.errors import ModelError
from waferscale.model.gguf_loader import LoadedModel, load_model
from waferscale.model.reference import (
    GenerationStats,
    KVCache,
    ReferenceModel,
    apply_rope,
    attention,
    greedy_tokens,
    mlp,
    rmsnorm,
    rope_tables,
)

RNG = np.random.default_rng(1234)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    path = tmp_path_factory.mktemp("tiny") / "tiny.gguf"
    write_tiny_gguf(path)
    return load_model(path, progress=False)


# --- building blocks ---------------------------------------------------------------------------

def test_rmsnorm_matches_formula() -> None:
    x, w = randn(5, 48), randn(48)
    expect = x.astype(np.float64) / np.sqrt(np.mean(x.astype(np.float64) ** 2, -1,
                                                    keepdims=True) + 1e-6) * w
    got = rmsnorm(x, w, 1e-6)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rmsnorm(7.5 * x, w, 0.0), rmsnorm(x, w, 0.0), rtol=1e-5)


def test_rope_adjacent_pairs_rotation() -> None:
    head_dim, base = 8, 10000.0
    x = randn(3, 2, head_dim)
    positions = [0, 1, 17]
    cos, sin = rope_tables(positions, head_dim, base)
    got = apply_rope(x, cos, sin)
    for t, pos in enumerate(positions):
        for i in range(head_dim // 2):
            angle = pos * base ** (-2 * i / head_dim)
            a, b = x[t, :, 2 * i], x[t, :, 2 * i + 1]
            np.testing.assert_allclose(got[t, :, 2 * i], a * math.cos(angle) - b * math.sin(angle),
                                       rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got[t, :, 2 * i + 1],
                                       a * math.sin(angle) + b * math.cos(angle),
                                       rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[0], x[0])  # position 0 is the identity


@settings(max_examples=25, deadline=None)
@given(m=st.integers(0, 500), n=st.integers(0, 500), shift=st.integers(0, 3000),
       layout=st.sampled_from(["adjacent", "halves"]))
def test_rope_scores_depend_only_on_relative_position(m: int, n: int, shift: int,
                                                      layout: str) -> None:
    rng = np.random.default_rng(m * 7919 + n)
    q = rng.standard_normal((1, 1, 16)).astype(np.float32)
    k = rng.standard_normal((1, 1, 16)).astype(np.float32)

    def score(pq: int, pk: int) -> float:
        cq, sq = rope_tables([pq], 16, 10000.0)
        ck, sk = rope_tables([pk], 16, 10000.0)
        return float(np.sum(apply_rope(q, cq, sq, layout) * apply_rope(k, ck, sk, layout)))

    assert score(m + shift, n + shift) == pytest.approx(score(m, n), rel=1e-3, abs=1e-3)
    cos, sin = rope_tables([m], 16, 10000.0)
    assert np.linalg.norm(apply_rope(q, cos, sin, layout)) == pytest.approx(
        np.linalg.norm(q), rel=1e-5)


def _halves_from_adjacent(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Reorder (in, n_heads*head_dim) columns from adjacent-pair to split-halves order."""
    d_in, width = w.shape
    head_dim = width // n_heads
    return w.reshape(d_in, n_heads, head_dim // 2, 2).transpose(0, 1, 3, 2).reshape(d_in, width)


def test_rope_layouts_agree_up_to_a_permutation() -> None:
    x = randn(4, 3, 8)
    cos, sin = rope_tables(range(4), 8, 500.0)
    permuted = x.reshape(4, 3, 4, 2).transpose(0, 1, 3, 2).reshape(4, 3, 8)
    expect = apply_rope(x, cos, sin, "adjacent").reshape(4, 3, 4, 2).transpose(0, 1, 3, 2)
    np.testing.assert_allclose(apply_rope(permuted, cos, sin, "halves"),
                               expect.reshape(4, 3, 8), rtol=1e-6, atol=1e-6)


def naive_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, start: int) -> np.ndarray:
    """Loop-per-head float64 attention: the definition, spelled out."""
    t_len, n_heads, head_dim = q.shape
    n_kv = k.shape[0]
    out = np.zeros((t_len, n_heads, head_dim))
    for t in range(t_len):
        for h in range(n_heads):
            kv = h // (n_heads // n_kv)
            keys = k[kv, : start + t + 1].astype(np.float64)
            s = keys @ q[t, h].astype(np.float64) / math.sqrt(head_dim)
            p = np.exp(s - s.max())
            p /= p.sum()
            out[t, h] = p @ v[kv, : start + t + 1]
    return out.reshape(t_len, n_heads * head_dim)


@settings(max_examples=30, deadline=None)
@given(n_kv=st.sampled_from([1, 2, 3]), group=st.sampled_from([1, 2, 3]),
       t_len=st.integers(1, 5), start=st.integers(0, 6), extra=st.integers(0, 3),
       seed=st.integers(0, 2**31 - 1))
def test_attention_matches_per_head_loop(n_kv: int, group: int, t_len: int, start: int,
                                         extra: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    head_dim = 8
    s_len = start + t_len + extra  # cached slots past the queries must be ignored
    q = rng.standard_normal((t_len, n_kv * group, head_dim)).astype(np.float32)
    k = rng.standard_normal((n_kv, s_len, head_dim)).astype(np.float32)
    v = rng.standard_normal((n_kv, s_len, head_dim)).astype(np.float32)
    got = attention(q, k, v, start)
    assert got.dtype == np.float32 and got.shape == (t_len, n_kv * group * head_dim)
    np.testing.assert_allclose(got, naive_attention(q, k, v, start), rtol=1e-4, atol=1e-5)


def test_mlp_is_swiglu() -> None:
    x, wg, wu, wd = randn(3, 16), randn(16, 40), randn(16, 40), randn(40, 16)
    g = (x @ wg).astype(np.float64)
    expect = ((g / (1 + np.exp(-g))) * (x @ wu)) @ wd
    np.testing.assert_allclose(mlp(x, wg, wu, wd), expect, rtol=1e-4, atol=1e-4)
    big = np.full((1, 16), -1e4, dtype=np.float32)  # silu must not overflow to nan
    assert np.all(np.isfinite(mlp(big, wg, wu, wd)))


# --- the model on a tiny file ------------------------------------------------------------------

def test_incremental_decode_matches_full_prefill(tiny: LoadedModel) -> None:
    model = ReferenceModel.from_loaded(tiny)
    ids = [5, 80, 200, 3, 17, 99, 260, 42, 8]
    full = model.forward(ids, model.new_cache(16), all_logits=True)
    cache = model.new_cache(16)
    steps = np.stack([model.forward([i], cache) for i in ids])
    np.testing.assert_allclose(steps, full, rtol=1e-5, atol=1e-5)
    chunked_cache = model.new_cache(16)
    first = model.forward(ids[:4], chunked_cache, all_logits=True)
    second = model.forward(ids[4:], chunked_cache, all_logits=True)
    np.testing.assert_allclose(np.concatenate([first, second]), full, rtol=1e-5, atol=1e-5)
    assert chunked_cache.length == len(ids)


def test_logits_depend_on_order_and_history(tiny: LoadedModel) -> None:
    model = ReferenceModel.from_loaded(tiny)
    a = model.forward([10, 20, 30], model.new_cache(4))
    b = model.forward([20, 10, 30], model.new_cache(4))
    assert np.max(np.abs(a - b)) > 1e-3  # positions matter (RoPE reaches the scores)


def test_halves_layout_on_unpermuted_weights_is_the_same_model(tiny: LoadedModel) -> None:
    cfg = tiny.config
    layers = [dataclasses.replace(layer, wq=_halves_from_adjacent(layer.wq, cfg.n_heads),
                                  wk=_halves_from_adjacent(layer.wk, cfg.n_kv_heads))
              for layer in tiny.weights.layers]
    hf_order = dataclasses.replace(tiny.weights, layers=layers)
    ids = [7, 100, 150, 33, 250, 4]
    gguf_model = ReferenceModel(cfg, tiny.weights, rope_layout="adjacent")
    hf_model = ReferenceModel(cfg, hf_order, rope_layout="halves")
    wrong = ReferenceModel(cfg, tiny.weights, rope_layout="halves")
    expect = gguf_model.forward(ids, gguf_model.new_cache(8), all_logits=True)
    np.testing.assert_allclose(hf_model.forward(ids, hf_model.new_cache(8), all_logits=True),
                               expect, rtol=1e-5, atol=1e-5)
    assert np.max(np.abs(wrong.forward(ids, wrong.new_cache(8), all_logits=True) - expect)) > 1e-3


def test_generate_is_greedy_and_stops(tiny: LoadedModel) -> None:
    model = ReferenceModel.from_loaded(tiny)
    prompt = [1, 70, 71, 72]
    stats = GenerationStats()
    tokens = list(model.generate(prompt, 6, stats=stats))
    assert len(tokens) == 6 and stats.generated_tokens == 6 and stats.decode_steps == 5
    assert stats.stopped_by is None and stats.prompt_tokens == 4
    # Each token is the argmax of the logits after the prompt and the tokens before it.
    for n, tok in enumerate(tokens):
        logits = model.forward(prompt + tokens[:n], model.new_cache(16))
        assert tok == int(np.argmax(logits))
    stop_stats = GenerationStats()
    stopped = list(model.generate(prompt, 6, stop_ids={tokens[2]}, stats=stop_stats))
    assert stopped == tokens[: tokens.index(tokens[2]) + 1]
    assert stop_stats.stopped_by == tokens[2]
    assert greedy_tokens(model, prompt, 6) == tokens


def test_generate_errors(tiny: LoadedModel) -> None:
    model = ReferenceModel.from_loaded(tiny)
    with pytest.raises(ModelError, match="no tokens"):
        list(model.generate([], 3))
    with pytest.raises(ModelError, match="exceeds the context length"):
        list(model.generate([1] * 10, TINY["context"]))
    with pytest.raises(ModelError, match="outside the vocabulary"):
        model.forward([1, 10**6], model.new_cache(4))
    cache = model.new_cache(3)
    with pytest.raises(ModelError, match="does not fit the KV cache"):
        model.forward([1, 2, 3, 4], cache)
    with pytest.raises(ModelError, match="context length"):
        model.new_cache(TINY["context"] + 1)
    with pytest.raises(ModelError, match="positive"):
        KVCache.allocate(tiny.config, 0)
    oversized = KVCache.allocate(tiny.config, TINY["context"] + 8)
    with pytest.raises(ModelError, match="exceeds the context length"):
        model.forward([1] * (TINY["context"] + 1), oversized)


def test_generate_with_reused_cache(tiny: LoadedModel) -> None:
    model = ReferenceModel.from_loaded(tiny)
    cache = model.new_cache(20)
    first = list(model.generate([3, 4, 5], 5, cache=cache))
    cache.reset()
    assert list(model.generate([3, 4, 5], 5, cache=cache)) == first
