"""LEADS (thesis §3.4) and the baselines of its Table 3.14, as training methods.

LEADS minimises (Eq. 3.12, relaxed form of Eq. 3.11)::

    L_traj + lambda_inv · Σ_e Ω(G_e),
    Ω(G_e) = mean over e's training states of (‖G_e(x)‖/‖x‖)²      (norm relative)
             + spectral · Σ_layers σ(W_l^{G_e})²                    (§3.4.3, "in practice")

``L_traj`` is the batch's trajectory loss (mean over trajectories, hence the mean over
environments of ``L_traj,e`` when every environment has as many trajectories: the authors'
convention, for which the thesis's weights ``1/λ`` were chosen). σ is the largest singular
value, estimated by power iteration (Miyato et al. 2018, the thesis's [189]) whose
vectors persist across steps in the objective's state (checkpointed): ``warmup``
iterations the first time a matrix is seen, then ``power_iterations`` (default 1) per
step, since the weights move little between steps.

The baselines share the model machinery (:mod:`physml.models.environments`):
``one_for_all`` (one model for all environments), ``one_per_env`` (an independent model
per environment, batched), ``leads_no_min`` (LEADS's model without Ω), ``ft_node`` (a
Neural ODE fed a one-hot environment code in every layer), ``gbml`` (One-For-All, then a
fine-tuned copy per environment).
"""
from __future__ import annotations

from typing import Any

import torch

from .base import Objective, register_objective
from .trajectory import Trajectory


def _normalise(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Unit rows of ``new``; rows of a zero matrix's image keep their previous vector."""
    n = new.norm(dim=-1, keepdim=True)
    return torch.where(n > 1e-30, new / n.clamp_min(1e-30), old)


class SpectralNorms:
    """Largest singular values of stacked matrices ``(E, m, n)`` by power iteration with
    persistent vectors ``u`` ``(E, m)``, ``v`` ``(E, n)`` per named matrix.

    ``σ = uᵀ W v`` with ``u``, ``v`` held fixed is differentiable in ``W`` (its gradient
    is ``u vᵀ``, that of the true σ at convergence).
    """

    def __init__(self, iterations: int = 1, warmup: int = 50, seed: int = 0):
        self.iterations = int(iterations)
        self.warmup = int(warmup)
        self.seed = int(seed)
        self.u: dict[str, torch.Tensor] = {}
        self.v: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def _iterate(self, name: str, W: torch.Tensor) -> None:
        steps = self.iterations
        if name not in self.u or self.u[name].shape != W.shape[:2]:
            g = torch.Generator().manual_seed(self.seed + len(self.u))
            u = torch.randn(W.shape[:2], generator=g, dtype=torch.float64)
            v = torch.randn((W.shape[0], W.shape[2]), generator=g, dtype=torch.float64)
            self.u[name] = (u / u.norm(dim=-1, keepdim=True)).to(W)
            self.v[name] = (v / v.norm(dim=-1, keepdim=True)).to(W)
            steps = self.warmup
        u, v = self.u[name].to(W), self.v[name].to(W)
        for _ in range(steps):
            v = _normalise(torch.einsum("emn,em->en", W, u), v)
            u = _normalise(torch.einsum("emn,en->em", W, v), u)
        self.u[name], self.v[name] = u, v

    def sigmas(self, matrices: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """σ of every matrix, ``(E,)`` per name (one more power iteration each)."""
        out = {}
        for name, W in matrices.items():
            self._iterate(name, W.detach())
            out[name] = torch.einsum("em,emn,en->e", self.u[name], W, self.v[name])
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**{f"u/{k}": v for k, v in self.u.items()},
                **{f"v/{k}": v for k, v in self.v.items()}}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.u = {k[2:]: v for k, v in state.items() if k.startswith("u/")}
        self.v = {k[2:]: v for k, v in state.items() if k.startswith("v/")}


def _model(rollout):
    """The rollout inside a DistributedDataParallel wrapper, or the rollout itself."""
    from torch.nn.parallel import DistributedDataParallel

    return rollout.module if isinstance(rollout, DistributedDataParallel) else rollout


@register_objective("leads")
class Leads(Objective):
    """``L_traj + lambda_inv·Σ_e Ω(G_e)`` (thesis Eq. 3.12; see the module docstring).

    Options: ``lambda_inv`` (1/λ, default 1e-3), ``spectral`` (the weight α of the
    spectral term, default 1e-2), ``norm`` (``relative``, the default, or ``absolute``,
    APHYNITY's ``‖G_e(x)‖²``), ``power_iterations`` per step (default 1).
    """

    name = "leads"
    options = ("lambda_inv", "spectral", "norm", "power_iterations")
    structure = "leads"

    def __init__(self, lambda_inv: float = 1e-3, spectral: float = 1e-2,
                 norm: str = "relative", power_iterations: int = 1, loss: str = "mse"):
        super().__init__(loss)
        if norm not in ("relative", "absolute"):
            raise ValueError("leads: norm must be 'relative' or 'absolute'")
        if float(lambda_inv) < 0 or float(spectral) < 0:
            raise ValueError("leads: lambda_inv and spectral must be ≥ 0")
        if int(power_iterations) < 1:
            raise ValueError("leads: power_iterations must be ≥ 1")
        self.lambda_inv = float(lambda_inv)
        self.spectral = float(spectral)
        self.norm = norm
        self.power = SpectralNorms(int(power_iterations))

    @classmethod
    def create(cls, method: str, options: dict[str, Any], is_grid: bool, loss: str):
        return cls(**options, loss=loss)

    @property
    def regulariser(self) -> str | None:
        return self.norm if self.lambda_inv > 0 else None

    def omega(self, rollout, env_norms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Σ_e ‖G_e‖², Σ_e Σ_l σ(W_l^{G_e})²)`` — the two terms of Σ_e Ω(G_e)."""
        per_env = _model(rollout).field.per_env
        spec = env_norms.new_zeros(())
        if self.spectral > 0 and per_env is not None:
            mats = per_env.weight_matrices()
            if mats:
                spec = sum(s.pow(2).sum() for s in self.power.sigmas(mats).values())
        return env_norms.sum(), spec

    def loss(self, rollout, batch):
        out = rollout(batch, regulariser=self.regulariser)
        traj = self.trajectory_loss(out.pred, batch)
        if self.regulariser is None:
            return self.constrained(traj, out, {"traj": traj})
        l2, spec = self.omega(rollout, out.terms["env_norms"])
        omega = l2 + self.spectral * spec
        return self.constrained(traj + self.lambda_inv * omega, out,
                                {"traj": traj, "norm": l2, "spectral": spec})

    def state_dict(self):
        return self.power.state_dict()

    def load_state_dict(self, state):
        self.power.load_state_dict(state)


@register_objective("leads_no_min")
class LeadsNoMin(Trajectory):
    """LEADS's model (shared F, one G_e per environment) without Ω: the ablation
    "LEADS no min." of Table 3.14."""

    name = "leads_no_min"
    structure = "leads"


@register_objective("one_for_all")
class OneForAll(Trajectory):
    """One model ``F`` trained on every environment's data (Table 3.14, One-For-All)."""

    name = "one_for_all"
    structure = "one_for_all"


@register_objective("one_per_env")
class OnePerEnv(Trajectory):
    """An independent model per environment (Table 3.14, One-Per-Env.): every learned
    prior parameter per environment and one network per environment, all batched."""

    name = "one_per_env"
    structure = "one_per_env"


@register_objective("ft_node")
class FtNode(Trajectory):
    """A Neural ODE whose every linear layer also takes the one-hot code of the
    environment (Table 3.14, FT-NODE), plus the shared prior if the spec has one."""

    name = "ft_node"
    structure = "ft_node"


@register_objective("gbml")
class Gbml(Trajectory):
    """GBML-like baseline (Table 3.14): train one model for all environments for
    ``switch`` steps (One-For-All), then copy its network to every environment and
    fine-tune the copies, each on its own environment's data (the prior stays shared)."""

    name = "gbml"
    options = ("switch",)
    structure = "gbml"

    def __init__(self, switch: int = 1000, loss: str = "mse"):
        super().__init__(loss)
        if int(switch) < 0:
            raise ValueError("gbml: switch (the steps before fine-tuning) must be ≥ 0")
        self.switch = int(switch)
        self.steps = 0

    @classmethod
    def create(cls, method: str, options: dict[str, Any], is_grid: bool, loss: str):
        return cls(**options, loss=loss)

    def loss(self, rollout, batch):
        field = _model(rollout).field
        if self.steps >= self.switch and int(field.phase) == 0:
            field.start_fine_tuning()
        return super().loss(rollout, batch)

    def after_batch(self, traj_loss: float) -> None:
        self.steps += 1

    def state_dict(self):
        return {"steps": torch.tensor(self.steps)}

    def load_state_dict(self, state):
        self.steps = int(state["steps"])

    def describe(self):
        return {"fine_tuning": int(self.steps >= self.switch)}
