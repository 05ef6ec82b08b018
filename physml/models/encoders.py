"""Encoders: the initial state from observed frames, ``X₀ = g_θ(Y_{−K+1..0})`` (thesis §2.4.2,
Setting 1, "jointly trained states").

An encoder sees the ``K`` observed frames up to ``t0`` (the data block's ``history K − 1``
past frames and the frame at ``t0``), observed channels only, and returns a full state.
The rollout adds the observation at ``t0`` to the observed channels of that state
(thesis eq. 2.8 with nothing else known: ``X₀ = E_θ(Y) + Hᵀ Y₀``), so the encoder learns a
correction there and the whole of the hidden channels.

Built from a spec's ``encoder NAME(options)`` line through :data:`ENCODERS`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..symbolic.spec import Call, Domain
from .nets import MLP, ConvNet, _activation, _padding_mode, orthogonal_init


class FramesMLP(nn.Module):
    """The ``K`` frames flattened, through an MLP (ODE states)."""

    def __init__(self, n_obs: int, n_state: int, frames: int, hidden: int = 64,
                 layers: int = 3, activation: str = "tanh", gain: float = 1.0):
        super().__init__()
        self.net = MLP(n_obs * frames, hidden=hidden, layers=layers, activation=activation,
                       gain=gain, n_out=n_state)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(y.flatten(1))


class FramesGRU(nn.Module):
    """A GRU over the ``K`` frames in time order; its last hidden state, through a linear
    layer, is the initial state (ODE states)."""

    def __init__(self, n_obs: int, n_state: int, frames: int, hidden: int = 64,
                 layers: int = 1, gain: float = 1.0):
        super().__init__()
        self.gru = nn.GRU(n_obs, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, n_state)
        orthogonal_init(self, gain)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(y)
        return self.out(h[-1])


class UNet(nn.Module):
    """A small U-Net (Ronneberger et al. 2015; thesis §2.6 uses one as encoder): the
    ``K`` frames stacked as channels, ``depth`` halvings of the grid with doubling
    channels, skip connections, back to the state's channels. Padding follows the
    boundary condition."""

    def __init__(self, n_obs: int, n_state: int, frames: int, domain: Domain,
                 channels: int = 16, depth: int = 2, activation: str = "relu",
                 gain: float = 1.0):
        super().__init__()
        ndim = domain.ndim
        for n in domain.shape:
            if n % (1 << depth):
                raise ValueError(f"unet(depth={depth}) halves the grid {depth} times; "
                                 f"the grid size {n} is not divisible by {1 << depth} "
                                 "(choose a smaller depth)")
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[ndim - 1]
        self.pool = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)[ndim - 1](2)
        pad = _padding_mode(domain)
        act = _activation(activation)

        def block(a, b):
            return nn.Sequential(conv(a, b, 3, padding=1, padding_mode=pad), act(),
                                 conv(b, b, 3, padding=1, padding_mode=pad), act())

        widths = [channels << i for i in range(depth + 1)]
        self.down = nn.ModuleList([block(n_obs * frames, widths[0])] +
                                  [block(widths[i - 1], widths[i]) for i in range(1, depth + 1)])
        self.up = nn.ModuleList([block(widths[i + 1] + widths[i], widths[i])
                                 for i in reversed(range(depth))])
        self.out = conv(widths[0], n_state, 1)
        orthogonal_init(self, gain)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        h = y.flatten(1, 2)                     # (B, K·C_obs, *grid)
        skips = []
        for i, blk in enumerate(self.down):
            h = blk(h if i == 0 else self.pool(h))
            skips.append(h)
        for blk, skip in zip(self.up, reversed(skips[:-1])):
            h = torch.nn.functional.interpolate(h, size=skip.shape[2:], mode="nearest")
            h = blk(torch.cat([h, skip], dim=1))
        return self.out(h)


class FramesConv(nn.Module):
    """The ``K`` frames stacked as channels through ``layers`` convolutions of
    ``kernel``×``kernel`` at the grid's resolution (grids). With ``kernel=1`` the estimate
    at a point depends on that point's K observations alone: a local encoder, which cannot
    learn anything about shapes in the field (a scar's outline), so it carries over to
    shapes that training never showed; the U-Net of ``depth=2`` reads 44×44 points around
    each one and may not."""

    def __init__(self, n_obs: int, n_state: int, frames: int, domain: Domain,
                 channels: int = 32, layers: int = 3, kernel: int = 3,
                 activation: str = "relu", gain: float = 1.0):
        super().__init__()
        self.net = ConvNet(n_state, domain.ndim, channels=channels, layers=layers,
                           kernel=kernel, activation=activation, domain=domain,
                           n_in=n_obs * frames)
        orthogonal_init(self, gain)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(y.flatten(1, 2))


@dataclass(frozen=True)
class EncoderKind:
    """An encoder a spec can name (``encoder NAME(options)``): its keyword options, the
    systems it works on, and how to build it."""

    name: str
    options: tuple[str, ...]
    build: Callable[..., nn.Module]
    grid: bool
    doc: str = ""


def _mlp(n_obs, n_state, frames, domain, **opts):
    return FramesMLP(n_obs, n_state, frames, **opts)


def _gru(n_obs, n_state, frames, domain, **opts):
    return FramesGRU(n_obs, n_state, frames, **opts)


def _unet(n_obs, n_state, frames, domain, **opts):
    return UNet(n_obs, n_state, frames, domain, **opts)


def _conv(n_obs, n_state, frames, domain, **opts):
    return FramesConv(n_obs, n_state, frames, domain, **opts)


#: ``encoder NAME(...)``: the encoders physml implements (the language checks spec lines
#: against this table).
ENCODERS: dict[str, EncoderKind] = {k.name: k for k in (
    EncoderKind("mlp", ("hidden", "layers", "activation", "gain"), _mlp, False,
                "the K frames flattened through an MLP (ODE states)"),
    EncoderKind("gru", ("hidden", "layers", "gain"), _gru, False,
                "a GRU over the K frames (ODE states)"),
    EncoderKind("unet", ("channels", "depth", "activation", "gain"), _unet, True,
                "a U-Net on the K frames stacked as channels (grids)"),
    EncoderKind("convnet", ("channels", "layers", "kernel", "activation", "gain"), _conv,
                True, "convolutions of the K frames stacked as channels at the grid's "
                "resolution; kernel=1: pointwise (grids)"),
)}


class Encoder(nn.Module):
    """``g_θ``: observed frames ``(B, K, C, *grid)`` (all channels; the hidden ones are
    dropped here) → a state ``(B, C, *grid)``.

    Inputs and outputs are scaled per channel like the augmentation networks
    (:class:`~physml.models.nets.Scaled`): ``fit_scales`` sets the input scales from the
    observed training frames; outputs are in the units of the state (hidden channels,
    whose scale the data do not show, keep 1).
    """

    def __init__(self, net: nn.Module, observed: list[int], n_state: int, frames: int,
                 measured: bool = False):
        super().__init__()
        self.net = net
        self.frames = frames
        self.measured = measured
        self.register_buffer("observed", torch.as_tensor(observed, dtype=torch.long),
                             persistent=False)
        self.register_buffer("in_scale", torch.ones(len(observed)))
        self.register_buffer("out_scale", torch.ones(n_state))
        # The estimate starts at zero (the rollout then starts from the observation, hidden
        # channels at 0): a random first estimate of a hidden variable can make the first
        # forecasts explode (Lotka–Volterra with a negative predator).
        last = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d,
                                                           nn.Conv3d))][-1]
        nn.init.zeros_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        y = frames.index_select(2, self.observed)
        shape = (1, 1, -1) + (1,) * (y.dim() - 3)
        out = self.net(y / self.in_scale.view(shape))
        return out * self.out_scale.view((1, -1) + (1,) * (out.dim() - 2))

    @torch.no_grad()
    def fit_scales(self, frames: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Scales from training frames ``(N, T, C, …)``: the root mean square of each
        observed channel (over its observed entries)."""
        dims = [i for i in range(frames.dim()) if i != 2]
        sq = frames.pow(2).to(torch.float64)
        if mask is None:
            ms = sq.mean(dim=dims)
        else:
            m = mask.to(torch.float64).expand_as(sq)
            ms = (sq * m).sum(dim=dims) / m.sum(dim=dims).clamp_min(1.0)
        rms = ms.sqrt()
        ok = torch.isfinite(rms) & (rms > 0)
        rms = torch.where(ok, rms, torch.ones_like(rms)).to(self.in_scale.dtype)
        self.in_scale.copy_(rms[self.observed])
        if self.measured:   # H·X: no state channel's scale is seen
            return
        out = torch.ones_like(rms)
        out[self.observed] = rms[self.observed]
        self.out_scale.copy_(out)


def build_encoder(call: Call, observed: list[int], n_state: int, frames: int,
                  domain: Domain | None, measured: bool = False) -> Encoder:
    """The encoder of a spec's ``encoder NAME(options)`` line, for ``frames`` observed
    frames of the channels ``observed`` of an ``n_state``-channel state (``measured``:
    the frames hold measured quantities ``H·X``, not state channels)."""
    kind = ENCODERS.get(call.name)
    if kind is None:
        raise ValueError(f"encoder {call.name!r} is not available; choices: "
                         f"{', '.join(ENCODERS)}")
    if kind.grid and domain is None:
        raise ValueError(f"encoder {call.name}() works on grids; use mlp() or gru() for ODE "
                         "states")
    if not kind.grid and domain is not None:
        raise ValueError(f"encoder {call.name}() works on ODE states; use unet() or "
                         "convnet() on a grid")
    net = kind.build(len(observed), n_state, frames, domain, **call.options())
    return Encoder(net, observed, n_state, frames, measured)
