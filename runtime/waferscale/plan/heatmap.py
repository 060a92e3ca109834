"""A picture of a plan: bytes used on every PE of its program rectangle, with the regions.

:func:`draw` writes a PNG (or any format matplotlib infers from the file name). matplotlib is
an optional dependency (the ``plot`` extra); without it :func:`draw` raises
:class:`HeatmapUnavailable` (an ``ImportError``) with a one-line message saying how to get it.
The figure is built with matplotlib's object API (no pyplot, no global backend change).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from waferscale.plan.planner import Plan

log = logging.getLogger(__name__)

#: How to install what :func:`draw` needs.
INSTALL_HINT = "pip install 'waferscale[plot]' (or: pip install matplotlib)"


class HeatmapUnavailable(ImportError):
    """matplotlib is not installed."""


def draw(plan: Plan, path: str | Path) -> Path:
    """Draw ``plan``'s per-PE memory use (bytes, 0 .. the PE's SRAM) over its rectangle, one
    pixel per PE, with a line under every region and its name at the left; returns ``path``.

    Raises:
        HeatmapUnavailable: matplotlib is missing.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise HeatmapUnavailable(f"--heatmap needs matplotlib: {INSTALL_HINT}") from None
    grid = plan.memory_grid()
    rows, cols = grid.shape
    height = min(max(4.0, 8.0 * rows / max(cols, 1)), 14.0)
    fig = Figure(figsize=(8.0, height), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="viridis",
                   vmin=0, vmax=plan.options.pe_bytes)
    fig.colorbar(im, ax=ax, label=f"bytes per PE (of {plan.options.pe_bytes}, "
                                  + (f"{plan.options.reserve_bytes} reserved)"
                                     if plan.options.reserve_bytes is not None
                                     else "code and fixed data per PE role reserved)"))
    labels: list[tuple[int, int, str]] = []
    for p in plan.layers:
        if p.resident:
            labels.append((p.region.y0, p.region.h, f"L{p.layer}"))
    for s in plan.stream_regions:
        for b in (0, 1):
            r = s.buffers[b]
            labels.append((r.y0, r.h, f"S{s.index}.{b} ({len(s.layers[b])} layers)"))
    labels.append((plan.head.y0, plan.head.h, "head"))
    many = len(labels) > 40
    for y0, h, text in labels:
        ax.axhline(y0 + h - 0.5, color="white", linewidth=0.3)
        if not many or text == "head" or text.startswith("S"):
            ax.text(-0.01 * cols, y0 + h / 2 - 0.5, text, ha="right", va="center", fontsize=6)
    c = plan.config
    ax.set_title(f"{c.n_layers} layers, W={plan.grid.W} H={plan.grid.H} "
                 f"H_head={plan.grid.H_head} slots={plan.grid.slots} on {plan.fabric.name} "
                 f"({len(plan.streamed_layers)} streamed)", fontsize=8)
    ax.set_xlabel("program column")
    ax.set_ylabel("program row")
    out = Path(path)
    fig.savefig(out, dpi=150)
    log.info("heatmap of %dx%d PEs written to %s", cols, rows, out)
    return out
