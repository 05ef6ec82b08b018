"""Run directories and the ``physml.train`` entry point.

A run directory holds::

    spec.phy            the spec text as trained
    config.json         every resolved option, the dataset used, versions
    metrics.jsonl       one line per batch (losses, λ, ‖F_a‖², learned parameters)
    checkpoints/        last.pt (resume), best.pt (best validation error)
    report.json/.md     test metrics and identified parameters (written after training)
    plots/*.png         training curves, λ, parameters, predictions
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch

from .. import __version__
from ..lang import load_spec, parse_spec
from ..models.hybrid import HybridModel, build_model
from ..symbolic.spec import Spec
from .checkpoint import atomic_write_text, load_checkpoint
from .trainer import Progress, TrainConfig, Trainer


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
        except json.JSONDecodeError as exc:
            raise RunError(f"{cfg_path} is not valid JSON: {exc}") from None
        self.config = TrainConfig(**self.info["config"])
        self._spec: Spec | None = None

    @property
    def spec(self) -> Spec:
        if self._spec is None:
            text = (self.path / "spec.phy").read_text(encoding="utf-8")
            self._spec = parse_spec(text, self.info.get("spec_path") or str(self.path / "spec.phy"))
        return self._spec

    @property
    def dataset_path(self) -> Path | None:
        p = self.info.get("dataset")
        return Path(p) if p else None

    def dataset(self):
        from ..data import load_dataset

        if self.dataset_path is None or not self.dataset_path.exists():
            from ..data import dataset_for

            ds, _ = dataset_for(self.spec)
            return ds
        return load_dataset(self.dataset_path, spec=self.spec)

    def metrics(self) -> list[dict[str, Any]]:
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def load_model(self, which: str = "best", device: str | torch.device = "cpu") -> HybridModel:
        """The trained model (``best`` or ``last`` checkpoint) in eval mode."""
        path = self.path / "checkpoints" / f"{which}.pt"
        if which == "best" and not path.exists():
            path = self.path / "checkpoints" / "last.pt"
        try:
            state = load_checkpoint(path)
        except (FileNotFoundError, ValueError) as exc:
            raise RunError(str(exc)) from None
        torch.manual_seed(self.config.seed)
        model = build_model(self.spec, self.config.method)
        model.load_state_dict(state["model"])
        return model.to(device).eval()

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"


def _new_run_dir(spec: Spec, out: str | Path | None) -> Path:
    if out is not None:
        path = Path(out)
        if (path / "config.json").exists():
            raise RunError(f"{path} already holds a run; use --resume {path} to continue it, or "
                           "choose another --out")
        path.mkdir(parents=True, exist_ok=True)
        return path
    stem = Path(spec.path).stem if spec.path != "<string>" else spec.system.name
    base = Path("runs") / stem
    path, i = base, 1
    while path.exists():
        i += 1
        path = Path(f"{base}-{i}")
    path.mkdir(parents=True)
    return path


def train(spec: Spec | str | Path | None = None, *, out: str | Path | None = None,
          resume: str | Path | None = None, device: str | None = None, seed: int | None = None,
          dataset=None, data_dir: str | Path = "data",
          callback: Callable[[Progress], None] | None = None, report: bool = True,
          **overrides: Any) -> Run:
    """Train the model a spec describes and return its :class:`Run`.

    ``spec`` is a path or a :class:`Spec`; the data come from ``dataset`` if given, else
    from the spec (simulated and cached under ``data_dir``, or read from its data file).
    ``resume`` continues an interrupted run (to the same result on CPU). Other keyword
    arguments override the spec's ``train`` options (``epochs=…``, ``lr=…``).
    """
    if resume is not None:
        run = Run(resume)
        spec_obj = run.spec
        cfg_values = asdict(run.config)
        # A step cap stops one invocation; resuming means going on (to `epochs`, within
        # the `minutes` budget, which counts the whole run) unless a new cap is given.
        cfg_values["steps"] = None
        for key, value in overrides.items():
            if value is not None:
                cfg_values[key] = value
        if device is not None:
            cfg_values["device"] = device
        cfg = TrainConfig(**cfg_values)
        ds = dataset if dataset is not None else run.dataset()
        trainer = Trainer(spec_obj, ds, cfg, run.path, callback)
        last = run.path / "checkpoints" / "last.pt"
        if last.exists():
            trainer.load_state(load_checkpoint(last, map_location=trainer.device))
        _write_config(run.path, spec_obj, cfg, run.info.get("dataset"))
    else:
        if spec is None:
            raise ValueError("train() needs a spec (or resume=RUN_DIR)")
        spec_obj = spec if isinstance(spec, Spec) else load_spec(spec)
        cfg = TrainConfig.from_spec(spec_obj, seed=seed, device=device, **overrides)
        ds_path = None
        if dataset is None:
            from ..data import dataset_for

            dataset, ds_path = dataset_for(spec_obj, cache_dir=data_dir)
        path = _new_run_dir(spec_obj, out)
        atomic_write_text(path / "spec.phy", spec_obj.text)
        _write_config(path, spec_obj, cfg, str(Path(ds_path).resolve()) if ds_path else None)
        ds = dataset
        trainer = Trainer(spec_obj, ds, cfg, path, callback)
        trainer.save("last")
        run = Run(path)
    trainer.fit()
    run = Run(run.path)
    run._spec = spec_obj
    if report and not trainer.stopped_early:
        from ..reporting.report import write_report

        write_report(run, dataset=ds)
    run.stopped_early = trainer.stopped_early
    return run


def _write_config(path: Path, spec: Spec, cfg: TrainConfig, dataset: str | None) -> None:
    info = {
        "config": asdict(cfg),
        "spec_path": str(Path(spec.path).resolve()) if spec.path != "<string>" else None,
        "dataset": dataset,
        "physml_version": __version__,
        "torch_version": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    atomic_write_text(path / "config.json", json.dumps(info, indent=2, default=str))
