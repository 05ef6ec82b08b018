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
from ..solve import get_solver, odeint
from ..solve.differentiable import compiled
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
        # Partial observation (thesis ch. 2): see `observe`.
        self.encoder: nn.Module | None = None
        self.observed: list[int] | None = None
        self.substeps = 1
        self.sampling_decay: float | None = None
        self.given: list[int] = []
        self.register_buffer("readout", None, persistent=False)
        #: ``constraint … where …`` lines (thesis eq. 2.13), penalised in training
        self.constraints: nn.Module | None = None
        #: ``constraint … hard`` lines (eq. 2.11), held inside the solver
        #: (:class:`~physml.models.constraints.HardConstraints`)
        self.hard: nn.Module | None = None

    def observe(self, observed: list[int] | None, encoder: nn.Module | None = None,
                substeps: int = 1, scheduled_sampling: float | None = None,
                readout: torch.Tensor | None = None, given: list[int] = ()) -> None:
        """Partial observation and the chapter's training details (thesis §2.3–2.5).

        ``observed``: the state channels that are measured (None: all). ``encoder``: the
        initial state is ``E_θ(Y_{−K+1..0}) + Hᵀ Y₀`` (Setting 1, eq. 2.8) instead of the
        batch's ``x0`` (Setting 2: a full initial state is given). ``substeps``: solver
        steps per interval between observations (the thesis's 3 Euler steps).
        ``scheduled_sampling`` ``k``: in training, after each step the observed channels
        are replaced by the observation with probability ``k^i`` at the ``i``-th training
        pass (exponential scheduled sampling, Bengio et al. 2015).
        """
        self.observed = list(observed) if observed is not None else None
        # `observe u + v`: the measured quantities are H·X; predictions compared with
        # them are H·X̂ (`forward` returns those; `predict` the full states).
        self.readout = None
        if readout is not None:
            if scheduled_sampling is not None:
                raise ValueError("`scheduled_sampling` resets observed variables to their "
                                 "measurements, which linear observations (`observe u + v`) "
                                 "do not give; drop one of the two")
            self.readout = torch.as_tensor(readout)
        self.encoder = encoder
        # `encoder ... given w`: hidden channels whose initial values the batch's x0 holds
        # (thesis eq. 2.8: X₀ = E_θ(Y) + (Y₀, w̆₀, 0)).
        self.given = list(given)
        self.substeps = max(1, int(substeps))
        self.sampling_decay = scheduled_sampling
        if scheduled_sampling is not None:
            self.register_buffer("sampling_step", torch.zeros((), dtype=torch.long))

    def initial_state(self, batch: Batch) -> torch.Tensor:
        """The state each forecast starts from: the encoder's estimate from the observed
        frames, else the batch's ``x0``; plus, in training, the learned offset of each
        training trajectory with ``fit_initial`` (with an encoder: a per-trajectory
        refinement of its estimate, as in output-error identification)."""
        if self.encoder is not None:
            frames = batch.target[:, :1]
            if batch.context is not None:
                frames = torch.cat([batch.context, frames], dim=1)
            x0 = self.encoder(frames[:, -self.encoder.frames:])
            if self.readout is None:
                # + Hᵀ Y₀: the target's hidden channels are zero (Trajectories masks them).
                x0 = x0 + batch.target[:, 0]
            if self.given:
                keep = torch.zeros_like(batch.x0)
                keep[:, self.given] = batch.x0[:, self.given]
                x0 = x0 + keep
        else:
            x0 = batch.x0
        if self.training and self.x0_offset is not None:
            x0 = x0 + self.x0_offset[batch.traj]
        return x0

    def fit_initial_states(self, n: int, state_shape: tuple[int, ...]) -> None:
        """Learn an offset to the observed first frame of each of ``n`` training
        trajectories (none when ``n`` is 0)."""
        self.x0_offset = nn.Parameter(torch.zeros(n, *state_shape)) if n else None

    def forward(self, batch: Batch, regulariser: str | None = None) -> RolloutOutput:
        x0 = self.initial_state(batch)
        if self.training and self.sampling_decay is not None:
            pred = self._scheduled_sampling(x0, batch)
        elif batch.restart is not None:
            pred = self._integrate_restarting(x0, batch)
        else:
            pred = self.integrate(x0, batch.t, batch.env)
        terms: dict[str, torch.Tensor] = {}
        if regulariser is not None:
            # Eq. 3.6: the mean over training states of ‖F_a(x)‖² (or (‖F_a‖/‖x‖)²).
            # A network that takes t (`augment ... with t`) sees each frame's time.
            # With hidden channels the data are no states: the forecast's are used.
            times = batch.t.repeat(len(batch)) if self.field.aug_takes_time else None
            partial = self.observed is not None or self.readout is not None
            states = pred if partial else batch.target
            norm_terms = self.field.norm_terms
            if self.solver.compiled and self.training and type(self.field) is HybridModel:
                # Eq. 3.6 evaluates F_a on every frame of the batch (a quarter of the
                # pendulum's flops): compiled, its activations and reductions fuse.
                norm_terms = self.field.__dict__.get("_physml_norm_terms")
                if norm_terms is None:
                    norm_terms = self.field.__dict__["_physml_norm_terms"] = compiled(
                        self.field.norm_terms, states.device)
            terms.update(norm_terms(
                states.flatten(0, 1), batch.env.repeat_interleave(batch.t.shape[0]),
                relative=regulariser == "relative", times=times))
        if self.constraints is not None and self.training:
            # Eq. 2.13 on the forecast states; the condition is read from the data (under
            # linear observations it may use coordinates only: read it on the forecast).
            data = batch.target if self.readout is None else pred.detach()
            terms["constraint"] = self.constraints(pred, data, batch.mask
                                                   if self.readout is None else None)
        return RolloutOutput(self.observations(pred), terms)

    def _integrate_restarting(self, x0: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Teacher forcing (thesis §3.4.4): the integration restarts from the observed
        frame at each frame flagged in ``batch.restart``; the prediction at that frame is
        the previous segment's, so every frame but the first is still a forecast. Fixed
        solvers do it in one pass over the grid (:func:`~physml.solve.odeint`'s
        ``restart``), so compiled steps keep one graph whatever the draw."""
        restart = batch.restart.clone()
        if batch.mask is not None:  # restart only from frames observed in full
            seen = batch.mask.expand_as(batch.target).flatten(2).bool().all(dim=2).all(dim=0)
            restart &= seen.cpu()
        return self.integrate(x0, batch.t, batch.env, restart=restart, data=batch.target)

    def observations(self, states: torch.Tensor) -> torch.Tensor:
        """What the data measure of states ``(B, T, C, …)``: ``H·X`` under linear
        observations, else the states themselves (hidden channels are masked)."""
        if self.readout is None:
            return states
        return torch.einsum("oc,btc...->bto...", self.readout.to(states), states)

    def forecast(self, batch: Batch) -> torch.Tensor:
        """The observations a forecast from the batch's initial states predicts."""
        return self.observations(self.integrate(self.initial_state(batch), batch.t, batch.env))

    def integrate(self, x0: torch.Tensor, t: torch.Tensor, env: torch.Tensor | None = None,
                  restart: torch.Tensor | None = None, data: torch.Tensor | None = None
                  ) -> torch.Tensor:
        """Solve from ``x0`` ``(B, *state)`` on ``t``; returns ``(B, T, *state)``. ``env``
        ``(B,)``: each row's environment (for models over several, §3.4). ``restart``
        ``(T,)`` bool, ``data`` ``(B, T, *state)``: leave ``t[k]`` from ``data[:, k]``
        where flagged (teacher forcing)."""
        order = self.field.row_order(env)
        if order is not None:  # solve in the order the field prefers, answer in the given
            pred = self.integrate(x0[order], t, env[order], restart,
                                  data[order] if data is not None else None)
            return pred[torch.argsort(order)]
        if self.substeps > 1 and t.numel() > 1:
            # `substeps n`: n solver steps per observation interval, on a finer time grid.
            frac = torch.arange(self.substeps, dtype=t.dtype, device=t.device) / self.substeps
            fine = torch.cat([(t[:-1, None] + (t[1:] - t[:-1])[:, None] * frac).flatten(),
                              t[-1:]])
            if restart is not None:  # the flags and data on the fine grid's frame times
                fine_restart = restart.new_zeros(fine.shape[0])
                fine_restart[::self.substeps] = restart
                restart = fine_restart
                data = data.repeat_interleave(self.substeps, dim=1)[:, :fine.shape[0]]
            return self._solve(x0, fine, env, restart, data)[:, ::self.substeps]
        return self._solve(x0, t, env, restart, data)

    def _solve(self, x0: torch.Tensor, t: torch.Tensor, env: torch.Tensor | None = None,
               restart: torch.Tensor | None = None, data: torch.Tensor | None = None
               ) -> torch.Tensor:
        s = self.solver
        compiled = s.compiled and self.training
        field = self.solver_field()
        if field is not self.field:  # `constraint ... hard`: held in x0, restarts and rates
            x0 = self.hard.project(x0)
            if data is not None:
                data = self.hard.project(data.flatten(0, 1)).view_as(data)
        # Compiled steps fuse the parameter transform themselves; eager ones share it.
        with self.field.at_environments(env), \
                (nullcontext() if compiled or s.adjoint or s.recompute else self.field.solving()):
            return odeint(field, x0, t, s.name, step=s.step, rtol=s.rtol, atol=s.atol,
                          adjoint=s.adjoint, compiled=compiled,
                          recompute=s.recompute and torch.is_grad_enabled(),
                          restart=restart, data=data)

    def solver_field(self) -> nn.Module:
        """What a solver integrates: the field, or while a ``constraint ... hard`` is held
        (:meth:`HardConstraints.active`) the field with its rates held (made once: a
        solver compiles and caches its steps on the module it integrates; kept out of the
        module tree, since its parameters are the field's own). Its initial states go
        through ``hard.project``."""
        if self.hard is None or not self.hard.active():
            return self.field
        is_map = get_solver(self.solver.name).is_map
        held = self.__dict__.get("_held")
        if held is None or held.field is not self.field or held.hard is not self.hard \
                or held.map != is_map:
            from .constraints import HeldField

            held = self.__dict__["_held"] = HeldField(self.field, self.hard, map=is_map)
        return held

    def _scheduled_sampling(self, x0: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Frame by frame; after each frame the observed channels of a trajectory are
        the observation with probability ``decay^i`` (Bengio et al. 2015)."""
        p = float(self.sampling_decay) ** int(self.sampling_step)
        self.sampling_step += 1
        channels = torch.zeros(batch.target.shape[2], dtype=torch.bool, device=x0.device)
        channels[self.observed if self.observed is not None else slice(None)] = True
        channels = channels.view(1, -1, *(1,) * (x0.dim() - 2))
        x, out = x0, [x0]
        for k in range(len(batch.t) - 1):
            x = self.integrate(x, batch.t[k:k + 2], batch.env)[:, -1]
            out.append(x)
            teach = torch.rand(x.shape[0], device=x.device) < p
            # Always the select, never a test of `teach.any()` on the host: on a GPU that
            # would wait for the device at every frame.
            pick = teach.view(-1, *(1,) * (x.dim() - 1)) & channels
            if batch.mask is not None:  # never a gap's zero
                pick = pick & (batch.mask[:, k + 1] > 0)
            x = torch.where(pick, batch.target[:, k + 1], x)
        return torch.stack(out, dim=1)

    @torch.no_grad()
    def predict(self, batch: Batch, chunk: int = 256) -> torch.Tensor:
        """Forecasts from the initial states (:meth:`initial_state`: the observed or
        given ones, or the encoder's), ``chunk`` trajectories at a time; each trajectory's
        forecast is independent of the others in its chunk."""
        was = self.training
        self.eval()
        try:
            chunks = [batch.select(slice(i, i + chunk)) for i in range(0, len(batch), chunk)]
            return torch.cat([self.integrate(self.initial_state(c), c.t, c.env)
                              for c in chunks])
        finally:
            self.train(was)

    # -- what the trainer and reports need ---------------------------------------------
    def physical_parameters(self) -> dict[str, torch.Tensor]:
        return self.field.physical_parameters()

    def physical_raw_parameters(self) -> list[nn.Parameter]:
        return self.field.physical_raw_parameters()
