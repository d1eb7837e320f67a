"""Choosing a decision threshold from defect-free images only (SPEC §1 "Thresholds").

Both rules ask for the smallest t at which the opened segmentations of the good images are
quiet enough. Raising t can only remove marked pixels (the opening is increasing), so a
binary search over the maps' own values finds the exact smallest such t among them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from aeinspect.masks import largest_region, threshold_and_open


def smallest_quiet_threshold(
    residuals: Sequence[np.ndarray], quiet: Callable[[float], bool]
) -> float:
    """The smallest value t of the maps at which ``quiet(t)`` holds, ``quiet`` being monotone.

    ``quiet`` holds at the maps' maximum, where nothing is marked.
    """
    if not residuals:
        raise ValueError("no defect-free residual maps to tune a threshold on")
    candidates = np.unique(np.concatenate([r.ravel() for r in residuals]))
    low, high = 0, len(candidates) - 1
    while low < high:
        middle = (low + high) // 2
        if quiet(float(candidates[middle])):
            high = middle
        else:
            low = middle + 1
    return float(candidates[low])


def threshold_by_area(residuals: Sequence[np.ndarray], *, min_area: int, opening: int) -> float:
    """The smallest t at which no opened segmentation of the defect-free maps has an
    8-connected region of ``min_area`` pixels or more (the MVTec AD protocol).

    Args:
        residuals: (H, W) float32 residual maps of defect-free images.
        min_area: the region size that must not be reached, ≥ 1.
        opening: diameter of the circular opening applied before measuring regions.
    """
    if min_area < 1:
        raise ValueError(f"min_area must be at least 1, got {min_area}")

    def quiet(threshold: float) -> bool:
        return all(largest_region(r, threshold, opening=opening) < min_area for r in residuals)

    return smallest_quiet_threshold(residuals, quiet)


def threshold_by_fpr(residuals: Sequence[np.ndarray], *, fpr: float, opening: int) -> float:
    """The smallest t at which at most a fraction ``fpr`` of the defect-free pixels is marked
    after the opening."""
    if not 0 <= fpr < 1:
        raise ValueError(f"fpr must be in [0, 1), got {fpr}")
    total = sum(r.size for r in residuals)

    def quiet(threshold: float) -> bool:
        marked = sum(
            int(np.count_nonzero(threshold_and_open(r, threshold, opening))) for r in residuals
        )
        return marked <= fpr * total

    return smallest_quiet_threshold(residuals, quiet)
