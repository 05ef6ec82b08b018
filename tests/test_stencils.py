"""Spatial operators converge at the order their stencil table declares.

The parametrisation is built from :data:`physml.symbolic.STENCILS`, so a new stencil
family is tested for free. Each case fits the slope of log(max error) against log(h) over
several resolutions (as diffrax's ``test_ode_order``) and compares it with the declared
order. Test functions are chosen to match the boundary condition on the cell-centred
grid of :class:`~physml.symbolic.spec.Domain`: even about the walls for Neumann, ``g`` plus
an odd function for Dirichlet ``g``, smooth and periodic (not band-limited) for periodic.
"""
from __future__ import annotations

from fractions import Fraction
from math import factorial

import numpy as np
import pytest
import sympy
import torch

import physml
from physml.symbolic import STENCILS, GridOperators
from physml.symbolic.spec import Boundary, Domain

SYM = sympy.symbols("x y z")
FD_FAMILIES = [name for name, fam in STENCILS.items() if not fam.spectral]
SPECTRAL_FAMILIES = [name for name, fam in STENCILS.items() if fam.spectral]
BOUNDS = ((0.3, 1.3), (-0.5, 1.5), (1.0, 2.5))  # unequal boxes catch axis/spacing mix-ups
DIRICHLET_VALUE = 0.7


def _factor(kind: str, s):
    """1-D factor of the test function in the reduced coordinate s = (x - a) / L."""
    if kind == "periodic":
        return sympy.exp(sympy.sin(2 * sympy.pi * s))
    if kind == "neumann":  # even about s = 0 and s = 1: zero normal derivative at the walls
        return sympy.exp(sympy.cos(sympy.pi * s))
    if kind == "dirichlet":  # odd about both walls (times the even factor)
        return sympy.sin(sympy.pi * s) * sympy.exp(sympy.cos(sympy.pi * s))
    raise ValueError(kind)


def _test_function(kind: str, ndim: int):
    u = sympy.Integer(1)
    for k in range(ndim):
        a, b = BOUNDS[k]
        u = u * _factor(kind, (SYM[k] - a) / (b - a))
    return u + (DIRICHLET_VALUE if kind == "dirichlet" else 0)


def _second(u, g):
    return u + (u - g) ** 3


# operator name -> (ndim, exact derivative of u, how to apply it, which table sets its order)
OPERATORS = {
    "dx": (1, lambda u, g: sympy.diff(u, SYM[0]), lambda ops, u, g: ops.derivative(u, 0, 1), "d1"),
    "dxx": (1, lambda u, g: sympy.diff(u, SYM[0], 2), lambda ops, u, g: ops.derivative(u, 0, 2), "d2"),
    "dy": (2, lambda u, g: sympy.diff(u, SYM[1]), lambda ops, u, g: ops.derivative(u, 1, 1), "d1"),
    "dyy": (2, lambda u, g: sympy.diff(u, SYM[1], 2), lambda ops, u, g: ops.derivative(u, 1, 2), "d2"),
    "lap2": (2, lambda u, g: sum(sympy.diff(u, s, 2) for s in SYM[:2]),
             lambda ops, u, g: ops.laplacian(u), "d2"),
    "dz": (3, lambda u, g: sympy.diff(u, SYM[2]), lambda ops, u, g: ops.derivative(u, 2, 1), "d1"),
    "lap3": (3, lambda u, g: sum(sympy.diff(u, s, 2) for s in SYM),
             lambda ops, u, g: ops.laplacian(u), "d2"),
    # div(u, w) with w = u + (u - g)³, which satisfies the same boundary condition as u.
    "div2": (2, lambda u, g: sympy.diff(u, SYM[0]) + sympy.diff(_second(u, g), SYM[1]),
             lambda ops, u, g: ops.divergence(u, _second(u, g)), "d1"),
}
# Resolutions per dimension (kept small in 3-D so the whole file runs in a few seconds).
RESOLUTIONS = {1: (16, 32, 64, 128), 2: (24, 48, 96), 3: (16, 24, 32, 48)}


def _domain(kind, ndim, n, stencil):
    bc = Boundary(kind, DIRICHLET_VALUE if kind == "dirichlet" else 0.0)
    return Domain((n,) * ndim, BOUNDS[:ndim], (bc,) * ndim, stencil)


def _errors(kind, op, stencil):
    ndim, exact, apply, _ = OPERATORS[op]
    u_sym = _test_function(kind, ndim)
    f_u = sympy.lambdify(SYM[:ndim], u_sym, "numpy")
    g = DIRICHLET_VALUE if kind == "dirichlet" else 0.0
    f_d = sympy.lambdify(SYM[:ndim], exact(u_sym, g), "numpy")
    hs, errs = [], []
    for n in RESOLUTIONS[ndim]:
        dom = _domain(kind, ndim, n, stencil)
        mesh = dom.mesh()
        ops = GridOperators(dom).double()
        u = torch.from_numpy(np.broadcast_to(f_u(*mesh), dom.shape).copy())
        got = apply(ops, u[None, None], g).squeeze(0).squeeze(0).numpy()
        want = np.broadcast_to(f_d(*mesh), dom.shape)
        hs.append(dom.spacing[0])
        errs.append(float(np.abs(got - want).max()))
    return np.array(hs), np.array(errs)


CASES = [(kind, op, fam) for fam in FD_FAMILIES for kind in ("periodic", "neumann", "dirichlet")
         for op in OPERATORS]


@pytest.mark.parametrize("kind,op,stencil", CASES)
def test_convergence_order(kind, op, stencil):
    hs, errs = _errors(kind, op, stencil)
    table = getattr(STENCILS[stencil], OPERATORS[op][3])
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert abs(slope - table.order) <= 0.3, \
        f"{stencil} {op} ({kind}): slope {slope:.2f}, declared order {table.order}, errors {errs}"
    assert errs[-1] < errs[0]


@pytest.mark.parametrize("stencil", FD_FAMILIES)
def test_stencil_tables_are_consistent(stencil):
    """Taylor moments: Σ c_j j^m = m!·[m = derivative] for m < derivative + order, and the
    next moment does not vanish (so the declared order is the true one)."""
    fam = STENCILS[stencil]
    for table in (fam.d1, fam.d2):
        w = table.width
        offsets = range(-w, w + 1)
        for m in range(table.derivative + table.order):
            moment = sum(c * Fraction(j) ** m for c, j in zip(table.coefficients, offsets))
            assert moment == (factorial(m) if m == table.derivative else 0), (stencil, m)
        m = table.derivative + table.order
        assert sum(c * Fraction(j) ** m for c, j in zip(table.coefficients, offsets)) != 0
    if fam.laplacian_2d is not None:
        kern = np.array([[float(v) for v in row] for row in fam.laplacian_2d])
        assert abs(kern.sum()) < 1e-15
        i, j = np.meshgrid([-1, 0, 1], [-1, 0, 1], indexing="ij")
        assert np.isclose((kern * i ** 2).sum(), 2) and np.isclose((kern * j ** 2).sum(), 2)
        assert np.isclose((kern * i * j).sum(), 0)


def test_isotropic_laplacian_is_the_nine_point_kernel_and_second_order():
    """On a square grid (hx = hy) ``isotropic`` uses the 9-point kernel, second order."""
    u_sym = sympy.exp(sympy.sin(2 * sympy.pi * SYM[0])) * sympy.cos(2 * sympy.pi * SYM[1])
    lap_sym = sympy.diff(u_sym, SYM[0], 2) + sympy.diff(u_sym, SYM[1], 2)
    f_u, f_l = (sympy.lambdify(SYM[:2], e, "numpy") for e in (u_sym, lap_sym))
    errs = {}
    for stencil in ("isotropic", "central2"):
        hs, es = [], []
        for n in (16, 32, 64):
            dom = Domain((n, n), ((0.0, 1.0),) * 2, (Boundary("periodic"),) * 2, stencil)
            u = torch.from_numpy(f_u(*dom.mesh()))
            es.append(float(np.abs(GridOperators(dom).double().laplacian(u).numpy()
                                   - f_l(*dom.mesh())).max()))
            hs.append(dom.spacing[0])
        slope = np.polyfit(np.log(hs), np.log(es), 1)[0]
        assert abs(slope - 2) <= 0.3, (stencil, slope)
        errs[stencil] = es
    assert not np.allclose(errs["isotropic"], errs["central2"], rtol=1e-3)
    # Impulse response: Patra & Karttunen's (1/6h²)[[1,4,1],[4,-20,4],[1,4,1]].
    dom = Domain((8, 8), ((0.0, 4.0),) * 2, (Boundary("periodic"),) * 2, "isotropic")
    delta = torch.zeros(8, 8, dtype=torch.float64)
    delta[3, 3] = 1.0
    got = GridOperators(dom).double().laplacian(delta) * dom.spacing[0] ** 2
    kernel = np.array([[1, 4, 1], [4, -20, 4], [1, 4, 1]]) / 6
    assert np.allclose(got[2:5, 2:5].numpy(), kernel, atol=1e-14)
    assert float(got.abs().sum()) == pytest.approx(40 / 6, abs=1e-12)


# ---------------------------------------------------------------------------------------
# Spectral operators

def _bandlimited(ndim):
    x = SYM
    if ndim == 2:
        return (sympy.sin(2 * sympy.pi * x[0]) * sympy.cos(4 * sympy.pi * x[1])
                + sympy.cos(6 * sympy.pi * x[0] + 2 * sympy.pi * x[1]) + 0.5)
    return (sympy.sin(2 * sympy.pi * x[0]) * sympy.cos(2 * sympy.pi * x[1])
            * sympy.sin(4 * sympy.pi * x[2]) + sympy.cos(2 * sympy.pi * (x[0] - x[2])))


@pytest.mark.parametrize("stencil", SPECTRAL_FAMILIES)
@pytest.mark.parametrize("ndim", [2, 3])
def test_spectral_is_exact_on_band_limited_functions(stencil, ndim):
    n = 16
    dom = Domain((n,) * ndim, ((0.0, 1.0),) * ndim, (Boundary("periodic"),) * ndim, stencil)
    ops = GridOperators(dom).double()
    u_sym = _bandlimited(ndim)
    mesh = dom.mesh()
    u = torch.from_numpy(sympy.lambdify(SYM[:ndim], u_sym, "numpy")(*mesh))
    cases = [(ops.laplacian(u), sum(sympy.diff(u_sym, s, 2) for s in SYM[:ndim]))]
    for k in range(ndim):
        cases.append((ops.derivative(u, k, 1), sympy.diff(u_sym, SYM[k])))
        cases.append((ops.derivative(u, k, 2), sympy.diff(u_sym, SYM[k], 2)))
    for got, exact in cases:
        want = np.broadcast_to(sympy.lambdify(SYM[:ndim], exact, "numpy")(*mesh), dom.shape)
        scale = max(1.0, np.abs(want).max())
        assert np.abs(got.numpy() - want).max() < 1e-10 * scale


def test_inv_lap_inverts_the_spectral_laplacian():
    dom = Domain((16, 12), ((0.0, 1.0), (0.0, 2.0)), (Boundary("periodic"),) * 2, "spectral")
    ops = GridOperators(dom).double()
    g = torch.Generator().manual_seed(0)
    f = torch.rand(4, 16, 12, generator=g, dtype=torch.float64)
    f0 = f - f.mean(dim=(-2, -1), keepdim=True)
    psi = ops.inverse_laplacian(f0)
    assert torch.allclose(ops.laplacian(psi), f0, atol=1e-12, rtol=0)
    assert torch.allclose(psi.mean(dim=(-2, -1)), torch.zeros(4, dtype=torch.float64),
                          atol=1e-13)
    # inv_lap(lap(u)) = u − mean(u), and the mean of f is dropped.
    assert torch.allclose(ops.inverse_laplacian(ops.laplacian(f)), f0, atol=1e-12, rtol=0)
    assert torch.allclose(ops.inverse_laplacian(f), psi, atol=1e-12, rtol=0)
    # Analytic: Δ⁻¹ sin(2πx) = −sin(2πx)/(4π²).
    x, _ = dom.mesh()
    s = torch.from_numpy(np.sin(2 * np.pi * x))
    assert torch.allclose(ops.inverse_laplacian(s), -s / (4 * np.pi ** 2), atol=1e-14, rtol=0)


def test_inv_lap_also_works_with_finite_difference_stencils_on_periodic_grids():
    dom = Domain((16, 16), ((0.0, 1.0), (0.0, 1.0)), (Boundary("periodic"),) * 2, "central2")
    ops = GridOperators(dom).double()
    x, y = dom.mesh()
    s = torch.from_numpy(np.sin(2 * np.pi * x) * np.cos(2 * np.pi * y))
    assert torch.allclose(ops.inverse_laplacian(s), -s / (8 * np.pi ** 2), atol=1e-14, rtol=0)


def test_spectral_needs_a_periodic_domain():
    dom = Domain((8, 8), ((0.0, 1.0),) * 2, (Boundary("neumann"),) * 2, "spectral")
    with pytest.raises(ValueError, match="periodic"):
        GridOperators(dom)


def test_operators_through_the_language_match_grid_operators():
    """A spec's lap/dx compile to the same numbers as GridOperators (float64)."""
    spec = physml.parse_spec(
        "system s\n"
        "domain 16 x 8 over [0, 2] x [0, 1] neumann stencil central4\n"
        "field u\n"
        "dynamics:\n"
        "    d(u)/dt = lap(u) + dx(u) - dyy(u)\n")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        F = physml.compile_dynamics(spec)
        ops = GridOperators(spec.system.domain).double()
        u = torch.rand(2, 1, 16, 8, dtype=torch.float64)
        got = F(torch.tensor(0.0), u)
        want = ops.laplacian(u) + ops.derivative(u, 0, 1) - ops.derivative(u, 1, 2)
        assert torch.allclose(got, want, atol=1e-12, rtol=0)
    finally:
        torch.set_default_dtype(old)
