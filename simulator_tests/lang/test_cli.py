"""The front end's command line: exit codes and compiler-style diagnostics."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from waferscale.cli import main

DIAG = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): error: ", re.M)

GOOD = "const x: i16 = 3;\nfn f() void {}\n"
BAD = "const x: i16 = 3;\nfn f() void {\n  var y = ;\n}\n"


def test_parse_ok_and_error(tmp_path, capsys):
    good, bad = tmp_path / "good.csl", tmp_path / "bad.csl"
    good.write_text(GOOD)
    bad.write_text(BAD)
    assert main(["parse", str(good)]) == 0
    assert main(["parse", str(good), str(bad)]) == 1
    err = capsys.readouterr().err
    m = DIAG.search(err)
    assert m and m["path"] == str(bad) and m["line"] == "3"
    lines = err.splitlines()
    i = next(k for k, l in enumerate(lines) if DIAG.match(l))
    assert lines[i + 1].strip() == "var y = ;"
    # Source and caret lines are indented by two spaces; the caret sits under column `col`.
    assert lines[i + 2].index("^") == 2 + int(m["col"]) - 1
    assert "1 of 2 file(s) parsed" in err


def test_check_broken_layout_exits_1_with_caret(tmp_path, capsys):
    lay = tmp_path / "layout.csl"
    lay.write_text("layout {\n  @set_rectangle(2, 1);\n  @set_tile_code(0, 0, \"pe.csl\");\n"
                   "  @set_tile_code(5, 0, \"pe.csl\");\n}\n")
    (tmp_path / "pe.csl").write_text("var a: i16 = 0;\n")
    assert main(["check", str(lay)]) == 1
    err = capsys.readouterr().err
    assert f"{lay}:4:3: error: PE(5,0) is outside the 2x1 rectangle" in err
    assert "  ^~~" in err


def test_check_reports_layout(tmp_path, capsys):
    lay = tmp_path / "layout.csl"
    lay.write_text("param n: i16;\nlayout {\n  @set_rectangle(2, 1);\n"
                   "  for (@range(i16, 2)) |x| { @set_tile_code(x, 0, \"pe.csl\", .{ .n = n }); }\n"
                   "  @set_color_config(0, 0, @get_color(4), .{ .routes = .{ .rx = .{RAMP}, .tx = .{EAST} } });\n"
                   "  @set_color_config(1, 0, @get_color(4), .{ .routes = .{ .rx = .{WEST}, .tx = .{RAMP} } });\n}\n")
    (tmp_path / "pe.csl").write_text("param n: i16;\nvar a = @zeros([n]f32);\n")
    assert main(["check", str(lay), "--params=n:8", "--arch=wse2"]) == 0
    out = capsys.readouterr().out
    assert "rectangle: 2x1 PEs" in out
    assert "PE programs: 1" in out and "n=8" in out
    assert "color 4: 2 PE route(s)" in out
    assert "rx={WEST} tx={RAMP} at (1,0)" in out


def test_usage_errors_are_diagnostics(tmp_path, capsys):
    assert main(["check"]) == 1
    assert "nothing to check" in capsys.readouterr().err
    assert main(["parse", str(tmp_path / "missing.csl")]) == 1
    assert "missing.csl" in capsys.readouterr().err


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "waferscale", "--version"], capture_output=True,
                       text=True)
    assert r.returncode == 0 and r.stdout.startswith("waferscale ")


def test_check_all_on_repository_kernels(capsys):
    root = Path(__file__).resolve().parents[2]
    assert main(["check", "--all", "--root", str(root), "-q"]) == 0
    err = capsys.readouterr().err
    m = re.search(r"check --all: (\d+) passed, 0 failed", err)
    assert m and int(m[1]) >= 2       # every kernel, on both arches


def test_kernel_commands_join_continuation_lines(tmp_path):
    from waferscale.lang.cli import kernel_commands
    (tmp_path / "commands_wse3.sh").write_text(
        "#!/usr/bin/env bash\nset -e\ncslc --arch=wse3 ./layout.csl \\\n  --params=a:1,b:2 \\\n"
        "  --memcpy --channels 1 -o out\ncs_python run.py --name out\n")
    assert kernel_commands(tmp_path) == [["--arch=wse3", "./layout.csl", "--params=a:1,b:2",
                                          "--memcpy", "--channels", "1", "-o", "out"]]


def test_cslc_flags_default_to_wse2_as_cslc_does() -> None:
    """A WSE-2 script line without --arch must not build for WSE-3 (cslc's default is wse2)."""
    import argparse

    from waferscale.lang.cli import add_cslc_flags

    p = argparse.ArgumentParser()
    p.add_argument("layout")
    add_cslc_flags(p)
    assert p.parse_args(["layout.csl"]).arch == "wse2"
    assert p.parse_args(["layout.csl", "--arch=wse3"]).arch == "wse3"
