"""The Typer app, its error handling and exit codes."""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from aeinspect import __version__
from aeinspect.errors import AeinspectError
from aeinspect.runtime import keep_freed_memory

EXIT_DEFECT = 1
EXIT_USAGE = 2

app = typer.Typer(
    name="aeinspect",
    help="Find defects on surfaces with an SSIM autoencoder trained on good images only.",
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(command: F) -> F:
    """Turn ``AeinspectError`` into one ``Error: …`` line on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except AeinspectError as error:
            typer.echo(f"Error: {error}", err=True)
            raise typer.Exit(EXIT_USAGE) from None

    return wrapper  # type: ignore[return-value]


def show_progress(quiet: bool) -> bool:
    """Progress goes to stderr only on a terminal and without --quiet."""
    return not quiet and sys.stderr.isatty()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"aeinspect {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Find defects on surfaces with an SSIM autoencoder trained on good images only."""


def main() -> None:
    """Entry point of the ``aeinspect`` script and ``python -m aeinspect``."""
    if hasattr(signal, "SIGPIPE"):  # `aeinspect segment … | head` ends quietly, like cat
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    keep_freed_memory()
    app()
