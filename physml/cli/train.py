"""`physml train`, `physml evaluate`, `physml inspect`."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import SpecError
from .app import app, console, fail, fail_os, report_spec_error, run_errors


_PHASES = {"simulating data": "simulating the data", "reading data": "reading the data",
           "loading data": "loading the data", "compiling": "compiling the training step "
           "(torch.compile; the first run on a machine takes longest)",
           "training": "training", "validation": "training",
           "writing the report": "writing the report and plots"}


def _pct(value: float, true: float | None) -> str:
    if not true:
        return ""
    return f"   (true {true:.6g}, {(value - true) / abs(true) * 100:+.2f} %)".replace("-", "−")


def _progress_table(p, notes: list[str]):
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, show_header=False, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    eta = f"{p.eta:.0f} s" if p.eta is not None else "—"
    table.add_row("phase", "training")
    table.add_row("step", f"{p.step}  (epoch {p.epoch}/{p.epochs}, {p.elapsed:.0f} s, ETA {eta})")
    if not math.isnan(p.traj):
        table.add_row("trajectory MSE", f"{p.traj:.4g}")
    if p.norm is not None:
        table.add_row("‖F_a‖²", f"{p.norm:.4g}")
    if p.lam is not None:
        # APHYNITY minimises ‖F_a‖² + λ·L_traj: it grows with λ, so it is shown last.
        table.add_row("λ", f"{p.lam:.4g}   (objective ‖F_a‖² + λ·MSE = {p.loss:.4g})"
                      if not math.isnan(p.loss) else f"{p.lam:.4g}")
    elif not math.isnan(p.loss) and not math.isclose(p.loss, p.traj):
        table.add_row("loss", f"{p.loss:.4g}")
    if p.best_val is not None:
        table.add_row("best val MSE", f"{p.best_val:.4g}")
    for name, value in p.params.items():
        table.add_row(Text(f"{name} (current)"), f"{value:.6g}{_pct(value, p.truth.get(name))}")
    if p.lr is not None:
        table.add_row("lr", f"{p.lr:.3g}")
    for note in notes[-3:]:
        table.add_row("note", note)
    return table


class _LiveProgress:
    """The live display of ``physml train``: the phase (simulating, compiling, training,
    writing the report), then the trajectory error, ‖F_a‖², λ and the current
    parameters. While the step compiles, the compiler's own output (warnings, and the
    traceback flood of an interrupted compile) goes to a log file, not the terminal."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.last = 0.0
        self.live = None
        self.phase = "preparing"
        self.steps = 0
        self.notes: list[str] = []
        self._saved_fd: int | None = None
        self.compile_log: str | None = None

    def __enter__(self):
        if not self.quiet and console.is_terminal:
            from rich.live import Live
            from rich.text import Text

            self.live = Live(Text("preparing…"), console=console, refresh_per_second=4,
                             transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        self._release_stderr()
        if self.live is not None:
            self.live.__exit__(*exc)
        return False

    @property
    def compiling(self) -> bool:
        return self.phase == "compiling" and self.steps == 0

    def _capture_stderr(self) -> None:
        import os
        import sys
        import tempfile

        if self._saved_fd is not None:
            return
        try:
            sys.stderr.flush()
            fd, self.compile_log = tempfile.mkstemp(prefix="physml-compile-", suffix=".log")
            self._saved_fd = os.dup(2)
            os.dup2(fd, 2)
            os.close(fd)
        except (OSError, ValueError):  # no real stderr (a test runner): leave it be
            self._saved_fd = None

    def _release_stderr(self) -> None:
        import os
        import sys

        if self._saved_fd is None:
            return
        try:
            sys.stderr.flush()
        except ValueError:
            pass
        os.dup2(self._saved_fd, 2)
        os.close(self._saved_fd)
        self._saved_fd = None

    def _say(self, text: str) -> None:
        from rich.text import Text

        if self.live is not None:
            self.live.console.print(Text(text))
        else:
            console.print(Text(text))

    def __call__(self, p) -> None:
        if p.message:
            self.notes.append(p.message)
            self._say(p.message)
        if p.phase == "training" and p.step == 0 and math.isnan(p.loss) and p.val is None:
            if self.phase != "compiling":  # the phase note before the first step
                self.phase = "training"
                self._say("training…")
            return
        if p.phase not in ("training", "validation"):
            self.phase = p.phase
            if p.phase == "compiling":
                self._capture_stderr()
            label = _PHASES.get(p.phase, p.phase) + "…"
            if self.live is not None:
                from rich.text import Text

                self.live.update(Text(label))
            else:
                console.print(label)
            return
        if p.step > self.steps:
            self.steps = p.step
            if self._saved_fd is not None:
                self._release_stderr()
        self.phase = "training"
        now = time.monotonic()
        if now - self.last < (0.25 if self.live is not None else 10.0) and p.val is None:
            return
        self.last = now
        if self.live is not None:
            self.live.update(_progress_table(p, self.notes))
        else:
            params = " ".join(f"{k}={v:.6g}" for k, v in p.params.items())
            lam = f" λ={p.lam:.4g}" if p.lam is not None else ""
            traj = f" mse={p.traj:.4g}" if not math.isnan(p.traj) else ""
            norm = f" |F_a|^2={p.norm:.4g}" if p.norm is not None else ""
            val = f" val={p.val:.4g}" if p.val is not None else ""
            console.print(f"step {p.step} epoch {p.epoch}/{p.epochs}{traj}{norm}{lam}{val} "
                          f"{params}", markup=False)


def _print_report(run, latex: bool = False) -> None:
    from rich.text import Text

    from ..reporting.report import observed_share_text, parameter_rows

    path = run.path / "report.json"
    if not path.exists():
        return
    report = json.loads(path.read_text())
    ev, ins = report["evaluate"], report["inspect"]
    sel = report.get("selection", {})
    console.print(Text(f"{ins['system']} trained with {ins['method']} ({report['steps']} steps, "
                       f"{report['train_seconds']:.0f} s) → {run.path}", style="bold"))
    _equations(ins, sel.get("best_step"))
    rows = parameter_rows(report)
    if rows:
        _parameter_rows(rows, sel)
    for line in (ins.get("uncertainty") or {}).get("lines", []):
        console.print(line, markup=False, soft_wrap=True)
    console.print(f"test MSE {ev['mse']:.4g}  (ln {ev['ln_mse']:.3f}, log10 {ev['log10_mse']:.3f})")
    if "ln_mse_median_trajectory" in ev:
        w = ev["worst_trajectory"]
        console.print(f"median trajectory ln MSE {ev['ln_mse_median_trajectory']:.3f}; worst: "
                      f"trajectory {w['index']} (MSE {w['mse']:.4g})")
    if "partial" in ev:
        _partial_lines(ev["partial"])
    if "aug_share" in ev:
        console.print(f"augmentation carries {100 * ev['aug_share']:.2f} % of the dynamics "
                      f"(‖F_a‖² = {ev['aug_norm']:.4g})" + observed_share_text(ev))
    console.print(Text(f"report: {run.path / 'report.md'}; plots in {run.path / 'plots'}"))


def _equations(ins: dict, best_step=None) -> None:
    """Identified and true equations side by side, one line each (one block after the
    other where the terminal is too narrow for both: an equation is never wrapped)."""
    from ..reporting.report import side_by_side

    where = {None: "", "best": " (best checkpoint)"}.get(
        best_step, f" (best checkpoint, step {best_step})")
    rows = side_by_side(ins)
    left_w = max(len(f"identified{where}"), *(len(a) for a, _ in rows))
    right_w = max([len(b) for _, b in rows] + [len("true system")])
    if "true_equations" in ins and left_w + 3 + right_w <= console.width:
        console.print(f"{'identified' + where:<{left_w}}   true system", markup=False,
                      style="bold")
        for a, b in rows:
            console.print(f"{a:<{left_w}}   {b}".rstrip(), markup=False)
        return
    blocks = [(f"identified{where}:", ins["equations"] + [""] + list(ins.get("values", [])))]
    if "true_equations" in ins:
        blocks.append(("true system:", ins["true_equations"] + [""]
                       + list(ins.get("true_values", []))))
    for title, lines in blocks:
        console.print(title, markup=False, style="bold")
        for line in lines:
            console.print(f"  {line}" if line else "", markup=False, soft_wrap=True)


def _parameter_rows(rows, sel: dict) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, padding=(0, 2))
    best, last = sel.get("best_step"), sel.get("last_step")
    table.add_column("parameter")
    table.add_column(f"best (step {best})" if best is not None else "best", justify="right")
    table.add_column(f"last (step {last})" if last is not None else "last", justify="right")
    table.add_column("avg. last 20 %", justify="right")
    table.add_column("true", justify="right")
    table.add_column("error (best)", justify="right")
    for r in rows:
        avg = "—"
        if "average" in r:
            avg = f"{r['average']:.6g} ({'settled' if r['settled'] else 'still moving'})"
        table.add_row(Text(r["name"]), f"{r['best']:.6g}",
                      f"{r['last']:.6g}" if "last" in r else "—", avg,
                      f"{r['true']:.6g}" if "true" in r else "—",
                      f"{r['error_pct']:.3f} % ({r['note']})" if "note" in r else
                      f"{r['error_pct']:.3f} %" if "error_pct" in r else "—")
    console.print(table)
    note = "the reported values are those of the best validation checkpoint"
    if "last_val" in sel and sel.get("best_val") is not None:
        note += (f" (val MSE {sel['best_val']:.4g}); the last state validates at "
                 f"{sel['last_val']:.4g}")
    console.print(note, markup=False)


def _param_table(rows) -> None:
    from rich.table import Table
    from rich.text import Text

    if not rows:
        return
    table = Table(box=None, padding=(0, 2))
    for col in ("parameter", "identified", "true", "error", "last 20 % of training"):
        table.add_column(col, justify="right" if col != "parameter" else "left")
    for p in rows:
        settled = "—"
        if "settled" in p:  # spread over the last 20 % of the steps (a transient if moving)
            settled = (f"{'settled' if p['settled'] else 'STILL MOVING'} at "
                       f"{p['settled_value']:.6g} (spread {p['spread_pct']:.2g} %)")
        table.add_row(Text(p["name"]), f"{p['identified']:.6g}",
                      f"{p['true']:.6g}" if "true" in p else "—",
                      _error_text(p), settled)
    console.print(table)


def _error_text(p: dict) -> str:
    if p.get("identifiable") is False:
        up = p.get("error_up_to_symmetry_pct")
        return (f"not identifiable (only {p['identifiable_combination']})"
                + (f"; {up:.3f} % up to {p['symmetry']}" if up is not None else ""))
    return f"{p['error_pct']:.3f} %" if "error_pct" in p else "—"


def _partial_lines(part: dict) -> None:
    """The partial-observation metrics (thesis eqs. 2.6, 2.7) of `evaluate`."""
    console.print(f"observed: {', '.join(part['observed'])}; hidden: "
                  f"{', '.join(part['hidden'])} (initial states: {part['initial_states']})",
                  markup=False)
    for key, title in (("relative_mse", "relative error on observations (eq. 2.6)"),
                       ("relative_error_field", "relative error on observations, field "
                        "norms (eq. 2.6 with ‖·‖ over the grid)"),
                       ("hidden_cosine", "cosine of hidden states to the truth (eq. 2.7)")):
        if key in part:
            console.print(f"{title}: " + ", ".join(f"{h} {v:.4g}" for h, v in
                                                     part[key].items()), markup=False)
    still = part.get("persistence", {})
    if still:
        console.print("the true initial state held still (persistence): " + "; ".join(
            f"{k.replace('_', ' ')} " + ", ".join(f"{h} {v:.4g}" for h, v in d.items())
            for k, d in still.items()), markup=False)
    for sym in part.get("symmetries", []):
        console.print(f"symmetry of the hidden states: {sym}", markup=False)


def _environment_tables(result) -> None:
    """Per environment (LEADS, thesis Tables 3.13–3.15): train/test MSE with mean ± std,
    ‖G_e‖², and each environment's learned parameters against the true ones."""
    from rich.table import Table
    from rich.text import Text

    test, train = result.get("environments"), result.get("train_environments")
    norms = {r["environment"]: r["g_norm"] for r in result.get("g_norms", [])}
    if test or norms:
        table = Table(box=None, padding=(0, 2))
        table.add_column("environment")
        names = [r["environment"] for r in test["per_environment"]] if test else list(norms)
        cols = []
        if train:
            cols.append(("train MSE", {r["environment"]: r["mse"]
                                       for r in train["per_environment"]}))
        if test:
            cols.append(("test MSE", {r["environment"]: r["mse"] for r in test["per_environment"]}))
        if norms:
            cols.append(("‖G_e‖²", norms))
        for title, _ in cols:
            table.add_column(title, justify="right")
        for n in names:
            table.add_row(Text(n), *(f"{c[n]:.4g}" if n in c else "—" for _, c in cols))
        if test:
            row = ["mean ± std"]
            if train:
                row.append(f"{train['mse_env_mean']:.3g} ± {train['mse_env_std']:.2g}")
            row.append(f"{test['mse_env_mean']:.3g} ± {test['mse_env_std']:.2g}")
            if norms:
                row.append("")
            table.add_row(*row)
        console.print(table)
    rows = result.get("environment_parameters") or []
    if rows:
        params = [k for k in rows[0] if k != "environment" and not k.endswith(("_true",
                                                                               "_error_pct"))]
        table = Table(box=None, padding=(0, 2))
        table.add_column("environment")
        for p in params:
            table.add_column(f"{p} (true, error)", justify="right")
        for r in rows:
            table.add_row(Text(r["environment"]), *(
                f"{r[p]:.5g}" + (f" ({r[p + '_true']:.4g}, {r[p + '_error_pct']:.2f} %)"
                                 if p + "_true" in r else "") for p in params))
        console.print(table)


def _interrupted_by_user(exc: BaseException) -> bool:
    """A KeyboardInterrupt, or an error a compiler raised because of one."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


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
    log: Annotated[Optional[str], typer.Option(
        "--log", metavar="tensorboard", help="Also write TensorBoard scalars to RUN/tensorboard "
        "(needs `pip install physml[tensorboard]`); metrics.jsonl is always written.")] = None,
) -> None:
    """Train the model of SPEC (simulating its data first if needed)."""
    from ..experiment import train as train_fn

    if log is not None and log != "tensorboard":
        fail(f"--log {log}: the only logger is 'tensorboard'")

    if spec is None and resume is None:
        fail("give a spec to train, or --resume RUN_DIR")
    progress = _LiveProgress(quiet)
    try:
        with progress:
            run = train_fn(spec, out=out, resume=resume, device=device, seed=seed,
                           data_dir=data_dir, callback=progress, epochs=epochs, steps=steps,
                           minutes=minutes, log=log)
    except BaseException as exc:  # noqa: BLE001 - sorted below
        if not _interrupted_by_user(exc) or isinstance(exc, typer.Exit):
            _train_error(exc)
            raise
        if progress.compiling:
            fail("interrupted while compiling (nothing trained yet"
                 + ("; the compiler's messages are in " + progress.compile_log
                    if progress.compile_log else "") + ")", code=130)
        fail("interrupted", code=130)
        return
    if getattr(run, "stopped_early", False):
        reason = "while compiling" if progress.compiling else f"at step {progress.steps}"
        console.print(f"interrupted {reason}: saved; continue with "
                      f"`physml train --resume {run.path}`", markup=False)
        raise typer.Exit(130)
    console.print(f"stopped: {_REASONS.get(run.stop_reason, run.stop_reason)}", markup=False)
    _print_report(run)


def _train_error(exc: BaseException) -> None:
    """Library errors become a message and exit 1 (anything else propagates)."""
    from ..experiment import RunError
    from ..training import TrainingDiverged

    if isinstance(exc, SpecError):
        report_spec_error(exc)
    if isinstance(exc, (TrainingDiverged, RunError, ValueError, FileNotFoundError)):
        fail(str(exc))
    if isinstance(exc, OSError):
        fail_os(exc)


_REASONS = {"epochs": "all epochs done", "steps": "step cap reached (--steps)",
            "time budget": "time budget spent (minutes)",
            "patience": "no better validation within `patience` checks",
            "nothing to learn": "nothing to learn (model evaluated as given)"}


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory.")],
    split: Annotated[str, typer.Option(help="Which split to evaluate.")] = "test",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
    windows: Annotated[int | None, typer.Option(
        metavar="N", help="Also the error of N-frame forecasts started at every frame.")] = None,
) -> None:
    """Test metrics over the full horizon (ln MSE as in the thesis, log10 MSE, per step)."""
    from ..experiment import Run
    from ..experiment import evaluate as evaluate_fn

    with run_errors():
        result = evaluate_fn(Run(run_dir), split=split, windows=windows)
    if as_json:  # plain JSON on stdout (no colour codes): for `jq` and scripts
        print(json.dumps(result, default=float, indent=2))
        return
    from rich.table import Table

    table = Table(box=None, padding=(0, 2))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("trajectories", "frames", "mse", "ln_mse", "log10_mse", "mse_vs_clean",
                "ln_mse_vs_clean", "ln_mse_median_trajectory", "param_error_pct", "aug_norm",
                "aug_share", "aug_share_observed"):
        if key in result:
            v = result[key]
            table.add_row(key, f"{v:.6g}" if isinstance(v, float) else str(v))
    if "windows" in result:
        w = result["windows"]
        table.add_row(f"mse, {w['windows']} forecasts of {w['length']} frames from every frame",
                      f"{w['mse']:.6g}")
    console.print(table)
    _param_table(result["parameters"])
    if "partial" in result:
        _partial_lines(result["partial"])
    _environment_tables(result)
    steps = result["mse_per_step"]
    if steps:
        marks = sorted({0, len(steps) // 4, len(steps) // 2, 3 * len(steps) // 4, len(steps) - 1})
        console.print("MSE per step: " + ", ".join(f"[{i}] {steps[i]:.3g}" for i in marks),
                      markup=False)


@app.command()
def adapt(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A trained LEADS run.")],
    source: Annotated[Path, typer.Argument(
        metavar="DATA_OR_SPEC", help="The new environments: a spec (.phy) or a dataset.")],
    out: Annotated[Optional[Path], typer.Option(help="Folder for adapt.json and adapt.png "
                                                "(default RUN/adapt).")] = None,
    steps: Annotated[int, typer.Option(help="Training steps of each scheme.")] = 10000,
    data_dir: Annotated[Path, typer.Option(help="Cache of simulated data.")] = Path("data"),
) -> None:
    """New environments (Table 3.13): freeze the run's shared F, learn only G_e' (and
    per-environment parameters); compare with F alone and One-Per-Env from scratch."""
    from ..experiment import Run
    from ..experiment import adapt as adapt_fn

    with run_errors():
        result = adapt_fn(Run(run_dir), source, out=out or Path(run_dir) / "adapt",
                          budget=steps, data_dir=data_dir)
    from rich.table import Table

    table = Table(box=None, padding=(0, 2))
    table.add_column("test MSE")
    cols = list(next(iter(result["table"].values())))
    for c in cols:
        table.add_column(f"step {c}", justify="right")
    for name, row in result["table"].items():
        table.add_row(name, *(f"{row[c]:.4g}" for c in cols))
    console.print(table)
    console.print(f"wrote {result['folder']}/adapt.json and adapt.png", markup=False)


@app.command()
def inspect(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory.")],
    latex: Annotated[bool, typer.Option("--latex", help="Equations as LaTeX.")] = False,
    checkpoint: Annotated[str, typer.Option(
        metavar="best|last", help="The best validation checkpoint or the last state.")] = "best",
    conjugacy: Annotated[bool, typer.Option(
        "--conjugacy", help="Hidden variables: fit the map from learned to true states on a "
        "few labelled test trajectories and report how well they are recovered (thesis "
        "§2.5.4).")] = False,
    labelled: Annotated[int, typer.Option(
        min=1, help="Labelled trajectories for --conjugacy.")] = 10,
    bootstrap: Annotated[int, typer.Option(
        metavar="N", help="Intervals from N refits on resampled training trajectories "
        "instead of the Laplace approximation (slower, fewer assumptions).")] = 0,
    level: Annotated[float, typer.Option(help="Coverage of the intervals.")] = 0.95,
) -> None:
    """The identified equations with fitted values and intervals, beside the true system."""
    from ..experiment import Run
    from ..experiment import inspect as inspect_fn
    from ..reporting.report import observed_share_text

    if checkpoint not in ("best", "last"):
        fail(f"--checkpoint {checkpoint}: choose best or last")
    if bootstrap < 0 or bootstrap == 1:
        fail(f"--bootstrap {bootstrap}: give at least 2 replicates (20 or more for 95 % "
             "intervals), or 0 for the Laplace approximation")
    if not 0 < level < 1:
        fail(f"--level {level}: give a coverage between 0 and 1, e.g. 0.95")
    with run_errors():
        result = inspect_fn(Run(run_dir), latex=latex, which=checkpoint,
                            conjugacy=labelled if conjugacy else 0, bootstrap=bootstrap,
                            level=level)
    console.print(f"{result['system']} — {result['method']}", markup=False)
    if latex:
        for title, key in (("identified", "equations"), ("", "values"),
                           ("true system", "true_equations"), ("", "true_values")):
            if title and key in result:
                console.print(f"% {title}", markup=False)
            for line in result.get(key, []):
                console.print(line, markup=False, soft_wrap=True)
    else:
        _equations(result, None if checkpoint == "last" else "best")
    _param_table(result["parameters"])
    for line in result.get("identifiability", []):
        console.print(line, markup=False)
    conj = result.get("conjugacy")
    if conj:
        console.print(f"conjugacy (§2.5.4), fitted on {conj['labelled_trajectories']} labelled "
                      f"trajectories, tested on {conj['tested_trajectories']}:", markup=False)
        for key, title in (("cosine_before", "hidden-state cosine, learned"),
                           ("cosine_after", "hidden-state cosine, mapped")):
            console.print(f"  {title}: " + ", ".join(f"{h} {v:.4g}" for h, v in
                                                     conj[key].items()), markup=False)
        console.print(f"  relative squared error of the mapped hidden states: "
                      f"{conj['hidden_relative_mse_after']:.4g}", markup=False)
    if "uncertainty" in result:
        for line in result["uncertainty"]["lines"]:
            console.print(line, markup=False, soft_wrap=True)
    _environment_tables(result)
    for env, lines in (result.get("environment_equations") or {}).items():
        console.print(f"{env}:  " + "    ".join(lines), markup=False, soft_wrap=True)
    if "aug_share" in result:
        console.print(f"the augmentation carries {100 * result['aug_share']:.2f} % of the "
                      f"dynamics on the test data (‖F_a‖/‖F_p + F_a‖)"
                      + observed_share_text(result))
