"""Fitting on trajectories alone: Neural ODE, physics-only parameter fit, and the vanilla
augmentation of thesis Table 3.5 (prior + network, no norm term)."""
from __future__ import annotations

from typing import Any

from .base import Objective, register_objective


class Trajectory(Objective):
    """``min L_traj`` over the parts of the model the method trains."""

    @classmethod
    def create(cls, method: str, options: dict[str, Any], is_grid: bool, loss: str):
        return cls(loss)

    def loss(self, rollout, batch):
        out = rollout(batch)
        traj = self.trajectory_loss(out.pred, batch)
        return self.constrained(traj, out, {"traj": traj})


@register_objective("neural")
class Neural(Trajectory):
    """A network alone, ``dX/dt = F_θ(X)`` (Neural ODE, thesis ch. 1–2)."""

    name = "neural"
    uses_prior = False


@register_objective("physics")
class Physics(Trajectory):
    """The prior's parameters alone: the classical fit (Table 3.4 "Param ODE/PDE" rows)."""

    name = "physics"
    uses_network = False


@register_objective("augmented")
class Augmented(Trajectory):
    """Prior + network without APHYNITY's norm term (the ablation of Table 3.5)."""

    name = "augmented"
