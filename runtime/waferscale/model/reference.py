"""NumPy reference decoder for Llama-family models: the oracle other backends must match.

Everything is float32. The per-layer pieces are small importable functions so they can double
as NumPy references for the CSL kernels:

* :func:`rmsnorm` — ``x / sqrt(mean(x**2) + eps) * weight``.
* :func:`rope_tables` / :func:`apply_rope` — rotary position embedding. GGUF ``llama`` files
  store Q/K weights permuted (llama.cpp's converter does it) so that each head's rotary pairs
  are *adjacent* elements ``(x[2i], x[2i+1])``, rotated by ``pos * base**(-2i/head_dim)``.
  Hugging Face checkpoints pair ``(x[i], x[i + head_dim/2])`` instead ("halves"); both layouts
  are implemented and the GGUF one is the default. (Checked three ways: the adjacent layout on
  GGUF weights equals the halves layout on un-permuted weights; it predicts text far better than
  the halves layout on GGUF weights; and it matches Hugging Face ``transformers`` loading the
  same file, see ``docs/reference-decoder.md``.)
* :func:`attention` — causal grouped-query attention of new queries against the KV cache.
* :func:`mlp` — SwiGLU: ``(silu(x @ w_gate) * (x @ w_up)) @ w_down``.
* :func:`transformer_block` — one pre-norm block built from the above.

:class:`ReferenceModel` stacks the blocks, owns the RoPE tables and exposes :meth:`forward`
(prefill or one decode step against a :class:`KVCache`) and :meth:`generate` (greedy decoding;
ties go to the lowest token id, as ``numpy.argmax`` does).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from waferscale.model.config import ModelConfig
from waferscale.model.errors import ModelError
from waferscale.model.gguf_loader import LayerWeights, LoadedModel, ModelWeights
from waferscale.model.threads import blas_limit

log = logging.getLogger(__name__)

RopeLayout = Literal["adjacent", "halves"]

_F32 = np.float32


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------

def rmsnorm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """Root-mean-square norm over the last axis, then an elementwise gain.

    ``x``: ``(..., d)`` float32; ``weight``: ``(d,)``. Returns
    ``x * (1 / sqrt(mean(x**2, -1) + eps)) * weight`` as float32 (the mean is accumulated in
    float32, like llama.cpp and ``transformers``).
    """
    ms = np.mean(np.square(x), axis=-1, keepdims=True, dtype=_F32)
    return (x * (1.0 / np.sqrt(ms + _F32(eps)))) * weight


def rope_frequencies(head_dim: int, base: float) -> np.ndarray:
    """Angular frequency of each rotary pair: ``base ** (-2i / head_dim)``, ``i < head_dim/2``.

    Computed in float64 (the tables built from it are rounded once, to float32).
    """
    return base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)


def rope_tables(positions: np.ndarray | Sequence[int], head_dim: int,
                base: float) -> tuple[np.ndarray, np.ndarray]:
    """``cos`` and ``sin`` of ``pos * freq_i``, each ``(len(positions), head_dim // 2)`` float32."""
    angles = np.outer(np.asarray(positions, dtype=np.float64), rope_frequencies(head_dim, base))
    return np.cos(angles).astype(_F32), np.sin(angles).astype(_F32)


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray,
               layout: RopeLayout = "adjacent") -> np.ndarray:
    """Rotate each head's pairs by the position's angles.

    Args:
        x: ``(T, n_heads, head_dim)`` queries or keys of ``T`` consecutive tokens.
        cos, sin: ``(T, head_dim // 2)`` from :func:`rope_tables` for those tokens' positions.
        layout: ``"adjacent"`` pairs ``(x[2i], x[2i+1])`` (GGUF llama order);
            ``"halves"`` pairs ``(x[i], x[i + head_dim/2])`` (Hugging Face order).

    Returns a new array; pair ``(a, b)`` becomes ``(a*cos - b*sin, a*sin + b*cos)``.
    """
    c = cos[:, None, :]
    s = sin[:, None, :]
    out = np.empty_like(x)
    if layout == "adjacent":
        a, b = x[..., 0::2], x[..., 1::2]
        out[..., 0::2] = a * c - b * s
        out[..., 1::2] = a * s + b * c
    elif layout == "halves":
        half = x.shape[-1] // 2
        a, b = x[..., :half], x[..., half:]
        out[..., :half] = a * c - b * s
        out[..., half:] = a * s + b * c
    else:
        raise ValueError(f"unknown RoPE layout {layout!r}")
    return out


def softmax(scores: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis (``-inf`` entries get probability 0)."""
    shifted = scores - np.max(scores, axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=-1, keepdims=True)


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, start: int) -> np.ndarray:
    """Causal grouped-query attention of ``T`` new queries over cached keys/values.

    Args:
        q: ``(T, n_heads, head_dim)`` rotated queries of the tokens at positions
            ``start .. start+T-1``.
        k, v: ``(n_kv_heads, S, head_dim)`` rotated keys and values of positions ``0 .. S-1``
            (the new tokens' own keys already included, so ``S >= start + T``).
        start: position of the first query.

    Query head ``h`` uses key/value head ``h // (n_heads // n_kv_heads)``; query ``t`` sees
    keys ``0 .. start+t``. Scores are scaled by ``1/sqrt(head_dim)``.

    Returns ``(T, n_heads * head_dim)``: the heads' outputs concatenated head by head.
    """
    t_len, n_heads, head_dim = q.shape
    n_kv, s_len, _ = k.shape
    group = n_heads // n_kv
    # (T, KV, G, D) -> (KV, G*T, D): one batched matmul per KV head, no loop over heads.
    qg = q.reshape(t_len, n_kv, group, head_dim).transpose(1, 2, 0, 3).reshape(
        n_kv, group * t_len, head_dim)
    scores = np.matmul(qg, k.transpose(0, 2, 1)) * _F32(1.0 / math.sqrt(head_dim))
    scores = scores.reshape(n_kv, group, t_len, s_len)
    if s_len > start + 1 or t_len > 1:
        key_pos = np.arange(s_len)
        query_pos = start + np.arange(t_len)
        blocked = key_pos[None, :] > query_pos[:, None]  # (T, S)
        if blocked.any():
            scores = np.where(blocked, _F32(-np.inf), scores)
    probs = softmax(scores).reshape(n_kv, group * t_len, s_len)
    out = np.matmul(probs, v)  # (KV, G*T, D)
    out = out.reshape(n_kv, group, t_len, head_dim).transpose(2, 0, 1, 3)
    return out.reshape(t_len, n_heads * head_dim)


def silu(x: np.ndarray) -> np.ndarray:
    """``x * sigmoid(x)`` (no overflow warning for very negative ``x``)."""
    with np.errstate(over="ignore"):
        return x / (_F32(1.0) + np.exp(-x))


def mlp(x: np.ndarray, w_gate: np.ndarray, w_up: np.ndarray, w_down: np.ndarray) -> np.ndarray:
    """SwiGLU feed-forward: ``(silu(x @ w_gate) * (x @ w_up)) @ w_down``.

    ``x``: ``(T, d)``; ``w_gate``/``w_up``: ``(d, f)``; ``w_down``: ``(f, d)``. Returns ``(T, d)``.
    """
    return (silu(x @ w_gate) * (x @ w_up)) @ w_down


@dataclass
class KVCache:
    """Preallocated keys and values of every layer.

    ``k`` and ``v`` are ``(n_layers, n_kv_heads, capacity, head_dim)`` float32; positions
    ``0 .. length-1`` are filled. A cache belongs to one sequence; :meth:`reset` reuses it.
    """

    k: np.ndarray
    v: np.ndarray
    length: int = 0

    @classmethod
    def allocate(cls, config: ModelConfig, capacity: int) -> KVCache:
        """An empty cache for ``capacity`` positions."""
        if capacity <= 0:
            raise ModelError(f"KV cache capacity must be positive, got {capacity}")
        shape = (config.n_layers, config.n_kv_heads, capacity, config.head_dim)
        return cls(k=np.zeros(shape, dtype=_F32), v=np.zeros(shape, dtype=_F32))

    @property
    def capacity(self) -> int:
        """Positions the cache can hold."""
        return int(self.k.shape[2])

    def reset(self) -> None:
        """Forget the sequence (the memory is kept)."""
        self.length = 0


def transformer_block(x: np.ndarray, layer: LayerWeights, config: ModelConfig,
                      k_cache: np.ndarray, v_cache: np.ndarray, start: int,
                      cos: np.ndarray, sin: np.ndarray,
                      rope_layout: RopeLayout = "adjacent") -> np.ndarray:
    """One pre-norm Llama block for ``T`` new tokens; writes their keys/values into the cache.

    Args:
        x: ``(T, d)`` residual stream of tokens at positions ``start .. start+T-1``.
        layer: the block's weights.
        config: model configuration.
        k_cache, v_cache: this layer's ``(n_kv_heads, capacity, head_dim)`` cache slices.
        start: position of the first new token.
        cos, sin: RoPE tables for the new tokens' positions.
        rope_layout: see :func:`apply_rope`.

    Returns the new residual stream ``(T, d)``.
    """
    t_len = x.shape[0]
    h = rmsnorm(x, layer.attn_norm, config.rms_eps)
    q = (h @ layer.wq).reshape(t_len, config.n_heads, config.head_dim)
    k = (h @ layer.wk).reshape(t_len, config.n_kv_heads, config.head_dim)
    v = (h @ layer.wv).reshape(t_len, config.n_kv_heads, config.head_dim)
    q = apply_rope(q, cos, sin, rope_layout)
    k = apply_rope(k, cos, sin, rope_layout)
    end = start + t_len
    k_cache[:, start:end] = k.transpose(1, 0, 2)
    v_cache[:, start:end] = v.transpose(1, 0, 2)
    a = attention(q, k_cache[:, :end], v_cache[:, :end], start)
    x = x + a @ layer.wo
    h = rmsnorm(x, layer.ffn_norm, config.rms_eps)
    return x + mlp(h, layer.w_gate, layer.w_up, layer.w_down)


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

@dataclass
class GenerationStats:
    """Timings of one :meth:`ReferenceModel.generate` call (filled in as it runs).

    ``prefill_seconds`` covers the prompt's forward pass (which also yields the first new
    token); ``decode_seconds`` covers the ``decode_steps`` one-token forward passes after it.
    """

    prompt_tokens: int = 0
    prefill_seconds: float = 0.0
    generated_tokens: int = 0
    decode_steps: int = 0
    decode_seconds: float = 0.0
    stopped_by: int | None = None

    @property
    def decode_tokens_per_second(self) -> float:
        """Decode throughput (0.0 before the first decode step)."""
        return self.decode_steps / self.decode_seconds if self.decode_seconds > 0 else 0.0


@dataclass
class ReferenceModel:
    """The float32 NumPy decoder of a Llama-family model.

    Build with :meth:`from_loaded` (or directly from a config and weights). ``rope_layout``
    must match how the Q/K weights are ordered: ``"adjacent"`` for GGUF files.
    """

    config: ModelConfig
    weights: ModelWeights
    rope_layout: RopeLayout = "adjacent"
    _cos: np.ndarray = field(init=False, repr=False)
    _sin: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._cos, self._sin = rope_tables(range(self.config.context_length),
                                           self.config.head_dim, self.config.rope_base)

    @classmethod
    def from_loaded(cls, loaded: LoadedModel, rope_layout: RopeLayout = "adjacent"
                    ) -> ReferenceModel:
        """From a :class:`~waferscale.model.gguf_loader.LoadedModel`."""
        return cls(config=loaded.config, weights=loaded.weights, rope_layout=rope_layout)

    def new_cache(self, capacity: int | None = None) -> KVCache:
        """An empty :class:`KVCache`; default capacity is the model's context length."""
        cap = self.config.context_length if capacity is None else capacity
        if cap > self.config.context_length:
            raise ModelError(f"KV cache of {cap} positions exceeds the model's context length "
                             f"{self.config.context_length}")
        return KVCache.allocate(self.config, cap)

    def embed(self, token_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """``(T, d)`` embeddings of ``token_ids`` (a copy)."""
        ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
        if ids.size == 0:
            raise ModelError("no tokens to process")
        if ids.min() < 0 or ids.max() >= self.config.vocab_size:
            bad = ids[(ids < 0) | (ids >= self.config.vocab_size)][0]
            raise ModelError(f"token id {bad} is outside the vocabulary "
                             f"(0..{self.config.vocab_size - 1})")
        return self.weights.token_embd[ids]

    def hidden_states(self, token_ids: Sequence[int] | np.ndarray, cache: KVCache) -> np.ndarray:
        """Run the blocks for new tokens appended to ``cache``; returns the ``(T, d)`` residuals.

        Raises:
            ModelError: the cache has no room for the tokens, or an id is out of range.
        """
        x = self.embed(token_ids)
        start = cache.length
        end = start + x.shape[0]
        if end > cache.capacity:
            raise ModelError(f"sequence of {end} tokens does not fit the KV cache "
                             f"({cache.capacity} positions)")
        if end > self.config.context_length:
            raise ModelError(f"sequence of {end} tokens exceeds the context length "
                             f"{self.config.context_length}")
        cos, sin = self._cos[start:end], self._sin[start:end]
        for i, layer in enumerate(self.weights.layers):
            x = transformer_block(x, layer, self.config, cache.k[i], cache.v[i], start, cos, sin,
                                  self.rope_layout)
        cache.length = end
        return x

    def logits(self, hidden: np.ndarray) -> np.ndarray:
        """Final norm and output head: ``(T, d)`` -> ``(T, vocab)``, ``(d,)`` -> ``(vocab,)``."""
        h = rmsnorm(hidden, self.weights.output_norm, self.config.rms_eps)
        if h.ndim == 1:
            return self.weights.output @ h
        return h @ self.weights.output.T

    def forward(self, token_ids: Sequence[int] | np.ndarray, cache: KVCache, *,
                all_logits: bool = False) -> np.ndarray:
        """Append tokens to the sequence in ``cache`` and return next-token logits.

        With ``all_logits`` the result is ``(T, vocab)`` (the logits after every new token),
        otherwise ``(vocab,)`` for the last one only.
        """
        with blas_limit():
            x = self.hidden_states(token_ids, cache)
            return self.logits(x) if all_logits else self.logits(x[-1])

    def generate(self, prompt_ids: Sequence[int], max_new_tokens: int, *,
                 stop_ids: Collection[int] = (), stats: GenerationStats | None = None,
                 cache: KVCache | None = None) -> Iterator[int]:
        """Greedy decoding: prefill the prompt, then yield up to ``max_new_tokens`` token ids.

        A token in ``stop_ids`` is yielded and then generation ends. ``stats`` (if given) is
        filled in as tokens are produced; time spent by the consumer between tokens is not
        counted. ``cache`` defaults to a new one sized for the prompt plus the new tokens.

        Raises:
            ModelError: empty prompt, or prompt plus new tokens longer than the context.
        """
        if max_new_tokens < 0:
            raise ModelError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        n_prompt = len(prompt_ids)
        if n_prompt == 0:
            raise ModelError("the prompt has no tokens")
        need = n_prompt + max_new_tokens
        if need > self.config.context_length:
            raise ModelError(f"prompt ({n_prompt} tokens) plus {max_new_tokens} new tokens "
                             f"exceeds the context length {self.config.context_length}")
        if cache is None:
            cache = self.new_cache(max(need, 1))
        elif cache.length + need > cache.capacity:
            raise ModelError("the given KV cache is too small for this generation")
        st = stats if stats is not None else GenerationStats()
        st.prompt_tokens = n_prompt
        if max_new_tokens == 0:
            return
        stops = frozenset(int(s) for s in stop_ids)
        t0 = time.perf_counter()
        logits = self.forward(prompt_ids, cache)
        token = int(np.argmax(logits))
        st.prefill_seconds = time.perf_counter() - t0
        for produced in range(1, max_new_tokens + 1):
            st.generated_tokens = produced
            if token in stops:
                st.stopped_by = token
            yield token
            if token in stops or produced == max_new_tokens:
                return
            t0 = time.perf_counter()
            logits = self.forward([token], cache)
            token = int(np.argmax(logits))
            st.decode_seconds += time.perf_counter() - t0
            st.decode_steps += 1


def greedy_tokens(model: ReferenceModel, prompt_ids: Sequence[int], max_new_tokens: int,
                  stop_ids: Collection[int] = ()) -> list[int]:
    """All tokens :meth:`ReferenceModel.generate` yields, as a list."""
    return list(model.generate(prompt_ids, max_new_tokens, stop_ids=stop_ids))
