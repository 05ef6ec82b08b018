"""Compiled vector fields against hand-written torch code (prints JSON).

Times F(t, X) for the damped pendulum (batch 4096) and FitzHugh–Nagumo reaction–diffusion
on 32×32 (batch 64), forward alone and forward + backward (w.r.t. the state and the
learnable parameters). The hand-written references are what one would write in a model:
plain tensor arithmetic with softplus-constrained parameters, and a torch.roll 5-point
Laplacian (also a conv2d variant for reference). Median of many repeats after warm-up,
with torch's default number of threads.

    python benchmarks/compile_speed.py [--repeats 200]
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import physml

ROOT = Path(__file__).resolve().parents[1]


class Pendulum(nn.Module):
    """θ̇ = ω, ω̇ = −(2π/T0)² sin θ − α ω with T0 > 0, α ≥ 0 learnable (softplus)."""

    def __init__(self, T0=6.0, alpha=0.2):
        super().__init__()
        inv = lambda y: y + math.log(-math.expm1(-y))  # noqa: E731
        self.T0 = nn.Parameter(torch.tensor(inv(T0)))
        self.alpha = nn.Parameter(torch.tensor(inv(alpha)))

    def forward(self, t, X):
        T0, alpha = F.softplus(self.T0), F.softplus(self.alpha)
        th, om = X[..., 0], X[..., 1]
        w0 = 2 * math.pi / T0
        return torch.stack([om, -w0 ** 2 * torch.sin(th) - alpha * om], -1)


class ReactionDiffusion(nn.Module):
    """u̇ = aΔu + u − u³ − k − v, v̇ = bΔv + u − v on a periodic grid; a, b > 0 learnable."""

    def __init__(self, a=1e-3, b=5e-3, k=5e-3, h=2 / 32, conv=False):
        super().__init__()
        inv = lambda y: y + math.log(-math.expm1(-y))  # noqa: E731
        self.a = nn.Parameter(torch.tensor(inv(a)))
        self.b = nn.Parameter(torch.tensor(inv(b)))
        self.k, self.h2, self.conv = k, h * h, conv
        self.register_buffer("kernel", torch.tensor(
            [[[[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]]]) / (h * h))

    def lap(self, u):
        if self.conv:
            B, C, H, W = u.shape
            x = F.pad(u.reshape(B * C, 1, H, W), (1, 1, 1, 1), mode="circular")
            return F.conv2d(x, self.kernel).reshape(B, C, H, W)
        return (u.roll(1, -1) + u.roll(-1, -1) + u.roll(1, -2) + u.roll(-1, -2) - 4 * u) / self.h2

    def forward(self, t, X):
        a, b = F.softplus(self.a), F.softplus(self.b)
        L = self.lap(X)
        u, v = X[:, 0], X[:, 1]
        du = a * L[:, 0] + u - u ** 3 - self.k - v
        dv = b * L[:, 1] + u - v
        return torch.stack([du, dv], 1)


def _time(fn, repeats, warmup=20):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def _bench(model, X, repeats):
    t = torch.tensor(0.0)
    params = [p for p in model.parameters()]

    def fwd():
        with torch.no_grad():
            model(t, X)

    Xg = X.clone().requires_grad_(True)

    def fwd_bwd():
        out = model(t, Xg)
        torch.autograd.grad(out.square().sum(), [Xg, *params])

    return _time(fwd, repeats), _time(fwd_bwd, repeats)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=300)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    results = {"threads": torch.get_num_threads(), "torch": torch.__version__, "cases": {}}
    pend = physml.load_spec(ROOT / "equations" / "damped_pendulum.phy")
    rd = physml.load_spec(ROOT / "equations" / "reaction_diffusion.phy")
    cases = {
        "pendulum_b4096": (physml.compile_dynamics(pend, learn=["T0", "alpha"]),
                           {"roll": Pendulum()}, torch.randn(4096, 2)),
        "reaction_diffusion_32x32_b64": (physml.compile_dynamics(rd, learn=["a", "b"]),
                                         {"roll": ReactionDiffusion(),
                                          "conv2d": ReactionDiffusion(conv=True)},
                                         torch.rand(64, 2, 32, 32)),
    }
    for name, (compiled, hands, X) in cases.items():
        with torch.no_grad():
            ref = hands["roll"](torch.tensor(0.0), X)
        with torch.no_grad():
            err = float((compiled(torch.tensor(0.0), X) - ref).abs().max())
        c_f, c_fb = _bench(compiled, X, args.repeats)
        entry = {"compiled_forward_us": c_f * 1e6, "compiled_forward_backward_us": c_fb * 1e6,
                 "max_abs_difference": err}
        for tag, hand in hands.items():
            h_f, h_fb = _bench(hand, X, args.repeats)
            entry[f"hand_{tag}_forward_us"] = h_f * 1e6
            entry[f"hand_{tag}_forward_backward_us"] = h_fb * 1e6
            entry[f"ratio_forward_vs_{tag}"] = c_f / h_f
            entry[f"ratio_forward_backward_vs_{tag}"] = c_fb / h_fb
        results["cases"][name] = {k: round(v, 3) if isinstance(v, float) and v > 1e-3 else v
                                  for k, v in entry.items()}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
