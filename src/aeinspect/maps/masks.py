"""From residual map to defect mask (SPEC §1 steps 6–7), in NumPy and OpenCV only: the
threshold, the circular opening, small-region removal and the regions left."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from aeinspect.maps.decision import Decision


@dataclass(frozen=True)
class Mask:
    """A thresholded, opened segmentation.

    Attributes:
        mask: (H, W) uint8, 255 on defects, 0 elsewhere.
        regions: number of 8-connected defect regions left.
        defect_pixels: number of defect pixels.
    """

    mask: np.ndarray
    regions: int
    defect_pixels: int

    @property
    def defective(self) -> bool:
        return self.defect_pixels > 0


def opening_kernel(diameter: int) -> np.ndarray | None:
    """The circular structuring element of SPEC §1, or None for diameter 0."""
    if diameter == 0:
        return None
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (diameter, diameter))


def open_mask(marked: np.ndarray, opening: int) -> np.ndarray:
    """Circular opening of a (H, W) uint8 0/255 mask with diameter ``opening`` (0 = none)."""
    kernel = opening_kernel(opening)
    if kernel is None:
        return marked
    return cv2.morphologyEx(marked, cv2.MORPH_OPEN, kernel)


def as_mask(marked: np.ndarray) -> np.ndarray:
    """A (H, W) bool array as a uint8 mask, 255 where true, made in the bool array's own
    memory (which it takes over)."""
    mask = marked.view(np.uint8) if marked.dtype == np.bool_ else marked.astype(np.uint8)
    mask *= np.uint8(255)  # in place: the mask takes one byte a pixel, once
    return mask


def threshold_and_open(residual: np.ndarray, threshold: float, opening: int) -> np.ndarray:
    """(H, W) uint8 mask, 255 where R > t, after the circular opening of diameter ``opening``."""
    return open_mask(as_mask(residual > threshold), opening)


def compute_mask(residual: np.ndarray, threshold: float, *, opening: int, min_area: int) -> Mask:
    """Threshold (R > t), open, and drop 8-connected regions smaller than ``min_area``.

    Args:
        residual: (H, W) float32 residual map.
        threshold: t; pixels strictly above it are candidates.
        opening: diameter D of the circular opening (0 = none).
        min_area: smallest region kept, in pixels (0 or 1 = keep all).
    """
    marked = threshold_and_open(residual, threshold, opening)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(marked, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = areas >= max(min_area, 1)
    if not keep.all():
        lookup = np.concatenate([[0], np.where(keep, 255, 0)]).astype(np.uint8)
        marked = lookup[labels]
    return Mask(mask=marked, regions=int(keep.sum()), defect_pixels=int(areas[keep].sum()))


def decide(residual: np.ndarray, decision: Decision) -> Mask:
    """The mask of a (H, W) residual map at an operating point."""
    return compute_mask(
        residual, decision.threshold, opening=decision.opening, min_area=decision.min_area
    )


def largest_region(residual: np.ndarray, threshold: float, *, opening: int) -> int:
    """Area in pixels of the largest 8-connected region of the opened segmentation (0 if none)."""
    marked = threshold_and_open(residual, threshold, opening)
    count, _, stats, _ = cv2.connectedComponentsWithStats(marked, connectivity=8)
    return int(stats[1:, cv2.CC_STAT_AREA].max()) if count > 1 else 0
