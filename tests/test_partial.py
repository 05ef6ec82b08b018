"""Partially observed systems (issue 12, thesis ch. 2): hidden channels never reach the
loss, encoders (Setting 1) and given initial states (Setting 2), the chapter's metrics
(eqs. 2.6, 2.7) against hand computations, user data without the hidden variable, the
located errors, and the scaling symmetry of a hidden variable."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import sympy
import torch

import physml
from physml.data import Trajectories, load_dataset, save_dataset
from physml.experiment.build import build
from physml.objectives.partial import hidden_cosine, per_horizon, relative_mse
from physml.symbolic.identifiability import non_identifiable, scaling_symmetries

pytestmark = pytest.mark.usefixtures("one_thread")

LV = """\
use lotka_volterra
data:
    trajectories 6 train, 2 val, 2 test
    time 0 .. 2 step 0.25
    history 2
    initial u, v ~ uniform(1, 2)
    seed 4
{observe}
{encoder}
prior:
    d(u)/dt = alpha*u - beta*u*v
    d(v)/dt = delta*u*v - gamma*v
    learn alpha from 0.8, beta from 0.8, gamma from 0.8, delta from 0.8
train physics solver rk4 epochs 2 batch 6 lr 1e-3 val_every 1 {options}
"""


def lv_spec(tmp_path, observe="observe u", encoder="encoder mlp(hidden=16, layers=2)",
            options="", data=None):
    text = LV.format(observe=observe, encoder=encoder, options=options)
    if data is not None:
        text = text.replace("    initial u, v ~ uniform(1, 2)\n", data)
    path = tmp_path / "lv.phy"
    path.write_text(text)
    return physml.load_spec(path)


@pytest.fixture(scope="module")
def lv_data(tmp_path_factory):
    return physml.simulate(lv_spec(tmp_path_factory.mktemp("lv")))


def _quiet(exp):
    """A fresh encoder's hidden estimate can be anything (an exploding forecast swamps
    every difference): start it at v0 = 1 instead."""
    enc = exp.rollout.encoder
    if enc is not None:
        last = [m for m in enc.modules() if isinstance(m, torch.nn.Linear)][-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.constant_(last.bias, 1.0)
    return exp


def _loss(spec, frames, times, history):
    exp = _quiet(build(spec))
    from physml.experiment.partial import readout_of

    traj = Trajectories(frames, times, history, observed=spec.observed_channels(),
                        readout=readout_of(spec))
    torch.manual_seed(0)
    loss, _ = exp.objective.loss(exp.rollout, traj.batch())
    return float(loss.detach())


@pytest.mark.parametrize("encoder", ["encoder mlp(hidden=16, layers=2)",
                                     "encoder gru(hidden=8)", ""])
def test_loss_does_not_see_hidden_channels(tmp_path, lv_data, encoder):
    spec = lv_spec(tmp_path, encoder=encoder)
    frames = lv_data["train"]
    base = _loss(spec, frames, lv_data.times, lv_data.history)
    altered = frames.clone()
    # With an encoder nothing of v is seen; given initial states (Setting 2) use v at t0
    # only, so the hidden channel is altered everywhere else.
    start = 0 if encoder else lv_data.history + 1
    altered[:, :, start:, 1] = torch.randn_like(altered[:, :, start:, 1]) * 100
    assert _loss(spec, altered, lv_data.times, lv_data.history) == base
    # ... while the observed channel does count.
    altered[:, :, -1, 0] += 1.0
    assert _loss(spec, altered, lv_data.times, lv_data.history) != base
    # The loss is the MSE over the observed channel alone, computed by hand.
    exp = _quiet(build(spec))
    traj = Trajectories(frames, lv_data.times, lv_data.history, observed=[0])
    batch = traj.batch()
    pred = exp.rollout(batch).pred
    hand = float((pred[..., 0].detach() - frames.flatten(0, 1)[:, lv_data.history:, 0]).pow(2).mean())
    assert base == pytest.approx(hand, rel=1e-6)


class TrueState(torch.nn.Module):
    """An 'encoder' handed the true initial states (less the observed part the rollout
    adds itself)."""

    def __init__(self, x0, observed):
        super().__init__()
        self.frames = 1
        self.x0 = x0.clone()
        self.x0[:, observed] = 0

    def forward(self, frames):
        return self.x0


def test_encoder_given_the_true_state_reproduces_the_full_observation_model(tmp_path,
                                                                             lv_data):
    partial = build(lv_spec(tmp_path))
    full = build(lv_spec(tmp_path, observe="", encoder=""))
    full.rollout.load_state_dict(partial.rollout.state_dict(), strict=False)
    traj_full = Trajectories(lv_data["train"], lv_data.times, lv_data.history)
    traj_part = Trajectories(lv_data["train"], lv_data.times, lv_data.history, observed=[0])
    x0 = traj_full.batch().x0
    partial.rollout.encoder = TrueState(x0, [0])
    got = partial.rollout(traj_part.batch()).pred
    want = full.rollout(traj_full.batch()).pred
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    # The truth is the simulated data: the full model with the true parameters and x0.
    assert torch.all(got[:, :, 1] != 0)
    # predict() (evaluation) starts from the encoder's estimate too.
    torch.testing.assert_close(partial.rollout.predict(traj_part.batch()), want.detach())


def test_relative_mse_and_cosine_by_hand():
    # One ODE trajectory, observed channel y = (·, 2, 4, -1) against the forecast
    # (·, 1, 4, 1): |1 − 2|/2 = 0.5, 0/4 = 0, |1 + 1|/1 = 2.
    y = torch.tensor([[[9.0], [2.0], [4.0], [-1.0]]])
    p = torch.tensor([[[0.0], [1.0], [4.0], [1.0]]])
    assert relative_mse(p, y) == pytest.approx((0.5 + 0.0 + 2.0) / 3)
    assert relative_mse(p, y, horizon=2) == pytest.approx(0.25)
    # A 2 × 1 grid with two observed channels: the norm is over the channels per point.
    # frame 1: point a: pred (3, 4) vs y (0, 0)+(…) — use y = (3, 0), pred (3, 4): 4/3;
    # point b: y = (0, 5), pred (0, 0): 5/5 = 1.
    y = torch.zeros(1, 2, 2, 2, 1)
    p = torch.zeros(1, 2, 2, 2, 1)
    y[0, 1, :, 0, 0] = torch.tensor([3.0, 0.0])
    p[0, 1, :, 0, 0] = torch.tensor([3.0, 4.0])
    y[0, 1, :, 1, 0] = torch.tensor([0.0, 5.0])
    assert relative_mse(p, y) == pytest.approx((4 / 3 + 1) / 2)
    # Cosine of hidden vectors (1, 0) vs (1, 1) = 1/√2; (0, 2) vs (0, −3) = −1.
    a = torch.zeros(1, 3, 2)
    b = torch.zeros(1, 3, 2)
    a[0, 1], b[0, 1] = torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])
    a[0, 2], b[0, 2] = torch.tensor([0.0, 2.0]), torch.tensor([0.0, -3.0])
    assert hidden_cosine(a, b) == pytest.approx((1 / math.sqrt(2) - 1) / 2)
    assert hidden_cosine(a, b, horizon=1) == pytest.approx(1 / math.sqrt(2))
    # Per horizon: the thesis's T = 5, 10, 50, those the forecast reaches.
    long = torch.rand(2, 12, 1) + 1
    assert list(per_horizon(relative_mse, long, long)) == ["T=5", "T=10"]


def test_user_data_without_the_hidden_variable_load_and_train(tmp_path, lv_data):
    frames = lv_data["train"][0].numpy()            # (N, T, 2): history frames included
    np.savez(tmp_path / "prey.npz", t=lv_data.times.numpy(), u=frames[..., 0])
    spec = lv_spec(tmp_path, data="    file \"prey.npz\"\n")
    text = spec.text.replace("    trajectories 6 train, 2 val, 2 test\n",
                             "    trajectories 4 train, 2 val\n").replace(
        "    seed 4\n", "").replace("    time 0 .. 2 step 0.25\n", "")
    (tmp_path / "lv.phy").write_text(text)
    spec = physml.load_spec(tmp_path / "lv.phy")
    ds = load_dataset(tmp_path / "prey.npz", spec=spec)
    assert ds.observed == ("u",)
    assert torch.isnan(ds["train"][..., 1]).all()
    torch.testing.assert_close(ds["train"][..., 0], lv_data["train"][:, :4, :, 0])
    run = physml.train(spec, out=tmp_path / "run", report=False)
    assert run.stop_reason == "epochs" and len(run.metrics()) == 4   # 2 steps, 2 validations
    ev = physml.evaluate(run, split="val")
    assert ev["partial"]["hidden"] == ["v"] and "hidden_cosine" not in ev["partial"]
    assert math.isfinite(ev["mse"]) and math.isfinite(ev["partial"]["relative_mse"]["T=5"])
    # Without an encoder the hidden initial states are unknown: a plain error.
    (tmp_path / "lv.phy").write_text(text.replace("encoder mlp(hidden=16, layers=2)\n", ""))
    with pytest.raises(physml.data.DataError, match="'v' has no value at t0 in the train data"):
        physml.train(physml.load_spec(tmp_path / "lv.phy"), out=tmp_path / "run2", steps=1)
    # Setting 2 for user data: the hidden variable's array holds its initial values only.
    v = np.full(frames.shape[:2], np.nan)
    v[:, lv_data.history] = frames[:, lv_data.history, 1]
    np.savez(tmp_path / "prey.npz", t=lv_data.times.numpy(), u=frames[..., 0], v=v)
    run = physml.train(physml.load_spec(tmp_path / "lv.phy"), out=tmp_path / "run3",
                       report=False)
    assert run.stop_reason == "epochs"
    # ... which `windows all` cannot start from at later frames: refused, not zeros.
    (tmp_path / "lv.phy").write_text(text.replace("encoder mlp(hidden=16, layers=2)\n", "")
                                     .replace("val_every 1", "val_every 1 horizon 3 windows all"))
    with pytest.raises(physml.data.DataError, match="'v' has no value at the first frame of "
                       r"every window \(`windows all`\) in the train data"):
        physml.train(physml.load_spec(tmp_path / "lv.phy"), out=tmp_path / "run4", steps=1)


def test_partial_dataset_round_trips_in_format_4(tmp_path, lv_data):
    x = lv_data["train"].clone()
    x[..., 1] = float("nan")
    ds = physml.data.Dataset(lv_data.variables, lv_data.state_shape, lv_data.times,
                             {"train": x}, lv_data.dt, lv_data.history, observed=("u",))
    full = physml.data.Dataset(lv_data.variables, lv_data.state_shape, lv_data.times,
                               {"train": x}, lv_data.dt, lv_data.history)
    assert ds.hash != full.hash                       # the mask is part of the content
    back = load_dataset(save_dataset(ds, tmp_path / "p.h5"))
    assert back.observed == ("u",) and back.hash == ds.hash
    # fully observed data write no mask and hash as format 3 did
    assert load_dataset(save_dataset(full, tmp_path / "f.h5")).observed is None


def _line(text, start):
    return next(i for i, l in enumerate(text.splitlines(), 1) if l.startswith(start))


def test_located_errors(tmp_path):
    with pytest.raises(physml.SpecError) as info:
        lv_spec(tmp_path, observe="observe u, w")
    line = _line(LV.format(observe="observe u, w", encoder="", options=""), "observe")
    assert str(info.value).startswith(f"{tmp_path / 'lv.phy'}:{line}:12: `observe`: 'w' is "
                                      "not a variable")
    assert str(info.value).endswith("variables: u, v")
    text = LV.format(observe="", encoder="encoder mlp(hidden=8)", options="").replace(
        "    history 2\n", "")
    with pytest.raises(physml.SpecError) as info:
        physml.parse_spec(text, "e.phy")
    assert str(info.value).startswith(f"e.phy:{_line(text, 'encoder')}:9: `encoder`: every "
                                      "variable is observed and the data keep no past frames")
    assert "observe u" in str(info.value)
    # Everything observed but past frames kept: an encoder has work to do.
    physml.parse_spec(text.replace("    seed 4\n", "    seed 4\n    history 2\n"), "e.phy")
    from physml.experiment.build import check
    with pytest.raises(physml.SpecError) as info:
        check(lv_spec(tmp_path, encoder="encoder unet(channels=4)"))
    line = _line(LV.format(observe="", encoder="encoder unet", options=""), "encoder")
    assert str(info.value).startswith(f"{tmp_path / 'lv.phy'}:{line}:9: `encoder unet`: "
                                      "encoder unet() works on grids; use mlp() or gru()")
    # check accepts what train runs
    assert check(lv_spec(tmp_path, options="substeps 3 scheduled_sampling 0.99")).substeps == 3


def test_lotka_volterra_prey_only_has_one_scaling_symmetry():
    a, b, g, d, u, v = sympy.symbols("alpha beta gamma delta u v")
    eqs = [("u", a * u - b * u * v), ("v", d * u * v - g * v)]
    (sym,) = scaling_symmetries(eqs, ["v"], ["alpha", "beta", "gamma", "delta"])
    assert sym.hidden == {"v": 1}
    assert sym.params == {"alpha": 0, "beta": -1, "gamma": 0, "delta": 0}
    assert non_identifiable([sym]) == ["beta"] and str(sym.invariant("beta")) == "beta*v"
    # Fixing beta removes it; a pendulum with omega hidden has none (theta' = omega).
    assert scaling_symmetries(eqs, ["v"], ["alpha", "gamma", "delta"]) == []
    th, om, T0 = sympy.symbols("theta omega T0")
    assert scaling_symmetries([("theta", om), ("omega", -(2 * sympy.pi / T0) ** 2
                                                * sympy.sin(th))], ["omega"], ["T0"]) == []


def test_substeps_are_a_finer_solver_step(tmp_path, lv_data):
    fine = build(lv_spec(tmp_path, observe="", encoder="", options="substeps 3"))
    ref = build(lv_spec(tmp_path, observe="", encoder="", options="step 0.0833333333"))
    batch = Trajectories(lv_data["train"], lv_data.times, lv_data.history).batch()
    torch.testing.assert_close(fine.rollout(batch).pred, ref.rollout(batch).pred)
    coarse = build(lv_spec(tmp_path, observe="", encoder=""))
    assert not torch.allclose(coarse.rollout(batch).pred, ref.rollout(batch).pred, atol=1e-7)


def test_scheduled_sampling_teacher_forces_observed_channels(tmp_path, lv_data):
    exp = build(lv_spec(tmp_path, encoder="", options="scheduled_sampling 0.5"))
    batch = Trajectories(lv_data["train"], lv_data.times, lv_data.history,
                         observed=[0]).batch()
    plain = exp.rollout.integrate(batch.x0, batch.t)
    # first pass: probability 0.5^0 = 1, every frame restarts from the observation:
    # frame k+1 is one step from (u_k observed, v_k predicted)
    forced = exp.rollout(batch).pred
    one = exp.rollout.integrate(torch.stack([batch.target[:, 0, 0], batch.x0[:, 1]], 1),
                                batch.t[:2])[:, 1]
    torch.testing.assert_close(forced[:, 1], one)
    assert not torch.allclose(forced[:, -1], plain[:, -1])
    assert int(exp.rollout.sampling_step) == 1
    # evaluation never teacher-forces
    exp.rollout.eval()
    torch.testing.assert_close(exp.rollout(batch).pred, plain)


def test_conjugacy_recovers_an_affine_transform_of_the_hidden_state(tmp_path):
    from types import SimpleNamespace

    from physml.reporting.partial import conjugacy

    spec = lv_spec(tmp_path)
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(8, 6, 2, generator=g, dtype=torch.float64) + 0.5
    learned = truth.clone()
    learned[:, :, 1] = -2 * truth[:, :, 1] + 0.3 * truth[:, :, 0] + 0.5   # JT states
    model = SimpleNamespace(predict=lambda batch: learned)
    traj = Trajectories(truth[None], torch.arange(6.0), observed=[0])
    out = conjugacy(SimpleNamespace(spec=spec), model, traj, truth, labelled=3)
    assert (out["labelled_trajectories"], out["tested_trajectories"]) == (3, 5)
    assert out["hidden_relative_mse_after"] < 1e-12
    assert out["cosine_after"]["T=5"] == pytest.approx(1.0)
    assert out["cosine_before"]["T=5"] < 0          # the learned v runs the other way
    # v = (v̂ − 0.3 u − 0.5) / (−2)
    assert out["map"]["v"]["v"] == pytest.approx(-0.5)
    assert out["map"]["v"]["u"] == pytest.approx(0.15)
    assert out["map"]["v"]["1"] == pytest.approx(0.25)


def test_conjugacy_is_fitted_within_the_training_horizon(tmp_path):
    """Past the horizon the learned states drift (here: noise); a map fitted on them
    too shrinks towards the mean. Fitted on the run's horizon, it is exact there."""
    from types import SimpleNamespace

    from physml.reporting.partial import conjugacy

    spec = lv_spec(tmp_path)
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(8, 12, 2, generator=g, dtype=torch.float64) + 0.5
    learned = truth.clone()
    learned[:, :, 1] = -2 * truth[:, :, 1] + 0.3 * truth[:, :, 0] + 0.5
    learned[:, 6:] = 10 * torch.randn(8, 6, 2, generator=g, dtype=torch.float64)  # drift
    model = SimpleNamespace(predict=lambda batch: learned)
    traj = Trajectories(truth[None], torch.arange(12.0), observed=[0])
    run = SimpleNamespace(spec=spec, config=SimpleNamespace(horizon=6))
    within = conjugacy(run, model, traj, truth, labelled=3)
    assert within["fitted_frames"] == 6
    assert within["cosine_after"]["T=5"] == pytest.approx(1.0)
    assert within["map"]["v"]["v"] == pytest.approx(-0.5)
    every = conjugacy(run, model, traj, truth, labelled=3, frames=12)
    assert every["fitted_frames"] == 12
    assert abs(every["map"]["v"]["v"]) < 0.05          # shrunk: noise dominates the fit
    assert every["map"]["v"]["1"] == pytest.approx(truth[..., 1].mean(), abs=0.1)  # ≈ mean


def test_linear_observation_u_plus_v(tmp_path, lv_data):
    spec = lv_spec(tmp_path, observe="observe u + 2*v", encoder="")
    assert spec.observe == ("u + 2*v",) and spec.observe_matrix == ((1.0, 2.0),)
    assert spec.hidden_variables() == ("u", "v")
    frames = lv_data["train"]
    base = _loss(spec, frames, lv_data.times, lv_data.history)
    # Only u + 2v is measured: moving u and v along (2, −1) after t0 changes nothing ...
    altered = frames.clone()
    shift = torch.randn_like(altered[:, :, lv_data.history + 1:, 0])
    altered[:, :, lv_data.history + 1:, 0] += 2 * shift
    altered[:, :, lv_data.history + 1:, 1] -= shift
    assert _loss(spec, altered, lv_data.times, lv_data.history) == pytest.approx(base, rel=1e-6)
    # ... and the loss is the MSE of the forecast's u + 2v, by hand.
    exp = build(spec)
    H = torch.tensor([[1.0, 2.0]])
    traj = Trajectories(frames, lv_data.times, lv_data.history, readout=H)
    states = exp.rollout.predict(traj.batch())
    y = frames.flatten(0, 1)[:, lv_data.history:]
    hand = float((states[..., 0] + 2 * states[..., 1] - y[..., 0] - 2 * y[..., 1]).pow(2).mean())
    assert base == pytest.approx(hand, rel=1e-5)
    # an encoder reads the measured quantity (1 channel) and returns both variables
    exp = build(lv_spec(tmp_path, observe="observe u + 2*v"))
    assert exp.rollout(traj.batch()).pred.shape[2] == 1
    assert exp.rollout.predict(traj.batch()).shape[2] == 2
    run = physml.train(lv_spec(tmp_path, observe="observe u + 2*v"), out=tmp_path / "run",
                       report=False, dataset=lv_data)
    ev = physml.evaluate(run, dataset=lv_data)
    assert ev["partial"]["hidden"] == ["u", "v"] and "T=5" in ev["partial"]["hidden_cosine"]
    with pytest.raises(physml.SpecError, match="scheduled_sampling"):
        from physml.experiment.build import check
        check(lv_spec(tmp_path, observe="observe u + 2*v", options="scheduled_sampling 0.9"))


def test_teacher_forcing_under_partial_observation_is_refused_where_it_is_written(tmp_path):
    """Teacher forcing restarts from fully measured frames; with a hidden variable there
    is none, so it would silently never restart. `check` refuses it at the option."""
    from physml.experiment.build import check

    with pytest.raises(physml.SpecError) as info:
        check(lv_spec(tmp_path, options="teacher_forcing 0.99"))
    assert ("lv.phy:14:7: physics: training option `teacher_forcing` restarts forecasts "
            "from fully measured frames, and with hidden variables (`observe`) no frame is "
            "one; use `scheduled_sampling K`, which resets the measured channels only"
            ) in str(info.value)
    assert check(lv_spec(tmp_path, observe="", encoder="",
                         options="teacher_forcing 0.99")).teacher_forcing == 0.99


def test_orthogonal_initialisation_of_networks_and_encoders():
    from physml.models.encoders import build_encoder
    from physml.models.nets import build_network
    from physml.symbolic.spec import Call

    net = build_network(Call("resnet", kwargs=(("channels", 8), ("gain", 0.5))), (2,), None)
    w = net.blocks[0][0].weight
    torch.testing.assert_close(w @ w.T, 0.25 * torch.eye(8), atol=1e-5, rtol=0)
    # without `gain` the default initialisation stays (not orthogonal)
    net = build_network(Call("resnet", kwargs=(("channels", 8),)), (2,), None)
    w = net.blocks[0][0].weight
    assert not torch.allclose(w @ w.T, (w @ w.T).diag().diag(), atol=1e-3)
    enc = build_encoder(Call("gru", kwargs=(("hidden", 6),)), [0], 2, 4, None)
    w = enc.net.gru.weight_hh_l0                      # (3·6, 6): orthonormal columns
    torch.testing.assert_close(w.T @ w, torch.eye(6), atol=1e-5, rtol=0)


def test_hybrid_encoder_given_a_hidden_initial_value(tmp_path, lv_data):
    # Thesis eq. 2.8: X₀ = E_θ(Y) + (Y₀, w̆₀): the data's v at t0 plus the encoder's term.
    exp = _quiet(build(lv_spec(tmp_path, encoder="encoder mlp(hidden=8) given v")))
    traj = Trajectories(lv_data["train"], lv_data.times, lv_data.history, observed=[0])
    batch = traj.batch()
    x0 = exp.rollout.initial_state(batch)
    torch.testing.assert_close(x0[:, 0], batch.target[:, 0, 0] + 1.0)   # (_quiet: E = 1)
    torch.testing.assert_close(x0[:, 1], lv_data["train"][0, :, lv_data.history, 1] + 1.0)
    with pytest.raises(physml.SpecError) as info:
        lv_spec(tmp_path, encoder="encoder mlp(hidden=8) given u")
    assert "`encoder ... given`: 'u' is observed, not hidden" in str(info.value)


GRID = """\
system waves
domain 8 x 8 over [0, 1] x [0, 1] periodic
field u, v
param c = 0.01 in (0, inf)
dynamics:
    d(u)/dt = v
    d(v)/dt = c*lap(u) - 0.5*u
data:
    trajectories 4 train, 2 val, 2 test
    time 0 .. 1 step 0.25
    history 1
    initial u ~ uniform(-1, 1), v ~ uniform(-1, 1)
    seed 2
observe u
encoder unet(channels=4, depth=2)
augment convnet(channels=8, layers=2, gain=0.5)
train neural solver euler substeps 3 epochs 2 batch 4 val_every 1
"""


def test_grid_partial_model_with_a_unet_encoder_trains_and_reports(tmp_path):
    path = tmp_path / "waves.phy"
    path.write_text(GRID)
    spec = physml.load_spec(path)
    run = physml.train(spec, out=tmp_path / "run", data_dir=tmp_path / "data")
    ev = json.loads((run.path / "report.json").read_text())["evaluate"]
    part = ev["partial"]
    assert part["hidden"] == ["v"] and part["initial_states"] == "encoder"
    assert set(part["relative_mse"]) == {"all"}       # 4 frames after t0: no T = 5 yet
    assert 0 < part["relative_mse"]["all"] < 10
    # One hidden channel per grid point: the cosine is the mean agreement of signs.
    assert -1.0 <= part["hidden_cosine"]["all"] <= 1.0
    # Grids also get eq. 2.6 with field norms, and the floor of the true X₀ held still.
    assert 0 < part["relative_error_field"]["all"] < 10
    still = part["persistence"]
    assert set(still) == {"hidden_cosine", "relative_error_field"}
    assert -1.0 <= still["hidden_cosine"]["all"] <= 1.0 and still["relative_error_field"]["all"] > 0
    # By hand: the test split's true first frame held still, against the truth.
    ds = run.dataset()
    truth = ds.splits["test"].flatten(0, 1)[:, ds.history:].double()
    held = truth[:, :1].expand_as(truth)
    assert still["hidden_cosine"]["all"] == pytest.approx(
        hidden_cosine(held[:, :, 1:], truth[:, :, 1:]), rel=1e-5)
    assert still["relative_error_field"]["all"] == pytest.approx(
        relative_mse(held[:, :, :1], truth[:, :, :1], pointwise=False), rel=1e-5)
    assert math.isfinite(ev["mse"])
    assert (run.path / "plots" / "fields.png").exists()
    # The network's share is measured on the model's own states (its hidden v is learned
    # up to a map), by inspect as by evaluate: not on the data's true hidden channel.
    ins = physml.inspect(run, intervals=None)
    assert ins["aug_norm"] == pytest.approx(ev["aug_norm"], rel=1e-5)
    assert ins["aug_share"] == pytest.approx(ev["aug_share"], rel=1e-5)
    saved = json.loads((run.path / "report.json").read_text())["inspect"]
    assert saved["aug_share"] == pytest.approx(ins["aug_share"], rel=1e-5)


def test_convnet_encoder_is_local_to_its_kernel(tmp_path):
    """`encoder convnet(kernel=1)` estimates each point from that point's K frames alone;
    two 3×3 layers from its 5×5 neighbourhood; an even kernel is a located error."""
    def grads(options):
        text = GRID.replace("encoder unet(channels=4, depth=2)", f"encoder convnet({options})")
        path = tmp_path / "waves_conv.phy"
        path.write_text(text)
        exp = build(physml.load_spec(path))
        enc = exp.rollout.encoder
        torch.nn.init.normal_(enc.net.net.net[-1].weight)        # the estimate starts at 0
        frames = torch.randn(1, 2, 2, 8, 8, requires_grad=True)  # (B, K, C, x, y)
        enc(frames)[0, 1, 4, 4].backward()                       # hidden v at one point
        return frames.grad[0, :, 0].abs().sum(0)                 # over the K frames of u

    g1 = grads("channels=8, layers=3, kernel=1")
    assert float(g1[4, 4]) > 0 and int((g1 > 0).sum()) == 1
    g3 = grads("channels=8, layers=2, kernel=3")
    assert int((g3 > 0).sum()) == 25 and float(g3[2:7, 2:7].min()) > 0
    path = tmp_path / "waves_even.phy"
    text = GRID.replace("encoder unet(channels=4, depth=2)", "encoder convnet(kernel=2)")
    path.write_text(text)
    from physml.experiment.build import check
    with pytest.raises(physml.SpecError) as info:
        check(physml.load_spec(path))
    assert str(info.value).startswith(f"{path}:{_line(text, 'encoder')}:9: `encoder convnet`: "
                                      "convnet(kernel=2): the kernel is an odd size")
    # `check` refuses what training could not run, in the encoder as in the augmentation.
    for old, new, key in (("encoder unet(channels=4, depth=2)", "encoder convnet(channels=0)",
                           "encoder"),
                          ("augment convnet(channels=8, layers=2, gain=0.5)",
                           "augment convnet(layers=0)", "augment"),
                          ("augment convnet(channels=8, layers=2, gain=0.5)",
                           "augment convnet(kernel=4)", "augment")):
        text = GRID.replace(old, new)
        assert text != GRID
        path.write_text(text)
        with pytest.raises(physml.SpecError) as info:
            check(physml.load_spec(path))
        assert str(info.value).startswith(f"{path}:{_line(text, key)}:"), str(info.value)
        assert "convnet(" in str(info.value)


def test_network_share_on_the_observed_rates_by_hand(tmp_path):
    """``aug_share_observed`` is ‖H F_a‖ / ‖H (F_p + F_a)‖ on the states: the observed
    channel's rate (observe u) or the linear map's (observe u + v), by hand."""
    from physml.reporting.report import augmentation_share, observed_share_text

    spec = lv_spec(tmp_path, options="").text.replace(
        "prior:", "augment mlp(hidden=8, layers=2)\nprior:").replace(
        "train physics", "train aphynity")
    path = tmp_path / "lv_aug.phy"
    path.write_text(spec)
    field = build(physml.load_spec(path)).rollout.field
    torch.nn.init.normal_([m for m in field.augmentation.modules()
                           if isinstance(m, torch.nn.Linear)][-1].weight, std=0.5)
    states = torch.rand(3, 5, 2) + 0.5                             # (N, T, C)
    flat = states.flatten(0, 1)
    with torch.no_grad():
        fa = field.augmentation(flat)
        total = field(torch.zeros(()), flat)
    assert float(fa[:, 1].norm()) > 0.1 * float(fa[:, 0].norm())
    u = augmentation_share(field, states, observed=[0])
    assert u["aug_share"] == pytest.approx(float(fa.norm() / total.norm()), rel=1e-5)
    assert u["aug_share_observed"] == pytest.approx(
        float(fa[:, 0].norm() / total[:, 0].norm()), rel=1e-5)
    H = torch.tensor([[1.0, 1.0]])
    uv = augmentation_share(field, states, readout=H)
    assert uv["aug_share_observed"] == pytest.approx(
        float(fa.sum(1).norm() / total.sum(1).norm()), rel=1e-5)
    assert "aug_share_observed" not in augmentation_share(field, states)
    assert observed_share_text(u) == (f"; {100 * u['aug_share_observed']:.2f} % of the "
                                      "observed variables' rates (‖H F_a‖/‖H (F_p+F_a)‖)")


def test_sir_with_infections_observed_and_check_warns_before_training(tmp_path):
    S, I, R, b, g = sympy.symbols("S I R beta gamma")
    eqs = [("S", -b * S * I), ("I", b * S * I - g * I), ("R", g * I)]
    # S → s·S would need β → β/s in I' = βSI − γI but β → β in S' = −βSI: no symmetry,
    # infections alone determine β and γ (unlike Lotka–Volterra's predation rate).
    assert scaling_symmetries(eqs, ["S", "R"], ["beta", "gamma"]) == []
    # `physml check` says so before any training; with given initial states it does not.
    from physml.experiment.describe import symmetry_warnings

    (warning,) = symmetry_warnings(lv_spec(tmp_path))
    assert warning.startswith("v → s·v, beta → beta/s leaves the observations unchanged, "
                              "so beta is not identifiable (only beta*v is)")
    assert symmetry_warnings(lv_spec(tmp_path, encoder="")) == []


def test_field_norm_relative_error_by_hand():
    """Eq. 2.6 with norms over the grid (``pointwise=False``): one ratio per frame."""
    y = torch.zeros(1, 3, 1, 2, 1)       # (B, T, C, 2 points)
    p = torch.zeros(1, 3, 1, 2, 1)
    y[0, 1, 0, :, 0] = torch.tensor([3.0, 4.0])        # ‖y‖ = 5
    p[0, 1, 0, :, 0] = torch.tensor([3.0, 4.0 + 1.0])  # ‖p − y‖ = 1
    y[0, 2, 0, :, 0] = torch.tensor([1e-9, 2.0])       # a point near zero
    p[0, 2, 0, :, 0] = torch.tensor([1e-3, 2.0])
    assert relative_mse(p, y, pointwise=False) == pytest.approx((1 / 5 + 1e-3 / 2) / 2,
                                                                rel=1e-5)
    # As printed, the near-zero point alone gives a ratio of 10⁶.
    assert relative_mse(p, y) > 1e5
    # ODE states (one point): both forms agree.
    a, b = torch.rand(2, 5, 3) + 0.5, torch.rand(2, 5, 3) + 0.5
    assert relative_mse(a, b) == pytest.approx(relative_mse(a, b, pointwise=False))


def test_thesis_resnet_down_sampling_and_its_no_skip_ablation():
    from dataclasses import replace

    from physml.models.nets import NETWORKS, ResNet

    dom = physml.parse_spec("use ns_velocity_density\n", "x.phy").system.domain
    torch.manual_seed(0)
    net = ResNet(3, 2, channels=8, blocks=2, down=2, domain=dom)
    x = torch.randn(2, 3, 64, 64)
    assert net(x).shape == x.shape
    assert net.blocks[0].body[0].weight.shape == (8, 8, 3, 3)
    # The blocks see a grid 4× coarser.
    h = net.down(net.lift(x))
    assert h.shape[-2:] == (16, 16)
    # skip=false: the same layers, the identity connections gone.
    plain = ResNet(3, 2, channels=8, blocks=2, down=2, domain=dom, skip=False)
    plain.load_state_dict(net.state_dict())
    assert not torch.allclose(plain(x), net(x))
    blk = net.blocks[0]
    z = torch.randn(1, 8, 16, 16)
    torch.testing.assert_close(blk(z), torch.relu(z + blk.body(z)))
    torch.testing.assert_close(plain.blocks[0](z), torch.relu(blk.body(z)))
    with pytest.raises(ValueError, match="not divisible by 8"):
        ResNet(3, 2, down=3, domain=replace(dom, shape=(12, 12)))
    # From a spec line: `skip=false` as written; the ODE residual MLP refuses both options.
    build = NETWORKS["resnet"].build
    assert not build((3, 64, 64), dom, skip="false").blocks[0].skip
    with pytest.raises(ValueError, match="options of the grid ResNet"):
        build((2,), None, down=1)
    unet = NETWORKS["unet"].build((3, 64, 64), dom, channels=4, depth=2)
    assert unet(x).shape == x.shape


def test_direct_map_scales_its_output_to_the_state():
    """``solver direct``: the network outputs the next state, so its output scale is the
    states' RMS, not that of their rate."""
    from physml.models.nets import MLP, Scaled

    frames = torch.tensor([[[1.0, 10.0], [3.0, 10.0], [5.0, 10.0]]])   # (1, T=3, C=2)
    rate, state = Scaled(MLP(2), 2), Scaled(MLP(2), 2)
    rate.fit_scales(frames, dt=0.5)
    state.fit_scales(frames, dt=0.5, rate=False)
    torch.testing.assert_close(rate.out_scale, torch.tensor([4.0, 1.0]))  # 2/0.5; 0 → 1
    torch.testing.assert_close(state.out_scale, torch.tensor([(17.0) ** 0.5, 10.0]))


def test_solver_direct_scales_the_network_to_the_states(tmp_path):
    """Training with ``solver direct`` fits the network's output scale to the states it
    maps to (its output is x_{n+1}), not to their rate of change."""
    text = "\n".join(line for line in GRID.splitlines()
                     if not line.startswith(("observe", "encoder", "    history")))
    text = text.replace("solver euler substeps 3", "solver direct")
    path = tmp_path / "waves.phy"
    path.write_text(text + "\n")
    run = physml.train(physml.load_spec(path), out=tmp_path / "run", data_dir=tmp_path / "d",
                       steps=1, report=False)
    frames = run.dataset().splits["train"][0].double()          # (N, T, C, x, y)
    want = frames[:, 1:].pow(2).mean(dim=(0, 1, 3, 4)).sqrt()
    got = run.load_model().field.augmentation.out_scale.double()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=0)


def test_setting2_network_scales_come_from_the_given_initial_states(tmp_path, lv_data):
    """Setting 2 gives the hidden v at t0 only: the network's input scale for v is the RMS
    of those values, its rate scale that times the observed u's rate-to-state ratio (one
    time scale); with an encoder (Setting 1) nothing of the hidden truth is used."""
    from physml.experiment.data import fit_scales, training_data
    from physml.training.config import TrainConfig

    def scales(encoder):
        text = LV.format(observe="observe u", encoder=encoder, options="")
        text = text[:text.index("prior:")] + "augment mlp(hidden=8, layers=2)\n" \
            "train neural solver rk4 epochs 1 batch 6\n"
        path = tmp_path / "aug.phy"
        path.write_text(text)
        spec = physml.load_spec(path)
        exp = build(spec)
        data, _ = training_data(lv_data, TrainConfig(), observed=spec.observed_channels())
        fit_scales(exp.rollout, data, float(lv_data.dt))
        aug = exp.rollout.field.augmentation
        return data, aug.in_scale.double(), aug.out_scale.double()

    data, s_in, s_out = scales("")
    u = data.train.frames[:, :, 0].double()
    v0 = data.train.x0[:, 1].double()
    rate_u = ((u[:, 1:] - u[:, :-1]) / float(lv_data.dt)).pow(2).mean().sqrt()
    assert float(s_in[0]) == pytest.approx(float(u.pow(2).mean().sqrt()), rel=1e-6)
    assert float(s_in[1]) == pytest.approx(float(v0.pow(2).mean().sqrt()), rel=1e-6)
    assert float(s_out[0]) == pytest.approx(float(rate_u), rel=1e-6)
    assert float(s_out[1]) == pytest.approx(float(s_in[1] * rate_u / s_in[0]), rel=1e-6)
    _, s_in, s_out = scales("encoder mlp(hidden=16, layers=2)")
    assert (float(s_in[1]), float(s_out[1])) == (1.0, 1.0)
