"""Reproduce thesis Table 3.14 (LEADS and its baselines on LV, GS and NS).

Every row of the table is one spec in ``specs/table3_14/`` (``--write-specs`` makes them
from each system's source spec, :data:`SOURCES`, changing only the ``train`` line's
method, so that the rows of a system share their data and their networks). Each row is trained with the library
(:func:`physml.train`), and ``benchmarks/results/leads_table3_14.md`` (and ``.json``)
gives our train and test MSE, mean ± std over environments (the thesis's format), beside
the thesis's figures, with the steps and the wall time of each row.

``--quick`` is for a CPU: every row of a system gets the same short step budget
(``QUICK_STEPS``, capped in minutes as well), validation every 50 steps without the
plateau rollback, GBML switches to fine-tuning at half of the budget,
and the grid systems use smaller data (fewer test trajectories; for NS fewer trajectories
and a 5-unit warm-up instead of 30); ``--full-data`` keeps the specs' own data with the quick
budgets (the full NS data take about three minutes on one core).
Without it, each spec's own budget applies (120 000 steps for LV and GS, 10 000 for NS:
hours to days on a CPU).

    python benchmarks/reproduce_leads.py --write-specs
    OMP_NUM_THREADS=1 python benchmarks/reproduce_leads.py --quick --systems lv
    python benchmarks/reproduce_leads.py --systems gs --rows leads,one_per_env --device cuda
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import time
from pathlib import Path

import physml

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs" / "table3_14"
#: The spec each system's rows are made from. LV: the authors' data and networks (their
#: initial states, weights N(0, 0.05²) with the last layer drawn too, no data scaling).
SOURCES = {"lv": "table3_14/lv_leads_authors_nets", "gs": "leads_gray_scott",
           "ns": "leads_navier_stokes"}
NAMES = {"lv": "Lotka–Volterra (m = 10, n = 1·K)", "gs": "Gray–Scott (m = 3, n = 1·K)",
         "ns": "Navier–Stokes (m = 4, n = 8·K)"}

# (row key, label, physml method) in the thesis's order. FT-RNN is not a physml method.
ROWS = [
    ("one_for_all", "One-For-All", "one_for_all"),
    ("one_per_env", "One-Per-Env.", "one_per_env"),
    ("ft_node", "FT-NODE", "ft_node"),
    ("gbml", "GBML-like", "gbml"),
    ("leads_no_min", "LEADS no min.", "leads_no_min"),
    ("leads", "LEADS", "leads"),
]
#: physml's ft_node is an MLP fed the environment code: ODE states only
ODE_ONLY = {"ft_node"}

# Thesis Table 3.14: (train MSE, test MSE mean, test MSE std) per system and row.
THESIS = {
    "lv": {"one_for_all": (4.57e-1, 5.08e-1, 0.56e-1), "one_per_env": (2.15e-5, 7.95e-3, 6.96e-3),
           "ft_node": (7.74e-5, 3.40e-3, 2.64e-3), "gbml": (3.84e-6, 5.87e-3, 5.65e-3),
           "leads_no_min": (3.28e-6, 3.07e-3, 2.58e-3), "leads": (5.74e-6, 1.16e-3, 0.99e-3)},
    "gs": {"one_for_all": (1.55e-2, 1.43e-2, 0.15e-2), "one_per_env": (8.48e-5, 6.43e-3, 3.42e-3),
           "ft_node": (3.51e-5, 3.86e-3, 3.36e-3), "gbml": (1.07e-4, 6.01e-3, 3.62e-3),
           "leads_no_min": (7.65e-5, 5.53e-3, 3.43e-3), "leads": (5.75e-5, 2.08e-3, 2.88e-3)},
    "ns": {"one_for_all": (5.17e-2, 7.31e-2, 5.29e-2), "one_per_env": (5.60e-6, 1.10e-2, 0.72e-2),
           "ft_node": (1.80e-4, 2.96e-2, 1.99e-2), "gbml": (1.39e-4, 7.37e-3, 4.80e-3),
           "leads_no_min": (3.20e-4, 7.10e-3, 4.24e-3), "leads": (1.03e-4, 5.95e-3, 3.65e-3)},
}

#: --quick: steps per row (all rows of a system alike) and a cap in minutes per row
QUICK_STEPS = {"lv": 10000, "gs": 150, "ns": 100}
QUICK_MINUTES = {"lv": 6.0, "gs": 4.0, "ns": 4.0}
#: --quick: smaller data for the grid systems (line of the data block → replacement)
QUICK_DATA = {
    "gs": {"trajectories 1 train, 1 val, 32 test": "trajectories 1 train, 1 val, 8 test"},
    "ns": {"trajectories 8 train, 32 test": "trajectories 2 train, 1 val, 4 test",
           "warmup 30": "warmup 5"},
}

_TRAIN = re.compile(r"^train\s+(\w+)(\([^)]*\))?", re.M)


def _epochs(text: str) -> int:
    m = re.search(r"^train .*\bepochs\s+(\d+)", text, re.M)
    return int(m.group(1)) if m else 1000


def row_spec_text(system: str, key: str) -> str:
    """The spec of one row: the system's LEADS spec with the method swapped."""
    source = ROOT / "specs" / f"{SOURCES[system]}.phy"
    text = source.read_text(encoding="utf-8")
    method = dict((k, m) for k, _, m in ROWS)[key]
    if method == "leads":
        call = _TRAIN.search(text).group(0)[len("train "):]
    elif method == "gbml":
        # One-For-All for half the budget, then a copy per environment fine-tuned
        call = f"gbml(switch={_epochs(text) // 2})"
    else:
        call = method
    label = dict((k, lab) for k, lab, _ in ROWS)[key]
    body = _TRAIN.sub(lambda m: "train " + call, text, count=1)
    return (f"# Thesis Table 3.14, {NAMES[system]}, row {label.rstrip('.')}.\n"
            f"# Generated from specs/{SOURCES[system]}.phy by benchmarks/reproduce_leads.py "
            "--write-specs:\n# the same data and networks, the method of the row.\n" + body)


def rows_for(system: str) -> list[str]:
    is_grid = system != "lv"
    return [k for k, _, _ in ROWS if not (is_grid and k in ODE_ONLY)]


def write_specs() -> list[Path]:
    SPECS.mkdir(parents=True, exist_ok=True)
    written = []
    for system in SOURCES:
        for key in rows_for(system):
            path = SPECS / f"{system}_{key}.phy"
            path.write_text(row_spec_text(system, key), encoding="utf-8")
            written.append(path)
    return written


def _spec(system: str, key: str, quick: bool, steps: int | None = None,
          full_data: bool = False):
    path = SPECS / f"{system}_{key}.phy"
    text = path.read_text(encoding="utf-8")
    if quick and not full_data:
        for old, new in QUICK_DATA.get(system, {}).items():
            if old not in text:
                raise SystemExit(f"{path}: expected the data line {old!r} for --quick")
            text = text.replace(old, new)
    if key == "gbml" and (quick or steps):
        # fine-tuning starts at half of the budget actually run
        budget = steps or QUICK_STEPS[system]
        text = re.sub(r"gbml\(switch=\d+\)", f"gbml(switch={budget // 2})", text)
    return physml.parse_spec(text, str(path))


def run_row(system: str, key: str, quick: bool, out_root: Path, data_dir: Path,
            device: str | None, steps: int | None, minutes: float | None,
            full_data: bool = False) -> dict:
    out = out_root / system / key
    if out.exists():
        shutil.rmtree(out)
    overrides = {"threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or None}
    if quick:
        # The plateau rule (back to the best state after 10 validations without
        # improvement) is off: in a budget this short, early rollouts under teacher
        # forcing are erratic and it would keep sending a run back to its first steps.
        # The best validation checkpoint is still the one reported.
        overrides.update(steps=steps or QUICK_STEPS[system],
                         minutes=minutes or QUICK_MINUTES[system], val_every=50, lr_decay=0.0)
    elif steps or minutes:
        overrides.update(steps=steps, minutes=minutes)
    t0 = time.perf_counter()
    physml.train(_spec(system, key, quick, steps, full_data), out=out, device=device,
                 data_dir=data_dir / ("quick" if quick and not full_data else "full"),
                 **overrides)
    wall = time.perf_counter() - t0
    report = json.loads((out / "report.json").read_text())
    ev = report["evaluate"]
    test, train = ev["environments"], ev.get("train_environments") or {}
    ref = THESIS[system][key]
    return {"system": system, "row": key, "label": dict((k, lab) for k, lab, _ in ROWS)[key],
            "test_mse_mean": test["mse_env_mean"], "test_mse_std": test["mse_env_std"],
            "train_mse_mean": train.get("mse_env_mean"), "train_mse_std": train.get("mse_env_std"),
            "test_per_environment": test["per_environment"],
            "steps": report["steps"], "train_seconds": report["train_seconds"],
            "wall_seconds": wall, "thesis_train_mse": ref[0], "thesis_test_mse": ref[1],
            "thesis_test_std": ref[2], "quick": quick, "full_data": full_data,
            "stop_reason": report.get("selection", {}).get("stop_reason")}


def _pm(mean, std) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    return f"{mean:.3g} ± {std:.2g}" if std is not None else f"{mean:.3g}"


def _load(avg) -> str:
    return "—" if not avg else f"{avg[0]:.1f}"


def comparisons(results: list[dict]) -> list[str]:
    """The issue's acceptance ratios, where both rows were run in the same budget."""
    lines = []
    for system in SOURCES:
        budgets = dict.fromkeys(r.get("budget") for r in results if r["system"] == system)
        for budget in budgets:           # each budget that has a LEADS row, in table order
            got = {r["row"]: r for r in results
                   if r["system"] == system and r.get("budget") == budget}
            if "leads" not in got:
                continue
            lead = got["leads"]["test_mse_mean"]
            for other, factor in (("one_per_env", 0.5), ("leads_no_min", 1.0)):
                if other in got:
                    ratio = lead / got[other]["test_mse_mean"]
                    ok = "yes" if ratio <= factor else "no"
                    lines.append(f"- {system.upper()} ({budget}): LEADS / "
                                 f"{got[other]['label']} test MSE = {ratio:.2f} "
                                 f"(target ≤ {factor:g}: {ok})")
    return lines


def markdown(results: list[dict], note: str) -> str:
    lines = ["# Thesis Table 3.14 — physml reproduction", "",
             "Train and test MSE, mean ± std over environments (sample std), at the best "
             "validation checkpoint; the thesis's train MSE is one figure. FT-NODE is "
             "physml's for ODE states only (an MLP fed the environment code), so it has no "
             "GS/NS row; FT-RNN is not a physml method. *load*: the machine's 1-minute "
             "load average when the row ended.", "", note, ""]
    for system in SOURCES:
        rows = [r for r in results if r["system"] == system]
        if not rows:
            continue
        lines += [f"## {NAMES[system]}", "",
                  "| row | train MSE (ours) | train MSE (thesis) | test MSE (ours) | "
                  "test MSE (thesis) | steps | wall s | budget | load |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(
                f"| {r['label']} | {_pm(r['train_mse_mean'], r['train_mse_std'])} | "
                f"{r['thesis_train_mse']:.3g} | {_pm(r['test_mse_mean'], r['test_mse_std'])} | "
                f"{_pm(r['thesis_test_mse'], r['thesis_test_std'])} | {r['steps']} | "
                f"{r['wall_seconds']:.0f} | {r.get('budget', '')} | "
                f"{_load(r.get('load_average'))} |")
        lines.append("")
    cmp = comparisons(results)
    if cmp:
        lines += ["## LEADS against its baselines, same budget", ""] + cmp + [""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write-specs", action="store_true",
                    help="(re)write specs/table3_14/ from the SOURCES specs and stop")
    ap.add_argument("--quick", action="store_true",
                    help="short budgets and smaller grid data, for a CPU")
    ap.add_argument("--full-data", action="store_true",
                    help="with --quick: the specs' own data, not the smaller grid data")
    ap.add_argument("--systems", default="lv", help="comma list: lv,gs,ns")
    ap.add_argument("--rows", default=None,
                    help="comma list of rows: " + ",".join(k for k, _, _ in ROWS))
    ap.add_argument("--steps", type=int, default=None, help="override every row's steps")
    ap.add_argument("--minutes", type=float, default=None,
                    help="override every row's time cap")
    ap.add_argument("--device", default=None)
    ap.add_argument("--runs", default="runs/table3_14")
    ap.add_argument("--data-dir", default="data/table3_14")
    ap.add_argument("--note", default="", help="a line for the table (e.g. the machine's load)")
    ap.add_argument("--out", default="benchmarks/results/leads_table3_14.md")
    ap.add_argument("--rewrite", action="store_true",
                    help="rewrite the Markdown table from the JSON, training nothing")
    ap.add_argument("--replace", action="store_true",
                    help="write only the rows run now (default: merge into the earlier table)")
    args = ap.parse_args()
    if args.write_specs:
        for p in write_specs():
            print(p.relative_to(ROOT))
        return
    out = Path(args.out)
    if args.rewrite:
        saved = json.loads(out.with_suffix(".json").read_text())
        note = args.note or saved["note"]
        out.write_text(markdown(saved["rows"], note))
        if args.note:
            out.with_suffix(".json").write_text(json.dumps({**saved, "note": note}, indent=2))
        print(out.read_text())
        return
    wanted = set(args.rows.split(",")) if args.rows else None
    unknown = (wanted or set()) - {k for k, _, _ in ROWS}
    if unknown:
        raise SystemExit(f"unknown rows {sorted(unknown)}; choices: "
                         + ", ".join(k for k, _, _ in ROWS))
    results = []
    for system in args.systems.split(","):
        if system not in SOURCES:
            raise SystemExit(f"unknown system {system!r}; choices: {', '.join(SOURCES)}")
        for key in rows_for(system):
            if wanted and key not in wanted:
                continue
            r = run_row(system, key, args.quick, Path(args.runs), Path(args.data_dir),
                        args.device, args.steps, args.minutes, args.full_data)
            r["budget"] = ("quick " if args.quick else "") + (
                "full data, " if args.quick and args.full_data else "") + (
                f"{args.steps or QUICK_STEPS[system]} steps" if args.quick or args.steps
                else "spec")
            r["trained_on"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            r["load_average"] = os.getloadavg()
            results.append(r)
            print(json.dumps({k: r[k] for k in ("system", "row", "train_mse_mean",
                                                "test_mse_mean", "test_mse_std", "steps",
                                                "wall_seconds")}), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Rows not re-run this time keep their earlier figures (each says when it was made).
    earlier = json.loads(out.with_suffix(".json").read_text())["rows"] \
        if out.with_suffix(".json").exists() and not args.replace else []
    done = {(r["system"], r["row"]) for r in results}
    order = [(s, k) for s in SOURCES for k, _, _ in ROWS]
    merged = [r for r in earlier if (r["system"], r["row"]) not in done] + results
    merged.sort(key=lambda r: order.index((r["system"], r["row"])))
    note = args.note or (f"CPU, {os.environ.get('OMP_NUM_THREADS', 'all')} thread(s) per "
                         "row; load average at the end of each row in the JSON.")
    text = markdown(merged, note)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps({"note": note, "rows": merged}, indent=2,
                                                   default=float))
    print(text)


if __name__ == "__main__":
    main()
