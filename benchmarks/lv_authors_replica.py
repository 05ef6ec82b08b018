"""The authors' LEADS training on Lotka–Volterra, re-written batched, to see what *their*
formulation reaches in a fixed budget (issue 11's target: test MSE ≤ 1.16e-3 in 15 min).

physml's LEADS on the authors' data stalls near 4e-3 (one environment, α = γ = 1, holds
most of it), and the authors' own code is too slow on this CPU (~0.5–2 s per step) to run
it the ~10⁵ steps the thesis's figure is said to take. This script does the computation of
the LEADS repository's ``train_leads.py lv`` (read from its ``experiments.py``,
``forecasters.py``, ``networks.py`` and ``utils.py``), with every environment in one batched
call so that it runs ~50× faster, and nothing of physml's model code:

- F and the ten G_e: MLPs 2 → 64 → 64 → 64 → 2 with the authors' ``Swish``
  (x·σ(x·softplus(β))/1.1, β learned from 0.5, one per layer); weights N(0, 0.05²),
  biases 0 (``init_weights(net, 'normal', 0.05)``); no input or output scaling;
- RK4 with the 3/8 rule on the frames (torchdiffeq's fixed-grid ``rk4``);
- loss = MSE of the forecast (teacher forcing: each frame but the last restarts the
  integration from the data with probability ε, ε = 0.99^i, i incremented every 10
  steps) + λ·(Σ_e mean (‖G_e(x)‖/(‖x‖ + 1e-5))² + 1e-2·Σ_e Σ_layers σ(W)²), λ = 1/5e3,
  σ from 5 power iterations per step on persistent vectors;
- Adam 1e-3; the test MSE every 50 steps, the checkpoint kept being the one with the
  lowest *test* MSE (the authors' selection rule).

The data are ``specs/table3_14/lv_authors_data.npz`` (the authors' initial states,
integrated by DOP853 instead of their RK45 at default tolerances). Check that this is
their computation: the authors' code itself (run from the fetched repository, its own
RK45 data) gives a test MSE of 0.269 at step 50 and 0.0748 at step 100; this script 0.271
and 0.0726.

    python benchmarks/lv_authors_replica.py --minutes 15 > benchmarks/results/...json
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from _host import host

DATA = Path(__file__).resolve().parent.parent / "specs" / "table3_14" / "lv_authors_data.npz"
THESIS = 1.16e-3


def load(split: str) -> torch.Tensor:
    """``(E, N, T, 2)`` trajectories of one split."""
    d = np.load(DATA)
    return torch.from_numpy(np.stack([d[f"{split}_u"], d[f"{split}_v"]], -1)).float()


class Stacked(torch.nn.Module):
    """``n`` MLPs 2 → w → w → w → 2 with the authors' Swish, weights stacked ``(n, out, in)``;
    ``forward`` takes ``(n, B, 2)``: row k goes through MLP k."""

    def __init__(self, n: int, width: int = 64, gain: float = 0.05, init: str = "authors"):
        super().__init__()
        sizes = [2, width, width, width, 2]
        self.W = torch.nn.ParameterList(
            torch.nn.Parameter(torch.randn(n, b, a) * gain) for a, b in zip(sizes, sizes[1:]))
        if init == "physml":  # orthogonal, gain 1, the last layer zero (physml's mlp)
            with torch.no_grad():
                for W in self.W[:-1]:
                    for k in range(n):
                        torch.nn.init.orthogonal_(W[k])
                self.W[-1].zero_()
        self.b = torch.nn.ParameterList(
            torch.nn.Parameter(torch.zeros(n, 1, b)) for b in sizes[1:])
        self.beta = torch.nn.Parameter(torch.full((len(sizes) - 2, n, 1, 1), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (W, b) in enumerate(zip(self.W, self.b)):
            x = torch.baddbmm(b, x, W.transpose(1, 2))
            if i < len(self.W) - 1:
                x = x * torch.sigmoid(x * F.softplus(self.beta[i])) / 1.1
        return x


class Leads(torch.nn.Module):
    def __init__(self, n_env: int, init: str = "authors", scales=None):
        super().__init__()
        self.n_env = n_env
        self.F = Stacked(1, init=init)
        self.G = Stacked(n_env, init=init)
        # physml's Scaled: net(x / s_in) · s_out, s from the training data's RMS
        self.s_in, self.s_out = scales if scales is not None else (torch.ones(2), torch.ones(2))
        # power-iteration vectors, persistent (the authors' CalculateNorm)
        self.u = [F.normalize(torch.randn(n_env, W.shape[1]), dim=-1) for W in self.G.W]
        self.v = [F.normalize(torch.randn(n_env, W.shape[2]), dim=-1) for W in self.G.W]

    def rate(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(E, B, 2)``: F(x) + G_e(x) for environment e's rows."""
        E, B, _ = x.shape
        return self.F((x / self.s_in).reshape(1, E * B, 2)).reshape(E, B, 2) * self.s_out \
            + self.g(x)

    def g(self, x: torch.Tensor) -> torch.Tensor:
        return self.G(x / self.s_in) * self.s_out

    def rollout(self, x0: torch.Tensor, data: torch.Tensor | None, restart, dt: float, T: int):
        """RK4 (3/8 rule) over T frames from ``x0`` ``(E, B, 2)``; frame j+1 restarts
        from ``data[:, :, j+1]`` where ``restart[j]``."""
        x, out = x0, [x0]
        for j in range(T - 1):
            k1 = self.rate(x)
            k2 = self.rate(x + dt * k1 / 3)
            k3 = self.rate(x + dt * (k2 - k1 / 3))
            k4 = self.rate(x + dt * (k1 - k2 + k3))
            x = x + dt * (k1 + 3 * (k2 + k3) + k4) / 8
            out.append(x)
            if restart is not None and restart[j]:
                x = data[:, :, j + 1]
        return torch.stack(out, 2)

    def spectral(self, iterations: int = 5) -> torch.Tensor:
        """Σ_e Σ_layers σ(W)², σ = uᵀWv after ``iterations`` power iterations."""
        total = 0.0
        for i, W in enumerate(self.G.W):
            with torch.no_grad():
                for _ in range(iterations):
                    self.v[i] = F.normalize(torch.einsum("emn,em->en", W, self.u[i]), dim=-1)
                    self.u[i] = F.normalize(torch.einsum("emn,en->em", W, self.v[i]), dim=-1)
            total = total + torch.einsum("em,emn,en->e", self.u[i], W, self.v[i]).pow(2).sum()
        return total


def test_mse(model: Leads, test: torch.Tensor, dt: float) -> torch.Tensor:
    """Per-environment test MSE ``(E,)`` of free forecasts from the first frame."""
    with torch.no_grad():
        pred = model.rollout(test[:, :, 0], None, None, dt, test.shape[2])
    return (pred - test).pow(2).mean(dim=(1, 2, 3))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--steps", type=int, default=10 ** 9)
    ap.add_argument("--lambda-inv", type=float, default=1 / 5e3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=1000)
    ap.add_argument("--init", choices=("authors", "physml"), default="authors",
                    help="physml: orthogonal gain-1 layers and a zero last layer")
    ap.add_argument("--scaled", action="store_true",
                    help="physml's input/output scales (RMS of the states and rates)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    train, test = load("train"), load("test")
    E, T = train.shape[0], train.shape[2]
    dt = 0.5
    scales = None
    if args.scaled:
        rates = (train[:, :, 1:] - train[:, :, :-1]) / dt
        scales = (train.pow(2).mean((0, 1, 2)).sqrt(), rates.pow(2).mean((0, 1, 2)).sqrt())
    model = Leads(E, args.init, scales)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999))
    rng = np.random.default_rng(args.seed)
    i_eps, eps = 1, 0.99
    best, curve, start, step = None, [], time.perf_counter(), 0
    while step < args.steps and time.perf_counter() - start < 60 * args.minutes:
        step += 1
        restart = rng.random(T) < eps
        restart[-1] = False
        restart = restart[1:]  # restart[j]: frame j + 1 restarts
        pred = model.rollout(train[:, :, 0], train, restart, dt, T)
        traj = F.mse_loss(pred, train)
        g = model.g(train.reshape(E, -1, 2))
        x = train.reshape(E, -1, 2)
        omega = ((g.norm(dim=-1) / (x.norm(dim=-1) + 1e-5)) ** 2).mean(1).sum()
        loss = traj + args.lambda_inv * (omega + 1e-2 * model.spectral())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 10 == 0:
            i_eps += 1
            eps = 0.99 ** i_eps
        if step % 50 == 0:
            per_env = test_mse(model, test, dt)
            mse = float(per_env.mean())
            if best is None or mse < best["test_mse"]:
                best = {"step": step, "test_mse": mse, "train_mse": float(traj.detach()),
                        "per_environment": {f"e{e + 1}": float(v) for e, v in
                                            enumerate(per_env)}}
            if step % args.log_every == 0:
                curve.append({"step": step, "seconds": round(time.perf_counter() - start, 1),
                              "test_mse": mse, "e10": float(per_env[-1]),
                              "train_mse": float(traj.detach())})
    wall = time.perf_counter() - start
    print(json.dumps({
        "what": "the authors' LV LEADS computation (LEADS repository, train_leads.py lv), "
                "re-written with the environments batched; the authors' data "
                "(lv_authors_data.npz); checkpoint chosen on the test set every 50 steps "
                "(their rule)",
        "lambda_inv": args.lambda_inv, "seed": args.seed, "init": args.init,
        "scaled": args.scaled,
        "steps": step, "seconds": round(wall, 1), "ms_per_step": round(1e3 * wall / step, 2),
        "best": best, "thesis_test_mse": THESIS,
        "best_without_e10": None if best is None else
        float(np.mean([v for k, v in best["per_environment"].items() if k != "e10"])),
        "curve": curve, **host()}, indent=1))


if __name__ == "__main__":
    main()
