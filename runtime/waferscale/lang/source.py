"""Source files and spans.

A :class:`SourceFile` owns the text of one CSL file; a :class:`Span` is a half-open byte range
``[start, end)`` into it. Line and column numbers are computed on demand (1-based, columns
counted in characters) so the lexer only has to track offsets.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from pathlib import Path


_NEWLINE = re.compile("\n")


class SourceFile:
    """The text of one CSL file plus a line index.

    ``path`` is what diagnostics print; it is kept exactly as given (relative paths stay
    relative) so messages match the user's command line.
    """

    def __init__(self, path: str | Path, text: str) -> None:
        self.path = str(path)
        self.text = text
        self._line_starts = [0] + [m.end() for m in _NEWLINE.finditer(text)]

    @classmethod
    def read(cls, path: str | Path) -> "SourceFile":
        """Read a file as UTF-8 (undecodable bytes become U+FFFD, which the lexer rejects)."""
        data = Path(path).read_bytes()
        # utf-8-sig drops a leading byte-order mark, as editors on Windows write one.
        return cls(path, data.decode("utf-8-sig", errors="replace"))

    def line_col(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset (clamped to the text)."""
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self._line_starts, offset) - 1
        return line + 1, offset - self._line_starts[line] + 1

    def line_text(self, line: int) -> str:
        """Text of a 1-based line without its newline."""
        start = self._line_starts[line - 1]
        end = self._line_starts[line] - 1 if line < len(self._line_starts) else len(self.text)
        return self.text[start:end]

    def __repr__(self) -> str:
        return f"SourceFile({self.path!r})"


@dataclass(frozen=True)
class Span:
    """A half-open character range in a source file. ``file`` may be None for synthetic nodes."""

    file: SourceFile | None = field(default=None, compare=False)
    start: int = 0
    end: int = 0

    def to(self, other: "Span") -> "Span":
        """The smallest span covering ``self`` and ``other`` (same file assumed)."""
        if self.file is None:
            return other
        if other.file is None:
            return self
        return Span(self.file, min(self.start, other.start), max(self.end, other.end))

    @property
    def line_col(self) -> tuple[int, int]:
        if self.file is None:
            return (0, 0)
        return self.file.line_col(self.start)

    def __str__(self) -> str:
        if self.file is None:
            return "<unknown>"
        line, col = self.line_col
        return f"{self.file.path}:{line}:{col}"


NO_SPAN = Span()
