"""Front-end forms the SDK's examples use (issue 11): the `{}` void value, the void value of a
memcpy stream that `<memcpy/get_params>` was not given, params that are never bound nor
used, and the example runner (`waferscale.host.run_examples`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from waferscale.host import run_examples
from waferscale.lang import types as T
from waferscale.lang.comptime import EvalOptions, instantiate_source
from waferscale.lang.errors import CslError
from waferscale.lang.layout import CompileOptions, elaborate
from waferscale.lang.parser import parse_file
from waferscale.lang.printer import print_module

REPO = Path(__file__).resolve().parents[2]


def test_empty_block_is_the_void_value(tmp_path):
    src = ("param A = {};\nconst b: void = {};\nconst r = @type_of(A) == void and "
           "@type_of(b) == void;\nfn f(x: anytype) void { }\nfn g() void { f({}); }\n")
    ip, mod = instantiate_source(src, path="t.csl", options=EvalOptions(arch="wse3"))
    r = ip.global_value(mod, "r", None)
    assert r.type == T.BOOL and r.v is True
    assert ip.global_value(mod, "A", None).type == T.VOID
    p = tmp_path / "v.csl"
    p.write_text(src)
    tree = parse_file(p)
    p.write_text(print_module(tree))
    assert parse_file(p) == tree                 # the printer round-trips `{}`


LAYOUT = """
param h2d: u16;
const memcpy = @import_module("<memcpy/get_params>", .{ .width = 1, .height = 1,
                                                       .MEMCPYH2D_1 = h2d });
layout {
  @set_rectangle(1, 1);
  @set_tile_code(0, 0, "pe.csl", .{ .memcpy_params = memcpy.get_params(0) });
}
"""

PE = """
param memcpy_params;
param never_bound: u16;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
const given = @type_of(memcpy_params.MEMCPYH2D_1) != void;
const absent = @type_of(memcpy_params.MEMCPYH2D_2) == void;
var flags = [2]bool { given, absent };
fn use() void { flags[0] = true; }
"""


@pytest.mark.parametrize("arch", ["wse2", "wse3"])
def test_unset_memcpy_stream_is_void_and_unused_param_is_not_bound(tmp_path, arch):
    (tmp_path / "layout.csl").write_text(LAYOUT)
    (tmp_path / "pe.csl").write_text(PE)
    opts = CompileOptions(arch=arch, params=(("h2d", "0"),), memcpy=True, channels=1)
    lay = elaborate(tmp_path / "layout.csl", opts)
    flags = next(g for g in lay.programs[0].record.globals if g.name == "flags")
    assert flags.init.v.data.tolist() == [True, True]
    # Used, the same param is "not bound", at its declaration.
    (tmp_path / "pe.csl").write_text(PE + "var x: u16 = never_bound;\n"
                                         "fn use_x() void { x += 1; }\n")
    with pytest.raises(CslError) as ei:
        elaborate(tmp_path / "layout.csl", opts)
    assert "pe.csl:3:1: error: param 'never_bound' of pe.csl is not bound" in ei.value.render()


def test_first_error_and_table():
    text = "noise\nTraceback (most recent call last):\n  File x\nAssertionError: bad\n"
    assert run_examples.first_error(text) == "AssertionError: bad"
    assert run_examples.first_error("a\nk.csl:3:4: error: no\n") == "k.csl:3:4: error: no"
    rows = [run_examples.Outcome("t/a", "wse3", "SUCCESS", 1.0, ""),
            run_examples.Outcome("t/b", "wse3", "FAIL", 2.0, "x.csl:1:1: error: y")]
    table = run_examples.format_table(rows)
    assert table.splitlines()[2].split() == ["t/b", "wse3", "FAIL", "2.0", "x.csl:1:1:",
                                             "error:", "y"]
    assert table.splitlines()[-1] == "wse3: FAIL 1, SUCCESS 1"


def test_runner_runs_an_example_unmodified(tmp_path, capsys):
    ex = tmp_path / "examples" / "gemv"
    shutil.copytree(REPO / "csl" / "gemv", ex)
    assert run_examples.main([str(tmp_path / "examples"), "--arch", "wse3",
                              "--json", str(tmp_path / "rows.json")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[:3] == ["gemv", "wse3", "SUCCESS"], out
    assert '"result": "SUCCESS"' in (tmp_path / "rows.json").read_text()
