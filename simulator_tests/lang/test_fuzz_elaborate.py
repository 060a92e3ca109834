"""Fuzz the whole front end (parse + comptime + layout): for mutated programs, elaboration
either succeeds or raises CslError, never another exception (a hang is caught by
pytest-timeout)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings, strategies as st

from waferscale.lang.errors import CslError
from waferscale.lang.layout import CompileOptions, elaborate

from test_layout import LAYOUT, PE

TOKENS = ["@set_rectangle(1, 1);", "@get_color(30)", "x", "(", ")", "{", "}", ";", ".{", "}",
          "@range(i16, 3)", "-1", "0x7fff", "1 << 40", "@as(u16, -1)", "true", "undefined",
          "comptime", "while (true) {}", "@import_module(\"<memcpy/memcpy>\")", "&", ".*",
          "|i|{4} -> buf[i]", "@zeros([100000]f32)", "EAST", ".tx = .{EAST}", ",", "=", "=="]
OPTS = CompileOptions(params=(("w", "3"), ("h", "2")), memcpy=True, channels=1)


@st.composite
def mutated(draw):
    which = draw(st.sampled_from(["layout", "pe"]))
    text = LAYOUT if which == "layout" else PE
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["delete", "insert", "replace", "truncate"]))
        i = draw(st.integers(0, len(text)))
        j = min(len(text), i + draw(st.integers(0, 12)))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + " " + draw(st.sampled_from(TOKENS)) + " " + text[i:]
        elif op == "replace":
            text = text[:i] + draw(st.sampled_from(TOKENS)) + text[j:]
        else:
            text = text[:i]
    return (text, PE) if which == "layout" else (LAYOUT, text)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mutated())
def test_elaborate_only_raises_csl_error(tmp_path, sources):
    layout, pe = sources
    (tmp_path / "layout.csl").write_text(layout)
    (tmp_path / "pe.csl").write_text(pe)
    try:
        elaborate(tmp_path / "layout.csl", OPTS)
    except CslError as e:
        text = e.render()
        assert ": error: " in text.splitlines()[0]
    # A hang would be caught by pytest-timeout; the branch quota bounds comptime loops.
