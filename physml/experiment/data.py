"""The data of an experiment: the spec's data file, or a cached simulation; and the
trajectories training sees (with a validation split that is never the test split)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from ..data import DataError, Dataset, Trajectories, Windows, load_dataset, \
    save_dataset, split_off_validation
from ..data.dataset import FORMAT_VERSION
from ..simulation import simulate
from ..solve import get_solver
from ..symbolic.spec import Spec
from ..training.config import TrainConfig
from ..training.trainer import TrainingData


def _canonical(obj) -> str:
    """A stable text of a spec part: dataclass fields (positions left out), SymPy as srepr."""
    import dataclasses

    import sympy

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        items = [f"{f.name}={_canonical(getattr(obj, f.name))}" for f in dataclasses.fields(obj)
                 if f.name not in ("pos", "file_pos", "source", "text", "path")]
        return f"{type(obj).__name__}({', '.join(items)})"
    if isinstance(obj, (list, tuple)):
        return "(" + ", ".join(_canonical(x) for x in obj) + ")"
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{k!r}: {_canonical(v)}" for k, v in sorted(obj.items())) + "}"
    if isinstance(obj, sympy.Basic):
        return sympy.srepr(obj)
    return repr(obj)


def spec_key(spec, seed: int | None = None) -> str:
    """The cache key of a spec's data: a hash of what determines them — the system (its
    equations, parameters, domain), the data block, the environments and the seed — so
    specs that differ only in their prior or training (the rows of one thesis table) share
    one simulation, and a changed library system invalidates the cache."""
    seed = spec.data.seed if seed is None and spec.data is not None else seed
    h = hashlib.sha256()
    for part in (f"physml-data-v{FORMAT_VERSION}", _canonical(spec.system),
                 _canonical(spec.data), _sampler_defaults(spec), _canonical(spec.environments),
                 str(seed)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _sampler_defaults(spec) -> str:
    """The options of the spec's samplers that it leaves to their defaults: a default
    physml changes must not reuse data drawn with the old one."""
    from ..errors import SpecError
    from ..simulation.samplers import bind

    if spec.data is None:
        return ""
    parts = []
    for sampler in spec.data.initial:
        try:
            kind, opts = bind(sampler.call)
        except SpecError:    # an unknown sampler fails later, with its located message
            continue
        written = {k for k, _ in sampler.call.kwargs} | \
            {p for p, _ in kind.params[:len(sampler.call.args)]}
        parts.append(f"{sampler.call.name}:" + ",".join(
            f"{k}={v!r}" for k, v in sorted(opts.items()) if k not in written))
    return ";".join(parts)


def default_path(spec, cache_dir: str | os.PathLike = "data", seed: int | None = None) -> Path:
    """``CACHE_DIR/<system>-<key>.h5``: the key is :func:`spec_key`, which the dataset also
    carries (``meta["key"]``) and ``physml data info`` prints."""
    return Path(cache_dir) / f"{spec.system.name}-{spec_key(spec, seed)}.h5"


def simulate_keyed(spec: Spec, seed: int | None = None, **simulate_kw) -> Dataset:
    """:func:`physml.simulation.simulate`, the dataset stamped with its :func:`spec_key`
    (in ``meta``, so the content hash covers it) — the identifier of its cache file."""
    ds = simulate(spec, seed=seed, **simulate_kw)
    ds.meta["key"] = spec_key(spec, seed)
    ds.hash = ds.content_hash()
    return ds


def data_file(spec) -> Path | None:
    """The user data file a spec names (relative to the spec's folder), if any."""
    if spec.data is None or spec.data.file is None:
        return None
    p = Path(spec.data.file).expanduser()
    if not p.is_absolute() and spec.path and spec.path != "<string>":
        p = Path(spec.path).parent / p
    return p


def check_data_file(spec: Spec) -> None:
    """The data file a spec names exists: else a located error at its ``file`` line."""
    from ..errors import OptionError

    path = data_file(spec)
    if path is None or path.is_file():
        return
    what = "is a folder, not a file" if path.exists() else "does not exist"
    raise OptionError(f"data file {path} {what}", spec.data.file_pos, spec.text,
                      length=len(spec.data.file) + 2,
                      hint="paths are relative to the spec's folder; see README, "
                      "\"Your own data\", for the layout")


def dataset_for(spec: Spec | str | os.PathLike, cache_dir: str | os.PathLike = "data", seed: int | None = None,
                force: bool = False, **simulate_kw) -> tuple[Dataset, Path]:
    """Load the dataset a spec describes: its data file when it names one, else a cached
    simulation keyed by :func:`spec_key` (simulated and saved on the first call).

    Extra keywords (``device``, ``progress``, ``drop_unstable`` …) go to
    :func:`physml.simulation.simulate`. A damaged cache file is simulated again.
    """
    if not isinstance(spec, Spec):
        from ..lang import load_spec  # the data block is all this needs

        spec = load_spec(spec)
    user = data_file(spec)
    if user is not None:
        check_data_file(spec)
        return load_dataset(user, spec=spec), user
    path = default_path(spec, cache_dir, seed)
    if path.exists() and not force:
        try:
            return load_dataset(path), path
        except DataError:
            pass  # damaged or stale: simulate again below
    ds = simulate_keyed(spec, seed, **simulate_kw)
    save_dataset(ds, path, "choose another --data-dir")
    return ds, path


def training_data(dataset: Dataset, cfg: TrainConfig, device=None,
                  observed: list[int] | None = None, readout=None
                  ) -> tuple[TrainingData, dict]:
    """The training and validation trajectories of a run, and a record for
    ``config.json`` of where the validation trajectories came from.

    Model selection never looks at the test split: with no (or an empty) ``val`` split,
    ``cfg.val_fraction`` of the training trajectories are held out for validation.
    """
    train = dataset.splits["train"]
    val = dataset.splits.get("val")
    record: dict = {"source": "val split"}
    if val is None or val.shape[1] == 0:
        train, val, held = split_off_validation(train, cfg.val_fraction, cfg.seed)
        record = {"source": "held out of train", "fraction": cfg.val_fraction,
                  "train_indices_held_out": held, "trajectories": len(held)}
    def make(x):
        traj = Trajectories(x, dataset.times, dataset.history, device=device,
                            observed=observed, readout=readout)
        if cfg.windows != "all":
            return traj
        try:
            return Windows(traj, cfg.horizon)
        except ValueError as exc:  # user data on an uneven time grid
            where = dataset.meta.get("source", "the data")
            raise DataError(f"{where}: training option `windows all`: {exc}; resample them "
                            "on a uniform grid, or drop `windows all`") from None

    data = TrainingData(make(train), make(val), record["source"])
    if cfg.windows == "all":
        record["windows"] = {"length": data.train.n_frames, "train": len(data.train),
                             "val": len(data.val)}
    return data, record


def measured_frames(traj, given_x0: bool) -> torch.Tensor:
    """The training frames with NaN where nothing was measured (a hidden variable, a gap),
    and, with ``given_x0``, the initial state the forecasts start from where the data
    give it (thesis §2.3 Setting 2: the full X₀; a hidden variable then has a scale)."""
    if traj.mask is None:
        return traj.frames
    frames = torch.where(traj.mask.bool(), traj.frames, torch.nan)
    if given_x0 and getattr(traj, "x0_known", None) is not None:
        frames[:, 0] = torch.where(traj.x0_known, traj.x0, frames[:, 0])
    return frames


def fit_scales(rollout, data: TrainingData, dt: float) -> None:
    """Scale the augmentation network's inputs and outputs to the training data: the
    measured values, and the given initial states when no encoder replaces them."""
    train = data.train.whole  # (the trajectories `windows all` cuts windows from)
    if train.n_frames > 1 and rollout.readout is None:  # (H·X: no state scale seen)
        frames = measured_frames(train, given_x0=rollout.encoder is None)
        # under `solver direct` the network is the one-step map: it outputs states
        rollout.field.fit_scales(frames, dt,
                                 rate=not get_solver(rollout.solver.name).is_map,
                                 env=train.env)
    if rollout.encoder is not None:
        rollout.encoder.fit_scales(train.frames, train.mask)


def true_values(dataset: Dataset, learned) -> dict[str, float]:
    """The values the data were simulated with, for the learned parameters (one
    environment only). User data (``meta["source"]``, the file they were read from) have
    none: their spec's parameter values are initial guesses, not a reference."""
    envs = dataset.env_params or []
    if not envs or dataset.meta.get("source"):
        return {}
    if len(envs) > 1:  # several environments (§3.4): `name[env]`, and values all share
        out = {f"{k}[{n}]": float(v) for n, e in zip(dataset.env_names, envs)
               for k, v in e.items() if f"{k}[{n}]" in learned}
        out.update({k: float(next(iter(vals))) for k in learned
                    if len(vals := {e.get(k) for e in envs}) == 1 and None not in vals})
        return out
    return {k: float(v) for k, v in envs[0].items() if k in learned}
