"""``segment``: results on stdout (a table or JSON lines), files under ``-o``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import typer
from tqdm import tqdm

from aeinspect.cli import options as opt
from aeinspect.cli import tables
from aeinspect.cli._app import EXIT_DEFECT, GracefulStop, command, open_segmenter, show_progress
from aeinspect.cli.options import SEGMENT, Device, Images, ModelPath, Quiet, Stride, WindowBatch
from aeinspect.data.files import check_output_folder
from aeinspect.data.images import check_readable
from aeinspect.data.sources import Shard, find_images
from aeinspect.errors import InputError
from aeinspect.infer.outputs import parse_save_option, write_outputs
from aeinspect.infer.segment import segment_images
from aeinspect.infer.segmenter import Segmentation
from aeinspect.maps.decision import Decision, resolve_decision
from aeinspect.maps.windows import SegmentConfig
from aeinspect.report.html import Entry
from aeinspect.report.pages import segment_entry, write_segment_report


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
    report: opt.SegmentReport = False,
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
    if (save is not None or report) and output is None:
        raise InputError(f"{'--save' if save is not None else '--report'} needs -o/--output, "
                         "the folder to write to")  # fmt: skip
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
                             reconstruction="recon" in kinds or report,
                             components="components" in kinds)  # fmt: skip
    lines = _Lines(json_output, decision, str(model_file))
    entries: list[Entry] = []
    with GracefulStop() as stop, tqdm(total=len(sources), unit="image", leave=False,
                                      disable=not show_progress(quiet)) as bar:  # fmt: skip
        done, any_defect = _report(results, output, kinds, lines, bar, stop,
                                   entries if report else None)  # fmt: skip
    if report and output is not None:
        page = write_segment_report(output, entries, decision, segmenter.model, model_file.name)
        if not quiet:
            typer.echo(f"Report: {page}", err=True)
    if stop.requested():
        typer.echo(f"Interrupted after {done} of {len(sources)} images; every file written is "
                   "complete", err=True)  # fmt: skip
        raise typer.Exit(stop.exit_code)
    if fail_on_defect and any_defect:
        raise typer.Exit(EXIT_DEFECT)


class _Lines:
    """How each image's result is shown on stdout: a JSON line, a row of a rich table on a
    terminal, or the plain columns when piped."""

    def __init__(self, json_output: bool, decision: Decision, source: str) -> None:
        self.json_output = json_output
        self.table = None
        if not json_output and tables.on_terminal():
            self.table = tables.SegmentTable(decision, source)
        elif not json_output:
            typer.echo(f"{'image':<40} {'result':<8} {'defect_px':>9} {'regions':>7} "
                       f"{'max_res':>8}")  # fmt: skip

    def show(self, record: dict[str, Any], bar: tqdm) -> None:
        if self.table is not None:
            bar.clear()
            self.table.row(record)
            bar.refresh()
            return
        line = json.dumps(record) if self.json_output else _table_row(record)
        if bar.disable:
            typer.echo(line)
        else:  # clears the bar, writes the line, redraws the bar
            bar.write(line, file=sys.stdout)


def _report(
    results: Iterable[Segmentation],
    output: Path | None,
    kinds: tuple[str, ...],
    lines: _Lines,
    bar: tqdm,
    stop: GracefulStop,
    entries: list[Entry] | None,
) -> tuple[int, bool]:
    """Write each result's files, show its line and keep its report entry, until the results
    end or a stop is requested; the number of images done and whether any was defective."""
    done, any_defect = 0, False
    for result in results:
        written = write_outputs(result, output, kinds) if output is not None else []
        any_defect |= result.mask.defective
        record = _record(result, written)
        lines.show(record, bar)
        if entries is not None:
            entries.append(segment_entry(result, record))
        bar.update(1)
        done += 1
        del result  # the next image is read before the loop would drop it
        if stop.requested():
            break
    return done, any_defect


def _record(result: Segmentation, written: list[Path]) -> dict[str, Any]:
    """An image's JSON line."""
    return {
        "image": str(result.source.path),
        "defective": result.mask.defective,
        "defect_pixels": result.mask.defect_pixels,
        "regions": result.mask.regions,
        "max_residual": round(float(result.analysis.residual.max()), 6),
        "threshold": result.decision.threshold,
        "outputs": [str(p) for p in written],
    }


def _table_row(record: dict[str, Any]) -> str:
    verdict = "DEFECT" if record["defective"] else "ok"
    return (
        f"{record['image']:<40} {verdict:<8} {record['defect_pixels']:>9} "
        f"{record['regions']:>7} {record['max_residual']:>8.4f}"
    )
