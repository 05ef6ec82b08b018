"""What each training method minimises (thesis ch. 3), one module per method.

An :class:`Objective` runs the rollout on a :class:`~physml.data.batches.Batch`, computes
its own trajectory loss (masked, per trajectory) and regulariser terms, says how many
optimiser steps to take per batch, and updates its own state after the batch (APHYNITY's
λ). :data:`OBJECTIVES` is the registry the language checks ``train NAME(...)`` against.
"""
from .base import OBJECTIVES, Objective, build_objective, register_objective
from .losses import LOSSES, aggregate_errors, per_trajectory_errors, trajectory_loss
from .trajectory import Augmented, Neural, Physics, Trajectory
from .aphynity import Aphynity
from .leads import FtNode, Gbml, Leads, LeadsNoMin, OneForAll, OnePerEnv

__all__ = ["Objective", "OBJECTIVES", "register_objective", "build_objective", "Trajectory", "Neural", "Physics", "Augmented",
           "Aphynity", "Leads", "LeadsNoMin", "OneForAll", "OnePerEnv", "FtNode", "Gbml", "LOSSES", "trajectory_loss", "aggregate_errors", "per_trajectory_errors"]
