"""Reading and writing datasets.

**The physml format** is one HDF5 file (h5py) laid out as netCDF-4: every axis is a
dimension with a coordinate variable, so netCDF tools and xarray open it with named
dimensions (``xarray.open_dataset(path, engine="h5netcdf")``):

======================  ==============================================================
``/train`` …            (environment, trajectory_train, time, variable[, x, y, z]) per
                        split (float32 by default); ``/val``, ``/test`` likewise
``/train_clean`` …      the noiseless arrays, when the data are noisy
``/env_params``         (environment, parameter) float64
coordinates             ``/environment``, ``/parameter``, ``/variable`` (names),
                        ``/trajectory_<split>`` (indices), ``/time`` and the grid
                        axes ``/x``, ``/y``, ``/z`` (node coordinates), with ``units``
                        (``"1"``: the units the spec's equations are written in)
attributes              ``format``, ``format_version``, ``spec_text``, ``seed``,
                        ``noise``, ``variables``, ``state_shape``, ``env_names``,
                        ``env_params`` (JSON), ``dt``, ``history``, ``physml_version``,
                        ``hash``, ``meta`` (JSON), ``param_names``
======================  ==============================================================

Format 3 added the dimensions and coordinates; files of formats 1 and 2 still load.
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

from .. import limits
from ..storage import atomic_write_bytes, ensure_writable
from .dataset import FORMAT, FORMAT_VERSION, DataError, Dataset

SPLIT_NAMES = ("train", "val", "test")
_HDF5_SUFFIXES = (".h5", ".hdf5", ".nc", ".nc4", ".he5")


# ---------------------------------------------------------------------------------------
# physml format

def save_dataset(ds: Dataset, path: str | os.PathLike, hint: str | None = None) -> Path:
    """Write ``ds`` to ``path`` (HDF5) atomically; returns the path.

    The file is built in memory (HDF5's core driver) and written with one atomic write:
    HDF5 itself never writes to the disk, so a full disk or a read-only folder is one
    :class:`~physml.storage.StorageError` naming ``path`` (``hint`` says which option
    chooses another place) instead of HDF5 driver errors and a crash while closing a
    half-written file. The folder's free space is checked first.
    """
    import h5py

    path = Path(path)
    arrays = [*ds.splits.values(), *(ds.splits_clean or {}).values()]
    need = sum(x.numel() * x.element_size() for x in arrays) + ds.times.numel() * 8 + \
        len(ds.spec_text.encode("utf-8", errors="replace")) + (1 << 20)
    ensure_writable(path.parent, hint, need_bytes=need)
    with h5py.File(f"{path.name}.in-memory", "w", driver="core", backing_store=False,
                   track_order=True) as f:
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
        if ds.observed is not None:
            a["observed"] = json.dumps(list(ds.observed))
        dims = _write_dimensions(f, ds)
        names = sorted({k for p in ds.env_params for k in p})
        a["param_names"] = json.dumps(names)
        params = f.create_dataset("env_params", track_times=False, data=np.array(
            [[p.get(k, np.nan) for k in names] for p in ds.env_params], dtype=np.float64
        ).reshape(len(ds.env_params), len(names)))
        _attach(params, [dims["environment"], _coordinate(f, "parameter", names)])
        params.attrs["long_name"] = "parameter values of each environment"
        groups = [(k, k, v) for k, v in ds.splits.items()]
        if ds.splits_clean:
            groups += [(f"{k}_clean", k, v) for k, v in ds.splits_clean.items()]
        for name, split, x in groups:
            arr = np.ascontiguousarray(x.detach().cpu().numpy())
            d = f.create_dataset(name, data=arr, track_times=False,
                                 chunks=_chunks(arr.shape, arr.itemsize))
            traj = f"trajectory_{split}"
            if traj not in f:
                _coordinate(f, traj, np.arange(arr.shape[1], dtype=np.int64),
                            long_name=f"trajectory index in the {split} split")
            _attach(d, [dims["environment"], f[traj], dims["time"], dims["variable"],
                        *(dims[k] for k in _state_dims(ds)[1:])])
            d.attrs["long_name"] = (f"{split} trajectories"
                                    + (" without noise" if name.endswith("_clean") else ""))
            d.attrs["units"] = _UNITS
        f.flush()
        image = f.id.get_file_image()
    atomic_write_bytes(path, image, hint)
    return path


def _chunks(shape, itemsize):
    """Chunks of one trajectory (all times), so reading a batch of trajectories is cheap."""
    c = (1, 1) + tuple(shape[2:])
    return c if np.prod(c) * itemsize >= 1024 else None


# The spec's equations carry no units: numbers are in whatever units the user wrote them
# in, which CF's "1" (dimensionless, as given) states without inventing any.
_UNITS = "1"


def _write_dimensions(f, ds: Dataset) -> dict:
    """The netCDF-4 dimensions of every array, each with a coordinate variable (an HDF5
    dimension scale of the same name): ``environment``, ``time``, ``variable`` and the grid
    axes ``x``/``y``/``z`` (a bare dimension when their coordinates are unknown)."""
    dims = {"environment": _coordinate(f, "environment", list(ds.env_names)),
            "time": _coordinate(f, "time", ds.times.numpy(), units=_UNITS,
                                long_name="time", axis="T"),
            "variable": _coordinate(f, "variable", list(ds.variables))}
    for axis, n in zip(_state_dims(ds)[1:], ds.state_shape[1:]):
        if axis in ds.coords:
            dims[axis] = _coordinate(f, axis, ds.coords[axis], units=_UNITS,
                                     long_name=f"{axis} coordinate of the grid nodes",
                                     axis=axis.upper())
        else:
            # netCDF-4's own marker of a dimension without a coordinate variable.
            d = f.create_dataset(axis, shape=(n,), dtype=np.float32, track_times=False)
            d.make_scale("This is a netCDF dimension but not a netCDF variable."
                         f"{n:10d}")
            dims[axis] = d
    return dims


def _coordinate(f, name: str, values, **attrs):
    """A coordinate variable: a 1-D dataset made a dimension scale named after itself."""
    import h5py

    if isinstance(values, list):                        # names: variable-length UTF-8
        values = np.array(values, dtype=h5py.string_dtype()).reshape(len(values))
    d = f.create_dataset(name, data=values, track_times=False)
    d.make_scale(name)
    for k, v in attrs.items():
        d.attrs[k] = v
    return d


def _attach(d, scales) -> None:
    for i, scale in enumerate(scales):
        d.dims[i].attach_scale(scale)


def _state_dims(ds: Dataset) -> list[str]:
    if len(ds.state_shape) == 1:
        return ["variable"]
    return ["variable", *("x", "y", "z")[: len(ds.state_shape) - 1]]


def _version() -> str:
    from .._version import __version__
    return __version__


_RESIMULATE = "the file was modified or is damaged; delete it and simulate again"


def _attr(a, path: Path, name: str, kind: str):
    """One attribute of a physml file, checked: a DataError names the file and the
    attribute (never quoting its value, which may be anything)."""
    if name not in a:
        raise DataError(f"{path}: attribute '{name}' is missing; {_RESIMULATE}")
    value = a[name]
    try:
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        if kind == "str":
            if not isinstance(value, str):
                raise TypeError
            return value
        if kind == "float":
            out = float(np.asarray(value).item())
            if not np.isfinite(out):
                raise ValueError
            return out
        if kind == "int":
            arr = np.asarray(value)
            if arr.ndim or not np.issubdtype(arr.dtype, np.integer):
                raise TypeError
            return int(arr)
        if kind == "shape":
            arr = np.asarray(value)
            if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer) or (arr < 1).any():
                raise TypeError
            return tuple(int(x) for x in arr)
        out = json.loads(value)
        if kind == "names":
            if not isinstance(out, list) or not all(isinstance(x, str) for x in out):
                raise TypeError
            return tuple(out)
        if kind == "params":
            if not isinstance(out, list) or not all(
                    isinstance(d, dict) and all(isinstance(k, str) and _is_number(v)
                                                for k, v in d.items()) for d in out):
                raise TypeError
            return out
        if kind == "meta":
            if not isinstance(out, dict):
                raise TypeError
            _check_meta(out)
            return out
    except (TypeError, ValueError, OverflowError, UnicodeDecodeError):
        what = {"str": "a string", "float": "a finite number", "int": "an integer",
                "shape": "a list of positive integers", "names": "a JSON list of names",
                "params": "a JSON list of {name: number} objects",
                "meta": "a JSON object of the expected form"}[kind]
        raise DataError(f"{path}: attribute '{name}' is not {what}; {_RESIMULATE}") from None
    raise AssertionError(kind)  # pragma: no cover


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_meta(meta: dict) -> None:
    """The parts of ``meta`` physml reads back (``dropped`` events, ``solver``)."""
    if "solver" in meta and not isinstance(meta["solver"], str):
        raise TypeError
    dropped = meta.get("dropped", [])
    if not isinstance(dropped, list):
        raise TypeError
    for ev in dropped:
        if not (isinstance(ev, dict) and isinstance(ev.get("split"), str)
                and isinstance(ev.get("trajectory"), int)
                and isinstance(ev.get("environment"), str) and _is_number(ev.get("time"))
                and isinstance(ev.get("params"), dict)
                and all(_is_number(v) for v in ev["params"].values())):
            raise TypeError


def _read_physml(f, path: Path, budget: int | None = None) -> Dataset:
    a = f.attrs
    version = _attr(a, path, "format_version", "int")
    if version > FORMAT_VERSION:
        raise DataError(f"{path}: dataset format version {version} is newer than this physml "
                        f"reads ({FORMAT_VERSION}); upgrade physml")
    if version < 1:
        raise DataError(f"{path}: attribute 'format_version' is {version}; {_RESIMULATE}")
    variables = _attr(a, path, "variables", "names")
    state_shape = _attr(a, path, "state_shape", "shape")
    env_names = _attr(a, path, "env_names", "names")
    env_params = _attr(a, path, "env_params", "params")
    meta = _attr(a, path, "meta", "meta") if "meta" in a else {}
    stored_hash = _attr(a, path, "hash", "str")
    dt, noise = _attr(a, path, "dt", "float"), _attr(a, path, "noise", "float")
    history, seed = _attr(a, path, "history", "int"), _attr(a, path, "seed", "int")
    spec_text = _attr(a, path, "spec_text", "str")
    observed = _attr(a, path, "observed", "names") if "observed" in a else None
    # Only the arrays physml uses are read, and only once their declared sizes fit the
    # memory budget (a small file may declare a huge, never-written dataset).
    wanted = ["time"] + [n for s in SPLIT_NAMES for n in (s, f"{s}_clean") if n in f]
    handles = {n: _dataset(f, path, n) for n in wanted if n in f}
    if "time" not in handles:
        raise DataError(f"{path}: dataset 'time' is missing; {_RESIMULATE}")
    _check_budget(path, handles, budget)
    try:
        times = torch.from_numpy(np.asarray(handles["time"][()], dtype=np.float64))
        splits, clean = {}, {}
        for name in SPLIT_NAMES:
            if name in handles:
                splits[name] = torch.from_numpy(_read(path, name, handles[name]))
            if f"{name}_clean" in handles:
                clean[name] = torch.from_numpy(_read(path, f"{name}_clean",
                                                     handles[f"{name}_clean"]))
        ds = Dataset(variables, state_shape, times, splits, dt, history, env_names, env_params,
                     spec_text, seed, noise, clean or None, meta,
                     coords=_read_coords(f, path, state_shape), observed=observed)
    except DataError as exc:
        raise DataError(f"{path}: {exc}; {_RESIMULATE}") from None
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: damaged physml dataset ({type(exc).__name__}: {exc}); "
                        "delete it and simulate again") from None
    got = ds.hash if version == FORMAT_VERSION else ds.content_hash(version)
    if got != stored_hash:
        raise DataError(f"{path}: the arrays and attributes do not match the stored hash "
                        f"{stored_hash[:12]} (got {got[:12]}): {_RESIMULATE}")
    ds.hash = stored_hash
    return ds


def _read_coords(f, path: Path, state_shape) -> dict[str, np.ndarray]:
    """The grid coordinates of a format-3 file (coordinate variables ``x``, ``y``, ``z``;
    a bare netCDF dimension or an older file has none)."""
    out = {}
    for axis, n in zip(("x", "y", "z"), state_shape[1:]):
        if axis not in f:
            continue
        d = _dataset(f, path, axis)
        name = d.attrs.get("NAME")
        if isinstance(name, bytes):
            name = name.decode("utf-8", errors="replace")
        if name == axis and d.shape == (n,) and np.issubdtype(d.dtype, np.floating):
            out[axis] = np.asarray(_read(path, axis, d), dtype=np.float64)
    return out


# ---------------------------------------------------------------------------------------
# HDF5 safety and memory budget

def _h5_datasets(f, path: Path) -> dict:
    """Every dataset of an HDF5 file by name, refusing what could pull bytes from other
    files: soft and external links, virtual datasets and external raw storage (a 4 KB
    file could otherwise present /etc/passwd as an array). Iterative, link by link."""
    import h5py

    out = {}
    stack = [("", f)]
    seen = set()
    while stack:
        prefix, group = stack.pop()
        if group.id.__hash__() in seen:
            continue
        seen.add(group.id.__hash__())
        for key in group.keys():
            name = f"{prefix}{key}"
            link = group.get(key, getlink=True)
            if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
                kind = "an external link" if isinstance(link, h5py.ExternalLink) \
                    else "a soft link"
                raise DataError(f"{path}: '{name}' is {kind}; physml reads only data stored "
                                "in the file itself — copy the data in (h5copy, or "
                                "h5py: f[name] = f[name][()])")
            try:
                obj = group[key]
            except (KeyError, OSError) as exc:
                raise DataError(f"{path}: cannot open '{name}' ({exc})") from None
            if isinstance(obj, h5py.Group):
                stack.append((f"{name}/", obj))
            elif isinstance(obj, h5py.Dataset):
                out[name] = _checked(obj, path, name)
    return out


def _checked(d, path: Path, name: str):
    if d.is_virtual:
        raise DataError(f"{path}: dataset '{name}' is a virtual dataset (its data live in "
                        "other files); physml reads only data stored in the file itself")
    if d.id.get_create_plist().get_external_count() > 0:
        raise DataError(f"{path}: dataset '{name}' keeps its data in external files; "
                        "physml reads only data stored in the file itself")
    return d


def _dataset(f, path: Path, name: str):
    """``f[name]`` as a checked dataset (see :func:`_h5_datasets`)."""
    import h5py

    link = f.get(name, getlink=True)
    if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
        raise DataError(f"{path}: '{name}' is a link to other data; physml reads only data "
                        "stored in the file itself")
    obj = f[name]
    if not isinstance(obj, h5py.Dataset):
        raise DataError(f"{path}: '{name}' is not a dataset")
    return _checked(obj, path, name)


def _nbytes(a) -> int:
    return int(np.prod(a.shape, dtype=object)) * int(a.dtype.itemsize)


def _check_budget(path: Path, arrays: Mapping, budget: int | None) -> None:
    """Refuse arrays whose declared sizes (read from headers, nothing allocated) exceed
    the memory budget; the float32 copy made on loading is counted too."""
    budget = _budget(budget)
    total = 0
    for name, a in arrays.items():
        size = _nbytes(a)
        total += size + int(np.prod(a.shape, dtype=object)) * 4
        if total > budget:
            raise DataError(f"{path}: dataset '{name}' declares shape {tuple(a.shape)} "
                            f"({limits.human_bytes(size)}); with the other arrays read this "
                            f"exceeds the memory budget of {limits.human_bytes(budget)} — "
                            f"raise it with {limits.MEMORY_BUDGET_ENV}=SIZE if the data are "
                            "really this large")


def _budget(budget: int | None) -> int:
    try:
        return limits.memory_budget(budget)
    except ValueError as exc:
        raise DataError(str(exc)) from None


def _read(path: Path, name: str, d) -> np.ndarray:
    try:
        return np.asarray(d[()])
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: cannot read dataset '{name}' ({exc})") from None


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
    if suffix not in _HDF5_SUFFIXES:
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
        _h5_datasets(f, path)  # refuse links, virtual and external storage anywhere
        fmt = f.attrs.get("format")
        if isinstance(fmt, bytes):
            fmt = fmt.decode("utf-8", errors="replace")
        if isinstance(fmt, str) and fmt == FORMAT:
            return _read_physml(f, path)
    return load_user(path, spec, mapping)


# ---------------------------------------------------------------------------------------
# user data

class _NpzMember:
    """One array of an .npz file, known by its header (shape, dtype) until it is read."""

    def __init__(self, zf, member: str, path: Path, name: str):
        self.zf, self.member, self.path, self.name = zf, member, path, name
        with zf.open(member) as fh:
            try:
                version = np.lib.format.read_magic(fh)
                shape, fortran, dtype = (np.lib.format.read_array_header_1_0(fh)
                                         if version == (1, 0) else
                                         np.lib.format.read_array_header_2_0(fh))
            except ValueError as exc:
                raise DataError(f"{path}: array '{name}' has no valid .npy header ({exc})"
                                ) from None
        if dtype.hasobject:
            raise DataError(f"{path}: array '{name}' holds Python objects; physml never "
                            "unpickles data — save plain numeric arrays")
        self.shape, self.dtype, self.ndim = tuple(shape), dtype, len(shape)

    def __getitem__(self, key):
        with self.zf.open(self.member) as fh:
            try:
                out = np.lib.format.read_array(fh, allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise DataError(f"{self.path}: cannot read array '{self.name}' ({exc})"
                                ) from None
        if out.shape != self.shape:
            raise DataError(f"{self.path}: array '{self.name}' is damaged")
        return out[key]


class _Arrays:
    """The arrays of an .npz or HDF5 file by name, read lazily: only the arrays a spec
    maps are ever read, and only after their declared sizes fit the memory budget."""

    def __init__(self, path: Path):
        self.path = path
        self._close = None
        if path.suffix.lower() == ".npz":
            import zipfile

            try:
                zf = zipfile.ZipFile(path)
                self._close = zf.close
                self.arrays = {m[:-4]: _NpzMember(zf, m, path, m[:-4])
                               for m in zf.namelist() if m.endswith(".npy")}
            except DataError:
                self.close()
                raise
            except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
                self.close()
                raise DataError(f"{path}: cannot read the .npz file ({exc})") from None
            return
        import h5py

        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise DataError(f"{path}: not a readable HDF5/netCDF-4 file ({exc})") from None
        self._close = f.close
        try:
            self.arrays = _h5_datasets(f, path)
        except BaseException:
            self.close()
            raise

    def close(self):
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self):
        return self.arrays

    def __exit__(self, *exc):
        self.close()


def list_arrays(path: str | os.PathLike) -> list[tuple[str, tuple[int, ...], str]] | None:
    """The arrays of a user data file as (name, shape, dtype), read from their headers
    (nothing loaded); None for a physml dataset (and for what :func:`load_dataset` refuses
    anyway, which it explains). What a spec's ``map`` line can name."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in _HDF5_SUFFIXES:
        import h5py

        try:
            with h5py.File(path, "r") as f:
                fmt = f.attrs.get("format")
        except OSError:
            return None                               # load_dataset says what is wrong
        if (fmt.decode("utf-8", errors="replace") if isinstance(fmt, bytes) else fmt) == FORMAT:
            return None
    elif suffix != ".npz":
        return None
    with _Arrays(path) as arrays:
        return [(k, tuple(int(n) for n in a.shape), str(np.dtype(a.dtype)))
                for k, a in sorted(arrays.items())]


def load_user(path: str | os.PathLike, spec=None, mapping: Mapping[str, str] | None = None,
              budget: int | None = None) -> Dataset:
    """User arrays → :class:`Dataset`, checking shapes, dtypes, time and finiteness.

    Each mapped array holds one variable with shape ``(N, T, *grid)``, ``(T, *grid)`` (one
    trajectory) or ``(E, N, T, *grid)``; alternatively ``data``/``states`` holds the whole
    state ``(…, T, *state_shape)``. Times come from ``t`` or ``time`` (or the mapping's
    ``time`` entry); an array per split (``train/u`` or ``train_u``) defines the splits,
    otherwise the spec's ``trajectories`` line partitions the trajectories in order, or its
    ``split time T`` cuts each series at ``T`` (see :func:`_split_by_time`); without either
    all go to ``train``. Measured data carry no parameter values but those the spec's
    environments state (the system's values are initial guesses, not a reference).
    """
    from ..symbolic.spec import Spec

    path = Path(path)
    if spec is None:
        raise DataError(f"{path}: not a physml dataset; to read user data, pass the spec "
                        "that describes it: load_dataset(path, spec=...)")
    if not isinstance(spec, Spec):
        raise TypeError("load_user: `spec` must be a Spec (physml.load_spec(path) reads one)")
    with _Arrays(path) as arrays:
        return _load_user(path, spec, mapping, arrays, budget)


def _load_user(path: Path, spec, mapping, arrays, budget) -> Dataset:
    system = spec.system
    variables = system.variables
    data = spec.data
    mapping = dict(mapping) if mapping is not None else dict(data.mapping) if (
        data is not None and data.mapping) else {}
    time_key = mapping.pop("time", None) or mapping.pop("t", None)
    for v in mapping:
        if v not in variables:
            raise DataError(f"mapping names '{v}', which is not a variable of "
                            f"{system.name} ({', '.join(variables)})")
    available = ", ".join(sorted(arrays)) or "none"
    hidden = spec.hidden_variables()     # `observe`: the others may be absent, or NaN

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
    if len(arrays[time_key].shape) != 1 or arrays[time_key].shape[0] < 2:
        raise DataError(f"{path}: the time array '{time_key}' must be 1-D with at least two "
                        f"times, got shape {tuple(arrays[time_key].shape)}")
    _check_budget(path, {time_key: arrays[time_key]}, budget)
    times = np.asarray(arrays[time_key][()])
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
    needed = {}
    for prefix in prefixes:
        keys = [key_for(v, prefix) for v in variables]
        if not all(keys):
            keys = [k for k in ((f"{prefix}/data", f"{prefix}_data", f"{prefix}/states",
                                 f"{prefix}_states") if prefix else ("data", "states"))
                    if k in arrays][:1] or [k for k in keys if k]
        needed.update({k: arrays[k] for k in keys})
    _check_budget(path, needed, budget)
    raw: dict[str, np.ndarray] = {}
    for prefix in prefixes:
        per_var = []
        whole = next((k for k in ((f"{prefix}/data", f"{prefix}_data", f"{prefix}/states",
                                   f"{prefix}_states") if prefix else ("data", "states"))
                      if k in arrays), None)
        if whole is not None and not any(key_for(v, prefix) for v in variables):
            x = _check_array(path, whole, arrays[whole], T, (len(variables), *state_tail),
                             state_axis=True, allow_nan=bool(hidden))
            for i, v in enumerate(variables):
                if v not in hidden and np.isnan(x[:, :, :, i]).any():
                    raise DataError(f"{path}: array '{whole}' holds NaN values for the "
                                    f"observed variable '{v}'; only hidden variables (not in "
                                    "`observe`) may be NaN where unknown")
            raw[prefix or "all"] = x
            continue
        for v in variables:
            k = key_for(v, prefix)
            if k is None and v in hidden:
                per_var.append(None)  # not measured: NaN (filled below)
                continue
            if k is None:
                want = mapping.get(v, v)
                raise DataError(f"{path}: no array for variable '{v}' (looked for "
                                f"'{(prefix + '/') if prefix else ''}{want}'); arrays in the "
                                f"file: {available}. Map it with map {v}=\"ARRAY\"")
            per_var.append(_check_array(path, k, arrays[k], T, state_tail, state_axis=False,
                                        allow_nan=v in hidden))
        given = [a for a in per_var if a is not None]
        if not given:
            raise DataError(f"{path}: no array for any observed variable "
                            f"({', '.join(spec.observe)}); arrays in the file: {available}")
        per_var = [a if a is not None else np.full_like(given[0], np.nan) for a in per_var]
        shapes = {a.shape for a in per_var}
        if len(shapes) > 1:
            raise DataError(f"{path}: the variables' arrays differ in shape: " + ", ".join(
                f"{v}: {a.shape[:3]}" for v, a in zip(variables, per_var)))
        axis = 3
        raw[prefix or "all"] = np.stack(per_var, axis=axis)

    splits = {}
    split_meta = {}
    if data is not None and data.split_time is not None:
        if "all" not in raw:
            raise DataError(f"{path}: the file holds its own splits ({', '.join(raw)}) and the "
                            f"spec says `split time {data.split_time:g}`; drop one of the two")
        splits, times, split_meta = _split_by_time(path, raw["all"], times, data.split_time,
                                                   system)
        steps = np.diff(times.astype(np.float64))
    elif "all" in raw:
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
        if spec.environments:
            # Located at the spec's `environments:` block: the two must agree.
            from ..errors import OptionError

            have = "none (arrays of shape (N, T, ...))" if E == 1 else str(E)
            raise OptionError(f"the spec declares {len(envs)} environments but the data file "
                              f"{path} holds {have}", spec.environments[0].pos, spec.text,
                              length=len(envs[0]), hint="list one environment per row of "
                              "the file's first axis, in the file's order, or give arrays of "
                              "shape (E, N, T, ...)")
        envs = [f"env{i}" for i in range(E)]
    # Measured data have no true parameter values: the system's values are the model's
    # initial guesses, so only what the spec states of each environment is kept.
    env_params = [e.as_dict() for e in spec.environments] if len(
        envs) == len(spec.environments) else [{} for _ in envs]
    dt = float(steps[0])
    uniform = bool(np.allclose(steps, dt, rtol=1e-6, atol=0))
    history = data.history if data is not None else 0
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in splits.items()}
    partial = hidden and any(bool(torch.isnan(x).any()) for x in tensors.values())
    observed = tuple(v for v in variables if v not in hidden) if partial else None
    return Dataset(variables, system.state_shape(), torch.from_numpy(times.astype(np.float64)),
                   tensors, dt, history, tuple(envs), env_params, spec.text,
                   data.seed if data is not None else 0, 0.0, None,
                   {"source": str(path), "uniform_time": uniform, "mapping": mapping,
                    "physml_version": _version(), **split_meta},
                   coords=dict(zip(system.domain.axes, system.domain.coordinates()))
                   if system.domain is not None else {}, observed=observed)


def _split_by_time(path: Path, x: np.ndarray, times: np.ndarray, at: float, system):
    """``split time T``: each series ``x`` (E, N, T, …) is cut at ``T``. The test split is
    the part from ``T`` on (L frames); the train split is every window of L consecutive
    frames before ``T`` (a dataset's splits share one time axis, so training sees stretches
    as long as the one it is tested on). The times are the test part's: the train windows
    lie earlier, which an autonomous system cannot tell apart."""
    import sympy

    t = sympy.Symbol("t")
    if any(t in eq.rhs.free_symbols for eq in system.equations) or any(
            t in let.expr.free_symbols for let in system.lets):
        raise DataError(f"{path}: `split time` trains on windows taken earlier than the "
                        f"test part, but {system.name}'s equations depend on the time t; "
                        "give train and test arrays (train_VAR, test_VAR) instead")
    cut = int(np.searchsorted(times, at, side="left"))   # first frame with t ≥ at
    n_test = times.size - cut
    if n_test < 2:
        raise DataError(f"{path}: `split time {at:g}` leaves {n_test} frame(s) from {at:g} on "
                        f"(times end at {times[-1]:g}); the test part needs at least two")
    if cut < n_test:
        raise DataError(f"{path}: `split time {at:g}` leaves {cut} frame(s) before {at:g} and "
                        f"{n_test} from it; training needs at least as many frames as the "
                        "test part — split later")
    n_windows = cut - n_test + 1
    windows = np.stack([x[:, :, i:i + n_test] for i in range(n_windows)], axis=2)
    train = windows.reshape(x.shape[0], -1, n_test, *x.shape[3:])
    meta = {"split_time": float(at), "train_times": [float(times[0]), float(times[cut - 1])],
            "train_windows": n_windows}
    return ({"train": np.ascontiguousarray(train),
             "test": np.ascontiguousarray(x[:, :, cut:])}, times[cut:], meta)


def _check_array(path: Path, key: str, a, T: int, tail: tuple[int, ...],
                 state_axis: bool, allow_nan: bool = False) -> np.ndarray:
    """One user array → (E, N, T, *tail) float32 (the dtype physml trains in), or a
    DataError saying what is wrong. Shape and dtype are checked from the header before
    anything is read; finiteness after the cast (1e300 is finite in float64, inf in
    float32)."""
    dtype = np.dtype(a.dtype)
    shape = tuple(a.shape)
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise DataError(f"{path}: array '{key}' has dtype {dtype}; expected real numbers "
                        "(float or int)")
    ndim = len(shape)
    expect = f"(N, T={T}{''.join(f', {s}' for s in tail)}) or (E, N, T, …) or (T, …)"
    core = len(tail) + 1                         # time axis and the state tail
    if ndim < core or ndim > core + 2 or tuple(shape[ndim - len(tail):]) != tail:
        raise DataError(f"{path}: array '{key}' has shape {shape}; expected {expect}"
                        + (" with the state last" if state_axis else ""))
    time_axis = ndim - core
    if shape[time_axis] != T:
        raise DataError(f"{path}: array '{key}' has shape {shape}, whose time axis (axis "
                        f"{time_axis}) has {shape[time_axis]} entries but the time array has "
                        f"{T}; expected {expect}")
    a = a if isinstance(a, np.ndarray) else _read(path, key, a)
    while a.ndim < core + 2:
        a = a[None]
    with np.errstate(over="ignore", invalid="ignore"):
        a = np.ascontiguousarray(a, dtype=np.float32)
    bad = np.isinf(a) if allow_nan else ~np.isfinite(a)   # hidden: NaN where unknown
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataError(f"{path}: array '{key}' holds {int(bad.sum())} NaN/inf values, the "
                        f"first at index {idx} (env, traj, time, …), counted in float32 "
                        "(where values beyond ±3.4e38 are inf); clean or drop those "
                        "trajectories first")
    return a
