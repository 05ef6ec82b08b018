"""Identifiability before training and intervals after it (issue 13, items 5 and 6).

Identifiability (``physml check --identifiability``): Lotka–Volterra from one trajectory
started at its fixed point; the pendulum of Table 3.4 with T0 and α learned; a model where
only a·b enters; and the confounding of reaction–diffusion a, b with F_a for the thesis's
3×3 ConvNet and for a pointwise network.

Uncertainty (``physml inspect RUN``, ``--bootstrap N``): the pendulum of Table 3.4
(``pendulum_param_ode_w0_alpha.phy``: T0 and α learned, ``loss robust``) is trained on the
same 25 + 25 + 25 trajectories with ``--seeds`` draws of the observation noise (σ = 0.01);
each run's 95 % Laplace and bootstrap intervals are checked against the truth.

    python benchmarks/reproduce_discovery_uncertainty.py [--seeds 10] [--epochs 300]
        [--bootstrap 50] [--out benchmarks/results/uncertainty]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

import physml
from physml.experiment import identifiability, inspect, load_spec, parse_spec, train

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs" / "table3_4"

LV_FIXED_POINT = """\
use lotka_volterra
data:
    trajectories 1 train
    time 0 .. 10 step 0.5
    initial u ~ constant(1)              # (γ/δ, α/β): the fixed point
    initial v ~ constant(1)
    noise 0.01
prior:
    d(u)/dt = alpha*u - beta*u*v
    d(v)/dt = delta*u*v - gamma*v
    learn alpha, beta, gamma, delta
train physics solver rk4
"""

REDUNDANT = """\
system decay
state x
param a = 2 in (0, inf)
param b = 0.25 in (0, inf)
dynamics:
    d(x)/dt = -a*b*x
data:
    trajectories 8 train
    time 0 .. 2 step 0.1
    initial x ~ uniform(1, 2)
    noise 0.01
prior:
    d(x)/dt = -a*b*x
    learn a, b
train physics solver rk4
"""


def identifiability_rows() -> list[dict]:
    rows = []
    cases = [("Lotka–Volterra, one trajectory from the fixed point",
              parse_spec(LV_FIXED_POINT, str(ROOT / "specs" / "lv_fixed_point.phy"))),
             ("pendulum, T0 and α (Table 3.4 design)",
              load_spec(SPECS / "pendulum_param_ode_w0_alpha.phy")),
             ("redundant pair, only a·b enters", parse_spec(REDUNDANT, "redundant.phy")),
             ("reaction–diffusion a, b, 3×3 ConvNet F_a",
              load_spec(SPECS / "rd_aphynity_param_pde_ab.phy")),
             ("reaction–diffusion a, b, pointwise F_a",
              load_spec(SPECS / "rd_aphynity_param_pde_ab_pointwise.phy"))]
    for title, spec in cases:
        t = time.perf_counter()
        r = identifiability(spec)
        rows.append({"case": title, "seconds": time.perf_counter() - t,
                     "verdict": r.verdict(), "rank": r.rank, "parameters": list(r.names),
                     "condition": r.condition, "identifiable": r.identifiable_combinations,
                     "not_identifiable": r.unidentifiable, "rel_std": r.rel_std,
                     "confounding": [dataclasses.asdict(c) | {"unique": c.unique}
                                     for c in r.confounding],
                     "lines": r.lines()})
        print(json.dumps({"case": title, "verdict": r.verdict()}), flush=True)
    return rows


def with_noise(ds, seed: int):
    """The dataset's noiseless trajectories with a fresh draw of its observation noise."""
    g = torch.Generator().manual_seed(10_000 + seed)
    splits = {k: (v.double() + ds.noise * torch.randn(v.shape, generator=g,
                                                       dtype=torch.float64)).to(v.dtype)
              for k, v in ds.splits_clean.items()}
    out = dataclasses.replace(ds, splits=splits, meta=dict(ds.meta, noise_seed=seed))
    out.hash = out.content_hash()
    return out


def uncertainty_rows(seeds: int, epochs: int, n_boot: int, workdir: Path) -> list[dict]:
    spec = load_spec(SPECS / "pendulum_param_ode_w0_alpha.phy")
    base = physml.simulate(spec)
    rows = []
    for seed in range(seeds):
        ds = with_noise(base, seed)
        t = time.perf_counter()
        run = train(spec, dataset=ds, out=workdir / f"seed{seed}", epochs=epochs,
                    compile=False, minutes=None, report=False)
        trained = time.perf_counter() - t
        t = time.perf_counter()
        lap = inspect(run, dataset=ds)["uncertainty"]
        t_lap = time.perf_counter() - t
        t = time.perf_counter()
        boot = inspect(run, dataset=ds, bootstrap=n_boot)["uncertainty"]
        t_boot = time.perf_counter() - t
        row = {"seed": seed, "train_seconds": trained, "laplace_seconds": t_lap,
               "bootstrap_seconds": t_boot, "laplace": lap, "bootstrap": boot}
        rows.append(row)
        print(json.dumps({"seed": seed, **{f"{m}_{iv['name']}": [iv["low"], iv["high"],
                                                                 iv["covers"]]
                                           for m in ("laplace", "bootstrap")
                                           for iv in row[m]["intervals"]}}), flush=True)
    return rows


def markdown(ident: list[dict], unc: list[dict], args) -> str:
    out = ["# Identifiability and uncertainty (issue 13, items 5 and 6)", "",
           "Produced by `python benchmarks/reproduce_discovery_uncertainty.py "
           f"--seeds {args.seeds} --epochs {args.epochs} --bootstrap {args.bootstrap}` "
           "on a CPU.", "", "## Identifiability before training", "",
           "| case | verdict | identifiable | not identifiable | s |", "|---|---|---|---|---|"]
    for r in ident:
        out.append(f"| {r['case']} | {r['verdict']} | {', '.join(r['identifiable']) or '—'} "
                   f"| {', '.join(r['not_identifiable']) or '—'} | {r['seconds']:.1f} |")
    out += ["", "Confounding with F_a (share of ∂F_p/∂θ over training states that F_a's "
            "function class reproduces; `unique`: APHYNITY's split for θ is pinned by the "
            "trajectory fit):", "", "| case | parameter | share | unique | minimal-norm split "
            "| data |", "|---|---|---|---|---|---|"]
    for r in ident:
        for c in r["confounding"]:
            mn = f"{c['minimal_norm']:.4g}" if c["minimal_norm"] is not None else "—"
            tv = f"{c['true']:.4g}" if c["true"] is not None else "—"
            out.append(f"| {r['case']} | {c['name']} | {100 * c['share']:.1f} % | "
                       f"{'yes' if c['unique'] else 'no'} | {mn} | {tv} |")
    out += ["", "Every line of each analysis:", ""]
    for r in ident:
        out += [f"**{r['case']}**", "", "```"] + r["lines"] + ["```", ""]
    if unc:
        out += ["## Intervals after training", "",
                f"Pendulum, T0 and α learned, {len(unc)} draws of the observation noise "
                f"(σ = 0.01) on the same initial states; {args.epochs} epochs each; 95 % "
                f"intervals. Laplace: {unc[0]['laplace']['note']}. Bootstrap: "
                f"{unc[0]['bootstrap']['note']}.", ""]
        names = [iv["name"] for iv in unc[0]["laplace"]["intervals"]]
        head = "| seed | " + " | ".join(f"{n} Laplace | {n} bootstrap" for n in names) + " |"
        out += [head, "|---" * (1 + 2 * len(names)) + "|"]
        for r in unc:
            cells = []
            for n in names:
                for m in ("laplace", "bootstrap"):
                    iv = next(i for i in r[m]["intervals"] if i["name"] == n)
                    cells.append(f"[{iv['low']:.5g}, {iv['high']:.5g}] "
                                 f"{'✓' if iv['covers'] else '✗'}")
            out.append(f"| {r['seed']} | " + " | ".join(cells) + " |")
        out.append("")
        for n in names:
            for m in ("laplace", "bootstrap"):
                k = sum(bool(next(i for i in r[m]["intervals"] if i["name"] == n)["covers"])
                        for r in unc)
                w = sum(next(i for i in r[m]["intervals"] if i["name"] == n)["std"]
                        for r in unc) / len(unc)
                out.append(f"- {n}, {m}: covers the truth in **{k} of {len(unc)}** runs "
                           f"(mean standard deviation {w:.3g})")
        out.append("")
        t = sum(r["laplace_seconds"] for r in unc) / len(unc)
        b = sum(r["bootstrap_seconds"] for r in unc) / len(unc)
        tr = sum(r["train_seconds"] for r in unc) / len(unc)
        out.append(f"Mean wall times: training {tr:.1f} s, Laplace {t:.2f} s, bootstrap "
                   f"({args.bootstrap} replicates) {b:.1f} s.")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--bootstrap", type=int, default=50)
    ap.add_argument("--skip-uncertainty", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "uncertainty"))
    args = ap.parse_args()
    ident = identifiability_rows()
    unc = []
    if not args.skip_uncertainty:
        with tempfile.TemporaryDirectory() as tmp:
            unc = uncertainty_rows(args.seeds, args.epochs, args.bootstrap, Path(tmp))
    Path(args.out + ".json").write_text(json.dumps(
        {"identifiability": ident, "uncertainty": unc}, indent=2, default=float))
    Path(args.out + ".md").write_text(markdown(ident, unc, args))
    print(f"wrote {args.out}.md and .json")


if __name__ == "__main__":
    main()
