"""The rollout: initial state → vector field → solver → predicted trajectories.

:class:`Rollout` is the one module that ``torch.compile`` and DistributedDataParallel
wrap: its ``forward(batch)`` integrates the field from each trajectory's initial state on
the batch's times and returns the predictions with the regulariser terms an objective
asked for, all inside one forward pass (so DDP sees every parameter the loss uses).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from ..data.batches import Batch
from ..solve import odeint
from .hybrid import HybridModel


class RolloutOutput(NamedTuple):
    """``pred`` ``(B, T, *state)`` on the batch's times; ``terms`` the regularisers
    computed in the same pass (``aug_norm``: thesis Eq. 3.6's estimate of ‖F_a‖²). A
    tuple, which DDP traverses to find the tensors of the graph."""

    pred: torch.Tensor
    terms: dict[str, torch.Tensor]


@dataclass(frozen=True)
class SolverConfig:
    """How the rollout integrates: a registered solver name and its options."""

    name: str = "rk4"
    step: float | None = None
    rtol: float = 1e-6
    atol: float = 1e-7
    adjoint: bool = False
    compiled: bool = False
    recompute: bool = False


class Rollout(nn.Module):
    """``field`` integrated by ``solver`` from each batch's initial states.

    ``fit_initial`` trajectories (``n_initial`` of them, the training set) start from their
    observed first frame plus a learned offset (initial-state estimation, as in
    output-error system identification); offsets apply in training mode only, so
    forecasts (validation, test) start from the observed frame.
    """

    def __init__(self, field: HybridModel, solver: SolverConfig = SolverConfig(),
                 n_initial: int = 0, state_shape: tuple[int, ...] = ()):
        super().__init__()
        self.field = field
        self.solver = solver
        self.x0_offset: nn.Parameter | None = None
        self.fit_initial_states(n_initial, state_shape)

    def fit_initial_states(self, n: int, state_shape: tuple[int, ...]) -> None:
        """Learn an offset to the observed first frame of each of ``n`` training
        trajectories (none when ``n`` is 0)."""
        self.x0_offset = nn.Parameter(torch.zeros(n, *state_shape)) if n else None

    def forward(self, batch: Batch, regulariser: str | None = None) -> RolloutOutput:
        x0 = batch.x0
        if self.training and self.x0_offset is not None:
            x0 = x0 + self.x0_offset[batch.traj]
        if batch.restart is not None and bool(batch.restart.any()):
            pred = self._integrate_restarting(x0, batch)
        else:
            pred = self.integrate(x0, batch.t, batch.env)
        terms: dict[str, torch.Tensor] = {}
        if regulariser is not None:
            # Eq. 3.6: the mean over training states of ‖F_a(x)‖² (or (‖F_a‖/‖x‖)²).
            # A network that takes t (`augment ... with t`) sees each frame's time.
            times = batch.t.repeat(len(batch)) if self.field.aug_takes_time else None
            terms.update(self.field.norm_terms(
                batch.target.flatten(0, 1), batch.env.repeat_interleave(batch.t.shape[0]),
                relative=regulariser == "relative", times=times))
        return RolloutOutput(pred, terms)

    def _integrate_restarting(self, x0: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Teacher forcing (thesis §3.4.4): the integration restarts from the observed
        frame at each frame flagged in ``batch.restart``; the prediction at that frame is
        the previous segment's, so every frame but the first is still a forecast."""
        T = batch.t.shape[0]
        cuts = [k for k in batch.restart.nonzero().flatten().tolist() if 0 < k < T - 1]
        if batch.mask is not None:  # restart only from frames observed in full
            seen = batch.mask.expand_as(batch.target).flatten(2).bool().all(dim=2).all(dim=0)
            cuts = [k for k in cuts if bool(seen[k])]
        pieces, start, x = [], 0, x0
        for k in cuts + [T - 1]:
            seg = self.integrate(x, batch.t[start:k + 1], batch.env)
            pieces.append(seg if not pieces else seg[:, 1:])
            start, x = k, batch.target[:, k]
        return torch.cat(pieces, dim=1)

    def integrate(self, x0: torch.Tensor, t: torch.Tensor,
                  env: torch.Tensor | None = None) -> torch.Tensor:
        """Solve from ``x0`` ``(B, *state)`` on ``t``; returns ``(B, T, *state)``. ``env``
        ``(B,)``: each row's environment (for models over several, §3.4)."""
        order = self.field.row_order(env)
        if order is not None:  # solve in the order the field prefers, answer in the given
            pred = self.integrate(x0[order], t, env[order])
            return pred[torch.argsort(order)]
        s = self.solver
        compiled = s.compiled and self.training
        # Compiled steps fuse the parameter transform themselves; eager ones share it.
        with self.field.at_environments(env), \
                (nullcontext() if compiled or s.adjoint or s.recompute else self.field.solving()):
            return odeint(self.field, x0, t, s.name, step=s.step, rtol=s.rtol, atol=s.atol,
                          adjoint=s.adjoint, compiled=compiled,
                          recompute=s.recompute and torch.is_grad_enabled())

    @torch.no_grad()
    def predict(self, batch: Batch, chunk: int = 256) -> torch.Tensor:
        """Forecasts from the observed initial states, ``chunk`` trajectories at a time;
        each trajectory's forecast is independent of the others in its chunk."""
        was = self.training
        self.eval()
        try:
            return torch.cat([self.integrate(batch.x0[i:i + chunk], batch.t,
                                             batch.env[i:i + chunk])
                              for i in range(0, len(batch), chunk)])
        finally:
            self.train(was)

    # -- what the trainer and reports need ---------------------------------------------
    def physical_parameters(self) -> dict[str, torch.Tensor]:
        return self.field.physical_parameters()

    def physical_raw_parameters(self) -> list[nn.Parameter]:
        return self.field.physical_raw_parameters()
