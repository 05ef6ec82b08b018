"""Training options: one dataclass, and the table the language checks ``train`` lines
against (:data:`TRAIN_OPTIONS`, derived from the dataclass so the two cannot drift)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, get_type_hints

from ..objectives.losses import LOSSES


class TrainOptionError(ValueError):
    """A training option's value :class:`TrainConfig` cannot take; ``option`` names it, so
    that the error can point at it on the ``train`` line."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


@dataclass
class TrainConfig:
    """Resolved training options (the spec's ``train`` line, then command-line overrides).

    Model selection and the end of a run:

    - ``val_fraction``: with no ``val`` split in the data, this share of the training
      trajectories is held out for validation (never the test split);
    - ``plateau``/``lr_decay``: after ``plateau`` validations without improvement the run
      goes back to its best state and multiplies the learning rates by ``lr_decay``
      (0 disables), so a late jump away from a good solution does not end the run;
      ``plateau_restore false`` only decays the rates and goes on from where the run is
      (PyTorch's ReduceLROnPlateau): when the validation error must rise before it falls
      further (LEADS on LV while teacher forcing fades), going back every ``plateau``
      checks would hold the run at its first best for good;
    - ``patience``: stop after that many validations without improvement;
    - ``checkpoint_every``: seconds between writes of ``last.pt`` (and at every end).
    """

    method: str = "aphynity"
    method_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 1000
    steps: int | None = None
    batch: int = 32
    lr: float = 1e-3
    lr_phys: float | None = None
    tau1: float | None = None
    solver: str = "rk4"
    step: float | None = None
    rtol: float = 1e-6
    atol: float = 1e-7
    adjoint: bool = False
    seed: int = 0
    patience: int | None = None
    plateau: int = 10
    lr_decay: float = 0.5
    #: ``lr_schedule cosine``: the rates follow a half cosine from their value down to
    #: ``lr_final`` × it over the budget (steps, epochs or minutes, whichever ends first)
    lr_schedule: str | None = None
    lr_final: float = 0.01
    plateau_restore: bool = True
    val_every: int = 10
    val_fraction: float = 0.2
    horizon: int | None = None
    #: ``windows all``: train (and validate) on every window of ``horizon`` frames of each
    #: trajectory, not only on its first frames (thesis §2.7.3); ``first``: the default
    windows: str | None = None
    curriculum: str | None = None
    fit_initial: bool = False
    recompute: bool = False
    loss: str = "mse"
    minutes: float | None = None
    grad_clip: float | None = None
    weight_decay: float = 0.0
    checkpoint_every: float = 30.0
    device: str = "auto"
    threads: int | None = None
    compile: bool = False
    #: solver steps per interval between observations (thesis §2.5.2: 3 Euler steps)
    substeps: int = 1
    #: exponential scheduled sampling: observed channels teacher-forced with probability
    #: k^i at training pass i (thesis §2.5.2, §2.7: k = 0.9999)
    scheduled_sampling: float | None = None
    #: teacher forcing (thesis §3.4.4): at step i each frame restarts the integration from
    #: the data with probability ρ^(i/10); None: never
    teacher_forcing: float | None = None

    def __post_init__(self) -> None:
        # Checked here, so that a resumed run's overrides are held to the same rules.
        bad = TrainOptionError
        if self.loss not in LOSSES:
            raise bad("loss", f"training option `loss {self.loss}`: choices are "
                      f"{', '.join(LOSSES)}")
        if self.curriculum not in (None, "linear"):
            raise bad("curriculum", f"training option `curriculum {self.curriculum}`: the "
                      "choice is linear")
        if self.lr_schedule not in (None, "cosine", "constant"):
            raise bad("lr_schedule", f"training option `lr_schedule {self.lr_schedule}`: "
                      "choices are cosine, constant")
        if not 0.0 <= self.lr_final <= 1.0:
            raise bad("lr_final", "training option `lr_final` is the last rate of "
                      "`lr_schedule` as a fraction of the first: it must lie in [0, 1], "
                      "e.g. 0.01")
        if self.windows not in (None, "first", "all"):
            raise bad("windows", f"training option `windows {self.windows}`: choices are "
                      "all (every window of `horizon` frames), first (each trajectory's "
                      "first frames)")
        if self.windows == "all" and self.horizon is None:
            raise bad("windows", "training option `windows all` cuts the trajectories into "
                      "windows of `horizon` frames: give the horizon too (e.g. `horizon 6`)")
        if self.windows == "all" and self.fit_initial:
            raise bad("windows", "training option `windows all` starts forecasts at every "
                      "frame, where `fit_initial` fits one initial state per trajectory: "
                      "drop one of them (an `encoder` estimates each window's state)")
        if not 0.0 < self.val_fraction < 1.0:
            raise bad("val_fraction", "training option `val_fraction` must lie in (0, 1)")
        if not 0.0 <= self.lr_decay < 1.0:
            raise bad("lr_decay", "training option `lr_decay` must lie in [0, 1) (0: no decay)")
        if self.scheduled_sampling is not None and not 0.0 <= self.scheduled_sampling < 1.0:
            raise bad("scheduled_sampling", "training option `scheduled_sampling` must lie "
                      "in [0, 1) (the decay k of the teacher-forcing probability k^i; e.g. "
                      "0.9999)")
        for name in ("batch", "epochs", "val_every", "plateau", "substeps"):
            if getattr(self, name) < 1:
                raise bad(name, f"training option `{name}` must be at least 1")
        if self.teacher_forcing is not None and not 0.0 < self.teacher_forcing <= 1.0:
            raise bad("teacher_forcing", "training option `teacher_forcing` is the decay ρ of "
                      "the restart probability ρ^(step/10): it must lie in (0, 1], e.g. 0.99")
        if self.tau1 is not None:  # the thesis calls Adam's learning rate τ₁
            self.lr = self.tau1

    @classmethod
    def from_options(cls, method: str, method_options: dict[str, Any],
                     options: dict[str, Any], **overrides: Any) -> "TrainConfig":
        values: dict[str, Any] = {"method": method, "method_options": dict(method_options),
                                  **options}
        for key, value in overrides.items():
            if value is not None:
                values[key] = value
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown training options {sorted(unknown)}")
        return cls(**values)


def _option_types() -> dict[str, type]:
    hints = get_type_hints(TrainConfig)
    out: dict[str, type] = {}
    for f in fields(TrainConfig):
        if f.name in ("method", "method_options"):
            continue
        hint = hints[f.name]
        args = [a for a in getattr(hint, "__args__", (hint,)) if a is not type(None)]
        out[f.name] = args[0]
    return out


#: ``train method(...) KEY VALUE …``: every option and its type.
TRAIN_OPTIONS: dict[str, type] = _option_types()
