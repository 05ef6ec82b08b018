"""`physml simulate SPEC` and `physml data info FILE`."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import limits
from ..errors import SpecError
from .app import AllowPath, MemoryBudget, app, console, fail, report_spec_error, set_limits

data_app = typer.Typer(no_args_is_help=True, help="Inspect dataset files.")
app.add_typer(data_app, name="data")


def _summary(ds, path: Path | None, seconds: float | None, cached: bool = False) -> None:
    from rich.table import Table
    from rich.text import Text

    # Names and paths come from files: Text objects, never parsed as markup.
    title = Text(f"{path}" if path else "dataset")
    if cached:
        title.append(" (cached)")
    table = Table(title=title, title_justify="left", box=None, padding=(0, 2))
    rows = ds.summary()
    nonfinite = any(r["nonfinite"] for r in rows)
    cols = ["split", "envs", "trajectories", "frames", "state", "min", "max"]
    for col in cols + (["NaN/inf"] if nonfinite else []):
        table.add_column(col, justify="left" if col == "split" else "right")
    for r in rows:
        cells = [Text(r["split"]), str(r["environments"]), str(r["trajectories"]),
                 str(r["frames"]), "×".join(map(str, ds.state_shape)),
                 f"{r['min']:.4g}", f"{r['max']:.4g}"]
        if nonfinite:
            cells.append(Text(str(r["nonfinite"]), style="bold red" if r["nonfinite"] else ""))
        table.add_row(*cells)
    console.print(table)
    if nonfinite:
        console.print(Text("  some values are NaN or ±inf (min and max are over the finite "
                           "ones)", style="yellow"))
    t = ds.times
    console.print(Text(f"  variables {', '.join(ds.variables)}; t = {float(t[0]):g} … "
                       f"{float(t[-1]):g} step {ds.dt:g}"
                       + (f" (history {ds.history})" if ds.history else "")
                       + (f"; noise σ = {ds.noise:g}" if ds.noise else "")))
    if ds.observed is not None:
        hidden = [v for v in ds.variables if v not in ds.observed]
        console.print(Text(f"  observed {', '.join(ds.observed)}; hidden {', '.join(hidden)} "
                           "(NaN where the data do not give them)"))
    if ds.n_envs > 1 or any(ds.env_params):
        ptable = Table(box=None, padding=(0, 2), show_edge=False)
        names = sorted({k for p in ds.env_params for k in p})
        ptable.add_column("environment")
        for n in names:
            ptable.add_column(Text(n), justify="right")
        for e, p in zip(ds.env_names, ds.env_params):
            ptable.add_row(Text(e), *[f"{p.get(n, float('nan')):g}" for n in names])
        console.print(ptable)
    dropped = ds.meta.get("dropped") or []
    if dropped:
        console.print(f"  [yellow]dropped {len(dropped)} unstable trajectories:[/]")
        for ev in dropped[:10]:
            params = ", ".join(f"{k}={v:g}" for k, v in ev["params"].items())
            console.print(Text(f"    {ev['split']} #{ev['trajectory']} ({ev['environment']}) "
                               f"at t = {ev['time']:.4g}; {params}"))
    extra = f"; {seconds:.2f} s" if seconds is not None else ""
    # The key names the cache file (<system>-<key>.h5) and says which spec and seed made
    # the data; the content hash checks the bytes.
    key = ds.meta.get("key")
    ident = f"key {key}; content hash {ds.hash[:16]}" if key else f"hash {ds.hash[:16]}"
    console.print(Text(f"  seed {ds.seed}; {ident}{extra}"))


@app.command()
def simulate(
    spec_file: Annotated[Path, typer.Argument(metavar="SPEC", help="An experiment spec (.phy).")],
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Where to write the dataset (.h5). Default: "
        "DATA_DIR/<system>-<hash>.h5, reused when it exists.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Override the spec's seed.")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1 …")] = None,
    drop_unstable: Annotated[bool, typer.Option(
        "--drop-unstable", help="Drop trajectories that blow up instead of failing.")] = False,
    bound: Annotated[Optional[float], typer.Option(
        help="A trajectory with |x| > BOUND counts as blown up.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Simulate even if cached.")] = False,
    data_dir: Annotated[Path, typer.Option(help="Cache folder for the default path.")] =
    Path("data"),
    allow_path: Annotated[Optional[list[Path]], AllowPath] = None,
    memory_budget: Annotated[Optional[str], MemoryBudget] = None,
) -> None:
    """Simulate the data a spec describes and write it as one HDF5 file."""
    # Imported here so that `physml --help` loads no torch.
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, \
        TimeElapsedColumn

    from ..data import DataError, load_dataset, save_dataset
    from ..experiment import default_path, simulate_keyed
    from ..lang import load_spec  # the data block only: training names are not needed here
    from ..lang.budget import estimate
    from ..storage import StorageError, ensure_writable
    from ..simulation import SimulationError, SolverFailure, UnstableError

    set_limits(allow_path, memory_budget)
    if seed is not None and not 0 <= seed <= limits.MAX_SEED:
        fail(f"--seed {seed}: seeds lie in 0 … 2^63 − 1 = {limits.MAX_SEED}")
    try:
        spec = load_spec(spec_file)
    except SpecError as exc:
        report_spec_error(exc)
        return
    path = output or default_path(spec, data_dir, seed)
    if output is None and path.exists() and not force:
        try:
            ds = load_dataset(path)
            _summary(ds, path, None, cached=True)
            return
        except DataError:
            pass
    # Before simulating: can the result be written, and is there room for it?
    where = "choose another --output" if output is not None else "choose another --data-dir"
    est = estimate(spec.system, spec.data, len(spec.environments))
    try:
        if path.is_dir():
            fail(f"--output {path}: a folder; give a file name (e.g. {path / 'data.h5'})")
        ensure_writable(path.parent, where,
                        need_bytes=est.stored_bytes + (1 << 20) if est is not None else 0)
    except StorageError as exc:
        fail(str(exc))
        return
    start = time.perf_counter()
    try:
        with Progress(TextColumn("{task.description:>6}"), BarColumn(), TaskProgressColumn(),
                      TimeElapsedColumn(), console=console, transient=False) as bar:
            tasks: dict[str, int] = {}

            def progress(split: str, fraction: float) -> None:
                if split not in tasks:
                    tasks[split] = bar.add_task(split, total=1.0)
                bar.update(tasks[split], completed=min(1.0, fraction))

            ds = simulate_keyed(spec, seed, device=device, progress=progress,
                                drop_unstable=drop_unstable, bound=bound)
    except SpecError as exc:
        report_spec_error(exc)
        return
    except (UnstableError, SimulationError, SolverFailure, DataError) as exc:
        fail(str(exc))
        return
    seconds = time.perf_counter() - start
    try:
        save_dataset(ds, path, where)
    except StorageError as exc:
        fail(str(exc))
        return
    _summary(ds, path, seconds)


def _arrays(path: Path, arrays) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(f"{path} (user data)"), title_justify="left", box=None,
                  padding=(0, 2))
    for col in ("array", "shape", "dtype"):
        table.add_column(col, justify="left" if col == "array" else "right")
    for name, shape, dtype in arrays:
        table.add_row(Text(name), "×".join(map(str, shape)) or "scalar", dtype)
    console.print(table)
    console.print(Text(f"  not a physml dataset: to read it as data, give the spec that "
                       f"maps it — physml data info {path} --spec SPEC.phy"))


@data_app.command("info")
def info(
    file: Annotated[Path, typer.Argument(metavar="DATASET", help="A dataset file (.h5, .npz).")],
    spec_file: Annotated[Optional[Path], typer.Option(
        "--spec", help="The spec describing user data (not needed for physml files).")] = None,
    allow_path: Annotated[Optional[list[Path]], AllowPath] = None,
    memory_budget: Annotated[Optional[str], MemoryBudget] = None,
) -> None:
    """Print a dataset's splits, shapes, parameters and hash.

    A user data file (.npz, HDF5/netCDF) is read through the spec that maps it
    (``--spec``); without one, its arrays are listed."""
    from rich.text import Text

    from ..data import DataError, list_arrays, load_dataset
    from ..lang import load_spec

    set_limits(allow_path, memory_budget)
    try:
        arrays = list_arrays(file) if spec_file is None else None
        if arrays is not None:
            _arrays(file, arrays)
            return
        ds = load_dataset(file, spec=load_spec(spec_file) if spec_file else None)
    except SpecError as exc:
        report_spec_error(exc)
        return
    except DataError as exc:
        fail(str(exc))
        return
    _summary(ds, file, None)
    if ds.meta.get("solver"):
        console.print(Text(f"  solver {ds.meta['solver']}; physml "
                           f"{ds.meta.get('physml_version')}"))
