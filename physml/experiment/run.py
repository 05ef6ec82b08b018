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
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

import torch

from .._version import __version__
from ..lang import parse_spec as _parse_spec
from ..models import Rollout
from ..symbolic.spec import Spec
from ..data import DataError
from ..errors import SpecError
from ..training.checkpoint import CheckpointError, atomic_write_text, describe_misfit, \
    ensure_writable, load_checkpoint, require_keys, storage_error
from ..training.config import TrainConfig
from ..training.distributed import Distributed
from ..training.trainer import Progress, Trainer, compute_threads, resolve_device
from .build import build, build_rollout, config_for
from .data import dataset_for, fit_scales, training_data, true_values
from .partial import check_initial_states, observed_channels, readout_of
from .spec import load_spec  # noqa: F401  (physml.experiment.run.load_spec)
from .vocabulary import vocabulary


class RunError(ValueError):
    """A run directory that cannot be used (missing files, unreadable checkpoint)."""


#: The hint after every message about a damaged run folder.
DAMAGED = "restore the file from a backup, or train a new run"


def _damaged(path: Path, key: str | None, problem: str, hint: str = DAMAGED) -> RunError:
    where = f"{path}: the key '{key}'" if key else f"{path}:"
    return RunError(f"{where} {problem}; {hint}")


def _check_type(value: Any, hint: Any) -> str | None:
    """What is wrong with ``value`` for a TrainConfig field of type ``hint`` (None: fine)."""
    import types
    import typing

    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    members = typing.get_args(hint) if union else (hint,)
    args = [a for a in members if a is not type(None)]
    optional = len(args) < len(members)
    if value is None:
        return None if optional else "is null"
    base = typing.get_origin(args[0]) or args[0]
    ok = {int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          bool: lambda v: isinstance(v, bool),
          str: lambda v: isinstance(v, str),
          dict: lambda v: isinstance(v, dict)}.get(base, lambda v: True)
    if ok(value):
        return None
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
             dict: "a JSON object"}
    shown = json.dumps(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return f"holds {shown}, expected {names.get(base, base.__name__)}" + \
        (" or null" if optional else "")


def _read_config(path: Path) -> tuple[dict, TrainConfig]:
    """``config.json``, checked key by key against :class:`TrainConfig`."""
    from dataclasses import fields
    from typing import get_type_hints

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RunError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        info = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _damaged(path, None, f"not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise _damaged(path, None, f"not valid JSON (line {exc.lineno}, column {exc.colno}: "
                       f"{exc.msg})") from None
    if not isinstance(info, dict):
        raise _damaged(path, None, "does not hold a JSON object")
    if "config" not in info:
        raise _damaged(path, "config", "is missing")
    values = info["config"]
    if not isinstance(values, dict):
        raise _damaged(path, "config", "does not hold a JSON object")
    for key, kind in (("spec_path", str), ("dataset", str), ("validation", dict)):
        if info.get(key) is not None and not isinstance(info[key], kind):
            raise _damaged(path, key, f"holds {json.dumps(info[key])[:40]}, expected "
                           f"{'a string' if kind is str else 'a JSON object'}")
    hints = get_type_hints(TrainConfig)
    known = {f.name for f in fields(TrainConfig)}
    for key, value in values.items():
        if key not in known:
            raise _damaged(path, f"config.{key}", "is not a training option of this version "
                           f"of physml {__version__}", "remove it, or use the physml version "
                           "that wrote the run")
        problem = _check_type(value, hints[key])
        if problem:
            raise _damaged(path, f"config.{key}", problem)
    try:
        return info, TrainConfig(**values)
    except (TypeError, ValueError) as exc:
        raise _damaged(path, "config", f"holds options that do not fit together ({exc})") \
            from None


class Run:
    """A trained (or training) run on disk.

    Everything read from the folder is checked on the way in: a missing or damaged file
    raises :class:`RunError` naming the file (and the key, for ``config.json`` and the
    checkpoints) and what to do about it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        cfg_path = self.path / "config.json"
        if not self.path.is_dir():
            raise RunError(f"{self.path}: no such folder, so not a physml run directory; "
                           "give the folder `physml train` wrote (it holds config.json)")
        if not cfg_path.is_file():
            raise RunError(f"{cfg_path}: missing, so {self.path} is not a physml run directory "
                           "(or a damaged one); give the folder `physml train` wrote")
        self.info, self.config = _read_config(cfg_path)
        self._spec: Spec | None = None
        self.stop_reason: str | None = None

    @property
    def spec(self) -> Spec:
        if self._spec is None:
            path = self.path / "spec.phy"
            if not path.is_file():
                raise RunError(f"{path}: missing; {DAMAGED}")
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise RunError(f"{path}: cannot read the run's spec ({exc}); {DAMAGED}") \
                    from None
            origin = self.info.get("spec_path") or str(path)
            try:
                self._spec = _parse_spec(text, origin, vocabulary=vocabulary())
            except SpecError as exc:
                # Positions in the spec itself point into the run's copy (the text parsed),
                # not into the original file, which may have changed since.
                pos = exc.pos
                if pos is not None and pos.file == origin:
                    pos = replace(pos, file=str(path))
                hint = exc.hint or ("the run's spec.phy no longer passes the checks of this "
                                    "version of physml; " + DAMAGED)
                raise type(exc)(exc.message, pos, exc.source, hint=hint,
                                length=exc.length) from None
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

    def checkpoint_path(self, which: str = "best") -> Path:
        """``checkpoints/best.pt`` (``last.pt`` where no validation ran) or ``last.pt``."""
        path = self.path / "checkpoints" / f"{which}.pt"
        if which == "best" and not path.exists():
            path = self.path / "checkpoints" / "last.pt"
        return path

    def checkpoint(self, which: str = "best") -> dict[str, Any]:
        path = self.checkpoint_path(which)
        if not path.is_file():
            raise RunError(f"{path}: missing; {DAMAGED}")
        try:
            state = load_checkpoint(path)
        except (FileNotFoundError, ValueError) as exc:
            raise RunError(f"{exc}; {DAMAGED}") from None
        try:
            require_keys(state, path, ("model",))
        except CheckpointError as exc:
            raise RunError(str(exc)) from None
        return state

    def load_model(self, which: str = "best", device: str | torch.device = "cpu") -> Rollout:
        """The trained rollout (``best`` or ``last`` checkpoint) in eval mode."""
        state = self.checkpoint(which)
        path = self.checkpoint_path(which)
        torch.manual_seed(self.config.seed)
        n_initial = _n_initial(state, path)
        rollout = build_rollout(self.spec, self.config, n_initial)
        try:
            rollout.load_state_dict(state["model"])
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise RunError(describe_misfit(path, exc)) from None
        return rollout.to(device).eval()

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"


def _n_initial(state: dict, path) -> int:
    offset = state["model"].get("x0_offset")
    if offset is None:
        return 0
    if offset.dim() < 1:
        raise RunError(f"{path}: the key 'model.x0_offset' does not fit the run's spec "
                       f"(a tensor of shape {tuple(offset.shape)}); {DAMAGED}")
    return offset.shape[0]


#: The lock file a training holds in its run folder.
LOCK = ".lock"


def _main_process() -> bool:
    """Rank 0 (or no torchrun): the one process that writes and locks the run folder."""
    return int(os.environ.get("RANK", "0")) == 0


class RunLock:
    """``RUN/.lock``, created with O_CREAT|O_EXCL and holding ``pid host``: one training at
    a time in a run folder (two trainings into one ``--out``, two resumes of one run).

    A lock left by a process that no longer runs (kill -9, power loss) on this host is
    taken over, with a message; one from a live process, or from another host, is an
    error naming the lock file."""

    def __init__(self, folder: Path, notify: Callable[[str], None] = lambda msg: None,
                 other: str | None = "choose another --out"):
        self.path = Path(folder) / LOCK
        self.notify = notify
        self.other = other
        self.held = False

    def _in_use(self, pid: int | None, host: str | None) -> RunError:
        who = f"pid {pid}" if pid is not None else "a process"
        return RunError(f"{self.path}: the run folder is in use by another physml training "
                        f"({who}{' on ' + host if host else ''}); wait for it to end"
                        + (f", or {self.other}" if self.other else ""))

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise storage_error(exc, self.path, "create",
                                "choose a writable folder with --out") from None
        try:
            os.write(fd, f"{os.getpid()} {_host()}\n".encode())
        except OSError as exc:
            os.close(fd)
            os.unlink(self.path)
            raise storage_error(exc, self.path) from None
        os.close(fd)
        self.held = True
        return True

    def _owner(self) -> tuple[int | None, str | None]:
        try:
            words = self.path.read_text(encoding="utf-8", errors="replace").split()
            return int(words[0]), (words[1] if len(words) > 1 else None)
        except (OSError, ValueError, IndexError):
            return None, None

    def acquire(self) -> "RunLock":
        import fcntl

        if self._create():
            return self
        pid, host = self._owner()
        if pid is not None and _alive(pid, host):
            raise self._in_use(pid, host)
        if pid is None and self.path.exists():
            # Being written right now, or damaged: look again once.
            time.sleep(0.2)
            pid, host = self._owner()
            if pid is not None and _alive(pid, host):
                return self.acquire()
        # Stale. Take it over under a lock on the folder, so that two processes taking
        # over the same stale lock cannot both succeed.
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            now, _ = self._owner()
            if now == pid and self.path.exists():
                self.path.unlink()
            if not self._create():
                raise self._in_use(*self._owner())
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self.notify(f"took over the lock {self.path}, left by "
                    f"{f'pid {pid}' if pid is not None else 'a process'} that no longer runs")
        return self

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                if self._owner()[0] == os.getpid():
                    self.path.unlink()
            except OSError:
                pass


def _host() -> str:
    import socket

    return socket.gethostname() or "localhost"


def _alive(pid: int, host: str | None) -> bool:
    if host is not None and host != _host():
        return True  # cannot tell: never take over another machine's lock
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) runs no more.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def _new_run_dir(spec: Spec, out: str | Path | None,
                 notify: Callable[[str], None]) -> tuple[Path, bool, RunLock]:
    """A fresh run directory, whether this call created it (to remove on failure), and
    the lock held on it."""
    if out is not None:
        path = Path(out)
        if (path / "config.json").exists():
            raise _exists(path)
        created = not path.exists()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error(exc, path, "create", "choose another --out") from None
        try:
            lock = RunLock(path, notify).acquire()
        except BaseException:
            if created:
                shutil.rmtree(path, ignore_errors=True)
            raise
        # Checked again under the lock: a training that just ended released it.
        if (path / "config.json").exists():
            lock.release()
            raise _exists(path)
        return path, created, lock
    stem = Path(spec.path).stem if spec.path != "<string>" else spec.system.name
    base = Path("runs") / stem
    path, i = base, 1
    while True:
        try:
            path.mkdir(parents=True)
            break
        except FileExistsError:  # taken (maybe by a training started at the same time)
            i += 1
            path = Path(f"{base}-{i}")
        except OSError as exc:
            raise storage_error(exc, path, "create", "choose a folder with --out") from None
    return path, True, RunLock(path, notify).acquire()


def _exists(path: Path) -> RunError:
    return RunError(f"{path} already holds a run; use --resume {path} to continue it, or "
                    "choose another --out")


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
    built first (a bad spec fails at once), the folders to be written are checked, then
    the data are simulated or read, then the run directory is created. A failure before
    the first checkpoint leaves nothing behind. A training holds ``RUN/.lock`` (see
    :class:`RunLock`) while it writes into its folder.
    """
    if log not in (None, "tensorboard"):
        raise ValueError(f"log={log!r}: the only logger is 'tensorboard'")
    if log == "tensorboard":
        from .tensorboard import TensorBoardLogger  # noqa: F401  (fails early if missing)
    notify = (lambda phase, msg=None: callback(_phase(phase, msg))) if callback else \
        (lambda phase, msg=None: None)
    say = lambda msg: notify("training", msg)  # noqa: E731
    lock: RunLock | None = None
    try:
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
            if _main_process():
                ensure_writable(run.path, "copy the run folder to a writable place and "
                                "resume it there")
                lock = RunLock(run.path, say, other=None).acquire()
            last = run.path / "checkpoints" / "last.pt"
            if not last.is_file():
                raise RunError(f"{last}: missing, so the run cannot be resumed; {DAMAGED}")
            state = run.checkpoint("last")
            n_initial = _n_initial(state, last)
            exp = build(spec_obj, cfg, n_initial=n_initial)
            notify("loading data")
            ds = dataset if dataset is not None else run.dataset()
            data, record = training_data(ds, cfg, resolve_device(cfg.device),
                                         observed_channels(spec_obj), readout_of(spec_obj))
            warm = None
            trainer = Trainer(exp.rollout, exp.objective, data, cfg, run.path, callback,
                              truth=true_values(ds, exp.rollout.physical_parameters()))
            try:
                trainer.load_state(_to_device(state, trainer.device), last)
            except CheckpointError as exc:
                raise RunError(str(exc)) from None
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
            from .describe import spec_warnings

            for warning in spec_warnings(spec_obj, cfg.method):
                say(f"warning: {warning}")
            dist = Distributed(dev)
            if dist.is_main:
                # Before hours of simulation or training: can the results be written?
                if out is not None and (Path(out) / "config.json").exists():
                    raise _exists(Path(out))
                ensure_writable(out if out is not None else Path("runs"),
                                "choose another --out")
                if dataset is None and (spec_obj.data is None or spec_obj.data.file is None):
                    ensure_writable(data_dir, "choose another --data-dir")
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
            if dist.is_main:
                for warning in identifiability_warnings(spec_obj, ds, cfg):
                    say(f"warning: {warning}")
            data, record = training_data(ds, cfg, dev, observed_channels(spec_obj),
                                         readout_of(spec_obj))
            try:
                check_initial_states(spec_obj, cfg, data)
            except ValueError as exc:
                raise DataError(str(exc)) from None
            if cfg.fit_initial:  # one offset per training trajectory, known only now
                exp.rollout.fit_initial_states(len(data.train), spec_obj.system.state_shape())
            fit_scales(exp.rollout, data, float(ds.dt))
            warm = _background_compile(spec_obj, cfg, data)
            trainer = Trainer(exp.rollout, exp.objective, data, cfg, Path("."), callback,
                              truth=true_values(ds, exp.rollout.physical_parameters()), dist=dist,
                              compile_in_background=warm)
            path, created = None, False
            if dist.is_main:
                path, created, lock = _new_run_dir(spec_obj, out, say)
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
                    if lock is not None:
                        lock.held = False
                raise
            dist.barrier()
            run = Run(path)
        # Without a background compile the first step compiles inline (tens of seconds on
        # a CPU with a cold cache): say so, so that a display does not look stuck.
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
            try:
                with compute_threads(cfg.threads, trainer.device, not spec_obj.system.is_grid):
                    write_report(run, dataset=ds)
            except OSError as exc:
                raise storage_error(exc, exc.filename or run.path / "plots", note=(
                    f"the trained run itself is saved in {run.path}")) from None
        trainer.dist.close()
        return run
    finally:
        if lock is not None:
            lock.release()


def identifiability_warnings(spec: Spec, dataset, cfg: TrainConfig,
                             max_trajectories: int = 8) -> list[str]:
    """What the identifiability check has to say before training, when the Fisher
    information of the learned prior parameters is near-singular on these data (a few
    trajectories' sensitivities, scaled to all; nothing when it is well conditioned)."""
    if spec.prior is None or not spec.prior.learn or spec.prior.hamiltonian is not None:
        return []
    if spec.hidden_variables():
        # The Fisher check reads every channel; with hidden variables the scaling
        # symmetries are what is said (:func:`.describe.symmetry_warnings`).
        return []
    from ..discover.identifiability import identifiability
    from . import _frames_of

    try:
        result = identifiability(spec, **_frames_of(dataset, max_trajectories),
                                 solver=cfg.solver, step=cfg.step,
                                 max_trajectories=max_trajectories, confounding=False)
    except Exception as exc:  # noqa: BLE001 - a check before training never stops it
        return [f"identifiability check skipped ({type(exc).__name__}: {exc})"]
    if not result.near_singular:
        return []
    lines = [line for line in result.lines() if not line.startswith("  ")]
    return [f"identifiability: {lines[0]}"] + lines[1:2] + \
        ["see `physml check --identifiability` for the whole analysis"]


def _both(first, second):
    def callback(p: Progress) -> None:
        if first is not None:
            first(p)
        second(p)
    return callback


def _background_compile(spec: Spec, cfg: TrainConfig, data):
    """With `compile` and a time budget (`minutes`), compile in a child process while the
    run starts eagerly (:mod:`physml.experiment.warm`); without a budget, or when a child
    compiled the same graphs for an earlier run (a warm cache), inline."""
    if not (cfg.compile and cfg.minutes) or spec.text == "":
        return None
    from . import warm

    shape = (min(cfg.batch, len(data.train)), data.train.n_frames,
             *data.train.whole.frames.shape[2:])
    n_initial = len(data.train) if cfg.fit_initial else 0
    if warm.is_warm(warm.key(spec, cfg, shape, n_initial)):
        return None  # compiled before: the run compiles inline from the cache
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
