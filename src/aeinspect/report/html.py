"""The HTML reports of ``evaluate -o``, ``segment --report`` and ``train --report`` (or
``aeinspect report``): one page, ``index.html``, with no script and nothing fetched (it
works from a file:// address, offline), beside a folder of PNG thumbnails and plots.

The page is a Jinja2 template with autoescaping, so that every image name, setting and
value is escaped (a file may be called ``a<b & c.png``); the thumbnails are named by their
row's number, never by the image's name. Every file is written atomically, the page last.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aeinspect import __version__
from aeinspect.data.files import write_bytes_atomic
from aeinspect.data.images import write_image
from aeinspect.report.thumbnails import THUMBNAIL_SIDE, Thumbnails, colour_mapped, colour_scale_top

PAGE = "index.html"
THUMBNAILS = "thumbnails"


@dataclass(frozen=True)
class Entry:
    """One image in a report.

    Attributes:
        name: the image as the user gave it (shown escaped).
        score: its image score, the largest residual.
        thumbnails: its pictures.
        kind: its type in a labelled set ("good" or the defect's), else None.
        flagged: whether it was found defective at the operating point, None without one.
        fields: values shown beside it (segment's JSON fields).
    """

    name: str
    score: float
    thumbnails: Thumbnails
    kind: str | None = None
    flagged: bool | None = None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Gallery:
    """A titled list of images."""

    title: str
    note: str
    entries: list[Entry]


def evaluation_galleries(
    entries: Sequence[Entry], *, count: int = 8, per_type: int = 3
) -> list[Gallery]:
    """The galleries of an evaluation: the ``count`` lowest-scored defective images (the
    misses first), the ``count`` highest-scored good images (the false alarms first), and
    for each defect type ``per_type`` images across its range of scores (lowest, median,
    highest)."""
    defective = sorted((e for e in entries if e.kind != "good"), key=lambda e: e.score)
    good = sorted((e for e in entries if e.kind == "good"), key=lambda e: -e.score)
    galleries = [
        Gallery("Misses: the lowest-scored defective images", "The defective images the "
                "model is least sure of; those not flagged are missed at the threshold.",
                defective[:count]),
        Gallery("False alarms: the highest-scored good images", "The good images the model "
                "is most suspicious of; those flagged are false alarms at the threshold.",
                good[:count]),
    ]  # fmt: skip
    for kind in sorted({e.kind for e in defective if e.kind is not None}):
        of_kind = [e for e in defective if e.kind == kind]
        picks = sorted({round(q * (len(of_kind) - 1)) for q in np.linspace(0, 1, per_type)})
        galleries.append(Gallery(f"{kind}: a sample", f"{len(picks)} of its {len(of_kind)} "
                                 "images, from the lowest score to the highest.",
                                 [of_kind[i] for i in picks]))  # fmt: skip
    return [g for g in galleries if g.entries]


def segment_gallery(entries: Iterable[Entry]) -> Gallery:
    """Every segmented image: the flagged ones first, each group by score, highest first."""
    ordered = sorted(entries, key=lambda e: (not e.flagged, -e.score))
    return Gallery("Every image", "Flagged images first, then by score, highest first.",
                   ordered)  # fmt: skip


@dataclass
class Page:
    """What a report page shows (any part may stay empty)."""

    title: str
    lead: str
    model: list[tuple[str, str]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, str]] = field(default_factory=list)
    metric_notes: list[str] = field(default_factory=list)
    plots: list[dict[str, str]] = field(default_factory=list)
    grids: list[tuple[str, str, np.ndarray]] = field(default_factory=list)  # title, note, BGR
    galleries: list[Gallery] = field(default_factory=list)
    threshold: float | None = None
    with_truth: bool = False


def write_page(folder: Path, page: Page) -> Path:
    """Write ``page``'s thumbnails, plots and ``index.html`` into ``folder``; the page's
    path. Each thumbnail and plot is a PNG of its own; the page comes last."""
    from aeinspect.report import plots  # matplotlib loads only for reports

    assets = _Assets(folder)
    history_plot = None
    if page.history:
        history_plot = assets.plot("history.png", plots.plot_history, page.history)
    scores = [e.score for g in page.galleries for e in g.entries]
    top = colour_scale_top(page.threshold, scores)
    colour_bar = None
    if page.galleries:
        colour_bar = assets.plot("colour-bar.png", plots.plot_colour_bar, top, page.threshold)
    grids = [{"title": t, "note": n, "src": assets.picture(f"grid-{i}.png", picture)}
             for i, (t, n, picture) in enumerate(page.grids)]  # fmt: skip
    galleries = [{"title": g.title, "note": g.note, "rows": [assets.row(e, top) for e in g.entries]}
                 for g in page.galleries]  # fmt: skip
    html = _template().render(
        title=page.title, lead=page.lead, model=page.model, history_plot=history_plot,
        metrics=page.metrics, metric_notes=page.metric_notes, plots=page.plots, grids=grids,
        galleries=galleries, colour_bar=colour_bar, with_truth=page.with_truth,
        version=__version__, side=THUMBNAIL_SIDE,
    )  # fmt: skip
    path = folder / PAGE
    write_bytes_atomic(path, html.encode("utf-8"))
    return path


def _template() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    loader = PackageLoader("aeinspect.report", "templates")
    environment = Environment(loader=loader, autoescape=True, undefined=StrictUndefined,
                              trim_blocks=True)  # fmt: skip
    return environment.get_template("report.html")


class _Assets:
    """The files a page links to, under its folder: thumbnails numbered by row."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.rows: dict[int, dict[str, Any]] = {}  # id(entry) → its row, written once

    def plot(self, name: str, draw: Any, *args: Any) -> str:
        draw(*args, self.folder / name)
        return name

    def picture(self, name: str, picture: np.ndarray) -> str:
        write_image(self.folder / name, picture)
        return name

    def row(self, entry: Entry, top: float) -> dict[str, Any]:
        if id(entry) in self.rows:  # an image in two galleries: its thumbnails once
            return self.rows[id(entry)]
        number = len(self.rows) + 1
        pictures = {"input": entry.thumbnails.input,
                    "reconstruction": entry.thumbnails.reconstruction,
                    "residual": colour_mapped(entry.thumbnails.residual, top),
                    "segmentation": entry.thumbnails.outlined}  # fmt: skip
        panels = []
        for title, picture in pictures.items():
            if picture is None:
                continue
            src = f"{THUMBNAILS}/{number:05d}-{title}.png"
            write_image(self.folder / src, picture)
            shown = THUMBNAIL_SIDE / max(picture.shape[:2])  # small images drawn larger
            panels.append({"title": title, "src": src, "width": round(picture.shape[1] * shown),
                           "height": round(picture.shape[0] * shown)})  # fmt: skip
        row = {"name": entry.name, "kind": entry.kind, "score": f"{entry.score:.4f}",
               "flagged": entry.flagged, "panels": panels,
               "fields": [(k, _shown(v)) for k, v in entry.fields.items()]}  # fmt: skip
        self.rows[id(entry)] = row
        return row


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return f"{len(value)} files" if value else "none"
    return str(value)


def flattened(values: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """A nested dict of settings as (dotted key, value) rows."""
    rows: list[tuple[str, str]] = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows += flattened(value, f"{name}.")
        else:
            rows.append((name, _shown(value)))
    return rows
