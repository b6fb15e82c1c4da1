"""An indented code buffer (the shape of TorchInductor's, much smaller)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class IndentedBuffer:
    def __init__(self, indent: str = "    ") -> None:
        self._lines: list[str] = []
        self._level = 0
        self._indent = indent

    def line(self, text: str = "") -> None:
        self._lines.append(self._indent * self._level + text if text else "")

    def lines(self, texts: list[str] | tuple[str, ...]) -> None:
        for t in texts:
            self.line(t)

    def if_else(self, condition: str, then: str, otherwise: str, note: str = "") -> None:
        """``if condition:`` (then ``note``, a comment) / ``else:``, one line under each."""
        self.line(f"if {condition}:{note}")
        with self.indent():
            self.line(then)
        self.line("else:")
        with self.indent():
            self.line(otherwise)

    @contextlib.contextmanager
    def indent(self) -> Iterator[None]:
        self._level += 1
        try:
            yield
        finally:
            self._level -= 1

    def getvalue(self) -> str:
        return "\n".join(self._lines) + "\n"
