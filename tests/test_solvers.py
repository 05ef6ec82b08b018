"""physml.solve: every registered solver has the order it declares; the differentiable
integrator agrees with the simulator, has correct gradients, and its compiled and
checkpointed forms change nothing.

The order test is built from the registry (diffrax's ``test_ode_order``): a new solver is
tested for free, and must declare step sizes for a new order in ``STEPS``.
"""
from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

import physml
from physml.solve import SOLVERS, ButcherTableau, get_solver, odeint
from physml.solve.batched import adaptive_rk, fixed_step
from physml.solve.differentiable import CHUNK, chunk_size
from physml.solve.spectral import spectral_solve
from physml.solve.tableau import DOPRI5

pytestmark = pytest.mark.usefixtures("one_thread")

# A manufactured smooth, nonlinear, non-autonomous, coupled problem with a known solution
# Y(t) = (cos t, 1/(1 + t²)): f(t, y) = N(y) − N(Y(t)) + Y'(t), N(y) = (y₀y₁, −y₀²).
# (Scalar or linear test problems hide order conditions from order 5 on: Butcher, §3.)
T_END = 2.0


def _exact(t):
    return torch.stack([torch.cos(t), 1 / (1 + t * t)], -1)


def _dexact(t):
    return torch.stack([-torch.sin(t), -2 * t / (1 + t * t) ** 2], -1)


def _nonlinear(y):
    return torch.stack([y[..., 0] * y[..., 1], -y[..., 0] ** 2], -1)


def manufactured(t, y):
    return _nonlinear(y) - _nonlinear(_exact(t)) + _dexact(t)


Y0 = _exact(torch.tensor(0.0, dtype=torch.float64))[None]              # (1, 2)
Y_END = _exact(torch.tensor(T_END, dtype=torch.float64))
T_SPAN = torch.tensor([0.0, T_END], dtype=torch.float64)

# Steps per unit of T_END, by order: in the asymptotic range and above round-off (1e-13).
STEPS = {1: (64, 128, 256), 2: (32, 64, 128), 3: (32, 64, 128), 4: (32, 64, 128),
         5: (64, 128, 256), 8: (4, 8, 16)}


def _slope(ns, errs) -> float:
    """Least-squares slope of log(error) against log(step)."""
    x = [math.log(T_END / n) for n in ns]
    y = [math.log(e) for e in errs]
    mx, my = sum(x) / len(x), sum(y) / len(y)
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / sum((a - mx) ** 2 for a in x)


def _error_fixed(solver, n: int) -> float:
    y = odeint(manufactured, Y0, T_SPAN, solver, step=T_END / n)
    return float((y[0, -1] - Y_END).abs().max())


def _error_torchdiffeq_fixed_step(solver, n: int) -> float:
    """torchdiffeq's adaptive method forced to a constant step (min_step = max_step, landing
    on the grid): the order of the solution it propagates, free of step control."""
    from torchdiffeq import odeint as tde_odeint

    h = T_END / n
    grid = torch.linspace(0.0, T_END, n + 1, dtype=torch.float64)[1:]
    y = tde_odeint(manufactured, Y0, T_SPAN, method=solver.torchdiffeq, rtol=1.0, atol=1.0,
                   options=dict(first_step=h, min_step=h, max_step=h, step_t=grid))
    return float((y[-1, 0] - Y_END).abs().max())


def _error_tableau(tab: ButcherTableau, n: int) -> float:
    out = fixed_step(manufactured, Y0, T_SPAN, T_END / n, tab)
    return float((out.states[-1, 0] - Y_END).abs().max())


_GRID = 32
_X = torch.arange(_GRID, dtype=torch.float64) * (2 * math.pi / _GRID)
_C = 0.5                                                               # diffusivity


def _u_exact(t: float) -> torch.Tensor:
    return math.cos(t) * torch.sin(_X) + 0.5 / (1 + t * t) * torch.sin(3 * _X)


def _spectral_errors(solver, ns, nonlinear: bool = True):
    """Max error at T_END on the periodic 1-D problem ``u_t = c·u_xx + R(t, u)`` with
    ``R = u² − U² + U_t − c·U_xx``, whose exact solution is ``U = cos t·sin x +
    sin 3x / (2(1 + t²))`` (a manufactured solution, nonlinear and non-autonomous, as
    for the ODE methods above; U's modes lie below the 2/3 cut, so the dealiased
    semi-discrete system has U as its exact solution too). Without ``nonlinear``:
    the heat equation ``u_t = c·u_xx`` from U(0), each mode decaying as exp(−c k² t)."""
    domain = SimpleNamespace(ndim=1, shape=(_GRID,), lengths=(2 * math.pi,))

    def dudt(t):
        return -math.sin(t) * torch.sin(_X) - t / (1 + t * t) ** 2 * torch.sin(3 * _X)

    def uxx(t):
        return -math.cos(t) * torch.sin(_X) - 4.5 / (1 + t * t) * torch.sin(3 * _X)

    def rest(t, u):
        t = float(t)
        big_u = _u_exact(t)
        return u * u - big_u * big_u + dudt(t) - _C * uxx(t)

    u0 = _u_exact(0.0)[None, None]                                     # (1, 1, 32)
    if nonlinear:
        exact = _u_exact(T_END)
    else:
        exact = math.exp(-_C * T_END) * torch.sin(_X) + \
            0.5 * math.exp(-9 * _C * T_END) * torch.sin(3 * _X)
    errs = []
    for n in ns:
        out = spectral_solve(solver.tableau, rest if nonlinear else None, {"u": _C}, domain,
                             u0, T_SPAN, T_END / n)
        errs.append(float((out.states[-1, 0, 0] - exact).abs().max()))
    return errs


INTEGRATORS = {n: s for n, s in SOLVERS.items() if not s.is_map}


@pytest.mark.parametrize("solver", list(INTEGRATORS.values()), ids=list(INTEGRATORS))
def test_order(solver):
    """Fitted log-error/log-step slope = ``solver.order`` (within 0.25)."""
    if solver.kind == "spectral":
        ns = STEPS[solver.order]
        errs = _spectral_errors(solver, ns)
    else:
        ns = STEPS[solver.order]
        if solver.kind == "fixed":
            errs = [_error_fixed(solver, n) for n in ns]
        else:
            errs = [_error_torchdiffeq_fixed_step(solver, n) for n in ns]
    slope = _slope(ns, errs)
    assert abs(slope - solver.order) < 0.25, (solver.name, slope, errs)
    if solver.tableau is not None and solver.kind == "adaptive":
        # physml's own tableau (the batched simulator's dopri5) has the order too.
        errs = [_error_tableau(solver.tableau, n) for n in ns]
        assert abs(_slope(ns, errs) - solver.order) < 0.25, (solver.name, errs)


def test_spectral_cn_is_second_order_for_pure_diffusion():
    ns = (8, 16, 32)
    errs = _spectral_errors(SOLVERS["spectral_cn"], ns, nonlinear=False)
    assert abs(_slope(ns, errs) - 2) < 0.25, errs


def test_spectral_rk4_integrates_diffusion_exactly():
    """The integrating factor makes diffusion exact whatever the step (c·k²·h = 9 here,
    where explicit RK4 diverges)."""
    errs = _spectral_errors(SOLVERS["spectral_rk4"], (1, 2), nonlinear=False)
    assert max(errs) < 1e-14, errs


def test_dopri5_embedded_solution_is_fourth_order():
    """The error estimate of the batched simulator uses ``e = b − b̂``: b̂ must be order 4."""
    b_hat = tuple(b - e for b, e in zip(DOPRI5.b, DOPRI5.e))
    tab = ButcherTableau("dopri5_embedded", 4, DOPRI5.c, DOPRI5.a, b_hat)
    ns = STEPS[4]
    assert abs(_slope(ns, [_error_tableau(tab, n) for n in ns]) - 4) < 0.25


@pytest.mark.parametrize("name", [n for n, s in SOLVERS.items() if s.kind == "adaptive"])
def test_adaptive_error_follows_tolerance(name):
    """With step control on, the global error falls in proportion to the tolerance
    (error-per-step control: error ∝ tol^(p/(q+1)), p the order, q the estimator's
    order; ≈ 1 for these pairs) and stays within a bounded multiple of it."""
    tols = (1e-3, 1e-4, 1e-5, 1e-6)
    errs = []
    for tol in tols:
        y = odeint(manufactured, Y0, T_SPAN, name, rtol=tol, atol=tol)
        errs.append(float((y[0, -1] - Y_END).abs().max()))
    slope = math.log(errs[0] / errs[-1]) / math.log(tols[0] / tols[-1])
    assert 0.7 < slope < 1.6, (name, errs)
    assert all(e < 1000 * tol for e, tol in zip(errs, tols)), (name, errs)


def test_batched_dopri5_error_follows_tolerance():
    errs = []
    for tol in (1e-5, 1e-7, 1e-9):
        out = adaptive_rk(manufactured, Y0, T_SPAN, rtol=tol, atol=tol)
        errs.append(float((out.states[-1, 0] - Y_END).abs().max()))
        assert errs[-1] < 10 * tol
    assert 0.7 < math.log(errs[0] / errs[-1]) / math.log(1e4) < 1.6, errs


def test_registry_entries_are_consistent():
    from physml.experiment import vocabulary

    # `physml check` accepts in a data block exactly what the simulator runs.
    data_solvers = vocabulary().data_solvers
    assert {n for n, s in SOLVERS.items() if s.simulates} == set(data_solvers)
    for name, options in data_solvers.items():
        assert set(SOLVERS[name].options) == set(options), name
    for name, s in SOLVERS.items():
        assert s.name == name and isinstance(s.order, int) and s.kind in ("fixed", "adaptive",
                                                                           "spectral")
    # rk4 is the classic method everywhere; torchdiffeq's rk4 (the 3/8 rule) is rk4_38.
    assert SOLVERS["rk4"].tableau.b == (1 / 6, 1 / 3, 1 / 3, 1 / 6)
    assert SOLVERS["rk4_38"].torchdiffeq == "rk4"


def test_unknown_solver_lists_choices():
    with pytest.raises(ValueError, match="unknown solver 'rk5'; choose one of") as exc:
        get_solver("rk5")
    assert all(name in str(exc.value) for name in SOLVERS)
    with pytest.raises(ValueError, match="not differentiable.*rk4"):
        odeint(manufactured, Y0, T_SPAN, "spectral_cn")
    with pytest.raises(ValueError, match="does not take option.*rtol"):
        SOLVERS["rk4"].check_options({"rtol": 1e-3})


def test_odeint_agrees_with_simulation(float64):
    from physml.simulation import simulate
    from physml.symbolic.compiler import compile_dynamics

    spec = physml.parse_spec(
        "use damped_pendulum\ndata:\n    trajectories 6 train\n    time 0 .. 10 step 0.5\n"
        "    initial theta, omega ~ ring(1.3, 2.3)\n    solver rk4(step=0.05)\n")
    field = compile_dynamics(spec).double()
    ds = simulate(spec, dtype=torch.float64)
    x = ds["train"][0]                                               # (N, T, 2)
    with torch.no_grad():
        y = odeint(field, x[:, 0], ds.times, "rk4", step=0.05)
        # Same tableau, same steps: the same numbers.
        assert (y - x).abs().max() < 1e-12
        # And the adaptive paths (physml's batched dopri5, torchdiffeq's) agree.
        tight = simulate(replace(spec, data=replace(spec.data, solver=replace(
            spec.data.solver, name="dopri5", kwargs=(("rtol", 1e-10), ("atol", 1e-10))))),
            dtype=torch.float64)["train"][0]
        y5 = odeint(field, x[:, 0], ds.times, "dopri5", rtol=1e-10, atol=1e-10)
    assert (y5 - tight).abs().max() < 1e-8
    assert (tight - x).abs().max() < 1e-5                            # rk4 at h = 0.05


@pytest.mark.parametrize("name", [n for n, s in SOLVERS.items()
                                  if s.trainable and s.kind == "fixed"])
def test_gradcheck_fixed_methods(name):
    t = torch.tensor([0.0, 0.3, 0.7], dtype=torch.float64)

    def solve(x0, w):
        return odeint(lambda tt, x: torch.tanh(x @ w) + 0.1 * tt, x0, t, name, step=0.2)

    x0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(solve, (x0, w))


def _mlp_problem(net=None, batch: int = 5):
    """An autonomous field ``f(t, x) = net(x)`` (default: a small tanh MLP), ``batch``
    initial states and six times on [0, 1]."""
    torch.manual_seed(0)
    if net is None:
        net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(),
                                  torch.nn.Linear(16, 2))

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, t, x):
            return self.net(x)

    return Field(), torch.randn(batch, 2), torch.linspace(0, 1, 6)


def _values_and_grads(f, x0, t, **kw):
    f.zero_grad()
    y = odeint(f, x0, t, "rk4", step=0.1, **kw)
    y.square().sum().backward()
    return y.detach(), [p.grad.clone() for p in f.parameters()]


def test_recompute_changes_nothing():
    f, x0, t = _mlp_problem()
    y, g = _values_and_grads(f, x0, t)
    y2, g2 = _values_and_grads(f, x0, t, recompute=True)
    assert torch.equal(y, y2)
    assert all(torch.allclose(a, b, rtol=1e-6, atol=1e-7) for a, b in zip(g, g2))


@pytest.mark.slow
def test_compiled_changes_nothing():
    f, x0, t = _mlp_problem()
    forward = f.forward
    f.forward = lambda tt, x: forward(tt, x) * torch.cos(tt)  # the steps' times matter
    # A non-uniform grid with one or two sub-steps (step 0.1) per interval: 9 steps,
    # compiled CHUNK=4 at a time, so the last call is padded with 3 steps of size 0.
    t = torch.tensor([0.0, 0.15, 0.3, 0.5, 0.6, 0.8])
    assert chunk_size(x0) == CHUNK == 4
    y, g = _values_and_grads(f, x0, t)
    y2, g2 = _values_and_grads(f, x0, t, compiled=True)
    assert y2.shape == (5, 6, 2)
    assert torch.allclose(y, y2, rtol=1e-5, atol=1e-6)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(g, g2))
    # Cached on the module: a second call compiles nothing new.
    assert list(f.__dict__["_physml_solve_steps"]) == [("rk4", "cpu", 4, False)]


def test_thin_linear_is_the_layer():
    """The matrix-free form of narrow layers that MLP uses under torch.compile."""
    from physml.models.nets import thin_linear

    torch.manual_seed(0)
    for shape in ((2, 200), (200, 2), (3, 3), (1, 7)):
        layer = torch.nn.Linear(*shape)
        x = torch.randn(25, shape[0], requires_grad=True)
        assert torch.allclose(thin_linear(x, layer), layer(x), rtol=1e-5, atol=1e-6)
        gx, gw = torch.autograd.grad(thin_linear(x, layer).square().sum(), (x, layer.weight))
        rx, rw = torch.autograd.grad(layer(x).square().sum(), (x, layer.weight))
        assert torch.allclose(gx, rx, rtol=1e-5, atol=1e-5)
        assert torch.allclose(gw, rw, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_compiled_pendulum_mlp_changes_nothing():
    """The pendulum's 2→200→200→2 MLP, compiled (narrow layers matrix-free, C++ wrapper on
    CPU), gives the eager values and gradients."""
    from physml.models.nets import MLP

    torch.manual_seed(0)
    f, x0, t = _mlp_problem(MLP(2, hidden=200, layers=3, gain=1.0), batch=25)
    y, g = _values_and_grads(f, x0, t)
    y2, g2 = _values_and_grads(f, x0, t, compiled=True)
    assert torch.allclose(y, y2, rtol=1e-5, atol=1e-6)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(g, g2))


def test_adjoint_gradients_match_backprop():
    f, x0, t = _mlp_problem()
    f = f.double()
    x0, t = x0.double(), t.double()
    grads = []
    for adjoint in (False, True):
        f.zero_grad()
        odeint(f, x0, t, "dopri5", rtol=1e-9, atol=1e-9, adjoint=adjoint).square().sum().backward()
        grads.append([p.grad.clone() for p in f.parameters()])
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(*grads))


def test_rd_adaptive_dataset_matches_fixed_step_reference():
    """The Table 3.4 reaction–diffusion specs simulate with adaptive dopri5 at a tolerance
    chosen so that the stored data (float32) are those of the old rk4(step=1e-3) reference:
    the two differ by less than the float32 rounding of the values (one ulp), while
    dopri5 runs ~30× faster (benchmarks/results/simulate_rd_cpu.json). Tightening to the
    reference's own float64 error (≈1.5e-11, rtol 1e-11) changes no stored value."""
    from physml.simulation import simulate

    spec = physml.load_spec("specs/table3_4/rd_true_pde.phy")
    assert spec.data.solver.name == "dopri5"
    small = replace(spec, data=replace(spec.data, splits=(("train", 8),)))
    ref = replace(small, data=replace(small.data, solver=replace(
        small.data.solver, name="rk4", kwargs=(("step", 1e-3),))))
    x = simulate(small, dtype=torch.float64)["train"]
    y = simulate(ref, dtype=torch.float64)["train"]
    assert x.shape == y.shape == (1, 8, 25, 2, 32, 32)
    assert (x - y).abs().max() < 2e-8
    ulp = torch.finfo(torch.float32).eps * y.abs().max()
    assert (x.float() - y.float()).abs().max() <= ulp


def test_direct_is_the_one_step_map_not_an_integrator():
    """``solver direct`` (thesis Table 2.3's "ResNet" ablation): each step replaces the
    state by f(t, x); ``step`` gives that many applications per interval."""
    x0 = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    t = torch.tensor([0.0, 0.5, 1.0, 1.5], dtype=torch.float64)
    seen = []

    def f(tt, x):
        seen.append(float(tt))
        return 2 * x + 1

    y = odeint(f, x0, t, "direct")
    want = [x0]
    for _ in range(3):
        want.append(2 * want[-1] + 1)
    assert torch.equal(y, torch.stack(want, dim=1))
    assert seen == [0.0, 0.5, 1.0]              # f sees the time of the state it maps
    y2 = odeint(lambda tt, x: 2 * x + 1, x0, t, "direct", step=0.25)
    assert torch.equal(y2[:, 1], 2 * (2 * x0 + 1) + 1)   # two maps per interval
    # Euler with the same f would be x + h·f: a different model.
    assert not torch.allclose(odeint(lambda tt, x: 2 * x + 1, x0, t, "euler"), y)
    # Padded steps of size 0 (compiled chunks) leave the state alone.
    from physml.solve.tableau import DIRECT, rk_step

    h0 = torch.zeros((), dtype=torch.float64)
    assert torch.equal(rk_step(DIRECT, lambda tt, x: 5 * x, h0, h0, x0), x0)
    assert not SOLVERS["direct"].simulates


# -- teacher forcing inside the grid loop ----------------------------------------------
def _segments(f, x0, t, restart, data, solver="rk4", **kw):
    """Teacher forcing the plain way: solve each segment between restarts in turn."""
    cuts = [k for k in restart.nonzero().flatten().tolist() if 0 < k < t.shape[0] - 1]
    pieces, start, x = [], 0, x0
    for k in cuts + [t.shape[0] - 1]:
        seg = odeint(f, x, t[start:k + 1], solver, **kw)
        pieces.append(seg if not pieces else seg[:, 1:])
        start, x = k, data[:, k]
    return torch.cat(pieces, dim=1)


def _restart_problem():
    f, x0, _ = _mlp_problem()
    t = torch.tensor([0.0, 0.15, 0.3, 0.5, 0.6, 0.8, 1.0, 1.1])
    data = torch.randn(x0.shape[0], t.shape[0], *x0.shape[1:], generator=torch.Generator()
                       .manual_seed(3))
    restart = torch.tensor([True, False, True, True, False, False, True, True])
    return f, x0.requires_grad_(True), t, restart, data


@pytest.mark.parametrize("solver,kw", [("rk4", {}), ("rk4", {"step": 0.1}),
                                       ("euler", {"step": 0.05}),
                                       ("dopri5", {"rtol": 1e-7, "atol": 1e-9})])
def test_restarts_in_the_grid_loop_equal_solving_the_segments(solver, kw):
    """Teacher forcing (thesis §3.4.4) in one pass: the values of solving each segment
    from the data in turn; the frame where a restart happens keeps the forecast that
    arrived there, and a flag on the first frame changes nothing."""
    f, x0, t, restart, data = _restart_problem()
    ref = _segments(f, x0, t, restart, data, solver, **kw)
    got = odeint(f, x0, t, solver, restart=restart, data=data, **kw)
    assert torch.allclose(got, ref, rtol=1e-6, atol=1e-7)
    free = odeint(f, x0, t, solver, **kw)
    assert torch.equal(got[:, :3], free[:, :3])           # up to the first restart's frame
    assert not torch.allclose(got[:, 3], free[:, 3])       # then from data[:, 2]
    gx_ref, = torch.autograd.grad(ref.square().sum(), x0)
    gx, = torch.autograd.grad(got.square().sum(), x0)
    assert torch.allclose(gx, gx_ref, rtol=1e-5, atol=1e-7)


def test_restart_needs_matching_data():
    f, x0, t, restart, data = _restart_problem()
    with pytest.raises(ValueError, match="restart needs"):
        odeint(f, x0, t, "rk4", restart=restart, data=data[:, :3])


@pytest.mark.slow
def test_compiled_restarts_equal_eager():
    """One compiled graph for every draw of restarts: values and gradients as eager, and
    a second draw compiles nothing new."""
    f, x0, t, restart, data = _restart_problem()
    for r in (restart, torch.zeros_like(restart), torch.ones_like(restart)):
        ref = odeint(f, x0, t, "rk4", step=0.1, restart=r, data=data)
        got = odeint(f, x0, t, "rk4", step=0.1, restart=r, data=data, compiled=True)
        assert torch.allclose(got, ref, rtol=1e-5, atol=1e-6)
        g_ref = torch.autograd.grad(ref.square().sum(), list(f.parameters()))
        g = torch.autograd.grad(got.square().sum(), list(f.parameters()))
        assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(g_ref, g))
    assert list(f.__dict__["_physml_solve_steps"]) == [("rk4", "cpu", 4, True)]
