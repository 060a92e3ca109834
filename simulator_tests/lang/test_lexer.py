"""Tests for waferscale.lang.lexer: token kinds, literal values, spans and lexical errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waferscale.lang.errors import CslError, CslSyntaxError
from waferscale.lang.lexer import KEYWORDS, Token, tokenize
from waferscale.lang.source import SourceFile


def lex(text: str) -> list[Token]:
    return tokenize(SourceFile("lex.csl", text))


def kinds(text: str) -> list[str]:
    return [t.kind for t in lex(text)]


def values(text: str) -> list[object]:
    return [t.value for t in lex(text)[:-1]]


def lex_error(text: str) -> CslSyntaxError:
    with pytest.raises(CslSyntaxError) as info:
        lex(text)
    return info.value


def test_empty_input_is_just_eof() -> None:
    toks = lex("")
    assert [t.kind for t in toks] == [Token.EOF]
    assert (toks[0].start, toks[0].end) == (0, 0)


def test_eof_sits_at_end_of_text() -> None:
    toks = lex("x \n  ")
    assert toks[-1].kind == Token.EOF and toks[-1].start == 5


def test_keywords_identifiers_and_builtins() -> None:
    toks = lex("const x_1 = @get_dsd; task fn_ comptime packed f32 color")
    assert [t.kind for t in toks] == [
        "const", Token.IDENT, "=", Token.BUILTIN, ";", "task", Token.IDENT, "comptime",
        Token.IDENT, Token.IDENT, Token.IDENT, Token.EOF]
    assert toks[3].value == "get_dsd" and toks[3].text == "@get_dsd"
    assert toks[6].text == "fn_"


def test_every_keyword_is_its_own_kind() -> None:
    for word in KEYWORDS:
        assert kinds(word) == [word, Token.EOF]


@pytest.mark.parametrize("op", [
    "<<=", ">>=", ".*", "->", "=>", "==", "!=", "<=", ">=", "<<", ">>", "+=", "-=", "*=",
    "/=", "%=", "&=", "|=", "^=", "+", "-", "*", "/", "%", "&", "|", "^", "~", "!", "<", ">",
    "=", ".", ",", ";", ":", "(", ")", "[", "]", "{", "}"])
def test_operators_lex_as_one_token(op: str) -> None:
    assert kinds(op) == [op, Token.EOF]


def test_maximal_munch_on_operators() -> None:
    assert kinds("a<<=b>>c.*") == [Token.IDENT, "<<=", Token.IDENT, ">>", Token.IDENT, ".*",
                                    Token.EOF]
    assert kinds("|i|{4}->A") == ["|", Token.IDENT, "|", "{", Token.INT, "}", "->", Token.IDENT,
                                  Token.EOF]


def test_comments_are_skipped() -> None:
    src = "// line\nx /// doc\n//! module doc\ny // trailing"
    assert [t.text for t in lex(src)] == ["x", "y", ""]


@pytest.mark.parametrize("text, value", [
    ("0", 0), ("123", 123), ("1_000_000", 1_000_000), ("0xBEEF", 0xBEEF), ("0xbe_ef", 0xBEEF),
    ("0o17", 0o17), ("0b1010", 0b1010), ("0b1_0", 2), ("007", 7)])
def test_integer_literals(text: str, value: int) -> None:
    tok = lex(text)[0]
    assert (tok.kind, tok.value, tok.text) == (Token.INT, value, text)


@pytest.mark.parametrize("text, value", [
    ("1.0", 1.0), ("0.000001", 1e-6), ("1e-6", 1e-6), ("2.5E+3", 2500.0), ("1_0.2_5", 10.25),
    ("4294967296.0", 4294967296.0), ("0x1p3", 8.0), ("0x1.8p1", 3.0), ("0x10p-4", 1.0),
    ("0x1.8", 1.5)])
def test_float_literals(text: str, value: float) -> None:
    tok = lex(text)[0]
    assert (tok.kind, tok.value, tok.text) == (Token.FLOAT, value, text)


def test_hex_e_is_a_digit_not_an_exponent() -> None:
    assert values("0xE-3") == [14, None, 3]
    assert values("1e-3") == [0.001]


def test_integer_followed_by_field_access_is_not_a_float() -> None:
    assert kinds("a[0].x") == [Token.IDENT, "[", Token.INT, "]", ".", Token.IDENT, Token.EOF]
    assert kinds("1.e5") == [Token.INT, ".", Token.IDENT, Token.EOF]


@pytest.mark.parametrize("text", ["12abc", "0x", "0xg", "1e", "1_", "1__0", "0b102", "0o8",
                                  "0X10", "1.5e"])
def test_malformed_numbers(text: str) -> None:
    err = lex_error(text)
    assert err.message == f"invalid number literal '{text}'"
    assert (err.span.start, err.span.end) == (0, len(text))


def test_float_out_of_range() -> None:
    assert "out of range" in lex_error("1e999").message


@pytest.mark.parametrize("text, code", [
    ("'a'", ord("a")), ("'\\n'", 10), ("'\\r'", 13), ("'\\t'", 9), ("'\\\\'", 92),
    ("'\\''", 39), ("'\\\"'", 34), ("'\\x0a'", 10), ("'\\x7F'", 127), ("'\\u{41}'", 65),
    ("'\\u{1F600}'", 0x1F600), ("'\\u00e9'", 0xE9), ("'\\U01F600'", 0x1F600), ("'é'", 0xE9),
    ("'\"'", 34)])
def test_char_literals(text: str, code: int) -> None:
    tok = lex(text)[0]
    assert (tok.kind, tok.value, tok.text) == (Token.CHAR, code, text)


@pytest.mark.parametrize("text, message", [
    ("''", "empty character literal"),
    ("'ab'", "more than one character in character literal"),
    ("'a", "unterminated character literal"),
    ("'\\q'", "invalid escape sequence '\\q'"),
    ("'\\x4'", "'\\x' escape needs exactly two hex digits"),
    ("'\\u{}'", "'\\u{...}' escape needs 1 to 6 hex digits and a closing '}'"),
    ("'\\u{110000}'", "escape names an invalid code point U+110000"),
    ("'\\u{D800}'", "escape names an invalid code point U+D800"),
    ("'\\u12'", "'\\u' escape needs exactly 4 hex digits"),
])
def test_char_literal_errors(text: str, message: str) -> None:
    assert lex_error(text).message == message


def test_string_literals_decode_escapes() -> None:
    tok = lex(r'"a\tb\n\x41\u{42}\"q\\"')[0]
    assert tok.kind == Token.STRING
    assert tok.value == 'a\tb\nAB"q\\'
    assert lex('"<memcpy/memcpy>"')[0].value == "<memcpy/memcpy>"
    assert lex('""')[0].value == ""


def test_unterminated_string_points_at_opening_quote() -> None:
    err = lex_error('const s = "abc\n;')
    assert err.message == "unterminated string literal"
    assert (err.span.start, err.span.end) == (10, 11)


def test_bad_escape_in_string_points_at_escape() -> None:
    err = lex_error('x = "ab\\zc"')
    assert err.message == "invalid escape sequence '\\z'"
    assert (err.span.start, err.span.end) == (7, 9)


def test_multiline_string_lines_are_joined() -> None:
    src = "const s =\n  \\\\first line\n    \\\\  second \\n raw\n  ;"
    toks = lex(src)
    assert [t.kind for t in toks] == ["const", Token.IDENT, "=", Token.MLSTRING, ";", Token.EOF]
    ml = toks[3]
    assert ml.value == "first line\n  second \\n raw"
    assert src[ml.start:ml.end] == ml.text
    assert ml.text.startswith("\\\\first") and ml.text.endswith("raw")


def test_multiline_strings_separated_by_code_stay_apart() -> None:
    toks = lex("\\\\a\nx\n\\\\b")
    assert [(t.kind, t.value) for t in toks[:-1]] == [
        (Token.MLSTRING, "a"), (Token.IDENT, None), (Token.MLSTRING, "b")]


@pytest.mark.parametrize("text, message, col", [
    ("x = $;", "invalid character '$'", 5),
    ("a\x0cb", "invalid character U+000C", 2),
    ("x /* no */", "block comments are not supported in CSL; use '//'", 3),
    ("@ 1", "expected a builtin name after '@'", 1),
    ("a \\ b", "unexpected '\\' (multiline strings start with '\\\\')", 3),
    ("ok # no", "invalid character '#'", 4),
])
def test_invalid_characters(text: str, message: str, col: int) -> None:
    err = lex_error(text)
    assert err.message == message
    assert err.span.line_col == (1, col)


def test_replacement_character_means_invalid_utf8(tmp_path) -> None:
    path = tmp_path / "bad.csl"
    path.write_bytes(b"const x = 1;\n// caf\xe9\n")
    err = lex_error(SourceFile.read(path).text)
    assert err.message == "source is not valid UTF-8"
    assert err.span.line_col == (2, 7)


def test_token_spans_cover_their_text() -> None:
    src = "var A: [4]f32 = @zeros([4]f32); // c\nx.*[1] <<= 0x1p3;"
    for tok in lex(src)[:-1]:
        assert src[tok.start:tok.end] == tok.text
        assert tok.span.file is not None and tok.span.start == tok.start


def test_rendered_lexer_error_has_location_and_caret() -> None:
    err = lex_error("const a = 1;\nconst b = 0b12;\n")
    assert err.render() == ("lex.csl:2:11: error: invalid number literal '0b12'\n"
                            "  const b = 0b12;\n"
                            "            ^~~~")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_only_raises_csl_errors(text: str) -> None:
    try:
        toks = lex(text)
    except CslError:
        return
    assert toks[-1].kind == Token.EOF
    assert all(t.start <= t.end for t in toks)
