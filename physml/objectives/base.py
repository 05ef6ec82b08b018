"""The objective interface and the registry of training methods."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from ..data.batches import Batch
from .losses import LOSSES, aggregate_errors, per_trajectory_errors


class Objective(ABC):
    """What a training method minimises.

    ``loss(rollout, batch)`` runs the rollout on the batch and returns the scalar to
    back-propagate with its named terms (``traj`` always). The trainer takes ``niter``
    optimiser steps per batch and then calls ``after_batch`` with the batch's trajectory
    loss (averaged over processes under DDP, so every rank updates its state alike).
    ``state_dict`` may hold tensors; it is checkpointed with the model.

    Class attributes say what the method needs from the model: ``uses_prior`` (the
    ``prior:`` block), ``uses_network`` (the ``augment`` network), ``regulariser`` (a norm
    term the rollout must compute: ``None``, ``"relative"`` or ``"absolute"``).
    """

    name: ClassVar[str] = "objective"
    #: keyword options of ``train NAME(...)``
    options: ClassVar[tuple[str, ...]] = ()
    uses_prior: ClassVar[bool] = True
    uses_network: ClassVar[bool] = True
    #: a model over several environments (thesis §3.4): which structure of
    #: :func:`~physml.models.environments.build_multi_env_model` (None: one model)
    structure: ClassVar[str | None] = None
    niter: int = 1
    #: the fraction of the training budget spent (steps, epochs or minutes, whichever
    #: ends first); the trainer sets it before each ``after_batch``
    progress: float = 0.0

    def __init__(self, loss: str = "mse"):
        if loss not in LOSSES:
            raise ValueError(f"training option `loss {loss}`: choices are {', '.join(LOSSES)}")
        self.loss_kind = loss

    @property
    def regulariser(self) -> str | None:
        return None

    def trajectory_loss(self, pred: torch.Tensor, batch: Batch) -> torch.Tensor:
        """``L_traj`` of the batch: per-trajectory errors on the observed entries,
        aggregated by the ``loss`` option."""
        return aggregate_errors(per_trajectory_errors(pred, batch.target, batch.mask),
                                self.loss_kind)

    @staticmethod
    def constrained(loss: torch.Tensor, out, terms: dict[str, torch.Tensor]
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``loss`` plus the rollout's soft-constraint penalty (``constraint … where …``,
        thesis eq. 2.13), when the spec has one; ``out`` is the rollout's output."""
        penalty = out.terms.get("constraint")
        if penalty is None:
            return loss, terms
        return loss + penalty, {**terms, "constraint": penalty}

    @classmethod
    @abstractmethod
    def create(cls, method: str, options: dict[str, Any], is_grid: bool,
               loss: str) -> "Objective":
        """Build from ``train METHOD(options)`` (options already checked by name)."""

    @abstractmethod
    def loss(self, rollout, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The scalar to minimise and the named terms to log (``traj`` among them)."""

    def after_batch(self, traj_loss: float) -> None:
        """Called once per batch after the ``niter`` optimiser steps."""

    def prefers(self, val: float, best: float) -> bool:
        """Whether a state validating at ``val`` replaces the best one (validation error
        ``best``) as the run's result; the trainer also goes back to the best state on a
        plateau of states not preferred."""
        return val < best

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        """What to print next to the loss (``lambda`` for APHYNITY)."""
        return {}


#: ``train NAME(...)`` → the objective class; filled by each method's module.
OBJECTIVES: dict[str, type[Objective]] = {}


def register_objective(*names: str):
    """Class decorator: make an objective available as ``train NAME(...)``."""
    def wrap(cls):
        for n in names:
            OBJECTIVES[n] = cls
        return cls
    return wrap


def build_objective(method: str, options: dict[str, Any], is_grid: bool,
                    loss: str = "mse") -> Objective:
    """The objective of ``train METHOD(options)``."""
    try:
        cls = OBJECTIVES[method]
    except KeyError:
        raise ValueError(f"training method '{method}' is not available; choices: "
                         f"{', '.join(OBJECTIVES)}") from None
    unknown = set(options) - set(cls.options)
    if unknown:
        raise ValueError(f"{method}: unknown options {sorted(unknown)}; valid: "
                         f"{', '.join(cls.options) or 'none'}")
    return cls.create(method, dict(options), is_grid=is_grid, loss=loss)
