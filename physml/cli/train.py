"""`physml train`, `physml evaluate`, `physml inspect`."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..errors import SpecError
from .app import app, console, err_console, fail, report_spec_error


def _progress_table(p) -> Table:
    table = Table(box=None, show_header=False, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    eta = f"{p.eta:.0f} s" if p.eta is not None else "—"
    table.add_row("step", f"{p.step}  (epoch {p.epoch}/{p.epochs}, {p.elapsed:.0f} s, ETA {eta})")
    if not math.isnan(p.loss):
        table.add_row("loss", f"{p.loss:.4g}   trajectory {p.traj:.4g}")
    if p.lam is not None:
        table.add_row("λ", f"{p.lam:.4g}   ‖F_a‖² {p.norm:.4g}" if p.norm is not None
                      else f"{p.lam:.4g}")
    if p.best_val is not None:
        table.add_row("best val MSE", f"{p.best_val:.4g}")
    for name, value in p.params.items():
        true = p.truth.get(name)
        extra = f"   (true {true:.6g}, {abs(value - true) / abs(true) * 100:.2f} %)" \
            if true else ""
        table.add_row(name, f"{value:.6g}{extra}")
    if p.message:
        table.add_row("note", p.message)
    return table


class _LiveProgress:
    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.last = 0.0
        self.live: Live | None = None

    def __enter__(self):
        if not self.quiet:
            self.live = Live(Text("preparing…"), console=console, refresh_per_second=4,
                             transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.__exit__(*exc)
        return False

    def __call__(self, p) -> None:
        now = time.monotonic()
        if p.message:
            err_console.print(p.message)
        if p.phase not in ("training", "validation"):
            if self.live is not None:
                self.live.update(Text(p.phase + "…"))
            else:
                console.print(p.phase + "…")
            return
        if now - self.last < (0.25 if not self.quiet else 10.0) and p.val is None:
            return
        self.last = now
        if self.live is not None:
            self.live.update(_progress_table(p))
        else:
            params = " ".join(f"{k}={v:.6g}" for k, v in p.params.items())
            lam = f" λ={p.lam:.4g}" if p.lam is not None else ""
            loss = f" loss={p.loss:.4g}" if not math.isnan(p.loss) else ""
            val = f" val={p.val:.4g}" if p.val is not None else ""
            console.print(f"step {p.step} epoch {p.epoch}/{p.epochs}{loss}{lam}{val} {params}")


def _print_report(run) -> None:
    path = run.path / "report.json"
    if not path.exists():
        return
    report = json.loads(path.read_text())
    ev, ins = report["evaluate"], report["inspect"]
    console.print(f"[bold]{ins['system']}[/] trained with {ins['method']} "
                  f"({report['steps']} steps, {report['train_seconds']:.0f} s) → {run.path}")
    for line in ins["equations"]:
        console.print(Text(line))
    _param_table(ins["parameters"])
    sel = report.get("selection", {})
    if "best_step" in sel:
        note = f"parameters from the best validation checkpoint (step {sel['best_step']}"
        if "last_val" in sel and sel.get("best_val") is not None and \
                sel["last_val"] > 1.5 * sel["best_val"]:
            note += (f"; the last state, step {sel['last_step']}, validates worse: "
                     f"{sel['last_val']:.4g} vs {sel['best_val']:.4g}")
        console.print(note + ")")
    for name, r in (report.get("parameter_trajectory") or {}).items():
        console.print(f"{name}: average of the last 20 % {r['average']:.6g} (last {r['last']:.6g},"
                      f" spread {r['spread_pct']:.2g} %, {'settled' if r['settled'] else 'still moving'})")
    console.print(f"test MSE {ev['mse']:.4g}  (ln {ev['ln_mse']:.3f}, log10 {ev['log10_mse']:.3f})")
    if "ln_mse_median_trajectory" in ev:
        w = ev["worst_trajectory"]
        console.print(f"median trajectory ln MSE {ev['ln_mse_median_trajectory']:.3f}; worst: "
                      f"trajectory {w['index']} (MSE {w['mse']:.4g})")
    if "aug_share" in ev:
        console.print(f"augmentation carries {100 * ev['aug_share']:.2f} % of the dynamics "
                      f"(‖F_a‖² = {ev['aug_norm']:.4g})")


def _param_table(rows) -> None:
    if not rows:
        return
    table = Table(box=None, padding=(0, 2))
    for col in ("parameter", "identified", "true", "error"):
        table.add_column(col, justify="right" if col != "parameter" else "left")
    for p in rows:
        table.add_row(p["name"], f"{p['identified']:.6g}",
                      f"{p['true']:.6g}" if "true" in p else "—",
                      f"{p['error_pct']:.3f} %" if "error_pct" in p else "—")
    console.print(table)


@app.command()
def train(
    spec: Annotated[Optional[Path], typer.Argument(metavar="SPEC",
                                                   help="Experiment spec (.phy).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "--output", "-o", metavar="RUN",
                                                help="Run directory (default: runs/…).")] = None,
    resume: Annotated[Optional[Path], typer.Option(metavar="RUN",
                                                   help="Continue the run in this folder.")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1 or auto.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for initialisation and batches.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Override the spec's epochs.")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Stop after this many batches.")] = None,
    minutes: Annotated[Optional[float], typer.Option(help="Wall-clock budget.")] = None,
    data_dir: Annotated[Path, typer.Option(help="Where simulated data are cached.")] = Path("data"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Log lines, no live display.")] = False,
) -> None:
    """Train the model of SPEC (simulating its data first if needed)."""
    from ..experiment import RunError
    from ..experiment import train as train_fn
    from ..training import TrainingDiverged

    if spec is None and resume is None:
        fail("give a spec to train, or --resume RUN_DIR")
    try:
        with _LiveProgress(quiet) as progress:
            run = train_fn(spec, out=out, resume=resume, device=device, seed=seed,
                           data_dir=data_dir, callback=progress, epochs=epochs, steps=steps,
                           minutes=minutes)
    except SpecError as exc:
        report_spec_error(exc)
        return
    except TrainingDiverged as exc:
        fail(str(exc))
        return
    except (RunError, ValueError, FileNotFoundError) as exc:
        fail(str(exc))
        return
    if getattr(run, "stopped_early", False):
        console.print(f"interrupted: saved; continue with `physml train --resume {run.path}`")
        raise typer.Exit(130)
    console.print(f"stopped: {_REASONS.get(run.stop_reason, run.stop_reason)}")
    _print_report(run)


_REASONS = {"epochs": "all epochs done", "steps": "step cap reached (--steps)",
            "time budget": "time budget spent (minutes)",
            "patience": "no better validation within `patience` checks",
            "nothing to learn": "nothing to learn (model evaluated as given)"}


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory.")],
    split: Annotated[str, typer.Option(help="Which split to evaluate.")] = "test",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
) -> None:
    """Test metrics over the full horizon (ln MSE as in the thesis, log10 MSE, per step)."""
    from ..experiment import Run, RunError
    from ..experiment import evaluate as evaluate_fn

    try:
        result = evaluate_fn(Run(run_dir), split=split)
    except (RunError, ValueError, FileNotFoundError) as exc:
        fail(str(exc))
        return
    if as_json:  # plain JSON on stdout (no colour codes): for `jq` and scripts
        print(json.dumps(result, default=float, indent=2))
        return
    table = Table(box=None, padding=(0, 2))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("trajectories", "frames", "mse", "ln_mse", "log10_mse", "mse_vs_clean",
                "ln_mse_vs_clean", "ln_mse_median_trajectory", "param_error_pct", "aug_norm",
                "aug_share"):
        if key in result:
            v = result[key]
            table.add_row(key, f"{v:.6g}" if isinstance(v, float) else str(v))
    console.print(table)
    _param_table(result["parameters"])
    steps = result["mse_per_step"]
    if steps:
        marks = sorted({0, len(steps) // 4, len(steps) // 2, 3 * len(steps) // 4, len(steps) - 1})
        console.print("MSE per step: " + ", ".join(f"[{i}] {steps[i]:.3g}" for i in marks),
                      markup=False)


@app.command()
def inspect(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory.")],
    latex: Annotated[bool, typer.Option("--latex", help="Equations as LaTeX.")] = False,
) -> None:
    """The identified equations with fitted values, against the truth."""
    from ..experiment import Run, RunError
    from ..experiment import inspect as inspect_fn

    try:
        result = inspect_fn(Run(run_dir), latex=latex)
    except (RunError, ValueError, FileNotFoundError) as exc:
        fail(str(exc))
        return
    console.print(f"[bold]{result['system']}[/] — {result['method']}")
    console.print("identified:")
    for line in result["equations"]:
        console.print(Text("\n".join("  " + ln for ln in line.splitlines())))
    if "true_equations" in result:
        console.print("true system:")
        for line in result["true_equations"]:
            console.print(Text("\n".join("  " + ln for ln in line.splitlines())))
    _param_table(result["parameters"])
    if "aug_share" in result:
        console.print(f"the augmentation carries {100 * result['aug_share']:.2f} % of the "
                      f"dynamics on the test data (‖F_a‖/‖F_p + F_a‖)")
