"""``waferscale calibrate``: the timing model against cycles measured on a real WSE-3.

Runs our own programs of WaferLLM's MeshGEMV (csl/meshgemv) and MeshGEMM (csl/meshgemm) at the
sizes WaferLLM's fork measured on hardware (``wse3_measurements.json``, with its source), with
the same measurement protocol (mean over PEs of (end - start) / repeats), and prints simulated
against measured cycles with their ratio. The timing model's calibrated costs
(docs/timing-model.md) were fitted to the MeshGEMV rows only; the MeshGEMM rows are held out
(``held_out``) and reported as they come.

MeshGEMV columns never exchange data, so its cases run on a strip of ``STRIP`` columns of the
P x P grid (csl/meshgemv/README.md): the same per-iteration cycles, much faster. MeshGEMM runs
the whole grid; its P = 144 case (20,736 PEs) only with ``--large``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

STRIP = 1                 # MeshGEMV columns simulated (see the module docstring)
TOLERANCE = 0.25          # the MeshGEMV rows must be within +-25% of the measurement


@dataclass(frozen=True)
class Row:
    case: str
    simulated: float
    measured: float
    held_out: bool

    @property
    def ratio(self) -> float:
        return self.simulated / self.measured

    def as_dict(self) -> dict[str, Any]:
        return {"case": self.case, "simulated": round(self.simulated, 2),
                "measured": self.measured, "ratio": round(self.ratio, 3),
                "held_out": self.held_out}


def measurements() -> dict[str, Any]:
    """The hardware measurements shipped with the package (wse3_measurements.json)."""
    text = resources.files(__package__).joinpath("wse3_measurements.json").read_text()
    return json.loads(text)


def meshgemv_row(c: dict[str, Any], seed: int = 0) -> Row:
    from .meshgemv import MeshGemv
    P, M, N, G = c["P"], c["M"], c["N"], c["group_num"]
    k = MeshGemv(P, M // P, N // P, G, width=STRIP)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, M).astype(np.float16)
    W = rng.uniform(-1, 1, (M, N)).astype(np.float16)
    y, cycles = k.run(x, W, warmup=2, repeats=5)
    if not np.array_equal(y.view(np.uint16), k.reference(x, W).view(np.uint16)):
        raise AssertionError(f"meshgemv {c}: wrong result")
    return Row(f"meshgemv P={P} M={M} N={N} G={G}", cycles, c["cycles"], held_out=False)


def meshgemm_row(c: dict[str, Any], seed: int = 0) -> Row:
    from .meshgemm import MeshGemm
    P, M, K, N = c["P"], c["M"], c["K"], c["N"]
    k = MeshGemm(P, M // P, K // P, N // P)
    rng = np.random.default_rng(seed)
    A = rng.uniform(-1, 1, (M, K)).astype(np.float16)
    B = rng.uniform(-1, 1, (K, N)).astype(np.float16)
    C, cycles = k.run(A, B, warmup=1, repeats=1)
    if not np.array_equal(C.view(np.uint16), k.reference(A, B).view(np.uint16)):
        raise AssertionError(f"meshgemm {c}: wrong result")
    return Row(f"meshgemm P={P} M={M} K={K} N={N}", cycles, c["cycles"], held_out=True)


def run(large: bool = False, only: str | None = None) -> list[Row]:
    """Every calibration row (``only``: "meshgemv" or "meshgemm")."""
    data = measurements()
    rows = []
    if only in (None, "meshgemv"):
        rows += [meshgemv_row(c) for c in data["meshgemv"]["cases"]]
    if only in (None, "meshgemm"):
        rows += [meshgemm_row(c) for c in data["meshgemm"]["cases"]
                 if large or not c.get("large")]
    return rows


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="simulated vs measured WSE-3 cycles (MeshGEMV, MeshGEMM)",
                       description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print a JSON list of rows")
    p.add_argument("--large", action="store_true",
                   help="also the P = 144 MeshGEMM case (a 144 x 144 grid; minutes)")
    p.add_argument("--only", choices=["meshgemv", "meshgemm"], help="one kernel's rows")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    rows = run(args.large, args.only)
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=1))
    else:
        print(f"{'case':36} {'simulated':>10} {'measured':>10} {'ratio':>6}  held out")
        for r in rows:
            print(f"{r.case:36} {r.simulated:>10.1f} {r.measured:>10.1f} {r.ratio:>6.2f}  "
                  f"{'yes' if r.held_out else ''}")
    src = measurements()
    print("measured: real WSE-3 (" + "; ".join(src[k]["source"] for k in ("meshgemv", "meshgemm"))
          + "); simulated: PE cycles of the timing model, docs/timing-model.md", file=sys.stderr)
    off = [r for r in rows if not r.held_out and abs(r.ratio - 1) > TOLERANCE]
    if off:
        print(f"calibrate: {len(off)} MeshGEMV row(s) outside +-{TOLERANCE:.0%}: "
              + ", ".join(r.case for r in off), file=sys.stderr)
        return 1
    return 0
