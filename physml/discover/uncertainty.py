"""Intervals on identified physical parameters, after training.

**Laplace** (default, cheap). Read the training loss as a Gaussian negative
log-likelihood, ``NLL(θ) = Σ_i m_i·ρ(e_i)/(2σ²)`` (``e_i`` the error of trajectory ``i``
over its ``m_i`` values, ``ρ`` the identity or, for ``loss robust``, the Cauchy loss with
its scale held), with σ² estimated from the residuals. Find its minimum from the
inspected state by Levenberg-damped Newton steps on the physical parameters (the best
validation checkpoint is rarely the minimum of the training loss), and take the **full
Hessian** ``H`` there (autograd, second derivatives of the residuals included) in the
unconstrained coordinates training uses — the Gauss–Newton matrix ``JᵀJ/σ²`` where ``H`` is
not positive definite, and the report says so.

``H⁻¹`` alone assumes independent residuals. A forecast, though, starts from its observed
first frame, whose noise runs through the whole trajectory (an errors-in-variables
problem): on the pendulum ``H⁻¹`` is 3–10× too narrow. The covariance is therefore the
sandwich ``H⁻¹·M·H⁻¹`` (White 1982) with ``M`` the variance of the score: for small ODE
states (``sandwich="propagated"``), computed from the model when every frame, the first
included, carries independent noise of one variance σ_o², ``Cov(r_i) = σ_o²(I + S_iS_iᵀ)``
with ``S_i = ∂X_i/∂x0`` (forward-mode autograd), σ_o² from ``E[SSR_i] = σ_o²(n_i +
‖S_i‖²)``; otherwise (grids, learned initial states) the outer product of per-trajectory
scores (``"clustered"``, Liang & Zeger 1986). Intervals are ``r̂ ± z·sd`` in the
unconstrained coordinates mapped back through the bounds' transform, so they never leave
the declared interval; a parameter the data do not determine (singular ``H``) gets an
infinite one. A network in the model (APHYNITY) is held at its trained weights: the
interval is conditional on F_a and ignores the confounding
:mod:`~physml.discover.identifiability` measures.

**Bootstrap** (``n`` replicates, assumption-light). Training trajectories are resampled
with replacement and the parameters refitted from the inspected state: for a
physics-only model all replicates at once (one batched solve per step, each replicate's
parameters its own), by Levenberg-damped Newton steps on the training loss; with a
network, each replicate retrains a copy of the whole model for a number of Adam steps.
Intervals are the percentiles of the replicates; the value shown is the refit on all
training trajectories.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from statistics import NormalDist
from typing import Any

import torch

from ..data import Trajectories
from ..objectives.losses import per_trajectory_errors
from ..solve import odeint
from ..symbolic import VectorField
from ..symbolic.compiler import to_constrained


@dataclasses.dataclass
class Interval:
    name: str
    value: float
    low: float
    high: float
    std: float                    # natural units (delta method / replicate spread)
    true: float | None = None

    @property
    def covers(self) -> bool | None:
        return None if self.true is None else self.low <= self.true <= self.high


@dataclasses.dataclass
class Uncertainty:
    """Intervals of every learned physical parameter and how they were obtained."""

    method: str                   # "laplace" or "bootstrap"
    level: float
    intervals: list[Interval]
    note: str                     # which Hessian / how many replicates, σ̂²
    sigma2: float | None = None
    replicates: list[dict[str, float]] | None = None
    inspected: dict[str, float] | None = None   # the state inspected, where it differs

    def lines(self) -> list[str]:
        pct = f"{100 * self.level:g} %"
        out = [f"{pct} intervals ({self.note}):"]
        for iv in self.intervals:
            truth = ""
            if iv.true is not None:
                truth = f"  (true {iv.true:.6g}: {'inside' if iv.covers else 'outside'})"
            out.append(f"  {iv.name} = {iv.value:.6g}  [{iv.low:.6g}, {iv.high:.6g}]  "
                       f"± {iv.std:.3g}{truth}")
        return out

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for iv, row in zip(self.intervals, d["intervals"]):
            row["covers"] = iv.covers
        return d


def _prior(rollout) -> VectorField:
    prior = rollout.field.prior
    if not isinstance(prior, VectorField) or not prior.learnable:
        raise ValueError("the model has no learned physical parameters (a `prior:` block "
                         "with `learn`) to give intervals for")
    return prior


def _plain(rollout):
    """A float64 copy of the rollout that integrates eagerly (no compile, no adjoint, no
    checkpointing: second derivatives go through the plain solver loop)."""
    model = copy.deepcopy(rollout).double()
    model.solver = dataclasses.replace(model.solver, compiled=False, adjoint=False,
                                       recompute=False)
    model.train()  # as in training: learned initial-state offsets apply
    return model


def _counts(train: Trajectories) -> tuple[torch.Tensor, torch.Tensor]:
    """Per trajectory: the values its error ``e_i`` averages over (first frame included,
    as in training) and the values the model predicts (first frame left out)."""
    if train.mask is None:
        per = train.frames[0].numel()
        m = torch.full((len(train),), float(per), dtype=torch.float64)
        return m, m * (train.n_frames - 1) / train.n_frames
    mask = train.mask.double().expand_as(train.frames)
    return mask.flatten(1).sum(1), mask[:, 1:].flatten(1).sum(1)


def _double(b):
    return dataclasses.replace(b, x0=b.x0.double(), t=b.t.double(), target=b.target.double(),
                               mask=None if b.mask is None else b.mask.double())


def _errors(model, train: Trajectories, rows: slice) -> torch.Tensor:
    """Per-trajectory errors ``e_i`` of some training trajectories, differentiable."""
    b = _double(train.batch(rows))
    return per_trajectory_errors(model(b).pred, b.target, b.mask)


def _nll(e: torch.Tensor, m: torch.Tensor, kind: str, s2, sigma2: float) -> torch.Tensor:
    """The training loss as a negative log-likelihood: ``Σ m_i·e_i / 2σ²`` (``robust``:
    ``e_i`` through the Cauchy loss, its scale ``s²`` held)."""
    if s2 is not None:
        e = s2 * torch.log1p(e / s2)
    return (m * e).sum() / (2 * sigma2)


def laplace(rollout, train: Trajectories, loss: str = "mse", level: float = 0.95,
            truth: dict[str, float] | None = None, chunk: int = 64,
            max_trajectories: int | None = None, refine: int = 40,
            sandwich: bool | str = "auto") -> Uncertainty:
    """Laplace intervals of the learned physical parameters of a trained ``rollout`` on its
    training trajectories ``train`` (see the module docstring). ``max_trajectories``: sum
    the Hessian over that many of them, evenly spaced, and scale it to all."""
    total = len(train)
    if max_trajectories is not None and total > max_trajectories:
        rows = torch.linspace(0, total - 1, max_trajectories).round().long()
        train = _subset(train, rows)
    model = _plain(rollout)
    prior = _prior(model)
    names = list(prior.learnable)
    raws = [prior.raw[n] for n in names]
    for q in model.parameters():
        q.requires_grad_(False)
    for r in raws:
        r.requires_grad_(True)
    p = len(raws)
    m, pred = _counts(train)
    chunks = [slice(i, i + chunk) for i in range(0, len(train), chunk)]
    inspected = {nm: float(v.detach()) for nm, v in prior.param_values().items()
                 if nm in names}
    scale = total / len(train)
    sigma2, s2, how = _noise(model, train, chunks, m, pred, p, loss)
    value, grad, hess = _grad_hess(model, raws, train, chunks, m, loss, s2, sigma2, scale)
    steps = 0
    # The Laplace approximation is a Gaussian at the mode of the training loss; the state
    # inspected (the best validation checkpoint, or a run stopped early) may lie a few
    # standard deviations from it. Levenberg-damped Newton steps on the physical
    # parameters find it (the robust loss's scale held during a step, as in training).
    damping = 1e-9
    for _ in range(refine):
        if not bool(torch.isfinite(hess).all() & torch.isfinite(grad).all()):
            break
        diag = torch.diag(hess.diagonal().abs().clamp_min(1e-300))
        try:
            torch.linalg.cholesky(hess + damping * diag)
        except RuntimeError:
            damping *= 100
            continue
        delta = -torch.linalg.solve(hess + damping * diag, grad)
        if float((delta.pow(2) * hess.diagonal().abs()).sum()) < 1e-10 and damping < 1e-3:
            break  # (a tiny step under heavy damping is not convergence)
        if damping > 1e12:
            break
        with torch.no_grad():
            for r, d in zip(raws, delta):
                r += d
            trial = sum(float(_nll(_errors(model, train, c), m[c], loss, s2, sigma2))
                        for c in chunks) * scale
            if not trial <= value:  # worse, or not finite (an overflowing solve)
                for r, d in zip(raws, delta):
                    r -= d
                damping *= 100
                continue
        damping = max(damping / 100, 1e-12)
        steps += 1
        sigma2, s2, how = _noise(model, train, chunks, m, pred, p, loss)
        value, grad, hess = _grad_hess(model, raws, train, chunks, m, loss, s2, sigma2, scale)
    if not (math.isfinite(value) and bool(torch.isfinite(hess).all())):
        raise ValueError("the training loss or its Hessian is not finite at the inspected "
                         "state, so no Laplace interval; train longer, or try --bootstrap")
    kind = "full Hessian of the training loss"
    if float(torch.linalg.eigvalsh(hess)[0]) <= 0:
        hess = _gauss_newton(model, prior, names, train, sigma2, chunks) * scale
        kind = ("Gauss–Newton matrix (the full Hessian is not positive definite here: "
                "the run did not end at a minimum)")
    cov = _covariance(hess)
    note = f"Laplace, {kind}, {how} = {sigma2:.3g}"
    plain = None
    small_state = train.frames[0, 0].numel() <= 16
    if sandwich == "auto":
        sandwich = "propagated" if model.x0_offset is None and small_state else "clustered"
    if sandwich == "propagated" and model.x0_offset is None and small_state \
            and bool(torch.isfinite(cov.diagonal()).all()):
        meat, sigma_o2 = _propagated_meat(model, prior, names, train, chunks, s2, sigma2, p)
        meat = meat * scale
        plain = cov.diagonal().sqrt()
        cov = cov @ meat @ cov
        ratio = float((cov.diagonal().sqrt() / plain).max())
        sigma2 = sigma_o2
        note += (f"; covariance H⁻¹·M·H⁻¹, M the score variance when the first frame is as "
                 f"noisy as the others (σ_o² = {sigma_o2:.3g}): {ratio:.2g}× the width of "
                 "H⁻¹ alone")
    elif sandwich and len(train) > p and bool(torch.isfinite(cov.diagonal()).all()):
        # Residuals along one trajectory are not independent (its noisy first frame shifts
        # the whole forecast), which H⁻¹ alone assumes: the trajectory-clustered sandwich
        # H⁻¹·(Σ_i s_i s_iᵀ)·H⁻¹, s_i the score of trajectory i (White 1982; Liang &
        # Zeger 1986), with the small-sample factor N/(N − p).
        scores = _scores(model, prior, names, train, chunks, m, loss, s2, sigma2)
        meat = scores.T @ scores * (len(train) / (len(train) - p)) * scale
        plain = cov.diagonal().sqrt()
        cov = cov @ meat @ cov
        ratio = float((cov.diagonal().sqrt() / plain).max())
        note += ("; covariance H⁻¹·B·H⁻¹ with B the outer product of per-trajectory scores "
                 f"(robust to residuals correlated along a trajectory): {ratio:.2g}× the width of "
                 "H⁻¹ alone")
    if not bool(torch.isfinite(cov.diagonal()).all()):
        note += ("; the Hessian is singular: the data do not determine the parameters with "
                 "an infinite interval (see `physml check --identifiability`)")
    if len(train) < total:
        note += f"; the Hessian from {len(train)} of {total} training trajectories, scaled"
    if model.field.augmentation is not None:
        note += "; the network held at its trained weights"
    intervals = _intervals(prior, names, cov, level, truth)
    if steps:
        far = max((abs(iv.value - inspected[iv.name]) / iv.std for iv in intervals
                   if iv.std > 0 and math.isfinite(iv.std)), default=0.0)
        note += (f"; centred at the training loss's minimum, {steps} Newton step"
                 f"{'s' if steps > 1 else ''} from the inspected state "
                 f"({', '.join(f'{k} = {v:.6g}' for k, v in inspected.items())}; "
                 f"{far:.2g} standard deviations away)")
    return Uncertainty("laplace", level, intervals, note, sigma2=sigma2,
                       inspected=inspected)


def _noise(model, train, chunks, m, pred, p: int, loss: str):
    """σ̂² from the residuals, the robust loss's scale ``s²`` (or None), and the words."""
    n = float(pred.sum())
    with torch.no_grad():
        e = torch.cat([_errors(model, train, c) for c in chunks])
    if loss == "robust" and len(train) >= 3:
        variance = e * m / pred.clamp_min(1)      # residual variance of each trajectory
        s2 = (10.0 * e.median()).clamp_min(torch.finfo(e.dtype).tiny)
        return (float(variance.median()) * n / max(n - p, 1), s2,
                "σ̂² the median per-trajectory residual variance (robust loss)")
    return float((e * m).sum()) / max(n - p, 1), None, "σ̂² from the residuals"


def _grad_hess(model, raws, train, chunks, m, loss, s2, sigma2: float, scale: float):
    """Gradient and full Hessian of the NLL w.r.t. the raw parameters, summed over the
    chunks and scaled to all training trajectories."""
    p = len(raws)
    value = 0.0
    grad = torch.zeros(p, dtype=torch.float64)
    hess = torch.zeros(p, p, dtype=torch.float64)
    for c in chunks:
        nll = _nll(_errors(model, train, c), m[c], loss, s2, sigma2)
        value += float(nll.detach())
        g = torch.stack(torch.autograd.grad(nll, raws, create_graph=True))
        grad += g.detach()
        for j in range(p):
            row = torch.autograd.grad(g[j], raws, retain_graph=j < p - 1)
            hess[j] += torch.stack(row).detach()
    return value * scale, grad * scale, 0.5 * (hess + hess.T) * scale


def _covariance(hess: torch.Tensor, tol: float = 1e-10) -> torch.Tensor:
    """``H⁻¹``; where ``H`` is singular, infinite variance for every parameter that takes
    part in a null direction (a pseudo-inverse would report a finite, false interval)."""
    ev, vec = torch.linalg.eigh(hess)
    null = ev <= tol * ev.abs().max().clamp_min(1e-300)
    if not bool(null.any()):
        return torch.linalg.inv(hess)
    cov = vec[:, ~null] @ torch.diag(1 / ev[~null]) @ vec[:, ~null].T
    involved = vec[:, null].abs().amax(dim=1) > 1e-6
    cov[involved, involved] = math.inf
    return cov


def _subset(train: Trajectories, rows: torch.Tensor) -> Trajectories:
    """Some of the trajectories, keeping their indices (learned initial offsets)."""
    sub = copy.copy(train)
    sub.frames = train.frames[rows]
    sub.mask = None if train.mask is None else train.mask[rows]
    sub.context = None if train.context is None else train.context[rows]
    sub.env, sub.traj = train.env[rows], train.traj[rows]
    return sub


def _scores(model, prior: VectorField, names, train: Trajectories, chunks, m, loss: str,
            s2, sigma2: float) -> torch.Tensor:
    """Per-trajectory gradients of the NLL w.r.t. the raw parameters, ``(N, p)``: one
    forward-mode pass per parameter (through the prior's per-trajectory values)."""
    import torch.autograd.forward_ad as fwAD

    values = {nm: v.detach() for nm, v in prior.param_values().items() if nm in names}
    slopes = _slopes(prior, names)
    out = []
    for c in chunks:
        b = _double(train.batch(c))
        cols = []
        for j, nm in enumerate(names):
            with fwAD.dual_level():
                dual = fwAD.make_dual(values[nm], torch.ones_like(values[nm]))
                prior.set_batch_params({k: (dual if k == nm else v).expand(len(b))
                                        for k, v in values.items()})
                try:
                    e = per_trajectory_errors(model(b).pred, b.target, b.mask)
                    primal, tangent = fwAD.unpack_dual(e)
                finally:
                    prior.set_batch_params(None)
            weight = 1.0 / (1.0 + primal / s2) if s2 is not None else 1.0  # ρ'(e)
            cols.append(m[c] * weight * tangent * slopes[j] / (2 * sigma2))
        out.append(torch.stack(cols, dim=1))
    return torch.cat(out)


def _propagated_meat(model, prior: VectorField, names, train: Trajectories, chunks, s2,
                     sigma2: float, p: int) -> tuple[torch.Tensor, float]:
    """The variance of the score when every frame carries independent noise of variance
    σ_o², the first one included: the forecast starts from a noisy frame, so trajectory
    ``i``'s residuals have covariance ``σ_o²·(I + S_i S_iᵀ)``, ``S_i = ∂X_i/∂x0`` (an
    errors-in-variables model). Returns ``Σ_i w_i² J_iᵀ(I + S_i S_iᵀ)J_i·σ_o²/σ⁴`` and
    σ_o²,
    estimated from ``E[SSR_i] = σ_o²·(n_i + ‖S_i‖²)``."""
    import torch.autograd.forward_ad as fwAD

    values = {nm: v.detach() for nm, v in prior.param_values().items() if nm in names}
    slopes = torch.tensor(_slopes(prior, names), dtype=torch.float64)
    grams, ssr, dof, weights = [], [], [], []
    for c in chunks:
        b = _double(train.batch(c))
        cols = []
        for nm in names:
            with fwAD.dual_level():
                dual = fwAD.make_dual(values[nm], torch.ones_like(values[nm]))
                prior.set_batch_params({k: (dual if k == nm else v).expand(len(b))
                                        for k, v in values.items()})
                try:
                    out = model(b).pred
                    pred, tangent = fwAD.unpack_dual(out)
                finally:
                    prior.set_batch_params(None)
            cols.append(tangent[:, 1:].flatten(1))
        J = torch.stack(cols, dim=2) * slopes                    # (B, n_i, p)
        S = []
        flat = b.x0.flatten(1)
        for k in range(flat.shape[1]):
            tangent = torch.zeros_like(flat)
            tangent[:, k] = 1.0
            with fwAD.dual_level():
                x0 = fwAD.make_dual(b.x0, tangent.reshape(b.x0.shape))
                out = model(dataclasses.replace(b, x0=x0)).pred
                S.append(fwAD.unpack_dual(out).tangent[:, 1:].flatten(1))
        S = torch.stack(S, dim=2)                                 # (B, n_i, d)
        r = (pred.detach() - b.target)[:, 1:].flatten(1)
        JS = J.transpose(1, 2) @ S                                # (B, p, d)
        grams.append(J.transpose(1, 2) @ J + JS @ JS.transpose(1, 2))
        ssr.append(r.pow(2).sum(1))
        dof.append(r.shape[1] + S.pow(2).sum((1, 2)))
        full = (pred.detach() - b.target).pow(2).flatten(1)
        weights.append(torch.stack([full.mean(1), torch.full_like(full[:, 0], full.shape[1])]))
    grams, ssr, dof = torch.cat(grams), torch.cat(ssr), torch.cat(dof)
    e, m = torch.cat(weights, dim=1)
    if s2 is not None:
        sigma_o2 = float((ssr / dof).median().detach())
        # The Cauchy loss bounds a trajectory's pull: its weight is judged at the error
        # its noisy first frame is expected to cause, not only at the error it has. Near
        # a separatrix ‖S_i‖ is huge and a linear propagation alone would let that one
        # trajectory swamp the interval; the loss itself would discount it.
        w = 1.0 / (1.0 + torch.maximum(e, sigma_o2 * dof / m) / s2)
    else:
        sigma_o2 = float((ssr.sum() / (dof.sum() - p)).detach())
        w = torch.ones_like(e)
    meat = (w.pow(2)[:, None, None] * grams).sum(0).detach() * sigma_o2 / sigma2 ** 2
    return meat, sigma_o2


def _slopes(prior: VectorField, names) -> list[float]:
    """``dθ/dr`` of each learned parameter at its current raw value."""
    out = []
    for nm in names:
        r = prior.raw[nm].detach().clone().requires_grad_(True)
        slope, = torch.autograd.grad(to_constrained(r, prior.params_spec[nm],
                                                    prior.scales[nm]), r)
        out.append(float(slope))
    return out


def _gauss_newton(model, prior: VectorField, names, train: Trajectories, sigma2: float,
                  chunks) -> torch.Tensor:
    """``JᵀJ/σ²``, ``J`` the Jacobian of every predicted value w.r.t. the raw parameters:
    one forward-mode pass per parameter, the constrained value made dual (through the
    prior's per-trajectory parameter values) and chained with ``dθ/dr``."""
    import torch.autograd.forward_ad as fwAD

    p = len(names)
    values = {nm: v.detach() for nm, v in prior.param_values().items() if nm in names}
    slopes = _slopes(prior, names)
    out = torch.zeros(p, p, dtype=torch.float64)
    for c in chunks:
        b = _double(train.batch(c))
        cols = []
        for j, nm in enumerate(names):
            with fwAD.dual_level():
                dual = fwAD.make_dual(values[nm], torch.ones_like(values[nm]))
                batch = {k: (dual if k == nm else v).expand(len(b)) for k, v in values.items()}
                prior.set_batch_params(batch)
                try:
                    pred = model(b).pred
                    tangent = fwAD.unpack_dual(pred).tangent[:, 1:]
                finally:
                    prior.set_batch_params(None)
            if b.mask is not None:
                tangent = tangent * b.mask[:, 1:].expand_as(tangent)
            cols.append(tangent.reshape(-1) * slopes[j])
        J = torch.stack(cols, dim=1)
        out += J.T @ J / sigma2
    return out


def _intervals(prior: VectorField, names, cov: torch.Tensor, level: float,
               truth: dict[str, float] | None) -> list[Interval]:
    z = NormalDist().inv_cdf(0.5 + level / 2)
    out = []
    for i, name in enumerate(names):
        spec, scale = prior.params_spec[name], prior.scales[name]
        r = prior.raw[name].detach().double().clone().requires_grad_(True)
        value = to_constrained(r, spec, scale)
        slope, = torch.autograd.grad(value, r)
        sd = math.sqrt(max(float(cov[i, i]), 0.0))
        if math.isinf(sd):
            lo, hi = spec.lower, spec.upper
        else:
            lo = float(to_constrained(r.detach() - z * sd, spec, scale))
            hi = float(to_constrained(r.detach() + z * sd, spec, scale))
        out.append(Interval(name, float(value.detach()), min(lo, hi), max(lo, hi),
                            abs(float(slope)) * sd,
                            None if not truth or name not in truth else float(truth[name])))
    return out


# ---------------------------------------------------------------------------------------

def bootstrap(rollout, train: Trajectories, n: int, loss: str = "mse", level: float = 0.95,
              truth: dict[str, float] | None = None, seed: int = 0, iterations: int = 40,
              steps: int = 100, lr: float = 1e-3, lr_phys: float | None = None,
              objective=None) -> Uncertainty:
    """Bootstrap intervals from ``n`` refits on resampled training trajectories (see the
    module docstring). ``iterations``: Newton steps of a physics-only refit; ``steps``,
    ``lr``, ``lr_phys``, ``objective``: the Adam retraining of a model with a network."""
    if n < 2:
        raise ValueError(f"--bootstrap {n}: give at least 2 replicates (20 or more for "
                         "95 % intervals)")
    g = torch.Generator().manual_seed(seed)
    # Row 0 refits the whole training set: the centre the replicates scatter around.
    picks = torch.cat([torch.arange(len(train))[None],
                       torch.randint(0, len(train), (n, len(train)), generator=g)])
    model = _plain(rollout)
    prior = _prior(model)
    names = list(prior.learnable)
    if model.field.augmentation is None:
        values = _batched_newton(model, prior, names, train, picks, loss, iterations)
        how = f"bootstrap, {n} replicates refitted together by Newton steps"
    else:
        values = _retrain(model, names, train, picks, steps, lr, lr_phys, objective)
        how = f"bootstrap, {n} replicates each retrained for {steps} Adam steps from the run"
    centre, values = values[0], values[1:]
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    intervals = []
    for j, name in enumerate(names):
        col = values[:, j]
        qs = torch.quantile(col, torch.tensor([lo_q, hi_q], dtype=col.dtype))
        intervals.append(Interval(name, float(centre[j]), float(qs[0]),
                                  float(qs[1]), float(col.std()),
                                  None if not truth or name not in truth else float(truth[name])))
    reps = [{nm: float(values[b, j]) for j, nm in enumerate(names)} for b in range(n)]
    inspected = {nm: float(v.detach()) for nm, v in prior.param_values().items()
                 if nm in names}
    return Uncertainty("bootstrap", level, intervals, how + ", percentile intervals; the "
                       "value is the refit on all training trajectories",
                       replicates=reps, inspected=inspected)


def _batched_newton(model, prior: VectorField, names, train: Trajectories,
                    picks: torch.Tensor, loss: str, iterations: int) -> torch.Tensor:
    """All replicates' physical parameters refitted in one batched problem: replicate
    ``b`` owns the raw parameters ``R[b]`` and the trajectories ``picks[b]``."""
    B, N = picks.shape
    p = len(names)
    rows = picks.reshape(-1)
    batch = train.batch(rows)
    x0 = batch.x0.double()
    if model.x0_offset is not None:
        x0 = x0 + model.x0_offset.detach()[batch.traj]
    field = model.solver_field()
    if field is not model.field:  # `constraint ... hard`, as the rollout integrates
        x0 = model.hard.project(x0)
    target = batch.target.double()
    mask = None if batch.mask is None else batch.mask.double()
    t = batch.t.double()
    specs = [prior.params_spec[nm] for nm in names]
    scales = [prior.scales[nm] for nm in names]
    R = torch.stack([prior.raw[nm].detach().double() for nm in names]).repeat(B, 1)
    s = model.solver

    def replicate_losses(R, s2=None):
        values = {nm: to_constrained(R[:, j], specs[j], scales[j]).repeat_interleave(N)
                  for j, nm in enumerate(names)}
        prior.set_batch_params(values)
        try:
            pred = odeint(field, x0, t, s.name, step=s.step, rtol=s.rtol, atol=s.atol)
        finally:
            prior.set_batch_params(None)
        e = per_trajectory_errors(pred, target, mask).reshape(B, N)
        if loss == "robust" and N >= 3:
            # As in training, the scale is held while stepping (the fixed point training
            # reaches): a trial step is judged with the current scale.
            if s2 is None:
                s2 = (10.0 * e.detach().median(dim=1).values).clamp_min(1e-300).unsqueeze(1)
            return (s2 * torch.log1p(e / s2)).sum(dim=1), s2
        return e.sum(dim=1), None

    damping = torch.full((B,), 1e-6, dtype=torch.float64)
    for _ in range(iterations):
        R = R.detach().requires_grad_(True)
        L, s2 = replicate_losses(R)
        G, = torch.autograd.grad(L.sum(), R, create_graph=True)
        H = torch.stack([torch.autograd.grad(G[:, j].sum(), R, retain_graph=j < p - 1)[0]
                         for j in range(p)], dim=2)  # (B, p, p): replicates are independent
        H = 0.5 * (H + H.transpose(1, 2))
        scale = H.diagonal(dim1=1, dim2=2).abs().clamp_min(1e-300)
        step = torch.linalg.solve(H.detach() + damping[:, None, None] * torch.diag_embed(scale)
                                  , -G.detach().unsqueeze(2))[:, :, 0]
        with torch.no_grad():
            trial, _ = replicate_losses(R.detach() + step, s2)
            better = trial <= L.detach()
        # Levenberg: accept what lowers a replicate's loss, damp it more where it does not.
        R = torch.where(better[:, None], R.detach() + step, R.detach())
        damping = torch.where(better, damping * 0.1, damping * 10).clamp(1e-12, 1e6)
    with torch.no_grad():
        return torch.stack([to_constrained(R[:, j], specs[j], scales[j])
                            for j in range(p)], dim=1)


def _retrain(model, names, train: Trajectories, picks: torch.Tensor, steps: int, lr: float,
             lr_phys: float | None, objective) -> torch.Tensor:
    """Each replicate: a copy of the trained model, ``steps`` Adam steps of the training
    objective on its resampled trajectories (full batch)."""
    from ..objectives.losses import trajectory_loss

    out = []
    for rows in picks:
        m = copy.deepcopy(model)
        prior = m.field.prior
        phys = list(prior.raw.parameters())
        ids = {id(q) for q in phys}
        nets = [q for q in m.parameters() if id(q) not in ids]
        for q in m.parameters():
            q.requires_grad_(True)
        opt = torch.optim.Adam([{"params": nets, "lr": lr},
                                {"params": phys, "lr": lr_phys or lr}])
        b = train.batch(rows)
        b = dataclasses.replace(b, x0=b.x0.double(), t=b.t.double(), target=b.target.double(),
                                mask=None if b.mask is None else b.mask.double())
        for _ in range(steps):
            opt.zero_grad()
            if objective is not None:
                value, _ = objective.loss(m, b)
            else:
                value = trajectory_loss(m(b).pred, b.target, mask=b.mask)
            value.backward()
            opt.step()
        vals = prior.param_values()
        out.append(torch.stack([vals[nm].detach().double() for nm in names]))
    return torch.stack(out)
