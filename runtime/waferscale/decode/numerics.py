"""The wafer-numerics reference: a NumPy decoder that computes, bit for bit, what the decode
program computes on the (simulated) wafer.

It follows docs/decode-runtime.md, "Numerics: where the wafer rounds", literally; the
building blocks below are the contract the CSL program must meet:

* :func:`math_f32` — the simulator's ``<math>`` functions (``exp``, ``sin``, ``cos``,
  ``invsqrt``; table of ``waferscale/sim/builtins_rt.py``): the float64 libm function of the
  f32 argument, rounded to f32 (``invsqrt(x) = 1 / sqrt(x)`` in float64).
* :func:`chain_reduce` — partials reduced along a line towards a root: lo side ``s_0 = p_0,
  s_k = p_k + s_{k-1}``; hi side ``s_last = p_last, s_k = p_k + s_{k+1}``; root
  ``y = (p_root + s_lo) + s_hi`` (a missing side skipped).
* :func:`gemv_row_form` — ``y = W x`` with ``x`` split over the ``W`` columns (QKV, gate/up,
  LM head): PE ``(c, r)`` sums ``p = p + f32(W[:, j]) * f32(x[j])`` over its input block in
  ascending ``j`` starting from ``p = 0``, then the row reduction towards ``root_x``.
* :func:`gemv_col_form` — ``y = W x`` with ``x`` split over the rows (O, down): per row the
  same sequential sum, then the reduction up the columns to row 0 (``y = p_0 + s_1``).
* :func:`rmsnorm_row_form`, :func:`rope`, :func:`attention`, :func:`swiglu` — as the doc.

:class:`WaferNumerics` strings them into a decoder: :meth:`~WaferNumerics.step` is one
launch ``step(pos)`` on the wafer (one token), :meth:`~WaferNumerics.forward` processes several
consecutive tokens at once and is bit-identical to stepping them one by one (every operation is
per token except attention, where a later token's extra slots only add exact zeros),
:meth:`~WaferNumerics.generate` is greedy decoding (prompt token by token, argmax with the
smallest index on ties, as the wafer's (value, index) reduction).

Vectorisation never changes an order: per-PE sweeps run over all PEs at once and loop only
over the (at most one block long) input index; reductions loop over the line. Zero padding
of short blocks adds ``+0`` terms, which leave any f32 sum unchanged (a running sum that
starts at ``+0`` is never ``-0``).

Limits: finite weights and activations are assumed (a NaN or infinite input anywhere makes
padding terms ``0 * inf``, and the wafer's NaN handling in max/argmax is not modelled). The
KV capacity is the grid's ``slots * W``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Sequence

import numpy as np

from waferscale.model.config import ModelConfig
from waferscale.model.errors import ModelError
from waferscale.model.reference import KVCache
from waferscale.plan.geometry import LayerGrid, block_len, block_start
from waferscale.plan.pack import WaferLayer, WaferWeights

log = logging.getLogger(__name__)

F32 = np.float32
F16 = np.float16


# --------------------------------------------------------------------------------------------
# <math>: the simulator's definitions
# --------------------------------------------------------------------------------------------

def _exp(x: float) -> float:
    return math.exp(x) if x < 709 else math.inf


def _invsqrt(x: float) -> float:
    return 1.0 / math.sqrt(x) if x > 0 else math.inf


#: float64 functions of ``<math>``, as ``waferscale/sim/builtins_rt.py`` defines them.
SCALAR_MATH: dict[str, Callable[[float], float]] = {
    "exp": _exp, "sin": math.sin, "cos": math.cos, "invsqrt": _invsqrt}


def math_scalar_f32(name: str, x: float) -> float:
    """``<math>``'s ``{name}_f32`` of one f32 value, exactly as the simulator evaluates it
    (``builtins_rt._math1``: the float64 function, a math-domain error giving ``inf`` for a
    positive argument and ``nan`` otherwise, then rounded to f32)."""
    try:
        r = SCALAR_MATH[name](x)
    except (OverflowError, ValueError):
        r = math.inf if x > 0 else math.nan
    with np.errstate(over="ignore", invalid="ignore"):
        return float(F32(r))


_MAX32 = float(np.finfo(F32).max)
#: The vectorised float64 exp of :func:`math_f32` and how close (relative) to an f32 rounding
#: boundary its result must come to be redone with libm (module attributes so that a test can
#: check the repair with a deliberately worse exp).
_EXP64: Callable[[np.ndarray], np.ndarray] = np.exp
_NEAR = 2.0 ** -40


def math_f32(name: str, x: np.ndarray) -> np.ndarray:
    """:func:`math_scalar_f32` elementwise over an f32 array (same shape, f32).

    ``exp`` is vectorised: NumPy's float64 ``exp`` is not libm's, but both are within a few
    float64 ulps of the true value, so their f32 roundings can only differ when the float64
    result lies within ``2**-40`` (relative) of a point halfway between two f32 values; those
    elements, NaN inputs and the results at the f32 overflow boundary are redone with
    :func:`math_scalar_f32`. The other functions (few values per step) always take the
    scalar path.
    """
    x = np.asarray(x, dtype=F32)
    if name != "exp":
        flat = [math_scalar_f32(name, v) for v in x.ravel().tolist()]
        return np.array(flat, dtype=F32).reshape(x.shape)
    x64 = x.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        y = _EXP64(x64)
        r = y.astype(F32)
        r64 = r.astype(np.float64)
        lo = np.nextafter(r, F32(-np.inf)).astype(np.float64)
        hi = np.nextafter(r, F32(np.inf)).astype(np.float64)
        tol = np.abs(y) * _NEAR
        near = (np.abs(y - (r64 + lo) * 0.5) <= tol) | (np.abs(y - (r64 + hi) * 0.5) <= tol)
    # exp(-inf) = 0 and exp(inf) = inf agree; a NaN input gives inf in the simulator.
    redo = near | np.isnan(x) | (np.isinf(r) & np.isfinite(x)) | (np.abs(r64) == _MAX32)
    if redo.any():
        idx = np.nonzero(redo)
        r[idx] = [math_scalar_f32("exp", v) for v in x[idx].tolist()]
    return r


def rope_inv_freq(head_dim: int, base: float) -> np.ndarray:
    """``f32(base ** (-2i / d))`` for ``i < d / 2``: Python's float ``**`` (C ``pow``) on the
    float64 exponent ``(-2 * i) / d``, rounded once to f32. The table the wafer's RoPE uses."""
    return np.array([float(base) ** ((-2 * i) / head_dim) for i in range(head_dim // 2)],
                    dtype=F32)


# --------------------------------------------------------------------------------------------
# Building blocks (leading axes are batch axes: tokens)
# --------------------------------------------------------------------------------------------

def chain_reduce(p: np.ndarray, root: int, axis: int) -> np.ndarray:
    """Reduce f32 partials along ``axis`` towards ``root`` in the wafer's order (see the
    module docstring); returns ``p`` without that axis."""
    p = np.moveaxis(p, axis, 0)
    n = p.shape[0]
    if not 0 <= root < n:
        raise ValueError(f"root {root} outside a line of {n}")
    y = p[root].copy()
    if root > 0:
        s = p[0].copy()
        for k in range(1, root):
            s = p[k] + s
        y = y + s
    if root < n - 1:
        s = p[n - 1].copy()
        for k in range(n - 2, root, -1):
            s = p[k] + s
        y = y + s
    return y


def split_blocks(x: np.ndarray, parts: int) -> np.ndarray:
    """``x (..., total)`` -> ``(..., max_block, parts)``: ``[..., j, c]`` is item ``j`` of block
    ``c`` (blocks as :func:`~waferscale.plan.geometry.block_len`), zero padded."""
    total = x.shape[-1]
    nmax = block_len(total, parts, 0)
    out = np.zeros((*x.shape[:-1], nmax, parts), dtype=x.dtype)
    for c in range(parts):
        s, n = block_start(total, parts, c), block_len(total, parts, c)
        out[..., :n, c] = x[..., s:s + n]
    return out


def blocked_matrix(m: np.ndarray, parts: int) -> np.ndarray:
    """An ``(out, in)`` matrix with its *input* columns split into ``parts`` blocks:
    ``(max_block, parts, out)`` f32 (f16 widens exactly), ``[j, c, o] = m[o, start_c + j]``,
    zero padded."""
    n_out, n_in = m.shape
    nmax = block_len(n_in, parts, 0)
    out = np.zeros((nmax, parts, n_out), dtype=F32)
    mt = m.T
    for c in range(parts):
        s, n = block_start(n_in, parts, c), block_len(n_in, parts, c)
        out[:n, c, :] = mt[s:s + n]
    return out


def sequential_partials(wb: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """Per-PE partial sums ``p = 0; p = p + f32(w_j) * f32(x_j)`` for ascending ``j``.

    ``wb``: ``(J, P, out)`` f32 (values of f16), ``xb``: ``(..., J, P)`` f32 (values of
    f16; their products are exact in f32). Returns the ``(..., P, out)`` f32 partials of the
    ``P`` PEs.
    """
    J, P, n_out = wb.shape
    p = np.zeros((*xb.shape[:-2], P, n_out), dtype=F32)
    for j in range(J):
        p += wb[j] * xb[..., j, :, None]
    return p


def gemv_row_form(wb: np.ndarray, x: np.ndarray, root: int) -> np.ndarray:
    """``y = W x`` with the input in row form: ``wb`` from :func:`blocked_matrix` over the
    ``W`` columns, ``x (..., in)`` f32 (values of f16); the partials reduce towards ``root``
    (``root_x``). Returns ``(..., out)`` f32."""
    xb = split_blocks(x.astype(F32, copy=False), wb.shape[1])
    return chain_reduce(sequential_partials(wb, xb), root, axis=-2)


def gemv_col_form(wb: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``y = W x`` with the input split over the rows: ``wb`` from :func:`blocked_matrix` over
    the rows, ``x (..., in)`` f32; the partials reduce up the columns to row 0."""
    xb = split_blocks(x.astype(F32, copy=False), wb.shape[1])
    return chain_reduce(sequential_partials(wb, xb), 0, axis=-2)


def rmsnorm_row_form(x: np.ndarray, gain: np.ndarray, eps: float, W: int, *,
                     f16: bool = True) -> np.ndarray:
    """RMSNorm of row-form ``x (..., d)`` f32 over ``W`` columns; returns ``xn`` f16 (with
    ``f16=False`` the f32 value before that last rounding, for tests).

    Per PE ``ss = ss + x[i] * x[i]`` in index order, reduced to ``root_x``;
    ``r = invsqrt(ss * f32(1/d) + f32(eps))``; ``xn = f16((x * r) * gain)``.
    """
    d = x.shape[-1]
    xb = split_blocks(x, W)
    ss = np.zeros((*x.shape[:-1], W), dtype=F32)
    for i in range(xb.shape[-2]):
        ss = ss + xb[..., i, :] * xb[..., i, :]
    tot = chain_reduce(ss, (W - 1) // 2, axis=-1)
    arg = tot * F32(1.0 / d) + F32(eps)
    r = math_f32("invsqrt", arg)
    y = (x * r[..., None]) * gain
    return y.astype(F16) if f16 else y


def rope_cos_sin(pos: np.ndarray, inv_freq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``cos_f32(theta)``, ``sin_f32(theta)`` of ``theta = f32(pos) * inv_freq[i]`` (one f32
    multiply), each ``(T, d/2)``: what the RoPE PEs compute from the launch's ``pos``."""
    theta = np.asarray(pos, dtype=F32)[:, None] * inv_freq[None, :]
    return math_f32("cos", theta), math_f32("sin", theta)


def rope(v: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate adjacent pairs of ``v (T, heads, d)`` f32 by the tokens' angles (``cos``,
    ``sin`` from :func:`rope_cos_sin`): ``(a, b) -> (a*c - b*s, a*s + b*c)`` in f32."""
    c, s = cos[:, None, :], sin[:, None, :]
    a, b = v[..., 0::2], v[..., 1::2]
    out = np.empty_like(v)
    out[..., 0::2] = a * c - b * s
    out[..., 1::2] = a * s + b * c
    return out


def attention(q: np.ndarray, k_slots: np.ndarray, v_slots: np.ndarray, pos: np.ndarray,
              W: int, *, f16: bool = True) -> np.ndarray:
    """Attention of the query heads of every KV group over the round-robin slots.

    Args:
        q: ``(T, n_kv, G, d)`` f32 rotated queries of ``T`` tokens.
        k_slots, v_slots: ``(n_kv, S, W, d)`` f32: slot ``s`` of PE ``(c, g)`` holds
            position ``s * W + c`` (see :meth:`LayerGrid.kv_slot`); positions beyond a
            token's own are ignored for it.
        pos: ``(T,)`` the tokens' positions (each token sees ``0 .. pos``).
        W: the row's width (``root_x = (W - 1) // 2``).

    Per head: ``s_t = (sum_j q_j k_tj) * f32(1/sqrt(d))`` (ascending ``j``), ``max`` over the
    token's positions, ``p_t = exp_f32(s_t - max)``, per PE ``l = sum p_t`` and ``o_j = sum
    p_t v_tj`` over its slots in ascending order, both chain-reduced to ``root_x``,
    ``out = o * (1 / l)``. Returns ``(T, n_kv, G, d)`` f16 (``f16=False``: f32 ``out``).
    """
    d = q.shape[-1]
    n_kv, S = k_slots.shape[:2]
    acc = np.zeros((q.shape[0], n_kv, q.shape[2], S, W), dtype=F32)
    for j in range(d):
        acc = acc + q[:, :, :, j, None, None] * k_slots[None, :, None, :, :, j]
    scores = acc * F32(1.0 / math.sqrt(d))
    position = np.arange(S)[:, None] * W + np.arange(W)[None, :]           # (S, W)
    masked = position[None, :, :] > np.asarray(pos)[:, None, None]         # (T, S, W)
    scores = np.where(masked[:, None, None], F32(-np.inf), scores)
    mx = scores.max(axis=(-2, -1), keepdims=True)
    p = math_f32("exp", scores - mx)                                        # masked -> 0
    lsum = np.zeros(p.shape[:3] + (W,), dtype=F32)
    osum = np.zeros(p.shape[:3] + (W, d), dtype=F32)
    for s in range(S):
        lsum = lsum + p[..., s, :]
        osum = osum + p[..., s, :, None] * v_slots[None, :, None, s]
    root = (W - 1) // 2
    lr = chain_reduce(lsum, root, axis=-1)
    orr = chain_reduce(osum, root, axis=-2)
    out = orr * (F32(1.0) / lr)[..., None]
    return out.astype(F16) if f16 else out


def swiglu(gate: np.ndarray, up: np.ndarray, *, f16: bool = True) -> np.ndarray:
    """``f16((gate / (1 + exp_f32(-gate))) * up)``, every operation in f32 (``f16=False``:
    the f32 value before the last rounding)."""
    with np.errstate(over="ignore"):
        den = F32(1.0) + math_f32("exp", -gate)
        y = (gate / den) * up
    return y.astype(F16) if f16 else y


def argmax_first(logits: np.ndarray) -> np.ndarray:
    """The largest logit's index along the last axis, the smallest index on ties."""
    return np.argmax(logits, axis=-1)


# --------------------------------------------------------------------------------------------
# The decoder
# --------------------------------------------------------------------------------------------

class _Layer:
    """One layer's weights in the shapes the building blocks take."""

    def __init__(self, grid: LayerGrid, lw: WaferLayer) -> None:
        W, H, n_kv = grid.W, grid.H, grid.config.n_kv_heads
        rows = []
        for g in range(n_kv):
            (_, qs), (_, ks), (_, vs) = grid.qkv_rows(g)
            rows += [lw.wq[qs], lw.wk[ks], lw.wv[vs]]
        # Row form in: the W columns split the hidden-size inputs.
        self.qkv = blocked_matrix(np.concatenate(rows), W)          # (nD, W, n_kv*(G+2)*d)
        self.gate_up = blocked_matrix(np.concatenate([lw.w_gate, lw.w_up]), W)
        # Column form in: the rows split the inputs (group g's q_dim block on row g; ffn
        # block r on row r).
        self.o = blocked_matrix(lw.wo, n_kv)
        self.down = blocked_matrix(lw.w_down, H)
        self.attn_norm = lw.attn_norm
        self.ffn_norm = lw.ffn_norm


class WaferNumerics:
    """The wafer's decoder in NumPy (see the module docstring).

    Args:
        config: the model.
        weights: :func:`waferscale.plan.pack.wafer_weights` of the model.
        grid: the layout (``grid.config`` must be ``config``); the KV capacity is
            ``grid.kv_capacity``.
    """

    #: Tokens of one LM-head pass in :meth:`forward` (bounds its ``(T, W, vocab)`` partials).
    HEAD_CHUNK = 8

    def __init__(self, config: ModelConfig, weights: WaferWeights, grid: LayerGrid) -> None:
        if grid.config != config:
            raise ValueError("the grid is for another model configuration")
        if len(weights.layers) != config.n_layers:
            raise ValueError(f"{len(weights.layers)} layers of weights, config has "
                             f"{config.n_layers}")
        self.config, self.grid, self.weights = config, grid, weights
        self.layers = [_Layer(grid, lw) for lw in weights.layers]
        self.head = blocked_matrix(weights.output, grid.W)
        self.inv_freq = rope_inv_freq(config.head_dim, config.rope_base)

    def new_cache(self) -> KVCache:
        """An empty cache of ``grid.kv_capacity`` positions: ``k``, ``v`` f32 ``(n_layers,
        n_kv, capacity, d)`` in position order (slot ``s`` of column ``c`` is position
        ``s * W + c``) and a ``length``."""
        return KVCache.allocate(self.config, self.grid.kv_capacity)

    def embed(self, token_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """``(T, d)`` f32: the f16 embedding rows the host sends, widened to f32."""
        ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
        if ids.size == 0:
            raise ModelError("no tokens to process")
        if ids.min() < 0 or ids.max() >= self.config.vocab_size:
            raise ModelError(f"token id outside the vocabulary (0..{self.config.vocab_size - 1})")
        return self.weights.token_embd[ids].astype(F32)

    def forward(self, token_ids: Sequence[int] | np.ndarray, cache: KVCache,
                start: int | None = None) -> np.ndarray:
        """Process consecutive tokens at positions ``start ..`` (default ``cache.length``);
        returns ``(T, vocab)`` f32 logits, bit-identical to :meth:`step` token by token.

        Raises:
            ModelError: a gap before ``start``, or the tokens overflow the KV capacity.
        """
        cfg, grid = self.config, self.grid
        x = self.embed(token_ids)
        t_len = x.shape[0]
        start = cache.length if start is None else start
        end = start + t_len
        if not 0 <= start <= cache.length:
            raise ModelError(f"position {start} leaves a gap after the {cache.length} cached")
        if end > cache.capacity:
            raise ModelError(f"position {end - 1} is beyond the KV capacity {cache.capacity}")
        pos = np.arange(start, end)
        n_kv, G, d, W = cfg.n_kv_heads, grid.group, cfg.head_dim, grid.W
        root = grid.root_x
        S = -(-end // W)
        cos, sin = rope_cos_sin(pos, self.inv_freq)
        for li, layer in enumerate(self.layers):
            xn = rmsnorm_row_form(x, layer.attn_norm, cfg.rms_eps, W)
            qkv = gemv_row_form(layer.qkv, xn, root).reshape(t_len, n_kv, G + 2, d)
            q = rope(qkv[:, :, :G].reshape(t_len, n_kv * G, d), cos, sin)
            k = rope(qkv[:, :, G], cos, sin)
            cache.k[li, :, start:end] = k.transpose(1, 0, 2)
            cache.v[li, :, start:end] = qkv[:, :, G + 1].transpose(1, 0, 2)
            ks = cache.k[li, :, :S * W].reshape(n_kv, S, W, d)
            vs = cache.v[li, :, :S * W].reshape(n_kv, S, W, d)
            a = attention(q.reshape(t_len, n_kv, G, d), ks, vs, pos, W)
            x = x + gemv_col_form(layer.o, a.reshape(t_len, n_kv * G * d))
            xn = rmsnorm_row_form(x, layer.ffn_norm, cfg.rms_eps, W)
            gu = gemv_row_form(layer.gate_up, xn, root)
            h = swiglu(gu[:, :cfg.ffn_size], gu[:, cfg.ffn_size:])
            x = x + gemv_col_form(layer.down, h)
        cache.length = end
        xn = rmsnorm_row_form(x, self.weights.output_norm, cfg.rms_eps, W)
        return np.concatenate([gemv_row_form(self.head, xn[i:i + self.HEAD_CHUNK], root)
                               for i in range(0, t_len, self.HEAD_CHUNK)])

    def step(self, token_id: int, pos: int, cache: KVCache) -> tuple[int, np.ndarray]:
        """One decode step (the wafer's launch ``step(pos)``): ``token_id`` at position
        ``pos`` (at most ``cache.length``; an earlier position rewinds the sequence).
        Returns ``(next_id, logits (vocab,) f32)``."""
        logits = self.forward([token_id], cache, start=pos)[0]
        return int(argmax_first(logits)), logits

    def generate(self, prompt_ids: Sequence[int], max_new_tokens: int, *,
                 stop_ids: Collection[int] = (), batch_prompt: bool = True) -> list[int]:
        """Greedy decoding; returns the new token ids (a stop id is included and ends).

        The prompt goes through :meth:`forward` in one call when ``batch_prompt`` (the same
        bits as token by token), else step by step.
        """
        if not prompt_ids:
            raise ModelError("the prompt has no tokens")
        if len(prompt_ids) + max_new_tokens > self.grid.kv_capacity + 1:
            raise ModelError(f"prompt ({len(prompt_ids)}) plus {max_new_tokens} new tokens "
                             f"exceeds the KV capacity {self.grid.kv_capacity}")
        if max_new_tokens <= 0:
            return []
        cache = self.new_cache()
        if batch_prompt:
            logits = self.forward(prompt_ids, cache)[-1]
        else:
            for i, t in enumerate(prompt_ids):
                _, logits = self.step(int(t), i, cache)
        token = int(argmax_first(logits))
        out = [token]
        stops = frozenset(int(s) for s in stop_ids)
        while len(out) < max_new_tokens and token not in stops:
            token, _ = self.step(token, cache.length, cache)
            out.append(token)
        return out
