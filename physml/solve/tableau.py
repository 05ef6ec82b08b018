"""Explicit Runge–Kutta methods as data (Butcher tableaus), and one step built from them.

A tableau holds nodes ``c``, the strictly lower-triangular matrix ``a`` (rows) and weights
``b``; embedded pairs also hold the error weights ``e = b − b̂`` (Hairer, Nørsett & Wanner,
*Solving Ordinary Differential Equations I*, 2nd ed., §II.1 and §II.4).
:func:`rk_step` takes one step of any of them and skips the zero coefficients, so classic
RK4, the 3/8 rule, the midpoint rule and Euler all come from one function.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge–Kutta method: nodes ``c``, matrix ``a`` (rows), weights ``b``,
    and for embedded pairs the error weights ``e = b - b̂``. ``fsal``: first same as last.
    ``order``: the convergence order of the solution propagated with ``b``."""

    name: str
    order: int
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    e: tuple[float, ...] | None = None
    fsal: bool = False
    #: Not a Runge–Kutta method: a step *replaces* the state by ``f(t, y)`` (``direct``).
    map: bool = False
    # The non-zero coefficients, precomputed once: ((c_i, ((j, a_ij), …)), …) and
    # ((i, b_i), …). A step then issues one fused multiply-add per non-zero coefficient.
    stages: tuple = field(init=False, repr=False, compare=False)
    weights: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        s = len(self.c)
        if len(self.a) != s or len(self.b) != s or any(len(r) != i for i, r in enumerate(self.a)):
            raise ValueError(f"tableau {self.name}: a must be strictly lower triangular with "
                             f"{s} rows, b must have {s} weights")
        stages = tuple((float(ci), tuple((j, float(x)) for j, x in enumerate(row) if x != 0.0))
                       for ci, row in zip(self.c, self.a))
        object.__setattr__(self, "stages", stages)
        object.__setattr__(self, "weights",
                           tuple((i, float(x)) for i, x in enumerate(self.b) if x != 0.0))


EULER = ButcherTableau("euler", 1, (0.0,), ((),), (1.0,))
# Runge (1895): the explicit midpoint rule (Hairer–Nørsett–Wanner, Eq. II.1.3).
MIDPOINT = ButcherTableau("midpoint", 2, (0.0, 0.5), ((), (0.5,)), (0.0, 1.0))
# Kutta (1901), "the" Runge–Kutta method (Hairer–Nørsett–Wanner, Table II.1.2, left).
RK4 = ButcherTableau("rk4", 4, (0.0, 0.5, 0.5, 1.0), ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
                     (1 / 6, 1 / 3, 1 / 3, 1 / 6))
# Kutta's 3/8 rule (Hairer–Nørsett–Wanner, Table II.1.2, right); torchdiffeq's ``rk4``.
RK4_38 = ButcherTableau("rk4_38", 4, (0.0, 1 / 3, 2 / 3, 1.0),
                        ((), (1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0)),
                        (1 / 8, 3 / 8, 3 / 8, 1 / 8))
# Dormand & Prince (1980); e = b5 - b4 (Hairer–Nørsett–Wanner, Table II.5.2).
DOPRI5 = ButcherTableau(
    "dopri5", 5,
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
    a=((),
       (1 / 5,),
       (3 / 40, 9 / 40),
       (44 / 45, -56 / 15, 32 / 9),
       (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
       (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
       (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)),
    b=(35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0),
    e=(35 / 384 - 5179 / 57600, 0.0, 500 / 1113 - 7571 / 16695, 125 / 192 - 393 / 640,
       -2187 / 6784 + 92097 / 339200, 11 / 84 - 187 / 2100, -1 / 40),
    fsal=True,
)

# No solver at all: ``y(t + h) = f(t, y)``, the network is the one-step map (thesis
# Table 2.3's "ResNet" ablation: the same network used directly, not through Euler).
DIRECT = ButcherTableau("direct", 0, (0.0,), ((),), (1.0,), map=True)

TABLEAUS = {t.name: t for t in (EULER, MIDPOINT, RK4, RK4_38, DOPRI5, DIRECT)}


def _axpy(y: torch.Tensor, k: torch.Tensor, s):
    """``y + s·k``: one fused op for a Python-number ``s`` (eager), plain arithmetic for a
    tensor ``s`` (under ``torch.compile``, where a float would be baked into the graph)."""
    if isinstance(s, torch.Tensor):
        return y + k * s
    return torch.add(y, k, alpha=s)


def rk_step(tab: ButcherTableau, f, t, h, y: torch.Tensor) -> torch.Tensor:
    """One explicit Runge–Kutta step ``y(t) → y(t + h)`` (Hairer–Nørsett–Wanner, Def. II.1.1):
    ``k_i = f(t + c_i h, y + h Σ_j a_ij k_j)``, ``y₁ = y + h Σ_i b_i k_i``.

    ``t`` is a 0-d tensor (what ``f`` receives, shifted by ``c_i·h``); ``h`` a Python float
    (eager: each non-zero coefficient is one ``torch.add(…, alpha=h·a_ij)``) or a 0-d tensor.
    """
    if tab.map:
        out = f(t, y)
        # A padded step of size 0 (compiled chunks) must leave the state unchanged.
        return torch.where(h == 0, y, out) if isinstance(h, torch.Tensor) else out
    ks: list[torch.Tensor] = []
    for ci, row in tab.stages:
        yi = y
        for j, aij in row:
            yi = _axpy(yi, ks[j], h * aij)
        ks.append(f(t if ci == 0.0 else t + ci * h, yi))
    for i, bi in tab.weights:
        y = _axpy(y, ks[i], h * bi)
    return y
