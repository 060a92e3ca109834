"""Every .csl file in csl/ parses, and every kernel layout elaborates with each cslc line of
its commands_*.sh (its documented default params), on the arch that line names."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from waferscale.lang.cli import add_cslc_flags, kernel_commands, options_from_args
from waferscale.lang.layout import elaborate
from waferscale.lang.parser import parse_file

CSL = Path(__file__).resolve().parents[2] / "csl"
FILES = sorted(CSL.rglob("*.csl"))
KERNELS = sorted(p.parent for p in CSL.glob("*/layout.csl"))


def test_there_are_kernels():
    assert KERNELS, f"no kernels under {CSL}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(CSL)))
def test_parses(path):
    assert parse_file(path).decls


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda p: p.name)
def test_elaborates_with_documented_params(kernel):
    cmds = kernel_commands(kernel)
    assert cmds, f"{kernel} has no cslc line in commands_*.sh"
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("layout")
    add_cslc_flags(parser)
    arches = set()
    for words in cmds:
        args = parser.parse_args(words)
        # From the kernel directory, as the script runs cslc (--import-path=.. is csl/).
        lay = elaborate(kernel / args.layout, options_from_args(args, cwd=kernel))
        assert lay.width * lay.height == len(lay.tiles)
        arches.add(args.arch)
    assert arches == {"wse2", "wse3"}
