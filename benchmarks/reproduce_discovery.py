"""Issue 13's acceptance rows for `physml discover`: train, discover, absorb, refit.

    python benchmarks/reproduce_discovery.py [--systems pendulum,lv,rd] [--out runs/discovery]
                                             [--collect]

For each system: train the spec in ``specs/discover/`` (APHYNITY with an incomplete prior),
run ``physml discover`` on it, check the discovered terms against the truth, write the
absorbed spec and (pendulum, Lotka–Volterra) refit it, then write
``benchmarks/results/discovery.md`` and ``discovery.json`` with every number and whether
each row passes. ``--collect`` reuses runs already in ``--out`` (no training).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPECS = {
    "pendulum": ROOT / "specs" / "discover" / "pendulum_frictionless.phy",
    "lv": ROOT / "specs" / "discover" / "lotka_volterra_ude.phy",
    "rd": ROOT / "specs" / "discover" / "reaction_diffusion.phy",
}


def _train(spec: Path, out: Path, data_dir: Path, collect: bool, **overrides):
    import physml

    if collect or (out / "checkpoints" / "last.pt").exists():
        report = out / "report.json"
        secs = json.loads(report.read_text()).get("train_seconds", 0.0) \
            if report.exists() else 0.0
        return physml.Run(out), secs
    t = time.perf_counter()
    run = physml.train(spec, out=out, data_dir=data_dir, **overrides)
    return run, time.perf_counter() - t


def _terms(eq) -> dict[str, float]:
    return {t.name: t.coefficient for t in eq.kept}


def _term_rows(eq) -> list[dict]:
    return [{"term": t.name, "coefficient": t.coefficient, "share": t.contribution,
             "inclusion": t.inclusion, "interval": [t.low, t.high]} for t in eq.kept]


def pendulum(out: Path, data_dir: Path, collect: bool) -> dict:
    from physml.experiment import absorb_run, discover_run, refit

    run, secs = _train(SPECS["pendulum"], out / "pendulum", data_dir, collect)
    t = time.perf_counter()
    disc = discover_run(run)
    eq = disc.fit("omega")
    kept = _terms(eq)
    alpha = -kept.get("omega", math.nan)
    row = {"train_seconds": secs, "discover_seconds": time.perf_counter() - t,
           "kept": _term_rows(eq), "alpha": alpha, "alpha_true": 0.2,
           "alpha_error_pct": abs(alpha - 0.2) / 0.2 * 100,
           "only_omega": set(kept) == {"omega"}}
    new = out / "pendulum_absorbed.phy"
    absorb_run(run, new, discovery=disc, method="aphynity")
    refit_dir = out / "pendulum_refit"
    t = time.perf_counter()
    if collect and (refit_dir / "refit.json").exists():
        cmp = json.loads((refit_dir / "refit.json").read_text())
        row["refit_seconds"] = json.loads((refit_dir / "report.json").read_text()).get(
            "train_seconds", 0.0)
    else:
        cmp = refit(run, new, out=refit_dir, epochs=REFIT_EPOCHS)
        row["refit_seconds"] = time.perf_counter() - t
    after = {p["name"]: p for p in cmp["parameters_after"]}
    before = {p["name"]: p for p in cmp["parameters_before"]}
    row.update(aug_norm_before=cmp["aug_norm_before"], aug_norm_after=cmp["aug_norm_after"],
               aug_norm_drop=cmp["aug_norm_drop"], mse_before=cmp["mse_before"],
               mse_after=cmp["mse_after"],
               T0_before=before["T0"]["identified"], T0_error_pct_before=before["T0"]["error_pct"],
               T0_after=after["T0"]["identified"], T0_error_pct_after=after["T0"]["error_pct"],
               refit_parameters={k: v["identified"] for k, v in after.items()})
    row["pass"] = bool(row["only_omega"] and row["alpha_error_pct"] <= 5
                       and row["aug_norm_drop"] >= 100 and row["T0_error_pct_after"] <= 0.5)
    return row


def lotka_volterra(out: Path, data_dir: Path, collect: bool) -> dict:
    from physml.experiment import absorb_run, discover_run

    run, secs = _train(SPECS["lv"], out / "lv", data_dir, collect)
    t = time.perf_counter()
    disc = discover_run(run)
    u, v = _terms(disc.fit("u")), _terms(disc.fit("v"))
    beta, delta = -u.get("u*v", math.nan), v.get("u*v", math.nan)
    row = {"train_seconds": secs, "discover_seconds": time.perf_counter() - t,
           "kept_u": _term_rows(disc.fit("u")), "kept_v": _term_rows(disc.fit("v")),
           "beta": beta, "delta": delta, "beta_true": 0.5, "delta_true": 0.5,
           "beta_error_pct": abs(beta - 0.5) / 0.5 * 100,
           "delta_error_pct": abs(delta - 0.5) / 0.5 * 100,
           "spurious_u": sorted(set(u) - {"u*v"}), "spurious_v": sorted(set(v) - {"u*v"})}
    absorb_run(run, out / "lv_absorbed.phy", discovery=disc, method="physics")
    row["pass"] = bool(row["beta_error_pct"] <= 10 and row["delta_error_pct"] <= 10)
    # the same with --refine: the library refitted on the trajectories
    t = time.perf_counter()
    ref = discover_run(run, bootstrap=0, refine=True, write=False)
    row["refined_seconds"] = time.perf_counter() - t
    row["refined_u"] = _terms(ref.fit("u"))
    row["refined_v"] = _terms(ref.fit("v"))
    return row


def reaction_diffusion(out: Path, data_dir: Path, collect: bool) -> dict:
    from physml.experiment import absorb_run, discover_run

    run, secs = _train(SPECS["rd"], out / "rd", data_dir, collect)
    truth = {"u": {"u": 1.0, "u^3": -1.0, "v": -1.0, "1": -5e-3},
             "v": {"u": 1.0, "v": -1.0}}
    # the network alone: −k is 0.5 % of the reaction, so a lower threshold than 2 %
    t = time.perf_counter()
    plain = discover_run(run, bootstrap=0, threshold=0.005, write=False)
    row = {"train_seconds": secs, "a_run": plain.learned.get("a"),
           "b_run": plain.learned.get("b"),
           "fa_only": {var: _terms(plain.fit(var)) for var in ("u", "v")}}
    # refined on the trajectories (physml discover RUN --refine)
    disc = discover_run(run, bootstrap=0, threshold=0.005, refine=True,
                        progress=lambda line: print("   ", line, flush=True))
    row["discover_seconds"] = time.perf_counter() - t
    ref = disc.refinement
    row.update(a=disc.learned.get("a"), b=disc.learned.get("b"),
               refine_seconds=ref.seconds, refine_loss_full=ref.loss_full,
               refine_loss=ref.loss, refine_candidates=ref.candidates,
               refine_windows=ref.trajectories, refine_solver=ref.solver,
               refine_next=({"var": ref.path[-1].var, "term": ref.path[-1].term,
                             "ratio": ref.path[-1].predicted / ref.loss_full}
                            if ref.path and ref.path[-1].kept else None))
    ok = True
    for var in ("u", "v"):
        kept = _terms(disc.fit(var))
        row[f"kept_{var}"] = _term_rows(disc.fit(var))
        largest = max((abs(c) for c in kept.values()), default=0.0)
        errors = {k: abs(kept.get(k, 0.0) - c) / abs(c) * 100 for k, c in truth[var].items()}
        spurious = {k: c for k, c in kept.items() if k not in truth[var]}
        row[f"errors_{var}_pct"] = errors
        row[f"spurious_{var}"] = spurious
        ok &= all(e <= 10 for e in errors.values())
        ok &= all(abs(c) <= 0.05 * largest for c in spurious.values())
    absorb_run(run, out / "rd_absorbed.phy", discovery=disc, method="physics")
    row["pass"] = bool(ok)
    return row


REFIT_EPOCHS = 300


def _markdown(results: dict, meta: dict) -> str:
    lines = ["# Discovering missing physics (issue 13): acceptance rows", "",
             f"Measured on {meta['machine']} ({meta['date']}); `python "
             "benchmarks/reproduce_discovery.py`. Specs in `specs/discover/`. Times are wall "
             "times on a CPU shared with other jobs.", ""]
    p = results.get("pendulum")
    if p:
        lines += ["## Damped pendulum, frictionless prior (T0 learned, F_a on omega)", "",
                  "| check | measured | target | |", "|---|---|---|---|",
                  f"| terms kept in d(omega)/dt | {', '.join(r['term'] for r in p['kept'])} | "
                  f"omega only | {'✓' if p['only_omega'] else '✗'} |",
                  f"| α = −coefficient of omega | {p['alpha']:.4f} ({p['alpha_error_pct']:.2f} % "
                  f"off 0.2) | within 5 % | {'✓' if p['alpha_error_pct'] <= 5 else '✗'} |",
                  f"| ‖F_a‖² (test states) before → after absorb + refit | "
                  f"{p['aug_norm_before']:.3g} → {p['aug_norm_after']:.3g} "
                  f"({p['aug_norm_drop']:.3g}×) | ≥ 100× | "
                  f"{'✓' if p['aug_norm_drop'] >= 100 else '✗'} |",
                  f"| T0 error before → after | {p['T0_error_pct_before']:.3f} % → "
                  f"{p['T0_error_pct_after']:.3f} % | ≤ 0.5 % after | "
                  f"{'✓' if p['T0_error_pct_after'] <= 0.5 else '✗'} |",
                  f"| test MSE before → after | {p['mse_before']:.3g} → {p['mse_after']:.3g} | "
                  "| |", "",
                  f"Refit parameters: {', '.join(f'{k} = {v:.5g}' for k, v in p['refit_parameters'].items())}. "
                  f"Wall time: train {p['train_seconds']:.0f} s, discover "
                  f"{p['discover_seconds']:.1f} s, refit ({REFIT_EPOCHS} epochs) "
                  f"{p['refit_seconds']:.0f} s.", ""]
    lv = results.get("lv")
    if lv:
        lines += ["## Lotka–Volterra UDE (prior knows α·u and −γ·v)", "",
                  "| check | measured | target | |", "|---|---|---|---|",
                  f"| β (−coefficient of u*v in d(u)/dt) | {lv['beta']:.4f} "
                  f"({lv['beta_error_pct']:.2f} % off 0.5) | within 10 % | "
                  f"{'✓' if lv['beta_error_pct'] <= 10 else '✗'} |",
                  f"| δ (coefficient of u*v in d(v)/dt) | {lv['delta']:.4f} "
                  f"({lv['delta_error_pct']:.2f} % off 0.5) | within 10 % | "
                  f"{'✓' if lv['delta_error_pct'] <= 10 else '✗'} |",
                  f"| other terms kept | u: {', '.join(lv['spurious_u']) or 'none'}; v: "
                  f"{', '.join(lv['spurious_v']) or 'none'} | | |", ""]
        if "refined_u" in lv:
            fmt = lambda d: ", ".join(f"{k}: {v:.5g}" for k, v in d.items()) or "none"  # noqa: E731
            lines += [f"With `--refine` ({lv['refined_seconds']:.0f} s): d(u)/dt "
                      f"{fmt(lv['refined_u'])}; d(v)/dt {fmt(lv['refined_v'])}.", ""]
        lines += [
                  f"Wall time: train {lv['train_seconds']:.0f} s, discover "
                  f"{lv['discover_seconds']:.1f} s.", ""]
    rd = results.get("rd")
    if rd:
        fmt = lambda d: ", ".join(f"{k}: {v:.3g}" for k, v in d.items())  # noqa: E731
        ok_u = all(e <= 10 for e in rd['errors_u_pct'].values())
        ok_v = all(e <= 10 for e in rd['errors_v_pct'].values())
        nxt = rd.get("refine_next")
        lines += ["## Reaction–diffusion (diffusion-only prior, pointwise F_a; reduced budget)",
                  "", "`physml discover RUN --refine`: F_a's regression, then the library "
                  "refitted on the training trajectories with terms removed there "
                  "(`physml/discover/refine.py`).", "",
                  "| check | measured | target | |", "|---|---|---|---|",
                  f"| coefficient errors in d(u)/dt (u, u^3, v, 1), % | {fmt(rd['errors_u_pct'])} "
                  f"| ≤ 10 % | {'✓' if ok_u else '✗'} |",
                  f"| coefficient errors in d(v)/dt (u, v), % | {fmt(rd['errors_v_pct'])} | "
                  f"≤ 10 % | {'✓' if ok_v else '✗'} |",
                  f"| other terms kept, u | {fmt(rd['spurious_u']) or 'none'} | ≤ 5 % of the "
                  f"largest | {'✓' if rd['pass'] else '✗'} |",
                  f"| other terms kept, v | {fmt(rd['spurious_v']) or 'none'} | | |",
                  f"| diffusion a, b (refitted with the kept terms) | {rd['a']:.5g}, "
                  f"{rd['b']:.5g} | 1e-3, 5e-3 | |", "",
                  f"Squared trajectory error over {rd['refine_windows']} training trajectories "
                  f"({rd['refine_solver']}): {rd['refine_loss_full']:.4g} with all "
                  f"{rd['refine_candidates']} candidate terms, {rd['refine_loss']:.4g} with the "
                  "kept ones" + (f"; removing the next one ({nxt['term']} in d({nxt['var']})/dt) "
                                 f"would multiply it by {nxt['ratio']:.3g}" if nxt else "") +
                  ".", "",
                  "F_a's regression alone (no refinement), for comparison: "
                  + "; ".join(f"d({v})/dt: {fmt(rd['fa_only'][v])}" for v in ("u", "v"))
                  + ". The network is fitted to trajectories, which pin it only loosely on "
                  "the rough states of the first frames (their fast modes are damped within "
                  "a step), so its regression spreads over collinear terms; the refinement "
                  "fits the library to the data themselves.", "",
                  f"Wall time: train {rd['train_seconds']:.0f} s (the run's report), discover "
                  f"and refine {rd['discover_seconds']:.0f} s (refinement "
                  f"{rd['refine_seconds']:.0f} s).", ""]
    else:
        lines += ["## Reaction–diffusion", "", "Not run (see the report of this issue).", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", default="pendulum,lv")
    ap.add_argument("--out", default="runs/discovery")
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--collect", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out, data_dir = Path(args.out), Path(args.data_dir)
    out.mkdir(parents=True, exist_ok=True)
    runners = {"pendulum": pendulum, "lv": lotka_volterra, "rd": reaction_diffusion}
    results = {}
    for name in args.systems.split(","):
        results[name] = runners[name](out, data_dir, args.collect)
        print(json.dumps({name: results[name]}, default=float), flush=True)
    import platform

    meta = {"machine": f"{platform.machine()} CPU, {os.cpu_count()} cores",
            "date": time.strftime("%Y-%m-%d")}
    res_dir = ROOT / "benchmarks" / "results"
    old = res_dir / "discovery.json"
    if old.exists():  # rows of systems not run this time stay as they were measured
        kept = json.loads(old.read_text())
        kept.pop("meta", None)
        results = {**{k: v for k, v in kept.items() if k in runners}, **results}
    (res_dir / "discovery.json").write_text(json.dumps({"meta": meta, **results}, indent=2,
                                                       default=float))
    (res_dir / "discovery.md").write_text(_markdown(results, meta))


if __name__ == "__main__":
    main()
