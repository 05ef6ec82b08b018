"""The names a spec may use, gathered from the registries beside their implementations.

The registries live in the torch-importing packages (objectives, networks, solvers,
training options). A system file has no experiment blocks and never consults them, so
each table of the :class:`Vocabulary` is computed on first access: ``physml check`` of a
system file imports no torch.
"""
from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Callable

from ..lang.schema import Vocabulary


class _LazyMapping(Mapping):
    """A read-only mapping built by ``make()`` the first time it is read."""

    def __init__(self, make: Callable[[], dict]):
        self._make = make
        self._value: dict | None = None

    def _get(self) -> dict:
        if self._value is None:
            self._value = dict(self._make())
        return self._value

    def __getitem__(self, key):
        return self._get()[key]

    def __iter__(self):
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __repr__(self) -> str:
        return repr(self._get()) if self._value is not None else "<not read yet>"


def _methods() -> dict:
    from ..objectives import OBJECTIVES

    return {name: cls.options for name, cls in OBJECTIVES.items()}


def _networks() -> dict:
    from ..models.nets import NETWORKS

    # `augment none`: no network (a method that needs one says so).
    return {"none": (), **{name: k.options for name, k in NETWORKS.items()}}


def _encoders() -> dict:
    from ..models.encoders import ENCODERS

    return {name: k.options for name, k in ENCODERS.items()}


def _data_solvers() -> dict:
    from ..solve import SOLVERS

    return {name: s.options for name, s in SOLVERS.items() if s.simulates}


def _train_solvers() -> dict:
    from ..solve import SOLVERS

    return {name: s.options for name, s in SOLVERS.items() if s.trainable}


def _train_options() -> dict:
    from ..training.config import TRAIN_OPTIONS

    return dict(TRAIN_OPTIONS)


@lru_cache(maxsize=1)
def vocabulary() -> Vocabulary:
    """What ``physml check`` accepts: exactly what ``physml train`` can run."""
    return Vocabulary(
        methods=_LazyMapping(_methods),
        networks=_LazyMapping(_networks),
        data_solvers=_LazyMapping(_data_solvers),
        train_solvers=_LazyMapping(_train_solvers),
        train_options=_LazyMapping(_train_options),
        encoders=_LazyMapping(_encoders),
    )
