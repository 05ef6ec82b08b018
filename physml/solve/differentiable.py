"""Differentiable integration for training and reporting: :func:`odeint`.

Fixed-tableau methods run on physml's own grid loop (one :func:`~physml.solve.tableau.rk_step`
per interval or sub-step), which is what ``torch.compile`` and gradient checkpointing wrap;
adaptive methods run on torchdiffeq (Chen et al. 2018), with its adjoint when asked.
"""
from __future__ import annotations

import math
import weakref

import torch
import torch.utils.checkpoint

from .registry import Solver, get_solver
from .tableau import ButcherTableau, rk_step

# Compiled steps of callables that are not nn.Modules (modules keep theirs in __dict__).
_COMPILED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def odeint(f, x0: torch.Tensor, t: torch.Tensor, solver: str | Solver, *,
           step: float | None = None, rtol: float = 1e-6, atol: float = 1e-7,
           adjoint: bool = False, compiled: bool = False, recompute: bool = False,
           restart: torch.Tensor | None = None, data: torch.Tensor | None = None
           ) -> torch.Tensor:
    """Solve ``dx/dt = f(t, x)`` from ``x0`` (B, *state) on the times ``t`` (1-D); returns
    the states at ``t`` as (B, T, *state), differentiable with respect to ``x0`` and the
    parameters of ``f``.

    Fixed methods (``euler``, ``midpoint``, ``rk4``, ``rk4_38``): one step per interval of
    ``t``, or ``ceil(Δt/step)`` equal sub-steps when ``step`` is given. ``compiled``:
    the steps are ``torch.compile``-d once per ``f`` and cached on it, several steps to a
    call for small states (:func:`chunk_size`): on small batches the cost of training is
    the launch overhead of many tiny operations, which compiling fuses away (the
    thesis-sized pendulum's Adam step is ~2.5× faster on one CPU thread:
    benchmarks/results/vs_authors_cpu.json).
    ``recompute`` (gradient checkpointing): each step keeps only its input state for the
    backward pass and runs again there, so memory holds the states along the trajectory
    instead of every activation of every stage (the damped wave at batch 64 needs ~20 GB
    without it, a few hundred MB with it), for about one more forward pass of cost.
    ``adjoint`` with a fixed method runs torchdiffeq's adjoint of the same method.

    Adaptive methods (``dopri5``, ``dopri8``, ``bosh3``, ``adaptive_heun``, ``fehlberg2``):
    torchdiffeq's ``odeint`` (``odeint_adjoint`` with ``adjoint``, the adjoint parameters
    being those of ``f``) with ``rtol``/``atol``, landing on the times ``t`` rather than
    interpolating to them; ``step`` caps the step size.
    ``compiled``/``recompute`` apply to fixed methods only and are ignored here.

    ``restart`` ``(T,)`` bool with ``data`` ``(B, T, *state)`` (teacher forcing, thesis
    §3.4.4): the integration leaves time ``t[k]`` from ``data[:, k]`` instead of its own
    state wherever ``restart[k]``; the state returned at ``t[k]`` is still the forecast
    that arrived there. Fixed methods do it inside the grid loop (one pass, one compiled
    graph whatever the restarts), adaptive ones by solving the segments in turn.
    """
    solver = get_solver(solver)
    if not solver.trainable:
        from .registry import SOLVERS

        usable = ", ".join(n for n, s in SOLVERS.items() if s.trainable)
        raise ValueError(f"solver {solver.name} is not differentiable (it only simulates "
                         f"data); for training choose one of: {usable}")
    if t.dim() != 1:
        raise ValueError(f"odeint: t must be 1-D, got shape {tuple(t.shape)}")
    if step is not None and not step > 0:
        raise ValueError(f"odeint: step must be positive, got {step}")
    if restart is not None and (data is None or restart.shape != t.shape
                                or data.shape[:2] != (x0.shape[0], t.shape[0])):
        raise ValueError("odeint: restart needs a (T,) bool tensor and data of shape (B, T, "
                         "*state)")
    if restart is not None:  # the first frame starts from x0 whatever the flag says
        restart = torch.cat([restart.new_zeros(1), restart[1:]])
    if solver.kind == "fixed" and not adjoint:
        return fixed_grid(f, x0, t, solver.tableau, step=step, compiled=compiled,
                          recompute=recompute, restart=restart, data=data)
    if restart is not None:
        cuts = [k for k in restart.nonzero().flatten().tolist() if 0 < k < t.shape[0] - 1]
        pieces, start, x = [], 0, x0
        for k in cuts + [t.shape[0] - 1]:
            seg = _torchdiffeq(f, x, t[start:k + 1], solver, step, rtol, atol, adjoint)
            pieces.append(seg if not pieces else seg[:, 1:])
            start, x = k, data[:, k]
        return torch.cat(pieces, dim=1)
    return _torchdiffeq(f, x0, t, solver, step, rtol, atol, adjoint)


def _torchdiffeq(f, x0, t, solver: Solver, step, rtol, atol, adjoint) -> torch.Tensor:
    from torchdiffeq import odeint as tde_odeint, odeint_adjoint

    if solver.torchdiffeq is None:
        raise ValueError(f"solver {solver.name} has no torchdiffeq counterpart, so no adjoint; "
                         "use recompute=True to save memory instead, or rk4_38 (torchdiffeq's "
                         "rk4) with adjoint=True")
    kwargs = {"method": solver.torchdiffeq}
    if solver.kind == "adaptive":
        kwargs.update(rtol=rtol, atol=atol)
        # Land on the output times, as the simulator does: torchdiffeq's interpolants are
        # of lower order than its methods (bosh3's and dopri8's visibly so).
        options = {"step_t": t}
        if step is not None:
            options["max_step"] = float(step)
        kwargs["options"] = options
    elif step is not None:
        kwargs["options"] = {"step_size": float(step)}
    if adjoint:
        params = tuple(f.parameters()) if isinstance(f, torch.nn.Module) else ()
        out = odeint_adjoint(f, x0, t, adjoint_params=params, **kwargs)
    else:
        out = tde_odeint(f, x0, t, **kwargs)
    return out.movedim(0, 1)


def compile_options(device: torch.device) -> dict[str, object]:
    """TorchInductor options for physml's compiled functions on ``device``.

    On CPU the generated wrapper is C++ (``cpp_wrapper``): a compiled RK4 step of the
    pendulum launches a few dozen kernels and BLAS calls for a few microseconds of work
    each, and the Python wrapper that launches them cost about as much as the work
    (≈ 8 % of an Adam step, measured side by side in benchmarks/train_speed.py)."""
    return {"cpp_wrapper": True} if device.type == "cpu" else {}


def compiled(fn, device: torch.device):
    """``torch.compile(fn)`` with :func:`compile_options`, static shapes, and room for the
    variants a run meets (first step without grad vs later ones, batch sizes)."""
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    return torch.compile(fn, dynamic=False, options=compile_options(device))


def _compiled_step(f, tab: ButcherTableau, device: torch.device, steps: int = 0,
                   restarting: bool = False):
    """``torch.compile`` of one step of ``tab`` for ``f`` on ``device``, cached on ``f``;
    with ``steps``, of ``steps`` steps taking 1-D tensors of their times and sizes and
    returning the ``steps`` states; ``restarting``: also each step's restart flag (0-d
    bool) and restart state, which replaces the state before the step where flagged."""
    if isinstance(f, torch.nn.Module):
        cache = f.__dict__.setdefault("_physml_solve_steps", {})
    else:
        try:
            cache = _COMPILED.setdefault(f, {})
        except TypeError:  # not weak-referenceable: compile afresh
            cache = {}
    key = (tab.name, device.type, steps, restarting)
    fn = cache.get(key)
    if fn is None:
        if steps:
            def chunk(ts, hs, *args):   # args: (y,), or restarting (rs, ds, y)
                *restarts, y = args
                out = []
                for i in range(steps):
                    if restarts:
                        y = torch.where(restarts[0][i], restarts[1][i], y)
                    y = rk_step(tab, f, ts[i], hs[i], y)
                    out.append(y)
                return tuple(out)
            fn = cache[key] = compiled(chunk, device)
        else:
            fn = cache[key] = compiled(lambda tt, h, y: rk_step(tab, f, tt, h, y), device)
    return fn


#: Solver steps per compiled call for small states (:func:`chunk_size`).
CHUNK = 4
#: States of at most this many numbers (the whole batch) are stepped ``CHUNK`` at a time.
CHUNK_MAX_NUMEL = 4096


def chunk_size(x0: torch.Tensor) -> int:
    """Solver steps per compiled call. Each call of a compiled function costs ~0.15 ms of
    dispatch (guards, the autograd wrapper, its backward node), about as much as an RK4
    step of the pendulum's batch itself; ``CHUNK`` steps per call share that cost (the
    pendulum's whole Adam step: 40 → 30 ms on one CPU thread, compile 28 → 54 s cold).
    Field states (a reaction–diffusion batch is 131 072 numbers) cost milliseconds per
    step, where the dispatch is noise, so they keep one step per call and a graph a
    quarter the size."""
    return CHUNK if x0.numel() <= CHUNK_MAX_NUMEL else 1


def fixed_grid(f, x0: torch.Tensor, t: torch.Tensor, tableau: ButcherTableau,
               step: float | None = None, compiled: bool = False, recompute: bool = False,
               restart: torch.Tensor | None = None, data: torch.Tensor | None = None
               ) -> torch.Tensor:
    """Fixed-step integration of ``tableau`` on the grid ``t``: one step per interval, or
    ``ceil(Δt/step)`` equal steps per interval; returns (B, T, *state). ``restart``/``data``:
    teacher forcing (:func:`odeint`), the interval from ``t[k]`` starting at ``data[:, k]``
    where ``restart[k]``."""
    if step is None and t.device.type != "cpu":
        # One step per interval needs no host copy of the times: reading them would wait
        # for the GPU at every forward pass (the queue drains, and launching the next
        # kernels no longer overlaps the previous step's backward and optimizer).
        times, counts = None, [1] * (t.shape[0] - 1)
    else:
        times = t.detach().cpu().tolist()   # one device sync, not one per step
        counts = [max(1, math.ceil((times[i + 1] - times[i]) / step - 1e-9)) if step else 1
                  for i in range(len(times) - 1)]
    if compiled and torch.is_grad_enabled() and not x0.requires_grad:
        # A first state without grad would be a second graph to compile (forward and
        # backward) for one call in ten; its gradient (a few numbers) costs nothing.
        x0 = x0.detach().requires_grad_(True)
    checkpointed = recompute and torch.is_grad_enabled()
    if compiled and not checkpointed and counts:
        return _fixed_grid_chunked(f, x0, t, tableau, counts, restart, data)
    # Which intervals restart, as host booleans (a teacher-forcing draw lives on the CPU).
    starts = restart.tolist() if restart is not None else None
    if compiled:
        fn = _compiled_step(f, tableau, x0.device)
    else:
        fn = lambda tt, h, y: rk_step(tableau, f, tt, h, y)  # noqa: E731
    ys = [x0]
    y = x0
    for i, n in enumerate(counts):
        # Eager: h is a float, so each stage coefficient is one fused op. Compiled: a 0-d
        # tensor, so that a new step size does not recompile.
        h = (t[i + 1] - t[i]) / n if compiled or times is None else (times[i + 1] - times[i]) / n
        ti = t[i]
        if starts is not None and starts[i]:
            y = data[:, i]
        for j in range(n):
            tj = ti if j == 0 else ti + j * h
            if checkpointed:
                y = torch.utils.checkpoint.checkpoint(fn, tj, h, y, use_reentrant=False)
            else:
                y = fn(tj, h, y)
        ys.append(y)
    return torch.stack(ys, dim=1)


def _fixed_grid_chunked(f, x0: torch.Tensor, t: torch.Tensor, tableau: ButcherTableau,
                        counts: list[int], restart: torch.Tensor | None = None,
                        data: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`fixed_grid` in compiled calls of :func:`chunk_size` steps. The steps' times
    and sizes are tensors (a new grid does not recompile); the last call is padded with
    steps of size 0, which return their state unchanged (``y + 0·Σ b_i k_i``), so one
    graph serves every trajectory length. With ``restart``, each step also takes a flag
    and a state (the data at its interval's start for an interval's first step, flagged
    where the interval restarts), so one graph serves every draw of restarts too."""
    k = chunk_size(x0)
    fn = _compiled_step(f, tableau, x0.device, k, restarting=restart is not None)
    n = torch.tensor(counts, device=t.device)
    h = (t[1:] - t[:-1]) / n                       # each interval's step size
    interval = torch.repeat_interleave(torch.arange(len(counts), device=t.device), n)
    first = torch.cumsum(n, 0) - n                 # each interval's first step
    hs = h[interval]
    ts = t[:-1][interval] + (torch.arange(len(interval), device=t.device)
                             - first[interval]) * hs
    pad = -len(hs) % k
    if pad:
        ts = torch.cat([ts, t[-1:].expand(pad)])
        hs = torch.cat([hs, hs.new_zeros(pad)])
    ends = set(torch.cumsum(n, 0).sub(1).tolist())  # the steps that land on a time of t
    inputs = [ts, hs]
    if restart is not None:
        rs = restart.to(t.device)[:-1][interval] & (torch.arange(
            len(interval), device=t.device) == first[interval])
        ds = data.movedim(1, 0)[:-1][interval]
        if pad:
            rs = torch.cat([rs, rs.new_zeros(pad)])
            ds = torch.cat([ds, ds[-1:].expand(pad, *ds.shape[1:])])
        inputs += [rs, ds]
    ys, y, s = [x0], x0, 0
    for chunk in zip(*(v.split(k) for v in inputs)):
        for y in fn(*(v.clone() for v in chunk), y):
            if s in ends:
                ys.append(y)
            s += 1
    return torch.stack(ys, dim=1)
