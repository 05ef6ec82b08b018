"""From a trained augmentation F_a to equations: sample, regress, rank.

:func:`discover` evaluates F_a on training states, restricted to the equations F_a acts
on, evaluates the candidate library on the same states (one compiled module,
:func:`~physml.symbolic.compile_terms`), and fits each equation's F_a with sparse
regression (:mod:`.regression`). Every term keeps its name, so the result prints as
equations in the spec's notation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy
import torch

from ..symbolic.printer import format_expr
from ..symbolic import compile_terms
from ..symbolic.spec import Spec
from .library import Library, library_for
from .regression import bootstrap as _bootstrap

#: Default threshold: a term carrying less than this share of its equation's rate
#: (RMS of the term over RMS of dX/dt) is dropped. A network trained to the noise level
#: reproduces the missing term only to about a percent of the rate (the pendulum's F_a
#: holds a spurious 0.01·theta, 1.2 % of dω/dt, beside −0.2·omega, 20 %).
THRESHOLD = 0.02
#: Most rows in one regression (states × grid points); states are drawn at random beyond.
MAX_ROWS = 100_000


@dataclass
class Term:
    """One candidate term of one equation, with what the fit says about it."""

    term: sympy.Expr
    name: str
    coefficient: float
    contribution: float
    inclusion: float | None = None
    low: float | None = None
    high: float | None = None

    @property
    def sign_known(self) -> int:
        """+1 or −1 when the bootstrap interval excludes 0 (0: not known)."""
        if self.low is None or self.high is None or self.inclusion is None:
            return 0
        if self.low > 0:
            return 1
        if self.high < 0:
            return -1
        return 0

    def as_dict(self) -> dict[str, Any]:
        out = {"term": self.name, "coefficient": self.coefficient,
               "contribution": self.contribution, "sympy": sympy.srepr(self.term),
               "latex": sympy.latex(self.term)}
        if self.inclusion is not None:
            out.update(inclusion=self.inclusion, interval=[self.low, self.high])
        return out


@dataclass
class EquationFit:
    """The fit of F_a in one equation: every term, ranked (kept terms first, by
    contribution), and how well the kept ones reproduce F_a."""

    var: str
    terms: list[Term]
    rate_rms: float       # RMS of the whole rate dX/dt (F_p + F_a): the reference scale
    fa_rms: float         # RMS of F_a in this equation
    residual_rms: float   # RMS of F_a − Σ ξ_j Θ_j
    #: η per learned parameter p of the prior: F_a also holds η·∂F_p/∂p, the prior's own
    #: term — with p + η instead of p the prior carries it (first order)
    shifts: dict[str, float] = field(default_factory=dict)

    @property
    def kept(self) -> list[Term]:
        return [t for t in self.terms if t.coefficient != 0]

    def expr(self, digits: int | None = None) -> sympy.Expr:
        """Σ ξ_j Θ_j over the kept terms (coefficients rounded to ``digits``)."""
        parts = []
        for t in self.kept:
            c = t.coefficient if digits is None else float(f"{t.coefficient:.{digits}g}")
            parts.append(sympy.Float(c, 15) * t.term)
        return sympy.Add(*parts)

    def as_dict(self) -> dict[str, Any]:
        e = self.expr(6)
        return {"var": self.var, "rate_rms": self.rate_rms, "fa_rms": self.fa_rms,
                "residual_rms": self.residual_rms, "fa_share": self.fa_rms /
                max(self.rate_rms, 1e-300), "expression": format_expr(e) if e != 0 else "0",
                "latex": sympy.latex(e), "sympy": sympy.srepr(self.expr()),
                "prior_shifts": dict(self.shifts),
                "terms": [t.as_dict() for t in self.terms]}


@dataclass
class Discovery:
    """What :func:`discover` found: one :class:`EquationFit` per equation F_a acts on."""

    equations: list[EquationFit]
    library: Library
    threshold: float
    samples: int
    rows: int
    bootstrap: int
    engine: str
    prior: dict[str, sympy.Expr] = field(default_factory=dict)
    #: the prior's learned parameters at the checkpoint the augmentation was taken from
    #: (after :func:`~.refine.apply`: refitted on the trajectories with the kept terms)
    learned: dict[str, float] = field(default_factory=dict)
    #: the trajectory-space refinement (:mod:`.refine`) the terms come from, if any
    refinement: Any = None

    def fit(self, var: str) -> EquationFit:
        for eq in self.equations:
            if eq.var == var:
                return eq
        raise KeyError(var)

    def identified(self, digits: int = 6) -> dict[str, sympy.Expr]:
        """The prior's right-hand sides (each learned parameter shifted by what F_a holds
        of its own term in that equation) plus the discovered terms, per variable."""
        out = {}
        fits = {eq.var: eq for eq in self.equations}
        for var, rhs in self.prior.items():
            shifts = fits[var].shifts if var in fits else {}
            values = {sympy.Symbol(k): sympy.Float(v + shifts.get(k, 0.0), 15)
                      for k, v in self.learned.items()}
            out[var] = rhs.xreplace(values)
        for eq in self.equations:
            out[eq.var] = out.get(eq.var, sympy.Integer(0)) + eq.expr(digits)
        return {v: _round(e, digits) for v, e in out.items()}

    def as_dict(self) -> dict[str, Any]:
        ident = self.identified()
        return {
            "library": list(self.library.names), "threshold": self.threshold,
            "threshold_meaning": "a term is kept when its RMS over the sampled states is at "
                                 "least this share of the RMS of its equation's rate dX/dt",
            "samples": self.samples, "rows": self.rows, "bootstrap": self.bootstrap,
            "engine": self.engine,
            "equations": [eq.as_dict() for eq in self.equations],
            "identified": {v: format_expr(e) for v, e in ident.items()},
            "identified_latex": {v: sympy.latex(e) for v, e in ident.items()},
            "learned": dict(self.learned),
            **({"refinement": self.refinement.as_dict()} if self.refinement is not None
               else {}),
        }


def _prior_rhs(spec: Spec) -> dict[str, sympy.Expr]:
    """The prior's right-hand sides with the lets written out (parameters as symbols)."""
    if spec.prior is None or not spec.prior.equations:
        return {}
    lets = (*spec.system.lets, *spec.prior.lets)
    out = {}
    for eq in spec.prior.equations:
        rhs = eq.rhs
        for let in reversed(lets):
            rhs = rhs.xreplace({sympy.Symbol(let.name): let.expr})
        out[eq.var] = rhs
    return out


def _directions(prior: dict[str, sympy.Expr], learned: dict[str, float], on
                ) -> list[tuple[str, str, sympy.Expr]]:
    """(variable, parameter, ∂F_p/∂p) for every learned parameter in each equation F_a
    acts on: the columns fitted beside the library and never thresholded, so that what
    F_a holds of the prior's own terms (APHYNITY's split leaves some there) is not
    mistaken for a new term."""
    out = []
    for var, rhs in prior.items():
        if var not in on:
            continue
        for name in learned:
            d = sympy.diff(rhs, sympy.Symbol(name))
            if d != 0:
                out.append((var, name, d))
    return out


def candidate_columns(library: Library, directions, learned) -> list[int]:
    """The library terms fitted as new terms in one equation: those no learned
    parameter's own direction there (``directions``, ∂F_p/∂p) already scales — a term
    like ``sin(theta)`` beside ``omega0^2*sin(theta)`` is that parameter, not a new term."""
    return [j for j, term in enumerate(library.terms)
            if not any(_proportional(term, d, learned) for d in directions)]


def _proportional(term: sympy.Expr, direction: sympy.Expr, learned) -> bool:
    ratio = sympy.cancel(term / direction)
    params = {sympy.Symbol(k) for k in learned}
    return ratio != 0 and ratio.free_symbols <= params


def _round(expr: sympy.Expr, digits: int) -> sympy.Expr:
    """Every float of ``expr`` to ``digits`` significant digits (sums of rounded floats
    print as 0.22204400000000002 otherwise)."""
    return expr.xreplace({f: sympy.Float(float(f"{float(f):.{digits}g}"))
                          for f in expr.atoms(sympy.Float)})


def _states(frames: torch.Tensor, times: torch.Tensor, max_states: int, seed: int
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Finite training states ``(M, *state)`` and their times, at most ``max_states``
    (drawn at random, reproducibly)."""
    n, T = frames.shape[:2]
    states = frames.flatten(0, 1)
    t = times.to(states.dtype).repeat(n)
    ok = torch.isfinite(states.flatten(1)).all(dim=1)
    states, t = states[ok], t[ok]
    if len(states) > max_states:
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(states), generator=g)[:max_states].sort().values
        states, t = states[idx], t[idx]
    return states, t


@torch.no_grad()
def discover(spec: Spec, field_model, frames: torch.Tensor, times: torch.Tensor,
             library: Library | None = None, threshold: float = THRESHOLD,
             bootstrap: int = 100, seed: int = 0, max_rows: int = MAX_ROWS,
             engine: str = "stlsq", degree: int | None = None) -> Discovery:
    """Fit the learned augmentation of ``field_model`` (a
    :class:`~physml.models.HybridModel`) with sparse regression on ``library``.

    ``frames`` ``(N, T, *state)``: training trajectories (their states are the samples);
    ``times`` ``(T,)``. ``threshold``: smallest share of an equation's rate a kept term
    carries. ``bootstrap``: number of resampled refits (0: none).
    """
    if field_model.augmentation is None:
        raise ValueError("this model has no augmentation network: nothing to discover")
    system = spec.system
    library = library if library is not None else library_for(spec, degree)
    on = spec.augment_on or system.variables
    learned = {k: float(v) for k, v in field_model.physical_parameters().items()}
    prior = _prior_rhs(spec)
    if prior and hasattr(field_model.prior, "param_values"):
        fixed = {sympy.Symbol(k): sympy.Float(float(v), 15)
                 for k, v in field_model.prior.param_values().items() if k not in learned}
        prior = {var: rhs.xreplace(fixed) for var, rhs in prior.items()}
    directions = _directions(prior, learned, on)
    extra = [d for _, _, d in directions]
    module = compile_terms(spec, [*library.terms, *extra], values=learned).to(torch.float64)
    points = int(np.prod(system.domain.shape)) if system.domain is not None else 1
    states, t = _states(frames, times, max(1, max_rows // points), seed)
    states = states.to(torch.float64)
    aug = field_model.augmentation
    was = aug.training
    field_model.eval()
    try:
        dtype = next((p.dtype for p in field_model.parameters()), torch.float64)
        x = states.to(dtype)
        fa = torch.cat([(aug(xb, tb) if field_model.aug_inputs else aug(xb)).double()
                        for xb, tb in zip(x.split(4096), t.to(dtype).split(4096))])
        with torch.enable_grad():  # a Hamiltonian prior differentiates its network
            rate = torch.cat([field_model(tb[0] if len(tb) else torch.zeros(()), xb)
                              .detach().double()
                              for xb, tb in zip(x.split(4096), t.split(4096))])
    finally:
        field_model.train(was)
    theta = torch.cat([module(torch.zeros((), dtype=torch.float64), xb)
                       for xb in states.split(4096)])
    n_lib = len(library)
    fits: list[EquationFit] = []
    names = library.names
    for var in on:
        i = system.variables.index(var)
        mine = [(k, name, d) for k, (v, name, d) in enumerate(directions) if v == var]
        cols = candidate_columns(library, [d for _, _, d in mine], learned)
        cols_all = cols + [n_lib + k for k, _, _ in mine]
        always = np.array([False] * len(cols) + [True] * len(mine))
        if system.domain is None:
            th, y, r = theta[:, cols_all], fa[:, i], rate[:, i]
        else:  # one row per (state, grid point)
            th = theta[:, cols_all].movedim(1, -1).reshape(-1, len(cols_all))
            y, r = fa[:, i].reshape(-1), rate[:, i].reshape(-1)
        th, y = th.numpy(), y.numpy()
        scale = float(np.sqrt(np.mean(r.numpy() ** 2)))
        sf = _bootstrap(th, y, threshold, scale, n=bootstrap, seed=seed, engine=engine,
                        always=always)
        terms = []
        for c, j in enumerate(cols):
            terms.append(Term(library.terms[j], names[j], float(sf.coef[c]),
                              float(sf.contribution[c]),
                              None if sf.inclusion is None else float(sf.inclusion[c]),
                              None if sf.low is None else float(sf.low[c]),
                              None if sf.high is None else float(sf.high[c])))
        terms.sort(key=lambda tm: (tm.coefficient == 0, -tm.contribution,
                                   -(tm.inclusion or 0)))
        shifts = {name: float(sf.coef[len(cols) + c]) for c, (_, name, _) in enumerate(mine)}
        fits.append(EquationFit(var, terms, scale, float(np.sqrt(np.mean(y ** 2))),
                                sf.residual * scale, shifts))
    return Discovery(fits, library, threshold, len(states), len(states) * points, bootstrap,
                     engine, prior, learned)



# -- several environments (LEADS and its baselines) ---------------------------------------

class _EnvironmentPart(torch.nn.Module):
    """Everything beyond the prior in environment ``e`` of a multi-environment model: the
    shared network (if any) plus ``G_e`` (thesis eq. 3.10)."""

    def __init__(self, model, e: int):
        super().__init__()
        self.model, self.e = model, e

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        env = torch.full((x.shape[0],), self.e, dtype=torch.long, device=x.device)
        t = torch.zeros((), dtype=x.dtype, device=x.device)
        with m.at_environments(env):  # the model's own forward, less its prior
            out = m(t, x)
            return out if m.prior is None else out - m.prior(t, x)


class EnvironmentView(torch.nn.Module):
    """Environment ``e`` of a :class:`~physml.models.environments.MultiEnvModel` seen as
    a one-environment hybrid model: the prior at ``e``'s parameters, and as its
    "augmentation" the unknown part of ``e``'s dynamics — what :func:`discover` fits."""

    def __init__(self, model, e: int):
        super().__init__()
        self.model, self.e = model, e
        self.prior = model.prior
        self.augmentation = _EnvironmentPart(model, e)
        self.aug_inputs = False

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        env = torch.full((x.shape[0],), self.e, dtype=torch.long, device=x.device)
        with self.model.at_environments(env):
            return self.model(t, x)

    def physical_parameters(self) -> dict[str, torch.Tensor]:
        """Shared learned values, and each per-environment one at ``e`` by its own name."""
        from ..models.hybrid import HybridModel

        m = self.model
        out = HybridModel.physical_parameters(m)
        if m.env_params is not None:
            out.update({k: v[self.e] for k, v in m.env_params.values().items()})
        return out


@dataclass
class EnvironmentDiscovery:
    """:func:`discover_environments`: one :class:`Discovery` per environment."""

    environments: dict[str, Discovery]

    def as_dict(self) -> dict[str, Any]:
        return {"environments": {name: d.as_dict()
                                 for name, d in self.environments.items()}}


def discover_environments(spec: Spec, model, frames: torch.Tensor, times: torch.Tensor,
                          env_names=None, **kw) -> EnvironmentDiscovery:
    """Per-environment discovery for a multi-environment model (LEADS, One-Per-Env, …):
    in each environment e, the unknown part of its dynamics (shared network + ``G_e``)
    is sampled on e's own training states and fitted as in :func:`discover`, so each
    environment gets its equations — with per-environment physical parameters, their
    values at e stand in the prior. ``frames`` ``(E, N, T, *state)``; keywords as
    :func:`discover`."""
    names = list(env_names or getattr(model, "env_names", ()) or
                 [f"e{i + 1}" for i in range(frames.shape[0])])
    if len(names) != frames.shape[0]:
        raise ValueError(f"{frames.shape[0]} environments of data, {len(names)} names")
    out = {}
    for e, name in enumerate(names):
        out[name] = discover(spec, EnvironmentView(model, e), frames[e], times, **kw)
    return EnvironmentDiscovery(out)
