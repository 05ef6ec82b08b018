"""The limits physml puts on what it reads, in one place (documented in README, "Limits and
safety").

Spec text is bounded so that parsing and checking take time linear in the file size; data
sizes are checked against a memory budget *before* anything is allocated or read, so a
typo (``trajectories 1000000000``) or a hostile file (a small HDF5/.npz declaring a huge
array) gives a located error instead of exhausting memory.

The memory budget is the one limit a person may need to raise: set the environment
variable ``PHYSML_MEMORY_BUDGET`` (bytes, or with a unit: ``64G``, ``512M``) or pass
``--memory-budget`` to ``physml check`` / ``physml simulate``.
"""
from __future__ import annotations

import os
import re

#: Largest spec file read, in bytes (the built-in systems are about 1 KB).
MAX_SPEC_BYTES = 1 << 20
#: Longest line of a spec, in characters (continuation lines count separately).
MAX_LINE_CHARS = 250_000
#: Deepest nesting of brackets, function calls, unary signs and powers in an expression.
#: A long flat sum ``a + b + c + …`` is one level, however many terms it has.
MAX_NESTING = 100
#: Largest expression (nodes of its parse tree: names, numbers, operators) in one statement.
MAX_EXPR_NODES = 200_000
#: Largest seed (seeds are unsigned 63-bit integers, as torch generators take them).
MAX_SEED = (1 << 63) - 1
#: Largest noise level: σ times a Gaussian draw must stay finite in float32.
MAX_NOISE = 1e30

#: Default memory budget for one dataset (simulated or read), in bytes.
DEFAULT_MEMORY_BUDGET = 16 << 30
MEMORY_BUDGET_ENV = "PHYSML_MEMORY_BUDGET"
#: Extra folders `use "path.phy"` may reach (``os.pathsep``-separated).
USE_PATH_ENV = "PHYSML_USE_PATH"

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10, "M": 1 << 20,
          "MB": 1 << 20, "MIB": 1 << 20, "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30,
          "T": 1 << 40, "TB": 1 << 40, "TIB": 1 << 40}


def parse_bytes(text: str) -> int:
    """``"64G"`` → 68719476736; raises ValueError with what is accepted."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).upper() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (write bytes, or a number with K, M, G or T)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def memory_budget(override: int | None = None) -> int:
    """The memory budget in bytes: ``override``, else ``$PHYSML_MEMORY_BUDGET``, else
    :data:`DEFAULT_MEMORY_BUDGET`."""
    if override is not None:
        return int(override)
    env = os.environ.get(MEMORY_BUDGET_ENV)
    if env:
        try:
            return parse_bytes(env)
        except ValueError as exc:
            raise ValueError(f"{MEMORY_BUDGET_ENV}: {exc}") from None
    return DEFAULT_MEMORY_BUDGET


def human_bytes(n: float) -> str:
    """1536 → '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} EiB"  # pragma: no cover
