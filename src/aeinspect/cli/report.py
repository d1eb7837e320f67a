"""``report``: what a model learnt from, as an HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aeinspect.cli._app import command, load_model_for_use
from aeinspect.cli.options import Device, OverwriteFiles, Quiet
from aeinspect.data.files import check_output_folder
from aeinspect.errors import InputError
from aeinspect.model.combination import Combination
from aeinspect.report.training import write_training_report
from aeinspect.runtime import select_device


@command
def report(
    model: Annotated[Path, typer.Argument(help="Model file to report on.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for index.html.")],
    overwrite: OverwriteFiles = False,
    device: Device = "auto",
    quiet: Quiet = False,
) -> None:
    """Write index.html about a model: its settings and loss curves, a sample of its training
    patches (with their synthetic defects for the kinds that learn from them), and its
    reconstructions of the good images held out from training. train --report does the
    same after training."""
    check_output_folder(output, overwrite=overwrite)
    loaded = load_model_for_use(model)
    if isinstance(loaded, Combination):
        raise InputError(f"{model} combines two models; report on each of the model files "
                         "that were combined")  # fmt: skip
    page = write_training_report(loaded, output, name=model.name, device=select_device(device))
    typer.echo(str(page))
