"""What the reports write: ``evaluate -o DIR``'s ``metrics.json``, the pooled ROC as
``roc.csv``, the ROC, PRO and overlap plots and its page; ``segment --report``'s page; and
the model's description inside them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aeinspect.data.files import write_bytes_atomic
from aeinspect.evaluate.evidence import Curves, Observed
from aeinspect.evaluate.metrics import thin_curve
from aeinspect.infer.onnx_model import OnnxModel
from aeinspect.infer.segmenter import Segmentation
from aeinspect.maps.decision import Decision
from aeinspect.model.file import ModelFile
from aeinspect.report.html import (
    Entry,
    Page,
    evaluation_galleries,
    flattened,
    segment_gallery,
    write_page,
)
from aeinspect.report.thumbnails import thumbnails_of


def write_evaluation(
    output: Path,
    metrics: dict[str, Any],
    curves: Curves,
    title: str,
    *,
    entries: Sequence[Entry] = (),
    history: Sequence[dict[str, Any]] = (),
) -> Path:
    """metrics.json, roc.csv (the pooled raw pixel ROC, thinned to the vertices needed to draw
    it), roc.png, pro.png, overlap.png and the HTML page (its galleries from ``entries``, its
    loss curve from ``history``) under ``output``, each written atomically; the page's path."""
    from aeinspect.report import plots  # matplotlib loads only when plots are written

    write_bytes_atomic(output / "metrics.json", json.dumps(metrics, indent=2).encode())
    fpr, tpr = thin_curve(*curves.roc["all"])
    rows = "".join(f"{f:.7g},{t:.7g}\n" for f, t in zip(fpr, tpr, strict=True))
    write_bytes_atomic(output / "roc.csv", ("fpr,tpr\n" + rows).encode())
    plots.plot_roc(curves, output / "roc.png", title)
    plots.plot_pro(curves, output / "pro.png", title)
    plots.plot_overlap(curves, output / "overlap.png", title)
    return write_page(output, evaluation_page(metrics, title, entries, history))


def evaluation_entry(seen: Observed) -> Entry:
    """A test image as an evaluation report shows it."""
    mask = None if seen.mask is None else seen.mask.mask
    return Entry(name=str(seen.item.source.path), score=float(seen.analysis.residual.max()),
                 thumbnails=thumbnails_of(seen.image, seen.analysis, mask, seen.truth),
                 kind=seen.item.kind,
                 flagged=None if seen.mask is None else seen.mask.defective)  # fmt: skip


def evaluation_page(
    metrics: dict[str, Any], title: str, entries: Sequence[Entry],
    history: Sequence[dict[str, Any]],
) -> Page:  # fmt: skip
    """The page of an evaluation: the model, its training, the metrics and plots, galleries."""
    pixel, image = metrics["pixel"], metrics["image"]
    counts = metrics["counts"]["images"]
    threshold = image["threshold"]
    total = sum(counts.values())
    listed = ", ".join(f"{number} {kind}" for kind, number in counts.items())
    stored = "no threshold stored" if threshold is None else f"threshold {threshold:.5g}"
    lead = (f"{total} test images ({listed}) from {metrics['dataset']}, stride "
            f"{metrics['settings']['stride']}; {stored}.")  # fmt: skip
    rows = [_metrics_row(kind, row, row["images"]) for kind, row in metrics["per_type"].items()]
    overall = {"pixel_auroc": pixel["auroc"], "aupro": pixel["aupro"],
               "image_auroc": image["auroc"]}  # fmt: skip
    rows.append(_metrics_row("all", overall, total))
    notes = [f"Pixel AUROC by the paper's protocol (thresholded and opened segmentations): "
             f"{_figure(pixel['auroc_paper'])}."]  # fmt: skip
    if threshold is not None:
        notes.append(f"At the threshold: good images right {_figure(image['good_correct'])}, "
                     f"defective images right {_figure(image['defective_correct'])}.")  # fmt: skip
    return Page(
        title=title, lead=lead, model=flattened(metrics["model"]), history=list(history),
        metrics=rows, metric_notes=notes, with_truth=True, threshold=threshold,
        plots=[{"src": f"{name}.png", "alt": alt} for name, alt in (
            ("roc", "pixel ROC curves"), ("pro", "PRO curves"), ("overlap", "region overlap"))],
        galleries=evaluation_galleries(entries),
    )  # fmt: skip


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _metrics_row(kind: str, row: dict[str, Any], images: int) -> dict[str, str]:
    return {"type": kind, "images": str(images), "pixel_auroc": _figure(row["pixel_auroc"]),
            "aupro": _figure(row["aupro"]), "image_auroc": _figure(row["image_auroc"])}  # fmt: skip


def segment_entry(result: Segmentation, fields: dict[str, Any]) -> Entry:
    """A segmented image as a segment report shows it, with its JSON fields beside it."""
    return Entry(name=str(result.source.path), score=float(result.analysis.residual.max()),
                 thumbnails=thumbnails_of(result.image, result.analysis, result.mask.mask),
                 flagged=result.mask.defective,
                 fields={k: v for k, v in fields.items() if k != "image"})  # fmt: skip


def write_segment_report(
    folder: Path, entries: Sequence[Entry], decision: Decision, model: ModelFile | OnnxModel,
    name: str,
) -> Path:  # fmt: skip
    """The page of a segment run into its -o ``folder``: every image, flagged ones first."""
    flagged = sum(bool(entry.flagged) for entry in entries)
    lead = (f"{len(entries)} images, {flagged} flagged, by {name} at threshold "
            f"{decision.threshold:.5g} ({decision.method}), opening {decision.opening}, "
            f"minimum area {decision.min_area}.")  # fmt: skip
    description = {k: v for k, v in model.describe().items() if k != "threshold"}
    page = Page(title=f"Segmented with {name}", lead=lead, model=flattened(description),
                galleries=[segment_gallery(entries)], threshold=decision.threshold)  # fmt: skip
    return write_page(folder, page)
