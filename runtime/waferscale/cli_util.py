"""Helpers shared by the ``waferscale`` subcommands: the user-error exception and checks of
output paths made before any work is done.

A :class:`CommandError` is a mistake of the user's (a bad path, an empty prompt): ``waferscale``
prints it as one line, ``waferscale COMMAND: error: MESSAGE``, and exits 1. Usage errors (an
unknown flag, a missing argument) are argparse's, printed with the subcommand's usage, exit 2.
"""

from __future__ import annotations

import logging
import argparse
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

#: Exit status for a user error (a usage error exits 2, as argparse does).
EXIT_USER_ERROR = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A user error on the command line, reported as one line (exit 1)."""


def _existing_ancestor(path: Path) -> Path:
    for parent in path.absolute().parents:
        if parent.exists():
            return parent
    return Path(path.absolute().anchor)


def _check_writable_dir(directory: Path, what: str) -> None:
    """Raise :class:`CommandError` unless a file can be created in ``directory``."""
    if not directory.is_dir():
        raise CommandError(f"{what}: '{directory}' is not a directory")
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        raise CommandError(f"{what}: cannot write in '{directory}' "
                           f"({os.strerror(err.errno) if err.errno else err})") from None


def check_output_file(path: str | os.PathLike[str], what: str) -> Path:
    """Check that ``path`` can be written as a file (it may exist as a file; its directory
    must exist and be writable). ``what`` names the option in messages (``--trace``)."""
    p = Path(path)
    if p.is_dir():
        raise CommandError(f"{what}: '{p}' is a directory, expected a file name")
    if p.exists() and not os.access(p, os.W_OK):
        raise CommandError(f"{what}: '{p}' is not writable")
    parent = p.absolute().parent
    if not parent.exists():
        raise CommandError(f"{what}: directory '{parent}' does not exist")
    _check_writable_dir(parent, what)
    return p


def check_output_dir(path: str | os.PathLike[str], what: str) -> Path:
    """Check that ``path`` can be used as an output directory: an existing directory that is
    writable, or a new one whose nearest existing ancestor is a writable directory."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CommandError(f"{what}: '{p}' exists and is not a directory")
    _check_writable_dir(p if p.exists() else _existing_ancestor(p), what)
    return p


def positive_int(text: str) -> int:
    """argparse type: an integer > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value
