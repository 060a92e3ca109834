"""Simulator throughput benchmark: simulated PE-cycles per wall-clock second.

Runs the repository's GEMV kernel (csl/gemv) on a P×P rectangle through the same path a user
takes (``waferscale cslc`` then the kernel's unmodified ``run.py`` under
``waferscale cs_python``), times the ``launch`` that does the work, and reports::

    PE-cycles/s = simulated cycles of the launch × PEs in the rectangle / wall seconds

run.py checks the result against NumPy, so a fast but wrong simulator cannot score.
``--engine`` picks the PE model (sim/engine.py); ``--compare`` also runs the Python
interpreter on the same program in the same process and reports the speed-up (both runs must
take the same number of simulated cycles).

    python -m waferscale.sim.bench_sim [--P 32] [--M 256] [--N 256] [--fp16] [--arch wse3]
                                       [--engine compiled|python|auto] [--compare]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import tempfile
import time
from pathlib import Path


def run(P: int, M: int, N: int, fp16: bool, arch: str, engine: str = "compiled") -> dict:
    from waferscale import cli
    from waferscale.lang.cli import find_csl_root
    from waferscale.sim import simulator as S

    src = find_csl_root() / "gemv"
    timings: list[tuple[int, int, float]] = []
    orig = S.Simulator.launch

    def timed_launch(self, name, args):
        t0 = time.perf_counter()
        c0 = self.cycle
        orig(self, name, args)
        timings.append((self.cycle - c0, len(self.pes), time.perf_counter() - t0))

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "gemv"
        shutil.copytree(src, work)
        cmd = ["cslc", str(work / "layout.csl"), f"--arch={arch}",
               f"--fabric-dims={P + 7},{P + 2}", "--fabric-offsets=4,1",
               f"--params=P_c:{P},P_r:{P},M:{M},N:{N},fp16:{int(fp16)}",
               "-o", str(work / "out"), "--memcpy", "--channels=1"]
        if cli.main(cmd) != 0:
            raise SystemExit("compile failed")
        setattr(S.Simulator, "launch", timed_launch)   # noqa: B010 - patched for timing
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.chdir(work):
                rc = cli.main(["cs_python", f"--engine={engine}", str(work / "run.py"),
                               "--name", str(work / "out")])
        finally:
            setattr(S.Simulator, "launch", orig)   # noqa: B010
        if rc != 0 or "SUCCESS" not in out.getvalue():
            raise SystemExit(f"run.py failed:\n{out.getvalue()}")
    cycles, pes, wall = timings[-1]
    return {"kernel": "gemv", "arch": arch, "grid": [P, P], "shape": [M, N], "engine": engine,
            "dtype": "f16" if fp16 else "f32", "cycles": cycles, "pes": pes,
            "wall_s": round(wall, 3), "pe_cycles_per_s": cycles * pes / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--P", type=int, default=32)
    ap.add_argument("--M", type=int, default=256)
    ap.add_argument("--N", type=int, default=256)
    ap.add_argument("--fp16", action="store_true")
    ap.add_argument("--arch", choices=["wse2", "wse3"], default="wse3")
    ap.add_argument("--engine", choices=["compiled", "python", "auto"], default="compiled")
    ap.add_argument("--compare", action="store_true",
                    help="also run the Python interpreter and report the speed-up")
    a = ap.parse_args()
    engines = [a.engine, "python"] if a.compare and a.engine != "python" else [a.engine]
    rows = [run(a.P, a.M, a.N, a.fp16, a.arch, e) for e in engines]
    for r in rows:
        print(f"gemv {a.M}x{a.N} {r['dtype']} on {a.P}x{a.P} PEs ({a.arch}, {r['engine']}): "
              f"{r['cycles']} simulated cycles x {r['pes']} PEs in {r['wall_s']} s = "
              f"{r['pe_cycles_per_s']:.3g} PE-cycles/s")
    if len(rows) == 2:
        if rows[0]["cycles"] != rows[1]["cycles"]:
            raise SystemExit("the two engines disagree on the cycle count")
        print(f"speed-up over the Python interpreter: "
              f"{rows[0]['pe_cycles_per_s'] / rows[1]['pe_cycles_per_s']:.0f}x")


if __name__ == "__main__":
    main()
