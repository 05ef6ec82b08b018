"""The SymPy → torch compiler: gradients, bounded parameters, batched parameters, the way
back to SymPy, user functions, and dtype handling."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import sympy
import torch
from torch.func import functional_call

import physml
from physml.symbolic import functions as fn_registry

LIBRARY = Path(__file__).resolve().parents[1] / "equations"

RD_8 = """
system rd8
domain 8 x 8 over [-1, 1] x [-1, 1] periodic
field u, v
param a = 1e-3 in (0, inf)
param b = 5e-3 in (0, inf)
param k = 5e-3
dynamics:
    d(u)/dt = a*lap(u) + u - u^3 - k - v
    d(v)/dt = b*lap(v) + u - v
"""

GATED = """
system gated "piecewise gate, a scar mask, Neumann walls"
domain 8 x 6 over [0, 8] x [0, 6] neumann
field v, h
param sigma = 1 in (0, inf)
param tau = 2 in (0, 10)
param v_gate = 0.5 in [0, 1]
mask scar = x > 3 and x < 5 and y > 2
dynamics:
    let healthy = 1 - scar
    d(v)/dt = healthy*(sigma*lap(v) + h*v^2*(1 - v)/tau) + dx(v)*dy(h)
    d(h)/dt = piecewise((1 - h)/tau, v < v_gate; -h/(2*tau))
"""

WALLS = """
system walls "dirichlet and periodic axes, fourth-order stencil"
domain 10 x 8 over [0, 1] x [0, 2] stencil central4
boundary x dirichlet 0.5, y periodic
field u
param c = 2 in (0, 5]
dynamics:
    d(u)/dt = c*lap(u) - u*dx(u) + sin(x)*dyy(u)
"""


def _library(name):
    return physml.load_spec(LIBRARY / f"{name}.phy")


def _rand(*shape, seed=0, lo=-1.0, hi=1.0):
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=torch.float64)


# ---------------------------------------------------------------------------------------
# Gradients

GRADCHECK_SYSTEMS = {
    "pendulum": (lambda: _library("damped_pendulum"), (3, 2)),
    "reaction_diffusion_8x8": (lambda: physml.parse_spec(RD_8), (2, 2, 8, 8)),
    "piecewise_mask": (lambda: physml.parse_spec(GATED), (2, 2, 8, 6)),
    "dirichlet_central4": (lambda: physml.parse_spec(WALLS), (2, 1, 10, 8)),
}


@pytest.mark.parametrize("name", sorted(GRADCHECK_SYSTEMS))
def test_gradcheck_wrt_state_and_learnable_parameters(name, float64):
    make, shape = GRADCHECK_SYSTEMS[name]
    F = physml.compile_dynamics(make(), learn="all")
    names = [f"raw.{n}" for n in F.learnable]
    assert names, "every system here has parameters"
    raws = [F.raw[n].detach().clone().requires_grad_(True) for n in F.learnable]
    X = _rand(*shape, seed=1, lo=0.0, hi=1.0).requires_grad_(True)
    t = torch.tensor(0.3)

    def f(X, *raws):
        return functional_call(F, dict(zip(names, raws)), (t, X))

    assert torch.autograd.gradcheck(f, (X, *raws), eps=1e-6, atol=1e-7, rtol=1e-6)
    # The gradient w.r.t. every learnable parameter is used (non-zero somewhere).
    out = f(X, *raws)
    grads = torch.autograd.grad(out.pow(2).sum(), raws, allow_unused=True)
    used = [n for n, g in zip(F.learnable, grads) if g is not None and float(g.abs()) > 0]
    if name == "piecewise_mask":  # the threshold of a discontinuous gate has no gradient
        assert set(used) == {"sigma", "tau"}
    else:
        assert set(used) == set(F.learnable)


# ---------------------------------------------------------------------------------------
# Bounded parameters

BOUNDED = """
system bounded
state q
param p = 0.5 in {bounds}
dynamics:
    d(q)/dt = p*q
"""

# (bounds, default, target the loss pulls towards, the bound it ends near)
BOUND_CASES = [
    ("(0, 1)", 0.5, 5.0, 1.0), ("(0, 1)", 0.5, -5.0, 0.0),
    ("[0, 1]", 0.5, 5.0, 1.0), ("[0, 1]", 0.5, -5.0, 0.0),
    ("(0.2, 0.7]", 0.5, -5.0, 0.2),
    ("(0, inf)", 0.5, -5.0, 0.0), ("[0.25, inf)", 0.5, -5.0, 0.25),
    ("(-inf, 1)", 0.5, 5.0, 1.0), ("(-inf, 1]", 0.5, 5.0, 1.0),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bounds,default,target,end", BOUND_CASES)
def test_bounded_parameters_stay_inside_under_adam(bounds, default, target, end, dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        spec = physml.parse_spec(BOUNDED.format(bounds=bounds))
        F = physml.compile_dynamics(spec, learn="all")
        p = spec.system.param("p")
        opt = torch.optim.Adam(F.parameters(), lr=0.1)
        X = torch.ones(4, 1)
        for _ in range(1000):
            opt.zero_grad()
            value = F.param_values()["p"]
            loss = (value - target) ** 2 + 1e-3 * F(torch.tensor(0.0), X).pow(2).mean()
            loss.backward()
            opt.step()
        value = float(F.param_values()["p"].detach())
        assert math.isfinite(float(F.raw["p"].detach()))
        assert p.contains(value), f"{value!r} left {p.bounds_text()}"
        assert abs(value - end) < 1e-2, f"{value} did not approach the bound {end}"
        # The symbolic view and the forward pass see the same, admissible value.
        assert p.contains(float(F.sympy()[0].rhs.coeff(sympy.Symbol("q"))))
    finally:
        torch.set_default_dtype(old)


def test_open_bounds_are_never_reached_even_far_out():
    from physml.symbolic.compiler import to_constrained
    from physml.symbolic.spec import Param

    cases = [Param("a", 0.5, 0.0, 1.0), Param("b", 1.0, 0.5, math.inf),
             Param("c", 0.0, -math.inf, 2.0)]
    for dtype in (torch.float32, torch.float64):
        for raw in (-1e4, -800.0, -50.0, 50.0, 800.0, 1e4):
            for p in cases:
                v = float(to_constrained(torch.tensor(raw, dtype=dtype), p))
                assert p.contains(v), (p.name, raw, dtype, v)


def test_learn_start_values_round_trip(float64):
    spec = _library("damped_pendulum")
    F = physml.compile_dynamics(spec, learn={"T0": 7.5, "alpha": 0.0})
    vals = {k: v.detach() for k, v in F.param_values().items()}
    assert float(vals["T0"]) == pytest.approx(7.5, rel=1e-12)
    assert float(vals["alpha"]) == pytest.approx(0.0, abs=1e-11)  # closed lower bound
    with pytest.raises(ValueError, match="outside"):
        physml.compile_dynamics(spec, learn={"T0": -1.0})


# ---------------------------------------------------------------------------------------
# Per-sample parameters

@pytest.mark.parametrize("name,varying", [
    ("damped_pendulum", {"T0": [4.0, 6.0, 9.0], "alpha": [0.0, 0.2, 0.7]}),
    ("lotka_volterra", {"alpha": [0.25, 0.5, 1.0], "gamma": [1.0, 0.75, 0.25]}),
    ("gray_scott", {"F": [0.037, 0.030, 0.039], "k": [0.060, 0.062, 0.058]}),
    ("navier_stokes", {"fa": [1.0, 1.0, 2.0], "fd": [1.0, 2.0, 1.0], "nu": [1e-3, 2e-3, 5e-4]}),
])
def test_set_batch_params_equals_compiling_per_value(name, varying, float64):
    spec = _library(name)
    F = physml.compile_dynamics(spec, fold_constants=False)
    X = _rand(3, *spec.system.state_shape(), seed=2, lo=0.0, hi=1.0)
    t = torch.tensor(0.0)
    F.set_batch_params({k: torch.tensor(v) for k, v in varying.items()})
    batched = F(t, X)
    for i in range(3):
        single = physml.compile_dynamics(spec, values={k: v[i] for k, v in varying.items()})
        assert torch.allclose(batched[i], single(t, X[i:i + 1])[0], atol=1e-12, rtol=1e-12)
    # The samples really differ (the parameters reach the output).
    assert not torch.allclose(batched[0], physml.compile_dynamics(spec, values={
        k: v[1] for k, v in varying.items()})(t, X[:1])[0], atol=1e-9)
    # Extra leading dimensions broadcast against the per-sample values.
    assert torch.allclose(F(t, X.expand(2, *X.shape)), batched.expand(2, *batched.shape))
    F.set_batch_params(None)
    assert torch.allclose(F(t, X), physml.compile_dynamics(spec)(t, X), atol=1e-12)


def test_set_batch_params_refuses_folded_constants(float64):
    F = physml.compile_dynamics(_library("damped_pendulum"))
    with pytest.raises(ValueError, match="fold_constants=False"):
        F.set_batch_params({"T0": torch.tensor([5.0, 6.0])})
    with pytest.raises(KeyError):
        physml.compile_dynamics(_library("damped_pendulum"), fold_constants=False) \
            .set_batch_params({"T1": torch.tensor([5.0])})


# ---------------------------------------------------------------------------------------
# The way back to SymPy

def test_sympy_gives_equations_with_the_fitted_values(float64):
    spec = _library("damped_pendulum")
    F = physml.compile_dynamics(spec, learn=["T0", "alpha"])
    with torch.no_grad():
        F.raw["T0"].fill_(1.3)
        F.raw["alpha"].fill_(-0.4)
    vals = {k: float(v.detach()) for k, v in F.param_values().items()}
    assert vals["T0"] != pytest.approx(6.0)
    eqs = F.sympy(digits=15)
    assert all(isinstance(e, sympy.Eq) for e in eqs) and len(eqs) == 2
    t = sympy.Symbol("t")
    assert eqs[0].lhs == sympy.Derivative(sympy.Function("theta")(t), t)
    assert {s.name for e in eqs for s in e.rhs.free_symbols} <= {"theta", "omega"}
    # The printed equations evaluate to what the module computes.
    X = torch.tensor([[0.3, -0.2]])
    out = F(torch.tensor(0.0), X)[0]
    th, om = sympy.symbols("theta omega")
    for i, e in enumerate(eqs):
        assert float(e.rhs.subs({th: 0.3, om: -0.2})) == pytest.approx(float(out[i]), rel=1e-12)
    # Symbols stay when asked.
    symbolic = F.sympy(substitute=False)
    assert sympy.Symbol("T0") in symbolic[1].rhs.free_symbols


# ---------------------------------------------------------------------------------------
# Extending the language

@pytest.fixture
def softplus_registered():
    name = "softplus"
    assert name not in fn_registry.FUNCTIONS
    physml.register_function(name, sympy.Function(name), torch.nn.functional.softplus)
    yield name
    fn_registry.FUNCTIONS.pop(name, None)
    fn_registry.TORCH_FUNCTIONS.pop(name, None)


def test_register_function_end_to_end(softplus_registered, float64):
    spec = physml.parse_spec("""
system sp
domain 8 x 8 over [0, 1] x [0, 1] periodic
field u
param s = 2 in (0, inf)
dynamics:
    d(u)/dt = s*softplus(u) + lap(softplus(u))
""")
    F = physml.compile_dynamics(spec, learn=["s"])
    u = _rand(2, 1, 8, 8, seed=3)
    out = F(torch.tensor(0.0), u)
    sp = torch.nn.functional.softplus(u)
    lap = (sp.roll(1, -1) + sp.roll(-1, -1) + sp.roll(1, -2) + sp.roll(-1, -2) - 4 * sp) * 64
    assert torch.allclose(out, 2 * sp + lap, atol=1e-10)
    assert "softplus" in str(F.sympy()[0].rhs)
    out.sum().backward()
    assert F.raw["s"].grad is not None
    # Unregistered functions stay errors with a hint.
    with pytest.raises(physml.SpecError):
        physml.parse_spec("system q\nstate a\ndynamics:\n    d(a)/dt = softplux(a)\n")


def test_register_function_rejects_bad_names():
    with pytest.raises(ValueError):
        physml.register_function("lap", sympy.Function("lap"), torch.sin)
    with pytest.raises(ValueError):
        physml.register_function("_hidden", sympy.Function("_hidden"), torch.sin)


# ---------------------------------------------------------------------------------------
# CSE and constant folding

CSE_SPEC = """
system shared
state a, b, c
param p = 1.5 in (0, inf)
param q = -0.25
let r = sqrt(a^2 + b^2 + p)
dynamics:
    d(a)/dt = -a/r + q*sin(a*b)*exp(-r) + max(a, b)
    d(b)/dt = -b/r + q*sin(a*b)*cos(c)^2 + piecewise(1/p, a > b; -1)
    d(c)/dt = (a*b + p)^3 - (a*b + p)^(1/2)*c/(1 + r^2) + abs(c)*sign(a)
"""


def test_cse_and_folding_do_not_change_results(float64):
    spec = physml.parse_spec(CSE_SPEC)
    X = _rand(64, 3, seed=4, lo=0.1, hi=2.0)  # a*b + p > 0 under the square root
    t = torch.tensor(0.0)
    folded = physml.compile_dynamics(spec)(t, X)
    unfolded = physml.compile_dynamics(spec, fold_constants=False)(t, X)
    learned = physml.compile_dynamics(spec, learn="all")(t, X)
    assert torch.allclose(folded, unfolded, atol=1e-13, rtol=1e-13)
    assert torch.allclose(folded, learned, atol=1e-12, rtol=1e-12)
    # Independent evaluation: SymPy's own numeric substitution, no CSE, no torch.
    system = spec.system
    a, b, c = sympy.symbols("a b c")
    subs_p = {sympy.Symbol(k): v for k, v in system.param_values.items()}
    r = system.lets[0].expr.xreplace(subs_p)
    for i in range(0, 64, 9):
        point = dict(zip((a, b, c), (sympy.Float(float(x), 20) for x in X[i])))
        for j, eq in enumerate(system.equations):
            expr = eq.rhs.xreplace({sympy.Symbol("r"): r}).xreplace(subs_p)
            want = float(expr.xreplace(point).evalf(20))
            assert float(folded[i, j]) == pytest.approx(want, rel=1e-12, abs=1e-12)


# ---------------------------------------------------------------------------------------
# dtype and device

@pytest.mark.parametrize("name", ["damped_pendulum", "damped_wave", "navier_stokes",
                                  "mitchell_schaeffer"])
def test_module_double_matches_a_float64_compilation(name):
    spec = _library(name)
    old = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float32)
        F32 = physml.compile_dynamics(spec, fold_constants=False)
        X = _rand(2, *spec.system.state_shape(), seed=5, lo=0.0, hi=1.0)
        out32 = F32(torch.tensor(1.0), X.float())
        assert out32.dtype == torch.float32
        F64 = F32.double()
        out64 = F64(torch.tensor(1.0, dtype=torch.float64), X)
        assert out64.dtype == torch.float64
        torch.set_default_dtype(torch.float64)
        ref = physml.compile_dynamics(spec, fold_constants=False)(torch.tensor(1.0), X)
        scale = max(1.0, float(ref.abs().max()))
        # Buffers converted by .double() carry float64-accurate values, not float32 ones.
        assert float((out64 - ref).abs().max()) <= 1e-12 * scale
        assert float((out32.double() - ref).abs().max()) <= 1e-4 * scale
        # And back to float32.
        back = F64.float()(torch.tensor(1.0), X.float())
        assert torch.allclose(back, out32, atol=1e-6 * scale, rtol=1e-5)
    finally:
        torch.set_default_dtype(old)


def test_state_dict_holds_learnable_and_fixed_parameters(float64):
    F = physml.compile_dynamics(_library("reaction_diffusion"), learn=["a", "b"])
    keys = set(F.state_dict())
    assert {"raw.a", "raw.b", "fixed_k"} <= keys
    assert not any(k.startswith(("ops.", "coord_")) for k in keys)
    assert sum(p.numel() for p in F.parameters()) == 2


def test_outputs_broadcast_when_an_equation_is_constant(float64):
    spec = physml.parse_spec("""
system const
domain 6 x 4 over [0, 1] x [0, 1] periodic
field u, v
param g = 2
dynamics:
    d(u)/dt = g
    d(v)/dt = x + 0*u
""")
    F = physml.compile_dynamics(spec)
    X = _rand(3, 2, 6, 4, seed=6)
    out = F(torch.tensor(0.0), X)
    assert out.shape == X.shape
    assert torch.all(out[:, 0] == 2.0)
    x = torch.tensor(spec.system.domain.mesh()[0])
    assert torch.allclose(out[:, 1], x.expand(3, 6, 4))
    np.testing.assert_allclose(out[:, 1, :, 0].numpy()[0], np.arange(6) / 6)


def test_numeric_coefficients_and_pure_quotients():
    # Regression: a numerator made only of a coefficient (2/(x+3)) once compiled as 1/(x+3);
    # numeric factors such as π ride on the additions.
    spec = physml.parse_spec(
        "system q\nstate x, y\nparam a = 2\ndynamics:\n"
        "    d(x)/dt = 2/(x + 3) - pi*y + 5\n    d(y)/dt = -3*x - a*y - x*y/4\n")
    F = physml.compile_dynamics(spec).double()
    X = torch.tensor([[1.0, 2.0], [-0.5, 0.25]], dtype=torch.float64)
    x, y = X[:, 0], X[:, 1]
    ref = torch.stack([2 / (x + 3) - math.pi * y + 5, -3 * x - 2 * y - x * y / 4], dim=-1)
    assert torch.allclose(F(torch.tensor(0.0), X), ref, rtol=1e-14, atol=1e-14)


def test_half_bounded_parameters_take_steps_relative_to_their_size():
    # p = scale·softplus(r) with scale = the initial value: the same Adam step moves a
    # wave speed of 330 and one of 0.33 (other units) by the same fraction.
    src = ("system s\nstate x\nparam c = {c} in (0, inf)\n"
           "dynamics:\n    d(x)/dt = -c*x\n")
    moved = []
    for c in (330.0, 0.33):
        F = physml.compile_dynamics(physml.parse_spec(src.format(c=c)), learn=["c"])
        assert float(F.param_values()["c"].detach()) == pytest.approx(c, rel=1e-6)
        opt = torch.optim.Adam(F.parameters(), lr=1e-2)
        F.param_values()["c"].backward()
        opt.step()
        moved.append(float(F.param_values()["c"].detach()) / c)
    assert moved[0] == pytest.approx(moved[1], rel=1e-6)
    assert 0.99 < moved[0] < 0.997  # a fraction of a percent, not 0.01 in absolute terms


def test_scaled_network_starts_at_zero_and_fits_its_scales():
    from physml.models import Scaled

    net = Scaled(torch.nn.Sequential(torch.nn.Conv2d(2, 8, 1), torch.nn.Tanh(),
                                     torch.nn.Conv2d(8, 2, 1)), channels=2)
    frames = torch.randn(4, 5, 2, 6, 6, dtype=torch.float64)
    frames[:, :, 1] *= 100.0
    net = net.double()
    assert torch.equal(net(frames[:, 0]), torch.zeros_like(frames[:, 0]))
    net.fit_scales(frames, dt=0.5)
    rms = frames.transpose(0, 2).flatten(1).pow(2).mean(1).sqrt()
    d = ((frames[:, 1:] - frames[:, :-1]) / 0.5).transpose(0, 2).flatten(1).pow(2).mean(1).sqrt()
    assert torch.allclose(net.in_scale, rms) and torch.allclose(net.out_scale, d)
