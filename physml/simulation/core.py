"""``simulate(spec)``: the data a spec's ``data:`` block describes, from its true dynamics.

All trajectories of a split (times all environments) are integrated at once. Initial
states are drawn once per split and shared by every environment, as LEADS does
(thesis §3.4.4: "the initial conditions are fixed to equal values across the
environments"). Environments enter as per-trajectory parameter values of one compiled
vector field, so the batch stays one tensor.

Random streams are derived from ``(seed, split)`` and ``(seed, split, "noise")``, so the
same spec and seed give the same arrays whatever subset of splits is asked for.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import sympy
import torch

from ..errors import OptionError, SpecError
from ..symbolic.compiler import compile_dynamics
from ..symbolic.spec import SPLITS, Call, Environment, Spec
from ..solve import SOLVERS, Outcome, Solver
from ..solve.spectral import spectral_solve, split_spectral
from .samplers import draw_initial

#: ``progress(label, fraction)``: called as each split advances (fraction in [0, 1]).
ProgressFn = Callable[[str, float], None]

DEFAULT_SOLVER = Call("dopri5", (), (("rtol", 1e-8), ("atol", 1e-8)))


class SimulationError(RuntimeError):
    """The spec cannot be simulated as written (no data block, no time grid …)."""


class UnstableError(RuntimeError):
    """A trajectory became non-finite or left the declared bound."""

    def __init__(self, message: str, events: list[dict]):
        super().__init__(message)
        self.events = events


@dataclass(frozen=True)
class _Plan:
    spec: Spec
    times: torch.Tensor          # saved times (history frames included), float64
    start: float                 # where integration starts (warm-up included)
    envs: tuple[Environment, ...]
    env_params: list[dict[str, float]]
    varying: tuple[str, ...]     # parameters that differ between environments
    solver: Call                 # the spec's solver line (name and options)
    method: Solver               # the registered solver it names


def resolve_spec(spec: Spec) -> Spec:
    if not isinstance(spec, Spec):
        raise TypeError("simulate() takes a Spec here; physml.simulate(path) reads the file "
                        "first (physml.load_spec)")
    return spec


def _sub_seed(seed: int, *keys: str) -> int:
    """An independent 63-bit stream seed for ``(seed, split[, "noise"])``."""
    digest = hashlib.sha256("/".join([str(int(seed)), *keys]).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def plan(spec: Spec) -> _Plan:
    data = spec.data
    if data is None:
        raise SimulationError(f"{spec.path}: the spec has no `data:` block to simulate; add "
                              "one (trajectories, time, initial …) or name a data file")
    if data.file is not None:
        raise SimulationError(f"{spec.path}: the data block names the file {data.file!r}, so "
                              "there is nothing to simulate; `physml data info FILE --spec "
                              "SPEC` shows it, and physml.data.dataset_for(spec) loads it")
    if data.n_steps is None:
        raise SpecError("the data block needs a time grid, e.g. `time 0 .. 20 step 0.5`",
                        data.pos, spec.text, length=4)
    if not data.splits:
        raise SpecError("the data block needs `trajectories N train, N val, N test`",
                        data.pos, spec.text, length=4)
    if not data.initial:
        raise SpecError("the data block needs `initial VAR ~ SAMPLER(...)` lines",
                        data.pos, spec.text, length=4)
    system = spec.system
    k = data.history
    times = torch.tensor(data.t0 + data.dt * np.arange(-k, data.n_steps), dtype=torch.float64)
    envs = spec.environments or (Environment("default", ()),)
    base = system.param_values
    env_params = [{**base, **e.as_dict()} for e in envs]
    varying = tuple(n for n in base if len({p[n] for p in env_params}) > 1)
    solver = data.solver or DEFAULT_SOLVER
    method = SOLVERS.get(solver.name)
    if method is None or not method.simulates:
        usable = [n for n, s in SOLVERS.items() if s.simulates]
        raise OptionError(f"unknown solver '{solver.name}'" if method is None else
                          f"solver '{solver.name}' is for training, not for data",
                          solver.pos, spec.text, hint="solvers: " + ", ".join(usable),
                          length=len(solver.name))
    try:
        method.check_options(solver.options())
    except ValueError as exc:
        raise OptionError(str(exc), solver.pos, spec.text, length=len(solver.name)) from None
    return _Plan(spec, times, float(times[0]) - data.warmup, tuple(envs), env_params, varying,
                 solver, method)


def lean_system(system, values: dict[str, float], keep: tuple[str, ...] = ()):
    """The system with every parameter not in ``keep`` replaced by its value and the
    derived quantities that become plain numbers (``ω₀ = 2π/T₀``) folded into the
    equations, so the compiled right-hand side issues only the state-dependent torch
    operations (a simulator never differentiates with respect to them)."""
    from dataclasses import replace

    subs = {sympy.Symbol(k): sympy.Float(v, 17) for k, v in values.items() if k not in keep}
    lets, consts = [], {}
    for let in system.lets:
        expr = let.expr.xreplace(subs).xreplace(consts)
        if expr.is_number:
            consts[sympy.Symbol(let.name)] = sympy.Float(sympy.N(expr, 17), 17)
        else:
            lets.append(replace(let, expr=expr))
    eqs = tuple(replace(eq, rhs=eq.rhs.xreplace(subs).xreplace(consts))
                for eq in system.equations)
    return replace(system, lets=tuple(lets), equations=eqs)


def _autonomous(system) -> bool:
    t = sympy.Symbol("t")
    return not any(t in e.free_symbols for e in [eq.rhs for eq in system.equations] +
                   [l.expr for l in system.lets] + [m.condition for m in system.masks])


def _solver_option(p: _Plan, key: str, default=None):
    return p.solver.options().get(key, default)


def _compiled(system, p: _Plan, env0: dict, batch_params: dict[str, torch.Tensor], device):
    """``system`` compiled in float64 on ``device``, with the per-environment parameters."""
    f = compile_dynamics(lean_system(system, env0, p.varying), values=env0,
                         fold_constants=not p.varying).to(device=device, dtype=torch.float64)
    if p.varying:
        f.set_batch_params({k: v.to(device) for k, v in batch_params.items()})
    return f


#: Trajectories integrated together by the spectral solver on a CPU. A step's working set
#: (five 32×32 fields per trajectory, complex) then stays in cache: at 32 a batch the
#: Navier–Stokes step costs a third of what it costs at 160 (benchmarks/simulate_speed.py).
#: A fixed number, so the data do not depend on the machine.
SPECTRAL_CPU_CHUNK = 32


def _spectral_chunks(tableau, f, diff, domain, y0, times, step, bound, progress, out_dtype, inputs,
                     forcing, batch_params) -> Outcome:
    """:func:`spectral_solve` over slices of the batch (trajectories are independent and the
    step is fixed, so this changes no number); on a GPU the batch goes in one piece."""
    B = y0.shape[0]
    chunk = SPECTRAL_CPU_CHUNK if y0.device.type == "cpu" else B
    parts = []
    for k, lo in enumerate(range(0, B, chunk)):
        sl = slice(lo, lo + chunk)
        if f is not None and batch_params is not None:
            f.set_batch_params({n: v[sl].to(y0.device) for n, v in batch_params.items()})
        n_parts = math.ceil(B / chunk)
        cb = None if progress is None else (
            lambda frac, _k=k: progress((_k + frac) / n_parts))
        parts.append(spectral_solve(tableau, f, {n: v[sl] for n, v in diff.items()}, domain,
                                    y0[sl], times, step, bound=bound, progress=cb,
                                    out_dtype=out_dtype, inputs=inputs,
                                    forcing=None if forcing is None else forcing[sl]))
    if len(parts) == 1:
        return parts[0]
    return Outcome(torch.cat([o.states for o in parts], dim=1),
                   torch.cat([o.dead_time for o in parts]), parts[0].steps,
                   sum(o.evaluations for o in parts))


def _integrate(p: _Plan, y0: torch.Tensor, batch_params: dict[str, torch.Tensor],
               device, bound, progress, out_dtype: torch.dtype = torch.float64) -> Outcome:
    """Integrate ``y0`` (B, *state) from ``p.start`` and return the saved frames."""
    spec, name, method = p.spec, p.solver.name, p.method
    spectral = method.kind == "spectral"
    out_times = p.times if p.start == float(p.times[0]) else torch.cat(
        [torch.tensor([p.start], dtype=torch.float64), p.times])
    env0 = p.env_params[0]
    if spectral:
        domain = spec.system.domain
        if domain is None or not domain.periodic:
            raise OptionError(f"{name} needs a periodic grid domain", p.solver.pos,
                              spec.text, length=len(name))
        step = _solver_option(p, "step")
        if step is None:
            raise OptionError(f"{name} needs a time step: {name}(step=1e-3)",
                              p.solver.pos, spec.text, length=len(name))
        try:
            split = split_spectral(lean_system(spec.system, env0, p.varying))
        except ValueError as exc:
            raise OptionError(str(exc), p.solver.pos, spec.text, length=len(name)) from None
        diff = {}
        for var, c in split.diffusivity.items():
            vals = [float(c.xreplace({sympy.Symbol(k): sympy.Float(v) for k, v in e.items()}))
                    for e in p.env_params]
            diff[var] = torch.tensor(vals, dtype=torch.float64).repeat_interleave(
                y0.shape[0] // len(vals)).to(device)
        f, static = (None if s is None else _compiled(s, p, env0, batch_params, device)
                     for s in (split.explicit, split.static))
    else:
        f = _compiled(spec.system, p, env0, batch_params, device)
    y0 = y0.to(device)
    with torch.no_grad():
        if spectral:
            # The static part (a forcing ξ(x, y)) is evaluated once, on no fields at all.
            forcing = None if static is None else static(out_times[0], y0[:, :0])
            out = _spectral_chunks(method.tableau, f, diff, spec.system.domain, y0, out_times, float(step),
                                   bound, progress, out_dtype, split.inputs, forcing,
                                   batch_params if p.varying else None)
        else:
            step = _solver_option(p, "step")
            out = method.simulate(f, y0, out_times,
                                  rtol=float(_solver_option(p, "rtol", 1e-8)),
                                  atol=float(_solver_option(p, "atol", 1e-8)),
                                  step=None if step is None else float(step), bound=bound,
                                  progress=progress, out_dtype=out_dtype,
                                  autonomous=_autonomous(spec.system))
    if len(out_times) != len(p.times):
        out.states = out.states[1:]
    return out


def simulate(spec: Spec | str | os.PathLike, seed: int | None = None, device=None,
             progress: ProgressFn | None = None, drop_unstable: bool = False,
             splits=None, *, bound: float | None = None, dtype: torch.dtype = torch.float32):
    """Simulate the data described by a spec's ``data:`` block.

    Parameters
    ----------
    spec: a :class:`Spec` or the path of a ``.phy`` file.
    seed: overrides the block's ``seed``.
    device: where to integrate (``"cpu"``, ``"cuda"``; default CPU). Initial states and
        noise are drawn on the CPU, so the device changes no random number.
    progress: ``progress(split, fraction)`` callback.
    drop_unstable: drop (and report in ``meta["dropped"]``) trajectories that blow up
        instead of raising :class:`UnstableError`. A dropped initial state is dropped from
        every environment, which keeps initial states shared.
    splits: the splits to simulate (default: all the block declares).
    bound: a trajectory with ``|x| > bound`` anywhere counts as blown up.
    dtype: storage dtype of the arrays (integration is always float64).

    Time line: initial states are drawn at ``t0 − history·dt − warmup`` and integrated
    from there; the saved frames are ``t0 + dt·k`` for ``k = −history … n_steps − 1``.
    """
    from ..data.dataset import Dataset

    spec = resolve_spec(spec)
    p = plan(spec)
    data = spec.data
    seed = data.seed if seed is None else int(seed)
    device = torch.device(device or "cpu")
    declared = dict(data.splits)
    wanted = list(declared) if splits is None else [splits] if isinstance(splits, str) \
        else list(splits)
    for s in wanted:
        if s not in declared:
            raise SimulationError(f"split {s!r} is not declared; the data block has "
                                  f"{', '.join(declared)}")
    system = spec.system
    E = len(p.envs)
    clean, dropped = {}, []
    for split in (s for s in SPLITS if s in wanted):
        n = declared[split]
        gen = torch.Generator().manual_seed(_sub_seed(seed, split))
        y0 = draw_initial(data.initial, system.variables, system.domain, n, gen, spec.text)
        if system.domain is None:
            y0 = y0.reshape(n, -1)
        batch = y0.repeat((E,) + (1,) * (y0.dim() - 1))              # env-major
        batch_params = {k: torch.tensor([e[k] for e in p.env_params],
                                        dtype=torch.float64).repeat_interleave(n)
                        for k in p.varying}
        cb = (lambda frac, _s=split: progress(_s, frac)) if progress else None
        # Frames are kept in the storage dtype (the integration itself runs in float64).
        res = _integrate(p, batch, batch_params, device, bound, cb, out_dtype=dtype)
        states = res.states.transpose(0, 1).reshape(E, n, len(p.times), *y0.shape[1:])
        dead = torch.isfinite(res.dead_time).reshape(E, n)
        if bool(dead.any()):
            events = []
            for e, i in dead.nonzero().tolist():
                events.append({"split": split, "trajectory": i, "environment": p.envs[e].name,
                               "time": float(res.dead_time.reshape(E, n)[e, i]),
                               "params": {k: p.env_params[e][k] for k in
                                          (p.varying or p.env_params[e])}})
            if not drop_unstable:
                raise UnstableError(_unstable_message(events, bound), events)
            dropped += events
            keep = ~dead.any(dim=0)
            states = states[:, keep]
        if progress:
            progress(split, 1.0)
        clean[split] = states.cpu()
    noisy = {}
    for split, x in clean.items():
        if data.noise > 0:
            g = torch.Generator().manual_seed(_sub_seed(seed, split, "noise"))
            noise = torch.randn(x.shape, generator=g, dtype=torch.float64)
            noisy[split] = (x.double() + data.noise * noise).to(dtype)
        else:
            noisy[split] = x.to(dtype)
    from .._version import __version__
    meta = {"solver": str(p.solver), "physml_version": __version__, "device": str(device),
            "spec_path": str(spec.path), "system": system.name,
            "system_text": system.source, "warmup": data.warmup,
            "dropped": dropped, "bound": bound}
    return Dataset(
        variables=system.variables, state_shape=system.state_shape(), times=p.times,
        splits=noisy, dt=float(data.dt), history=data.history,
        env_names=tuple(e.name for e in p.envs), env_params=p.env_params,
        spec_text=spec.text, seed=seed, noise=float(data.noise),
        splits_clean={k: v.to(dtype) for k, v in clean.items()} if data.noise > 0 else None,
        meta=meta, coords=dict(zip(system.domain.axes, system.domain.coordinates()))
        if system.domain is not None else {})


def _unstable_message(events: list[dict], bound) -> str:
    first = events[0]
    params = ", ".join(f"{k} = {v:g}" for k, v in first["params"].items())
    more = f" ({len(events) - 1} more)" if len(events) > 1 else ""
    what = "became non-finite" + (f" or left |x| ≤ {bound:g}" if bound is not None else "")
    return (f"trajectory {first['trajectory']} of split '{first['split']}' (environment "
            f"'{first['environment']}') {what} at t = {first['time']:.6g}{more}; parameters: "
            f"{params or 'defaults'}. Check the parameters and the initial-state sampler, use a "
            "smaller solver step, or pass --drop-unstable to drop such trajectories.")
