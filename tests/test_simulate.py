"""Simulation: accuracy against closed forms, determinism, environments, blow-ups."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import physml
from physml import parse_spec
from physml.errors import SpecError
from physml.simulation import SimulationError, UnstableError, simulate
from physml.solve.batched import adaptive_rk, fixed_step
from physml.solve.tableau import DOPRI5, RK4


pytestmark = pytest.mark.usefixtures("one_thread")


def pendulum(data: str, extra: str = "") -> physml.symbolic.Spec:
    return parse_spec("use damped_pendulum\ndata:\n" + data + extra)


def test_small_angle_pendulum_matches_cosine():
    spec = parse_spec(
        "system p\nstate theta, omega\nparam T0 = 6\nparam alpha = 0\nlet omega0 = 2*pi/T0\n"
        "dynamics:\n    d(theta)/dt = omega\n    d(omega)/dt = -omega0^2*sin(theta) - alpha*omega\n"
        "data:\n    trajectories 4 train\n    time 0 .. 20 step 0.5\n"
        "    initial theta ~ uniform(0.0005, 0.001), omega ~ constant(0)\n"
        "    solver dopri5(rtol=1e-10, atol=1e-14)\n")
    ds = simulate(spec, dtype=torch.float64)
    x = ds["train"][0]                                             # (N, T, 2)
    w0 = 2 * math.pi / 6
    th0 = x[:, 0, 0:1]
    exact = th0 * torch.cos(w0 * ds.times)[None]
    # sin θ ≈ θ − θ³/6: the relative deviation from the linear solution is O(θ₀²) ~ 1e-6.
    rel = (x[..., 0] - exact).abs().max() / th0.max()
    assert rel < 1e-5
    assert ds["train"].shape == (1, 4, 41, 2)


def test_damped_linear_oscillator_analytic():
    spec = parse_spec(
        "system osc\nstate x, v\nparam w = 2\nparam g = 0.3\n"
        "dynamics:\n    d(x)/dt = v\n    d(v)/dt = -w^2*x - 2*g*v\n"
        "data:\n    trajectories 8 train\n    time 0 .. 10 step 0.25\n"
        "    initial x ~ uniform(-1, 1), v ~ uniform(-1, 1)\n"
        "    solver dopri5(rtol=1e-10, atol=1e-12)\n")
    ds = simulate(spec, dtype=torch.float64)
    x = ds["train"][0]
    t = ds.times
    w, g = 2.0, 0.3
    wd = math.sqrt(w * w - g * g)
    x0, v0 = x[:, 0, 0:1], x[:, 0, 1:2]
    exact = torch.exp(-g * t) * (x0 * torch.cos(wd * t) + (v0 + g * x0) / wd * torch.sin(wd * t))
    assert (x[..., 0] - exact).abs().max() < 1e-8


@pytest.mark.parametrize("solver,tol", [("rk4(step=0.01)", 1e-8), ("midpoint(step=0.001)", 1e-5),
                                        ("euler(step=0.0005)", 5e-3)])
def test_fixed_step_solvers_converge(solver, tol):
    spec = parse_spec(
        "system decay\nstate x\nparam k = 0.7\ndynamics:\n    d(x)/dt = -k*x\n"
        f"data:\n    trajectories 3 train\n    time 0 .. 2 step 0.5\n"
        f"    initial x ~ uniform(1, 2)\n    solver {solver}\n")
    ds = simulate(spec, dtype=torch.float64)
    x = ds["train"][0, :, :, 0]
    exact = x[:, :1] * torch.exp(-0.7 * ds.times)
    assert (x - exact).abs().max() < tol


def test_rk4_order_is_four():
    f = lambda t, y: -y  # noqa: E731
    y0 = torch.ones(1, 1, dtype=torch.float64)
    times = torch.tensor([0.0, 1.0], dtype=torch.float64)
    errs = [float((fixed_step(f, y0, times, h, RK4).states[-1] - math.exp(-1)).abs())
            for h in (0.1, 0.05, 0.025)]
    slopes = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(3.8 < s < 4.2 for s in slopes)


def test_lotka_volterra_invariant_conserved():
    spec = parse_spec(
        "use lotka_volterra\ndata:\n    trajectories 16 train\n    time 0 .. 10 step 0.5\n"
        "    initial u, v ~ uniform(1, 2)\n    solver dopri5(rtol=1e-10, atol=1e-12)\n"
        "environments:\n    a: alpha = 0.5, gamma = 0.5\n    b: alpha = 1, gamma = 0.75\n")
    ds = simulate(spec, dtype=torch.float64)
    x = ds["train"]
    for e, p in enumerate(ds.env_params):
        u, v = x[e, ..., 0], x[e, ..., 1]
        inv = p["delta"] * u - p["gamma"] * torch.log(u) + p["beta"] * v - p["alpha"] * torch.log(v)
        drift = (inv - inv[:, :1]).abs().max()
        assert drift < 1e-6, (e, float(drift))
    # The two environments really differ.
    assert (x[0, :, -1] - x[1, :, -1]).abs().max() > 0.1


def test_heat_equation_fourier_mode_decays():
    spec = parse_spec(
        "system heat\ndomain 32 x 32 over [0, 1] x [0, 1] periodic stencil spectral\nfield u\n"
        "param a = 0.01\ndynamics:\n    d(u)/dt = a*lap(u)\n"
        "data:\n    trajectories 2 train\n    time 0 .. 1 step 0.25\n"
        "    initial u ~ normal(0, 1)\n    solver dopri5(rtol=1e-9, atol=1e-12)\n")
    ds = simulate(spec, dtype=torch.float64)
    x = ds["train"][0, :, :, 0]                                    # (N, T, 32, 32)
    uh = torch.fft.fft2(x)
    for kx, ky in ((1, 0), (2, 3), (5, 1)):
        k2 = (2 * math.pi) ** 2 * (kx * kx + ky * ky)
        ratio = uh[:, :, kx, ky] / uh[:, :1, kx, ky]
        expect = torch.exp(-0.01 * k2 * ds.times)
        assert (ratio.real - expect).abs().max() < 1e-7
        assert ratio.imag.abs().max() < 1e-7


def _taylor_green_spec(solver: str) -> str:
    return (
        "use navier_stokes\ndata:\n    trajectories 2 train\n    time 0 .. 2 step 0.5\n"
        f"    initial w ~ constant(0)\n    solver {solver}\n"
        "environments:\n    still: amp = 0, nu = 0.01\n")


@pytest.mark.parametrize("solver,tol", [("spectral_cn(step=0.005)", 1e-5),
                                        ("spectral_rk4(step=0.1)", 1e-12),
                                        ("rk4(step=0.01)", 1e-8)])
def test_taylor_green_vortex_decay(solver, tol):
    from physml.simulation import core

    spec = parse_spec(_taylor_green_spec(solver))
    p = core.plan(spec)
    x, y = (torch.as_tensor(m) for m in spec.system.domain.mesh())
    w0 = (2 * math.sin(1.0) * 0 + torch.sin(2 * math.pi * x) * torch.sin(2 * math.pi * y))
    y0 = torch.stack([w0, 0.5 * w0])[:, None]                      # (2, 1, 32, 32)
    out = core._integrate(p, y0, {}, "cpu", None, None).states    # (T, 2, 1, 32, 32)
    decay = torch.exp(-0.01 * 8 * math.pi ** 2 * p.times)         # ν|k|², |k|² = 8π²
    exact = decay[:, None, None, None, None] * y0[None]
    # The Taylor–Green vortex is a steady solution of the Euler part: only diffusion acts.
    assert (out - exact).abs().max() < tol


def test_spectral_cn_matches_rk4_on_turbulent_flow():
    spec_cn = parse_spec(
        "use navier_stokes\ndata:\n    trajectories 2 train\n    time 0 .. 1 step 0.5\n"
        "    initial w ~ grf(alpha=2.5, tau=7)\n    solver spectral_cn(step=0.002)\n")
    spec_rk = parse_spec(spec_cn.text.replace("spectral_cn(step=0.002)", "rk4(step=0.002)"))
    a = simulate(spec_cn, dtype=torch.float64)["train"]
    b = simulate(spec_rk, dtype=torch.float64)["train"]
    # Li et al.'s scheme treats advection with explicit Euler (first order in time) and
    # dealiases it: it agrees with RK4 to O(δt) here.
    assert (a - b).abs().max() / b.abs().max() < 5e-3


def test_same_seed_same_hash_and_different_seeds_differ():
    spec = pendulum("    trajectories 5 train, 3 test\n    time 0 .. 5 step 0.5\n"
                    "    initial theta, omega ~ ring(1.3, 2.3)\n    noise 0.01\n    seed 3\n")
    a, b = simulate(spec), simulate(spec)
    assert a.hash == b.hash
    assert torch.equal(a["train"], b["train"]) and torch.equal(a.clean["test"], b.clean["test"])
    c = simulate(spec, seed=4)
    assert c.hash != a.hash and not torch.equal(a["train"], c["train"])
    # Asking for one split gives the same arrays as the full run.
    d = simulate(spec, splits=["test"])
    assert torch.equal(d["test"], a["test"])
    # Noise: clean arrays are kept; the noise has the declared level.
    resid = (a["train"] - a.clean["train"]).double()
    assert abs(float(resid.std()) - 0.01) < 0.002
    assert a.seed == 3 and a.noise == 0.01


def test_environments_share_initial_conditions():
    spec = parse_spec(
        "use lotka_volterra\ndata:\n    trajectories 3 train, 4 test\n    time 0 .. 2 step 0.5\n"
        "    initial u, v ~ uniform(1, 2)\n"
        "environments:\n    grid alpha = [0.25, 0.5], gamma = [0.5, 1]\n")
    ds = simulate(spec)
    assert ds["train"].shape == (4, 3, 5, 2) and len(ds.env_names) == 4
    for split in ("train", "test"):
        x0 = ds[split][:, :, 0]
        assert torch.equal(x0, x0[:1].expand_as(x0))
        assert (ds[split][:, :, -1] - ds[split][:1, :, -1]).abs().amax(dim=(1, 2))[1:].min() > 1e-3
    assert ds.env_params[3]["alpha"] == 0.5 and ds.env_params[3]["gamma"] == 1.0
    assert ds.env_params[0]["beta"] == 0.5


def test_history_and_warmup_times():
    spec = pendulum("    trajectories 2 train\n    time 0 .. 2 step 0.5\n    history 3\n"
                    "    warmup 1\n    initial theta, omega ~ ring(1, 2)\n")
    ds = simulate(spec, dtype=torch.float64)
    assert ds.history == 3
    np.testing.assert_allclose(ds.times.numpy(), np.arange(-3, 5) * 0.5)
    assert ds["train"].shape == (1, 2, 8, 2)
    # Warm-up: the first saved state is not the drawn one (radius in [1, 2) is left).
    r0 = ds["train"][0, :, 0].norm(dim=-1)
    spec2 = pendulum("    trajectories 2 train\n    time 0 .. 2 step 0.5\n    history 3\n"
                     "    initial theta, omega ~ ring(1, 2)\n")
    r1 = simulate(spec2, dtype=torch.float64)["train"][0, :, 0].norm(dim=-1)
    assert (r1 >= 1).all() and (r1 < 2).all()
    assert not torch.allclose(r0, r1)


def test_blow_up_is_reported_with_time_and_parameters():
    spec = parse_spec(
        "system blow\nstate x\nparam r = 1\ndynamics:\n    d(x)/dt = r*x^2\n"
        "data:\n    trajectories 4 train\n    time 0 .. 2 step 0.25\n"
        "    initial x ~ uniform(0.1, 0.3)\n"
        "environments:\n    calm: r = 0.1\n    wild: r = 4\n")
    with pytest.raises(UnstableError) as exc:
        simulate(spec)
    msg = str(exc.value)
    assert "environment 'wild'" in msg and "r = 4" in msg and "--drop-unstable" in msg
    ev = exc.value.events[0]
    # x(t) = x0 / (1 − r x0 t) blows up at t* = 1/(r x0) ∈ (0.83, 2.5].
    assert ev["environment"] == "wild" and 0.8 < ev["time"] <= 2.0


def test_drop_unstable_drops_and_reports():
    spec = parse_spec(
        "system blow\nstate x\nparam r = 1\ndynamics:\n    d(x)/dt = r*x^2\n"
        "data:\n    trajectories 40 train\n    time 0 .. 1 step 0.25\n"
        "    initial x ~ uniform(0.1, 2)\n    seed 1\n"
        "    solver dopri5(rtol=1e-6, atol=1e-6)\n")
    ds = simulate(spec, drop_unstable=True, dtype=torch.float64)
    x = ds["train"][0, :, :, 0]
    dropped = ds.meta["dropped"]
    assert len(dropped) > 0 and x.shape[0] == 40 - len(dropped)
    assert torch.isfinite(x).all()
    # Exactly those with x0 ≥ 1 (blow-up time 1/x0 ≤ 1) are gone; survivors are exact.
    assert (x[:, 0] < 1.0).all()
    exact = x[:, :1] / (1 - x[:, :1] * ds.times[None])
    assert (x - exact).abs().max() / exact.abs().max() < 1e-6
    for ev in dropped:
        assert ev["time"] <= 1.0 + 1e-9


def test_bound_counts_as_blow_up():
    spec = parse_spec(
        "system grow\nstate x\nparam r = 1\ndynamics:\n    d(x)/dt = r*x\n"
        "data:\n    trajectories 3 train\n    time 0 .. 5 step 0.5\n    initial x ~ uniform(1, 2)\n"
        "    solver rk4(step=0.01)\n")
    with pytest.raises(UnstableError, match=r"\|x\| ≤ 50"):
        simulate(spec, bound=50.0)
    assert simulate(spec)["train"].shape == (1, 3, 11, 1)


def test_unstable_trajectory_does_not_stall_others():
    f = lambda t, y: torch.cat([y[:1] ** 2, -y[1:]], 0)  # noqa: E731
    y0 = torch.tensor([[2.0], [1.0]], dtype=torch.float64)
    times = torch.linspace(0, 2, 5, dtype=torch.float64)
    out = adaptive_rk(f, y0, times, 1e-8, 1e-10, DOPRI5)
    assert 0.4 < float(out.dead_time[0]) <= 0.5 + 1e-9 and math.isinf(out.dead_time[1])
    assert torch.isnan(out.states[2:, 0]).all()
    assert (out.states[:, 1, 0] - torch.exp(-times)).abs().max() < 1e-8


def test_spec_errors():
    with pytest.raises(SimulationError, match="no `data:` block"):
        simulate(parse_spec("use lotka_volterra\n"))
    with pytest.raises(SpecError) as exc:
        simulate(pendulum("    trajectories 2 train\n    time 0 .. 1 step 0.5\n"
                          "    initial theta, omega ~ rnig(1, 2)\n"))
    assert "did you mean 'ring'" in str(exc.value) and exc.value.line == 5
    with pytest.raises(SpecError, match="spectral_cn needs a periodic"):
        simulate(pendulum("    trajectories 2 train\n    time 0 .. 1 step 0.5\n"
                          "    initial theta, omega ~ ring(1, 2)\n    solver spectral_cn(step=0.1)\n"))
    with pytest.raises(SimulationError, match="split 'val'"):
        simulate(pendulum("    trajectories 2 train\n    time 0 .. 1 step 0.5\n"
                          "    initial theta, omega ~ ring(1, 2)\n"), splits=["val"])


def test_dopri8_through_torchdiffeq():
    spec = parse_spec(
        "system decay\nstate x\nparam k = 0.7\ndynamics:\n    d(x)/dt = -k*x\n"
        "data:\n    trajectories 3 train\n    time 0 .. 2 step 0.5\n"
        "    initial x ~ uniform(1, 2)\n    solver dopri8(rtol=1e-10, atol=1e-12)\n")
    ds = simulate(spec, dtype=torch.float64)
    x = ds["train"][0, :, :, 0]
    assert (x - x[:, :1] * torch.exp(-0.7 * ds.times)).abs().max() < 1e-9


def test_thesis_specs_simulate_small(tmp_path):
    from dataclasses import replace

    for name, sizes in (("leads_gray_scott", (("train", 1),)),
                        ("leads_lotka_volterra", (("train", 1), ("test", 2)))):
        # LEADS training is not available yet; its data are (syntax-level parse).
        spec = physml.lang.load_spec(f"specs/{name}.phy")
        spec = replace(spec, data=replace(spec.data, splits=sizes))
        if name == "leads_gray_scott":
            spec = replace(spec, data=replace(spec.data, t1=80.0))
        ds = simulate(spec)
        assert torch.isfinite(ds["train"]).all()
        assert ds["train"].shape[0] == len(spec.environments)
