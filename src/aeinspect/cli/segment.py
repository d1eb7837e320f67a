"""``segment``: results on stdout (a table or JSON lines), files under ``-o``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

import typer
from tqdm import tqdm

from aeinspect.cli import options as opt
from aeinspect.cli._app import EXIT_DEFECT, GracefulStop, command, open_segmenter, show_progress
from aeinspect.cli.options import (
    SEGMENT,
    Device,
    Images,
    ModelPath,
    Quiet,
    Stride,
    WindowBatch,
)
from aeinspect.config import SegmentConfig, Shard
from aeinspect.decision import resolve_decision
from aeinspect.errors import InputError
from aeinspect.images import check_readable, find_images
from aeinspect.output_files import check_output_folder
from aeinspect.outputs import parse_save_option, write_outputs
from aeinspect.pipeline import segment_images
from aeinspect.segmentation import Segmentation


@command
def segment(
    images: Images,
    model_file: ModelPath,
    threshold: opt.Threshold = None,
    stride: Stride = SEGMENT.stride,
    opening: opt.OpeningOverride = None,
    min_area: opt.MinAreaOverride = None,
    output: opt.OutputFolder = None,
    save: opt.Save = None,
    overwrite: opt.OverwriteFiles = False,
    json_output: opt.JsonLines = False,
    fail_on_defect: opt.FailOnDefect = False,
    batch_size: WindowBatch = SEGMENT.batch_size,
    device: Device = "auto",
    backend: opt.BackendOption = opt.DEFAULT_BACKEND,
    precision: opt.Precision = opt.DEFAULT_PRECISION,
    shard: opt.ShardOption = None,
    quiet: Quiet = False,
) -> None:
    """Segment defects in images with a trained model (a model file, or with --backend onnx
    its ONNX export)."""
    if save is not None and output is None:
        raise InputError("--save needs -o/--output, the folder to write to")
    kinds = parse_save_option(save) if output is not None else ()
    if output is not None:  # shards of one list share their folder
        check_output_folder(output, overwrite=overwrite or shard is not None)
    sources = find_images(images)
    if shard is not None:
        sources = Shard.parse(shard).select(sources)
    segmenter = open_segmenter(model_file, backend, device, precision)
    decision = resolve_decision(segmenter.model.decision, threshold=threshold, opening=opening,
                                min_area=min_area, source=str(model_file))  # fmt: skip
    config = SegmentConfig(stride=stride, batch_size=batch_size)
    if output is not None:
        check_readable(sources)
    results = segment_images(sources, segmenter, config, decision,
                             reconstruction="recon" in kinds,
                             components="components" in kinds)  # fmt: skip
    show = show_progress(quiet)
    with GracefulStop() as stop, tqdm(total=len(sources), unit="image", leave=False,
                                      disable=not show) as bar:  # fmt: skip
        done, any_defect = _report(results, output, kinds, json_output, bar, stop)
    if stop.requested():
        typer.echo(f"Interrupted after {done} of {len(sources)} images; every file written is "
                   "complete", err=True)  # fmt: skip
        raise typer.Exit(stop.exit_code)
    if fail_on_defect and any_defect:
        raise typer.Exit(EXIT_DEFECT)


def _report(
    results: Iterable[Segmentation],
    output: Path | None,
    kinds: tuple[str, ...],
    json_output: bool,
    bar: tqdm,
    stop: GracefulStop,
) -> tuple[int, bool]:
    """Write each result's files and print its line, until the results end or a stop is
    requested; the number of images done and whether any was defective."""
    done, any_defect = 0, False
    if not json_output:
        typer.echo(f"{'image':<40} {'result':<8} {'defect_px':>9} {'regions':>7} {'max_res':>8}")
    for result in results:
        written = write_outputs(result, output, kinds) if output is not None else []
        any_defect |= result.mask.defective
        line = _json_line(result, written) if json_output else _table_row(result)
        if bar.disable:
            typer.echo(line)
        else:  # clears the bar, writes the line, redraws the bar
            bar.write(line, file=sys.stdout)
        bar.update(1)
        done += 1
        del result  # the next image is read before the loop would drop it
        if stop.requested():
            break
    return done, any_defect


def _json_line(result: Segmentation, written: list[Path]) -> str:
    record = {
        "image": str(result.source.path),
        "defective": result.mask.defective,
        "defect_pixels": result.mask.defect_pixels,
        "regions": result.mask.regions,
        "max_residual": round(float(result.analysis.residual.max()), 6),
        "threshold": result.decision.threshold,
        "outputs": [str(p) for p in written],
    }
    return json.dumps(record)


def _table_row(result: Segmentation) -> str:
    verdict = "DEFECT" if result.mask.defective else "ok"
    return (
        f"{str(result.source.path):<40} {verdict:<8} {result.mask.defect_pixels:>9} "
        f"{result.mask.regions:>7} {float(result.analysis.residual.max()):>8.4f}"
    )
