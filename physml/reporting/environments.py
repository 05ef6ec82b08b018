"""Reports of models over several environments (LEADS, thesis §3.4).

The thesis reports, per method, the train and test MSE over the environments as mean ±
standard deviation (Tables 3.13–3.15); :func:`per_environment_errors` gives each
environment's MSE and those two figures. :func:`environment_norms` says how far each
environment departs from the shared model (``‖G_e‖²`` on that environment's states);
:func:`environment_parameters` is the table environment × parameter, identified against
the values the data were simulated with.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ..models.environments import StackedNetworks


def per_environment_errors(pred: torch.Tensor, target: torch.Tensor, env: torch.Tensor,
                           names: tuple[str, ...]) -> dict[str, Any]:
    """MSE of each environment's trajectories and their mean ± std over environments
    (the sample standard deviation, as the authors' reports)."""
    per_traj = (pred - target).pow(2).flatten(1).mean(dim=1)
    rows, values = [], []
    for e, name in enumerate(names):
        sel = env == e
        if bool(sel.any()):
            mse = float(per_traj[sel].mean())
            rows.append({"environment": name, "mse": mse, "trajectories": int(sel.sum())})
            values.append(mse)
    mean = sum(values) / len(values) if values else math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) \
        if len(values) > 1 else 0.0
    return {"per_environment": rows, "mse_env_mean": mean, "mse_env_std": std}


@torch.no_grad()
def environment_norms(field, states: torch.Tensor, env: torch.Tensor, relative: bool
                      ) -> list[dict[str, Any]]:
    """``‖G_e‖²`` of each environment on its states ``(M, *state)`` (``env`` ``(M,)``)."""
    if not isinstance(field.per_env, StackedNetworks):
        return []
    norms = field.env_norms(states, env, relative)
    return [{"environment": name, "g_norm": float(norms[e])}
            for e, name in enumerate(field.env_names)]


def environment_parameters(field, dataset) -> list[dict[str, Any]]:
    """One row per environment: each per-environment parameter identified, with its true
    value and error (|p̂ − p|/|p|, %) when the data were simulated."""
    if field.env_params is None:
        return []
    envs = dataset.env_params or []
    simulated = len(envs) == field.n_envs and not dataset.meta.get("source")
    rows = []
    values = {k: v.detach() for k, v in field.env_params.values().items()}
    for e, name in enumerate(field.env_names):
        row: dict[str, Any] = {"environment": name}
        for p, v in values.items():
            row[p] = float(v[e])
            if simulated and p in envs[e]:
                t = float(envs[e][p])
                row[f"{p}_true"] = t
                row[f"{p}_error_pct"] = abs(float(v[e]) - t) / abs(t) * 100 if t else \
                    abs(float(v[e]) - t) * 100
        rows.append(row)
    return rows


def shared_truth(dataset, names) -> dict[str, float]:
    """True values of shared parameters: those every simulated environment agrees on."""
    envs = dataset.env_params or []
    if not envs or dataset.meta.get("source"):
        return {}
    out = {}
    for n in names:
        vals = {float(e[n]) for e in envs if n in e}
        if len(vals) == 1 and all(n in e for e in envs):
            out[n] = vals.pop()
    return out
