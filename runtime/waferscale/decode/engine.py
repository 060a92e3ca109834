"""The decode engine: a Llama model compiled, loaded and driven on the simulated wafer.

::

    engine = Engine.load(model_path, fabric="wse3", arch="wse3", context=1024)
    for token in engine.generate(prompt_ids, max_new_tokens=32, stop_ids=tok.stop_ids):
        ...
    snap = engine.kv.save()          # the sequence's KV cache on the host, exact
    engine.kv.restore(snap)          # ... and back, e.g. after another sequence ran
    engine.stats[-1]                 # the last step's cycles by phase, host I/O, wall time

Per step (docs/decode-runtime.md): one ``memcpy_h2d`` of the token's embedding row (f32 of
the f16-rounded row) into region 0's home row; one ``launch("step", pos)``, which unblocks
the command stream at once; for every streamed layer, in layer order, two streaming
``memcpy_h2d`` of its weight tiles into its slot (the other rows' two tiles, then the
attention rows' four), which the slot takes in as soon as it has finished with its previous
layer (double buffering: the other slot computes meanwhile); then one streaming
``memcpy_d2h`` of the token id, which arrives when the head region has it. Everything else
runs on the fabric. The host then reads the head region's stage timestamps (when the token
was produced) and, with ``profile`` on (the default), every region's, to split the step's
cycles by phase (:mod:`waferscale.decode.program`); those reads are not counted as the
step's host I/O.

Prompt processing runs on the wafer token by token (``prefill="wafer"``), or the
wafer-numerics reference computes the prompt's KV on the host and it is restored onto the
wafer (``prefill="host"``); both give the same cache bit for bit, hence the same tokens.

Limits: one sequence at a time on the wafer (others wait as
:class:`~waferscale.kv.KVSnapshot` on the host); the next step's first weight streams start
only at its launch (no prefetch across steps). On a runtime without our simulator
(:meth:`Engine.attach` to another device) there is no host-side cycle: the statistics carry
no launch or host I/O cycles, and the per-phase split (from the program's 32-bit stamps) is
meaningful only for steps that do not cross a 2^32-cycle boundary of the device's counter,
with the "start" phase undefined.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from waferscale.decode.program import (
    D2H_COLOR,
    H2D_COLOR,
    PHASES,
    STAGES,
    busy_cycles,
    compile_program,
    phase_cycles,
)
from waferscale.host import MemcpyDataType, MemcpyOrder
from waferscale.kv import WaferKV
from waferscale.plan.geometry import LayerGrid

log = logging.getLogger(__name__)

Prefill = Literal["wafer", "host"]

#: The default PE budget of a simulated decode (see :meth:`Engine.load`).
DEFAULT_MAX_PES = 12_288


@dataclass(frozen=True)
class StepStats:
    """One decode step on the simulated wafer.

    Attributes:
        pos: the token's position.
        launch_cycles: simulated cycles from the launch until the head region had the token
            id (the device's time for the step, weight streaming included).
        host_io_cycles: simulated cycles the host's embedding row and token id add to the
            step under the simulator's memcpy model: the embedding row's command, plus the
            token's way out after it was produced.
        phases: cycles per phase (:data:`~waferscale.decode.program.PHASES`), summed over the
            regions (and a slot's layers) along the step's critical path (each region's home
            PE); empty when the engine does not profile.
        stream_cycles: the step's weight streams under the simulator's memcpy model (each
            command's overhead plus its wavelets at the channels' rate: what they take when
            the slots are ready for them); 0 when every layer is resident.
        stall_cycles: the part of ``launch_cycles`` in which the step waited for weights
            (``launch_cycles`` minus the phases); only for profiled streaming steps.
        wall_seconds: host wall time of the step (simulation included).
    """

    pos: int
    launch_cycles: int
    host_io_cycles: int
    phases: dict[str, int] = field(default_factory=dict)
    stream_cycles: int = 0
    stall_cycles: int = 0
    wall_seconds: float = 0.0

    @property
    def compute_cycles(self) -> int:
        """The phases' sum: the step's critical path without its waits for weights."""
        return sum(self.phases.values())

    @property
    def overlap_cycles(self) -> int:
        """Streaming hidden behind computation: ``stream - stall`` (so ``launch = compute +
        stream - overlap``)."""
        return self.stream_cycles - self.stall_cycles


class Engine:
    """A model on the simulated wafer. Build with :meth:`load`."""

    def __init__(self, *, config: Any, grid: LayerGrid, arch: str, runtime: Any, device: Any,
                 embedding: np.ndarray, tokenizer: Any = None, wafer_weights: Any = None,
                 out_dir: Path | None = None, profile: bool = True) -> None:
        self.config = config
        self.grid = grid
        self.arch = arch
        self.runtime = runtime
        self.device = device
        self.embedding = embedding          # (vocab, d) uint16 f16 bits
        self.tokenizer = tokenizer
        self.wafer_weights = wafer_weights  # for prefill="host"
        self.out_dir = out_dir
        self.profile = profile
        self.model_path: Path | None = None  # where the weights come from (prefill="host")
        self.kv = WaferKV(runtime, grid)
        self.stats: list[StepStats] = []

    # ---- construction ----
    @classmethod
    def load(cls, model: str | Path | None = None, *, grid: LayerGrid | None = None,
             fabric: str = "wse3", arch: str | None = None, context: int | None = None,
             max_pes: int | None = DEFAULT_MAX_PES, progress: bool | None = None,
             profile: bool = True) -> Engine:
        """Load a GGUF model (default: the embedded SmolLM2-135M-Instruct), plan it on
        ``fabric`` (or use ``grid``), compile the decode program, and copy the weights on.

        ``max_pes`` caps the program's PEs (the planner picks the plan with the fewest modeled
        cycles per token within it): the simulator's wall time grows with the PEs it
        simulates, while a whole WSE-3 plan uses hundreds of thousands. ``None``: no cap.
        ``arch``: default the fabric preset's (else wse3).

        Raises:
            waferscale.plan.planner.PlanError: the model does not fit as asked.
        """
        from waferscale.model.gguf_loader import load_config, load_tokenizer, resolve_model_path
        from waferscale.plan.pack import load_packed

        path = resolve_model_path(model)
        config = load_config(path)
        if grid is None:
            grid, arch = _plan_grid(config, fabric, arch, context, max_pes)
        packed = load_packed(path, grid)
        engine = cls.from_packed(packed, arch=arch or "wse3", tokenizer=load_tokenizer(path),
                                 progress=progress, profile=profile)
        engine.model_path = path
        return engine

    @classmethod
    def from_packed(cls, packed: Any, *, arch: str = "wse3", tokenizer: Any = None,
                    wafer_weights: Any = None, progress: bool | None = None,
                    profile: bool = True, sim_engine: str | None = None) -> Engine:
        """Compile the program for ``packed.grid`` and copy ``packed``'s tiles on.

        ``sim_engine``: the simulator's PE model. Default: "compiled" when the C++ core is
        built (then a program it cannot lower is an error, not a silent fall-back to the
        ~100x slower Python interpreter), else "python" with a warning."""
        from waferscale.host import SdkRuntime
        from waferscale.sim.device import SimulatorDevice

        grid = packed.grid
        t0 = time.perf_counter()
        out_dir = compile_program(grid, arch)
        t1 = time.perf_counter()
        if sim_engine is None:
            try:
                from waferscale import _fabric  # noqa: F401
                sim_engine = "compiled"
            except ImportError:
                log.warning("no compiled simulator core (C++ extension): decoding on the "
                            "Python interpreter, about 100x slower")
                sim_engine = "python"
        device = SimulatorDevice.from_output_dir(out_dir, engine=sim_engine)
        runtime = SdkRuntime(str(out_dir), device=device)
        runtime.load()
        runtime.run()
        engine = cls.attach(runtime, packed, arch=arch, tokenizer=tokenizer,
                            wafer_weights=wafer_weights, progress=progress, profile=profile,
                            device=device)
        engine.out_dir = out_dir
        log.info("decode program: compile %.1f s, load + weights %.1f s",
                 t1 - t0, time.perf_counter() - t1)
        return engine

    @classmethod
    def attach(cls, runtime: Any, packed: Any, *, arch: str = "wse3", tokenizer: Any = None,
               wafer_weights: Any = None, progress: bool | None = None, profile: bool = True,
               device: Any = None) -> Engine:
        """Drive a program the caller compiled and loaded (an SDK host script's
        ``SdkRuntime``, ours or Cerebras'): copy ``packed``'s tiles on and return the engine.
        Without our simulator (``device=None``) the step statistics carry no cycle counts;
        the per-phase split still comes from the program's own timestamps."""
        engine = cls(config=packed.grid.config, grid=packed.grid, arch=arch, runtime=runtime,
                     device=device, embedding=packed.embedding, tokenizer=tokenizer,
                     wafer_weights=wafer_weights, profile=profile)
        engine._upload(packed, progress)
        return engine

    def _upload(self, packed: Any, progress: bool | None) -> None:
        """Copy the resident tiles and every region's norm gains and RoPE table on; keep the
        streamed layers' tiles as the per-step stream payloads."""
        g, c = self.grid, self.config
        H, W, n_kv = g.H, g.W, c.n_kv_heads
        jobs: list[tuple[str, np.ndarray, int, int, int]] = []   # name, array, y0, h, bits
        for layer in range(g.resident_layers):
            y0 = layer * H
            jobs += [("w_qkv", packed.qkv[layer], y0, n_kv, 16),
                     ("w_o", packed.o[layer], y0, n_kv, 16),
                     ("w_gu", packed.gate_up[layer], y0, H, 16),
                     ("w_down", packed.down[layer], y0, H, 16)]
        for region in range(g.regions):
            # A slot's home row holds the gains of each of its layers, one block after another.
            layers = list(g.region_layers(region))
            jobs += [("g_attn", np.concatenate([packed.attn_norm[l] for l in layers], -1)[None],
                      region * H, 1, 32),
                     ("g_ffn", np.concatenate([packed.ffn_norm[l] for l in layers], -1)[None],
                      region * H, 1, 32)]
        jobs += [("w_head", packed.head, g.head_row, g.H_head, 16),
                 ("g_out", packed.output_norm[None], g.head_row, 1, 32)]
        from waferscale.progress import progress as progress_bar
        for name, arr, y0, h, bits in progress_bar(jobs, desc="weights to the wafer",
                                                    unit="copy", enabled=progress):
            self._put(name, arr, 0, y0, W, h, bits)
        # RoPE inverse frequencies on every attention row's home column.
        from waferscale.decode.numerics import rope_inv_freq
        inv = rope_inv_freq(c.head_dim, c.rope_base)
        for region in range(g.regions):
            self._put("inv_freq", np.tile(inv, (n_kv, 1, 1)), g.root_x, region * H, 1, n_kv, 32)
        # The streamed layers' payloads, in pe.csl's order: w_gu, w_down on the rows below
        # the attention rows, then w_qkv, w_o, w_gu, w_down on the attention rows (whole
        # padded buffers, f16 bits). The home PE's command goes last, so that it is among
        # the last PEs of its slot to be ready (the stall itself comes from every PE's stamp).
        self._streams: list[tuple[int, list[tuple[int, int, np.ndarray]]]] = []
        for layer in range(g.resident_layers, c.n_layers):
            y0 = g.region(layer) * H
            cmds = []
            if H > n_kv:
                cmds.append((y0 + n_kv, H - n_kv,
                             np.concatenate([packed.gate_up[layer][n_kv:],
                                             packed.down[layer][n_kv:]], -1)))
            cmds.append((y0, n_kv, np.concatenate([packed.qkv[layer], packed.o[layer],
                                                   packed.gate_up[layer][:n_kv],
                                                   packed.down[layer][:n_kv]], -1)))
            self._streams.append((layer, cmds))

    def _put(self, name: str, arr: np.ndarray, x: int, y: int, w: int, h: int,
             bits: int) -> None:
        n = arr.shape[-1]
        words: np.ndarray
        if bits == 16:
            words = np.ascontiguousarray(arr).reshape(-1).astype(np.uint32)
            dt = MemcpyDataType.MEMCPY_16BIT
        else:
            words = np.ascontiguousarray(arr, dtype=np.float32).reshape(-1)
            dt = MemcpyDataType.MEMCPY_32BIT
        self.runtime.memcpy_h2d(self.runtime.get_id(name), words, x, y, w, h, n,
                                streaming=False, order=MemcpyOrder.ROW_MAJOR, data_type=dt,
                                nonblock=False)

    def _get_u16(self, name: str, x: int, y: int, w: int, h: int, n: int) -> np.ndarray:
        """``n`` 16-bit words of symbol ``name`` from each PE of the rectangle, row-major
        (each in the low half of a u32, as memcpy's 16-bit mode returns them)."""
        words = np.zeros(w * h * n, np.uint32)
        self.runtime.memcpy_d2h(words, self.runtime.get_id(name), x, y, w, h, n,
                                streaming=False, order=MemcpyOrder.ROW_MAJOR,
                                data_type=MemcpyDataType.MEMCPY_16BIT, nonblock=False)
        return words

    # ---- one step ----
    @property
    def cycle(self) -> int:
        """The simulator's clock (0 on a device without one)."""
        sim = getattr(self.device, "sim", None)
        return int(sim.cycle) if sim is not None else 0

    def step(self, token: int, *, read_token: bool = True) -> int | None:
        """Run ``token`` at the next position; returns the next token (greedy) or ``None``
        without ``read_token`` (prompt tokens whose successor is known)."""
        if not 0 <= token < self.config.vocab_size:
            raise ValueError(f"token id {token} outside the vocabulary "
                             f"0..{self.config.vocab_size - 1}")
        g = self.grid
        pos = self.kv.reserve(1)
        w0 = time.perf_counter()
        c0 = self.cycle
        self._put("x", self._row_form(token)[None], 0, 0, g.W, 1, 32)
        c1 = self.cycle
        self.runtime.launch("step", np.uint16(pos), nonblock=False)
        stream = 0
        for _layer, cmds in self._streams:
            for y0, h, payload in cmds:
                words = np.ascontiguousarray(payload).reshape(-1).astype(np.uint32)
                self.runtime.memcpy_h2d(H2D_COLOR, words, 0, y0, g.W, h, payload.shape[-1],
                                        streaming=True, order=MemcpyOrder.ROW_MAJOR,
                                        data_type=MemcpyDataType.MEMCPY_16BIT,
                                        nonblock=False)
                stream += self._command_cycles(words.size)
        # The token id always leaves the wafer (the step is over when it has); it is only
        # returned when asked for.
        out = np.zeros(1, np.uint32)
        self.runtime.memcpy_d2h(out, D2H_COLOR, g.root_x, g.head_row, 1, 1, 1,
                                streaming=True, order=MemcpyOrder.ROW_MAJOR,
                                data_type=MemcpyDataType.MEMCPY_32BIT, nonblock=False)
        c3 = self.cycle
        nxt = int(out[0]) if read_token else None
        head = self._stamps(g.regions, c1)
        done = int(head[0, STAGES.index("END") + 1])    # the head's home PE ended the step
        phases, stall = self._phases(head, c1) if self.profile else ({}, 0)
        launch = done - c1 if self.device is not None else 0
        self.stats.append(StepStats(pos=pos, launch_cycles=launch,
                                    host_io_cycles=(c1 - c0) + max(0, c3 - c1 - launch),
                                    phases=phases, stream_cycles=stream, stall_cycles=stall,
                                    wall_seconds=time.perf_counter() - w0))
        return nxt

    def _command_cycles(self, words: int) -> int:
        """One memcpy command of ``words`` wavelets under the simulator's memcpy model."""
        sim = getattr(self.device, "sim", None)
        return 0 if sim is None else int(sim.memcpy_cycles(words))

    def _row_form(self, token: int) -> np.ndarray:
        from waferscale.plan.pack import row_form
        return row_form(self.embedding[token].view(np.float16).astype(np.float32), self.grid.W)

    def _stamps(self, region: int, launch: int) -> np.ndarray:
        """Region ``region``'s stage-entry cycles of the last step, one row per layer it
        runs: ``(n, len(STAGES) + 1)`` int64, column k for stage k from ``X`` on (the program
        records those; the others are 0). ``launch``: the step's launch cycle, which the
        32-bit stamps are unwrapped against."""
        g = self.grid
        n_inst = len(g.region_layers(region)) if region < g.regions else 1
        first = STAGES.index("X") + 1
        n = 2 * (len(STAGES) + 1 - first)
        words = self._get_u16("tsc", g.root_x, region * g.H, 1, 1, n * n_inst)
        out = np.zeros((n_inst, len(STAGES) + 1), np.int64)
        out[:, first:] = _unwrap32(words.reshape(n_inst, -1, 2), launch)
        return out

    def _ready(self, region: int, launch: int) -> np.ndarray:
        """When slot ``region`` had all the weights of each of its layers in the last step:
        the latest of its PEs' ``wts`` stamps, one per layer it runs."""
        g = self.grid
        n = 2 * len(g.region_layers(region))
        words = self._get_u16("wts", 0, region * g.H, g.W, g.H, n)
        return _unwrap32(words.reshape(g.H * g.W, -1, 2), launch).max(axis=0)

    def _phases(self, head: np.ndarray, start: int) -> tuple[dict[str, int], int]:
        """Cycles per phase of the last step and its stall, from the regions' timestamps (the
        head region's ``head`` already read); ``start``: the launch's cycle.

        The step's critical path runs layer 0, ..., the last layer, the head. Each layer's
        time is its region's home PE's stages from its first norm to the end of its link;
        the gap from there to the next layer's first norm is the link's arrival. A streamed
        layer can start only when its whole slot has its weights: the time from the end of
        the previous layer (or the launch) until then is the stall, whichever stage the home
        PE was in meanwhile, and is taken out of those stages. The time from the launch to
        layer 0's first norm is the "start" phase. So the phases and the stall add up to the
        step from the launch to the head's end, exactly."""
        g, c = self.grid, self.config
        total = dict.fromkeys(PHASES, 0)
        per_region = [self._stamps(r, start) for r in range(g.regions)]
        ready = {r: self._ready(r, start) for r in range(g.resident_layers, g.regions)}
        chain = [per_region[g.region(l)][g.kv_index(l)] for l in range(c.n_layers)] + [head[0]]
        norm_at, end_at = (STAGES.index(n) + 1 for n in ("NORM1", "END"))
        stall = 0
        prev_end = start
        for i, stamps in enumerate(chain):
            # The stall window of layer i: [prev_end, ready) (empty unless streamed and late).
            window = (prev_end, prev_end)
            if i < c.n_layers and g.streamed(i):
                window = (prev_end, max(prev_end, int(ready[g.region(i)][g.kv_index(i)])))
            stall += window[1] - window[0]
            total["link" if i > 0 else "start"] += busy_cycles(prev_end, int(stamps[norm_at]),
                                                                window)
            for k, v in phase_cycles(stamps, head=i == c.n_layers, exclude=window).items():
                total[k] += v
            prev_end = int(stamps[end_at])
        return total, stall

    # ---- sequences ----
    def prefill(self, prompt_ids: Sequence[int], *, mode: Prefill = "wafer",
                progress: bool | None = None) -> int:
        """Process a prompt on an empty cache; returns the first generated token.
        ``progress``: a bar over the prompt's tokens on stderr (``None``: on a terminal)."""
        from waferscale.progress import progress as progress_bar

        if not prompt_ids:
            raise ValueError("the prompt has no tokens")
        self.kv.reset()
        if len(prompt_ids) > self.kv.capacity:
            self.kv.reserve(len(prompt_ids))   # raises KVCacheFull with the numbers
        if mode == "host":
            self._prefill_host(prompt_ids[:-1])
        else:
            for t in progress_bar(prompt_ids[:-1], desc="prompt on the wafer", unit="tok",
                                  enabled=progress):
                self.step(t, read_token=False)
        nxt = self.step(prompt_ids[-1])
        assert nxt is not None
        return nxt

    def _prefill_host(self, ids: Sequence[int]) -> None:
        from waferscale.decode.numerics import WaferNumerics
        from waferscale.kv import KVSnapshot
        if self.wafer_weights is None:
            if self.model_path is None:
                raise ValueError("prefill='host' needs the model's weights: pass "
                                 "wafer_weights to Engine.from_packed, or use Engine.load")
            from waferscale.model.gguf_loader import load_model
            from waferscale.plan.pack import wafer_weights
            self.wafer_weights = wafer_weights(load_model(self.model_path).weights)
        ref = WaferNumerics(self.config, self.wafer_weights, self.grid)
        cache = ref.new_cache()
        for pos, t in enumerate(ids):
            ref.step(t, pos, cache)
        n = len(ids)
        self.kv.restore(KVSnapshot(np.ascontiguousarray(cache.k[:, :, :n]),
                                   np.ascontiguousarray(cache.v[:, :, :n]), n))

    def generate(self, prompt_ids: Sequence[int], max_new_tokens: int, *,
                 stop_ids: Iterable[int] = (), prefill: Prefill = "wafer",
                 progress: bool | None = None) -> Iterator[int]:
        """Greedy decoding; yields each new token as it is produced (a stop token is yielded
        and ends the stream). The cache must hold the prompt plus the new tokens."""
        stops = set(stop_ids)
        if max_new_tokens <= 0:
            return
        token = self.prefill(prompt_ids, mode=prefill, progress=progress)
        produced = 1
        yield token
        while token not in stops and produced < max_new_tokens:
            nxt = self.step(token)
            assert nxt is not None
            token = nxt
            produced += 1
            yield token


def _unwrap32(words: np.ndarray, after: int) -> np.ndarray:
    """Cycles from the low 32 bits of ``<time>`` stamps (two 16-bit words, low first, each in
    the low half of a memcpy u32; last axis): the first such cycle at or after ``after``."""
    w = (np.asarray(words, dtype=np.uint32) & 0xFFFF).astype(np.int64)
    low = w[..., 0] | (w[..., 1] << 16)
    return after + ((low - after) % (1 << 32))


def _plan_grid(config: Any, fabric: str, arch: str | None, context: int | None,
               max_pes: int | None) -> tuple[LayerGrid, str]:
    from waferscale.plan.planner import PlanOptions, plan_model
    plan = plan_model(config, fabric=fabric, arch=arch, context=context,
                      options=PlanOptions(max_pes=max_pes))
    log.info("plan: %s, %d PEs, KV capacity %d", plan.grid, plan.pes_used, plan.kv_capacity)
    return plan.grid, plan.arch
