"""Run folders over time: one training at a time per folder (a lock), and a resumed run's
metrics.jsonl reads as the uninterrupted run's (issue 9.11)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import physml
from physml.cli.app import app
from physml.experiment import Run, RunError, train
from physml.experiment.run import RunLock
from physml.training.trainer import _truncate_metrics

from test_security import RUN_SPEC

# The tiny run of the damaged-run-folder tests, with the batch size left open.
SPEC = RUN_SPEC.replace("batch 4", "batch {batch}")
HOST = socket.gethostname()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    (root / "s.phy").write_text(SPEC.format(batch=2))
    return physml.simulate(physml.load_spec(root / "s.phy"))


def _spec(tmp_path, batch=2):
    (tmp_path / "s.phy").write_text(SPEC.format(batch=batch))
    return physml.load_spec(tmp_path / "s.phy")


def _vals(run):
    return [(m["step"], m["val"], m.get("final", False)) for m in Run(run.path).metrics()
            if "val" in m]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---- metrics.jsonl ------------------------------------------------------------------------

def test_resumed_metrics_read_as_the_uninterrupted_runs(tmp_path, data):
    spec = _spec(tmp_path)  # 2 batches per epoch, validated after each epoch
    full = train(spec, dataset=data, out=tmp_path / "full", report=False)
    part = train(spec, dataset=data, out=tmp_path / "part", report=False, steps=3)
    # Stopped mid-epoch: the last state is validated once more, marked final.
    assert [(s, f) for s, _, f in _vals(part)] == [(2, False), (3, True)]
    resumed = train(resume=part.path, dataset=data, report=False)
    assert _vals(resumed) == _vals(full)
    assert [(s, f) for s, _, f in _vals(full)] == [(2, False), (4, False), (6, False)]
    strip = lambda ms: [{k: v for k, v in m.items() if k != "time"} for m in ms]  # noqa: E731
    assert strip(Run(resumed.path).metrics()) == strip(Run(full.path).metrics())


def test_a_stop_right_after_a_validation_writes_one_val_line(tmp_path, data):
    spec = _spec(tmp_path)
    part = train(spec, dataset=data, out=tmp_path / "part", report=False, steps=4)
    assert [(s, f) for s, _, f in _vals(part)] == [(2, False), (4, False)]


def test_truncate_metrics_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"step": 1, "loss": 1.0}, {"step": 1, "val": 0.5}, {"step": 2, "loss": 0.9},
             {"step": 2, "val": 0.4, "final": True}, {"step": 3, "loss": 0.8}]
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in lines[:2]) +
                     b'\xff{"step": 2\n' +
                     b"".join(json.dumps(r).encode() + b"\n" for r in lines[2:]))
    assert _truncate_metrics(path, 2) == 1
    assert [json.loads(ln) for ln in path.read_text().splitlines()] == lines[:3]
    assert _truncate_metrics(tmp_path / "none.jsonl", 2) is None


# ---- one training per run folder ----------------------------------------------------------

def test_a_held_lock_keeps_a_second_training_out_of_the_folder(tmp_path):
    spec = _spec(tmp_path, batch=4)
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text(f"{os.getpid()} {HOST}\n")
    r = CliRunner().invoke(app, ["train", str(tmp_path / "s.phy"), "--out", str(out), "-q",
                                 "--data-dir", str(tmp_path / "data")])
    assert r.exit_code == 1
    assert r.output.splitlines()[-1] == (
        f"error: {out}/.lock: the run folder is in use by another physml training (pid "
        f"{os.getpid()} on {HOST}); wait for it to end, or choose another --out")
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # the other's folder untouched
    assert spec  # (the spec itself is fine)


def test_two_resumes_of_one_run_are_kept_apart(tmp_path, data):
    run = train(_spec(tmp_path), dataset=data, out=tmp_path / "run", report=False, steps=1)
    assert not (run.path / ".lock").exists()
    lock = RunLock(run.path).acquire()
    try:
        with pytest.raises(RunError) as info:
            train(resume=run.path, dataset=data, report=False)
        assert str(info.value) == (f"{run.path}/.lock: the run folder is in use by another "
                                   f"physml training (pid {os.getpid()} on {HOST}); wait for "
                                   "it to end")
    finally:
        lock.release()
    assert not (run.path / ".lock").exists()
    assert train(resume=run.path, dataset=data, report=False).stop_reason == "epochs"


def test_a_stale_lock_is_taken_over_with_a_message(tmp_path, data):
    run = train(_spec(tmp_path), dataset=data, out=tmp_path / "run", report=False, steps=1)
    pid = _dead_pid()
    (run.path / ".lock").write_text(f"{pid} {HOST}\n")
    messages = []
    resumed = train(resume=run.path, dataset=data, report=False,
                    callback=lambda p: p.message and messages.append(p.message))
    assert resumed.stop_reason == "epochs"
    assert f"took over the lock {run.path}/.lock, left by pid {pid} that no longer runs" \
        in messages
    assert not (run.path / ".lock").exists()


def test_a_lock_from_another_host_is_never_taken_over(tmp_path):
    (tmp_path / ".lock").write_text(f"{_dead_pid()} elsewhere.example\n")
    with pytest.raises(RunError, match=r"in use by another physml training \(pid \d+ on "
                                       r"elsewhere\.example\)"):
        RunLock(tmp_path).acquire()


RACER = """\
import sys, time
from pathlib import Path
from physml.experiment import RunError
from physml.experiment.run import RunLock
folder, go = Path(sys.argv[1]), Path(sys.argv[2])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.01)
try:
    lock = RunLock(folder).acquire()
except RunError as exc:
    print("refused:", exc, flush=True)
else:
    print("held", flush=True)
    time.sleep(1.5)
    lock.release()
"""


def test_two_processes_racing_for_one_folder(tmp_path):
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(Path(physml.__file__).parents[1])}
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env) for _ in range(2)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    go.touch()
    outs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outs[0] == "held", outs
    assert outs[1].startswith(f"refused: {tmp_path}/.lock: the run folder is in use by another "
                              "physml training (pid "), outs
    assert not (tmp_path / ".lock").exists()
