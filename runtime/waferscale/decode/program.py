"""The decode program ``csl/llama_decode``: its compile-time params, its compile, its phases.

:func:`program_params` turns a :class:`~waferscale.plan.geometry.LayerGrid` into the
``--params`` of ``csl/llama_decode/layout.csl``; :func:`compile_program` compiles it once per
(grid, arch) through the kernels' compile cache. :data:`STAGES` names the stages of
``pe.csl`` (its ``ST_*`` constants, in order) and :data:`STAGE_PHASE` the phase each one's
time is reported under; :func:`phase_cycles` turns the stage-entry timestamps the program
records on each region's home PE into cycles per phase.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from waferscale.plan.geometry import LayerGrid

log = logging.getLogger(__name__)

#: ``csl/<KERNEL>`` of the decode program.
KERNEL = "llama_decode"

#: The colors of memcpy's two streams (layout.csl's ``h2d_id``, ``d2h_id``): the streamed
#: weight tiles in, the token id out.
H2D_COLOR = 10
D2H_COLOR = 11

#: pe.csl's stages 1 .. ST_END, in order (stage k is ``STAGES[k - 1]``).
STAGES = (
    "WQKV", "WO", "WGU", "WDOWN",
    "X", "NORM1", "NORM1_HI", "NORM1_B", "XN1", "QKV_IN", "QKV", "QKV_HI", "QKV_B",
    "ATT", "ATT_HI", "ATT_B", "SM", "SM_HI", "SM_B", "O", "O_RES", "NORM2", "NORM2_HI",
    "NORM2_B", "XN2", "FFN_IN", "GU", "GU_HI", "GU_B", "DOWN", "DOWN_RES", "LINK", "ARG",
    "ARG_CMP", "END",
)

#: Phases of the per-token report, in report order. "start": from the launch to layer 0's
#: first norm (the launch, and the RoPE tables on layer 0's home PE).
PHASES = ("attention", "gemv", "norm", "elementwise", "link", "lm_head", "argmax", "start")

#: Where the time a region's home PE spends in a stage (from entering it to entering the
#: next) is reported. "X" is the wait for the previous layer's region (its time is counted
#: there), so it is not a phase of this region; nor are the waits for a streaming slot's
#: weights ("W*"), which the engine reports as the step's streaming stall. In the head
#: region the FFN stages are the LM head.
STAGE_PHASE: dict[str, str | None] = {
    "WQKV": None, "WO": None, "WGU": None, "WDOWN": None,
    "X": None,
    "NORM1": "norm", "NORM1_HI": "norm", "NORM1_B": "norm", "XN1": "norm",
    "QKV_IN": "gemv", "QKV": "gemv", "QKV_HI": "gemv",
    "QKV_B": "elementwise",       # RoPE on the home column, then the q, k, v multicast
    "ATT": "attention", "ATT_HI": "attention", "ATT_B": "attention", "SM": "attention",
    "SM_HI": "attention", "SM_B": "attention",
    "O": "gemv", "O_RES": "elementwise",
    "NORM2": "norm", "NORM2_HI": "norm", "NORM2_B": "norm", "XN2": "norm",
    "FFN_IN": "gemv", "GU": "gemv", "GU_HI": "gemv",
    "GU_B": "elementwise",        # SwiGLU on the home column, then the h multicast
    "DOWN": "gemv", "DOWN_RES": "elementwise",
    "LINK": "link",
    "ARG": "argmax", "ARG_CMP": "argmax",
    "END": None,
}


def program_params(grid: LayerGrid) -> dict[str, int]:
    """``--params`` of ``csl/llama_decode/layout.csl`` for ``grid``."""
    c = grid.config
    return {
        "L": c.n_layers, "D": c.hidden_size, "F": c.ffn_size, "H_kv": c.n_kv_heads,
        "G": c.group_size, "d": c.head_dim, "V": c.vocab_size,
        "eps_bits": int(np.float32(c.rms_eps).view(np.uint32)),
        "scale_bits": int(np.float32(1.0 / np.sqrt(c.head_dim)).view(np.uint32)),
        "W": grid.W, "H": grid.H, "H_head": grid.H_head, "S": grid.slots,
        "R": grid.resident_layers, "NS": grid.stream_slots,
        "h2d_id": H2D_COLOR, "d2h_id": D2H_COLOR,
    }


def compile_program(grid: LayerGrid, arch: str = "wse3") -> Path:
    """Compile the decode program for ``grid`` (cached per sources, grid and arch) with the
    memcpy channels the planner models (``--channels``, planner.DEFAULT_CHANNELS); returns
    the ``cslc`` output directory."""
    from waferscale.kernels.base import compiled
    from waferscale.plan.planner import DEFAULT_CHANNELS
    return compiled(KERNEL, arch, grid.W, grid.rows, program_params(grid),
                    channels=DEFAULT_CHANNELS)


def busy_cycles(a: int, b: int, window: tuple[int, int] = (0, 0)) -> int:
    """Cycles of ``[a, b)`` outside ``window`` (a half-open interval of cycles)."""
    return (b - a) - max(0, min(b, window[1]) - max(a, window[0]))


def phase_cycles(stamps: np.ndarray, head: bool, exclude: tuple[int, int] = (0, 0)
                 ) -> dict[str, int]:
    """Cycles per phase of one region's layer in one step, from its home PE's stage-entry
    times, without the cycles in ``exclude`` (a stall window, see the engine).

    ``stamps``: ``(len(STAGES) + 1,)`` int64 (one layer of a region), entry 0 unused, entry
    k the cycle at which stage k was entered. In the head region the GEMV stages are the LM
    head.
    """
    out = dict.fromkeys(PHASES, 0)
    for k, name in enumerate(STAGES[:-1], start=1):
        phase = STAGE_PHASE[name]
        if phase is None:
            continue
        if head and phase == "gemv":
            phase = "lm_head"
        out[phase] += busy_cycles(int(stamps[k]), int(stamps[k + 1]), exclude)
    return out
