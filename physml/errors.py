"""Errors raised on bad spec text: every one carries ``file:line:column`` and a caret.

All of them derive from :class:`SpecError`, so callers (and the CLI) catch one class.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass


#: Widest quoted source line (longer ones are cut around the column).
_CONTEXT_WIDTH = 160
#: Control and line-separator characters, shown as one space each in quoted source lines
#: (a tab is one column for the lexer too).
_INVISIBLE = {c: " " for c in [*range(0x00, 0x20), 0x7f, *range(0x80, 0xa0), 0x2028, 0x2029,
                               0x200b, 0x200e, 0x200f, *range(0x202a, 0x202f),
                               *range(0x2066, 0x206a), 0xfeff]}


@dataclass(frozen=True)
class Pos:
    """A position in a spec file (1-based line and column)."""

    file: str
    line: int
    column: int
    end_column: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class SpecError(Exception):
    """A spec that cannot be accepted, with where and why.

    ``str(err)`` is the full message a person reads::

        specs/broken.phy:4:21: unknown symbol 'omgea'
            d(theta)/dt = omgea
                          ^^^^^
        did you mean 'omega'?
    """

    kind = "error"

    def __init__(self, message: str, pos: Pos | None = None, source: str | None = None,
                 hint: str | None = None, length: int = 1):
        self.message = message
        self.pos = pos
        self.source = source
        self.hint = hint
        self.length = max(1, length)
        super().__init__(self.render())

    @property
    def line(self) -> int | None:
        return self.pos.line if self.pos else None

    @property
    def column(self) -> int | None:
        return self.pos.column if self.pos else None

    def context(self) -> str:
        """The offending source line with a caret under the offending text.

        Lines are split at ``\n`` only, as the lexer counts them (``str.splitlines`` would
        also split at a form feed or U+2028 and quote the wrong line). Characters that move
        the cursor or end a line on a terminal are shown as spaces, so the caret stays under
        the text; a very long line is cut to a window around the column.
        """
        if self.pos is None or self.source is None:
            return ""
        line = self.pos.line
        start = 0
        for _ in range(line - 1):
            start = self.source.find("\n", start) + 1
            if start == 0:
                return ""
        end = self.source.find("\n", start)
        text = self.source[start:] if end == -1 else self.source[start:end]
        if line < 1 or (not text and end == -1 and start >= len(self.source)):
            return ""
        text = text.translate(_INVISIBLE)
        column = self.pos.column
        if len(text) > _CONTEXT_WIDTH:
            lo = max(0, min(column - 1 - _CONTEXT_WIDTH // 2, len(text) - _CONTEXT_WIDTH))
            text = ("…" if lo else "") + text[lo:lo + _CONTEXT_WIDTH] + \
                ("…" if lo + _CONTEXT_WIDTH < len(text) else "")
            column = column - lo + (1 if lo else 0)
        width = max(1, min(self.length, len(text) - column + 1))
        return f"    {text}\n    {' ' * (column - 1)}{'^' * width}"

    def render(self) -> str:
        head = f"{self.pos}: {self.message}" if self.pos else self.message
        parts = [head]
        ctx = self.context()
        if ctx:
            parts.append(ctx)
        if self.hint:
            parts.append(self.hint)
        return "\n".join(parts)


class SpecSyntaxError(SpecError):
    kind = "syntax"


class UnknownSymbolError(SpecError):
    kind = "unknown-symbol"


class DeclarationError(SpecError):
    """Duplicated names, names shadowing functions, undeclared or missing equations."""

    kind = "declaration"


class BoundsError(SpecError):
    kind = "bounds"


class OperatorError(SpecError):
    """Spatial operator misuse and wrong arity."""

    kind = "operator"


class UseError(SpecError):
    """`use` of a missing system or a cycle of `use`."""

    kind = "use"


class OptionError(SpecError):
    """Unknown or ill-typed options in data/prior/train blocks."""

    kind = "option"


def suggest(word: str, choices, prefix: str = "did you mean ") -> str | None:
    """A 'did you mean …?' hint from the closest valid choices, or None."""
    close = difflib.get_close_matches(word, sorted(set(choices)), n=3, cutoff=0.6)
    if not close:
        return None
    return prefix + " or ".join(f"'{c}'" for c in close) + "?"
