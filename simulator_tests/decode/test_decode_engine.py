"""The decode program on the simulator (csl/llama_decode through waferscale.decode.Engine).

The oracle is the wafer-numerics reference (waferscale.decode.numerics), which performs the
program's f32/f16 operations in the program's order: the tokens must be identical and so must
the KV cache, bit for bit (both are exact claims, no tolerance). Small random Llamas keep the
compiles in seconds: hypothesis draws the model's shape (width, heads, GQA ratio, FFN, vocab,
layers) and the grid (columns, rows, head rows, slots) within caps, plus fixed cases on both
architectures. Streamed grids (layers whose weights the host streams into double-buffered
slots every step) must give the resident grid's tokens and cache. The KV cache's save /
restore / swap, host prefill and the capacity error are checked on one fixed model, resident
and streamed.
"""

from __future__ import annotations

import numpy as np
import pytest
from decode_helpers import make_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from waferscale.decode.engine import Engine
from waferscale.decode.numerics import WaferNumerics
from waferscale.decode.program import PHASES
from waferscale.kv import KVCacheFull, KVSnapshot
from waferscale.plan.geometry import LayerGrid
from waferscale.plan.pack import pack, wafer_weights
from waferscale.sim.timing import DEFAULT_TIMING


def run_both(cfg, w, grid: LayerGrid, prompt: list[int], n_new: int, arch: str = "wse3"
             ) -> tuple[Engine, list[int], list[int], KVSnapshot, object]:
    """Generate on the simulated wafer and with the reference; returns both token lists and
    both caches."""
    ww = wafer_weights(w)
    engine = Engine.from_packed(pack(ww, grid), arch=arch, wafer_weights=ww)
    wafer = list(engine.generate(prompt, n_new))
    ref = WaferNumerics(cfg, ww, grid)
    expect = ref.generate(prompt, n_new, batch_prompt=False)
    # The reference's cache after the same positions: the prompt and every new token but
    # the last (which has not been fed yet).
    cache = ref.new_cache()
    seq = [*prompt, *expect]
    for pos, t in enumerate(seq[:len(prompt) + n_new - 1]):
        ref.step(t, pos, cache)
    return engine, wafer, expect, engine.kv.save(), cache


def assert_cache_equal(snap: KVSnapshot, cache) -> None:
    n = snap.length
    assert np.array_equal(snap.k.view(np.uint32), cache.k[:, :, :n].view(np.uint32))
    assert np.array_equal(snap.v.view(np.uint32), cache.v[:, :, :n].view(np.uint32))


@pytest.mark.parametrize(("arch", "W", "H", "H_head"), [
    ("wse3", 4, 3, 2), ("wse3", 1, 2, 1), ("wse3", 2, 2, 3), ("wse3", 5, 4, 2),
    ("wse2", 3, 2, 2),
])
def test_tokens_and_cache_match_the_wafer_numerics_reference(arch, W, H, H_head):
    cfg, w = make_model(3, n_layers=2, d=16, n_heads=4, n_kv=2, ffn=24, vocab=40)
    grid = LayerGrid(cfg, W=W, H=H, H_head=H_head, slots=12 // W + 1)
    engine, wafer, expect, snap, cache = run_both(cfg, w, grid, [1, 7, 3], 8, arch)
    assert wafer == expect
    assert_cache_equal(snap, cache)
    st_ = engine.stats[-1]
    assert set(st_.phases) == set(PHASES)
    # The phases partition the step, launch to token (nothing is streamed: no stall).
    assert st_.launch_cycles == st_.compute_cycles and st_.stall_cycles == st_.stream_cycles == 0
    assert st_.phases["attention"] > 0 and st_.phases["gemv"] > 0 and st_.phases["lm_head"] > 0


@pytest.mark.parametrize(("arch", "n_layers", "resident", "slots"), [
    ("wse3", 5, 1, 2), ("wse3", 4, 0, 2), ("wse2", 5, 0, 3), ("wse2", 6, 2, 2),
])
def test_streamed_layers_give_the_resident_tokens_and_cache(arch, n_layers, resident, slots):
    cfg, w = make_model(11, n_layers=n_layers, d=16, n_heads=4, n_kv=2, ffn=24, vocab=40)
    shape = dict(W=3, H=3, H_head=2, slots=5)
    grid = LayerGrid(cfg, **shape, n_resident=resident, stream_slots=slots)
    engine, wafer, expect, snap, cache = run_both(cfg, w, grid, [4, 2, 9], 6, arch)
    assert wafer == expect
    assert_cache_equal(snap, cache)
    _, still, _, snap_res, _ = run_both(cfg, w, LayerGrid(cfg, **shape), [4, 2, 9], 6, arch)
    assert still == wafer and snap_res.equals(snap)
    st_ = engine.stats[-1]
    # Every streamed layer is two memcpy commands of the timing model's fixed cost and more.
    assert st_.stream_cycles > 2 * (n_layers - resident) * DEFAULT_TIMING.memcpy_command_cycles()
    # The step is its phases plus its waits for weights, and the waits are streaming time.
    assert st_.launch_cycles == st_.compute_cycles + st_.stall_cycles
    assert 0 < st_.stall_cycles <= st_.stream_cycles
    assert st_.overlap_cycles == st_.stream_cycles - st_.stall_cycles >= 0


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n_kv=st.integers(1, 3), group=st.integers(1, 3), head_dim=st.sampled_from([2, 4, 6]),
       ffn=st.integers(4, 20), vocab=st.integers(8, 60), n_layers=st.integers(1, 4),
       W=st.integers(1, 6), extra_rows=st.integers(0, 2), H_head=st.integers(1, 4),
       stream=st.tuples(st.booleans(), st.integers(0, 2), st.integers(2, 3)),
       seed=st.integers(0, 2**16))
def test_random_models_and_grids(n_kv, group, head_dim, ffn, vocab, n_layers, W, extra_rows,
                                 H_head, stream, seed):
    n_heads = n_kv * group
    d = n_heads * head_dim
    W = min(W, d)
    H = min(n_kv + extra_rows, max(ffn, n_kv))
    ffn = max(ffn, H)
    H_head = min(H_head, vocab)
    cfg, w = make_model(seed, n_layers=n_layers, d=d, n_heads=n_heads, n_kv=n_kv, ffn=ffn,
                        vocab=vocab)
    # Streaming, when drawn and possible: some resident layers, 2 or 3 slots for the rest.
    streamed, resident, slots = stream
    resident = min(resident, n_layers - 2)
    if not streamed or resident < 0:
        resident, slots = n_layers, 0
    slots = min(slots, n_layers - resident)
    grid = LayerGrid(cfg, W=W, H=H, H_head=H_head, slots=8 // W + 1,
                     n_resident=resident if slots else None, stream_slots=slots)
    _, wafer, expect, snap, cache = run_both(cfg, w, grid, [seed % vocab, 1], 4)
    assert wafer == expect
    assert_cache_equal(snap, cache)


@pytest.fixture(scope="module", params=["resident", "streamed"])
def model(request):
    cfg, w = make_model(7, n_layers=4, d=16, n_heads=4, n_kv=2, ffn=24, vocab=40)
    # Capacity 12; streamed: layer 0 resident, layers 1-3 through two slots.
    stream = dict(n_resident=1, stream_slots=2) if request.param == "streamed" else {}
    grid = LayerGrid(cfg, W=3, H=3, H_head=2, slots=4, **stream)
    ww = wafer_weights(w)
    return cfg, ww, grid, pack(ww, grid)


def test_kv_save_restore_is_exact_and_sequences_swap(model):
    cfg, ww, grid, packed = model
    engine = Engine.from_packed(packed, wafer_weights=ww)
    # Sequence A alone, uninterrupted.
    a_alone = list(engine.generate([2, 9, 4], 6))
    # A for 3 tokens, swapped out for B, swapped back in, continued.
    a_head = list(engine.generate([2, 9, 4], 3))
    snap_a = engine.kv.save()
    assert snap_a.length == 3 + 2
    b = list(engine.generate([5, 5, 1, 30], 4))
    snap_b = engine.kv.save()
    engine.kv.restore(snap_a)
    assert engine.kv.save().equals(snap_a)          # restore then save: the same bits
    token = a_head[-1]
    rest = []
    for _ in range(3):
        nxt = engine.step(token)
        assert nxt is not None
        rest.append(nxt)
        token = nxt
    assert a_head + rest == a_alone
    # B's cache survived on the host unchanged, and a fresh run of B gives the same.
    assert list(engine.generate([5, 5, 1, 30], 4)) == b
    assert engine.kv.save().equals(snap_b)


def test_host_prefill_gives_the_same_cache_and_tokens(model):
    cfg, ww, grid, packed = model
    engine = Engine.from_packed(packed, wafer_weights=ww)
    prompt = [3, 1, 4, 1, 5, 9]
    on_wafer = list(engine.generate(prompt, 4, prefill="wafer"))
    snap = engine.kv.save()
    on_host = list(engine.generate(prompt, 4, prefill="host"))
    assert on_host == on_wafer
    assert engine.kv.save().equals(snap)


def test_a_full_cache_is_a_clear_error(model):
    cfg, ww, grid, packed = model
    engine = Engine.from_packed(packed, wafer_weights=ww)
    assert engine.kv.capacity == 12
    with pytest.raises(KVCacheFull, match=r"KV cache full: 12 \+ 1 positions > capacity 12"):
        list(engine.generate(list(range(1, 9)), 10))
    with pytest.raises(KVCacheFull, match="capacity 12"):
        engine.prefill(list(range(13)))
    with pytest.raises(ValueError, match="does not fit"):
        engine.kv.restore(KVSnapshot(np.zeros((1, 2, 3, 4), np.float32),
                                     np.zeros((1, 2, 3, 4), np.float32), 3))
