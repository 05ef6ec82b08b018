"""``physml.evaluate(run)`` and ``physml.inspect(run)``: test metrics and identified physics.

The thesis reports forecasting error as "log MSE", the natural log of the test MSE over the
whole horizon (Table 3.4); we give ``ln_mse`` and ``log10_mse`` both. Parameter error is
``|p̂ − p| / |p|`` against the values the data were simulated with.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import sympy
import torch

from ..data import Trajectories
from ..symbolic import VectorField
from ..training.checkpoint import atomic_write_text
from ..symbolic.spec import Equation
from .symbolic import augmented, render_equation, value_lines


def _split(dataset, split: str) -> tuple[str, Trajectories, torch.Tensor | None]:
    """The trajectories of ``split`` (falling back to val, then train, when the data have
    no such split) and their noiseless truth, if known."""
    if split not in dataset.splits or dataset.splits[split].numel() == 0:
        split = "val" if "val" in dataset.splits and dataset.splits["val"].numel() else "train"
    traj = Trajectories(dataset.splits[split], dataset.times, dataset.history)
    clean = (getattr(dataset, "splits_clean", None) or {}).get(split)
    if clean is not None:
        clean = Trajectories(clean, dataset.times, dataset.history).frames
    return split, traj, clean


def evaluate(run, split: str = "test", dataset=None) -> dict[str, Any]:
    """Forecast error over the full horizon of the test trajectories, parameter errors,
    and the size of the augmentation (of the best checkpoint)."""
    dataset = dataset if dataset is not None else run.dataset()
    model = run.load_model("best")
    split, traj, clean = _split(dataset, split)
    batch = traj.batch()
    data = batch.target
    pred = model.predict(batch)
    err = (pred - data).pow(2)
    mse = float(err.mean())
    per_step = err.flatten(2).mean(dim=(0, 2)).tolist() if err.dim() > 2 else \
        err.mean(dim=0).tolist()
    out: dict[str, Any] = {
        "split": split,
        "trajectories": int(data.shape[0]),
        "frames": int(data.shape[1]),
        "mse": mse,
        "ln_mse": math.log(mse) if mse > 0 else -math.inf,
        "log10_mse": math.log10(mse) if mse > 0 else -math.inf,
        "mse_per_step": per_step,
    }
    # One trajectory can dominate the mean (a pendulum forecast that crosses the
    # separatrix the data do not): the median over trajectories says how typical ones fare.
    per_traj = err.flatten(1).mean(dim=1)
    med = float(per_traj.median())
    out["ln_mse_median_trajectory"] = math.log(med) if med > 0 else -math.inf
    out["worst_trajectory"] = {"index": int(per_traj.argmax()), "mse": float(per_traj.max())}
    if clean is not None:
        c = float((pred - clean).pow(2).mean())
        out["mse_vs_clean"] = c
        out["ln_mse_vs_clean"] = math.log(c) if c > 0 else -math.inf
    out["parameters"] = with_settling(parameter_table(model, dataset), run.metrics())
    errors = [p["error_pct"] for p in out["parameters"] if p.get("error_pct") is not None]
    if errors:
        out["param_error_pct"] = sum(errors) / len(errors)
    out.update(augmentation_share(model.field, data, run.config.method_options.get("norm")))
    return out


def parameter_table(model, dataset) -> list[dict[str, Any]]:
    learned = {k: float(v.detach()) for k, v in model.physical_parameters().items()}
    envs = getattr(dataset, "env_params", None) or []
    truth = envs[0] if len(envs) == 1 else {}
    rows = []
    for name, value in learned.items():
        row: dict[str, Any] = {"name": name, "identified": value}
        if name in truth:
            t = float(truth[name])
            row["true"] = t
            row["error_pct"] = abs(value - t) / abs(t) * 100 if t != 0 else abs(value - t) * 100
        rows.append(row)
    return rows


@torch.no_grad()
def augmentation_share(model, data: torch.Tensor, norm: str | None = None) -> dict[str, float]:
    """``‖F_a‖²`` on the data states and the share ``‖F_a‖ / ‖F_p + F_a‖`` of the dynamics
    carried by the network (0 when the physics explains everything)."""
    if model.augmentation is None:
        return {}
    states = data.flatten(0, 1)
    relative = (norm == "relative") if norm else states.dim() == 2
    with torch.enable_grad():  # a Hamiltonian prior differentiates its network
        total = torch.cat([model(torch.zeros(()), s).detach() for s in states.split(4096)])
    fa = torch.cat([model.augmentation(s) for s in states.split(4096)])
    share = float(fa.norm() / total.norm().clamp_min(1e-12))
    return {"aug_norm": float(model.augmentation_norm(states, relative)),
            "aug_share": share}


def inspect(run, latex: bool = False, dataset=None, which: str = "best") -> dict[str, Any]:
    """The identified model in the spec's notation, beside the true system.

    ``equations``: the prior's equations with the spec's parameter names kept and the
    network term written ``F_a(…)`` where it acts; ``values``: each learned parameter
    (``T0 = 5.976 (true 6, −0.39 %)``) and the ``let``s computed from it
    (``omega0 = 2*pi/T0 = 1.0513``); ``numeric``: the equations with the values put in;
    ``true_equations``/``true_values``: the system the data came from, when known."""
    model = run.load_model(which)
    spec = run.spec
    out: dict[str, Any] = {"system": spec.system.name, "method": run.config.method,
                           "checkpoint": which}
    field = model.field
    prior = field.prior
    dataset = dataset if dataset is not None else run.dataset()
    out["parameters"] = with_settling(parameter_table(model, dataset), run.metrics())
    truth = {r["name"]: r["true"] for r in out["parameters"] if "true" in r}
    variables = spec.system.variables
    on = spec.augment_on if field.augmentation is not None else None
    if isinstance(prior, VectorField):
        equations = list(prior.equations)
        if field.augmentation is not None:
            equations = augmented(equations, variables, on)
        out["equations"] = [render_equation(eq.var, eq.rhs, latex) for eq in equations]
        values = {k: float(v.detach()) for k, v in prior.param_values().items()}
        learned = [r["name"] for r in out["parameters"]]
        out["values"] = value_lines(values, truth, prior.lets, latex, names=learned)
        eqs = prior.sympy(substitute=True)
        numeric = [Equation(eq.var, r.rhs) for eq, r in zip(prior.equations, eqs)]
        if field.augmentation is not None:
            numeric = augmented(numeric, variables, on)
        out["numeric"] = [render_equation(eq.var, eq.rhs, latex) for eq in numeric]
        out["sympy"] = [sympy.srepr(e) for e in eqs]
        out["latex"] = [render_equation(eq.var, eq.rhs, True) for eq in equations]
    elif prior is not None:
        out["equations"] = ["F_p = (∂H/∂p, −∂H/∂q), H a learned network"
                            + (" + F_a" if field.augmentation is not None else "")]
        out["values"] = []
    else:
        out["equations"] = [render_equation(v, sympy.Function("F")(
            *[sympy.Symbol(u) for u in variables]), latex) for v in variables]
        out["values"] = ["F: a neural network (no physical prior)"]
    envs = dataset.env_params
    if spec.system.equations and len(envs) == 1 and envs[0]:
        true = {p.name: float(envs[0].get(p.name, p.value)) for p in spec.system.params}
        out["true_equations"] = [render_equation(eq.var, eq.rhs, latex)
                                 for eq in spec.system.equations]
        out["true_values"] = value_lines(true, None, spec.system.lets, latex)
    _, traj, _ = _split(dataset, "test")
    out.update(augmentation_share(model.field, traj.frames,
                                  run.config.method_options.get("norm")))
    return out


def parameter_trajectory(metrics: list[dict], fraction: float = 0.2,
                         settled_pct: float = 1.0) -> dict[str, dict[str, float]]:
    """Each learned parameter over the last ``fraction`` of the logged steps: its mean
    (an average of the iterates, which damps the last steps' noise), its spread
    ``(max − min)/|mean|`` in %, and whether it has ``settled`` (spread ≤ ``settled_pct``):
    a value still moving is a transient, not a result."""
    steps = [m for m in metrics if "loss" in m]
    names = [k[6:] for k in (steps[0] if steps else {}) if k.startswith("param/")]
    if not steps or not names:
        return {}
    tail = steps[int(len(steps) * (1 - fraction)):] or steps[-1:]
    out = {}
    for name in names:
        values = [m[f"param/{name}"] for m in tail if f"param/{name}" in m]
        mean = sum(values) / len(values)
        spread = (max(values) - min(values)) / abs(mean) * 100 if mean else math.inf
        out[name] = {"average": mean, "last": values[-1], "spread_pct": spread,
                     "settled": spread <= settled_pct, "from_step": tail[0]["step"],
                     "to_step": tail[-1]["step"]}
    return out


def with_settling(rows: list[dict[str, Any]], metrics: list[dict]) -> list[dict[str, Any]]:
    """Add to each parameter row whether it has ``settled`` over the last 20 % of the
    logged steps (:func:`parameter_trajectory`), its ``spread_pct`` there, and the
    ``settled_value`` (the average there) with its error: the figure to report when the
    parameter has settled; when it has not, any single value is a transient."""
    traj = parameter_trajectory(metrics)
    for r in rows:
        t = traj.get(r["name"])
        if t is None:
            continue
        r.update(settled=t["settled"], spread_pct=t["spread_pct"], settled_value=t["average"])
        if "true" in r:
            true = r["true"]
            r["settled_error_pct"] = abs(t["average"] - true) / abs(true) * 100 if true \
                else abs(t["average"] - true) * 100
    return rows


def selection(run) -> dict[str, Any]:
    """Which state the report describes (the best validation checkpoint) and how the
    run's last state compares with it."""
    out: dict[str, Any] = {}
    try:
        best, last = run.checkpoint("best"), run.checkpoint("last")
    except (ValueError, OSError):
        return out
    out["best_step"] = int(best.get("step", 0))
    out["best_val"] = float(best.get("val", math.nan))
    out["last_step"] = int(last.get("step", 0))
    reason = last.get("stop_reason")
    if reason:
        out["stop_reason"] = str(reason)
    vals = [m for m in run.metrics() if "val" in m]
    if vals:
        out["last_val"] = float(vals[-1]["val"])
    return out


def write_report(run, dataset=None) -> dict[str, Any]:
    """Evaluate, inspect, write ``report.json``, ``report.md`` and the plots."""
    dataset = dataset if dataset is not None else run.dataset()
    ev = evaluate(run, dataset=dataset)
    ins = inspect(run, dataset=dataset)
    metrics = run.metrics()
    train_steps = [m for m in metrics if "loss" in m]
    report = {"evaluate": ev, "inspect": ins,
              "steps": train_steps[-1]["step"] if train_steps else 0,
              "train_seconds": train_steps[-1]["time"] if train_steps else 0.0,
              "selection": selection(run),
              "parameter_trajectory": parameter_trajectory(metrics)}
    try:
        from .plots import write_plots
    except ImportError:  # matplotlib missing: the report stands without pictures
        write_plots = None
    if write_plots is not None:
        report["plots"] = [p.name for p in write_plots(run, dataset, metrics)]
    atomic_write_text(run.path / "report.json", json.dumps(report, indent=2, default=float))
    atomic_write_text(run.path / "report.md", markdown(run, report))
    return report


def side_by_side(ins: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows ``(identified, true)``: the equations, then the parameter values."""
    left = list(ins["equations"]) + [""] + list(ins.get("values", []))
    right = list(ins.get("true_equations", [])) + [""] + list(ins.get("true_values", []))
    if "true_equations" not in ins:
        right = []
    n = max(len(left), len(right))
    return [(left[i] if i < len(left) else "", right[i] if i < len(right) else "")
            for i in range(n)]


def parameter_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each learned parameter at the best checkpoint, at the last step, averaged over the
    last 20 % of training, and its true value."""
    traj = report.get("parameter_trajectory") or {}
    rows = []
    for p in report["inspect"]["parameters"]:
        r = {"name": p["name"], "best": p["identified"]}
        t = traj.get(p["name"])
        if t is not None:
            r.update(last=t["last"], average=t["average"], spread_pct=t["spread_pct"],
                     settled=t["settled"])
        if "true" in p:
            r.update(true=p["true"], error_pct=p["error_pct"])
        rows.append(r)
    return rows


def markdown(run, report: dict[str, Any]) -> str:
    ev, ins = report["evaluate"], report["inspect"]
    sel = report.get("selection", {})
    best, last = sel.get("best_step", "?"), sel.get("last_step", report["steps"])
    lines = [f"# {ins['system']} — {ins['method']}", "",
             f"Trained {report['steps']} steps in {report['train_seconds']:.1f} s"
             + (f"; stopped: {sel['stop_reason']}" if sel.get("stop_reason") else "") + ".",
             "", f"**Reported state: the best validation checkpoint, step {best}**"
             + (f" (validation MSE {sel['best_val']:.4g})" if "best_val" in sel else "")
             + f". The last state is step {last}"
             + (f" (last validation MSE {sel['last_val']:.4g})" if "last_val" in sel else "")
             + ".", "",
             "## Identified equations", "",
             "Identified (best checkpoint):", "", "```"]
    lines += ins["equations"] + [""] + list(ins.get("values", []))
    lines += ["```", ""]
    if "true_equations" in ins:
        lines += ["True system (the data's):", "", "```"]
        lines += ins["true_equations"] + [""] + list(ins.get("true_values", []))
        lines += ["```", ""]
    if ins.get("numeric"):
        lines += ["With the identified values:", "", "```"] + ins["numeric"] + ["```", ""]
    if ins.get("latex"):
        lines += ["LaTeX:", "", "$$"] + [r" \\ ".join(ins["latex"])] + ["$$", ""]
    rows = parameter_rows(report)
    if rows:
        lines += ["## Parameters", "",
                  f"| parameter | best checkpoint (step {best}) | last (step {last}) | "
                  "average of the last 20 % | settled | true | error (best) |",
                  "|---|---|---|---|---|---|---|"]
        for r in rows:
            def f(k, fmt="{:.6g}"):
                return fmt.format(r[k]) if k in r else "—"
            settled = ("yes" if r["settled"] else "no") if "settled" in r else "—"
            lines.append(f"| {r['name']} | {f('best')} | {f('last')} | {f('average')} "
                         f"(spread {f('spread_pct', '{:.3g}')} %) | {settled} | {f('true')} | "
                         f"{f('error_pct', '{:.3f} %')} |")
        lines.append("")
    lines += ["## Test error", "",
              f"- MSE over {ev['frames']} frames of {ev['trajectories']} trajectories: "
              f"{ev['mse']:.4g} (ln MSE {ev['ln_mse']:.3f}, log10 MSE {ev['log10_mse']:.3f})"]
    if "mse_vs_clean" in ev:
        lines.append(f"- against noise-free data: {ev['mse_vs_clean']:.4g} "
                     f"(ln {ev['ln_mse_vs_clean']:.3f})")
    if "worst_trajectory" in ev:
        w = ev["worst_trajectory"]
        lines.append(f"- worst test trajectory: #{w['index']} (MSE {w['mse']:.4g})")
    if "aug_share" in ev:
        lines.append(f"- ‖F_a‖² = {ev['aug_norm']:.4g}; the network carries "
                     f"{100 * ev['aug_share']:.2f} % of the dynamics (‖F_a‖/‖F_p+F_a‖)")
    plots = report.get("plots") or []
    if plots:
        lines += ["", "## Plots", ""]
        for name in plots:
            lines.append(f"![{Path(name).stem}](plots/{Path(name).name})")
    return "\n".join(lines) + "\n"
