"""Refine a discovery on the trajectories: sparse regression in trajectory space.

The regression of :func:`~.discovery.discover` fits the *network* F_a. Where the trajectory
fit pins F_a only loosely, that is not good enough: on reaction–diffusion the states of the
first frames are rough, their fast modes are damped within a step, and a rate error there
hardly shows in the trajectories — the trained pointwise F_a of the 1 600-trajectory run
is 5–30 % off the true reaction on training states while the fit is at ln MSE −9.9, and
its least-squares fit spreads over v, v², v³ (README, "Discovering missing physics").

:func:`refine` therefore fits the library terms to the *data*, the way the universal
differential equation workflow of Rackauckas et al. (2020, "Universal differential
equations for scientific machine learning", §2.1) refits what SINDy found:

1. the model is the prior plus ``Σ_j ξ_ej Θ_j`` over every candidate term of every
   equation F_a acts on, started at the discovery's coefficients;
2. ξ and the prior's learned parameters minimise the sum of squared trajectory errors
   ``S(θ) = Σ ‖X̂(t; θ) − X(t)‖²`` over windows of the training trajectories, by
   Levenberg–Marquardt (Marquardt 1963) with the Jacobian from forward-mode
   differentiation through the solver, one column per parameter;
3. terms are removed one at a time by the Gauss–Newton model of ``S`` ("optimal brain
   surgeon", Hassibi & Stork 1993): removing ξ_j and re-adjusting every other parameter
   raises ``S`` by ``ξ_j² / (H⁻¹)_jj`` (``H = JᵀJ``); the cheapest goes first, and the
   fit is redone by Levenberg–Marquardt after each removal;
4. elimination stops before the removal that would bring ``S`` above
   ``(1 + tol)·S_full``, ``S_full`` the full library's optimum (or above
   ``(10⁻⁵·RMS of the data)²`` per value, where the fit is that exact: noiseless data). The true terms of a system
   cost orders of magnitude more than that (removing −k = −0.005 from reaction–diffusion
   multiplies ``S`` by ~100); collinear spurious terms cost almost nothing once the
   others re-adjust. Every step of the path is kept for the report.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy
import torch

from ..symbolic import compile_terms
from ..symbolic.printer import format_expr
from ..symbolic.spec import Spec
from ..solve.tableau import RK4, TABLEAUS, rk_step
from .discovery import Discovery, Term, _directions, candidate_columns

#: Default tolerance: elimination stops before S exceeds (1 + TOL)·S_full.
TOL = 1.0
#: A trajectory error below this share of the data's RMS counts as an exact fit.
FLOOR_RMS = 1e-5
#: Levenberg–Marquardt iterations after each removal (the surgeon's step is already
#: close to the refitted optimum: the model is linear in ξ).
STEP_ITERS = 4
#: Trajectories used at most (drawn at random beyond).
MAX_TRAJECTORIES = 16


@dataclass
class Step:
    """One step of the elimination path: the term removed and the loss after the refit."""

    var: str
    term: str
    predicted: float  # Gauss–Newton prediction of S after the removal (and those before)
    loss: float       # S after the Levenberg–Marquardt refit (NaN: not refitted)
    kept: bool = False  # the term stayed: its removal would cross the limit

    def as_dict(self) -> dict[str, Any]:
        return {"var": self.var, "term": self.term, "predicted_loss": self.predicted,
                "loss": None if math.isnan(self.loss) else self.loss, "kept": self.kept}


@dataclass
class Refinement:
    """What :func:`refine` found: per equation the kept terms with their coefficients,
    the prior's parameters refitted with them, and the elimination path."""

    terms: dict[str, list[tuple[sympy.Expr, str, float]]]
    parameters: dict[str, float]
    loss_full: float            # S at the full library's optimum
    loss: float                 # S with the kept terms
    loss_start: float           # S at the discovery's coefficients
    cost: dict[str, dict[str, float]]  # var → term → S increase on removal / S (kept terms)
    contribution: dict[str, dict[str, float]]  # var → term → rms(ξΘ) / rms(dX/dt)
    path: list[Step]
    tol: float
    rows: int
    trajectories: int
    solver: str
    seconds: float
    candidates: int
    limit: float = math.nan
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": "trajectory-space elimination (Levenberg–Marquardt + Gauss–Newton "
                      "optimal brain surgeon)",
            "tol": self.tol, "tol_meaning": "terms are removed while the sum of squared "
            "trajectory errors stays within (1 + tol) of the full library's (or below "
            "(1e-5 × the data's RMS)² per value)", "limit": self.limit,
            "loss_full": self.loss_full, "loss": self.loss, "loss_start": self.loss_start,
            "rows": self.rows, "trajectories": self.trajectories, "solver": self.solver,
            "candidates": self.candidates, "seconds": self.seconds,
            "parameters": dict(self.parameters),
            "equations": {var: [{"term": name, "coefficient": c,
                                 "removal_cost": self.cost[var].get(name),
                                 "contribution": self.contribution[var].get(name)}
                                for _, name, c in kept]
                          for var, kept in self.terms.items()},
            "identified": {var: format_expr(sympy.Add(*(sympy.Float(c, 15) * t
                                                       for t, _, c in kept)))
                           for var, kept in self.terms.items()},
            "path": [s.as_dict() for s in self.path],
        }


class _Problem:
    """``θ → residuals`` for windows of the training trajectories: the prior (through
    ``functional_call`` on its raw parameters) plus the masked library sum."""

    def __init__(self, spec: Spec, field_model, discovery: Discovery, frames: torch.Tensor,
                 times: torch.Tensor, tableau, substeps: int):
        system = spec.system
        self.prior = field_model.prior
        self.names = [n for n, _ in self.prior.named_parameters()] if self.prior is not None \
            else []
        self.shapes = [p.shape for _, p in self.prior.named_parameters()] \
            if self.prior is not None else []
        learned = dict(discovery.learned)
        directions = _directions(discovery.prior, learned, [e.var for e in discovery.equations])
        library = discovery.library
        self.module = compile_terms(spec, list(library.terms)).to(torch.float64)
        self.vars = [e.var for e in discovery.equations]
        self.index = [system.variables.index(v) for v in self.vars]
        # candidate (equation, term) pairs: the library terms discover fits in each equation
        self.pairs = [(e, j) for e, var in enumerate(self.vars)
                      for j in candidate_columns(library, [d for v, _, d in directions
                                                           if v == var], learned)]
        self.n_prior = sum(int(np.prod(s)) if len(s) else 1 for s in self.shapes)
        self.n_lib = len(library)
        self.frames = frames
        self.times = times
        self.tableau = tableau
        self.substeps = substeps

    def start(self, discovery: Discovery) -> torch.Tensor:
        raw = [p.detach().double().reshape(-1) for _, p in self.prior.named_parameters()] \
            if self.prior is not None else []
        coef = {}
        for eq in discovery.equations:
            for tm in eq.terms:
                coef[(eq.var, tm.name)] = tm.coefficient
        names = discovery.library.names
        xi = [coef.get((self.vars[e], names[j]), 0.0) for e, j in self.pairs]
        return torch.cat([*raw, torch.tensor(xi, dtype=torch.float64)])

    def _field(self, theta: torch.Tensor, active: torch.Tensor):
        params, at = {}, 0
        for name, shape in zip(self.names, self.shapes):
            n = int(np.prod(shape)) if len(shape) else 1
            params[name] = theta[at:at + n].reshape(shape)
            at += n
        xi = theta[self.n_prior:] * active
        W = torch.zeros(len(self.vars), self.n_lib, dtype=theta.dtype)
        rows = torch.tensor([e for e, _ in self.pairs], dtype=torch.long)
        cols = torch.tensor([j for _, j in self.pairs], dtype=torch.long)
        W = W.index_put((rows, cols), xi)
        prior, module, index = self.prior, self.module, self.index

        def f(t, x):
            out = torch.func.functional_call(prior, params, (t, x)) if prior is not None \
                else torch.zeros_like(x)
            lib = module(t, x)  # (B, n_lib, *grid)
            add = torch.einsum("el,bl...->be...", W, lib)
            parts = list(out.unbind(1))
            for e, i in enumerate(index):
                parts[i] = parts[i] + add[:, e]
            return torch.stack(parts, 1)

        return f

    def residual(self, theta: torch.Tensor, active: torch.Tensor, idx: slice
                 ) -> torch.Tensor:
        """Flattened ``X̂ − X`` of the windows ``idx``, every frame after the first."""
        f = self._field(theta, active)
        X = self.frames[idx]
        x = X[:, 0]
        out = []
        for k in range(1, X.shape[1]):
            t0, t1 = self.times[k - 1], self.times[k]
            h = float(t1 - t0) / self.substeps
            for s in range(self.substeps):
                x = rk_step(self.tableau, f, t0 + s * h, h, x)
            out.append(x - X[:, k])
        return torch.stack(out, 1).reshape(-1)


def _windows(frames: torch.Tensor, horizon: int | None, max_trajectories: int, seed: int
             ) -> torch.Tensor:
    """Non-overlapping windows of ``horizon + 1`` frames of at most ``max_trajectories``
    trajectories (all of them when fewer)."""
    n, T = frames.shape[:2]
    if n > max_trajectories:
        g = torch.Generator().manual_seed(seed)
        frames = frames[torch.randperm(n, generator=g)[:max_trajectories].sort().values]
    H = T - 1 if horizon is None else max(1, min(horizon, T - 1))
    wins = [frames[:, s:s + H + 1] for s in range(0, T - 1, H) if s + H < T]
    return torch.cat(wins)


def _normal(problem: _Problem, theta, active_params, active, chunk: int):
    """``S``, ``g = Jᵀr`` and ``H = JᵀJ`` over the active parameters, the Jacobian's
    columns from forward-mode differentiation, the windows in chunks."""
    P = len(active_params)
    H = torch.zeros(P, P, dtype=torch.float64)
    g = torch.zeros(P, dtype=torch.float64)
    S = 0.0
    n = problem.frames.shape[0]
    eye = torch.eye(len(theta), dtype=theta.dtype)[active_params]
    for a in range(0, n, chunk):
        idx = slice(a, min(n, a + chunk))

        def column(tangent, _idx=idx):
            return torch.func.jvp(lambda th: problem.residual(th, active, _idx),
                                  (theta,), (tangent,))

        # every column in one batched forward pass (vmap over the tangents)
        rs, J = torch.func.vmap(column)(eye)
        r = rs[0]
        J = J.T
        H += J.T @ J
        g += J.T @ r
        S += float(r @ r)
    return S, g, H


def _loss(problem: _Problem, theta, active, chunk: int) -> float:
    n = problem.frames.shape[0]
    S = 0.0
    with torch.no_grad():
        for a in range(0, n, chunk):
            r = problem.residual(theta, active, slice(a, min(n, a + chunk)))
            S += float(r @ r)
    return S


def _levenberg_marquardt(problem, theta, active, chunk, iters, rtol=1e-7):
    """Minimise S over the prior's parameters and the active ξ (Marquardt's scaling by
    diag(H)); returns θ, S and H at the end."""
    params = list(range(problem.n_prior)) + \
        [problem.n_prior + k for k in range(len(problem.pairs)) if active[k] > 0]
    mu = 1e-3
    S, g, H = _normal(problem, theta, params, active, chunk)
    for _ in range(iters):
        D = torch.diag(torch.diag(H).clamp_min(1e-30))
        improved = False
        for _ in range(12):
            try:
                step = torch.linalg.solve(H + mu * D, -g)
            except RuntimeError:
                mu *= 10
                continue
            trial = theta.clone()
            trial[params] += step
            S_new = _loss(problem, trial, active, chunk)
            if math.isfinite(S_new) and S_new < S:
                theta, mu, improved = trial, max(mu / 10, 1e-12), True
                break
            mu *= 10
        if not improved:
            break
        done = (S - S_new) <= rtol * S
        S, g, H = _normal(problem, theta, params, active, chunk)
        if done:
            break
    return theta, S, H, params


def _eliminate(problem: _Problem, theta: torch.Tensor, S: float, H: torch.Tensor,
               params: list[int], limit: float, names) -> tuple[list["Step"], list[int]]:
    """Backward elimination on the Gauss–Newton model ``S(θ) ≈ S + (θ−θ*)ᵀH(θ−θ*)``:
    remove the ξ whose removal (with the others re-adjusted, ``δθ = −H⁻¹e_j·θ_j/(H⁻¹)_jj``)
    costs least, ``θ_j²/(H⁻¹)_jj``, while the predicted S stays ≤ ``limit``; then go on
    predicting past the limit, so the report shows what each further removal would cost.
    Returns the path and the removed candidates' indices in order."""
    theta = theta.clone()
    idx = list(params)
    path: list[Step] = []
    order: list[int] = []
    while True:
        xi_pos = [i for i, p in enumerate(idx) if p >= problem.n_prior]
        if not xi_pos:
            break
        Hs = H[np.ix_(
            [params.index(p) for p in idx], [params.index(p) for p in idx])]
        Hinv = torch.linalg.pinv(Hs)
        vals = theta[idx]
        costs = torch.stack([vals[i] ** 2 / Hinv[i, i].clamp_min(1e-300) for i in xi_pos])
        best = int(torch.argmin(costs))
        i = xi_pos[best]
        k = idx[i] - problem.n_prior
        S = S + float(costs[best])
        e, j = problem.pairs[k]
        step = Step(problem.vars[e], names[j], S, math.nan, kept=S > limit)
        if S > limit:
            path.append(step)  # the first removal beyond the limit: what it would cost
            break
        theta[idx] = vals - Hinv[:, i] * vals[i] / Hinv[i, i]
        theta[idx[i]] = 0.0
        path.append(step)
        order.append(k)
        idx = idx[:i] + idx[i + 1:]
    return path, order


def refine(spec: Spec, field_model, discovery: Discovery, frames: torch.Tensor,
           times: torch.Tensor, *, tol: float = TOL, solver: str = "rk4",
           step: float | None = None, horizon: int | None = None,
           max_trajectories: int = MAX_TRAJECTORIES, seed: int = 0, iters: int = 30,
           chunk: int = 8, progress=None) -> Refinement:
    """Refit the library on the training trajectories and eliminate terms (module
    docstring). ``frames`` ``(N, T, *state)``; ``solver``: a method with a Butcher tableau,
    run at fixed steps (any other, e.g. spectral, integrates with rk4); ``step``: largest
    step (default: the
    data's interval); ``horizon``: frames per window (default: whole trajectories);
    ``progress``: called with a line per stage."""
    say = progress or (lambda line: None)
    if tol <= 0:
        raise ValueError(f"refine tolerance {tol:g}: a relative loss increase > 0")
    if getattr(field_model, "n_envs", 1) > 1:
        raise ValueError("refining per-environment models is not supported yet")
    t_start = time.perf_counter()
    tableau = TABLEAUS.get(solver, RK4)
    frames = frames.to(torch.float64)
    times = times.to(torch.float64)
    ok = torch.isfinite(frames.flatten(1)).all(dim=1)
    wins = _windows(frames[ok], horizon, max_trajectories, seed)
    dt = float((times[1:] - times[:-1]).max())
    substeps = 1 if step is None else max(1, math.ceil(dt / step - 1e-9))
    problem = _Problem(spec, field_model, discovery, wins, times[:wins.shape[1]], tableau,
                       substeps)
    names = discovery.library.names
    active = torch.ones(len(problem.pairs), dtype=torch.float64)
    theta = problem.start(discovery)
    S_start = _loss(problem, theta, active, chunk)
    # a discovery from a poorly pinned F_a may start the trajectories far off (or blow up):
    # then start from the prior alone, ξ = 0
    zero = theta.clone()
    zero[problem.n_prior:] = 0.0
    S_zero = _loss(problem, zero, active, chunk)
    start = "the discovery's coefficients"
    if not S_start <= S_zero:
        theta, S_start, start = zero, S_zero, "the prior alone"
    say(f"{len(problem.pairs)} candidate terms, {wins.shape[0]} windows; S = {S_start:.4g} "
        f"at {start}")
    theta, S_full, H, params = _levenberg_marquardt(problem, theta, active, chunk, iters)
    say(f"full library refitted: S = {S_full:.4g} ({time.perf_counter() - t_start:.0f} s)")
    # an error below FLOOR_RMS of the data's RMS counts as none: on noiseless data S_full
    # sits at the solver's and the storage's rounding, where a relative limit alone would
    # keep terms of 1e-7
    limit = max((1 + tol) * S_full, FLOOR_RMS ** 2 * float(wins[:, 1:].pow(2).sum()))
    path, order = _eliminate(problem, theta, S_full, H, params, limit, names)
    # refit the support the quadratic model chose; where the real S exceeds the limit, put
    # the last removed terms back one by one
    kept = len(order)
    while True:
        trial_active = active.clone()
        for k in order[:kept]:
            trial_active[k] = 0.0
        trial = theta.clone()
        trial[problem.n_prior:] *= trial_active
        trial, S, H_new, params_new = _levenberg_marquardt(problem, trial, trial_active,
                                                           chunk, iters)
        if kept:
            path[kept - 1].loss = S
        say(f"{kept} terms removed: S = {S:.4g} (limit {limit:.4g}; "
            f"{time.perf_counter() - t_start:.0f} s)")
        if S <= limit or kept == 0:
            break
        kept -= 1
    theta, H, params, active = trial, H_new, params_new, trial_active
    path = path[:kept] + [dataclasses.replace(st, kept=True) for st in path[kept:]]
    # removal cost of each kept term (S increase relative to S, Gauss–Newton)
    Hinv = torch.linalg.pinv(H)
    cost: dict[str, dict[str, float]] = {v: {} for v in problem.vars}
    terms: dict[str, list[tuple[sympy.Expr, str, float]]] = {v: [] for v in problem.vars}
    for i, p in enumerate(params):
        if p < problem.n_prior:
            continue
        e, j = problem.pairs[p - problem.n_prior]
        var = problem.vars[e]
        terms[var].append((discovery.library.terms[j], names[j], float(theta[p])))
        cost[var][names[j]] = float(theta[p] ** 2 / Hinv[i, i].clamp_min(1e-300)) / S
    values = _prior_values(field_model, problem, theta)
    contribution = _contributions(problem, discovery, terms)
    rows = int(wins[:, 1:].numel())
    return Refinement(terms, values, S_full, S, S_start, cost, contribution, path, tol, rows,
                      int(wins.shape[0]), f"{tableau.name} ×{substeps}",
                      time.perf_counter() - t_start, len(problem.pairs), limit)


def _prior_values(field_model, problem: _Problem, theta: torch.Tensor) -> dict[str, float]:
    """The prior's learned parameters (constrained) at θ, read from a copy of the model
    (the caller's model is left as it was)."""
    if problem.prior is None:
        return {}
    model = copy.deepcopy(field_model)
    at = 0
    with torch.no_grad():
        for name, p in model.prior.named_parameters():
            n = p.numel()
            p.copy_(theta[at:at + n].reshape(p.shape).to(p.dtype))
            at += n
        return {k: float(v) for k, v in model.physical_parameters().items()}


@torch.no_grad()
def _contributions(problem: _Problem, discovery: Discovery, terms) -> dict[str, dict[str, float]]:
    """``|ξ_j|·rms(Θ_j)`` over the windows' states, relative to the RMS of the equation's
    rate (the discovery's reference scale): the share of the dynamics a term carries."""
    states = problem.frames.flatten(0, 1)
    lib = torch.cat([problem.module(torch.zeros((), dtype=torch.float64), xb)
                     for xb in states.split(1024)])
    rms = lib.reshape(lib.shape[0], lib.shape[1], -1).pow(2).mean(dim=(0, 2)).sqrt()
    names = discovery.library.names
    out: dict[str, dict[str, float]] = {}
    for eq in discovery.equations:
        scale = max(eq.rate_rms, 1e-300)
        out[eq.var] = {name: abs(c) * float(rms[names.index(name)]) / scale
                       for _, name, c in terms[eq.var]}
    return out


def apply(discovery: Discovery, refinement: Refinement) -> Discovery:
    """``discovery`` with each equation's terms replaced by the refined ones (coefficient
    0 for removed terms; the F_a bootstrap's inclusion and intervals no longer apply), the
    prior's learned parameters by their refitted values, and ``refinement`` attached —
    what :func:`~.absorb.absorb` then writes into a new spec."""
    fits = []
    for eq in discovery.equations:
        kept = {name: c for _, name, c in refinement.terms.get(eq.var, [])}
        share = refinement.contribution.get(eq.var, {})
        terms = [Term(t.term, t.name, kept.get(t.name, 0.0), share.get(t.name, 0.0))
                 for t in eq.terms]
        terms.sort(key=lambda tm: (tm.coefficient == 0, -tm.contribution))
        fits.append(dataclasses.replace(eq, terms=terms, shifts={}))
    learned = {k: refinement.parameters.get(k, v) for k, v in discovery.learned.items()}
    return dataclasses.replace(discovery, equations=fits, learned=learned,
                               refinement=refinement)


__all__ = ["refine", "apply", "Refinement", "Step", "TOL"]
