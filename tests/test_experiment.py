"""The experiment layer: what `check` accepts is what `train` runs; nothing is simulated or
created for a spec that cannot train; validation never uses the test split."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import physml
from physml.cli.app import app
from physml.experiment import vocabulary
from physml.models import NETWORKS
from physml.objectives import OBJECTIVES
from physml.solve import SOLVERS
from physml.training import TRAIN_OPTIONS

ROOT = Path(__file__).resolve().parents[1]

SPEC = """\
use damped_pendulum
data:
    trajectories {splits}
    time 0 .. 3 step 0.5
    initial theta, omega ~ ring(1.0, 2.0)
    solver dopri5(rtol=1e-8, atol=1e-8)
    seed 0
prior:
    d(theta)/dt = omega
    d(omega)/dt = -omega0^2*sin(theta)
    learn T0 from 5
augment mlp(hidden=8, layers=2)
train {train}
"""


def test_the_vocabulary_is_the_registries():
    v = vocabulary()
    assert set(v.methods) == set(OBJECTIVES)
    assert set(v.networks) == {"none", *NETWORKS}
    assert set(v.train_solvers) == {n for n, s in SOLVERS.items() if s.trainable}
    assert set(v.data_solvers) == {n for n, s in SOLVERS.items() if s.simulates}
    assert dict(v.train_options) == TRAIN_OPTIONS


def test_unknown_training_solver_is_located(tmp_path):
    text = SPEC.format(splits="4 train", train="physics solver rk5 epochs 1")
    with pytest.raises(physml.SpecError) as info:
        physml.parse_spec(text, "s.phy")
    line = text.splitlines().index("train physics solver rk5 epochs 1") + 1
    assert str(info.value).startswith(f"s.phy:{line}:15: unknown training solver 'rk5'")
    assert "did you mean 'rk4'?" in str(info.value)


def _unknown_network_spec(tmp_path) -> Path:
    # the Navier–Stokes LEADS spec with a network physml does not have
    text = (ROOT / "specs" / "leads_navier_stokes.phy").read_text(encoding="utf-8")
    path = tmp_path / "leads_navier_stokes.phy"
    path.write_text(text.replace("augment fno(", "augment fourier("), encoding="utf-8")
    return path


def test_check_refuses_what_train_cannot_run(tmp_path):
    spec = _unknown_network_spec(tmp_path)
    res = CliRunner().invoke(app, ["check", str(spec)])
    assert res.exit_code == 1
    first = res.output.strip().splitlines()[0]
    assert f"{spec}:" in first and "unknown augmentation 'fourier'" in first, res.output


def test_train_fails_before_simulating_or_creating_anything(tmp_path, monkeypatch):
    spec = _unknown_network_spec(tmp_path)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["train", str(spec), "--out", "run"])
    assert res.exit_code == 1 and "unknown augmentation 'fourier'" in res.output
    assert not (tmp_path / "run").exists() and not (tmp_path / "data").exists()
    # A method that needs a prior, without one: refused at build time, before any data.
    spec = tmp_path / "s.phy"
    spec.write_text(SPEC.format(splits="4 train", train="physics epochs 1")
                    .replace("augment mlp(hidden=8, layers=2)\n", "")
                    .split("prior:")[0] + "train physics epochs 1\n")
    res = CliRunner().invoke(app, ["train", str(spec), "--out", "run2"])
    assert res.exit_code == 1 and "needs a `prior:` block" in res.output, res.output
    assert not (tmp_path / "run2").exists() and not (tmp_path / "data").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_failed_start_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "s.phy"
    spec.write_text(SPEC.format(splits="4 train", train="physics epochs 1"))
    res = CliRunner().invoke(app, ["train", str(spec), "--device", "cuda", "--out", "p3"])
    assert res.exit_code == 1 and "no CUDA device" in res.output
    assert not (tmp_path / "p3").exists()
    res = CliRunner().invoke(app, ["train", str(spec), "--device", "cpu", "--out", "p3",
                                   "--steps", "1", "-q"])
    assert res.exit_code == 0, res.output


def test_without_a_val_split_validation_is_held_out_of_train(tmp_path):
    spec = physml.parse_spec(SPEC.format(splits="10 train, 3 test",
                                         train="physics epochs 2 batch 4 val_every 1"))
    ds = physml.simulate(spec)
    run = physml.train(spec, dataset=ds, out=tmp_path / "r", report=True)
    info = json.loads((run.path / "config.json").read_text())
    held = info["validation"]
    assert held["source"] == "held out of train" and held["trajectories"] == 2
    assert len(held["train_indices_held_out"]) == 2
    # 8 trajectories left for training: 2 batches of 4 per epoch.
    assert len([m for m in run.metrics() if "loss" in m]) == 4
    report = json.loads((run.path / "report.json").read_text())
    assert report["evaluate"]["split"] == "test" and report["evaluate"]["trajectories"] == 3
    # The validation errors are those of the held-out training trajectories, not the test.
    from physml.data import Trajectories

    model = run.load_model("best")
    held_out = ds.splits["train"][:, held["train_indices_held_out"]]
    batch = Trajectories(held_out, ds.times).batch()
    err = float((model.predict(batch) - batch.target).pow(2).mean())
    best = torch.load(run.path / "checkpoints" / "best.pt", weights_only=True)
    assert best["val"] == pytest.approx(err, rel=1e-5)


def test_check_refuses_an_adjoint_the_solver_does_not_have(tmp_path):
    spec = tmp_path / "s.phy"
    spec.write_text(SPEC.format(splits="4 train", train="physics solver rk4 adjoint true"))
    res = CliRunner().invoke(app, ["check", str(spec)])
    assert res.exit_code == 1
    assert "physics: `solver rk4` has no adjoint" in res.output.splitlines()[0]
    spec.write_text(SPEC.format(splits="4 train", train="physics solver rk4_38 adjoint true"))
    assert CliRunner().invoke(app, ["check", str(spec)]).exit_code == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_check_refuses_a_device_this_machine_does_not_have(tmp_path):
    spec = tmp_path / "s.phy"
    spec.write_text(SPEC.format(splits="4 train", train="physics epochs 1 device cuda"))
    res = CliRunner().invoke(app, ["check", str(spec)])
    assert res.exit_code == 1 and "no CUDA device is available" in res.output
