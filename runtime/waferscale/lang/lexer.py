"""The CSL lexer: source text to a flat list of tokens.

Protocol:

- :func:`tokenize` returns every token of a :class:`~waferscale.lang.source.SourceFile` in order,
  ending with exactly one ``EOF`` token whose span is empty and sits at the end of the text.
  Whitespace and ``//`` comments (including ``///`` and ``//!`` doc comments) are dropped.
- ``Token.kind`` is one of the class constants ``IDENT``, ``BUILTIN``, ``INT``, ``FLOAT``,
  ``CHAR``, ``STRING``, ``MLSTRING``, ``EOF``; for a keyword or punctuation token the kind is the
  token text itself (``"const"``, ``"<<="``, ``".*"``), so the parser compares kinds only.
- ``Token.value`` holds the decoded value of literals: ``int`` for INT and CHAR (a code point),
  ``float`` for FLOAT, ``str`` for STRING and MLSTRING (escapes decoded; consecutive ``\\\\``
  lines joined with ``\\n``), the name without ``@`` for BUILTIN, and ``None`` otherwise.
- Any malformed input raises :class:`~waferscale.lang.errors.CslSyntaxError` located at the
  offending characters; no other exception escapes.

Lexical rules follow Zig, as CSL does: decimal ``1_000``, hex ``0xBEEF``, octal ``0o17`` and
binary ``0b1010`` integers (lower-case prefixes, ``_`` only between digits); decimal floats
``1.0``/``1e-6``/``2.5E+3`` and hex floats ``0x1p3``/``0x1.8p-2``; char literals with the escapes
``\\n \\r \\t \\\\ \\' \\" \\xNN \\u{N..}`` plus the ``\\uNNNN``/``\\UNNNNNN`` forms of the CSL
vim syntax file. ``\\xNN`` in a string stands for one byte; since string values are Python
``str``, it becomes the code point NN (exact for ASCII, the only case CSL code uses).

The scanner is one compiled regular expression with named groups matched left to right; the
literal groups are deliberately broad (a number runs over every following identifier character)
and are validated afterwards, so ``123abc`` is one bad literal rather than two tokens.
"""

from __future__ import annotations

import logging
import re

from .errors import CslSyntaxError
from .source import SourceFile, Span

logger = logging.getLogger(__name__)

__all__ = ["Token", "tokenize", "KEYWORDS", "describe"]


KEYWORDS: frozenset[str] = frozenset({
    # declarations
    "const", "var", "param", "comptime", "fn", "task", "layout", "export", "extern",
    "inline", "noinline", "align", "linksection", "linkname", "anytype", "volatile", "asm",
    # control flow and logic
    "if", "else", "switch", "while", "for", "break", "continue", "return", "and", "or",
    # containers
    "struct", "enum", "union",
    # literals
    "true", "false",
})
"""Reserved words. Type names (``f32``, ``color``...), ``undefined`` and ``packed`` are plain
identifiers; ``packed`` is recognised by the parser only directly before ``struct``."""


class Token:
    """One token: ``kind``, ``text`` (the exact source spelling), ``value`` (literals only) and
    its character range ``start``/``end`` in ``file``; ``span`` builds the matching Span."""

    __slots__ = ("kind", "text", "value", "start", "end", "file")

    IDENT = "IDENT"
    BUILTIN = "BUILTIN"
    INT = "INT"
    FLOAT = "FLOAT"
    CHAR = "CHAR"
    STRING = "STRING"
    MLSTRING = "MLSTRING"
    EOF = "EOF"

    def __init__(self, kind: str, text: str, start: int, end: int, file: SourceFile,
                 value: object = None) -> None:
        self.kind = kind
        self.text = text
        self.value = value
        self.start = start
        self.end = end
        self.file = file

    @property
    def span(self) -> Span:
        return Span(self.file, self.start, self.end)

    def __repr__(self) -> str:
        if self.value is not None and self.kind not in (Token.IDENT,):
            return f"Token({self.kind}, {self.text!r}, {self.value!r})"
        return f"Token({self.kind}, {self.text!r})"


_LITERAL_KINDS = {
    Token.IDENT: "identifier",
    Token.BUILTIN: "builtin",
    Token.INT: "integer literal",
    Token.FLOAT: "float literal",
    Token.CHAR: "character literal",
    Token.STRING: "string literal",
    Token.MLSTRING: "multiline string literal",
}


def describe(tok: Token) -> str:
    """How a token is named in diagnostics: ``'var'``, ``identifier 'x'``, ``end of file``."""
    if tok.kind == Token.EOF:
        return "end of file"
    what = _LITERAL_KINDS.get(tok.kind)
    text = tok.text if len(tok.text) <= 24 else tok.text[:21] + "..."
    if what is None:
        return f"'{text}'"
    if tok.kind == Token.MLSTRING:
        return what
    return f"{what} '{text}'"


# Longest operators first so that the alternation is maximal munch.
_OPERATORS = [
    "<<=", ">>=",
    ".*", "->", "=>", "==", "!=", "<=", ">=", "<<", ">>",
    "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=",
    "+", "-", "*", "/", "%", "&", "|", "^", "~", "!", "<", ">", "=",
    ".", ",", ";", ":", "(", ")", "[", "]", "{", "}",
]

_IDENT_CHARS = r"[A-Za-z0-9_]"
_MASTER = re.compile("|".join([
    r"(?P<skip>(?:[ \t\r\n]+|//[^\n]*)+)",
    r"(?P<ident>[A-Za-z_][A-Za-z0-9_]*)",
    # Numbers, broad: validated in _number(). The exponent sign is only taken after e/E
    # (decimal) or p/P (hex), so 0xE-3 stays a subtraction.
    r"(?P<hexnum>0x[A-Za-z0-9_]*(?:\.[0-9A-Fa-f][A-Za-z0-9_]*)?(?:(?<=[pP])[-+][A-Za-z0-9_]*)?)",
    r"(?P<num>[0-9][A-Za-z0-9_]*(?:\.[0-9][A-Za-z0-9_]*)?(?:(?<=[eE])[-+][A-Za-z0-9_]*)?)",
    r"(?P<blockcomment>/\*)",
    r"(?P<op>" + "|".join(re.escape(op) for op in _OPERATORS) + ")",
    r'(?P<string>"(?:[^"\\\n]|\\[^\n])*")',
    r"(?P<char>'(?:[^'\\\n]|\\[^\n])*')",
    r"(?P<mlstring>\\\\[^\n]*)",
    r"(?P<builtin>@[A-Za-z_][A-Za-z0-9_]*)",
    r"(?P<other>.)",
]), re.DOTALL)

# Far beyond any real constant, and below Python's int-from-string limit (4300 digits).
MAX_INT_DIGITS = 4000

_DEC_INT = re.compile(r"[0-9](?:_?[0-9])*\Z")
_HEX_INT = re.compile(r"0x[0-9A-Fa-f](?:_?[0-9A-Fa-f])*\Z")
_OCT_INT = re.compile(r"0o[0-7](?:_?[0-7])*\Z")
_BIN_INT = re.compile(r"0b[01](?:_?[01])*\Z")
_DEC_FLOAT = re.compile(
    r"[0-9](?:_?[0-9])*(?:\.[0-9](?:_?[0-9])*(?:[eE][-+]?[0-9](?:_?[0-9])*)?"
    r"|[eE][-+]?[0-9](?:_?[0-9])*)\Z")
_HEX_FLOAT = re.compile(
    r"0x[0-9A-Fa-f](?:_?[0-9A-Fa-f])*"
    r"(?:\.[0-9A-Fa-f](?:_?[0-9A-Fa-f])*(?:[pP][-+]?[0-9](?:_?[0-9])*)?"
    r"|[pP][-+]?[0-9](?:_?[0-9])*)\Z")
_MLSTRING_JOIN = re.compile(r"[ \t\r]*\n[ \t\r]*")

_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", "'": "'", '"': '"'}
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _error(msg: str, file: SourceFile, start: int, end: int) -> CslSyntaxError:
    return CslSyntaxError(msg, Span(file, start, max(end, start + 1)))


def _number(text: str, file: SourceFile, start: int) -> tuple[str, object]:
    """Classify and evaluate a broad number match; raise on malformed literals."""
    end = start + len(text)
    if (_DEC_INT.match(text) or _HEX_INT.match(text) or _OCT_INT.match(text)
            or _BIN_INT.match(text)):
        digits = text.replace("_", "")
        if len(digits) > MAX_INT_DIGITS:
            raise _error(f"integer literal has {len(digits)} digits (at most {MAX_INT_DIGITS})",
                         file, start, end)
        if len(digits) > 1 and digits[1] in "xob":
            return Token.INT, int(digits[2:], {"x": 16, "o": 8, "b": 2}[digits[1]])
        return Token.INT, int(digits)
    if _DEC_FLOAT.match(text):
        value = float(text.replace("_", ""))
    elif _HEX_FLOAT.match(text):
        digits = text.replace("_", "")
        if "p" not in digits and "P" not in digits:
            digits += "p0"
        try:
            value = float.fromhex(digits)
        except OverflowError:
            raise _error(f"float literal '{text}' is out of range", file, start, end) from None
    else:
        raise _error(f"invalid number literal '{text}'", file, start, end)
    if value == float("inf"):
        raise _error(f"float literal '{text}' is out of range", file, start, end)
    return Token.FLOAT, value


def _unescape(body: str, file: SourceFile, base: int) -> str:
    """Decode the escapes of a quoted literal body that starts at offset ``base``."""
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    n = len(body)
    while i < n:
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        esc = body[i + 1] if i + 1 < n else ""
        if esc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc])
            i += 2
            continue
        if esc == "x":
            digits = body[i + 2:i + 4]
            if len(digits) != 2 or not set(digits) <= _HEX_DIGITS:
                raise _error("'\\x' escape needs exactly two hex digits", file,
                             base + i, base + i + 2 + len(digits))
            out.append(chr(int(digits, 16)))
            i += 4
            continue
        if esc == "u" and body[i + 2:i + 3] == "{":
            close = body.find("}", i + 3)
            digits = body[i + 3:close] if close >= 0 else ""
            if close < 0 or not 1 <= len(digits) <= 6 or not set(digits) <= _HEX_DIGITS:
                raise _error("'\\u{...}' escape needs 1 to 6 hex digits and a closing '}'",
                             file, base + i, base + (close + 1 if close >= 0 else i + 3))
            code = int(digits, 16)
            width = close + 1 - i
        elif esc in ("u", "U"):
            count = 4 if esc == "u" else 6
            digits = body[i + 2:i + 2 + count]
            if len(digits) != count or not set(digits) <= _HEX_DIGITS:
                raise _error(f"'\\{esc}' escape needs exactly {count} hex digits", file,
                             base + i, base + i + 2 + len(digits))
            code = int(digits, 16)
            width = 2 + count
        else:
            raise _error(f"invalid escape sequence '\\{esc}'", file, base + i, base + i + 2)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise _error(f"escape names an invalid code point U+{code:X}", file,
                         base + i, base + i + width)
        out.append(chr(code))
        i += width
    return "".join(out)


def tokenize(src: SourceFile) -> list[Token]:
    """Split ``src`` into tokens (see the module docstring for the protocol)."""
    text = src.text
    bad = text.find("\ufffd")
    if bad >= 0:
        raise _error("source is not valid UTF-8", src, bad, bad + 1)
    tokens: list[Token] = []
    append = tokens.append
    keywords = KEYWORDS
    ml_runs: list[tuple[Token, list[str]]] = []
    for m in _MASTER.finditer(text):
        group = m.lastgroup
        if group == "skip":
            continue
        start, end = m.span()
        tok_text = m.group()
        if group == "ident":
            append(Token(tok_text if tok_text in keywords else Token.IDENT, tok_text, start,
                         end, src))
        elif group == "op":
            append(Token(tok_text, tok_text, start, end, src))
        elif group == "num" or group == "hexnum":
            kind, value = _number(tok_text, src, start)
            append(Token(kind, tok_text, start, end, src, value))
        elif group == "string":
            append(Token(Token.STRING, tok_text, start, end, src,
                         _unescape(tok_text[1:-1], src, start + 1)))
        elif group == "char":
            value = _unescape(tok_text[1:-1], src, start + 1)
            if len(value) != 1:
                what = "empty" if not value else "more than one character in"
                raise _error(f"{what} character literal", src, start, end)
            append(Token(Token.CHAR, tok_text, start, end, src, ord(value)))
        elif group == "builtin":
            append(Token(Token.BUILTIN, tok_text, start, end, src, tok_text[1:]))
        elif group == "mlstring":
            line = tok_text[2:]
            if line.endswith("\r"):
                line = line[:-1]
            # Consecutive lines join into one token; the lines are collected and joined
            # once at the end (joining per line would copy the string for every line).
            prev = tokens[-1] if tokens else None
            if (ml_runs and prev is ml_runs[-1][0]
                    and _MLSTRING_JOIN.fullmatch(text, prev.end, start)):
                ml_runs[-1][1].append(line)
                prev.end = end
            else:
                tok = Token(Token.MLSTRING, tok_text, start, end, src, line)
                append(tok)
                ml_runs.append((tok, [line]))
        elif group == "blockcomment":
            raise _error("block comments are not supported in CSL; use '//'", src, start,
                         end)
        else:
            raise _unexpected_char(tok_text, src, start)
    for tok, lines in ml_runs:
        if len(lines) > 1:
            tok.value = "\n".join(lines)
            tok.text = text[tok.start:tok.end]
    append(Token(Token.EOF, "", len(text), len(text), src))
    logger.debug("tokenized %s: %d tokens", src.path, len(tokens))
    return tokens


def _unexpected_char(ch: str, src: SourceFile, start: int) -> CslSyntaxError:
    if ch == '"':
        return _error("unterminated string literal", src, start, start + 1)
    if ch == "'":
        return _error("unterminated character literal", src, start, start + 1)
    if ch == "@":
        return _error("expected a builtin name after '@'", src, start, start + 1)
    if ch == "\\":
        return _error("unexpected '\\' (multiline strings start with '\\\\')", src, start,
                      start + 1)
    if ch.isprintable() and ch != " ":
        return _error(f"invalid character '{ch}'", src, start, start + 1)
    return _error(f"invalid character U+{ord(ch):04X}", src, start, start + 1)
