"""Atomic checkpoints that load with ``weights_only=True``.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only (no pickled
objects), written to a temporary file in the same folder and renamed over the target, so
a crash mid-write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import io
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from ..storage import StorageError, atomic_write_bytes, atomic_write_text, ensure_writable, \
    storage_error

__all__ = ["CheckpointError", "StorageError", "atomic_write_bytes", "atomic_write_text",
           "ensure_writable", "load_checkpoint", "require_keys", "save_checkpoint",
           "storage_error"]


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically (tensors are moved to CPU first)."""
    buffer = io.BytesIO()
    torch.save(_to_cpu(state), buffer)
    atomic_write_bytes(path, buffer.getvalue())


#: What to do about a damaged checkpoint.
_RESTORE = "restore the file from a backup, or train a new run"


class CheckpointError(ValueError):
    """A checkpoint that loads but does not hold what physml wrote: located by path and
    key."""


def checkpoint_key_error(path: str | os.PathLike, key: str, problem: str) -> CheckpointError:
    return CheckpointError(f"{path}: the key '{key}' {problem}; the checkpoint is damaged or "
                           f"from another program ({_RESTORE})")


def describe_misfit(path, exc: Exception) -> str:
    """A model state that does not load into the model the run's spec builds."""
    text = str(exc)
    keys = re.findall(r'"([^"]+)"', text.split("\n", 1)[-1]) or re.findall(r'"([^"]+)"', text)
    if "size mismatch" in text:
        m = re.search(r"size mismatch for ([^:]+): copying a param with shape (\S+ \S+|\S+) "
                      r"from checkpoint, the shape in current model is (\S+ \S+|\S+)\.", text)
        if m:
            return (f"{path}: the key 'model.{m.group(1)}' holds a tensor of shape "
                    f"{_shape(m.group(2))}, the run's spec builds {_shape(m.group(3))}; the "
                    f"checkpoint does not fit spec.phy ({_RESTORE})")
    if "Missing key" in text and keys:
        return (f"{path}: the key 'model.{keys[0]}' is missing (the run's spec builds it); the "
                f"checkpoint does not fit spec.phy ({_RESTORE})")
    if "Unexpected key" in text and keys:
        return (f"{path}: the key 'model.{keys[0]}' is not in the model the run's spec builds; "
                f"the checkpoint does not fit spec.phy ({_RESTORE})")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"{path}: the key 'model' does not fit the run's spec ({first[:200]}); {_RESTORE}"


def _shape(text: str) -> str:
    m = re.search(r"\[([^\]]*)\]", text)
    return f"({m.group(1)})" if m else text



def require_keys(state: dict[str, Any], path: str | os.PathLike, keys) -> None:
    """Refuse a checkpoint missing one of ``keys`` with a located message."""
    for key in keys:
        if key not in state:
            raise checkpoint_key_error(path, key, "is missing")
    if "model" in keys and not (isinstance(state["model"], dict)
                                and all(torch.is_tensor(v) for v in state["model"].values())):
        raise checkpoint_key_error(path, "model", "does not hold a dict of tensors")


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``: no code runs on load)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
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
        detail = _first_line(exc)
        detail = "" if re.match(r"\[Errno \d+\]|\w+Error \(", detail) else f" ({detail})"
        raise ValueError(f"cannot read checkpoint {path}: the file is damaged, truncated or "
                         f"not a checkpoint{detail}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"cannot read checkpoint {path}: it holds a "
                              f"{type(state).__name__}, not a physml checkpoint (a dict)")
    return state


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
