"""Batched integrators for data generation (ground-truth simulation, no gradients).

Every integrator advances all trajectories of a split at once, ``y`` of shape
``(B, *state)``, and returns the states at the requested output times, ``(T, B, *state)``
in an :class:`Outcome`. The registry (:mod:`physml.solve.registry`) decides which one a
``solver NAME(...)`` line runs:

- :func:`adaptive_rk` (``dopri5``): Dormand–Prince 5(4) with one step size shared by the
  batch. The error of a step is the RMS over each trajectory's state of
  ``err / (atol + rtol·max(|y|, |y'|))`` and the step is accepted when the **worst**
  trajectory passes (Hairer, Nørsett & Wanner, *Solving ODEs I*, §II.4), so every
  trajectory meets the tolerance — not just their mean (as a norm over the whole batch
  would). Steps land exactly on the output times, so the saved states carry the full
  5th-order accuracy (no interpolation).
- :func:`torchdiffeq_solve` (``dopri8``): torchdiffeq's adaptive methods, landing on the
  output times.
- :func:`fixed_step` (``rk4`` / ``midpoint`` / ``euler``): fixed internal ``step`` (finer
  than the data step, as the thesis's simulators do), then subsampled to the output grid.
- ``spectral_cn`` lives in :mod:`physml.solve.spectral`.

A trajectory that becomes non-finite, or leaves ``|x| ≤ bound``, is frozen and reported
(``Outcome.dead_time``) instead of stalling the shared step size of the batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .tableau import DOPRI5, RK4, ButcherTableau, rk_step

Progress = Callable[[float], None]


class SolverFailure(RuntimeError):
    """The adaptive step size underflowed (the system is too stiff or blew up)."""


@dataclass
class Outcome:
    """States at the output times and, per trajectory, when it blew up (``inf`` if never)."""

    states: torch.Tensor          # (T, B, *state), NaN after a trajectory died
    dead_time: torch.Tensor       # (B,) float64
    steps: int = 0                # accepted steps
    evaluations: int = 0          # right-hand-side evaluations


class _Guard:
    """Tracks the trajectories that became non-finite or left ``|x| ≤ bound``."""

    def __init__(self, batch: int, bound: float | None, device):
        self.bound = bound
        self.alive = torch.ones(batch, dtype=torch.bool, device=device)
        self.dead_time = torch.full((batch,), math.inf, dtype=torch.float64)
        self.any_dead = False

    def bad(self, y: torch.Tensor) -> torch.Tensor:
        flat = y.reshape(y.shape[0], -1)
        ok = torch.isfinite(flat).all(dim=1)
        if self.bound is not None:
            ok &= flat.abs().amax(dim=1) <= self.bound
        return ~ok & self.alive

    def kill(self, mask: torch.Tensor, t: float) -> None:
        idx = mask.nonzero().flatten().cpu()
        self.dead_time[idx] = t
        self.alive &= ~mask
        self.any_dead = True

    def scrub(self, y: torch.Tensor) -> torch.Tensor:
        """Dead trajectories are frozen at zero so they cannot poison the batch."""
        if not self.any_dead:
            return y
        keep = self.alive.reshape((-1,) + (1,) * (y.dim() - 1))
        return torch.where(keep, y, torch.zeros((), dtype=y.dtype, device=y.device))

    def mark_outputs(self, out: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        if not self.any_dead:
            return out
        dt = self.dead_time.to(out.device)
        late = times.to(out.device)[:, None] >= dt[None, :]          # (T, B)
        return out.masked_fill(late.reshape(late.shape + (1,) * (out.dim() - 2)), math.nan)


# ---------------------------------------------------------------------------------------
# Adaptive Dormand–Prince 5(4)

def _initial_step(f, t0, y0, f0, order, rtol, atol, span) -> float:
    """Hairer–Wanner's starting step (Solving ODEs I, §II.4), worst trajectory first."""
    scale = atol + rtol * y0.abs()
    d0 = _rms(y0 / scale).max()
    d1 = _rms(f0 / scale).max()
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else float(0.01 * d0 / d1)
    h0 = min(h0, span)
    y1 = y0 + h0 * f0
    f1 = f(torch.tensor(t0 + h0, dtype=torch.float64), y1)
    d2 = float(_rms((f1 - f0) / scale).nan_to_num(0.0).max()) / h0
    m = max(float(d1), d2)
    h1 = max(1e-6, h0 * 1e-3) if m <= 1e-15 else (0.01 / m) ** (1.0 / (order + 1))
    return min(100 * h0, h1, span)


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).square().mean(dim=1).sqrt()


def adaptive_rk(f, y0: torch.Tensor, times: torch.Tensor, rtol: float, atol: float,
                tableau: ButcherTableau = DOPRI5, bound: float | None = None,
                progress: Progress | None = None, max_steps: int = 1_000_000,
                out_dtype: torch.dtype | None = None, autonomous: bool = False,
                max_step: float | None = None) -> Outcome:
    """Embedded Runge–Kutta with a step shared by the batch; steps land on ``times``.

    ``max_step`` caps the step size (the ``step`` option of an adaptive spec).

    Stage sums are one matrix product over the stacked stages (``K`` has shape
    ``(stages, B·n)``), which keeps the per-step overhead to a handful of torch calls.
    """
    tab = tableau
    s = len(tab.c)
    B = y0.shape[0]
    shape = y0.shape
    dtype, device = y0.dtype, y0.device
    tlist = [float(x) for x in times]
    t0, t_end = tlist[0], tlist[-1]
    A = torch.zeros(s, s, dtype=dtype, device=device)
    for i, row in enumerate(tab.a):
        if row:
            A[i, :len(row)] = torch.tensor(row, dtype=dtype)
    bvec = torch.tensor(tab.b, dtype=dtype, device=device)[None]
    evec = torch.tensor(tab.e, dtype=dtype, device=device)[None]
    K = torch.empty(s, y0.numel(), dtype=dtype, device=device)
    n_per = max(1, y0.numel() // max(1, B))
    guard = _Guard(B, bound, device)
    out = torch.empty((len(tlist),) + tuple(shape), dtype=out_dtype or dtype, device=device)
    out[0] = y0
    y = y0.clone()
    if autonomous:  # F ignores t: skip building a tensor per stage
        t_fixed = torch.tensor(t0, dtype=torch.float64)
        tt = lambda v: t_fixed  # noqa: E731
    else:
        tt = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    f0 = f(tt(t0), y)
    nfe = 1
    bad = guard.bad(f0)
    if bool(bad.any()):
        guard.kill(bad, t0)
        y, f0 = guard.scrub(y), guard.scrub(f0)
    span = t_end - t0
    h = _initial_step(f, t0, y, f0, tab.order, rtol, atol, span) if span > 0 else 0.0
    h_cap = math.inf if max_step is None else float(max_step)
    h = min(h, h_cap)
    nfe += 1
    K[0] = f0.reshape(-1)
    t = t0
    nxt = 1
    steps = 0
    expo = -1.0 / tab.order  # error of the embedded lower-order solution ~ h^order
    last_ratio = None
    while nxt < len(tlist):
        target = tlist[nxt]
        remaining = target - t
        # Stretch a step by up to 1e-6 rather than leave a sliver before an output time.
        landing = h * (1 + 1e-6) >= remaining
        h_try = remaining if landing else h
        if h_try <= 1e-10 * max(span, abs(t)) and not landing or h_try <= 1e-14 * max(
                1.0, abs(t)):
            # The step collapsed: the trajectories that dictate it are running into a
            # singularity (finite-time blow-up). At this step size the error ratio scales
            # like h⁵, so they stand out by orders of magnitude: drop them, go on.
            offenders = None
            if last_ratio is not None:
                top = float(last_ratio.max())
                offenders = guard.alive & (last_ratio >= 1e-3 * top) if top > 0 else None
            if offenders is None or not bool(offenders.any()):
                raise SolverFailure(f"step size underflow at t = {t:.6g}")
            guard.kill(offenders, t)
            keep = guard.alive.reshape(1, B, 1)
            K = torch.where(keep, K.view(s, B, -1), torch.zeros(
                (), dtype=dtype, device=device)).reshape(s, -1)
            y = guard.scrub(y)
            h = remaining
            last_ratio = None
            continue
        yflat = y.reshape(-1)
        for i in range(1, s):
            # y_i = y + h Σ_j a_ij k_j  (one fused multiply-add over the stacked stages)
            yi = torch.addmm(yflat[None], A[i:i + 1, :i], K[:i], alpha=h_try)
            K[i] = f(tt(t + tab.c[i] * h_try), yi.view(shape)).reshape(-1)
        nfe += s - 1
        y_new = (yflat[None] + h_try * (bvec @ K)).view(shape) if not tab.fsal else yi.view(shape)
        # ratio_b = RMS over trajectory b of err / (atol + rtol·max(|y|, |y'|))
        scale = torch.maximum(y.abs(), y_new.abs()).mul_(rtol).add_(atol)
        ratio = torch.linalg.vector_norm((evec @ K).view(B, -1).div_(scale.view(B, -1)),
                                         dim=1).mul_(h_try / math.sqrt(n_per))
        if guard.any_dead:
            ratio = torch.where(guard.alive, ratio, torch.zeros_like(ratio))
        worst = float(ratio.max())
        last_ratio = ratio
        # A blow-up shows as a non-finite error; the bound needs its own check.
        if not math.isfinite(worst) or bound is not None:
            dead = (~torch.isfinite(ratio) & guard.alive) | guard.bad(y_new)
            if bool(dead.any()):
                guard.kill(dead, t + h_try)
                keep = guard.alive.reshape(1, B, 1)
                K = torch.where(keep, K.view(s, B, -1), torch.zeros(
                    (), dtype=dtype, device=device)).reshape(s, -1)
                y = guard.scrub(y)
                continue  # redo the step without the dead trajectories
        factor = 10.0 if worst == 0.0 else min(10.0, max(0.2, 0.9 * worst ** expo))
        if worst <= 1.0:
            t = target if landing else t + h_try
            y = y_new
            if tab.fsal:
                K[0] = K[s - 1]
            else:
                K[0] = f(tt(t), y).reshape(-1)
                nfe += 1
            steps += 1
            if steps > max_steps:
                raise SolverFailure(f"more than {max_steps} steps before t = {target:g}")
            if landing:
                out[nxt] = y
                nxt += 1
                if progress is not None:
                    progress((t - t0) / span if span else 1.0)
                # A step cut short to land on an output time says nothing about h.
                h = min(max(h, h_try * factor), h_cap)
            else:
                h = min(h_try * factor, h_cap)
        else:
            h = h_try * factor
    return Outcome(guard.mark_outputs(out, times), guard.dead_time, steps, nfe)


# ---------------------------------------------------------------------------------------
# Fixed-step methods

def fixed_step(f, y0: torch.Tensor, times: torch.Tensor, step: float | None,
               tableau: ButcherTableau = RK4, bound: float | None = None,
               progress: Progress | None = None, out_dtype: torch.dtype | None = None
               ) -> Outcome:
    """Explicit RK with a constant internal step: each output interval is cut into
    ``ceil(Δt / step)`` equal sub-steps (so outputs lie on the internal grid)."""
    tab = tableau
    s = len(tab.c)
    tlist = [float(x) for x in times]
    guard = _Guard(y0.shape[0], bound, y0.device)
    out = torch.empty((len(tlist),) + tuple(y0.shape), dtype=out_dtype or y0.dtype,
                      device=y0.device)
    out[0] = y0
    y = y0
    tt = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    span = tlist[-1] - tlist[0]
    nfe = steps = 0
    for j in range(1, len(tlist)):
        ta, tb = tlist[j - 1], tlist[j]
        n = max(1, math.ceil((tb - ta) / step - 1e-9)) if step else 1
        h = (tb - ta) / n
        for m in range(n):
            t = ta + m * h
            y = rk_step(tab, f, tt(t), h, y)
            nfe += s
            steps += 1
            if progress is not None and n >= 100 and m % (n // 50) == 0:
                progress((t + h - tlist[0]) / span)  # long intervals (warm-up) move too
        dead = guard.bad(y)
        if bool(dead.any()):
            guard.kill(dead, tb)
            y = guard.scrub(y)
        out[j] = y
        if progress is not None:
            progress((tb - tlist[0]) / span if span else 1.0)
    return Outcome(guard.mark_outputs(out, times), guard.dead_time, steps, nfe)


# ---------------------------------------------------------------------------------------
# torchdiffeq's adaptive methods (dopri8)

def torchdiffeq_solve(f, y0, times, method: str, rtol: float, atol: float,
                      bound: float | None = None, progress: Progress | None = None,
                      out_dtype: torch.dtype | None = None, max_step: float | None = None
                      ) -> Outcome:
    """An adaptive torchdiffeq method (``method`` is torchdiffeq's name for it) on the
    whole batch; ``max_step`` caps the step size."""
    from torchdiffeq import odeint

    # step_t: land on the output times (the quartic interpolant would cost accuracy).
    options = {"step_t": times.to(y0.dtype)}
    if max_step is not None:
        options["max_step"] = float(max_step)
    try:
        y = odeint(f, y0, times.to(y0.dtype), method=method, rtol=rtol, atol=atol,
                   options=options)
    except AssertionError as exc:  # torchdiffeq's "underflow in dt"
        raise SolverFailure(str(exc)) from exc
    guard = _Guard(y0.shape[0], bound, y0.device)
    for j in range(y.shape[0]):
        dead = guard.bad(y[j])
        if bool(dead.any()):
            guard.kill(dead, float(times[j]))
    if progress is not None:
        progress(1.0)
    return Outcome(guard.mark_outputs(y.to(out_dtype or y.dtype), times), guard.dead_time)
