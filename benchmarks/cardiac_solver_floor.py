"""How close a solver gets the *true* cardiac model to the data: the floor under a hybrid
whose conduction term is given (``specs/chapter2/cardiac_hybrid_sigma_known*.phy``).

The test trajectories of ``specs/chapter2/cardiac_rectangle.phy`` (Mitchell–Schaeffer with
a rectangular scar, thesis §2.7.3; the data: RK4 at 0.05 ms) are simulated again from the
same initial states with the solvers a hybrid model can train with (10 steps per 1 ms
frame), the conductivity σ scanned with everything else true. Printed as JSON, and written
to ``benchmarks/results/cardiac_solver_floor.json``: the relative MSE of v (eq. 2.6 with
norms over the grid) over the first 6 / 12 / 24 frames after t0 (the integration starts at
the data's initial state, ``history`` frames before t0). A model trained with solver S
cannot be closer to the data than S is with the true ionic currents unless its network
makes up the difference, and a pointwise network cannot make up a conduction error.

    python benchmarks/cardiac_solver_floor.py [--test 32] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

import physml

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "chapter2" / "cardiac_rectangle.phy"
SYSTEM = ROOT / "specs" / "chapter2" / "mitchell_schaeffer_scar.phy"
SOLVERS = ("euler(step=0.1)", "midpoint(step=0.1)", "rk4(step=0.1)")
SIGMAS = (0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0)
HORIZONS = (6, 12, 24)


def _simulate(text: str, folder: Path) -> torch.Tensor:
    """v of the test split, ``(E, N, T, x, y)`` from t0 on."""
    path = folder / "floor.phy"
    path.write_text(text)
    ds = physml.simulate(physml.load_spec(path))
    return ds.splits["test"][:, :, ds.history:, 0].double()


def _relative(v: torch.Tensor, ref: torch.Tensor, T: int) -> float:
    return float((v[:, 1:T + 1] - ref[:, 1:T + 1]).pow(2).sum()
                 / ref[:, 1:T + 1].pow(2).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--test", type=int, default=32, help="test trajectories")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                         "cardiac_solver_floor.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    text = SPEC.read_text()
    lines = [ln for ln in text.splitlines() if ln.strip().startswith("trajectories ")]
    assert len(lines) == 1, "the spec's data block has one `trajectories` line"
    text = text.replace(lines[0], f"    trajectories 2 train, 1 val, {args.test} test")
    data_solver = next(ln.strip() for ln in text.splitlines()
                       if ln.strip().startswith("solver "))
    envs = "environments:\n" + "".join(
        f"    sigma_{str(s).replace('.', '_')}: sigma = {s}\n" for s in SIGMAS)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / SYSTEM.name).write_text(SYSTEM.read_text())
        ref = _simulate(text, folder)[0]
        for solver in SOLVERS:
            scan = text.replace(data_solver, f"solver {solver}").replace(
                "\nobserve ", f"\n{envs}observe ", 1)
            v = _simulate(scan, folder)
            for i, sigma in enumerate(SIGMAS):
                rows.append({"solver": solver, "sigma": sigma,
                             **{f"T={T}": _relative(v[i], ref, T) for T in HORIZONS}})
    out = {"data": f"{SPEC.relative_to(ROOT)}, test split ({args.test} trajectories), "
                   f"{data_solver}, sigma = 2", "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
