"""Scaling symmetries of a model with hidden variables: what partial observations cannot
determine.

When a hidden variable ``h`` is scaled, ``h → s^{a}·h``, and learned parameters with it,
``p → s^{k_p}·p``, the equations may keep their form: then every trajectory of the
observed variables is reproduced exactly by the scaled model (with scaled hidden initial
states), and no amount of data on the observed variables tells ``p`` from ``s^{k_p}·p``.
Lotka–Volterra with only the prey ``u`` observed::

    du/dt = α u − β u v,   dv/dt = δ u v − γ v
    v → s·v, β → β/s:      du/dt = α u − (β/s) u (s v),   d(s v)/dt = δ u (s v) − γ (s v)

so α, γ, δ are identifiable but β is not: only ``β·v`` is (β is, once the hidden initial
states are given rather than learned).

:func:`scaling_symmetries` finds every such one-parameter group of power scalings: each
term of each equation ``d(x)/dt = Σ terms`` must scale like ``x``, which is a linear
system in the exponents (``a`` for hidden variables, ``k`` for learned parameters); its
null space is the group. Symbols inside a nonlinear function (``sin(θ)``, ``exp(−k u)``)
cannot scale. Linear spatial operators (``lap(v)``) scale with their argument.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import sympy

from .functions import SpatialOperator


@dataclass(frozen=True)
class Symmetry:
    """``h → s^{hidden[h]}·h``, ``p → s^{params[p]}·p`` leaves the observations unchanged."""

    hidden: dict[str, sympy.Rational]
    params: dict[str, sympy.Rational]

    def invariant(self, param: str) -> sympy.Expr:
        """The combination of ``param`` with a hidden variable that the observations
        determine (``β·v`` for Lotka–Volterra's predation rate)."""
        k = self.params[param]
        name, a = next((n, a) for n, a in self.hidden.items() if a != 0)
        return sympy.Symbol(param) * sympy.Symbol(name) ** (-k / a)

    def describe(self) -> str:
        parts = [f"{n} → s·{n}" if a == 1 else f"{n} → s^{a}·{n}"
                 for n, a in self.hidden.items() if a != 0]
        parts += [f"{p} → {p}·s^{k}" if k not in (1, -1) else
                  (f"{p} → s·{p}" if k == 1 else f"{p} → {p}/s")
                  for p, k in self.params.items() if k != 0]
        return ", ".join(parts)


def _exponents(term: sympy.Expr, names: set[str]) -> tuple[dict[str, sympy.Rational],
                                                             set[str]]:
    """The power of each of ``names`` in a product ``term``, and the names that appear
    where they cannot scale (inside a nonlinear function)."""
    powers: dict[str, sympy.Rational] = {}
    frozen: set[str] = set()
    for factor in sympy.Mul.make_args(term):
        if factor.is_number:
            continue
        base, exp = factor.as_base_exp()
        if isinstance(base, sympy.Symbol) and exp.is_Rational:
            if base.name in names:
                powers[base.name] = powers.get(base.name, 0) + exp
            continue
        if isinstance(base, SpatialOperator) and exp.is_Rational and len(base.args) == 1:
            inner = sympy.Add.make_args(sympy.expand(base.args[0]))
            if len(inner) == 1:  # a linear operator of one product scales with it
                p, f = _exponents(inner[0], names)
                for k, v in p.items():
                    powers[k] = powers.get(k, 0) + v * exp
                frozen |= f
                continue
        frozen |= {s.name for s in factor.free_symbols if s.name in names}
    return powers, frozen


def scaling_symmetries(equations: Sequence[tuple[str, sympy.Expr]], hidden: Sequence[str],
                       learned: Sequence[str]) -> list[Symmetry]:
    """A basis of the power-scaling symmetries of ``d(var)/dt = rhs`` (``equations``) that
    act on the ``hidden`` variables and the ``learned`` parameters only (observed
    variables and fixed parameters keep their values). Empty: none."""
    hidden, learned = list(hidden), list(learned)
    unknowns = hidden + learned
    if not hidden:
        return []
    index = {n: i for i, n in enumerate(unknowns)}
    rows: list[list[sympy.Rational]] = []
    for var, rhs in equations:
        lhs = [sympy.Integer(0)] * len(unknowns)
        if var in index:
            lhs[index[var]] = sympy.Integer(1)
        for term in sympy.Add.make_args(sympy.expand(rhs)):
            if term == 0:
                continue
            powers, frozen = _exponents(term, set(unknowns))
            row = [sympy.Rational(powers.get(n, 0)) - lhs[i] for i, n in enumerate(unknowns)]
            rows.append(row)
            for name in frozen:
                fix = [sympy.Integer(0)] * len(unknowns)
                fix[index[name]] = sympy.Integer(1)
                rows.append(fix)
    if not rows:
        return []
    basis = sympy.Matrix(rows).nullspace()
    out = []
    for vec in basis:
        a = {n: sympy.nsimplify(vec[index[n]]) for n in hidden}
        if all(v == 0 for v in a.values()):
            continue  # parameters that compensate each other without a hidden variable
        lead = next(v for v in a.values() if v != 0)
        a = {n: v / lead for n, v in a.items()}
        k = {n: sympy.nsimplify(vec[index[n]]) / lead for n in learned}
        out.append(Symmetry(a, k))
    return out


def non_identifiable(symmetries: Sequence[Symmetry]) -> list[str]:
    """The learned parameters some symmetry changes."""
    names: list[str] = []
    for sym in symmetries:
        names += [p for p, k in sym.params.items() if k != 0 and p not in names]
    return names
