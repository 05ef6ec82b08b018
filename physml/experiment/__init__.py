"""Experiments: a spec made into data, a model, an objective and a run directory.

This is the one place above the layers that reads spec files and decides what to build
from them (DESIGN.md, "the data path"): lower layers take :class:`~physml.symbolic.Spec`,
:class:`~physml.data.Dataset` and built modules, never paths.
"""
from .build import Experiment, build, build_field, build_rollout, check, config_for
from .data import dataset_for, default_path, simulate_keyed, spec_key, training_data
from .run import Run, RunError, load_spec, train
from .vocabulary import vocabulary


def parse_spec(text: str, path: str = "<string>"):
    """Parse spec text and check it against what this version of physml implements."""
    from ..lang import parse_spec as _parse

    return _parse(text, path, vocabulary=vocabulary())


def simulate(spec, **kwargs):
    """The data a spec's ``data:`` block describes (a :class:`Spec` or a path; see
    :func:`physml.simulation.simulate` for the options)."""
    from ..lang import load_spec as _load
    from ..simulation import simulate as _simulate
    from ..symbolic.spec import Spec

    return _simulate(spec if isinstance(spec, Spec) else _load(spec), **kwargs)


def evaluate(run, split: str = "test", dataset=None):
    """Test metrics of a run (a :class:`Run` or its directory)."""
    from ..reporting import evaluate as _evaluate

    run = run if isinstance(run, Run) else Run(run)
    with _threads(run):
        return _evaluate(run, split=split, dataset=dataset)


def inspect(run, latex: bool = False, dataset=None):
    """The identified equations of a run (a :class:`Run` or its directory)."""
    from ..reporting import inspect as _inspect

    run = run if isinstance(run, Run) else Run(run)
    with _threads(run):
        return _inspect(run, latex=latex, dataset=dataset)


def _threads(run):
    import torch

    from ..training.trainer import compute_threads

    return compute_threads(run.config.threads, torch.device("cpu"), not run.spec.system.is_grid)


__all__ = ["Experiment", "build", "build_field", "build_rollout", "check", "config_for",
           "dataset_for", "default_path", "simulate_keyed", "spec_key", "training_data", "Run", "RunError",
           "load_spec", "parse_spec", "simulate", "train", "evaluate", "inspect", "vocabulary"]
