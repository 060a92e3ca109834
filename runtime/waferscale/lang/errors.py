"""Diagnostics for user errors in CSL programs.

Every mistake in a user's CSL (syntax, types, comptime evaluation, layout) is reported as a
:class:`CslError`. ``str(err)`` renders it like a compiler would::

    kernels/gemv/pe.csl:12:7: error: expected ';' after declaration
      var x = 3
            ^

Notes (e.g. "previous definition is here") are rendered the same way with ``note:``. Internal
bugs are ordinary Python exceptions; only CslError is a user-facing outcome.
"""

from __future__ import annotations

from .source import Span

MAX_SHOWN = 200  # characters of a source line shown in a diagnostic


def render_location(kind: str, message: str, span: Span | None) -> str:
    """Render one ``path:line:col: kind: message`` block with the source line and a caret."""
    if span is None or span.file is None:
        return f"{kind}: {message}"
    line, col = span.line_col
    text = span.file.line_text(line)
    if len(text) > MAX_SHOWN:
        # Show a window of a very long line around the caret, not the whole line.
        start = max(0, col - 1 - MAX_SHOWN // 2)
        text = text[start:start + MAX_SHOWN]
        col -= start
    # Underline the whole span when it stays on one line, otherwise a single caret.
    end_line, end_col = span.file.line_col(max(span.start, span.end - 1))
    width = (end_col - span.line_col[1] + 1) if end_line == line and span.end > span.start \
        else 1
    width = max(1, min(width, len(text) - col + 1))
    # Keep tabs so the caret lines up under tab-indented source.
    pad = "".join("\t" if ch == "\t" else " " for ch in text[: col - 1])
    caret = "^" + "~" * max(0, width - 1)
    return f"{span}: {kind}: {message}\n  {text}\n  {pad}{caret}"


class CslError(Exception):
    """A user error in a CSL program, located at ``span``.

    ``notes`` is a list of ``(message, span)`` pairs rendered after the main message.
    """

    kind = "error"

    def __init__(self, message: str, span: Span | None = None,
                 notes: list[tuple[str, Span | None]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.span = span
        self.notes = list(notes or [])

    def with_note(self, message: str, span: Span | None) -> "CslError":
        self.notes.append((message, span))
        return self

    def render(self) -> str:
        parts = [render_location(self.kind, self.message, self.span)]
        parts += [render_location("note", m, s) for m, s in self.notes]
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.render()


class CslSyntaxError(CslError):
    """Lexing or parsing failed."""


class CslSemanticError(CslError):
    """Type errors, undefined names, bad builtin use, failed comptime evaluation."""


class CslLayoutError(CslError):
    """The layout block describes an invalid program (rectangle, tile code, routes, exports)."""


class CslImportError(CslError):
    """A module or library could not be found or loaded."""
