"""Spec dataclasses, SymPy helpers, the SymPy → torch compiler and spatial operators."""
from .compiler import VectorField, compile_dynamics
from .functions import register_function
from .spec import (Boundary, Call, DataSpec, Domain, Environment, Equation, Let, Mask, Param,
                   PriorSpec, Sampler, Spec, System, TrainSpec)
from .stencils import STENCILS, GridOperators

__all__ = [
    "VectorField", "compile_dynamics", "register_function", "STENCILS", "GridOperators",
    "Boundary", "Call", "DataSpec", "Domain", "Environment", "Equation", "Let", "Mask", "Param",
    "PriorSpec", "Sampler", "Spec", "System", "TrainSpec",
]
