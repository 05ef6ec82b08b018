"""The training loop: trajectories through a differentiable solver, any objective.

``train(spec)`` builds the model of the spec (prior + augmentation), integrates it from
the first frame of each training trajectory with ``torchdiffeq.odeint`` on the observation
grid, compares with the data, and lets the objective (neural, physics, augmented,
APHYNITY) turn that into an update. It writes a run directory (see :class:`Run`):

- atomic checkpoints ``checkpoints/last.pt`` (everything needed to resume bit-for-bit on
  CPU: model, optimiser, objective state, RNG state, position in the epoch) and
  ``checkpoints/best.pt`` (the model with the best validation error);
- ``metrics.jsonl``, one line per batch, with every loss term, λ and each learned
  physical parameter.

A NaN/inf in the loss or gradients restores the last good state and lowers the learning
rate once (×0.1); a second one stops with :class:`TrainingDiverged` and the last good
checkpoint kept. Ctrl-C finishes the current step, saves and exits cleanly.
"""
from __future__ import annotations

import copy
import json
import math
import signal
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch
import torch.utils.checkpoint
from torchdiffeq import odeint, odeint_adjoint

from ..models.hybrid import HybridModel, build_model
from ..objectives import Objective, build_objective
from ..symbolic.spec import Spec
from .checkpoint import atomic_write_text, save_checkpoint


class TrainingDiverged(RuntimeError):
    """Training produced NaN/inf twice; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Resolved training options (spec's ``train`` line, then command-line overrides)."""

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
    val_every: int = 10
    horizon: int | None = None
    curriculum: str | None = None
    teacher_forcing: float | None = None
    fit_initial: bool = False
    recompute: bool = False
    loss: str = "mse"
    minutes: float | None = None
    grad_clip: float | None = None
    weight_decay: float = 0.0
    device: str = "auto"
    threads: int | None = None
    compile: bool = False

    def __post_init__(self) -> None:
        # Checked here, so that a resumed run's overrides are held to the same rules.
        if self.teacher_forcing is not None:
            raise ValueError("training option `teacher_forcing` is not available in this "
                             "version (it comes with LEADS training); remove it from the "
                             "`train` line")
        if self.loss not in LOSSES:
            raise ValueError(f"training option `loss {self.loss}`: choices are "
                             f"{', '.join(LOSSES)}")

    @classmethod
    def from_spec(cls, spec: Spec, **overrides: Any) -> "TrainConfig":
        values: dict[str, Any] = {}
        if spec.train is not None:
            values["method"] = spec.train.method.name
            values["method_options"] = spec.train.method.options()
            values.update(spec.train.option_dict())
        for key, value in overrides.items():
            if value is not None:
                values[key] = value
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown training options {sorted(unknown)}")
        cfg = cls(**values)
        if cfg.tau1 is not None:  # the thesis calls Adam's learning rate τ₁
            cfg.lr = cfg.tau1
        return cfg

    @property
    def learning_rate(self) -> float:
        return self.lr


LOSSES = ("mse", "robust")


def trajectory_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """``L_traj`` of a batch of trajectories ``(B, T, *state)``.

    ``mse``: the mean squared error (thesis Eq. 3.5). ``robust``: a Cauchy (Lorentzian)
    M-estimator over trajectories, ``mean_i s²·log(1 + e_i/s²)`` with ``e_i`` the MSE of
    trajectory ``i`` and ``s² = 10·median_i e_i`` (not differentiated). It equals the MSE
    where all trajectories fit alike, and caps the pull of one that no model of the family
    can follow from its noisy first frame (a pendulum that crosses the separatrix in the
    data but not in the forecast): its gradient weight is ``1/(1 + e_i/s²)``.
    """
    err = (pred - target).pow(2)
    if kind == "mse":
        return err.mean()
    return aggregate_errors(err.flatten(1).mean(dim=1), kind)


def aggregate_errors(per: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Aggregate per-trajectory MSEs ``e_i`` as :func:`trajectory_loss` does."""
    if kind == "mse" or per.numel() < 3:
        return per.mean()
    s2 = (10.0 * per.detach().median()).clamp_min(torch.finfo(per.dtype).tiny)
    return (s2 * torch.log1p(per / s2)).mean()


def resolve_device(name: str | None) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available on this machine")
    return dev


def integrate(model: torch.nn.Module, x0: torch.Tensor, t: torch.Tensor, cfg: TrainConfig
              ) -> torch.Tensor:
    """Solve from ``x0`` (B, *state) on the times ``t``; returns (B, T, *state).

    With ``cfg.compile`` and a fixed-grid method on the observation grid, the steps are
    taken by :func:`fixed_grid` with one ``torch.compile``-d step (the same Butcher tableau
    as torchdiffeq's, so results agree to rounding); otherwise ``torchdiffeq.odeint``.
    """
    if (cfg.compile or cfg.recompute) and cfg.solver in FIXED_STEPS and not cfg.adjoint:
        return fixed_grid(model, x0, t, cfg.solver, compiled=cfg.compile, step=cfg.step,
                          recompute=cfg.recompute)
    options = {"step_size": cfg.step} if cfg.step else None
    solve = odeint_adjoint if cfg.adjoint else odeint
    kwargs: dict[str, Any] = {"method": cfg.solver}
    if options:
        kwargs["options"] = options
    if cfg.solver in ("dopri5", "dopri8", "bosh3", "adaptive_heun", "fehlberg2"):
        kwargs.update(rtol=cfg.rtol, atol=cfg.atol)
    if cfg.adjoint:
        kwargs["adjoint_params"] = tuple(model.parameters())
    out = solve(model, x0, t, **kwargs)
    return out.movedim(0, 1)


def _rk4_38(f, t, h, y):
    """One step of the 3/8-rule RK4 (torchdiffeq's ``rk4``)."""
    k1 = f(t, y)
    k2 = f(t + h / 3, y + h * k1 / 3)
    k3 = f(t + 2 * h / 3, y + h * (k2 - k1 / 3))
    k4 = f(t + h, y + h * (k1 - k2 + k3))
    return y + (k1 + 3 * (k2 + k3) + k4) * (h / 8)


def _midpoint(f, t, h, y):
    return y + h * f(t + h / 2, y + h / 2 * f(t, y))


def _euler(f, t, h, y):
    return y + h * f(t, y)


FIXED_STEPS = {"rk4": _rk4_38, "midpoint": _midpoint, "euler": _euler}


def fixed_grid(model: torch.nn.Module, x0: torch.Tensor, t: torch.Tensor, method: str,
               compiled: bool = False, step: float | None = None, recompute: bool = False
               ) -> torch.Tensor:
    """Fixed-step integration on the grid ``t``: one step per interval, or as many equal
    steps of at most ``step`` as each interval needs.

    ``recompute`` (gradient checkpointing): each step keeps only its input state for the
    backward pass and runs again there, so memory holds the states along the trajectory
    instead of every network activation of every stage (the damped wave at batch 64 needs
    ~20 GB without it, a few hundred MB with it), for about one more forward pass of cost.

    The step function is compiled once per model with ``torch.compile``: on small batches
    the cost of training is the launch overhead of many tiny operations, which compiling
    the step fuses away (thesis-sized pendulum: ~1.9× faster per Adam step on CPU).
    """
    stepper = FIXED_STEPS[method]
    if compiled:
        cache = model.__dict__.setdefault("_physml_compiled_steps", {})
        fn = cache.get(method)
        if fn is None:
            # Variants: first step (state without grad) vs later ones, training vs
            # validation, batch vs evaluation chunk sizes; allow them all to stay compiled.
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
            fn = torch.compile(lambda tt, h, y: stepper(model, tt, h, y), dynamic=False)
            cache[method] = fn
    else:
        fn = lambda tt, h, y: stepper(model, tt, h, y)  # noqa: E731
    ys = [x0]
    y = x0
    for i in range(t.shape[0] - 1):
        interval = t[i + 1] - t[i]
        n = max(1, math.ceil(float(interval) / step - 1e-9)) if step else 1
        h = interval / n
        for j in range(n):
            if recompute and torch.is_grad_enabled():
                y = torch.utils.checkpoint.checkpoint(fn, t[i] + j * h, h, y,
                                                      use_reentrant=False)
            else:
                y = fn(t[i] + j * h, h, y)
        ys.append(y)
    return torch.stack(ys, dim=1)


def _flat_split(tensor: torch.Tensor) -> torch.Tensor:
    """(E, N, T, *state) → (E·N, T, *state)."""
    return tensor.flatten(0, 1)


class _StopFlag:
    """First Ctrl-C asks the loop to stop after the current step; the second one kills."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not in the main thread
            self._previous = None
        return self

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


@dataclass
class Progress:
    """What the loop reports to a progress callback after every batch."""

    step: int
    epoch: int
    epochs: int
    loss: float
    traj: float
    lam: float | None
    norm: float | None
    params: dict[str, float]
    truth: dict[str, float]
    val: float | None
    best_val: float | None
    elapsed: float
    eta: float | None
    message: str | None = None


class Trainer:
    """One training run. Use :func:`physml.train` rather than this class directly."""

    def __init__(self, spec: Spec, dataset, cfg: TrainConfig, run_dir: Path,
                 callback: Callable[[Progress], None] | None = None):
        self.spec = spec
        self.cfg = cfg
        self.dir = Path(run_dir)
        self.callback = callback
        self.device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        self.model: HybridModel = build_model(spec, cfg.method).to(self.device)
        self.objective: Objective = build_objective(cfg.method, cfg.method_options,
                                                    spec.system.is_grid)
        phys = [p for p in self.model.physical_raw_parameters() if p.requires_grad]
        phys_ids = {id(p) for p in phys}
        nets = [p for p in self.model.parameters() if p.requires_grad and id(p) not in phys_ids]
        # A model with nothing to learn (the "True ODE/PDE" rows of Table 3.4) is only
        # evaluated: fit() then saves it as it is.
        self.nothing_to_learn = not phys and not nets
        # Physical parameters may take their own step size (`lr_phys`); they are few, and
        # their unconstrained coordinates are O(1), unlike network weights.
        groups = [{"params": g, "lr": lr, "weight_decay": wd} for g, lr, wd in (
            (nets, cfg.lr, cfg.weight_decay), (phys, cfg.lr_phys or cfg.lr, 0.0)) if g]
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.dataset = dataset
        self.times = dataset.times.to(self.device, torch.get_default_dtype())
        self.times = self.times - self.times[dataset.history] if dataset.history else self.times
        self.train_data = self._frames(_flat_split(dataset.splits["train"]))
        if self.train_data.shape[1] > 1:  # a resumed run loads its own scales afterwards
            self.model.fit_scales(self.train_data, float(self.times[1] - self.times[0]))
        # `fit_initial`: each training trajectory starts from its observed first frame plus
        # a learned offset (initial-state estimation, as in output-error system
        # identification). With noisy observations a trajectory close to a separatrix (the
        # pendulum that barely goes over the top) cannot be fitted from its noisy first
        # frame even by the true model; its gradient then pulls every parameter off. The
        # offsets are held to the data by the t = 0 term of the trajectory loss. Forecasts
        # (validation, test) still start from the observed frame.
        self.x0_offset: torch.Tensor | None = None
        if cfg.fit_initial and not self.nothing_to_learn:
            self.x0_offset = torch.zeros_like(self.train_data[:, 0]).requires_grad_(True)
            groups.append({"params": [self.x0_offset], "lr": cfg.lr, "weight_decay": 0.0})
        self.optimizer = torch.optim.Adam(groups if groups else
                                          [{"params": [torch.zeros(0, requires_grad=True)]}])
        val_name = "val" if "val" in dataset.splits and dataset.splits["val"].numel() else "test"
        self.val_data = self._frames(_flat_split(dataset.splits[val_name])) \
            if val_name in dataset.splits else None
        self.truth = self._true_values()
        # A prediction error 10⁴× that of predicting zero means the solution blew up (a
        # learned term made the fixed-step solver unstable, which grows exponentially):
        # handled like NaN/inf. Merely wrong forecasts (a pendulum that goes over the top
        # instead of swinging back) stay far below this.
        self.blowup = 1e4 * float(self.train_data.pow(2).mean()) + 1e-12
        self.step = 0
        self.epoch = 0
        self.batch_index = 0
        self.perm: torch.Tensor | None = None
        self.best_val = math.inf
        self.lr_lowered = False
        self.elapsed = 0.0
        self.stopped_early = False
        self.bad_validations = 0
        self._good: dict[str, Any] | None = None

    # -- data ---------------------------------------------------------------------------
    def _frames(self, data: torch.Tensor) -> torch.Tensor:
        h = self.dataset.history
        data = data[:, h:] if h else data
        return data.to(self.device, torch.get_default_dtype())

    def _true_values(self) -> dict[str, float]:
        envs = getattr(self.dataset, "env_params", None) or []
        if len(envs) != 1:
            return {}
        learned = self.model.physical_parameters()
        return {k: float(v) for k, v in envs[0].items() if k in learned}

    def horizon(self) -> int:
        full = self.train_data.shape[1]
        h = min(self.cfg.horizon or full, full)
        if self.cfg.curriculum == "linear":
            # Grow the horizon from 2 frames to the full one over the first half of the
            # epochs (by epochs, not time, so a resumed run is exact): short horizons first
            # keep trajectories near a separatrix from dominating early.
            frac = self.epoch / max(1, self.cfg.epochs // 2)
            h = max(2, int(round(2 + min(1.0, frac) * (h - 2))))
        return h

    # -- state --------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "objective": self.objective.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "step": self.step, "epoch": self.epoch, "batch_index": self.batch_index,
            "perm": self.perm if self.perm is not None else torch.empty(0, dtype=torch.long),
            "best_val": self.best_val, "lr_lowered": self.lr_lowered,
            "elapsed": self.elapsed, "bad_validations": self.bad_validations,
            "x0_offset": (self.x0_offset.detach().clone() if self.x0_offset is not None
                          else torch.empty(0)),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.objective.load_state_dict(state["objective"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batch_index = int(state["batch_index"])
        self.perm = state["perm"] if state["perm"].numel() else None
        self.best_val = float(state["best_val"])
        self.lr_lowered = bool(state["lr_lowered"])
        self.elapsed = float(state["elapsed"])
        self.bad_validations = int(state["bad_validations"])
        if self.x0_offset is not None and state.get("x0_offset", torch.empty(0)).numel():
            with torch.no_grad():
                self.x0_offset.copy_(state["x0_offset"])

    def save(self, name: str = "last") -> Path:
        path = self.dir / "checkpoints" / f"{name}.pt"
        save_checkpoint(path, self.state())
        return path

    def _copy_state(self) -> dict[str, Any]:
        return copy.deepcopy({"model": self.model.state_dict(),
                              "optimizer": self.optimizer.state_dict(),
                              "objective": self.objective.state_dict(),
                              "x0_offset": self.x0_offset.detach() if self.x0_offset is not None
                              else None})

    def _snapshot(self) -> None:
        self._good = self._copy_state()

    def _restore_good(self) -> None:
        if self._good is None:
            return
        self.model.load_state_dict(self._good["model"])
        self.optimizer.load_state_dict(self._good["optimizer"])
        self.objective.load_state_dict(self._good["objective"])
        if self.x0_offset is not None:
            with torch.no_grad():
                self.x0_offset.copy_(self._good["x0_offset"])

    # -- evaluation ---------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> float:
        if self.val_data is None:
            return math.nan
        self.model.eval()
        per = []
        for chunk in self.val_data.split(max(1, self.cfg.batch * 4)):
            pred = integrate(self.model, chunk[:, 0], self.times[: chunk.shape[1]], self.cfg)
            per.append((pred - chunk).pow(2).flatten(1).mean(dim=1))
        self.model.train()
        # Checkpoints are selected by the training loss's own aggregate over trajectories
        # (with equal-length trajectories, the mean of per-trajectory MSEs is the MSE).
        return float(aggregate_errors(torch.cat(per), self.cfg.loss))

    # -- the loop -----------------------------------------------------------------------
    def _batch_step(self, batch: torch.Tensor, log, idx: torch.Tensor | None = None
                    ) -> tuple[float, dict[str, float]] | None:
        """``niter`` optimiser steps on one batch (rows ``idx`` of the training set);
        None if it hit NaN/inf."""
        h = batch.shape[1]
        t = self.times[:h]
        x0 = batch[:, 0]
        terms: dict[str, torch.Tensor] = {}
        traj_value = math.nan
        candidate = self._copy_state()
        for it in range(self.objective.niter):
            if self.x0_offset is not None and idx is not None:
                x0 = batch[:, 0] + self.x0_offset[idx]
            pred = integrate(self.model, x0, t, self.cfg)
            traj = trajectory_loss(pred, batch, self.cfg.loss)
            loss, terms = self.objective.loss(self.model, traj, batch)
            self.optimizer.zero_grad(set_to_none=True)
            if not torch.isfinite(loss) or float(traj.detach()) > self.blowup:
                return None
            if it == 0:
                # The state this batch started from gave a finite loss: it is a good state
                # to come back to if a later update makes things blow up.
                self._good = candidate
            loss.backward()
            grads = [p.grad for g in self.optimizer.param_groups for p in g["params"]
                     if p.grad is not None]
            if grads and not torch.isfinite(torch.stack([g.abs().max() for g in grads])).all():
                return None
            if self.cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.optimizer.step()
            traj_value = float(traj.detach())
        self.objective.after_batch(traj_value)
        return float(loss.detach()), {k: float(v.detach()) for k, v in terms.items()}

    def _on_nonfinite(self) -> None:
        where = f"step {self.step} (epoch {self.epoch})"
        self._restore_good()
        if self.lr_lowered:
            path = self.save("last")
            raise TrainingDiverged(
                f"the loss became NaN/inf (or the solution blew up) at {where} again after "
                "lowering the learning rate; "
                f"training stopped. The last good state is in {path}. Try a smaller `lr`, a "
                "finer solver `step`, or tighter parameter bounds.")
        self.lr_lowered = True
        for g in self.optimizer.param_groups:
            g["lr"] *= 0.1
        self._notify(math.nan, {}, None, message=f"NaN/inf or blow-up at {where}: restored the last good "
                     f"state and lowered the learning rate to {self.optimizer.param_groups[0]['lr']:g}")

    def _notify(self, loss, terms, val, message=None):
        if self.callback is None:
            return
        params = {k: float(v.detach()) for k, v in self.model.physical_parameters().items()}
        lam = self.objective.state_dict().get("lambda")
        total_steps = self.total_steps()
        eta = None
        if self.step > 0:
            rate = self.elapsed / self.step
            eta = rate * max(0, total_steps - self.step)
            if self.cfg.minutes:
                eta = min(eta, max(0.0, self.cfg.minutes * 60 - self.elapsed))
        self.callback(Progress(self.step, self.epoch, self.cfg.epochs, loss,
                               terms.get("traj", math.nan), lam, terms.get("norm"), params,
                               self.truth, val, self.best_val if math.isfinite(self.best_val)
                               else None, self.elapsed, eta, message))

    def batches_per_epoch(self) -> int:
        n = self.train_data.shape[0]
        return max(1, math.ceil(n / self.cfg.batch))

    def total_steps(self) -> int:
        total = self.cfg.epochs * self.batches_per_epoch()
        return min(total, self.cfg.steps) if self.cfg.steps else total

    def fit(self) -> None:
        """Train until the epochs, step or time budget is spent (or Ctrl-C)."""
        threads = torch.get_num_threads()
        want = self.cfg.threads
        if want is None and self.device.type == "cpu" and not self.spec.system.is_grid:
            # Small ODE batches: one thread avoids OpenMP hand-off costs that dominate here.
            want = 1
        if want:
            torch.set_num_threads(want)
        try:
            self._fit()
        finally:
            torch.set_num_threads(threads)

    def _fit(self) -> None:
        cfg = self.cfg
        if self.nothing_to_learn:
            self._notify(math.nan, {}, None, message="nothing to learn: evaluating the model as "
                         "given (add `learn NAME` or an `augment` network to train)")
            with open(self.dir / "metrics.jsonl", "a", encoding="utf-8") as log:
                self._end_of_epoch(log, force_val=True)
            self.save("last")
            return
        metrics_path = self.dir / "metrics.jsonl"
        _truncate_metrics(metrics_path, self.step)
        n = self.train_data.shape[0]
        nb = self.batches_per_epoch()
        self._snapshot()
        self.model.train()
        with _StopFlag() as stop, open(metrics_path, "a", encoding="utf-8") as log:
            t_start = time.perf_counter() - self.elapsed
            while self.epoch < cfg.epochs:
                if self.perm is None or self.batch_index >= nb:
                    self.perm = torch.randperm(n, generator=self.generator)
                    self.batch_index = 0
                h = self.horizon()
                while self.batch_index < nb and not self._out_of_budget():
                    idx = self.perm[self.batch_index * cfg.batch:(self.batch_index + 1) * cfg.batch]
                    idx = idx.to(self.train_data.device)
                    batch = self.train_data[idx, :h]
                    result = self._batch_step(batch, log, idx)
                    if result is None:
                        self._on_nonfinite()
                        continue
                    loss, terms = result
                    self.batch_index += 1
                    self.step += 1
                    self.elapsed = time.perf_counter() - t_start
                    record = {"step": self.step, "epoch": self.epoch, "loss": loss, **terms,
                              "time": round(self.elapsed, 4)}
                    lam = self.objective.state_dict().get("lambda")
                    if lam is not None:
                        record["lambda"] = lam
                    for k, v in self.model.physical_parameters().items():
                        record[f"param/{k}"] = float(v.detach())
                    log.write(json.dumps(record) + "\n")
                    self._notify(loss, terms, None)
                    if stop.requested or self._out_of_budget():
                        break
                if stop.requested or self._out_of_budget():
                    log.flush()
                    if self.batch_index >= nb:
                        self.epoch += 1
                    self._end_of_epoch(log, force_val=True)
                    self.save("last")
                    self.stopped_early = stop.requested
                    return
                self.epoch += 1
                self._end_of_epoch(log)
                self.save("last")
                if self._patience_exhausted():
                    return

    def _out_of_budget(self) -> bool:
        if self.cfg.steps is not None and self.step >= self.cfg.steps:
            return True
        return bool(self.cfg.minutes) and self.elapsed >= self.cfg.minutes * 60

    def _end_of_epoch(self, log, force_val: bool = False) -> None:
        last = self.epoch >= self.cfg.epochs
        if force_val or last or self.epoch % max(1, self.cfg.val_every) == 0:
            val = self.validate()
            log.write(json.dumps({"step": self.step, "epoch": self.epoch, "val": val}) + "\n")
            log.flush()
            if math.isfinite(val) and val < self.best_val:
                self.best_val = val
                self.bad_validations = 0
                save_checkpoint(self.dir / "checkpoints" / "best.pt",
                                {"model": self.model.state_dict(), "step": self.step,
                                 "epoch": self.epoch, "val": val})
            else:
                self.bad_validations += 1
            self._notify(math.nan, {}, val)

    def _patience_exhausted(self) -> bool:
        p = self.cfg.patience
        return p is not None and self.bad_validations >= p


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop metric lines written after the checkpoint being resumed."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("step", 0) <= step:
            keep.append(line)
    atomic_write_text(path, "".join(l + "\n" for l in keep))
