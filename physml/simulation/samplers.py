"""Initial-condition samplers: ``initial u, v ~ NAME(args)`` in a ``data:`` block.

One registry, :data:`SAMPLERS`, maps a name to a :class:`SamplerKind`: its parameters
(with defaults), how many variables it fills (``arity``; ``None`` draws each variable
independently) and whether it needs a grid. Each draw is made on the CPU in float64 from
a seeded :class:`torch.Generator`, so initial states do not depend on the device.

The field generators reproduce the thesis's data protocols:

=================  ==================================================================
``uniform_cells``  i.i.d. U[a, b) per cell (reaction–diffusion, §3.3)
``gaussian_bump``  exp(−|x − c|²/w), c ∈ [20, 40)², w ~ U(10, 100) (damped wave, §3.3)
``squares``        u = 1 − ε, v = ε with n random s×s squares u = 0, v = 1 (Gray–Scott, §3.4)
``grf``            Gaussian random field, spectrum (4π²|k|² + τ²)^(−α) (Li et al. 2021)
``blob_flow``      a density blob and a divergence-free random velocity (§2.5)
``stimulus``       a unit stimulus at random cells (cardiac electrophysiology, §2.7)
=================  ==================================================================
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..errors import OptionError, SpecError, suggest
from ..symbolic.spec import Call, Domain, Sampler

REQUIRED = object()


@dataclass
class Draw:
    """What a sampler needs to draw ``n`` initial states of ``k`` variables."""

    n: int
    k: int
    shape: tuple[int, ...]           # () for ODE states, the grid shape for fields
    domain: Domain | None
    generator: torch.Generator

    def rand(self, *shape) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator, dtype=torch.float64)

    def randn(self, *shape) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, dtype=torch.float64)

    def randint(self, high: int, *shape) -> torch.Tensor:
        return torch.randint(high, shape, generator=self.generator)


@dataclass(frozen=True)
class SamplerKind:
    name: str
    params: tuple[tuple[str, Any], ...]
    fn: Callable[[Draw, dict], torch.Tensor]
    arity: int | None = None          # None: any number, drawn independently
    needs_grid: bool = False
    grid_arity: Callable[[int], int] | None = None   # arity from the grid's dimension
    doc: str = ""

    def signature(self) -> str:
        items = [p if d is REQUIRED else f"{p}={d:g}" if isinstance(d, (int, float)) and
                 not isinstance(d, bool) else f"{p}={d}" for p, d in self.params]
        return f"{self.name}({', '.join(items)})"


SAMPLERS: dict[str, SamplerKind] = {}


def register_sampler(name: str, params, arity=None, needs_grid=False, grid_arity=None):
    """Decorator adding ``fn(draw, options) -> (n, k, *shape)`` to :data:`SAMPLERS`."""
    def wrap(fn):
        SAMPLERS[name] = SamplerKind(name, tuple(params), fn, arity, needs_grid, grid_arity,
                                     (fn.__doc__ or "").strip().splitlines()[0]
                                     if fn.__doc__ else "")
        return fn
    return wrap


# ---------------------------------------------------------------------------------------
# Per-variable samplers (each variable, and each cell of a field, drawn independently)

@register_sampler("uniform", [("a", 0.0), ("b", 1.0)])
def _uniform(d: Draw, o):
    """U[a, b) for each variable (and each cell of a field)."""
    if o["b"] <= o["a"]:
        raise ValueError("uniform(a, b) needs a < b")
    return o["a"] + (o["b"] - o["a"]) * d.rand(d.n, d.k, *d.shape)


@register_sampler("normal", [("m", 0.0), ("s", 1.0)])
def _normal(d: Draw, o):
    """N(m, s²) for each variable (and each cell of a field)."""
    if o["s"] < 0:
        raise ValueError("normal(m, s) needs s ≥ 0")
    return o["m"] + o["s"] * d.randn(d.n, d.k, *d.shape)


@register_sampler("constant", [("c", REQUIRED)])
def _constant(d: Draw, o):
    """The same value c everywhere."""
    return torch.full((d.n, d.k, *d.shape), float(o["c"]), dtype=torch.float64)


@register_sampler("uniform_cells", [("a", 0.0), ("b", 1.0)], needs_grid=True)
def _uniform_cells(d: Draw, o):
    """i.i.d. U[a, b) per cell (reaction–diffusion, thesis §3.3)."""
    return _uniform(d, o)


# ---------------------------------------------------------------------------------------
# Joint samplers

@register_sampler("ring", [("rmin", REQUIRED), ("rmax", REQUIRED)], arity=2)
def _ring(d: Draw, o):
    """(r cos φ, r sin φ), φ ~ U[0, 2π), r ~ U[rmin, rmax) (pendulum protocol, §3.3)."""
    if d.shape:
        raise ValueError("ring() draws a 2-variable ODE state, not fields")
    if not 0 <= o["rmin"] < o["rmax"]:
        raise ValueError("ring(rmin, rmax) needs 0 ≤ rmin < rmax")
    phi = 2 * math.pi * d.rand(d.n)
    r = o["rmin"] + (o["rmax"] - o["rmin"]) * d.rand(d.n)
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi)], dim=1)


@register_sampler("gaussian_bump", [("width_min", 10.0), ("width_max", 100.0),
                                    ("center_min", 20.0), ("center_max", 40.0),
                                    ("amplitude", 1.0)], needs_grid=True)
def _gaussian_bump(d: Draw, o):
    """A exp(−|x − c|²/w): c ~ U[center_min, center_max) per axis (coordinates),
    w ~ U(width_min, width_max) (damped wave, §3.3). The first variable gets the bump,
    the others (e.g. the velocity ∂ₜw) start at zero."""
    mesh = [torch.as_tensor(m, dtype=torch.float64) for m in d.domain.mesh()]
    nd = len(mesh)
    c = o["center_min"] + (o["center_max"] - o["center_min"]) * d.rand(d.n, nd)
    w = o["width_min"] + (o["width_max"] - o["width_min"]) * d.rand(d.n)
    expand = (slice(None),) + (None,) * nd
    r2 = sum((mesh[a][None] - c[:, a][expand]) ** 2 for a in range(nd))
    out = torch.zeros(d.n, d.k, *d.shape, dtype=torch.float64)
    out[:, 0] = o["amplitude"] * torch.exp(-r2 / w[expand])
    return out


@register_sampler("squares", [("n", 3), ("size", 3), ("eps", 0.05)], arity=2,
                  needs_grid=True)
def _squares(d: Draw, o):
    """(u, v) = (1 − ε, ε) with ``n`` random ``size``-wide squares (periodic wrap) set to
    (0, 1) — the Gray–Scott seeds of LEADS (§3.4.4)."""
    n_sq, size = int(o["n"]), int(o["size"])
    nd = len(d.shape)
    out = torch.empty(d.n, 2, *d.shape, dtype=torch.float64)
    out[:, 0] = 1 - o["eps"]
    out[:, 1] = o["eps"]
    corners = torch.stack([d.randint(s, d.n, n_sq) for s in d.shape], dim=-1)  # (n, sq, nd)
    offsets = torch.stack(torch.meshgrid(*[torch.arange(size)] * nd, indexing="ij"),
                          dim=-1).reshape(-1, nd)
    for i in range(d.n):
        cells = (corners[i][:, None, :] + offsets[None]) % torch.tensor(d.shape)
        cells = cells.reshape(-1, nd)
        idx = tuple(cells[:, a] for a in range(nd))
        out[i, 0][idx] = 0.0
        out[i, 1][idx] = 1.0
    return out


def _wavenumbers(shape, lengths=None, real_last=False):
    ks = []
    nd = len(shape)
    for a, n in enumerate(shape):
        f = torch.fft.rfftfreq(n, d=1.0 / n) if (real_last and a == nd - 1) else \
            torch.fft.fftfreq(n, d=1.0 / n)
        f = f.double()
        if lengths is not None:
            f = f * (2 * math.pi / lengths[a])
        sh = [1] * nd
        sh[a] = -1
        ks.append(f.reshape(sh))
    return ks


def gaussian_random_field(d: Draw, count: int, alpha: float, tau: float,
                          sigma: float | None = None) -> torch.Tensor:
    """Li et al.'s ``GaussianRF``: N(0, σ²(−Δ + τ²)^(−α)) on the periodic grid, with
    integer wave numbers (the box is taken as the unit box) and σ = τ^(α − d/2) by default.

    Returns ``(count, *grid)``; the mean (k = 0) mode is zero.
    """
    nd = len(d.shape)
    size = d.shape[0]
    if sigma is None:
        sigma = tau ** (0.5 * (2 * alpha - nd))
    k = _wavenumbers(d.shape)
    k2 = sum(kk ** 2 for kk in k)
    sqrt_eig = (size ** nd) * math.sqrt(2.0) * sigma * (4 * math.pi ** 2 * k2 + tau ** 2) ** (
        -alpha / 2.0)
    sqrt_eig.view(-1)[0] = 0.0
    noise = torch.complex(d.randn(count, *d.shape), d.randn(count, *d.shape))
    coeff = noise * sqrt_eig
    dims = tuple(range(1, nd + 1))
    return torch.fft.ifftn(coeff, dim=dims).real


@register_sampler("grf", [("alpha", 2.5), ("tau", 7.0), ("sigma", None)], needs_grid=True)
def _grf(d: Draw, o):
    """Gaussian random field with spectrum ∝ (4π²|k|² + τ²)^(−α) (Li et al. 2021, the
    Navier–Stokes initial vorticity of §3.4), drawn independently per variable."""
    if o["alpha"] <= len(d.shape) / 2:
        raise ValueError(f"grf needs alpha > d/2 = {len(d.shape) / 2:g} for a field with "
                         "finite variance")
    f = gaussian_random_field(d, d.n * d.k, o["alpha"], o["tau"], o["sigma"])
    return f.reshape(d.n, d.k, *d.shape)


@register_sampler("blob_flow", [("width_min", 0.05), ("width_max", 0.15), ("amplitude", 1.0),
                                ("speed", 1.0), ("alpha", 3.0), ("tau", 3.0)],
                  needs_grid=True, grid_arity=lambda nd: 1 + nd)
def _blob_flow(d: Draw, o):
    """A density blob A·exp(−|x − c|²/2σ²) at a uniform random centre (periodic distance,
    σ ~ U(width_min, width_max)·L) and a random divergence-free velocity
    v = (∂ᵧψ, −∂ₓψ) from a Gaussian random stream function ψ, scaled to RMS ``speed``
    (the transported-density data of §2.5). Variables: density, then v_x, v_y."""
    nd = len(d.shape)
    if nd != 2:
        raise ValueError("blob_flow draws 2-D flows (density, vx, vy)")
    lengths = d.domain.lengths
    mesh = [torch.as_tensor(m, dtype=torch.float64) for m in d.domain.mesh()]
    lo = [a for a, _ in d.domain.bounds]
    c = torch.stack([lo[a] + lengths[a] * d.rand(d.n) for a in range(nd)], dim=1)
    sig = (o["width_min"] + (o["width_max"] - o["width_min"]) * d.rand(d.n)) * lengths[0]
    ex = (slice(None),) + (None,) * nd
    r2 = 0.0
    for a in range(nd):
        dist = (mesh[a][None] - c[:, a][ex]).abs()
        dist = torch.minimum(dist, lengths[a] - dist)   # periodic distance
        r2 = r2 + dist ** 2
    rho = o["amplitude"] * torch.exp(-r2 / (2 * sig[ex] ** 2))
    psi = gaussian_random_field(d, d.n, o["alpha"], o["tau"])
    k = _wavenumbers(d.shape, lengths, real_last=True)
    dims = tuple(range(1, nd + 1))
    ph = torch.fft.rfftn(psi, dim=dims)
    # Spectral derivatives without the Nyquist mode keep v real and exactly divergence-free.
    kd = []
    for a, kk in enumerate(k):
        kk = kk.clone()
        n = d.shape[a]
        if n % 2 == 0:
            kk.view(-1)[n // 2 if a < nd - 1 else -1] = 0.0
        kd.append(kk)
    vx = torch.fft.irfftn(1j * kd[1] * ph, s=d.shape, dim=dims)
    vy = torch.fft.irfftn(-1j * kd[0] * ph, s=d.shape, dim=dims)
    rms = torch.sqrt((vx ** 2 + vy ** 2).mean(dim=dims)).clamp_min(1e-30)[ex]
    scale = o["speed"] / rms
    return torch.stack([rho, vx * scale, vy * scale], dim=1)


@register_sampler("stimulus", [("n", 1), ("value", 1.0), ("size", 1), ("others", 0.0)],
                  needs_grid=True)
def _stimulus(d: Draw, o):
    """The first variable is 0 except ``n`` random ``size``-wide blocks set to ``value``
    (cardiac stimulation, §2.7); the other variables are set to ``others``."""
    nd = len(d.shape)
    size, n_st = int(o["size"]), int(o["n"])
    out = torch.zeros(d.n, d.k, *d.shape, dtype=torch.float64)
    if d.k > 1:
        out[:, 1:] = float(o["others"])
    corners = torch.stack([d.randint(max(1, s - size + 1), d.n, n_st) for s in d.shape], -1)
    offsets = torch.stack(torch.meshgrid(*[torch.arange(size)] * nd, indexing="ij"),
                          dim=-1).reshape(-1, nd)
    for i in range(d.n):
        cells = (corners[i][:, None, :] + offsets[None]).reshape(-1, nd)
        out[i, 0][tuple(cells[:, a] for a in range(nd))] = float(o["value"])
    return out


def _scar_shape(d: Draw, kind: str, lo: int, hi: int, mesh) -> torch.Tensor:
    """One scar mask on a 2-D grid (float 0/1): a rectangle with random sides in
    [lo, hi] cells, a right triangle with random legs, a disc with a random diameter, or
    (``complex``) the union of a rectangle, a triangle and a disc with nearby centres —
    the scar shapes of thesis §2.7.3 (Fig. 2.13)."""
    ny, nx = d.shape
    Y, X = mesh
    size = lambda: lo + int(d.randint(hi - lo + 1, 1))  # noqa: E731

    def corner(w, h):
        return int(d.randint(max(1, ny - h + 1), 1)), int(d.randint(max(1, nx - w + 1), 1))

    if kind == "rectangle":
        w, h = size(), size()
        y0, x0 = corner(w, h)
        return ((Y >= y0) & (Y < y0 + h) & (X >= x0) & (X < x0 + w)).double()
    if kind == "triangle":
        w, h = size(), size()
        y0, x0 = corner(w, h)
        flip = bool(d.randint(2, 1))
        u, v = (X - x0) / w, (Y - y0) / h
        inside = (u >= 0) & (v >= 0) & (u + v <= 1) if not flip else \
            (u <= 1) & (v >= 0) & (u >= v) & (v <= 1)
        return inside.double()
    if kind == "circle":
        r = size() / 2
        cy = r + float(d.rand(1)) * (ny - 2 * r)
        cx = r + float(d.rand(1)) * (nx - 2 * r)
        return (((Y + 0.5 - cy) ** 2 + (X + 0.5 - cx) ** 2) <= r * r).double()
    parts = [_scar_shape(d, k, max(2, lo // 2), max(3, hi // 2 + 1), mesh)
             for k in ("rectangle", "triangle", "circle")]
    # move the pieces next to the first one, so that the union is one irregular scar
    cy, cx = [float((m * parts[0]).sum() / parts[0].sum().clamp_min(1)) for m in (Y, X)]
    out = parts[0]
    for part in parts[1:]:
        py, px = [float((m * part).sum() / part.sum().clamp_min(1)) for m in (Y, X)]
        dy, dx = int(round((cy - py) * 0.6)), int(round((cx - px) * 0.6))
        moved = torch.roll(part, shifts=(dy, dx), dims=(0, 1))
        out = torch.maximum(out, moved)
    return out


def _cardiac(kind: str):
    def fn(d: Draw, o):
        """(v, h, s): a scar ``s`` (1 inside) of the given shape, ``onsets`` blocks of
        ``onset_size`` cells depolarised (v = 1) outside it, v = 0 elsewhere, the gate
        h = 1 (recovered tissue) everywhere — the cardiac slabs of thesis §2.7.3."""
        if len(d.shape) != 2:
            raise ValueError("the cardiac samplers draw 2-D slabs")
        lo, hi = int(o["scar_min"]), int(o["scar_max"])
        if not 1 <= lo <= hi <= min(d.shape):
            raise ValueError(f"scar sizes need 1 <= scar_min <= scar_max <= {min(d.shape)}")
        mesh = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in d.shape],
                              indexing="ij")
        size, n_on = int(o["onset_size"]), int(o["onsets"])
        out = torch.zeros(d.n, 3, *d.shape, dtype=torch.float64)
        out[:, 1] = 1.0
        for i in range(d.n):
            scar = _scar_shape(d, kind, lo, hi, mesh)
            out[i, 2] = scar
            placed = 0
            for _ in range(100 * n_on):        # onsets on healthy tissue
                if placed == n_on:
                    break
                y0 = int(d.randint(d.shape[0] - size + 1, 1))
                x0 = int(d.randint(d.shape[1] - size + 1, 1))
                if scar[y0:y0 + size, x0:x0 + size].any():
                    continue
                out[i, 0, y0:y0 + size, x0:x0 + size] = 1.0
                placed += 1
        return out
    fn.__doc__ = fn.__doc__.replace("of the given shape", f"({kind})")
    return fn


for _kind in ("rectangle", "triangle", "circle", "complex"):
    register_sampler(f"cardiac_{_kind}", [("onsets", 1), ("onset_size", 3), ("scar_min", 4),
                                          ("scar_max", 10)], arity=3,
                     needs_grid=True)(_cardiac(_kind))


# ---------------------------------------------------------------------------------------

def _err(spec_text: str, call: Call, message: str, hint: str | None = None,
         cls=OptionError) -> SpecError:
    return cls(message, call.pos, spec_text, hint=hint, length=len(call.name))


def bind(call: Call, source: str = "") -> tuple[SamplerKind, dict]:
    """Resolve ``call`` against the registry: the sampler kind and its full options.
    Unknown names and options are :class:`SpecError`\\ s at the call with a hint."""
    kind = SAMPLERS.get(call.name)
    if kind is None:
        hint = suggest(call.name, SAMPLERS) or "samplers: " + ", ".join(sorted(SAMPLERS))
        raise _err(source, call, f"unknown sampler '{call.name}'", hint)
    names = [p for p, _ in kind.params]
    if len(call.args) > len(names):
        raise _err(source, call, f"{call.name}() takes at most {len(names)} positional "
                   f"arguments, got {len(call.args)}", f"usage: {kind.signature()}")
    opts = dict(zip(names, call.args))
    for key, value in call.kwargs:
        if key not in names:
            raise _err(source, call, f"{call.name}() has no option '{key}'",
                       suggest(key, names) or f"usage: {kind.signature()}")
        if key in opts:
            raise _err(source, call, f"{call.name}(): '{key}' given twice")
        opts[key] = value
    for p, default in kind.params:
        if p not in opts:
            if default is REQUIRED:
                raise _err(source, call, f"{call.name}() needs '{p}'",
                           f"usage: {kind.signature()}")
            opts[p] = default
    for p, v in opts.items():
        if v is not None and not isinstance(v, (int, float)):
            raise _err(source, call, f"{call.name}(): '{p}' must be a number, got {v!r}")
    return kind, opts


def check_sampler(sampler: Sampler, domain: Domain | None, source: str = "") -> tuple[
        SamplerKind, dict]:
    """Bind and check a sampler against the variables it fills."""
    kind, opts = bind(sampler.call, source)
    k = len(sampler.variables)
    call = sampler.call
    if kind.needs_grid and domain is None:
        raise _err(source, call, f"{call.name}() draws fields; this system has no domain",
                   "use uniform(a, b) or normal(m, s) for ODE states")
    arity = kind.grid_arity(domain.ndim) if (kind.grid_arity and domain is not None) \
        else kind.arity
    if arity is not None and k != arity:
        names = ", ".join(sampler.variables)
        raise _err(source, call, f"{call.name}() draws {arity} variables jointly, but "
                   f"`initial {names} ~ ...` names {k}",
                   f"write `initial {', '.join(f'v{i + 1}' for i in range(arity))} ~ "
                   f"{kind.signature()}`")
    return kind, opts


def draw_initial(samplers, variables: tuple[str, ...], domain: Domain | None, n: int,
                 generator: torch.Generator, source: str = "") -> torch.Tensor:
    """Initial states ``(n, n_vars, *grid)`` (ODE: ``(n, n_vars)``), float64 on the CPU."""
    shape = tuple(domain.shape) if domain is not None else ()
    out = torch.empty(n, len(variables), *shape, dtype=torch.float64)
    for s in samplers:
        kind, opts = check_sampler(s, domain, source)
        d = Draw(n, len(s.variables), shape, domain, generator)
        try:
            x = kind.fn(d, opts)
        except ValueError as exc:
            raise _err(source, s.call, f"{s.call.name}(): {exc}") from None
        for j, v in enumerate(s.variables):
            out[:, variables.index(v)] = x[:, j]
    return out
