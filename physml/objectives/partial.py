"""Metrics of partially observed forecasts (thesis §2.5.2, eqs. 2.6 and 2.7).

Both take forecasts and truths ``(B, T, C, *grid)`` whose first frame is the initial time
``t0`` (not scored: k runs from 1 to the horizon), and average over the points ``x`` of
the grid (one point for ODE states), the frames and the trajectories.
"""
from __future__ import annotations

import torch

#: The horizons of the thesis's Tables 2.1–2.2 (frames after t0).
HORIZONS = (5, 10, 50)


def relative_mse(pred: torch.Tensor, target: torch.Tensor, horizon: int | None = None,
                 eps: float = 1e-12, pointwise: bool = True) -> float:
    """Thesis eq. (2.6), as printed: ``(1/T)(1/|Ω|) Σ_k Σ_x ‖H(X_k(x)) − Y_k(x)‖₂ /
    ‖Y_k(x)‖₂`` — the norm at each point is over the observed channels (pass those only);
    the thesis calls it "relative MSE" though it is a ratio of norms, not of squares.
    ``eps`` keeps a point where the observation is exactly zero finite.

    ``pointwise=False``, the guarded form: ``(1/T) Σ_k ‖H(X_k) − Y_k‖_Ω / ‖Y_k‖_Ω`` with
    the norms over the whole field (every point and observed channel) of frame k. The
    printed form divides at each point by the observation there, so a field that is near
    zero on part of the domain — the Navier–Stokes density blob of §2.5 is ~1e-10 away from
    its centre — turns a negligible absolute error into ratios of 10⁶ and more. The two
    forms are the same for ODE states (one point)."""
    T = pred.shape[1] - 1 if horizon is None else min(horizon, pred.shape[1] - 1)
    p, y = pred[:, 1:T + 1], target[:, 1:T + 1]
    if not pointwise:
        p, y = p.flatten(2), y.flatten(2)     # (B, T, channels·points): one norm per frame
    num = (p - y).pow(2).sum(dim=2).sqrt()
    den = y.pow(2).sum(dim=2).sqrt().clamp_min(eps)
    return float((num / den).mean())


def relative_error_field(pred: torch.Tensor, target: torch.Tensor,
                         horizon: int | None = None) -> float:
    """Eq. (2.6) with norms over the whole field per frame (:func:`relative_mse` with
    ``pointwise=False``): what grids report beside the printed form."""
    return relative_mse(pred, target, horizon, pointwise=False)


def hidden_cosine(pred: torch.Tensor, truth: torch.Tensor, horizon: int | None = None,
                  eps: float = 1e-12) -> float:
    """Thesis eq. (2.7): the cosine similarity ``⟨u¹(x), u²(x)⟩ / (‖u¹(x)‖ ‖u²(x)‖)``
    between the model's hidden state and the true one at each point (the vector over the
    hidden channels — pass those only), averaged over points, frames 1…T and
    trajectories. With one hidden channel per point it is the agreement of signs."""
    T = pred.shape[1] - 1 if horizon is None else min(horizon, pred.shape[1] - 1)
    a, b = pred[:, 1:T + 1], truth[:, 1:T + 1]
    dot = (a * b).sum(dim=2)
    norm = a.pow(2).sum(dim=2).sqrt() * b.pow(2).sum(dim=2).sqrt()
    return float((dot / norm.clamp_min(eps)).mean())


def per_horizon(metric, pred: torch.Tensor, truth: torch.Tensor,
                horizons=HORIZONS, whole: bool = False) -> dict[str, float]:
    """``{"T=5": …, "T=10": …}`` for the horizons the forecasts reach; ``whole``: also
    ``"all"``, the whole forecast."""
    n = pred.shape[1] - 1
    out = {f"T={h}": metric(pred, truth, h) for h in horizons if h <= n}
    if whole:
        out["all"] = metric(pred, truth)
    return out
