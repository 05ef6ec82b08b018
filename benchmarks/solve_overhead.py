"""Per-step overhead of physml.solve.odeint's generic tableau loop vs the trainer's
hand-written steppers (``physml.training.trainer.fixed_grid``). Prints JSON.

    python benchmarks/solve_overhead.py [--repeat 30] [--compiled]

Problem: the thesis pendulum's MLP (2 → 200 → 200 → 2, tanh) on a batch of 25, 40 steps of
0.5 (t = 0 … 20), forward + backward, in float32 on the CPU, one thread. The two loops are
timed interleaved and the median is reported (the machine is shared and noisy).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from physml.solve import odeint  # noqa: E402
from physml.training.trainer import fixed_grid as trainer_fixed_grid  # noqa: E402


class Field(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 200), torch.nn.Tanh(),
                                       torch.nn.Linear(200, 200), torch.nn.Tanh(),
                                       torch.nn.Linear(200, 2))

    def forward(self, t, x):
        return self.net(x)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--compiled", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    f = Field()
    x0 = torch.randn(25, 2)
    t = torch.arange(41, dtype=torch.float32) * 0.5

    def run(fn):
        f.zero_grad()
        fn().square().mean().backward()

    cases = {
        "trainer_rk4_38_handwritten": lambda: trainer_fixed_grid(f, x0, t, "rk4",
                                                                 compiled=args.compiled),
        "solve_rk4_38_generic": lambda: odeint(f, x0, t, "rk4_38", compiled=args.compiled),
        "solve_rk4_classic_generic": lambda: odeint(f, x0, t, "rk4", compiled=args.compiled),
        "trainer_midpoint_handwritten": lambda: trainer_fixed_grid(f, x0, t, "midpoint",
                                                                   compiled=args.compiled),
        "solve_midpoint_generic": lambda: odeint(f, x0, t, "midpoint", compiled=args.compiled),
    }
    # Same numbers first: the generic 3/8 loop reproduces the hand-written one.
    with torch.no_grad():
        a = trainer_fixed_grid(f, x0, t, "rk4")
        b = odeint(f, x0, t, "rk4_38")
    times = {k: [] for k in cases}
    for fn in cases.values():
        for _ in range(3):
            run(fn)
    for _ in range(args.repeat):
        for k, fn in cases.items():
            start = time.perf_counter()
            run(fn)
            times[k].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({
        "problem": "pendulum MLP 2-200-200-2, batch 25, 40 steps, forward+backward, "
                   "float32, 1 thread",
        "compiled": args.compiled,
        "median_ms": {k: round(1e3 * v, 3) for k, v in med.items()},
        "ratio_generic_over_handwritten_rk4_38":
            round(med["solve_rk4_38_generic"] / med["trainer_rk4_38_handwritten"], 3),
        "ratio_generic_over_handwritten_midpoint":
            round(med["solve_midpoint_generic"] / med["trainer_midpoint_handwritten"], 3),
        "max_abs_diff_rk4_38": float((a - b).abs().max()),
        "torch": torch.__version__,
    }, indent=2))


if __name__ == "__main__":
    main()
