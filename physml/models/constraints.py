"""Soft constraints on forecasts: ``constraint LHS = RHS where CONDITION weight W``.

Thesis §2.7.3: in a scar the transmembrane potential is zero at all times (eq. 2.11);
EP-Net 2.0 enforces it softly, adding ``λ_scar ∫ ‖1_scar ⊙ Ṽ_t‖² dt`` to the observation
loss (eq. 2.13, λ_scar = 0.1). physml's form is general: the residual ``LHS − RHS`` of the
forecast states (hidden variables included) is squared where ``CONDITION`` holds on the
*data* (the scar is measured, not forecast) and averaged over trajectories, frames and
points, so that with the trajectory MSE a weight of 0.1 means what the thesis's does.
"""
from __future__ import annotations

from typing import Sequence

import sympy
import torch
from torch import nn

from ..symbolic.compiler import compile_terms
from ..symbolic.spec import Constraint, System


class Constraints(nn.Module):
    """``forward(pred, data, mask)`` → ``Σ_c W_c · mean(1_{cond_c(data)} · r_c(pred)²)``.

    ``pred`` ``(B, T, *state)``: forecast states; ``data`` the same shape, what the
    condition is read from (the observed frames; hidden channels are never read, the
    language refuses conditions on them); ``mask`` (broadcastable to ``data``, optional):
    1 where a value was measured. A constraint counts at a point where every variable
    its condition reads was measured there: a gap in those channels (whose data are
    zero-filled) leaves it out, while gaps elsewhere — hidden channels, never measured,
    above all — do not.
    """

    def __init__(self, system: System, constraints: Sequence[Constraint]):
        super().__init__()
        if not constraints:
            raise ValueError("no constraints")
        self.residuals = compile_terms(system, [c.residual for c in constraints])
        self.conditions = compile_terms(system, [sympy.Piecewise((1, c.condition), (0, True))
                                                 for c in constraints])
        self.register_buffer("weights", torch.tensor([c.weight for c in constraints]),
                             persistent=False)
        #: per constraint, the state channels its condition reads (through `let`s)
        self.reads = []
        for c in constraints:
            names = system.through_lets(sym.name for sym in c.condition.free_symbols)
            self.reads.append([i for i, v in enumerate(system.variables) if v in names])

    def forward(self, pred: torch.Tensor, data: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        t0 = torch.zeros((), dtype=pred.dtype, device=pred.device)
        residual = self.residuals(t0, pred.flatten(0, 1))            # (B·T, n, *grid)
        with torch.no_grad():
            where = self.conditions(t0, data.flatten(0, 1).to(pred.dtype))
            if mask is not None:  # where the condition's own inputs were measured
                measured = mask.expand_as(data).bool().flatten(0, 1)   # (B·T, C, *grid)
                # all() over no channel (a condition on coordinates only) is True
                where = where * torch.stack([measured[:, c].all(dim=1) for c in self.reads],
                                            dim=1).to(where)
        per = (where * residual.pow(2)).transpose(0, 1).flatten(1).mean(dim=1)   # (n,)
        return (self.weights.to(per) * per).sum()



class HardConstraints(nn.Module):
    """``constraint X = VALUE where CONDITION hard`` (thesis eq. 2.11 held exactly rather
    than penalised as in eq. 2.13): wherever the condition holds on the state, ``X`` is
    ``VALUE``. :meth:`project` sets it so in a state (the initial one, a restart's);
    :meth:`hold` zeroes ``dX/dt`` there, so an explicit solver keeps it so at every stage
    and step. Exact when the region does not move along a forecast (a scar, a condition
    on coordinates or on static fields); where it moves, ``X`` stays at the value it had
    when the point entered the region. The language guarantees that ``VALUE`` reads no
    state variable and the condition does not read ``X``.

    A ``... weight W hard`` line (``penalised``) is held in eval mode only (forecasts:
    validation, test, ``predict``) and penalised in training by :class:`Constraints`.
    The values are the spec's, so nothing here goes into a checkpoint: a model trained
    with the penalty alone loads under a spec that adds the hold.
    """

    def __init__(self, system: System, constraints: Sequence[Constraint]):
        super().__init__()
        if not constraints or not all(c.hard for c in constraints):
            raise ValueError("HardConstraints takes `constraint ... hard` lines only")
        self.channels = [system.variables.index(c.variable) for c in constraints]
        self.in_training = [not c.penalised for c in constraints]
        self.values = compile_terms(system, [c.value for c in constraints])
        self.conditions = compile_terms(system, [sympy.Piecewise((1, c.condition), (0, True))
                                                 for c in constraints])
        self.values.fixed_from_spec()
        self.conditions.fixed_from_spec()

    def active(self) -> list[tuple[int, int]]:
        """``(k, channel)`` of the constraints held now (all in eval mode; in training,
        those without a penalty)."""
        return [(k, c) for k, c in enumerate(self.channels)
                if not self.training or self.in_training[k]]

    def fill(self, x: torch.Tensor, y: torch.Tensor, values: bool) -> torch.Tensor:
        """``y`` ``(B, C, *grid)`` with each held channel replaced, where its condition
        holds on the state ``x``, by its value (``values``) or by 0 (out of place; the
        gradient there is cut)."""
        active = self.active()
        if not active:
            return y
        t0 = torch.zeros((), dtype=x.dtype, device=x.device)
        where = self.conditions(t0, x.detach()) > 0.5
        fill = self.values(t0, x).expand(-1, len(self.channels), *x.shape[2:]) if values \
            else torch.zeros_like(where, dtype=y.dtype)
        out = list(y.unbind(1))
        for k, c in active:
            out[c] = torch.where(where[:, k], fill[:, k], out[c])
        return torch.stack(out, dim=1)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The state ``x`` with each held channel at its value where its condition holds."""
        return self.fill(x, x, values=True)

    def hold(self, x: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
        """``rate`` (``dx/dt`` at ``x``) with each held channel's rate zero where its
        condition holds on ``x``."""
        return self.fill(x, rate, values=False)


class HeldField(nn.Module):
    """The vector field a solver integrates under hard constraints: ``field``'s rate with
    :meth:`HardConstraints.hold` applied (the same parameters, no new ones). ``map``
    (``solver direct``: the output is the next state, not a rate): the held channels of
    the output are set to their values instead."""

    def __init__(self, field: nn.Module, hard: HardConstraints, map: bool = False):
        super().__init__()
        self.field = field
        self.hard = hard
        self.map = map

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.hard.fill(x, self.field(t, x), values=self.map)
