"""Solver options on the train line (issue 10, point 11): `solver NAME(key=value)` as in
the data block, or the plain options `step`, `rtol`, `atol`, checked against the registry."""
from __future__ import annotations

import math
import re

import pytest
import torch

import physml
from physml.experiment import build, train
from physml.models import rollout as rollout_mod
from physml.training import TrainingDiverged

SPEC = """\
use damped_pendulum
data:
    trajectories 2 train, 1 val
    time 0 .. 2 step 0.5
    initial theta, omega ~ ring(1.0, 2.0)
    solver rk4(step=0.05)
prior:
    d(theta)/dt = omega
    d(omega)/dt = -omega0^2*sin(theta)
    learn T0 from 5
train physics {options} epochs 1
"""

pytestmark = pytest.mark.usefixtures("one_thread")


def _field_evaluations(options: str) -> tuple[int, dict]:
    """How often one rollout over 4 frame intervals (Δt = 0.5) evaluates the field."""
    spec = physml.parse_spec(SPEC.format(options=options))
    exp = build(spec)
    count = [0]
    exp.rollout.field.register_forward_hook(lambda *_: count.__setitem__(0, count[0] + 1))
    with torch.no_grad():
        exp.rollout.integrate(torch.ones(3, 2), torch.arange(5, dtype=torch.float32) * 0.5)
    return count[0], dict(spec.train.options)


@pytest.mark.parametrize("options, evaluations, resolved", [
    ("solver rk4", 4 * 4, {"solver": "rk4"}),                      # one rk4 step per frame
    ("solver rk4 step 0.125", 4 * 4 * 4, {"solver": "rk4", "step": 0.125}),
    ("solver rk4(step=0.125)", 4 * 4 * 4, {"solver": "rk4", "step": 0.125}),
    ("step 0.05", 4 * 10 * 4, {"step": 0.05}),                     # the default rk4
    ("solver euler(step=0.25)", 4 * 2, {"solver": "euler", "step": 0.25}),
])
def test_step_on_the_train_line_sets_the_number_of_solver_steps(options, evaluations,
                                                                 resolved):
    n, got = _field_evaluations(options)
    assert (n, got) == (evaluations, {**resolved, "epochs": 1})


def test_one_syntax_for_the_data_block_and_the_train_line():
    spec = physml.parse_spec(SPEC.format(options="solver dopri5(rtol=1e-5, atol=1e-6)"))
    assert spec.data.solver.name == "rk4" and spec.data.solver.kwargs == (("step", 0.05),)
    assert dict(spec.train.options) == {"solver": "dopri5", "rtol": 1e-5, "atol": 1e-6,
                                        "epochs": 1}
    cfg = physml.experiment.config_for(spec)
    assert (cfg.solver, cfg.rtol, cfg.atol, cfg.step) == ("dopri5", 1e-5, 1e-6, None)
    bare = physml.parse_spec(SPEC.replace("solver rk4(step=0.05)", "solver dopri5")
                             .format(options=""))
    assert bare.data.solver.name == "dopri5" and bare.data.solver.kwargs == ()


@pytest.mark.parametrize("options, message, column, hint", [
    ("solver rk4(rtol=1e-3)", "unknown option 'rtol' for rk4", 26, "rk4 takes: step"),
    ("solver rk4 rtol 1e-3", "solver rk4 does not take 'rtol'", 26, "rk4 takes: step"),
    ("rtol 1e-3 solver euler", "solver euler does not take 'rtol'", 15, "euler takes: step"),
    ("solver rk4(step=0.1) step 0.2", "option 'step' given twice", 36,
     "first given at column 26"),
    ("solver rk4(0.1)", "solver rk4 takes its options by name", 22,
     "e.g. `solver rk4(step=0.01)`"),
    ("solver rk5(step=0.1)", "unknown training solver 'rk5'", 15, "did you mean 'rk4'?"),
    ("step fine", "option 'step' takes a number, got 'fine'", 15, None),
])
def test_solver_option_errors_are_located(options, message, column, hint):
    text = SPEC.format(options=options)
    with pytest.raises(physml.SpecError) as info:
        physml.parse_spec(text, "s.phy")
    lines = str(info.value).splitlines()
    assert lines[0] == f"s.phy:11:{column}: {message}"
    assert lines[1].strip() == f"train physics {options} epochs 1"
    if hint is not None:
        assert lines[-1] == hint


def test_the_blow_up_hint_names_a_solver_step_that_parses(tmp_path, monkeypatch):
    spec = physml.parse_spec(SPEC.format(options="solver rk4 batch 2 val_every 1")
                             .replace("epochs 1", "epochs 3").replace("time 0 .. 2", "time 10 .. 12"))
    data = physml.simulate(spec)
    real = rollout_mod.odeint

    def broken(model, x0, t, *args, **kw):
        out = real(model, x0, t, *args, **kw)
        return out * math.nan if model.training else out

    monkeypatch.setattr(rollout_mod, "odeint", broken)
    with pytest.raises(TrainingDiverged) as info:
        train(spec, dataset=data, out=tmp_path / "run", report=False)
    (suggested,) = re.findall(r"`(solver rk4\(step=[^`]*\))`", str(info.value))
    assert suggested == "solver rk4(step=0.125)"           # a quarter of Δt = 0.5 (not of t₁)
    fixed = physml.parse_spec(SPEC.format(options=suggested))
    assert dict(fixed.train.options)["step"] == 0.125
