"""The pseudo-spectral integrators (physml.solve.spectral) on the Navier–Stokes data.

The fast path forms every linear operator term (``vx = dy(inv_lap(-w))``, ``dx(w)``)
from the spectrum the integrator keeps; it must give the numbers of the plain path, which
evaluates the compiled right-hand side on the grid (the integrator before, and what any
term that cannot be formed in Fourier space still goes through).
"""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import sympy
import torch

import physml
from physml.simulation import core, simulate
from physml.solve.spectral import _Wavenumbers, spectral_cn, split_diffusion, split_spectral
from physml.symbolic.compiler import compile_dynamics
from physml.symbolic.functions import div, dx, dxx, dy, dyy, inv_lap, lap
from physml.symbolic.stencils import GridOperators

pytestmark = pytest.mark.usefixtures("one_thread")

NS = ("use navier_stokes\ndata:\n    trajectories {n} train\n    time 0 .. {t1} step {dt}\n"
      "    warmup {warmup}\n    initial w ~ grf(alpha=2.5, tau=7)\n    solver {solver}\n"
      "    seed 0\nenvironments:\n    xi1: fa = 1, fb = 1, fc = 1, fd = 1\n"
      "    xi4: fa = 2, fb = 1, fc = 2, fd = 1\n")


def ns_spec(n=2, t1=0.2, dt=0.1, warmup=0.0, solver="spectral_cn(step=1e-3)"):
    return physml.parse_spec(NS.format(n=n, t1=t1, dt=dt, warmup=warmup, solver=solver))


def plain_spectral_cn(spec):
    """The integrator before linear terms were formed in Fourier space: the compiled
    right-hand side less diffusion, on the grid, in one batch (12 FFTs a step here)."""
    p = core.plan(spec)
    E, n = len(p.envs), dict(spec.data.splits)["train"]
    gen = torch.Generator().manual_seed(core._sub_seed(spec.data.seed, "train"))
    from physml.simulation.samplers import draw_initial
    y0 = draw_initial(spec.data.initial, spec.system.variables, spec.system.domain, n, gen,
                      spec.text).repeat(E, 1, 1, 1)
    coeffs, rest = split_diffusion(spec.system)
    env0 = p.env_params[0]
    f = compile_dynamics(core.lean_system(rest, env0, p.varying), values=env0,
                         fold_constants=False).double()
    f.set_batch_params({k: torch.tensor([e[k] for e in p.env_params],
                                        dtype=torch.float64).repeat_interleave(n)
                        for k in p.varying})
    diff = {v: torch.full((E * n,), float(c.xreplace(
        {sympy.Symbol(k): val for k, val in env0.items()})), dtype=torch.float64)
        for v, c in coeffs.items()}
    with torch.no_grad():
        out = spectral_cn(f, diff, spec.system.domain, y0, p.times,
                          float(spec.data.solver.options()["step"]))
    return out.states.transpose(0, 1).reshape(E, n, len(p.times), *y0.shape[1:])


def test_navier_stokes_split_forms_velocity_and_gradient_in_fourier_space():
    spec = ns_spec()
    p = core.plan(spec)
    split = split_spectral(core.lean_system(spec.system, p.env_params[0], p.varying))
    w = sympy.Symbol("w")
    assert split.inputs == (dy(inv_lap(-w)), -dx(inv_lap(-w)), dx(w), dy(w))
    # The advection reads only those four: w itself is never transformed back.
    assert "w" not in split.explicit.fields and len(split.explicit.fields) == 4
    # The forcing depends on neither w nor t: evaluated once, not at every step.
    (eq,) = split.static.equations
    assert eq.rhs == sympy.Symbol("xi")
    assert float(split.diffusivity["w"]) == pytest.approx(1e-3)


OPERATORS = [dx, dy, dxx, dyy, lap, inv_lap]


@pytest.mark.parametrize("op", OPERATORS, ids=lambda o: o.__name__)
def test_fourier_symbols_match_the_spectral_stencil(op):
    """A term formed in Fourier space equals the compiled operator applied on the grid
    (the spectral stencil: Nyquist dropped in first derivatives, mean in inv_lap)."""
    domain = physml.parse_spec(NS.format(n=1, t1=1, dt=1, warmup=0,
                                         solver="spectral_cn(step=0.1)")).system.domain
    ops = GridOperators(domain, "spectral").double()
    wn = _Wavenumbers(domain, "cpu", torch.float64)
    torch.manual_seed(0)
    u = torch.randn(3, 1, 32, 32, dtype=torch.float64)
    uh = torch.fft.rfftn(u, dim=(-2, -1))
    w = sympy.Symbol("w")
    cases = {dx: lambda a: ops.derivative(a, 0, 1), dy: lambda a: ops.derivative(a, 1, 1),
             dxx: lambda a: ops.derivative(a, 0, 2), dyy: lambda a: ops.derivative(a, 1, 2),
             lap: ops.laplacian, inv_lap: ops.inverse_laplacian}
    # The operator alone, and composed with inv_lap and a coefficient (vx = dy(ψ)).
    for expr, grid in ((op(w), cases[op](u)),
                       (op(inv_lap(-2 * w)), cases[op](ops.inverse_laplacian(-2 * u)))):
        (m,) = wn.multipliers([expr], ["w"])
        got = torch.fft.irfftn(uh * m[0], s=(32, 32), dim=(-2, -1))
        assert (got - grid).abs().max() < 1e-11 * max(1.0, float(grid.abs().max())), expr


def test_fourier_symbol_of_divergence():
    domain = ns_spec().system.domain
    ops = GridOperators(domain, "spectral").double()
    wn = _Wavenumbers(domain, "cpu", torch.float64)
    u = torch.randn(2, 2, 32, 32, dtype=torch.float64)
    a, b = sympy.symbols("a b")
    (m,) = wn.multipliers([div(a, 3 * b)], ["a", "b"])
    uh = torch.fft.rfftn(u, dim=(-2, -1))
    got = torch.fft.irfftn((uh * m).sum(1), s=(32, 32), dim=(-2, -1))
    assert (got - ops.divergence(u[:, 0], 3 * u[:, 1])).abs().max() < 1e-10


def test_fast_navier_stokes_step_matches_the_plain_one():
    """Same scheme, same step, fewer transforms: the same numbers to round-off (the full
    LEADS protocol agrees to 1e-15 relative, benchmarks/results/simulate_ns_cpu.json)."""
    spec = ns_spec(n=3, t1=0.3)
    fast = simulate(spec, dtype=torch.float64)["train"]
    plain = plain_spectral_cn(spec)
    assert fast.shape == plain.shape == (2, 3, 4, 1, 32, 32)
    rel = (fast - plain).flatten(3).norm(dim=-1) / plain.flatten(3).norm(dim=-1)
    assert float(rel.max()) < 1e-13
    assert float((fast[:, :, -1] - fast[:, :, 0]).abs().max()) > 1e-2   # the flow moved


@pytest.mark.parametrize("solver", ["spectral_cn(step=1e-3)", "spectral_rk4(step=0.02)"])
def test_batches_change_no_number(monkeypatch, solver):
    """The CPU integrates 32 trajectories at a time; how the batch is cut changes nothing,
    and the same seed gives the same bytes."""
    spec = ns_spec(n=3, t1=0.1, solver=solver)
    a = simulate(spec)
    assert simulate(spec).hash == a.hash
    monkeypatch.setattr(core, "SPECTRAL_CPU_CHUNK", 2)
    b = simulate(spec)
    assert a.hash == b.hash and torch.equal(a["train"], b["train"])


def test_terms_that_cannot_be_formed_in_fourier_space_stay_on_the_grid():
    """A coefficient that differs between environments inside an operator (dx(k·u)) and
    an operator of a nonlinear expression (dx(u²)) are evaluated by the compiled
    operators; the result is the plain path's."""
    text = ("system burgers\ndomain 32 x 32 over [0, 1] x [0, 1] periodic stencil spectral\n"
            "field u\nparam k = 1\nparam nu = 0.01\ndynamics:\n"
            "    d(u)/dt = nu*lap(u) - 0.5*dx(u^2) + 0.1*dy(k*u) + dy(dx(u))*0.01\n"
            "data:\n    trajectories 2 train\n    time 0 .. 0.1 step 0.05\n"
            "    initial u ~ grf(alpha=2.5, tau=7)\n    solver spectral_cn(step=1e-3)\n"
            "environments:\n    a: k = 1\n    b: k = 2\n")
    spec = physml.parse_spec(text)
    p = core.plan(spec)
    split = split_spectral(core.lean_system(spec.system, p.env_params[0], p.varying))
    u = sympy.Symbol("u")
    assert split.inputs == (u, 0.01 * dy(dx(u)))          # linear, numeric: formed
    assert split.static is None                           # nothing here is constant
    rhs = split.explicit.equations[0].rhs
    assert rhs.has(dx(u ** 2)) and rhs.has(dy(sympy.Symbol("k") * u))
    fast = simulate(spec, dtype=torch.float64)["train"]
    plain = plain_spectral_cn(spec)
    assert float((fast - plain).abs().max() / plain.abs().max()) < 1e-13


def test_spectral_rk4_agrees_with_crank_nicolson_within_its_error():
    """CN/FE at δt = 1e-3 is first order (its error on the LEADS data is ~1e-3 relative);
    RK4 with exact diffusion at δt = 0.02 is 4th order and lands within that error, and
    halving its step changes it by less than 1e-7."""
    cn = simulate(ns_spec(t1=0.5, dt=0.5), dtype=torch.float64)["train"]
    rk = simulate(ns_spec(t1=0.5, dt=0.5, solver="spectral_rk4(step=0.02)"),
                  dtype=torch.float64)["train"]
    rk_half = simulate(ns_spec(t1=0.5, dt=0.5, solver="spectral_rk4(step=0.01)"),
                       dtype=torch.float64)["train"]
    scale = float(rk.abs().max())
    assert float((rk - rk_half).abs().max()) < 1e-7 * scale
    diff = float((rk - cn).abs().max())
    assert 1e-6 * scale < diff < 1e-2 * scale                   # CN/FE's own O(δt) error
