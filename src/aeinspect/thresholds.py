"""Choosing a decision threshold from defect-free images only."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aeinspect.segmentation import largest_region

DEFAULT_MIN_AREA = 25


def threshold_by_area(
    residuals: Sequence[np.ndarray], *, min_area: int = DEFAULT_MIN_AREA, opening: int
) -> float:
    """The smallest t at which every opened segmentation of defect-free maps has no 8-connected
    region of ``min_area`` pixels or more (the MVTec AD protocol).

    The largest region can only shrink as t grows (the opening is increasing), so a binary
    search over the maps' own values finds the exact smallest such t among them.

    Args:
        residuals: (H, W) float32 residual maps of defect-free images.
        min_area: the region size that must not be reached, ≥ 1.
        opening: diameter of the circular opening applied before measuring regions.
    """
    if not residuals:
        raise ValueError("no defect-free residual maps to tune a threshold on")
    if min_area < 1:
        raise ValueError(f"min_area must be at least 1, got {min_area}")
    candidates = np.unique(np.concatenate([r.ravel() for r in residuals]))

    def quiet(threshold: float) -> bool:
        return all(largest_region(r, threshold, opening=opening) < min_area for r in residuals)

    low, high = 0, len(candidates) - 1  # quiet(candidates[high]) holds: nothing exceeds the max
    while low < high:
        middle = (low + high) // 2
        if quiet(float(candidates[middle])):
            high = middle
        else:
            low = middle + 1
    return float(candidates[low])
