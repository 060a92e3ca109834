"""The ``waferscale`` command line.

Each concern registers its own subcommands: a module listed in :data:`COMMAND_MODULES` exposes
``register(subparsers)``, which adds parsers whose ``func(args) -> int`` runs the command.
User errors (:class:`~waferscale.lang.errors.CslError` and friends) are printed as
diagnostics and exit 1; a Python traceback means a bug in waferscale.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from waferscale import __version__
from waferscale.lang.errors import CslError

COMMAND_MODULES = [
    "waferscale.lang.cli",
    "waferscale.host.cli",
    "waferscale.kernels.bench",
    "waferscale.kernels.calibrate",
    "waferscale.model.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="waferscale",
        description="CSL front end, fabric simulator and decode runtime for the Cerebras WSE.")
    parser.add_argument("--version", action="version", version=f"waferscale {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG if args.verbose > 1 else logging.INFO,
                            format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CslError as err:
        print(err.render(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
