"""Choosing a decision threshold from defect-free images only (SPEC §1 "Thresholds").

Both rules ask for the smallest t at which the opened segmentations of the good images are
quiet enough. Raising t can only remove marked pixels (the opening is increasing), so a
binary search over the maps' own values finds the exact smallest such t among them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from aeinspect.maps.decision import DEFAULT_OPENING
from aeinspect.maps.masks import largest_region, threshold_and_open
from aeinspect.settings import raise_first

TUNE_METHODS = ("area", "bound", "fpr", "f1")


@dataclass(frozen=True, kw_only=True)
class TuneConfig:
    """How ``tune`` chooses the threshold (SPEC §1 "Thresholds").

    Attributes:
        method: "area" (no region of ``min_area`` pixels on the good images), "bound" (the
            area rule's t for a new good image, bounded so that about ``image_fpr`` of them
            are flagged), "fpr" (at most a fraction ``fpr`` of their pixels marked) or "f1"
            (best pixel F1 on a labelled set; supervised).
        min_area: the region size the area rule must not reach, ≥ 1; kept as the minimum
            region area of the decision it makes.
        fpr: the fpr rule's largest marked fraction of good pixels, in [0, 1).
        image_fpr: the bound rule's expected fraction of new good images flagged, in
            (0, 0.5).
        opening: diameter D of the circular opening the rules apply (0 = none).
    """

    method: str = "area"
    min_area: int = 25
    fpr: float = 0.01
    image_fpr: float = 0.05
    opening: int = DEFAULT_OPENING

    def __post_init__(self) -> None:
        checks = [
            (self.method in TUNE_METHODS,
             f"--method must be {', '.join(TUNE_METHODS)}, got {self.method!r}"),
            (self.min_area >= 1, f"--min-area must be at least 1, got {self.min_area}"),
            (0 <= self.fpr < 1, f"--fpr must be in [0, 1), got {self.fpr}"),
            (0 < self.image_fpr < 0.5,
             f"--image-fpr must be in (0, 0.5), got {self.image_fpr}"),
            (self.opening >= 0, f"--opening must be >= 0, got {self.opening}"),
        ]  # fmt: skip
        raise_first(checks)


# The rule of the decision ``train`` chooses on its held-out good images.
FIRST_DECISION = TuneConfig(method="bound")


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


MIN_BOUND_IMAGES = 3  # a prediction bound needs a spread, and the spread two values


def quiet_thresholds(residuals: Sequence[np.ndarray], *, min_area: int, opening: int) -> np.ndarray:
    """Each defect-free map's own area-rule threshold (``threshold_by_area`` of that map
    alone): (n,) float64. The area rule's t over all the maps is their maximum."""
    return np.array([threshold_by_area([r], min_area=min_area, opening=opening)
                     for r in residuals])  # fmt: skip


def prediction_bound(quiet: np.ndarray, *, image_fpr: float) -> float:
    """An upper prediction bound on a *new* good image's own area-rule threshold, from the
    thresholds ``quiet`` (``quiet_thresholds``) of n held-out good images, so that about a
    fraction ``image_fpr`` of new good images is flagged; never below their largest (the
    area rule's t, so that none of them is flagged).

    The area rule's t is the largest of n images' own thresholds t_i, and a new good image
    exceeds the largest of n others with probability 1/(n + 1): 20 % for 4 held-out images.
    Here log t_i is taken as normal, and the bound is the Student-t prediction bound
    exp(m + q·s·√(1 + 1/n)), m and s the mean and sample standard deviation of log t_i, q the
    t distribution's (1 − image_fpr) quantile with n − 1 degrees of freedom: wider when
    few images say little.

    Raises:
        ValueError: fewer than ``MIN_BOUND_IMAGES`` thresholds, or ``image_fpr`` not in
            (0, 0.5).
    """
    count = len(quiet)
    if count < MIN_BOUND_IMAGES:
        raise ValueError(f"a bound needs at least {MIN_BOUND_IMAGES} good images, got {count}")
    if not 0 < image_fpr < 0.5:
        raise ValueError(f"image_fpr must be in (0, 0.5), got {image_fpr}")
    from scipy.stats import t as student_t

    logs = np.log(np.maximum(quiet, np.finfo(np.float32).tiny))
    quantile = student_t.ppf(1 - image_fpr, count - 1)
    bound = math.exp(logs.mean() + quantile * logs.std(ddof=1) * math.sqrt(1 + 1 / count))
    return float(max(bound, quiet.max()))
