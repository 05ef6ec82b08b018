"""Printing systems and identified equations from SymPy (Unicode or LaTeX)."""
from __future__ import annotations

import sympy

from ..symbolic.spec import Equation, Let, Spec


def render_expr(expr: sympy.Basic, latex: bool = False) -> str:
    """One expression as readable Unicode math (single or multi-line) or LaTeX."""
    if latex:
        return sympy.latex(expr)
    return sympy.pretty(expr, use_unicode=True, wrap_line=False)


def _aligned(left: str, expr: sympy.Basic) -> str:
    """``left`` followed by the pretty form of ``expr``, on the form's baseline."""
    from sympy.printing.pretty.pretty import PrettyPrinter

    form = PrettyPrinter({"use_unicode": True, "wrap_line": False})._print(expr)
    body = form.render(wrap_line=False).splitlines()
    if len(body) == 1:
        return left + body[0]
    pad = " " * len(left)
    return "\n".join((left if i == form.baseline else pad) + line
                     for i, line in enumerate(body))


def render_equation(var: str, rhs: sympy.Basic, latex: bool = False) -> str:
    lhs = sympy.Symbol(var)
    if latex:
        return rf"\frac{{d {sympy.latex(lhs)}}}{{dt}} = {sympy.latex(rhs)}"
    return _aligned(f"d{sympy.pretty(lhs, use_unicode=True)}/dt = ", rhs)


def render_let(let: Let, latex: bool = False) -> str:
    name = sympy.Symbol(let.name)
    if latex:
        return f"{sympy.latex(name)} = {sympy.latex(let.expr)}"
    return _aligned(f"{sympy.pretty(name, use_unicode=True)} = ", let.expr)


def render_equations(equations: tuple[Equation, ...], latex: bool = False) -> list[str]:
    return [render_equation(eq.var, eq.rhs, latex) for eq in equations]


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
        "blocks": [name for name in ("data", "prior", "augment", "environments", "observe",
                                     "encoder", "train")
                   if getattr(spec, name) not in (None, ())],
    }
