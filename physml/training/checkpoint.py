"""Atomic checkpoints that load with ``weights_only=True``.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only (no pickled
objects), written to a temporary file in the same folder and renamed over the target, so
a crash mid-write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import io
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch


def _umask() -> int:
    """The process umask (read without a window where it is changed, where Linux allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; the final file gets the mode open() would give it.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically (tensors are moved to CPU first)."""
    buffer = io.BytesIO()
    torch.save(_to_cpu(state), buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``: no code runs on load)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" not in str(exc).replace("safe_globals", "").lower():
            raise ValueError(f"cannot read checkpoint {path}: the file is damaged or not a "
                             "checkpoint") from None
        # PyTorch's message suggests retrying with weights_only=False, which would run
        # whatever code the file carries: never pass that advice on.
        raise ValueError(f"cannot read checkpoint {path}: it holds Python objects other than "
                         "tensors, numbers, strings, lists and dicts, which physml never "
                         "loads (a file from another tool, or a tampered one); use a "
                         "checkpoint written by physml") from None
    except Exception as exc:  # noqa: BLE001 - a corrupt file must read as one clear error
        raise ValueError(f"cannot read checkpoint {path}: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    """The gist of a loading error, without any advice to load unsafely."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    safe = [ln for ln in lines if "weights_only" not in ln and "pickle" not in ln.lower()]
    return safe[0] if safe else f"{type(exc).__name__} (the file is damaged or not a checkpoint)"


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj
