"""The `physml` command: a thin Typer layer over the library, rendered with Rich.

Every command is one library call plus rendering; errors from the library become a short
message and exit code 1, never a traceback.
"""
from __future__ import annotations

import sys

import typer
from rich.console import Console

from ..errors import SpecError

app = typer.Typer(
    name="physml", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Learn dynamical systems from data with neural networks and physics together.",
)
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


@app.callback()
def _root() -> None:
    """Learn dynamical systems from data with neural networks and physics together."""


def fail(message: str, code: int = 1) -> None:
    """Print a one-paragraph error (no traceback) and exit."""
    err_console.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


def report_spec_error(exc: SpecError) -> None:
    err_console.print(exc.render(), markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


# Sub-commands register themselves on `app` when their module is imported.
from . import check as _check  # noqa: E402,F401

for _module in ("simulate", "train"):
    try:
        __import__(f"{__package__}.{_module}")
    except ModuleNotFoundError as _exc:  # a command module not written yet
        if _exc.name != f"{__package__}.{_module}":
            raise


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
    except Exception as exc:  # noqa: BLE001 - the last line of defence of the CLI
        if os.environ.get("PHYSML_DEBUG"):
            raise
        err_console.print(f"error: {type(exc).__name__}: {exc}\n(set PHYSML_DEBUG=1 for the "
                          "full traceback)", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
