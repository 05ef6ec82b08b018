"""Compile a run's step in another process while the run trains without it.

``torch.compile`` of the pendulum's RK4 step takes ~40 s on a 2-core CPU when TorchInductor's
on-disk cache is cold (~8 s when warm), a sixth of a 5-minute budget spent waiting. With a
time budget, the trainer therefore starts training with eager steps and runs this module
in a child process: it builds the same model from the same spec and options and compiles
the same step on a batch of the same shape, which fills the cache. When the child exits,
the trainer switches to compiled steps and pays only the warm-cache cost. The parameters'
values do not enter the compiled graph (they are its inputs), so random data suffice.

    python -m physml.experiment.warm ARGS.json
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path


def start(spec, cfg, batch_shape: tuple[int, ...], n_initial: int = 0) -> subprocess.Popen:
    """Start the child compiling ``spec``'s step for batches of ``batch_shape``
    (``(B, T, *state)``); returns the process (poll it)."""
    args = {"spec_text": spec.text, "spec_path": spec.path, "config": asdict(cfg),
            "batch_shape": list(batch_shape), "n_initial": n_initial}
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
    exp.rollout.train()
    loss, _ = exp.objective.loss(exp.rollout, batch)
    loss.backward()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
