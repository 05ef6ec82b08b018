"""Simulation speed: physml vs a bare batched torchdiffeq call vs a SciPy loop. Prints JSON.

    python benchmarks/simulate_speed.py                      # pendulum (CPU) + small datasets
    python benchmarks/simulate_speed.py --part datasets --device cuda --full
    python benchmarks/simulate_speed.py --part rd            # RD: adaptive vs rk4(step=1e-3)
    python benchmarks/simulate_speed.py --part ns --threads 1 # LEADS NS: new vs old spectral

Pendulum: 1000 damped-pendulum trajectories, 40 steps of 0.5 (t = 0 … 20), rtol = atol
= 1e-8. Errors are max |x − x_ref| over all trajectories and frames against torchdiffeq's
dopri8 at rtol = atol = 1e-13 (landing on every output time).

Datasets: the thesis-sized reaction–diffusion set (1920 sequences, 32×32, RK4 at
δt = 1e-3, 30 frames δt = 0.1) and the LEADS Gray–Scott / Navier–Stokes sets of
specs/. Without ``--full`` a fraction of the trajectories is timed and the full time is
extrapolated linearly (the cost is linear in the batch once it fills the machine).

NS (``--part ns``): the LEADS Navier–Stokes set of specs/leads_navier_stokes.phy (4
environments × 40 trajectories, 32², warm-up 30 then 10 frames: 39 time units at
δt = 1e-3) timed in full, against the spectral integrator as it was before it formed
linear terms in Fourier space (commit 3b3c2e1: the compiled right-hand side evaluated on
the grid, 12 transforms a step, all 160 trajectories in one batch), which is timed on
``--ns-span`` time units of the same 160 trajectories, side by side with the new one,
and extrapolated (a step costs the same all along). Errors on ``--ns-check`` initial
states per environment, full protocol: relative L2 error per trajectory and frame
(‖x − x_ref‖/‖x_ref‖ over the 32² grid), the max over trajectories, against the old
integrator and against a near-exact solution (spectral_rk4 at δt = 1e-3, whose own error
is ~1e-12). CPU seconds (process time) are reported beside wall seconds: this machine is
shared, and the CPU time of a one-thread run is what it would take alone.

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
        spec = _data_spec(name)
        total = sum(n for _, n in spec.data.splits) * len(spec.environments)
        out[name] = _timed_dataset(spec, total, 1.0 if full else 0.1, device)
    return out


def _data_spec(name: str, **data):
    """specs/NAME.phy as far as simulation reads it (`use`, `data:`, `environments:`; the
    model lines are for training and may name what this checkout lacks), with ``data``
    fields replaced."""
    keep, lines = False, []
    for line in (ROOT / "specs" / f"{name}.phy").read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            keep = line.split()[0] in ("use", "data:", "environments:")
        if keep:
            lines.append(line)
    spec = physml.parse_spec("\n".join(lines) + "\n")
    return replace(spec, data=replace(spec.data, **data)) if data else spec


def _ns_with_solver(spec, solver: str, step: float):
    return replace(spec, data=replace(spec.data, solver=replace(
        spec.data.solver, name=solver, kwargs=(("step", step),))))


def _legacy_spectral_integrate(p, y0, batch_params, device, bound, progress,
                               out_dtype=torch.float64):
    """The spectral branch of ``physml.simulation.core._integrate`` at commit 3b3c2e1:
    the right-hand side less its diffusion, compiled, evaluated on the grid at each step
    (every spatial operator transforms forward and back), all trajectories in one batch.
    ``spectral_cn`` without ``inputs`` runs that loop unchanged."""
    import sympy

    from physml.simulation.core import lean_system
    from physml.solve.spectral import spectral_cn, split_diffusion
    from physml.symbolic.compiler import compile_dynamics

    spec = p.spec
    out_times = p.times if p.start == float(p.times[0]) else torch.cat(
        [torch.tensor([p.start], dtype=torch.float64), p.times])
    env0 = p.env_params[0]
    coeffs, rest = split_diffusion(spec.system)
    f = compile_dynamics(lean_system(rest, env0, p.varying), values=env0,
                         fold_constants=not p.varying).to(dtype=torch.float64)
    if p.varying:
        f.set_batch_params(batch_params)
    diff = {var: torch.tensor([float(c.xreplace({sympy.Symbol(k): sympy.Float(v)
                                                 for k, v in e.items()}))
                               for e in p.env_params], dtype=torch.float64)
            .repeat_interleave(y0.shape[0] // len(p.env_params)) for var, c in coeffs.items()}
    with torch.no_grad():
        out = spectral_cn(f, diff, spec.system.domain, y0, out_times,
                          float(p.solver.options()["step"]), bound=bound, progress=progress,
                          out_dtype=out_dtype)
    if len(out_times) != len(p.times):
        out.states = out.states[1:]
    return out


def _simulate_legacy(spec, **kw):
    from physml.simulation import core

    new = core._integrate
    core._integrate = _legacy_spectral_integrate
    try:
        return simulate(spec, **kw)
    finally:
        core._integrate = new


def _clock(fn):
    """(wall seconds, CPU seconds of this process, result)."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def _rel_l2(x, ref) -> torch.Tensor:
    """‖x − ref‖/‖ref‖ over each frame's grid: (env, traj, time)."""
    return (x - ref).flatten(3).norm(dim=-1) / ref.flatten(3).norm(dim=-1)


def navier_stokes(span: float, repeat: int, check: int, rk4_step: float) -> dict:
    spec = _data_spec("leads_navier_stokes")
    n_env = len(spec.environments)
    per_env = sum(n for _, n in spec.data.splits)
    horizon = spec.data.warmup + (spec.data.n_steps - 1) * spec.data.dt
    default = str(spec.data.solver)
    cn = _ns_with_solver(spec, "spectral_cn", 1e-3)
    rk4 = _ns_with_solver(spec, "spectral_rk4", rk4_step)
    rk4_name = f"spectral_rk4(step={rk4_step:g})"
    # Side by side on the first `span` time units of all 160 trajectories (one split of
    # 40 initial states per environment: the batch a full run integrates at once).
    short = {k: replace(s, data=replace(s.data, splits=(("train", per_env),), warmup=0.0,
                                        t1=span, dt=span))
             for k, s in (("old", cn), ("new", cn), ("rk4", rk4))}
    runs = {"old": lambda: _simulate_legacy(short["old"]),
            "new": lambda: simulate(short["new"]), "rk4": lambda: simulate(short["rk4"])}
    rows: dict[str, list] = {k: [] for k in runs}
    for _ in range(repeat):
        for key, fn in runs.items():
            rows[key].append(_clock(fn)[:2])
    wall = {k: min(r[0] for r in v) for k, v in rows.items()}
    cpu = {k: min(r[1] for r in v) for k, v in rows.items()}
    scale = horizon / span
    # The spec's own solver on the whole data set, as `physml simulate` runs it.
    full_wall, full_cpu, ds = _clock(lambda: simulate(spec))
    if check == 0:                                  # timings only
        return {"spec_solver": default, "spec_solver_full_run": {
            "cpu_seconds": round(full_cpu, 1), "wall_seconds": round(full_wall, 1)},
            "full_cpu_seconds_estimate": {k: round(v * scale, 1) for k, v in cpu.items()},
            "side_by_side_cpu_seconds": cpu, "side_by_side_wall_seconds": wall,
            "span": span}
    # Accuracy on `check` initial states per environment over the whole protocol, against
    # the old integrator and a reference 1e-12 from the exact solution (RK4 with exact
    # diffusion at δt = 5e-3: halving that step again changes it by < 1e-11).
    small = {k: replace(s, data=replace(s.data, splits=(("train", check),)))
             for k, s in (("cn", cn), ("rk4", rk4), ("spec", spec),
                          ("ref", _ns_with_solver(spec, "spectral_rk4", 5e-3)))}
    f64 = dict(dtype=torch.float64)
    old = _simulate_legacy(small["cn"], **f64)["train"]
    new = simulate(small["cn"], **f64)["train"]
    fast = simulate(small["rk4"], **f64)["train"]
    ref = simulate(small["ref"], **f64)["train"]
    same = simulate(small["spec"]).hash == simulate(small["spec"]).hash

    def err(x, y) -> dict:
        e = _rel_l2(x, y)
        return {"final_frame": float(e[:, :, -1].max()), "all_frames": float(e.max()),
                "max_abs": float((x - y).abs().max())}

    est = {k: round(cpu[k] * scale, 1) for k in cpu}
    return {
        "trajectories": per_env * n_env, "state": [1, 32, 32], "frames": spec.data.n_steps,
        "time_units_integrated": horizon, "spec_solver": default,
        "spec_solver_full_run": {"cpu_seconds": round(full_cpu, 1),
                                 "wall_seconds": round(full_wall, 1),
                                 "finite": all(bool(torch.isfinite(v).all())
                                               for v in ds.splits.values()),
                                 "same_bytes_twice": same},
        "full_cpu_seconds_estimate": {"old spectral_cn(step=1e-3)": est["old"],
                                      "new spectral_cn(step=1e-3)": est["new"],
                                      f"new {rk4_name}": est["rk4"]},
        "side_by_side": {
            "time_units": span, "trajectories": per_env * n_env, "repeat": repeat,
            "cpu_seconds": {"old spectral_cn": round(cpu["old"], 2),
                            "new spectral_cn": round(cpu["new"], 2),
                            rk4_name: round(cpu["rk4"], 2)},
            "wall_seconds": {"old spectral_cn": round(wall["old"], 2),
                             "new spectral_cn": round(wall["new"], 2),
                             rk4_name: round(wall["rk4"], 2)},
            "note": "best of `repeat`, interleaved; full estimate = seconds × "
                    f"{horizon:g}/{span:g} (a step costs the same all along)"},
        "speedup_cpu": {"new spectral_cn": round(cpu["old"] / cpu["new"], 2),
                        rk4_name: round(cpu["old"] / cpu["rk4"], 2)},
        "accuracy_trajectories": int(check * n_env),
        "relative_l2": {
            "definition": "‖x − y‖/‖y‖ over each frame's 32² grid, max over trajectories",
            "new spectral_cn vs old": err(new, old),
            f"{rk4_name} vs old": err(fast, old),
            "old vs reference": err(old, ref),
            f"{rk4_name} vs reference": err(fast, ref),
            "reference": "spectral_rk4(step=5e-3)"},
        "data_rms": float(old.pow(2).mean().sqrt()),
    }


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
    ap.add_argument("--part", choices=["all", "pendulum", "datasets", "rd", "ns"],
                    default="all")
    ap.add_argument("--ns-span", type=float, default=1.0,
                    help="time units of the NS side-by-side timing (old vs new)")
    ap.add_argument("--ns-check", type=int, default=2,
                    help="initial states per environment of the NS accuracy check")
    ap.add_argument("--ns-rk4-step", type=float, default=0.02)
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
    if args.part in ("all", "ns"):
        report["navier_stokes_leads"] = navier_stokes(args.ns_span, args.repeat, args.ns_check,
                                                      args.ns_rk4_step)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
