"""The one solver registry: ``solver NAME(...)`` in a spec, a training option or the CLI
becomes a :class:`Solver` here, and simulation, training and reporting all take it.

Each entry says what the method is (``order``, ``kind``), which keyword options a spec
may give it, and where it may be used: ``simulates`` (a ``data:`` block, batched and
without gradients, :meth:`Solver.simulate`) and ``trainable`` (differentiable integration,
:func:`physml.solve.odeint`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from . import batched
from .tableau import DIRECT, DOPRI5, EULER, MIDPOINT, RK4, RK4_38, ButcherTableau

KINDS = ("fixed", "adaptive", "spectral")


@dataclass(frozen=True)
class Solver:
    """An integration method.

    ``kind``: ``fixed`` (a Butcher tableau with a constant step: one step per output
    interval, or ``ceil(Δt/step)`` equal sub-steps), ``adaptive`` (embedded pair with error
    control by ``rtol``/``atol``; ``step`` caps the step size) or ``spectral`` (periodic
    grids only, diffusion treated in Fourier space, see :mod:`physml.solve.spectral`:
    Crank–Nicolson without a tableau, Lawson's integrating-factor form of the tableau with
    one).
    ``tableau``: the method as data where physml runs it itself (fixed methods; dopri5's
    batched simulator). ``torchdiffeq``: torchdiffeq's name for the method where torchdiffeq
    runs it (adaptive training, adjoint training of a fixed method, dopri8 data).
    """

    name: str
    order: int
    kind: str
    options: tuple[str, ...]
    trainable: bool
    simulates: bool
    description: str
    tableau: ButcherTableau | None = None
    torchdiffeq: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"solver {self.name}: kind must be one of {KINDS}")
        if self.kind == "fixed" and self.tableau is None:
            raise ValueError(f"fixed solver {self.name} needs a Butcher tableau")
        if self.kind == "adaptive" and self.trainable and self.torchdiffeq is None:
            raise ValueError(f"trainable adaptive solver {self.name} needs a torchdiffeq method")
        if self.tableau is not None and self.tableau.order != self.order:
            raise ValueError(f"solver {self.name}: order {self.order} but its tableau has "
                             f"order {self.tableau.order}")

    @property
    def is_map(self) -> bool:
        """Not an integrator: a step replaces the state by the model's output (``direct``),
        so the model's output is a state, not a rate."""
        return self.tableau is not None and self.tableau.map

    def check_options(self, options: Mapping[str, object]) -> None:
        """Unknown options are errors (a typo must not be ignored silently)."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            allowed = ", ".join(self.options) or "none"
            raise ValueError(f"solver {self.name} does not take option(s) {', '.join(unknown)}"
                             f"; it takes: {allowed}")

    def simulate(self, f, y0: torch.Tensor, times: torch.Tensor, *, rtol: float = 1e-8,
                 atol: float = 1e-8, step: float | None = None, bound: float | None = None,
                 progress: batched.Progress | None = None,
                 out_dtype: torch.dtype | None = None,
                 autonomous: bool = False) -> batched.Outcome:
        """Integrate the batch ``y0`` (B, *state) without gradients; states at ``times``.

        ``spectral`` methods need the system split into diffusion and the rest, which
        the simulator does (:func:`physml.solve.spectral.spectral_solve`).
        """
        if not self.simulates:
            usable = ", ".join(n for n, s in SOLVERS.items() if s.simulates)
            raise ValueError(f"solver {self.name} cannot simulate data; choose one of {usable}")
        if self.kind == "fixed":
            return batched.fixed_step(f, y0, times, step, self.tableau, bound=bound,
                                      progress=progress, out_dtype=out_dtype)
        if self.kind == "adaptive" and self.tableau is not None:
            return batched.adaptive_rk(f, y0, times, rtol=rtol, atol=atol,
                                       tableau=self.tableau, bound=bound, progress=progress,
                                       out_dtype=out_dtype, autonomous=autonomous,
                                       max_step=step)
        if self.kind == "adaptive":
            return batched.torchdiffeq_solve(f, y0, times, self.torchdiffeq, rtol=rtol,
                                             atol=atol, bound=bound, progress=progress,
                                             out_dtype=out_dtype, max_step=step)
        raise ValueError(f"solver {self.name} ({self.kind}) needs the system split into "
                         "diffusion and the rest: use physml.solve.spectral.spectral_solve")


#: Name → solver. Strings from specs and the command line become objects only here.
SOLVERS: dict[str, Solver] = {}


def register(solver: Solver) -> Solver:
    if solver.name in SOLVERS:
        raise ValueError(f"solver {solver.name!r} is already registered")
    SOLVERS[solver.name] = solver
    return solver


def get_solver(name: str | Solver) -> Solver:
    """The registered solver called ``name`` (a :class:`Solver` is returned as it is)."""
    if isinstance(name, Solver):
        return name
    try:
        return SOLVERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown solver {name!r}; choose one of: "
                         f"{', '.join(SOLVERS)}") from None


_FIXED = ("step",)
_ADAPTIVE = ("rtol", "atol", "step")

register(Solver("euler", 1, "fixed", _FIXED, True, True,
                "explicit Euler", tableau=EULER, torchdiffeq="euler"))
register(Solver("midpoint", 2, "fixed", _FIXED, True, True,
                "explicit midpoint rule (Runge 1895)", tableau=MIDPOINT,
                torchdiffeq="midpoint"))
register(Solver("rk4", 4, "fixed", _FIXED, True, True,
                "classic Runge–Kutta (Kutta 1901)", tableau=RK4))
# torchdiffeq calls the 3/8 rule "rk4"; here rk4 is the classic method everywhere.
register(Solver("rk4_38", 4, "fixed", _FIXED, True, False,
                "Kutta's 3/8 rule (torchdiffeq's rk4)", tableau=RK4_38, torchdiffeq="rk4"))
register(Solver("dopri5", 5, "adaptive", _ADAPTIVE, True, True,
                "Dormand–Prince 5(4) (Dormand & Prince 1980)", tableau=DOPRI5,
                torchdiffeq="dopri5"))
register(Solver("dopri8", 8, "adaptive", _ADAPTIVE, True, True,
                "Dormand–Prince 8(5,3) (Prince & Dormand 1981; Hairer–Nørsett–Wanner §II.10)",
                torchdiffeq="dopri8"))
register(Solver("bosh3", 3, "adaptive", _ADAPTIVE, True, False,
                "Bogacki–Shampine 3(2) (Bogacki & Shampine 1989)", torchdiffeq="bosh3"))
register(Solver("adaptive_heun", 2, "adaptive", _ADAPTIVE, True, False,
                "Heun–Euler 2(1)", torchdiffeq="adaptive_heun"))
register(Solver("fehlberg2", 2, "adaptive", _ADAPTIVE, True, False,
                "Runge–Kutta–Fehlberg 2(1), second-order solution propagated "
                "(Fehlberg 1969)", torchdiffeq="fehlberg2"))
# Not an integrator: each step replaces the state by the model's output, x_{n+1} = N(x_n)
# (thesis §2.5.4, Table 2.3: "a residual network ... used directly, not through an Euler
# solver"). The network's output scale is then the state's (fit_scales), not its rate's.
register(Solver("direct", 0, "fixed", _FIXED, True, False,
                "no solver: the model is the one-step map x(t + h) = N(x(t))",
                tableau=DIRECT))
# Order 1: the explicit part is forward Euler (2 for pure diffusion, Crank–Nicolson).
register(Solver("spectral_cn", 1, "spectral", _FIXED, False, True,
                "pseudo-spectral Crank–Nicolson / forward Euler for periodic grids "
                "(Li et al. 2021)"))
# Diffusion exact (integrating factor), the rest by classic RK4: the step is limited by
# the advective CFL condition only, ~10× the step CN/FE needs for the same accuracy.
register(Solver("spectral_rk4", 4, "spectral", _FIXED, False, True,
                "pseudo-spectral integrating-factor RK4 for periodic grids (Lawson 1967)",
                tableau=RK4))
