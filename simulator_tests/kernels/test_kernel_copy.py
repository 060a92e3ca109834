"""A kernel directory copied elsewhere on its own still compiles: the kernels that use a
sibling kernel's module import it from the library path (``--import-path``), never by a path
that escapes their directory. Copied alone, each compiles with its own ``cslc`` lines once
``--import-path=..`` names the package's csl directory, and fails with a ``file:line:col``
diagnostic (not a traceback) without any library path."""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

import pytest
from waferscale.cli import main
from waferscale.lang.cli import (add_cslc_flags, kernel_commands, options_from_args,
                                 package_csl_dir)

CSL = Path(__file__).resolve().parents[2] / "csl"

# kernel -> (the sibling module it imports, the importing file)
LIBRARY_USERS = {
    "attention": ("allreduce/allreduce.csl", "attention.csl"),
    "rmsnorm": ("allreduce/allreduce.csl", "rmsnorm.csl"),
    "gemv_chain": ("gemv/gemv.csl", "pe.csl"),
}
IMPORT = re.compile(r'@import_module\(\s*"([^"<][^"]*)"')


def test_the_package_csl_directory_holds_the_kernels() -> None:
    csl = package_csl_dir()
    for module, _ in LIBRARY_USERS.values():
        assert (csl / module).is_file()


@pytest.mark.parametrize("kernel", sorted(p.parent for p in CSL.glob("*/layout.csl")),
                         ids=lambda p: p.name)
def test_no_import_escapes_the_kernel_directory(kernel: Path) -> None:
    """Every file import is found in the kernel directory, or is a library import (a sibling
    kernel's module, found along --import-path=.. given on every cslc line)."""
    library = set()
    for f in sorted(kernel.glob("*.csl")):
        for spec in IMPORT.findall(f.read_text()):
            assert not Path(spec).is_absolute() and ".." not in Path(spec).parts, (f, spec)
            if not (kernel / spec).is_file():
                assert (CSL / spec).is_file(), (f, spec)
                library.add(spec)
    assert library == ({LIBRARY_USERS[kernel.name][0]} if kernel.name in LIBRARY_USERS
                       else set())
    for words in kernel_commands(kernel):
        assert ("--import-path=.." in words) == bool(library), words


def cslc_lines(kernel: Path) -> list[list[str]]:
    lines = kernel_commands(kernel)
    assert {w for words in lines for w in words if w.startswith("--arch=")} == {
        "--arch=wse2", "--arch=wse3"}
    return lines


@pytest.mark.parametrize("kernel", sorted(LIBRARY_USERS))
def test_copied_alone_compiles_with_the_library_path(kernel: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    app = tmp_path / kernel
    shutil.copytree(CSL / kernel, app, ignore=shutil.ignore_patterns("out", "__pycache__"))
    monkeypatch.chdir(app)
    library = f"--import-path={package_csl_dir()}"
    for words in cslc_lines(app):
        words = [library if w == "--import-path=.." else w for w in words]
        assert library in words
        assert main(["cslc", *words]) == 0, capsys.readouterr().err
        assert (app / "out" / "out.json").is_file()
        shutil.rmtree(app / "out")


@pytest.mark.parametrize("kernel", sorted(LIBRARY_USERS))
def test_copied_alone_without_the_library_path_is_a_diagnostic(
        kernel: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    module, importer = LIBRARY_USERS[kernel]
    app = tmp_path / kernel
    shutil.copytree(CSL / kernel, app, ignore=shutil.ignore_patterns("out", "__pycache__"))
    monkeypatch.chdir(app)
    # `..` is now the tmp directory, which holds no kernels: the same as no library path.
    for drop in (True, False):
        for words in cslc_lines(app):
            if drop:
                words = [w for w in words if w != "--import-path=.."]
            assert main(["cslc", *words]) == 1
            err = capsys.readouterr().err
            assert "Traceback" not in err
            first = err.splitlines()[0]
            assert re.fullmatch(rf"{re.escape(importer)}:\d+:\d+: error: cannot find module "
                                rf"'{re.escape(module)}' \(looked for .*\); pass the directory "
                                r"that holds it with --import-path", first), err
            assert not (app / "out").exists()


def test_check_all_takes_the_import_path_relative_to_the_kernel_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As cslc run by commands_*.sh from the kernel directory, whatever the working directory."""
    monkeypatch.chdir(tmp_path)
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("layout")
    add_cslc_flags(parser)
    args = parser.parse_args(["./layout.csl", "--import-path=..", "--import-path=/abs"])
    kernel = CSL / "rmsnorm"
    assert options_from_args(args, cwd=kernel).import_paths == (str(kernel / ".."), "/abs")
    assert options_from_args(args).import_paths == ("..", "/abs")
