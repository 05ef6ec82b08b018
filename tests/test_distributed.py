"""Data-parallel training under torchrun (gloo, 2 CPU processes) equals one process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import physml

SPEC = """\
use damped_pendulum
data:
    file "{data}"
prior:
    d(theta)/dt = omega
    d(omega)/dt = -omega0^2*sin(theta)
    learn T0 from 3
augment mlp(hidden=32, layers=3)
train aphynity(lambda0=1, tau2=1, niter=2) solver rk4 epochs 4 lr 1e-3 lr_phys 5e-2 batch 8 val_every 1
"""

DATA = """\
use damped_pendulum
data:
    trajectories 8 train, 4 val, 4 test
    time 0 .. 5 step 0.5
    initial theta, omega ~ ring(1.0, 2.0)
    noise 0.01
    solver dopri5(rtol=1e-9, atol=1e-9)
    seed 0
"""


def _cli(*args, nproc: int | None, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if nproc:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", "-m", "physml", *args]
    else:
        cmd = [sys.executable, "-m", "physml", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_two_processes_equal_one_with_the_same_global_batch(tmp_path):
    ds = physml.simulate(physml.lang.parse_spec(DATA))
    physml.data.save_dataset(ds, tmp_path / "pend.h5")
    spec = tmp_path / "p.phy"
    spec.write_text(SPEC.format(data=tmp_path / "pend.h5"))
    one = _cli("train", str(spec), "--out", str(tmp_path / "one"), "-q", nproc=None,
               cwd=tmp_path)
    assert one.returncode == 0, one.stdout + one.stderr
    two = _cli("train", str(spec), "--out", str(tmp_path / "two"), "-q", nproc=2, cwd=tmp_path)
    assert two.returncode == 0, two.stdout + two.stderr
    a = torch.load(tmp_path / "one/checkpoints/last.pt", weights_only=True)
    b = torch.load(tmp_path / "two/checkpoints/last.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], rtol=1e-4, atol=1e-6), k
    # λ followed the same (all-reduced) trajectory losses on every rank.
    assert b["objective"]["lambda"] == pytest.approx(a["objective"]["lambda"], rel=1e-5)
    info = json.loads((tmp_path / "two/config.json").read_text())
    assert info["distributed"] == {"world_size": 2, "batch": "global", "per_rank_batch": 4}
    # Only rank 0 wrote: one metrics line per batch, one run directory.
    steps = [json.loads(l) for l in (tmp_path / "two/metrics.jsonl").read_text().splitlines()]
    assert len([m for m in steps if "loss" in m]) == 4
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["one", "two"] or \
        sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["data", "one", "two"]
