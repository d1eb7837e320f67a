"""Small pictures of what a model sees, for the HTML reports: an image's input,
reconstruction, residual map (colour-mapped on one scale for a whole report) and its
segmentation outlined on the input, against the ground truth where there is one."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from aeinspect.data.images import Image, to_uint8
from aeinspect.infer.segmenter import Analysis

THUMBNAIL_SIDE = 160  # the longer side of a thumbnail, in pixels
PREDICTED_BGR = (0, 0, 255)  # red: what the model marked
TRUTH_BGR = (0, 200, 0)  # green: the ground truth
COLOUR_MAP = "inferno"


@dataclass(frozen=True)
class Thumbnails:
    """One image's pictures at thumbnail size (h, w), uint8 BGR, and its residual map.

    Attributes:
        input: (h, w, 3) the image.
        reconstruction: (h, w, 3) the model's reconstruction, or None (a kind without one).
        residual: (h, w) float32 residual map, to colour-map once the report's scale is known.
        outlined: (h, w, 3) the image with the segmentation outlined in red and the ground
            truth, where given, in green.
    """

    input: np.ndarray
    reconstruction: np.ndarray | None
    residual: np.ndarray
    outlined: np.ndarray


def thumbnails_of(
    image: Image, analysis: Analysis, mask: np.ndarray | None, truth: np.ndarray | None = None
) -> Thumbnails:
    """The thumbnails of an analysed image; ``mask`` (H, W) uint8 0/255 at the operating
    point, ``truth`` (H, W) bool."""
    height, width = image.original_size
    size = _thumbnail_size(height, width)
    picture = _shrunk(_bgr(to_uint8(image.original)), size)
    recon = analysis.reconstruction
    outlined = picture.copy()
    for marks, colour in ((truth, TRUTH_BGR), (mask, PREDICTED_BGR)):
        if marks is not None:
            _outline(outlined, _shrunk(marks.astype(np.uint8) * np.uint8(255), size), colour)
    return Thumbnails(
        input=picture,
        reconstruction=None if recon is None else _shrunk(_bgr(to_uint8(recon)), size),
        residual=_shrunk(analysis.residual.astype(np.float32, copy=False), size),
        outlined=outlined,
    )


def _thumbnail_size(height: int, width: int) -> tuple[int, int]:
    """(width, height) with the longer side THUMBNAIL_SIDE at most, the aspect kept."""
    factor = min(1.0, THUMBNAIL_SIDE / max(height, width))
    return max(1, round(width * factor)), max(1, round(height * factor))


def _shrunk(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if array.shape[1::-1] == size:
        return array
    return cv2.resize(array, size, interpolation=cv2.INTER_AREA)


def _bgr(picture: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(picture, cv2.COLOR_GRAY2BGR) if picture.ndim == 2 else picture


def _outline(picture: np.ndarray, marks: np.ndarray, colour: tuple[int, int, int]) -> None:
    """Draw the outlines of the regions of a uint8 mask (shrunk: any pixel > 0 counts)."""
    contours, _ = cv2.findContours((marks > 0).astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)  # fmt: skip
    cv2.drawContours(picture, contours, -1, colour, 1)


def colour_mapped(residual: np.ndarray, top: float) -> np.ndarray:
    """An (h, w) residual map as (h, w, 3) uint8 BGR through the report's colour map, 0 at
    the bottom of the scale and ``top`` (and above) at its top."""
    from matplotlib import colormaps  # loads only when a report is written

    table = (colormaps[COLOUR_MAP](np.linspace(0, 1, 256))[:, 2::-1] * 255).astype(np.uint8)
    levels = np.clip(residual / max(top, 1e-12) * 255 + 0.5, 0, 255).astype(np.uint8)
    return table[levels]


def colour_scale_top(threshold: float | None, scores: list[float]) -> float:
    """The top of a report's residual colour scale: twice the threshold, so that the
    threshold sits mid-scale, or without one the 99th percentile of the image scores."""
    if threshold is not None and threshold > 0:
        return 2 * threshold
    return float(np.quantile(scores, 0.99)) if scores else 1.0
