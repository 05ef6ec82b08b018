"""Experiments: a spec made into data, a model, an objective and a run directory.

This is the one place above the layers that reads spec files and decides what to build
from them (DESIGN.md, "the data path"): lower layers take :class:`~physml.symbolic.Spec`,
:class:`~physml.data.Dataset` and built modules, never paths.

Reading and checking a spec (:func:`load_spec`, :func:`parse_spec`, :func:`vocabulary`)
needs no torch; everything that builds models, data or runs is imported on first use.
"""
import sys
import types

from .spec import load_spec, parse_spec
from .vocabulary import vocabulary

_LAZY = {
    "Experiment": ".build", "build": ".build", "build_field": ".build",
    "build_rollout": ".build", "check": ".build", "config_for": ".build",
    "dataset_for": ".data", "default_path": ".data", "spec_key": ".data",
    "simulate_keyed": ".data",
    "training_data": ".data", "Run": ".run", "RunError": ".run", "train": ".run",
    "adapt": ".adapt",
    "discover_run": ".discover", "absorb_run": ".discover", "refit": ".discover",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(types.ModuleType):
    """Importing the submodule ``build`` sets the package attribute ``build`` to it; the
    name stays the function :func:`build.build` (as with an eager ``from .build import
    build``)."""

    def __setattr__(self, name, value):
        if name in _LAZY and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def simulate(spec, **kwargs):
    """The data a spec's ``data:`` block describes (a :class:`Spec` or a path; see
    :func:`physml.simulation.simulate` for the options)."""
    from ..lang import load_spec as _load
    from ..simulation import simulate as _simulate
    from ..symbolic.spec import Spec

    return _simulate(spec if isinstance(spec, Spec) else _load(spec), **kwargs)


def evaluate(run, split: str = "test", dataset=None, device=None, windows: int | None = None):
    """Test metrics of a run (a :class:`Run` or its directory); ``device``: where the
    forecasts run (``"cuda"``; default the CPU), the metrics being computed on the CPU;
    ``windows``: also the error of forecasts of that many frames started at every frame."""
    from ..reporting import evaluate as _evaluate
    from .run import Run

    run = run if isinstance(run, Run) else Run(run)
    with _threads(run):
        return _evaluate(run, split=split, dataset=dataset, device=device, windows=windows)


def inspect(run, latex: bool = False, dataset=None, which: str = "best", conjugacy: int = 0,
            intervals: str | None = "laplace", bootstrap: int = 0, level: float = 0.95,
            device=None):
    """The identified equations of a run (a :class:`Run` or its directory), at its best
    validation checkpoint or (``which="last"``) its last state, with a ``level`` interval
    on each learned physical parameter: Laplace by default, or from ``bootstrap`` refits
    on resampled training trajectories (``intervals=None``: none). ``conjugacy=N``: also
    the map from learned to true states fitted on N labelled test trajectories (partial
    observation, thesis §2.5.4), its forecasts run on ``device``."""
    from ..reporting import inspect as _inspect
    from .run import Run

    run = run if isinstance(run, Run) else Run(run)
    with _threads(run):
        return _inspect(run, latex=latex, dataset=dataset, which=which, conjugacy=conjugacy,
                        intervals=intervals, bootstrap=bootstrap, level=level,
                        device=device)


def identifiability(spec, dataset=None, max_trajectories: int = 32, confounding: bool = True):
    """Can the spec's learned parameters be told apart from its data? (a :class:`Spec`
    or a path; see :func:`physml.discover.identifiability.identifiability`). The data:
    ``dataset`` if given, the spec's data file if it names one, else its design simulated
    without noise (``max_trajectories`` of them)."""
    from ..discover.identifiability import identifiability as _identifiability
    from .build import config_for
    from .data import data_file

    from ..symbolic.spec import Spec

    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    cfg = config_for(spec)
    kw = dict(solver=cfg.solver, step=cfg.step, max_trajectories=max_trajectories,
              confounding=confounding, relative_norm=cfg.method_options.get(
                  "norm", "relative" if not spec.system.is_grid else "absolute") == "relative")
    if dataset is None and data_file(spec) is not None:
        from .data import dataset_for

        dataset, _ = dataset_for(spec)
    if dataset is None:
        return _identifiability(spec, **kw)
    return _identifiability(spec, **_frames_of(dataset, max_trajectories), **kw)


def _frames_of(dataset, max_trajectories: int) -> dict:
    """The training frames of a dataset for the identifiability check (noiseless where
    the dataset keeps them), the values they were simulated with and their noise."""
    import torch

    clean = (getattr(dataset, "splits_clean", None) or {}).get("train")
    frames = clean if clean is not None else dataset.splits["train"]
    frames = frames[:, :max_trajectories, dataset.history:].to(torch.float64)
    times = torch.as_tensor(dataset.times, dtype=torch.float64)[dataset.history:]
    user = bool(dataset.meta.get("source"))
    return dict(frames=frames, times=times - times[0],
                env_params=None if user else dataset.env_params,
                noise=float(getattr(dataset, "noise", 0.0) or 0.0) or None,
                n_train=dataset.splits["train"].shape[1])


def _threads(run):
    import torch

    from ..training.trainer import compute_threads

    return compute_threads(run.config.threads, torch.device("cpu"), not run.spec.system.is_grid)


__all__ = ["Experiment", "build", "build_field", "build_rollout", "check", "config_for",
           "dataset_for", "default_path", "spec_key", "simulate_keyed", "training_data", "Run", "RunError",
           "load_spec", "parse_spec", "simulate", "train", "evaluate", "inspect", "identifiability",
           "vocabulary", "discover_run", "absorb_run", "refit"]
