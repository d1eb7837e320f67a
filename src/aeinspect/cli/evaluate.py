"""``evaluate`` and ``tune``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from tqdm import tqdm

from aeinspect.cli import tables
from aeinspect.cli._app import command, open_segmenter, show_progress
from aeinspect.cli.options import (
    DEFAULT_BACKEND,
    DEFAULT_PRECISION,
    SEGMENT,
    TUNE,
    BackendOption,
    Device,
    Json,
    ModelPath,
    Opening,
    OverwriteFiles,
    Precision,
    Quiet,
    Stride,
    WindowBatch,
)
from aeinspect.data.files import check_output_file, check_output_folder, write_bytes_atomic
from aeinspect.data.sources import find_images
from aeinspect.errors import InputError
from aeinspect.evaluate.evidence import Observed
from aeinspect.evaluate.grid import parse_grid, run_grid
from aeinspect.evaluate.run import evaluate_model
from aeinspect.evaluate.tune import tune_model_file
from aeinspect.maps.thresholds import TuneConfig
from aeinspect.maps.windows import SegmentConfig
from aeinspect.model.file import load_model
from aeinspect.report.html import Entry
from aeinspect.report.pages import evaluation_entry, write_evaluation
from aeinspect.runtime import keep_freed_memory, select_device


@command
def evaluate(
    dataset: Annotated[
        Path, typer.Argument(help="Folder in MVTec AD layout (test/, ground_truth/).")
    ],
    model_file: ModelPath,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Folder for metrics.json and plots.")
    ] = None,
    overwrite: OverwriteFiles = False,
    stride: Stride = SEGMENT.stride,
    batch_size: WindowBatch = SEGMENT.batch_size,
    device: Device = "auto",
    backend: BackendOption = DEFAULT_BACKEND,
    precision: Precision = DEFAULT_PRECISION,
    json_output: Annotated[bool, typer.Option("--json", help="Print metrics.json.")] = False,
    quiet: Quiet = False,
) -> None:
    """Measure a model on a labelled test set: pixel ROC, AU-PRO, overlap, image ROC; with
    -o, metrics.json, plots and index.html, a report with the images it missed and the
    false alarms."""
    if output is not None:
        check_output_folder(output, overwrite=overwrite)
    segmenter = open_segmenter(model_file, backend, device, precision)
    config = SegmentConfig(stride=stride, batch_size=batch_size)
    entries: list[Entry] = []

    def observe(seen: Observed) -> None:
        if output is not None:
            entries.append(evaluation_entry(seen))
        bar.update(1)

    with tqdm(unit="image", leave=False, disable=not show_progress(quiet)) as bar:
        metrics, curves = evaluate_model(dataset, segmenter, config, observe=observe,
                                         reconstruction=output is not None)  # fmt: skip
    metrics["model"]["file"] = str(model_file)
    if output is not None:
        page = write_evaluation(
            output,
            metrics,
            curves,
            f"{model_file.name} on {dataset.name}",
            entries=entries,
            history=getattr(segmenter.model, "history", []),
        )
        if not quiet:
            typer.echo(f"Report: {page}", err=True)
    if json_output:
        typer.echo(json.dumps(metrics, indent=2))
    elif tables.on_terminal():
        tables.metrics_table(metrics)
    else:
        typer.echo(_metrics_lines(metrics))


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _metrics_lines(metrics: dict[str, Any]) -> str:
    lines = [f"{'type':<14} {'images':>6} {'pixel AUROC':>11} {'AU-PRO':>7} {'image AUROC':>11}"]
    for kind, row in metrics["per_type"].items():
        lines.append(
            f"{kind:<14} {row['images']:>6} {_fmt(row['pixel_auroc']):>11} "
            f"{_fmt(row['aupro']):>7} {_fmt(row['image_auroc']):>11}"
        )
    pixel, image = metrics["pixel"], metrics["image"]
    images = sum(metrics["counts"]["images"].values())
    lines.append(
        f"{'all':<14} {images:>6} {_fmt(pixel['auroc']):>11} {_fmt(pixel['aupro']):>7} "
        f"{_fmt(image['auroc']):>11}"
    )
    lines.append(
        f"pixel AUROC, paper protocol (thresholded and opened): {_fmt(pixel['auroc_paper'])}"
    )
    if image["threshold"] is not None:
        lines.append(
            f"at threshold {image['threshold']:.5f}: good images correct "
            f"{_fmt(image['good_correct'])}, defective images correct "
            f"{_fmt(image['defective_correct'])}"
        )
    return "\n".join(lines)


@command
def tune(
    images: Annotated[list[str] | None, typer.Argument(
        help="Good images (default: the model's validation images); with --grid, the "
        "training images.")] = None,
    model_file: Annotated[Path, typer.Option(
        "--model-file", "-m", help="Model file to tune.")] = ...,  # type: ignore[assignment]
    method: Annotated[str, typer.Option(
        help="area, bound, fpr or f1 (f1 needs --dataset).")] = TUNE.method,
    min_area: Annotated[int, typer.Option(
        help="area: no region of this many pixels on good images.")] = TUNE.min_area,
    fpr: Annotated[float, typer.Option(
        help="fpr: largest marked fraction of good pixels.")] = TUNE.fpr,
    image_fpr: Annotated[float, typer.Option(
        help="bound: about this fraction of new good images flagged.")] = TUNE.image_fpr,
    dataset: Annotated[Path | None, typer.Option(
        help="Labelled MVTec-layout folder (f1 and --grid).")] = None,
    opening: Opening = TUNE.opening,
    stride: Stride = SEGMENT.stride,
    batch_size: WindowBatch = SEGMENT.batch_size,
    grid: Annotated[list[str] | None, typer.Option(
        help="NAME=V1,V2 (latent, window, patch); repeat to vary several.")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="--grid: folder for models and table.")] = None,
    overwrite: OverwriteFiles = False,
    device: Device = "auto",
    backend: BackendOption = DEFAULT_BACKEND,
    precision: Precision = DEFAULT_PRECISION,
    json_output: Json = False,
    quiet: Quiet = False,
) -> None:  # fmt: skip
    """Choose the decision threshold from good images and write it into the model file;
    with --grid, train and evaluate one model per setting (the paper's Table 2)."""
    config = SegmentConfig(stride=stride, batch_size=batch_size)
    if grid:
        _tune_grid(images, model_file, grid, dataset, output, overwrite, device, config,
                   json_output)  # fmt: skip
        return
    tune_config = TuneConfig(method=method, min_area=min_area, fpr=fpr, image_fpr=image_fpr,
                             opening=opening)  # fmt: skip
    segmenter = open_segmenter(model_file, backend, device, precision)
    check_output_file(model_file, overwrite=True, flag="-m")  # it is rewritten at the end
    decision = tune_model_file(model_file, segmenter, good=images, dataset=dataset,
                               tune=tune_config, config=config)  # fmt: skip
    record = {"model_file": str(model_file), **decision.record()}
    if json_output:
        typer.echo(json.dumps(record))
    elif tables.on_terminal():
        tables.decision_table(record)
    else:
        settings = ", ".join(f"{k} {v}" for k, v in record["details"].items())
        typer.echo(f"threshold {decision.threshold:.6f} ({decision.method} method; {settings})")


def _tune_grid(
    images: list[str] | None,
    model_file: Path,
    grid: list[str],
    dataset: Path | None,
    output: Path | None,
    overwrite: bool,
    device: str,
    config: SegmentConfig,
    json_output: bool,
) -> None:
    if not images or dataset is None or output is None:
        raise InputError("--grid needs training images, --dataset DIR and -o DIR")
    settings = parse_grid(grid)
    check_output_folder(output, overwrite=overwrite)
    base = load_model(model_file)
    keep_freed_memory()  # it trains a model per setting (see train)

    def show(row: dict[str, Any]) -> None:
        if json_output:
            typer.echo(json.dumps(row))
        else:
            typer.echo(
                f"{row['parameter']:<8} {row['value']:>6}  pixel AUROC {row['pixel_auroc']:.3f}"
                f"  paper protocol {row['pixel_auroc_paper']:.3f}  AU-PRO {row['aupro']:.3f}"
            )

    rows = run_grid(find_images(images), base, settings, dataset, output=output,
                    device=select_device(device), config=config, on_row=show)  # fmt: skip
    write_bytes_atomic(output / "table2.json", json.dumps(rows, indent=2).encode())
