"""The error raised for a condition string that does not parse."""

from __future__ import annotations

# Longest stretch of the text shown around the error, so that a condition of
# thousands of characters still gives a readable message.
_EXCERPT_WIDTH = 72


class ConditionSyntaxError(ValueError):
    """A condition string that does not parse, with where and why.

    ``text`` is the whole string, ``column`` the 0-based offset of the error
    in it, ``expected`` a short phrase saying what would have been valid there
    and ``message`` the sentence explaining the error. ``str(error)`` is the
    sentence followed by the offending line and a caret under the column.
    """

    def __init__(self, message: str, *, text: str, column: int, expected: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.text = text
        self.column = max(0, min(column, len(text)))
        self.expected = expected

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return _rebuild, (type(self), self.message, self.text, self.column, self.expected)

    @property
    def line(self) -> int:
        """Return the 1-based line of the error, for multi-line text."""
        return self.text.count("\n", 0, self.column) + 1

    def _line_span(self) -> tuple[int, int]:
        start = self.text.rfind("\n", 0, self.column) + 1
        end = self.text.find("\n", self.column)
        return start, len(self.text) if end == -1 else end

    def _excerpt(self) -> tuple[str, int]:
        """Return the shown line and the caret's offset in it."""
        start, end = self._line_span()
        line = self.text[start:end]
        offset = self.column - start
        if len(line) <= _EXCERPT_WIDTH:
            return line, offset
        left = max(0, min(offset - _EXCERPT_WIDTH // 2, len(line) - _EXCERPT_WIDTH))
        shown = line[left : left + _EXCERPT_WIDTH]
        prefix = "..." if left else ""
        suffix = "..." if left + _EXCERPT_WIDTH < len(line) else ""
        return prefix + shown + suffix, offset - left + len(prefix)

    def source_line(self) -> str:
        """Return the line of the text the caret points into (shortened if long)."""
        line = self._excerpt()[0]
        # Control characters would garble a terminal; one placeholder each keeps the caret aligned.
        return "".join(c if c.isprintable() or c == "\t" else "\ufffd" for c in line)

    def caret_line(self) -> str:
        """Return a line with a caret under the error, aligned with ``source_line()``.

        For a short one-line text this is aligned with ``text`` itself.
        """
        line, offset = self._excerpt()
        # Keep tabs so the caret lines up however the terminal expands them.
        padding = "".join("\t" if char == "\t" else " " for char in line[:offset])
        return padding + "^"

    def __str__(self) -> str:
        sentence = self.message
        if "\n" in self.text:
            sentence = f"{sentence} (line {self.line})"
        return f"{sentence}\n    {self.source_line()}\n    {self.caret_line()}"


def _rebuild(
    cls: type[ConditionSyntaxError], message: str, text: str, column: int, expected: str
) -> ConditionSyntaxError:
    return cls(message, text=text, column=column, expected=expected)
