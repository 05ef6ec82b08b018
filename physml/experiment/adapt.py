"""``physml adapt RUN DATA_OR_SPEC``: LEADS on new environments (thesis §3.4.4, Table 3.13).

The shared ``F`` of a trained multi-environment run (its prior's shared parameters and its
``augment`` network) is frozen; only new ``G_e'`` networks (and per-environment
parameters, if the spec has any) are learned on the new environments' training data.
Three schemes are compared on the new environments' test data, at the steps of the
thesis (50, 2 500, 10 000 — or the budget):

- ``pretrained_F``: the frozen ``F`` alone (``G_e' = 0``, nothing learned);
- ``one_per_env``: an independent model per new environment, from scratch;
- ``leads``: the frozen ``F`` plus ``G_e'`` trained with LEADS's objective.

The adaptation folder holds ``adapt.json`` (test MSE of each scheme at each recorded
step) and ``adapt.png`` (test MSE against steps, Fig. 3.13).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from ..data import Trajectories
from ..models import Rollout
from ..models.environments import MultiEnvModel, build_multi_env_model
from ..objectives import build_objective
from ..training.checkpoint import atomic_write_text
from ..training.trainer import teacher_forcing_restarts
from .run import Run

#: the steps at which Table 3.13 reports test errors
TABLE_STEPS = (50, 2500, 10000)


def _new_data(run: Run, source: str | Path, data_dir: str | Path):
    """The new environments' dataset: from a spec (simulated, or its data file) or a
    dataset file, read against the run's system."""
    from ..data import load_dataset
    from .data import dataset_for
    from .spec import load_spec

    path = Path(source)
    if path.suffix == ".phy":
        spec = load_spec(path)
        if spec.system.variables != run.spec.system.variables:
            raise ValueError(f"{path}: its system ({', '.join(spec.system.variables)}) is not "
                             f"the run's ({', '.join(run.spec.system.variables)})")
        return dataset_for(spec, cache_dir=data_dir)[0]
    return load_dataset(path, spec=run.spec)


def _mse(rollout: Rollout, test: Trajectories) -> float:
    batch = test.batch()
    return float((rollout.predict(batch) - batch.target).pow(2).mean())


def _train(rollout: Rollout, objective, train: Trajectories, test: Trajectories,
           steps: list[int], lr: float, seed: int, teacher_forcing: float | None = None
           ) -> dict[int, float]:
    """Adam on all of ``train`` per step; the test MSE after each step in ``steps``.

    ``teacher_forcing`` ρ: as in training (thesis §3.4.4), each frame after the first
    restarts the integration from the data with probability ρ^(step/10) — every scheme
    is trained the same way, as the run was."""
    torch.manual_seed(seed)
    params = [p for p in rollout.parameters() if p.requires_grad]
    out = {0: _mse(rollout, test)}
    if not params:
        return {s: out[0] for s in [0, *steps]}
    opt = torch.optim.Adam(params, lr=lr)
    batch = train.batch()
    generator = torch.Generator().manual_seed(seed)
    rollout.train()
    for step in range(1, max(steps) + 1):
        if teacher_forcing is not None:
            batch.restart = teacher_forcing_restarts(teacher_forcing, step - 1,
                                                     batch.t.shape[0], generator)
        loss, _ = objective.loss(rollout, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        objective.after_batch(float(loss.detach()))
        if step in steps:
            out[step] = _mse(rollout, test)
    return out


def adapt(run: Run | str | Path, source: str | Path, out: str | Path | None = None,
          budget: int | None = None, data_dir: str | Path = "data",
          schemes: tuple[str, ...] = ("pretrained_F", "one_per_env", "leads")
          ) -> dict[str, Any]:
    """Adapt a trained multi-environment run to new environments (see the module doc).

    ``budget``: the last step (default 10 000); test errors are recorded at the steps of
    Table 3.13 up to it, and at log-spaced steps for the plot. Returns what
    ``adapt.json`` holds, and ``frozen_F``: F's tensors after the adaptation.
    """
    run = run if isinstance(run, Run) else Run(run)
    old = run.load_model("best")
    if not isinstance(old.field, MultiEnvModel) or old.field.per_env is None and \
            old.field.env_params is None:
        raise ValueError(f"{run.path}: `physml adapt` needs a run of a multi-environment "
                         f"method with per-environment terms (leads), not "
                         f"`{run.config.method}`")
    ds = _new_data(run, source, data_dir)
    if "test" not in ds.splits or not ds.splits["test"].numel():
        raise ValueError(f"{source}: the new environments need a `test` split to compare "
                         "the schemes on")
    dtype = torch.get_default_dtype()
    train = Trajectories(ds.splits["train"], ds.times, ds.history, dtype=dtype)
    test = Trajectories(ds.splits["test"], ds.times, ds.history, dtype=dtype)
    n_envs = train.n_envs
    last = budget or TABLE_STEPS[-1]
    steps = sorted({s for s in TABLE_STEPS if s <= last} | {last} |
                   {int(round(10 ** (k / 4))) for k in range(int(4 * math.log10(last)) + 1)})
    cfg = run.config
    results: dict[str, dict[int, float]] = {}

    def model(structure: str) -> Rollout:
        torch.manual_seed(cfg.seed)
        field = build_multi_env_model(run.spec, structure, n_envs=n_envs)
        field.env_names = tuple(ds.env_names)
        r = Rollout(field, old.solver)
        field.fit_scales(train.frames, float(ds.dt), env=train.env)
        return r

    frozen: dict[str, torch.Tensor] = {}
    if "pretrained_F" in schemes or "leads" in schemes:
        new = model("leads")
        shared = {k: v for k, v in old.field.state_dict().items()
                  if not k.startswith(("per_env.", "env_params.")) and k != "phase"}
        new.field.load_state_dict(shared, strict=False)
        for name, p in new.field.named_parameters():
            if not name.startswith(("per_env.", "env_params.")):
                p.requires_grad_(False)
        frozen = {k: v.detach().clone() for k, v in new.field.state_dict().items()
                  if not k.startswith(("per_env.", "env_params."))}
        if "pretrained_F" in schemes:
            f_only = _mse(new, test)  # G_e' starts at 0: F alone
            results["pretrained_F"] = {s: f_only for s in [0, *steps]}
        if "leads" in schemes:
            objective = build_objective("leads", cfg.method_options,
                                        run.spec.system.is_grid, loss=cfg.loss)
            results["leads"] = _train(new, objective, train, test, steps, cfg.lr, cfg.seed,
                                      cfg.teacher_forcing)
        # F is untouched by the adaptation (only G_e' and per-environment values learn)
        for k, v in new.field.state_dict().items():
            if k in frozen and not torch.equal(v, frozen[k]):
                raise RuntimeError(f"adapt changed the frozen F ({k})")
    if "one_per_env" in schemes:
        scratch = model("one_per_env")
        objective = build_objective("one_per_env", {}, run.spec.system.is_grid, loss=cfg.loss)
        results["one_per_env"] = _train(scratch, objective, train, test, steps, cfg.lr,
                                        cfg.seed, cfg.teacher_forcing)
    table = {name: {str(s): r[s] for s in TABLE_STEPS if s in r} | {str(last): r[last]}
             for name, r in results.items()}
    report = {"run": str(run.path), "source": str(source), "environments": list(ds.env_names),
              "steps": steps, "test_mse": {k: {str(s): v for s, v in r.items()}
                                           for k, r in results.items()},
              "table": table}
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "adapt.json", json.dumps(report, indent=2))
        _plot(results, folder / "adapt.png")
        report["folder"] = str(folder)
    report["frozen_F"] = frozen
    return report


def _plot(results: dict[str, dict[int, float]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(5, 3.5))
    labels = {"pretrained_F": "pre-trained F only", "one_per_env": "One-Per-Env (scratch)",
              "leads": "pre-trained F + G_e' (LEADS)"}
    for name, r in results.items():
        xs = [s for s in sorted(r) if s > 0]
        ax.plot(xs, [r[s] for s in xs], marker="o", ms=3, label=labels.get(name, name))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training steps on the new environments")
    ax.set_ylabel("test MSE")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
