"""Lotka–Volterra LEADS data with the initial states of the authors' code.

The LEADS repository (``datasets/lv.py``) starts trajectory ``j`` of every environment at
``np.random.seed(j); np.random.random(2) + 1`` for training and at
``np.random.seed(2**31 - 1 - j)`` for testing. Its single training orbit per environment
therefore starts at (1.549, 1.715) in all ten environments; ``specs/leads_lotka_volterra.phy``
draws its own initial states (seed 0 gives (1.104, 1.978)), one of which lies next to the
equilibrium (γ/δ, α/β) = (1, 2) of environment e4 (α = 1, γ = 0.5), so that e4's only
training orbit is a small loop and its test error dominates the mean. With one training
trajectory per environment the thesis's figure depends on that orbit, so Table 3.14's LV
rows are also run on these data (``specs/table3_14/lv_leads_authors_data.phy``).

The trajectories are integrated by DOP853 at rtol = atol = 1e-11 (the authors' RK45 at its
default tolerances is ~1e-4 off), on t = 0, 0.5, …, 9.5, with β = δ = 0.5 and the ten
(α, γ) pairs of the authors' ``param_lv``. Validation orbits (the authors have none; the
test split never selects a checkpoint) start at seeds 1000 … 1007.

    python benchmarks/lv_authors_data.py            # writes specs/table3_14/lv_authors_data.npz
    python benchmarks/lv_authors_data.py --novel    # lv_authors_novel.npz (Table 3.13)

``--novel``: the two novel environments of ``specs/leads_lotka_volterra_novel.phy``,
(α, γ) = (0.625, 0.375) and (0.875, 0.875), with the same seeds, for ``physml adapt`` on a
run trained on these data (``specs/table3_14/lv_novel_authors_data.phy``).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.integrate import solve_ivp

OUT = Path(__file__).resolve().parent.parent / "specs" / "table3_14" / "lv_authors_data.npz"
NOVEL_OUT = OUT.with_name("lv_authors_novel.npz")
#: (α, γ) per environment, in the order of the authors' param_lv (β = δ = 0.5)
PAIRS = ((0.5, 0.5), (0.25, 0.5), (0.75, 0.5), (1.0, 0.5), (0.5, 0.25), (0.5, 0.75),
         (0.5, 1.0), (0.25, 0.25), (0.75, 0.75), (1.0, 1.0))
#: the novel environments of Table 3.13 (inside the training range, not among PAIRS)
NOVEL_PAIRS = ((0.625, 0.375), (0.875, 0.875))
TIMES = np.arange(0.0, 10.0, 0.5)
SEEDS = {"train": [0], "val": [1000 + j for j in range(8)],
         "test": [int(np.iinfo(np.int32).max) - j for j in range(32)]}


def initial_state(seed: int) -> np.ndarray:
    """The authors' ``_get_init_cond``: U[1, 2)² from NumPy's legacy generator."""
    return np.random.RandomState(seed).random_sample(2) + 1.0


def orbit(alpha: float, gamma: float, y0: np.ndarray) -> np.ndarray:
    def f(_, x):
        return [alpha * x[0] - 0.5 * x[0] * x[1], 0.5 * x[0] * x[1] - gamma * x[1]]
    sol = solve_ivp(f, (0.0, TIMES[-1]), y0, method="DOP853", t_eval=TIMES,
                    rtol=1e-11, atol=1e-11)
    return sol.y                                            # (2, T)


def main(out: Path = OUT, pairs=PAIRS) -> Path:
    arrays = {"t": TIMES}
    for split, seeds in SEEDS.items():
        data = np.stack([np.stack([orbit(a, g, initial_state(s)) for s in seeds])
                         for a, g in pairs])                 # (E, N, 2, T)
        arrays[f"{split}_u"], arrays[f"{split}_v"] = data[:, :, 0], data[:, :, 1]
    np.savez(out, **arrays)
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    novel = "--novel" in args
    paths = [a for a in args if a != "--novel"]
    default, pairs = (NOVEL_OUT, NOVEL_PAIRS) if novel else (OUT, PAIRS)
    print(main(Path(paths[0]) if paths else default, pairs))
