"""Absorb discovered terms into the prior: a new experiment spec.

Each kept term ``ξ·Θ`` of equation ``d(var)/dt`` becomes ``k·Θ`` in the prior with a new
learnable parameter ``k`` declared in the prior (``param`` inside ``prior:``), started at
the discovered coefficient; the prior's own learned parameters start at the values the run
identified, moved by what F_a held of their own terms. Where the bootstrap interval of the
coefficient excludes 0 the sign is known: the term is written with that sign and ``k`` is
bounded to ``(0, inf)`` (``-k_omega_omega*omega`` with ``k_omega_omega > 0``: a friction
coefficient stays a friction coefficient while it is refitted).
"""
from __future__ import annotations

import dataclasses
import math
import re

import sympy

from ..symbolic.printer import format_expr, format_spec
from ..symbolic.functions import FUNCTIONS, RESERVED
from ..symbolic.spec import Call, Equation, Param, PriorSpec, Spec, TrainSpec
from .discovery import Discovery, Term

#: Methods a refit may use.
REFIT_METHODS = ("physics", "aphynity")


@dataclasses.dataclass
class Absorbed:
    """The new spec (its text and its parsed form) and the parameters it adds."""

    spec: Spec
    text: str
    params: list[Param]
    terms: dict[str, list[tuple[str, Term, int]]]  # var → (param name, term, sign)


def _slug(term: sympy.Expr) -> str:
    text = format_expr(term)
    text = text.replace("^", "").replace("*", "").replace("/", "_")
    text = re.sub(r"[^A-Za-z0-9_]", "", text)
    return text or "term"


def _taken(spec: Spec) -> set[str]:
    s = spec.system
    names = {*s.states, *s.fields, *(p.name for p in s.params), *(m.name for m in s.masks),
             *(let.name for let in s.lets), *FUNCTIONS, *RESERVED, "piecewise"}
    if s.domain is not None:
        names |= set(s.domain.axes)
    if spec.prior is not None:
        names |= {p.name for p in spec.prior.params} | {let.name for let in spec.prior.lets}
    return names


def _name(var: str, term: sympy.Expr, taken: set[str]) -> str:
    base = f"k_{var}_{_slug(term)}"
    name, i = base, 2
    while name in taken or not name.isidentifier():
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def chosen_terms(discovery: Discovery, min_inclusion: float = 0.5
                 ) -> dict[str, list[Term]]:
    """The kept terms of each equation (with a bootstrap: kept in at least
    ``min_inclusion`` of the refits)."""
    out = {}
    for eq in discovery.equations:
        out[eq.var] = [t for t in eq.kept
                       if t.inclusion is None or t.inclusion >= min_inclusion]
    return out


def absorb(spec: Spec, discovery: Discovery, method: str | None = None,
           min_inclusion: float = 0.5, path: str = "<string>") -> Absorbed:
    """A spec like ``spec`` whose prior also holds the discovered terms, each with a
    learnable coefficient; ``method`` (``physics`` or ``aphynity``) replaces the training
    method (None keeps it). Raises ValueError when there is nothing to absorb."""
    if spec.prior is None or spec.prior.hamiltonian is not None or not spec.prior.equations:
        raise ValueError("absorbing terms needs a prior written as equations")
    if method is not None and method not in REFIT_METHODS:
        raise ValueError(f"refit method {method!r}: choose {' or '.join(REFIT_METHODS)}")
    chosen = chosen_terms(discovery, min_inclusion)
    if not any(chosen.values()):
        raise ValueError("no discovered term to absorb (none was kept; lower --threshold or "
                         "--min-inclusion)")
    taken = _taken(spec)
    params: list[Param] = []
    placed: dict[str, list[tuple[str, Term, int]]] = {}
    equations = []
    for eq in spec.prior.equations:
        rhs = eq.rhs
        for term in chosen.get(eq.var, []):
            name = _name(eq.var, term.term, taken)
            sign = term.sign_known
            k = sympy.Symbol(name)
            value = float(f"{term.coefficient:.6g}")
            if sign:
                params.append(Param(name, abs(value), 0.0, math.inf, True, True))
                rhs = rhs + sign * k * term.term
            else:
                params.append(Param(name, value))
                rhs = rhs + k * term.term
            placed.setdefault(eq.var, []).append((name, term, sign))
        equations.append(Equation(eq.var, rhs))
    # The prior's parameters start where the run left them, moved by what F_a held of
    # their own terms (:attr:`EquationFit.shifts`, averaged over the equations).
    starts = {}
    for name, value in discovery.learned.items():
        shifts = [eq.shifts[name] for eq in discovery.equations if name in eq.shifts]
        moved = value + (sum(shifts) / len(shifts) if shifts else 0.0)
        p = next((q for q in (*spec.system.params, *spec.prior.params) if q.name == name), None)
        starts[name] = float(f"{(moved if p is None or p.contains(moved) else value):.6g}")
    learn = tuple((name, starts.get(name, start)) for name, start in spec.prior.learn) + \
        tuple((p.name, None) for p in params)
    prior = PriorSpec(tuple(equations), spec.prior.lets, spec.prior.params + tuple(params),
                      learn, None, spec.prior.stencil)
    train = spec.train
    if method is not None:
        options = train.options if train is not None else ()
        if method == "physics":
            call = Call("physics")
        elif train is not None and train.method.name == "aphynity":
            call = train.method
        else:
            call = Call("aphynity")
        train = TrainSpec(call, options)
    uses = spec.uses
    if uses is not None and not uses.isidentifier():
        uses = None  # a `use "file.phy"` is relative to the old folder: write the system out
    new = dataclasses.replace(spec, prior=prior, train=train, uses=uses, path=path, text="")
    text = format_spec(new)
    return Absorbed(new, text, params, placed)


__all__ = ["Absorbed", "absorb", "chosen_terms", "REFIT_METHODS"]
