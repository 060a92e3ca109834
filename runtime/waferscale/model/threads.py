"""The reference decoder's BLAS thread policy.

NumPy's BLAS (OpenBLAS) starts one busy-waiting thread per core for every matrix product. The
decoder's products are small (a 135M model's decode step is a handful of matrix-vector
products), so extra threads gain little even on an idle machine, and on a busy one they fight
the other processes for the cores: measured on a loaded 2-core machine, SmolLM2-135M decodes
at 0.7-1.2 tok/s with OpenBLAS' default of 2 threads and at 5-7 tok/s with 1 (prefill of 6
tokens: 2.8-4.8 s against 0.5 s).

Policy: :func:`blas_limit` caps BLAS at :func:`blas_threads` threads while the decoder runs:
``WAFERSCALE_BLAS_THREADS`` if set (a positive integer, or ``0`` to leave BLAS alone),
otherwise 1. The cap applies only inside the ``with`` block, so code around the decoder keeps
the process' own setting.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

log = logging.getLogger(__name__)

ENV_VAR = "WAFERSCALE_BLAS_THREADS"
DEFAULT_BLAS_THREADS = 1


def blas_threads() -> int | None:
    """The thread cap for the decoder's BLAS calls (None: no cap). A malformed
    ``WAFERSCALE_BLAS_THREADS`` is reported once and the default used."""
    raw = os.environ.get(ENV_VAR)
    if raw is None or raw.strip() == "":
        return DEFAULT_BLAS_THREADS
    try:
        n = int(raw)
        if n < 0:
            raise ValueError
    except ValueError:
        _warn_bad_value(raw)
        return DEFAULT_BLAS_THREADS
    return n or None


@lru_cache(maxsize=None)
def _warn_bad_value(raw: str) -> None:
    log.warning("%s=%r is not a non-negative integer; using %d BLAS thread(s)", ENV_VAR, raw,
                DEFAULT_BLAS_THREADS)


@lru_cache(maxsize=1)
def _controller() -> Any:
    from threadpoolctl import ThreadpoolController
    return ThreadpoolController()


@contextlib.contextmanager
def blas_limit(threads: int | None = None) -> Iterator[None]:
    """Within the block, BLAS uses at most ``threads`` threads (default :func:`blas_threads`;
    None: unchanged)."""
    n = blas_threads() if threads is None else threads
    if not n:
        yield
        return
    with _controller().limit(limits=n, user_api="blas"):
        yield
