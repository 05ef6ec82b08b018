"""Pseudo-spectral Crank–Nicolson for periodic grids (the FNO Navier–Stokes data).

Li et al. (2021), *Fourier Neural Operator for Parametric PDEs*: the diffusion term is
implicit, the rest explicit and 2/3-dealiased.

The explicit part is evaluated in the fewest transforms its equations allow
(:func:`split_spectral`): a term that is a constant-coefficient linear operator of the
fields (``vx = dy(inv_lap(-w))``, ``dx(w)``) is formed from the state's spectrum, which
the integrator keeps, and costs one inverse transform; the part that depends on neither
the state nor time (a forcing ξ(x, y)) is transformed once, before the first step. For
vorticity Navier–Stokes a step then costs four inverse transforms and one forward one,
where evaluating the compiled right-hand side on the grid costs twelve (each of its five
operators transforms its argument there and back, and the step transforms the state back
and the result forward).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import sympy
import torch

from ..symbolic.functions import SpatialOperator, div, inv_lap, lap
from .batched import Outcome, Progress, _Guard
from .tableau import ButcherTableau


def split_diffusion(system) -> tuple[dict, object]:
    """Split each ``d(u)/dt = c·lap(u) + R`` into the constant diffusivity ``c`` (a SymPy
    expression in the parameters) and the rest, a system with ``R`` as its equations."""
    fields = set(system.fields)
    lets = {sympy.Symbol(l.name): l.expr for l in system.lets}
    diff, eqs = {}, []
    for eq in system.equations:
        rhs = sympy.expand(eq.rhs)
        target = lap(sympy.Symbol(eq.var))
        c = rhs.coeff(target)
        names = {s.name for s in c.free_symbols}
        if names & (fields | set(system.domain.axes) | {"t"}) or any(
                sympy.Symbol(n) in lets for n in names):
            raise ValueError(f"spectral_cn: the diffusion coefficient of {eq.var} ({c}) must "
                             "be a constant or a parameter")
        diff[eq.var] = c
        eqs.append(replace(eq, rhs=sympy.expand(rhs - c * target)))
    return diff, replace(system, equations=tuple(eqs))


@dataclass(frozen=True)
class SpectralSplit:
    """A periodic system cut for the pseudo-spectral integrator (:func:`split_spectral`).

    ``diffusivity``: ``c`` of each field's ``c·lap(u)`` (SymPy, in the parameters).
    ``explicit``: the rest as a system whose *fields* are its inputs, in order — the
    fields it uses pointwise, then the linear terms by name; its equations are those of
    the original fields (``None`` when nothing of the rest depends on the state or time).
    ``inputs``: each input as a linear SymPy expression of the original fields (``w`` for
    a field used pointwise, ``dy(inv_lap(-w))`` for ``vx``), what :func:`spectral_cn`
    forms from the spectrum.
    ``static``: the rest's terms free of the state and of ``t`` (a forcing), as a system
    without fields (``None`` if there are none).
    """

    fields: tuple[str, ...]
    diffusivity: dict[str, sympy.Expr]
    explicit: object | None
    inputs: tuple[sympy.Expr, ...]
    static: object | None


def _linear(expr, fields: set[str], linear_lets: dict[str, sympy.Expr]) -> bool:
    """``expr`` is a constant-coefficient linear (homogeneous) map of the fields."""
    if expr.is_Symbol:
        return expr.name in fields or expr.name in linear_lets
    if expr.is_Add:
        return all(_linear(a, fields, linear_lets) for a in expr.args)
    if expr.is_Mul:
        others = [a for a in expr.args if not a.is_number]
        return len(others) == 1 and _linear(others[0], fields, linear_lets)
    if isinstance(expr, SpatialOperator):
        return all(_linear(a, fields, linear_lets) for a in expr.args)
    return False


def split_spectral(system) -> SpectralSplit:
    """Cut ``system`` into implicit diffusion, Fourier-space linear terms, a pointwise
    explicit part and a static part.

    Linear terms are the largest subexpressions that are linear in the fields with numeric
    coefficients and contain a spatial operator; a let that is such a term becomes an input
    under its own name (``vx``). Anything else (an operator of a nonlinear expression, a
    coefficient that varies between environments) stays in the explicit part and is
    evaluated on the grid by the compiled operators, so every system still runs.
    """
    diffusivity, rest = split_diffusion(system)
    fields = set(system.fields)
    # Lets that are linear maps of the fields, with the lets inside them expanded.
    expanded: dict[str, sympy.Expr] = {}
    for let in rest.lets:
        if _linear(let.expr, fields, expanded):
            expanded[let.name] = let.expr.xreplace(
                {sympy.Symbol(k): v for k, v in expanded.items()})
    terms: dict[sympy.Expr, str] = {}

    def term(expr) -> sympy.Symbol:
        full = expr.xreplace({sympy.Symbol(k): v for k, v in expanded.items()})
        if full not in terms:
            terms[full] = expr.name if expr.is_Symbol else f"__spectral{len(terms)}"
        return sympy.Symbol(terms[full])

    def rewrite(expr):
        if _linear(expr, fields, expanded) and (
                expr.has(SpatialOperator) or (expr.is_Symbol and expr.name in expanded and
                                              expanded[expr.name].has(SpatialOperator))):
            return term(expr)
        if expr.is_Atom:
            return expr
        return expr.func(*[rewrite(a) for a in expr.args])

    new_lets = []
    for let in rest.lets:
        if let.name in expanded and expanded[let.name].has(SpatialOperator):
            term(sympy.Symbol(let.name))
        else:
            new_lets.append(replace(let, expr=rewrite(let.expr)))
    rhs = [rewrite(eq.rhs) for eq in rest.equations]
    # What depends on the state or time (through lets too) is dynamic; the rest is static.
    dynamic = fields | set(terms.values()) | {"t"}
    for let in new_lets:
        if {s.name for s in let.expr.free_symbols} & dynamic:
            dynamic.add(let.name)
    explicit_eqs, static_eqs = [], []
    for eq, r in zip(rest.equations, rhs):
        moving, still = [], []
        for a in sympy.Add.make_args(r):
            (moving if {s.name for s in a.free_symbols} & dynamic else still).append(a)
        explicit_eqs.append(replace(eq, rhs=sympy.Add(*moving)))
        static_eqs.append(replace(eq, rhs=sympy.Add(*still)))
    # The inputs the explicit part reads, in a fixed order: fields, then terms.
    used = set()
    for e in [eq.rhs for eq in explicit_eqs] + [l.expr for l in new_lets]:
        used |= {s.name for s in e.free_symbols}
    names = [f for f in system.fields if f in used] + \
        [n for n in terms.values() if n in used]
    by_name = {n: e for e, n in terms.items()}
    inputs = tuple(sympy.Symbol(n) if n in fields else by_name[n] for n in names)
    explicit = None
    if any(eq.rhs != 0 for eq in explicit_eqs):
        explicit = replace(rest, fields=tuple(names), lets=tuple(new_lets),
                           equations=tuple(explicit_eqs))
    static = None
    if any(eq.rhs != 0 for eq in static_eqs):
        static = replace(rest, fields=(), lets=tuple(new_lets), equations=tuple(static_eqs))
    return SpectralSplit(tuple(system.fields), diffusivity, explicit, inputs, static)


class _Wavenumbers:
    """Wavenumbers of the ``rfftn`` grid, and the Fourier symbols of the spatial operators
    as :class:`~physml.symbolic.stencils.GridOperators` applies them with the spectral
    stencil (first derivatives drop the Nyquist mode; ``inv_lap`` drops the mean)."""

    def __init__(self, domain, device, dtype):
        nd = domain.ndim
        self.k, self.k1, mask = [], [], None
        for axis, (n, length) in enumerate(zip(domain.shape, domain.lengths)):
            last = axis == nd - 1
            freq = torch.fft.rfftfreq(n, d=1.0 / n) if last else torch.fft.fftfreq(n, d=1.0 / n)
            freq = freq.to(device=device, dtype=dtype)
            shp = [1] * nd
            shp[axis] = -1
            k = 2 * math.pi / length * freq
            k1 = k.clone()
            if n % 2 == 0:
                k1[-1 if last else n // 2] = 0.0
            self.k.append(k.reshape(shp))
            self.k1.append(k1.reshape(shp))
            keep = (freq.abs() <= (2.0 / 3.0) * (n // 2)).reshape(shp)
            mask = keep if mask is None else mask & keep
        self.dealias = mask                                          # the 2/3 rule
        self.lam = -sum(k ** 2 for k in self.k)                      # symbol of Δ
        self.shape = tuple(torch.broadcast_shapes(*[k.shape for k in self.k]))
        self.complex = (torch.zeros((), dtype=dtype) * 1j).dtype
        self.device = device

    def symbol(self, expr, fields: Sequence[str]) -> dict[int, torch.Tensor]:
        """``{field index: multiplier}`` with ``F[expr] = Σ multiplier · F[field]``."""
        if expr.is_Symbol:
            return {fields.index(expr.name): torch.ones(self.shape, dtype=self.complex, device=self.device)}
        if expr.is_Add:
            out: dict[int, torch.Tensor] = {}
            for a in expr.args:
                for i, m in self.symbol(a, fields).items():
                    out[i] = out[i] + m if i in out else m
            return out
        if expr.is_Mul:
            c = float(sympy.N(sympy.Mul(*[a for a in expr.args if a.is_number]), 17))
            (inner,) = [a for a in expr.args if not a.is_number]
            return {i: c * m for i, m in self.symbol(inner, fields).items()}
        if isinstance(expr, div):
            out = {}
            for axis, a in enumerate(expr.args):
                for i, m in self.symbol(a, fields).items():
                    m = 1j * self.k1[axis] * m
                    out[i] = out[i] + m if i in out else m
            return out
        (arg,) = expr.args
        inner = self.symbol(arg, fields)
        if isinstance(expr, lap):
            mult = self.lam
        elif isinstance(expr, inv_lap):
            k2 = -self.lam
            mult = torch.where(k2 > 0, -1.0 / torch.where(k2 > 0, k2, torch.ones_like(k2)),
                               torch.zeros_like(k2))
        elif expr.derivative == 1:
            mult = 1j * self.k1[expr.axis]
        elif expr.derivative == 2:
            mult = -self.k[expr.axis] ** 2
        else:
            raise ValueError(f"no Fourier symbol for {type(expr).__name__}()")
        return {i: mult * m for i, m in inner.items()}

    def multipliers(self, inputs, fields: Sequence[str]) -> torch.Tensor:
        """``(n_inputs, n_fields, *k)``: input j's spectrum is Σ_f M[j, f]·û_f."""
        out = torch.zeros((len(inputs), len(fields)) + self.shape, dtype=self.complex,
                          device=self.device)
        for j, e in enumerate(inputs):
            for i, m in self.symbol(e, list(fields)).items():
                out[j, i] = m
        return out


def spectral_cn(rest, diffusivity: dict[str, torch.Tensor], domain, y0: torch.Tensor,
                times: torch.Tensor, step: float, bound: float | None = None,
                progress: Progress | None = None, out_dtype: torch.dtype | None = None,
                *, inputs: Sequence[sympy.Expr] | None = None,
                forcing: torch.Tensor | None = None) -> Outcome:
    """``û ← ((1 + h/2·c·Λ) û + h·D(R̂(u))) / (1 − h/2·c·Λ)``, Λ = −|k|² (Li et al. 2021).

    An implicit–explicit step: Crank–Nicolson (trapezoidal rule, 2nd order and A-stable)
    for the diffusion, forward Euler for the rest (Ascher, Ruuth & Wetton, SIAM J. Numer.
    Anal. 32, 1995, the "CN/FE" scheme). It is of order 1 in time, and of order 2 when the
    explicit part vanishes (pure diffusion).

    ``rest`` computes the explicit part R (advection, reaction); ``diffusivity[var]`` is
    ``c`` of shape ``(B,)``, or a scalar, one per field in the order of the state; D is
    the 2/3 dealiasing mask applied to the explicit part. ``rest(t, X)`` takes the state
    itself, or, with ``inputs`` (linear SymPy expressions of the fields, from
    :func:`split_spectral`), ``X[:, j] = inputs[j]`` formed from the spectrum — then
    ``rest`` may be ``None`` if there is nothing to evaluate. ``forcing`` (B, *state), a
    term constant in time, is added to R.
    """
    return spectral_solve(None, rest, diffusivity, domain, y0, times, step, bound, progress,
                          out_dtype, inputs=inputs, forcing=forcing)


def spectral_solve(tableau: ButcherTableau | None, rest, diffusivity: dict[str, torch.Tensor],
                   domain, y0: torch.Tensor, times: torch.Tensor, step: float,
                   bound: float | None = None, progress: Progress | None = None,
                   out_dtype: torch.dtype | None = None, *,
                   inputs: Sequence[sympy.Expr] | None = None,
                   forcing: torch.Tensor | None = None) -> Outcome:
    """Integrate ``u_t = c·Δu + R`` on a periodic grid in Fourier space: CN/FE
    (:func:`spectral_cn`) when ``tableau`` is ``None``, else the explicit Runge–Kutta
    method ``tableau`` in Lawson's integrating-factor form (:func:`_lawson_step`). The
    arguments are those of :func:`spectral_cn`. ``step`` is the largest step: each output
    interval is cut into ``ceil(Δt/step)`` equal steps.
    """
    nd = domain.ndim
    dims = tuple(range(-nd, 0))
    device, dtype = y0.device, y0.dtype
    wn = _Wavenumbers(domain, device, dtype)
    B, nvar = y0.shape[0], y0.shape[1]
    names = list(diffusivity)
    c = torch.stack([torch.as_tensor(diffusivity[v], dtype=dtype, device=device).expand(B)
                     for v in names], dim=1)                         # (B, nvar)
    cl = c.reshape(B, nvar, *([1] * nd)) * wn.lam                    # symbol of c·Δ
    grid = tuple(domain.shape)
    mask = wn.dealias
    if inputs is not None:
        mult = wn.multipliers(inputs, names)                        # (n_in, nvar, *k)
        mult1 = mult[:, 0].contiguous()     # one field: a plain broadcast product

        def physical(uh):
            if nvar == 1:
                return torch.fft.irfftn(uh * mult1, s=grid, dim=dims)
            return torch.fft.irfftn((uh.unsqueeze(1) * mult).sum(2), s=grid, dim=dims)
    else:
        def physical(uh):
            return torch.fft.irfftn(uh, s=grid, dim=dims)
    fh = torch.fft.rfftn(forcing, dim=dims) * mask if forcing is not None else None

    def explicit(t: float, uh):
        """D·R̂ at (t, û) (forcing included), or None when R vanishes."""
        r = None
        if rest is not None:
            r = torch.fft.rfftn(rest(torch.tensor(t, dtype=torch.float64), physical(uh)),
                                dim=dims) * mask
        if fh is None:
            return r
        return fh if r is None else r.add_(fh)

    if tableau is None:
        def advance(uh, t, h, n):
            lhs = 1 - 0.5 * h * cl
            rhs_lin = 1 + 0.5 * h * cl
            for m in range(n):
                r = explicit(t + m * h, uh)
                new = rhs_lin * uh
                if r is not None:
                    new += h * r
                uh = new / lhs
                yield uh
    else:
        def advance(uh, t, h, n):
            factors = _lawson_factors(tableau, h, cl)
            for m in range(n):
                uh = _lawson_step(tableau, explicit, factors, t + m * h, h, uh)
                yield uh

    guard = _Guard(B, bound, device)
    tlist = [float(x) for x in times]
    out = torch.empty((len(tlist),) + tuple(y0.shape), dtype=out_dtype or dtype, device=device)
    out[0] = y0
    uh = torch.fft.rfftn(y0, dim=dims)
    span = tlist[-1] - tlist[0]
    steps = evaluations = 0
    stages = 1 if tableau is None else len(tableau.c)
    for j in range(1, len(tlist)):
        ta, tb = tlist[j - 1], tlist[j]
        n = max(1, math.ceil((tb - ta) / step - 1e-9))
        h = (tb - ta) / n
        for m, uh in enumerate(advance(uh, ta, h, n)):
            steps += 1
            evaluations += stages
            if progress is not None and n >= 100 and m % (n // 50) == 0:
                progress((ta + (m + 1) * h - tlist[0]) / span)
        y = torch.fft.irfftn(uh, s=grid, dim=dims)
        dead = guard.bad(y)
        if bool(dead.any()):
            guard.kill(dead, tb)
            y = guard.scrub(y)
            uh = torch.fft.rfftn(y, dim=dims)
        out[j] = y
        if progress is not None:
            progress((tb - tlist[0]) / span if span else 1.0)
    return Outcome(guard.mark_outputs(out, times), guard.dead_time, steps, evaluations)


def _lawson_factors(tab: ButcherTableau, h: float, cl: torch.Tensor) -> dict:
    """``exp(τ·h·cΛ)`` for every τ a Lawson step of ``tab`` needs (c_i, c_i − c_j, 1 − c_j)."""
    taus = {ci for ci, _ in tab.stages} | {1.0 - tab.c[i] for i, _ in tab.weights} | {
        ci - tab.c[j] for ci, row in tab.stages for j, _ in row}
    return {tau: torch.exp((tau * h) * cl) for tau in taus if tau != 0.0}


def _lawson_step(tab: ButcherTableau, explicit, factors: dict, t: float, h: float, uh):
    """One step of Lawson's integrating-factor Runge–Kutta method (Lawson, SIAM J. Numer.
    Anal. 4, 1967): the tableau applied to ``v = exp(−t·cΛ)·û``, for which diffusion is
    exact and only the explicit part is integrated,

        U_i = e^{c_i hL} û + h Σ_j a_ij e^{(c_i − c_j) hL} N_j,   N_j = N(t + c_j h, U_j),
        û₁ = e^{hL} û + h Σ_i b_i e^{(1 − c_i) hL} N_i,            L = c·Λ.

    It has the order of the tableau for a non-stiff explicit part (Hochbruck & Ostermann,
    Acta Numerica 19, 2010, §2.4); the step is bounded by the explicit part alone (an
    advective CFL condition), however large c·|k|²·h.
    """
    def e(tau, x):
        return x if tau == 0.0 else factors[tau] * x

    ks: list[torch.Tensor | None] = []
    for ci, row in tab.stages:
        ui = e(ci, uh)
        for j, aij in row:
            if ks[j] is not None:
                ui = ui + (h * aij) * e(ci - tab.c[j], ks[j])
        ks.append(explicit(t + ci * h, ui))
    out = e(1.0, uh)
    for i, bi in tab.weights:
        if ks[i] is not None:
            out = out + (h * bi) * e(1.0 - tab.c[i], ks[i])
    return out
