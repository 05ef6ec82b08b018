"""APHYNITY (thesis §3.3, Algorithm 2): physics plus the minimal-norm augmentation."""
from __future__ import annotations

import math
from typing import Any

import torch

from .base import Objective, register_objective


@register_objective("aphynity")
class Aphynity(Objective):
    """Thesis Eq. (3.5): ``min ‖F_a‖ subject to ∀ x ∈ D, ∀ t, X_t = X_0 + ∫ (F_p + F_a)``,
    solved as the penalised problem ``‖F_a‖² + λ·L_traj`` (Eq. 3.7).

    Two policies for λ:

    **Default (no ``lambda0``): the constrained problem, solved for the trajectory loss's
    floor.** The user does not say whether the prior is complete, so λ is chosen from the
    data, in four parts (see the README, "How APHYNITY chooses λ"):

    1. *Start* at ``λ₀ = κ·S_F / L₀``: ``L₀`` is the first batch's trajectory loss, ``S_F``
       the mean ``‖dX/dt‖²`` of its frames (finite differences; ``(‖dX/dt‖/‖X‖)²`` with
       the relative norm) — what ``‖F_a‖²`` would be if the network carried all the
       dynamics. With κ = 1e3 the trajectory term outweighs a full-size network a
       thousandfold, so an incomplete prior's network learns the missing terms at once,
       whatever the units of the data.
    2. *Fit* with λ fixed for the first ``SWITCH`` (40 %) of the training budget
       (:attr:`Objective.progress`). The floor ``L*`` is the lowest running average of
       the batch trajectory losses, taken afresh whenever the horizon changes
       (``curriculum``).
    3. *Shrink*: Eq. (3.5)'s constraint made finite, ``L_traj ≤ (1 + tolerance)·L*``,
       starting from the λ where the two terms balance (``‖F_a‖²/λ = L_traj``, running
       averages; never above the current λ): above it the norm has no say.
       While it holds, λ falls by ``e^{-rate}`` per batch (``rate`` chosen when the
       phase starts, so that λ could fall by ``e^TRAVERSE`` over the batches left): the
       norm gains weight and removes whatever part of ``F_a`` the physical parameters
       can take over. When it breaks, λ first *holds*, and keeps holding while the fit
       recovers (its running average ``RECOVER``× lower from one check to the next): as
       the network gives way the physical parameters lag behind it, so even a complete
       prior's fit worsens for a while. Broken and stalled (the network carries something
       the physics cannot), λ gets back what it lost over the last ``WINDOW`` batches;
       stalled again, twice the last log-step each time (so that a start at the balance
       point far below the constraint's boundary is undone in a few restores), but not
       past the last λ known to keep the fit (``lam_ok``: the λ before the shrink began,
       then each λ with which a broken fit came back); and ``rate`` halves, so λ settles
       on the constraint's boundary; after ``CALM`` windows within the constraint the
       rate is back to the budget's (halving for good left a complete prior's λ within a
       factor 5 of λ₀ on reaction–diffusion a, b, k, whose noiseless floor is tiny and
       breached now and then). A complete prior ends with λ small and ``F_a ≈ 0``; an
       incomplete one with the smallest ``F_a`` that keeps the fit within
       ``tolerance`` of its floor. In this phase a later state validating within
       ``tolerance`` of the best one is the better result (:meth:`prefers`).
    4. *Settle* for the last ``1 − SETTLE`` (30 %) of the budget: λ no longer falls (it
       may still rise when the fit breaks and stalls), so the physical parameters
       converge at one λ instead of following its descent, and their mean over the last
       20 % — what a run reports as the settled value — is of one problem. (From 80 %,
       RD (a, b) pointwise was still recovering from a restore when that window began:
       a's spread 5.5 % there, 1.3 % once settled.)

    The loss is written ``L_traj + ‖F_a‖²/λ`` (the same minimisers as Eq. 3.7, divided by
    λ): the physical parameters then see the trajectory loss alone, unscaled, however far
    λ moves.

    **Thesis (``lambda0`` given):** Algorithm 2 as published: ``niter`` Adam steps on
    ``‖F_a‖² + λ·L_traj`` per batch, then ``λ ← λ + τ₂·L_traj``; ``adaptive=false``
    keeps λ at ``lambda0`` (the non-adaptive ablation of Table 3.6).

    ``norm`` is ``relative`` (``(‖F_a(x)‖/‖x‖)²``, the pendulum protocol) or ``absolute``
    (``‖F_a(x)‖²``, the PDE protocol); the rollout evaluates it on the batch's frames
    (Eq. 3.6's Monte-Carlo estimate over training states).
    """

    name = "aphynity"
    options = ("lambda0", "tau2", "niter", "adaptive", "norm", "tolerance")

    KAPPA = 1e3       #: start: the trajectory term weighs κ full-size networks
    EMA = 0.9         #: running average of the batch trajectory losses
    SWITCH = 0.4      #: the fraction of the budget spent fitting before λ moves
    WINDOW = 10       #: batches the running average needs (and lags the network by)
    RATE = 0.2        #: the largest log-change of λ per batch (the smallest: RATE/10)
    TRAVERSE = 3 * math.log(KAPPA)  #: how far λ may fall over the rest of the budget
    RANGE = 1e6       #: λ stays within [λ₀/RANGE, λ₀·RANGE]
    CALM = 3          #: WINDOWs within the constraint after which a halved rate is restored
    RECOVER = 0.9     #: a broken fit recovers if its average fell 10 % since the last check
    SETTLE = 0.7      #: from this fraction of the budget on, λ may rise but no longer falls

    def __init__(self, lambda0: float | None = None, tau2: float | None = None,
                 niter: int = 1, adaptive: bool | str = True, norm: str = "relative",
                 tolerance: float = 1.0, loss: str = "mse"):
        super().__init__(loss)
        if isinstance(adaptive, str):
            adaptive = adaptive.lower() in ("true", "yes", "on", "1")
        if norm not in ("relative", "absolute"):
            raise ValueError("aphynity: norm must be 'relative' or 'absolute'")
        if int(niter) < 1:
            raise ValueError("aphynity: niter must be ≥ 1")
        self.policy = "thesis" if lambda0 is not None else "auto"
        if self.policy == "auto" and (tau2 is not None or not adaptive):
            raise ValueError(
                "aphynity: tau2 and adaptive belong to the thesis's λ schedule (Algorithm 2), "
                "which needs lambda0 — e.g. aphynity(lambda0=1, tau2=1); leave all three out "
                "for the default policy, which chooses λ from the data")
        if not float(tolerance) > 0:
            raise ValueError("aphynity: tolerance must be > 0 (e.g. 0.25: the trajectory "
                             "loss may end 25 % above its floor to shrink the network)")
        self.lam = float(lambda0) if lambda0 is not None else math.nan
        self.tau2 = float(tau2) if tau2 is not None else 1.0
        self.niter = int(niter)
        self.adaptive = bool(adaptive)
        self.norm = norm
        self.tolerance = float(tolerance)
        # the default policy's state (see the class docstring)
        self.lam0 = math.nan
        self.horizon = 0
        self.ema = math.nan
        self.floor = math.nan
        self.batches = 0
        self.phase = "fit"
        self.rate = math.nan
        self.seen = 0
        self.calm = 0
        self.base_rate = math.nan
        self.checked = math.nan
        self.last_norm = self.norm_ema = math.nan
        self.lam_ok = math.nan
        self.stalls = 0

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
        if self.policy == "thesis":
            return self.constrained(norm + self.lam * traj, out, {"traj": traj, "norm": norm})
        if len(batch.t) != self.horizon:
            self._new_horizon(len(batch.t))
        if not math.isfinite(self.lam):
            self._start(float(traj.detach()), self.field_scale(batch.target, batch.t))
        self.last_norm = float(norm.detach())
        return self.constrained(traj + norm / self.lam, out, {"traj": traj, "norm": norm})

    def field_scale(self, frames: torch.Tensor, t: torch.Tensor) -> float:
        """``S_F``: the mean ``‖dX/dt‖²`` over the frames ``(B, T, *state)`` on times
        ``t``, by finite differences — the size of ``‖F_a‖²`` (Eq. 3.6, same norm) if the
        network carried all the dynamics."""
        dt = (t[1:] - t[:-1]).detach().view(1, -1, *(1,) * (frames.dim() - 2))
        d = ((frames[:, 1:] - frames[:, :-1]) / dt).flatten(0, 1).detach()
        x = frames[:, :-1].flatten(0, 1).detach()
        if d.dim() > 2:
            sq = d.pow(2).sum(dim=1).flatten(1).mean(dim=1)
            ref = x.pow(2).sum(dim=1).flatten(1).mean(dim=1)
        else:
            sq, ref = d.pow(2).sum(dim=1), x.pow(2).sum(dim=1)
        if self.norm == "relative":
            sq = sq / ref.clamp_min(1e-10)
        return float(sq.mean())

    def _start(self, traj: float, scale: float) -> None:
        lam = self.KAPPA * scale / traj if traj > 0 and scale > 0 else self.KAPPA
        self.lam = self.lam0 = lam if math.isfinite(lam) else self.KAPPA

    def _new_horizon(self, horizon: int) -> None:
        self.horizon = horizon
        self.ema = self.floor = math.nan
        self.batches = 0
        self.phase = "fit"

    def after_batch(self, traj_loss: float) -> None:
        if self.policy == "thesis":
            if self.adaptive:
                self.lam = self.lam + self.tau2 * traj_loss
            return
        if not math.isfinite(traj_loss):
            return
        b = self.EMA
        self.ema = traj_loss if not math.isfinite(self.ema) else b * self.ema + (1 - b) * traj_loss
        self.floor = self.ema if not math.isfinite(self.floor) else min(self.floor, self.ema)
        if math.isfinite(self.last_norm):
            n = self.last_norm
            self.norm_ema = (n if not math.isfinite(self.norm_ema)
                             else b * self.norm_ema + (1 - b) * n)
        self.batches += 1
        self.seen += 1
        if self.progress < self.SWITCH or self.batches < self.WINDOW:
            return
        if not math.isfinite(self.rate):
            # λ may fall by e^TRAVERSE over the rest of the budget (the batches left,
            # estimated from those seen): enough for a network κ times too free to give
            # way, slow enough for the running average to follow.
            left = self.seen / max(self.progress, 1e-9) - self.seen
            self.rate = min(self.RATE, max(self.RATE / 10, self.TRAVERSE / max(left, 1.0)))
            self.base_rate = self.rate
            self.lam_ok = self.lam  # the fit's floor was reached with this λ
            # Start shrinking where the two terms of the loss balance (‖F_a‖²/λ = L_traj):
            # above that λ the norm has no say, and walking down from λ₀ (κ networks'
            # worth) would spend a third of what is left of the budget doing nothing.
            if math.isfinite(self.norm_ema) and self.ema > 0:
                self.lam = max(self.lam0 / self.RANGE,
                               min(self.lam, self.norm_ema / self.ema))
        lo, hi = self.lam0 / self.RANGE, self.lam0 * self.RANGE
        if self.ema <= (1 + self.tolerance) * self.floor:
            self.calm += 1
            if self.phase in ("hold", "restore"):
                # A broken fit came back with this λ: the constraint's boundary is below
                # it (a calm stretch proves less: after a large fall of λ the fit takes
                # longer than a window to show it, 45 batches on RD (a, b) pointwise).
                self.lam_ok = self.lam
                self.stalls = 0
            if self.progress >= self.SETTLE:
                # The last 30 % of the budget: λ no longer falls, so that the physical
                # parameters settle at one λ (their mean and spread over the last 20 %
                # are what a run reports) instead of following its descent.
                self.phase = "settle"
                return
            self.phase = "shrink"
            if self.calm >= self.CALM * self.WINDOW:
                self.rate = self.base_rate
            self.lam = max(lo, self.lam * math.exp(-self.rate))
            return
        self.batches = 0  # wait WINDOW batches for the running average to show the effect
        if self.phase in ("fit", "shrink", "settle") or self.ema < self.RECOVER * self.checked:
            # The constraint broke, or is broken still but the fit is coming back: hold λ.
            # While the network gives way, the physical parameters lag behind it and the
            # fit worsens for a while even when they can take over (a complete prior);
            # as long as it recovers from one check to the next, λ waits for it.
            self.phase = "hold"
            self.checked = self.ema
            self.calm = 0
            return
        # Broken and not recovering: the network carries something the physics cannot.
        # Give λ back what it lost over the last WINDOW batches and halve the rate, so that
        # λ settles on the constraint's boundary instead of cycling around it. The halving
        # is not permanent: after CALM×WINDOW batches within the constraint the rate is
        # back to the one the budget allows (on noiseless data the floor is tiny and
        # breached now and then; halving for good left a complete prior's λ stuck).
        # Stalled again after a restore, the next restore doubles the log-step (up to
        # the last λ known to keep the fit): after the start at the balance point, RD
        # (a, b) with a pointwise F_a fell from 7.2e5 to 60 and never came back with one
        # window's worth a time, while a small pendulum recovers after one restore and
        # loses T0 accuracy if λ goes far back up (a bisection towards 7.2e5: 3.8 % vs
        # 2.7 %).
        self.phase = "restore"
        self.checked = self.ema
        self.calm = 0
        step = self.rate * self.WINDOW
        if self.stalls:  # stalled again since the last restore: twice the last log-step
            step = self.base_rate * self.WINDOW * 2 ** self.stalls
        back = self.lam * math.exp(min(step, math.log(hi / self.lam)))  # (no overflow)
        if math.isfinite(self.lam_ok) and back > self.lam_ok:
            back = min(hi, max(self.lam_ok, self.lam * math.exp(self.rate * self.WINDOW)))
        self.stalls = min(self.stalls + 1, 64)  # (2**stalls stays a float)
        self.lam = back
        self.rate = max(self.rate / 2, self.RATE / 40)

    def prefers(self, val: float, best: float) -> bool:
        """Once λ moves (the default policy's constrained phase) a later state is the
        better result if it validates within ``tolerance`` of the best: the fit is as
        good as the constraint asks, and the network is smaller. Without this, model
        selection by validation error alone would keep the state before the norm acted."""
        if self.policy == "auto" and self.phase in ("shrink", "hold", "restore", "settle"):
            return val <= (1 + self.tolerance) * best
        return val < best

    def state_dict(self):
        return {"lambda": self.lam, "lambda0": self.lam0, "horizon": self.horizon,
                "ema": self.ema, "floor": self.floor, "batches": self.batches,
                "phase": self.phase, "rate": self.rate, "seen": self.seen,
                "calm": self.calm, "base_rate": self.base_rate, "checked": self.checked,
                "norm_ema": self.norm_ema, "lambda_ok": self.lam_ok, "stalls": self.stalls}

    def load_state_dict(self, state):
        self.lam = float(state["lambda"])
        self.lam0 = float(state.get("lambda0", math.nan))
        self.horizon = int(state.get("horizon", 0))
        self.ema = float(state.get("ema", math.nan))
        self.floor = float(state.get("floor", math.nan))
        self.batches = int(state.get("batches", 0))
        self.phase = str(state.get("phase", "fit"))
        self.rate = float(state.get("rate", math.nan))
        self.seen = int(state.get("seen", 0))
        self.calm = int(state.get("calm", 0))
        self.base_rate = float(state.get("base_rate", math.nan))
        self.checked = float(state.get("checked", math.nan))
        self.norm_ema = float(state.get("norm_ema", math.nan))
        self.lam_ok = float(state.get("lambda_ok", math.nan))
        self.stalls = int(state.get("stalls", 0))

    def describe(self):
        if self.policy == "thesis":
            return {"lambda": self.lam}
        return {"lambda": self.lam, "phase": self.phase}
