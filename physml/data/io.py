"""Reading and writing datasets.

**The physml format** is one HDF5 file (h5py), readable by any HDF5/netCDF-4 tool
(``xarray.open_dataset(path, engine="h5netcdf", phony_dims="access")``):

===================  =================================================================
``/time``            (T,) float64, a dimension scale attached to axis 2 of every split
``/train`` …         (E, N, T, *state) per split (float32 by default)
``/train_clean`` …   the noiseless arrays, when the data are noisy
``/env_params``      (E, P) float64, columns named by the attribute ``param_names``
attributes           ``format``, ``format_version``, ``spec_text``, ``seed``, ``noise``,
                     ``variables``, ``state_shape``, ``env_names``, ``env_params`` (JSON),
                     ``dt``, ``history``, ``physml_version``, ``hash``, ``meta`` (JSON)
===================  =================================================================

Files are written to a temporary name in the same folder and renamed (atomic on POSIX),
so an interrupted run never leaves a half-written dataset under the final name.

**User data** (``.npz``, or ``.h5``/``.hdf5``/``.nc`` without the physml attributes) are
read through a mapping from spec variable names to array names; see :func:`load_user`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from .dataset import FORMAT, FORMAT_VERSION, DataError, Dataset

SPLIT_NAMES = ("train", "val", "test")


# ---------------------------------------------------------------------------------------
# physml format

def save_dataset(ds: Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` to ``path`` (HDF5) atomically; returns the path."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w", track_order=True) as f:
            a = f.attrs
            a["format"] = FORMAT
            a["format_version"] = FORMAT_VERSION
            a["spec_text"] = ds.spec_text
            a["seed"] = int(ds.seed)
            a["noise"] = float(ds.noise)
            a["variables"] = json.dumps(list(ds.variables))
            a["state_shape"] = np.asarray(ds.state_shape, dtype=np.int64)
            a["env_names"] = json.dumps(list(ds.env_names))
            a["env_params"] = json.dumps(ds.env_params)
            a["dt"] = float(ds.dt)
            a["history"] = int(ds.history)
            a["physml_version"] = str(ds.meta.get("physml_version", _version()))
            a["hash"] = ds.hash
            a["meta"] = json.dumps(ds.meta, default=str)
            time = f.create_dataset("time", data=ds.times.numpy(), track_times=False)
            time.make_scale("time")
            names = sorted({k for p in ds.env_params for k in p})
            a["param_names"] = json.dumps(names)
            f.create_dataset("env_params", track_times=False, data=np.array(
                [[p.get(k, np.nan) for k in names] for p in ds.env_params], dtype=np.float64
            ).reshape(len(ds.env_params), len(names)))
            groups = [(k, v) for k, v in ds.splits.items()]
            if ds.splits_clean:
                groups += [(f"{k}_clean", v) for k, v in ds.splits_clean.items()]
            for name, x in groups:
                arr = np.ascontiguousarray(x.detach().cpu().numpy())
                d = f.create_dataset(name, data=arr, track_times=False,
                                     chunks=_chunks(arr.shape, arr.itemsize))
                d.dims[2].attach_scale(time)
                d.attrs["dims"] = json.dumps(["env", "traj", "time", *_state_dims(ds)])
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _chunks(shape, itemsize):
    """Chunks of one trajectory (all times), so reading a batch of trajectories is cheap."""
    c = (1, 1) + tuple(shape[2:])
    return c if np.prod(c) * itemsize >= 1024 else None


def _state_dims(ds: Dataset) -> list[str]:
    if len(ds.state_shape) == 1:
        return ["variable"]
    return ["variable", *("x", "y", "z")[: len(ds.state_shape) - 1]]


def _version() -> str:
    from .._version import __version__
    return __version__


def _read_physml(f, path: Path) -> Dataset:
    a = f.attrs
    version = int(a.get("format_version", 0))
    if version > FORMAT_VERSION:
        raise DataError(f"{path}: dataset format version {version} is newer than this physml "
                        f"reads ({FORMAT_VERSION}); upgrade physml")
    try:
        variables = tuple(json.loads(a["variables"]))
        state_shape = tuple(int(s) for s in a["state_shape"])
        env_names = tuple(json.loads(a["env_names"]))
        env_params = json.loads(a["env_params"])
        times = torch.from_numpy(np.asarray(f["time"][()], dtype=np.float64))
        splits, clean = {}, {}
        for name in SPLIT_NAMES:
            if name in f:
                splits[name] = torch.from_numpy(np.asarray(f[name][()]))
            if f"{name}_clean" in f:
                clean[name] = torch.from_numpy(np.asarray(f[f"{name}_clean"][()]))
        meta = json.loads(a.get("meta", "{}"))
        stored_hash = str(a["hash"])
        ds = Dataset(variables, state_shape, times, splits, float(a["dt"]), int(a["history"]),
                     env_names, env_params, str(a["spec_text"]), int(a["seed"]),
                     float(a["noise"]), clean or None, meta)
    except DataError:
        raise
    except (KeyError, OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: damaged physml dataset ({type(exc).__name__}: {exc}); "
                        "delete it and simulate again") from None
    if ds.hash != stored_hash:
        raise DataError(f"{path}: the arrays do not match the stored hash {stored_hash[:12]} "
                        f"(got {ds.hash[:12]}): the file was modified or is damaged; delete it "
                        "and simulate again")
    return ds


# ---------------------------------------------------------------------------------------
# entry point

def load_dataset(path: str | os.PathLike, spec=None, mapping: Mapping[str, str] | None = None
                 ) -> Dataset:
    """Load a dataset: a physml HDF5 file, or user data (``.npz``, ``.h5``, ``.nc``).

    For user data, ``spec`` (a :class:`~physml.symbolic.spec.Spec` or a path) says which
    variables and grid to expect, and ``mapping`` (default: the spec's ``map`` line, else
    the variable names themselves) which array holds each variable.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_user(path, spec, mapping)
    if suffix not in (".h5", ".hdf5", ".nc", ".nc4", ".he5"):
        raise DataError(f"{path}: unknown data format {suffix!r}; use .h5 (physml or HDF5/"
                        "netCDF-4 user data) or .npz")
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5/netCDF-4 file ({exc}); it may be "
                        "truncated or damaged — delete it and simulate or export it again"
                        ) from None
    with f:
        if f.attrs.get("format") == FORMAT:
            return _read_physml(f, path)
    return load_user(path, spec, mapping)


# ---------------------------------------------------------------------------------------
# user data

def _open_arrays(path: Path) -> tuple[dict[str, np.ndarray], callable]:
    """Names → lazily read arrays (numpy) of an .npz or HDF5 file."""
    if path.suffix.lower() == ".npz":
        try:
            z = np.load(path, allow_pickle=False)
            return {k: z[k] for k in z.files}
        except Exception as exc:  # zipfile.BadZipFile, ValueError (pickled objects) …
            raise DataError(f"{path}: cannot read the .npz file ({exc})") from None
    import h5py

    out = {}
    try:
        with h5py.File(path, "r") as f:
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    out[name] = obj[()]
            f.visititems(visit)
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5/netCDF-4 file ({exc})") from None
    return out


def load_user(path: str | os.PathLike, spec=None, mapping: Mapping[str, str] | None = None,
              ) -> Dataset:
    """User arrays → :class:`Dataset`, checking shapes, dtypes, time and finiteness.

    Each mapped array holds one variable with shape ``(N, T, *grid)``, ``(T, *grid)`` (one
    trajectory) or ``(E, N, T, *grid)``; alternatively ``data``/``states`` holds the whole
    state ``(…, T, *state_shape)``. Times come from ``t`` or ``time`` (or the mapping's
    ``time`` entry); an array per split (``train/u`` or ``train_u``) defines the splits,
    otherwise the spec's ``trajectories`` line partitions the trajectories in order (all go
    to ``train`` without one).
    """
    from ..symbolic.spec import Spec

    path = Path(path)
    if spec is None:
        raise DataError(f"{path}: not a physml dataset; to read user data, pass the spec "
                        "that describes it: load_dataset(path, spec=...)")
    if not isinstance(spec, Spec):
        raise TypeError("load_user: `spec` must be a Spec (physml.load_spec(path) reads one)")
    system = spec.system
    variables = system.variables
    arrays = _open_arrays(path)
    data = spec.data
    mapping = dict(mapping) if mapping is not None else dict(data.mapping) if (
        data is not None and data.mapping) else {}
    time_key = mapping.pop("time", None) or mapping.pop("t", None)
    for v in mapping:
        if v not in variables:
            raise DataError(f"mapping names '{v}', which is not a variable of "
                            f"{system.name} ({', '.join(variables)})")
    available = ", ".join(sorted(arrays)) or "none"

    def key_for(var: str, prefix: str) -> str | None:
        name = mapping.get(var, var)
        for cand in (f"{prefix}/{name}", f"{prefix}_{name}") if prefix else (name,):
            if cand in arrays:
                return cand
        return None

    # -- times
    if time_key is None:
        time_key = next((k for k in ("t", "time", "times") if k in arrays), None)
    if time_key is None or time_key not in arrays:
        raise DataError(f"{path}: no time array (looked for {time_key or 't, time, times'}); "
                        f"arrays in the file: {available}. Name it with map time=\"ARRAY\"")
    times = np.asarray(arrays[time_key])
    if times.ndim != 1 or times.size < 2:
        raise DataError(f"{path}: the time array '{time_key}' must be 1-D with at least two "
                        f"times, got shape {times.shape}")
    if not np.issubdtype(times.dtype, np.number) or not np.all(np.isfinite(times)):
        raise DataError(f"{path}: the time array '{time_key}' must hold finite numbers")
    steps = np.diff(times.astype(np.float64))
    if np.any(steps <= 0):
        i = int(np.argmax(steps <= 0))
        raise DataError(f"{path}: times must increase strictly; '{time_key}'[{i + 1}] = "
                        f"{times[i + 1]:g} follows {times[i]:g}")
    T = times.size
    state_tail = tuple(system.domain.shape) if system.domain is not None else ()

    # -- which splits are in the file
    split_prefixes = [s for s in SPLIT_NAMES if any(
        k.startswith((f"{s}/", f"{s}_")) for k in arrays)]
    prefixes = split_prefixes or [""]
    raw: dict[str, np.ndarray] = {}
    for prefix in prefixes:
        per_var = []
        whole = next((k for k in ((f"{prefix}/data", f"{prefix}_data", f"{prefix}/states",
                                   f"{prefix}_states") if prefix else ("data", "states"))
                      if k in arrays), None)
        if whole is not None and not any(key_for(v, prefix) for v in variables):
            x = _check_array(path, whole, arrays[whole], T, (len(variables), *state_tail),
                             state_axis=True)
            raw[prefix or "all"] = x
            continue
        for v in variables:
            k = key_for(v, prefix)
            if k is None:
                want = mapping.get(v, v)
                raise DataError(f"{path}: no array for variable '{v}' (looked for "
                                f"'{(prefix + '/') if prefix else ''}{want}'); arrays in the "
                                f"file: {available}. Map it with map {v}=\"ARRAY\"")
            per_var.append(_check_array(path, k, arrays[k], T, state_tail, state_axis=False))
        shapes = {a.shape for a in per_var}
        if len(shapes) > 1:
            raise DataError(f"{path}: the variables' arrays differ in shape: " + ", ".join(
                f"{v}: {a.shape[:3]}" for v, a in zip(variables, per_var)))
        axis = 3
        raw[prefix or "all"] = np.stack(per_var, axis=axis)

    splits = {}
    if "all" in raw:
        x = raw["all"]
        sizes = dict(data.splits) if data is not None and data.splits else {}
        if sizes:
            n_total = x.shape[1]
            need = sum(sizes.values())
            if need > n_total:
                raise DataError(f"{path}: the spec asks for {need} trajectories "
                                f"({', '.join(f'{n} {s}' for s, n in sizes.items())}) but the "
                                f"file holds {n_total}")
            start = 0
            for s in SPLIT_NAMES:
                if s in sizes:
                    splits[s] = x[:, start:start + sizes[s]]
                    start += sizes[s]
        else:
            splits["train"] = x
    else:
        splits = raw
    envs = [e.name for e in spec.environments] or ["default"]
    E = next(iter(splits.values())).shape[0]
    if E != len(envs):
        if E == 1 and len(envs) > 1:
            raise DataError(f"{path}: the spec declares {len(envs)} environments but the "
                            "arrays have none; give arrays of shape (E, N, T, ...)")
        envs = [f"env{i}" for i in range(E)]
    base = system.param_values
    env_params = [{**base, **e.as_dict()} for e in spec.environments] if len(
        envs) == len(spec.environments) else [dict(base) for _ in envs]
    dt = float(steps[0])
    uniform = bool(np.allclose(steps, dt, rtol=1e-6, atol=0))
    history = data.history if data is not None else 0
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
               for k, v in splits.items()}
    return Dataset(variables, system.state_shape(), torch.from_numpy(times.astype(np.float64)),
                   tensors, dt, history, tuple(envs), env_params, spec.text,
                   data.seed if data is not None else 0, 0.0, None,
                   {"source": str(path), "uniform_time": uniform, "mapping": mapping,
                    "physml_version": _version()})


def _check_array(path: Path, key: str, a: np.ndarray, T: int, tail: tuple[int, ...],
                 state_axis: bool) -> np.ndarray:
    """One user array → (E, N, T, *tail) float64, or a DataError saying what is wrong."""
    a = np.asarray(a)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise DataError(f"{path}: array '{key}' has dtype {a.dtype}; expected real numbers "
                        "(float or int)")
    expect = f"(N, T={T}{''.join(f', {s}' for s in tail)}) or (E, N, T, …) or (T, …)"
    core = len(tail) + 1                         # time axis and the state tail
    if a.ndim < core or a.ndim > core + 2 or tuple(a.shape[a.ndim - len(tail):]) != tail:
        raise DataError(f"{path}: array '{key}' has shape {a.shape}; expected {expect}"
                        + (" with the state last" if state_axis else ""))
    time_axis = a.ndim - core
    if a.shape[time_axis] != T:
        raise DataError(f"{path}: array '{key}' has shape {a.shape}, whose time axis (axis "
                        f"{time_axis}) has {a.shape[time_axis]} entries but the time array has "
                        f"{T}; expected {expect}")
    while a.ndim < core + 2:
        a = a[None]
    a = a.astype(np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataError(f"{path}: array '{key}' holds {int(bad.sum())} NaN/inf values, the "
                        f"first at index {idx} (env, traj, time, …); clean or drop those "
                        "trajectories first")
    return a
