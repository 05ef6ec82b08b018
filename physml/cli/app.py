"""The `physml` command: a thin Typer layer over the library, rendered with Rich.

Every command is one library call plus rendering; errors from the library become a short
message and exit code 1, never a traceback. Command modules import the library inside the
commands, so ``physml --help`` loads neither torch nor SymPy.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
import typer.core
from rich.console import Console
from rich.markup import escape

from .. import limits
from .._version import __version__
from ..errors import SpecError

_display_type_rich = typer.core.TyperOption.display_type_rich


def _no_bool_for_flags(self, ctx):
    """A flag takes no value: show no ``<bool>`` beside it in ``--help``."""
    return None if self.is_flag else _display_type_rich(self, ctx)


typer.core.TyperOption.display_type_rich = _no_bool_for_flags

app = typer.Typer(
    name="physml", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Learn dynamical systems from data with neural networks and physics together.",
)
# emoji=False: a quoted source line or file name holding ":x:" stays as written.
console = Console(highlight=False, emoji=False)
err_console = Console(stderr=True, highlight=False, emoji=False)


def _print_version(value: bool) -> None:
    if value:
        console.print(f"physml {__version__}", markup=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_print_version,
        help="Print the version and exit.")] = False,
) -> None:
    """Learn dynamical systems from data with neural networks and physics together."""


def fail(message: str, code: int = 1) -> None:
    """Print a one-paragraph error (no traceback) and exit."""
    # The message may quote user text (paths, array names): never read it as markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


def set_limits(allow_paths: list[Path] | None, memory_budget: str | None) -> None:
    """Apply ``--allow-path`` / ``--memory-budget`` for this process: they extend
    ``$PHYSML_USE_PATH`` / set ``$PHYSML_MEMORY_BUDGET``, which every spec check reads."""
    import os

    if allow_paths:
        old = os.environ.get(limits.USE_PATH_ENV, "")
        os.environ[limits.USE_PATH_ENV] = os.pathsep.join(
            [*(str(p) for p in allow_paths), *([old] if old else [])])
    if memory_budget is not None:
        try:
            limits.parse_bytes(memory_budget)
        except ValueError as exc:
            fail(f"--memory-budget: {exc}")
        os.environ[limits.MEMORY_BUDGET_ENV] = memory_budget


AllowPath = typer.Option(
    "--allow-path", help="A folder `use \"file.phy\"` may also reach (repeatable; default: the "
    "spec's folder tree and the built-in library).")
MemoryBudget = typer.Option(
    "--memory-budget", help="Largest dataset to simulate or read, e.g. 64G (default 16G, or "
    "$PHYSML_MEMORY_BUDGET).")


def fail_os(exc: OSError) -> None:
    """An OS error (full disk, read-only folder, no permission) as one line and exit 1."""
    from ..storage import describe_os_error

    fail(describe_os_error(exc))


def report_spec_error(exc: SpecError) -> None:
    err_console.print(exc.render(), markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@contextmanager
def run_errors():
    """What a command on a run reports instead of a traceback: a spec error as its located
    line, a refused run or bad value (``RunError`` is a ``ValueError``) or a missing file as
    one paragraph, an OS error described; each exits 1."""
    try:
        yield
    except SpecError as exc:
        report_spec_error(exc)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail_os(exc)


# Sub-commands register themselves on `app` when their module is imported.
from . import check as _check, simulate as _simulate, train as _train  # noqa: E402,F401
from . import discover as _discover  # noqa: E402,F401


def main() -> None:
    """Console entry point: library errors become messages, never tracebacks."""
    import os

    try:
        app()
    except SpecError as exc:
        err_console.print(exc.render(), markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except OSError as exc:  # a full disk, a read-only folder no command located
        if os.environ.get("PHYSML_DEBUG"):
            raise
        from ..storage import describe_os_error

        err_console.print(f"error: {describe_os_error(exc)}", markup=False, highlight=False,
                          soft_wrap=True)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - the last line of defence of the CLI
        if os.environ.get("PHYSML_DEBUG"):
            raise
        err_console.print(f"error: {type(exc).__name__}: {exc}\n(set PHYSML_DEBUG=1 for the "
                          "full traceback)", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
