"""How big a spec's dataset will be, known before anything is allocated.

``physml check`` prints the estimate; the spec checks refuse a data block whose estimate
exceeds the memory budget (:func:`physml.limits.memory_budget`), with an error at the
``data:`` block, so ``trajectories 1000000000`` or a time grid of 10¹⁸ steps fails in
milliseconds with a message instead of in the allocator.

The estimate follows what the simulator holds (``physml.simulation.core``): the stored
arrays in float32 (twice when the data are noisy: noisy and clean copies), plus, for the
largest split, the solver's output and its reshaped copy (float32), the float64 noise
draw and sum, and about a dozen float64 solver stages of one state per trajectory.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .. import limits
from ..errors import BoundsError
from ..symbolic.spec import DataSpec, System

#: float64 state copies a Runge–Kutta solver keeps per trajectory (stages, error, state).
_SOLVER_COPIES = 12


@dataclass(frozen=True)
class Estimate:
    """Sizes of a simulated dataset, in values and bytes."""

    environments: int
    trajectories: int        # per environment, all splits together
    frames: int              # saved times per trajectory (history frames included)
    state_size: int          # values in one state
    stored_bytes: int        # the dataset in memory and on disk (float32)
    peak_bytes: int          # memory while simulating

    @property
    def values(self) -> int:
        return self.environments * self.trajectories * self.frames * self.state_size

    def describe(self) -> str:
        envs = f"{self.environments} environments × " if self.environments > 1 else ""
        return (f"{envs}{self.trajectories} trajectories × {self.frames} frames × "
                f"{self.state_size} values = {self.values:.3g} numbers; "
                f"{limits.human_bytes(self.stored_bytes)} stored, about "
                f"{limits.human_bytes(self.peak_bytes)} in memory while simulating")


def estimate(system: System, data: DataSpec | None, n_envs: int = 1) -> Estimate | None:
    """The sizes of the dataset a ``data:`` block simulates, or None when it simulates
    nothing (no block, a data file, or no time grid or trajectories yet)."""
    if data is None or data.file is not None or not data.splits or data.n_steps is None:
        return None
    E = max(1, n_envs)
    frames = data.history + data.n_steps
    state = math.prod(system.state_shape())
    sizes = [n for _, n in data.splits]
    copies = 2 if data.noise > 0 else 1
    stored = 4 * E * sum(sizes) * frames * state * copies
    largest = E * max(sizes) * frames * state
    work = max(2 * 4 * largest, 3 * 8 * largest if data.noise > 0 else 0)
    solver = _SOLVER_COPIES * 8 * E * max(sizes) * state
    return Estimate(E, sum(sizes), frames, state, stored, stored + work + solver)


def check_budget(system: System, data: DataSpec | None, n_envs: int, text: str,
                 budget: int | None = None) -> Estimate | None:
    """:func:`estimate`, refusing (at the ``data:`` block) a dataset over the budget."""
    est = estimate(system, data, n_envs)
    if est is None:
        return None
    budget = limits.memory_budget(budget)
    if est.peak_bytes > budget:
        raise BoundsError(
            f"the dataset is too large: {est.describe()}, above the memory budget of "
            f"{limits.human_bytes(budget)}", data.pos, text, length=4,
            hint="use fewer trajectories, frames or grid points; or raise the budget with "
            f"--memory-budget SIZE or {limits.MEMORY_BUDGET_ENV}=SIZE (e.g. 64G)")
    return est
