"""Benchmark of the decode engine on the simulated wafer: load time and time per token.

::

    python -m waferscale.decode.bench [--model PATH] [--fabric wse3] [--max-pes 12288]
                                      [--tokens 8] [--cold] [--json]

Reports, for one plan of the model: the time to pack the weights (or read them from the disk
cache), to compile the program (or take it from the compile caches), to build the simulator
and copy the weights on; then, for ``--tokens`` decode steps after a one-token prompt, the
wall seconds per step and the simulated cycles per step by phase (docs/decode-runtime.md: the
simulator's calibrated timing model, cycles at the region home PEs). ``--cold`` points every
cache (packed weights, compiled programs) at a fresh temporary directory first, so the figures
are those of a first run on a fresh machine. Wall times depend on the machine's load: run it
alone.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from typing import Any


def run(model: str | None, fabric: str, max_pes: int, tokens: int) -> dict[str, Any]:
    from waferscale.decode.engine import Engine
    from waferscale.decode.program import PHASES, compile_program
    from waferscale.decode.report import mean_phases
    from waferscale.model.gguf_loader import load_config, resolve_model_path
    from waferscale.plan.pack import load_packed
    from waferscale.plan.planner import PlanOptions, plan_model

    path = resolve_model_path(model)
    t0 = time.perf_counter()
    config = load_config(path)
    plan = plan_model(config, fabric=fabric, context=tokens + 2,
                      options=PlanOptions(max_pes=max_pes))
    t1 = time.perf_counter()
    packed = load_packed(path, plan.grid)
    t2 = time.perf_counter()
    compile_program(plan.grid, plan.arch)
    t3 = time.perf_counter()
    engine = Engine.from_packed(packed, arch=plan.arch, progress=False)
    t4 = time.perf_counter()
    list(engine.generate([1], tokens + 1))
    steps = engine.stats[1:]
    return {
        "model": path.name,
        "grid": f"W={plan.grid.W}, H={plan.grid.H}, H_head={plan.grid.H_head}, "
                f"slots={plan.grid.slots}",
        "pes": plan.pes_used,
        "seconds": {"config_and_plan": t1 - t0, "pack_or_cache": t2 - t1,
                    "compile_or_cache": t3 - t2, "simulator_and_weights": t4 - t3,
                    "load_total": t4 - t0},
        "wall_seconds_per_token": sum(s.wall_seconds for s in steps) / len(steps),
        "cycles_per_token": sum(s.launch_cycles for s in steps) / len(steps),
        "host_io_cycles_per_token": sum(s.host_io_cycles for s in steps) / len(steps),
        "phases": {p: round(v) for p, v in mean_phases(steps).items() if p in PHASES},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m waferscale.decode.bench",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--model")
    ap.add_argument("--fabric", default="wse3")
    ap.add_argument("--max-pes", type=int, default=12_288)
    ap.add_argument("--tokens", type=int, default=8)
    ap.add_argument("--cold", action="store_true",
                    help="fresh, empty caches (a first run on a fresh machine)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.cold:
            os.environ["WAFERSCALE_PACK_CACHE"] = os.path.join(tmp, "packed")
            os.environ["WAFERSCALE_CACHE_DIR"] = os.path.join(tmp, "programs")
            os.environ["TMPDIR"] = tmp
            tempfile.tempdir = None
            from waferscale.kernels import base
            base._CACHE = base.Path(tmp) / "waferscale-kernels"
        out = run(args.model, args.fabric, args.max_pes, args.tokens)
    out["cold"] = args.cold
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    s = out["seconds"]
    print(f"{out['model']} on {out['pes']} PEs ({out['grid']}), "
          f"{'cold' if args.cold else 'warm'} caches")
    print("load: " + ", ".join(f"{k} {v:.1f} s" for k, v in s.items()))
    print(f"decode: {out['wall_seconds_per_token']:.2f} s wall per token, "
          f"{out['cycles_per_token']:,.0f} simulated cycles per token "
          f"(+ {out['host_io_cycles_per_token']:,.0f} host I/O)")
    print("phases: " + ", ".join(f"{k} {v:,}" for k, v in out["phases"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
