"""INTERIM (replaced by the solver package being merged): differentiable odeint."""
from __future__ import annotations

import math

import torch
import torch.utils.checkpoint
from torchdiffeq import odeint as _tdq_odeint, odeint_adjoint as _tdq_adjoint


def _rk4(f, t, h, y):
    k1 = f(t, y)
    k2 = f(t + h / 2, y + h / 2 * k1)
    k3 = f(t + h / 2, y + h / 2 * k2)
    k4 = f(t + h, y + h * k3)
    return y + (k1 + 2 * (k2 + k3) + k4) * (h / 6)


def _rk4_38(f, t, h, y):
    k1 = f(t, y)
    k2 = f(t + h / 3, y + h * k1 / 3)
    k3 = f(t + 2 * h / 3, y + h * (k2 - k1 / 3))
    k4 = f(t + h, y + h * (k1 - k2 + k3))
    return y + (k1 + 3 * (k2 + k3) + k4) * (h / 8)


def _midpoint(f, t, h, y):
    return y + h * f(t + h / 2, y + h / 2 * f(t, y))


def _euler(f, t, h, y):
    return y + h * f(t, y)


FIXED = {"rk4": _rk4, "rk4_38": _rk4_38, "midpoint": _midpoint, "euler": _euler}



def odeint(f, x0, t, solver="rk4", *, step=None, rtol=1e-6, atol=1e-7, adjoint=False,
           compiled=False, recompute=False):
    if solver in FIXED and not adjoint:
        stepper = FIXED[solver]
        if compiled:
            cache = f.__dict__.setdefault("_physml_compiled_steps", {})
            fn = cache.get(solver)
            if fn is None:
                torch._dynamo.config.recompile_limit = max(
                    torch._dynamo.config.recompile_limit, 64)
                fn = torch.compile(lambda tt, h, y: stepper(f, tt, h, y), dynamic=False)
                cache[solver] = fn
        else:
            fn = lambda tt, h, y: stepper(f, tt, h, y)  # noqa: E731
        ys = [x0]
        y = x0
        for i in range(t.shape[0] - 1):
            interval = t[i + 1] - t[i]
            n = max(1, math.ceil(float(interval) / step - 1e-9)) if step else 1
            h = interval / n
            for j in range(n):
                if recompute:
                    y = torch.utils.checkpoint.checkpoint(fn, t[i] + j * h, h, y,
                                                          use_reentrant=False)
                else:
                    y = fn(t[i] + j * h, h, y)
            ys.append(y)
        return torch.stack(ys, dim=1)
    kwargs = {"method": solver}
    if step:
        kwargs["options"] = {"step_size": step}
    if solver in ("dopri5", "dopri8", "bosh3", "adaptive_heun", "fehlberg2"):
        kwargs.update(rtol=rtol, atol=atol)
    if adjoint:
        kwargs["adjoint_params"] = tuple(f.parameters())
    out = (_tdq_adjoint if adjoint else _tdq_odeint)(f, x0, t, **kwargs)
    return out.movedim(0, 1)


class _Info:  # INTERIM
    def __init__(self, name, order, trainable, simulates, options):
        self.name, self.order, self.trainable, self.simulates, self.options = \
            name, order, trainable, simulates, options


SOLVERS = {n: _Info(n, o, t, s, opt) for n, o, t, s, opt in (
    ("euler", 1, True, True, ("step",)), ("midpoint", 2, True, True, ("step",)),
    ("rk4", 4, True, True, ("step",)), ("rk4_38", 4, True, False, ("step",)),
    ("dopri5", 5, True, True, ("rtol", "atol", "step")),
    ("dopri8", 8, True, True, ("rtol", "atol", "step")),
    ("spectral_cn", 2, False, True, ("step",)))}
