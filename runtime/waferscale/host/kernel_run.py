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

import numpy as np

from waferscale.kernels.base import blocks
from waferscale.kernels.base import memcpy_words as to_memcpy_words

log = logging.getLogger(__name__)

__all__ = ["U_F16", "U_F32", "U_F64", "blocks", "check_error", "compile_params", "gamma",
           "host_args", "signed_magnitudes", "to_memcpy_words"]

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
