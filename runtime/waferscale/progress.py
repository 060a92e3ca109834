"""The one progress-bar helper: a tqdm bar on stderr, shown only on a terminal.

Used for model loading (tensors) and long simulations (cycles). Bars never go to stdout (which
carries results) and disappear when done (``leave=False``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any


def progress(iterable: Iterable[Any] | None = None, *, desc: str, unit: str,
             total: int | None = None, enabled: bool | None = None,
             delay: float = 0.0) -> Any:
    """A ``tqdm`` bar over ``iterable`` (or a manual one, advanced with ``.update(n)``).

    ``enabled=None`` shows it only when stderr is a terminal; a disabled bar iterates and
    updates silently. ``delay`` seconds pass before it first appears, so quick jobs stay
    quiet.
    """
    from tqdm import tqdm

    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(iterable, desc=desc, unit=unit, total=total, file=sys.stderr, leave=False,
                disable=not enabled, delay=delay)
