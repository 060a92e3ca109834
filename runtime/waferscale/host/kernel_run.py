"""The host helper shared by the kernels' ``csl/<kernel>/run.py`` scripts.

One copy of what every script needs besides its own data flow: the command line (``--name``,
``--cmaddr``, as in Cerebras' examples), the compile params read from ``out.json``, the tiling
of ``total`` items over ``parts`` PEs (the same :func:`~waferscale.kernels.base.blocks` the
kernels' Python handles use), the memcpy word conversion, the unit roundoffs and Higham's
gamma for the error bounds, and the bound check that prints the worst error against its
allowance.

The scripts import it as ``from waferscale.host.kernel_run import ...``: under ``waferscale
cs_python`` it is always there; to run a script with Cerebras' own ``cs_python``, install
waferscale into that Python (``pip install waferscale``; only NumPy is needed at run time).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from waferscale.kernels.base import blocks
from waferscale.kernels.base import memcpy_words as to_memcpy_words

log = logging.getLogger(__name__)

__all__ = ["U_F16", "U_F32", "U_F64", "blocks", "check_error", "compile_params", "gamma",
           "host_args", "put_matrix_tiles", "put_row_tiles", "signed_magnitudes",
           "to_memcpy_words"]

#: Unit roundoff of the formats involved.
U_F16 = 2.0**-11
U_F32 = 2.0**-24
U_F64 = 2.0**-53


def gamma(n: int, u: float = U_F32) -> float:
    """Higham's gamma_n = n*u / (1 - n*u): the relative error bound of n roundings."""
    return n * u / (1.0 - n * u)


def signed_magnitudes(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random values with magnitude in [1/16, 1) and a random sign."""
    sign = rng.choice(np.array([-1.0, 1.0]), size=shape)
    return sign * rng.uniform(1.0 / 16.0, 1.0, size=shape)


def host_args(argv: list[str] | None = None,
              timed: tuple[int, int] | None = None) -> argparse.Namespace:
    """The SDK examples' command line: ``--name`` (the compile output directory) and
    ``--cmaddr`` (IP:port of a CS system; absent for a simulator). ``timed``: also
    ``--warmup`` and ``--repeats`` with these defaults, for kernels timed by WaferLLM's
    protocol (warmup, then timed iterations back to back)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", help="the test compile output dir")
    parser.add_argument("--cmaddr", help="IP:port for CS system")
    if timed is not None:
        parser.add_argument("--warmup", type=int, default=timed[0], help="untimed iterations")
        parser.add_argument("--repeats", type=int, default=timed[1], help="timed iterations")
    return parser.parse_args(argv)


def compile_params(name: str) -> dict[str, str]:
    """The ``--params`` the program was compiled with (``NAME/out.json``), as strings."""
    with open(Path(name) / "out.json", encoding="utf-8") as json_file:
        params: dict[str, str] = json.load(json_file)["params"]
    return params


def check_error(err: np.ndarray, allowed: np.ndarray | float, what: str) -> None:
    """Print the largest error and its allowance; fail (AssertionError, as the SDK examples
    do) if any element of ``err`` exceeds its bound."""
    allowed_max = float(np.max(allowed))
    print(f"max |{what}| = {float(np.max(err)):.3e}, max allowed = {allowed_max:.3e}")
    assert np.all(err <= allowed), f"|{what}| exceeds its floating-point error bound"


def put_matrix_tiles(runner: Any, symbol: int, W: np.ndarray, P_c: int, P_r: int, *,
                     order: Any, data_type: Any, transposed: bool = False, y0: int = 0) -> None:
    """Copy the tiles of matrix ``W`` into ``symbol`` of a ``P_c`` x ``P_r`` block of PEs whose
    top row is ``y0``: one blocking ``memcpy_h2d`` per group of PEs with equal tile sizes.

    ``transposed=False`` (csl/gemv's ``W``): W's rows spread over the PE rows and its columns
    over the PE columns; ``True`` (csl/gemv_chain's ``W2``): rows over the PE columns, columns
    over the PE rows. Each PE gets its m x n tile column-major; the data of a group is ordered
    [py][px][j][i], PE by PE (``order`` must be the SDK's ``MemcpyOrder.ROW_MAJOR``).
    ``order`` and ``data_type`` are the caller's SDK enums (this module does not import the
    SDK, so that a script runs under either cs_python)."""
    M, N = W.shape
    if not transposed:
        for py0, h, m, r0 in blocks(M, P_r):
            for px0, w, n, c0 in blocks(N, P_c):
                tiles = W[r0:r0 + h * m, c0:c0 + w * n].reshape(h, m, w, n).transpose(0, 2, 3, 1)
                runner.memcpy_h2d(symbol, to_memcpy_words(tiles), px0, y0 + py0, w, h, m * n,
                                  streaming=False, order=order, data_type=data_type,
                                  nonblock=False)
        return
    for px0, w, m, r0 in blocks(M, P_c):
        for py0, h, n, c0 in blocks(N, P_r):
            tiles = W[r0:r0 + w * m, c0:c0 + h * n].reshape(w, m, h, n).transpose(2, 0, 3, 1)
            runner.memcpy_h2d(symbol, to_memcpy_words(tiles), px0, y0 + py0, w, h, m * n,
                              streaming=False, order=order, data_type=data_type, nonblock=False)


def put_row_tiles(runner: Any, symbol: int, x: np.ndarray, P_c: int, *, order: Any,
                  data_type: Any, y: int = 0) -> None:
    """Copy vector ``x`` into ``symbol`` of the PEs of row ``y``, tiled over ``P_c`` PE
    columns as :func:`put_matrix_tiles` tiles a matrix's columns."""
    for px0, w, n, c0 in blocks(len(x), P_c):
        runner.memcpy_h2d(symbol, to_memcpy_words(x[c0:c0 + w * n]), px0, y, w, 1, n,
                          streaming=False, order=order, data_type=data_type, nonblock=False)
