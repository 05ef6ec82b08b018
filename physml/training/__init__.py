"""The training loop over built objects: trainer, options, checkpoints, torchrun."""
from .config import TRAIN_OPTIONS, TrainConfig
from .trainer import STOP_REASONS, Progress, Trainer, TrainingData, TrainingDiverged, \
    resolve_device

__all__ = ["Trainer", "TrainConfig", "TRAIN_OPTIONS", "TrainingData", "TrainingDiverged",
           "Progress", "STOP_REASONS", "resolve_device"]
