"""``dataset_for(spec)``: the spec's data, simulated once and then read from a cache."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .dataset import FORMAT_VERSION, DataError, Dataset
from .io import load_dataset, save_dataset


def spec_key(spec, seed: int | None = None) -> str:
    """The cache key of a spec's data: a hash of its text, the text of the system it uses
    (a changed library system invalidates the cache), the seed and the format version."""
    seed = spec.data.seed if seed is None and spec.data is not None else seed
    h = hashlib.sha256()
    for part in (f"physml-data-v{FORMAT_VERSION}", spec.text, spec.system.source, str(seed)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def default_path(spec, cache_dir: str | os.PathLike = "data", seed: int | None = None) -> Path:
    stem = Path(spec.path).stem if spec.path and spec.path != "<string>" else spec.system.name
    return Path(cache_dir) / f"{stem}-{spec_key(spec, seed)}.h5"


def data_file(spec) -> Path | None:
    """The user data file a spec names (relative to the spec's folder), if any."""
    if spec.data is None or spec.data.file is None:
        return None
    p = Path(spec.data.file).expanduser()
    if not p.is_absolute() and spec.path and spec.path != "<string>":
        p = Path(spec.path).parent / p
    return p


def dataset_for(spec, cache_dir: str | os.PathLike = "data", seed: int | None = None,
                force: bool = False, **simulate_kw) -> tuple[Dataset, Path]:
    """Load the dataset a spec describes: its data file when it names one, else a cached
    simulation keyed by :func:`spec_key` (simulated and saved on the first call).

    Extra keywords (``device``, ``progress``, ``drop_unstable`` …) go to
    :func:`physml.simulate.simulate`. A damaged cache file is simulated again.
    """
    from ..simulate.core import resolve_spec, simulate

    spec = resolve_spec(spec)
    user = data_file(spec)
    if user is not None:
        return load_dataset(user, spec=spec), user
    path = default_path(spec, cache_dir, seed)
    if path.exists() and not force:
        try:
            return load_dataset(path), path
        except DataError:
            pass  # damaged or stale: simulate again below
    ds = simulate(spec, seed=seed, **simulate_kw)
    save_dataset(ds, path)
    return ds, path
