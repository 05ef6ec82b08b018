"""Simulation: initial-condition samplers, batched solvers, and :func:`simulate`."""
from .core import SimulationError, UnstableError, simulate
from .samplers import SAMPLERS, register_sampler
from .solvers import SOLVERS, SolverFailure

__all__ = ["simulate", "SimulationError", "UnstableError", "SolverFailure", "SAMPLERS",
           "SOLVERS", "register_sampler"]
