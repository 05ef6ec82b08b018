"""`physml check FILE`: parse, check and print a spec."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import AllowPath, MemoryBudget, app, console, report_spec_error, set_limits


@app.command()
def check(
    file: Annotated[Path, typer.Argument(metavar="SPEC", help="A .phy spec or system file.")],
    latex: Annotated[bool, typer.Option("--latex", help="Print equations as LaTeX.")] = False,
    allow_path: Annotated[Optional[list[Path]], AllowPath] = None,
    memory_budget: Annotated[Optional[str], MemoryBudget] = None,
    identifiability: Annotated[bool, typer.Option(
        "--identifiability", help="Also simulate the data design and say whether the "
        "learned parameters can be told apart (Fisher information), and how much of each "
        "the augmentation could absorb.")] = False,
) -> None:
    """Check a spec and print its system as equations (exit 1 with file:line:col if bad)."""
    # Imported here: `physml --help` needs none of it, and a system file needs no torch.
    from rich.table import Table
    from rich.text import Text

    from ..errors import SpecError
    from ..experiment import load_spec
    from ..experiment.describe import describe_experiment, spec_warnings
    from ..lang.budget import estimate
    from ..reporting.symbolic import describe, render_equations, render_let

    set_limits(allow_path, memory_budget)
    try:
        spec = load_spec(file)
        # What `train` builds before it touches any data: the options resolve, the model
        # and the objective build. A spec that passes here trains.
        cfg, blocks = describe_experiment(spec)
    except SpecError as exc:
        report_spec_error(exc)
        return
    info = describe(spec)
    s = spec.system
    head = Text(s.name, style="bold")
    if s.title:
        head.append(f" — {s.title}", style="")
    console.print(head)
    if spec.uses:
        console.print(Text(f"  from `use {spec.uses}`"))
    console.print(f"  {info['kind']} in {', '.join(s.variables)}")
    if s.domain is not None:
        console.print(f"  domain {s.domain.describe()}")
    if s.params:
        table = Table(box=None, padding=(0, 2), show_edge=False)
        table.add_column("parameter")
        table.add_column("value", justify="right")
        table.add_column("bounds")
        for p in s.params:
            table.add_row(p.name, f"{p.value:g}", p.bounds_text())
        console.print(table)
    for let in s.lets:
        console.print(Text(render_let(let, latex)))
    for line in render_equations(s.equations, latex):
        console.print(Text(line))
    if spec.prior is not None and spec.prior.equations:
        console.print(Text("prior:", style="bold"))
        for let in spec.prior.lets:
            console.print(Text("  " + render_let(let, latex)))
        for line in render_equations(spec.prior.equations, latex):
            console.print(Text("\n".join("  " + ln for ln in line.splitlines())))
        if spec.prior.learn:
            learned = ", ".join(n if v is None else f"{n} from {v:g}" for n, v in spec.prior.learn)
            console.print(f"  learn {learned}")
    est = estimate(s, spec.data, len(spec.environments))
    if est is not None:
        console.print(Text(f"  data: {est.describe()}"))
    # in the order `train` runs them
    for name in ("data", "augment", "per_environment", "observe", "constraint", "train"):
        if name in blocks:
            console.print(Text(f"{name} ", style="bold").append(blocks[name], style=""))
    for warning in spec_warnings(spec):
        console.print(Text(f"warning: {warning}", style="yellow"))
    if info["blocks"]:
        console.print(f"  blocks: {', '.join(info['blocks'])}")
    console.print("[green]ok[/]")
    if identifiability:
        _identifiability(spec)


def _identifiability(spec) -> None:
    from rich.table import Table
    from rich.text import Text

    from ..experiment import identifiability as identifiability_fn
    from .app import fail

    if spec.prior is None or not spec.prior.learn or spec.prior.hamiltonian is not None:
        fail("--identifiability: the spec learns no parameters of a `prior:` block "
             "(add `learn NAME` to it)")
    try:
        result = identifiability_fn(spec)
    except (ValueError, RuntimeError) as exc:
        fail(f"--identifiability: {exc}")
        return
    console.print(Text("identifiability", style="bold"))
    lines = result.lines()
    style = "red" if not result.full_rank else "yellow" if result.near_singular else "green"
    console.print(Text(lines[0], style=style))
    table = Table(box=None, padding=(0, 2))
    for col in ("parameter", "at", "expected std. error", "relative"):
        table.add_column(col, justify="left" if col == "parameter" else "right")
    shares = {c.name: c for c in result.confounding}
    if shares:
        table.add_column("F_a can absorb", justify="right")
    for n in result.names:
        rel = result.rel_std[n]
        row = [n, f"{result.at[n]:.6g}", f"{result.std[n]:.3g}",
               f"{100 * rel:.3g} %" if rel != float("inf") else "unbounded"]
        if shares:
            c = shares[n]
            row.append(f"{100 * c.share:.1f} %" + (" (not unique)" if not c.unique else ""))
        table.add_row(*row)
    console.print(table)
    for line in lines[1:]:
        if line.startswith("  "):
            continue  # the per-parameter lines are the table
        console.print(Text(line), soft_wrap=False)
