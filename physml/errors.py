"""Errors raised on bad spec text: every one carries ``file:line:column`` and a caret.

All of them derive from :class:`SpecError`, so callers (and the CLI) catch one class.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass


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
        """The offending source line with a caret under the offending text."""
        if self.pos is None or self.source is None:
            return ""
        lines = self.source.splitlines()
        if not 1 <= self.pos.line <= len(lines):
            return ""
        text = lines[self.pos.line - 1].expandtabs(1)
        width = max(1, min(self.length, len(text) - self.pos.column + 1))
        return f"    {text}\n    {' ' * (self.pos.column - 1)}{'^' * width}"

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
