"""Results on a terminal, through rich: columns that stay aligned however long a path is
(it folds within its column), DEFECT in red, the threshold used in the header. Output that
is piped, or asked for with --json, stays the plain text and JSON it always was."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from aeinspect.maps.decision import Decision

SEGMENT_COLUMNS = (("result", 8), ("defect_px", 9), ("regions", 7), ("max_res", 8))


def on_terminal() -> bool:
    """Whether standard output is a terminal (then tables are drawn by rich)."""
    return sys.stdout.isatty()


class SegmentTable:
    """segment's rows, one image at a time: each row a one-row rich table with the same
    column widths, so that the rows line up as they stream."""

    def __init__(self, decision: Decision, source: str, console: Console | None = None) -> None:
        self.console = console or Console(highlight=False)
        self.console.print(
            f"[bold]threshold {decision.threshold:.5g}[/bold] ({decision.method}, opening "
            f"{decision.opening}, minimum area {decision.min_area}) · {source}"
        )
        self._print(self._table(header=True))

    def _table(self, *, header: bool) -> Table:
        table = Table(show_header=header, box=None, pad_edge=False, header_style="bold")
        path_width = max(20, self.console.width - sum(w + 2 for _, w in SEGMENT_COLUMNS) - 1)
        table.add_column("image", width=path_width, overflow="fold", no_wrap=False)
        for name, width in SEGMENT_COLUMNS:
            table.add_column(name, width=width, justify="left" if name == "result" else "right")
        return table

    def _print(self, table: Table) -> None:
        self.console.print(table)

    def row(self, record: dict[str, Any]) -> None:
        """Print one image's row from its JSON record."""
        table = self._table(header=False)
        verdict = Text("DEFECT", style="bold red") if record["defective"] else Text("ok")
        table.add_row(record["image"], verdict, str(record["defect_pixels"]),
                      str(record["regions"]), f"{record['max_residual']:.4f}")  # fmt: skip
        self._print(table)


def metrics_table(metrics: dict[str, Any], console: Console | None = None) -> None:
    """evaluate's metrics per defect type and overall, then the paper's protocol and the
    images right at the threshold."""
    console = console or Console(highlight=False)
    image, pixel = metrics["image"], metrics["pixel"]
    threshold = image["threshold"]
    heading = "no threshold stored" if threshold is None else f"threshold {threshold:.5g}"
    table = Table(title=f"{metrics['model'].get('file', 'model')} · {heading}",
                  title_justify="left", header_style="bold")  # fmt: skip
    for name in ("type", "images", "pixel AUROC", "AU-PRO", "image AUROC"):
        table.add_column(name, justify="left" if name == "type" else "right")
    for kind, row in metrics["per_type"].items():
        table.add_row(kind, str(row["images"]), _figure(row["pixel_auroc"]),
                      _figure(row["aupro"]), _figure(row["image_auroc"]))  # fmt: skip
    total = sum(metrics["counts"]["images"].values())
    table.add_row("all", str(total), _figure(pixel["auroc"]), _figure(pixel["aupro"]),
                  _figure(image["auroc"]), style="bold")  # fmt: skip
    console.print(table)
    console.print(f"pixel AUROC, paper protocol (thresholded and opened): "
                  f"{_figure(pixel['auroc_paper'])}")  # fmt: skip
    if threshold is not None:
        console.print(f"at the threshold: good images right {_figure(image['good_correct'])}, "
                      f"defective images right {_figure(image['defective_correct'])}")  # fmt: skip


def decision_table(record: dict[str, Any], console: Console | None = None) -> None:
    """tune's result: the threshold chosen and what it rests on."""
    console = console or Console(highlight=False)
    console.print(f"[bold]threshold {record['value']:.6g}[/bold] ({record['method']} method)")
    table = Table(show_header=False, box=None)
    table.add_column("setting", style="bold")
    table.add_column("value")
    for key, value in {"model file": record["model_file"], **record["details"]}.items():
        table.add_row(str(key), str(value))
    console.print(table)


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def train_lines(summary: dict[str, Any]) -> str:
    """What ``train`` prints without --json: how the model was made, and its threshold."""
    fit = summary["fit"] or {}
    if "bank" in fit:
        first = (
            f"{summary['model_file']}: {summary['model']} model fitted on {fit['images']} "
            f"images: a bank of {fit['bank']:,} of their {fit['features']:,} feature vectors "
            f"(coverage radius at most {fit['coverage_radius_bound']:.3g}), "
            f"{fit['seconds']:.0f} s"
        )
    elif summary["best_val_loss"] is None:
        first = f"{summary['model_file']}: {summary['model']} reference, nothing to train"
    else:
        first = (
            f"{summary['model_file']}: {summary['model']} model, {summary['epochs']} epochs "
            f"(stopped by {summary['stopped_by']}), best validation loss "
            f"{summary['best_val_loss']:.5f} at epoch {summary['best_epoch']}, "
            f"{summary['train_seconds'] / 60:.1f} min"
        )
    if summary["threshold"] is None:
        return first + "\nthreshold: none (no validation images); pass --threshold to segment"
    basis = summary["threshold_basis"]
    bound = (
        f": about {100 * basis['image_fpr']:g} % of new good images flagged; the area "
        f"method's {basis['area_threshold']:.5f}"
        if summary["threshold_method"] == "bound"
        else ""
    )
    return first + (
        f"\nthreshold: {summary['threshold']:.5f} ({summary['threshold_method']} method on "
        f"{summary['validation_images']} held-out good images{bound})"
    )
