"""Trajectory losses (thesis Eq. 3.5) over batches that carry observation masks.

Every objective starts from the per-trajectory error ``e_i``: the mean squared error of
trajectory ``i`` over its observed entries (all of them when the batch has no mask). The
batch loss aggregates the ``e_i``: their mean (``mse``), or a Cauchy M-estimator
(``robust``) that caps the pull of a trajectory no model of the family can follow.
"""
from __future__ import annotations

import torch

#: ``train ... loss KIND``: the aggregates a spec may name.
LOSSES = ("mse", "robust")


def per_trajectory_errors(pred: torch.Tensor, target: torch.Tensor,
                          mask: torch.Tensor | None = None) -> torch.Tensor:
    """``e_i``: mean squared error of each trajectory ``(B, T, *state)`` → ``(B,)``.

    ``mask`` (broadcastable to ``target``, 1 where observed) restricts the mean to the
    observed entries, so unobserved channels or frames neither count nor dilute it.
    """
    err = (pred - target).pow(2)
    if mask is None:
        return err.flatten(1).mean(dim=1)
    m = mask.to(err.dtype).expand_as(err)
    return (err * m).flatten(1).sum(dim=1) / m.flatten(1).sum(dim=1).clamp_min(1.0)


def aggregate_errors(per: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """The batch loss from per-trajectory errors ``e_i``.

    ``mse``: their mean (with equal-length, fully observed trajectories this is the MSE of
    the batch). ``robust``: ``mean_i s²·log(1 + e_i/s²)`` with ``s² = 10·median_i e_i`` (not
    differentiated), a Cauchy (Lorentzian) M-estimator. It equals the MSE where all
    trajectories fit alike; the gradient weight of trajectory ``i`` is ``1/(1 + e_i/s²)``, so
    one pendulum that crosses the separatrix in the data but not in the forecast cannot
    steer the fit.
    """
    if kind not in LOSSES:
        raise ValueError(f"loss {kind!r}: choices are {', '.join(LOSSES)}")
    if kind == "mse" or per.numel() < 3:
        return per.mean()
    s2 = (10.0 * per.detach().median()).clamp_min(torch.finfo(per.dtype).tiny)
    return (s2 * torch.log1p(per / s2)).mean()


def trajectory_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "mse",
                    mask: torch.Tensor | None = None) -> torch.Tensor:
    """``L_traj`` of a batch of trajectories ``(B, T, *state)`` (thesis Eq. 3.5)."""
    return aggregate_errors(per_trajectory_errors(pred, target, mask), kind)
