"""CPU seconds the `physml` command takes to start and answer (issue 10, point 4).

Targets (on a 2-core CPU machine): `physml --help` and `physml check` of a library system
≤ 1 s of CPU; `physml evaluate` of a pendulum run ≤ 10 s. Each command runs in a fresh
process (`python -m physml …`, as the console script does); user + system CPU time of the
child is measured with `resource.getrusage`, and the median of a few repeats is reported
(the wall time too). The evaluated run is trained first, a few steps on a small dataset.

    python benchmarks/cli_startup.py [--repeats 5] > benchmarks/results/cli_startup_cpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SPEC = """\
use damped_pendulum
data:
    trajectories 8 train, 4 val, 8 test
    time 0 .. 20 step 0.5
    initial theta, omega ~ ring(1.0, 2.0)
    noise 0.01
    seed 0
prior:
    d(theta)/dt = omega
    d(omega)/dt = -omega0^2*sin(theta)
    learn T0 from 5
augment mlp(hidden=200, layers=3)
train aphynity(lambda0=1, tau2=1, niter=5) solver rk4 epochs 10 batch 8
"""


def cpu_of(args: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one run of ``python -m physml ARGS``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "physml", *args], cwd=cwd, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"physml {' '.join(args)} failed:\n{proc.stderr}")
    return (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime), wall


def measure(args, cwd, env, repeats: int) -> dict:
    runs = [cpu_of(args, cwd, env) for _ in range(repeats)]
    cpu = [c for c, _ in runs]
    return {"command": "physml " + " ".join(args), "cpu_s_median": round(statistics.median(cpu), 3),
            "cpu_s_min": round(min(cpu), 3), "wall_s_median":
            round(statistics.median(w for _, w in runs), 3), "repeats": repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out: dict = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                             "load_1min": os.getloadavg()[0]}, "targets_cpu_s":
                 {"help": 1.0, "check_system": 1.0, "evaluate": 10.0}, "results": {}}
    r = out["results"]
    r["help"] = measure(["--help"], ROOT, env, args.repeats)
    r["check_system"] = measure(["check", "equations/damped_pendulum.phy"], ROOT, env,
                                args.repeats)
    r["check_experiment"] = measure(["check", "specs/aphynity_pendulum.phy"], ROOT, env,
                                    args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "pendulum.phy").write_text(SPEC)
        cpu, wall = cpu_of(["train", "pendulum.phy", "--out", "run", "--quiet"], tmp, env)
        out["trained_first"] = {"command": "physml train (10 steps)", "cpu_s": round(cpu, 3),
                                "wall_s": round(wall, 3)}
        r["evaluate"] = measure(["evaluate", "run"], tmp, env, max(1, args.repeats // 2))
        r["evaluate_json"] = measure(["evaluate", "run", "--json"], tmp, env, 1)
    out["meets_targets"] = {k: r[k]["cpu_s_median"] <= t
                            for k, t in out["targets_cpu_s"].items()}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
