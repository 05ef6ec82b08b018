"""Simulation speed: physml vs a bare batched torchdiffeq call vs a SciPy loop. Prints JSON.

    python benchmarks/simulate_speed.py                      # pendulum (CPU) + small datasets
    python benchmarks/simulate_speed.py --part datasets --device cuda --full
    python benchmarks/simulate_speed.py --part rd            # RD: adaptive vs rk4(step=1e-3)

Pendulum: 1000 damped-pendulum trajectories, 40 steps of 0.5 (t = 0 … 20), rtol = atol
= 1e-8. Errors are max |x − x_ref| over all trajectories and frames against torchdiffeq's
dopri8 at rtol = atol = 1e-13 (landing on every output time).

Datasets: the thesis-sized reaction–diffusion set (1920 sequences, 32×32, RK4 at
δt = 1e-3, 30 frames δt = 0.1) and the LEADS Gray–Scott / Navier–Stokes sets of
specs/. Without ``--full`` a fraction of the trajectories is timed and the full time is
extrapolated linearly (the cost is linear in the batch once it fills the machine).

RD (``--part rd``): the full thesis-sized reaction–diffusion set (1920 trajectories,
2 × 32 × 32, t = 0 … 2.9 step 0.1) simulated with the adaptive dopri5 line of
specs/table3_4/rd_*.phy, against the old ``rk4(step=1e-3)`` timed on a subset and
extrapolated; plus the accuracy that tolerance was chosen by (on ``--rd-check``
trajectories): max |adaptive − rk4(1e-3)| and the reference's own error, max
|rk4(1e-3) − rk4(2.5e-4)|.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import physml  # noqa: E402
from physml.simulation.core import simulate  # noqa: E402

PENDULUM = """use damped_pendulum
data:
    trajectories 1000 train
    time 0 .. 20 step 0.5
    initial theta, omega ~ ring(1.3, 2.3)
    solver dopri5(rtol=1e-8, atol=1e-8)
    seed 0
"""

RD = """use reaction_diffusion
data:
    trajectories {n} train
    time 0 .. 2.9 step 0.1
    initial u, v ~ uniform_cells(0, 1)
    solver rk4(step=0.001)
    seed 0
"""


def _best(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def pendulum(repeat: int, scipy_n: int) -> dict:
    from scipy.integrate import solve_ivp
    from torchdiffeq import odeint

    spec = physml.parse_spec(PENDULUM)
    ds = simulate(spec, dtype=torch.float64)
    x = ds["train"][0]                                              # (N, T, 2)
    y0 = x[:, 0].clone()
    t = ds.times
    w2, a = (2 * math.pi / 6) ** 2, 0.2

    def F(_t, X):                                                   # hand-written
        th, om = X[:, 0], X[:, 1]
        return torch.stack([om, -w2 * torch.sin(th) - a * om], 1)

    ref = odeint(F, y0, t, rtol=1e-13, atol=1e-13, method="dopri8",
                 options={"step_t": t}).transpose(0, 1)
    t_phys, ds = _best(lambda: simulate(spec, dtype=torch.float64), repeat)
    err_phys = float((ds["train"][0] - ref).abs().max())
    # Matched accuracy: physml's worst-trajectory norm is stricter than a batch RMS norm,
    # so at equal rtol it is more accurate; a looser rtol matches SciPy DOP853's error.
    loose = replace(spec, data=replace(spec.data, solver=replace(
        spec.data.solver, kwargs=(("rtol", 1e-7), ("atol", 1e-7)))))
    t_loose, dl = _best(lambda: simulate(loose, dtype=torch.float64), repeat)
    err_loose = float((dl["train"][0] - ref).abs().max())
    t_bare, yb = _best(lambda: odeint(F, y0, t, rtol=1e-8, atol=1e-8, method="dopri5"), repeat)
    err_bare = float((yb.transpose(0, 1) - ref).abs().max())

    def f_np(_t, y):
        return [y[1], -w2 * math.sin(y[0]) - a * y[1]]

    res = {}
    y0n, tn = y0.numpy(), t.numpy()
    for method in ("DOP853", "RK45"):
        n = min(scipy_n, len(y0n))
        start = time.perf_counter()
        sols = [solve_ivp(f_np, (tn[0], tn[-1]), y0n[i], t_eval=tn, method=method, rtol=1e-8,
                          atol=1e-8).y.T for i in range(n)]
        elapsed = (time.perf_counter() - start) * len(y0n) / n
        err = float(np.abs(np.stack(sols) - ref[:n].numpy()).max())
        res[method] = {"seconds": round(elapsed, 3), "max_error": err,
                       "trajectories_timed": n}
    return {
        "trajectories": len(y0n), "frames": len(tn), "rtol": 1e-8, "atol": 1e-8,
        "physml_seconds": round(t_phys, 4), "physml_max_error": err_phys,
        "physml_rtol_1e-7_seconds": round(t_loose, 4), "physml_rtol_1e-7_max_error": err_loose,
        "speedup_vs_DOP853_at_rtol_1e-7": round(res["DOP853"]["seconds"] / t_loose, 1),
        "bare_torchdiffeq_seconds": round(t_bare, 4), "bare_torchdiffeq_max_error": err_bare,
        "scipy": res,
        "speedup_vs_DOP853": round(res["DOP853"]["seconds"] / t_phys, 1),
        "speedup_vs_RK45": round(res["RK45"]["seconds"] / t_phys, 1),
        "bare_speedup_vs_DOP853": round(res["DOP853"]["seconds"] / t_bare, 1),
        "physml_over_bare": round(t_phys / t_bare, 3),
        "note": "physml_seconds is the whole physml.simulate call (parse excluded: spec "
                "object reused; sampling, compiling and integration included)",
    }


def _timed_dataset(spec, total: int, fraction: float, device) -> dict:
    splits = spec.data.splits
    if fraction < 1.0:
        splits = tuple((k, max(1, int(round(n * fraction)))) for k, n in splits)
    small = replace(spec, data=replace(spec.data, splits=splits))
    n_sim = sum(n for _, n in splits) * max(1, len(spec.environments))
    start = time.perf_counter()
    ds = simulate(small, device=device)
    if device and str(device).startswith("cuda"):
        torch.cuda.synchronize()
    secs = time.perf_counter() - start
    finite = all(bool(torch.isfinite(v).all()) for v in ds.splits.values())
    return {"trajectories_total": total, "trajectories_timed": n_sim,
            "seconds_timed": round(secs, 2),
            "seconds_full_estimate": round(secs * total / n_sim, 1), "finite": finite,
            "solver": str(spec.data.solver)}


def datasets(device, full: bool) -> dict:
    out = {}
    rd = physml.parse_spec(RD.format(n=1920))
    out["reaction_diffusion_1920x32x32_rk4_dt1e-3_30_frames"] = _timed_dataset(
        rd, 1920, 1.0 if full else 0.05, device)
    for name in ("leads_gray_scott", "leads_navier_stokes"):
        spec = physml.load_spec(ROOT / "specs" / f"{name}.phy")
        total = sum(n for _, n in spec.data.splits) * len(spec.environments)
        out[name] = _timed_dataset(spec, total, 1.0 if full else 0.1, device)
    return out


def _rd_solver_line() -> str:
    """The data solver of the Table 3.4 reaction–diffusion specs."""
    return str(physml.load_spec(ROOT / "specs" / "table3_4" / "rd_true_pde.phy").data.solver)


def _rd_spec(n: int, solver: str):
    return physml.parse_spec(RD.replace("rk4(step=0.001)", solver).format(n=n))


def reaction_diffusion(check: int, rk4_fraction: float) -> dict:
    adaptive = _rd_solver_line()
    full = 1920
    start = time.perf_counter()
    ds = simulate(_rd_spec(full, adaptive))
    t_adaptive = time.perf_counter() - start
    finite = bool(torch.isfinite(ds["train"]).all())
    n_rk4 = max(1, int(round(full * rk4_fraction)))
    start = time.perf_counter()
    simulate(_rd_spec(n_rk4, "rk4(step=0.001)"))
    t_rk4 = time.perf_counter() - start
    t_rk4_full = t_rk4 * full / n_rk4
    # Accuracy (float64 arrays) on the first `check` trajectories of the same seed.
    x = simulate(_rd_spec(check, adaptive), dtype=torch.float64)["train"]
    ref = simulate(_rd_spec(check, "rk4(step=0.001)"), dtype=torch.float64)["train"]
    fine = simulate(_rd_spec(check, "rk4(step=0.00025)"), dtype=torch.float64)["train"]
    return {
        "trajectories": full, "state": [2, 32, 32], "frames": int(ds["train"].shape[2]),
        "adaptive_solver": adaptive,
        "adaptive_seconds_full": round(t_adaptive, 1), "adaptive_finite": finite,
        "rk4_dt1e-3_seconds_timed": round(t_rk4, 1), "rk4_dt1e-3_trajectories_timed": n_rk4,
        "rk4_dt1e-3_seconds_full_estimate": round(t_rk4_full, 1),
        "rk4_note": f"rk4(step=1e-3) timed on {n_rk4} of {full} trajectories and extrapolated "
                    "linearly (its cost is linear in the batch once it fills the machine)",
        "speedup": round(t_rk4_full / t_adaptive, 1),
        "accuracy_trajectories": check,
        "max_abs_adaptive_minus_rk4_dt1e-3": float((x - ref).abs().max()),
        "max_abs_rk4_dt1e-3_minus_rk4_dt2.5e-4": float((ref - fine).abs().max()),
        "max_abs_adaptive_minus_rk4_dt2.5e-4": float((x - fine).abs().max()),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["all", "pendulum", "datasets", "rd"], default="all")
    ap.add_argument("--rd-check", type=int, default=32,
                    help="trajectories of the RD accuracy check (against rk4 at 1e-3, 2.5e-4)")
    ap.add_argument("--rd-rk4-fraction", type=float, default=0.05,
                    help="fraction of the RD trajectories timed with rk4(step=1e-3)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scipy-n", type=int, default=1000,
                    help="trajectories timed in the SciPy loop (the rest extrapolated)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--full", action="store_true", help="time the full datasets")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {"machine": {"cpu": platform.processor() or platform.machine(),
                          "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "load_average_at_start": os.getloadavg()[0],
                          "torch": torch.__version__,
                          "device": args.device or "cpu",
                          "gpu": torch.cuda.get_device_name() if torch.cuda.is_available()
                          else None}}
    if args.part in ("all", "pendulum"):
        report["pendulum"] = pendulum(args.repeat, args.scipy_n)
    if args.part in ("all", "datasets"):
        report["datasets"] = datasets(args.device, args.full)
    if args.part in ("all", "rd"):
        report["reaction_diffusion_adaptive_vs_rk4"] = reaction_diffusion(
            args.rd_check, args.rd_rk4_fraction)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
