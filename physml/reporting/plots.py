"""PNG plots of a run (matplotlib, no display needed).

:func:`figures` builds the figures (tests read their axes), :func:`write_plots` saves
them. Every axis is labelled; Greek variable names print as letters (``theta`` → θ).
Times are in the spec's time unit and states in the data's units (a spec declares no
units), which the labels say.
"""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

_GREEK = {"alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε",
          "zeta": "ζ", "eta": "η", "theta": "θ", "iota": "ι", "kappa": "κ", "lambda": "λ",
          "lam": "λ", "mu": "μ", "nu": "ν", "xi": "ξ", "pi": "π", "rho": "ρ", "sigma": "σ",
          "tau": "τ", "phi": "φ", "chi": "χ", "psi": "ψ", "omega": "ω", "Gamma": "Γ",
          "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Xi": "Ξ", "Pi": "Π", "Sigma": "Σ",
          "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω"}
_SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
TIME = "t (time unit of the spec)"


def pretty(name: str) -> str:
    """A spec name for a plot: ``theta`` → θ, ``omega0`` → ω₀, ``T0`` → T₀, ``u`` → u."""
    m = re.fullmatch(r"([A-Za-z]+?)_?(\d*)", name)
    if not m:
        return name
    base, digits = m.groups()
    return _GREEK.get(base, base) + digits.translate(_SUB)


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(run, dataset, metrics: list[dict]) -> list[Path]:
    """Save every figure of :func:`figures` as ``RUN/plots/NAME.png``."""
    written = []
    for name, fig in figures(run, dataset, metrics).items():
        path = run.path / "plots" / f"{name}.png"
        _save(fig, path)
        written.append(path)
    return written


def figures(run, dataset, metrics: list[dict]) -> dict[str, plt.Figure]:
    """Training curves, λ, learned parameters against truth, predictions (the first test
    trajectories and the worst one), a phase portrait (2-D ODEs) and, when the true system
    is known, the learned F_a against the term the prior misses."""
    from .report import _split, parameter_table

    figs: dict[str, plt.Figure] = {}
    steps = [m for m in metrics if "loss" in m]
    vals = [m for m in metrics if "val" in m]
    model = run.load_model("best")
    if steps:
        x = [m["step"] for m in steps]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.semilogy(x, [max(m["traj"], 1e-30) for m in steps], label="trajectory MSE (train batch)")
        if "norm" in steps[0]:
            ax.semilogy(x, [max(m["norm"], 1e-30) for m in steps], label="‖F_a‖²")
        if vals:
            ax.semilogy([m["step"] for m in vals], [m["val"] for m in vals], "o-",
                        label="validation MSE")
        ax.set_xlabel("step (batches)")
        ax.set_ylabel("MSE, ‖F_a‖² (squared state units)")
        ax.legend()
        figs["training"] = fig
        if "lambda" in steps[0]:
            fig, ax = plt.subplots(figsize=(6, 3))
            ax.plot(x, [m["lambda"] for m in steps])
            ax.set_xlabel("step (batches)")
            ax.set_ylabel("λ (APHYNITY multiplier)")
            figs["lambda"] = fig
        names = [k[6:] for k in steps[0] if k.startswith("param/")]
        if names:
            truth = {r["name"]: r.get("true") for r in parameter_table(model, dataset)}
            fig, axes = plt.subplots(len(names), 1, figsize=(6, 2.5 * len(names)), squeeze=False)
            for ax, name in zip(axes[:, 0], names):
                ax.plot(x, [m[f"param/{name}"] for m in steps], label="identified")
                if truth.get(name) is not None:
                    ax.axhline(truth[name], color="k", ls="--", label="true")
                ax.set_ylabel(pretty(name))
                ax.legend()
            axes[-1, 0].set_xlabel("step (batches)")
            figs["parameters"] = fig
    spec = run.spec
    hidden = spec.hidden_variables()
    # Hidden variables (`observe`): the model sees the observed channels only; the dots of
    # a hidden variable are its truth, which training never saw.
    _, traj, clean = _split(dataset, "test", spec.observed_channels(), model.readout)
    batch = traj.batch()
    times = batch.t
    with torch.no_grad():
        pred = model.predict(batch)
    data = _split(dataset, "test")[1].frames if hidden else batch.target
    variables = spec.system.variables
    shown_channel = 0
    if spec.observed_channels() is not None:
        shown_channel = spec.observed_channels()[0]
    if data.dim() == 3:
        from ..objectives import per_trajectory_errors

        per = per_trajectory_errors(model.observations(pred), batch.target, batch.mask)
        worst = int(per.argmax())
        first = list(range(min(3, data.shape[0])))
        shown = first + ([worst] if worst not in first else [])
        fig, axes = plt.subplots(len(variables), 1, figsize=(7, 2.5 * len(variables)),
                                 squeeze=False)
        for i, (ax, var) in enumerate(zip(axes[:, 0], variables)):
            for k in shown:
                tag = f"#{k}" + (" (worst)" if k == worst else "")
                line, = ax.plot(times, data[k, :, i], "o", ms=3, label=f"data {tag}")
                ax.plot(times, pred[k, :, i], "-" if k != worst else "--",
                        color=line.get_color(), label=f"model {tag}")
            ax.set_ylabel(pretty(var) + (" (hidden; dots: truth)" if var in hidden else ""))
        axes[0, 0].legend(fontsize=7, ncol=2)
        axes[-1, 0].set_xlabel(TIME + ";  dots: data, lines: model")
        figs["predictions"] = fig
        if len(variables) == 2:
            fig, ax = plt.subplots(figsize=(5, 5))
            for k in shown:
                line, = ax.plot(data[k, :, 0], data[k, :, 1], "o", ms=3)
                ax.plot(pred[k, :, 0], pred[k, :, 1], "-", color=line.get_color(),
                        label=f"#{k}" + (" (worst)" if k == worst else ""))
            ax.set_xlabel(pretty(variables[0]))
            ax.set_ylabel(pretty(variables[1]))
            ax.set_title("phase portrait (dots: data, lines: model)")
            ax.legend(fontsize=7)
            figs["phase"] = fig
        fig = _augmentation_vs_missing(run, model, dataset, clean if clean is not None else data,
                                       times, first)
        if fig is not None:
            figs["augmentation"] = fig
    elif data.dim() >= 4:
        frames = [0, data.shape[1] // 2, data.shape[1] - 1]
        fig, axes = plt.subplots(3, len(frames), figsize=(3 * len(frames), 8), squeeze=False)
        for j, f in enumerate(frames):
            truth = data[0, f, shown_channel]
            guess = pred[0, f, shown_channel]
            while truth.dim() > 2:  # 3-D grids: show the middle slice
                truth, guess = truth[..., truth.shape[-1] // 2], guess[..., guess.shape[-1] // 2]
            for row, (img, title) in enumerate([(truth, "data"), (guess, "model"),
                                                ((guess - truth).abs(), "|error|")]):
                im = axes[row, j].imshow(img.T, origin="lower")
                axes[row, j].set_title(f"{pretty(variables[shown_channel])} {title}, "
                                       f"t={float(times[f]):.3g}")
                axes[row, j].set_xlabel("x (grid index)")
                axes[row, j].set_ylabel("y (grid index)")
                fig.colorbar(im, ax=axes[row, j], shrink=0.8)
        figs["fields"] = fig
    if len(dataset.env_names) > 1:
        fig = _per_environment(dataset.env_names, batch.env, data, pred, variables, times)
        if fig is not None:
            figs["environments"] = fig
    return figs


def _per_environment(names, env, data, pred, variables, times):
    """One panel per environment, its first test trajectory (thesis Fig. 3.6, 3.11):
    a phase portrait for 2-D ODEs, the state over time for other ODEs, and the final
    state with its error map for grids."""
    rows = [int((env == e).nonzero()[0]) for e in range(len(names)) if bool((env == e).any())]
    if not rows:
        return None
    n = len(rows)
    if data.dim() == 3:
        cols = min(n, 5)
        fig, axes = plt.subplots(-(-n // cols), cols, figsize=(3 * cols, 3 * -(-n // cols)),
                                 squeeze=False)
        for ax, k in zip(axes.flat, rows):
            if len(variables) == 2:
                line, = ax.plot(data[k, :, 0], data[k, :, 1], "o", ms=3)
                ax.plot(pred[k, :, 0], pred[k, :, 1], "-", color=line.get_color())
                ax.set_xlabel(pretty(variables[0]))
                ax.set_ylabel(pretty(variables[1]))
            else:
                for i in range(data.shape[2]):
                    line, = ax.plot(times, data[k, :, i], "o", ms=3)
                    ax.plot(times, pred[k, :, i], "-", color=line.get_color())
                ax.set_xlabel(TIME)
            ax.set_title(names[int(env[k])], fontsize=9)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        fig.suptitle("per environment, first test trajectory (dots: data, lines: model)",
                     fontsize=9)
        return fig
    fig, axes = plt.subplots(3, n, figsize=(3 * n, 8), squeeze=False)
    for j, k in enumerate(rows):
        truth, guess = data[k, -1, 0], pred[k, -1, 0]
        while truth.dim() > 2:
            truth, guess = truth[..., truth.shape[-1] // 2], guess[..., guess.shape[-1] // 2]
        for r, (img, title) in enumerate([(truth, "data"), (guess, "model"),
                                          ((guess - truth).abs(), "|error|")]):
            im = axes[r, j].imshow(img.T, origin="lower")
            axes[r, j].set_title(f"{names[int(env[k])]}: {pretty(variables[0])} {title}",
                                 fontsize=8)
            fig.colorbar(im, ax=axes[r, j], shrink=0.8)
    return fig


def missing_term(spec, truth: dict[str, float]):
    """``F(x) − F_p(x)`` with the true parameter values: what the prior leaves out (for
    the damped pendulum with a frictionless prior, ``−α·ω``); None when unknown."""
    from ..symbolic import compile_dynamics

    if spec.prior is None or not spec.prior.equations or not spec.system.equations:
        return None
    values = {p.name: float(truth.get(p.name, p.value)) for p in spec.system.params}
    true_field = compile_dynamics(spec, "dynamics", learn=(), values=values)
    prior = compile_dynamics(spec, "prior", learn=(), values=values)

    def term(x: torch.Tensor) -> torch.Tensor:
        t = torch.zeros(())
        return true_field(t, x) - prior(t, x)
    return term


@torch.no_grad()
def _augmentation_vs_missing(run, model, dataset, states, times, shown):
    """F_a along test trajectories against the term the prior misses, and the residual."""
    envs = dataset.env_params
    if model.field.augmentation is None or len(envs) != 1 or not envs[0]:
        return None
    term = missing_term(run.spec, envs[0])
    if term is None:
        return None
    variables = run.spec.system.variables
    x = states[shown].to(torch.get_default_dtype())
    flat = x.flatten(0, 1)
    fa = model.field.augmentation(flat).view_as(x)
    miss = term(flat).view_as(x)
    fig, axes = plt.subplots(2, len(variables), figsize=(4 * len(variables), 5), squeeze=False)
    for i, var in enumerate(variables):
        for n, k in enumerate(shown):
            line, = axes[0, i].plot(times, miss[n, :, i], "-", label=f"missing #{k}")
            axes[0, i].plot(times, fa[n, :, i], "--", color=line.get_color(), label=f"F_a #{k}")
            axes[1, i].plot(times, fa[n, :, i] - miss[n, :, i], color=line.get_color())
        axes[0, i].set_title(f"d{pretty(var)}/dt: F_a (dashed) vs true − prior (solid)",
                             fontsize=9)
        axes[0, i].set_ylabel(f"d{pretty(var)}/dt term (state units per time unit)")
        axes[1, i].set_ylabel(f"F_a − missing, d{pretty(var)}/dt")
        axes[1, i].set_xlabel(TIME)
    axes[0, 0].legend(fontsize=7)
    return fig
