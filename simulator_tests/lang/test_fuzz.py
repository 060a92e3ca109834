"""Fuzzing the CSL parser: on any input, ``parse_source`` returns a Module or raises CslError.

Inputs are the realistic sources of ``strategies.SEED_SOURCES`` mutated by hypothesis
(truncation, splices of one file into another, inserted/deleted/replaced characters and CSL
tokens), plus hand-picked pathological inputs (deep nesting, megabyte lines, NUL bytes, invalid
UTF-8, lone surrogates). For every input:

- no exception other than :class:`CslError` escapes;
- a CslError renders as ``path:line:col: error: message``, then the offending source line
  indented by two spaces, then a caret line whose ``^`` sits under column ``col``;
- the parse finishes (a hang is caught by pytest-timeout; performance, including the
  linear scaling of long lines and long multiline strings, is measured by
  ``python -m waferscale.lang.bench_parse --scaling``, not asserted here).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import strategies
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from waferscale.lang import ast
from waferscale.lang.errors import MAX_SHOWN, CslError
from waferscale.lang.parser import parse_file, parse_source

PATH = "fuzz/pe.csl"

SEEDS = strategies.SEED_SOURCES
SEED_NAMES = sorted(SEEDS)


_HEAD = re.compile(r"(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): error: (?P<msg>.+)\Z")


def check_diagnostic(err: CslError, text: str, path: str) -> None:
    """``err`` renders as a located compiler diagnostic pointing into ``text``."""
    lines = err.render().split("\n")
    head = _HEAD.match(lines[0])
    assert head, f"diagnostic does not start with 'path:line:col: error:': {lines[0]!r}"
    assert head["path"] == path
    line, col = int(head["line"]), int(head["col"])
    source_lines = text.split("\n")
    assert 1 <= line <= len(source_lines)
    src = source_lines[line - 1]
    assert 1 <= col <= len(src) + 1
    # Lines longer than MAX_SHOWN are shown as a window around the caret.
    start = 0 if len(src) <= MAX_SHOWN else max(0, col - 1 - MAX_SHOWN // 2)
    assert lines[1] == "  " + src[start:start + MAX_SHOWN]
    pad, caret, tail = lines[2][2:].partition("^")
    assert lines[2].startswith("  ") and caret == "^", f"no caret line: {lines[2]!r}"
    assert pad.strip(" \t") == "" and len(pad) == col - 1 - start
    assert tail.strip("~") == ""


def parse_guarded(text: str, path: str = PATH) -> ast.Module | None:
    """Parse ``text``; a CslError is checked and turned into None. Any other exception
    propagates and fails the test."""
    try:
        module = parse_source(text, path)
    except CslError as err:
        check_diagnostic(err, text, path)
        module = None
    else:
        assert isinstance(module, ast.Module)
    return module


FUZZ = settings(max_examples=400, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("name", SEED_NAMES)
def test_seed_sources_parse(name: str) -> None:
    assert parse_guarded(SEEDS[name], f"{name}.csl") is not None


@FUZZ
@given(strategies.mutated_sources())
def test_mutated_sources_parse_or_raise_csl_error(text: str) -> None:
    parse_guarded(text)


@settings(FUZZ, max_examples=150)
@given(st.text(strategies.FUZZ_CHARS, max_size=200)
       | st.lists(st.sampled_from(strategies.FUZZ_TOKENS), max_size=60).map(" ".join))
def test_random_text_and_token_soup(text: str) -> None:
    parse_guarded(text)


@settings(FUZZ, max_examples=100)
@given(st.binary(max_size=300), st.sampled_from(SEED_NAMES))
def test_invalid_utf8_through_parse_file(tmp_path_factory: pytest.TempPathFactory,
                                         junk: bytes, name: str) -> None:
    # Files are decoded with replacement; U+FFFD is then rejected by the lexer.
    seed = SEEDS[name].encode()
    data = seed[: len(seed) // 2] + junk + seed[len(seed) // 2:]
    path = tmp_path_factory.mktemp("fuzz") / "pe.csl"
    path.write_bytes(data)
    text = data.decode("utf-8", errors="replace")
    try:
        parse_file(path)
    except CslError as err:
        check_diagnostic(err, text, str(path))


# ----------------------------------------------------------------------------------------------
# Pathological inputs

MB = 1 << 20

DEEP = {
    "10k nested parens": "const x = " + "(" * 10_000 + "1" + ")" * 10_000 + ";",
    "10k unclosed parens": "const x = " + "(" * 10_000,
    "5k nested blocks": "fn f() void " + "{" * 5000 + "}" * 5000,
    "5k unclosed blocks": "fn f() void " + "{" * 5000,
    "5k nested labeled blocks": "fn f() void {" + "b: {" * 5000 + "}" * 5000 + "}",
    "5k nested ifs": "fn f() void {" + "if (a) " * 5000 + "x = 1;}",
    "5k nested whiles": "fn f() void {" + "while (a) " * 5000 + "x = 1;}",
    "5k nested if-expressions": "const x = " + "if (a) " * 5000 + "1;",
    "5k nested init lists": "const x = " + ".{" * 5000 + "}" * 5000 + ";",
    "5k nested indexes": "const x = a" + "[a" * 5000 + "]" * 5000 + ";",
    "5k nested array types": "const x = " + "[" * 5000,
    "5k comptime prefixes": "const x = " + "comptime " * 5000 + "1;",
    "5k nested fn types": "const x = " + "fn() " * 5000 + "void;",
    "5k nested tensor accesses": "const x = " + "|i|{1} -> " * 5000 + "a;",
    "3k nested structs": "const x = " + "struct { a: " * 3000 + "T" + "}" * 3000 + ";",
    "3k nested switches": "const x = " + "switch (a) { else => " * 3000 + "1" + "}" * 3000 + ";",
    "100k prefix operators": "const x = " + "-!~" * 33_000 + "1;",
    "20k else-if chain": "fn f() void {" + " else ".join(["if (a) x = 1"] * 20_000) + ";}",
}

ODD = {
    "NUL in code": "const x\x00 = 1;",
    "NUL in string": 'const s = "a\x00b";',
    "NUL in comment": "// \x00\nconst x = 1;",
    "only NULs": "\x00" * 1000,
    "invalid UTF-8 (replaced)": b"const x = \xff\xfe;\n\xc3(".decode("utf-8", errors="replace"),
    "lone surrogate in code": "const x = \ud800;",
    "lone surrogate in identifier": "const x\udc80y = 1;",
    "lone surrogate in string": 'const s = "\ud800";',
    "lone surrogate in char": "const c = '\udfff';",
    "lone surrogate in comment": "// \ud800\nconst x = 1;",
    "byte order mark": "\ufeffconst x = 1;",
    "CRLF line ends": "const x = 1;\r\nfn f() void {\r\n  x = 2\r\n}\r\n",
    "tabs before error": "fn f() void {\n\t\tvar y = ;\n}\n",
    "empty": "",
    "only a comment": "// nothing",
    "unterminated string at EOF": 'const s = "abc',
    "unterminated char at EOF": "const c = '",
    "backslash at EOF": "const s = \\",
    "huge hex literal": "const x = 0x" + "f" * 100_000 + ";",
    "huge decimal literal": "const x = " + "1" * 5000 + ";",
    "huge float exponent": "const x = 1e" + "9" * 10_000 + ";",
    "huge hex float exponent": "const x = 0x1p99999999;",
    "100k multiline string lines": "const s =\n" + "\\\\abc\n" * 100_000 + ";",
}


@pytest.mark.parametrize("name", sorted(DEEP))
def test_deep_nesting_is_an_error_not_a_crash(name: str) -> None:
    parse_guarded(DEEP[name])


@pytest.mark.parametrize("name", sorted(ODD))
def test_odd_characters_and_literals(name: str) -> None:
    parse_guarded(ODD[name])


MEGABYTE_LINES = {
    "sum": lambda n: "const x = " + "1 + " * (n // 4) + "1;",
    "call arguments": lambda n: "const x = f(" + "a, " * (n // 3) + ");",
    "identifier": lambda n: "const " + "a" * n + " = 1;",
    "string": lambda n: 'const s = "' + "a" * n + '";',
    "comment": lambda n: "// " + "a" * n + "\nconst x = 1;",
    "garbage": lambda n: "\x01" * n,
    "unclosed string": lambda n: 'const s = "' + "a" * n,
    "error at the end": lambda n: "const x = " + "1 + " * (n // 4) + ";",
}


@pytest.mark.parametrize("name", sorted(MEGABYTE_LINES))
def test_megabyte_line_parses_or_raises_csl_error(name: str) -> None:
    # Only the outcome is checked here; a quadratic slowdown shows up in
    # ``python -m waferscale.lang.bench_parse --scaling`` (and as a pytest-timeout on a hang).
    parse_guarded(MEGABYTE_LINES[name](MB))


def test_long_multiline_string_is_one_token_with_every_line() -> None:
    module = parse_guarded("const s =\n" + "".join(f"  \\\\l{i}\n" for i in range(50_000)) + ";")
    assert module is not None
    init = module.decls[0].init
    assert isinstance(init, ast.StringLit) and init.multiline
    assert init.value == "\n".join(f"l{i}" for i in range(50_000))


def test_parse_file_reports_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.csl"
    with pytest.raises(CslError) as info:
        parse_file(missing)
    assert str(missing) in info.value.render()


def test_bench_parse_scaling_covers_every_shape_and_size() -> None:
    from waferscale.lang import bench_parse
    result = bench_parse.scaling(lines=50, repeat=1, steps=3)
    assert sorted(result) == sorted(bench_parse.SCALING_SHAPES)
    for rows in result.values():
        assert [size for size, _ in rows] == [50, 100, 200]
        assert all(secs > 0 for _, secs in rows)
