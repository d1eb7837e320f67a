"""``draem``: reconstructive and discriminative, after DRAEM (Zavrtanik et al., ICCV 2021).

The restoring autoencoder of ``restore`` (Table 1, any P and d) plus a small U-Net that
takes the image and its restoration and gives per-pixel defect logits; both trained jointly
on patches with synthetic defects: L2 + SSIM for the restoration, a focal loss on the
synthetic masks for the segmentation (its gradient reaches the autoencoder too). The
residual map is the defect probability, smoothed by a Gaussian of ``map_sigma`` pixels: in
[0, 1], so thresholds, segment, evaluate and the model file work as for every kind.

At inference the autoencoder reconstructs the image window by window (averaged, as
``ssim``), and the U-Net, being fully convolutional, sees the whole image with its
reconstruction at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from aeinspect.errors import InputError
from aeinspect.kinds.base import Part, TrainingBatch
from aeinspect.kinds.config import ModelConfig
from aeinspect.kinds.defects import DefectSegmentingKind, SegmentationSettings
from aeinspect.kinds.restore import L2_WEIGHT, SSIM_WEIGHT, check_loss_weights, restoration_loss
from aeinspect.nets.autoencoder import Autoencoder
from aeinspect.nets.unet import UNet, focal_loss


@dataclass(frozen=True, kw_only=True)
class DraemSettings(SegmentationSettings):
    """``SegmentationSettings`` and the restoration's.

    Attributes:
        focal_weight: weight of the focal loss against the restoration loss.
        l2_weight, ssim_weight: the restoration loss, as ``restore``'s.
    """

    focal_weight: float = field(
        default=1.0, metadata={"help": "weight of the focal loss against the restoration's."}
    )
    l2_weight: float = field(default=1.0, metadata=L2_WEIGHT)
    ssim_weight: float = field(default=1.0, metadata=SSIM_WEIGHT)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.focal_weight <= 1e3:
            raise InputError(f"--focal-weight must be in (0, 1000], got {self.focal_weight}")
        check_loss_weights(l2_weight=self.l2_weight, ssim_weight=self.ssim_weight)


class RestoreAndSegment(nn.Module):
    """The restoring autoencoder (``restorer``) and the U-Net (``discriminator``) that reads
    the image stacked with its restoration, (B, 2k, H, W)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        settings = config.settings
        self.config = config
        self.restorer = Autoencoder(config.patch_size, config.channels, config.latent)
        self.restorer.config = config  # restore's loss reads the restoration's weights there
        self.discriminator = UNet(2 * config.channels, settings.unet_width, settings.unet_levels)


class DraemKind(DefectSegmentingKind):
    name = "draem"
    summary = "restoring autoencoder + U-Net segmenting synthetic defects; R = defect probability"
    settings_type = DraemSettings
    sees_reconstruction = True

    def build_network(self, config: ModelConfig) -> nn.Module:
        return RestoreAndSegment(config)

    def training_loss(
        self, network: nn.Module, batch: TrainingBatch, noise: torch.Generator
    ) -> torch.Tensor:
        settings, window = network.config.settings, network.config.window
        recon = network.restorer(batch.inputs)
        restore = restoration_loss(recon, batch.targets, settings.l2_weight,
                                   settings.ssim_weight, window)  # fmt: skip
        logits = network.discriminator(torch.cat([batch.inputs, recon], dim=1))
        assert batch.masks is not None
        segment = focal_loss(logits[:, 0], batch.masks, settings.focal_gamma)
        return restore + settings.focal_weight * segment

    def inference_parts(self, network: nn.Module | None) -> dict[str, Part]:
        """ "reconstruct": windows → restorations; "discriminate": a (1, 2k, H, W) stack of
        image and restoration, H and W multiples of 2^(levels − 1) → (1, 1, H, W) logits."""
        return {"reconstruct": network.restorer, "discriminate": network.discriminator}


KIND = DraemKind()
