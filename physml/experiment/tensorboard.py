"""TensorBoard scalars of a run, as a training callback (``physml train --log tensorboard``).

The trainer reports each batch through its ``callback(Progress)``; this writes what it
reports (the objective, the trajectory MSE, ‖F_a‖², λ, every learned parameter, the
learning rate and the validation MSE) as TensorBoard scalars under ``RUN/tensorboard``.
``metrics.jsonl`` stays the source of truth; this is a view for people who look there.
Needs the optional ``tensorboard`` package (``pip install physml[tensorboard]``).
"""
from __future__ import annotations

import math
from pathlib import Path


class TensorBoardLogger:
    """A progress callback that writes scalars with :class:`torch.utils.tensorboard.SummaryWriter`."""

    def __init__(self, log_dir: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise RuntimeError("--log tensorboard needs the tensorboard package: "
                               "pip install 'physml[tensorboard]' (or pip install "
                               "tensorboard)") from None
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def __call__(self, p) -> None:
        w = self.writer
        if p.val is not None:
            w.add_scalar("validation/mse", p.val, p.step)
        if p.phase != "training" or p.step == 0 or math.isnan(p.loss):
            return
        w.add_scalar("loss/objective", p.loss, p.step)
        if not math.isnan(p.traj):
            w.add_scalar("loss/trajectory_mse", p.traj, p.step)
        if p.norm is not None:
            w.add_scalar("loss/F_a_norm2", p.norm, p.step)
        if p.lam is not None:
            w.add_scalar("aphynity/lambda", p.lam, p.step)
        if p.lr is not None:
            w.add_scalar("optimizer/lr", p.lr, p.step)
        for name, value in p.params.items():
            w.add_scalar(f"parameters/{name}", value, p.step)
            true = p.truth.get(name)
            if true is not None:
                w.add_scalar(f"parameters/{name}_true", true, p.step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
