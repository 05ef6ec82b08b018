"""Reading specs against this version's vocabulary (no torch: see :mod:`.vocabulary`)."""
from __future__ import annotations

from pathlib import Path

from ..symbolic.spec import Spec
from .vocabulary import vocabulary


def load_spec(path: str | Path) -> Spec:
    """Read a spec and check it against what this version of physml implements."""
    from ..lang import load_spec as _load

    return _load(path, vocabulary=vocabulary())


def parse_spec(text: str, path: str = "<string>") -> Spec:
    """Parse spec text and check it against what this version of physml implements."""
    from ..lang import parse_spec as _parse

    return _parse(text, path, vocabulary=vocabulary())
