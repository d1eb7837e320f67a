"""The ``aeinspect`` command line: options → settings → one core call → rendering.

The only package that imports typer. Results go to standard output (a table, or JSON
lines with ``--json``); progress, notes and warnings go to standard error. A user's mistake
is one ``Error: …`` line and exit code 2; a fault of aeinspect's own, exit code 3.
"""

from aeinspect.cli import (  # noqa: F401  (they register the commands)
    combine,
    crop,
    evaluate,
    export,
    report,
    segment,
    train,
)
from aeinspect.cli._app import EXIT_DEFECT, EXIT_INTERNAL, EXIT_USAGE, app, main

__all__ = ["EXIT_DEFECT", "EXIT_INTERNAL", "EXIT_USAGE", "app", "main"]
