"""Run a directory of SDK-style examples on waferscale and print a table of the results.

    python -m waferscale.host.run_examples DIR [DIR...] [--arch wse3,wse2] [--timeout 300]
        [--only NAME,...] [--json FILE]

Each example is a directory holding ``commands_wse3.sh`` and/or ``commands_wse2.sh`` (as in
the SDK's examples repository). The script runs each such file with ``bash`` in the example's
directory, with ``cslc`` and ``cs_python`` on ``PATH`` mapped to ``waferscale cslc`` and
``waferscale cs_python`` of the running interpreter (so ``PYTHONPATH`` chooses the checkout),
and reports per example and arch: ``SUCCESS`` (exit 0 and ``SUCCESS`` printed), ``PASS``
(exit 0 without the word), ``FAIL`` (non-zero exit) or ``TIMEOUT``, with the first error line.

Limits: examples run one after the other in place (their ``out`` directories are written next
to their sources, as the scripts say); a script's other commands (``python``, ``cp``...) run
as they are. The example directories are found by the ``commands_*.sh`` files anywhere under
the given directories.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ERROR_RE = re.compile(r"error|Error|assert|Traceback|FAIL", re.ASCII)


@dataclass
class Outcome:
    """One run of one ``commands_<arch>.sh``."""
    example: str
    arch: str
    result: str
    seconds: float
    first_error: str


def make_shims(bin_dir: Path) -> None:
    """Write ``cslc`` and ``cs_python`` into ``bin_dir``, each running waferscale's command."""
    py = shlex.quote(sys.executable)
    for name in ("cslc", "cs_python"):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec {py} -m waferscale {name} "$@"\n')
        shim.chmod(0o755)


def first_error(text: str) -> str:
    """The most telling line of a failed run's output: the first ``file:line:col: error``
    line, else the last line of a traceback, else the first line that mentions an error."""
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if ": error:" in ln:
            return ln.strip()
    for i, ln in enumerate(lines):
        if ln.startswith("Traceback"):
            tail = [x for x in lines[i + 1:] if not x.startswith(" ")]
            if tail:
                return tail[0].strip()
    for ln in lines:
        if ERROR_RE.search(ln):
            return ln.strip()
    return lines[-1].strip() if lines else ""


def run_one(script: Path, arch: str, bin_dir: Path, timeout: float, root: Path) -> Outcome:
    """Run one commands file in its directory and classify the result."""
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    name = str(script.parent.relative_to(root)) if script.parent != root else script.parent.name
    t0 = time.monotonic()
    try:
        proc = subprocess.run(["bash", script.name], cwd=script.parent, env=env,
                              capture_output=True, text=True, timeout=timeout,
                              start_new_session=True)
    except subprocess.TimeoutExpired:
        return Outcome(name, arch, "TIMEOUT", time.monotonic() - t0, f"> {timeout:g} s")
    secs = time.monotonic() - t0
    out = proc.stdout + "\n" + proc.stderr
    if proc.returncode == 0:
        result = "SUCCESS" if "SUCCESS" in proc.stdout else "PASS"
        return Outcome(name, arch, result, secs, "")
    return Outcome(name, arch, "FAIL", secs, first_error(proc.stderr) or first_error(out))


def find_scripts(dirs: list[Path], archs: list[str],
                 only: set[str]) -> list[tuple[Path, str, Path]]:
    """(commands file, arch, root) for every example under ``dirs``, sorted by path."""
    found = []
    for root in dirs:
        for arch in archs:
            for script in root.rglob(f"commands_{arch}.sh"):
                if only and script.parent.name not in only:
                    continue
                found.append((script, arch, root))
    return sorted(found, key=lambda t: (str(t[0].parent), t[1]))


def format_table(rows: list[Outcome]) -> str:
    """A plain-text table: example, arch, result, seconds, first error line (cut to 110)."""
    w = max([len("example"), *(len(r.example) for r in rows)])
    lines = [f"{'example':<{w}}  arch  {'result':<7}  {'secs':>6}  first error"]
    for r in rows:
        lines.append(f"{r.example:<{w}}  {r.arch}  {r.result:<7}  {r.seconds:6.1f}  "
                     f"{r.first_error[:110]}")
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        c = counts.setdefault(r.arch, {})
        c[r.result] = c.get(r.result, 0) + 1
    for arch, c in sorted(counts.items()):
        lines.append(f"{arch}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m waferscale.host.run_examples",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("dirs", nargs="+", type=Path)
    p.add_argument("--arch", default="wse3,wse2", help="comma-separated: wse3,wse2")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per script")
    p.add_argument("--only", default="", help="comma-separated example directory names")
    p.add_argument("--json", type=Path, help="also write the rows as JSON")
    a = p.parse_args(argv)
    archs = [x for x in a.arch.split(",") if x]
    only = {x for x in a.only.split(",") if x}
    scripts = find_scripts([d.resolve() for d in a.dirs], archs, only)
    if not scripts:
        print("run_examples: error: no commands_<arch>.sh found", file=sys.stderr)
        return 1
    rows: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="waferscale-shims-") as tmp:
        bin_dir = Path(tmp)
        make_shims(bin_dir)
        for script, arch, root in scripts:
            row = run_one(script, arch, bin_dir, a.timeout, root)
            log.info("%s %s %s", row.example, arch, row.result)
            print(f"{row.example} {arch} {row.result} {row.seconds:.1f}s {row.first_error[:110]}",
                  file=sys.stderr, flush=True)
            rows.append(row)
    print(format_table(rows))
    if a.json:
        a.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
