"""The wafer-numerics reference (waferscale.decode.numerics) against the contract.

The order of every f32 operation is the contract (docs/decode-runtime.md, "Numerics: where the
wafer rounds"). It is proved by comparing the vectorised building blocks, bit for bit, with
direct scalar loops over the doc's formulas: Python floats rounded to f32 after every
operation (``r32``), as the simulator does, on hypothesis-drawn shapes, grids and data. A
scalar decoder built from those loops and geometry alone then checks one whole model step.
Then the decoder is checked against the float32 reference and across grids, with tolerances
stated in units of the f16 unit roundoff ``U16 = 2**-11``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decode_helpers import make_model

from waferscale.decode import numerics as N
from waferscale.lang import types as T
from waferscale.lang.values import Val
from waferscale.model.config import ModelConfig
from waferscale.model.errors import ModelError
from waferscale.model.reference import ReferenceModel
from waferscale.plan.geometry import LayerGrid, block_slice
from waferscale.plan.pack import WaferWeights, wafer_weights
from waferscale.sim.builtins_rt import INTRINSICS

U16 = 2.0 ** -11   # unit roundoff of f16


def r32(v: float) -> float:
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.float32(v))


def r16(v: float) -> float:
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.float16(v))


def bits(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a.view(np.uint16 if a.dtype == np.float16 else np.uint32)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(bits(a), bits(b)))


def f16_data(rng: np.random.Generator, shape: tuple[int, ...], spread: int = 6) -> np.ndarray:
    """f16 values with magnitudes over ``2**-spread .. 2**spread``: sums of such terms round
    differently in different orders."""
    mag = 2.0 ** rng.integers(-spread, spread + 1, size=shape)
    return (rng.standard_normal(shape) * mag).astype(np.float16)


# ---------------------------------------------------------------------------------------------
# <math>: the simulator's table
# ---------------------------------------------------------------------------------------------


class _StubPE:
    def cost(self, cycles: int) -> None:
        pass


def simulator_math(name: str, x: float) -> float:
    """``<math>``'s ``{name}_f32`` as the simulator runs it."""
    out = INTRINSICS[f"math.{name}_f32"](_StubPE(), [Val(T.F32, x)], None)
    return float(out.v)


def _same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or np.float32(a).view(np.uint32) == \
        np.float32(b).view(np.uint32)


@settings(max_examples=300, deadline=None)
@given(x=st.floats(width=32, allow_nan=True, allow_infinity=True),
       name=st.sampled_from(["exp", "sin", "cos", "invsqrt"]))
def test_math_matches_the_simulator_table(x: float, name: str) -> None:
    want = simulator_math(name, x)
    assert _same_float(N.math_scalar_f32(name, x), want)
    assert _same_float(float(N.math_f32(name, np.array([x], dtype=np.float32))[0]), want)


def test_vectorised_exp_matches_the_simulator_on_many_values() -> None:
    """NumPy's float64 exp is not libm's: the vectorised path must still give the simulator's
    f32 bits everywhere, including underflow to subnormals and zero, and overflow."""
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.uniform(-110, 90, 60_000), rng.standard_normal(20_000),
                        [-np.inf, np.inf, np.nan, 88.72283, 88.72284, -87.33655, -103.97208,
                         -103.97209, 0.0, -0.0]]).astype(np.float32)
    got = N.math_f32("exp", x)
    want = np.array([simulator_math("exp", v) for v in x.tolist()], dtype=np.float32)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    assert np.array_equal(bits(got[ok]), bits(want[ok]))


def test_vectorised_exp_repairs_a_worse_float64_exp(monkeypatch: pytest.MonkeyPatch) -> None:
    """The repair of :func:`math_f32` at work: with a float64 exp 2**-30 off (which changes
    about one f32 rounding in 64) and the near-boundary window widened to match, the results
    are still the simulator's bits."""
    monkeypatch.setattr(N, "_EXP64", lambda v: np.exp(v) * (1 + 2.0 ** -30))
    monkeypatch.setattr(N, "_NEAR", 2.0 ** -28)
    x = np.random.default_rng(8).uniform(-100, 88, 20_000).astype(np.float32)
    wrong = (np.exp(x.astype(np.float64)) * (1 + 2.0 ** -30)).astype(np.float32)
    want = np.array([simulator_math("exp", v) for v in x.tolist()], dtype=np.float32)
    assert not same_bits(wrong, want), "the perturbation must matter for the test to mean much"
    assert same_bits(N.math_f32("exp", x), want)


def test_rope_table_is_pow_rounded_once() -> None:
    inv = N.rope_inv_freq(64, 100000.0)
    assert inv.dtype == np.float32 and inv.shape == (32,)
    for i in (0, 1, 17, 31):
        assert inv[i] == np.float32(100000.0 ** ((-2 * i) / 64))


# ---------------------------------------------------------------------------------------------
# Scalar loops of the doc's formulas
# ---------------------------------------------------------------------------------------------


def s_chain(parts: list[float], root: int) -> float:
    """Lo side s_0 = p_0, s_k = p_k + s_{k-1}; hi side s_last = p_last, s_k = p_k + s_{k+1};
    y = (p_root + s_lo) + s_hi."""
    n = len(parts)
    y = parts[root]
    if root > 0:
        s = parts[0]
        for k in range(1, root):
            s = r32(parts[k] + s)
        y = r32(y + s)
    if root < n - 1:
        s = parts[n - 1]
        for k in range(n - 2, root, -1):
            s = r32(parts[k] + s)
        y = r32(y + s)
    return y


def s_dot_blocks(row: np.ndarray, x: list[float], blocks: list[slice], root: int) -> float:
    """One output of a GEMV: per PE ``p = 0; p = p + w_j * x_j`` over its block, then the
    chain to ``root``."""
    parts = []
    for blk in blocks:
        p = 0.0
        for j in range(blk.start, blk.stop):
            p = r32(p + r32(float(row[j]) * x[j]))
        parts.append(p)
    return s_chain(parts, root)


def s_gemv(m: np.ndarray, x: list[float], blocks: list[slice], root: int) -> list[float]:
    return [s_dot_blocks(m[o], x, blocks, root) for o in range(m.shape[0])]


def s_rmsnorm(x: list[float], gain: np.ndarray, eps: float, W: int) -> list[float]:
    """The f32 values before the final f16 rounding."""
    d = len(x)
    parts = []
    for c in range(W):
        ss = 0.0
        for i in range(block_slice(d, W, c).start, block_slice(d, W, c).stop):
            ss = r32(ss + r32(x[i] * x[i]))
        parts.append(ss)
    tot = s_chain(parts, (W - 1) // 2)
    r = r32(1.0 / math.sqrt(r32(r32(tot * r32(1.0 / d)) + r32(eps))))
    return [r32(r32(x[i] * r) * float(gain[i])) for i in range(d)]


def s_rope(v: list[float], pos: int, base: float) -> list[float]:
    d = len(v)
    out = list(v)
    for i in range(d // 2):
        theta = r32(r32(pos) * r32(base ** ((-2 * i) / d)))
        c, s = r32(math.cos(theta)), r32(math.sin(theta))
        a, b = v[2 * i], v[2 * i + 1]
        out[2 * i] = r32(r32(a * c) - r32(b * s))
        out[2 * i + 1] = r32(r32(a * s) + r32(b * c))
    return out


def s_attention_head(q: list[float], keys: list[list[float]], vals: list[list[float]],
                     W: int) -> list[float]:
    """One query head over positions ``0 .. len(keys)-1``, position ``t`` on PE ``t % W``;
    the f32 output before the final f16 rounding."""
    d = len(q)
    scale = r32(1.0 / math.sqrt(d))
    scores = []
    for k in keys:
        acc = 0.0
        for j in range(d):
            acc = r32(acc + r32(q[j] * k[j]))
        scores.append(r32(acc * scale))
    mx = max(scores)
    p = [r32(math.exp(r32(s - mx))) for s in scores]
    l_parts, o_parts = [], []
    for c in range(W):
        l_c, o_c = 0.0, [0.0] * d
        for t in range(c, len(keys), W):          # the PE's slots, ascending
            l_c = r32(l_c + p[t])
            o_c = [r32(o_c[j] + r32(p[t] * vals[t][j])) for j in range(d)]
        l_parts.append(l_c)
        o_parts.append(o_c)
    root = (W - 1) // 2
    l_tot = s_chain(l_parts, root)
    inv = r32(1.0 / l_tot)
    return [r32(s_chain([o[j] for o in o_parts], root) * inv) for j in range(d)]


def s_swiglu(g: float, u: float) -> float:
    """The f32 value before the final f16 rounding."""
    e = r32(math.exp(-g)) if -g < 709 else math.inf
    return r32(r32(g / r32(1.0 + e)) * u)


def f16_of(values: list[float]) -> list[float]:
    return [r16(v) for v in values]


# ---------------------------------------------------------------------------------------------
# The building blocks, bit for bit
# ---------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(n_out=st.integers(1, 5), n_in=st.integers(1, 24), data=st.data(),
       seed=st.integers(0, 2**16))
def test_gemv_row_form_is_the_doc_order(n_out: int, n_in: int, data: st.DataObject,
                                        seed: int) -> None:
    W = data.draw(st.integers(1, n_in), label="W")
    rng = np.random.default_rng(seed)
    m, x = f16_data(rng, (n_out, n_in)), f16_data(rng, (n_in,))
    root = (W - 1) // 2
    want = s_gemv(m, x.astype(float).tolist(), [block_slice(n_in, W, c) for c in range(W)], root)
    got = N.gemv_row_form(N.blocked_matrix(m, W), x.astype(np.float32), root)
    assert same_bits(got, np.array(want, dtype=np.float32))


@settings(max_examples=60, deadline=None)
@given(n_out=st.integers(1, 5), n_in=st.integers(1, 24), data=st.data(),
       seed=st.integers(0, 2**16))
def test_gemv_col_form_is_the_doc_order(n_out: int, n_in: int, data: st.DataObject,
                                        seed: int) -> None:
    R = data.draw(st.integers(1, n_in), label="rows")
    rng = np.random.default_rng(seed)
    m, x = f16_data(rng, (n_out, n_in)), f16_data(rng, (3, n_in))   # a batch of 3 tokens
    got = N.gemv_col_form(N.blocked_matrix(m, R), x.astype(np.float32))
    for t in range(3):
        want = s_gemv(m, x[t].astype(float).tolist(),
                      [block_slice(n_in, R, r) for r in range(R)], 0)
        assert same_bits(got[t], np.array(want, dtype=np.float32))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 30), data=st.data(), seed=st.integers(0, 2**16))
def test_chain_reduce_is_the_doc_order(n: int, data: st.DataObject, seed: int) -> None:
    root = data.draw(st.integers(0, n - 1), label="root")
    p = np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32) * 1e3
    got = N.chain_reduce(p, root, axis=0)
    want = [s_chain(p[:, i].astype(float).tolist(), root) for i in range(4)]
    assert same_bits(got, np.array(want, dtype=np.float32))


def test_the_order_is_observable() -> None:
    """The tests above could fail: on this data the wafer's order and a plain left-to-right
    f32 sum differ, so a reduction in the wrong order would be caught."""
    rng = np.random.default_rng(3)
    m, x = f16_data(rng, (64, 48), spread=10), f16_data(rng, (48,), spread=10)
    plain = [0.0] * 64
    for o in range(64):
        for j in range(48):
            plain[o] = r32(plain[o] + r32(float(m[o, j]) * float(x[j])))
    W = 6
    got = N.gemv_row_form(N.blocked_matrix(m, W), x.astype(np.float32), (W - 1) // 2)
    assert not same_bits(got, np.array(plain, dtype=np.float32))
    # ... and so do two roots of one chain.
    p = f16_data(rng, (24, 64), spread=10).astype(np.float32)
    assert not same_bits(N.chain_reduce(p, 0, 0), N.chain_reduce(p, 11, 0))


@settings(max_examples=40, deadline=None)
@given(d=st.integers(1, 40), data=st.data(), seed=st.integers(0, 2**16))
def test_rmsnorm_is_the_doc_formula(d: int, data: st.DataObject, seed: int) -> None:
    W = data.draw(st.integers(1, d), label="W")
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((2, d)) * 2.0 ** rng.integers(-4, 5, (2, d))).astype(np.float32)
    gain = (1 + 0.2 * rng.standard_normal(d)).astype(np.float32)
    got = N.rmsnorm_row_form(x, gain, 1e-5, W)
    got32 = N.rmsnorm_row_form(x, gain, 1e-5, W, f16=False)
    for t in range(2):
        want = s_rmsnorm(x[t].astype(float).tolist(), gain, 1e-5, W)
        assert same_bits(got32[t], np.array(want, dtype=np.float32))
        assert same_bits(got[t], np.array(want, dtype=np.float32).astype(np.float16))


@settings(max_examples=40, deadline=None)
@given(half=st.integers(1, 8), pos=st.lists(st.integers(0, 9000), min_size=1, max_size=3),
       base=st.sampled_from([10000.0, 100000.0, 500000.0]), seed=st.integers(0, 2**16))
def test_rope_is_the_doc_formula(half: int, pos: list[int], base: float, seed: int) -> None:
    d = 2 * half
    v = np.random.default_rng(seed).standard_normal((len(pos), 2, d)).astype(np.float32)
    cos, sin = N.rope_cos_sin(np.array(pos), N.rope_inv_freq(d, base))
    got = N.rope(v, cos, sin)
    for t, p in enumerate(pos):
        for h in range(2):
            want = s_rope(v[t, h].astype(float).tolist(), p, base)
            assert same_bits(got[t, h], np.array(want, dtype=np.float32))


@settings(max_examples=40, deadline=None)
@given(n_kv=st.integers(1, 2), G=st.integers(1, 3), d=st.integers(1, 6), W=st.integers(1, 6),
       length=st.integers(1, 20), seed=st.integers(0, 2**16))
def test_attention_is_the_doc_formula(n_kv: int, G: int, d: int, W: int, length: int,
                                      seed: int) -> None:
    rng = np.random.default_rng(seed)
    S = -(-length // W) + 1                          # one spare slot: never read
    k = (rng.standard_normal((n_kv, S * W, d)) * 2).astype(np.float32)
    v = rng.standard_normal((n_kv, S * W, d)).astype(np.float32)
    # Two tokens at once: the last position and (if any) the one before.
    pos = np.array([length - 1] if length == 1 else [length - 2, length - 1])
    q = (rng.standard_normal((len(pos), n_kv, G, d)) * 2).astype(np.float32)
    got = N.attention(q, k.reshape(n_kv, S, W, d), v.reshape(n_kv, S, W, d), pos, W,
                      f16=False)
    assert same_bits(N.attention(q, k.reshape(n_kv, S, W, d), v.reshape(n_kv, S, W, d), pos, W),
                     got.astype(np.float16))
    for t, p in enumerate(pos):
        for g in range(n_kv):
            keys = k[g, :p + 1].astype(float).tolist()
            vals = v[g, :p + 1].astype(float).tolist()
            for h in range(G):
                want = s_attention_head(q[t, g, h].astype(float).tolist(), keys, vals, W)
                assert same_bits(got[t, g, h], np.array(want, dtype=np.float32))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_swiglu_is_the_doc_formula(seed: int) -> None:
    rng = np.random.default_rng(seed)
    g = (rng.standard_normal(64) * 2.0 ** rng.integers(-3, 7, 64)).astype(np.float32)
    u = rng.standard_normal(64).astype(np.float32)
    want = np.array([s_swiglu(float(a), float(b)) for a, b in zip(g, u)], dtype=np.float32)
    assert same_bits(N.swiglu(g, u, f16=False), want)
    assert same_bits(N.swiglu(g, u), want.astype(np.float16))


def test_argmax_takes_the_smallest_index_on_ties() -> None:
    assert N.argmax_first(np.array([1.0, 3.0, -2.0, 3.0], dtype=np.float32)) == 1


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


def scalar_step(cfg: ModelConfig, ww: WaferWeights, grid: LayerGrid, kcache: list, vcache: list,
                token: int, pos: int) -> list[float]:
    """One decode step from the scalar loops and geometry alone; returns the logits.

    ``kcache[l][g]``/``vcache[l][g]``: lists of positions' vectors (appended here)."""
    W, H, G, d = grid.W, grid.H, grid.group, cfg.head_dim
    root = grid.root_x
    in_blocks = [grid.col_block(c) for c in range(W)]
    x = [float(v) for v in ww.token_embd[token]]
    for li, lw in enumerate(ww.layers):
        xn = f16_of(s_rmsnorm(x, lw.attn_norm, cfg.rms_eps, W))
        heads_out: list[float] = []
        for g in range(cfg.n_kv_heads):
            (_, qs), (_, ks), (_, vs) = grid.qkv_rows(g)
            q = s_gemv(lw.wq[qs], xn, in_blocks, root)
            k = s_rope(s_gemv(lw.wk[ks], xn, in_blocks, root), pos, cfg.rope_base)
            v = s_gemv(lw.wv[vs], xn, in_blocks, root)
            del kcache[li][g][pos:], vcache[li][g][pos:]
            kcache[li][g].append(k)
            vcache[li][g].append(v)
            for h in range(G):
                qh = s_rope(q[h * d:(h + 1) * d], pos, cfg.rope_base)
                heads_out += f16_of(s_attention_head(qh, kcache[li][g], vcache[li][g], W))
        y = s_gemv(lw.wo, heads_out, [grid.o_cols(g) for g in range(cfg.n_kv_heads)], 0)
        x = [r32(a + b) for a, b in zip(x, y)]
        xn = f16_of(s_rmsnorm(x, lw.ffn_norm, cfg.rms_eps, W))
        hvec = [0.0] * cfg.ffn_size
        for r in range(H):
            fb = grid.ffn_block(r)
            gate = s_gemv(lw.w_gate[fb], xn, in_blocks, root)
            up = s_gemv(lw.w_up[fb], xn, in_blocks, root)
            hvec[fb] = f16_of([s_swiglu(a, b) for a, b in zip(gate, up)])
        y = s_gemv(lw.w_down, hvec, [grid.ffn_block(r) for r in range(H)], 0)
        x = [r32(a + b) for a, b in zip(x, y)]
    xn = f16_of(s_rmsnorm(x, ww.output_norm, cfg.rms_eps, W))
    logits = [0.0] * cfg.vocab_size
    for r in range(grid.H_head):
        vb = grid.vocab_block(r)
        logits[vb] = s_gemv(ww.output[vb], xn, in_blocks, root)
    return logits


@pytest.mark.parametrize("W, H, H_head, slots", [(3, 2, 3, 2), (1, 1, 1, 5), (4, 3, 2, 2)])
def test_a_whole_step_matches_the_scalar_decoder(W: int, H: int, H_head: int,
                                                 slots: int) -> None:
    cfg, w = make_model(5, n_layers=2, d=8, n_heads=2, n_kv=1, ffn=6, vocab=10)
    ww = wafer_weights(w)
    grid = LayerGrid(cfg, W=W, H=H, H_head=H_head, slots=slots)
    model = N.WaferNumerics(cfg, ww, grid)
    cache = model.new_cache()
    kc = [[[] for _ in range(cfg.n_kv_heads)] for _ in range(cfg.n_layers)]
    vc = [[[] for _ in range(cfg.n_kv_heads)] for _ in range(cfg.n_layers)]
    for pos, token in enumerate([3, 7, 7, 0, 9]):
        _, logits = model.step(token, pos, cache)
        want = scalar_step(cfg, ww, grid, kc, vc, token, pos)
        assert same_bits(logits, np.array(want, dtype=np.float32)), f"position {pos}"


def test_prompt_fast_path_and_steps_give_the_same_bits() -> None:
    cfg, w = make_model(11)
    grid = LayerGrid(cfg, W=5, H=3, H_head=7, slots=4)
    model = N.WaferNumerics(cfg, wafer_weights(w), grid)
    ids = [4, 8, 15, 16, 23, 42, 1, 2, 3, 5, 8, 13]
    batch = model.forward(ids, c1 := model.new_cache())
    c2 = model.new_cache()
    steps = np.stack([model.step(t, i, c2)[1] for i, t in enumerate(ids)])
    assert same_bits(batch, steps)
    assert same_bits(c1.k, c2.k) and same_bits(c1.v, c2.v) and c1.length == c2.length == 12
    assert model.generate(ids, 6) == model.generate(ids, 6, batch_prompt=False)
    # Rewinding: stepping an earlier position again recomputes it from the cache before it.
    again = model.step(ids[5], 5, c2)[1]
    assert same_bits(again, steps[5]) and c2.length == 6


def test_positions_must_fit_and_follow() -> None:
    cfg, w = make_model(1)
    model = N.WaferNumerics(cfg, wafer_weights(w), LayerGrid(cfg, W=3, H=2, H_head=2, slots=2))
    cache = model.new_cache()
    with pytest.raises(ModelError, match="gap"):
        model.step(1, 1, cache)
    with pytest.raises(ModelError, match="capacity"):
        model.forward(list(range(7)), cache)
    with pytest.raises(ModelError, match="capacity"):
        model.generate([1, 2, 3], 5)
    assert len(model.generate([1, 2, 3], 4)) == 4


# Tolerances, in units of the f16 unit roundoff U16 times the largest |logit| of the fp32
# reference. The wafer rounds each weight once and, per layer, four activation vectors (the
# two norm outputs, the attention output, the SwiGLU output) to f16, each a relative error of
# at most U16; f32 arithmetic adds errors of order 2**-24, negligible. To first order a logit's
# error is a sum of such terms through 2 layers and the head, about 2 * (4 + 1) + 2 = 12 of
# them, each at most U16 times the logit scale (weights ~ 1/sqrt(fan-in), so a unit relative
# change of a layer's input moves the logits by about their own scale). Measured over 30 seeds:
# at most 5.3 U16 against fp32, 1.2 U16 between grids.
TOL_VS_FP32 = 16 * U16
# A different grid changes only f32 summation orders (relative 2**-22 or so); that becomes
# visible only where an f16 activation rounding goes the other way, by one f16 ulp (2 U16) of
# that element, at most as large as that rounding's own error. No weight rounding differs, so
# only the 9 activation roundings count.
TOL_GRIDS = 8 * U16


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_the_fp32_reference(seed: int) -> None:
    cfg, w = make_model(seed)
    ids = np.random.default_rng(seed + 100).integers(0, cfg.vocab_size, 16).tolist()
    ref = ReferenceModel(cfg, w)
    want = ref.forward(ids, ref.new_cache(16), all_logits=True)
    model = N.WaferNumerics(cfg, wafer_weights(w), LayerGrid(cfg, W=5, H=3, H_head=7, slots=4))
    got = model.forward(ids, model.new_cache())
    scale = float(np.abs(want).max())
    assert np.abs(got - want).max() <= TOL_VS_FP32 * scale
    assert (got.argmax(-1) == want.argmax(-1)).all()


def test_grids_differ_only_by_rounding() -> None:
    cfg, w = make_model(0)
    ww = wafer_weights(w)
    ids = np.random.default_rng(100).integers(0, cfg.vocab_size, 16).tolist()
    ref = ReferenceModel(cfg, w)
    scale = float(np.abs(ref.forward(ids, ref.new_cache(16), all_logits=True)).max())
    out = []
    for W, H, H_head, slots in [(5, 3, 7, 4), (1, 2, 1, 16), (32, 64, 50, 1), (5, 3, 7, 4)]:
        model = N.WaferNumerics(cfg, ww, LayerGrid(cfg, W=W, H=H, H_head=H_head, slots=slots))
        out.append(model.forward(ids, model.new_cache()))
    assert same_bits(out[0], out[3]), "the same grid gives the same bits"
    # The grid really changes the order: (this seed's) logits are not bit-identical...
    assert not same_bits(out[0], out[1]) and not same_bits(out[0], out[2])
    # ... and differ only by rounding.
    for other in out[1:3]:
        assert np.abs(other - out[0]).max() <= TOL_GRIDS * scale
