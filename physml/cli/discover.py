"""`physml discover RUN`: the learned augmentation as equations (and a spec absorbing them)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app, console, fail, run_errors


def _fmt(x: float | None, spec: str = ".4g") -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _print_discovery(result, latex: bool, top: int) -> None:
    from rich.table import Table
    from rich.text import Text

    console.print(Text(f"library: {len(result.library)} terms; {result.samples} training "
                       f"states ({result.rows} rows); threshold {result.threshold:g} of each "
                       f"equation's rate; bootstrap {result.bootstrap}", style=""))
    r = result.refinement
    if r is not None:
        removed = sum(1 for st in r.path if not st.kept)
        console.print(Text(f"refined on the trajectories ({r.trajectories} windows, "
                           f"{r.solver}): {removed} of {r.candidates} candidate terms removed "
                           f"while the squared trajectory error stayed within "
                           f"{1 + r.tol:g}× the full library's ({r.loss_full:.4g} → "
                           f"{r.loss:.4g}); {r.seconds:.0f} s", style=""))
    for eq in result.equations:
        title = f"F_a in d({eq.var})/dt   (F_a carries " \
                f"{100 * eq.fa_rms / max(eq.rate_rms, 1e-300):.2f} % of the rate; " \
                f"unexplained {100 * eq.residual_rms / max(eq.rate_rms, 1e-300):.2f} %)"
        if r is not None:
            title = f"d({eq.var})/dt beyond the prior, refined on the trajectories"
        table = Table(title=title, title_justify="left", box=None, padding=(0, 2))
        for col, just in (("rank", "right"), ("term", "left"), ("coefficient", "right"),
                          ("share of rate", "right"), ("inclusion", "right"),
                          ("95 % interval", "left")):
            table.add_column(col, justify=just)
        shown = [t for t in eq.terms if t.coefficient != 0 or (t.inclusion or 0) > 0]
        for i, t in enumerate(shown[:top], 1):
            kept = t.coefficient != 0
            table.add_row(str(i), t.name, _fmt(t.coefficient) if kept else "(dropped)",
                          f"{100 * t.contribution:.2f} %" if kept else "—",
                          f"{100 * t.inclusion:.0f} %" if t.inclusion is not None else "—",
                          f"[{_fmt(t.low)}, {_fmt(t.high)}]" if t.inclusion else "—",
                          style=None if kept else "dim")
        if not shown:
            table.add_row("", "(no term kept: F_a is below the threshold here)", "", "", "", "")
        console.print(table)
        for name, eta in eq.shifts.items():
            value = result.learned.get(name)
            console.print(Text(f"  F_a also holds the prior's own term in {name}: as if "
                               f"{name} = {value + eta:.6g} instead of {value:.6g} (excluded "
                               "from the terms above)", style="dim"))
    import sympy

    from ..symbolic.printer import format_expr

    console.print(Text("identified:", style="bold"))
    for var, expr in result.identified().items():
        if latex:
            console.print(rf"\frac{{d {sympy.latex(sympy.Symbol(var))}}}{{dt}} = "
                          f"{sympy.latex(expr)}", markup=False, soft_wrap=True)
        else:
            console.print(f"  d({var})/dt = {format_expr(expr)}", markup=False,
                          soft_wrap=True)


@app.command()
def discover(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run trained with a "
                                            "prior and an augmentation network.")],
    threshold: Annotated[float, typer.Option(
        help="Drop terms carrying less than this share of their equation's rate.")] = 0.02,
    bootstrap: Annotated[int, typer.Option(
        help="Resampled refits for inclusion probabilities and intervals (0: none).")] = 100,
    degree: Annotated[Optional[int], typer.Option(
        help="Highest degree of the polynomial terms (default: the spec's, else 3).")] = None,
    engine: Annotated[str, typer.Option(
        metavar="stlsq|sr3|pysindy|pysindy-sr3", help="Regression engine: built-in STLSQ "
        "or SR3, or PySINDy's STLSQ or SR3 (pip install pysindy).")] = "stlsq",
    latex: Annotated[bool, typer.Option("--latex", help="Equations as LaTeX.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print discovery.json only.")] = False,
    top: Annotated[int, typer.Option(help="Terms shown per equation.")] = 8,
    refine: Annotated[bool, typer.Option(
        "--refine", help="Then refit the library on the training trajectories and remove "
        "terms there (needed where the trajectories pin F_a only loosely).")] = False,
    refine_tol: Annotated[float, typer.Option(
        help="--refine: remove terms while the squared trajectory error stays within "
        "(1 + this) × the full library's.")] = 1.0,
    absorb: Annotated[bool, typer.Option(
        "--absorb", help="Write a spec whose prior holds the kept terms with learnable "
        "coefficients (needs -o).")] = False,
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", metavar="NEW.phy", help="Where --absorb writes the new spec.")] = None,
    min_inclusion: Annotated[float, typer.Option(
        help="With --absorb: keep terms kept in at least this share of the bootstrap "
        "fits.")] = 0.5,
    refit: Annotated[Optional[str], typer.Option(
        metavar="physics|aphynity", help="With --absorb: train the new spec with this method "
        "and compare it with RUN.")] = None,
    refit_out: Annotated[Optional[Path], typer.Option(
        metavar="RUN2", help="Run directory of the refit (default: runs/…).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Refit: override the epochs.")] = None,
    minutes: Annotated[Optional[float], typer.Option(
        help="Refit: wall-clock budget.")] = None,
) -> None:
    """Write the learned augmentation F_a of RUN as equations (sparse regression on a
    library of candidate terms), ranked, with bootstrap inclusion and intervals."""
    from ..discover import ENGINES, REFIT_METHODS

    if engine not in ENGINES:
        fail(f"--engine {engine}: choose {' or '.join(ENGINES)}")
    if refit is not None and refit not in REFIT_METHODS:
        fail(f"--refit {refit}: choose {' or '.join(REFIT_METHODS)}")
    if (refit is not None or output is not None) and not absorb:
        fail("-o and --refit go with --absorb (write the new spec, then train it)")
    if absorb and output is None:
        fail("--absorb needs -o NEW.phy, the spec to write")
    if not 0 < threshold < 1:
        fail(f"--threshold {threshold:g}: a share between 0 and 1, e.g. 0.01")
    if bootstrap < 0:
        fail("--bootstrap: a number of refits ≥ 0")
    if degree is not None and not 1 <= degree <= 6:
        fail(f"--degree {degree}: between 1 and 6")
    if not refine_tol > 0:
        fail(f"--refine-tol {refine_tol:g}: a relative increase > 0, e.g. 1")
    from ..experiment import absorb_run, discover_run
    from ..experiment import refit as refit_fn

    with run_errors():
        result = discover_run(run_dir, threshold=threshold, bootstrap=bootstrap,
                              degree=degree, engine=engine, refine=refine,
                              refine_tol=refine_tol,
                              progress=(lambda line: console.print(f"  {line}", markup=False,
                                                                   style="dim"))
                              if refine and not as_json else None)
        from rich.text import Text

        environments = getattr(result, "environments", None)
        if as_json:
            print((Path(run_dir) / "discovery.json").read_text())
        elif environments is not None:
            for name, found in environments.items():
                console.print(Text(f"environment {name}", style="bold"))
                _print_discovery(found, latex, top)
            console.print(f"written: {Path(run_dir) / 'discovery.json'}", markup=False)
        else:
            _print_discovery(result, latex, top)
            console.print(f"written: {Path(run_dir) / 'discovery.json'}", markup=False)
        if not absorb:
            return
        if environments is not None:
            fail("--absorb of a multi-environment run is not supported yet: each "
                 "environment's terms are in discovery.json")
        done = absorb_run(run_dir, output, discovery=result, method=refit,
                          min_inclusion=min_inclusion)
        console.print(f"written: {output} (prior + {len(done.params)} learnable "
                      f"coefficient{'s' if len(done.params) != 1 else ''}: "
                      f"{', '.join(p.name for p in done.params)})", markup=False)
        if refit is None:
            return
        console.print(f"refitting {output} with {refit}…", markup=False)
        overrides = {k: v for k, v in (("epochs", epochs), ("minutes", minutes))
                     if v is not None}
        cmp = refit_fn(run_dir, output, out=refit_out, **overrides)
    _print_refit(cmp)


def _print_refit(cmp: dict) -> None:
    from rich.table import Table

    table = Table(title=f"refit ({cmp['method']}) → {cmp['refit']}", title_justify="left",
                  box=None, padding=(0, 2))
    for col in ("", "original", "refit"):
        table.add_column(col, justify="right" if col else "left")
    table.add_row("‖F_a‖² (test states)", f"{cmp['aug_norm_before']:.4g}",
                  f"{cmp['aug_norm_after']:.4g}")
    table.add_row("test MSE", f"{cmp['mse_before']:.4g}", f"{cmp['mse_after']:.4g}")
    before = {p["name"]: p for p in cmp["parameters_before"]}
    for p in cmp["parameters_after"]:
        b = before.get(p["name"])
        err = f"  ({p['error_pct']:.2f} % from the truth)" if "error_pct" in p else ""
        table.add_row(p["name"], f"{b['identified']:.6g}" if b else "—",
                      f"{p['identified']:.6g}{err}")
    console.print(table)
    drop = cmp["aug_norm_drop"]
    console.print(f"‖F_a‖² drops {drop:.3g}×" if math.isfinite(drop) else
                  "‖F_a‖² drops to 0 (no network)", markup=False)


__all__ = ["discover"]
