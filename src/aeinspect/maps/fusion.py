"""Maps of two models combined into one: each model's map normalised by statistics of its
own held-out good images (never by test images), then fused pixel by pixel. What one model
misses the other may see: ImageNet features miss large, faint brightness changes that a
model of the surface itself sees."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aeinspect.errors import InputError

NORMALISATIONS = ("zscore", "quantile")
FUSIONS = ("mean", "max")
QUANTILE = 0.99  # the "quantile" normalisation's: the share of good pixels below 1
SAMPLE_STEP = 2  # statistics from every second pixel of every second row (a quarter)


@dataclass(frozen=True)
class Normaliser:
    """R ↦ (R − location) / scale: a model's map in the units of its good images' maps.

    Attributes:
        how: "quantile" (location 0, scale the 99th percentile of good pixels: a good
            image's pixels lie below 1 but for one in a hundred) or "zscore" (the mean and
            standard deviation of good pixels).
        location: subtracted.
        scale: divided by, > 0.
    """

    how: str
    location: float
    scale: float

    def apply(self, residual: np.ndarray) -> np.ndarray:
        """A (H, W) map normalised: float32."""
        return ((residual - self.location) / self.scale).astype(np.float32, copy=False)


@dataclass(frozen=True, kw_only=True)
class FusionConfig:
    """How two models' maps are combined.

    Attributes:
        normalise: "quantile" or "zscore" (see ``Normaliser``).
        fusion: "mean" or "max" of the normalised maps.
    """

    normalise: str = "zscore"  # on the tiles, patchcore + unet: above quantile on every figure
    fusion: str = "mean"  # max: below mean (README, Combining two models)

    def __post_init__(self) -> None:
        check_fusion(self.normalise, self.fusion)


def check_fusion(normalisation: str, fusion: str) -> None:
    """Refuse an unknown normalisation or fusion (``InputError``)."""
    if normalisation not in NORMALISATIONS:
        raise InputError(
            f"--normalise must be {' or '.join(NORMALISATIONS)}, got {normalisation!r}"
        )
    if fusion not in FUSIONS:
        raise InputError(f"--fusion must be {' or '.join(FUSIONS)}, got {fusion!r}")


def normaliser_of(maps: Sequence[np.ndarray], how: str) -> Normaliser:
    """The normaliser ``how`` of a model's (H, W) maps of good images.

    Raises:
        InputError: an unknown ``how``, no maps, or maps without spread.
    """
    check_fusion(how, FUSIONS[0])
    if not maps:
        raise InputError("no good images to normalise a model's maps by")
    pixels = np.concatenate([m[::SAMPLE_STEP, ::SAMPLE_STEP].ravel() for m in maps])
    pixels = pixels.astype(np.float64)
    if how == "quantile":
        location, scale = 0.0, float(np.quantile(pixels, QUANTILE))
    else:
        location, scale = float(pixels.mean()), float(pixels.std())
    if not scale > 0:
        raise InputError(f"the good images' maps have no spread to normalise by ({how})")
    return Normaliser(how, location, scale)


def fuse(maps: Sequence[np.ndarray], how: str) -> np.ndarray:
    """Normalised (H, W) maps fused: their mean, or their maximum (a pixel is as defective as
    the more alarmed model finds it)."""
    check_fusion(NORMALISATIONS[0], how)
    stacked = np.stack(maps)
    return (stacked.mean(axis=0) if how == "mean" else stacked.max(axis=0)).astype(np.float32)
