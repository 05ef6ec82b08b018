"""From a checked spec to the objects training takes: rollout module and objective.

Everything here runs before any data are simulated or any run directory is created, so a
spec that cannot train fails in a second, with nothing left behind.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import OptionError
from ..models import HybridModel, Rollout, SolverConfig, build_model, build_multi_env_model
from ..models.nets import NetworkOptionError
from ..objectives import OBJECTIVES, Objective, build_objective
from ..symbolic.spec import Spec
from ..training.config import TrainConfig, TrainOptionError
from .data import check_data_file


def _train_error(spec: Spec, message: str, hint: str | None = None) -> OptionError:
    pos = spec.train.pos if spec.train is not None else None
    if spec.train is not None and spec.train.method.pos is not None:
        pos = spec.train.method.pos
    return OptionError(message, pos, spec.text, hint=hint,
                       length=len(spec.train.method.name) if spec.train else 1)


def config_for(spec: Spec, **overrides: Any) -> TrainConfig:
    """The resolved training options of a spec (its ``train`` line, then overrides)."""
    method, method_options, options = "aphynity", {}, {}
    if spec.train is not None:
        method = spec.train.method.name
        method_options = spec.train.method.options()
        options = spec.train.option_dict()
    try:
        return TrainConfig.from_options(method, method_options, options, **overrides)
    except ValueError as exc:
        if spec.train is None:
            raise
        # located at the option's name when the train line writes it (not an override)
        at = dict(spec.train.option_pos).get(exc.option) \
            if isinstance(exc, TrainOptionError) else None
        if at is not None:
            raise OptionError(str(exc), at, spec.text, length=len(exc.option)) from None
        raise OptionError(str(exc), spec.train.pos, spec.text, length=5) from None


def build_field(spec: Spec, method: str) -> HybridModel:
    """The vector field (prior and/or network) a method trains."""
    cls = OBJECTIVES[method]
    if cls.structure is not None:
        return build_multi_env_model(spec, cls.structure)
    if spec.prior is not None and spec.prior.per_environment:
        name, pos = spec.prior.per_environment_pos[0]
        raise OptionError(f"'{name}' is learned per environment, but `train {method}` learns "
                          "one model for all environments", pos, spec.text, length=len(name),
                          hint="train leads, one_per_env, leads_no_min or ft_node, or drop "
                          "`per environment`")
    if spec.per_environment is not None:
        pos = spec.per_environment.pos
        raise OptionError(f"`per_environment {spec.per_environment.name}` declares networks per "
                          f"environment, but `train {method}` learns one model for all "
                          "environments", pos, spec.text, length=len(spec.per_environment.name),
                          hint="train leads (or a baseline: leads_no_min, one_per_env, "
                          "one_for_all, ft_node, gbml), or drop the line")
    return build_model(spec, use_prior=cls.uses_prior, use_network=cls.uses_network)


def build_rollout(spec: Spec, cfg: TrainConfig, n_initial: int = 0) -> Rollout:
    from ..solve import get_solver

    solver = get_solver(cfg.solver)
    if cfg.adjoint and solver.torchdiffeq is None:
        # Refused here, not at the first step: `physml check` must refuse it too.
        raise ValueError(f"`solver {cfg.solver}` has no adjoint (torchdiffeq has no such "
                         "method); use `recompute true` to save memory instead, or "
                         "`solver rk4_38` with `adjoint true`")
    field = build_field(spec, cfg.method)
    solver = SolverConfig(cfg.solver, cfg.step, cfg.rtol, cfg.atol, cfg.adjoint, cfg.compile,
                          cfg.recompute)
    rollout = Rollout(field, solver, n_initial=n_initial if cfg.fit_initial else 0,
                      state_shape=spec.system.state_shape())
    if spec.observe or spec.encoder is not None or cfg.substeps > 1 or \
            cfg.scheduled_sampling is not None:
        from .partial import attach_observation

        attach_observation(rollout, spec, cfg)
    soft = [c for c in spec.constraints if not c.hard or c.penalised]
    hard = [c for c in spec.constraints if c.hard]
    if soft:
        from ..models.constraints import Constraints

        rollout.constraints = Constraints(spec.system, soft)
    if hard:
        from ..models.constraints import HardConstraints

        rollout.hard = HardConstraints(spec.system, hard)
    return rollout


def build_objective_for(spec: Spec, cfg: TrainConfig) -> Objective:
    return build_objective(cfg.method, cfg.method_options, spec.system.is_grid, loss=cfg.loss)


@dataclass
class Experiment:
    """A spec made into the objects training takes (before any data exist)."""

    spec: Spec
    config: TrainConfig
    rollout: Rollout
    objective: Objective


def build(spec: Spec, cfg: TrainConfig | None = None, n_initial: int = 0,
          **overrides: Any) -> Experiment:
    """Build and validate the model and objective of a spec; a located error if the spec
    asks for something the method cannot do (no prior for ``physics``, no network …)."""
    cfg = cfg if cfg is not None else config_for(spec, **overrides)
    if spec.encoder is not None:
        from .partial import check_encoder

        check_encoder(spec)
    torch.manual_seed(cfg.seed)
    try:
        objective = build_objective_for(spec, cfg)
        rollout = build_rollout(spec, cfg, n_initial)
    except NetworkOptionError as exc:
        if exc.call.pos is None:
            raise _train_error(spec, f"{cfg.method}: {exc}") from None
        raise OptionError(str(exc), exc.call.pos, spec.text, length=len(exc.call.name)) \
            from None
    except ValueError as exc:
        raise _train_error(spec, f"{cfg.method}: {exc}") from None
    if spec.train is not None and "device" in spec.train.option_dict():
        # A device the spec names must exist here: `check` refuses what `train` would.
        from ..training.trainer import resolve_device

        try:
            resolve_device(cfg.device)
        except ValueError as exc:
            raise _train_error(spec, str(exc)) from None
    return Experiment(spec, cfg, rollout, objective)


def check(spec: Spec) -> TrainConfig | None:
    """Everything ``train`` would refuse about a spec, before data or a run exist: the
    options resolve, and the model and objective build. Returns the resolved options
    (None for a system file without a ``train`` line)."""
    check_data_file(spec)
    if spec.train is None and spec.prior is None and spec.augment is None:
        return None
    exp = build(spec)
    return exp.config

