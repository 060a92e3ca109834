"""``waferscale cslc`` and ``waferscale cs_python``: run an SDK example by prefixing its
commands with ``waferscale``.

``waferscale cslc LAYOUT.csl <cslc flags> -o OUT``
    Compile like cslc (same flags as ``waferscale check``; ``-o`` defaults to ``out``) and
    write the output directory (:mod:`waferscale.host.compile`). Warnings and
    ``@comptime_print`` output go to stderr; ``--verbose`` also prints the elaborated program.

``waferscale cs_python SCRIPT [ARGS...]``
    Run an SDK host script unmodified, as ``python SCRIPT ARGS...`` would (``__name__`` is
    ``"__main__"``, ``sys.argv`` is ``[SCRIPT, *ARGS]``, the script's directory is first on
    ``sys.path``), with the SDK's modules served by waferscale for the duration of the run:
    ``cerebras.sdk.runtime.sdkruntimepybind`` (:mod:`waferscale.host.sdkruntime`),
    ``cerebras.sdk.sdk_utils`` (:mod:`waferscale.host.sdk_utils`) and
    ``cerebras.sdk.debug.debug_util`` (:mod:`waferscale.host.debug_util`). Only this command
    installs them (in ``sys.modules``, restored afterwards), so an installed Cerebras SDK keeps
    working everywhere else; other ``cerebras.*`` modules are not available inside the run.
    The exit status is the script's. The device is chosen as described in
    :mod:`waferscale.host.sdkruntime` (``WAFERSCALE_DEVICE_FACTORY`` selects a different one).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import importlib
import logging
import runpy
import sys
import traceback
import types
from collections.abc import Iterator
from pathlib import Path

from waferscale.cli_util import CommandError, check_output_dir, check_output_file
from waferscale.lang.cli import add_cslc_flags, options_from_args

log = logging.getLogger(__name__)

# SDK module name -> the waferscale module that plays it under cs_python.
SDK_MODULES = {
    "cerebras.sdk.runtime.sdkruntimepybind": "waferscale.host.sdkruntime",
    "cerebras.sdk.sdk_utils": "waferscale.host.sdk_utils",
    "cerebras.sdk.debug.debug_util": "waferscale.host.debug_util",
}

_MISSING = object()


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser(
        "cslc", help="compile a CSL program for the simulator (cslc's flags)",
        description="Compile LAYOUT.csl with cslc's flags and write the output directory "
        "(-o OUT, default 'out'): out.json, bin/out_rpc.json and waferscale.json, which "
        "waferscale cs_python runs.")
    c.add_argument("layout", metavar="LAYOUT.csl")
    add_cslc_flags(c, output_help="output directory (default 'out'); an existing directory "
                   "is overwritten, an existing file is an error")
    c.add_argument("--verbose", dest="cslc_verbose", action="store_true",
                   help="print the elaborated program (as waferscale check does)")
    c.set_defaults(func=run_cslc)

    p = sub.add_parser(
        "cs_python", help="run an SDK host script (run.py) on the simulator",
        description="Run an SDK host script unmodified, with cerebras.sdk.runtime."
        "sdkruntimepybind, cerebras.sdk.sdk_utils and cerebras.sdk.debug.debug_util served by "
        "waferscale. Arguments after SCRIPT go to the script.")
    p.add_argument("--trace", metavar="FILE", help="write a Chrome trace (Perfetto) of the run")
    p.add_argument("--stats", metavar="FILE",
                   help="write per-PE counters (busy, stall, idle cycles, tasks run) as JSON")
    p.add_argument("--seed", type=int, default=0, help="seed of --random-task-order")
    p.add_argument("--random-task-order", action="store_true",
                   help="pick runnable tasks at random (flushes out order dependencies)")
    p.add_argument("--uninitialized-nan", action="store_true",
                   help="fill PE memory with NaN so reads of uninitialised data show up")
    p.add_argument("--max-cycles", type=int, default=None,
                   help="stop a host command that needs more simulated cycles than this")
    p.add_argument("--engine", choices=["auto", "compiled", "python"], default="auto",
                   help="run PE code compiled (fast) or on the Python interpreter (the "
                        "reference); auto: compiled unless the program needs the interpreter")
    p.add_argument("script", metavar="SCRIPT")
    p.add_argument("script_args", nargs=argparse.REMAINDER, metavar="ARGS")
    p.set_defaults(func=run_cs_python)


def _skip_exit_collection() -> None:
    """At exit, freeze the heap, so that the interpreter's final collection does not scan a
    large program's millions of objects (a second or more) only to end the process. Only at
    exit: nothing is kept from collection while the process runs."""
    global _EXIT_HOOK
    if not _EXIT_HOOK:
        _EXIT_HOOK = True
        atexit.register(gc.freeze)


_EXIT_HOOK = False


def run_cslc(args: argparse.Namespace) -> int:
    from waferscale.lang.layout import format_layout
    _skip_exit_collection()

    from .compile import compile_layout
    output = check_output_dir(args.output or "out", "-o")
    out, lay = compile_layout(args.layout, options_from_args(args), output)
    for w in lay.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for where, text in lay.prints:
        print(f"{where}: comptime_print: {text}", file=sys.stderr)
    if args.cslc_verbose:
        print(format_layout(lay))
    log.info("compiled %s into %s", args.layout, out)
    return 0


@contextlib.contextmanager
def sdk_modules() -> Iterator[None]:
    """Serve the SDK's host modules from waferscale inside the ``with`` block.

    Installs package stubs ``cerebras``, ``cerebras.sdk``, ``cerebras.sdk.runtime``,
    ``cerebras.sdk.debug`` and the modules of :data:`SDK_MODULES` in ``sys.modules``; on exit
    every one of those names is restored to what it was (or removed).
    """
    names: set[str] = set()
    for full in SDK_MODULES:
        parts = full.split(".")
        names.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    saved = {n: sys.modules.get(n, _MISSING) for n in names}
    try:
        for name in sorted(names, key=lambda n: n.count(".")):
            if name in SDK_MODULES:
                mod = importlib.import_module(SDK_MODULES[name])
            else:
                mod = types.ModuleType(name, f"waferscale stand-in for the SDK package {name}")
                mod.__path__ = []          # a package, so that submodule imports resolve
                mod.__package__ = name
            sys.modules[name] = mod
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(sys.modules[parent], child, mod)
        yield
    finally:
        for name, old in saved.items():
            if old is _MISSING:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old  # type: ignore[assignment]


@contextlib.contextmanager
def _script_env(script: Path, argv: list[str]) -> Iterator[None]:
    old_argv, old_path0 = sys.argv, list(sys.path)
    sys.argv = [str(script), *argv]
    sys.path.insert(0, str(script.resolve().parent))
    try:
        yield
    finally:
        sys.argv = old_argv
        sys.path[:] = old_path0


@contextlib.contextmanager
def _show_warnings() -> Iterator[None]:
    """Show waferscale's warnings on stderr while a script runs, unless logging is set up."""
    logger = logging.getLogger("waferscale")
    if logging.getLogger().handlers or any(
            not isinstance(h, logging.NullHandler) for h in logger.handlers):
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("waferscale: %(levelname)s: %(message)s"))
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _print_script_error(exc: BaseException) -> None:
    """Report a script's exception like Python does, without the frames of ``cs_python``
    itself. For a :class:`DeviceError` (a misuse of the host API, reported with a complete
    message) the frames inside waferscale are hidden too, so the trace ends at the script's
    line; any other exception keeps them (it may be a bug in waferscale). A CSL error found
    while loading (e.g. in code the engine folds at load time) is shown as the compiler shows
    one: ``file:line:col: error: ...`` with the source line and a caret."""
    from ..lang.errors import CslError
    from .device import DeviceError
    hidden = [str(Path(__file__).resolve()), str(Path(runpy.__file__).resolve())]
    if isinstance(exc, (DeviceError, CslError)):
        hidden.append(str(Path(__file__).resolve().parents[1]))
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith("<frozen runpy")
              and not str(Path(f.filename).resolve()).startswith(tuple(hidden))]
    out = sys.stderr
    if frames:
        out.write("Traceback (most recent call last):\n")
        out.write("".join(traceback.format_list(frames)))
    if isinstance(exc, CslError):
        out.write(exc.render() + "\n")
        return
    out.write("".join(traceback.format_exception_only(type(exc), exc)))


def run_cs_python(args: argparse.Namespace) -> int:
    _skip_exit_collection()
    script = Path(args.script)
    if not script.is_file():
        raise CommandError(f"cannot open script '{script}'")
    # Output paths are checked before the script runs, not after a long simulation.
    if args.trace:
        check_output_file(args.trace, "--trace")
    if args.stats:
        check_output_file(args.stats, "--stats")
    argv = list(args.script_args)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    from waferscale.sim.device import session
    sim_opts: dict = {"seed": args.seed, "random_task_order": args.random_task_order,
                      "uninitialized_nan": args.uninitialized_nan, "trace": bool(args.trace),
                      "engine": args.engine}
    if args.max_cycles is not None:
        sim_opts["max_cycles"] = args.max_cycles
    with session(sim_opts, args.trace, args.stats), sdk_modules(), _script_env(script, argv), \
            _show_warnings():
        try:
            runpy.run_path(str(script), run_name="__main__")
        except SystemExit as e:
            code = e.code
            if code is None:
                return 0
            if isinstance(code, int):
                return code
            print(code, file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - the script's error: report it, exit 1
            _print_script_error(e)
            return 1
    return 0
