"""What the experiment blocks accept, as supplied by the library's registries.

The language knows the *syntax* of ``train METHOD(...) OPTION VALUE …``, ``augment
NET(...)`` and ``solver NAME(...)``; which names exist is the library's business. Each
registry lives beside its implementation (objectives, networks, solvers, training
options), and :func:`physml.experiment.vocabulary` gathers them into a
:class:`Vocabulary` that the parser checks specs against, so a name ``physml check``
accepts is a name ``physml train`` runs. Without a vocabulary a spec is parsed for its
syntax and system alone (names in those blocks are then not checked).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from ..symbolic.spec import SPLITS  # noqa: F401  (re-exported for the parser)


@dataclass(frozen=True)
class Vocabulary:
    """The names a spec may use, each with the keyword options it takes.

    ``methods``: ``train NAME(...)``; ``networks``: ``augment NAME(...)`` and
    ``hamiltonian NAME(...)``; ``data_solvers``: ``solver NAME(...)`` in a ``data:``
    block; ``train_solvers``: ``train … solver NAME(...)`` (its options are training
    options: ``step``, ``rtol``, ``atol``); ``train_options``: the options after the
    method, with their types.
    """

    methods: Mapping[str, tuple[str, ...]]
    networks: Mapping[str, tuple[str, ...]]
    data_solvers: Mapping[str, tuple[str, ...]]
    train_solvers: Mapping[str, tuple[str, ...]]
    train_options: Mapping[str, type]
    #: experiment blocks the grammar knows but the library does not train yet → what
    #: they are for (each is a located error)
    unavailable: Mapping[str, str] = field(default_factory=dict)
    #: ``encoder NAME(...)``: the networks that estimate an initial state from observed
    #: frames (partial observation)
    encoders: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
