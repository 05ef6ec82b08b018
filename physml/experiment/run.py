"""Run directories, and ``physml.train``: a spec (or an interrupted run) to a trained run.

A run directory holds::

    spec.phy            the spec text as trained
    config.json         every resolved option, the dataset used, the validation source
    metrics.jsonl       one line per batch (losses, λ, ‖F_a‖², learned parameters)
    checkpoints/        last.pt (resume), best.pt (best validation error)
    report.json/.md     test metrics and identified parameters (written after training)
    plots/*.png         training curves, λ, parameters, predictions
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch

from .._version import __version__
from ..lang import parse_spec as _parse_spec
from ..models import Rollout
from ..symbolic.spec import Spec
from ..training.checkpoint import atomic_write_text, load_checkpoint
from ..training.config import TrainConfig
from ..training.distributed import Distributed
from ..training.trainer import Progress, Trainer, compute_threads, resolve_device
from .build import build, build_rollout, config_for
from .data import dataset_for, fit_scales, training_data, true_values
from .spec import load_spec  # noqa: F401  (physml.experiment.run.load_spec)
from .vocabulary import vocabulary


class RunError(ValueError):
    """A run directory that cannot be used (missing files, unreadable checkpoint)."""


class Run:
    """A trained (or training) run on disk."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        cfg_path = self.path / "config.json"
        if not cfg_path.is_file():
            raise RunError(f"{self.path} is not a physml run directory (no config.json)")
        try:
            self.info = json.loads(cfg_path.read_text(encoding="utf-8"))
            self.config = TrainConfig(**self.info["config"])
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunError(f"{cfg_path} is not valid JSON: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise RunError(f"{cfg_path}: the key 'config' is missing or holds options this "
                           f"version does not know ({exc})") from None
        self._spec: Spec | None = None
        self.stop_reason: str | None = None

    @property
    def spec(self) -> Spec:
        if self._spec is None:
            path = self.path / "spec.phy"
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise RunError(f"{path}: cannot read the run's spec ({exc})") from None
            self._spec = _parse_spec(text, self.info.get("spec_path") or str(path),
                                     vocabulary=vocabulary())
        return self._spec

    @property
    def dataset_path(self) -> Path | None:
        p = self.info.get("dataset")
        return Path(p) if p else None

    @property
    def validation(self) -> dict:
        return self.info.get("validation", {"source": "val split"})

    def dataset(self):
        from ..data import load_dataset

        if self.dataset_path is None or not self.dataset_path.exists():
            ds, _ = dataset_for(self.spec)
            return ds
        return load_dataset(self.dataset_path, spec=self.spec)

    def metrics(self) -> list[dict[str, Any]]:
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def checkpoint(self, which: str = "best") -> dict[str, Any]:
        path = self.path / "checkpoints" / f"{which}.pt"
        if which == "best" and not path.exists():
            path = self.path / "checkpoints" / "last.pt"
        try:
            return load_checkpoint(path)
        except (FileNotFoundError, ValueError) as exc:
            raise RunError(str(exc)) from None

    def load_model(self, which: str = "best", device: str | torch.device = "cpu") -> Rollout:
        """The trained rollout (``best`` or ``last`` checkpoint) in eval mode."""
        state = self.checkpoint(which)
        torch.manual_seed(self.config.seed)
        n_initial = 0
        offset = state["model"].get("x0_offset")
        if offset is not None:
            n_initial = offset.shape[0]
        rollout = build_rollout(self.spec, self.config, n_initial)
        try:
            rollout.load_state_dict(state["model"])
        except (KeyError, RuntimeError) as exc:
            raise RunError(f"{self.path}/checkpoints/{which}.pt does not fit the run's spec "
                           f"({str(exc).splitlines()[0]})") from None
        return rollout.to(device).eval()

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"


def _new_run_dir(spec: Spec, out: str | Path | None) -> tuple[Path, bool]:
    """A fresh run directory, and whether this call created it (to remove on failure)."""
    if out is not None:
        path = Path(out)
        if (path / "config.json").exists():
            raise RunError(f"{path} already holds a run; use --resume {path} to continue it, or "
                           "choose another --out")
        created = not path.exists()
        path.mkdir(parents=True, exist_ok=True)
        return path, created
    stem = Path(spec.path).stem if spec.path != "<string>" else spec.system.name
    base = Path("runs") / stem
    path, i = base, 1
    while path.exists():
        i += 1
        path = Path(f"{base}-{i}")
    path.mkdir(parents=True)
    return path, True


def train(spec: Spec | str | Path | None = None, *, out: str | Path | None = None,
          resume: str | Path | None = None, device: str | None = None, seed: int | None = None,
          dataset=None, data_dir: str | Path = "data",
          callback: Callable[[Progress], None] | None = None, report: bool = True,
          log: str | None = None, **overrides: Any) -> Run:
    """Train the model a spec describes and return its :class:`Run`.

    ``spec`` is a path or a :class:`Spec`; the data come from ``dataset`` if given, else
    from the spec (simulated and cached under ``data_dir``, or read from its data file).
    ``resume`` continues an interrupted run (to the same result on CPU); ``device`` and
    the other keyword arguments (``epochs=…``, ``lr=…``) override the stored options.
    ``log="tensorboard"`` also writes TensorBoard scalars to ``RUN/tensorboard``.

    The order matters for a user: the options resolve and the model and objective are
    built first (a bad spec fails at once), then the data are simulated or read, then the
    run directory is created. A failure before the first checkpoint leaves nothing behind.
    """
    if log not in (None, "tensorboard"):
        raise ValueError(f"log={log!r}: the only logger is 'tensorboard'")
    if log == "tensorboard":
        from .tensorboard import TensorBoardLogger  # noqa: F401  (fails early if missing)
    notify = (lambda phase, msg=None: callback(_phase(phase, msg))) if callback else \
        (lambda phase, msg=None: None)
    if resume is not None:
        run = Run(resume)
        spec_obj = run.spec
        values = asdict(run.config)
        # A step cap stops one invocation; resuming means going on (to `epochs`, within
        # the `minutes` budget, which counts the whole run) unless a new cap is given.
        values["steps"] = None
        for key, value in {**overrides, "device": device}.items():
            if value is not None:
                values[key] = value
        cfg = TrainConfig(**values)
        resolve_device(cfg.device)
        last = run.path / "checkpoints" / "last.pt"
        state = load_checkpoint(last) if last.exists() else None
        n_initial = state["model"]["x0_offset"].shape[0] \
            if state is not None and "x0_offset" in state["model"] else 0
        exp = build(spec_obj, cfg, n_initial=n_initial)
        notify("loading data")
        ds = dataset if dataset is not None else run.dataset()
        data, record = training_data(ds, cfg, resolve_device(cfg.device))
        warm = None
        trainer = Trainer(exp.rollout, exp.objective, data, cfg, run.path, callback,
                          truth=true_values(ds, exp.rollout.physical_parameters()))
        if state is not None:
            trainer.load_state(_to_device(state, trainer.device))
        # Written only once the checkpoint has loaded: a failed resume leaves the run's
        # config.json as it was.
        if trainer.dist.is_main:
            _write_config(run.path, spec_obj, cfg, run.info.get("dataset"), record)
    else:
        if spec is None:
            raise ValueError("train() needs a spec (or resume=RUN_DIR)")
        spec_obj = spec if isinstance(spec, Spec) else load_spec(spec)
        cfg = config_for(spec_obj, seed=seed, device=device, **overrides)
        dev = resolve_device(cfg.device)
        exp = build(spec_obj, cfg)  # validated before any data or directory exist
        dist = Distributed(dev)
        ds_path = None
        if dataset is None:
            notify("simulating data" if spec_obj.data is None or spec_obj.data.file is None
                   else "reading data")
            # Only rank 0 simulates; the others read its cache file.
            if dist.is_main:
                dataset, ds_path = dataset_for(spec_obj, cache_dir=data_dir)
            dist.barrier()
            if not dist.is_main:
                dataset, ds_path = dataset_for(spec_obj, cache_dir=data_dir)
        ds = dataset
        data, record = training_data(ds, cfg, dev)
        if cfg.fit_initial:
            exp = build(spec_obj, cfg, n_initial=len(data.train))
        fit_scales(exp.rollout, data, float(ds.dt))
        warm = _background_compile(spec_obj, cfg, data)
        trainer = Trainer(exp.rollout, exp.objective, data, cfg, Path("."), callback,
                          truth=true_values(ds, exp.rollout.physical_parameters()), dist=dist,
                          compile_in_background=warm)
        path, created = _new_run_dir(spec_obj, out) if dist.is_main else (None, False)
        path = _agree_on_path(trainer, path)
        trainer.dir = path
        try:
            if dist.is_main:
                atomic_write_text(path / "spec.phy", spec_obj.text)
                _write_config(path, spec_obj, cfg,
                              str(Path(ds_path).resolve()) if ds_path else None, record)
            trainer.save("last")
        except BaseException:
            if created:
                shutil.rmtree(path, ignore_errors=True)
            raise
        dist.barrier()
        run = Run(path)
    # Without a background compile the first step compiles inline (tens of seconds on a
    # CPU with a cold cache): say so, so that a display does not look stuck.
    board = None
    if log == "tensorboard" and trainer.dist.is_main:
        board = TensorBoardLogger(run.path / "tensorboard")
        trainer.callback = _both(callback, board)
    notify("compiling" if cfg.compile and warm is None else "training")
    try:
        reason = trainer.fit()
    finally:
        if board is not None:
            board.close()
        trainer.dist.barrier()
    run = Run(run.path)
    run._spec = spec_obj
    run.stop_reason = reason
    run.stopped_early = trainer.stopped_early
    if report and not trainer.stopped_early and trainer.dist.is_main:
        from ..reporting import write_report

        notify("writing the report")
        with compute_threads(cfg.threads, trainer.device, not spec_obj.system.is_grid):
            write_report(run, dataset=ds)
    trainer.dist.close()
    return run


def _both(first, second):
    def callback(p: Progress) -> None:
        if first is not None:
            first(p)
        second(p)
    return callback


def _background_compile(spec: Spec, cfg: TrainConfig, data):
    """With `compile` and a time budget (`minutes`), compile in a child process while the
    run starts eagerly (:mod:`physml.experiment.warm`); without a budget, inline."""
    if not (cfg.compile and cfg.minutes) or spec.text == "":
        return None
    from . import warm

    shape = (min(cfg.batch, len(data.train)), data.train.n_frames,
             *data.train.frames.shape[2:])
    n_initial = len(data.train) if cfg.fit_initial else 0
    return lambda: warm.start(spec, cfg, shape, n_initial)


def _phase(phase: str, message: str | None) -> Progress:
    return Progress(0, 0, 0, float("nan"), float("nan"), None, None, {}, {}, None, None, 0.0,
                    None, message, phase)


def _to_device(state: dict, device: torch.device) -> dict:
    if device.type == "cpu":
        return state
    return {k: (v.to(device) if torch.is_tensor(v) and k not in ("generator", "torch_rng")
                else v) for k, v in state.items()}


def _agree_on_path(trainer: Trainer, path: Path | None) -> Path:
    """Every process learns the run directory rank 0 created."""
    if not trainer.dist.active:
        return path
    import torch.distributed as dist

    box = [str(path) if path is not None else None]
    dist.broadcast_object_list(box, src=0)
    return Path(box[0])


def _write_config(path: Path, spec: Spec, cfg: TrainConfig, dataset: str | None,
                  validation: dict) -> None:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = {
        "config": asdict(cfg),
        "spec_path": str(Path(spec.path).resolve()) if spec.path != "<string>" else None,
        "dataset": dataset,
        "validation": validation,
        "distributed": {"world_size": world, "batch": "global",
                        "per_rank_batch": -(-cfg.batch // world)},
        "physml_version": __version__,
        "torch_version": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    atomic_write_text(path / "config.json", json.dumps(info, indent=2, default=str))
