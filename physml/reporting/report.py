"""``physml.evaluate(run)`` and ``physml.inspect(run)``: test metrics and identified physics.

The thesis reports forecasting error as "log MSE", the natural log of the test MSE over the
whole horizon (Table 3.4); we give ``ln_mse`` and ``log10_mse`` both. Parameter error is
``|p̂ − p| / |p|`` against the values the data were simulated with.
"""
from __future__ import annotations

import json
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sympy
import torch

from ..data import Trajectories, Windows
from ..models.environments import MultiEnvModel
from ..symbolic import VectorField
from ..training.checkpoint import atomic_write_text
from ..symbolic.spec import Equation
from .environments import environment_norms, environment_parameters, \
    per_environment_errors, shared_truth
from .symbolic import augmented, render_equation, value_lines


def _split(dataset, split: str, observed: list[int] | None = None, readout=None
           ) -> tuple[str, Trajectories, torch.Tensor | None]:
    """The trajectories of ``split`` (falling back to val, then train, when the data have
    no such split; ``observed``: the measured channels, the others hidden) and their
    noiseless truth, if known (all channels)."""
    if split not in dataset.splits or dataset.splits[split].numel() == 0:
        split = "val" if "val" in dataset.splits and dataset.splits["val"].numel() else "train"
    traj = Trajectories(dataset.splits[split], dataset.times, dataset.history,
                        observed=observed, readout=readout)
    clean = (getattr(dataset, "splits_clean", None) or {}).get(split)
    if clean is not None:
        clean = Trajectories(clean, dataset.times, dataset.history).frames
    return split, traj, clean


@contextmanager
def _on(model, device=None):
    """The model moved to ``device`` (None: left where it is) for the block, then back;
    yields the device it runs on."""
    home = next(iter(model.parameters()), next(iter(model.buffers()), torch.empty(0))).device
    dev = home if device is None else torch.device(device)
    if dev == home:
        yield dev
        return
    model.to(dev)
    try:
        yield dev
    finally:
        model.to(home)


def forecast(model, batch, device=None) -> torch.Tensor:
    """``model.predict(batch)`` run on ``device`` (None: where the model is) and returned on
    the CPU, the model left where it was: the reports' metrics stay on the CPU while a
    64×64 ResNet rollout of a hundred test trajectories runs on the GPU."""
    if device is None:
        return model.predict(batch)
    with _on(model, device) as dev:
        return model.predict(batch.to(dev)).cpu()


def evaluate(run, split: str = "test", dataset=None, device=None,
             windows: int | None = None) -> dict[str, Any]:
    """Forecast error over the full horizon of the test trajectories, parameter errors,
    and the size of the augmentation (of the best checkpoint). ``device``: where the
    forecasts run (the metrics are computed on the CPU). ``windows``: also the error of
    the forecasts of that many frames started at every frame (:func:`window_errors`)."""
    dataset = dataset if dataset is not None else run.dataset()
    model = run.load_model("best")
    observed = run.spec.observed_channels()
    split, traj, clean = _split(dataset, split, observed, model.readout)
    batch = traj.batch()
    data = batch.target
    states = forecast(model, batch, device)
    pred = model.observations(states)      # (H·X̂ under linear observations)
    err = (pred - data).pow(2)
    if batch.mask is not None:
        # Observed entries only (hidden channels, gaps): a mean over what was measured.
        m = batch.mask.expand_as(err)
        mse = float((err * m).sum() / m.sum().clamp_min(1))
        per_step = ((err * m).flatten(2).sum(dim=(0, 2)) /
                    m.flatten(2).sum(dim=(0, 2)).clamp_min(1)).tolist()
        per_traj = (err * m).flatten(1).sum(dim=1) / m.flatten(1).sum(dim=1).clamp_min(1)
    else:
        mse = float(err.mean())
        per_step = err.flatten(2).mean(dim=(0, 2)).tolist() if err.dim() > 2 else \
            err.mean(dim=0).tolist()
        per_traj = err.flatten(1).mean(dim=1)
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
    med = float(per_traj.median())
    out["ln_mse_median_trajectory"] = math.log(med) if med > 0 else -math.inf
    out["worst_trajectory"] = {"index": int(per_traj.argmax()), "mse": float(per_traj.max())}
    if clean is not None:
        obs = slice(None) if observed is None else observed
        c = float((pred[:, :, obs] - model.observations(clean)[:, :, obs]).pow(2).mean())
        out["mse_vs_clean"] = c
        out["ln_mse_vs_clean"] = math.log(c) if c > 0 else -math.inf
    out["parameters"] = with_settling(parameter_table(model, dataset), run.metrics())
    if run.spec.hidden_variables():
        from .partial import partial_metrics

        # The truth of the hidden channels where known (NaN where the data lack it).
        truth = clean if clean is not None else dataset.splits[split].flatten(0, 1)[
            :, dataset.history:].to(pred.dtype)
        out["partial"] = partial_metrics(run, model, states, pred, data, truth,
                                         out["parameters"])
    if windows:
        out["windows"] = window_errors(model, traj, windows, device)
    errors = [p["error_pct"] for p in out["parameters"] if p.get("error_pct") is not None]
    if errors:
        out["param_error_pct"] = sum(errors) / len(errors)
    if isinstance(model.field, MultiEnvModel) or len(dataset.env_names) > 1:
        out.update(_environments(run, model, dataset, batch, pred, device))
    if not isinstance(model.field, MultiEnvModel):
        # With hidden variables the data are no states: the forecast's states are used.
        hidden = bool(run.spec.hidden_variables())
        out.update(augmentation_share(model.field, states if hidden else data,
                                      run.config.method_options.get("norm"), device,
                                      **(_measured(model) if hidden else {})))
    return out


@torch.no_grad()
def window_errors(model, traj: Trajectories, length: int, device=None,
                  chunk: int = 256) -> dict[str, Any]:
    """The MSE (observed entries) of the forecasts of ``length`` frames started at every
    frame of the trajectories from which ``length`` frames remain, each from the frames
    before it (what ``windows all`` trains on; thesis §2.7.3 tests on such windows):
    pooled over the windows, and per frame of the forecast."""
    if length < 1:
        raise ValueError(f"windows of {length} frames: give at least 1")
    cut = Windows(traj, length)
    err = count = None
    for batch in cut.chunks(chunk):
        e = (model.observations(forecast(model, batch, device)) - batch.target).pow(2)
        m = batch.mask.expand_as(e) if batch.mask is not None else torch.ones_like(e)
        e, m = (e * m).flatten(2).sum(dim=(0, 2)), m.flatten(2).sum(dim=(0, 2))
        err, count = (e, m) if err is None else (err + e, count + m)
    mse = float(err.sum() / count.sum().clamp_min(1))
    return {"length": cut.n_frames, "windows": len(cut), "mse": mse,
            "ln_mse": math.log(mse) if mse > 0 else -math.inf,
            "mse_per_step": (err / count.clamp_min(1)).tolist()}


def _environments(run, model, dataset, batch, pred, device=None) -> dict[str, Any]:
    """Per environment (thesis Tables 3.13–3.15): test and train MSE with their mean ±
    std over environments, ‖G_e‖², and the per-environment parameters."""
    names = tuple(dataset.env_names)
    out: dict[str, Any] = {"environments": per_environment_errors(pred, batch.target,
                                                                  batch.env, names)}
    if "train" in dataset.splits and dataset.splits["train"].numel():
        tr = Trajectories(dataset.splits["train"], dataset.times, dataset.history).batch()
        out["train_environments"] = per_environment_errors(forecast(model, tr, device),
                                                           tr.target, tr.env, names)
    field = model.field
    if isinstance(field, MultiEnvModel):
        norm = run.config.method_options.get("norm", "relative")
        out["g_norms"] = environment_norms(field, batch.target.flatten(0, 1),
                                           batch.env.repeat_interleave(batch.t.shape[0]),
                                           relative=norm == "relative")
        out["environment_parameters"] = environment_parameters(field, dataset)
    return out


def parameter_table(model, dataset) -> list[dict[str, Any]]:
    learned = {k: float(v.detach()) for k, v in model.physical_parameters().items()}
    envs = getattr(dataset, "env_params", None) or []
    truth = envs[0] if len(envs) == 1 else {}
    if len(envs) > 1:  # shared values all environments agree on, and `name[env]`
        truth = shared_truth(dataset, learned)
        if not dataset.meta.get("source"):
            truth.update({f"{k}[{n}]": v for n, e in zip(dataset.env_names, envs)
                          for k, v in e.items()})
    rows = []
    for name, value in learned.items():
        row: dict[str, Any] = {"name": name, "identified": value}
        if name in truth:
            t = float(truth[name])
            row["true"] = t
            row["error_pct"] = abs(value - t) / abs(t) * 100 if t != 0 else abs(value - t) * 100
        rows.append(row)
    return rows


def _measured(rollout) -> dict[str, Any]:
    """What ``rollout`` observes of its states, as :func:`augmentation_share` takes it."""
    return {"observed": rollout.observed, "readout": rollout.readout}


@torch.no_grad()
def augmentation_share(model, data: torch.Tensor, norm: str | None = None,
                       device=None, observed: list[int] | None = None,
                       readout: torch.Tensor | None = None) -> dict[str, float]:
    """``‖F_a‖²`` on the data states and the share ``‖F_a‖ / ‖F_p + F_a‖`` of the dynamics
    carried by the network (0 when the physics explains everything); ``device``: where the
    network is evaluated (the model is moved there and back).

    Under partial observation (``observed`` state channels, or the linear map ``readout``
    H of `observe u + v`) the share is also measured on the observed rates,
    ``‖H F_a‖ / ‖H (F_p + F_a)‖`` (``aug_share_observed``): a hidden variable's scale is
    the model's own (§2.5.4), so the share over the whole state can say 100 % whatever
    the network does to the measured variables."""
    if model.augmentation is None:
        return {}
    states = data.flatten(0, 1)
    relative = (norm == "relative") if norm else states.dim() == 2
    with _on(model, device) as dev:
        chunks = [s.to(dev) for s in states.split(4096 if states.dim() == 2 else 64)]
        with torch.enable_grad():  # a Hamiltonian prior differentiates its network
            total = torch.cat([model(torch.zeros((), device=dev), s).detach() for s in chunks])
        fa = torch.cat([model.augmentation(s) for s in chunks])
        share = float(fa.norm() / total.norm().clamp_min(1e-12))
        # the mean of ‖F_a‖² (or of its relative form) over all states, chunk by chunk
        aug_norm = sum(float(model.augmentation_norm(s, relative)) * len(s)
                       for s in chunks) / len(states)
    out = {"aug_norm": aug_norm, "aug_share": share}
    if readout is not None or observed is not None:
        def measured(x: torch.Tensor) -> torch.Tensor:
            if readout is not None:
                return torch.einsum("oc,nc...->no...", readout.to(x), x)
            return x[:, list(observed)]
        out["aug_share_observed"] = float(measured(fa).norm()
                                          / measured(total).norm().clamp_min(1e-12))
    return out


def inspect(run, latex: bool = False, dataset=None, which: str = "best",
            conjugacy: int = 0, intervals: str | None = "laplace", bootstrap: int = 0,
            level: float = 0.95, device=None,
            share: dict[str, float] | None = None) -> dict[str, Any]:
    """The identified model in the spec's notation, beside the true system.

    ``equations``: the prior's equations with the spec's parameter names kept and the
    network term written ``F_a(…)`` where it acts; ``values``: each learned parameter
    (``T0 = 5.976 (true 6, −0.39 %)``) and the ``let``s computed from it
    (``omega0 = 2*pi/T0 = 1.0513``); ``numeric``: the equations with the values put in;
    ``true_equations``/``true_values``: the system the data came from, when known;
    ``uncertainty``: a ``level`` interval on each learned physical parameter, Laplace
    (``intervals="laplace"``) or from ``bootstrap`` refits on resampled training
    trajectories (:mod:`physml.discover.uncertainty`; None: no intervals).
    ``conjugacy`` > 0: with hidden variables, the map from learned to true states fitted
    on that many labelled test trajectories (thesis §2.5.4, :func:`.partial.conjugacy`).
    ``share``: ``aug_norm`` and ``aug_share`` as :func:`evaluate` measured them on the
    same checkpoint and test split (:func:`write_report` passes them, sparing a second
    forecast); None: measured here."""
    model = run.load_model(which)
    spec = run.spec
    out: dict[str, Any] = {"system": spec.system.name, "method": run.config.method,
                           "checkpoint": which}
    field = model.field
    prior = field.prior
    dataset = dataset if dataset is not None else run.dataset()
    out["parameters"] = with_settling(parameter_table(model, dataset), run.metrics())
    if spec.hidden_variables():
        from .partial import annotate_parameters, symmetries

        syms = symmetries(run, model)
        annotate_parameters(out["parameters"], syms)
        if syms:
            out["identifiability"] = [
                f"{s.describe()} leaves the observations unchanged: "
                + ", ".join(f"{p} is not identifiable (only {s.invariant(p)} is)"
                            for p, k in s.params.items() if k != 0) for s in syms]
    truth = {r["name"]: r["true"] for r in out["parameters"]
             if "true" in r and r.get("identifiable", True)}
    variables = spec.system.variables
    on = spec.augment_on if field.augmentation is not None else None
    if isinstance(prior, VectorField):
        equations = list(prior.equations)
        if field.augmentation is not None:
            equations = augmented(equations, variables, on)
        out["equations"] = [render_equation(eq.var, eq.rhs, latex) for eq in equations]
        values = {k: float(v.detach()) for k, v in prior.param_values().items()}
        learned = [r["name"] for r in out["parameters"]]
        per_env = {k: float(v.detach()) for k, v in model.physical_parameters().items()
                   if k not in values}
        out["values"] = value_lines({**values, **per_env}, truth, prior.lets, latex,
                                    names=learned)
        if per_env:  # each environment's equations, its own values put in
            out["environment_equations"] = _environment_equations(field, latex)
        out["values"] += [f"{r['name']}: not identifiable from the observations "
                          f"({r['symmetry']}); only {r['identifiable_combination']} is"
                          for r in out["parameters"] if r.get("identifiable") is False]
        eqs = prior.sympy(substitute=True)
        if per_env:  # per-environment parameters stay symbols in the shared equations
            keep = {sympy.Symbol(n) for n in field.env_params.raw}
            eqs = [sympy.Eq(e.lhs, r.rhs.xreplace(
                {k: v for k, v in {sympy.Symbol(n): sympy.Float(values[n], 6)
                                   for n in values}.items() if k not in keep}))
                for e, r in zip(eqs, prior.sympy(substitute=False))]
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
    unsupported = ("models over several environments" if isinstance(field, MultiEnvModel)
                   else "hidden variables" if spec.hidden_variables() else None)
    if (intervals is not None or bootstrap) and isinstance(prior, VectorField) \
            and prior.learnable and unsupported is not None:
        # Laplace and bootstrap are written for one environment with every channel seen.
        out["uncertainty"] = {"method": "bootstrap" if bootstrap else "laplace",
                              "intervals": [], "note": f"not computed for {unsupported}",
                              "lines": [f"no intervals: not computed for {unsupported} "
                                        "in this version"]}
    elif (intervals is not None or bootstrap) and isinstance(prior, VectorField) \
            and prior.learnable:
        try:
            out["uncertainty"] = parameter_intervals(run, model, dataset, truth, bootstrap,
                                                     level, which)
        except (ValueError, RuntimeError) as exc:  # (torch's LinAlgError is one)
            # A report without intervals is still a report: say why there are none.
            out["uncertainty"] = {"method": "bootstrap" if bootstrap else "laplace",
                                  "intervals": [], "note": str(exc),
                                  "lines": [f"no intervals: {exc}"]}
    _, traj, _ = _split(dataset, "test")
    if isinstance(field, MultiEnvModel):
        norm = run.config.method_options.get("norm", "relative")
        out["g_norms"] = environment_norms(field, traj.frames.flatten(0, 1),
                                           traj.env.repeat_interleave(traj.n_frames),
                                           relative=norm == "relative")
        out["environment_parameters"] = environment_parameters(field, dataset)
        return out
    if share is not None:
        out.update(share)
    elif spec.hidden_variables():
        # The data's hidden channels are not the model's (its hidden states are learned up
        # to a map, §2.5.4): F_a is measured on the forecast's states, as in evaluate().
        _, obs_traj, _ = _split(dataset, "test", spec.observed_channels(), model.readout)
        out.update(augmentation_share(model.field, forecast(model, obs_traj.batch(), device),
                                      run.config.method_options.get("norm"), device,
                                      **_measured(model)))
    else:
        out.update(augmentation_share(model.field, traj.frames,
                                      run.config.method_options.get("norm")))
    if conjugacy:
        from .partial import conjugacy as fit_conjugacy

        split, traj, clean = _split(dataset, "test", spec.observed_channels(), model.readout)
        truth = clean if clean is not None else dataset.splits[split].flatten(0, 1)[
            :, dataset.history:].to(traj.frames.dtype)
        out["conjugacy"] = fit_conjugacy(run, model, traj, truth, conjugacy, device)
    return out


def training_trajectories(run, dataset) -> Trajectories:
    """The trajectories the run trained on: the ``train`` split less those it held out
    for validation (``config.json``'s record)."""
    frames = dataset.splits["train"]
    held = run.validation.get("train_indices_held_out") or []
    if held:
        keep = [i for i in range(frames.shape[1]) if i not in set(held)]
        frames = frames[:, keep]
    return Trajectories(frames, dataset.times, dataset.history)


#: The Laplace Hessian is summed over at most this many training trajectories (scaled to
#: all of them), so that the report after a large run stays cheap: 64 for ODE states, 8
#: for fields (on reaction–diffusion, 32×32, 64 trajectories kept the report after a
#: 16-minute training busy for over 10 minutes of a 2-core CPU).
LAPLACE_TRAJECTORIES = 64
LAPLACE_FIELD_TRAJECTORIES = 8


def parameter_intervals(run, model, dataset, truth: dict[str, float], bootstrap: int = 0,
                        level: float = 0.95, which: str = "best") -> dict[str, Any]:
    """Intervals on the learned physical parameters (Laplace, or ``bootstrap`` refits)."""
    from ..discover import uncertainty

    train = training_trajectories(run, dataset)
    cfg = run.config
    if bootstrap:
        from ..objectives import build_objective

        objective = None
        if model.field.augmentation is not None:
            objective = build_objective(cfg.method, cfg.method_options, run.spec.system.is_grid,
                                        loss=cfg.loss)
            state = run.checkpoint(which).get("objective")
            if isinstance(state, dict):
                objective.load_state_dict(state)
        result = uncertainty.bootstrap(model, train, bootstrap, loss=cfg.loss, level=level,
                                       truth=truth, seed=cfg.seed, lr=cfg.lr,
                                       lr_phys=cfg.lr_phys, objective=objective)
    else:
        field = train.frames[0, 0].dim() > 1
        result = uncertainty.laplace(model, train, loss=cfg.loss, level=level, truth=truth,
                                     max_trajectories=LAPLACE_FIELD_TRAJECTORIES if field
                                     else LAPLACE_TRAJECTORIES)
    return {**result.to_dict(), "lines": result.lines()}


def _environment_equations(field, latex: bool) -> dict[str, list[str]]:
    """Each environment's prior equations with its parameter values (shared and own)."""
    prior = field.prior
    shared = {k: float(v.detach()) for k, v in prior.param_values().items()}
    own = {k: v.detach() for k, v in field.env_params.values().items()}
    out = {}
    for e, name in enumerate(field.env_names):
        vals = {**shared, **{k: float(v[e]) for k, v in own.items()}}
        subs = {sympy.Symbol(k): sympy.Float(v, 6) for k, v in vals.items()}
        eqs = [Equation(eq.var, eq.rhs.xreplace(subs)) for eq in prior.equations]
        if field.per_env is not None:
            eqs = augmented(eqs, list(prior.variables), None)
        out[name] = [render_equation(eq.var, eq.rhs, latex) for eq in eqs]
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
    # With hidden variables both measure F_a on the same test forecast: made once.
    reuse = run.spec.hidden_variables() and "aug_share" in ev
    ins = inspect(run, dataset=dataset, share={k: ev[k] for k in ("aug_norm", "aug_share")}
                  if reuse else None)
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
    evaluated = {p["name"]: p for p in report.get("evaluate", {}).get("parameters", [])}
    for p in report["inspect"]["parameters"]:
        p = {**evaluated.get(p["name"], {}), **p}
        r = {"name": p["name"], "best": p["identified"]}
        t = traj.get(p["name"])
        if t is not None:
            r.update(last=t["last"], average=t["average"], spread_pct=t["spread_pct"],
                     settled=t["settled"])
        if "true" in p:
            r.update(true=p["true"])
            if "error_pct" in p:
                r["error_pct"] = p["error_pct"]
            elif "error_up_to_symmetry_pct" in p:
                r["error_pct"] = p["error_up_to_symmetry_pct"]
                r["note"] = "not identifiable: up to the symmetry"
        rows.append(r)
    return rows


def _environment_markdown(ev: dict[str, Any]) -> list[str]:
    """Per environment: train and test MSE, ‖G_e‖², and their mean ± std (Table 3.14)."""
    test, train = ev["environments"], ev.get("train_environments")
    norms = {r["environment"]: r["g_norm"] for r in ev.get("g_norms", [])}
    tr = {r["environment"]: r["mse"] for r in train["per_environment"]} if train else {}
    lines = ["", "| environment | train MSE | test MSE | ‖G_e‖² |", "|---|---|---|---|"]
    for r in test["per_environment"]:
        n = r["environment"]
        lines.append(f"| {n} | {tr[n]:.4g} | {r['mse']:.4g} | " if n in tr else
                     f"| {n} | — | {r['mse']:.4g} | ")
        lines[-1] += f"{norms[n]:.4g} |" if n in norms else "— |"
    mean = f"{test['mse_env_mean']:.3g} ± {test['mse_env_std']:.2g}"
    tmean = f"{train['mse_env_mean']:.3g} ± {train['mse_env_std']:.2g}" if train else "—"
    lines += [f"| mean ± std | {tmean} | {mean} | |", ""]
    return lines


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
                         f"{f('error_pct', '{:.3f} %')}"
                         + (f" ({r['note']})" if "note" in r else "") + " |")
        lines.append("")
    unc = ins.get("uncertainty")
    if unc:
        lines += ["## Intervals", "", "```"] + list(unc["lines"]) + ["```", ""]
    lines += ["## Test error", "",
              f"- MSE over {ev['frames']} frames of {ev['trajectories']} trajectories: "
              f"{ev['mse']:.4g} (ln MSE {ev['ln_mse']:.3f}, log10 MSE {ev['log10_mse']:.3f})"]
    if "mse_vs_clean" in ev:
        lines.append(f"- against noise-free data: {ev['mse_vs_clean']:.4g} "
                     f"(ln {ev['ln_mse_vs_clean']:.3f})")
    if "worst_trajectory" in ev:
        w = ev["worst_trajectory"]
        lines.append(f"- worst test trajectory: #{w['index']} (MSE {w['mse']:.4g})")
    part = ev.get("partial")
    if part:
        lines += ["", "## Partial observation", "",
                  f"Observed: {', '.join(part['observed'])}; hidden: {', '.join(part['hidden'])}; "
                  f"initial states: {part['initial_states']}.", ""]
        for key, title in (("relative_mse", "relative error on the observations (eq. 2.6)"),
                           ("hidden_cosine", "cosine of the hidden states to the truth "
                                             "(eq. 2.7)")):
            if key in part:
                lines.append(f"- {title}: " + ", ".join(f"{h} {v:.4g}"
                                                        for h, v in part[key].items()))
        for name, sc in part.get("hidden_scale", {}).items():
            lines.append(f"- learned {name} ≈ {sc['scale']:.4g} × true {name} (relative "
                         f"squared residual {sc['relative_mse_after_scaling']:.3g})")
        for sym in part.get("symmetries", []):
            lines.append(f"- symmetry: {sym} leaves the observations unchanged; not "
                         f"identifiable: {', '.join(part.get('not_identifiable', []))}")
    if "environments" in ev:
        lines += _environment_markdown(ev)
    if "aug_share" in ev:
        lines.append(f"- ‖F_a‖² = {ev['aug_norm']:.4g}; the network carries "
                     f"{100 * ev['aug_share']:.2f} % of the dynamics (‖F_a‖/‖F_p+F_a‖)"
                     + observed_share_text(ev))
    plots = report.get("plots") or []
    if plots:
        lines += ["", "## Plots", ""]
        for name in plots:
            lines.append(f"![{Path(name).stem}](plots/{Path(name).name})")
    return "\n".join(lines) + "\n"


def observed_share_text(ev: dict) -> str:
    """`; … % of the observed variables' rates` when :func:`augmentation_share` measured it."""
    if "aug_share_observed" not in ev:
        return ""
    return (f"; {100 * ev['aug_share_observed']:.2f} % of the observed variables' rates "
            "(‖H F_a‖/‖H (F_p+F_a)‖)")
