"""The trainer loop, checkpoints, run directories and device handling."""
from .run import Run, RunError, train
from .trainer import Progress, TrainConfig, TrainingDiverged

__all__ = ["train", "Run", "RunError", "TrainConfig", "TrainingDiverged", "Progress"]
