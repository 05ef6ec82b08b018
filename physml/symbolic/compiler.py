"""SymPy → torch: a batched, differentiable vector field ``F(t, X)`` from a spec.

The expression tree is compiled once into nested Python closures (one per node, after
common-subexpression elimination and constant folding), so evaluating ``F`` costs the
torch operations a hand-written model would issue plus one function call per node.
Dispatch goes through :data:`~physml.symbolic.functions.TORCH_FUNCTIONS`, which users
extend with :func:`~physml.symbolic.functions.register_function`.

Learnable parameters are stored unconstrained and mapped into their declared interval by
a smooth bijection (Eq. below), so no gradient step can leave the interval:

- ``(lo, hi)``: ``lo + (hi - lo)·sigmoid(r)``;
- ``(lo, ∞)``: ``lo + softplus(r)``; ``(-∞, hi)``: ``hi - softplus(r)``;
- ``(-∞, ∞)``: ``r``.
"""
from __future__ import annotations

from contextlib import contextmanager

import math
from typing import Callable, Iterable, Mapping, Sequence

import sympy
import torch
import torch.nn.functional as F
from torch import nn

from .functions import (TORCH_FUNCTIONS, SpatialOperator, div, dx, dxx, dy, dyy, dz, dzz,
                        inv_lap, lap)
from .spec import Equation, Let, Param, Spec, System
from .stencils import ExactBuffers, GridOperators

Env = dict
Node = Callable[[Env], "torch.Tensor | float"]


# ---------------------------------------------------------------------------------------
# Bounded parameters

def param_scale(init: float, p: Param) -> float:
    """The unit of a half-bounded or unbounded learned parameter: its distance from the
    bound at initialisation (its magnitude when unbounded), 1 if that is 0.

    ``p = lo + scale·softplus(r)``: a step on ``r`` then moves ``p`` by a fraction of its
    own size whatever its units (a wave speed of 330 and a diffusion coefficient of 1e-3
    converge alike), where a bare ``lo + softplus(r)`` moves a large ``p`` by absolute
    amounts (c = 360 → 330 in steps of ~0.01).
    """
    lo, hi = p.lower, p.upper
    if math.isfinite(lo) and math.isfinite(hi):
        return 1.0
    ref = lo if math.isfinite(lo) else hi if math.isfinite(hi) else 0.0
    d = abs(float(init) - ref)
    return d if d > 0 and math.isfinite(d) else 1.0


def to_unconstrained(value: float, p: Param, scale: float = 1.0) -> float:
    """Inverse of :func:`to_constrained` (raises if ``value`` is not inside the bounds)."""
    lo, hi = p.lower, p.upper
    if not (p.contains(value) or value == lo or value == hi):
        raise ValueError(f"{p.name} = {value} lies outside {p.bounds_text()}")
    if math.isfinite(lo) and math.isfinite(hi):
        s = (value - lo) / (hi - lo)
        s = min(max(s, 1e-12), 1 - 1e-12)
        return math.log(s) - math.log1p(-s)
    if math.isfinite(lo):
        y = max((value - lo) / scale, 1e-12)
        return y + math.log(-math.expm1(-y))  # softplus⁻¹
    if math.isfinite(hi):
        y = max((hi - value) / scale, 1e-12)
        return y + math.log(-math.expm1(-y))
    return value / scale


def to_constrained(raw: torch.Tensor, p: Param, scale: float = 1.0) -> torch.Tensor:
    """``p`` from its unconstrained coordinate: sigmoid between two finite bounds,
    ``lo + scale·softplus(raw)`` / ``hi − scale·softplus(raw)`` on a half line,
    ``scale·raw`` on the whole line (see :func:`param_scale`)."""
    lo, hi = p.lower, p.upper
    if math.isfinite(lo) and math.isfinite(hi):
        value = lo + (hi - lo) * torch.sigmoid(raw)
    elif math.isfinite(lo):
        value = F.softplus(raw) * scale if lo == 0 else lo + F.softplus(raw) * scale
    elif math.isfinite(hi):
        value = hi - F.softplus(raw) * scale
    else:
        return raw * scale
    # Far out, sigmoid/softplus round to the bound itself (sigmoid(40) == 1 in float64);
    # an open bound must not be reached, so clamp to the nearest number strictly inside.
    inner_lo, inner_hi = _strict_interior(p, raw.dtype)
    if inner_lo is None and inner_hi is None:
        return value
    return torch.clamp(value, inner_lo, inner_hi)


_INTERIOR: dict[tuple[Param, torch.dtype], tuple[float | None, float | None]] = {}


def _strict_interior(p: Param, dtype: torch.dtype) -> tuple[float | None, float | None]:
    """The nearest numbers strictly inside the open bounds of ``p`` in ``dtype``.

    A plain dict cache (filled when a VectorField is built) rather than ``lru_cache``, so
    that ``torch.compile`` sees constants here instead of breaking its graph."""
    got = _INTERIOR.get((p, dtype))
    if got is None:
        got = _INTERIOR[(p, dtype)] = _compute_interior(p, dtype)
    return got


def _compute_interior(p: Param, dtype: torch.dtype) -> tuple[float | None, float | None]:
    lo, hi = p.lower, p.upper
    inf = torch.tensor(math.inf, dtype=dtype)

    def step(x: float, toward: torch.Tensor) -> float:
        return float(torch.nextafter(torch.tensor(x, dtype=dtype), toward))

    return (step(lo, inf) if p.lower_open and math.isfinite(lo) else None,
            step(hi, -inf) if p.upper_open and math.isfinite(hi) else None)


# ---------------------------------------------------------------------------------------
# Node compilers

def _as_tensor_fn(fn: Callable) -> Callable:
    def wrapped(*args):
        ref = next((a for a in args if isinstance(a, torch.Tensor)), None)
        args = [a if isinstance(a, torch.Tensor) else torch.as_tensor(
            a, dtype=ref.dtype if ref is not None else None,
            device=ref.device if ref is not None else None) for a in args]
        return fn(*args)
    return wrapped


_BINARY_TENSOR_FNS = {"Min", "Max", "min", "max"}

_RELATIONS = {
    sympy.StrictLessThan: torch.lt, sympy.LessThan: torch.le,
    sympy.StrictGreaterThan: torch.gt, sympy.GreaterThan: torch.ge,
    sympy.Equality: torch.eq, sympy.Unequality: torch.ne,
}


class CompileError(ValueError):
    pass


class _Compiler:
    """Turns SymPy expressions into closures over an environment dict."""

    def __init__(self, ops: GridOperators | None, extra: Mapping[str, Callable] | None = None):
        self.ops = ops
        self.functions = dict(TORCH_FUNCTIONS)
        if extra:
            self.functions.update(extra)

    def __call__(self, expr: sympy.Basic) -> Node:
        if expr is sympy.true:
            return lambda env: True
        if expr.is_number:
            value = complex(sympy.N(expr, 17))
            if value.imag != 0 or not math.isfinite(value.real):
                raise CompileError(f"constant {expr} is not a finite real number")
            c = value.real
            return lambda env: c
        if expr.is_Symbol:
            name = expr.name
            return lambda env: env[name]
        if expr.is_Add:
            return self._add(expr)
        if expr.is_Mul:
            return self._mul(expr)
        if expr.is_Pow:
            return self._pow(expr)
        if isinstance(expr, sympy.Piecewise):
            return self._piecewise(expr)
        if isinstance(expr, tuple(_RELATIONS)):
            op = _RELATIONS[type(expr)]
            a, b = self(expr.lhs), self(expr.rhs)
            return lambda env: op(_t(a(env)), b(env))
        if isinstance(expr, sympy.And):
            parts = [self(a) for a in expr.args]
            return lambda env: _reduce(torch.logical_and, [p(env) for p in parts])
        if isinstance(expr, sympy.Or):
            parts = [self(a) for a in expr.args]
            return lambda env: _reduce(torch.logical_or, [p(env) for p in parts])
        if isinstance(expr, sympy.Not):
            inner = self(expr.args[0])
            return lambda env: torch.logical_not(inner(env))
        if isinstance(expr, SpatialOperator):
            return self._spatial(expr)
        if isinstance(expr, sympy.Function) or isinstance(expr, (sympy.Min, sympy.Max)):
            name = type(expr).__name__
            fn = self.functions.get(name)
            if fn is None:
                raise CompileError(f"no torch implementation for {name}(); register one with "
                                   "physml.symbolic.register_function")
            if name in _BINARY_TENSOR_FNS:
                fn = _as_tensor_fn(fn)
                args = [self(a) for a in expr.args]
                if len(args) > 2:  # Min/Max are n-ary in SymPy
                    return lambda env: _reduce(fn, [a(env) for a in args])
                a, b = args
                return lambda env: fn(a(env), b(env))
            args = [self(a) for a in expr.args]
            if len(args) == 1:
                (a,) = args
                return lambda env: fn(_t(a(env)))
            return lambda env: fn(*[x(env) for x in args])
        raise CompileError(f"cannot compile {type(expr).__name__}: {expr}")

    def _add(self, expr) -> Node:
        """A sum as a chain of ``torch.add(acc, x, alpha=c)``: each numeric coefficient
        rides on the addition instead of costing a multiplication of its own."""
        const = 0.0
        terms: list[tuple[float, Node]] = []
        for term in expr.args:
            if term.is_number:
                const += float(sympy.N(term))
                continue
            c, rest = _split_coeff(term)
            terms.append((c, self(rest)))
        # Lead with a unit-coefficient term when there is one (no multiplication at all).
        terms.sort(key=lambda item: item[0] != 1.0)
        (c0, first), rest_terms = terms[0], terms[1:]

        def add(env):
            acc = first(env)
            if c0 != 1.0:
                acc = -acc if c0 == -1.0 else acc * c0
            for c, node in rest_terms:
                v = node(env)
                if isinstance(acc, torch.Tensor) and isinstance(v, torch.Tensor):
                    acc = torch.add(acc, v, alpha=c) if c != 1.0 else acc + v
                else:
                    acc = acc + c * v
            return acc if const == 0.0 else acc + const

        return add

    def _mul(self, expr) -> Node:
        c, rest = _split_coeff(expr)
        num, den = [], []
        for f in sympy.Mul.make_args(rest):
            if f.is_Pow and f.exp.is_number and f.exp < 0:
                den.append(self(sympy.Pow(f.base, -f.exp)))
            else:
                num.append(self(f))
        if not num:  # c / (…): the numerator is the coefficient itself
            numerator = c
            num = [lambda env: numerator]
            c = 1.0
        first, *others = num

        def mul(env):
            acc = first(env)
            for f in others:
                acc = acc * f(env)
            if c != 1.0:
                acc = acc * c if c != -1.0 else -acc
            for d in den:
                acc = acc / d(env)
            return acc

        return mul

    def _pow(self, expr) -> Node:
        base, exp = self(expr.base), expr.exp
        if exp.is_number:
            e = float(sympy.N(exp))
            if e == 2:
                return lambda env: torch.square(_t(base(env)))
            if e == 1:
                return base
            if e == 0.5:
                return lambda env: torch.sqrt(_t(base(env)))
            if e == -0.5:
                return lambda env: torch.rsqrt(_t(base(env)))
            if e == -1:
                return lambda env: torch.reciprocal(_t(base(env)))
            if e == int(e):
                n = int(e)
                return lambda env: torch.pow(_t(base(env)), n)
            return lambda env: torch.pow(_t(base(env)), e)
        ex = self(exp)
        return lambda env: torch.pow(base(env), ex(env))

    def _piecewise(self, expr) -> Node:
        pieces = [(self(e), self(c)) for e, c in expr.args]
        *branches, (otherwise, _) = pieces

        def piecewise(env):
            out = otherwise(env)
            for value, cond in reversed(branches):
                v = value(env)
                ref = v if isinstance(v, torch.Tensor) else out
                out = torch.where(cond(env), _t(v, ref), _t(out, ref))
            return out

        return piecewise

    def _spatial(self, expr) -> Node:
        ops = self.ops
        if ops is None:
            raise CompileError(f"{type(expr).__name__}() needs a domain")
        args = [self(a) for a in expr.args]
        if isinstance(expr, lap):
            (a,) = args
            return lambda env: ops.laplacian(a(env))
        if isinstance(expr, inv_lap):
            (a,) = args
            return lambda env: ops.inverse_laplacian(a(env))
        if isinstance(expr, div):
            return lambda env: ops.divergence(*[a(env) for a in args])
        if isinstance(expr, (dx, dy, dz, dxx, dyy, dzz)):
            (a,) = args
            axis, order = expr.axis, expr.derivative
            return lambda env: ops.derivative(a(env), axis, order)
        raise CompileError(f"cannot compile {type(expr).__name__}() here")


def _split_coeff(term) -> tuple[float, sympy.Basic]:
    """``term = c · rest`` with every numeric factor (π included) folded into ``c``."""
    factors = sympy.Mul.make_args(term)
    numeric = [f for f in factors if f.is_number]
    if not numeric:
        return 1.0, term
    c = float(sympy.N(sympy.Mul(*numeric)))
    return c, sympy.Mul(*[f for f in factors if not f.is_number])


def _schedule(assigns: list[tuple[str, sympy.Expr]], outputs: Sequence[sympy.Expr]
              ) -> list[tuple[str, sympy.Expr]]:
    """The assignments the outputs need, each after the ones it uses (iterative
    depth-first order, so a chain of thousands of lets cannot overflow the stack)."""
    table = dict(assigns)
    needs = {name: [s.name for s in e.free_symbols if s.name in table]
             for name, e in assigns}
    order: list[tuple[str, sympy.Expr]] = []
    done: set[str] = set()
    roots = [s.name for e in outputs for s in e.free_symbols if s.name in table]
    for root in sorted(set(roots)):
        stack = [(root, False)]
        while stack:
            name, expanded = stack.pop()
            if name in done:
                continue
            if expanded:
                done.add(name)
                order.append((name, table[name]))
                continue
            stack.append((name, True))
            stack.extend((dep, False) for dep in needs[name] if dep not in done)
    return order


def _t(x, ref=None):
    if isinstance(x, torch.Tensor):
        return x
    if ref is not None and isinstance(ref, torch.Tensor):
        return torch.as_tensor(x, dtype=ref.dtype, device=ref.device)
    return torch.as_tensor(x, dtype=torch.get_default_dtype())


def _reduce(fn, items):
    acc = items[0]
    for it in items[1:]:
        acc = fn(acc, it)
    return acc


# ---------------------------------------------------------------------------------------

class _Parameters(nn.Module):
    """Learnable parameters by the spec's names (``raw.T0`` in a state dict, as with
    ``nn.ParameterDict``). ParameterDict stores each as a module attribute, so a parameter
    called ``type``, ``training`` or ``forward`` would clash with ``nn.Module``'s own; a
    spec's names are the user's, so they are kept as keys only."""

    def __setitem__(self, name: str, value: nn.Parameter) -> None:
        self._parameters[name] = value

    def __getitem__(self, name: str) -> nn.Parameter:
        return self._parameters[name]

    def __contains__(self, name: str) -> bool:
        return name in self._parameters

    def __iter__(self):
        return iter(self._parameters)

    def __len__(self) -> int:
        return len(self._parameters)

    def keys(self):
        return self._parameters.keys()

    def items(self):
        return self._parameters.items()

    def values(self):
        return self._parameters.values()


class VectorField(ExactBuffers):
    """A compiled right-hand side ``dX/dt = F(t, X; θ_p)``.

    ``X`` has shape ``(..., n_state)`` for ODEs and ``(..., n_fields, *grid)`` for grid
    PDEs; the output has the same shape. Learnable parameters are ``nn.Parameter``\\ s in
    ``self.raw`` (unconstrained), fixed ones are buffers in ``self.fixed``.
    :meth:`param_values` gives the constrained values; :meth:`sympy` the equations.
    """

    def __init__(self, system: System, equations: Sequence[Equation], lets: Sequence[Let] = (),
                 learn: Mapping[str, float | None] | None = None,
                 values: Mapping[str, float] | None = None, stencil: str | None = None,
                 fold_constants: bool = True, functions: Mapping[str, Callable] | None = None,
                 varying: Iterable[str] = ()):
        super().__init__()
        self.system = system
        # Parameters given per trajectory by set_batch_params (LEADS's per-environment
        # values, §3.4): never folded, whatever `fold_constants` says.
        self.varying = tuple(varying)
        self.equations = tuple(equations)
        self.lets = tuple(lets)
        self.variables = system.variables
        self.is_grid = system.is_grid
        self.ndim = system.domain.ndim if system.domain else 0
        learn = dict(learn or {})
        values = {**system.param_values, **dict(values or {})}
        self.params_spec = {p.name: p for p in system.params}
        for name in list(learn) + list(values):
            if name not in self.params_spec:
                raise KeyError(f"unknown parameter {name!r}; parameters: "
                               f"{', '.join(self.params_spec) or 'none'}")
        self.learnable = tuple(n for n in self.params_spec if n in learn)
        for name in self.learnable:  # warm the bound cache outside any compiled region
            for dt in (torch.float32, torch.float64):
                _strict_interior(self.params_spec[name], dt)
        self.raw = _Parameters()
        self.scales: dict[str, float] = {}
        dtype = torch.get_default_dtype()
        for name in self.learnable:
            p = self.params_spec[name]
            init = learn[name] if learn[name] is not None else values[name]
            self.scales[name] = param_scale(float(init), p)
            self.raw[name] = nn.Parameter(torch.tensor(
                to_unconstrained(float(init), p, self.scales[name]), dtype=dtype))
        self.fixed_names = tuple(n for n in self.params_spec if n not in learn)
        # float64 originals of floating buffers: .to()/.double() restore them exactly.
        for name in self.fixed_names:
            value = torch.tensor(float(values[name]), dtype=torch.float64)
            self._exact_buffer(f"fixed_{name}", value, True)
        self.batch_params: dict[str, torch.Tensor] | None = None
        self.folded = fold_constants
        self.ops = GridOperators(system.domain, stencil) if system.domain is not None else None
        if self.ops is not None:
            self.ops.to(dtype)
            for axis, mesh in zip(system.domain.axes, system.domain.mesh()):
                self._exact_buffer(f"coord_{axis}", torch.from_numpy(mesh), False)
        compiler = _Compiler(self.ops, functions)
        # Fixed parameters become numbers in the compiled code when folding is on; the
        # symbolic equations (self.sympy()) keep the symbols.
        subs = {sympy.Symbol(n): sympy.Float(values[n], 17) for n in self.fixed_names
                if n not in self.varying} if fold_constants else {}
        self._mask_names = []
        for m in system.masks:
            self._build_mask(m, compiler, values)
        # Lets stay named steps (never inlined: a chain of lets that each use the previous
        # one twice would swell to 2^n terms). One CSE runs over the lets and equations
        # together, so subexpressions shared across lets are computed once; its steps and
        # the lets are then ordered by dependency, and only those the outputs need are kept.
        # The compiled field is linear in the size of the spec.
        let_exprs = [let.expr.xreplace(subs) for let in self.lets]
        exprs = [eq.rhs.xreplace(subs) for eq in self.equations]
        replacements, reduced = sympy.cse(let_exprs + exprs,
                                          symbols=sympy.numbered_symbols("__cse"),
                                          optimizations=None)
        assigns = [(sym.name, e) for sym, e in replacements] + \
            [(let.name, e) for let, e in zip(self.lets, reduced[:len(let_exprs)])]
        outputs = reduced[len(let_exprs):]
        self._steps: list[tuple[str, Node]] = [
            (name, compiler(e)) for name, e in _schedule(assigns, outputs)]
        self._outputs: list[Node] = [compiler(e) for e in outputs]
        #: Number of SymPy operations in the compiled steps and outputs (for size tests).
        self.op_count = sum(sympy.count_ops(e) for _, e in assigns) + \
            sum(sympy.count_ops(e) for e in outputs)

    def _build_mask(self, mask, compiler: _Compiler, values):
        subs = {sympy.Symbol(k): sympy.Float(v) for k, v in values.items()}
        fn = compiler(mask.condition.xreplace(subs))
        env = {ax: getattr(self, f"coord_{ax}") for ax in self.system.domain.axes}
        value = fn(env)
        value = torch.as_tensor(value, dtype=torch.bool).expand(self.system.domain.shape)
        self.register_buffer(f"mask_{mask.name}", value.to(torch.get_default_dtype()).clone(),
                             persistent=False)
        self._mask_names.append(mask.name)

    # -- parameters ---------------------------------------------------------------------
    def fixed_from_spec(self) -> None:
        """Leave the fixed parameters out of ``state_dict``: for modules whose values are
        the spec's alone (a constraint's), so that adding one to a spec keeps its
        checkpoints loadable."""
        for name in self.fixed_names:
            self._exact_buffer(f"fixed_{name}", self._exact[f"fixed_{name}"], False)

    def param_values(self) -> dict[str, torch.Tensor]:
        """Current values of every parameter (constrained), as 0-d tensors."""
        out = {name: to_constrained(self.raw[name], self.params_spec[name], self.scales[name])
               for name in self.learnable}
        for name in self.fixed_names:
            out[name] = getattr(self, f"fixed_{name}")
        return {n: out[n] for n in self.params_spec}

    def set_batch_params(self, values: Mapping[str, torch.Tensor] | None) -> None:
        """Per-trajectory parameter values, each of shape ``(B,)`` (e.g. one per LEADS
        environment). Only parameters that are not folded can vary; compile with
        ``fold_constants=False`` to vary fixed ones."""
        if values is None:
            self.batch_params = None
            return
        for name in values:
            if name not in self.params_spec:
                raise KeyError(f"unknown parameter {name!r}")
            if self.folded and name in self.fixed_names and name not in self.varying:
                raise ValueError(f"parameter {name!r} was folded into the compiled code; "
                                 "compile with fold_constants=False to vary it per trajectory")
        self.batch_params = dict(values)

    # -- evaluation ---------------------------------------------------------------------
    @contextmanager
    def frozen_parameters(self):
        """Inside the block the constrained parameter values are computed once, not at
        every evaluation: one solve evaluates F hundreds of times with the same
        parameters, and autograd sees one use of them per solve instead of hundreds."""
        self._frozen = self._parameter_env()
        try:
            yield self
        finally:
            self._frozen = None

    def _parameter_env(self) -> dict[str, torch.Tensor]:
        return self.param_values() if not self.folded else {
            name: to_constrained(self.raw[name], self.params_spec[name], self.scales[name])
            for name in self.learnable}

    def forward(self, t: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        frozen = self.__dict__.get("_frozen")
        env = dict(frozen) if frozen is not None else self._parameter_env()
        if self.batch_params:
            extra = X.dim() - (1 if not self.is_grid else 1 + self.ndim)
            for name, value in self.batch_params.items():
                env[name] = value.reshape(value.shape + (1,) * (X.dim() - 1 - extra)) \
                    if self.is_grid else value
        env["t"] = t
        if self.is_grid:
            var_dim = X.dim() - self.ndim - 1
            for axis in self.system.domain.axes:
                env[axis] = getattr(self, f"coord_{axis}")
            for m in self._mask_names:
                env[m] = getattr(self, f"mask_{m}")
        else:
            var_dim = X.dim() - 1
        # One unbind gives every variable as a view (cheaper than one index op each).
        env.update(zip(self.variables, X.unbind(var_dim)))
        for name, fn in self._steps:
            env[name] = fn(env)
        shape = X.shape[:var_dim] + X.shape[var_dim + 1:]
        outs = []
        for fn in self._outputs:
            y = fn(env)
            if not isinstance(y, torch.Tensor) or y.shape != shape:
                y = torch.broadcast_to(_t(y, X), shape)
            outs.append(y)
        return torch.stack(outs, dim=var_dim)

    # -- symbolic view ------------------------------------------------------------------
    def sympy(self, substitute: bool = True, expand_lets: bool = True,
              digits: int = 6) -> list[sympy.Eq]:
        """The equations as SymPy ``Eq(d var/dt, rhs)``; with ``substitute`` the current
        parameter values replace the parameter symbols."""
        rhs = [eq.rhs for eq in self.equations]
        if expand_lets:
            for let in reversed(self.lets):
                rhs = [r.xreplace({sympy.Symbol(let.name): let.expr}) for r in rhs]
        if substitute:
            vals = {sympy.Symbol(k): sympy.Float(float(v.detach()), digits)
                    for k, v in self.param_values().items()}
            rhs = [r.xreplace(vals) for r in rhs]
        t = sympy.Symbol("t")
        return [sympy.Eq(sympy.Derivative(sympy.Function(eq.var)(t), t), r)
                for eq, r in zip(self.equations, rhs)]

    def extra_repr(self) -> str:
        return f"{self.system.name}: {', '.join(self.variables)}; learn " \
               f"{', '.join(self.learnable) or 'nothing'}"


def compile_dynamics(spec: Spec | System, which: str = "dynamics",
                     learn: Iterable[str] | Mapping[str, float | None] | str | None = None,
                     values: Mapping[str, float] | None = None, stencil: str | None = None,
                     fold_constants: bool = True,
                     functions: Mapping[str, Callable] | None = None,
                     varying: Iterable[str] = ()) -> VectorField:
    """Compile a spec's ``dynamics`` (the true system) or its ``prior`` into a module.

    ``learn`` names the parameters to make learnable (``"all"`` for every one; a mapping
    gives start values). For the prior it defaults to the block's ``learn`` lines.
    ``values`` overrides parameter values (e.g. one LEADS environment).
    """
    system = spec.system if isinstance(spec, Spec) else spec
    lets: tuple[Let, ...] = system.lets
    if which == "dynamics":
        equations = system.equations
        default_learn: dict[str, float | None] = {}
    elif which == "prior":
        if not isinstance(spec, Spec) or spec.prior is None:
            raise ValueError("this spec has no `prior:` block")
        if spec.prior.hamiltonian is not None:
            raise ValueError("a hamiltonian prior is a network; build it with physml.models")
        equations = spec.prior.equations
        lets = lets + spec.prior.lets
        if spec.prior.params:  # the prior's own parameters (absorbed terms)
            import dataclasses

            system = dataclasses.replace(system, params=system.params + spec.prior.params)
        default_learn = dict(spec.prior.learn)
        stencil = stencil or spec.prior.stencil
    else:
        raise ValueError(f"which must be 'dynamics' or 'prior', not {which!r}")
    if learn is None:
        learn_map = default_learn
    elif learn == "all":
        learn_map = {p.name: None for p in system.params}
    elif isinstance(learn, Mapping):
        learn_map = dict(learn)
    else:
        learn_map = {name: None for name in learn}
    return VectorField(system, equations, lets, learn_map, values, stencil, fold_constants,
                       functions, varying)


class TermModule(VectorField):
    """Candidate terms compiled into one module: ``forward(t, X)`` returns every term at
    once, stacked where a vector field stacks its equations — ``(..., n_terms)`` for ODE
    states ``(..., n_state)``, ``(..., n_terms, *grid)`` for fields ``(..., n_fields,
    *grid)``. One CSE runs over all terms (``u^2`` is computed once for ``u^2``, ``u^3``
    and ``u^2*v``); grid operators, masks and lets are the vector field's own."""

    def __init__(self, system: System, terms: Sequence[sympy.Expr], lets: Sequence[Let] = (),
                 values: Mapping[str, float] | None = None, stencil: str | None = None,
                 functions: Mapping[str, Callable] | None = None):
        terms = tuple(terms)
        if not terms:
            raise ValueError("no terms to compile")
        equations = [Equation(f"__term{i}", t) for i, t in enumerate(terms)]
        super().__init__(system, equations, lets, None, values, stencil, True, functions)
        self.terms = terms


def compile_terms(spec: Spec | System, terms: Sequence[sympy.Expr],
                  values: Mapping[str, float] | None = None, stencil: str | None = None,
                  functions: Mapping[str, Callable] | None = None) -> TermModule:
    """Compile SymPy ``terms`` (expressions of a system's variables, coordinates,
    parameters and lets) into one :class:`TermModule` returning all of them at once.

    A :class:`Spec` with a prior lends the prior's lets, its own parameters and stencil, so
    a term may use any name the prior may; ``values`` overrides parameter values.
    """
    system = spec.system if isinstance(spec, Spec) else spec
    lets: tuple[Let, ...] = system.lets
    if isinstance(spec, Spec) and spec.prior is not None:
        import dataclasses

        lets = lets + spec.prior.lets
        if spec.prior.params:
            system = dataclasses.replace(system, params=system.params + spec.prior.params)
        stencil = stencil or spec.prior.stencil
    return TermModule(system, terms, lets, values, stencil, functions)
