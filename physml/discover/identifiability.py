"""Can the learned parameters of a spec be told apart from its data? Asked before training.

**Fisher information.** Each learned parameter ``θ_j`` of the prior moves the predicted
trajectories by ``J_j = ∂X(t_k)/∂θ_j`` (the trajectory sensitivities, by forward-mode
autograd through the differentiable solver). With Gaussian observation noise of standard
deviation σ the Fisher information is ``I = JᵀJ/σ²`` and ``I⁻¹`` is the smallest
covariance any unbiased estimate can reach (Cramér–Rao). We work in log-parameter
coordinates (``θ_j·J_j``) for parameters that are positive, so ``sqrt(diag I⁻¹)`` reads as
a relative error and a null direction ``v`` of ``J`` says that ``∏ θ_j^{v_j}`` can change
without changing any trajectory: only the products of powers orthogonal to the null space
are identifiable ("only a·b is identifiable"). Rank and condition number come from the
singular values of ``J`` (Raue et al. 2009 call the rank-deficient case structural, the
badly conditioned one practical non-identifiability).

Where the data are simulated from a known system, the sensitivities are those of the
model at the values the data were simulated with, the augmentation held at the ideal
``F_a* = F − F_p(θ*)``; otherwise those of the prior alone at its start values.

**Confounding with F_a** (APHYNITY's own identifiability). Training fits ``F_p(θ) + F_a``
to trajectories; a change ``δθ`` that ``F_a`` can absorb exactly leaves every trajectory
unchanged, so only the minimal-norm criterion decides θ. For each learned θ we measure
the share of ``g_θ = ∂F_p/∂θ`` over the training states that ``F_a``'s function class
reproduces: exactly (share 1) when ``g_θ`` depends only on inputs ``F_a`` sees — on grids,
states within its receptive field, probed by autograd on a fresh network of the spec's
architecture — and otherwise the least-squares share of ``g_θ`` explained by features of
that receptive field (linear in the patch, cubic in the point). The remainder
``1 − share`` is what the trajectory fit can pin θ with.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from fractions import Fraction
from typing import Any

import torch
import torch.autograd.forward_ad as fwAD

from ..solve import odeint
from ..symbolic import compile_dynamics
from ..symbolic.spec import Spec

#: Singular values of the scaled sensitivity matrix below this fraction of the largest
#: count as zero (float64 sensitivities of an exactly redundant pair are ~1e-15).
RANK_TOL = 1e-7
#: Warn when the Fisher matrix's condition number (in log coordinates) exceeds this …
COND_WARN = 1e8
#: … or when a parameter's expected relative standard error exceeds this.
REL_STD_WARN = 0.5
#: A share of ∂F_p/∂θ at least this large counts as reproduced exactly by F_a.
EXACT_SHARE = 0.999


# ---------------------------------------------------------------------------------------
# the data design

def design_data(spec: Spec, max_trajectories: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Noiseless training trajectories of the spec's data design, ``(E, n, T, *state)``
    in float64, and their times; at most ``max_trajectories`` per environment."""
    from ..simulation import simulate

    splits = dict(spec.data.splits)
    n = splits.get("train") or max(splits.values())
    data = dataclasses.replace(spec.data, splits=(("train", min(n, max_trajectories)),),
                               noise=0.0)
    ds = simulate(dataclasses.replace(spec, data=data), splits="train", dtype=torch.float64)
    frames = ds.splits["train"][:, :, ds.history:]
    times = torch.as_tensor(ds.times, dtype=torch.float64)[ds.history:]
    return frames, times - times[0]


def _truth(spec: Spec, env_params) -> dict[str, float] | None:
    """The parameter values the data were simulated with (one environment, known system)."""
    if not spec.system.equations or env_params is None or len(env_params) != 1:
        return None
    return {p.name: float(env_params[0].get(p.name, p.value)) for p in spec.system.params}


class _Model:
    """``F_p(θ) + F − F_p(θ*)`` (or ``F_p(θ)`` alone) with θ passed as tensors, so that
    forward-mode tangents flow through the compiled equations and the solver."""

    def __init__(self, spec: Spec, truth: dict[str, float] | None):
        self.names = tuple(n for n, _ in spec.prior.learn)
        start = {n: (v if v is not None else spec.system.param_values[n])
                 for n, v in spec.prior.learn}
        values = truth if truth is not None else None
        self.prior = compile_dynamics(spec, "prior", learn={}, values=values,
                                      fold_constants=False).double()
        self.rest = None
        if truth is not None:
            true_field = compile_dynamics(spec, "dynamics", values=truth).double()
            at_truth = compile_dynamics(spec, "prior", learn={}, values=truth).double()
            self.rest = lambda t, x: true_field(t, x) - at_truth(t, x)
        self.at = {n: (truth[n] if truth is not None else float(start[n])) for n in self.names}
        self.is_grid = spec.system.is_grid

    def theta(self) -> torch.Tensor:
        return torch.tensor([self.at[n] for n in self.names], dtype=torch.float64)

    def field(self, theta: torch.Tensor, batch: int):
        self.prior.set_batch_params({n: theta[i].expand(batch)
                                     for i, n in enumerate(self.names)})
        if self.rest is None:
            return self.prior
        return lambda t, x: self.prior(t, x) + self.rest(t, x)

    def prior_only(self, theta: torch.Tensor, batch: int):
        self.prior.set_batch_params({n: theta[i].expand(batch)
                                     for i, n in enumerate(self.names)})
        return self.prior


def _jacobian(fn, theta: torch.Tensor) -> torch.Tensor:
    """``∂fn(θ)/∂θ`` by one forward-mode pass per parameter: ``(*out, p)``."""
    cols = []
    for j in range(len(theta)):
        tangent = torch.zeros_like(theta)
        tangent[j] = 1.0
        with fwAD.dual_level():
            out = fn(fwAD.make_dual(theta, tangent))
            cols.append(fwAD.unpack_dual(out).tangent.detach())
    return torch.stack(cols, dim=-1)


def sensitivities(model: _Model, x0: torch.Tensor, t: torch.Tensor, solver: str = "rk4",
                  step: float | None = None) -> torch.Tensor:
    """Trajectory sensitivities ``∂X(t_k)/∂θ``, ``(B, T−1, *state, p)`` (the first
    frame is observed, not predicted)."""
    def predict(theta):
        return odeint(model.field(theta, x0.shape[0]), x0, t, solver, step=step)[:, 1:]
    return _jacobian(predict, model.theta())


# ---------------------------------------------------------------------------------------
# naming the combinations the data cannot separate

def _rational(x: float, limit: int = 6) -> Fraction:
    return Fraction(x).limit_denominator(limit)


def _nice_basis(vectors: torch.Tensor) -> list[list[Fraction]] | None:
    """A basis of the span of ``vectors`` ``(k, p)`` with small rational entries (reduced
    row echelon form), or None if the span has no such basis."""
    import sympy

    m = sympy.Matrix(vectors.tolist()).rref(iszerofunc=lambda x: abs(x) < 1e-6)[0]
    rows = []
    for i in range(m.rows):
        row = [float(v) for v in m.row(i)]
        if max(abs(v) for v in row) < 1e-6:
            continue
        frac = [_rational(v) for v in row]
        if max(abs(float(f) - v) for f, v in zip(frac, row)) > 1e-3:
            return None
        rows.append(frac)
    return rows


def _integers(row: list[Fraction]) -> list[int]:
    den = math.lcm(*[f.denominator for f in row])
    ints = [int(f * den) for f in row]
    g = math.gcd(*ints) or 1
    ints = [i // g for i in ints]
    first = next(i for i in ints if i)
    return [-i for i in ints] if first < 0 else ints


def product_name(names, exponents) -> str:
    """``a·b``, ``alpha/beta``, ``a^2·b``, ``1/(a·b)`` from exponents (log coordinates)."""
    def factor(n, e):
        return n if e == 1 else f"{n}^{e:g}" if isinstance(e, (int, float)) else f"{n}^{e}"
    num = [factor(n, e) for n, e in zip(names, exponents) if e > 0]
    den = [factor(n, -e) for n, e in zip(names, exponents) if e < 0]
    top = "·".join(num) or "1"
    if not den:
        return top
    bottom = den[0] if len(den) == 1 else "(" + "·".join(den) + ")"
    return f"{top}/{bottom}"


def linear_name(names, coefficients) -> str:
    """``a − 2·b`` from coefficients (parameters that are not all positive)."""
    out = ""
    for n, c in zip(names, coefficients):
        if c == 0:
            continue
        mag = abs(c)
        term = n if mag == 1 else f"{mag:g}·{n}"
        out += (term if not out and c > 0 else f"−{term}" if not out else
                f" + {term}" if c > 0 else f" − {term}")
    return out


def combinations(null: torch.Tensor, names: tuple[str, ...], log: list[bool]
                 ) -> tuple[list[str], list[str]]:
    """The non-identifiable and the identifiable combinations of the parameters involved
    in the null space ``null`` ``(p, k)`` of the (log-)sensitivities, in words."""
    import sympy

    involved = [j for j in range(len(names)) if float(null[j].abs().max()) > 1e-6]
    sub = null[involved].T  # (k, involved)
    sub_names = [names[j] for j in involved]
    as_product = all(log[j] for j in involved)
    name = (lambda e: product_name(sub_names, e)) if as_product else \
        (lambda e: linear_name(sub_names, e))
    basis = _nice_basis(sub)
    if basis is None:  # not a simple product: give the direction itself, rounded
        v = sub[0] / sub[0].abs().max()
        exps = [round(float(x), 2) for x in v]
        return [name(exps)], []
    unseen = [name(_integers(row)) for row in basis]
    comp = sympy.Matrix([[sympy.Rational(f.numerator, f.denominator) for f in row]
                         for row in basis]).nullspace()
    seen = []
    for vec in comp:
        ints = _integers([Fraction(int(sympy.fraction(v)[0]), int(sympy.fraction(v)[1]))
                          for v in vec])
        seen.append(name(ints))
    return unseen, seen


# ---------------------------------------------------------------------------------------
# the report

@dataclasses.dataclass
class Confounding:
    """How much of ``∂F_p/∂θ`` the augmentation's function class reproduces."""

    name: str
    share: float                 # 0 … 1
    exact: bool                  # reproduced exactly (receptive field covers it)
    how: str                     # how the share was measured
    minimal_norm: float | None = None   # where the minimal-norm split puts θ (known truth)
    true: float | None = None
    grid: bool = False

    @property
    def unique(self) -> bool:
        return not (self.exact or self.share >= EXACT_SHARE)


@dataclasses.dataclass
class Identifiability:
    """The answer of :func:`identifiability` (``lines()`` says it in words)."""

    names: tuple[str, ...]
    at: dict[str, float]
    where: str                   # "truth" or "start"
    sigma: float
    sigma_note: str
    n_observations: int
    fisher: torch.Tensor         # natural coordinates, (p, p)
    singular_values: list[float]  # of the scaled sensitivities, largest first
    rank: int
    condition: float             # of the Fisher matrix in log coordinates
    std: dict[str, float]        # expected standard error (natural units)
    rel_std: dict[str, float]    # … relative to |θ|
    unidentifiable: list[str]
    identifiable_combinations: list[str]
    weakest: str | None
    confounding: list[Confounding] = dataclasses.field(default_factory=list)

    @property
    def full_rank(self) -> bool:
        return self.rank == len(self.names)

    @property
    def near_singular(self) -> bool:
        return (not self.full_rank or self.condition > COND_WARN
                or any(v > REL_STD_WARN for v in self.rel_std.values()))

    def verdict(self) -> str:
        p = len(self.names)
        if not self.full_rank:
            return (f"not identifiable: the Fisher information has rank {self.rank} of {p}")
        if self.near_singular:
            return (f"poorly identifiable: rank {p} of {p}, but the Fisher information is "
                    f"near-singular (condition number {self.condition:.3g})")
        return (f"identifiable: rank {p} of {p}, condition number {self.condition:.3g}")

    def lines(self) -> list[str]:
        """The findings in words, most important first."""
        out = [self.verdict()]
        if self.unidentifiable:
            seen = " and ".join(self.identifiable_combinations)
            unseen = " and ".join(self.unidentifiable)
            if seen:
                verb = "is" if len(self.identifiable_combinations) == 1 else "are"
                out.append(f"only {seen} {verb} "
                           f"identifiable from these data; {unseen} "
                           f"{'is' if len(self.unidentifiable) == 1 else 'are'} not (changing "
                           f"{'it' if len(self.unidentifiable) == 1 else 'them'} leaves every "
                           "trajectory unchanged)")
            else:
                out.append(f"{unseen} cannot be determined from these data")
            out.append("to separate them: fix one of the parameters (drop it from `learn`), "
                       "or change the data design (other initial states, longer or more "
                       "trajectories)")
        elif self.near_singular and self.weakest:
            out.append(f"the least determined combination is {self.weakest}")
        where = ("the values the data were simulated with" if self.where == "truth"
                 else "the prior's start values")
        out.append(f"expected standard errors at {where}, noise σ = {self.sigma:.3g} "
                   f"({self.sigma_note}), {self.n_observations} observed values:")
        for n in self.names:
            rel = self.rel_std[n]
            shown = f"{100 * rel:.3g} %" if math.isfinite(rel) else "unbounded"
            out.append(f"  {n} = {self.at[n]:.6g} ± {self.std[n]:.3g}  ({shown})")
        for c in self.confounding:
            out.append(confounding_line(c))
        return out

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["fisher"] = self.fisher.tolist()
        d["full_rank"] = self.full_rank
        d["near_singular"] = self.near_singular
        d["verdict"] = self.verdict()
        for c, row in zip(self.confounding, d["confounding"]):
            row["unique"] = c.unique
        return d


def confounding_line(c: Confounding) -> str:
    pct = f"{100 * c.share:.1f} %"
    if c.unique:
        return (f"{c.name}: F_a can reproduce {pct} of ∂F_p/∂{c.name} ({c.how}); the other "
                f"{100 * (1 - c.share):.1f} % is beyond its reach, so the trajectory fit pins "
                f"{c.name} and APHYNITY's split for it is unique")
    where = ""
    if c.minimal_norm is not None:
        where = f"; on these data the minimal-norm split puts {c.name} at {c.minimal_norm:.4g}"
        if c.true is not None:
            where += f" (data simulated with {c.true:.4g})"
    if c.grid:
        fix = (f"To make it unique: a network that cannot imitate ∂F_p/∂{c.name} (a pointwise "
               f"F_a, `convnet(kernel=1)`, where the unknown physics is local), or `augment "
               f"… on` only the equations the unknown physics acts on")
    else:
        fix = (f"F_a sees the whole state, so only `augment … on` (F_a restricted to the "
               f"equations the unknown physics acts on, where ∂F_p/∂{c.name} does not act) "
               "could make it unique; otherwise the split is as biased as the minimal-norm "
               f"criterion is where the missing term correlates with ∂F_p/∂{c.name}")
    return (f"{c.name}: F_a can reproduce {pct} of ∂F_p/∂{c.name} ({c.how}), so APHYNITY's "
            f"split for {c.name} is not unique: only the minimal-norm criterion decides it"
            f"{where}. {fix}")


# ---------------------------------------------------------------------------------------

def identifiability(spec: Spec, frames: torch.Tensor | None = None,
                    times: torch.Tensor | None = None, *, env_params=None,
                    noise: float | None = None, n_train: int | None = None,
                    solver: str = "rk4", step: float | None = None,
                    max_trajectories: int = 32, confounding: bool = True,
                    relative_norm: bool | None = None) -> Identifiability:
    """Fisher information of the spec's learned prior parameters on its data design, in
    words (:meth:`Identifiability.lines`), with the confounding of each parameter with
    the augmentation when the spec has one.

    ``frames`` ``(E, N, T, *state)`` and ``times``: the data (noiseless where known); by
    default the spec's design is simulated (at most ``max_trajectories``, the information
    scaled to the design's ``train`` count, or to ``n_train``). ``env_params``: the
    parameter values of the data (default: the spec's own, when the data are simulated).
    ``noise``: σ of the observations (default: the data block's ``noise``; 0 → 1 % of the
    data's RMS). ``solver``/``step``: how to integrate (the training solver).
    """
    if spec.prior is None or not spec.prior.learn or spec.prior.hamiltonian is not None:
        raise ValueError("identifiability needs a `prior:` block with `learn` parameters")
    if frames is None:
        if spec.data is None:
            raise ValueError("identifiability needs data: a `data:` block to simulate, or "
                             "a data file")
        frames, times = design_data(spec, max_trajectories)
        if env_params is None:
            env_params = [dict(spec.system.param_values, **dict(e.values))
                          for e in spec.environments] or [dict(spec.system.param_values)]
        if n_train is None:
            n_train = dict(spec.data.splits).get("train", frames.shape[1])
    frames = frames.to(torch.float64)
    times = torch.as_tensor(times, dtype=torch.float64)
    truth = _truth(spec, env_params)
    model = _Model(spec, truth)
    x = frames.flatten(0, 1)[:max_trajectories * frames.shape[0]]
    used = x.shape[0]
    scale = (n_train * frames.shape[0] / used) if n_train else 1.0
    J = sensitivities(model, x[:, 0].contiguous(), times, solver, step)
    if spec.observe:  # partial observation: only the observed fields inform θ
        J = J[:, :, [spec.system.variables.index(v) for v in spec.observe]]
    J = J.reshape(-1, len(model.names))
    n_obs = int(round(J.shape[0] * scale))
    if noise is None:
        noise = float(spec.data.noise) if spec.data is not None else 0.0
    if noise > 0:
        sigma, note = noise, "the data block's noise"
    else:
        sigma = 0.01 * float(x.pow(2).mean().sqrt())
        note = "noise 0 in the data block: taken as 1 % of the data's RMS"
    theta = model.theta()
    log = [spec.system.params[[p.name for p in spec.system.params].index(n)].lower >= 0
           and float(v) > 0 for n, v in zip(model.names, theta)]
    unit = torch.tensor([float(v) if lg else (abs(float(v)) or 1.0)
                         for v, lg in zip(theta, log)], dtype=torch.float64)
    Js = J * unit                      # log (or magnitude-scaled) coordinates
    fisher_scaled = Js.T @ Js * (scale / sigma ** 2)
    fisher = J.T @ J * (scale / sigma ** 2)
    _, s, vh = torch.linalg.svd(Js, full_matrices=False)
    smax = float(s[0]) if len(s) else 0.0
    rank = int((s > RANK_TOL * smax).sum()) if smax > 0 else 0
    ev = torch.linalg.eigvalsh(fisher_scaled)
    condition = float(ev[-1] / ev[0]) if float(ev[0]) > 0 else math.inf
    if rank == len(model.names):
        cov = torch.linalg.inv(fisher_scaled)
        rel = {n: float(cov[i, i].clamp_min(0).sqrt()) for i, n in enumerate(model.names)}
    else:
        cov = torch.linalg.pinv(fisher_scaled)
        null = vh[rank:].T
        rel = {n: (math.inf if float(null[i].abs().max()) > 1e-6
                   else float(cov[i, i].clamp_min(0).sqrt()))
               for i, n in enumerate(model.names)}
    std = {n: rel[n] * float(unit[i]) for i, n in enumerate(model.names)}
    unseen, seen, weakest = [], [], None
    if rank < len(model.names):
        unseen, seen = combinations(vh[rank:].T, model.names, log)
    elif len(model.names) > 1:
        w = vh[-1]
        involved = [j for j in range(len(w)) if abs(float(w[j])) > 0.05 * float(w.abs().max())]
        v = w[involved] / w[involved].abs().max()
        names = [model.names[j] for j in involved]
        exps = [round(float(e), 2) for e in v]
        weakest = product_name(names, exps) if all(log[j] for j in involved) else \
            linear_name(names, exps)
    result = Identifiability(
        names=model.names, at=dict(model.at), where="truth" if truth is not None else "start",
        sigma=sigma, sigma_note=note, n_observations=n_obs, fisher=fisher,
        singular_values=[float(v) for v in s], rank=rank, condition=condition, std=std,
        rel_std={n: rel[n] if log[i] else rel[n] * float(unit[i]) / max(abs(model.at[n]), 1e-300)
                 for i, n in enumerate(model.names)},
        unidentifiable=unseen, identifiable_combinations=seen, weakest=weakest)
    if confounding and spec.augment is not None and spec.augment.name != "none":
        if relative_norm is None:
            relative_norm = not spec.system.is_grid
        result.confounding = confounding_shares(spec, model, x, relative_norm)
    return result


# ---------------------------------------------------------------------------------------
# confounding with the augmentation

def _receptive_field(spec: Spec) -> torch.Tensor | None:
    """Which input cells (per state channel, as offsets from the centre of the grid) a
    fresh network of the spec's augmentation architecture sees at the centre: a boolean
    ``(C, *grid)``. None for an ODE (the network sees the whole state)."""
    from ..models import build_model

    if not spec.system.is_grid:
        return None
    g = torch.Generator().manual_seed(0)
    net = build_model(spec, use_prior=False, use_network=True).augmentation.net.double()
    with torch.no_grad():
        for p in net.parameters():  # the last layer starts at zero: give it weights
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)
    # Batch normalisation without running statistics couples every cell through the
    # batch's mean and variance: a per-channel affine map, not part of what the network
    # can compute from a neighbourhood, so it is left out of the probe.
    for name, m in list(net.named_modules()):
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            parent, _, child = name.rpartition(".")
            setattr(net.get_submodule(parent) if parent else net, child, torch.nn.Identity())
    net.eval()
    shape = spec.system.state_shape()
    centre = tuple(s // 2 for s in shape[1:])
    seen = torch.zeros(shape, dtype=torch.bool)
    extra = len(spec.augment_with)
    for _ in range(3):
        x = torch.randn((1, shape[0] + extra, *shape[1:]), generator=g,
                        dtype=torch.float64).requires_grad_(True)
        out = net(x)
        grad, = torch.autograd.grad(out[(0, slice(None)) + centre].sum(), x)
        seen |= grad[0, :shape[0]].abs() > 0
    return seen


def _footprint(fn, x: torch.Tensor, channel: int) -> torch.Tensor:
    """Cells of the state on which ``fn(x)[channel]`` at the centre depends."""
    x = x[:1].clone().requires_grad_(True)
    centre = tuple(s // 2 for s in x.shape[2:])
    out = fn(x)
    grad, = torch.autograd.grad(out[(0, channel) + centre], x, allow_unused=True)
    if grad is None:
        return torch.zeros(x.shape[1:], dtype=torch.bool)
    return grad[0].abs() > 0


def _patch_features(states: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    """Least-squares features of what a network with receptive field ``field`` can do at
    each cell: the state in the field (linear), monomials up to degree 3 of the state at
    the cell, a constant. ``states`` ``(M, C, *grid)`` → ``(M·cells, F)``."""
    C = states.shape[1]
    centre = [s // 2 for s in states.shape[2:]]
    dims = tuple(range(2, states.dim()))
    feats = [torch.ones_like(states[:, 0])]
    for c, *idx in field.nonzero().tolist():
        shifts = tuple(centre[i] - idx[i] for i in range(len(idx)))
        feats.append(torch.roll(states[:, c], shifts=shifts, dims=tuple(d - 1 for d in dims)))
    point = [states[:, c] for c in range(C)]
    for deg in (2, 3):
        for combo in itertools.combinations_with_replacement(range(C), deg):
            m = point[combo[0]]
            for c in combo[1:]:
                m = m * point[c]
            feats.append(m)
    if not bool(field[(slice(None),) + tuple(centre)].all()):
        feats += point
    return torch.stack(feats, dim=-1).reshape(-1, len(feats))


def confounding_shares(spec: Spec, model: _Model, trajectories: torch.Tensor,
                       relative_norm: bool, max_states: int = 64) -> list[Confounding]:
    """For each learned θ, the share of ``∂F_p/∂θ`` over training states that the
    augmentation's function class reproduces (see the module docstring)."""
    states = trajectories.flatten(0, 1)
    if states.shape[0] > max_states:
        idx = torch.linspace(0, states.shape[0] - 1, max_states).round().long()
        states = states[idx]
    M = states.shape[0]
    theta = model.theta()
    t0 = torch.zeros((), dtype=torch.float64)
    G = _jacobian(lambda th: model.prior_only(th, M)(t0, states), theta)  # (M, *state, p)
    acts = [spec.system.variables.index(v) for v in spec.augment_on] or \
        list(range(len(spec.system.variables)))
    field = _receptive_field(spec)
    out = []
    for j, name in enumerate(model.names):
        g = G[..., j]
        total = float(g.pow(2).sum())
        if total == 0:
            out.append(Confounding(name, 0.0, False, "∂F_p/∂θ vanishes on these states",
                                   grid=field is not None))
            continue
        reproduced, exact, hows = 0.0, True, set()
        for c in range(g.shape[1]):
            gc = g[:, c]
            size = float(gc.pow(2).sum())
            if size == 0:
                continue
            if c not in acts:
                exact = False
                hows.add("F_a does not act on " + spec.system.variables[c])
                continue
            if field is None:
                reproduced += size
                hows.add("a function of the state, which F_a sees whole")
                continue
            foot = _footprint(lambda x, _j=j: _grad_field(model, x, _j), states, c)
            if not bool((foot & ~field).any()):
                reproduced += size
                r = int(field.nonzero()[:, 1:].sub(torch.tensor(field.shape[1:]) // 2)
                        .abs().max()) if field.any() else 0
                hows.add(f"its {2 * r + 1}×{2 * r + 1} receptive field covers the stencil")
                continue
            exact = False
            X = _patch_features(states, field)
            y = gc.reshape(-1)
            coef = torch.linalg.lstsq(X, y.unsqueeze(1)).solution
            resid = y - (X @ coef)[:, 0]
            reproduced += size - float(resid.pow(2).sum())
            hows.add("least squares on its receptive field: the stencil reaches beyond it")
        share = max(0.0, min(1.0, reproduced / total))
        out.append(Confounding(name, share, exact and share > 0, "; ".join(sorted(hows)),
                               grid=field is not None))
    if out and all(not c.unique for c in out) and model.rest is not None:
        mn = minimal_norm_split(model, states, acts, relative_norm)
        for c, v in zip(out, mn):
            c.minimal_norm, c.true = float(v), model.at[c.name]
    return out


def _grad_field(model: _Model, x: torch.Tensor, j: int) -> torch.Tensor:
    """``∂F_p/∂θ_j`` at states ``x``, differentiable in ``x`` (a finite difference would do,
    but forward over reverse keeps it exact): F_p is evaluated with θ_j dual."""
    theta = model.theta()
    tangent = torch.zeros_like(theta)
    tangent[j] = 1.0
    with fwAD.dual_level():
        out = model.prior_only(fwAD.make_dual(theta, tangent), x.shape[0])(
            torch.zeros((), dtype=torch.float64), x)
        return fwAD.unpack_dual(out).tangent


def minimal_norm_split(model: _Model, states: torch.Tensor, acts: list[int],
                       relative: bool, iterations: int = 8) -> torch.Tensor:
    """Where APHYNITY's minimal-norm criterion puts θ when F_a can absorb any change of
    it: ``argmin_θ mean ‖F(X) − F_p(X; θ)‖²`` over the states (Gauss–Newton), the norm
    relative to ``‖X‖²`` as the training objective's ``norm`` says."""
    M = states.shape[0]
    t0 = torch.zeros((), dtype=torch.float64)
    true = model.field(model.theta(), M)(t0, states).detach()
    w = 1.0 / states.flatten(1).pow(2).sum(1).clamp_min(1e-12).sqrt() if relative else \
        torch.ones(M, dtype=torch.float64)
    w = w.reshape(-1, *([1] * (states.dim() - 1)))
    theta = model.theta()
    for _ in range(iterations):
        f = model.prior_only(theta, M)(t0, states).detach()
        J = _jacobian(lambda th: model.prior_only(th, M)(t0, states), theta)
        r = ((true - f) * w)[:, acts].reshape(-1)
        A = (J * w.unsqueeze(-1))[:, acts].reshape(-1, len(theta))
        theta = theta + torch.linalg.lstsq(A, r.unsqueeze(1)).solution[:, 0]
    model.prior.set_batch_params(None)
    return theta
