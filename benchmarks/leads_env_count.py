"""Fig. 3.12 of the thesis on Lotka–Volterra: test error against the number of training
environments for One-For-All, One-Per-Env and LEADS.

    OMP_NUM_THREADS=1 python benchmarks/leads_env_count.py [--envs 1,2,4,8] [--steps 1500]
                                                           [--out runs/env_count]

The thesis's protocol (§3.4.4, "Details on experiments with a varying number of
environments"): the first M = 8 environments of `specs/table3_14/lv_*.phy` are split into
8/m disjoint groups of m consecutive environments; each group trains its own model (same
data design, networks and step budget), and the test MSE is the mean over all 8
environments' test sets — the same test set for every m. The thesis's trend: the shared
model rises with m (one dynamics cannot fit different environments), the independent
models stay flat (they share nothing), LEADS falls (each G_e is small because F learns
from all m environments of its group). Writes
`benchmarks/results/leads_env_count.{json,md,png}` and prints the JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METHODS = ("one_for_all", "one_per_env", "leads")
LABELS = {"one_for_all": "One-For-All", "one_per_env": "One-Per-Env", "leads": "LEADS"}


#: environments in all (the thesis's M)
M = 8


def spec_text(method: str, envs: range) -> str:
    """The Table 3.14 LV spec of ``method`` with only the environments ``envs`` (indices
    into its list)."""
    lines = (ROOT / "specs" / "table3_14" / f"lv_{method}.phy").read_text().splitlines()
    out, in_envs, seen = [], False, 0
    for line in lines:
        if line.strip() == "environments:":
            in_envs = True
            out.append(line)
            continue
        if in_envs and line.startswith("    ") and ":" in line:
            if seen in envs:
                out.append(line)
            seen += 1
            continue
        in_envs = False
        out.append(line)
    if seen < max(envs) + 1:
        raise SystemExit(f"lv_{method}.phy has {seen} environments, fewer than {max(envs) + 1}")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", default="1,2,4,8", help="values of m, each dividing 8")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--out", default="runs/env_count")
    ap.add_argument("--data-dir", default="data")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import physml

    counts = [int(n) for n in args.envs.split(",")]
    out = Path(args.out)
    rows = []
    for n in counts:
        for method in METHODS:
            path = ROOT / "specs" / "table3_14" / f"lv_{method}.phy"
            errors, secs = [], 0.0
            for g in range(M // n):
                spec = physml.parse_spec(spec_text(method, range(g * n, (g + 1) * n)),
                                         str(path))
                t = time.perf_counter()
                run = physml.train(spec, out=out / f"{method}_m{n}_g{g}",
                                   data_dir=args.data_dir, steps=args.steps, report=False)
                secs += time.perf_counter() - t
                ev = physml.evaluate(run, "test")
                errors += [ev["mse"]] * n  # the group's mean, once per environment
            row = {"envs": n, "method": method, "test_mse": sum(errors) / len(errors),
                   "groups": M // n, "seconds": secs, "steps": args.steps}
            rows.append(row)
            print(json.dumps(row), flush=True)
    meta = {"machine": f"{platform.machine()} CPU, {os.cpu_count()} cores",
            "date": time.strftime("%Y-%m-%d"), "steps": args.steps,
            "threads": os.environ.get("OMP_NUM_THREADS")}
    res = ROOT / "benchmarks" / "results"
    (res / "leads_env_count.json").write_text(json.dumps({"meta": meta, "rows": rows},
                                                         indent=2))
    table = {(r["envs"], r["method"]): r["test_mse"] for r in rows}
    md = ["# Fig. 3.12 on Lotka–Volterra: test MSE against the number of environments", "",
          f"`python benchmarks/leads_env_count.py --steps {args.steps}` on {meta['machine']} "
          f"({meta['date']}); specs `specs/table3_14/lv_*.phy`, their first {M} environments "
          "split into 8/m groups of m, one model per group, the same step budget for every "
          f"run; test MSE = mean over all {M} environments' test sets (thesis §3.4.4).", "",
          "| m | " + " | ".join(LABELS[m] for m in METHODS) + " |",
          "|---|" + "---|" * len(METHODS)]
    for n in counts:
        md.append(f"| {n} | " + " | ".join(f"{table[(n, m)]:.3g}" for m in METHODS) + " |")
    (res / "leads_env_count.md").write_text("\n".join(md) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for m in METHODS:
        ax.plot(counts, [table[(n, m)] for n in counts], marker="o", label=LABELS[m])
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(counts, [str(n) for n in counts])
    ax.set_xlabel("environments per model (m)")
    ax.set_ylabel("test MSE (mean over environments)")
    ax.set_title(f"Lotka–Volterra, {args.steps} steps per run")
    ax.legend()
    fig.tight_layout()
    fig.savefig(res / "leads_env_count.png", dpi=120)


if __name__ == "__main__":
    main()
