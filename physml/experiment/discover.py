"""``physml discover RUN``: a trained run's augmentation written as equations, absorbed into
a new spec, and refitted (the run-directory side of :mod:`physml.discover`)."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from ..data import Trajectories
from ..discover import (THRESHOLD, Absorbed, Discovery, EnvironmentDiscovery, absorb,
                        discover, discover_environments)
from ..discover.refine import TOL as REFINE_TOL
from ..discover.refine import apply as apply_refinement
from ..discover.refine import refine as refine_terms

#: Training methods whose model has one dynamics per environment.
MULTI_ENV_METHODS = ("leads", "leads_no_min", "one_for_all", "one_per_env", "ft_node", "gbml")
#: Sub-steps of the refinement's solver per training step.
REFINE_SUBSTEPS = 2
from ..training.checkpoint import atomic_write_text
from .run import Run, RunError
from .spec import parse_spec

#: The file ``physml discover`` writes into the run directory.
DISCOVERY_FILE = "discovery.json"


def _run(run) -> Run:
    return run if isinstance(run, Run) else Run(run)


def discover_run(run, *, threshold: float = THRESHOLD, bootstrap: int = 100,
                 degree: int | None = None, engine: str = "stlsq", seed: int = 0,
                 which: str = "best", dataset=None, write: bool = True,
                 refine: bool = False, refine_tol: float = REFINE_TOL, progress=None
                 ) -> Discovery | EnvironmentDiscovery:
    """Fit the run's learned F_a on its training states with the spec's library (its
    ``discover terms`` line, else the default one) and write ``RUN/discovery.json``.

    ``refine``: then refit the library on the training trajectories and eliminate terms
    there (:func:`physml.discover.refine.refine`, tolerance ``refine_tol``), with the
    run's training solver at half its step; the result holds the refined terms.

    With hidden variables (``observe``), F_a is sampled on the model's forecasts of the
    training trajectories, hidden states included.

    A multi-environment run (LEADS and its baselines) gets one discovery per environment
    (:func:`physml.discover.discover_environments`): in each, the networks' part of its
    dynamics (shared network + G_e) on its own training states."""
    from ..training.trainer import compute_threads
    import torch

    from ..models.environments import MultiEnvModel

    run = _run(run)
    spec = run.spec
    multi = spec.per_environment is not None or run.config.method in MULTI_ENV_METHODS
    if not multi and (spec.augment is None or spec.augment.name == "none" or
                      run.config.method not in ("aphynity", "augmented")):
        raise RunError(f"{run.path}: trained with {run.config.method} and no augmentation "
                       "network on a prior; discovery fits the network F_a of an `aphynity` "
                       "or `augmented` run, or the networks of a multi-environment run")
    model = run.load_model(which)
    ds = dataset if dataset is not None else run.dataset()
    kw = dict(threshold=threshold, bootstrap=bootstrap, seed=seed, engine=engine,
              degree=degree)
    if isinstance(model.field, MultiEnvModel):
        if refine:
            raise RunError(f"{run.path}: --refine of a multi-environment run is not "
                           "supported yet (each environment's terms are fitted to its "
                           "networks)")
        if model.field.augmentation is None and model.field.per_env is None:
            raise RunError(f"{run.path}: this multi-environment model has no network: "
                           "nothing to discover (its parameters are in `physml inspect`)")
        with compute_threads(run.config.threads, torch.device("cpu"),
                             not spec.system.is_grid):
            result = discover_environments(spec, model.field, ds.splits["train"], ds.times,
                                           env_names=ds.env_names, **kw)
        if write:
            info = {"run": str(run.path), "checkpoint": which,
                    "method": run.config.method, **result.as_dict()}
            atomic_write_text(run.path / DISCOVERY_FILE,
                              json.dumps(info, indent=2, default=_json_float))
        return result
    train = Trajectories(ds.splits["train"], ds.times, ds.history)
    every = set(spec.system.variables)
    hidden = (ds.observed is not None and set(ds.observed) != every) or \
        (bool(spec.observe) and set(spec.observe) != every)
    if hidden and refine:
        raise RunError(f"{run.path}: --refine of a partially observed run is not supported "
                       "yet (the trajectories do not hold the hidden variables)")
    with compute_threads(run.config.threads, torch.device("cpu"), not spec.system.is_grid):
        frames = train.frames
        if hidden:
            # F_a only ever saw the model's own states, hidden variables included: sample
            # it on the model's forecasts of the training trajectories (from its encoded
            # or given initial states), not on the data's hidden channels (absent from
            # user data; in simulated data the truth, in coordinates the model need not
            # share: a hidden variable's scale is not identifiable)
            with torch.no_grad():
                frames = model.predict(train.batch()).detach()
        result = discover(spec, model.field, frames, train.times, **kw)
        if refine:
            # the training solver at half its step: its own error, which spurious terms
            # could absorb and which biases small coefficients, falls 2^order-fold
            cfg = run.config
            dt = float((train.times[1:] - train.times[:-1]).max())
            step = min(cfg.step or dt, dt) / REFINE_SUBSTEPS
            found = refine_terms(spec, model.field, result, train.frames, train.times,
                                 tol=refine_tol, solver=cfg.solver, step=step,
                                 seed=seed, progress=progress)
            result = apply_refinement(result, found)
    if write:
        info = {"run": str(run.path), "checkpoint": which, "method": run.config.method,
                **result.as_dict()}
        atomic_write_text(run.path / DISCOVERY_FILE, json.dumps(info, indent=2,
                                                                default=_json_float))
    return result


def _json_float(x):
    return float(x)


def absorb_run(run, out: str | Path, discovery: Discovery | None = None,
               method: str | None = None, min_inclusion: float = 0.5,
               **discover_kw: Any) -> Absorbed:
    """Write ``out``: the run's spec with the discovered terms in its prior, each with a
    learnable coefficient (``method``: the training method of the new spec, ``physics``
    or ``aphynity``; None keeps the run's). The text is parsed and built back — exactly
    what ``physml check`` does — before it is written."""
    from .build import check

    run = _run(run)
    discovery = discovery if discovery is not None else discover_run(run, **discover_kw)
    out = Path(out)
    spec = run.spec
    if spec.data is not None and spec.data.file is not None and \
            not Path(spec.data.file).is_absolute() and spec.path != "<string>":
        # A data file is relative to its spec's folder; the new spec may live elsewhere.
        data = dataclasses.replace(spec.data, file=str((Path(spec.path).parent /
                                                        spec.data.file).resolve()))
        spec = dataclasses.replace(spec, data=data)
    result = absorb(spec, discovery, method, min_inclusion, path=str(out))
    header = [f"# Written by `physml discover {run.path} --absorb`: the prior of "
              f"{Path(spec.path).name} plus"]
    for var, items in result.terms.items():
        for name, term, sign in items:
            shown = f"{term.coefficient:.4g}"
            ci = f", 95 % interval [{term.low:.4g}, {term.high:.4g}], kept in " \
                 f"{100 * term.inclusion:.0f} % of the bootstrap fits" \
                if term.inclusion is not None else ""
            product = name if term.term == 1 else f"{name}*{term.name}"
            header.append(f"#   d({var})/dt: {'-' if sign < 0 else '+'}{product}"
                          f"   (discovered coefficient {shown}{ci})")
    text = "\n".join(header) + "\n" + result.text
    spec_new = parse_spec(text, str(out))  # located errors, as `physml check` gives them
    check(spec_new)
    atomic_write_text(out, text)
    return dataclasses.replace(result, spec=spec_new, text=text)


def refit(run, spec_path: str | Path, out: str | Path | None = None,
          callback=None, **overrides: Any) -> dict[str, Any]:
    """Train the absorbed spec on the run's data and compare it with the run: the
    ‖F_a‖² on the test states before and after, the identified parameters, and the
    test forecast error of both."""
    from ..reporting import evaluate
    from .run import train

    run = _run(run)
    data_dir = Path(run.info["dataset"]).parent if run.info.get("dataset") else Path("data")
    ds = run.dataset()
    new = train(spec_path, out=out, data_dir=data_dir, callback=callback, **overrides)
    before = evaluate(run, dataset=ds)
    after = evaluate(new, dataset=ds)
    fa0, fa1 = before.get("aug_norm", 0.0), after.get("aug_norm", 0.0)
    result = {
        "original": str(run.path), "refit": str(new.path), "method": new.config.method,
        "aug_norm_before": fa0, "aug_norm_after": fa1,
        "aug_norm_drop": (fa0 / fa1) if fa1 > 0 else math.inf,
        "mse_before": before["mse"], "mse_after": after["mse"],
        "parameters_before": before["parameters"], "parameters_after": after["parameters"],
    }
    atomic_write_text(Path(new.path) / "refit.json",
                      json.dumps(result, indent=2, default=_json_float))
    return result


__all__ = ["discover_run", "absorb_run", "refit", "DISCOVERY_FILE"]
