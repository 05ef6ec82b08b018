"""Compile a run's step in another process while the run trains without it.

``torch.compile`` of the pendulum's RK4 step takes ~40 s on a 2-core CPU when TorchInductor's
on-disk cache is cold (~8 s when warm), a sixth of a 5-minute budget spent waiting. With a
time budget, the trainer therefore starts training with eager steps and runs this module
in a child process: it builds the same model from the same spec and options and compiles
the same step on a batch of the same shape, which fills the cache. When the child exits,
the trainer switches to compiled steps and pays only the warm-cache cost. The parameters'
values do not enter the compiled graph (they are its inputs), so random data suffice.
The child then leaves a marker beside the cache (:func:`key`); a later run of the same
graphs finds it and compiles inline, since from a warm cache that takes seconds.

    python -m physml.experiment.warm ARGS.json
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path


#: Settings that end or pace a run but do not change what is compiled.
_BUDGET = ("epochs", "steps", "minutes", "seed", "val_every", "patience", "plateau",
           "checkpoint_every")
#: Bumped when physml changes what it compiles for the same settings (2: ODE steps are
#: compiled several to a call; 3: teacher forcing restarts inside the compiled steps), so
#: that an older run's marker does not claim a warm cache.
GRAPHS = 3


def key(spec, cfg, batch_shape: tuple[int, ...], n_initial: int = 0) -> str:
    """What identifies the compiled graphs of a run: the spec, the settings that shape the
    step, the batch shape and the versions of physml and torch."""
    import torch

    from .._version import __version__

    settings = {k: v for k, v in asdict(cfg).items() if k not in _BUDGET}
    text = json.dumps([spec.text, settings, list(batch_shape), n_initial, __version__,
                       torch.__version__, GRAPHS], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _marker(k: str) -> Path:
    """A file beside TorchInductor's on-disk cache saying a child compiled ``k`` into it
    (it goes when that cache is cleared)."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return Path(cache_dir()) / "physml-warm" / k


def is_warm(k: str) -> bool:
    """True when an earlier run compiled these graphs into the cache: compiling them again
    is then a few seconds of tracing, cheaper in the run's own process than in a child
    that competes with it for the CPU while the run trains eagerly."""
    try:
        return _marker(k).is_file()
    except Exception:  # noqa: BLE001 - no cache directory: compile in the background
        return False


def start(spec, cfg, batch_shape: tuple[int, ...], n_initial: int = 0) -> subprocess.Popen:
    """Start the child compiling ``spec``'s step for batches of ``batch_shape``
    (``(B, T, *state)``); returns the process (poll it)."""
    args = {"spec_text": spec.text, "spec_path": spec.path, "config": asdict(cfg),
            "batch_shape": list(batch_shape), "n_initial": n_initial,
            "key": key(spec, cfg, batch_shape, n_initial)}
    fd, path = tempfile.mkstemp(prefix="physml-warm-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(args, fh)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "physml.experiment.warm", path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)


def _main(path: str) -> int:
    import torch

    from ..data import Batch
    from ..lang import parse_spec
    from ..training.config import TrainConfig
    from .build import build
    from .vocabulary import vocabulary

    args = json.loads(Path(path).read_text(encoding="utf-8"))
    Path(path).unlink(missing_ok=True)
    torch.set_num_threads(1)
    spec = parse_spec(args["spec_text"], args["spec_path"], vocabulary=vocabulary(),
                      allow_paths=[Path(args["spec_path"]).parent]
                      if args["spec_path"] != "<string>" else ())
    cfg = TrainConfig(**{**args["config"], "compile": True})
    exp = build(spec, cfg, n_initial=args["n_initial"])
    B, T, *state = args["batch_shape"]
    target = torch.rand(B, T, *state)
    batch = Batch(x0=target[:, 0], t=torch.linspace(0, 1, T), target=target,
                  env=torch.zeros(B, dtype=torch.long), traj=torch.arange(B) % max(
                      1, args["n_initial"] or B))
    if cfg.teacher_forcing is not None:  # teacher forcing runs the restarting graph
        batch.restart = torch.zeros(T, dtype=torch.bool)
    exp.rollout.train()
    loss, _ = exp.objective.loss(exp.rollout, batch)
    loss.backward()
    marker = _marker(args["key"])
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
