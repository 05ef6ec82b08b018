"""Adam-step time of a partially observed grid model against a hand-written loop (issue 12).

The Navier–Stokes model of ``specs/chapter2/ns_density_setting2.phy`` (thesis §2.5.2):
64×64 velocity + density, only the density observed, F_θ the thesis's ResNet (2
down-samplings, 6 residual blocks, bilinear up-convolutions, 64 channels), batch 16,
horizon 6 frames, 3 Euler steps per frame, the loss on the density alone. Two
implementations run alternately in one process, on one device:

- ``physml``: the library's rollout and objective (``build`` of the spec, as training does);
- ``hand``: the same network (physml's ``ResNet`` module, the same input/output scaling)
  stepped by a plain PyTorch Euler loop with the same loss — the floor a library could
  reach.

``--model cardiac``: the model of ``specs/chapter2/cardiac_rectangle.phy`` (thesis §2.7.3):
24×24 potential v, gate h and scar s, v and s observed, X₀ from a U-Net encoder on four
frames, F_θ a ResNet (64 channels, 3 blocks, 3 down-samplings) acting on v and h, 2 Euler
steps per frame, horizon 6, the loss on v and s plus the scar penalty 0.1·mean(1_s v²)
(eq. 2.13). The hand-written loop drives the same encoder and network modules.

Scheduled sampling is left out of both (it only swaps observed frames in).
Prints one JSON object::

    python benchmarks/partial_speed.py                    # CPU, 10 timed steps each
    python benchmarks/partial_speed.py --model cardiac    # the cardiac model
    python benchmarks/partial_speed.py --model cardiac --held  # + the scar held (`hard`)
    python benchmarks/partial_speed.py --device cuda      # GPU
    python benchmarks/partial_speed.py --quick            # batch 2, 2 steps (smoke test)
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

import physml
from _host import host  # benchmarks/_host.py: the scripts run as `python benchmarks/NAME.py`
from physml.data.batches import Batch
from physml.experiment import build
from physml.models.nets import ResNet

SPECS = Path(__file__).resolve().parent.parent / "specs" / "chapter2"
SPEC = SPECS / "ns_density_setting2.phy"
CARDIAC = SPECS / "cardiac_rectangle.phy"


def spec(path: Path = SPEC, held: bool = False):
    """``held``: the cardiac scar held by the solver (``constraint ... hard``) instead of
    penalised."""
    text = path.read_text().replace(" scheduled_sampling 0.9999", "")
    if held:
        text = text.replace("where s > 0.5 weight 0.1\n", "where s > 0.5 hard\n")
        assert " hard\n" in text, path
    return physml.parse_spec(text, str(path))


def cardiac_batch(n: int, device, gen: torch.Generator) -> Batch:
    """A cardiac batch: 3 past frames (the encoder's context), t0 and 6 frames; the gate
    h hidden (masked and zero in the data, as training data hold it)."""
    t = torch.arange(7.0)
    target = torch.rand(n, 7, 3, 24, 24, generator=gen)
    context = torch.rand(n, 3, 3, 24, 24, generator=gen)
    target[:, :, 2] = (target[:, :1, 2] > 0.8).float()       # a static scar
    context[:, :, 2] = target[:, :1, 2]
    target[:, :, 1] = 0
    context[:, :, 1] = 0
    mask = torch.tensor([1.0, 0.0, 1.0]).view(1, 1, 3, 1, 1)
    b = Batch(x0=target[:, 0], t=t, target=target, env=torch.zeros(n, dtype=torch.long),
              traj=torch.arange(n), context=context, mask=mask)
    return b.to(device)


class HandCardiac:
    """X₀ = E(Y₋₃..Y₀) + Y₀; x ← x + h·N(x), 2 steps per frame (N: physml's scaled ResNet
    on v, h with s as an input); MSE on v and s + 0.1·mean(1_{s>0.5} v²)."""

    def __init__(self, device, substeps: int = 2):
        exp = build(spec(CARDIAC))
        self.encoder = exp.rollout.encoder.to(device)
        self.net = exp.rollout.field.augmentation.to(device)
        params = [*self.encoder.parameters(), *self.net.parameters()]
        self.opt = torch.optim.Adam(params, lr=1e-3)
        self.substeps = substeps

    def step(self, batch: Batch):
        h = float(batch.t[1] - batch.t[0]) / self.substeps
        frames = torch.cat([batch.context, batch.target[:, :1]], dim=1)
        x = self.encoder(frames) + batch.target[:, 0]
        out = [x]
        for _ in range(batch.t.shape[0] - 1):
            for _ in range(self.substeps):
                x = x + h * self.net(x)
            out.append(x)
        pred = torch.stack(out, dim=1)
        seen = pred[:, :, [0, 2]] - batch.target[:, :, [0, 2]]
        scar = (batch.target[:, :, 2] > 0.5).to(pred.dtype)
        loss = seen.pow(2).mean() + 0.1 * (scar * pred[:, :, 0].pow(2)).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()


def batch_for(n: int, device, gen: torch.Generator) -> Batch:
    t = torch.arange(7) * 0.5
    target = torch.randn(n, 7, 3, 64, 64, generator=gen)
    mask = torch.tensor([0.0, 0.0, 1.0]).view(1, 1, 3, 1, 1)   # rho observed
    b = Batch(x0=target[:, 0], t=t, target=target, env=torch.zeros(n, dtype=torch.long),
              traj=torch.arange(n), mask=mask)
    return b.to(device)


def physml_step(device, path: Path = SPEC, held: bool = False):
    exp = build(spec(path, held))
    rollout, objective = exp.rollout.to(device), exp.objective
    rollout.train()
    opt = torch.optim.Adam(rollout.parameters(), lr=1e-3)

    def step(batch):
        loss, _ = objective.loss(rollout, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()
    return step


class Hand:
    """x ← x + h·s_out ⊙ N(x ⊘ s_in), 3 steps per frame; MSE on the density channel."""

    def __init__(self, device, substeps: int = 3):
        dom = spec().system.domain
        self.net = ResNet(3, 2, channels=64, blocks=6, down=2, domain=dom).to(device)
        self.s_in = torch.ones(1, 3, 1, 1, device=device)
        self.s_out = torch.ones(1, 3, 1, 1, device=device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.substeps = substeps

    def step(self, batch: Batch):
        h = float(batch.t[1] - batch.t[0]) / self.substeps
        x, out = batch.x0, []
        for _ in range(batch.t.shape[0] - 1):
            for _ in range(self.substeps):
                x = x + h * self.net(x / self.s_in) * self.s_out
            out.append(x)
        pred = torch.stack(out, dim=1)
        loss = (pred[:, :, 2] - batch.target[:, 1:, 2]).pow(2).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()


def timed(step, batch, n: int, device, warm: int = 2) -> list[float]:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warm):
        step(batch)
    sync()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        step(batch)
        sync()
        out.append(1e3 * (time.perf_counter() - t0))
    return out


def main(argv: list[str]) -> dict:
    quick = "--quick" in argv
    device = torch.device(argv[argv.index("--device") + 1] if "--device" in argv else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    cardiac = "--model" in argv and argv[argv.index("--model") + 1] == "cardiac"
    n, B = (2, 2) if quick else (10, 16)
    batch = (cardiac_batch if cardiac else batch_for)(B, device, gen)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True      # as physml's trainer sets it on CUDA
    if cardiac:
        ours, hand = physml_step(device, CARDIAC), HandCardiac(device)
    else:
        ours, hand = physml_step(device), Hand(device)
    a, b = [], []
    for _ in range(2):      # alternate, so that both see the same machine load
        a += timed(ours, batch, n // 2 or 1, device)
        b += timed(hand.step, batch, n // 2 or 1, device)
    ms, ms_hand = statistics.median(a), statistics.median(b)
    extra = {}
    if cardiac and "--held" in argv:
        # The scar held by the solver: the condition and a select at every Euler step,
        # against the penalty's one pass over the forecast; timed alternately with it.
        held, c, d = physml_step(device, CARDIAC, held=True), [], []
        for _ in range(2):
            c += timed(held, batch, n // 2 or 1, device)
            d += timed(ours, batch, n // 2 or 1, device)
        extra["ms_per_adam_step_scar_held"] = round(statistics.median(c), 2)
        extra["ratio_scar_held_to_penalised"] = round(statistics.median(c) /
                                                      statistics.median(d), 3)
    if device.type == "cuda":
        # cuDNN's own algorithm search (physml's trainer turns it on for CUDA devices)
        torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark
        c = timed(ours, batch, n // 2 or 1, device, warm=3)
        extra[f"ms_physml_cudnn_benchmark_{torch.backends.cudnn.benchmark}"] = \
            round(statistics.median(c), 2)
        torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark
        if "--profile" in argv:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for _ in range(2):
                    ours(batch)
                torch.cuda.synchronize()
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15),
                  file=sys.stderr)
    return {
        **extra,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "benchmark": "partial_speed",
        "setting": (f"cardiac 24×24 v, h, s; v and s observed; batch {B}, U-Net encoder on 4 "
                    "frames, horizon 6, 2 Euler steps per frame, ResNet(64 ch, 3 blocks, 3 "
                    "down-samplings) on v, h, scar penalty (eq. 2.13)") if cardiac else
                   (f"NS 64×64 velocity + density, density observed, batch {B}, horizon 6, "
                    "3 Euler steps per frame, ResNet(64 ch, 6 blocks, 2 down-samplings)"),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "ms_per_adam_step": round(ms, 2),
        "ms_per_adam_step_hand_written": round(ms_hand, 2),
        "ratio_to_hand_written": round(ms / ms_hand, 3),
        "timed_steps": len(a),
        **host(),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=2))
