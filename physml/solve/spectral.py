"""Pseudo-spectral Crank–Nicolson for periodic grids (the FNO Navier–Stokes data).

Li et al. (2021), *Fourier Neural Operator for Parametric PDEs*: the diffusion term is
implicit, the rest explicit and 2/3-dealiased.
"""
from __future__ import annotations

import math

import torch

from .batched import Outcome, Progress, _Guard


def split_diffusion(system) -> tuple[dict, object]:
    """Split each ``d(u)/dt = c·lap(u) + R`` into the constant diffusivity ``c`` (a SymPy
    expression in the parameters) and the rest, a system with ``R`` as its equations."""
    from dataclasses import replace

    import sympy

    from ..symbolic.functions import lap

    fields = set(system.fields)
    lets = {sympy.Symbol(l.name): l.expr for l in system.lets}
    diff, eqs = {}, []
    for eq in system.equations:
        rhs = sympy.expand(eq.rhs)
        target = lap(sympy.Symbol(eq.var))
        c = rhs.coeff(target)
        names = {s.name for s in c.free_symbols}
        if names & (fields | set(system.domain.axes) | {"t"}) or any(
                sympy.Symbol(n) in lets for n in names):
            raise ValueError(f"spectral_cn: the diffusion coefficient of {eq.var} ({c}) must "
                             "be a constant or a parameter")
        diff[eq.var] = c
        eqs.append(replace(eq, rhs=sympy.expand(rhs - c * target)))
    return diff, replace(system, equations=tuple(eqs))


def spectral_cn(rest, diffusivity: dict[str, torch.Tensor], domain, y0: torch.Tensor,
                times: torch.Tensor, step: float, bound: float | None = None,
                progress: Progress | None = None, out_dtype: torch.dtype | None = None
                ) -> Outcome:
    """``û ← ((1 + h/2·c·Λ) û + h·D(R̂(u))) / (1 − h/2·c·Λ)``, Λ = −|k|² (Li et al. 2021).

    An implicit–explicit step: Crank–Nicolson (trapezoidal rule, 2nd order and A-stable)
    for the diffusion, forward Euler for the rest (Ascher, Ruuth & Wetton, SIAM J. Numer.
    Anal. 32, 1995, the "CN/FE" scheme). It is of order 1 in time, and of order 2 when the
    explicit part vanishes (pure diffusion).

    ``rest`` computes the explicit part R(u) (advection, reaction, forcing);
    ``diffusivity[var]`` is ``c`` of shape ``(B,)``, or a scalar; D is the 2/3 dealiasing
    mask applied to the explicit part.
    """
    nd = domain.ndim
    dims = tuple(range(-nd, 0))
    device, dtype = y0.device, y0.dtype
    ks, mask = [], None
    for k, (n, length) in enumerate(zip(domain.shape, domain.lengths)):
        last = k == nd - 1
        freq = (torch.fft.rfftfreq(n, d=1.0 / n) if last else torch.fft.fftfreq(n, d=1.0 / n))
        freq = freq.to(device=device, dtype=dtype)
        shp = [1] * nd
        shp[k] = -1
        ks.append((2 * math.pi / length * freq).reshape(shp))
        keep = (freq.abs() <= (2.0 / 3.0) * (n // 2)).reshape(shp)
        mask = keep if mask is None else mask & keep
    lam = -sum(k ** 2 for k in ks)                                   # symbol of Δ
    B, nvar = y0.shape[0], y0.shape[1]
    c = torch.stack([torch.as_tensor(diffusivity[v], dtype=dtype, device=device).expand(B)
                     for v in diffusivity], dim=1)                   # (B, nvar)
    c = c.reshape(B, nvar, *([1] * nd))
    guard = _Guard(B, bound, device)
    tlist = [float(x) for x in times]
    out = torch.empty((len(tlist),) + tuple(y0.shape), dtype=out_dtype or dtype, device=device)
    out[0] = y0
    uh = torch.fft.rfftn(y0, dim=dims)
    grid = tuple(domain.shape)
    tt = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    span = tlist[-1] - tlist[0]
    steps = 0
    for j in range(1, len(tlist)):
        ta, tb = tlist[j - 1], tlist[j]
        n = max(1, math.ceil((tb - ta) / step - 1e-9))
        h = (tb - ta) / n
        lhs = 1 - 0.5 * h * c * lam
        rhs_lin = 1 + 0.5 * h * c * lam
        for m in range(n):
            u = torch.fft.irfftn(uh, s=grid, dim=dims)
            r = torch.fft.rfftn(rest(tt(ta + m * h), u), dim=dims) * mask
            uh = (rhs_lin * uh + h * r) / lhs
            steps += 1
            if progress is not None and n >= 100 and m % (n // 50) == 0:
                progress((ta + (m + 1) * h - tlist[0]) / span)
        y = torch.fft.irfftn(uh, s=grid, dim=dims)
        dead = guard.bad(y)
        if bool(dead.any()):
            guard.kill(dead, tb)
            y = guard.scrub(y)
            uh = torch.fft.rfftn(y, dim=dims)
        out[j] = y
        if progress is not None:
            progress((tb - tlist[0]) / span if span else 1.0)
    return Outcome(guard.mark_outputs(out, times), guard.dead_time, steps, steps)
