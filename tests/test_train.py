"""Training: APHYNITY recovers physics, resume is exact, NaNs are survived, runs are complete."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torchdiffeq import odeint
from typer.testing import CliRunner

import physml
from physml.cli.app import app
from physml.objectives import Aphynity
from physml.data import Batch
from physml.experiment import Run, train
from physml.models import rollout as rollout_mod
from physml.training import TrainingDiverged

# Radius below 2.09 keeps every trajectory away from the separatrix (no rotation), whose
# extreme sensitivity would make these short runs depend on luck.
PENDULUM = """\
use damped_pendulum
data:
    trajectories {n} train, 4 val, 8 test
    time 0 .. {T} step 0.5
    initial theta, omega ~ ring(1.0, 2.0)
    noise 0.01
    solver dopri5(rtol=1e-9, atol=1e-9)
    seed 0
prior:
    d(theta)/dt = omega
    d(omega)/dt = {prior}
    learn {learn}
augment mlp(hidden={hidden}, layers=3)
train {method} solver rk4 epochs {epochs} lr 1e-3 lr_phys 5e-2 batch {n} val_every 5
"""


def pendulum_spec(tmp_path: Path, method="aphynity(lambda0=1, tau2=1, niter=5)",
                  prior="-omega0^2*sin(theta)", learn="T0 from 3", epochs=60, n=16, T=10, hidden=200):
    path = tmp_path / "pendulum.phy"
    path.write_text(PENDULUM.format(method=method, prior=prior, learn=learn, epochs=epochs,
                                    n=n, T=T, hidden=hidden))
    return physml.load_spec(path)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    spec = pendulum_spec(tmp_path_factory.mktemp("data"))
    return physml.simulate(spec)


def t0_error(run: Run) -> float:
    report = json.loads((run.path / "report.json").read_text())
    (row,) = [p for p in report["evaluate"]["parameters"] if p["name"] == "T0"]
    return row["error_pct"]


@pytest.mark.slow
def test_aphynity_recovers_period_and_physics_only_stays_biased(tmp_path, small_data):
    spec = pendulum_spec(tmp_path, epochs=40)
    run = train(spec, dataset=small_data, out=tmp_path / "aph")
    err = t0_error(run)
    assert err < 10.0, f"APHYNITY T0 error {err:.2f} % from a start 50 % off"
    phys = pendulum_spec(tmp_path, method="physics", epochs=40)
    run_p = train(phys, dataset=small_data, out=tmp_path / "phys")
    # Without friction in the model, the period absorbs the damping: a biased estimate
    # (thesis Table 3.4: 13.2 % for Param ODE (ω₀)).
    assert t0_error(run_p) > 2 * err
    assert t0_error(run_p) > 5.0


@pytest.mark.slow
def test_augmentation_vanishes_with_the_true_prior(tmp_path, small_data):
    spec = pendulum_spec(tmp_path, prior="-omega0^2*sin(theta) - alpha*omega",
                         learn="T0 from 5, alpha from 0.1", epochs=40)
    run = train(spec, dataset=small_data, out=tmp_path / "true")
    ev = json.loads((run.path / "report.json").read_text())["evaluate"]
    assert ev["aug_share"] < 0.05
    assert ev["param_error_pct"] < 5.0


COMPLETE_PRIOR = """\
use damped_pendulum
data:
    trajectories 12 train, 4 val, 4 test
    time 0 .. 10 step 0.5
    initial theta, omega ~ ring(1.0, 2.0)
    noise 0.01
    solver dopri5(rtol=1e-9, atol=1e-9)
    seed 0
prior:
    d(theta)/dt = omega
    d(omega)/dt = -omega0^2*sin(theta) - alpha*omega
    learn T0 from 4.5, alpha from 0.1
augment mlp(hidden=32, layers=3)
train {method} solver rk4 epochs 150 lr 3e-3 lr_phys 5e-2 batch 12 val_every 5 loss mse
"""


def test_minimal_norm_keeps_the_network_out_of_what_the_physics_explains(tmp_path):
    """APHYNITY's principle (thesis §3.3, Prop. 1): with a prior of the right form started
    from wrong parameters, the minimal-norm F_a leaves the dynamics to the physics. The
    same model trained without the norm term (`augmented`, Table 3.5) lets the network
    take a share and identifies the parameters worse. Seeds fixed; dropping the norm term
    from the APHYNITY loss makes this fail."""
    ds = physml.simulate(physml.parse_spec(COMPLETE_PRIOR.format(method="physics")))
    out = {}
    for method in ("aphynity(lambda0=1, tau2=1, niter=1)", "augmented"):
        spec = physml.parse_spec(COMPLETE_PRIOR.format(method=method))
        run = train(spec, dataset=ds, out=tmp_path / method[:8])
        out[method[:8]] = json.loads((run.path / "report.json").read_text())["evaluate"]
    aph, aug = out["aphynity"], out["augmente"]
    assert aph["aug_norm"] * 10 < aug["aug_norm"], (aph["aug_norm"], aug["aug_norm"])
    assert aph["aug_share"] * 3 < aug["aug_share"], (aph["aug_share"], aug["aug_share"])
    assert aph["param_error_pct"] * 2 < aug["param_error_pct"]
    assert aph["param_error_pct"] < 3.0


def test_lambda_follows_algorithm_2():
    obj = Aphynity(lambda0=2.0, tau2=0.5, niter=3)
    losses = [0.8, 0.3, 0.1]
    expected = 2.0
    for value in losses:
        obj.after_batch(value)
        expected += 0.5 * value
        assert obj.lam == pytest.approx(expected, abs=0, rel=1e-15)
    fixed = Aphynity(lambda0=2.0, tau2=0.5, adaptive=False)
    fixed.after_batch(1.0)
    assert fixed.lam == 2.0
    # The loss is ‖F_a‖² + λ·L_traj, with ‖F_a‖² on the batch's frames.
    model = physml.models.HybridModel(None, torch.nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model.augmentation.weight.copy_(torch.eye(2))
    rollout = physml.models.Rollout(model, physml.models.SolverConfig("euler"))
    target = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    batch = Batch(x0=target[:, 0], t=torch.tensor([0.0, 1.0]), target=target,
                  env=torch.zeros(1, dtype=torch.long), traj=torch.zeros(1, dtype=torch.long))
    loss, terms = obj.loss(rollout, batch)
    assert float(terms["norm"].detach()) == pytest.approx(1.0)  # relative norm of the identity
    # Euler from (1, 0) with F = x: (2, 0) at t = 1 against (0, 2): e = (4 + 4)/2 over 2 frames.
    assert float(terms["traj"].detach()) == pytest.approx(2.0)
    assert float(loss.detach()) == pytest.approx(1.0 + obj.lam * 2.0)


def test_trainer_takes_niter_steps_then_updates_lambda(tmp_path, small_data):
    spec = pendulum_spec(tmp_path, method="aphynity(lambda0=1, tau2=0.3, niter=4)", epochs=3)
    run = train(spec, dataset=small_data, out=tmp_path / "lam", report=False)
    steps = [m for m in run.metrics() if "loss" in m]
    assert len(steps) == 3
    lam = 1.0
    for m in steps:
        lam += 0.3 * m["traj"]
        assert m["lambda"] == pytest.approx(lam, rel=1e-12)
    state = torch.load(run.path / "checkpoints" / "last.pt", weights_only=True)
    # Adam's step count: niter steps per batch, 3 batches.
    adam_steps = {int(s["step"]) for s in state["optimizer"]["state"].values()}
    assert adam_steps == {12}


def _params(run: Run) -> dict[str, torch.Tensor]:
    return torch.load(run.path / "checkpoints" / "last.pt", weights_only=True)["model"]


def test_resume_equals_uninterrupted(tmp_path, small_data):
    spec = pendulum_spec(tmp_path, epochs=6, n=8)
    full = train(spec, dataset=small_data, out=tmp_path / "full", report=False, batch=3)
    part = train(spec, dataset=small_data, out=tmp_path / "part", report=False, batch=3, steps=7)
    assert len([m for m in part.metrics() if "loss" in m]) == 7
    resumed = train(resume=part.path, dataset=small_data, report=False)
    a, b = _params(full), _params(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    fa = [m for m in full.metrics() if "loss" in m]
    fb = [m for m in resumed.metrics() if "loss" in m]
    assert [m["loss"] for m in fa] == [m["loss"] for m in fb]


def test_cosine_lr_schedule_follows_the_budget_and_resumes_exactly(tmp_path, small_data):
    from physml.training.trainer import lr_schedule_factor

    assert lr_schedule_factor("cosine", 0.0, 0.01) == 1.0
    assert lr_schedule_factor("cosine", 0.5, 0.01) == pytest.approx(0.505, abs=1e-12)
    assert lr_schedule_factor("cosine", 1.0, 0.01) == pytest.approx(0.01, abs=1e-12)
    assert lr_schedule_factor("constant", 0.7, 0.01) == 1.0
    spec = pendulum_spec(tmp_path, epochs=6, n=8)     # 16 trajectories, batch 3: 36 steps
    opts = dict(dataset=small_data, report=False, batch=3, lr_schedule="cosine",
                lr_final=0.05, lr_decay=0.0)
    full = train(spec, out=tmp_path / "full", **opts)
    lrs = [m["lr"] for m in full.metrics() if "loss" in m]
    assert len(lrs) == 36
    # step k (1-based) was taken at progress (k − 1)/36 of the budget
    want = [1e-3 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * k / 36))) for k in range(36)]
    assert lrs == pytest.approx(want, rel=1e-12)
    state = torch.load(full.path / "checkpoints" / "last.pt", weights_only=True)
    groups = state["optimizer"]["param_groups"]
    assert [g["base_lr"] for g in groups] == pytest.approx([1e-3, 5e-2])  # nets, physics
    assert groups[1]["lr"] == pytest.approx(5e-2 * want[-1] / 1e-3)
    # interrupted (Ctrl-C) after 7 steps, then resumed: the same schedule, bit for bit
    import os
    import signal

    def interrupt(p):
        if p.step == 7 and p.phase == "training" and p.message is None:
            os.kill(os.getpid(), signal.SIGINT)

    part = train(spec, out=tmp_path / "part", callback=interrupt, **opts)
    assert 7 <= len([m for m in part.metrics() if "loss" in m]) < 36
    resumed = train(resume=part.path, dataset=small_data, report=False)
    a, b = _params(full), _params(resumed)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [m["lr"] for m in resumed.metrics() if "loss" in m] == lrs


def test_a_plateau_decay_lowers_the_scheduled_rate(tmp_path, small_data):
    """A plateau's decay multiplies the rate the schedule scales, so the next step keeps it
    (rather than the schedule putting the undecayed rate back)."""
    from physml.experiment import build, training_data
    from physml.training import Trainer

    spec = pendulum_spec(tmp_path, epochs=4)
    exp = build(spec, lr_schedule="cosine", lr_decay=0.5, plateau_restore=False)
    data, _ = training_data(small_data, exp.config)
    trainer = Trainer(exp.rollout, exp.objective, data, exp.config, tmp_path / "dec")
    trainer._back_to_best(1.0)
    assert trainer._batch_step(data.train.batch(torch.arange(4), 5)) is not None
    # step 0: the cosine factor is 1, so the rates are the decayed base rates
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([5e-4, 2.5e-2])


def test_lr_schedule_names_are_checked_on_the_train_line(tmp_path):
    path = tmp_path / "bad.phy"
    path.write_text(PENDULUM.format(method="physics", prior="-omega0^2*sin(theta)",
                                    learn="T0 from 3", epochs=5, n=4, T=2, hidden=8)
                    .replace("val_every 5", "val_every 5 lr_schedule step"))
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 1
    assert result.output.startswith(f"{path}:14:76: training option `lr_schedule step`: "
                                    "choices are cosine, constant")


def test_nan_restores_then_lowers_lr_then_stops(tmp_path, small_data, monkeypatch):
    spec = pendulum_spec(tmp_path, epochs=8)
    real = rollout_mod.odeint
    calls = {"n": 0}

    def flaky(model, x0, t, *args, **kw):
        out = real(model, x0, t, *args, **kw)
        calls["n"] += 1
        if model.training and calls["n"] == 12:  # one bad step: survived
            return out * math.nan
        return out

    monkeypatch.setattr(rollout_mod, "odeint", flaky)
    messages = []
    run = train(spec, dataset=small_data, out=tmp_path / "nan1", report=False,
                callback=lambda p: p.message and messages.append(p.message))
    assert any("lowered the learning rate to 0.0001" in m for m in messages)
    state = torch.load(run.path / "checkpoints" / "last.pt", weights_only=True)
    assert state["lr_lowered"] is True
    assert all(math.isfinite(v.float().sum()) for v in state["model"].values())

    def broken(model, x0, t, *args, **kw):
        out = real(model, x0, t, *args, **kw)
        return out * math.nan if model.training and calls["n"] > 0 else out

    calls["n"] = 1
    monkeypatch.setattr(rollout_mod, "odeint", broken)
    with pytest.raises(TrainingDiverged, match="again after lowering the learning rate"):
        train(spec, dataset=small_data, out=tmp_path / "nan2", report=False)
    last = torch.load(tmp_path / "nan2" / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.isfinite(v.float()).all() for v in last["model"].values())


def test_run_directory_and_cli_reports(tmp_path, small_data):
    spec = pendulum_spec(tmp_path, epochs=10)
    run = train(spec, dataset=small_data, out=tmp_path / "run")
    for name in ("spec.phy", "config.json", "metrics.jsonl", "report.json", "report.md",
                 "checkpoints/last.pt", "checkpoints/best.pt", "plots/training.png",
                 "plots/lambda.png", "plots/parameters.png", "plots/predictions.png"):
        assert (run.path / name).is_file(), name
    torch.load(run.path / "checkpoints" / "best.pt", weights_only=True)
    lines = [json.loads(l) for l in (run.path / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in lines if "loss" in m]
    assert {"traj", "norm", "lambda", "param/T0", "time"} <= set(steps[0])
    cfg = json.loads((run.path / "config.json").read_text())["config"]
    assert cfg["method"] == "aphynity" and cfg["method_options"]["niter"] == 5
    # The run needs its dataset: point the run at a file.
    from physml.data import save_dataset

    save_dataset(small_data, tmp_path / "d.h5")
    info = json.loads((run.path / "config.json").read_text())
    info["dataset"] = str(tmp_path / "d.h5")
    (run.path / "config.json").write_text(json.dumps(info))
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", str(run.path)])
    assert res.exit_code == 0, res.output
    assert "ln_mse" in res.output and "T0" in res.output
    assert "{" not in res.output  # the table alone: JSON only with --json
    res = runner.invoke(app, ["evaluate", str(run.path), "--json"])
    ev = json.loads(res.output)  # nothing but JSON
    # The median trajectory is no worse than the worst one, nor than the mean.
    assert ev["ln_mse_median_trajectory"] <= math.log(ev["worst_trajectory"]["mse"])
    assert math.log(ev["worst_trajectory"]["mse"]) >= ev["ln_mse"]
    assert 0 <= ev["worst_trajectory"]["index"] < ev["trajectories"]
    res = runner.invoke(app, ["inspect", str(run.path)])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    # one line per equation in the spec's notation, names kept, the network term shown
    assert "d(omega)/dt = -omega0^2*sin(theta) + F_a(theta, omega)" in out
    assert "identified" in out and "true system" in out
    assert "d(omega)/dt = -alpha*omega - omega0^2*sin(theta)" in out
    t0 = [p for p in ev["parameters"] if p["name"] == "T0"][0]
    assert f"T0 = {t0['identified']:.5g} (true 6, " in out
    assert "omega0 = 2*pi/T0 = " in out
    md = (run.path / "report.md").read_text()
    assert "d(omega)/dt = -omega0^2*sin(theta) + F_a(theta, omega)" in md
    assert "best checkpoint" in md and "last (step" in md
    assert "![training](plots/training.png)" in md
    res = runner.invoke(app, ["inspect", str(run.path), "--latex"])
    assert res.exit_code == 0 and r"\frac{d \omega}{dt}" in res.output
    res = runner.invoke(app, ["evaluate", str(tmp_path / "nowhere")])
    assert res.exit_code == 1 and "not a physml run directory" in res.output


def test_gradient_through_the_solver_matches_finite_differences():
    spec = physml.parse_spec(PENDULUM.format(method="physics", prior="-omega0^2*sin(theta)", hidden=8,
                                             learn="T0", epochs=1, n=2, T=2))
    torch.set_default_dtype(torch.float64)
    try:
        F = physml.compile_dynamics(spec, "prior")
    finally:
        torch.set_default_dtype(torch.float32)
    x0 = torch.tensor([[0.5, -0.3], [1.2, 0.4]], dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0, 2, 5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: odeint(F, x, t, method="rk4"), (x0,))
    # d/d(raw T0) of the solution, against central differences.
    out = odeint(F, x0.detach(), t, method="rk4").sum()
    (grad,) = torch.autograd.grad(out, F.raw["T0"])
    eps = 1e-6
    with torch.no_grad():
        base = F.raw["T0"].clone()
        F.raw["T0"].copy_(base + eps)
        up = odeint(F, x0.detach(), t, method="rk4").sum()
        F.raw["T0"].copy_(base - eps)
        down = odeint(F, x0.detach(), t, method="rk4").sum()
        F.raw["T0"].copy_(base)
    assert float(grad) == pytest.approx(float((up - down) / (2 * eps)), rel=1e-6)


def test_linear_curriculum_grows_the_horizon_over_half_the_step_budget(tmp_path, small_data):
    spec = pendulum_spec(tmp_path, epochs=10)
    from physml.experiment import build, training_data
    from physml.training import Trainer

    exp = build(spec, curriculum="linear")
    data, _ = training_data(small_data, exp.config)
    trainer = Trainer(exp.rollout, exp.objective, data, exp.config, tmp_path / "cur")
    full = small_data.splits["train"].shape[2]
    total = trainer.total_steps()
    assert total == 10 * trainer.batches_per_epoch()

    def horizons(steps):
        seen = []
        for step in steps:
            trainer.step = step
            seen.append(trainer.horizon())
        return seen

    seen = horizons((0, total // 10, total // 4, total // 2, total - 1))
    assert seen[0] == 2 and seen[-2:] == [full, full] and seen == sorted(seen)
    assert seen[1] == round(2 + (full - 2) / 5)
    # A `--steps` budget shorter than the epochs: the horizon is full by half of it, not
    # half of the epochs the run never reaches.
    trainer.cfg.steps = 6
    assert trainer.total_steps() == 6
    assert horizons((0, 1, 3, 5)) == [2, round(2 + (full - 2) / 3), full, full]


def test_cli_train_resume_and_errors(tmp_path, small_data):
    from physml.data import save_dataset

    spec = pendulum_spec(tmp_path, epochs=4, n=8)
    data_file = tmp_path / "pend.h5"
    save_dataset(small_data, data_file)
    text = spec.text.replace("data:\n", f'data:\n    file "{data_file}"\n', 1)
    path = tmp_path / "with_file.phy"
    path.write_text(text)
    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(app, ["train", str(path), "--out", str(out), "--steps", "2", "-q"])
    assert res.exit_code == 0, res.output
    assert "T0" in res.output and "test MSE" in res.output
    assert len([m for m in Run(out).metrics() if "loss" in m]) == 2
    res = runner.invoke(app, ["train", "--resume", str(out), "-q"])
    assert res.exit_code == 0, res.output
    # Resuming goes on to the spec's 4 epochs: 16 trajectories in batches of 8.
    assert len([m for m in Run(out).metrics() if "loss" in m]) == 8
    res = runner.invoke(app, ["train", str(path), "--out", str(out)])
    assert res.exit_code == 1 and "already holds a run" in res.output
    bad = tmp_path / "bad.phy"
    bad.write_text(text.replace("epochs 4", "epoch 4"))
    res = runner.invoke(app, ["train", str(bad), "-q"])
    assert res.exit_code == 1 and "did you mean 'epochs'" in res.output
    assert "Traceback" not in res.output


def test_ctrl_c_saves_and_resumes(tmp_path, small_data):
    import signal
    import subprocess
    import sys
    import time as _time

    from physml.data import save_dataset

    save_dataset(small_data, tmp_path / "pend.h5")
    spec = pendulum_spec(tmp_path, epochs=25, n=8, hidden=32)
    path = tmp_path / "long.phy"
    path.write_text(spec.text.replace("data:\n", f'data:\n    file "{tmp_path / "pend.h5"}"\n', 1))
    out = tmp_path / "int"
    proc = subprocess.Popen([sys.executable, "-c", "from physml.cli.app import main; main()",
                             "train", str(path), "--out", str(out), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = _time.time() + 60
    while _time.time() < deadline and not (out / "metrics.jsonl").exists():
        _time.sleep(0.05)
    while _time.time() < deadline and \
            len((out / "metrics.jsonl").read_text().splitlines()) < 3:
        _time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "--resume" in output and "Traceback" not in output
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    steps = [m for m in Run(out).metrics() if "loss" in m]
    assert 0 < state["step"] == len(steps) < 50, "interrupted before the end"
    # Resume to the end: the same parameters, bit for bit, as a run never interrupted.
    resumed = train(resume=out, report=False)
    full = train(physml.load_spec(path), out=tmp_path / "full", report=False)
    a, b = _params(full), _params(resumed)
    assert torch.load(resumed.path / "checkpoints" / "last.pt", weights_only=True)["step"] == 50
    for k in a:
        assert torch.equal(a[k], b[k]), k
    losses = [m["loss"] for m in Run(out).metrics() if "loss" in m]
    assert losses == [m["loss"] for m in full.metrics() if "loss" in m]


def test_fit_initial_denoises_the_first_frames_and_resumes_exactly(tmp_path, small_data):
    # The true model form, T0 learned from its true value: what is left to fit on the
    # training trajectories is where they start. The learned offsets must move the noisy
    # first frames (σ = 0.01) toward the clean ones.
    spec = pendulum_spec(tmp_path, method="physics", prior="-omega0^2*sin(theta) - alpha*omega",
                         learn="T0 from 6", epochs=40)
    run = train(spec, dataset=small_data, out=tmp_path / "fi", report=False, fit_initial=True,
                lr=3e-3)
    offset = torch.load(run.path / "checkpoints" / "last.pt",
                        weights_only=True)["model"]["x0_offset"]
    noisy = small_data.splits["train"][0, :, 0].to(offset.dtype)
    clean = small_data.splits_clean["train"][0, :, 0].to(offset.dtype)
    assert offset.shape == noisy.shape
    before = (noisy - clean).pow(2).mean().sqrt()
    after = (noisy + offset - clean).pow(2).mean().sqrt()
    assert after < 0.6 * before, (float(before), float(after))
    # Offsets are training state: a resumed run reproduces them bit for bit.
    spec = pendulum_spec(tmp_path, epochs=6, n=8)
    kw = dict(dataset=small_data, report=False, batch=3, fit_initial=True)
    full = train(spec, out=tmp_path / "fi_full", **kw)
    part = train(spec, out=tmp_path / "fi_part", steps=7, **kw)
    resumed = train(resume=part.path, dataset=small_data, report=False)
    a = torch.load(full.path / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(resumed.path / "checkpoints" / "last.pt", weights_only=True)
    off_a, off_b = a["model"]["x0_offset"], b["model"]["x0_offset"]
    assert torch.equal(off_a, off_b) and off_a.abs().sum() > 0
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_augmentation_norm_of_a_field_is_per_unit_area():
    # F_a(x) = x on a constant field (u, v) = (1, 2): (1/|Ω|)∫ u² + v² = 5 on any grid.
    for n in (8, 32):
        model = physml.models.HybridModel(None, torch.nn.Identity())
        states = torch.stack([torch.ones(3, n, n), 2 * torch.ones(3, n, n)], dim=1)
        assert float(model.augmentation_norm(states, relative=False)) == pytest.approx(5.0)
        assert float(model.augmentation_norm(states, relative=True)) == pytest.approx(1.0)


def test_teacher_forcing_out_of_range_is_a_located_error(tmp_path):
    spec = pendulum_spec(tmp_path)
    text = spec.text.replace("val_every 5", "val_every 5 teacher_forcing 1.5")
    with pytest.raises(physml.SpecError) as info:
        physml.check(physml.parse_spec(text, "p.phy"))
    line = text.splitlines().index(next(l for l in text.splitlines() if "teacher" in l)) + 1
    assert str(info.value).startswith(f"p.phy:{line}:")
    assert "teacher_forcing" in str(info.value)


def test_robust_loss_is_the_mse_for_alike_trajectories_and_caps_an_outlier(tmp_path):
    from physml.objectives import aggregate_errors, trajectory_loss

    pred = torch.zeros(4, 3, 2, dtype=torch.float64)
    target = torch.full_like(pred, 1e-2)
    # Alike trajectories: s² = 10·e, so the loss is s²·log(1 + 1/10) ≈ 0.953·MSE.
    mse = trajectory_loss(pred, target, "mse")
    assert float(trajectory_loss(pred, target, "robust")) == pytest.approx(
        float(mse) * 10 * math.log1p(0.1), rel=1e-12)
    # One trajectory 10⁴× worse: its gradient weight is 1/(1 + e_i/s²), the others' ~0.91.
    per = torch.tensor([1e-4, 1e-4, 1e-4, 1.0], dtype=torch.float64, requires_grad=True)
    aggregate_errors(per, "robust").backward()
    s2 = 10 * 1e-4
    expected = torch.tensor([1 / (1 + 0.1)] * 3 + [1 / (1 + 1.0 / s2)], dtype=torch.float64) / 4
    assert torch.allclose(per.grad, expected, rtol=1e-12)
    from physml.training import TrainConfig

    with pytest.raises(ValueError, match="`loss huber`: choices are mse, robust"):
        TrainConfig(loss="huber")


def test_augment_on_restricts_the_network_to_the_named_equations():
    src = PENDULUM.format(method="aphynity", prior="-omega0^2*sin(theta)", learn="T0",
                          epochs=1, n=2, T=2, hidden=8)
    spec = physml.parse_spec(src.replace("augment mlp(hidden=8, layers=3)",
                                         "augment mlp(hidden=8, layers=3) on omega"))
    assert spec.augment_on == ("omega",)
    model = physml.models.build_model(spec)
    with torch.no_grad():
        for p in model.augmentation.parameters():
            p.normal_(0, 0.3)
    fa = model.augmentation(torch.randn(5, 2))
    assert torch.equal(fa[:, 0], torch.zeros(5)) and fa[:, 1].abs().min() > 0
    bad = src.replace("augment mlp(hidden=8, layers=3)", "augment mlp(hidden=8, layers=3) on omgea")
    with pytest.raises(physml.SpecError) as info:
        physml.parse_spec(bad, "p.phy")
    line = bad.splitlines().index("augment mlp(hidden=8, layers=3) on omgea") + 1
    assert str(info.value).startswith(f"p.phy:{line}:36: `augment ... on`: 'omgea' is not a variable")
    assert "did you mean 'omega'?" in str(info.value)


@pytest.mark.slow
def test_compile_with_a_budget_happens_in_the_background(tmp_path, small_data, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # cold
    spec = pendulum_spec(tmp_path, epochs=100000, n=8, hidden=16)
    text = spec.text.replace("val_every 5", "val_every 5 compile true minutes 1.5")
    messages = []
    run = train(physml.parse_spec(text), dataset=small_data, out=tmp_path / "c", report=False,
                callback=lambda p: p.message and messages.append(p.message))
    assert messages[0].startswith("compiling the step in the background")
    switched = [m for m in messages if m.startswith("step compiled in the background")]
    assert switched, messages
    steps = [m for m in run.metrics() if "loss" in m]
    # Training went on while the child compiled: no batch waited for a cold compile.
    gaps = [b["time"] - a["time"] for a, b in zip(steps, steps[1:])]
    assert steps[0]["time"] < 10 and max(gaps) < 30, (steps[0]["time"], max(gaps))
    # The same graphs again (another budget): the cache is warm, so the run compiles in
    # its own process from the start instead of training eagerly beside a child.
    messages.clear()
    again = train(physml.parse_spec(text), dataset=small_data, out=tmp_path / "d",
                  report=False, minutes=0.25,
                  callback=lambda p: p.message and messages.append(p.message))
    assert not any("background" in m for m in messages), messages
    assert again.config.compile and [m for m in again.metrics() if "loss" in m]


def test_plots_are_labelled_and_show_what_aphynity_is_for(tmp_path, small_data):
    """Axes read through matplotlib objects: labels on every axis, Greek letters, the
    worst test trajectory, a phase portrait, and F_a against the missing −α·ω."""
    import matplotlib.pyplot as plt

    from physml.reporting.plots import figures, missing_term, pretty

    assert [pretty(n) for n in ("theta", "omega0", "T0", "u", "alpha_2")] == \
        ["θ", "ω₀", "T₀", "u", "α₂"]
    run = train(pendulum_spec(tmp_path, epochs=5), dataset=small_data, out=tmp_path / "run",
                report=False)
    figs = figures(run, small_data, run.metrics())
    try:
        assert {"training", "lambda", "parameters", "predictions", "phase",
                "augmentation"} <= set(figs)
        for name, fig in figs.items():
            for ax in fig.axes:
                if ax.get_label() == "<colorbar>":
                    continue
                assert ax.get_ylabel(), (name, "y")
        assert figs["training"].axes[0].get_xlabel() == "step (batches)"
        assert figs["parameters"].axes[0].get_ylabel() == "T₀"
        assert [ax.get_ylabel() for ax in figs["predictions"].axes] == ["θ", "ω"]
        assert figs["phase"].axes[0].get_xlabel() == "θ"
        labels = figs["predictions"].axes[0].get_legend_handles_labels()[1]
        assert any("(worst)" in lab for lab in labels)
        # the missing term of a frictionless prior is −α·ω (α = 0.2 in the data)
        term = missing_term(run.spec, small_data.env_params[0])
        x = torch.tensor([[0.3, 1.5]])
        assert torch.allclose(term(x), torch.tensor([[0.0, -0.2 * 1.5]]), atol=1e-6)
        aug = figs["augmentation"].axes
        assert "F_a" in aug[0].get_title() and aug[-1].get_xlabel().startswith("t")
    finally:
        for fig in figs.values():
            plt.close(fig)


def test_tensorboard_log_writes_the_scalars(tmp_path, small_data):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = train(pendulum_spec(tmp_path, epochs=5), dataset=small_data, out=tmp_path / "run",
                report=False, log="tensorboard")
    acc = EventAccumulator(str(run.path / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"loss/objective", "loss/trajectory_mse", "loss/F_a_norm2", "aphynity/lambda",
            "optimizer/lr", "parameters/T0", "parameters/T0_true", "validation/mse"} <= tags
    steps = [m for m in run.metrics() if "loss" in m]
    t0 = acc.Scalars("parameters/T0")
    assert [e.step for e in t0] == [m["step"] for m in steps]
    assert t0[-1].value == pytest.approx(steps[-1]["param/T0"], rel=1e-6)
    with pytest.raises(ValueError, match="only logger is 'tensorboard'"):
        train(pendulum_spec(tmp_path, epochs=1), dataset=small_data, log="wandb")


def test_ctrl_c_while_compiling_says_so_and_exits_130(monkeypatch, tmp_path):
    """A compiler wraps the KeyboardInterrupt in its own error: the CLI still sees a
    user's interrupt, says where it came, and exits 130 (no traceback)."""
    import physml.experiment as experiment
    from physml.training import Progress

    def fake_train(spec, callback=None, **kw):
        callback(Progress(0, 0, 0, math.nan, math.nan, None, None, {}, {}, None, None, 0.0,
                          None, None, "compiling"))
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise RuntimeError("backend compiler failed") from exc

    monkeypatch.setattr(experiment, "train", fake_train)
    spec = tmp_path / "s.phy"
    spec.write_text("use damped_pendulum\n")
    res = CliRunner().invoke(app, ["train", str(spec), "--quiet"])
    assert res.exit_code == 130, res.output
    assert "interrupted while compiling" in res.output
    assert "Traceback" not in res.output
