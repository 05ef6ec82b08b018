"""One solver package for simulation, training and reporting.

``SOLVERS`` maps the names a spec may use to :class:`Solver` objects (with their order);
:func:`odeint` is the differentiable integrator; :meth:`Solver.simulate` the batched
ground-truth one.
"""
from .batched import Outcome as Outcome, SolverFailure as SolverFailure
from .differentiable import odeint as odeint
from .registry import SOLVERS as SOLVERS, Solver as Solver, get_solver as get_solver
from .tableau import ButcherTableau as ButcherTableau

__all__ = ["odeint", "Solver", "SOLVERS", "get_solver", "ButcherTableau", "Outcome",
           "SolverFailure"]
