"""LEADS training step time on Lotka–Volterra, against a hand-written batched loop.

One Adam step of LEADS (thesis §3.4; the authors' LV setting: 10 environments, one
trajectory each, 20 frames δt = 0.5, RK4 on the frames, shared F and per-environment G_e
both 4-layer Swish MLPs of width 64, Ω = relative L² norm + 1e-2·Σσ² with one power
iteration per step). Two implementations run alternately in one process:

- ``physml``: the library's rollout + ``leads`` objective (stacked G_e weights, one
  batched matmul per layer for all environments);
- ``hand``: the same computation written directly in PyTorch (stacked weights, bmm, an
  RK4 loop, the same loss) — the floor a library could reach.

Then the physml step time for 1, 2, 4 … 64 environments (one trajectory each): it should
grow sub-linearly. Prints one JSON object::

    python benchmarks/leads_speed.py            # 30 timed steps each
    python benchmarks/leads_speed.py --quick    # fewer steps and sizes (smoke test)
    python benchmarks/leads_speed.py --compiled # also physml with `compile true`

The issue's reference: the authors' code, about 540 ms per step on the reference 2-core
CPU. Timings are medians over steps; the machine's load is recorded with them.
"""
from __future__ import annotations

import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import physml
from _host import host  # benchmarks/_host.py: the scripts run as `python benchmarks/NAME.py`
from physml.experiment import build
from physml.data.batches import Batch

SPEC = """use lotka_volterra
data:
    trajectories 1 train, 1 val, 1 test
    time 0 .. 9.5 step 0.5
    initial u, v ~ uniform(1, 2)
{envs}augment mlp(hidden=64, layers=4, activation="swish")
train leads(lambda_inv=2e-4, spectral=1e-2) solver rk4
"""


def spec_for(n_envs: int):
    envs = "environments:\n" + "".join(
        f"    e{i}: alpha = {0.25 + 0.75 * i / max(1, n_envs - 1):.4f}\n"
        for i in range(n_envs))
    return physml.parse_spec(SPEC.format(envs=envs), "bench.phy")


def batch_for(n_envs: int, gen: torch.Generator) -> Batch:
    t = torch.arange(20) * 0.5
    x0 = 1 + torch.rand(n_envs, 2, generator=gen)
    target = x0[:, None] * (1 + 0.1 * torch.rand(n_envs, 20, 2, generator=gen))
    env = torch.arange(n_envs)
    return Batch(x0=x0, t=t, target=target, env=env, traj=env)


def physml_step(n_envs: int, compiled: bool = False, restart_p: float | None = None):
    """physml's Adam step; ``compiled``: with ``compile true`` (fixed-grid steps through
    torch.compile); ``restart_p``: teacher forcing, each frame restarting with this
    probability (a new draw every step)."""
    from dataclasses import replace

    exp = build(spec_for(n_envs))
    rollout, objective = exp.rollout, exp.objective
    rollout.solver = replace(rollout.solver, compiled=compiled)
    rollout.train()
    opt = torch.optim.Adam(rollout.parameters(), lr=1e-3)
    draws = torch.Generator().manual_seed(1)

    def step(batch):
        if restart_p is not None:
            batch.restart = torch.rand(batch.t.shape[0], generator=draws) < restart_p
        loss, _ = objective.loss(rollout, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss)
    return step


class Hand:
    """The hand-written batched loop: F (one MLP) + G_e (stacked MLPs) with bmm."""

    def __init__(self, n_envs: int, width: int = 64, layers: int = 4):
        sizes = [2] + [width] * (layers - 1) + [2]
        self.F = [(torch.randn(b, a) * 0.2, torch.zeros(b)) for a, b in zip(sizes, sizes[1:])]
        self.G = [(torch.randn(n_envs, b, a) * 0.2, torch.zeros(n_envs, b))
                  for a, b in zip(sizes, sizes[1:])]
        self.params = [p.requires_grad_() for layer in self.F + self.G for p in layer]
        self.opt = torch.optim.Adam(self.params, lr=1e-3)
        self.u = [F.normalize(torch.randn(n_envs, W.shape[1]), dim=-1) for W, _ in self.G]
        self.v = [F.normalize(torch.randn(n_envs, W.shape[2]), dim=-1) for W, _ in self.G]

    def g(self, x):  # x (E, n, 2): x[e] goes through G_e
        h = x
        for i, (W, b) in enumerate(self.G):
            h = torch.baddbmm(b.unsqueeze(1), h, W.transpose(1, 2))
            if i < len(self.G) - 1:
                h = F.silu(h)
        return h

    def f(self, x):
        h = x
        for i, (W, b) in enumerate(self.F):
            h = F.linear(h, W, b)
            if i < len(self.F) - 1:
                h = F.silu(h)
        return h + self.g(x.unsqueeze(1)).squeeze(1)

    def step(self, batch: Batch):
        x, dt, out = batch.x0, float(batch.t[1] - batch.t[0]), [batch.x0]
        for _ in range(batch.t.shape[0] - 1):
            k1 = self.f(x)
            k2 = self.f(x + dt / 2 * k1)
            k3 = self.f(x + dt / 2 * k2)
            k4 = self.f(x + dt * k3)
            x = x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            out.append(x)
        pred = torch.stack(out, dim=1)
        traj = (pred - batch.target).pow(2).mean()
        states = batch.target  # (E, T, 2): environment e's states
        g = self.g(states)
        rel = (g.pow(2).sum(-1) / states.pow(2).sum(-1)).mean(1)
        spec = 0.0
        with torch.no_grad():
            for i, (W, _) in enumerate(self.G):
                self.v[i] = F.normalize(torch.einsum("emn,em->en", W, self.u[i]), dim=-1)
                self.u[i] = F.normalize(torch.einsum("emn,en->em", W, self.v[i]), dim=-1)
        for i, (W, _) in enumerate(self.G):
            spec = spec + torch.einsum("em,emn,en->e", self.u[i], W, self.v[i]).pow(2).sum()
        loss = traj + 2e-4 * (rel.sum() + 1e-2 * spec)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss)


def timed(step, batch, n: int, warm: int = 3) -> list[float]:
    for _ in range(warm):
        step(batch)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        step(batch)
        out.append(1e3 * (time.perf_counter() - t0))
    return out


def main(argv: list[str]) -> dict:
    quick = "--quick" in argv
    torch.set_num_threads(1)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    n = 5 if quick else 30
    batch = batch_for(10, gen)
    ours, hand = physml_step(10), Hand(10)
    a, b = [], []
    for _ in range(3):  # alternate, so that both see the same machine load
        a += timed(ours, batch, n // 3 or 1)
        b += timed(hand.step, batch, n // 3 or 1)
    ms, ms_hand = statistics.median(a), statistics.median(b)
    compiled = {}
    if "--compiled" in argv:
        # compile true: torch.compile of 4 RK4 steps per call (the first call compiles,
        # ~1 min cold); teacher forcing restarts inside the same graph.
        for p in (None, 0.5):
            step = physml_step(10, compiled=True, restart_p=p)
            key = "no_teacher_forcing" if p is None else "teacher_forcing_p0.5"
            compiled[key] = round(statistics.median(timed(step, batch, n, warm=3)), 2)
        eager_tf = statistics.median(timed(physml_step(10, restart_p=0.5), batch, n))
        compiled["eager_teacher_forcing_p0.5"] = round(eager_tf, 2)
    curve = {}
    for E in ((1, 4, 16) if quick else (1, 2, 4, 8, 16, 32, 64)):
        curve[E] = statistics.median(timed(physml_step(E), batch_for(E, gen), n // 2 or 1))
    return {
        "benchmark": "leads_speed",
        "setting": "LV, 10 environments × 1 trajectory, 20 frames, rk4 on the frames, "
                   "F and G_e 4-layer swish MLPs width 64, Ω relative + 1e-2·Σσ²",
        "ms_per_adam_step": round(ms, 2),
        "ms_per_adam_step_hand_written": round(ms_hand, 2),
        "ratio_to_hand_written": round(ms / ms_hand, 3),
        **({"ms_per_adam_step_compiled": compiled,
            "compiled_ratio_to_hand_written": round(compiled["no_teacher_forcing"] / ms_hand, 3)}
           if compiled else {}),
        "authors_reference_ms": 540,
        "ratio_to_authors_reference": round(ms / 540, 3),
        "ms_per_step_by_n_envs": {str(k): round(v, 2) for k, v in curve.items()},
        "growth_1_to_max": round(curve[max(curve)] / curve[1], 2),
        **host(),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=2))
