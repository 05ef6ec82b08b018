"""The training loop: any rollout, any objective, one process or many.

``Trainer(rollout, objective, data, config, run_dir)`` takes built objects (building them
from a spec is :mod:`physml.experiment`'s job). Each batch of training trajectories
(:class:`~physml.data.batches.Batch`) goes through ``objective.loss(rollout, batch)`` for
``niter`` optimiser steps; then the objective updates its own state. The trainer owns
the loop, the budget, checkpoints, NaN recovery, model selection and logging — nothing
else. It writes into the run directory:

- ``checkpoints/last.pt`` (everything needed to resume bit-for-bit on CPU: model,
  optimiser, objective state, RNG state, position in the epoch), written every
  ``checkpoint_every`` seconds and whenever the run stops;
- ``checkpoints/best.pt``, the state with the best validation error;
- ``metrics.jsonl``, one line per batch (every loss term, λ, learning rate, each learned
  physical parameter) and one per validation.

A NaN/inf in the loss or gradients (or a solution that blows up) restores the last good
state and lowers the learning rate once (×0.1); a second one stops with
:class:`TrainingDiverged` and the last good state saved. After ``plateau`` validations
without improvement the run returns to its best state and decays the learning rate, so it
ends where it was best (``plateau_restore false``: it decays the rate only). Ctrl-C
finishes the current step, saves and exits cleanly.
"""
from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..data.batches import Trajectories, Windows
from ..models.rollout import Rollout
from ..objectives import Objective, aggregate_errors, per_trajectory_errors
from .checkpoint import CheckpointError, atomic_write_text, checkpoint_key_error, \
    describe_misfit, load_checkpoint, require_keys, save_checkpoint, storage_error
from .config import TrainConfig
from .distributed import Distributed


class TrainingDiverged(RuntimeError):
    """Training produced NaN/inf twice; the last good checkpoint is kept."""


@dataclass
class TrainingData:
    """The trajectories a run trains and selects on. ``validation`` says where the
    validation trajectories come from (a ``val`` split, or held out of ``train``)."""

    train: Trajectories | Windows
    val: Trajectories | Windows | None
    validation: str = "val split"


def _named_device(name: str | None) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name}: not a device name (cpu, cuda, cuda:1, auto)") \
            from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA device is available on this machine; "
                         "use --device cpu (or auto)")
    return dev


def resolve_device(name: str | None) -> torch.device:
    """The device of this process: under torchrun, ``cuda`` means this rank's GPU
    (``cuda:LOCAL_RANK``)."""
    dev = _named_device(name)
    if dev.type == "cuda" and dev.index is None and "LOCAL_RANK" in os.environ:
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    if dev.type == "cuda":
        if dev.index is None:       # set_device wants an index (torch ≥ 2.11 refuses "cuda")
            dev = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(dev)
        # Training shapes are fixed, so cuDNN may time its convolution algorithms once and
        # keep the fastest (grid models are convolutions throughout).
        torch.backends.cudnn.benchmark = True
    return dev


class compute_threads:
    """Use ``threads`` CPU threads inside the block (the default: one for ODE states on
    the CPU, where batches are tiny and OpenMP hand-offs cost more than they save — on a
    loaded machine, many times more)."""

    def __init__(self, threads: int | None, device: torch.device, small: bool):
        self.want = threads if threads else (1 if device.type == "cpu" and small else None)
        self.before = torch.get_num_threads()

    def __enter__(self):
        if self.want:
            torch.set_num_threads(self.want)
        return self

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)
        return False


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
    phase: str = "training"
    lr: float | None = None


#: Why a run ended, as recorded in ``last.pt`` and the report.
STOP_REASONS = ("epochs", "steps", "time budget", "patience", "interrupted", "nothing to learn")


def teacher_forcing_restarts(rho: float, step: int, frames: int,
                             generator: torch.Generator) -> torch.Tensor:
    """Teacher forcing (thesis §3.4.4, the LEADS authors' schedule): at (0-based) step
    ``step`` each frame after the first restarts the integration from the data with
    probability ρ^(step/10); ``(frames,)`` bool."""
    p = rho ** (step / 10)
    restart = torch.rand(frames, generator=generator, dtype=torch.float64) < p
    restart[0] = False
    return restart


def lr_schedule_factor(schedule: str, progress: float, final: float) -> float:
    """The multiplier of the learning rates at ``progress`` ∈ [0, 1] of the budget.
    ``cosine``: ``final + (1 − final)·(1 + cos πp)/2``, from 1 down to ``final`` (the
    half-period cosine annealing of Loshchilov & Hutter, SGDR, ICLR 2017, without
    restarts); ``constant``: 1."""
    if schedule == "constant":
        return 1.0
    p = min(max(progress, 0.0), 1.0)
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * p))


class Trainer:
    """One training run over built objects (see :func:`physml.experiment.train`)."""

    def __init__(self, rollout: Rollout, objective: Objective, data: TrainingData,
                 config: TrainConfig, run_dir: str | Path,
                 callback: Callable[[Progress], None] | None = None,
                 truth: dict[str, float] | None = None, dist: Distributed | None = None,
                 compile_in_background: Callable[[], Any] | None = None):
        cfg = config
        self.cfg = cfg
        self.dir = Path(run_dir)
        self.callback = callback
        self.device = resolve_device(cfg.device)
        self.dist = dist if dist is not None else Distributed(self.device)
        self.rollout = rollout.to(self.device)
        self.objective = objective
        self.data = data
        self.truth = dict(truth or {})
        phys = [p for p in self.rollout.physical_raw_parameters() if p.requires_grad]
        special = {id(p) for p in phys}
        offsets = [self.rollout.x0_offset] if self.rollout.x0_offset is not None else []
        special |= {id(p) for p in offsets}
        nets = [p for p in self.rollout.parameters() if p.requires_grad and id(p) not in special]
        # A model with nothing to learn (the "True ODE/PDE" rows of Table 3.4) is only
        # evaluated: fit() then saves it as it is.
        self.nothing_to_learn = not phys and not nets
        # Physical parameters may take their own step size (`lr_phys`): they are few, and
        # their unconstrained coordinates are O(1), unlike network weights. Initial-state
        # offsets take the network rate without weight decay.
        groups = [{"params": g, "lr": lr, "weight_decay": wd} for g, lr, wd in (
            (nets, cfg.lr, cfg.weight_decay), (phys, cfg.lr_phys or cfg.lr, 0.0),
            (offsets, cfg.lr, 0.0)) if g]
        # The fused Adam updates every tensor in one kernel: on the pendulum it takes a
        # third of the time of the default one, about 1 % of an Adam step.
        fused = self.device.type in ("cpu", "cuda") and all(
            p.is_floating_point() for g in groups for p in g["params"])
        self.optimizer = torch.optim.Adam(groups if groups else
                                          [{"params": [torch.zeros(0, requires_grad=True)]}],
                                          fused=fused or None)
        for g in self.optimizer.param_groups:
            # the rate `lr_schedule` scales (itself lowered by plateaus and NaN recovery)
            g["base_lr"] = g["lr"]
        self.module = self.dist.wrap(self.rollout) if not self.nothing_to_learn else self.rollout
        self.generator = torch.Generator().manual_seed(cfg.seed)
        # A prediction error 10⁴× that of predicting zero means the solution blew up (a
        # learned term made the fixed-step solver unstable, which grows exponentially):
        # handled like NaN/inf. Merely wrong forecasts stay far below this.
        self.blowup = 1e4 * data.train.mean_square() + 1e-12
        self.step = 0
        self.epoch = 0
        self.batch_index = 0
        self.perm: torch.Tensor | None = None
        self.best_val = math.inf
        self.best_step = 0
        self.lr_lowered = False
        self.elapsed = 0.0
        self.bad_validations = 0
        self.since_improvement = 0
        self.stop_reason: str | None = None
        self.decays: list[dict[str, Any]] = []
        self._good: dict[str, Any] | None = None
        self._best: dict[str, Any] | None = None
        self._last_save = -math.inf
        # With `compile` and a time budget the experiment may compile the step in another
        # process (:mod:`physml.experiment.warm`); until it is done the run trains eagerly.
        self._warming = None
        self._start_warm = compile_in_background if cfg.compile else None
        self._validated_step: int | None = None

    @property
    def stopped_early(self) -> bool:
        return self.stop_reason == "interrupted"

    # -- budget -------------------------------------------------------------------------
    def horizon(self) -> int:
        full = self.data.train.n_frames
        h = min(self.cfg.horizon or full, full)
        if self.cfg.curriculum == "linear":
            # Grow the horizon from 2 frames to the full one over the first half of the
            # step budget (the spec's epochs, or `--steps` when fewer; by steps, not time,
            # so a resumed run is exact): short horizons first keep trajectories near a
            # separatrix from dominating early.
            frac = self.step / max(1, self.total_steps() // 2)
            h = max(2, int(round(2 + min(1.0, frac) * (h - 2))))
        return h

    def batches_per_epoch(self) -> int:
        return max(1, math.ceil(len(self.data.train) / self.cfg.batch))

    def total_steps(self) -> int:
        total = self.cfg.epochs * self.batches_per_epoch()
        return min(total, self.cfg.steps) if self.cfg.steps else total

    def progress(self, step: int) -> float:
        """The fraction of the budget spent at ``step``: of the steps (or epochs) or of
        the minutes, whichever runs out first."""
        frac = step / max(1, self.total_steps())
        if self.cfg.minutes:
            frac = max(frac, self.elapsed / (self.cfg.minutes * 60))
        return min(1.0, frac)

    def _budget_reason(self) -> str | None:
        if self.cfg.steps is not None and self.step >= self.cfg.steps:
            return "steps"
        if self.cfg.minutes and self.elapsed >= self.cfg.minutes * 60:
            return "time budget"
        return None

    # -- state --------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "model": self.rollout.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "objective": self.objective.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "step": self.step, "epoch": self.epoch, "batch_index": self.batch_index,
            "perm": self.perm if self.perm is not None else torch.empty(0, dtype=torch.long),
            "best_val": self.best_val, "best_step": self.best_step,
            "lr_lowered": self.lr_lowered, "elapsed": self.elapsed,
            "bad_validations": self.bad_validations,
            "since_improvement": self.since_improvement,
            "stop_reason": self.stop_reason or "",
            "decays": json.dumps(self.decays),
        }

    #: The keys ``last.pt`` must hold (others have defaults, for older checkpoints).
    STATE_KEYS = ("model", "optimizer", "objective", "generator", "torch_rng", "step",
                  "epoch", "batch_index", "perm", "best_val", "lr_lowered", "elapsed",
                  "bad_validations")

    def load_state(self, state: dict[str, Any], source: str | Path = "the checkpoint") -> None:
        """Restore a state from :meth:`state`. A state that does not hold what this trainer
        wrote (a missing key, a wrong type, tensors of other shapes) raises
        :class:`~physml.training.checkpoint.CheckpointError` naming ``source`` and the key."""
        require_keys(state, source, self.STATE_KEYS)

        def load(key, fn):
            try:
                return fn(state[key]) if key in state else None
            except (KeyError, TypeError, ValueError, RuntimeError, IndexError,
                    AttributeError, json.JSONDecodeError) as exc:
                if key == "model":
                    raise CheckpointError(describe_misfit(source, exc)) from None
                detail = str(exc).strip().splitlines()[0] if str(exc).strip() else \
                    type(exc).__name__
                raise checkpoint_key_error(source, key, f"does not fit this run ({detail[:200]})") \
                    from None

        load("model", self.rollout.load_state_dict)
        load("optimizer", self.optimizer.load_state_dict)
        for g in self.optimizer.param_groups:  # checkpoints from before `lr_schedule`
            g.setdefault("base_lr", g["lr"])
        load("objective", self.objective.load_state_dict)
        load("generator", self.generator.set_state)
        load("torch_rng", torch.set_rng_state)
        self.step = load("step", _count)
        self.epoch = load("epoch", _count)
        self.batch_index = load("batch_index", _count)
        self.perm = load("perm", lambda p: p.long() if p.numel() else None) if \
            torch.is_tensor(state["perm"]) else load("perm", _tensor)
        self.best_val = load("best_val", float)
        self.best_step = load("best_step", _count) or 0
        self.lr_lowered = load("lr_lowered", bool)
        self.elapsed = load("elapsed", float)
        self.bad_validations = load("bad_validations", _count)
        self.since_improvement = load("since_improvement", _count) or 0
        self.decays = load("decays", _decays) or []

    def save(self, name: str = "last") -> Path:
        path = self.dir / "checkpoints" / f"{name}.pt"
        if self.dist.is_main:
            save_checkpoint(path, self.state())
        self._last_save = time.perf_counter()
        return path

    def _copy(self) -> dict[str, Any]:
        """An in-memory copy of what a restore needs (model, optimiser, objective)."""
        clone = lambda d: {k: (v.detach().clone() if torch.is_tensor(v) else  # noqa: E731
                               clone(v) if isinstance(v, dict) else
                               [clone(x) if isinstance(x, dict) else x for x in v]
                               if isinstance(v, list) else v) for k, v in d.items()}
        return {"model": clone(self.rollout.state_dict()),
                "optimizer": clone(self.optimizer.state_dict()),
                "objective": clone(self.objective.state_dict())}

    def _restore(self, saved: dict[str, Any], objective: bool = True) -> None:
        self.rollout.load_state_dict(saved["model"])
        lrs = [(g["lr"], g["base_lr"]) for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(saved["optimizer"])
        for g, (lr, base) in zip(self.optimizer.param_groups, lrs):
            g["lr"], g["base_lr"] = lr, base  # a restore never undoes a learning-rate change
        if objective:
            self.objective.load_state_dict(saved["objective"])

    # -- evaluation ---------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> float:
        """The validation error, aggregated over trajectories as the training loss is.
        Every process validates all trajectories, so all agree without communicating."""
        if self.data.val is None or len(self.data.val) == 0:
            return math.nan
        self.rollout.eval()
        per = []
        for chunk in self.data.val.chunks(max(1, self.cfg.batch * 4)):
            pred = self.rollout.forecast(chunk)
            per.append(per_trajectory_errors(pred, chunk.target, chunk.mask))
        self.rollout.train()
        return float(aggregate_errors(torch.cat(per), self.cfg.loss))

    # -- the loop -----------------------------------------------------------------------
    def _batch_step(self, batch) -> tuple[float, dict[str, float]] | None:
        """``niter`` optimiser steps on one batch; None if any process hit NaN/inf."""
        terms: dict[str, torch.Tensor] = {}
        traj_value = math.nan
        if self.cfg.lr_schedule is not None:
            f = lr_schedule_factor(self.cfg.lr_schedule, self.progress(self.step),
                                   self.cfg.lr_final)
            for g in self.optimizer.param_groups:
                g["lr"] = g["base_lr"] * f
        loss = torch.zeros(())
        for _ in range(self.objective.niter):
            loss, terms = self.objective.loss(self.module, batch)
            traj = terms["traj"].detach()
            ok = bool(torch.isfinite(loss)) and float(traj) <= self.blowup
            if not self.dist.all_ok(ok):
                self.optimizer.zero_grad(set_to_none=True)
                return None
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grads = [p.grad for g in self.optimizer.param_groups for p in g["params"]
                     if p.grad is not None]
            ok = not grads or bool(torch.isfinite(torch.stack([g.abs().max() for g in grads]))
                                   .all())
            if not self.dist.all_ok(ok):
                return None
            if self.cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.rollout.parameters(), self.cfg.grad_clip)
            self.optimizer.step()
            traj_value = float(traj)
        # Every process updates the objective's state (λ) with the same, averaged value.
        self.objective.progress = self.progress(self.step + 1)
        self.objective.after_batch(self.dist.mean(traj_value))
        return float(loss.detach()), {k: float(v.detach()) for k, v in terms.items()}

    def _restarts(self, frames: int) -> torch.Tensor:
        """Teacher forcing at this step, drawn from the run's generator (so a resumed
        run draws the same)."""
        return teacher_forcing_restarts(self.cfg.teacher_forcing, self.step, frames,
                                        self.generator)

    def _on_nonfinite(self) -> None:
        where = f"step {self.step} (epoch {self.epoch})"
        if self._good is not None:
            self._restore(self._good)
        if self.lr_lowered:
            path = self.save("last")
            dt = float(self.data.train.times[1] - self.data.train.times[0])
            raise TrainingDiverged(
                f"the loss became NaN/inf (or the solution blew up) at {where} again after "
                f"lowering the learning rate; training stopped. The last good state is in "
                f"{path}. Try a smaller `lr`, a finer solver step on the train line "
                f"(e.g. `solver rk4(step={0.25 * dt:g})`), an "
                "adaptive `solver dopri5`, or tighter parameter bounds.")
        self.lr_lowered = True
        self._scale_lrs(0.1)
        self._notify(math.nan, {}, None, message=(
            f"NaN/inf or blow-up at {where}: restored the last good state and lowered the "
            f"learning rate to {self.optimizer.param_groups[0]['lr']:g}"))

    def _scale_lrs(self, factor: float) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] *= factor
            g["base_lr"] *= factor

    def _notify(self, loss, terms, val, message=None, phase="training"):
        if self.callback is None or not self.dist.is_main:
            return
        params = {k: float(v.detach()) for k, v in self.rollout.physical_parameters().items()}
        eta = None
        if self.step > 0:
            eta = self.elapsed / self.step * max(0, self.total_steps() - self.step)
            if self.cfg.minutes:
                eta = min(eta, max(0.0, self.cfg.minutes * 60 - self.elapsed))
        self.callback(Progress(self.step, self.epoch, self.cfg.epochs, loss,
                               terms.get("traj", math.nan),
                               self.objective.describe().get("lambda"), terms.get("norm"),
                               params, self.truth, val,
                               self.best_val if math.isfinite(self.best_val) else None,
                               self.elapsed, eta, message, phase,
                               self.optimizer.param_groups[0]["lr"]))

    def fit(self) -> str:
        """Train until the epochs, step or time budget is spent, patience runs out, or
        Ctrl-C; returns why it stopped (one of :data:`STOP_REASONS`)."""
        try:
            with compute_threads(self.cfg.threads, self.device,
                                 self.data.train.whole.frames.dim() == 3):
                self.stop_reason = self._fit()
        finally:
            self._stop_background_compile()
        return self.stop_reason

    def _open_metrics(self):
        path = self.dir / "metrics.jsonl"
        if not self.dist.is_main:
            return _Log(_devnull())
        self._validated_step = _truncate_metrics(path, self.step)
        return _Log(path)

    def _fit(self) -> str:
        cfg = self.cfg
        if self.nothing_to_learn:
            self._notify(math.nan, {}, None, message="nothing to learn: evaluating the model "
                         "as given (add `learn NAME` or an `augment` network to train)")
            with self._open_metrics() as log:
                self._validate_and_select(log)
            self.stop_reason = "nothing to learn"
            self.save("last")
            return self.stop_reason
        n = len(self.data.train)
        nb = self.batches_per_epoch()
        self._begin_background_compile()
        self._good = self._copy()
        self.rollout.train()
        reason: str | None = None
        with _StopFlag() as stop, self._open_metrics() as log:
            t_start = time.perf_counter() - self.elapsed
            while reason is None:
                if self.epoch >= cfg.epochs:
                    reason = "epochs"
                    break
                if self.perm is None or self.batch_index >= nb:
                    self.perm = torch.randperm(n, generator=self.generator)
                    self.batch_index = 0
                while self.batch_index < nb:
                    reason = self._budget_reason()
                    if self.dist.broadcast_flag(stop.requested):
                        reason = "interrupted"
                    if reason is not None:
                        break
                    rows = self.perm[self.batch_index * cfg.batch:
                                     (self.batch_index + 1) * cfg.batch]
                    batch = self.data.train.batch(self.dist.shard(rows).to(self.device),
                                                  self.horizon())
                    if cfg.teacher_forcing is not None:
                        batch.restart = self._restarts(batch.t.shape[0])
                    if self.step % 10 == 0:
                        # A recent state that gave finite losses, to come back to on NaN.
                        self._good = self._copy()
                    if self._warming is not None:
                        self._maybe_switch_to_compiled()
                    result = self._batch_step(batch)
                    if result is None:
                        self._on_nonfinite()
                        continue
                    loss, terms = result
                    self.batch_index += 1
                    self.step += 1
                    self.elapsed = time.perf_counter() - t_start
                    record = {"step": self.step, "epoch": self.epoch, "loss": loss, **terms,
                              "time": round(self.elapsed, 4)}
                    record.update(self.objective.describe())
                    record["lr"] = self.optimizer.param_groups[0]["lr"]
                    for k, v in self.rollout.physical_parameters().items():
                        record[f"param/{k}"] = float(v.detach())
                    log.write(json.dumps(record) + "\n")
                    self._notify(loss, terms, None)
                if reason is None:  # a whole epoch done
                    self.epoch += 1
                    due = self.epoch % cfg.val_every == 0 or self.epoch >= cfg.epochs
                    if due and self._validate_and_select(log):
                        reason = "patience"
                    if time.perf_counter() - self._last_save >= cfg.checkpoint_every:
                        self.save("last")
            # Whatever ended the run, its final state is validated and saved.
            # (Unless the run stops right after a scheduled validation: one line per step.)
            if reason in ("steps", "time budget", "interrupted") and \
                    self._validated_step != self.step:
                self._validate_and_select(log, final=True)
            log.flush()
        self.stop_reason = reason
        self.save("last")
        return reason

    def _begin_background_compile(self) -> None:
        if self._start_warm is None or self.dist.active:
            return
        self._warming = (self._start_warm(), time.perf_counter())
        self._set_compiled(False)
        self._notify(math.nan, {}, None, phase="training", message=(
            "compiling the step in the background; training eagerly until it is ready"))

    def _set_compiled(self, on: bool) -> None:
        from dataclasses import replace

        self.rollout.solver = replace(self.rollout.solver, compiled=on)

    def _maybe_switch_to_compiled(self) -> None:
        proc, started = self._warming
        code = proc.poll()
        if code is None:
            return
        self._warming = None
        took = time.perf_counter() - started
        if code == 0:
            self._set_compiled(True)
            message = f"step compiled in the background ({took:.0f} s): switching to it"
        else:
            message = (f"compiling the step failed in the background (exit {code}); "
                       "training goes on without `compile`")
        self._notify(math.nan, {}, None, message=message)

    def _stop_background_compile(self) -> None:
        if self._warming is not None:
            self._warming[0].kill()
            self._warming[0].wait()
            self._warming = None

    def _validate_and_select(self, log, final: bool = False) -> bool:
        """Validate; keep the best state; on a plateau go back to it and decay the
        learning rate. True when ``patience`` is exhausted.

        A ``final`` validation (the run stops between scheduled ones) may record a new
        best, but counts towards no plateau or patience: a run stopped and resumed then
        takes the same steps as one never stopped.
        """
        val = self.validate()
        rec = {"step": self.step, "epoch": self.epoch, "val": val}
        if final:
            rec["final"] = True
        log.write(json.dumps(rec) + "\n")
        log.flush()
        self._validated_step = self.step
        if final:
            if math.isfinite(val) and self.objective.prefers(val, self.best_val):
                self._new_best(val)
            self._notify(math.nan, {}, val, phase="validation")
            return False
        if math.isfinite(val) and self.objective.prefers(val, self.best_val):
            self.bad_validations = self.since_improvement = 0
            self._new_best(val)
        else:
            self.bad_validations += 1
            self.since_improvement += 1
            if self.cfg.lr_decay > 0 and self.since_improvement >= self.cfg.plateau \
                    and not self.nothing_to_learn:
                self._back_to_best(val)
        self._notify(math.nan, {}, val, phase="validation")
        p = self.cfg.patience
        return p is not None and self.bad_validations >= p

    def _new_best(self, val: float) -> None:
        # the lowest validation error so far (an objective may prefer a later state that
        # validates within its tolerance of it: Objective.prefers)
        self.best_val, self.best_step = min(val, self.best_val), self.step
        self._best = self._copy()
        if self.dist.is_main:
            save_checkpoint(self.dir / "checkpoints" / "best.pt",
                            {"model": self.rollout.state_dict(), "step": self.step,
                             "epoch": self.epoch, "val": val})

    def _back_to_best(self, val: float) -> None:
        """A plateau: return to the best state found (unless ``plateau_restore`` is
        off) and decay the learning rates."""
        restore = self.cfg.plateau_restore
        best = self._best if restore else None
        if restore and best is None:
            path = self.dir / "checkpoints" / "best.pt"
            if path.exists():  # a resumed run: the best model is on disk
                best = {"model": load_checkpoint(path, map_location=self.device)["model"]}
        if best is not None and "optimizer" in best:
            self._restore(best, objective=False)
        elif best is not None:
            self.rollout.load_state_dict(best["model"])
        self._scale_lrs(self.cfg.lr_decay)
        self.since_improvement = 0
        lr = self.optimizer.param_groups[0]["lr"]
        self.decays.append({"step": self.step, "lr": lr,
                            "back_to": self.best_step if restore else None})
        where = "back to the best state, " if restore else ""
        self._notify(math.nan, {}, None, message=(
            f"no better validation in {self.cfg.plateau} checks (now {val:.4g}, best "
            f"{self.best_val:.4g} at step {self.best_step}): {where}"
            f"learning rate ×{self.cfg.lr_decay:g} → {lr:.3g}"))


def _count(value) -> int:
    """A step or epoch count from a checkpoint: a non-negative integer."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not (
            torch.is_tensor(value) and value.numel() == 1):
        raise TypeError(f"a {type(value).__name__}, not a count")
    n = int(value)
    if n < 0 or n != value:
        raise ValueError(f"{value} is not a count")
    return n


def _tensor(value):
    raise TypeError(f"a {type(value).__name__}, not a tensor")


def _decays(text) -> list:
    out = json.loads(text)
    if not isinstance(out, list):
        raise TypeError("not a JSON list")
    return out


def _devnull() -> str:
    import os

    return os.devnull


class _Log:
    """``metrics.jsonl`` opened for appending; a write that fails (full disk) raises a
    :class:`~physml.training.checkpoint.StorageError` naming the file."""

    def __init__(self, path):
        self.path = path
        try:
            self._fh = open(path, "a", encoding="utf-8")
        except OSError as exc:
            raise storage_error(exc, path) from None

    def write(self, text: str) -> None:
        try:
            self._fh.write(text)
        except OSError as exc:
            raise storage_error(exc, self.path) from None

    def flush(self) -> None:
        try:
            self._fh.flush()
        except OSError as exc:
            raise storage_error(exc, self.path) from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self._fh.close()
        except OSError as err:
            if exc[0] is None:
                raise storage_error(err, self.path) from None
        return False


def _truncate_metrics(path: Path, step: int) -> int | None:
    """On resume, drop metric lines written after the checkpoint being resumed, and the
    ``final`` validation of the step being resumed: a run stopped between scheduled
    validations validates its last state once more, which a run never stopped does not —
    dropped, the resumed run's file reads as the uninterrupted run's. Damaged lines (not
    JSON, not UTF-8) are dropped, never an obstacle to resuming.

    Returns the step of the last validation kept (None if none)."""
    if not path.exists():
        return None
    keep = []
    validated = None
    raw = path.read_bytes().decode("utf-8", errors="replace")
    for line in raw.splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a damaged line is dropped, never an obstacle to resuming
        if not isinstance(rec, dict) or not isinstance(rec.get("step", 0), (int, float)):
            continue
        s = rec.get("step", 0)
        if s > step or (s == step and "val" in rec and rec.get("final")):
            continue
        if "val" in rec:
            validated = s
        keep.append(line)
    atomic_write_text(path, "".join(l + "\n" for l in keep))
    return validated
