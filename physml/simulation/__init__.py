"""Simulation: initial-condition samplers and :func:`simulate` (solvers: :mod:`physml.solve`)."""
from .core import SimulationError, UnstableError, simulate
from .samplers import SAMPLERS, register_sampler
from ..solve import SOLVERS, SolverFailure  # re-exported for compatibility

__all__ = ["simulate", "SimulationError", "UnstableError", "SolverFailure", "SAMPLERS",
           "SOLVERS", "register_sampler"]
