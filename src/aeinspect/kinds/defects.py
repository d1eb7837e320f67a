"""What the kinds that learn from synthetic defects share: training batches with defects
drawn as their settings say (``restore``, ``draem``, ``unet``), and for those that segment
them with a U-Net (``draem``, ``unet``) its settings, its fit to the patch size and its
defect-probability map."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from aeinspect.data.synthetic import DefectConfig, corrupt_batch, parse_defects
from aeinspect.errors import InputError
from aeinspect.kinds.base import Kind, TrainingBatch
from aeinspect.kinds.config import ModelConfig
from aeinspect.maps.maker import MapMaker
from aeinspect.maps.makers import DefectProbability

# The --defects option of the kinds that draw synthetic defects: NAME=NUMBER,… over the defaults.
DEFECTS_OPTION = {
    "help": "synthetic defect settings to change, as NAME=NUMBER,… (e.g. "
    "clean_fraction=0.4,fills.flat=0.3; see the README).",
    "parse": parse_defects,
    "shown": "none changed",
}


@dataclass(frozen=True, kw_only=True)
class SegmentationSettings:
    """What a kind that segments synthetic defects with a U-Net stores.

    Attributes:
        unet_width: channels of the U-Net's first level (doubled at each level below).
        unet_levels: resolutions of the U-Net (its input sides are padded to multiples of
            2^(levels − 1)).
        focal_gamma: γ of the focal loss.
        map_sigma: σ in preprocessed pixels of the Gaussian that smooths the probability map
            (0 = none).
        defects: how the synthetic defects are drawn.
    """

    unet_width: int = field(default=16, metadata={"help": "channels of the U-Net's first level."})
    unet_levels: int = field(default=4, metadata={"help": "resolutions of the U-Net."})
    focal_gamma: float = field(default=2.0, metadata={"help": "γ of the focal loss."})
    map_sigma: float = field(
        default=0.0, metadata={"help": "σ smoothing the defect probability (0 = none)."}
    )
    defects: DefectConfig = field(default_factory=DefectConfig, metadata=DEFECTS_OPTION)

    def __post_init__(self) -> None:
        ranges = {"unet_width": (1, 256), "unet_levels": (2, 6), "focal_gamma": (0, 10),
                  "map_sigma": (0, 64)}  # fmt: skip
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if not low <= value <= high:
                flag = "--" + name.replace("_", "-")
                raise InputError(f"{flag} must be in [{low:g}, {high:g}], got {value}")


def check_unet_fits(config: ModelConfig) -> None:
    """The patch side must halve evenly at every level of the U-Net, and the residual is a
    probability: no residual scale."""
    multiple = 2 ** (config.settings.unet_levels - 1)
    if config.patch_size % multiple:
        raise InputError(
            f"--size {config.patch_size} must be a multiple of {multiple} for a U-Net of "
            f"{config.settings.unet_levels} levels"
        )
    if config.residual_scale > 1:
        raise InputError(
            f"--residual-scale is not for --model {config.kind}: its residual is a "
            "probability, not a comparison of image and reconstruction"
        )


class SyntheticDefectsKind(Kind):
    """A kind trained on patches with synthetic defects drawn as its settings' ``defects``
    say; the clean patches are the targets."""

    def training_batch(
        self, patches: torch.Tensor, rng: np.random.Generator, config: ModelConfig
    ) -> TrainingBatch:
        return with_synthetic_defects(patches, rng, config.settings.defects)


class DefectSegmentingKind(SyntheticDefectsKind):
    """A kind whose residual is a U-Net's defect probability: not a comparison of image and
    reconstruction, and its patch side must halve evenly at every U-Net level."""

    compares_images = False
    sees_reconstruction: ClassVar[bool] = False  # the U-Net sees the image with its restoration

    def check(self, config: ModelConfig) -> None:
        check_unet_fits(config)

    def map_maker(self, config: ModelConfig) -> MapMaker:
        settings = config.settings
        return DefectProbability(
            channels=config.channels, window=config.window, smooth=config.smooth,
            unet_levels=settings.unet_levels, map_sigma=settings.map_sigma,
            patch_size=config.patch_size if self.sees_reconstruction else None,
            blend=config.blend,
        )  # fmt: skip


def with_synthetic_defects(
    patches: torch.Tensor, rng: np.random.Generator, defects: DefectConfig
) -> TrainingBatch:
    """Clean (B, C, P, P) patches as targets, with synthetic defects as inputs and their
    masks (``synthetic.corrupt_batch``)."""
    corrupted = corrupt_batch(patches.numpy(), rng, defects)
    return TrainingBatch(
        inputs=torch.from_numpy(corrupted.pixels),
        targets=patches,
        masks=torch.from_numpy(corrupted.masks.astype(np.float32)),
    )
