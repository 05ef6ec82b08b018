"""The names a spec may use, gathered from the registries beside their implementations."""
from __future__ import annotations

from functools import lru_cache

from ..lang.schema import Vocabulary
from ..models.nets import NETWORKS
from ..objectives import OBJECTIVES
from ..solve import SOLVERS
from ..training.config import TRAIN_OPTIONS


@lru_cache(maxsize=1)
def vocabulary() -> Vocabulary:
    """What ``physml check`` accepts: exactly what ``physml train`` can run."""
    return Vocabulary(
        methods={name: cls.options for name, cls in OBJECTIVES.items()},
        # `augment none`: no network (a method that needs one says so).
        networks={"none": (), **{name: k.options for name, k in NETWORKS.items()}},
        data_solvers={name: s.options for name, s in SOLVERS.items() if s.simulates},
        train_solvers={name: s.options for name, s in SOLVERS.items() if s.trainable},
        train_options=dict(TRAIN_OPTIONS),
        unavailable={"observe": "partial observation", "encoder": "partial observation"},
    )
