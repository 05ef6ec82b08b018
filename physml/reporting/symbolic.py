"""Printing systems and identified equations from SymPy.

Equations print in the spec's own notation, one line each, with the spec's names kept
(``d(omega)/dt = -omega0^2*sin(theta) + F_a(theta, omega)``), so that what physml prints
can be pasted back into a ``.phy`` file; LaTeX on request. Only the string printer is used
for text: SymPy's pretty printer imports ``sympy.physics.units`` (a tenth of a second) and
draws exponents on a line of their own.
"""
from __future__ import annotations

from typing import Mapping

import sympy
from sympy.printing.str import StrPrinter

from ..symbolic.spec import Equation, Let, Spec

#: The network term of an augmented equation, as printed.
AUGMENTATION = "F_a"


class SpecPrinter(StrPrinter):
    """SymPy → the physml language: ``^`` for powers, the language's function names
    (``abs``, ``min``, ``max``, ``piecewise``) and words for logic (``and``, ``or``)."""

    _default_settings = {**StrPrinter._default_settings, "full_prec": False}

    def _print_Pow(self, expr, rational=False):
        return super()._print_Pow(expr, rational).replace("**", "^")

    def _print_Abs(self, expr):
        return f"abs({self._print(expr.args[0])})"

    def _print_Min(self, expr):
        return f"min({', '.join(self._print(a) for a in expr.args)})"

    def _print_Max(self, expr):
        return f"max({', '.join(self._print(a) for a in expr.args)})"

    def _print_Piecewise(self, expr):
        parts = []
        for value, cond in expr.args:
            parts.append(self._print(value) if cond is sympy.true
                         else f"{self._print(value)}, {self._print(cond)}")
        return f"piecewise({'; '.join(parts)})"

    def _print_And(self, expr):
        return " and ".join(f"({self._print(a)})" for a in expr.args)

    def _print_Or(self, expr):
        return " or ".join(f"({self._print(a)})" for a in expr.args)

    def _print_Not(self, expr):
        return f"not ({self._print(expr.args[0])})"

    def _print_Equality(self, expr):
        return f"{self._print(expr.lhs)} == {self._print(expr.rhs)}"

    def _print_Unequality(self, expr):
        return f"{self._print(expr.lhs)} != {self._print(expr.rhs)}"

    def _print_Float(self, expr):
        return f"{float(expr):.6g}"


def render_expr(expr: sympy.Basic, latex: bool = False) -> str:
    """One expression on one line, in the spec's notation or as LaTeX."""
    if latex:
        return sympy.latex(expr)
    return SpecPrinter().doprint(expr)


def render_equation(var: str, rhs: sympy.Basic, latex: bool = False) -> str:
    """``d(var)/dt = rhs`` (or ``\\frac{d var}{dt} = …`` in LaTeX)."""
    if latex:
        return rf"\frac{{d {sympy.latex(sympy.Symbol(var))}}}{{dt}} = {sympy.latex(rhs)}"
    return f"d({var})/dt = {render_expr(rhs)}"


def render_let(let: Let, latex: bool = False) -> str:
    if latex:
        return f"{sympy.latex(sympy.Symbol(let.name))} = {sympy.latex(let.expr)}"
    return f"{let.name} = {render_expr(let.expr)}"


def render_equations(equations: tuple[Equation, ...], latex: bool = False) -> list[str]:
    return [render_equation(eq.var, eq.rhs, latex) for eq in equations]


def augmented(equations, variables, on: tuple[str, ...] | None) -> list[Equation]:
    """The equations with the network term ``F_a(variables)`` added where it acts
    (``on``: those equations' variables; None or empty: every equation)."""
    term = sympy.Function(AUGMENTATION)(*[sympy.Symbol(v) for v in variables])
    return [Equation(eq.var, eq.rhs + term) if not on or eq.var in on else eq
            for eq in equations]


def _number(x: float) -> str:
    return f"{x:.5g}"


def let_values(lets, values: Mapping[str, float]) -> dict[str, float]:
    """The value of each ``let`` (in order, each may use the earlier ones)."""
    env = {sympy.Symbol(k): v for k, v in values.items()}
    out = {}
    for let in lets:
        try:
            v = float(let.expr.xreplace(env).evalf())
        except (TypeError, ValueError):  # depends on the state or on space: no number
            continue
        out[let.name] = v
        env[sympy.Symbol(let.name)] = v
    return out


def value_lines(values: Mapping[str, float], truth: Mapping[str, float] | None = None,
                lets=(), latex: bool = False, names=None) -> list[str]:
    """``T0 = 5.976 (true 6, -0.39 %)`` for each parameter in ``names`` (default: all of
    ``values``), then ``omega0 = 2*pi/T0 = 1.0513`` for each ``let`` that depends on them.
    Without a reference value no error is given."""
    truth = truth or {}
    lines = []
    shown = list(values) if names is None else list(names)
    for name in shown:
        v = values[name]
        line = (f"{sympy.latex(sympy.Symbol(name))} = {_number(v)}" if latex
                else f"{name} = {_number(v)}")
        t = truth.get(name)
        if t is not None:
            rel = f"{(v - t) / abs(t) * 100:+.2f}".replace("-", "−") if t != 0 else ""
            if latex:
                line += rf" \quad (\text{{true }} {_number(t)}" + \
                    (rf", {rel.replace('−', '-')}\,\%)" if rel else ")")
            else:
                line += f" (true {_number(t)}" + (f", {rel} %)" if rel else ")")
        lines.append(line)
    computed = let_values(lets, values)
    wanted = {sympy.Symbol(n) for n in shown}
    for let in lets:
        if let.name in computed and let.expr.free_symbols & wanted:
            wanted.add(sympy.Symbol(let.name))
            if latex:
                lines.append(f"{sympy.latex(sympy.Symbol(let.name))} = {sympy.latex(let.expr)}"
                             f" = {_number(computed[let.name])}")
            else:
                lines.append(f"{render_let(let)} = {_number(computed[let.name])}")
    return lines


def describe(spec: Spec) -> dict:
    """A plain summary of a spec (what `physml check` prints)."""
    s = spec.system
    return {
        "name": s.name,
        "title": s.title,
        "kind": "grid PDE" if s.is_grid else "ODE",
        "variables": list(s.variables),
        "domain": s.domain.describe() if s.domain else None,
        "parameters": [{"name": p.name, "value": p.value, "bounds": p.bounds_text()}
                       for p in s.params],
        "uses": spec.uses,
        "blocks": [name for name in ("data", "prior", "augment", "per_environment",
                                     "environments", "observe", "encoder", "constraints",
                                     "train")
                   if getattr(spec, name) not in (None, ())],
    }


__all__ = ["SpecPrinter", "render_expr", "render_equation", "render_let", "render_equations",
           "augmented", "let_values", "value_lines", "describe", "AUGMENTATION"]
