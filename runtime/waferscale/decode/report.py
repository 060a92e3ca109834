"""The per-token report of a decode on the simulated wafer (``generate --backend sim``).

Cycles are simulated cycles of the simulator's timing model (docs/timing-model.md: costs
calibrated against WaferLLM's WSE-3 measurements). Per phase they are the time each region's
home PE spends in the phase's stages, summed over the layers: the step's critical path runs
through every layer in turn, so the phases and the waits for streamed weights (the stall)
add up to the step. Weight streaming is the streamed layers' memcpy commands under the
simulator's memcpy model (a fixed command overhead plus the words at the channels' rate);
the part of it that is not stall ran while the wafer computed (the overlap). Host I/O is
the embedding row's command and the token id's way out; modeled tokens/s are given for the
device alone and with the host I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from waferscale.decode.engine import StepStats
from waferscale.decode.program import PHASES

#: Clocks the report converts cycles at: the simulator's default and WSE-3's reported peak.
CLOCKS_MHZ = (850.0, 1100.0)

_LABELS = {
    "attention": "attention (scores, softmax, V)",
    "gemv": "GEMVs (QKV, O, gate/up, down)",
    "norm": "RMSNorm (sum of squares, row reduction)",
    "elementwise": "elementwise (RoPE, SwiGLU, residual)",
    "link": "layer-to-layer links",
    "lm_head": "LM head",
    "argmax": "argmax",
    "start": "launch (and layer 0's RoPE tables)",
}


def mean_phases(stats: Sequence[StepStats]) -> dict[str, float]:
    """Mean cycles per phase over ``stats`` (which must all be profiled)."""
    n = max(len(stats), 1)
    return {p: sum(s.phases.get(p, 0) for s in stats) / n for p in PHASES}


def step_report(engine: Any, stats: Sequence[StepStats], *, prompt_tokens: int,
                load_seconds: float, total_seconds: float) -> str:
    """Text table: cycles per generated token by phase, modeled tok/s, wall time."""
    g = engine.grid
    L = g.config.n_layers
    where = "every layer resident"
    if g.stream_slots:
        where = (f"layers 0-{g.resident_layers - 1} resident, " if g.resident_layers else ""
                 ) + f"layers {g.resident_layers}-{L - 1} streamed through {g.stream_slots} slots"
    lines = [f"simulated {engine.arch.upper()}: {L} layers on a {g.W} x {g.rows} PE "
             f"rectangle (layer regions {g.W} x {g.H}, head region {g.W} x {g.H_head}), "
             f"{where}; KV capacity {g.kv_capacity} tokens"]
    if not stats:
        return "\n".join(lines)
    n = len(stats)
    launch = sum(s.launch_cycles for s in stats) / n
    host = sum(s.host_io_cycles for s in stats) / n
    lines.append(f"cycles per generated token (mean of {n} steps, simulated):")
    if stats[0].phases:
        ph = mean_phases(stats)
        for p in PHASES:
            share = 100.0 * ph[p] / launch if launch else 0.0
            lines.append(f"  {_LABELS[p]:<42} {ph[p]:>12,.0f}  {share:5.1f}%")
    stream = sum(s.stream_cycles for s in stats) / n
    stall = sum(s.stall_cycles for s in stats) / n
    if stream:
        share = 100.0 * stall / launch if launch else 0.0
        lines.append(f"  {'waiting for streamed weights (stall)':<42} {stall:>12,.0f}  "
                     f"{share:5.1f}%")
        lines.append(f"  {'weight streaming (memcpy, not all on the path)':<42} "
                     f"{stream:>12,.0f}")
        lines.append(f"  {'  of it overlapped with compute':<42} {stream - stall:>12,.0f}")
    else:
        lines.append(f"  {'weight streaming':<42} {0:>12,}    (every layer resident)")
    lines.append(f"  {'device total (launch to token id)':<42} {launch:>12,.0f}")
    lines.append(f"  {'host I/O (embedding in, token id out)':<42} {host:>12,.0f}")
    rates = []
    for mhz in CLOCKS_MHZ:
        dev = mhz * 1e6 / launch if launch else 0.0
        tot = mhz * 1e6 / (launch + host) if launch + host else 0.0
        rates.append(f"{dev:,.0f} tok/s device only, {tot:,.0f} with host I/O at "
                     f"{mhz / 1000:g} GHz")
    lines.append("modeled: " + "; ".join(rates))
    wall = sum(s.wall_seconds for s in stats) / n
    lines.append(f"wall: load {load_seconds:.1f} s, prompt {prompt_tokens} tokens + "
                 f"{n} new in {total_seconds:.1f} s, {wall:.2f} s per generated token")
    return "\n".join(lines)
