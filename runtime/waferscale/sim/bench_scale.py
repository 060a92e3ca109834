"""Scale benchmark: compile, load and launch wall times of large programs.

Two programs, each through the path a user takes (``waferscale cslc``, then the program's
unmodified host script under ``waferscale cs_python``), every step in a fresh Python process
and with an empty compile cache of its own (host/cache.py) at the start:

``gemv``   csl/gemv on P x P PEs (default 128 x 128, 2048 x 2048 f16), as bench_sim.
``stack``  sim/programs/gemv_stack: R regions of W x H PEs stacked vertically, each the GEMV
           chain of csl/gemv_chain, linked region to region (default 30 regions of 48 x 12,
           576-long vectors, f16: 17,280 PEs, shaped like the decode program's layers); every
           PE gets the launch and most of them wait on the fabric most of the time.
``tiles``  sim/programs/tile_axpy: every PE of a W x H rectangle computes y = a x + y on its own
           data (default 100 x 100, 16 f32 per PE), up to the whole WSE-3 program rectangle
           (``--tiles 755x1170``, 883,350 PEs): the host copies reach every PE, the launch
           too, and no PE talks to another.

For each: the cold compile (empty cache), the first run (its load takes the compile's
elaboration from the cache and adds the engine's bytecode), the warm compile (unchanged
sources: nothing elaborated) and the warm run; per run the load (``SdkRuntime.load``: the
program, the simulator and the engine), the host copies, and the launch's wall time and
simulated cycles, as PE-cycles per second (cycles x PEs / wall seconds), and each step's
maximum resident set. ``--cold-only`` skips the warm steps (for the largest rectangles). The
host scripts check their results against NumPy.

    python -m waferscale.sim.bench_scale [--program gemv|stack|tiles|both] [--P 128]
        [--M 2048] [--regions 30] [--width 48] [--rows 12] [--n 576] [--tiles 100x100]
        [--tiles-n 16] [--f32] [--cold-only] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable


def _timed(record: dict[str, Any], label: str, owner: Any, name: str,
           after: Callable[[Any, dict[str, Any]], None] | None = None) -> None:
    """Wrap ``owner.name`` so that its calls add their wall seconds to ``record[label]``."""
    orig = getattr(owner, name)

    @functools.wraps(orig)
    def wrapper(self: Any, *a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return orig(self, *a, **k)
        finally:
            record[label] = record.get(label, 0.0) + time.perf_counter() - t0
            if after is not None:
                after(self, record)
    setattr(owner, name, wrapper)


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    """One step in this process: ``cslc`` or ``cs_python`` with ``spec["argv"]``."""
    from waferscale import cli
    from waferscale.host import sdkruntime
    from waferscale.sim import device, engine, simulator

    rec: dict[str, Any] = {}
    if spec["step"] == "run":
        _timed(rec, "load_s", sdkruntime.SdkRuntime, "load")
        _timed(rec, "simulator_s", simulator.Simulator, "__init__")
        _timed(rec, "lowering_s", engine.CompiledEngine, "build")
        _timed(rec, "memcpy_s", device.SimulatorDevice, "memcpy_h2d")
        _timed(rec, "memcpy_s", device.SimulatorDevice, "memcpy_d2h")
        orig = simulator.Simulator.launch

        def launch(self: Any, name: str, args: list) -> None:
            busy = sum(pe.stats.busy for pe in self.pes)
            c0, t0 = self.cycle, time.perf_counter()
            orig(self, name, args)
            rec["launch_s"] = time.perf_counter() - t0
            rec["launch_cycles"] = self.cycle - c0
            rec["pes"] = len(self.pes)
            rec["launch_busy"] = sum(pe.stats.busy for pe in self.pes) - busy
        setattr(simulator.Simulator, "launch", launch)   # noqa: B010 - patched for timing
    out = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.chdir(spec["cwd"]):
        rc = cli.main(spec["argv"])
    rec["step_s"] = time.perf_counter() - t0
    rec["max_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB
    rec["rc"] = rc
    rec["stdout"] = out.getvalue()[-400:]
    return rec


def _step(step: str, argv: list[str], cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run one step in a fresh process; its record plus the process's wall seconds."""
    with tempfile.NamedTemporaryFile("r", suffix=".json") as f:
        spec = {"step": step, "argv": argv, "cwd": str(cwd), "result": f.name}
        t0 = time.perf_counter()
        # This file run as the child's main module (so that another checkout's waferscale,
        # which may not have it, can be measured), with the process in the work directory.
        boot = f"import runpy; runpy.run_path({str(Path(__file__).resolve())!r}, " \
               "run_name='__main__')"
        p = subprocess.run([sys.executable, "-c", boot, "--child", json.dumps(spec)],
                           env=env, capture_output=True, text=True, cwd=cwd)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            raise SystemExit(f"{step} failed ({' '.join(argv)}):\n{p.stdout}\n{p.stderr}")
        rec = json.loads(Path(f.name).read_text())
    rec["process_s"] = wall
    if rec["rc"] != 0 or (step == "run" and "SUCCESS" not in rec["stdout"]):
        raise SystemExit(f"{step} failed ({' '.join(argv)}):\n{rec['stdout']}\n{p.stderr}")
    return rec


def bench(name: str, layout: Path, params: dict[str, Any], fabric: tuple[int, int],
          script: Path, import_path: Path | None, work: Path,
          runtime: Path | None = None, cold_only: bool = False) -> dict[str, Any]:
    """Cold compile, cold run, warm compile, warm run of one program (module docstring;
    ``cold_only``: the first two); ``runtime``: the directory holding the ``waferscale``
    package to run (default: this one), e.g. another checkout's, for before/after
    figures."""
    env = dict(os.environ)
    env["WAFERSCALE_CACHE_DIR"] = str(work / "cache")
    env.pop("WAFERSCALE_CACHE", None)
    env["PYTHONPATH"] = os.pathsep.join(      # that waferscale first, then this benchmark
        [str(runtime or Path(__file__).resolve().parents[2])]
        + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    out = work / "out"
    cslc = ["cslc", str(layout), "--arch=wse3", f"--fabric-dims={fabric[0]},{fabric[1]}",
            "--fabric-offsets=4,1", "--params=" + ",".join(f"{k}:{v}" for k, v in
                                                         params.items()),
            "-o", str(out), "--memcpy", "--channels=1"]
    if import_path is not None:
        cslc.append(f"--import-path={import_path}")
    run = ["cs_python", str(script), "--name", str(out)]
    steps = {"compile_cold": _step("compile", cslc, work, env),
             "run_cold": _step("run", run, script.parent, env)}
    if not cold_only:
        steps["compile_warm"] = _step("compile", cslc, work, env)
        steps["run_warm"] = _step("run", run, script.parent, env)
    runs = steps["run_cold" if cold_only else "run_warm"]
    return {"program": name, "params": params, "pes": runs["pes"],
            "launch_cycles": runs["launch_cycles"], "launch_busy": runs["launch_busy"],
            **{f"{k}_{f}": round(v[f], 3) for k, v in steps.items() for f in
               ("step_s", "process_s") if f in v},
            **{f"{k}_{f}": round(v[f], 3) for k, v in steps.items() if k.startswith("run")
               for f in ("load_s", "simulator_s", "lowering_s", "memcpy_s", "launch_s")
               if f in v},
            **{f"{k}_max_rss_gb": round(v["max_rss_gb"], 2) for k, v in steps.items()},
            "pe_cycles_per_s": runs["launch_cycles"] * runs["pes"] / runs["launch_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--program", choices=["gemv", "stack", "tiles", "both"], default="both",
                    help="both: gemv and stack")
    ap.add_argument("--P", type=int, default=128, help="gemv: P x P PEs")
    ap.add_argument("--M", type=int, default=2048, help="gemv: M x M matrix")
    ap.add_argument("--regions", type=int, default=30, help="stack: regions")
    ap.add_argument("--width", type=int, default=48, help="stack: PE columns")
    ap.add_argument("--rows", type=int, default=12, help="stack: PE rows per region")
    ap.add_argument("--n", type=int, default=576, help="stack: vector length (M1 = N = M2)")
    ap.add_argument("--tiles", default="100x100", help="tiles: WIDTHxHEIGHT PEs")
    ap.add_argument("--tiles-n", type=int, default=16, help="tiles: f32 elements per PE")
    ap.add_argument("--f32", action="store_true", help="f32 instead of f16 data")
    ap.add_argument("--cold-only", action="store_true",
                    help="only the cold compile and the first run")
    ap.add_argument("--runtime", type=Path, default=None,
                    help="run the waferscale package found in this directory (another "
                         "checkout's runtime/, for before/after figures)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.child:
        spec = json.loads(a.child)
        Path(spec["result"]).write_text(json.dumps(_child(spec)))
        return
    from waferscale.lang.cli import find_csl_root
    csl = find_csl_root()
    fp16 = 0 if a.f32 else 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if a.program in ("gemv", "both"):
            work = Path(tmp) / "gemv"
            shutil.copytree(csl / "gemv", work)
            rows.append(bench("gemv", work / "layout.csl",
                              {"P_c": a.P, "P_r": a.P, "M": a.M, "N": a.M, "fp16": fp16},
                              (a.P + 7, a.P + 2), work / "run.py", None, work, a.runtime,
                              a.cold_only))
        if a.program in ("stack", "both"):
            work = Path(tmp) / "stack"
            work.mkdir()
            src = Path(__file__).resolve().parent / "programs" / "gemv_stack"
            h = a.rows * a.regions
            rows.append(bench("stack", src / "layout.csl",
                              {"P_c": a.width, "P_r": a.rows, "R": a.regions, "M1": a.n,
                               "N": a.n, "M2": a.n, "fp16": fp16},
                              (a.width + 7, h + 2), src / "run.py", csl, work, a.runtime,
                              a.cold_only))
        if a.program == "tiles":
            work = Path(tmp) / "tiles"
            work.mkdir()
            src = Path(__file__).resolve().parent / "programs" / "tile_axpy"
            try:
                tw, th = (int(v) for v in a.tiles.lower().split("x"))
            except ValueError:
                raise SystemExit(f"--tiles takes WIDTHxHEIGHT, got {a.tiles!r}") from None
            rows.append(bench("tiles", src / "layout.csl",
                              {"width": tw, "height": th, "N": a.tiles_n},
                              (tw + 7, th + 2), src / "run.py", None, work, a.runtime,
                              a.cold_only))
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    for r in rows:
        def both(key: str, fmt: str = "7.2f", r: dict[str, Any] = r) -> str:
            """Cold and warm figures of ``key`` (``-`` for a warm step not run)."""
            warm = r.get(key.replace("cold", "warm"))
            return f"cold {r[key]:{fmt}}   warm " + ("      -" if warm is None
                                                     else f"{warm:{fmt}}")
        run = "run_cold" if a.cold_only else "run_warm"
        print(f"{r['program']} {r['params']}: {r['pes']} PEs")
        print(f"  compile  {both('compile_cold_step_s')} s   (processes "
              f"{both('compile_cold_process_s', '.2f')} s)")
        print(f"  load     {both('run_cold_load_s')} s   (simulator "
              f"{both('run_cold_simulator_s', '.2f')} s, of which lowering "
              f"{both('run_cold_lowering_s', '.2f')} s)")
        print(f"  max RSS  compile {both('compile_cold_max_rss_gb')} GB, run "
              f"{both('run_cold_max_rss_gb')} GB")
        print(f"  memcpy   {r[run + '_memcpy_s']:7.2f} s   ({run})")
        print(f"  launch   {r[run + '_launch_s']:7.2f} s   {r['launch_cycles']} cycles x "
              f"{r['pes']} PEs = {r['pe_cycles_per_s']:.3g} PE-cycles/s ("
              f"{r['launch_busy'] / r[run + '_launch_s']:.3g} busy PE-cycles/s)")
        cold = r["compile_cold_process_s"] + r["run_cold_process_s"]
        print(f"  cold compile + load {r['compile_cold_step_s'] + r['run_cold_load_s']:.2f} s;"
              f" processes: compile + run cold {cold:.2f} s" + (
                  "" if a.cold_only else
                  f", warm {r['compile_warm_process_s'] + r['run_warm_process_s']:.2f} s"))

if __name__ == "__main__":
    main()
