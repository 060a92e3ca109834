"""The ``waferscale`` command line's handling of user mistakes, across subcommands.

Every user error is one line ``waferscale COMMAND: error: ...`` on stderr and exit 1 (output
paths are checked before any work); a usage error prints the subcommand's own usage and exits
2; help text is plain (no reST/Markdown markup).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from waferscale.cli import build_parser, main

LAYOUT = """\
param M: i16;
const memcpy = @import_module("<memcpy/get_params>", .{ .width = 1, .height = 1 });
layout {
  @set_rectangle(1, 1);
  @set_tile_code(0, 0, "pe.csl", .{ .memcpy_params = memcpy.get_params(0), .M = M });
}
"""
PE = """\
param memcpy_params;
param M: i16;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
var y: [M]f32;
"""
FLAGS = ["--params=M:4", "--memcpy", "--channels=1"]
SUBCOMMANDS = ["parse", "check", "cslc", "cs_python", "bench", "generate"]


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "layout.csl").write_text(LAYOUT)
    (tmp_path / "pe.csl").write_text(PE)
    return tmp_path


def one_line_error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    """The run's stderr, checked to be a single ``waferscale COMMAND: error:`` line."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"waferscale {command}: error: "), err
    return lines[0]


def test_cslc_output_onto_an_existing_file(app: Path, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    target = app / "out"
    target.write_text("keep me")
    assert main(["cslc", str(app / "layout.csl"), *FLAGS, "-o", str(target)]) == 1
    line = one_line_error(capsys, "cslc")
    assert f"-o: '{target}' exists and is not a directory" in line
    assert target.read_text() == "keep me"


def test_cslc_output_below_a_file(app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (app / "plain").write_text("")
    target = app / "plain" / "out"
    assert main(["cslc", str(app / "layout.csl"), *FLAGS, "-o", str(target)]) == 1
    assert f"'{app / 'plain'}' is not a directory" in one_line_error(capsys, "cslc")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's read-only /proc")
def test_cslc_output_in_an_unwritable_place(app: Path, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    assert main(["cslc", str(app / "layout.csl"), *FLAGS, "-o", "/proc/waferscale-out"]) == 1
    assert "-o: cannot write in '/proc'" in one_line_error(capsys, "cslc")


def test_cslc_output_is_checked_before_compiling(app: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # A broken program and a bad -o: the -o error comes first, the program is not elaborated.
    (app / "pe.csl").write_text("var y: [M]f32 = ;\n")
    (app / "out").write_text("")
    assert main(["cslc", str(app / "layout.csl"), *FLAGS, "-o", str(app / "out")]) == 1
    assert "exists and is not a directory" in one_line_error(capsys, "cslc")


def test_cslc_into_an_existing_directory_works(app: Path, capsys: pytest.CaptureFixture[str]
                                               ) -> None:
    (app / "out").mkdir()
    assert main(["cslc", str(app / "layout.csl"), *FLAGS, "-o", str(app / "out")]) == 0
    assert (app / "out" / "out.json").is_file()


@pytest.fixture
def compiled(app: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``app`` compiled into ``app/out``, with the working directory in ``app`` and a script
    ``marker.py`` that records that it ran."""
    monkeypatch.chdir(app)
    assert main(["cslc", "layout.csl", *FLAGS, "-o", "out"]) == 0
    (app / "marker.py").write_text("open('ran', 'w').close()\n")
    return app


@pytest.mark.parametrize("flag", ["--trace", "--stats"])
def test_cs_python_output_is_a_directory(compiled: Path, flag: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["cs_python", flag, str(compiled), "marker.py"]) == 1
    line = one_line_error(capsys, "cs_python")
    assert f"{flag}: '{compiled}' is a directory, expected a file name" in line
    assert not (compiled / "ran").exists()


@pytest.mark.parametrize("flag", ["--trace", "--stats"])
def test_cs_python_output_is_unwritable(compiled: Path, flag: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["cs_python", flag, "marker.py/t.json", "marker.py"]) == 1
    assert f"{flag}: " in one_line_error(capsys, "cs_python")
    assert main(["cs_python", flag, "missing/t.json", "marker.py"]) == 1
    assert "does not exist" in one_line_error(capsys, "cs_python")
    assert not (compiled / "ran").exists()


def test_cs_python_runs_when_the_output_paths_are_good(compiled: Path) -> None:
    before = set(compiled.iterdir())
    assert main(["cs_python", "--stats", "s.json", "--trace", "t.json", "marker.py"]) == 0
    # The script ran, and the writability probes left nothing behind (the script creates no
    # device, so there are no counters or trace to write).
    assert set(compiled.iterdir()) - before == {compiled / "ran"}


def test_cs_python_missing_script_is_a_user_error(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cs_python", str(tmp_path / "nope.py")]) == 1
    assert "cannot open script" in one_line_error(capsys, "cs_python")


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_bad_flag_prints_the_subcommands_usage(command: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    args = {"parse": ["x.csl"], "check": ["x.csl"], "cslc": ["x.csl"], "cs_python": ["run.py"],
            "bench": [], "generate": ["hi"]}[command]
    with pytest.raises(SystemExit) as info:
        main([command, "--no-such-flag", *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: waferscale {command} ")
    assert f"waferscale {command}: error: unrecognized arguments: --no-such-flag" in err


def test_missing_argument_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["parse"])
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith("usage: waferscale parse ")


def test_unknown_param_warns_once_and_is_not_reported_bound(
        app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(app / "layout.csl"), *FLAGS, "--params=zz:1"]) == 0
    out, err = capsys.readouterr()
    assert err.count("zz") == 1 and err.startswith("warning: ") and "ignored" in err
    params_line = next(line for line in out.splitlines() if line.startswith("params: "))
    assert params_line == "params: M=4"


def test_cslc_help_lists_o(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["cslc", "--help"])
    assert "-o OUT" in capsys.readouterr().out


@pytest.mark.parametrize("command", [None, *SUBCOMMANDS])
def test_help_has_no_markup(command: str | None) -> None:
    parser = build_parser()
    if command is not None:
        from waferscale.cli import _subparser
        parser = _subparser(parser, command)
    text = parser.format_help()
    for mark in ("``", "`", ":class:", ":mod:", ":func:", "**"):
        assert mark not in text, (command, mark)


@pytest.mark.parametrize("argv, command, message", [
    (["check"], "check", "nothing to check: give LAYOUT.csl or --all"),
    (["check", "/nonexistent/layout.csl"], "check", "cannot find file"),
    (["parse", "/nonexistent/pe.csl"], "parse", "cannot read CSL file"),
])
def test_errors_without_a_source_location_name_the_command(
        argv: list[str], command: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 1
    assert message in one_line_error(capsys, command)


def test_unknown_bench_kernel_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "nosuch"]) == 2
    line = one_line_error(capsys, "bench")
    assert "unknown kernel(s) nosuch; known: allreduce, argmax" in line
