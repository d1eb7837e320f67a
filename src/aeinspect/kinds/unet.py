"""``unet``: discriminative only. A U-Net trained on patches with synthetic defects to give
per-pixel defect logits from the image alone (focal loss on the synthetic masks), with no
autoencoder: the residual map is the defect probability, smoothed by a Gaussian of
``map_sigma`` pixels. Being fully convolutional, it sees a whole image at once.

It has no reconstruction; the image itself stands in for one in ``segment``'s outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from aeinspect.kinds.base import Part, TrainingBatch
from aeinspect.kinds.config import ModelConfig
from aeinspect.kinds.defects import DefectSegmentingKind, SegmentationSettings
from aeinspect.nets.unet import UNet, focal_loss


@dataclass(frozen=True, kw_only=True)
class UnetSettings(SegmentationSettings):
    """``SegmentationSettings`` (the U-Net, the focal loss, the map's smoothing, the
    defects)."""


class DefectSegmenter(nn.Module):
    """The U-Net (``discriminator``) over the image's k channels."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        settings = config.settings
        self.config = config
        self.discriminator = UNet(config.channels, settings.unet_width, settings.unet_levels)


class UnetKind(DefectSegmentingKind):
    name = "unet"
    summary = "a U-Net segmenting synthetic defects on the image alone; R = defect probability"
    settings_type = UnetSettings

    def build_network(self, config: ModelConfig) -> nn.Module:
        return DefectSegmenter(config)

    def training_loss(
        self, network: nn.Module, batch: TrainingBatch, noise: torch.Generator
    ) -> torch.Tensor:
        assert batch.masks is not None
        logits = network.discriminator(batch.inputs)[:, 0]
        return focal_loss(logits, batch.masks, network.config.settings.focal_gamma)

    def inference_parts(self, network: nn.Module | None) -> dict[str, Part]:
        """ "discriminate": a (1, k, H, W) image, H and W multiples of 2^(levels − 1) →
        (1, 1, H, W) logits."""
        return {"discriminate": network.discriminator}


KIND = UnetKind()
