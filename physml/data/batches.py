"""From a dataset split to the batches every objective sees.

A split is stored as ``(E, N, T, *state)`` — environments, trajectories, frames, state —
and training keeps that structure: :class:`Trajectories` lists the ``E·N`` trajectories
with their environment and trajectory index, and hands out :class:`Batch` objects that
carry the initial state (or the context frames before it, for encoders), the times, the
target frames, an observation mask and both indices. Nothing on the way averages over
environments or drops channels: that is the objective's decision.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass
class Batch:
    """What one forward pass of a rollout needs and what the loss compares with.

    ``target`` is ``(B, T, *state)`` on the times ``t`` (``t[0] = 0`` is the initial
    time); ``x0`` is ``target[:, 0]``. ``context`` holds the ``K`` frames observed before
    ``t = 0`` (``(B, K, *state)``, for encoders) or is None. ``mask`` (broadcastable to
    ``target``, 1 where observed) is None when everything is observed. ``env`` and
    ``traj`` (``(B,)`` long) index the environment and the trajectory in its split.
    """

    x0: torch.Tensor
    t: torch.Tensor
    target: torch.Tensor
    env: torch.Tensor
    traj: torch.Tensor
    context: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    #: ``(T,)`` bool, teacher forcing: the frames from which the integration restarts from
    #: the data (the prediction at such a frame is still the model's); None: never
    restart: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.target.shape[0]

    def to(self, device) -> "Batch":
        move = lambda x: x.to(device) if x is not None else None  # noqa: E731
        return Batch(move(self.x0), move(self.t), move(self.target), move(self.env),
                     move(self.traj), move(self.context), move(self.mask), self.restart)

    def select(self, rows: torch.Tensor | slice) -> "Batch":
        """The sub-batch of some rows (a DDP rank's share, an evaluation chunk)."""
        pick = lambda x: x[rows] if x is not None and x.dim() > 0 and x.shape[0] == len(self) \
            else x  # noqa: E731
        return replace(self, x0=pick(self.x0), target=pick(self.target), env=pick(self.env),
                       traj=pick(self.traj), context=pick(self.context), mask=pick(self.mask))


class Trajectories:
    """The trajectories of one split, ready to batch.

    ``frames`` is ``(E, N, T, *state)``; the first ``history`` frames precede the initial
    time and become the batches' ``context``. Non-finite entries (gaps in user data, hidden
    variables a file does not hold) are unobserved: they get a zero in the target and a
    zero in the mask.

    ``observed`` (channel indices; None: all) are the measured variables (``observe``):
    the other channels are zero in the target and the context and zero in the mask, so
    nothing downstream can see them. ``readout`` ``H`` (``(n_obs, C)``; linear
    observations, ``observe u + v``): the target and the context hold ``H·X`` instead.
    The batches' ``x0`` keeps the full initial state where the data hold it (Setting 2 of
    thesis §2.4.3: a full initial state is given); ``x0_known`` says where it does.
    """

    def __init__(self, frames: torch.Tensor, times: torch.Tensor, history: int = 0,
                 device=None, dtype: torch.dtype | None = None,
                 observed: list[int] | None = None, readout: torch.Tensor | None = None):
        dtype = dtype or torch.get_default_dtype()
        E, N = frames.shape[:2]
        data = frames.flatten(0, 1).to(device=device, dtype=dtype)
        #: every frame's full state as the data hold it (NaN: unknown), for initial states
        self._states = data
        if readout is not None:
            # `observe u + v`: the targets and the context are the measured quantities
            # Y = H·X (one channel per row of H); x0 keeps the full initial state.
            data = torch.einsum("oc,ntc...->nto...", readout.to(data), data)
        self.n_envs, self.per_env = E, N
        self.history = int(history)
        zero = torch.zeros((), dtype=dtype, device=data.device)
        seen = torch.isfinite(data)
        self.observed = list(observed) if observed is not None else None
        if self.observed is not None:
            channels = torch.zeros(data.shape[2], dtype=torch.bool, device=data.device)
            channels[self.observed] = True
            seen = seen & channels.view(1, 1, -1, *(1,) * (data.dim() - 3))
        x0 = self._states[:, history]
        self.x0_known = torch.isfinite(x0)
        self.x0 = torch.where(self.x0_known, x0, zero)
        #: the measured values of every frame (history, then from t0), 0 where unmeasured
        self._seq = data if bool(seen.all()) else torch.where(seen, data, zero)
        self.context = self._seq[:, :history] if history else None
        self.frames = self._seq[:, history:]
        finite = seen[:, history:]
        self.mask = None if bool(finite.all()) else finite.to(dtype)
        times = torch.as_tensor(times, dtype=torch.float64)
        self.times = (times[history:] - times[history]).to(device=device, dtype=dtype)
        self.env = torch.arange(E, device=device).repeat_interleave(N)
        self.traj = torch.arange(E * N, device=device)

    @property
    def whole(self) -> "Trajectories":
        """The trajectories themselves (for :class:`Windows`: the ones they are cut from)."""
        return self

    def __len__(self) -> int:
        return self.frames.shape[0]

    @property
    def n_frames(self) -> int:
        return self.frames.shape[1]

    def mean_square(self) -> float:
        """The mean square of the observed entries (what a forecast of zero scores)."""
        if self.mask is None:
            return float(self.frames.pow(2).mean())
        return float(self.frames.pow(2).sum() / self.mask.sum().clamp_min(1.0))

    def batch(self, rows: torch.Tensor | slice | None = None, horizon: int | None = None
              ) -> Batch:
        """The trajectories ``rows`` (all by default), cut to the first ``horizon`` frames."""
        rows = slice(None) if rows is None else rows
        h = self.n_frames if horizon is None else min(horizon, self.n_frames)
        target = self.frames[rows, :h]
        return Batch(x0=self.x0[rows], t=self.times[:h], target=target, env=self.env[rows],
                     traj=self.traj[rows],
                     context=self.context[rows] if self.context is not None else None,
                     mask=self.mask[rows, :h] if self.mask is not None else None)

    def chunks(self, size: int):
        """Every trajectory once, in order, ``size`` at a time (validation, evaluation)."""
        for start in range(0, len(self), max(1, size)):
            yield self.batch(slice(start, start + size))


class Windows:
    """Every window of ``length`` frames of some trajectories, each with the ``history``
    frames before it as its context: the samples of ``windows all``.

    The thesis's cardiac data (§2.7.3) are "random sequences of 10 data frames extracted
    at different time points" of 30 ms simulations: 4 frames for the encoder, 6 to
    supervise. Cutting each trajectory at every frame (``stride`` 1) gives the model the
    whole course of each simulation (the onset, the spreading front, the tissue fully
    depolarised) rather than its first frames only. A window starting at frame ``o`` of a
    trajectory (0: its ``t0``) takes its context from the frames ``o − K … o − 1`` (the
    stored history for ``o < K``), its initial state from the data at ``o``, and keeps the
    trajectory's environment and index. The time grid must be uniform, so that every
    window has the same times ``t − t_o``.
    """

    def __init__(self, source: Trajectories, length: int, stride: int = 1):
        if length < 1 or stride < 1:
            raise ValueError("windows need a length and a stride of at least 1")
        self.source = source
        length = min(int(length), source.n_frames)
        steps = source.times.diff()
        if steps.numel() and not torch.allclose(steps, steps[:1].expand_as(steps),
                                                rtol=1e-6, atol=1e-9 * float(steps.abs().max())):
            raise ValueError("windows of the trajectories need equally spaced frames (the "
                             "windows then share their times); these data are not")
        starts = torch.arange(0, source.n_frames - length + 1, stride,
                              device=source.frames.device)
        n = torch.arange(len(source), device=starts.device)
        #: ``(M, 2)``: the trajectory and the first frame (from its t0) of each window
        self.index = torch.cartesian_prod(n, starts).view(-1, 2)
        self.length = length
        self.history = source.history
        self.times = source.times[:length]
        self.env = source.env[self.index[:, 0]]
        self.traj = source.traj[self.index[:, 0]]

    @property
    def x0_known(self) -> torch.Tensor:
        """Where the data hold each window's initial state (``(M, *state)`` bool); read
        once, by the check of Setting 2's initial states, so not kept."""
        at = self.index[:, 1] + self.source.history
        return torch.isfinite(self.source._states[self.index[:, 0], at])

    @property
    def whole(self) -> Trajectories:
        return self.source

    def __len__(self) -> int:
        return self.index.shape[0]

    @property
    def n_frames(self) -> int:
        return self.length

    def mean_square(self) -> float:
        return self.source.mean_square()

    def batch(self, rows: torch.Tensor | slice | None = None, horizon: int | None = None
              ) -> Batch:
        """The windows ``rows`` (all by default), cut to their first ``horizon`` frames."""
        src = self.source
        idx = self.index[slice(None) if rows is None else rows]
        h = self.length if horizon is None else min(horizon, self.length)
        n, o = idx[:, :1], idx[:, 1:] + src.history          # (B, 1) each
        frames = o + torch.arange(h, device=idx.device)
        x0 = src._states[n[:, 0], o[:, 0]]
        context = None
        if src.history:
            context = src._seq[n, o - src.history + torch.arange(src.history,
                                                                  device=idx.device)]
        mask = src.mask[n, frames - src.history] if src.mask is not None else None
        return Batch(x0=torch.where(torch.isfinite(x0), x0, torch.zeros_like(x0)),
                     t=self.times[:h], target=src._seq[n, frames], env=src.env[n[:, 0]],
                     traj=src.traj[n[:, 0]], context=context, mask=mask)

    def chunks(self, size: int):
        """Every window once, in order, ``size`` at a time (validation, evaluation)."""
        for start in range(0, len(self), max(1, size)):
            yield self.batch(slice(start, start + size))


def split_off_validation(frames: torch.Tensor, fraction: float, seed: int
                         ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Carve a validation split out of training trajectories ``(E, N, T, …)``.

    The same trajectory indices are taken in every environment (initial states are shared
    across environments), chosen by a seeded permutation: ``max(1, round(fraction·N))`` of
    them, leaving at least one for training. Returns ``(train, val, val_indices)``.
    """
    n = frames.shape[1]
    if n < 2:
        raise ValueError(f"cannot carve a validation split out of {n} training trajectory; "
                         "add a `val` split to the data block (trajectories … val)")
    k = min(n - 1, max(1, round(fraction * n)))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx = perm[:k].sort().values
    train_idx = perm[k:].sort().values
    return frames[:, train_idx], frames[:, val_idx], val_idx.tolist()
