"""Soft constraints on forecasts, ``constraint LHS = RHS where COND weight W`` (thesis
§2.7.3, eqs. 2.11–2.13: the scar loss of EP-Net 2.0): the language's form and its located
errors, the penalty against a hand computation, and a fit that the penalty moves."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import physml
from physml.data.batches import Trajectories
from physml.experiment.build import build
from physml.experiment.describe import describe_experiment
from physml.models.constraints import Constraints
from physml.symbolic.printer import format_spec

pytestmark = pytest.mark.usefixtures("one_thread")

SCAR = """\
system slab
domain 8 x 8 over [0, 8] x [0, 8] neumann
field v, h, s
param sigma = 1 in (0, inf)
dynamics:
    d(v)/dt = (1 - s)*(sigma*lap(v) - v*h)
    d(h)/dt = (1 - s)*(v - h)
    d(s)/dt = 0
observe v, s
{constraint}
augment resnet(channels=4, blocks=1) on v, h
train neural solver euler epochs 1
"""

DECAY = """\
system decay
state u, s
param k = 0.5 in (0, inf)
dynamics:
    d(u)/dt = -k*u
    d(s)/dt = 0
data:
    trajectories 16 train, 4 val, 4 test
    time 0 .. 4 step 0.25
    initial u ~ uniform(1, 2)
    initial s ~ uniform(0, 1)
    seed 0
prior:
    d(u)/dt = -k*u
    d(s)/dt = 0
    learn k from 0.2
{constraint}
train physics epochs 150 batch 16 lr_phys 5e-2 lr_decay 0 val_every 10
"""


#: SCAR with simulated data, an encoder and two epochs: as the cardiac specs train
SLAB = SCAR.replace("observe v, s", """data:
    trajectories 4 train, 2 val, 2 test
    time 0 .. 3 step 1
    history 1
    initial v, h, s ~ cardiac_rectangle(scar_min=2, scar_max=4, onset_size=1)
    seed 0
observe v, s
encoder unet(channels=4, depth=1)""").replace("train neural solver euler epochs 1",
                                              "train neural solver euler epochs 2 batch 2")


def _spec(constraint: str, text: str = SCAR):
    return physml.parse_spec(text.format(constraint=constraint), "c.phy")


def _error(constraint: str) -> str:
    with pytest.raises(physml.SpecError) as info:
        _spec(constraint)
    return str(info.value)


def test_constraint_parses_and_prints_back():
    spec = _spec("constraint v = 0 where s > 0.5 weight 0.1\n"
                 "constraint h - v = 1 where x < 2 and s > 0.5")
    first, second = spec.constraints
    assert str(first.residual) == "v" and str(first.condition) == "s > 0.5"
    assert first.weight == 0.1 and second.weight == 1.0
    assert str(second.residual) in ("h - v - 1", "-v + h - 1")
    again = physml.parse_spec(format_spec(spec), "again.phy")
    assert again.constraints == spec.constraints
    hard = _spec("constraint v = sigma/2 where s > 0.5 hard").constraints[0]
    assert hard.hard and hard.variable == "v" and str(hard.value) == "sigma/2"
    assert not first.hard
    again = physml.parse_spec(format_spec(_spec("constraint v = sigma/2 where s > 0.5 hard")),
                              "again.phy")
    assert again.constraints == (hard,)
    both = _spec("constraint v = 0 where s > 0.5 weight 0.1 hard").constraints[0]
    assert both.hard and both.penalised and both.weight == 0.1 and not hard.penalised
    again = physml.parse_spec(format_spec(_spec("constraint v = 0 where s > 0.5 weight 0.1 "
                                                "hard")), "again.phy")
    assert again.constraints == (both,)


@pytest.mark.parametrize("line,message,column", [
    ("constraint v = 0 where h > 0.5",
     "`constraint ... where`: 'h' is hidden; the condition is read from the data", 24),
    ("constraint q = 0 where s > 0.5", "unknown symbol 'q'", 12),
    ("constraint v = t where s > 0.5", "`constraint`: the time t cannot be used here", 16),
    ("constraint sigma = 0 where s > 0.5",
     "`constraint`: the equation does not involve a variable, so it constrains nothing", 1),
    ("constraint v = 0 where s > 0.5 weight 0",
     "`constraint ... weight` must be positive, got 0", 1),
    ("constraint v = h where s > 0.5 hard", "`constraint ... hard`: the right side reads "
     "the state variable 'h'; a held value must not change along a forecast", 16),
    ("constraint v + h = 0 where s > 0.5 hard", "`constraint ... hard`: the left side must "
     "be one state variable, which the solver holds at the right side", 1),
    ("constraint v = 0 where v > 0.5 hard",
     "`constraint ... hard`: the condition reads 'v', the variable it holds", 24),
    ("constraint v = 0 where s > 0.5 hard weight 0.1",
     "unexpected 'weight'; expected the end of the line", 37),
])
def test_bad_constraints_are_located(line, message, column):
    text = _error(line)
    assert f"c.phy:10:{column}: {message}" in text


def test_a_condition_through_a_let_on_a_hidden_variable_is_refused():
    text = SCAR.replace("observe v, s", "let gated = h*s\nobserve v, s")
    with pytest.raises(physml.SpecError, match="'gated' depends on the hidden 'h'"):
        _spec("constraint v = 0 where gated > 0.5", text)


def test_penalty_is_the_weighted_mean_of_the_squared_residual_where_the_data_say():
    """Eq. 2.13 by hand: 0.1 · mean over trajectories, frames and cells of 1_{s>0.5} v²,
    with s read from the data and v from the forecast; a frame with a gap counts for
    nothing; the gradient reaches the forecast only inside the scar."""
    spec = _spec("constraint v = 0 where s > 0.5 weight 0.1\n"
                 "constraint h = 1 where x < 3 weight 2")
    module = Constraints(spec.system, spec.constraints)
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 5, 3, 8, 8, generator=g, requires_grad=True)
    data = torch.rand(2, 5, 3, 8, 8, generator=g)
    scar = (data[:, :, 2] > 0.5).float()
    x = torch.arange(8) + 0.5                         # cell centres of [0, 8]
    left = (x < 3).float().view(1, 1, 8, 1)           # x is the first axis
    hand = 0.1 * (scar * pred[:, :, 0] ** 2).mean() + \
        2 * (left * (pred[:, :, 1] - 1) ** 2).mean()
    got = module(pred, data)
    assert float(got) == pytest.approx(float(hand), rel=1e-6)
    grad, = torch.autograd.grad(got, pred)
    assert torch.equal(grad[:, :, 0] != 0, scar.bool() & (pred[:, :, 0] != 0))
    assert float(grad[:, :, 2].abs().max()) == 0.0   # s itself is not constrained
    # Gaps: the scar condition reads s, so a frame missing s drops the first constraint
    # there and not the second (x is no measurement); missing v or h (h is hidden in this
    # spec: never measured) drops nothing.
    mask = torch.ones(2, 5, 3, 1, 1)
    mask[:, :, 1] = 0                                 # h hidden
    mask[0, 2, 0] = 0                                 # trajectory 0 misses v at frame 2
    mask[1, 3, 2] = 0                                 # trajectory 1 misses s at frame 3
    keep = torch.ones(2, 5, 1, 1)
    keep[1, 3] = 0
    hand_gap = 0.1 * (keep * scar * pred[:, :, 0] ** 2).mean() + \
        2 * (left * (pred[:, :, 1] - 1) ** 2).mean()
    assert float(module(pred, data, mask)) == pytest.approx(float(hand_gap), rel=1e-6)


def test_the_training_loss_carries_the_penalty():
    """The rollout computes the penalty on its forecast in training only, and the
    objective adds it to the trajectory loss — also when, as in every partially observed
    batch, the mask is zero on the hidden channel h (the scar loss of eq. 2.13 once read
    that as a gap in every frame and was silently zero)."""
    exp = build(_spec("constraint v = 0 where s > 0.5 weight 0.1"))
    target = torch.rand(2, 4, 3, 8, 8)
    target[:, :, 1] = 0                               # h hidden: zero in the data
    mask = torch.ones(1, 1, 3, 1, 1)
    mask[:, :, 1] = 0
    batch = physml.data.Batch(x0=target[:, 0], t=torch.arange(4.0), target=target,
                              env=torch.zeros(2, dtype=torch.long), traj=torch.arange(2),
                              mask=mask.expand(2, 4, 3, 1, 1))
    exp.rollout.train()
    loss, terms = exp.objective.loss(exp.rollout, batch)
    assert float(terms["constraint"]) > 0
    assert float(loss) == pytest.approx(float(terms["traj"] + terms["constraint"]), rel=1e-6)
    pred = exp.rollout(batch).pred
    by_hand = 0.1 * ((target[:, :, 2] > 0.5) * pred[:, :, 0] ** 2).mean()
    assert float(terms["constraint"]) == pytest.approx(float(by_hand), rel=1e-5)
    exp.rollout.eval()
    assert "constraint" not in exp.rollout(batch).terms


def test_a_constraint_the_data_contradict_moves_the_fit(tmp_path):
    """The principle: the penalty acts on forecasts where the data's condition holds. The
    data decay at k = 0.5 everywhere; asked that u vanish wherever s > 0.5 (half of the
    trajectories), with weight 100, the fit speeds the decay up; without it, k = 0.5."""
    ks = {}
    for name, line in (("with", "constraint u = 0 where s > 0.5 weight 100"),
                       ("without", "")):
        run = physml.train(_spec(line, DECAY), out=tmp_path / name,
                           data_dir=tmp_path / "data", report=False)
        rows = [json.loads(r) for r in (run.path / "metrics.jsonl").read_text().splitlines()]
        last = [r for r in rows if "param/k" in r][-1]
        ks[name] = last["param/k"]
        assert ("constraint" in last) == (name == "with")
    assert ks["without"] == pytest.approx(0.5, abs=0.01)
    assert ks["with"] > 0.8


def test_the_scar_loss_acts_in_partially_observed_training(tmp_path):
    """End to end, as the cardiac specs train: v and s observed, the gate h hidden (its
    mask is zero), initial states from an encoder. The networks start at zero (no potential
    in the scar: no penalty at the first step); every later step carries the penalty."""
    text = SLAB
    run = physml.train(_spec("constraint v = 0 where s > 0.5 weight 0.1", text),
                       out=tmp_path / "run", data_dir=tmp_path / "data", report=False)
    rows = [json.loads(r) for r in (run.path / "metrics.jsonl").read_text().splitlines()]
    penalties = [r["constraint"] for r in rows if "loss" in r]
    assert len(penalties) == 4 and penalties[0] == 0 and min(penalties[1:]) > 0, penalties


def _random_field(exp, seed: int = 0) -> None:
    """Weights drawn away from the zero-initialised last layers, so the network moves v
    inside the scar unless something holds it."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in exp.rollout.field.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=g))


def _scarred_state(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(2, 3, 8, 8, generator=g)
    x0[:, 2] = (torch.rand(2, 8, 8, generator=g) > 0.6).float()
    return x0


@pytest.mark.parametrize("solver,substeps", [("euler", 3), ("rk4", 1)])
def test_a_hard_constraint_holds_the_variable_in_every_forecast(solver, substeps):
    """Eq. 2.11 held, not penalised: whatever the network, the forecast's v is exactly
    the value (here σ/2 = 0.5) at every frame inside the scar — also where the initial
    state had another value there — and free elsewhere; with no scar the forecast is the
    unconstrained one, bit for bit."""
    held = build(_spec("constraint v = sigma/2 where s > 0.5 hard"))
    free = build(_spec(""))
    free.rollout.load_state_dict(held.rollout.state_dict(), strict=False)
    for exp in (held, free):
        _random_field(exp)
        exp.rollout.solver = dataclasses.replace(exp.rollout.solver, name=solver)
        exp.rollout.substeps = substeps
    x0 = _scarred_state()
    t = torch.arange(6.0)
    pred = held.rollout.integrate(x0, t)
    scar = (x0[:, 2] > 0.5).unsqueeze(1).expand(-1, 6, -1, -1)
    assert float(x0[:, 0][scar[:, 0]].sub(0.5).abs().min()) > 0
    assert float(pred[:, :, 0][scar].sub(0.5).abs().max()) == 0.0
    outside = pred[:, 1:, 0][~scar[:, 1:]]
    assert float((outside - x0[:, 0].unsqueeze(1).expand(-1, 5, -1, -1)[~scar[:, 1:]])
                 .abs().mean()) > 1e-2           # the field does move v elsewhere
    assert float(free.rollout.integrate(x0, t)[:, :, 0][scar].sub(0.5).abs().max()) > 1e-2
    x0[:, 2] = 0                                  # no scar: nothing to hold
    assert torch.equal(held.rollout.integrate(x0, t), free.rollout.integrate(x0, t))


def test_the_held_field_is_differentiable_where_the_region_is_fixed():
    """The held rate ``(1 − 1_scar) ⊙ F`` in the held channel: its Jacobian (gradcheck,
    float64) away from the region's edge s = 0.5, and exactly zero rows in the scar."""
    from physml.models.constraints import HeldField

    exp = build(_spec("constraint v = 0 where s > 0.5 hard"))
    _random_field(exp)
    exp.rollout.double()
    field = HeldField(exp.rollout.field, exp.rollout.hard)
    x = _scarred_state().double()[:1].requires_grad_(True)
    t0 = torch.zeros((), dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: field(t0, x), (x,), atol=1e-6)
    rate = field(t0, x)
    grad, = torch.autograd.grad(rate[:, 0].sum(), x)
    scar = x[0, 2] > 0.5
    assert float(rate[0, 0][scar].abs().max()) == 0.0
    assert float(exp.rollout.field(t0, x)[0, 0][scar].abs().max()) > 0


def test_under_a_one_step_map_the_output_is_held_at_the_value():
    """``solver direct`` (Table 2.3's ablation): the model's output is the next state, so
    the held channel of the output is the value (σ/2) where the scar is, not a zero rate;
    the rollout picks that form from the solver."""
    exp = build(_spec("constraint v = sigma/2 where s > 0.5 hard"))
    _random_field(exp)
    x = _scarred_state()
    scar = x[:, 2] > 0.5
    t0 = torch.zeros(())
    for solver, inside in (("direct", 0.5), ("euler", 0.0)):
        exp.rollout.solver = dataclasses.replace(exp.rollout.solver, name=solver)
        out = exp.rollout.solver_field()(t0, x)
        free = exp.rollout.field(t0, x)
        assert torch.equal(out[:, 0][scar], torch.full_like(out[:, 0][scar], inside))
        assert torch.equal(out[:, 0][~scar], free[:, 0][~scar])
        assert torch.equal(out[:, 1:], free[:, 1:])


def test_a_hard_constraint_trains_end_to_end_under_partial_observation(tmp_path):
    """As the cardiac specs train (v, s observed, h hidden, an encoder): training,
    validation and the saved model's forecasts all hold v at 0 in the scar, and the run's
    description says how the constraint acts."""
    text = SLAB
    run = physml.train(_spec("constraint v = 0 where s > 0.5 hard", text),
                       out=tmp_path / "run", data_dir=tmp_path / "data", report=False)
    rows = [json.loads(r) for r in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert all("constraint" not in r for r in rows)   # nothing to penalise
    model = run.load_model()
    with torch.no_grad():                         # not only the zero-initialised output
        g = torch.Generator().manual_seed(1)
        for p in model.field.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
    ds = run.dataset()
    test = Trajectories(ds.splits["test"], ds.times, ds.history,
                        observed=[0, 2]).batch()
    pred = model.predict(test)
    scar = test.target[:, :, 2] > 0.5
    assert bool(scar.any()) and float(pred[:, :, 0][~scar].abs().max()) > 1e-3
    assert float(pred[:, :, 0][scar].abs().max()) == 0.0
    _, blocks = describe_experiment(run.spec)
    assert blocks["constraint"] == ("v = 0 where s > 0.5 hard (held by the solver: the "
                                    "value set in the initial state and the rate zero where "
                                    "the state meets the condition)")


def test_a_hard_constraint_cuts_the_held_region_out_of_the_fit(tmp_path):
    """Where u is held (s > 0.5, half of the trajectories) the forecast is the value,
    whatever k: those trajectories give k no gradient, and the fit recovers k = 0.5 from
    the others — where the soft penalty of weight 100 drags it above 0.8 (the test
    above). The held forecasts sit at 1 while the data decay, so the loss stays up."""
    spec = _spec("constraint u = 1 where s > 0.5 hard", DECAY)
    run = physml.train(spec, out=tmp_path / "run", data_dir=tmp_path / "data", report=False)
    last = [r for r in run.metrics() if "param/k" in r][-1]
    assert last["param/k"] == pytest.approx(0.5, abs=0.005)
    assert last["traj"] > 1e-2
    ds = run.dataset()
    test = Trajectories(ds.splits["test"], ds.times, ds.history).batch()
    pred = run.load_model().predict(test)
    held = test.target[:, 0, 1] > 0.5
    assert bool(held.any()) and bool((~held).any())
    assert torch.equal(pred[held][:, :, 0], torch.ones_like(pred[held][:, :, 0]))
    assert float(pred[~held][:, -1, 0].max()) < 0.5


def test_penalised_in_training_and_held_in_forecasts():
    """``weight W hard``: training forecasts are free and carry eq. 2.13's penalty; eval
    forecasts (validation, test) hold v at 0 in the scar. A model trained with the
    penalty alone loads under the spec that adds the hold (the held values are the spec's,
    not the checkpoint's)."""
    soft = build(_spec("constraint v = 0 where s > 0.5 weight 0.1"))
    both = build(_spec("constraint v = 0 where s > 0.5 weight 0.1 hard"))
    _random_field(soft)
    both.rollout.load_state_dict(soft.rollout.state_dict())          # strict
    x0 = _scarred_state()
    target = torch.stack([x0] * 4, dim=1)
    batch = physml.data.Batch(x0=x0, t=torch.arange(4.0), target=target,
                              env=torch.zeros(2, dtype=torch.long), traj=torch.arange(2))
    scar = (x0[:, 2] > 0.5).unsqueeze(1).expand(-1, 4, -1, -1)
    for exp in (soft, both):
        exp.rollout.train()
    out_soft, out_both = soft.rollout(batch), both.rollout(batch)
    assert torch.equal(out_soft.pred, out_both.pred)                  # training: free
    assert float(out_both.terms["constraint"]) > 0
    assert float(out_both.terms["constraint"]) == float(out_soft.terms["constraint"])
    pred = both.rollout.predict(batch)                               # forecasting: held
    assert float(pred[:, :, 0][scar].abs().max()) == 0.0
    assert float(soft.rollout.predict(batch)[:, :, 0][scar].abs().max()) > 1e-2
    _, blocks = describe_experiment(_spec("constraint v = 0 where s > 0.5 weight 0.1 hard"))
    assert blocks["constraint"] == ("v = 0 where s > 0.5 weight 0.1 hard (penalised in "
                                    "training; held by the solver in forecasts)")
