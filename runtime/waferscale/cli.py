"""The ``waferscale`` command line.

Each concern registers its own subcommands: a module listed in :data:`COMMAND_MODULES` exposes
``register(subparsers)``, which adds parsers whose ``func(args) -> int`` runs the command.
Exit status and wording are the same for every subcommand:

- a usage error (unknown flag, missing or malformed argument) prints the subcommand's usage and
  ``waferscale COMMAND: error: ...`` (argparse) and exits 2;
- a user error exits 1 with one line: ``waferscale COMMAND: error: ...`` for a
  :class:`~waferscale.cli_util.CommandError` or :class:`~waferscale.model.errors.ModelError`,
  or a compiler diagnostic ``file:line:col: error: ...`` (with the source line and a caret)
  for a :class:`~waferscale.lang.errors.CslError`.

A Python traceback means a bug in waferscale.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from waferscale import __version__
from waferscale.cli_util import EXIT_USAGE, EXIT_USER_ERROR, CommandError
from waferscale.lang.errors import CslError
from waferscale.model.errors import ModelError

COMMAND_MODULES = [
    "waferscale.lang.cli",
    "waferscale.host.cli",
    "waferscale.kernels.bench",
    "waferscale.kernels.calibrate",
    "waferscale.model.cli",
    "waferscale.plan.cli",
    "waferscale.appliance.server",
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


def _subparser(parser: argparse.ArgumentParser, command: str | None
               ) -> argparse.ArgumentParser:
    """The parser of subcommand ``command`` (``parser`` itself when there is none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]  # type: ignore[no-any-return]
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # Reported by the subcommand's parser, so that its usage (not the top level's) shows.
        _subparser(parser, args.command).error(f"unrecognized arguments: {' '.join(extra)}")
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG if args.verbose > 1 else logging.INFO,
                            format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except CslError as err:
        text = err.render()
        if text.startswith("error: "):      # no source location: say which command failed
            text = f"waferscale {args.command}: {text}"
        print(text, file=sys.stderr)
        return EXIT_USER_ERROR
    except (CommandError, ModelError) as err:
        print(f"waferscale {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130
