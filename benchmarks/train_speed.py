"""Training speed: `physml.train` against a minimal hand-written PyTorch loop doing the same
computation (same network, same solver, same batch, same APHYNITY steps).

Prints JSON: milliseconds per Adam step for both and their ratio (target ≤ 1.1), for the
APHYNITY pendulum (thesis Table 3.4 protocol) and reaction–diffusion (batch 64, 32×32,
ConvNet of Table 3.2). For scale: a widely used research implementation of APHYNITY takes
about 40 ms per Adam step on the pendulum on the reference 2-core CPU.

    python benchmarks/train_speed.py [--steps 60] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchdiffeq import odeint

import physml
from physml.data import Dataset
from physml.models.nets import ConvNet, MLP

PENDULUM = """\
use damped_pendulum
prior:
    d(theta)/dt = omega
    d(omega)/dt = -omega0^2*sin(theta)
    learn T0 from 3
augment mlp(hidden=200, layers=3)
train aphynity(lambda0=1, tau2=1, niter=5) solver rk4 batch 25 lr 1e-3 val_every 1000000
"""

REACTION_DIFFUSION = """\
use reaction_diffusion
prior:
    d(u)/dt = a*lap(u)
    d(v)/dt = b*lap(v)
    learn a from 1.192e-3, b from 1.192e-3
augment convnet(channels=16, layers=3)
train aphynity(lambda0=1, tau2=1e-3, niter=1, norm=absolute) solver rk4 batch 64 lr 1e-3 val_every 1000000
"""


def fake_dataset(spec, n: int, frames: int, dt: float) -> Dataset:
    """Random trajectories with the right shapes: step time does not depend on values."""
    shape = spec.system.state_shape()
    g = torch.Generator().manual_seed(0)
    data = 0.5 * torch.rand(1, n, frames, *shape, generator=g)
    # A smooth-in-time signal so the loss is not degenerate.
    data = data + 0.1 * torch.linspace(0, 1, frames).reshape(1, 1, frames, *[1] * len(shape))
    return Dataset(spec.system.variables, shape, torch.arange(frames) * dt,
                   {"train": data, "val": data[:, :4]}, dt,
                   env_params=[spec.system.param_values])


def physml_ms_per_step(spec, ds, steps: int, device: str, threads: int | None,
                       compile: bool = False) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        run = physml.train(spec, dataset=ds, out=Path(tmp) / "run", steps=steps, device=device,
                           report=False, epochs=10 ** 6, threads=threads, compile=compile)
        rows = [m for m in run.metrics() if "loss" in m]
    niter = run.config.method_options.get("niter", 1)
    warm = min(5, len(rows) // 3)
    span = rows[-1]["time"] - rows[warm]["time"]
    return 1e3 * span / ((len(rows) - 1 - warm) * niter)


def hand_pendulum(ds, steps: int, device: str) -> float:
    """The APHYNITY pendulum loop written directly in PyTorch."""
    torch.manual_seed(0)
    dev = torch.device(device)
    net = MLP(2, hidden=200, layers=3).to(dev)
    raw = nn.Parameter(torch.tensor(math.log(math.expm1(3.0)), device=dev))

    def f(t, x):
        T0 = F.softplus(raw)
        w2 = (2 * math.pi / T0) ** 2
        fp = torch.stack([x[:, 1], -w2 * torch.sin(x[:, 0])], dim=-1)
        return fp + net(x)

    opt = torch.optim.Adam([{"params": net.parameters()}, {"params": [raw]}], lr=1e-3)
    data = ds.splits["train"][0].to(dev)
    t = ds.times.to(dev, torch.float32)
    lam, niter = 1.0, 5
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        for _ in range(niter):
            pred = odeint(f, data[:, 0], t, method="rk4").movedim(0, 1)
            traj = (pred - data).pow(2).mean()
            states = data.flatten(0, 1)
            fa = net(states)
            norm = (fa.pow(2).sum(1) / states.pow(2).sum(1).clamp_min(1e-10)).mean()
            loss = norm + lam * traj
            opt.zero_grad()
            loss.backward()
            opt.step()
        lam += 1.0 * float(traj.detach())
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    warm = min(5, steps // 3)
    return 1e3 * sum(times[warm:]) / ((steps - warm) * niter)


def hand_reaction_diffusion(ds, steps: int, device: str) -> float:
    torch.manual_seed(0)
    dev = torch.device(device)
    domain = physml.load_spec(Path(physml.lang.library_path("reaction_diffusion"))).system.domain
    net = ConvNet(2, 2, channels=16, layers=3, domain=domain).to(dev)
    raw = nn.Parameter(torch.full((2,), math.log(math.expm1(1.192e-3)), device=dev))
    h = domain.spacing[0]

    def lap(u):
        return (torch.roll(u, 1, -1) + torch.roll(u, -1, -1) + torch.roll(u, 1, -2)
                + torch.roll(u, -1, -2) - 4 * u) / h ** 2

    def f(t, x):
        d = F.softplus(raw)
        fp = torch.stack([d[0] * lap(x[:, 0]), d[1] * lap(x[:, 1])], dim=1)
        return fp + net(x)

    opt = torch.optim.Adam([{"params": net.parameters()}, {"params": [raw]}], lr=1e-3)
    data = ds.splits["train"][0].to(dev)
    t = ds.times.to(dev, torch.float32)
    lam = 1.0
    times = []
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        t0 = time.perf_counter()
        idx = torch.randperm(data.shape[0], generator=g)[:64].to(dev)
        batch = data[idx]
        pred = odeint(f, batch[:, 0], t, method="rk4").movedim(0, 1)
        traj = (pred - batch).pow(2).mean()
        norm = net(batch.flatten(0, 1)).flatten(1).pow(2).sum(1).mean()
        loss = norm + lam * traj
        opt.zero_grad()
        loss.backward()
        opt.step()
        lam += 1e-3 * float(traj.detach())
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    warm = min(5, steps // 3)
    return 1e3 * sum(times[warm:]) / (steps - warm)


def _rounds(hand, ours, rounds: int) -> dict:
    """Alternate the two loops ``rounds`` times and compare medians: on a shared, noisy
    machine a ratio of two runs made minutes apart means little."""
    hs, os_ = [], []
    for _ in range(rounds):
        hs.append(hand())
        os_.append(ours())
    ratios = sorted(o / h for o, h in zip(os_, hs))
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    return {"hand": med(hs), "ours": med(os_), "ratio": ratios[len(ratios) // 2],
            "ratios": [round(r, 3) for r in ratios]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rd-steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-rd", action="store_true")
    ap.add_argument("--skip-pendulum", action="store_true")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile runs")
    args = ap.parse_args()
    out = {"device": args.device, "torch": torch.__version__,
           "threads": torch.get_num_threads(), "rounds": args.rounds,
           "load_average": list(__import__("os").getloadavg())}
    if not args.skip_pendulum:
        spec = physml.parse_spec(PENDULUM)
        ds = fake_dataset(spec, 25, 40, 0.5)
        # The pendulum's tiny batches run fastest on one thread on CPU (physml's default there).
        if args.device == "cpu":
            torch.set_num_threads(1)
        eager = _rounds(lambda: hand_pendulum(ds, args.steps, args.device),
                        lambda: physml_ms_per_step(spec, ds, args.steps, args.device, 1), args.rounds)
        res = {"physml_ms_per_adam_step": round(eager["ours"], 3),
               "hand_written_ms_per_adam_step": round(eager["hand"], 3),
               "ratio": round(eager["ratio"], 3), "ratios_per_round": eager["ratios"]}
        if not args.no_compile:
            comp = _rounds(lambda: hand_pendulum(ds, args.steps, args.device),
                           lambda: physml_ms_per_step(spec, ds, args.steps, args.device, 1,
                                                      compile=True), args.rounds)
            res.update({"physml_compiled_ms_per_adam_step": round(comp["ours"], 3),
                        "compiled_ratio_to_hand": round(comp["ratio"], 3),
                        "compiled_ratios_per_round": comp["ratios"]})
        res["research_implementation_ms_per_adam_step_ref"] = 40.0
        torch.set_num_threads(out["threads"])
        out["pendulum"] = res
    if not args.skip_rd:
        spec = physml.parse_spec(REACTION_DIFFUSION)
        ds = fake_dataset(spec, 64, 25, 0.1)
        eager = _rounds(lambda: hand_reaction_diffusion(ds, args.rd_steps, args.device),
                        lambda: physml_ms_per_step(spec, ds, args.rd_steps, args.device, None),
                        args.rounds)
        res = {"physml_ms_per_adam_step": round(eager["ours"], 2),
               "hand_written_ms_per_adam_step": round(eager["hand"], 2),
               "ratio": round(eager["ratio"], 3), "ratios_per_round": eager["ratios"]}
        if not args.no_compile:
            comp = _rounds(lambda: hand_reaction_diffusion(ds, args.rd_steps, args.device),
                           lambda: physml_ms_per_step(spec, ds, args.rd_steps, args.device,
                                                      None, compile=True), args.rounds)
            res.update({"physml_compiled_ms_per_adam_step": round(comp["ours"], 2),
                        "compiled_ratio_to_hand": round(comp["ratio"], 3),
                        "compiled_ratios_per_round": comp["ratios"]})
        res["research_implementation_ms_per_adam_step_ref"] = 3100.0
        out["reaction_diffusion"] = res
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
