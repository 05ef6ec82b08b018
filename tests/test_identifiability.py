"""Identifiability before training and intervals after it (issue 13, items 5 and 6)."""
from __future__ import annotations

import math

import pytest
import torch
from typer.testing import CliRunner

import physml
from physml.data import Trajectories
from physml.discover.identifiability import identifiability, product_name
from physml.discover.uncertainty import bootstrap, laplace
from physml.experiment import parse_spec

REDUNDANT = """\
system decay
state x
param a = 2 in (0, inf)
param b = 0.25 in (0, inf)
dynamics:
    d(x)/dt = -a*b*x
data:
    trajectories 4 train, 2 val
    time 0 .. 2 step 0.1
    initial x ~ uniform(1, 2)
    noise 0.01
prior:
    d(x)/dt = -a*b*x
    learn a from 1, b from 1
train physics solver rk4 epochs 3
"""

LV = """\
use lotka_volterra
data:
    trajectories 1 train
    time 0 .. 10 step 0.5
    initial u ~ {u}
    initial v ~ {v}
    noise 0.01
prior:
    d(u)/dt = alpha*u - beta*u*v
    d(v)/dt = delta*u*v - gamma*v
    learn alpha, beta, gamma, delta
train physics solver rk4
"""

# A small reaction–diffusion: the prior knows diffusion, F_a must learn the reaction.
RD = """\
system rd
domain 16 x 16 over [-1, 1] x [-1, 1] periodic
field u, v
param a = 1e-3 in (0, inf)
param b = 5e-3 in (0, inf)
dynamics:
    d(u)/dt = a*lap(u) + u - u^3 - v
    d(v)/dt = b*lap(v) + u - v
data:
    trajectories 4 train
    time 0 .. 0.5 step 0.1
    initial u, v ~ uniform_cells(0, 1)
prior:
    d(u)/dt = a*lap(u)
    d(v)/dt = b*lap(v)
    learn a, b
augment convnet(channels=8, layers=3{kernel})
train aphynity(lambda0=1e6, norm=absolute) solver rk4
"""


def test_redundant_pair_names_the_product():
    r = identifiability(parse_spec(REDUNDANT))
    assert (r.rank, len(r.names)) == (1, 2)
    assert r.identifiable_combinations == ["a·b"]
    assert r.unidentifiable == ["a/b"]
    assert r.singular_values[1] < 1e-12 * r.singular_values[0]
    assert r.near_singular and math.isinf(r.rel_std["a"])
    assert "only a·b is identifiable" in "\n".join(r.lines())


def test_lotka_volterra_from_its_fixed_point_is_not_identifiable():
    """At the fixed point (γ/δ, α/β) = (1, 1) only the fixed point itself moves the data:
    α/β and γ/δ are identifiable, α·β and γ·δ are not. Away from it, all four are."""
    at = identifiability(parse_spec(LV.format(u="constant(1)", v="constant(1)")))
    assert at.rank == 2 and not at.full_rank
    assert sorted(at.identifiable_combinations) == ["alpha/beta", "gamma/delta"]
    assert sorted(at.unidentifiable) == ["alpha·beta", "gamma·delta"]
    away = identifiability(parse_spec(LV.format(u="constant(1.5)", v="constant(0.5)")))
    assert away.full_rank and not away.near_singular
    assert max(away.rel_std.values()) < 0.05


def test_pendulum_t0_and_alpha_are_identifiable_on_the_table_3_4_design():
    from pathlib import Path

    spec = physml.load_spec(Path(__file__).parents[1] / "specs" / "table3_4" /
                            "pendulum_param_ode_w0_alpha.phy")
    r = identifiability(spec, max_trajectories=6)
    assert r.full_rank and not r.near_singular and r.where == "truth"
    assert r.at == {"T0": 6.0, "alpha": 0.2}
    # 25 trajectories of 40 predicted frames, σ = 0.01: T0 to ~1e-4, α to ~1e-3.
    assert r.rel_std["T0"] < 1e-3 and r.rel_std["alpha"] < 1e-2
    assert r.n_observations == 25 * 40 * 2


def test_product_names():
    assert product_name(["a", "b"], [1, 1]) == "a·b"
    assert product_name(["a", "b"], [1, -1]) == "a/b"
    assert product_name(["a", "b", "c"], [2, -1, -1]) == "a^2/(b·c)"
    assert product_name(["a"], [-1]) == "1/a"


@pytest.mark.parametrize("kernel, high", [("", True), (", kernel=1", False)])
def test_confounding_share_of_a_laplacian(kernel, high):
    """A 3×3 ConvNet sees the Laplacian's stencil, so F_a can take over any change of a
    and b (the split is decided by the minimal norm alone, which puts a low: −v correlates
    with Δv); a pointwise network cannot, and much of ∂F_p/∂a lies beyond it."""
    r = identifiability(parse_spec(RD.format(kernel=kernel)))
    shares = {c.name: c for c in r.confounding}
    assert set(shares) == {"a", "b"}
    for c in shares.values():
        assert c.unique is (not high)
        if high:
            assert c.share == 1.0 and c.exact and "7×7 receptive field" in c.how
        else:
            assert 0.3 < c.share < 0.9, c.share
            assert c.minimal_norm is None
    if high:
        a = shares["a"]
        assert a.true == 1e-3 and 0 < a.minimal_norm < 0.5e-3, a.minimal_norm
        assert "not unique" in "\n".join(r.lines())


def _drift(n: int, seed: int, sigma: float = 0.05, noisy_first: bool = False):
    """``dx/dt = c``: predictions linear in c, Gaussian noise (a linear-Gaussian model)."""
    spec = parse_spec("""\
system drift
state x
param c = 0.5
dynamics:
    d(x)/dt = c
prior:
    d(x)/dt = c
    learn c
train physics solver rk4
""")
    from physml.experiment.build import build

    rollout = build(spec).rollout
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    x0 = torch.rand(n, generator=g, dtype=torch.float64)
    y = x0[:, None] + 0.5 * t + sigma * torch.randn(n, len(t), generator=g, dtype=torch.float64)
    if not noisy_first:
        y[:, 0] = x0
    x0 = y[:, 0]
    train = Trajectories(y[None, :, :, None], t, dtype=torch.float64)
    # The least-squares estimate and its textbook interval (σ² from the residuals, n − 1 dof)
    st = float((t ** 2).sum()) * n
    c = float(((y - x0[:, None]) * t).sum()) / st
    prior = rollout.field.prior
    with torch.no_grad():
        prior.raw["c"].fill_(c / prior.scales["c"])
    c = float(prior.param_values()["c"].detach())
    ssr = float(((y - x0[:, None] - c * t) ** 2).sum())
    sd = math.sqrt(ssr / (n * 10 - 1) / st)
    return rollout, train, c, sd


def test_laplace_equals_the_analytic_interval_of_a_linear_gaussian_model():
    rollout, train, c, sd = _drift(6, seed=1)
    u = laplace(rollout, train, sandwich=False)
    (iv,) = u.intervals
    z = 1.959963984540054
    assert iv.value == pytest.approx(c, rel=1e-9)
    assert iv.std == pytest.approx(sd, rel=1e-6)
    assert (iv.low, iv.high) == pytest.approx((c - z * sd, c + z * sd), rel=1e-6)
    assert "full Hessian" in u.note


def test_sandwich_and_bootstrap_agree_with_the_textbook_width_on_many_trajectories():
    rollout, train, c, sd = _drift(60, seed=2)
    (lap,) = laplace(rollout, train, sandwich="clustered").intervals
    (boot,) = bootstrap(rollout, train, 200).intervals
    assert lap.std == pytest.approx(sd, rel=0.25)
    assert boot.std == pytest.approx(sd, rel=0.25)
    assert boot.value == pytest.approx(c, rel=1e-6)
    assert boot.low < c < boot.high


def test_laplace_gives_infinite_intervals_where_the_data_do_not_decide(tmp_path):
    msgs = []
    run = physml.train(parse_spec(REDUNDANT), out=tmp_path / "run", data_dir=tmp_path / "d",
                       callback=lambda p: p.message and msgs.append(p.message))
    # The identifiability check warned before training …
    assert any("only a·b is identifiable" in m for m in msgs), msgs
    # … and the intervals say the same after it.
    ins = physml.experiment.inspect(run)
    rows = {iv["name"]: iv for iv in ins["uncertainty"]["intervals"]}
    assert math.isinf(rows["a"]["std"]) and rows["a"]["high"] == math.inf
    assert "singular" in ins["uncertainty"]["note"]


def test_cli_check_identifiability(tmp_path):
    from physml.cli.app import app

    path = tmp_path / "redundant.phy"
    path.write_text(REDUNDANT)
    res = CliRunner().invoke(app, ["check", "--identifiability", str(path)],
                             terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "not identifiable: the Fisher information has rank 1 of 2" in res.output
    assert "only a·b is identifiable" in res.output
    sys_file = tmp_path / "sys.phy"
    sys_file.write_text(REDUNDANT.split("data:")[0])
    res = CliRunner().invoke(app, ["check", "--identifiability", str(sys_file)])
    assert res.exit_code == 1 and "learns no parameters" in res.output


def test_laplace_propagates_the_noise_of_the_first_frame():
    """A forecast from a noisy first frame carries its error to every later frame: for
    ``x(t) = x0 + c·t`` fitted from the observed ``x0``, Var(ĉ) = σ²·N·(Σt² + (Σt)²)/st²
    with st = N·Σt², far more than the σ²/st that independent residuals give."""
    rollout, train, c, _ = _drift(40, seed=3, noisy_first=True)
    u = laplace(rollout, train)
    (iv,) = u.intervals
    t = torch.linspace(0, 1, 11, dtype=torch.float64)[1:]
    st = 40 * float((t ** 2).sum())
    sd = math.sqrt(u.sigma2 * 40 * (float((t ** 2).sum()) + float(t.sum()) ** 2)) / st
    assert iv.std == pytest.approx(sd, rel=1e-6)
    assert u.sigma2 == pytest.approx(0.05 ** 2, rel=0.15)
    assert "first frame is as noisy" in u.note
    (plain,) = laplace(rollout, train, sandwich=False).intervals
    assert iv.std > 1.8 * plain.std  # (Σt² + (Σt)²)/(2Σt²) = 4.4 in variance
