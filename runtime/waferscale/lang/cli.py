"""``waferscale parse`` and ``waferscale check``: the front end's command line.

Flag spellings follow cslc (``--arch=wse3``, ``--params=M:4,N:6``, ``--fabric-dims=11,3``,
``--fabric-offsets=4,1``, ``--memcpy``, ``--channels=1``, ``--colors=name:id``,
``--import-path``, ``--width-west-buf``/``--width-east-buf``), so a line from an example's
``commands_wse3.sh`` works after replacing ``cslc`` with ``waferscale check``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .errors import CslError, CslLayoutError


def _pairs(text: str) -> list[tuple[str, str]]:
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition(":")
        if not sep or not name or not value:
            raise argparse.ArgumentTypeError(f"expected name:value, got '{item}'")
        out.append((name.strip(), value.strip()))
    return out


def _xy(text: str) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y, got '{text}'") from None
    if a < 0 or b < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative X,Y, got '{text}'")
    return a, b


def add_cslc_flags(p: argparse.ArgumentParser, output_help: str | None = None) -> None:
    """The cslc flags shared by ``check`` and ``cslc``. ``-o`` is listed in the help only
    with ``output_help`` (``check`` accepts and ignores it, so cslc lines can be pasted)."""
    p.add_argument("--arch", choices=["wse2", "wse3"], default="wse2",
                   help="target architecture (default wse2, as cslc's)")
    p.add_argument("--params", type=_pairs, action="append", default=[],
                   metavar="NAME:VALUE,...", help="bind top-level params of the layout file")
    p.add_argument("--colors", type=_pairs, action="append", default=[],
                   metavar="NAME:ID,...", help="bind color params of the layout file")
    p.add_argument("--fabric-dims", type=_xy, metavar="W,H")
    p.add_argument("--fabric-offsets", type=_xy, metavar="X,Y")
    p.add_argument("--memcpy", action="store_true", help="enable the memcpy infrastructure")
    p.add_argument("--channels", type=int, default=0, help="memcpy I/O channels (1..16)")
    p.add_argument("--width-west-buf", type=int, default=0)
    p.add_argument("--width-east-buf", type=int, default=0)
    p.add_argument("--import-path", action="append", default=[], metavar="DIR")
    p.add_argument("-o", dest="output", default=None, metavar="OUT",
                   help=output_help if output_help else argparse.SUPPRESS)


def options_from_args(args: argparse.Namespace, cwd: Path | None = None):
    """CompileOptions from parsed cslc flags. A relative ``--import-path`` is relative to the
    directory cslc runs in: ``cwd`` when given (``check --all`` passes the kernel directory,
    where its ``commands_*.sh`` runs), else the process's working directory."""
    from .layout import CompileOptions
    import_paths = tuple(args.import_path) if cwd is None else tuple(
        str(cwd / p) for p in args.import_path)
    return CompileOptions(
        arch=args.arch,
        params=tuple(kv for group in args.params for kv in group),
        colors=tuple(kv for group in args.colors for kv in group),
        fabric_dims=args.fabric_dims, fabric_offsets=args.fabric_offsets,
        memcpy=args.memcpy, channels=args.channels,
        width_west_buf=args.width_west_buf, width_east_buf=args.width_east_buf,
        import_paths=import_paths)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("parse", help="check CSL files for syntax errors",
                       description="Parse CSL files (syntax only); exit 0 when all parse.")
    p.add_argument("files", nargs="+", metavar="FILE.csl")
    p.add_argument("--print", action="store_true", help="pretty-print the parsed files")
    p.set_defaults(func=run_parse)

    c = sub.add_parser("check", help="parse and elaborate a CSL program",
                       description="Parse and elaborate LAYOUT.csl with cslc's flags and print "
                       "the rectangle, the distinct PE programs and the routes.")
    c.add_argument("layout", nargs="?", metavar="LAYOUT.csl")
    c.add_argument("--all", action="store_true",
                   help="check every kernel in csl/ with the params of its commands_*.sh")
    c.add_argument("--root", type=Path, default=None,
                   help="repository root holding csl/ (default: found from the working dir)")
    c.add_argument("-q", "--quiet", action="store_true", help="print only errors and a summary")
    add_cslc_flags(c)
    c.set_defaults(func=run_check)


def run_parse(args: argparse.Namespace) -> int:
    from .parser import parse_file
    failed = 0
    for f in args.files:
        try:
            m = parse_file(f)
        except CslError as e:
            text = e.render()
            print(f"waferscale parse: {text}" if text.startswith("error: ") else text,
                  file=sys.stderr)
            failed += 1
            continue
        if args.print:
            from .printer import print_module
            sys.stdout.write(print_module(m))
    if len(args.files) > 1:
        print(f"{len(args.files) - failed} of {len(args.files)} file(s) parsed",
              file=sys.stderr)
    return 1 if failed else 0


def _report(lay, quiet: bool) -> None:
    from .layout import format_layout
    for w in lay.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for where, text in lay.prints:
        print(f"{where}: comptime_print: {text}", file=sys.stderr)
    if not quiet:
        print(format_layout(lay))


def run_check(args: argparse.Namespace) -> int:
    from .layout import elaborate
    if args.all:
        if args.layout:
            raise CslLayoutError("give either LAYOUT.csl or --all, not both")
        return check_all(args.root, args.quiet)
    if not args.layout:
        raise CslLayoutError("nothing to check: give LAYOUT.csl or --all")
    _report(elaborate(args.layout, options_from_args(args)), args.quiet)
    return 0


def find_csl_root(start: Path | None = None) -> Path:
    """The directory holding the kernels (``csl/``): searched upward from ``start`` (cwd),
    then the copy installed as package data (``waferscale/csl``, a non-editable install),
    then the repository's next to the package source (an editable install or a checkout)."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "csl").is_dir() and any((d / "csl").glob("*/layout.csl")):
            return d / "csl"
    return package_csl_dir()


def package_csl_dir() -> Path:
    """The kernels that come with this waferscale: the package data ``waferscale/csl`` of an
    installed (non-editable) package, else the repository's ``csl/`` next to the package source
    (an editable install or a checkout). It is the library path (``--import-path``) of a kernel
    directory copied elsewhere that imports a sibling kernel's module."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "csl", package.parents[1] / "csl"):
        if any(candidate.glob("*/layout.csl")):
            return candidate
    raise CslLayoutError("cannot find the csl/ kernel directory; run from the repository or "
                         "pass --root")


def kernel_commands(kernel_dir: Path) -> list[list[str]]:
    """The ``cslc`` command lines of a kernel's ``commands_wse*.sh`` (its documented defaults)."""
    cmds = []
    for script in sorted(kernel_dir.glob("commands_*.sh")):
        # Join backslash-continued lines, as the shell would.
        text = script.read_text().replace("\\\n", " ")
        for n, line in enumerate(text.splitlines(), 1):
            try:
                words = shlex.split(line, comments=True)
            except ValueError as e:
                raise CslLayoutError(f"{script}: cannot read a command line ({e})") from None
            if words and words[0] == "cslc":
                cmds.append(words[1:])
    return cmds


def check_all(root: Path | None, quiet: bool) -> int:
    from .layout import elaborate
    csl = (root / "csl") if root is not None else find_csl_root()
    layouts = sorted(csl.glob("*/layout.csl"))
    if not layouts:
        raise CslLayoutError(f"no kernels found under {csl}")
    parser = argparse.ArgumentParser(prog="cslc", add_help=False)
    parser.add_argument("layout")
    add_cslc_flags(parser)
    ok = failed = 0
    for lay_path in layouts:
        cmds = kernel_commands(lay_path.parent)
        if not cmds:
            print(f"{lay_path.parent}: error: no cslc line in commands_*.sh", file=sys.stderr)
            failed += 1
            continue
        for words in cmds:
            try:
                a = parser.parse_args(words)
            except SystemExit:
                print(f"{lay_path.parent}: error: bad cslc line: {shlex.join(words)}",
                      file=sys.stderr)
                failed += 1
                continue
            target = lay_path.parent / a.layout
            try:
                lay = elaborate(target, options_from_args(a, cwd=lay_path.parent))
            except CslError as e:
                print(e.render(), file=sys.stderr)
                failed += 1
                continue
            ok += 1
            if not quiet:
                print(f"== {shlex.join(['cslc', *words])}")
                _report(lay, quiet)
                print()
    print(f"check --all: {ok} passed, {failed} failed", file=sys.stderr)
    return 1 if failed else 0
