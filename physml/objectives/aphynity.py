"""APHYNITY (thesis §3.3, Algorithm 2): physics plus the minimal-norm augmentation."""
from __future__ import annotations

from typing import Any

from .base import Objective, register_objective


@register_objective("aphynity")
class Aphynity(Objective):
    """Minimise ``‖F_a‖² + λ·L_traj`` with ``niter`` Adam steps per batch, then raise the
    multiplier ``λ ← λ + τ₂·L_traj`` (thesis Algorithm 2, Eq. 3.7).

    ``adaptive=false`` keeps λ at ``lambda0`` (the non-adaptive ablation of Table 3.6).
    ``norm`` is ``relative`` (``(‖F_a(x)‖/‖x‖)²``, the pendulum protocol) or ``absolute``
    (``‖F_a(x)‖²``, the PDE protocol); the rollout evaluates it on the batch's frames
    (Eq. 3.6's Monte-Carlo estimate over training states).
    """

    name = "aphynity"
    options = ("lambda0", "tau2", "niter", "adaptive", "norm")

    def __init__(self, lambda0: float = 1.0, tau2: float = 1.0, niter: int = 1,
                 adaptive: bool | str = True, norm: str = "relative", loss: str = "mse"):
        super().__init__(loss)
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
        self.norm = norm

    @classmethod
    def create(cls, method: str, options: dict[str, Any], is_grid: bool, loss: str):
        options.setdefault("norm", "absolute" if is_grid else "relative")
        return cls(**options, loss=loss)

    @property
    def regulariser(self) -> str | None:
        return self.norm

    def loss(self, rollout, batch):
        out = rollout(batch, regulariser=self.norm)
        traj = self.trajectory_loss(out.pred, batch)
        norm = out.terms["aug_norm"]
        return norm + self.lam * traj, {"traj": traj, "norm": norm}

    def after_batch(self, traj_loss: float) -> None:
        if self.adaptive:
            self.lam = self.lam + self.tau2 * traj_loss

    def state_dict(self):
        return {"lambda": self.lam}

    def load_state_dict(self, state):
        self.lam = float(state["lambda"])

    def describe(self):
        return {"lambda": self.lam}
