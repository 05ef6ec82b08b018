"""`augment NET with x, y, t`: networks that take coordinates and time (issue 10, point 13)."""
from __future__ import annotations

import math

import pytest
import torch

import physml
from physml.errors import SpecError
from physml.experiment import parse_spec
from physml.models.hybrid import build_model
from physml.models.rollout import Rollout, SolverConfig

SOURCE = """\
system source
domain 16 x 16 over [0, 1] x [0, 1] periodic
field u
param D = 0.01
param s = 1
dynamics:
    d(u)/dt = D*lap(u) + s*sin(2*pi*x)*sin(2*pi*y)
data:
    trajectories 8 train, 2 val, 2 test
    time 0 .. 0.2 step 0.1
    initial u ~ uniform_cells(0, 1)
    seed 0
prior:
    d(u)/dt = D*lap(u)
augment convnet(channels=16, layers=3){with_}
train aphynity(lambda0=1e-3) solver rk4 epochs 1 lr 1e-2 batch 8
"""

ODE = """\
use damped_pendulum
data:
    trajectories 4 train, 2 val, 2 test
    time 0 .. 1 step 0.5
    initial theta, omega ~ ring(1.0, 2.0)
    seed 0
prior:
    d(theta)/dt = omega
    d(omega)/dt = -omega0^2*sin(theta)
augment mlp(hidden=8, layers=2) with t
train aphynity(lambda0=1) solver rk4 steps 2 batch 4
"""


def test_with_parses():
    spec = parse_spec(SOURCE.format(with_=" on u with y, x"))
    assert spec.augment_on == ("u",) and spec.augment_with == ("y", "x")
    assert parse_spec(SOURCE.format(with_="")).augment_with == ()
    assert parse_spec(ODE).augment_with == ("t",)


@pytest.mark.parametrize("with_, col, words", [
    (" with x, q", 48, "'q' is not a coordinate"),
    (" with x, x", 48, "listed twice"),
    (" with z", 45, "'z' is not a coordinate"),
])
def test_with_errors_are_located(with_, col, words):
    with pytest.raises(SpecError) as info:
        parse_spec(SOURCE.format(with_=with_), path="s.phy")
    text = str(info.value)
    assert f"s.phy:15:{col}:" in text and words in text
    assert "x, y, t" in text or "x" in text


def test_ode_takes_no_coordinates():
    with pytest.raises(SpecError, match="ODE has no coordinates"):
        parse_spec(ODE.replace("with t", "with x"), path="o.phy")


def _fit(spec, frames, steps=100):
    torch.manual_seed(0)
    model = build_model(spec)
    model.fit_scales(frames, 0.1)
    rollout = Rollout(model, SolverConfig("rk4"))
    opt = torch.optim.Adam(model.augmentation.parameters(), lr=1e-2)
    t = torch.tensor([0.0, 0.1, 0.2])
    for _ in range(steps):
        loss = (rollout.integrate(frames[:, 0], t) - frames).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def _source_error(model) -> float:
    X, Y = torch.meshgrid(*(torch.arange(16) / 16.0,) * 2, indexing="ij")
    src = torch.sin(2 * math.pi * X) * torch.sin(2 * math.pi * Y)
    x = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(1))  # fresh states
    with torch.no_grad():
        fa = model.augmentation(x, torch.tensor(0.0)) if model.aug_inputs \
            else model.augmentation(x)
    return float(((fa - src).pow(2).mean() / src.pow(2).mean()).sqrt())


# A pointwise network sees (u, x, y) at each point: with the coordinates it can carry
# the source, without them it cannot. (A 3×3 ConvNet also sees u's neighbourhood, and from
# 8 short trajectories it explains part of the source through u: 0.40 on fresh states.)
# (BatchNorm, `norm=batch`, as when this test was written: 100 Adam steps leave the
# un-normalised default network at 0.53 on this problem.)
POINTWISE = SOURCE.replace("convnet(channels=16, layers=3)",
                           "convnet(channels=32, layers=3, kernel=1, norm=batch)")


def test_network_with_coordinates_learns_a_spatial_source():
    with_xy = parse_spec(POINTWISE.format(with_=" with x, y"))
    ds = physml.simulate(with_xy)
    frames = torch.as_tensor(ds.splits["train"], dtype=torch.float32).flatten(0, 1)
    err_with = _source_error(_fit(with_xy, frames))
    err_without = _source_error(_fit(parse_spec(POINTWISE.format(with_="")), frames))
    assert err_with < 0.3, err_with
    assert err_without > 0.6, err_without


def test_check_warns_when_the_missing_part_depends_on_coordinates():
    from physml.experiment.describe import unrepresentable_missing

    warn = unrepresentable_missing(parse_spec(SOURCE.format(with_="")))
    assert len(warn) == 1 and "d(u)/dt" in warn[0] and "x, y" in warn[0]
    assert unrepresentable_missing(parse_spec(SOURCE.format(with_=" with x, y"))) == []
    assert "y" in unrepresentable_missing(parse_spec(SOURCE.format(with_=" with x")))[0]


def test_check_and_train_warn_when_the_method_drops_the_prior_or_the_network(tmp_path):
    """`train neural` integrates the network alone and `train physics` the prior alone:
    said before training, by `check` and by `train` (with the method it will run)."""
    from typer.testing import CliRunner

    from physml.cli.app import app
    from physml.experiment.describe import unused_parts

    aph = SOURCE.format(with_="")
    neural = aph.replace("train aphynity(lambda0=1e-3)", "train neural")
    physics = aph.replace("train aphynity(lambda0=1e-3)", "train physics")
    assert unused_parts(parse_spec(aph)) == []
    assert unused_parts(parse_spec(aph.replace("aphynity(lambda0=1e-3)", "augmented"))) == []
    assert unused_parts(parse_spec(neural)) == [
        "`train neural` learns the network alone: the `prior:` block is not used (train "
        "augmented or aphynity for prior + network)"]
    assert unused_parts(parse_spec(physics)) == [
        "`train physics` fits the prior alone: `augment convnet` is not used (train "
        "augmented or aphynity to learn it too)"]
    assert unused_parts(parse_spec(physics.replace("convnet(channels=16, layers=3)",
                                                   "none"))) == []
    # the method an override runs is the one judged
    assert unused_parts(parse_spec(aph), "neural")[0].startswith("`train neural`")
    path = tmp_path / "n.phy"
    path.write_text(neural)
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 0 and "`prior:` block is not used" in result.output


def test_ode_with_time_trains(tmp_path):
    spec = parse_spec(ODE)
    model = build_model(spec)
    assert model.aug_takes_time
    x = torch.randn(5, 2)
    assert model(torch.tensor(0.3), x).shape == (5, 2)
    assert model.augmentation_norm(x, False, torch.linspace(0, 1, 5)).dim() == 0
    run = physml.train(spec, out=tmp_path / "run", data_dir=tmp_path / "data", report=False)
    assert run.checkpoint("last") is not None


def test_the_training_path_feeds_the_coordinates(tmp_path):
    """Through `physml.train` (rollout, objective, trainer): the same source is learned."""
    text = POINTWISE.format(with_=" with x, y").replace(
        "train aphynity(lambda0=1e-3) solver rk4 epochs 1 lr 1e-2 batch 8",
        "train augmented solver rk4 epochs 100 lr 1e-2 batch 8")
    run = physml.train(parse_spec(text), out=tmp_path / "r", data_dir=tmp_path / "d",
                       report=False)
    assert _source_error(run.load_model("last").field) < 0.3
