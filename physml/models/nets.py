"""Neural networks for augmentation terms ``F_a`` and fully neural models.

Each network maps a batch of states to a batch of time derivatives of the same shape:
``(B, n)`` for ODEs, ``(B, C, *grid)`` for grid PDEs. Built from a spec's
``augment NAME(options)`` line through :data:`NETWORKS`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..symbolic.spec import Call, Domain

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "swish": nn.SiLU, "silu": nn.SiLU, "gelu": nn.GELU,
    "softplus": nn.Softplus, "elu": nn.ELU,
    # slope 0.1 as the thesis's U-Net encoder (FlowNetS variant, §2.5.2)
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
}


def _activation(name: str) -> Callable[[], nn.Module]:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choices: {', '.join(ACTIVATIONS)}") \
            from None


def init_linear(lin: nn.Linear, init: str, gain: float) -> None:
    """``init="orthogonal"``: an orthogonal weight with that gain (Saxe et al. 2014);
    ``"normal"``: weights N(0, gain²), as the LEADS code's ``init_weights(net, 'normal',
    gain)``. Biases zero."""
    if init == "normal":
        nn.init.normal_(lin.weight, 0.0, gain)
    elif init == "orthogonal":
        nn.init.orthogonal_(lin.weight, gain=gain)
    else:
        raise ValueError(f"init must be 'orthogonal' or 'normal', not {init!r}")
    nn.init.zeros_(lin.bias)


class MLP(nn.Module):
    """``n → hidden → … → n`` with ``layers`` linear layers (thesis Table 3.4 pendulum:
    2→200→200→2, ReLU, orthogonal initialisation with gain 0.2)."""

    def __init__(self, n: int, hidden: int = 200, layers: int = 3, activation: str = "relu",
                 gain: float = 0.2, n_out: int | None = None, init: str = "orthogonal",
                 scale: bool = True, zero_last: bool = True):
        super().__init__()
        if layers < 1:
            raise ValueError("an MLP needs at least one layer")
        # scale=false: the wrapper (Scaled, StackedNetworks) keeps unit input and output
        # scales instead of fitting them to the data (the authors' LEADS networks).
        self.fit_scales_to_data = _flag("scale", scale)
        # zero_last=false: the wrapper keeps the last layer as `init` drew it (see
        # zero_last_layer below).
        self.zero_last_layer = _flag("zero_last", zero_last)
        act = _activation(activation)
        sizes = [n] + [hidden] * (layers - 1) + [n_out if n_out is not None else n]
        mods: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            lin = nn.Linear(a, b)
            init_linear(lin, init, gain)
            mods.append(lin)
            if i < len(sizes) - 2:
                mods.append(act())
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling():
            return self.net(x)
        # Under torch.compile a layer with a handful of inputs or outputs (the 2→200 and
        # 200→2 of the pendulum) is written as broadcasts and row sums, which TorchInductor
        # fuses with the activations and the solver's stage arithmetic. As matrix products
        # they are calls into BLAS that each cost microseconds of overhead for a few
        # thousand flops: six per evaluation, 960 per Adam step on the pendulum.
        for m in self.net:
            x = thin_linear(x, m) if isinstance(m, nn.Linear) and \
                min(m.in_features, m.out_features) <= THIN else m(x)
        return x


#: Layers with at most this many inputs or outputs are written without a matrix product
#: under ``torch.compile`` (:func:`thin_linear`).
THIN = 4


def thin_linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """``layer(x)`` as a sum of ``in_features`` broadcast products (few inputs) or a stack
    of ``out_features`` row sums (few outputs): the same affine map with no matrix product,
    for a compiler to fuse with its neighbours."""
    w, b = layer.weight, layer.bias
    if w.shape[1] <= w.shape[0]:
        out = x[..., :1] * w[:, 0]
        for i in range(1, w.shape[1]):
            out = out + x[..., i:i + 1] * w[:, i]
    else:
        out = torch.stack([(x * w[j]).sum(dim=-1) for j in range(w.shape[0])], dim=-1)
    return out if b is None else out + b


def orthogonal_init(module: nn.Module, gain: float = 1.0) -> None:
    """Orthogonal weights and zero biases for every linear, convolutional and recurrent
    layer (thesis §2.5.2: "initialized using an orthogonal initialization"; Saxe et al.
    2014)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.orthogonal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.GRU):
            for name, p in m.named_parameters():
                if name.startswith("weight"):
                    nn.init.orthogonal_(p, gain=gain)
                else:
                    nn.init.zeros_(p)


def _padding_mode(domain: Domain | None) -> str:
    if domain is not None and domain.periodic:
        return "circular"
    return "replicate"


#: ``convnet(norm=...)``: how hidden channels are normalised. Only ``batch`` makes one
#: state's ``F_a`` depend on the other states it is evaluated with.
NORMS = ("none", "batch", "instance")


class ConvNet(nn.Module):
    """Thesis Table 3.2: ``layers`` convolutions (``kernel``×``kernel``) with ``channels``
    hidden channels and ReLU; padding follows the boundary condition.

    ``norm`` after each hidden convolution:

    - ``none`` (default): ``F_a(x)`` is a function of the state ``x`` alone — a vector
      field, as Eq. (3.5) assumes — so a forecast does not depend on which other
      trajectories share its batch, and a ``kernel=1`` network stays pointwise;
    - ``batch``: the research code's BatchNorm without running statistics (Table 3.2),
      normalising with the statistics of whatever batch it is given, in training *and* at
      evaluation: a forecast then depends on its batch. For reproductions only;
    - ``instance``: per-state, per-channel statistics over the grid (batch-independent,
      but ``F_a`` at a point then depends on the whole field).
    """

    def __init__(self, n_fields: int, ndim: int, channels: int = 16, layers: int = 3,
                 kernel: int = 3, activation: str = "relu", norm: str = "none",
                 domain: Domain | None = None, n_in: int | None = None):
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"convnet(kernel={kernel}): the kernel is an odd size (1, 3, 5, "
                             "…), so the grid keeps its shape")
        if layers < 1 or (layers > 1 and channels < 1):
            raise ValueError(f"convnet(layers={layers}, channels={channels}): at least one "
                             "layer, and at least one channel between layers")
        if norm not in NORMS:
            raise ValueError(f"convnet(norm={norm!r}): choices are {', '.join(NORMS)} "
                             "(`batch` is the thesis's BatchNorm with batch statistics)")
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[ndim - 1]
        batch = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[ndim - 1]
        instance = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)[ndim - 1]
        act = _activation(activation)
        pad = _padding_mode(domain)
        # n_in > n_fields: extra input channels (coordinates, time: `augment ... with`)
        sizes = [n_in or n_fields] + [channels] * (layers - 1) + [n_fields]
        mods: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            mods.append(conv(a, b, kernel, padding=kernel // 2, padding_mode=pad))
            if i < len(sizes) - 2:
                if norm == "batch":
                    mods.append(batch(b, track_running_stats=False))
                elif norm == "instance":
                    mods.append(instance(b, affine=True))
                mods.append(act())
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _ResBlock(nn.Module):
    """``act(x + body(x))``; without ``skip``, ``act(body(x))`` (the thesis's "ResNet no
    skip" ablation, Table 2.3: the same layers, a plain CNN)."""

    def __init__(self, conv, channels, kernel, pad, act, skip: bool = True):
        super().__init__()
        self.body = nn.Sequential(
            conv(channels, channels, kernel, padding=kernel // 2, padding_mode=pad), act(),
            conv(channels, channels, kernel, padding=kernel // 2, padding_mode=pad))
        self.act = act()
        self.skip = skip

    def forward(self, x):
        return self.act(x + self.body(x) if self.skip else self.body(x))


class ResNet(nn.Module):
    """A residual ConvNet: lift to ``channels``, ``blocks`` residual blocks, project back.

    ``down``: that many stride-2 convolutions after the lift (the blocks then work on a
    grid ``2^down`` times coarser) and as many bilinear up-samplings, each followed by a
    convolution, before the projection — the thesis's F_θ of §2.5.2 ("2 downsampling
    layers, 6 residual blocks, and bilinear up-convolutions instead of transposed
    convolutions") is ``resnet(down=2, blocks=6)``. ``skip=false`` drops the blocks'
    identity connections (Table 2.3's "ResNet no skip")."""

    def __init__(self, n_fields: int, ndim: int, channels: int = 32, blocks: int = 2,
                 kernel: int = 3, activation: str = "relu", domain: Domain | None = None,
                 n_in: int | None = None, down: int = 0, skip: bool = True):
        super().__init__()
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[ndim - 1]
        pad = _padding_mode(domain)
        act = _activation(activation)
        if down < 0:
            raise ValueError(f"resnet(down={down}): the number of halvings is >= 0")
        if domain is not None and down:
            for n in domain.shape:
                if n % (1 << down):
                    raise ValueError(f"resnet(down={down}) halves the grid {down} times; the "
                                     f"grid size {n} is not divisible by {1 << down}")
        self.lift = conv(n_in or n_fields, channels, kernel, padding=kernel // 2, padding_mode=pad)
        self.down = nn.Sequential(*[m for _ in range(down) for m in (
            conv(channels, channels, kernel, stride=2, padding=kernel // 2, padding_mode=pad),
            act())])
        self.blocks = nn.Sequential(*[_ResBlock(conv, channels, kernel, pad, act, skip)
                                      for _ in range(blocks)])
        self.up = nn.ModuleList([conv(channels, channels, kernel, padding=kernel // 2,
                                      padding_mode=pad) for _ in range(down)])
        self.up_act = act()
        self.mode = ("linear", "bilinear", "trilinear")[ndim - 1]
        self.project = conv(channels, n_fields, kernel, padding=kernel // 2, padding_mode=pad)

    def forward(self, x):
        h = self.blocks(self.down(self.lift(x)))
        for layer in self.up:
            h = nn.functional.interpolate(h, scale_factor=2, mode=self.mode, align_corners=False)
            h = self.up_act(layer(h))
        return self.project(h)


class ResMLP(nn.Module):
    """ResNet for ODE states: an MLP with residual hidden blocks."""

    def __init__(self, n: int, channels: int = 64, blocks: int = 2, activation: str = "relu",
                 n_in: int | None = None, **_):
        super().__init__()
        act = _activation(activation)
        self.lift = nn.Linear(n_in or n, channels)
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(channels, channels), act(),
                                                   nn.Linear(channels, channels))
                                     for _ in range(blocks)])
        self.act = act()
        self.project = nn.Linear(channels, n)

    def forward(self, x):
        h = self.act(self.lift(x))
        for b in self.blocks:
            h = self.act(h + b(h))
        return self.project(h)


class SpectralConv2d(nn.Module):
    """``v ↦ F⁻¹(R · F v)`` keeping the ``modes`` lowest frequencies in each direction
    (Li et al. 2021, "Fourier Neural Operator for Parametric PDEs", Eq. 4): the kept
    wavenumbers are ``k_x ∈ [0, m) ∪ [−m, 0)`` (the rfft2 rows) and ``k_y ∈ [0, m)`` (the
    half spectrum's columns), one complex ``in × out`` matrix per kept mode, the rest zero.

    The complex weights are stored as real tensors ``(2 blocks, re/im, in, out, m, m)`` and
    the output spectrum is assembled out of place (concatenation and padding, no indexed
    write into a zero tensor), so that the layer runs under ``torch.func.vmap`` with
    stacked per-environment weights (:class:`~physml.models.environments.StackedNetworks`)
    and Adam, checkpoints and gradcheck see ordinary real parameters. On a grid with fewer
    than ``2·modes`` rows (or ``modes`` half-spectrum columns) the highest kept modes are
    dropped, so one set of weights runs at any resolution.
    """

    def __init__(self, channels_in: int, channels_out: int, modes: int):
        super().__init__()
        if modes < 1:
            raise ValueError("fno: modes must be ≥ 1")
        self.modes = int(modes)
        scale = 1.0 / (channels_in * channels_out)  # Li et al.'s initialisation
        self.weight = nn.Parameter(scale * torch.rand(2, 2, channels_in, channels_out,
                                                      self.modes, self.modes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2], x.shape[-1]
        m1, m2 = min(self.modes, H // 2), min(self.modes, W // 2 + 1)
        xf = torch.fft.rfft2(x, norm="ortho")
        w = self.weight[..., :m1, :m2]

        def mul(block: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
            re, im = block.real, block.imag
            wr, wi = w[k, 0], w[k, 1]
            return (torch.einsum("bixy,ioxy->boxy", re, wr)
                    - torch.einsum("bixy,ioxy->boxy", im, wi),
                    torch.einsum("bixy,ioxy->boxy", re, wi)
                    + torch.einsum("bixy,ioxy->boxy", im, wr))

        low = mul(xf[..., :m1, :m2], 0)
        high = mul(xf[..., H - m1:, :m2], 1)
        parts = []
        for lo, hi in zip(low, high):
            mid = lo.new_zeros(lo.shape[:-2] + (H - 2 * m1, m2))
            full = torch.cat([lo, mid, hi], dim=-2)
            parts.append(nn.functional.pad(full, (0, W // 2 + 1 - m2)))
        return torch.fft.irfft2(torch.complex(*parts), s=(H, W), norm="ortho")


class FNO2d(nn.Module):
    """Fourier Neural Operator on a 2-D periodic grid (Li et al. 2021, their ``FNO2d``):
    lift the fields (and, with ``grid``, the coordinates in [0, 1)) to ``width`` channels
    by a 1×1 convolution, ``layers`` Fourier layers ``v ← σ(K v + W v)`` (spectral
    convolution plus 1×1 convolution; no activation after the last), then project back
    through ``hidden`` channels. GELU by default, as theirs.

    The coordinates matter for LEADS on Navier–Stokes: the environments differ by a
    forcing ξ(x, y) fixed in space, which a translation-equivariant network cannot
    represent. They are computed from the input's size, so the same weights run at any
    resolution.
    """

    def __init__(self, n_fields: int, modes: int = 12, width: int = 32, layers: int = 4,
                 hidden: int = 128, activation: str = "gelu", grid: bool = True,
                 n_in: int | None = None):
        super().__init__()
        if layers < 1 or width < 1 or hidden < 1:
            raise ValueError("fno: layers, width and hidden must be ≥ 1")
        self.grid = bool(grid)
        self.lift = nn.Conv2d((n_in or n_fields) + (2 if self.grid else 0), width, 1)
        self.spectral = nn.ModuleList(SpectralConv2d(width, width, modes)
                                      for _ in range(layers))
        self.pointwise = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in range(layers))
        self.act = _activation(activation)()
        self.project = nn.Conv2d(width, hidden, 1)
        self.out = nn.Conv2d(hidden, n_fields, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grid:
            H, W = x.shape[-2], x.shape[-1]
            gx = torch.arange(H, dtype=x.dtype, device=x.device) / H
            gy = torch.arange(W, dtype=x.dtype, device=x.device) / W
            mesh = torch.stack(torch.meshgrid(gx, gy, indexing="ij"))
            x = torch.cat([x, mesh.expand(x.shape[0], 2, H, W)], dim=1)
        h = self.lift(x)
        last = len(self.spectral) - 1
        for i, (k, w) in enumerate(zip(self.spectral, self.pointwise)):
            h = k(h) + w(h)
            if i < last:
                h = self.act(h)
        return self.out(self.act(self.project(h)))


@dataclass(frozen=True)
class NetworkKind:
    """A network a spec can name (``augment NAME(options)``): its keyword options and how
    to build it for a state shape and a domain (None for ODEs)."""

    name: str
    options: tuple[str, ...]
    build: Callable[..., nn.Module]
    doc: str = ""


def _mlp(shape, domain, extra=0, **opts):
    if domain is not None:
        raise ValueError("mlp() works on ODE states; use convnet() or resnet() on a grid")
    if extra:
        return MLP(shape[0] + extra, n_out=shape[0], **opts)
    return MLP(shape[0], **opts)


def _orthogonal(net: nn.Module, gain: float | None) -> nn.Module:
    """``gain=G``: orthogonal initialisation with that gain (the thesis's "reweighted
    orthogonal initialisation", ch. 2); without it, PyTorch's default."""
    if gain is not None:
        orthogonal_init(net, float(gain))
    return net


def _convnet(shape, domain, extra=0, gain=None, zero_last=True, **opts):
    if domain is None:
        raise ValueError("convnet() needs a grid system; use mlp() for ODEs")
    if extra:
        opts["n_in"] = shape[0] + extra
    net = _orthogonal(ConvNet(shape[0], domain.ndim, domain=domain, **opts), gain)
    net.zero_last_layer = _flag("zero_last", zero_last)  # as MLP's
    return net


def _flag(name: str, value) -> bool:
    """A true/false network option as written in a spec (``skip=false``, ``skip=0``)."""
    if value in (True, 1, "true", "yes", "on"):
        return True
    if value in (False, 0, "false", "no", "off"):
        return False
    raise ValueError(f"{name}={value!r}: write true or false")


def _resnet(shape, domain, extra=0, gain=None, **opts):
    if extra:
        opts["n_in"] = shape[0] + extra
    if "skip" in opts:
        opts["skip"] = _flag("skip", opts["skip"])
    if domain is None:
        if opts.pop("down", 0) or not opts.pop("skip", True):
            raise ValueError("resnet(down=..., skip=...) are options of the grid ResNet; "
                             "on ODE states resnet() is a residual MLP")
        return _orthogonal(ResMLP(shape[0], **opts), gain)
    return _orthogonal(ResNet(shape[0], domain.ndim, domain=domain, **opts), gain)


class UNetField(nn.Module):
    """The encoders' U-Net (:class:`physml.models.encoders.UNet`) as a vector field on the
    state: one frame in, the state's channels out (thesis Table 2.3's "UNET" ablation)."""

    def __init__(self, n_fields: int, domain: Domain, n_in: int | None = None, **opts):
        super().__init__()
        from .encoders import UNet

        self.net = UNet(n_in or n_fields, n_fields, 1, domain, **opts)

    def forward(self, x):
        return self.net(x.unsqueeze(1))


def _unet(shape, domain, extra=0, gain=None, **opts):
    if domain is None:
        raise ValueError("unet() works on grids; use mlp() for ODE states")
    if extra:
        opts["n_in"] = shape[0] + extra
    if gain is not None:
        opts["gain"] = float(gain)
    return UNetField(shape[0], domain, **opts)


def _fno(shape, domain, extra=0, gain=None, **opts):
    if domain is None or domain.ndim != 2:
        raise ValueError("fno() is written for 2-D grids; use mlp() for ODEs, convnet() "
                         "or resnet() in 1-D or 3-D")
    if not domain.periodic:
        raise ValueError("fno() assumes a periodic domain (its Fourier layers do); use "
                         "convnet() or resnet() with other boundary conditions")
    if extra:
        opts["n_in"] = shape[0] + extra
    return _orthogonal(FNO2d(shape[0], **opts), gain)


#: ``augment NAME(...)``: the networks physml implements. The language checks spec lines
#: against this table, so a name here is a name that trains.
NETWORKS: dict[str, NetworkKind] = {k.name: k for k in (
    NetworkKind("mlp", ("hidden", "layers", "activation", "gain", "init", "scale", "zero_last"),
                _mlp,
                "fully connected, ODE states (Table 3.4 pendulum)"),
    NetworkKind("convnet", ("channels", "layers", "kernel", "activation", "norm", "gain",
                            "zero_last"),
                _convnet, "convolutions on the grid (Table 3.2)"),
    NetworkKind("resnet", ("channels", "blocks", "kernel", "activation", "gain", "down",
                           "skip"), _resnet,
                "residual blocks (grid) or residual MLP (ODE); on grids ``down`` halvings "
                "with bilinear up-sampling (thesis §2.5.2), ``skip=false`` (Table 2.3)"),
    NetworkKind("unet", ("channels", "depth", "activation", "gain"), _unet,
                "a U-Net on the state, grids (thesis Table 2.3's UNET ablation)"),
    NetworkKind("fno", ("modes", "width", "layers", "hidden", "activation", "grid", "gain"),
                _fno, "Fourier Neural Operator, 2-D periodic grids (Li et al. 2021; "
                "Navier–Stokes, §3.4)"),
)}


def build_network(call: Call, state_shape: tuple[int, ...], domain: Domain | None,
                  extra: int = 0) -> nn.Module:
    """A network from a spec line such as ``augment mlp(hidden=200, layers=3)``; ``extra``
    more input channels (``augment ... with x, y, t``) than the state has."""
    kind = NETWORKS.get(call.name)
    if kind is None:
        raise ValueError(f"network {call.name!r} is not available for augmentation; "
                         f"choices: {', '.join(NETWORKS)}")
    try:
        if extra:
            return kind.build(state_shape, domain, extra=extra, **call.options())
        return kind.build(state_shape, domain, **call.options())
    except NetworkOptionError:
        raise
    except ValueError as exc:
        raise NetworkOptionError(f"{call.name}(): {exc}", call) from None


class NetworkOptionError(ValueError):
    """A network line's option the network cannot take (``mlp(zero_last=maybe)``); ``call``
    is the line's call, so that the error points at it rather than at the ``train`` line."""

    def __init__(self, message: str, call: Call):
        super().__init__(message)
        self.call = call


def _rms(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The root mean square of each channel (dim 2) of ``(N, T, C, …)`` over its finite
    values, in float64, and whether the channel has any."""
    dims = [i for i in range(values.dim()) if i != 2]
    v = values.to(torch.float64)
    finite = torch.isfinite(v)
    n = finite.sum(dim=dims)
    rms = (torch.where(finite, v, 0.0).pow(2).sum(dim=dims) / n.clamp_min(1)).sqrt()
    return rms, n > 0


def fitted_scales(frames: torch.Tensor, dt: float, rate: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Input and output scales of a network from trajectories ``(N, T, C, …)`` sampled
    every ``dt``: the RMS of each channel, and of its finite-difference time derivative
    (``rate=False``: of the next state, for a network that is the one-step map); 1 for a
    channel with no measured value or a zero one.

    NaN marks what was not measured. A channel measured at single frames only (a hidden
    variable whose initial state alone is given, thesis §2.3 Setting 2) has a state scale
    but no rate to measure: its rate scale is its state scale times the median
    rate-to-state ratio of the channels where both are measured, i.e. the system is given
    one time scale. Without it the rate scale would be 1: on Navier–Stokes with velocities
    of 0.05, the network's first steps moved the hidden velocity by half its size per
    frame."""
    d = (frames[:, 1:] - frames[:, :-1]) / dt if rate else frames[:, 1:]
    (x, x_known), (r, r_known) = _rms(frames), _rms(d)
    x_ok, r_ok = x_known & (x > 0), r_known & (r > 0)
    s_in = torch.where(x_ok, x, torch.ones_like(x))
    s_out = torch.where(r_ok, r, torch.ones_like(r))
    state_only = x_ok & ~r_known
    if not rate:  # the next state's scale is the state's
        return s_in, torch.where(state_only, s_in, s_out)
    both = x_ok & r_ok
    if bool(both.any()) and bool(state_only.any()):
        per_time = (r[both] / x[both]).median()
        s_out = torch.where(state_only, s_in * per_time, s_out)
    return s_in, s_out


def zero_last_layer(net: nn.Module) -> bool:
    """Whether a wrapper zeroes ``net``'s last layer so that its term starts at 0: yes
    unless the spec says ``zero_last=false``.

    Zero is APHYNITY's start (the prior alone, grown only where the data ask). On LEADS it
    is harmful: with every ``G_e`` (and ``F``) at 0 the first steps fit each environment's
    single orbit through the last layers alone, and the validation error turns up after
    600-2 000 steps (1.27e-3 and 1.47e-3 on LV for seeds 0 and 1); the LEADS code's
    random last layer trains on to 0.82e-3 (benchmarks/results/leads_lv_authors_nets_cpu.json).
    """
    return getattr(net, "zero_last_layer", True)


class Scaled(nn.Module):
    """``F(x) = s_out ⊙ net(x ⊘ s_in)``, with one scale per state channel (dim 1).

    The network then works on O(1) inputs and outputs whatever the units of the data: a
    damped wave whose unknown term ``−k·∂ₜw`` is in the hundreds needs no hundredfold
    growth of the last layer's weights at a learning rate of 1e-4. The scales are buffers
    (saved with the model), ones until :meth:`fit_scales` sets them from training data.
    """

    def __init__(self, net: nn.Module, channels: int, zero_init: bool = True,
                 outputs: list[int] | None = None, inputs: tuple[str, ...] = (),
                 domain: Domain | None = None):
        super().__init__()
        self.net = net
        # `augment NET with x, y, t`: extra inputs after the state's channels, in the order
        # coordinates (the domain's axes, as written) then time. Coordinates are the grid's
        # nodes as the compiler uses them, divided by the domain's length along the axis
        # (O(1) whatever the units); time is the time the prior sees (since the first frame
        # of a trajectory) divided by the training data's time span (`t_scale`, set by
        # fit_scales, saved with the model).
        self.inputs = tuple(inputs)
        self.coord_names = tuple(a for a in self.inputs if a != "t")
        self.takes_time = "t" in self.inputs
        if self.coord_names:
            if domain is None:
                raise ValueError("coordinates as network inputs need a grid system")
            mesh = dict(zip(domain.axes, domain.mesh()))
            lengths = dict(zip(domain.axes, domain.lengths))
            coords = torch.stack([torch.as_tensor(mesh[a] / lengths[a]) for a in self.coord_names])
            self.register_buffer("coords", coords.to(torch.get_default_dtype()),
                                 persistent=False)  # from the spec
        if self.takes_time:
            self.register_buffer("t_scale", torch.ones(()))
        # `augment NET on u`: the other channels' outputs are held at zero by a zero output
        # scale (the mask is folded in, so a forward pass costs nothing more).
        mask = torch.ones(channels)
        if outputs is not None:
            mask.zero_()
            mask[list(outputs)] = 1.0
        self.register_buffer("out_mask", mask, persistent=False)  # from the spec
        self.register_buffer("in_scale", torch.ones(channels))
        self.register_buffer("out_scale", mask.clone())
        if zero_init and zero_last_layer(net):
            # The augmentation starts at F_a = 0 (the model is the prior alone) and grows
            # only where the data ask for it, as APHYNITY wants; a random last layer times
            # the output scale would start it far from minimal.
            last = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d,
                                                               nn.Conv3d))]
            if last:
                nn.init.zeros_(last[-1].weight)
                if last[-1].bias is not None:
                    nn.init.zeros_(last[-1].bias)

    def _shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return (1, -1) + (1,) * (x.dim() - 2)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float | None = None) -> torch.Tensor:
        """``x`` ``(B, *state)``; ``t`` (used with ``with t`` only): a scalar, or one time
        per state ``(B,)``; None is t = 0."""
        shape = self._shape(x)
        if not self.inputs:
            return self.net(x / self.in_scale.view(shape)) * self.out_scale.view(shape)
        return self.net(self._with_inputs(x / self.in_scale.view(shape), t)) \
            * self.out_scale.view(shape)

    def _with_inputs(self, x: torch.Tensor, t) -> torch.Tensor:
        parts = [x]
        if self.coord_names:
            parts.append(self.coords.to(x.dtype).unsqueeze(0).expand(
                x.shape[0], *self.coords.shape))
        if self.takes_time:
            tt = torch.zeros((), dtype=x.dtype, device=x.device) if t is None else \
                torch.as_tensor(t, dtype=x.dtype, device=x.device)
            tt = (tt / self.t_scale.to(x.dtype)).reshape(-1, *(1,) * (x.dim() - 1))
            parts.append(tt.expand(x.shape[0], 1, *x.shape[2:]))
        return torch.cat(parts, dim=1)

    @torch.no_grad()
    def fit_scales(self, frames: torch.Tensor, dt: float, rate: bool = True) -> None:
        """Set the scales from trajectories ``(N, T, C, …)`` sampled every ``dt``: the
        root mean square of each channel, and of its finite-difference time derivative
        (``rate=False``: of the next state, for a network that is the one-step map)."""
        if not getattr(self.net, "fit_scales_to_data", True):
            return
        s_in, s_out = fitted_scales(frames, dt, rate)
        self.in_scale.copy_(s_in.to(self.in_scale))   # frames may be on the CPU
        self.out_scale.copy_(s_out.to(self.out_scale) * self.out_mask)
        if self.takes_time:
            span = dt * (frames.shape[1] - 1)
            self.t_scale.fill_(span if span > 0 else 1.0)
