"""The functions a spec may call, as one registry shared by the parser and the compiler.

Elementwise functions map to SymPy functions and torch functions. Spatial operators are
SymPy ``Function`` subclasses (``lap(u)``, ``dx(u)`` …) that stay unevaluated in the
symbolic form and compile to stencils or spectral operators (see :mod:`.stencils`).

Users extend the language with :func:`register_function`::

    import sympy, torch
    from physml.symbolic import register_function
    register_function("softplus", sympy.Function("softplus"), torch.nn.functional.softplus)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sympy


class SpatialOperator(sympy.Function):
    """A linear spatial operator applied to a field; compiled by :mod:`.stencils`.

    ``axis`` is the grid axis for directional derivatives, ``derivative`` their order.
    """

    axis: int | None = None
    derivative: int = 0
    symbol = "?"
    latex_symbol = "?"

    @classmethod
    def eval(cls, *args):
        # The operator of a constant vanishes (inv_lap(0) = 0 too): fold it away.
        if all(a.is_number for a in args):
            return sympy.Integer(0)
        return None

    def _sympystr(self, printer):
        return f"{self.func.__name__}({', '.join(printer._print(a) for a in self.args)})"

    def _latex(self, printer):
        inner = ", ".join(printer._print(a) for a in self.args)
        if len(self.args) == 1 and (self.args[0].is_Symbol or self.args[0].is_Function):
            return f"{self.latex_symbol} {inner}"
        return f"{self.latex_symbol}\\left({inner}\\right)"

    def _pretty(self, printer):
        from sympy.printing.pretty.stringpict import prettyForm

        # Compose pretty forms (not rendered strings) so the printer's own settings apply.
        if len(self.args) == 1 and self.args[0].is_Symbol:
            inner = printer._print(self.args[0])
        else:
            inner = printer._print_seq(self.args, "(", ")")
        return prettyForm(*inner.left(self.symbol))


def _derivative(name: str, axis: int, order: int, sym: str, latex: str):
    return type(name, (SpatialOperator,), {
        "nargs": 1, "axis": axis, "derivative": order, "symbol": sym, "latex_symbol": latex,
    })


dx = _derivative("dx", 0, 1, "∂ₓ", r"\partial_x")
dy = _derivative("dy", 1, 1, "∂ᵧ", r"\partial_y")
dz = _derivative("dz", 2, 1, "∂_z", r"\partial_z")
dxx = _derivative("dxx", 0, 2, "∂ₓₓ", r"\partial_{xx}")
dyy = _derivative("dyy", 1, 2, "∂ᵧᵧ", r"\partial_{yy}")
dzz = _derivative("dzz", 2, 2, "∂_zz", r"\partial_{zz}")


class lap(SpatialOperator):
    """Laplacian Δu = Σ_i ∂²u/∂x_i²."""

    nargs = 1
    symbol = "Δ"
    latex_symbol = r"\Delta"


class inv_lap(SpatialOperator):
    """Inverse Laplacian on a periodic domain (spectral, zero-mean solution of Δψ = f)."""

    nargs = 1
    symbol = "Δ⁻¹"
    latex_symbol = r"\Delta^{-1}"


class grad(SpatialOperator):
    """Gradient; a vector, only meaningful as the argument of ``div`` (div(grad(u)) = lap(u))."""

    nargs = 1
    symbol = "∇"
    latex_symbol = r"\nabla"


class div(SpatialOperator):
    """Divergence of a vector given by its components: div(a, b) = ∂ₓa + ∂ᵧb."""

    nargs = (1, 2, 3)
    symbol = "∇·"
    latex_symbol = r"\nabla\cdot"

    @classmethod
    def eval(cls, *args):
        if len(args) == 1 and isinstance(args[0], grad):
            return lap(args[0].args[0])
        return super().eval(*args)


SPATIAL_OPERATORS: dict[str, type[SpatialOperator]] = {
    op.__name__: op for op in (dx, dy, dz, dxx, dyy, dzz, lap, inv_lap, grad, div)
}


@dataclass(frozen=True)
class FunctionDef:
    """One callable name of the language."""

    name: str
    sympy: Callable
    nargs: tuple[int, ...]
    torch: Callable | None = None  # None for spatial operators (compiled by stencils)
    spatial: bool = False


def _torch(name: str) -> Callable:
    """``torch.<name>``, looked up when called: parsing and checking a spec need no torch
    (``physml check`` of a system file starts in well under a second)."""
    def fn(*args):
        import torch

        return getattr(torch, name)(*args)

    fn.__name__ = fn.__qualname__ = name
    return fn


_sign = _torch("sign")


FUNCTIONS: dict[str, FunctionDef] = {}


def register_function(name: str, sympy_fn: Callable, torch_fn: Callable,
                      nargs: int | tuple[int, ...] = 1) -> None:
    """Add an elementwise function to the language and to the compiler's dispatch table.

    ``sympy_fn`` builds the symbolic node from SymPy arguments; ``torch_fn`` evaluates it
    on tensors. The compiler looks a node up by ``type(node).__name__`` first and then
    by the registered name, so ``sympy.Function("softplus")`` works as ``sympy_fn``.
    """
    if not name.isidentifier() or name.startswith("_"):
        raise ValueError(f"cannot register {name!r}: use a plain identifier")
    if name in SPATIAL_OPERATORS:
        raise ValueError(f"{name!r} is a spatial operator and cannot be redefined")
    arities = (nargs,) if isinstance(nargs, int) else tuple(nargs)
    FUNCTIONS[name] = FunctionDef(name, sympy_fn, arities, torch_fn)
    TORCH_FUNCTIONS[name] = torch_fn
    node_name = getattr(sympy_fn, "__name__", None)
    if node_name:
        TORCH_FUNCTIONS.setdefault(node_name, torch_fn)


# Torch implementations keyed by SymPy class name (the compiler's dispatch table).
TORCH_FUNCTIONS: dict[str, Callable] = {}

for _name, _sym, _tor in [
    ("sin", sympy.sin, _torch("sin")), ("cos", sympy.cos, _torch("cos")),
    ("tan", sympy.tan, _torch("tan")), ("exp", sympy.exp, _torch("exp")),
    ("log", sympy.log, _torch("log")), ("sqrt", sympy.sqrt, _torch("sqrt")),
    ("tanh", sympy.tanh, _torch("tanh")), ("sinh", sympy.sinh, _torch("sinh")),
    ("cosh", sympy.cosh, _torch("cosh")), ("abs", sympy.Abs, _torch("abs")),
    ("sign", sympy.sign, _sign), ("atan", sympy.atan, _torch("atan")),
]:
    register_function(_name, _sym, _tor)
register_function("min", sympy.Min, _torch("minimum"), nargs=2)
register_function("max", sympy.Max, _torch("maximum"), nargs=2)
TORCH_FUNCTIONS["Abs"] = TORCH_FUNCTIONS["abs"]

for _name, _op in SPATIAL_OPERATORS.items():
    _arities = tuple(sorted(int(n) for n in _op.nargs))  # SymPy stores nargs as a FiniteSet
    FUNCTIONS[_name] = FunctionDef(_name, _op, _arities, None, spatial=True)

#: The words of the expression language, which a declaration may not take (besides the
#: function names above and ``piecewise``): the constant ``pi``, time ``t``, ``inf`` in
#: bounds, ``d``/``dt`` of ``d(u)/dt``, and the operators of conditions. Any other
#: identifier is the user's — SymPy's own names (``I``, ``E``, ``S``, ``N``, ``O``, ``Q``)
#: included, since spec names only ever become plain ``sympy.Symbol``\ s.
RESERVED = ("pi", "t", "inf", "d", "dt", "and", "or", "not")
