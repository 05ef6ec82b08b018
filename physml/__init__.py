"""physml: learn dynamical systems from data with neural networks and physics together.

    >>> import physml
    >>> spec = physml.load_spec("equations/damped_pendulum.phy")
    >>> F = physml.compile_dynamics(spec)

``import physml`` is cheap: torch, SymPy and SciPy are imported by the first call that
needs them (``physml --help`` and ``physml check`` of a system file start in well under a
second).
"""
from ._version import __version__
from .errors import SpecError

# name → the module that defines it (imported on first access, PEP 562)
_LAZY = {
    "load_spec": "physml.experiment", "parse_spec": "physml.experiment",
    "check": "physml.experiment", "simulate": "physml.experiment",
    "train": "physml.experiment", "Run": "physml.experiment",
    "evaluate": "physml.experiment", "inspect": "physml.experiment",
    "identifiability": "physml.experiment",
    "compile_dynamics": "physml.symbolic", "register_function": "physml.symbolic",
    "load_dataset": "physml.data",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this hook
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = ["SpecError", "load_spec", "parse_spec", "check", "compile_dynamics",
           "register_function", "simulate", "load_dataset", "train", "Run", "evaluate",
           "inspect", "identifiability", "__version__"]
