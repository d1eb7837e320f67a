"""``export``: a model file as one ONNX file for ``--backend onnx``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from aeinspect.cli._app import command, load_model_for_use
from aeinspect.cli.options import Json, Quiet
from aeinspect.data.files import check_output_file
from aeinspect.infer.export import OPSET, export_model


@command
def export(
    model: Annotated[Path, typer.Argument(help="Model file to export.", show_default=False)],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="ONNX file to write, e.g. model.onnx.")
    ],
    opset: Annotated[int, typer.Option(help="ONNX opset of the graph.")] = OPSET,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing -o file.")
    ] = False,
    json_output: Json = False,
    quiet: Quiet = False,
) -> None:
    """Export a model's networks as one ONNX graph, with its preprocessing, recipe, kind
    settings and threshold in the file's metadata: segment, evaluate and tune take the
    file with --backend onnx, through ONNX Runtime and without torch."""
    check_output_file(output, overwrite=overwrite)
    exported = export_model(load_model_for_use(model), output, opset=opset)
    decision = exported.decision
    summary = {
        "onnx_file": str(output), "model": str(model), "kind": exported.description["kind"],
        "parts": list(exported.parts), "opset": opset, "bytes": output.stat().st_size,
        "threshold": None if decision is None else decision.threshold,
    }  # fmt: skip
    if json_output:
        typer.echo(json.dumps(summary))
        return
    parts = ", ".join(summary["parts"]) or "no network"
    typer.echo(f"{output}: {summary['kind']} model ({parts}), opset {opset}, "
               f"{summary['bytes'] / 1e6:.1f} MB")  # fmt: skip
