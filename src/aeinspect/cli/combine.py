"""``combine``: two model files into one, whose map fuses theirs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from aeinspect.cli._app import command
from aeinspect.cli.options import Device, Json, Quiet
from aeinspect.data.files import check_output_file
from aeinspect.errors import InputError
from aeinspect.infer.combine import combine_models
from aeinspect.maps.fusion import FUSIONS, FusionConfig
from aeinspect.maps.thresholds import FIRST_DECISION
from aeinspect.model.combination import save_combination
from aeinspect.model.file import ModelFile, load_model
from aeinspect.runtime import select_device

FUSION = FusionConfig()


@command
def combine(
    models: Annotated[list[Path], typer.Argument(help="The two model files.", metavar="MODELS",
                                                 show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Combination file to write.")],
    normalise: Annotated[str, typer.Option(
        help="zscore: each model's map standardised by the mean and standard deviation of "
        "its held-out good images' pixels; quantile: divided by their 99th percentile.")] = (
        FUSION.normalise),
    fusion: Annotated[str, typer.Option(
        help=f"{' or '.join(FUSIONS)} of the normalised maps.")] = FUSION.fusion,
    image_fpr: Annotated[float, typer.Option(
        help="The threshold chosen on the good images neither model trained on (tune "
        "--method bound): about this fraction of new good images flagged.")] = (
        FIRST_DECISION.image_fpr),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing -o file.")] = (
        False),
    device: Device = "auto",
    json_output: Json = False,
    quiet: Quiet = False,
) -> None:  # fmt: skip
    """Combine two model files into one: each one's map normalised by its own held-out good
    images, then fused, and a threshold chosen on the good images neither trained on.
    segment, tune, evaluate and export take the combination as they take a model file."""
    if len(models) != 2:
        raise InputError(f"combine takes two model files, got {len(models)}")
    settings = FusionConfig(normalise=normalise, fusion=fusion)
    check_output_file(output, overwrite=overwrite)
    members = [_finished(path) for path in models]
    combination = combine_models(
        members, settings, device=select_device(device),
        tune=replace(FIRST_DECISION, image_fpr=image_fpr),
    )  # fmt: skip
    save_combination(output, combination)
    decision = combination.decision
    summary = {
        "combination": str(output), "members": [str(path) for path in models],
        "kinds": [member.model.kind for member in members], "normalise": normalise,
        "fusion": fusion, "validation_images": len(combination.validation_images),
        "threshold": None if decision is None else decision.threshold,
        "threshold_method": None if decision is None else decision.method,
    }  # fmt: skip
    if json_output:
        typer.echo(json.dumps(summary))
        return
    kinds = " and ".join(summary["kinds"])
    threshold = ("none (no good image held out by both); tune it" if decision is None else
                 f"{decision.threshold:.5f} ({decision.method} method on "
                 f"{summary['validation_images']} good images neither trained on)")  # fmt: skip
    typer.echo(f"{output}: {kinds}, {normalise}-normalised, fused by {fusion}\n"
               f"threshold: {threshold}")  # fmt: skip


def _finished(path: Path) -> ModelFile:
    """A finished model file.

    Raises:
        InputError: an unfinished model.
    """
    model = load_model(path)
    if not model.finished:
        raise InputError(f"{path} is {model.progress()}; finish training it (train --resume "
                         f"{path}) before combining it")  # fmt: skip
    return model
