"""The in-memory dataset: trajectories per split, with the metadata that made them."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import torch

FORMAT = "physml-dataset"
#: 3: every axis is a netCDF-4 dimension with a coordinate variable (xarray opens the
#: file); the content and its hash are those of version 2, so one dataset has one hash.
#: 2: the hash also covers dt, the spec text and the metadata (1: arrays and head only;
#: version-1 files still load, checked with the version-1 hash).
FORMAT_VERSION = 4
#: 4: an ``observed`` attribute lists the variables the data measure when some are hidden
#: (partial observation; their values are NaN where unknown); files without it (all
#: versions before, and fully observed data) observe everything and hash as before.


class DataError(ValueError):
    """A dataset file or user array that cannot be used, with what is wrong and how to fix
    it (one paragraph, no traceback needed)."""


@dataclass
class Dataset:
    """Trajectories of one system, split into ``train``/``val``/``test``.

    ``splits[name]`` has shape ``(E, N, T, *state_shape)``: environments, trajectories,
    times, then one state (``(n_states,)`` for ODEs, ``(n_fields, *grid)`` for grids).
    The first ``history`` times lie before ``t0`` (frames kept for encoders). With
    ``noise > 0``, ``splits_clean`` holds the noiseless truth. ``coords`` holds the node
    coordinates of each grid axis (``x``, ``y``, ``z``) when known; they follow from the
    spec text, so the hash does not cover them again.
    """

    variables: tuple[str, ...]
    state_shape: tuple[int, ...]
    times: torch.Tensor
    splits: dict[str, torch.Tensor]
    dt: float
    history: int = 0
    env_names: tuple[str, ...] = ("default",)
    env_params: list[dict[str, float]] = field(default_factory=list)
    spec_text: str = ""
    seed: int = 0
    noise: float = 0.0
    splits_clean: dict[str, torch.Tensor] | None = None
    meta: dict = field(default_factory=dict)
    hash: str = ""
    coords: dict[str, np.ndarray] = field(default_factory=dict)
    #: the variables the data measure (None: all); the others are hidden, NaN wherever
    #: their value is not known (e.g. everywhere but at t0: a given initial state)
    observed: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.observed is not None:
            self.observed = tuple(self.observed)
            unknown = [v for v in self.observed if v not in self.variables]
            if unknown:
                raise DataError(f"observed variables {unknown} are not among the dataset's "
                                f"variables {list(self.variables)}")
            if set(self.observed) == set(self.variables):
                self.observed = None
        self.variables = tuple(self.variables)
        self.state_shape = tuple(int(s) for s in self.state_shape)
        self.env_names = tuple(self.env_names)
        self.times = torch.as_tensor(self.times, dtype=torch.float64)
        if not self.env_params:
            self.env_params = [{} for _ in self.env_names]
        for name, x in self.splits.items():
            expect = (len(self.env_names), None, len(self.times), *self.state_shape)
            if x.dim() != len(expect) or any(e is not None and e != s
                                             for e, s in zip(expect, x.shape)):
                raise DataError(f"split '{name}' has shape {tuple(x.shape)}; expected "
                                f"(E={expect[0]}, N, T={expect[2]}, "
                                f"{', '.join(map(str, self.state_shape))})")
        grid = dict(zip(("x", "y", "z"), self.state_shape[1:]))
        self.coords = {k: np.asarray(v, dtype=np.float64) for k, v in self.coords.items()}
        for axis, c in self.coords.items():
            if axis not in grid or c.shape != (grid[axis],):
                raise DataError(f"coordinates of axis '{axis}' have shape {c.shape}; the grid "
                                f"has axes {grid or 'none'}")
        if not self.hash:
            self.hash = self.content_hash()

    # -- access -------------------------------------------------------------------------
    def __getitem__(self, split: str) -> torch.Tensor:
        try:
            return self.splits[split]
        except KeyError:
            raise KeyError(f"no split {split!r}; this dataset has "
                           f"{', '.join(self.splits) or 'no splits'}") from None

    def __contains__(self, split: str) -> bool:
        return split in self.splits

    @property
    def clean(self) -> dict[str, torch.Tensor]:
        """The noiseless trajectories (the same tensors as ``splits`` when noise is 0)."""
        return self.splits_clean if self.splits_clean else self.splits

    @property
    def n_envs(self) -> int:
        return len(self.env_names)

    @property
    def is_grid(self) -> bool:
        return len(self.state_shape) > 1

    @property
    def t0(self) -> float:
        return float(self.times[self.history])

    def to(self, device) -> "Dataset":
        """The same dataset with its arrays on ``device`` (the hash is unchanged)."""
        move = lambda d: {k: v.to(device) for k, v in d.items()} if d else d  # noqa: E731
        return Dataset(self.variables, self.state_shape, self.times, move(self.splits), self.dt,
                       self.history, self.env_names, self.env_params, self.spec_text,
                       self.seed, self.noise, move(self.splits_clean), dict(self.meta),
                       self.hash, dict(self.coords), self.observed)

    def summary(self) -> list[dict]:
        """One row per split: name, shape, value range of the finite values, and how many
        values are not finite (NaN or ±inf), so they are shown rather than hidden."""
        rows = []
        for name, x in self.splits.items():
            ok = torch.isfinite(x)
            finite = x[ok]
            rows.append({"split": name, "shape": tuple(x.shape),
                         "environments": x.shape[0], "trajectories": x.shape[1],
                         "frames": x.shape[2], "nonfinite": int(x.numel() - int(ok.sum())),
                         "min": float(finite.min()) if finite.numel() else float("nan"),
                         "max": float(finite.max()) if finite.numel() else float("nan")})
        return rows

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={tuple(v.shape)}" for k, v in self.splits.items())
        return (f"Dataset({', '.join(self.variables)}; {parts}; t ∈ [{float(self.times[0]):g}, "
                f"{float(self.times[-1]):g}] dt={self.dt:g}; envs={list(self.env_names)}; "
                f"hash={self.hash[:12]})")

    # -- identity -----------------------------------------------------------------------
    def content_hash(self, version: int = FORMAT_VERSION) -> str:
        """SHA-256 of everything that determines the data: the arrays, the time grid and
        step, the variables, parameters, noise and seed, the spec text and the metadata
        (format 1 files, written before the last three were covered, are checked with
        ``version=1``; format 3 changed the file layout only and hashes as format 2).
        Same spec and seed → same hash."""
        version = min(version, 2)
        h = hashlib.sha256()
        head = {"format": version, "variables": self.variables,
                "state_shape": self.state_shape, "history": self.history,
                "envs": self.env_names, "params": self.env_params, "noise": self.noise,
                "seed": self.seed}
        if version >= 2:
            head.update(dt=self.dt, spec_text=self.spec_text,
                        meta=json.dumps(self.meta, sort_keys=True, default=str))
        if self.observed is not None:  # format 4; fully observed data hash as before
            head["observed"] = list(self.observed)
        h.update(json.dumps(head, sort_keys=True, default=float).encode())
        h.update(_bytes(self.times))
        for group in (self.splits, self.splits_clean or {}):
            for name in sorted(group):
                h.update(name.encode())
                h.update(_bytes(group[name]))
        return h.hexdigest()


def _bytes(x: torch.Tensor) -> bytes:
    return np.ascontiguousarray(x.detach().cpu().numpy()).tobytes()
