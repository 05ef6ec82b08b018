"""PNG plots of a run (matplotlib, no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(run, dataset, metrics: list[dict]) -> list[Path]:
    """Training curves, λ, learned parameters against truth, and predictions."""
    from .report import _split, parameter_table

    out_dir = run.path / "plots"
    written = []
    steps = [m for m in metrics if "loss" in m]
    vals = [m for m in metrics if "val" in m]
    if steps:
        fig, ax = plt.subplots(figsize=(6, 4))
        x = [m["step"] for m in steps]
        ax.semilogy(x, [max(m["traj"], 1e-30) for m in steps], label="trajectory loss")
        if "norm" in steps[0]:
            ax.semilogy(x, [max(m["norm"], 1e-30) for m in steps], label="‖F_a‖²")
        if vals:
            ax.semilogy([m["step"] for m in vals], [m["val"] for m in vals], "o-",
                        label="validation MSE")
        ax.set_xlabel("step")
        ax.legend()
        _save(fig, out_dir / "training.png")
        written.append(out_dir / "training.png")
        if "lambda" in steps[0]:
            fig, ax = plt.subplots(figsize=(6, 3))
            ax.plot(x, [m["lambda"] for m in steps])
            ax.set_xlabel("step")
            ax.set_ylabel("λ")
            _save(fig, out_dir / "lambda.png")
            written.append(out_dir / "lambda.png")
        names = [k[6:] for k in steps[0] if k.startswith("param/")]
        if names:
            model = run.load_model("best")
            truth = {r["name"]: r.get("true") for r in parameter_table(model, dataset)}
            fig, axes = plt.subplots(len(names), 1, figsize=(6, 2.5 * len(names)), squeeze=False)
            for ax, name in zip(axes[:, 0], names):
                ax.plot(x, [m[f"param/{name}"] for m in steps], label=f"{name} identified")
                if truth.get(name) is not None:
                    ax.axhline(truth[name], color="k", ls="--", label="true")
                ax.legend()
            axes[-1, 0].set_xlabel("step")
            _save(fig, out_dir / "parameters.png")
            written.append(out_dir / "parameters.png")
    model = run.load_model("best")
    _, traj, _ = _split(dataset, "test")
    batch = traj.batch(slice(0, 3))
    data, times = batch.target, batch.t
    pred = model.predict(batch)
    variables = run.spec.system.variables
    if data.dim() == 3:
        fig, axes = plt.subplots(len(variables), 1, figsize=(7, 2.5 * len(variables)),
                                 squeeze=False)
        for i, (ax, var) in enumerate(zip(axes[:, 0], variables)):
            for k in range(data.shape[0]):
                line, = ax.plot(times, data[k, :, i], "o", ms=3)
                ax.plot(times, pred[k, :, i], "-", color=line.get_color())
            ax.set_ylabel(var)
        axes[-1, 0].set_xlabel("t  (dots: data, lines: model)")
        _save(fig, out_dir / "predictions.png")
        written.append(out_dir / "predictions.png")
    elif data.dim() >= 4:
        frames = [0, data.shape[1] // 2, data.shape[1] - 1]
        fig, axes = plt.subplots(3, len(frames), figsize=(3 * len(frames), 8), squeeze=False)
        for j, f in enumerate(frames):
            truth = data[0, f, 0]
            guess = pred[0, f, 0]
            while truth.dim() > 2:  # 3-D grids: show the middle slice
                truth, guess = truth[..., truth.shape[-1] // 2], guess[..., guess.shape[-1] // 2]
            for row, (img, title) in enumerate([(truth, "data"), (guess, "model"),
                                                ((guess - truth).abs(), "|error|")]):
                axes[row, j].imshow(img.T, origin="lower")
                axes[row, j].set_title(f"{variables[0]} {title}, t={float(times[f]):.3g}")
                axes[row, j].axis("off")
        _save(fig, out_dir / "fields.png")
        written.append(out_dir / "fields.png")
    return written
