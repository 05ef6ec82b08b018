"""The report of a partially observed run (thesis ch. 2): forecast error on the observed
channels per horizon (eq. 2.6), hidden states against the truth (eq. 2.7), and which
learned parameters the observations cannot determine (a scaling symmetry of a hidden
variable, :mod:`physml.symbolic.identifiability`), with their values compared up to it.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ..objectives.partial import hidden_cosine, per_horizon, relative_error_field, relative_mse
from ..symbolic import VectorField
from ..symbolic.identifiability import Symmetry, non_identifiable, scaling_symmetries


def hidden_states_estimated(run) -> bool:
    """Whether the run learns the hidden initial states (encoder, ``fit_initial``), so
    that their scale is free; given initial states (Setting 2) pin it."""
    return run.spec.encoder is not None or bool(run.config.fit_initial)


def symmetries(run, model) -> list[Symmetry]:
    """The scaling symmetries of the run's prior that the observations leave free."""
    spec = run.spec
    prior = model.field.prior
    hidden = spec.hidden_variables()
    if spec.observe_matrix is not None or not hidden or not isinstance(prior, VectorField) or not hidden_states_estimated(run):
        return []
    eqs = [(eq.var, e.rhs) for eq, e in zip(prior.equations, prior.sympy(substitute=False))]
    syms = scaling_symmetries(eqs, hidden, prior.learnable)
    if model.field.augmentation is not None:
        # A network term has no known scaling: the symmetry holds only if it absorbs it.
        return []
    return syms


def annotate_parameters(rows: list[dict[str, Any]], syms: list[Symmetry]) -> None:
    """Mark the rows of parameters a symmetry changes: no plain error for them (the value
    is one point of a family the data cannot tell apart), but the combination that is
    identifiable."""
    free = non_identifiable(syms)
    for row in rows:
        if row["name"] in free:
            sym = next(s for s in syms if s.params.get(row["name"], 0) != 0)
            row["identifiable"] = False
            row["symmetry"] = sym.describe()
            row["identifiable_combination"] = str(sym.invariant(row["name"]))
            row.pop("error_pct", None)


def partial_metrics(run, model, pred: torch.Tensor, obs_pred: torch.Tensor,
                    target: torch.Tensor, truth: torch.Tensor | None,
                    rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``pred`` the forecast states ``(B, T, C, …)`` on the test split, ``obs_pred`` what
    they predict of the measurements ``target`` (the states themselves with hidden
    channels zero in the target, or ``H·X̂`` for linear observations); ``truth`` the full
    noise-free states when known. Updates the parameter ``rows`` (non-identifiable
    parameters, values up to the symmetry)."""
    spec = run.spec
    obs = spec.observed_channels()
    if obs is None:  # linear observations: every channel of the target is measured
        obs = list(range(target.shape[2]))
    names = spec.system.variables
    hid = [names.index(v) for v in spec.hidden_variables()]
    out: dict[str, Any] = {"observed": list(spec.observe),
                           "hidden": list(spec.hidden_variables()),
                           "initial_states": "encoder" if spec.encoder is not None else
                           ("fitted per trajectory" if run.config.fit_initial else "given")}
    grid = spec.system.domain is not None
    out["relative_mse"] = per_horizon(relative_mse, obs_pred[:, :, obs], target[:, :, obs],
                                      whole=True)
    if grid:
        # Eq. 2.6 divides by the observation at each point; on a field near zero over part
        # of the grid that ratio explodes, so grids also get the field-norm form.
        out["relative_error_field"] = per_horizon(relative_error_field, obs_pred[:, :, obs],
                                                  target[:, :, obs], whole=True)
    syms = symmetries(run, model)
    if truth is not None and bool(torch.isfinite(truth[:, :, hid]).all()):
        ph, th = pred[:, :, hid], truth[:, :, hid]
        out["hidden_cosine"] = per_horizon(hidden_cosine, ph, th, whole=True)
        # The floor to beat: the true initial state held still (persistence). On a slow
        # flow it scores a high cosine for short horizons without learning anything.
        still = truth[:, :1].expand_as(truth)
        out["persistence"] = {"hidden_cosine": per_horizon(hidden_cosine, still[:, :, hid], th,
                                                           whole=True)}
        if grid:
            out["persistence"]["relative_error_field"] = per_horizon(
                relative_error_field, still[:, :, obs], truth[:, :, obs], whole=True)
        # The hidden states up to the symmetry's scale: ĥ ≈ c·h (least squares).
        scales = {}
        for j, name in zip(hid, spec.hidden_variables()):
            if spec.observe_matrix is not None:
                break  # no variable is measured itself: no scale symmetry is looked for
            a, b = pred[:, 1:, j].flatten(), truth[:, 1:, j].flatten()
            c = float((a * b).sum() / b.pow(2).sum().clamp_min(1e-30))
            resid = float((a - c * b).pow(2).mean() / b.pow(2).mean().clamp_min(1e-30))
            scales[name] = {"scale": c, "relative_mse_after_scaling": resid}
        out["hidden_scale"] = scales
        for sym in syms:
            name, a = next((n, a) for n, a in sym.hidden.items() if a != 0)
            c = scales[name]["scale"]
            if c <= 0:
                continue
            s = c ** (1 / float(a))              # ĥ = s^a·h: the gauge the model chose
            for row in rows:
                k = float(sym.params.get(row["name"], 0))
                if k == 0 or "true" not in row:
                    continue
                aligned = row["identified"] * s ** (-k)
                row["up_to_symmetry"] = aligned
                row["error_up_to_symmetry_pct"] = abs(aligned - row["true"]) / abs(
                    row["true"]) * 100
    annotate_parameters(rows, syms)
    if syms:
        out["symmetries"] = [s.describe() for s in syms]
        out["not_identifiable"] = non_identifiable(syms)
    errs = [r.get("error_pct", r.get("error_up_to_symmetry_pct")) for r in rows]
    errs = [e for e in errs if e is not None and math.isfinite(e)]
    if errs and syms:
        out["param_error_up_to_symmetry_pct"] = sum(errs) / len(errs)
    return out


@torch.no_grad()
def conjugacy(run, model, traj, truth: torch.Tensor, labelled: int = 10,
              device=None, frames: int | None = None) -> dict[str, Any]:
    """Thesis §2.5.4: the states a model learned from observations alone (Setting 1) may
    be any invertible transform of the true ones. Fit an affine map, shared by all grid
    points, from the learned state to the true full state on the first ``labelled``
    trajectories (the few labelled states), and report on the others how well the hidden
    variables are recovered up to that map: the cosine (eq. 2.7) before and after, and the
    relative squared error of the mapped hidden states.

    The map is fitted on the first ``frames`` frames of the labelled trajectories (default:
    the run's training horizon, ``horizon N`` of its spec; all frames without one): those
    are the states the model was trained to produce. Past the horizon a forecast drifts
    away from the truth, and a least-squares map fitted on drifted states shrinks towards
    the mean of the true states (on Navier–Stokes, T = 50 drifted frames took the mapped
    cosine at T = 5 from 0.73 down to 0.08).

    ``traj``: the split's :class:`~physml.data.Trajectories` (hidden channels masked);
    ``truth`` ``(B, T, C, …)``: its full states (noise-free where known)."""
    spec = run.spec
    names = spec.system.variables
    if not spec.hidden_variables():
        raise ValueError("--conjugacy: every variable of this run is observed; there are no "
                         "hidden states to map")
    hid = [names.index(v) for v in spec.hidden_variables()]
    if not bool(torch.isfinite(truth[:, :, hid]).all()):
        raise ValueError("--conjugacy needs the true hidden states, which these data do not "
                         "hold (measured data); use simulated data")
    B = truth.shape[0]
    if B < 2:
        raise ValueError("--conjugacy needs at least two trajectories (labelled and tested)")
    n = min(max(1, labelled), B - 1)
    from .report import forecast

    pred = forecast(model, traj.batch(), device)
    C = pred.shape[2]

    def points(x):  # (B, T, C, *grid) → (B·T·grid, C)
        return x.movedim(2, -1).reshape(-1, C).to(torch.float64)

    if frames is None:
        frames = getattr(getattr(run, "config", None), "horizon", None)
    fit = slice(None) if not frames else slice(0, max(2, int(frames)))
    X = points(pred[:n, fit])
    Y = points(truth[:n, fit])
    A = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], dim=1)
    # Least squares with a little ridge (a learned channel may be constant).
    reg = 1e-8 * A.pow(2).sum(dim=0).max() * torch.eye(C + 1, dtype=A.dtype)
    W = torch.linalg.solve(A.T @ A + reg, A.T @ Y)
    rest = pred[n:]
    flat = points(rest)
    mapped = (torch.cat([flat, torch.ones(len(flat), 1, dtype=flat.dtype)], 1) @ W)
    mapped = mapped.reshape(*rest.movedim(2, -1).shape).movedim(-1, 2).to(pred.dtype)
    th = truth[n:, :, hid]
    err = float((mapped[:, :, hid] - th).pow(2).mean() / th.pow(2).mean().clamp_min(1e-30))
    before = per_horizon(hidden_cosine, rest[:, :, hid], th, whole=True)
    after = per_horizon(hidden_cosine, mapped[:, :, hid], th, whole=True)
    names = spec.system.variables
    return {"labelled_trajectories": n, "tested_trajectories": B - n,
            "fitted_frames": pred[:n, fit].shape[1],
            "hidden": [names[i] for i in hid],
            "cosine_before": before, "cosine_after": after,
            "hidden_relative_mse_after": err,
            "map": {names[j]: {**{names[i]: float(W[i, j]) for i in range(C)},
                               "1": float(W[C, j])} for j in hid}}
