"""The experiment blocks of a spec as ``physml check`` prints them: resolved, defaults
filled in, so what is shown is what ``physml train`` will run."""
from __future__ import annotations

import inspect as _inspect
from typing import Any

from ..symbolic.printer import format_constraint
from ..symbolic.spec import Call, Spec


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"   # as a spec writes it
    return f"{v:g}" if isinstance(v, float) else str(v)


def _call(name: str, options: dict[str, Any]) -> str:
    return f"{name}({', '.join(f'{k}={_value(v)}' for k, v in options.items())})"


def data_line(spec: Spec) -> str | None:
    """``data:`` resolved: splits, time grid, initial states, noise, solver, seed."""
    d = spec.data
    if d is None:
        return None
    parts = []
    if d.splits:
        parts.append(", ".join(f"{n} {name}" for name, n in d.splits) + " trajectories")
    if d.file is not None:
        mapping = ", ".join(f"{k} = \"{v}\"" for k, v in d.mapping)
        parts.append(f"file \"{d.file}\"" + (f" map {mapping}" if mapping else ""))
    if d.t0 is not None and d.t1 is not None and d.dt is not None:
        frames = f" ({d.n_steps} frames)" if d.n_steps is not None else ""
        parts.append(f"time {_value(d.t0)} .. {_value(d.t1)} step {_value(d.dt)}{frames}")
    if d.history:
        parts.append(f"history {d.history}")
    for s in d.initial:
        parts.append(f"initial {', '.join(s.variables)} ~ {s.call}")
    if d.file is None:
        from ..simulation.core import DEFAULT_SOLVER

        solver = d.solver or DEFAULT_SOLVER
        parts.append(f"noise {_value(d.noise)}")
        parts.append(f"solver {_call(solver.name, solver.options())}"
                     + ("" if d.solver else " (default)"))
        parts.append(f"seed {d.seed}")
        if d.warmup:
            parts.append(f"warmup {_value(d.warmup)}")
    return "; ".join(parts)


def augment_line(spec: Spec, model) -> str | None:
    """The augmentation network as built: every option with its value (defaults filled
    in), the equations it acts on and its number of weights."""
    if model.augmentation is None:
        return None
    from ..models.nets import NETWORKS

    inner = model.augmentation.net  # inside the per-channel scaling (models.nets.Scaled)
    call = spec.augment
    if call is None or call.name == "none":
        name, given = type(inner).__name__.lower(), {}
        note = " (default for this method)"
    else:
        name, given, note = call.name, call.options(), ""
    options = dict(given)
    kind = NETWORKS.get(name)
    if kind is not None:
        signature = _inspect.signature(type(inner).__init__).parameters
        for opt in kind.options:
            p = signature.get(opt)
            if opt not in options and p is not None and p.default is not p.empty:
                options[opt] = p.default
    weights = sum(p.numel() for p in inner.parameters())
    on = ", ".join(spec.augment_on) if spec.augment_on else "every equation"
    return f"{_call(name, options)}{note} on {on}; {weights:,} weights"


def environments_line(spec: Spec, model) -> str | None:
    """What a multi-environment model learns per environment (thesis §3.4): the G_e
    networks and the per-environment parameters."""
    from ..models.environments import MultiEnvModel, StackedNetworks

    if not isinstance(model, MultiEnvModel):
        return None
    parts = []
    if isinstance(model.per_env, StackedNetworks):
        call = spec.per_environment or spec.augment
        name = _call(call.name, call.options()) if call is not None and call.name != "none" \
            else "default network"
        each = sum(p.numel() for p in model.per_env.parameters()) // model.n_envs
        parts.append(f"G_e {name} × {model.n_envs} environments, {each:,} weights each")
    elif model.per_env is not None:
        parts.append(f"{type(model.per_env).__name__} over {model.n_envs} environments")
    if model.env_params is not None:
        parts.append("per environment: " + ", ".join(model.env_params.raw))
    return "; ".join(parts) or None


def _inline_lets(lets) -> dict:
    import sympy

    subs: dict = {}
    for let in lets:
        subs[sympy.Symbol(let.name)] = let.expr.xreplace(subs)
    return subs


def unrepresentable_missing(spec: Spec) -> list[str]:
    """Warnings for equations whose missing part (true right-hand side minus the prior's,
    lets substituted) depends explicitly on a coordinate or on ``t`` that the augmentation
    network does not take as an input (``augment ... with``): such a term cannot be learned
    (a ConvNet on a periodic grid is translation-equivariant, a network of the state alone
    sees no time). The true system is known only when the data are simulated from it."""
    import sympy

    if spec.prior is None or spec.prior.hamiltonian is not None or not spec.prior.equations:
        return []
    if spec.augment is not None and spec.augment.name == "none":
        return []
    if spec.data is None or spec.data.file is not None:
        return []
    system = spec.system
    axes = system.domain.axes if system.domain is not None else ()
    watch = [sympy.Symbol(n) for n in (*axes, "t") if n not in spec.augment_with]
    if not watch:
        return []
    true_subs = _inline_lets(system.lets)
    prior_subs = _inline_lets((*system.lets, *spec.prior.lets))
    prior = {eq.var: eq.rhs.xreplace(prior_subs) for eq in spec.prior.equations}
    out = []
    for eq in system.equations:
        if spec.augment_on and eq.var not in spec.augment_on:
            continue
        missing = eq.rhs.xreplace(true_subs) - prior.get(eq.var, sympy.Integer(0))
        missing = sympy.expand(missing)
        deps = [str(s) for s in watch if s in missing.free_symbols]
        if deps:
            names = ", ".join(deps)
            out.append(f"the missing part of d({eq.var})/dt depends on {names}, which the "
                       f"augmentation network does not see: it cannot learn it (add "
                       f"`with {names}` to the `augment` line)")
    return out


def train_line(cfg) -> str:
    solver = cfg.solver + (f" step {cfg.step:g}" if cfg.step else "")
    budget = [f"{cfg.epochs} epochs"]
    if cfg.steps:
        budget.append(f"{cfg.steps} steps")
    if cfg.minutes:
        budget.append(f"{cfg.minutes:g} min")
    forcing = f", teacher forcing {cfg.teacher_forcing:g}" if cfg.teacher_forcing else ""
    if cfg.horizon:
        forcing += f", horizon {cfg.horizon}" + (
            " (every window of the trajectories)" if cfg.windows == "all" else "")
    if cfg.curriculum == "linear":
        forcing += (", horizon grown from 2 frames over the first half of the training "
                    "steps (curriculum linear)")
    return (f"{_call(cfg.method, cfg.method_options)} solver {solver}, batch {cfg.batch}, "
            f"lr {cfg.lr:g}" + (f", {', '.join(budget)}" if budget else "") + forcing)


def describe_experiment(spec: Spec) -> tuple[Any, dict[str, str]]:
    """Check a spec as ``train`` would (the options resolve, the model and objective
    build) and describe its experiment blocks: ``(config or None, {block: line})``."""
    blocks: dict[str, str] = {}
    if spec.data is not None and spec.data.file is not None:
        from .data import check_data_file

        check_data_file(spec)
    line = data_line(spec)
    if line is not None:
        blocks["data"] = line
    if spec.train is None and spec.prior is None and spec.augment is None:
        return None, blocks
    from .build import build

    exp = build(spec)
    line = augment_line(spec, exp.rollout.field)
    if line is not None:
        blocks["augment"] = line
    line = observe_line(spec, exp.config)
    if line is not None:
        blocks["observe"] = line
    line = environments_line(spec, exp.rollout.field)
    if line is not None:
        blocks["per_environment"] = line
    soft = [c for c in spec.constraints if not c.hard]
    hard = [c for c in spec.constraints if c.hard and not c.penalised]
    both = [c for c in spec.constraints if c.hard and c.penalised]
    lines = []
    if soft:  # eq. 2.13's penalty, as training adds it
        lines.append("; ".join(format_constraint(c) for c in soft) +
                     " (penalised: weight × mean of the squared residual where the data "
                     "meet the condition)")
    if hard:  # eq. 2.11 held by the solver
        lines.append("; ".join(format_constraint(c) for c in hard) +
                     " (held by the solver: the value set in the initial state and the "
                     "rate zero where the state meets the condition)")
    if both:
        lines.append("; ".join(format_constraint(c) for c in both) +
                     " (penalised in training; held by the solver in forecasts)")
    if lines:
        blocks["constraint"] = "; ".join(lines)
    blocks["train"] = train_line(exp.config)
    return exp.config, blocks


def observe_line(spec: Spec, cfg) -> str | None:
    """Partial observation as it will train: measured, hidden, where forecasts start."""
    hidden = spec.hidden_variables()
    if not hidden and spec.encoder is None and cfg.substeps == 1 and \
            cfg.scheduled_sampling is None:
        return None
    parts = []
    if hidden:
        parts.append(f"{', '.join(spec.observe)} measured; hidden: {', '.join(hidden)}")
    if spec.encoder is not None:
        from .partial import encoder_frames

        given = f" + the data's {', '.join(spec.encoder_given)}" if spec.encoder_given else ""
        parts.append(f"initial states from encoder {spec.encoder} of K = "
                     f"{encoder_frames(spec)} frames{given}")
    elif hidden:
        parts.append("initial states given by the data (Setting 2)"
                     + ("; fit_initial refines them" if cfg.fit_initial else ""))
    if cfg.substeps > 1:
        parts.append(f"{cfg.substeps} solver steps per frame")
    if cfg.scheduled_sampling is not None:
        parts.append(f"scheduled sampling {cfg.scheduled_sampling:g}^step")
    return "; ".join(parts)


def spec_warnings(spec: Spec, method: str | None = None) -> list[str]:
    """What ``check`` and ``train`` say before training: parts of the spec the method
    drops, missing physics the network cannot represent, unidentifiable parameters."""
    return unused_parts(spec, method) + unrepresentable_missing(spec) + symmetry_warnings(spec)


def unused_parts(spec: Spec, method: str | None = None) -> list[str]:
    """A ``prior:`` block or an ``augment`` network that ``method`` (default: the train
    line's) leaves out of the model: ``neural`` integrates the network alone, ``physics``
    the prior alone. Warned, not refused: swapping the method of one spec is how the
    baselines of a table are run."""
    if method is None:
        if spec.train is None:
            return []           # a system file: `check` of it imports no torch
        method = spec.train.method.name
    from ..objectives import OBJECTIVES

    cls = OBJECTIVES.get(method)
    if cls is None or cls.structure is not None:
        return []
    out = []
    if spec.prior is not None and not cls.uses_prior:
        out.append(f"`train {method}` learns the network alone: the `prior:` block is not "
                   "used (train augmented or aphynity for prior + network)")
    if spec.augment is not None and spec.augment.name != "none" and not cls.uses_network:
        out.append(f"`train {method}` fits the prior alone: `augment {spec.augment.name}` "
                   "is not used (train augmented or aphynity to learn it too)")
    return out


def symmetry_warnings(spec: Spec) -> list[str]:
    """Learned parameters that partial observations cannot determine: a power scaling of
    a hidden variable the prior's equations are invariant under, when the hidden initial
    states are learned (an encoder or ``fit_initial``) rather than given. Said before
    training (``check``, ``train``); the report then compares them up to the symmetry."""
    from ..symbolic.identifiability import scaling_symmetries

    hidden = spec.hidden_variables()
    if not hidden or spec.prior is None or not spec.prior.learn or \
            spec.observe_matrix is not None or spec.prior.hamiltonian is not None:
        return []
    opts = spec.train.option_dict() if spec.train is not None else {}
    if spec.encoder is None and not opts.get("fit_initial", False):
        return []          # given initial states pin the hidden variables' scale
    if spec.augment is not None and spec.augment.name != "none" and spec.train is not None \
            and spec.train.method.name not in ("physics",):
        return []          # a network term has no known scaling
    subs = _inline_lets([*spec.system.lets, *spec.prior.lets])
    eqs = [(eq.var, eq.rhs.xreplace(subs)) for eq in spec.prior.equations]
    learned = [name for name, _ in spec.prior.learn]
    out = []
    for sym in scaling_symmetries(eqs, [h for h in hidden if h in spec.system.variables],
                                  learned):
        free = [p for p, k in sym.params.items() if k != 0]
        if free:
            out.append(f"{sym.describe()} leaves the observations unchanged, so "
                       + ", ".join(f"{p} is not identifiable (only {sym.invariant(p)} is)"
                                   for p in free)
                       + "; the report compares it up to this symmetry (fix it, or give the "
                       "hidden initial states, to pin the scale)")
    return out
