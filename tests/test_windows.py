"""`windows all`: training samples cut at every frame of the trajectories (thesis §2.7.3)."""
from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

import physml
from physml.cli.app import app
from physml.data import Trajectories, Windows

# Logistic growth from x₀ ≈ 0.0015: over the first 3 frames x/K < 0.01, so those frames
# fix r but hardly K; K shows only once x nears it, far into each trajectory.
LOGISTIC = """\
system logistic "logistic growth"
state x
param r = 1 in (0, inf)
param K = 1 in (0, inf)
dynamics:
    d(x)/dt = r*x*(1 - x/K)
data:
    trajectories 8 train, 4 val, 4 test
    time 0 .. 12 step 0.5
    initial x ~ uniform(0.001, 0.002)
    solver dopri5(rtol=1e-9, atol=1e-9)
    seed 0
prior:
    d(x)/dt = r*x*(1 - x/K)
    learn r from 0.5, K from 3
train physics solver rk4 horizon 3 {windows} epochs {epochs} batch 32 lr_phys 5e-2 val_every 5
"""


def _spec(tmp_path, windows: str, epochs: int):
    path = tmp_path / f"logistic_{windows.replace(' ', '_') or 'none'}.phy"
    path.write_text(LOGISTIC.format(windows=windows, epochs=epochs))
    return physml.load_spec(path)


def test_a_window_is_the_trajectory_started_at_its_first_frame():
    """Window (n, o) is trajectory n as if its data began o frames later: the context,
    the initial state (hidden channels included), the target, the mask and the indices."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 12, 3, 4, 4, generator=g)
    x[:, :, 5, 1] = float("nan")       # a gap in a measured channel
    t = torch.arange(12.0) * 0.25
    for observed in (None, [0, 2]):
        windows = Windows(Trajectories(x, t, 3, observed=observed), 4)
        assert len(windows) == 2 * 3 * 6 and windows.n_frames == 4
        for r in range(len(windows)):
            n, o = windows.index[r].tolist()
            ref = Trajectories(x[:, :, o:], t[o:], 3, observed=observed).batch(
                torch.tensor([n]), 4)
            got = windows.batch(torch.tensor([r]))
            for name in ("x0", "t", "target", "env", "traj", "context"):
                assert torch.equal(getattr(got, name), getattr(ref, name)), (name, n, o)
            want = ref.mask if ref.mask is not None else torch.ones(1, 4, 1, 1, 1)
            assert torch.equal(got.mask.expand(1, 4, 3, 4, 4), want.expand(1, 4, 3, 4, 4))
        assert windows.x0_known[:, 1].any() and not windows.x0_known[:, 1].all()


def test_windows_need_equally_spaced_frames():
    t = torch.tensor([0.0, 1.0, 2.0, 4.0, 5.0])
    with pytest.raises(ValueError, match="equally spaced frames"):
        Windows(Trajectories(torch.zeros(1, 2, 5, 1), t), 2)


def test_windows_all_identifies_what_only_late_frames_show(tmp_path):
    """Trained on each trajectory's first 3 frames, the carrying capacity K stays where it
    started; on every 3-frame window of the trajectories it is found, with r, to 0.1 %
    in the same number of Adam steps (360). `evaluate --windows 3` scores the forecasts
    from every frame."""
    data = physml.simulate(_spec(tmp_path, "", 1))
    found = {}
    for windows, epochs in (("windows all", 60), ("windows first", 360)):
        run = physml.train(_spec(tmp_path, windows, epochs), dataset=data, report=False,
                           out=tmp_path / windows.replace(" ", "_"))
        assert len([m for m in run.metrics() if "loss" in m]) == 360
        found[windows] = {k: float(v.detach()) for k, v in
                          run.load_model("best").physical_parameters().items()}
    assert found["windows all"]["r"] == pytest.approx(1.0, rel=1e-3)
    assert found["windows all"]["K"] == pytest.approx(1.0, rel=1e-3)
    assert abs(found["windows first"]["K"] - 1.0) > 1.0

    # `evaluate --windows N`: the test error of 3-frame forecasts from every frame
    run = physml.Run(tmp_path / "windows_all")
    ev = physml.evaluate(run, windows=3)
    assert (ev["windows"]["length"], ev["windows"]["windows"]) == (3, 4 * 23)
    assert ev["windows"]["mse"] < 1e-8 < physml.evaluate(
        tmp_path / "windows_first", windows=3)["windows"]["mse"] / 1e4
    # windows as long as the trajectories: one per trajectory, the plain forecast
    whole = physml.evaluate(run, windows=25)["windows"]
    assert whole["windows"] == 4
    assert whole["mse"] == pytest.approx(ev["mse"], rel=1e-6)
    result = CliRunner().invoke(app, ["evaluate", str(run.path), "--windows", "3"])
    assert result.exit_code == 0
    assert "mse, 92 forecasts of 3 frames from every frame" in result.output


@pytest.mark.parametrize("option, message", [
    ("windows some", "training option `windows some`: choices are all (every window of "
                     "`horizon` frames), first (each trajectory's first frames)"),
    ("windows all fit_initial true", "training option `windows all` starts forecasts at "
                                     "every frame, where `fit_initial` fits one initial "
                                     "state per trajectory"),
])
def test_windows_options_are_checked_on_the_train_line(tmp_path, option, message):
    path = tmp_path / "bad.phy"
    path.write_text(LOGISTIC.format(windows=option, epochs=5))
    col = LOGISTIC.splitlines()[-1].index("{windows}") + 1  # at the option name
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 1
    assert result.output.startswith(f"{path}:16:{col}: {message}")


def test_windows_all_needs_a_horizon(tmp_path):
    path = tmp_path / "bad.phy"
    path.write_text(LOGISTIC.format(windows="windows all", epochs=5).replace("horizon 3 ", ""))
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 1
    assert "training option `windows all` cuts the trajectories into windows of `horizon` " \
           "frames: give the horizon too (e.g. `horizon 6`)" in result.output
    assert result.output.startswith(f"{path}:16:")


def test_check_shows_the_horizon_and_the_windows(tmp_path):
    path = tmp_path / "ok.phy"
    path.write_text(LOGISTIC.format(windows="windows all", epochs=5))
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert "horizon 3 (every window of the trajectories)" in " ".join(result.output.split())
    path.write_text(LOGISTIC.format(windows="", epochs=5))
    out = " ".join(CliRunner().invoke(app, ["check", str(path)]).output.split())
    assert "horizon 3" in out and "every window" not in out and "curriculum" not in out
    path.write_text(LOGISTIC.format(windows="windows all curriculum linear", epochs=5))
    out = " ".join(CliRunner().invoke(app, ["check", str(path)]).output.split())
    assert "horizon 3 (every window of the trajectories), horizon grown from 2 frames over " \
           "the first half of the training steps (curriculum linear)" in out


def test_windows_all_refuses_user_data_on_an_uneven_grid(tmp_path):
    import numpy as np

    t = np.array([0.0, 0.5, 1.0, 2.0, 2.5, 3.0, 4.0, 4.5])
    np.savez(tmp_path / "d.npz", t=t, x=0.001 * np.exp(t)[None, :].repeat(6, 0))
    text = LOGISTIC.format(windows="windows all", epochs=2)
    data = text[text.index("data:"):text.index("prior:")]
    (tmp_path / "s.phy").write_text(text.replace(data, 'data:\n    file "d.npz"\n'))
    spec = physml.load_spec(tmp_path / "s.phy")
    with pytest.raises(physml.data.DataError, match=r"d\.npz: training option `windows all`: "
                       "windows of the trajectories need equally spaced frames"):
        physml.train(spec, out=tmp_path / "run", steps=1)
