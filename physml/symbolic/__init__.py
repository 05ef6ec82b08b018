"""Spec dataclasses, SymPy helpers, the SymPy → torch compiler and spatial operators."""
from .functions import register_function
from .spec import (Boundary, Call, DataSpec, DiscoverSpec, Domain, Environment, Equation, Let,
                   Mask, Param, PriorSpec, Sampler, Spec, System, TrainSpec)

# The compiler and the stencils need torch; the language (parse, check) needs only the
# dataclasses and functions above, so they are imported on first use.
_LAZY = {"VectorField": ".compiler", "compile_dynamics": ".compiler",
         "TermModule": ".compiler", "compile_terms": ".compiler",
         "STENCILS": ".stencils", "GridOperators": ".stencils"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "VectorField", "compile_dynamics", "TermModule", "compile_terms", "register_function",
    "STENCILS", "GridOperators", "Boundary", "Call", "DataSpec", "DiscoverSpec", "Domain",
    "Environment", "Equation", "Let", "Mask", "Param", "PriorSpec", "Sampler", "Spec", "System", "TrainSpec",
]
