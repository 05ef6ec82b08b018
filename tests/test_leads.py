"""LEADS (thesis §3.4): batched per-environment networks, Ω, per-environment parameters,
the baselines, teacher forcing, reports and the spec errors."""
from __future__ import annotations

import json
from pathlib import Path
import math

import numpy as np
import pytest
import torch
from torch import nn

import physml
from physml.models.environments import StackedNetworks, build_multi_env_model
from physml.models.nets import MLP, FNO2d, ConvNet, SpectralConv2d
from physml.objectives.leads import Leads, SpectralNorms

LV_ENVS = """environments:
    e1: alpha = 0.5, gamma = 0.5
    e2: alpha = 1, gamma = 0.75
    e3: alpha = 0.75, gamma = 1
"""

LV = """use lotka_volterra
data:
    trajectories {n} train, {val} val, 4 test
    time 0 .. {t1} step 0.5
    initial u, v ~ uniform(1, 2)
    solver dopri5(rtol=1e-8, atol=1e-8)
    seed 0
{envs}{model}
train {method} {train}
"""

PHYSICAL = """prior:
    d(u)/dt = alpha*u - beta*u*v
    d(v)/dt = delta*u*v - gamma*v
    learn alpha, gamma per environment
    learn beta from 0.4, delta from 0.6
"""


def lv_text(model='augment mlp(hidden=16, layers=3, activation="swish")',
            method="leads(lambda_inv=1e-3, spectral=1e-2)", train="epochs 4",
            envs=LV_ENVS, n=1, val=1, t1=4.5):
    return LV.format(model=model, method=method, train=train, envs=envs, n=n, val=val, t1=t1)


@pytest.fixture(scope="module")
def lv_data():
    return physml.simulate(physml.parse_spec(lv_text(), "lv.phy"))


# -- the batched G_e --------------------------------------------------------------------
def _separate(stacked: StackedNetworks) -> list[nn.Module]:
    return [stacked.network(e) for e in range(stacked.n_envs)]


@pytest.mark.parametrize("per_env_scales", [False, True], ids=["shared", "per_env_scales"])
@pytest.mark.parametrize("kind", ["mlp", "convnet", "fno"])
@pytest.mark.parametrize("env", [[0, 1, 2, 0, 1, 2], [2, 0, 0, 1]], ids=["grouped", "mixed"])
def test_batched_g_equals_a_loop_over_separate_networks(kind, env, per_env_scales, float64):
    torch.manual_seed(0)
    if kind == "mlp":
        make = lambda: MLP(3, hidden=8, layers=3, activation="swish", gain=1.0)  # noqa: E731
        shape = (3,)
    elif kind == "fno":  # FFTs under vmap, with each row's spectral weights
        make = lambda: FNO2d(1, modes=3, width=4, hidden=8)  # noqa: E731
        shape = (1, 8, 8)
    else:
        make = lambda: ConvNet(2, 2, channels=4, layers=2, activation="swish",  # noqa: E731
                               norm="none")
        shape = (2, 6, 6)
    g = StackedNetworks(make, 3, shape[0], zero_init=False, per_env_scales=per_env_scales)
    with torch.no_grad():
        g.in_scale.uniform_(0.5, 2)
        g.out_scale.uniform_(0.5, 2)
    env = torch.tensor(env)
    x = torch.randn(len(env), *shape)
    with g.at_rows(env):
        out = g(x)
    nets = _separate(g)
    sh = (1, -1) + (1,) * (x.dim() - 2)

    def scales(e):  # environment e's pair (One-Per-Env), or the shared one
        return (g.in_scale[e], g.out_scale[e]) if per_env_scales else (g.in_scale, g.out_scale)
    loop = torch.stack([nets[e](x[i:i + 1] / scales(e)[0].view(sh))[0] * scales(e)[1].view(sh)[0]
                        for i, e in enumerate(env.tolist())])
    assert torch.allclose(out, loop, atol=1e-6, rtol=0)
    # gradients: of every environment's weights, against the separate networks'
    w = torch.randn_like(out)
    (out * w).sum().backward()
    for n in nets:
        n.zero_grad()
    (loop * w).sum().backward()
    for name, p in zip(g.names, [g.weights[k.replace(".", "__")] for k in g.names]):
        for e in range(3):
            ref = dict(nets[e].named_parameters())[name].grad
            got = p.grad[e]
            if ref is None:  # an environment absent from the rows
                assert float(got.abs().max()) == 0.0
            else:
                assert torch.allclose(got, ref, atol=1e-6, rtol=0), (name, e)



# -- FNO (Navier–Stokes) ------------------------------------------------------------------
def test_fno_output_shape_and_resolution_invariance():
    torch.manual_seed(0)
    net = FNO2d(2, modes=6, width=10)
    assert len(net.spectral) == 4  # four Fourier layers, Li et al. 2021
    with torch.no_grad():  # Li et al.'s initial spectral weights are small: make them count
        for k in net.spectral:
            k.weight.mul_(30)
    for n in (32, 64):
        assert net(torch.randn(3, 2, n, n)).shape == (3, 2, n, n)
    # The same weights see a smooth field the same way at two resolutions: its values on
    # the 32² grid are every other value on the 64² grid (no aliasing, modes 0..2 only).
    g = torch.arange(64) / 64
    X, Y = torch.meshgrid(g, g, indexing="ij")
    w = (torch.sin(2 * torch.pi * X) + 0.5 * torch.cos(4 * torch.pi * Y))[None, None]
    fine, coarse = net(w.repeat(1, 2, 1, 1)), net(w[..., ::2, ::2].repeat(1, 2, 1, 1))
    assert torch.allclose(fine[..., ::2, ::2], coarse, atol=5e-3), \
        float((fine[..., ::2, ::2] - coarse).abs().max())
    # one spectral convolution alone: exactly the same function at both resolutions
    k = net.spectral[0]
    fine, coarse = k(w.repeat(1, 10, 1, 1)), k(w[..., ::2, ::2].repeat(1, 10, 1, 1))
    assert float(fine.abs().max()) > 0.1
    assert torch.allclose(fine[..., ::2, ::2], coarse, atol=1e-5)


def _li_spectral_conv(conv: SpectralConv2d, x: torch.Tensor) -> torch.Tensor:
    """Li et al.'s SpectralConv2d as they wrote it: complex weights written into a zero
    spectrum by indexed assignment (which vmap refuses, hence physml's out-of-place one)."""
    m = conv.modes
    w = torch.complex(conv.weight[:, 0], conv.weight[:, 1])
    xf = torch.fft.rfft2(x, norm="ortho")
    out = torch.zeros(x.shape[0], w.shape[2], x.shape[-2], x.shape[-1] // 2 + 1,
                      dtype=xf.dtype)
    out[:, :, :m, :m] = torch.einsum("bixy,ioxy->boxy", xf[:, :, :m, :m], w[0])
    out[:, :, -m:, :m] = torch.einsum("bixy,ioxy->boxy", xf[:, :, -m:, :m], w[1])
    return torch.fft.irfft2(out, s=x.shape[-2:], norm="ortho")


def test_spectral_convolution_equals_li_et_al_and_keeps_only_the_low_modes(float64):
    torch.manual_seed(0)
    conv = SpectralConv2d(3, 2, modes=4)
    with torch.no_grad():
        conv.weight.normal_()
    x = torch.randn(5, 3, 16, 12)
    ref = _li_spectral_conv(conv, x)
    assert float(ref.abs().max()) > 0.1
    assert torch.allclose(conv(x), ref, atol=1e-12, rtol=0)
    g = torch.arange(16) / 16
    X, Y = torch.meshgrid(g, g, indexing="ij")
    high = torch.sin(2 * torch.pi * 5 * X)[None, None].repeat(1, 3, 1, 1)  # |k| = 5 > 4
    assert float(conv(high).abs().max()) < 1e-12


def test_fno_gradcheck(float64):
    torch.manual_seed(0)
    net = FNO2d(1, modes=2, width=3, layers=2, hidden=4)
    x = torch.randn(2, 1, 6, 6, requires_grad=True)
    assert torch.autograd.gradcheck(net, (x,))
    w = net.spectral[0].weight
    assert torch.autograd.gradcheck(
        lambda p: torch.func.functional_call(net, {"spectral.0.weight": p}, (x,)), (w,))


def test_leads_navier_stokes_spec_checks_with_fno():
    cfg = physml.check(physml.load_spec("specs/leads_navier_stokes.phy"))
    spec = physml.load_spec("specs/leads_navier_stokes.phy")
    model = build_multi_env_model(spec, "leads")
    assert model.per_env.n_envs == 4 and isinstance(model.per_env.base[0], FNO2d)
    assert cfg.solver == "euler"
    x = torch.randn(8, 1, 32, 32)
    with model.at_environments(torch.arange(4).repeat(2)):
        assert model(torch.zeros(()), x).shape == x.shape

def test_the_mlp_path_makes_no_python_loop_over_environments(monkeypatch):
    # Guard against a loop over environments: the MLP path is one bmm per layer.
    g = StackedNetworks(lambda: MLP(2, hidden=8, layers=3), 5, 2, zero_init=False)
    calls = {"n": 0}
    real = torch.baddbmm

    def count(*a, **k):
        calls["n"] += 1
        return real(*a, **k)

    monkeypatch.setattr(torch, "baddbmm", count)
    with g.at_rows(torch.arange(5).repeat(3)):
        g(torch.randn(15, 2))
    assert calls["n"] == 3  # three layers, whatever the number of environments


# -- Ω ----------------------------------------------------------------------------------
def test_spectral_norm_estimate_matches_matrix_norm(float64):
    torch.manual_seed(1)
    W = torch.randn(4, 16, 12) @ torch.diag(torch.linspace(3, 0.5, 12))
    est = SpectralNorms(iterations=1, warmup=200)
    sigma = est.sigmas({"w": W})["w"]
    ref = torch.linalg.matrix_norm(W, 2)
    assert torch.allclose(sigma, ref, rtol=1e-6)
    # Persistent vectors: one iteration per step tracks a slowly moving matrix.
    for _ in range(20):
        W = W + 1e-3 * torch.randn_like(W)
        sigma = est.sigmas({"w": W})["w"]
    assert torch.allclose(sigma, torch.linalg.matrix_norm(W, 2), rtol=1e-4)
    # σ is differentiable in W with gradient u vᵀ (that of the true σ at convergence)
    W.requires_grad_(True)
    est.sigmas({"w": W})["w"].sum().backward()
    u, s, vh = torch.linalg.svd(W.detach())
    ref_grad = u[:, :, :1] @ vh[:, :1, :]
    assert torch.allclose(W.grad.abs(), ref_grad.abs(), atol=2e-3)


def test_spectral_state_is_saved_and_restored():
    est = SpectralNorms(warmup=3)
    W = torch.randn(2, 5, 4)
    est.sigmas({"a": W})
    other = SpectralNorms(warmup=3)
    other.load_state_dict(est.state_dict())
    assert torch.equal(other.sigmas({"a": W})["a"], est.sigmas({"a": W})["a"])


def test_omega_is_zero_for_zero_g_and_positive_otherwise(lv_data):
    spec = physml.parse_spec(lv_text(), "lv.phy")
    model = build_multi_env_model(spec, "leads")
    with torch.no_grad():
        for p in model.per_env.parameters():
            p.zero_()
    frames = lv_data.splits["train"].flatten(0, 1).to(torch.float32)  # (E·N, T, 2)
    env = torch.arange(3).repeat_interleave(frames.shape[1])
    states = frames.flatten(0, 1)
    obj = Leads(lambda_inv=1.0, spectral=1.0)
    norms = model.env_norms(states, env, relative=True)
    assert norms.tolist() == [0.0, 0.0, 0.0]
    rollout = physml.models.Rollout(model)
    l2, spec_term = obj.omega(rollout, norms)
    assert float(l2) == 0.0 and float(spec_term) == 0.0
    with torch.no_grad():
        model.per_env.weights["net__4__bias"][1] = 0.3  # G_e2(x) = 0.3·s_out: e2 only
    norms = model.env_norms(states, env, relative=False)
    s = model.per_env.out_scale
    assert float(norms[0]) == 0.0 and float(norms[2]) == 0.0
    assert float(norms[1]) == pytest.approx(float((0.3 * s).pow(2).sum()), rel=1e-5)


# -- training -------------------------------------------------------------------------
TOY = """system toy
state x
param c = 0 in (-inf, inf)
dynamics:
    d(x)/dt = -x + c
data:
    trajectories 4 train, 1 val, 4 test
    time 0 .. 2 step 0.25
    initial x ~ uniform(-1, 1)
    solver dopri5(rtol=1e-8, atol=1e-8)
    seed 0
environments:
    plus: c = 0.5
    minus: c = -0.3
prior:
    d(x)/dt = -x
per_environment mlp(hidden=16, layers=2, activation="tanh")
train leads(lambda_inv=1e-4, spectral=0, norm="absolute") epochs 300 lr 2e-2 batch 8 val_every 100
"""


def test_two_environment_toy_recovers_the_per_environment_term(tmp_path):
    # dx/dt = -x + c_e with the prior -x: the per-environment term is G_e(x) = c_e.
    run = physml.train(physml.parse_spec(TOY, "toy.phy"), out=tmp_path / "toy",
                       data_dir=tmp_path / "data", report=False)
    model = run.load_model("last")
    x = torch.linspace(-1, 1, 21).unsqueeze(1)
    for e, c in enumerate((0.5, -0.3)):
        g = model.field.per_env(x, env=torch.full((21,), e))
        assert float((g - c).abs().max()) < 0.02, (e, g.flatten())


def test_resume_of_a_leads_run_is_bit_exact(tmp_path, lv_data):
    spec = physml.parse_spec(lv_text(train="epochs 6 teacher_forcing 0.9 val_every 2"),
                             "lv.phy")
    full = physml.train(spec, dataset=lv_data, out=tmp_path / "full", report=False)
    part = physml.train(spec, dataset=lv_data, out=tmp_path / "part", report=False, steps=3)
    resumed = physml.train(resume=part.path, dataset=lv_data, report=False)
    a = torch.load(full.path / "checkpoints/last.pt", weights_only=True)
    b = torch.load(resumed.path / "checkpoints/last.pt", weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["objective"]:
        assert torch.equal(a["objective"][k], b["objective"][k]), k
    fa = [m["loss"] for m in full.metrics() if "loss" in m]
    fb = [m["loss"] for m in resumed.metrics() if "loss" in m]
    assert fa == fb and len(fa) == 6


@pytest.mark.parametrize("method", ["leads", "leads_no_min", "one_for_all", "one_per_env",
                                    "ft_node", "gbml(switch=1)"])
def test_every_method_trains_and_reports_per_environment(tmp_path, lv_data, method):
    spec = physml.parse_spec(lv_text(method=method, train="epochs 2 teacher_forcing 0.99"),
                             "lv.phy")
    run = physml.train(spec, dataset=lv_data, out=tmp_path / method[:4])
    rep = json.loads((run.path / "report.json").read_text())["evaluate"]
    envs = rep["environments"]
    assert [r["environment"] for r in envs["per_environment"]] == ["e1", "e2", "e3"]
    mses = [r["mse"] for r in envs["per_environment"]]
    assert envs["mse_env_mean"] == pytest.approx(sum(mses) / 3)
    assert envs["mse_env_std"] == pytest.approx(float(np.std(mses, ddof=1)))
    assert rep["mse"] == pytest.approx(envs["mse_env_mean"], rel=1e-5)  # 4 test each
    assert len(rep["train_environments"]["per_environment"]) == 3
    assert (run.path / "plots" / "environments.png").stat().st_size > 0


def test_gbml_fine_tunes_copies_of_the_shared_network(lv_data):
    from physml.data import Trajectories
    from physml.experiment import build

    exp = build(physml.parse_spec(lv_text(method="gbml(switch=2)"), "lv.phy"))
    batch = Trajectories(lv_data.splits["train"], lv_data.times).batch()
    opt = torch.optim.Adam(exp.rollout.parameters(), lr=1e-2)
    field = exp.rollout.field
    for step in range(4):
        if step == 2:
            shared = {k: v.clone() for k, v in field.augmentation.net.state_dict().items()}
        loss, _ = exp.objective.loss(exp.rollout, batch)
        if step == 2:  # the switch: every environment starts from the shared network
            assert int(field.phase) == 1
            for k, v in shared.items():
                w = field.per_env.weights[k.replace(".", "__")]
                assert torch.equal(w.detach(), v.expand_as(w)), k
        opt.zero_grad()
        loss.backward()
        opt.step()
        exp.objective.after_batch(float(loss))
    w = field.per_env.weights["net__0__weight"]
    assert not torch.equal(w[0], w[1])  # fine-tuned apart
    assert torch.equal(field.augmentation.net.net[0].weight, shared["net.0.weight"])


@pytest.mark.parametrize("method", ["leads", "one_per_env", "ft_node"])
def test_mlp_normal_init_and_unit_scales(lv_data, method):
    """`mlp(init="normal", gain=G, scale=false, zero_last=false)`, the networks of the
    LEADS code: weights N(0, G²), the last layer too, and input/output scales left at 1;
    by default the scales fit the data and the last layer starts at zero."""
    from physml.experiment.data import fit_scales, training_data
    from physml.experiment.build import build
    from physml.training.config import TrainConfig

    def built(options):
        text = lv_text(model=f'augment mlp(hidden=64, layers=3, activation="swish"{options})',
                       method=method)
        spec = physml.parse_spec(text, "lv.phy")
        torch.manual_seed(0)
        exp = build(spec)
        data, _ = training_data(lv_data, TrainConfig())
        fit_scales(exp.rollout, data, float(lv_data.dt))
        field = exp.rollout.field
        nets = [m for m in (field.augmentation, field.per_env) if m is not None]
        return nets

    def last_weight(net):
        return [p for n, p in net.named_parameters() if p.dim() >= 2][-1]

    for net in built(', init="normal", gain=0.05, scale=false, zero_last=false'):
        assert float(last_weight(net).detach().std()) == pytest.approx(0.05, rel=0.3)
        assert torch.equal(net.in_scale, torch.ones_like(net.in_scale))
        assert torch.equal(net.out_scale, torch.ones_like(net.out_scale))
        hidden = [p for n, p in net.named_parameters() if p.dim() >= 2 and p.shape[-1] >= 64
                  and p.shape[-2] == 64]   # 64 → 64 (ft_node: and the environment code)
        assert hidden and float(torch.cat([p.flatten() for p in hidden]).std()) \
            == pytest.approx(0.05, rel=0.05)
    for net in built(""):
        assert not torch.equal(net.in_scale, torch.ones_like(net.in_scale))
        assert not last_weight(net).any()


def test_one_per_env_shares_nothing_and_one_for_all_has_no_g(lv_data):
    spec = physml.parse_spec(lv_text(), "lv.phy")
    ope = build_multi_env_model(spec, "one_per_env")
    assert ope.augmentation is None and ope.per_env.n_envs == 3
    ofa = build_multi_env_model(spec, "one_for_all")
    assert ofa.per_env is None and ofa.augmentation is not None
    leads = build_multi_env_model(spec, "leads")
    assert leads.augmentation is not None and leads.per_env.n_envs == 3


def test_per_environment_parameters_are_recovered_from_one_trajectory(tmp_path):
    text = lv_text(model=PHYSICAL, method="leads",
                   train="epochs 200 lr 3e-2 val_every 50 solver rk4(step=0.25)",
                   t1=9.5)
    run = physml.train(physml.parse_spec(text, "lv.phy"), out=tmp_path / "phys",
                       data_dir=tmp_path / "data")
    rep = json.loads((run.path / "report.json").read_text())
    rows = {p["name"]: p for p in rep["evaluate"]["parameters"]}
    assert set(rows) == {"beta", "delta", *(f"{p}[e{i}]" for p in ("alpha", "gamma")
                                            for i in (1, 2, 3))}
    worst = max(p["error_pct"] for p in rows.values())
    assert worst < 3.0, rows
    table = rep["inspect"]["environment_parameters"]
    assert [r["environment"] for r in table] == ["e1", "e2", "e3"]
    assert table[1]["alpha_true"] == 1.0 and table[2]["gamma_true"] == 1.0
    assert "e2" in rep["inspect"]["environment_equations"]
    from typer.testing import CliRunner

    from physml.cli.app import app

    out = CliRunner().invoke(app, ["evaluate", str(run.path)]).output
    assert "gamma[e2]" in out and "mean ± std" in out and "alpha (true, error)" in out
    out = CliRunner().invoke(app, ["inspect", str(run.path)]).output
    assert "e3:  d(u)/dt =" in out


@pytest.mark.slow
def test_per_environment_lv_parameters_within_two_percent_ten_environments(tmp_path):
    # Issue 11's acceptance: LV, 10 environments, 1 training trajectory each.
    import re

    spec_text = open("specs/leads_lotka_volterra.phy").read()
    spec_text, n_aug = re.subn(r"(?m)^augment .*$", PHYSICAL.rstrip(), spec_text)
    spec_text, n_train = re.subn(
        r"(?m)^train .*$", "train leads epochs 400 lr 3e-2 val_every 50 solver rk4(step=0.125)",
        spec_text)
    assert n_aug == n_train == 1 and "trajectories 1 train, 8 val, 32 test" in spec_text
    run = physml.train(physml.parse_spec(spec_text, "lv.phy"), out=tmp_path / "phys",
                       data_dir=tmp_path / "data")
    rows = json.loads((run.path / "report.json").read_text())["evaluate"]["parameters"]
    assert len(rows) == 22
    assert max(p["error_pct"] for p in rows) < 2.0, rows


# -- the plateau rule -----------------------------------------------------------------
@pytest.mark.parametrize("restore", [True, False])
def test_plateau_rule_decays_with_or_without_going_back(tmp_path, lv_data, monkeypatch, restore):
    # Validation errors that only rise after the first: every check is a plateau.
    from physml.training.trainer import Trainer

    errors = iter([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    monkeypatch.setattr(Trainer, "validate", lambda self: next(errors))
    train = f"epochs 4 lr 1e-2 val_every 1 plateau 1 lr_decay 0.5 plateau_restore {str(restore).lower()}"
    run = physml.train(physml.parse_spec(lv_text(train=train), "lv.phy"), out=tmp_path / "r",
                       dataset=lv_data)
    last, best = run.checkpoint("last"), run.checkpoint("best")
    decays = json.loads(last["decays"])
    assert [d["step"] for d in decays] == [2, 3, 4]
    assert [d["lr"] for d in decays] == pytest.approx([5e-3, 2.5e-3, 1.25e-3])
    assert all(d["back_to"] == (1 if restore else None) for d in decays)
    same = all(torch.equal(last["model"][k], v) for k, v in best["model"].items())
    assert same == restore  # back to the best state, or on from where the run was


# -- teacher forcing ----------------------------------------------------------------
def test_teacher_forcing_restarts_from_the_data(lv_data):
    spec = physml.parse_spec(lv_text(), "lv.phy")
    exp = physml.experiment.build(spec)
    from physml.data import Trajectories

    batch = Trajectories(lv_data.splits["train"], lv_data.times).batch()
    rollout = exp.rollout
    free = rollout(batch).pred
    T = batch.t.shape[0]
    batch.restart = torch.zeros(T, dtype=torch.bool)
    assert torch.equal(rollout(batch).pred, free)  # no restart: the free forecast
    batch.restart[4] = True
    forced = rollout(batch).pred
    assert torch.equal(forced[:, :5], free[:, :5])  # frame 4 itself is still predicted
    tail = rollout.integrate(batch.target[:, 4], batch.t[4:], batch.env)
    assert torch.allclose(forced[:, 4:][:, 1:], tail[:, 1:], atol=1e-6)
    batch.restart[:] = True  # every frame: one-step forecasts from the data
    one = rollout(batch).pred
    step = rollout.integrate(batch.target[:, 2], batch.t[2:4], batch.env)[:, 1]
    assert torch.allclose(one[:, 3], step, atol=1e-6)


# -- spec errors ------------------------------------------------------------------------
def _error(text: str, check: bool = False) -> str:
    with pytest.raises(physml.SpecError) as info:
        spec = physml.parse_spec(text, "s.phy")
        if check:
            physml.check(spec)
    return str(info.value)


def _where(text: str, needle: str, nth: int = 0) -> tuple[int, int]:
    lines = text.splitlines()
    hits = [(i + 1, l.index(needle) + 1) for i, l in enumerate(lines) if needle in l]
    return hits[nth]


def test_environment_naming_an_unknown_parameter_is_located():
    text = lv_text(envs=LV_ENVS.replace("e2: alpha = 1", "e2: alpah = 1"))
    line, col = _where(text, "alpah")
    assert _error(text).startswith(f"s.phy:{line}:{col}: environments: 'alpah' is not a "
                                   "parameter")


def test_per_environment_on_a_parameter_the_prior_does_not_use_is_located():
    model = PHYSICAL.replace("    learn beta from 0.4, delta from 0.6\n",
                             "    learn beta from 0.4, delta from 0.6\n"
                             "    learn alpha2 per environment\n")
    text = lv_text(model=model).replace("use lotka_volterra\n", "")
    text = ("system lv2\nstate u, v\nparam alpha = 0.5 in (0, inf)\nparam beta = 0.5\n"
            "param gamma = 0.5\nparam delta = 0.5\nparam alpha2 = 1\ndynamics:\n"
            "    d(u)/dt = alpha*u - beta*u*v\n    d(v)/dt = delta*u*v - gamma*v\n") + text
    line, col = _where(text, "alpha2 per")
    assert _error(text).startswith(f"s.phy:{line}:{col}: 'alpha2' is learned per "
                                   "environment but the prior does not use it")


def test_per_environment_with_a_one_model_method_is_located():
    text = lv_text(model=PHYSICAL, method="physics")
    line, col = _where(text, "alpha, gamma per")
    msg = _error(text, check=True)
    assert msg.startswith(f"s.phy:{line}:{col}: 'alpha' is learned per environment, but "
                          "`train physics` learns one model for all environments")


def test_per_environment_network_with_a_one_model_method_is_located():
    text = lv_text(model='per_environment mlp(hidden=8)', method="neural")
    line, col = _where(text, "mlp(hidden=8)")
    assert _error(text, check=True).startswith(
        f"s.phy:{line}:{col}: `per_environment mlp` declares networks per environment, but "
        "`train neural` learns one model for all environments")


@pytest.mark.parametrize("line, message", [
    ('augment mlp(hidden=8, zero_last=maybe)', "mlp(): zero_last='maybe': write true or false"),
    ('augment mlp(hidden=8, init="uniform")',
     "mlp(): init must be 'orthogonal' or 'normal', not 'uniform'"),
    ('per_environment mlp(hidden=8, scale=2)', "mlp(): scale=2: write true or false"),
])
def test_a_network_option_value_is_located_at_the_network(line, message):
    """`check` refuses what the network builder would, pointing at the network's line (not
    at the `train` line whose method happened to build it)."""
    text = lv_text(model=line, method="leads")
    row, col = _where(text, "mlp(")
    assert _error(text, check=True).startswith(f"s.phy:{row}:{col}: {message}")


def test_environment_count_differing_from_the_data_file_is_located(tmp_path):
    t = np.arange(0, 5, 0.5)
    rng = np.random.default_rng(0)
    u, v = 1 + rng.random((2, 1, t.size)), 1 + rng.random((2, 1, t.size))  # 2 environments
    np.savez(tmp_path / "two.npz", t=t, u=u, v=v)
    text = ('use lotka_volterra\ndata:\n    file "two.npz"\n' + LV_ENVS +
            'augment mlp(hidden=8, layers=2)\ntrain leads epochs 1\n')
    (tmp_path / "s.phy").write_text(text)
    spec = physml.load_spec(tmp_path / "s.phy")
    with pytest.raises(physml.SpecError) as info:
        physml.train(spec, out=tmp_path / "r")
    line, col = _where(text, "e1:")
    assert str(info.value).startswith(
        f"{tmp_path / 's.phy'}:{line}:{col}: the spec declares 3 environments but the data "
        f"file {tmp_path / 'two.npz'} holds 2")


def test_check_accepts_the_leads_specs_and_the_new_syntax():
    for name in ("lotka_volterra", "gray_scott"):
        physml.check(physml.load_spec(f"specs/leads_{name}.phy"))
    spec = physml.parse_spec(lv_text(model=PHYSICAL + 'per_environment mlp(hidden=8)\n'),
                             "s.phy")
    assert spec.prior.per_environment == ("alpha", "gamma")
    assert spec.per_environment.name == "mlp"
    physml.check(spec)
    spec = physml.parse_spec(lv_text(model=PHYSICAL.replace(
        "learn alpha, gamma per environment", "learn alpha per environment from 0.6, gamma")),
        "s.phy")
    assert spec.prior.per_environment == ("alpha",) and dict(spec.prior.learn)["alpha"] == 0.6


def test_readme_leads_block_parses_checks_and_builds():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = text.split("### Several environments (LEADS)", 1)[1].split("```", 2)[1].strip()
    spec = physml.parse_spec(block + "\n", str(Path(__file__).resolve().parents[1] / "specs"
                                                / "readme.phy"))
    assert spec.prior.per_environment == ("alpha", "gamma")
    assert dict(spec.prior.learn)["alpha"] == 0.6
    assert physml.check(spec).teacher_forcing == 0.99
    model = build_multi_env_model(spec, "leads")
    assert model.env_params.values()["alpha"].tolist() == pytest.approx([0.6, 0.6])
    assert model.per_env.n_envs == 2 and model.augmentation is None


NEW_ENVS = """environments:
    n1: alpha = 0.625, gamma = 0.625
    n2: alpha = 0.875, gamma = 0.875
"""


def test_adapt_learns_only_new_g_and_leaves_f_bit_identical(tmp_path, lv_data):
    from typer.testing import CliRunner

    from physml.cli.app import app
    from physml.experiment import adapt

    spec = physml.parse_spec(lv_text(train="epochs 20 lr 1e-2"), "lv.phy")
    run = physml.train(spec, dataset=lv_data, out=tmp_path / "run", report=False)
    (tmp_path / "new.phy").write_text(lv_text(envs=NEW_ENVS))
    res = adapt(run, tmp_path / "new.phy", out=tmp_path / "ad", budget=60,
                data_dir=tmp_path / "data")
    old = torch.load(run.path / "checkpoints/best.pt", weights_only=True)["model"]
    shared = [k for k in res["frozen_F"] if k.startswith(("augmentation.", "prior."))]
    assert shared
    for k in shared:
        assert torch.equal(res["frozen_F"][k], old["field." + k]), k
    assert set(res["table"]) == {"pretrained_F", "one_per_env", "leads"}
    assert set(res["table"]["leads"]) == {"50", "60"}
    mse = res["test_mse"]
    assert len(set(mse["pretrained_F"].values())) == 1  # nothing learned
    # LEADS starts from F alone (G_e' = 0) and then learns G_e'
    assert mse["leads"]["0"] == mse["pretrained_F"]["0"] != mse["leads"]["60"]
    assert all(math.isfinite(v) for r in mse.values() for v in r.values())
    assert (tmp_path / "ad" / "adapt.png").stat().st_size > 0
    saved = json.loads((tmp_path / "ad" / "adapt.json").read_text())
    assert saved["environments"] == ["n1", "n2"]
    out = CliRunner().invoke(app, ["adapt", str(run.path), str(tmp_path / "new.phy"),
                                   "--steps", "5", "--data-dir", str(tmp_path / "data")])
    assert out.exit_code == 0, out.output
    assert "pretrained_F" in out.output and (run.path / "adapt" / "adapt.json").exists()


def test_teacher_forcing_trains_a_one_environment_method(tmp_path):
    text = lv_text(envs="", model=PHYSICAL.replace("    learn alpha, gamma per environment\n",
                                                   "    learn alpha, gamma\n"),
                   method="physics", train="epochs 3 teacher_forcing 0.5")
    run = physml.train(physml.parse_spec(text, "lv.phy"), out=tmp_path / "p", report=False,
                       data_dir=tmp_path / "data")
    steps = [m for m in run.metrics() if "loss" in m]
    assert len(steps) == 3 and all(math.isfinite(m["loss"]) for m in steps)
    assert run.config.teacher_forcing == 0.5


# -- Table 3.14 (benchmarks/reproduce_leads.py) -------------------------------------------
def _reproduce_leads():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "reproduce_leads.py"
    spec = importlib.util.spec_from_file_location("reproduce_leads", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table3_14_specs_are_the_leads_specs_with_the_row_method():
    bench = _reproduce_leads()
    files = sorted(p.name for p in bench.SPECS.glob("*.phy")
                   if "_authors_" not in p.stem)   # written by hand, below
    expected = sorted(f"{s}_{k}.phy" for s in bench.SOURCES for k in bench.rows_for(s))
    assert files == expected and len(files) == 6 + 5 + 5  # no FT-NODE on grids
    for system in bench.SOURCES:
        source = physml.load_spec(f"specs/{bench.SOURCES[system]}.phy")
        for key in bench.rows_for(system):
            path = bench.SPECS / f"{system}_{key}.phy"
            # in sync with its source (--write-specs rewrites them)
            assert path.read_text(encoding="utf-8") == bench.row_spec_text(system, key), path
            spec = physml.load_spec(path)
            cfg = physml.check(spec)
            assert cfg.method == dict((k, m) for k, _, m in bench.ROWS)[key]
            # same data and networks as the source: the rows share their dataset
            assert spec.data == source.data and spec.environments == source.environments
            assert spec.augment == source.augment
            assert cfg.epochs == physml.check(source).epochs
    assert physml.check(physml.load_spec(bench.SPECS / "lv_gbml.phy")).method_options == \
        {"switch": 60000}
    quick = bench._spec("ns", "leads", quick=True)
    assert quick.data != physml.load_spec(bench.SPECS / "ns_leads.phy").data


def test_one_per_env_fits_each_environment_its_own_scales():
    """One-Per-Env's networks learn nothing from other environments' data, not even their
    scale: each environment's input/output scales are the RMS of its own states and rates
    (LEADS's G_e share one pair, like F)."""
    frames = torch.rand(4, 5, 2, dtype=torch.float64) + 0.5
    frames[2:] = 10 * frames[:2]                          # environment 1: 10× environment 0
    env = torch.tensor([0, 0, 1, 1])
    text = lv_text(method="one_per_env").replace("    e3: alpha = 0.75, gamma = 1\n", "")
    spec = physml.parse_spec(text, "lv.phy")
    ope = physml.experiment.build(spec).rollout.field
    ope.fit_scales(frames.float(), 0.5, env=env)
    for e in (0, 1):
        rms = frames[env == e].pow(2).mean(dim=(0, 1)).sqrt()
        assert torch.allclose(ope.per_env.in_scale[e].double(), rms, rtol=1e-6)
    assert torch.allclose(ope.per_env.in_scale[1], 10 * ope.per_env.in_scale[0], rtol=1e-6)
    leads = physml.experiment.build(physml.parse_spec(
        text.replace("train one_per_env", "train leads"), "lv.phy")).rollout.field
    leads.fit_scales(frames.float(), 0.5, env=env)
    assert leads.per_env.in_scale.shape == (2,)
    assert torch.allclose(leads.per_env.in_scale.double(),
                          frames.pow(2).mean(dim=(0, 1)).sqrt(), rtol=1e-6)


def test_lv_data_of_the_authors_code_start_where_theirs_do():
    """specs/table3_14/lv_authors_data.npz: the LEADS repository's initial states
    (np.random.seed(j) for training, seed 2**31 - 1 - j for testing), orbits of
    α u − β u v, δ u v − γ v with each environment's (α, γ)."""
    import importlib.util

    import numpy as np

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("lvad", root / "benchmarks" / "lv_authors_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    np.random.seed(0)
    assert np.array_equal(mod.initial_state(0), np.random.random(2) + 1)
    data = np.load(root / "specs" / "table3_14" / "lv_authors_data.npz")
    assert data["train_u"].shape == (10, 1, 20) and data["test_v"].shape == (10, 32, 20)
    assert np.allclose(data["train_u"][:, 0, 0], 1.5488135039273248)
    assert np.allclose(data["test_u"][:, 0, 0], mod.initial_state(2**31 - 1)[0])
    a, g = mod.PAIRS[3]                                   # e4: α = 1, γ = 0.5
    u, v = data["train_u"][3, 0], data["train_v"][3, 0]
    # the orbit conserves V = δu − γ ln u + βv − α ln v
    V = 0.5 * u - g * np.log(u) + 0.5 * v - a * np.log(v)
    assert np.ptp(V) < 1e-8
    run_spec = physml.load_spec(root / "specs" / "table3_14" / "lv_leads_authors_data.phy")
    row = physml.load_spec(root / "specs" / "table3_14" / "lv_leads.phy")
    # lv_leads_authors_nets.phy (the source of the LV rows): these data, with the networks
    # and λ of the LEADS code
    nets = physml.load_spec(root / "specs" / "table3_14" / "lv_leads_authors_nets.phy")
    assert nets.environments == run_spec.environments and nets.data == run_spec.data
    assert run_spec.data.file.endswith("lv_authors_data.npz")
    assert row.data == nets.data and row.augment == nets.augment and row.train == nets.train
    options = nets.augment.options()
    assert options["init"] == "normal" and options["gain"] == 0.05
    assert options["scale"] == "false" and options["zero_last"] == "false"
    # the novel environments of Table 3.13 start where the training orbits do
    novel = np.load(root / "specs" / "table3_14" / "lv_authors_novel.npz")
    assert novel["train_u"].shape == (2, 1, 20) and novel["test_v"].shape == (2, 32, 20)
    assert np.array_equal(novel["test_u"][:, :, 0], data["test_u"][:2, :, 0])
    a, g = mod.NOVEL_PAIRS[1]
    u, v = novel["train_u"][1, 0], novel["train_v"][1, 0]
    assert np.ptp(0.5 * u - g * np.log(u) + 0.5 * v - a * np.log(v)) < 1e-8
    assert nets.train.method.options()["lambda_inv"] == pytest.approx(1 / 5e3)
