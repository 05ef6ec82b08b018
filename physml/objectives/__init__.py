"""What each training method minimises, given a trajectory loss (thesis ch. 3).

An :class:`Objective` turns the trajectory loss ``L_traj`` of a batch (and the model, for
norm terms) into the scalar to back-propagate, says how many optimiser steps to take per
batch, and updates its own state after the batch (APHYNITY's λ).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch

from ..models.hybrid import HybridModel


class Objective(ABC):
    """Base class: ``loss`` for one optimiser step, ``after_batch`` once per batch."""

    name = "objective"
    niter = 1

    def __init__(self, **options: Any):
        unknown = set(options) - set(self.options)
        if unknown:
            raise ValueError(f"{self.name}: unknown options {sorted(unknown)}; "
                             f"valid: {', '.join(self.options) or 'none'}")

    options: tuple[str, ...] = ()

    @abstractmethod
    def loss(self, model: HybridModel, traj_loss: torch.Tensor,
             states: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The scalar to minimise and the named terms to log."""

    def after_batch(self, traj_loss: float) -> None:
        """Called once per batch after the ``niter`` optimiser steps."""

    def state_dict(self) -> dict[str, float]:
        return {}

    def load_state_dict(self, state: dict[str, float]) -> None:
        pass


class Trajectory(Objective):
    """Fit on trajectories only: Neural ODE (``neural``), physics-only parameter fit
    (``physics``) and the "vanilla augmentation" ablation (``augmented``, Table 3.5)."""

    def __init__(self, name: str = "neural", **options: Any):
        self.name = name
        super().__init__(**options)

    def loss(self, model, traj_loss, states):
        return traj_loss, {"traj": traj_loss}


class Aphynity(Objective):
    """APHYNITY (thesis §3.3, Algorithm 2): minimise ``‖F_a‖² + λ·L_traj`` with ``niter``
    Adam steps per batch, then raise the multiplier ``λ ← λ + τ₂·L_traj``.

    ``adaptive=false`` keeps λ at ``lambda0`` (the non-adaptive ablation of Table 3.6).
    ``norm`` is ``relative`` (``(‖F_a(x)‖/‖x‖)²``, the pendulum protocol) or ``absolute``
    (``‖F_a(x)‖²``, the PDE protocol).
    """

    name = "aphynity"
    options = ("lambda0", "tau2", "niter", "adaptive", "norm")

    def __init__(self, lambda0: float = 1.0, tau2: float = 1.0, niter: int = 1,
                 adaptive: bool | str = True, norm: str = "relative"):
        super().__init__()
        if isinstance(adaptive, str):
            adaptive = adaptive.lower() in ("true", "yes", "on", "1")
        if norm not in ("relative", "absolute"):
            raise ValueError("aphynity: norm must be 'relative' or 'absolute'")
        if int(niter) < 1:
            raise ValueError("aphynity: niter must be ≥ 1")
        self.lam = float(lambda0)
        self.tau2 = float(tau2)
        self.niter = int(niter)
        self.adaptive = bool(adaptive)
        self.relative = norm == "relative"

    def loss(self, model, traj_loss, states):
        norm = model.augmentation_norm(states.flatten(0, 1), self.relative)
        return norm + self.lam * traj_loss, {"traj": traj_loss, "norm": norm}

    def after_batch(self, traj_loss: float) -> None:
        if self.adaptive:
            self.lam = self.lam + self.tau2 * traj_loss

    def state_dict(self):
        return {"lambda": self.lam}

    def load_state_dict(self, state):
        self.lam = float(state["lambda"])


def build_objective(method: str, options: dict[str, Any], is_grid: bool) -> Objective:
    """The objective of ``train METHOD(options)``."""
    if method in ("neural", "physics", "augmented"):
        return Trajectory(method, **options)
    if method == "aphynity":
        options = dict(options)
        options.setdefault("norm", "absolute" if is_grid else "relative")
        return Aphynity(**options)
    raise ValueError(f"training method '{method}' is not available in this version; "
                     "choices: neural, physics, augmented, aphynity")


__all__ = ["Objective", "Trajectory", "Aphynity", "build_objective"]
