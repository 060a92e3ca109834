"""Mutation fuzzing of the front end and the simulator: ``python -m waferscale.fuzz``.

::

    python -m waferscale.fuzz parser --budget 100000 --seed 1 --out fuzz-out
    python -m waferscale.fuzz layout --budget 10000 --seed 1
    python -m waferscale.fuzz sim --budget 1000 --seed 1

Seeds are the CSL files of ``csl/`` and of ``simulator_tests/`` (found from this package's
location in a source checkout, or given with ``--corpus DIR``). Each input is a seed mutated
by a few random edits (delete/duplicate/swap a span, insert a CSL token, replace a number by an
"interesting" one such as 0, -1, 0x7fff, 2^31 or 10^5000, splice in a piece of another seed).

Campaigns:

``parser``  ``parse_source`` on the mutant; when it parses, the printer's output must parse
            to the same AST (``printer-roundtrip`` finding otherwise).
``layout``  a kernel directory with one of its files mutated (or a mutated ``--params``
            value), elaborated with the kernel's own cslc flags (``commands_wse3.sh``).
``sim``     a small simulator test program with its PE file mutated, elaborated, then every
            exported function without parameters launched on the Python PE path
            (``--engine`` picks the path) with a cycle limit (20,000 cycles).

Outcomes per input: ``ok``, ``clean`` (a :class:`CslError`, or a :class:`DeviceError` such as
a SimError or a deadlock report: a diagnostic for the user), ``crash`` (any other exception)
or ``hang`` (the per-input time limit, a SIGALRM timer, ran out). Crashes are deduplicated by
site (exception type + innermost waferscale frame); each new site's input is minimized (greedy
line then character deletion keeping the same site, bounded) and saved as
``OUT/crash-<n>-<site>.csl`` with ``.txt`` holding the traceback; hangs are saved the same way
(``hang-<n>``). A clean error must render as ``path:line:col: error:`` when it has a location.

The result is a :class:`Report` (printed as a table by the command line). Everything is
deterministic for a given ``--seed`` (except which inputs hit the time limit on a loaded
machine).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import logging
import random
import re
import shutil
import signal
import sys
from typing import cast
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

CAMPAIGNS = ("parser", "layout", "sim")


class Hang(BaseException):
    """Raised by :func:`time_limit` in the main thread when the limit runs out (a
    BaseException so that ``except Exception`` in the code under test does not swallow it)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` if the block runs longer than ``seconds`` (SIGALRM, main thread
    on POSIX; elsewhere the block runs unguarded)."""
    usable = (hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def on_alarm(signum: int, frame: object) -> None:
        raise Hang(f"time limit of {seconds} s exceeded")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# -- corpus -----------------------------------------------------------------------------------


def default_corpus_root() -> Path | None:
    """The source checkout this package lives in (it has csl/ and simulator_tests/)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "csl").is_dir() else None


def seed_files(root: Path) -> list[Path]:
    files = sorted((root / "csl").rglob("*.csl")) + \
        sorted((root / "simulator_tests").rglob("*.csl"))
    return [f for f in files if f.stat().st_size < 200_000]


KERNEL_FLAGS = re.compile(r"^cslc\s+(?P<args>.*)$", re.M)


def kernel_dirs(root: Path) -> list[tuple[Path, list[str]]]:
    """Kernel directories of csl/ with the cslc flags of their commands_wse3.sh."""
    out = []
    for cmd in sorted((root / "csl").glob("*/commands_wse3.sh")):
        m = KERNEL_FLAGS.search(cmd.read_text())
        if m:
            out.append((cmd.parent, m["args"].split()))
    return out


# Small simulator test programs and params that keep one launch short.
SIM_PROGRAMS = {"single_pe_gemv": {"M": 3, "N": 2}, "send_recv": {"N": 3},
                "collectives": {"P": 2, "N": 2}, "buffers": {"W": 2, "H": 1}}

SIM_DSD_SEED = """param memcpy_params: comptime_struct;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
var y: [8]f32;
var z: [8]f16;
var acc: [1]f32;
var y_ptr: [*]f32 = &y;
const iq: input_queue = @get_input_queue(2);
const y_dsd = @get_dsd(mem1d_dsd, .{ .base_address = &y, .extent = 8, .stride = 1 });
const z_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{8} -> z[i] });
const a_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{8} -> acc[0] });
const m_dsd = @get_dsd(mem4d_dsd, .{ .tensor_access = |i,j|{2,4} -> y[4*i+j] });
fn sq(v: f32) f32 { return v * v; }
fn go() void {
  @fmovs(y_dsd, 1.5);
  @fadds(y_dsd, y_dsd, y_dsd);
  @fh2s(y_dsd, z_dsd);
  @fadds(a_dsd, a_dsd, y_dsd);
  @fmacs(m_dsd, m_dsd, y_dsd, 2.0);
  @map(sq, y_dsd, y_dsd);
  var d = @increment_dsd_offset(y_dsd, 1, f32);
  d = @set_dsd_length(d, 4);
  @fmovs(d, y_dsd);
  sys_mod.unblock_cmd_stream();
}
comptime {
  @export_symbol(y_ptr, "y");
  @export_symbol(go);
}
"""

SIM_DSD_LAYOUT = """\
const memcpy = @import_module("<memcpy/get_params>", .{ .width = 1, .height = 1 });
layout {
  @set_rectangle(1, 1);
  @set_tile_code(0, 0, "pe.csl", .{ .memcpy_params = memcpy.get_params(0) });
  @export_name("y", [*]f32, true);
  @export_name("go", fn()void);
}
"""

# -- mutation ---------------------------------------------------------------------------------

TOKENS = ("(", ")", "{", "}", "[", "]", ",", ";", ".", "=", "==", "+", "-", "*", "/", "%",
          "&", "|", "!", "<", ">", "<<", "->", ".{", "|i|{4} -> ", "if (true) ", "else ",
          "fn ", "task ", "var ", "const ", "param ", "comptime ", "return ", "while ",
          "for ", "@", "@fadds", "@fmovs", "@map", "@get_dsd", "@set_dsd_length",
          "@increment_dsd_offset", "@set_rectangle", "@set_tile_code", "@import_module",
          "@get_color", "@get_input_queue", "@as", "@range", "mem1d_dsd", "mem4d_dsd",
          "fabin_dsd", "fabout_dsd", ".extent = ", ".stride = ", ".offset = ",
          ".input_queue = ", ".base_address = ", "u16", "i16", "f32", "f16", "type",
          "color", "\"pe.csl\"", "\"<memcpy/memcpy>\"", "\n", " ", "//", "'", "\"", "\\")
NUMBERS = ("0", "1", "-1", "2", "3", "7", "8", "16", "24", "127", "128", "255", "256",
           "0x7fff", "0x8000", "0xffff", "65536", "100000", "2147483647", "2147483648",
           "4294967295", "-2147483648", "9223372036854775808", "1" + "0" * 40,
           "1" + "0" * 5000, "1.5", "-0.0", "1e308", "1e-400")
NUM_RE = re.compile(r"(?<![\w.])\d+(?:\.\d+)?")


class Mutator:
    """Random edits of CSL text (see the module docstring)."""

    def __init__(self, rng: random.Random, pool: list[str]) -> None:
        self.rng = rng
        self.pool = pool

    def mutate(self, text: str) -> str:
        for _ in range(self.rng.choice((1, 1, 2, 3, 4))):
            text = self.rng.choice(self.OPS)(self, text)
        return text

    def _span(self, text: str) -> tuple[int, int]:
        if not text:
            return 0, 0
        i = self.rng.randrange(len(text))
        return i, min(len(text), i + self.rng.choice((1, 1, 2, 4, 8, 32, 200)))

    def delete(self, text: str) -> str:
        i, j = self._span(text)
        return text[:i] + text[j:]

    def duplicate(self, text: str) -> str:
        i, j = self._span(text)
        reps = self.rng.choice((1, 1, 2, 10, 100))
        return text[:j] + text[i:j] * reps + text[j:]

    def insert_token(self, text: str) -> str:
        i = self.rng.randrange(len(text) + 1)
        return text[:i] + self.rng.choice(TOKENS) + text[i:]

    def number(self, text: str) -> str:
        ms = list(NUM_RE.finditer(text))
        if not ms:
            return self.insert_token(text)
        m = self.rng.choice(ms)
        return text[:m.start()] + self.rng.choice(NUMBERS) + text[m.end():]

    def splice(self, text: str) -> str:
        other = self.rng.choice(self.pool)
        i, j = self._span(other)
        k = self.rng.randrange(len(text) + 1)
        return text[:k] + other[i:j] + text[k:]

    def swap_lines(self, text: str) -> str:
        lines = text.split("\n")
        if len(lines) < 2:
            return text
        a, b = self.rng.randrange(len(lines)), self.rng.randrange(len(lines))
        lines[a], lines[b] = lines[b], lines[a]
        return "\n".join(lines)

    def nest(self, text: str) -> str:
        """Wrap an expression-ish span in many parentheses / if-types (deep nesting)."""
        i, j = self._span(text)
        n = self.rng.choice((10, 50, 200, 1000))
        wrap = self.rng.choice((("(", ")"), ("if (true) ", " else u16"), ("-", ""),
                                ("[*]", ""), (".{", "}")))
        return text[:i] + wrap[0] * n + text[i:j] + wrap[1] * n + text[j:]

    OPS: tuple[Callable[["Mutator", str], str], ...] = (
        delete, duplicate, insert_token, number, number, number, splice, swap_lines, nest)


# -- outcomes ---------------------------------------------------------------------------------


@dataclass
class Finding:
    kind: str                     # crash | hang
    site: str
    text: str
    detail: str
    file: str = "pe.csl"          # which file of the input the text is
    saved: Path | None = None


@dataclass
class Report:
    campaign: str
    seed: int
    inputs: int = 0
    ok: int = 0
    clean: int = 0
    crashes: int = 0
    hangs: int = 0
    sites: dict[str, Finding] = field(default_factory=dict)
    seconds: float = 0.0

    def row(self) -> str:
        return (f"| {self.campaign} | {self.inputs} | {self.ok} | {self.clean} | "
                f"{self.crashes} ({len([f for f in self.sites.values() if f.kind == 'crash'])}"
                f" sites) | {self.hangs} | {self.seconds:.0f} s |")

    def to_json(self) -> dict:
        return {"campaign": self.campaign, "seed": self.seed, "inputs": self.inputs,
                "ok": self.ok, "clean": self.clean, "crashes": self.crashes,
                "hangs": self.hangs, "seconds": round(self.seconds, 1),
                "sites": {k: {"kind": f.kind, "detail": f.detail.splitlines()[-1:],
                              "saved": str(f.saved) if f.saved else None}
                          for k, f in self.sites.items()}}


TABLE_HEAD = ("| campaign | inputs | ok | clean errors | crashes | hangs | time |\n"
              "|---|---|---|---|---|---|---|")

_DIAG = re.compile(r"^.+:\d+:\d+: error: ")


def crash_site(exc: BaseException) -> str:
    """Exception type + innermost frame inside waferscale (the dedup key)."""
    frames = traceback.extract_tb(exc.__traceback__)
    inner = [f for f in frames if "waferscale" in f.filename
             and Path(f.filename).name != "fuzz.py"] or frames[-1:]
    if not inner:
        return type(exc).__name__
    f = inner[-1]
    return f"{type(exc).__name__}@{Path(f.filename).name}:{f.lineno}"


def classify(run: Callable[[], None], limit_s: float) -> tuple[str, str, str]:
    """Run one input: (outcome, site, detail)."""
    from waferscale.host.device import DeviceError
    from waferscale.lang.errors import CslError
    try:
        with time_limit(limit_s):
            run()
    except Hang as h:
        return "hang", "hang", str(h)
    except CslError as e:
        text = e.render()
        if e.span is not None and e.span.file is not None and not _DIAG.match(text):
            return "crash", "unlocated-diagnostic", text
        return "clean", "", text.split("\n")[0]
    except DeviceError as e:
        return "clean", "", str(e).split("\n")[0]
    except RecursionError as e:
        return "crash", crash_site(e), traceback.format_exc()
    except Exception as e:  # noqa: BLE001 - every other exception is a finding
        return "crash", crash_site(e), traceback.format_exc()
    return "ok", "", ""


# -- targets ----------------------------------------------------------------------------------


class Target:
    """One campaign: picks a seed, builds an input, runs it."""
    name = ""

    def __init__(self, root: Path, rng: random.Random, workdir: Path) -> None:
        self.root = root
        self.rng = rng
        self.workdir = workdir

    def make(self, mutator: Mutator) -> tuple[str, object]:
        raise NotImplementedError

    def run(self, text: str, ctx: object) -> None:
        raise NotImplementedError


class ParserTarget(Target):
    name = "parser"

    def __init__(self, root: Path, rng: random.Random, workdir: Path) -> None:
        super().__init__(root, rng, workdir)
        self.seeds = [f.read_text(errors="replace") for f in seed_files(root)]

    def make(self, mutator: Mutator) -> tuple[str, object]:
        return mutator.mutate(self.rng.choice(self.seeds)), None

    def run(self, text: str, ctx: object) -> None:
        from waferscale.lang.parser import parse_source
        from waferscale.lang.printer import print_module
        tree = parse_source(text, "fuzz/pe.csl")
        printed = print_module(tree)
        again = parse_source(printed, "fuzz/printed.csl")
        try:
            same = again == tree         # dataclass equality; spans and paths not compared
        except RecursionError:
            return                       # too deep for Python's == (not a finding)
        if not same:
            raise PrinterMismatch("printer output parses to a different AST")


class PrinterMismatch(Exception):
    """The printer's output of a parsed module parses to a different AST."""


class LayoutTarget(Target):
    name = "layout"

    def __init__(self, root: Path, rng: random.Random, workdir: Path) -> None:
        super().__init__(root, rng, workdir)
        self.kernels = kernel_dirs(root)
        if not self.kernels:
            raise SystemExit(f"no csl/*/commands_wse3.sh under {root}")

    def make(self, mutator: Mutator) -> tuple[str, object]:
        kdir, flags = self.rng.choice(self.kernels)
        files = sorted(p.name for p in kdir.glob("*.csl"))
        if self.rng.random() < 0.2:
            flags = [self._mutate_params(f) for f in flags]
            name = "layout.csl"
            text = (kdir / name).read_text()
        else:
            name = self.rng.choice(files)
            text = mutator.mutate((kdir / name).read_text())
        return text, (kdir, name, flags)

    def _mutate_params(self, flag: str) -> str:
        if not flag.startswith("--params="):
            return flag
        items = flag[len("--params="):].split(",")
        k = self.rng.randrange(len(items))
        name = items[k].split(":")[0]
        items[k] = f"{name}:{self.rng.choice(NUMBERS)}"
        return "--params=" + ",".join(items)

    def run(self, text: str, ctx: object) -> None:
        from waferscale.lang.cli import add_cslc_flags, options_from_args
        from waferscale.lang.layout import elaborate
        kdir, name, flags = cast(tuple[Path, str, list[str]], ctx)
        work = self.workdir / "layout"
        if work.exists():
            shutil.rmtree(work)
        shutil.copytree(kdir, work, ignore=shutil.ignore_patterns("out", "*.py", "*.md"))
        (work / name).write_text(text)
        p = argparse.ArgumentParser(exit_on_error=False)
        add_cslc_flags(p)
        args, _ = p.parse_known_args([f for f in flags if f != "./layout.csl"])
        elaborate(work / "layout.csl", options_from_args(args))


class SimTarget(Target):
    name = "sim"

    def __init__(self, root: Path, rng: random.Random, workdir: Path,
                 engine: str = "python") -> None:
        super().__init__(root, rng, workdir)
        self.engine = engine
        progs = root / "simulator_tests" / "sim" / "programs"
        self.programs: list[tuple[str, dict[str, str], dict[str, int]]] = [
            ("dsd", {"pe.csl": SIM_DSD_SEED, "layout.csl": SIM_DSD_LAYOUT}, {})]
        for name, params in SIM_PROGRAMS.items():
            d = progs / name
            if d.is_dir():
                self.programs.append((name, {f.name: f.read_text() for f in d.glob("*.csl")},
                                      params))

    def make(self, mutator: Mutator) -> tuple[str, object]:
        name, files, params = self.rng.choice(self.programs)
        pe_files = sorted(f for f in files if f != "layout.csl")
        target = self.rng.choice(pe_files)
        return mutator.mutate(files[target]), (name, files, params, target)

    def run(self, text: str, ctx: object) -> None:
        from waferscale.lang.layout import CompileOptions, elaborate
        from waferscale.sim.device import SimulatorDevice
        from waferscale.sim.simulator import SimOptions
        _name, files, params, target = cast(
            tuple[str, dict[str, str], dict[str, int], str], ctx)
        work = self.workdir / "sim"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        for f, t in files.items():
            (work / f).write_text(text if f == target else t)
        opts = CompileOptions(params=tuple((k, str(v)) for k, v in params.items()),
                              memcpy=True, channels=1)
        lay = elaborate(work / "layout.csl", opts)
        # An endless task stops at the cycle limit (a clean SimError); 20,000 cycles keep that
        # well inside the per-input time limit on the Python PE path.
        dev = SimulatorDevice(lay, SimOptions(engine=self.engine, max_cycles=20_000,
                                              simprint_log=None))
        from waferscale.lang import types as T
        for name, info in lay.exports.items():
            if isinstance(info.type, T.FnT) and not info.type.params:
                dev.launch(name, [])


TARGETS: dict[str, type[Target]] = {"parser": ParserTarget, "layout": LayoutTarget,
                                    "sim": SimTarget}


# -- minimization and the campaign loop ----------------------------------------------------------


def minimize(text: str, still_fails: Callable[[str], bool], max_tries: int = 300) -> str:
    """Greedy deletion of lines, then of character chunks, keeping ``still_fails``."""
    tries = 0
    for unit in ("line", "chunk"):
        parts = text.split("\n") if unit == "line" else list(text)
        size = max(1, len(parts) // 2)
        while size >= 1 and tries < max_tries:
            i = 0
            changed = False
            while i < len(parts) and tries < max_tries:
                cand = parts[:i] + parts[i + size:]
                joined = "\n".join(cand) if unit == "line" else "".join(cand)
                tries += 1
                if cand and still_fails(joined):
                    parts = cand
                    changed = True
                else:
                    i += size
            if not changed:
                size //= 2
        text = "\n".join(parts) if unit == "line" else "".join(parts)
    return text


def run_campaign(campaign: str, budget: int, seed: int, *, out: Path | None = None,
                 time_limit_s: float = 5.0, root: Path | None = None,
                 minimize_tries: int = 200, engine: str = "python",
                 progress: Callable[[Report], None] | None = None) -> Report:
    """Fuzz ``campaign`` with ``budget`` inputs; see the module docstring."""
    root = root or default_corpus_root()
    if root is None:
        raise SystemExit("no corpus: run from a source checkout or pass --corpus DIR")
    rng = random.Random(seed)
    rep = Report(campaign, seed)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"wsfuzz-{campaign}-") as tmp:
        workdir = Path(tmp)
        if campaign == "sim":
            target: Target = SimTarget(root, rng, workdir, engine=engine)
        else:
            target = TARGETS[campaign](root, rng, workdir)
        pool = [f.read_text(errors="replace") for f in seed_files(root)]
        mutator = Mutator(rng, pool)
        logging.disable(logging.WARNING)
        try:
            for _ in range(budget):
                text, ctx = target.make(mutator)
                outcome, site, detail = classify(functools.partial(target.run, text, ctx),
                                                 time_limit_s)
                rep.inputs += 1
                if outcome == "ok":
                    rep.ok += 1
                elif outcome == "clean":
                    rep.clean += 1
                elif outcome == "crash":
                    rep.crashes += 1
                    _record(rep, target, "crash", site, text, ctx, detail, out, time_limit_s,
                            minimize_tries)
                else:
                    rep.hangs += 1
                    key = f"hang-{hashlib.sha1(text.encode()).hexdigest()[:8]}"
                    if len([k for k in rep.sites if k.startswith("hang")]) < 20:
                        _record(rep, target, "hang", key, text, ctx, detail, out,
                                time_limit_s, 0)
                if progress and rep.inputs % 1000 == 0:
                    progress(rep)
        finally:
            logging.disable(logging.NOTSET)
    rep.seconds = time.monotonic() - start
    return rep


def _record(rep: Report, target: Target, kind: str, site: str, text: str, ctx: object,
            detail: str, out: Path | None, limit_s: float, tries: int) -> None:
    if site in rep.sites:
        return
    if kind == "crash" and tries:
        def same(t: str) -> bool:
            o, s, _ = classify(lambda: target.run(t, ctx), limit_s)
            return o == "crash" and s == site
        text = minimize(text, same, tries)
    f = Finding(kind, site, text, detail)
    if isinstance(ctx, tuple) and len(ctx) >= 2 and isinstance(ctx[1], str):
        f.file = ctx[1]
    elif isinstance(ctx, tuple) and len(ctx) == 4:
        f.file = str(ctx[3])
    rep.sites[site] = f
    log.warning("%s %s: %s", kind, site, detail.strip().splitlines()[-1] if detail else "")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        n = len(rep.sites)
        stem = f"{rep.campaign}-{kind}-{n}-{re.sub(r'[^A-Za-z0-9_.]+', '_', site)[:60]}"
        f.saved = out / f"{stem}.csl"
        f.saved.write_text(text)
        ctx_desc = ""
        if isinstance(ctx, tuple):
            ctx_desc = "\n".join(str(c) for c in ctx if not isinstance(c, dict))
        (out / f"{stem}.txt").write_text(f"{kind} at {site}\nfile: {f.file}\n{ctx_desc}\n\n"
                                         f"{detail}\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m waferscale.fuzz",
                                 description="Mutation fuzzing of the parser, layout "
                                 "elaboration and the simulator.")
    ap.add_argument("campaign", choices=CAMPAIGNS + ("all",))
    ap.add_argument("--budget", type=int, default=1000, help="inputs per campaign")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("fuzz-out"),
                    help="directory for minimized reproducers (default fuzz-out)")
    ap.add_argument("--time-limit", type=float, default=5.0, help="seconds per input")
    ap.add_argument("--corpus", type=Path, default=None,
                    help="source checkout with csl/ and simulator_tests/")
    ap.add_argument("--engine", choices=["python", "compiled"], default="python",
                    help="PE path of the sim campaign")
    ap.add_argument("--max-memory-mb", type=int, default=4096,
                    help="address-space limit of this process (a runaway allocation becomes "
                    "a MemoryError crash instead of swapping); 0 for none")
    ap.add_argument("--minimize-tries", type=int, default=500,
                    help="runs spent minimizing each new crash site")
    ap.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.max_memory_mb:
        try:
            import resource
            lim = args.max_memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
        except (ImportError, ValueError, OSError) as e:
            log.warning("could not limit memory: %s", e)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    reports = []
    for c in (CAMPAIGNS if args.campaign == "all" else (args.campaign,)):
        def progress(r: Report) -> None:
            print(f"  {r.campaign}: {r.inputs} inputs, {r.clean} clean, {r.crashes} crashes, "
                  f"{r.hangs} hangs", file=sys.stderr, flush=True)
        reports.append(run_campaign(c, args.budget, args.seed, out=args.out,
                                    time_limit_s=args.time_limit, root=args.corpus,
                                    engine=args.engine, progress=progress,
                                    minimize_tries=args.minimize_tries))
    print(TABLE_HEAD)
    for r in reports:
        print(r.row())
    for r in reports:
        for site, f in r.sites.items():
            print(f"{r.campaign} {f.kind} {site}: {f.saved or '(not saved)'}")
    if args.json:
        args.json.write_text(json.dumps([r.to_json() for r in reports], indent=2) + "\n")
    return 1 if any(r.crashes or r.hangs for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
