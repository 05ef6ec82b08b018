"""The candidate terms a learned augmentation is fitted with (the SINDy library).

The default library is built from the spec: the monomials of the variables up to a degree,
the functions the prior already uses (``sin(theta)`` for the pendulum), and on a grid the
Laplacian and first derivatives of each field and their products with the fields. A
``discover terms …`` line adds terms or restricts the library
(:class:`~physml.symbolic.spec.DiscoverSpec`).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import sympy

from ..symbolic.printer import format_expr
from ..symbolic.functions import SpatialOperator, dx, dy, dz, lap
from ..symbolic.spec import Spec

#: Highest degree of the default polynomials.
DEFAULT_DEGREE = 3

_FIRST_DERIVATIVES = (dx, dy, dz)


@dataclass(frozen=True)
class Library:
    """Candidate terms with their names (the language's spelling of each)."""

    terms: tuple[sympy.Expr, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(format_expr(t) for t in self.terms)

    def __len__(self) -> int:
        return len(self.terms)


def monomials(variables, degree: int) -> list[sympy.Expr]:
    """``1``, then every monomial of the variables of degree 1 … ``degree``, by degree."""
    syms = [sympy.Symbol(v) for v in variables]
    out: list[sympy.Expr] = [sympy.Integer(1)]
    for d in range(1, degree + 1):
        out += [sympy.Mul(*c) for c in itertools.combinations_with_replacement(syms, d)]
    return out


def prior_functions(spec: Spec) -> list[sympy.Expr]:
    """The elementary functions of the variables in the prior (lets expanded), such as
    ``sin(theta)``: the unknown part often reuses them."""
    if spec.prior is None or not spec.prior.equations:
        return []
    lets = (*spec.system.lets, *spec.prior.lets)
    variables = {sympy.Symbol(v) for v in spec.system.variables}
    out: list[sympy.Expr] = []
    for eq in spec.prior.equations:
        rhs = eq.rhs
        for let in reversed(lets):
            rhs = rhs.xreplace({sympy.Symbol(let.name): let.expr})
        for f in sorted(rhs.atoms(sympy.Function), key=sympy.default_sort_key):
            if isinstance(f, SpatialOperator) or not f.free_symbols or \
                    not f.free_symbols <= variables:
                continue
            if f not in out:
                out.append(f)
    return out


def grid_terms(spec: Spec) -> list[sympy.Expr]:
    """``lap(f)``, the first derivatives of each field, and their products with the
    fields (advection-like ``u*dx(v)``)."""
    system = spec.system
    if system.domain is None:
        return []
    fields = [sympy.Symbol(f) for f in system.fields]
    ops = _FIRST_DERIVATIVES[:system.domain.ndim]
    out: list[sympy.Expr] = [lap(f) for f in fields]
    firsts = [op(f) for f in fields for op in ops]
    out += firsts
    out += [g * d for g in fields for d in firsts]
    return out


def default_library(spec: Spec, degree: int = DEFAULT_DEGREE) -> Library:
    terms = monomials(spec.system.variables, degree) + prior_functions(spec) + grid_terms(spec)
    return Library(tuple(dict.fromkeys(terms)))


def library_for(spec: Spec, degree: int | None = None) -> Library:
    """The library a spec asks for: the default one, or what its ``discover terms`` line
    lists (``poly(d)`` for monomials up to degree d, ``default`` for the default library,
    anything else as written). ``degree`` overrides the polynomials' degree."""
    d = spec.discover
    if d is None:
        return default_library(spec, degree or DEFAULT_DEGREE)
    deg = degree or d.degree
    terms: list[sympy.Expr] = []
    if d.default:
        terms += default_library(spec, deg or DEFAULT_DEGREE).terms
    elif deg is not None:
        terms += monomials(spec.system.variables, deg)
    terms += list(d.terms)
    return Library(tuple(dict.fromkeys(terms)))
