"""The parsed form of a spec: frozen dataclasses holding SymPy expressions.

A :class:`Spec` is what :func:`physml.load_spec` returns. It is the single source of
truth downstream: the compiler, the simulator, the trainer and the reports read it and
never go back to the text.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy

from ..errors import Pos

AXES = ("x", "y", "z")


#: The data splits a spec may declare, in the order they are simulated.
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Boundary:
    """Boundary condition of one grid axis: ``periodic``, ``neumann`` (zero flux) or
    ``dirichlet`` with a constant wall value."""

    kind: str
    value: float = 0.0

    def __str__(self) -> str:
        return f"dirichlet {self.value:g}" if self.kind == "dirichlet" else self.kind


@dataclass(frozen=True)
class Domain:
    """A regular grid ``shape`` over the box ``bounds`` with one boundary per axis.

    Grid convention (fixed, so that stencils and data agree): the spacing is
    ``h = (b - a) / N`` on every axis. Periodic axes hold the nodes ``a + i h``; neumann
    and dirichlet axes are cell-centred, ``a + (i + 1/2) h``, so the wall lies half a cell
    outside the first and last node (where the ghost values of the stencils mirror).
    """

    shape: tuple[int, ...]
    bounds: tuple[tuple[float, float], ...]
    boundaries: tuple[Boundary, ...]
    stencil: str = "central2"

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def axes(self) -> tuple[str, ...]:
        return AXES[: self.ndim]

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple((b - a) / n for (a, b), n in zip(self.bounds, self.shape))

    @property
    def lengths(self) -> tuple[float, ...]:
        return tuple(b - a for a, b in self.bounds)

    def coordinates(self) -> tuple[np.ndarray, ...]:
        """Node coordinates per axis (1-D arrays), following the grid convention."""
        out = []
        for (a, _), n, h, bc in zip(self.bounds, self.shape, self.spacing, self.boundaries):
            shift = 0.0 if bc.kind == "periodic" else 0.5
            out.append(a + (np.arange(n) + shift) * h)
        return tuple(out)

    def mesh(self) -> tuple[np.ndarray, ...]:
        """Coordinate arrays of the grid's shape ("ij" indexing: axis k is coordinate k)."""
        return tuple(np.meshgrid(*self.coordinates(), indexing="ij"))

    @property
    def periodic(self) -> bool:
        return all(b.kind == "periodic" for b in self.boundaries)

    def describe(self) -> str:
        dims = " x ".join(str(n) for n in self.shape)
        box = " x ".join(f"[{a:g}, {b:g}]" for a, b in self.bounds)
        bcs = sorted({str(b) for b in self.boundaries})
        bc = bcs[0] if len(bcs) == 1 else ", ".join(
            f"{ax} {b}" for ax, b in zip(self.axes, self.boundaries))
        return f"{dims} over {box}, {bc}, stencil {self.stencil}"


@dataclass(frozen=True)
class Param:
    """A physical parameter with its default value and its admissible interval."""

    name: str
    value: float
    lower: float = -math.inf
    upper: float = math.inf
    lower_open: bool = True
    upper_open: bool = True
    pos: Pos | None = field(default=None, compare=False)

    @property
    def symbol(self) -> sympy.Symbol:
        return sympy.Symbol(self.name)

    def bounds_text(self) -> str:
        lo = "-inf" if self.lower == -math.inf else f"{self.lower:g}"
        hi = "inf" if self.upper == math.inf else f"{self.upper:g}"
        return f"{'(' if self.lower_open else '['}{lo}, {hi}{')' if self.upper_open else ']'}"

    def contains(self, value: float) -> bool:
        lo_ok = value > self.lower if self.lower_open else value >= self.lower
        hi_ok = value < self.upper if self.upper_open else value <= self.upper
        return lo_ok and hi_ok


@dataclass(frozen=True)
class Let:
    """A derived quantity ``let name = expr`` (scalar or field), evaluated in order."""

    name: str
    expr: sympy.Expr
    pos: Pos | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Constraint:
    """``constraint LHS = RHS where CONDITION weight W`` (thesis eqs. 2.11–2.13): the
    forecast should satisfy ``LHS = RHS`` wherever ``condition`` holds on the data (a
    scar's potential is zero: ``constraint v = 0 where s > 0.5 weight 0.1``). Training adds
    ``W · mean over trajectories, frames and points of 1_condition (LHS − RHS)²`` to the
    loss; ``residual`` is ``LHS − RHS``.

    ``constraint v = 0 where s > 0.5 hard`` (eq. 2.11 itself): ``variable`` (the left
    side, one state variable) is held at the right side inside the solver wherever the
    condition holds on the forecast state: set there in the initial state, its rate zero
    there at every step; ``weight`` is unused. ``... weight W hard`` (``penalised``):
    the penalty in training, the hold in forecasts (validation, test, ``predict``)."""

    residual: sympy.Expr
    condition: sympy.Basic
    weight: float = 1.0
    pos: Pos | None = field(default=None, compare=False)
    variable: str | None = None
    penalised: bool = False

    @property
    def hard(self) -> bool:
        return self.variable is not None

    @property
    def value(self) -> sympy.Expr:
        """The right side of a hard constraint, ``variable − residual``."""
        return sympy.expand(sympy.Symbol(self.variable) - self.residual)


@dataclass(frozen=True)
class Mask:
    """A 0/1 field: 1 where ``condition`` (on the coordinates) holds."""

    name: str
    condition: sympy.Basic
    pos: Pos | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Equation:
    """``d(var)/dt = rhs``."""

    var: str
    rhs: sympy.Expr
    pos: Pos | None = field(default=None, compare=False)

    def sympy(self, t: sympy.Symbol = sympy.Symbol("t")) -> sympy.Eq:
        return sympy.Eq(sympy.Derivative(sympy.Function(self.var)(t), t), self.rhs)


@dataclass(frozen=True)
class System:
    """A dynamical system: its variables, parameters, derived quantities and equations."""

    name: str
    title: str
    states: tuple[str, ...]
    fields: tuple[str, ...]
    domain: Domain | None
    params: tuple[Param, ...]
    lets: tuple[Let, ...]
    masks: tuple[Mask, ...]
    equations: tuple[Equation, ...]
    source: str = ""
    pos: Pos | None = field(default=None, compare=False)

    @property
    def variables(self) -> tuple[str, ...]:
        return self.fields if self.domain is not None else self.states

    @property
    def is_grid(self) -> bool:
        return self.domain is not None

    def through_lets(self, names) -> set[str]:
        """``names`` and, recursively, every name the ``let``s among them are written
        with: what an expression using those names reads."""
        lets = {let.name: let.expr for let in self.lets}
        todo, seen = set(names), set()
        while todo - seen:
            name = (todo - seen).pop()
            seen.add(name)
            if name in lets:
                todo |= {sym.name for sym in lets[name].free_symbols}
        return seen

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def param_values(self) -> dict[str, float]:
        return {p.name: p.value for p in self.params}

    def state_shape(self) -> tuple[int, ...]:
        """Shape of one state (without batch): ``(n,)`` or ``(n_fields, *grid)``."""
        if self.domain is None:
            return (len(self.states),)
        return (len(self.fields), *self.domain.shape)


@dataclass(frozen=True)
class Call:
    """``name(arg, key=value, …)`` as written in a spec (samplers, networks, methods)."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()
    pos: Pos | None = field(default=None, compare=False)

    def options(self) -> dict[str, Any]:
        return dict(self.kwargs)

    def __str__(self) -> str:
        items = [str(a) for a in self.args] + [f"{k}={v}" for k, v in self.kwargs]
        return f"{self.name}({', '.join(items)})"


@dataclass(frozen=True)
class Sampler:
    """``initial u, v ~ call(...)``: how initial states of some variables are drawn."""

    variables: tuple[str, ...]
    call: Call
    pos: Pos | None = field(default=None, compare=False)


@dataclass(frozen=True)
class DataSpec:
    """The ``data:`` block: what to simulate (or which file to read) and how to split it."""

    splits: tuple[tuple[str, int], ...] = ()
    t0: float | None = None
    t1: float | None = None
    dt: float | None = None
    history: int = 0
    initial: tuple[Sampler, ...] = ()
    noise: float = 0.0
    solver: Call | None = None
    seed: int = 0
    file: str | None = None
    mapping: tuple[tuple[str, str], ...] = ()
    warmup: float = 0.0
    #: ``split time T``: each series of the file is cut at T — train before, test from T
    split_time: float | None = None
    pos: Pos | None = field(default=None, compare=False)
    file_pos: Pos | None = field(default=None, compare=False)

    @property
    def n_steps(self) -> int | None:
        """Number of saved frames (t0 included)."""
        if self.t0 is None or self.t1 is None or self.dt is None:
            return None
        return int(round((self.t1 - self.t0) / self.dt)) + 1

    def times(self) -> np.ndarray:
        n = self.n_steps
        if n is None:
            raise ValueError("the data block declares no time grid")
        return self.t0 + self.dt * np.arange(n)

    def split_sizes(self) -> dict[str, int]:
        return dict(self.splits)


@dataclass(frozen=True)
class PriorSpec:
    """The ``prior:`` block: the known (possibly incomplete) physics ``F_p``."""

    equations: tuple[Equation, ...] = ()
    lets: tuple[Let, ...] = ()
    #: ``param`` lines inside ``prior:``: parameters only the prior has (coefficients of
    #: terms absorbed from ``physml discover``); the true system knows nothing of them
    params: tuple[Param, ...] = ()
    learn: tuple[tuple[str, float | None], ...] = ()
    hamiltonian: Call | None = None
    stencil: str | None = None
    pos: Pos | None = field(default=None, compare=False)
    #: ``learn alpha per environment``: learned parameters with one value per environment
    per_environment: tuple[str, ...] = ()
    #: where each ``per environment`` parameter is named (for located errors)
    per_environment_pos: tuple[tuple[str, Pos], ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class DiscoverSpec:
    """``discover terms default, poly(3), sin(theta), lap(u)``: the candidate terms
    ``physml discover`` fits the learned augmentation with.

    ``default``: the default library (polynomials of the variables, the functions in the
    prior, spatial derivatives on a grid); ``degree``: the polynomials' highest degree
    (with ``poly(d)``); ``terms``: further terms, each an expression of the variables.
    Without ``default`` the library is exactly ``poly(d)`` and the listed terms.
    """

    default: bool = True
    degree: int | None = None
    terms: tuple[sympy.Expr, ...] = ()
    pos: Pos | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Environment:
    """One LEADS environment: a name and the parameter values that differ."""

    name: str
    values: tuple[tuple[str, float], ...]
    pos: Pos | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, float]:
        return dict(self.values)


@dataclass(frozen=True)
class TrainSpec:
    """``train method(...) key value …``."""

    method: Call
    options: tuple[tuple[str, Any], ...] = ()
    pos: Pos | None = field(default=None, compare=False)
    #: where each option's name is written (for errors found when the options are used)
    option_pos: tuple[tuple[str, Pos], ...] = field(default=(), compare=False)

    def option_dict(self) -> dict[str, Any]:
        return dict(self.options)


@dataclass(frozen=True)
class Spec:
    """A whole spec file: a system (defined here or taken with ``use``) and the experiment."""

    system: System
    data: DataSpec | None = None
    prior: PriorSpec | None = None
    augment: Call | None = None
    augment_on: tuple[str, ...] = ()   # empty: every equation
    #: ``augment NET with x, y, t``: extra network inputs (the domain's axes, ``t``)
    augment_with: tuple[str, ...] = ()
    environments: tuple[Environment, ...] = ()
    #: ``per_environment NET(...)``: the architecture of LEADS's G_e (thesis §3.4)
    per_environment: Call | None = None
    #: ``observe``: the measured variables; for linear maps (``observe u + v``) the text
    #: of each measured quantity, with ``observe_matrix`` its coefficients ``H`` (one row
    #: per quantity, one column per variable)
    observe: tuple[str, ...] = ()
    encoder: Call | None = None
    train: TrainSpec | None = None
    discover: DiscoverSpec | None = None
    path: str = "<string>"
    text: str = field(default="", compare=False, repr=False)
    uses: str | None = None
    observe_matrix: tuple[tuple[float, ...], ...] | None = None
    #: ``encoder NET given w``: hidden variables whose initial values the data give; the
    #: encoder adds to them (thesis eq. 2.8, the hybrid setting)
    encoder_given: tuple[str, ...] = ()
    #: ``constraint … where …``: soft constraints on the forecasts (thesis eq. 2.13)
    constraints: tuple[Constraint, ...] = ()

    def observed_channels(self) -> list[int] | None:
        """The state channels ``observe`` lists, in the state's order (None: all are
        observed, or the observations are linear maps: see ``observe_matrix``)."""
        variables = self.system.variables
        if not self.observe or self.observe_matrix is not None or \
                set(self.observe) == set(variables):
            return None
        return [i for i, v in enumerate(variables) if v in self.observe]

    def hidden_variables(self) -> tuple[str, ...]:
        """The variables not measured themselves (all of them under a linear map)."""
        if self.observe_matrix is not None:
            return tuple(self.system.variables)
        chans = self.observed_channels()
        return () if chans is None else tuple(
            v for i, v in enumerate(self.system.variables) if i not in chans)
